//! Where Timestream records go: one table, and the endpoint to reach it.
//! The CLI (`--database`, `--table`, `--endpoint-url`) and the Lambda
//! (`K6TS_DATABASE`, `K6TS_TABLE`, the SDK's endpoint variables) fill the
//! same type.

/// The target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestreamTarget {
    pub database: String,
    pub table: String,
}

/// The endpoint override in force, if any: an explicit `--endpoint-url`,
/// else the SDK's standard `AWS_ENDPOINT_URL_TIMESTREAM_WRITE`, else
/// `AWS_ENDPOINT_URL`.
pub fn endpoint_override(explicit: Option<&str>) -> Option<String> {
    explicit
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_TIMESTREAM_WRITE").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|s| !s.is_empty())
}
