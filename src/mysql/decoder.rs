//! The MySQL protocol state machine of one connection.

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthSwitchRequest, CommonOkPacket, ErrPacket, HandshakePacket, HandshakeResponse,
    OkPacketDeserializer, StmtPacket,
};

use super::compress::{self, Algorithm, Compression, Inflater};
use super::framer::{Framer, Note, Packet};
use crate::common::{At, Side};
use crate::event::{Com, Command, Event, Kind, QueryAttr};

const CLIENT_PROTOCOL_41: CapabilityFlags = CapabilityFlags::CLIENT_PROTOCOL_41;
const CLIENT_SSL: CapabilityFlags = CapabilityFlags::CLIENT_SSL;
const CLIENT_SECURE_CONNECTION: CapabilityFlags = CapabilityFlags::CLIENT_SECURE_CONNECTION;
const CLIENT_PLUGIN_AUTH: CapabilityFlags = CapabilityFlags::CLIENT_PLUGIN_AUTH;
const CLIENT_DEPRECATE_EOF: CapabilityFlags = CapabilityFlags::CLIENT_DEPRECATE_EOF;
/// MySQL 8.0.23+: COM_QUERY and COM_STMT_EXECUTE carry query attributes.
const CLIENT_QUERY_ATTRIBUTES: CapabilityFlags = CapabilityFlags::CLIENT_QUERY_ATTRIBUTES;
/// COM_STMT_EXECUTE flag: a parameter count (placeholders + attributes) follows.
const PARAMETER_COUNT_AVAILABLE: u8 = 0x08;
const SERVER_MORE_RESULTS_EXISTS: StatusFlags = StatusFlags::SERVER_MORE_RESULTS_EXISTS;
/// MariaDB extended capability: result-set metadata may be left out when the client caches it.
const MARIADB_CACHE_METADATA: u32 = 0x0000_0010;
const SSL_REQUEST_LEN: u64 = 32;
/// Query text kept per command (characters beyond are cut, with an ellipsis).
pub const TEXT_MAX: usize = 200;

const COM_QUIT: Com = Com::of(Command::COM_QUIT);
const COM_INIT_DB: Com = Com::of(Command::COM_INIT_DB);
const COM_QUERY: Com = Com::of(Command::COM_QUERY);
const COM_FIELD_LIST: Com = Com::of(Command::COM_FIELD_LIST);
const COM_STATISTICS: Com = Com::of(Command::COM_STATISTICS);
const COM_CHANGE_USER: Com = Com::of(Command::COM_CHANGE_USER);
const COM_BINLOG_DUMP: Com = Com::of(Command::COM_BINLOG_DUMP);
const COM_STMT_PREPARE: Com = Com::of(Command::COM_STMT_PREPARE);
const COM_STMT_EXECUTE: Com = Com::of(Command::COM_STMT_EXECUTE);
const COM_STMT_SEND_LONG_DATA: Com = Com::of(Command::COM_STMT_SEND_LONG_DATA);
const COM_STMT_CLOSE: Com = Com::of(Command::COM_STMT_CLOSE);
const COM_STMT_RESET: Com = Com::of(Command::COM_STMT_RESET);
const COM_STMT_FETCH: Com = Com::of(Command::COM_STMT_FETCH);
const COM_BINLOG_DUMP_GTID: Com = Com::of(Command::COM_BINLOG_DUMP_GTID);
const COM_RESET_CONNECTION: Com = Com::of(Command::COM_RESET_CONNECTION);

/// First payload byte of an OK packet (and of a binlog event in a replication stream).
const OK: u8 = 0x00;
/// First payload byte of an ERR packet.
const ERR: u8 = 0xff;
/// First payload byte of an EOF packet (or of an auth switch request during the login).
const EOF: u8 = 0xfe;
/// Response to a query asking for the client's file (LOAD DATA LOCAL INFILE).
const LOCAL_INFILE: u8 = 0xfb;
/// Auth more data (caching_sha2_password, sha256_password).
const AUTH_MORE_DATA: u8 = 0x01;
/// caching_sha2_password, after AUTH_MORE_DATA: the scramble matched the server's cache.
const FAST_AUTH_SUCCESS: u8 = 0x03;
/// caching_sha2_password, after AUTH_MORE_DATA: the password must be sent (TLS or RSA).
const PERFORM_FULL_AUTHENTICATION: u8 = 0x04;
/// caching_sha2_password client request for the server's RSA public key.
const REQUEST_PUBLIC_KEY: u8 = 0x02;
/// Prepared statements remembered (id and placeholder count) to find the attributes of an
/// execute; the oldest is forgotten beyond.
const STMTS_MAX: usize = 256;

/// Where in the protocol the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the server's greeting.
    Greeting,
    /// Greeting seen; waiting for the handshake response or an SSLRequest.
    Login,
    /// Handshake response sent; authentication going on.
    Auth,
    /// Logged in: commands and responses.
    Command,
    /// The client asked for TLS: the rest is TLS records.
    Tls,
}

/// A request whose response has not finished.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct InFlight {
    /// Command name.
    pub command: &'static str,
    /// Query text, when readable.
    pub text: Option<String>,
    /// Frame of the request.
    pub frame: u64,
    /// File index of that frame.
    #[serde(skip)]
    pub at: Option<At>,
    /// The response had started (a result set was streaming).
    pub streaming: bool,
}

/// What the decoder learnt about the connection.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Facts {
    /// Server version from the greeting.
    pub server_version: Option<String>,
    /// Connection (thread) id from the greeting.
    pub thread_id: Option<u32>,
    /// Server capability flags.
    #[serde(serialize_with = "ser_caps")]
    pub server_capabilities: Option<CapabilityFlags>,
    /// MariaDB extended capabilities both sides announced (greeting and handshake response).
    pub mariadb_capabilities: u32,
    /// Client capability flags (handshake response or SSLRequest).
    #[serde(serialize_with = "ser_caps")]
    pub client_capabilities: Option<CapabilityFlags>,
    /// User (plaintext logins); after a successful COM_CHANGE_USER, the new user.
    pub user: Option<String>,
    /// The user before the last COM_CHANGE_USER that changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_user: Option<String>,
    /// Replication events streamed after a COM_BINLOG_DUMP(_GTID).
    #[serde(skip_serializing_if = "is_zero")]
    pub binlog_events: u64,
    /// Default database at login.
    pub database: Option<String>,
    /// Auth plugin in use.
    pub auth_plugin: Option<String>,
    /// The client sent an SSLRequest.
    pub ssl_request: bool,
    /// Login result: true OK, false ERR, None unknown.
    pub login_ok: Option<bool>,
    /// Commands sent.
    pub commands: u64,
    /// ERR packets received.
    pub errors: u64,
    /// The last ERR: code and message.
    pub last_error: Option<(u16, String)>,
    /// The client's COM_QUIT, if sent.
    pub quit_frame: Option<u64>,
    /// The request in flight, if any.
    pub in_flight: Option<InFlight>,
    /// Times the framing was lost.
    pub desyncs: u64,
    /// Where the protocol was when decoding stopped.
    pub phase: Option<Phase>,
    /// The compressed protocol, when in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

/// Capability flags as their number, as reports wrote them before they had a type.
fn ser_caps<S: serde::Serializer>(c: &Option<CapabilityFlags>, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&c.map(|c| c.bits()), s)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resp {
    Idle,
    First(Com),
    Columns {
        cmd: Com,
        left: u64,
        cols: u64,
    },
    ColumnsEof {
        cmd: Com,
        cols: u64,
    },
    Rows {
        cmd: Com,
        cols: u64,
        rows: u64,
    },
    Definitions {
        left: u64,
    },
    FieldList,
    ChangeUser,
    /// After COM_BINLOG_DUMP(_GTID): replication events until an EOF or ERR.
    Binlog {
        started: bool,
    },
}

/// The last auth step the server asked for: names the client's next auth packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthStep {
    None,
    Switch,
    FullAuth,
    PublicKey,
}

/// User, database and auth plugin a COM_CHANGE_USER asks for, applied on its OK.
type NewUser = (String, Option<String>, Option<String>);

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The decoder of one MySQL connection.
pub struct Decoder {
    server: Side,
    phase: Phase,
    framers: [Framer; 2],
    resp: Resp,
    /// Set once the login negotiated the compressed protocol (or it was recognised mid-stream).
    compressed: Option<[Inflater; 2]>,
    /// Picked up mid-stream: per direction, whether its bytes were found compressed (None: not
    /// judged yet). See [`compress`] for the rules.
    mid_stream: Option<[Option<bool>; 2]>,
    /// zstd level from the handshake response.
    zstd_level: Option<u8>,
    /// After an SSLRequest, decrypted TLS application data is being decoded.
    inside_tls: bool,
    /// Prepared statements: id and placeholder count (at most [`STMTS_MAX`]).
    stmts: Vec<(u32, u16)>,
    /// The COM_CHANGE_USER waiting for its OK.
    pending_user: Option<NewUser>,
    /// Where the auth exchange is.
    auth_step: AuthStep,
    /// LOCAL INFILE asked for: file bytes and packets the client sent so far.
    infile: Option<(u64, u64)>,
    /// What is known so far.
    pub facts: Facts,
}

impl Decoder {
    /// A decoder for a connection whose server is `server` (side index), starting at `phase`
    /// (`Greeting` normally; `Command` for a connection picked up mid-stream).
    pub fn new(server: Side, phase: Phase) -> Decoder {
        Decoder {
            server,
            phase,
            framers: [Framer::default(), Framer::default()],
            resp: Resp::Idle,
            compressed: None,
            mid_stream: (phase == Phase::Command).then_some([None, None]),
            zstd_level: None,
            inside_tls: false,
            stmts: Vec::new(),
            pending_user: None,
            auth_step: AuthStep::None,
            infile: None,
            facts: Facts::default(),
        }
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Heap held in buffers that grow with what the peer sends (compressed packets; the
    /// framers keep a bounded prefix).
    pub fn buffered(&self) -> usize {
        self.compressed
            .as_ref()
            .map_or(0, |c| c.iter().map(Inflater::buffered).sum())
    }

    /// Frees those buffers (the memory budget is full); true if anything was held.
    pub fn shed(&mut self) -> bool {
        let mut any = false;
        if let Some(c) = self.compressed.as_mut() {
            for i in c.iter_mut() {
                any |= i.shed();
            }
        }
        any
    }

    /// Stream bytes from `side`. Returns `Some(n)` when the protocol switched to TLS after `n`
    /// bytes of `data`: the rest belongs to the TLS decoder.
    pub fn data(&mut self, side: Side, data: &[u8], at: At, out: &mut Vec<Event>) -> Option<usize> {
        if self.phase == Phase::Tls || self.inside_tls {
            return Some(0);
        }
        let request = side != self.server;
        if let Some(dirs) = self.mid_stream.as_mut() {
            if dirs[side].is_none() {
                dirs[side] = match dirs[side.other()] {
                    // Wait for a slice that starts with a compressed packet.
                    Some(true) => compress::starts_compressed(data, request).then_some(true),
                    Some(false) => Some(false),
                    // Neither judged yet: only an exact chain of either kind decides (the
                    // dissector hands over a client slice that is one).
                    None if compress::looks_compressed(data, request) => Some(true),
                    None => super::framer::exact_chain(data, request).then_some(false),
                };
                match dirs[side] {
                    None => return None,
                    Some(true) if self.compressed.is_none() => self.start_compressed(None, true),
                    _ => {}
                }
            }
        }
        if let Some(mut inflaters) = self.compressed.take() {
            let inf = &mut inflaters[side];
            if inf.broken() && compress::starts_compressed(data, request) {
                // The framing is found again at a compressed packet; the MySQL packets inside
                // start afresh.
                *inf = Inflater::new(inf.algorithm());
                self.framers[side].reset();
                out.push(Event {
                    at,
                    side,
                    kind: Kind::Resync,
                });
            }
            let was_broken = inf.broken();
            inf.feed(data, &mut |inner| {
                self.plain(side, inner, at, out);
            });
            if inf.broken() && !was_broken {
                self.facts.desyncs += 1;
                // As after a plain desync: whatever was expected is unknowable now.
                self.resp = Resp::Idle;
                out.push(Event {
                    at,
                    side,
                    kind: Kind::Desync {
                        reason: "compressed protocol: framing or compressed payload broken",
                    },
                });
            }
            self.compressed = Some(inflaters);
            return None;
        }
        let used = self.plain(side, data, at, out);
        if self.phase == Phase::Tls {
            return Some(used);
        }
        if used < data.len() {
            // The login OK turned the compressed protocol on mid-slice.
            let rest = data.get(used..).unwrap_or(&[]);
            return self.data(side, rest, at, out);
        }
        None
    }

    /// MySQL bytes decrypted from the TLS stream that followed the SSLRequest.
    pub fn decrypted(&mut self, side: Side, data: &[u8], at: At, out: &mut Vec<Event>) {
        if self.phase == Phase::Tls {
            // The handshake response travels inside TLS.
            self.phase = Phase::Login;
            self.inside_tls = true;
        }
        if self.inside_tls {
            self.plain(side, data, at, out);
        }
    }

    /// Uncompressed protocol bytes; returns how many were consumed before a protocol switch.
    fn plain(&mut self, side: Side, data: &[u8], at: At, out: &mut Vec<Event>) -> usize {
        let request = side != self.server;
        let mut framer = std::mem::take(&mut self.framers[side]);
        let mut notes = Vec::new();
        let compressed_before = self.compressed.is_some();
        let used = framer.feed(
            data,
            at,
            request,
            &mut |p| {
                self.packet(side, p, out);
                self.phase != Phase::Tls && self.compressed.is_some() == compressed_before
            },
            &mut |n| notes.push(n),
        );
        self.framers[side] = framer;
        self.notes(side, &notes, at, out);
        used
    }

    /// `n` bytes from `side` were never captured.
    pub fn gap(&mut self, side: Side, n: u64, at: At, out: &mut Vec<Event>) {
        if self.mid_stream.is_some_and(|d| d[side].is_none()) {
            // Not judged yet: nothing is being followed.
            return;
        }
        if let Some(inf) = self.compressed.as_mut() {
            if !inf[side].broken() {
                inf[side].gap();
                self.facts.desyncs += 1;
                self.resp = Resp::Idle;
                out.push(Event {
                    at,
                    side,
                    kind: Kind::Desync {
                        reason: "a gap in the compressed protocol",
                    },
                });
            }
            return;
        }
        let mut framer = std::mem::take(&mut self.framers[side]);
        let mut notes = Vec::new();
        framer.gap(n, &mut |n| notes.push(n), &mut |p| {
            self.packet(side, p, out);
            true
        });
        self.framers[side] = framer;
        self.notes(side, &notes, at, out);
    }

    fn notes(&mut self, side: Side, notes: &[Note], at: At, out: &mut Vec<Event>) {
        for n in notes {
            let kind = match n {
                Note::Desync => {
                    self.facts.desyncs += 1;
                    // Whatever was expected is unknowable now.
                    self.resp = Resp::Idle;
                    Kind::Desync {
                        reason: "a gap cut a packet header",
                    }
                }
                Note::Resync => Kind::Resync,
            };
            out.push(Event { at, side, kind });
        }
    }

    fn packet(&mut self, side: Side, p: Packet<'_>, out: &mut Vec<Event>) {
        let from_server = side == self.server;
        let ev = |kind| Event {
            at: p.at,
            side,
            kind,
        };
        match (self.phase, from_server) {
            (Phase::Greeting, true) => {
                if let Some(k) = self.greeting(&p) {
                    out.push(ev(k));
                }
            }
            (Phase::Login, false) => {
                let caps = CapabilityFlags::from_bits_retain(le32(p.payload, 0).unwrap_or(0));
                self.facts.client_capabilities = Some(caps);
                if p.len == SSL_REQUEST_LEN && caps.contains(CLIENT_SSL) {
                    self.facts.ssl_request = true;
                    self.phase = Phase::Tls;
                    out.push(ev(Kind::SslRequest { capabilities: caps }));
                } else {
                    out.push(ev(self.handshake_response(&p, caps)));
                    self.phase = Phase::Auth;
                }
            }
            (Phase::Login, true) | (Phase::Auth, true) => self.auth_reply(&p, out, side),
            (Phase::Auth, false) => out.push(ev(self.auth_response(&p))),
            (Phase::Command, false) => self.command(&p, out, side),
            (Phase::Command, true) => self.response(&p, out, side),
            _ => {}
        }
    }

    fn greeting(&mut self, p: &Packet<'_>) -> Option<Kind> {
        match p.first()? {
            ERR => {
                let (code, _, message) = parse_err(p.payload, true);
                self.facts.last_error = Some((code, message.clone()));
                self.facts.errors += 1;
                self.facts.login_ok = Some(false);
                Some(Kind::GreetingErr { code, message })
            }
            0x0a => {
                self.phase = Phase::Login;
                let g = parse_greeting(p.payload);
                self.facts.server_version = Some(g.version.clone());
                self.facts.thread_id = Some(g.thread_id);
                self.facts.server_capabilities = Some(g.capabilities);
                self.facts.mariadb_capabilities = g.mariadb_capabilities;
                self.facts.auth_plugin = Some(g.auth_plugin.clone()).filter(|s| !s.is_empty());
                Some(Kind::Greeting {
                    version: g.version,
                    thread_id: g.thread_id,
                    capabilities: g.capabilities,
                    mariadb_capabilities: g.mariadb_capabilities,
                    auth_plugin: g.auth_plugin,
                })
            }
            _ => None,
        }
    }

    fn handshake_response(&mut self, p: &Packet<'_>, caps: CapabilityFlags) -> Kind {
        let parsed = parse_handshake_response(p.payload);
        let (user, database, auth_plugin) = match parsed {
            Some(r) => r,
            None => (
                lossy(p.payload.get(32..).and_then(cstr).unwrap_or(&[])),
                None,
                None,
            ),
        };
        // MariaDB puts its extended capabilities in the last 4 reserved bytes when CLIENT_MYSQL
        // (bit 0, MySQL's CLIENT_LONG_PASSWORD) is clear.
        if !caps.contains(CapabilityFlags::CLIENT_LONG_PASSWORD) {
            self.facts.mariadb_capabilities &= le32(p.payload, 28).unwrap_or(0);
        } else {
            self.facts.mariadb_capabilities = 0;
        }
        self.zstd_level = compress::zstd_level(p.payload);
        self.facts.user = Some(user.clone());
        self.facts.database = database.clone();
        if auth_plugin.is_some() {
            self.facts.auth_plugin = auth_plugin.clone();
        }
        Kind::HandshakeResponse {
            user,
            database,
            auth_plugin,
            capabilities: caps,
        }
    }

    fn caps(&self) -> CapabilityFlags {
        let none = CapabilityFlags::empty();
        self.facts.server_capabilities.unwrap_or(none)
            & self.facts.client_capabilities.unwrap_or(none)
    }

    fn auth_reply(&mut self, p: &Packet<'_>, out: &mut Vec<Event>, side: Side) {
        let ev = |kind| Event {
            at: p.at,
            side,
            kind,
        };
        match p.first() {
            Some(OK) => {
                let (affected_rows, status) = parse_ok(p.payload, self.caps());
                self.facts.login_ok = Some(true);
                out.push(ev(Kind::Ok {
                    affected_rows,
                    status,
                    login: true,
                }));
                self.phase = Phase::Command;
                if let Some(algo) = Algorithm::negotiated(self.caps()) {
                    self.start_compressed(Some(algo), false);
                }
            }
            Some(ERR) => {
                self.facts.login_ok = Some(false);
                out.push(ev(self.err(p, false, true)));
            }
            Some(EOF) => {
                let plugin = parse_auth_switch(p.payload);
                self.facts.auth_plugin = Some(plugin.clone());
                self.auth_step = AuthStep::Switch;
                out.push(ev(Kind::AuthSwitch { plugin }));
            }
            Some(AUTH_MORE_DATA) => out.push(ev(self.auth_more_data(p))),
            _ => {}
        }
    }

    /// The server's AUTH_MORE_DATA: what it says, and what the client's next packet will be.
    fn auth_more_data(&mut self, p: &Packet<'_>) -> Kind {
        let what = match (p.payload.get(1), p.len) {
            (Some(&FAST_AUTH_SUCCESS), 2) => Some("fast_auth_success"),
            (Some(&PERFORM_FULL_AUTHENTICATION), 2) => {
                self.auth_step = AuthStep::FullAuth;
                Some("perform_full_authentication")
            }
            _ if p
                .payload
                .get(1..)
                .is_some_and(|k| k.starts_with(b"-----BEGIN")) =>
            {
                self.auth_step = AuthStep::PublicKey;
                Some("public_key")
            }
            _ => None,
        };
        Kind::AuthMoreData { what }
    }

    /// A client auth packet after the handshake response (or the COM_CHANGE_USER).
    fn auth_response(&mut self, p: &Packet<'_>) -> Kind {
        let what = if p.len == 1 && p.first() == Some(REQUEST_PUBLIC_KEY) {
            "public_key_request"
        } else {
            match self.auth_step {
                AuthStep::Switch => "auth_switch_response",
                AuthStep::FullAuth | AuthStep::PublicKey => "password",
                AuthStep::None => "auth_data",
            }
        };
        Kind::AuthResponse {
            what,
            len: p.len.min(u64::from(u32::MAX)) as u32,
        }
    }

    /// Both sides' capabilities are known (the login was seen).
    fn caps_known(&self) -> bool {
        self.facts.server_capabilities.is_some() && self.facts.client_capabilities.is_some()
    }

    fn err(&mut self, p: &Packet<'_>, unsolicited: bool, login: bool) -> Kind {
        let protocol41 = if self.caps_known() {
            self.caps().contains(CLIENT_PROTOCOL_41)
        } else {
            // No login seen: every server since 4.1 sends `#` and a 5-character SQLSTATE after
            // the code; a pre-4.1 message starting with `#` and 5 such characters is unheard of.
            has_sqlstate_marker(p.payload)
        };
        let (code, sqlstate, message) = parse_err(p.payload, protocol41);
        self.facts.errors += 1;
        self.facts.last_error = Some((code, message.clone()));
        Kind::Err {
            code,
            sqlstate,
            message,
            unsolicited,
            login,
        }
    }

    fn command(&mut self, p: &Packet<'_>, out: &mut Vec<Event>, side: Side) {
        if p.seq != 0 {
            self.client_continuation(p, out, side);
            return;
        }
        let Some(byte) = p.first() else { return };
        let cmd = Com(byte);
        self.facts.commands += 1;
        self.infile = None;
        let body = p.payload.get(1..).unwrap_or(&[]);
        let mut attrs = Vec::new();
        let mut user = None;
        let text = match cmd {
            COM_QUERY => {
                let sql = match self.query_attributes(body) {
                    Some((a, _, at)) => {
                        attrs = a;
                        body.get(at..).unwrap_or(&[])
                    }
                    None => body,
                };
                Some(text_of(sql, p.whole()))
            }
            COM_STMT_PREPARE | COM_INIT_DB => Some(text_of(body, p.whole())),
            _ => None,
        };
        let stmt_id = match cmd {
            COM_STMT_EXECUTE
            | COM_STMT_SEND_LONG_DATA
            | COM_STMT_CLOSE
            | COM_STMT_RESET
            | COM_STMT_FETCH => le32(p.payload, 1),
            _ => None,
        };
        match cmd {
            COM_STMT_EXECUTE => attrs = self.execute_attributes(p.payload),
            COM_STMT_CLOSE => self.stmts.retain(|s| Some(s.0) != stmt_id),
            COM_CHANGE_USER => {
                let caps = if self.caps_known() {
                    self.caps()
                } else {
                    // Mid-stream: every client since 4.1 sends the length-prefixed form.
                    CLIENT_SECURE_CONNECTION | CLIENT_PROTOCOL_41 | CLIENT_PLUGIN_AUTH
                };
                let new = parse_change_user(body, caps);
                user = Some(new.0.clone());
                self.pending_user = Some(new);
                self.auth_step = AuthStep::None;
            }
            COM_RESET_CONNECTION => self.stmts.clear(),
            _ => {}
        }
        self.resp = match cmd {
            COM_QUIT | COM_STMT_CLOSE | COM_STMT_SEND_LONG_DATA => Resp::Idle,
            COM_FIELD_LIST => Resp::FieldList,
            COM_CHANGE_USER => Resp::ChangeUser,
            COM_BINLOG_DUMP | COM_BINLOG_DUMP_GTID => Resp::Binlog { started: false },
            other => Resp::First(other),
        };
        if cmd == COM_QUIT {
            self.facts.quit_frame = Some(p.at.frame);
        }
        self.facts.in_flight = (self.resp != Resp::Idle).then(|| InFlight {
            command: cmd.name(),
            text: text.clone(),
            frame: p.at.frame,
            at: Some(p.at),
            streaming: false,
        });
        out.push(Event {
            at: p.at,
            side,
            kind: Kind::Command {
                cmd,
                stmt_id,
                text,
                len: p.len.min(u64::from(u32::MAX)) as u32,
                attrs,
                user,
            },
        });
    }

    /// A client packet that is not a command (sequence id > 0): LOCAL INFILE content, or the
    /// auth exchange of a COM_CHANGE_USER.
    fn client_continuation(&mut self, p: &Packet<'_>, out: &mut Vec<Event>, side: Side) {
        if let Some((bytes, packets)) = self.infile.as_mut() {
            if p.len == 0 {
                // The empty packet ends the file; the server's OK or ERR follows.
                let kind = Kind::InfileData {
                    bytes: *bytes,
                    packets: *packets,
                };
                self.infile = None;
                out.push(Event {
                    at: p.at,
                    side,
                    kind,
                });
            } else {
                *bytes = bytes.saturating_add(p.len);
                *packets = packets.saturating_add(1);
            }
        } else if self.resp == Resp::ChangeUser {
            let kind = self.auth_response(p);
            out.push(Event {
                at: p.at,
                side,
                kind,
            });
        }
    }

    /// Query attributes of a COM_QUERY (`body` after the command byte), with the offset of the
    /// SQL. Capabilities known: exactly when both sides have CLIENT_QUERY_ATTRIBUTES.
    /// Mid-stream: when the body starts with a byte below 0x20 (a parameter count; SQL starts
    /// with a printable character or whitespace, never a control byte followed by 0x01), then
    /// parameter_set_count 1, the whole block parses, and the SQL after it starts with a
    /// printable character or whitespace.
    fn query_attributes(&self, body: &[u8]) -> Option<(Vec<QueryAttr>, u64, usize)> {
        if self.caps_known() {
            if !self.caps().contains(CLIENT_QUERY_ATTRIBUTES) {
                return None;
            }
            return params::query_attrs(body);
        }
        if *body.first()? >= 0x20 || body.get(1) != Some(&1) {
            return None;
        }
        let r = params::query_attrs(body)?;
        let sql = *body.get(r.2)?;
        (!sql.is_ascii_control() || sql.is_ascii_whitespace()).then_some(r)
    }

    /// Query attributes of a COM_STMT_EXECUTE: when both sides have CLIENT_QUERY_ATTRIBUTES
    /// and the PARAMETER_COUNT_AVAILABLE flag is set, the parameters beyond the statement's
    /// placeholders (from its PREPARE OK, else those with a name). Mid-stream: none (the layout
    /// depends on capabilities not seen).
    fn execute_attributes(&self, payload: &[u8]) -> Vec<QueryAttr> {
        if !self.caps_known() || !self.caps().contains(CLIENT_QUERY_ATTRIBUTES) {
            return Vec::new();
        }
        // command(1) statement_id(4) flags(1) iteration_count(4)
        let (Some(id), Some(&flags), Some(rest)) =
            (le32(payload, 1), payload.get(5), payload.get(10..))
        else {
            return Vec::new();
        };
        if flags & PARAMETER_COUNT_AVAILABLE == 0 {
            return Vec::new();
        }
        let Some((count, n)) = lenenc(rest) else {
            return Vec::new();
        };
        let placeholders = self
            .stmts
            .iter()
            .find(|s| s.0 == id)
            .map(|s| u64::from(s.1));
        if count == 0 || placeholders.is_some_and(|p| p >= count) {
            return Vec::new();
        }
        params::execute_attrs(rest.get(n..).unwrap_or(&[]), count, placeholders, true)
    }

    fn done(&mut self) {
        self.resp = Resp::Idle;
        self.facts.in_flight = None;
    }

    fn response(&mut self, p: &Packet<'_>, out: &mut Vec<Event>, side: Side) {
        let ev = |kind| Event {
            at: p.at,
            side,
            kind,
        };
        let first = p.first();
        let deprecate_eof = self.caps().contains(CLIENT_DEPRECATE_EOF);
        let is_eof = first == Some(EOF) && p.len < 9;
        if let Some(f) = self.facts.in_flight.as_mut() {
            f.streaming = true;
        }
        match self.resp {
            Resp::Idle => {
                if first == Some(ERR) {
                    let k = self.err(p, true, false);
                    out.push(ev(k));
                }
            }
            Resp::First(cmd) => match first {
                Some(OK) if cmd == COM_STMT_PREPARE => {
                    let (stmt_id, columns, params) = parse_stmt_ok(p.payload);
                    self.stmts.retain(|s| s.0 != stmt_id);
                    if self.stmts.len() >= STMTS_MAX {
                        self.stmts.remove(0);
                    }
                    self.stmts.push((stmt_id, params));
                    out.push(ev(Kind::StmtPrepared {
                        stmt_id,
                        columns,
                        params,
                    }));
                    let defs = |n: u16| u64::from(n) + u64::from(n > 0 && !deprecate_eof);
                    let left = defs(params) + defs(columns);
                    if left == 0 {
                        self.done();
                    } else {
                        self.resp = Resp::Definitions { left };
                    }
                }
                Some(OK) => {
                    let (affected_rows, status) = parse_ok(p.payload, self.caps());
                    out.push(ev(Kind::Ok {
                        affected_rows,
                        status,
                        login: false,
                    }));
                    if !status.contains(SERVER_MORE_RESULTS_EXISTS) {
                        self.done();
                    }
                }
                Some(ERR) => {
                    let k = self.err(p, false, false);
                    out.push(ev(k));
                    self.done();
                }
                Some(EOF) if is_eof => {
                    out.push(ev(self.eof(p, deprecate_eof)));
                    self.done();
                }
                Some(LOCAL_INFILE) => {
                    // The client sends the file (packets after this one's sequence id), an
                    // empty packet, then the server's OK or ERR ends the query.
                    self.infile = Some((0, 0));
                    out.push(ev(Kind::LocalInfile {
                        file: text_of(p.payload.get(1..).unwrap_or(&[]), p.whole()),
                    }));
                }
                _ if cmd == COM_STATISTICS => self.done(),
                _ => {
                    let (cols, used) = lenenc(p.payload).unwrap_or((0, 1));
                    // MariaDB's MARIADB_CLIENT_CACHE_METADATA adds a "metadata follows" byte;
                    // 0 means the client has the column definitions cached: none are sent.
                    let cached = self.facts.mariadb_capabilities & MARIADB_CACHE_METADATA != 0
                        && p.payload.get(used) == Some(&0);
                    self.resp = match (cols, cached) {
                        (0, _) => Resp::Idle,
                        (_, true) if deprecate_eof => Resp::Rows { cmd, cols, rows: 0 },
                        (_, true) => Resp::ColumnsEof { cmd, cols },
                        _ => Resp::Columns {
                            cmd,
                            left: cols,
                            cols,
                        },
                    };
                }
            },
            Resp::Columns { cmd, left, cols } => {
                self.resp = match left.saturating_sub(1) {
                    0 if deprecate_eof => Resp::Rows { cmd, cols, rows: 0 },
                    0 => Resp::ColumnsEof { cmd, cols },
                    n => Resp::Columns { cmd, left: n, cols },
                };
            }
            Resp::ColumnsEof { cmd, cols } => {
                if first == Some(ERR) {
                    let k = self.err(p, false, false);
                    out.push(ev(k));
                    self.done();
                } else {
                    self.resp = Resp::Rows { cmd, cols, rows: 0 };
                }
            }
            Resp::Rows { cmd, cols, rows } => {
                let terminator =
                    first == Some(EOF) && p.len < 0x00ff_ffff && (deprecate_eof || p.len < 9);
                if terminator {
                    let status = if deprecate_eof {
                        parse_ok(p.payload, self.caps()).1
                    } else {
                        StatusFlags::from_bits_retain(le16(p.payload, 3).unwrap_or(0))
                    };
                    let more = status.contains(SERVER_MORE_RESULTS_EXISTS);
                    out.push(ev(Kind::ResultSet {
                        columns: cols,
                        rows,
                        more,
                    }));
                    if more {
                        self.resp = Resp::First(cmd);
                    } else {
                        self.done();
                    }
                } else if first == Some(ERR) {
                    let k = self.err(p, false, false);
                    out.push(ev(k));
                    self.done();
                } else {
                    self.resp = Resp::Rows {
                        cmd,
                        cols,
                        rows: rows + 1,
                    };
                }
            }
            Resp::Definitions { left } => {
                if left <= 1 {
                    self.done();
                } else {
                    self.resp = Resp::Definitions { left: left - 1 };
                }
            }
            Resp::FieldList => {
                if first == Some(ERR) {
                    let k = self.err(p, false, false);
                    out.push(ev(k));
                    self.done();
                } else if is_eof {
                    out.push(ev(self.eof(p, deprecate_eof)));
                    self.done();
                }
            }
            Resp::ChangeUser => match first {
                Some(OK) => {
                    let (affected_rows, status) = parse_ok(p.payload, self.caps());
                    out.push(ev(Kind::Ok {
                        affected_rows,
                        status,
                        login: true,
                    }));
                    self.changed_user();
                    self.done();
                }
                Some(ERR) => {
                    let k = self.err(p, false, true);
                    out.push(ev(k));
                    self.pending_user = None;
                    self.done();
                }
                Some(EOF) => {
                    let plugin = parse_auth_switch(p.payload);
                    if let Some(u) = self.pending_user.as_mut() {
                        u.2 = Some(plugin.clone());
                    }
                    self.auth_step = AuthStep::Switch;
                    out.push(ev(Kind::AuthSwitch { plugin }));
                }
                Some(AUTH_MORE_DATA) => out.push(ev(self.auth_more_data(p))),
                _ => {}
            },
            Resp::Binlog { started } => match first {
                Some(ERR) => {
                    let k = self.err(p, false, false);
                    out.push(ev(k));
                    self.done();
                }
                // A non-blocking dump ends with EOF when it reaches the end of the binlog.
                Some(EOF) if is_eof => {
                    out.push(ev(self.eof(p, deprecate_eof)));
                    self.done();
                }
                _ => {
                    if !started {
                        out.push(ev(Kind::BinlogStream));
                        self.resp = Resp::Binlog { started: true };
                    }
                    self.facts.binlog_events = self.facts.binlog_events.saturating_add(1);
                }
            },
        }
    }

    /// An EOF packet that is a response of its own; with CLIENT_DEPRECATE_EOF the server sends
    /// an OK packet with the EOF header instead.
    fn eof(&self, p: &Packet<'_>, deprecate_eof: bool) -> Kind {
        if deprecate_eof {
            let (_, status) = parse_ok(p.payload, self.caps());
            Kind::Eof {
                warnings: 0,
                status,
            }
        } else {
            Kind::Eof {
                warnings: le16(p.payload, 1).unwrap_or(0),
                status: StatusFlags::from_bits_retain(le16(p.payload, 3).unwrap_or(0)),
            }
        }
    }

    /// The COM_CHANGE_USER succeeded: its user, database and plugin are the connection's now,
    /// and the session's prepared statements are gone.
    fn changed_user(&mut self) {
        let Some((user, database, plugin)) = self.pending_user.take() else {
            return;
        };
        if self.facts.user.as_ref() != Some(&user) {
            self.facts.previous_user = self.facts.user.replace(user);
        }
        self.facts.database = database;
        if plugin.is_some() {
            self.facts.auth_plugin = plugin;
        }
        self.stmts.clear();
        self.auth_step = AuthStep::None;
    }

    /// Turns the compressed protocol on for both directions.
    fn start_compressed(&mut self, algo: Option<Algorithm>, mid_stream: bool) {
        self.compressed = Some([Inflater::new(algo), Inflater::new(algo)]);
        self.facts.compression = Some(Compression {
            algorithm: algo,
            level: self.zstd_level.filter(|_| algo == Some(Algorithm::Zstd)),
            mid_stream,
        });
    }

    /// Final facts, with the phase the protocol ended in.
    pub fn finish(mut self) -> Facts {
        self.facts.phase = Some(self.phase);
        if let (Some(c), Some(inf)) = (self.facts.compression.as_mut(), &self.compressed) {
            // Mid-stream, the first compressed payload told the algorithm.
            c.algorithm = c.algorithm.or(inf.iter().find_map(Inflater::algorithm));
        }
        self.facts
    }
}

/// Greeting fields.
struct Greeting {
    version: String,
    thread_id: u32,
    capabilities: CapabilityFlags,
    mariadb_capabilities: u32,
    auth_plugin: String,
}

/// Parses a HandshakeV10 with mysql_common, after checking the one byte it would choke on.
fn parse_greeting(payload: &[u8]) -> Greeting {
    let version_len = payload
        .get(1..)
        .and_then(|v| v.iter().position(|&b| b == 0));
    // Offset of auth_plugin_data_len: protocol(1) version NUL id(4) scramble(8) filler(1)
    // caps(2) charset(1) status(2) caps(2).
    let auth_len = version_len.and_then(|n| payload.get(1 + n + 1 + 20).copied());
    // mysql_common computes `len as i8 - 8`, which overflows for 0x80..=0x87.
    let safe = !matches!(auth_len, Some(0x80..=0x87));
    if safe {
        let mut buf = ParseBuf(payload);
        if let Ok(h) = buf.parse::<HandshakePacket<'_>>(()) {
            return Greeting {
                version: lossy(h.server_version_ref()),
                thread_id: h.connection_id(),
                capabilities: h.capabilities(),
                mariadb_capabilities: h.mariadb_ext_capabilities().bits(),
                auth_plugin: h.auth_plugin_name_ref().map(lossy).unwrap_or_default(),
            };
        }
    }
    // Cut short (snap length) or odd: take what is there.
    let version = payload
        .get(1..)
        .and_then(cstr)
        .map(lossy)
        .unwrap_or_default();
    let base = 1 + version.len() + 1;
    Greeting {
        thread_id: le32(payload, base).unwrap_or(0),
        capabilities: CapabilityFlags::from_bits_retain(
            u32::from(le16(payload, base + 13).unwrap_or(0))
                | u32::from(le16(payload, base + 18).unwrap_or(0)) << 16,
        ),
        mariadb_capabilities: 0,
        auth_plugin: String::new(),
        version,
    }
}

/// User, database and auth plugin of a HandshakeResponse41, via mysql_common.
fn parse_handshake_response(payload: &[u8]) -> Option<(String, Option<String>, Option<String>)> {
    let mut buf = ParseBuf(payload);
    let r = buf.parse::<HandshakeResponse<'_>>(()).ok()?;
    Some((
        lossy(r.user()),
        r.db_name().map(lossy).filter(|d| !d.is_empty()),
        r.auth_plugin().map(|p| lossy(p.as_bytes())),
    ))
}

fn parse_ok(payload: &[u8], caps: CapabilityFlags) -> (u64, StatusFlags) {
    let flags = CapabilityFlags::from_bits_truncate((caps | CLIENT_PROTOCOL_41).bits());
    let mut buf = ParseBuf(payload);
    if let Ok(ok) = buf.parse::<OkPacketDeserializer<'_, CommonOkPacket>>(flags) {
        let ok = ok.into_inner();
        return (ok.affected_rows(), ok.status_flags());
    }
    // By hand: header, two length-encoded integers, status.
    let rest = payload.get(1..).unwrap_or(&[]);
    let (affected, n1) = lenenc(rest).unwrap_or((0, 1));
    let rest = rest.get(n1..).unwrap_or(&[]);
    let (_, n2) = lenenc(rest).unwrap_or((0, 1));
    (
        affected,
        StatusFlags::from_bits_retain(le16(rest, n2).unwrap_or(0)),
    )
}

fn parse_err(payload: &[u8], protocol41: bool) -> (u16, String, String) {
    let flags = if protocol41 {
        CapabilityFlags::CLIENT_PROTOCOL_41
    } else {
        CapabilityFlags::empty()
    };
    let mut buf = ParseBuf(payload);
    if let Ok(ErrPacket::Error(e)) = buf.parse::<ErrPacket<'_>>(flags) {
        let state = e
            .sql_state_ref()
            .map(|s| s.as_str().into_owned())
            .unwrap_or_default();
        return (e.error_code(), state, lossy(e.message_ref()));
    }
    (
        le16(payload, 1).unwrap_or(0),
        String::new(),
        lossy(payload.get(3..).unwrap_or(&[])),
    )
}

/// True if an ERR payload has the 4.1 SQLSTATE marker: `#` and five characters of [0-9A-Z]
/// after the code.
fn has_sqlstate_marker(payload: &[u8]) -> bool {
    payload.get(3) == Some(&b'#')
        && payload.get(4..9).is_some_and(|s| {
            s.iter()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        })
}

/// User, database and auth plugin of a COM_CHANGE_USER (`body` after the command byte):
/// user NUL, auth response (length-prefixed with CLIENT_SECURE_CONNECTION, else NUL-ended),
/// database NUL, then with CLIENT_PROTOCOL_41 a 2-byte character set and with
/// CLIENT_PLUGIN_AUTH the plugin name NUL.
fn parse_change_user(body: &[u8], caps: CapabilityFlags) -> NewUser {
    let user = cstr(body).unwrap_or(&[]);
    let mut at = user.len() + 1;
    let user = lossy(user);
    if caps.contains(CLIENT_SECURE_CONNECTION) {
        let n = body.get(at).map_or(0, |&n| usize::from(n));
        at += 1 + n;
    } else {
        at += body.get(at..).and_then(cstr).map_or(0, <[u8]>::len) + 1;
    }
    let Some(db) = body.get(at..).and_then(cstr) else {
        return (user, None, None);
    };
    at += db.len() + 1;
    let database = Some(lossy(db)).filter(|d| !d.is_empty());
    if caps.contains(CLIENT_PROTOCOL_41) {
        at += 2;
    }
    let plugin = if caps.contains(CLIENT_PLUGIN_AUTH) {
        body.get(at..)
            .and_then(cstr)
            .filter(|p| !p.is_empty())
            .map(lossy)
    } else {
        None
    };
    (user, database, plugin)
}

fn parse_auth_switch(payload: &[u8]) -> String {
    let mut buf = ParseBuf(payload);
    match buf.parse::<AuthSwitchRequest<'_>>(()) {
        Ok(r) => lossy(r.auth_plugin().as_bytes()),
        Err(_) => payload
            .get(1..)
            .and_then(cstr)
            .map(lossy)
            .unwrap_or_default(),
    }
}

fn parse_stmt_ok(payload: &[u8]) -> (u32, u16, u16) {
    let mut buf = ParseBuf(payload);
    match buf.parse::<StmtPacket>(()) {
        Ok(s) => (s.statement_id(), s.num_columns(), s.num_params()),
        Err(_) => (
            le32(payload, 1).unwrap_or(0),
            le16(payload, 5).unwrap_or(0),
            le16(payload, 7).unwrap_or(0),
        ),
    }
}

/// A length-encoded integer and the bytes it took.
pub fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let take = |n: usize| -> Option<u64> {
        let s = b.get(1..1 + n)?;
        Some(s.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
    };
    match first {
        0..=0xfa => Some((u64::from(first), 1)),
        0xfc => Some((take(2)?, 3)),
        0xfd => Some((take(3)?, 4)),
        0xfe => Some((take(8)?, 9)),
        _ => None,
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_le_bytes([*s.first()?, *s.get(1)?]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([
        *s.first()?,
        *s.get(1)?,
        *s.get(2)?,
        *s.get(3)?,
    ]))
}

fn cstr(b: &[u8]) -> Option<&[u8]> {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    b.get(..n)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Query text for reports: at most [`TEXT_MAX`] characters, marked when cut.
fn text_of(b: &[u8], whole: bool) -> String {
    let s = String::from_utf8_lossy(b.get(..TEXT_MAX * 4).unwrap_or(b));
    let mut t: String = s.chars().take(TEXT_MAX).collect();
    if t.len() < s.len() || !whole {
        t.push('…');
    }
    t
}

mod params;

#[cfg(test)]
mod tests;
