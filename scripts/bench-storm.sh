#!/usr/bin/env bash
# Reconnect storm: 100,000 listeners over 6 herald processes (one
# SO_REUSEPORT port), 10 events/s; after 20 events every listener drops and
# reconnects with Last-Event-ID while events keep flowing. Run twice: fed by
# Redis Pub/Sub (each process assigns its own event ids) and by a Redis
# stream (the entry id is the event id on every process).
#
#   sudo scripts/bench-storm.sh [LISTENERS]       # default 100000
#
# Writes benchmarks/results/storm-*.json. Finishes within 5 minutes.

# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"

N=${1:-100000}
PORT=18080
ADMIN_BASE=19100
REDIS_PORT=16382

build
PROCS=$(procs_for "$N")
tune_kernel "$N"
start_redis "$REDIS_PORT"
echo "# storm: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
echo "# $PROCS herald processes (WORKERS=1, HISTORY_SIZE=1000, HEARTBEAT_SECONDS=0) on one SO_REUSEPORT port"

# storm NAME ENV PUB-OPTIONS...: one storm run on fresh herald processes.
storm() {
    local name=$1 source=$2
    shift 2
    start_heralds "$PROCS" "$PORT" "$ADMIN_BASE" 1 HEARTBEAT_SECONDS=0 HISTORY_SIZE=1000 "$source"
    echo
    echo "## fed by $source"
    run_bench "storm-$name" storm -n "$N" --url "http://127.0.0.1:$PORT/sse" \
        --jwt-secret "$JWT_SECRET" --src "$SRC" --server-pid "$HERALD_PIDS" \
        --rate 15000 --inflight 4000 --connect-timeout 30s --hold 2s \
        --events 200 --event-rate 10 --storm-after 20 --drain 30s --deadline 240s \
        --pub "redis://127.0.0.1:$REDIS_PORT" "$@"
    stop_pids "${HERALD_LIST[@]}"
}

storm pubsub REDIS_CHANNEL=herald --pub-kind redis
storm stream REDIS_STREAM=herald-stream --pub-kind redis-stream
