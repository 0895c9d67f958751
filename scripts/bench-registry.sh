#!/usr/bin/env bash
# What presence and the Redis connection registry cost (issue #9): server CPU
# per new connection with each of them off and on, in one run, rounds
# alternating; plus Redis memory per registered connection and Redis CPU
# per connection (open and close).
#
#   sudo scripts/bench-registry.sh [LISTENERS] [ROUNDS]   # default 10000, 2
#
# Every listener is its own user in its own app (--jwt-apps LISTENERS), so
# presence events reach nobody: this measures the bookkeeping (counts,
# registry writes, announcements, the mirror), not the fan-out. The
# `fanout` configuration puts 100 users in each app to show what the events
# themselves add. One herald (WORKERS=2) and one redis-server, both on this
# box. Writes benchmarks/results/registry-*.json. Finishes within 10 minutes.

# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"

N=${1:-10000}
ROUNDS=${2:-2}
PORT=18090
ADMIN=19190
REDIS_PORT=16383

build
tune_kernel "$N"
start_redis "$REDIS_PORT"
REDIS_PID=${OWNED[-1]}
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

# CPU seconds (user + system) of a PID, from /proc.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }

echo "# registry: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
echo "# $N listeners, one herald WORKERS=2 (IO_BACKEND=auto), HEARTBEAT_SECONDS=0, $(nproc) cores"
printf '\n| configuration | round | herald CPU per connection (µs) | connect time (s) | Redis CPU per connection, open+close (µs) | Redis memory per connection (B) |\n| --- | --- | --- | --- | --- | --- |\n'

# one NAME APPS ENV...: one connect run against a fresh herald.
one() {
    local name=$1 apps=$2 round=$3
    shift 3
    rcli FLUSHALL >/dev/null
    local mem0 rcpu0 pid
    mem0=$(rcli INFO memory | awk -F: '/^used_memory:/ { print $2 + 0 }')
    rcpu0=$(cpu_s "$REDIS_PID")
    start_heralds 1 "$PORT" "$ADMIN" 2 HEARTBEAT_SECONDS=0 "$@"
    pid=${HERALD_LIST[0]}
    "$BENCH" connect -n "$N" --url "http://127.0.0.1:$PORT/sse" --jwt-secret "$JWT_SECRET" \
        --jwt-apps "$apps" --src 127.0.0.2-127.0.0.20 --hold 4s --server-pid "$pid" \
        --json-file "$RESULTS/registry-$name-$round.json" >"$WORK/$name-$round.out" 2>&1 &
    local bench=$! mem="-" registered=0 deadline=$((SECONDS + 60))
    # Redis memory once every stream is registered (the node's index holds N).
    if [[ " $* " == *" CONNECTION_REGISTRY=redis "* ]]; then
        while [ "$registered" -lt "$N" ] && [ $SECONDS -lt $deadline ] && kill -0 "$bench" 2>/dev/null; do
            sleep 0.2
            registered=$(rcli EVAL "local k = redis.call('KEYS', 'herald:n:*') if #k == 0 then return 0 end return redis.call('HLEN', k[1])" 0)
        done
        local mem1
        mem1=$(rcli INFO memory | awk -F: '/^used_memory:/ { print $2 + 0 }')
        mem=$(((mem1 - mem0) / N))
        [ "$registered" -ge "$N" ] || mem="$mem (only $registered registered)"
    fi
    wait "$bench" || die "herald-bench failed: $(tail -5 "$WORK/$name-$round.out")"
    stop_pids "$pid"
    local rcpu
    rcpu=$(awk -v a="$rcpu0" -v b="$(cpu_s "$REDIS_PID")" -v n="$N" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }')
    python3 - "$RESULTS/registry-$name-$round.json" "$name" "$round" "$rcpu" "$mem" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
s, c = r["server"], r["connect"]
assert c["open"] == c["requested"], f"only {c['open']} of {c['requested']} connected"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {s['cpu_per_conn_us']:.1f} | {c['seconds']:.2f} | "
      f"{sys.argv[4]} | {sys.argv[5]} |")
EOF
}

for ((round = 1; round <= ROUNDS; round++)); do
    one off "$N" "$round"
    one counted "$N" "$round" MAX_CONNECTIONS_PER_USER=100
    one presence "$N" "$round" INTERNAL_EVENTS_STRATEGY=generate
    one registry "$N" "$round" CONNECTION_REGISTRY=redis
    one all "$N" "$round" CONNECTION_REGISTRY=redis INTERNAL_EVENTS_STRATEGY=generate MAX_CONNECTIONS_PER_USER=100
    one fanout $((N / 100)) "$round" CONNECTION_REGISTRY=redis INTERNAL_EVENTS_STRATEGY=generate
done
