//! Property tests of `k6_timestream::core::pipeline::run` over generated k6-like
//! NDJSON: a random mix of Metric lines, runs of Points sharing time and
//! tags (like the points of one k6 request), exact and conflicting
//! duplicates, blank / malformed / invalid-UTF-8 / over-long lines, odd
//! names, odd times (offsets, 0–9 fraction digits, before 1970, after 2262)
//! and odd values. The expected report is computed line by line by the
//! independent oracle in `common` (and cross-checked with what the
//! generator meant to write).
//!
//! The deterministic tests at the end pin the bugs these properties found.

mod support;

use k6_timestream::core::collision::DEFAULT_COLLISION_WINDOW_SECS;
use k6_timestream::core::convert::ConvertOptions;
use k6_timestream::core::input::{InputOptions, Progress};
use k6_timestream::core::model::{DataModel, Values};
use k6_timestream::core::pipeline::{self, PipelineOptions};
use k6_timestream::core::report::RunReport;
use k6_timestream::sinks::timestream::{Batcher, WriteRequest};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::Arc;
use support::*;

/// 2024-03-10T12:00:00Z: every writable generated time is within 60 s of it.
const T0: i128 = 1_710_072_000 * NS_PER_SEC;
const MAX_LINE: usize = 64 * 1024;
const TESTID: &str = "prop-run";

// ---------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------

fn metric_pool() -> Vec<String> {
    let mut v: Vec<String> = [
        "http_reqs",
        "http_req_duration",
        "http_req_waiting",
        "checks",
        "data_sent",
        "iteration_duration",
        "vus",
        "custom_trend",
        // odd ones
        "time",
        "ts_x",
        "measure_name",
        "measure_value",
        "Time",
        "name",
        "tag_name",
        "status",
        "testid",
        "k6",
        "measure_value_x",
        "group:a",
        "métrique ü ✓",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("m".repeat(300));
    v.push(format!("{}{}", "é".repeat(127), "tail-of-a-long-name"));
    v
}
/// Metrics a run picks most of the time (the k6-like ones).
const COMMON_METRICS: usize = 8;

fn key_pool() -> Vec<String> {
    let mut v: Vec<String> = [
        "name",
        "status",
        "method",
        "url",
        "group",
        "scenario",
        "check",
        "error_code",
        "expected_response",
        "proto",
        "",
        "time",
        "ts_x",
        "measure_name",
        "measure_value",
        "measure_name_x",
        "TIME",
        "Ts_Y",
        "tag_time",
        "k6_time",
        "testid",
        "env",
        "vu",
        "iter",
        "meta_vu",
        "http_reqs",
        "checks",
        "key with space",
        "ключ",
        "a:b",
        "measure_value::double",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("k".repeat(70));
    v.push("ключ".repeat(15)); // 120 bytes, the 51-byte cut falls inside a char
    v.push(format!("{}{}", "k".repeat(60), "b"));
    v
}

fn meta_key_pool() -> Vec<String> {
    let mut v: Vec<String> = vec!["vu".into(), "iter".into(), "trace_id".into()];
    v.extend(key_pool());
    v
}

fn value_pool() -> Vec<String> {
    vec![
        "".into(),
        "200".into(),
        "GET".into(),
        "http://127.0.0.1:42111/json".into(),
        "héllo wörld ✓ 日本語 🚀 \"quoted\" \\ back".into(),
        "tab\there\nnl\r\u{1}\u{7f}".into(),
        "a\u{2028}b\u{2029}c <b>&amp;</b>".into(),
        "0".into(),
        "x".repeat(2100),
        "é".repeat(2049),
        format!("http://127.0.0.1:42111/?q={}", "q".repeat(1500)),
        "steady".into(),
        "::home::nested json".into(),
        " ".into(),
    ]
}

const SPECIAL_VALUES: [f64; 18] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.1,
    0.30000000000000004,
    1e-7,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    9007199254740992.0,
    1e21,
    1.5e21,
    123456789.123,
    0.9999999999999999,
    1234.5678901234567,
    1e6,
];

// ---------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum TimeSpec {
    /// T0 + off_ns, `digits` fraction digits, local offset, zone style.
    Near {
        off_ns: u64,
        digits: usize,
        offset_min: i32,
        zone: u8,
    },
    /// Before 1970 (dropped: time_out_of_range).
    Pre1970 {
        secs: u64,
        digits: usize,
        offset_min: i32,
    },
    /// After 2262-04-11 (beyond i64 ns; dropped: time_out_of_range).
    Future { secs: u64, offset_min: i32 },
}

impl TimeSpec {
    fn render(&self) -> (String, i128) {
        fn trunc(ns: i128, digits: usize) -> i128 {
            let p = 10i128.pow(9 - digits as u32);
            ns - ns.rem_euclid(p)
        }
        match *self {
            TimeSpec::Near {
                off_ns,
                digits,
                offset_min,
                zone,
            } => {
                let ns = trunc(T0 + i128::from(off_ns), digits);
                (format_rfc3339(ns, offset_min, digits, zone), ns)
            }
            TimeSpec::Pre1970 {
                secs,
                digits,
                offset_min,
            } => {
                let ns = trunc(-(i128::from(secs) * NS_PER_SEC) - 987_654_321, digits);
                (format_rfc3339(ns, offset_min, digits, 1), ns)
            }
            TimeSpec::Future { secs, offset_min } => {
                let ns = i128::from(secs) * NS_PER_SEC;
                (format_rfc3339(ns, offset_min, 0, 1), ns)
            }
        }
    }
}

fn offset_strategy() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => Just(0),
        2 => prop::sample::select(vec![330, -180, 840, -420, 60, -1439, 1439, 345]),
        1 => -1439i32..=1439,
    ]
}

fn time_strategy() -> impl Strategy<Value = TimeSpec> {
    prop_oneof![
        14 => (0u64..60_000_000_000, 0usize..=9, offset_strategy(), 0u8..3)
            .prop_map(|(off_ns, digits, offset_min, zone)| TimeSpec::Near { off_ns, digits, offset_min, zone }),
        1 => (1u64..=62_135_596_800, 0usize..=9, offset_strategy())
            .prop_map(|(secs, digits, offset_min)| TimeSpec::Pre1970 { secs, digits, offset_min }),
        1 => (9_223_372_037u64..=253_402_214_399, offset_strategy())
            .prop_map(|(secs, offset_min)| TimeSpec::Future { secs, offset_min }),
    ]
}

#[derive(Debug, Clone)]
enum ValueSpec {
    Special(usize),
    /// Any finite double.
    Bits(u64),
    /// A duration in ms with µs precision, like k6's.
    Millis(u32),
    Int(i64),
}

impl ValueSpec {
    fn value(&self) -> f64 {
        match *self {
            ValueSpec::Special(i) => SPECIAL_VALUES[i % SPECIAL_VALUES.len()],
            ValueSpec::Bits(b) => f64::from_bits(b & 0xffef_ffff_ffff_ffff),
            ValueSpec::Millis(us) => f64::from(us) / 1000.0,
            ValueSpec::Int(i) => i as f64,
        }
    }
}

/// Go's `%g`-style shortest text (exponent form when |v| ≥ 1e6 or < 1e-4),
/// as k6 writes numbers.
fn go_number(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    if !(-4..6).contains(&exp) {
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        format!("{v}")
    }
}

/// Some JSON number text for `v` whose correctly rounded value is `v`
/// (plain decimals only for moderate magnitudes: k6 never writes 300-digit
/// integers).
fn number_text(v: f64, style: u8) -> String {
    match style % 4 {
        0 => go_number(v),
        1 if v == 0.0 || (1e-5..1e16).contains(&v.abs()) => format!("{v}"),
        1 => go_number(v),
        2 => format!("{v:e}"),
        _ => format!("{v:?}"),
    }
}

fn value_strategy() -> impl Strategy<Value = ValueSpec> {
    prop_oneof![
        3 => (0usize..SPECIAL_VALUES.len()).prop_map(ValueSpec::Special),
        3 => any::<u64>().prop_map(ValueSpec::Bits),
        4 => any::<u32>().prop_map(ValueSpec::Millis),
        2 => (-5i64..1_000_000_000).prop_map(ValueSpec::Int),
    ]
}

#[derive(Debug, Clone)]
enum TagsSpec {
    Absent,
    Null,
    Empty,
    /// (key index, value index) pairs; repeated keys are written once.
    Map(Vec<(usize, usize)>),
}

fn tags_strategy() -> impl Strategy<Value = TagsSpec> {
    prop_oneof![
        1 => Just(TagsSpec::Absent),
        1 => Just(TagsSpec::Null),
        1 => Just(TagsSpec::Empty),
        8 => prop::collection::vec((0usize..1000, 0usize..1000), 1..8).prop_map(TagsSpec::Map),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Metric {
        metric: usize,
        kind: usize,
    },
    /// Consecutive points with the same time, tags and metadata.
    Run {
        time: TimeSpec,
        tags: TagsSpec,
        meta: TagsSpec,
        points: Vec<(usize, ValueSpec, u8)>,
        crlf: bool,
    },
    /// The same bytes as an earlier line.
    Duplicate {
        back: usize,
    },
    /// An earlier point again with another value.
    Conflict {
        back: usize,
        value: ValueSpec,
    },
    Special {
        kind: usize,
    },
    TooLong {
        huge: bool,
        extra: usize,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let point = (
        prop_oneof![4 => 0usize..COMMON_METRICS, 1 => 0usize..1000],
        value_strategy(),
        any::<u8>(),
    );
    prop_oneof![
        3 => (0usize..1000, 0usize..5).prop_map(|(metric, kind)| Op::Metric { metric, kind }),
        10 => (time_strategy(), tags_strategy(), tags_strategy(), prop::collection::vec(point, 1..12), prop::bool::weighted(0.1))
            .prop_map(|(time, tags, meta, points, crlf)| Op::Run { time, tags, meta, points, crlf }),
        2 => (0usize..50).prop_map(|back| Op::Duplicate { back }),
        2 => (0usize..50, value_strategy()).prop_map(|(back, value)| Op::Conflict { back, value }),
        4 => (0usize..1000).prop_map(|kind| Op::Special { kind }),
        1 => (prop::bool::weighted(0.1), 1usize..4000).prop_map(|(huge, extra)| Op::TooLong { huge, extra }),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    ops: Vec<Op>,
    final_newline: bool,
    /// Where the input is split into two gzip members (fraction in ‰).
    split_permille: u16,
    extra_dimension: bool,
    /// Read sizes of the trickling reader.
    read_sizes: Vec<usize>,
    /// For the resume / stop properties.
    k: usize,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(op_strategy(), 1..40),
        prop::bool::weighted(0.8),
        0u16..=1000,
        any::<bool>(),
        prop::collection::vec(prop_oneof![1 => Just(1usize), 3 => 1usize..300], 1..6),
        0usize..1000,
    )
        .prop_map(
            |(ops, final_newline, split_permille, extra_dimension, read_sizes, k)| Case {
                ops,
                final_newline,
                split_permille,
                extra_dimension,
                read_sizes,
                k,
            },
        )
}

/// What the generator meant a line to be.
#[derive(Debug, Clone, PartialEq)]
enum Intent {
    Blank,
    Metric,
    /// A valid point: its value bits and, if dropped, why.
    Point(u64, Option<&'static str>),
    Ignored,
    Skipped(&'static str),
}

struct PointRecipe {
    metric: String,
    time: String,
    rest: String,
    crlf: bool,
    drop: Option<&'static str>,
}

impl PointRecipe {
    fn line(&self, value_text: &str) -> Vec<u8> {
        let mut s = format!(
            r#"{{"metric":{},"type":"Point","data":{{"time":{},"value":{value_text}{}}}}}"#,
            serde_json::to_string(&self.metric).unwrap(),
            serde_json::to_string(&self.time).unwrap(),
            self.rest
        );
        if self.crlf {
            s.push('\r');
        }
        s.into_bytes()
    }
}

fn render_pairs(spec: &TagsSpec, keys: &[String], values: &[String], name: &str) -> String {
    match spec {
        TagsSpec::Absent => String::new(),
        TagsSpec::Null => format!(r#","{name}":null"#),
        TagsSpec::Empty => format!(r#","{name}":{{}}"#),
        TagsSpec::Map(pairs) => {
            let mut seen = Vec::new();
            let mut parts = Vec::new();
            for &(k, v) in pairs {
                let k = &keys[k % keys.len()];
                if seen.contains(&k) {
                    continue;
                }
                seen.push(k);
                let v = &values[v % values.len()];
                parts.push(format!(
                    "{}:{}",
                    serde_json::to_string(k).unwrap(),
                    serde_json::to_string(v).unwrap()
                ));
            }
            format!(r#","{name}":{{{}}}"#, parts.join(","))
        }
    }
}

/// Lines that are neither ordinary points nor Metric lines.
fn special_line(kind: usize) -> (Vec<u8>, Intent) {
    let t = r#""time":"2024-03-10T12:00:30Z""#;
    let bad_time = |time: &str| {
        format!(
            r#"{{"metric":"m","type":"Point","data":{{"time":"{time}","value":1,"tags":{{"case":"bad_time"}}}}}}"#
        )
    };
    let (line, intent): (String, Intent) = match kind % 34 {
        0 => ("".into(), Intent::Blank),
        1 => ("   \t ".into(), Intent::Blank),
        2 => ("\r".into(), Intent::Blank),
        3 => (
            format!(r#"{{"metric":"m","type":"Point","data":{{{t},"value":1,"#),
            Intent::Skipped("malformed_json"),
        ),
        4 => ("not json at all".into(), Intent::Skipped("malformed_json")),
        5 => ("[1,2]".into(), Intent::Skipped("malformed_json")),
        6 => (
            format!(r#"{{"metric":"m","type":"Point","data":{{{t},"value":"12.5"}}}}"#),
            Intent::Skipped("malformed_json"),
        ),
        7 => (
            format!(r#"{{"metric":"m","type":"Point","data":{{{t},"value":1,"tags":{{"a":[1]}}}}}}"#),
            Intent::Skipped("malformed_json"),
        ),
        8 => (r#"{"type":5}"#.into(), Intent::Skipped("malformed_json")),
        9 => {
            let mut b = format!(r#"{{"metric":"m","type":"Point","data":{{{t},"value":1,"tags":{{"bad":"caf"#).into_bytes();
            b.extend_from_slice(b"\xe9\xff\xfe\"}}}");
            return (b, Intent::Skipped("invalid_utf8"));
        }
        10 => (
            format!(r#"{{"metric":"m","type":"Point","data":{{{t},"tags":{{"case":"no value"}}}}}}"#),
            Intent::Skipped("missing_field"),
        ),
        11 => (
            format!(r#"{{"type":"Point","data":{{{t},"value":1}}}}"#),
            Intent::Skipped("missing_field"),
        ),
        12 => (
            format!(r#"{{"metric":"","type":"Point","data":{{{t},"value":1}}}}"#),
            Intent::Skipped("missing_field"),
        ),
        13 => (
            format!(r#"{{"metric":"m","type":"Point","data":{{{t},"value":null}}}}"#),
            Intent::Skipped("missing_field"),
        ),
        14 => (
            format!(r#"{{"metric":"m","data":{{{t},"value":1}}}}"#),
            Intent::Skipped("missing_field"),
        ),
        15 => (r#"{"type":"Point","metric":"m"}"#.into(), Intent::Skipped("missing_field")),
        16 => (
            r#"{"metric":"m","type":"Point","data":{"value":1}}"#.into(),
            Intent::Skipped("missing_field"),
        ),
        17 => (bad_time("2024-03-10T12:00:00"), Intent::Skipped("invalid_time")),
        18 => (bad_time("2024-03-10T12:00:00.1234567891Z"), Intent::Skipped("invalid_time")),
        19 => (bad_time("2024-13-01T00:00:00Z"), Intent::Skipped("invalid_time")),
        20 => (bad_time("2024-02-30T00:00:00Z"), Intent::Skipped("invalid_time")),
        21 => (bad_time("2024-03-10T24:00:00Z"), Intent::Skipped("invalid_time")),
        22 => (bad_time("2024-03-10T12:00:60Z"), Intent::Skipped("invalid_time")),
        23 => (bad_time("2024-03-10T12:00:00+24:00"), Intent::Skipped("invalid_time")),
        24 => (bad_time("garbage"), Intent::Skipped("invalid_time")),
        25 => (bad_time("2024-03-10T12:00:00+0530"), Intent::Skipped("invalid_time")),
        26 => (bad_time("2024-03-10T12:00:00.Z"), Intent::Skipped("invalid_time")),
        27 => (r#"{"type":"Summary","data":{"x":1}}"#.into(), Intent::Ignored),
        28 => (
            format!(r#"{{"type":"Histogram","metric":"m","data":{{{t},"value":1}}}}"#),
            Intent::Ignored,
        ),
        // k6 writes Infinity as a bare +Inf / -Inf: valid points, dropped.
        29 => (
            format!(r#"{{"metric":"m","type":"Point","data":{{{t},"value":+Inf,"tags":{{"idx":"15"}}}}}}"#),
            Intent::Point(f64::INFINITY.to_bits(), Some("non_finite_value")),
        ),
        30 => (
            format!(r#"{{"metric":"m","type":"Point","data":{{{t},"value":-Inf,"tags":{{"idx":"16"}}}}}}"#),
            Intent::Point(f64::NEG_INFINITY.to_bits(), Some("non_finite_value")),
        ),
        31 => (
            format!(r#"{{"metric":"m","type":"Point","data":{{{t},"value":"NaN"}}}}"#),
            Intent::Point(f64::NAN.to_bits(), Some("non_finite_value")),
        ),
        32 => (
            r#"{"type":"Metric","data":{"name":"m","type":"counter","contains":"default","thresholds":[],"submetrics":null},"metric":"m"}"#
                .into(),
            Intent::Metric,
        ),
        // A space instead of T is accepted (RFC 3339 §5.6 note; src/time.rs).
        _ => (
            r#"{"metric":"m","type":"Point","data":{"time":"2024-03-10 12:00:40Z","value":2,"tags":{"case":"space"}}}"#.into(),
            Intent::Point(2f64.to_bits(), None),
        ),
    };
    (line.into_bytes(), intent)
}

struct Generated {
    lines: Vec<Vec<u8>>,
    intents: Vec<Intent>,
    bytes: Vec<u8>,
}

fn generate(case: &Case) -> Generated {
    let metrics = metric_pool();
    let keys = key_pool();
    let meta_keys = meta_key_pool();
    let values = value_pool();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut intents: Vec<Intent> = Vec::new();
    let mut recipes: Vec<PointRecipe> = Vec::new();
    for op in &case.ops {
        match op {
            Op::Metric { metric, kind } => {
                let name = &metrics[metric % metrics.len()];
                let kind = ["counter", "gauge", "rate", "trend", "histogram"][*kind];
                lines.push(
                    format!(
                        r#"{{"type":"Metric","data":{{"name":{n},"type":"{kind}","contains":"default","thresholds":[],"submetrics":null}},"metric":{n}}}"#,
                        n = serde_json::to_string(name).unwrap()
                    )
                    .into_bytes(),
                );
                intents.push(Intent::Metric);
            }
            Op::Run {
                time,
                tags,
                meta,
                points,
                crlf,
            } => {
                let (time_text, ns) = time.render();
                let drop = (ns < 0 || ns > i128::from(i64::MAX)).then_some("time_out_of_range");
                let rest = format!(
                    "{}{}",
                    render_pairs(tags, &keys, &values, "tags"),
                    render_pairs(meta, &meta_keys, &values, "metadata")
                );
                for (m, v, style) in points {
                    let recipe = PointRecipe {
                        metric: metrics[m % metrics.len()].clone(),
                        time: time_text.clone(),
                        rest: rest.clone(),
                        crlf: *crlf,
                        drop,
                    };
                    let x = v.value();
                    lines.push(recipe.line(&number_text(x, *style)));
                    intents.push(Intent::Point(x.to_bits(), drop));
                    recipes.push(recipe);
                }
            }
            Op::Duplicate { back } => {
                if !lines.is_empty() {
                    let i = lines.len() - 1 - back % lines.len();
                    lines.push(lines[i].clone());
                    intents.push(intents[i].clone());
                }
            }
            Op::Conflict { back, value } => {
                if !recipes.is_empty() {
                    let r = &recipes[recipes.len() - 1 - back % recipes.len()];
                    let x = value.value();
                    lines.push(r.line(&go_number(x)));
                    intents.push(Intent::Point(x.to_bits(), r.drop));
                }
            }
            Op::Special { kind } => {
                let (l, i) = special_line(*kind);
                lines.push(l);
                intents.push(i);
            }
            Op::TooLong { huge, extra } => {
                let len = if *huge { 300_000 } else { MAX_LINE + extra };
                let head = r#"{"metric":"m","type":"Point","data":{"time":"2024-03-10T12:00:50Z","value":1,"tags":{"pad":""#;
                let mut l = head.as_bytes().to_vec();
                l.resize(len, b'p');
                l.extend_from_slice(b"\"}}}");
                lines.push(l);
                intents.push(Intent::Skipped("line_too_long"));
            }
        }
    }
    // Many long tag values can make a point line too long by themselves.
    for (l, i) in lines.iter().zip(intents.iter_mut()) {
        if l.len() > MAX_LINE {
            *i = Intent::Skipped("line_too_long");
        }
    }
    // Input whose first DETECT_LINES non-blank lines hold no k6 line (a
    // Metric or Point line; a bad time is still a Point line) is not k6
    // output: one error (tests/csv.rs). These properties are about k6
    // output, so such an input starts with a Metric line.
    let k6_line = |i: &Intent| {
        matches!(
            i,
            Intent::Metric | Intent::Point(..) | Intent::Skipped("invalid_time")
        )
    };
    let first: Vec<&Intent> = intents
        .iter()
        .filter(|i| **i != Intent::Blank)
        .take(k6_timestream::core::pipeline::DETECT_LINES as usize)
        .collect();
    if !first.is_empty() && !first.iter().any(|i| k6_line(i)) {
        let (l, i) = special_line(32);
        lines.insert(0, l);
        intents.insert(0, i);
    }
    let mut bytes = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        bytes.extend_from_slice(l);
        if i + 1 < lines.len() || case.final_newline || l.is_empty() {
            bytes.push(b'\n');
        }
    }
    Generated {
        lines,
        intents,
        bytes,
    }
}

/// The oracle's view of the generated input; also checks that it agrees
/// with what the generator meant (a disagreement is a bug of the test).
fn expected(g: &Generated) -> Result<Expected, TestCaseError> {
    let refs: Vec<&[u8]> = g.lines.iter().map(Vec::as_slice).collect();
    let exp = Expected::from_lines(&refs, MAX_LINE);
    for (i, (l, intent)) in g.lines.iter().zip(&g.intents).enumerate() {
        let got = match classify_line(i as u64 + 1, l, MAX_LINE) {
            LineClass::Blank => Intent::Blank,
            LineClass::Metric(_) => Intent::Metric,
            LineClass::Point(p) => {
                // NaN: compare as "a NaN".
                let bits = if p.value.is_nan() {
                    f64::NAN.to_bits()
                } else {
                    p.value.to_bits()
                };
                Intent::Point(bits, p.drop)
            }
            LineClass::Ignored(_) => Intent::Ignored,
            LineClass::Skipped(r) => Intent::Skipped(r),
        };
        prop_assert_eq!(
            &got,
            intent,
            "generator and oracle disagree on line {}: {:?}",
            i + 1,
            String::from_utf8_lossy(l)
        );
    }
    Ok(exp)
}

/// Does the input end mid-write as `pipeline::run` judges it: no `\n`
/// after a last line that is blank or not a valid line?
fn cut_off(g: &Generated) -> bool {
    !g.bytes.ends_with(b"\n")
        && matches!(g.intents.last(), Some(Intent::Blank | Intent::Skipped(_)))
}

/// [`expected`] for a run of `model`: a MULTI run of an input cut off
/// mid-write withholds its last group (its size is the report's, checked
/// by `Expected::withhold_tail`); nothing else is ever withheld.
fn expected_for(
    g: &Generated,
    model: DataModel,
    rep: &RunReport,
) -> Result<Expected, TestCaseError> {
    let mut exp = expected(g)?;
    let withheld = rep.dropped.get("input_truncated_tail").copied();
    if model == DataModel::Multi && cut_off(g) {
        exp.withhold_tail(withheld.unwrap_or(0))
            .map_err(TestCaseError::fail)?;
    } else {
        prop_assert_eq!(withheld, None, "a tail withheld from a complete input");
    }
    Ok(exp)
}

// ---------------------------------------------------------------------------
// Running the pipeline
// ---------------------------------------------------------------------------

fn options(model: DataModel, extra_dimension: bool) -> PipelineOptions {
    PipelineOptions {
        convert: ConvertOptions {
            model,
            testid: Some(TESTID.to_owned()),
            extra_dimensions: if extra_dimension {
                vec![("env".into(), "ci".into())]
            } else {
                Vec::new()
            },
            ..Default::default()
        },
        input: InputOptions {
            max_line_bytes: MAX_LINE,
            ..Default::default()
        },
    }
}

struct Run {
    requests: Vec<WriteRequest>,
    report: RunReport,
    stopped: bool,
    error: Option<String>,
    /// The error is one a retry can cure.
    retryable: bool,
}

/// Runs the pipeline; the sink keeps what it gets and answers Break after
/// `stop_after` requests.
fn run_with<R: Read + Send>(source: R, opts: &PipelineOptions, stop_after: Option<usize>) -> Run {
    run_windowed(source, opts, DEFAULT_COLLISION_WINDOW_SECS, stop_after)
}

fn run_windowed<R: Read + Send>(
    source: R,
    opts: &PipelineOptions,
    window_secs: u64,
    stop_after: Option<usize>,
) -> Run {
    let mut requests = Vec::new();
    let mut batcher = Batcher::new(opts.convert.model, window_secs);
    let out = pipeline::run(
        source,
        "generated.json",
        opts,
        &mut batcher,
        Arc::new(Progress::default()),
        &mut |req, _| {
            requests.push(req);
            if stop_after == Some(requests.len()) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    Run {
        requests,
        report: out.report,
        stopped: out.stopped,
        retryable: out.error.as_ref().is_some_and(|e| e.retryable()),
        error: out.error.map(|e| e.to_string()),
    }
}

fn run(bytes: &[u8], opts: &PipelineOptions) -> Run {
    run_with(bytes, opts, None)
}

/// A reader that hands out at most `sizes[i % len]` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    n: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.sizes[self.n % self.sizes.len()]
            .min(buf.len())
            .min(self.data.len());
        self.n += 1;
        buf[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

/// The report without what depends on the encoding of the input.
fn conversion_report(r: &RunReport) -> RunReport {
    RunReport {
        gzip: false,
        bytes_read: 0,
        ..r.clone()
    }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

fn models() -> [DataModel; 2] {
    [DataModel::Multi, DataModel::Single]
}

/// A request's records, merged, after the model-level checks; and the same
/// through `request_json::write_json`.
fn check_request(
    req: &WriteRequest,
    seq: usize,
    model: DataModel,
) -> Result<Vec<OutRecord>, String> {
    let multi = model == DataModel::Multi;
    if req.seq != seq as u64 || req.model != model {
        return Err(format!(
            "request {seq}: seq {} model {:?}",
            req.seq, req.model
        ));
    }
    if req.records.is_empty() || req.records.len() > 100 {
        return Err(format!("request {seq}: {} records", req.records.len()));
    }
    let mut out = Vec::new();
    for (i, r) in req.records.iter().enumerate() {
        let at = format!("request {seq} record {i}");
        if r.dimensions.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(format!(
                "{at}: dimensions not sorted by unique name: {:?}",
                r.dimensions
            ));
        }
        if let Some(c) = req
            .common_dimensions
            .iter()
            .find(|c| !r.dimensions.contains(c))
        {
            return Err(format!(
                "{at}: common dimension {c:?} is not one of the record's"
            ));
        }
        if let Some(m) = &req.common_measure_name {
            if *m != r.measure_name {
                return Err(format!(
                    "{at}: common measure name {m:?} vs {:?}",
                    r.measure_name
                ));
            }
        }
        let values = match (&r.values, multi) {
            (Values::Single(v), false) => vec![(r.measure_name.clone(), v.clone())],
            (Values::Multi(m), true) => m.clone(),
            _ => {
                return Err(format!(
                    "{at}: values {:?} in a {model:?} request",
                    r.values
                ))
            }
        };
        if r.lines.len() != values.len() {
            return Err(format!(
                "{at}: {} lines for {} measures",
                r.lines.len(),
                values.len()
            ));
        }
        let rec = OutRecord {
            dims: r
                .dimensions
                .iter()
                .map(|d| (d.name.clone(), d.value.clone()))
                .collect(),
            measure_name: r.measure_name.clone(),
            values,
            time: i128::from(r.time_ns),
        };
        check_record(&rec, multi, true).map_err(|e| format!("{at}: {e}"))?;
        out.push(rec);
    }
    let mut json = Vec::new();
    k6_timestream::sinks::timestream::encode::write_json(&mut json, "db", "tbl", req)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8(json).map_err(|e| e.to_string())?;
    if text.matches('\n').count() != 1 || !text.ends_with('\n') {
        return Err(format!(
            "request {seq}: write_json did not write exactly one line"
        ));
    }
    let parsed = parse_request(text.trim_end(), "db", "tbl", multi, true)
        .map_err(|e| format!("request {seq} as JSON: {e}"))?;
    if parsed.records != out {
        return Err(format!(
            "request {seq}: the JSON form differs from the model:\n{:?}\n{:?}",
            parsed.records, out
        ));
    }
    Ok(out)
}

fn cfg(cases: u32) -> Config {
    Config {
        cases,
        max_shrink_iters: 2048,
        failure_persistence: None,
        ..Config::default()
    }
}

#[test]
fn oracle_self_test() {
    support::oracle_self_test();
    assert_eq!(go_number(1e6), "1e+06");
    assert_eq!(go_number(1160472.0), "1.160472e+06");
    assert_eq!(go_number(9e-5), "9e-05");
    assert_eq!(go_number(999999.0), "999999");
    assert_eq!(go_number(0.0001), "0.0001");
    assert_eq!(go_number(5e-324), "5e-324");
    assert_eq!(go_number(1.7976931348623157e308), "1.7976931348623157e+308");
}

proptest! {
    #![proptest_config(cfg(96))]

    /// 1. The report accounts for every line and every point.
    #[test]
    fn prop_report_accounts_for_every_line(case in case_strategy()) {
        let g = generate(&case);
        for model in models() {
            let r = run(&g.bytes, &options(model, case.extra_dimension));
            let exp = expected_for(&g, model, &r.report)?;
            let rep = &r.report;
            prop_assert!(r.error.is_none() && rep.complete && !r.stopped, "{:?} {:?}", r.error, rep.error);
            let dropped: u64 = rep.dropped.values().sum();
            prop_assert_eq!(rep.points, rep.measures + dropped, "points = measures + dropped");
            prop_assert_eq!(rep.lines, g.lines.len() as u64);
            prop_assert_eq!(rep.blank_lines, exp.blank_lines);
            prop_assert_eq!(rep.metric_definitions, exp.metric_definitions);
            prop_assert_eq!(rep.points, exp.points.len() as u64);
            prop_assert_eq!(&rep.skipped, &exp.skipped);
            prop_assert_eq!(&rep.ignored, &exp.ignored);
            prop_assert_eq!(&rep.dropped, &exp.dropped);
            prop_assert_eq!(rep.collision_window_misses, 0);
            prop_assert_eq!(rep.batches, r.requests.len() as u64);
            prop_assert_eq!(rep.records, r.requests.iter().map(|q| q.records.len() as u64).sum::<u64>());
            prop_assert_eq!(rep.measures, r.requests.iter().map(WriteRequest::measure_count).sum::<u64>());
        }
    }

    /// 2. Every request obeys Timestream's limits (model types and JSON).
    #[test]
    fn prop_requests_obey_timestream_limits(case in case_strategy()) {
        let g = generate(&case);
        for model in models() {
            let r = run(&g.bytes, &options(model, case.extra_dimension));
            for (i, req) in r.requests.iter().enumerate() {
                if let Err(e) = check_request(req, i, model) {
                    prop_assert!(false, "{:?}: {}", model, e);
                }
            }
        }
    }

    /// 3. No two records share dimensions, measure name and time with
    /// different values.
    #[test]
    fn prop_no_conflicting_records(case in case_strategy()) {
        let g = generate(&case);
        for model in models() {
            let r = run(&g.bytes, &options(model, case.extra_dimension));
            prop_assert_eq!(r.report.collision_window_misses, 0);
            let mut seen = CollisionCheck::default();
            for req in &r.requests {
                for rec in &req.records {
                    let values = match &rec.values {
                        Values::Single(v) => vec![(rec.measure_name.clone(), v.clone())],
                        Values::Multi(m) => m.clone(),
                    };
                    let o = OutRecord {
                        dims: rec.dimensions.iter().map(|d| (d.name.clone(), d.value.clone())).collect(),
                        measure_name: rec.measure_name.clone(),
                        values,
                        time: i128::from(rec.time_ns),
                    };
                    if let Err(e) = seen.add(&o) {
                        prop_assert!(false, "{:?}: {}", model, e);
                    }
                }
            }
        }
    }

    /// 4. Deterministic, and the same for plain, gzip and two-member gzip.
    #[test]
    fn prop_deterministic_whatever_the_encoding(case in case_strategy()) {
        let g = generate(&case);
        let split = g.bytes.len() * usize::from(case.split_permille) / 1000;
        let gz = gzip(&g.bytes);
        let mut two = gzip(&g.bytes[..split]);
        two.extend(gzip(&g.bytes[split..]));
        for model in models() {
            let opts = options(model, case.extra_dimension);
            let a = run(&g.bytes, &opts);
            let b = run(&g.bytes, &opts);
            prop_assert_eq!(&a.requests, &b.requests, "two runs differ");
            prop_assert_eq!(&a.report, &b.report);
            for (what, input) in [("gzip", &gz), ("two gzip members", &two)] {
                let c = run(input, &opts);
                prop_assert!(c.report.gzip && c.error.is_none(), "{}: {:?}", what, c.error);
                prop_assert_eq!(&a.requests, &c.requests, "plain vs {}", what);
                prop_assert_eq!(conversion_report(&a.report), conversion_report(&c.report), "plain vs {}", what);
            }
        }
    }

    /// 4b. How the source hands out its bytes does not matter (a reader
    /// may return fewer bytes than asked, even one).
    #[test]
    fn prop_read_sizes_do_not_matter(case in case_strategy()) {
        let g = generate(&case);
        let gz = gzip(&g.bytes);
        for model in models() {
            let opts = options(model, case.extra_dimension);
            let a = run(&g.bytes, &opts);
            for (what, input) in [("plain", &g.bytes), ("gzip", &gz)] {
                let c = run_with(Trickle { data: input, sizes: case.read_sizes.clone(), n: 0 }, &opts, None);
                prop_assert!(c.error.is_none(), "{} in reads of {:?} bytes: {:?}", what, case.read_sizes, c.error);
                prop_assert_eq!(&a.requests, &c.requests, "{} in reads of {:?} bytes", what, case.read_sizes);
            }
        }
    }

    /// 5. Resuming at request k gives the tail of a full run; a sink that
    /// stops after k requests gets exactly the first k.
    #[test]
    fn prop_resume_and_stop(case in case_strategy()) {
        let g = generate(&case);
        for model in models() {
            let opts = options(model, case.extra_dimension);
            let full = run(&g.bytes, &opts).requests;
            let k = case.k % (full.len() + 1);
            let fresh = run(&g.bytes, &opts).requests;
            let tail: Vec<&WriteRequest> = fresh.iter().filter(|r| r.seq >= k as u64).collect();
            prop_assert_eq!(tail, full[k..].iter().collect::<Vec<_>>());
            if !full.is_empty() {
                let k = k.max(1);
                let stopped = run_with(&g.bytes[..], &opts, Some(k));
                prop_assert!(stopped.stopped && !stopped.report.complete);
                prop_assert_eq!(&stopped.requests[..], &full[..k]);
            }
        }
    }

    /// 6. The measures are the writable points: same multiset of
    /// (metric, value bits), and each record's `lines` point at its points.
    #[test]
    fn prop_measures_are_the_points(case in case_strategy()) {
        let g = generate(&case);
        // -0 is written as 0 (the same number): compare zeros as +0.
        let bits = |x: f64| if x == 0.0 { 0 } else { x.to_bits() };
        for model in models() {
            let r = run(&g.bytes, &options(model, case.extra_dimension));
            let exp = expected_for(&g, model, &r.report)?;
            let by_line: HashMap<u64, &OraclePoint> = exp.points.iter().map(|p| (p.line, p)).collect();
            let mut want: BTreeMap<(String, u64), i64> = BTreeMap::new();
            for p in exp.written_points() {
                *want.entry((p.metric.clone(), bits(p.value))).or_default() += 1;
            }
            let mut got: BTreeMap<(String, u64), i64> = BTreeMap::new();
            let mut used_lines = Vec::new();
            for req in &r.requests {
                for rec in &req.records {
                    let values = match &rec.values {
                        Values::Single(v) => vec![(rec.measure_name.clone(), v.clone())],
                        Values::Multi(m) => m.clone(),
                    };
                    for ((name, value), line) in values.iter().zip(&rec.lines) {
                        let metric: Vec<&String> = exp.metric_names.iter().filter(|m| measure_name_ok(name, m)).collect();
                        prop_assert!(metric.len() == 1, "{:?}: measure name {:?} maps to metrics {:?}", model, name, metric);
                        let x: f64 = value.parse().map_err(|_| TestCaseError::fail(format!("value {value:?}")))?;
                        *got.entry((metric[0].clone(), bits(x))).or_default() += 1;
                        let p = by_line.get(line);
                        prop_assert!(p.is_some_and(|p| p.drop.is_none() && measure_name_ok(name, &p.metric) && same_value(value, p.value)),
                            "{:?}: measure {}={} says it comes from line {} which is {:?}", model, name, value, line, p);
                        used_lines.push(*line);
                    }
                }
            }
            let diff: Vec<_> = want.iter().filter(|(k, n)| got.get(*k) != Some(n))
                .map(|((m, b), n)| format!("{m}={:e} ({b:#x}): {n} in, {} out", f64::from_bits(*b), got.get(&(m.clone(), *b)).unwrap_or(&0)))
                .chain(got.iter().filter(|(k, _)| !want.contains_key(*k))
                    .map(|((m, b), n)| format!("{m}={:e} ({b:#x}): 0 in, {n} out", f64::from_bits(*b))))
                .collect();
            prop_assert!(diff.is_empty(), "{:?}: (metric, value) multisets differ:\n{}", model, diff.join("\n"));
            used_lines.sort_unstable();
            let mut written: Vec<u64> = exp.written_points().map(|p| p.line).collect();
            written.sort_unstable();
            prop_assert_eq!(used_lines, written, "{:?}: each writable point exactly once", model);
        }
    }

    /// 7. Each measure's dimensions are its point's tags, metadata, testid
    /// and --dimension, renamed only as the rules table says.
    #[test]
    fn prop_dimensions_come_from_the_point(case in case_strategy()) {
        let g = generate(&case);
        let exp = expected(&g)?;
        let by_line: HashMap<u64, &OraclePoint> = exp.points.iter().map(|p| (p.line, p)).collect();
        let extra: Vec<(String, String)> = if case.extra_dimension { vec![("env".into(), "ci".into())] } else { Vec::new() };
        for model in models() {
            let r = run(&g.bytes, &options(model, case.extra_dimension));
            let adj = |k: &str| r.report.adjusted.get(k).copied().unwrap_or(0);
            let value_cut = adj("dimension_value_truncated") + adj("record_size_reduced") > 0;
            let omissions = adj("dimension_duplicate_omitted") + adj("dimension_limit_exceeded") > 0;
            for req in &r.requests {
                for rec in &req.records {
                    let dims: Vec<(String, String)> = rec.dimensions.iter().map(|d| (d.name.clone(), d.value.clone())).collect();
                    for line in &rec.lines {
                        let p = by_line[line];
                        prop_assert_eq!(i128::from(rec.time_ns) - p.time_ns >= 0, true);
                        prop_assert!(i128::from(rec.time_ns) - p.time_ns <= 1000, "time moved too far");
                        let inputs = input_dims(p, Some(TESTID), &extra, &exp.metric_names);
                        if let Err(e) = match_dims(&dims, &inputs, value_cut, omissions) {
                            prop_assert!(false, "{:?}: line {} ({}): {}", model, line, p.metric, e);
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Deterministic cases: the smallest inputs showing what the properties found
// ---------------------------------------------------------------------------

fn point(metric: &str, time: &str, value: &str, tags: &str) -> String {
    format!(
        r#"{{"metric":{},"type":"Point","data":{{"time":"{time}","value":{value},"tags":{tags}}}}}"#,
        serde_json::to_string(metric).unwrap()
    )
}

fn lines_input(lines: &[String]) -> Vec<u8> {
    let mut b = lines.join("\n").into_bytes();
    b.push(b'\n');
    b
}

fn merged(r: &Run) -> Vec<OutRecord> {
    r.requests
        .iter()
        .flat_map(|q| &q.records)
        .map(|rec| OutRecord {
            dims: rec
                .dimensions
                .iter()
                .map(|d| (d.name.clone(), d.value.clone()))
                .collect(),
            measure_name: rec.measure_name.clone(),
            values: match &rec.values {
                Values::Single(v) => vec![(rec.measure_name.clone(), v.clone())],
                Values::Multi(m) => m.clone(),
            },
            time: i128::from(rec.time_ns),
        })
        .collect()
}

/// Values must come out as the same double: k6 writes the shortest text
/// that round-trips, and these are ordinary k6 values (a Trend fed
/// Math.random(), a duration). Found by `prop_measures_are_the_points`.
#[test]
fn values_keep_every_bit() {
    let mut wrong = Vec::new();
    for text in [
        "0.9999999999999999",
        "1234.5678901234567",
        "0.11014164937981517",
        "947009.4987411841",
        "-2.6834524115082355e-163",
    ] {
        let want: f64 = text.parse().unwrap();
        for model in models() {
            let r = run(
                &lines_input(&[point(
                    "custom_trend",
                    "2024-03-10T12:00:00Z",
                    text,
                    r#"{"a":"1"}"#,
                )]),
                &options(model, false),
            );
            let out = merged(&r);
            assert_eq!(out.len(), 1, "{text}: {:?}", r.report);
            let got: f64 = out[0].values[0].1.parse().unwrap();
            if got.to_bits() != want.to_bits() {
                wrong.push(format!(
                    "{model:?}: input {text} came out as {:?}",
                    out[0].values[0].1
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A JSON number inside f64's range is a value, not a malformed line.
#[test]
fn long_plain_numbers_in_range_are_values() {
    let text = format!("{}", f64::MAX); // 309 digits, = 1.7976931348623157e308
    let r = run(
        &lines_input(&[point("custom_trend", "2024-03-10T12:00:00Z", &text, "{}")]),
        &options(DataModel::Single, false),
    );
    assert_eq!(
        (r.report.points, r.report.skipped_total()),
        (1, 0),
        "{:?}",
        r.report.skipped
    );
    assert_eq!(merged(&r)[0].values[0].1.parse::<f64>().unwrap(), f64::MAX);
}

/// Timestream refuses dimension names (and MULTI measure value names) that
/// contain `:` or start with `measure_value`, not only `measure_value`
/// itself. Found by `prop_requests_obey_timestream_limits`.
#[test]
fn names_timestream_refuses_are_renamed() {
    let lines = [
        point(
            "m",
            "2024-03-10T12:00:00Z",
            "1",
            r#"{"k8s:pod":"a","measure_value::double":"b","measure_values":"c"}"#,
        ),
        point("group:a", "2024-03-10T12:00:01Z", "1", r#"{"a":"1"}"#),
        point(
            "measure_value_x",
            "2024-03-10T12:00:02Z",
            "1",
            r#"{"a":"1"}"#,
        ),
    ];
    for model in models() {
        let r = run(&lines_input(&lines), &options(model, false));
        let bad: Vec<String> = merged(&r)
            .iter()
            .filter_map(|rec| check_record(rec, model == DataModel::Multi, true).err())
            .collect();
        assert!(bad.is_empty(), "{model:?}:\n{}", bad.join("\n"));
    }
}

/// A record may not have a dimension named like its measure (DOUBLE) or one
/// of its measure values (MULTI); the rules table promises the rename
/// `tag_<name>`. Found by `prop_requests_obey_timestream_limits`.
#[test]
fn no_dimension_is_named_like_a_measure_of_its_record() {
    let metric_def = r#"{"type":"Metric","data":{"name":"name","type":"counter","contains":"default","thresholds":[],"submetrics":null},"metric":"name"}"#;
    let mut wrong = Vec::new();
    for (what, lines) in [
        // The default testid is added without the metric-name rule.
        (
            "metric `testid`",
            vec![point("testid", "2024-03-10T12:00:00Z", "1", "{}")],
        ),
        // `time` becomes measure `k6_time`; a tag `k6_time` is not renamed.
        (
            "metric `time`, tag `k6_time`",
            vec![point(
                "time",
                "2024-03-10T12:00:00Z",
                "1",
                r#"{"k6_time":"x"}"#,
            )],
        ),
        // Tag `name` (a metric) becomes `tag_name`, the name of this metric.
        (
            "metric `tag_name`, tag `name`",
            vec![
                metric_def.to_owned(),
                point("tag_name", "2024-03-10T12:00:00Z", "1", r#"{"name":"x"}"#),
            ],
        ),
    ] {
        for model in models() {
            let r = run(&lines_input(&lines), &options(model, false));
            let recs = merged(&r);
            assert_eq!(recs.len(), 1);
            if let Err(e) = check_record(&recs[0], model == DataModel::Multi, true) {
                wrong.push(format!("{what}, {model:?}: {e}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Two different values at the last nanosecond an i64 can hold: the +1 ns
/// nudge overflows (a panic in debug builds, a negative time in release).
#[test]
fn conflict_at_the_last_representable_nanosecond() {
    let t = "2262-04-11T23:47:16.854775807Z";
    let input = lines_input(&[
        point("m", t, "1", r#"{"a":"1"}"#),
        point("m", t, "2", r#"{"a":"1"}"#),
    ]);
    for model in models() {
        let r = std::panic::catch_unwind(|| run(&input, &options(model, false)));
        let r = r.unwrap_or_else(|_| {
            panic!("{model:?}: the pipeline panicked on two conflicting points at {t}")
        });
        let rep = &r.report;
        assert_eq!(rep.points, rep.measures + rep.dropped_total());
        let mut seen = CollisionCheck::default();
        for rec in merged(&r) {
            check_record(&rec, model == DataModel::Multi, true).unwrap();
            seen.add(&rec).unwrap();
        }
    }
}

/// `collision_window_secs` is a u64 (`--collision-window-secs`); a value
/// ≥ 2^63 (e.g. u64::MAX meaning "remember everything") must not switch
/// collision handling off.
#[test]
fn a_huge_collision_window_still_resolves_conflicts() {
    let input = lines_input(&[
        point("m", "2024-03-10T12:00:00Z", "1", r#"{"a":"1"}"#),
        point("m", "2024-03-10T12:00:00Z", "2", r#"{"a":"1"}"#),
    ]);
    for secs in [120, 1 << 62, u64::MAX] {
        let opts = options(DataModel::Single, false);
        let r = run_windowed(&input[..], &opts, secs, None);
        let mut seen = CollisionCheck::default();
        for rec in merged(&r) {
            seen.add(&rec).unwrap_or_else(|e| {
                panic!(
                    "window {secs} s: {e}; report: nudged {}, misses {}",
                    r.report.nudged, r.report.collision_window_misses
                )
            });
        }
    }
}

/// A source whose first read returns one byte (a pipe, a network stream)
/// still has its gzip recognised. Found by `prop_read_sizes_do_not_matter`.
#[test]
fn gzip_is_recognised_when_the_first_read_is_one_byte() {
    let plain = lines_input(&[point("m", "2024-03-10T12:00:00Z", "1", r#"{"a":"1"}"#)]);
    let gz = gzip(&plain);
    let opts = options(DataModel::Single, false);
    let want = run(&plain, &opts).requests;
    assert_eq!(want.len(), 1);
    let got = run_with(
        Trickle {
            data: &gz,
            sizes: vec![1, 8192],
            n: 0,
        },
        &opts,
        None,
    );
    assert!(
        got.report.gzip,
        "gzip not detected; skipped: {:?}",
        got.report.skipped
    );
    assert_eq!(got.requests, want);
}

/// "testid [is] added [...] to points without a `testid` tag": a point
/// with its own `testid` tag gets no second, default testid, also when its
/// tag had to be renamed (`tag_testid`, because a metric is named `testid`).
/// Found by `prop_dimensions_come_from_the_point`.
#[test]
fn a_points_own_testid_tag_wins_even_when_renamed() {
    let lines = [
        r#"{"type":"Metric","data":{"name":"testid","type":"counter","contains":"default","thresholds":[],"submetrics":null},"metric":"testid"}"#.to_owned(),
        point("http_reqs", "2024-03-10T12:00:00Z", "1", r#"{"testid":"run-7"}"#),
    ];
    for model in models() {
        let r = run(&lines_input(&lines), &options(model, false));
        let recs = merged(&r);
        assert!(
            !recs[0]
                .dims
                .iter()
                .any(|(n, v)| n == "testid" && v == TESTID),
            "{model:?}: default testid added to a point tagged testid: {:?}",
            recs[0].dims
        );
    }
}

// ---------------------------------------------------------------------------
// Inputs that end early
// ---------------------------------------------------------------------------

/// A body that breaks after `cut` bytes, like a connection a proxy closed
/// half-way through an S3 object.
struct Broken<'a> {
    data: &'a [u8],
    cut: usize,
}

impl Read for Broken<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cut == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection closed by the proxy",
            ));
        }
        let n = buf.len().min(self.cut).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.cut -= n;
        Ok(n)
    }
}

/// Is `cut` inside a line of `bytes` (not at its end, not at its start)?
/// A plain file cut at a line boundary looks complete.
fn inside_a_line(bytes: &[u8], cut: usize) -> bool {
    cut > 0
        && cut < bytes.len()
        && bytes[cut - 1] != b'\n'
        && bytes[cut] != b'\n'
        && !bytes[cut..].starts_with(b"\r\n")
}

/// The records of two runs of one object (a first, broken one and the
/// retry or re-upload) as Timestream would see them: no two may conflict,
/// and what the first wrote is written again identically by the second.
fn check_rerun(first: &Run, second: &Run) -> Result<(), String> {
    let mut seen = CollisionCheck::default();
    for r in merged(first).iter().chain(&merged(second)) {
        seen.add(r)?;
    }
    let mut again: HashMap<String, usize> = HashMap::new();
    for r in merged(second) {
        *again.entry(format!("{r:?}")).or_default() += 1;
    }
    for r in merged(first) {
        match again.get_mut(&format!("{r:?}")) {
            Some(n) if *n > 0 => *n -= 1,
            _ => return Err(format!("{r:?} is not written by the complete run")),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cfg(64))]

    /// 8. A read error a retry can cure: what went out is exactly the first
    /// requests of a complete run (the retry skips or repeats them
    /// identically); the group and the batch in progress did not go out.
    #[test]
    fn prop_a_retryable_read_error_sends_only_what_a_retry_repeats(
        case in case_strategy(),
        cut_permille in 0usize..1000,
    ) {
        let g = generate(&case);
        let gz = gzip(&g.bytes);
        for model in models() {
            let opts = options(model, case.extra_dimension);
            let full = run(&g.bytes, &opts);
            for (what, input) in [("plain", &g.bytes), ("gzip", &gz)] {
                let cut = input.len() * cut_permille / 1000;
                let r = run_with(Broken { data: input, cut }, &opts, None);
                prop_assert!(r.retryable && !r.report.complete, "{} {:?}: {:?}", what, model, r.error);
                prop_assert!(r.requests.len() <= full.requests.len());
                prop_assert_eq!(&r.requests[..], &full.requests[..r.requests.len()], "{} {:?}", what, model);
                check_rerun(&r, &full).map_err(TestCaseError::fail)?;
            }
        }
    }

    /// 9. An object cut off for good (a truncated gzip stream, a plain file
    /// cut inside a line), later replaced by the complete file: the two
    /// runs never conflict and the second writes everything the first did.
    #[test]
    fn prop_a_cut_off_object_then_the_complete_one_is_idempotent(
        case in case_strategy(),
        cut_permille in 0usize..1000,
    ) {
        let g = generate(&case);
        let gz = gzip(&g.bytes);
        for model in models() {
            let opts = options(model, case.extra_dimension);
            let full = run(&g.bytes, &opts);
            let cut = gz.len() * cut_permille / 1000;
            let r = run(&gz[..cut], &opts);
            prop_assert!(!r.retryable);
            check_rerun(&r, &full).map_err(|e| TestCaseError::fail(format!("gzip cut at {cut}: {e}")))?;
            let cut = g.bytes.len() * cut_permille / 1000;
            if inside_a_line(&g.bytes, cut) {
                let r = run(&g.bytes[..cut], &opts);
                prop_assert!(r.error.is_none());
                check_rerun(&r, &full).map_err(|e| TestCaseError::fail(format!("plain cut at {cut}: {e}")))?;
            }
        }
    }
}

/// Three points of one request (same time and tags); more follow.
fn one_request_lines() -> Vec<String> {
    let tags = r#"{"name":"GET /","status":"200"}"#;
    let t = "2026-11-25T10:00:00.123456789Z";
    let mut v: Vec<String> = [
        "http_reqs",
        "http_req_duration",
        "http_req_waiting",
        "data_received",
    ]
    .iter()
    .enumerate()
    .map(|(i, m)| point(m, t, &format!("{}", i + 1), tags))
    .collect();
    v.push(point("http_reqs", "2026-11-25T10:00:01Z", "1", tags));
    v
}

/// The fuzzer's case: a gzip object read through a proxy that closed the
/// connection after half the body. The read error is retryable; before,
/// the group in progress went out with the measures read so far, and the
/// retried delivery wrote it with more: RejectedRecords.
#[test]
fn a_read_error_mid_object_withholds_the_group_in_progress() {
    let plain = lines_input(&one_request_lines());
    let gz = gzip(&plain);
    let opts = options(DataModel::Multi, false);
    let full = run(&gz, &opts);
    assert_eq!(full.requests.len(), 1);
    // Cut where the decoder has handed over the first three lines.
    let cut = (1..gz.len())
        .find(|&c| {
            let mut d = flate2::read::MultiGzDecoder::new(&gz[..c]);
            let mut out = Vec::new();
            let _ = d.read_to_end(&mut out);
            out.iter().filter(|&&b| b == b'\n').count() >= 3
        })
        .expect("a cut after three lines");
    let r = run_with(Broken { data: &gz, cut }, &opts, None);
    assert!(r.retryable, "{:?}", r.error);
    assert!(
        r.requests.is_empty(),
        "a partial group went out: {:?}",
        r.requests
    );
    assert!(!r.report.complete);
    check_rerun(&r, &full).unwrap();
}

/// A truncated gzip upload, replaced later by the whole file: the group in
/// progress at the cut is withheld (counted) and the re-upload's records do
/// not conflict with what was written.
#[test]
fn a_truncated_object_withholds_its_last_group() {
    let plain = lines_input(&one_request_lines());
    let gz = gzip(&plain);
    let cut = (1..gz.len())
        .find(|&c| {
            let mut d = flate2::read::MultiGzDecoder::new(&gz[..c]);
            let mut out = Vec::new();
            let _ = d.read_to_end(&mut out);
            out.iter().filter(|&&b| b == b'\n').count() >= 2
        })
        .expect("a cut after two lines");
    for model in models() {
        let opts = options(model, false);
        let full = run(&gz, &opts);
        let r = run(&gz[..cut], &opts);
        assert!(r.error.is_some() && !r.retryable);
        let rep = &r.report;
        assert!(rep.conversion_balanced());
        match model {
            DataModel::Multi => {
                assert!(r.requests.is_empty());
                assert!(
                    rep.dropped["input_truncated_tail"] >= 2,
                    "{:?}",
                    rep.dropped
                );
            }
            DataModel::Single => {
                assert!(!rep.dropped.contains_key("input_truncated_tail"));
                assert!(merged(&r).len() >= 2, "single records are complete");
            }
        }
        check_rerun(&r, &full).unwrap();
    }
    // A plain file cut inside a line: the same rule.
    let cut = plain.len() - 10;
    let r = run(&plain[..cut], &options(DataModel::Multi, false));
    assert!(r.error.is_none());
    assert_eq!(r.report.dropped["input_truncated_tail"], 4);
    check_rerun(&r, &run(&plain, &options(DataModel::Multi, false))).unwrap();
}

/// A UTF-8 byte-order mark before the first line (plain and inside gzip)
/// made it malformed_json.
#[test]
fn a_leading_byte_order_mark_is_not_part_of_the_first_line() {
    let line = point("http_reqs", "2026-11-25T10:00:00Z", "1", r#"{"k":"a"}"#);
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend(lines_input(std::slice::from_ref(&line)));
    for input in [bom.clone(), gzip(&bom)] {
        let r = run(&input, &options(DataModel::Single, false));
        assert!(r.report.skipped.is_empty(), "{:?}", r.report.skipped);
        assert!(r.report.bom);
        assert_eq!(r.report.points, 1);
        assert_eq!(
            merged(&r),
            merged(&run(
                &lines_input(std::slice::from_ref(&line)),
                &options(DataModel::Single, false)
            ))
        );
    }
}

// ---------------------------------------------------------------------------
// Checkpoints (the Lambda's continuations)
// ---------------------------------------------------------------------------

fn links_strategy() -> impl Strategy<Value = Vec<support::resume::Link>> {
    prop::collection::vec(
        (0usize..4, prop_oneof![3 => Just(0usize), 1 => 1usize..4])
            .prop_map(|(send, queue)| support::resume::Link { send, queue }),
        0..12,
    )
}

proptest! {
    #![proptest_config(cfg(48))]

    /// 8. Stopped after any number of requests (some of them taken but
    /// never sent, as a stopped driver leaves them queued) and resumed from
    /// its checkpoints (stored, read back, the input handed over from their
    /// source offset on), a run hands out exactly the requests of one
    /// uninterrupted run, each once, and ends with its report: plain, gzip
    /// and two-member gzip. (The generated input is repeated up to six
    /// times, so that there are requests to cut between; collisions and
    /// groups across cuts are `resume.rs`'s property.)
    #[test]
    fn prop_checkpoints_resume_exactly(case in case_strategy(), plan in links_strategy()) {
        let g = generate(&case);
        let mut bytes = Vec::new();
        for _ in 0..1 + case.k % 6 {
            bytes.extend_from_slice(&g.bytes);
            if !g.bytes.ends_with(b"\n") {
                bytes.push(b'\n');
            }
        }
        let split = bytes.len() * usize::from(case.split_permille) / 1000;
        let mut two = gzip(&bytes[..split]);
        two.extend(gzip(&bytes[split..]));
        for model in models() {
            let opts = options(model, case.extra_dimension);
            let full = run(&bytes, &opts);
            for (what, input) in [("plain", bytes.clone()), ("gzip", gzip(&bytes)), ("two gzip members", two.clone())] {
                let chain = support::resume::run_chain(&input, "generated.json", &opts, DEFAULT_COLLISION_WINDOW_SECS, &plan)
                    .map_err(TestCaseError::fail)?;
                prop_assert!(chain.sent == full.requests, "{} {:?}: {} requests vs {}", what, model, chain.sent.len(), full.requests.len());
                let last = chain.reports.last().unwrap();
                let strip = |r: &RunReport| RunReport { gzip: false, bytes_read: 0, bytes_decompressed: 0, ..r.clone() };
                prop_assert_eq!(strip(last), strip(&full.report), "{} {:?}: final report", what, model);
            }
        }
    }
}
