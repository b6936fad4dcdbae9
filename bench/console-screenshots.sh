#!/usr/bin/env bash
# Regenerates the screenshots in docs/console/: the main pages of the web
# console at 1280 px and at phone width (390 px), taken by headless Chromium
# through chromedriver from a home with trained runs (the ignored browser
# test `in_a_browser_screenshots_of_the_main_pages` of tests/console.rs).
# Needs `apt-get install chromium chromium-driver`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tensorlet-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
export TENSORLET_SCREENSHOTS="$root/docs/console"
cd "$root"
cargo test --release --test console -- --ignored --exact \
  in_a_browser_screenshots_of_the_main_pages
ls -l "$TENSORLET_SCREENSHOTS"/*.png
