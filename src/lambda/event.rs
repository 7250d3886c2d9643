//! What the function is invoked with: S3 notifications, direct
//! re-processing requests, and its own continuation events.

use crate::core::report::RunReport;
use crate::sources::ObjectRef;
use serde::{Deserialize, Serialize};

/// Decodes an S3 event key: form-urlencoding, so `+` is a space and `%XX`
/// a byte (a literal `+` arrives as `%2B`). Invalid escapes are kept as
/// text; the bytes must be UTF-8 (S3 keys are).
pub fn decode_s3_key(key: &str) -> Result<String, String> {
    let b = key.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("S3 key {key:?} does not decode to UTF-8"))
}

/// A continuation: the rest of an object, handed to a new invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Continuation {
    pub bucket: String,
    pub key: String,
    #[serde(default)]
    pub version_id: Option<String>,
    /// ETag of the object the chain started on: every link reads the same
    /// bytes (If-Match), or stops with `replaced`.
    #[serde(default)]
    pub etag: Option<String>,
    /// Requests 0..skip_batches are finished (written or dead-lettered).
    pub skip_batches: u64,
    /// 1 for the first continuation.
    pub attempt: u32,
    /// Writer-side counters of the earlier links (the conversion side is
    /// recomputed by re-reading), so the last report covers the whole
    /// object without counting anything twice.
    #[serde(default)]
    pub carried: RunReport,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuationEvent {
    pub continuation: Continuation,
}

/// One object to process, as the handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub object: ObjectRef,
    pub skip_batches: u64,
    pub attempt: u32,
    pub carried: RunReport,
}

#[derive(Deserialize)]
struct Direct {
    bucket: String,
    key: String,
    #[serde(default)]
    version_id: Option<String>,
}

/// The parts of an S3 notification this function uses. Deliberately
/// lenient (every other field may be missing), so hand-written events,
/// replays and notifications forwarded by other services work too.
#[derive(Deserialize)]
struct S3Event {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", default)]
    event_name: Option<String>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
    #[serde(rename = "eTag", default)]
    e_tag: Option<String>,
}

/// Turns an invocation payload into jobs.
pub fn parse_event(v: serde_json::Value) -> Result<Vec<Job>, String> {
    if v.get("Records").is_some() {
        let e: S3Event = serde_json::from_value(v).map_err(|e| format!("S3 event: {e}"))?;
        let mut jobs = Vec::new();
        for r in e.records {
            if let Some(name) = &r.event_name {
                if !name.starts_with("ObjectCreated") {
                    tracing::info!(event = %name, "not an ObjectCreated event: ignored");
                    continue;
                }
            }
            let bucket = r.s3.bucket.name;
            let key = decode_s3_key(&r.s3.object.key)?;
            jobs.push(Job {
                object: ObjectRef {
                    bucket,
                    key,
                    version_id: r.s3.object.version_id.filter(|s| !s.is_empty()),
                    etag: r.s3.object.e_tag.filter(|s| !s.is_empty()),
                },
                skip_batches: 0,
                attempt: 0,
                carried: RunReport::default(),
            });
        }
        return Ok(jobs);
    }
    if v.get("continuation").is_some() {
        let c: ContinuationEvent =
            serde_json::from_value(v).map_err(|e| format!("continuation event: {e}"))?;
        let c = c.continuation;
        return Ok(vec![Job {
            object: ObjectRef {
                bucket: c.bucket,
                key: c.key,
                version_id: c.version_id,
                etag: c.etag,
            },
            skip_batches: c.skip_batches,
            attempt: c.attempt,
            carried: c.carried,
        }]);
    }
    if v.get("bucket").is_some() {
        let d: Direct = serde_json::from_value(v).map_err(|e| format!("direct invocation: {e}"))?;
        return Ok(vec![Job {
            object: ObjectRef {
                bucket: d.bucket,
                key: d.key,
                version_id: d.version_id,
                etag: None,
            },
            skip_batches: 0,
            attempt: 0,
            carried: RunReport::default(),
        }]);
    }
    Err("unrecognised event: expected an S3 notification (Records), {\"bucket\",\"key\"} or {\"continuation\":…}".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_like_s3_encodes() {
        assert_eq!(
            decode_s3_key("k6-results/my+run+1.json").unwrap(),
            "k6-results/my run 1.json"
        );
        assert_eq!(decode_s3_key("a%2Bb%3Dc.json").unwrap(), "a+b=c.json");
        assert_eq!(
            decode_s3_key("r%C3%A9sultat+%E2%9C%93.json.gz").unwrap(),
            "résultat ✓.json.gz"
        );
        assert_eq!(decode_s3_key("100%25.json").unwrap(), "100%.json");
        assert_eq!(decode_s3_key("bad%zz%2").unwrap(), "bad%zz%2");
        assert!(decode_s3_key("%FF.json").is_err());
    }

    /// S3's encoding (URL form encoding) then our decoding is the identity.
    fn s3_encode(key: &str) -> String {
        let mut s = String::new();
        for b in key.bytes() {
            match b {
                b' ' => s.push('+'),
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => {
                    s.push(b as char)
                }
                _ => s.push_str(&format!("%{b:02X}")),
            }
        }
        s
    }

    proptest! {
        #[test]
        fn roundtrip(key in "\\PC{0,40}") {
            prop_assert_eq!(decode_s3_key(&s3_encode(&key)).unwrap(), key);
        }
    }

    #[test]
    fn event_kinds() {
        let s3 = serde_json::json!({"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2024-01-01T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","configurationId":"x","bucket":{"name":"b","arn":"arn:aws:s3:::b"},"object":{"key":"k6-results/a+b.json","size":10,"eTag":"abc","versionId":"v1","sequencer":"01"}}}]});
        let j = parse_event(s3).unwrap();
        assert_eq!(
            j[0].object,
            ObjectRef {
                bucket: "b".into(),
                key: "k6-results/a b.json".into(),
                version_id: Some("v1".into()),
                etag: Some("abc".into())
            }
        );
        let d = parse_event(serde_json::json!({"bucket":"b","key":"a+b.json"})).unwrap();
        assert_eq!(d[0].object.key, "a+b.json", "direct keys are not encoded");
        let c = parse_event(serde_json::json!({"continuation":{"bucket":"b","key":"k","etag":"e","skip_batches":5,"attempt":2,"carried":{}}})).unwrap();
        assert_eq!((c[0].skip_batches, c[0].attempt), (5, 2));
        assert!(parse_event(serde_json::json!({"hello":1})).is_err());
        let del = serde_json::json!({"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"a.json"}}}]});
        assert!(parse_event(del).unwrap().is_empty());
    }
}
