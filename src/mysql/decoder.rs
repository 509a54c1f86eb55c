//! The MySQL protocol state machine of one connection.

use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthSwitchRequest, CommonOkPacket, ErrPacket, HandshakePacket, HandshakeResponse,
    OkPacketDeserializer, StmtPacket,
};

use super::compress::{self, Algorithm, Compression, Inflater};
use super::framer::{Framer, Note, Packet};
use crate::event::{Event, Kind};
use crate::tcp::At;

const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_SSL: u32 = 0x0000_0800;
const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
/// MariaDB extended capability: result-set metadata may be left out when the client caches it.
const MARIADB_CACHE_METADATA: u32 = 0x0000_0010;
const SSL_REQUEST_LEN: u64 = 32;
/// Query text kept per command (characters beyond are cut, with an ellipsis).
pub const TEXT_MAX: usize = 200;

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_FIELD_LIST: u8 = 0x04;
const COM_STATISTICS: u8 = 0x09;
const COM_CHANGE_USER: u8 = 0x11;
const COM_BINLOG_DUMP: u8 = 0x12;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_RESET: u8 = 0x1a;
const COM_STMT_FETCH: u8 = 0x1c;
const COM_BINLOG_DUMP_GTID: u8 = 0x1e;

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
    pub server_capabilities: Option<u32>,
    /// MariaDB extended capabilities both sides announced (greeting and handshake response).
    pub mariadb_capabilities: u32,
    /// Client capability flags (handshake response or SSLRequest).
    pub client_capabilities: Option<u32>,
    /// User (plaintext logins).
    pub user: Option<String>,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resp {
    Idle,
    First(u8),
    Columns { cmd: u8, left: u64, cols: u64 },
    ColumnsEof { cmd: u8, cols: u64 },
    Rows { cmd: u8, cols: u64, rows: u64 },
    Definitions { left: u64 },
    FieldList,
    ChangeUser,
    Streaming,
}

/// The decoder of one MySQL connection.
pub struct Decoder {
    server: usize,
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
    /// What is known so far.
    pub facts: Facts,
}

impl Decoder {
    /// A decoder for a connection whose server is `server` (side index), starting at `phase`
    /// (`Greeting` normally; `Command` for a connection picked up mid-stream).
    pub fn new(server: usize, phase: Phase) -> Decoder {
        Decoder {
            server: server & 1,
            phase,
            framers: [Framer::default(), Framer::default()],
            resp: Resp::Idle,
            compressed: None,
            mid_stream: (phase == Phase::Command).then_some([None, None]),
            zstd_level: None,
            inside_tls: false,
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
    pub fn data(
        &mut self,
        side: usize,
        data: &[u8],
        at: At,
        out: &mut Vec<Event>,
    ) -> Option<usize> {
        let side = side & 1;
        if self.phase == Phase::Tls || self.inside_tls {
            return Some(0);
        }
        let request = side != self.server;
        if let Some(dirs) = self.mid_stream.as_mut() {
            if dirs[side].is_none() {
                dirs[side] = match dirs[side ^ 1] {
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
    pub fn decrypted(&mut self, side: usize, data: &[u8], at: At, out: &mut Vec<Event>) {
        let side = side & 1;
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
    fn plain(&mut self, side: usize, data: &[u8], at: At, out: &mut Vec<Event>) -> usize {
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
    pub fn gap(&mut self, side: usize, n: u64, at: At, out: &mut Vec<Event>) {
        let side = side & 1;
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

    fn notes(&mut self, side: usize, notes: &[Note], at: At, out: &mut Vec<Event>) {
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

    fn packet(&mut self, side: usize, p: Packet<'_>, out: &mut Vec<Event>) {
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
                let caps = le32(p.payload, 0).unwrap_or(0);
                self.facts.client_capabilities = Some(caps);
                if p.len == SSL_REQUEST_LEN && caps & CLIENT_SSL != 0 {
                    self.facts.ssl_request = true;
                    self.phase = Phase::Tls;
                    out.push(ev(Kind::SslRequest { capabilities: caps }));
                } else {
                    out.push(ev(self.handshake_response(&p, caps)));
                    self.phase = Phase::Auth;
                }
            }
            (Phase::Login, true) | (Phase::Auth, true) => self.auth_reply(&p, out, side),
            (Phase::Command, false) => self.command(&p, out, side),
            (Phase::Command, true) => self.response(&p, out, side),
            _ => {}
        }
    }

    fn greeting(&mut self, p: &Packet<'_>) -> Option<Kind> {
        match p.first()? {
            0xff => {
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

    fn handshake_response(&mut self, p: &Packet<'_>, caps: u32) -> Kind {
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
        // (bit 0) is clear.
        if caps & 1 == 0 {
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

    fn caps(&self) -> u32 {
        self.facts.server_capabilities.unwrap_or(0) & self.facts.client_capabilities.unwrap_or(0)
    }

    fn auth_reply(&mut self, p: &Packet<'_>, out: &mut Vec<Event>, side: usize) {
        let ev = |kind| Event {
            at: p.at,
            side,
            kind,
        };
        match p.first() {
            Some(0x00) => {
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
            Some(0xff) => {
                self.facts.login_ok = Some(false);
                out.push(ev(self.err(p, false, true)));
            }
            Some(0xfe) => {
                let plugin = parse_auth_switch(p.payload);
                self.facts.auth_plugin = Some(plugin.clone());
                out.push(ev(Kind::AuthSwitch { plugin }));
            }
            Some(0x01) => out.push(ev(Kind::AuthMoreData)),
            _ => {}
        }
    }

    fn err(&mut self, p: &Packet<'_>, unsolicited: bool, login: bool) -> Kind {
        let (code, sqlstate, message) = parse_err(p.payload, self.caps() & CLIENT_PROTOCOL_41 != 0);
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

    fn command(&mut self, p: &Packet<'_>, out: &mut Vec<Event>, side: usize) {
        if p.seq != 0 {
            // LOCAL INFILE data, or auth data during COM_CHANGE_USER.
            return;
        }
        let Some(cmd) = p.first() else { return };
        self.facts.commands += 1;
        let text = match cmd {
            COM_QUERY | COM_STMT_PREPARE | COM_INIT_DB => {
                Some(text_of(p.payload.get(1..).unwrap_or(&[]), p.whole()))
            }
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
        self.resp = match cmd {
            COM_QUIT | COM_STMT_CLOSE | COM_STMT_SEND_LONG_DATA => Resp::Idle,
            COM_FIELD_LIST => Resp::FieldList,
            COM_CHANGE_USER => Resp::ChangeUser,
            COM_BINLOG_DUMP | COM_BINLOG_DUMP_GTID => Resp::Streaming,
            other => Resp::First(other),
        };
        if cmd == COM_QUIT {
            self.facts.quit_frame = Some(p.at.frame);
        }
        self.facts.in_flight = (self.resp != Resp::Idle).then(|| InFlight {
            command: crate::event::command_name(cmd),
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
            },
        });
    }

    fn done(&mut self) {
        self.resp = Resp::Idle;
        self.facts.in_flight = None;
    }

    fn response(&mut self, p: &Packet<'_>, out: &mut Vec<Event>, side: usize) {
        let ev = |kind| Event {
            at: p.at,
            side,
            kind,
        };
        let first = p.first();
        let deprecate_eof = self.caps() & CLIENT_DEPRECATE_EOF != 0;
        let is_eof = first == Some(0xfe) && p.len < 9;
        if let Some(f) = self.facts.in_flight.as_mut() {
            f.streaming = true;
        }
        match self.resp {
            Resp::Idle => {
                if first == Some(0xff) {
                    let k = self.err(p, true, false);
                    out.push(ev(k));
                }
            }
            Resp::First(cmd) => match first {
                Some(0x00) if cmd == COM_STMT_PREPARE => {
                    let (stmt_id, columns, params) = parse_stmt_ok(p.payload);
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
                Some(0x00) => {
                    let (affected_rows, status) = parse_ok(p.payload, self.caps());
                    out.push(ev(Kind::Ok {
                        affected_rows,
                        status,
                        login: false,
                    }));
                    if status & SERVER_MORE_RESULTS_EXISTS == 0 {
                        self.done();
                    }
                }
                Some(0xff) => {
                    let k = self.err(p, false, false);
                    out.push(ev(k));
                    self.done();
                }
                Some(0xfe) if is_eof => self.done(),
                Some(0xfb) => {} // LOCAL INFILE: the client sends the file, then OK/ERR follows.
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
                if first == Some(0xff) {
                    let k = self.err(p, false, false);
                    out.push(ev(k));
                    self.done();
                } else {
                    self.resp = Resp::Rows { cmd, cols, rows: 0 };
                }
            }
            Resp::Rows { cmd, cols, rows } => {
                let terminator =
                    first == Some(0xfe) && p.len < 0x00ff_ffff && (deprecate_eof || p.len < 9);
                if terminator {
                    let status = if deprecate_eof {
                        parse_ok(p.payload, self.caps()).1
                    } else {
                        le16(p.payload, 3).unwrap_or(0)
                    };
                    let more = status & SERVER_MORE_RESULTS_EXISTS != 0;
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
                } else if first == Some(0xff) {
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
                if is_eof || first == Some(0xff) {
                    if first == Some(0xff) {
                        let k = self.err(p, false, false);
                        out.push(ev(k));
                    }
                    self.done();
                }
            }
            Resp::ChangeUser => match first {
                Some(0x00) => {
                    let (affected_rows, status) = parse_ok(p.payload, self.caps());
                    out.push(ev(Kind::Ok {
                        affected_rows,
                        status,
                        login: true,
                    }));
                    self.done();
                }
                Some(0xff) => {
                    let k = self.err(p, false, true);
                    out.push(ev(k));
                    self.done();
                }
                Some(0xfe) => out.push(ev(Kind::AuthSwitch {
                    plugin: parse_auth_switch(p.payload),
                })),
                _ => {}
            },
            Resp::Streaming => {}
        }
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
    capabilities: u32,
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
                capabilities: h.capabilities().bits(),
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
        capabilities: u32::from(le16(payload, base + 13).unwrap_or(0))
            | u32::from(le16(payload, base + 18).unwrap_or(0)) << 16,
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

fn parse_ok(payload: &[u8], caps: u32) -> (u64, u16) {
    let flags = CapabilityFlags::from_bits_truncate(caps | CLIENT_PROTOCOL_41);
    let mut buf = ParseBuf(payload);
    if let Ok(ok) = buf.parse::<OkPacketDeserializer<'_, CommonOkPacket>>(flags) {
        let ok = ok.into_inner();
        return (ok.affected_rows(), ok.status_flags().bits());
    }
    // By hand: header, two length-encoded integers, status.
    let rest = payload.get(1..).unwrap_or(&[]);
    let (affected, n1) = lenenc(rest).unwrap_or((0, 1));
    let rest = rest.get(n1..).unwrap_or(&[]);
    let (_, n2) = lenenc(rest).unwrap_or((0, 1));
    (affected, le16(rest, n2).unwrap_or(0))
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

#[cfg(test)]
mod tests;
