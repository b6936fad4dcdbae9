#!/usr/bin/env bash
# Isolation benchmark: a healthy model's latency while another model on the
# same server loops on every request, hammered at the server's full
# concurrency. Prints the healthy model's req/s and p99 alone and under the
# hammering (one run, same server), and what the looping model's clients got.
#
#   bash bench/isolation.sh        # DURATION=10 CONNS=32 by default
#
# The looping model is the test plugin `misbehave` (mode "loop" above 1000),
# published and trained as `bench/loop` with `[limits] serve_deadline =
# "250ms"`; the server keeps its defaults (--max-concurrency 64, shed after 5
# failures in a row for 30 s). Needs wrk (apt). Server on CPU 0, both wrk
# processes on CPU 1 (bench/lib.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=bench/isolation.sh
. "$root/bench/lib.sh"
export TENSORLET_HOME="$work/home"
"$T" demo --out "$work/home" --device cpu >/dev/null
"$T" alias set tensorlet/iris-model production 0.1.0 >/dev/null
misbehaving_model loop '{ mode = "loop", only_above = 1000.0 }' 'serve_deadline = "250ms"'

start_server "$work/serve.log" "$T" serve --addr 127.0.0.1:18490 --admin-addr off --device cpu \
  --model tensorlet/iris-model@production --model bench/loop@production
wait_ready http://127.0.0.1:18490/v2/health/ready
iris=http://127.0.0.1:18490/v2/models/iris-model/infer
declare -A R
R[alone-iris]=$(load "$iris" "$work/iris.json")

# The hammer: 64 connections (the server's --max-concurrency) sending the
# looping model's trigger back to back, from before the measurement to after.
cat > "$work/loop.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/trigger.json"); wrk.body = f:read("*a"); f:close()
LUA
taskset -c 1 wrk -t1 -c64 -d"$((DURATION + 4))s" --latency -s "$work/loop.lua" \
  http://127.0.0.1:18490/v2/models/loop/infer > "$work/hammer.out" &
hammer=$!
sleep 2
R[hammered-iris]=$(load "$iris" "$work/iris.json")
wait "$hammer"
metrics=$(curl -s http://127.0.0.1:18490/metrics)
stop_last

table alone-iris hammered-iris
sent=$(awk '/requests in/ {print $1}' "$work/hammer.out")
bad=$(awk '/Non-2xx/ {print $NF}' "$work/hammer.out")
echo
echo "looping model: 64 connections for $((DURATION + 4)) s sent $sent requests, ${bad:-0} answered non-2xx"
echo "$metrics" | grep -E '^tensorlet_requests_total\{model="loop"|^tensorlet_model_shed(_total)?\{model="loop"' \
  | sed 's/^/  /'
