//! Incident pcaps (`analyze --write-incident DIR`): per incident, the frames of the connections
//! it involves (both legs), found again by a second pass over the input files — a frame belongs
//! to a connection when its decoded TCP endpoints (either way) and VLAN tags are the
//! connection's and its timestamp is within the connection's first and last packet.
//!
//! Files are classic pcap with nanosecond timestamps (magic `a1b23c4d`), one link type per
//! file: `incident-NNN-SIGNATURE.pcap` for the link type of the incident's first frame, and
//! `incident-NNN-SIGNATURE.linktype-L.pcap` for frames of any other link type (a merged run of
//! an Ethernet and a `tcpdump -i any` capture, say).

use std::collections::{BTreeMap, HashMap};

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::common::Endpoint;
use crate::decode;
use crate::diagnose::incidents::{Incident, Incidents};
use crate::model::Summary;
use crate::report::{Report, RunSummary};
use crate::source::{CaptureFile, Frame, Linktype, OpenError, Sources};
use crate::time::Timestamp;

/// Incidents written per pass over the input (each holds a file open).
const INCIDENTS_PER_PASS: usize = 128;

/// Why incident pcaps could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file could not be opened again.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// An output file could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// What finds a connection's frames again: endpoints, VLAN tags, first and last packet.
#[derive(Clone, Debug)]
pub struct ConnKey {
    /// Client address.
    pub client: Endpoint,
    /// Server address.
    pub server: Endpoint,
    /// VLAN tags as the report writes them.
    pub vlan: Option<String>,
    /// One direction was untagged (asymmetric tagging): untagged frames belong too.
    pub vlan_one_way: bool,
    /// First packet.
    pub start: Timestamp,
    /// Last packet.
    pub end: Timestamp,
}

impl ConnKey {
    /// The key of a finished connection.
    pub fn of(s: &Summary) -> ConnKey {
        ConnKey {
            client: s.client,
            server: s.server,
            vlan: s.vlan.clone(),
            vlan_one_way: s.vlan_one_way,
            start: s.start.ts,
            end: s.end.ts,
        }
    }
}

impl ConnKey {
    /// Whether a frame with `vlans` can belong to the connection.
    fn vlan_matches(&self, vlans: decode::Vlans) -> bool {
        match &self.vlan {
            None => vlans.is_empty(),
            Some(_) if self.vlan_one_way && vlans.is_empty() => true,
            Some(v) => !vlans.is_empty() && *v == vlans.to_string(),
        }
    }
}

/// A report that remembers every connection's [`ConnKey`] and passes everything on.
pub struct KeyRecorder<'a> {
    /// The report written meanwhile.
    pub inner: &'a mut dyn Report,
    /// Keys by connection id.
    pub keys: HashMap<u64, ConnKey>,
    /// Their ids in arrival order (the oldest forgotten first).
    pub order: std::collections::VecDeque<u64>,
}

impl Report for KeyRecorder<'_> {
    fn connection(&mut self, c: &Summary) -> io::Result<()> {
        // Only closes that can be incident steps, and no more than incidents keep: the keys
        // stay bounded whatever the capture's length.
        if Incidents::may_be_a_step(c) {
            if self.order.len() >= Incidents::MAX_KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.keys.remove(&old);
                }
            }
            self.order.push_back(c.id);
            self.keys.insert(c.id, ConnKey::of(c));
        }
        self.inner.connection(c)
    }
    fn finish(&mut self, run: &RunSummary) -> io::Result<()> {
        self.inner.finish(run)
    }
}

/// One pcap written.
#[derive(Clone, Debug)]
pub struct Written {
    /// Incident number (1-based, as the report counts).
    pub incident: usize,
    /// The file.
    pub path: PathBuf,
    /// Its link type.
    pub linktype: Linktype,
    /// Frames in it.
    pub frames: u64,
}

/// The file name of incident `n`.
pub fn file_name(n: usize, inc: &Incident) -> String {
    format!(
        "incident-{n:03}-{}.pcap",
        inc.signature.map_or("unmatched", |s| s.id)
    )
}

struct Out {
    path: PathBuf,
    w: crate::outfile::Atomic,
    frames: u64,
}

fn wr(path: &Path, r: io::Result<()>) -> Result<(), Error> {
    r.map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

impl Out {
    fn create(path: PathBuf, linktype: Linktype) -> Result<Out, Error> {
        // Never through a link planted at the incident's name; complete or absent.
        let mut w = crate::outfile::Atomic::create(&path).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_3c4d_u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&262_144u32.to_le_bytes());
        h.extend_from_slice(&linktype.0.to_le_bytes());
        wr(&path, w.write_all(&h))?;
        Ok(Out { path, w, frames: 0 })
    }

    fn frame(&mut self, f: &Frame<'_>) -> Result<(), Error> {
        let ns = f.ts.0.max(0);
        let secs = u32::try_from(ns / 1_000_000_000).unwrap_or(u32::MAX);
        let nanos = (ns % 1_000_000_000) as u32;
        let len = u32::try_from(f.data.len()).unwrap_or(u32::MAX);
        let mut h = [0u8; 16];
        for (dst, v) in h
            .chunks_exact_mut(4)
            .zip([secs, nanos, len, f.orig_len.max(len)])
        {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        wr(&self.path, self.w.write_all(&h))?;
        wr(&self.path, self.w.write_all(f.data))?;
        self.frames += 1;
        Ok(())
    }
}

/// Writes one pcap per incident (and per further link type) into `dir`, reading `paths` again
/// (as many times as there are batches of incidents). `keys` are the run's connections.
pub fn write_incidents(
    paths: &[String],
    incidents: &[Incident],
    keys: &HashMap<u64, ConnKey>,
    dir: &Path,
) -> Result<Vec<Written>, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    let numbered: Vec<(usize, &Incident)> = incidents
        .iter()
        .enumerate()
        .map(|(i, x)| (i + 1, x))
        .collect();
    for batch in numbered.chunks(INCIDENTS_PER_PASS) {
        written.extend(one_pass(paths, batch, keys, dir)?);
    }
    Ok(written)
}

/// A connection whose frames are wanted, with the incidents (numbers) it is part of.
type Wanted<'a> = (&'a ConnKey, Vec<usize>);

fn one_pass(
    paths: &[String],
    batch: &[(usize, &Incident)],
    keys: &HashMap<u64, ConnKey>,
    dir: &Path,
) -> Result<Vec<Written>, Error> {
    // Endpoints (client, server) → the connections on them, with their incidents.
    let mut by_tuple: HashMap<(Endpoint, Endpoint), Vec<Wanted<'_>>> = HashMap::new();
    let mut conns: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (n, inc) in batch {
        for s in &inc.steps {
            let v = conns.entry(s.conn).or_default();
            if !v.contains(n) {
                v.push(*n);
            }
        }
    }
    for (id, incs) in conns {
        if let Some(k) = keys.get(&id) {
            by_tuple
                .entry((k.client, k.server))
                .or_default()
                .push((k, incs));
        }
    }
    let mut files = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        files.push(CaptureFile::open(p, i)?);
    }
    let mut sources = Sources::new(files);
    let mut outs: BTreeMap<(usize, Linktype), Out> = BTreeMap::new();
    let mut first_link: HashMap<usize, Linktype> = HashMap::new();
    let names: HashMap<usize, String> = batch.iter().map(|(n, i)| (*n, file_name(*n, i))).collect();
    let mut hit: Vec<usize> = Vec::new();
    while let Some(frame) = sources.next_frame() {
        let Ok(seg) = decode::decode(&frame) else {
            continue;
        };
        hit.clear();
        for key in [(seg.src, seg.dst), (seg.dst, seg.src)] {
            for (k, incs) in by_tuple.get(&key).into_iter().flatten() {
                if k.vlan_matches(seg.vlans) && frame.ts >= k.start && frame.ts <= k.end {
                    hit.extend(incs.iter().copied());
                }
            }
        }
        hit.sort_unstable();
        hit.dedup();
        for &n in &hit {
            let lt = *first_link.entry(n).or_insert(frame.linktype);
            let out = match outs.entry((n, frame.linktype)) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    let base = names.get(&n).cloned().unwrap_or_default();
                    let name = if lt == frame.linktype {
                        base
                    } else {
                        base.replace(".pcap", &format!(".linktype-{}.pcap", frame.linktype.0))
                    };
                    v.insert(Out::create(dir.join(name), frame.linktype)?)
                }
            };
            out.frame(&frame)?;
        }
    }
    let mut written = Vec::new();
    for ((n, lt), o) in outs {
        wr(&o.path, o.w.commit())?;
        written.push(Written {
            incident: n,
            path: o.path,
            linktype: lt,
            frames: o.frames,
        });
    }
    Ok(written)
}

#[cfg(test)]
mod vlan_tests {
    use super::*;

    #[test]
    fn one_way_tagged_connection_takes_untagged_frames() {
        let ep = Endpoint {
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: 1,
        };
        let mut k = ConnKey {
            client: ep,
            server: ep,
            vlan: Some("vlan 42".into()),
            vlan_one_way: false,
            start: Timestamp(0),
            end: Timestamp(0),
        };
        let v42 = decode::Vlans([42 | 0x1000, 0]);
        let v43 = decode::Vlans([43 | 0x1000, 0]);
        let none = decode::Vlans::default();
        assert!(k.vlan_matches(v42) && !k.vlan_matches(v43) && !k.vlan_matches(none));
        k.vlan_one_way = true;
        assert!(k.vlan_matches(v42) && !k.vlan_matches(v43) && k.vlan_matches(none));
        k.vlan = None;
        assert!(k.vlan_matches(none) && !k.vlan_matches(v42));
    }
}
