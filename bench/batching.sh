#!/usr/bin/env bash
# Adaptive batching benchmark: `tensorlet serve` with and without
# `--batch-delay`, same models, same 2-row OIP requests, same load generator,
# in one run.
#
#   bash bench/batching.sh          # DURATION=10 CONNS=256 by default
#
# Rows: off (each request its own call), `0` (coalesce what one round of the
# worker has ready) and DELAYS (default "500us"), for iris and digits. Needs
# wrk (apt). The server runs on CPU 0 and wrk on CPU 1 (bench/lib.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=bench/batching.sh
CONNS=${CONNS:-256}
DELAYS=${DELAYS:-500us}
. "$root/bench/lib.sh"

export TENSORLET_HOME="$work/home"
"$T" demo --out "$work/home" --device cpu >/dev/null
"$T" alias set tensorlet/iris-model production 0.1.0 >/dev/null
"$T" alias set tensorlet/digits-model production 0.1.0 >/dev/null

declare -A R B
# "calls requests" answered by coalesced calls so far (0 0 without batching).
calls() {
  curl -s http://127.0.0.1:18485/metrics | awk '/^tensorlet_batches_total/ {c=$2}
    /^tensorlet_batched_requests_total/ {r=$2} END {printf "%d %d\n", c, r}'
}
modes=(off 0 $DELAYS)
for mode in "${modes[@]}"; do
  start_server "$work/serve-$mode.log" "$T" serve --addr 127.0.0.1:18485 --admin-addr off \
    --grpc-addr off --device cpu --max-concurrency 512 --batch-delay "$mode"
  wait_ready http://127.0.0.1:18485/v2/health/ready
  for m in iris digits; do
    before=$(calls)
    R[$mode-$m]=$(load "http://127.0.0.1:18485/v2/models/$m-model/infer" "$work/$m.json")
    # Requests per coalesced call over this load (- without batching).
    B[$mode-$m]=$(awk -v a="$before" -v b="$(calls)" 'BEGIN {
      split(a, x); split(b, y); c = y[1] - x[1]
      if (c == 0) print "-"; else printf "%.1f", (y[2] - x[2]) / c }')
  done
  stop_last
done

echo
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -c$CONNS, ${DURATION}s, 2 rows/request"
printf '%-12s %-8s %12s %10s %10s %8s %10s\n' "batch-delay" model "req/s" p50 p99 non-2xx "req/call"
for mode in "${modes[@]}"; do
  for m in iris digits; do
    read -r rps p50 p99 bad <<< "${R[$mode-$m]}"
    printf '%-12s %-8s %12s %10s %10s %8s %10s\n' "$mode" "$m" "$rps" "$p50" "$p99" "$bad" "${B[$mode-$m]}"
  done
done
