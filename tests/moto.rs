//! Wire compatibility with moto's S3 and Timestream Write: `ingest` reads
//! `s3://bucket/key` through the real S3 protocol (path-style, local
//! endpoint) and writes through the real Timestream protocol. moto
//! validates almost nothing, so this proves the wire, not correctness (the
//! strict endpoint tests do that).

use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_moto() -> Moto {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server must be installed (scripts/install-tools.sh)");
    let url = format!("http://127.0.0.1:{port}");
    let m = Moto { child, url };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    m
}

fn env(c: &mut Command, url: &str) {
    c.env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_ENDPOINT_URL", url);
}

async fn setup(url: &str, fixture: &Path) {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(url)
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket("results").send().await.unwrap();
    let body = std::fs::read(fixture).unwrap();
    s3.put_object()
        .bucket("results")
        .key("k6-results/run 1.json.gz")
        .body(body.into())
        .send()
        .await
        .unwrap();
    let ts = aws_sdk_timestreamwrite::Client::new(&sdk);
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
    let moto = start_moto();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mixed.json.gz");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(setup(&moto.url, &fixture));

    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let dl = dir.path().join("dl.jsonl");
    let mut c = Command::new(env!("CARGO_BIN_EXE_k6-timestream"));
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
    env(&mut c, &moto.url);
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
    let data: Value = ureq_get(&format!("{}/moto-api/data.json", moto.url));
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

/// A tiny HTTP GET (no client dependency for one call).
fn ureq_get(url: &str) -> Value {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}
