//! Where records that could not be written go: JSON lines, one per record,
//! with the reason and the input lines of its k6 points. Into a local file
//! ([`file`]) or S3 ([`s3`]).

pub mod file;
pub mod s3;

use crate::core::model::Record;
use serde::Serialize;
use std::future::Future;
use std::sync::Mutex;

/// Why a record is a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The sink stored the request's other records and refused this one
    /// (Timestream's RejectedRecords, an InfluxDB partial write).
    Rejected,
    /// The sink refuses the record itself (a one-record request that still
    /// fails validation).
    Invalid,
    /// Retryable failures outlasted the attempts, the run's retry budget or
    /// the time left.
    RetriesExhausted,
    /// The run was aborted by a fatal error while the request was pending.
    Aborted,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// The input the record came from.
    pub input: String,
    /// The request's position in the input's request sequence.
    pub batch: u64,
    /// 1-based input line numbers of the record's points.
    pub lines: Vec<u64>,
    /// Measures in the record (k6 points).
    pub measures: u64,
    pub kind: Kind,
    /// Timestream's reason, or the last error.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_version: Option<i64>,
    /// The whole record, ready to re-send, in the sink's own shape
    /// (Timestream: WriteRecords `Record` JSON).
    pub record: serde_json::Value,
}

impl DeadLetter {
    pub fn new(
        input: &str,
        batch: u64,
        r: &Record,
        record: serde_json::Value,
        kind: Kind,
        reason: String,
    ) -> Self {
        Self {
            input: input.to_owned(),
            batch,
            lines: r.lines.clone(),
            measures: r.measure_count(),
            kind,
            reason,
            existing_version: None,
            record,
        }
    }
}

/// A destination for dead letters.
pub trait DeadLetterSink: Send + Sync + 'static {
    fn put(&self, letters: Vec<DeadLetter>) -> impl Future<Output = Result<(), String>> + Send;
    /// Flushes; returns where the letters went (None when there were none).
    fn finish(&self) -> impl Future<Output = Result<Option<String>, String>> + Send;
}

/// Keeps letters in memory (tests, and the handler unit tests).
#[derive(Default)]
pub struct MemorySink {
    pub letters: Mutex<Vec<DeadLetter>>,
}

impl DeadLetterSink for MemorySink {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), String> {
        self.letters.lock().unwrap().extend(letters);
        Ok(())
    }
    async fn finish(&self) -> Result<Option<String>, String> {
        Ok((!self.letters.lock().unwrap().is_empty()).then(|| "memory".to_owned()))
    }
}
