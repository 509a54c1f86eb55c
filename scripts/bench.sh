#!/usr/bin/env bash
# Speed and memory of `proxyscope analyze` against tshark, on real MySQL captures made here: sysbench
# (oltp_read_only, 4 threads) plus a loop of short `mariadb` CLI sessions (connection churn) against a
# throw-away MariaDB on loopback, captured with tcpdump. Two capture lengths show whether memory grows
# with the file; tshark runs on the same files in the same run, so the ratio holds on any machine.
#
#   scripts/bench.sh [SECONDS...]      capture lengths (default: 4 16); results in target/bench/results.txt
#   BENCH_BASELINE=BIN scripts/bench.sh another proxyscope binary (e.g. the last release) timed on the same
#                                       files in the same run: performance before and after a change
#   BENCH_KEEP=1 scripts/bench.sh       also keep the captures in target/bench/
#   BENCH_LO_MTU=1500 scripts/bench.sh  the same with loopback at Ethernet's MTU for the run (restored at
#                                       exit): frames as small as on a real network, not 64 KiB segments
#
# tshark does the same decoding the design names: `-d tcp.port==P,mysql -T fields` with the TCP stream,
# FIN and RST fields. proxyscope reads the file, decodes, reassembles and attributes every close.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cd "$repo"

scripts/ensure-packages.sh mariadb-server mariadb-client tcpdump tshark openssl sysbench libpcap-dev
export PATH="$PATH:/usr/sbin"
# The files are the benchmark's input, not a ground truth: a few kernel drops under full load are fine.
export LAB_ALLOW_DROPS=1
cargo build --release --locked --quiet
bin=$repo/target/release/proxyscope
out=$repo/target/bench
mkdir -p "$out"
baseline=${BENCH_BASELINE:-}
durations=("$@")
((${#durations[@]})) || durations=(4 16)

# shellcheck source=lib-mariadb.sh
source "$here/lib-mariadb.sh"
lab_init
if [[ -n ${BENCH_LO_MTU:-} ]]; then
  old_mtu=$(cat /sys/class/net/lo/mtu)
  ip link set lo mtu "$BENCH_LO_MTU"
  trap 'ip link set lo mtu "$old_mtu"; lab_cleanup' EXIT
fi
lab_make_certs
lab_install_db
lab_start_server tls
lab_create_app_user
lab_sysbench_prepare

files=()
for d in "${durations[@]}"; do
  f=$LAB_DIR/bench-${d}s.pcap
  lab_capture_start "$f" "tcp port $LAB_PORT"
  lab_sysbench_load 4 "$d" "$LAB_DIR/run-$d.log"
  lab_capture_stop
  files+=("$f")
done
# BENCH_KEEP=1: keep the captures in target/bench/ for repeated A/B runs.
if [[ -n ${BENCH_KEEP:-} ]]; then
  cp "${files[@]}" "$out/"
fi

# best of 3 wall-clock seconds and the max RSS (KiB) of those runs
measure() {
  local best="" rss=0 t m i
  for i in 1 2 3; do
    /usr/bin/time -f '%e %M' -o "$LAB_DIR/time" "$@" >/dev/null 2>"$LAB_DIR/stderr" || {
      cat "$LAB_DIR/stderr" >&2
      return 1
    }
    read -r t m <"$LAB_DIR/time"
    if [[ -z "$best" ]] || awk -v a="$t" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$t; fi
    ((m > rss)) && rss=$m
    [[ ${BENCH_ONCE:-} == "$1" ]] && break
  done
  echo "$best $rss"
}

{
  printf '# proxyscope %s vs %s and %s, %s\n' "$($bin --version | cut -d' ' -f2)" \
    "$(tshark --version | head -1)" "$(tcpdump --version 2>&1 | head -1)" "$(date -u +%F)"
  printf '# machine: %s, %s cores, %s GiB RAM, kernel %s, lo mtu %s\n' \
    "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(nproc)" \
    "$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)" "$(uname -r)" "$(cat /sys/class/net/lo/mtu)"
  [[ -n $baseline ]] && printf '# before: %s (%s)\n' "$baseline" "$("$baseline" --version)"
  printf '%-14s %7s %8s %6s | %-10s %8s %8s %8s %7s' file MB frames conns tool seconds MB/s Mframes/s RSS_MB
  printf ' %8s\n' "vs_ours"
  for f in "${files[@]}"; do
    mb=$(awk -v b="$(stat -c %s "$f")" 'BEGIN{printf "%.1f", b/1e6}')
    json=$("$bin" analyze -q --format json "$f")
    read -r frames conns < <(python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; print(s["frames"], s["tcp"]["connections"])' <<<"$json")
    read -r ot orss < <(measure "$bin" analyze -q --format json "$f")
    rows=("proxyscope $ot $orss")
    if [[ -n $baseline ]]; then
      read -r bt brss < <(measure "$baseline" analyze -q --format json "$f")
      rows+=("before $bt $brss")
    fi
    BENCH_ONCE=tshark
    # tshark decoding what proxyscope decodes: TCP streams and closes plus the MySQL fields.
    read -r tt trss < <(measure tshark -n -r "$f" -d "tcp.port==$LAB_PORT,mysql" -T fields \
      -e frame.number -e tcp.stream -e tcp.flags.fin -e tcp.flags.reset \
      -e mysql.command -e mysql.query -e mysql.error_code -e mysql.sqlstate)
    BENCH_ONCE=""
    rows+=("tshark $tt $trss")
    # tcpdump -r: the floor of reading and printing a capture, no reassembly, no MySQL.
    read -r dt drss < <(measure tcpdump -n -r "$f")
    rows+=("tcpdump-r $dt $drss")
    for r in "${rows[@]}"; do
      read -r tool t rss <<<"$r"
      printf '%-14s %7s %8s %6s | %-10s %8s %8s %8s %7s %7sx\n' "$(basename "$f")" "$mb" "$frames" "$conns" \
        "$tool" "$t" "$(awk -v m="$mb" -v t="$t" 'BEGIN{printf "%.0f", m/(t>0?t:0.001)}')" \
        "$(awk -v n="$frames" -v t="$t" 'BEGIN{printf "%.2f", n/1e6/(t>0?t:0.001)}')" "$((rss / 1024))" \
        "$(awk -v a="$t" -v b="$ot" 'BEGIN{printf "%.1f", a/(b>0?b:0.001)}')"
    done
  done
} | tee "$out/results.txt"
