//! Write cost in Timestream's metering units (1 KiB per request, rounded
//! up; CommonAttributes counted once per request), per million k6 points,
//! of this crate's requests next to the layout of the k6 output extension
//! xk6-output-timestream (one record per point, the point's tags and
//! metadata as dimensions, requests of 100 records in arrival order, no
//! CommonAttributes).
//!
//! Target (MULTI, the default group window, on an HTTP-heavy run): ≤ 0.21×
//! the extension's units. Also printed: arrival order (`--group-window 0`)
//! and SINGLE, and that the report's estimate is the sum over the requests.
//!
//! Run: `cargo bench --bench cost [-- FILE.json.gz ...]` (default: the big
//! real k6 file of the other benches and `tests/fixtures/mixed.json.gz`).

mod support;

use k6_timestream::core::collision::DEFAULT_COLLISION_WINDOW_SECS;
use k6_timestream::core::convert::ConvertOptions;
use k6_timestream::core::k6::{parse_line, Line};
use k6_timestream::core::model::DataModel;
use k6_timestream::core::pipeline::{self, PipelineOptions};
use k6_timestream::sinks::timestream::request::estimate_write_bytes;
use k6_timestream::sinks::timestream::{Batcher, DEFAULT_GROUP_WINDOW};
use std::io::{BufRead, Read};
use std::ops::ControlFlow;
use std::sync::Arc;

const UNIT: u64 = 1024;

fn reader(path: &str) -> Box<dyn BufRead> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let r: Box<dyn Read> = if path.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    Box::new(std::io::BufReader::with_capacity(1 << 20, r))
}

/// (points, metered bytes) of the extension's layout.
fn seed_layout(path: &str) -> (u64, u64) {
    let (mut points, mut metered, mut in_request, mut bytes) = (0u64, 0u64, 0, 0u64);
    let blank = |v: &str| v.trim().is_empty();
    for line in reader(path).lines() {
        let line = line.unwrap();
        let Ok(Line::Point(p)) = parse_line(&line) else {
            continue;
        };
        points += 1;
        // Time, dimensions (tags and metadata with a non-blank value),
        // measure name, one DOUBLE.
        let mut b = 8 + p.metric.len() as u64 + 8;
        for (k, v) in p.tags.iter().chain(&p.metadata) {
            if !blank(v) {
                b += (k.len() + v.len()) as u64;
            }
        }
        bytes += b;
        in_request += 1;
        if in_request == 100 {
            metered += bytes.div_ceil(UNIT) * UNIT;
            (in_request, bytes) = (0, 0);
        }
    }
    if in_request > 0 {
        metered += bytes.div_ceil(UNIT) * UNIT;
    }
    (points, metered)
}

struct Ours {
    points: u64,
    records: u64,
    requests: u64,
    metered: u64,
}

fn ours(path: &str, model: DataModel, window: usize) -> Ours {
    let opts = PipelineOptions {
        convert: ConvertOptions {
            model,
            testid: Some("bench".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut batcher = Batcher::with_group_window(model, DEFAULT_COLLISION_WINDOW_SECS, window);
    let (mut requests, mut metered) = (0u64, 0u64);
    let file = std::fs::File::open(path).unwrap();
    let out = pipeline::run(
        file,
        path,
        &opts,
        &mut batcher,
        Arc::default(),
        &mut |req, _| {
            requests += 1;
            metered += estimate_write_bytes(&req).1;
            ControlFlow::Continue(())
        },
    );
    assert!(out.error.is_none(), "{path}: {:?}", out.error);
    let r = out.report;
    assert_eq!(r.batches, requests);
    assert_eq!(
        r.estimated_write_bytes, metered,
        "the report's estimate is the sum over the requests"
    );
    Ours {
        points: r.points,
        records: r.records,
        requests,
        metered,
    }
}

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut inputs: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if inputs.is_empty() {
        inputs = vec![
            support::big_input(),
            format!("{root}/tests/fixtures/mixed.json.gz"),
        ];
    }
    let mut ok = true;
    for (i, path) in inputs.iter().enumerate() {
        let (points, seed) = seed_layout(path);
        let per_m = |metered: u64, points: u64| (metered / UNIT) as f64 * 1e6 / points as f64;
        let seed_units = per_m(seed, points);
        println!("{path}: {points} points");
        println!(
            "  {:34} {:>9} records {:>6} requests {:>9.0} units per million points",
            "xk6-output-timestream layout",
            points,
            points.div_ceil(100),
            seed_units
        );
        for (what, model, window) in [
            (
                "multi, window 5,000 (default)",
                DataModel::Multi,
                DEFAULT_GROUP_WINDOW,
            ),
            ("multi, arrival order", DataModel::Multi, 0),
            (
                "single, window 5,000",
                DataModel::Single,
                DEFAULT_GROUP_WINDOW,
            ),
            ("single, arrival order", DataModel::Single, 0),
        ] {
            let o = ours(path, model, window);
            assert_eq!(o.points, points, "{path}: points");
            let units = per_m(o.metered, o.points);
            println!(
                "  {what:34} {:>9} records {:>6} requests {units:>9.0} units per million points = {:.3}x",
                o.records,
                o.requests,
                units / seed_units
            );
            // The target is for the HTTP-heavy run (the first input).
            if i == 0 && model == DataModel::Multi && window > 0 && units / seed_units > 0.21 {
                ok = false;
            }
        }
    }
    println!("{}", if ok { "PASS (≤ 0.21x)" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
}
