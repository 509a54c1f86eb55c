#!/usr/bin/env bash
# Attack suite for issue 12 (memory bounded by configuration): generates hostile-but-valid captures with
# scripts/attack_gen.py (SYN flood, idle and short connections by the million, out-of-order and
# overlapping segments, snaplen-cut segments, TLS alert floods, pcapng secrets and interface blocks,
# request pairing across a proxy, terminal escapes, a clock stepped back), runs `proxyscope analyze` on
# each under /usr/bin/time and a timeout, and prints a markdown table of peak RSS, seconds, exit code and
# the report's `dropped` object (what was given up to stay within the configured bounds).
#
#   scripts/attack.sh [--scale F] [OUTDIR]   sizes x F (default 1: several GB of captures, minutes);
#                                            --scale 0.01 for a quick run; OUTDIR default
#                                            /tmp/proxyscope-attacks (captures, outputs, table.md)
#   ATTACK_TIMEOUT=600 scripts/attack.sh     seconds per run (default 300)
#   ATTACK_MEM_MB=8000 scripts/attack.sh     cap each run's address space (ulimit -v; default none):
#                                            at full scale an unbounded run can need more than the RAM
#   PROXYSCOPE=/path/to/proxyscope ...       the binary (default target/release/proxyscope; not built here)
#
# Extra rows: cut, tiny and overlap again with --max-buffer 0; inject in the default text format, its
# output checked for raw ESC, BEL, CR and U+202E (terminal injection); `timeline --format perfetto` on
# backwards. A run's stderr is kept in OUTDIR/out/*.err; panics are listed after the table.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

scale=1
outdir=/tmp/proxyscope-attacks
while (($#)); do
  case $1 in
    --scale) scale=${2:?--scale needs a value}; shift 2 ;;
    --scale=*) scale=${1#--scale=}; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "attack.sh: unknown option $1" >&2; exit 2 ;;
    *) outdir=$1; shift ;;
  esac
done
bin=${PROXYSCOPE:-$repo/target/release/proxyscope}
timeout_s=${ATTACK_TIMEOUT:-300}
[[ -x $bin ]] || { echo "attack.sh: no binary at $bin (build it, or set PROXYSCOPE)" >&2; exit 1; }

mkdir -p "$outdir/out"
echo "generating into $outdir (scale $scale)" >&2
python3 "$here/attack_gen.py" all --dir "$outdir" --scale "$scale" >&2

declare -A path packets
names=()
while IFS=$'\t' read -r name p n _bytes; do
  names+=("$name")
  path[$name]=$p
  packets[$name]=$n
done <"$outdir/manifest.tsv"

# `dropped` from a JSON report, compact, or - (absent, or the output is not JSON). A report of
# millions of connections can be GBs: then only its first line (up to `"connections":[`) and its last
# line (`],"summary":...}`) are read, the connections in between (one a line) left out.
dropped_of() {
  python3 -c '
import json, os, sys
fn = sys.argv[1]
try:
    if os.path.getsize(fn) < 64 << 20:
        d = json.load(open(fn))
    else:
        with open(fn, "rb") as f:
            first = f.readline().rstrip()
            f.seek(max(0, os.path.getsize(fn) - (16 << 20)))
            last = f.read().rstrip().rsplit(b"\n", 1)[-1]
        d = json.loads(first + last)
except Exception:
    print("-"); sys.exit()
x = d.get("summary", {}).get("dropped") if isinstance(d, dict) else None
if isinstance(x, dict):
    x = {k: v for k, v in x.items() if v and k != "half_open_by_destination"}
print("-" if not x else json.dumps(x, separators=(",", ":")))' "$1"
}

table=$outdir/table.md
rows=()
row() { # label input-file output-file time-file exit-code; the packets are those of attack $name
  local label=$1 input=$2 out=$3 tf=$4 rc=$5 rss=- secs=- mb dropped=-
  mb=$(awk -v b="$(stat -c %s "$input")" 'BEGIN { printf "%.1f", b / 1048576 }')
  if [[ -s $tf ]]; then
    # the last line: time prints "Command exited with non-zero status N" before it on failure
    read -r rss secs < <(tail -n 1 "$tf")
    rss=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
  fi
  [[ $out == *.json ]] && dropped=$(dropped_of "$out")
  local r="| $label | $mb | ${packets[$name]} | $rss | $secs | $rc | $dropped |"
  rows+=("$r")
  echo "$r"
}

# run LABEL OUT ARGS...: proxyscope ARGS on attack $name under time and timeout, stdout to OUT,
# stderr to OUT.err
run() {
  local label=$1 out=$2 rc=0
  shift 2
  local tf=$outdir/out/$label.time
  tf=${tf// /_}
  (
    # optional address-space cap, so a full-scale run cannot take the machine's memory
    if [[ -n ${ATTACK_MEM_MB:-} ]]; then ulimit -v $((ATTACK_MEM_MB * 1024)); fi
    exec /usr/bin/time -f '%M %e' -o "$tf" timeout "$timeout_s" "$bin" "$@"
  ) >"$out" 2>"$out.err" || rc=$?
  row "$label" "${path[$name]}" "$out" "$tf" "$rc"
}

echo
echo "| attack | input MB | packets | peak RSS MB | seconds | exit code | dropped |"
echo "|---|---:|---:|---:|---:|---:|---|"
leaks=""
for name in "${names[@]}"; do
  f=${path[$name]}
  run "$name" "$outdir/out/$name.json" analyze "$f" --format json -q
  case $name in
    cut | tiny | overlap)
      run "$name --max-buffer 0" "$outdir/out/$name-mb0.json" analyze "$f" --format json -q --max-buffer 0
      ;;
    inject)
      run "inject (text)" "$outdir/out/inject.txt" analyze "$f" -q
      leaks=$(python3 -c '
import sys
found = []
for fn in sys.argv[1:]:
    data = open(fn, "rb").read()
    bad = [n for n, b in (("ESC", b"\x1b"), ("BEL", b"\x07"), ("CR", b"\r"), ("U+202E", "\u202e".encode()))
           if b in data]
    found.append(fn.rsplit("/", 1)[-1] + ": " + (", ".join(bad) + " leaked" if bad else "clean"))
print("; ".join(found))' "$outdir/out/inject.txt" "$outdir/out/inject.json")
      ;;
    backwards)
      run "backwards (timeline perfetto)" "$outdir/out/backwards-perfetto.log" \
        timeline "$f" --format perfetto -o "$outdir/out/backwards-perfetto.json"
      ;;
  esac
done

{
  echo "| attack | input MB | packets | peak RSS MB | seconds | exit code | dropped |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "inject raw control characters: ${leaks:-not checked}"
} >"$table"
echo
echo "inject raw control characters: ${leaks:-not checked}"
mapfile -t panics < <(grep -l 'panicked' "$outdir"/out/*.err 2>/dev/null || true)
if ((${#panics[@]})); then
  echo "panics in:"
  for p in "${panics[@]}"; do
    echo "  $p: $(grep -m1 -A1 'panicked' "$p" | tr '\n' ' ')"
  done
  printf 'panic: %s\n' "${panics[@]}" >>"$table"
fi
echo "table: $table; outputs and stderr: $outdir/out/"
