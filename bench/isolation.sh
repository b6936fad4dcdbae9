#!/usr/bin/env bash
# Isolation benchmark: a healthy model's latency while another model on the
# same server misbehaves on every request, hammered at the server's full
# concurrency. Prints the healthy model's req/s and p99 alone and while each
# hostile model is hammered (one run, one server), and what the hostile
# models' clients got.
#
#   bash bench/isolation.sh        # DURATION=10 CONNS=32 MODES="loop memory stack"
#
# The hostile models are the test plugin `misbehave` as predictor, in each
# mode of MODES above 1000 ("loop": spins forever; "memory": grows its linear
# memory until the cap; "stack": recurses until the stack overflows; also
# "panic", "host-memory"), each trained as `bench/<mode>` with `[limits]
# serve_deadline = "250ms"`. The server keeps its defaults (--max-concurrency
# 64, shed after 5 failures in a row for 30 s). Needs wrk (apt). Server on
# CPU 0, both wrk processes on CPU 1 (bench/lib.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=bench/isolation.sh
MODES=${MODES:-loop memory stack}
. "$root/bench/lib.sh"
export TENSORLET_HOME="$work/home"
"$T" demo --out "$work/home" --device cpu >/dev/null 2>&1
"$T" alias set tensorlet/iris-model production 0.1.0 >/dev/null
served=(--model tensorlet/iris-model@production)
for mode in $MODES; do
  misbehaving_model "$mode" "{ mode = \"$mode\", only_above = 1000.0 }" 'serve_deadline = "250ms"'
  served+=(--model "bench/$mode@production")
done

start_server "$work/serve.log" "$T" serve --addr 127.0.0.1:18490 --admin-addr off --grpc-addr off --device cpu \
  "${served[@]}"
base=http://127.0.0.1:18490
wait_ready "$base/v2/health/ready"
iris=$base/v2/models/iris-model/infer
declare -A R
R[alone]=$(load "$iris" "$work/iris.json")

# Each hammer: 64 connections (the server's --max-concurrency) sending a
# hostile model its trigger back to back, from before the measurement to after.
cat > "$work/trigger.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/trigger.json"); wrk.body = f:read("*a"); f:close()
LUA
for mode in $MODES; do
  taskset -c 1 wrk -t1 -c64 -d"$((DURATION + 4))s" -s "$work/trigger.lua" \
    "$base/v2/models/$mode/infer" > "$work/$mode.out" &
  hammer=$!
  sleep 2
  R[$mode]=$(load "$iris" "$work/iris.json")
  wait "$hammer"
done
metrics=$(curl -s "$base/metrics")
stop_last

echo
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); iris: wrk -c$CONNS, ${DURATION}s, 2 rows/request"
printf '%-22s %12s %10s %10s %8s\n' "iris, while hammered" "req/s" p50 p99 non-2xx
for k in alone $MODES; do
  read -r rps p50 p99 bad <<< "${R[$k]}"
  printf '%-22s %12s %10s %10s %8s\n' "$k" "$rps" "$p50" "$p99" "$bad"
done
for mode in $MODES; do
  echo
  echo "$mode: 64 connections for $((DURATION + 4)) s sent $(awk '/requests in/ {print $1}' "$work/$mode.out") requests"
  echo "$metrics" | grep -E "^tensorlet_requests_total\{model=\"$mode\"|^tensorlet_model_shed(_total)?\{model=\"$mode\"" \
    | sed 's/^/  /'
done
