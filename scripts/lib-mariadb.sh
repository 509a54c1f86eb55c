# shellcheck shell=bash
# Helpers to run a throw-away MariaDB with TLS (or without: `lab_start_server plain`) on loopback and capture
# its traffic with tcpdump.
#
# Source this file from a bash script that uses `set -euo pipefail`, then call `lab_init` first: it makes a
# private temp dir and installs an EXIT trap that stops every background process started through these helpers
# and removes the dir. Everything lives under that dir and the server listens on a port the kernel just handed
# out as free, so two runs can go on in parallel without sharing anything.
#
# Facts these helpers rely on (see LAB-NOTES.md): `mariadb-install-db` takes ~1 s, `mariadbd` answers a ping
# ~0.2 s after start, and a SIGTERM stops it in ~2 s; tcpdump needs `-U --immediate-mode` or a short capture
# stopped with SIGINT can come out empty, and a large buffer (`-B 65536`) or it drops packets on two cores.
#
# Globals set for the caller (read-only for it):
#   LAB_DIR            private temp dir (certs in tls/, datadir in data/, server tmpdir in tmp/, logs at top)
#   LAB_CA LAB_CERT LAB_KEY    CA certificate, server certificate and server key (PEM)
#   LAB_PORT LAB_SOCK  the server's TCP port on 127.0.0.1 and its unix socket
#   LAB_SERVER_PID     the mariadbd PID
#   LAB_APP_USER LAB_APP_PASSWORD   the TCP user created by lab_create_app_user
#   LAB_CAPTURE_PID LAB_CAPTURE_FILE   the running tcpdump (one at a time)

LAB_DIR=""
LAB_CA=""
LAB_CERT=""
LAB_KEY=""
LAB_PORT=""
LAB_SOCK=""
LAB_SERVER_PID=""
LAB_APP_USER="app"
# A throw-away password for a server that only listens on 127.0.0.1 and is deleted at exit.
LAB_APP_PASSWORD="proxyscope-lab-pw"
LAB_CAPTURE_PID=""
LAB_CAPTURE_FILE=""
LAB_CAPTURE_ERR=""
# Background processes to stop at exit, in start order.
LAB_PIDS=()

# mariadbd and tcpdump live in /usr/sbin, which is not on every user's PATH.
case ":$PATH:" in
  *:/usr/sbin:*) ;;
  *) PATH="$PATH:/usr/sbin" ;;
esac

lab_log() {
  [[ -n "${LAB_QUIET:-}" ]] || printf '%s: %s\n' "${0##*/}" "$*" >&2
}

lab_die() {
  printf '%s: error: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

# Sleep in fractions of a second (GNU sleep accepts them; this keeps the intent visible).
lab_sleep() {
  sleep "$1"
}

# Make the private dir and install the cleanup trap. INT/TERM are turned into a plain exit so that the EXIT
# trap runs exactly once whatever way the script ends.
lab_init() {
  local base=${TMPDIR:-/tmp}
  # The server's unix socket lives in here, and a socket path may not exceed 107 bytes.
  ((${#base} <= 60)) || base=/tmp
  LAB_DIR=$(mktemp -d "$base/proxyscope-lab.XXXXXX")
  trap lab_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

lab_track_pid() {
  LAB_PIDS+=("$1")
}

lab_untrack_pid() {
  local pid=$1 kept=() p
  for p in "${LAB_PIDS[@]}"; do
    [[ "$p" == "$pid" ]] || kept+=("$p")
  done
  LAB_PIDS=("${kept[@]}")
}

# Wait up to $2 seconds (default 10) for PID $1, one of our children, to exit; SIGKILL it after that.
# Returns the child's exit status (or 137 after the SIGKILL).
# stderr is silenced for the whole wait: bash would otherwise print "Killed" job notices for clients the
# scenarios SIGKILL on purpose.
lab_reap() {
  local pid=$1 limit=${2:-10} i rc=0
  {
    for ((i = 0; i < limit * 20; i++)); do
      kill -0 "$pid" || break
      sleep 0.05
    done
    if kill -0 "$pid"; then
      kill -KILL "$pid" || true
    fi
    wait "$pid" || rc=$?
  } 2>/dev/null
  lab_untrack_pid "$pid"
  return "$rc"
}

# EXIT trap: stop what we started (newest first, so tcpdump goes before the server it watches), show the
# server logs when the run failed (the usual reason is in there), then remove the private dir.
lab_cleanup() {
  local rc=$? i pids
  trap - EXIT INT TERM
  # A copy: lab_reap removes entries from LAB_PIDS as it goes.
  pids=("${LAB_PIDS[@]}")
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    lab_reap "${pids[i]}" 10 || true
  done
  if [[ $rc -ne 0 && -n "$LAB_DIR" && -s "$LAB_DIR/mariadbd.log" ]]; then
    printf '%s: last lines of the MariaDB error log:\n' "${0##*/}" >&2
    tail -n 15 "$LAB_DIR/mariadbd.stderr" "$LAB_DIR/mariadbd.log" >&2 || true
  fi
  if [[ -n "$LAB_DIR" && -d "$LAB_DIR" && -z "${LAB_KEEP:-}" ]]; then
    rm -rf -- "$LAB_DIR"
  fi
  exit "$rc"
}

# Print a TCP port on 127.0.0.1 that is free right now. Another process can still take it before we bind it,
# so lab_start_server retries with a new port when the bind fails.
lab_free_port() {
  /usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# A self-signed CA and a server certificate for localhost / 127.0.0.1, so clients can verify the server
# (`--ssl-verify-server-cert`). P-256 keys: generated instantly, and they keep the handshakes small.
# Our own config file keeps the result independent of the system openssl.cnf.
lab_make_certs() {
  local d="$LAB_DIR/tls"
  mkdir -p "$d"
  cat >"$d/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = proxyscope lab
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid
EOF
  {
    openssl req -x509 -config "$d/openssl.cnf" -extensions ca_ext -newkey ec \
      -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=proxyscope lab CA" \
      -keyout "$d/ca-key.pem" -out "$d/ca.pem" &&
      openssl req -new -config "$d/openssl.cnf" -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=localhost" -keyout "$d/server-key.pem" -out "$d/server.csr" &&
      openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial \
        -days 30 -extfile "$d/openssl.cnf" -extensions server_ext -out "$d/server-cert.pem"
  } >"$d/openssl.log" 2>&1 || {
    cat "$d/openssl.log" >&2
    lab_die "openssl could not make the test certificates"
  }
  LAB_CA="$d/ca.pem"
  LAB_CERT="$d/server-cert.pem"
  LAB_KEY="$d/server-key.pem"
}

# A fresh datadir that reads no option file (--no-defaults), lets root in only over the unix socket and has no
# test database. Its own --tmpdir: two bootstraps sharing /tmp crashed here (signal 11 in ha_maria::drop_table
# while freeing an internal temporary table) in about one parallel run out of three.
lab_install_db() {
  mkdir -p "$LAB_DIR/data" "$LAB_DIR/tmp"
  mariadb-install-db --no-defaults --datadir="$LAB_DIR/data" --tmpdir="$LAB_DIR/tmp" --user="$(id -un)" \
    --auth-root-authentication-method=socket --skip-test-db --skip-name-resolve \
    >"$LAB_DIR/install-db.log" 2>&1 || {
    tail -n 20 "$LAB_DIR/install-db.log" >&2
    lab_die "mariadb-install-db failed"
  }
}

# root over the unix socket: admin statements never show up in a capture filtered on the TCP port.
lab_sql() {
  mariadb --no-defaults --socket="$LAB_SOCK" -uroot --batch --skip-column-names -e "$1"
}

lab_ping() {
  mariadb-admin --no-defaults --socket="$LAB_SOCK" -uroot --connect-timeout=1 ping >/dev/null 2>&1
}

# lab_start_server [tls|plain]
# Start mariadbd on a free port of 127.0.0.1 and wait until it answers a ping over its socket. Retries with
# another port when the one we picked was taken in the meantime. `tls` (the default) passes the lab
# certificates; `plain` passes no TLS option at all, so the server has no TLS (`have_ssl` is DISABLED) and
# its greeting lacks CLIENT_SSL. One server at a time: stop the running one (lab_stop_server) before
# starting another; the datadir, and so the app user, carries over.
lab_start_server() {
  local mode=${1:-tls} attempt i pid tls_opts=()
  case $mode in
    tls) tls_opts=(--ssl-ca="$LAB_CA" --ssl-cert="$LAB_CERT" --ssl-key="$LAB_KEY") ;;
    plain) ;;
    *) lab_die "lab_start_server: unknown mode '$mode' (tls or plain)" ;;
  esac
  [[ -z "$LAB_SERVER_PID" ]] || lab_die "lab_start_server: mariadbd $LAB_SERVER_PID is still running"
  LAB_SOCK="$LAB_DIR/mariadbd.sock"
  for attempt in 1 2 3 4 5; do
    LAB_PORT=$(lab_free_port)
    : >"$LAB_DIR/mariadbd.log"
    mariadbd --no-defaults --datadir="$LAB_DIR/data" --tmpdir="$LAB_DIR/tmp" --socket="$LAB_SOCK" \
      --port="$LAB_PORT" \
      --bind-address=127.0.0.1 --user="$(id -un)" --pid-file="$LAB_DIR/mariadbd.pid" \
      --log-error="$LAB_DIR/mariadbd.log" --skip-name-resolve "${tls_opts[@]}" \
      --innodb-buffer-pool-size=32M --max-connections=50 >"$LAB_DIR/mariadbd.stderr" 2>&1 &
    pid=$!
    lab_track_pid "$pid"
    for ((i = 0; i < 600; i++)); do
      if ! kill -0 "$pid" 2>/dev/null; then
        break
      fi
      if lab_ping; then
        LAB_SERVER_PID=$pid
        lab_log "mariadbd $pid listening on 127.0.0.1:$LAB_PORT, $mode (attempt $attempt)"
        return 0
      fi
      sleep 0.05
    done
    lab_reap "$pid" 5 || true
    if grep -q 'Address already in use' "$LAB_DIR/mariadbd.log" "$LAB_DIR/mariadbd.stderr"; then
      lab_log "port $LAB_PORT was taken before mariadbd could bind it; trying another"
      continue
    fi
    tail -n 20 "$LAB_DIR/mariadbd.stderr" "$LAB_DIR/mariadbd.log" >&2
    lab_die "mariadbd did not come up"
  done
  lab_die "mariadbd could not bind a free port after 5 attempts"
}

# The TCP user the scenarios connect as.
lab_create_app_user() {
  lab_sql "CREATE USER '$LAB_APP_USER'@'%' IDENTIFIED BY '$LAB_APP_PASSWORD';
           GRANT ALL ON *.* TO '$LAB_APP_USER'@'%';" ||
    lab_die "could not create the app user"
}

# Stop the server by its PID: SIGTERM makes it shut down cleanly (~2 s).
lab_stop_server() {
  [[ -n "$LAB_SERVER_PID" ]] || return 0
  kill -TERM "$LAB_SERVER_PID" 2>/dev/null || true
  lab_reap "$LAB_SERVER_PID" 30 || true
  LAB_SERVER_PID=""
}

# lab_wait_listening PID LOGFILE WHAT
# Wait (up to 10 s) until LOGFILE says "listening on"; die, showing the log, if PID exits first or it never does.
lab_wait_listening() {
  local pid=$1 file=$2 what=$3 i
  for ((i = 0; i < 200; i++)); do
    grep -q 'listening on' "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || {
      cat "$file" >&2
      lab_die "$what exited at start"
    }
    sleep 0.05
  done
  cat "$file" >&2
  lab_die "$what did not start listening within 10 s"
}

# lab_sysbench_load THREADS SECONDS LOG
# Benchmark load on the server: sysbench oltp_read_only (database sbtest, prepared by lab_sysbench_prepare) with
# THREADS threads for SECONDS, and beside it connection churn: short `mariadb` sessions, each a full
# open/query/close, one after the other. sysbench's output goes to LOG.
lab_sysbench_load() {
  local threads=$1 secs=$2 log=$3 churn
  (
    end=$((SECONDS + secs))
    while ((SECONDS < end)); do
      mariadb --no-defaults -h127.0.0.1 -P"$LAB_PORT" -u"$LAB_APP_USER" -p"$LAB_APP_PASSWORD" \
        --skip-ssl -e 'SELECT 1' >/dev/null 2>&1 || true
    done
  ) &
  churn=$!
  sysbench oltp_read_only "${LAB_SYSBENCH_ARGS[@]}" --threads="$threads" --time="$secs" run >"$log" 2>&1
  wait "$churn"
}

# lab_sysbench_prepare
# Create the sbtest database and sysbench's tables (2 x 20000 rows).
lab_sysbench_prepare() {
  LAB_SYSBENCH_ARGS=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$LAB_PORT"
    --mysql-user="$LAB_APP_USER" --mysql-password="$LAB_APP_PASSWORD" --mysql-db=sbtest
    --tables=2 --table-size=20000)
  lab_sql "CREATE DATABASE sbtest"
  sysbench oltp_read_only "${LAB_SYSBENCH_ARGS[@]}" prepare >"$LAB_DIR/prepare.log" 2>&1
}

# lab_setup_tls_server
# The usual start: private dir, certificates, a fresh data dir, MariaDB with TLS, and the app user.
lab_setup_tls_server() {
  lab_init
  lab_make_certs
  lab_install_db
  lab_start_server tls
  lab_create_app_user
}

# lab_capture_start FILE FILTER [IFACE]
# Start tcpdump in the background and return once it says "listening on", so no packet of the traffic that
# follows can be missed. `-Z root` keeps the file owned by the caller instead of Debian's tcpdump user.
lab_capture_start() {
  local file=$1 filter=$2 iface=${3:-lo} i
  [[ -z "$LAB_CAPTURE_PID" ]] || lab_die "a capture is already running"
  LAB_CAPTURE_FILE=$file
  LAB_CAPTURE_ERR="$LAB_DIR/tcpdump.$$.$RANDOM.err"
  # Created here, not by the background job's redirection, which may come after the first grep below.
  : >"$LAB_CAPTURE_ERR"
  tcpdump -i "$iface" -U --immediate-mode -B 65536 -s 0 -Z root -w "$file" "$filter" \
    2>"$LAB_CAPTURE_ERR" &
  LAB_CAPTURE_PID=$!
  lab_track_pid "$LAB_CAPTURE_PID"
  for ((i = 0; i < 200; i++)); do
    if grep -q 'listening on' "$LAB_CAPTURE_ERR"; then
      return 0
    fi
    if ! kill -0 "$LAB_CAPTURE_PID" 2>/dev/null; then
      cat "$LAB_CAPTURE_ERR" >&2
      lab_die "tcpdump exited before it started listening"
    fi
    sleep 0.05
  done
  cat "$LAB_CAPTURE_ERR" >&2
  lab_die "tcpdump did not start listening within 10 s"
}

# Stop the running tcpdump with SIGINT (it then flushes the file and prints its counters) and fail loudly
# unless the kernel dropped nothing: a capture with drops would make the ground truth wrong.
lab_capture_stop() {
  local rc=0 pid=$LAB_CAPTURE_PID
  [[ -n "$pid" ]] || lab_die "no capture is running"
  # Loopback delivery is synchronous, but give tcpdump a moment to write the last packets it was handed.
  sleep 0.2
  kill -INT "$pid" 2>/dev/null || true
  lab_reap "$pid" 10 || rc=$?
  LAB_CAPTURE_PID=""
  if [[ $rc -ne 0 ]]; then
    cat "$LAB_CAPTURE_ERR" >&2
    lab_die "tcpdump exited with status $rc for $LAB_CAPTURE_FILE"
  fi
  if ! grep -q '^0 packets dropped by kernel' "$LAB_CAPTURE_ERR"; then
    cat "$LAB_CAPTURE_ERR" >&2
    # A benchmark only needs a big real file; a scenario with a known ground truth needs every packet.
    if [[ ${LAB_ALLOW_DROPS:-0} == 1 ]]; then
      lab_log "warning: tcpdump dropped packets for $LAB_CAPTURE_FILE (allowed: LAB_ALLOW_DROPS=1)"
      return 0
    fi
    lab_die "tcpdump reports dropped packets (or no counters) for $LAB_CAPTURE_FILE"
  fi
  if grep -Eq '^[1-9][0-9]* packets dropped by interface' "$LAB_CAPTURE_ERR"; then
    cat "$LAB_CAPTURE_ERR" >&2
    lab_die "the interface dropped packets for $LAB_CAPTURE_FILE"
  fi
}

# Wait (up to $1 s, default 15) until no TCP socket on the server port is still in a state that can send
# more packets: so one scenario's late RST cannot land in the next scenario's capture. TIME-WAIT and
# FIN-WAIT-2 are left alone: they send nothing unless the peer does.
lab_wait_port_quiet() {
  local limit=${1:-15} i
  for ((i = 0; i < limit * 20; i++)); do
    if [[ -z "$(ss -Htn state established state syn-sent state syn-recv state fin-wait-1 \
      state close-wait state last-ack state closing \
      "( sport = :$LAB_PORT or dport = :$LAB_PORT )")" ]]; then
      return 0
    fi
    sleep 0.05
  done
  ss -tn "( sport = :$LAB_PORT or dport = :$LAB_PORT )" >&2 || true
  lab_die "connections on port $LAB_PORT did not finish within ${limit} s"
}

# Print the thread id of the app user's connection whose current statement starts with $1 (waits up to
# $2 s, default 10, for it to appear).
lab_wait_thread() {
  local prefix=$1 limit=${2:-10} i id
  for ((i = 0; i < limit * 20; i++)); do
    id=$(lab_sql "SELECT id FROM information_schema.processlist
                  WHERE user = '$LAB_APP_USER' AND info LIKE '${prefix}%' LIMIT 1")
    if [[ -n "$id" ]]; then
      printf '%s\n' "$id"
      return 0
    fi
    sleep 0.05
  done
  lab_die "no '$prefix' statement of user $LAB_APP_USER showed up within ${limit} s"
}
