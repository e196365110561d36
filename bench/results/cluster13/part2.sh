#!/bin/bash
# Issue 13 bench, part 2: 100,000 WebSocket watchers on 6 cluster nodes, then a drive on top.
. /tmp/b13/common.sh
mkdir -p /tmp/b13/results2
IDLE_PROCS=${IDLE_PROCS:-6}; IDLE_EACH=${IDLE_EACH:-14167}; RIDERS=${RIDERS:-15000}; DRIVERS=${DRIVERS:-300}
PREFIX=${PREFIX:-w13a-}
start_redis
URLS=(); PIDS=()
for n in 1 2 3 4 5 6; do start_node c$n 2121$n 2131$n cluster; URLS+=(ws://127.0.0.1:2131$n/ws); PIDS+=($(cat /tmp/b13/c$n.pid)); done
curl -s http://127.0.0.1:21311/api/v1/cluster; echo
PIDLIST=$(IFS=,; echo "${PIDS[*]}")
rss() { for p in "${PIDS[@]}"; do echo -n "$(awk '/VmRSS/{print $2}' /proc/$p/status) "; done; echo; }
fds() { for p in "${PIDS[@]}"; do echo -n "$(ls /proc/$p/fd | wc -l) "; done; echo; }
echo "RSS kB before: $(rss)"; echo "fds before: $(fds)"
echo "idle start $(date -u +%T.%N) load $(cut -d' ' -f1-3 /proc/loadavg)"
T0=$(date +%s.%N)
for k in $(seq 0 $((IDLE_PROCS-1))); do
  # rotate the URL list so that each process starts on another node
  rot=("${URLS[@]:$k}" "${URLS[@]:0:$k}"); list=$(IFS=,; echo "${rot[*]}")
  $FB ws-connections --ws $list --count $IDLE_EACH --vehicle-prefix $PREFIX --vehicles $DRIVERS \
      --hold 900 --json /tmp/b13/results2/idle-$k.json > /tmp/b13/results2/idle-$k.txt 2> /tmp/b13/results2/idle-$k.err &
  echo "idle$k $!" >> /tmp/b13/pids
done
for i in $(seq 600); do
  n=$(ls /tmp/b13/results2/idle-*.json 2>/dev/null | wc -l); [ $n -ge $IDLE_PROCS ] && break; sleep 0.5
done
T1=$(date +%s.%N)
echo "idle all reported $(date -u +%T.%N) after $(echo "$T1 - $T0" | bc) s; load $(cut -d' ' -f1-3 /proc/loadavg)"
cat /tmp/b13/results2/idle-*.json; echo
sleep 5
echo "RSS kB idle: $(rss)"; echo "fds idle: $(fds)"
# the drive: riders on top, every node, URLs rotated by one so riders are on another node than their driver
rot=("${URLS[@]:1}" "${URLS[0]}"); WSL=$(IFS=,; echo "${rot[*]}")
MQ=127.0.0.1:21211,127.0.0.1:21212,127.0.0.1:21213,127.0.0.1:21214,127.0.0.1:21215,127.0.0.1:21216
( while sleep 3; do echo "$(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg) rss $(rss) fds $(fds)"; done ) > /tmp/b13/results2/sample.log &
SAMPLER=$!; echo "sampler $SAMPLER" >> /tmp/b13/pids
echo "drive start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
$FB drive --mqtt $MQ --ws $WSL --drivers $DRIVERS --vehicle-prefix $PREFIX --interval-ms ${INTERVAL:-1000} --duration 20 \
   --watch riders=$RIDERS --pid $PIDLIST --json /tmp/b13/results2/drive.json > /tmp/b13/results2/drive.txt 2> /tmp/b13/results2/drive.err
echo "drive rc=$? end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
kill $SAMPLER
cat /tmp/b13/results2/drive.txt; tail -c 400 /tmp/b13/results2/drive.err | tr '\r' '\n' | tail -4
cat /tmp/b13/results2/sample.log
echo "RSS kB after drive: $(rss)"; echo "fds after: $(fds)"
for n in 1 2 3 4 5 6; do curl -s http://127.0.0.1:2131$n/metrics | grep -E '^fleetmq_(cluster|bus|ws)[a-z_]*' | head -20 > /tmp/b13/results2/metrics-c$n.txt; done
