//! End to end: the real `k6-timestream-lambda` binary, driven through the
//! Lambda runtime API of `cargo lambda watch`, reading real k6 results from
//! S3 (moto) and writing to the strict local Timestream endpoint; its
//! continuations go through a local Lambda Invoke API relay. The setup and
//! its trade-offs are described in `tests/support/lambda.rs`.
//!
//! `K6TS_E2E_KEEP=1` keeps the logs (moto, watch, each function).
//! `lambda_figures` (ignored; `scripts/lambda-figures.sh`) measures cold init
//! and throughput of a release binary on a big k6 result.

mod support;

use k6_timestream::core::report::Outcome;
use serde_json::{json, Value};
use std::time::Instant;
use strict_timestream::Faults;
use support::fixture;
use support::lambda::*;
use support::measures::{assert_same, sorted};
use support::procs::{cpu_time, vm_hwm_kib};

#[test]
fn lambda_end_to_end() {
    let t0 = Instant::now();
    let env = Env::start();
    eprintln!(
        "[lambda_e2e] moto, strict endpoint, relay up in {:.1?}",
        t0.elapsed()
    );
    let f = env.start_function(LAMBDA_BIN, &[]);
    eprintln!(
        "[lambda_e2e] debug binary: start -> first /next {:.1?}",
        f.init
    );
    let bucket = "k6-e2e";
    let vbucket = "k6-e2e-versioned";
    env.create_bucket(bucket, false);
    env.create_bucket(vbucket, true);

    // 1. Plain and gzip objects from S3 ObjectCreated events.
    for (sample, key, file) in [
        ("s3-put-plain.json", "k6-results/run-1.json", "plain.json"),
        (
            "s3-put-gzip.json",
            "k6-results/run-2.json.gz",
            "mixed.json.gz",
        ),
    ] {
        env.strict().reset();
        let up = env.put(bucket, key, std::fs::read(fixture(file)).unwrap());
        let (want, want_r) = expected(&fixture(file), key);
        let reports = env.reports(&f, &s3_event(sample, &[&up], false));
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        let what = format!("{sample} ({file})");
        assert_complete(r, &want_r, &what);
        assert_eq!(r.input, format!("s3://{bucket}/{key}"));
        assert_eq!(r.gzip, file.ends_with(".gz"), "{what}");
        let stored = env.stored();
        assert_eq!(stored.len() as u64, r.points - r.dropped_total(), "{what}");
        assert_same(&stored, &want, &what);
        assert_eq!(env.strict().stats().records_rejected, 0, "{what}");
        eprintln!(
            "[lambda_e2e] {what}: {} points -> {} measures, {:.2} s",
            r.points, r.written_measures, r.seconds
        );
    }

    // 1b. Three objects in one event (the multi-record sample; one key has
    // `+` for a space, one object is the synthetic edge-case file).
    env.strict().reset();
    let files = [
        ("k6-results/batch/run-3.json", "plain.json"),
        ("k6-results/batch/run-4.json.gz", "notags.json.gz"),
        ("k6-results/batch/run 5.ndjson", "edge_cases.ndjson"),
    ];
    let ups: Vec<Uploaded> = files
        .iter()
        .map(|(k, f)| env.put(bucket, k, std::fs::read(fixture(f)).unwrap()))
        .collect();
    let reports = env.reports(
        &f,
        &s3_event(
            "s3-multi-record.json",
            &ups.iter().collect::<Vec<_>>(),
            true,
        ),
    );
    assert_eq!(reports.len(), 3);
    let mut want_all = Vec::new();
    let mut points = 0;
    for ((key, file), r) in files.iter().zip(&reports) {
        let (want, want_r) = expected(&fixture(file), key);
        assert_eq!(r.input, format!("s3://{bucket}/{key}"));
        assert_complete(r, &want_r, &format!("s3-multi-record.json: {key}"));
        want_all.extend(want);
        points += r.points - r.dropped_total();
    }
    // edge_cases.ndjson has identical points (same metric, no tags, same
    // time and value: `tags` null / {} / absent). The converter leaves
    // identical records alone and Timestream keeps one of them: the table
    // holds fewer measures than the report's `measures` by exactly those.
    let mut want_all = sorted(want_all);
    let n = want_all.len();
    want_all.dedup();
    let identical = (n - want_all.len()) as u64;
    assert_eq!(
        identical, 2,
        "edge_cases.ndjson: 3 identical tag-less points"
    );
    let stored = env.stored();
    assert_eq!(
        stored.len() as u64 + identical,
        points,
        "s3-multi-record.json: stored + identical duplicates = points - Σdropped"
    );
    assert_same(&stored, &want_all, "s3-multi-record.json");

    // 2. Encoded keys: space → `+`, `+` → %2B, UTF-8 and `=` percent-encoded.
    env.strict().reset();
    let key = "k6-results/my run+1 résumé=x.json.gz";
    assert_eq!(
        s3_encode(key),
        "k6-results/my+run%2B1+r%C3%A9sum%C3%A9%3Dx.json.gz"
    );
    let up = env.put(
        bucket,
        key,
        std::fs::read(fixture("offset.json.gz")).unwrap(),
    );
    let event = s3_event("s3-put-encoded-key.json", &[&up], false);
    let reports = env.reports(&f, &event);
    let (want, want_r) = expected(&fixture("offset.json.gz"), key);
    assert_complete(&reports[0], &want_r, "encoded key");
    assert_eq!(reports[0].input, format!("s3://{bucket}/{key}"));
    let stored = env.stored();
    assert!(
        stored
            .iter()
            .all(|m| m.0.get("testid").map(String::as_str) == Some("my run+1 résumé=x")),
        "testid from the decoded key"
    );
    assert_same(&stored, &want, "encoded key");
    // The sample event's own encoded key.
    let sample_key = "k6-results/team a+b/run=1 100% ✓ héllo 日本 🚀.json.gz";
    let up2 = env.put(
        bucket,
        sample_key,
        std::fs::read(fixture("notags.json.gz")).unwrap(),
    );
    let r2 = env.reports(&f, &s3_event("s3-put-encoded-key.json", &[&up2], true));
    assert_eq!(r2[0].input, format!("s3://{bucket}/{sample_key}"));
    assert_complete(
        &r2[0],
        &expected(&fixture("notags.json.gz"), sample_key).1,
        "sample encoded key",
    );

    // 3. The same event again: identical records are duplicates.
    let before = env.strict().stats();
    let count = env.strict().record_count(DB, TABLE);
    let again = env.reports(&f, &event);
    assert_complete(&again[0], &want_r, "duplicate event");
    let after = env.strict().stats();
    assert_eq!(after.records_rejected, 0, "duplicate event: rejections");
    assert_eq!(
        after.records_stored, before.records_stored,
        "duplicate event: nothing new stored"
    );
    assert_eq!(
        after.records_duplicate - before.records_duplicate,
        want_r.records,
        "duplicate event: every record a duplicate"
    );
    assert_eq!(
        env.strict().record_count(DB, TABLE),
        count,
        "duplicate event: measure count"
    );

    // 4. Replaced since the event (ETag no longer matches): `replaced`, no error.
    env.strict().reset();
    let old = env.put(
        bucket,
        "k6-results/replaced.json",
        std::fs::read(fixture("plain.json")).unwrap(),
    );
    let new = env.put(
        bucket,
        "k6-results/replaced.json",
        std::fs::read(fixture("special_values.json")).unwrap(),
    );
    assert_ne!(old.etag, new.etag);
    let r = &env.reports(&f, &s3_event("s3-put-plain.json", &[&old], false))[0];
    assert_eq!(r.outcome.map(Outcome::as_str), Some("replaced"), "{r:#?}");
    assert!(
        r.error.as_deref().unwrap_or("").contains("replaced"),
        "{r:#?}"
    );
    assert_eq!(
        (r.written_measures, r.points, r.batches_written),
        (0, 0, 0),
        "{r:#?}"
    );
    assert_eq!(
        env.strict().stats().write_calls,
        0,
        "replaced: nothing written"
    );

    // 4b. Versioned bucket: the event's version is read even after an overwrite.
    env.strict().reset();
    let v1 = env.put(
        vbucket,
        "k6-results/run-6.json.gz",
        std::fs::read(fixture("notags.json.gz")).unwrap(),
    );
    let _v2 = env.put(
        vbucket,
        "k6-results/run-6.json.gz",
        std::fs::read(fixture("offset.json.gz")).unwrap(),
    );
    assert!(v1.version_id.is_some(), "moto gives versions");
    let r = &env.reports(&f, &s3_event("s3-put-versioned.json", &[&v1], false))[0];
    let (want, want_r) = expected(&fixture("notags.json.gz"), &v1.key);
    assert_complete(r, &want_r, "versioned");
    assert_eq!(r.version_id, v1.version_id, "the event's version");
    assert_same(
        &env.stored(),
        &want,
        "versioned: the first version's points",
    );
    // Direct re-processing (sample event; key not encoded) of a version.
    env.strict().reset();
    let d1 = env.put(
        vbucket,
        sample_key,
        std::fs::read(fixture("plain.json")).unwrap(),
    );
    env.put(
        vbucket,
        sample_key,
        std::fs::read(fixture("offset.json.gz")).unwrap(),
    );
    let mut direct = sample_event("direct-reprocess.json");
    direct["bucket"] = json!(vbucket);
    assert_eq!(direct["key"], json!(sample_key));
    direct["version_id"] = json!(d1.version_id);
    let r = &env.reports(&f, &direct)[0];
    let (want, want_r) = expected(&fixture("plain.json"), sample_key);
    assert_complete(r, &want_r, "direct re-process");
    assert_same(&env.stored(), &want, "direct re-process");

    // 5. Not k6 results.
    env.strict().reset();
    let up = env.put(bucket, "k6-results/notes.txt", b"not results\n".to_vec());
    let r = &env.reports(&f, &s3_event("s3-put-plain.json", &[&up], false))[0];
    assert_eq!(r.outcome.map(Outcome::as_str), Some("skipped"), "{r:#?}");
    assert!(r.error.is_none() && r.points == 0, "{r:#?}");
    let up = env.put(
        bucket,
        "k6-results/hello.json",
        b"{\"hello\":\"world\"}\n{\"hello\":\"again\"}\n\n{\"type\":\"Summary\",\"data\":{}}\n"
            .to_vec(),
    );
    // JSON, but no k6 line in it: one error, `failed`, not retried.
    let r = &env.reports(&f, &s3_event("s3-put-plain.json", &[&up], false))[0];
    assert_eq!(r.outcome.map(Outcome::as_str), Some("failed"), "{r:#?}");
    let e = r.error.as_deref().unwrap_or_default();
    assert!(
        e.starts_with("s3://") && e.contains("k6-results/hello.json: not k6 output"),
        "{r:#?}"
    );
    assert_eq!(
        (
            r.points,
            r.records,
            r.written_records,
            r.lines,
            r.blank_lines
        ),
        (0, 0, 0, 4, 1),
        "{r:#?}"
    );
    assert!(r.skipped.is_empty() && r.ignored.is_empty(), "{r:#?}");
    assert_eq!(env.strict().stats().write_calls, 0, "no records");

    // 7. Rejected records: dead letters in S3, next to the object.
    env.strict().reset();
    env.strict().set_faults(Faults {
        reject_rate: 0.1,
        ..Default::default()
    });
    let key = "k6-results/rejects.json.gz";
    let up = env.put(
        bucket,
        key,
        std::fs::read(fixture("mixed.json.gz")).unwrap(),
    );
    let r = &env.reports(&f, &s3_event("s3-put-gzip.json", &[&up], false))[0];
    env.strict().set_faults(Faults::default());
    let (want, want_r) = expected(&fixture("mixed.json.gz"), key);
    assert_eq!(r.outcome.map(Outcome::as_str), Some("complete"), "{r:#?}");
    assert_eq!(
        (r.points, r.measures, r.records),
        (want_r.points, want_r.measures, want_r.records)
    );
    assert!(
        r.dead_lettered > 0 && r.rejected_records == r.dead_lettered,
        "{r:#?}"
    );
    assert_eq!(
        r.written_measures + r.dead_lettered_measures,
        r.measures,
        "{r:#?}"
    );
    let dl_key = format!("k6-timestream-dead-letter/{bucket}/{key}.from-batch-0.part-0001.jsonl");
    assert_eq!(
        r.dead_letter_location.as_deref(),
        Some(format!("s3://{bucket}/{dl_key}").as_str())
    );
    let letters = env.get(bucket, &dl_key);
    let letters: Vec<Value> = letters
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len() as u64, r.dead_lettered);
    assert_eq!(
        letters
            .iter()
            .map(|l| l["measures"].as_u64().unwrap())
            .sum::<u64>(),
        r.dead_lettered_measures
    );
    assert!(letters.iter().all(|l| l["kind"] == "rejected" && l["input"] == json!(format!("s3://{bucket}/{key}"))), "{}", letters[0]);
    let stored = env.stored();
    assert_eq!(stored.len() as u64, r.written_measures);
    let mut rest = want.clone();
    for m in &stored {
        let i = rest
            .binary_search(m)
            .unwrap_or_else(|_| panic!("stored, not expected: {m:?}"));
        rest.remove(i);
    }
    // The dead-letter object's own event is not k6 results (no loop).
    let dl = Uploaded {
        bucket: bucket.into(),
        key: dl_key.clone(),
        etag: String::new(),
        version_id: None,
        size: 0,
    };
    let r = &env.reports(&f, &s3_event("s3-put-plain.json", &[&dl], false))[0];
    assert_eq!(r.outcome.map(Outcome::as_str), Some("skipped"), "{r:#?}");
    assert!(env.relay.take().is_empty(), "nothing continued so far");

    // 6. Continuations: a small work budget, one request at a time, slow
    // writes. A write takes longer (200 ms) than the budget (0.2 s), so each
    // link writes exactly one request and stops; the last-but-one link then
    // always stops with the final request already queued by the converter
    // (the case that lost it before src/ingest.rs also honoured the
    // writer's stop). 15 requests: 15 links, ~6 s.
    drop(f);
    let g = env.start_function(
        LAMBDA_BIN,
        &[
            ("K6TS_WORK_BUDGET_SECONDS", "0.2"),
            ("K6TS_CONCURRENCY", "1"),
        ],
    );
    env.strict().reset();
    env.strict().set_faults(Faults {
        latency_ms: 200,
        ..Default::default()
    });
    let key = "k6-results/chain.json.gz";
    let (up, want, want_r) = env.put_k6_runs(bucket, key, 2);
    let t = Instant::now();
    let mut report = env
        .reports(&g, &s3_event("s3-put-gzip.json", &[&up], false))
        .remove(0);
    let mut relayed = Vec::new();
    let mut links = 1;
    let sample_cont = sample_event("continuation.json");
    while report.outcome.map(Outcome::as_str) == Some("continued") {
        let got = env.relay.take();
        assert_eq!(
            got.len(),
            1,
            "one continuation per stopped invocation: {got:?}"
        );
        let c = got.into_iter().next().unwrap();
        assert_eq!(c.method, "POST");
        assert_eq!(
            c.path,
            format!("/2015-03-31/functions/{FUNCTION}/invocations"),
            "the function continues itself"
        );
        assert_eq!(
            c.invocation_type.as_deref(),
            Some("Event"),
            "asynchronous invoke"
        );
        let cont = &c.payload["continuation"];
        for k in sample_cont["continuation"].as_object().unwrap().keys() {
            assert!(
                cont.get(k).is_some(),
                "continuation without {k:?} (events/continuation.json has it): {cont}"
            );
        }
        assert_eq!(
            (
                cont["bucket"].as_str(),
                cont["key"].as_str(),
                cont["etag"].as_str()
            ),
            (Some(bucket), Some(key), Some(up.etag.as_str())),
            "pinned object"
        );
        assert_eq!(cont["attempt"], json!(links), "attempt numbers");
        assert_eq!(
            cont["checkpoint"]["bucket"].as_str(),
            Some(bucket),
            "each link goes on from a checkpoint: {cont}"
        );
        relayed.push(c.payload.clone());
        assert!(links < 60, "continuation chain does not end");
        report = env.reports(&g, &c.payload).remove(0);
        links += 1;
        eprintln!(
            "[lambda_e2e] link {links}: {} after skipping {} requests; so far {} requests, {} measures written",
            report.outcome.map(Outcome::as_str).unwrap_or("?"),
            report.batches_skipped,
            report.batches_written,
            report.written_measures
        );
    }
    let chain_secs = t.elapsed().as_secs_f64();
    env.strict().set_faults(Faults::default());
    assert!(
        env.relay.take().is_empty(),
        "no continuation after the last link"
    );
    let skips: Vec<u64> = relayed
        .iter()
        .map(|p| p["continuation"]["skip_batches"].as_u64().unwrap())
        .collect();
    eprintln!(
        "[lambda_e2e] continuations: {links} links, skip_batches {skips:?}, {chain_secs:.1} s"
    );
    let r = &report;
    assert_eq!(r.outcome.map(Outcome::as_str), Some("complete"), "{r:#?}");
    assert!(
        relayed.len() >= 3 && r.continuations >= 3,
        "at least 3 continuations, got {} ({r:#?})",
        relayed.len()
    );
    assert!(
        skips.windows(2).all(|w| w[0] < w[1]) && skips[0] > 0,
        "every link makes progress: {skips:?}"
    );
    assert_eq!(r.continuations, relayed.len() as u64);
    assert_eq!(
        (r.points, r.measures, r.records, r.batches),
        (
            want_r.points,
            want_r.measures,
            want_r.records,
            want_r.batches
        )
    );
    assert_eq!(
        r.measures,
        r.points - r.dropped_total(),
        "measures = points - Σdropped"
    );
    assert_eq!(
        r.written_measures + r.dead_lettered_measures,
        r.measures,
        "nothing lost, nothing counted twice: {r:#?}"
    );
    assert_eq!(
        r.batches_written, r.batches,
        "every request written exactly once over the chain: {r:#?}"
    );
    let stats = env.strict().stats();
    assert_eq!(
        (
            stats.records_stored,
            stats.records_duplicate,
            stats.records_rejected
        ),
        (want_r.records, 0, 0),
        "{stats:?}"
    );
    assert_same(&env.stored(), &want, "continuation chain");
    assert!(
        env.list(bucket, "k6-timestream-state/").is_empty(),
        "every checkpoint deleted"
    );
    // The object was read once: every link after the first went on from
    // its checkpoint, which held the rest read ahead.
    assert_eq!(r.chain_bytes_read, up.size, "{r:#?}");

    drop(g);
    eprintln!("[lambda_e2e] done in {:.1?}", t0.elapsed());
}

/// Figures for the docs (run by `scripts/lambda-figures.sh`): cold init of
/// the binary in `K6TS_E2E_LAMBDA_BIN` (default: this build's), first-invoke
/// latency, and points/s with peak RSS on `K6TS_E2E_BIG` (a big k6 result,
/// `scripts/fixtures/big.sh`).
#[test]
#[ignore]
fn lambda_figures() {
    let bin = e2e_lambda_bin();
    let env = Env::start();
    let bucket = "k6-figures";
    env.create_bucket(bucket, false);
    let up = env.put(
        bucket,
        "k6-results/small.json",
        std::fs::read(fixture("plain.json")).unwrap(),
    );
    let mut inits = Vec::new();
    let mut firsts = Vec::new();
    for _ in 0..5 {
        let f = env.start_function(&bin, &[]);
        inits.push(f.init);
        let t = Instant::now();
        let r = env.reports(&f, &s3_event("s3-put-plain.json", &[&up], false));
        assert_eq!(r[0].outcome.map(Outcome::as_str), Some("complete"));
        firsts.push(f.init + t.elapsed());
    }
    inits.sort();
    firsts.sort();
    eprintln!("[figures] binary: {bin}");
    eprintln!("[figures] cold init (spawn -> first /runtime/invocation/next), 5 runs: {inits:?}; median {:?}", inits[2]);
    eprintln!(
        "[figures] cold first invoke (spawn -> response, plain.json {} points): median {:?}",
        436, firsts[2]
    );

    let Ok(big) = std::env::var("K6TS_E2E_BIG") else {
        eprintln!("[figures] K6TS_E2E_BIG not set: no throughput figure");
        return;
    };
    let body = std::fs::read(&big).unwrap();
    let up = env.put(bucket, "k6-results/big.json.gz", body);
    env.strict().reset();
    // 20 ms per WriteRecords call, as `cargo bench --bench ingest` gives
    // the CLI: the two headline figures are of the same object and endpoint.
    env.strict().set_faults(Faults {
        latency_ms: 20,
        ..Default::default()
    });
    let f = env.start_function(&bin, &[("K6TS_CONCURRENCY", "32")]);
    let rss0 = vm_hwm_kib(f.proc.pid()).unwrap_or(0);
    let cpu0 = cpu_time(f.proc.pid()).unwrap_or_default();
    let t = Instant::now();
    let r = env
        .reports(&f, &s3_event("s3-put-gzip.json", &[&up], false))
        .remove(0);
    let wall = t.elapsed().as_secs_f64();
    let rss = vm_hwm_kib(f.proc.pid()).unwrap_or(0);
    let cpu = cpu_time(f.proc.pid())
        .unwrap_or_default()
        .saturating_sub(cpu0);
    assert_eq!(r.outcome.map(Outcome::as_str), Some("complete"), "{r:#?}");
    assert_eq!(r.written_measures, r.measures, "{r:#?}");
    eprintln!(
        "[figures] {big}: {} lines, {} points, {} records, {} requests; invoke wall {wall:.2} s -> {:.0} points/s ({:.0} records/s); report seconds {:.2}",
        r.lines,
        r.points,
        r.records,
        r.batches,
        r.points as f64 / wall,
        r.records as f64 / wall,
        r.seconds
    );
    eprintln!(
        "[figures] function: CPU {cpu:.2?} for the object = {:.2} s per million points ({:.0}% of the wall time; the rest waits on S3/Timestream, \
         which share the 2 cores here); VmHWM {} MiB after the big object ({} MiB idle after init)",
        cpu.as_secs_f64() * 1e6 / r.points as f64,
        cpu.as_secs_f64() * 100.0 / wall,
        rss / 1024,
        rss0 / 1024
    );
    assert_eq!(env.strict().record_count(DB, TABLE) as u64, r.measures);
    env.strict().set_faults(Faults::default());
}

/// The other ways results arrive, through the real binary on one setup
/// (moto S3, versioned bucket; the strict endpoint): an EventBridge
/// `Object Created` event (its key is not URL-encoded: a `+` is a `+`), and
/// S3 Batch Operations jobs of schema 1.0 (`s3BucketArn`, a pinned version)
/// and 2.0 (`s3Bucket`), whose URL-encoded keys are decoded and whose answer
/// is the Batch Operations response, one result per task.
#[test]
fn lambda_eventbridge_and_batch_operations() {
    let t0 = Instant::now();
    let env = Env::start();
    let f = env.start_function(LAMBDA_BIN, &[]);
    let bucket = "k6-e2e-events";
    env.create_bucket(bucket, true);

    // 1. EventBridge: the sample's key, raw `+`, spaces and `=`.
    env.strict().reset();
    let key = "k6-results/eventbridge/team a+b run=7.json.gz";
    let up = env.put(
        bucket,
        key,
        std::fs::read(fixture("mixed.json.gz")).unwrap(),
    );
    let mut ev = sample_event("eventbridge-object-created.json");
    assert_eq!(
        ev["detail"]["object"]["key"],
        json!(key),
        "the sample's own key"
    );
    ev["resources"] = json!([format!("arn:aws:s3:::{bucket}")]);
    ev["detail"]["bucket"]["name"] = json!(bucket);
    let o = &mut ev["detail"]["object"];
    o["etag"] = json!(up.etag);
    o["size"] = json!(up.size);
    o["version-id"] = json!(up.version_id);
    let reports = env.reports(&f, &ev);
    assert_eq!(reports.len(), 1);
    let (want, want_r) = expected(&fixture("mixed.json.gz"), key);
    assert_complete(&reports[0], &want_r, "EventBridge");
    assert_eq!(reports[0].input, format!("s3://{bucket}/{key}"));
    assert_eq!(reports[0].version_id, up.version_id);
    assert_same(&env.stored(), &want, "EventBridge");
    eprintln!(
        "[lambda_e2e] EventBridge: {} points -> {} measures, {:.2} s",
        reports[0].points, reports[0].written_measures, reports[0].seconds
    );

    // The Batch Operations answer of one invocation: (taskId, code, string).
    let batch = |payload: &Value, schema: &str| -> Vec<(String, String, String)> {
        let v = env.invoke(&f, payload);
        assert_eq!(v["invocationSchemaVersion"], json!(schema), "{v}");
        assert_eq!(v["invocationId"], payload["invocationId"], "{v}");
        assert_eq!(v["treatMissingKeysAs"], json!("PermanentFailure"), "{v}");
        assert!(v.get("reports").is_none(), "not the reports answer: {v}");
        v["results"]
            .as_array()
            .unwrap_or_else(|| panic!("no results: {v}"))
            .iter()
            .map(|r| {
                let s = |k: &str| {
                    r[k].as_str()
                        .unwrap_or_else(|| panic!("{k}: {r}"))
                        .to_owned()
                };
                (s("taskId"), s("resultCode"), s("resultString"))
            })
            .collect()
    };

    // 2. Batch Operations 1.0: the sample's encoded key, its version pinned
    // although the object was overwritten since.
    env.strict().reset();
    let key = "k6-results/backfill/run 8+b.json";
    let v1 = env.put(bucket, key, std::fs::read(fixture("plain.json")).unwrap());
    env.put(
        bucket,
        key,
        std::fs::read(fixture("special_values.json")).unwrap(),
    );
    let mut ev = sample_event("batch-ops-1.0.json");
    let task = &mut ev["tasks"][0];
    assert_eq!(task["s3Key"], json!("k6-results/backfill/run+8%2Bb.json"));
    task["s3BucketArn"] = json!(format!("arn:aws:s3:::{bucket}"));
    task["s3VersionId"] = json!(v1.version_id);
    let task_id = task["taskId"].as_str().unwrap().to_owned();
    let (want, want_r) = expected(&fixture("plain.json"), key);
    let results = batch(&ev, "1.0");
    assert_eq!(
        results,
        [(
            task_id,
            "Succeeded".to_owned(),
            format!(
                "complete: {} points, {} measures written, 0 records dead-lettered",
                want_r.points, want_r.measures
            )
        )],
        "Batch 1.0"
    );
    assert_same(
        &env.stored(),
        &want,
        "Batch 1.0: the pinned version's points",
    );

    // 3. Batch Operations 2.0: the sample's encoded key (UTF-8, `+`, `=`),
    // latest version, plus a task whose object does not exist: each task
    // gets its own result.
    env.strict().reset();
    let key = "k6-results/backfill/résumé run=9.ndjson";
    env.put(
        bucket,
        key,
        support::gunzip(&std::fs::read(fixture("offset.json.gz")).unwrap()),
    );
    let mut ev = sample_event("batch-ops-2.0.json");
    assert_eq!(
        ev["tasks"][0]["s3Key"],
        json!("k6-results/backfill/r%C3%A9sum%C3%A9+run%3D9.ndjson")
    );
    ev["tasks"][0]["s3Bucket"] = json!(bucket);
    let missing = json!({"taskId": "bWlzc2luZw", "s3Bucket": bucket,
        "s3Key": s3_encode("k6-results/backfill/gone 1.json"), "s3VersionId": null});
    ev["tasks"].as_array_mut().unwrap().push(missing);
    let task_id = ev["tasks"][0]["taskId"].as_str().unwrap().to_owned();
    let (want, want_r) = expected(&fixture("offset.json.gz"), key);
    let results = batch(&ev, "2.0");
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(
        results[0],
        (
            task_id,
            "Succeeded".to_owned(),
            format!(
                "complete: {} points, {} measures written, 0 records dead-lettered",
                want_r.points, want_r.measures
            )
        ),
        "Batch 2.0"
    );
    let (id, code, text) = &results[1];
    assert_eq!(
        (id.as_str(), code.as_str()),
        ("bWlzc2luZw", "PermanentFailure")
    );
    assert!(
        text.starts_with("not_found: ") && text.contains("k6-results/backfill/gone 1.json"),
        "{text}"
    );
    assert_same(&env.stored(), &want, "Batch 2.0");
    assert!(env.relay.take().is_empty(), "no continuation was needed");

    drop(f);
    eprintln!(
        "[lambda_e2e] EventBridge and Batch Operations done in {:.1?}",
        t0.elapsed()
    );
}

/// The chain of the issue "objects of any size", part 1: a big real k6
/// result (≥ 300k points: `K6TS_E2E_BIG`, default
/// `target/bench/big.json.gz` from `scripts/fixtures/big.sh`) with a 1 s
/// work budget. Every link after the first goes on from its checkpoint (a
/// ranged GET from the access point on), so the chain completes with every
/// point stored once and inflates the object about once in total; the same
/// event again stores nothing new. Run by `scripts/resume-e2e.sh` (it
/// takes minutes: ignored in the normal suite). `K6TS_E2E_LAMBDA_BIN` runs
/// another binary (the script's release build).
#[test]
#[ignore]
fn lambda_big_object_chain() {
    let bin = e2e_lambda_bin();
    let env = Env::start();
    let BigObject {
        up,
        plain,
        want,
        want_report: want_r,
    } = env.put_big("k6-big-chain", "k6-results/big.json.gz");
    let f = env.start_function(
        &bin,
        &[
            ("K6TS_WORK_BUDGET_SECONDS", "1"),
            ("K6TS_MAX_CONTINUATIONS", "200"),
        ],
    );
    let event = s3_event("s3-put-gzip.json", &[&up], false);
    let run_chain = |what: &str| {
        let t = Instant::now();
        let mut reports = vec![env.reports(&f, &event).remove(0)];
        while reports.last().unwrap().outcome == Some(Outcome::Continued) {
            let got = env.relay.take();
            assert_eq!(got.len(), 1, "{what}: one continuation per link");
            let cont = &got[0].payload["continuation"];
            assert!(
                cont["checkpoint"]["key"].is_string(),
                "{what}: link {} went on without a checkpoint: {cont}",
                reports.len()
            );
            assert!(reports.len() < 200, "{what}: the chain does not end");
            reports.push(env.reports(&f, &got[0].payload).remove(0));
        }
        let wall = t.elapsed().as_secs_f64();
        let last = reports.last().unwrap().clone();
        let inflated: u64 = reports.iter().map(|r| r.bytes_decompressed).sum();
        let read: u64 = reports.iter().map(|r| r.bytes_read).sum();
        let per_link: Vec<u64> = reports.iter().map(|r| r.batches_written).collect();
        eprintln!(
            "[lambda_e2e] {what}: {} links in {wall:.1} s; read {read} of {} bytes, inflated {inflated} bytes for {plain} ({:.3}x); requests written per link (cumulative) {per_link:?}",
            reports.len(),
            up.size,
            inflated as f64 / plain as f64
        );
        assert_eq!(last.outcome, Some(Outcome::Complete), "{what}: {last:#?}");
        assert_eq!(last.chain_bytes_decompressed, inflated, "{what}");
        assert_eq!(last.chain_bytes_read, read, "{what}");
        assert!(
            inflated * 4 <= plain * 5,
            "{what}: the chain inflated {inflated} bytes of a {plain}-byte object"
        );
        assert!(reports.iter().all(|r| r.batches_skipped == 0), "{what}");
        assert_complete(&last, &want_r, what);
        assert!(
            env.list(&up.bucket, "k6-timestream-state/").is_empty(),
            "{what}: every checkpoint deleted"
        );
        reports.len()
    };
    let links = run_chain("big object, 1 s budget");
    assert!(links >= 3, "{links} links: the budget did stop the runs");
    // (k6 output may hold identical records: written, stored once.)
    let dups = want_r.identical_duplicates;
    let stats = env.strict().stats();
    assert_eq!(
        (
            stats.records_stored,
            stats.records_duplicate,
            stats.records_rejected
        ),
        (want_r.records - dups, dups, 0),
        "every record stored once: {stats:?}"
    );
    assert_same(&env.stored(), &want, "big object chain");

    // The same event again: the same requests, all duplicates.
    run_chain("the same event again");
    let again = env.strict().stats();
    assert_eq!(
        (
            again.records_stored,
            again.records_duplicate,
            again.records_rejected
        ),
        (want_r.records - dups, dups + want_r.records, 0),
        "nothing new stored: {again:?}"
    );
    assert_same(&env.stored(), &want, "big object chain, again");
}
