# Shared by the bench/*.sh scripts that serve: settings, the tensorlet binary,
# a scratch directory, servers started in their own process groups, the OIP
# request bodies, and one wrk run per (url, body). Source it after setting
# `root` (the repository) and `name` (the script, for messages).
#
# Settings: DURATION (s, default 10), CONNS (wrk connections, default 32),
# TENSORLET_BIN (an already built binary; otherwise `cargo build --release`).
# Servers run on CPU 0 and wrk on CPU 1 (taskset), as fair as two cores allow.
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
command -v wrk >/dev/null || { echo "$name needs wrk (apt-get install wrk)"; exit 2; }

if [ -z "${TENSORLET_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
T=${TENSORLET_BIN:-$CARGO_TARGET_DIR/release/tensorlet}
work=$(mktemp -d)
pids=()
# Each server is started with `start_server` in a process group of its own, so
# stopping it also stops its children (jco's node process, MLServer's workers).
cleanup() { for p in "${pids[@]}"; do kill -s TERM -- "-$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# start_server <log> <command…>: on CPU 0, in the background, its own group.
start_server() {
  local log=$1; shift
  setsid taskset -c 0 "$@" > "$log" 2>&1 &
  pids+=($!)
}

# Stops the server started last and waits for it.
stop_last() { kill -s TERM -- "-${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; }

wait_ready() { # url
  for _ in $(seq 1 600); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server at $1 did not become ready" >&2; return 1
}

# Request bodies in $work: 2 rows of iris (4 features) and of digits (64):
# <model>.json for tensorlet's input `input`, <model>-mlserver.json for
# MLServer's scikit-learn runtime (input `predict`, output `predict_proba`).
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

# table <key>… : the results in R (keys <server>-<model>) under a header.
table() {
  echo
  echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -c$CONNS, ${DURATION}s, 2 rows/request"
  printf '%-10s %-8s %12s %10s %10s %8s\n' server model "req/s" p50 p99 non-2xx
  for k in "$@"; do
    [ -n "${R[$k]:-}" ] || continue
    read -r rps p50 p99 bad <<< "${R[$k]}"
    printf '%-10s %-8s %12s %10s %10s %8s\n' "${k%%-*}" "${k#*-}" "$rps" "$p50" "$p99" "$bad"
  done
}

# misbehaving_model <name> <predictor config> [<[limits] line>]: publishes the
# test plugin `misbehave` (built by build.rs beside the bundled plugins) and
# trains `bench/<name>@1.0.0` with it as predictor (aliased production), in
# $TENSORLET_HOME; $work/trigger.json is a request that sets it off (a value
# above 1000, for `only_above = 1000.0`).
misbehaving_model() {
  local out
  out=$(dirname "$(ls -t "$CARGO_TARGET_DIR"/release/build/tensorlet-*/out/misbehave.wasm | head -1)")
  if ! "$T" key list 2>/dev/null | grep -q '^bench '; then
    "$T" keygen bench >/dev/null
    "$T" trust add "$("$T" key export bench | tail -1)" --namespace bench >/dev/null
    "$T" publish "$out/misbehave.wasm" --name bench/misbehave --version 1.0.0 --kind trainer \
      --key bench >/dev/null
    "$T" publish "$out/standardize.wasm" --name bench/standardize --version 1.0.0 \
      --kind preprocessor --key bench >/dev/null
  fi
  cat > "$work/$1.toml" <<TOML
[pipeline]
name = "$1"
[data]
label = "species"
[preprocessor]
ref = "bench/standardize@1.0.0"
[trainer]
ref = "bench/misbehave@1.0.0"
[predictor]
ref = "bench/misbehave@1.0.0"
config = $2
[training]
epochs = 2
[limits]
${3:-}
TOML
  "$T" train "$work/$1.toml" --data "$root/data/iris.csv" --key bench --model "bench/$1" \
    --version 1.0.0 >/dev/null 2>&1
  "$T" alias set "bench/$1" production 1.0.0 >/dev/null
  echo '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1e6,1,1,1]}]}' \
    > "$work/trigger.json"
}
