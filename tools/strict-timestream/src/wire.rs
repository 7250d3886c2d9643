//! awsJson1_0 wire shapes of the Timestream Write API (request side) and the error envelope.
//!
//! Requests are decoded into borrowed views of the request body: every string is a [`Str`],
//! which borrows from the body unless the JSON string contains escapes. A 100-record request
//! has about a thousand strings, so this keeps the hot path free of per-string allocations.
//! Unknown members are ignored and `null` is treated as "absent", as AWS services do.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Namespace of the Smithy model (`com.amazonaws.timestreamwrite`). The `__type` field of an
/// error body carries `namespace#ShapeName`; SDKs strip everything up to `#`.
pub(crate) const ERROR_NAMESPACE: &str = "com.amazonaws.timestreamwrite";

/// The `X-Amz-Target` prefix of every operation.
pub(crate) const TARGET_PREFIX: &str = "Timestream_20181101.";

/// Content type of every awsJson1_0 request and response.
pub(crate) const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// A JSON string that borrows from the request body when it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl Str<'_> {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor(std::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WriteRecordsRequest<'a> {
    #[serde(rename = "DatabaseName", borrow, default)]
    pub database_name: Option<Str<'a>>,
    #[serde(rename = "TableName", borrow, default)]
    pub table_name: Option<Str<'a>>,
    #[serde(rename = "CommonAttributes", borrow, default)]
    pub common_attributes: Option<WireRecord<'a>>,
    #[serde(rename = "Records", borrow, default)]
    pub records: Option<Vec<WireRecord<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireRecord<'a> {
    #[serde(rename = "Dimensions", borrow, default)]
    pub dimensions: Option<Vec<WireDimension<'a>>>,
    #[serde(rename = "MeasureName", borrow, default)]
    pub measure_name: Option<Str<'a>>,
    #[serde(rename = "MeasureValue", borrow, default)]
    pub measure_value: Option<Str<'a>>,
    #[serde(rename = "MeasureValueType", borrow, default)]
    pub measure_value_type: Option<Str<'a>>,
    #[serde(rename = "Time", borrow, default)]
    pub time: Option<Str<'a>>,
    #[serde(rename = "TimeUnit", borrow, default)]
    pub time_unit: Option<Str<'a>>,
    #[serde(rename = "Version", default)]
    pub version: Option<i64>,
    #[serde(rename = "MeasureValues", borrow, default)]
    pub measure_values: Option<Vec<WireMeasureValue<'a>>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireDimension<'a> {
    #[serde(rename = "Name", borrow, default)]
    pub name: Option<Str<'a>>,
    #[serde(rename = "Value", borrow, default)]
    pub value: Option<Str<'a>>,
    #[serde(rename = "DimensionValueType", borrow, default)]
    pub dimension_value_type: Option<Str<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireMeasureValue<'a> {
    #[serde(rename = "Name", borrow, default)]
    pub name: Option<Str<'a>>,
    #[serde(rename = "Value", borrow, default)]
    pub value: Option<Str<'a>>,
    #[serde(rename = "Type", borrow, default)]
    pub value_type: Option<Str<'a>>,
}

/// Request of `CreateDatabase`, `DescribeDatabase`, `CreateTable` and `DescribeTable` (the
/// members each operation does not know are simply absent).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResourceRequest {
    #[serde(rename = "DatabaseName", default)]
    pub database_name: Option<String>,
    #[serde(rename = "TableName", default)]
    pub table_name: Option<String>,
    #[serde(rename = "KmsKeyId", default)]
    pub kms_key_id: Option<String>,
    #[serde(rename = "RetentionProperties", default)]
    pub retention_properties: Option<WireRetention>,
    #[serde(rename = "MagneticStoreWriteProperties", default)]
    pub magnetic_store_write_properties: Option<WireMagneticWrites>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireRetention {
    #[serde(rename = "MemoryStoreRetentionPeriodInHours", default)]
    pub memory_hours: Option<i64>,
    #[serde(rename = "MagneticStoreRetentionPeriodInDays", default)]
    pub magnetic_days: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireMagneticWrites {
    #[serde(rename = "EnableMagneticStoreWrites", default)]
    pub enable: Option<bool>,
}

/// The modeled errors this endpoint returns, with the HTTP status of their `@httpError` trait
/// in the Smithy model, plus the two protocol-level errors of awsJson services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    Validation,
    ResourceNotFound,
    Conflict,
    Throttling,
    InternalServer,
    RejectedRecords,
    /// Body is not JSON of the expected shape (awsJson protocol error, not in the model).
    Serialization,
    /// Missing or unknown `X-Amz-Target` (awsJson protocol error, not in the model).
    UnknownOperation,
}

impl ErrorKind {
    pub(crate) fn code(self) -> &'static str {
        match self {
            ErrorKind::Validation => "ValidationException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::Conflict => "ConflictException",
            ErrorKind::Throttling => "ThrottlingException",
            ErrorKind::InternalServer => "InternalServerException",
            ErrorKind::RejectedRecords => "RejectedRecordsException",
            ErrorKind::Serialization => "SerializationException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
        }
    }

    pub(crate) fn status(self) -> u16 {
        match self {
            ErrorKind::Validation => 400,
            ErrorKind::ResourceNotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Throttling => 429,
            ErrorKind::InternalServer => 500,
            ErrorKind::RejectedRecords => 419,
            ErrorKind::Serialization => 400,
            ErrorKind::UnknownOperation => 400,
        }
    }

    /// The `__type` value: modeled errors carry the model namespace, protocol errors the
    /// namespace AWS front ends use for them.
    pub(crate) fn type_id(self) -> String {
        match self {
            ErrorKind::Serialization | ErrorKind::UnknownOperation => {
                format!("com.amazon.coral.service#{}", self.code())
            }
            _ => format!("{ERROR_NAMESPACE}#{}", self.code()),
        }
    }
}

/// One rejected record of a `RejectedRecordsException`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct WireRejectedRecord {
    #[serde(rename = "RecordIndex")]
    pub record_index: usize,
    #[serde(rename = "Reason")]
    pub reason: String,
    #[serde(rename = "ExistingVersion", skip_serializing_if = "Option::is_none")]
    pub existing_version: Option<i64>,
}

/// Serializes an error body: `{"__type":"ns#Code","Message":"..."}` plus `RejectedRecords` for
/// `RejectedRecordsException`. The member is `Message` (capital M) as in the model; the Rust
/// SDK's generic error parser accepts `message`, `Message` and `errorMessage`, but its typed
/// exception deserializers read only `Message`.
pub(crate) fn error_body(
    kind: ErrorKind,
    message: &str,
    rejected: Option<&[WireRejectedRecord]>,
) -> Vec<u8> {
    let mut body = serde_json::Map::new();
    body.insert("__type".into(), kind.type_id().into());
    body.insert("Message".into(), message.into());
    if let Some(rejected) = rejected {
        body.insert(
            "RejectedRecords".into(),
            serde_json::to_value(rejected).expect("rejected records serialize"),
        );
    }
    serde_json::to_vec(&body).expect("error body serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_borrow_from_the_body_unless_escaped() {
        let body = br#"{"DatabaseName":"db","TableName":"t\u00e9","Records":[]}"#;
        let req: WriteRecordsRequest = serde_json::from_slice(body).unwrap();
        assert!(matches!(req.database_name.unwrap().0, Cow::Borrowed("db")));
        let table = req.table_name.unwrap();
        assert!(matches!(table.0, Cow::Owned(_)));
        assert_eq!(table.as_str(), "t\u{e9}");
    }

    #[test]
    fn nulls_and_unknown_members_are_absent() {
        let body = br#"{"DatabaseName":null,"Extra":{"a":[1,2]},"Records":[{"Version":null,"MeasureName":"m","Foo":1}]}"#;
        let req: WriteRecordsRequest = serde_json::from_slice(body).unwrap();
        assert!(req.database_name.is_none());
        let records = req.records.unwrap();
        assert_eq!(records[0].measure_name.as_ref().unwrap().as_str(), "m");
        assert!(records[0].version.is_none());
    }

    #[test]
    fn wrong_json_types_fail_to_decode() {
        assert!(serde_json::from_slice::<WriteRecordsRequest>(br#"{"Records":{}}"#).is_err());
        assert!(
            serde_json::from_slice::<WriteRecordsRequest>(br#"{"Records":[{"Version":"1"}]}"#)
                .is_err()
        );
    }

    #[test]
    fn error_body_shape() {
        let body = error_body(
            ErrorKind::RejectedRecords,
            "m",
            Some(&[WireRejectedRecord {
                record_index: 3,
                reason: "r".into(),
                existing_version: None,
            }]),
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "__type": "com.amazonaws.timestreamwrite#RejectedRecordsException",
                "Message": "m",
                "RejectedRecords": [{"RecordIndex": 3, "Reason": "r"}]
            })
        );
        assert_eq!(ErrorKind::RejectedRecords.status(), 419);
        assert_eq!(ErrorKind::Throttling.status(), 429);
    }
}
