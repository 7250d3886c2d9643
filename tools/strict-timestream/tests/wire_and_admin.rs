//! Wire-level checks (status codes, headers, error bodies) and the `/_strict/` admin API,
//! with a raw HTTP client.

mod common;

use common::*;
use serde_json::{json, Value};
use strict_timestream::{Faults, TableConfig};

fn write_body(table: &str, records: Value) -> String {
    json!({"DatabaseName": DB, "TableName": table, "Records": records}).to_string()
}

fn record(host: &str, measure: &str, value: &str, time_ms: i64) -> Value {
    json!({
        "Dimensions": [{"Name": "host", "Value": host, "DimensionValueType": "VARCHAR"}],
        "MeasureName": measure,
        "MeasureValue": value,
        "MeasureValueType": "DOUBLE",
        "Time": time_ms.to_string(),
        "TimeUnit": "MILLISECONDS"
    })
}

fn assert_error(resp: &RawResponse, status: u16, code: &str) -> Value {
    assert_eq!(resp.status, status, "{}", resp.body);
    assert_eq!(resp.header("x-amzn-errortype"), Some(code));
    assert_eq!(
        resp.header("content-type"),
        Some("application/x-amz-json-1.0")
    );
    assert!(resp.header("x-amzn-requestid").is_some());
    let body = resp.json();
    let type_id = body["__type"].as_str().unwrap();
    assert_eq!(type_id.rsplit('#').next(), Some(code), "{body}");
    assert!(body["Message"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn status_codes_headers_and_error_bodies() {
    let server = start(vec![TableConfig::new(DB, TABLE)]).await;
    let addr = server.local_addr();
    let t = now_ms();

    let ok = aws_call(
        addr,
        "WriteRecords",
        &write_body(TABLE, json!([record("a", "cpu", "1", t)])),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.header("content-type"),
        Some("application/x-amz-json-1.0")
    );
    assert_eq!(
        ok.json(),
        json!({"RecordsIngested": {"Total": 1, "MemoryStore": 1, "MagneticStore": 0}})
    );

    let body = assert_error(
        &aws_call(
            addr,
            "WriteRecords",
            &write_body("missing", json!([record("a", "cpu", "1", t)])),
        )
        .await,
        404,
        "ResourceNotFoundException",
    );
    assert_eq!(
        body["__type"],
        "com.amazonaws.timestreamwrite#ResourceNotFoundException"
    );

    let body = assert_error(
        &aws_call(addr, "WriteRecords", &write_body(TABLE, json!([]))).await,
        400,
        "ValidationException",
    );
    assert!(body["Message"]
        .as_str()
        .unwrap()
        .contains("Member must have length greater than or equal to 1"));

    let body = assert_error(
        &aws_call(
            addr,
            "WriteRecords",
            &write_body(
                TABLE,
                json!([record("a", "cpu", "2", t), record("b", "cpu", "2", t)]),
            ),
        )
        .await,
        419,
        "RejectedRecordsException",
    );
    assert_eq!(
        body["RejectedRecords"],
        json!([{
            "RecordIndex": 0,
            "Reason": body["RejectedRecords"][0]["Reason"],
            "ExistingVersion": 1
        }])
    );

    assert_error(
        &aws_call(addr, "WriteRecords", "{not json").await,
        400,
        "SerializationException",
    );
    assert_error(
        &aws_call(addr, "WriteRecords", r#"{"DatabaseName":1}"#).await,
        400,
        "SerializationException",
    );
    assert_error(
        &aws_call(addr, "DeleteTable", r#"{}"#).await,
        400,
        "UnknownOperationException",
    );

    server.set_faults(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    });
    assert_error(
        &aws_call(
            addr,
            "WriteRecords",
            &write_body(TABLE, json!([record("a", "cpu", "1", t)])),
        )
        .await,
        429,
        "ThrottlingException",
    );
    // Faults apply to WriteRecords only.
    assert_eq!(aws_call(addr, "DescribeEndpoints", "{}").await.status, 200);
    server.set_faults(Faults {
        server_error_rate: 1.0,
        ..Faults::default()
    });
    assert_error(
        &aws_call(
            addr,
            "WriteRecords",
            &write_body(TABLE, json!([record("a", "cpu", "1", t)])),
        )
        .await,
        500,
        "InternalServerException",
    );

    // A reset closes the connection without a single byte of response.
    server.set_faults(Faults {
        reset_rate: 1.0,
        ..Faults::default()
    });
    let target = "Timestream_20181101.WriteRecords";
    let request = http_request(
        addr,
        "POST",
        "/",
        &[("X-Amz-Target", target)],
        &write_body(TABLE, json!([record("a", "cpu", "1", t)])),
    );
    assert!(exchange(addr, &request).await.is_empty());
    assert_eq!(server.stats().faults.resets, 1);
    server.set_faults(Faults::default());

    let not_api = raw(addr, "GET", "/", &[], "").await;
    assert_eq!(not_api.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn admin_api() {
    let server = start(vec![]).await;
    let addr = server.local_addr();

    let created = raw(
        addr,
        "POST",
        "/_strict/tables",
        &[],
        r#"{"database":"k6db","table":"metrics","magnetic_writes":true}"#,
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let tables = raw(addr, "GET", "/_strict/tables", &[], "").await.json();
    assert_eq!(
        tables,
        json!([{
            "database": "k6db", "table": "metrics", "memory_retention_hours": 24,
            "magnetic_retention_days": 73000, "magnetic_writes": true
        }])
    );
    let bad = raw(
        addr,
        "POST",
        "/_strict/tables",
        &[],
        r#"{"database":"k6 db","table":"x"}"#,
    )
    .await;
    assert_eq!(bad.status, 400);

    let t = now_ms();
    let resp = aws_call(
        addr,
        "WriteRecords",
        &write_body(TABLE, json!([record("a", "cpu", "1.25", t)])),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);

    let records = raw(
        addr,
        "GET",
        "/_strict/records?database=k6db&table=metrics",
        &[],
        "",
    )
    .await;
    assert_eq!(records.status, 200);
    assert_eq!(
        records.json(),
        json!([{
            "dimensions": {"host": "a"},
            "measure_name": "cpu",
            "sub_measure": null,
            "time_ns": t * 1_000_000,
            "value": "1.25",
            "value_type": "DOUBLE",
            "version": 1,
            "magnetic": false
        }])
    );
    assert_eq!(
        raw(
            addr,
            "GET",
            "/_strict/records?database=k6db&table=other",
            &[],
            ""
        )
        .await
        .status,
        404
    );
    assert_eq!(
        raw(addr, "GET", "/_strict/records", &[], "").await.status,
        400
    );

    let stats = raw(addr, "GET", "/_strict/stats", &[], "").await.json();
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["write_calls"], 1);
    assert_eq!(stats["records_stored"], 1);
    assert_eq!(stats["faults"]["throttled"], 0);

    let set = raw(
        addr,
        "POST",
        "/_strict/faults",
        &[],
        r#"{"throttle_rate":1.0,"latency_ms":5}"#,
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(server.faults().throttle_rate, 1.0);
    assert_eq!(server.faults().latency_ms, 5);
    let faults = raw(addr, "GET", "/_strict/faults", &[], "").await.json();
    assert_eq!(faults["throttle_rate"], 1.0);
    assert_eq!(faults["reject_rate"], 0.0);
    let throttled = aws_call(
        addr,
        "WriteRecords",
        &write_body(TABLE, json!([record("a", "cpu", "1", t)])),
    )
    .await;
    assert_eq!(throttled.status, 429);
    assert_eq!(server.stats().faults.throttled, 1);
    let bad = raw(addr, "POST", "/_strict/faults", &[], r#"{"reset_rate":2}"#).await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        server.faults().throttle_rate,
        1.0,
        "a bad update changes nothing"
    );

    let reset = raw(addr, "POST", "/_strict/reset", &[], "").await;
    assert_eq!(reset.status, 200);
    assert_eq!(server.record_count("k6db", "metrics"), 0);
    assert_eq!(server.stats(), Default::default());
    assert_eq!(server.tables().len(), 1, "tables survive a reset");
    assert_eq!(raw(addr, "GET", "/_strict/nope", &[], "").await.status, 404);
    server.shutdown().await;
}
