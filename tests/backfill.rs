//! `ingest` over many objects: an S3 prefix on moto (≥ 50 objects, paged
//! listing) into the strict Timestream endpoint, killed mid-run and resumed
//! with `--state`; several local files and globs in one call.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use strict_timestream::{Faults, TableConfig};
use support::fixture;
use support::measures::{assert_same, convert, sorted, CLI_BIN, M};
use support::moto::Moto;
use support::procs::fake_aws_env;
use support::strict::Strict;

/// The CLI with the fake AWS environment, Timestream at `timestream`, S3 at
/// `s3`.
fn cli(timestream: &str, s3: Option<&str>) -> Command {
    let mut c = Command::new(CLI_BIN);
    fake_aws_env(&mut c)
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ENDPOINT_URL_TIMESTREAM_WRITE", timestream);
    if let Some(u) = s3 {
        c.env("AWS_ENDPOINT_URL_S3", u);
    }
    c
}

/// `ingest` into `k6.files` on `strict`, its report to `summary`; the
/// inputs are the caller's.
fn ingest_files(strict: &Strict, summary: &Path) -> Command {
    let mut c = cli(&strict.h().endpoint_url(), None);
    c.args([
        "ingest",
        "--database",
        "k6",
        "--table",
        "files",
        "--progress",
        "none",
    ])
    .arg("--summary-json")
    .arg(summary);
    c
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A strict endpoint with one table (magnetic writes on: the fixtures are
/// old) and `faults`.
fn strict(table: &str, faults: Faults) -> Strict {
    let s = Strict::start(
        vec![TableConfig::new("k6", table).with_magnetic_writes(true)],
        7,
    );
    s.h().set_faults(faults);
    s
}

/// Fixtures without a `testid` tag of their own: each copy gets the testid
/// of its name, so the copies are distinct series.
const SOURCES: [&str; 5] = [
    "plain.json",
    "offset.json.gz",
    "notags.json.gz",
    "multi_member.json.gz",
    "offset_negative.json.gz",
];

/// `n` copies named `obj-NN.<ext>` under `dir`: (local path, file name).
fn copies(dir: &Path, n: usize) -> Vec<(PathBuf, String)> {
    (0..n)
        .map(|i| {
            let src = SOURCES[i % SOURCES.len()];
            let ext = if src.ends_with(".gz") {
                "json.gz"
            } else {
                "json"
            };
            let name = format!("obj-{i:02}.{ext}");
            let p = dir.join(&name);
            std::fs::copy(fixture(src), &p).unwrap();
            (p, name)
        })
        .collect()
}

/// The union of what `convert` makes of each file, each measure once.
fn expected_all(files: &[PathBuf]) -> Vec<M> {
    let mut all = sorted(files.iter().flat_map(|f| convert(f, &[]).0).collect());
    all.dedup();
    all
}

fn state_lines(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|t| t.lines().filter(|l| l.ends_with('}')).count())
        .unwrap_or(0)
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

#[test]
fn prefix_backfill_killed_and_resumed_stores_every_point_once() {
    const OBJECTS: usize = 56;
    let moto = Moto::start();
    // 40 ms a call: slow enough that the kill lands mid-run.
    let strict = strict(
        "bf",
        Faults {
            latency_ms: 40,
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let files = copies(dir.path(), OBJECTS);
    strict.rt().block_on(async {
        let s3 = moto.s3_client();
        s3.create_bucket().bucket("results").send().await.unwrap();
        let put = |key: String, body: Vec<u8>| {
            let s3 = s3.clone();
            async move {
                s3.put_object()
                    .bucket("results")
                    .key(key)
                    .body(body.into())
                    .send()
                    .await
                    .unwrap();
            }
        };
        for (p, name) in &files {
            put(format!("runs/{name}"), std::fs::read(p).unwrap()).await;
        }
        // Not k6 results, or not under the prefix: left alone.
        put("runs/notes.txt".into(), b"hello".to_vec()).await;
        // (k6 CSV results are taken: a .csv key is one.)
        put("runs/obj-99.csv.bak".into(), b"a,b\n".to_vec()).await;
        put(
            "other/obj-98.json".into(),
            std::fs::read(fixture("plain.json")).unwrap(),
        )
        .await;
    });

    let state = dir.path().join("state.jsonl");
    let summary = dir.path().join("summary.json");
    let dl = dir.path().join("dl.jsonl");
    let run = || {
        let mut c = cli(&strict.h().endpoint_url(), Some(&moto.url()));
        c.args([
            "ingest",
            "--database",
            "k6",
            "--table",
            "bf",
            "--progress",
            "log",
            "--objects-in-flight",
            "4",
            "--concurrency",
            "4",
            // Pages of 9 keys: the listing takes several pages.
            "--list-page-size",
            "9",
        ])
        .arg("--state")
        .arg(&state)
        .arg("--summary-json")
        .arg(&summary)
        .arg("--dead-letter")
        .arg(&dl)
        .arg("s3://results/runs/")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        c
    };

    // First run: SIGKILL once some objects are done.
    let started = Instant::now();
    let mut child = run().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while state_lines(&state) < 12 {
        assert!(Instant::now() < deadline, "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done_first = state_lines(&state);
    assert!(
        (12..OBJECTS).contains(&done_first),
        "killed mid-run: {done_first} of {OBJECTS} done"
    );
    let after_kill = strict.h().stats();
    assert!(!summary.exists(), "a killed run writes no summary");

    // Second run: the same command resumes.
    let out: Output = run().output().unwrap();
    let secs = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = read_json(&summary);
    let objects = s["objects"].as_array().unwrap();
    assert_eq!(
        objects.len(),
        OBJECTS,
        "only the k6 results under the prefix"
    );
    let earlier = objects.iter().filter(|o| o["earlier"] == true).count();
    assert_eq!(
        earlier, done_first,
        "what the first run finished is skipped"
    );
    for (o, (_, name)) in objects.iter().zip(&files) {
        assert_eq!(
            o["input"],
            format!("s3://results/runs/{name}"),
            "in key order"
        );
        assert_eq!(o["outcome"], "ok", "{o}");
        assert_eq!(o["points"], o["written_measures"], "{o}");
        if o["earlier"] == false {
            let r = &o["report"];
            assert_eq!(n(r, "rejected_records"), 0, "{r}");
            assert!(r["gzip"].as_bool().unwrap() == o["input"].as_str().unwrap().ends_with(".gz"));
        }
    }
    // The table: one row per object and a total.
    assert!(
        stderr.contains(&format!("total ({OBJECTS} objects)")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("ok {OBJECTS}")), "{stderr}");
    assert_eq!(
        state_lines(&state),
        OBJECTS,
        "each object once in the state file"
    );

    // Every point stored once, nothing rejected, no dead letters.
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let want = expected_all(&paths);
    assert_same(&strict.stored("k6", "bf"), &want, "after kill and resume");
    let st = strict.h().stats();
    assert_eq!(st.records_rejected, 0);
    assert!(!dl.exists());
    let total_points = n(&s, "points");
    assert_eq!(total_points, n(&s, "written_measures"));
    eprintln!(
        "backfill: {OBJECTS} objects, {total_points} points; killed after {done_first} objects \
         ({} records stored by then); resumed: {} records re-sent as identical duplicates; \
         {secs:.1} s in all",
        after_kill.records_stored, st.records_duplicate
    );
}

#[test]
fn several_files_and_globs_in_one_call() {
    let strict = strict("files", Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let files = copies(dir.path(), 6);
    let sub = dir.path().join("more");
    std::fs::create_dir(&sub).unwrap();
    let extra = copies(&sub, 2);
    let p = |x: &PathBuf| x.to_str().unwrap().to_owned();
    let pattern = format!("{}/*.json*", sub.display());
    let summary = dir.path().join("summary.json");
    let out = ingest_files(&strict, &summary)
        .args(files.iter().map(|(f, _)| p(f)))
        // A quoted glob (the shell did not expand it), and a file named twice.
        .arg(&pattern)
        .arg(p(&files[0].0))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = read_json(&summary);
    assert_eq!(s["objects"].as_array().unwrap().len(), 8, "{s}");
    let mut all: Vec<PathBuf> = files.iter().map(|(f, _)| f.clone()).collect();
    // `more/obj-00.json` and `obj-00.json` have the same testid: identical
    // records, stored once.
    all.extend(extra.iter().map(|(f, _)| f.clone()));
    assert_same(
        &strict.stored("k6", "files"),
        &expected_all(&all),
        "files and a glob",
    );

    // A corrupt object fails alone; the exit status is the worst (3).
    let bad = dir.path().join("bad.json.gz");
    let good = std::fs::read(fixture("offset.json.gz")).unwrap();
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let out = ingest_files(&strict, &summary)
        .arg(&bad)
        .arg(p(&files[1].0))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let s = read_json(&summary);
    assert_eq!(s["objects"][0]["outcome"], "failed");
    assert!(
        s["objects"][0]["error"]
            .as_str()
            .unwrap()
            .contains("truncated"),
        "{s}"
    );
    assert_eq!(s["objects"][1]["outcome"], "ok");
    assert_eq!(s["exit_code"], 3);
}

/// The backfill figure (BENCHMARKS.md): 50 objects on moto into the strict
/// endpoint with 20 ms per WriteRecords call, `--concurrency 32`, the
/// default 4 objects in flight. Each object is a copy of
/// `K6TS_BACKFILL_OBJECT` (default `target/bench/medium.json.gz`, a real k6
/// run: `scripts/backfill-figures.sh` makes it) under its own name, so its
/// own testid. `cargo test --release --test backfill -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: needs a generated k6 result"]
fn backfill_figures() {
    const OBJECTS: usize = 50;
    let object = std::env::var("K6TS_BACKFILL_OBJECT").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/medium.json.gz"),
        PathBuf::from,
    );
    assert!(
        object.exists(),
        "{}: run scripts/backfill-figures.sh",
        object.display()
    );
    let moto = Moto::start();
    let strict = strict(
        "bench",
        Faults {
            latency_ms: 20,
            ..Default::default()
        },
    );
    let body = std::fs::read(&object).unwrap();
    strict.rt().block_on(async {
        let s3 = moto.s3_client();
        s3.create_bucket().bucket("results").send().await.unwrap();
        for i in 0..OBJECTS {
            s3.put_object()
                .bucket("results")
                .key(format!("runs/run-{i:02}.json.gz"))
                .body(body.clone().into())
                .send()
                .await
                .unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let started = Instant::now();
    let out = cli(&strict.h().endpoint_url(), Some(&moto.url()))
        .args(["ingest", "--database", "k6", "--table", "bench"])
        .args(["--progress", "none", "--concurrency", "32"])
        .arg("--summary-json")
        .arg(&summary)
        .arg("s3://results/runs/")
        .output()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = read_json(&summary);
    let points = n(&s, "points");
    assert_eq!(points, n(&s, "written_measures"));
    assert_eq!(strict.h().record_count("k6", "bench") as u64, points);
    let records: u64 = s["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| n(&o["report"], "records"))
        .sum();
    eprintln!(
        "backfill figures: {OBJECTS} objects of {} bytes, {points} points, {records} records in \
         {secs:.2} s: {:.1} objects/s, {:.0} points/s, {:.0} records/s",
        body.len(),
        OBJECTS as f64 / secs,
        points as f64 / secs,
        records as f64 / secs
    );
}
