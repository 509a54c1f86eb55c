//! Stage 6, diagnose: a verdict for every close — who started the teardown, how, in what state,
//! what the client most likely reported, and the frames that show it.
//!
//! The starter is whichever came first of: the client's COM_QUIT (read, or inferred from a
//! 5-byte TLS record), an ERR followed by the close, a TLS close_notify or fatal alert, bytes
//! that are not TLS inside TLS, or the first FIN/RST (docs/design.md). Capture order decides; the
//! first FIN alone is kept as a separate fact because a clean MySQL close sends both FINs in
//! either order. Proxy legs, pairing across the proxy and incidents are the next step (issue 5).

pub mod explain;
pub mod incidents;
pub mod legs;
pub mod proxysql_log;

use crate::common::Side;
use crate::dissect::teardown::{self, QuitBasis, Teardown};
use crate::dissect::Carries;
use crate::event::Com;
/// The diagnosis data, defined below the stages that carry it (the summary holds a verdict).
pub use crate::model::diagnosis::{Confidence, Label, Pending, State, Verdict};
use crate::model::{CloseKind, Mark, Role, Summary};
use crate::mysql::Phase;
use legs::Leg;
use tls_parser::TlsAlertDescription;

/// What started a teardown, in order of precedence when two come in the same packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// The client's COM_QUIT.
    Quit,
    /// The server's ERR (followed by its close, or one that ends the session).
    Err,
    /// A close_notify or fatal alert.
    Alert,
    /// Bytes that are not TLS inside TLS.
    Plaintext,
    /// The first FIN or RST.
    Teardown,
}

/// The packet that started a teardown and why.
#[derive(Clone, Debug)]
pub struct Start {
    /// What kind of start.
    pub cause: Cause,
    /// In words.
    pub how: String,
    /// Side of the sender.
    pub side: Side,
    /// Where.
    pub at: crate::common::At,
    /// ERR code, or 0 for a close_notify.
    pub code: Option<u16>,
    /// How sure.
    pub confidence: Confidence,
    /// Why that sure.
    pub basis: &'static str,
}

/// ERR codes after which the server ends the session whoever sends the first FIN: connection
/// and login refusals, kills, shutdown, timeouts, network errors.
pub fn err_ends_session(code: u16) -> bool {
    matches!(
        code,
        1040 | 1043
            | 1045
            | 1049
            | 1053
            | 1077
            | 1129
            | 1130
            | 1152
            | 1153
            | 1154
            | 1155
            | 1156
            | 1157
            | 1158
            | 1159
            | 1160
            | 1161
            | 1184
            | 1251
            | 1927
            | 3159
            | 3169
            | 4031
    )
}

fn not_after(a: crate::common::At, first: Option<&teardown::First>) -> bool {
    first.is_none_or(|f| !teardown::before(f.seen.at, a))
}

/// Rule 1: what started the teardown — the earliest of the client's COM_QUIT, a server ERR that
/// ends the session (or is followed by the server's own close), a close_notify or fatal alert,
/// plaintext inside TLS, and the first FIN or RST; in one packet, in that order. Nothing after
/// the first FIN/RST counts: it is a reaction.
///
/// On MySQL connections an alert known only from its record (encrypted) does not start a close:
/// MySQL stacks close TLS quietly, so a 2-byte record before a FIN says little about intent
/// (rule 5 still uses it for what the client saw).
pub fn starter(t: &Teardown, mysql: bool) -> Option<Start> {
    let first = t.first.as_ref();
    let server_first = first.is_some_and(|f| f.seen.side != t.client);
    let mut c: Vec<Start> = Vec::new();
    if let Some(q) = t.quit.filter(|q| not_after(q.seen.at, first)) {
        let (cause, how, confidence, basis) = match q.basis {
            QuitBasis::Read => (Cause::Quit, "COM_QUIT".to_string(), Confidence::Certain, "COM_QUIT read"),
            QuitBasis::PlaintextInTls => (
                Cause::Plaintext,
                "plaintext COM_QUIT inside TLS".to_string(),
                Confidence::Certain,
                "plaintext COM_QUIT bytes read inside the TLS stream",
            ),
            QuitBasis::RecordSize if q.plaintext_len.is_some_and(|p| p.exact()) => (
                Cause::Quit,
                "COM_QUIT (inferred from the record size)".to_string(),
                Confidence::Probable,
                "the client's last TLS record holds exactly 5 bytes (a 1-byte command) and the server sent nothing after it",
            ),
            QuitBasis::RecordSize => (
                Cause::Quit,
                "COM_QUIT (possibly: the record size fits it)".to_string(),
                Confidence::Possible,
                "the client's last TLS record is small enough for a 1-byte command (CBC padding hides the exact size) and the server sent nothing after it",
            ),
        };
        c.push(Start {
            cause,
            how,
            side: q.seen.side,
            at: q.seen.at,
            code: None,
            confidence,
            basis,
        });
    }
    if let Some(e) = t.err.as_ref().filter(|e| not_after(e.seen.at, first)) {
        let ends = e.login || err_ends_session(e.code);
        if ends || (server_first && !e.client_spoke_after) {
            c.push(Start {
                cause: Cause::Err,
                how: format!("ERR {}", e.code),
                side: e.seen.side,
                at: e.seen.at,
                code: Some(e.code),
                confidence: Confidence::Certain,
                basis: if ends {
                    "an ERR that ends the session, read"
                } else {
                    "an ERR read, then the server's own close"
                },
            });
        }
    }
    if let Some(a) = t
        .alert
        .filter(|a| not_after(a.seen.at, first) && !(mysql && a.inferred))
    {
        let (how, code) = match (a.level, a.desc) {
            (_, Some(TlsAlertDescription::CloseNotify)) => ("close_notify".to_string(), Some(0)),
            (_, Some(d)) => (
                format!("fatal alert {}", crate::event::alert_name(d)),
                Some(u16::from(d.0)),
            ),
            _ => (
                "an encrypted alert (close_notify or fatal)".to_string(),
                None,
            ),
        };
        c.push(Start {
            cause: Cause::Alert,
            how,
            side: a.seen.side,
            at: a.seen.at,
            code,
            confidence: if a.inferred {
                Confidence::Probable
            } else {
                Confidence::Certain
            },
            basis: if a.inferred {
                "an alert record, known by its type or its 2-byte plaintext size, not read"
            } else {
                "the alert read"
            },
        });
    }
    if let Some(p) = t
        .plaintext
        .filter(|p| not_after(p.seen.at, first) && p.mysql != Some(Com::QUIT))
    {
        c.push(Start {
            cause: Cause::Plaintext,
            how: "plaintext bytes inside TLS".to_string(),
            side: p.seen.side,
            at: p.seen.at,
            code: None,
            confidence: Confidence::Certain,
            basis: "bytes that are not a TLS record, read",
        });
    }
    if let Some(f) = first {
        c.push(Start {
            cause: Cause::Teardown,
            how: if f.rst { "RST" } else { "FIN" }.to_string(),
            side: f.seen.side,
            at: f.seen.at,
            code: None,
            confidence: Confidence::Certain,
            basis: "the first FIN/RST",
        });
    }
    // Capture order, not (file, frame): with several files, frame numbers of two files say
    // nothing about which came first.
    c.into_iter()
        .min_by(|a, b| a.at.capture_order(&b.at).then(a.cause.cmp(&b.cause)))
}

/// Rule 2: where the protocol stood at the teardown.
pub fn state(s: &Summary) -> State {
    let t = &s.teardown;
    if t.first.is_none() {
        return State::Unknown;
    }
    let is_mysql = s.carries == Carries::Mysql;
    match t.phase {
        Some(Phase::Greeting | Phase::Login | Phase::Auth) if !t.logged_in => State::Handshake,
        Some(Phase::Tls) if !t.tls_negotiated || (!t.decrypted && t.client_records == 0) => {
            State::TlsHandshake
        }
        // TLS not decrypted: the login happened inside it, unseen.
        _ if t.in_flight.as_ref().is_some_and(|f| f.streaming) => State::Streaming,
        _ if t.in_flight.is_some() => State::RequestInFlight,
        _ if is_mysql && !t.decrypted && t.request_by_record_order().is_some() => {
            State::RequestInFlight
        }
        None if !is_mysql && s.tls.is_none() => State::Unknown,
        // MySQL, but nothing of it had arrived yet: before the greeting.
        None if is_mysql => State::Handshake,
        _ => State::Idle,
    }
}

/// Rule 3: the label of a close on no proxy leg, from its start and state.
pub fn direct_label(s: &Summary, start: Option<&Start>, state: State) -> Label {
    let is_mysql = s.carries == Carries::Mysql;
    let client = s.teardown.client;
    match (start, s.close.how) {
        (_, CloseKind::Open) => Label::StillOpen,
        (_, CloseKind::Refused) => Label::Refused,
        (None, _) => Label::Unknown,
        (Some(st), _) => {
            let by_client = st.side == client;
            match st.cause {
                Cause::Quit => Label::CleanQuit,
                Cause::Err => match st.code {
                    Some(4031) => Label::ServerIdleTimeout,
                    Some(1053 | 1927 | 3169) => Label::ServerKill,
                    _ if matches!(state, State::Handshake | State::TlsHandshake) => {
                        Label::HandshakeFailed
                    }
                    _ if s.teardown.err.as_ref().is_some_and(|e| e.login) => Label::HandshakeFailed,
                    _ => Label::ServerError,
                },
                Cause::Alert if st.code == Some(0) => Label::CleanClose,
                Cause::Alert if st.code.is_none() && state == State::TlsHandshake => {
                    Label::HandshakeFailed
                }
                Cause::Alert if st.code.is_none() => Label::CleanClose,
                Cause::Alert => Label::TlsFatalAlert,
                Cause::Plaintext => Label::PlaintextInTls,
                Cause::Teardown => match (state, by_client) {
                    // A client that leaves mid-handshake aborted it; a server that does failed it.
                    (State::Handshake | State::TlsHandshake, true) => Label::ClientAbort,
                    (State::Handshake | State::TlsHandshake, false) => Label::HandshakeFailed,
                    (_, true) if is_mysql => Label::ClientAbort,
                    (_, true) if s.close.how == CloseKind::Fin => Label::CleanClose,
                    (_, true) => Label::ClientAbort,
                    (State::RequestInFlight | State::Streaming, false) => Label::ServerKill,
                    (State::Idle, false) if is_mysql => Label::ServerIdleTimeout,
                    (_, false) if s.close.how == CloseKind::Fin => Label::CleanClose,
                    _ => Label::Unknown,
                },
            }
        }
    }
}

/// Rule 4: on a proxy leg, a close the proxy started is named for it.
pub fn leg_label(leg: Leg, label: Label, proxy_started: bool) -> Label {
    if !proxy_started {
        return label;
    }
    match (leg, label) {
        (_, Label::CleanQuit | Label::CleanClose | Label::PlaintextInTls | Label::ServerError) => {
            label
        }
        (_, Label::TlsFatalAlert | Label::StillOpen | Label::Refused) => label,
        (Leg::Backend, _) => Label::ProxyResetBackend,
        (Leg::Frontend, Label::HandshakeFailed) => Label::HandshakeFailed,
        (Leg::Frontend, _) => Label::ProxyClosedFrontend,
        _ => label,
    }
}

const TLS_EOF: &str = "(2026, 'TLS/SSL error: unexpected eof while reading') with OpenSSL 3, \
                       'Success (0)' with OpenSSL 1.1: the FIN came with no close_notify";

const ALERT_EOF: &str = "a TLS alert came with the close (a close_notify or a fatal alert, \
                         encrypted): an SSL error, or 2013 Lost connection";

/// The server side sent an alert record (read or encrypted) right before its FIN.
fn alert_before_close(s: &Summary) -> bool {
    let t = &s.teardown;
    match (t.alert, t.first) {
        (Some(a), Some(f)) => a.seen.side == f.seen.side && !teardown::before(f.seen.at, a.seen.at),
        _ => false,
    }
}

/// Rule 5: what the client application most likely reported.
pub fn client_sees(
    s: &Summary,
    label: Label,
    start: Option<&Start>,
    state: State,
) -> Option<&'static str> {
    let st = start?;
    let by_server_role = st.side != s.teardown.client;
    if !by_server_role {
        return None;
    }
    let tls = s.tls.is_some();
    let rst = st.cause == Cause::Teardown && st.how == "RST";
    match label {
        Label::ProxyClosedFrontend if st.cause == Cause::Teardown => Some(match (tls, rst) {
            (_, true) => "Connection reset by peer (104), or 2013 at the next read",
            (true, false) if alert_before_close(s) => ALERT_EOF,
            (true, false) => TLS_EOF,
            (false, false) => "2013, Lost connection to server during query",
        }),
        Label::ServerKill | Label::ServerIdleTimeout | Label::Unknown => {
            Some(match (tls, rst, state) {
                (_, true, _) => "Connection reset by peer (104), or 2013/2006 at the next read",
                (true, false, _) if st.cause == Cause::Teardown && alert_before_close(s) => {
                    ALERT_EOF
                }
                (true, false, _) if st.cause == Cause::Teardown => TLS_EOF,
                (true, false, _) => "an error for the close, no TLS error",
                (false, false, State::RequestInFlight | State::Streaming) => {
                    "2013, Lost connection to server during query"
                }
                (false, false, _) => "2006, Server has gone away (at the next query)",
            })
        }
        Label::ServerError | Label::HandshakeFailed => Some(match st.cause {
            Cause::Err => "the ERR's own code and message",
            _ if state == State::TlsHandshake => {
                "a TLS error (2026): the connection closed during the TLS handshake"
            }
            _ => {
                "2013, Lost connection to server at 'handshake' (the server closed before the \
                 login finished)"
            }
        }),
        _ => None,
    }
}

/// The request in flight at the teardown: read, or (undecrypted TLS) judged by record order.
pub fn pending(s: &Summary, start: Option<&Start>) -> Option<Pending> {
    let t = &s.teardown;
    if let Some(f) = &t.in_flight {
        return Some(Pending {
            command: Some(f.command.to_string()),
            text: f.text.clone(),
            frame: f.frame,
            inferred: false,
        });
    }
    if start.is_some_and(|st| st.cause == Cause::Quit) || s.carries != Carries::Mysql {
        return None;
    }
    if t.decrypted || !t.logged_in && t.phase != Some(Phase::Tls) {
        return None;
    }
    t.request_by_record_order().map(|r| Pending {
        command: None,
        text: None,
        frame: r.seen.frame,
        inferred: true,
    })
}

/// The verdict for a finished connection on `leg` (with the leg's own confidence): the proxy's
/// side of a frontend or backend connection is named `proxy`. A function of the recorded
/// teardown state alone.
pub fn verdict(s: &Summary, leg: Leg, leg_confidence: Confidence) -> Verdict {
    let t = &s.teardown;
    let start = starter(t, s.carries == Carries::Mysql);
    let state = state(s);
    let open = s.close.how == CloseKind::Open;
    let start = if open { None } else { start };
    let label = direct_label(s, start.as_ref(), state);
    let mut in_flight = if open {
        None
    } else {
        pending(s, start.as_ref())
    };
    let mut state = state;
    // Across the proxy: the frontend request this backend relayed was still unanswered.
    if let (None, Some(c), Leg::Backend) = (&in_flight, s.cut, leg) {
        if !open && state == State::Idle {
            in_flight = Some(Pending {
                command: None,
                text: None,
                frame: c.relayed_frame,
                inferred: true,
            });
            state = State::RequestInFlight;
        }
    }
    let role_of = |side: Side| {
        if side == t.client {
            Role::Client
        } else {
            Role::Server
        }
    };
    let proxy_role = match leg {
        Leg::Frontend => Some(Role::Server),
        Leg::Backend => Some(Role::Client),
        _ => None,
    };
    let started_by = start.as_ref().map(|st| role_of(st.side));
    let proxy_started = proxy_role.is_some() && proxy_role == started_by;
    let label = leg_label(leg, label, proxy_started);
    let closed_by = if proxy_started {
        Some(Role::Proxy)
    } else {
        started_by
    };
    let client_sees = client_sees(s, label, start.as_ref(), state);
    let mut confidence = start
        .as_ref()
        .map_or(Confidence::Certain, |st| st.confidence);
    let mut basis = start
        .as_ref()
        .map_or("no FIN or RST yet".to_string(), |st| st.basis.to_string());
    if in_flight.as_ref().is_some_and(|p| p.inferred) && confidence > Confidence::Probable {
        confidence = Confidence::Probable;
        basis.push_str("; the request in flight judged by TLS record order");
    }
    if proxy_started && leg_confidence < confidence {
        confidence = leg_confidence;
        basis.push_str("; the leg is inferred");
    }
    let gaps = s.gaps.c2s.count + s.gaps.s2c.count;
    if (gaps > 0 || s.mid_stream) && confidence == Confidence::Certain && state != State::Unknown {
        confidence = Confidence::Probable;
        basis.push_str("; part of the connection was not captured");
    }
    let mark = start.as_ref().map(|st| Mark {
        by: if proxy_started {
            Role::Proxy
        } else {
            role_of(st.side)
        },
        from: if st.side == t.client {
            s.client
        } else {
            s.server
        },
        at: s.point(st.at),
    });
    let idle = |role: usize| {
        let st = start.as_ref()?;
        let last = t.last_spoke.get(role).copied().flatten()?;
        (!teardown::before(st.at, last.at)).then(|| st.at.ts.nanos_since(last.at.ts) as f64 / 1e6)
    };
    let mut evidence: Vec<u64> = Vec::new();
    let close = &s.close;
    for f in [
        in_flight.as_ref().map(|p| p.frame),
        start.as_ref().map(|st| st.at.frame),
        close.first_fin.map(|m| m.at.frame),
        close.peer_fin.map(|m| m.at.frame),
        close.first_rst.map(|m| m.at.frame),
    ]
    .into_iter()
    .flatten()
    {
        if !evidence.contains(&f) {
            evidence.push(f);
        }
    }
    Verdict {
        label,
        closed_by: if open { None } else { closed_by },
        how: start
            .as_ref()
            .map_or_else(|| "-".to_string(), |st| st.how.clone()),
        at: mark,
        state,
        in_flight,
        idle_ms: crate::model::Dirs {
            c2s: idle(0),
            s2c: idle(1),
        },
        client_sees,
        evidence,
        confidence,
        basis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::At;
    use crate::dissect::teardown::{AlertSeen, ErrSeen, First, Quit, Seen};
    use crate::time::Timestamp;

    /// Side A is the client.
    fn seen(side: Side, frame: u64) -> Seen {
        Seen {
            side,
            at: At {
                ts: Timestamp(frame as i64 * 1000),
                frame,
                file: 0,
            },
            frame,
        }
    }

    fn closed_by(side: Side, frame: u64, rst: bool) -> Teardown {
        Teardown {
            first: Some(First {
                seen: seen(side, frame),
                rst,
            }),
            frozen: true,
            ..Teardown::default()
        }
    }

    fn err(frame: u64, code: u16, login: bool, client_spoke_after: bool) -> Option<ErrSeen> {
        Some(ErrSeen {
            seen: seen(Side::B, frame),
            code,
            login,
            client_spoke_after,
        })
    }

    #[test]
    fn an_ordinary_err_then_the_clients_fin_is_the_clients_close() {
        let mut t = closed_by(Side::A, 10, false);
        t.err = err(8, 1146, false, false);
        let st = starter(&t, true).unwrap();
        assert_eq!((st.cause, st.side), (Cause::Teardown, Side::A));
    }

    #[test]
    fn an_err_then_the_servers_own_close_starts_it() {
        let mut t = closed_by(Side::B, 10, false);
        t.err = err(8, 1146, false, false);
        let st = starter(&t, true).unwrap();
        assert_eq!(
            (st.cause, st.side, st.code),
            (Cause::Err, Side::B, Some(1146))
        );
        // Unless the client sent a command after it: an ordinary reply.
        t.err = err(8, 1146, false, true);
        assert_eq!(starter(&t, true).unwrap().cause, Cause::Teardown);
    }

    #[test]
    fn an_err_that_ends_the_session_starts_it_whoever_fins_first() {
        for (code, login) in [(1045, true), (1130, true), (1927, false), (4031, false)] {
            let mut t = closed_by(Side::A, 10, false);
            t.err = err(8, code, login, false);
            let st = starter(&t, true).unwrap();
            assert_eq!((st.cause, st.side), (Cause::Err, Side::B), "{code}");
        }
    }

    #[test]
    fn nothing_after_the_first_fin_starts_the_close() {
        let mut t = closed_by(Side::B, 10, false);
        // The client's fatal alert answers the server's FIN.
        t.alert = Some(AlertSeen {
            seen: seen(Side::A, 11),
            level: Some(tls_parser::TlsAlertSeverity::Fatal),
            desc: Some(TlsAlertDescription::DecodeError),
            inferred: false,
        });
        let st = starter(&t, true).unwrap();
        assert_eq!(
            (st.cause, st.side, st.how.as_str()),
            (Cause::Teardown, Side::B, "FIN")
        );
    }

    #[test]
    fn a_quit_in_the_fin_segment_wins_over_the_fin() {
        let mut t = closed_by(Side::A, 10, false);
        t.quit = Some(Quit {
            seen: seen(Side::A, 10),
            basis: QuitBasis::Read,
            plaintext_len: None,
        });
        let st = starter(&t, true).unwrap();
        assert_eq!(
            (st.cause, st.confidence),
            (Cause::Quit, Confidence::Certain)
        );
        // Inferred from a CBC record size: possible only.
        t.quit = Some(Quit {
            seen: seen(Side::A, 9),
            basis: QuitBasis::RecordSize,
            plaintext_len: Some(crate::event::PlainLen { lo: 0, hi: 11 }),
        });
        assert_eq!(starter(&t, true).unwrap().confidence, Confidence::Possible);
    }

    #[test]
    fn an_encrypted_alert_starts_a_close_only_outside_mysql() {
        let mut t = closed_by(Side::B, 10, false);
        t.alert = Some(AlertSeen {
            seen: seen(Side::B, 10),
            level: None,
            desc: None,
            inferred: true,
        });
        assert_eq!(starter(&t, true).unwrap().cause, Cause::Teardown);
        let st = starter(&t, false).unwrap();
        assert_eq!(
            (st.cause, st.confidence),
            (Cause::Alert, Confidence::Probable)
        );
    }

    #[test]
    fn a_close_the_proxy_started_is_named_for_its_leg() {
        assert_eq!(
            leg_label(Leg::Backend, Label::ClientAbort, true),
            Label::ProxyResetBackend
        );
        assert_eq!(
            leg_label(Leg::Frontend, Label::ServerKill, true),
            Label::ProxyClosedFrontend
        );
        assert_eq!(
            leg_label(Leg::Frontend, Label::HandshakeFailed, true),
            Label::HandshakeFailed
        );
        // A COM_QUIT is clean whoever sends it; the other side's close keeps its label.
        assert_eq!(
            leg_label(Leg::Backend, Label::CleanQuit, true),
            Label::CleanQuit
        );
        assert_eq!(
            leg_label(Leg::Backend, Label::ServerKill, false),
            Label::ServerKill
        );
        assert_eq!(
            leg_label(Leg::Direct, Label::ServerKill, true),
            Label::ServerKill
        );
    }

    #[test]
    fn session_ending_errors_are_the_connection_and_kill_codes() {
        for c in [1040, 1045, 1130, 1927, 3169, 4031] {
            assert!(err_ends_session(c), "{c}");
        }
        for c in [1064, 1146, 1062, 1205, 2013] {
            assert!(!err_ends_session(c), "{c}");
        }
    }
}
