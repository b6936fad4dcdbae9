#!/usr/bin/env bash
# Training speed: the bundled digits MLP trained by tensorlet with the host's
# autodiff (a `model` plugin, ABI 0.2), by the hand-written ABI 0.1 trainer,
# and by PyTorch on the CPU with one thread and with all of them; the bundled
# digits CNN by tensorlet and by PyTorch the same way (`--cnn`); all in one run
# on this machine; then the resident memory of a 10,000-step autodiff run.
# docs/benchmarks.md holds the latest numbers.
#
# Settings: EPOCHS (default 20), RSS_STEPS (default 10000), TENSORLET_BIN (an
# already built binary; otherwise `cargo build --release`), VENV (a virtualenv
# for PyTorch; default $CARGO_TARGET_DIR/bench-venv, created with
# `pip install torch numpy` when missing, a few GB).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
EPOCHS=${EPOCHS:-20}
RSS_STEPS=${RSS_STEPS:-10000}
VENV=${VENV:-$CARGO_TARGET_DIR/bench-venv}

if [ -z "${TENSORLET_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
T=${TENSORLET_BIN:-$CARGO_TARGET_DIR/release/tensorlet}

if ! "$VENV/bin/python" -c 'import torch, numpy' 2>/dev/null; then
  echo "installing PyTorch into $VENV (pip install torch numpy)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check torch numpy
fi

echo "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
"$T" bench train --device cpu --epochs "$EPOCHS" --python "$VENV/bin/python" --cnn \
  --rss-steps "$RSS_STEPS"
