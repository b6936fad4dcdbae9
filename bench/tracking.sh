#!/usr/bin/env bash
# Central run tracking benchmark: 8 trainers, each in a home of its own, train
# the demo's iris pipeline for 100 epochs at once and record their runs,
# per-epoch metrics and checkpoints on one `tensorlet registry serve`
# (`train --registry`). Next to it, in the same run, the same 8 trainers
# recording only in their own homes. Prints the total time of each, the
# registry's peak RSS, and checks that the registry holds every checkpoint.
#
#   bash bench/tracking.sh            # TRAINERS=8 EPOCHS=100 by default
#
# Needs: curl. TENSORLET_BIN: an already built binary (otherwise `cargo build
# --release`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
TRAINERS=${TRAINERS:-8}
EPOCHS=${EPOCHS:-100}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
if [ -z "${TENSORLET_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
T=${TENSORLET_BIN:-$CARGO_TARGET_DIR/release/tensorlet}
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# The registry's home: the demo's key (trusted for `tensorlet`) and pipeline.
"$T" demo --out "$work/server" --device cpu >/dev/null 2>&1
TENSORLET_HOME="$work/server" "$T" registry serve --addr 127.0.0.1:0 > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  url=$(grep -o 'http://[0-9.:]*' "$work/server.log" | head -1 || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "the registry did not start: $(cat "$work/server.log")" >&2; exit 1; }
public=$(TENSORLET_HOME="$work/server" "$T" key export demo | tail -1)

# One home per trainer: the key, the trust policy, the pipeline pulled.
for i in $(seq 1 "$TRAINERS"); do
  h="$work/t$i"
  mkdir -p "$h/keys"
  cp "$work/server/keys/demo.key" "$work/server/keys/demo.pub" "$h/keys/"
  TENSORLET_HOME="$h" "$T" trust add "$public" --namespace tensorlet >/dev/null
  TENSORLET_HOME="$h" "$T" pull tensorlet/iris --registry "$url" >/dev/null
done

# trainers <label> <args…>: all trainers at once (trainer i with learning
# rate 0.0i; `@I@` in the arguments becomes i); prints the seconds taken.
trainers() {
  local label=$1; shift
  local start end pids=()
  start=$(date +%s.%N)
  for i in $(seq 1 "$TRAINERS"); do
    TENSORLET_HOME="$work/t$i" "$T" train tensorlet/iris --data "$root/data/iris.csv" \
      --device cpu --epochs "$EPOCHS" --lr "0.0$i" "${@//@I@/$i}" \
      > "$work/$label-$i.out" 2> "$work/$label-$i.err" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do
    wait "$p" || { echo "a trainer failed:" >&2; cat "$work"/"$label"-*.err >&2; exit 1; }
  done
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.2f}')"
}

# checkpoints: how many the registry holds (the demo's own runs included).
checkpoints() {
  TENSORLET_HOME="$work/none" "$T" runs list --registry "$url" --json |
    python3 -c "import json, sys; print(sum(r['epochs_done'] for r in json.load(sys.stdin)))"
}
before=$(checkpoints)

# A first run in each home compiles the plugins into its cache; not timed.
trainers warm-up --out "$work/model-@I@" >/dev/null

echo "== $TRAINERS trainers x $EPOCHS epochs, recorded in their own homes"
local_s=$(trainers local --out "$work/model-@I@")
echo "== the same, recorded on the registry as well (train --registry, signed)"
tracked_s=$(trainers tracked --out "$work/model-@I@" --key demo --version "0.9.@I@" \
  --registry "$url")

# Nothing lost: every checkpoint of every run is on the registry.
recorded=$(($(checkpoints) - before))
want=$((TRAINERS * EPOCHS))
[ "$recorded" -eq "$want" ] || { echo "the registry holds $recorded checkpoints, not $want" >&2; exit 1; }
rss=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$server/status")
cpus=$(nproc)

echo
echo "| $TRAINERS trainers x $EPOCHS epochs (iris, $cpus CPUs) | total time | registry peak RSS |"
echo "|---|---|---|"
echo "| recorded in their own homes | ${local_s} s | - |"
echo "| also recorded on one registry | ${tracked_s} s | ${rss} MiB |"
echo
echo "the registry holds all $recorded checkpoints"
