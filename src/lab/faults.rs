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
