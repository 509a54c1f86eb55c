//! Faults carried out on pooled backends, and the periodic injector that fires them
//! ([`Fault::PlaintextQuit`], [`Fault::DropBurst`], [`Fault::ErrThenClose`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::backend::Backend;
use super::truth::now_ns;
use super::wire;
use super::{Fault, Lab};

/// Every `fault_interval`, fires the periodic faults that are on.
pub async fn injector(lab: Arc<Lab>) {
    let mut tick = tokio::time::interval(lab.cfg.fault_interval);
    // The first tick is immediate: skip it, the pool is still empty.
    tick.tick().await;
    loop {
        tick.tick().await;
        if lab.fault(Fault::ErrThenClose) {
            lab.err_pending.store(true, Ordering::Relaxed);
        }
        if lab.fault(Fault::PlaintextQuit) {
            match lab.pool.take() {
                Some(b) => plaintext_quit(&lab, b).await,
                None => skipped(&lab, Fault::PlaintextQuit, "no idle backend"),
            }
        }
        if lab.fault(Fault::DropBurst) {
            let all = lab.pool.drain();
            if all.is_empty() {
                skipped(&lab, Fault::DropBurst, "no idle backend");
            } else {
                let ids: Vec<Value> = all.iter().map(Backend::ident).collect();
                lab.truth.now(
                    "fault",
                    json!({"fault": Fault::DropBurst.name(), "backends": ids}),
                );
                for b in all {
                    close_without_quit(&lab, b, Fault::DropBurst, json!({})).await;
                }
            }
        }
    }
}

fn skipped(lab: &Lab, fault: Fault, reason: &str) {
    lab.truth.now(
        "fault_skipped",
        json!({"fault": fault.name(), "reason": reason}),
    );
}

/// sysown/proxysql#2800: a plaintext COM_QUIT written on the TCP socket under TLS, then FIN (in
/// the same segment).
pub async fn plaintext_quit(lab: &Lab, mut b: Backend) {
    let mut f = b.ident();
    f["fault"] = json!(Fault::PlaintextQuit.name());
    f["idle_ms"] = json!(b.last_used.elapsed().as_millis() as u64);
    lab.truth.now("fault", f);
    let tcp = b.stream.tcp_mut();
    // Corked, the five bytes wait for the FIN and leave in one segment with it: otherwise the
    // server may read them, answer with an alert and close before the lab's FIN is out.
    let _ = socket2::SockRef::from(&*tcp).set_tcp_cork(true);
    let wrote = tcp.write_all(&wire::COM_QUIT_PACKET).await.is_ok();
    let t0 = now_ns();
    let _ = tcp.shutdown().await;
    let ts = now_ns();
    let mut f = b.closed_by_proxy(t0, ts, true);
    f["quit_plaintext"] = json!(wrote);
    f["close_notify"] = json!(false);
    f["fault"] = json!(Fault::PlaintextQuit.name());
    lab.truth.record(ts, "backend_closed", f);
    drop(b);
}

/// Closes a backend from the proxy side with FIN and no COM_QUIT (no close_notify either),
/// recording `fault` and `extra` fields.
pub async fn close_without_quit(lab: &Lab, mut b: Backend, fault: Fault, extra: Value) {
    let t0 = now_ns();
    let _ = b.stream.tcp_mut().shutdown().await;
    let ts = now_ns();
    let mut f = b.closed_by_proxy(t0, ts, false);
    f["close_notify"] = json!(false);
    f["fault"] = json!(fault.name());
    f["age_ms"] = json!(b.opened.elapsed().as_millis() as u64);
    if let (Value::Object(m), Value::Object(e)) = (&mut f, extra) {
        m.extend(e);
    }
    lab.truth.record(ts, "backend_closed", f);
    drop(b);
}

/// Keep-alive pings of idle pooled backends (ProxySQL's `mysql-ping_interval_server_msec`).
/// With [`Fault::DirtySsl`] pending, the ping after the trigger breaks its backend: the server
/// answers OK, then the lab resets the connection, as ProxySQL 2.6.3 does ("Detected a broken
/// connection while during ping").
pub async fn pinger(lab: Arc<Lab>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every / 2);
    tick.tick().await;
    loop {
        tick.tick().await;
        let idle = lab.pool.drain();
        for mut b in idle {
            if b.last_used.elapsed() < every {
                lab.pool.put_back(b);
                continue;
            }
            let sent = b
                .stream
                .write_all(&wire::frame(0, &[COM_PING]))
                .await
                .is_ok()
                && b.stream.flush().await.is_ok();
            let ok = sent
                && matches!(wire::read_packet(&mut b.stream).await, Ok(Some(p)) if p.payload.first() == Some(&0));
            if !ok {
                super::session::close_backend(&lab, &mut b, false, "ping failed").await;
                continue;
            }
            let trigger = lab.ping_break.swap(0, Ordering::Relaxed);
            if trigger == 0 {
                lab.pool.put(b);
                continue;
            }
            let trigger = trigger - 1;
            let mut f = b.ident();
            f["fault"] = json!(Fault::DirtySsl.name());
            f["trigger_frontend"] = json!(trigger);
            f["form"] = json!("ping");
            lab.truth.now("fault", f);
            let (mut f, thread, idle_ms) =
                (b.ident(), b.thread_id, b.last_used.elapsed().as_millis());
            let t0 = now_ns();
            reset(&mut b);
            drop(b);
            let ts = now_ns();
            f["close_after_ns"] = json!(t0);
            f["close_before_ns"] = json!(ts);
            f["by"] = json!("proxy");
            f["how"] = json!("rst");
            f["quit"] = json!(false);
            f["fault"] = json!(Fault::DirtySsl.name());
            f["form"] = json!("ping");
            f["trigger_frontend"] = json!(trigger);
            lab.truth.record(ts, "backend_closed", f);
            eprintln!(
                "[ERROR] Detected a broken connection while during ping on {} , user {} , last_used {}ms ago : 2013, Lost connection to MySQL server during query",
                lab.backend_tuple(thread),
                lab.cfg.backend_user,
                idle_ms
            );
        }
    }
}

const COM_PING: u8 = 0x0e;

/// Makes the next close of `b`'s socket a RST (SO_LINGER 0).
pub fn reset(b: &mut Backend) {
    let _ =
        socket2::SockRef::from(&*b.stream.tcp_mut()).set_linger(Some(std::time::Duration::ZERO));
}
