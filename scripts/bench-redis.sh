#!/usr/bin/env bash
# Redis ingest under load (issue #3): how many envelopes per second herald
# keeps up with from one Redis channel while N listeners are connected,
# broadcast and targeted, and where the time goes.
#
#   sudo scripts/bench-redis.sh [LISTENERS] [BROADCAST_RATES] [TARGETED_RATES]
#   sudo scripts/bench-redis.sh 100000 "1 2 4" "1000 5000 20000"
#
# N listeners need N/18,000 herald processes here (20,000-fd cap), all
# sharing one SO_REUSEPORT port and all subscribed to the same channel, so
# every process decodes every envelope. For each rate, herald-bench connects
# the listeners, PUBLISHes for 10 s at that rate (broadcast: every listener;
# targeted: one random user per event), and reports loss and publish →
# delivery latency. A rate is "kept up with" when nothing is lost and p99
# stays under 1 s. Results: benchmarks/results/redis-*.json.

# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"

LISTENERS=${1:-100000}
BROADCAST_RATES=${2:-"1 2 4"}
TARGETED_RATES=${3:-"1000 5000 20000"}
PORT=28180
ADMIN_BASE=29100
REDIS_PORT=16479
SECONDS_PER_RUN=10

build
PROCS=$(procs_for "$LISTENERS")
tune_kernel "$LISTENERS"
start_redis "$REDIS_PORT"
start_heralds "$PROCS" "$PORT" "$ADMIN_BASE" 1 HEARTBEAT_SECONDS=0

echo "# herald Redis ingest: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
echo "# $LISTENERS listeners over $PROCS herald processes (WORKERS=1) on 127.0.0.1:$PORT,"
echo "# all subscribed to Redis channel 'herald' (127.0.0.1:$REDIS_PORT); clients on this box too."

run_rate() {
    local kind=$1 to=$2 rate=$3
    run_bench "redis-$kind-$rate" fanout -n "$LISTENERS" --url "http://127.0.0.1:$PORT/sse" \
        --jwt-secret "$JWT_SECRET" --src "$SRC" --server-pid "$HERALD_PIDS" \
        --pub "redis://127.0.0.1:$REDIS_PORT" --to "$to" \
        --events $((rate * SECONDS_PER_RUN)) --event-rate "$rate" --drain 20s --hold 1s \
        --deadline 240s
}

for rate in $BROADCAST_RATES; do run_rate broadcast all "$rate"; done
for rate in $TARGETED_RATES; do run_rate targeted random:1 "$rate"; done

redis_cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$(pgrep -f "redis-server 127.0.0.1:$REDIS_PORT" | head -1)/stat" 2>/dev/null || echo "?")
echo
echo "redis-server CPU over the whole run: ${redis_cpu} s"
# shellcheck disable=SC2086 # the rate lists are meant to split into words
python3 - "$RESULTS" $BROADCAST_RATES -- $TARGETED_RATES <<'PY'
import json, sys
results, args = sys.argv[1], sys.argv[2:]
split = args.index("--")
runs = [("broadcast", r) for r in args[:split]] + [("targeted", r) for r in args[split + 1:]]
print(f"\n{'kind':<10} {'rate/s':>7} {'achieved':>9} {'delivered':>11} {'lost':>6} "
      f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'srv CPU s':>9} {'µs/deliv':>8}  kept up")
for kind, rate in runs:
    d = json.load(open(f"{results}/redis-{kind}-{rate}.json"))
    e, s = d["events"], d["server"]
    lat = e["latency_ms"]
    ok = e["lost"] == 0 and lat["p99"] <= 1000
    print(f"{kind:<10} {rate:>7} {e['achieved_rate_per_s']:>9.1f} {e['delivered']:>11} {e['lost']:>6} "
          f"{lat['p50']:>8.1f} {lat['p99']:>8.1f} {lat['max']:>8.1f} {s['events_cpu_s']:>9.2f} "
          f"{s['cpu_per_delivery_ns'] / 1000:>8.1f}  {'yes' if ok else 'NO'}")
PY
