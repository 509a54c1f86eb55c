#!/usr/bin/env bash
# Install Python packages the tests need from PyPI into a directory of their own (not the system's or
# the user's site), only those not installed there yet, and print the directory to put on PYTHONPATH
# (DIR/cpXY, for the python3 on PATH).
#
#   scripts/ensure-python.sh DIR PKG==VERSION...      e.g. target/tmp/python chdb-core==26.9.0 pyVRL==0.0.2
#
# Pinned versions, and no dependencies pulled in (--no-deps): name every package that is needed, so
# that what a test runs against does not move under it (chdb-core alone is 530 MB; its pandas and
# pyarrow would double that and are not needed to run SQL). A stamp per package makes the second
# call free; a lock lets tests running at once share DIR. Needs python3 with pip.
set -euo pipefail

(($# >= 2)) || {
  echo "usage: $0 DIR PKG==VERSION..." >&2
  exit 2
}
dir=$1
shift
for spec in "$@"; do
  # Registry names and pinned versions only: nothing option-like reaches pip.
  [[ $spec =~ ^[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][A-Za-z0-9.+-]*$ ]] || {
    echo "ensure-python: not NAME==VERSION: '$spec'" >&2
    exit 2
  }
done
# Binary wheels are built for one interpreter: a subdirectory per python3 version.
dir=$dir/$(python3 -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
exec 9>"$dir/.lock"
flock 9
for spec in "$@"; do
  stamp="$dir/.installed-$spec"
  [[ -e $stamp ]] && continue
  log=$(mktemp "${TMPDIR:-/tmp}/ensure-python.XXXXXX")
  start=$SECONDS
  if ! python3 -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
    --target "$dir" "$spec" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f -- "$log"
    echo "ensure-python: installing $spec into $dir failed" >&2
    exit 1
  fi
  rm -f -- "$log"
  echo "ensure-python: installed $spec into $dir in $((SECONDS - start)) s" >&2
  : >"$stamp"
done
echo "$dir"
