#!/usr/bin/env bash
# Stalled listeners and kernel memory (issue #11): STALLED listeners read the
# first events, then stop reading; one healthy listener reads everything.
# EVENTS events of SIZE bytes are published at RATE/s. Reports whether the
# healthy listener got every event, how many listeners herald cut as slow,
# and the kernel's TCP memory at its peak against the pressure threshold
# (tcp_mem[1]), the bytes in herald's own sockets' send queues (the kernel
# memory a stalled listener costs the server), and herald's RSS.
#
#   sudo scripts/bench-stalled.sh [STALLED] [EVENTS] [SIZE] [RATE]   # 1000 2000 8192 200
#
# HERALD=path/to/herald measures another build (e.g. an older commit) the
# same way. Writes benchmarks/results/stalled-<label>.json. Bounded: stops by
# itself within about EVENTS/RATE + 60 s.

# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"

STALLED=${1:-1000}
EVENTS=${2:-2000}
SIZE=${3:-8192}
RATE=${4:-200}
PORT=18095
ADMIN=19195
LABEL=${LABEL:-$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)}

if [ -z "${HERALD:-}" ]; then
    build
else
    log "using HERALD=$HERALD"
fi
# No kernel tuning here: the point is what default tcp_mem limits do.

env -i PATH="$PATH" LISTEN_ADDR="127.0.0.1:$PORT" ADMIN_ADDR="127.0.0.1:$ADMIN" WORKERS=2 \
    PIN_CORES=false ALLOW_ANONYMOUS=true HEARTBEAT_SECONDS=0 LOG_LEVEL=warn MAX_CONNECTIONS=19800 \
    "$HERALD" >"$WORK/herald.log" 2>&1 &
own $!
HPID=$!
wait_http "http://127.0.0.1:$ADMIN/health"

echo "# stalled: $(date -u '+%Y-%m-%d %H:%M UTC'), herald $LABEL, $STALLED stalled + 1 healthy listener," \
    "$EVENTS events of $SIZE B at $RATE/s, tcp_mem $(tr '\t' ' ' </proc/sys/net/ipv4/tcp_mem) pages"
python3 - "$PORT" "$ADMIN" "$STALLED" "$EVENTS" "$SIZE" "$RATE" "$RESULTS/stalled-$LABEL.json" "$HPID" <<'EOF'
import json, socket, sys, threading, time, urllib.request

port, admin, stalled, events, size, rate, out, hpid = sys.argv[1:9]
port, admin, stalled, events, size, rate = map(int, (port, admin, stalled, events, size, rate))

def server_queued():
    """Bytes in the send queues of herald's side of its connections."""
    total = 0
    for line in open("/proc/net/tcp").readlines()[1:]:
        f = line.split()
        if int(f[1].rsplit(":", 1)[1], 16) == port and f[2] != "00000000:0000":
            total += int(f[4].split(":")[0], 16)
    return total

def rss_kb():
    for line in open(f"/proc/{hpid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

def sse():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    return s

def tcp_mem_pages():
    for line in open("/proc/net/sockstat"):
        if line.startswith("TCP:"):
            f = line.split()
            return int(f[f.index("mem") + 1])
    return 0

stalled_socks = [sse() for _ in range(stalled)]
healthy = sse()
# The healthy listener reads in its own process (not behind this one's
# GIL, busy publishing and draining the stalled sockets).
import multiprocessing
got = multiprocessing.Value("i", 0)
def read_healthy(sock, got):
    buf = b""
    sock.settimeout(30)
    while got.value < events:
        try:
            chunk = sock.recv(1 << 16)
        except (socket.timeout, OSError):
            return
        if not chunk:
            return
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            if b"event: bulk" in block:
                got.value += 1
t = multiprocessing.Process(target=read_healthy, args=(healthy, got), daemon=True)
t.start()

# The stalled ones read the first 20 events (their windows open), then stop.
first = 20
def publish(i):
    body = json.dumps({"event": "bulk", "message": f"{i}:" + "x" * size}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{admin}/publish", data=body, method="POST")
    urllib.request.urlopen(req, timeout=10).read()

peak = queued_peak = rss_peak = 0
rss_before = rss_kb()
start = time.time()
for i in range(events):
    publish(i)
    if i == first:
        for s in stalled_socks:
            s.setblocking(False)
            try:
                while s.recv(1 << 16):
                    pass
            except BlockingIOError:
                pass
    peak = max(peak, tcp_mem_pages())
    if i % 10 == 0:
        queued_peak = max(queued_peak, server_queued())
        rss_peak = max(rss_peak, rss_kb())
    delay = start + (i + 1) / rate - time.time()
    if delay > 0:
        time.sleep(delay)
t.join(timeout=30)
stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=10))
pressure = int(open("/proc/sys/net/ipv4/tcp_mem").read().split()[1])
report = {
    "healthy_received": got.value, "events": events, "stalled": stalled, "size": size,
    "slow_disconnects": stats["slow_disconnects_total"],
    "tcp_mem_peak_pages": peak, "tcp_mem_pressure_pages": pressure,
    "server_send_queues_peak_bytes": queued_peak,
    "herald_rss_before_kb": rss_before, "herald_rss_peak_kb": rss_peak,
}
json.dump(report, open(out, "w"), indent=1)
print(f"| healthy listener got {got.value} of {events} | cut as slow: "
      f"{stats['slow_disconnects_total']} of {stalled} | TCP memory peak "
      f"{peak} pages ({peak * 4 // 1024} MiB), {100 * peak // pressure} % of the pressure threshold | "
      f"herald's send queues at peak {queued_peak // 1024} KiB ({queued_peak // stalled} B per stalled listener) | "
      f"herald RSS {rss_before // 1024} -> {rss_peak // 1024} MiB |")
for s in stalled_socks:
    s.close()
EOF
