#!/usr/bin/env bash
# Throughput of an exported model (`tensorlet export --wasi-http`) under two
# wasi:http hosts, next to `tensorlet serve` with the same model, on the same
# machine, with the same Open Inference Protocol requests (2 rows each):
#
#   tensorlet serve              the model served natively (host tensors)
#   tensorlet serve-wasi-http    the export under wasmtime + wasmtime-wasi-http
#                                (a fresh instance per request, as `wasmtime serve`)
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
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
command -v wrk >/dev/null || { echo "bench/export.sh needs wrk (apt-get install wrk)"; exit 2; }

# TENSORLET_BIN: an already built binary (skips the build).
if [ -z "${TENSORLET_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
T=${TENSORLET_BIN:-$CARGO_TARGET_DIR/release/tensorlet}
JCO="$root/plugins/js/node_modules/.bin/jco"
work=$(mktemp -d)
pids=()
# Each server runs in its own process group (setsid): `jco serve` runs the
# component in a child node process, which must stop with it.
cleanup() { for p in "${pids[@]}"; do kill -s TERM -- "-$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_ready() { # url
  for _ in $(seq 1 600); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server at $1 did not become ready" >&2; return 1
}

python3 - "$root" "$work" <<'PY'
import csv, json, sys
root, work = sys.argv[1], sys.argv[2]
for name, n in (("iris", 4), ("digits", 64)):
    rows = [[float(v) for v in r[:n]] for r in list(csv.reader(open(f"{root}/data/{name}.csv")))[1:3]]
    body = {"inputs": [{"name": "input", "shape": [2, n], "datatype": "FP32", "data": rows}]}
    open(f"{work}/{name}.json", "w").write(json.dumps(body))
PY

# load <url> <body file> -> "req/s p50 p99 non-2xx"
load() {
  cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$2"); wrk.body = f:read("*a"); f:close()
LUA
  curl -sf -X POST -H 'Content-Type: application/json' --data @"$2" "$1" >/dev/null \
    || { echo "a request to $1 failed:" >&2; curl -s -X POST --data @"$2" "$1" >&2; return 1; }
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$work/post.lua" "$1" > "$work/wrk.out"
  awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
       END {printf "%s %s %s %s\n", rps, p50, p99, (bad==""?0:bad)}' "$work/wrk.out"
}

stop_last() { kill -s TERM -- "-${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; }

export TENSORLET_HOME="$work/home"
"$T" demo --out "$work/home" --device cpu >/dev/null
declare -A R SIZE
for m in iris digits; do
  "$T" export "tensorlet/$m-model@0.1.0" --wasi-http -o "$work/$m.wasm" --key demo >/dev/null
  SIZE[$m]=$(du -k "$work/$m.wasm" | cut -f1)
done

echo "== tensorlet serve"
setsid taskset -c 0 "$T" serve --addr 127.0.0.1:18580 --admin-addr off --device cpu \
  --max-concurrency 512 --model tensorlet/iris-model@0.1.0 --model tensorlet/digits-model@0.1.0 \
  > "$work/serve.log" 2>&1 &
pids+=($!)
wait_ready http://127.0.0.1:18580/v2/health/ready
for m in iris digits; do
  R[serve-$m]=$(load "http://127.0.0.1:18580/v2/models/$m-model/infer" "$work/$m.json")
done
stop_last

echo "== tensorlet serve-wasi-http (wasmtime-wasi-http)"
for m in iris digits; do
  setsid taskset -c 0 "$T" serve-wasi-http "$work/$m.wasm" --addr 127.0.0.1:18581 > "$work/wh.log" 2>&1 &
  pids+=($!)
  wait_ready http://127.0.0.1:18581/v2/health/ready
  R[wasmtime-$m]=$(load "http://127.0.0.1:18581/v2/models/$m-model/infer" "$work/$m.json")
  stop_last
done

if command -v node >/dev/null && [ -x "$JCO" ]; then
  echo "== jco serve $("$JCO" --version) on node $(node --version)"
  for m in iris digits; do
    setsid taskset -c 0 "$JCO" serve --port 18582 --host 127.0.0.1 --jco-dir "$work/jco-$m" \
      "$work/$m.wasm" > "$work/jco.log" 2>&1 &
    pids+=($!)
    wait_ready http://127.0.0.1:18582/v2/health/ready
    R[jco-$m]=$(load "http://127.0.0.1:18582/v2/models/$m-model/infer" "$work/$m.json")
    stop_last
  done
else
  echo "== jco serve skipped: needs node and $JCO (bash plugins/build-polyglot.sh)"
fi

echo
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -c$CONNS, ${DURATION}s, 2 rows/request"
echo "export sizes: iris ${SIZE[iris]} KiB, digits ${SIZE[digits]} KiB"
printf '%-10s %-8s %12s %10s %10s %8s\n' server model "req/s" p50 p99 non-2xx
for k in serve-iris serve-digits wasmtime-iris wasmtime-digits jco-iris jco-digits; do
  [ -n "${R[$k]:-}" ] || continue
  read -r rps p50 p99 bad <<< "${R[$k]}"
  printf '%-10s %-8s %12s %10s %10s %8s\n' "${k%%-*}" "${k#*-}" "$rps" "$p50" "$p99" "$bad"
done
