//! End to end: a big object fans out into segments. The real
//! `k6-timestream-lambda` binary under `cargo lambda watch`, S3 on moto (the
//! plan, the segment reports and the conditional `done` marker are real S3
//! calls), the strict Timestream endpoint; the segment invocations the
//! function sends go through the Invoke relay and are delivered by the test
//! out of order. Every point is stored once, nothing is rejected, the
//! object is inflated little more than twice in total, and the same event
//! again stores nothing new.

mod support;

use k6_timestream::core::report::{Outcome, RunReport};
use serde_json::Value;
use std::io::Write;
use support::lambda::*;
use support::measures::assert_same;

fn gzip_level(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Delivers `first`, then every segment event the function hands to the
/// relay, latest first (so segments run out of their order), until none is
/// left; every report in delivery order.
fn run_fan_out(env: &Env, f: &Function, first: &Value) -> Vec<RunReport> {
    let mut reports = vec![env.reports(f, first).remove(0)];
    let mut pending: Vec<Value> = Vec::new();
    loop {
        for inv in env.relay.take() {
            assert!(
                inv.payload["segment"]["number"].is_u64(),
                "only segment events are sent: {}",
                inv.payload
            );
            assert_eq!(inv.invocation_type.as_deref(), Some("Event"));
            pending.push(inv.payload);
        }
        let Some(ev) = pending.pop() else { break };
        assert!(reports.len() < 200, "the fan-out does not end");
        reports.extend(env.reports(f, &ev));
    }
    reports
}

/// A merged report of every point of the object (`want`: what `convert`
/// makes of it), each written, none rejected or dead-lettered.
fn assert_every_point_written(last: &RunReport, want: &RunReport, what: &str) {
    assert_eq!(
        (last.points, last.measures, last.lines),
        (want.points, want.measures, want.lines),
        "{what}: {last:#?}"
    );
    assert_eq!(last.written_measures, last.measures, "{what}: {last:#?}");
    assert_eq!(
        (last.dead_lettered, last.rejected_records),
        (0, 0),
        "{what}: {last:#?}"
    );
}

#[test]
fn a_big_object_fans_out_into_segments_and_stores_every_point_once() {
    let env = Env::start();
    let bucket = "k6-fan-out";
    env.create_bucket(bucket, true);
    let key = "k6-results/seven runs.json.gz";
    let raw = k6_runs(7);
    let plain = raw.len() as u64;
    let local = env.dir.path().join("seven-runs.json");
    std::fs::write(&local, &raw).unwrap();
    let (want, want_r) = expected(&local, key);
    // zlib's level 6 ends a deflate block every few hundred KiB, as k6's
    // own gzip does: access points to start segments from.
    let up = env.put(bucket, key, gzip_level(&raw, 6));
    let f = env.start_function(
        LAMBDA_BIN,
        &[
            ("K6TS_SEGMENT_BYTES", "1048576"),
            ("K6TS_MAX_PARALLEL", "3"),
        ],
    );
    let event = s3_event("s3-put-gzip.json", &[&up], false);
    let reports = run_fan_out(&env, &f, &event);
    let first = &reports[0];
    assert_eq!(first.outcome, Some(Outcome::Continued), "{first:#?}");
    let segments = first.segments;
    assert!(segments >= 4, "{segments} segments");
    let finals: Vec<&RunReport> = reports
        .iter()
        .filter(|r| r.outcome == Some(Outcome::Complete) && r.segments == segments)
        .collect();
    assert_eq!(finals.len(), 1, "one merged report: {reports:#?}");
    let last = finals[0];
    eprintln!(
        "[lambda_fanout] {segments} segments, {} invocations; inflated {} bytes for {plain} ({:.2}x), read {} of {} bytes",
        reports.len(),
        last.chain_bytes_decompressed,
        last.chain_bytes_decompressed as f64 / plain as f64,
        last.chain_bytes_read,
        up.size
    );
    assert_eq!(
        reports.len() as u64,
        1 + segments,
        "one invocation per segment"
    );
    assert_every_point_written(last, &want_r, "fan-out");
    // The index pass inflates the object once, the segments once more
    // plus their look-backs and stopping overshoot.
    assert!(
        last.chain_bytes_decompressed * 10 <= plain * 27,
        "inflated {} bytes of a {plain}-byte object",
        last.chain_bytes_decompressed
    );
    let stats = env.strict().stats();
    assert_eq!(stats.records_rejected, 0, "{stats:?}");
    assert_same(&env.stored(), &want, "fanned-out object");
    assert!(
        env.list(bucket, "k6-timestream-state/").is_empty(),
        "the state is deleted"
    );

    // The same event again: the same records (duplicates), nothing new,
    // nothing rejected.
    let stored_before = stats.records_stored;
    let again = run_fan_out(&env, &f, &event);
    assert!(again
        .iter()
        .any(|r| r.outcome == Some(Outcome::Complete) && r.segments == segments));
    let stats = env.strict().stats();
    assert_eq!(
        (stats.records_stored, stats.records_rejected),
        (stored_before, 0),
        "nothing new: {stats:?}"
    );
    assert_same(&env.stored(), &want, "fanned-out object, again");

    // The same text as one deflate block (zlib-rs level 1 keeps a single
    // static block open): no access points, so segments would each inflate
    // everything before them; the object is written serially instead.
    let one_block = env.put(bucket, "k6-results/one block.json.gz", gzip_level(&raw, 1));
    let serial = run_fan_out(
        &env,
        &f,
        &s3_event("s3-put-gzip.json", &[&one_block], false),
    );
    assert_eq!(serial.len(), 1, "no segments: {serial:#?}");
    let r = &serial[0];
    let (_, want_one) = expected(&local, "k6-results/one block.json.gz");
    assert_complete(r, &want_one, "one-block gzip, serially");
    assert_eq!(r.segments, 0);
}

/// The big-object fan-out: a ≥300k-point real k6 result (default
/// `target/bench/big.json.gz` from `scripts/fixtures/big.sh`, k6's own gzip)
/// with `K6TS_SEGMENT_BYTES` set to a fifth of its inflated size: at least
/// four segments, every point stored once, nothing rejected, the object
/// inflated at most 2.2 times in total (the index pass, the segments and
/// their look-backs); the same event again stores nothing new. Run by
/// `scripts/resume-e2e.sh` (minutes in a debug build: ignored in the normal
/// suite); `K6TS_E2E_LAMBDA_BIN` runs another binary.
#[test]
#[ignore]
fn lambda_big_object_fan_out() {
    let bin = e2e_lambda_bin();
    let env = Env::start();
    let BigObject {
        up,
        plain,
        want,
        want_report: want_r,
    } = env.put_big("k6-big-fan-out", "k6-results/big.json.gz");
    let segment_bytes = (plain / 5).to_string();
    let f = env.start_function(
        &bin,
        &[
            ("K6TS_SEGMENT_BYTES", segment_bytes.as_str()),
            ("K6TS_MAX_PARALLEL", "8"),
        ],
    );
    // The third round: another function whose segments run out of time
    // (a 1 s work budget) and go on in parts.
    let budget = env.start_function(
        &bin,
        &[
            ("K6TS_SEGMENT_BYTES", segment_bytes.as_str()),
            ("K6TS_MAX_PARALLEL", "8"),
            ("K6TS_WORK_BUDGET_SECONDS", "1"),
            ("K6TS_MAX_CONTINUATIONS", "200"),
        ],
    );
    let event = s3_event("s3-put-gzip.json", &[&up], false);
    for (round, f) in [
        ("first delivery", &f),
        ("the same event again", &f),
        ("segments in parts (1 s budget)", &budget),
    ] {
        let before = env.strict().stats();
        let t = std::time::Instant::now();
        let reports = run_fan_out(&env, f, &event);
        let wall = t.elapsed().as_secs_f64();
        let segments = reports[0].segments;
        let parts = reports.len() as u64 - 1;
        assert!(segments >= 4, "{round}: {segments} segments");
        let last = reports
            .iter()
            .find(|r| r.outcome == Some(Outcome::Complete) && r.segments == segments)
            .unwrap_or_else(|| panic!("{round}: no merged report: {reports:#?}"));
        eprintln!(
            "[lambda_fanout] big object, {round}: {segments} segments ({parts} invocations) in {wall:.1} s; inflated {} bytes for {plain} ({:.3}x), read {} of {} bytes",
            last.chain_bytes_decompressed,
            last.chain_bytes_decompressed as f64 / plain as f64,
            last.chain_bytes_read,
            up.size
        );
        assert_every_point_written(last, &want_r, round);
        if f.proc.pid() == budget.proc.pid() {
            assert!(parts > segments, "{round}: {parts} invocations");
        } else {
            assert_eq!(parts, segments, "{round}: one invocation per segment");
            assert!(
                last.chain_bytes_decompressed * 5 <= plain * 11,
                "{round}: inflated {} bytes of a {plain}-byte object",
                last.chain_bytes_decompressed
            );
        }
        let stats = env.strict().stats();
        assert_eq!(stats.records_rejected, 0, "{round}: {stats:?}");
        if before.records_stored > 0 {
            assert_eq!(
                stats.records_stored, before.records_stored,
                "{round}: nothing new"
            );
        }
        assert_same(&env.stored(), &want, round);
        assert!(
            env.list(&up.bucket, "k6-timestream-state/").is_empty(),
            "{round}: the state is deleted"
        );
    }
}
