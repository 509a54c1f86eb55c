//! `proxyscope-lab`: parse the lab's arguments, run it until SIGINT/SIGTERM or `--duration`,
//! exit 0, or 1 with the error on stderr. `proxyscope lab ARGS` runs this binary with the same
//! ARGS.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use proxyscope_lab::{BreakWith, Config, Fault};

/// Run the proxy lab: a small ProxySQL-like MySQL proxy that can inject known faults and writes the
/// ground truth of what it did.
#[derive(Parser)]
#[command(name = "proxyscope-lab")]
struct LabArgs {
    /// Frontend address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6033")]
    listen: String,
    /// Backend MySQL server.
    #[arg(long, value_name = "HOST:PORT")]
    backend: String,
    /// Backend user.
    #[arg(long, value_name = "USER")]
    backend_user: String,
    /// Backend password.
    #[arg(long, value_name = "PASSWORD", default_value = "")]
    backend_password: String,
    /// TLS to the backend (needs --backend-ca).
    #[arg(long, requires = "backend_ca")]
    backend_tls: bool,
    /// CA certificate (PEM) the backend's certificate must chain to.
    #[arg(long, value_name = "FILE", requires = "backend_tls")]
    backend_ca: Option<PathBuf>,
    /// Frontend TLS certificate chain (PEM); with --key, clients may ask for TLS.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Frontend TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Write TLS secrets of both legs here (NSS key log format).
    #[arg(long, value_name = "FILE")]
    keylog: Option<PathBuf>,
    /// More diagnostics on stderr (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Write the ground truth here (JSON Lines, one event a line).
    #[arg(long, value_name = "FILE")]
    ground_truth: Option<PathBuf>,
    /// Inject a fault (repeatable): dirty-ssl, plaintext-quit, err-then-close, max-age,
    /// drop-burst, wait-timeout, connect-timeout.
    #[arg(long, value_name = "FAULT")]
    fault: Vec<Fault>,
    /// Period of plaintext-quit, err-then-close and drop-burst, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 700)]
    fault_interval_ms: u64,
    /// Backend age at which --fault max-age closes it, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    backend_max_age_ms: u64,
    /// Session wait_timeout (seconds) for backend connections (--fault wait-timeout: 1).
    #[arg(long, value_name = "SECS")]
    backend_wait_timeout: Option<u32>,
    /// How long --fault connect-timeout waits for a client's first packet, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    connect_timeout_ms: u64,
    /// --fault dirty-ssl: re-send a broken query on a new backend this many times before the
    /// frontend is closed (ProxySQL's mysql-query_retries_on_failure).
    #[arg(long, value_name = "N", default_value_t = 0)]
    dirty_ssl_retries: u32,
    /// --fault dirty-ssl: break backends with fin, rst or alternate.
    #[arg(long, value_name = "HOW", default_value = "fin")]
    dirty_ssl_break: BreakWith,
    /// Ping idle pooled backends this often, in milliseconds (0: never); with --fault dirty-ssl
    /// a trigger that finds no request in flight breaks the next ping.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    ping_interval_ms: u64,
    /// Leave CLIENT_SSL out of the frontend greeting (mysql-have_ssl=false) but still answer an
    /// SSLRequest with TLS, as ProxySQL 2.6.3 does.
    #[arg(long)]
    no_tls_offer: bool,
    /// Frontend TLS 1.2 only (the backend leg keeps 1.3).
    #[arg(long)]
    frontend_tls12: bool,
    /// Stop after this many seconds (default: at SIGINT or SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = proxyscope::time::parse_secs)]
    duration: Option<f64>,
}

impl LabArgs {
    fn config(self) -> Config {
        Config {
            listen: self.listen,
            backend: self.backend,
            backend_user: self.backend_user,
            backend_password: self.backend_password,
            backend_ca: self.backend_ca.filter(|_| self.backend_tls),
            tls: self.cert.zip(self.key),
            keylog: self.keylog,
            ground_truth: self.ground_truth,
            faults: self.fault,
            duration: self
                .duration
                .map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9))),
            hostgroup: 0,
            fault_interval: Duration::from_millis(self.fault_interval_ms.max(1)),
            backend_max_age: Duration::from_millis(self.backend_max_age_ms),
            backend_wait_timeout: self.backend_wait_timeout,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            dirty_ssl_retries: self.dirty_ssl_retries,
            break_with: self.dirty_ssl_break,
            ping_interval: (self.ping_interval_ms > 0)
                .then(|| Duration::from_millis(self.ping_interval_ms)),
            no_tls_offer: self.no_tls_offer,
            frontend_tls12: self.frontend_tls12,
        }
    }
}

fn main() -> ExitCode {
    // Usage errors exit 1, not clap's 2, as proxyscope's do.
    let args = match LabArgs::try_parse() {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            };
        }
    };
    let level = match args.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .without_time()
        .init();
    match proxyscope_lab::run_blocking(args.config()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxyscope lab: {:#}", anyhow::Error::from(e));
            ExitCode::from(1)
        }
    }
}
