//! The handler: wiring only, generic over its I/O (object source, sink,
//! object put for dead letters, async self-invoke), so it runs the same
//! under the Lambda runtime and in unit tests without a network.

use super::batch::{self, TaskOutcome};
use super::config::LambdaConfig;
use super::continuation::{checkpoint_key, continuation_event};
use super::decide::{decide, Decision, Facts};
use super::event::{parse_event, BatchInvocation, Event, Job, SegmentRef, StoredObject};
use super::fanout::{self, AfterPart, StoredPlan, StoredReport};
use super::invoke::Invoker;
use super::plan::{plan, time_left, Plan};
use crate::core::convert::ConvertOptions;
use crate::core::input::InputOptions;
use crate::core::pipeline::PipelineOptions;
use crate::core::report::{Outcome, RunReport};
use crate::core::resume::Checkpoint;
use crate::core::segment;
use crate::ingest::{ingest_from, ingest_segment, Failure, IngestResult, Live, Sink};
use crate::sinks::dead_letter::s3::S3DeadLetterSink;
use crate::sinks::driver::{WriterConfig, DEFAULT_RETRY_BUDGET};
use crate::sinks::retry::RetryPolicy;
use crate::sources::s3::{ObjectPut, ObjectStore};
use crate::sources::{ObjectRef, ObjectSource, OpenedObject, SourceError};
use aws_lambda_events::event::s3::batch_job::S3BatchJobResponse;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::time::Instant;
use tracing::Instrument;

/// The function's answer: one report per object of the event.
#[derive(Debug, Serialize)]
pub struct Response {
    pub reports: Vec<RunReport>,
}

/// The function's answer, in the shape its invoker reads.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// S3 notifications, EventBridge events, direct and continuation
    /// events: `{"reports":[...]}`.
    Reports(Response),
    /// S3 Batch Operations: one result per task.
    Batch(S3BatchJobResponse),
}

/// What the fan-out of an object came to.
enum FanOut {
    /// Segments started (or the object failed to index): the report.
    Started(Box<RunReport>),
    /// One segment only: run serially (the report counts the index pass).
    Serial(Box<RunReport>),
}

/// Whether `opened` is gzip (its first two bytes), and the object with
/// those bytes put back in front.
async fn peek_gzip(opened: OpenedObject) -> std::io::Result<(bool, OpenedObject)> {
    use tokio::io::AsyncReadExt;
    let mut body = opened.body;
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < head.len() {
        let n = body.read(&mut head[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = head[..got].to_vec();
    let gzip = crate::core::input::is_gzip(&head);
    Ok((
        gzip,
        OpenedObject {
            body: Box::new(std::io::Cursor::new(head).chain(body)),
            ..opened
        },
    ))
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

impl<S, W, P, I> Handler<S, W, P, I>
where
    S: ObjectSource,
    W: super::sink::SinkKit,
    P: ObjectPut + ObjectStore + Clone,
    I: Invoker,
{
    /// The entry point: answers every event kind in its invoker's shape.
    /// A retryable failure fails the invocation (Lambda retries it), except
    /// in a Batch Operations job, where it is that task's
    /// `TemporaryFailure`.
    pub async fn answer(
        &self,
        payload: serde_json::Value,
        deadline: SystemTime,
    ) -> Result<Answer, RetryableError> {
        match parse_event(payload) {
            Ok(Event::Batch(b)) => Ok(Answer::Batch(self.batch(b, deadline).await)),
            other => self
                .reports(other.and_then(Event::into_objects), deadline)
                .await
                .map(Answer::Reports),
        }
    }

    /// One report per object of the event (a Batch Operations job is
    /// answered by [`Self::answer`]).
    pub async fn handle(
        &self,
        payload: serde_json::Value,
        deadline: SystemTime,
    ) -> Result<Response, RetryableError> {
        self.reports(parse_event(payload).and_then(Event::into_objects), deadline)
            .await
    }

    async fn reports(
        &self,
        jobs: Result<Vec<Job>, String>,
        deadline: SystemTime,
    ) -> Result<Response, RetryableError> {
        let started = Instant::now();
        let remaining = time_left(deadline, SystemTime::now());
        let deadline = started + remaining;
        let jobs = match jobs {
            Ok(j) => j,
            Err(e) => {
                // Not retryable: the same payload would fail the same way.
                tracing::error!(error = %e, "unusable event");
                let report = RunReport {
                    outcome: Some(Outcome::Failed),
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
        for (i, job) in jobs.into_iter().enumerate() {
            let span = tracing::info_span!("object", bucket = %job.object.bucket, key = %job.object.key, version = job.object.version_id.as_deref().unwrap_or(""), attempt = job.attempt);
            // Boxed (here and for batch tasks): an object's future is large,
            // and nested unboxed in the runtime's it overflows the compiler's
            // layout depth limit.
            match Box::pin(self.process(job, started, deadline, i == 0))
                .instrument(span)
                .await
            {
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

    /// Each task's object in turn; every task gets its result, so one
    /// task's retryable failure is its own `TemporaryFailure` and not the
    /// invocation's error.
    async fn batch(&self, inv: BatchInvocation, deadline: SystemTime) -> S3BatchJobResponse {
        let started = Instant::now();
        let deadline = started + time_left(deadline, SystemTime::now());
        let mut done = Vec::with_capacity(inv.tasks.len());
        for (i, task) in inv.tasks.into_iter().enumerate() {
            let outcome = match task.job {
                Err(e) => {
                    tracing::error!(task = %task.task_id, error = %e, "task names no readable object");
                    TaskOutcome::Unusable(e)
                }
                Ok(job) => {
                    let span = tracing::info_span!("object", task = %task.task_id, bucket = %job.object.bucket, key = %job.object.key, version = job.object.version_id.as_deref().unwrap_or(""), attempt = job.attempt);
                    match Box::pin(self.process(job, started, deadline, i == 0))
                        .instrument(span)
                        .await
                    {
                        Ok(r) => TaskOutcome::Report(Box::new(r)),
                        Err(e) => {
                            tracing::error!(task = %task.task_id, error = %e.0, "retryable failure: the task is retried by Batch Operations");
                            TaskOutcome::Retryable(e.0)
                        }
                    }
                }
            };
            done.push((task.task_id, outcome));
        }
        batch::response(&inv.schema_version, &inv.invocation_id, &done)
    }

    /// `first`: the first object of the invocation (a later one may find
    /// the time used up by earlier objects: it continues in a new
    /// invocation instead of failing).
    async fn process(
        &self,
        job: Job,
        started: Instant,
        deadline: Instant,
        first: bool,
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
            report.outcome = Some(Outcome::Skipped);
            report.complete = true;
            return Ok(report);
        }
        if let Some(seg) = &job.segment {
            return self.segment(&job, seg, report, started, deadline).await;
        }
        // A continuation goes on from the state its predecessor stopped in:
        // the object is read from there on (a ranged read), not again from
        // its start.
        let from = self.load_checkpoint(&job).await?;
        let opened = match &from {
            // Read to its end already: what is left is in the checkpoint.
            Some(c) if !c.state.input.reads_source() => Ok(OpenedObject {
                body: Box::new(tokio::io::empty()),
                size: Some(0),
                etag: obj.etag.clone(),
                version_id: obj.version_id.clone(),
            }),
            c => {
                let offset = c.as_ref().map_or(0, |c| c.state.input.source_offset());
                self.source.open_at(&obj, offset).await
            }
        };
        let opened = match opened {
            Ok(o) => o,
            Err(e) if e.retryable() => return Err(RetryableError(e.to_string())),
            Err(e) => {
                report.outcome = Some(match e {
                    SourceError::NotFound(_) => Outcome::NotFound,
                    SourceError::Changed(_) => Outcome::Replaced,
                    _ => Outcome::Failed,
                });
                tracing::warn!(error = %e, "object not processed");
                report.error = Some(e.to_string());
                report.add_carried(&job.carried);
                self.forget_checkpoint(&job).await;
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
        // What an index pass that found one segment read (the serial run
        // reads the object again).
        let mut index_pass = (0, 0);
        let opened = if job.is_original() && from.is_none() {
            let (gzip, opened) = peek_gzip(opened)
                .await
                .map_err(|e| RetryableError(format!("{obj}: {e}")))?;
            if super::fanout::fans_out(true, opened.size, gzip, cfg.segment_bytes) {
                match self.fan_out(&pinned, opened, report).await? {
                    FanOut::Started(r) => return Ok(*r),
                    // One segment after all (the estimate was high): read
                    // the object again, serially.
                    FanOut::Serial(r) => {
                        index_pass = (r.bytes_read, r.bytes_decompressed);
                        match self.source.open(&pinned).await {
                            Ok(o) => o,
                            Err(e) => return Err(RetryableError(e.to_string())),
                        }
                    }
                }
            } else {
                opened
            }
        } else {
            opened
        };
        let now = Instant::now();
        let plan = plan(
            deadline.saturating_duration_since(now),
            now.duration_since(started),
            cfg.safety_margin,
            cfg.work_budget,
            cfg.request_timeout,
        );
        let mut res = self
            .ingest_object(&job, &obj, opened, from, now, &plan)
            .await;
        let mut report = RunReport {
            version_id: pinned.version_id.clone(),
            ..std::mem::take(&mut res.report)
        };
        report.add_carried(&job.carried);
        report.chain_bytes_read += report.bytes_read;
        report.chain_bytes_decompressed += report.bytes_decompressed;
        report.chain_bytes_read += index_pass.0;
        report.chain_bytes_decompressed += index_pass.1;
        report.continuations = u64::from(job.attempt);
        report.seconds = job.carried.seconds + started.elapsed().as_secs_f64();
        let next = res.drive.next_seq.max(job.skip_batches);
        let facts = Facts {
            stopped_for_time: res.stopped && res.failure.is_none(),
            failure: res.failure.as_ref().map(Failure::retryable),
            progressed: next > job.skip_batches
                || report.batches_written > job.carried.batches_written,
            first,
            attempt: job.attempt,
            max_continuations: cfg.max_continuations,
        };
        let decision = decide(&facts);
        match decision {
            Decision::Retry => {
                // The checkpoint stays: the retry starts from it again.
                let msg = report.error.clone().unwrap_or_default();
                return Err(RetryableError(msg));
            }
            Decision::Report(o) => {
                if o == Outcome::ChainLimit {
                    report.error = Some(format!(
                        "continuation chain limit ({}) reached: requests from {next} on were not written; re-process with a direct invocation or raise K6TS_MAX_CONTINUATIONS",
                        cfg.max_continuations
                    ));
                    tracing::error!(next_batch = next, "continuation chain limit reached");
                }
                report.outcome = Some(o);
            }
            Decision::NoProgress => {
                // Not one new request fit before the safety margin: a
                // continuation would do the same. Report it instead of
                // burning the chain.
                report.outcome = Some(Outcome::Failed);
                report.error = Some(format!(
                    "no time to write anything before the deadline margin ({} s left at start); raise the timeout or lower K6TS_SAFETY_MARGIN_SECONDS",
                    plan.hard_stop.as_secs() + plan.margin.as_secs()
                ));
                tracing::error!("no progress possible in this invocation");
            }
            Decision::Continue => {
                let checkpoint = match res.checkpoint.take() {
                    Some(c) => self.save_checkpoint(&pinned, job.attempt + 1, c).await,
                    None => None,
                };
                let ev = continuation_event(&pinned, next, checkpoint, job.attempt + 1, &report);
                let function = cfg.self_function.clone().ok_or_else(|| {
                    RetryableError(
                        "no function name to continue with (AWS_LAMBDA_FUNCTION_NAME / K6TS_SELF_FUNCTION)"
                            .into(),
                    )
                })?;
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
                report.outcome = Some(Outcome::Continued);
                report.continued = true;
            }
        }
        // The next link (if any) was handed its own checkpoint: the one this
        // link started from is not needed any more.
        self.forget_checkpoint(&job).await;
        tracing::info!(
            outcome = report.outcome.map_or("", Outcome::as_str),
            points = report.points,
            written_measures = report.written_measures,
            dead_lettered = report.dead_lettered,
            "object done"
        );
        self.emit_metrics(&report);
        Ok(report)
    }

    /// Runs the object through the core and the sink until the end of the
    /// input or a stop of `plan`.
    async fn ingest_object(
        &self,
        job: &Job,
        obj: &ObjectRef,
        opened: OpenedObject,
        from: Option<Checkpoint<W::Encoder>>,
        start: Instant,
        plan: &Plan,
    ) -> IngestResult<W::Encoder> {
        let cfg = &self.cfg;
        let popts = self.pipeline_options(obj);
        let wcfg = WriterConfig {
            concurrency: cfg.concurrency,
            request_timeout: plan.request_timeout,
            retry: RetryPolicy::default(),
            retry_budget: DEFAULT_RETRY_BUDGET,
            skip_batches: job.skip_batches,
            hard_deadline: Some(start + plan.last_retry),
            shared_limit: None,
        };
        let live = Live::default();
        let stats = live.stats.clone();
        let (soft_stop, hard_stop) = (start + plan.soft_stop, start + plan.hard_stop);
        // Progress guarantee: the work budget only stops a run that has
        // finished at least one new request, so a chain always advances
        // even when re-reading the skipped prefix eats the whole budget.
        let stop = Arc::new(move || {
            let now = Instant::now();
            now >= hard_stop
                || (now >= soft_stop && stats.batches_written.load(Ordering::Relaxed) > 0)
        });
        let dl_bucket = cfg
            .dead_letter_bucket
            .clone()
            .unwrap_or_else(|| obj.bucket.clone());
        let dlq = Arc::new(S3DeadLetterSink::new(
            self.put.clone(),
            dl_bucket,
            &cfg.dead_letter_prefix,
            obj,
            job.skip_batches,
        ));
        let sink = Sink {
            encoder: self.writer.encoder(cfg),
            service: W::service(&self.writer),
            dead_letters: dlq,
            config: wcfg,
        };
        let body = tokio_util::io::SyncIoBridge::new(opened.body);
        ingest_from(body, obj.url(), popts, sink, live, stop, from).await
    }

    /// The checkpoint a continuation names, if it can be used. A missing or
    /// unreadable one is not an error: the object is then read again from
    /// its start and the confirmed requests skipped (slower, same result).
    async fn load_checkpoint(
        &self,
        job: &Job,
    ) -> Result<Option<Checkpoint<W::Encoder>>, RetryableError> {
        let Some(at) = &job.checkpoint else {
            return Ok(None);
        };
        let bytes = match self.put.get_object(&at.bucket, &at.key).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                tracing::warn!(key = %at.key, "checkpoint not found: reading the object from its start");
                return Ok(None);
            }
            Err(e) if e.retryable() => return Err(RetryableError(e.to_string())),
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint unreadable: reading the object from its start");
                return Ok(None);
            }
        };
        let len = bytes.len();
        let decoded = tokio::task::spawn_blocking(move || Checkpoint::<W::Encoder>::decode(&bytes))
            .await
            .map_err(|e| RetryableError(format!("decoding the checkpoint failed: {e}")))?;
        match decoded {
            Ok(c) if c.state.report.input == job.object.url() => {
                tracing::info!(key = %at.key, bytes = len, lines = c.state.input.lines, unsent = c.unsent.len(), "going on from the checkpoint");
                Ok(Some(c))
            }
            Ok(c) => {
                tracing::warn!(key = %at.key, of = %c.state.report.input, "checkpoint of another object: reading the object from its start");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(key = %at.key, error = %e, "checkpoint unusable: reading the object from its start");
                Ok(None)
            }
        }
    }

    /// Stores the checkpoint link `attempt` starts from; None when it could
    /// not be stored (the link then reads the object from its start).
    async fn save_checkpoint(
        &self,
        object: &ObjectRef,
        attempt: u32,
        checkpoint: Checkpoint<W::Encoder>,
    ) -> Option<StoredObject> {
        let at = StoredObject {
            bucket: self
                .cfg
                .state_bucket
                .clone()
                .unwrap_or_else(|| object.bucket.clone()),
            key: checkpoint_key(&self.cfg.state_prefix, object, attempt),
        };
        let unsent = checkpoint.unsent.len();
        let body = match tokio::task::spawn_blocking(move || checkpoint.encode()).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "encoding the checkpoint failed: the continuation reads the object from its start");
                return None;
            }
        };
        let len = body.len();
        match self.put.put_object(&at.bucket, &at.key, body).await {
            Ok(()) => {
                tracing::info!(key = %at.key, bytes = len, unsent, "checkpoint stored");
                Some(at)
            }
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint not stored: the continuation reads the object from its start");
                None
            }
        }
    }

    /// Deletes the checkpoint the job started from (best effort: the state
    /// prefix's lifecycle rule removes what is left).
    async fn forget_checkpoint(&self, job: &Job) {
        if let Some(at) = &job.checkpoint {
            if let Err(e) = self.put.delete_object(&at.bucket, &at.key).await {
                tracing::warn!(key = %at.key, error = %e, "checkpoint not deleted");
            }
        }
    }

    /// The conversion options for `obj`.
    fn pipeline_options(&self, obj: &ObjectRef) -> PipelineOptions {
        let cfg = &self.cfg;
        PipelineOptions {
            convert: ConvertOptions {
                model: cfg.model,
                testid: cfg.testid.resolve(&obj.key),
                extra_dimensions: cfg.dimensions.clone(),
                multi_measure_name: cfg.measure_name.clone(),
                ..Default::default()
            },
            input: InputOptions {
                max_line_bytes: cfg.max_line_bytes,
                max_decompressed_bytes: cfg.max_decompressed_bytes,
                flush_interval: None,
            },
        }
    }

    fn state_bucket(&self, object: &ObjectRef) -> String {
        self.cfg
            .state_bucket
            .clone()
            .unwrap_or_else(|| object.bucket.clone())
    }

    /// Indexes `opened` (reading it once, only inflating), stores the
    /// plan and starts the first wave of segments.
    async fn fan_out(
        &self,
        obj: &ObjectRef,
        opened: OpenedObject,
        mut report: RunReport,
    ) -> Result<FanOut, RetryableError> {
        let cfg = &self.cfg;
        let opts = self.pipeline_options(obj).input;
        let spacing = crate::core::segment::candidate_spacing(cfg.segment_bytes);
        let progress = Live::default().progress;
        let p2 = progress.clone();
        let body = std::io::BufReader::with_capacity(
            256 * 1024,
            tokio_util::io::SyncIoBridge::new(opened.body),
        );
        let index = tokio::task::spawn_blocking(move || segment::index(body, spacing, &opts, &p2))
            .await
            .map_err(|e| RetryableError(format!("the index pass failed: {e}")))?;
        let (read, inflated) = progress.read();
        report.bytes_read = read;
        report.bytes_decompressed = inflated;
        let index = match index {
            Ok(i) => i,
            Err(segment::IndexError::Input(e)) => return Err(RetryableError(e)),
            Err(e) => {
                tracing::error!(error = %e, "object not indexed");
                report.outcome = Some(Outcome::Failed);
                report.error = Some(e.to_string());
                self.emit_metrics(&report);
                return Ok(FanOut::Started(Box::new(report)));
            }
        };
        let specs = segment::plan_index(
            &index,
            cfg.segment_bytes,
            segment::default_lookback(cfg.segment_bytes),
        );
        if specs.len() < 2 || !index.json {
            tracing::info!(
                bytes = index.bytes,
                json = index.json,
                "one segment, or not k6 JSON (k6 CSV): the object is written serially"
            );
            return Ok(FanOut::Serial(Box::new(report)));
        }
        if !segment::worth_fanning_out(&index, &specs) {
            tracing::warn!(
                bytes = index.bytes,
                wasted = segment::wasted_inflation(&index, &specs),
                "the gzip stream has too few deflate block boundaries to start segments near their lines (written as one block, e.g. by zlib-ng/zlib-rs level 1): the object is written serially"
            );
            return Ok(FanOut::Serial(Box::new(report)));
        }
        let mut stored = StoredPlan::new(obj.url(), &index, &specs, cfg.max_parallel);
        stored.index_bytes_read = read;
        stored.index_bytes_decompressed = inflated;
        let n = stored.segment_count();
        let at = StoredObject {
            bucket: self.state_bucket(obj),
            key: fanout::index_key(&cfg.state_prefix, obj),
        };
        // Reports of an earlier fan-out of the same version (one that
        // failed, or the same event delivered again) must not be merged
        // into this one.
        for k in 0..n {
            let key = fanout::segment_report_key(&at.key, k);
            self.put
                .delete_object(&at.bucket, &key)
                .await
                .map_err(|e| RetryableError(e.to_string()))?;
        }
        self.put
            .delete_object(&at.bucket, &fanout::done_key(&at.key))
            .await
            .map_err(|e| RetryableError(e.to_string()))?;
        let body = serde_json::to_vec(&stored).expect("serializable");
        let plan_bytes = body.len();
        // Without the plan no segment can run: retry the invocation.
        self.put
            .put_object(&at.bucket, &at.key, body)
            .await
            .map_err(|e| RetryableError(e.to_string()))?;
        for k in fanout::first_wave(n, stored.max_parallel) {
            self.start_segment(obj, &at, k).await?;
        }
        tracing::info!(
            segments = n,
            max_parallel = stored.max_parallel,
            bytes = index.bytes,
            lines = index.lines,
            plan_bytes,
            index = %at.key,
            "fanned out"
        );
        report.outcome = Some(Outcome::Continued);
        report.continued = true;
        report.complete = true;
        report.lines = index.lines;
        report.segments = u64::from(n);
        report.chain_bytes_read = read;
        report.chain_bytes_decompressed = inflated;
        Ok(FanOut::Started(Box::new(report)))
    }

    async fn start_segment(
        &self,
        obj: &ObjectRef,
        index: &StoredObject,
        number: u32,
    ) -> Result<(), RetryableError> {
        let function = self.cfg.self_function.clone().ok_or_else(|| {
            RetryableError(
                "no function name to start segments with (AWS_LAMBDA_FUNCTION_NAME / K6TS_SELF_FUNCTION)"
                    .into(),
            )
        })?;
        let ev = fanout::segment_event(obj, index, number);
        self.send_segment_event(&function, &ev).await
    }

    async fn send_segment_event(
        &self,
        function: &str,
        ev: &super::event::SegmentEvent,
    ) -> Result<(), RetryableError> {
        self.invoker
            .invoke_async(function, serde_json::to_vec(ev).expect("serializable"))
            .await
            .map_err(RetryableError)
    }

    /// Runs one segment of a fanned-out object; the segment that
    /// completes the set answers with the merged report.
    async fn segment(
        &self,
        job: &Job,
        seg: &SegmentRef,
        mut report: RunReport,
        started: Instant,
        deadline: Instant,
    ) -> Result<RunReport, RetryableError> {
        let obj = &job.object;
        let failed = |mut r: RunReport, msg: String| {
            tracing::error!(segment = seg.number, error = %msg, "segment not run");
            r.outcome = Some(Outcome::Failed);
            r.error = Some(msg);
            r
        };
        let plan_bytes = match self.put.get_object(&seg.index.bucket, &seg.index.key).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Ok(failed(
                    report,
                    format!(
                        "segment {}: no plan at s3://{}/{} (its set was completed and its state deleted, or the state expired): process the object again",
                        seg.number, seg.index.bucket, seg.index.key
                    ),
                ))
            }
            Err(e) if e.retryable() => return Err(RetryableError(e.to_string())),
            Err(e) => return Ok(failed(report, e.to_string())),
        };
        let plan_of = match StoredPlan::decode(&plan_bytes, &obj.url()) {
            Ok(p) => p,
            Err(e) => return Ok(failed(report, e.to_string())),
        };
        let (mut spec, from) = match plan_of.segment(seg.number) {
            Ok(s) => s,
            Err(e) => return Ok(failed(report, e.to_string())),
        };
        let (planned_start, planned_end) = (spec.start_line, spec.end_line);
        if let Some(start) = seg.start_line {
            if start <= planned_start || planned_end.is_some_and(|e| start >= e) {
                return Ok(failed(
                    report,
                    format!(
                        "segment {}: a part cannot start at line {start} (the segment is lines {planned_start}-{})",
                        seg.number,
                        planned_end.map_or_else(|| "end".to_owned(), |e| (e - 1).to_string())
                    ),
                ));
            }
            spec.start_line = start;
        }
        let opened = self
            .source
            .open_at(obj, segment::source_offset(from.as_ref()))
            .await;
        let opened = match opened {
            Ok(o) => o,
            Err(e) if e.retryable() => return Err(RetryableError(e.to_string())),
            Err(e) => {
                report.outcome = Some(match e {
                    SourceError::NotFound(_) => Outcome::NotFound,
                    SourceError::Changed(_) => Outcome::Replaced,
                    _ => Outcome::Failed,
                });
                tracing::warn!(error = %e, segment = seg.number, "segment not processed");
                report.error = Some(e.to_string());
                return Ok(report);
            }
        };
        let cfg = &self.cfg;
        let now = Instant::now();
        let plan = plan(
            deadline.saturating_duration_since(now),
            now.duration_since(started),
            cfg.safety_margin,
            cfg.work_budget,
            cfg.request_timeout,
        );
        // The segment wraps up at its next hard break, the rest going on in
        // another part (see run_segment), at the hard stop (the deadline
        // margin) or once the work budget has passed since it reached its
        // own lines: a later part first re-reads the segment's earlier
        // lines, which must not eat the budget (else parts would make no
        // progress).
        let hard_stop = now + plan.hard_stop;
        let budget = cfg.work_budget;
        let owned_since = std::sync::OnceLock::new();
        let wrap_up = Arc::new(move || {
            let now = Instant::now();
            let since = *owned_since.get_or_init(|| now);
            fanout::wrap_up_now(
                now.duration_since(since),
                hard_stop.saturating_duration_since(now),
                budget,
            )
        });
        // Each segment's dead letters under a key of its own.
        let dl_source = ObjectRef {
            key: format!("{}.segment-{}", obj.key, seg.number),
            ..obj.clone()
        };
        let dlq = Arc::new(S3DeadLetterSink::new(
            self.put.clone(),
            cfg.dead_letter_bucket
                .clone()
                .unwrap_or_else(|| obj.bucket.clone()),
            &cfg.dead_letter_prefix,
            &dl_source,
            0,
        ));
        let sink = Sink {
            encoder: self.writer.encoder(cfg),
            service: W::service(&self.writer),
            dead_letters: dlq,
            config: WriterConfig {
                concurrency: cfg.concurrency,
                request_timeout: plan.request_timeout,
                retry: RetryPolicy::default(),
                retry_budget: DEFAULT_RETRY_BUDGET,
                skip_batches: 0,
                hard_deadline: Some(now + plan.last_retry),
                shared_limit: None,
            },
        };
        let body = tokio_util::io::SyncIoBridge::new(opened.body);
        let run = ingest_segment(
            body,
            obj.url(),
            self.pipeline_options(obj),
            Arc::new(plan_of.metric_list()),
            spec.clone(),
            from,
            sink,
            Live::default(),
            wrap_up,
        )
        .await;
        let mut part = run.report;
        match &run.failure {
            Some(f) if f.retryable() => return Err(RetryableError(f.message().to_owned())),
            None if !part.complete => {
                // The writer gave up at its hard deadline: Lambda's retry
                // runs this part again (the same records: duplicates the
                // sink ignores).
                return Err(RetryableError(format!(
                    "segment {} did not finish writing before the deadline ({} s); this part is retried",
                    seg.number,
                    plan.last_retry.as_secs()
                )));
            }
            _ => {}
        }
        // Ended early for time: the rest in another part, unless the
        // segment has taken too many already.
        let (end_line, next_part) = match fanout::after_part(
            part.complete,
            run.end_line,
            planned_end,
            seg.part,
            cfg.max_continuations,
        ) {
            AfterPart::Done => (run.end_line, None),
            AfterPart::GoOn(start) => (run.end_line, Some(start)),
            AfterPart::TooManyParts => {
                part.complete = false;
                let parts = seg.part + 1;
                part.error = Some(format!(
                    "segment {} ran out of time in {parts} part{} (K6TS_MAX_CONTINUATIONS later parts at most); lower K6TS_SEGMENT_BYTES and re-run it",
                    seg.number,
                    if parts == 1 { "" } else { "s" },
                ));
                (planned_end, None)
            }
        };
        part.version_id.clone_from(&obj.version_id);
        part.seconds = started.elapsed().as_secs_f64();
        if seg.start_line.is_some() {
            // A later part: the same segment, not another one.
            part.segments = 0;
        }
        part.outcome = Some(if part.complete {
            Outcome::Continued
        } else {
            Outcome::Failed
        });
        let stored = StoredReport {
            number: seg.number,
            start_line: spec.start_line,
            end_line,
            report: part.clone(),
        };
        let key =
            fanout::part_report_key(&seg.index.key, seg.number, spec.start_line, planned_start);
        self.put
            .put_object(
                &seg.index.bucket,
                &key,
                serde_json::to_vec(&stored).expect("serializable"),
            )
            .await
            .map_err(|e| RetryableError(e.to_string()))?;
        tracing::info!(
            segment = seg.number,
            part = seg.part,
            lines = part.lines,
            points = part.points,
            written_measures = part.written_measures,
            complete = part.complete,
            next_part = next_part.unwrap_or(0),
            "segment part done"
        );
        if let Some(start) = next_part {
            let function = cfg.self_function.clone().ok_or_else(|| {
                RetryableError("no function name to go on with (AWS_LAMBDA_FUNCTION_NAME / K6TS_SELF_FUNCTION)".into())
            })?;
            let ev = fanout::segment_part_event(obj, &seg.index, seg.number, start, seg.part + 1);
            self.send_segment_event(&function, &ev).await?;
            return Ok(part);
        }
        let n = plan_of.segment_count();
        if let Some(next) = fanout::successor(seg.number, n, plan_of.max_parallel) {
            // Already stored (a segment re-run alone after the set ran):
            // not started again.
            let next_key = fanout::segment_report_key(&seg.index.key, next);
            let stored_already = self
                .put
                .get_object(&seg.index.bucket, &next_key)
                .await
                .map_err(|e| RetryableError(e.to_string()))?
                .is_some();
            if !stored_already {
                self.start_segment(obj, &seg.index, next).await?;
            }
        }
        Ok(self.complete_set(seg, &plan_of).await?.unwrap_or(part))
    }

    /// When every segment's report is stored (each segment's parts from
    /// its start to its end) and this invocation wins the `done` marker:
    /// the merged report (the state deleted when every segment completed).
    async fn complete_set(
        &self,
        seg: &SegmentRef,
        plan_of: &StoredPlan,
    ) -> Result<Option<RunReport>, RetryableError> {
        let n = plan_of.segment_count();
        let bucket = &seg.index.bucket;
        let mut by_segment: Vec<Vec<StoredReport>> = vec![Vec::new(); n as usize];
        let mut keys: Vec<String> = Vec::new();
        for k in std::iter::once(seg.number).chain(fanout::probe_order(n, seg.number)) {
            match self
                .segment_parts(bucket, &seg.index.key, plan_of, k)
                .await?
            {
                Some((parts, part_keys)) => {
                    by_segment[k as usize] = parts;
                    keys.extend(part_keys);
                }
                None => {
                    tracing::debug!(waiting_for = k, "set not complete");
                    return Ok(None);
                }
            }
        }
        let done = fanout::done_key(&seg.index.key);
        let won = self
            .put
            .put_object_if_absent(bucket, &done, Vec::new())
            .await
            .map_err(|e| RetryableError(e.to_string()))?;
        if !won {
            return Ok(None);
        }
        // A segment's time is that of its parts, one after the other.
        let seconds = by_segment
            .iter()
            .map(|ps| ps.iter().map(|p| p.report.seconds).sum::<f64>())
            .fold(0.0, f64::max);
        let parts: Vec<StoredReport> = by_segment.into_iter().flatten().collect();
        let reports: Vec<RunReport> = parts.iter().map(|p| p.report.clone()).collect();
        let mut merged = segment::merge_reports(&reports);
        merged.chain_bytes_read = merged.bytes_read + plan_of.index_bytes_read;
        merged.chain_bytes_decompressed =
            merged.bytes_decompressed + plan_of.index_bytes_decompressed;
        merged.seconds = seconds;
        match fanout::failed_segments_message(&parts) {
            Some(msg) => {
                // Kept: the failed segments can be re-run alone, and the
                // one completing the set then claims the marker again.
                tracing::error!(error = %msg, "segments failed");
                merged.outcome = Some(Outcome::Failed);
                merged.error = Some(msg);
                self.delete_state(bucket, &[done]).await;
            }
            None => {
                merged.outcome = Some(Outcome::Complete);
                merged.error = None;
                keys.push(seg.index.key.clone());
                keys.push(done);
                self.delete_state(bucket, &keys).await;
            }
        }
        tracing::info!(
            outcome = merged.outcome.map_or("", Outcome::as_str),
            segments = merged.segments,
            points = merged.points,
            written_measures = merged.written_measures,
            dead_lettered = merged.dead_lettered,
            "object done"
        );
        self.emit_metrics(&merged);
        Ok(Some(merged))
    }

    /// Segment `k`'s stored part reports from its start to its end and
    /// their keys; None while one is missing (or unreadable: re-running
    /// the segment stores a good one).
    async fn segment_parts(
        &self,
        bucket: &str,
        index_key: &str,
        plan_of: &StoredPlan,
        k: u32,
    ) -> Result<Option<(Vec<StoredReport>, Vec<String>)>, RetryableError> {
        let Ok((spec, _)) = plan_of.segment(k) else {
            return Ok(None);
        };
        let (mut parts, mut keys) = (Vec::new(), Vec::new());
        let mut start = spec.start_line;
        loop {
            let key = fanout::part_report_key(index_key, k, start, spec.start_line);
            let stored = match self.put.get_object(bucket, &key).await {
                Ok(Some(b)) => match serde_json::from_slice::<StoredReport>(&b) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(segment = k, error = %e, "segment report unreadable");
                        return Ok(None);
                    }
                },
                Ok(None) => return Ok(None),
                Err(e) => return Err(RetryableError(e.to_string())),
            };
            let next = fanout::next_part(&stored, spec.end_line);
            parts.push(stored);
            keys.push(key);
            match next {
                // Parts only go forward; a stored chain that does not is
                // damaged (re-running the segment replaces it).
                Some(e) if e > start && parts.len() <= plan_of.lines as usize + 1 => start = e,
                Some(_) => return Ok(None),
                None => return Ok(Some((parts, keys))),
            }
        }
    }

    /// Best effort: the state prefix's lifecycle rule removes what is left.
    async fn delete_state(&self, bucket: &str, keys: &[String]) {
        for k in keys {
            if let Err(e) = self.put.delete_object(bucket, k).await {
                tracing::warn!(key = %k, error = %e, "state not deleted");
            }
        }
    }

    fn emit_metrics(&self, r: &RunReport) {
        println!(
            "{}",
            super::metrics::line(
                &self.cfg.metrics_namespace,
                self.cfg.self_function.as_deref().unwrap_or("k6-timestream"),
                r
            )
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::config::LambdaConfig;
    use crate::sinks::timestream::WriteRequest;
    use crate::sinks::{RejectedRecord, Service, WriteError};
    use crate::sources::OpenedObject;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    struct Obj {
        body: Vec<u8>,
        etag: String,
        version: Option<String>,
    }

    #[derive(Default)]
    struct Source {
        objects: Mutex<HashMap<String, Obj>>,
        opens: Mutex<Vec<ObjectRef>>,
        /// The first byte of each open (0: the whole object).
        offsets: Mutex<Vec<u64>>,
    }

    impl ObjectSource for Arc<Source> {
        async fn open(&self, obj: &ObjectRef) -> Result<OpenedObject, SourceError> {
            self.read_from(obj, 0)
        }

        async fn open_from(
            &self,
            obj: &ObjectRef,
            offset: u64,
        ) -> Result<OpenedObject, SourceError> {
            self.read_from(obj, offset)
        }
    }

    impl Source {
        /// Stores `body` under `key` with `etag` (no version).
        fn add(&self, key: &str, body: Vec<u8>, etag: &str) {
            self.objects.lock().unwrap().insert(
                key.into(),
                Obj {
                    body,
                    etag: etag.into(),
                    version: None,
                },
            );
        }

        fn read_from(&self, obj: &ObjectRef, offset: u64) -> Result<OpenedObject, SourceError> {
            self.opens.lock().unwrap().push(obj.clone());
            self.offsets.lock().unwrap().push(offset);
            if obj.key.contains("flaky") {
                return Err(SourceError::Transient(
                    obj.to_string(),
                    "503 SlowDown".into(),
                ));
            }
            let m = self.objects.lock().unwrap();
            let o = m
                .get(&obj.key)
                .ok_or_else(|| SourceError::NotFound(obj.to_string()))?;
            if obj.etag.as_ref().is_some_and(|e| *e != o.etag) {
                return Err(SourceError::Changed(obj.to_string()));
            }
            let rest = o.body.get(offset as usize..).unwrap_or_default().to_vec();
            Ok(OpenedObject {
                size: Some(rest.len() as u64),
                body: Box::new(std::io::Cursor::new(rest)),
                etag: Some(o.etag.clone()),
                version_id: o.version.clone(),
            })
        }
    }

    /// Stores records; rejects records whose `status` dimension is 404
    /// when `reject_404`; each call takes `delay`.
    #[derive(Default)]
    struct Writer {
        records: Mutex<Vec<(u64, i64)>>,
        /// Every request as it was sent.
        requests: Mutex<Vec<WriteRequest>>,
        calls: Mutex<u64>,
        reject_404: bool,
        delay: Duration,
    }

    impl Service<WriteRequest> for Writer {
        async fn write(&self, req: &WriteRequest) -> Result<(), WriteError> {
            tokio::time::sleep(self.delay).await;
            *self.calls.lock().unwrap() += 1;
            self.requests.lock().unwrap().push(req.clone());
            let mut rejected = Vec::new();
            for (i, r) in req.records.iter().enumerate() {
                if self.reject_404
                    && r.dimensions
                        .iter()
                        .any(|d| d.name == "status" && d.value == "404")
                {
                    rejected.push(RejectedRecord {
                        index: i,
                        reason: "synthetic".into(),
                        existing_version: None,
                    });
                } else {
                    self.records.lock().unwrap().push((req.seq, r.time_ns));
                }
            }
            if rejected.is_empty() {
                Ok(())
            } else {
                Err(WriteError::Rejected(rejected))
            }
        }
    }

    type Puts = Vec<(String, String, Vec<u8>)>;

    type Stored = std::collections::BTreeMap<(String, String), Vec<u8>>;

    /// Dead-letter puts, and an object store (checkpoints) that logs what
    /// is done to it and can fail its next reads.
    #[derive(Default, Clone)]
    struct Put {
        dead_letters: Arc<Mutex<Puts>>,
        objects: Arc<Mutex<Stored>>,
        log: Arc<Mutex<Vec<String>>>,
        failing_gets: Arc<Mutex<u32>>,
    }

    impl ObjectPut for Put {
        async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), String> {
            self.dead_letters
                .lock()
                .unwrap()
                .push((bucket.into(), key.into(), body));
            Ok(())
        }
    }

    impl ObjectStore for Put {
        async fn get_object(
            &self,
            bucket: &str,
            key: &str,
        ) -> Result<Option<Vec<u8>>, crate::sources::s3::StoreError> {
            self.log.lock().unwrap().push(format!("get {key}"));
            let mut failing = self.failing_gets.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(crate::sources::s3::StoreError::Transient("503".into()));
            }
            let m = self.objects.lock().unwrap();
            Ok(m.get(&(bucket.to_owned(), key.to_owned())).cloned())
        }

        async fn put_object(
            &self,
            bucket: &str,
            key: &str,
            body: Vec<u8>,
        ) -> Result<(), crate::sources::s3::StoreError> {
            self.log.lock().unwrap().push(format!("put {key}"));
            self.objects
                .lock()
                .unwrap()
                .insert((bucket.into(), key.into()), body);
            Ok(())
        }

        async fn delete_object(
            &self,
            bucket: &str,
            key: &str,
        ) -> Result<(), crate::sources::s3::StoreError> {
            self.log.lock().unwrap().push(format!("delete {key}"));
            self.objects
                .lock()
                .unwrap()
                .remove(&(bucket.to_owned(), key.to_owned()));
            Ok(())
        }

        async fn put_object_if_absent(
            &self,
            bucket: &str,
            key: &str,
            body: Vec<u8>,
        ) -> Result<bool, crate::sources::s3::StoreError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("put-if-absent {key}"));
            let mut m = self.objects.lock().unwrap();
            let k = (bucket.to_owned(), key.to_owned());
            if m.contains_key(&k) {
                return Ok(false);
            }
            m.insert(k, body);
            Ok(true)
        }
    }

    #[derive(Default)]
    struct Invoker(Mutex<Vec<(String, serde_json::Value)>>);

    impl super::Invoker for Arc<Invoker> {
        async fn invoke_async(&self, function: &str, payload: Vec<u8>) -> Result<(), String> {
            self.0
                .lock()
                .unwrap()
                .push((function.into(), serde_json::from_slice(&payload).unwrap()));
            Ok(())
        }
    }

    type H = Handler<Arc<Source>, Writer, Put, Arc<Invoker>>;

    fn cfg(extra: &[(&str, &str)]) -> LambdaConfig {
        let mut m: HashMap<String, String> = [
            ("K6TS_DATABASE", "k6"),
            ("K6TS_TABLE", "results"),
            ("AWS_LAMBDA_FUNCTION_NAME", "fn"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            m.insert(k.to_string(), v.to_string());
        }
        LambdaConfig::from_lookup(|k| m.get(k).cloned()).unwrap()
    }

    fn fixture() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/mixed.json.gz"
        ))
        .unwrap()
    }

    /// [`fixture`] inflated.
    fn fixture_plain() -> Vec<u8> {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&fixture()[..]),
            &mut plain,
        )
        .unwrap();
        plain
    }

    fn handler(cfg: LambdaConfig, writer: Writer) -> (H, Arc<Source>, Put, Arc<Invoker>) {
        let source = Arc::new(Source::default());
        source.add("k6-results/run 1.json.gz", fixture(), "e1");
        // The same, not compressed.
        source.add("k6-results/run 1.json", fixture_plain(), "e2");
        let put = Put::default();
        let inv = Arc::new(Invoker::default());
        (
            Handler {
                cfg,
                source: source.clone(),
                writer: Arc::new(writer),
                put: put.clone(),
                invoker: inv.clone(),
            },
            source,
            put,
            inv,
        )
    }

    fn s3_event(key: &str, etag: &str) -> serde_json::Value {
        serde_json::json!({"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":key,"eTag":etag}}}]})
    }

    fn soon() -> SystemTime {
        SystemTime::now() + Duration::from_secs(120)
    }

    #[tokio::test]
    async fn s3_event_is_processed_completely() {
        let (h, source, put, inv) = handler(cfg(&[]), Writer::default());
        let resp = h
            .handle(s3_event("k6-results/run+1.json.gz", "e1"), soon())
            .await
            .unwrap();
        let r = &resp.reports[0];
        assert_eq!(r.outcome.map(Outcome::as_str), Some("complete"), "{r:?}");
        assert_eq!(r.input, "s3://b/k6-results/run 1.json.gz");
        assert_eq!(r.written_measures, r.points);
        assert_eq!(
            r.written_records,
            h.writer.records.lock().unwrap().len() as u64
        );
        assert!(put.dead_letters.lock().unwrap().is_empty() && inv.0.lock().unwrap().is_empty());
        // If-Match: the event's ETag was asked for.
        assert_eq!(source.opens.lock().unwrap()[0].etag.as_deref(), Some("e1"));
    }

    #[tokio::test]
    async fn outcomes_that_are_not_retried() {
        let (h, ..) = handler(cfg(&[]), Writer::default());
        let ev = serde_json::json!({"Records":[
            {"s3":{"bucket":{"name":"b"},"object":{"key":"k6-results/notes.txt"}}},
            {"s3":{"bucket":{"name":"b"},"object":{"key":"k6-results/run+1.json.gz","eTag":"old"}}},
            {"s3":{"bucket":{"name":"b"},"object":{"key":"k6-results/gone.json"}}},
            {"s3":{"bucket":{"name":"b"},"object":{"key":"k6-timestream-dead-letter/b/x.json"}}}
        ]});
        let resp = h.handle(ev, soon()).await.unwrap();
        let outcomes: Vec<_> = resp
            .reports
            .iter()
            .map(|r| r.outcome.unwrap().as_str())
            .collect();
        assert_eq!(outcomes, ["skipped", "replaced", "not_found", "skipped"]);
        assert!(h.writer.records.lock().unwrap().is_empty());
        let bad = h
            .handle(serde_json::json!({"nope": 1}), soon())
            .await
            .unwrap();
        assert_eq!(bad.reports[0].outcome.map(Outcome::as_str), Some("failed"));
    }

    #[tokio::test]
    async fn csv_objects_are_written_and_non_k6_objects_fail() {
        let (h, source, ..) = handler(cfg(&[]), Writer::default());
        let csv = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/csv_unix.csv"
        ))
        .unwrap();
        for (key, body) in [
            ("k6-results/run.csv", csv),
            ("k6-results/notes.json", b"a note\nmore notes\n".to_vec()),
        ] {
            source.add(key, body, "e");
        }
        let r = h
            .handle(s3_event("k6-results/run.csv", "e"), soon())
            .await
            .unwrap()
            .reports
            .remove(0);
        assert_eq!(r.outcome.map(Outcome::as_str), Some("complete"), "{r:?}");
        assert_eq!((r.format.as_str(), r.points), ("csv", 353));
        assert_eq!(r.written_measures, r.measures);
        assert!(r.warnings.iter().any(|w| w.contains("unix_nano")));
        let stored = h.writer.records.lock().unwrap().len() as u64;
        assert_eq!(stored, r.written_records);
        // Not k6 output: `failed` (not retried), nothing written.
        let r = h
            .handle(s3_event("k6-results/notes.json", "e"), soon())
            .await
            .unwrap()
            .reports
            .remove(0);
        assert_eq!(r.outcome.map(Outcome::as_str), Some("failed"), "{r:?}");
        assert_eq!(r.failure_reason.as_deref(), Some("not_k6"));
        let e = r.error.as_deref().unwrap();
        assert!(
            e.starts_with("s3://b/k6-results/notes.json: not k6 output"),
            "{e}"
        );
        assert_eq!(h.writer.records.lock().unwrap().len() as u64, stored);
    }

    #[tokio::test]
    async fn transient_source_errors_ask_for_a_retry() {
        let (h, ..) = handler(cfg(&[]), Writer::default());
        let e = h
            .handle(s3_event("k6-results/flaky.json", "x"), soon())
            .await
            .unwrap_err();
        assert!(e.0.contains("SlowDown"));
    }

    #[tokio::test]
    async fn rejected_records_become_an_s3_dead_letter_object() {
        let (h, _, put, _) = handler(
            cfg(&[]),
            Writer {
                reject_404: true,
                ..Default::default()
            },
        );
        let resp = h
            .handle(
                serde_json::json!({"bucket":"b","key":"k6-results/run 1.json.gz"}),
                soon(),
            )
            .await
            .unwrap();
        let r = &resp.reports[0];
        assert!(r.rejected_records > 0);
        assert_eq!(r.written_measures + r.dead_lettered_measures, r.measures);
        let puts = put.dead_letters.lock().unwrap();
        assert_eq!(puts.len(), 1);
        let (bucket, key, body) = &puts[0];
        assert_eq!(bucket, "b");
        assert!(
            key.starts_with("k6-timestream-dead-letter/b/k6-results/run 1.json.gz"),
            "{key}"
        );
        assert!(
            !h.cfg.wants_key(key),
            "a dead letter never triggers the function"
        );
        assert_eq!(
            String::from_utf8_lossy(body).lines().count() as u64,
            r.dead_lettered
        );
        assert_eq!(
            r.dead_letter_location.as_deref(),
            Some(format!("s3://b/{key}").as_str())
        );
    }

    /// Runs an event and then every continuation the handler asked for.
    async fn run_chain(h: &H, inv: &Invoker, first: serde_json::Value) -> Vec<RunReport> {
        let mut reports = vec![h.handle(first, soon()).await.unwrap().reports.remove(0)];
        loop {
            let next = inv.0.lock().unwrap().pop();
            let Some((function, payload)) = next else {
                break;
            };
            assert_eq!(function, "fn");
            reports.push(h.handle(payload, soon()).await.unwrap().reports.remove(0));
        }
        reports
    }

    #[tokio::test]
    async fn work_budget_continues_without_losing_or_repeating() {
        let c = cfg(&[
            ("K6TS_WORK_BUDGET_SECONDS", "0.05"),
            ("K6TS_CONCURRENCY", "1"),
        ]);
        let (h, source, _, inv) = handler(
            c,
            Writer {
                delay: Duration::from_millis(20),
                ..Default::default()
            },
        );
        let reports = run_chain(&h, &inv, s3_event("k6-results/run+1.json.gz", "e1")).await;
        assert!(
            reports.len() >= 4,
            "≥ 3 continuations, got {}",
            reports.len()
        );
        let last = reports.last().unwrap();
        assert_eq!(last.outcome.map(Outcome::as_str), Some("complete"));
        assert_eq!(last.continuations as usize, reports.len() - 1);
        for r in &reports[..reports.len() - 1] {
            assert_eq!(r.outcome.map(Outcome::as_str), Some("continued"));
        }
        // Whole object, counted once.
        assert_eq!(last.written_measures, last.measures);
        assert_eq!(last.points, last.measures);
        assert_eq!(last.written_records, last.records);
        let w = h.writer.records.lock().unwrap();
        assert_eq!(w.len() as u64, last.records, "no request was sent twice");
        let mut seqs: Vec<u64> = w.iter().map(|(s, _)| *s).collect();
        seqs.dedup();
        assert_eq!(seqs, (0..last.batches).collect::<Vec<_>>());
        // Every link read the object the chain started on.
        assert!(source
            .opens
            .lock()
            .unwrap()
            .iter()
            .all(|o| o.etag.as_deref() == Some("e1")));
    }

    /// The requests of one uninterrupted run of `key` (same handler setup).
    async fn uninterrupted(key: &str, etag: &str) -> Vec<WriteRequest> {
        let (h, ..) = handler(cfg(&[]), Writer::default());
        let r = h.handle(s3_event(key, etag), soon()).await.unwrap();
        assert_eq!(r.reports[0].outcome, Some(Outcome::Complete));
        let mut reqs = h.writer.requests.lock().unwrap().clone();
        reqs.sort_by_key(|q| q.seq);
        reqs
    }

    fn budget_cfg() -> LambdaConfig {
        cfg(&[
            ("K6TS_WORK_BUDGET_SECONDS", "0.05"),
            ("K6TS_CONCURRENCY", "1"),
        ])
    }

    fn slow() -> Writer {
        Writer {
            delay: Duration::from_millis(20),
            ..Default::default()
        }
    }

    /// Continuations go on from their checkpoints: every link after the
    /// first reads the object from where the previous one stopped (ranged),
    /// the requests are exactly those of one run, each sent once, and no
    /// checkpoint is left behind.
    #[tokio::test]
    async fn continuations_resume_from_checkpoints_not_from_the_start() {
        for (key, etag, gzip) in [
            ("k6-results/run+1.json.gz", "e1", true),
            ("k6-results/run+1.json", "e2", false),
        ] {
            let (h, source, put, inv) = handler(budget_cfg(), slow());
            let reports = run_chain(&h, &inv, s3_event(key, etag)).await;
            let links = reports.len();
            assert!(links >= 4, "{key}: {links} links");
            let last = reports.last().unwrap();
            assert_eq!(last.outcome, Some(Outcome::Complete), "{last:?}");
            assert_eq!(last.written_measures, last.points);
            // Exactly the requests of one run, each once, in order.
            let mut sent = h.writer.requests.lock().unwrap().clone();
            sent.sort_by_key(|q| q.seq);
            assert!(
                sent == uninterrupted(key, etag).await,
                "{key}: requests differ from an uninterrupted run"
            );
            assert_eq!(last.batches, sent.len() as u64);
            // Conversion counters from the checkpoints, not recounted.
            assert_eq!(
                last.records,
                sent.iter().map(|q| q.records.len() as u64).sum::<u64>()
            );
            // Ranged reads after the first link; nothing skipped by
            // re-reading.
            // (A link whose checkpoint holds the rest of the input, read
            // ahead by the link before, does not open the object at all:
            // with this 1 MB object, every continuation.)
            let offsets = source.offsets.lock().unwrap().clone();
            assert!(offsets.len() <= links && offsets[0] == 0, "{offsets:?}");
            assert!(
                offsets[1..].iter().all(|o| *o > 0),
                "{key}: opens at {offsets:?}"
            );
            assert!(reports.iter().all(|r| r.batches_skipped == 0));
            // Inflated (or read) in total: about the object once.
            let size = reports[0].bytes_decompressed.max(1);
            let total: u64 = reports.iter().map(|r| r.bytes_decompressed).sum();
            assert_eq!(last.chain_bytes_decompressed, total);
            assert_eq!(
                last.chain_bytes_read,
                reports.iter().map(|r| r.bytes_read).sum::<u64>()
            );
            let whole = plain_len();
            eprintln!("{key}: {links} links inflated {total} bytes of a {whole}-byte object, opens at {offsets:?}");
            assert!(
                total < whole * 2,
                "{key}: {links} links inflated {total} bytes of a {whole}-byte object (first link {size})"
            );
            assert_eq!(last.gzip, gzip);
            // Each checkpoint was written, read by the next link, deleted.
            let log = put.log.lock().unwrap().clone();
            let puts = log.iter().filter(|l| l.starts_with("put ")).count();
            assert_eq!(puts, links - 1, "{log:?}");
            for l in log.iter().filter(|l| l.starts_with("put ")) {
                let k = &l[4..];
                assert!(k.starts_with("k6-timestream-state/b/k6-results/"), "{k}");
                assert!(
                    !h.cfg.wants_key(k),
                    "a checkpoint never triggers the function"
                );
                assert!(log.contains(&format!("get {k}")) && log.contains(&format!("delete {k}")));
            }
            assert!(
                put.objects.lock().unwrap().is_empty(),
                "checkpoints left: {log:?}"
            );
        }
    }

    /// `copies` runs of the fixture one after the other (copy k moved
    /// `copies - 1 - k` years back), gzip'd at the default level as k6
    /// does: big enough for access points and several links.
    fn bigger(copies: i32) -> Vec<u8> {
        let text = String::from_utf8(fixture_plain()).unwrap();
        let mut out = String::new();
        const AT: &str = "\"data\":{\"time\":\"";
        for k in 0..copies {
            for line in text.lines() {
                match line.find(AT) {
                    Some(i) => {
                        let y = i + AT.len();
                        let year: i32 = line[y..y + 4].parse().unwrap();
                        out += &format!(
                            "{}{:04}{}",
                            &line[..y],
                            year - (copies - 1 - k),
                            &line[y + 4..]
                        );
                    }
                    None => out += line,
                }
                out.push('\n');
            }
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, out.as_bytes()).unwrap();
        gz.finish().unwrap()
    }

    /// An object bigger than the read-ahead: continuations open it from
    /// their checkpoint's access point on (ranged reads), and the chain
    /// inflates it about once.
    #[tokio::test]
    async fn big_objects_are_read_on_with_ranged_reads() {
        let c = cfg(&[
            ("K6TS_WORK_BUDGET_SECONDS", "0.05"),
            ("K6TS_CONCURRENCY", "1"),
            ("K6TS_MAX_CONTINUATIONS", "500"),
            // Windows far smaller than the object (the default one would
            // hold all of its ~3,500 records: nothing to send before the
            // end of the input, so no continuation would read on).
            ("K6TS_GROUP_WINDOW", "300"),
        ]);
        let (h, source, put, inv) = handler(c, slow());
        let body = bigger(7);
        source.add("k6-results/big.json.gz", body.clone(), "e3");
        let reports = run_chain(&h, &inv, s3_event("k6-results/big.json.gz", "e3")).await;
        let last = reports.last().unwrap();
        assert_eq!(last.outcome, Some(Outcome::Complete), "{last:?}");
        assert_eq!(last.written_measures, last.points);
        let offsets = source.offsets.lock().unwrap().clone();
        assert!(offsets[1..].iter().all(|o| *o > 0), "{offsets:?}");
        assert!(offsets.len() >= 3, "ranged reads: {offsets:?}");
        let mut sent = h.writer.requests.lock().unwrap().clone();
        sent.sort_by_key(|q| q.seq);
        let (one, mut want) = serial_run(
            cfg(&[("K6TS_GROUP_WINDOW", "300")]),
            "k6-results/big.json.gz",
            body,
            "e3",
        )
        .await;
        want.sort_by_key(|q| q.seq);
        assert!(sent == want, "requests differ from an uninterrupted run");
        let size = one.bytes_decompressed;
        let total = last.chain_bytes_decompressed;
        assert!(
            total * 10 <= size * 11,
            "inflated {total} of {size} bytes over {} links",
            reports.len()
        );
        assert!(put.objects.lock().unwrap().is_empty());
    }

    fn plain_len() -> u64 {
        fixture_plain().len() as u64
    }

    /// A continuation whose checkpoint is missing or unusable (an event of
    /// an older version, a checkpoint that expired or was damaged) reads
    /// the object from its start and skips the confirmed requests: the
    /// same requests, each sent once.
    #[tokio::test]
    async fn without_a_usable_checkpoint_a_continuation_rereads_and_skips() {
        for damage in ["delete", "garble", "strip"] {
            let (h, _, put, inv) = handler(budget_cfg(), slow());
            let mut reports = vec![h
                .handle(s3_event("k6-results/run+1.json.gz", "e1"), soon())
                .await
                .unwrap()
                .reports
                .remove(0)];
            loop {
                let next = inv.0.lock().unwrap().pop();
                let Some((_, mut payload)) = next else { break };
                let at = payload["continuation"]["checkpoint"].clone();
                let at = (
                    at["bucket"].as_str().unwrap().to_owned(),
                    at["key"].as_str().unwrap().to_owned(),
                );
                match damage {
                    "delete" => {
                        put.objects.lock().unwrap().remove(&at);
                    }
                    "garble" => {
                        put.objects
                            .lock()
                            .unwrap()
                            .insert(at, b"\x1f\x8bnot a checkpoint".to_vec());
                    }
                    _ => {
                        payload["continuation"]
                            .as_object_mut()
                            .unwrap()
                            .remove("checkpoint");
                    }
                }
                reports.push(h.handle(payload, soon()).await.unwrap().reports.remove(0));
            }
            let last = reports.last().unwrap();
            assert_eq!(last.outcome, Some(Outcome::Complete), "{damage}: {last:?}");
            assert!(reports.len() >= 3, "{damage}");
            assert!(
                reports[1..].iter().all(|r| r.batches_skipped > 0),
                "{damage}: re-read and skipped"
            );
            let mut sent = h.writer.requests.lock().unwrap().clone();
            sent.sort_by_key(|q| q.seq);
            assert!(
                sent == uninterrupted("k6-results/run+1.json.gz", "e1").await,
                "{damage}: requests differ from an uninterrupted run"
            );
            assert_eq!(last.written_measures, last.points, "{damage}");
        }
    }

    /// A checkpoint that cannot be read for now (S3 throttling) fails the
    /// invocation for a retry, which goes on from the same checkpoint.
    #[tokio::test]
    async fn a_checkpoint_read_error_is_retried_from_the_same_checkpoint() {
        let (h, _, put, inv) = handler(budget_cfg(), slow());
        let first = h
            .handle(s3_event("k6-results/run+1.json.gz", "e1"), soon())
            .await
            .unwrap();
        assert_eq!(first.reports[0].outcome, Some(Outcome::Continued));
        let (_, payload) = inv.0.lock().unwrap().pop().unwrap();
        *put.failing_gets.lock().unwrap() = 1;
        let e = h.handle(payload.clone(), soon()).await.unwrap_err();
        assert!(e.0.contains("503"), "{}", e.0);
        assert_eq!(put.objects.lock().unwrap().len(), 1, "kept for the retry");
        let again = h.handle(payload, soon()).await.unwrap();
        assert_ne!(again.reports[0].outcome, Some(Outcome::Failed));
        assert_eq!(again.reports[0].batches_skipped, 0, "from the checkpoint");
        let mut reports = run_chain_rest(&h, &inv).await;
        if reports.is_empty() {
            reports.push(again.reports[0].clone());
        }
        let last = reports.last().unwrap();
        assert_eq!(last.outcome, Some(Outcome::Complete));
        assert_eq!(last.written_measures, last.points);
    }

    /// The continuations still queued (after a first link run by the test).
    async fn run_chain_rest(h: &H, inv: &Invoker) -> Vec<RunReport> {
        run_queued(h, inv, |n| n - 1, |_| {}).await
    }

    /// Runs the queued invocations until none is left, the next one at
    /// `pick(queued)`, each payload shown to `each` first; their reports.
    async fn run_queued(
        h: &H,
        inv: &Invoker,
        mut pick: impl FnMut(usize) -> usize,
        mut each: impl FnMut(&serde_json::Value),
    ) -> Vec<RunReport> {
        let mut reports = Vec::new();
        loop {
            let payload = {
                let mut q = inv.0.lock().unwrap();
                if q.is_empty() {
                    break;
                }
                let i = pick(q.len());
                q.swap_remove(i).1
            };
            each(&payload);
            assert!(reports.len() < 400, "the invocations do not end");
            reports.push(h.handle(payload, soon()).await.unwrap().reports.remove(0));
        }
        reports
    }

    /// [`run_queued`] in an order shuffled by `seed`.
    async fn run_shuffled(
        h: &H,
        inv: &Invoker,
        seed: u64,
        each: impl FnMut(&serde_json::Value),
    ) -> Vec<RunReport> {
        let mut rng = fastrand::Rng::with_seed(seed);
        run_queued(h, inv, |n| rng.usize(..n), each).await
    }

    /// The one complete (merged) report among a set's `reports`.
    fn the_merged(reports: &[RunReport]) -> &RunReport {
        let merged: Vec<&RunReport> = reports
            .iter()
            .filter(|r| r.outcome == Some(Outcome::Complete))
            .collect();
        assert_eq!(merged.len(), 1, "{reports:?}");
        merged[0]
    }

    /// The records of `reqs` as sorted texts: what was written, in any
    /// request order.
    fn sorted_records(reqs: &[WriteRequest]) -> Vec<String> {
        let mut v: Vec<String> = reqs
            .iter()
            .flat_map(|q| q.records.iter().map(|r| format!("{r:?}")))
            .collect();
        v.sort();
        v
    }

    /// An uninterrupted run of `body` as `key` with `c`: its report and
    /// the requests it wrote.
    async fn serial_run(
        c: LambdaConfig,
        key: &str,
        body: Vec<u8>,
        etag: &str,
    ) -> (RunReport, Vec<WriteRequest>) {
        let (h, source, ..) = handler(c, Writer::default());
        source.add(key, body, etag);
        let report = h
            .handle(s3_event(key, etag), soon())
            .await
            .unwrap()
            .reports
            .remove(0);
        let requests = h.writer.requests.lock().unwrap().clone();
        (report, requests)
    }

    /// A big object fans out: the S3 event indexes it and starts the
    /// first wave; the segment events, run in a shuffled order, each
    /// start their successor; the last one merges. Every record of a
    /// serial run is written once, nothing else; segments read ranges;
    /// the state is gone at the end; the inflation stays near 2×.
    #[tokio::test]
    async fn a_big_object_fans_out_into_segments_that_merge() {
        let c = cfg(&[
            ("K6TS_SEGMENT_BYTES", "1048576"),
            ("K6TS_MAX_PARALLEL", "3"),
        ]);
        let (h, source, put, inv) = handler(c, Writer::default());
        let body = bigger(7);
        let key = "k6-results/big.json.gz";
        source.add(key, body.clone(), "e3");
        let first = h
            .handle(s3_event(key, "e3"), soon())
            .await
            .unwrap()
            .reports
            .remove(0);
        assert_eq!(first.outcome, Some(Outcome::Continued), "{first:?}");
        let n = first.segments;
        assert!(n >= 4, "{n} segments");
        assert_eq!(inv.0.lock().unwrap().len(), 3, "the first wave");
        let mut ran = Vec::new();
        let reports = run_shuffled(&h, &inv, 7, |payload| {
            ran.push(payload["segment"]["number"].as_u64().unwrap());
            assert_eq!(payload["segment"]["etag"], "e3");
        })
        .await;
        ran.sort_unstable();
        assert_eq!(ran, (0..n).collect::<Vec<_>>(), "each segment run once");
        let m = the_merged(&reports);
        assert_eq!(m.segments, n);
        // The records of one serial run, each written once.
        let sent = h.writer.requests.lock().unwrap().clone();
        let (serial, want) = serial_run(cfg(&[]), key, body, "e3").await;
        assert!(
            sorted_records(&sent) == sorted_records(&want),
            "records differ from a serial run"
        );
        assert_eq!(
            (m.points, m.records, m.written_measures, m.lines),
            (
                serial.points,
                serial.records,
                serial.written_measures,
                serial.lines
            )
        );
        assert_eq!(m.nudged, serial.nudged);
        // The index pass and each segment open once; segments after the
        // first read ranges (segment 1's look-back may reach the start).
        let offsets = source.offsets.lock().unwrap().clone();
        assert_eq!(offsets.len() as u64, n + 1, "{offsets:?}");
        assert!(
            offsets.iter().filter(|o| **o > 0).count() as u64 >= n - 2,
            "{offsets:?}"
        );
        let whole = serial.bytes_decompressed;
        let total = m.chain_bytes_decompressed;
        eprintln!(
            "{n} segments inflated {total} bytes of a {whole}-byte object: index {}, segments {:?}",
            first.bytes_decompressed,
            reports
                .iter()
                .map(|r| (r.bytes_decompressed, r.lines, r.points))
                .collect::<Vec<_>>()
        );
        // Index pass + segments + look-backs + what each reads past its
        // end: measured 2.53× with 1 MiB segments of this 7.5 MB object
        // (the read past a segment's end is still ~0.4 MB; see BENCHMARKS.md).
        assert!(total * 10 <= whole * 27, "inflated {total} of {whole}");
        assert!(put.objects.lock().unwrap().is_empty(), "state left");
        // A finished set's segment event again: no plan, nothing written.
        let again = fanout::segment_event(
            &ObjectRef {
                bucket: "b".into(),
                key: key.into(),
                version_id: None,
                etag: Some("e3".into()),
            },
            &StoredObject {
                bucket: "b".into(),
                key: fanout::index_key(
                    "k6-timestream-state/",
                    &ObjectRef {
                        bucket: "b".into(),
                        key: key.into(),
                        version_id: None,
                        etag: Some("e3".into()),
                    },
                ),
            },
            1,
        );
        let before = h.writer.requests.lock().unwrap().len();
        let r = h
            .handle(serde_json::to_value(&again).unwrap(), soon())
            .await
            .unwrap()
            .reports
            .remove(0);
        assert_eq!(r.outcome, Some(Outcome::Failed));
        assert!(r.error.as_deref().unwrap().contains("no plan"), "{r:?}");
        assert_eq!(h.writer.requests.lock().unwrap().len(), before);
    }

    /// Segments whose time runs out (a work budget far shorter than the
    /// writes take) wrap up and go on in parts, run in a shuffled order
    /// with the other segments: every record of a serial run is written
    /// exactly once, the merged report counts each segment once and the
    /// state is gone at the end.
    #[tokio::test]
    async fn segments_out_of_time_go_on_in_parts() {
        let c = cfg(&[
            ("K6TS_SEGMENT_BYTES", "1048576"),
            ("K6TS_MAX_PARALLEL", "2"),
            ("K6TS_WORK_BUDGET_SECONDS", "0.3"),
            ("K6TS_MAX_CONTINUATIONS", "500"),
            ("K6TS_CONCURRENCY", "1"),
            // Requests as the records come: the writes pace the segment.
            ("K6TS_GROUP_WINDOW", "0"),
        ]);
        let writer = Writer {
            delay: Duration::from_millis(100),
            ..Writer::default()
        };
        let (h, source, put, inv) = handler(c, writer);
        let body = bigger(4);
        let key = "k6-results/slow.json.gz";
        source.add(key, body.clone(), "e4");
        let first = h
            .handle(s3_event(key, "e4"), soon())
            .await
            .unwrap()
            .reports
            .remove(0);
        let n = first.segments;
        assert!(n >= 3, "{n} segments: {first:?}");
        let mut parts = 0u32;
        let reports = run_shuffled(&h, &inv, 11, |payload| {
            if payload["segment"]["start_line"].is_u64() {
                parts += 1;
                assert!(payload["segment"]["part"].as_u64().unwrap() >= 1);
            }
        })
        .await;
        assert!(
            parts >= 2,
            "{parts} later parts: the budget did stop segments: {:?}",
            reports
                .iter()
                .map(|r| (r.lines, r.batches, r.seconds))
                .collect::<Vec<_>>()
        );
        let m = the_merged(&reports);
        assert_eq!(m.segments, n);
        let sent = sorted_records(&h.writer.requests.lock().unwrap());
        let (serial, want) = serial_run(cfg(&[("K6TS_GROUP_WINDOW", "0")]), key, body, "e4").await;
        let want = sorted_records(&want);
        assert!(
            sent == want,
            "records differ from a serial run ({} sent, {} serial)",
            sent.len(),
            want.len()
        );
        assert_eq!(
            (m.points, m.records, m.written_measures, m.lines, m.nudged),
            (
                serial.points,
                serial.records,
                serial.written_measures,
                serial.lines,
                serial.nudged
            )
        );
        assert!(put.objects.lock().unwrap().is_empty(), "state left");
    }

    /// A segment that would need more parts than K6TS_MAX_CONTINUATIONS
    /// allows fails, named with its lines; the set is merged as failed.
    #[tokio::test]
    async fn a_segment_out_of_parts_fails_named() {
        let c = cfg(&[
            ("K6TS_SEGMENT_BYTES", "1048576"),
            ("K6TS_MAX_PARALLEL", "8"),
            ("K6TS_WORK_BUDGET_SECONDS", "0.3"),
            ("K6TS_MAX_CONTINUATIONS", "0"),
            ("K6TS_CONCURRENCY", "1"),
            ("K6TS_GROUP_WINDOW", "0"),
        ]);
        let writer = Writer {
            delay: Duration::from_millis(200),
            ..Writer::default()
        };
        let (h, source, _put, inv) = handler(c, writer);
        let key = "k6-results/too-slow.json.gz";
        source.add(key, bigger(4), "e5");
        let first = h.handle(s3_event(key, "e5"), soon()).await.unwrap();
        assert_eq!(first.reports[0].outcome, Some(Outcome::Continued));
        let reports = run_queued(
            &h,
            &inv,
            |n| n - 1,
            |payload| assert!(payload["segment"]["part"].as_u64().unwrap_or(0) == 0),
        )
        .await;
        let n = first.reports[0].segments;
        let m = reports
            .into_iter()
            .rfind(|r| r.segments == n)
            .expect("a merged report");
        assert_eq!(m.outcome, Some(Outcome::Failed), "{m:?}");
        let err = m.error.unwrap_or_default();
        assert!(err.contains("ran out of time in 1 part ("), "{err}");
        assert!(err.contains("segment 0 (lines 1-"), "{err}");
    }

    /// A segment the sink refuses fails; the set is merged as failed with
    /// that segment's lines named and its state kept; re-running the
    /// segment alone completes the set and deletes the state.
    #[tokio::test]
    async fn a_failed_segment_is_named_and_can_be_rerun_alone() {
        let c = cfg(&[
            ("K6TS_SEGMENT_BYTES", "1048576"),
            ("K6TS_MAX_PARALLEL", "8"),
        ]);
        let (h, source, put, inv) = handler(c, Writer::default());
        let key = "k6-results/big.json.gz";
        source.add(key, bigger(5), "e4");
        h.handle(s3_event(key, "e4"), soon()).await.unwrap();
        let queued: Vec<serde_json::Value> =
            inv.0.lock().unwrap().drain(..).map(|(_, p)| p).collect();
        assert!(queued.len() >= 3);
        // Segment 1's plan entry damaged for its first run: a position
        // that does not decode fails the segment for good.
        let ix = queued[1]["segment"]["index"]["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let at = ("b".to_owned(), ix.clone());
        let good = put.objects.lock().unwrap()[&at].clone();
        let mut plan: StoredPlan = serde_json::from_slice(&good).unwrap();
        plan.segments[1].from = Some("zz".into());
        put.objects
            .lock()
            .unwrap()
            .insert(at.clone(), serde_json::to_vec(&plan).unwrap());
        let r1 = h
            .handle(queued[1].clone(), soon())
            .await
            .unwrap()
            .reports
            .remove(0);
        assert_eq!(r1.outcome, Some(Outcome::Failed));
        assert!(r1.error.as_deref().unwrap().contains("segment 1"), "{r1:?}");
        put.objects.lock().unwrap().insert(at.clone(), good);
        // The others run; the set is not complete without segment 1.
        let mut last = None;
        for p in queued
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, p)| p)
        {
            last = Some(h.handle(p.clone(), soon()).await.unwrap().reports.remove(0));
        }
        assert_eq!(last.unwrap().outcome, Some(Outcome::Continued));
        assert!(put.objects.lock().unwrap().contains_key(&at), "state kept");
        // Re-run alone: completes and cleans up.
        let again = h
            .handle(queued[1].clone(), soon())
            .await
            .unwrap()
            .reports
            .remove(0);
        assert_eq!(again.outcome, Some(Outcome::Complete), "{again:?}");
        assert_eq!(again.written_measures, again.points);
        assert!(put.objects.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn chain_length_is_bounded() {
        let c = cfg(&[
            ("K6TS_WORK_BUDGET_SECONDS", "0.05"),
            ("K6TS_CONCURRENCY", "1"),
            ("K6TS_MAX_CONTINUATIONS", "1"),
        ]);
        let (h, _, _, inv) = handler(
            c,
            Writer {
                delay: Duration::from_millis(20),
                ..Default::default()
            },
        );
        let reports = run_chain(&h, &inv, s3_event("k6-results/run+1.json.gz", "e1")).await;
        assert_eq!(reports.len(), 2);
        let last = &reports[1];
        assert_eq!(last.outcome.map(Outcome::as_str), Some("chain_limit"));
        assert!(last
            .error
            .as_deref()
            .unwrap()
            .contains("K6TS_MAX_CONTINUATIONS"));
        assert!(last.written_measures < last.measures);
    }

    #[tokio::test]
    async fn no_time_at_all_fails_instead_of_looping() {
        let (h, _, _, inv) = handler(cfg(&[]), Writer::default());
        let past = SystemTime::now() - Duration::from_secs(1);
        let r = h
            .handle(s3_event("k6-results/run+1.json.gz", "e1"), past)
            .await
            .unwrap()
            .reports
            .remove(0);
        assert_eq!(r.outcome.map(Outcome::as_str), Some("failed"), "{r:?}");
        assert!(inv.0.lock().unwrap().is_empty());
    }

    fn batch_results(a: Answer) -> Vec<(String, String, String)> {
        let Answer::Batch(b) = a else {
            panic!("not a Batch answer: {a:?}")
        };
        assert_eq!(b.treat_missing_keys_as.as_deref(), Some("PermanentFailure"));
        b.results
            .into_iter()
            .map(|r| {
                (
                    r.task_id.unwrap(),
                    r.result_code.unwrap(),
                    r.result_string.unwrap(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn batch_tasks_are_answered_one_by_one() {
        let (h, source, _, inv) = handler(cfg(&[]), Writer::default());
        let ev = serde_json::json!({
            "invocationSchemaVersion": "2.0", "invocationId": "inv-1",
            "job": {"id": "job-1", "userArguments": {"k": "v"}},
            "tasks": [
                {"taskId": "ok", "s3Bucket": "b", "s3Key": "k6-results/run+1.json.gz", "s3VersionId": null},
                {"taskId": "flaky", "s3Bucket": "b", "s3Key": "k6-results/flaky.json"},
                {"taskId": "gone", "s3Bucket": "b", "s3Key": "k6-results/gone.json"},
                {"taskId": "notes", "s3Bucket": "b", "s3Key": "k6-results/notes.txt"},
                {"taskId": "nobucket", "s3Key": "k6-results/x.json"}
            ]
        });
        let a = h
            .answer(ev, soon())
            .await
            .expect("a retryable task does not fail the invocation");
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(
            (&json["invocationSchemaVersion"], &json["invocationId"]),
            (&serde_json::json!("2.0"), &serde_json::json!("inv-1"))
        );
        let results = batch_results(a);
        let codes: Vec<(&str, &str)> = results
            .iter()
            .map(|(t, c, _)| (t.as_str(), c.as_str()))
            .collect();
        assert_eq!(
            codes,
            [
                ("ok", "Succeeded"),
                ("flaky", "TemporaryFailure"),
                ("gone", "PermanentFailure"),
                ("notes", "Succeeded"),
                ("nobucket", "PermanentFailure"),
            ]
        );
        let written = h.writer.records.lock().unwrap().len();
        assert!(written > 0);
        assert!(
            results[0].2.starts_with("complete: ")
                && results[0]
                    .2
                    .contains(" measures written, 0 records dead-lettered"),
            "{}",
            results[0].2
        );
        assert!(results[1].2.contains("SlowDown"), "{}", results[1].2);
        assert!(results[2].2.starts_with("not_found: "), "{}", results[2].2);
        assert!(results[3].2.starts_with("skipped: "), "{}", results[3].2);
        // The key was decoded, no ETag was asked for (tasks carry none).
        let opens = source.opens.lock().unwrap();
        assert_eq!(opens[0].key, "k6-results/run 1.json.gz");
        assert_eq!(opens[0].etag, None);
        assert!(inv.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_batch_task_handed_to_a_continuation_succeeds_and_says_so() {
        let c = cfg(&[
            ("K6TS_WORK_BUDGET_SECONDS", "0.05"),
            ("K6TS_CONCURRENCY", "1"),
        ]);
        let (h, _, _, inv) = handler(
            c,
            Writer {
                delay: Duration::from_millis(20),
                ..Default::default()
            },
        );
        let ev = serde_json::json!({
            "invocationSchemaVersion": "1.0", "invocationId": "inv-2", "job": {"id": "j"},
            "tasks": [{"taskId": "t", "s3BucketArn": "arn:aws:s3:::b", "s3Key": "k6-results/run+1.json.gz", "s3VersionId": null}]
        });
        let results = batch_results(h.answer(ev, soon()).await.unwrap());
        assert_eq!(results[0].1, "Succeeded");
        assert!(
            results[0].2.starts_with("continued in a new invocation"),
            "{}",
            results[0].2
        );
        // The continuation is an ordinary one (answered with reports), and
        // pins the object the task named.
        let (_, payload) = inv.0.lock().unwrap().pop().expect("a continuation");
        assert_eq!(payload["continuation"]["key"], "k6-results/run 1.json.gz");
        assert_eq!(payload["continuation"]["etag"], "e1");
        let Answer::Reports(r) = h.answer(payload, soon()).await.unwrap() else {
            panic!("a continuation is answered with reports")
        };
        assert!(r.reports[0].outcome.is_some());
    }

    #[tokio::test]
    async fn other_events_keep_the_reports_answer() {
        let (h, ..) = handler(cfg(&[]), Writer::default());
        let eb = serde_json::json!({
            "version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "k6-results/run 1.json.gz", "etag": "e1"}}
        });
        let a = h.answer(eb, soon()).await.unwrap();
        let v = serde_json::to_value(&a).unwrap();
        let r: Vec<RunReport> = serde_json::from_value(v["reports"].clone()).unwrap();
        assert_eq!(r[0].outcome.map(Outcome::as_str), Some("complete"), "{r:?}");
        assert_eq!(r[0].input, "s3://b/k6-results/run 1.json.gz");
        let bad =
            serde_json::to_value(h.answer(serde_json::json!([]), soon()).await.unwrap()).unwrap();
        assert_eq!(bad["reports"][0]["outcome"], "failed");
        // `handle` answers with reports only: a Batch job is refused there.
        let batch =
            serde_json::json!({"invocationSchemaVersion": "1.0", "invocationId": "i", "tasks": []});
        let r = h.handle(batch, soon()).await.unwrap();
        assert_eq!(r.reports[0].outcome.map(Outcome::as_str), Some("failed"));
    }
}
