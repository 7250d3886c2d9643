//! The one I/O operation the writer needs, behind a trait, and its errors
//! stated without AWS types so the retry logic is a pure, tested unit.

use crate::model::WriteRequest;
use std::future::Future;

/// A record Timestream refused inside an otherwise successful request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// Index into `WriteRequest::records`.
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
    /// `ThrottlingException` (or HTTP 429).
    Throttled(String),
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
            WriteError::Throttled(m) => write!(f, "throttled: {m}"),
            WriteError::Server(m) => write!(f, "server error: {m}"),
            WriteError::Timeout => write!(f, "request timed out"),
            WriteError::Connection(m) => write!(f, "connection error: {m}"),
            WriteError::NotFound(m) => write!(f, "not found: {m}"),
            WriteError::AccessDenied(m) => write!(f, "access denied: {m}"),
            WriteError::Fatal(m) => write!(f, "{m}"),
        }
    }
}

/// Sends one request. Implementations must not retry on their own (the
/// writer's retry layer is the only one).
pub trait RecordsWriter: Send + Sync + 'static {
    fn write(&self, req: &WriteRequest) -> impl Future<Output = Result<(), WriteError>> + Send;
}
