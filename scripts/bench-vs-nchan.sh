#!/usr/bin/env bash
# herald vs nchan: the same herald-bench workloads against each server, one
# after the other, on fresh server processes for every run, then a
# side-by-side table with herald/nchan ratios and the plot.
#
#   sudo scripts/bench-vs-nchan.sh
#
# Workloads (each a herald-bench fanout run: its connect phase gives the
# connection figures, then broadcasts):
#   10k       10,000 listeners, 10 broadcasts at 2/s
#   100k      100,000 listeners, 5 broadcasts at 1/s
#   1m        1,000,000 listeners, 1 broadcast
#   rate-10k  10,000 listeners, 100 broadcasts/s for 5 s (high rate)
#
# Up to 18,000 listeners: one herald process with one reactor per core, and
# nginx with one worker per core. Beyond, the 20,000-fd cap forces N/18,000
# herald processes (one reactor each, SO_REUSEPORT on one port, fed by one
# Redis channel) and as many nginx workers (reuseport). herald checks a
# fresh HS256 JWT per listener; nchan has no JWT support and takes every
# subscriber as is. Heartbeats are off on both (nchan's default).
#
# Installs nginx and the nchan module with apt-get when missing. Writes
# $RESULTS/vs-*.json (default benchmarks/results) and the plot next to that
# directory (benchmarks/herald-vs-nchan.svg; or $PLOT).
# Finishes within 10 minutes.

# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"

HERALD_PORT=18080
HERALD_ADMIN=19100
NCHAN_PORT=18090
REDIS_PORT=16380
CORES=$(nproc)

install_nchan() {
    if command -v nginx >/dev/null && [ -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
        return
    fi
    log "installing nginx and libnginx-mod-nchan (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q nginx libnginx-mod-nchan >"$WORK/apt.log" 2>&1 ||
        { apt-get update -q >>"$WORK/apt.log" 2>&1 &&
            apt-get install -y -q nginx libnginx-mod-nchan >>"$WORK/apt.log" 2>&1; } ||
        die "apt-get failed: $(tail -5 "$WORK/apt.log")"
}

# workload NAME LISTENERS EVENTS RATE: one run against herald, one against nchan.
workload() {
    local name=$1 n=$2 events=$3 rate=$4 procs workers
    procs=$(procs_for "$n")
    if [ "$procs" -le 1 ]; then
        procs=1 workers=$CORES
    else
        workers=1
    fi
    local common=(-n "$n" --src "$SRC" --rate 15000 --inflight 4000 --connect-timeout 30s
        --hold 3s --events "$events" --event-rate "$rate" --drain 30s --deadline 240s)

    start_heralds "$procs" "$HERALD_PORT" "$HERALD_ADMIN" "$workers" HEARTBEAT_SECONDS=0
    echo
    echo "## $name on herald: $procs process(es) x WORKERS=$workers"
    run_bench "vs-$name-herald" fanout "${common[@]}" --url "http://127.0.0.1:$HERALD_PORT/sse" \
        --jwt-secret "$JWT_SECRET" --server-pid "$HERALD_PIDS" --pub "redis://127.0.0.1:$REDIS_PORT"
    stop_pids "${HERALD_LIST[@]}"

    start_nchan $((procs * workers)) "$NCHAN_PORT"
    echo
    echo "## $name on nchan: $((procs * workers)) nginx worker(s)"
    run_bench "vs-$name-nchan" fanout "${common[@]}" --url "http://127.0.0.1:$NCHAN_PORT/sse" \
        --server-pid "$NCHAN_PIDS" --pub "http://127.0.0.1:$NCHAN_PORT/pub" --pub-kind nchan
    stop_pids "$NCHAN_MASTER"
}

install_nchan
build
tune_kernel 1000000
start_redis "$REDIS_PORT"

echo "# herald vs nchan: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
echo "# $(nginx -v 2>&1), nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null)"
echo "# $CORES cores; both servers and herald-bench on this box; herald with JWT, nchan without auth"
workload 10k 10000 10 2
workload 100k 100000 5 1
workload 1m 1000000 1 1
workload rate-10k 10000 500 100

echo
echo "## herald vs nchan"
python3 "$REPO/scripts/bench-report.py" table "$RESULTS"
PLOT=${PLOT:-$(dirname "$RESULTS")/herald-vs-nchan.svg}
python3 "$REPO/scripts/bench-report.py" plot "$RESULTS" "$PLOT"
log "plot: $PLOT"
