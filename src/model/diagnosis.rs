//! The diagnosis a connection summary carries: the verdict on its close and its leg around a
//! proxy. Plain data (with their serialisation and names) below the diagnose stage, which
//! computes them, so that [`Summary`](super::Summary) can hold them without importing it.

use serde::Serialize;

use super::{Dirs, Mark, Role};

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

/// How sure a verdict, a leg or a signature is, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Inferred from indirect evidence (timing, a size that fits more than one thing).
    Possible,
    /// Inferred from evidence that rarely misleads (AEAD record sizes, request pairing).
    Probable,
    /// Read from the packets.
    Certain,
}

impl Confidence {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Possible => "possible",
            Confidence::Probable => "probable",
            Confidence::Certain => "certain",
        }
    }
}

/// The verdict on one close.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// Label.
    pub label: Label,
    /// Role that started the teardown (None while still open).
    pub closed_by: Option<Role>,
    /// What started it, in words (e.g. `COM_QUIT`, `FIN`, `ERR 4031`, `fatal alert decode_error`);
    /// `-` while still open.
    pub how: String,
    /// The packet that started it.
    pub at: Option<Mark>,
    /// Protocol state then.
    pub state: State,
    /// The request in flight, if any.
    pub in_flight: Option<Pending>,
    /// Milliseconds each side had been silent (no MySQL or TLS message) when the teardown
    /// started.
    pub idle_ms: Dirs<Option<f64>>,
    /// What the client application most likely reported.
    pub client_sees: Option<&'static str>,
    /// Frames that show it: the starter, the first FIN and RST, the peer's FIN, the request.
    pub evidence: Vec<u64>,
    /// How sure the verdict is.
    pub confidence: Confidence,
    /// What set the confidence.
    pub basis: String,
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

/// The leg of a MySQL connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Leg {
    /// Application → proxy.
    Frontend,
    /// Proxy → MySQL server.
    Backend,
    /// Application → MySQL server, no proxy in between.
    Direct,
    /// Not MySQL, or not decided.
    Unknown,
}

/// How two requests were matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// The same query text.
    Text,
    /// The same size, once each leg's TLS record overhead is taken off.
    Size,
}

/// One request relayed across the proxy, as one connection sees it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Relay {
    /// Frame of this connection's request.
    pub frame: u64,
    /// Its file (omitted for the first).
    #[serde(skip_serializing_if = "is_zero")]
    pub file: usize,
    /// The connection on the other leg.
    pub conn: u64,
    /// Frame of the request there.
    pub peer_frame: u64,
    /// Its file (omitted for the first).
    #[serde(skip_serializing_if = "is_zero")]
    pub peer_file: usize,
    /// How they were matched.
    pub by: Match,
    /// This connection is the frontend (its request was relayed as the peer's).
    pub frontend: bool,
    /// A second relay of one frontend request: the proxy retried it.
    pub retry: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A frontend request left unanswered when the proxy closed the backend carrying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Cut {
    /// The frontend connection.
    pub conn: u64,
    /// Its request's frame.
    pub frame: u64,
    /// The frame of the relayed copy on the backend.
    pub relayed_frame: u64,
}
