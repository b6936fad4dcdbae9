#!/usr/bin/env bash
# Overload benchmark: far more connections than the server computes at once
# (CONNS=256 against the default --max-concurrency 64), for DURATION seconds
# (default 60), on the bundled iris model; meanwhile one connection polls the
# readiness endpoint. Prints the request rate, every status the server
# answered with, socket errors, the readiness probe's latency, and the
# server's resident memory early in the run and at its end.
#
#   bash bench/overload.sh         # DURATION=60 CONNS=256 by default
#
# Needs wrk (apt). Server on CPU 0, both wrk processes on CPU 1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=bench/overload.sh
DURATION=${DURATION:-60}
CONNS=${CONNS:-256}
. "$root/bench/lib.sh"
export TENSORLET_HOME="$work/home"
"$T" demo --out "$work/home" --device cpu >/dev/null 2>&1
"$T" alias set tensorlet/iris-model production 0.1.0 >/dev/null

start_server "$work/serve.log" "$T" serve --addr 127.0.0.1:18492 --admin-addr off --grpc-addr off --device cpu \
  --model tensorlet/iris-model@production
pid=${pids[-1]}
base=http://127.0.0.1:18492
wait_ready "$base/v2/health/ready"
rss() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status"; }

cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/iris.json"); wrk.body = f:read("*a"); f:close()
LUA
taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$work/post.lua" \
  "$base/v2/models/iris-model/infer" > "$work/load.out" &
load=$!
taskset -c 1 wrk -t1 -c1 -d"${DURATION}s" --latency "$base/v2/health/ready" > "$work/health.out" &
health=$!
sleep 5
early=$(rss)
wait "$load" "$health"
late=$(rss)
metrics=$(curl -s "$base/metrics")
stop_last

echo
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); iris, wrk -c$CONNS, ${DURATION}s, 2 rows/request, --max-concurrency 64"
awk '/Requests\/sec/ {print "requests/s      " $2} /^ +99%/ {print "p99 (all)       " $2}
     /Socket errors/ {print "socket errors   " $0} /Non-2xx/ {print "non-2xx         " $NF}' \
  "$work/load.out"
grep -q "Socket errors" "$work/load.out" || echo "socket errors   none"
echo "answered by status (server's count):"
echo "$metrics" | awk -F'status="' '/^tensorlet_requests_total\{model="iris-model"/ {
  split($2, a, "\""); n = $0; sub(/.* /, "", n); printf "  %s  %s\n", a[1], n }'
awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
     END {printf "readiness probe p50 %s, p99 %s, non-2xx %s\n", p50, p99, (bad==""?0:bad)}' \
  "$work/health.out"
awk -v a="$early" -v b="$late" 'BEGIN {
  printf "resident memory: %d MiB after 5 s, %d MiB at the end (%+.1f %%)\n", a, b, (b - a) * 100 / a }'
