//! S3 faults and a crash, end to end: the real `k6-timestream-lambda`
//! binary reads its objects through a fault-injecting proxy in front of
//! moto (`AWS_ENDPOINT_URL_S3` points at the proxy; the test's own uploads
//! go to moto directly) and writes to the strict Timestream endpoint.
//!
//! For every fault the event is delivered; where the function returned an
//! error (Lambda's asynchronous invoke would retry it), the same event is
//! delivered again, as that retry does. Each case ends with every point of
//! the object stored exactly once (compared with `k6-timestream convert` of
//! the same file), no record rejected by the last delivery, and a report
//! whose outcome says what happened.
//!
//! | fault | what the function does | how the case ends |
//! |---|---|---|
//! | reset mid-body (GetObject) | error: the body read failed | the retry stores the rest |
//! | slow body (trickled) | `complete`, slowly | — |
//! | 503 SlowDown once | the SDK retries: `complete` | — |
//! | 503 SlowDown always | error after the SDK's attempts, nothing written | the retry completes |
//! | 500 on the dead-letter PutObject once | the SDK retries: `complete` with dead letters | re-processing stores the rejected |
//! | 500 on the dead-letter PutObject always | `failed` (dead letters not stored; no Lambda retry) | re-processing completes |
//! | SIGKILL while writing | no answer | the retry (new process) completes |
//!
//! The crash runs against [`RuntimeApi`] instead of `cargo lambda watch`: the
//! test decides the redelivery itself and sees the killed invocation never
//! answered. The tests share one moto_server (their own buckets); each has
//! its own strict endpoint, since faults and counters are per server.

mod support;

use hyper::Method;
use k6_timestream::core::report::{Outcome, RunReport};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use strict_timestream::Faults;
use support::fixture;
use support::lambda::*;
use support::measures::{assert_same, M};
use support::procs::wait_until;
use support::runtime_api::RuntimeApi;
use support::s3_faults::{Fault, FaultProxy};

/// One test's world: the function under `watch`, reading S3 through the
/// proxy (fields drop in this order).
struct Faulty {
    f: Function,
    proxy: FaultProxy,
    env: Env,
    bucket: &'static str,
}

/// An uploaded object, its event and what must be stored.
struct Case {
    up: Uploaded,
    event: Value,
    want: Vec<M>,
    want_r: RunReport,
    /// The object's path on the (path-style) S3 endpoint.
    path: String,
}

impl Faulty {
    fn start(bucket: &'static str) -> Faulty {
        let env = Env::start();
        env.create_bucket(bucket, false);
        let proxy = FaultProxy::start(env.rt().handle(), env.moto.addr);
        // Requests in arrival order (no grouping window holding the first
        // records back): a cut mid-object then leaves complete requests
        // written before it, which is what these tests look at.
        let f = env.start_function(
            LAMBDA_BIN,
            &[
                ("AWS_ENDPOINT_URL_S3", &proxy.url()),
                ("K6TS_GROUP_WINDOW", "0"),
            ],
        );
        Faulty {
            f,
            proxy,
            env,
            bucket,
        }
    }

    /// Uploads `file` (as it is) under `key`; resets the strict endpoint.
    fn object(&self, key: &str, file: &Path) -> Case {
        self.env.strict().reset();
        let up = self.env.put(self.bucket, key, std::fs::read(file).unwrap());
        let (want, want_r) = expected(file, key);
        Case {
            event: s3_event("s3-put-gzip.json", &[&up], false),
            path: format!("/{}/{key}", self.bucket),
            up,
            want,
            want_r,
        }
    }

    /// Delivers the case's event; the function must answer with a report.
    fn deliver(&self, c: &Case) -> RunReport {
        let mut r = self.env.reports(&self.f, &c.event);
        assert_eq!(r.len(), 1);
        r.remove(0)
    }

    /// The faults the requests `method` on `path*` got since the last call,
    /// in order (`None`: forwarded untouched).
    fn seen(&self, method: Method, path: &str) -> Vec<Option<Fault>> {
        self.proxy
            .take_seen()
            .into_iter()
            .filter(|s| s.method == method && s.path.starts_with(path))
            .map(|s| s.fault)
            .collect()
    }

    /// The end every case reaches: the last report complete, every point
    /// of the object stored exactly once, no rejection since `rejected`.
    fn assert_all_once(&self, r: &RunReport, c: &Case, rejected: u64, what: &str) {
        assert_complete(r, &c.want_r, what);
        assert_eq!(r.input, format!("s3://{}/{}", c.up.bucket, c.up.key));
        let stats = self.env.strict().stats();
        assert_eq!(stats.records_rejected, rejected, "{what}: {stats:?}");
        let stored = self.env.stored();
        assert_same(&stored, &c.want, what);
        eprintln!(
            "[lambda_faults] {what}: {}, {} of {} measures stored, {:.2} s",
            outcome(r).unwrap_or("?"),
            stored.len(),
            c.want.len(),
            r.seconds
        );
    }
}

fn outcome(r: &RunReport) -> Option<&'static str> {
    r.outcome.map(Outcome::as_str)
}

/// The body is cut by a connection reset half-way: the read error fails
/// the invocation (after writing only complete requests, never the group
/// in progress); Lambda's retry reads the object again and stores the
/// rest, nothing twice.
#[test]
fn get_object_reset_mid_body_then_the_same_event_again() {
    let t = Faulty::start("k6-faults-reset");
    let c = t.object("k6-results/reset.json.gz", &fixture("mixed.json.gz"));
    let after = c.up.size as usize / 2;
    t.proxy
        .inject(Method::GET, &c.path, Fault::ResetBody { after }, Some(1));
    let err = t
        .env
        .try_invoke(&t.f, &c.event)
        .expect_err("a body cut by a reset fails the invocation (Lambda retries it)");
    assert!(
        err.message
            .contains(&format!("s3://{}/{}", c.up.bucket, c.up.key)),
        "{err:?}"
    );
    assert_eq!(
        t.seen(Method::GET, &c.path),
        [Some(Fault::ResetBody { after })]
    );
    let first = t.env.strict().stats();
    assert!(
        first.records_stored > 0 && first.records_stored < c.want_r.records,
        "the first delivery stopped mid-object: {first:?}"
    );

    let r = t.deliver(&c);
    t.assert_all_once(&r, &c, 0, "retry after a reset");
    assert_eq!(t.seen(Method::GET, &c.path), [None]);
}

/// GetObject answered slowly and with 503 SlowDown (once: the SDK's own
/// retry; always: the invocation fails and Lambda's retry completes), and a
/// 500 on the dead-letter PutObject (once: the SDK's retry; always: the
/// report says `failed`, re-processing completes). One function for all.
#[test]
fn slow_body_slowdown_and_dead_letter_put_errors() {
    let t = Faulty::start("k6-faults-s3");
    let dl_prefix = format!("/{}/k6-timestream-dead-letter/", t.bucket);

    // 1. A slow body: 8 KiB every 40 ms (plain.json: 15 pieces, ≥ 0.6 s).
    let c = t.object("k6-results/slow.json", &fixture("plain.json"));
    let slow = Fault::SlowBody {
        chunk: 8 << 10,
        delay: Duration::from_millis(40),
    };
    t.proxy.inject(Method::GET, &c.path, slow, None);
    let r = t.deliver(&c);
    t.proxy.clear();
    t.assert_all_once(&r, &c, 0, "slow body");
    assert!(r.seconds >= 0.6, "the body came slowly: {} s", r.seconds);
    assert_eq!(t.seen(Method::GET, &c.path), [Some(slow)]);

    // 2. One 503 SlowDown: the SDK retries GetObject itself.
    let slowdown = Fault::S3Error {
        status: 503,
        code: "SlowDown",
    };
    let c = t.object(
        "k6-results/slowdown-once.json.gz",
        &fixture("mixed.json.gz"),
    );
    t.proxy.inject(Method::GET, &c.path, slowdown, Some(1));
    let r = t.deliver(&c);
    t.assert_all_once(&r, &c, 0, "one SlowDown");
    assert_eq!(t.seen(Method::GET, &c.path), [Some(slowdown), None]);

    // 3. SlowDown on every attempt: the invocation fails before anything is
    // written; Lambda's retry (the throttling over) completes.
    let c = t.object("k6-results/slowdown.json.gz", &fixture("mixed.json.gz"));
    t.proxy.inject(Method::GET, &c.path, slowdown, None);
    let err = t
        .env
        .try_invoke(&t.f, &c.event)
        .expect_err("SlowDown on every attempt fails the invocation (Lambda retries it)");
    t.proxy.clear();
    assert!(err.message.contains("SlowDown"), "{err:?}");
    let attempts = t.seen(Method::GET, &c.path);
    assert!(
        attempts.len() >= 2 && attempts.iter().all(|f| *f == Some(slowdown)),
        "the SDK retried, every attempt throttled: {attempts:?}"
    );
    assert_eq!(t.env.strict().stats().write_calls, 0, "nothing written");
    let r = t.deliver(&c);
    t.assert_all_once(&r, &c, 0, "retry after SlowDown");

    // 4. Rejected records, and one 500 on their dead-letter PutObject: the
    // SDK retries the put; the report is complete with its dead letters.
    let internal = Fault::S3Error {
        status: 500,
        code: "InternalError",
    };
    let c = t.object("k6-results/dl-once.json.gz", &fixture("mixed.json.gz"));
    t.env.strict().set_faults(Faults {
        reject_rate: 0.05,
        ..Default::default()
    });
    t.proxy.inject(Method::PUT, &dl_prefix, internal, Some(1));
    let r = t.deliver(&c);
    t.env.strict().set_faults(Faults::default());
    assert_eq!(outcome(&r), Some("complete"), "{r:#?}");
    assert!(
        r.rejected_records > 0 && r.dead_lettered == r.rejected_records,
        "{r:#?}"
    );
    assert_eq!(r.written_measures + r.dead_lettered_measures, r.measures);
    assert_eq!(t.seen(Method::PUT, &dl_prefix), [Some(internal), None]);
    let dl_key = format!(
        "k6-timestream-dead-letter/{}/{}.from-batch-0.part-0001.jsonl",
        t.bucket, c.up.key
    );
    assert_eq!(
        r.dead_letter_location,
        Some(format!("s3://{}/{dl_key}", t.bucket))
    );
    let letters = t.env.get(t.bucket, &dl_key);
    assert_eq!(letters.lines().count() as u64, r.dead_lettered);
    assert_eq!(t.env.stored().len() as u64, r.written_measures);
    // Re-processing (the cause fixed) stores the rejected records.
    let rejected = t.env.strict().stats().records_rejected;
    let r = t.deliver(&c);
    t.assert_all_once(&r, &c, rejected, "re-processing after dead letters");

    // 5. The dead-letter PutObject fails on every attempt: the report
    // cannot account for every point, so it says `failed` (the function
    // answers: Lambda does not retry); re-processing completes.
    let c = t.object("k6-results/dl-fails.json.gz", &fixture("mixed.json.gz"));
    t.env.strict().set_faults(Faults {
        reject_rate: 0.05,
        ..Default::default()
    });
    t.proxy.inject(Method::PUT, &dl_prefix, internal, None);
    let r = t.deliver(&c);
    t.env.strict().set_faults(Faults::default());
    t.proxy.clear();
    assert_eq!(outcome(&r), Some("failed"), "{r:#?}");
    assert!(!r.complete && r.rejected_records > 0, "{r:#?}");
    assert!(
        r.error.as_deref().unwrap_or("").contains("dead-letter"),
        "the error names the dead-letter sink: {r:#?}"
    );
    let puts = t.seen(Method::PUT, &dl_prefix);
    assert!(
        puts.len() >= 2 && puts.iter().all(|f| *f == Some(internal)),
        "the SDK retried, every put failed: {puts:?}"
    );
    let rejected = t.env.strict().stats().records_rejected;
    let r = t.deliver(&c);
    t.assert_all_once(
        &r,
        &c,
        rejected,
        "re-processing after a failed dead-letter put",
    );
}

/// SIGKILL of the function process while it writes a 3 MB object (slowed
/// by the strict endpoint's latency), then the same event to a new process
/// (Lambda's retry after a runtime crash): every point once, the records
/// written before the crash come again as duplicates, nothing rejected.
#[test]
fn crash_mid_object_then_the_same_event_again() {
    let env = Env::start();
    let bucket = "k6-faults-crash";
    env.create_bucket(bucket, false);
    let api = RuntimeApi::start(env.rt().handle(), FUNCTION, Duration::from_secs(900));
    let (up, want, want_r) = env.put_k6_runs(bucket, "k6-results/crash.json.gz", 3);
    let event = s3_event("s3-put-gzip.json", &[&up], false);
    // One request at a time, each taking ≥ 150 ms: the crash finds the
    // function mid-object.
    let config = [("K6TS_CONCURRENCY", "1")];
    env.strict().set_faults(Faults {
        latency_ms: 150,
        ..Default::default()
    });

    let first = env.start_function_on(&api, LAMBDA_BIN, &config);
    let id = api.deliver(&event);
    wait_until(
        "4 requests written",
        Duration::from_secs(120),
        Some(&first),
        || env.strict().stats().write_calls_ok >= 4,
    );
    first.kill();
    let at_crash = env.strict().stats();
    assert!(
        api.handed_out(&id) && api.result(&id).is_none(),
        "killed before it answered"
    );
    assert!(
        at_crash.records_stored > 0 && at_crash.records_stored < want_r.records,
        "killed mid-object: {at_crash:?} of {} records",
        want_r.records
    );

    env.strict().set_faults(Faults::default());
    let second = env.start_function_on(&api, LAMBDA_BIN, &config);
    let id = api.deliver(&event);
    let answer = api
        .wait(&id, Duration::from_secs(300), &|| second.alive())
        .unwrap_or_else(|e| panic!("the retry fails: {e:?}\n{}", second.tail(40)));
    let r = reports_of(&answer).remove(0);
    assert_complete(&r, &want_r, "retry after a crash");
    assert_eq!(r.batches_written, r.batches, "{r:#?}");
    let stats = env.strict().stats();
    assert_eq!(
        (stats.records_stored, stats.records_rejected),
        (want_r.records, 0),
        "{stats:?}"
    );
    assert!(
        stats.records_duplicate >= at_crash.records_stored,
        "what was written before the crash came again, as duplicates: {stats:?}"
    );
    let stored = env.stored();
    assert_same(&stored, &want, "retry after a crash");
    eprintln!(
        "[lambda_faults] crash after {} of {} records: retry {}, {} of {} measures stored, {} duplicates",
        at_crash.records_stored,
        want_r.records,
        outcome(&r).unwrap_or("?"),
        stored.len(),
        want.len(),
        stats.records_duplicate
    );
}
