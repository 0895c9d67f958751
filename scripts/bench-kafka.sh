#!/usr/bin/env bash
# Kafka ingest next to Redis streams (issue #12): LISTENERS listeners
# (default 10,000) on one herald (WORKERS=2) fed by both a Kafka-protocol
# broker (tansu, one partition) and a Redis stream. Four runs of
# herald-bench fanout on the same herald, alternating the source:
#   broadcast: BCAST_RATE events/s to everyone (default 20/s),
#   targeted:  TARGET_RATE events/s, each to one random user (default 2,000/s),
# each EVENTS_SECONDS long (default 20). herald-bench measures publish ->
# delivery latency (for Kafka: produce acked -> delivered) and herald's CPU.
#
#   sudo scripts/bench-kafka.sh [LISTENERS]
#
# Prints one line per run; the JSON reports go to benchmarks/results/kafka-*.json.
# Needs tansu (scripts/test.sh installs it). Finishes within 6 minutes.

# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"

N=${1:-10000}
BCAST_RATE=${BCAST_RATE:-20}
TARGET_RATE=${TARGET_RATE:-2000}
SECONDS_EACH=${EVENTS_SECONDS:-20}
# herald's KAFKA_FETCH_WAIT_MS (tansu 0.6 holds every fetch for part of it).
FETCH_WAIT=${FETCH_WAIT:-100}
PORT=18100
ADMIN=19300
REDIS_PORT=16384
KAFKA_PORT=19092

TANSU=$(command -v tansu || echo "$HOME/.cargo/bin/tansu")
[ -x "$TANSU" ] || die "tansu is not installed (scripts/test.sh installs it)"

build
tune_kernel "$N"
start_redis "$REDIS_PORT"
mkdir -p "$WORK/tansu"
(cd "$WORK/tansu" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1) &
own $!
wait_port "$KAFKA_PORT"
"$TANSU" topic create --broker "tcp://127.0.0.1:$KAFKA_PORT" --partitions 1 herald >/dev/null

start_heralds 1 "$PORT" "$ADMIN" 2 HEARTBEAT_SECONDS=0 REDIS_STREAM=herald-stream \
    KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" KAFKA_TOPICS=herald KAFKA_FETCH_WAIT_MS="$FETCH_WAIT"
until curl -sf "http://127.0.0.1:$ADMIN/health" | grep -q '"kafka":"up"'; do sleep 0.2; done

echo "# kafka vs redis streams: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
echo "# one herald (WORKERS=2, KAFKA_FETCH_WAIT_MS=$FETCH_WAIT) fed by $("$TANSU" --version 2>/dev/null | head -1) (1 partition, memory storage) and redis-server; $N listeners"
echo "# source    audience    events/s  delivered/s   p50 ms   p99 ms   herald CPU s   CPU us/event"

run() {
    local source=$1 audience=$2 rate=$3 pub
    local events=$((rate * SECONDS_EACH)) name="kafka-$source-$audience"
    case $source in
    kafka) pub=(--pub "kafka://127.0.0.1:$KAFKA_PORT" --pub-kind kafka --kafka-topic herald) ;;
    redis) pub=(--pub "redis://127.0.0.1:$REDIS_PORT" --pub-kind redis-stream --redis-stream herald-stream) ;;
    esac
    local to=(--to all)
    [ "$audience" = targeted ] && to=(--to random:1)
    "$BENCH" fanout -n "$N" --url "http://127.0.0.1:$PORT/sse" --jwt-secret "$JWT_SECRET" \
        --src "$SRC" --rate 20000 --hold 2s "${pub[@]}" "${to[@]}" \
        --events "$events" --event-rate "$rate" --drain 20s --deadline 120s \
        --server-pid "$HERALD_PIDS" --json-file "$RESULTS/$name.json" \
        >"$WORK/$name.summary" 2>"$WORK/$name.progress" ||
        die "herald-bench failed: $(tail -5 "$WORK/$name.progress")"
    jq -r --arg s "$source" --arg a "$audience" --argjson n "$events" '
        [$s, $a, .events.achieved_rate_per_s, .events.deliveries_per_s,
         .events.latency_ms.p50, .events.latency_ms.p99, .server.events_cpu_s,
         (.server.events_cpu_s / $n * 1e6), .events.lost, .events.duplicates] | @tsv' \
        "$RESULTS/$name.json" |
        awk -F'\t' '{printf "%-10s %-10s %9.0f %12.0f %8.1f %8.1f %14.2f %14.1f   lost %d, duplicated %d\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}'
}

for audience in broadcast targeted; do
    rate=$BCAST_RATE
    [ "$audience" = targeted ] && rate=$TARGET_RATE
    run kafka "$audience" "$rate"
    run redis "$audience" "$rate"
done
echo
echo "herald /stats kafka_partitions: $(curl -sf "http://127.0.0.1:$ADMIN/stats" | jq -c .kafka_partitions)"
