#!/usr/bin/env bash
# Server time of the web console: the runs page with 1,000 recorded runs,
# a run of 10,000 epochs (its charts downsampled), a zoom into it, a
# comparison and the verified audit log. The home is filled through the
# registry's own calls; each page is requested through the console's router
# in-process (`tensorlet bench console`). docs/console.md holds the latest
# numbers.
#
# Settings: RUNS (default 1000), EPOCHS (per run, default 20), LONG (epochs of
# the long run, default 10000), REPEAT (requests per page, default 20),
# TENSORLET_BIN (an already built binary; otherwise `cargo build --release`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

if [ -z "${TENSORLET_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
T=${TENSORLET_BIN:-$CARGO_TARGET_DIR/release/tensorlet}

echo "== console server time ($(nproc) CPUs, $(uname -m))"
"$T" bench console --runs "${RUNS:-1000}" --epochs "${EPOCHS:-20}" \
  --long-epochs "${LONG:-10000}" --repeat "${REPEAT:-20}"
