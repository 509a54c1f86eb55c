//! proxyscope: reads packet captures taken around a MySQL proxy and tells, with evidence, which
//! side closed each connection, how, and when.
//!
//! The pipeline, one module per stage, plain data between them, in order (a module names only
//! itself and the modules above it; `tests/pipeline.rs` checks it, so what a stage needs from a
//! later one comes through its config from the drivers, as tcp's server-greeting test does):
//!
//! - [`bytes`], [`time`], [`common`], [`outfile`], [`http_head`]: shared helpers and small types (`At`,
//!   `Endpoint`) below all stages;
//! - [`source`], stage 1: capture files → frames;
//! - [`decode`], stage 2: link, IP and tunnel layers → TCP segments;
//! - [`community_id`], stage 2b: Community ID flow hashes of endpoints;
//! - [`clock`], stage 2c: clock offsets between capture files, and segments seen from two of
//!   them;
//! - [`tcp`], stage 3: segments → connections, reassembled streams and closes;
//! - [`event`], stage 4: the decoded facts the protocol decoders emit;
//! - [`mysql`], stage 4a: the MySQL protocol decoder;
//! - [`tls`], stage 4b: the TLS record and handshake decoder (and decryption);
//! - [`dissect`], stage 4c: what each connection carries, streams fed to the decoders;
//! - [`model`], stage 5: a finished connection summarised, with the diagnosis data it carries;
//! - [`diagnose`], stage 6: verdicts on each close, proxy legs and pairing, incidents;
//! - [`report`], stage 7: reports (text, JSON);
//! - [`compare`], stage 7a: two capture sets' tallies compared (before/after a change);
//! - [`export`], stage 7b: timeline exports and incident pcaps;
//! - [`analyze`], driver: the pipeline over capture files;
//! - `live`, driver: the pipeline over a live capture (cargo feature `live`, libpcap);
//! - [`app`], the commands (analyze, timeline, explain, compare, live) around the drivers, which the
//!   `proxyscope` binary only parses and calls.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// Declared in pipeline order, as listed above; the blank lines keep rustfmt from sorting them.

pub mod bytes;

pub mod time;

pub mod common;

pub mod http_head;
pub mod outfile;

pub mod source;

pub mod decode;

pub mod community_id;

pub mod clock;

pub mod tcp;

pub mod event;

pub mod mysql;

pub mod tls;

pub mod dissect;

pub mod model;

pub mod diagnose;

pub mod report;

pub mod compare;

pub mod export;

pub mod analyze;

#[cfg(feature = "live")]
pub mod live;

pub mod app;
