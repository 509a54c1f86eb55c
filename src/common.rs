//! Small types every stage shares: where a piece of evidence is ([`At`]), one end of a TCP
//! connection ([`Endpoint`]) and which of its two sides sent something ([`Side`]). They sit below all stages so that no stage imports a later one
//! for them.

use std::fmt;
use std::net::IpAddr;

use crate::time::Timestamp;

/// Where a piece of evidence is: its timestamp, frame number and file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    /// Capture timestamp.
    pub ts: Timestamp,
    /// Frame number within its file (1-based).
    pub frame: u64,
    /// File index within the run.
    pub file: usize,
}

impl At {
    /// Capture order: frame order within a file (a file's timestamps may step back, its frame
    /// order does not), time across files (frame numbers of two files say nothing about each
    /// other), then the file index.
    pub fn capture_order(&self, other: &At) -> std::cmp::Ordering {
        if self.file == other.file {
            self.frame.cmp(&other.frame)
        } else {
            self.ts.cmp(&other.ts).then(self.file.cmp(&other.file))
        }
    }
}

/// One end of a TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Endpoint {
    /// IP address.
    pub ip: IpAddr,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// One of a connection's two endpoints, named by arrival order: side `A` sent the first packet
/// seen, `B` the other. Client and server are roles laid over the sides (see
/// `tcp::Connection::client`). Indexes a pair (`[T; 2]`) without a bounds check that could fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The sender of the first packet seen.
    #[default]
    A,
    /// The other endpoint.
    B,
}

impl Side {
    /// Both sides, `A` first.
    pub const BOTH: [Side; 2] = [Side::A, Side::B];

    /// The peer.
    pub const fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// 0 for `A`, 1 for `B` (as in `[T; 2]` pairs and reports).
    pub const fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    /// `A` when `b` is false, `B` when true (the sender is not side A's endpoint).
    pub const fn b_if(b: bool) -> Side {
        if b {
            Side::B
        } else {
            Side::A
        }
    }
}

/// As its index (0 or 1), as reports wrote the side before it had a type.
impl serde::Serialize for Side {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.index() as u64)
    }
}

impl<T> std::ops::Index<Side> for [T; 2] {
    type Output = T;
    fn index(&self, s: Side) -> &T {
        let [a, b] = self;
        match s {
            Side::A => a,
            Side::B => b,
        }
    }
}

impl<T> std::ops::IndexMut<Side> for [T; 2] {
    fn index_mut(&mut self, s: Side) -> &mut T {
        let [a, b] = self;
        match s {
            Side::A => a,
            Side::B => b,
        }
    }
}
