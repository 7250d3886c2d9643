//! convert → write, wired together: the converter on a blocking thread,
//! the writer driver on the async runtime, a bounded channel between them.

use crate::input::Progress;
use crate::model::WriteRequest;
use crate::pipeline::{self, PipelineOptions};
use crate::report::RunReport;
use crate::writer::dead_letter::DeadLetterSink;
use crate::writer::service::RecordsWriter;
use crate::writer::{self, DriveOutcome, WriteStats, WriterConfig};
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::Arc;
use tokio::sync::mpsc;

pub struct IngestResult {
    pub report: RunReport,
    pub drive: DriveOutcome,
    /// Not every request was sent: the writer stopped taking them (time
    /// budget), or a fatal error ended the run.
    pub stopped: bool,
}

/// Shared live state of one ingest (progress display, logs).
#[derive(Default, Clone)]
pub struct Live {
    pub progress: Arc<Progress>,
    pub stats: Arc<WriteStats>,
}

#[allow(clippy::too_many_arguments)]
pub async fn ingest<R, W, D>(
    source: R,
    name: String,
    popts: PipelineOptions,
    writer: Arc<W>,
    dlq: Arc<D>,
    wcfg: WriterConfig,
    live: Live,
    stop: Arc<dyn Fn() -> bool + Send + Sync>,
) -> IngestResult
where
    R: Read + Send + 'static,
    W: RecordsWriter,
    D: DeadLetterSink,
{
    let (tx, rx) = mpsc::channel::<WriteRequest>(wcfg.concurrency.max(1));
    let progress = live.progress.clone();
    let n2 = name.clone();
    let conv = tokio::task::spawn_blocking(move || {
        pipeline::run(source, &n2, &popts, progress, &mut |req, _| {
            if tx.blocking_send(req).is_ok() {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })
    });
    let drive = writer::drive(
        rx,
        writer,
        dlq.clone(),
        wcfg,
        live.stats.clone(),
        name,
        &*stop,
    )
    .await;
    let outcome = match conv.await {
        Ok(o) => o,
        Err(e) => {
            let mut report = RunReport {
                error: Some(format!("converter failed: {e}")),
                ..Default::default()
            };
            live.stats.merge_into(&mut report);
            return IngestResult {
                report,
                drive,
                stopped: true,
            };
        }
    };
    let mut report = outcome.report;
    live.stats.merge_into(&mut report);
    for (k, v) in &drive.rejected_reasons {
        *report.rejected_reasons.entry(k.clone()).or_default() += v;
    }
    match dlq.finish().await {
        Ok(loc) => report.dead_letter_location = loc.or(report.dead_letter_location.take()),
        Err(e) => {
            report
                .error
                .get_or_insert(format!("dead-letter sink failed: {e}"));
        }
    }
    if let Some(e) = &drive.dead_letter_error {
        report
            .error
            .get_or_insert(format!("dead-letter sink failed: {e}"));
    }
    if let Some(f) = &drive.fatal {
        // The writer's fatal error explains the stop better than "stopped".
        report.error = Some(f.clone());
        report.complete = false;
    }
    let stopped = outcome.stopped || drive.stopped;
    if stopped {
        report.complete = false;
    }
    IngestResult {
        report,
        drive,
        stopped,
    }
}
