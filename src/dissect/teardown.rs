//! The protocol state of a connection at the start of its teardown: what the verdict reads.
//!
//! Every decoded event passes through [`Teardown::observe`] (all of them, not only the kept
//! window), and the state is frozen at the connection's first FIN or RST, so that a reaction
//! after it (an alert answering a FIN, a late response) never changes who started the close, and
//! so that `--events` (a display setting) cannot change a verdict. A connection that never
//! closes is frozen at its end.

use serde::Serialize;

use crate::common::{At, Side};
use crate::event::{Com, Event, Kind, PlainLen};
use crate::mysql::{InFlight, Phase};
use crate::tls::{LastRecord, RecordMeaning};
use tls_parser::{TlsAlertDescription, TlsAlertSeverity};

/// A fact with where it was seen and which side (as `tcp::Connection::ep`) sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// Sending side.
    #[serde(skip)]
    pub side: Side,
    /// Where.
    #[serde(skip)]
    pub at: At,
    /// Frame (for JSON).
    pub frame: u64,
}

impl Seen {
    fn new(side: Side, at: At) -> Seen {
        Seen {
            side,
            at,
            frame: at.frame,
        }
    }
}

/// How a COM_QUIT is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuitBasis {
    /// Read (plaintext MySQL, or decrypted TLS).
    Read,
    /// Written as plaintext bytes inside a TLS stream (ProxySQL closing a TLS backend).
    PlaintextInTls,
    /// Inferred from the size of the client's last TLS record, with nothing from the server
    /// after it.
    RecordSize,
}

/// The client's COM_QUIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Quit {
    /// Where.
    #[serde(flatten)]
    pub seen: Seen,
    /// How it is known.
    pub basis: QuitBasis,
    /// For [`QuitBasis::RecordSize`]: the plaintext size the record implies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext_len: Option<PlainLen>,
}

/// The server's last ERR packet before the teardown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrSeen {
    /// Where.
    #[serde(flatten)]
    pub seen: Seen,
    /// Error code.
    pub code: u16,
    /// It ended (or refused) the login: the server closes after it.
    pub login: bool,
    /// The client sent a command after it (so it was an ordinary reply).
    pub client_spoke_after: bool,
}

/// A TLS alert before the teardown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AlertSeen {
    /// Where.
    #[serde(flatten)]
    pub seen: Seen,
    /// Warning or fatal (None when encrypted), written as its number.
    #[serde(serialize_with = "ser_level")]
    pub level: Option<TlsAlertSeverity>,
    /// Description (None when encrypted), written as its number.
    #[serde(serialize_with = "ser_desc")]
    pub desc: Option<TlsAlertDescription>,
    /// Known from the record's type or size only (encrypted).
    pub inferred: bool,
}

/// Bytes that are not TLS inside a TLS stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PlaintextSeen {
    /// Where.
    #[serde(flatten)]
    pub seen: Seen,
    /// Recognised as a MySQL command (e.g. COM_QUIT), written by its name.
    #[serde(serialize_with = "ser_com_name")]
    pub mysql: Option<Com>,
}

fn ser_level<S: serde::Serializer>(l: &Option<TlsAlertSeverity>, s: S) -> Result<S::Ok, S::Error> {
    l.map(|l| l.0).serialize(s)
}

fn ser_desc<S: serde::Serializer>(
    d: &Option<TlsAlertDescription>,
    s: S,
) -> Result<S::Ok, S::Error> {
    d.map(|d| d.0).serialize(s)
}

fn ser_com_name<S: serde::Serializer>(c: &Option<Com>, s: S) -> Result<S::Ok, S::Error> {
    c.map(Com::name).serialize(s)
}

/// The first FIN or RST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct First {
    /// Where.
    #[serde(flatten)]
    pub seen: Seen,
    /// It was a RST.
    pub rst: bool,
}

/// The last application-data record of a side whose TLS was not decrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RecordSeen {
    /// Where.
    #[serde(flatten)]
    pub seen: Seen,
    /// Record length.
    pub len: u16,
    /// Plaintext length it implies.
    pub plaintext_len: PlainLen,
}

/// The state a verdict is computed from: the protocol as it stood when the first FIN or RST was
/// sent (or at the end, for a connection that never closed).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Teardown {
    /// The first FIN or RST (None: the connection did not close in the capture).
    pub first: Option<First>,
    /// The client's first COM_QUIT before it.
    pub quit: Option<Quit>,
    /// The server's last ERR before it.
    pub err: Option<ErrSeen>,
    /// The first close_notify or fatal alert before it (read, or an encrypted alert record).
    pub alert: Option<AlertSeen>,
    /// The first plaintext bytes inside TLS before it.
    pub plaintext: Option<PlaintextSeen>,
    /// The request whose response had not finished then (read from MySQL).
    pub in_flight: Option<InFlight>,
    /// The client's last command before it (read from MySQL): where, and its command byte.
    pub last_command: Option<(Seen, Com)>,
    /// Undecrypted TLS: the last application record of the client and of the server
    /// (`[client, server]`) before it.
    pub last_record: [Option<RecordSeen>; 2],
    /// The last MySQL or TLS event of the client and of the server (`[client, server]`) before
    /// it: how long each side had been silent.
    pub last_spoke: [Option<Seen>; 2],
    /// Where the MySQL protocol was then.
    pub phase: Option<Phase>,
    /// The MySQL login had succeeded by then.
    pub logged_in: bool,
    /// TLS was being decrypted then.
    pub decrypted: bool,
    /// Undecrypted TLS: application records the client had sent after the handshake.
    pub client_records: u64,
    /// Undecrypted TLS: application records the server had sent.
    pub server_records: u64,
    /// The TLS version was known (a ServerHello was seen).
    pub tls_negotiated: bool,
    /// The state is final (frozen at the first FIN/RST or at the end).
    #[serde(skip)]
    pub frozen: bool,
    /// The client's side.
    #[serde(skip)]
    pub client: Side,
}

/// Decoder state handed over at the freeze.
pub struct Freeze<'a> {
    /// The MySQL request in flight and the phase, if MySQL.
    pub mysql: Option<(&'a Option<InFlight>, Phase, Option<bool>)>,
    /// The last app records of an undecrypted TLS session, by [`Side`].
    pub records: [Option<LastRecord>; 2],
    /// TLS is being decrypted.
    pub decrypted: bool,
    /// The TLS version is known.
    pub tls_negotiated: bool,
}

/// Capture order of two points: frame order within a file, time across files.
pub fn before(a: At, b: At) -> bool {
    a.capture_order(&b).is_lt()
}

impl Teardown {
    /// A record for a connection whose client is `client`.
    pub fn new(client: Side) -> Teardown {
        Teardown {
            client,
            ..Teardown::default()
        }
    }

    /// Index into the `[client, server]` pairs.
    fn role(&self, side: Side) -> usize {
        usize::from(side != self.client)
    }

    /// Takes in one event (before the freeze; after it, nothing changes).
    pub fn observe(&mut self, e: &Event) {
        if self.frozen {
            return;
        }
        let seen = Seen::new(e.side, e.at);
        let from_client = e.side == self.client;
        if !matches!(e.kind.layer(), crate::event::Layer::Tcp) {
            self.last_spoke[self.role(e.side)] = Some(seen);
        }
        match &e.kind {
            Kind::Command { cmd, .. } if from_client => {
                self.last_command = Some((seen, *cmd));
                if let Some(err) = self.err.as_mut() {
                    err.client_spoke_after = true;
                }
                if *cmd == Com::QUIT && self.quit.is_none() {
                    self.quit = Some(Quit {
                        seen,
                        basis: QuitBasis::Read,
                        plaintext_len: None,
                    });
                }
            }
            Kind::Err { code, login, .. } if !from_client => {
                self.err = Some(ErrSeen {
                    seen,
                    code: *code,
                    login: *login,
                    client_spoke_after: false,
                });
            }
            Kind::GreetingErr { code, .. } if !from_client => {
                self.err = Some(ErrSeen {
                    seen,
                    code: *code,
                    login: true,
                    client_spoke_after: false,
                });
            }
            Kind::Alert { level, desc }
                if (*level == TlsAlertSeverity::Fatal
                    || *desc == TlsAlertDescription::CloseNotify)
                    && self.alert.is_none() =>
            {
                self.alert = Some(AlertSeen {
                    seen,
                    level: Some(*level),
                    desc: Some(*desc),
                    inferred: false,
                });
            }
            Kind::EncryptedAlert { .. } if self.alert.is_none() => {
                self.alert = Some(AlertSeen {
                    seen,
                    level: None,
                    desc: None,
                    inferred: true,
                });
            }
            Kind::PlaintextInTls { mysql, .. } => {
                if self.plaintext.is_none() {
                    self.plaintext = Some(PlaintextSeen {
                        seen,
                        mysql: *mysql,
                    });
                }
                if from_client && *mysql == Some(Com::QUIT) && self.quit.is_none() {
                    self.quit = Some(Quit {
                        seen,
                        basis: QuitBasis::PlaintextInTls,
                        plaintext_len: None,
                    });
                }
            }
            Kind::AppData { .. } => {
                if from_client {
                    self.client_records += 1;
                } else {
                    self.server_records += 1;
                }
            }
            _ => {}
        }
    }

    /// The first FIN or RST (`rst`) of the connection, sent by `side` at `at`: the state
    /// freezes. `d` is the decoders' state then.
    pub fn freeze(&mut self, first: Option<(Side, At, bool)>, d: Freeze<'_>) {
        if self.frozen {
            return;
        }
        self.frozen = true;
        self.first = first.map(|(side, at, rst)| First {
            seen: Seen::new(side, at),
            rst,
        });
        if let Some((flight, phase, login_ok)) = d.mysql {
            self.in_flight = flight.clone();
            self.phase = Some(phase);
            self.logged_in = login_ok == Some(true);
        }
        self.decrypted = d.decrypted;
        self.tls_negotiated = d.tls_negotiated;
        if d.decrypted {
            return;
        }
        for side in Side::BOTH {
            if let Some(r) = &d.records[side] {
                self.last_record[self.role(side)] = Some(RecordSeen {
                    seen: Seen::new(side, r.at),
                    len: r.len,
                    plaintext_len: r.plain,
                });
            }
        }
        // Sizes tell what the last record of an undecrypted session held: a client's 1-byte
        // command with nothing from the server after it is its COM_QUIT (a COM_PING would have
        // been answered); a 2-byte record is an alert.
        let [client, server] = self.last_record;
        if let Some(c) = client {
            let after_server = server.is_none_or(|s| before(s.seen.at, c.seen.at));
            let last = LastRecord {
                at: c.seen.at,
                len: c.len,
                plain: c.plaintext_len,
            };
            match last.meaning(d.mysql.is_some()) {
                Some(RecordMeaning::ComQuit) if after_server && self.quit.is_none() => {
                    self.quit = Some(Quit {
                        seen: c.seen,
                        basis: QuitBasis::RecordSize,
                        plaintext_len: Some(c.plaintext_len),
                    });
                }
                Some(RecordMeaning::Alert) if self.alert.is_none() => {
                    self.alert = Some(AlertSeen {
                        seen: c.seen,
                        level: None,
                        desc: None,
                        inferred: true,
                    });
                }
                _ => {}
            }
        }
        if let Some(s) = server {
            let last = LastRecord {
                at: s.seen.at,
                len: s.len,
                plain: s.plaintext_len,
            };
            if last.meaning(false) == Some(RecordMeaning::Alert)
                && self.alert.is_none_or(|a| before(s.seen.at, a.seen.at))
            {
                self.alert = Some(AlertSeen {
                    seen: s.seen,
                    level: None,
                    desc: None,
                    inferred: true,
                });
            }
        }
    }

    /// The client's last request was a 1-byte command (COM_PING, read or by its 5-byte record)
    /// that the server answered just before the teardown: a keep-alive ping.
    pub fn answered_ping(&self) -> bool {
        let first = match self.first {
            Some(f) => f.seen.at,
            None => return false,
        };
        let [client, server] = self.last_record;
        let by_size = match (client, server) {
            (Some(c), Some(s)) => {
                c.plaintext_len.exact() && c.plaintext_len.lo == 5 && before(c.seen.at, s.seen.at)
            }
            _ => false,
        };
        let read =
            self.last_command.is_some_and(|(_, cmd)| cmd == Com::PING) && self.in_flight.is_none();
        let recent = self.last_spoke[1].is_some_and(|s| first.ts.nanos_since(s.at.ts) < 50_000_000);
        (by_size || read) && recent
    }

    /// Undecrypted TLS: the client's last record came after the server's last one and is not a
    /// COM_QUIT or an alert: a request was in flight (judged by record order). `None` when that
    /// cannot be judged.
    pub fn request_by_record_order(&self) -> Option<RecordSeen> {
        let [client, server] = self.last_record;
        let c = client?;
        if self.quit.is_some_and(|q| q.seen.at == c.seen.at)
            || self.alert.is_some_and(|a| a.seen.at == c.seen.at)
        {
            return None;
        }
        // A record too small for any request but a 1-byte command (CBC padding hides which).
        if c.plaintext_len.lo < 5 && !c.plaintext_len.exact() {
            return None;
        }
        match server {
            Some(s) if !before(s.seen.at, c.seen.at) => None,
            _ => Some(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn at(frame: u64) -> At {
        At {
            ts: Timestamp(frame as i64 * 1_000_000),
            frame,
            file: 0,
        }
    }

    fn rec(frame: u64, len: u16, plain: u16) -> Option<LastRecord> {
        Some(LastRecord {
            at: at(frame),
            len,
            plain: PlainLen {
                lo: plain,
                hi: plain,
            },
        })
    }

    fn freeze(t: &mut Teardown, records: [Option<LastRecord>; 2], first: (Side, u64)) {
        let flight = None;
        t.freeze(
            Some((first.0, at(first.1), false)),
            Freeze {
                mysql: Some((&flight, Phase::Tls, None)),
                records,
                decrypted: false,
                tls_negotiated: true,
            },
        );
    }

    #[test]
    fn a_last_five_byte_client_record_is_a_quit_whichever_fin_comes_first() {
        // Client side 0: its 27-byte TLS 1.3 record after the server's last one; the server's FIN
        // happens to come first.
        let mut t = Teardown::new(Side::A);
        freeze(&mut t, [rec(20, 27, 5), rec(18, 100, 83)], (Side::B, 21));
        let q = t.quit.unwrap();
        assert_eq!((q.basis, q.seen.frame), (QuitBasis::RecordSize, 20));
        assert!(t.request_by_record_order().is_none());
    }

    #[test]
    fn a_five_byte_record_the_server_answered_is_a_ping_not_a_quit() {
        let mut t = Teardown::new(Side::A);
        t.last_spoke[1] = Some(Seen::new(Side::B, at(21)));
        freeze(&mut t, [rec(20, 27, 5), rec(21, 28, 11)], (Side::A, 22));
        assert!(t.quit.is_none());
        assert!(t.answered_ping());
    }

    #[test]
    fn a_larger_last_client_record_is_a_request_in_flight() {
        let mut t = Teardown::new(Side::A);
        freeze(&mut t, [rec(20, 78, 61), rec(18, 100, 83)], (Side::B, 21));
        assert!(t.quit.is_none());
        assert_eq!(t.request_by_record_order().map(|r| r.seen.frame), Some(20));
    }

    #[test]
    fn nothing_changes_after_the_freeze() {
        let mut t = Teardown::new(Side::A);
        freeze(&mut t, [None, None], (Side::B, 10));
        t.observe(&Event {
            at: at(11),
            side: Side::A,
            kind: Kind::Alert {
                level: TlsAlertSeverity::Fatal,
                desc: TlsAlertDescription::DecodeError,
            },
        });
        assert!(t.alert.is_none());
    }
}
