# shellcheck shell=bash disable=SC2034 # sets variables for the scripts that source it
# Shared by bench-c1m.sh and bench-vs-nchan.sh (source it; do not run it).
#
# - build: release herald + herald-bench ($HERALD, $BENCH)
# - sysctl_set / restore: every kernel setting changed is saved first, listed,
#   and put back on exit
# - own / stop_pids: only processes started here are ever signalled, by PID
# - start_redis, start_heralds (N processes on one SO_REUSEPORT port, one
#   Redis channel), start_nchan (nginx + nchan, N workers, reuseport)
#
# Everything lives under $WORK (a fresh temp dir); results go to $RESULTS.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/herald-bench.XXXXXX)
RESULTS=${RESULTS:-$REPO/benchmarks/results}
JWT_SECRET=bench-secret
# Source addresses for the clients: 253 x ~64K ports, far beyond 2M.
SRC=127.0.0.2-127.0.0.254
# Each process may hold this many sockets (hard RLIMIT_NOFILE here: 20000).
PER_PROC=18000

OWNED=()
SYSCTL_SAVED=()

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (sysctls, packages)"
mkdir -p "$RESULTS"

# build: release binaries of this checkout, unless HERALD and BENCH already
# name executables (to measure a build of a given commit).
build() {
    if [ -x "${HERALD:-}" ] && [ -x "${BENCH:-}" ]; then
        log "using HERALD=$HERALD BENCH=$BENCH"
        return
    fi
    local target=${CARGO_TARGET_DIR:-$REPO/target}
    log "building herald and herald-bench (release, $target)"
    (cd "$REPO" && cargo build --release --quiet --bin herald --bin herald-bench)
    HERALD=$target/release/herald
    BENCH=$target/release/herald-bench
}

sysctl_set() {
    local key=$1 value=$2 old
    old=$(sysctl -n "$key" 2>/dev/null) || {
        log "sysctl $key: not on this kernel, skipped"
        return 0
    }
    old=$(echo "$old" | tr -s '\t ' ' ')
    SYSCTL_SAVED+=("$key=$old")
    sysctl -qw "$key=$value"
    log "sysctl $key: '$old' -> '$value' (restored on exit)"
}

sysctl_restore() {
    local i kv
    for ((i = ${#SYSCTL_SAVED[@]} - 1; i >= 0; i--)); do
        kv=${SYSCTL_SAVED[$i]}
        sysctl -qw "$kv" && log "sysctl restored: $kv"
    done
    SYSCTL_SAVED=()
}

# The kernel settings a run with $1 connections (both ends on this box) needs.
tune_kernel() {
    local conns=$1
    local files=$((conns * 2 + 200000))
    sysctl_set net.ipv4.ip_local_port_range "1024 65535"
    sysctl_set net.core.somaxconn 65535
    sysctl_set net.ipv4.tcp_max_syn_backlog 65535
    sysctl_set net.core.netdev_max_backlog 65535
    if [ "$(sysctl -n fs.file-max)" -lt "$files" ]; then
        sysctl_set fs.file-max "$files"
    fi
    if [ "$(sysctl -n fs.epoll.max_user_watches)" -lt "$files" ]; then
        sysctl_set fs.epoll.max_user_watches "$files"
    fi
    if [ -e /proc/sys/net/netfilter/nf_conntrack_max ] &&
        [ "$(sysctl -n net.netfilter.nf_conntrack_max)" -lt "$files" ]; then
        sysctl_set net.netfilter.nf_conntrack_max "$files"
    fi
    # Room for one queued event on every socket at once (pages).
    local pages=$((conns / 2 + 600000))
    sysctl_set net.ipv4.tcp_mem "$pages $((pages * 3 / 2)) $((pages * 2))"
}

own() { OWNED+=("$@"); }

# stop_pids PID...: SIGTERM, wait up to 60 s, SIGKILL what is left; only ever
# PIDs this script started (and forgets them, so a reused PID is never hit).
stop_pids() {
    local pid deadline left=()
    [ $# -gt 0 ] || return 0
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 60))
    for pid in "$@"; do
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not stop; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    for pid in "${OWNED[@]}"; do
        [[ " $* " == *" $pid "* ]] || left+=("$pid")
    done
    OWNED=("${left[@]}")
}

cleanup() {
    local rc=$?
    stop_pids "${OWNED[@]}"
    sysctl_restore
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_http URL [seconds]: until URL answers 2xx.
wait_http() {
    local url=$1 limit=${2:-20} deadline
    deadline=$((SECONDS + limit))
    until curl -sf -o /dev/null --max-time 1 "$url"; do
        [ $SECONDS -lt $deadline ] || die "$url did not answer within ${limit}s"
        sleep 0.1
    done
}

# wait_port PORT: until 127.0.0.1:PORT accepts connections (10 s at most).
wait_port() {
    local deadline=$((SECONDS + 10))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || die "nothing listens on 127.0.0.1:$1"
        sleep 0.1
    done
}

# start_redis PORT: a throwaway redis-server (no persistence).
start_redis() {
    local port=$1
    command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install redis-server)"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --logfile "$WORK/redis-$port.log" &
    own $!
    wait_port "$port"
}

# start_heralds COUNT PORT ADMIN_BASE WORKERS [ENV=VALUE...]: COUNT herald
# processes sharing PORT (SO_REUSEPORT), admin on ADMIN_BASE+k, all fed by the
# Redis channel "herald" on $REDIS_PORT. Sets HERALD_LIST (array) and
# HERALD_PIDS (comma list).
start_heralds() {
    local count=$1 port=$2 admin=$3 workers=$4 k
    shift 4
    local pids=()
    for ((k = 0; k < count; k++)); do
        env -i PATH="$PATH" LISTEN_ADDR="127.0.0.1:$port" ADMIN_ADDR="127.0.0.1:$((admin + k))" \
            WORKERS="$workers" PIN_CORES=false JWT_SECRET="$JWT_SECRET" LOG_LEVEL=warn \
            REDIS_URL="redis://127.0.0.1:$REDIS_PORT" REDIS_CHANNEL=herald \
            MAX_CONNECTIONS=19800 "$@" \
            "$HERALD" >"$WORK/herald-$k.log" 2>&1 &
        own $!
        pids+=($!)
    done
    for ((k = 0; k < count; k++)); do wait_http "http://127.0.0.1:$((admin + k))/health"; done
    HERALD_LIST=("${pids[@]}")
    HERALD_PIDS=$(
        IFS=,
        echo "${pids[*]}"
    )
}

# start_nchan WORKERS PORT: nginx with the nchan module, WORKERS worker
# processes, each on its own reuseport listener; /sse subscribes to channel
# "bench" (EventSource, new messages only), /pub publishes to it. Sets
# NCHAN_MASTER and NCHAN_PIDS (master and workers, comma list).
start_nchan() {
    local workers=$1 port=$2 module=/usr/lib/nginx/modules/ngx_nchan_module.so
    [ -e "$module" ] || die "nchan module missing: $module"
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<EOF
load_module $module;
worker_processes $workers;
worker_rlimit_nofile 20000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 19900; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    server {
        listen 127.0.0.1:$port reuseport backlog=65535;
        location = /sse {
            nchan_subscriber eventsource;
            nchan_channel_id bench;
            nchan_subscriber_first_message newest;
        }
        location = /pub {
            nchan_publisher;
            nchan_channel_id bench;
            nchan_message_buffer_length 100;
        }
    }
}
EOF
    nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -g 'daemon off;' &
    own $!
    NCHAN_MASTER=$!
    local master=$! deadline=$((SECONDS + 20))
    until [ "$(pgrep -c -P "$master" || true)" -ge "$workers" ]; do
        [ $SECONDS -lt $deadline ] || die "nginx did not start its workers; $(cat "$WORK/nginx/error.log")"
        sleep 0.1
    done
    wait_port "$port"
    NCHAN_PIDS=$(pgrep -P "$master" | tr '\n' , | sed "s/^/$master,/; s/,\$//")
}

# procs_for N: server processes needed for N listeners.
procs_for() { echo $((($1 + PER_PROC - 1) / PER_PROC)); }

# run_bench NAME ARGS...: runs herald-bench, prints its summary, and keeps its
# JSON report as $RESULTS/NAME.json. Progress lines go to $WORK/NAME.progress.
run_bench() {
    local name=$1
    shift
    echo
    echo "\$ herald-bench $*"
    "$BENCH" "$@" --json-file "$RESULTS/$name.json" 2>"$WORK/$name.progress" ||
        die "herald-bench failed: $(tail -5 "$WORK/$name.progress")"
}
