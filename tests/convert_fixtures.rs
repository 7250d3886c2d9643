//! `k6-timestream convert` on every file in `tests/fixtures/`, point by point.
//!
//! The real binary is run; its stdout (one WriteRecords request per line) is
//! expanded into measures and compared, in order, with the points an
//! independent oracle (`support`: serde_json::Value, its own RFC 3339 parser,
//! `str::parse::<f64>` on the raw number text) finds in the fixture.
//! New fixtures are picked up automatically (the directory is listed).

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_k6-timestream");
const MAX_LINE_BYTES: usize = 1 << 20; // the CLI default

/// Every JSON fixture file (README.md, other `.md` files and hidden files
/// skipped; k6 CSV files are checked against their JSON twins by
/// `tests/csv.rs`).
fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            let n = n.to_ascii_lowercase();
            !n.starts_with('.')
                && !n.ends_with(".md")
                && !n.ends_with(".csv")
                && !n.ends_with(".csv.gz")
        })
        .collect();
    v.sort();
    v
}

struct CliRun {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    summary: Option<Value>,
}

fn run_bin(args: &[String], stdin: Option<&[u8]>) -> (i32, Vec<u8>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("spawn k6-timestream");
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().unwrap();
        let data = data.to_vec();
        // A separate thread: the child's stdout must be drained meanwhile.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let out = child.wait_with_output().expect("wait for k6-timestream");
    if let Some(w) = writer {
        w.join().unwrap();
    }
    (
        out.status.code().expect("exit code (not a signal)"),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `convert OPTS --summary-json <tmp> INPUT`.
fn run_convert(opts: &[String], input: &str, stdin: Option<&[u8]>) -> CliRun {
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let mut args = vec!["convert".to_owned()];
    args.extend(opts.iter().cloned());
    args.push("--summary-json".into());
    args.push(summary_path.to_str().unwrap().into());
    args.push(input.into());
    let (code, stdout, stderr) = run_bin(&args, stdin);
    let summary = std::fs::read(&summary_path)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("summary JSON"));
    CliRun {
        code,
        stdout,
        stderr,
        summary,
    }
}

#[derive(Clone, Debug)]
enum TestIdArg {
    Derived,
    Fixed(String),
    Off,
}

#[derive(Clone, Debug)]
struct Case {
    model: &'static str,
    testid: TestIdArg,
    extra: Vec<(String, String)>,
    measure_name: Option<String>,
}

impl Case {
    fn new(model: &'static str) -> Case {
        Case {
            model,
            testid: TestIdArg::Derived,
            extra: Vec::new(),
            measure_name: None,
        }
    }
    fn multi(&self) -> bool {
        self.model == "multi"
    }
    /// The options of the case. Requests in arrival order (`--group-window
    /// 0`): the oracle matches output measures to input points in order;
    /// `grouping_only_regroups_records` shows that the default window
    /// yields the same records, only grouped differently.
    fn args(&self) -> Vec<String> {
        let mut a = vec!["--model".to_owned(), self.model.to_owned()];
        a.extend(["--group-window".to_owned(), "0".to_owned()]);
        match &self.testid {
            TestIdArg::Derived => {}
            TestIdArg::Fixed(t) => a.extend(["--testid".to_owned(), t.clone()]),
            TestIdArg::Off => a.push("--no-testid".into()),
        }
        for (k, v) in &self.extra {
            a.extend(["--dimension".to_owned(), format!("{k}={v}")]);
        }
        if let Some(m) = &self.measure_name {
            a.extend(["--measure-name".to_owned(), m.clone()]);
        }
        a
    }
    /// The testid value the oracle expects for input `input`.
    fn testid_for(&self, input: &str) -> Option<String> {
        match &self.testid {
            TestIdArg::Derived => {
                // Documented: the file name without .json/.ndjson/.gz; `-` is stdin.
                let mut base = input.rsplit('/').next().unwrap_or(input);
                if let Some(b) = base.strip_suffix(".gz") {
                    base = b;
                }
                for s in [".json", ".ndjson", ".jsonl"] {
                    if let Some(b) = base.strip_suffix(s) {
                        base = b;
                    }
                }
                Some(if base == "-" || base.is_empty() {
                    "stdin".to_owned()
                } else {
                    base.to_owned()
                })
            }
            TestIdArg::Fixed(t) => Some(t.clone()),
            TestIdArg::Off => None,
        }
    }
}

/// A measure of the output: its record and its (name, value).
struct Measure {
    rec: usize,
    name: String,
    value: String,
}

struct Parsed {
    records: Vec<OutRecord>,
    measures: Vec<Measure>,
    batches: u64,
    event_bytes: u64,
    write_bytes: u64,
}

fn parse_stdout(stdout: &[u8], case: &Case) -> Result<Parsed, String> {
    let text = std::str::from_utf8(stdout).map_err(|e| format!("stdout is not UTF-8: {e}"))?;
    let mut p = Parsed {
        records: Vec::new(),
        measures: Vec::new(),
        batches: 0,
        event_bytes: 0,
        write_bytes: 0,
    };
    let mut collisions = CollisionCheck::default();
    for (i, line) in text.lines().enumerate() {
        let req = parse_request(
            line,
            "k6",
            "results",
            case.multi(),
            !matches!(case.testid, TestIdArg::Off),
        )
        .map_err(|e| format!("request {i}: {e}"))?;
        p.batches += 1;
        p.event_bytes += req.event_bytes;
        p.write_bytes += req.event_bytes.div_ceil(1024) * 1024;
        for r in req.records {
            collisions
                .add(&r)
                .map_err(|e| format!("request {i}: {e}"))?;
            if case.multi() {
                let want = case.measure_name.as_deref().unwrap_or("k6");
                if r.measure_name != want {
                    return Err(format!(
                        "request {i}: MULTI MeasureName {:?}, want {want:?}",
                        r.measure_name
                    ));
                }
            }
            for (n, v) in &r.values {
                p.measures.push(Measure {
                    rec: p.records.len(),
                    name: n.clone(),
                    value: v.clone(),
                });
            }
            p.records.push(r);
        }
    }
    Ok(p)
}

fn num(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary.{key} is not a number: {}", summary[key]))
}

fn counts(summary: &Value, key: &str) -> BTreeMap<String, u64> {
    serde_json::from_value(summary[key].clone()).unwrap_or_else(|e| panic!("summary.{key}: {e}"))
}

/// Compares the output measures, in order, with the oracle's points.
/// `prefix`: the output may stop early (fatal input error).
fn check_points(
    out: &Parsed,
    exp: &Expected,
    summary: &Value,
    case: &Case,
    input: &str,
    prefix: bool,
) -> Vec<String> {
    let mut errors = Vec::new();
    let pts: Vec<&OraclePoint> = exp.written_points().collect();
    if (!prefix && out.measures.len() != pts.len()) || out.measures.len() > pts.len() {
        errors.push(format!(
            "{} measures in the output, {} writable points in the input",
            out.measures.len(),
            pts.len()
        ));
        return errors;
    }
    let adjusted = counts(summary, "adjusted");
    let adj = |k: &str| adjusted.get(k).copied().unwrap_or(0);
    let value_cut = adj("dimension_value_truncated") + adj("record_size_reduced") > 0;
    let omissions = adj("dimension_duplicate_omitted") + adj("dimension_limit_exceeded") > 0;
    let nudged = num(summary, "nudged");
    let testid = case.testid_for(input);
    let mut record_time: BTreeMap<usize, i128> = BTreeMap::new();
    for (m, p) in out.measures.iter().zip(&pts) {
        let rec = &out.records[m.rec];
        let at = format!("line {} ({} {})", p.line, p.metric, p.value);
        if !measure_name_ok(&m.name, &p.metric) {
            errors.push(format!("{at}: measure name {:?}", m.name));
        }
        if !same_value(&m.value, p.value) {
            errors.push(format!(
                "{at}: value {:?} is not the input value {:e} (bits {:#x})",
                m.value,
                p.value,
                p.value.to_bits()
            ));
        }
        if let Some(t) = record_time.insert(m.rec, p.time_ns) {
            if t != p.time_ns {
                errors.push(format!(
                    "{at}: one MULTI record holds points of different times"
                ));
            }
        }
        let d = rec.time - p.time_ns;
        if d != 0 && !(nudged > 0 && (1..=1000).contains(&d)) {
            errors.push(format!(
                "{at}: time {} vs input {} (nudged = {nudged})",
                rec.time, p.time_ns
            ));
        }
        let inputs = input_dims(p, testid.as_deref(), &case.extra, &exp.metric_names);
        if let Err(e) = match_dims(&rec.dims, &inputs, value_cut, omissions) {
            errors.push(format!("{at}: {e}"));
        }
        if errors.len() > 20 {
            break;
        }
    }
    let moved = record_time
        .iter()
        .filter(|(r, t)| out.records[**r].time != **t)
        .count() as u64;
    if moved > nudged {
        errors.push(format!(
            "{moved} records moved in time but the report says nudged = {nudged}"
        ));
    }
    errors
}

/// The report against the oracle and against stdout.
fn check_summary(s: &Value, exp: &Expected, out: &Parsed, complete: bool) -> Vec<String> {
    let mut errors = Vec::new();
    let mut eq = |what: &str, got: u64, want: u64| {
        if got != want {
            errors.push(format!("summary {what} = {got}, expected {want}"));
        }
    };
    let dropped: u64 = counts(s, "dropped").values().sum();
    eq("points", num(s, "points"), num(s, "measures") + dropped);
    eq(
        "measures (vs stdout)",
        num(s, "measures"),
        out.measures.len() as u64,
    );
    eq(
        "records (vs stdout)",
        num(s, "records"),
        out.records.len() as u64,
    );
    eq("batches (vs stdout)", num(s, "batches"), out.batches);
    eq(
        "estimated_event_bytes (vs stdout)",
        num(s, "estimated_event_bytes"),
        out.event_bytes,
    );
    eq(
        "estimated_write_bytes (vs stdout)",
        num(s, "estimated_write_bytes"),
        out.write_bytes,
    );
    eq(
        "collision_window_misses",
        num(s, "collision_window_misses"),
        0,
    );
    if complete {
        eq("lines", num(s, "lines"), exp.lines);
        eq("blank_lines", num(s, "blank_lines"), exp.blank_lines);
        eq(
            "metric_definitions",
            num(s, "metric_definitions"),
            exp.metric_definitions,
        );
        eq(
            "points (vs input)",
            num(s, "points"),
            exp.points.len() as u64,
        );
        for (key, want) in [
            ("skipped", &exp.skipped),
            ("ignored", &exp.ignored),
            ("dropped", &exp.dropped),
        ] {
            let got = counts(s, key);
            if &got != want {
                errors.push(format!("summary {key} = {got:?}, expected {want:?}"));
            }
        }
        if s["complete"] != Value::Bool(true) || !s["error"].is_null() {
            errors.push(format!(
                "complete = {}, error = {}",
                s["complete"], s["error"]
            ));
        }
    }
    errors
}

struct Checked {
    records: u64,
    write_bytes: u64,
    stdout: Vec<u8>,
}

/// Checks a `convert` stdout and summary against the oracle's reading of
/// the input file `path` (given to the CLI as `input`).
fn verify(path: &Path, input: &str, case: &Case, stdout: &[u8], summary: &Value) -> Vec<String> {
    let (data, err) = decompress(&std::fs::read(path).unwrap());
    if let Some(e) = err {
        return vec![format!("the oracle cannot read the fixture: {e}")];
    }
    let mut exp = Expected::from_lines(&split_lines(&data), MAX_LINE_BYTES);
    exp.apply_dimension_rule(case.testid_for(input).as_deref(), &case.extra);
    let out = match parse_stdout(stdout, case) {
        Ok(o) => o,
        Err(e) => return vec![e],
    };
    let mut errors = check_summary(summary, &exp, &out, true);
    errors.extend(check_points(&out, &exp, summary, case, input, false));
    errors
}

/// Runs the CLI on `path` (or on stdin with the file's bytes when
/// `via_stdin`) twice and checks everything; Err lists what is wrong.
fn check_conversion(path: &Path, via_stdin: bool, case: &Case) -> Result<Checked, String> {
    let bytes = std::fs::read(path).unwrap();
    let input = if via_stdin {
        "-".to_owned()
    } else {
        path.to_str().unwrap().to_owned()
    };
    let label = format!(
        "{} {:?}{}",
        path.file_name().unwrap().to_string_lossy(),
        case,
        if via_stdin { " via stdin" } else { "" }
    );
    let stdin = via_stdin.then_some(&bytes[..]);
    let run = run_convert(&case.args(), &input, stdin);
    let again = run_convert(&case.args(), &input, stdin);
    let fail = |errs: Vec<String>| Err(format!("{label}:\n  {}", errs.join("\n  ")));
    if run.code != 0 {
        return fail(vec![format!(
            "exit code {}; stderr: {}",
            run.code, run.stderr
        )]);
    }
    if run.stdout != again.stdout {
        return fail(vec!["two runs gave different stdout".into()]);
    }
    let Some(summary) = &run.summary else {
        return fail(vec!["no summary JSON".into()]);
    };
    let errors = verify(path, &input, case, &run.stdout, summary);
    if errors.is_empty() {
        Ok(Checked {
            records: num(summary, "records"),
            write_bytes: num(summary, "estimated_write_bytes"),
            stdout: run.stdout,
        })
    } else {
        fail(errors)
    }
}

fn assert_all(results: Vec<Result<Checked, String>>) -> Vec<Checked> {
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        errors.is_empty(),
        "{} failing conversion(s):\n{}",
        errors.len(),
        errors
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    results.into_iter().map(Result::unwrap).collect()
}

#[test]
fn oracle_self_test() {
    support::oracle_self_test();
}

#[test]
fn fixture_directory_is_listed() {
    let all = fixtures();
    let names: Vec<String> = all
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n == "README.md"));
    for known in [
        "mixed.json.gz",
        "plain.json",
        "multi_member.json.gz",
        "edge_cases.ndjson",
    ] {
        assert!(
            names.iter().any(|n| n == known),
            "{known} not found in {names:?}"
        );
    }
}

/// The main check: every fixture, both models, point by point.
#[test]
fn every_fixture_point_by_point_in_both_models() {
    let mut results = Vec::new();
    for path in fixtures() {
        for model in ["multi", "single"] {
            results.push(check_conversion(&path, false, &Case::new(model)));
        }
    }
    assert_all(results);
}

/// Every fixture with HTTP requests: MULTI needs fewer records and fewer
/// metered bytes than one record per point.
#[test]
fn multi_is_cheaper_than_single_where_there_are_http_requests() {
    let mut compared = 0;
    for path in fixtures() {
        let (data, _) = decompress(&std::fs::read(&path).unwrap());
        let exp = Expected::from_lines(&split_lines(&data), MAX_LINE_BYTES);
        if !exp.written_points().any(|p| p.metric == "http_reqs") {
            continue;
        }
        let r = assert_all(vec![
            check_conversion(&path, false, &Case::new("multi")),
            check_conversion(&path, false, &Case::new("single")),
        ]);
        let (multi, single) = (&r[0], &r[1]);
        assert!(
            multi.records < single.records,
            "{}: {} MULTI records vs {} single",
            path.display(),
            multi.records,
            single.records
        );
        assert!(
            multi.write_bytes < single.write_bytes,
            "{}: MULTI {} metered bytes vs single {}",
            path.display(),
            multi.write_bytes,
            single.write_bytes
        );
        compared += 1;
    }
    assert!(compared > 0, "no fixture with http_reqs points");
}

/// The default group window regroups records, nothing else: on every
/// fixture and model the requests hold exactly the records of the
/// arrival-order run (a multiset: same dimensions, measures, values and
/// times, so the collision guard nudged the same records), every request
/// obeys the WriteRecords rules, the report differs only in its request
/// count and estimate, the estimate is exactly the metered size of what
/// was printed, and it is never above arrival order's (strictly below on
/// the multi-scenario fixture).
#[test]
fn grouping_only_regroups_records() {
    let metered = |case: &Case, stdout: &[u8]| -> (Vec<String>, u64, u64) {
        let text = std::str::from_utf8(stdout).unwrap();
        let (mut recs, mut event, mut units) = (Vec::new(), 0, 0);
        for line in text.lines() {
            let req = parse_request(line, "k6", "results", case.multi(), false)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(req.records.len() <= 100);
            event += req.event_bytes;
            units += req.event_bytes.div_ceil(1024) * 1024;
            recs.extend(req.records.iter().map(|r| format!("{r:?}")));
        }
        recs.sort();
        (recs, event, units)
    };
    let mut cheaper_mixed = false;
    for path in fixtures() {
        let input = path.to_str().unwrap();
        for model in ["multi", "single"] {
            let case = Case::new(model);
            let arrival = run_convert(&case.args(), input, None);
            let mut grouped_args = case.args();
            let at = grouped_args
                .iter()
                .position(|a| a == "--group-window")
                .unwrap();
            grouped_args.drain(at..at + 2);
            let grouped = run_convert(&grouped_args, input, None);
            let label = format!("{} {model}", path.display());
            assert_eq!(arrival.code, grouped.code, "{label}: exit code");
            let (Some(sa), Some(sg)) = (&arrival.summary, &grouped.summary) else {
                panic!("{label}: no summary");
            };
            let (ra, ea, ua) = metered(&case, &arrival.stdout);
            let (rg, eg, ug) = metered(&case, &grouped.stdout);
            assert!(ra == rg, "{label}: the records differ");
            for (s, e, u) in [(sa, ea, ua), (sg, eg, ug)] {
                assert_eq!(num(s, "estimated_event_bytes"), e, "{label}: event bytes");
                assert_eq!(num(s, "estimated_write_bytes"), u, "{label}: metered bytes");
            }
            let strip = |s: &Value| {
                let mut s = s.clone();
                for k in ["batches", "estimated_event_bytes", "estimated_write_bytes"] {
                    s.as_object_mut().unwrap().remove(k);
                }
                s
            };
            assert_eq!(strip(sa), strip(sg), "{label}: the reports differ");
            assert!(
                ug <= ua,
                "{label}: grouped {ug} metered bytes > arrival {ua}"
            );
            if path.ends_with("mixed.json.gz") && ug < ua {
                cheaper_mixed = true;
            }
        }
    }
    assert!(cheaper_mixed, "grouping saved nothing on mixed.json.gz");
}

/// A gzip file cut at 60 %: exit code 3, an error naming the file and the
/// truncation, and what was written before is a correct prefix.
#[test]
fn truncated_gzip_is_fatal_after_a_correct_prefix() {
    let whole = std::fs::read(fixture("mixed.json.gz")).unwrap();
    let cut = &whole[..whole.len() * 6 / 10];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.json.gz");
    std::fs::write(&path, cut).unwrap();
    let path_s = path.to_str().unwrap();

    let (data, err) = decompress(cut);
    assert!(err.is_some(), "the oracle should see the truncation");
    // Only complete lines count.
    let complete = &data[..data.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1)];
    let exp = Expected::from_lines(&split_lines(complete), MAX_LINE_BYTES);
    assert!(exp.points.len() > 100);

    for model in ["multi", "single"] {
        let case = Case::new(model);
        let run = run_convert(&case.args(), path_s, None);
        assert_eq!(run.code, 3, "{model}: exit code; stderr: {}", run.stderr);
        let s = run
            .summary
            .expect("the summary is written on a fatal error too");
        let e = s["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{model}: summary.error is {}", s["error"]));
        assert!(
            e.contains(path_s) && e.contains("truncated"),
            "{model}: error {e:?}"
        );
        assert_eq!(s["complete"], Value::Bool(false));
        let out = parse_stdout(&run.stdout, &case).unwrap_or_else(|e| panic!("{model}: {e}"));
        assert!(
            !out.measures.is_empty(),
            "{model}: nothing was written before the error"
        );
        let mut errors = check_summary(&s, &exp, &out, false);
        errors.extend(check_points(&out, &exp, &s, &case, path_s, true));
        assert!(
            num(&s, "lines") <= exp.lines,
            "{model}: more lines than the oracle could decode"
        );
        assert!(errors.is_empty(), "{model}:\n{}", errors.join("\n"));
    }
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for (args, culprit) in [
        (vec!["convert", "--model", "triple", "x"], "triple"),
        (vec!["convert", "--dimension", "novalue", "x"], "novalue"),
        (vec!["convert"], "INPUT"),
    ] {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let (code, stdout, stderr) = run_bin(&args, None);
        assert_eq!(code, 2, "{args:?}: stderr {stderr:?}");
        assert!(
            stdout.is_empty(),
            "{args:?}: stdout {:?}",
            String::from_utf8_lossy(&stdout)
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: stderr {stderr:?}");
        // The one line must say what is wrong.
        assert!(
            lines[0].contains(culprit),
            "{args:?}: the message {:?} does not mention {culprit}",
            lines[0]
        );
    }
}

#[test]
fn help_documents_every_option() {
    let (code, stdout, _) = run_bin(&["convert".into(), "--help".into()], None);
    assert_eq!(code, 0);
    let help = String::from_utf8(stdout).unwrap();
    for opt in [
        "--model",
        "--database",
        "--table",
        "--testid",
        "--no-testid",
        "--dimension",
        "--summary-json",
        "--measure-name",
        "--max-line-bytes",
        "--max-decompressed-bytes",
        "--collision-window-secs",
    ] {
        let line = help
            .lines()
            .find(|l| {
                l.trim_start().starts_with(opt)
                    && l[l.find(opt).unwrap() + opt.len()..].starts_with([' ', '\t'])
            })
            .unwrap_or_else(|| panic!("{opt} is not documented in:\n{help}"));
        // An option line has a description after the name.
        assert!(
            line.split_whitespace().count() > 2,
            "{opt} has no description: {line:?}"
        );
    }
}

#[test]
fn stdin_input() {
    // Same requests from a path and from stdin (testid fixed: it is derived
    // from the name otherwise).
    let plain = fixture("plain.json");
    let mut case = Case::new("multi");
    case.testid = TestIdArg::Fixed("plain".into());
    let a = run_convert(&case.args(), plain.to_str().unwrap(), None);
    let b = run_convert(&case.args(), "-", Some(&std::fs::read(&plain).unwrap()));
    assert_eq!((a.code, b.code), (0, 0), "{}", b.stderr);
    assert!(!a.stdout.is_empty());
    assert!(
        a.stdout == b.stdout,
        "stdin and path inputs give different requests"
    );
    // Point by point through stdin, plain and gzip; the derived testid is `stdin`.
    assert_all(vec![
        check_conversion(&plain, true, &Case::new("single")),
        check_conversion(&fixture("offset.json.gz"), true, &Case::new("multi")),
        check_conversion(&fixture("multi_member.json.gz"), true, &Case::new("single")),
    ]);
}

fn merged_records(stdout: &[u8], case: &Case) -> Vec<OutRecord> {
    parse_stdout(stdout, case).unwrap().records
}

fn dim<'a>(r: &'a OutRecord, name: &str) -> Option<&'a str> {
    r.dims
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn testid_option_and_no_testid() {
    for model in ["multi", "single"] {
        let mut fixed = Case::new(model);
        fixed.testid = TestIdArg::Fixed("run-42".into());
        let mut off = Case::new(model);
        off.testid = TestIdArg::Off;
        let r = assert_all(vec![
            check_conversion(&fixture("plain.json"), false, &fixed),
            check_conversion(&fixture("mixed.json.gz"), false, &fixed),
            check_conversion(&fixture("plain.json"), false, &off),
            check_conversion(&fixture("mixed.json.gz"), false, &off),
        ]);
        // plain.json has no testid tag: --testid everywhere, --no-testid nowhere.
        assert!(merged_records(&r[0].stdout, &fixed)
            .iter()
            .all(|x| dim(x, "testid") == Some("run-42")));
        assert!(merged_records(&r[2].stdout, &off)
            .iter()
            .all(|x| dim(x, "testid").is_none()));
        // mixed.json.gz tags every point testid=fixture-mixed: the point's own wins.
        assert!(merged_records(&r[1].stdout, &fixed)
            .iter()
            .all(|x| dim(x, "testid") == Some("fixture-mixed")));
        assert!(merged_records(&r[3].stdout, &off)
            .iter()
            .all(|x| dim(x, "testid") == Some("fixture-mixed")));
    }
}

#[test]
fn extra_dimension_unless_the_point_has_that_tag() {
    for model in ["multi", "single"] {
        let mut case = Case::new(model);
        case.extra = vec![
            ("env".into(), "ci".into()),
            ("scenario".into(), "ci".into()),
        ];
        let r = assert_all(vec![
            check_conversion(&fixture("mixed.json.gz"), false, &case),
            check_conversion(&fixture("plain.json"), false, &case),
        ]);
        for c in &r {
            let recs = merged_records(&c.stdout, &case);
            assert!(
                recs.iter().all(|x| dim(x, "env") == Some("ci")),
                "{model}: a record without env=ci"
            );
            // `scenario` is a tag of most points (theirs wins), not of vus/vus_max.
            let ci = recs
                .iter()
                .filter(|x| dim(x, "scenario") == Some("ci"))
                .count();
            assert!(
                ci > 0 && ci < recs.len(),
                "{model}: {ci} of {} records have scenario=ci",
                recs.len()
            );
        }
    }
}

#[test]
fn measure_name_option() {
    let mut case = Case::new("multi");
    case.measure_name = Some("k6_multi".into());
    assert_all(vec![check_conversion(
        &fixture("offset_negative.json.gz"),
        false,
        &case,
    )]);
}

/// The checks are not vacuous: small corruptions of a real `convert`
/// output (each a plausible converter bug) are all reported.
#[test]
fn the_checker_rejects_corrupted_output() {
    let path = fixture("mixed.json.gz");
    let input = path.to_str().unwrap();
    for model in ["multi", "single"] {
        let case = Case::new(model);
        let run = run_convert(&case.args(), input, None);
        assert_eq!(run.code, 0);
        let summary = run.summary.unwrap();
        let text = String::from_utf8(run.stdout).unwrap();
        let clean = verify(&path, input, &case, text.as_bytes(), &summary);
        assert!(clean.is_empty(), "{model}: {clean:?}");
        let reqs: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let value_key = if case.multi() {
            "MeasureValues"
        } else {
            "MeasureValue"
        };
        type Mutation = Box<dyn Fn(&mut Vec<Value>)>;
        let last_bit = |v: &mut Value| {
            let x: f64 = v.as_str().unwrap().parse().unwrap();
            *v = Value::String(format!("{}", f64::from_bits(x.to_bits() + 1)));
        };
        let mutations: Vec<(&str, Mutation)> = vec![
            (
                "a value off by one ulp",
                Box::new(move |r| {
                    let rec = &mut r[1]["Records"][7];
                    if value_key == "MeasureValue" {
                        last_bit(&mut rec["MeasureValue"])
                    } else {
                        last_bit(&mut rec["MeasureValues"][0]["Value"])
                    }
                }),
            ),
            (
                "a time +1 ns",
                Box::new(|r| {
                    let t: i128 = r[2]["Records"][3]["Time"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    r[2]["Records"][3]["Time"] = Value::String((t + 1).to_string());
                }),
            ),
            (
                "a record lost",
                Box::new(|r| {
                    r[0]["Records"].as_array_mut().unwrap().remove(5);
                }),
            ),
            (
                "two records swapped",
                Box::new(|r| {
                    r[0]["Records"].as_array_mut().unwrap().swap(10, 11);
                }),
            ),
            (
                "a dimension value changed",
                Box::new(|r| {
                    let recs = r[3]["Records"].as_array_mut().unwrap();
                    let rec = recs
                        .iter_mut()
                        .find(|x| x.get("Dimensions").is_some())
                        .unwrap();
                    rec["Dimensions"][0]["Value"] = Value::String("changed".into());
                }),
            ),
            (
                "a dimension dropped",
                Box::new(|r| {
                    let recs = r[3]["Records"].as_array_mut().unwrap();
                    let rec = recs
                        .iter_mut()
                        .find(|x| x.get("Dimensions").is_some())
                        .unwrap();
                    rec["Dimensions"].as_array_mut().unwrap().remove(0);
                }),
            ),
            (
                "a reserved dimension name",
                Box::new(|r| {
                    r[0]["Records"][0]["Dimensions"] = serde_json::json!([{"Name": "ts_x", "Value": "1", "DimensionValueType": "VARCHAR"}]);
                }),
            ),
            (
                "a record over 2 KiB",
                Box::new(|r| {
                    r[0]["Records"][0]["Dimensions"] = serde_json::json!([{"Name": "big", "Value": "x".repeat(2048), "DimensionValueType": "VARCHAR"}]);
                }),
            ),
            (
                "a testid overlapping CommonAttributes",
                Box::new(|r| {
                    let common: Vec<Value> = r[1]["CommonAttributes"]["Dimensions"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    r[1]["Records"][0]["Dimensions"] = Value::Array(common);
                }),
            ),
            (
                "a conflicting duplicate",
                Box::new(move |r| {
                    let mut dup = r[0]["Records"][0].clone();
                    if value_key == "MeasureValue" {
                        last_bit(&mut dup["MeasureValue"])
                    } else {
                        last_bit(&mut dup["MeasureValues"][0]["Value"])
                    }
                    r[0]["Records"].as_array_mut().unwrap().push(dup);
                }),
            ),
            (
                "a request lost",
                Box::new(|r| {
                    r.remove(1);
                }),
            ),
        ];
        for (what, mutate) in mutations {
            let mut bad = reqs.clone();
            mutate(&mut bad);
            let stdout: String = bad.iter().map(|v| format!("{v}\n")).collect();
            let errors = verify(&path, input, &case, stdout.as_bytes(), &summary);
            assert!(!errors.is_empty(), "{model}: {what} was not noticed");
        }
    }
}
