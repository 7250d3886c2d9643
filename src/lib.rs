//! k6-timestream: k6 results → Amazon Timestream.
//!
//! The data's way through the crate:
//!
//! ```text
//! sources/ (local file, S3 object)  ── bytes ──▶ core/input   (gzip, lines)
//!   core/k6       (k6 JSON lines → points)
//!   core/convert  (points → records: naming rules, limits, groups)
//!   core/pipeline (the above over one stream, handing records to an encoder)
//! sinks/<sink>/request (records → the sink's requests; collision guard)
//! sinks/driver  (concurrent sends, retries, splits, dead letters)
//!   sinks/<sink>/service (the one network call)
//! ingest        (core on a blocking thread → driver on the runtime)
//! cli/, lambda/ (argument types, events, decisions and wiring only)
//! ```
//!
//! [`core`] is pure and synchronous: no tokio, no AWS types, no knowledge
//! of any sink's wire format. Everything that does I/O sits behind small
//! traits ([`sinks::Service`], [`sinks::dead_letter::DeadLetterSink`],
//! [`sources::ObjectSource`], [`lambda::invoke::Invoker`]), so handlers are
//! testable without a network.

pub mod aws;
pub mod cli;
pub mod core;
pub mod ingest;
pub mod lambda;
pub mod sinks;
pub mod sources;
