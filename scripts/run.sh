#!/usr/bin/env bash
# Build proxyscope and analyse a bundled capture (or the files given).
#
#   scripts/run.sh [ARGS...]      default: the proxy lab's sysown/proxysql#4500 capture, decrypted
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The binary links libpcap (live capture): its development package must be there to build.
scripts/ensure-packages.sh libpcap-dev
cargo build --release --locked --quiet
if (($# == 0)); then
  set -- --keylog captures/lab/dirty-ssl.keylog captures/lab/dirty-ssl.pcap.gz
fi
exec ./target/release/proxyscope analyze "$@"
