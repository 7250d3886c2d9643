//! Sends a sink's requests with bounded concurrency, retries, request
//! splitting and a dead-letter sink, accounting for every measure. The
//! same driver serves every sink: what differs is behind
//! [`Request`] and [`Service`]; the retry decisions are [`super::retry`]'s.
//!
//! Backpressure: the converter runs on a blocking thread and hands requests
//! over a channel of `concurrency` slots; the driver takes one only when a
//! send slot is free, so at most `2 × concurrency` requests exist at once
//! and memory stays flat whatever the input size.

use super::dead_letter::{DeadLetter, DeadLetterSink, Kind};
use super::retry::{classify, Action, RetryBudget, RetryPolicy};
use super::{RejectedRecord, Request, Service, WriteError};
use crate::core::report::RunReport;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Requests in flight at most, by default and at the most.
pub const DEFAULT_CONCURRENCY: usize = 16;
pub const MAX_CONCURRENCY: usize = 1024;
/// Per-attempt request timeout.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 20;
/// Retries allowed across one run.
pub const DEFAULT_RETRY_BUDGET: u64 = 10_000;

/// Checks a concurrency setting (CLI flag or environment variable).
pub fn check_concurrency(n: usize) -> Result<usize, String> {
    if (1..=MAX_CONCURRENCY).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "expected a number from 1 to {MAX_CONCURRENCY}, got {n}"
        ))
    }
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// WriteRecords calls in flight at most.
    pub concurrency: usize,
    /// Per attempt.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Retries per run, across all requests.
    pub retry_budget: u64,
    /// Requests with `seq` below this were confirmed by an earlier run
    /// (Lambda continuation): they are not sent.
    pub skip_batches: u64,
    /// No retry sleeps past this instant: a request that would need one is
    /// dead-lettered instead (the Lambda's hard stop).
    pub hard_deadline: Option<Instant>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            retry: RetryPolicy::default(),
            retry_budget: DEFAULT_RETRY_BUDGET,
            skip_batches: 0,
            hard_deadline: None,
        }
    }
}

/// Live counters (progress display, Lambda logs).
#[derive(Debug, Default)]
pub struct WriteStats {
    pub written_records: AtomicU64,
    pub written_measures: AtomicU64,
    pub rejected_records: AtomicU64,
    pub rejected_measures: AtomicU64,
    pub retries: AtomicU64,
    pub splits: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub dead_lettered_measures: AtomicU64,
    pub batches_written: AtomicU64,
    pub batches_skipped: AtomicU64,
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}
fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl WriteStats {
    /// Copies the counters into `r` (adding to what it carries).
    pub fn merge_into(&self, r: &mut RunReport) {
        r.written_records += get(&self.written_records);
        r.written_measures += get(&self.written_measures);
        r.rejected_records += get(&self.rejected_records);
        r.rejected_measures += get(&self.rejected_measures);
        r.retries += get(&self.retries);
        r.splits += get(&self.splits);
        r.dead_lettered += get(&self.dead_lettered);
        r.dead_lettered_measures += get(&self.dead_lettered_measures);
        r.batches_written += get(&self.batches_written);
        r.batches_skipped += get(&self.batches_skipped);
    }
}

/// What the driver reports besides the counters.
#[derive(Debug)]
pub struct DriveOutcome<R> {
    /// The seq after the last request taken from the channel (sent or
    /// skipped). Every request before it is finished: written or
    /// dead-lettered. A continuation starts here.
    pub next_seq: u64,
    /// After a stop: the requests that were queued in the channel, in
    /// order (built, never sent; the first has seq `next_seq`).
    pub unsent: Vec<R>,
    /// Rejection reasons (digits folded to `N` so they aggregate).
    pub rejected_reasons: BTreeMap<String, u64>,
    /// Why the run was aborted (missing table, access denied, …).
    pub fatal: Option<String>,
    /// The driver stopped taking requests because `stop` said so.
    pub stopped: bool,
    /// A dead letter could not be stored (then the report must say so).
    pub dead_letter_error: Option<String>,
}

impl<R> Default for DriveOutcome<R> {
    fn default() -> Self {
        DriveOutcome {
            next_seq: 0,
            unsent: Vec::new(),
            rejected_reasons: BTreeMap::new(),
            fatal: None,
            stopped: false,
            dead_letter_error: None,
        }
    }
}

struct Ctx<W, D> {
    writer: Arc<W>,
    dlq: Arc<D>,
    cfg: WriterConfig,
    budget: RetryBudget,
    stats: Arc<WriteStats>,
    input: String,
    reasons: Mutex<BTreeMap<String, u64>>,
    dlq_error: Mutex<Option<String>>,
}

/// Folds digit runs so reasons with timestamps/versions aggregate.
pub fn reason_key(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len().min(200));
    let mut in_digits = false;
    for c in reason.chars().take(200) {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

/// Takes requests from `rx` until it closes, `stop()` returns true, or a
/// fatal error; sends them with at most `cfg.concurrency` in flight; waits
/// for all in-flight requests before returning. On a stop the channel is
/// closed (the converter's next send fails and hands its request back to
/// it) and what is queued is returned unsent; on a fatal error `rx` is
/// dropped. Either way the converter stops early.
pub async fn drive<R, W, D>(
    mut rx: mpsc::Receiver<R>,
    writer: Arc<W>,
    dlq: Arc<D>,
    cfg: WriterConfig,
    stats: Arc<WriteStats>,
    input: String,
    stop: &(dyn Fn() -> bool + Send + Sync),
) -> DriveOutcome<R>
where
    R: Request,
    W: Service<R>,
    D: DeadLetterSink,
{
    let concurrency = cfg.concurrency.max(1);
    let ctx = Arc::new(Ctx {
        writer,
        dlq,
        budget: RetryBudget::new(cfg.retry_budget),
        cfg,
        stats,
        input,
        reasons: Mutex::new(BTreeMap::new()),
        dlq_error: Mutex::new(None),
    });
    let mut set: JoinSet<Option<String>> = JoinSet::new();
    let mut out = DriveOutcome::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if out.fatal.is_some() {
            break;
        }
        if stop() {
            // No request is taken any more: the caller continues from
            // `next_seq`, with the queued ones first (they are built, and a
            // resumed converter does not build them again).
            rx.close();
            while let Some(req) = rx.recv().await {
                out.unsent.push(req);
            }
            out.stopped = !out.unsent.is_empty();
            break;
        }
        tokio::select! {
            biased;
            Some(done) = set.join_next(), if !set.is_empty() => {
                if let Some(f) = done.unwrap_or_else(|e| Some(format!("writer task failed: {e}"))) {
                    out.fatal.get_or_insert(f);
                }
            }
            req = rx.recv(), if set.len() < concurrency => {
                let Some(req) = req else { break };
                out.next_seq = req.seq() + 1;
                if req.seq() < ctx.cfg.skip_batches {
                    add(&ctx.stats.batches_skipped, 1);
                    continue;
                }
                let ctx = ctx.clone();
                set.spawn(async move { process(&ctx, req).await });
            }
            _ = tick.tick() => {}
        }
    }
    drop(rx);
    while let Some(done) = set.join_next().await {
        if let Some(f) = done.unwrap_or_else(|e| Some(format!("writer task failed: {e}"))) {
            out.fatal.get_or_insert(f);
        }
    }
    out.rejected_reasons = std::mem::take(&mut *ctx.reasons.lock().unwrap());
    out.dead_letter_error = ctx.dlq_error.lock().unwrap().take();
    out
}

/// Sends one request to completion; returns a fatal error message if the
/// run must stop.
async fn process<R: Request, W: Service<R>, D: DeadLetterSink>(
    ctx: &Ctx<W, D>,
    req: R,
) -> Option<String> {
    let seq = req.seq();
    let fatal = Box::pin(send(ctx, req)).await;
    add(&ctx.stats.batches_written, 1);
    if let Some(f) = &fatal {
        tracing::error!(batch = seq, error = %f, "aborting");
    }
    fatal
}

async fn dead_letter<W, D: DeadLetterSink>(ctx: &Ctx<W, D>, letters: Vec<DeadLetter>) {
    let n = letters.len() as u64;
    let m: u64 = letters.iter().map(|l| l.measures).sum();
    if let Err(e) = ctx.dlq.put(letters).await {
        tracing::error!(error = %e, "dead-letter sink failed");
        ctx.dlq_error.lock().unwrap().get_or_insert(e);
    }
    add(&ctx.stats.dead_lettered, n);
    add(&ctx.stats.dead_lettered_measures, m);
}

fn letters_for<R: Request>(input: &str, req: &R, kind: Kind, reason: &str) -> Vec<DeadLetter> {
    (0..req.records().len())
        .map(|i| letter(input, req, i, kind, reason.to_owned()))
        .collect()
}

fn letter<R: Request>(input: &str, req: &R, i: usize, kind: Kind, reason: String) -> DeadLetter {
    DeadLetter::new(
        input,
        req.seq(),
        &req.records()[i],
        req.record_json(i),
        kind,
        reason,
    )
}

/// What one failed attempt leads to.
enum Next {
    /// Send the same request again (the backoff was slept, if any).
    Again,
    /// Finished: written, dead-lettered, or both.
    Done,
    /// Finished, and the run must stop with this error.
    Fatal(String),
}

/// Sends one request to completion: retries, splits and dead letters.
/// Returns the fatal error that must stop the run, if any.
async fn send<R: Request, W: Service<R>, D: DeadLetterSink>(
    ctx: &Ctx<W, D>,
    req: R,
) -> Option<String> {
    let mut rng =
        fastrand::Rng::with_seed(req.seq().wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ fastrand::u64(..));
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let res = match tokio::time::timeout(ctx.cfg.request_timeout, ctx.writer.write(&req)).await
        {
            Ok(r) => r,
            Err(_) => Err(WriteError::Timeout),
        };
        let e = match res {
            Ok(()) => {
                add(&ctx.stats.written_records, req.records().len() as u64);
                add(&ctx.stats.written_measures, req.measure_count());
                return None;
            }
            Err(e) => e,
        };
        let next = match classify(&e) {
            Action::Retry => retry_or_give_up(ctx, &req, &e, attempt, &mut rng).await,
            Action::Split => return split_and_send(ctx, req, &e).await,
            Action::DeadLetterRejected => {
                let WriteError::Rejected(list) = e else {
                    unreachable!("classify: DeadLetterRejected is only for Rejected")
                };
                rejected(ctx, &req, list, attempt).await
            }
            Action::Abort => {
                let msg = e.to_string();
                dead_letter(ctx, letters_for(&ctx.input, &req, Kind::Aborted, &msg)).await;
                Next::Fatal(msg)
            }
        };
        match next {
            Next::Again => continue,
            Next::Done => return None,
            Next::Fatal(m) => return Some(m),
        }
    }
}

/// A retryable failure: back off and go again while attempts, the run's
/// budget and the deadline allow, else dead-letter the request.
async fn retry_or_give_up<R: Request, W, D: DeadLetterSink>(
    ctx: &Ctx<W, D>,
    req: &R,
    e: &WriteError,
    attempt: u32,
    rng: &mut fastrand::Rng,
) -> Next {
    let wait = ctx.cfg.retry.wait(attempt - 1, rng, e.retry_after());
    let in_time = ctx
        .cfg
        .hard_deadline
        .is_none_or(|d| Instant::now() + wait + ctx.cfg.request_timeout < d);
    if attempt < ctx.cfg.retry.max_attempts && in_time && ctx.budget.take() {
        add(&ctx.stats.retries, 1);
        tracing::debug!(batch = req.seq(), attempt, error = %e, ?wait, "retrying");
        tokio::time::sleep(wait).await;
        return Next::Again;
    }
    let why = if !in_time {
        "no time left before the deadline"
    } else if attempt >= ctx.cfg.retry.max_attempts {
        "attempts exhausted"
    } else {
        "run retry budget exhausted"
    };
    let reason = format!("{e} ({why} after {attempt} attempts)");
    dead_letter(
        ctx,
        letters_for(&ctx.input, req, Kind::RetriesExhausted, &reason),
    )
    .await;
    Next::Done
}

/// The sink refused the whole request as invalid: halve it until the bad
/// records stand alone. Halving isolates k bad records in O(k log n) calls
/// and keeps every good record's request valid.
async fn split_and_send<R: Request, W: Service<R>, D: DeadLetterSink>(
    ctx: &Ctx<W, D>,
    req: R,
    e: &WriteError,
) -> Option<String> {
    if req.records().len() == 1 {
        count_reason(ctx, &e.to_string());
        dead_letter(
            ctx,
            letters_for(&ctx.input, &req, Kind::Invalid, &e.to_string()),
        )
        .await;
        return None;
    }
    add(&ctx.stats.splits, 1);
    let (a, b) = req.split();
    if let Some(f) = Box::pin(send(ctx, a)).await {
        return Some(f);
    }
    Box::pin(send(ctx, b)).await
}

fn count_reason<W, D>(ctx: &Ctx<W, D>, reason: &str) {
    *ctx.reasons
        .lock()
        .unwrap()
        .entry(reason_key(reason))
        .or_default() += 1;
}

/// A partial success: the records named in `list` were refused, the others
/// stored.
async fn rejected<R: Request, W, D: DeadLetterSink>(
    ctx: &Ctx<W, D>,
    req: &R,
    list: Vec<RejectedRecord>,
    attempt: u32,
) -> Next {
    let records = req.records();
    let mut bad = vec![None; records.len()];
    for r in list {
        if let Some(slot) = bad.get_mut(r.index) {
            *slot = Some(r);
        }
    }
    if bad.iter().all(Option::is_none) {
        // No usable index: nothing says which landed. Resending is safe
        // (identical records are duplicates): retry.
        if attempt < ctx.cfg.retry.max_attempts && ctx.budget.take() {
            add(&ctx.stats.retries, 1);
            return Next::Again;
        }
        let letters = letters_for(
            &ctx.input,
            req,
            Kind::Rejected,
            "rejected without record indexes",
        );
        dead_letter(ctx, letters).await;
        return Next::Done;
    }
    let mut letters = Vec::new();
    let (mut wr, mut wm) = (0u64, 0u64);
    let (mut rr, mut rm) = (0u64, 0u64);
    for (i, (r, b)) in records.iter().zip(bad).enumerate() {
        match b {
            None => {
                wr += 1;
                wm += r.measure_count();
            }
            Some(b) => {
                rr += 1;
                rm += r.measure_count();
                count_reason(ctx, &b.reason);
                let mut l = letter(&ctx.input, req, i, Kind::Rejected, b.reason);
                l.existing_version = b.existing_version;
                letters.push(l);
            }
        }
    }
    add(&ctx.stats.written_records, wr);
    add(&ctx.stats.written_measures, wm);
    add(&ctx.stats.rejected_records, rr);
    add(&ctx.stats.rejected_measures, rm);
    dead_letter(ctx, letters).await;
    Next::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{DataModel, Dimension, Record, Values};
    use crate::sinks::dead_letter::MemorySink;
    use crate::sinks::timestream::request::build_request;
    use crate::sinks::timestream::WriteRequest;
    use crate::sinks::RejectedRecord;
    use std::sync::atomic::AtomicUsize;

    fn rec(i: u64, bad: bool) -> Record {
        Record {
            dimensions: vec![Dimension {
                name: "i".into(),
                value: if bad { "BAD".into() } else { i.to_string() },
            }],
            measure_name: "m".into(),
            values: Values::Single("1".into()),
            time_ns: i as i64,
            lines: vec![i + 1],
            metadata_mask: 0,
        }
    }

    fn req(seq: u64, n: u64, bad: &[u64]) -> WriteRequest {
        build_request(
            seq,
            DataModel::Single,
            (0..n)
                .map(|i| rec(seq * 1000 + i, bad.contains(&i)))
                .collect(),
        )
    }

    /// Behaves like Timestream, scripted: fails the first `fail_first`
    /// calls with `fail`, rejects records whose dimension is BAD (as a
    /// ValidationException when `validation`, else RejectedRecords).
    #[derive(Default)]
    struct Mock {
        calls: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        fail_first: usize,
        fail: Option<WriteError>,
        validation: bool,
        written: Mutex<Vec<i64>>,
    }

    impl Service<WriteRequest> for Mock {
        async fn write(&self, req: &WriteRequest) -> Result<(), WriteError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if n < self.fail_first {
                return Err(self.fail.clone().unwrap());
            }
            let bad: Vec<usize> = req
                .records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.dimensions[0].value == "BAD")
                .map(|(i, _)| i)
                .collect();
            if !bad.is_empty() && self.validation {
                return Err(WriteError::Validation("bad record".into()));
            }
            let mut w = self.written.lock().unwrap();
            for (i, r) in req.records.iter().enumerate() {
                if !bad.contains(&i) {
                    w.push(r.time_ns);
                }
            }
            if bad.is_empty() {
                Ok(())
            } else {
                Err(WriteError::Rejected(
                    bad.into_iter()
                        .map(|index| RejectedRecord {
                            index,
                            reason: format!("bad at {index}"),
                            existing_version: Some(3),
                        })
                        .collect(),
                ))
            }
        }
    }

    async fn run(
        mock: Mock,
        reqs: Vec<WriteRequest>,
        cfg: WriterConfig,
    ) -> (
        Arc<Mock>,
        Arc<MemorySink>,
        Arc<WriteStats>,
        DriveOutcome<WriteRequest>,
    ) {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for r in reqs {
                if tx.send(r).await.is_err() {
                    break;
                }
            }
        });
        let mock = Arc::new(mock);
        let sink = Arc::new(MemorySink::default());
        let stats = Arc::new(WriteStats::default());
        let out = drive(
            rx,
            mock.clone(),
            sink.clone(),
            cfg,
            stats.clone(),
            "in".into(),
            &|| false,
        )
        .await;
        (mock, sink, stats, out)
    }

    fn fast() -> WriterConfig {
        WriterConfig {
            retry: RetryPolicy {
                max_attempts: 4,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(2),
            },
            concurrency: 3,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn bounded_concurrency_and_all_written() {
        let reqs: Vec<_> = (0..30).map(|s| req(s, 100, &[])).collect();
        let (mock, sink, stats, out) = run(Mock::default(), reqs, fast()).await;
        assert_eq!(get(&stats.written_records), 3000);
        assert_eq!(mock.written.lock().unwrap().len(), 3000);
        assert!(mock.max_in_flight.load(Ordering::SeqCst) <= 3);
        assert!(
            mock.max_in_flight.load(Ordering::SeqCst) >= 2,
            "requests overlap"
        );
        assert!(sink.letters.lock().unwrap().is_empty());
        assert_eq!(out.next_seq, 30);
    }

    #[tokio::test]
    async fn transient_errors_are_retried_and_counted() {
        for fail in [
            WriteError::throttled("t"),
            WriteError::Server("s".into()),
            WriteError::Timeout,
            WriteError::Connection("reset".into()),
        ] {
            let mock = Mock {
                fail_first: 3,
                fail: Some(fail),
                ..Default::default()
            };
            let (_, sink, stats, out) = run(mock, vec![req(0, 10, &[])], fast()).await;
            assert_eq!(get(&stats.retries), 3);
            assert_eq!(get(&stats.written_records), 10);
            assert!(sink.letters.lock().unwrap().is_empty() && out.fatal.is_none());
        }
    }

    #[tokio::test]
    async fn retries_wait_at_least_what_retry_after_says() {
        let mock = Mock {
            fail_first: 2,
            fail: Some(WriteError::Throttled {
                message: "slow down".into(),
                retry_after: Some(Duration::from_millis(150)),
            }),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        // fast(): the jitter alone would wait at most 2 ms per retry.
        let (_, sink, stats, _) = run(mock, vec![req(0, 10, &[])], fast()).await;
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(get(&stats.retries), 2);
        assert_eq!(get(&stats.written_records), 10);
        assert!(sink.letters.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn exhausted_retries_dead_letter_everything() {
        let mock = Mock {
            fail_first: 100,
            fail: Some(WriteError::throttled("slow down")),
            ..Default::default()
        };
        let (_, sink, stats, _) = run(mock, vec![req(0, 10, &[]), req(1, 5, &[])], fast()).await;
        assert_eq!(get(&stats.written_records), 0);
        assert_eq!(get(&stats.dead_lettered), 15);
        assert_eq!(get(&stats.retries), 6);
        let l = sink.letters.lock().unwrap();
        assert!(l
            .iter()
            .all(|l| l.kind == Kind::RetriesExhausted && l.reason.contains("slow down")));
    }

    #[tokio::test]
    async fn retry_budget_is_run_wide() {
        let mock = Mock {
            fail_first: 1000,
            fail: Some(WriteError::Server("x".into())),
            ..Default::default()
        };
        let cfg = WriterConfig {
            retry_budget: 5,
            ..fast()
        };
        let (_, _, stats, _) = run(mock, (0..10).map(|s| req(s, 1, &[])).collect(), cfg).await;
        assert_eq!(get(&stats.retries), 5);
        assert_eq!(get(&stats.dead_lettered), 10);
    }

    #[tokio::test]
    async fn rejected_records_map_back_to_their_lines() {
        let (_, sink, stats, out) = run(Mock::default(), vec![req(0, 100, &[3, 97])], fast()).await;
        assert_eq!(get(&stats.written_records), 98);
        assert_eq!(get(&stats.rejected_records), 2);
        let l = sink.letters.lock().unwrap();
        let lines: Vec<_> = l.iter().map(|l| l.lines.clone()).collect();
        assert_eq!(lines, vec![vec![4], vec![98]]);
        assert_eq!(l[0].reason, "bad at 3");
        assert_eq!(l[0].existing_version, Some(3));
        assert_eq!(l[0].record["Dimensions"][0]["Value"], "BAD");
        assert_eq!(out.rejected_reasons.get("bad at N"), Some(&2));
    }

    #[tokio::test]
    async fn validation_splits_to_isolate_bad_records() {
        let mock = Mock {
            validation: true,
            ..Default::default()
        };
        let (mock, sink, stats, _) = run(mock, vec![req(0, 100, &[42])], fast()).await;
        assert_eq!(
            get(&stats.written_records),
            99,
            "one bad record never costs the 99 good ones"
        );
        assert_eq!(mock.written.lock().unwrap().len(), 99);
        let l = sink.letters.lock().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].kind, l[0].lines.clone()), (Kind::Invalid, vec![43]));
        // log2(100) ≈ 7 levels of halving.
        assert!(get(&stats.splits) <= 8, "{}", get(&stats.splits));
    }

    #[tokio::test]
    async fn fatal_errors_abort_the_run() {
        let mock = Mock {
            fail_first: 1000,
            fail: Some(WriteError::NotFound("table k6.results".into())),
            ..Default::default()
        };
        let (mock, _, stats, out) =
            run(mock, (0..50).map(|s| req(s, 10, &[])).collect(), fast()).await;
        assert!(out.fatal.unwrap().contains("k6.results"));
        assert!(
            mock.calls.load(Ordering::SeqCst) <= 4,
            "stops taking requests at once"
        );
        assert_eq!(get(&stats.retries), 0);
    }

    #[tokio::test]
    async fn skips_confirmed_batches() {
        let cfg = WriterConfig {
            skip_batches: 4,
            ..fast()
        };
        let (mock, _, stats, out) = run(
            Mock::default(),
            (0..10).map(|s| req(s, 10, &[])).collect(),
            cfg,
        )
        .await;
        assert_eq!(get(&stats.batches_skipped), 4);
        assert_eq!(get(&stats.written_records), 60);
        let w = mock.written.lock().unwrap();
        assert!(w.iter().all(|t| *t >= 4000));
        assert_eq!(out.next_seq, 10);
    }

    #[test]
    fn reason_keys_fold_digits() {
        assert_eq!(
            reason_key("outside [1700000000, 1700003600)"),
            "outside [N, N)"
        );
    }
}
