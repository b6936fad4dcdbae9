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
#   standardize-py.wasm                preprocessor  plugins/python/standardize/app.py
#   mlp-model-py.wasm                  model         plugins/python/mlp/app.py
#   cnn-model-py.wasm                  model         plugins/python/cnn/app.py
#   softmax-sgd-py.wasm                trainer       plugins/python/softmax-sgd/app.py
#   nd-ops-py.wasm                     preprocessor  plugins/python/nd-ops/app.py
#   softmax-regression-js.wasm         predictor     plugins/js/softmax-regression.js
#   softmax-regression-model-js.wasm   model         plugins/js/softmax-regression-model.js
#   softmax-sgd-js.wasm                trainer       plugins/js/softmax-sgd.js
#   cnn-js.wasm                        predictor     plugins/js/cnn.js
#   nd-ops-js.wasm                     preprocessor  plugins/js/nd-ops.js
#   mlp-c.wasm                         predictor     plugins/c/mlp.c
#   softmax-regression-model-c.wasm    model         plugins/c/softmax-regression.c
#   softmax-sgd-c.wasm                 trainer       plugins/c/softmax-sgd.c
#   cnn-c.wasm                         predictor     plugins/c/cnn.c
#   nd-ops-c.wasm                      preprocessor  plugins/c/nd-ops.c
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

# Python: componentize-py bundles CPython, the app module and sdk/python.
python_component() {
    local out="$OUT/$1" world="$2" dir="$3"
    if ! fresh "$out" wit sdk/python "$dir" "$COMPONENTIZE_PY"; then
        step "python: $out"
        "$COMPONENTIZE_PY" -d wit -w "$world" componentize -p sdk/python -p "$dir" app -o "$out.tmp"
        mv "$out.tmp" "$out"
    fi
    built+=("$out $world")
}

# JavaScript: jco with the QuickJS engine, synchronous exports, and the SDK module
# bundled in.
js_component() {
    local out="$OUT/$1" world="$2" src="$3"
    if ! fresh "$out" wit sdk/js "plugins/js/$src" "$JS/package-lock.json"; then
        step "javascript: $out"
        (cd "$JS" && "$JCO" componentize "$src" --wit ../../wit --world-name "$world" \
            --backend quickjs --backend-qjs-disable-async \
            --bundle --bundle-config ../../sdk/js/bundle.config.js -o "$out.tmp")
        mv "$out.tmp" "$out"
    fi
    built+=("$out $world")
}

# C: bindings for the world, clang for wasm32-wasi (a reactor: no main), then the
# core module becomes a component with the WASI preview-1 adapter.
c_component() {
    local out="$OUT/$1" world="$2" src="$3"
    if ! fresh "$out" wit sdk/c/tensorlet.h sdk/c/tensorlet.c "$src" "$COMPONENTIZE_C"; then
        step "c: $out"
        local gen="$TOOLS/c-bindings/$world" core="$TOOLS/${1%.wasm}.core.wasm"
        "$COMPONENTIZE_C" bindings wit "$world" "$gen" >/dev/null
        clang-19 --target=wasm32-wasi -mexec-model=reactor -O2 -std=c11 -Wall -Wextra -Werror \
            -Wl,--strip-debug -I sdk/c -I "$gen" \
            "$src" sdk/c/tensorlet.c "$gen/plugin.c" "$gen/plugin_component_type.o" -o "$core"
        "$COMPONENTIZE_C" new "$core" "$out.tmp" >/dev/null
        mv "$out.tmp" "$out"
    fi
    built+=("$out $world")
}

python_component standardize-py.wasm preprocessor plugins/python/standardize
python_component mlp-model-py.wasm model plugins/python/mlp
python_component cnn-model-py.wasm model plugins/python/cnn
python_component softmax-sgd-py.wasm trainer plugins/python/softmax-sgd
python_component nd-ops-py.wasm preprocessor plugins/python/nd-ops

js_component softmax-regression-js.wasm predictor softmax-regression.js
js_component softmax-regression-model-js.wasm model softmax-regression-model.js
js_component softmax-sgd-js.wasm trainer softmax-sgd.js
js_component cnn-js.wasm predictor cnn.js
js_component nd-ops-js.wasm preprocessor nd-ops.js

c_component mlp-c.wasm predictor plugins/c/mlp.c
c_component softmax-regression-model-c.wasm model plugins/c/softmax-regression.c
c_component softmax-sgd-c.wasm trainer plugins/c/softmax-sgd.c
c_component cnn-c.wasm predictor plugins/c/cnn.c
c_component nd-ops-c.wasm preprocessor plugins/c/nd-ops.c

step "built"
for entry in "${built[@]}"; do
    file="${entry% *}"
    printf '%-12s %9s bytes  sha256:%s  %s\n' "${entry##* }" "$(stat -c %s "$file")" \
        "$(sha256sum "$file" | cut -c1-16)…" "$file"
done
