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
    let conf =
        ts::config::Builder::from(sdk).retry_config(aws_config::retry::RetryConfig::disabled());
    match endpoint_override(endpoint) {
        Some(url) => Ok(ts::Client::from_conf(conf.endpoint_url(url).build())),
        None => {
            let (client, reload) = ts::Client::from_conf(conf.build())
                .with_endpoint_discovery_enabled()
                .await
                .map_err(|e| {
                    format!(
                        "Timestream endpoint discovery failed (region {:?}): {}",
                        sdk.region().map(|r| r.to_string()),
                        DisplayErrorChain(&*e)
                    )
                })?;
            tokio::spawn(reload.reload_task());
            Ok(client)
        }
    }
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
                WriteRecordsError::ThrottlingException(_) => WriteError::Throttled(msg),
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
                        WriteError::Throttled(text)
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
