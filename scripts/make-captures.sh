#!/usr/bin/env bash
# Regenerate the bundled real captures: a throw-away MariaDB with TLS on 127.0.0.1 (restarted without TLS
# for the last scenario), real clients (the mariadb CLI, MySQLdb as Django uses it, Perl DBD::MariaDB for
# server-side prepared statements, and a hand-written handshake over Python's ssl that logs the TLS keys),
# one small pcap per scenario (the one over 16 MiB is gzipped: large-result.pcap.gz).
#
#   scripts/make-captures.sh [OUTDIR]        (default: the repo's captures/)
#
# Needs root (tcpdump on lo) and the Debian packages listed in check_commands; it does not install them:
# scripts/ensure-packages.sh does. Each scenario's capture holds only that scenario's TCP connections: admin
# statements (KILL, processlist look-ups) go over the unix socket, which a `tcp port P` filter never sees.
# Client stderr (what an application would log) goes to OUTDIR/<scenario>.client.txt when there is any.
# At the end the captures are checked against captures/expected.tsv (set MAKE_CAPTURES_NO_CHECK=1 to skip).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
outdir=${1:-$repo/captures}
expected=$repo/captures/expected.tsv
py=/usr/bin/python3 # the python3 first on PATH may be another build, without MySQLdb
client=$here/lab_client.py
prepared=$here/lab_prepared.pl

# Say which package is missing instead of failing half-way with "command not found".
check_commands() {
  local missing=() entry cmd pkg
  PATH="$PATH:/usr/sbin"
  for entry in mariadbd:mariadb-server mariadb-install-db:mariadb-server mariadb:mariadb-client \
    mariadb-admin:mariadb-client tcpdump:tcpdump tshark:tshark openssl:openssl ss:iproute2 gzip:gzip; do
    cmd=${entry%%:*}
    pkg=${entry#*:}
    if ! command -v "$cmd" >/dev/null 2>&1; then
      missing+=("$pkg")
      printf 'make-captures: missing command %s (Debian package %s)\n' "$cmd" "$pkg" >&2
    fi
  done
  if ! "$py" -c 'import MySQLdb' >/dev/null 2>&1; then
    missing+=(python3-mysqldb)
    printf 'make-captures: %s cannot import MySQLdb (Debian package python3-mysqldb)\n' "$py" >&2
  fi
  if ! perl -MDBI -MDBD::MariaDB -e 1 >/dev/null 2>&1; then
    missing+=(libdbd-mariadb-perl)
    echo 'make-captures: perl cannot load DBD::MariaDB (Debian package libdbd-mariadb-perl)' >&2
  fi
  if ((${#missing[@]})); then
    local ours=() others=()
    for pkg in $(printf '%s\n' "${missing[@]}" | sort -u); do
      # iproute2 (ss) and gzip are part of every Debian base system, so ensure-packages.sh does not
      # handle them.
      if [[ $pkg == iproute2 || $pkg == gzip ]]; then others+=("$pkg"); else ours+=("$pkg"); fi
    done
    if ((${#ours[@]})); then
      echo "make-captures: install with: scripts/ensure-packages.sh ${ours[*]}" >&2
    fi
    if ((${#others[@]})); then
      echo "make-captures: install with: apt-get install ${others[*]}" >&2
    fi
    exit 1
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "make-captures: must run as root (tcpdump captures on lo; mariadbd runs as the calling user)" >&2
    exit 1
  fi
}

check_commands
# shellcheck source=lib-mariadb.sh
source "$here/lib-mariadb.sh"

# ---------------------------------------------------------------------------------------------------------
# Scenario plumbing

scenario=""
conn_no=0

# Start a scenario: its own capture file, filtered on the server port so nothing else lands in it.
begin_scenario() {
  scenario=$1
  conn_no=0
  lab_capture_start "$work/$scenario.pcap" "tcp port $LAB_PORT" "${2:-lo}"
}

# End a scenario once every connection is over, so no late packet of it can fall into the next capture.
end_scenario() {
  lab_wait_port_quiet 15
  lab_capture_stop
  lab_log "$scenario: $(tshark -r "$work/$scenario.pcap" 2>/dev/null | wc -l) packets"
  scenario=""
}

# record LABEL STATUS ERRFILE: note what a client printed on stderr (and how it ended) in the scenario's log.
# Connections are numbered in the order the clients ran, which is the order of their first packets.
record() {
  local label=$1 status=$2 errfile=$3 log="$work/$scenario.client.txt"
  {
    printf '# conn %d: %s -> exit status %s\n' "$conn_no" "$label" "$status"
    if [[ -s "$errfile" ]]; then
      cat "$errfile"
    else
      echo "(nothing on stderr)"
    fi
  } >>"$log.all"
  if [[ -s "$errfile" ]]; then
    : >>"$log.has-stderr"
  fi
  conn_no=$((conn_no + 1))
}

# run WANT LABEL CMD...: run a client in the foreground, record its stderr and exit status, and stop the
# run if the status is not WANT (a client that fails for another reason would make a misleading capture).
run() {
  local want=$1 label=$2 status=0
  shift 2
  "$@" >"$work/client.out" 2>"$work/client.err" || status=$?
  record "$label" "$status" "$work/client.err"
  if [[ $status -ne $want ]]; then
    cat "$work/client.err" >&2
    lab_die "$scenario: client '$label' exited with status $status, expected $want"
  fi
}

# Wait until a background client has printed "ready" (connected and ran its query).
wait_ready() {
  local pid=$1 out=$2 i
  for ((i = 0; i < 200; i++)); do
    grep -q '^ready$' "$out" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || lab_die "$scenario: the client exited before it was ready"
    sleep 0.05
  done
  lab_die "$scenario: the client was not ready within 10 s"
}

# Client command lines, filled in by set_clients once the server's port is known.
cli_plain=()
cli_tls=()
pyc=()
py_auth=()
set_clients() {
  # --skip-reconnect: a lost connection must not be followed by a second one in the same capture.
  local base=(mariadb --no-defaults -h127.0.0.1 "-P$LAB_PORT" "-u$LAB_APP_USER" "-p$LAB_APP_PASSWORD"
    --batch --skip-reconnect --connect-timeout=10)
  cli_plain=("${base[@]}" --skip-ssl)
  cli_tls=("${base[@]}" --ssl "--ssl-ca=$LAB_CA" --ssl-verify-server-cert)
  pyc=("$py" "$client")
  py_auth=(--port "$LAB_PORT" --user "$LAB_APP_USER" --password "$LAB_APP_PASSWORD")
}

# check_wire FILE WHAT FILTER [TSHARK_OPTION...]: at least one frame of $work/FILE matches the display FILTER
# (MySQL decoded on the server port). check_no_wire: none does. Both state what the file shows on the wire,
# so a client or server that changes behaviour makes the run fail instead of a misleading capture.
# wire_count sets wire_n; it fails the run when tshark does (a mistyped field must not pass as "none").
wire_n=0
wire_count() {
  local file=$1 filter=$2 out
  shift 2
  out=$(tshark -r "$work/$file" -d "tcp.port==$LAB_PORT,mysql" "$@" -Y "$filter" -T fields \
    -e frame.number 2>"$work/tshark.err") || {
    cat "$work/tshark.err" >&2
    lab_die "$file: tshark failed with the filter '$filter'"
  }
  wire_n=$(grep -c . <<<"$out" || true)
}
check_wire() {
  local file=$1 what=$2 filter=$3
  shift 3
  wire_count "$file" "$filter" "$@"
  ((wire_n > 0)) || lab_die "$file: no $what on the wire ($filter)"
}
check_no_wire() {
  local file=$1 what=$2 filter=$3
  shift 3
  wire_count "$file" "$filter" "$@"
  ((wire_n == 0)) || lab_die "$file: $wire_n frame(s) with $what on the wire ($filter)"
}

# ---------------------------------------------------------------------------------------------------------
# Scenarios. Each comment says what makes its teardown order deterministic (or why it is not).

# COM_QUIT, then both FINs within ~0.1 ms in either order: the closer is "either".
plain_clean_quit() {
  begin_scenario plain-clean-quit
  run 0 "mariadb --skip-ssl -e 'SELECT 1'" "${cli_plain[@]}" -e 'SELECT 1'
  end_scenario
}

tls13_clean_quit() {
  begin_scenario tls13-clean-quit
  run 0 "mariadb --ssl -e 'SELECT 1' (TLS 1.3 by default)" "${cli_tls[@]}" -e 'SELECT 1'
  lab_wait_port_quiet 10 # keep the two connections apart and in this order
  run 0 "MySQLdb ssl={'ca': ...}: SELECT 1, close()" \
    "${pyc[@]}" query "${py_auth[@]}" --ca "$LAB_CA" --sql 'SELECT 1'
  end_scenario
}

tls12_clean_quit() {
  begin_scenario tls12-clean-quit
  run 0 "mariadb --ssl --tls-version=TLSv1.2 -e 'SELECT 1'" "${cli_tls[@]}" \
    --tls-version=TLSv1.2 -e 'SELECT 1'
  end_scenario
}

# client_sigkill NAME LABEL READY CMD...: start a client as a plain background command (so $! is the client
# itself, not a subshell), wait until it is READY ("idle": it printed "ready"; otherwise: the statement READY
# shows in the processlist), let it sit ~0.7 s more, then SIGKILL it. The dead process's kernel closes the
# socket, so the client's FIN is always first; the server's answer to it (a TLS alert when idle, the query
# result when SLEEP ends) then meets a closed socket and the client's kernel answers with RST, which resets
# the server's socket before it can send a FIN of its own.
client_sigkill() {
  local name=$1 label=$2 ready=$3 pid status=0
  shift 3
  begin_scenario "$name"
  "$@" >"$work/bg.out" 2>"$work/bg.err" &
  pid=$!
  lab_track_pid "$pid"
  if [[ $ready == idle ]]; then
    wait_ready "$pid" "$work/bg.out"
  else
    lab_wait_thread "$ready" >/dev/null
  fi
  sleep 0.7
  kill -9 "$pid"
  lab_reap "$pid" 5 || status=$?
  record "$label; SIGKILLed by the script" "$status" "$work/bg.err"
  [[ $status -eq 137 ]] || lab_die "$name: the client ended with status $status before the SIGKILL"
  # For the query case this waits ~4 s: the server's socket sits in CLOSE-WAIT until SLEEP(5) returns.
  end_scenario
}

# server_kill_query NAME LABEL CMD...: KILL <id> from the unix socket while the client's SELECT SLEEP(10) runs.
# The client is blocked reading the result, so the server's FIN is always first. Plaintext: the client reads
# EOF and FINs back. TLS: the client first sends a TLS alert into the closed socket, which the server's kernel
# answers with RST before the client gets to close.
server_kill_query() {
  local name=$1 label=$2 pid id status=0
  shift 2
  begin_scenario "$name"
  "$@" >"$work/bg.out" 2>"$work/bg.err" &
  pid=$!
  lab_track_pid "$pid"
  id=$(lab_wait_thread 'SELECT SLEEP(10)')
  sleep 0.5
  lab_sql "KILL $id"
  lab_reap "$pid" 10 || status=$?
  record "$label; KILL $id from the unix socket" "$status" "$work/bg.err"
  # Both clients report the lost connection with exit status 1.
  [[ $status -eq 1 ]] || lab_die "$name: the client exited with status $status, expected 1"
  end_scenario
}

# SET SESSION wait_timeout=2, idle 3.5 s, then a query. MariaDB drops the idle connection by itself.
wait_timeout() {
  begin_scenario wait-timeout
  run 0 "MySQLdb TLS: SET SESSION wait_timeout=2, idle 3.5 s, SELECT 1" \
    "${pyc[@]}" wait-timeout "${py_auth[@]}" --ca "$LAB_CA" --timeout 2 --idle 3.5
  end_scenario
}

# A query answered by ERR 1146, then the client exits without close(): no COM_QUIT; its kernel's FIN
# is first (the server has nothing to send), and the server answers with its own FIN. The client, not
# the ERR, ends the session.
err_then_client_exit() {
  begin_scenario err-then-client-exit
  run 0 "MySQLdb plaintext: SELECT from a missing table (ERR 1146), then os._exit without close()" \
    "${pyc[@]}" err-exit "${py_auth[@]}" --sql 'SELECT * FROM mysql.no_such_table'
  end_scenario
  check_wire err-then-client-exit.pcap "ERR 1146" 'mysql.error_code == 1146'
  check_no_wire err-then-client-exit.pcap "COM_QUIT" 'mysql.command == 1'
}

# Plain socket: read the greeting, SO_LINGER (1, 0), close(): the client's kernel sends RST, no FIN.
abortive_close() {
  begin_scenario abortive-close
  run 0 "python socket: read greeting, SO_LINGER (1,0), close()" "${pyc[@]}" abortive --port "$LAB_PORT"
  end_scenario
}

# One clean TLS session captured on the "any" pseudo-interface: Linux cooked v2 (SLL2) link headers.
any_sll2() {
  begin_scenario any-sll2 any
  run 0 "mariadb --ssl -e 'SELECT 1' (captured with tcpdump -i any)" "${cli_tls[@]}" \
    -e 'SELECT 1'
  end_scenario
  local encap
  encap=$(tshark -r "$work/any-sll2.pcap" -T fields -e frame.encap_type -c 1 2>/dev/null)
  # Wireshark's WTAP_ENCAP_SLL2 is 210 (plain Ethernet, as on -i lo, is 1).
  [[ "$encap" == 210 ]] || lab_die "any-sll2.pcap has encapsulation $encap, not Linux SLL2 (210)"
}

# A wrong password, plaintext: greeting, handshake response, ERR 1045, then both FINs. The server closes
# right after writing the ERR, but the client, woken by the ERR, often gets its FIN out first all the same
# (8 of 100 back-to-back logins, 4 of 10 generator runs): "either".
login_failure() {
  begin_scenario login-failure
  # The last -p wins: the CLI sends a scramble of the wrong password.
  run 1 "mariadb --skip-ssl with a wrong password" "${cli_plain[@]}" -pnot-the-password -e 'SELECT 1'
  end_scenario
  check_wire login-failure.pcap "ERR 1045" 'mysql.error_code == 1045'
  check_no_wire login-failure.pcap "COM_QUERY" 'mysql.command == 3'
}

# One value of 17 MiB: its row packet is longer than 0xffffff bytes, so the server sends a 0xffffff-byte
# packet (seq 4) and a continuation packet (seq 5). The server's max_allowed_packet (16 MiB by default:
# REPEAT() would return NULL) is raised for new sessions over the socket, the client's by option. ~17 MB of
# capture; gzip -9 makes it ~40 KB. Teardown as a plaintext clean quit: "either".
large_result() {
  local size=$((17 * 1024 * 1024)) got
  lab_sql "SET GLOBAL max_allowed_packet = 64 * 1024 * 1024"
  begin_scenario large-result
  run 0 "mariadb --skip-ssl --max-allowed-packet=64M -e \"SELECT REPEAT('x', 17*1024*1024)\"" \
    "${cli_plain[@]}" --max-allowed-packet=64M -e "SELECT REPEAT('x', $size) AS big"
  end_scenario
  lab_sql "SET GLOBAL max_allowed_packet = DEFAULT"
  # --batch output: the column name line, then the value and a newline.
  got=$(wc -c <"$work/client.out")
  [[ $got -eq $((4 + size + 1)) ]] || lab_die "large-result: the client printed $got bytes, not $((size + 5))"
  rm -f "$work/client.out"
  gzip -9 -n "$work/large-result.pcap"
  got=$(stat -c %s "$work/large-result.pcap.gz")
  ((got < 200 * 1024)) || lab_die "large-result.pcap.gz is $got bytes compressed (expected ~40 KB)"
  check_wire large-result.pcap.gz "0xffffff-byte packet" 'mysql.packet_length == 16777215'
  check_wire large-result.pcap.gz "continuation packet" \
    "mysql.packet_length == $((size + 9 - 16777215)) && mysql.packet_number == 5"
}

# Perl DBD::MariaDB with mariadb_server_prepare=1: four SET statements at connect, COM_STMT_PREPARE,
# COM_STMT_EXECUTE (binary rows), COM_STMT_CLOSE, COM_QUIT. A clean quit: "either".
prepared_statements() {
  local cmd
  begin_scenario prepared-statements
  run 0 "perl DBD::MariaDB mariadb_server_prepare=1: prepare, execute(3), close, disconnect" \
    perl "$prepared" "${py_auth[@]}" --max 3
  end_scenario
  for cmd in 22:COM_STMT_PREPARE 23:COM_STMT_EXECUTE 25:COM_STMT_CLOSE 1:COM_QUIT; do
    check_wire prepared-statements.pcap "${cmd#*:}" "mysql.command == ${cmd%%:*}"
  done
  check_wire prepared-statements.pcap "binary result row" 'mysql.exec.field.unsigned_longlong == 3'
  check_no_wire prepared-statements.pcap "TLS" tls
}

# MySQLdb without an ssl dict (plaintext): COM_PING, COM_INIT_DB, a COM_QUERY answered with ERR 1146, a
# multi-statement COM_QUERY answered with two result sets, COM_QUIT. A clean quit: "either".
commands_plain() {
  local cmd label="MySQLdb plaintext, MULTI_STATEMENTS: ping(), select_db('mysql'),"
  label+=" SELECT * FROM no_such_table, 'SELECT 1; SELECT 2' (both sets), close()"
  begin_scenario commands-plain
  run 0 "$label" "${pyc[@]}" commands "${py_auth[@]}"
  end_scenario
  for cmd in 14:COM_PING 2:COM_INIT_DB 3:COM_QUERY 1:COM_QUIT; do
    check_wire commands-plain.pcap "${cmd#*:}" "mysql.command == ${cmd%%:*}"
  done
  check_wire commands-plain.pcap "ERR 1146" 'mysql.error_code == 1146'
  check_wire commands-plain.pcap "SERVER_MORE_RESULTS_EXISTS" 'mysql.stat.mr == 1'
  check_no_wire commands-plain.pcap "TLS" tls
}

# tls_keylog VERSION: lab_client.py's own handshake over Python's ssl, TLS VERSION forced, keys logged next to
# the capture. Without the key log tshark sees no MySQL command; with it, the COM_QUERY and the COM_QUIT. The
# client sends no close_notify; a clean quit: "either".
tls_keylog() {
  local version=$1 name keys
  name="tls1${version#1.}-python-keylog"
  keys=$work/$name.keylog
  begin_scenario "$name"
  run 0 "lab_client.py tls-keylog: own handshake, Python ssl, TLS $version, SELECT 1, COM_QUIT" \
    "${pyc[@]}" tls-keylog "${py_auth[@]}" --ca "$LAB_CA" --tls-version "$version" --keylog "$keys"
  end_scenario
  check_no_wire "$name.pcap" "COM_QUERY visible without the key log" 'mysql.command == 3'
  check_wire "$name.pcap" "COM_QUERY decrypted with the key log" \
    'mysql.command == 3 && mysql.query == "SELECT 1"' -o "tls.keylog_file:$keys"
  check_wire "$name.pcap" "COM_QUIT decrypted with the key log" 'mysql.command == 1' \
    -o "tls.keylog_file:$keys"
}

# tls_keylog_cbc: the same own handshake over TLS 1.2 with AES-CBC suites, two connections in one file and
# one key log: ECDHE-ECDSA-AES256-SHA384 with encrypt-then-MAC (RFC 7366, offered by OpenSSL and echoed by
# the server), then ECDHE-ECDSA-AES128-SHA without it (the client does not offer it: MAC-then-encrypt).
tls_keylog_cbc() {
  local name=tls12-cbc-python-keylog keys
  keys=$work/$name.keylog
  begin_scenario "$name"
  run 0 "lab_client.py tls-keylog: TLS 1.2 ECDHE-ECDSA-AES256-SHA384, encrypt-then-MAC" \
    "${pyc[@]}" tls-keylog "${py_auth[@]}" --ca "$LAB_CA" --tls-version 1.2 --keylog "$keys" \
    --cipher ECDHE-ECDSA-AES256-SHA384
  run 0 "lab_client.py tls-keylog: TLS 1.2 ECDHE-ECDSA-AES128-SHA, no encrypt-then-MAC" \
    "${pyc[@]}" tls-keylog "${py_auth[@]}" --ca "$LAB_CA" --tls-version 1.2 --keylog "$keys" \
    --cipher ECDHE-ECDSA-AES128-SHA --no-etm
  end_scenario
  check_wire "$name.pcap" "encrypt_then_mac in a ServerHello" \
    'tls.handshake.type == 2 && tls.handshake.extension.type == 22'
  check_wire "$name.pcap" "a ClientHello without encrypt_then_mac" \
    'tls.handshake.type == 1 && !(tls.handshake.extension.type == 22)'
  check_no_wire "$name.pcap" "COM_QUERY visible without the key log" 'mysql.command == 3'
  check_wire "$name.pcap" "COM_QUERY decrypted with the key log" \
    'mysql.command == 3 && mysql.query == "SELECT 1"' -o "tls.keylog_file:$keys"
}

# The server restarted without any TLS option: its greeting lacks CLIENT_SSL. The CLI with --ssl
# --ssl-verify-server-cert refuses to go on in plaintext: it sends nothing after the greeting and closes, so
# its FIN is always first (the server is waiting for the handshake response) and the server FINs back.
tls_to_plain_server() {
  begin_scenario tls-to-plain-server
  run 1 "mariadb --ssl --ssl-verify-server-cert against a server without TLS" "${cli_tls[@]}" -e 'SELECT 1'
  end_scenario
  check_wire tls-to-plain-server.pcap "greeting without CLIENT_SSL" 'mysql.protocol == 10 && mysql.caps.sl == 0'
  check_no_wire tls-to-plain-server.pcap "client payload" "tcp.dstport == $LAB_PORT && tcp.len > 0"
}

# check_tls NAME WANT: every ServerHello in the capture negotiated version WANT. TLS 1.3 says so in the
# supported_versions extension; a TLS 1.2 ServerHello has none (its legacy version field is the real one).
check_tls() {
  local name=$1 want=$2 got
  got=$(tshark -r "$work/$name.pcap" -d "tcp.port==$LAB_PORT,mysql" -Y 'tls.handshake.type == 2' \
    -T fields -e tls.handshake.extensions.supported_version 2>/dev/null | sed 's/^$/0x0303/' | sort -u)
  [[ "$got" == "$want" ]] || lab_die "$name.pcap: negotiated TLS version(s) '${got//$'\n'/ }', expected $want"
}

# ---------------------------------------------------------------------------------------------------------

main() {
  local start=$SECONDS f name count=0
  lab_init
  work="$LAB_DIR/out"
  mkdir -p "$work" "$outdir"
  lab_make_certs
  lab_install_db
  lab_start_server tls
  lab_create_app_user
  set_clients

  plain_clean_quit
  tls13_clean_quit
  tls12_clean_quit
  client_sigkill client-sigkill-idle "MySQLdb TLS: SELECT 1, then idle" idle \
    "${pyc[@]}" idle "${py_auth[@]}" --ca "$LAB_CA"
  client_sigkill client-sigkill-query "MySQLdb TLS: SELECT SLEEP(5)" 'SELECT SLEEP(5)' \
    "${pyc[@]}" query "${py_auth[@]}" --ca "$LAB_CA" --sql 'SELECT SLEEP(5)'
  server_kill_query server-kill-query-plain "mariadb --skip-ssl -e 'SELECT SLEEP(10)'" \
    "${cli_plain[@]}" -e 'SELECT SLEEP(10)'
  server_kill_query server-kill-query-tls "MySQLdb TLS: SELECT SLEEP(10)" \
    "${pyc[@]}" query "${py_auth[@]}" --ca "$LAB_CA" --sql 'SELECT SLEEP(10)'
  wait_timeout
  err_then_client_exit
  abortive_close
  any_sll2
  login_failure
  large_result
  prepared_statements
  commands_plain
  tls_keylog 1.2
  tls_keylog 1.3
  tls_keylog_cbc

  # TLS 1.3 is the default on both sides; only the forced scenarios may show TLS 1.2. (Checked while
  # LAB_PORT is still this server's port: tshark decodes MySQL, and so the TLS after it, on that port.)
  for name in tls13-clean-quit client-sigkill-idle client-sigkill-query server-kill-query-tls \
    wait-timeout any-sll2 tls13-python-keylog; do
    check_tls "$name" 0x0304
  done
  check_tls tls12-clean-quit 0x0303
  check_tls tls12-python-keylog 0x0303
  check_tls tls12-cbc-python-keylog 0x0303

  # The same datadir (and app user) served again, now without TLS, on a new port.
  lab_stop_server
  lab_start_server plain
  set_clients
  tls_to_plain_server
  lab_stop_server

  # Publish: captures (with their key logs), plus a client log where some client printed something; drop
  # stale logs.
  for f in "$work"/*.pcap "$work"/*.pcap.gz; do
    [[ -e "$f" ]] || continue # a pattern that matched nothing
    count=$((count + 1))
    name=${f##*/}
    mv -f "$f" "$outdir/$name"
    name=${name%.gz}
    name=${name%.pcap}
    if [[ -e "$work/$name.keylog" ]]; then
      mv -f "$work/$name.keylog" "$outdir/$name.keylog"
    fi
    if [[ -e "$work/$name.client.txt.has-stderr" ]]; then
      mv -f "$work/$name.client.txt.all" "$outdir/$name.client.txt"
    else
      rm -f "$outdir/$name.client.txt"
    fi
  done
  lab_log "wrote $count captures to $outdir in $((SECONDS - start)) s"

  if [[ -z "${MAKE_CAPTURES_NO_CHECK:-}" && -f "$expected" ]]; then
    "$py" "$client" check "$outdir" "$expected" >/dev/null ||
      lab_die "the captures in $outdir do not match $expected (see above)"
    lab_log "all connections match $expected"
  fi
}

main
