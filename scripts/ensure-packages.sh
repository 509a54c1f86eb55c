#!/usr/bin/env bash
# Install the Debian packages proxyscope's build and capture scripts need, but only those that are missing.
#
#   scripts/ensure-packages.sh              ensure all of them
#   scripts/ensure-packages.sh PKG...       ensure only these (any Debian package names, e.g. libpcap-dev,
#                                           or sysbench for scripts/bench.sh)
#
# Idempotent and quiet when everything is there already: no `apt-get update` unless something must be
# installed (it is slow and needs the network). apt's output is shown only when it fails.
set -euo pipefail

# libpcap-dev: live capture in the Rust binary; the rest: scripts/make-captures.sh (real server, real
# clients, libdbd-mariadb-perl for server-side prepared statements, tcpdump, tshark for checks, openssl for
# the test certificates); chromium: tests/timeline.rs opens the HTML timeline headless; prometheus:
# its promtool checks `live --metrics`'s exposition in tests/live.rs.
default=(libpcap-dev mariadb-server mariadb-client python3-mysqldb libdbd-mariadb-perl tcpdump tshark openssl chromium prometheus)

wanted=("$@")
if ((${#wanted[@]} == 0)); then
  wanted=("${default[@]}")
fi
for pkg in "${wanted[@]}"; do
  # Debian package names only: keeps option-like or odd arguments away from apt-get.
  if [[ ! $pkg =~ ^[a-z0-9][a-z0-9.+-]+$ ]]; then
    echo "ensure-packages: not a Debian package name: '$pkg'" >&2
    exit 2
  fi
done

installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

missing=()
for pkg in "${wanted[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
((${#missing[@]})) || exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || {
    echo "ensure-packages: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  }
  sudo=(sudo)
fi

log=$(mktemp "${TMPDIR:-/tmp}/ensure-packages.XXXXXX")
trap 'rm -f -- "$log"' EXIT
# noninteractive: tshark's package otherwise asks whether non-root users may capture.
if ! {
  "${sudo[@]}" apt-get update -q &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      "${missing[@]}"
} >"$log" 2>&1; then
  cat "$log" >&2
  echo "ensure-packages: installing ${missing[*]} failed" >&2
  exit 1
fi

for pkg in "${missing[@]}"; do
  installed "$pkg" || {
    echo "ensure-packages: $pkg is still not installed after apt-get install" >&2
    exit 1
  }
done
