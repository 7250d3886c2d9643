//! Code shared by the integration tests (each test file that says
//! `mod support;` compiles all of it, hence the `dead_code` allowance).
//!
//! * this file: fixture paths and gzip, then the oracle of
//!   `convert_fixtures.rs` and `properties.rs`;
//! * [`measures`]: `convert` output and stored records as comparable measures;
//! * [`procs`]: child processes, ports, the fake AWS environment;
//! * [`http`]: hyper servers and clients for the local endpoints;
//! * [`moto`], [`strict`]: the local S3 and Timestream endpoints;
//! * [`influxdb`]: a real InfluxDB 1.x and a checking v2/v3 endpoint;
//! * [`s3_faults`]: a fault-injecting proxy in front of S3;
//! * [`runtime_api`]: a minimal Lambda Runtime API;
//! * [`resume`]: an input run as a chain of stopped and resumed runs;
//! * [`lambda`]: the Lambda's world (endpoints, `cargo lambda watch`,
//!   events, report checks).
//!
//! Nothing in the oracle calls `k6_timestream`: the RFC 3339 parser, the
//! line classifier, the raw-number scanner and the Timestream limit checks
//! are written from the documentation (k6's output format in
//! `tests/fixtures/README.md`, the rules table of `src/core/convert/`, the
//! AWS WriteRecords reference), so that they can disagree with the crate.
#![allow(dead_code)]

pub mod http;
pub mod influxdb;
pub mod lambda;
pub mod measures;
pub mod moto;
pub mod procs;
pub mod resume;
pub mod runtime_api;
pub mod s3_faults;
pub mod strict;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures_dir() -> PathBuf {
    root().join("tests/fixtures")
}

/// `tests/fixtures/NAME`, which must exist.
pub fn fixture(name: &str) -> PathBuf {
    let p = fixtures_dir().join(name);
    assert!(p.is_file(), "fixture {name} is missing");
    p
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Decompresses gzip (all members) or copies other bytes; on a read error
/// returns what was decoded before it and the error.
pub fn decompress(bytes: &[u8]) -> (Vec<u8>, Option<String>) {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return (bytes.to_vec(), None);
    }
    let mut d = flate2::read::MultiGzDecoder::new(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match d.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}

/// Whole gzip data (or other bytes), decompressed.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    match decompress(bytes) {
        (out, None) => out,
        (_, Some(e)) => panic!("not valid gzip: {e}"),
    }
}

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

pub const NS_PER_SEC: i128 = 1_000_000_000;

// ---------------------------------------------------------------------------
// RFC 3339 (independent of src/time.rs: split-based parsing, a different
// day-count formula, a loop-based inverse)
// ---------------------------------------------------------------------------

fn fixed_digits(s: &str, n: usize) -> Option<i128> {
    if s.len() != n || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub fn is_leap(y: i128) -> bool {
    y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0)
}

pub fn month_len(y: i128, m: i128) -> i128 {
    const LEN: [i128; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if m == 2 && is_leap(y) {
        29
    } else {
        LEN[(m - 1) as usize]
    }
}

/// Days from 0000-01-01 to y-01-01, up to a constant (proleptic Gregorian).
fn days_before_year(y: i128) -> i128 {
    let p = y - 1;
    365 * y + p.div_euclid(4) - p.div_euclid(100) + p.div_euclid(400)
}

pub fn days_since_epoch(y: i128, m: i128, d: i128) -> i128 {
    let mut days = days_before_year(y) - days_before_year(1970);
    for mm in 1..m {
        days += month_len(y, mm);
    }
    days + d - 1
}

/// The accepted syntax, as documented in `src/time.rs` and
/// `tests/fixtures/README.md`: `YYYY-MM-DD`, `T`/`t`/space,
/// `HH:MM:SS`, optional `.` + 1–9 digits, `Z`/`z` or `±HH:MM` (HH ≤ 23,
/// MM ≤ 59); month/day/hour/minute/second in range, no leap second.
/// Returns ns since the epoch without any range limit (`None` = not a
/// valid timestamp).
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    if !s.is_ascii() || s.len() < 20 {
        return None;
    }
    let sep = s.find(['T', 't', ' '])?;
    if sep != 10 {
        return None;
    }
    let date = &s[..10];
    let rest = &s[11..];
    let mut parts = date.split('-');
    let y = fixed_digits(parts.next()?, 4)?;
    let mo = fixed_digits(parts.next()?, 2)?;
    let d = fixed_digits(parts.next()?, 2)?;
    if parts.next().is_some() {
        return None;
    }
    let (clock, offset_secs) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        if rest.len() < 6 {
            return None;
        }
        let (c, zone) = rest.split_at(rest.len() - 6);
        let z = zone.as_bytes();
        let sign = match z[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        if z[3] != b':' {
            return None;
        }
        let oh = fixed_digits(&zone[1..3], 2)?;
        let om = fixed_digits(&zone[4..6], 2)?;
        if oh > 23 || om > 59 {
            return None;
        }
        (c, sign * (oh * 3600 + om * 60))
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let hb = hms.as_bytes();
    if hb.len() != 8 || hb[2] != b':' || hb[5] != b':' {
        return None;
    }
    let h = fixed_digits(&hms[0..2], 2)?;
    let mi = fixed_digits(&hms[3..5], 2)?;
    let se = fixed_digits(&hms[6..8], 2)?;
    let frac_ns = match frac {
        None => 0,
        Some(f) => {
            if f.is_empty() || f.len() > 9 {
                return None;
            }
            fixed_digits(f, f.len())? * 10i128.pow(9 - f.len() as u32)
        }
    };
    if !(1..=12).contains(&mo) || d < 1 || d > month_len(y, mo) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let secs = days_since_epoch(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
    Some(secs * NS_PER_SEC + frac_ns)
}

/// (year, month, day) of a day number, by walking years (400-year steps
/// first): a different method than the crate's.
pub fn civil_from_days(mut days: i128) -> (i128, i128, i128) {
    let mut y = 1970;
    while days >= 146_097 {
        days -= 146_097;
        y += 400;
    }
    while days < 0 {
        y -= 1;
        days += if is_leap(y) { 366 } else { 365 };
    }
    loop {
        let len = if is_leap(y) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        y += 1;
    }
    let mut m = 1;
    while days >= month_len(y, m) {
        days -= month_len(y, m);
        m += 1;
    }
    (y, m, days + 1)
}

/// Formats `ns` as local time at `offset_min` with exactly `digits`
/// fractional digits (the caller makes sure the dropped digits are zero).
/// `zone`: 0 → `Z` (only for offset 0), 1 → `±HH:MM`, 2 → `z`.
pub fn format_rfc3339(ns: i128, offset_min: i32, digits: usize, zone: u8) -> String {
    let local = ns + i128::from(offset_min) * 60 * NS_PER_SEC;
    let secs = local.div_euclid(NS_PER_SEC);
    let frac = local.rem_euclid(NS_PER_SEC);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if digits > 0 {
        let f = format!("{frac:09}");
        assert!(
            f[digits..].bytes().all(|c| c == b'0'),
            "{ns} cannot be written with {digits} digits"
        );
        s.push('.');
        s.push_str(&f[..digits]);
    }
    match zone {
        0 if offset_min == 0 => s.push('Z'),
        2 if offset_min == 0 => s.push('z'),
        _ => {
            let a = offset_min.abs();
            s.push_str(&format!(
                "{}{:02}:{:02}",
                if offset_min < 0 { '-' } else { '+' },
                a / 60,
                a % 60
            ));
        }
    }
    s
}

// ---------------------------------------------------------------------------
// Raw JSON number text (serde_json::Value loses it; the crate must keep the
// value exact, so the oracle parses the text itself with `str::parse`)
// ---------------------------------------------------------------------------

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }
    /// A string; returns its raw content (escapes left as they are).
    fn string(&mut self) -> Option<(usize, usize)> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return Some((start, self.i - 1));
                }
                _ => self.i += 1,
            }
        }
    }
    fn value(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let close = if self.peek()? == b'{' { b'}' } else { b']' };
                let obj = close == b'}';
                self.i += 1;
                self.ws();
                if self.eat(close).is_some() {
                    return Some(());
                }
                loop {
                    if obj {
                        self.ws();
                        self.string()?;
                        self.ws();
                        self.eat(b':')?;
                    }
                    self.value()?;
                    self.ws();
                    if self.eat(b',').is_some() {
                        continue;
                    }
                    return self.eat(close);
                }
            }
            _ => {
                let start = self.i;
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'
                    )
                {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

/// The raw text of `data.value` of a JSON object line (first occurrence).
pub fn raw_data_value(line: &str) -> Option<&str> {
    raw_data_value_range(line).map(|(a, b)| &line[a..b])
}

/// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(c) if c.is_ascii_digit() => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Byte range of the raw text of `data.value`.
pub fn raw_data_value_range(line: &str) -> Option<(usize, usize)> {
    let mut s = Scan {
        b: line.as_bytes(),
        i: 0,
    };
    s.ws();
    s.eat(b'{')?;
    loop {
        s.ws();
        if s.eat(b'}').is_some() {
            return None;
        }
        let (a, b) = s.string()?;
        s.ws();
        s.eat(b':')?;
        s.ws();
        if &line[a..b] == "data" && s.peek()? == b'{' {
            s.i += 1;
            loop {
                s.ws();
                if s.eat(b'}').is_some() {
                    break;
                }
                let (ka, kb) = s.string()?;
                s.ws();
                s.eat(b':')?;
                s.ws();
                let start = s.i;
                s.value()?;
                if &line[ka..kb] == "value" {
                    return Some((start, s.i));
                }
                s.ws();
                s.eat(b',');
            }
        } else {
            s.value()?;
        }
        s.ws();
        s.eat(b',');
    }
}

// ---------------------------------------------------------------------------
// Line classification (what the crate's report must say about each line)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct OraclePoint {
    /// 1-based line number.
    pub line: u64,
    pub metric: String,
    pub value: f64,
    pub time_ns: i128,
    /// (key, value) with `null` values left out; empty keys/values kept.
    pub tags: Vec<(String, String)>,
    pub metadata: Vec<(String, String)>,
    /// Why the point cannot be written (report `dropped` key), if so.
    pub drop: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub enum LineClass {
    Blank,
    Metric(String),
    Point(Box<OraclePoint>),
    Ignored(String),
    Skipped(&'static str),
}

/// Go's spellings of non-finite values that k6's JSON can carry (quoted,
/// or bare, which is not JSON): the point is valid and dropped.
const NON_FINITE: [&str; 7] = [
    "+Inf",
    "Inf",
    "Infinity",
    "+Infinity",
    "-Inf",
    "-Infinity",
    "NaN",
];

fn scalar_pairs(v: Option<&Value>) -> Result<Vec<(String, String)>, ()> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => {
            let mut out = Vec::new();
            for (k, v) in m {
                let text = match v {
                    Value::Null => continue,
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(()),
                };
                out.push((k.clone(), text));
            }
            Ok(out)
        }
        Some(_) => Err(()),
    }
}

fn opt_str(v: Option<&Value>) -> Result<Option<&str>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

/// Classifies one input line (without its `\n`).
pub fn classify_line(line_no: u64, raw: &[u8], max_line_bytes: usize) -> LineClass {
    if raw.len() > max_line_bytes {
        return LineClass::Skipped("line_too_long");
    }
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if raw.iter().all(u8::is_ascii_whitespace) {
        return LineClass::Blank;
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return LineClass::Skipped("invalid_utf8");
    };
    // serde_json's default float parsing is not exact (and refuses some
    // in-range numbers), so the oracle hides `data.value` from it and parses
    // the raw text itself with `str::parse::<f64>` (correctly rounded).
    let mut number = None;
    let masked: String;
    let mut text = text;
    if let Some((a, b)) = raw_data_value_range(text) {
        if is_json_number(&text[a..b]) {
            match text[a..b].parse::<f64>() {
                Ok(x) if x.is_finite() => number = Some(x),
                _ => return LineClass::Skipped("malformed_json"), // out of f64's range
            }
            masked = format!("{}0{}", &text[..a], &text[b..]);
            text = &masked;
        }
    }
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            let mut fixed = None;
            for tok in ["+Inf", "-Inf", "NaN"] {
                let bare = format!("\"value\":{tok}");
                if text.contains(&bare) {
                    fixed = Some(text.replacen(&bare, &format!("\"value\":\"{tok}\""), 1));
                    break;
                }
            }
            match fixed.and_then(|f| serde_json::from_str::<Value>(&f).ok()) {
                Some(v) => v,
                None => return LineClass::Skipped("malformed_json"),
            }
        }
    };
    classify_value(line_no, &v, number)
}

fn classify_value(line_no: u64, v: &Value, number: Option<f64>) -> LineClass {
    const MALFORMED: LineClass = LineClass::Skipped("malformed_json");
    const MISSING: LineClass = LineClass::Skipped("missing_field");
    let Value::Object(top) = v else {
        return MALFORMED;
    };
    let (Ok(kind), Ok(metric)) = (opt_str(top.get("type")), opt_str(top.get("metric"))) else {
        return MALFORMED;
    };
    // `data`: null/absent or an object whose known fields have the right types.
    let data = match top.get("data") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => Some(d),
        Some(_) => return MALFORMED,
    };
    let mut time = None;
    let mut value: Option<f64> = None;
    let mut tags = Vec::new();
    let mut metadata = Vec::new();
    let mut name = None;
    if let Some(d) = data {
        let (Ok(t), Ok(n), Ok(_)) = (
            opt_str(d.get("time")),
            opt_str(d.get("name")),
            opt_str(d.get("type")),
        ) else {
            return MALFORMED;
        };
        time = t;
        name = n;
        value = match d.get("value") {
            None | Some(Value::Null) => None,
            Some(Value::Number(_)) => {
                Some(number.expect("data.value was found by the raw scanner"))
            }
            Some(Value::String(s)) if NON_FINITE.contains(&s.as_str()) => Some(if s == "NaN" {
                f64::NAN
            } else if s.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }),
            Some(_) => return MALFORMED,
        };
        match (scalar_pairs(d.get("tags")), scalar_pairs(d.get("metadata"))) {
            (Ok(t), Ok(m)) => {
                tags = t;
                metadata = m;
            }
            _ => return MALFORMED,
        }
    }
    let Some(kind) = kind else { return MISSING };
    match kind {
        "Point" => {
            let Some(_) = data else { return MISSING };
            let Some(metric) = metric.filter(|m| !m.is_empty()) else {
                return MISSING;
            };
            let (Some(time), Some(value)) = (time, value) else {
                return MISSING;
            };
            let Some(time_ns) = parse_rfc3339(time) else {
                return LineClass::Skipped("invalid_time");
            };
            let drop = if time_ns < 0 || time_ns > i128::from(i64::MAX) {
                Some("time_out_of_range")
            } else if !value.is_finite() {
                Some("non_finite_value")
            } else {
                None
            };
            LineClass::Point(Box::new(OraclePoint {
                line: line_no,
                metric: metric.to_owned(),
                value,
                time_ns,
                tags,
                metadata,
                drop,
            }))
        }
        "Metric" => match name.or(metric) {
            Some(n) => LineClass::Metric(n.to_owned()),
            None => MISSING,
        },
        other => LineClass::Ignored(other.to_owned()),
    }
}

/// Splits decompressed input into lines like a line reader: `\n` ends a
/// line, a last line without `\n` still counts.
pub fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    if data.is_empty() {
        return Vec::new();
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    body.split(|&c| c == b'\n').collect()
}

/// What the run report should say about an input, line by line.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    pub lines: u64,
    pub blank_lines: u64,
    pub metric_definitions: u64,
    pub points: Vec<OraclePoint>,
    pub skipped: BTreeMap<String, u64>,
    pub ignored: BTreeMap<String, u64>,
    pub dropped: BTreeMap<String, u64>,
    /// Every metric name that appears (Metric lines and Points).
    pub metric_names: std::collections::BTreeSet<String>,
}

impl Expected {
    /// Timestream needs ≥ 1 dimension: with no testid and no extra
    /// dimensions, a point without any storable tag or metadata entry is
    /// dropped as `no_dimensions` (after the time and value rules).
    pub fn apply_dimension_rule(&mut self, testid: Option<&str>, extra: &[(String, String)]) {
        if testid.is_some_and(storable) || extra.iter().any(|(k, v)| !k.is_empty() && storable(v)) {
            return;
        }
        let some =
            |pairs: &[(String, String)]| pairs.iter().any(|(k, v)| !k.is_empty() && storable(v));
        for p in &mut self.points {
            if p.drop.is_none() && !some(&p.tags) && !some(&p.metadata) {
                p.drop = Some("no_dimensions");
                *self.dropped.entry("no_dimensions".to_owned()).or_default() += 1;
            }
        }
    }

    pub fn from_lines(lines: &[&[u8]], max_line_bytes: usize) -> Expected {
        let mut e = Expected {
            lines: lines.len() as u64,
            ..Default::default()
        };
        for (i, l) in lines.iter().enumerate() {
            match classify_line(i as u64 + 1, l, max_line_bytes) {
                LineClass::Blank => e.blank_lines += 1,
                LineClass::Metric(n) => {
                    e.metric_definitions += 1;
                    e.metric_names.insert(n);
                }
                LineClass::Point(p) => {
                    if let Some(r) = p.drop {
                        *e.dropped.entry(r.to_owned()).or_default() += 1;
                    }
                    e.metric_names.insert(p.metric.clone());
                    e.points.push(*p);
                }
                LineClass::Ignored(k) => *e.ignored.entry(k).or_default() += 1,
                LineClass::Skipped(r) => *e.skipped.entry(r.to_owned()).or_default() += 1,
            }
        }
        e
    }

    /// The tail rule of `pipeline::run` for an input cut off mid-write (in
    /// MULTI): the group in progress, i.e. the last `n` writable points,
    /// is withheld and dropped as `input_truncated_tail`. The oracle does
    /// not model groups, so `n` comes from the run's report and is checked
    /// for what a group can be: ≥ 1 when anything is writable, ≤ 256
    /// points, one time.
    pub fn withhold_tail(&mut self, n: u64) -> Result<(), String> {
        let written: Vec<usize> = (0..self.points.len())
            .filter(|&i| self.points[i].drop.is_none())
            .collect();
        let n = usize::try_from(n).map_err(|e| e.to_string())?;
        if n > 256 || n > written.len() || (n == 0 && !written.is_empty()) {
            return Err(format!(
                "a withheld tail of {n} points ({} writable)",
                written.len()
            ));
        }
        let tail = &written[written.len() - n..];
        if let Some(&first) = tail.first() {
            let t = self.points[first].time_ns;
            if tail.iter().any(|&i| self.points[i].time_ns != t) {
                return Err(format!("the withheld {n} points are not of one time"));
            }
        }
        for &i in tail {
            self.points[i].drop = Some("input_truncated_tail");
        }
        if n > 0 {
            *self
                .dropped
                .entry("input_truncated_tail".to_owned())
                .or_default() += n as u64;
        }
        Ok(())
    }

    pub fn written_points(&self) -> impl Iterator<Item = &OraclePoint> {
        self.points.iter().filter(|p| p.drop.is_none())
    }
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

/// Reserved per the rules table of src/convert.rs (`time`, `measure_value`,
/// `measure_name*`, `ts_*`); any ASCII case (the crate is free to be stricter).
pub fn doc_reserved(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l == "time"
        || l.starts_with("measure_value")
        || l.starts_with("measure_name")
        || l.starts_with("ts_")
}

/// A dimension / multi-measure value name Timestream refuses (AWS reference:
/// "Dimensions cannot be named: measure_name, measure_value, or time. [...]
/// Dimension names cannot start with ts_ or measure_value and they cannot
/// contain the colon (:) character"; `measure_name*` is refused too).
pub fn timestream_reserved_column(name: &str) -> bool {
    name == "time"
        || name.starts_with("measure_name")
        || name.starts_with("measure_value")
        || name.starts_with("ts_")
        || name.contains(':')
}

/// A MeasureName Timestream refuses.
pub fn timestream_reserved_measure(name: &str) -> bool {
    matches!(name, "time" | "measure_name" | "measure_value") || name.starts_with("ts_")
}

/// `out` is `full` shortened to ≤ `max` bytes as documented: a prefix of
/// `full`, `_`, 8 hex digits.
pub fn is_shortened(out: &str, full: &str, max: usize) -> bool {
    if full.len() <= max || out.len() > max || out.len() < 9 {
        return false;
    }
    let (head, tail) = out.split_at(out.len() - 9);
    tail.starts_with('_')
        && tail[1..].bytes().all(|c| c.is_ascii_hexdigit())
        && full.starts_with(head)
        && head.len() + 9 + 4 > max
    // "cut to 51 bytes" (less when a char boundary forces it)
}

/// Is `out` an acceptable name for the full (unshortened) name `full`?
pub fn name_or_shortened(out: &str, full: &str, max: usize) -> bool {
    if full.len() <= max {
        out == full
    } else {
        is_shortened(out, full, max)
    }
}

/// Output measure names the documented rules allow for metric `m`.
pub fn measure_name_ok(out: &str, m: &str) -> bool {
    // `:` is not allowed in names: it becomes `_`; then reserved → `k6_`.
    let m = m.replace(':', "_");
    let full = if doc_reserved(&m) {
        format!("k6_{m}")
    } else {
        m
    };
    name_or_shortened(out, &full, 256)
}

/// Input → output name rule for a tag (or renamed metadata) key `k` of a
/// point of metric `metric`: the allowed unshortened output names.
pub fn allowed_dim_names(
    k: &str,
    metric: &str,
    metric_names: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    // `:` → `_`; reserved → `tag_`; then `tag_` again while the name is a
    // measure name (metric names, renamed measure names, the MULTI
    // MeasureName): the exact set depends on what was seen before, so
    // every depth is allowed, never the name of the point's own metric.
    let k = k.replace(':', "_");
    let base = if doc_reserved(&k) {
        format!("tag_{k}")
    } else {
        k
    };
    let mut v = Vec::new();
    let mut n = base;
    for _ in 0..4 {
        if n != metric {
            v.push(n.clone());
        }
        n = format!("tag_{n}");
    }
    let _ = metric_names;
    v
}

// ---------------------------------------------------------------------------
// Records and requests
// ---------------------------------------------------------------------------

/// A dimension value Timestream stores: not empty and not only whitespace
/// (Unicode White_Space, what `str::trim` removes). The crate leaves other
/// values out (rules table of `src/core/convert/`).
pub fn storable(v: &str) -> bool {
    !v.trim().is_empty()
}

/// One record after merging CommonAttributes.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    /// Sorted by name.
    pub dims: Vec<(String, String)>,
    pub measure_name: String,
    /// MULTI: the MeasureValues in order; DOUBLE: one (MeasureName, MeasureValue).
    pub values: Vec<(String, String)>,
    pub time: i128,
}

/// Timestream's record-level rules, checked on a merged record.
pub fn check_record(r: &OutRecord, multi: bool, require_dims: bool) -> Result<(), String> {
    let err = |m: String| Err(format!("{m} in record {r:?}"));
    if require_dims && r.dims.is_empty() {
        return err("no dimension".into());
    }
    if r.dims.len() > 128 {
        return err(format!("{} dimensions", r.dims.len()));
    }
    for w in r.dims.windows(2) {
        if w[0].0 == w[1].0 {
            return err(format!("duplicate dimension name {:?}", w[0].0));
        }
    }
    let mut size = 8usize;
    for (n, v) in &r.dims {
        if n.is_empty() || n.len() > 60 {
            return err(format!("dimension name {n:?} is {} bytes", n.len()));
        }
        if timestream_reserved_column(n) {
            return err(format!("reserved dimension name {n:?}"));
        }
        if !storable(v) || v.chars().count() > 2048 {
            return err(format!(
                "dimension {n:?} value has {} chars",
                v.chars().count()
            ));
        }
        size += n.len() + v.len();
    }
    let m = &r.measure_name;
    if m.is_empty() || m.len() > 256 {
        return err(format!("measure name {m:?} is {} bytes", m.len()));
    }
    if timestream_reserved_measure(m) {
        return err(format!("reserved measure name {m:?}"));
    }
    size += m.len();
    let dim_named = |n: &str| r.dims.binary_search_by(|d| d.0.as_str().cmp(n)).is_ok();
    if multi {
        if r.values.is_empty() || r.values.len() > 256 {
            return err(format!("{} measure values", r.values.len()));
        }
        let mut names: Vec<&str> = r.values.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return err(format!("measure value name {:?} twice", w[0]));
        }
        for (n, _) in &r.values {
            if n.is_empty() || n.len() > 256 {
                return err(format!("measure value name {n:?} is {} bytes", n.len()));
            }
            if timestream_reserved_column(n) {
                return err(format!("reserved measure value name {n:?}"));
            }
            if dim_named(n) {
                return err(format!("measure value name {n:?} is also a dimension name"));
            }
            size += n.len() + 8;
        }
    } else {
        if r.values.len() != 1 {
            return err("DOUBLE record without exactly one value".into());
        }
        if dim_named(m) {
            return err(format!("measure name {m:?} is also a dimension name"));
        }
        size += 8;
    }
    for (n, v) in &r.values {
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() && !v.is_empty() && v.len() <= 2048 => {}
            _ => return err(format!("measure {n:?} value {v:?} is not a finite DOUBLE")),
        }
    }
    if size > 2048 {
        return err(format!("metered record size {size} > 2048"));
    }
    if r.time < 0 || r.time > i128::from(i64::MAX) {
        return err(format!("time {}", r.time));
    }
    Ok(())
}

fn get_str<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match v.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(o) => Err(format!("{key} is not a string: {o}")),
    }
}

fn dims_of(v: &Value) -> Result<Vec<(String, String)>, String> {
    let Some(d) = v.get("Dimensions") else {
        return Ok(Vec::new());
    };
    let arr = d.as_array().ok_or("Dimensions is not an array")?;
    let mut out = Vec::new();
    for x in arr {
        let (Some(n), Some(val)) = (get_str(x, "Name")?, get_str(x, "Value")?) else {
            return Err(format!("dimension without Name/Value: {x}"));
        };
        if get_str(x, "DimensionValueType")? != Some("VARCHAR") {
            return Err(format!("dimension type is not VARCHAR: {x}"));
        }
        out.push((n.to_owned(), val.to_owned()));
    }
    Ok(out)
}

/// A parsed WriteRecords request (one `convert` stdout line).
#[derive(Debug, Clone)]
pub struct OutRequest {
    pub records: Vec<OutRecord>,
    /// Metered bytes as documented in src/batch.rs: CommonAttributes once,
    /// then per record its time, own dimensions, own measure name, values.
    pub event_bytes: u64,
}

/// Parses and checks one request line against the WriteRecords shape and
/// Timestream's limits; returns the merged records.
pub fn parse_request(
    line: &str,
    db: &str,
    table: &str,
    multi: bool,
    require_dims: bool,
) -> Result<OutRequest, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    if get_str(&v, "DatabaseName")? != Some(db) || get_str(&v, "TableName")? != Some(table) {
        return Err("wrong DatabaseName/TableName".into());
    }
    let empty = Value::Object(Default::default());
    let common = v.get("CommonAttributes").unwrap_or(&empty);
    let ty = get_str(common, "MeasureValueType")?;
    let want_ty = if multi { "MULTI" } else { "DOUBLE" };
    if ty != Some(want_ty) {
        return Err(format!(
            "CommonAttributes.MeasureValueType {ty:?}, want {want_ty}"
        ));
    }
    if get_str(common, "TimeUnit")? != Some("NANOSECONDS") {
        return Err("CommonAttributes.TimeUnit is not NANOSECONDS".into());
    }
    for k in ["MeasureValue", "MeasureValues", "Time", "Version"] {
        if common.get(k).is_some() {
            return Err(format!("CommonAttributes.{k} is set"));
        }
    }
    let common_dims = dims_of(common)?;
    let common_measure = get_str(common, "MeasureName")?;
    let mut event_bytes: u64 = common_dims
        .iter()
        .map(|(n, v)| (n.len() + v.len()) as u64)
        .sum();
    event_bytes += common_measure.map_or(0, |m| m.len() as u64);
    let recs = v
        .get("Records")
        .and_then(Value::as_array)
        .ok_or("no Records array")?;
    if recs.is_empty() || recs.len() > 100 {
        return Err(format!("{} records in one request", recs.len()));
    }
    let mut out = Vec::with_capacity(recs.len());
    for (i, r) in recs.iter().enumerate() {
        let own = dims_of(r)?;
        if let Some((n, _)) = own
            .iter()
            .find(|(n, _)| common_dims.iter().any(|(c, _)| c == n))
        {
            return Err(format!(
                "record {i}: dimension {n:?} is also in CommonAttributes"
            ));
        }
        for k in ["MeasureValueType", "TimeUnit", "Version"] {
            if r.get(k).is_some() {
                return Err(format!("record {i}: {k} set on the record"));
            }
        }
        let own_measure = get_str(r, "MeasureName")?;
        let measure_name = match (own_measure, common_measure) {
            (Some(m), None) | (None, Some(m)) => m.to_owned(),
            _ => return Err(format!("record {i}: MeasureName must be set exactly once")),
        };
        let time_s = get_str(r, "Time")?.ok_or(format!("record {i}: no Time"))?;
        if time_s.is_empty()
            || !time_s.bytes().all(|c| c.is_ascii_digit())
            || (time_s.len() > 1 && time_s.starts_with('0'))
        {
            return Err(format!(
                "record {i}: Time {time_s:?} is not a non-negative integer"
            ));
        }
        let time: i128 = time_s
            .parse()
            .map_err(|e| format!("record {i}: Time: {e}"))?;
        event_bytes += 8;
        event_bytes += own
            .iter()
            .map(|(n, v)| (n.len() + v.len()) as u64)
            .sum::<u64>();
        event_bytes += own_measure.map_or(0, |m| m.len() as u64);
        let values = if multi {
            if r.get("MeasureValue").is_some() {
                return Err(format!("record {i}: MeasureValue in a MULTI record"));
            }
            let mv = r
                .get("MeasureValues")
                .and_then(Value::as_array)
                .ok_or(format!("record {i}: no MeasureValues"))?;
            let mut vals = Vec::new();
            for x in mv {
                let (Some(n), Some(val)) = (get_str(x, "Name")?, get_str(x, "Value")?) else {
                    return Err(format!("record {i}: measure value without Name/Value"));
                };
                if get_str(x, "Type")? != Some("DOUBLE") {
                    return Err(format!("record {i}: measure value type is not DOUBLE"));
                }
                event_bytes += n.len() as u64 + 8;
                vals.push((n.to_owned(), val.to_owned()));
            }
            vals
        } else {
            if r.get("MeasureValues").is_some() {
                return Err(format!("record {i}: MeasureValues in a DOUBLE record"));
            }
            let val = get_str(r, "MeasureValue")?.ok_or(format!("record {i}: no MeasureValue"))?;
            event_bytes += 8;
            vec![(measure_name.clone(), val.to_owned())]
        };
        let mut dims: Vec<(String, String)> = common_dims.iter().cloned().chain(own).collect();
        dims.sort();
        let rec = OutRecord {
            dims,
            measure_name,
            values,
            time,
        };
        check_record(&rec, multi, require_dims).map_err(|e| format!("record {i}: {e}"))?;
        out.push(rec);
    }
    Ok(OutRequest {
        records: out,
        event_bytes,
    })
}

/// Remembers every (dimensions, measure name, time) and its values; a
/// second record for the same key with other values is what Timestream
/// rejects. MULTI values are compared as sets.
type SeriesAt = (Vec<(String, String)>, String, i128);

#[derive(Default)]
pub struct CollisionCheck {
    seen: HashMap<SeriesAt, Vec<(String, String)>>,
}

impl CollisionCheck {
    pub fn add(&mut self, r: &OutRecord) -> Result<(), String> {
        let mut vals = r.values.clone();
        vals.sort();
        let key = (r.dims.clone(), r.measure_name.clone(), r.time);
        match self.seen.get(&key) {
            Some(prev) if *prev != vals => Err(format!(
                "conflicting records at the same dims/measure/time: {prev:?} vs {vals:?} ({key:?})"
            )),
            Some(_) => Ok(()),
            None => {
                self.seen.insert(key, vals);
                Ok(())
            }
        }
    }
}

/// Parses an output value; `-0` in the input may come out as `0` (both are
/// the number zero), anything else must be bit-exact.
pub fn same_value(out: &str, input: f64) -> bool {
    match out.parse::<f64>() {
        Ok(x) => x.to_bits() == input.to_bits() || (x == 0.0 && input == 0.0),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------
// Dimensions: output ↔ input matching (bipartite, Kuhn's algorithm)
// ---------------------------------------------------------------------------

/// An input dimension candidate: the unshortened output names it may take.
#[derive(Debug, Clone)]
pub struct InDim {
    pub what: String,
    pub names: Vec<String>,
    pub value: String,
    /// May be left out (e.g. the default testid of a point whose metadata
    /// has a `testid`: only a `testid` *tag* is documented to win).
    pub optional: bool,
}

/// Checks that the output dimensions are exactly the inputs (renamed per
/// the rules; values equal, or a non-empty prefix when `value_cut`).
/// With `omissions`, inputs may be missing from the output.
///
/// Bipartite matching (Kuhn): one matching must cover every output, one
/// must cover every required input; by the Mendelsohn–Dulmage theorem one
/// matching then covers both.
pub fn match_dims(
    out: &[(String, String)],
    inputs: &[InDim],
    value_cut: bool,
    omissions: bool,
) -> Result<(), String> {
    let edge = |o: usize, i: usize| {
        let (on, ov) = &out[o];
        let d = &inputs[i];
        d.names.iter().any(|n| name_or_shortened(on, n, 60))
            && (ov == &d.value || (value_cut && storable(ov) && d.value.starts_with(ov.as_str())))
    };
    // Augmenting paths from the `left` side; `edge(l, r)`.
    fn cover(left: &[usize], n_right: usize, edge: &dyn Fn(usize, usize) -> bool) -> Option<usize> {
        fn augment(
            l: usize,
            seen: &mut [bool],
            owner: &mut [Option<usize>],
            edge: &dyn Fn(usize, usize) -> bool,
        ) -> bool {
            for r in 0..owner.len() {
                if !seen[r] && edge(l, r) {
                    seen[r] = true;
                    if owner[r].is_none() || augment(owner[r].unwrap(), seen, owner, edge) {
                        owner[r] = Some(l);
                        return true;
                    }
                }
            }
            false
        }
        let mut owner = vec![None; n_right];
        for &l in left {
            if !augment(l, &mut vec![false; n_right], &mut owner, edge) {
                return Some(l);
            }
        }
        None
    }
    let outs: Vec<usize> = (0..out.len()).collect();
    if let Some(o) = cover(&outs, inputs.len(), &edge) {
        return Err(format!(
            "output dimension {:?} has no matching input among {inputs:?}",
            out[o]
        ));
    }
    if !omissions {
        let required: Vec<usize> = (0..inputs.len()).filter(|&i| !inputs[i].optional).collect();
        if let Some(i) = cover(&required, out.len(), &|i, o| edge(o, i)) {
            return Err(format!(
                "input {:?} is missing from the output dimensions {out:?}",
                inputs[i]
            ));
        }
    }
    Ok(())
}

/// The input dimensions of a point: storable tags and metadata (metadata
/// whose key is also a tag key becomes `meta_<key>`), then `testid` unless
/// the point has a `testid` tag, then each `--dimension` unless the point
/// has a tag of that name ("a point's own tag of the same name wins"). When
/// only the metadata has that name, either may win: optional.
pub fn input_dims(
    p: &OraclePoint,
    testid: Option<&str>,
    extra: &[(String, String)],
    metric_names: &std::collections::BTreeSet<String>,
) -> Vec<InDim> {
    let mut v = Vec::new();
    let nonempty =
        |pairs: &[(String, String)], k: &str| pairs.iter().any(|(n, val)| n == k && storable(val));
    for (k, val) in &p.tags {
        if k.is_empty() || !storable(val) {
            continue;
        }
        v.push(InDim {
            what: format!("tag {k}"),
            names: allowed_dim_names(k, &p.metric, metric_names),
            value: val.clone(),
            optional: false,
        });
    }
    for (k, val) in &p.metadata {
        // The `meta_` rename comes first (an empty key that is also a tag
        // key becomes `meta_`), then empty names are left out.
        let key = if p.tags.iter().any(|(t, _)| t == k) {
            format!("meta_{k}")
        } else {
            k.clone()
        };
        if key.is_empty() || !storable(val) {
            continue;
        }
        v.push(InDim {
            what: format!("metadata {k}"),
            names: allowed_dim_names(&key, &p.metric, metric_names),
            value: val.clone(),
            optional: false,
        });
    }
    let mut add = |what: String, k: &str, names: Vec<String>, val: &str| {
        if !storable(val) || nonempty(&p.tags, k) {
            return;
        }
        v.push(InDim {
            what,
            names,
            value: val.to_owned(),
            optional: nonempty(&p.metadata, k),
        });
    };
    if let Some(t) = testid {
        add(
            "testid".into(),
            "testid",
            allowed_dim_names("testid", &p.metric, metric_names),
            t,
        );
    }
    for (k, val) in extra {
        add(
            format!("--dimension {k}"),
            k,
            allowed_dim_names(k, &p.metric, metric_names),
            val,
        );
    }
    v
}

/// Sanity checks of the oracle itself (called from a test in each file).
pub fn oracle_self_test() {
    // Instants documented in tests/fixtures/README.md.
    assert_eq!(
        parse_rfc3339("2024-03-10T12:00:00.123456789Z"),
        Some(1_710_072_000_123_456_789)
    );
    assert_eq!(
        parse_rfc3339("2026-11-26T00:49:39.492224175+05:30"),
        parse_rfc3339("2026-11-25T19:19:39.492224175Z")
    );
    assert_eq!(
        parse_rfc3339("2024-03-11T02:00:00.123456789+14:00"),
        Some(1_710_072_000_123_456_789)
    );
    assert_eq!(
        parse_rfc3339("2024-03-10T05:00:00.123456789-07:00"),
        Some(1_710_072_000_123_456_789)
    );
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339("1969-12-31T23:59:59.999999999Z"), Some(-1));
    assert_eq!(
        parse_rfc3339("2000-02-29T00:00:00Z"),
        Some(951_782_400 * NS_PER_SEC)
    );
    assert_eq!(
        parse_rfc3339("2262-04-11T23:47:16.854775807Z"),
        Some(i128::from(i64::MAX))
    );
    for bad in [
        "2024-03-10T12:00:00",
        "2024-03-10T12:00:00.Z",
        "2024-03-10T12:00:00.1234567891Z",
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-03-10T24:00:00Z",
        "2024-03-10T12:00:60Z",
        "2024-03-10T12:00:00+24:00",
        "2024-03-10T12:00:00+0530",
        "2024-03-10X12:00:00Z",
        "24-03-10T12:00:00Z",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
    for (ns, off, digits) in [
        (0i128, 0, 0),
        (1_710_072_000_123_456_789, 330, 9),
        (1_710_072_000_123_456_000, -420, 6),
        (-86_400 * NS_PER_SEC * 365 * 70 + 5 * NS_PER_SEC, 840, 0),
        (i128::from(i64::MAX), -1439, 9),
        (253_402_300_799 * NS_PER_SEC, 0, 0),
    ] {
        let s = format_rfc3339(ns, off, digits, 1);
        assert_eq!(parse_rfc3339(&s), Some(ns), "{s}");
    }
    assert_eq!(
        format_rfc3339(1_710_072_000_500_000_000, 0, 1, 0),
        "2024-03-10T12:00:00.5Z"
    );
    assert_eq!(
        raw_data_value(
            r#"{"metric":"m","type":"Point","data":{"time":"t","tags":{"value":"x"},"value":1.5e-07}}"#
        ),
        Some("1.5e-07")
    );
    assert_eq!(
        raw_data_value(r#"{"data":{"a":[1,{"b":"}"}],"value":-0},"metric":"x"}"#),
        Some("-0")
    );
    for ok in [
        "0",
        "-0",
        "1.5",
        "1e+06",
        "9e-05",
        "1.7976931348623157e+308",
        "12",
        "0.5E3",
    ] {
        assert!(is_json_number(ok), "{ok}");
    }
    for bad in [
        "+Inf", "-Inf", "NaN", "01", "1.", ".5", "1e", "-", "+1", "\"1\"",
    ] {
        assert!(!is_json_number(bad), "{bad}");
    }
    // The oracle reads values exactly (serde_json's default parser does not).
    let l = r#"{"metric":"m","type":"Point","data":{"time":"2024-03-10T12:00:00Z","value":0.9999999999999999}}"#;
    match classify_line(1, l.as_bytes(), 1 << 20) {
        LineClass::Point(p) => assert_eq!(p.value, 0.9999999999999999),
        other => panic!("{other:?}"),
    }
}
