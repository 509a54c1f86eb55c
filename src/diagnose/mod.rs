//! Stage 6, diagnose: a verdict for every close — who started the teardown, how, in what state,
//! what the client most likely reported, and the frames that show it.
//!
//! The starter is whichever came first of: the client's COM_QUIT (read, or inferred from a
//! 5-byte TLS record), an ERR followed by the close, a TLS close_notify or fatal alert, bytes
//! that are not TLS inside TLS, or the first FIN/RST (DESIGN.md). Capture order decides; the
//! first FIN alone is kept as a separate fact because a clean MySQL close sends both FINs in
//! either order. Proxy legs, pairing across the proxy and incidents are the next step (issue 5).

pub mod explain;
pub mod incidents;
pub mod legs;
pub mod proxysql_log;

use serde::Serialize;

use crate::dissect::Carries;
use crate::event::Kind;
use crate::model::{CloseKind, EventOut, Mark, Point, Role, Summary};

/// What kind of close it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// The client sent COM_QUIT.
    CleanQuit,
    /// An orderly close without a MySQL COM_QUIT (a TLS close_notify, or FIN/FIN on a connection
    /// that is not MySQL).
    CleanClose,
    /// The client went away without COM_QUIT (killed, crashed, aborted).
    ClientAbort,
    /// The server closed an idle connection (MariaDB: RST only; MySQL 8.0.24+: ERR 4031 first).
    ServerIdleTimeout,
    /// The server closed the connection while a request was in flight (KILL, crash, shutdown).
    ServerKill,
    /// The server sent an ERR and closed.
    ServerError,
    /// The proxy closed a backend connection without COM_QUIT (FIN or RST).
    ProxyResetBackend,
    /// The proxy closed a frontend connection without an ERR first.
    ProxyClosedFrontend,
    /// A fatal TLS alert started the close.
    TlsFatalAlert,
    /// The close came before the MySQL login or the TLS handshake finished.
    HandshakeFailed,
    /// Bytes that are not TLS were written inside the TLS stream (e.g. a plaintext COM_QUIT).
    PlaintextInTls,
    /// The SYN was answered by RST.
    Refused,
    /// Neither FIN nor RST: open when the capture ended.
    StillOpen,
    /// None of the above fits.
    Unknown,
}

/// Where the protocol was when the teardown started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Before the MySQL login finished.
    Handshake,
    /// After the SSLRequest, before the TLS handshake finished.
    TlsHandshake,
    /// Logged in, nothing pending.
    Idle,
    /// A request was sent and its response had not started.
    RequestInFlight,
    /// A response was being sent.
    Streaming,
    /// Not known (not MySQL, or not enough was seen).
    Unknown,
}

/// A request still open at the teardown.
#[derive(Clone, Debug, Serialize)]
pub struct Pending {
    /// Command (e.g. `com_query`), when readable.
    pub command: Option<String>,
    /// Query text, when readable.
    pub text: Option<String>,
    /// Frame of the request.
    pub frame: u64,
    /// Judged from TLS record order, not read.
    pub inferred: bool,
}

/// The verdict on one close.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// Label.
    pub label: Label,
    /// Role that started the teardown (None while still open).
    pub closed_by: Option<Role>,
    /// What started it, in words (e.g. `COM_QUIT`, `FIN`, `ERR 4031`, `fatal alert decode_error`).
    pub how: String,
    /// The packet that started it.
    pub at: Option<Mark>,
    /// Protocol state then.
    pub state: State,
    /// The request in flight, if any.
    pub in_flight: Option<Pending>,
    /// Milliseconds each side had been silent (no new payload) when the teardown started.
    pub idle_ms: crate::model::Dirs<Option<f64>>,
    /// What the client application most likely reported.
    pub client_sees: Option<&'static str>,
    /// Frames that show it: the starter, the first FIN and RST, the peer's FIN, the request.
    pub evidence: Vec<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cause {
    Quit,
    Err,
    Alert,
    Plaintext,
    Teardown,
}

struct Start {
    cause: Cause,
    how: String,
    mark: Mark,
    code: Option<u16>,
}

fn order(p: &Point) -> (usize, u64) {
    (p.file, p.frame)
}

fn mark_of(e: &EventOut) -> Mark {
    Mark {
        by: if e.dir == "c2s" {
            Role::Client
        } else {
            Role::Server
        },
        from: e.from,
        at: e.at,
    }
}

/// The verdict for a finished connection, with its leg (the proxy's side of a frontend or
/// backend connection is named `proxy`).
pub fn verdict(s: &Summary) -> Verdict {
    let mut v = direct_verdict(s);
    let proxy_side = match s.leg {
        legs::Leg::Frontend => Some(Role::Server),
        legs::Leg::Backend => Some(Role::Client),
        _ => None,
    };
    if let (Some(side), Some(by)) = (proxy_side, v.closed_by) {
        if side == by {
            v.closed_by = Some(Role::Proxy);
            v.label = match (s.leg, v.label) {
                (_, Label::CleanQuit | Label::PlaintextInTls | Label::ServerError) => v.label,
                (legs::Leg::Backend, _) => Label::ProxyResetBackend,
                (legs::Leg::Frontend, Label::HandshakeFailed) => Label::HandshakeFailed,
                (legs::Leg::Frontend, _) => Label::ProxyClosedFrontend,
                _ => v.label,
            };
            if v.client_sees.is_none() && s.leg == legs::Leg::Frontend {
                v.client_sees = Some(if s.tls.is_some() {
                    "(2026, 'TLS/SSL error: unexpected eof while reading') with OpenSSL 3, \
                     'Success (0)' with OpenSSL 1.1: the FIN came with no close_notify"
                } else {
                    "2013, Lost connection to server during query"
                });
            }
        }
    }
    v
}

fn direct_verdict(s: &Summary) -> Verdict {
    let close = &s.close;
    let mut starts: Vec<Start> = Vec::new();
    let teardown_at = close.at.map(|m| order(&m.at));
    // Only what came before the end of the connection's kept events matters; all kept events are.
    // "An ERR followed by its close": the server's last MySQL packet (the client may still
    // have sent something after it).
    let last_mysql = s
        .events
        .iter()
        .rev()
        .find(|e| e.dir == "s2c" && matches!(e.event.kind.layer(), crate::event::Layer::Mysql));
    // An ERR is followed by its close only if the client sent no command between the ERR and
    // the first FIN/RST (an ERR answered by the client's COM_QUIT is an ordinary reply).
    let client_spoke_after = |err: &EventOut| {
        s.events.iter().any(|c| {
            c.dir == "c2s"
                && matches!(c.event.kind, Kind::Command { .. })
                && order(&c.at) > order(&err.at)
                && teardown_at.is_none_or(|t| order(&c.at) <= t)
        })
    };
    for e in &s.events {
        let (cause, how, code) = match &e.event.kind {
            Kind::Command { cmd: 0x01, .. } => (Cause::Quit, "COM_QUIT".to_string(), None),
            Kind::InferredClose {
                what: "com_quit", ..
            } => (
                Cause::Quit,
                "COM_QUIT (inferred from the record size)".to_string(),
                None,
            ),
            Kind::Err { code, .. } | Kind::GreetingErr { code, .. }
                if last_mysql.is_some_and(|l| std::ptr::eq(l, e)) && !client_spoke_after(e) =>
            {
                (Cause::Err, format!("ERR {code}"), Some(*code))
            }
            Kind::Alert { level: 2, desc } => (
                Cause::Alert,
                format!("fatal alert {}", crate::event::alert_name(*desc)),
                None,
            ),
            Kind::Alert { desc: 0, .. } => (Cause::Alert, "close_notify".to_string(), Some(0)),
            Kind::PlaintextInTls { mysql, .. } => (
                Cause::Plaintext,
                match mysql {
                    Some(m) => format!("plaintext {} inside TLS", m.to_uppercase()),
                    None => "plaintext bytes inside TLS".to_string(),
                },
                None,
            ),
            _ => continue,
        };
        // A reaction after the first FIN/RST does not start anything.
        if teardown_at.is_some_and(|t| order(&e.at) > t) {
            continue;
        }
        starts.push(Start {
            cause,
            how,
            mark: mark_of(e),
            code,
        });
    }
    if let Some(m) = close.at {
        let first_is_rst = close
            .first_rst
            .is_some_and(|r| order(&r.at) == order(&m.at));
        starts.push(Start {
            cause: Cause::Teardown,
            how: if first_is_rst { "RST" } else { "FIN" }.to_string(),
            mark: m,
            code: None,
        });
    }
    let start = starts
        .into_iter()
        .min_by_key(|st| (order(&st.mark.at), st.cause));

    let mysql = s.mysql.as_ref();
    let tls = s.tls.as_ref();
    // In flight at the teardown (not at the end: a server may still answer after the client's
    // FIN): the last request before the starter with no complete response before it; without
    // decrypted MySQL, inferred from which side sent the last TLS record.
    let upto = start.as_ref().map(|st| order(&st.mark.at));
    let before = |e: &&EventOut| upto.is_none_or(|u| order(&e.at) <= u);
    let is_mysql = s.carries == Carries::Mysql;
    let mut in_flight = None;
    let mut streaming = false;
    let last_cmd = s
        .events
        .iter()
        .filter(before)
        .rfind(|e| matches!(e.event.kind, Kind::Command { .. }));
    if let Some(c) = last_cmd {
        if let Kind::Command { cmd, text, .. } = &c.event.kind {
            // COM_QUIT, COM_STMT_CLOSE and COM_STMT_SEND_LONG_DATA get no response.
            let answered = matches!(cmd, 0x01 | 0x18 | 0x19)
                || s.events.iter().filter(before).any(|e| {
                    order(&e.at) > order(&c.at)
                        && matches!(
                            e.event.kind,
                            Kind::ResultSet { more: false, .. }
                                | Kind::Ok { login: false, .. }
                                | Kind::Err { .. }
                                | Kind::StmtPrepared { .. }
                        )
                });
            if !answered {
                streaming = s.events.iter().filter(before).any(|e| {
                    order(&e.at) > order(&c.at)
                        && e.dir == "s2c"
                        && e.event.kind.layer() != crate::event::Layer::Tcp
                });
                in_flight = Some(Pending {
                    command: Some(crate::event::command_name(*cmd).to_string()),
                    text: text.clone(),
                    frame: c.at.frame,
                    inferred: false,
                });
            }
        }
    } else if is_mysql && tls.is_some() {
        let last_app = |dir: &str| {
            s.events
                .iter()
                .filter(before)
                .rfind(|e| e.dir == dir && matches!(e.event.kind, Kind::AppData { .. }))
        };
        if let (Some(c), s2c) = (last_app("c2s"), last_app("s2c")) {
            let quit = start.as_ref().is_some_and(|st| st.cause == Cause::Quit);
            if !quit && s2c.is_none_or(|r| order(&r.at) < order(&c.at)) {
                in_flight = Some(Pending {
                    command: None,
                    text: None,
                    frame: c.at.frame,
                    inferred: true,
                });
            }
        }
    }
    let tls_unfinished = tls.is_some_and(|t| t.version.is_none() || t.records.c2s.app_records == 0);
    let state = match mysql.and_then(|m| m.phase) {
        _ if close.how == CloseKind::Open => State::Unknown,
        Some(
            crate::mysql::Phase::Greeting | crate::mysql::Phase::Login | crate::mysql::Phase::Auth,
        ) if mysql.is_some_and(|m| m.login_ok != Some(true)) => State::Handshake,
        Some(crate::mysql::Phase::Tls) if tls_unfinished => State::TlsHandshake,
        None if !is_mysql && tls.is_none() => State::Unknown,
        _ if in_flight.is_some() && streaming => State::Streaming,
        _ if in_flight.is_some() => State::RequestInFlight,
        _ => State::Idle,
    };

    let closed_by = start.as_ref().map(|st| st.mark.by);
    let label = match (&start, close.how) {
        (_, CloseKind::Open) => Label::StillOpen,
        (_, CloseKind::Refused) => Label::Refused,
        (None, _) => Label::Unknown,
        (Some(st), _) => match st.cause {
            Cause::Quit => Label::CleanQuit,
            Cause::Err => match st.code {
                Some(4031) => Label::ServerIdleTimeout,
                Some(1053 | 1927 | 3169) => Label::ServerKill,
                _ if state == State::Handshake => Label::HandshakeFailed,
                _ => Label::ServerError,
            },
            Cause::Alert if st.code == Some(0) => Label::CleanClose,
            Cause::Alert => Label::TlsFatalAlert,
            Cause::Plaintext => Label::PlaintextInTls,
            Cause::Teardown => match (state, st.mark.by) {
                // A client that leaves mid-handshake aborted it; a server that does failed it.
                (State::Handshake | State::TlsHandshake, Role::Client) => Label::ClientAbort,
                (State::Handshake | State::TlsHandshake, Role::Server) => Label::HandshakeFailed,
                (_, Role::Client) if is_mysql => Label::ClientAbort,
                (_, Role::Client) if close.how == CloseKind::Fin => Label::CleanClose,
                (_, Role::Client) => Label::ClientAbort,
                (State::RequestInFlight | State::Streaming, Role::Server) => Label::ServerKill,
                (State::Idle, Role::Server) if is_mysql => Label::ServerIdleTimeout,
                (_, Role::Server) if close.how == CloseKind::Fin => Label::CleanClose,
                _ => Label::Unknown,
            },
        },
    };
    let server_started = closed_by == Some(Role::Server);
    let rst = start.as_ref().is_some_and(|st| st.how == "RST");
    let client_sees = match label {
        Label::ServerKill | Label::ServerIdleTimeout | Label::Unknown if server_started => {
            Some(match (tls.is_some(), rst, state) {
                (_, true, _) => "Connection reset by peer (104), or 2013/2006 at the next read",
                (true, false, _) => {
                    "(2026, 'TLS/SSL error: unexpected eof while reading') with OpenSSL 3, \
                     'Success (0)' with OpenSSL 1.1: the FIN came with no close_notify"
                }
                (false, false, State::RequestInFlight | State::Streaming) => {
                    "2013, Lost connection to server during query"
                }
                (false, false, _) => "2006, Server has gone away (at the next query)",
            })
        }
        Label::ServerError | Label::HandshakeFailed if server_started => {
            Some(match start.as_ref().map(|st| st.cause) {
                Some(Cause::Err) => "the ERR's own code and message",
                _ if state == State::TlsHandshake => {
                    "a TLS error (2026): the connection closed during the TLS handshake"
                }
                _ => {
                    "2013, Lost connection to server at 'handshake' (the server closed before \
                      the login finished)"
                }
            })
        }
        _ => None,
    };
    // Silence before the teardown (not before the end: the peer often writes after a FIN).
    let start_ts = start.as_ref().map(|st| st.mark.at.ts);
    let idle = |dir: &str| {
        let t = start_ts?;
        let last = s
            .events
            .iter()
            .filter(before)
            .filter(|e| e.event.kind.layer() != crate::event::Layer::Tcp)
            .filter(|e| {
                start
                    .as_ref()
                    .is_none_or(|st| order(&e.at) < order(&st.mark.at))
            })
            .rfind(|e| e.dir == dir)?;
        Some(t.nanos_since(last.at.ts) as f64 / 1e6)
    };
    let mut evidence: Vec<u64> = Vec::new();
    let mut add = |f: Option<u64>| {
        if let Some(f) = f {
            if !evidence.contains(&f) {
                evidence.push(f);
            }
        }
    };
    add(in_flight.as_ref().map(|p| p.frame));
    add(start.as_ref().map(|st| st.mark.at.frame));
    add(close.first_fin.map(|m| m.at.frame));
    add(close.peer_fin.map(|m| m.at.frame));
    add(close.first_rst.map(|m| m.at.frame));
    Verdict {
        label,
        closed_by,
        how: start
            .as_ref()
            .map_or_else(|| "-".to_string(), |st| st.how.clone()),
        at: start.as_ref().map(|st| st.mark),
        state,
        in_flight,
        idle_ms: crate::model::Dirs {
            c2s: idle("c2s"),
            s2c: idle("s2c"),
        },
        client_sees,
        evidence,
    }
}

impl Label {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::CleanQuit => "clean_quit",
            Label::CleanClose => "clean_close",
            Label::ClientAbort => "client_abort",
            Label::ServerIdleTimeout => "server_idle_timeout",
            Label::ServerKill => "server_kill",
            Label::ServerError => "server_error",
            Label::ProxyResetBackend => "proxy_reset_backend",
            Label::ProxyClosedFrontend => "proxy_closed_frontend",
            Label::TlsFatalAlert => "tls_fatal_alert",
            Label::HandshakeFailed => "handshake_failed",
            Label::PlaintextInTls => "plaintext_in_tls",
            Label::Refused => "refused",
            Label::StillOpen => "still_open",
            Label::Unknown => "unknown",
        }
    }

    /// True for closes a person should look at.
    pub fn is_problem(self) -> bool {
        !matches!(
            self,
            Label::CleanQuit | Label::CleanClose | Label::StillOpen
        )
    }
}
