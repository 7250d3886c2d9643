//! `ingest` over many objects: an S3 prefix (`s3://bucket/runs/`, or any
//! s3:// input with `--prefix`), several files, globs — in one call.
//!
//! - **Objects**: a prefix is listed with ListObjectsV2, page by page, and
//!   only keys with the Lambda's suffixes ([`crate::sources::DEFAULT_SUFFIXES`])
//!   are taken; an `s3://bucket/key` without a trailing `/` is that one
//!   object; local patterns are expanded by [`crate::sources::glob`]. Each
//!   object is ingested as a single `ingest` would (its own testid, its own
//!   deterministic requests, its own collision guard).
//! - **Concurrency**: `--objects-in-flight M` objects are read and converted
//!   at once (each on its own reading and converting threads), and
//!   `--concurrency N` is the number of write calls in flight across all of
//!   them together: the objects share one client and N permits, each
//!   attempt holding one only for the call itself. So one object alone can
//!   use all N, and M objects never make more than N calls at once. The
//!   retry budget is per object.
//! - **Dead letters**: one file for the whole run (`--dead-letter`, default
//!   `./backfill.dead-letter.jsonl`); every letter names its object in
//!   `input`.
//! - **Resuming**: with `--state FILE`, every finished object is appended to
//!   FILE as a JSON line (S3: key and ETag; local: path, size and mtime;
//!   with its outcome and counts), and objects FILE already lists as
//!   finished — every point written, dead-lettered or dropped — with the
//!   same identity are skipped. An interrupted backfill, run again with
//!   the same FILE, redoes only the objects that had not finished; their
//!   requests are the same as before, so what the first attempt stored
//!   comes again as identical duplicates (stored once). A failed object
//!   is retried. Its earlier dead letters may appear twice in the
//!   dead-letter file (same `input`, `batch` and `lines`).
//! - **Sinks**: Timestream or InfluxDB (`--sink`), one writer and one
//!   encoder per object of the same kind for the whole run.
//! - **Exit status**: the worst over all objects: 0 all written, 1 some
//!   points dead-lettered or dropped, 3 an object failed (or was not
//!   started because a fatal sink error stopped the run).

use super::progress::{self, thousands, Board, Mode};
use super::{exit, ConversionArgs};
use crate::core::pipeline::Encoder;
use crate::core::report::RunReport;
use crate::ingest::{ingest, Failure, Live, Sink};
use crate::sinks::dead_letter::file::FileSink;
use crate::sinks::dead_letter::DeadLetterSink;
use crate::sinks::driver::WriterConfig;
use crate::sinks::{Request, Service};
use crate::sources::s3::{list_prefix, ListPages, S3Lister, S3Source};
use crate::sources::{glob, ObjectRef, ObjectSource, DEFAULT_SUFFIXES};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const DEFAULT_OBJECTS_IN_FLIGHT: usize = 4;
pub const DEFAULT_DEAD_LETTER_FILE: &str = "backfill.dead-letter.jsonl";

/// The options of multi-object ingest (flattened into `ingest`).
#[derive(Args, Debug, Clone)]
pub struct BackfillArgs {
    /// Read s3:// inputs as key prefixes, also without a trailing `/` (s3://bucket/runs/2024-).
    #[arg(long)]
    pub prefix: bool,
    /// With several objects (a prefix, several files, a glob): how many are read, converted and written at once (--concurrency is shared by all of them).
    #[arg(long, default_value_t = DEFAULT_OBJECTS_IN_FLIGHT, value_parser = parse_objects_in_flight, value_name = "N")]
    pub objects_in_flight: usize,
    /// Resume file (JSON lines): objects it lists as finished are skipped, every object that finishes is appended.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// ListObjectsV2 page size.
    #[arg(long, hide = true, default_value_t = 1000, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub list_page_size: i32,
}

fn parse_objects_in_flight(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err(format!("expected a number from 1 to 256, got {s:?}")),
    }
}

/// Does this command line take the multi-object path?
pub fn wanted(inputs: &[&str], args: &BackfillArgs) -> bool {
    inputs.len() > 1
        || args.prefix
        || args.state.is_some()
        || inputs.iter().any(|i| {
            if let Some(rest) = i.strip_prefix("s3://") {
                rest.ends_with('/') || !rest.contains('/')
            } else {
                glob::is_pattern(i) && !Path::new(i).exists()
            }
        })
}

/// One object to ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    S3 {
        bucket: String,
        key: String,
        size: u64,
        etag: Option<String>,
    },
    Local {
        /// As given (shown, and the testid comes from its name).
        path: PathBuf,
        /// Absolute (the identity in the state file).
        canonical: PathBuf,
        size: u64,
        mtime_ns: i64,
    },
}

impl Target {
    pub fn name(&self) -> String {
        match self {
            Target::S3 { bucket, key, .. } => format!("s3://{bucket}/{key}"),
            Target::Local { path, .. } => path.display().to_string(),
        }
    }

    pub fn size(&self) -> u64 {
        match self {
            Target::S3 { size, .. } | Target::Local { size, .. } => *size,
        }
    }

    pub fn identity(&self) -> Identity {
        match self {
            Target::S3 { etag, .. } => Identity::S3 {
                key: self.name(),
                etag: etag.clone(),
            },
            Target::Local {
                canonical,
                size,
                mtime_ns,
                ..
            } => Identity::Local {
                path: canonical.display().to_string(),
                size: *size,
                mtime_ns: *mtime_ns,
            },
        }
    }
}

/// What makes an object the same object in a later run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Identity {
    S3 {
        /// `s3://bucket/key`.
        key: String,
        etag: Option<String>,
    },
    Local {
        path: String,
        size: u64,
        mtime_ns: i64,
    },
}

/// What became of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectOutcome {
    /// Every point written.
    Ok,
    /// Read to the end; some records dead-lettered.
    DeadLettered,
    /// Read to the end; some points cannot be written (NaN, out of range).
    Dropped,
    /// Unreadable, corrupt, replaced since the listing, or the sink refused.
    Failed,
    /// A fatal sink error stopped the run first.
    NotStarted,
}

impl ObjectOutcome {
    /// Every point was accounted for: a re-run skips the object.
    pub fn finished(self) -> bool {
        matches!(
            self,
            ObjectOutcome::Ok | ObjectOutcome::DeadLettered | ObjectOutcome::Dropped
        )
    }

    pub fn exit_code(self) -> i32 {
        match self {
            ObjectOutcome::Ok => exit::OK,
            ObjectOutcome::DeadLettered | ObjectOutcome::Dropped => exit::DEAD_LETTERED,
            ObjectOutcome::Failed | ObjectOutcome::NotStarted => exit::FATAL,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectOutcome::Ok => "ok",
            ObjectOutcome::DeadLettered => "dead-lettered",
            ObjectOutcome::Dropped => "dropped",
            ObjectOutcome::Failed => "failed",
            ObjectOutcome::NotStarted => "not started",
        }
    }

    pub fn of(report: &RunReport) -> ObjectOutcome {
        if report.error.is_some() || !report.complete {
            ObjectOutcome::Failed
        } else if report.dead_lettered > 0 {
            ObjectOutcome::DeadLettered
        } else if report.dropped_total() > 0 {
            ObjectOutcome::Dropped
        } else {
            ObjectOutcome::Ok
        }
    }
}

/// One line of the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateLine {
    #[serde(flatten)]
    pub id: Identity,
    pub outcome: ObjectOutcome,
    pub points: u64,
    pub written_measures: u64,
    pub dead_lettered_measures: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The state file: what earlier runs finished, and the append handle.
pub struct State {
    path: PathBuf,
    finished: HashMap<Identity, StateLine>,
    file: Mutex<std::fs::File>,
    /// Lines that could not be read (a line cut by a kill mid-write).
    pub unreadable: u64,
}

impl State {
    /// Reads `path` (a missing file is an empty state) and opens it for
    /// appending. The latest line of an identity wins.
    pub fn open(path: &Path) -> std::io::Result<State> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut finished = HashMap::new();
        let mut unreadable = 0;
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<StateLine>(l) {
                Ok(s) if s.outcome.finished() => {
                    finished.insert(s.id.clone(), s);
                }
                Ok(s) => {
                    finished.remove(&s.id);
                }
                Err(_) => unreadable += 1,
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        if !text.is_empty() && !text.ends_with('\n') {
            // A line cut by a kill: end it so the next one stays readable.
            file.write_all(b"\n")?;
        }
        Ok(State {
            path: path.to_owned(),
            finished,
            file: Mutex::new(file),
            unreadable,
        })
    }

    pub fn finished(&self, id: &Identity) -> Option<&StateLine> {
        self.finished.get(id)
    }

    /// Appends one line with a single write (O_APPEND): a kill leaves at
    /// most this line cut, never an earlier one.
    pub fn record(&self, line: &StateLine) -> std::io::Result<()> {
        let mut s = serde_json::to_string(line).map_err(std::io::Error::other)?;
        s.push('\n');
        self.file.lock().unwrap().write_all(s.as_bytes())
    }
}

/// One row of the final table (and of the JSON summary).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub input: String,
    pub outcome: ObjectOutcome,
    /// Finished by an earlier run (`--state`): not read again.
    pub earlier: bool,
    pub points: u64,
    pub written_measures: u64,
    pub dead_lettered_measures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<RunReport>,
}

impl Row {
    fn from_report(input: String, report: RunReport) -> Row {
        Row {
            input,
            outcome: ObjectOutcome::of(&report),
            earlier: false,
            points: report.points,
            written_measures: report.written_measures,
            dead_lettered_measures: report.dead_lettered_measures,
            error: report.error.clone(),
            report: Some(report),
        }
    }

    fn outcome_text(&self) -> String {
        let mut s = self.outcome.as_str().to_owned();
        if self.earlier {
            s += " (earlier run)";
        }
        if let Some(e) = &self.error {
            s += ": ";
            s += e;
        }
        s
    }
}

/// The summary JSON of a multi-object run.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub objects: Vec<Row>,
    pub points: u64,
    pub written_measures: u64,
    pub dead_lettered_measures: u64,
    pub seconds: f64,
    pub exit_code: i32,
}

/// The final table: object, points, written, dead-lettered, outcome
/// (measures, i.e. k6 points), and a total line.
pub fn table(rows: &[Row]) -> String {
    let total_label = format!("total ({} objects)", rows.len());
    let name_w = rows
        .iter()
        .map(|r| r.input.chars().count())
        .chain([total_label.chars().count()])
        .max()
        .unwrap_or(0)
        .min(60);
    let mut s = format!(
        "{:<name_w$}  {:>12}  {:>12}  {:>13}  outcome\n",
        "object", "points", "written", "dead-lettered"
    );
    let (mut p, mut w, mut d) = (0, 0, 0);
    let mut by: Vec<(ObjectOutcome, u64)> = Vec::new();
    for r in rows {
        s += &format!(
            "{:<name_w$}  {:>12}  {:>12}  {:>13}  {}\n",
            progress::short_name(&r.input, name_w),
            thousands(r.points),
            thousands(r.written_measures),
            thousands(r.dead_lettered_measures),
            r.outcome_text()
        );
        p += r.points;
        w += r.written_measures;
        d += r.dead_lettered_measures;
        match by.iter_mut().find(|(o, _)| *o == r.outcome) {
            Some((_, n)) => *n += 1,
            None => by.push((r.outcome, 1)),
        }
    }
    let outcomes: Vec<String> = by
        .iter()
        .map(|(o, n)| format!("{} {n}", o.as_str()))
        .collect();
    s += &format!(
        "{:<name_w$}  {:>12}  {:>12}  {:>13}  {}\n",
        total_label,
        thousands(p),
        thousands(w),
        thousands(d),
        outcomes.join(", ")
    );
    s
}

/// Resolves the inputs into objects, in order, without duplicates.
async fn targets<L: ListPages>(
    inputs: &[&str],
    as_prefix: bool,
    lister: Option<&L>,
) -> Result<Vec<Target>, String> {
    let mut out: Vec<Target> = Vec::new();
    for &input in inputs {
        if input == "-" {
            return Err(
                "`-` (stdin) is a single input: not with other inputs, --prefix or --state".into(),
            );
        }
        if let Some(rest) = input.strip_prefix("s3://") {
            let lister = lister.ok_or("no S3 client")?;
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{input}: no bucket"));
            }
            let prefix = as_prefix || key.is_empty() || key.ends_with('/');
            let listed = if prefix {
                let l = list_prefix(lister, bucket, key, DEFAULT_SUFFIXES)
                    .await
                    .map_err(|e| e.to_string())?;
                if l.is_empty() {
                    return Err(format!(
                        "{input}: no k6 results there (keys ending with {})",
                        DEFAULT_SUFFIXES.join(", ")
                    ));
                }
                l
            } else {
                // One named object: its listing entry gives size and ETag
                // (suffixes do not apply to a key named outright).
                let l = list_prefix(lister, bucket, key, &[""])
                    .await
                    .map_err(|e| e.to_string())?;
                let one: Vec<_> = l.into_iter().filter(|o| o.key == key).collect();
                if one.is_empty() {
                    return Err(format!("{input}: object not found"));
                }
                one
            };
            out.extend(listed.into_iter().map(|o| Target::S3 {
                bucket: bucket.to_owned(),
                key: o.key,
                size: o.size,
                etag: o.etag,
            }));
            continue;
        }
        for path in glob::expand(input).map_err(|e| e.to_string())? {
            let m = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if !m.is_file() {
                return Err(format!("{}: not a file", path.display()));
            }
            let mtime_ns = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            out.push(Target::Local {
                path,
                canonical,
                size: m.len(),
                mtime_ns,
            });
        }
    }
    let mut seen = HashSet::new();
    out.retain(|t| seen.insert(t.identity()));
    Ok(out)
}

/// What every object shares.
pub struct Shared<E, W, S> {
    pub make_encoder: Box<dyn Fn() -> E + Send + Sync>,
    pub service: Arc<W>,
    pub dead_letters: Arc<FileSink>,
    /// Per object; `shared_limit` set for all of them.
    pub writer: WriterConfig,
    pub conv: ConversionArgs,
    pub flush_interval: Option<Duration>,
    pub s3: Option<S>,
    pub state: Option<State>,
    pub board: Arc<Board>,
}

fn failed_row(name: String, msg: String) -> Row {
    Row {
        input: name,
        outcome: ObjectOutcome::Failed,
        earlier: false,
        points: 0,
        written_measures: 0,
        dead_lettered_measures: 0,
        error: Some(msg),
        report: None,
    }
}

/// Ingests one object; returns its row and whether the sink refused the
/// run (then no further object is started).
async fn one<E, W, S>(sh: Arc<Shared<E, W, S>>, t: Target) -> (Row, bool)
where
    E: Encoder + Send + 'static,
    E::Request: Request,
    W: Service<E::Request>,
    S: ObjectSource,
{
    let name = t.name();
    let live = Live::default();
    let id = sh.board.begin(&name, live.clone(), Some(t.size()));
    let started = Instant::now();
    let source: Result<Box<dyn Read + Send>, String> = match &t {
        Target::S3 {
            bucket, key, etag, ..
        } => match &sh.s3 {
            Some(s3) => s3
                .open(&ObjectRef {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    version_id: None,
                    // The object listed, not one written since.
                    etag: etag.clone(),
                })
                .await
                .map(|o| {
                    Box::new(tokio_util::io::SyncIoBridge::new(o.body)) as Box<dyn Read + Send>
                })
                .map_err(|e| e.to_string()),
            None => Err("no S3 client".into()),
        },
        Target::Local { path, .. } => std::fs::File::open(path)
            .map(|f| Box::new(f) as Box<dyn Read + Send>)
            .map_err(|e| format!("{}: {e}", path.display())),
    };
    let (mut row, fatal) = match source {
        Err(msg) => (failed_row(name.clone(), msg), false),
        Ok(source) => {
            let mut popts = sh.conv.pipeline_options(&name);
            popts.input.flush_interval = sh.flush_interval;
            let sink = Sink {
                encoder: (sh.make_encoder)(),
                service: sh.service.clone(),
                dead_letters: sh.dead_letters.clone(),
                config: sh.writer.clone(),
            };
            let res = ingest(source, name.clone(), popts, sink, live, Arc::new(|| false)).await;
            let fatal = matches!(res.failure, Some(Failure::Sink(_)));
            let mut report = res.report;
            report.seconds = started.elapsed().as_secs_f64();
            (Row::from_report(name.clone(), report), fatal)
        }
    };
    if let Some(st) = &sh.state {
        let line = StateLine {
            id: t.identity(),
            outcome: row.outcome,
            points: row.points,
            written_measures: row.written_measures,
            dead_lettered_measures: row.dead_lettered_measures,
            error: row.error.clone(),
        };
        if let Err(e) = st.record(&line) {
            // The object is done, but a re-run would not know: say so.
            let msg = format!("state file {}: {e}", st.path.display());
            row.error = Some(row.error.map_or(msg.clone(), |x| format!("{x}; {msg}")));
            row.outcome = ObjectOutcome::Failed;
        }
    }
    let line = format!(
        "{}: {} points, {} written, {} dead-lettered: {} ({:.1}s)",
        name,
        thousands(row.points),
        thousands(row.written_measures),
        thousands(row.dead_lettered_measures),
        row.outcome_text(),
        started.elapsed().as_secs_f64()
    );
    let empty = RunReport::default();
    sh.board.end(
        id,
        row.report.as_ref().unwrap_or(&empty),
        !row.outcome.finished(),
        &line,
    );
    (row, fatal)
}

/// Runs `todo` with at most `in_flight` at once, in order of the list;
/// stops starting objects after a fatal sink error.
async fn run_all<E, W, S>(sh: Arc<Shared<E, W, S>>, todo: Vec<Target>, in_flight: usize) -> Vec<Row>
where
    E: Encoder + Send + 'static,
    E::Request: Request,
    W: Service<E::Request>,
    S: ObjectSource,
{
    let mut rows: Vec<Option<Row>> = vec![None; todo.len()];
    let names: Vec<String> = todo.iter().map(Target::name).collect();
    let mut next = todo.into_iter().enumerate();
    let mut set = tokio::task::JoinSet::new();
    let mut stop = false;
    loop {
        while !stop && set.len() < in_flight {
            let Some((i, t)) = next.next() else { break };
            let sh = sh.clone();
            set.spawn(async move { (i, one(sh, t).await) });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        match done {
            Ok((i, (row, fatal))) => {
                stop |= fatal;
                rows[i] = Some(row);
            }
            Err(e) => {
                // A panicked object task: nothing to attribute it to but
                // the run.
                stop = true;
                tracing::error!(error = %e, "object task failed");
            }
        }
    }
    rows.into_iter()
        .zip(names)
        .map(|(r, name)| {
            r.unwrap_or(Row {
                input: name,
                outcome: ObjectOutcome::NotStarted,
                earlier: false,
                points: 0,
                written_measures: 0,
                dead_lettered_measures: 0,
                error: None,
                report: None,
            })
        })
        .collect()
}

/// What `ingest` does with several objects.
pub struct Plan<'a> {
    pub inputs: Vec<&'a str>,
    pub args: &'a BackfillArgs,
    pub conv: &'a ConversionArgs,
    pub dead_letter: Option<PathBuf>,
    pub progress: Mode,
    pub flush_interval: Option<Duration>,
    pub writer: WriterConfig,
}

/// Runs a multi-object ingest into the sink of `service`, a fresh encoder
/// from `make_encoder` per object; returns the exit code.
pub async fn run<E, W>(
    plan: Plan<'_>,
    sdk: &aws_config::SdkConfig,
    make_encoder: Box<dyn Fn() -> E + Send + Sync>,
    service: Arc<W>,
) -> i32
where
    E: Encoder + Send + 'static,
    E::Request: Request,
    W: Service<E::Request>,
{
    let started = Instant::now();
    let needs_s3 = plan.inputs.iter().any(|i| i.starts_with("s3://"));
    let client = needs_s3.then(|| crate::sources::s3::build_client(sdk));
    let lister = client.as_ref().map(|c| S3Lister {
        client: c.clone(),
        max_keys: plan.args.list_page_size,
    });
    let all = match targets(&plan.inputs, plan.args.prefix, lister.as_ref()).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FATAL;
        }
    };
    let state = match &plan.args.state {
        None => None,
        Some(p) => match State::open(p) {
            Ok(s) => {
                if s.unreadable > 0 {
                    eprintln!(
                        "warning: {}: {} unreadable line(s) ignored (a run killed mid-write)",
                        p.display(),
                        s.unreadable
                    );
                }
                Some(s)
            }
            Err(e) => {
                eprintln!("error: state file {}: {e}", p.display());
                return exit::FATAL;
            }
        },
    };
    // Objects an earlier run finished keep their place in the table.
    let mut earlier: Vec<(usize, Row)> = Vec::new();
    let mut todo = Vec::new();
    let mut order = Vec::new();
    for (i, t) in all.iter().enumerate() {
        match state.as_ref().and_then(|s| s.finished(&t.identity())) {
            Some(l) => earlier.push((
                i,
                Row {
                    input: t.name(),
                    outcome: l.outcome,
                    earlier: true,
                    points: l.points,
                    written_measures: l.written_measures,
                    dead_lettered_measures: l.dead_lettered_measures,
                    error: None,
                    report: None,
                },
            )),
            None => {
                order.push(i);
                todo.push(t.clone());
            }
        }
    }
    let bytes: u64 = todo.iter().map(Target::size).sum();
    if plan.progress != Mode::Quiet {
        eprintln!(
            "{} objects ({}), {} finished earlier; {} at a time",
            all.len(),
            progress::human_bytes(bytes),
            earlier.len(),
            plan.args.objects_in_flight
        );
    }
    let board = Board::new(plan.progress, todo.len() as u64, bytes);
    let display = progress::board(board.clone());
    let dl_path = plan
        .dead_letter
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DEAD_LETTER_FILE));
    let dead_letters = Arc::new(FileSink::new(dl_path));
    let conv = plan.conv.clone();
    let sh = Arc::new(Shared {
        make_encoder,
        service,
        dead_letters: dead_letters.clone(),
        writer: plan.writer.clone(),
        conv,
        flush_interval: plan.flush_interval,
        s3: client.map(|client| S3Source { client }),
        state,
        board,
    });
    let done = run_all(sh, todo, plan.args.objects_in_flight).await;
    display.finish().await;
    let _ = dead_letters.finish().await;
    let mut rows: Vec<Option<Row>> = vec![None; all.len()];
    for (i, r) in earlier {
        rows[i] = Some(r);
    }
    for (i, r) in order.into_iter().zip(done) {
        rows[i] = Some(r);
    }
    let rows: Vec<Row> = rows.into_iter().flatten().collect();
    eprint!("{}", table(&rows));
    let code = rows
        .iter()
        .map(|r| r.outcome.exit_code())
        .max()
        .unwrap_or(exit::OK);
    if let Some(p) = &plan.conv.summary_json {
        let summary = Summary {
            points: rows.iter().map(|r| r.points).sum(),
            written_measures: rows.iter().map(|r| r.written_measures).sum(),
            dead_lettered_measures: rows.iter().map(|r| r.dead_lettered_measures).sum(),
            seconds: started.elapsed().as_secs_f64(),
            exit_code: code,
            objects: rows,
        };
        if let Err(e) = write_json(p, &summary) {
            eprintln!("error: writing {}: {e}", p.display());
            return exit::FATAL;
        }
    }
    code
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> std::io::Result<()> {
    let mut s = serde_json::to_string_pretty(v).map_err(std::io::Error::other)?;
    s.push('\n');
    std::fs::write(path, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::timestream::WriteRequest;
    use crate::sinks::WriteError;
    use clap::Parser;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn args() -> BackfillArgs {
        BackfillArgs {
            prefix: false,
            objects_in_flight: 1,
            state: None,
            list_page_size: 1000,
        }
    }

    #[test]
    fn which_command_lines_take_the_multi_object_path() {
        let a = args();
        assert!(!wanted(&["run.json"], &a));
        assert!(!wanted(&["-"], &a));
        assert!(!wanted(&["s3://b/runs/r1.json.gz"], &a));
        assert!(wanted(&["s3://b/runs/"], &a));
        assert!(wanted(&["s3://b"], &a), "a whole bucket");
        assert!(wanted(&["a.json", "b.json"], &a));
        assert!(wanted(&["runs/*.json.gz"], &a));
        let prefix = BackfillArgs {
            prefix: true,
            ..args()
        };
        assert!(wanted(&["s3://b/runs/2024-"], &prefix));
        let state = BackfillArgs {
            state: Some("s.jsonl".into()),
            ..args()
        };
        assert!(wanted(&["run.json"], &state));
    }

    #[test]
    fn state_file_resumes_and_survives_a_cut_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.jsonl");
        let s3 = |etag: &str| Identity::S3 {
            key: "s3://b/k.json".into(),
            etag: Some(etag.into()),
        };
        let local = Identity::Local {
            path: "/x/a.json".into(),
            size: 10,
            mtime_ns: 5,
        };
        let line = |id: Identity, outcome| StateLine {
            id,
            outcome,
            points: 3,
            written_measures: 2,
            dead_lettered_measures: 1,
            error: None,
        };
        {
            let st = State::open(&p).unwrap();
            assert!(st.finished(&s3("e1")).is_none());
            st.record(&line(s3("e1"), ObjectOutcome::DeadLettered))
                .unwrap();
            st.record(&line(local.clone(), ObjectOutcome::Failed))
                .unwrap();
        }
        // A kill in the middle of the next line.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"key":"s3://b/other.json","et"#).unwrap();
        drop(f);
        let st = State::open(&p).unwrap();
        assert_eq!(st.unreadable, 1);
        assert_eq!(
            st.finished(&s3("e1")),
            Some(&line(s3("e1"), ObjectOutcome::DeadLettered))
        );
        assert!(
            st.finished(&s3("e2")).is_none(),
            "a new ETag is a new object"
        );
        assert!(st.finished(&local).is_none(), "failed objects are redone");
        st.record(&line(local.clone(), ObjectOutcome::Ok)).unwrap();
        drop(st);
        let st = State::open(&p).unwrap();
        assert_eq!(st.unreadable, 1, "the cut line was ended, not glued to");
        assert!(st.finished(&local).is_some());
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(r#""path":"/x/a.json","size":10,"mtime_ns":5,"outcome":"ok""#));
    }

    #[test]
    fn outcome_and_table() {
        let mut r = RunReport {
            complete: true,
            points: 10,
            written_measures: 10,
            ..Default::default()
        };
        assert_eq!(ObjectOutcome::of(&r), ObjectOutcome::Ok);
        r.dropped.insert("non_finite_value".into(), 1);
        assert_eq!(ObjectOutcome::of(&r), ObjectOutcome::Dropped);
        r.dead_lettered = 2;
        assert_eq!(ObjectOutcome::of(&r), ObjectOutcome::DeadLettered);
        r.error = Some("boom".into());
        assert_eq!(ObjectOutcome::of(&r), ObjectOutcome::Failed);
        let rows = vec![
            Row::from_report(
                "s3://b/a.json".into(),
                RunReport {
                    complete: true,
                    points: 1234,
                    written_measures: 1234,
                    ..Default::default()
                },
            ),
            failed_row("b.json".into(), "b.json: gzip stream is truncated".into()),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("object ") && lines[0].ends_with("outcome"));
        assert!(lines[1].starts_with("s3://b/a.json") && lines[1].ends_with("  ok"));
        assert!(lines[1].contains("1,234"));
        assert!(lines[2].ends_with("failed: b.json: gzip stream is truncated"));
        assert!(lines[3].starts_with("total (2 objects)") && lines[3].ends_with("ok 1, failed 1"));
        let w = lines[0].find("points").unwrap() + "points".len();
        assert!(lines
            .iter()
            .all(|l| l.chars().nth(w - 1).is_some_and(|c| c != ' ')));
    }

    /// Answers every call with `fail`, or stores nothing and succeeds.
    #[derive(Default)]
    struct Svc {
        fail: Option<WriteError>,
        calls: AtomicU64,
    }
    impl Service<WriteRequest> for Svc {
        async fn write(&self, _: &WriteRequest) -> Result<(), WriteError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.fail.clone().map_or(Ok(()), Err)
        }
    }

    fn fixture_copies(dir: &Path, n: usize) -> Vec<String> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plain.json");
        (0..n)
            .map(|i| {
                let p = dir.join(format!("run-{i}.json"));
                std::fs::copy(&src, &p).unwrap();
                p.to_str().unwrap().to_owned()
            })
            .collect()
    }

    async fn run_local(svc: Arc<Svc>, dir: &Path, inputs: &[String], in_flight: usize) -> Vec<Row> {
        let conv = crate::cli::Cli::try_parse_from(["k6-timestream", "convert", "x"])
            .map(|c| match c.command {
                crate::cli::Command::Convert(c) => c.conv,
                crate::cli::Command::Ingest(_) => unreachable!(),
            })
            .unwrap();
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let todo = targets::<S3Lister>(&refs, false, None).await.unwrap();
        let encoder_conv = conv.clone();
        let sh = Arc::new(Shared {
            make_encoder: Box::new(move || encoder_conv.timestream_encoder()),
            service: svc,
            dead_letters: Arc::new(FileSink::new(dir.join("dl.jsonl"))),
            writer: WriterConfig {
                shared_limit: Some(Arc::new(tokio::sync::Semaphore::new(2))),
                ..Default::default()
            },
            conv,
            flush_interval: None,
            s3: None::<S3Source>,
            state: None,
            board: Board::new(Mode::Quiet, todo.len() as u64, 0),
        });
        run_all(sh, todo, in_flight).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn objects_run_in_order_and_a_sink_refusal_stops_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let inputs = fixture_copies(d.path(), 5);
        let ok = Arc::new(Svc::default());
        let rows = run_local(ok.clone(), d.path(), &inputs, 3).await;
        assert_eq!(rows.len(), 5);
        for (r, i) in rows.iter().zip(&inputs) {
            assert_eq!(&r.input, i, "rows keep the order of the inputs");
            assert_eq!(r.outcome, ObjectOutcome::Ok);
            assert_eq!((r.points, r.written_measures), (436, 436));
        }
        let missing = Arc::new(Svc {
            fail: Some(WriteError::NotFound("table k6.nope".into())),
            ..Default::default()
        });
        let rows = run_local(missing.clone(), d.path(), &inputs, 1).await;
        assert_eq!(rows[0].outcome, ObjectOutcome::Failed);
        assert!(rows[0].error.as_deref().unwrap().contains("k6.nope"));
        assert!(rows[1..]
            .iter()
            .all(|r| r.outcome == ObjectOutcome::NotStarted));
        assert!(missing.calls.load(Ordering::Relaxed) <= 20);
    }

    #[tokio::test]
    async fn globs_and_duplicates() {
        let d = tempfile::tempdir().unwrap();
        let inputs = fixture_copies(d.path(), 3);
        let pattern = format!("{}/run-*.json", d.path().display());
        let refs = [pattern.as_str(), inputs[1].as_str()];
        let t = targets::<S3Lister>(&refs, false, None).await.unwrap();
        let names: Vec<String> = t.iter().map(Target::name).collect();
        assert_eq!(names, inputs, "the second naming of run-1 is dropped");
        assert!(targets::<S3Lister>(&["-", "a.json"], false, None)
            .await
            .is_err());
        let none = format!("{}/*.csv", d.path().display());
        let e = targets::<S3Lister>(&[none.as_str()], false, None)
            .await
            .unwrap_err();
        assert!(e.contains("no files match"), "{e}");
    }
}
