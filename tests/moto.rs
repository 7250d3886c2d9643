//! Wire compatibility with moto's S3 and Timestream Write: `ingest` reads
//! `s3://bucket/key` through the real S3 protocol (path-style, local
//! endpoint) and writes through the real Timestream protocol. moto
//! validates almost nothing, so this proves the wire, not correctness (the
//! strict endpoint tests do that).

mod support;

use hyper::header::HeaderMap;
use hyper::Method;
use serde_json::Value;
use std::process::Command;
use support::fixture;
use support::http::Client;
use support::measures::CLI_BIN;
use support::moto::Moto;
use support::procs::fake_aws_env;

async fn setup(moto: &Moto, body: Vec<u8>) {
    let s3 = moto.s3_client();
    s3.create_bucket().bucket("results").send().await.unwrap();
    s3.put_object()
        .bucket("results")
        .key("k6-results/run 1.json.gz")
        .body(body.into())
        .send()
        .await
        .unwrap();
    let ts = {
        use aws_sdk_timestreamwrite::config::{BehaviorVersion, Builder, Credentials, Region};
        let conf = Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(moto.url())
            .build();
        aws_sdk_timestreamwrite::Client::from_conf(conf)
    };
    ts.create_database()
        .database_name("k6")
        .send()
        .await
        .unwrap();
    ts.create_table()
        .database_name("k6")
        .table_name("results")
        .send()
        .await
        .unwrap();
}

#[test]
fn ingest_from_s3_into_timestream_over_moto() {
    let moto = Moto::start();
    let fixture = fixture("mixed.json.gz");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(setup(&moto, std::fs::read(&fixture).unwrap()));

    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let dl = dir.path().join("dl.jsonl");
    let mut c = Command::new(CLI_BIN);
    c.args([
        "ingest",
        "--database",
        "k6",
        "--table",
        "results",
        "--progress",
        "none",
    ])
    .arg("--summary-json")
    .arg(&summary)
    .arg("--dead-letter")
    .arg(&dl)
    .arg("s3://results/k6-results/run 1.json.gz");
    fake_aws_env(&mut c).env("AWS_ENDPOINT_URL", moto.url());
    let out = c.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(r["input"], "s3://results/k6-results/run 1.json.gz");
    assert!(r["gzip"].as_bool().unwrap());
    assert_eq!(
        r["bytes_read"].as_u64().unwrap(),
        std::fs::metadata(&fixture).unwrap().len()
    );
    assert_eq!(r["written_measures"], r["points"]);
    assert!(!dl.exists());

    // What moto stored, through its own API.
    let data = rt
        .block_on(Client::default().send(
            moto.addr,
            Method::GET,
            "/moto-api/data.json",
            HeaderMap::new(),
            Default::default(),
        ))
        .unwrap()
        .json();
    let tables = data["timestreamwrite"]["TimestreamTable"]
        .as_array()
        .unwrap();
    let t = tables.iter().find(|t| t["name"] == "results").unwrap();
    let records = t["records"].as_array().unwrap();
    assert_eq!(records.len() as u64, r["records"].as_u64().unwrap());
    let measures: usize = records
        .iter()
        .map(|r| r["MeasureValues"].as_array().map_or(1, Vec::len))
        .sum();
    assert_eq!(measures as u64, r["points"].as_u64().unwrap());
}
