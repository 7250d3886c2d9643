//! Measures: what `k6-timestream convert` says should be stored, what a
//! table holds, and their comparison.

use k6_timestream::core::report::RunReport;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub const CLI_BIN: &str = env!("CARGO_BIN_EXE_k6-timestream");

/// A stored or expected measure: (dimensions, measure name, sub-measure of
/// a MULTI record, time ns, value).
pub type M = (
    BTreeMap<String, String>,
    String,
    Option<String>,
    i64,
    String,
);

pub fn sorted(mut v: Vec<M>) -> Vec<M> {
    v.sort();
    v
}

/// The measures of one WriteRecords request (JSON): CommonAttributes merged
/// into each record, a MULTI record expanded into its measure values.
pub fn request_measures(line: &str) -> Vec<M> {
    let req: Value = serde_json::from_str(line).unwrap();
    let common = &req["CommonAttributes"];
    let dims_of = |v: &Value| -> Vec<(String, String)> {
        super::dims_of(v).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    let cdims: BTreeMap<String, String> = dims_of(common).into_iter().collect();
    let mut out = Vec::new();
    for r in req["Records"].as_array().unwrap() {
        let mut dims = cdims.clone();
        dims.extend(dims_of(r));
        let name = r["MeasureName"]
            .as_str()
            .or(common["MeasureName"].as_str())
            .unwrap()
            .to_owned();
        let t: i64 = r["Time"]
            .as_str()
            .or(common["Time"].as_str())
            .unwrap()
            .parse()
            .unwrap();
        match r["MeasureValues"].as_array() {
            Some(mv) => out.extend(mv.iter().map(|m| {
                (
                    dims.clone(),
                    name.clone(),
                    Some(m["Name"].as_str().unwrap().to_owned()),
                    t,
                    m["Value"].as_str().unwrap().to_owned(),
                )
            })),
            None => out.push((
                dims,
                name,
                None,
                t,
                r["MeasureValue"].as_str().unwrap().to_owned(),
            )),
        }
    }
    out
}

/// `k6-timestream convert ARGS FILE`: its requests expanded into sorted
/// measures, and its report.
pub fn convert(file: &Path, args: &[&str]) -> (Vec<M>, RunReport) {
    let summary = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(CLI_BIN)
        .arg("convert")
        .args(args)
        .arg("--summary-json")
        .arg(summary.path())
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "convert {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: RunReport =
        serde_json::from_str(&std::fs::read_to_string(summary.path()).unwrap()).unwrap();
    let measures = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .flat_map(request_measures)
        .collect();
    (sorted(measures), report)
}

/// Equal multisets (both sorted); otherwise a panic naming a few measures
/// only one side has.
pub fn assert_same(got: &[M], want: &[M], what: &str) {
    if got == want {
        return;
    }
    fn count(v: &[M]) -> BTreeMap<&M, i64> {
        let mut m = BTreeMap::new();
        for x in v {
            *m.entry(x).or_default() += 1;
        }
        m
    }
    let (g, w) = (count(got), count(want));
    let only = |a: &BTreeMap<&M, i64>, b: &BTreeMap<&M, i64>| -> Vec<String> {
        a.iter()
            .filter(|(k, n)| b.get(*k).copied().unwrap_or(0) < **n)
            .take(5)
            .map(|(k, n)| format!("  {n}x {k:?}"))
            .collect()
    };
    panic!(
        "{what}: {} measures stored, {} expected\nexpected, not stored:\n{}\nstored, not expected:\n{}",
        got.len(),
        want.len(),
        only(&w, &g).join("\n"),
        only(&g, &w).join("\n")
    );
}
