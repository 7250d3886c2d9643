//! Where records that could not be written go: JSON lines, one per record,
//! with the reason and the input lines of its k6 points.

use crate::model::{DataModel, Record};
use serde::Serialize;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

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
    /// `rejected`, `invalid`, `retries_exhausted`, `aborted`.
    pub kind: &'static str,
    /// Timestream's reason, or the last error.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_version: Option<i64>,
    /// The whole record, ready to re-send (WriteRecords `Record` shape).
    pub record: serde_json::Value,
}

impl DeadLetter {
    pub fn new(
        input: &str,
        batch: u64,
        model: DataModel,
        r: &Record,
        kind: &'static str,
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
            record: crate::request_json::record_value(model, r),
        }
    }
}

/// A destination for dead letters.
pub trait DeadLetterSink: Send + Sync + 'static {
    fn put(&self, letters: Vec<DeadLetter>) -> impl Future<Output = Result<(), String>> + Send;
    /// Flushes; returns where the letters went (None when there were none).
    fn finish(&self) -> impl Future<Output = Result<Option<String>, String>> + Send;
    /// Where letters go, for the report.
    fn location(&self) -> String;
}

/// A local JSON-lines file, created on the first letter (no empty files).
pub struct FileSink {
    path: PathBuf,
    file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
}

impl FileSink {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: Mutex::new(None),
        }
    }
}

impl DeadLetterSink for FileSink {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), String> {
        // Dead letters are rare and small: a blocking append under a mutex
        // is simpler than a writer task and costs nothing measurable.
        let mut g = self.file.lock().unwrap();
        if g.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
            *g = Some(std::io::BufWriter::new(f));
        }
        let w = g.as_mut().unwrap();
        for l in letters {
            serde_json::to_writer(&mut *w, &l).map_err(|e| e.to_string())?;
            w.write_all(b"\n")
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
        }
        Ok(())
    }

    async fn finish(&self) -> Result<Option<String>, String> {
        let mut g = self.file.lock().unwrap();
        match g.as_mut() {
            Some(w) => {
                w.flush()
                    .map_err(|e| format!("{}: {e}", self.path.display()))?;
                Ok(Some(self.path.display().to_string()))
            }
            None => Ok(None),
        }
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
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
    fn location(&self) -> String {
        "memory".to_owned()
    }
}
