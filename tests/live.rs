//! Live mode: a real k6 run piped into `ingest -`. Points must reach the
//! sink within ~2 s of k6 writing them (requests are cut by time, not only
//! by size), and the result must be what ingesting the same output as a
//! file gives, up to the +1 ns nudges of k6 groups a time cut split.
//!
//! Needs k6 and python3 (the loopback fixture server): `source
//! scripts/tools-env.sh` puts the project's k6 on PATH.

mod support;

use k6_timestream::core::k6::time::parse_rfc3339_ns;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};
use strict_timestream::TableConfig;
use support::measures::{convert, CLI_BIN};
use support::procs::fake_aws_env;
use support::strict::Strict;

fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The `p`-quantile (0..=1) of `v` (sorted here), nearest rank.
fn quantile(v: &mut [i64], p: f64) -> i64 {
    v.sort_unstable();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// The project's tool if installed there, else from PATH.
fn tool(name: &str) -> String {
    let local = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    if local.exists() {
        local.to_str().unwrap().to_owned()
    } else {
        name.to_owned()
    }
}

/// scripts/fixtures/server.py on a free port; killed on drop.
struct FixtureServer(std::process::Child, String);

impl FixtureServer {
    fn start() -> FixtureServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fixtures/server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first.trim().strip_prefix("PORT=").expect("PORT=<port>");
        let url = format!("http://127.0.0.1:{port}");
        FixtureServer(child, url)
    }
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `data.time` of a Point line (k6 writes `"time":"…"` only there).
fn point_time(line: &str) -> Option<i64> {
    let i = line.find(r#""time":""#)? + 8;
    let j = i + line[i..].find('"')?;
    parse_rfc3339_ns(&line[i..j]).ok()
}

type Key = (BTreeMap<String, String>, String, Option<String>, String);

#[test]
fn a_running_k6_piped_in_reaches_the_sink_within_two_seconds() {
    live_run("basic.js", &["DURATION=10s"], 300);
}

/// The same at 1000 requests/s (~14,000 points/s) for the benchmark figure:
/// `cargo test --release --test live -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: 1000 requests/s for 20 s"]
fn live_lag_at_1000_requests_per_second() {
    live_run("big.js", &["RATE=1000", "DURATION=20s"], 250_000);
}

fn live_run(script: &str, env: &[&str], min_points: usize) {
    let server = FixtureServer::start();
    let strict = Strict::start(vec![TableConfig::new("k6", "live")], 7);
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("live.summary.json");
    let teed = dir.path().join("k6-output.json");

    let mut ingest = Command::new(CLI_BIN);
    let mut ingest = fake_aws_env(&mut ingest)
        .env_remove("AWS_ENDPOINT_URL")
        .env(
            "AWS_ENDPOINT_URL_TIMESTREAM_WRITE",
            strict.h().endpoint_url(),
        )
        .args(["ingest", "--database", "k6", "--table", "live"])
        .args(["--testid", "live", "--progress", "log"])
        .arg("--summary-json")
        .arg(&summary)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/fixtures/k6")
        .join(script);
    let mut k6 = Command::new(tool("k6"));
    k6.args(["run", "--quiet", "--no-usage-report", "--no-summary"])
        .args(["--out", "json=/dev/stdout"])
        .arg("-e")
        .arg(format!("BASE_URL={}", server.1));
    for e in env {
        k6.args(["-e", e]);
    }
    let mut k6 = k6
        .arg(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("k6 (source scripts/tools-env.sh)");

    // The pipe, with a tap: each line goes on to `ingest` as it comes, into
    // a file, and its point's time is noted with when k6 wrote it.
    let mut to_ingest = ingest.stdin.take().unwrap();
    let mut file = std::fs::File::create(&teed).unwrap();
    let mut written_at: BTreeMap<i64, i64> = BTreeMap::new();
    for line in BufReader::new(k6.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let now = wall_ns();
        to_ingest.write_all(line.as_bytes()).unwrap();
        to_ingest.write_all(b"\n").unwrap();
        to_ingest.flush().unwrap();
        writeln!(file, "{line}").unwrap();
        // A substring, not a JSON parse: the tap must not slow k6 down.
        if let Some(t) = point_time(&line) {
            written_at.entry(t).or_insert(now);
        }
    }
    assert!(k6.wait().unwrap().success());
    drop(to_ingest);
    let out = ingest.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    drop(file);

    // Lag of every point: arrival at the endpoint minus its k6 time, and
    // minus the moment k6 wrote its line.
    let (mut from_time, mut from_write) = (Vec::new(), Vec::new());
    for a in strict.h().arrivals("k6", "live") {
        // A nudged record is a few ns after its point's time.
        let (_, &w) = written_at.range(..=a.time_ns).next_back().unwrap();
        for _ in 0..a.measures {
            from_time.push((a.arrived_unix_ns - a.time_ns) / 1_000_000);
            from_write.push((a.arrived_unix_ns - w) / 1_000_000);
        }
    }
    let points = from_time.len();
    let (t50, t99) = (
        quantile(&mut from_time, 0.5),
        quantile(&mut from_time, 0.99),
    );
    let (w50, w99, wmax) = (
        quantile(&mut from_write, 0.5),
        quantile(&mut from_write, 0.99),
        quantile(&mut from_write, 1.0),
    );
    eprintln!(
        "live lag over {points} points: from k6's point time p50 {t50} ms, p99 {t99} ms; \
         from k6 writing the line p50 {w50} ms, p99 {w99} ms, max {wmax} ms"
    );
    assert!(points > min_points, "{points}");
    assert!(w99 <= 2_000, "p99 {w99} ms after k6 wrote the point");
    assert!(t99 <= 2_500, "p99 {t99} ms after the point's time");

    // The same output as a file: the same points, every one written, none
    // rejected; records differ only where a time cut split a k6 group.
    let live = read_json(&summary);
    let file_summary = dir.path().join("file.summary.json");
    let conv = ["--testid", "live"];
    let c = Command::new(CLI_BIN)
        .arg("convert")
        .args(conv)
        .arg("--summary-json")
        .arg(&file_summary)
        .arg(&teed)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(c.success());
    let file = read_json(&file_summary);
    for k in ["lines", "points", "measures"] {
        assert_eq!(live[k], file[k], "{k}");
    }
    assert_eq!(live["written_measures"], live["points"]);
    assert_eq!(live["rejected_records"], 0);
    assert_eq!(strict.h().stats().records_rejected, 0);
    let i = |v: &Value, k: &str| v[k].as_i64().unwrap();
    let split = i(&live, "records") - i(&file, "records");
    let extra_nudges = i(&live, "nudged") - i(&file, "nudged");
    assert!(
        split >= 0 && split <= extra_nudges,
        "each split group is one more nudge"
    );

    let mut by_key: HashMap<Key, (Vec<i64>, Vec<i64>)> = HashMap::new();
    for (dims, name, sub, t, v) in strict.stored("k6", "live") {
        by_key.entry((dims, name, sub, v)).or_default().0.push(t);
    }
    for (dims, name, sub, t, v) in convert(&teed, &conv).0 {
        by_key.entry((dims, name, sub, v)).or_default().1.push(t);
    }
    let mut moved = 0;
    for (k, (mut got, mut want)) in by_key {
        got.sort_unstable();
        want.sort_unstable();
        want.dedup(); // identical duplicates are stored once
        assert_eq!(got.len(), want.len(), "{k:?}");
        for (g, w) in got.iter().zip(&want) {
            assert!((0..=16).contains(&(g - w)), "{k:?}: {g} vs {w}");
            moved += u64::from(g != w);
        }
    }
    eprintln!(
        "live vs file: {split} k6 groups split by a time cut, {moved} measures moved by +1 ns"
    );
}
