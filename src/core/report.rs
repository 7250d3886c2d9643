//! The run report: one schema for `convert`, `ingest` and the Lambda.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many first line numbers are kept per reason.
pub const FIRST_LINES_KEPT: usize = 10;

/// What became of an object (the Lambda's report and metric dimension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every point was written or dead-lettered.
    Complete,
    /// The rest was handed to a new invocation.
    Continued,
    /// The key does not look like k6 results.
    Skipped,
    /// Deleted since the event.
    NotFound,
    /// Replaced since the event (the replacement has its own event).
    Replaced,
    /// An error no retry can cure (bad input, a sink refusing the run).
    Failed,
    /// The continuation chain reached its bound.
    ChainLimit,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Continued => "continued",
            Outcome::Skipped => "skipped",
            Outcome::NotFound => "not_found",
            Outcome::Replaced => "replaced",
            Outcome::Failed => "failed",
            Outcome::ChainLimit => "chain_limit",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunReport {
    /// What was read: a path, `-`, or `s3://bucket/key`.
    pub input: String,
    /// S3 object version read (Lambda / s3:// input), when versioned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Lambda: what became of the object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    pub model: String,
    /// The k6 output format found in the input, `json` or `csv` (told by
    /// its first lines, never by its name); empty when none was found.
    pub format: String,
    /// Whether the input was gzip (detected by magic bytes).
    pub gzip: bool,
    /// The text began with a UTF-8 byte-order mark (skipped, not an error).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bom: bool,
    /// Bytes read from the source (compressed size for gzip input) by this
    /// run (a Lambda continuation: by this invocation).
    pub bytes_read: u64,
    /// Bytes of input text this run inflated (or read, for plain input).
    pub bytes_decompressed: u64,
    /// Lines seen, blank ones included.
    pub lines: u64,
    pub blank_lines: u64,
    pub metric_definitions: u64,
    /// Valid `Point` lines.
    pub points: u64,
    /// Points by k6 metric kind (`unknown` when no `Metric` line defined it).
    pub points_by_kind: BTreeMap<String, u64>,
    /// Measures in the produced records. Invariant: `points = measures + Σ dropped`.
    pub measures: u64,
    pub records: u64,
    /// WriteRecords requests produced.
    pub batches: u64,
    /// Bad lines, by reason: they are not points.
    pub skipped: BTreeMap<String, u64>,
    pub skipped_first_lines: BTreeMap<String, Vec<u64>>,
    /// Lines of a `type` this tool does not know, by type.
    pub ignored: BTreeMap<String, u64>,
    /// Valid points that cannot be written, by reason.
    pub dropped: BTreeMap<String, u64>,
    pub dropped_first_lines: BTreeMap<String, Vec<u64>>,
    /// Changes made to fit Timestream's rules (renames, truncations), by rule.
    pub adjusted: BTreeMap<String, u64>,
    /// Records moved by +1 ns (repeatedly if needed) because another record
    /// with the same dimensions, measure name and time had other values.
    pub nudged: u64,
    /// Records identical to an earlier one (same dimensions, measure name,
    /// time and values): written, but Timestream stores them once.
    pub identical_duplicates: u64,
    /// Measures in those records.
    pub identical_duplicate_measures: u64,
    /// Records whose time fell where the collision guard had forgotten
    /// records (far out of time order): they could not be checked for
    /// collisions with those (Timestream may reject some).
    pub collision_window_misses: u64,
    /// Estimated metered write bytes (per request, rounded up to 1 KiB).
    pub estimated_write_bytes: u64,
    /// The same before rounding.
    pub estimated_event_bytes: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,

    // Writer (ingest / Lambda)
    pub written_records: u64,
    pub written_measures: u64,
    pub rejected_records: u64,
    pub rejected_measures: u64,
    /// Record-level rejections by reason.
    pub rejected_reasons: BTreeMap<String, u64>,
    pub retries: u64,
    /// Requests split to isolate records after a ValidationException.
    pub splits: u64,
    /// Records sent to the dead-letter sink (rejected, invalid, or never
    /// written because retries ran out).
    pub dead_lettered: u64,
    pub dead_lettered_measures: u64,
    /// Where the dead letters went.
    pub dead_letter_location: Option<String>,
    /// Requests not sent because an earlier invocation confirmed them.
    pub batches_skipped: u64,
    pub batches_written: u64,

    // Lambda
    pub continuations: u64,
    pub continued: bool,
    pub seconds: f64,
    /// `bytes_read` and `bytes_decompressed` summed over the invocations of
    /// the object's continuation chain so far.
    pub chain_bytes_read: u64,
    pub chain_bytes_decompressed: u64,
    /// Fan-out: the segments whose reports were merged into this one (0:
    /// the object was not split).
    #[serde(skip_serializing_if = "is_zero")]
    pub segments: u64,

    /// Whether the input was read to its end.
    pub complete: bool,
    /// The fatal error that ended the run early, if any.
    pub error: Option<String>,
    /// The error's stable code, when it has one (`not_k6`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// What the user should know about the converted data (e.g. times of
    /// whole seconds), one sentence each.
    pub warnings: Vec<String>,
}

impl RunReport {
    pub fn skip(&mut self, reason: &str, line: u64) {
        bump(
            &mut self.skipped,
            &mut self.skipped_first_lines,
            reason,
            line,
        );
    }
    pub fn drop_point(&mut self, reason: &str, line: u64) {
        bump(
            &mut self.dropped,
            &mut self.dropped_first_lines,
            reason,
            line,
        );
    }
    pub fn adjust(&mut self, rule: &str) {
        bump_key(&mut self.adjusted, rule);
    }
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// `points = measures + Σ dropped` (checked in tests and by the CLI).
    pub fn conversion_balanced(&self) -> bool {
        self.points == self.measures + self.dropped_total()
    }

    /// Adds the counters an encoder keeps (the Timestream batcher and its
    /// collision guard: records, requests, estimated bytes, nudges,
    /// duplicates, window misses) of `c`.
    pub fn add_encoder_counters(&mut self, c: &RunReport) {
        self.records += c.records;
        self.batches += c.batches;
        self.estimated_event_bytes += c.estimated_event_bytes;
        self.estimated_write_bytes += c.estimated_write_bytes;
        self.nudged += c.nudged;
        self.identical_duplicates += c.identical_duplicates;
        self.identical_duplicate_measures += c.identical_duplicate_measures;
        self.collision_window_misses += c.collision_window_misses;
    }

    /// Adds the writer-side counters of an earlier invocation (Lambda
    /// continuations): the conversion side is recomputed by re-reading.
    pub fn add_carried(&mut self, c: &RunReport) {
        self.written_records += c.written_records;
        self.written_measures += c.written_measures;
        self.rejected_records += c.rejected_records;
        self.rejected_measures += c.rejected_measures;
        add_counts(&mut self.rejected_reasons, &c.rejected_reasons);
        self.retries += c.retries;
        self.splits += c.splits;
        self.dead_lettered += c.dead_lettered;
        self.dead_lettered_measures += c.dead_lettered_measures;
        self.batches_written += c.batches_written;
        self.seconds += c.seconds;
        self.chain_bytes_read += c.chain_bytes_read;
        self.chain_bytes_decompressed += c.chain_bytes_decompressed;
        if self.dead_letter_location.is_none() {
            self.dead_letter_location
                .clone_from(&c.dead_letter_location);
        }
    }

    /// A short human summary (stderr of the CLI).
    pub fn human(&self) -> String {
        let mut s = format!(
            "{}: {} lines, {} points -> {} measures in {} records, {} requests (~{} KiB metered)",
            self.input,
            self.lines,
            self.points,
            self.measures,
            self.records,
            self.batches,
            self.estimated_write_bytes / 1024
        );
        let list = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.skipped.is_empty() {
            s += &format!("\n  skipped lines: {}", list(&self.skipped));
            for (k, v) in &self.skipped_first_lines {
                s += &format!("\n    {k} first at lines {v:?}");
            }
        }
        if !self.dropped.is_empty() {
            s += &format!("\n  dropped points: {}", list(&self.dropped));
        }
        if !self.adjusted.is_empty() {
            s += &format!("\n  adjusted: {}", list(&self.adjusted));
        }
        if self.nudged > 0 {
            s += &format!("\n  timestamp collisions resolved by +1ns: {}", self.nudged);
        }
        if self.collision_window_misses > 0 {
            s += &format!(
                "\n  WARNING: {} records could not be checked for timestamp collisions (input far out of time order); Timestream may reject some as conflicts",
                self.collision_window_misses
            );
        }
        if self.written_records + self.dead_lettered > 0 || self.batches_written > 0 {
            s += &format!(
                "\n  written: {} records / {} measures; rejected: {} records; dead-lettered: {} records / {} measures; retries: {}",
                self.written_records,
                self.written_measures,
                self.rejected_records,
                self.dead_lettered,
                self.dead_lettered_measures,
                self.retries
            );
            if !self.rejected_reasons.is_empty() {
                s += &format!("\n  rejected reasons: {}", list(&self.rejected_reasons));
            }
            if let Some(l) = &self.dead_letter_location {
                if self.dead_lettered > 0 {
                    s += &format!("\n  dead letters: {l}");
                }
            }
        }
        for w in &self.warnings {
            s += &format!("\n  warning: {w}");
        }
        if let Some(e) = &self.error {
            s += &format!("\n  ERROR: {e}");
        }
        s
    }
}

/// `*m[key] += 1` without allocating the key when it is already there
/// (this runs per point).
pub fn bump_key(m: &mut BTreeMap<String, u64>, key: &str) {
    match m.get_mut(key) {
        Some(v) => *v += 1,
        None => {
            m.insert(key.to_owned(), 1);
        }
    }
}

/// Adds the counts of `from` to `into`, key by key.
pub(crate) fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

fn bump(
    counts: &mut BTreeMap<String, u64>,
    first: &mut BTreeMap<String, Vec<u64>>,
    reason: &str,
    line: u64,
) {
    bump_key(counts, reason);
    match first.get_mut(reason) {
        Some(v) if v.len() < FIRST_LINES_KEPT => v.push(line),
        Some(_) => {}
        None => {
            first.insert(reason.to_owned(), vec![line]);
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
