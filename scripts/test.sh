#!/usr/bin/env bash
# Run every test: installs what the tests need (Debian packages: MariaDB server and client, MySQLdb,
# tcpdump, tshark, chromium), then two tiers.
#
# Fast tier (a mistake fails here, in a minute or two once dependencies are built): formatting,
# clippy with warnings denied, the API docs with warnings (and missing docs) denied, the unit tests
# and the golden reports.
# Full tier: every test of every package, with the scenarios captured afresh from a real MariaDB
# (PROXYSCOPE_LAB=1), tshark differentials, headless Chromium, live capture; then the build without
# libpcap and a short run of every fuzz target.
#
#   scripts/test.sh [extra cargo test args]     (the extra args go to the full tier's cargo test)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS" >&2; }

scripts/ensure-packages.sh
export PATH="$PATH:/usr/sbin"

step "fast tier: rustfmt"
cargo fmt --all --check
step "fast tier: clippy"
cargo clippy --locked --workspace --all-targets --quiet -- -D warnings
step "fast tier: docs"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet
step "fast tier: unit and golden tests"
cargo test --locked --workspace --lib --bins --test golden

step "full tier: every test"
export PROXYSCOPE_LAB=1
# --all-targets also runs the criterion benchmark once, as a test (the harness takes no --test-threads).
cargo test --locked --workspace --all-targets "$@"
step "full tier: the offline-only build"
# The offline-only build (no `live` feature, no libpcap) must keep compiling; a check is enough.
cargo check --locked --no-default-features --lib --bins
step "full tier: fuzz smoke"
# Every decoder under libFuzzer for a short while, one target per core (longer runs: scripts/fuzz.sh 600).
scripts/fuzz.sh 8
step "done"
