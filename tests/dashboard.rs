//! Anti-drift test between the Grafana dashboard (`infra/grafana/dashboard.json`)
//! and what the converter really writes to Timestream.
//!
//! The CLI converts a real k6 run (`tests/fixtures/mixed.json.gz`) with
//! `k6-timestream convert --model multi`, which prints one WriteRecords request
//! per line. From those requests we collect every measure name (the MULTI
//! measure values' names), every dimension name (records' and
//! CommonAttributes') and every MeasureName (`measure_name` column values).
//!
//! Then the SQL of every panel target (`rawQuery`) and of every query variable
//! is tokenized (a small lexer, below) and every identifier that is not
//!
//! * an SQL keyword or type name ([`KEYWORDS`]),
//! * the name of a function call ([`FUNCTIONS`], only when followed by `(`),
//! * a Grafana macro or variable (`$__timeFilter`, `${testid:sqlstring}`),
//! * an alias ([`ALIASES`]) that the same query declares with `AS`,
//!
//! must be a produced measure name, a produced dimension name, `time` or
//! `measure_name`. Unknown function names, undeclared aliases and aliases that
//! are not in [`ALIASES`] are errors too, so the allow-lists cannot silently
//! swallow a misspelled column. A string literal compared with `measure_name`
//! must be a produced MeasureName.
//!
//! There is deliberately no machine-readable list of columns in the dashboard:
//! the SQL itself is checked.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use support::root;

/// SQL keywords and type names (compared case-insensitively). A column whose
/// name is one of these must be written as a quoted identifier (`"group"`),
/// which Timestream requires anyway; quoted identifiers are never keywords.
#[rustfmt::skip]
const KEYWORDS: &[&str] = &[
    "select", "distinct", "all", "from", "where", "and", "or", "not", "as", "group",
    "by", "order", "asc", "desc", "nulls", "first", "last", "limit", "having", "is",
    "null", "in", "between", "like", "escape", "case", "when", "then", "else", "end",
    "cast", "try_cast", "with", "over", "partition", "rows", "range", "unbounded", "preceding", "following",
    "current", "row", "join", "inner", "left", "right", "full", "outer", "cross", "on",
    "union", "intersect", "except", "exists", "true", "false", "interval",
    // types (CAST(x AS DOUBLE), measure_value::double)
    "double", "bigint", "integer", "int", "varchar", "boolean", "timestamp", "date",
];

/// Functions the dashboard may call (Timestream SQL). Only a word directly
/// followed by `(` is a function call.
#[rustfmt::skip]
const FUNCTIONS: &[&str] = &[
    "bin", "approx_percentile", "avg", "sum", "count", "min", "max", "round",
    "coalesce", "if", "greatest", "least", "to_milliseconds", "from_milliseconds", "ago", "now",
    "date_diff", "stddev", "abs",
];

/// Column aliases the dashboard declares (`... AS alias`). An alias may only be
/// referenced (e.g. in ORDER BY) by the query that declares it.
#[rustfmt::skip]
const ALIASES: &[&str] = &[
    "t", "requests", "failure_rate", "p50", "p90", "p95",
    "p99", "p95_ms", "pass_rate", "peak_vus", "requests_per_second", "failed_requests_per_second",
    "sent_bytes_per_second", "received_bytes_per_second", "iterations_per_second", "blocked", "connecting", "tls_handshaking",
    "sending", "waiting", "receiving", "evaluations", "passes", "fails",
];

/// Columns every Timestream table has.
const BUILTIN_COLUMNS: &[&str] = &["time", "measure_name"];

// ---------------------------------------------------------------------------
// What the converter produces
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct Produced {
    measures: BTreeSet<String>,
    dimensions: BTreeSet<String>,
    measure_names: BTreeSet<String>,
    records: usize,
}

fn names_of(dims: Option<&Value>, into: &mut BTreeSet<String>) {
    if let Some(dims) = dims {
        for d in dims.as_array().expect("Dimensions is an array") {
            let name = d["Name"].as_str().expect("Dimension.Name is a string");
            assert!(d["Value"].is_string(), "Dimension.Value is a string: {d}");
            into.insert(name.to_owned());
        }
    }
}

fn produced() -> &'static Produced {
    static PRODUCED: OnceLock<Produced> = OnceLock::new();
    PRODUCED.get_or_init(|| {
        let fixture = Path::new("tests/fixtures/mixed.json.gz");
        assert!(
            root().join(fixture).is_file(),
            "the k6 fixture {} is missing",
            fixture.display()
        );
        let out = Command::new(env!("CARGO_BIN_EXE_k6-timestream"))
            .current_dir(root())
            .args(["convert", "--model", "multi"])
            .arg(fixture)
            .output()
            .expect("run k6-timestream convert");
        assert!(
            out.status.success(),
            "k6-timestream convert failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("convert prints UTF-8");
        let mut p = Produced::default();
        for (n, line) in stdout.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let req: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line {} is not JSON ({e}): {line}", n + 1));
            assert!(
                req["DatabaseName"].is_string() && req["TableName"].is_string(),
                "line {}",
                n + 1
            );
            let common = req.get("CommonAttributes");
            let common_type = common
                .and_then(|c| c.get("MeasureValueType"))
                .and_then(Value::as_str);
            if let Some(c) = common {
                names_of(c.get("Dimensions"), &mut p.dimensions);
                if let Some(m) = c.get("MeasureName").and_then(Value::as_str) {
                    p.measure_names.insert(m.to_owned());
                }
            }
            let records = req["Records"].as_array().expect("Records is an array");
            assert!(
                !records.is_empty() && records.len() <= 100,
                "1..=100 records per request"
            );
            for r in records {
                p.records += 1;
                names_of(r.get("Dimensions"), &mut p.dimensions);
                if let Some(m) = r.get("MeasureName").and_then(Value::as_str) {
                    p.measure_names.insert(m.to_owned());
                }
                let ty = r
                    .get("MeasureValueType")
                    .and_then(Value::as_str)
                    .or(common_type);
                assert_eq!(ty, Some("MULTI"), "model multi writes MULTI records: {r}");
                for mv in r["MeasureValues"]
                    .as_array()
                    .expect("MULTI record has MeasureValues")
                {
                    p.measures
                        .insert(mv["Name"].as_str().expect("MeasureValue.Name").to_owned());
                    assert_eq!(mv["Type"], "DOUBLE", "k6 samples are DOUBLE: {mv}");
                }
            }
        }
        assert!(p.records > 0, "convert printed no records");
        p
    })
}

// ---------------------------------------------------------------------------
// SQL lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Unquoted word (keyword, function or identifier), as written.
    Word(String),
    /// "quoted identifier", unescaped.
    Quoted(String),
    /// 'string literal', unescaped.
    Str(String),
    /// Number or Timestream duration literal (`0.95`, `1s`, `100ms`).
    Num,
    /// `$__macro`, `$var`, `${var}`, `${var:format}`.
    Grafana(String),
    /// Any other character (or `::`).
    Punct(String),
}

fn lex(sql: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let rest: String = chars[i + 2..].iter().collect();
            let end = rest.find("*/").ok_or("unterminated /* comment")?;
            i += 2 + rest[..end].chars().count() + 2;
        } else if c == '\'' || c == '"' {
            // 'it''s' and "a""b": a doubled quote is an escaped quote.
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated {c}...{c} in: {sql}")),
                    Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                        s.push(c);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&o) => {
                        s.push(o);
                        i += 1;
                    }
                }
            }
            toks.push(if c == '"' {
                Tok::Quoted(s)
            } else {
                Tok::Str(s)
            });
        } else if c == '$' {
            let start = i;
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                if i == chars.len() {
                    return Err(format!("unterminated ${{ in: {sql}"));
                }
                i += 1;
            } else {
                while i < chars.len() && is_word(chars[i]) {
                    i += 1;
                }
            }
            toks.push(Tok::Grafana(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (is_word(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            toks.push(Tok::Num);
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            toks.push(Tok::Word(chars[start..i].iter().collect()));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            toks.push(Tok::Punct("::".into()));
            i += 2;
        } else if c.is_ascii() {
            toks.push(Tok::Punct(c.to_string()));
            i += 1;
        } else {
            return Err(format!(
                "unexpected character {c:?} outside quotes in: {sql}"
            ));
        }
    }
    Ok(toks)
}

/// The identifiers a query uses as columns (measures, dimensions, builtins),
/// or the list of problems found.
fn columns_of(sql: &str, produced: &Produced) -> Result<BTreeSet<String>, Vec<String>> {
    let toks = lex(sql).map_err(|e| vec![e])?;
    let kw = |w: &str| KEYWORDS.contains(&w.to_ascii_lowercase().as_str());
    let after_as = |i: usize| {
        i > 0 && matches!(&toks[i - 1], Tok::Word(w) if w.eq_ignore_ascii_case("as"))
        // `CAST(x AS DOUBLE)` is a type, caught by `kw` before this is asked.
    };
    let known_column = |name: &str| {
        produced.measures.contains(name)
            || produced.dimensions.contains(name)
            || BUILTIN_COLUMNS.contains(&name)
    };

    // Aliases declared in this query.
    let mut declared = BTreeSet::new();
    let mut errors = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let name = match t {
            Tok::Word(w) if !kw(w) => w.to_ascii_lowercase(),
            Tok::Quoted(q) => q.clone(),
            _ => continue,
        };
        if after_as(i) {
            if ALIASES.contains(&name.as_str()) || known_column(&name) {
                declared.insert(name);
            } else {
                errors.push(format!("alias {name:?} is not in the ALIASES allow-list"));
            }
        }
    }

    let mut used = BTreeSet::new();
    for (i, t) in toks.iter().enumerate() {
        let next_is_paren = matches!(toks.get(i + 1), Some(Tok::Punct(p)) if p == "(");
        let (name, quoted) = match t {
            Tok::Word(w) if kw(w) => continue,
            Tok::Word(w) => (w.to_ascii_lowercase(), false),
            Tok::Quoted(q) => (q.clone(), true),
            _ => continue,
        };
        if after_as(i) {
            continue; // an alias declaration, checked above
        }
        if !quoted && next_is_paren {
            if !FUNCTIONS.contains(&name.as_str()) {
                errors.push(format!("unknown function {name}()"));
            }
            continue;
        }
        if matches!(toks.get(i + 1), Some(Tok::Punct(p)) if p == ".")
            || (i > 0 && matches!(&toks[i - 1], Tok::Punct(p) if p == "."))
        {
            errors.push(format!(
                "qualified name around {name:?}: only $__database.$__table is expected"
            ));
            continue;
        }
        if known_column(&name) {
            used.insert(name);
        } else if ALIASES.contains(&name.as_str()) {
            if !declared.contains(&name) {
                errors.push(format!(
                    "alias {name:?} is used but not declared with AS in this query"
                ));
            }
        } else {
            errors.push(format!(
                "{name:?} is neither a measure nor a dimension that the converter produces"
            ));
        }
    }

    // measure_name = 'literal' / 'literal' = measure_name / measure_name IN ('a', 'b')
    for (i, t) in toks.iter().enumerate() {
        let is_mn = |t: &Tok| {
            matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case("measure_name"))
                || matches!(t, Tok::Quoted(q) if q == "measure_name")
        };
        if !is_mn(t) {
            continue;
        }
        let mut literals = Vec::new();
        match (toks.get(i + 1), toks.get(i + 2)) {
            (Some(Tok::Punct(eq)), Some(Tok::Str(s))) if eq == "=" => literals.push(s.clone()),
            (Some(Tok::Word(w)), Some(Tok::Punct(p)))
                if w.eq_ignore_ascii_case("in") && p == "(" =>
            {
                for t in &toks[i + 3..] {
                    match t {
                        Tok::Str(s) => literals.push(s.clone()),
                        Tok::Punct(p) if p == ")" => break,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if i >= 2 {
            if let (Tok::Str(s), Tok::Punct(eq)) = (&toks[i - 2], &toks[i - 1]) {
                if eq == "=" {
                    literals.push(s.clone());
                }
            }
        }
        for lit in literals {
            if !produced.measure_names.contains(&lit) {
                errors.push(format!(
                    "measure_name is compared with {lit:?}, which is not a produced MeasureName"
                ));
            }
        }
    }

    if errors.is_empty() {
        Ok(used)
    } else {
        Err(errors)
    }
}

// ---------------------------------------------------------------------------
// Dashboard
// ---------------------------------------------------------------------------

fn dashboard() -> Value {
    let path = root().join("infra/grafana/dashboard.json");
    let text = std::fs::read_to_string(&path).expect("read infra/grafana/dashboard.json");
    serde_json::from_str(&text).expect("dashboard.json is JSON")
}

fn collect_panels<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
    for p in panels.as_array().into_iter().flatten() {
        out.push(p);
        if let Some(inner) = p.get("panels") {
            collect_panels(inner, out); // collapsed rows
        }
    }
}

/// (where, SQL) of every query of the dashboard.
fn queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut panels = Vec::new();
    collect_panels(&dash["panels"], &mut panels);
    for p in panels {
        for t in p
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(q) = t.get("rawQuery").and_then(Value::as_str) {
                out.push((
                    format!("panel {} {:?} target {}", p["id"], p["title"], t["refId"]),
                    q.to_owned(),
                ));
            }
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let q = match &v["query"] {
            Value::String(s) => s.clone(),
            other => other["rawQuery"].as_str().unwrap_or_default().to_owned(),
        };
        out.push((format!("variable {}", v["name"]), q));
    }
    out
}

fn check_dashboard(dash: &Value, produced: &Produced) -> Result<BTreeSet<String>, Vec<String>> {
    let mut used = BTreeSet::new();
    let mut errors = Vec::new();
    let qs = queries(dash);
    if qs.is_empty() {
        errors.push("the dashboard has no queries".to_owned());
    }
    for (at, sql) in qs {
        if sql.trim().is_empty() {
            errors.push(format!("{at}: empty query"));
            continue;
        }
        match columns_of(&sql, produced) {
            Ok(cols) => used.extend(cols),
            Err(es) => errors.extend(es.into_iter().map(|e| format!("{at}: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(used)
    } else {
        Err(errors)
    }
}

#[test]
fn dashboard_queries_use_only_columns_the_converter_produces() {
    let produced = produced();
    // Sanity: the fixture is a real k6 run and the converter names things as k6 does.
    for m in ["http_reqs", "http_req_duration", "vus", "checks"] {
        assert!(
            produced.measures.contains(m),
            "converter did not produce measure {m}: {:?}",
            produced.measures
        );
    }
    assert!(
        produced.dimensions.contains("testid"),
        "no testid dimension: {:?}",
        produced.dimensions
    );

    let dash = dashboard();
    let used = check_dashboard(&dash, produced).unwrap_or_else(|errors| {
        panic!(
            "the dashboard drifted from the converter output:\n  {}\nproduced measures: {:?}\nproduced dimensions: {:?}\nproduced MeasureNames: {:?}",
            errors.join("\n  "),
            produced.measures,
            produced.dimensions,
            produced.measure_names
        )
    });

    // The checker must actually have seen the columns the panels are about,
    // otherwise it would be vacuous.
    for expected in [
        "time",
        "measure_name",
        "testid",
        "vus",
        "vus_max",
        "http_reqs",
        "http_req_failed",
        "data_sent",
        "data_received",
        "http_req_duration",
        "http_req_blocked",
        "http_req_connecting",
        "http_req_tls_handshaking",
        "http_req_sending",
        "http_req_waiting",
        "http_req_receiving",
        "checks",
        "check",
        "name",
        "method",
        "status",
    ] {
        assert!(
            used.contains(expected),
            "no dashboard query uses {expected}; used: {used:?}"
        );
    }
}

#[test]
fn a_misspelled_or_renamed_column_fails_the_check() {
    let produced = produced();
    let text = std::fs::read_to_string(root().join("infra/grafana/dashboard.json")).unwrap();
    let mutations = [
        (
            "approx_percentile(http_req_duration,",
            "approx_percentile(http_req_durations,",
            "http_req_durations",
        ),
        ("sum(http_reqs)", "sum(http_req)", "http_req"),
        ("\\\"method\\\"", "\\\"verb\\\"", "verb"),
        (
            "SELECT DISTINCT testid",
            "SELECT DISTINCT test_id",
            "test_id",
        ),
        (
            "measure_name = 'k6'",
            "measure_name = 'k6_multi'",
            "k6_multi",
        ),
        (
            "max(vus) AS vus",
            "max(vus) AS virtual_users",
            "virtual_users",
        ),
        ("ORDER BY t ASC", "ORDER BY tt ASC", "tt"),
        ("approx_percentile(", "percentile(", "percentile"),
    ];
    for (from, to, culprit) in mutations {
        assert!(
            text.contains(from),
            "mutation anchor {from:?} not found in dashboard.json"
        );
        let mutated: Value = serde_json::from_str(&text.replacen(from, to, 1)).unwrap();
        match check_dashboard(&mutated, produced) {
            Ok(_) => panic!("replacing {from:?} with {to:?} was not detected"),
            Err(errors) => assert!(
                errors.iter().any(|e| e.contains(culprit)),
                "replacing {from:?} with {to:?}: errors do not name {culprit:?}: {errors:?}"
            ),
        }
    }
}

/// The lexer and checker on their own (no fixture needed).
#[test]
fn sql_checker_rules() {
    let produced = Produced {
        measures: ["http_reqs", "http_req_duration", "checks"]
            .map(String::from)
            .into(),
        dimensions: ["testid", "group", "name", "check"]
            .map(String::from)
            .into(),
        measure_names: ["k6".to_owned()].into(),
        records: 1,
    };
    let ok = r#"
        -- comment with http_req_durations in it
        SELECT bin(time, $__interval_ms) AS t, /* block comment: foo */
          approx_percentile(http_req_duration, 0.95) AS p95,
          sum(http_reqs) * 1000.0 / to_milliseconds($__interval_ms) AS requests_per_second,
          CAST(count(checks) AS DOUBLE) AS evaluations,
          "group", "name", "check"
        FROM $__database.$__table
        WHERE $__timeFilter AND measure_name = 'k6' AND testid IN (${testid:sqlstring})
          AND "name" <> 'it''s "quoted" no_such_column' AND time > ago(15m)
        GROUP BY bin(time, $__interval_ms), "group", "name", "check"
        ORDER BY t ASC, p95 DESC"#;
    let used = columns_of(ok, &produced).unwrap_or_else(|e| panic!("{e:?}"));
    let expected: BTreeSet<String> = [
        "time",
        "http_req_duration",
        "http_reqs",
        "checks",
        "group",
        "name",
        "check",
        "measure_name",
        "testid",
    ]
    .map(String::from)
    .into();
    assert_eq!(used, expected);

    let bad = |sql: &str, culprit: &str| {
        let errors = columns_of(sql, &produced).expect_err(sql);
        assert!(
            errors.iter().any(|e| e.contains(culprit)),
            "{sql}: {errors:?} should name {culprit}"
        );
    };
    bad(
        "SELECT avg(http_req_durations) FROM $__database.$__table",
        "http_req_durations",
    );
    bad(
        "SELECT avg(\"http_req_durations\") FROM $__database.$__table",
        "http_req_durations",
    );
    bad("SELECT avg(http_req_duration) AS p95 FROM x", "x"); // unknown table name is a column-ish word
    bad(
        "SELECT median(http_req_duration) FROM $__database.$__table",
        "median",
    );
    bad(
        "SELECT http_reqs FROM $__database.$__table ORDER BY p95",
        "p95",
    ); // alias never declared
    bad(
        "SELECT http_reqs AS total FROM $__database.$__table",
        "total",
    ); // alias not in the list
    bad(
        "SELECT http_reqs FROM $__database.$__table WHERE measure_name = 'http'",
        "http",
    );
    bad(
        "SELECT http_reqs FROM $__database.$__table WHERE measure_name IN ('k6', 'nope')",
        "nope",
    );
    bad("SELECT r.http_reqs FROM $__database.$__table r", "r");
    bad("SELECT 'unterminated FROM x", "unterminated");
    bad(
        "SELECT avg(http_req_duration) FROM $__database.$__table WHERE page = 'x'",
        "page",
    );
}
