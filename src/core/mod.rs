//! The pure core: bytes → lines → k6 points → records, and the reports of
//! what happened to each. No tokio, no AWS types, no sink's wire format:
//! a sink turns records into its own requests behind
//! [`pipeline::Encoder`].

pub mod collision;
pub mod convert;
pub mod hash;
pub mod input;
pub mod k6;
pub mod kv;
pub mod model;
pub mod pipeline;
pub mod report;
pub mod resume;
pub mod segment;
pub mod value;
