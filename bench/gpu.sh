#!/usr/bin/env bash
# What a GPU machine has to measure, in one run, ending in one table
# (docs/gpu.md says why each number matters and what is measured so far):
#
#   1. `tensorlet bench matmul` on the GPU at SIZES (default 256..8192), in
#      GFLOP/s and in % of the GPU's FP32 peak, against the target of
#      TARGET_PCT % (40) at n = TARGET_N (4096); the CPU backend beside it up
#      to CPU_MAX (2048; it is single-threaded, 8192 takes minutes).
#   2. The CPU/GPU crossover: both backends at CROSSOVER_SIZES (16..1024);
#      the smallest n from which the GPU is faster at every measured size.
#   3. The GPU test suite: every test that needs an adapter (cargo test …
#      --ignored on the GPU test files; needs cargo, SKIP_TESTS=1 skips).
#   4. `tensorlet bench train`: seconds per digits epoch, CPU and GPU.
#   5. `tensorlet demo --device gpu`: wall time and validation accuracies.
#
# Settings: PEAK_TFLOPS (the GPU's FP32 peak, default 67: an H200), SIZES,
# CROSSOVER_SIZES, CPU_MAX, MIN_TIME (s per matmul cell, default 0.5),
# TARGET_PCT, TARGET_N, EPOCHS (bench train, default 5), TENSORLET_BIN (an
# already built binary; otherwise `cargo build --release`), OUT (where the
# raw outputs are kept; default a temporary directory, printed at the end).
# Exits non-zero when a step fails or the GPU misses the matmul target.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
PEAK_TFLOPS=${PEAK_TFLOPS:-67}
SIZES=${SIZES:-256,512,1024,2048,4096,8192}
CROSSOVER_SIZES=${CROSSOVER_SIZES:-16,32,64,128,256,512,1024}
CPU_MAX=${CPU_MAX:-2048}
MIN_TIME=${MIN_TIME:-0.5}
TARGET_PCT=${TARGET_PCT:-40}
TARGET_N=${TARGET_N:-4096}
EPOCHS=${EPOCHS:-5}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

if [ -z "${TENSORLET_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
T=${TENSORLET_BIN:-$CARGO_TARGET_DIR/release/tensorlet}
export TENSORLET_HOME="$OUT/home"
unset TENSORLET_DEVICE
failed=()

# The adapter `--device gpu` takes; stop here without one.
"$T" devices --json > "$OUT/devices.json"
mapfile -t adapter < <(python3 - "$OUT/devices.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for a in d["adapters"]:
    if a["name"] == d["gpu"]:
        print(a["name"])
        print(", ".join([a["backend"], a["device_type"], "driver " + (a["driver"] or "?")]))
        break
PY
)
gpu=${adapter[0]:-}
kind=${adapter[1]:-}
[ -n "$gpu" ] || { echo "no GPU adapter: see docs/testing.md" >&2; exit 2; }

# matmul <file> <sizes> [--device …]: `bench matmul`, GFLOP/s rows kept as
# "n col0 col1 …" in <file>.rows.
matmul() {
  local file=$1 sizes=$2; shift 2
  "$T" bench matmul --sizes "$sizes" --min-time "$MIN_TIME" "$@" > "$file"
  awk '$1 ~ /^[0-9]+$/' "$file" > "$file.rows"
}

# Sizes of SIZES above CPU_MAX go to the GPU alone; the rest, and the
# crossover sizes, to both backends.
both=$(tr , '\n' <<< "$CROSSOVER_SIZES,$SIZES" | awk -v m="$CPU_MAX" '$1 <= m' | sort -n -u | paste -sd,)
alone=$(tr , '\n' <<< "$SIZES" | awk -v m="$CPU_MAX" '$1 > m' | sort -n -u | paste -sd,)
echo "matmul on the cpu and the gpu: $both" >&2
matmul "$OUT/matmul-both.txt" "$both" || failed+=("bench matmul")
if [ -n "$alone" ]; then
  echo "matmul on the gpu alone: $alone" >&2
  matmul "$OUT/matmul-gpu.txt" "$alone" --device gpu || failed+=("bench matmul --device gpu")
fi
# n -> "cpu gpu" (GFLOP/s; "-" where not measured). In the two-device table
# the columns are [0] cpu, [1] gpu, [s] sgemm; alone, [0] gpu, [s] sgemm.
declare -A CPU GPU
while read -r n c g _; do CPU[$n]=$c; GPU[$n]=$g; done < "$OUT/matmul-both.txt.rows"
if [ -n "$alone" ] && [ -f "$OUT/matmul-gpu.txt.rows" ]; then
  while read -r n g _; do CPU[$n]=-; GPU[$n]=$g; done < "$OUT/matmul-gpu.txt.rows"
fi

# The GPU test suite: every ignored test of these files needs an adapter.
tests="skipped (SKIP_TESTS=1)"
if [ -z "${SKIP_TESTS:-}" ]; then
  if command -v cargo >/dev/null; then
    echo "the GPU test suite" >&2
    if (cd "$root" && cargo test --release --workspace --test backends --test pool --test ops \
          --test nd_ops --test nd_backends --test gradcheck --test device_loss --test gpu \
          -- --ignored) > "$OUT/tests.txt" 2>&1; then ok=1; else ok=0; fi
    tests=$(awk '/^test result:/ {p+=$4; f+=$6} END {printf "%d passed, %d failed", p, f}' "$OUT/tests.txt")
    [ "$ok" = 1 ] || { tests="$tests (FAILED: see $OUT/tests.txt)"; failed+=("GPU tests"); }
  else
    tests="not run: no cargo on this machine"
  fi
fi

echo "bench train" >&2
"$T" bench train --epochs "$EPOCHS" > "$OUT/train.txt" 2>&1 || failed+=("bench train")

echo "demo --device gpu" >&2
start=$(date +%s.%N)
if "$T" demo --device gpu > "$OUT/demo.txt" 2>&1; then demo=ok; else demo=FAILED; failed+=("demo --device gpu"); fi
demo_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')

# The table.
echo
echo "GPU: $gpu ($kind); FP32 peak ${PEAK_TFLOPS} TFLOP/s (PEAK_TFLOPS)"
echo "CPU: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); the CPU backend is single-threaded"
echo
printf '%8s %14s %14s %12s\n' n "cpu GFLOP/s" "gpu GFLOP/s" "gpu % peak"
target=""
for n in $(printf '%s\n' "${!GPU[@]}" | sort -n); do
  pct=$(awk -v g="${GPU[$n]}" -v p="$PEAK_TFLOPS" 'BEGIN { if (g ~ /^[0-9.]+$/) printf "%.1f", 100 * g / (p * 1000); else print "-" }')
  printf '%8s %14s %14s %12s\n' "$n" "${CPU[$n]}" "${GPU[$n]}" "$pct"
  [ "$n" = "$TARGET_N" ] && target=$pct
done
if [ -z "$target" ] || [ "$target" = "-" ]; then
  echo "target: >= $TARGET_PCT % of peak at n = $TARGET_N: not measured (add $TARGET_N to SIZES)"
  failed+=("matmul target not measured")
elif awk -v t="$target" -v w="$TARGET_PCT" 'BEGIN { exit !(t >= w) }'; then
  echo "target: >= $TARGET_PCT % of peak at n = $TARGET_N: $target %, met"
else
  echo "target: >= $TARGET_PCT % of peak at n = $TARGET_N: $target %, MISSED"
  failed+=("matmul target")
fi
# The crossover: the smallest n from which the GPU wins at every size both
# measured.
crossover=$(for n in "${!CPU[@]}"; do [ "${CPU[$n]}" = - ] || echo "$n ${CPU[$n]} ${GPU[$n]}"; done | sort -n |
  awk '{ n[NR]=$1; win[NR]=($3 > $2) } END { c="none (the CPU won at the largest size measured)";
       for (i = NR; i >= 1 && win[i]; i--) c = n[i]; print c }')
echo "crossover: the GPU is faster from n = $crossover (measured up to n = $CPU_MAX on the cpu)"
echo "GPU test suite: $tests"
awk '/^tensorlet:/ { kind = ($0 ~ / gpu \(/) ? "gpu" : "cpu"; sub(/^tensorlet: /, ""); split($0, w, "  ");
       printf "bench train, %s on the %s: %s s/epoch (first epoch %s s), val acc %s\n", w[1], kind, $(NF-1), $(NF-2), $NF }' "$OUT/train.txt"
grep -q "^tensorlet:" "$OUT/train.txt" || echo "bench train: FAILED (see $OUT/train.txt)"
accs=$(awk '/validation accuracy/ { printf "%s%s %s", sep, $1, $4; sep=", " }' "$OUT/demo.txt")
printf 'demo --device gpu: %s in %.1f s (validation accuracy: %s)\n' "$demo" "$demo_s" "${accs:-none}"
echo
echo "raw outputs: $OUT"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
