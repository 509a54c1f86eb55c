//! What a client's error text means on the wire, and which verdicts in a capture produce it.

/// One known client error.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Explanation {
    /// Text to look for (case-insensitive).
    pub pattern: &'static str,
    /// Who reports it.
    pub reported_by: &'static str,
    /// What happened on the wire.
    pub on_the_wire: &'static str,
    /// Verdict labels that produce it.
    pub verdicts: &'static [&'static str],
}

/// The known client errors, most specific first.
pub const KNOWN: &[Explanation] = &[
    Explanation {
        pattern: "TLS/SSL error: Success (0)",
        reported_by:
            "MariaDB Connector/C 3.1.18+ with OpenSSL 1.1 (mysqlclient, MySQLdb), as error 2026",
        on_the_wire: "the peer's FIN arrived with no TLS close_notify and no MySQL ERR before it",
        verdicts: &[
            "proxy_closed_frontend",
            "server_kill",
            "server_idle_timeout",
        ],
    },
    Explanation {
        pattern: "unexpected eof while reading",
        reported_by: "OpenSSL 3 clients (MySQLdb, the mariadb CLI), as error 2026",
        on_the_wire: "the peer's FIN arrived with no TLS close_notify and no MySQL ERR before it",
        verdicts: &[
            "proxy_closed_frontend",
            "server_kill",
            "server_idle_timeout",
        ],
    },
    Explanation {
        pattern: "Lost connection to MySQL server during query",
        reported_by: "clients as 2013; ProxySQL in 'Detected a broken connection' lines",
        on_the_wire: "FIN or RST while a request was in flight (a plaintext connection; over TLS \
                      the same close shows as 2026)",
        verdicts: &[
            "server_kill",
            "proxy_closed_frontend",
            "proxy_reset_backend",
        ],
    },
    Explanation {
        pattern: "Lost connection to server during query",
        reported_by: "the mariadb CLI and libmariadb, as 2013",
        on_the_wire: "FIN or RST while a request was in flight",
        verdicts: &["server_kill", "proxy_closed_frontend"],
    },
    Explanation {
        pattern: "Server has gone away",
        reported_by: "clients as 2006; ProxySQL when it hands out a dead pooled backend",
        on_the_wire: "the connection had been closed (FIN or RST) while idle; the client notices \
                      at its next request, which may not even reach the wire",
        verdicts: &[
            "server_idle_timeout",
            "proxy_reset_backend",
            "proxy_closed_frontend",
        ],
    },
    Explanation {
        pattern: "Connection reset by peer",
        reported_by: "any client, as errno 104",
        on_the_wire: "a RST from the peer",
        verdicts: &["server_idle_timeout", "client_abort", "proxy_reset_backend"],
    },
    Explanation {
        pattern: "Received malformed packet",
        reported_by: "libmariadb (MySQLdb), as 2027",
        on_the_wire: "often a proxy's ERR 2013 that libmariadb rewrites",
        verdicts: &["server_error"],
    },
    Explanation {
        pattern: "Detected a broken connection",
        reported_by: "ProxySQL's error log, naming (hostgroup,host,port,thread_id)",
        on_the_wire: "a backend read or ping failed; the capture shows who really closed the \
                      backend with that thread id (analyze --proxysql-log)",
        verdicts: &["proxy_reset_backend", "server_idle_timeout", "server_kill"],
    },
    Explanation {
        pattern: "SSL is required, but the server does not support it",
        reported_by: "the mariadb CLI with --ssl-verify-server-cert, as 2026",
        on_the_wire: "a greeting without CLIENT_SSL; the client leaves without an SSLRequest",
        verdicts: &["client_abort"],
    },
    Explanation {
        pattern: "Access denied",
        reported_by: "clients as 1045",
        on_the_wire: "an ERR 1045 in answer to the handshake response, then the close",
        verdicts: &["handshake_failed"],
    },
    Explanation {
        pattern: "client was disconnected by the server because of inactivity",
        reported_by: "MySQL 8.0.24+ clients, as 4031",
        on_the_wire: "an unsolicited ERR 4031 then the server's FIN (MariaDB: a bare RST instead)",
        verdicts: &["server_idle_timeout"],
    },
];

/// The explanations whose pattern occurs in `text` (case-insensitive).
pub fn explain(text: &str) -> Vec<&'static Explanation> {
    let t = text.to_lowercase();
    KNOWN
        .iter()
        .filter(|e| t.contains(&e.pattern.to_lowercase()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_django_error() {
        let e = explain("OperationalError: (2026, 'TLS/SSL error: Success (0)')");
        assert_eq!(e.len(), 1);
        assert!(e[0].on_the_wire.contains("close_notify"));
        assert!(explain("nothing known").is_empty());
        assert_eq!(
            explain("(2013, 'Lost connection to MySQL server during query')").len(),
            1
        );
    }
}
