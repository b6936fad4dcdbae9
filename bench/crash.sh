#!/usr/bin/env bash
# Crash benchmark: N (default 1000) SIGKILLs at random moments of a publish,
# an alias move and a training run (which writes a checkpoint per epoch),
# one third each, in one state directory. After every kill the audit log
# must verify and every write a command acknowledged (exited 0 before the
# kill) must be there; at the end SQLite's integrity check must pass and no
# temporary file may be left behind. Each command is timed once first; its
# kills come at a random moment of 1.5 times that, so about two thirds land
# while it runs.
#
#   bash bench/crash.sh            # N=1000 by default
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-1000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
if [ -z "${TENSORLET_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
T=${TENSORLET_BIN:-$CARGO_TARGET_DIR/release/tensorlet}
plugin=$(ls -t "$CARGO_TARGET_DIR"/release/build/tensorlet-*/out/standardize.wasm | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TENSORLET_HOME="$work/home"
home=$TENSORLET_HOME

"$T" keygen crash >/dev/null
"$T" trust add "$("$T" key export crash | tail -1)" --namespace crash >/dev/null
"$T" publish "$plugin" --name crash/p --version 1.0.0 --kind preprocessor --key crash >/dev/null
sed 's/^epochs = .*/epochs = 400/' "$root/plugins/pipelines/iris.toml" > "$work/iris.toml"

# ms <command…>: how long it takes, in milliseconds.
ms() {
  local t0 t1
  t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}
declare -A max
max[publish]=$(( $(ms "$T" publish "$plugin" --name crash/p --version 0.9.0 --kind preprocessor \
  --key crash) * 3 / 2 ))
max[alias]=$(( $(ms "$T" alias set crash/p production 1.0.0) * 3 / 2 ))
max[train]=$(( $(ms "$T" train "$work/iris.toml" --data "$root/data/iris.csv" --allow-unsigned \
  --out "$work/model") * 3 / 2 ))

declare -A kills=([publish]=0 [alias]=0 [train]=0) acked=([publish]=0 [alias]=0 [train]=0)
published=(1.0.0)
lost=0 unverified=0 failed=0
started=$(date +%s)
for i in $(seq 1 "$N"); do
  case $((i % 3)) in
    0) op=publish; cmd=("$T" publish "$plugin" --name crash/p --version "1.0.$i" \
         --kind preprocessor --key crash) ;;
    1) op=alias; target=${published[RANDOM % ${#published[@]}]}
       cmd=("$T" alias set crash/p production "$target") ;;
    2) op=train; cmd=("$T" train "$work/iris.toml" --data "$root/data/iris.csv" \
         --allow-unsigned --out "$work/model") ;;
  esac
  "${cmd[@]}" >/dev/null 2>&1 &
  child=$!
  sleep "$(awk -v m="${max[$op]}" -v r="$RANDOM" 'BEGIN { printf "%.3f", m * r / 32768 / 1000 }')"
  kill -9 "$child" 2>/dev/null || true
  rc=0; wait "$child" 2>/dev/null || rc=$?
  if [ "$rc" = 137 ]; then
    kills[$op]=$((kills[$op] + 1))
  elif [ "$rc" != 0 ]; then
    failed=$((failed + 1)); echo "$op failed with status $rc (not killed)"
  else
    acked[$op]=$((acked[$op] + 1))
    case $op in
      publish) published+=("1.0.$i")
               "$T" show "crash/p@1.0.$i" >/dev/null 2>&1 || { lost=$((lost + 1)); echo "lost publish 1.0.$i"; } ;;
      alias) "$T" show crash/p@production 2>/dev/null | head -1 | grep -q "crash/p@$target " \
               || { lost=$((lost + 1)); echo "lost alias move to $target"; } ;;
    esac
  fi
  "$T" audit verify >/dev/null 2>&1 || { unverified=$((unverified + 1)); echo "audit verify failed after kill $i ($op)"; }
done
seconds=$(( $(date +%s) - started ))
# A command that starts the runtime sweeps what killed writers left in the
# compiled-component cache; count what is left anywhere after it.
"$T" train "$work/iris.toml" --data "$root/data/iris.csv" --allow-unsigned --out "$work/model" \
  --epochs 1 >/dev/null 2>&1
temps=$(find "$home" -name '*.tmp*' | wc -l)
integrity=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])" "$home/registry.db")
runs=$("$T" runs list --json 2>/dev/null | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")

echo
echo "$N commands in ${seconds}s, each killed (SIGKILL) after a random 0..max ms"
printf '%-8s %8s %8s %14s\n' command max_ms killed "completed"
for op in publish alias train; do
  printf '%-8s %8s %8s %14s\n' "$op" "${max[$op]}" "${kills[$op]}" "${acked[$op]}"
done
echo "failed without being killed:        $failed"
echo "acknowledged writes missing:        $lost"
echo "audit verify failures after a kill: $unverified"
echo "PRAGMA integrity_check:             $integrity"
echo "temporary files left:               $temps"
find "$home" -name '*.tmp*' | sed "s|^$home/|  |" | head -5
echo "runs recorded:                      $runs"
