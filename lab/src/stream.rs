//! Sockets of either leg, plain or TLS (rustls with the ring provider), and the NSS key log.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::LabError;

/// A connection of either leg: plain TCP, or TLS over it.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS (client side on the backend leg, server side on the frontend leg).
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.get_ref().0,
        }
    }

    /// The TCP socket underneath, to write bytes that bypass TLS.
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.get_mut().0,
        }
    }

    /// Local TCP port (0 if unknown).
    pub fn local_port(&self) -> u16 {
        self.tcp().local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// True for a TLS stream.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Writes TLS secrets in the NSS key log format (`LABEL <client random hex> <secret hex>`), for
/// both legs, one line per secret, flushed at once.
#[derive(Debug)]
pub struct KeyLogWriter {
    file: Mutex<File>,
}

impl KeyLogWriter {
    /// Creates (truncates) the key log file.
    pub fn create(path: &Path) -> Result<KeyLogWriter, LabError> {
        let file = File::create(path).map_err(|e| LabError::File(path.display().to_string(), e))?;
        Ok(KeyLogWriter {
            file: Mutex::new(file),
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl rustls::KeyLog for KeyLogWriter {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        if let Ok(mut f) = self.file.lock() {
            // A key log is a debugging aid: a failed write must not break the connection.
            let _ = f.write_all(line.as_bytes());
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server-side TLS for the frontend leg from PEM files.
pub fn server_config(
    cert: &Path,
    key: &Path,
    keylog: Option<Arc<KeyLogWriter>>,
    tls12_only: bool,
) -> Result<Arc<rustls::ServerConfig>, LabError> {
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| LabError::Tls(format!("{}: {e}", key.display())))?;
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| LabError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| LabError::Tls(e.to_string()))?;
    if let Some(k) = keylog {
        cfg.key_log = k;
    }
    Ok(Arc::new(cfg))
}

/// Client-side TLS for the backend leg, trusting the CA in `ca` (PEM).
pub fn client_config(
    ca: &Path,
    keylog: Option<Arc<KeyLogWriter>>,
) -> Result<Arc<rustls::ClientConfig>, LabError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(ca)? {
        roots
            .add(c)
            .map_err(|e| LabError::Tls(format!("{}: {e}", ca.display())))?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| LabError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if let Some(k) = keylog {
        cfg.key_log = k;
    }
    Ok(Arc::new(cfg))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, LabError> {
    let f = File::open(path).map_err(|e| LabError::File(path.display().to_string(), e))?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_reader_iter(BufReader::new(f)).collect();
    let certs = certs.map_err(|e| LabError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(LabError::Tls(format!(
            "{}: no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}
