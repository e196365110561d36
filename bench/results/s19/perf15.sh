#!/bin/bash
BIN=$1; L=$2; W=/tmp/s19/w
rm -rf $W/d-$L; mkdir -p $W/d-$L
(cd $W/d-$L && RUST_LOG=warn exec $BIN serve --mqtt 127.0.0.1:23883 --http 127.0.0.1:23880 > $W/$L.log 2>&1) &
P=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:23880/readyz >/dev/null && break; sleep 0.1; done
${FB:-/tmp/s19/base/fleetmq-bench} drive --mqtt 127.0.0.1:23883 --drivers 1000 --interval-ms 100 --duration 12 --pid $P --json $W/$L.json > $W/$L.txt 2>&1 &
DP=$!
sleep 3
a=$(awk '{print $14, $15}' /proc/$P/stat)
perf stat -e syscalls:sys_enter_futex,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_sendto,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_read,context-switches -p $P -- sleep 5 2>&1 | grep -E "syscalls|context"
b=$(awk '{print $14, $15}' /proc/$P/stat)
echo "utime/stime before $a after $b"
wait $DP
kill -INT $P; wait $P
