#!/usr/bin/env python3
"""Issue 13 part 3: the table of bench/RESULTS.md from part3.sh's JSON files and its log (the
redis CPU ticks and load per run). Usage: part3-table.py RESULTS_DIR LOG."""
import json, os, re, sys

res, log = sys.argv[1], sys.argv[2]
ticks, load = {}, {}
for line in open(log):
    m = re.match(r"=== (\S+)  end \S+  load: (\S+) \S+ \S+  redis CPU ticks: (\d+)", line)
    if m:
        load[m[1]] = m[2]
        ticks[m[1]] = int(m[3])
hz = os.sysconf("SC_CLK_TCK")
print("| D | run | load (1 min) | updates/s | p50 | p99 | max | lost | nodes CPU µs/update | + redis | total |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for label in ticks:
    d = json.load(open(f"{res}/{label}.json"))
    kind, drivers, rnd = label.split("-")
    redis = ticks[label] / hz * 1e6 / d["updates_sent"]
    node = d["broker_cpu_us_per_update"]
    lat = d["latency_us"]
    offered = int(drivers)
    print(f"| {int(drivers):,} | {kind} {rnd} | {load[label]} | {d['updates_per_sec']:,.0f} of {offered * 20 // 21:,} "
          f"| {lat['p50']/1000:.2f} ms | **{lat['p99']/1000:.1f} ms** | {lat['max']/1000:.1f} ms | {d['lost']} "
          f"| {node:.1f} | {redis:.1f} | {node + redis:.1f} |")
