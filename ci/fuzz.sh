#!/usr/bin/env bash
# Runs each fuzz target briefly (under a minute in all), after replaying the inputs that once
# crashed it (fuzz/regressions/<target>/), so a fixed crash stays fixed. Installs cargo-fuzz
# when missing. cargo-fuzz needs nightly flags (-Zsanitizer); RUSTC_BOOTSTRAP lets the stable
# toolchain accept them, since no other toolchain can be fetched here.
#
#   FUZZ_SECONDS   seconds per target (default 25)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-25}
# The targets' own temp files (fuse_request's scratch) go here, and with it when done.
TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

for target in env_spec fuse_request; do
    regressions=fuzz/regressions/$target
    if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
        echo "fuzz: replaying $regressions"
        cargo fuzz run "$target" "$regressions"/* -- -runs=1
    fi
    echo "fuzz: $target for ${seconds}s"
    # A scratch corpus and log: what a short run finds is not worth keeping, its crashes are.
    corpus=$(mktemp -d)
    log=$(mktemp)
    if ! cargo fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz: $target failed; keep the input from fuzz/artifacts/$target/ in $regressions/ as a regression" >&2
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' "$log" || true
    rm -rf "$corpus" "$log"
done
