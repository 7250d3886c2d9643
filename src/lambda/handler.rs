//! The handler: generic over its I/O (object source, Timestream writer,
//! object put for dead letters, async self-invoke), so it runs the same
//! under the Lambda runtime and in unit tests without a network.

use super::config::LambdaConfig;
use super::event::{parse_event, Continuation, ContinuationEvent, Job};
use crate::convert::ConvertOptions;
use crate::ingest::{ingest, Live};
use crate::input::InputOptions;
use crate::pipeline::PipelineOptions;
use crate::report::RunReport;
use crate::s3::{ObjectPut, ObjectRef, ObjectSource, S3DeadLetterSink, SourceError};
use crate::writer::retry::RetryPolicy;
use crate::writer::service::RecordsWriter;
use crate::writer::WriterConfig;
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tracing::Instrument;

/// Starts another invocation of the function without waiting for it.
pub trait Invoker: Send + Sync + 'static {
    fn invoke_async(
        &self,
        function: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// `lambda:InvokeFunction` with `InvocationType=Event`.
pub struct LambdaInvoker {
    pub client: aws_sdk_lambda::Client,
}

impl Invoker for LambdaInvoker {
    async fn invoke_async(&self, function: &str, payload: Vec<u8>) -> Result<(), String> {
        let out = self
            .client
            .invoke()
            .function_name(function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "invoking {function}: {}",
                    crate::writer::aws::DisplayErrorChain(&e)
                )
            })?;
        match out.status_code() {
            200..=299 => Ok(()),
            s => Err(format!("invoking {function}: status {s}")),
        }
    }
}

/// The function's answer: one report per object of the event.
#[derive(Debug, Serialize)]
pub struct Response {
    pub reports: Vec<RunReport>,
}

/// An error worth a Lambda retry (the async invoke retries twice; the
/// re-run is idempotent because identical records are duplicates).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RetryableError(pub String);

pub struct Handler<S, W, P, I> {
    pub cfg: LambdaConfig,
    pub source: S,
    pub writer: Arc<W>,
    pub put: P,
    pub invoker: I,
}

/// Deadline margin actually used: the configured one, but never more than
/// a quarter of the time the invocation has (a 60 s margin on a 30 s
/// function would leave no time to work).
pub fn effective_margin(configured: Duration, remaining: Duration) -> Duration {
    configured.min(remaining / 4)
}

impl<S, W, P, I> Handler<S, W, P, I>
where
    S: ObjectSource,
    W: RecordsWriter,
    P: ObjectPut + Clone,
    I: Invoker,
{
    pub async fn handle(
        &self,
        payload: serde_json::Value,
        deadline: SystemTime,
    ) -> Result<Response, RetryableError> {
        let started = Instant::now();
        let remaining = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let deadline = started + remaining;
        let jobs = match parse_event(payload) {
            Ok(j) => j,
            Err(e) => {
                // Not retryable: the same payload would fail the same way.
                tracing::error!(error = %e, "unusable event");
                let report = RunReport {
                    outcome: Some("failed".into()),
                    error: Some(e),
                    ..Default::default()
                };
                return Ok(Response {
                    reports: vec![report],
                });
            }
        };
        let mut reports = Vec::with_capacity(jobs.len());
        let mut retry: Option<String> = None;
        for job in jobs {
            let span = tracing::info_span!("object", bucket = %job.object.bucket, key = %job.object.key, version = job.object.version_id.as_deref().unwrap_or(""), attempt = job.attempt);
            match self.process(job, started, deadline).instrument(span).await {
                Ok(r) => reports.push(r),
                Err(e) => {
                    tracing::error!(error = %e.0, "retryable failure");
                    retry.get_or_insert(e.0);
                }
            }
        }
        match retry {
            // Objects that did finish are duplicates on the retry: harmless.
            Some(e) => Err(RetryableError(e)),
            None => Ok(Response { reports }),
        }
    }

    async fn process(
        &self,
        job: Job,
        started: Instant,
        deadline: Instant,
    ) -> Result<RunReport, RetryableError> {
        let cfg = &self.cfg;
        let obj = job.object.clone();
        let mut report = RunReport {
            input: obj.url(),
            version_id: obj.version_id.clone(),
            model: cfg.model.as_str().to_owned(),
            ..Default::default()
        };
        if !cfg.wants_key(&obj.key) {
            tracing::info!(suffixes = ?cfg.suffixes, "key does not look like k6 results: skipped");
            report.outcome = Some("skipped".into());
            report.complete = true;
            return Ok(report);
        }
        let opened = match self.source.open(&obj).await {
            Ok(o) => o,
            Err(e) if e.retryable() => return Err(RetryableError(e.to_string())),
            Err(e) => {
                report.outcome = Some(
                    match e {
                        SourceError::NotFound(_) => "not_found",
                        SourceError::Changed(_) => "replaced",
                        _ => "failed",
                    }
                    .into(),
                );
                tracing::warn!(error = %e, "object not processed");
                report.error = Some(e.to_string());
                report.add_carried(&job.carried);
                self.emit_metrics(&report);
                return Ok(report);
            }
        };
        // Pin the exact bytes for any continuation of this chain.
        let pinned = ObjectRef {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            version_id: opened.version_id.clone().or(obj.version_id.clone()),
            etag: opened.etag.clone().or(obj.etag.clone()),
        };
        report.version_id.clone_from(&pinned.version_id);
        let popts = PipelineOptions {
            convert: ConvertOptions {
                model: cfg.model,
                testid: cfg.testid.resolve(&obj.key),
                extra_dimensions: cfg.dimensions.clone(),
                multi_measure_name: cfg.measure_name.clone(),
            },
            input: InputOptions {
                max_line_bytes: cfg.max_line_bytes,
                max_decompressed_bytes: cfg.max_decompressed_bytes,
            },
            collision_window_secs: cfg.collision_window_secs,
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let margin = effective_margin(cfg.safety_margin, remaining);
        let mut stop_at = deadline.checked_sub(margin).unwrap_or(started);
        let hard_stop = stop_at;
        if !cfg.work_budget.is_zero() {
            stop_at = stop_at.min(started + cfg.work_budget);
        }
        let wcfg = WriterConfig {
            concurrency: cfg.concurrency,
            request_timeout: cfg.request_timeout.min(margin.max(Duration::from_secs(1))),
            retry: RetryPolicy::default(),
            retry_budget: 10_000,
            skip_batches: job.skip_batches,
            hard_deadline: Some(deadline.checked_sub(margin / 2).unwrap_or(deadline)),
        };
        let live = Live::default();
        let stats = live.stats.clone();
        // Progress guarantee: the work budget only stops a run that has
        // finished at least one new request, so a chain always advances
        // even when re-reading the skipped prefix eats the whole budget.
        let stop = Arc::new(move || {
            let now = Instant::now();
            now >= hard_stop
                || (now >= stop_at && stats.batches_written.load(Ordering::Relaxed) > 0)
        });
        let dl_bucket = cfg
            .dead_letter_bucket
            .clone()
            .unwrap_or_else(|| obj.bucket.clone());
        let dlq = Arc::new(S3DeadLetterSink::new(
            self.put.clone(),
            dl_bucket,
            &cfg.dead_letter_prefix,
            &obj,
            job.skip_batches,
        ));
        let body = tokio_util::io::SyncIoBridge::new(opened.body);
        let res = ingest(
            body,
            obj.url(),
            popts,
            self.writer.clone(),
            dlq,
            wcfg,
            live,
            stop,
        )
        .await;
        let mut report = RunReport {
            version_id: pinned.version_id.clone(),
            ..res.report
        };
        report.add_carried(&job.carried);
        report.continuations = u64::from(job.attempt);
        report.seconds = job.carried.seconds + started.elapsed().as_secs_f64();
        let time_stop = res.stopped && res.drive.fatal.is_none() && report.error.is_none();
        if time_stop {
            let next = res.drive.next_seq.max(job.skip_batches);
            if job.attempt >= cfg.max_continuations {
                report.outcome = Some("chain_limit".into());
                report.error = Some(format!(
                    "continuation chain limit ({}) reached: requests from {next} on were not written; re-process with a direct invocation or raise K6TS_MAX_CONTINUATIONS",
                    cfg.max_continuations
                ));
                tracing::error!(next_batch = next, "continuation chain limit reached");
            } else {
                let mut carried = RunReport::default();
                carried.add_carried(&report);
                let ev = ContinuationEvent {
                    continuation: Continuation {
                        bucket: pinned.bucket.clone(),
                        key: pinned.key.clone(),
                        version_id: pinned.version_id.clone(),
                        etag: pinned.etag.clone(),
                        skip_batches: next,
                        attempt: job.attempt + 1,
                        carried,
                    },
                };
                let function = cfg.self_function.clone().ok_or_else(|| RetryableError("no function name to continue with (AWS_LAMBDA_FUNCTION_NAME / K6TS_SELF_FUNCTION)".into()))?;
                let payload = serde_json::to_vec(&ev).expect("serializable");
                self.invoker
                    .invoke_async(&function, payload)
                    .await
                    .map_err(RetryableError)?;
                tracing::info!(
                    next_batch = next,
                    attempt = job.attempt + 1,
                    "continued in a new invocation"
                );
                report.outcome = Some("continued".into());
                report.continued = true;
            }
        } else if let Some(e) = &report.error {
            // A read error of the S3 body is a network problem: retry. Bad
            // content (corrupt gzip, too large) or a writer abort is not.
            let input_io = e.contains(": read error:");
            if input_io {
                return Err(RetryableError(e.clone()));
            }
            report.outcome = Some("failed".into());
        } else {
            report.outcome = Some("complete".into());
        }
        tracing::info!(
            outcome = report.outcome.as_deref().unwrap_or(""),
            points = report.points,
            written_measures = report.written_measures,
            dead_lettered = report.dead_lettered,
            "object done"
        );
        self.emit_metrics(&report);
        Ok(report)
    }

    fn emit_metrics(&self, r: &RunReport) {
        println!(
            "{}",
            super::emf::line(
                &self.cfg.metrics_namespace,
                self.cfg.self_function.as_deref().unwrap_or("k6-timestream"),
                r
            )
        );
    }
}
