#!/usr/bin/env bash
# Tabular accuracy: tensorlet's linear models and MLPs against scikit-learn's
# equivalents (LinearRegression / MLPRegressor on diabetes, LogisticRegression /
# MLPClassifier on breast cancer) on the same train/test splits, in one run.
# docs/benchmarks.md holds the latest table.
#
# Settings: TENSORLET_BIN (an already built binary; otherwise `cargo build
# --release`), VENV (a virtualenv with scikit-learn; default
# $CARGO_TARGET_DIR/sklearn-venv, created with `pip install scikit-learn` when
# missing).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
VENV=${VENV:-$CARGO_TARGET_DIR/sklearn-venv}

if [ -z "${TENSORLET_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
T=${TENSORLET_BIN:-$CARGO_TARGET_DIR/release/tensorlet}

if ! "$VENV/bin/python" -c 'import sklearn' 2>/dev/null; then
  echo "installing scikit-learn into $VENV (pip install scikit-learn)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check scikit-learn
fi
"$VENV/bin/python" -c 'import sklearn; print(f"scikit-learn {sklearn.__version__}")'
"$VENV/bin/python" "$root/bench/tabular.py" "$T" "$root"
