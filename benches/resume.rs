//! What a chain of stopped runs costs on a big real k6 file, the way the
//! Lambda's continuations run one: each link hands out `PER_LINK` requests
//! and stops. With checkpoints a link goes on from the previous one's
//! state (stored and read back, the input from its access point on);
//! without (the fallback for a continuation without a checkpoint) a link
//! reads the object from its start again and skips the requests confirmed
//! before. Reported: links, bytes inflated in total, wall time, and the
//! checkpoints' size and encode/decode time; then the size and times of a
//! checkpoint whose collision guard is full (`MAX_REMEMBERED` records).
//!
//! Run: `cargo bench --bench resume [-- FILE.json.gz]` (default input: a
//! ≥300k-line real k6 file, generated on first use).

mod support;

use k6_timestream::core::collision::{DEFAULT_COLLISION_WINDOW_SECS, MAX_REMEMBERED};
use k6_timestream::core::convert::ConvertOptions;
use k6_timestream::core::input::Progress;
use k6_timestream::core::model::{DataModel, Dimension, Record, Values};
use k6_timestream::core::pipeline::{self, Encoder, PipelineOptions};
use k6_timestream::core::report::RunReport;
use k6_timestream::core::resume::{self, Checkpoint, Start};
use k6_timestream::sinks::timestream::Batcher;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::big_input;

/// Requests per link: about what one link of a 1 s work budget wrote in the
/// end-to-end test (debug build, local endpoints).
const PER_LINK: usize = 70;

fn opts() -> PipelineOptions {
    PipelineOptions {
        convert: ConvertOptions {
            model: DataModel::Multi,
            testid: Some("big".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn batcher() -> Batcher {
    Batcher::new(DataModel::Multi, DEFAULT_COLLISION_WINDOW_SECS)
}

struct Chain {
    links: usize,
    requests: u64,
    inflated: u64,
    wall: Duration,
    checkpoint_bytes: Vec<usize>,
    encode: Duration,
    decode: Duration,
}

fn with_checkpoints(input: &[u8]) -> Chain {
    let t = Instant::now();
    let mut c = Chain {
        links: 0,
        requests: 0,
        inflated: 0,
        wall: Duration::ZERO,
        checkpoint_bytes: Vec::new(),
        encode: Duration::ZERO,
        decode: Duration::ZERO,
    };
    let mut stored: Option<Vec<u8>> = None;
    loop {
        let (start, offset) = match stored.take() {
            None => (Start::Fresh(batcher()), Some(0)),
            Some(bytes) => {
                let t = Instant::now();
                let ck = Checkpoint::<Batcher>::decode(&bytes).unwrap();
                c.decode += t.elapsed();
                let input = &ck.state.input;
                let offset = input.reads_source().then(|| input.source_offset());
                (Start::Resume(Box::new(ck)), offset)
            }
        };
        let source = offset.map_or(&[][..], |o| &input[o as usize..]);
        let mut sent = 0;
        let progress = Arc::new(Progress::default());
        let (out, checkpoint) = resume::run(source, "big", &opts(), start, progress, &mut |req| {
            if sent < PER_LINK {
                sent += 1;
                Ok(())
            } else {
                Err(req)
            }
        });
        assert!(out.error.is_none(), "{:?}", out.error);
        c.links += 1;
        c.requests += sent as u64;
        c.inflated += out.report.bytes_decompressed;
        let ck = checkpoint.unwrap();
        if ck.unsent.is_empty() && ck.state.input.finished {
            break;
        }
        let t = Instant::now();
        let bytes = ck.encode();
        c.encode += t.elapsed();
        c.checkpoint_bytes.push(bytes.len());
        stored = Some(bytes);
    }
    c.wall = t.elapsed();
    c
}

/// Link k reads from the start and skips the k × PER_LINK requests sent
/// before (converting them all again), as a continuation without a
/// checkpoint does.
fn rereading(input: &[u8]) -> Chain {
    let t = Instant::now();
    let mut c = Chain {
        links: 0,
        requests: 0,
        inflated: 0,
        wall: Duration::ZERO,
        checkpoint_bytes: Vec::new(),
        encode: Duration::ZERO,
        decode: Duration::ZERO,
    };
    loop {
        let skip = c.links * PER_LINK;
        let mut seen = 0;
        let progress = Arc::new(Progress::default());
        let out = pipeline::run(
            input,
            "big",
            &opts(),
            &mut batcher(),
            progress,
            &mut |_, _| {
                seen += 1;
                if seen <= skip + PER_LINK {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            },
        );
        c.links += 1;
        c.requests += seen.saturating_sub(skip).min(PER_LINK) as u64;
        c.inflated += out.report.bytes_decompressed;
        if !out.stopped {
            break;
        }
    }
    c.wall = t.elapsed();
    c
}

fn main() {
    let path = big_input();
    let input = std::fs::read(&path).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&input[..]),
        &mut plain,
    )
    .unwrap();
    println!(
        "input: {path} ({} bytes gzip, {} bytes of k6 JSON); {PER_LINK} requests per link, MULTI model",
        input.len(),
        plain.len()
    );
    let t = Instant::now();
    let mut total = 0u64;
    let out = pipeline::run(
        &input[..],
        "big",
        &opts(),
        &mut batcher(),
        Arc::new(Progress::default()),
        &mut |_, _| {
            total += 1;
            ControlFlow::Continue(())
        },
    );
    println!(
        "one run:              {total} requests, inflated {:>11} bytes, wall {:6.2} s",
        out.report.bytes_decompressed,
        t.elapsed().as_secs_f64()
    );
    for (what, c) in [
        ("with checkpoints:    ", with_checkpoints(&input)),
        ("re-reading (no ckpt):", rereading(&input)),
    ] {
        assert_eq!(c.requests, total, "{what} every request once");
        println!(
            "{what} {} links, inflated {:>11} bytes ({:.2}x the input), wall {:6.2} s",
            c.links,
            c.inflated,
            c.inflated as f64 / plain.len() as f64,
            c.wall.as_secs_f64()
        );
        if !c.checkpoint_bytes.is_empty() {
            let n = c.checkpoint_bytes.len() as u32;
            println!(
                "  checkpoints: max {} bytes, mean {} bytes; encode {:.1} ms, decode {:.1} ms each on average",
                c.checkpoint_bytes.iter().max().unwrap(),
                c.checkpoint_bytes.iter().sum::<usize>() / n as usize,
                (c.encode / n).as_secs_f64() * 1000.0,
                (c.decode / n).as_secs_f64() * 1000.0
            );
        }
    }
    full_guard();
}

/// A checkpoint whose collision guard holds `MAX_REMEMBERED` records.
fn full_guard() {
    let tiny = b"{\"metric\":\"m\",\"type\":\"Point\",\"data\":{\"time\":\"2026-01-01T00:00:00Z\",\"value\":1,\"tags\":{\"a\":\"b\"}}}\n";
    let (_, ck) = resume::run(
        &tiny[..],
        "tiny",
        &opts(),
        Start::Fresh(Batcher::new(DataModel::Single, 3600)),
        Arc::default(),
        &mut Err,
    );
    let mut ck = ck.unwrap();
    let mut report = RunReport::default();
    for i in 0..MAX_REMEMBERED as i64 {
        ck.encoder.push(
            Record {
                dimensions: vec![Dimension {
                    name: "url".into(),
                    value: format!("http://127.0.0.1/item/{}", i % 50),
                }],
                measure_name: "http_req_duration".into(),
                values: Values::Single(format!("{}", i % 997)),
                time_ns: 1_800_000_000_000_000_000 + i * 100_000,
                lines: vec![i as u64],
                metadata_mask: 0,
            },
            &mut report,
        );
    }
    let t = Instant::now();
    let bytes = ck.encode();
    let encode = t.elapsed();
    let t = Instant::now();
    Checkpoint::<Batcher>::decode(&bytes).unwrap();
    let decode = t.elapsed();
    println!(
        "full collision guard ({MAX_REMEMBERED} records): checkpoint {} bytes, encode {:.0} ms, decode {:.0} ms",
        bytes.len(),
        encode.as_secs_f64() * 1000.0,
        decode.as_secs_f64() * 1000.0
    );
}
