//! Pushes WriteRecords calls of 100 records through the real SDK into an in-process server and
//! reports the throughput: a quick check that the server is not the bottleneck of a benchmark.
//!
//! `cargo run --release -p strict-timestream --example throughput -- [CALLS] [IN_FLIGHT] [LATENCY_MS]`
//! (defaults: 3200 calls, 32 in flight, 20 ms).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_timestreamwrite::config::retry::RetryConfig;
use aws_sdk_timestreamwrite::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_timestreamwrite::types::{Dimension, MeasureValueType, Record};
use strict_timestream::{Config, Faults, Server, TableConfig};
use tokio::sync::Semaphore;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .map(|a| a.parse().expect("numeric argument"))
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let calls = arg(1, 3200);
    let in_flight = arg(2, 32) as usize;
    let latency_ms = arg(3, 20);
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        Config {
            tables: vec![TableConfig::new("bench", "metrics")],
            faults: Faults {
                latency_ms,
                ..Faults::default()
            },
            seed: 0,
        },
    )
    .await
    .unwrap();
    let client = aws_sdk_timestreamwrite::Client::from_conf(
        aws_sdk_timestreamwrite::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("a", "b", None, None, "static"))
            .endpoint_url(server.endpoint_url())
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let limit = Arc::new(Semaphore::new(in_flight));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(calls as usize);
    for call in 0..calls {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let records: Vec<Record> = (0..100)
                .map(|i| {
                    Record::builder()
                        .dimensions(
                            Dimension::builder()
                                .name("scenario")
                                .value("default")
                                .build()
                                .unwrap(),
                        )
                        .dimensions(
                            Dimension::builder()
                                .name("url")
                                .value(format!("https://test.k6.io/{}", i % 7))
                                .build()
                                .unwrap(),
                        )
                        .dimensions(
                            Dimension::builder()
                                .name("call")
                                .value(call.to_string())
                                .build()
                                .unwrap(),
                        )
                        .measure_name("http_req_duration")
                        .measure_value(format!("{}.{}", i, call % 10))
                        .measure_value_type(MeasureValueType::Double)
                        .time((now_ms - i64::from(i)).to_string())
                        .build()
                })
                .collect();
            let res = client
                .write_records()
                .database_name("bench")
                .table_name("metrics")
                .set_records(Some(records))
                .send()
                .await;
            drop(permit);
            res.expect("write succeeds");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stored = server.record_count("bench", "metrics");
    println!(
        "{calls} calls, {stored} records in {elapsed:.2}s: {:.0} calls/s, {:.0} records/s",
        calls as f64 / elapsed,
        stored as f64 / elapsed
    );
    server.shutdown().await;
}
