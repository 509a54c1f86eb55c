//! The proxy lab: a small MySQL proxy in the manner of ProxySQL, to make real two-leg captures
//! with a known ground truth.
//!
//! Clients connect to the frontend (plain or TLS terminated with rustls); the lab greets them
//! itself, accepts any login, and relays each command over a backend connection taken from a pool
//! of authenticated connections to a real MySQL/MariaDB server (plain or TLS). A backend goes back
//! to the pool as soon as its response is complete (judged by the analyzer's
//! [`proxyscope::mysql::Decoder`]), unless the server says a transaction is open: then it stays
//! with that client until the transaction ends — ProxySQL's multiplexing. Every connection event,
//! and every fault the lab injects, is written to a JSON Lines ground-truth file (see [`truth`]).
//!
//! Faults ([`Fault`]) reproduce known proxy failures, e.g. [`Fault::DirtySsl`], the pattern of
//! sysown/proxysql#4500.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backend;
pub mod faults;
pub mod session;
pub mod stream;
pub mod truth;
pub mod wire;

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

use backend::Pool;
use stream::KeyLogWriter;
use truth::Truth;

/// What can go wrong in the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A file could not be opened or written.
    #[error("{0}: {1}")]
    File(String, std::io::Error),
    /// TLS setup or handshake.
    #[error("TLS: {0}")]
    Tls(String),
    /// The peer broke the MySQL protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The backend server refused or failed.
    #[error("backend: {0}")]
    Backend(String),
    /// The configuration does not hold together.
    #[error("configuration: {0}")]
    Config(String),
}

/// A fault the lab injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// sysown/proxysql#4500: a frontend that sends an SSLRequest and goes away before its TLS
    /// handshake completes makes the lab, 10–40 ms later, close a backend connection that is
    /// serving a request (FIN, no COM_QUIT), then ~0.1 ms later the frontend whose request rode on
    /// it (FIN, no ERR, no close_notify).
    DirtySsl,
    /// sysown/proxysql#2800: every fault interval, an idle pooled TLS backend is closed by writing
    /// a plaintext COM_QUIT (`01 00 00 00 01`) on the TCP socket under TLS, then FIN.
    PlaintextQuit,
    /// The well-behaved case: every fault interval, the next command of any frontend is answered
    /// with ERR 2013 and the frontend is closed (close_notify on TLS, then FIN).
    ErrThenClose,
    /// sysown/proxysql#1861: a backend that reaches `backend_max_age` is closed when it comes back
    /// to the pool, with FIN and no COM_QUIT.
    MaxAge,
    /// Every fault interval, every idle pooled backend is closed at once (FIN, no COM_QUIT).
    DropBurst,
    /// sysown/proxysql#1600: backends get a short session `wait_timeout`, so the server kills them
    /// while they sit in the pool; a request that lands on a dead one is retried once on another
    /// backend, and if that fails too the frontend is closed with FIN and no ERR.
    WaitTimeout,
    /// sysown/proxysql#3089: a frontend that sends nothing for `connect_timeout` after the
    /// greeting is closed by the lab with FIN.
    ConnectTimeout,
}

impl Fault {
    /// Every fault, in flag order.
    pub const ALL: [Fault; 7] = [
        Fault::DirtySsl,
        Fault::PlaintextQuit,
        Fault::ErrThenClose,
        Fault::MaxAge,
        Fault::DropBurst,
        Fault::WaitTimeout,
        Fault::ConnectTimeout,
    ];

    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            Fault::DirtySsl => "dirty-ssl",
            Fault::PlaintextQuit => "plaintext-quit",
            Fault::ErrThenClose => "err-then-close",
            Fault::MaxAge => "max-age",
            Fault::DropBurst => "drop-burst",
            Fault::WaitTimeout => "wait-timeout",
            Fault::ConnectTimeout => "connect-timeout",
        }
    }

    /// Injected by the periodic injector ([`faults::injector`]).
    pub fn periodic(self) -> bool {
        matches!(
            self,
            Fault::PlaintextQuit | Fault::ErrThenClose | Fault::DropBurst
        )
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Fault, String> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault '{s}' (known: {})", known.join(", "))
            })
    }
}

/// How the lab runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Frontend address to listen on, e.g. `127.0.0.1:6033`.
    pub listen: String,
    /// Backend server, `HOST:PORT`.
    pub backend: String,
    /// Backend user.
    pub backend_user: String,
    /// Backend password.
    pub backend_password: String,
    /// TLS to the backend, trusting this CA (PEM); None: plaintext.
    pub backend_ca: Option<PathBuf>,
    /// Frontend certificate chain and key (PEM); None: no TLS offered to clients.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// NSS key log for both legs.
    pub keylog: Option<PathBuf>,
    /// Ground-truth file (JSON Lines).
    pub ground_truth: Option<PathBuf>,
    /// Faults to inject.
    pub faults: Vec<Fault>,
    /// Stop after this long (None: until SIGINT/SIGTERM).
    pub duration: Option<Duration>,
    /// Hostgroup number used in log lines.
    pub hostgroup: u32,
    /// Period of the periodic faults (plaintext-quit, err-then-close, drop-burst).
    pub fault_interval: Duration,
    /// Age at which [`Fault::MaxAge`] retires a backend.
    pub backend_max_age: Duration,
    /// Session `wait_timeout` (seconds) set on every backend connection; [`Fault::WaitTimeout`]
    /// sets 1 when this is None.
    pub backend_wait_timeout: Option<u32>,
    /// How long [`Fault::ConnectTimeout`] waits for a frontend's first packet.
    pub connect_timeout: Duration,
    /// [`Fault::DirtySsl`]: times a broken request is re-sent on a new backend before the
    /// frontend is closed (ProxySQL's `mysql-query_retries_on_failure`, 1 by default there).
    pub dirty_ssl_retries: u32,
    /// [`Fault::DirtySsl`]: how the backend is broken.
    pub break_with: BreakWith,
    /// The frontend greeting leaves CLIENT_SSL out (ProxySQL's `mysql-have_ssl=false`) while
    /// an SSLRequest is still answered with TLS, as ProxySQL 2.6.3 does.
    pub no_tls_offer: bool,
    /// The frontend speaks TLS 1.2 only (the backend leg keeps TLS 1.3): the two legs' records
    /// then differ in overhead, as with a proxy whose two sides are configured apart.
    pub frontend_tls12: bool,
    /// Ping idle pooled backends this often (ProxySQL's `mysql-ping_interval_server_msec`);
    /// with [`Fault::DirtySsl`], a trigger that finds no request in flight breaks the next
    /// ping instead: the server's OK, then the lab's RST.
    pub ping_interval: Option<Duration>,
}

/// How [`Fault::DirtySsl`] breaks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakWith {
    /// FIN (shutdown).
    Fin,
    /// RST (SO_LINGER 0, as a close with unread data in the socket buffer gives).
    Rst,
    /// FIN, RST, FIN, ... (both forms in one capture, as real ProxySQL showed).
    Alternate,
}

impl FromStr for BreakWith {
    type Err = String;
    fn from_str(s: &str) -> Result<BreakWith, String> {
        match s {
            "fin" => Ok(BreakWith::Fin),
            "rst" => Ok(BreakWith::Rst),
            "alternate" => Ok(BreakWith::Alternate),
            _ => Err(format!("unknown break '{s}' (fin, rst, alternate)")),
        }
    }
}

impl Config {
    /// A configuration with the defaults of the command line: no TLS, no faults, no files.
    pub fn new(listen: &str, backend: &str, user: &str, password: &str) -> Config {
        Config {
            listen: listen.into(),
            backend: backend.into(),
            backend_user: user.into(),
            backend_password: password.into(),
            backend_ca: None,
            tls: None,
            keylog: None,
            ground_truth: None,
            faults: Vec::new(),
            duration: None,
            hostgroup: 0,
            fault_interval: Duration::from_millis(700),
            backend_max_age: Duration::from_millis(500),
            backend_wait_timeout: None,
            connect_timeout: Duration::from_millis(2000),
            dirty_ssl_retries: 0,
            break_with: BreakWith::Fin,
            ping_interval: None,
            no_tls_offer: false,
            frontend_tls12: false,
        }
    }

    /// The session `wait_timeout` to set on backend connections, if any.
    pub fn wait_timeout(&self) -> Option<u32> {
        self.backend_wait_timeout
            .or(self.faults.contains(&Fault::WaitTimeout).then_some(1))
    }
}

/// An order the fault injector gives the session that owns a backend in use.
#[derive(Debug, Clone)]
pub enum Order {
    /// Break the backend, then the frontend (#4500).
    DirtySsl {
        /// The frontend whose aborted TLS handshake triggered it.
        trigger: u64,
        /// Milliseconds between the trigger and the order.
        delay_ms: u64,
    },
}

/// A request being served: the way to reach the session that owns its backend.
pub struct Active {
    /// The backend's ground-truth identity.
    pub backend: serde_json::Value,
    /// Where to send an order.
    pub order: oneshot::Sender<Order>,
}

/// State shared by every task of a running lab.
pub struct Lab {
    /// The configuration.
    pub cfg: Config,
    /// Ground truth.
    pub truth: Truth,
    /// Idle backends.
    pub pool: Pool,
    /// Frontend TLS.
    pub server_tls: Option<Arc<rustls::ServerConfig>>,
    /// Backend TLS.
    pub backend_tls: Option<Arc<rustls::ClientConfig>>,
    /// Requests in flight, by frontend id.
    pub active: Mutex<HashMap<u64, Active>>,
    next_frontend: AtomicU64,
    /// [`Fault::ErrThenClose`]: the next command of any frontend gets ERR 2013 and a close.
    pub err_pending: AtomicBool,
    /// [`Fault::DirtySsl`] with pings: the trigger frontend (plus one) whose break waits for the
    /// next keep-alive ping; 0 when none does.
    pub ping_break: AtomicU64,
    /// Backends broken by [`Fault::DirtySsl`] so far (for [`BreakWith::Alternate`]).
    pub breaks: AtomicU64,
}

impl Lab {
    /// Sets up TLS, the key log and the ground truth.
    pub fn new(cfg: Config) -> Result<Lab, LabError> {
        let keylog = match &cfg.keylog {
            Some(p) => Some(Arc::new(KeyLogWriter::create(p)?)),
            None => None,
        };
        let server_tls = match &cfg.tls {
            Some((cert, key)) => Some(stream::server_config(
                cert,
                key,
                keylog.clone(),
                cfg.frontend_tls12,
            )?),
            None => None,
        };
        let backend_tls = match &cfg.backend_ca {
            Some(ca) => Some(stream::client_config(ca, keylog)?),
            None => None,
        };
        if cfg.faults.contains(&Fault::DirtySsl) && server_tls.is_none() {
            return Err(LabError::Config(
                "--fault dirty-ssl needs frontend TLS (--cert and --key)".into(),
            ));
        }
        if cfg.faults.contains(&Fault::PlaintextQuit) && backend_tls.is_none() {
            return Err(LabError::Config(
                "--fault plaintext-quit needs backend TLS (--backend-tls)".into(),
            ));
        }
        Ok(Lab {
            truth: Truth::create(cfg.ground_truth.as_deref())?,
            cfg,
            pool: Pool::default(),
            server_tls,
            backend_tls,
            active: Mutex::new(HashMap::new()),
            next_frontend: AtomicU64::new(1),
            err_pending: AtomicBool::new(false),
            ping_break: AtomicU64::new(0),
            breaks: AtomicU64::new(0),
        })
    }

    /// True if `f` is on.
    pub fn fault(&self, f: Fault) -> bool {
        self.cfg.faults.contains(&f)
    }

    /// `(HG,HOST,PORT,THREAD_ID)` as ProxySQL's log lines name a backend.
    pub fn backend_tuple(&self, thread_id: u32) -> String {
        let (host, port) = self
            .cfg
            .backend
            .rsplit_once(':')
            .unwrap_or((self.cfg.backend.as_str(), "3306"));
        format!("({},{host},{port},{thread_id})", self.cfg.hostgroup)
    }

    /// A frontend sent an SSLRequest and went away before its TLS handshake completed: with
    /// [`Fault::DirtySsl`], 10–40 ms later break a backend that is serving a request.
    pub fn tls_aborted(self: &Arc<Self>, trigger: u64) {
        if !self.fault(Fault::DirtySsl) {
            return;
        }
        let lab = Arc::clone(self);
        let delay_ms = rand::thread_rng().gen_range(10..=40u64);
        tokio::spawn(async move {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            // Wait a little for a request to be in flight if none is right now.
            let deadline = Instant::now() + Duration::from_millis(200);
            loop {
                if let Some((victim, active)) = lab.pick_active(trigger) {
                    let waited = start.elapsed().as_millis() as u64;
                    let mut f = active.backend.clone();
                    f["fault"] = json!(Fault::DirtySsl.name());
                    f["trigger_frontend"] = json!(trigger);
                    f["frontend"] = json!(victim);
                    f["delay_ms"] = json!(waited);
                    lab.truth.now("fault", f);
                    let order = Order::DirtySsl {
                        trigger,
                        delay_ms: waited,
                    };
                    // The session may have just ended; then nothing breaks (recorded by it).
                    let _ = active.order.send(order);
                    return;
                }
                if Instant::now() >= deadline && lab.cfg.ping_interval.is_some() {
                    // Nothing busy: the idle-pool form breaks at the next keep-alive ping.
                    lab.ping_break.store(trigger + 1, Ordering::Relaxed);
                    lab.truth.now(
                        "fault_pending",
                        json!({"fault": Fault::DirtySsl.name(), "trigger_frontend": trigger,
                               "reason": "no request in flight: the next ping breaks"}),
                    );
                    return;
                }
                if Instant::now() >= deadline {
                    lab.truth.now(
                        "fault_skipped",
                        json!({"fault": Fault::DirtySsl.name(), "trigger_frontend": trigger,
                               "reason": "no request in flight"}),
                    );
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }

    /// Takes a random request in flight (not of frontend `not`) out of the registry.
    fn pick_active(&self, not: u64) -> Option<(u64, Active)> {
        let mut map = self.active.lock().ok()?;
        let ids: Vec<u64> = map.keys().copied().filter(|&k| k != not).collect();
        if ids.is_empty() {
            return None;
        }
        let id = *ids.get(rand::thread_rng().gen_range(0..ids.len()))?;
        map.remove(&id).map(|a| (id, a))
    }
}

/// Runs the lab until SIGINT/SIGTERM or the configured duration.
pub async fn run(cfg: Config) -> Result<(), LabError> {
    let lab = Arc::new(Lab::new(cfg)?);
    let listener = TcpListener::bind(&lab.cfg.listen)
        .await
        .map_err(|e| LabError::Config(format!("listen on {}: {e}", lab.cfg.listen)))?;
    let addr = listener.local_addr()?;
    lab.truth.now(
        "lab_started",
        json!({"listen": addr.to_string(), "backend": lab.cfg.backend,
               "backend_tls": lab.backend_tls.is_some(), "frontend_tls": lab.server_tls.is_some(),
               "faults": lab.cfg.faults.iter().map(|f| f.name()).collect::<Vec<_>>()}),
    );
    eprintln!(
        "proxyscope lab: listening on {addr}, backend {}",
        lab.cfg.backend
    );
    let injector = lab
        .cfg
        .faults
        .iter()
        .any(|f| f.periodic())
        .then(|| tokio::spawn(faults::injector(Arc::clone(&lab))));
    let pinger = lab
        .cfg
        .ping_interval
        .map(|every| tokio::spawn(faults::pinger(Arc::clone(&lab), every)));
    let stop = stop_signal(lab.cfg.duration);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let id = lab.next_frontend.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(session::serve(Arc::clone(&lab), tcp, peer, id));
                }
                Err(e) => tracing::warn!("accept: {e}"),
            },
            () = &mut stop => break,
        }
    }
    if let Some(h) = injector {
        h.abort();
    }
    if let Some(h) = pinger {
        h.abort();
    }
    for mut b in lab.pool.drain() {
        session::close_backend(&lab, &mut b, true, "lab stopping").await;
    }
    lab.truth.now("lab_stopped", json!({}));
    Ok(())
}

async fn stop_signal(duration: Option<Duration>) {
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return timer.await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            () = timer => {}
        }
    }
    #[cfg(not(unix))]
    timer.await
}

/// Runs the lab on a runtime of its own (for the command line).
pub fn run_blocking(cfg: Config) -> Result<(), LabError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cfg))
}
