//! Drives the server through the real `aws-sdk-timestreamwrite` client.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_timestreamwrite::config::retry::RetryConfig;
use aws_sdk_timestreamwrite::error::SdkError;
use aws_sdk_timestreamwrite::operation::create_table::CreateTableError;
use aws_sdk_timestreamwrite::operation::write_records::{WriteRecordsError, WriteRecordsOutput};
use aws_sdk_timestreamwrite::types::{
    MagneticStoreWriteProperties, MeasureValueType, Record, RejectedRecord, RetentionProperties,
    TimeUnit,
};
use aws_sdk_timestreamwrite::Client;
use common::*;
use strict_timestream::{Config, Faults, TableConfig, ValueType};

async fn write(
    client: &Client,
    table: &str,
    records: Vec<Record>,
) -> Result<WriteRecordsOutput, SdkError<WriteRecordsError>> {
    client
        .write_records()
        .database_name(DB)
        .table_name(table)
        .set_records(Some(records))
        .send()
        .await
}

/// Unwraps a `RejectedRecordsException` into its rejected records.
fn rejections(err: SdkError<WriteRecordsError>) -> Vec<RejectedRecord> {
    match err.into_service_error() {
        WriteRecordsError::RejectedRecordsException(e) => {
            assert_eq!(
                e.message(),
                Some("One or more records have been rejected. See RejectedRecords for details.")
            );
            e.rejected_records().to_vec()
        }
        other => panic!("expected RejectedRecordsException, got {other:?}"),
    }
}

#[tokio::test]
async fn single_and_multi_measure_records_are_stored() {
    let server = start(vec![TableConfig::new(DB, TABLE)]).await;
    let client = strict_client(&server);
    let t = now_ms();
    let out = write(
        &client,
        TABLE,
        vec![
            double(
                &[("host", "a"), ("scenario", "s1")],
                "http_req_duration",
                "12.5",
                t,
            ),
            multi(
                &[("host", "a")],
                "http",
                &[
                    ("count", "3", MeasureValueType::Bigint),
                    ("failed", "false", MeasureValueType::Boolean),
                    ("url", "https://x/y", MeasureValueType::Varchar),
                ],
                t,
            ),
        ],
    )
    .await
    .expect("write succeeds");
    let ingested = out.records_ingested().expect("RecordsIngested");
    assert_eq!(
        (
            ingested.total(),
            ingested.memory_store(),
            ingested.magnetic_store()
        ),
        (2, 2, 0)
    );

    let records = server.records(DB, TABLE);
    assert_eq!(records.len(), 4, "{records:#?}");
    let single = &records[0];
    assert_eq!(single.measure_name, "http_req_duration");
    assert_eq!(single.sub_measure, None);
    assert_eq!(single.value, "12.5");
    assert_eq!(single.value_type, ValueType::Double);
    assert_eq!(single.time_ns, t * 1_000_000);
    assert_eq!(single.version, 1);
    assert_eq!(single.dimensions.len(), 2);
    assert_eq!(single.dimensions["scenario"], "s1");
    let subs: Vec<(&str, &str, ValueType)> = records[1..]
        .iter()
        .map(|r| {
            assert_eq!(r.measure_name, "http");
            (
                r.sub_measure.as_deref().unwrap(),
                r.value.as_str(),
                r.value_type,
            )
        })
        .collect();
    assert_eq!(
        subs,
        vec![
            ("count", "3", ValueType::Bigint),
            ("failed", "false", ValueType::Boolean),
            ("url", "https://x/y", ValueType::Varchar),
        ]
    );
    assert_eq!(server.record_count(DB, TABLE), 4);
    let stats = server.stats();
    assert_eq!((stats.write_calls, stats.write_calls_ok), (1, 1));
    assert_eq!((stats.records_received, stats.records_stored), (2, 2));
    server.shutdown().await;
}

#[tokio::test]
async fn common_attributes_are_merged() {
    let server = start(vec![TableConfig::new(DB, TABLE)]).await;
    let client = strict_client(&server);
    let t = now_ms() / 1000;
    let common = Record::builder()
        .dimensions(dim("testid", "run-1"))
        .measure_value_type(MeasureValueType::Bigint)
        .time(t.to_string())
        .time_unit(TimeUnit::Seconds)
        .build();
    client
        .write_records()
        .database_name(DB)
        .table_name(TABLE)
        .common_attributes(common)
        .records(
            Record::builder()
                .dimensions(dim("host", "a"))
                .measure_name("vus")
                .measure_value("10")
                .build(),
        )
        .send()
        .await
        .expect("write succeeds");
    let records = server.records(DB, TABLE);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].dimensions["testid"], "run-1");
    assert_eq!(records[0].dimensions["host"], "a");
    assert_eq!(records[0].value_type, ValueType::Bigint);
    assert_eq!(records[0].time_ns, t * 1_000_000_000);

    // A dimension in both CommonAttributes and a record is a ValidationException.
    let err = client
        .write_records()
        .database_name(DB)
        .table_name(TABLE)
        .common_attributes(Record::builder().dimensions(dim("host", "b")).build())
        .records(double(&[("host", "a")], "vus", "1", now_ms()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_validation_exception(), "{err:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn more_than_100_records_is_a_validation_exception() {
    let server = start(vec![TableConfig::new(DB, TABLE)]).await;
    let client = strict_client(&server);
    let t = now_ms();
    let records: Vec<Record> = (0..101)
        .map(|i| double(&[("host", "a")], "m", "1", t - i))
        .collect();
    let err = write(&client, TABLE, records)
        .await
        .unwrap_err()
        .into_service_error();
    match &err {
        WriteRecordsError::ValidationException(e) => {
            assert!(e.message().contains("less than or equal to 100"), "{e:?}")
        }
        other => panic!("expected ValidationException, got {other:?}"),
    }
    assert_eq!(server.record_count(DB, TABLE), 0);
    assert_eq!(server.stats().validation_errors, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_records_are_rejected_by_index_and_the_others_stored() {
    let server = start(vec![TableConfig::new(DB, TABLE)]).await;
    let client = strict_client(&server);
    let t = now_ms();
    write(
        &client,
        TABLE,
        vec![double(&[("host", "a")], "cpu", "1", t)],
    )
    .await
    .unwrap();
    let err = write(
        &client,
        TABLE,
        vec![
            double(&[("host", "a")], "mem", "1", t),     // 0 ok
            double(&[("host", "")], "mem", "1", t),      // 1 empty dimension value
            double(&[("time", "x")], "mem", "1", t),     // 2 reserved dimension name
            double(&[("host", "b")], "mem", "2", t),     // 3 ok
            double(&[("cpu", "x")], "mem", "1", t),      // 4 dimension named like a measure
            double(&[("host", "a")], "ts_load", "1", t), // 5 reserved measure prefix
            double(&[("host", "a")], "disk", "abc", t),  // 6 not a DOUBLE
        ],
    )
    .await
    .unwrap_err();
    let rejected = rejections(err);
    let indexes: Vec<i32> = rejected.iter().map(|r| r.record_index()).collect();
    assert_eq!(indexes, vec![1, 2, 4, 5, 6], "{rejected:#?}");
    let reason = |i: usize| rejected[i].reason().unwrap_or_default().to_owned();
    assert!(reason(0).contains("empty value"), "{}", reason(0));
    assert!(reason(1).contains("reserved"), "{}", reason(1));
    assert!(
        reason(2).contains("already a measure name"),
        "{}",
        reason(2)
    );
    assert!(reason(3).contains("reserved"), "{}", reason(3));
    assert!(reason(4).contains("Invalid measure value"), "{}", reason(4));
    assert!(rejected.iter().all(|r| r.existing_version().is_none()));

    let stored: Vec<(String, String)> = server
        .records(DB, TABLE)
        .into_iter()
        .map(|r| (r.measure_name, r.dimensions["host"].clone()))
        .collect();
    assert_eq!(
        stored,
        vec![
            ("cpu".to_owned(), "a".to_owned()),
            ("mem".to_owned(), "a".to_owned()),
            ("mem".to_owned(), "b".to_owned()),
        ]
    );
    let stats = server.stats();
    assert_eq!(stats.write_calls_rejected, 1);
    assert_eq!(stats.records_rejected, 5);
    assert_eq!(stats.records_ingested, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn duplicates_versions_and_upserts() {
    let server = start(vec![TableConfig::new(DB, TABLE)]).await;
    let client = strict_client(&server);
    let t = now_ms();
    let rec = |value: &str| double(&[("host", "a")], "cpu", value, t);
    write(&client, TABLE, vec![rec("1.5")]).await.unwrap();

    // Identical resend: accepted, stored once.
    let out = write(&client, TABLE, vec![rec("1.5")]).await.unwrap();
    assert_eq!(out.records_ingested().unwrap().total(), 1);
    assert_eq!(server.record_count(DB, TABLE), 1);

    // Same key, different value, no higher version: rejected with the existing version.
    let err = write(&client, TABLE, vec![rec("2.5")]).await.unwrap_err();
    let rejected = rejections(err);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].record_index(), 0);
    assert_eq!(rejected[0].existing_version(), Some(1));
    assert!(rejected[0].reason().unwrap().contains(
        "A record with the same dimensions, measure name and timestamp already exists with a different value"
    ));

    // A higher version updates the record in place.
    let mut v2 = rec("2.5");
    v2.version = Some(2);
    write(&client, TABLE, vec![v2]).await.unwrap();
    let records = server.records(DB, TABLE);
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].value.as_str(), records[0].version), ("2.5", 2));
    let err = write(&client, TABLE, vec![rec("3.5")]).await.unwrap_err();
    assert_eq!(rejections(err)[0].existing_version(), Some(2));

    // Version 0 is a ValidationException.
    let mut v0 = rec("1");
    v0.version = Some(0);
    let err = write(&client, TABLE, vec![v0])
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_validation_exception(), "{err:?}");

    let stats = server.stats();
    assert_eq!(
        (
            stats.records_stored,
            stats.records_duplicate,
            stats.records_upserted
        ),
        (1, 1, 1)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn time_window_and_magnetic_store_writes() {
    let server = start(vec![
        TableConfig::new(DB, TABLE),
        TableConfig::new(DB, "late").with_magnetic_writes(true),
    ])
    .await;
    let client = strict_client(&server);
    let t = now_ms();
    let two_days_ago = t - 48 * 3_600_000;
    let future = t + 16 * 60_000;

    let err = write(
        &client,
        TABLE,
        vec![
            double(&[("host", "a")], "cpu", "1", two_days_ago),
            double(&[("host", "a")], "cpu", "1", future),
            double(&[("host", "a")], "cpu", "1", t + 10 * 60_000),
        ],
    )
    .await
    .unwrap_err();
    let rejected = rejections(err);
    assert_eq!(rejected.len(), 2, "{rejected:#?}");
    assert_eq!(rejected[0].record_index(), 0);
    assert!(rejected[0].reason().unwrap().contains("memory store"));
    assert_eq!(rejected[1].record_index(), 1);
    assert!(rejected[1].reason().unwrap().contains("future"));
    assert_eq!(server.record_count(DB, TABLE), 1);

    let out = write(
        &client,
        "late",
        vec![
            double(&[("host", "a")], "cpu", "1", two_days_ago),
            double(&[("host", "a")], "cpu", "1", t),
        ],
    )
    .await
    .expect("magnetic store writes accept late records");
    let ingested = out.records_ingested().unwrap();
    assert_eq!(
        (
            ingested.total(),
            ingested.memory_store(),
            ingested.magnetic_store()
        ),
        (2, 1, 1)
    );
    let late = server.records(DB, "late");
    assert!(late[0].magnetic && !late[1].magnetic);

    let err = write(
        &client,
        "late",
        vec![double(&[("host", "a")], "cpu", "1", future)],
    )
    .await
    .unwrap_err();
    assert!(rejections(err)[0].reason().unwrap().contains("future"));
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_table_is_resource_not_found() {
    let server = start(vec![TableConfig::new(DB, TABLE)]).await;
    let client = strict_client(&server);
    let rec = || vec![double(&[("host", "a")], "cpu", "1", now_ms())];
    let err = write(&client, "nope", rec())
        .await
        .unwrap_err()
        .into_service_error();
    match &err {
        WriteRecordsError::ResourceNotFoundException(e) => {
            assert!(e.message().unwrap().contains("nope"), "{e:?}")
        }
        other => panic!("expected ResourceNotFoundException, got {other:?}"),
    }
    let err = client
        .write_records()
        .database_name("nodb")
        .table_name(TABLE)
        .set_records(Some(rec()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    assert_eq!(server.stats().not_found_errors, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn injected_faults_reach_the_sdk_as_modeled_errors() {
    let server = start(vec![TableConfig::new(DB, TABLE)]).await;
    let client = strict_client(&server);
    let rec = || vec![double(&[("host", "a")], "cpu", "1", now_ms())];

    server.set_faults(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    });
    let err = write(&client, TABLE, rec())
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, WriteRecordsError::ThrottlingException(_)),
        "{err:?}"
    );

    server.set_faults(Faults {
        server_error_rate: 1.0,
        ..Faults::default()
    });
    let err = write(&client, TABLE, rec())
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, WriteRecordsError::InternalServerException(_)),
        "{err:?}"
    );

    server.set_faults(Faults {
        reset_rate: 1.0,
        ..Faults::default()
    });
    let err = write(&client, TABLE, rec()).await.unwrap_err();
    assert!(
        matches!(err, SdkError::DispatchFailure(_)),
        "a dropped connection is a dispatch failure: {err:?}"
    );

    server.set_faults(Faults {
        reject_rate: 1.0,
        ..Faults::default()
    });
    let err = write(&client, TABLE, rec()).await.unwrap_err();
    let rejected = rejections(err);
    assert!(rejected[0].reason().unwrap().contains("injected fault"));

    server.set_faults(Faults::default());
    write(&client, TABLE, rec()).await.expect("no faults left");

    let stats = server.stats();
    assert_eq!(stats.faults.throttled, 1);
    assert_eq!(stats.faults.server_errors, 1);
    assert_eq!(stats.faults.resets, 1);
    assert_eq!(stats.faults.rejected_records, 1);
    assert_eq!(stats.write_calls, 5);
    assert_eq!(server.record_count(DB, TABLE), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn the_sdk_retries_throttling_server_errors_and_resets() {
    let server = start(vec![TableConfig::new(DB, TABLE)]).await;
    let retrying = client(
        &server,
        RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(1)),
    );
    let rec = || vec![double(&[("host", "a")], "cpu", "1", now_ms())];
    for (faults, expected_calls) in [
        (
            Faults {
                throttle_rate: 1.0,
                ..Faults::default()
            },
            3,
        ),
        (
            Faults {
                server_error_rate: 1.0,
                ..Faults::default()
            },
            3,
        ),
        (
            Faults {
                reset_rate: 1.0,
                ..Faults::default()
            },
            3,
        ),
        (
            Faults {
                reject_rate: 1.0,
                ..Faults::default()
            },
            1,
        ),
    ] {
        server.reset();
        server.set_faults(faults);
        write(&retrying, TABLE, rec()).await.unwrap_err();
        assert_eq!(server.stats().write_calls, expected_calls, "{faults:?}");
    }
    // With retries disabled, one attempt only.
    server.reset();
    server.set_faults(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    });
    write(&strict_client(&server), TABLE, rec())
        .await
        .unwrap_err();
    assert_eq!(server.stats().write_calls, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn faults_are_deterministic_for_a_seed() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let server = start_with(Config {
            tables: vec![TableConfig::new(DB, TABLE)],
            faults: Faults {
                throttle_rate: 0.5,
                ..Faults::default()
            },
            seed,
        })
        .await;
        let client = strict_client(&server);
        let t = now_ms();
        let mut out = Vec::new();
        for i in 0..24 {
            out.push(
                write(
                    &client,
                    TABLE,
                    vec![double(&[("host", "a")], "cpu", "1", t - i)],
                )
                .await
                .is_ok(),
            );
        }
        server.shutdown().await;
        out
    }
    let a = outcomes(7).await;
    assert_eq!(a, outcomes(7).await);
    assert!(a.contains(&true) && a.contains(&false), "{a:?}");
    assert_ne!(a, outcomes(8).await);
}

#[tokio::test]
async fn latency_holds_write_responses() {
    let server = start_with(Config {
        tables: vec![TableConfig::new(DB, TABLE)],
        faults: Faults {
            latency_ms: 150,
            ..Faults::default()
        },
        seed: 0,
    })
    .await;
    let client = strict_client(&server);
    let started = Instant::now();
    write(
        &client,
        TABLE,
        vec![double(&[("host", "a")], "cpu", "1", now_ms())],
    )
    .await
    .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    // Other operations are not delayed.
    let started = Instant::now();
    client.describe_endpoints().send().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(150));
    assert_eq!(server.stats().faults.delayed_calls, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn databases_tables_and_endpoints_through_the_sdk() {
    let server = start(vec![]).await;
    let client = strict_client(&server);

    let endpoints = client.describe_endpoints().send().await.unwrap();
    let ep = &endpoints.endpoints()[0];
    assert_eq!(ep.address(), server.local_addr().to_string());
    assert_eq!(ep.cache_period_in_minutes(), 1440);

    let err = client
        .create_table()
        .database_name("newdb")
        .table_name("t1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");

    let db = client
        .create_database()
        .database_name("newdb")
        .send()
        .await
        .unwrap();
    assert_eq!(db.database().unwrap().database_name(), Some("newdb"));
    let out = client
        .create_table()
        .database_name("newdb")
        .table_name("t1")
        .retention_properties(
            RetentionProperties::builder()
                .memory_store_retention_period_in_hours(1)
                .magnetic_store_retention_period_in_days(30)
                .build()
                .unwrap(),
        )
        .magnetic_store_write_properties(
            MagneticStoreWriteProperties::builder()
                .enable_magnetic_store_writes(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let table = out.table().unwrap();
    assert_eq!(table.table_name(), Some("t1"));
    let err = client
        .create_table()
        .database_name("newdb")
        .table_name("t1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, CreateTableError::ConflictException(_)),
        "{err:?}"
    );

    let described = client
        .describe_table()
        .database_name("newdb")
        .table_name("t1")
        .send()
        .await
        .unwrap();
    let table = described.table().unwrap();
    let retention = table.retention_properties().unwrap();
    assert_eq!(retention.memory_store_retention_period_in_hours(), 1);
    assert_eq!(retention.magnetic_store_retention_period_in_days(), 30);
    assert!(table
        .magnetic_store_write_properties()
        .unwrap()
        .enable_magnetic_store_writes());
    assert_eq!(
        client
            .describe_database()
            .database_name("newdb")
            .send()
            .await
            .unwrap()
            .database()
            .unwrap()
            .table_count(),
        1
    );
    assert!(client
        .describe_table()
        .database_name("newdb")
        .table_name("t2")
        .send()
        .await
        .unwrap_err()
        .into_service_error()
        .is_resource_not_found_exception());

    // The table's settings apply to writes: 2 hours old goes to the magnetic store, 40 days
    // old is beyond its magnetic retention.
    let t = now_ms();
    let err = client
        .write_records()
        .database_name("newdb")
        .table_name("t1")
        .records(double(&[("host", "a")], "cpu", "1", t - 2 * 3_600_000))
        .records(double(&[("host", "a")], "cpu", "1", t - 40 * 86_400_000))
        .send()
        .await
        .unwrap_err();
    let rejected = rejections(err);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].record_index(), 1);
    assert!(server.records("newdb", "t1")[0].magnetic);
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_writers_are_all_stored() {
    let server = start(vec![TableConfig::new(DB, TABLE)]).await;
    let client = strict_client(&server);
    let t = now_ms();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..5 {
                let records = (0..100)
                    .map(|i| {
                        double(
                            &[("worker", &w.to_string()), ("batch", &batch.to_string())],
                            "iterations",
                            "1",
                            t - i,
                        )
                    })
                    .collect();
                write(&client, TABLE, records).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(server.record_count(DB, TABLE), 8 * 5 * 100);
    assert_eq!(server.stats().records_stored, 4000);
    server.shutdown().await;
}

#[tokio::test]
async fn arrivals_carry_the_wall_clock_of_storing() {
    let server = start(vec![TableConfig::new(DB, TABLE)]).await;
    let c = strict_client(&server);
    let t = now_ms() - 5_000;
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64
    };
    let before = wall();
    write(&c, TABLE, vec![double(&[("h", "a")], "cpu", "1", t)])
        .await
        .unwrap();
    let between = wall();
    write(
        &c,
        TABLE,
        vec![
            double(&[("h", "a")], "cpu", "1", t),
            multi(
                &[("h", "b")],
                "m",
                &[
                    ("x", "1", MeasureValueType::Double),
                    ("y", "2", MeasureValueType::Double),
                ],
                t + 1,
            ),
        ],
    )
    .await
    .unwrap();
    let after = wall();
    let a = server.arrivals(DB, TABLE);
    assert_eq!(a.len(), 2, "the duplicate is not a second arrival: {a:?}");
    assert_eq!(a[0].time_ns, t * 1_000_000);
    assert!((before..=between).contains(&a[0].arrived_unix_ns), "{a:?}");
    assert!((between..=after).contains(&a[1].arrived_unix_ns), "{a:?}");
    assert_eq!((a[0].measures, a[1].measures), (1, 2));
    // A record's lag is its arrival minus its time: 5 s here, give or take the call.
    let lag_ms = (a[0].arrived_unix_ns - a[0].time_ns) / 1_000_000;
    assert!((5_000..6_000).contains(&lag_ms), "{lag_ms}");
    assert!(server.arrivals(DB, "missing").is_empty());
    server.shutdown().await;
}
