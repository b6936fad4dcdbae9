#!/usr/bin/env bash
# Edge footprint: release binary size (as built and stripped), idle RSS of
# `tensorlet serve` with one model loaded, and start-up time to ready with a
# cold and a warm compiled-component cache, for each binary given.
#
#   bash bench/edge.sh                   # the binaries below that exist
#   RUNS=5 bash bench/edge.sh
#
# Binaries (override with the variables):
#   X86_DEFAULT  $CARGO_TARGET_DIR/release/tensorlet          (cargo build --release)
#   X86_EDGE     $EDGE_TARGET_DIR/release/tensorlet           (… --no-default-features;
#                a target directory of its own, default ~/.cache/tensorlet-target-edge,
#                so that it does not replace the default build's binary)
#   ARM64_EDGE   $ARM64_TARGET_DIR/aarch64-unknown-linux-gnu/release/tensorlet
#                (… --target aarch64-unknown-linux-gnu --no-default-features;
#                ARM64_TARGET_DIR defaults to CARGO_TARGET_DIR)
# The arm64 binary runs under qemu-aarch64 (Debian qemu-user): its RSS includes
# the emulator and its translated code, and its times are emulated, not an arm64
# device's; qemu gets a 512 GiB address space (-R), as a 39-bit-VA arm64 kernel
# gives. The model is trained once by the x86-64 binary and served by all.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
EDGE_TARGET_DIR=${EDGE_TARGET_DIR:-$HOME/.cache/tensorlet-target-edge}
ARM64_TARGET_DIR=${ARM64_TARGET_DIR:-$CARGO_TARGET_DIR}
X86_DEFAULT=${X86_DEFAULT:-$CARGO_TARGET_DIR/release/tensorlet}
X86_EDGE=${X86_EDGE:-$EDGE_TARGET_DIR/release/tensorlet}
ARM64_EDGE=${ARM64_EDGE:-$ARM64_TARGET_DIR/aarch64-unknown-linux-gnu/release/tensorlet}
SYSROOT=/usr/aarch64-linux-gnu
command -v curl >/dev/null || { echo "bench/edge.sh needs curl" >&2; exit 2; }
[ -x "$X86_DEFAULT" ] || { echo "no $X86_DEFAULT: run cargo build --release" >&2; exit 2; }

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# The model every binary serves: iris, trained by the x86-64 binary.
TENSORLET_HOME="$work/model" "$X86_DEFAULT" demo --out "$work/model" --device cpu >/dev/null 2>&1

# run <arch> <binary> <args…>: the binary, under qemu when it is arm64.
run() {
  local arch=$1 bin=$2; shift 2
  if [ "$arch" = arm64 ]; then exec qemu-aarch64 -R 0x8000000000 -L "$SYSROOT" "$bin" "$@"; else exec "$bin" "$@"; fi
}

now_ms() { date +%s%3N; }

# start <arch> <binary> <home> <port>: serve one model, wait for ready;
# sets $pid and $ready_ms (milliseconds from spawn to ready).
start() {
  local t0 port=$4
  t0=$(now_ms)
  (TENSORLET_HOME=$3 run "$1" "$2" serve --model tensorlet/iris-model@0.1.0 \
     --addr "127.0.0.1:$port" --admin-addr off --grpc-addr off --device cpu) >"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 60000); do
    if curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null 2>&1; then
      ready_ms=$(( $(now_ms) - t0 )); return 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; return 1; }
    sleep 0.005
  done
  echo "the server did not become ready" >&2; return 1
}

stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b/1048576}'; }

printf '%-12s %10s %10s %10s %9s %9s %12s\n' binary "size MiB" "strip MiB" "RSS MiB" "cold ms" "warm ms" "predict ms"
port=18590
for entry in "x86-64:default:$X86_DEFAULT" "x86-64:edge:$X86_EDGE" "arm64:edge:$ARM64_EDGE"; do
  IFS=: read -r arch flavour bin <<<"$entry"
  if [ ! -x "$bin" ]; then echo "($arch $flavour: no binary at $bin, skipped)"; continue; fi
  if [ "$arch" = arm64 ] && ! command -v qemu-aarch64 >/dev/null; then
    echo "($arch: qemu-aarch64 missing, skipped)"; continue
  fi
  strip_tool=strip; [ "$arch" = arm64 ] && strip_tool=aarch64-linux-gnu-strip
  "$strip_tool" -o "$work/stripped" "$bin"
  size=$(stat -c %s "$bin"); stripped=$(stat -c %s "$work/stripped")

  home="$work/home-$arch-$flavour"
  cold=(); warm=(); rss=
  for i in $(seq 1 "$RUNS"); do
    # Cold: a fresh copy of the state, no compiled components for this engine.
    rm -rf "$home"; cp -r "$work/model" "$home"; rm -rf "$home/cache"
    port=$((port + 1)); start "$arch" "$bin" "$home" "$port"; cold+=("$ready_ms"); stop
    port=$((port + 1)); start "$arch" "$bin" "$home" "$port"; warm+=("$ready_ms")
    if [ "$i" = 1 ]; then
      # Idle RSS with one model loaded and warmed, after a request.
      curl -sf -X POST -H 'Content-Type: application/json' \
        --data '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}' \
        "http://127.0.0.1:$port/v2/models/iris-model/infer" >/dev/null
      sleep 1
      rss=$(awk '/^VmRSS/ {print $2 * 1024}' "/proc/$pid/status")
    fi
    stop
  done
  # One-shot `predict` of the 150 iris rows with a warm cache (whole process).
  predict=()
  for _ in $(seq 1 "$RUNS"); do
    t0=$(now_ms)
    (TENSORLET_HOME=$home run "$arch" "$bin" predict tensorlet/iris-model@0.1.0 \
       --input "$home/iris.csv" --device cpu >/dev/null)
    predict+=($(( $(now_ms) - t0 )))
  done
  printf '%-12s %10s %10s %10s %9s %9s %12s\n' "$arch-$flavour" "$(mib "$size")" "$(mib "$stripped")" \
    "$(mib "$rss")" "$(printf '%s\n' "${cold[@]}" | median)" "$(printf '%s\n' "${warm[@]}" | median)" \
    "$(printf '%s\n' "${predict[@]}" | median)"
done
echo "(medians of $RUNS runs; cold/warm: spawn to /v2/health/ready 200 with an empty /"
echo " filled compiled-component cache; arm64 rows run under qemu-aarch64 user-mode emulation)"
