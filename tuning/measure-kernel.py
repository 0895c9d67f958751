#!/usr/bin/env python3
"""Measures the kernel memory cost of idle loopback TCP connections.

Opens N idle connections on 127.0.0.1 (the accepting side registers every
socket with epoll, as herald does), then compares /proc/meminfo (Slab,
MemAvailable, PageTables) and /proc/net/sockstat before and after. The
per-process fd limit is usually far below N, so both sides are spread over
several processes of at most PER_PROC sockets each.

    python3 tuning/measure-kernel.py [N=60000] [PER_PROC=15000]

Afterwards every accepting socket sends one 200-byte SSE frame that the
client never reads, and the growth of the TCP buffer pages is printed: the
socket-buffer cost of one queued event per connection.

Prints bytes per connection pair (both ends on this box) and per socket end
(half of that: the server end of a real deployment; the client end lives on
the client's box). Noise: anything else the box does meanwhile; run it on a
quiet box and repeat.
"""

import multiprocessing as mp
import resource
import select
import socket
import sys
import time


EVENT_BYTES = 200


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, rest = line.split(":", 1)
            out[key] = int(rest.split()[0]) * 1024
    return out


def sockstat():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()[1:]
                return dict(zip(parts[::2], map(int, parts[1::2])))
    return {}


def slabinfo():
    """Bytes held per slab cache (active objects x object size); root only."""
    out = {}
    try:
        with open("/proc/slabinfo") as f:
            for line in f.readlines()[2:]:
                parts = line.split()
                out[parts[0]] = int(parts[1]) * int(parts[3])
    except PermissionError:
        pass
    return out


def raise_nofile():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def server(port_q, n, ready, send, done):
    raise_nofile()
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(4096)
    port_q.put(lst.getsockname()[1])
    ep = select.epoll()
    conns = []
    while len(conns) < n:
        c, _ = lst.accept()
        c.setblocking(False)
        ep.register(c.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        conns.append(c)
    ready.release()
    send.wait()
    frame = b"data: " + b"x" * (EVENT_BYTES - 8) + b"\n\n"
    for c in conns:
        c.send(frame)
    ready.release()
    done.wait()


def client(port, n, ready, done):
    raise_nofile()
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        conns.append(s)
    ready.release()
    done.wait()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60000
    per = int(sys.argv[2]) if len(sys.argv) > 2 else 15000
    procs = (n + per - 1) // per
    n = procs * per
    ctx = mp.get_context("fork")
    ready = ctx.Semaphore(0)
    send = ctx.Event()
    done = ctx.Event()
    port_q = ctx.Queue()

    # Start the processes first, so their own memory is in the baseline.
    servers = [ctx.Process(target=server, args=(port_q, per, ready, send, done)) for _ in range(procs)]
    for p in servers:
        p.start()
    ports = [port_q.get() for _ in range(procs)]
    time.sleep(1)
    before, ss_before, slab_before = meminfo(), sockstat(), slabinfo()

    clients = [ctx.Process(target=client, args=(port, per, ready, done)) for port in ports]
    for p in clients:
        p.start()
    for _ in range(2 * procs):
        ready.acquire()
    time.sleep(2)
    after, ss_after, slab_after = meminfo(), sockstat(), slabinfo()
    # One unread SSE frame per connection: what a slow reader costs.
    send.set()
    for _ in range(procs):
        ready.acquire()
    time.sleep(1)
    ss_sent, sent = sockstat(), meminfo()
    done.set()
    for p in servers + clients:
        p.join()

    def delta(key):
        return after[key] - before[key]

    slab = delta("Slab")
    print(f"connections (pairs): {n}  processes: {procs} servers + {procs} clients")
    print(f"sockstat TCP before: {ss_before}")
    print(f"sockstat TCP after:  {ss_after}")
    print(
        f"Slab +{slab / 2**20:.1f} MiB (SUnreclaim +{delta('SUnreclaim') / 2**20:.1f}, "
        f"SReclaimable +{delta('SReclaimable') / 2**20:.1f}), "
        f"PageTables +{delta('PageTables') / 2**20:.1f} MiB, "
        f"MemAvailable -{-delta('MemAvailable') / 2**20:.1f} MiB"
    )
    print(f"slab bytes per connection pair: {slab / n:.0f}")
    print(f"slab bytes per socket end:      {slab / (2 * n):.0f}")
    grown = sorted(
        ((slab_after.get(k, 0) - v, k) for k, v in slab_before.items()), reverse=True
    )
    print("largest slab caches growth (bytes per pair):")
    for d, k in grown[:10]:
        print(f"  {k:<24} {d / n:8.0f}")
    tcp_mem = ss_after.get("mem", 0) - ss_before.get("mem", 0)
    print(f"TCP buffer pages (sockstat mem) idle +{tcp_mem}  ({tcp_mem * 4096 / n:.0f} B/pair)")
    queued = ss_sent.get("mem", 0) - ss_after.get("mem", 0)
    print(
        f"one unread {EVENT_BYTES}-byte frame per connection: +{queued} pages "
        f"({queued * 4096 / n:.0f} B/connection charged to tcp_mem); "
        f"Slab +{(sent['Slab'] - after['Slab']) / n:.0f} B/connection, "
        f"MemAvailable -{(after['MemAvailable'] - sent['MemAvailable']) / n:.0f} B/connection"
    )


if __name__ == "__main__":
    main()
