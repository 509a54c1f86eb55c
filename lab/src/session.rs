//! One frontend connection: greeting, optional TLS, login, then commands relayed over pooled
//! backends, with faults carried out where the lab's configuration asks for them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::backend::{self, Backend};
use super::stream::Stream;
use super::truth::now_ns;
use super::wire::{self, Packet, CLIENT_SSL, FRONTEND_CAPS, SERVER_STATUS_IN_TRANS};
use super::{faults, Active, Fault, Lab, LabError, Order};
use proxyscope::common::At;
use proxyscope::mysql::framer::Framer;
use proxyscope::mysql::{Decoder, Phase};
use proxyscope::time::Timestamp;

/// Server version the lab announces (ProxySQL announces a 5.5.30 too).
pub const VERSION: &str = "5.5.30-proxyscope-lab";

/// How a request ended.
enum Outcome {
    /// Response complete; the backend with its last server status.
    Done(Backend, u16),
    /// A fault order arrived while the backend was in use.
    Fault(Backend, Order, bool),
    /// The backend broke (EOF or error) after `relayed` bytes went to the client.
    Broken {
        backend: Backend,
        error: String,
        how: &'static str,
        relayed: u64,
    },
    /// The client went away while its response was relayed; the backend finished its response.
    ClientGone(Backend, u16),
}

/// Why the relay loop stopped early.
enum Stop {
    /// A fault order arrived.
    Order(Order),
    /// The backend failed: what happened, and `fin`, `rst` or `error`.
    Broken(String, &'static str),
}

/// How a backend read or write failure shows on the wire: `rst` (reset, broken pipe), `fin` (end
/// of stream, with or without close_notify) or `error`.
fn how_of(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | BrokenPipe | ConnectionAborted => "rst",
        UnexpectedEof => "fin",
        _ => "error",
    }
}

fn broken(e: std::io::Error) -> Stop {
    Stop::Broken(e.to_string(), how_of(&e))
}

/// Serves one frontend connection to its end.
pub async fn serve(lab: Arc<Lab>, tcp: TcpStream, peer: SocketAddr, id: u64) {
    let _ = tcp.set_nodelay(true);
    let local_port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
    lab.truth.now(
        "frontend_accepted",
        json!({"frontend": id, "client": peer.to_string(), "local_port": local_port}),
    );
    let who = json!({"frontend": id, "client": peer.to_string()});
    if let Err(e) = session(&lab, tcp, id, &who).await {
        tracing::info!("frontend {id}: {e}");
    }
}

fn with(base: &Value, extra: Value) -> Value {
    let mut v = base.clone();
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

async fn session(lab: &Arc<Lab>, tcp: TcpStream, id: u64, who: &Value) -> Result<(), LabError> {
    let mut scramble = [0u8; 20];
    {
        let mut rng = rand::thread_rng();
        for b in scramble.iter_mut() {
            // Printable, never NUL (the greeting ends the scramble with one).
            *b = rng.gen_range(0x21..0x7f);
        }
    }
    let caps = FRONTEND_CAPS
        | if lab.server_tls.is_some() && !lab.cfg.no_tls_offer {
            CLIENT_SSL
        } else {
            0
        };
    let mut front = Stream::Plain(tcp);
    let thread_id = u32::try_from(id).unwrap_or(u32::MAX);
    front
        .write_all(&wire::frame(
            0,
            &wire::greeting(VERSION, thread_id, &scramble, caps),
        ))
        .await?;
    let first = if lab.fault(Fault::ConnectTimeout) {
        let limit = lab.cfg.connect_timeout;
        match tokio::time::timeout(limit, read_or_record(lab, &mut front, who, "login")).await {
            Ok(p) => p,
            Err(_) => {
                // ProxySQL's mysql-connect_timeout_client: FIN, nothing else.
                let t0 = now_ns();
                let _ = front.tcp_mut().shutdown().await;
                lab.truth.now(
                    "frontend_closed",
                    with(
                        who,
                        json!({"by": "proxy", "how": "fin", "err": false, "quit": false,
                               "state": "login", "fault": Fault::ConnectTimeout.name(),
                               "timeout_ms": limit.as_millis() as u64,
                               "close_after_ns": t0, "close_before_ns": now_ns()}),
                    ),
                );
                eprintln!(
                    "[WARNING] Connect timeout on 127.0.0.1 : exceeded by {}ms",
                    limit.as_millis()
                );
                return Ok(());
            }
        }
    } else {
        read_or_record(lab, &mut front, who, "login").await
    };
    let Some(mut login) = first else {
        return Ok(());
    };
    let client_caps = u32::from_le_bytes(
        login
            .payload
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; 4]),
    );
    if login.payload.len() == 32 && client_caps & CLIENT_SSL != 0 {
        lab.truth.now("frontend_ssl_request", who.clone());
        let Some(cfg) = lab.server_tls.clone() else {
            return Err(LabError::Protocol(
                "SSLRequest but no TLS configured".into(),
            ));
        };
        let Stream::Plain(tcp) = front else {
            return Err(LabError::Protocol("TLS twice".into()));
        };
        match tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
            Ok(tls) => front = Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls))),
            Err(e) => {
                // accept() has dropped (closed) the socket.
                let ts = now_ns();
                lab.truth.record(
                    ts,
                    "frontend_tls_aborted",
                    with(who, json!({"error": e.to_string()})),
                );
                lab.truth.record(
                    ts,
                    "frontend_closed",
                    with(
                        who,
                        json!({"by": "client", "how": "eof", "err": false, "quit": false,
                               "state": "tls_handshake", "reason": e.to_string()}),
                    ),
                );
                lab.tls_aborted(id);
                return Ok(());
            }
        }
        let Some(p) = read_or_record(lab, &mut front, who, "login").await else {
            return Ok(());
        };
        login = p;
    }
    let user = login
        .payload
        .get(32..)
        .map(|u| {
            let n = u.iter().position(|&c| c == 0).unwrap_or(u.len());
            String::from_utf8_lossy(u.get(..n).unwrap_or_default()).into_owned()
        })
        .unwrap_or_default();
    front
        .write_all(&wire::frame(
            login.last_seq.wrapping_add(1),
            &wire::ok(wire::SERVER_STATUS_AUTOCOMMIT),
        ))
        .await?;
    lab.truth.now(
        "frontend_login",
        with(who, json!({"user": user, "tls": front.is_tls()})),
    );
    commands(lab, front, id, who, &user).await
}

/// Reads a packet; on the client's end of stream or an error, records the close and gives None.
async fn read_or_record(lab: &Lab, front: &mut Stream, who: &Value, state: &str) -> Option<Packet> {
    match wire::read_packet(front).await {
        Ok(Some(p)) => Some(p),
        Ok(None) => {
            lab.truth.now(
                "frontend_closed",
                with(
                    who,
                    json!({"by": "client", "how": "eof", "err": false, "quit": false, "state": state}),
                ),
            );
            None
        }
        Err(e) => {
            lab.truth.now(
                "frontend_closed",
                with(
                    who,
                    json!({"by": "client", "how": "error", "err": false, "quit": false,
                           "state": state, "reason": e.to_string()}),
                ),
            );
            None
        }
    }
}

async fn commands(
    lab: &Arc<Lab>,
    mut front: Stream,
    id: u64,
    who: &Value,
    user: &str,
) -> Result<(), LabError> {
    let mut pinned: Option<Backend> = None;
    loop {
        let Some(cmd) = read_or_record(lab, &mut front, who, "idle").await else {
            break;
        };
        if cmd.payload.first() == Some(&1) {
            lab.truth.now(
                "frontend_closed",
                with(
                    who,
                    json!({"by": "client", "how": "com_quit", "err": false, "quit": true, "state": "idle"}),
                ),
            );
            break;
        }
        if lab.fault(Fault::ErrThenClose) && lab.err_pending.swap(false, Ordering::Relaxed) {
            err_then_close(lab, front, who).await;
            if let Some(mut b) = pinned {
                close_backend(lab, &mut b, true, "frontend closed inside a transaction").await;
            }
            return Ok(());
        }
        let b = match pinned.take().or_else(|| lab.pool.take()) {
            Some(b) => b,
            None => match backend::connect(lab).await {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("[ERROR] proxyscope lab: cannot open a backend connection: {e}");
                    let err = wire::err(9001, "HY000", "Max connect timeout reached");
                    front.write_all(&wire::frame(1, &err)).await?;
                    continue;
                }
            },
        };
        let mut outcome = request(lab, b, &cmd, &mut front, id).await;
        let mut gone = 0;
        while lab.fault(Fault::WaitTimeout) {
            let Outcome::Broken {
                backend,
                error,
                how,
                relayed: 0,
            } = outcome
            else {
                break;
            };
            gone += 1;
            gone_away(lab, backend, &error, how, user, id, gone).await;
            // One retry on another backend, as ProxySQL; then the frontend goes, without an ERR.
            let next = match (gone < 2).then(|| lab.pool.take()) {
                Some(Some(b)) => Some(b),
                Some(None) => backend::connect(lab).await.ok(),
                None => None,
            };
            let Some(b) = next else {
                let t0 = now_ns();
                let _ = front.tcp_mut().shutdown().await;
                lab.truth.now(
                    "frontend_closed",
                    with(
                        who,
                        json!({"by": "proxy", "how": "fin", "err": false, "quit": false,
                               "close_notify": false, "state": "request",
                               "fault": Fault::WaitTimeout.name(), "attempts": gone,
                               "close_after_ns": t0, "close_before_ns": now_ns()}),
                    ),
                );
                return Ok(());
            };
            lab.truth.now(
                "backend_retry",
                with(who, json!({"backend": b.id, "attempt": gone + 1})),
            );
            outcome = request(lab, b, &cmd, &mut front, id).await;
        }
        // #4500 with retries left: the backend is broken, the query re-sent on a new one, and
        // the client sees nothing (a hidden break).
        let mut tries = 0;
        loop {
            match outcome {
                Outcome::Fault(b, order, true) if tries < lab.cfg.dirty_ssl_retries => {
                    tries += 1;
                    break_backend(lab, b, &order, who, user, true, Some(tries)).await;
                    let Ok(nb) = backend::connect(lab).await else {
                        close_front(lab, front, who, "no backend for the retry").await;
                        return Ok(());
                    };
                    lab.truth.now(
                        "backend_retry",
                        with(
                            who,
                            json!({"backend": nb.id, "attempt": tries + 1,
                                         "fault": Fault::DirtySsl.name()}),
                        ),
                    );
                    outcome = request(lab, nb, &cmd, &mut front, id).await;
                }
                other => {
                    outcome = other;
                    break;
                }
            }
        }
        match outcome {
            Outcome::Done(b, status) => {
                if status & SERVER_STATUS_IN_TRANS != 0 {
                    pinned = Some(b);
                } else if lab.fault(Fault::MaxAge) && b.opened.elapsed() >= lab.cfg.backend_max_age
                {
                    let max = lab.cfg.backend_max_age.as_millis() as u64;
                    let mut f = b.ident();
                    f["fault"] = json!(Fault::MaxAge.name());
                    f["max_age_ms"] = json!(max);
                    lab.truth.now("fault", f);
                    faults::close_without_quit(lab, b, Fault::MaxAge, json!({"max_age_ms": max}))
                        .await;
                } else {
                    lab.pool.put(b);
                }
            }
            Outcome::ClientGone(b, status) => {
                if status & SERVER_STATUS_IN_TRANS != 0 {
                    pinned = Some(b);
                } else {
                    lab.pool.put(b);
                }
                lab.truth.now(
                    "frontend_closed",
                    with(
                        who,
                        json!({"by": "client", "how": "error", "err": false, "quit": false,
                               "state": "response"}),
                    ),
                );
                break;
            }
            Outcome::Fault(b, order, in_flight) => {
                dirty_ssl_break(lab, b, front, who, user, order, in_flight).await;
                return Ok(());
            }
            Outcome::Broken {
                mut backend,
                error,
                how,
                relayed,
            } => {
                log_broken(lab, &backend, user);
                let ts = now_ns();
                let mut f = backend.ident();
                f["by"] = json!("server");
                f["how"] = json!(how);
                f["quit"] = json!(false);
                f["reason"] = json!(error);
                f["frontend"] = json!(id);
                lab.truth.record(ts, "backend_closed", f);
                let _ = backend.stream.tcp_mut().shutdown().await;
                drop(backend);
                if relayed == 0 {
                    // Nothing reached the client yet: it gets an ERR and the session goes on.
                    let err = wire::err(
                        2013,
                        "HY000",
                        "Lost connection to MySQL server during query",
                    );
                    front.write_all(&wire::frame(1, &err)).await?;
                    lab.truth
                        .now("frontend_err", with(who, json!({"code": 2013})));
                } else {
                    close_front(lab, front, who, "backend broken mid-response").await;
                    return Ok(());
                }
            }
        }
    }
    if let Some(mut b) = pinned {
        close_backend(lab, &mut b, true, "frontend ended inside a transaction").await;
    }
    drop(front);
    Ok(())
}

/// Relays one command and its response.
async fn request(lab: &Lab, mut b: Backend, cmd: &Packet, front: &mut Stream, id: u64) -> Outcome {
    let (tx, mut rx) = oneshot::channel();
    if let Ok(mut m) = lab.active.lock() {
        m.insert(
            id,
            Active {
                backend: b.ident(),
                order: tx,
            },
        );
    }
    let at = At {
        ts: Timestamp(0),
        frame: 0,
        file: 0,
    };
    let mut dec = Decoder::new(proxyscope::common::Side::B, Phase::Command);
    let mut events = Vec::new();
    dec.data(proxyscope::common::Side::A, &cmd.raw, at, &mut events);
    let mut framer = Framer::default();
    let mut status = 0u16;
    let mut relayed = 0u64;
    let mut client_ok = true;
    let mut buf = vec![0u8; 64 << 10];
    let result: Result<(), Stop> = async {
        b.stream.write_all(&cmd.raw).await.map_err(broken)?;
        while dec.facts.in_flight.is_some() {
            let n = tokio::select! {
                biased;
                order = &mut rx => match order {
                    Ok(o) => return Err(Stop::Order(o)),
                    Err(_) => continue,
                },
                r = b.stream.read(&mut buf) => r.map_err(broken)?,
            };
            if n == 0 {
                return Err(Stop::Broken("server closed the connection".into(), "fin"));
            }
            let data = buf.get(..n).unwrap_or_default();
            events.clear();
            dec.data(proxyscope::common::Side::B, data, at, &mut events);
            framer.feed(
                data,
                at,
                false,
                &mut |p| {
                    if let Some(s) = wire::status_of(p.payload) {
                        status = s;
                    }
                    true
                },
                &mut |_| {},
            );
            if client_ok {
                if front.write_all(data).await.is_err() {
                    client_ok = false;
                } else {
                    relayed += n as u64;
                }
            }
        }
        Ok(())
    }
    .await;
    // Out of the registry; if the fault injector took the entry first, its order is (or is about
    // to be) in the channel: carry it out on the idle backend.
    let taken = lab
        .active
        .lock()
        .map(|mut m| m.remove(&id).is_none())
        .unwrap_or(false);
    match result {
        Ok(()) if taken => match rx.try_recv() {
            Ok(o) => Outcome::Fault(b, o, false),
            Err(_) => finish(b, status, client_ok),
        },
        Ok(()) => finish(b, status, client_ok),
        Err(Stop::Order(o)) => Outcome::Fault(b, o, true),
        Err(Stop::Broken(error, how)) => Outcome::Broken {
            backend: b,
            error,
            how,
            relayed,
        },
    }
}

fn finish(b: Backend, status: u16, client_ok: bool) -> Outcome {
    if client_ok {
        Outcome::Done(b, status)
    } else {
        Outcome::ClientGone(b, status)
    }
}

/// ProxySQL's log line for a backend that broke under a query.
fn log_broken(lab: &Lab, b: &Backend, user: &str) {
    eprintln!(
        "[ERROR] Detected a broken connection while running query on {} , user {user} , last_used {}ms ago : 2013, Lost connection to MySQL server during query",
        lab.backend_tuple(b.thread_id),
        b.last_used.elapsed().as_millis()
    );
}

/// The earliest the server can end an idle backend for its `wait_timeout`: its idle clock
/// starts when it has sent its last response, which the lab marks as "last used" a little
/// later (a few ms under load), so the window opens `IDLE_CLOCK_SLACK_NS` earlier.
fn idle_deadline_ns(last_used_ns: i64, wait_s: i64) -> i64 {
    const IDLE_CLOCK_SLACK_NS: i64 = 50_000_000;
    last_used_ns + wait_s * 1_000_000_000 - IDLE_CLOCK_SLACK_NS
}

/// sysown/proxysql#1600: a request found its pooled backend dead (the server's `wait_timeout`
/// killed it while it was idle). Logs ProxySQL's line with 2006 and records the server's close,
/// which happened on the wire between `close_after_ns` (idle since + wait_timeout) and now.
async fn gone_away(
    lab: &Lab,
    mut b: Backend,
    error: &str,
    how: &str,
    user: &str,
    frontend: u64,
    attempt: u32,
) {
    let idle = b.last_used.elapsed();
    eprintln!(
        "[ERROR] Detected a broken connection while running query on {} , user {user} , last_used {}ms ago : 2006, MySQL server has gone away",
        lab.backend_tuple(b.thread_id),
        idle.as_millis()
    );
    let _ = b.stream.tcp_mut().shutdown().await;
    let ts = now_ns();
    let wait = i64::from(lab.cfg.wait_timeout().unwrap_or(0));
    let mut f = b.ident();
    f["by"] = json!("server");
    f["how"] = json!(how);
    f["quit"] = json!(false);
    f["reason"] = json!(error);
    f["fault"] = json!(Fault::WaitTimeout.name());
    f["frontend"] = json!(frontend);
    f["attempt"] = json!(attempt);
    f["idle_ms"] = json!(idle.as_millis() as u64);
    f["wait_timeout"] = json!(wait);
    f["close_after_ns"] = json!(idle_deadline_ns(b.last_used_ns, wait));
    f["close_before_ns"] = json!(ts);
    lab.truth.record(ts, "backend_closed", f);
}

/// The well-behaved close: ERR 2013 for the command just read, then close_notify (on TLS) and FIN.
async fn err_then_close(lab: &Lab, mut front: Stream, who: &Value) {
    let err = wire::err(
        2013,
        "HY000",
        "Lost connection to MySQL server during query",
    );
    lab.truth.now(
        "fault",
        with(who, json!({"fault": Fault::ErrThenClose.name()})),
    );
    // Corked: ERR, close_notify and FIN leave together, before the client can react to the ERR
    // by closing first.
    let _ = socket2::SockRef::from(front.tcp()).set_tcp_cork(true);
    let t0 = now_ns();
    let _ = front.write_all(&wire::frame(1, &err)).await;
    let _ = front.flush().await;
    let tls = front.is_tls();
    let _ = front.shutdown().await;
    lab.truth
        .record(t0, "frontend_err", with(who, json!({"code": 2013})));
    lab.truth.now(
        "frontend_closed",
        with(
            who,
            json!({"by": "proxy", "how": "fin", "err": true, "quit": false, "close_notify": tls,
                   "state": "request", "fault": Fault::ErrThenClose.name(),
                   "close_after_ns": t0, "close_before_ns": now_ns()}),
        ),
    );
    drop(front);
}

/// #4500's break of a backend: FIN (or RST, see [`super::BreakWith`]), no COM_QUIT, and the
/// ProxySQL log line; `retry`: the attempt the query goes on to (a hidden break). Returns when it
/// was closed.
async fn break_backend(
    lab: &Lab,
    mut b: Backend,
    order: &Order,
    who: &Value,
    user: &str,
    in_flight: bool,
    retry: Option<u32>,
) -> std::time::Instant {
    let Order::DirtySsl { trigger, delay_ms } = *order;
    let n = lab.breaks.fetch_add(1, Ordering::Relaxed);
    let rst = match lab.cfg.break_with {
        super::BreakWith::Fin => false,
        super::BreakWith::Rst => true,
        super::BreakWith::Alternate => n % 2 == 1,
    };
    let mut f = b.ident();
    let t0 = now_ns();
    if rst {
        faults::reset(&mut b);
    } else {
        let _ = b.stream.tcp_mut().shutdown().await;
    }
    log_broken(lab, &b, user);
    drop(b);
    let ts = now_ns();
    let closed = std::time::Instant::now();
    f["close_after_ns"] = json!(t0);
    f["close_before_ns"] = json!(ts);
    f["by"] = json!("proxy");
    f["how"] = json!(if rst { "rst" } else { "fin" });
    f["quit"] = json!(false);
    f["fault"] = json!("dirty-ssl");
    f["trigger_frontend"] = json!(trigger);
    f["delay_ms"] = json!(delay_ms);
    f["in_flight"] = json!(in_flight);
    f["frontend"] = who.get("frontend").cloned().unwrap_or(Value::Null);
    if let Some(r) = retry {
        f["retried"] = json!(r);
    }
    lab.truth.record(ts, "backend_closed", f);
    closed
}

/// The #4500 pattern: the backend closed by the proxy (FIN, no COM_QUIT), the ProxySQL log
/// line, then ~0.1 ms later the frontend (FIN, no ERR, no close_notify).
async fn dirty_ssl_break(
    lab: &Lab,
    b: Backend,
    front: Stream,
    who: &Value,
    user: &str,
    order: Order,
    in_flight: bool,
) {
    let Order::DirtySsl { trigger, .. } = order;
    let closed = break_backend(lab, b, &order, who, user, in_flight, None).await;
    // ~0.1 ms after the backend, as ProxySQL; a sleep would take several times that.
    let until = closed + Duration::from_micros(100);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    let mut front = front;
    let t0 = now_ns();
    let _ = front.tcp_mut().shutdown().await;
    let ts = now_ns();
    lab.truth.record(
        ts,
        "frontend_closed",
        with(
            who,
            json!({"by": "proxy", "how": "fin", "err": false, "quit": false, "close_notify": false,
                   "fault": "dirty-ssl", "trigger_frontend": trigger, "in_flight": in_flight,
                   "close_after_ns": t0, "close_before_ns": ts,
                   "state": if in_flight { "request" } else { "idle" }}),
        ),
    );
    drop(front);
}

/// Closes the frontend from the proxy side: FIN, no ERR, no close_notify.
async fn close_front(lab: &Lab, mut front: Stream, who: &Value, reason: &str) {
    let _ = front.tcp_mut().shutdown().await;
    lab.truth.now(
        "frontend_closed",
        with(
            who,
            json!({"by": "proxy", "how": "fin", "err": false, "quit": false, "reason": reason}),
        ),
    );
    drop(front);
}

/// `fin` or `rst` if the server has closed an idle backend (a peek without waiting), else None.
fn closed_by_peer(b: &Backend) -> Option<&'static str> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match socket2::SockRef::from(b.stream.tcp()).peek(&mut buf) {
        Ok(0) => Some("fin"),
        Ok(_) => None,
        Err(e) => match how_of(&e) {
            "rst" => Some("rst"),
            _ => None,
        },
    }
}

/// Closes a backend from the proxy side, with or without a COM_QUIT first (unless the server
/// has closed it already: then that is recorded).
pub async fn close_backend(lab: &Lab, b: &mut Backend, quit: bool, reason: &str) {
    if let Some(how) = closed_by_peer(b) {
        // The server closed it while it sat in the pool (its wait_timeout, most likely): record
        // that, not a close the lab never got to make.
        let _ = b.stream.tcp_mut().shutdown().await;
        let ts = now_ns();
        let mut f = b.ident();
        f["by"] = json!("server");
        f["how"] = json!(how);
        f["quit"] = json!(false);
        f["reason"] = json!("found closed by the server in the pool");
        f["idle_ms"] = json!(b.last_used.elapsed().as_millis() as u64);
        if let Some(wait) = lab
            .cfg
            .wait_timeout()
            .filter(|_| lab.fault(Fault::WaitTimeout))
        {
            f["fault"] = json!(Fault::WaitTimeout.name());
            f["wait_timeout"] = json!(wait);
            f["close_after_ns"] = json!(idle_deadline_ns(b.last_used_ns, i64::from(wait)));
            f["close_before_ns"] = json!(ts);
        }
        lab.truth.record(ts, "backend_closed", f);
        return;
    }
    if quit {
        let _ = b.stream.write_all(&wire::COM_QUIT_PACKET).await;
        let _ = b.stream.flush().await;
    }
    let _ = b.stream.tcp_mut().shutdown().await;
    let mut f = b.ident();
    f["by"] = json!("proxy");
    f["how"] = json!("fin");
    f["quit"] = json!(quit);
    f["reason"] = json!(reason);
    lab.truth.now("backend_closed", f);
}
