//! Mutation test: real k6 lines from `tests/fixtures` (plain and gzip),
//! mutated by a seeded generator (byte and bit flips, truncations, odd
//! numbers and times, odd tag names and values, huge and deeply nested
//! lines, CRLF, a byte-order mark, conflicting copies) and mixed with
//! untouched lines, run through `pipeline::run` in both models.
//!
//! Checked for every case:
//! - no panic;
//! - every request, as JSON, obeys Timestream's documented rules (the
//!   independent checker `support::parse_request`: 1–100 records, ≥ 1
//!   dimension, names 1–60 bytes, values non-empty, not blank, ≤ 2048
//!   chars, reserved names absent, ≤ 256 measures, record ≤ 2 KiB metered,
//!   CommonAttributes and record dimensions disjoint);
//! - no two records of the output collide (same dimensions, measure name
//!   and time, other values) and nothing was left unchecked;
//! - `points = measures + Σ dropped`;
//! - the point of every untouched line comes out unchanged: its metric,
//!   value, time and tags, exactly (renames only where the rules table
//!   says, a later time only by a justified nudge).
//!
//! `K6TS_MUTATION_SEED` and `K6TS_MUTATION_CASES` override the seed and
//! the number of cases (a failure prints both, to reproduce it alone).

mod support;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use k6_timestream::core::collision::DEFAULT_COLLISION_WINDOW_SECS;
use k6_timestream::core::convert::ConvertOptions;
use k6_timestream::core::input::{InputOptions, Progress};
use k6_timestream::core::model::{DataModel, Values};
use k6_timestream::core::pipeline::{self, PipelineOptions};
use k6_timestream::sinks::timestream::{encode, Batcher, WriteRequest};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use support::*;

const DEFAULT_SEED: u64 = 0x6b36_7473_2024;
const DEFAULT_CASES: u64 = 250;
const MAX_LINE: usize = 16 * 1024;
const TESTID: &str = "mutation";
const BOM: &[u8] = b"\xef\xbb\xbf";

/// The lines of every k6 JSON fixture (decompressed, without `\n`). (The
/// CSV fixtures are another format: mixed into JSON lines they would make
/// the input not k6 output at all; `tests/csv.rs` covers them.)
fn fixture_lines() -> Vec<(String, Vec<Vec<u8>>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x != "md"))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !(name.ends_with(".csv") || name.ends_with(".csv.gz"))
        })
        .collect();
    paths.sort();
    for p in paths {
        let raw = std::fs::read(&p).unwrap();
        let data = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut d = Vec::new();
            MultiGzDecoder::new(&raw[..]).read_to_end(&mut d).unwrap();
            d
        } else {
            raw
        };
        let lines: Vec<Vec<u8>> = split_lines(&data).into_iter().map(<[u8]>::to_vec).collect();
        out.push((p.file_name().unwrap().to_string_lossy().into_owned(), lines));
    }
    assert!(out.len() >= 5, "fixtures missing");
    out
}

// ---------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------

const ODD_NUMBERS: &[&str] = &[
    "1e308",
    "-0",
    "5e-324",
    "1e400",
    "-1e400",
    "NaN",
    "+Inf",
    "-Inf",
    "\"NaN\"",
    "\"+Inf\"",
    "\"Infinity\"",
    "0.1e-400",
    "123456789012345678901234567890",
    "1E+3",
    "-0.0",
    "00",
    "1.",
    ".5",
    "\"1\"",
    "null",
    "true",
    "[1]",
    "{}",
    "9007199254740993",
    "0.30000000000000004",
    "-1.7976931348623157e308",
];

const ODD_TIMES: &[&str] = &[
    "1969-12-31T23:59:59.999999999Z",
    "1970-01-01T00:00:00Z",
    "2262-04-11T23:47:16.854775807Z",
    "2262-04-11T23:47:16.854775808Z",
    "2100-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999+14:00",
    "2026-11-25T10:00:00.1234567891Z",
    "2026-11-25t10:00:00z",
    "2026-11-25 10:00:00Z",
    "2026-02-29T00:00:00Z",
    "2024-02-29T23:59:60Z",
    "",
    "garbage",
    "2026-11-25T10:00:00-23:59",
    "2026-11-25T10:00:00+24:00",
    "2026-11-25T10:00:00",
];

fn odd_values() -> Vec<String> {
    vec![
        "".into(),
        " ".into(),
        "\t".into(),
        "\n".into(),
        "\r\n".into(),
        "\u{a0}".into(),
        "\u{3000}".into(),
        " \u{2003} \u{85}".into(),
        "x".repeat(3000),
        "é".repeat(2100),
        format!("{}x", " ".repeat(2100)),
        format!("{}y", "\u{3000}".repeat(700)),
        "\u{0}".into(),
        "a:b".into(),
        "\"quoted\" \\ back".into(),
        "🚀 日本語".into(),
        "\u{feff}".into(),
    ]
}

fn odd_names(metric: &str) -> Vec<String> {
    vec![
        "".into(),
        " ".into(),
        "time".into(),
        "Time".into(),
        "measure_name".into(),
        "measure_value::x".into(),
        "ts_".into(),
        "TS_x".into(),
        "a:b".into(),
        "k6".into(),
        "n".repeat(100),
        "é".repeat(40),
        "testid".into(),
        metric.to_owned(),
        "tag_name".into(),
        "meta_vu".into(),
        "vu".into(),
    ]
}

fn pick<'a, T>(rng: &mut fastrand::Rng, v: &'a [T]) -> &'a T {
    &v[rng.usize(..v.len())]
}

/// The byte range of the string value of `"time":"…"` in a line.
fn time_range(line: &[u8]) -> Option<(usize, usize)> {
    let key = b"\"time\":\"";
    let start = line.windows(key.len()).position(|w| w == key)? + key.len();
    let end = start + line[start..].iter().position(|&c| c == b'"')?;
    Some((start, end))
}

fn splice(line: &[u8], (a, b): (usize, usize), with: &[u8]) -> Vec<u8> {
    let mut v = line[..a].to_vec();
    v.extend_from_slice(with);
    v.extend_from_slice(&line[b..]);
    v
}

/// Edits `data.tags` or `data.metadata` of a JSON line (None: not an
/// object line with `data`).
fn edit_pairs(line: &[u8], rng: &mut fastrand::Rng) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(line).ok()?;
    let metric = v.get("metric")?.as_str().unwrap_or("m").to_owned();
    let which = if rng.bool() { "tags" } else { "metadata" };
    let data = v.get_mut("data")?.as_object_mut()?;
    let pairs = data
        .entry(which)
        .or_insert_with(|| Value::Object(Default::default()));
    if !pairs.is_object() {
        *pairs = Value::Object(Default::default());
    }
    let m = pairs.as_object_mut()?;
    let keys: Vec<String> = m.keys().cloned().collect();
    match rng.u8(..4) {
        // An odd value for an existing (or new) key.
        0 | 1 => {
            let k = if keys.is_empty() || rng.bool() {
                pick(rng, &odd_names(&metric)).clone()
            } else {
                pick(rng, &keys).clone()
            };
            m.insert(k, Value::String(pick(rng, &odd_values()).clone()));
        }
        // An existing value under an odd name.
        2 => {
            if let Some(k) = keys.first() {
                let val = m.remove(k).unwrap();
                m.insert(pick(rng, &odd_names(&metric)).clone(), val);
            }
        }
        // Non-string scalars and nulls.
        _ => {
            let k = pick(rng, &odd_names(&metric)).clone();
            let val = match rng.u8(..4) {
                0 => Value::from(1.5),
                1 => Value::from(true),
                2 => Value::Null,
                _ => Value::from(-7),
            };
            m.insert(k, val);
        }
    }
    Some(serde_json::to_vec(&v).unwrap())
}

/// One mutation of `line`; `earlier` are the case's lines so far (for
/// conflicting copies and shared times). Returns the mutated bytes (may
/// hold `\n`: more than one line) and what was done.
fn mutate(line: &[u8], earlier: &[Vec<u8>], rng: &mut fastrand::Rng) -> (Vec<u8>, &'static str) {
    let mut l = line.to_vec();
    let text = std::str::from_utf8(line).unwrap_or("");
    match rng.u8(..16) {
        0 if !l.is_empty() => {
            let i = rng.usize(..l.len());
            l[i] = l[i].wrapping_add(rng.u8(1..));
            (l, "byte")
        }
        1 if !l.is_empty() => {
            let i = rng.usize(..l.len());
            l[i] ^= 1 << rng.u8(..8);
            (l, "bit")
        }
        2 if !l.is_empty() => {
            l.truncate(rng.usize(..l.len()));
            (l, "truncate")
        }
        3 => {
            let junk: &[&[u8]] = &[
                b"\"", b"\\", b"{", b"}", b",", b":", b"\xff", b"\x00", b"\n", b"\r", b"\xc3",
                b"\\u0000", b"\\ud800",
            ];
            let i = rng.usize(..=l.len());
            let j = pick(rng, junk);
            l.splice(i..i, j.iter().copied());
            (l, "insert")
        }
        4 | 5 => match raw_data_value_range(text) {
            Some(r) => (splice(line, r, pick(rng, ODD_NUMBERS).as_bytes()), "number"),
            None => (l, "none"),
        },
        6 => match time_range(line) {
            Some(r) => (splice(line, r, pick(rng, ODD_TIMES).as_bytes()), "time"),
            None => (l, "none"),
        },
        // Shift the time (late samples, clock steps, merged runs).
        7 => match time_range(line).and_then(|r| Some((r, parse_rfc3339(text.get(r.0..r.1)?)?))) {
            Some((r, ns)) => {
                let shift = match rng.u8(..3) {
                    0 => rng.i64(-60..=60) * NS_PER_SEC as i64,
                    1 => rng.i64(-3600..=3600) * NS_PER_SEC as i64,
                    _ => rng.i64(-1000..=1000),
                };
                let t = format_rfc3339(ns + i128::from(shift), rng.i32(-720..=720), 9, 1);
                (splice(line, r, t.as_bytes()), "shift")
            }
            None => (l, "none"),
        },
        // The time of an earlier line: same-time neighbours, collisions.
        8 => {
            let other = earlier.get(rng.usize(..=earlier.len().max(1) - 1));
            match (
                time_range(line),
                other.and_then(|o| time_range(o).map(|r| o[r.0..r.1].to_vec())),
            ) {
                (Some(r), Some(t)) => (splice(line, r, &t), "same_time"),
                _ => (l, "none"),
            }
        }
        9 | 10 => match edit_pairs(line, rng) {
            Some(v) => (v, "pairs"),
            None => (l, "none"),
        },
        // A copy of an earlier point with another value: a conflict.
        11 => match earlier
            .iter()
            .rev()
            .take(50)
            .find(|e| raw_data_value_range(std::str::from_utf8(e).unwrap_or("")).is_some())
        {
            Some(e) => {
                let r = raw_data_value_range(std::str::from_utf8(e).unwrap()).unwrap();
                let v = format!("{}", rng.u32(..1000));
                (splice(e, r, v.as_bytes()), "conflict")
            }
            None => (l, "none"),
        },
        12 => {
            let mut v = br#"{"metric":"m","type":"Point","data":{"time":"2026-11-25T10:00:00Z","value":1,"tags":{"pad":""#.to_vec();
            v.resize(MAX_LINE + rng.usize(1..2000), b'p');
            v.extend_from_slice(b"\"}}}");
            (v, "huge")
        }
        13 => {
            let depth = rng.usize(100..5000);
            let mut v = br#"{"metric":"m","type":"Point","data":{"time":"2026-11-25T10:00:00Z","value":1,"tags":{"a":"#.to_vec();
            v.extend(std::iter::repeat_n(b'[', depth));
            v.extend(std::iter::repeat_n(b']', depth));
            v.extend_from_slice(b"}}}");
            (v, "deep")
        }
        14 => {
            let types: &[&str] = &[
                "\"Metric\"",
                "\"point\"",
                "\"Summary\"",
                "null",
                "7",
                "\"\"",
            ];
            let key = b"\"type\":\"Point\"";
            match l.windows(key.len()).position(|w| w == key) {
                Some(i) => {
                    let with = format!("\"type\":{}", pick(rng, types));
                    (splice(line, (i, i + key.len()), with.as_bytes()), "type")
                }
                None => (l, "none"),
            }
        }
        _ => {
            // An odd metric name (also a tag key of the run: renames).
            let key = b"\"metric\":\"";
            match l.windows(key.len()).position(|w| w == key) {
                Some(i) => {
                    let s = i + key.len();
                    let e = s + l[s..].iter().position(|&c| c == b'"').unwrap_or(0);
                    let names: &[&str] = &[
                        "",
                        "time",
                        "k6",
                        "a:b",
                        "status",
                        "name",
                        "vu",
                        "ts_x",
                        "measure_value",
                    ];
                    let long = "m".repeat(300);
                    let n = if rng.u8(..8) == 0 {
                        long.as_str()
                    } else {
                        *pick(rng, names)
                    };
                    (splice(line, (s, e), n.as_bytes()), "metric")
                }
                None => (l, "none"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

struct Case {
    /// The input as read (maybe gzip, BOM, CRLF).
    bytes: Vec<u8>,
    /// The decompressed text without a leading BOM, `\r\n` → `\n`.
    text: Vec<u8>,
    /// 1-based line numbers (in `text`) of untouched lines.
    untouched: Vec<u64>,
    what: String,
}

fn make_case(rng: &mut fastrand::Rng, sources: &[(String, Vec<Vec<u8>>)]) -> Case {
    let mut pieces: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut earlier: Vec<Vec<u8>> = Vec::new();
    let mut what = Vec::new();
    // One run, sometimes two merged (different days, clocks).
    for _ in 0..if rng.u8(..6) == 0 { 2 } else { 1 } {
        let (name, lines) = pick(rng, sources);
        let n = rng.usize(5..=lines.len().clamp(5, 150));
        let start = rng.usize(..=lines.len().saturating_sub(n));
        what.push(format!("{name}[{start}..+{n}]"));
        let p_mut = *pick(rng, &[0.05, 0.2, 0.4]);
        for l in &lines[start..(start + n).min(lines.len())] {
            let piece = if rng.f64() < p_mut {
                let (m, kind) = mutate(l, &earlier, rng);
                what.push(kind.to_owned());
                (m, false)
            } else {
                (l.clone(), true)
            };
            earlier.push(piece.0.clone());
            pieces.push(piece);
        }
    }
    let crlf = rng.u8(..8) == 0;
    let bom = rng.u8(..8) == 0;
    let final_newline = rng.u8(..10) != 0;
    // `text` is what the reader hands over; `plain` the file's bytes.
    let (mut text, mut plain) = (Vec::new(), Vec::new());
    if bom {
        plain.extend_from_slice(BOM);
    }
    let mut untouched = Vec::new();
    let mut line_no = 1u64;
    for (i, (b, keep)) in pieces.iter().enumerate() {
        if *keep && !b.contains(&b'\n') {
            untouched.push(line_no);
        }
        line_no += b.iter().filter(|&&c| c == b'\n').count() as u64 + 1;
        text.extend_from_slice(b);
        plain.extend_from_slice(b);
        if i + 1 < pieces.len() || final_newline {
            if crlf {
                plain.push(b'\r');
            }
            text.push(b'\n');
            plain.push(b'\n');
        }
    }
    // gzip is slow in a debug build (the inflater too): one case in four.
    let bytes = match rng.u8(..8) {
        0..=5 => plain,
        6 => gzip(&plain),
        _ => {
            let at = rng.usize(..=plain.len());
            let mut two = gzip(&plain[..at]);
            two.extend(gzip(&plain[at..]));
            two
        }
    };
    what.push(format!(
        "crlf={crlf} bom={bom} final_newline={final_newline}"
    ));
    Case {
        bytes,
        text,
        untouched,
        what: what.join(" "),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

fn run(case: &Case, model: DataModel) -> (Vec<WriteRequest>, pipeline::Outcome) {
    let opts = PipelineOptions {
        convert: ConvertOptions {
            model,
            testid: Some(TESTID.to_owned()),
            ..Default::default()
        },
        input: InputOptions {
            max_line_bytes: MAX_LINE,
            ..Default::default()
        },
    };
    let mut batcher = Batcher::new(model, DEFAULT_COLLISION_WINDOW_SECS);
    let mut requests = Vec::new();
    let out = pipeline::run(
        &case.bytes[..],
        "mutation.json",
        &opts,
        &mut batcher,
        Arc::new(Progress::default()),
        &mut |req, _| {
            requests.push(req);
            ControlFlow::Continue(())
        },
    );
    (requests, out)
}

fn values_of(r: &k6_timestream::core::model::Record) -> Vec<(String, String)> {
    match &r.values {
        Values::Single(v) => vec![(r.measure_name.clone(), v.clone())],
        Values::Multi(m) => m.clone(),
    }
}

/// Can the rules cut the dimension values of `p` by themselves (a value
/// over 2048 chars, or a record over the 2 KiB metered size)?
fn oversized(p: &OraclePoint, inputs: &[InDim], multi: bool) -> bool {
    let dims: usize = inputs
        .iter()
        .map(|d| d.names[0].len() + d.value.len())
        .sum();
    let fixed = 8 + 8 + p.metric.len() + if multi { 2 } else { 0 };
    inputs.iter().any(|d| d.value.chars().count() > 2048) || dims + fixed > 2048
}

/// Everything the module doc lists; Err says what is wrong.
fn check(
    case: &Case,
    exp: &Expected,
    model: DataModel,
    untouched_checked: &mut u64,
) -> Result<(), String> {
    let multi = model == DataModel::Multi;
    let (requests, out) = run(case, model);
    let rep = &out.report;
    if out.error.is_some() || !rep.complete {
        return Err(format!("input error {:?}", out.error));
    }
    if !rep.conversion_balanced() {
        return Err(format!(
            "points {} != measures {} + dropped {:?}",
            rep.points, rep.measures, rep.dropped
        ));
    }
    if rep.collision_window_misses != 0 {
        return Err(format!("{} records unchecked", rep.collision_window_misses));
    }
    // The wire form, checked independently of the encoder.
    let mut collisions = CollisionCheck::default();
    for (i, req) in requests.iter().enumerate() {
        let mut json = Vec::new();
        encode::write_json(&mut json, "db", "tbl", req).map_err(|e| e.to_string())?;
        let text = String::from_utf8(json).map_err(|e| e.to_string())?;
        let parsed = parse_request(text.trim_end(), "db", "tbl", multi, true)
            .map_err(|e| format!("request {i}: {e}"))?;
        for r in &parsed.records {
            collisions.add(r).map_err(|e| format!("request {i}: {e}"))?;
        }
    }
    // Untouched points: where each measure came from.
    let mut by_line: HashMap<u64, (usize, usize, usize)> = HashMap::new();
    for (q, req) in requests.iter().enumerate() {
        for (r, rec) in req.records.iter().enumerate() {
            for (m, l) in rec.lines.iter().enumerate() {
                if by_line.insert(*l, (q, r, m)).is_some() {
                    return Err(format!("line {l} is in the output twice"));
                }
            }
        }
    }
    let withheld_from = rep
        .dropped_first_lines
        .get("input_truncated_tail")
        .and_then(|v| v.first().copied())
        .unwrap_or(u64::MAX);
    let points: HashMap<u64, &OraclePoint> = exp.points.iter().map(|p| (p.line, p)).collect();
    for &l in &case.untouched {
        let Some(p) = points.get(&l).filter(|p| p.drop.is_none()) else {
            continue; // a Metric line, or a point k6 itself made unwritable
        };
        if l >= withheld_from {
            continue; // the tail of an input cut off mid-write
        }
        let at = format!("untouched line {l} ({} {})", p.metric, p.value);
        let &(q, r, m) = by_line
            .get(&l)
            .ok_or_else(|| format!("{at}: not in the output"))?;
        let rec = &requests[q].records[r];
        let (name, value) = &values_of(rec)[m];
        if !measure_name_ok(name, &p.metric) || !same_value(value, p.value) {
            return Err(format!("{at}: came out as {name}={value}"));
        }
        let dims: Vec<(String, String)> = rec
            .dimensions
            .iter()
            .map(|d| (d.name.clone(), d.value.clone()))
            .collect();
        let inputs = input_dims(p, Some(TESTID), &[], &exp.metric_names);
        let cut = oversized(p, &inputs, multi);
        match_dims(&dims, &inputs, cut, false).map_err(|e| format!("{at}: {e}"))?;
        let t = i128::from(rec.time_ns);
        if t != p.time_ns {
            // Only a nudge past another record of its series at its time.
            let other = requests.iter().flat_map(|q| &q.records).any(|o| {
                i128::from(o.time_ns) == p.time_ns
                    && o.dimensions == rec.dimensions
                    && o.measure_name == rec.measure_name
                    && values_of(o) != values_of(rec)
            });
            if !(1..=1000).contains(&(t - p.time_ns)) || rep.nudged == 0 || !other {
                return Err(format!("{at}: time {t} instead of {}", p.time_ns));
            }
        }
        *untouched_checked += 1;
    }
    Ok(())
}

/// Long values make long messages: keep each to a readable size.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 1500 {
        return s.to_owned();
    }
    let head: String = s.chars().take(1000).collect();
    let tail: String = s
        .chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head} […] {tail}")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            }
            .unwrap_or_else(|e| panic!("{name}={v}: {e}"))
        })
        .unwrap_or(default)
}

#[test]
fn mutated_k6_lines() {
    let started = std::time::Instant::now();
    let sources = fixture_lines();
    let seed = env_u64("K6TS_MUTATION_SEED", DEFAULT_SEED);
    let cases = env_u64("K6TS_MUTATION_CASES", DEFAULT_CASES);
    let (mut lines, mut untouched, mut bytes) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    for i in 0..cases {
        let case_seed = seed.wrapping_add(i);
        let mut rng = fastrand::Rng::with_seed(case_seed);
        let case = make_case(&mut rng, &sources);
        let exp = Expected::from_lines(&split_lines(&case.text), MAX_LINE);
        lines += exp.lines;
        bytes += case.bytes.len() as u64;
        for model in [DataModel::Multi, DataModel::Single] {
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut n = 0;
                check(&case, &exp, model, &mut n).map(|()| n)
            }));
            match res {
                Ok(Ok(n)) => untouched += n,
                Ok(Err(e)) => failures.push(format!(
                    "K6TS_MUTATION_SEED={case_seed:#x} K6TS_MUTATION_CASES=1 ({model:?}; {}): {}",
                    case.what,
                    shorten(&e)
                )),
                Err(_) => failures.push(format!(
                    "K6TS_MUTATION_SEED={case_seed:#x} K6TS_MUTATION_CASES=1 ({model:?}; {}): PANIC",
                    case.what
                )),
            }
        }
        if failures.len() >= 5 {
            break;
        }
    }
    eprintln!(
        "mutation: {cases} cases × 2 models, {lines} lines ({bytes} input bytes), {untouched} untouched points checked, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(untouched > cases, "too few untouched points were checked");
}

/// The generator's mutations do what they say (a mutation test whose
/// mutations are no-ops proves nothing).
#[test]
fn mutations_change_lines() {
    let line = br#"{"metric":"http_reqs","type":"Point","data":{"time":"2026-11-25T10:00:00.5Z","value":1,"tags":{"name":"x","status":"200"}}}"#;
    let mut rng = fastrand::Rng::with_seed(1);
    let mut kinds = std::collections::BTreeMap::new();
    for _ in 0..2000 {
        let (m, kind) = mutate(line, &[line.to_vec()], &mut rng);
        if kind != "none" {
            *kinds.entry(kind).or_insert(0) += 1;
            if kind != "same_time" && kind != "conflict" && kind != "pairs" {
                assert_ne!(&m[..], &line[..], "{kind} did not change the line");
            }
        }
    }
    for k in [
        "byte",
        "bit",
        "truncate",
        "insert",
        "number",
        "time",
        "shift",
        "same_time",
        "pairs",
        "conflict",
        "huge",
        "deep",
        "type",
        "metric",
    ] {
        assert!(kinds.contains_key(k), "mutation {k} never ran: {kinds:?}");
    }
}
