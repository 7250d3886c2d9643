//! convert → write, wired together: the core (reading, converting,
//! encoding) on a blocking thread, the sink's driver on the async runtime,
//! a bounded channel between them.

use crate::core::input::{InputError, Progress};
use crate::core::pipeline::{Encoder, PipelineOptions};
use crate::core::report::RunReport;
use crate::core::resume::{self, Checkpoint, Start};
use crate::sinks::dead_letter::DeadLetterSink;
use crate::sinks::driver::{self, DriveOutcome, WriteStats, WriterConfig};
use crate::sinks::{Request, Service};
use std::io::Read;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Why a run ended early, typed so callers decide without reading text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Reading the input failed in a way a retry can cure (a network read
    /// error of the object's body).
    InputRead(String),
    /// The input itself is unusable (corrupt or truncated gzip, over the
    /// size cap): a retry reads the same bytes.
    InputInvalid(String),
    /// The input is not k6 output at all (neither k6 JSON nor k6 CSV):
    /// nothing was converted, and a retry cannot change that.
    NotK6(String),
    /// The sink refused the run (missing table, access denied, …).
    Sink(String),
    /// Dead letters could not be stored: the report cannot account for
    /// every point.
    DeadLetter(String),
    /// The converter thread died.
    Internal(String),
}

impl Failure {
    /// Can a retry of the whole run help?
    pub fn retryable(&self) -> bool {
        matches!(self, Failure::InputRead(_))
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::InputRead(m)
            | Failure::InputInvalid(m)
            | Failure::NotK6(m)
            | Failure::Sink(m)
            | Failure::DeadLetter(m)
            | Failure::Internal(m) => m,
        }
    }

    fn from_input(e: &InputError) -> Self {
        match e {
            InputError::NotK6 { .. } => Failure::NotK6(e.to_string()),
            e if e.retryable() => Failure::InputRead(e.to_string()),
            e => Failure::InputInvalid(e.to_string()),
        }
    }
}

pub struct IngestResult<E: Encoder> {
    pub report: RunReport,
    /// (Its `unsent` requests are moved into `checkpoint`.)
    pub drive: DriveOutcome<E::Request>,
    /// Not every request was sent: the writer stopped taking them (time
    /// budget), or a failure ended the run.
    pub stopped: bool,
    /// The first failure that ended the run, if any (its message is also
    /// the report's `error`).
    pub failure: Option<Failure>,
    /// Where the run ended, unless the input failed or was live (see
    /// [`crate::core::resume`]): the state to go on from, with every
    /// request built but not sent (its `unsent`, in order). Nothing is left
    /// when its input is finished and nothing is unsent.
    pub checkpoint: Option<Checkpoint<E>>,
}

/// Shared live state of one ingest (progress display, logs).
#[derive(Default, Clone)]
pub struct Live {
    pub progress: Arc<Progress>,
    pub stats: Arc<WriteStats>,
}

/// Everything one ingest needs besides the input: the sink's encoder,
/// service and dead-letter sink, and the writer's settings.
pub struct Sink<E, W, D> {
    pub encoder: E,
    pub service: Arc<W>,
    pub dead_letters: Arc<D>,
    pub config: WriterConfig,
}

pub async fn ingest<R, E, W, D>(
    source: R,
    name: String,
    popts: PipelineOptions,
    sink: Sink<E, W, D>,
    live: Live,
    stop: Arc<dyn Fn() -> bool + Send + Sync>,
) -> IngestResult<E>
where
    R: Read + Send + 'static,
    E: Encoder + Send + 'static,
    E::Request: Request,
    W: Service<E::Request>,
    D: DeadLetterSink,
{
    ingest_from(source, name, popts, sink, live, stop, None).await
}

/// [`ingest`], or the rest of a stopped run when `from` is its checkpoint:
/// its unsent requests go out first, then the pipeline goes on from its
/// state (its encoder replaces `sink.encoder`), reading `source`, which
/// must yield the input from the checkpoint's
/// [`source_offset`](crate::core::input::InputPosition::source_offset) on.
pub async fn ingest_from<R, E, W, D>(
    source: R,
    name: String,
    popts: PipelineOptions,
    sink: Sink<E, W, D>,
    live: Live,
    stop: Arc<dyn Fn() -> bool + Send + Sync>,
    from: Option<Checkpoint<E>>,
) -> IngestResult<E>
where
    R: Read + Send + 'static,
    E: Encoder + Send + 'static,
    E::Request: Request,
    W: Service<E::Request>,
    D: DeadLetterSink,
{
    let Sink {
        encoder,
        service,
        dead_letters: dlq,
        config: wcfg,
    } = sink;
    let (tx, rx) = mpsc::channel::<E::Request>(wcfg.concurrency.max(1));
    let progress = live.progress.clone();
    let n2 = name.clone();
    let start = match from {
        Some(c) => Start::Resume(Box::new(c)),
        None => Start::Fresh(encoder),
    };
    let conv = tokio::task::spawn_blocking(move || {
        // A send fails when the driver closed the channel (a stop) or is
        // gone (a fatal error): the request comes back into the checkpoint.
        resume::run(source, &n2, &popts, start, progress, &mut |req| {
            tx.blocking_send(req).map_err(|e| e.0)
        })
    });
    let mut drive = driver::drive(
        rx,
        service,
        dlq.clone(),
        wcfg,
        live.stats.clone(),
        name,
        &*stop,
    )
    .await;
    let (outcome, mut checkpoint) = match conv.await {
        Ok(o) => o,
        Err(e) => {
            let (report, failure) = converter_failed(&e, &live);
            return IngestResult {
                report,
                drive,
                stopped: true,
                failure: Some(failure),
                checkpoint: None,
            };
        }
    };
    if let Some(c) = &mut checkpoint {
        // The queued requests precede the ones the converter kept.
        let mut unsent = std::mem::take(&mut drive.unsent);
        unsent.append(&mut c.unsent);
        debug_assert!(unsent.windows(2).all(|w| w[0].seq() < w[1].seq()));
        c.unsent = unsent;
    }
    let stopped = outcome.stopped || drive.stopped;
    let (report, failure) = settle(
        outcome.report,
        outcome.error.as_ref(),
        stopped,
        &live,
        &drive,
        &*dlq,
    )
    .await;
    if failure.is_some() {
        checkpoint = None;
    }
    IngestResult {
        report,
        drive,
        stopped,
        failure,
        checkpoint,
    }
}

/// The report and failure of a run whose converter thread panicked: the
/// writer's counters so far, and the panic as an internal failure.
fn converter_failed(e: &tokio::task::JoinError, live: &Live) -> (RunReport, Failure) {
    let failure = Failure::Internal(format!("converter failed: {e}"));
    let mut report = RunReport {
        error: Some(failure.message().to_owned()),
        ..Default::default()
    };
    live.stats.merge_into(&mut report);
    (report, failure)
}

/// One segment (or a part of one) of a fanned-out input (see
/// [`crate::core::segment`]): `source` yields the input from the
/// segment's [`source_offset`](crate::core::segment::source_offset) on.
/// Once `wrap_up()` says so the segment ends early at the next hard break
/// ([`run_segment`](crate::core::segment::run_segment)): every request
/// of the records it owns is still sent and confirmed, and the result
/// says where the next part starts. A segment that fails is run again,
/// which writes the same records.
#[allow(clippy::too_many_arguments)]
pub async fn ingest_segment<R, E, W, D>(
    source: R,
    name: String,
    popts: PipelineOptions,
    metrics: Arc<Vec<crate::core::segment::MetricSeen>>,
    spec: crate::core::segment::SegmentSpec,
    from: Option<crate::core::input::InputPosition>,
    sink: Sink<E, W, D>,
    live: Live,
    wrap_up: Arc<dyn Fn() -> bool + Send + Sync>,
) -> SegmentRun
where
    R: Read + Send + 'static,
    E: Encoder + Send + 'static,
    E::Request: Request,
    W: Service<E::Request>,
    D: DeadLetterSink,
{
    let Sink {
        mut encoder,
        service,
        dead_letters: dlq,
        config: wcfg,
    } = sink;
    let (tx, rx) = mpsc::channel::<E::Request>(wcfg.concurrency.max(1));
    let progress = live.progress.clone();
    let n2 = name.clone();
    let planned_end = spec.end_line;
    let conv = tokio::task::spawn_blocking(move || {
        crate::core::segment::run_segment(
            source,
            &n2,
            &popts,
            &metrics,
            &spec,
            from,
            &mut encoder,
            progress,
            &*wrap_up,
            &mut |req, _| match tx.blocking_send(req) {
                Ok(()) => std::ops::ControlFlow::Continue(()),
                Err(_) => std::ops::ControlFlow::Break(()),
            },
        )
    });
    // The driver takes every request the segment hands out: wrapping up
    // is the converter's (at a hard break), and the writer's hard deadline
    // bounds the retries.
    let drive = driver::drive(
        rx,
        service,
        dlq.clone(),
        wcfg,
        live.stats.clone(),
        name,
        &|| false,
    )
    .await;
    let outcome = match conv.await {
        Ok(o) => o,
        Err(e) => {
            let (report, failure) = converter_failed(&e, &live);
            return SegmentRun {
                report: RunReport {
                    segments: 1,
                    ..report
                },
                failure: Some(failure),
                end_line: planned_end,
            };
        }
    };
    let (report, failure) = settle(
        outcome.report,
        outcome.error.as_ref(),
        outcome.stopped || drive.stopped,
        &live,
        &drive,
        &*dlq,
    )
    .await;
    SegmentRun {
        report,
        failure,
        end_line: outcome.end_line,
    }
}

/// What [`ingest_segment`] did.
#[derive(Debug)]
pub struct SegmentRun {
    /// Its own reading and writing.
    pub report: RunReport,
    /// What ended it early, if anything.
    pub failure: Option<Failure>,
    /// The nominal end it stood for: the spec's, or where the next part
    /// starts when it wrapped up early (see
    /// [`SegmentOutcome::end_line`](crate::core::segment::SegmentOutcome::end_line)).
    pub end_line: Option<u64>,
}

/// A run's report and failure once its converter and driver are done: the
/// driver's counts merged in, the dead-letter sink flushed, and the
/// failure that ended the run (the sink's fatal error, which explains a
/// stop better than anything; else the input's; else the dead-letter
/// sink's). A failed or stopped run is not `complete`.
async fn settle<Q, D: DeadLetterSink>(
    mut report: RunReport,
    input_error: Option<&InputError>,
    stopped: bool,
    live: &Live,
    drive: &DriveOutcome<Q>,
    dlq: &D,
) -> (RunReport, Option<Failure>) {
    live.stats.merge_into(&mut report);
    for (k, v) in &drive.rejected_reasons {
        *report.rejected_reasons.entry(k.clone()).or_default() += v;
    }
    let mut failure = input_error.map(Failure::from_input);
    match dlq.finish().await {
        Ok(loc) => report.dead_letter_location = loc.or(report.dead_letter_location.take()),
        Err(e) => {
            failure.get_or_insert(Failure::DeadLetter(format!("dead-letter sink failed: {e}")));
        }
    }
    if let Some(e) = &drive.dead_letter_error {
        failure.get_or_insert(Failure::DeadLetter(format!("dead-letter sink failed: {e}")));
    }
    if let Some(f) = &drive.fatal {
        failure = Some(Failure::Sink(f.clone()));
    }
    if let Some(f) = &failure {
        report.error = Some(f.message().to_owned());
        report.complete = false;
    }
    if stopped {
        report.complete = false;
    }
    (report, failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_become_typed_failures() {
        let not_k6 = InputError::NotK6 {
            input: "s3://b/notes.json".into(),
            lines: 5,
        };
        let f = Failure::from_input(&not_k6);
        assert!(matches!(f, Failure::NotK6(_)) && !f.retryable());
        assert!(f.message().starts_with("s3://b/notes.json: not k6 output"));
        let io = InputError::Io {
            input: "x".into(),
            source: std::io::Error::other("reset"),
            at: Default::default(),
        };
        assert!(Failure::from_input(&io).retryable());
    }
}
