//! Where k6 results come from: a local file or stdin ([`local`]), or the S3
//! object an event announced ([`s3`]). What a handler needs of a source is
//! the [`ObjectSource`] trait, so it is testable offline.

pub mod glob;
pub mod local;
pub mod s3;

/// Key (and file name) endings that look like k6 results: what the Lambda
/// takes from S3 events by default and what `ingest` picks from a prefix.
pub const DEFAULT_SUFFIXES: &[&str] = &[".json", ".json.gz", ".ndjson", ".gz", ".csv", ".csv.gz"];

/// Does `key` end with one of `suffixes` (ASCII case-insensitive)?
pub fn has_suffix<S: AsRef<str>>(key: &str, suffixes: &[S]) -> bool {
    let lower = key.to_ascii_lowercase();
    suffixes
        .iter()
        .any(|s| lower.ends_with(&s.as_ref().to_ascii_lowercase()))
}

use std::future::Future;
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

    /// A local file for [`local::LocalFiles`]: the path as the key, no
    /// bucket, not pinned.
    pub fn local(path: &str) -> ObjectRef {
        ObjectRef {
            bucket: String::new(),
            key: path.to_owned(),
            version_id: None,
            etag: None,
        }
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

    /// The object from byte `offset` on (a ranged read, pinned to the same
    /// version or ETag as [`Self::open`]); at or past the end: an empty
    /// body. `size` is then what is left.
    fn open_from(
        &self,
        obj: &ObjectRef,
        offset: u64,
    ) -> impl Future<Output = Result<OpenedObject, SourceError>> + Send;

    /// The object from byte `offset` on: [`Self::open`] from its start (a
    /// plain read), else [`Self::open_from`].
    fn open_at(
        &self,
        obj: &ObjectRef,
        offset: u64,
    ) -> impl Future<Output = Result<OpenedObject, SourceError>> + Send {
        async move {
            if offset > 0 {
                self.open_from(obj, offset).await
            } else {
                self.open(obj).await
            }
        }
    }
}
