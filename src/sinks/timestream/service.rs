//! The Timestream Write client: construction (endpoint discovery or an
//! explicit endpoint), the model → SDK request mapping, and SDK error →
//! [`WriteError`] mapping.

use super::config::endpoint_override;
use super::request::WriteRequest;
use crate::aws::DisplayErrorChain;
use crate::core::model::{DataModel, Values};
use crate::sinks::{RejectedRecord, Service, WriteError};
use aws_sdk_timestreamwrite as ts;
use aws_sdk_timestreamwrite::error::SdkError;
use aws_sdk_timestreamwrite::operation::write_records::WriteRecordsError;
use ts::types::{Dimension, DimensionValueType, MeasureValue, MeasureValueType, Record, TimeUnit};

/// Builds the client. Against AWS, Timestream requires endpoint discovery:
/// the client resolves its cell endpoint with DescribeEndpoints and a
/// background task (spawned here) refreshes it. Discovery answers with an
/// https AWS address, so with an endpoint override it is skipped and every
/// call goes to the override. SDK retries are disabled: the writer's retry
/// layer is the only one (see `retry.rs`).
pub async fn build_client(
    sdk: &aws_config::SdkConfig,
    endpoint: Option<&str>,
) -> Result<ts::Client, String> {
    client_for(sdk, endpoint_override(endpoint)).await
}

/// [`build_client`] with the endpoint override already resolved.
///
/// Discovery at cold start: DescribeEndpoints goes to the regional endpoint
/// (`ingest.timestream.<region>.amazonaws.com`), its first address becomes
/// the endpoint of every later call, and the answer's cache period decides
/// when the reload task (which wakes every 60 s) asks again (2 minutes
/// before it expires). If DescribeEndpoints fails, the client is unusable:
/// the error says so, with the region and the SDK's error chain.
pub async fn client_for(
    sdk: &aws_config::SdkConfig,
    endpoint: Option<String>,
) -> Result<ts::Client, String> {
    let conf =
        ts::config::Builder::from(sdk).retry_config(aws_config::retry::RetryConfig::disabled());
    let Some(url) = endpoint else {
        let region = sdk
            .region()
            .map_or_else(|| "not set".to_owned(), |r| r.to_string());
        let failed = |why: String| {
            format!(
                "Timestream endpoint discovery failed (region {region}; needs \
                 timestream:DescribeEndpoints): {why}"
            )
        };
        // The SDK takes the answer's first endpoint with an unwrap: an empty
        // list panics inside it. On a task of its own that panic is this
        // error, not the end of the process.
        let discovery =
            tokio::spawn(ts::Client::from_conf(conf.build()).with_endpoint_discovery_enabled());
        let (client, reload) = match discovery.await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return Err(failed(DisplayErrorChain(&*e).to_string())),
            Err(e) => {
                return Err(failed(format!(
                    "DescribeEndpoints answered no endpoint ({e})"
                )))
            }
        };
        tokio::spawn(reload.reload_task());
        return Ok(client);
    };
    Ok(ts::Client::from_conf(conf.endpoint_url(url).build()))
}

/// Writes to one table.
pub struct TimestreamWriter {
    client: ts::Client,
    database: String,
    table: String,
}

impl TimestreamWriter {
    pub fn new(client: ts::Client, database: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            client,
            database: database.into(),
            table: table.into(),
        }
    }
}

fn dim(name: &str, value: &str) -> Dimension {
    Dimension::builder()
        .name(name)
        .value(value)
        .dimension_value_type(DimensionValueType::Varchar)
        .build()
        .expect("name and value are set")
}

/// The pure batch → SDK request mapping: (CommonAttributes, Records).
pub fn to_sdk(req: &WriteRequest) -> (Record, Vec<Record>) {
    let mut common = Record::builder()
        .set_dimensions(if req.common_dimensions.is_empty() {
            None
        } else {
            Some(
                req.common_dimensions
                    .iter()
                    .map(|d| dim(&d.name, &d.value))
                    .collect(),
            )
        })
        .measure_value_type(match req.model {
            DataModel::Single => MeasureValueType::Double,
            DataModel::Multi => MeasureValueType::Multi,
        })
        .time_unit(TimeUnit::Nanoseconds);
    if let Some(m) = &req.common_measure_name {
        common = common.measure_name(m);
    }
    let records = req
        .records
        .iter()
        .map(|r| {
            let own: Vec<Dimension> = crate::sinks::timestream::request::own_dimensions(req, r)
                .map(|d| dim(&d.name, &d.value))
                .collect();
            let mut b = Record::builder()
                .set_dimensions((!own.is_empty()).then_some(own))
                .time(r.time_ns.to_string());
            if req.common_measure_name.is_none() {
                b = b.measure_name(&r.measure_name);
            }
            match &r.values {
                Values::Single(v) => b = b.measure_value(v),
                Values::Multi(m) => {
                    b = b.set_measure_values(Some(
                        m.iter()
                            .map(|(n, v)| {
                                MeasureValue::builder()
                                    .name(n)
                                    .value(v)
                                    .r#type(MeasureValueType::Double)
                                    .build()
                                    .expect("all fields set")
                            })
                            .collect(),
                    ))
                }
            }
            b.build()
        })
        .collect();
    (common.build(), records)
}

/// SDK error → [`WriteError`].
pub fn map_error(err: SdkError<WriteRecordsError, ts::config::http::HttpResponse>) -> WriteError {
    use aws_sdk_timestreamwrite::error::ProvideErrorMetadata;
    match err {
        SdkError::TimeoutError(_) => WriteError::Timeout,
        SdkError::DispatchFailure(e) => {
            if e.is_timeout() {
                WriteError::Timeout
            } else if e.is_user() {
                WriteError::Fatal(format!("request could not be sent: {:?}", e))
            } else {
                WriteError::Connection(format!(
                    "{:?}",
                    e.as_connector_error().map(|c| c.to_string())
                ))
            }
        }
        SdkError::ResponseError(e) => WriteError::Connection(format!("bad response: {:?}", e)),
        SdkError::ConstructionFailure(e) => {
            WriteError::Fatal(format!("request construction failed: {e:?}"))
        }
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let e = ctx.into_err();
            let msg = e.message().unwrap_or_default().to_owned();
            match e {
                WriteRecordsError::RejectedRecordsException(r) => WriteError::Rejected(
                    r.rejected_records()
                        .iter()
                        .map(|x| RejectedRecord {
                            index: usize::try_from(x.record_index()).unwrap_or(usize::MAX),
                            reason: x.reason().unwrap_or("rejected").to_owned(),
                            existing_version: x.existing_version(),
                        })
                        .collect(),
                ),
                WriteRecordsError::ValidationException(_) => WriteError::Validation(msg),
                WriteRecordsError::ThrottlingException(_) => WriteError::throttled(msg),
                WriteRecordsError::InternalServerException(_) => WriteError::Server(msg),
                WriteRecordsError::ResourceNotFoundException(_) => WriteError::NotFound(msg),
                WriteRecordsError::AccessDeniedException(_) => WriteError::AccessDenied(msg),
                WriteRecordsError::InvalidEndpointException(_) => {
                    WriteError::Fatal(format!("invalid endpoint: {msg}"))
                }
                other => {
                    let code = other.code().unwrap_or("Unknown").to_owned();
                    let text = format!("{code}: {}", other.message().unwrap_or_default());
                    if status >= 500 || code.contains("ServiceUnavailable") {
                        WriteError::Server(text)
                    } else if code.contains("Throttl")
                        || code.contains("TooManyRequests")
                        || status == 429
                    {
                        WriteError::throttled(text)
                    } else if code.contains("UnrecognizedClient")
                        || code.contains("InvalidSignature")
                        || code.contains("ExpiredToken")
                    {
                        WriteError::AccessDenied(text)
                    } else {
                        WriteError::Fatal(text)
                    }
                }
            }
        }
        other => WriteError::Fatal(format!("{other:?}")),
    }
}

impl Service<WriteRequest> for TimestreamWriter {
    async fn write(&self, req: &WriteRequest) -> Result<(), WriteError> {
        let (common, records) = to_sdk(req);
        self.client
            .write_records()
            .database_name(&self.database)
            .table_name(&self.table)
            .common_attributes(common)
            .set_records(Some(records))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let mut e = map_error(e);
                if let WriteError::NotFound(m) = &mut e {
                    *m = format!("table {}.{} ({m})", self.database, self.table);
                }
                if let WriteError::AccessDenied(m) = &mut e {
                    *m = format!("writing to {}.{}: {m}", self.database, self.table);
                }
                e
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::test_http::{sdk_config, Clock, GatedSleep, Replay};
    use crate::core::model::{Dimension, Record};
    use crate::sinks::timestream::request::build_request;
    use std::time::Duration;

    const REGIONAL: &str = "https://ingest.timestream.eu-west-1.amazonaws.com";

    fn endpoints(address: &str, minutes: u32) -> String {
        format!(r#"{{"Endpoints":[{{"Address":"{address}","CachePeriodInMinutes":{minutes}}}]}}"#)
    }

    const INGESTED: &str = r#"{"RecordsIngested":{"Total":1,"MemoryStore":1,"MagneticStore":0}}"#;

    fn request(model: DataModel) -> WriteRequest {
        let r = Record {
            dimensions: vec![Dimension {
                name: "testid".into(),
                value: "run-1".into(),
            }],
            measure_name: "http_reqs".into(),
            values: Values::Single("1".into()),
            time_ns: 1_795_600_800_000_000_000,
            lines: vec![1],
            metadata_mask: 0,
        };
        build_request(0, model, vec![r])
    }

    /// Lets spawned tasks (the reload task) run on this thread.
    async fn settle(replay: &Replay, requests: usize) {
        for _ in 0..2000 {
            if replay.sent().len() >= requests {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{} requests sent, expected {requests}", replay.sent().len());
    }

    /// The path every real deployment takes: DescribeEndpoints at the
    /// regional endpoint, WriteRecords at the cell it names, and a new
    /// cell once the reload task finds the old one about to expire.
    #[tokio::test]
    async fn discovery_then_writes_to_the_discovered_cell_and_refreshes() {
        let replay = Replay::default();
        let (clock, sleep) = (Clock::new(), GatedSleep::new(Duration::from_secs(60)));
        let sdk = sdk_config(
            &replay,
            "eu-west-1",
            Some(clock.clone()),
            Some(sleep.clone()),
        );
        replay
            .json(
                200,
                &endpoints("cell1.ingest.timestream.eu-west-1.amazonaws.com", 10),
            )
            .json(200, INGESTED);
        let client = client_for(&sdk, None).await.unwrap();
        let writer = TimestreamWriter::new(client, "k6", "results");
        writer.write(&request(DataModel::Single)).await.unwrap();
        let sent = replay.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].origin(), REGIONAL);
        assert_eq!(
            (sent[0].method.as_str(), sent[0].operation()),
            ("POST", "DescribeEndpoints")
        );
        assert_eq!(
            sent[1].origin(),
            "https://cell1.ingest.timestream.eu-west-1.amazonaws.com"
        );
        assert_eq!(sent[1].operation(), "WriteRecords");
        assert!(sent[1]
            .header("authorization")
            .is_some_and(|a| a.contains("/eu-west-1/timestream/aws4_request")));
        let body: serde_json::Value = serde_json::from_slice(&sent[1].body).unwrap();
        assert_eq!(body["DatabaseName"], "k6");
        assert_eq!(body["Records"][0]["Time"], "1795600800000000000");

        // 9 of the 10 minutes later the endpoint is within 2 minutes of its
        // expiry: the next wake-up of the reload task asks again.
        replay
            .json(
                200,
                &endpoints("cell2.ingest.timestream.eu-west-1.amazonaws.com", 10),
            )
            .json(200, INGESTED);
        clock.advance(Duration::from_secs(9 * 60));
        sleep.tick();
        settle(&replay, 3).await;
        assert_eq!(replay.sent()[2].operation(), "DescribeEndpoints");
        assert_eq!(replay.sent()[2].origin(), REGIONAL);
        writer.write(&request(DataModel::Multi)).await.unwrap();
        let last = replay.sent().pop().unwrap();
        assert_eq!(
            last.origin(),
            "https://cell2.ingest.timestream.eu-west-1.amazonaws.com"
        );
        assert_eq!(last.operation(), "WriteRecords");
        // Not yet due: a wake-up does not ask again.
        sleep.tick();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(replay.sent().len(), 4);
    }

    #[tokio::test]
    async fn a_failed_discovery_at_cold_start_is_the_documented_error() {
        let replay = Replay::default();
        replay.fail("connection refused");
        let sdk = sdk_config(&replay, "eu-west-1", None, None);
        let e = client_for(&sdk, None).await.unwrap_err();
        assert!(
            e.starts_with(
                "Timestream endpoint discovery failed (region eu-west-1; needs timestream:DescribeEndpoints): "
            ) && e.contains("connection refused"),
            "{e}"
        );
        // Refused by IAM.
        replay.json(
            400,
            r#"{"__type":"com.amazonaws.timestream.v20181101#AccessDeniedException","message":"not authorized to perform: timestream:DescribeEndpoints"}"#,
        );
        let e = client_for(&sdk, None).await.unwrap_err();
        assert!(
            e.contains("AccessDenied") && e.contains("region eu-west-1"),
            "{e}"
        );
        // An answer without an endpoint: an error, not a panic.
        replay.json(200, r#"{"Endpoints":[]}"#);
        let e = client_for(&sdk, None).await.unwrap_err();
        assert!(e.contains("answered no endpoint"), "{e}");
        assert_eq!(replay.sent().len(), 3);
        assert!(replay.sent().iter().all(|s| s.origin() == REGIONAL));
    }

    #[tokio::test]
    async fn an_endpoint_override_skips_discovery() {
        let replay = Replay::default();
        replay.json(200, INGESTED);
        let sdk = sdk_config(&replay, "eu-west-1", None, None);
        let client = client_for(&sdk, Some("http://127.0.0.1:8000".into()))
            .await
            .unwrap();
        TimestreamWriter::new(client, "k6", "results")
            .write(&request(DataModel::Multi))
            .await
            .unwrap();
        let sent = replay.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].origin(), "http://127.0.0.1:8000");
        assert_eq!(sent[0].operation(), "WriteRecords");
    }

    #[tokio::test]
    async fn write_errors_are_mapped_by_type() {
        let replay = Replay::default();
        let sdk = sdk_config(&replay, "eu-west-1", None, None);
        let client = client_for(&sdk, Some("http://127.0.0.1:8000".into()))
            .await
            .unwrap();
        let w = TimestreamWriter::new(client, "k6", "results");
        replay.json(
            419,
            r#"{"__type":"com.amazonaws.timestream.v20181101#RejectedRecordsException","message":"One or more records have been rejected.","RejectedRecords":[{"RecordIndex":0,"Reason":"A record with the same dimensions, measure name and timestamp exists with a different value.","ExistingVersion":1}]}"#,
        );
        match w.write(&request(DataModel::Single)).await {
            Err(WriteError::Rejected(r)) => {
                assert_eq!(r.len(), 1);
                assert_eq!((r[0].index, r[0].existing_version), (0, Some(1)));
                assert!(r[0].reason.contains("different value"));
            }
            other => panic!("{other:?}"),
        }
        replay.json(
            400,
            r#"{"__type":"com.amazonaws.timestream.v20181101#ResourceNotFoundException","message":"The table results does not exist."}"#,
        );
        match w.write(&request(DataModel::Single)).await {
            Err(WriteError::NotFound(m)) => assert!(m.starts_with("table k6.results"), "{m}"),
            other => panic!("{other:?}"),
        }
        replay.json(
            400,
            r#"{"__type":"com.amazonaws.timestream.v20181101#ThrottlingException","message":"slow down"}"#,
        );
        assert!(matches!(
            w.write(&request(DataModel::Single)).await,
            Err(WriteError::Throttled { .. })
        ));
        replay.fail("connection reset by peer");
        assert!(matches!(
            w.write(&request(DataModel::Single)).await,
            Err(WriteError::Connection(_))
        ));
    }
}
