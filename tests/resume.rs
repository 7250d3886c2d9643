//! Checkpoints on real k6 output: every fixture, and a bigger input made of
//! time-shifted copies of `mixed.json.gz` (plain, one gzip member, several
//! members), run as chains of stopped and resumed runs (`support::resume`),
//! hand out exactly the requests of one uninterrupted run; so do inputs
//! built to put a collision, and a MULTI group, across a cut. Also: what a
//! chain reads and inflates in total, and how big checkpoints get.
//!
//! The generated-input version of the property is in `properties.rs`.

mod support;

use k6_timestream::core::collision::DEFAULT_COLLISION_WINDOW_SECS;
use k6_timestream::core::convert::ConvertOptions;
use k6_timestream::core::input::Progress;
use k6_timestream::core::model::{DataModel, Dimension, Record, Values};
use k6_timestream::core::pipeline::{self, Encoder, PipelineOptions};
use k6_timestream::core::report::RunReport;
use k6_timestream::core::resume::{self, Checkpoint, Start};
use k6_timestream::sinks::timestream::{Batcher, WriteRequest};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;
use support::lambda::k6_runs;
use support::resume::{run_chain, run_chain_with, Chain, Link};
use support::{fixture, gunzip, gzip};

fn options(model: DataModel) -> PipelineOptions {
    PipelineOptions {
        convert: ConvertOptions {
            model,
            testid: Some("resume".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// One uninterrupted run: its requests and report.
fn whole(input: &[u8], opts: &PipelineOptions) -> (Vec<WriteRequest>, RunReport) {
    let mut requests = Vec::new();
    let mut batcher = Batcher::new(opts.convert.model, DEFAULT_COLLISION_WINDOW_SECS);
    let out = pipeline::run(
        input,
        "input",
        opts,
        &mut batcher,
        Arc::new(Progress::default()),
        &mut |req, _| {
            requests.push(req);
            ControlFlow::Continue(())
        },
    );
    assert!(out.error.is_none(), "{:?}", out.error);
    (requests, out.report)
}

/// The report without this run's own byte counters.
fn conversion(r: &RunReport) -> RunReport {
    RunReport {
        bytes_read: 0,
        bytes_decompressed: 0,
        ..r.clone()
    }
}

fn chain(input: &[u8], opts: &PipelineOptions, plan: &[Link]) -> Chain {
    run_chain(input, "input", opts, DEFAULT_COLLISION_WINDOW_SECS, plan)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The chain hands out exactly the uninterrupted run's requests and ends
/// with its report.
fn assert_same(input: &[u8], opts: &PipelineOptions, plan: &[Link], what: &str) -> Chain {
    let (want, want_report) = whole(input, opts);
    let c = chain(input, opts, plan);
    assert_eq!(c.sent.len(), want.len(), "{what}: request count");
    for (got, want) in c.sent.iter().zip(&want) {
        assert!(got == want, "{what}: request {} differs", want.seq);
    }
    assert_eq!(
        conversion(c.reports.last().unwrap()),
        conversion(&want_report),
        "{what}: final report"
    );
    c
}

/// Plans: every request in its own link; links that also leave requests
/// queued; uneven links.
fn plans() -> Vec<(&'static str, Vec<Link>)> {
    let one = |send, queue| Link { send, queue };
    vec![
        ("one request per link", vec![one(1, 0); 400]),
        ("queued requests", vec![one(1, 2); 200]),
        (
            "uneven",
            [one(0, 1), one(3, 0), one(0, 0), one(2, 5), one(7, 1)]
                .into_iter()
                .cycle()
                .take(150)
                .collect(),
        ),
    ]
}

#[test]
fn every_fixture_resumes_exactly() {
    for name in [
        "plain.json",
        "mixed.json.gz",
        "multi_member.json.gz",
        "notags.json.gz",
        "offset.json.gz",
        "offset_negative.json.gz",
        "edge_cases.ndjson",
        "special_values.json",
    ] {
        let input = std::fs::read(fixture(name)).unwrap();
        for model in [DataModel::Multi, DataModel::Single] {
            for (plan_name, plan) in plans() {
                let what = format!("{name}, {model:?}, {plan_name}");
                let c = assert_same(&input, &options(model), &plan, &what);
                assert!(c.reports.len() > 1 || c.sent.len() <= 1, "{what}: stopped");
            }
        }
    }
}

/// One uninterrupted run with `fresh()`'s batcher.
fn whole_with(
    input: &[u8],
    opts: &PipelineOptions,
    fresh: &dyn Fn() -> Batcher,
) -> Vec<WriteRequest> {
    let mut requests = Vec::new();
    let out = pipeline::run(
        input,
        "input",
        opts,
        &mut fresh(),
        Arc::new(Progress::default()),
        &mut |req, _| {
            requests.push(req);
            ControlFlow::Continue(())
        },
    );
    assert!(out.error.is_none(), "{:?}", out.error);
    requests
}

/// With a group window the stopped runs' checkpoints hold gathered and
/// sorted records not yet in a request: the chain still hands out exactly
/// the uninterrupted run's requests (windows of 300 records, so that cuts
/// fall inside windows, between a window's requests and in the finish;
/// and the default window on the bigger input).
#[test]
fn grouping_windows_resume_exactly() {
    use k6_timestream::sinks::timestream::DEFAULT_GROUP_WINDOW;
    let big = gzip(&k6_runs(3));
    let mut inputs: Vec<(String, Vec<u8>, usize)> =
        ["mixed.json.gz", "plain.json", "edge_cases.ndjson"]
            .iter()
            .map(|n| (n.to_string(), std::fs::read(fixture(n)).unwrap(), 300))
            .collect();
    inputs.push(("3 k6 runs".into(), big, DEFAULT_GROUP_WINDOW));
    for (name, input, window) in &inputs {
        for model in [DataModel::Multi, DataModel::Single] {
            let opts = options(model);
            let fresh =
                || Batcher::with_group_window(model, DEFAULT_COLLISION_WINDOW_SECS, *window);
            let want = whole_with(input, &opts, &fresh);
            // Not in arrival order: the window regrouped the records.
            let (arrival, _) = whole(input, &opts);
            assert_ne!(want, arrival, "{name} {model:?}: grouping changed nothing");
            for (plan_name, plan) in plans() {
                let what = format!("{name}, {model:?}, window {window}, {plan_name}");
                let c = run_chain_with(input, "input", &opts, &fresh, &plan)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(
                    c.reports.len() > 1 || want.len() <= 1,
                    "{what}: never stopped"
                );
                assert_eq!(c.sent.len(), want.len(), "{what}: request count");
                for (got, want) in c.sent.iter().zip(&want) {
                    assert!(got == want, "{what}: request {} differs", want.seq);
                }
            }
        }
    }
}

/// gzip at the default level, as k6 writes it (Go's compress/gzip): a
/// deflate block every 16K symbols, ~700 KB of k6 JSON. (The test support's
/// `gzip` is level 1, where zlib-rs writes far longer blocks: see
/// `sparse_blocks_resume_exactly`.)
fn gzip6(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut e, data).unwrap();
    e.finish().unwrap()
}

/// Enough k6 output for several access points (~8.6 MB), as one gzip
/// member, as several (gzip'd parts concatenated, cut inside lines), and
/// plain: the chain reads on from its checkpoints (ranged reads past the
/// start), inflates about the input once in total, and hands out the
/// uninterrupted run's requests.
#[test]
fn a_big_input_resumes_through_access_points() {
    let raw = k6_runs(8);
    let thirds = [raw.len() / 3 + 17, 2 * raw.len() / 3 + 5];
    let mut members = gzip6(&raw[..thirds[0]]);
    members.extend(gzip6(&raw[thirds[0]..thirds[1]]));
    members.extend(gzip6(&raw[thirds[1]..]));
    let plan = vec![Link { send: 5, queue: 2 }; 100];
    for (what, input) in [
        ("gzip", gzip6(&raw)),
        ("three gzip members", members),
        ("plain", raw.clone()),
    ] {
        let opts = options(DataModel::Multi);
        let c = assert_same(&input, &opts, &plan, what);
        let links = c.reports.len();
        assert!(links >= 5, "{what}: {links} links");
        // Every link after the first reads on from where the one before it
        // stopped, or finds all it needs in its checkpoint.
        assert!(
            c.offsets[1..].iter().all(|o| o.is_none_or(|o| o > 0)),
            "{what}: read from {:?}",
            c.offsets
        );
        let inflated: u64 = c.reports.iter().map(|r| r.bytes_decompressed).sum();
        let read: u64 = c.reports.iter().map(|r| r.bytes_read).sum();
        let ratio = inflated as f64 / raw.len() as f64;
        eprintln!(
            "{what}: {links} links, inflated {inflated} bytes for {} ({ratio:.3}x), read {read} of {}; checkpoints {:?} bytes",
            raw.len(),
            input.len(),
            c.checkpoint_bytes
        );
        // A link inflates again at most about one deflate block (~700 KB)
        // of what the link before it inflated.
        assert!(
            inflated <= raw.len() as u64 + links as u64 * (1 << 20),
            "{what}: inflated {inflated} bytes for {}",
            raw.len()
        );
        assert!(read <= input.len() as u64 + links as u64 * (1 << 20));
    }
}

fn point(value: u32, time: &str, tag: &str) -> String {
    format!(
        r#"{{"metric":"m","type":"Point","data":{{"time":"{time}","value":{value},"tags":{{"k":"{tag}"}}}}}}"#
    )
}

/// 250 points of one series at one instant with different values: every
/// record after the first is moved by +1 ns past the ones before it. Cut
/// after the first request, the resumed run still knows the first 100
/// (the collision guard is in the checkpoint) and moves the rest past them.
#[test]
fn collisions_across_a_cut_are_resolved_as_in_one_run() {
    let mut text = String::new();
    for v in 0..250 {
        text += &point(v, "2026-11-25T10:00:00Z", "x");
        text.push('\n');
    }
    let opts = options(DataModel::Single);
    for input in [text.clone().into_bytes(), gzip(text.as_bytes())] {
        let c = assert_same(
            &input,
            &opts,
            &[Link { send: 1, queue: 0 }],
            "colliding points",
        );
        let times: Vec<i64> = c
            .sent
            .iter()
            .flat_map(|q| q.records.iter().map(|r| r.time_ns))
            .collect();
        let t0 = times[0];
        assert_eq!(times, (t0..t0 + 250).collect::<Vec<_>>());
        assert_eq!(c.reports.last().unwrap().nudged, 249);
        assert_eq!(c.reports.len(), 2);
    }
}

/// A MULTI group is in progress at every stop (its first point is what
/// ended the group before it, completing the request that was refused).
/// Its points from before the cut are in the checkpoint, and the record
/// that comes out after the cut holds points of lines on both sides.
#[test]
fn a_group_across_a_cut_is_one_record() {
    let mut text = String::new();
    // 100 one-point groups fill the first request when the 101st group
    // begins; it has five points, and the cut falls after its first one.
    for i in 0..100 {
        text += &point(i, &format!("2026-11-25T10:00:{:02}.{i:03}Z", i % 60), "x");
        text.push('\n');
    }
    for m in ["a", "b", "c", "d", "e"] {
        text += &point(7, "2026-11-25T11:00:00Z", "x")
            .replace(r#""metric":"m""#, &format!(r#""metric":"{m}""#));
        text.push('\n');
    }
    let opts = options(DataModel::Multi);
    let input = text.into_bytes();
    let (_, checkpoint) = resume::run(
        &input[..],
        "input",
        &opts,
        Start::Fresh(Batcher::new(DataModel::Multi, 60)),
        Arc::default(),
        &mut Err,
    );
    let checkpoint = checkpoint.unwrap();
    assert_eq!(
        checkpoint.state.input.lines, 101,
        "stopped after the group's first point"
    );
    assert_eq!(checkpoint.unsent.len(), 1);
    assert!(!checkpoint.state.input.finished);
    let c = assert_same(
        &input,
        &opts,
        &[Link { send: 0, queue: 0 }],
        "group across the cut",
    );
    assert_eq!(c.reports.len(), 2);
    let last = c.sent.last().unwrap().records.last().unwrap();
    assert_eq!(last.lines, vec![101, 102, 103, 104, 105]);
    assert_eq!(last.measure_count(), 5);
}

/// How big a checkpoint gets: with a collision guard at its cap
/// (`MAX_REMEMBERED` records) it is dominated by the guard's hashes.
#[test]
fn checkpoint_size_with_a_full_collision_guard() {
    use k6_timestream::core::collision::MAX_REMEMBERED;
    let input = std::fs::read(fixture("plain.json")).unwrap();
    let opts = options(DataModel::Single);
    let (_, checkpoint) = resume::run(
        &input[..],
        "input",
        &opts,
        Start::Fresh(Batcher::new(DataModel::Single, 3600)),
        Arc::default(),
        &mut Err,
    );
    let mut checkpoint = checkpoint.unwrap();
    let small = checkpoint.encode().len();
    let misses = checkpoint.state.report.collision_window_misses;
    let mut report = RunReport::default();
    for i in 0..MAX_REMEMBERED as i64 {
        let r = Record {
            dimensions: vec![Dimension {
                name: "url".into(),
                value: format!("http://127.0.0.1/item/{}", i % 50),
            }],
            measure_name: "http_req_duration".into(),
            values: Values::Single(format!("{}", i % 997)),
            // After the fixture's points (2026), 100 µs apart.
            time_ns: 1_800_000_000_000_000_000 + i * 100_000,
            lines: vec![i as u64],
            metadata_mask: 0,
        };
        checkpoint.encoder.push(r, &mut report);
    }
    assert_eq!(report.collision_window_misses, misses, "all remembered");
    let t = Instant::now();
    let bytes = checkpoint.encode();
    let encode = t.elapsed();
    let t = Instant::now();
    let back = Checkpoint::<Batcher>::decode(&bytes).unwrap();
    let decode = t.elapsed();
    eprintln!(
        "checkpoint: {small} bytes after plain.json; with {MAX_REMEMBERED} remembered records {} bytes (encode {encode:?}, decode {decode:?}, debug build)",
        bytes.len()
    );
    // (Not byte-identical: hash maps come back in another order.)
    assert_eq!(
        gunzip(&back.encode()).len(),
        gunzip(&bytes).len(),
        "decode → encode keeps the content"
    );
    assert!(bytes.len() < 32 << 20, "{} bytes", bytes.len());
}

/// A checkpoint reads back to the same state (encoding it again gives the
/// same content, up to the order of hash maps), and damage is caught.
#[test]
fn a_stored_checkpoint_reads_back_unchanged() {
    let input = gzip(&k6_runs(2));
    let opts = options(DataModel::Multi);
    let mut n = 0;
    let (_, checkpoint) = resume::run(
        &input[..],
        "input",
        &opts,
        Start::Fresh(Batcher::new(DataModel::Multi, 60)),
        Arc::default(),
        &mut |req| {
            n += 1;
            if n <= 10 {
                Ok(())
            } else {
                Err(req)
            }
        },
    );
    let bytes = checkpoint.unwrap().encode();
    let back = Checkpoint::<Batcher>::decode(&bytes).unwrap();
    assert_eq!(gunzip(&back.encode()).len(), gunzip(&bytes).len());
    assert!(back.state.input.lines > 0 && back.unsent.len() == 1);
    // Damage is caught (gzip's CRC, the formats' own checks).
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    assert!(Checkpoint::<Batcher>::decode(&bad).is_err());
    assert!(Checkpoint::<Batcher>::decode(&gzip(b"K6TS-CKPT\x02")).is_err());
    assert!(Checkpoint::<Batcher>::decode(b"not gzip").is_err());
}

/// zlib-rs's level 1 (the test support's `gzip`) closes a deflate block
/// only every ~128 KiB of compressed output (over 1 MB of k6 JSON), so
/// access points are far apart: links may have to inflate from the
/// stream's start again. Still exact.
#[test]
fn sparse_blocks_resume_exactly() {
    let raw = k6_runs(6);
    let input = gzip(&raw);
    let c = assert_same(
        &input,
        &options(DataModel::Multi),
        &[Link { send: 3, queue: 1 }; 20],
        "sparse blocks",
    );
    assert!(c.reports.len() >= 10, "{} links", c.reports.len());
    eprintln!("sparse blocks: read from {:?}", c.offsets);
}

/// k6 CSV: the header's layout and the timestamp format its first row
/// fixed are part of the checkpoint, so every link after the first (which
/// reads on past the header) converts its rows as one run would, and the
/// whole-second nudges (the collision guard's next-free memo) go on as in
/// one run: byte-identical requests.
#[test]
fn csv_resumes_exactly() {
    for name in [
        "csv_unix.csv",
        "csv_unix_nano.csv.gz",
        "csv_rfc3339_nano.csv.gz",
    ] {
        let input = std::fs::read(fixture(name)).unwrap();
        for model in [DataModel::Multi, DataModel::Single] {
            for (plan_name, plan) in plans() {
                let what = format!("{name}, {model:?}, {plan_name}");
                let c = assert_same(&input, &options(model), &plan, &what);
                assert!(c.reports.len() > 1, "{what}: stopped");
                assert_eq!(c.reports.last().unwrap().format, "csv", "{what}");
            }
        }
    }
    // Many points of one series per second (whole seconds: long nudge
    // chains across cuts), quoted cells with commas, quotes and newlines,
    // blank lines between records, plain and gzip.
    let mut csv =
        String::from("metric_name,timestamp,metric_value,name,status,url,extra_tags,metadata\n");
    for i in 0..6000u32 {
        let url = [
            "\"https://x/a,b\"",
            "\"https://x/\"\"q\"\"\"",
            "\"https://x/multi\nline\"",
        ][i as usize % 3];
        csv += &format!(
            "http_reqs,{},1.000000,n,200,{url},scenario=s&group=::g,vu={}\n",
            1_709_292_845 + i / 1000,
            i % 7
        );
        if i % 500 == 0 {
            csv += "\n";
        }
    }
    for (what, input) in [
        ("plain", csv.clone().into_bytes()),
        ("gzip", gzip6(csv.as_bytes())),
    ] {
        for model in [DataModel::Multi, DataModel::Single] {
            let what = format!("generated CSV, {what}, {model:?}");
            let plan = vec![Link { send: 3, queue: 1 }; 200];
            let c = assert_same(&input, &options(model), &plan, &what);
            let last = c.reports.last().unwrap();
            assert!(c.reports.len() > 10, "{what}: {} links", c.reports.len());
            assert_eq!(last.points, 6000, "{what}");
            assert!(last.skipped.is_empty(), "{what}: {:?}", last.skipped);
            assert_eq!(last.identical_duplicates, 0, "{what}");
            assert!(last.nudged > 0, "{what}");
            assert_eq!(
                last.warnings
                    .iter()
                    .filter(|w| w.contains("unix_nano"))
                    .count(),
                1,
                "{what}: {:?}",
                last.warnings
            );
        }
    }
}

use proptest::prelude::*;

/// Points from tiny pools of series, times, metrics and values: most
/// records collide with (or duplicate) one shortly before them, and runs of
/// equal time and tags make MULTI groups; with 100 records a request, cuts
/// fall between colliding records and inside groups all the time.
fn colliding_lines() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0u8..3, 0u8..4, 0u8..3, 0u16..4), 150..700).prop_map(|points| {
        let mut text = String::new();
        for (tag, t, metric, v) in points {
            text += &point(
                u32::from(v),
                &format!("2026-11-25T10:00:0{t}Z"),
                &tag.to_string(),
            )
            .replace(r#""metric":"m""#, &format!(r#""metric":"m{metric}""#));
            text.push('\n');
        }
        text.into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Collisions and groups across cuts come out as in one run.
    #[test]
    fn prop_collisions_and_groups_across_cuts(
        text in colliding_lines(),
        plan in prop::collection::vec((0usize..3, 0usize..2), 1..8),
    ) {
        let plan: Vec<Link> = plan.into_iter().map(|(send, queue)| Link { send, queue }).collect();
        for model in [DataModel::Multi, DataModel::Single] {
            for input in [text.clone(), gzip(&text)] {
                let opts = options(model);
                let (want, _) = whole(&input, &opts);
                let c = chain(&input, &opts, &plan);
                prop_assert!(c.sent == want, "{:?}: {} requests vs {}", model, c.sent.len(), want.len());
            }
        }
    }
}
