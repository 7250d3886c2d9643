//! Amazon Timestream for LiveAnalytics: records → ≤100-record WriteRecords
//! requests ([`request`]), their JSON shape ([`encode`]), the SDK call and
//! its error mapping ([`service`]), and the sink's options ([`config`]).

pub mod config;
pub mod encode;
pub mod request;
pub mod service;

pub use request::{Batcher, WriteRequest, DEFAULT_GROUP_WINDOW};
