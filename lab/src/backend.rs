//! Backend connections to the real MySQL server, and the pool they wait in between requests.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::stream::Stream;
use super::truth::now_ns;
use super::wire::{self, BACKEND_CAPS, CLIENT_SSL};
use super::{Lab, LabError};

/// One authenticated backend connection.
pub struct Backend {
    /// The lab's id for it (order of opening, from 1).
    pub id: u64,
    /// The server's thread id (from its greeting).
    pub thread_id: u32,
    /// The lab's local TCP port.
    pub local_port: u16,
    /// The socket.
    pub stream: Stream,
    /// When a request last finished on it.
    pub last_used: Instant,
    /// The same, wall clock (ns since the epoch, as the ground truth).
    pub last_used_ns: i64,
    /// When it was opened.
    pub opened: Instant,
}

impl Backend {
    /// The JSON fields that identify it in the ground truth.
    pub fn ident(&self) -> serde_json::Value {
        json!({"backend": self.id, "local_port": self.local_port, "thread_id": self.thread_id})
    }

    /// The ground-truth record of a close the proxy made with FIN (between `t0` and `ts` on
    /// the wall clock), with or without a (plaintext) COM_QUIT first.
    pub fn closed_by_proxy(&self, t0: i64, ts: i64, quit: bool) -> serde_json::Value {
        let mut f = self.ident();
        f["close_after_ns"] = json!(t0);
        f["close_before_ns"] = json!(ts);
        f["by"] = json!("proxy");
        f["how"] = json!("fin");
        f["quit"] = json!(quit);
        f
    }
}

static NEXT_BACKEND: AtomicU64 = AtomicU64::new(1);

/// Opens and authenticates a backend connection.
pub async fn connect(lab: &Lab) -> Result<Backend, LabError> {
    let cfg = &lab.cfg;
    let tcp = TcpStream::connect(&cfg.backend)
        .await
        .map_err(|e| LabError::Backend(format!("connect {}: {e}", cfg.backend)))?;
    let _ = tcp.set_nodelay(true);
    let mut stream = Stream::Plain(tcp);
    let local_port = stream.local_port();
    let g = wire::read_packet(&mut stream)
        .await?
        .ok_or_else(|| LabError::Backend("closed before its greeting".into()))?;
    let greeting = wire::parse_greeting(&g.payload)?;
    let mut seq = 1u8;
    let mut caps = BACKEND_CAPS & (greeting.capabilities | wire::CLIENT_LONG_PASSWORD);
    if let Some(tls) = &lab.backend_tls {
        if greeting.capabilities & CLIENT_SSL == 0 {
            return Err(LabError::Backend("server does not offer TLS".into()));
        }
        caps |= CLIENT_SSL;
        stream
            .write_all(&wire::frame(seq, &wire::ssl_request(caps)))
            .await?;
        seq += 1;
        let Stream::Plain(tcp) = stream else {
            return Err(LabError::Protocol("backend already TLS".into()));
        };
        let host = cfg.backend.rsplit_once(':').map_or("localhost", |h| h.0);
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|e| LabError::Tls(format!("server name {host}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| LabError::Backend(format!("TLS handshake: {e}")))?;
        stream = Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls)));
    }
    let auth = wire::native_password(cfg.backend_password.as_bytes(), &greeting.scramble);
    let resp = wire::handshake_response(caps, &cfg.backend_user, &auth);
    stream.write_all(&wire::frame(seq, &resp)).await?;
    loop {
        let p = wire::read_packet(&mut stream)
            .await?
            .ok_or_else(|| LabError::Backend("closed during login".into()))?;
        match p.payload.first() {
            Some(0x00) => break,
            Some(0xff) => {
                let (code, msg) = wire::parse_err(&p.payload);
                return Err(LabError::Backend(format!("login ERR {code}: {msg}")));
            }
            Some(0xfe) => {
                let (plugin, data) = wire::parse_auth_switch(&p.payload);
                if plugin != wire::NATIVE_PASSWORD {
                    return Err(LabError::Backend(format!(
                        "server asks for auth plugin {plugin}; the lab speaks only {}",
                        wire::NATIVE_PASSWORD
                    )));
                }
                let auth = wire::native_password(cfg.backend_password.as_bytes(), &data);
                stream
                    .write_all(&wire::frame(p.last_seq.wrapping_add(1), &auth))
                    .await?;
            }
            _ => return Err(LabError::Protocol("unexpected packet during login".into())),
        }
    }
    if let Some(secs) = cfg.wait_timeout() {
        let q = format!("\x03SET SESSION wait_timeout={secs}");
        stream.write_all(&wire::frame(0, q.as_bytes())).await?;
        let p = wire::read_packet(&mut stream)
            .await?
            .ok_or_else(|| LabError::Backend("closed after SET wait_timeout".into()))?;
        if p.payload.first() != Some(&0x00) {
            let (code, msg) = wire::parse_err(&p.payload);
            return Err(LabError::Backend(format!(
                "SET wait_timeout: ERR {code}: {msg}"
            )));
        }
    }
    let b = Backend {
        id: NEXT_BACKEND.fetch_add(1, Ordering::Relaxed),
        thread_id: greeting.thread_id,
        local_port,
        stream,
        last_used: Instant::now(),
        last_used_ns: now_ns(),
        opened: Instant::now(),
    };
    let mut f = b.ident();
    f["tls"] = json!(b.stream.is_tls());
    f["server_version"] = json!(greeting.version);
    if let Some(secs) = cfg.wait_timeout() {
        f["wait_timeout"] = json!(secs);
    }
    lab.truth.record(now_ns(), "backend_opened", f);
    Ok(b)
}

/// Idle backend connections, oldest first.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<VecDeque<Backend>>,
}

impl Pool {
    /// An idle connection, if there is one (the longest idle: requests spread over the pool).
    pub fn take(&self) -> Option<Backend> {
        self.idle.lock().ok()?.pop_front()
    }

    /// Back to the pool.
    pub fn put(&self, mut b: Backend) {
        b.last_used = Instant::now();
        b.last_used_ns = now_ns();
        if let Ok(mut q) = self.idle.lock() {
            q.push_back(b);
        }
    }

    /// Back to the pool as it was (not used: its idle time goes on).
    pub fn put_back(&self, b: Backend) {
        if let Ok(mut q) = self.idle.lock() {
            q.push_back(b);
        }
    }

    /// Everything idle, emptying the pool.
    pub fn drain(&self) -> Vec<Backend> {
        self.idle
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }
}
