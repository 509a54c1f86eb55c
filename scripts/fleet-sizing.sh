#!/usr/bin/env bash
# Fleet sizing (not in CI; README "Running on a fleet"): what one busy proxy host sends into the fleet
# feed. A throw-away MariaDB with TLS, `proxyscope lab` in front of it (ProxySQL's shape: TLS frontends,
# pooled TLS backends, --fault dirty-ssl so incidents happen), CLIENTS MySQLdb clients running QUERY
# back to back over TLS plus an aborting client every 2 s, for SECONDS. Two `proxyscope live -i lo`
# capture it at once, legs by port: one with `--format jsonl` (every event), one with `--format jsonl
# --verdicts-only`. Then the full stream goes through docs/clickhouse/vector.toml's remap into
# docs/clickhouse/events.sql's table in an embedded ClickHouse (scripts/clickhouse_events.py) to see
# its size on disk.
#
#   scripts/fleet-sizing.sh [SECONDS [CLIENTS [QUERY]]]     default: 30 s, 8 clients, 'SELECT 1'
#
# Prints: frontend requests (the clients' own count) per second, events per second and per request,
# JSONL bytes per event and per verdict-only line, each live's CPU seconds and CPU per 1,000 events/s,
# ClickHouse bytes on disk per event and per verdict-only record. Files in target/fleet-sizing/. Needs root.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
py=/usr/bin/python3
seconds=${1:-30}
clients=${2:-8}
query=${3:-SELECT 1}
[[ $seconds =~ ^[0-9]+$ && $clients =~ ^[0-9]+$ ]] || {
  echo "usage: $0 [SECONDS [CLIENTS [QUERY]]]" >&2
  exit 1
}
out=$repo/target/fleet-sizing
rm -rf "$out"
mkdir -p "$out"
chmod 0777 "$out"

(cd "$repo" && cargo build --release --quiet)
bin=${CARGO_TARGET_DIR:-$repo/target}/release/proxyscope

# shellcheck source=lib-mariadb.sh
source "$here/lib-mariadb.sh"
lab_setup_tls_server

front_port=$(lab_free_port)
legs=(--frontend-port "$front_port" --backend-port "$LAB_PORT")
bpf="tcp port $front_port or tcp port $LAB_PORT"

"$bin" live -i lo -q --bpf "$bpf" --format jsonl "${legs[@]}" >"$out/events.jsonl" 2>"$out/live-events.log" &
full_pid=$!
lab_track_pid "$full_pid"
"$bin" live -i lo -q --bpf "$bpf" --format jsonl --verdicts-only "${legs[@]}" \
  >"$out/verdicts.jsonl" 2>"$out/live-verdicts.log" &
verdicts_pid=$!
lab_track_pid "$verdicts_pid"
lab_wait_listening "$full_pid" "$out/live-events.log" "proxyscope live (events)"
lab_wait_listening "$verdicts_pid" "$out/live-verdicts.log" "proxyscope live (verdicts)"

"$bin" lab --listen "127.0.0.1:$front_port" \
  --backend "127.0.0.1:$LAB_PORT" --backend-user "$LAB_APP_USER" --backend-password "$LAB_APP_PASSWORD" \
  --backend-tls --backend-ca "$LAB_CA" --cert "$LAB_CERT" --key "$LAB_KEY" \
  --fault dirty-ssl 2>"$out/lab.log" &
lab_pid=$!
lab_track_pid "$lab_pid"
lab_wait_listening "$lab_pid" "$out/lab.log" "the lab"

started=$SECONDS
"$py" "$here/lab_clients.py" run --port "$front_port" --user "$LAB_APP_USER" --password "$LAB_APP_PASSWORD" \
  --ca "$LAB_CA" --clients "$clients" --seconds "$seconds" --abort-every 2 --query "$query" --pause 0 \
  --out "$out/clients.txt" 2>/dev/null
elapsed=$((SECONDS - started))
kill -TERM "$lab_pid"
lab_reap "$lab_pid" 10 || true
sleep 3 # the last closes linger out

# CPU seconds (user + system) of a process, from /proc before it exits.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
full_cpu=$(cpu "$full_pid")
verdicts_cpu=$(cpu "$verdicts_pid")
kill -INT "$full_pid" "$verdicts_pid"
lab_reap "$full_pid" 30 || lab_die "live (events) failed: $(tail -n 3 "$out/live-events.log")"
lab_reap "$verdicts_pid" 30 || lab_die "live (verdicts) failed: $(tail -n 3 "$out/live-verdicts.log")"

pythonpath=$("$here/ensure-python.sh" "${CARGO_TARGET_DIR:-$repo/target}/tmp/python" chdb-core==26.9.0 pyVRL==0.0.2)
PYTHONPATH=$pythonpath python3 "$here/clickhouse_events.py" --session "$out/chdb" "proxy-1=$out/events.jsonl" \
  >"$out/clickhouse.json"
PYTHONPATH=$pythonpath python3 "$here/clickhouse_events.py" --session "$out/chdb-verdicts" \
  "proxy-1=$out/verdicts.jsonl" >"$out/clickhouse-verdicts.json"

"$py" - "$out" "$elapsed" "$full_cpu" "$verdicts_cpu" <<'PY'
import json, re, sys, collections
out, elapsed, full_cpu, verdicts_cpu = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
requests = sum(int(m.group(1)) + int(m.group(2)) for m in
               (re.match(r"summary client \d+: (\d+) queries ok, (\d+) errors", l) for l in open(f"{out}/clients.txt")) if m)
def records(path):
    n, size, kinds = 0, 0, collections.Counter()
    for line in open(path, "rb"):
        r = json.loads(line)
        if "schema" in r or r.get("kind") == "live.summary":
            continue
        n += 1; size += len(line); kinds[r["kind"]] += 1
    return n, size, kinds
ev, ev_bytes, kinds = records(f"{out}/events.jsonl")
vd, vd_bytes, vkinds = records(f"{out}/verdicts.jsonl")
ch = json.load(open(f"{out}/clickhouse.json"))
disk = ch["storage"]["parts"]["bytes_on_disk"]
disk = int(disk)
summary = [json.loads(l) for l in open(f"{out}/events.jsonl")][-1]["detail"]["live"]
print(f"run: {elapsed:.0f} s, {requests} frontend requests ({requests / elapsed:.0f}/s), capture {summary.get('capture')}")
print(f"events stream: {ev} records ({ev / elapsed:.0f}/s, {ev / requests:.2f} per request), {ev_bytes} bytes, {ev_bytes / ev:.0f} B/record")
print(f"  kinds: {dict(kinds.most_common(8))}")
print(f"verdicts-only stream: {vd} records ({vd / requests * 1000:.2f} per 1k requests), {vd_bytes} bytes, {vd_bytes / max(vd, 1):.0f} B/record; {dict(vkinds)}")
print(f"live CPU: events {full_cpu:.2f} s ({full_cpu / elapsed * 100:.1f}% of a core, {full_cpu / elapsed / (ev / elapsed / 1000) * 100:.2f}% per 1k events/s); "
      f"verdicts-only {verdicts_cpu:.2f} s ({verdicts_cpu / elapsed * 100:.1f}% of a core)")
print(f"clickhouse: {ch['storage']['rows']} rows, {disk} bytes on disk ({disk / ev:.1f} B/record, {ev_bytes / disk:.1f}x smaller than the JSONL)")
chv = json.load(open(f"{out}/clickhouse-verdicts.json"))
vdisk = int(chv["storage"]["parts"]["bytes_on_disk"])
print(f"clickhouse, verdicts only: {chv['storage']['rows']} rows, {vdisk} bytes on disk ({vdisk / max(vd, 1):.0f} B/record, {vd_bytes / vdisk:.1f}x smaller)")
for c in ch["storage"]["columns"][:6]:
    print(f"  {c['name']}: {c['compressed']} compressed, {c['uncompressed']} uncompressed")
PY
