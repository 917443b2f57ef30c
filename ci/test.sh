#!/usr/bin/env bash
# The whole test suite: set the host up, then every test of every crate.
# Mount tests skip with a printed reason where FUSE is unusable, unless
# SPFS_FUSE_REQUIRE_MOUNT=1, which makes them fail instead (.ci/run sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
ci/setup.sh
cargo test --workspace --all-targets --locked
