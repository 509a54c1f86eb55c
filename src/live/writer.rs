//! `--write`: the packets seen, saved through libpcap (pcap, nanosecond timestamps, the
//! capture's link type and snap length), rotated by size and/or time like tcpdump `-C`/`-G`,
//! optionally as a ring of `-W` files.

use std::path::{Path, PathBuf};

use pcap::{Active, Capture, Packet, PacketHeader, Savefile};

use super::device::LiveError;
use crate::time::Timestamp;

/// When to start a new file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rotation {
    /// After a file reaches this many bytes.
    pub size: Option<u64>,
    /// After a file holds this many seconds of packets.
    pub seconds: Option<u64>,
    /// Keep at most this many files, overwriting the oldest (a ring).
    pub count: Option<u32>,
}

/// The file sequence being written.
pub struct Writer {
    base: PathBuf,
    rotation: Rotation,
    file: Option<Savefile>,
    /// Files started so far.
    started: u64,
    bytes: u64,
    opened_at: Option<Timestamp>,
    /// A packet that must go to the next file, held until the driver opens it.
    held: Option<(PacketHeader, Vec<u8>)>,
    /// Every file name written, in order (a ring reuses names).
    pub files: Vec<PathBuf>,
    /// Packets written.
    pub packets: u64,
    /// Files started but no longer listed in `files` (only the last [`MAX_FILES_LISTED`] are).
    pub files_unlisted: u64,
    /// The account files are handed to (`live` as root switches to it after opening them).
    pub owner: Option<crate::live::device::Account>,
}

const FILE_HEADER: u64 = 24;
/// File names kept for the summary (the latest).
pub const MAX_FILES_LISTED: usize = 1024;
const RECORD_HEADER: u64 = 16;

/// The name of file number `n` of a sequence based on `base`: the base itself first, then
/// `NAME.1.EXT`, `NAME.2.EXT`, … (the number before the extension, so that the files still
/// open as `.pcap`; `analyze NAME*.pcap` merges them back in time order).
pub fn nth_path(base: &Path, n: u64) -> PathBuf {
    if n == 0 {
        return base.to_path_buf();
    }
    with_suffix(base, &n.to_string())
}

/// `base` with `.SUFFIX` before its extension (`NAME.SUFFIX.EXT`, or `NAME.SUFFIX`).
pub fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match base.extension() {
        Some(ext) => format!("{stem}.{suffix}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{suffix}"),
    };
    base.with_file_name(name)
}

impl Writer {
    /// A writer for `base`; the first file is opened with [`Writer::open_next`].
    pub fn new(base: PathBuf, rotation: Rotation) -> Writer {
        Writer {
            base,
            rotation,
            file: None,
            started: 0,
            bytes: 0,
            opened_at: None,
            held: None,
            files: Vec::new(),
            packets: 0,
            files_unlisted: 0,
            owner: None,
        }
    }

    /// After the switch to an unprivileged user: with rotation, the directory must let that
    /// user create the next files. Said now rather than at the first rotation.
    pub fn check_rotation_dir(&self) -> Result<(), LiveError> {
        if self.rotation.size.is_none() && self.rotation.seconds.is_none() {
            return Ok(());
        }
        let dir = match self.base.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        rustix::fs::access(
            &dir,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        )
        .map_err(|e| {
            LiveError::Privileges(format!(
                "{}: the user live switched to cannot create rotated files here ({e}); \
                     choose a directory it can write, or --user",
                dir.display()
            ))
        })
    }

    /// Opens the next file of the sequence through `cap` (libpcap writes the file header from
    /// the capture's link type, snap length and precision), and writes a held packet to it.
    pub fn open_next(&mut self, cap: &Capture<Active>) -> Result<(), LiveError> {
        self.close()?;
        let n = match self.rotation.count {
            Some(c) if c > 0 => self.started % u64::from(c),
            _ => self.started,
        };
        let path = nth_path(&self.base, n);
        // Opened here, never through a planted link (live often runs as root), then handed to
        // libpcap, which owns the descriptor from then on.
        let f = crate::outfile::create(&path).map_err(LiveError::Io)?;
        if let Some(a) = self.owner {
            rustix::fs::fchown(
                &f,
                Some(rustix::fs::Uid::from_raw(a.uid)),
                Some(rustix::fs::Gid::from_raw(a.gid)),
            )
            .map_err(|e| LiveError::Io(crate::outfile::named(&path, e.into())))?;
        }
        // libpcap opens the file we hold through its /proc name: the very inode, never a
        // path that could be swapped for a link in between.
        let fd = std::os::unix::io::AsRawFd::as_raw_fd(&f);
        let file = cap
            .savefile(format!("/proc/self/fd/{fd}"))
            .map_err(|e| LiveError::Pcap {
                what: format!("creating {}", path.display()),
                detail: e.to_string(),
            })?;
        drop(f);
        tracing::info!("writing packets to {}", path.display());
        // Named in the summary; a rotation every second for days must not grow memory.
        if self.files.len() >= MAX_FILES_LISTED {
            self.files.remove(0);
            self.files_unlisted += 1;
        }
        self.files.push(path);
        self.file = Some(file);
        self.started += 1;
        self.bytes = FILE_HEADER;
        self.opened_at = None;
        if let Some((h, data)) = self.held.take() {
            self.write_now(&Packet::new(&h, &data), ts_of(&h));
        }
        Ok(())
    }

    /// Writes one packet, or holds it when it belongs to the next file; then
    /// [`Writer::wants_next`] is true until the driver calls [`Writer::open_next`].
    pub fn write(&mut self, packet: &Packet<'_>) {
        let ts = ts_of(packet.header);
        let full = self.rotation.size.is_some_and(|s| self.bytes >= s.max(1));
        let old = match (self.rotation.seconds, self.opened_at) {
            (Some(s), Some(t)) => ts.nanos_since(t) >= (s as i64).saturating_mul(1_000_000_000),
            _ => false,
        };
        if self.file.is_none() || full || old {
            self.held = Some((*packet.header, packet.data.to_vec()));
        } else {
            self.write_now(packet, ts);
        }
    }

    fn write_now(&mut self, packet: &Packet<'_>, ts: Timestamp) {
        if let Some(f) = self.file.as_mut() {
            f.write(packet);
            self.packets += 1;
            self.bytes += RECORD_HEADER + u64::from(packet.header.caplen);
            self.opened_at.get_or_insert(ts);
        }
    }

    /// A packet waits for the next file.
    pub fn wants_next(&self) -> bool {
        self.held.is_some()
    }

    /// Flushes and closes the current file.
    pub fn close(&mut self) -> Result<(), LiveError> {
        if let Some(mut f) = self.file.take() {
            f.flush().map_err(|e| LiveError::Pcap {
                what: "flushing the capture file".into(),
                detail: e.to_string(),
            })?;
        }
        Ok(())
    }
}

/// A libpcap header's timestamp (the capture asks for nanosecond precision, so `tv_usec`
/// holds nanoseconds). `time_t` and `suseconds_t` are 64-bit here, 32-bit on some platforms.
#[allow(clippy::useless_conversion)]
pub fn ts_of(h: &PacketHeader) -> Timestamp {
    Timestamp::from_parts(i64::from(h.ts.tv_sec), i64::from(h.ts.tv_usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_keep_the_extension() {
        let b = Path::new("/tmp/cap.pcap");
        assert_eq!(nth_path(b, 0), PathBuf::from("/tmp/cap.pcap"));
        assert_eq!(nth_path(b, 2), PathBuf::from("/tmp/cap.2.pcap"));
        assert_eq!(nth_path(Path::new("out"), 1), PathBuf::from("out.1"));
    }
}
