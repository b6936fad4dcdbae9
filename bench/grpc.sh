#!/usr/bin/env bash
# OIP over gRPC against OIP over HTTP: one `tensorlet serve`, the same model,
# the same 2-row request, in one run. Both protocols are loaded by the same
# client code, `tensorlet bench load` (HTTP/1.1: one request at a time per
# connection; gRPC: `ModelInfer` with raw contents, multiplexed on GRPC_CONNS
# HTTP/2 connections, as tritonclient sends it); wrk loads HTTP too, for
# reference (ghz, the usual gRPC load generator, is not packaged in Debian).
#
#   bash bench/grpc.sh          # DURATION=10 CONNS=32 GRPC_CONNS=4 by default
#
# Needs wrk (apt). Server on CPU 0, the load generators on CPU 1 (bench/lib.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=bench/grpc.sh
GRPC_CONNS=${GRPC_CONNS:-4}
. "$root/bench/lib.sh"

export TENSORLET_HOME="$work/home"
"$T" demo --out "$work/home" --device cpu >/dev/null 2>&1
"$T" alias set tensorlet/iris-model production 0.1.0 >/dev/null
"$T" alias set tensorlet/digits-model production 0.1.0 >/dev/null
start_server "$work/serve.log" "$T" serve --addr 127.0.0.1:18486 --admin-addr off \
  --grpc-addr 127.0.0.1:18487 --device cpu --max-concurrency 512
wait_ready http://127.0.0.1:18486/v2/health/ready

bench_load() { # model addr [--grpc]
  local m=$1 addr=$2; shift 2
  taskset -c 1 "$T" bench load --addr "$addr" --model "$m-model" --body "$work/$m.json" \
    --concurrency "$CONNS" --connections "$GRPC_CONNS" --duration "${DURATION}s" "$@"
}
declare -A R
for m in iris digits; do
  R[wrk-http-$m]=$(load "http://127.0.0.1:18486/v2/models/$m-model/infer" "$work/$m.json")
  R[load-http-$m]=$(bench_load "$m" 127.0.0.1:18486)
  R[load-grpc-$m]=$(bench_load "$m" 127.0.0.1:18487 --grpc)
done
stop_last

echo
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $CONNS requests in flight, ${DURATION}s, 2 rows/request"
printf '%-16s %-10s %-8s %12s %10s %10s %8s\n' client protocol model "req/s" p50 p99 failed
for m in iris digits; do
  for k in load-http load-grpc wrk-http; do
    read -r rps p50 p99 bad <<< "${R[$k-$m]}"
    client="tensorlet bench"; [ "${k%%-*}" = wrk ] && client=wrk
    printf '%-16s %-10s %-8s %12s %10s %10s %8s\n' "$client" "${k#*-}" "$m" "$rps" "$p50" "$p99" "$bad"
  done
done
