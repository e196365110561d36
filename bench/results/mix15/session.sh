#!/usr/bin/env bash
# The session as run: main's binaries (target/main-bin) and this branch's (target/mix15-bin),
# alternated per row and mode.
cd "$(dirname "$0")/../../.."
R=bench/results/mix15/run.sh
for pair in "1k plain" "1k plain" "1k batch" "10k plain" "10k batch"; do
  set -- $pair
  n=$( ls bench/results/mix15/main-bin-$1-$2*.json 2>/dev/null | wc -l )
  for b in main-bin mix15-bin; do
    LABEL=$b-$1-$2-r$((n+1)) $R target/$b $1 $2 10 >/dev/null 2>&1
    echo "$b $1 $2 r$((n+1)) done $(date -u +%T)"
  done
done
