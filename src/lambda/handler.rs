//! The handler: wiring only, generic over its I/O (object source, sink,
//! object put for dead letters, async self-invoke), so it runs the same
//! under the Lambda runtime and in unit tests without a network.

use super::config::LambdaConfig;
use super::continuation::continuation_event;
use super::decide::{decide, Decision, Facts};
use super::event::{parse_event, Job};
use super::invoke::Invoker;
use super::plan::{plan, time_left, Plan};
use crate::core::convert::ConvertOptions;
use crate::core::input::InputOptions;
use crate::core::pipeline::PipelineOptions;
use crate::core::report::{Outcome, RunReport};
use crate::ingest::{ingest, Failure, IngestResult, Live, Sink};
use crate::sinks::dead_letter::s3::S3DeadLetterSink;
use crate::sinks::driver::{WriterConfig, DEFAULT_RETRY_BUDGET};
use crate::sinks::retry::RetryPolicy;
use crate::sinks::timestream::{Batcher, WriteRequest};
use crate::sinks::Service;
use crate::sources::s3::ObjectPut;
use crate::sources::{ObjectRef, ObjectSource, OpenedObject, SourceError};
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
    W: Service<WriteRequest>,
    P: ObjectPut + Clone,
    I: Invoker,
{
    pub async fn handle(
        &self,
        payload: serde_json::Value,
        deadline: SystemTime,
    ) -> Result<Response, RetryableError> {
        let started = Instant::now();
        let remaining = time_left(deadline, SystemTime::now());
        let deadline = started + remaining;
        let jobs = match parse_event(payload) {
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
            match self
                .process(job, started, deadline, i == 0)
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
        let opened = match self.source.open(&obj).await {
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
        let now = Instant::now();
        let plan = plan(
            deadline.saturating_duration_since(now),
            now.duration_since(started),
            cfg.safety_margin,
            cfg.work_budget,
            cfg.request_timeout,
        );
        let res = self.ingest_object(&job, &obj, opened, now, &plan).await;
        let mut report = RunReport {
            version_id: pinned.version_id.clone(),
            ..res.report
        };
        report.add_carried(&job.carried);
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
        match decide(&facts) {
            Decision::Retry => {
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
                let ev = continuation_event(&pinned, next, job.attempt + 1, &report);
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
        start: Instant,
        plan: &Plan,
    ) -> IngestResult {
        let cfg = &self.cfg;
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
        };
        let wcfg = WriterConfig {
            concurrency: cfg.concurrency,
            request_timeout: plan.request_timeout,
            retry: RetryPolicy::default(),
            retry_budget: DEFAULT_RETRY_BUDGET,
            skip_batches: job.skip_batches,
            hard_deadline: Some(start + plan.last_retry),
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
            encoder: Batcher::new(cfg.model, cfg.collision_window_secs),
            service: self.writer.clone(),
            dead_letters: dlq,
            config: wcfg,
        };
        let body = tokio_util::io::SyncIoBridge::new(opened.body);
        ingest(body, obj.url(), popts, sink, live, stop).await
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
    use crate::sinks::{RejectedRecord, WriteError};
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
    }

    impl ObjectSource for Arc<Source> {
        async fn open(&self, obj: &ObjectRef) -> Result<OpenedObject, SourceError> {
            self.opens.lock().unwrap().push(obj.clone());
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
            Ok(OpenedObject {
                body: Box::new(std::io::Cursor::new(o.body.clone())),
                size: Some(o.body.len() as u64),
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
        calls: Mutex<u64>,
        reject_404: bool,
        delay: Duration,
    }

    impl Service<WriteRequest> for Writer {
        async fn write(&self, req: &WriteRequest) -> Result<(), WriteError> {
            tokio::time::sleep(self.delay).await;
            *self.calls.lock().unwrap() += 1;
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

    #[derive(Default, Clone)]
    struct Put(Arc<Mutex<Puts>>);

    impl ObjectPut for Put {
        async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), String> {
            self.0
                .lock()
                .unwrap()
                .push((bucket.into(), key.into(), body));
            Ok(())
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

    fn handler(cfg: LambdaConfig, writer: Writer) -> (H, Arc<Source>, Put, Arc<Invoker>) {
        let source = Arc::new(Source::default());
        source.objects.lock().unwrap().insert(
            "k6-results/run 1.json.gz".into(),
            Obj {
                body: fixture(),
                etag: "e1".into(),
                version: None,
            },
        );
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
        assert!(put.0.lock().unwrap().is_empty() && inv.0.lock().unwrap().is_empty());
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
            source.objects.lock().unwrap().insert(
                key.into(),
                Obj {
                    body,
                    etag: "e".into(),
                    version: None,
                },
            );
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
        let puts = put.0.lock().unwrap();
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
}
