//! proxyscope: reads packet captures taken around a MySQL proxy and tells, with evidence, which
//! side closed each connection, how, and when.
//!
//! The pipeline, one module per stage, plain data between them:
//! [`source`] (frames) → [`decode`] (TCP segments) → [`tcp`] (reassembled streams, closes)
//! → [`dissect`] ([`mysql`] and [`tls`] decoders, [`event`]s) → [`model`] (connection
//! summaries) → [`report`] (text, JSON) and [`export`] (timeline formats, incident pcaps).
//! [`analyze`] drives it over files, `live` (cargo feature `live`, libpcap) over a live capture;
//! [`app`] holds the commands around them, which the `proxyscope` binary only parses and calls.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod analyze;
pub mod app;
pub mod bytes;
pub mod community_id;
pub mod decode;
pub mod diagnose;
pub mod dissect;
pub mod event;
pub mod export;
pub mod lab;
#[cfg(feature = "live")]
pub mod live;
pub mod model;
pub mod mysql;
pub mod outfile;
pub mod report;
pub mod source;
pub mod tcp;
pub mod time;
pub mod tls;
