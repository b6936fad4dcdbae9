#!/usr/bin/env bash
# Memory budget benchmark: 64 connections send a model that hoards host
# tensors its trigger for DURATION seconds, beside a healthy model under
# load, on a server with `--max-memory` (MAX_MEMORY, default 1GiB). Samples
# the server's resident memory every 0.25 s before, during and after the
# burst, and prints it with the healthy model's latency and the hoarder's
# answers.
#
#   bash bench/memory.sh           # DURATION=10 MAX_MEMORY=1GiB by default
#
# The hoarder is the test plugin `misbehave` (mode "host-memory": 4 MiB host
# tensors, held without end) trained as `bench/hoard`. Needs wrk (apt).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=bench/memory.sh
MAX_MEMORY=${MAX_MEMORY:-1GiB}
. "$root/bench/lib.sh"
export TENSORLET_HOME="$work/home"
"$T" demo --out "$work/home" --device cpu >/dev/null
"$T" alias set tensorlet/iris-model production 0.1.0 >/dev/null
misbehaving_model hoard '{ mode = "host-memory", only_above = 1000.0 }'

start_server "$work/serve.log" "$T" serve --addr 127.0.0.1:18491 --admin-addr off --grpc-addr off --device cpu \
  --max-memory "$MAX_MEMORY" --model tensorlet/iris-model@production --model bench/hoard@production
pid=${pids[-1]}
base=http://127.0.0.1:18491
wait_ready "$base/v2/health/ready"

# t (s), resident memory (MiB), host tensors held (MiB), every 0.25 s.
(
  start=$(date +%s.%N)
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ {print $2 / 1024}' "/proc/$pid/status" 2>/dev/null || echo 0)
    held=$(curl -s "$base/metrics" | awk '/^tensorlet_host_tensor_bytes / {print $2 / 1048576}')
    now=$(date +%s.%N)
    awk -v t="$now" -v s="$start" -v r="$rss" -v h="${held:-0}" \
      'BEGIN { printf "%.2f %.0f %.0f\n", t - s, r, h }'
    sleep 0.25
  done
) > "$work/rss.log" &
sampler=$!
sleep 2

cat > "$work/hoard.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/trigger.json"); wrk.body = f:read("*a"); f:close()
LUA
taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" -s "$work/hoard.lua" \
  "$base/v2/models/hoard/infer" > "$work/hoard.out" &
hoard=$!
CONNS=8
declare -A R
R[hoarded-iris]=$(load "$base/v2/models/iris-model/infer" "$work/iris.json")
wait "$hoard"
sleep 5
metrics=$(curl -s "$base/metrics")
kill "$sampler" 2>/dev/null || true
stop_last

table hoarded-iris
echo
echo "hoarder: wrk -c64 for ${DURATION}s sent $(awk '/requests in/ {print $1}' "$work/hoard.out") requests"
echo "$metrics" | grep -E '^tensorlet_requests_total\{model="hoard"' | sed 's/^/  /'
awk -v budget="$MAX_MEMORY" -v d="$DURATION" '
  NR == 1 { first = $2 }
  $1 < 2 { idle = $2 }
  $1 >= 2 && $1 < 2 + d { if ($2 > peak) peak = $2; if ($3 > held) held = $3 }
  { last = $2; lastheld = $3 }
  END {
    printf "\nresident memory (MiB), --max-memory %s:\n", budget
    printf "  %-34s %8.0f\n", "idle, before the burst", idle
    printf "  %-34s %8.0f\n", "peak during the burst", peak
    printf "  %-34s %8.0f\n", "peak host tensors held", held
    printf "  %-34s %8.0f\n", "5 s after the burst", last
    printf "  %-34s %8.0f\n", "host tensors held after", lastheld
  }' "$work/rss.log"
