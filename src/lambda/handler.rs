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

/// Time left until `deadline`. Lambda sends the deadline as epoch
/// milliseconds; some local runtime emulators send the remaining duration
/// in that header instead (a "deadline" in January 1970). A deadline
/// before 2001 cannot be meant as an instant, so it is read as a duration.
pub fn time_left(deadline: SystemTime, now: SystemTime) -> Duration {
    match deadline.duration_since(now) {
        Ok(left) => left,
        Err(_) => {
            let since_epoch = deadline
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            if since_epoch < Duration::from_secs(1_000_000_000) {
                since_epoch
            } else {
                Duration::ZERO
            }
        }
    }
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
        let remaining = time_left(deadline, SystemTime::now());
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
            if first && next == job.skip_batches && res.report.batches_written == 0 {
                // Not one new request fit before the safety margin: a
                // continuation would do the same. Report it instead of
                // burning the chain.
                report.outcome = Some("failed".into());
                report.error = Some(format!(
                    "no time to write anything before the deadline margin ({} s left at start); raise the timeout or lower K6TS_SAFETY_MARGIN_SECONDS",
                    remaining.as_secs()
                ));
                tracing::error!("no progress possible in this invocation");
            } else if job.attempt >= cfg.max_continuations {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::config::LambdaConfig;
    use crate::model::WriteRequest;
    use crate::s3::OpenedObject;
    use crate::writer::service::{RejectedRecord, WriteError};
    use std::collections::HashMap;
    use std::sync::Mutex;

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

    impl RecordsWriter for Writer {
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
        assert_eq!(r.outcome.as_deref(), Some("complete"), "{r:?}");
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
            .map(|r| r.outcome.clone().unwrap())
            .collect();
        assert_eq!(outcomes, ["skipped", "replaced", "not_found", "skipped"]);
        assert!(h.writer.records.lock().unwrap().is_empty());
        let bad = h
            .handle(serde_json::json!({"nope": 1}), soon())
            .await
            .unwrap();
        assert_eq!(bad.reports[0].outcome.as_deref(), Some("failed"));
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
        assert_eq!(last.outcome.as_deref(), Some("complete"));
        assert_eq!(last.continuations as usize, reports.len() - 1);
        for r in &reports[..reports.len() - 1] {
            assert_eq!(r.outcome.as_deref(), Some("continued"));
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
        assert_eq!(last.outcome.as_deref(), Some("chain_limit"));
        assert!(last
            .error
            .as_deref()
            .unwrap()
            .contains("K6TS_MAX_CONTINUATIONS"));
        assert!(last.written_measures < last.measures);
    }

    #[test]
    fn deadline_as_instant_or_as_duration() {
        let now = SystemTime::now();
        assert_eq!(
            time_left(now + Duration::from_secs(30), now),
            Duration::from_secs(30)
        );
        // An emulator's "600000 ms" header.
        assert_eq!(
            time_left(SystemTime::UNIX_EPOCH + Duration::from_millis(600_000), now),
            Duration::from_secs(600)
        );
        assert_eq!(time_left(now - Duration::from_secs(5), now), Duration::ZERO);
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
        assert_eq!(r.outcome.as_deref(), Some("failed"), "{r:?}");
        assert!(inv.0.lock().unwrap().is_empty());
    }

    #[test]
    fn margin_is_capped_by_the_time_left() {
        assert_eq!(
            effective_margin(Duration::from_secs(60), Duration::from_secs(900)),
            Duration::from_secs(60)
        );
        assert_eq!(
            effective_margin(Duration::from_secs(60), Duration::from_secs(30)),
            Duration::from_millis(7500)
        );
    }
}
