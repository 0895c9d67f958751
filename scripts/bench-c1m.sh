#!/usr/bin/env bash
# The headline: as many SSE listeners as this box holds (target 2,000,000),
# then one broadcast to all of them.
#
#   sudo scripts/bench-c1m.sh [TARGET]        # default 2000000
#
# This box caps every process at 20,000 file descriptors, so herald runs as
# TARGET/18,000 processes sharing one port with SO_REUSEPORT (one reactor
# each), all fed by one Redis channel; herald-bench spreads its side over as
# many client processes. Both ends live on this box, so the kernel figures
# cover two sockets per listener. herald-bench stops opening connections when
# MemAvailable falls below 1 GiB; "as many as this box holds" is where that
# happens, or TARGET.
#
# Writes benchmarks/results/c1m-herald.json. Finishes within 10 minutes.

# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"

TARGET=${1:-2000000}
PORT=28080
ADMIN_BASE=29000
REDIS_PORT=16379

build
PROCS=$(procs_for "$TARGET")
log "c1m: $TARGET listeners over $PROCS herald processes"
tune_kernel "$TARGET"
start_redis "$REDIS_PORT"
# Heartbeats off: these are idle listeners and a run lasts minutes (at 30 s
# a heartbeat would be 66K writes/s at 2M).
start_heralds "$PROCS" "$PORT" "$ADMIN_BASE" 1 HEARTBEAT_SECONDS=0

echo "# herald c1m: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
echo "# $PROCS herald processes (WORKERS=1 each) on 127.0.0.1:$PORT with SO_REUSEPORT,"
echo "# all subscribed to Redis channel 'herald' (127.0.0.1:$REDIS_PORT); HEARTBEAT_SECONDS=0;"
echo "# one HS256 JWT per listener; herald-bench's clients and the servers share this box."
run_bench c1m-herald fanout -n "$TARGET" --url "http://127.0.0.1:$PORT/sse" \
    --jwt-secret "$JWT_SECRET" --src "$SRC" --server-pid "$HERALD_PIDS" \
    --rate 15000 --inflight 4000 --connect-timeout 30s --hold 5s --min-available 2048 \
    --pub "redis://127.0.0.1:$REDIS_PORT" --events 1 --drain 90s \
    --deadline 450s
python3 "$REPO/scripts/bench-report.py" headline "$RESULTS/c1m-herald.json"
log "stopping $PROCS herald processes and redis"
