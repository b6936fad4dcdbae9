#!/usr/bin/env bash
# Drops what earlier builds left in the build directory and no build reads
# again: each clone path gets its own hashes for the workspace's crates, so
# every CI run on a fresh clone adds a copy of each test binary (~0.4 GB each)
# and of the workspace's libraries. Keeps the newest file of each name (and
# the newest incremental cache of each crate); cargo rebuilds anything it
# still needs.
set -euo pipefail
dir="${1:?usage: prune-target.sh TARGET_DIR}"
[[ -d "$dir" ]] || exit 0
before="$(du -sk "$dir" | cut -f1)"
# keep_newest KEY_SED: reads "mtime path" lines newest first, deletes every
# path whose key (the file name through KEY_SED) was seen before.
keep_newest() {
    sort -rn | while read -r _ path; do
        key="$(basename "$path" | sed -E "$1")"
        if [[ -n "${seen[$key]:-}" ]]; then rm -rf -- "$path"; else seen[$key]=1; fi
    done
}
for deps in "$dir"/release/deps "$dir"/*/release/deps "$dir"/fuzz/*/release/deps; do
    [[ -d "$deps" ]] || continue
    declare -A seen=()
    # Test and bench executables: name-HASH, no extension.
    find "$deps" -maxdepth 1 -type f -executable ! -name '*.*' -printf '%T@ %p\n' |
        keep_newest 's/-[0-9a-f]+$//'
    unset seen
    declare -A seen=()
    # The workspace's own libraries: libtensorlet_NAME-HASH.EXT.
    find "$deps" -maxdepth 1 -type f -name 'libtensorlet*' -printf '%T@ %p\n' |
        keep_newest 's/-[0-9a-f]+\././'
    unset seen
done
for inc in "$dir"/release/incremental "$dir"/*/release/incremental; do
    [[ -d "$inc" ]] || continue
    declare -A seen=()
    find "$inc" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' |
        keep_newest 's/-[0-9a-z]+$//'
    unset seen
done
after="$(du -sk "$dir" | cut -f1)"
echo "build directory: $((before / 1048576)) GB -> $((after / 1048576)) GB"
