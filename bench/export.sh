#!/usr/bin/env bash
# Throughput of an exported model (`tensorlet export --wasi-http`) under two
# wasi:http hosts, next to `tensorlet serve` with the same model, on the same
# machine, with the same Open Inference Protocol requests (2 rows each):
#
#   tensorlet serve              the model served natively (host tensors)
#   tensorlet serve-wasi-http    the export under wasmtime + wasmtime-wasi-http
#                                (a fresh instance per request, as `wasmtime serve`)
#   ... --front spin             the spin-sdk export (WASI 0.3) under the same host
#   jco serve                    the export transpiled to JS + core Wasm, on Node.js
#
#   bash bench/export.sh         # DURATION=10 CONNS=32 by default
#
# Needs wrk (apt); TENSORLET_BIN=<path> uses that binary instead of building.
# The jco half needs node and plugins/js/node_modules (`bash
# plugins/build-polyglot.sh`) and is skipped with a note without them.
# Servers run on CPU 0 and wrk on CPU 1 (taskset).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=bench/export.sh
. "$root/bench/lib.sh"
JCO="$root/plugins/js/node_modules/.bin/jco"

export TENSORLET_HOME="$work/home"
"$T" demo --out "$work/home" --device cpu >/dev/null
declare -A R SIZE
for m in iris digits; do
  "$T" export "tensorlet/$m-model@0.1.0" --wasi-http -o "$work/$m.wasm" --key demo >/dev/null
  SIZE[$m]=$(du -k "$work/$m.wasm" | cut -f1)
  "$T" export "tensorlet/$m-model@0.1.0" --wasi-http --front spin -o "$work/$m-spin.wasm" \
    --key demo >/dev/null
done

echo "== tensorlet serve"
start_server "$work/serve.log" "$T" serve --addr 127.0.0.1:18580 --admin-addr off --grpc-addr off --device cpu \
  --max-concurrency 512 --model tensorlet/iris-model@0.1.0 --model tensorlet/digits-model@0.1.0
wait_ready http://127.0.0.1:18580/v2/health/ready
for m in iris digits; do
  R[serve-$m]=$(load "http://127.0.0.1:18580/v2/models/$m-model/infer" "$work/$m.json")
done
stop_last

# serve_export <key> <file suffix> <port>: each model's export under
# serve-wasi-http, results in R[<key>-<model>].
serve_export() {
  for m in iris digits; do
    start_server "$work/$1.log" "$T" serve-wasi-http "$work/$m$2.wasm" --addr "127.0.0.1:$3"
    wait_ready "http://127.0.0.1:$3/v2/health/ready"
    R[$1-$m]=$(load "http://127.0.0.1:$3/v2/models/$m-model/infer" "$work/$m.json")
    stop_last
  done
}
echo "== tensorlet serve-wasi-http (wasmtime-wasi-http)"
serve_export wasmtime "" 18581
echo "== tensorlet serve-wasi-http, the --front spin export (WASI 0.3)"
serve_export spin -spin 18583

if command -v node >/dev/null && [ -x "$JCO" ]; then
  echo "== jco serve $("$JCO" --version) on node $(node --version)"
  for m in iris digits; do
    start_server "$work/jco.log" "$JCO" serve --port 18582 --host 127.0.0.1 --jco-dir "$work/jco-$m" \
      "$work/$m.wasm"
    wait_ready http://127.0.0.1:18582/v2/health/ready
    R[jco-$m]=$(load "http://127.0.0.1:18582/v2/models/$m-model/infer" "$work/$m.json")
    stop_last
  done
else
  echo "== jco serve skipped: needs node and $JCO (bash plugins/build-polyglot.sh)"
fi

table serve-iris serve-digits wasmtime-iris wasmtime-digits spin-iris spin-digits jco-iris jco-digits
echo "export sizes: iris ${SIZE[iris]} KiB, digits ${SIZE[digits]} KiB"
