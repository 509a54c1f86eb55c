//! What a client's error text means on the wire, which verdicts in a capture produce it, and
//! what to capture next.
//!
//! The texts are the drivers' own (copied from their sources; the tests cite where), matched
//! case-insensitively as substrings, so a whole log line or a wrapped exception
//! (`(pymysql.err.OperationalError) (2013, '...')`) can be pasted as it is. Error numbers and
//! their symbolic names (`2013`, `CR_SERVER_LOST`) are recognised too.

use serde::Serialize;

use super::Label;

/// Who defines an error number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The client library (libmysqlclient / libmariadb `CR_*`): the client made it up itself.
    Client,
    /// The server, in an ERR packet on the wire (or its error log).
    Server,
    /// ProxySQL, in an ERR packet it writes to its frontend.
    Proxysql,
}

impl Origin {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Client => "client",
            Origin::Server => "server",
            Origin::Proxysql => "proxysql",
        }
    }
}

/// A MySQL error number the explanations refer to.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ErrorCode {
    /// The number.
    pub code: u16,
    /// Its symbolic name (`CR_SERVER_LOST`); None where the maker gives none (ProxySQL).
    pub name: Option<&'static str>,
    /// Who defines it.
    pub origin: Origin,
    /// Its message format, as the maker writes it.
    pub text: &'static str,
}

/// Client error numbers (libmysql/errmsg.cc), server error numbers (MySQL's
/// messages_to_clients.txt, MariaDB's errmsg-utf8.txt) and ProxySQL's own (lib/MySQL_Session.cpp).
pub const CODES: &[ErrorCode] = &[
    ErrorCode {
        code: 1040,
        name: Some("ER_CON_COUNT_ERROR"),
        origin: Origin::Server,
        text: "Too many connections",
    },
    ErrorCode {
        code: 1045,
        name: Some("ER_ACCESS_DENIED_ERROR"),
        origin: Origin::Server,
        text: "Access denied for user '%s'@'%s' (using password: %s)",
    },
    ErrorCode {
        code: 1053,
        name: Some("ER_SERVER_SHUTDOWN"),
        origin: Origin::Server,
        text: "Server shutdown in progress",
    },
    ErrorCode {
        code: 1152,
        name: Some("ER_ABORTING_CONNECTION"),
        origin: Origin::Server,
        text: "Aborted connection %u to db: '%s' user: '%s' (%s)",
    },
    ErrorCode {
        code: 1153,
        name: Some("ER_NET_PACKET_TOO_LARGE"),
        origin: Origin::Server,
        text: "Got a packet bigger than 'max_allowed_packet' bytes",
    },
    ErrorCode {
        code: 1205,
        name: Some("ER_LOCK_WAIT_TIMEOUT"),
        origin: Origin::Server,
        text: "Lock wait timeout exceeded; try restarting transaction",
    },
    ErrorCode {
        code: 1317,
        name: Some("ER_QUERY_INTERRUPTED"),
        origin: Origin::Server,
        text: "Query execution was interrupted",
    },
    ErrorCode {
        code: 1927,
        name: Some("ER_CONNECTION_KILLED"),
        origin: Origin::Server,
        text: "Connection was killed",
    },
    ErrorCode {
        code: 2002,
        name: Some("CR_CONNECTION_ERROR"),
        origin: Origin::Client,
        text: "Can't connect to local MySQL server through socket '%s' (%d)",
    },
    ErrorCode {
        code: 2003,
        name: Some("CR_CONN_HOST_ERROR"),
        origin: Origin::Client,
        text: "Can't connect to MySQL server on '%s:%u' (%d)",
    },
    ErrorCode {
        code: 2005,
        name: Some("CR_UNKNOWN_HOST"),
        origin: Origin::Client,
        text: "Unknown MySQL server host '%s' (%d)",
    },
    ErrorCode {
        code: 2006,
        name: Some("CR_SERVER_GONE_ERROR"),
        origin: Origin::Client,
        text: "MySQL server has gone away",
    },
    ErrorCode {
        code: 2013,
        name: Some("CR_SERVER_LOST"),
        origin: Origin::Client,
        text: "Lost connection to MySQL server during query",
    },
    ErrorCode {
        code: 2026,
        name: Some("CR_SSL_CONNECTION_ERROR"),
        origin: Origin::Client,
        text: "SSL connection error: %s (libmariadb: TLS/SSL error: %s)",
    },
    ErrorCode {
        code: 2027,
        name: Some("CR_MALFORMED_PACKET"),
        origin: Origin::Client,
        text: "Malformed packet",
    },
    ErrorCode {
        code: 2055,
        name: Some("CR_SERVER_LOST_EXTENDED"),
        origin: Origin::Client,
        text: "Lost connection to MySQL server at '%s', system error: %d",
    },
    ErrorCode {
        code: 4031,
        name: Some("ER_CLIENT_INTERACTION_TIMEOUT"),
        origin: Origin::Server,
        text: "The client was disconnected by the server because of inactivity. See wait_timeout \
               and interactive_timeout for configuring this behavior.",
    },
    ErrorCode {
        code: 9001,
        name: None,
        origin: Origin::Proxysql,
        text: "Max connect timeout reached while reaching hostgroup %d after %llums",
    },
    ErrorCode {
        code: 9002,
        name: None,
        origin: Origin::Proxysql,
        text: "Max connect failure while reaching hostgroup %d",
    },
];

/// The error number `code`, if known.
pub fn code(code: u16) -> Option<&'static ErrorCode> {
    CODES.iter().find(|c| c.code == code)
}

/// One known client error: what it means on the wire and what to do about it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Explanation {
    /// Stable name (`server-lost`), also accepted as a query.
    pub id: &'static str,
    /// What happened, in a few words.
    pub title: &'static str,
    /// Error numbers it comes with (the first is the usual one).
    pub codes: &'static [u16],
    /// Texts that identify it, lower case; the longest one matched decides the order.
    pub patterns: &'static [&'static str],
    /// Who reports it, and in which form.
    pub reported_by: &'static str,
    /// What happened on the wire.
    pub on_the_wire: &'static str,
    /// Verdict labels that produce it (empty: nothing on the MySQL wire shows it).
    pub verdicts: &'static [Label],
    /// Where and how to capture to settle it.
    pub capture_next: &'static str,
}

const BOTH_LEGS: &str = "capture on the proxy host on both legs at once (frontend and backend \
    ports) with the TLS key log (ProxySQL admin-ssl_keylog_file, SSLKEYLOGFILE), then `proxyscope \
    analyze --keylog KEYS`: the backend leg shows whether the server or the proxy closed first";

/// Verdicts of a close that happened before the client's failing write or request.
const EARLIER_CLOSE: &[Label] = &[
    Label::ServerIdleTimeout,
    Label::ProxyClosedFrontend,
    Label::ServerKill,
];
/// What to capture when the error reports a close that happened earlier.
const CAPTURE_EARLIER_CLOSE: &str =
    "capture long enough to include the earlier close, on the proxy host on both legs";

/// The known client errors. Order matters only between entries that match equally well (an
/// error number alone): the usual meaning of a number comes first.
pub const KNOWN: &[Explanation] = &[
    Explanation {
        id: "server-lost",
        title: "the connection broke while a request was in flight",
        codes: &[2013],
        patterns: &[
            "lost connection to mysql server during query",
            "lost connection to server during query",
        ],
        reported_by: "libmysqlclient and libmariadb (mysqlclient/MySQLdb, the mysql and mariadb \
            CLIs, PHP's mysqli with libmysql) as 2013; PyMySQL adds the OS error \
            ('([Errno 104] Connection reset by peer)'); ProxySQL sends an ERR 2013 of its own to \
            the client when the backend under the query died",
        on_the_wire: "FIN or RST from the server or the proxy while a request was in flight \
            (over TLS libmariadb reports the same close as 2026); an ERR 2013 written by the \
            proxy on the frontend means the break was on the backend leg",
        verdicts: &[
            Label::ServerKill,
            Label::ProxyClosedFrontend,
            Label::ProxyResetBackend,
        ],
        capture_next: BOTH_LEGS,
    },
    Explanation {
        id: "server-lost-greeting",
        title: "closed before the server's greeting",
        codes: &[2013, 2055],
        patterns: &[
            "lost connection to mysql server at 'reading initial communication packet'",
            "lost connection to server at 'handshake: reading initial communication packet'",
            "at 'handshake: reading initial communication packet'",
            "at 'reading initial communication packet'",
            "reading initial communication packet",
        ],
        reported_by: "libmysqlclient ('at 'reading initial communication packet'', MySQL 5.x \
            and 8) and libmariadb ('at 'handshake: reading initial communication packet''), as \
            2013 with the text of CR_SERVER_LOST_EXTENDED and an errno ('system error: 0' usually a \
            FIN, 104 a RST, 11 or 110 the client's read timeout)",
        on_the_wire: "TCP connected, then FIN or RST from the server side before a complete \
            greeting: a proxy with no backend to hand out, the server refusing the host \
            (max_connect_errors, skip-name-resolve lookups past connect_timeout), or a load \
            balancer with nothing behind it",
        verdicts: &[Label::HandshakeFailed, Label::ProxyClosedFrontend],
        capture_next: "capture on the client host and on the proxy or server host at once: \
            whether a greeting ever left the server, and which host sent the FIN or RST",
    },
    Explanation {
        id: "server-lost-auth",
        title: "closed during the login, after the client's handshake response",
        codes: &[2013, 2055],
        patterns: &[
            "lost connection to mysql server at 'reading authorization packet'",
            "at 'reading authorization packet'",
            "reading authorization packet",
        ],
        reported_by: "libmysqlclient and libmariadb, as 2013 with the text of \
            CR_SERVER_LOST_EXTENDED",
        on_the_wire: "the greeting and the client's handshake response (or its SSLRequest and \
            TLS handshake) went through, then FIN or RST before the OK or ERR: connect_timeout \
            on a slow login, an authentication plugin failing, a proxy that could not log in to a \
            backend",
        verdicts: &[Label::HandshakeFailed, Label::TlsFatalAlert],
        capture_next: "capture on the proxy host on both legs with the key log: the TLS \
            handshake and the login must be read to see who gave up",
    },
    Explanation {
        id: "server-lost-extended",
        title: "the connection broke; the client names where it was",
        codes: &[2055, 2013],
        patterns: &[
            "lost connection to mysql server at '",
            "lost connection to server at '",
            "lost connection to mysql server at",
        ],
        reported_by: "MySQL Connector/Python as 2055 ('2055: Lost connection to MySQL server at \
            'host:3306', system error: 32 Broken pipe'); libmysqlclient as 2013 with this text, \
            naming the step",
        on_the_wire: "FIN or RST from the peer, or a local timeout; the system error says which \
            (32 Broken pipe: a write after the peer had closed; 104: a RST; 'timed out': nothing \
            came back)",
        verdicts: &[
            Label::ServerIdleTimeout,
            Label::ServerKill,
            Label::ProxyClosedFrontend,
        ],
        capture_next: BOTH_LEGS,
    },
    Explanation {
        id: "server-gone",
        title: "the connection was already closed when the client used it",
        codes: &[2006],
        patterns: &["mysql server has gone away", "server has gone away"],
        reported_by: "libmysqlclient and libmariadb as 2006 (MariaDB Connector/C 3.x says 'Server \
            has gone away'); PHP mysqlnd ('MySQL server has gone away' after a warning 'Error \
            while sending QUERY packet'); PyMySQL when a write fails ('MySQL server has gone away \
            (BrokenPipeError(32, 'Broken pipe'))'); ProxySQL when it hands out a dead pooled \
            backend",
        on_the_wire: "the connection had been closed (FIN or RST) while idle, often long before \
            the error; the client notices at its next request, which may not even reach the wire",
        verdicts: &[
            Label::ServerIdleTimeout,
            Label::ProxyResetBackend,
            Label::ProxyClosedFrontend,
            Label::ServerKill,
        ],
        capture_next: "capture long enough to see the idle connection close: the close comes up \
            to wait_timeout (default 8 h) before the error; on the proxy host on both legs, or \
            with `proxyscope live` left running",
    },
    Explanation {
        id: "interaction-timeout",
        title: "the server closed an idle connection (wait_timeout), saying so",
        codes: &[4031],
        patterns: &[
            "the client was disconnected by the server because of inactivity",
            "disconnected by the server because of inactivity",
            "er_client_interaction_timeout",
        ],
        reported_by: "MySQL 8.0.24+ servers as 4031, read by any client at its next request \
            (mysql2 with code ER_CLIENT_INTERACTION_TIMEOUT, Connector/J, libmysqlclient; PHP \
            and mysqljs as 'Packets out of order'); behind ProxySQL an idle pooled backend's \
            4031 reaches the proxy, not a client",
        on_the_wire: "an unsolicited ERR 4031 (sequence id 0) then the server's FIN (MariaDB and \
            older MySQL: a bare FIN or RST instead, no ERR)",
        verdicts: &[Label::ServerIdleTimeout],
        capture_next: "capture on the server side of the connection (the backend leg behind a \
            proxy) across the idle period; compare the idle time `analyze` reports with \
            wait_timeout and interactive_timeout",
    },
    Explanation {
        id: "tls-eof-success",
        title: "TLS connection closed without close_notify (libmariadb with OpenSSL 1.1)",
        codes: &[2026],
        patterns: &["tls/ssl error: success (0)"],
        reported_by: "MariaDB Connector/C 3.1.18+ with OpenSSL 1.1 (mysqlclient, MySQLdb), as \
            error 2026",
        on_the_wire: "the peer's FIN arrived with no TLS close_notify and no MySQL ERR before it",
        verdicts: &[
            Label::ProxyClosedFrontend,
            Label::ServerKill,
            Label::ServerIdleTimeout,
        ],
        capture_next: BOTH_LEGS,
    },
    Explanation {
        id: "tls-unexpected-eof",
        title: "TLS connection closed without close_notify (OpenSSL 3)",
        codes: &[2026],
        patterns: &["unexpected eof while reading"],
        reported_by: "OpenSSL 3 clients (MySQLdb, the mariadb CLI), as error 2026",
        on_the_wire: "the peer's FIN arrived with no TLS close_notify and no MySQL ERR before it",
        verdicts: &[
            Label::ProxyClosedFrontend,
            Label::ServerKill,
            Label::ServerIdleTimeout,
        ],
        capture_next: BOTH_LEGS,
    },
    Explanation {
        id: "ssl-connection-error",
        title: "TLS failed (handshake or a later TLS error)",
        codes: &[2026],
        patterns: &["ssl connection error", "tls/ssl error"],
        reported_by: "libmysqlclient ('SSL connection error: %s') and libmariadb ('TLS/SSL \
            error: %s'), as 2026",
        on_the_wire: "a fatal TLS alert, a TLS handshake that stopped (certificate, protocol \
            version, cipher), or a close without close_notify later on; the text after the colon \
            is the TLS library's",
        verdicts: &[
            Label::TlsFatalAlert,
            Label::HandshakeFailed,
            Label::ProxyClosedFrontend,
        ],
        capture_next: "capture on the client host from the TCP connect on: the alert and the \
            ClientHello/ServerHello are readable without keys",
    },
    Explanation {
        id: "ssl-required",
        title: "the client demands TLS and the greeting does not offer it",
        codes: &[2026],
        patterns: &[
            "ssl is required, but the server does not support it",
            "tls requested but server does not support tls",
        ],
        reported_by: "the mariadb CLI with --ssl-verify-server-cert, as 2026; go-sql-driver \
            (ErrNoTLS)",
        on_the_wire: "a greeting without CLIENT_SSL; the client leaves without an SSLRequest",
        verdicts: &[Label::ClientAbort],
        capture_next: "capture the greeting (any host on the path): its capability flags show \
            whether the proxy or server offered TLS",
    },
    Explanation {
        id: "connection-reset",
        title: "a RST from the peer",
        codes: &[],
        patterns: &[
            "connection reset by peer",
            "an existing connection was forcibly closed by the remote host",
            "read econnreset",
            "econnreset",
            "wsaeconnreset",
            "[errno 104]",
        ],
        reported_by: "any client, from the OS: errno 104 on Linux ('[Errno 104] Connection reset \
            by peer' in Python, 'read: connection reset by peer' in Go), ECONNRESET in Node \
            ('Error: read ECONNRESET', code 'ECONNRESET'), WSAECONNRESET 10054 on Windows (.NET: \
            'An existing connection was forcibly closed by the remote host')",
        on_the_wire: "a RST arrived: the peer closed with unread data, aborted (SO_LINGER 0, \
            killed process), had no state for the connection, or a middlebox (NAT, firewall idle \
            timer, load balancer) forged it",
        verdicts: &[
            Label::ServerIdleTimeout,
            Label::ProxyResetBackend,
            Label::ServerKill,
            Label::ClientAbort,
        ],
        capture_next: "capture where the RST comes from: on the client host and on the proxy \
            host at once; a RST that the client receives but the proxy host never sent came from \
            a middlebox",
    },
    Explanation {
        id: "broken-pipe",
        title: "the client wrote to a connection the peer had closed",
        codes: &[],
        patterns: &["broken pipe", "epipe", "[errno 32]"],
        reported_by: "any client, from the OS (EPIPE 32): Python 'BrokenPipeError', Go 'write: \
            broken pipe', Node 'EPIPE', Connector/Python '2055: ... system error: 32 Broken pipe'",
        on_the_wire: "a FIN (and often a RST after the first write) arrived earlier; the client \
            wrote anyway",
        verdicts: EARLIER_CLOSE,
        capture_next: CAPTURE_EARLIER_CLOSE,
    },
    Explanation {
        id: "connection-refused",
        title: "nothing listened: the SYN was answered by RST",
        codes: &[2003, 2002],
        patterns: &[
            "can't connect to mysql server on",
            "can't connect to server on",
            "connection refused",
            "econnrefused",
        ],
        reported_by: "libmysqlclient as 2003 ('Can't connect to MySQL server on 'host:3306' \
            (111)'; 110 is a timeout, 113 no route), PyMySQL 2003 'Can't connect to MySQL server \
            on 'host' ([Errno 111] Connection refused)', PHP mysqlnd '[2002] Connection refused', \
            Node 'connect ECONNREFUSED'",
        on_the_wire: "a SYN answered by RST (111, ECONNREFUSED); with errno 110 / 'timed out' \
            the SYN got no answer at all (a half-open attempt)",
        verdicts: &[Label::Refused],
        capture_next: "capture on the client host: RST to the SYN means the port is closed on \
            that address; SYN retransmissions with no answer mean a firewall or a dead host",
    },
    Explanation {
        id: "local-socket",
        title: "no server on the Unix socket",
        codes: &[2002],
        patterns: &[
            "can't connect to local mysql server through socket",
            "can't connect to local server through socket",
        ],
        reported_by: "libmysqlclient and libmariadb as 2002, when the host is 'localhost'",
        on_the_wire: "nothing: a Unix socket, not TCP",
        verdicts: &[],
        capture_next: "nothing to capture on TCP: check the socket path, or connect to \
            127.0.0.1 to use TCP",
    },
    Explanation {
        id: "unknown-host",
        title: "the host name did not resolve",
        codes: &[2005],
        patterns: &[
            "unknown mysql server host",
            "unknown server host",
            "no such host",
            "getaddrinfo enotfound",
        ],
        reported_by: "libmysqlclient as 2005 ('Unknown MySQL server host 'db' (-2)'), Go 'dial \
            tcp: lookup db: no such host', Node 'getaddrinfo ENOTFOUND db'",
        on_the_wire: "no MySQL connection at all: the DNS lookup failed",
        verdicts: &[],
        capture_next: "capture DNS (port 53) on the client host",
    },
    Explanation {
        id: "packets-out-of-order",
        title: "a reply with an unexpected sequence id (often an ERR 4031 read late)",
        codes: &[4031],
        patterns: &[
            "packets out of order. expected",
            "packets out of order. got: 0",
            "protocol_packets_out_of_order",
            "packets out of order",
        ],
        reported_by: "PHP mysqlnd, as a warning 'Packets out of order. Expected 1 received 0. \
            Packet size=145', usually followed by 2006 'MySQL server has gone away'; \
            mysqljs/mysql ('Packets out of order. Got: 0 Expected: N', code \
            PROTOCOL_PACKETS_OUT_OF_ORDER)",
        on_the_wire: "the packet read in answer to a request did not carry the next sequence id; \
            'received 0' / 'Got: 0' is a packet the server sent on its own: the ERR 4031 (145 \
            bytes with its header) a MySQL 8.0.24+ server writes before closing an idle \
            connection, read by a persistent or pooled connection at its next query",
        verdicts: &[Label::ServerIdleTimeout, Label::ServerError],
        capture_next: "capture on the server side across the idle period: `analyze` shows the \
            unsolicited ERR and the close that follows",
    },
    Explanation {
        id: "mysqlnd-greeting",
        title: "PHP got no complete greeting",
        codes: &[2006, 2002],
        patterns: &["error while reading greeting packet"],
        reported_by: "PHP mysqlnd, as a warning 'Error while reading greeting packet. PID=N', \
            then 2006 'MySQL server has gone away' or 2002",
        on_the_wire: "TCP connected, then FIN or RST (or silence until the read timeout) before \
            the greeting was whole",
        verdicts: &[Label::HandshakeFailed, Label::ProxyClosedFrontend],
        capture_next: "capture on the client host and the proxy or server host at once: whether \
            the greeting left, and who closed",
    },
    Explanation {
        id: "mysqlnd-sending",
        title: "PHP could not write its request",
        codes: &[2006],
        patterns: &["error while sending"],
        reported_by: "PHP mysqlnd, as a warning 'Error while sending QUERY packet. PID=N' (or \
            STMT_PREPARE, PING...), then 2006",
        on_the_wire: "the write failed because the connection had been closed (FIN, then RST in \
            answer to the write) while it sat idle in a persistent or pooled connection",
        verdicts: &[
            Label::ServerIdleTimeout,
            Label::ProxyClosedFrontend,
            Label::ProxyResetBackend,
        ],
        capture_next: "capture long enough to include the idle close, on the proxy host on both \
            legs",
    },
    Explanation {
        id: "connector-j-link-failure",
        title: "Java: the connection broke (Connector/J)",
        codes: &[],
        patterns: &["communications link failure", "communicationsexception"],
        reported_by: "MySQL Connector/J (CommunicationsException, SQLState 08S01), usually with \
            'The last packet successfully received from the server was N milliseconds ago...' and \
            a cause (EOFException 'Can not read response from server', SocketException \
            'Connection reset', SocketTimeoutException 'Read timed out')",
        on_the_wire: "FIN or RST from the server or proxy, a connect that failed, or the driver's \
            own socketTimeout (then nothing came back and the client closes); the cause line \
            says which",
        verdicts: &[
            Label::ServerIdleTimeout,
            Label::ServerKill,
            Label::ProxyClosedFrontend,
            Label::ClientAbort,
        ],
        capture_next: BOTH_LEGS,
    },
    Explanation {
        id: "connector-j-last-packet",
        title: "Java: how long the broken connection had been quiet",
        codes: &[],
        patterns: &[
            "the last packet successfully received from the server was",
            "the last packet sent successfully to the server was",
        ],
        reported_by: "MySQL Connector/J, inside a 'Communications link failure': 'The last \
            packet successfully received from the server was N milliseconds ago. The last packet \
            sent successfully to the server was M milliseconds ago.'",
        on_the_wire: "N is how long the connection had been idle: N larger than the server's \
            wait_timeout (or a NAT or firewall idle timer) means it was closed while idle and \
            the request M ms ago met the dead connection; a small N and M mean it broke under \
            the request",
        verdicts: &[
            Label::ServerIdleTimeout,
            Label::ServerKill,
            Label::ProxyClosedFrontend,
        ],
        capture_next: "capture a window longer than N on the proxy host on both legs; set N \
            against wait_timeout and the idle time `analyze` reports",
    },
    Explanation {
        id: "connector-j-eof",
        title: "Java: FIN while waiting for a reply",
        codes: &[],
        patterns: &[
            "can not read response from server",
            "before connection was unexpectedly lost",
        ],
        reported_by: "MySQL Connector/J (EOFException: 'Can not read response from server. \
            Expected to read 4 bytes, read 0 bytes before connection was unexpectedly lost.')",
        on_the_wire: "a FIN from the server or proxy before (read 0 bytes) or during the reply",
        verdicts: &[
            Label::ServerKill,
            Label::ServerIdleTimeout,
            Label::ProxyClosedFrontend,
        ],
        capture_next: BOTH_LEGS,
    },
    Explanation {
        id: "go-invalid-connection",
        title: "Go: the reply could not be read",
        codes: &[],
        patterns: &["invalid connection"],
        reported_by: "go-sql-driver/mysql (ErrInvalidConn), after logging the cause: '[mysql] \
            ... packets.go:NN: unexpected EOF' (a FIN), '... read: connection reset by peer' (a \
            RST) or '... i/o timeout' (its own readTimeout)",
        on_the_wire: "FIN or RST from the server or proxy while a reply was awaited, or nothing \
            at all until the client's readTimeout, after which the client closes",
        verdicts: &[
            Label::ServerKill,
            Label::ProxyClosedFrontend,
            Label::ServerIdleTimeout,
            Label::ClientAbort,
        ],
        capture_next: BOTH_LEGS,
    },
    Explanation {
        id: "go-unexpected-eof",
        title: "Go: FIN in the middle of a read",
        codes: &[],
        patterns: &["unexpected eof"],
        reported_by: "go-sql-driver/mysql's log ('[mysql] 2019/04/18 11:20:58 packets.go:36: \
            unexpected EOF'), before it returns 'invalid connection'",
        on_the_wire: "a FIN from the server or proxy before the reply was complete",
        verdicts: &[
            Label::ServerKill,
            Label::ProxyClosedFrontend,
            Label::ServerIdleTimeout,
        ],
        capture_next: BOTH_LEGS,
    },
    Explanation {
        id: "go-bad-idle-connection",
        title: "Go: a pooled connection was found closed when taken from the pool",
        codes: &[],
        patterns: &["closing bad idle connection"],
        reported_by: "go-sql-driver/mysql's liveness check on checkout ('closing bad idle \
            connection: EOF', or ': unexpected read from socket'); database/sql then retries on \
            another connection, so the application usually sees nothing",
        on_the_wire: "EOF: a FIN had arrived while the connection sat idle (server wait_timeout, \
            the proxy's idle timeout); unexpected read: a packet arrived unasked, typically an \
            ERR 4031 before the close",
        verdicts: &[
            Label::ServerIdleTimeout,
            Label::ProxyClosedFrontend,
            Label::ProxyResetBackend,
        ],
        capture_next: "capture across the idle period on the proxy host on both legs; lower the \
            pool's SetConnMaxIdleTime / SetConnMaxLifetime below the closer's timeout",
    },
    Explanation {
        id: "go-bad-connection",
        title: "Go: database/sql gave up on dead connections",
        codes: &[],
        patterns: &["driver: bad connection"],
        reported_by: "Go's database/sql (driver.ErrBadConn) when its retries on fresh \
            connections also failed, or where it cannot retry",
        on_the_wire: "the connections it tried were closed (FIN or RST) before or as the request \
            was written",
        verdicts: &[
            Label::ServerIdleTimeout,
            Label::ProxyClosedFrontend,
            Label::ProxyResetBackend,
        ],
        capture_next: BOTH_LEGS,
    },
    Explanation {
        id: "go-busy-buffer",
        title: "Go: a request on a connection whose previous read had broken",
        codes: &[],
        patterns: &["busy buffer"],
        reported_by: "go-sql-driver/mysql (ErrBusyBuffer), usually right after 'unexpected EOF' \
            or 'invalid connection' on the same connection",
        on_the_wire: "nothing new: look at the error before it; the connection had already \
            broken under a result",
        verdicts: &[Label::ServerKill, Label::ProxyClosedFrontend],
        capture_next: BOTH_LEGS,
    },
    Explanation {
        id: "node-connection-lost",
        title: "Node: the server or proxy closed the connection (FIN)",
        codes: &[],
        patterns: &[
            "connection lost: the server closed the connection",
            "protocol_connection_lost",
        ],
        reported_by: "mysqljs/mysql and mysql2 ('Connection lost: The server closed the \
            connection.', code 'PROTOCOL_CONNECTION_LOST', fatal), emitted even on an idle \
            connection",
        on_the_wire: "a FIN from the server or proxy without a COM_QUIT from the client, at any \
            time: idle (wait_timeout, the proxy's idle timeout) or under a query",
        verdicts: &[
            Label::ServerIdleTimeout,
            Label::ServerKill,
            Label::ProxyClosedFrontend,
        ],
        capture_next: BOTH_LEGS,
    },
    Explanation {
        id: "node-closed-state",
        title: "Node: a request on a connection already dead",
        codes: &[],
        patterns: &[
            "can't add new command when connection is in closed state",
            "after fatal error",
            "protocol_enqueue_after_fatal_error",
        ],
        reported_by: "mysql2 ('Can't add new command when connection is in closed state') and \
            mysqljs/mysql ('Cannot enqueue Query after fatal error.')",
        on_the_wire: "nothing new: the connection had been closed earlier (look for \
            PROTOCOL_CONNECTION_LOST or ECONNRESET before it)",
        verdicts: EARLIER_CLOSE,
        capture_next: CAPTURE_EARLIER_CLOSE,
    },
    Explanation {
        id: "dotnet-connect-timeout",
        title: ".NET: the connection was not open within Connection Timeout",
        codes: &[],
        patterns: &["connect timeout expired"],
        reported_by: "MySqlConnector ('Connect Timeout expired.', MySqlErrorCode \
            UnableToConnectToHost 1042)",
        on_the_wire: "SYNs without an answer, or a TCP connection whose greeting or login did \
            not finish in time (a proxy waiting for a backend, a slow TLS handshake); the client \
            then closes",
        verdicts: &[Label::HandshakeFailed, Label::ClientAbort],
        capture_next: "capture on the client host: SYN retransmissions mean nothing answered; a \
            late greeting means the proxy or server was slow (behind ProxySQL, see 9001)",
    },
    Explanation {
        id: "dotnet-unable-to-connect",
        title: ".NET: no host could be connected to",
        codes: &[2003],
        patterns: &["unable to connect to any of the specified mysql hosts"],
        reported_by: "MySqlConnector and Connector/NET ('Unable to connect to any of the \
            specified MySQL hosts.', 1042)",
        on_the_wire: "every host failed: SYN answered by RST, no answer, or a name that did not \
            resolve",
        verdicts: &[Label::Refused, Label::HandshakeFailed],
        capture_next: "capture on the client host, TCP to the server port and DNS",
    },
    Explanation {
        id: "dotnet-read-failed",
        title: ".NET: the reply could not be read",
        codes: &[],
        patterns: &[
            "failed to read the result set",
            "an incomplete response was received from the server",
            "unable to read data from the transport connection",
        ],
        reported_by: "MySqlConnector ('Failed to read the result set.' wrapping 'An incomplete \
            response was received from the server' or an IOException 'Unable to read data from \
            the transport connection: ...')",
        on_the_wire: "a FIN (incomplete response) or RST (forcibly closed) from the server or \
            proxy during or before the reply",
        verdicts: &[
            Label::ServerKill,
            Label::ProxyClosedFrontend,
            Label::ServerIdleTimeout,
        ],
        capture_next: BOTH_LEGS,
    },
    Explanation {
        id: "connection-aborted-locally",
        title: "the client's own TCP stack aborted the connection",
        codes: &[],
        patterns: &[
            "an established connection was aborted by the software in your host machine",
            "wsaeconnaborted",
            "econnaborted",
            "software caused connection abort",
        ],
        reported_by: "Windows clients (WSAECONNABORTED 10053; .NET 'An established connection \
            was aborted by the software in your host machine'), ECONNABORTED elsewhere",
        on_the_wire: "the client host gave up on the connection: retransmissions left unacked \
            until the stack timed out, or a local firewall or antivirus cut it; the client sends \
            a RST, or nothing",
        verdicts: &[Label::ClientAbort],
        capture_next: "capture on the client host: unacknowledged retransmissions before the \
            abort point at the path or the peer",
    },
    Explanation {
        id: "pymysql-closed",
        title: "Python: a request on a connection PyMySQL had already closed",
        codes: &[],
        patterns: &["interfaceerror: (0, '')", "interfaceerror(0, '')", "already closed"],
        reported_by: "PyMySQL ('pymysql.err.InterfaceError: (0, '')' when the socket is gone, \
            'Already closed')",
        on_the_wire: "nothing new: an earlier error (2013, 2006) closed the connection and the \
            application used it again",
        verdicts: &[],
        capture_next: "look for the first error on that connection and capture around it",
    },
    Explanation {
        id: "malformed-packet",
        title: "the client could not parse what it read",
        codes: &[2027],
        patterns: &["received malformed packet", "malformed packet"],
        reported_by: "libmariadb (MySQLdb) as 2027 'Received malformed packet'; libmysqlclient \
            'Malformed packet'",
        on_the_wire: "often a proxy's ERR 2013 that libmariadb rewrites, or a reply cut by a \
            close",
        verdicts: &[Label::ServerError, Label::ProxyClosedFrontend],
        capture_next: "capture the frontend leg with the key log: `analyze` decodes the packet \
            the client could not",
    },
    Explanation {
        id: "too-many-connections",
        title: "the server or proxy refused a login: connection limit",
        codes: &[1040],
        patterns: &["too many connections"],
        reported_by: "MySQL and MariaDB servers (ERR 1040 instead of the greeting), ProxySQL \
            (ERR 1040 when mysql-max_connections is reached)",
        on_the_wire: "an ERR 1040 then the close, at the start of the connection",
        verdicts: &[Label::HandshakeFailed, Label::ServerError],
        capture_next: "no capture needed to see it; count connections per client on the proxy \
            host to see who holds them",
    },
    Explanation {
        id: "access-denied",
        title: "the login was refused",
        codes: &[1045],
        patterns: &["access denied for user", "access denied"],
        reported_by: "servers and ProxySQL as 1045 (ProxySQL also uses 1045 for some of its own \
            errors)",
        on_the_wire: "an ERR 1045 in answer to the handshake response, then the close",
        verdicts: &[Label::HandshakeFailed],
        capture_next: "capture the frontend leg; behind ProxySQL the backend login is on the \
            other leg and may be the one that failed",
    },
    Explanation {
        id: "server-shutdown",
        title: "the server is shutting down",
        codes: &[1053],
        patterns: &["server shutdown in progress"],
        reported_by: "MySQL and MariaDB servers as 1053 (MariaDB also 1927 'Connection was \
            killed' to idle sessions)",
        on_the_wire: "an ERR 1053 to sessions with a request in flight, then the server closes \
            every connection",
        verdicts: &[Label::ServerError, Label::ServerKill],
        capture_next: "capture the backend leg: many closes by the server within a second is a \
            shutdown or failover",
    },
    Explanation {
        id: "connection-killed",
        title: "the server killed the connection",
        codes: &[1927],
        patterns: &["connection was killed"],
        reported_by: "MariaDB servers as 1927 (KILL, shutdown)",
        on_the_wire: "an ERR 1927 then the server's close",
        verdicts: &[Label::ServerError, Label::ServerKill],
        capture_next: "capture the backend leg; the server's general or audit log names who \
            issued the KILL",
    },
    Explanation {
        id: "aborted-connection",
        title: "the server's log: it dropped a connection that broke",
        codes: &[1152],
        patterns: &[
            "got an error reading communication packets",
            "got timeout reading communication packets",
            "got an error writing communication packets",
            "aborted connection",
        ],
        reported_by: "the server's error log ('Aborted connection 1234 to db: 'app' user: 'app' \
            host: '10.0.0.5' (Got an error reading communication packets)'), not the client",
        on_the_wire: "'error reading': the client or proxy went away without COM_QUIT (FIN or \
            RST); 'timeout reading': the connection sat idle past wait_timeout or a packet came \
            slower than net_read_timeout, and the server closed it",
        verdicts: &[
            Label::ClientAbort,
            Label::ProxyResetBackend,
            Label::ServerIdleTimeout,
        ],
        capture_next: "capture the backend leg at the server: the connection number in the log \
            line is the thread id the greeting carried",
    },
    Explanation {
        id: "packet-too-large",
        title: "a packet over max_allowed_packet",
        codes: &[1153],
        patterns: &[
            "got a packet bigger than 'max_allowed_packet' bytes",
            "packet for query is too large",
            "packet bigger than",
        ],
        reported_by: "servers and ProxySQL as 1153 (SQLState 08S01); go-sql-driver before \
            sending ('packet for query is too large')",
        on_the_wire: "an ERR 1153 then the server's close, right after the large request",
        verdicts: &[Label::ServerError],
        capture_next: "no capture needed; raise max_allowed_packet on the server and in the \
            proxy (mysql-max_allowed_packet) or split the request",
    },
    Explanation {
        id: "lock-wait-timeout",
        title: "a lock wait timed out (not a connection problem)",
        codes: &[1205],
        patterns: &["lock wait timeout exceeded"],
        reported_by: "InnoDB as 1205",
        on_the_wire: "an ordinary ERR 1205 answering the statement; the connection stays open",
        verdicts: &[],
        capture_next: "no capture: look at the transactions holding the lock \
            (performance_schema.data_lock_waits, SHOW ENGINE INNODB STATUS)",
    },
    Explanation {
        id: "query-interrupted",
        title: "the query was killed",
        codes: &[1317],
        patterns: &[
            "query execution was interrupted",
            "query_timeout exceeded",
        ],
        reported_by: "servers as 1317 (KILL QUERY, max_execution_time); ProxySQL as 1317 or 1907 \
            ('Query execution was interrupted, query_timeout exceeded') when it kills a query it \
            relayed",
        on_the_wire: "an ERR 1317 answering the query; the connection normally stays open, but \
            ProxySQL may close the backend it killed on",
        verdicts: &[Label::ServerError, Label::ProxyResetBackend],
        capture_next: "capture the backend leg: a KILL from the proxy arrives on another backend \
            connection just before the ERR",
    },
    Explanation {
        id: "proxysql-max-connect-timeout",
        title: "ProxySQL found no backend connection in time",
        codes: &[9001],
        patterns: &["max connect timeout reached while reaching hostgroup"],
        reported_by: "ProxySQL to its client as 9001 ('Max connect timeout reached while \
            reaching hostgroup 10 after 10000ms'), after mysql-connect_timeout_server_max",
        on_the_wire: "on the frontend the query waits, then an ERR 9001 from the proxy; on the \
            backend side connection attempts refused, unanswered or failing their login, or none \
            at all (hostgroup empty, all servers shunned or at max_connections)",
        // The frontend stays open after the ERR: the verdicts are the backend attempts'.
        verdicts: &[Label::Refused, Label::HandshakeFailed],
        capture_next: "capture on the proxy host on the backend side (the hostgroup's server \
            ports) during the wait, and read stats_mysql_connection_pool",
    },
    Explanation {
        id: "proxysql-max-connect-failure",
        title: "ProxySQL's connection attempts to a hostgroup failed",
        codes: &[9002],
        patterns: &["max connect failure while reaching hostgroup"],
        reported_by: "ProxySQL to its client as 9002",
        on_the_wire: "backend connection attempts failed (refused, reset, login refused); then an \
            ERR 9002 on the frontend",
        verdicts: &[Label::Refused, Label::HandshakeFailed],
        capture_next: "capture on the proxy host on the backend side",
    },
    Explanation {
        id: "proxysql-broken-connection",
        title: "ProxySQL's log: a backend read or ping failed",
        codes: &[],
        patterns: &["detected a broken connection"],
        reported_by: "ProxySQL's error log, naming (hostgroup,host,port,thread_id)",
        on_the_wire: "a backend read or ping failed; the capture shows who really closed the \
            backend with that thread id (analyze --proxysql-log)",
        verdicts: &[
            Label::ProxyResetBackend,
            Label::ServerIdleTimeout,
            Label::ServerKill,
        ],
        capture_next: "capture the backend leg on the proxy host and pass the log: `proxyscope \
            analyze --proxysql-log proxysql.log FILE`",
    },
];

/// The entry with this id.
pub fn by_id(id: &str) -> Option<&'static Explanation> {
    KNOWN.iter().find(|e| e.id == id)
}

/// How an entry matched a query.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Match {
    /// The entry.
    #[serde(flatten)]
    pub entry: &'static Explanation,
    /// The longest of its patterns found in the text.
    pub matched: Option<&'static str>,
    /// An error number of the entry found in the text.
    pub by_code: Option<u16>,
}

/// The error numbers in `text`, in order: numbers of their own (`(2013, '`, `ERROR 2013
/// (HY000)`, `2055:`) and symbolic names (`CR_SERVER_LOST`). Digits that are part of a date
/// (`2026/09/24`, `2026-09-24`), a version or a longer number are not codes.
pub fn codes_in(text: &str) -> Vec<&'static ErrorCode> {
    let mut found: Vec<&'static ErrorCode> = Vec::new();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars.get(i).copied().is_some_and(is_word) {
            i += 1;
            continue;
        }
        let start = i;
        while chars.get(i).copied().is_some_and(is_word) {
            i += 1;
        }
        let word: String = chars.get(start..i).unwrap_or_default().iter().collect();
        let before = start.checked_sub(1).and_then(|b| chars.get(b)).copied();
        let after = chars.get(i).copied();
        let joined = |c: Option<char>| matches!(c, Some('/' | '-' | '.'));
        let hit = if word.bytes().all(|b| b.is_ascii_digit()) {
            if joined(before) || joined(after) {
                None
            } else {
                word.parse::<u16>().ok().and_then(code)
            }
        } else {
            CODES.iter().find(|c| {
                c.name
                    .is_some_and(|n| n.eq_ignore_ascii_case(word.as_str()))
            })
        };
        if let Some(c) = hit {
            if !found.iter().any(|f| f.code == c.code) {
                found.push(c);
            }
        }
    }
    found
}

/// Entries whose text is a frame around other errors (a log line that quotes the client error
/// it saw): when they match, they come before the errors they quote.
const FRAMES: &[&str] = &["proxysql-broken-connection"];

/// The entries that `text` matches, most specific first: an entry named by its id; then frames
/// (`FRAMES`); then by the length of the longest pattern found in the text (a longer text says
/// more), an error number of the entry written in the text breaking ties; entries matched by
/// number alone last, and only for numbers no text-matched entry has; ties keep the table's
/// order. An entry whose pattern only occurs inside a longer pattern another entry matched is
/// left out.
pub fn explain(text: &str) -> Vec<Match> {
    let t = text.to_lowercase();
    let id = t.trim();
    let codes = codes_in(text);
    let mut found: Vec<((u8, usize), Match)> = KNOWN
        .iter()
        .filter_map(|e| {
            let matched = e
                .patterns
                .iter()
                .copied()
                .filter(|p| t.contains(p))
                .max_by_key(|p| p.len());
            let by_code = codes.iter().map(|c| c.code).find(|c| e.codes.contains(c));
            let tier = if e.id == id {
                2
            } else {
                u8::from(matched.is_some() && FRAMES.contains(&e.id))
            };
            let score = (
                tier,
                matched.map_or(0, |p| p.len().saturating_mul(2)) + usize::from(by_code.is_some()),
            );
            (score > (0, 0)).then_some((
                score,
                Match {
                    entry: e,
                    matched,
                    by_code,
                },
            ))
        })
        .collect();
    // A pattern inside a longer one that another entry matched is that entry's text, not a
    // sign of its own ("unexpected eof" of Go inside OpenSSL's "unexpected eof while reading").
    let longer: Vec<&str> = found.iter().filter_map(|(_, m)| m.matched).collect();
    found.retain(|(_, m)| {
        m.matched
            .is_none_or(|p| !longer.iter().any(|l| l.len() > p.len() && l.contains(p)))
    });
    // A number the text explains already (an entry matched by text has it) adds nothing: the
    // other entries of that number are left out.
    let explained: Vec<u16> = found
        .iter()
        .filter(|(_, m)| m.matched.is_some())
        .flat_map(|(_, m)| m.entry.codes.iter().copied())
        .collect();
    found.retain(|(_, m)| m.matched.is_some() || m.by_code.is_none_or(|c| !explained.contains(&c)));
    // Stable: equal scores keep the table's order.
    found.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    found.into_iter().map(|(_, m)| m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real error strings, each with the entry it must explain first. Where each comes from:
    /// the driver source that formats it, or an issue tracker / log that shows it whole.
    const REAL: &[(&str, &str)] = &[
        // mysqlclient (MySQLdb) over libmariadb 3.1.18+, OpenSSL 1.1; Django's traceback
        // (PyMySQL/mysqlclient issue reports; our own captures/README.md).
        (
            "django.db.utils.OperationalError: (2026, 'TLS/SSL error: Success (0)')",
            "tls-eof-success",
        ),
        // OpenSSL 3 text through libmariadb (MySQLdb issue reports).
        (
            "MySQLdb.OperationalError: (2026, 'TLS/SSL error: unexpected eof while reading')",
            "tls-unexpected-eof",
        ),
        // libmysql/errmsg.cc CR_SERVER_LOST, wrapped by SQLAlchemy around MySQLdb.
        (
            "sqlalchemy.exc.OperationalError: (MySQLdb.OperationalError) (2013, 'Lost connection \
             to MySQL server during query')",
            "server-lost",
        ),
        // PyMySQL connections.py _read_bytes: f"Lost connection to MySQL server during query
        // ({e})", wrapped by SQLAlchemy.
        (
            "(pymysql.err.OperationalError) (2013, 'Lost connection to MySQL server during query \
             ([Errno 104] Connection reset by peer)')",
            "server-lost",
        ),
        // libmariadb (MariaDB Connector/C) 2013 text, as the mariadb CLI prints it.
        (
            "ERROR 2013 (HY000): Lost connection to server during query",
            "server-lost",
        ),
        // libmysqlclient client.cc csm_read_greeting: CR_SERVER_LOST with
        // CR_SERVER_LOST_EXTENDED's text and "reading initial communication packet".
        (
            "ERROR 2013 (HY000): Lost connection to MySQL server at 'reading initial \
             communication packet', system error: 0",
            "server-lost-greeting",
        ),
        // libmariadb ma_connect: "handshake: reading initial communication packet".
        (
            "ERROR 2013 (HY000): Lost connection to server at 'handshake: reading initial \
             communication packet', system error: 11",
            "server-lost-greeting",
        ),
        // libmysqlclient client.cc authsm_handle_first_authenticate_user.
        (
            "(2013, \"Lost connection to MySQL server at 'reading authorization packet', system \
             error: 0\")",
            "server-lost-auth",
        ),
        // MySQL Connector/Python, as shown in a SQLAlchemy traceback in a public notes file.
        (
            "sqlalchemy.exc.OperationalError: (mysql.connector.errors.OperationalError) 2055: \
             Lost connection to MySQL server at '10.15.5.86:3306', system error: 32 Broken pipe",
            "server-lost-extended",
        ),
        // libmysql/errmsg.cc CR_SERVER_GONE_ERROR via Django.
        (
            "django.db.utils.OperationalError: (2006, 'MySQL server has gone away')",
            "server-gone",
        ),
        // PyMySQL connections.py _write_bytes: f"MySQL server has gone away ({e!r})".
        (
            "pymysql.err.OperationalError: (2006, \"MySQL server has gone away \
             (BrokenPipeError(32, 'Broken pipe'))\")",
            "server-gone",
        ),
        // PHP PDO over mysqlnd (a Laravel log quoted in a public write-up).
        (
            "SQLSTATE[HY000]: General error: 2006 MySQL server has gone away",
            "server-gone",
        ),
        // MySQL 8.0.24+ ER_CLIENT_INTERACTION_TIMEOUT, as mysql2's test asserts it.
        (
            "Error: The client was disconnected by the server because of inactivity. See \
             wait_timeout and interactive_timeout for configuring this behavior.",
            "interaction-timeout",
        ),
        // php-src ext/mysqlnd/mysqlnd_wireprotocol.c php_mysqlnd_read_header; the text as in
        // laravel/framework#44957 (SET SESSION wait_timeout=1, sleep 3, then a query).
        (
            "PHP Warning:  PDOStatement::execute(): Packets out of order. Expected 1 received 0. \
             Packet size=145",
            "packets-out-of-order",
        ),
        // mysqljs/mysql lib/protocol/Parser.js, as in mysqljs/mysql#844.
        (
            "Error: Packets out of order. Got: 0 Expected: 2",
            "packets-out-of-order",
        ),
        // php-src ext/mysqlnd/mysqlnd_connection.c (a CodeIgniter log line).
        (
            "Severity: Warning --> mysqli::real_connect(): Error while reading greeting packet. \
             PID=291309",
            "mysqlnd-greeting",
        ),
        // php-src ext/mysqlnd/mysqlnd_commands.c send_command.
        (
            "PDO::query(): Error while sending QUERY packet. PID=1234",
            "mysqlnd-sending",
        ),
        // mysql-connector-j LocalizedErrorMessages.properties CommunicationsException.20 and
        // ServerPacketTimingInfo.
        (
            "com.mysql.cj.jdbc.exceptions.CommunicationsException: Communications link failure\n\n\
             The last packet successfully received from the server was 28,800,123 milliseconds \
             ago. The last packet sent successfully to the server was 0 milliseconds ago.",
            "connector-j-last-packet",
        ),
        (
            "com.mysql.cj.jdbc.exceptions.CommunicationsException: Communications link failure",
            "connector-j-link-failure",
        ),
        // mysql-connector-j LocalizedErrorMessages.properties MysqlIO.EOF.
        (
            "java.io.EOFException: Can not read response from server. Expected to read 4 bytes, \
             read 0 bytes before connection was unexpectedly lost.",
            "connector-j-eof",
        ),
        // go-sql-driver/mysql errors.go ErrInvalidConn.
        ("[mysql] invalid connection", "go-invalid-connection"),
        // go-sql-driver/mysql packets.go logging io.ErrUnexpectedEOF (public notes).
        (
            "[mysql] 2019/04/18 11:20:58 packets.go:36: unexpected EOF",
            "go-unexpected-eof",
        ),
        // go-sql-driver/mysql connection.go: mc.log("closing bad idle connection: ", err).
        (
            "[mysql] 2023/05/02 10:00:01 connection.go:173: closing bad idle connection: EOF",
            "go-bad-idle-connection",
        ),
        // Go database/sql/driver ErrBadConn.
        ("driver: bad connection", "go-bad-connection"),
        // go-sql-driver/mysql errors.go ErrBusyBuffer (public notes).
        (
            "[mysql] 2022/07/01 12:02:04 packets.go:428: busy buffer",
            "go-busy-buffer",
        ),
        // mysqljs/mysql lib/protocol/Protocol.js.
        (
            "Error: Connection lost: The server closed the connection.\n    at Protocol.end \
             (node_modules/mysql/lib/protocol/Protocol.js:112:13) { fatal: true, code: \
             'PROTOCOL_CONNECTION_LOST' }",
            "node-connection-lost",
        ),
        // Node's net error for a RST during a read (mysql2 issue reports).
        (
            "Error: read ECONNRESET\n    at TCP.onStreamRead (node:internal/stream_base_commons:\
             217:20) { errno: -104, code: 'ECONNRESET', syscall: 'read', fatal: true }",
            "connection-reset",
        ),
        // mysql2 lib/connection.js _addCommandClosedState.
        (
            "Error: Can't add new command when connection is in closed state",
            "node-closed-state",
        ),
        // mysqljs/mysql lib/protocol/Protocol.js _validateEnqueue.
        (
            "Error: Cannot enqueue Query after fatal error.",
            "node-closed-state",
        ),
        // MySqlConnector src/MySqlConnector/MySqlConnection.cs.
        (
            "MySqlConnector.MySqlException (0x80004005): Connect Timeout expired.",
            "dotnet-connect-timeout",
        ),
        (
            "MySqlConnector.MySqlException (0x80004005): Unable to connect to any of the \
             specified MySQL hosts.",
            "dotnet-unable-to-connect",
        ),
        // MySqlConnector MySqlDataReader.cs and MySqlEndOfStreamException.cs.
        (
            "MySqlConnector.MySqlException (0x80004005): Failed to read the result set.\n ---> \
             System.IO.EndOfStreamException: An incomplete response was received from the server",
            "dotnet-read-failed",
        ),
        // Windows WSAECONNABORTED through .NET's socket exception.
        (
            "System.IO.IOException: Unable to write data to the transport connection: An \
             established connection was aborted by the software in your host machine.",
            "connection-aborted-locally",
        ),
        // Windows WSAECONNRESET through .NET.
        (
            "System.Net.Sockets.SocketException (10054): An existing connection was forcibly \
             closed by the remote host.",
            "connection-reset",
        ),
        // libmysql/errmsg.cc CR_CONN_HOST_ERROR (MySQL 8 format) with ECONNREFUSED.
        (
            "ERROR 2003 (HY000): Can't connect to MySQL server on '10.0.0.7:3306' (111)",
            "connection-refused",
        ),
        // PyMySQL connections.py connect(): f"Can't connect to MySQL server on {host!r} ({e})".
        (
            "pymysql.err.OperationalError: (2003, \"Can't connect to MySQL server on 'db' \
             ([Errno 111] Connection refused)\")",
            "connection-refused",
        ),
        // libmysql/errmsg.cc CR_CONNECTION_ERROR.
        (
            "ERROR 2002 (HY000): Can't connect to local MySQL server through socket \
             '/var/run/mysqld/mysqld.sock' (2)",
            "local-socket",
        ),
        // libmysql/errmsg.cc CR_UNKNOWN_HOST.
        (
            "ERROR 2005 (HY000): Unknown MySQL server host 'db.internal' (-2)",
            "unknown-host",
        ),
        // libmariadb 2027 (MySQLdb), kept from the first version of this table.
        ("(2027, 'Received malformed packet')", "malformed-packet"),
        // ProxySQL lib/MySQL_Session.cpp, as a client printed it (public notes).
        (
            "ERROR 9001 (HY000) at line 1: Max connect timeout reached while reaching hostgroup \
             10 after 10000ms",
            "proxysql-max-connect-timeout",
        ),
        (
            "SQLSTATE[HY000]: General error: 9001 Max connect timeout reached while reaching \
             hostgroup 1 after 10000ms",
            "proxysql-max-connect-timeout",
        ),
        // ProxySQL lib/MySQL_Session.cpp generate_pkt_ERR(..., 1040, "08004", "Too many connections").
        (
            "ERROR 1040 (08004): Too many connections",
            "too-many-connections",
        ),
        // MySQL ER_ABORTING_USER_CONNECTION in the server's error log.
        (
            "[Note] [MY-010914] [Server] Aborted connection 1234 to db: 'app' user: 'app' host: \
             '10.0.0.5' (Got an error reading communication packets).",
            "aborted-connection",
        ),
        // ProxySQL's error log.
        (
            "MySQL_Session.cpp:4965:handler(): [ERROR] Detected a broken connection while running \
             query on (0,10.0.0.2,3306,123) , FD (Conn:36 , MyDS:36) , user app , last_used 1ms \
             ago : 2013, Lost connection to MySQL server during query",
            "proxysql-broken-connection",
        ),
    ];

    #[test]
    fn real_driver_errors_find_their_entry_first() {
        for (text, want) in REAL {
            let found = explain(text);
            let first = found.first().map(|m| m.entry.id);
            assert_eq!(first, Some(*want), "{text:?}: {:?}", ids(&found));
        }
    }

    fn ids(found: &[Match]) -> Vec<&'static str> {
        found.iter().map(|m| m.entry.id).collect()
    }

    #[test]
    fn a_wrapped_error_also_names_the_os_cause() {
        let found = ids(&explain(
            "(pymysql.err.OperationalError) (2013, 'Lost connection to MySQL server during query \
             ([Errno 104] Connection reset by peer)')",
        ));
        assert_eq!(found, vec!["server-lost", "connection-reset"]);
        // The number alone lists every entry that carries it.
        let number_and_other_text = ids(&explain("ERROR 2013 (HY000): broken pipe"));
        assert_eq!(number_and_other_text.first(), Some(&"broken-pipe"));
        assert!(number_and_other_text.contains(&"server-lost"));
    }

    #[test]
    fn a_pattern_inside_a_longer_match_is_not_a_match_of_its_own() {
        let tls = ids(&explain(
            "(2026, 'TLS/SSL error: unexpected eof while reading')",
        ));
        assert_eq!(tls.first(), Some(&"tls-unexpected-eof"));
        assert!(!tls.contains(&"go-unexpected-eof"), "{tls:?}");
        let success = ids(&explain("(2026, 'TLS/SSL error: Success (0)')"));
        assert_eq!(success, vec!["tls-eof-success"]);
        assert_eq!(
            ids(&explain("packets.go:36: unexpected EOF")),
            vec!["go-unexpected-eof"]
        );
    }

    #[test]
    fn codes_and_names_are_looked_up() {
        let by_number = ids(&explain("2013"));
        assert_eq!(by_number.first(), Some(&"server-lost"));
        assert!(by_number.contains(&"server-lost-greeting"));
        assert_eq!(ids(&explain("CR_SERVER_LOST")), by_number);
        assert_eq!(ids(&explain("cr_server_lost")), by_number);
        assert_eq!(
            ids(&explain("4031")),
            vec!["interaction-timeout", "packets-out-of-order"]
        );
        assert_eq!(
            ids(&explain("ER_CLIENT_INTERACTION_TIMEOUT")).first(),
            Some(&"interaction-timeout")
        );
        assert_eq!(
            ids(&explain("9001")).first(),
            Some(&"proxysql-max-connect-timeout")
        );
        assert_eq!(ids(&explain("server-gone")).first(), Some(&"server-gone"));
        // A name is a whole word: CR_SERVER_LOST_EXTENDED is 2055, not 2013.
        let ext: Vec<u16> = codes_in("CR_SERVER_LOST_EXTENDED")
            .iter()
            .map(|c| c.code)
            .collect();
        assert_eq!(ext, vec![2055]);
    }

    #[test]
    fn dates_and_long_numbers_are_not_codes() {
        assert!(codes_in("[mysql] 2026/09/24 10:00:00 packets.go:58").is_empty());
        assert!(codes_in("2026-09-24T10:00:00Z after 20130ms port 3306").is_empty());
        let c: Vec<u16> = codes_in("2055: Lost connection")
            .iter()
            .map(|c| c.code)
            .collect();
        assert_eq!(c, vec![2055]);
        assert!(explain("nothing known here").is_empty());
        assert!(explain("").is_empty());
    }

    #[test]
    fn the_table_is_consistent() {
        for e in KNOWN {
            assert_eq!(
                by_id(e.id).map(|f| f.title),
                Some(e.title),
                "duplicate id {}",
                e.id
            );
            assert!(!e.patterns.is_empty(), "{}", e.id);
            for p in e.patterns {
                assert_eq!(*p, p.to_lowercase(), "{}: patterns are lower case", e.id);
                // Every pattern finds its own entry.
                assert!(
                    explain(p).iter().any(|m| m.entry.id == e.id),
                    "{}: {p}",
                    e.id
                );
            }
            for c in e.codes {
                assert!(code(*c).is_some(), "{}: unknown code {c}", e.id);
            }
        }
        // Every number in the table has an explanation.
        for c in CODES {
            assert!(
                KNOWN.iter().any(|e| e.codes.contains(&c.code)),
                "{}",
                c.code
            );
            assert!(!explain(&c.code.to_string()).is_empty(), "{}", c.code);
        }
    }
}
