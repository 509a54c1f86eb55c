#!/usr/bin/env bash
# Build proxyscope and analyse a bundled capture (or the files given).
#
#   scripts/run.sh [FILE...]      default: captures/server-kill-query-tls.pcap
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --locked --quiet
if (($# == 0)); then
  set -- captures/server-kill-query-tls.pcap
fi
exec ./target/release/proxyscope analyze "$@"
