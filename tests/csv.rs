//! k6 CSV input end to end: the real `k6-timestream convert` binary on the
//! real k6 CSV fixtures and on their JSON twins (one k6 run wrote both, see
//! `tests/fixtures/README.md`), compared point by point in both data
//! models; plus the inputs that are not k6 output at all.
//!
//! The comparison works on the produced records, flattened into points
//! (measure, time, dimensions, value). The JSON side is brought to what
//! k6's CSV output can represent, by the rules k6 follows (documented in
//! `src/core/k6/csv.rs`): times cut to the file's unit, values at `%f`'s six
//! decimals, metadata whose key is a CSV column left out, a tag value with
//! `&` then `=` read as two tags, and `\r\n` in a value read as `\n` (the
//! input layer strips the `\r` before every `\n`).

mod support;

use flate2::read::MultiGzDecoder;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{parse_request, OutRecord};

const BIN: &str = env!("CARGO_BIN_EXE_k6-timestream");
const NS_PER_SEC: i128 = 1_000_000_000;

fn fixture(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(p.is_file(), "fixture {name} is missing");
    p
}

/// The file's bytes, decompressed when it is gzip.
fn decoded(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return raw;
    }
    let mut out = Vec::new();
    MultiGzDecoder::new(&raw[..]).read_to_end(&mut out).unwrap();
    out
}

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    summary: Value,
}

impl Run {
    fn num(&self, key: &str) -> u64 {
        self.summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("summary.{key}: {}", self.summary[key]))
    }

    fn counts(&self, key: &str) -> BTreeMap<String, u64> {
        serde_json::from_value(self.summary[key].clone()).unwrap()
    }

    fn warnings(&self) -> Vec<String> {
        serde_json::from_value(self.summary["warnings"].clone()).unwrap()
    }

    /// The records of stdout, checked against Timestream's rules.
    fn records(&self, model: &str) -> Vec<OutRecord> {
        let text = std::str::from_utf8(&self.stdout).unwrap();
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let req = parse_request(line, "k6", "results", model == "multi", true)
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            out.extend(req.records);
        }
        out
    }
}

/// `k6-timestream convert --model MODEL --summary-json … INPUT`.
fn convert(input: &Path, model: &str) -> Run {
    convert_with(input, &["--model", model])
}

/// `k6-timestream convert ARGS --summary-json … INPUT`.
fn convert_with(input: &Path, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let out = Command::new(BIN)
        .arg("convert")
        .args(args)
        .arg("--summary-json")
        .arg(&summary)
        .arg(input)
        .output()
        .expect("run k6-timestream");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        summary: std::fs::read(&summary)
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or(Value::Null),
    }
}

// ---------------------------------------------------------------------------
// What k6's CSV output can represent
// ---------------------------------------------------------------------------

/// Go's `%f` of a value, without trailing fractional zeros (what the CSV
/// holds, made canonical).
fn six_decimals(v: f64) -> String {
    let f = format!("{v:.6}");
    let t = f.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" { "0" } else { t }.to_owned()
}

fn significant_digits(text: &str) -> usize {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    digits.trim_matches('0').len()
}

/// The measure value the CSV path writes for a sample whose value is `v`:
/// k6's printed text, or (beyond the 17 significant digits a float64 has)
/// the shortest text that reads back as the same float64.
fn csv_measure_text(v: f64) -> String {
    let text = six_decimals(v);
    if significant_digits(&text) > 17 {
        let s = text.parse::<f64>().unwrap().to_string();
        if s == "-0" {
            "0".to_owned()
        } else {
            s
        }
    } else {
        text
    }
}

/// The cells of a k6 CSV header (k6 never quotes its column names).
fn header_columns(csv: &[u8]) -> BTreeSet<String> {
    let text = std::str::from_utf8(csv).unwrap();
    let header = text.lines().next().unwrap();
    assert!(header.starts_with("metric_name,timestamp,metric_value,"));
    header.split(',').map(str::to_owned).collect()
}

/// The JSON twin's metadata entries whose key is a CSV column: k6 leaves
/// them out of the CSV.
fn metadata_in_columns(json: &[u8], columns: &BTreeSet<String>) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in std::str::from_utf8(json).unwrap().lines() {
        let line = line
            .replace("\"value\":+Inf", "\"value\":\"+Inf\"")
            .replace("\"value\":-Inf", "\"value\":\"-Inf\"");
        let v: Value = serde_json::from_str(&line).unwrap();
        for (k, val) in v["data"]["metadata"].as_object().into_iter().flatten() {
            if columns.contains(k) {
                out.insert((k.clone(), val.as_str().unwrap().to_owned()));
            }
        }
    }
    out
}

/// k6's CSV decoding of a `k=v&k=v` cell, applied to one pair: a piece
/// after `&` holding `=` starts a new pair.
fn split_like_csv(key: &str, value: &str) -> Vec<(String, String)> {
    let mut pieces = value.split('&');
    let mut cur = (key.to_owned(), pieces.next().unwrap_or("").to_owned());
    let mut out = Vec::new();
    for p in pieces {
        match p.split_once('=') {
            Some((k, v)) => {
                out.push(std::mem::replace(&mut cur, (k.to_owned(), v.to_owned())));
            }
            None => {
                cur.1.push('&');
                cur.1.push_str(p);
            }
        }
    }
    out.push(cur);
    out.retain(|(_, v)| !v.is_empty());
    out
}

type Dims = Vec<(String, String)>;

/// (measure, time, dimensions, value).
type Pt = (String, i128, Dims, String);

/// The measures of `records` as points, times cut to `unit` ns.
fn points(records: &[OutRecord], unit: i128, fix_dims: &dyn Fn(&Dims) -> Dims) -> Vec<Pt> {
    let mut v = Vec::new();
    for r in records {
        let dims = fix_dims(&r.dims);
        for (name, value) in &r.values {
            v.push((
                name.clone(),
                r.time - r.time.rem_euclid(unit),
                dims.clone(),
                value.clone(),
            ));
        }
    }
    v.sort();
    v
}

/// The JSON twin's output dimensions as the CSV's output has them.
fn json_dims_as_csv(
    dims: &Dims,
    columns: &BTreeSet<String>,
    dropped: &BTreeSet<(String, String)>,
) -> Dims {
    let mut out = Vec::new();
    for (k, v) in dims {
        // A metadata key that is a column: `K` (no tag of that name) or
        // `meta_K` (renamed next to the tag `K`) in the JSON's records.
        let plain = k.strip_prefix("meta_").unwrap_or(k);
        if dropped.contains(&(plain.to_owned(), v.clone())) {
            continue;
        }
        let v = v.replace("\r\n", "\n");
        if columns.contains(k) {
            out.push((k.clone(), v));
        } else {
            out.extend(split_like_csv(k, &v));
        }
    }
    out.sort();
    out
}

struct Twin {
    csv: &'static str,
    json: &'static str,
    /// The CSV's time unit in ns.
    unit: i128,
}

const TWINS: [Twin; 3] = [
    Twin {
        csv: "csv_unix_nano.csv.gz",
        json: "csv_unix_nano.json.gz",
        unit: 1,
    },
    Twin {
        csv: "csv_unix.csv",
        json: "csv_unix.json.gz",
        unit: NS_PER_SEC,
    },
    Twin {
        csv: "csv_rfc3339_nano.csv.gz",
        json: "csv_rfc3339_nano.json.gz",
        unit: 1,
    },
];

fn diff(got: &[Pt], want: &[Pt]) -> String {
    let g: BTreeMap<&Pt, usize> = got.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(p).or_default() += 1;
        m
    });
    let w: BTreeMap<&Pt, usize> = want.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(p).or_default() += 1;
        m
    });
    let only = |a: &BTreeMap<&Pt, usize>, b: &BTreeMap<&Pt, usize>| {
        a.iter()
            .filter(|(p, n)| b.get(*p) != Some(n))
            .take(5)
            .map(|(p, n)| format!("  {n}× {p:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "{} CSV points, {} JSON points\nCSV only:\n{}\nJSON only:\n{}",
        got.len(),
        want.len(),
        only(&g, &w),
        only(&w, &g)
    )
}

/// Every CSV fixture against its JSON twin, both models.
#[test]
fn csv_fixtures_match_their_json_twins_point_by_point() {
    for twin in &TWINS {
        let (csv_path, json_path) = (fixture(twin.csv), fixture(twin.json));
        let columns = header_columns(&decoded(&csv_path));
        let dropped = metadata_in_columns(&decoded(&json_path), &columns);
        assert!(
            dropped.iter().any(|(k, _)| k == "method"),
            "the workload sets metadata `method`: {dropped:?}"
        );
        for model in ["multi", "single"] {
            let label = format!("{} ({model})", twin.csv);
            let c = convert(&csv_path, model);
            let j = convert(&json_path, model);
            assert_eq!(
                (c.code, j.code),
                (0, 0),
                "{label}: {}{}",
                c.stderr,
                j.stderr
            );
            assert_eq!(c.summary["format"], "csv", "{label}");
            assert_eq!(j.summary["format"], "json", "{label}");
            assert_eq!(c.summary["complete"], true, "{label}");
            assert!(c.counts("skipped").is_empty(), "{label}: {}", c.summary);
            // Every sample of the run, and the same ones dropped (±Inf).
            assert_eq!(c.num("points"), j.num("points"), "{label}");
            assert!(c.num("points") > 300, "{label}");
            assert_eq!(c.counts("dropped"), j.counts("dropped"), "{label}");
            assert_eq!(c.counts("dropped")["non_finite_value"], 2, "{label}");
            assert_eq!(c.num("measures"), j.num("measures"), "{label}");
            // No Metric lines in CSV: every point's kind is unknown.
            assert_eq!(
                c.counts("points_by_kind"),
                BTreeMap::from([("unknown".to_owned(), c.num("points"))]),
                "{label}"
            );
            assert!(
                c.warnings().iter().any(|w| w.contains("unknown")),
                "{label}: {:?}",
                c.warnings()
            );
            assert!(j.warnings().is_empty(), "{label}: {:?}", j.warnings());

            let (crec, jrec) = (c.records(model), j.records(model));
            assert_eq!(crec.len() as u64, c.num("records"), "{label}");
            let got = points(&crec, twin.unit, &|d| d.clone());
            let want: Vec<Pt> = points(&jrec, twin.unit, &|d| {
                json_dims_as_csv(d, &columns, &dropped)
            })
            .into_iter()
            .map(|(m, t, d, v)| (m, t, d, csv_measure_text(v.parse().unwrap())))
            .collect();
            let mut want = want;
            want.sort();
            assert!(got == want, "{label}: {}", diff(&got, &want));

            // The values are k6's printed text, not a float's re-rendering:
            // %f's 0.300000 is 0.3 here (JSON: 0.30000000000000004).
            let values: HashSet<&str> = got.iter().map(|p| p.3.as_str()).collect();
            for v in [
                "0.3",
                "0.007812",
                "0.023438",
                "0",
                "100000000000000000000000",
            ] {
                assert!(values.contains(v), "{label}: no value {v}");
            }
            assert!(!values.contains("0.30000000000000004"), "{label}");

            if twin.unit == NS_PER_SEC {
                check_whole_seconds(&label, &c, &crec);
            } else {
                assert!(
                    !c.warnings().iter().any(|w| w.contains("unix_nano")),
                    "{label}: {:?}",
                    c.warnings()
                );
                // Exact nanoseconds: nothing collided, on either side.
                assert_eq!((c.num("nudged"), j.num("nudged")), (0, 0), "{label}");
            }
        }
    }
}

/// The default `unix` CSV: every point converted, none lost (no two
/// records left at one series and time), the nudges counted and warned of.
fn check_whole_seconds(label: &str, c: &Run, records: &[OutRecord]) {
    let nudged = c.num("nudged");
    let moved = records.iter().filter(|r| r.time % NS_PER_SEC != 0).count() as u64;
    if label.ends_with("(multi)") {
        // Records of one request group's dimensions repeat within a
        // second (a metric twice in a row starts a new record).
        assert!(nudged > 0, "{label}: whole seconds and no nudge?");
    }
    assert_eq!(moved, nudged, "{label}: records moved vs nudged");
    assert_eq!(c.num("identical_duplicates"), 0, "{label}");
    let mut slots = HashSet::new();
    for r in records {
        assert!(
            slots.insert((r.dims.clone(), r.measure_name.clone(), r.time)),
            "{label}: two records at one series and time: {r:?}"
        );
    }
    let w = c.warnings();
    assert!(
        w.iter()
            .any(|w| w.contains("K6_CSV_TIME_FORMAT=unix_nano") && w.contains("whole seconds")),
        "{label}: {w:?}"
    );
    assert!(
        c.stderr.contains("K6_CSV_TIME_FORMAT=unix_nano"),
        "the warning is printed: {}",
        c.stderr
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A gzip'd CSV converts to the same requests as the plain file, and the
/// format comes from the header line, never from the file name.
#[test]
fn gzip_csv_and_file_names_do_not_matter() {
    let plain = fixture("csv_unix.csv");
    let bytes = std::fs::read(&plain).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("run.csv.gz");
    std::fs::write(&gz, gzip(&bytes)).unwrap();
    let misnamed = dir.path().join("results.json");
    std::fs::write(&misnamed, &bytes).unwrap();
    let json_named_csv = dir.path().join("twin.csv");
    std::fs::write(&json_named_csv, decoded(&fixture("csv_unix.json.gz"))).unwrap();
    for model in ["multi", "single"] {
        let p = convert(&plain, model);
        assert_eq!(p.code, 0, "{}", p.stderr);
        assert!(!p.stdout.is_empty());
        for other in [&gz, &misnamed] {
            let o = convert(other, model);
            assert_eq!(o.code, 0, "{}", o.stderr);
            assert_eq!(o.summary["format"], "csv");
            assert!(
                o.stdout == p.stdout,
                "{} differs from the plain CSV",
                other.display()
            );
        }
        assert_eq!(convert(&gz, model).summary["gzip"], true);
        let j = convert(&json_named_csv, model);
        assert_eq!((j.code, &j.summary["format"]), (0, &Value::from("json")));
        assert_eq!(j.num("points"), p.num("points"));
    }
}

/// Thousands of points of one series in one second (whole-second CSV):
/// every one is kept, 1 ns apart, and counted as nudged.
#[test]
fn one_series_in_one_second_keeps_every_point() {
    // 20,000: probing from the second's first nanosecond for every point
    // (k²/2 probes) would take minutes here; the guard's next-free memo
    // keeps it linear.
    const K: usize = 20_000;
    let mut csv = String::from("metric_name,timestamp,metric_value,status,extra_tags,metadata\n");
    for i in 0..K {
        // Equal values too: distinct samples, not duplicates.
        let v = if i % 2 == 0 { 1.0 } else { i as f64 / 1000.0 };
        csv.push_str(&format!(
            "http_req_duration,1709292845,{v:.6},200,testid=one,\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("one_second.csv");
    std::fs::write(&p, csv).unwrap();
    let r = convert(&p, "single");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!((r.num("points"), r.num("measures")), (K as u64, K as u64));
    assert_eq!(r.num("nudged"), K as u64 - 1);
    assert_eq!(r.num("identical_duplicates"), 0);
    let mut times: Vec<i128> = r.records("single").iter().map(|r| r.time).collect();
    times.sort();
    let base = 1_709_292_845 * NS_PER_SEC;
    assert_eq!(times, (0..K as i128).map(|i| base + i).collect::<Vec<_>>());
}

/// Not k6 output at all: exit 3 and one error line naming the file, after
/// at most 5 non-blank lines (the rest of the file is not read).
#[test]
fn not_k6_output_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<(PathBuf, u64)> = Vec::new();
    let mut add = |name: &str, text: Vec<u8>, lines: u64| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        files.push((p, lines));
    };
    let lorem: String = (0..3000)
        .map(|i| format!("line {i}: lorem ipsum dolor sit amet\n"))
        .collect();
    add("notes.json", lorem.into_bytes(), 5);
    let other_csv: String = std::iter::once("id,name,score\n".to_owned())
        .chain((0..3000).map(|i| format!("{i},user {i},{}\n", i % 7)))
        .collect();
    add("scores.csv", other_csv.into_bytes(), 5);
    // A JSON array of k6 points, pretty-printed (`{...},` lines) ...
    let point = r#"{"type":"Point","metric":"vus","data":{"time":"2024-03-01T11:34:05Z","value":1,"tags":{}}}"#;
    let pretty: String = std::iter::once("[\n".to_owned())
        .chain((0..3000).map(|_| format!("  {point},\n")))
        .chain(std::iter::once(format!("  {point}\n]\n")))
        .collect();
    add("array.json", pretty.into_bytes(), 5);
    // ... and on one line: the whole input read, no k6 line in it.
    add(
        "array_one_line.json",
        format!("\n[{point},{point}]\n").into_bytes(),
        2,
    );
    // A binary file: 255 bytes between newlines, not UTF-8.
    let binary: Vec<u8> = (0..=255u8).cycle().skip(11).take(256 * 40).collect();
    add("blob.ndjson", binary, 5);
    for (path, lines) in &files {
        let name = path.display().to_string();
        let r = convert(path, "multi");
        assert_eq!(r.code, 3, "{name}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{name}");
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("error"))
            .collect();
        assert_eq!(errors.len(), 1, "{name}: {}", r.stderr);
        assert!(
            errors[0].contains(&name) && errors[0].contains("not k6 output"),
            "{name}: {}",
            errors[0]
        );
        assert_eq!(r.num("lines"), *lines, "{name}: read no further");
        assert!(r.counts("skipped").is_empty(), "{name}: {}", r.summary);
        assert_eq!(r.summary["complete"], false, "{name}");
        assert_eq!(r.summary["failure_reason"], "not_k6", "{name}");
        assert_eq!(r.num("points"), 0, "{name}");
    }
}

/// A k6 JSON file with a few bad lines, even before its first k6 line, is
/// converted as before: the bad lines are counted, every point is there.
#[test]
fn json_with_a_few_bad_lines_still_converts() {
    let good = std::fs::read_to_string(fixture("plain.json")).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let mut text = String::from("garbage\n[1,2]\n\n{\"no\":\"type\"}\nnot json either\n");
    for (i, l) in lines.iter().enumerate() {
        text.push_str(l);
        text.push('\n');
        if i == 100 {
            text.push_str("{broken\n");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad_lines.json");
    std::fs::write(&p, text).unwrap();
    let r = convert(&p, "single");
    let orig = convert(&fixture("plain.json"), "single");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.summary["format"], "json");
    assert_eq!(r.num("points"), orig.num("points"));
    assert_eq!(r.num("measures"), orig.num("measures"));
    assert_eq!(
        r.counts("skipped"),
        BTreeMap::from([
            ("malformed_json".to_owned(), 4),
            ("missing_field".to_owned(), 1)
        ])
    );
    assert_eq!(r.num("blank_lines"), 1);
}

/// RFC 4180 quoting as Go's csv writer produces it, and what a hand-made
/// file may hold: commas, doubled quotes, newlines and CRLF inside quotes,
/// a leading space, `\.`, unicode, empty quoted cells (absent tags), quoted
/// header names, pairs whose values hold `=`, `&`-pieces without `=`.
#[test]
fn quoting_edge_cases() {
    let csv = concat!(
        "\"metric_name\",timestamp,metric_value,name,url,extra_tags,metadata\r\n",
        "m,1709292845000000001,1.500000,\"a,b\",\"say \"\"hi\"\"\",k=v,\r\n",
        "m,1709292845000000002,2.000000,\"two\nlines\",\" lead\",\"x=1&y=a=b\",\"trace=t,1\"\n",
        "m,1709292845000000003,3.000000,\"\",\"\\.\",\"html=<b>&amp;</b>\",\n",
        "m,1709292845000000004,4.000000,\"crlf\r\ninside\",✓ ünï,,vu=3\n",
        "m,1709292845000000005,0.000001,,,,\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("quoting.csv");
    std::fs::write(&p, csv).unwrap();
    let r = convert(&p, "single");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.counts("skipped").is_empty(), "{}", r.summary);
    assert_eq!(r.num("points"), 5);
    type Point = (i128, Vec<(String, String)>, String);
    let mut got: Vec<Point> = r
        .records("single")
        .into_iter()
        .map(|rec| {
            let mut d: Vec<(String, String)> = rec
                .dims
                .iter()
                .filter(|(k, _)| k != "testid")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            d.sort();
            (
                rec.time - 1_709_292_845 * NS_PER_SEC,
                d,
                rec.values[0].1.clone(),
            )
        })
        .collect();
    got.sort();
    let d = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = v
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    };
    let want = vec![
        (
            1,
            d(&[("name", "a,b"), ("url", "say \"hi\""), ("k", "v")]),
            "1.5".to_owned(),
        ),
        (
            2,
            d(&[
                ("name", "two\nlines"),
                ("url", " lead"),
                ("x", "1"),
                ("y", "a=b"),
                ("trace", "t,1"),
            ]),
            "2".to_owned(),
        ),
        (
            3,
            d(&[("url", "\\."), ("html", "<b>&amp;</b>")]),
            "3".to_owned(),
        ),
        (
            4,
            d(&[("name", "crlf\ninside"), ("url", "✓ ünï"), ("vu", "3")]),
            "4".to_owned(),
        ),
        (5, d(&[]), "0.000001".to_owned()),
    ];
    assert_eq!(got, want);
}

/// The InfluxDB sink takes CSV like JSON: the unix_nano CSV gives the same
/// (measurement, time, value) points as its JSON twin, and the default
/// whole-second CSV keeps every point, no two at one series and time
/// (InfluxDB would let the later overwrite the earlier).
#[test]
fn influxdb_sink_takes_csv() {
    use k6_timestream::sinks::influxdb::encode::{parse_lines, ParsedValue};
    type Lp = (String, i64, String);
    let lp = |path: &Path| -> (
        Run,
        Vec<k6_timestream::sinks::influxdb::encode::ParsedPoint>,
    ) {
        let r = convert_with(path, &["--sink", "influxdb"]);
        assert_eq!(r.code, 0, "{}: {}", path.display(), r.stderr);
        let points = parse_lines(std::str::from_utf8(&r.stdout).unwrap()).unwrap();
        (r, points)
    };
    let key = |p: &k6_timestream::sinks::influxdb::encode::ParsedPoint| -> Lp {
        let v = p
            .fields
            .iter()
            .find(|(k, _)| k == "value")
            .map(|(_, v)| match v {
                ParsedValue::Float(f) => six_decimals(f.parse().unwrap()),
                other => panic!("value field {other:?}"),
            })
            .unwrap();
        (p.measurement.clone(), p.time_ns, v)
    };
    let (c, cp) = lp(&fixture("csv_unix_nano.csv.gz"));
    let (j, jp) = lp(&fixture("csv_unix_nano.json.gz"));
    assert_eq!(c.num("measures"), j.num("measures"));
    assert_eq!(cp.len() as u64, c.num("measures"));
    let mut ck: Vec<Lp> = cp.iter().map(key).collect();
    let mut jk: Vec<Lp> = jp.iter().map(key).collect();
    ck.sort();
    jk.sort();
    assert_eq!(ck, jk);

    let (u, up) = lp(&fixture("csv_unix.csv"));
    assert_eq!(up.len() as u64, u.num("measures"));
    assert_eq!(u.num("measures"), j.num("measures"));
    assert!(u.num("nudged") > 0);
    let mut slots = HashSet::new();
    for p in &up {
        assert!(
            slots.insert((p.measurement.clone(), p.tags.clone(), p.time_ns)),
            "two points at one series and time: {p:?}"
        );
    }
    assert!(u.warnings().iter().any(|w| w.contains("unix_nano")));
}
