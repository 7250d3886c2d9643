//! Sinks: where records go. The boundary every sink implements:
//!
//! - an encoder ([`crate::core::pipeline::Encoder`]) that turns the core's
//!   records into the sink's requests, deterministically (request N of an
//!   input is always the same request: resumes skip confirmed ones);
//! - the [`Request`] it produces (what the [`driver`] needs to split one
//!   and to dead-letter its records);
//! - a [`Service`] that sends one request, mapping the sink's answers onto
//!   [`WriteError`] so the retry decisions ([`retry`]) are sink-neutral.
//!
//! Two sinks: [`timestream`] (Amazon Timestream for LiveAnalytics) and
//! [`influxdb`] (InfluxDB 1.x, 2.x and 3, as Amazon Timestream for
//! InfluxDB runs them).

pub mod dead_letter;
pub mod driver;
pub mod influxdb;
pub mod retry;
pub mod timestream;

use crate::core::model::Record;
use std::future::Future;
use std::time::Duration;

/// Which sink records go to (`--sink`, `K6TS_SINK`).
// (Plain comments on the variants: doc comments would become clap's
// per-value help and switch `--help` to its long layout.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SinkKind {
    // Amazon Timestream for LiveAnalytics.
    #[default]
    Timestream,
    // InfluxDB 1.x, 2.x or 3 (Amazon Timestream for InfluxDB).
    Influxdb,
}

impl std::str::FromStr for SinkKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "timestream" => Ok(Self::Timestream),
            "influxdb" => Ok(Self::Influxdb),
            _ => Err(format!(
                "unknown sink {s:?} (expected `timestream` or `influxdb`)"
            )),
        }
    }
}

/// One request of a sink, as the driver handles it.
pub trait Request: Sized + Send + Sync + 'static {
    /// 0-based position in the deterministic request sequence of the input.
    fn seq(&self) -> u64;
    /// The records it carries, in the order the sink reports them (a
    /// [`RejectedRecord::index`] is an index into this).
    fn records(&self) -> &[Record];
    /// Measures (k6 points) it carries.
    fn measure_count(&self) -> u64 {
        self.records().iter().map(Record::measure_count).sum()
    }
    /// Two valid requests of the same `seq` with the first and the second
    /// half of the records (only called with two or more records).
    fn split(self) -> (Self, Self);
    /// Record `i` in the sink's own shape, ready to re-send, for a dead
    /// letter.
    fn record_json(&self, i: usize) -> serde_json::Value;
}

/// A record the sink refused inside an otherwise successful request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// Index into [`Request::records`].
    pub index: usize,
    pub reason: String,
    pub existing_version: Option<i64>,
}

/// Why a WriteRecords call did not fully succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// `RejectedRecordsException`: the other records were stored.
    Rejected(Vec<RejectedRecord>),
    /// `ValidationException`: the whole request was refused, nothing stored.
    Validation(String),
    /// `ThrottlingException`, HTTP 429 (or InfluxDB's 503). `retry_after`:
    /// the server's `Retry-After`, the least wait before the next attempt.
    Throttled {
        message: String,
        retry_after: Option<Duration>,
    },
    /// `InternalServerException` or any 5xx.
    Server(String),
    /// The per-request timeout elapsed.
    Timeout,
    /// Connection refused/reset, DNS, TLS, a response cut short.
    Connection(String),
    /// `ResourceNotFoundException`: database or table missing.
    NotFound(String),
    /// `AccessDeniedException`, bad credentials or signature.
    AccessDenied(String),
    /// Anything else (bad region, invalid endpoint, unknown 4xx).
    Fatal(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Rejected(r) => write!(f, "{} records rejected", r.len()),
            WriteError::Validation(m) => write!(f, "validation error: {m}"),
            WriteError::Throttled { message, .. } => write!(f, "throttled: {message}"),
            WriteError::Server(m) => write!(f, "server error: {m}"),
            WriteError::Timeout => write!(f, "request timed out"),
            WriteError::Connection(m) => write!(f, "connection error: {m}"),
            WriteError::NotFound(m) => write!(f, "not found: {m}"),
            WriteError::AccessDenied(m) => write!(f, "access denied: {m}"),
            WriteError::Fatal(m) => write!(f, "{m}"),
        }
    }
}

impl WriteError {
    /// A throttling error without a `Retry-After`.
    pub fn throttled(message: impl Into<String>) -> Self {
        WriteError::Throttled {
            message: message.into(),
            retry_after: None,
        }
    }

    /// How long the server asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            WriteError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Sends one request. Implementations must not retry on their own (the
/// driver's retry layer is the only one).
pub trait Service<R: Request>: Send + Sync + 'static {
    fn write(&self, req: &R) -> impl Future<Output = Result<(), WriteError>> + Send;
}
