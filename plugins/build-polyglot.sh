#!/usr/bin/env bash
# Builds tensorlet's example plugins written in Python, JavaScript and C into
# WebAssembly components, installing the toolchains that are missing:
#
#   Python      componentize-py (PyPI, pinned below) in a virtualenv
#   JavaScript  jco + componentize-qjs (npm, pinned by plugins/js/package-lock.json)
#   C           clang-19, lld-19, wasi-libc (apt) and componentize-c
#               (sdk/c/componentize: wit-bindgen-c + wit-component + the WASI
#               preview-1 reactor adapter from crates.io)
#
# Outputs, in $TENSORLET_POLYGLOT_DIR (default plugins/out/):
#   standardize-py.wasm          preprocessor  plugins/python/standardize/app.py
#   softmax-regression-js.wasm   predictor     plugins/js/softmax-regression.js
#   mlp-c.wasm                   predictor     plugins/c/mlp.c
#
# Idempotent: tools already installed are kept, and a component newer than its
# sources is not rebuilt. Tools live under $CARGO_TARGET_DIR/polyglot-tools
# (default target/polyglot-tools). `tests/polyglot.rs` loads the outputs.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${TENSORLET_POLYGLOT_DIR:-$ROOT/plugins/out}"
TOOLS="${CARGO_TARGET_DIR:-$ROOT/target}/polyglot-tools"
COMPONENTIZE_PY_VERSION=0.25.1
APT_PACKAGES=(clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc)

mkdir -p "$OUT" "$TOOLS"
OUT="$(cd "$OUT" && pwd)"
TOOLS="$(cd "$TOOLS" && pwd)"
cd "$ROOT"

step() { printf '== %s\n' "$*"; }

# apt-get as root, or through sudo.
SUDO=""
[[ "$(id -u)" -eq 0 ]] || SUDO="sudo"

# True when $1 exists and is newer than every file under the other arguments.
fresh() {
    local out="$1"
    shift
    [[ -f "$out" ]] || return 1
    [[ -z "$(find "$@" -type f -newer "$out" -not -path '*/__pycache__/*' -print -quit)" ]]
}

# ---- toolchains -------------------------------------------------------------

step "toolchains"

# Python: componentize-py in a virtualenv (Debian's python3 refuses global pip installs).
VENV="$TOOLS/venv"
if [[ "$("$VENV/bin/componentize-py" --version 2>/dev/null)" != "componentize-py $COMPONENTIZE_PY_VERSION" ]]; then
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        # Debian splits venv (and ensurepip) out of python3.
        step "installing python3 and python3-venv (apt)"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            python3 python3-venv
        rm -rf "$VENV"
        python3 -m venv "$VENV" || {
            echo "error: python3 -m venv failed; install Python 3 with venv support (Debian: apt-get install python3-venv)" >&2
            exit 1
        }
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
COMPONENTIZE_PY="$VENV/bin/componentize-py"
"$COMPONENTIZE_PY" --version

# JavaScript: the versions pinned in plugins/js/package-lock.json. Not `npm ci`: npm
# leaves some platform packages of optional dependencies out of the lock file it
# writes and `npm ci` then refuses it; `--no-save` installs the locked versions and
# leaves the lock file alone.
JS="$ROOT/plugins/js"
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
if ! fresh "$JS/node_modules/.package-lock.json" "$JS/package-lock.json" "$JS/package.json"; then
    (cd "$JS" && npm install --no-save --no-audit --no-fund --loglevel=error)
fi
JCO="$JS/node_modules/.bin/jco"
echo "jco $("$JCO" --version)"

# C: Debian's clang 19 with the wasm32 runtime and wasi-libc (WASI preview 1).
if ! command -v clang-19 >/dev/null || ! command -v wasm-ld-19 >/dev/null ||
    [[ ! -f /usr/lib/wasm32-wasi/libc.a ]] ||
    [[ ! -f /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a ]]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"
fi
clang-19 --version | head -n 1

# componentize-c: a no-op for cargo when it is up to date.
cargo build --release --locked --quiet \
    --manifest-path "$ROOT/sdk/c/componentize/Cargo.toml" --target-dir "$TOOLS/cargo"
COMPONENTIZE_C="$TOOLS/cargo/release/componentize-c"

# ---- components -------------------------------------------------------------

built=()

# Python preprocessor: componentize-py bundles CPython, the app and sdk/python.
out="$OUT/standardize-py.wasm"
if ! fresh "$out" wit sdk/python plugins/python/standardize "$COMPONENTIZE_PY"; then
    step "python: $out"
    "$COMPONENTIZE_PY" -d wit -w preprocessor componentize \
        -p sdk/python -p plugins/python/standardize app -o "$out.tmp"
    mv "$out.tmp" "$out"
fi
built+=("$out preprocessor")

# JavaScript predictor: jco with the QuickJS engine, synchronous exports, and the
# SDK module bundled in.
out="$OUT/softmax-regression-js.wasm"
if ! fresh "$out" wit sdk/js plugins/js/softmax-regression.js "$JS/package-lock.json"; then
    step "javascript: $out"
    (cd "$JS" && "$JCO" componentize softmax-regression.js --wit ../../wit --world-name predictor \
        --backend quickjs --backend-qjs-disable-async \
        --bundle --bundle-config ../../sdk/js/bundle.config.js -o "$out.tmp")
    mv "$out.tmp" "$out"
fi
built+=("$out predictor")

# C predictor: bindings, clang for wasm32-wasi (a reactor: no main), then the core
# module becomes a component with the WASI preview-1 adapter.
out="$OUT/mlp-c.wasm"
if ! fresh "$out" wit sdk/c/tensorlet.h sdk/c/tensorlet.c plugins/c/mlp.c "$COMPONENTIZE_C"; then
    step "c: $out"
    gen="$TOOLS/c-bindings/predictor"
    "$COMPONENTIZE_C" bindings wit predictor "$gen" >/dev/null
    clang-19 --target=wasm32-wasi -mexec-model=reactor -O2 -std=c11 -Wall -Wextra -Werror \
        -Wl,--strip-debug -I sdk/c -I "$gen" \
        plugins/c/mlp.c sdk/c/tensorlet.c "$gen/plugin.c" "$gen/plugin_component_type.o" \
        -o "$TOOLS/mlp-c.core.wasm"
    "$COMPONENTIZE_C" new "$TOOLS/mlp-c.core.wasm" "$out.tmp" >/dev/null
    mv "$out.tmp" "$out"
fi
built+=("$out predictor")

step "built"
for entry in "${built[@]}"; do
    file="${entry% *}"
    printf '%-12s %9s bytes  sha256:%s  %s\n' "${entry##* }" "$(stat -c %s "$file")" \
        "$(sha256sum "$file" | cut -c1-16)…" "$file"
done
