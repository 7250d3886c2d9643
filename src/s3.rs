//! S3: reading the exact k6 results object announced, and storing dead
//! letters, behind two small traits so handlers are testable offline.

use crate::writer::dead_letter::{DeadLetter, DeadLetterSink};
use aws_sdk_s3 as s3;
use std::future::Future;
use std::sync::Mutex;
use tokio::io::AsyncRead;

/// The object to read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    /// Decoded key (not form-urlencoded).
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Read only if the object still has this ETag (`If-Match`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl ObjectRef {
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)?;
        if let Some(v) = &self.version_id {
            write!(f, " (version {v})")?;
        }
        Ok(())
    }
}

/// `s3://bucket/key` → (bucket, key).
pub fn parse_s3_url(s: &str) -> Option<(String, String)> {
    let rest = s.strip_prefix("s3://")?;
    let (b, k) = rest.split_once('/')?;
    (!b.is_empty() && !k.is_empty()).then(|| (b.to_owned(), k.to_owned()))
}

pub struct OpenedObject {
    pub body: Box<dyn AsyncRead + Send + Unpin>,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// No such key or version: deleted since the event (not retried).
    #[error("{0}: object not found (deleted or never existed)")]
    NotFound(String),
    /// The ETag no longer matches: replaced since the event (not retried;
    /// the replacement has its own event).
    #[error("{0}: object was replaced since the event (ETag no longer matches)")]
    Changed(String),
    #[error("{0}: access denied: {1}")]
    AccessDenied(String, String),
    /// Worth retrying (5xx, throttling, network).
    #[error("{0}: {1}")]
    Transient(String, String),
    #[error("{0}: {1}")]
    Fatal(String, String),
}

impl SourceError {
    pub fn retryable(&self) -> bool {
        matches!(self, SourceError::Transient(..))
    }
}

pub trait ObjectSource: Send + Sync + 'static {
    fn open(
        &self,
        obj: &ObjectRef,
    ) -> impl Future<Output = Result<OpenedObject, SourceError>> + Send;
}

pub trait ObjectPut: Send + Sync + 'static {
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// An S3 client; path-style addressing when an endpoint override is set
/// (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`: local S3-compatible
/// endpoints on an IP address cannot do virtual-hosted buckets).
pub fn build_client(sdk: &aws_config::SdkConfig) -> s3::Client {
    let local = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    let conf = s3::config::Builder::from(sdk)
        .force_path_style(local)
        .build();
    s3::Client::from_conf(conf)
}

#[derive(Clone)]
pub struct S3Source {
    pub client: s3::Client,
}

impl ObjectSource for S3Source {
    async fn open(&self, obj: &ObjectRef) -> Result<OpenedObject, SourceError> {
        use s3::error::ProvideErrorMetadata;
        let mut req = self.client.get_object().bucket(&obj.bucket).key(&obj.key);
        if let Some(v) = &obj.version_id {
            req = req.version_id(v);
        } else if let Some(e) = &obj.etag {
            // S3 events carry the ETag unquoted; If-Match wants it quoted.
            let quoted = if e.starts_with('"') {
                e.clone()
            } else {
                format!("\"{e}\"")
            };
            req = req.if_match(quoted);
        }
        let name = obj.to_string();
        match req.send().await {
            Ok(out) => Ok(OpenedObject {
                size: out.content_length().and_then(|n| u64::try_from(n).ok()),
                etag: out.e_tag().map(|s| s.trim_matches('"').to_owned()),
                version_id: out.version_id().map(str::to_owned),
                body: Box::new(out.body.into_async_read()),
            }),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let code = e.code().unwrap_or_default().to_owned();
                let msg = format!("{code} {}", e.message().unwrap_or_default())
                    .trim()
                    .to_owned();
                Err(match (status, code.as_str()) {
                    (Some(412), _) | (_, "PreconditionFailed") => SourceError::Changed(name),
                    (Some(404), _) | (_, "NoSuchKey" | "NoSuchVersion" | "NoSuchBucket") => {
                        SourceError::NotFound(name)
                    }
                    (Some(403), _) | (_, "AccessDenied") => SourceError::AccessDenied(name, msg),
                    (Some(s), _) if s >= 500 || s == 429 || s == 503 => {
                        SourceError::Transient(name, msg)
                    }
                    (None, _) => SourceError::Transient(
                        name,
                        format!("{}", crate::writer::aws::DisplayErrorChain(&e)),
                    ),
                    _ => SourceError::Fatal(name, msg),
                })
            }
        }
    }
}

#[derive(Clone)]
pub struct S3Put {
    pub client: s3::Client,
}

impl ObjectPut for S3Put {
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .body(body.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "s3://{bucket}/{key}: {}",
                    crate::writer::aws::DisplayErrorChain(&e)
                )
            })
    }
}

/// Dead letters as JSON-lines objects `PREFIX + KEY + ".part-NNNN.jsonl"`,
/// flushed every ~4 MiB and at the end. The names depend only on the
/// source object and the first batch of this run, so a retried invocation
/// overwrites its own parts instead of duplicating them.
pub struct S3DeadLetterSink<P> {
    put: P,
    bucket: String,
    base: String,
    state: tokio::sync::Mutex<(Vec<u8>, u32)>,
    written: Mutex<Vec<String>>,
}

const PART_BYTES: usize = 4 << 20;

impl<P: ObjectPut> S3DeadLetterSink<P> {
    pub fn new(
        put: P,
        bucket: impl Into<String>,
        prefix: &str,
        source: &ObjectRef,
        first_batch: u64,
    ) -> Self {
        let base = format!(
            "{prefix}{}/{}.from-batch-{first_batch}",
            source.bucket, source.key
        );
        Self {
            put,
            bucket: bucket.into(),
            base,
            state: tokio::sync::Mutex::new((Vec::new(), 0)),
            written: Mutex::new(Vec::new()),
        }
    }

    async fn flush_part(&self, st: &mut (Vec<u8>, u32)) -> Result<(), String> {
        if st.0.is_empty() {
            return Ok(());
        }
        st.1 += 1;
        let key = format!("{}.part-{:04}.jsonl", self.base, st.1);
        self.put
            .put(&self.bucket, &key, std::mem::take(&mut st.0))
            .await?;
        self.written
            .lock()
            .unwrap()
            .push(format!("s3://{}/{key}", self.bucket));
        Ok(())
    }
}

impl<P: ObjectPut> DeadLetterSink for S3DeadLetterSink<P> {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), String> {
        let mut st = self.state.lock().await;
        for l in letters {
            serde_json::to_writer(&mut st.0, &l).map_err(|e| e.to_string())?;
            st.0.push(b'\n');
        }
        if st.0.len() >= PART_BYTES {
            self.flush_part(&mut st).await?;
        }
        Ok(())
    }

    async fn finish(&self) -> Result<Option<String>, String> {
        let mut st = self.state.lock().await;
        self.flush_part(&mut st).await?;
        let w = self.written.lock().unwrap();
        Ok(w.first().map(|first| {
            if w.len() == 1 {
                first.clone()
            } else {
                format!("{first} (+{} more parts)", w.len() - 1)
            }
        }))
    }

    fn location(&self) -> String {
        format!("s3://{}/{}.part-*.jsonl", self.bucket, self.base)
    }
}
