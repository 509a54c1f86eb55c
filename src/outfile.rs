//! Output files created safely. An output path is never followed through a final symbolic link
//! (a link planted where a report or an incident pcap will go could otherwise make a root
//! process overwrite any file), and every error names the file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `e` with the file's name and, for a refused link, why.
pub fn named(path: &Path, e: io::Error) -> io::Error {
    let why = if e.raw_os_error() == Some(libc::ELOOP) {
        "is a symbolic link: refusing to write through it".to_string()
    } else {
        e.to_string()
    };
    io::Error::new(e.kind(), format!("{}: {why}", path.display()))
}

/// Creates (or truncates) `path` for writing, refusing a final symbolic link (`O_NOFOLLOW`).
pub fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| named(path, e))
}

/// A file written under a temporary name in the same directory and renamed over `path` only
/// when complete: a reader sees the whole output or none, and a symbolic link at `path` is
/// replaced, never followed. Dropped without [`Atomic::commit`], the temporary file is removed.
pub struct Atomic {
    dest: PathBuf,
    tmp: PathBuf,
    w: Option<BufWriter<File>>,
}

impl Atomic {
    /// Starts writing what will become `path`.
    pub fn create(path: &Path) -> io::Result<Atomic> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| named(path, io::Error::other("not a file name")))?;
        for n in 0..100u32 {
            let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)
            {
                Ok(f) => {
                    return Ok(Atomic {
                        dest: path.to_path_buf(),
                        tmp,
                        w: Some(BufWriter::with_capacity(1 << 16, f)),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(named(path, e)),
            }
        }
        Err(named(path, io::Error::other("no free temporary name")))
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.dest
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> io::Result<()> {
        if let Some(w) = self.w.take() {
            let f = w
                .into_inner()
                .map_err(|e| named(&self.dest, e.into_error()))?;
            f.sync_all().map_err(|e| named(&self.dest, e))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| named(&self.dest, e))
    }
}

impl Write for Atomic {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.w.as_mut() {
            Some(w) => w.write(buf).map_err(|e| named(&self.dest, e)),
            None => Err(named(&self.dest, io::Error::other("already committed"))),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.w.as_mut() {
            Some(w) => w.flush().map_err(|e| named(&self.dest, e)),
            None => Ok(()),
        }
    }
}

impl Drop for Atomic {
    fn drop(&mut self) {
        if self.w.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("proxyscope-outfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_planted_link_is_neither_followed_nor_its_target_touched() {
        let d = scratch("link");
        let target = d.join("precious");
        std::fs::write(&target, b"keep me").unwrap();
        let out = d.join("report.json");
        std::os::unix::fs::symlink(&target, &out).unwrap();
        let e = create(&out).unwrap_err();
        assert!(e.to_string().contains("report.json"), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let mut a = Atomic::create(&out).unwrap();
        a.write_all(b"new").unwrap();
        a.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        assert!(!std::fs::symlink_metadata(&out)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing() {
        let d = scratch("drop");
        let out = d.join("x.pcap");
        {
            let mut a = Atomic::create(&out).unwrap();
            a.write_all(b"partial").unwrap();
        }
        assert!(std::fs::read_dir(&d).unwrap().next().is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
