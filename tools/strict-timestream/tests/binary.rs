//! Runs the `strict-timestream` binary: ready line, flags, a write, and exit on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test]
async fn binary_serves_until_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strict-timestream"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--table",
            "k6db.metrics",
            "--magnetic-writes",
            "--memory-retention-hours",
            "2",
            "--seed",
            "3",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
    let addr: SocketAddr = url.parse().unwrap();

    let tables = raw(addr, "GET", "/_strict/tables", &[], "").await.json();
    assert_eq!(tables[0]["memory_retention_hours"], 2);
    assert_eq!(tables[0]["magnetic_writes"], true);
    let three_hours_ago = now_ms() - 3 * 3_600_000;
    let body = json!({
        "DatabaseName": "k6db",
        "TableName": "metrics",
        "Records": [{
            "Dimensions": [{"Name": "host", "Value": "a"}],
            "MeasureName": "cpu",
            "MeasureValue": "1",
            "Time": three_hours_ago.to_string()
        }]
    });
    let resp = aws_call(addr, "WriteRecords", &body.to_string()).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["RecordsIngested"]["MagneticStore"], 1);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the binary did not exit on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn binary_rejects_bad_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_strict-timestream"))
        .args(["--throttle-rate", "1.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("throttle_rate"));
}
