//! The AWS Lambda function: S3 result drop → streamed object → sink.
//!
//! [`event`] parses what invoked us (typed), [`batch`] maps S3 Batch
//! Operations tasks to their answer (pure), [`config`] reads the
//! environment once at init, [`plan`] turns the deadline into stop times
//! (pure), [`decide`] turns an ingest result into the object's outcome
//! (pure), [`continuation`] and [`invoke`] hand unfinished work to a new
//! invocation, [`fanout`] spreads a big object over parallel segment
//! invocations (its decisions pure), [`metrics`] emits the EMF line, [`sink`] is what the
//! handler needs of the sink chosen at init, and [`handler`] wires them.

pub mod batch;
pub mod config;
pub mod continuation;
pub mod decide;
pub mod event;
pub mod fanout;
pub mod handler;
pub mod invoke;
pub mod metrics;
pub mod plan;
pub mod sink;

/// Logs through tracing with Lambda's advanced logging controls:
/// `AWS_LAMBDA_LOG_LEVEL` (else `RUST_LOG`, default info) and
/// `AWS_LAMBDA_LOG_FORMAT=JSON`. Logs go to stderr; stdout carries the EMF
/// metric lines.
pub fn init_tracing() {
    lambda_runtime::tracing::init_default_subscriber_with_writer(std::io::stderr);
}
