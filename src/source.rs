//! Stage 1, capture sources: pcap and pcapng files (plain, gzip-compressed, or stdin) read as a
//! stream of [`Frame`]s, several files merged in timestamp order.
//!
//! A file is read through pcap-parser's streaming reader with a bounded buffer, so memory does
//! not depend on the file's length. A file that stops early (cut off while tcpdump was writing,
//! a corrupt record) keeps every frame before the break and records where it broke.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::{PcapNGPacketBlock, PcapReaderIterator};
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError, PcapNGReader};

use crate::time::Timestamp;

pub mod bpf;

/// A link-layer header type (LINKTYPE_* from tcpdump.org); unknown values flow through intact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Linktype(pub u32);

impl Linktype {
    /// BSD loopback: 4-byte address family in host byte order.
    pub const NULL: Linktype = Linktype(0);
    /// Ethernet II (with optional 802.1Q / QinQ tags).
    pub const ETHERNET: Linktype = Linktype(1);
    /// Raw IP as some BSDs number it.
    pub const RAW_BSD12: Linktype = Linktype(12);
    /// Raw IP as OpenBSD numbers it.
    pub const RAW_BSD14: Linktype = Linktype(14);
    /// Raw IPv4 or IPv6, no link header.
    pub const RAW: Linktype = Linktype(101);
    /// OpenBSD loopback: address family in network byte order.
    pub const LOOP: Linktype = Linktype(108);
    /// Linux "cooked" capture v1 (`tcpdump -i any` before libpcap 1.10).
    pub const LINUX_SLL: Linktype = Linktype(113);
    /// Raw IPv4.
    pub const IPV4: Linktype = Linktype(228);
    /// Raw IPv6.
    pub const IPV6: Linktype = Linktype(229);
    /// Linux "cooked" capture v2 (`tcpdump -i any` with libpcap ≥ 1.10).
    pub const LINUX_SLL2: Linktype = Linktype(276);

    /// A short name for reports (`ETHERNET`, `LINUX_SLL2`, … or the number).
    pub fn name(self) -> String {
        match self {
            Self::NULL => "NULL".into(),
            Self::ETHERNET => "ETHERNET".into(),
            Self::RAW | Self::RAW_BSD12 | Self::RAW_BSD14 => "RAW".into(),
            Self::LOOP => "LOOP".into(),
            Self::LINUX_SLL => "LINUX_SLL".into(),
            Self::IPV4 => "IPV4".into(),
            Self::IPV6 => "IPV6".into(),
            Self::LINUX_SLL2 => "LINUX_SLL2".into(),
            Linktype(n) => format!("{n}"),
        }
    }
}

/// One captured frame, borrowed from the reader until the next call.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture timestamp.
    pub ts: Timestamp,
    /// 1-based frame number within its file, as tshark and Wireshark count.
    pub frame_no: u64,
    /// Index of the file in the run (0 for the first file named).
    pub file: usize,
    /// pcapng interface id (0 for pcap).
    pub interface: u32,
    /// Link-layer type of the frame's interface.
    pub linktype: Linktype,
    /// Captured bytes (possibly fewer than `orig_len` when the snap length cut the frame).
    pub data: &'a [u8],
    /// Length of the frame on the wire.
    pub orig_len: u32,
}

/// Why a capture file could not be opened at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file as named on the command line.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The first bytes are not a pcap or pcapng magic number.
    #[error("{path}: not a pcap or pcapng capture ({looks_like})")]
    NotCapture {
        /// The file as named on the command line.
        path: String,
        /// What the first bytes look like instead.
        looks_like: String,
    },
    /// The magic number is right but the file header is broken.
    #[error("{path}: broken {format} file header: {what}")]
    BadHeader {
        /// The file as named on the command line.
        path: String,
        /// `pcap` or `pcapng`.
        format: &'static str,
        /// What is wrong.
        what: String,
    },
}

/// Where and why a file stopped before its natural end. Everything before it was analysed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Stop {
    /// Byte offset (in the uncompressed stream) where the unreadable record starts.
    pub byte: u64,
    /// Number of the last frame read before the break (0 if none).
    pub after_frame: u64,
    /// What went wrong.
    pub what: StopKind,
}

/// The kinds of early stop.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    /// The file ends in the middle of a record.
    Truncated,
    /// A record could not be parsed (garbage, or an impossible length).
    Corrupt(String),
    /// Reading failed (I/O error, or corrupt gzip data).
    ReadError,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            StopKind::Truncated => write!(f, "truncated at byte {}", self.byte)?,
            StopKind::Corrupt(what) => write!(f, "corrupt record at byte {} ({what})", self.byte)?,
            StopKind::ReadError => write!(f, "read error at byte {}", self.byte)?,
        }
        write!(f, " after frame {}", self.after_frame)
    }
}

/// What was learnt about one file while reading it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FileInfo {
    /// The file as named on the command line (`-` for stdin).
    pub path: String,
    /// `pcap` or `pcapng`.
    pub format: &'static str,
    /// The file was gzip-compressed.
    pub gzip: bool,
    /// pcap only: timestamps have nanosecond resolution.
    pub nanosecond: bool,
    /// Link types of the file's interfaces, as declared.
    pub linktypes: Vec<u32>,
    /// Frames (packet records) read.
    pub frames: u64,
    /// Bytes of the (uncompressed) file consumed.
    pub bytes: u64,
    /// pcapng blocks that are not packets and were passed over, by kind.
    pub other_blocks: u64,
    /// pcapng packets naming an interface that was never declared (skipped).
    pub undeclared_interface: u64,
    /// Decryption Secrets Blocks found (their contents are handed out by
    /// [`Sources::take_secrets`]).
    pub secrets_blocks: u64,
    /// pcapng interfaces declared beyond [`MAX_INTERFACES`] (their packets are undeclared).
    pub interfaces_dropped: u64,
    /// Link types declared beyond the first [`MAX_LINKTYPES`] listed (counted).
    pub linktypes_unlisted: u64,
    /// Decryption secrets bytes not kept: the per-file cap was full.
    pub secrets_dropped: u64,
    /// Set when the file stopped before its end.
    pub stop: Option<Stop>,
    /// With several files: this file's clock against the first file's, and the shift applied
    /// to its timestamps (absent for a single file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<Clock>,
}

/// How a file's clock offset was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ClockBasis {
    /// The first file: the clock the others are set against.
    #[serde(rename = "reference")]
    Reference,
    /// Estimated from TCP segments seen both in this file and in the first.
    #[serde(rename = "matched segments")]
    MatchedSegments,
    /// Estimated from payloads a proxy relayed from one leg to the other, seen in this file on
    /// one leg and in a file whose clock is known on the other (no segment in common).
    #[serde(rename = "relayed payloads")]
    RelayedPayloads,
    /// Given on the command line (`--clock-offset`).
    #[serde(rename = "given")]
    Given,
    /// Not known (no segment in common with the first file): not shifted.
    #[serde(rename = "none")]
    None,
}

/// A file's clock against the first file's: its timestamps are moved back by `offset_ns`
/// before files are merged, so that the same moment has the same time in every file.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Clock {
    /// This file's clock minus the first file's, in nanoseconds (serialised as seconds).
    #[serde(rename = "offset_s", serialize_with = "ser_secs")]
    pub offset_ns: i64,
    /// How far the matched deltas spread (their interquartile range), in nanoseconds.
    #[serde(rename = "spread_s", serialize_with = "ser_opt_secs")]
    pub spread_ns: Option<i64>,
    /// Segments matched with the first file.
    pub matches: u64,
    /// Drift of this clock against the first, in parts per million; None when the matches
    /// do not span long enough to tell. When known it is corrected: the shift at time `t` is
    /// `offset_ns + drift_ppm × (t − at) / 10⁶`.
    pub drift_ppm: Option<f64>,
    /// The time at which `offset_ns` holds (ns since the epoch, the first file's clock),
    /// as an RFC 3339 string in JSON; None without a drift.
    #[serde(rename = "offset_at", serialize_with = "ser_opt_time")]
    pub at_ns: Option<i64>,
    /// The file (by run index) whose segments this clock was matched with when it shares none
    /// with the first file: its offset is this one's against that file plus that file's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<usize>,
    /// Where the offset comes from.
    pub basis: ClockBasis,
}

impl Clock {
    /// The first file's clock (shifted by `offset_ns` when one was given for it).
    pub fn reference(given_ns: Option<i64>) -> Clock {
        Clock {
            offset_ns: given_ns.unwrap_or(0),
            spread_ns: None,
            matches: 0,
            drift_ppm: None,
            at_ns: None,
            via: None,
            basis: if given_ns.is_some() {
                ClockBasis::Given
            } else {
                ClockBasis::Reference
            },
        }
    }

    /// The shift at `raw_ns` (this file's own clock, ns since the epoch): the offset, plus
    /// the drift since [`Clock::at_ns`] when both are known.
    pub fn shift_at(&self, raw_ns: i64) -> i64 {
        match (self.drift_ppm, self.at_ns) {
            (Some(d), Some(at)) => self
                .offset_ns
                .saturating_add((d * raw_ns.saturating_sub(at) as f64 / 1e6) as i64),
            _ => self.offset_ns,
        }
    }

    /// In words, for reports: `clock +2.503 s against FILE (412 segments matched, spread
    /// 0.2 ms, no drift measured)`; `reference` names the first file and `via` the file it
    /// was matched with when that is another one.
    pub fn describe(&self, reference: &str, via: Option<&str>) -> String {
        let secs = self.offset_ns as f64 / 1e9;
        let against = match via {
            Some(v) if self.via.is_some() => format!("{reference} through {v}"),
            _ => reference.to_string(),
        };
        match self.basis {
            ClockBasis::Reference => "its clock the reference for the other files".to_string(),
            ClockBasis::Given => format!("clock {secs:+.6} s (given), shifted by it"),
            ClockBasis::None => {
                format!("clock unknown against {reference} (no segment seen in both), not shifted")
            }
            ClockBasis::MatchedSegments | ClockBasis::RelayedPayloads => format!(
                "clock {secs:+.6} s against {against} ({} {} matched, spread {:.3} ms, {})",
                self.matches,
                if self.basis == ClockBasis::RelayedPayloads {
                    "payloads relayed between legs"
                } else {
                    "segments"
                },
                self.spread_ns.unwrap_or(0) as f64 / 1e6,
                match self.drift_ppm {
                    Some(d) => format!("drift {d:+.2} ppm, corrected"),
                    None => "too short to measure drift".to_string(),
                }
            ),
        }
    }
}

fn ser_secs<S: serde::Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(*ns as f64 / 1e9)
}

fn ser_opt_time<S: serde::Serializer>(ns: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ns {
        Some(n) => s.serialize_str(&crate::time::Timestamp(*n).rfc3339().to_string()),
        None => s.serialize_none(),
    }
}

fn ser_opt_secs<S: serde::Serializer>(ns: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ns {
        Some(n) => s.serialize_f64(*n as f64 / 1e9),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: Linktype,
    /// Timestamp units per second.
    resolution: u64,
    /// Seconds added to every timestamp (pcapng `if_tsoffset`).
    offset_secs: i64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Current {
    ts: Timestamp,
    frame_no: u64,
    interface: u32,
    linktype: Linktype,
    orig_len: u32,
}

impl Default for Linktype {
    fn default() -> Self {
        Linktype::ETHERNET
    }
}

/// Grown on demand (up to [`MAX_BUFFER`]) when a record is larger; small so short inputs start fast.
const INITIAL_BUFFER: usize = 1 << 16;
/// Largest record we accept; beyond this a length field is garbage, not a packet.
const MAX_BUFFER: usize = 1 << 24;
/// Secrets type of a TLS key log in a pcapng Decryption Secrets Block.
pub const TLS_KEY_LOG: u32 = 0x544c_534b;
/// Cap on the decryption secrets waiting to be taken, so a hostile file cannot exhaust memory.
const MAX_SECRETS: usize = 1 << 24;
/// Interfaces a pcapng section may declare (ids are u32; real captures have a handful).
pub const MAX_INTERFACES: usize = 4096;
/// Link types listed in [`FileInfo::linktypes`]; the rest are counted.
pub const MAX_LINKTYPES: usize = 64;

/// Decryption Secrets Blocks read and not taken yet: (secrets type, bytes), and their size.
#[derive(Default)]
struct PendingSecrets {
    list: Vec<(u32, Vec<u8>)>,
    bytes: usize,
}

/// One open capture file, read frame by frame.
pub struct CaptureFile {
    /// Facts about the file, complete once it has been read to its end.
    pub info: FileInfo,
    /// Contents of pcapng Decryption Secrets Blocks not taken yet.
    secrets: PendingSecrets,
    index: usize,
    reader: Box<dyn PcapReaderIterator + Send>,
    interfaces: Vec<Interface>,
    /// pcap only: the single interface.
    legacy: Option<Interface>,
    to_consume: usize,
    buffer_size: usize,
    cur: Current,
    buf: Vec<u8>,
    has_cur: bool,
    done: bool,
    /// gzip input: compressed bytes read so far.
    compressed: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// Nanoseconds taken off every timestamp (the file's clock offset).
    shift_ns: i64,
    /// With a drift: the clock whose shift is worked out per frame.
    drifting: Option<Clock>,
}

/// Counts the bytes read through it (the compressed side of a gzip input).
struct Counted(
    Box<dyn Read + Send>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
);

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

enum Step {
    Frame,
    Skip,
    Refill,
    Eof,
    Grow,
    Stop(StopKind),
}

impl CaptureFile {
    /// Opens `path` (`-` is standard input); `index` is its position in the run.
    pub fn open(path: &str, index: usize) -> Result<CaptureFile, OpenError> {
        let raw: Box<dyn Read + Send> = if path == "-" {
            Box::new(io::stdin())
        } else {
            let io_err = |source| OpenError::Io {
                path: path.to_string(),
                source,
            };
            if Path::new(path).is_dir() {
                return Err(io_err(io::Error::other("is a directory")));
            }
            Box::new(File::open(path).map_err(io_err)?)
        };
        Self::from_read(path, index, raw)
    }

    /// Reads a capture from any byte stream (gzip is detected); `name` is used in messages.
    pub fn from_read(
        name: &str,
        index: usize,
        raw: Box<dyn Read + Send>,
    ) -> Result<CaptureFile, OpenError> {
        let io_err = |source| OpenError::Io {
            path: name.to_string(),
            source,
        };
        let (magic, mut input) = peek(raw, 4).map_err(io_err)?;
        let mut gzip = false;
        let mut magic = magic;
        let mut compressed = None;
        if magic.starts_with(&[0x1f, 0x8b]) {
            gzip = true;
            // Progress is measured against the file's size: count the compressed bytes read.
            let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counted = Counted(input, read.clone());
            let gz: Box<dyn Read + Send> = Box::new(MultiGzDecoder::new(BufReader::new(counted)));
            let (m, i) = peek(gz, 4).map_err(io_err)?;
            magic = m;
            input = i;
            compressed = Some(read);
        }
        let mut file = Self::from_reader(name, index, magic, input, gzip)?;
        file.compressed = compressed;
        Ok(file)
    }

    fn from_reader(
        path: &str,
        index: usize,
        magic: Vec<u8>,
        input: Box<dyn Read + Send>,
        gzip: bool,
    ) -> Result<CaptureFile, OpenError> {
        let m = match <[u8; 4]>::try_from(magic.as_slice()) {
            Ok(m) => u32::from_be_bytes(m),
            Err(_) => {
                return Err(OpenError::NotCapture {
                    path: path.into(),
                    looks_like: describe(&magic, gzip),
                })
            }
        };
        let bad = |format: &'static str, e: PcapError<&[u8]>| OpenError::BadHeader {
            path: path.into(),
            format,
            what: match e {
                PcapError::Incomplete(_) | PcapError::UnexpectedEof | PcapError::Eof => {
                    "the file ends inside its header".into()
                }
                other => format!("{other:?}"),
            },
        };
        let mut info = FileInfo {
            path: path.into(),
            gzip,
            ..FileInfo::default()
        };
        let (reader, legacy): (Box<dyn PcapReaderIterator + Send>, _) = match m {
            0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 | 0xa1b2_cd34 | 0x34cd_b2a1 => {
                let r = LegacyPcapReader::new(INITIAL_BUFFER, input).map_err(|e| bad("pcap", e))?;
                info.format = "pcap";
                (Box::new(r), None)
            }
            0x0a0d_0d0a => {
                let r = PcapNGReader::new(INITIAL_BUFFER, input).map_err(|e| bad("pcapng", e))?;
                info.format = "pcapng";
                (Box::new(r), None)
            }
            _ => {
                return Err(OpenError::NotCapture {
                    path: path.into(),
                    looks_like: describe(&magic, gzip),
                })
            }
        };
        Ok(CaptureFile {
            info,
            secrets: PendingSecrets::default(),
            index,
            reader,
            interfaces: Vec::new(),
            legacy,
            to_consume: 0,
            buffer_size: INITIAL_BUFFER,
            cur: Current::default(),
            buf: Vec::new(),
            has_cur: false,
            done: false,
            compressed: None,
            shift_ns: 0,
            drifting: None,
        })
    }

    /// The frame loaded by the last successful [`advance`](Self::advance).
    pub fn current(&self) -> Option<Frame<'_>> {
        self.has_cur.then(|| Frame {
            ts: Timestamp(self.cur.ts.0.saturating_sub(match &self.drifting {
                Some(c) => c.shift_at(self.cur.ts.0),
                None => self.shift_ns,
            })),
            frame_no: self.cur.frame_no,
            file: self.index,
            interface: self.cur.interface,
            linktype: self.cur.linktype,
            data: &self.buf,
            orig_len: self.cur.orig_len,
        })
    }

    /// Sets the file's clock: from now on its frames' timestamps are moved back by the
    /// clock's offset (recorded in [`FileInfo::clock`]).
    pub fn set_clock(&mut self, clock: Clock) {
        self.shift_ns = clock.offset_ns;
        self.drifting = (clock.drift_ppm.is_some() && clock.at_ns.is_some()).then_some(clock);
        self.info.clock = Some(clock);
    }

    /// Index of the file in the run.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Bytes of the input consumed so far, for progress reports: as stored, so compressed
    /// bytes read for a gzip input (comparable with the file's size).
    pub fn consumed(&self) -> u64 {
        match &self.compressed {
            Some(read) => read.load(std::sync::atomic::Ordering::Relaxed),
            None => self.reader.consumed() as u64,
        }
    }

    /// Loads the next frame; false at the end of the file or where it broke (see `info.stop`).
    pub fn advance(&mut self) -> bool {
        self.has_cur = false;
        while !self.done {
            if self.to_consume > 0 {
                self.reader.consume(self.to_consume);
                self.to_consume = 0;
            }
            let step = match self.reader.next() {
                Ok((len, block)) => {
                    self.to_consume = len;
                    load_block(
                        block,
                        &mut self.info,
                        &mut self.secrets,
                        &mut self.interfaces,
                        &mut self.legacy,
                        &mut self.cur,
                        &mut self.buf,
                    )
                }
                Err(PcapError::Eof) => Step::Eof,
                Err(PcapError::Incomplete(_)) => Step::Refill,
                Err(PcapError::UnexpectedEof) => Step::Stop(StopKind::Truncated),
                Err(PcapError::BufferTooSmall) => Step::Grow,
                Err(PcapError::ReadError) => Step::Stop(StopKind::ReadError),
                Err(e) => Step::Stop(StopKind::Corrupt(nom_error(&e))),
            };
            match step {
                Step::Frame => {
                    self.info.frames += 1;
                    self.cur.frame_no = self.info.frames;
                    self.info.bytes = (self.reader.consumed() + self.to_consume) as u64;
                    self.has_cur = true;
                    return true;
                }
                Step::Skip => {}
                Step::Refill => {
                    if self.reader.refill().is_err() {
                        self.stop(StopKind::ReadError);
                    }
                }
                Step::Grow => {
                    let next = self.buffer_size.saturating_mul(2);
                    if next > MAX_BUFFER || !self.reader.grow(next) {
                        self.stop(StopKind::Corrupt(format!(
                            "record length beyond {} MiB",
                            MAX_BUFFER >> 20
                        )));
                    } else {
                        self.buffer_size = next;
                        if self.reader.refill().is_err() {
                            self.stop(StopKind::ReadError);
                        }
                    }
                }
                Step::Eof => {
                    self.info.bytes = self.reader.consumed() as u64;
                    self.done = true;
                }
                Step::Stop(kind) => self.stop(kind),
            }
        }
        false
    }

    fn stop(&mut self, what: StopKind) {
        self.to_consume = 0;
        let byte = self.reader.consumed() as u64;
        self.info.bytes = byte;
        self.info.stop = Some(Stop {
            byte,
            after_frame: self.info.frames,
            what,
        });
        self.done = true;
    }
}

/// Turns one block into the current frame (returns `Step::Frame`) or records what it says.
fn load_block(
    block: PcapBlockOwned<'_>,
    info: &mut FileInfo,
    secrets: &mut PendingSecrets,
    interfaces: &mut Vec<Interface>,
    legacy: &mut Option<Interface>,
    cur: &mut Current,
    buf: &mut Vec<u8>,
) -> Step {
    let prev_ts = cur.ts;
    let mut set = |ts: Timestamp, iface: u32, lt: Linktype, data: &[u8], orig: u32| {
        cur.ts = ts;
        cur.interface = iface;
        cur.linktype = lt;
        cur.orig_len = orig.max(data.len() as u32);
        buf.clear();
        buf.extend_from_slice(data);
        Step::Frame
    };
    match block {
        PcapBlockOwned::LegacyHeader(h) => {
            info.nanosecond = h.is_nanosecond_precision();
            info.linktypes = vec![h.network.0 as u32];
            *legacy = Some(Interface {
                linktype: Linktype(h.network.0 as u32),
                resolution: if info.nanosecond {
                    1_000_000_000
                } else {
                    1_000_000
                },
                // `thiszone` is always 0 in practice and tshark ignores it too.
                offset_secs: 0,
            });
            Step::Skip
        }
        PcapBlockOwned::Legacy(b) => {
            let Some(iface) = *legacy else {
                return Step::Stop(StopKind::Corrupt("packet before the file header".into()));
            };
            let scale = 1_000_000_000 / iface.resolution as i64;
            let ts = Timestamp::from_parts(
                i64::from(b.ts_sec) + iface.offset_secs,
                i64::from(b.ts_usec) * scale,
            );
            set(ts, 0, iface.linktype, b.data, b.origlen)
        }
        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
            // Interface ids are scoped to their section.
            interfaces.clear();
            Step::Skip
        }
        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
            let lt = Linktype(idb.linktype.0 as u32);
            if info.linktypes.len() < MAX_LINKTYPES {
                info.linktypes.push(lt.0);
            } else {
                info.linktypes_unlisted += 1;
            }
            if interfaces.len() >= MAX_INTERFACES {
                info.interfaces_dropped += 1;
                return Step::Skip;
            }
            interfaces.push(Interface {
                linktype: lt,
                resolution: idb.ts_resolution().filter(|r| *r > 0).unwrap_or(1_000_000),
                offset_secs: idb.ts_offset(),
            });
            Step::Skip
        }
        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
            let Some(iface) = interfaces.get(epb.if_id as usize).copied() else {
                info.undeclared_interface += 1;
                return Step::Skip;
            };
            let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
            let secs = raw / iface.resolution;
            let frac = raw % iface.resolution;
            let nanos = (u128::from(frac) * 1_000_000_000 / u128::from(iface.resolution)) as i64;
            let ts = Timestamp::from_parts(
                i64::try_from(secs)
                    .unwrap_or(i64::MAX)
                    .saturating_add(iface.offset_secs),
                nanos,
            );
            set(
                ts,
                epb.if_id,
                iface.linktype,
                epb.packet_data(),
                epb.origlen,
            )
        }
        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
            // No timestamp and always interface 0: keep the previous frame's time.
            let Some(iface) = interfaces.first().copied() else {
                info.undeclared_interface += 1;
                return Step::Skip;
            };
            set(prev_ts, 0, iface.linktype, spb.packet_data(), spb.origlen)
        }
        PcapBlockOwned::NG(Block::DecryptionSecrets(dsb)) => {
            info.secrets_blocks += 1;
            if secrets.bytes + dsb.data.len() <= MAX_SECRETS {
                secrets.bytes += dsb.data.len();
                secrets.list.push((dsb.secrets_type.0, dsb.data.to_vec()));
            } else {
                info.secrets_dropped += dsb.data.len() as u64;
            }
            Step::Skip
        }
        PcapBlockOwned::NG(_) => {
            info.other_blocks += 1;
            Step::Skip
        }
    }
}

fn nom_error(e: &PcapError<&[u8]>) -> String {
    match e {
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("unparseable block: {}", kind.description())
        }
        PcapError::HeaderNotRecognized => "header not recognized".into(),
        other => format!("{other:?}"),
    }
}

/// Reads up to `n` bytes and hands back a reader that still yields them first.
fn peek(mut r: Box<dyn Read + Send>, n: usize) -> io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
    let mut prefix = Vec::with_capacity(n);
    let mut chunk = [0u8; 16];
    while prefix.len() < n {
        let want = (n - prefix.len()).min(chunk.len());
        let got = match r.read(chunk.get_mut(..want).unwrap_or(&mut [])) {
            Ok(g) => g,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if got == 0 {
            break;
        }
        prefix.extend_from_slice(chunk.get(..got).unwrap_or(&[]));
    }
    let again: Box<dyn Read + Send> = Box::new(Fill(Cursor::new(prefix.clone()).chain(r)));
    Ok((prefix, again))
}

/// A reader that fills the caller's buffer as far as the input allows.
///
/// pcap-parser reads a file header with a single `read` call; a pipe, a gzip stream or our own
/// peeked prefix can return fewer bytes than are available, which would look like a short file.
struct Fill<R>(R);

impl<R: Read> Read for Fill<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.0.read(buf.get_mut(n..).unwrap_or(&mut [])) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if n > 0 => {
                    // Report what we have; the error comes back on the next call.
                    let _ = e;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// Says in words what a non-capture file looks like, from its first bytes.
fn describe(magic: &[u8], gzip: bool) -> String {
    let inner = if gzip { "gzip data holding " } else { "" };
    let what = match magic {
        [] => "empty: 0 bytes".to_string(),
        m if m.len() < 4 => format!("only {} bytes", m.len()),
        [b'P', b'K', 3, 4, ..] => "a zip archive".into(),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd data".into(),
        [b'B', b'Z', b'h', ..] => "bzip2 data".into(),
        [0xfd, b'7', b'z', b'X', ..] => "xz data".into(),
        [0x7f, b'E', b'L', b'F', ..] => "an ELF executable".into(),
        m if m
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) =>
        {
            format!("text starting {:?}", String::from_utf8_lossy(m))
        }
        m => format!(
            "unknown magic {}",
            m.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    };
    format!("{inner}{what}")
}

/// Bytes of a non-seekable input (pipe, FIFO, process substitution, standard input) that the
/// first pass may read; they are kept in an unlinked temporary file for the second pass.
pub const MAX_SPOOL: u64 = 1 << 30;

/// An input read by two passes (the light pass that finds proxies, then the analysis): a
/// regular file is opened twice; anything else is read once, the first pass's bytes spooled
/// to a bounded temporary file and replayed before the rest of the stream.
pub enum Input {
    /// A regular file, opened anew by each pass.
    File(String),
    /// A stream read once.
    Stream(String, std::sync::Arc<std::sync::Mutex<Spool>>),
}

/// The state of a spooled stream.
pub struct Spool {
    inner: Box<dyn Read + Send>,
    file: Option<File>,
    len: u64,
    limit: u64,
}

impl Input {
    /// Prepares `path` (`-` is standard input); a regular file is only checked later, when a
    /// pass opens it.
    pub fn new(path: &str) -> Result<Input, OpenError> {
        let regular = path != "-" && std::fs::metadata(path).is_ok_and(|m| m.is_file());
        if regular || (path != "-" && std::fs::metadata(path).is_err()) {
            return Ok(Input::File(path.to_string()));
        }
        let io_err = |source| OpenError::Io {
            path: path.to_string(),
            source,
        };
        if Path::new(path).is_dir() {
            return Err(io_err(io::Error::other("is a directory")));
        }
        let inner: Box<dyn Read + Send> = if path == "-" {
            Box::new(io::stdin())
        } else {
            Box::new(File::open(path).map_err(io_err)?)
        };
        Ok(Input::Stream(
            path.to_string(),
            std::sync::Arc::new(std::sync::Mutex::new(Spool {
                inner,
                file: None,
                len: 0,
                limit: MAX_SPOOL,
            })),
        ))
    }

    /// The name given on the command line.
    pub fn path(&self) -> &str {
        match self {
            Input::File(p) | Input::Stream(p, _) => p,
        }
    }

    /// True for a regular file (it can be read any number of times).
    pub fn rereadable(&self) -> bool {
        matches!(self, Input::File(_))
    }

    /// Opens the input for the first pass: a stream is recorded as it is read.
    pub fn open_first(&self, index: usize) -> Result<CaptureFile, OpenError> {
        match self {
            Input::File(p) => CaptureFile::open(p, index),
            Input::Stream(p, spool) => {
                CaptureFile::from_read(p, index, Box::new(Tee(spool.clone())))
            }
        }
    }

    /// Opens the input for the analysis: a stream replays what the first pass recorded, then
    /// goes on reading.
    pub fn open(&self, index: usize) -> Result<CaptureFile, OpenError> {
        match self {
            Input::File(p) => CaptureFile::open(p, index),
            Input::Stream(p, spool) => {
                let mut sp = spool.lock().map_err(|_| OpenError::Io {
                    path: p.clone(),
                    source: io::Error::other("spool lock poisoned"),
                })?;
                sp.limit = 0;
                if let Some(f) = sp.file.as_mut() {
                    use std::io::Seek;
                    f.seek(io::SeekFrom::Start(0))
                        .map_err(|source| OpenError::Io {
                            path: p.clone(),
                            source,
                        })?;
                }
                drop(sp);
                CaptureFile::from_read(p, index, Box::new(Replay(spool.clone(), 0)))
            }
        }
    }
}

/// An unlinked temporary file, private to this process.
fn spool_file() -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    for n in 0..100u32 {
        let p = dir.join(format!("proxyscope-spool-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&p);
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free temporary file name"))
}

/// The first pass's reader of a stream: what it reads is appended to the spool; past the
/// spool's limit it sees the end of the input (the first pass only samples).
struct Tee(std::sync::Arc<std::sync::Mutex<Spool>>);

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut sp = self
            .0
            .lock()
            .map_err(|_| io::Error::other("spool lock poisoned"))?;
        let room = sp.limit.saturating_sub(sp.len);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let Some(part) = buf.get_mut(..want) else {
            return Ok(0);
        };
        let n = sp.inner.read(part)?;
        if n > 0 {
            if sp.file.is_none() {
                sp.file = Some(spool_file()?);
            }
            let data = part.get(..n).unwrap_or_default();
            if let Some(f) = sp.file.as_mut() {
                f.write_all(data)?;
            }
            sp.len += n as u64;
        }
        Ok(n)
    }
}

/// The analysis's reader of a stream: the spooled bytes, then the rest of the stream.
struct Replay(std::sync::Arc<std::sync::Mutex<Spool>>, u64);

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut sp = self
            .0
            .lock()
            .map_err(|_| io::Error::other("spool lock poisoned"))?;
        if self.1 < sp.len {
            let room = sp.len - self.1;
            let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            let n = match (sp.file.as_mut(), buf.get_mut(..want)) {
                (Some(f), Some(part)) => f.read(part)?,
                _ => 0,
            };
            if n == 0 {
                return Err(io::Error::other("the spooled input was cut short"));
            }
            self.1 += n as u64;
            return Ok(n);
        }
        if sp.file.take().is_some() {
            // Replayed: the temporary file is closed (and, being unlinked, gone).
        }
        sp.inner.read(buf)
    }
}

/// Several capture files read as one stream, merged by timestamp (ties go to the earlier file).
///
/// Within one file, frames keep file order even when their timestamps go backwards: a bogus
/// timestamp must not reorder a TCP conversation.
pub struct Sources {
    files: Vec<CaptureFile>,
    started: bool,
    last: Option<usize>,
}

impl Sources {
    /// Wraps files already opened, in command-line order.
    pub fn new(files: Vec<CaptureFile>) -> Self {
        Sources {
            files,
            started: false,
            last: None,
        }
    }

    /// The next frame of the merged stream, valid until the next call.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        if !self.started {
            self.started = true;
            for f in &mut self.files {
                f.advance();
            }
        } else if let Some(i) = self.last {
            if let Some(f) = self.files.get_mut(i) {
                f.advance();
            }
        }
        let mut best: Option<(usize, Timestamp)> = None;
        for (i, f) in self.files.iter().enumerate() {
            if let Some(fr) = f.current() {
                if best.is_none_or(|(_, t)| fr.ts < t) {
                    best = Some((i, fr.ts));
                }
            }
        }
        self.last = best.map(|(i, _)| i);
        let (i, _) = best?;
        self.files.get(i).and_then(|f| f.current())
    }

    /// Sets the clocks of the files, by run index (`clocks[i]` for the file opened as `i`);
    /// before the first frame is read.
    pub fn set_clocks(&mut self, clocks: &[Clock]) {
        for f in &mut self.files {
            if let Some(c) = clocks.get(f.index) {
                f.set_clock(*c);
            }
        }
    }

    /// The files, for their [`FileInfo`] and secrets.
    pub fn files(&self) -> &[CaptureFile] {
        &self.files
    }

    /// True when Decryption Secrets Blocks were read and not taken yet.
    pub fn has_secrets(&self) -> bool {
        self.files.iter().any(|f| !f.secrets.list.is_empty())
    }

    /// Takes the TLS key logs among the secrets read since the last call, in file order
    /// (each block is handed out once: nothing accumulates here).
    pub fn take_secrets(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for f in &mut self.files {
            f.secrets.bytes = 0;
            out.extend(
                f.secrets
                    .list
                    .drain(..)
                    .filter(|(t, _)| *t == TLS_KEY_LOG)
                    .map(|(_, s)| s),
            );
        }
        out
    }

    /// Bytes consumed across all files as stored (compressed for gzip), for progress reports.
    pub fn consumed(&self) -> u64 {
        self.files.iter().map(|f| f.consumed()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_header(linktype: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&0i32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&linktype.to_le_bytes());
        v
    }

    fn record(v: &mut Vec<u8>, sec: u32, usec: u32, data: &[u8]) {
        v.extend_from_slice(&sec.to_le_bytes());
        v.extend_from_slice(&usec.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
    }

    fn open_bytes(bytes: Vec<u8>) -> Result<CaptureFile, OpenError> {
        let (magic, r) = peek(Box::new(Cursor::new(bytes)), 4).unwrap();
        CaptureFile::from_reader("mem", 0, magic, r, false)
    }

    #[test]
    fn reads_frames_and_reports_truncation() {
        let mut v = pcap_header(1);
        record(&mut v, 10, 5, &[1, 2, 3]);
        record(&mut v, 11, 6, &[4, 5]);
        let full = v.len();
        record(&mut v, 12, 7, &[9; 40]);
        v.truncate(full + 20);
        let mut f = open_bytes(v).unwrap();
        assert!(f.advance());
        let fr = f.current().unwrap();
        assert_eq!((fr.frame_no, fr.data), (1, &[1u8, 2, 3][..]));
        assert_eq!(fr.ts, Timestamp::from_parts(10, 5_000));
        assert!(f.advance());
        assert!(!f.advance());
        let stop = f.info.stop.clone().unwrap();
        assert_eq!(stop.what, StopKind::Truncated);
        assert_eq!(stop.after_frame, 2);
        assert_eq!(stop.byte, full as u64);
        assert_eq!(
            stop.to_string(),
            format!("truncated at byte {full} after frame 2")
        );
    }

    #[test]
    fn clean_end_has_no_stop() {
        let mut v = pcap_header(1);
        record(&mut v, 1, 0, &[0; 60]);
        let mut f = open_bytes(v).unwrap();
        assert!(f.advance());
        assert!(!f.advance());
        assert!(f.info.stop.is_none());
        assert_eq!(f.info.frames, 1);
    }

    #[test]
    fn absurd_record_length_is_corrupt_not_a_panic() {
        let mut v = pcap_header(1);
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
        v.extend_from_slice(&[0u8; 100]);
        let mut f = open_bytes(v).unwrap();
        assert!(!f.advance());
        let stop = f.info.stop.clone().unwrap();
        assert!(
            matches!(stop.what, StopKind::Corrupt(_) | StopKind::Truncated),
            "{stop:?}"
        );
    }

    #[test]
    fn describes_non_captures() {
        for (bytes, want) in [
            (vec![], "empty: 0 bytes"),
            (b"hello world\n".to_vec(), "text starting \"hell\""),
            (vec![1, 2, 3, 4, 5], "unknown magic 01020304"),
            (vec![7], "only 1 bytes"),
        ] {
            match open_bytes(bytes) {
                Err(OpenError::NotCapture { looks_like, .. }) => assert_eq!(looks_like, want),
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("accepted"),
            }
        }
    }
}
