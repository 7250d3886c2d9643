//! `k6-timestream ingest` over real HTTP against the strict local
//! Timestream endpoint: stored measures equal the converted points, under
//! faults too; rejections end in the dead-letter file; resends are
//! idempotent; fatal errors are one clear error.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use strict_timestream::{Faults, TableConfig};
use support::fixture;
use support::measures::{assert_same, convert, CLI_BIN, M};
use support::procs::fake_aws_env;
use support::strict::Strict;

fn cmd(args: &[&str], endpoint: &str) -> Output {
    fake_aws_env(Command::new(CLI_BIN).args(args))
        .env("AWS_ENDPOINT_URL_TIMESTREAM_WRITE", endpoint)
        .output()
        .unwrap()
}

/// What `convert` says should be stored, expanded into measures.
fn expected(input: &Path, extra: &[&str]) -> Vec<M> {
    convert(input, extra).0
}

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

fn ingest(
    s: &Strict,
    table: &str,
    input: &Path,
    extra: &[&str],
    dir: &Path,
    tag: &str,
) -> (Output, Value, PathBuf) {
    let summary = dir.join(format!("{tag}.summary.json"));
    let dl = dir.join(format!("{tag}.dead-letter.jsonl"));
    let mut args = vec![
        "ingest",
        "--database",
        "k6",
        "--table",
        table,
        "--progress",
        "log",
        "--summary-json",
        summary.to_str().unwrap(),
        "--dead-letter",
        dl.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(input.to_str().unwrap());
    let out = cmd(&args, &s.h().endpoint_url());
    let r = report(&summary);
    (out, r, dl)
}

fn tables() -> Vec<TableConfig> {
    vec![
        TableConfig::new("k6", "multi").with_magnetic_writes(true),
        TableConfig::new("k6", "single").with_magnetic_writes(true),
        TableConfig::new("k6", "memoryonly"),
    ]
}

#[test]
fn fixtures_land_point_by_point_in_both_models() {
    let s = Strict::start(tables(), 7);
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "mixed.json.gz",
        "offset.json.gz",
        "offset_negative.json.gz",
        "notags.json.gz",
        "multi_member.json.gz",
        "plain.json",
    ] {
        for model in ["multi", "single"] {
            s.h().reset();
            let testid = format!("{f}-{model}");
            let conv = ["--model", model, "--testid", &testid];
            let (out, r, dl) = ingest(&s, model, &fixture(f), &conv, dir.path(), &testid);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{f} {model}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let want = expected(&fixture(f), &conv);
            assert_same(&s.stored("k6", model), &want, &format!("{f} {model}"));
            assert_eq!(
                n(&r, "points"),
                want.len() as u64
                    + r["dropped"]
                        .as_object()
                        .unwrap()
                        .values()
                        .map(|v| v.as_u64().unwrap())
                        .sum::<u64>()
            );
            assert_eq!(n(&r, "written_measures"), n(&r, "measures"));
            assert_eq!(n(&r, "dead_lettered"), 0);
            assert_eq!(n(&r, "rejected_records"), 0);
            assert!(!dl.exists(), "no dead-letter file when nothing failed");
        }
    }
    assert_eq!(s.h().stats().records_rejected, 0);
}

#[test]
fn throttling_and_server_errors_lose_nothing() {
    let s = Strict::start(tables(), 7);
    s.h().set_faults(Faults {
        throttle_rate: 0.3,
        server_error_rate: 0.1,
        reset_rate: 0.05,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let conv = ["--testid", "faulty", "--concurrency", "8"];
    let (out, r, _) = ingest(
        &s,
        "multi",
        &fixture("mixed.json.gz"),
        &conv,
        dir.path(),
        "faulty",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same(
        &s.stored("k6", "multi"),
        &expected(&fixture("mixed.json.gz"), &["--testid", "faulty"]),
        "under faults",
    );
    let st = s.h().stats();
    let injected = st.faults.throttled + st.faults.server_errors + st.faults.resets;
    assert!(injected > 0);
    assert_eq!(
        n(&r, "retries"),
        injected,
        "every injected fault cost exactly one retry"
    );
    assert_eq!(n(&r, "written_measures"), n(&r, "points"));
}

#[test]
fn rejected_records_go_to_the_dead_letter_file() {
    let s = Strict::start(tables(), 7);
    s.h().set_faults(Faults {
        reject_rate: 0.05,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (out, r, dl) = ingest(
        &s,
        "multi",
        &fixture("mixed.json.gz"),
        &["--testid", "rej"],
        dir.path(),
        "rej",
    );
    assert_eq!(out.status.code(), Some(1), "dead letters give exit code 1");
    let letters: Vec<Value> = std::fs::read_to_string(&dl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!letters.is_empty());
    assert_eq!(letters.len() as u64, n(&r, "dead_lettered"));
    assert_eq!(n(&r, "rejected_records"), n(&r, "dead_lettered"));
    assert_eq!(
        n(&r, "written_measures") + n(&r, "dead_lettered_measures"),
        n(&r, "measures")
    );
    assert_eq!(n(&r, "measures"), n(&r, "points"));
    let stored_n = s.stored("k6", "multi").len() as u64;
    assert_eq!(stored_n, n(&r, "written_measures"));
    for l in &letters {
        assert_eq!(l["kind"], "rejected");
        assert!(!l["reason"].as_str().unwrap().is_empty());
        assert!(!l["lines"].as_array().unwrap().is_empty());
        assert_eq!(l["record"]["MeasureValueType"], "MULTI");
        assert_eq!(
            l["measures"].as_u64().unwrap() as usize,
            l["record"]["MeasureValues"].as_array().unwrap().len()
        );
        assert!(l["input"].as_str().unwrap().ends_with("mixed.json.gz"));
    }
    // The stored and the dead-lettered together are exactly the input.
    let mut all = s.stored("k6", "multi");
    for l in &letters {
        let rec = &l["record"];
        let dims: BTreeMap<String, String> = rec["Dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["Name"].as_str().unwrap().to_owned(),
                    d["Value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for m in rec["MeasureValues"].as_array().unwrap() {
            all.push((
                dims.clone(),
                "k6".into(),
                Some(m["Name"].as_str().unwrap().to_owned()),
                rec["Time"].as_str().unwrap().parse().unwrap(),
                m["Value"].as_str().unwrap().to_owned(),
            ));
        }
    }
    all.sort();
    assert_same(
        &all,
        &expected(&fixture("mixed.json.gz"), &["--testid", "rej"]),
        "stored + dead-lettered",
    );
}

#[test]
fn resending_a_file_is_idempotent() {
    let s = Strict::start(tables(), 7);
    let dir = tempfile::tempdir().unwrap();
    let conv = ["--testid", "again"];
    let (o1, _, _) = ingest(
        &s,
        "multi",
        &fixture("mixed.json.gz"),
        &conv,
        dir.path(),
        "a1",
    );
    assert_eq!(o1.status.code(), Some(0));
    let before = s.h().stats();
    let (o2, r2, _) = ingest(
        &s,
        "multi",
        &fixture("mixed.json.gz"),
        &conv,
        dir.path(),
        "a2",
    );
    assert_eq!(
        o2.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o2.stderr)
    );
    let after = s.h().stats();
    assert_eq!(n(&r2, "rejected_records"), 0);
    assert_eq!(
        after.records_stored, before.records_stored,
        "nothing stored twice"
    );
    assert!(after.records_duplicate > before.records_duplicate);
    assert_same(
        &s.stored("k6", "multi"),
        &expected(&fixture("mixed.json.gz"), &conv),
        "after a resend",
    );
}

#[test]
fn missing_table_is_one_clear_fatal_error() {
    let s = Strict::start(tables(), 7);
    let dir = tempfile::tempdir().unwrap();
    let (out, r, _) = ingest(
        &s,
        "nosuchtable",
        &fixture("mixed.json.gz"),
        &[],
        dir.path(),
        "missing",
    );
    assert_eq!(out.status.code(), Some(3));
    let err = r["error"].as_str().unwrap();
    assert!(err.contains("k6.nosuchtable"), "{err}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("k6.nosuchtable"), "{stderr}");
    assert!(
        s.h().stats().write_calls <= 20,
        "stops at once instead of trying every batch"
    );
}

#[test]
fn old_records_without_magnetic_writes_are_rejected_with_the_reason() {
    let s = Strict::start(tables(), 7);
    let dir = tempfile::tempdir().unwrap();
    // Real k6 lines, moved to 2024: older than the 24 h memory store.
    let old = dir.path().join("old.json");
    let text = std::fs::read_to_string(fixture("plain.json")).unwrap();
    let moved: String = text
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if v["type"] == "Point" {
                let t = v["data"]["time"].as_str().unwrap().to_owned();
                v["data"]["time"] = Value::String(format!("2024{}", &t[4..]));
            }
            v.to_string() + "\n"
        })
        .collect();
    std::fs::write(&old, moved).unwrap();
    let (out, r, dl) = ingest(&s, "memoryonly", &old, &[], dir.path(), "mem");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(n(&r, "written_records"), 0);
    assert_eq!(n(&r, "rejected_records"), n(&r, "records"));
    let text = std::fs::read_to_string(dl).unwrap();
    assert!(text.lines().count() as u64 == n(&r, "records"));
    assert!(
        r["rejected_reasons"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.to_lowercase().contains("memory store")
                || k.to_lowercase().contains("retention")),
        "{}",
        r["rejected_reasons"]
    );
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for args in [
        vec!["ingest", "--table", "t", "x.json"],
        vec![
            "ingest",
            "--database",
            "d",
            "--table",
            "t",
            "--concurrency",
            "0",
            "x.json",
        ],
    ] {
        let out = cmd(&args, "http://127.0.0.1:9");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
