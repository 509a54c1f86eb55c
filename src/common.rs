//! Small types every stage shares: where a piece of evidence is ([`At`]) and one end of a TCP
//! connection ([`Endpoint`]). They sit below all stages so that no stage imports a later one
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
