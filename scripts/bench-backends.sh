#!/usr/bin/env bash
# epoll vs io_uring: the same herald binary run with IO_BACKEND=epoll and
# IO_BACKEND=uring, alternately, on fresh processes, in one invocation.
#
#   sudo scripts/bench-backends.sh [ROUNDS]      # default 2 rounds
#   sudo HERALD=/tmp/bench-bin/herald BENCH=/tmp/bench-bin/herald-bench \
#       scripts/bench-backends.sh 3              # measure given binaries
#
# Every run: one herald process, WORKERS=2 (one reactor per core),
# HEARTBEAT_SECONDS=0, fed by one Redis channel; herald-bench with one fresh
# HS256 JWT per listener. Per round and backend (epoll first, then uring):
#   idle   herald-bench connect, $N_IDLE listeners held 5 s: server CPU per new
#          JWT connection (user and sys), RssAnon/RSS and slab per listener
#   bcast  fanout to $N_FAN listeners, 20 broadcasts 200 ms apart: server CPU
#          per delivery
#   rate   fanout to $N_FAN listeners, 100 events/s for 10 s: the same
#   sys-*  bcast and rate again with `perf stat` counting herald's system
#          calls (and io_uring submissions) over a window that starts with all
#          listeners open and ends after >= 3/4 of the broadcasts (at an idle
#          moment between two) / >= 30 % of the deliveries; divided by the deliveries
#          herald's /stats counted in the same window. CPU figures of these
#          runs are not used (perf is attached).
# Then, unless PROFILE=0, one bcast and one rate run per backend under
# `perf record -g` (same window); the top symbols go to
# $RESULTS/backends-profile-*.txt.
#
# Writes $RESULTS/backends-*.json (default benchmarks/results) and prints a
# table with each round's figures and the uring/epoll ratio. Stops only the
# processes it started; sysctls as in bench-common.sh, restored on exit.
# About 2 minutes per round plus 1.5 minutes for the profiles; a hard limit
# of $LIMIT_S seconds (default 1200) applies to the whole run.

# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"

ROUNDS=${1:-2}
N_FAN=${N_FAN:-10000}
N_IDLE=${N_IDLE:-19000}
PROFILE=${PROFILE:-1}
LIMIT_S=${LIMIT_S:-1200}
PORT=18280
ADMIN=19280
REDIS_PORT=16391
BACKENDS=(epoll uring)

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[ "$N_IDLE" -le 19500 ] || die "N_IDLE must fit one process (fd cap 20000)"
HAVE_PERF=1
if ! command -v perf >/dev/null || ! perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
    log "perf (with tracepoints) is not usable here: no system-call counts, no profiles"
    HAVE_PERF=0
fi
command -v python3 >/dev/null || die "python3 is needed for the table"

# within_limit: dies once the whole run has taken LIMIT_S seconds.
within_limit() { [ $SECONDS -lt "$LIMIT_S" ] || die "time limit of ${LIMIT_S}s reached"; }

# stat_field NAME: one integer field of herald's GET /stats (empty if none).
stat_field() {
    curl -s --max-time 1 "http://127.0.0.1:$ADMIN/stats" | grep -o "\"$1\":[0-9]*" | cut -d: -f2 || true
}

# herald_up BACKEND: a fresh herald with that backend; sets HERALD_PID.
herald_up() {
    start_heralds 1 "$PORT" "$ADMIN" 2 IO_BACKEND="$1" HEARTBEAT_SECONDS=0
    HERALD_PID=${HERALD_LIST[0]}
    # Which driver it runs: io_uring instances show up among its descriptors.
    local rings
    rings=$(find "/proc/$HERALD_PID/fd" -type l -lname '*io_uring*' 2>/dev/null | wc -l)
    case "$1:$rings" in
    epoll:0 | uring:[1-9]*) ;;
    *) die "asked for IO_BACKEND=$1, herald holds $rings io_uring descriptor(s)" ;;
    esac
}

herald_down() { stop_pids "$HERALD_PID"; }

# perf_window NAME MIN QUIET PERF-ARGS...: (run in the background) waits until
# all $N_FAN listeners stream, attaches `perf PERF-ARGS -t <tids>` to every
# herald thread but the admin one (which answers this function's polling of
# /stats), and stops it (SIGINT) once herald counted >= MIN deliveries --
# with QUIET=1 only at a moment when no broadcast is under way (a multiple of
# $N_FAN, unchanged over 30 ms). Writes "deliveries-at-stop
# deliveries-after-stop QUIET" to $WORK/NAME.delivered. Gives up after 120 s.
perf_window() {
    local name=$1 min=$2 quiet=$3 d0 d1 ppid t tids=""
    shift 3
    local deadline=$((SECONDS + 120))
    until [ "$(stat_field streaming)" = "$N_FAN" ]; do
        [ $SECONDS -lt $deadline ] || return 0
        sleep 0.05
    done
    sleep 0.3 # the last handshakes' responses
    [ "$(stat_field delivered_total)" = 0 ] || log "$name: deliveries before the window"
    for t in /proc/"$HERALD_PID"/task/*; do
        [ "$(cat "$t/comm")" = admin ] || tids+=${tids:+,}${t##*/}
    done
    perf "$@" -t "$tids" 2>"$WORK/$name.perf.log" &
    ppid=$!
    trap 'kill -INT $ppid 2>/dev/null; exit 0' TERM
    while [ $SECONDS -lt $deadline ]; do
        d0=$(stat_field delivered_total)
        d0=${d0:-0}
        if [ "$d0" -ge "$min" ]; then
            [ "$quiet" = 1 ] || break
            if [ $((d0 % N_FAN)) = 0 ]; then
                sleep 0.03
                [ "$(stat_field delivered_total)" != "$d0" ] || break
            fi
        fi
        sleep 0.05
    done
    kill -INT "$ppid" 2>/dev/null || true
    wait "$ppid" || true
    d1=$(stat_field delivered_total)
    echo "$d0 ${d1:-0} $quiet" >"$WORK/$name.delivered"
}

# Workloads: the herald-bench arguments of each.
common=(--url "http://127.0.0.1:$PORT/sse" --jwt-secret "$JWT_SECRET" --src "$SRC"
    --rate 15000 --inflight 4000 --connect-timeout 30s --deadline 150s)
idle_args=(connect -n "$N_IDLE" --hold 5s)
bcast_args=(fanout -n "$N_FAN" --hold 3s --events 20 --event-rate 5 --drain 30s
    --pub "redis://127.0.0.1:$REDIS_PORT")
rate_args=(fanout -n "$N_FAN" --hold 3s --events 1000 --event-rate 100 --drain 60s
    --pub "redis://127.0.0.1:$REDIS_PORT")

# measure NAME BACKEND WORKLOAD [PERF-MIN QUIET PERF-ARGS...]: one run on a
# fresh herald; with PERF-ARGS, perf_window runs alongside.
measure() {
    local name=$1 backend=$2 workload=$3 win=""
    shift 3
    within_limit
    herald_up "$backend"
    local args
    case $workload in
    idle) args=("${idle_args[@]}") ;;
    bcast) args=("${bcast_args[@]}") ;;
    rate) args=("${rate_args[@]}") ;;
    *) die "unknown workload $workload" ;;
    esac
    if [ $# -gt 0 ]; then
        perf_window "$name" "$@" &
        win=$!
        own "$win"
    fi
    run_bench "$name" "${args[@]}" "${common[@]}" --server-pid "$HERALD_PID"
    if [ -n "$win" ]; then
        wait "$win" || true
        stop_pids "$win"
    fi
    herald_down
}

SYSCALL_EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_read
SYSCALL_EVENTS+=,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_ctl
SYSCALL_EVENTS+=,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_futex,syscalls:sys_enter_recvfrom
SYSCALL_EVENTS+=,io_uring:io_uring_submit_req,io_uring:io_uring_complete,context-switches,task-clock

build
tune_kernel 40000
start_redis "$REDIS_PORT"

# COMMIT: what the measured binaries were built from (default: this checkout).
COMMIT=${COMMIT:-$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)}
echo "# herald epoll vs io_uring: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT"
echo "# herald $HERALD ($(sha256sum "$HERALD" | cut -c1-12)), herald-bench $BENCH"
echo "# $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), Linux $(uname -r);" \
    "server and clients share the cores"
echo "# one herald, WORKERS=2, HEARTBEAT_SECONDS=0, Redis-fed; $ROUNDS round(s), epoll then uring in each"

for ((r = 1; r <= ROUNDS; r++)); do
    for b in "${BACKENDS[@]}"; do
        echo
        echo "## round $r, IO_BACKEND=$b"
        measure "backends-idle-$b-$r" "$b" idle
        measure "backends-bcast-$b-$r" "$b" bcast
        measure "backends-rate-$b-$r" "$b" rate
        if [ "$HAVE_PERF" = 1 ]; then
            measure "backends-sys-bcast-$b-$r" "$b" bcast $((N_FAN * 15)) 1 \
                stat -x, -o "$WORK/backends-sys-bcast-$b-$r.stat" -e "$SYSCALL_EVENTS"
            measure "backends-sys-rate-$b-$r" "$b" rate $((N_FAN * 300)) 0 \
                stat -x, -o "$WORK/backends-sys-rate-$b-$r.stat" -e "$SYSCALL_EVENTS"
            cp "$WORK/backends-sys-bcast-$b-$r.stat" "$WORK/backends-sys-bcast-$b-$r.delivered" \
                "$WORK/backends-sys-rate-$b-$r.stat" "$WORK/backends-sys-rate-$b-$r.delivered" "$RESULTS/"
        fi
    done
done

if [ "$HAVE_PERF" = 1 ] && [ "$PROFILE" = 1 ]; then
    for b in "${BACKENDS[@]}"; do
        for w in bcast rate; do
            name=backends-prof-$w-$b
            if [ "$w" = bcast ]; then min=$((N_FAN * 15)) quiet=1; else min=$((N_FAN * 300)) quiet=0; fi
            echo
            echo "## profile: $w, IO_BACKEND=$b (perf record -g)"
            measure "$name" "$b" "$w" "$min" "$quiet" record -g -F 1999 -o "$WORK/$name.data"
            {
                echo "# perf record -g -F 1999 -t <herald threads but admin> over the window; deliveries (at stop, after stop, quiet): $(cat "$WORK/$name.delivered")"
                echo "## by object"
                perf report -i "$WORK/$name.data" --no-children --sort dso -g none --stdio 2>>"$WORK/perf-report.log" |
                    grep -v -e '^#' -e '^$' | sed -n 1,8p
                echo "## selected kernel paths (children: the symbol and what it calls)"
                perf report -i "$WORK/$name.data" --children --sort sym -g none --stdio 2>>"$WORK/perf-report.log" |
                    grep -E '\] (do_writev|__x64_sys_writev|__x64_sys_io_uring_enter|io_submit_sqes|io_sendmsg|__sys_sendmsg|tcp_sendmsg|net_rx_action|tcp_v4_rcv|sock_def_readable|__inet_lookup_established|__x64_sys_epoll_wait|do_epoll_wait|ep_poll_callback|schedule|tcp_write_xmit)[[:space:]]*$' || true
                echo "## top symbols (self)"
                perf report -i "$WORK/$name.data" --no-children --sort dso,sym --stdio -g none \
                    --percent-limit 0.7 2>>"$WORK/perf-report.log" | grep -v -e '^#' -e '^$' | sed -n 1,40p
            } >"$RESULTS/backends-profile-$w-$b.txt"
            cat "$RESULTS/backends-profile-$w-$b.txt"
        done
    done
    if [ -s "$WORK/perf-report.log" ]; then cp "$WORK/perf-report.log" "$RESULTS/backends-perf-report.log"; fi
fi

echo
echo "## epoll vs io_uring ($ROUNDS round(s); ratio = uring / epoll)"
python3 - "$RESULTS" "$ROUNDS" "$N_FAN" <<'EOF'
import json, os, sys
res, rounds, nfan = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def load(name):
    p = os.path.join(res, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None

def stat(name):
    p, d = os.path.join(res, name + ".stat"), os.path.join(res, name + ".delivered")
    if not (os.path.exists(p) and os.path.exists(d)):
        return None
    out = {}
    for line in open(p):
        f = line.strip().split(",")
        if len(f) > 3 and f[0] and f[0][0].isdigit():
            out[f[2]] = float(f[0])
    d0, d1, quiet = (int(x) for x in open(d).read().split())
    # At an idle moment d0 is exact; otherwise take the middle.
    return out, d0, (d0 if quiet else (d0 + d1) / 2)

rows = []  # (measure, unit, {backend: [per-round values]})
def add(label, fn):
    vals = {}
    for b in ("epoll", "uring"):
        vals[b] = [fn(b, r) for r in range(1, rounds + 1)]
    rows.append((label, vals))

def srv(kind, key, scale=1.0):
    def f(b, r):
        j = load(f"backends-{kind}-{b}-{r}")
        v = j and j["server"] and j["server"].get(key)
        return None if v is None else v * scale
    return f

def user_per_conn(b, r):
    j = load(f"backends-idle-{b}-{r}")
    if not j or not j["server"]:
        return None
    s = j["server"]
    # CPU times come in 10 ms ticks; round away the float noise of the difference.
    return round((s["connect_cpu_s"] - s["connect_sys_s"]) * 1e6 / max(j["connect"]["open"], 1), 3) + 0.0

def user_per_deliv(kind):
    def f(b, r):
        j = load(f"backends-{kind}-{b}-{r}")
        if not j or not j["server"] or not j["events"] or not j["events"]["delivered"]:
            return None
        s = j["server"]
        return round((s["events_cpu_s"] - s["events_sys_s"]) * 1e9 / j["events"]["delivered"], 3) + 0.0
    return f

def ev(kind, key):
    def f(b, r):
        j = load(f"backends-{kind}-{b}-{r}")
        return j and j["events"] and j["events"].get(key)
    return f

def kern(key):
    def f(b, r):
        j = load(f"backends-idle-{b}-{r}")
        return j and j["kernel"].get(key)
    return f

def cache(b, r, name):
    j = load(f"backends-idle-{b}-{r}")
    return j and dict(j["kernel"]["slab_caches_per_conn_bytes"]).get(name, 0.0)

def sysc(kind, event):
    def f(b, r):
        s = stat(f"backends-sys-{kind}-{b}-{r}")
        if not s or not s[1]:
            return None
        out, _, deliveries = s
        n = sum(out.get(e, 0) for e in event.split("+"))
        return n / deliveries
    return f

add("bcast: server CPU per delivery (ns)", srv("bcast", "cpu_per_delivery_ns"))
add("bcast: ... of which user (ns)", user_per_deliv("bcast"))
add("bcast: completion p50 (ms)", lambda b, r: (ev("bcast", "completion_ms")(b, r) or {}).get("p50"))
add("rate: server CPU per delivery (ns)", srv("rate", "cpu_per_delivery_ns"))
add("rate: ... of which user (ns)", user_per_deliv("rate"))
add("rate: achieved events/s", ev("rate", "achieved_rate_per_s"))
add("rate: lost", ev("rate", "lost"))
add("connect: server CPU per new JWT conn (us)", srv("idle", "cpu_per_conn_us"))
add("connect: ... of which user (us)", user_per_conn)
add("connect: rate (/s)", lambda b, r: (load(f"backends-idle-{b}-{r}") or {}).get("connect", {}).get("per_second"))
add("idle: RssAnon per listener (B)", srv("idle", "anon_per_conn_bytes"))
add("idle: RSS per listener (B)", srv("idle", "rss_per_conn_bytes"))
add("idle: slab per listener, both ends (B)", kern("slab_per_conn_bytes"))
names = set()
for b in ("epoll", "uring"):
    for r in range(1, rounds + 1):
        j = load(f"backends-idle-{b}-{r}")
        if j:
            names |= {n for n, v in j["kernel"]["slab_caches_per_conn_bytes"] if v >= 32}
for n in sorted(names):
    add(f"idle: slab {n} (B/listener)", lambda b, r, n=n: cache(b, r, n))
for kind in ("bcast", "rate"):
    add(f"{kind}: syscalls per delivery", sysc(kind, "raw_syscalls:sys_enter"))
    add(f"{kind}: writev+write per delivery", sysc(kind, "syscalls:sys_enter_writev+syscalls:sys_enter_write"))
    add(f"{kind}: epoll_wait per delivery", sysc(kind, "syscalls:sys_enter_epoll_wait+syscalls:sys_enter_epoll_pwait"))
    add(f"{kind}: io_uring_enter per delivery", sysc(kind, "syscalls:sys_enter_io_uring_enter"))
    add(f"{kind}: io_uring SQEs per delivery", sysc(kind, "io_uring:io_uring_submit_req"))

def fmt(v):
    if v is None:
        return "-"
    if abs(v) < 5e-5:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}"

hdr = ["measure"] + [f"epoll r{r}" for r in range(1, rounds + 1)] + \
      [f"uring r{r}" for r in range(1, rounds + 1)] + ["uring/epoll per round", "uring/epoll (means)"]
print("| " + " | ".join(hdr) + " |")
print("| --- |" + " ---: |" * (len(hdr) - 1))
for label, vals in rows:
    e = [v for v in vals["epoll"] if v is not None]
    u = [v for v in vals["uring"] if v is not None]
    me, mu = (sum(e) / len(e) if e else None), (sum(u) / len(u) if u else None)
    def ratio(u, e):
        if u is None or not e:
            return "-"
        return f"{u / e:.2f}" if abs(u / e) >= 0.01 or u == 0 else f"{u / e:.1e}"
    per_round = " / ".join(ratio(u, e) for u, e in zip(vals["uring"], vals["epoll"]))
    print("| " + " | ".join([label] + [fmt(v) for v in vals["epoll"]] +
                            [fmt(v) for v in vals["uring"]] + [per_round, ratio(mu, me)]) + " |")
EOF
log "done in ${SECONDS}s"
