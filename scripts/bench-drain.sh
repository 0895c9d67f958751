#!/usr/bin/env bash
# Drain without a herd (issue #13): LISTENERS listeners on a set of "old"
# herald processes; a second, "new" set starts on the same SO_REUSEPORT
# port; then every old process gets SIGTERM at once and drains. herald-bench
# --follow reconnects each listener as an EventSource does (after the last
# `retry:`, with Last-Event-ID). The new processes' accepted_total, sampled
# every 100 ms, is the reconnect rate they see. Run twice from one
# invocation: DRAIN_SPREAD_MS=4000 (the default) and DRAIN_SPREAD_MS=0 (no
# spread: every stream closed at once, back after RETRY_MS=3000).
#
#   sudo [IO_BACKEND=epoll|uring] scripts/bench-drain.sh [LISTENERS] [SPREAD_MS...]
#                                                   # default: 100000 4000 0
#
# Writes benchmarks/results/drain-*.json; finishes within ~4 minutes.

# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"

N=${1:-100000}
shift || true
SPREADS=(4000 0)
[ $# -eq 0 ] || SPREADS=("$@")
PORT=18090
OLD_ADMIN=19200
NEW_ADMIN=19300
REDIS_PORT=16383
BACKEND=${IO_BACKEND:-auto}

build
PROCS=$(procs_for "$N")
tune_kernel $((N * 2))
start_redis "$REDIS_PORT"
echo "# drain: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
echo "# $N listeners on $PROCS old herald processes (WORKERS=1, HEARTBEAT_SECONDS=0, IO_BACKEND=$BACKEND), $PROCS new ones on the same port; $(nproc) cores"

# sample ADMIN_BASE COUNT SECONDS OUT PIDS: every 100 ms, the summed
# accepted_total of COUNT processes (admin ADMIN_BASE+k); SIGTERMs PIDS (the
# old processes, this script's own) after 0.5 s. Prints the figures.
# (The count is the box's TCP PassiveOpens every 20 ms: the new processes'
# /stats answered too slowly during the storm to sample every 100 ms.)
sample() {
    # Ahead of the servers and clients, so the samples stay 20 ms apart.
    nice -n -10 python3 - "$@" <<'EOF'
import json, os, signal, sys, time, urllib.request
base, count, secs, out, pids = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
def total():
    # Passive opens on the whole box: after SIGTERM only the new processes
    # accept on this host (the old ones closed their listeners first), and
    # this file is read without asking the busy servers anything.
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Tcp:")]
    return int(rows[1][rows[0].index("PassiveOpens")])
t0 = time.monotonic()
first = total()
series, sent, tick = [], None, t0
while time.monotonic() - t0 < secs:
    tick += 0.02
    time.sleep(max(0, tick - time.monotonic()))
    if sent is None and time.monotonic() - t0 >= 0.5:
        for p in pids.split(","):
            os.kill(int(p), signal.SIGTERM)
        sent = time.monotonic()
    n = total() - first
    series.append((time.monotonic(), n))
# Times relative to the SIGTERM; samples before it are dropped.
n0 = max([n for t, n in series if t < sent] or [0])
series = [(t - sent, n - n0) for t, n in series if t >= sent]
back = series[-1][1]
def at(t):  # reconnects by t s after SIGTERM, interpolated between samples
    prev = (series[0][0], 0)
    for ts, n in series:
        if ts >= t:
            if ts == prev[0]:
                return n
            return prev[1] + (n - prev[1]) * (t - prev[0]) / (ts - prev[0])
        prev = (ts, n)
    return series[-1][1]
end = series[-1][0]
per_100ms = [(round(k / 10, 1), round(at((k + 1) / 10) - at(k / 10))) for k in range(int(end * 10))]
per_s = {k: round(at(k + 1) - at(k)) for k in range(int(end))}
peak_t, peak = max(per_100ms, key=lambda x: x[1])
def when(frac):
    return next((round(t, 2) for t, c in series if t > 0 and c >= frac * back), None)
summary = {
    "reconnects": back, "peak_per_100ms": peak, "peak_at_s": peak_t,
    "peak_per_s": max(per_s.values()), "per_s": per_s,
    "first_s": when(0.001), "p5_s": when(0.05), "p50_s": when(0.5), "p95_s": when(0.95), "last_s": when(1.0),
    "samples": [(round(t, 3), n) for t, n in series], "per_100ms": per_100ms,
}
json.dump(summary, open(out, "w"))
print(f"reconnects seen by the new processes: {back} within {end:.1f} s after SIGTERM ({len(series)} samples)")
print(f"  peak {peak} per 100 ms (at +{peak_t:.1f} s), peak {summary['peak_per_s']} per second")
print(f"  back: first +{summary['first_s']} s, 5% +{summary['p5_s']} s, 50% +{summary['p50_s']} s, 95% +{summary['p95_s']} s, all +{summary['last_s']} s")
print("  per second after SIGTERM: " + ", ".join(f"+{s}s {n}" for s, n in sorted(per_s.items())))
print("  per 100 ms: " + " ".join(str(n) for _, n in per_100ms))
EOF
}

# drain SPREAD_MS: one run on fresh processes.
drain() {
    local spread=$1 k
    echo
    echo "## DRAIN_SPREAD_MS=$spread"
    start_heralds "$PROCS" "$PORT" "$OLD_ADMIN" 1 HEARTBEAT_SECONDS=0 DRAIN_SPREAD_MS="$spread" \
        SHUTDOWN_TIMEOUT_MS=$((spread + 4000)) LOG_LEVEL=info IO_BACKEND="$BACKEND"
    local old=("${HERALD_LIST[@]}") old_pids=$HERALD_PIDS
    for ((k = 0; k < PROCS; k++)); do mv "$WORK/herald-$k.log" "$WORK/old-$spread-$k.log"; done
    echo "\$ herald-bench connect -n $N --follow ..."
    "$BENCH" connect -n "$N" --url "http://127.0.0.1:$PORT/sse" --jwt-secret "$JWT_SECRET" \
        --src "$SRC" --rate 15000 --inflight 20000 --connect-timeout 30s --hold $((spread / 1000 + 25))s --follow \
        --deadline 150s --json-file "$RESULTS/drain-$spread-bench.json" \
        >"$WORK/bench-$spread.out" 2>"$WORK/bench-$spread.progress" &
    own $!
    local bench=$!
    # Every listener streaming on the old processes.
    local deadline=$((SECONDS + 90)) streaming=0
    while [ "$streaming" -lt "$N" ]; do
        [ $SECONDS -lt $deadline ] || die "only $streaming of $N listeners connected"
        sleep 0.5
        streaming=0
        for ((k = 0; k < PROCS; k++)); do
            streaming=$((streaming + $(curl -sf "http://127.0.0.1:$((OLD_ADMIN + k))/stats" |
                python3 -c 'import json,sys; print(json.load(sys.stdin)["streaming"])')))
        done
    done
    log "$N listeners streaming on the old processes"
    # The restart procedure: the new ones up (health), then SIGTERM the old.
    start_heralds "$PROCS" "$PORT" "$NEW_ADMIN" 1 HEARTBEAT_SECONDS=0 IO_BACKEND="$BACKEND"
    local new=("${HERALD_LIST[@]}")
    sample "$NEW_ADMIN" "$PROCS" $((spread / 1000 + 9)) "$RESULTS/drain-$spread.json" "$old_pids"
    stop_pids "${old[@]}"
    for ((k = 0; k < PROCS; k++)); do
        grep -h -E "SIGTERM received|reactor 0 stopped" "$WORK/old-$spread-$k.log"
    done | sort | sed -n '1p;$p' | sed 's/^/  old: /'
    streaming=0
    for ((k = 0; k < PROCS; k++)); do
        streaming=$((streaming + $(curl -sf --max-time 10 "http://127.0.0.1:$((NEW_ADMIN + k))/stats" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["streaming"])')))
    done
    echo "  streaming on the new processes afterwards: $streaming of $N"
    wait "$bench" || true
    stop_pids "$bench"
    tail -n 8 "$WORK/bench-$spread.out" || true
    cp "$WORK/bench-$spread.progress" "$RESULTS/drain-$spread-progress.txt" || true
    stop_pids "${new[@]}"
}

for spread in "${SPREADS[@]}"; do drain "$spread"; done
