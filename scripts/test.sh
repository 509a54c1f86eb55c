#!/usr/bin/env bash
# Run every test: installs what the tests need (Debian packages: MariaDB server and client, MySQLdb,
# tcpdump, tshark), then the unit tests, the tshark differential tests, the corrupt-input and mutation
# tests, and the scenarios captured afresh from a real MariaDB (PROXYSCOPE_LAB=1).
#
#   scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/ensure-packages.sh
export PATH="$PATH:/usr/sbin"
export PROXYSCOPE_LAB=1
# --all-targets also runs the criterion benchmark once, as a test (the harness takes no --test-threads).
cargo test --locked --all-targets "$@"
# The offline-only build (no `live` feature, no libpcap) must keep compiling; a check is enough.
cargo check --locked --no-default-features --lib --bins
# Every decoder under libFuzzer for a short while (longer runs: scripts/fuzz.sh 600).
scripts/fuzz.sh 8
