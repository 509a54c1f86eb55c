#!/usr/bin/env bash
# Run one proxy-lab scenario end to end: a throw-away MariaDB with TLS, `proxyscope lab` in front of it (TLS
# on both legs), real clients, and one tcpdump on lo capturing both legs.
#
#   scripts/lab-scenario.sh SCENARIO OUTDIR [--gzip]
#
# captures/lab/ is regenerated with: scripts/lab-scenario.sh dirty-ssl captures/lab --gzip
#
# Scenarios:
#   dirty-ssl   the sysown/proxysql#4500 pattern: 3 MySQLdb clients over TLS run `SELECT SLEEP(0.05)` in a loop
#               for ~3 s; every ~0.7 s an aborting client sends an SSLRequest and goes away before its TLS
#               handshake completes; the lab (--fault dirty-ssl) then closes a busy backend and its frontend.
#
# Writes into OUTDIR: SCENARIO.pcap (both legs; SCENARIO.pcap.gz with --gzip), SCENARIO.truth.jsonl (the lab's ground truth, wall-clock ns),
# SCENARIO.keylog (TLS secrets of both legs), SCENARIO.lab.log (the lab's stderr: ProxySQL-style log lines),
# clients.txt (every error the real clients saw, and a summary per client).
#
# The lab binary: $PROXYSCOPE_BIN if set, else target/release/proxyscope (built here with cargo build --release).
# Needs root (tcpdump) and the Debian packages of scripts/ensure-packages.sh.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
py=/usr/bin/python3 # the python3 first on PATH may be another build, without MySQLdb

usage() {
  echo "usage: $0 dirty-ssl OUTDIR [--gzip]" >&2
  exit 1
}
[[ $# -eq 2 || ($# -eq 3 && $3 == --gzip) ]] || usage
scenario=$1
outdir=$2
gzip=${3:-}
case $scenario in
  dirty-ssl) ;;
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

# shellcheck source=lib-mariadb.sh
source "$here/lib-mariadb.sh"
lab_init
lab_make_certs
lab_install_db
lab_start_server tls
lab_create_app_user

front_port=$(lab_free_port)
pcap=$outdir/$scenario.pcap
truth=$outdir/$scenario.truth.jsonl
lablog=$outdir/$scenario.lab.log
rm -f "$pcap" "$pcap.gz" "$truth" "$lablog" "$outdir/clients.txt"

lab_capture_start "$pcap" "tcp port $front_port or tcp port $LAB_PORT"

"$bin" lab --listen "127.0.0.1:$front_port" \
  --backend "127.0.0.1:$LAB_PORT" --backend-user "$LAB_APP_USER" --backend-password "$LAB_APP_PASSWORD" \
  --backend-tls --backend-ca "$LAB_CA" --cert "$LAB_CERT" --key "$LAB_KEY" \
  --keylog "$outdir/$scenario.keylog" --ground-truth "$truth" --fault dirty-ssl 2>"$lablog" &
lab_pid=$!
lab_track_pid "$lab_pid"
for ((i = 0; i < 200; i++)); do
  grep -q 'listening on' "$lablog" && break
  kill -0 "$lab_pid" 2>/dev/null || {
    cat "$lablog" >&2
    lab_die "the lab exited at start"
  }
  sleep 0.05
done
grep -q 'listening on' "$lablog" || lab_die "the lab did not start listening"
lab_log "lab $lab_pid on 127.0.0.1:$front_port -> MariaDB 127.0.0.1:$LAB_PORT"

"$py" "$here/lab_clients.py" run --port "$front_port" --user "$LAB_APP_USER" --password "$LAB_APP_PASSWORD" \
  --ca "$LAB_CA" --clients 3 --seconds 3 --abort-every 0.7 --query 'SELECT SLEEP(0.05)' \
  --out "$outdir/clients.txt" 2>/dev/null

# SIGTERM: the lab closes its pooled backends (COM_QUIT) and records it.
kill -TERM "$lab_pid"
lab_reap "$lab_pid" 10 || lab_die "the lab exited with an error: $(tail -n 3 "$lablog")"
# Let late RSTs (the server answering writes to backends the lab closed) reach the capture.
sleep 0.3
lab_capture_stop

if [[ -n "$gzip" ]]; then
  gzip -9n "$pcap"
  pcap=$pcap.gz
fi

incidents=$(grep -c '"event":"fault"' "$truth" || true)
lab_log "$scenario: $incidents injected faults; $(grep -c '^[0-9]' "$outdir/clients.txt" || true) client errors"
lab_log "wrote $pcap $truth $outdir/clients.txt"
