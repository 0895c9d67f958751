#!/usr/bin/env bash
# Hostile load (issue #11), two scenarios against one herald each:
#   fd-limit  herald with an open-file limit of FDS (prlimit); CLIENTS clients
#             connect, 200 at a time: how long until each gets an answer
#             (200 or 503), and how many log lines herald writes per second.
#   admin     200 unauthenticated clients start a POST /publish and stall;
#             then 20 authorized publishes: how long each takes.
# (Stalled listeners and kernel memory: scripts/bench-stalled.sh.)
#
#   sudo scripts/bench-hostile.sh [FDS] [CLIENTS]      # default 2000 3000
#
# HERALD=path/to/herald measures another build. Writes
# benchmarks/results/hostile-<label>.json. Stops by itself within ~2 minutes.

# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"

FDS=${1:-2000}
CLIENTS=${2:-3000}
PORT=18096
ADMIN=19196
LABEL=${LABEL:-$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)}
PUBLISH_TOKEN=bench-publish

if [ -z "${HERALD:-}" ]; then
    build
else
    log "using HERALD=$HERALD"
fi

start_one() {
    env -i PATH="$PATH" LISTEN_ADDR="127.0.0.1:$PORT" ADMIN_ADDR="127.0.0.1:$ADMIN" WORKERS=2 \
        PIN_CORES=false ALLOW_ANONYMOUS=true HEARTBEAT_SECONDS=0 LOG_LEVEL=info \
        PUBLISH_TOKEN=$PUBLISH_TOKEN "$@" >"$WORK/herald.log" 2>&1 &
    own $!
    HPID=$!
    wait_http "http://127.0.0.1:$ADMIN/health"
}

echo "# hostile: $(date -u '+%Y-%m-%d %H:%M UTC'), herald $LABEL"

# fd-limit
start_one prlimit --nofile="$FDS:$FDS" "$HERALD"
python3 - "$PORT" "$CLIENTS" "$WORK/herald.log" "$RESULTS/hostile-fd-$LABEL.json" "$FDS" <<'EOF'
import json, socket, sys, time
from concurrent.futures import ThreadPoolExecutor

port, clients, logpath, out, fds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
port = int(port)
lines_before = sum(1 for _ in open(logpath))
held = []

def one(i):
    t = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(10)
    s.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        head = s.recv(64)
    except socket.timeout:
        head = b""
    took = time.time() - t
    status = head[9:12].decode(errors="replace") if head else "none"
    if status == "200":
        held.append(s)  # served ones stay listeners
    else:
        s.close()  # as a browser's EventSource does on an error status
    return took, status

start = time.time()
with ThreadPoolExecutor(200) as pool:
    results = list(pool.map(one, range(clients)))
elapsed = time.time() - start
lines = sum(1 for _ in open(logpath)) - lines_before
took = sorted(r[0] for r in results)
statuses = {}
for _, st in results:
    statuses[st] = statuses.get(st, 0) + 1
report = {
    "fds": int(fds), "clients": clients, "statuses": statuses,
    "answered_within_1s": sum(1 for t in took if t < 1.0),
    "p50_s": took[len(took) // 2], "p99_s": took[len(took) * 99 // 100], "max_s": took[-1],
    "log_lines": lines, "seconds": elapsed, "log_lines_per_s": lines / max(elapsed, 1.0),
}
json.dump(report, open(out, "w"), indent=1)
print(f"| fd limit {fds}, {clients} clients | answers {statuses} | within 1 s: "
      f"{report['answered_within_1s']} of {clients} | p99 {report['p99_s']:.3f} s, max "
      f"{report['max_s']:.3f} s | {lines} log lines in {elapsed:.1f} s |")
for s in held:
    s.close()
EOF
stop_pids "$HPID"

# admin
start_one "$HERALD"
python3 - "$ADMIN" "$PUBLISH_TOKEN" "$RESULTS/hostile-admin-$LABEL.json" <<'EOF'
import json, socket, sys, time

admin, token, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
stalled = []
for _ in range(200):
    s = socket.create_connection(("127.0.0.1", admin), timeout=10)
    s.sendall(b"POST /publish HTTP/1.1\r\n")
    stalled.append(s)
time.sleep(0.2)
took = []
body = b'{"message":"authorized"}'
for _ in range(20):
    t = time.time()
    s = socket.create_connection(("127.0.0.1", admin), timeout=10)
    s.settimeout(10)
    s.sendall(b"POST /publish HTTP/1.1\r\nAuthorization: Bearer " + token.encode() +
              b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    head = s.recv(64)
    took.append(time.time() - t)
    assert head.startswith(b"HTTP/1.1 202"), head
    s.close()
report = {"stalled": 200, "publishes": 20, "max_s": max(took), "median_s": sorted(took)[10]}
json.dump(report, open(out, "w"), indent=1)
print(f"| admin with 200 stalled unauthenticated POSTs | 20 authorized publishes: median "
      f"{report['median_s'] * 1000:.1f} ms, max {report['max_s'] * 1000:.1f} ms |")
for s in stalled:
    s.close()
EOF
stop_pids "$HPID"

# publish: one broadcast batch of PUBLISH_MAX_BATCH envelopes within
# PUBLISH_MAX_BYTES (refused: more than one listener may take at once), then
# the same batch aimed at as many different users (accepted): herald's RSS
# per accepted envelope, and whether a listener reading at full speed was
# cut.
start_one "$HERALD"
python3 - "$PORT" "$ADMIN" "$PUBLISH_TOKEN" "$HPID" "$RESULTS/hostile-publish-$LABEL.json" <<'EOF2'
import json, socket, sys, threading, time, urllib.error, urllib.request

port, admin, token, hpid, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

def rss_kb():
    for line in open(f"/proc/{hpid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
got, closed = [0], [False]
def read():
    buf = b""
    s.settimeout(10)
    while True:
        try:
            chunk = s.recv(1 << 16)
        except socket.timeout:
            return
        if not chunk:
            closed[0] = True
            return
        buf += chunk
        got[0] += buf.count(b"event: bulk")
        buf = buf[buf.rfind(b"\n\n") + 2:] if b"\n\n" in buf else buf
t = threading.Thread(target=read, daemon=True)
t.start()
time.sleep(0.2)
n = 10000
def batch(targeted):
    return json.dumps([dict({"event": "bulk", "message": "m%05d" % i + "x" * 40},
                            **({"to": "u%d" % i} if targeted else {})) for i in range(n)]).encode()
def post(body):
    req = urllib.request.Request(f"http://127.0.0.1:{admin}/publish", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        return urllib.request.urlopen(req, timeout=30).status
    except urllib.error.HTTPError as e:
        return e.code
bcast_status = post(batch(False))
targeted = batch(True)
assert len(targeted) <= 1 << 20, len(targeted)
before = rss_kb()
peak = [before]
stop = [False]
def sample():
    while not stop[0]:
        peak[0] = max(peak[0], rss_kb())
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
t0 = time.time()
status = post(targeted)
took = time.time() - t0
time.sleep(2)
stop[0] = True
report = {"envelopes": n, "body_bytes": len(targeted), "broadcast_status": bcast_status,
          "status": status, "publish_s": took,
          "rss_before_kb": before, "rss_peak_kb": peak[0],
          "rss_per_envelope_bytes": (peak[0] - before) * 1024 / n,
          "listener_got": got[0], "listener_cut": closed[0]}
json.dump(report, open(out, "w"), indent=1)
print(f"| {n} envelopes, {len(targeted) // 1024} KiB | broadcast batch: {bcast_status}; to {n} "
      f"users: {status} in {took * 1000:.0f} ms | herald RSS {before // 1024} -> {peak[0] // 1024} MiB "
      f"({report['rss_per_envelope_bytes']:.0f} B per accepted envelope) | full-speed listener "
      f"{'cut as slow' if closed[0] else 'still open'} |")
EOF2
stop_pids "$HPID"
