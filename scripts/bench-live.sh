#!/usr/bin/env bash
# Live capture under load: can `proxyscope live` keep up with a saturated loopback MySQL benchmark without
# kernel drops? sysbench oltp_read_only (THREADS threads) plus a loop of short `mariadb` CLI sessions against a
# throw-away MariaDB on loopback, SECONDS each, captured live by proxyscope and, under the same load right
# after, by tshark doing the same decoding live (`-d tcp.port==P,mysql -T fields` with stream, FIN and RST);
# libpcap's counters (received, dropped by the kernel) of each, the packets and MB/s handled, CPU and RSS.
#
#   scripts/bench-live.sh [SECONDS [THREADS...]]     default: 10 s at 4 and 16 threads; results in
#                                                    target/bench/live-results.txt
#   BENCH_LIVE_WRITE=1 ...                           proxyscope also writes the packets (--write)
#   BENCH_LIVE_BUFFER=MIB ...                        kernel buffer of both capturers (default 32)
#   BENCH_LIVE_ARGS='--snaplen 65535' ...            more arguments for proxyscope live (word-split)
#   BENCH_LIVE_TSHARK=0 ...                          proxyscope only
#
# Both capturers get the same kernel buffer (32 MiB unless BENCH_LIVE_BUFFER). On lo the kernel counts each packet twice (out and in;
# libpcap keeps one), so proxyscope's "received" is twice its "handled"; tshark reports packets it kept.
# Needs root. Not part of CI (timings, not assertions).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cd "$repo"

scripts/ensure-packages.sh mariadb-server mariadb-client tshark openssl sysbench libpcap-dev
export PATH="$PATH:/usr/sbin"
cargo build --release --locked --quiet
bin=$repo/target/release/proxyscope
out=$repo/target/bench
mkdir -p "$out"
seconds=${1:-10}
shift || true
threads=("$@")
((${#threads[@]})) || threads=(4 16)

# shellcheck source=lib-mariadb.sh
source "$here/lib-mariadb.sh"
lab_setup_tls_server
lab_sysbench_prepare

# load THREADS: sysbench for $seconds plus connection churn; prints sysbench's transactions per second
load() {
  lab_sysbench_load "$1" "$seconds" "$LAB_DIR/run.log"
  awk '/transactions:/ {gsub(/[()]/, "", $3); print $3}' "$LAB_DIR/run.log"
}

# wait until FILE says "listening on" (or the process PID died)
wait_listening() {
  local file=$1 pid=$2 i
  for ((i = 0; i < 200; i++)); do
    grep -q 'listening on\|Capturing on' "$file" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  cat "$file" >&2
  lab_die "the capture did not start"
}

filter="tcp port $LAB_PORT"
buffer=${BENCH_LIVE_BUFFER:-32}
write=()
[[ ${BENCH_LIVE_WRITE:-0} == 1 ]] && write=(--write "$LAB_DIR/live.pcap")
{
  printf '# proxyscope live %s vs %s, %s, %s cores, lo mtu %s, %s s per run%s\n' \
    "$($bin --version | cut -d' ' -f2)" "$(tshark --version | head -1)" "$(date -u +%F)" "$(nproc)" \
    "$(cat /sys/class/net/lo/mtu)" "$seconds" "${write:+, proxyscope writing the packets}"
  printf '%-10s %7s %8s %10s %9s %9s %9s %8s %8s %9s %9s\n' capturer threads sb_tps received dropped \
    handled pkts/s cpu_s RSS_MB verdicts drop_pct
  for t in "${threads[@]}"; do
    # proxyscope live
    : >"$LAB_DIR/live.err"
    /usr/bin/time -f '%U %S %M' -o "$LAB_DIR/time" "$bin" live -i lo --bpf "$filter" --buffer-size "${buffer}M" \
      --format jsonl --verdicts-only "${write[@]}" ${BENCH_LIVE_ARGS:-} >"$LAB_DIR/live.jsonl" 2>"$LAB_DIR/live.err" &
    pid=$!
    wait_listening "$LAB_DIR/live.err" "$pid"
    tps=$(load "$t")
    sleep 0.5
    # /usr/bin/time is the child of the background job: signal proxyscope itself
    pkill -INT -f "^$bin live -i lo --bpf $filter" || true
    wait "$pid" || true
    read -r u s m <"$LAB_DIR/time"
    python3 - "$LAB_DIR/live.jsonl" "$t" "$tps" "$u" "$s" "$m" <<'EOF'
import json, sys
path, t, tps, u, s, m = sys.argv[1:]
lines = [json.loads(l) for l in open(path)]
summ = lines[-1]["detail"]
live, run = summ["live"], summ["run"]
cap = live["capture"] or {}
verdicts = sum(1 for l in lines if l.get("kind") == "verdict.close")
received, dropped = cap.get("received", 0), cap.get("dropped", 0)
pct = 100.0 * dropped / received if received else 0.0
pps = live["packets"] / live["seconds"] if live["seconds"] else 0
print("%-10s %7s %8s %10d %9d %9d %9.0f %8.2f %8.1f %9d %8.3f%%" % (
    "proxyscope", t, tps, received, dropped, live["packets"], pps, float(u) + float(s), int(m) / 1024,
    verdicts, pct))
EOF
    [[ ${BENCH_LIVE_TSHARK:-1} == 0 ]] && continue
    # tshark live, same decoding as the offline benchmark
    : >"$LAB_DIR/tshark.err"
    tshark -n -i lo -f "$filter" -B "$buffer" -d "tcp.port==$LAB_PORT,mysql" -T fields \
      -e frame.number -e tcp.stream -e tcp.flags.fin -e tcp.flags.reset >"$LAB_DIR/tshark.out" \
      2>"$LAB_DIR/tshark.err" &
    tpid=$!
    wait_listening "$LAB_DIR/tshark.err" "$tpid"
    tps=$(load "$t")
    sleep 0.5
    kill -INT "$tpid" || true
    wait "$tpid" || true
    # tshark prints "N packets captured" and, when there were any, "N packets dropped" on stderr
    captured=$(awk '/packets captured/ {print $1}' "$LAB_DIR/tshark.err" | tail -1)
    tdrop=$(awk '/packets dropped/ {print $1}' "$LAB_DIR/tshark.err" | tail -1)
    decoded=$(wc -l <"$LAB_DIR/tshark.out")
    printf '%-10s %7s %8s %10s %9s %9s %9s %8s %8s %9s %9s\n' tshark "$t" "$tps" "${captured:-?}" \
      "${tdrop:-0}" "$decoded" - - - - \
      "$(awk -v d="${tdrop:-0}" -v c="${captured:-0}" 'BEGIN{p = 0; if (c + d > 0) p = 100 * d / (c + d); printf "%.3f%%", p}')"
  done
} | tee "$out/live-results.txt"
