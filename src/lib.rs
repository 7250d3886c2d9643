//! k6-timestream: k6 JSON results → Amazon Timestream.
//!
//! The core is pure and synchronous: [`input`] turns bytes into lines,
//! [`k6`] parses them, [`convert`] makes records, [`batch`] makes
//! WriteRecords requests, [`pipeline`] runs the lot over a stream. The
//! I/O layers ([`writer`], [`source`], [`lambda`]) sit on top behind small
//! traits, so handlers are testable without a network.

pub mod batch;
pub mod cli;
pub mod convert;
pub mod ingest;
pub mod input;
pub mod k6;
pub mod lambda;
pub mod model;
pub mod pipeline;
pub mod report;
pub mod request_json;
pub mod s3;
pub mod source;
pub mod time;
pub mod writer;
