//! `ingest --parallel N` of an `s3://bucket/key` object (moto) into the
//! strict Timestream endpoint: the object indexed once, its segments read
//! in ranges and written concurrently, store exactly what a serial run
//! stores, each point once, nothing rejected; an object replaced between
//! the index pass and the segments' reads is one clear error and nothing
//! is written.

mod support;

use k6_timestream::core::k6::time::{format_rfc3339_ns, parse_rfc3339_ns};
use serde_json::Value;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use strict_timestream::TableConfig;
use support::fixture;
use support::http::{full, response, Client, Server};
use support::measures::{assert_same, convert, CLI_BIN};
use support::moto::Moto;
use support::procs::fake_aws_env;
use support::strict::Strict;

const BUCKET: &str = "results";
const KEY: &str = "runs/load.json.gz";

/// `copies` copies of a real k6 result (`mixed.json.gz`: 1 MB of JSON),
/// each shifted in time by the run's span, so they are one valid k6
/// result `copies` times as long; gzip at the default level (a deflate
/// block every few hundred KiB: access points near every cut).
fn longer_fixture(dir: &Path, copies: i64) -> (PathBuf, u64) {
    let lines: Vec<String> = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(fixture("mixed.json.gz")).unwrap(),
    ))
    .lines()
    .map(Result::unwrap)
    .collect();
    let time_of = |l: &str| -> Option<(usize, usize, i64)> {
        let start = l.find("\"time\":\"")? + 8;
        let end = start + l[start..].find('"')?;
        Some((start, end, parse_rfc3339_ns(&l[start..end]).ok()?))
    };
    let times: Vec<i64> = lines
        .iter()
        .filter_map(|l| time_of(l))
        .map(|t| t.2)
        .collect();
    let span = times.iter().max().unwrap() - times.iter().min().unwrap() + 1_000_000_000;
    let path = dir.join("load.json.gz");
    let mut plain = 0u64;
    let mut w = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    for k in 0..copies {
        for l in &lines {
            let line = match time_of(l) {
                Some((s, e, t)) => format!(
                    "{}{}{}\n",
                    &l[..s],
                    format_rfc3339_ns(t + k * span),
                    &l[e..]
                ),
                None => format!("{l}\n"),
            };
            plain += line.len() as u64;
            w.write_all(line.as_bytes()).unwrap();
        }
    }
    w.finish().unwrap();
    (path, plain)
}

/// Creates the bucket and stores `body` in it as `KEY`.
fn upload(moto: &Moto, rt: &tokio::runtime::Runtime, body: Vec<u8>) {
    let s3 = moto.s3_client();
    rt.block_on(async {
        s3.create_bucket().bucket(BUCKET).send().await.unwrap();
        s3.put_object()
            .bucket(BUCKET)
            .key(KEY)
            .body(body.into())
            .send()
            .await
            .unwrap();
    });
}

/// `ingest` of `s3://results/<KEY>` into `k6.<table>` with `extra`
/// arguments, S3 at `s3`: the output and the summary.
fn ingest(strict: &Strict, s3: &str, table: &str, extra: &[&str], dir: &Path) -> (Output, Value) {
    ingest_from(
        strict,
        s3,
        &format!("s3://{BUCKET}/{KEY}"),
        table,
        extra,
        dir,
    )
}

fn ingest_from(
    strict: &Strict,
    s3: &str,
    input: &str,
    table: &str,
    extra: &[&str],
    dir: &Path,
) -> (Output, Value) {
    let summary = dir.join(format!("{table}.summary.json"));
    let out = fake_aws_env(&mut Command::new(CLI_BIN))
        .env_remove("AWS_ENDPOINT_URL")
        .env(
            "AWS_ENDPOINT_URL_TIMESTREAM_WRITE",
            strict.h().endpoint_url(),
        )
        .env("AWS_ENDPOINT_URL_S3", s3)
        .args([
            "ingest",
            "--database",
            "k6",
            "--table",
            table,
            "--progress",
            "none",
        ])
        .args(extra)
        .arg("--summary-json")
        .arg(&summary)
        .arg("--dead-letter")
        .arg(dir.join(format!("{table}.dead-letter.jsonl")))
        .arg(input)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&summary)
        .map(|s| serde_json::from_str(&s).unwrap())
        .unwrap_or(Value::Null);
    (out, report)
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

fn strict() -> Strict {
    // Magnetic writes on: the fixture's times are long past.
    Strict::start(
        vec![
            TableConfig::new("k6", "serial").with_magnetic_writes(true),
            TableConfig::new("k6", "parallel").with_magnetic_writes(true),
            TableConfig::new("k6", "replaced").with_magnetic_writes(true),
            TableConfig::new("k6", "local").with_magnetic_writes(true),
        ],
        7,
    )
}

#[test]
fn an_s3_object_in_segments_stores_what_a_serial_run_stores() {
    let moto = Moto::start();
    let strict = strict();
    let dir = tempfile::tempdir().unwrap();
    // ~8.6 MB of JSON (~17,000 lines) in ~0.8 MB of gzip: four segments of
    // ~2 MB, candidates every 32 KiB (the minimum: the spacing is reckoned
    // from the gzip size).
    let (path, plain) = longer_fixture(dir.path(), 8);
    upload(&moto, strict.rt(), std::fs::read(&path).unwrap());
    let (want, converted) = convert(&path, &[]);

    let (out, serial) = ingest(&strict, &moto.url(), "serial", &[], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (out, par) = ingest(
        &strict,
        &moto.url(),
        "parallel",
        &["--parallel", "4"],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // Stored: the serial run's measures, which are the converted ones.
    let stored_serial = strict.stored("k6", "serial");
    let stored_par = strict.stored("k6", "parallel");
    assert_same(&stored_serial, &want, "serial run");
    assert_same(
        &stored_par,
        &stored_serial,
        "parallel run vs the serial run",
    );
    // Each point written once: no segment sent a record another sent
    // (an identical resend would be a duplicate the table absorbs), and
    // nothing was rejected.
    let stats = strict.h().stats();
    assert_eq!(stats.records_duplicate, 0, "{stats:?}");
    assert_eq!(stats.records_rejected, 0, "{stats:?}");
    assert!(n(&par, "segments") >= 4, "{par}");
    for k in ["points", "measures", "records", "written_measures"] {
        assert_eq!(n(&par, k), n(&serial, k), "{k}");
    }
    assert_eq!(n(&par, "written_measures"), converted.measures);
    assert_eq!(n(&par, "written_measures"), want.len() as u64);
    assert_eq!(n(&par, "rejected_records"), 0);
    assert_eq!(n(&par, "dead_lettered"), 0);
    // Ranged reads: the segments together inflate the object about once
    // (plus each one's look-back and read-ahead), the index pass once
    // more; none inflates from the object's start.
    let segments = n(&par, "segments");
    let seg_inflated = n(&par, "bytes_decompressed");
    assert!(
        seg_inflated <= plain + segments * (plain / segments / 8 + 5 * 1024 * 1024),
        "segments inflated {seg_inflated} of {plain}"
    );
    assert!(seg_inflated < 2 * plain, "{seg_inflated} of {plain}");
    assert_eq!(n(&par, "chain_bytes_decompressed"), seg_inflated + plain);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(n(&par, "chain_bytes_read") >= 2 * size, "{par}");

    // The local file takes the same way (index pass, ranged reads).
    let (out, local) = ingest_from(
        &strict,
        &moto.url(),
        path.to_str().unwrap(),
        "local",
        &["--parallel", "4"],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same(&strict.stored("k6", "local"), &stored_serial, "local file");
    assert_eq!(n(&local, "segments"), segments);
    // (What a segment inflates past its end depends on how the reads
    // were cut, so the two runs' figures differ a little.)
    assert!(n(&local, "bytes_decompressed") < 2 * plain, "{local}");
    assert_eq!(strict.h().stats().records_duplicate, 0);

    // The same run again: nothing new, nothing rejected.
    let before = strict.h().stats();
    let (out, again) = ingest(
        &strict,
        &moto.url(),
        "parallel",
        &["--parallel", "4"],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = strict.h().stats();
    assert_eq!(after.records_stored, before.records_stored, "{after:?}");
    assert_eq!(after.records_rejected, 0);
    assert_eq!(n(&again, "written_measures"), want.len() as u64);
    assert_same(&strict.stored("k6", "parallel"), &stored_serial, "again");
}

/// A proxy in front of S3 that replaces the object (a PUT of `other`
/// through the S3 client) just before the first ranged GET, the first
/// segment's read after the index pass, is forwarded.
fn replacing_proxy(
    rt: &tokio::runtime::Runtime,
    moto: &Moto,
    other: Vec<u8>,
) -> (Server, Arc<AtomicBool>) {
    let upstream = moto.addr;
    let s3 = moto.s3_client();
    let client = Client::default();
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let other = Arc::new(other);
    let server = Server::start(rt.handle(), move |req, _conn| {
        let (s3, client, flag, other) = (s3.clone(), client.clone(), flag.clone(), other.clone());
        async move {
            let ranged = req.method == hyper::Method::GET
                && req.header("range").is_some()
                && req.path_only() == format!("/{BUCKET}/{KEY}");
            if ranged && !flag.swap(true, Ordering::SeqCst) {
                s3.put_object()
                    .bucket(BUCKET)
                    .key(KEY)
                    .body(other.to_vec().into())
                    .send()
                    .await
                    .unwrap();
            }
            let up = match client.forward(upstream, &req).await {
                Ok(r) => r,
                Err(e) => return response(502, &[], e),
            };
            up.passed_on(full(up.body.clone()))
        }
    });
    (server, done)
}

#[test]
fn an_object_replaced_after_the_index_pass_is_an_error_and_nothing_is_written() {
    let moto = Moto::start();
    let strict = strict();
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = longer_fixture(dir.path(), 8);
    upload(&moto, strict.rt(), std::fs::read(&path).unwrap());
    // The replacement: another real k6 result.
    let other = std::fs::read(fixture("offset.json.gz")).unwrap();
    let (proxy, replaced) = replacing_proxy(strict.rt(), &moto, other);

    let (out, report) = ingest(
        &strict,
        &proxy.url(),
        "replaced",
        &["--parallel", "4"],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(replaced.load(Ordering::SeqCst), "no ranged read: {stderr}");
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "s3://{BUCKET}/{KEY}: the object changed after the index pass"
        )) && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert_eq!(report, Value::Null, "no report of a run that did not start");
    assert_eq!(strict.h().record_count("k6", "replaced"), 0);
    assert_eq!(strict.h().stats().write_calls, 0);

    // Run again, it indexes the replacement and stores exactly it.
    let (out, _) = ingest(
        &strict,
        &proxy.url(),
        "replaced",
        &["--parallel", "4"],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local = dir.path().join("other").join("load.json.gz");
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    std::fs::copy(fixture("offset.json.gz"), &local).unwrap();
    assert_same(
        &strict.stored("k6", "replaced"),
        &convert(&local, &[]).0,
        "the replacement",
    );
}

/// `-` cannot be read in ranges: a usage error naming the way out.
#[test]
fn stdin_is_refused_with_parallel() {
    let out = fake_aws_env(&mut Command::new(CLI_BIN))
        .args([
            "ingest",
            "--database",
            "k6",
            "--table",
            "t",
            "--parallel",
            "2",
            "-",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("stdin (-) cannot be read in ranges"),
        "{stderr}"
    );
}
