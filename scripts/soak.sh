#!/usr/bin/env bash
# Soak run of `proxyscope live` (not in CI): a long stretch of proxy traffic with periodic faults, captured live,
# with the capturing process's RSS sampled over time, to show that memory stays flat over hours.
#
#   scripts/soak.sh [SECONDS [OUTDIR]]        default: 3600 s into /tmp/proxyscope-soak
#
# Traffic: a throw-away MariaDB with TLS, `proxyscope lab` in front of it with --fault dirty-ssl (an aborted
# frontend TLS handshake closes a busy backend and its frontend) and --fault drop-burst (every 10 s all idle
# pooled backends are closed), 6 MySQLdb clients running `SELECT SLEEP(0.01)` with 20 ms pauses and reconnecting
# after every error, and an aborting client every 2 s: connections come and go for the whole run.
# Capture: `proxyscope live -i lo --format jsonl --verdicts-only --write soak.pcap -C 200 -W 2 --idle-timeout 60`.
#
# Writes into OUTDIR: rss.csv (every 10 s: elapsed s, RSS and RssAnon KiB of the live process, lines it has
# streamed so far), live.jsonl (the streamed verdicts, incidents and the final summary), live.log, the two
# rotated pcap files, clients.txt, lab.log; prints the RSS curve's summary at the end.
# Needs root and the packages of scripts/ensure-packages.sh.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
py=/usr/bin/python3
seconds=${1:-3600}
outdir=${2:-/tmp/proxyscope-soak}
[[ $seconds =~ ^[0-9]+$ ]] || {
  echo "usage: $0 [SECONDS [OUTDIR]]" >&2
  exit 1
}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
# live (as root) becomes nobody once the device is open; nobody creates the rotated files.
chmod 0777 "$outdir"

(cd "$repo" && cargo build --release --quiet)
bin=$repo/target/release/proxyscope

# shellcheck source=lib-mariadb.sh
source "$here/lib-mariadb.sh"
lab_setup_tls_server

front_port=$(lab_free_port)
rm -f "$outdir"/soak*.pcap "$outdir"/{rss.csv,live.jsonl,live.log,clients.txt,lab.log}

"$bin" live -i lo --bpf "tcp port $front_port or tcp port $LAB_PORT" --format jsonl --verdicts-only \
  --write "$outdir/soak.pcap" -C 200 -W 2 --idle-timeout 60 \
  --frontend-port "$front_port" --backend-port "$LAB_PORT" >"$outdir/live.jsonl" 2>"$outdir/live.log" &
live_pid=$!
lab_track_pid "$live_pid"
lab_wait_listening "$live_pid" "$outdir/live.log" "proxyscope live"

: >"$outdir/lab.log"
"$bin" lab --listen "127.0.0.1:$front_port" \
  --backend "127.0.0.1:$LAB_PORT" --backend-user "$LAB_APP_USER" --backend-password "$LAB_APP_PASSWORD" \
  --backend-tls --backend-ca "$LAB_CA" --cert "$LAB_CERT" --key "$LAB_KEY" \
  --fault dirty-ssl --fault drop-burst --fault-interval-ms 10000 2>"$outdir/lab.log" &
lab_pid=$!
lab_track_pid "$lab_pid"
lab_wait_listening "$lab_pid" "$outdir/lab.log" "the lab"

"$py" "$here/lab_clients.py" run --port "$front_port" --user "$LAB_APP_USER" --password "$LAB_APP_PASSWORD" \
  --ca "$LAB_CA" --clients 6 --seconds "$seconds" --abort-every 2 --query 'SELECT SLEEP(0.01)' --pause 0.02 \
  --out "$outdir/clients.txt" 2>/dev/null &
clients_pid=$!
lab_track_pid "$clients_pid"

echo "elapsed_s,rss_kib,rss_anon_kib,verdict_lines" >"$outdir/rss.csv"
start=$SECONDS
while kill -0 "$clients_pid" 2>/dev/null; do
  # VmRSS includes libpcap's mmap'd kernel ring (about twice --buffer-size once the ring has wrapped);
  # RssAnon is the process's own heap and stacks: what would grow if state leaked.
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$live_pid/status" 2>/dev/null || echo 0)
  anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$live_pid/status" 2>/dev/null || echo 0)
  lines=$(wc -l <"$outdir/live.jsonl")
  echo "$((SECONDS - start)),$rss,$anon,$lines" >>"$outdir/rss.csv"
  sleep 10
done
lab_reap "$clients_pid" 30 || true
kill -TERM "$lab_pid"
lab_reap "$lab_pid" 10 || true
sleep 3 # let the last closes linger out and be printed
kill -INT "$live_pid"
lab_reap "$live_pid" 30 || lab_die "proxyscope live exited with an error: $(tail -n 3 "$outdir/live.log")"

"$py" - "$outdir" <<'EOF'
import csv, json, sys, collections
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/rss.csv")))
rss = [int(r["rss_kib"]) for r in rows if int(r["rss_kib"]) > 0]
anon = [int(r["rss_anon_kib"]) for r in rows if int(r["rss_kib"]) > 0]
lines = [json.loads(l) for l in open(f"{out}/live.jsonl")]
kinds = collections.Counter(l.get("kind", "schema") for l in lines)
labels = collections.Counter(l["detail"]["label"] for l in lines if l.get("kind") == "verdict.close")
summary = lines[-1]["detail"]["live"] if lines and lines[-1]["kind"] == "live.summary" else {}
print(f"soak: {rows[-1]['elapsed_s'] if rows else 0} s, {len(rss)} RSS samples")
if rss:
    tenth = max(1, len(rss) // 10)
    print(f"RSS KiB: first {rss[0]}, min {min(rss)}, max {max(rss)}, last {rss[-1]}; "
          f"mean of first tenth {sum(rss[:tenth]) // tenth}, of last tenth {sum(rss[-tenth:]) // tenth}")
    step = max(1, len(rss) // 12)
    print("RSS curve (KiB every ~%d s): %s" % (10 * step, " ".join(str(v) for v in rss[::step])))
    print(f"RssAnon KiB (own heap): first {anon[0]}, min {min(anon)}, max {max(anon)}, last {anon[-1]}")
    print("RssAnon curve (KiB every ~%d s): %s" % (10 * step, " ".join(str(v) for v in anon[::step])))
print(f"lines: {dict(kinds)}")
print(f"verdicts: {dict(labels)}")
print(f"capture: {summary.get('capture')}, packets {summary.get('packets')}, written {summary.get('packets_written')}")
EOF
