#!/usr/bin/env bash
# Data larger than memory: the MLP trained on a generated Parquet table of
# ROWS rows (default 10,000,000) x 50 float32 features with
# `[training] stream = true`, its peak RSS, and its rate in rows per second
# next to training in memory on a 200,000-row table of the same kind (and
# that table streamed too), in one run. docs/benchmarks.md holds the latest
# table.
#
# The rate is training rows x epochs / the epochs' own seconds (what
# `runs show` records per epoch: steps and validation, plus, streamed, the
# reading); "wall" is the whole command (hashing and reading the file to
# learn its columns, fitting the preprocessor, the epochs).
#
# Settings: ROWS, EPOCHS (on the small table, default 3), TENSORLET_BIN (an
# already built binary; otherwise `cargo build --release`), VENV (a
# virtualenv with pyarrow and numpy, default $CARGO_TARGET_DIR/pyarrow-venv,
# created when missing), KEEP_DATA (a directory to keep the generated tables
# in between runs; default a temporary one).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
ROWS=${ROWS:-10000000}
EPOCHS=${EPOCHS:-3}
VENV=${VENV:-$CARGO_TARGET_DIR/pyarrow-venv}

if [ -z "${TENSORLET_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
T=${TENSORLET_BIN:-$CARGO_TARGET_DIR/release/tensorlet}
if ! "$VENV/bin/python" -c 'import pyarrow, numpy' 2>/dev/null; then
  echo "installing pyarrow and numpy into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check pyarrow numpy
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=${KEEP_DATA:-$work}
mkdir -p "$data"
export TENSORLET_HOME="$work/home"
[ -f "$data/small.parquet" ] || "$VENV/bin/python" "$root/bench/streaming.py" "$data/small.parquet" 200000 0
[ -f "$data/big-$ROWS.parquet" ] || "$VENV/bin/python" "$root/bench/streaming.py" "$data/big-$ROWS.parquet" "$ROWS" 1

pipeline() { # epochs
  cat > "$work/wide.toml" <<TOML
[pipeline]
name = "wide"
description = "50 standardized features, MLP with one hidden ReLU layer of 64, Adam"
[data]
label = "label"
[preprocessor]
bundled = "standardize"
[model]
bundled = "mlp"
config = { hidden = [64] }
[training]
epochs = $1
batch_size = 256
learning_rate = 0.001
validation_fraction = 0.1
optimizer = "adam"
TOML
}

# run <label> <file> <epochs> [--stream]: one line of the table.
run() {
  local label=$1 file=$2 epochs=$3; shift 3
  pipeline "$epochs"
  /usr/bin/time -f "%e %M" -o "$work/time" "$T" train "$work/wide.toml" --data "$file" \
    --allow-unsigned --out "$work/model" "$@" > "$work/out" 2> "$work/err" \
    || { cat "$work/err" >&2; exit 1; }
  local id
  id=$("$T" runs list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
  "$T" runs show "$id" --json > "$work/run.json"
  read -r wall kb < "$work/time"
  python3 - "$label" "$work/run.json" "$wall" "$kb" "$(stat -c %s "$file")" "$work/model/model.json" <<'PY'
import json, sys
label, run, wall, kb, size = sys.argv[1], json.load(open(sys.argv[2])), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cps = run["checkpoints"]
rows = run["record"]["rows"]
secs = sum(c["seconds"] for c in cps)
# The training split is what the epochs step through.
train = json.load(open(sys.argv[6]))["split"][0]
print(f"{label:<28} {rows:>10} {size / 2**30:>7.2f} {len(cps):>6} {train * len(cps) / secs:>12,.0f} "
      f"{wall:>8.1f} {kb / 2**20:>9.2f} {cps[-1]['val_accuracy']:>8.4f}")
PY
}

echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); MLP 50-64-2, batch 256, Adam"
printf '%-28s %10s %7s %6s %12s %8s %9s %8s\n' "" rows GiB epochs "rows/s" "wall s" "peak GiB" "val acc"
run "in memory, 200k" "$data/small.parquet" "$EPOCHS"
run "streamed, 200k" "$data/small.parquet" "$EPOCHS" --stream
run "streamed, $ROWS" "$data/big-$ROWS.parquet" 1 --stream
