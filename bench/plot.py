#!/usr/bin/env python3
"""Latency-by-percentile plot of bench/compare.sh's throughput runs.

usage: plot.py OUT BROKER... [--out latency.png]

Reads OUT/{broker}-{fanin,fanout}.csv (`percentile,latency_us`, written by
`fleetmq-bench throughput --percentiles FILE`) and draws one panel per workload: x is the
percentile on a "nines" scale (50, 90, 99, 99.9, ...), y the latency in ms on a log scale.
"""
import csv
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    xs, ys = [], []
    try:
        with open(path) as f:
            for row in csv.DictReader(f):
                p = float(row["percentile"])
                if p >= 100.0:
                    p = 99.9999
                xs.append(-math.log10(1.0 - p / 100.0))
                ys.append(max(float(row["latency_us"]), 1.0) / 1000.0)
    except OSError:
        return None
    return xs, ys


def main(argv):
    out_png = "latency.png"
    if "--out" in argv:
        i = argv.index("--out")
        out_png = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    out, brokers = argv[0], argv[1:]
    workloads = [
        ("fanin", "flood, fan-in 16 -> 1"),
        ("fanout", "flood, fan-out 1 -> 16"),
        ("fanin-paced", "paced, fan-in 16 -> 1"),
        ("fanout-paced", "paced, fan-out 1 -> 16"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    axes = axes.flatten()
    ticks = [0, 1, 2, 3, 4]
    labels = ["p0", "p90", "p99", "p99.9", "p99.99"]
    for ax, (key, title) in zip(axes, workloads):
        for b in brokers:
            data = read(os.path.join(out, f"{b}-{key}.csv"))
            if data and data[0]:
                ax.step(data[0], data[1], where="post", label=b, linewidth=1.8)
        ax.set_title(title)
        ax.set_xticks(ticks + [math.log10(2)])
        ax.set_xticklabels(labels + ["p50"])
        ax.set_yscale("log")
        ax.set_xlim(0, 5)
        ax.set_xlabel("percentile")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    for ax in axes:
        ax.set_ylabel("publish -> receive (ms, log)")
    fig.suptitle("fleetmq-bench throughput, QoS 0, 64 B: latency by percentile (same machine, same run)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    print(f"wrote {out_png}")


if __name__ == "__main__":
    main(sys.argv[1:])
