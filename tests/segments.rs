//! Fan-out properties: an input indexed, cut into segments and written by
//! independent segment runs stores exactly the measures of one serial run,
//! with no conflicting pair (same dimensions, measure name and time,
//! different values), whatever the cuts; the merged report is the serial
//! one's counts. Generated inputs with collisions (repeated requests of one
//! VU at one time with other values) and MULTI groups across the cuts,
//! tags named like metrics (naming depends on earlier metric names),
//! plain, single- and multi-member gzip.

use k6_timestream::core::collision::DEFAULT_COLLISION_WINDOW_SECS;
use k6_timestream::core::convert::ConvertOptions;
use k6_timestream::core::input::{InputOptions, Progress};
use k6_timestream::core::model::{DataModel, Dimension, Record, Values};
use k6_timestream::core::pipeline::{self, PipelineOptions};
use k6_timestream::core::report::RunReport;
use k6_timestream::core::segment::{self, Index, SegmentSpec};
use k6_timestream::sinks::timestream::Batcher;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::ops::ControlFlow;
use std::sync::Arc;

fn options(model: DataModel) -> PipelineOptions {
    PipelineOptions {
        convert: ConvertOptions {
            model,
            testid: Some("t".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn serial(input: &[u8], opts: &PipelineOptions) -> (Vec<Record>, RunReport) {
    let mut b = Batcher::new(opts.convert.model, DEFAULT_COLLISION_WINDOW_SECS);
    let mut recs = Vec::new();
    let out = pipeline::run(input, "t", opts, &mut b, Arc::default(), &mut |r, _| {
        recs.extend(r.records);
        ControlFlow::Continue(())
    });
    assert!(out.error.is_none());
    (recs, out.report)
}

fn indexed(input: &[u8], spacing: u64) -> Index {
    segment::index(
        input,
        spacing,
        &InputOptions::default(),
        &Progress::default(),
    )
    .unwrap()
}

/// Each segment on its own, reading only from its candidate on. With
/// `wraps`, a segment's run wraps up early after `wraps[j]` lines of its
/// range (its j-th part, up to `wraps.len()` parts; 0: it does not), and
/// the next part goes on from where it ended, as the Lambda's segment
/// parts do when time runs out.
fn fanned_in_parts(
    input: &[u8],
    index: &Index,
    plan: &[SegmentSpec],
    opts: &PipelineOptions,
    wraps: &[u64],
) -> (Vec<Vec<Record>>, Vec<RunReport>) {
    let mut all = Vec::new();
    let mut reports = Vec::new();
    for spec in plan {
        let from = segment::position(index, &index.candidates[spec.read_from]);
        let off = segment::source_offset(from.as_ref()) as usize;
        let mut part_spec = spec.clone();
        for part in 0.. {
            let mut b = Batcher::new(opts.convert.model, DEFAULT_COLLISION_WINDOW_SECS);
            let mut recs = Vec::new();
            let after = wraps.get(part).copied().unwrap_or(0);
            let asked = std::cell::Cell::new(0u64);
            let wrap_up = || {
                asked.set(asked.get() + 1);
                after > 0 && asked.get() >= after
            };
            let out = segment::run_segment(
                &input[off..],
                "t",
                opts,
                &index.metrics,
                &part_spec,
                from.clone(),
                &mut b,
                Arc::default(),
                &wrap_up,
                &mut |r, _| {
                    recs.extend(r.records);
                    ControlFlow::Continue(())
                },
            );
            assert!(out.error.is_none(), "{:?}", out.error);
            assert!(out.report.complete);
            let mut report = out.report.clone();
            if part > 0 {
                // A later part is not another segment.
                report.segments = 0;
            }
            all.push(recs);
            reports.push(report);
            if !out.wrapped_up(spec) {
                break;
            }
            let next = out.end_line.expect("a part ends before its segment");
            assert!(next > part_spec.start_line, "a part makes progress");
            part_spec.start_line = next;
        }
    }
    (all, reports)
}

type Key = (Vec<Dimension>, String, i64);

/// Timestream's view: one stored value (measure set) per key; a second,
/// different value for a key is a conflict.
fn stored(records: &[Record], conflicts: &mut Vec<Key>) -> BTreeMap<Key, Vec<(String, String)>> {
    let mut m = BTreeMap::new();
    for r in records {
        let mut v = match &r.values {
            Values::Single(x) => vec![(String::new(), x.clone())],
            Values::Multi(ms) => ms.clone(),
        };
        v.sort();
        let k = (r.dimensions.clone(), r.measure_name.clone(), r.time_ns);
        if let Some(old) = m.insert(k.clone(), v.clone()) {
            if old != v {
                conflicts.push(k);
            }
        }
    }
    m
}

/// Requests of VUs 1–2 to URLs a–b, 1 ms apart with up to 3 ms of
/// disorder; `repeat` of them again at once with other values (a
/// collision); the metrics defined at first use; some points tagged
/// `http_reqs` (a tag named like a metric).
fn k6_input(reqs: &[(u8, u8, u8, bool, bool)]) -> Vec<u8> {
    let metrics = ["http_reqs", "http_req_duration", "data_sent"];
    let mut defined = [false; 3];
    let mut s = String::new();
    for (i, &(vu, url, jitter, repeat, clash)) in reqs.iter().enumerate() {
        let ms = i as u64 + u64::from(jitter % 4);
        let time = format!(
            "2026-11-25T10:{:02}:{:02}.{:03}Z",
            ms / 60_000,
            (ms / 1000) % 60,
            ms % 1000
        );
        for copy in 0..(1 + u8::from(repeat)) {
            for (m, name) in metrics.iter().enumerate() {
                if !defined[m] {
                    defined[m] = true;
                    s += &format!(
                        r#"{{"type":"Metric","data":{{"name":"{name}","type":"trend"}},"metric":"{name}"}}"#
                    );
                    s.push('\n');
                }
                let extra = if clash { r#","http_reqs":"x""# } else { "" };
                s += &format!(
                    r#"{{"metric":"{name}","type":"Point","data":{{"time":"{time}","value":{},"tags":{{"vu":"{vu}","url":"{url}"{extra}}}}}}}"#,
                    u32::from(vu) + u32::from(copy) * 7 + m as u32
                );
                s.push('\n');
            }
        }
    }
    s.into_bytes()
}

fn gzip_members(b: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (b.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(b.len());
    for e in ends {
        if e < at {
            continue;
        }
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        z.write_all(&b[at..e]).unwrap();
        out.extend(z.finish().unwrap());
        at = e;
    }
    out
}

fn check(input: &[u8], model: DataModel, segment_bytes: u64, lookback: u64, spacing: u64) {
    check_in_parts(input, model, segment_bytes, lookback, spacing, &[]);
}

fn check_in_parts(
    input: &[u8],
    model: DataModel,
    segment_bytes: u64,
    lookback: u64,
    spacing: u64,
    wraps: &[u64],
) {
    let opts = options(model);
    let (serial_recs, serial_rep) = serial(input, &opts);
    let index = indexed(input, spacing);
    let plan = segment::plan_index(&index, segment_bytes, lookback);
    let (parts, reports) = fanned_in_parts(input, &index, &plan, &opts, wraps);
    let mut none = Vec::new();
    let want = stored(&serial_recs, &mut none);
    assert!(none.is_empty(), "the serial run has no conflict");
    let union: Vec<Record> = parts.iter().flatten().cloned().collect();
    let mut conflicts = Vec::new();
    let got = stored(&union, &mut conflicts);
    assert!(conflicts.is_empty(), "conflicting pairs: {conflicts:?}");
    assert_eq!(got, want, "segments of {plan:?}");
    // Nothing written twice: the records are the serial ones, once each.
    assert_eq!(union.len(), serial_recs.len());
    let merged = segment::merge_reports(&reports);
    assert_eq!(merged.segments, plan.len() as u64);
    for (a, b, what) in [
        (merged.lines, serial_rep.lines, "lines"),
        (merged.points, serial_rep.points, "points"),
        (merged.measures, serial_rep.measures, "measures"),
        (merged.records, serial_rep.records, "records"),
        (merged.nudged, serial_rep.nudged, "nudged"),
        (
            merged.metric_definitions,
            serial_rep.metric_definitions,
            "definitions",
        ),
    ] {
        assert_eq!(a, b, "{what}");
    }
    assert_eq!(merged.adjusted, serial_rep.adjusted);
    assert_eq!(merged.points_by_kind, serial_rep.points_by_kind);
    assert_eq!(merged.first_time, serial_rep.first_time);
    assert_eq!(merged.last_time, serial_rep.last_time);
}

fn req() -> impl Strategy<Value = (u8, u8, u8, bool, bool)> {
    (
        1u8..3,
        0u8..2,
        any::<u8>(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.05),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn segments_store_what_a_serial_run_stores(
        reqs in prop::collection::vec(req(), 1..160),
        multi in any::<bool>(),
        pieces in 1u64..9,
        form in 0u8..3,
        members in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let plain = k6_input(&reqs);
        let input = match form {
            0 => plain.clone(),
            1 => gzip_members(&plain, &[]),
            _ => gzip_members(&plain, &members),
        };
        let model = if multi { DataModel::Multi } else { DataModel::Single };
        let bytes = plain.len() as u64;
        let segment_bytes = bytes.div_ceil(pieces).max(1);
        // A look-back of ~8 requests: past the generator's disorder.
        check(&input, model, segment_bytes, 4096, 512);
    }

    /// Segments whose runs wrap up early (time running out) at arbitrary
    /// lines, each going on in further parts: together they store what
    /// the serial run stores, nothing twice, no conflicting pair, and the
    /// merged counters are the serial run's.
    #[test]
    fn segment_parts_store_what_a_serial_run_stores(
        reqs in prop::collection::vec(req(), 1..160),
        multi in any::<bool>(),
        pieces in 1u64..5,
        gzip in any::<bool>(),
        wraps in prop::collection::vec(0u64..300, 1..5),
    ) {
        let plain = k6_input(&reqs);
        let input = if gzip { gzip_members(&plain, &[]) } else { plain.clone() };
        let model = if multi { DataModel::Multi } else { DataModel::Single };
        let segment_bytes = (plain.len() as u64).div_ceil(pieces).max(1);
        check_in_parts(&input, model, segment_bytes, 4096, 512, &wraps);
    }
}

#[test]
fn a_big_file_fans_out_into_the_planned_segments() {
    let reqs: Vec<_> = (0..3000u32)
        .map(|i| {
            (
                (i % 2) as u8 + 1,
                (i % 3 == 0) as u8,
                (i * 7) as u8,
                i % 11 == 0,
                i % 97 == 0,
            )
        })
        .collect();
    let plain = k6_input(&reqs);
    for input in [
        plain.clone(),
        gzip_members(&plain, &[]),
        gzip_members(&plain, &[100_000, 400_000]),
    ] {
        let index = indexed(&input, 16 * 1024);
        let plan = segment::plan_index(&index, (plain.len() as u64).div_ceil(6), 64 * 1024);
        assert_eq!(plan.len(), 6, "{plan:?}");
        assert!(plan.iter().skip(1).all(|s| s.read_from > 0), "ranged reads");
        check(
            &input,
            DataModel::Multi,
            plain.len() as u64 / 6,
            64 * 1024,
            16 * 1024,
        );
        check(
            &input,
            DataModel::Single,
            plain.len() as u64 / 5,
            64 * 1024,
            16 * 1024,
        );
    }
}

#[test]
fn segments_read_only_their_range_and_look_back() {
    let reqs: Vec<_> = (0..16000u32)
        .map(|i| ((i % 2) as u8 + 1, 0, 0, false, false))
        .collect();
    let plain = k6_input(&reqs);
    let z = gzip_members(&plain, &[]);
    let index = indexed(&z, 16 * 1024);
    let lookback = plain.len() as u64 / 32;
    let plan = segment::plan_index(&index, (plain.len() as u64).div_ceil(4), lookback);
    let opts = options(DataModel::Multi);
    let mut inflated = 0;
    for spec in &plan {
        let from = segment::position(&index, &index.candidates[spec.read_from]);
        let off = segment::source_offset(from.as_ref()) as usize;
        let progress = Arc::new(Progress::default());
        let mut b = Batcher::new(DataModel::Multi, DEFAULT_COLLISION_WINDOW_SECS);
        let out = segment::run_segment(
            &z[off..],
            "t",
            &opts,
            &index.metrics,
            spec,
            from,
            &mut b,
            progress,
            &|| false,
            &mut |_, _| ControlFlow::Continue(()),
        );
        // After its stop the reader inflates on to the next access point
        // (≤ 2 MiB) besides its read-ahead (≤ 2 MiB): fixed costs that
        // matter only for segments this small.
        let own = plain.len() as u64 / 4 + lookback + 5 * 1024 * 1024;
        assert!(
            out.report.bytes_decompressed <= own,
            "segment {}: {}",
            spec.number,
            out.report.bytes_decompressed
        );
        inflated += out.report.bytes_decompressed;
    }
    // Each byte about once, plus per segment its look-back, the way from
    // the access point to it, and what the reader inflates past the end.
    let bound = plain.len() as u64 + plan.len() as u64 * (lookback + 5 * 1024 * 1024);
    assert_eq!(plan.len(), 4);
    assert!(inflated <= bound, "{inflated} > {bound}");
}

/// Only k6 JSON is cut into segments: the index says whether the first
/// non-blank line is a k6 JSON line, and k6 CSV (its header first) or
/// other text is left to one serial run.
#[test]
fn only_k6_json_fans_out() {
    let read = |name: &str| {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap()
    };
    for (name, json) in [
        ("plain.json", true),
        ("mixed.json.gz", true),
        ("csv_unix.csv", false),
        ("csv_unix_nano.csv.gz", false),
    ] {
        assert_eq!(indexed(&read(name), 4096).json, json, "{name}");
    }
    assert!(
        indexed(
            b"\n\n{\"type\":\"Metric\",\"metric\":\"m\",\"data\":{\"type\":\"counter\"}}\n",
            4096
        )
        .json
    );
    assert!(!indexed(b"hello\n", 4096).json);
    assert!(!indexed(b"", 4096).json);
}
