//! Stage 4, protocol dissection: decides by content what each connection carries (MySQL, from a
//! server greeting; TLS, from a record header; MySQL picked up mid-stream, from an exact chain of
//! command packets; anything else is left alone) and feeds the reassembled streams to the MySQL
//! and TLS decoders, following the SSLRequest into TLS.
//!
//! Per connection it keeps the first and the last events (bounded), counts the rest, records
//! the protocol state at the first FIN or RST ([`teardown`]), and at the close hands the model
//! the decoders' facts. Every event also goes to the driver's sink, in stream order.

pub mod teardown;

use std::collections::{HashMap, VecDeque};

use crate::common::{At, Side};
use crate::event::{Event, Kind};
use crate::mysql;
use crate::tcp::{Connection, StreamEvent};
use crate::tls;

/// Events kept by default from the start of a connection (the handshake is there) and, as many
/// again, from its end (the close is there). Bounded because a pooled connection can carry
/// millions of queries; the rest are counted.
pub const KEEP_EVENTS: usize = 24;
/// Data slices looked at before a connection is declared "not MySQL or TLS".
const DETECT_TRIES: u8 = 4;

/// What a connection carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Carries {
    /// Not decided yet, or nothing was sent.
    Unknown,
    /// MySQL (possibly upgraded to TLS).
    Mysql,
    /// TLS from the first byte.
    Tls,
    /// Something else.
    Other,
}

/// A bounded selection of a connection's events.
#[derive(Debug, Default)]
pub struct Kept {
    /// The first events.
    pub first: Vec<Event>,
    /// The last events (after `first` filled up).
    pub last: VecDeque<Event>,
    /// Events between them that were only counted.
    pub dropped: u64,
    keep: usize,
}

impl Kept {
    fn push(&mut self, e: Event) {
        if self.keep == 0 {
            self.dropped += 1;
            return;
        }
        if self.first.len() < self.keep {
            self.first.push(e);
            return;
        }
        if self.last.len() == self.keep {
            self.last.pop_front();
            self.dropped += 1;
        }
        self.last.push_back(e);
    }

    /// All kept events in order.
    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.first.iter().chain(self.last.iter())
    }
}

/// Protocol facts of a finished connection.
#[derive(Debug, Default)]
pub struct AppFacts {
    /// What it carried.
    pub carries: Option<Carries>,
    /// MySQL facts, if MySQL.
    pub mysql: Option<mysql::Facts>,
    /// TLS facts, if TLS was seen.
    pub tls: Option<tls::Facts>,
    /// Kept events.
    pub events: Kept,
    /// The protocol state at the first FIN or RST.
    pub teardown: teardown::Teardown,
}

struct State {
    carries: Carries,
    tries: u8,
    /// Boxed like the teardown: most flows of a flood never get a decoder, and the table
    /// entry stays small.
    mysql: Option<Box<mysql::Decoder>>,
    tls: Option<Box<tls::Decoder>>,
    kept: Kept,
    /// Boxed: the flow table's entries stay small, so its growth steps do too.
    teardown: Box<teardown::Teardown>,
}

impl State {
    /// Heap in the decoders' growing buffers.
    fn buffered(&self) -> usize {
        self.mysql.as_ref().map_or(0, |m| m.buffered())
            + self.tls.as_ref().map_or(0, |t| t.buffered())
    }

    /// Gives those buffers up; true if anything was held.
    fn shed(&mut self) -> bool {
        let m = self.mysql.as_mut().is_some_and(|m| m.shed());
        let t = self.tls.as_mut().is_some_and(|t| t.shed());
        m || t
    }

    /// Freezes the teardown record with the decoders' state now.
    fn freeze(&mut self, first: Option<(Side, At, bool)>) {
        let mysql = self
            .mysql
            .as_ref()
            .map(|m| (&m.facts.in_flight, m.phase(), m.facts.login_ok));
        let (records, decrypted, negotiated) = match self.tls.as_ref() {
            Some(t) => (
                [t.last_app_record(Side::A), t.last_app_record(Side::B)],
                t.decrypting(),
                t.facts.version.is_some(),
            ),
            None => ([None, None], false, false),
        };
        self.teardown.freeze(
            first,
            teardown::Freeze {
                mysql,
                records,
                decrypted,
                tls_negotiated: negotiated,
            },
        );
    }
}

/// The dissector: per-connection protocol state, keyed by connection id.
pub struct Dissector {
    conns: HashMap<u64, State, ahash::RandomState>,
    scratch: Vec<Event>,
    keep: usize,
    keylog: Option<tls::decrypt::SharedKeyLog>,
    /// Heap in decoder buffers across connections, its cap, and the times a connection's
    /// buffers were given up to stay under it.
    buffered: usize,
    buffer_limit: usize,
    /// Decoder buffers given up because the share was full (counted in the run's `dropped`).
    pub shed: u64,
}

impl Default for Dissector {
    fn default() -> Self {
        Dissector::new(KEEP_EVENTS)
    }
}

impl Dissector {
    /// A dissector keeping the first `keep` and the last `keep` events of each connection.
    pub fn new(keep: usize) -> Self {
        Dissector {
            conns: HashMap::default(),
            scratch: Vec::new(),
            keep,
            keylog: None,
            buffered: 0,
            buffer_limit: usize::MAX,
            shed: 0,
        }
    }

    /// Caps the heap decoder buffers may hold across all connections (handshake messages and
    /// compressed packets being collected): past it, the connection that grew gives its up.
    pub fn set_buffer_limit(&mut self, bytes: usize) {
        self.buffer_limit = bytes;
    }

    /// Decrypt TLS sessions whose secrets are in `keylog` (from now on).
    pub fn set_keylog(&mut self, keylog: Option<tls::decrypt::SharedKeyLog>) {
        self.keylog = keylog;
    }

    /// One stream event of `side` of `conn`; the events it decodes go to `sink`, in order.
    pub fn stream(
        &mut self,
        conn: &Connection,
        side: Side,
        at: At,
        ev: StreamEvent<'_>,
        sink: &mut dyn FnMut(&Connection, Carries, &Event),
    ) {
        let keep = self.keep;
        let st = self.conns.entry(conn.id).or_insert_with(|| State {
            carries: Carries::Unknown,
            tries: 0,
            mysql: None,
            tls: None,
            kept: Kept {
                keep,
                ..Kept::default()
            },
            teardown: Box::new(teardown::Teardown::new(conn.client)),
        });
        let before = st.buffered();
        let out = &mut self.scratch;
        match ev {
            StreamEvent::Syn => out.push(Event {
                at,
                side,
                kind: if conn.is_client(side) {
                    Kind::Syn
                } else {
                    Kind::SynAck
                },
            }),
            StreamEvent::Fin => {
                if let Some(t) = st.tls.as_mut() {
                    t.fin(side, out);
                }
                st.freeze(Some((side, at, false)));
                out.push(Event {
                    at,
                    side,
                    kind: Kind::Fin,
                });
            }
            StreamEvent::Rst => {
                st.freeze(Some((side, at, true)));
                out.push(Event {
                    at,
                    side,
                    kind: Kind::Rst,
                });
            }
            StreamEvent::Gap(n) => {
                out.push(Event {
                    at,
                    side,
                    kind: Kind::Gap { bytes: n },
                });
                if let Some(t) = st.tls.as_mut() {
                    t.gap(side, n, at, out);
                } else if let Some(m) = st.mysql.as_mut() {
                    m.gap(side, n, at, out);
                }
            }
            StreamEvent::Data(d) => data(st, conn, side, d, at, out, &self.keylog),
        }
        let mut after = st.buffered();
        if after > before && self.buffered + after - before > self.buffer_limit {
            if st.shed() {
                self.shed += 1;
            }
            after = st.buffered();
        }
        self.buffered = (self.buffered + after).saturating_sub(before);
        for e in out.drain(..) {
            st.teardown.observe(&e);
            sink(conn, st.carries, &e);
            st.kept.push(e);
        }
    }

    /// The connection is finished: its facts.
    pub fn finish(&mut self, conn: &Connection) -> AppFacts {
        let Some(mut st) = self.conns.remove(&conn.id) else {
            return AppFacts::default();
        };
        self.buffered = self.buffered.saturating_sub(st.buffered());
        st.freeze(None);
        AppFacts {
            teardown: *st.teardown,
            carries: Some(st.carries),
            mysql: st.mysql.map(|m| m.finish()),
            tls: st.tls.map(|t| t.finish()),
            events: st.kept,
        }
    }
}

fn data(
    st: &mut State,
    conn: &Connection,
    side: Side,
    d: &[u8],
    at: At,
    out: &mut Vec<Event>,
    keylog: &Option<tls::decrypt::SharedKeyLog>,
) {
    if st.carries == Carries::Unknown {
        detect(st, conn, side, d, keylog);
    }
    match st.carries {
        Carries::Mysql => {
            if let Some(m) = st.mysql.as_mut() {
                let switched = m.data(side, d, at, out);
                if let (Some(used), true) = (switched, m.facts.ssl_request) {
                    let t = st.tls.get_or_insert_with(|| {
                        Box::new(tls::Decoder::new(conn.client, true).with_keys(keylog.clone()))
                    });
                    let rest = d.get(used..).unwrap_or(&[]);
                    if !rest.is_empty() {
                        t.data(side, rest, at, out);
                    }
                    for (s, at, plain) in t.take_plaintext() {
                        m.decrypted(s, &plain, at, out);
                    }
                }
            }
        }
        Carries::Tls => {
            if let Some(t) = st.tls.as_mut() {
                t.data(side, d, at, out);
            }
        }
        Carries::Unknown | Carries::Other => {}
    }
}

fn detect(
    st: &mut State,
    conn: &Connection,
    side: Side,
    d: &[u8],
    keylog: &Option<tls::decrypt::SharedKeyLog>,
) {
    st.tries += 1;
    if mysql::looks_like_greeting(d) {
        st.carries = Carries::Mysql;
        st.mysql = Some(Box::new(mysql::Decoder::new(side, mysql::Phase::Greeting)));
    } else if tls::looks_like_record(d) {
        st.carries = Carries::Tls;
        st.tls = Some(Box::new(
            tls::Decoder::new(conn.client, false).with_keys(keylog.clone()),
        ));
    } else if conn.is_client(side)
        && (mysql::framer::exact_chain(d, true) || mysql::compress::looks_compressed(d, true))
    {
        // Picked up after the login: a client command, framed exactly (perhaps inside the
        // compressed protocol; the decoder judges that again, on the same bytes).
        st.carries = Carries::Mysql;
        st.mysql = Some(Box::new(mysql::Decoder::new(
            side.other(),
            mysql::Phase::Command,
        )));
    } else if st.tries >= DETECT_TRIES {
        st.carries = Carries::Other;
    }
}
