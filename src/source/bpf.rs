//! Capture filters on files: a BPF expression (tcpdump's syntax) compiled by libpcap's own
//! compiler, one program per link type, and run on each frame's bytes before decoding, so that
//! `analyze -f EXPR` keeps exactly the frames `tcpdump -r FILE EXPR` keeps (VLAN, `ip[...]`,
//! `tcp[tcpflags]`, ...). Needs libpcap: only with the `live` cargo feature.

use std::collections::HashMap;

use super::{Frame, Linktype};

/// Why a capture filter could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// libpcap refused the expression for this link type.
    #[error("capture filter {expr:?} (link type {linktype}): {message}")]
    Compile {
        /// The expression.
        expr: String,
        /// The link type it was compiled for.
        linktype: u32,
        /// libpcap's message.
        message: String,
    },
    /// The binary was built without libpcap.
    #[error("capture filter {expr:?}: this proxyscope was built without libpcap (cargo feature `live`), which compiles BPF filters")]
    NoLibpcap {
        /// The expression.
        expr: String,
    },
}

/// `LINKTYPE_RAW` in files; libpcap compiles for `DLT_RAW` (12 on Linux and most systems).
const LINKTYPE_RAW: u32 = 101;
#[cfg(feature = "live")]
const DLT_RAW: i32 = 12;

/// A BPF filter over frames, with its counts.
pub struct Bpf {
    expr: String,
    #[cfg(feature = "live")]
    programs: HashMap<u32, pcap::BpfProgram>,
    #[cfg(not(feature = "live"))]
    programs: HashMap<u32, ()>,
    /// Frames that passed.
    pub passed: u64,
    /// Frames the filter left out.
    pub left_out: u64,
}

impl std::fmt::Debug for Bpf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bpf({:?})", self.expr)
    }
}

impl Bpf {
    /// Checks `expr` by compiling it for Ethernet (the link types met later are compiled when
    /// their first frame comes).
    pub fn new(expr: &str) -> Result<Bpf, BpfError> {
        let mut b = Bpf {
            expr: expr.to_string(),
            programs: HashMap::new(),
            passed: 0,
            left_out: 0,
        };
        b.program(Linktype::ETHERNET)?;
        Ok(b)
    }

    /// The expression.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    #[cfg(feature = "live")]
    fn program(&mut self, lt: Linktype) -> Result<&pcap::BpfProgram, BpfError> {
        use std::collections::hash_map::Entry;
        match self.programs.entry(lt.0) {
            Entry::Occupied(o) => Ok(o.into_mut()),
            Entry::Vacant(v) => {
                let err = |message: String| BpfError::Compile {
                    expr: self.expr.clone(),
                    linktype: lt.0,
                    message,
                };
                let dlt = if lt.0 == LINKTYPE_RAW {
                    DLT_RAW
                } else {
                    i32::try_from(lt.0).map_err(|_| err("unknown link type".into()))?
                };
                let dead =
                    pcap::Capture::dead(pcap::Linktype(dlt)).map_err(|e| err(e.to_string()))?;
                let prog = dead
                    .compile(&self.expr, true)
                    .map_err(|e| err(e.to_string()))?;
                Ok(v.insert(prog))
            }
        }
    }

    #[cfg(not(feature = "live"))]
    fn program(&mut self, _lt: Linktype) -> Result<&(), BpfError> {
        let _ = (&self.programs, LINKTYPE_RAW);
        Err(BpfError::NoLibpcap {
            expr: self.expr.clone(),
        })
    }

    /// The frame passes the filter (counted either way). libpcap sees the captured bytes as
    /// both the captured and the wire length.
    pub fn pass(&mut self, frame: &Frame<'_>) -> Result<bool, BpfError> {
        #[cfg(feature = "live")]
        let ok = self.program(frame.linktype)?.filter(frame.data);
        #[cfg(not(feature = "live"))]
        let ok = {
            self.program(frame.linktype)?;
            false
        };
        if ok {
            self.passed += 1;
        } else {
            self.left_out += 1;
        }
        Ok(ok)
    }
}

#[cfg(test)]
#[cfg(feature = "live")]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn frame(data: &[u8]) -> Frame<'_> {
        Frame {
            ts: Timestamp(0),
            frame_no: 1,
            file: 0,
            interface: 0,
            linktype: Linktype::ETHERNET,
            data,
            orig_len: data.len() as u32,
        }
    }

    #[test]
    fn compiles_matches_and_counts() {
        // Ethernet + IPv4 + TCP 40000 → 3306, SYN.
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f.extend_from_slice(&[0x9c, 0x40, 0x0c, 0xea, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02]);
        f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        let mut yes = Bpf::new("tcp port 3306 and tcp[tcpflags] & tcp-syn != 0").unwrap();
        let mut no = Bpf::new("udp or port 6033").unwrap();
        assert!(yes.pass(&frame(&f)).unwrap());
        assert!(!no.pass(&frame(&f)).unwrap());
        // A truncated frame never matches a test beyond its end, and does not panic.
        assert!(!yes.pass(&frame(&f[..20])).unwrap());
        assert_eq!((yes.passed, yes.left_out, no.left_out), (1, 1, 1));
        assert!(matches!(
            Bpf::new("tcp port"),
            Err(BpfError::Compile { .. })
        ));
    }
}
