#!/usr/bin/env python3
"""Tables and the plot for BENCHMARKS.md, from herald-bench --json reports.

    bench-report.py headline RESULT.json        the c1m summary and its goals
    bench-report.py table RESULTS_DIR           herald vs nchan, side by side
    bench-report.py plot RESULTS_DIR OUT.svg    latency and memory per listener
                                                vs listeners, both servers

`table` and `plot` read RESULTS_DIR/vs-<name>-herald.json and
vs-<name>-nchan.json (written by bench-vs-nchan.sh), plus c1m-herald.json if
present. Standard library only: the SVG is written by hand.
"""

import json
import math
import os
import sys

SERVERS = ("herald", "nchan")


def load(path):
    with open(path) as f:
        return json.load(f)


def get(d, *keys):
    for k in keys:
        if d is None:
            return None
        d = d.get(k)
    return d


def fmt(v, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float) and abs(v) < 10 and v != int(v):
        return f"{v:.2f}{unit}"
    return f"{v:,.0f}{unit}"


# ----- headline ---------------------------------------------------------------


def headline(path):
    r = load(path)
    c, s, k, e = r["connect"], r.get("server") or {}, r["kernel"], r.get("events") or {}
    open_ = c["open"]
    comp = e.get("completion_ms", {})
    rows = [
        ("listeners held", f"{open_:,} of {c['requested']:,}", "≥ 2,000,000", open_ >= 2_000_000),
        (
            "herald heap per listener (RssAnon)",
            f"{s.get('anon_per_conn_bytes', 0):.0f} B (PSS {s.get('pss_per_conn_bytes', 0):.0f} B)",
            "≤ 200 B",
            s.get("anon_per_conn_bytes", 1e9) <= 200,
        ),
        (
            "herald heap all-in: RssAnon held / listeners (fixed cost of every process included)",
            f"{s.get('anon_held_kb', 0) * 1024 / max(open_, 1):.0f} B",
            "",
            None,
        ),
        ("kernel slab per listener (both ends)", f"{k['slab_per_conn_bytes']:.0f} B", "", None),
        (
            "broadcast: publish → last delivery",
            f"p50 {comp.get('p50', 0):.0f} ms, max {comp.get('max', 0):.0f} ms",
            "≤ 1 s at 1M",
            comp.get("max", 1e9) <= 1000,
        ),
        (
            "broadcast loss",
            f"{e.get('lost', 0):,} of {e.get('expected', 0):,}",
            "0",
            e.get("lost", 1) == 0,
        ),
        (
            "server CPU per new JWT connection",
            f"{s.get('cpu_per_conn_us', 0):.1f} µs",
            "≤ 15 µs",
            s.get("cpu_per_conn_us", 1e9) <= 15,
        ),
    ]
    print()
    print(f"HEADLINE  {open_:,} listeners held; {s.get('anon_per_conn_bytes', 0):.0f} B user + "
          f"{k['slab_per_conn_bytes']:.0f} B kernel (both ends) per listener; broadcast to all "
          f"in {comp.get('max', 0) / 1000:.2f} s")
    if r.get("halted_by_memory_floor"):
        print("          (herald-bench stopped at its MemAvailable floor: the box was full)")
    print()
    print("| | measured | goal | met |")
    print("| --- | --- | --- | --- |")
    for name, got, goal, ok in rows:
        print(f"| {name} | {got} | {goal} | {'' if ok is None else ('yes' if ok else 'no')} |")


# ----- herald vs nchan ------------------------------------------------------------

# (label, path in the report, unit, better: "low"/"high")
METRICS = [
    ("listeners open", ("connect", "open"), "", "high"),
    ("connect rate (/s)", ("connect", "per_second"), "", "high"),
    ("server CPU per new connection (µs)", ("server", "cpu_per_conn_us"), "", "low"),
    ("server heap per listener (RssAnon, B)", ("server", "anon_per_conn_bytes"), "", "low"),
    ("server memory per listener (PSS, B)", ("server", "pss_per_conn_bytes"), "", "low"),
    ("kernel slab per connection (both ends, B)", ("kernel", "slab_per_conn_bytes"), "", "low"),
    ("broadcast: publish → last delivery p50 (ms)", ("events", "completion_ms", "p50"), "", "low"),
    ("broadcast: publish → last delivery max (ms)", ("events", "completion_ms", "max"), "", "low"),
    ("latency p50 (ms)", ("events", "latency_ms", "p50"), "", "low"),
    ("latency p99 (ms)", ("events", "latency_ms", "p99"), "", "low"),
    ("latency p99.9 (ms)", ("events", "latency_ms", "p999"), "", "low"),
    ("publish rate achieved (/s)", ("events", "achieved_rate_per_s"), "", "high"),
    ("deliveries/s", ("events", "deliveries_per_s"), "", "high"),
    ("server CPU per delivery (ns)", ("server", "cpu_per_delivery_ns"), "", "low"),
    ("lost", ("events", "lost"), "", "low"),
    ("listeners dropped", ("connect", "dropped"), "", "low"),
]


def pairs(results):
    """{name: {"herald": report, "nchan": report}} in file order of size."""
    out = {}
    for f in sorted(os.listdir(results)):
        if f.startswith("vs-") and f.endswith(".json"):
            name, _, server = f[3:-5].rpartition("-")
            if server in SERVERS:
                out.setdefault(name, {})[server] = load(os.path.join(results, f))
    return dict(sorted(out.items(), key=lambda kv: size_of(kv[1])))


def size_of(pair):
    return max(get(r, "connect", "requested") or 0 for r in pair.values())


def table(results):
    for name, pair in pairs(results).items():
        h, n = pair.get("herald"), pair.get("nchan")
        ref = h or n
        ev = get(ref, "events")
        what = f"{get(ref, 'connect', 'requested'):,} listeners"
        if ev and ev["published"] == 1:
            what += ", 1 broadcast"
        elif ev:
            what += f", {ev['published']} broadcasts at {ev['rate_per_s']:g}/s requested"
        print(f"\n### {name}: {what}\n")
        print("| | herald | nchan | herald / nchan |")
        print("| --- | ---: | ---: | ---: |")
        for label, path, unit, _ in METRICS:
            hv, nv = get(h, *path), get(n, *path)
            if hv is None and nv is None:
                continue
            ratio = f"{hv / nv:.2f}" if hv is not None and nv else "–"
            print(f"| {label} | {fmt(hv, unit)} | {fmt(nv, unit)} | {ratio} |")


# ----- plot -------------------------------------------------------------------------

COLORS = {"herald": "#d1495b", "nchan": "#00798c"}


def series(results):
    """Per server: [(listeners, heap B/listener, completion p50 ms, latency p99 ms)]."""
    pts = {s: [] for s in SERVERS}
    for pair in pairs(results).values():
        for server, r in pair.items():
            if get(r, "events", "published") and get(r, "events", "rate_per_s") > 10:
                continue  # the high-rate run is not a point on the size curve
            pts[server].append(point(r))
    c1m = os.path.join(results, "c1m-herald.json")
    if os.path.exists(c1m):
        pts["herald"].append(point(load(c1m)))
    return {s: sorted(p) for s, p in pts.items() if p}


def point(r):
    return (
        get(r, "connect", "open"),
        get(r, "server", "anon_per_conn_bytes"),
        get(r, "events", "completion_ms", "p50"),
        get(r, "events", "latency_ms", "p99"),
    )


def plot(results, out):
    data = series(results)
    w, h, m = 980, 420, 70
    pw = (w - 3 * m) / 2
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
    ]
    panels = [
        ("server heap per listener (RssAnon, bytes)", 1, True),
        ("broadcast: publish → last delivery p50 (ms)", 2, True),
    ]
    xs = [p[0] for pts in data.values() for p in pts if p[0]]
    if not xs:
        sys.exit("no results to plot")
    xlo, xhi = 10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs)))
    for i, (title, idx, logy) in enumerate(panels):
        x0, y0 = m + i * (pw + m), 40
        ph = h - y0 - 60
        ys = [p[idx] for pts in data.values() for p in pts if p[idx]]
        if not ys:
            continue
        if logy:
            ylo, yhi = 10 ** math.floor(math.log10(min(ys))), 10 ** math.ceil(math.log10(max(ys)))
        else:
            ylo, yhi = 0, nice(max(ys) * 1.15)

        def px(x, x0=x0):
            return x0 + (math.log10(x) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo)) * pw

        def py(y, y0=y0, ph=ph, ylo=ylo, yhi=yhi, logy=logy):
            if logy:
                f = (math.log10(y) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo))
            else:
                f = (y - ylo) / (yhi - ylo)
            return y0 + ph - f * ph

        svg.append(f'<text x="{x0 + pw / 2}" y="24" text-anchor="middle" font-weight="bold">{title}</text>')
        svg.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
        x = xlo
        while x <= xhi:
            svg.append(f'<line x1="{px(x)}" y1="{y0}" x2="{px(x)}" y2="{y0 + ph}" stroke="#eee"/>')
            svg.append(f'<text x="{px(x)}" y="{y0 + ph + 16}" text-anchor="middle">{label(x)}</text>')
            x *= 10
        svg.append(f'<text x="{x0 + pw / 2}" y="{y0 + ph + 36}" text-anchor="middle">listeners</text>')
        ticks = decades(ylo, yhi) if logy else [ylo + (yhi - ylo) * j / 5 for j in range(6)]
        for t in ticks:
            svg.append(f'<line x1="{x0}" y1="{py(t)}" x2="{x0 + pw}" y2="{py(t)}" stroke="#eee"/>')
            svg.append(f'<text x="{x0 - 6}" y="{py(t) + 4}" text-anchor="end">{label(t)}</text>')
        for server, pts in data.items():
            pts = [(p[0], p[idx]) for p in pts if p[0] and p[idx]]
            if not pts:
                continue
            path = " ".join(f"{'M' if j == 0 else 'L'}{px(a):.1f},{py(b):.1f}" for j, (a, b) in enumerate(pts))
            svg.append(f'<path d="{path}" fill="none" stroke="{COLORS[server]}" stroke-width="2"/>')
            for a, b in pts:
                svg.append(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="4" fill="{COLORS[server]}"/>')
    for j, server in enumerate(data):
        lx = w - 200 + j * 90
        svg.append(f'<rect x="{lx}" y="{h - 22}" width="12" height="12" fill="{COLORS[server]}"/>')
        svg.append(f'<text x="{lx + 16}" y="{h - 12}">{server}</text>')
    svg.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(svg) + "\n")


def nice(v):
    e = 10 ** math.floor(math.log10(v))
    for s in (1, 2, 2.5, 5, 10):
        if v <= s * e:
            return s * e
    return 10 * e


def decades(lo, hi):
    out, t = [], lo
    while t <= hi * 1.0001:
        out.append(t)
        t *= 10
    return out


def label(v):
    for div, suf in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suf}"
    return f"{v:g}"


def main(argv):
    if len(argv) == 3 and argv[1] == "headline":
        headline(argv[2])
    elif len(argv) == 3 and argv[1] == "table":
        table(argv[2])
    elif len(argv) == 4 and argv[1] == "plot":
        plot(argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
