#!/usr/bin/env bash
# Fuzz every decoder with cargo-fuzz (libFuzzer + AddressSanitizer) for a while each.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 3600 pairing   stop at N executions (or SECONDS, whichever first)     default: 10 s each for capture, decode, tcp, mysql, tls, decrypt, pairing, secrets and metrics_http
#   FUZZ_JOBS=1 scripts/fuzz.sh 60                     targets run FUZZ_JOBS at a time (default: one per core)
#
# The toolchain here is stable; RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only sanitizer flags.
# The capture target starts from every real capture we have (bundled, captures/encap and ../shared/captures)
# as seeds; the decode target from the frames of captures/encap.
# A crash leaves its input under fuzz/artifacts/ and fails the script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs=${1:-10}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(capture decode tcp mysql tls decrypt pairing secrets metrics_http)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1

seeds=$(mktemp -d)
trap 'rm -rf -- "$seeds"' EXIT
cp captures/*.pcap "$seeds/"
[[ -d ../shared/captures ]] && cp ../shared/captures/*.pcap* "$seeds/"

cp captures/encap/*.pcap "$seeds/"
# The decode target also starts from single frames of the encapsulation captures (a link type
# selector byte, 1 = Ethernet, then the frame), so tunnels and fragments are reached at once.
mkdir -p "$seeds/decode"
/usr/bin/python3 - "$seeds/decode" captures/encap/*.pcap <<'PY'
import struct, sys
out = sys.argv[1]
for path in sys.argv[2:]:
    d = open(path, "rb").read()
    off, n = 24, 0
    while off + 16 <= len(d) and n < 40:
        incl = struct.unpack("<I", d[off + 8 : off + 12])[0]
        name = path.rsplit("/", 1)[-1]
        open(f"{out}/{name}-{n}", "wb").write(b"\x01" + d[off + 16 : off + 16 + incl])
        off += 16 + incl
        n += 1
PY

cd fuzz
log=$seeds/fuzz.log
if ! cargo fuzz build --release >"$log" 2>&1; then
  cat "$log" >&2
  echo "fuzz: building the fuzz targets failed" >&2
  exit 1
fi
runs=()
[[ -n ${FUZZ_RUNS:-} ]] && runs=(-runs="$FUZZ_RUNS")
# One libFuzzer process per core (FUZZ_JOBS to change): each target still gets SECONDS of a core.
jobs=${FUZZ_JOBS:-$(nproc)}
((jobs >= 1)) || jobs=1
failed=0
# Run the given targets at once, then report each in order.
batch() {
  local t pids=() rc
  for t in "$@"; do
    mkdir -p "corpus/$t"
    local extra=()
    [[ $t == capture ]] && extra=("$seeds")
    [[ $t == decode ]] && extra=("$seeds/decode")
    # Inputs that once failed (committed): every run replays them under AddressSanitizer first.
    [[ -d regressions/$t ]] && extra+=("regressions/$t")
    echo "fuzz: $t for ${secs}s"
    cargo fuzz run --release "$t" "corpus/$t" "${extra[@]}" -- \
      -max_total_time="$secs" "${runs[@]}" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$seeds/$t.log" 2>&1 &
    pids+=($!)
  done
  local i=0
  for t in "$@"; do
    rc=0
    wait "${pids[i]}" || rc=$?
    i=$((i + 1))
    echo "fuzz: $t"
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done)' "$seeds/$t.log" || true
    if ((rc != 0)); then
      tail -n 60 "$seeds/$t.log" >&2
      echo "fuzz: $t failed (exit $rc); failing inputs are under fuzz/artifacts/$t/" >&2
      failed=1
    fi
  done
}
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
  batch "${targets[@]:i:jobs}"
  ((failed == 0)) || exit 1
done
