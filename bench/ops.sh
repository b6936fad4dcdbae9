#!/usr/bin/env bash
# Op throughput: conv2d and batched matmul on tensorlet's CPU backend (and GPU
# backend when there is a GPU), next to the plain CPU references (im2col +
# sgemm per image; sgemm per product) and PyTorch on the CPU with one thread
# and with all of them, in one run on this machine.
# docs/benchmarks.md holds the latest numbers.
#
# Settings: MIN_TIME (seconds per cell, default 1), TENSORLET_BIN (an already
# built binary; otherwise `cargo build --release`), VENV (a virtualenv for
# PyTorch; default $CARGO_TARGET_DIR/bench-venv, created with
# `pip install torch numpy` when missing, a few GB). Extra arguments go to
# `tensorlet bench ops` (e.g. --device cpu, --conv 32x32x4x4x64).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
MIN_TIME=${MIN_TIME:-1}
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
"$T" bench ops --min-time "$MIN_TIME" --python "$VENV/bin/python" "$@"
