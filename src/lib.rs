//! proxyscope: reads packet captures taken around a MySQL proxy and tells, with evidence, which
//! side closed each connection, how, and when.
//!
//! The pipeline, one module per stage, plain data between them:
//! [`source`] (frames) → [`decode`] (TCP segments) → [`tcp`] (reassembled streams, closes)
//! → [`dissect`] ([`mysql`] and [`tls`] decoders, [`event`]s) → [`model`] (connection
//! summaries) → [`diagnose`] (verdicts, legs, incidents) → [`report`] (text, JSON) and
//! [`export`] (timeline formats, incident pcaps). [`analyze`] drives it over files, `live`
//! (cargo feature `live`, libpcap) over a live capture.
//!
//! Data flows one way: a module names only itself and the modules declared above it here
//! (`tests/pipeline.rs` checks it), so what a stage needs from a later one comes through its
//! config from the drivers (tcp's server-greeting test, for one).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// In pipeline order (tests/pipeline.rs checks it); the blank lines keep rustfmt from sorting.

/// Shared: helpers for the stream decoders' fixed-size headers.
pub mod bytes;

/// Shared: capture timestamps.
pub mod time;

/// Shared: small types every stage uses (`At`, `Endpoint`).
pub mod common;

/// Shared: output files created safely.
pub mod outfile;

/// Stage 1: capture files → frames.
pub mod source;

/// Stage 2: link, IP and tunnel layers → TCP segments.
pub mod decode;

/// Stage 2b: Community ID flow hashes of endpoints.
pub mod community_id;

/// Stage 3: TCP segments → connections, reassembled streams and closes.
pub mod tcp;

/// Stage 4: the decoded facts (events) the protocol decoders below emit.
pub mod event;

/// Stage 4a: the MySQL protocol decoder.
pub mod mysql;

/// Stage 4b: the TLS record and handshake decoder (and decryption).
pub mod tls;

/// Stage 4c: what each connection carries; streams fed to the MySQL and TLS decoders.
pub mod dissect;

/// Stage 5: a finished connection summarised, with the diagnosis data it carries.
pub mod model;

/// Stage 6: verdicts on each close, proxy legs and pairing, incidents.
pub mod diagnose;

/// Stage 7: reports (text, JSON).
pub mod report;

/// Stage 7b: timeline exports and incident pcaps.
pub mod export;

/// Driver: the pipeline over capture files.
pub mod analyze;

/// Driver: the pipeline over a live capture (cargo feature `live`).
#[cfg(feature = "live")]
pub mod live;

/// The test lab proxy (leaving for a crate of its own).
pub mod lab;
