//! Helpers shared by the integration tests: an SDK client pointed at the server, record
//! builders and a minimal raw HTTP/1.1 client for wire-level and admin checks.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_timestreamwrite::config::retry::RetryConfig;
use aws_sdk_timestreamwrite::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_timestreamwrite::types::{Dimension, MeasureValue, MeasureValueType, Record};
use aws_sdk_timestreamwrite::Client;
use strict_timestream::{Config, Server, ServerHandle, TableConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DB: &str = "k6db";
pub const TABLE: &str = "metrics";

pub async fn start(tables: Vec<TableConfig>) -> ServerHandle {
    start_with(Config {
        tables,
        ..Config::default()
    })
    .await
}

pub async fn start_with(cfg: Config) -> ServerHandle {
    Server::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .expect("server starts")
}

/// A client with static region and credentials, the server's endpoint, no endpoint discovery.
pub fn client(server: &ServerHandle, retry: RetryConfig) -> Client {
    let conf = aws_sdk_timestreamwrite::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "static"))
        .endpoint_url(server.endpoint_url())
        .retry_config(retry)
        .build();
    Client::from_conf(conf)
}

/// A client that never retries, for asserting on errors.
pub fn strict_client(server: &ServerHandle) -> Client {
    client(server, RetryConfig::disabled())
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn dim(name: &str, value: &str) -> Dimension {
    Dimension::builder()
        .name(name)
        .value(value)
        .build()
        .unwrap()
}

/// A DOUBLE record at `time_ms`.
pub fn double(dims: &[(&str, &str)], measure: &str, value: &str, time_ms: i64) -> Record {
    let mut b = Record::builder()
        .measure_name(measure)
        .measure_value(value)
        .measure_value_type(MeasureValueType::Double)
        .time(time_ms.to_string());
    for (n, v) in dims {
        b = b.dimensions(dim(n, v));
    }
    b.build()
}

pub fn multi(
    dims: &[(&str, &str)],
    measure: &str,
    values: &[(&str, &str, MeasureValueType)],
    time_ms: i64,
) -> Record {
    let mut b = Record::builder()
        .measure_name(measure)
        .measure_value_type(MeasureValueType::Multi)
        .time(time_ms.to_string());
    for (n, v) in dims {
        b = b.dimensions(dim(n, v));
    }
    for (n, v, t) in values {
        b = b.measure_values(
            MeasureValue::builder()
                .name(*n)
                .value(*v)
                .r#type(t.clone())
                .build()
                .unwrap(),
        );
    }
    b.build()
}

pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends raw bytes on a fresh connection and returns everything read until the server closes.
pub async fn exchange(addr: SocketAddr, request: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("connection closed in time")
        .unwrap();
    buf
}

/// Formats one HTTP/1.1 request with `Connection: close`.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// Sends one HTTP/1.1 request on a fresh connection and reads the whole response.
pub async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    let buf = exchange(addr, &http_request(addr, method, path, headers, body)).await;
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// An awsJson1_0 call without the SDK.
pub async fn aws_call(addr: SocketAddr, operation: &str, body: &str) -> RawResponse {
    let target = format!("Timestream_20181101.{operation}");
    raw(
        addr,
        "POST",
        "/",
        &[
            ("X-Amz-Target", &target),
            ("Content-Type", "application/x-amz-json-1.0"),
        ],
        body,
    )
    .await
}
