#!/usr/bin/env bash
# Replay storm (issue #10): LISTENERS listeners, one user each (default
# 100,000), over herald processes on one SO_REUSEPORT port, fed by a Redis
# stream: 1,000 targeted events/s (one random user each) plus 1 broadcast/s.
# After 10 s every listener drops, stays away AWAY seconds (default 30) and
# reconnects with Last-Event-ID while events keep flowing. Run twice: the
# same processes throughout ("live"), and every process restarted while the
# listeners are away ("restart": history warmed from the stream, older
# positions read from it).
#
#   sudo scripts/bench-replay.sh [LISTENERS]      # AWAY=30 by default
#
# Prints, per run: events missed and replayed (herald-bench: lost,
# duplicates, history-gap events), seconds until everyone is back and caught
# up, herald CPU per replayed event over the reconnect window, history
# memory, and the stream range reads. Writes benchmarks/results/replay-*.json.
# Finishes within 6 minutes.

# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"

N=${1:-100000}
AWAY=${AWAY:-30}
PORT=18090
ADMIN_BASE=19200
REDIS_PORT=16383
RATE=1001 # events/s: 1,000 targeted + every 1,001st a broadcast
STORM_AFTER=$((RATE * 10))
EVENTS=$((RATE * (10 + AWAY + 20)))

build
PROCS=$(procs_for "$N")
tune_kernel "$N"
start_redis "$REDIS_PORT"
HZ=$(getconf CLK_TCK)
echo "# replay storm: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
echo "# $N listeners over $PROCS herald processes (WORKERS=1, defaults: HISTORY_SIZE=100, HISTORY_TTL_SECONDS=600, HISTORY_MAX_BYTES=256 MiB)"
echo "# $((RATE - 1)) targeted events/s + 1 broadcast/s via XADD; storm after 10 s, away ${AWAY} s"

heralds() {
    start_heralds "$PROCS" "$PORT" "$ADMIN_BASE" 1 HEARTBEAT_SECONDS=0 REDIS_STREAM=herald-stream
    echo "${HERALD_LIST[*]}" >"$WORK/pids"
}

# stats_agg add|max FIELD: FIELD of /stats (a jq path) over the processes,
# summed or the largest.
stats_agg() {
    local how=$1 field=$2 k acc=0 v
    for ((k = 0; k < PROCS; k++)); do
        v=$(curl -sf --max-time 2 "http://127.0.0.1:$((ADMIN_BASE + k))/stats" | jq -r "$field // 0") || v=0
        if [ "$how" = add ]; then
            acc=$((acc + v))
        elif [ "$v" -gt "$acc" ]; then
            acc=$v
        fi
    done
    echo "$acc"
}
stats_sum() { stats_agg add "$1"; }
stats_max() { stats_agg max "$1"; }

# sampler FILE: every second, "unix-seconds cpu-ticks replayed" of the
# current herald processes, until FILE.stop exists.
sampler() {
    local file=$1 pid ticks
    while [ ! -e "$file.stop" ]; do
        ticks=0
        for pid in $(cat "$WORK/pids"); do
            if [ -r "/proc/$pid/stat" ]; then
                ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
            fi
        done
        echo "$(date +%s.%N) $ticks $(stats_sum .replayed_total)" >>"$file"
        sleep 1
    done
}

# storm NAME RESTART(0|1)
storm() {
    local name=$1 restart=$2 samples="$WORK/$1.samples" t_storm bench
    heralds
    redis-cli -p "$REDIS_PORT" DEL herald-stream >/dev/null
    sampler "$samples" &
    own $!
    local sampler_pid=$!
    echo
    echo "## $name"
    echo "\$ herald-bench storm -n $N --to random:1 --broadcast-every $RATE --event-rate $RATE --events $EVENTS --storm-after $STORM_AFTER --away ${AWAY}s ..."
    "$BENCH" storm -n "$N" --url "http://127.0.0.1:$PORT/sse" --jwt-secret "$JWT_SECRET" \
        --src "$SRC" --rate 15000 --inflight 4000 --connect-timeout 30s --hold 2s \
        --pub "redis://127.0.0.1:$REDIS_PORT" --pub-kind redis-stream \
        --to random:1 --broadcast-every "$RATE" --event-rate "$RATE" --events "$EVENTS" \
        --storm-after "$STORM_AFTER" --away "${AWAY}s" --drain 60s --deadline 300s \
        --json-file "$RESULTS/replay-$name.json" 2>"$WORK/$name.progress" &
    bench=$!
    own "$bench"
    until grep -q "storm: every listener drops" "$WORK/$name.progress"; do
        kill -0 "$bench" 2>/dev/null || die "herald-bench ended early: $(tail -5 "$WORK/$name.progress")"
        sleep 0.2
    done
    t_storm=$(date +%s.%N)
    if [ "$restart" = 1 ]; then
        log "storm: restarting every herald process while the listeners are away"
        stop_pids "${HERALD_LIST[@]}"
        heralds
        log "restarted in $(awk -v a="$(date +%s.%N)" -v b="$t_storm" 'BEGIN{printf "%.1f", a - b}') s"
    fi
    wait "$bench" || die "herald-bench failed: $(tail -5 "$WORK/$name.progress")"
    touch "$samples.stop"
    wait "$sampler_pid" 2>/dev/null || true
    local r="$RESULTS/replay-$name.json"
    local back lost dups gaps expected
    back=$(jq -r '.storm.seconds_until_all_back // "never"' "$r")
    lost=$(jq -r '.events.lost' "$r")
    dups=$(jq -r '.events.duplicates' "$r")
    gaps=$(jq -r '.events.history_gaps' "$r")
    expected=$(jq -r '.events.expected' "$r")
    echo "listeners back and caught up: ${back} s after the drop (${AWAY} s of it away); reconnect failures $(jq -r '.storm.reconnect_failures' "$r")"
    echo "deliveries expected $expected: lost $lost, duplicated $dups, history-gap events $gaps; exactly once: $(jq -r '.storm.replayed_exactly_once' "$r")"
    echo "herald: replays $(stats_sum .replays_total), events replayed $(stats_sum .replayed_total), history_gaps_total $(stats_sum .history_gaps_total)"
    echo "history per process (largest): $(stats_max .history.events) events, $(stats_max .history.bytes) B, $(stats_max .history.users) users indexed"
    echo "stream range reads: warm-up $(stats_sum .history_warm_reads_total) (all processes), replay requests $(stats_sum .history_log_requests_total) served by $(stats_sum .history_log_reads_total) XREVRANGE reads"
    # CPU over the reconnect window: from the end of the away time to
    # everyone back (+1 s for the sampling step).
    if [ "$back" != never ]; then
        python3 - "$samples" "$t_storm" "$AWAY" "$back" "$HZ" <<'EOF'
import sys
path, t_storm, away, back, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
rows = [tuple(map(float, l.split())) for l in open(path) if len(l.split()) == 3]
start, end = t_storm + away - 1, t_storm + back + 1
win = [r for r in rows if start <= r[0] <= end]
if len(win) < 2:
    print("cpu per replayed event: too few samples")
else:
    # Restarted processes start their tick counts at 0: sum positive steps.
    ticks = sum(max(b[1] - a[1], 0) for a, b in zip(win, win[1:]))
    replayed = sum(max(b[2] - a[2], 0) for a, b in zip(win, win[1:]))
    cpu = ticks / hz
    per = cpu / replayed * 1e6 if replayed else float("nan")
    print(f"reconnect window {win[-1][0] - win[0][0]:.1f} s: herald CPU {cpu:.2f} s, {int(replayed)} events replayed: {per:.1f} us CPU per replayed event (live traffic in the window included)")
EOF
    fi
    stop_pids "${HERALD_LIST[@]}"
    rm -f "$samples.stop"
}

command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
storm live 0
storm restart 1
