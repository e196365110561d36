# sourced by part1.sh / part2.sh (issue 13 cluster bench, bench/RESULTS.md): start helpers; every process started is recorded in /tmp/b13/pids and stopped by "while read n p; do kill $p; done < /tmp/b13/pids"
W=/work/wt/bench13
FM=$W/target/release/fleetmq
FB=$W/target/release/fleetmq-bench
REDIS_PORT=26379
start_redis() {
  redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
     > /tmp/b13/redis.log 2>&1 &
  echo $! > /tmp/b13/redis.pid; echo "redis $!" >> /tmp/b13/pids
  for i in $(seq 50); do redis-cli -p $REDIS_PORT ping 2>/dev/null | grep -q PONG && return; sleep 0.1; done
}
# start_node NAME MQTTPORT HTTPPORT [cluster]
start_node() {
  local name=$1 mp=$2 hp=$3 cl=$4
  mkdir -p /tmp/b13/$name
  if [ -n "$cl" ]; then
    (cd /tmp/b13/$name && RUST_LOG=warn exec $FM serve --cluster --node-id $name --redis redis://127.0.0.1:$REDIS_PORT \
       --mqtt 127.0.0.1:$mp --http 127.0.0.1:$hp > /tmp/b13/$name.log 2>&1) &
  else
    (cd /tmp/b13/$name && RUST_LOG=warn exec $FM serve --redis redis://127.0.0.1:$REDIS_PORT \
       --mqtt 127.0.0.1:$mp --http 127.0.0.1:$hp > /tmp/b13/$name.log 2>&1) &
  fi
  echo $! > /tmp/b13/$name.pid; echo "$name $!" >> /tmp/b13/pids
  for i in $(seq 100); do curl -sf http://127.0.0.1:$hp/readyz >/dev/null && return; sleep 0.1; done
  echo "node $name not ready"; tail -5 /tmp/b13/$name.log
}
