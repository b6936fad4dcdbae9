#!/usr/bin/env bash
# Serving benchmark: `tensorlet serve` next to its native baseline (the same
# prediction computed natively in Rust behind the same HTTP stack, no Wasm:
# `tensorlet bench serve-native`) and Seldon MLServer, same machine, same Open
# Inference Protocol requests (2 rows each), same load generator.
#
#   bash bench/serve.sh            # DURATION=10 CONNS=32 by default
#
# Needs: wrk (apt), and for the MLServer half a Python venv with
# `mlserver mlserver-sklearn "uvloop<0.22" scikit-learn` (MLSERVER_VENV, default
# /tmp/mlsvenv; the half is skipped with a note when it is missing). The
# server runs on CPU 0 and wrk on CPU 1 (taskset), as fair as two cores allow;
# bench/lib.sh has the settings.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=bench/serve.sh
VENV=${MLSERVER_VENV:-/tmp/mlsvenv}
. "$root/bench/lib.sh"

echo "== tensorlet serve"
export TENSORLET_HOME="$work/home"
"$T" demo --out "$work/home" --device cpu >/dev/null
"$T" alias set tensorlet/iris-model production 0.1.0 >/dev/null
"$T" alias set tensorlet/digits-model production 0.1.0 >/dev/null
start_server "$work/serve.log" "$T" serve --addr 127.0.0.1:18480 --admin-addr off --grpc-addr off --device cpu \
  --max-concurrency 512
wait_ready http://127.0.0.1:18480/v2/health/ready
declare -A R
for m in iris digits; do
  curl -sf -X POST --data @"$work/$m.json" "http://127.0.0.1:18480/v2/models/$m-model/infer" \
    > "$work/$m-served.out"
  R[tensorlet-$m]=$(load "http://127.0.0.1:18480/v2/models/$m-model/infer" "$work/$m.json")
done
inst=$(curl -s http://127.0.0.1:18480/metrics | awk '/^tensorlet_instances_created_total/ {print $2}')
reqs=$(curl -s http://127.0.0.1:18480/metrics | awk '/^tensorlet_requests_total/ {s+=$2} END {print s}')
"$T" bench instances --device cpu > "$work/inst.out"
stop_last

echo "== tensorlet serve --batch-delay 0"
start_server "$work/serve-batched.log" "$T" serve --addr 127.0.0.1:18482 --admin-addr off \
  --grpc-addr off --device cpu --max-concurrency 512 --batch-delay 0
wait_ready http://127.0.0.1:18482/v2/health/ready
for m in iris digits; do
  R[batching-$m]=$(load "http://127.0.0.1:18482/v2/models/$m-model/infer" "$work/$m.json")
done
stop_last

echo "== native baseline (no Wasm)"
start_server "$work/native.log" "$T" bench serve-native --addr 127.0.0.1:18483 \
  --model tensorlet/iris-model@0.1.0 --model tensorlet/digits-model@0.1.0
wait_ready http://127.0.0.1:18483/v2/health/ready
for m in iris digits; do
  # The same answer as the sandboxed server gave, to the bit.
  curl -sf -X POST --data @"$work/$m.json" "http://127.0.0.1:18483/v2/models/$m-model/infer" \
    > "$work/$m-native.out"
  python3 - "$work/$m-served.out" "$work/$m-native.out" <<'PY'
import json, sys
a, b = (json.load(open(f))["outputs"] for f in sys.argv[1:])
sys.exit(0 if a == b else f"the native baseline answered {b}, tensorlet serve {a}")
PY
  R[native-$m]=$(load "http://127.0.0.1:18483/v2/models/$m-model/infer" "$work/$m.json")
done
stop_last

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
  pushd "$work/mls" >/dev/null # MLServer finds the models in its working directory
  start_server "$work/mls.log" "$VENV/bin/mlserver" start .
  popd >/dev/null
  wait_ready http://127.0.0.1:18490/v2/models/digits-model/ready
  wait_ready http://127.0.0.1:18490/v2/models/iris-model/ready
  for m in iris digits; do
    R[mlserver-$m]=$(load "http://127.0.0.1:18490/v2/models/$m-model/infer" "$work/$m-mlserver.json")
  done
else
  echo "== MLServer skipped: no $VENV/bin/mlserver"
fi

table tensorlet-iris tensorlet-digits batching-iris batching-digits native-iris native-digits \
  mlserver-iris mlserver-digits
echo "(batching: tensorlet serve --batch-delay 0; native: tensorlet bench serve-native)"
for m in iris digits; do
  read -r t _ <<< "${R[tensorlet-$m]}"; read -r b _ <<< "${R[batching-$m]}"
  read -r n _ <<< "${R[native-$m]}"
  awk -v t="$t" -v b="$b" -v n="$n" -v m="$m" 'BEGIN {
    printf "%s: tensorlet serve at %.2fx the native rate (%.2fx with batching)\n", m, t / n, b / n }'
done
echo
echo "instances created: $inst for $reqs requests (preprocessor + predictor, fresh each request)"
cat "$work/inst.out"
