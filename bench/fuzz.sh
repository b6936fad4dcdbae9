#!/usr/bin/env bash
# Fuzzes what tensorlet reads from outside (fuzz/fuzz_targets/): each target
# for SECONDS (default 60) with libFuzzer through cargo-fuzz, on the nightly
# toolchain, then prints a Markdown table of executions, coverage and
# crashes (docs/reliability.md keeps the latest).
#
#   bench/fuzz.sh [SECONDS] [TARGET...]
#
# Needs `rustup toolchain install nightly --profile minimal` and
# `cargo install cargo-fuzz --locked` (.ci/run installs both). Each target
# starts from its seeds in fuzz/corpus/<target> and the inputs that once
# crashed it in fuzz/regressions/<target> (both read only), plus what earlier
# runs on this machine found ($CARGO_TARGET_DIR/fuzz/corpus/<target>). A
# crash, a panic, a timeout (an input taking over 5 s) or running out of
# memory stops that target: the input is kept under fuzz/artifacts/<target>/,
# the table says so and the script exits 1 after the other targets ran.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}/fuzz"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

command -v cargo-fuzz >/dev/null || {
    echo "bench/fuzz.sh needs cargo-fuzz: cargo install cargo-fuzz --locked" >&2
    exit 2
}
rustup run nightly rustc --version >/dev/null 2>&1 || {
    echo "bench/fuzz.sh needs the nightly toolchain: rustup toolchain install nightly --profile minimal" >&2
    exit 2
}

cd fuzz
if [[ $# -eq 0 ]]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
else
    targets=("$@")
fi

echo "building ${#targets[@]} targets (nightly, AddressSanitizer, coverage)" >&2
cargo +nightly fuzz build --target-dir "$target_dir" >&2

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=()
rows=()
for t in "${targets[@]}"; do
    work="$target_dir/corpus/$t"
    mkdir -p "$work" "corpus/$t"
    echo "fuzzing $t for ${seconds}s" >&2
    status=ok
    mkdir -p "regressions/$t"
    if ! cargo +nightly fuzz run --target-dir "$target_dir" "$t" "$work" "corpus/$t" "regressions/$t" -- \
        -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$logs/$t" 2>&1; then
        status="**failed** ($(grep -m1 -oE 'ERROR: [^ ]+ [^ ]+|panicked at [^ ]+|deadly signal|timeout|out-of-memory' "$logs/$t" || echo 'see log'))"
        failed+=("$t")
        grep -A8 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)|^Failing input' "$logs/$t" |
            grep -v '^Output of\|^\s*\[' | head -40 >&2
    fi
    stat() { grep -m1 "^stat::$1:" "$logs/$t" | awk '{print $2}' || true; }
    cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$logs/$t" | tail -1 | awk '{print $2 " / " $4}')"
    corpus="$(find "$work" "corpus/$t" "regressions/$t" -type f | wc -l)"
    rows+=("| \`$t\` | $(stat number_of_executed_units) | $(stat average_exec_per_sec) | ${cov:-?} | $corpus | $(stat peak_rss_mb) | $status |")
done

echo
echo "${seconds} s per target, $(nproc) cores, $(rustup run nightly rustc --version | cut -d' ' -f1-2)"
echo
echo "| target | executions | per second | coverage (edges / features) | corpus | peak RSS (MB) | result |"
echo "|---|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo >&2
    echo "failing targets: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
