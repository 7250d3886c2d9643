//! The InfluxDB sink end to end.
//!
//! * Real k6 fixtures through `k6-timestream ingest --sink influxdb` and
//!   the v1 API into a real InfluxDB 1.x (`influxd`), read back with
//!   InfluxQL (`epoch=ns`) and compared point by point, both ways, with
//!   an expectation built here from the fixture alone (k6's layout and the
//!   documented rules): measurement, time, value, every tag and field.
//! * Tricky names (spaces, commas, `=`, quotes, backslashes, unicode,
//!   emoji) stored exactly, or refused with the documented reason.
//! * Ingesting a file twice stores the same points.
//! * The v2 and v3 APIs against `FakeInflux`: the request shape, faults
//!   (429 with Retry-After, 503, resets, slow answers) lose nothing,
//!   refused lines end as dead letters with their line protocol, reason
//!   and input lines.
//! * A wrong token or database is one fatal error before any work.
//! * Several files in one call (resumed by `--state`), and a pipe in live
//!   mode written before it closes, into a real InfluxDB.

mod support;

use k6_timestream::core::convert::ConvertOptions;
use k6_timestream::core::input::InputOptions;
use k6_timestream::core::pipeline::PipelineOptions;
use k6_timestream::core::report::RunReport;
use k6_timestream::ingest::{ingest, Live, Sink};
use k6_timestream::sinks::dead_letter::{Kind, MemorySink};
use k6_timestream::sinks::driver::WriterConfig;
use k6_timestream::sinks::influxdb::config::{Api, Auth};
use k6_timestream::sinks::influxdb::encode::{parse_lines_with, Dialect, ParsedValue};
use k6_timestream::sinks::influxdb::{EncoderOptions, InfluxConfig, InfluxEncoder, InfluxWriter};
use k6_timestream::sinks::retry::RetryPolicy;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::influxdb::{
    as_stored, FakeApi, FakeInflux, Fault, InfluxOptions, InfluxServer, Stored, StoredPoint,
};
use support::measures::CLI_BIN;
use support::procs::fake_aws_env;
use support::{decompress, fixture, split_lines, storable, Expected};

// ---------------------------------------------------------------------------
// The expectation, from the fixture alone
// ---------------------------------------------------------------------------

/// k6's default `tagsAsFields`.
const TAGS_AS_FIELDS: [&str; 3] = ["vu", "iter", "url"];

/// A point InfluxDB should hold.
#[derive(Debug, Clone, PartialEq)]
struct Exp {
    measurement: String,
    tags: BTreeMap<String, String>,
    time_ns: i64,
    /// `value` is a float, the others strings.
    fields: BTreeMap<String, Stored>,
    line: u64,
    /// Timestream's record-size rules (the converter applies them for
    /// every sink) may have shortened a value of this point.
    may_cut: bool,
}

/// `runs/a.json.gz` → `a`: the default testid (README, "testid").
fn testid_of(path: &Path) -> String {
    let mut name = path.file_name().unwrap().to_str().unwrap().to_owned();
    loop {
        let before = name.clone();
        for s in [".gz", ".json", ".ndjson", ".jsonl"] {
            if name.len() > s.len() && name.to_ascii_lowercase().ends_with(s) {
                name.truncate(name.len() - s.len());
            }
        }
        if name == before {
            return name;
        }
    }
}

/// Why the portable line protocol cannot carry `name` (README, "Choosing
/// the sink": names with a tab, NUL or newline, a trailing backslash, a
/// backslash before `\`, `,`, `=`, space or `"`; a measurement starting
/// with `#`). The reason is that of the first such character.
fn name_refusal(name: &str) -> Option<&'static str> {
    let b = name.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\n' => return Some("influxdb_newline"),
            b'\t' | 0 => return Some("influxdb_unsupported_char"),
            b'\\' => match b.get(i + 1) {
                None => return Some("influxdb_trailing_backslash"),
                Some(n) if b"\\,= \"".contains(n) => return Some("influxdb_ambiguous_backslash"),
                _ => {}
            },
            _ => {}
        }
    }
    None
}

/// The expected points of `file` and the points the sink refuses, by
/// reason; points the conversion drops (time, non-finite values) are in
/// neither.
fn expected_points(file: &Path) -> (Vec<Exp>, BTreeMap<String, u64>) {
    let (data, err) = decompress(&std::fs::read(file).unwrap());
    assert!(err.is_none());
    let exp = Expected::from_lines(&split_lines(&data), 1 << 20);
    let testid = testid_of(file);
    let mut out = Vec::new();
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    for p in exp.written_points() {
        let mut tags = BTreeMap::new();
        let mut fields = BTreeMap::new();
        // Every dimension the converter makes, for the record-size rule.
        let mut dim_bytes = 0;
        let mut long_value = false;
        for (k, v) in &p.tags {
            if k.is_empty() || !storable(v) {
                continue;
            }
            dim_bytes += k.len() + v.len();
            long_value |= v.chars().count() > 2048;
            if TAGS_AS_FIELDS.contains(&k.as_str()) {
                fields.insert(k.clone(), Stored::Str(v.clone()));
            } else {
                tags.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &p.metadata {
            let k = if p.tags.iter().any(|(t, _)| t == k) {
                format!("meta_{k}")
            } else {
                k.clone()
            };
            if k.is_empty() || !storable(v) {
                continue;
            }
            dim_bytes += k.len() + v.len();
            long_value |= v.chars().count() > 2048;
            fields.insert(k, Stored::Str(v.clone()));
        }
        if !p.tags.iter().any(|(k, v)| k == "testid" && storable(v)) {
            dim_bytes += "testid".len() + testid.len();
            tags.insert("testid".into(), testid.clone());
        }
        fields.insert("value".into(), Stored::Float(p.value));
        // The sink's refusals, in its order: tags, fields, measurement.
        let why = tags
            .iter()
            .find_map(|(k, v)| name_refusal(k).or_else(|| name_refusal(v)))
            .or_else(|| {
                fields.iter().find_map(|(k, v)| {
                    name_refusal(k).or(match v {
                        Stored::Str(s) if s.contains('\n') => Some("influxdb_newline"),
                        _ => None,
                    })
                })
            })
            .or_else(|| name_refusal(&p.metric))
            .or(p
                .metric
                .starts_with('#')
                .then_some("influxdb_comment_measurement"));
        if let Some(why) = why {
            *refused.entry(why.to_owned()).or_default() += 1;
            continue;
        }
        out.push(Exp {
            measurement: p.metric.clone(),
            tags,
            time_ns: i64::try_from(p.time_ns).unwrap(),
            fields,
            line: p.line,
            // Time + the MeasureName `k6` + the longest measure name + a
            // double: what a record can hold besides its dimensions.
            may_cut: long_value || dim_bytes + 8 + 2 + 256 + 8 > 2048,
        });
    }
    (out, refused)
}

fn same_field(stored: &Stored, want: &Stored, may_cut: bool) -> bool {
    match (stored, want) {
        (Stored::Float(s), Stored::Float(w)) => {
            s.to_bits() == w.to_bits() || (*s == 0.0 && *w == 0.0)
        }
        // InfluxQL's JSON writes an integral float without a fraction.
        (Stored::Int(i), Stored::Float(w)) => w.fract() == 0.0 && (*i as f64) == *w,
        (Stored::Str(s), Stored::Str(w)) => {
            s == w || (may_cut && !s.is_empty() && w.starts_with(s.as_str()))
        }
        (s, w) => s == w,
    }
}

fn matches(s: &StoredPoint, e: &Exp, time_slack: i64) -> bool {
    let tags_ok = if e.may_cut {
        s.tags.len() == e.tags.len()
            && s.tags.iter().zip(&e.tags).all(|((sk, sv), (ek, ev))| {
                sk == ek && (sv == ev || (storable(sv) && ev.starts_with(sv.as_str())))
            })
    } else {
        s.tags == e.tags
    };
    s.measurement == e.measurement
        && (e.time_ns..=e.time_ns + time_slack).contains(&s.time_ns)
        && tags_ok
        && s.fields.len() == e.fields.len()
        && s.fields
            .iter()
            .zip(&e.fields)
            .all(|((sk, sv), (ek, ev))| sk == ek && same_field(sv, ev, e.may_cut))
}

/// Every expected point is stored and nothing else is, point by point.
/// Returns (identical duplicates stored once, points moved by a few ns).
fn assert_same_points(stored: &[StoredPoint], expected: &[Exp], what: &str) -> (usize, usize) {
    // Identical points are one point in InfluxDB.
    let mut want: Vec<&Exp> = Vec::new();
    let mut dups = 0;
    let mut seen = BTreeSet::new();
    for e in expected {
        if seen.insert(format!(
            "{:?}",
            (&e.measurement, &e.tags, e.time_ns, &e.fields)
        )) {
            want.push(e);
        } else {
            dups += 1;
        }
    }
    type Key<'a> = (&'a str, &'a BTreeMap<String, String>, i64);
    let mut by_key: HashMap<Key, Vec<usize>> = HashMap::new();
    for (i, s) in stored.iter().enumerate() {
        by_key
            .entry((&s.measurement, &s.tags, s.time_ns))
            .or_default()
            .push(i);
    }
    let mut used = vec![false; stored.len()];
    let mut left = Vec::new();
    for e in want {
        let exact = by_key
            .get(&(e.measurement.as_str(), &e.tags, e.time_ns))
            .and_then(|c| {
                c.iter()
                    .copied()
                    .find(|&i| !used[i] && matches(&stored[i], e, 0))
            });
        match exact {
            Some(i) => used[i] = true,
            None => left.push(e),
        }
    }
    // Shortened values, then collisions moved by +1 ns (as often as needed).
    let mut moved = 0;
    let mut missing = Vec::new();
    for slack in [0, 64] {
        let mut still = Vec::new();
        for e in left {
            match (0..stored.len()).find(|&i| !used[i] && matches(&stored[i], e, slack)) {
                Some(i) => {
                    used[i] = true;
                    moved += usize::from(stored[i].time_ns != e.time_ns);
                }
                None => still.push(e),
            }
        }
        left = still;
    }
    missing.extend(left);
    let extra: Vec<&StoredPoint> = (0..stored.len())
        .filter(|&i| !used[i])
        .map(|i| &stored[i])
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} expected points not stored, {} stored points not expected\nmissing (first 3): {:#?}\nextra (first 3): {:#?}",
        missing.len(),
        extra.len(),
        &missing[..missing.len().min(3)],
        &extra[..extra.len().min(3)]
    );
    (dups, moved)
}

// ---------------------------------------------------------------------------
// Running the CLI
// ---------------------------------------------------------------------------

fn cli(args: &[&str]) -> Output {
    fake_aws_env(&mut Command::new(CLI_BIN))
        .args(args)
        .env_remove("K6TS_INFLUXDB_TOKEN")
        .output()
        .unwrap()
}

/// `ingest --sink influxdb --influxdb-api v1` of `inputs` into `db` on
/// `server` with `extra` options, its report to `summary`.
fn ingest_v1_to(
    server: &InfluxServer,
    db: &str,
    inputs: &[&Path],
    summary: &Path,
    extra: &[&str],
) -> Output {
    let url = server.url();
    let mut args = vec![
        "ingest",
        "--sink",
        "influxdb",
        "--influxdb-api",
        "v1",
        "--influxdb-url",
        &url,
        "--influxdb-database",
        db,
        "--progress",
        "none",
        "--summary-json",
        summary.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    cli(&args)
}

/// `ingest --sink influxdb --influxdb-api v1` of `input` into `db`; the
/// output and the run report.
fn ingest_v1(
    server: &InfluxServer,
    db: &str,
    input: &Path,
    dir: &Path,
    extra: &[&str],
) -> (Output, RunReport) {
    let summary = dir.join(format!("{db}.summary.json"));
    let dl = dir.join(format!("{db}.dead-letter.jsonl"));
    let mut all = vec!["--dead-letter", dl.to_str().unwrap()];
    all.extend_from_slice(extra);
    let out = ingest_v1_to(server, db, &[input], &summary, &all);
    let report = std::fs::read_to_string(&summary)
        .map(|s| serde_json::from_str(&s).unwrap())
        .unwrap_or_default();
    (out, report)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The rules the expectation models; any other would make it wrong.
const MODELLED: [&str; 5] = [
    "dimension_empty_value_omitted",
    "dimension_blank_value_omitted",
    "dimension_empty_name_omitted",
    "dimension_value_truncated",
    "record_size_reduced",
];

fn check_file(server: &InfluxServer, db: &str, file: &Path, dir: &Path) -> RunReport {
    server.create_database(db);
    let (out, r) = ingest_v1(server, db, file, dir, &[]);
    let what = file.display().to_string();
    let (want, refused) = expected_points(file);
    // Exit 1 when points were dropped by the rules, else 0.
    assert!(
        out.status.code() == Some(if r.dropped_total() > 0 { 1 } else { 0 }),
        "{what}: {:?}: {}",
        out.status,
        stderr(&out)
    );
    for k in r.adjusted.keys() {
        assert!(
            MODELLED.contains(&k.as_str()),
            "{what}: rule {k} is not modelled here"
        );
    }
    let influx_drops: BTreeMap<String, u64> = r
        .dropped
        .iter()
        .filter(|(k, _)| k.starts_with("influxdb_"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(influx_drops, refused, "{what}: refused by the sink");
    assert!(r.complete && r.error.is_none(), "{what}: {r:?}");
    assert!(r.conversion_balanced(), "{what}");
    assert_eq!(
        r.points as usize,
        Expected::from_lines(
            &split_lines(&decompress(&std::fs::read(file).unwrap()).0),
            1 << 20
        )
        .points
        .len()
    );
    assert_eq!(r.measures as usize, want.len(), "{what}: measures");
    assert_eq!(
        (r.written_measures, r.dead_lettered, r.rejected_records),
        (r.measures, 0, 0),
        "{what}"
    );
    let stored = server.points(db);
    let (dups, moved) = assert_same_points(&stored, &want, &what);
    assert_eq!(
        dups as u64, r.identical_duplicate_measures,
        "{what}: identical duplicates"
    );
    assert_eq!(
        moved > 0,
        r.nudged > 0,
        "{what}: {moved} points moved, {} records nudged",
        r.nudged
    );
    eprintln!(
        "{what}: {} points stored = {} expected ({} identical duplicates, {moved} moved by ns, {} refused)",
        stored.len(),
        want.len(),
        dups,
        refused.values().sum::<u64>()
    );
    r
}

#[test]
fn real_k6_fixtures_through_the_v1_api_into_influxd_point_by_point() {
    let server = InfluxServer::start();
    let dir = tempfile::tempdir().unwrap();
    for (i, name) in [
        "plain.json",
        "mixed.json.gz",
        "multi_member.json.gz",
        "notags.json.gz",
        "offset.json.gz",
        "offset_negative.json.gz",
        "special_values.json",
        "edge_cases.ndjson",
    ]
    .iter()
    .enumerate()
    {
        let r = check_file(&server, &format!("db{i}"), &fixture(name), dir.path());
        assert_eq!(r.model, "multi", "InfluxDB always gets groups");
    }
    // k6's layout: value is a float, vu/iter/url and metadata strings.
    let types = server.field_types("db1");
    let t = &types["http_req_duration"];
    assert_eq!(t["value"], "float");
    for f in ["url", "vu", "iter", "trace_id"] {
        assert_eq!(t[f], "string", "{f}");
    }
}

/// A k6 JSON line for `metric` with `tags` and `metadata`.
fn k6_line(
    metric: &str,
    time: &str,
    value: &str,
    tags: &[(&str, &str)],
    meta: &[(&str, &str)],
) -> String {
    let obj = |pairs: &[(&str, &str)]| {
        serde_json::Value::Object(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
                .collect(),
        )
    };
    let mut data = serde_json::json!({ "time": time, "value": 0, "tags": obj(tags) });
    if !meta.is_empty() {
        data["metadata"] = obj(meta);
    }
    let s = serde_json::json!({ "metric": metric, "type": "Point", "data": data }).to_string();
    s.replace("\"value\":0", &format!("\"value\":{value}"))
}

#[test]
fn tricky_names_are_stored_exactly_or_refused_with_the_reason() {
    let stored_ok = [
        ("name", "GET /a b?c=d&e=f,g"),
        ("comma,key", "v,1"),
        ("eq=key", "a=b"),
        ("space key", " leading and trailing "),
        ("quotes", "say \"hi\" 'there'"),
        ("path", "C:\\Users\\k6\\run"),
        ("unicode", "ünïcødé 日本語 ✓"),
        ("emoji", "🚀🔥 launch"),
        ("cr", "a\rb"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tricky.ndjson");
    let mut lines = Vec::new();
    let mut t = 0;
    let mut time = || {
        t += 1;
        format!("2026-01-02T03:04:05.{t:09}Z")
    };
    for (k, v) in stored_ok {
        lines.push(k6_line(
            "http_req_duration",
            &time(),
            "12.5",
            &[(k, v)],
            &[("vu", "1")],
        ));
    }
    lines.push(k6_line(
        "my metric,odd=name",
        &time(),
        "1",
        &[("a", "b")],
        &[],
    ));
    lines.push(k6_line(
        "日本🚀",
        &time(),
        "-0.000001",
        &[("a", "b")],
        &[("trace", "x \"y\" \\z")],
    ));
    // Refused: what InfluxDB 1.x/2.x and 3 would read differently, or not at all.
    for (k, v) in [
        ("bs_space", "a\\ b"),
        ("bs_comma", "a\\,b"),
        ("bs_bs", "a\\\\b"),
        ("bs_end", "ends\\"),
        ("tab", "a\tb"),
        ("nl", "a\nb"),
    ] {
        lines.push(k6_line("http_reqs", &time(), "1", &[(k, v)], &[]));
    }
    lines.push(k6_line("#comment", &time(), "1", &[("a", "b")], &[]));
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let server = InfluxServer::start();
    let r = check_file(&server, "tricky", &file, dir.path());
    assert_eq!(r.dropped["influxdb_ambiguous_backslash"], 3);
    assert_eq!(r.dropped["influxdb_trailing_backslash"], 1);
    assert_eq!(r.dropped["influxdb_unsupported_char"], 1);
    assert_eq!(r.dropped["influxdb_newline"], 1);
    assert_eq!(r.dropped["influxdb_comment_measurement"], 1);
    // And the names, read back as written:
    let pts = server.points("tricky");
    for (k, v) in stored_ok {
        assert!(
            pts.iter()
                .any(|p| p.tags.get(k).map(String::as_str) == Some(v)),
            "{k}={v:?}"
        );
    }
    assert!(pts.iter().any(|p| p.measurement == "my metric,odd=name"));
    assert!(pts.iter().any(|p| p.measurement == "日本🚀"
        && p.fields.get("trace") == Some(&Stored::Str("x \"y\" \\z".into()))));
}

#[test]
fn ingesting_a_file_twice_stores_the_same_points() {
    let server = InfluxServer::start();
    server.create_database("twice");
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("mixed.json.gz");
    let (o1, r1) = ingest_v1(&server, "twice", &input, dir.path(), &[]);
    assert!(r1.complete, "{}", stderr(&o1));
    let first = server.points("twice");
    let (o2, r2) = ingest_v1(&server, "twice", &input, dir.path(), &[]);
    assert!(r2.complete, "{}", stderr(&o2));
    let second = server.points("twice");
    assert_eq!(first.len(), second.len(), "point count unchanged");
    assert!(first == second, "the same points");
    assert_eq!(r1.written_measures, r2.written_measures);
    let count: u64 = server
        .rows("twice", "SELECT COUNT(value) FROM http_reqs")
        .iter()
        .map(|(_, _, rows)| rows[0][1].parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        count as usize,
        first
            .iter()
            .filter(|p| p.measurement == "http_reqs")
            .count()
    );
}

#[test]
fn a_missing_database_or_wrong_credentials_fail_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("plain.json");
    let open = InfluxServer::start();
    let (out, r) = ingest_v1(&open, "nope", &input, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one clear error: {err}");
    assert!(
        err.contains("not found") && err.contains("\"nope\""),
        "{err}"
    );
    assert_eq!(r, RunReport::default(), "no report: nothing was read");

    let secured = InfluxServer::start_with(InfluxOptions {
        auth: Some(("admin".into(), "s3cret".into())),
        ..Default::default()
    });
    secured.create_database("k6");
    let (out, _) = ingest_v1(
        &secured,
        "k6",
        &input,
        dir.path(),
        &["--influxdb-token", "wrong"],
    );
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: InfluxDB at ") && err.contains("unauthorized"),
        "{err}"
    );
    assert!(secured.points("k6").is_empty());

    // Missing options are usage errors naming the option.
    let out = cli(&[
        "ingest",
        "--sink",
        "influxdb",
        "--influxdb-database",
        "k6",
        input.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--influxdb-url"), "{}", stderr(&out));
}

#[test]
fn convert_prints_the_line_protocol_ingest_writes() {
    let input = fixture("plain.json");
    let out = Command::new(CLI_BIN)
        .args(["convert", "--sink", "influxdb", input.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed = parse_lines_with(Dialect::Portable, &text).expect("strict line protocol");
    let (want, _) = expected_points(&input);
    assert_eq!(parsed.len(), want.len());
    // The same points as the expectation (no server: exact keys).
    let key = |m: &str, t: i64| (m.to_owned(), t);
    let got: BTreeSet<_> = parsed
        .iter()
        .map(|p| key(&p.measurement, p.time_ns))
        .collect();
    let exp: BTreeSet<_> = want
        .iter()
        .map(|e| key(&e.measurement, e.time_ns))
        .collect();
    assert_eq!(got, exp);
    // v3 doubles backslashes; the file has none, so the bytes agree.
    let v3 = Command::new(CLI_BIN)
        .args([
            "convert",
            "--sink",
            "influxdb",
            "--influxdb-api",
            "v3",
            input.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(v3.stdout).unwrap(), text);
}

// ---------------------------------------------------------------------------
// v2 and v3 against FakeInflux
// ---------------------------------------------------------------------------

const TOKEN: &str = "tok_3n+/=";

/// A request timeout no answer of the fake comes near on a busy machine
/// (the fault test sets its own, shorter than its slow answer).
const CALM: Duration = Duration::from_secs(20);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn v2() -> (FakeApi, Api) {
    (
        FakeApi::V2 {
            org: "my org".into(),
            bucket: "k6&b".into(),
        },
        Api::V2 {
            org: "my org".into(),
            bucket: "k6&b".into(),
        },
    )
}

fn v3() -> (FakeApi, Api) {
    (
        FakeApi::V3 {
            database: "k6 db".into(),
        },
        Api::V3 {
            database: "k6 db".into(),
        },
    )
}

struct Run {
    report: RunReport,
    letters: Vec<k6_timestream::sinks::dead_letter::DeadLetter>,
    seconds: f64,
}

/// Ingests `input` through the library into `url`.
fn run_ingest(
    rt: &tokio::runtime::Runtime,
    url: &str,
    api: Api,
    input: &Path,
    max_lines: usize,
    concurrency: usize,
    timeout: Duration,
) -> Run {
    let dialect = api.dialect();
    let mut cfg = InfluxConfig::new(url, api);
    cfg.auth = Auth::Token(TOKEN.into());
    cfg.timeout = timeout;
    let writer = Arc::new(InfluxWriter::new(&cfg).unwrap());
    let encoder = InfluxEncoder::new(
        EncoderOptions {
            dialect,
            max_lines,
            ..Default::default()
        },
        60,
    );
    let dlq = Arc::new(MemorySink::default());
    let popts = PipelineOptions {
        convert: ConvertOptions {
            testid: Some("fake".into()),
            ..Default::default()
        },
        input: InputOptions::default(),
    };
    let wcfg = WriterConfig {
        concurrency,
        request_timeout: timeout,
        retry: RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
        },
        ..Default::default()
    };
    let source = std::fs::File::open(input).unwrap();
    let started = Instant::now();
    let res = rt.block_on(async {
        writer.probe().await.expect("probe");
        ingest(
            source,
            input.display().to_string(),
            popts,
            Sink {
                encoder,
                service: writer,
                dead_letters: dlq.clone(),
                config: wcfg,
            },
            Live::default(),
            Arc::new(|| false),
        )
        .await
    });
    let letters = std::mem::take(&mut *dlq.letters.lock().unwrap());
    Run {
        report: res.report,
        letters,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The points of a fault-free run of `input` in `dialect`.
fn reference(input: &Path, api: (FakeApi, Api)) -> BTreeMap<String, String> {
    let rt = rt();
    let fake = FakeInflux::start(rt.handle(), api.0, TOKEN, true);
    let run = run_ingest(&rt, &fake.url(), api.1, input, 200, 4, CALM);
    assert!(run.report.complete && run.letters.is_empty());
    assert_eq!(fake.violations(), Vec::<String>::new());
    as_stored(&fake.points())
}

#[test]
fn v2_and_v3_requests_have_the_apis_shape() {
    for api in [v2(), v3()] {
        let rt = rt();
        let fake = FakeInflux::start(rt.handle(), api.0.clone(), TOKEN, true);
        let input = fixture("mixed.json.gz");
        let run = run_ingest(&rt, &fake.url(), api.1.clone(), &input, 500, 4, CALM);
        assert_eq!(fake.violations(), Vec::<String>::new(), "{api:?}");
        let r = &run.report;
        assert!(r.complete && run.letters.is_empty(), "{r:?}");
        assert_eq!(r.written_measures, r.measures);
        assert_eq!(r.retries, 0);
        let lines: usize = fake.writes().iter().map(|w| w.body.lines().count()).sum();
        assert_eq!(lines as u64, r.measures, "every line sent once");
        assert!(fake.writes().iter().all(|w| w.body.lines().count() <= 500));
        assert_eq!(fake.writes().len() as u64, r.batches);
        // The fake parsed every body strictly; backslashes are doubled in v3 only.
        let bodies: String = fake.writes().iter().map(|w| w.body.clone()).collect();
        match api.0 {
            FakeApi::V3 { .. } => assert!(bodies.contains("\\\\ back")),
            FakeApi::V2 { .. } => assert!(!bodies.contains(" back")),
        }
    }
}

#[test]
fn throttling_errors_resets_and_slow_answers_lose_nothing() {
    let input = fixture("plain.json");
    let want = reference(&input, v2());
    let rt = rt();
    let fake = FakeInflux::start(rt.handle(), v2().0, TOKEN, true);
    fake.push_fault(Fault::Status {
        status: 429,
        retry_after: Some("1".into()),
        body: r#"{"code":"too many requests","message":"slow down"}"#.into(),
    });
    fake.push_fault(Fault::Status {
        status: 503,
        retry_after: None,
        body: r#"{"code":"unavailable","message":"busy"}"#.into(),
    });
    fake.push_fault(Fault::Reset);
    fake.push_fault(Fault::Delay(Duration::from_millis(1500)));
    fake.push_fault(Fault::Status {
        status: 500,
        retry_after: None,
        body: r#"{"code":"internal error","message":"boom"}"#.into(),
    });
    // One request at a time: the retry after the 429 is the next write.
    let run = run_ingest(
        &rt,
        &fake.url(),
        v2().1,
        &input,
        200,
        1,
        Duration::from_millis(700),
    );
    let r = &run.report;
    assert!(r.complete && run.letters.is_empty(), "{r:?}");
    assert_eq!(r.retries, 5);
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(
        as_stored(&fake.points()),
        want,
        "nothing lost, nothing extra"
    );
    let w = fake.writes();
    assert_eq!(w[0].status, 429);
    let waited = w[1].at - w[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "Retry-After honoured: {waited:?}"
    );
    assert!(run.seconds >= 1.0);
}

fn lp_line(letter: &k6_timestream::sinks::dead_letter::DeadLetter) -> &str {
    letter.record["line_protocol"].as_str().unwrap()
}

#[test]
fn refused_lines_become_dead_letters_with_their_line_protocol() {
    let input = fixture("plain.json");
    let want = reference(&input, v3());
    let rt = rt();
    // v3: the other lines are stored, refused ones named by number.
    let fake = FakeInflux::start(rt.handle(), v3().0, TOKEN, true);
    fake.push_fault(Fault::RefuseLines(|l| l.starts_with("http_req_waiting")));
    let run = run_ingest(&rt, &fake.url(), v3().1, &input, 100_000, 1, CALM);
    let r = &run.report;
    assert!(r.complete, "{r:?}");
    let refused: Vec<&str> = want
        .keys()
        .filter(|k| k.starts_with("http_req_waiting|"))
        .map(String::as_str)
        .collect();
    assert!(!refused.is_empty());
    assert_eq!(
        run.letters.len(),
        refused.len(),
        "one k6 request = one record per refused line"
    );
    assert_eq!(r.rejected_records, run.letters.len() as u64);
    assert_eq!(r.written_records + r.rejected_records, r.records);
    let (data, _) = decompress(&std::fs::read(&input).unwrap());
    let input_lines: Vec<&[u8]> = split_lines(&data);
    for l in &run.letters {
        assert_eq!(l.kind, Kind::Rejected);
        assert!(l.reason.contains("refused by test"), "{}", l.reason);
        let text = lp_line(l);
        let points = parse_lines_with(Dialect::V3, text).expect("re-sendable line protocol");
        assert_eq!(points.len() as u64, l.measures);
        assert_eq!(l.lines.len(), points.len());
        // Line k of the record is the point of input line lines[k].
        for (p, &n) in points.iter().zip(&l.lines) {
            let src = std::str::from_utf8(input_lines[n as usize - 1]).unwrap();
            assert!(
                src.contains(&format!("\"metric\":\"{}\"", p.measurement)),
                "{src}"
            );
        }
        assert!(points.iter().any(|p| p.measurement == "http_req_waiting"));
    }
    let stored = as_stored(&fake.points());
    let mut expect_stored = want.clone();
    expect_stored.retain(|k, _| !k.starts_with("http_req_waiting|"));
    assert_eq!(stored, expect_stored, "v3 stored every other line");
    assert_eq!(
        r.rejected_reasons.values().sum::<u64>(),
        refused.len() as u64
    );

    // v2: a parse refusal refuses the whole body, naming lines: halving
    // isolates the refused records, every other one is stored.
    let fake = FakeInflux::start(rt.handle(), v2().0, TOKEN, true);
    let refuse: fn(&str) -> bool =
        |l| l.starts_with("http_req_waiting") && l.contains(",name=http://127.0.0.1");
    for _ in 0..2000 {
        fake.push_fault(Fault::RefuseLines(refuse));
    }
    let run = run_ingest(&rt, &fake.url(), v2().1, &input, 100, 1, CALM);
    assert!(run.report.complete);
    assert!(run.report.splits > 0);
    assert!(!run.letters.is_empty());
    assert!(run.letters.iter().all(|l| l.kind == Kind::Invalid
        && l.reason.contains("refused by test")
        && lp_line(l).lines().any(refuse)));
    let stored = as_stored(&fake.points());
    let letters: usize = run.letters.iter().map(|l| l.measures as usize).sum();
    assert_eq!(
        stored.len() + letters,
        want.len(),
        "stored + dead-lettered = all"
    );
    assert!(stored.keys().all(|k| want.contains_key(k)));
}

#[test]
fn wrong_token_is_one_fatal_error_and_no_write() {
    let rt = rt();
    let fake = FakeInflux::start(rt.handle(), v2().0, TOKEN, true);
    let url = fake.url();
    let input = fixture("plain.json");
    let out = fake_aws_env(&mut Command::new(CLI_BIN))
        .args([
            "ingest",
            "--sink",
            "influxdb",
            "--influxdb-url",
            &url,
            "--influxdb-database",
            "k6&b",
            "--influxdb-org",
            "my org",
            input.to_str().unwrap(),
        ])
        .env("K6TS_INFLUXDB_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unauthorized"), "{err}");
    assert!(fake.writes().is_empty(), "nothing was sent");
    // With the right token (from the environment) it works.
    let dir = tempfile::tempdir().unwrap();
    let dl = dir.path().join("dl.jsonl");
    let out = fake_aws_env(&mut Command::new(CLI_BIN))
        .args([
            "ingest",
            "--sink",
            "influxdb",
            "--influxdb-url",
            &url,
            "--influxdb-database",
            "k6&b",
            "--influxdb-org",
            "my org",
            "--dead-letter",
            dl.to_str().unwrap(),
            input.to_str().unwrap(),
        ])
        .env("K6TS_INFLUXDB_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(fake.points().len(), 436);
}

#[test]
fn v3_without_gzip_and_with_doubled_backslashes() {
    let rt = rt();
    let fake = FakeInflux::start(rt.handle(), v3().0, TOKEN, false);
    let mut cfg = InfluxConfig::new(fake.url(), v3().1);
    cfg.auth = Auth::Token(TOKEN.into());
    cfg.gzip = false;
    let w = InfluxWriter::new(&cfg).unwrap();
    let body = "m\\\\x,t=a\\\\\\\\b\\\\\\,c k\\\\\\==\"v\\\\\",value=-0 -5\n";
    rt.block_on(async {
        w.probe().await.unwrap();
        w.write(body.as_bytes(), 1).await.unwrap();
    });
    assert_eq!(fake.violations(), Vec::<String>::new());
    let p = &fake.points()[0];
    assert_eq!(p.measurement, "m\\x");
    assert_eq!(p.tag("t"), Some("a\\\\b\\,c"));
    assert_eq!(p.field("k\\="), Some(&ParsedValue::Str("v\\".into())));
}

// ---------------------------------------------------------------------------
// Many objects in one call, and live mode
// ---------------------------------------------------------------------------

/// `ingest --sink influxdb` (v1, into `db`) of `inputs` with `extra`
/// options; the output and the summary JSON.
fn ingest_many(
    server: &InfluxServer,
    db: &str,
    inputs: &[&Path],
    dir: &Path,
    extra: &[&str],
) -> (Output, serde_json::Value) {
    let summary = dir.join(format!("{db}.many.summary.json"));
    let _ = std::fs::remove_file(&summary);
    let out = ingest_v1_to(server, db, inputs, &summary, extra);
    let s = std::fs::read_to_string(&summary)
        .map(|s| serde_json::from_str(&s).unwrap())
        .unwrap_or_default();
    (out, s)
}

/// Several files in one call go to InfluxDB like one call each (every
/// point, each object under its own testid), and a second call with the
/// same `--state` file reads none of them again.
#[test]
fn several_files_in_one_call_into_influxd_and_resumed_by_state() {
    let server = InfluxServer::start();
    server.create_database("many");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, name) in ["plain.json", "mixed.json.gz", "offset.json.gz"]
        .iter()
        .enumerate()
    {
        let ext = name.split_once('.').unwrap().1;
        let p = dir.path().join(format!("obj{i}.{ext}"));
        std::fs::copy(fixture(name), &p).unwrap();
        files.push(p);
    }
    let inputs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let state = dir.path().join("state.jsonl");
    let dl = dir.path().join("many.dead-letter.jsonl");
    let extra = [
        "--state",
        state.to_str().unwrap(),
        "--dead-letter",
        dl.to_str().unwrap(),
        "--objects-in-flight",
        "2",
    ];
    let (out, s) = ingest_many(&server, "many", &inputs, dir.path(), &extra);
    let objects = s["objects"].as_array().expect("a summary").clone();
    assert_eq!(objects.len(), 3, "{}", stderr(&out));
    let mut want = Vec::new();
    let mut dropped = 0;
    for (f, o) in files.iter().zip(&objects) {
        let r: RunReport = serde_json::from_value(o["report"].clone()).unwrap();
        assert!(r.complete && r.error.is_none(), "{}: {r:?}", f.display());
        assert_eq!(r.model, "multi", "InfluxDB always gets groups");
        assert_eq!((r.dead_lettered, r.rejected_records), (0, 0));
        dropped += r.dropped_total();
        want.extend(expected_points(f).0);
    }
    let code = if dropped > 0 { 1 } else { 0 };
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    assert_eq!(s["exit_code"], code);
    let stored = server.points("many");
    assert_same_points(&stored, &want, "three objects in one call");

    // Again with the same state file: nothing is read or written again.
    let (out, s) = ingest_many(&server, "many", &inputs, dir.path(), &extra);
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    let objects = s["objects"].as_array().unwrap();
    assert!(
        objects.iter().all(|o| o["earlier"] == true),
        "{}",
        serde_json::to_string_pretty(&s).unwrap()
    );
    assert!(server.points("many") == stored, "the same points");
}

/// `ingest -` from a pipe (live mode, `--flush-interval 300ms`) writes
/// what has come long before the pipe closes, and in the end stores the
/// same points as ingesting the file.
#[test]
fn a_pipe_reaches_influxdb_before_it_closes() {
    use std::io::Write;
    use std::process::Stdio;
    let server = InfluxServer::start();
    server.create_database("file");
    server.create_database("live");
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("plain.json");
    let (o, r) = ingest_v1(&server, "file", &input, dir.path(), &["--testid", "t"]);
    assert!(r.complete, "{}", stderr(&o));
    let text = std::fs::read(&input).unwrap();
    // Cut where every time before is older than every time after, so that
    // no k6 group is split by the pause (that would move a point by +1 ns).
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    let times: Vec<Option<i64>> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).ok()?;
            k6_timestream::core::k6::time::parse_rfc3339_ns(v["data"]["time"].as_str()?).ok()
        })
        .collect();
    let cut = (lines.len() / 3..lines.len())
        .find(|&i| {
            let before = times[..i].iter().flatten().max();
            let after = times[i..].iter().flatten().min();
            matches!((before, after), (Some(b), Some(a)) if b < a)
        })
        .expect("a cut between older and newer points");
    let url = server.url();
    let summary = dir.path().join("live.summary.json");
    let mut child = fake_aws_env(&mut Command::new(CLI_BIN))
        .args([
            "ingest",
            "--sink",
            "influxdb",
            "--influxdb-api",
            "v1",
            "--influxdb-url",
            &url,
            "--influxdb-database",
            "live",
            "--progress",
            "none",
            "--testid",
            "t",
            "--flush-interval",
            "300ms",
            "--summary-json",
            summary.to_str().unwrap(),
            "--dead-letter",
            dir.path().join("live.dl.jsonl").to_str().unwrap(),
            "-",
        ])
        .env_remove("K6TS_INFLUXDB_TOKEN")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&lines[..cut].concat()).unwrap();
    stdin.flush().unwrap();
    let t0 = Instant::now();
    let early = loop {
        let n = server.points("live").len();
        if n > 0 || t0.elapsed() > Duration::from_secs(10) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lag = t0.elapsed();
    stdin.write_all(&lines[cut..].concat()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(early > 0, "nothing written while the pipe was open");
    assert!(lag < Duration::from_secs(5), "first points after {lag:?}");
    let r: RunReport = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(r.complete && r.batches >= 2, "{r:?}");
    let key = |p: &StoredPoint| format!("{p:?}");
    let mut live = server.points("live");
    let mut file = server.points("file");
    live.sort_by_key(key);
    file.sort_by_key(key);
    assert_eq!(live.len(), file.len());
    let differ: Vec<_> = live.iter().zip(&file).filter(|(a, b)| a != b).collect();
    assert!(
        differ.is_empty(),
        "live and file ingest store the same points: {} differ, first {:#?}; live {r:?}",
        differ.len(),
        differ.first()
    );
    eprintln!(
        "live: {early} points stored {lag:?} after the first half was written; {} in all",
        live.len()
    );
}
