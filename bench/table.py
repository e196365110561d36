#!/usr/bin/env python3
"""Prints the side-by-side table of bench/compare.sh from the JSON files in OUT.

usage: table.py OUT BROKER... [--counts N...] [--markdown]

Ratios are fleetmq's figure over each peer's (higher is better for rates, lower for latency and
memory).
"""
import json
import os
import sys


def load(out, name):
    path = os.path.join(out, name + ".json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def rows(out, brokers, counts):
    """(label, unit, {broker: value}) for every figure of interest."""
    table = []
    for load_name, label in (("fanin", "fan-in 16->1"), ("fanout", "fan-out 1->16"),
                             ("fanin-paced", "paced fan-in"), ("fanout-paced", "paced fan-out")):
        for key, unit, what in (
            ("received_per_sec", "msg/s", "delivered"),
            ("sent_per_sec", "msg/s", "published"),
        ):
            table.append((f"{label} {what}", unit,
                          {b: (load(out, f"{b}-{load_name}") or {}).get(key) for b in brokers}))
        for p in ("p50", "p99"):
            vals = {}
            for b in brokers:
                d = load(out, f"{b}-{load_name}")
                vals[b] = d["latency_us"][p] / 1000.0 if d else None
            table.append((f"{label} latency {p}", "ms", vals))
    for n in counts:
        for key, unit, scale in (
            ("connect_per_sec", "conn/s", 1.0),
            ("rss_per_connection_bytes", "B/conn", 1.0),
        ):
            vals = {}
            for b in brokers:
                d = load(out, f"{b}-conn{n}")
                ok = d is not None and d.get("connections") == int(n)
                vals[b] = d[key] * scale if ok else None
            table.append((f"{n} idle conns {key.split('_')[0] if key.startswith('connect') else 'RSS'}", unit, vals))
    return table


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def main(argv):
    markdown = "--markdown" in argv
    argv = [a for a in argv if a != "--markdown"]
    counts = []
    if "--counts" in argv:
        i = argv.index("--counts")
        counts = argv[i + 1:]
        argv = argv[:i]
    out, brokers = argv[0], argv[1:]
    peers = [b for b in brokers if b != "fleetmq"]
    head = ["workload", "unit"] + brokers + [f"fleetmq/{p}" for p in peers]
    lines = []
    for label, unit, vals in rows(out, brokers, counts):
        cells = [label, unit] + [fmt(vals.get(b)) for b in brokers]
        for p in peers:
            a, b = vals.get("fleetmq"), vals.get(p)
            cells.append(f"{a / b:.2f}x" if a is not None and b else "-")
        lines.append(cells)
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for cells in lines:
            print("| " + " | ".join(cells) + " |")
        return
    widths = [max(len(r[i]) for r in [head] + lines) for i in range(len(head))]
    for cells in [head] + lines:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(cells, widths))))


if __name__ == "__main__":
    main(sys.argv[1:])
