//! `live --metrics ADDR`: counters of what live reports, in the Prometheus text exposition
//! (the `prometheus-client` crate), served on `GET /metrics` by a small HTTP/1.1 responder on
//! the live process's own tokio runtime.
//!
//! The counters are bumped where the rows and JSONL verdict lines are written (live's report
//! sees every close and every incident), so a scrape agrees with the text/JSONL output. The
//! responder is deliberately minimal: Prometheus only ever sends `GET /metrics`; a server crate
//! (hyper, axum) would bring a larger dependency tree than the 100 lines it saves.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::CaptureStats;
use crate::diagnose::incidents::Incident;
pub use crate::http_head::{parse, Ask};
use crate::model::Summary;
use crate::report::TlsCount;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    leg: &'static str,
    label: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignatureLabels {
    signature: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsLabels {
    decryption: &'static str,
}

/// The live run's metrics: updated by the capture loop, read by the HTTP responder.
pub struct Metrics {
    registry: Arc<Registry>,
    closes: Family<CloseLabels, Counter>,
    incidents: Family<SignatureLabels, Counter>,
    hidden_retries: Counter,
    tls: Family<TlsLabels, Counter>,
    packets: Counter,
    pcap_received: Counter,
    pcap_dropped: Counter,
    pcap_if_dropped: Counter,
    open_connections: Gauge,
    memory_bytes: Gauge,
    /// libpcap's counters and the pipeline's retries as last read: the counters grow by the
    /// difference (libpcap's are 32-bit and wrap).
    last_pcap: CaptureStats,
    last_retries: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered under the `proxyscope_` prefix, all at zero.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("proxyscope");
        let closes = Family::<CloseLabels, Counter>::default();
        r.register(
            "closes",
            "Connection closes by leg (frontend, backend, direct, unknown) and verdict label, as the verdict lines say",
            closes.clone(),
        );
        let incidents = Family::<SignatureLabels, Counter>::default();
        r.register(
            "incidents",
            "Incidents by signature (none: no known signature)",
            incidents.clone(),
        );
        let hidden_retries = Counter::default();
        r.register(
            "hidden_retries",
            "Frontend requests the proxy relayed again after the backend carrying them broke",
            hidden_retries.clone(),
        );
        let tls = Family::<TlsLabels, Counter>::default();
        r.register(
            "tls_sessions",
            "Finished TLS connections by what decryption came to (decrypted, keys_failed, no_keys, unsupported, not_tried)",
            tls.clone(),
        );
        let packets = Counter::default();
        r.register("packets", "Packets handed to the pipeline", packets.clone());
        let pcap_received = Counter::default();
        r.register(
            "pcap_received",
            "Packets that passed the capture filter (libpcap ps_recv)",
            pcap_received.clone(),
        );
        let pcap_dropped = Counter::default();
        r.register(
            "pcap_dropped",
            "Packets the kernel dropped for lack of buffer space (libpcap ps_drop)",
            pcap_dropped.clone(),
        );
        let pcap_if_dropped = Counter::default();
        r.register(
            "pcap_if_dropped",
            "Packets the interface or its driver dropped (libpcap ps_ifdrop)",
            pcap_if_dropped.clone(),
        );
        let open_connections = Gauge::default();
        r.register(
            "open_connections",
            "Connections in the flow table",
            open_connections.clone(),
        );
        let memory_bytes = Gauge::default();
        r.register(
            "memory_bytes",
            "Resident memory of the live process (/proc/self/statm)",
            memory_bytes.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            closes,
            incidents,
            hidden_retries,
            tls,
            packets,
            pcap_received,
            pcap_dropped,
            pcap_if_dropped,
            open_connections,
            memory_bytes,
            last_pcap: CaptureStats::default(),
            last_retries: 0,
        }
    }

    /// The registry, for the responder.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// One finished connection, as its row or verdict line is written.
    pub fn close(&self, c: &Summary) {
        let label = c.verdict.as_ref().map_or("none", |v| v.label.as_str());
        self.closes
            .get_or_create(&CloseLabels {
                leg: crate::export::leg_name(c.leg),
                label,
            })
            .inc();
        if c.tls.is_some() {
            if let Some(decryption) = tls_decryption(c) {
                self.tls.get_or_create(&TlsLabels { decryption }).inc();
            }
        }
    }

    /// One incident, as it is written.
    pub fn incident(&self, inc: &Incident) {
        let signature = inc.signature.as_ref().map_or("none", |s| s.id);
        self.incidents
            .get_or_create(&SignatureLabels { signature })
            .inc();
    }

    /// One packet handed to the pipeline.
    pub fn packet(&self) {
        self.packets.inc();
    }

    /// The periodic readings: libpcap's counters, the pipeline's hidden retries and open
    /// connections so far, and the process's resident memory.
    pub fn sample(&mut self, pcap: Option<CaptureStats>, retries: u64, open: usize) {
        if let Some(s) = pcap {
            let l = self.last_pcap;
            self.pcap_received
                .inc_by(u64::from(s.received.wrapping_sub(l.received)));
            self.pcap_dropped
                .inc_by(u64::from(s.dropped.wrapping_sub(l.dropped)));
            self.pcap_if_dropped
                .inc_by(u64::from(s.if_dropped.wrapping_sub(l.if_dropped)));
            self.last_pcap = s;
        }
        self.hidden_retries
            .inc_by(retries.saturating_sub(self.last_retries));
        self.last_retries = self.last_retries.max(retries);
        self.open_connections
            .set(i64::try_from(open).unwrap_or(i64::MAX));
        if let Some(rss) = resident_bytes() {
            self.memory_bytes
                .set(i64::try_from(rss).unwrap_or(i64::MAX));
        }
    }

    /// The exposition text (Prometheus text format 0.0.4).
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

/// What TLS decryption came to for `c`, named as [`TlsCount`]'s fields (the report's header
/// counts the same way); None without TLS.
fn tls_decryption(c: &Summary) -> Option<&'static str> {
    let mut t = TlsCount::default();
    t.add(c);
    [
        (t.decrypted, "decrypted"),
        (t.keys_failed, "keys_failed"),
        (t.no_keys, "no_keys"),
        (t.unsupported, "unsupported"),
        (t.not_tried, "not_tried"),
    ]
    .into_iter()
    .find(|(n, _)| *n > 0)
    .map(|(_, name)| name)
}

/// Resident set size from /proc/self/statm (its second field, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    pages.checked_mul(rustix::param::page_size() as u64)
}

fn encode(registry: &Registry) -> String {
    let mut body = String::with_capacity(4096);
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut body, registry);
    body
}

/// Connections served at once; more are closed at once.
const MAX_CLIENTS: usize = 16;
/// A request's head (request line and headers) at most.
const MAX_REQUEST: usize = 8 << 10;
/// Time allowed to receive a request (and, on a kept-alive connection, for the next one).
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to send a response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` now (before live gives up its privileges), for [`serve`] to use later.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Answers `GET /metrics` on `listener` until the runtime stops: one request at a time per
/// connection (HTTP/1.1 keep-alive), at most 16 connections at once, other paths 404.
pub async fn serve(listener: std::net::TcpListener, registry: Arc<Registry>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("metrics: {e}");
            return;
        }
    };
    let clients = Arc::new(AtomicUsize::new(0));
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                tracing::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if clients.load(Ordering::Relaxed) >= MAX_CLIENTS {
            continue;
        }
        clients.fetch_add(1, Ordering::Relaxed);
        let (registry, clients) = (registry.clone(), clients.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(sock, &registry).await {
                tracing::debug!("metrics client: {e}");
            }
            clients.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection(mut sock: tokio::net::TcpStream, registry: &Registry) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let Some(end) = read_head(&mut sock, &mut buf).await? else {
            return Ok(());
        };
        let (ask, keep) = parse(buf.get(..end).unwrap_or_default());
        buf.drain(..end.saturating_add(4).min(buf.len()));
        let (status, ctype, body, head) = match ask {
            Ask::Metrics { head } => (
                "200 OK",
                prometheus_text::CONTENT_TYPE,
                encode(registry),
                head,
            ),
            Ask::NotFound => (
                "404 Not Found",
                "text/plain",
                "not found: metrics are at /metrics\n".into(),
                false,
            ),
            Ask::BadMethod => (
                "405 Method Not Allowed",
                "text/plain",
                "GET or HEAD only\n".into(),
                false,
            ),
            Ask::Bad => (
                "400 Bad Request",
                "text/plain",
                "bad request\n".into(),
                false,
            ),
        };
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if keep { "" } else { "Connection: close\r\n" }
        )
        .into_bytes();
        if !head {
            out.extend_from_slice(body.as_bytes());
        }
        tokio::time::timeout(WRITE_TIMEOUT, sock.write_all(&out))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "writing the response"))??;
        if !keep {
            let _ = sock.shutdown().await;
            return Ok(());
        }
    }
}

/// Reads until `buf` holds a whole request head; its length (without the blank line), or None
/// when the client closed, was too slow or sent too much.
async fn read_head(
    sock: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(end));
        }
        if buf.len() >= MAX_REQUEST {
            let _ = sock
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            return Ok(None);
        }
        let n = match tokio::time::timeout_at(deadline, sock.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(None),
        };
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_as_prometheus_sends_them() {
        let (ask, keep) = parse(
            b"GET /metrics HTTP/1.1\r\nHost: h:9750\r\nAccept: text/plain;version=0.0.4\r\nAccept-Encoding: gzip",
        );
        assert_eq!(ask, Ask::Metrics { head: false });
        assert!(keep);
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.0").0,
            Ask::Metrics { head: false }
        );
        assert!(!parse(b"GET /metrics HTTP/1.0").1);
        assert!(!parse(b"GET /metrics HTTP/1.1\r\nConnection: close").1);
        assert_eq!(parse(b"GET / HTTP/1.1").0, Ask::NotFound);
        assert_eq!(parse(b"GET /metricsx HTTP/1.1").0, Ask::NotFound);
        assert_eq!(parse(b"POST /metrics HTTP/1.1").0, Ask::BadMethod);
        assert!(!parse(b"GET /metrics HTTP/1.1\r\nContent-Length: 5").1);
        assert_eq!(parse(b"GET /metrics").0, Ask::Bad);
        assert_eq!(parse(b"GET /metrics SPDY/3").0, Ask::Bad);
        assert_eq!(parse(b"\xff\xfe").0, Ask::Bad);
        assert_eq!(parse(b"").0, Ask::Bad);
    }

    #[test]
    fn libpcap_counters_grow_by_the_difference_across_a_wrap() {
        let mut m = Metrics::new();
        let at = |received, dropped| CaptureStats {
            received,
            dropped,
            if_dropped: 0,
        };
        m.sample(Some(at(u32::MAX - 1, 3)), 2, 5);
        m.sample(Some(at(1, 3)), 1, 4);
        // MAX - 1 from zero, then 3 more across the wrap.
        assert_eq!(m.pcap_received.get(), u64::from(u32::MAX) + 2);
        assert_eq!(m.pcap_dropped.get(), 3);
        assert_eq!(m.hidden_retries.get(), 2);
        assert_eq!(m.open_connections.get(), 4);
        let text = m.encode();
        assert!(
            text.contains("proxyscope_pcap_received_total 4294967297\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE proxyscope_open_connections gauge\n"),
            "{text}"
        );
    }
}
