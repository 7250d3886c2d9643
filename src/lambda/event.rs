//! What the function is invoked with, typed: S3 notifications, S3 "Object
//! Created" events delivered by EventBridge, S3 Batch Operations jobs
//! (invocation schema 1.0 and 2.0), direct re-processing requests and its
//! own continuation events.
//!
//! How keys arrive differs by source, and only one decoder exists
//! ([`decode_key`]):
//!
//! | source                      | key                                    |
//! |-----------------------------|----------------------------------------|
//! | S3 notification (`Records`) | form-urlencoded: decoded               |
//! | EventBridge `Object Created`| the key itself: used as it is          |
//! | S3 Batch Operations 1.0/2.0 | URL-encoded (as in the manifest): decoded |
//! | direct / continuation       | the key itself: used as it is          |

use crate::core::report::RunReport;
use crate::sources::ObjectRef;
use aws_lambda_events::event::s3::S3Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Decodes a URL-encoded S3 key (`application/x-www-form-urlencoded`, as S3
/// writes keys into notifications and Batch Operations payloads): `+` is a
/// space and `%XX` a byte, so a literal `+` arrives as `%2B`. Invalid
/// escapes are kept as text; the decoded bytes must be UTF-8 (S3 keys are).
///
/// Built on `form_urlencoded`, which decodes `name=value&…` pairs: a raw
/// `&` or `=` (never produced by S3's encoder, but possible in hand-written
/// events) is escaped first so the whole key stays one name, and the
/// decoder's lossy UTF-8 step is checked (a U+FFFD it did not find in the
/// input, raw or encoded, means the bytes were not UTF-8).
pub fn decode_key(key: &str) -> Result<String, String> {
    let escaped = key.replace('&', "%26").replace('=', "%3D");
    let decoded = form_urlencoded::parse(escaped.as_bytes())
        .next()
        .map(|(name, _)| name.into_owned())
        .unwrap_or_default();
    let replacements = |s: &str| s.matches('\u{FFFD}').count();
    let legitimate = replacements(key) + key.to_ascii_uppercase().matches("%EF%BF%BD").count();
    if replacements(&decoded) > legitimate {
        return Err(format!("S3 key {key:?} does not decode to UTF-8"));
    }
    Ok(decoded)
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
    /// The checkpoint to go on from (written by the invocation that
    /// continued): the state of the stopped run, so the object is read on
    /// from where that run stopped (a ranged read). Without one (an event
    /// of an older version, or a checkpoint that could not be stored) the
    /// object is read again from its start and requests 0..skip_batches
    /// are skipped.
    #[serde(default)]
    pub checkpoint: Option<StoredObject>,
    /// 1 for the first continuation.
    pub attempt: u32,
    /// Writer-side counters of the earlier links (the conversion side is
    /// recomputed by re-reading), so the last report covers the whole
    /// object without counting anything twice.
    #[serde(default)]
    pub carried: RunReport,
}

/// Where an object of the function's own is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    pub bucket: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuationEvent {
    pub continuation: Continuation,
}

/// One segment of a fanned-out object (see [`super::fanout`]): the object
/// pinned like a continuation's, the stored index and plan, and the
/// segment's number. Sent by the function itself; a failed segment can be
/// re-run alone by invoking the function with this event again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentTask {
    pub bucket: String,
    pub key: String,
    #[serde(default)]
    pub version_id: Option<String>,
    /// ETag of the object the index was made of: every segment reads the
    /// same bytes (If-Match), or stops with `replaced`.
    #[serde(default)]
    pub etag: Option<String>,
    /// The stored index and plan.
    pub index: StoredObject,
    /// 0-based.
    pub number: u32,
    /// A later part of the segment (its earlier part ran out of time):
    /// the nominal line this part starts at. None: the segment's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u64>,
    /// Parts before this one (bounded like continuations).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub part: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEvent {
    pub segment: SegmentTask,
}

/// What a segment job reads besides its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    pub index: StoredObject,
    pub number: u32,
    /// See [`SegmentTask::start_line`].
    pub start_line: Option<u64>,
    pub part: u32,
}

/// One object to process, as the handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub object: ObjectRef,
    pub skip_batches: u64,
    /// A continuation's checkpoint (see [`Continuation::checkpoint`]).
    pub checkpoint: Option<StoredObject>,
    pub attempt: u32,
    pub carried: RunReport,
    /// Set for a segment of a fanned-out object.
    pub segment: Option<SegmentRef>,
}

impl Job {
    fn new(object: ObjectRef) -> Job {
        Job {
            object,
            skip_batches: 0,
            checkpoint: None,
            attempt: 0,
            carried: RunReport::default(),
            segment: None,
        }
    }

    /// A job as S3 announces it (not a continuation, not a segment): the
    /// only kind that may fan out.
    pub fn is_original(&self) -> bool {
        self.attempt == 0
            && self.skip_batches == 0
            && self.checkpoint.is_none()
            && self.segment.is_none()
    }
}

/// What an invocation asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// S3 notifications (from S3 or EventBridge), direct requests and
    /// continuations: answered with one report per object.
    Objects(Vec<Job>),
    /// An S3 Batch Operations invocation: answered per task, in the shape
    /// Batch Operations reads.
    Batch(BatchInvocation),
}

impl Event {
    /// Every object the event names, in order (for a Batch invocation: the
    /// objects of the tasks that name one).
    pub fn jobs(&self) -> Vec<&Job> {
        match self {
            Event::Objects(jobs) => jobs.iter().collect(),
            Event::Batch(b) => b.tasks.iter().filter_map(|t| t.job.as_ref().ok()).collect(),
        }
    }

    /// The objects of an event answered with reports; a Batch invocation
    /// must be answered per task, so it is an error here.
    pub fn into_objects(self) -> Result<Vec<Job>, String> {
        match self {
            Event::Objects(jobs) => Ok(jobs),
            Event::Batch(_) => Err(
                "an S3 Batch Operations invocation is answered per task (Handler::answer)"
                    .to_owned(),
            ),
        }
    }
}

/// An S3 Batch Operations invocation, as far as its answer needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchInvocation {
    /// Echoed in the answer.
    pub schema_version: String,
    /// Echoed in the answer.
    pub invocation_id: String,
    pub tasks: Vec<BatchTask>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchTask {
    pub task_id: String,
    /// The object, or why the task names none this function can read (its
    /// answer: `PermanentFailure` with that text).
    pub job: Result<Job, String>,
}

/// Schema versions of the Batch Operations payload this function reads.
pub const BATCH_SCHEMA_VERSIONS: [&str; 2] = ["1.0", "2.0"];

/// The Batch Operations payload, both schemas. The `aws_lambda_events`
/// types cover schema 1.0 only (no `s3Bucket`, no `userArguments`), so it
/// is defined here: 1.0 names the bucket by `s3BucketArn`, 2.0 by
/// `s3Bucket` (directory buckets need 2.0).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchPayload {
    invocation_schema_version: String,
    invocation_id: String,
    #[serde(default)]
    job: BatchJob,
    tasks: Vec<BatchPayloadTask>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchJob {
    #[serde(default)]
    id: Option<String>,
    /// Schema 2.0: the job's `UserArguments` (logged, not interpreted).
    #[serde(default)]
    user_arguments: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchPayloadTask {
    task_id: String,
    s3_key: String,
    #[serde(default)]
    s3_version_id: Option<String>,
    /// Schema 1.0.
    #[serde(default)]
    s3_bucket_arn: Option<String>,
    /// Schema 2.0.
    #[serde(default)]
    s3_bucket: Option<String>,
}

impl BatchPayloadTask {
    /// The task's object. Keys in Batch Operations payloads are URL-encoded
    /// like the manifest's (S3's documentation decodes them; spaces arrive
    /// as `+`), so they are decoded like notification keys.
    fn object(&self, schema: &str) -> Result<ObjectRef, String> {
        if !BATCH_SCHEMA_VERSIONS.contains(&schema) {
            return Err(format!(
                "unsupported invocationSchemaVersion {schema:?} (this function reads {})",
                BATCH_SCHEMA_VERSIONS.join(" and ")
            ));
        }
        // Either field is accepted whatever the version says: the name is
        // the same bucket, and a job created with the other schema still
        // names its objects unambiguously.
        let bucket = match (&self.s3_bucket, &self.s3_bucket_arn) {
            (Some(b), _) if !b.is_empty() => b.clone(),
            (_, Some(arn)) => bucket_from_arn(arn).to_owned(),
            _ => String::new(),
        };
        if bucket.is_empty() {
            return Err("task without s3Bucket or s3BucketArn".to_owned());
        }
        Ok(ObjectRef {
            bucket,
            key: decode_key(&self.s3_key)?,
            version_id: non_empty(self.s3_version_id.clone()),
            etag: None,
        })
    }
}

/// `arn:aws:s3:::bucket` → `bucket`. The bucket is the ARN's last field
/// (bucket names have no `:`), which also reads the regional form of S3's
/// own documentation example; a plain name is returned as it is.
fn bucket_from_arn(arn: &str) -> &str {
    arn.rsplit_once(':').map_or(arn, |(_, b)| b)
}

/// The envelope of an EventBridge event: the three fields read here (the
/// `aws_lambda_events` envelope type is not worth its build dependencies).
#[derive(Debug, Deserialize)]
struct EventBridgeEnvelope {
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    #[serde(default)]
    detail: Value,
}

/// `detail` of an S3 `Object Created` EventBridge event. Unlike in S3
/// notifications, `object.key` is the key itself, not URL-encoded: S3's
/// EventBridge documentation describes no encoding and its samples show
/// raw characters (a `:` arrives as `:`, where a notification has `%3A`).
/// So a `+` in this key is a `+`.
#[derive(Debug, Deserialize)]
struct ObjectCreatedDetail {
    bucket: DetailBucket,
    object: DetailObject,
}

#[derive(Debug, Deserialize)]
struct DetailBucket {
    name: String,
}

#[derive(Debug, Deserialize)]
struct DetailObject {
    key: String,
    #[serde(rename = "version-id", default)]
    version_id: Option<String>,
    #[serde(default)]
    etag: Option<String>,
}

#[derive(Deserialize)]
struct Direct {
    bucket: String,
    key: String,
    #[serde(default)]
    version_id: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// The record fields `aws_lambda_events`' `S3EventRecord` requires but this
/// function never reads. Real notifications always carry them; hand-written
/// events, replays and notifications forwarded by other services often do
/// not, and they were always accepted: missing ones get neutral values
/// before the typed parse, so only `s3.bucket` and `s3.object` are required.
fn fill_unused_record_fields(v: &mut Value) {
    let Some(records) = v.get_mut("Records").and_then(Value::as_array_mut) else {
        return;
    };
    for r in records.iter_mut().filter_map(Value::as_object_mut) {
        r.entry("eventTime")
            .or_insert_with(|| Value::from("1970-01-01T00:00:00Z"));
        r.entry("userIdentity")
            .or_insert_with(|| Value::Object(Default::default()));
        r.entry("requestParameters")
            .or_insert_with(|| Value::Object(Default::default()));
    }
}

fn s3_notification(mut v: Value) -> Result<Vec<Job>, String> {
    fill_unused_record_fields(&mut v);
    let e: S3Event = serde_json::from_value(v).map_err(|e| format!("S3 event: {e}"))?;
    let mut jobs = Vec::new();
    for r in e.records {
        if let Some(name) = &r.event_name {
            if !name.starts_with("ObjectCreated") {
                tracing::info!(event = %name, "not an ObjectCreated event: ignored");
                continue;
            }
        }
        let bucket =
            r.s3.bucket
                .name
                .ok_or("S3 event: a record without s3.bucket.name")?;
        // `urlDecodedKey` is never filled by S3: the key is decoded here.
        let key =
            r.s3.object
                .key
                .ok_or("S3 event: a record without s3.object.key")?;
        jobs.push(Job::new(ObjectRef {
            bucket,
            key: decode_key(&key)?,
            version_id: non_empty(r.s3.object.version_id),
            etag: non_empty(r.s3.object.e_tag),
        }));
    }
    Ok(jobs)
}

fn eventbridge(v: Value) -> Result<Vec<Job>, String> {
    let e: EventBridgeEnvelope =
        serde_json::from_value(v).map_err(|e| format!("EventBridge event: {e}"))?;
    if e.source != "aws.s3" {
        return Err(format!(
            "EventBridge event from {:?}: expected S3 (source aws.s3)",
            e.source
        ));
    }
    if e.detail_type != "Object Created" {
        tracing::info!(detail_type = %e.detail_type, "not an Object Created event: ignored");
        return Ok(Vec::new());
    }
    let d: ObjectCreatedDetail = serde_json::from_value(e.detail)
        .map_err(|e| format!("EventBridge Object Created detail: {e}"))?;
    Ok(vec![Job::new(ObjectRef {
        bucket: d.bucket.name,
        key: d.object.key,
        version_id: non_empty(d.object.version_id),
        etag: non_empty(d.object.etag),
    })])
}

fn batch(v: Value) -> Result<BatchInvocation, String> {
    let p: BatchPayload =
        serde_json::from_value(v).map_err(|e| format!("S3 Batch Operations event: {e}"))?;
    tracing::info!(
        schema = %p.invocation_schema_version,
        job = p.job.id.as_deref().unwrap_or(""),
        user_arguments = ?p.job.user_arguments.unwrap_or_default(),
        tasks = p.tasks.len(),
        "S3 Batch Operations invocation"
    );
    let schema = p.invocation_schema_version;
    let tasks = p
        .tasks
        .into_iter()
        .map(|t| BatchTask {
            job: t.object(&schema).map(Job::new),
            task_id: t.task_id,
        })
        .collect();
    Ok(BatchInvocation {
        schema_version: schema,
        invocation_id: p.invocation_id,
        tasks,
    })
}

/// Turns an invocation payload into what it asks for. Unknown fields are
/// ignored everywhere.
pub fn parse_event(v: Value) -> Result<Event, String> {
    if v.get("Records").is_some() {
        return s3_notification(v).map(Event::Objects);
    }
    if v.get("detail-type").is_some() {
        return eventbridge(v).map(Event::Objects);
    }
    if v.get("invocationSchemaVersion").is_some() {
        return batch(v).map(Event::Batch);
    }
    if v.get("continuation").is_some() {
        let c: ContinuationEvent =
            serde_json::from_value(v).map_err(|e| format!("continuation event: {e}"))?;
        let c = c.continuation;
        return Ok(Event::Objects(vec![Job {
            object: ObjectRef {
                bucket: c.bucket,
                key: c.key,
                version_id: c.version_id,
                etag: c.etag,
            },
            skip_batches: c.skip_batches,
            checkpoint: c.checkpoint,
            attempt: c.attempt,
            carried: c.carried,
            segment: None,
        }]));
    }
    if v.get("segment").is_some() {
        let e: SegmentEvent =
            serde_json::from_value(v).map_err(|e| format!("segment event: {e}"))?;
        let t = e.segment;
        let mut job = Job::new(ObjectRef {
            bucket: t.bucket,
            key: t.key,
            version_id: non_empty(t.version_id),
            etag: non_empty(t.etag),
        });
        job.segment = Some(SegmentRef {
            index: t.index,
            number: t.number,
            start_line: t.start_line,
            part: t.part,
        });
        return Ok(Event::Objects(vec![job]));
    }
    if v.get("bucket").is_some() {
        let d: Direct = serde_json::from_value(v).map_err(|e| format!("direct invocation: {e}"))?;
        return Ok(Event::Objects(vec![Job::new(ObjectRef {
            bucket: d.bucket,
            key: d.key,
            version_id: d.version_id,
            etag: None,
        })]));
    }
    Err("unrecognised event: expected an S3 notification (Records), an EventBridge S3 event (detail-type), an S3 Batch Operations job (invocationSchemaVersion), {\"bucket\",\"key\"}, {\"continuation\":…} or {\"segment\":…}".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn decodes_like_s3_encodes() {
        for (encoded, key) in [
            ("k6-results/my+run+1.json", "k6-results/my run 1.json"),
            ("a%2Bb%3Dc.json", "a+b=c.json"),
            ("r%C3%A9sultat+%E2%9C%93.json.gz", "résultat ✓.json.gz"),
            ("100%25.json", "100%.json"),
            ("bad%zz%2", "bad%zz%2"),
            // Raw `&` and `=` (hand-written events) are kept.
            ("a&b=c.json", "a&b=c.json"),
            ("%EF%BF%BD.json", "\u{FFFD}.json"),
            ("\u{FFFD}+x", "\u{FFFD} x"),
            ("", ""),
        ] {
            assert_eq!(decode_key(encoded).unwrap(), key, "{encoded:?}");
        }
        assert!(decode_key("%FF.json").is_err());
        assert!(decode_key("%EF%BF%BD%FF").is_err());
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
            prop_assert_eq!(decode_key(&s3_encode(&key)).unwrap(), key);
        }

        /// On any input (escapes valid or not, raw `&`/`=`, U+FFFD raw or
        /// encoded, bytes that are not UTF-8) the decoder agrees with a
        /// byte-level reference: same key, or an error exactly when the
        /// bytes are not UTF-8.
        #[test]
        fn agrees_with_a_byte_level_decoder(key in "(%(EF|BF|BD|E2|9C|93|C3|A9|FF|2B|26|zz|2)|[+&=a%é]|\u{FFFD}){0,16}") {
            prop_assert_eq!(decode_key(&key).ok(), reference_decode(&key));
        }
    }

    /// `+` → space, `%XX` → byte, anything else (an invalid escape too) as
    /// it is; `None` unless the bytes are UTF-8.
    fn reference_decode(key: &str) -> Option<String> {
        let b = key.as_bytes();
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let (mut out, mut i) = (Vec::new(), 0);
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                },
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }

    fn objects(v: Value) -> Vec<Job> {
        parse_event(v).unwrap().into_objects().unwrap()
    }

    #[test]
    fn event_kinds() {
        let s3 = json!({"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2024-01-01T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","configurationId":"x","bucket":{"name":"b","arn":"arn:aws:s3:::b"},"object":{"key":"k6-results/a+b.json","size":10,"eTag":"abc","versionId":"v1","sequencer":"01"}}}]});
        let j = objects(s3);
        assert_eq!(
            j[0].object,
            ObjectRef {
                bucket: "b".into(),
                key: "k6-results/a b.json".into(),
                version_id: Some("v1".into()),
                etag: Some("abc".into())
            }
        );
        let d = objects(json!({"bucket":"b","key":"a+b.json"}));
        assert_eq!(d[0].object.key, "a+b.json", "direct keys are not encoded");
        let c = objects(
            json!({"continuation":{"bucket":"b","key":"k","etag":"e","skip_batches":5,"attempt":2,"carried":{}}}),
        );
        assert_eq!((c[0].skip_batches, c[0].attempt), (5, 2));
        assert_eq!(c[0].checkpoint, None, "an event without a checkpoint");
        let c = objects(
            json!({"continuation":{"bucket":"b","key":"k","skip_batches":5,"checkpoint":{"bucket":"s","key":"k6-timestream-state/b/k/e/link-2.ckpt"},"attempt":2}}),
        );
        assert_eq!(
            c[0].checkpoint,
            Some(StoredObject {
                bucket: "s".into(),
                key: "k6-timestream-state/b/k/e/link-2.ckpt".into()
            })
        );
        assert!(parse_event(json!({"hello":1})).is_err());
        let del = json!({"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"a.json"}}}]});
        assert!(objects(del).is_empty());
    }

    #[test]
    fn notifications_stay_lenient() {
        // Only s3.bucket.name and s3.object.key: no eventTime, userIdentity,
        // requestParameters or eventName, plus fields nobody knows.
        let min = json!({"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k6-results/x.json","extra":1}},"whatever":[1,2]}],"more":true});
        let j = objects(min);
        assert_eq!(
            (j[0].object.bucket.as_str(), j[0].object.key.as_str()),
            ("b", "k6-results/x.json")
        );
        assert_eq!(
            (j[0].object.version_id.as_ref(), j[0].object.etag.as_ref()),
            (None, None)
        );
        // Empty strings are no version or ETag.
        let empty = json!({"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"x.json","versionId":"","eTag":""}}}]});
        let j = objects(empty);
        assert_eq!(
            (j[0].object.version_id.as_ref(), j[0].object.etag.as_ref()),
            (None, None)
        );
        // What the function does need is required.
        for bad in [
            json!({"Records":[{"s3":{"bucket":{},"object":{"key":"x.json"}}}]}),
            json!({"Records":[{"s3":{"bucket":{"name":"b"},"object":{}}}]}),
            json!({"Records":[{"s3":{"bucket":{"name":"b"}}}]}),
            json!({"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"%FF"}}}]}),
            json!({"Records":"nope"}),
        ] {
            assert!(parse_event(bad.clone()).is_err(), "{bad}");
        }
        let direct = objects(json!({"bucket":"b","key":"k","version_id":"v","extra":{}}));
        assert_eq!(direct[0].object.version_id.as_deref(), Some("v"));
    }

    fn eventbridge_event(detail_type: &str, key: &str) -> Value {
        json!({
            "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": detail_type, "source": "aws.s3", "account": "111122223333",
            "time": "2021-11-12T00:00:00Z", "region": "ca-central-1",
            "resources": ["arn:aws:s3:::b"],
            "detail": {"version": "0", "bucket": {"name": "b"},
                "object": {"key": key, "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184",
                    "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "617f08299329d189"},
                "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012",
                "source-ip-address": "1.2.3.4", "reason": "PutObject"}
        })
    }

    #[test]
    fn eventbridge_keys_are_not_decoded() {
        for key in [
            "k6-results/a+b.json",
            "k6-results/run 1.json",
            "k6-results/100%25.json",
            "k6-results/t=1:2.json",
        ] {
            let j = objects(eventbridge_event("Object Created", key));
            assert_eq!(
                j[0].object,
                ObjectRef {
                    bucket: "b".into(),
                    key: key.into(),
                    version_id: Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e".into()),
                    etag: Some("b1946ac92492d2347c6235b4d2611184".into()),
                },
                "{key}"
            );
        }
        // Unversioned bucket: no version-id.
        let mut e = eventbridge_event("Object Created", "k6-results/x.json");
        e["detail"]["object"]
            .as_object_mut()
            .unwrap()
            .remove("version-id");
        assert_eq!(objects(e)[0].object.version_id, None);
        // Other S3 events are ignored; other sources and broken details are errors.
        assert!(objects(eventbridge_event("Object Deleted", "k")).is_empty());
        let mut other = eventbridge_event("Object Created", "k");
        other["source"] = json!("aws.ec2");
        assert!(parse_event(other).is_err());
        let mut broken = eventbridge_event("Object Created", "k");
        broken["detail"]["object"]
            .as_object_mut()
            .unwrap()
            .remove("key");
        assert!(parse_event(broken).is_err());
    }

    fn batch_of(v: Value) -> BatchInvocation {
        match parse_event(v).unwrap() {
            Event::Batch(b) => b,
            other => panic!("not a Batch invocation: {other:?}"),
        }
    }

    #[test]
    fn batch_operations_both_schemas() {
        let v1 = json!({"invocationSchemaVersion":"1.0","invocationId":"inv1","job":{"id":"j"},
            "tasks":[{"taskId":"t1","s3Key":"k6-results/a+b%2Bc.json","s3VersionId":"1","s3BucketArn":"arn:aws:s3:::b"}]});
        let b = batch_of(v1);
        assert_eq!(
            (b.schema_version.as_str(), b.invocation_id.as_str()),
            ("1.0", "inv1")
        );
        assert_eq!(b.tasks[0].task_id, "t1");
        assert_eq!(
            b.tasks[0].job.as_ref().unwrap().object,
            ObjectRef {
                bucket: "b".into(),
                key: "k6-results/a b+c.json".into(),
                version_id: Some("1".into()),
                etag: None
            }
        );
        let v2 = json!({"invocationSchemaVersion":"2.0","invocationId":"inv2",
            "job":{"id":"j","userArguments":{"k1":"v1"}},
            "tasks":[{"taskId":"t2","s3Key":"k6-results/r%C3%A9sum%C3%A9.json","s3VersionId":null,"s3Bucket":"b2"},
                     {"taskId":"t3","s3Key":"%FF","s3Bucket":"b2"},
                     {"taskId":"t4","s3Key":"k"}]});
        let b = batch_of(v2);
        let o = &b.tasks[0].job.as_ref().unwrap().object;
        assert_eq!(
            (o.bucket.as_str(), o.key.as_str(), o.version_id.as_ref()),
            ("b2", "k6-results/résumé.json", None)
        );
        // A task this function cannot read is that task's failure only.
        assert!(b.tasks[1].job.as_ref().unwrap_err().contains("UTF-8"));
        assert!(b.tasks[2].job.as_ref().unwrap_err().contains("s3Bucket"));
        assert_eq!(
            parse_event(json!({"invocationSchemaVersion":"2.0","invocationId":"i","tasks":[]}))
                .unwrap()
                .jobs()
                .len(),
            0
        );
        // The regional ARN form of S3's documentation example.
        assert_eq!(
            bucket_from_arn("arn:aws:s3:us-east-1:0123456788:awsexamplebucket1"),
            "awsexamplebucket1"
        );
        assert_eq!(bucket_from_arn("plain"), "plain");
        // An unknown schema: every task fails permanently, the answer keeps its shape.
        let v3 = json!({"invocationSchemaVersion":"3.0","invocationId":"i","tasks":[{"taskId":"t","s3Key":"k","s3Bucket":"b"}]});
        assert!(batch_of(v3).tasks[0]
            .job
            .as_ref()
            .unwrap_err()
            .contains("3.0"));
        // Without task ids there is nothing to answer per task.
        assert!(parse_event(
            json!({"invocationSchemaVersion":"1.0","invocationId":"i","tasks":[{"s3Key":"k"}]})
        )
        .is_err());
        assert!(parse_event(
            json!({"invocationSchemaVersion":"1.0","invocationId":"i","tasks":[]})
        )
        .unwrap()
        .into_objects()
        .is_err());
    }

    /// Every sample in `events/` through the production parser: the keys
    /// `events/expected-keys.json` lists, in the sample's bucket, with the
    /// version and ETag the sample carries.
    #[test]
    fn every_sample_event_parses_to_its_jobs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
        let read = |name: &str| -> Value {
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap())
                .unwrap_or_else(|e| panic!("events/{name}: {e}"))
        };
        let expected: BTreeMap<String, Vec<String>> =
            serde_json::from_value(read("expected-keys.json")).unwrap();
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name == "expected-keys.json" {
                continue;
            }
            let ev = parse_event(read(&name)).unwrap_or_else(|e| panic!("events/{name}: {e}"));
            let jobs = ev.jobs();
            let keys: Vec<&str> = jobs.iter().map(|j| j.object.key.as_str()).collect();
            let want = expected
                .get(&name)
                .unwrap_or_else(|| panic!("events/{name} is not in expected-keys.json"));
            assert_eq!(keys, *want, "events/{name}: keys");
            for j in &jobs {
                assert_eq!(
                    j.object.bucket, "k6-timestream-ingest-123456789012-us-east-1",
                    "events/{name}: bucket"
                );
                assert!(j.object.version_id.as_ref().is_none_or(|v| !v.is_empty()));
            }
            if let Event::Batch(b) = &ev {
                assert!(
                    BATCH_SCHEMA_VERSIONS.contains(&b.schema_version.as_str()),
                    "events/{name}"
                );
                assert!(
                    !b.invocation_id.is_empty()
                        && b.tasks
                            .iter()
                            .all(|t| !t.task_id.is_empty() && t.job.is_ok())
                );
            }
            seen.push((name, ev));
        }
        assert_eq!(seen.len(), expected.len(), "every listed sample exists");
        let by = |n: &str| &seen.iter().find(|(name, _)| name == n).unwrap().1;
        // Per-source facts of the samples.
        let eb = by("eventbridge-object-created.json").jobs()[0].clone();
        assert!(
            eb.object.key.contains('+')
                && eb.object.etag.is_some()
                && eb.object.version_id.is_some()
        );
        let Event::Batch(b1) = by("batch-ops-1.0.json") else {
            panic!("batch 1.0")
        };
        assert_eq!(b1.schema_version, "1.0");
        let Event::Batch(b2) = by("batch-ops-2.0.json") else {
            panic!("batch 2.0")
        };
        assert_eq!(b2.schema_version, "2.0");
        assert_eq!(by("continuation.json").jobs()[0].skip_batches, 123);
        assert!(by("continuation.json").jobs()[0].checkpoint.is_some());
        let seg = by("segment.json").jobs()[0];
        assert_eq!(seg.segment.as_ref().map(|s| s.number), Some(3));
        assert!(seg
            .segment
            .as_ref()
            .unwrap()
            .index
            .key
            .ends_with("/fanout/index.json"));
        assert_eq!(
            seg.object.etag.as_deref(),
            Some("9b2cf535f27731c974343645a3985328-40")
        );
        assert!(!seg.is_original() && by("s3-put-gzip.json").jobs()[0].is_original());
        assert_eq!(
            by("s3-put-versioned.json").jobs()[0]
                .object
                .version_id
                .as_deref(),
            Some("3sL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY_MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo")
        );
    }
}
