#!/usr/bin/env bash
# Run one proxy-lab scenario end to end: a throw-away MariaDB with TLS, `proxyscope lab` in front of it (TLS
# on both legs), real clients, and one tcpdump on lo capturing both legs.
#
#   scripts/lab-scenario.sh SCENARIO|all OUTDIR [--gzip]
#
# captures/lab/ is regenerated, every scenario, with: scripts/lab-scenario.sh all captures/lab --gzip
#
# Scenarios (each well under 15 s once the binary is built; clients: scripts/lab_clients.py):
#   dirty-ssl        sysown/proxysql#4500: 3 MySQLdb clients over TLS run `SELECT SLEEP(0.05)` in a loop for ~3 s;
#                    every ~0.7 s an aborting client sends an SSLRequest and goes away before its TLS handshake
#                    completes; the lab (--fault dirty-ssl) then closes a busy backend and its frontend.
#   plaintext-quit   sysown/proxysql#2800: 3 MySQLdb clients (SELECT SLEEP(0.02), 0.1 s pauses); every 0.7 s the lab
#                    closes an idle pooled TLS backend with a plaintext `01 00 00 00 01` under TLS, then FIN.
#   err-then-close   the well-behaved case: 2 MySQLdb clients and the `mariadb` CLI (15 runs of 5 statements);
#                    every 0.7 s the next command gets ERR 2013, then close_notify and FIN.
#   drop-burst       4 MySQLdb clients (SELECT 1, 0.2 s pauses); every 1 s the lab closes every idle pooled
#                    backend at once (FIN, no COM_QUIT).
#   wait-timeout     sysown/proxysql#1600: backends get `SET SESSION wait_timeout=1`; 3 MySQLdb clients run
#                    SELECT 1 every 1.6 s, so pooled backends die idle; a request on a dead one is retried once,
#                    then its frontend is closed with FIN and no ERR.
#   max-age          sysown/proxysql#1861: 3 MySQLdb clients; a backend older than 500 ms is closed when it comes
#                    back to the pool (FIN, no COM_QUIT).
#   connect-timeout  sysown/proxysql#3089: 2 MySQLdb clients, and 2 idle sockets that read the greeting and send
#                    nothing; the lab closes those after 1.5 s (FIN).
#
# Writes into OUTDIR, per scenario: SCENARIO.pcap (both legs), SCENARIO.front.pcap and SCENARIO.back.pcap (one leg
# each, each written by a tcpdump of its own, as captures on two other hosts would be; with LAB_CAPTURE=live, split
# from the first with tshark), all three gzipped with --gzip; SCENARIO.truth.jsonl (the lab's ground
# truth, wall-clock ns), SCENARIO.keylog (TLS secrets of both legs), SCENARIO.lab.log (the lab's stderr:
# ProxySQL-style log lines), SCENARIO.clients.txt (every error the real clients saw, and a summary per client).
#
# The lab binary: $PROXYSCOPE_BIN if set, else target/release/proxyscope (built here with cargo build --release);
# its `lab` command runs the proxyscope-lab beside it (the workspace's lab package; the same build makes it).
# Needs root (tcpdump) and the Debian packages of scripts/ensure-packages.sh.
#
# LAB_CAPTURE=live captures with `proxyscope live -i lo --write SCENARIO.pcap --format jsonl --verdicts-only`
# (legs given by port) instead of tcpdump: its streamed verdicts go to SCENARIO.live.jsonl (the last line is the
# live.summary with libpcap's counters), its stderr to SCENARIO.live.log.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
py=/usr/bin/python3 # the python3 first on PATH may be another build, without MySQLdb

scenarios=(dirty-ssl dirty-ssl-plain dirty-ssl-ping plaintext-quit err-then-close drop-burst wait-timeout max-age
  connect-timeout)
usage() {
  echo "usage: $0 {all|${scenarios[*]// /|}|load|plain-relay} OUTDIR [--gzip]" >&2
  exit 1
}
[[ $# -eq 2 || ($# -eq 3 && $3 == --gzip) ]] || usage
scenario=$1
outdir=$2
gzip=${3:-}
# Lab flags and client flags of each scenario.
case $scenario in
  all) ;;
  dirty-ssl)
    lab_flags=(--fault dirty-ssl)
    client_flags=(--clients 3 --seconds 3 --abort-every 0.7 --query 'SELECT SLEEP(0.05)')
    ;;
  dirty-ssl-plain)
    # Real ProxySQL 2.6.3 as bug_plain_stream shows it: plaintext clients over TLS backends, one
    # retry per query (hidden breaks), backends broken by FIN and RST in turn, triggers that end
    # with FIN after the SSLRequest or RST after half a ClientHello; and with mysql-have_ssl=false
    # (no CLIENT_SSL in the greeting), which 2.6.3 still follows into TLS when a client asks.
    lab_flags=(--fault dirty-ssl --dirty-ssl-retries 1 --dirty-ssl-break alternate --no-tls-offer)
    # A query of 1 s and a trigger every 0.7 s: a query broken once is retried, broken twice its
    # frontend is closed.
    client_flags=(--clients 1 --seconds 4 --abort-every 0.7 --abort-mode mixed --plain
      --query 'SELECT SLEEP(1)')
    ;;
  dirty-ssl-ping)
    # The idle-pool form: no request in flight when the trigger comes, so the break waits for the
    # next keep-alive COM_PING (answered OK by the server, then the lab's RST). The frontend speaks
    # TLS 1.2, the backend TLS 1.3: requests pair across two record overheads.
    lab_flags=(--fault dirty-ssl --ping-interval-ms 400 --frontend-tls12)
    client_flags=(--clients 2 --seconds 4 --abort-every 1.3 --query 'SELECT 1' --pause 1.5)
    ;;
  plaintext-quit)
    lab_flags=(--fault plaintext-quit --fault-interval-ms 700)
    client_flags=(--clients 3 --seconds 3 --abort-every 0 --query 'SELECT SLEEP(0.02)' --pause 0.1)
    ;;
  err-then-close)
    lab_flags=(--fault err-then-close --fault-interval-ms 700)
    client_flags=(--clients 2 --seconds 3 --abort-every 0 --query 'SELECT SLEEP(0.02)' --pause 0.05
      --cli 15 --cli-statements 5)
    ;;
  drop-burst)
    lab_flags=(--fault drop-burst --fault-interval-ms 1000)
    client_flags=(--clients 4 --seconds 3 --abort-every 0 --query 'SELECT 1' --pause 0.2)
    ;;
  wait-timeout)
    lab_flags=(--fault wait-timeout --backend-wait-timeout 1)
    client_flags=(--clients 3 --seconds 3.5 --abort-every 0 --query 'SELECT 1' --pause 1.6)
    ;;
  max-age)
    lab_flags=(--fault max-age --backend-max-age-ms 500)
    client_flags=(--clients 3 --seconds 3 --abort-every 0 --query 'SELECT SLEEP(0.02)' --pause 0.05)
    ;;
  plain-relay)
    # Not in `all`: plaintext on both legs and a distinct statement text per query, so that the
    # payloads the proxy relays can align the clocks of a frontend-only and a backend-only
    # capture (tests/clocks.rs); idle pooled backends are closed every second.
    lab_flags=(--fault drop-burst --fault-interval-ms 1000 --no-tls-offer)
    client_flags=(--clients 3 --seconds 3 --abort-every 0 --plain --query 'SELECT {client} * 100000 + {i}'
      --pause 0.02)
    LAB_BACKEND_PLAIN=1
    ;;
  load)
    # Not in `all`: a busy proxy without faults (8 clients, SELECT 1 back to back), to measure
    # pairing's speed and memory on tens of thousands of relayed requests.
    lab_flags=()
    client_flags=(--clients 8 --seconds 5 --abort-every 0 --query 'SELECT 1')
    ;;
  connect-timeout)
    lab_flags=(--fault connect-timeout --connect-timeout-ms 1500)
    client_flags=(--clients 2 --seconds 3 --abort-every 0 --query 'SELECT SLEEP(0.02)' --pause 0.1 --idlers 2)
    ;;
  *) usage ;;
esac
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

bin=${PROXYSCOPE_BIN:-}
if [[ -z "$bin" ]]; then
  (cd "$repo" && cargo build --release --quiet)
  bin=$repo/target/release/proxyscope
fi
[[ -x "$bin" ]] || {
  echo "$0: no lab binary at $bin" >&2
  exit 1
}
[[ -x "$(dirname "$bin")/proxyscope-lab" ]] || command -v proxyscope-lab >/dev/null || {
  echo "$0: no proxyscope-lab beside $bin nor on PATH (cargo build --release builds both)" >&2
  exit 1
}

if [[ $scenario == all ]]; then
  for s in "${scenarios[@]}"; do
    PROXYSCOPE_BIN=$bin "$0" "$s" "$outdir" ${gzip:+"$gzip"}
  done
  exit 0
fi

# shellcheck source=lib-mariadb.sh
source "$here/lib-mariadb.sh"
lab_setup_tls_server

front_port=$(lab_free_port)
pcap=$outdir/$scenario.pcap
truth=$outdir/$scenario.truth.jsonl
lablog=$outdir/$scenario.lab.log
front_pcap=$outdir/$scenario.front.pcap
back_pcap=$outdir/$scenario.back.pcap
clients=$outdir/$scenario.clients.txt
rm -f "$pcap" "$pcap.gz" "$front_pcap" "$front_pcap.gz" "$back_pcap" "$back_pcap.gz" "$truth" "$lablog" "$clients"

filter="tcp port $front_port or tcp port $LAB_PORT"
live_pid=

# One capture process per leg besides the capture of both (the lib runs one capture at a time).
leg_pids=()
leg_errs=()
leg_capture_start() {
  local file=$1 filter=$2 err i
  err="$LAB_DIR/tcpdump-leg.$$.${#leg_pids[@]}.err"
  : >"$err"
  tcpdump -i lo -U --immediate-mode -B 65536 -s 0 -Z root -w "$file" "$filter" 2>"$err" &
  leg_pids+=($!)
  leg_errs+=("$err")
  lab_track_pid "$!"
  for ((i = 0; i < 200; i++)); do
    grep -q 'listening on' "$err" && return 0
    sleep 0.05
  done
  cat "$err" >&2
  lab_die "tcpdump for $file did not start listening within 10 s"
}
leg_capture_stop() {
  local i
  for i in "${!leg_pids[@]}"; do
    kill -INT "${leg_pids[i]}" 2>/dev/null || true
    lab_reap "${leg_pids[i]}" 10 || lab_die "tcpdump for a leg failed: $(cat "${leg_errs[i]}")"
    grep -q '^0 packets dropped by kernel' "${leg_errs[i]}" ||
      lab_die "tcpdump for a leg dropped packets: $(cat "${leg_errs[i]}")"
  done
}
if [[ ${LAB_CAPTURE:-tcpdump} == live ]]; then
  live_log=$outdir/$scenario.live.log
  : >"$live_log"
  "$bin" live -i lo --bpf "$filter" --write "$pcap" --format jsonl --verdicts-only \
    --frontend-port "$front_port" --backend-port "$LAB_PORT" >"$outdir/$scenario.live.jsonl" 2>"$live_log" &
  live_pid=$!
  lab_track_pid "$live_pid"
  lab_wait_listening "$live_pid" "$live_log" "proxyscope live"
else
  lab_capture_start "$pcap" "$filter"
  leg_capture_start "$front_pcap" "tcp port $front_port"
  leg_capture_start "$back_pcap" "tcp port $LAB_PORT"
fi
: >"$lablog" # before the lab starts, so the wait below never greps a missing file
# LAB_BACKEND_PLAIN=1: a plaintext backend leg (TLS frontends over plaintext backends, the reverse of
# bug_plain_stream).
backend_tls=(--backend-tls --backend-ca "$LAB_CA")
[[ -n ${LAB_BACKEND_PLAIN:-} ]] && backend_tls=()

"$bin" lab --listen "127.0.0.1:$front_port" \
  --backend "127.0.0.1:$LAB_PORT" --backend-user "$LAB_APP_USER" --backend-password "$LAB_APP_PASSWORD" \
  "${backend_tls[@]}" --cert "$LAB_CERT" --key "$LAB_KEY" \
  --keylog "$outdir/$scenario.keylog" --ground-truth "$truth" "${lab_flags[@]}" 2>"$lablog" &
lab_pid=$!
lab_track_pid "$lab_pid"
lab_wait_listening "$lab_pid" "$lablog" "the lab"
lab_log "lab $lab_pid on 127.0.0.1:$front_port -> MariaDB 127.0.0.1:$LAB_PORT"

"$py" "$here/lab_clients.py" run --port "$front_port" --user "$LAB_APP_USER" --password "$LAB_APP_PASSWORD" \
  --ca "$LAB_CA" "${client_flags[@]}" --out "$clients" 2>/dev/null

# SIGTERM: the lab closes its pooled backends (COM_QUIT) and records it.
kill -TERM "$lab_pid"
lab_reap "$lab_pid" 10 || lab_die "the lab exited with an error: $(tail -n 3 "$lablog")"
# Let late RSTs (the server answering writes to backends the lab closed) reach the capture.
sleep 0.3
if [[ -n $live_pid ]]; then
  # Let the last packets be read, then SIGINT: it flushes the file and prints its summary line.
  sleep 0.2
  kill -INT "$live_pid"
  lab_reap "$live_pid" 20 || lab_die "proxyscope live exited with an error: $(tail -n 3 "$live_log")"
  # One file per leg, split from the capture of both.
  tshark -r "$pcap" -Y "tcp.port==$front_port" -w "$front_pcap" 2>/dev/null
  tshark -r "$pcap" -Y "tcp.port==$LAB_PORT" -w "$back_pcap" 2>/dev/null
else
  leg_capture_stop
  lab_capture_stop
fi

if [[ -n "$gzip" ]]; then
  gzip -9nf "$pcap" "$front_pcap" "$back_pcap"
  pcap=$pcap.gz
fi

incidents=$(grep -c '"event":"fault"' "$truth" || true)
closes=$(grep '"fault":' "$truth" | grep -c '_closed"' || true)
lab_log "$scenario: $incidents injected faults, $closes faulted closes; $(grep -c '^[0-9]' "$clients" || true) client errors"
lab_log "wrote $pcap (+ .front/.back) $truth $clients"
