#!/usr/bin/env bash
# Serving benchmark: `tensorlet serve` next to Seldon MLServer, same machine,
# same Open Inference Protocol requests (2 rows each), same load generator.
#
#   bash bench/serve.sh            # DURATION=10 CONNS=32 by default
#
# Needs: wrk (apt), and for the MLServer half a Python venv with
# `mlserver mlserver-sklearn "uvloop<0.22" scikit-learn` (MLSERVER_VENV, default
# /tmp/mlsvenv; the half is skipped with a note when it is missing). The
# server runs on CPU 0 and wrk on CPU 1 (taskset), as fair as two cores allow.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
VENV=${MLSERVER_VENV:-/tmp/mlsvenv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
command -v wrk >/dev/null || { echo "bench/serve.sh needs wrk (apt-get install wrk)"; exit 2; }

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
T="$CARGO_TARGET_DIR/release/tensorlet"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_ready() { # url
  for _ in $(seq 1 300); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server at $1 did not become ready" >&2; return 1
}

# Request bodies: 2 rows of iris (4 features) and of digits (64 features).
python3 - "$root" "$work" <<'PY'
import csv, json, sys
root, work = sys.argv[1], sys.argv[2]
for name, n in (("iris", 4), ("digits", 64)):
    rows = [[float(v) for v in r[:n]] for r in list(csv.reader(open(f"{root}/data/{name}.csv")))[1:3]]
    body = {"inputs": [{"name": "input", "shape": [2, n], "datatype": "FP32", "data": rows}]}
    open(f"{work}/{name}.json", "w").write(json.dumps(body))
    body["inputs"][0]["name"] = "predict"
    body["outputs"] = [{"name": "predict_proba"}]
    open(f"{work}/{name}-mlserver.json", "w").write(json.dumps(body))
PY

# load <url> <body file> -> "req/s p50 p99"
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

echo "== tensorlet serve"
export TENSORLET_HOME="$work/home"
"$T" demo --out "$work/home" --device cpu >/dev/null
"$T" alias set tensorlet/iris-model production 0.1.0 >/dev/null
"$T" alias set tensorlet/digits-model production 0.1.0 >/dev/null
taskset -c 0 "$T" serve --addr 127.0.0.1:18480 --admin-addr off --device cpu \
  --max-concurrency 512 > "$work/serve.log" 2>&1 &
pids+=($!)
wait_ready http://127.0.0.1:18480/v2/health/ready
declare -A R
for m in iris digits; do
  R[tensorlet-$m]=$(load "http://127.0.0.1:18480/v2/models/$m-model/infer" "$work/$m.json")
done
inst=$(curl -s http://127.0.0.1:18480/metrics | awk '/^tensorlet_instances_created_total/ {print $2}')
reqs=$(curl -s http://127.0.0.1:18480/metrics | awk '/^tensorlet_requests_total/ {s+=$2} END {print s}')
"$T" bench instances --device cpu > "$work/inst.out"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

if [ -x "$VENV/bin/mlserver" ]; then
  echo "== MLServer $("$VENV/bin/python" -c 'import mlserver; print(mlserver.__version__)')"
  "$VENV/bin/python" - "$root" "$work/mls" <<'PY'
import csv, json, os, sys, joblib
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
root, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
json.dump({"http_port": 18490, "grpc_port": 18491, "metrics_port": 18492,
           "parallel_workers": 0}, open(f"{out}/settings.json", "w"))
for name, n, est in (("iris", 4, LogisticRegression(max_iter=1000)),
                     ("digits", 64, MLPClassifier((64,), max_iter=300, random_state=0))):
    rows = list(csv.reader(open(f"{root}/data/{name}.csv")))[1:]
    X = [[float(v) for v in r[:n]] for r in rows]; y = [int(r[n]) for r in rows]
    d = f"{out}/{name}-model"; os.makedirs(d, exist_ok=True)
    joblib.dump(make_pipeline(StandardScaler(), est).fit(X, y), f"{d}/model.joblib")
    json.dump({"name": f"{name}-model", "implementation": "mlserver_sklearn.SKLearnModel",
               "parameters": {"uri": "./model.joblib"}}, open(f"{d}/model-settings.json", "w"))
PY
  # exec: $! is then MLServer itself, which the cleanup stops with its workers.
  (cd "$work/mls" && exec taskset -c 0 "$VENV/bin/mlserver" start . > "$work/mls.log" 2>&1) &
  pids+=($!)
  wait_ready http://127.0.0.1:18490/v2/models/digits-model/ready
  wait_ready http://127.0.0.1:18490/v2/models/iris-model/ready
  for m in iris digits; do
    R[mlserver-$m]=$(load "http://127.0.0.1:18490/v2/models/$m-model/infer" "$work/$m-mlserver.json")
  done
else
  echo "== MLServer skipped: no $VENV/bin/mlserver"
fi

echo
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -c$CONNS, ${DURATION}s, 2 rows/request"
printf '%-10s %-8s %12s %10s %10s %8s\n' server model "req/s" p50 p99 non-2xx
for k in tensorlet-iris tensorlet-digits mlserver-iris mlserver-digits; do
  [ -n "${R[$k]:-}" ] || continue
  read -r rps p50 p99 bad <<< "${R[$k]}"
  printf '%-10s %-8s %12s %10s %10s %8s\n' "${k%%-*}" "${k#*-}" "$rps" "$p50" "$p99" "$bad"
done
echo
echo "instances created: $inst for $reqs requests (preprocessor + predictor, fresh each request)"
cat "$work/inst.out"
