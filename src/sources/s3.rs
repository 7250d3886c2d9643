//! S3: reading the exact k6 results object announced ([`S3Source`]), and
//! storing objects ([`S3Put`]: dead letters behind [`ObjectPut`], the
//! Lambda's checkpoints behind [`ObjectStore`]).

use super::{ObjectRef, ObjectSource, OpenedObject, SourceError};
use crate::aws::DisplayErrorChain;
use aws_sdk_s3 as s3;
use std::future::Future;

pub trait ObjectPut: Send + Sync + 'static {
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Why a stored object could not be read, written or deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying (5xx, throttling, network).
    #[error("{0}")]
    Transient(String),
    /// Access denied, no such bucket, …: retrying does not help.
    #[error("{0}")]
    Fatal(String),
}

impl StoreError {
    pub fn retryable(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
}

/// Small objects read, written and deleted whole (the Lambda's
/// checkpoints).
pub trait ObjectStore: Send + Sync + 'static {
    /// The object's bytes; None when there is no such key.
    fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Deleting a key that does not exist succeeds.
    fn delete_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores the object only if no object has the key (S3's conditional
    /// write, `If-None-Match: *`): true when this call created it, false
    /// when it existed. Of concurrent callers exactly one gets true, which
    /// elects one invocation for work that must happen once.
    fn put_object_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// An S3 client; path-style addressing when an endpoint override is set
/// (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`: local S3-compatible
/// endpoints on an IP address cannot do virtual-hosted buckets).
pub fn build_client(sdk: &aws_config::SdkConfig) -> s3::Client {
    client_for(sdk, endpoint_override_set(|v| std::env::var(v).ok()))
}

/// Is an S3 endpoint override set (`AWS_ENDPOINT_URL_S3` or
/// `AWS_ENDPOINT_URL`, non-empty)? `var` reads the environment.
pub fn endpoint_override_set(var: impl Fn(&str) -> Option<String>) -> bool {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| var(v).is_some_and(|s| !s.is_empty()))
}

/// [`build_client`] with the addressing style decided.
pub fn client_for(sdk: &aws_config::SdkConfig, path_style: bool) -> s3::Client {
    let conf = s3::config::Builder::from(sdk)
        .force_path_style(path_style)
        .build();
    s3::Client::from_conf(conf)
}

#[derive(Clone)]
pub struct S3Source {
    pub client: s3::Client,
}

impl ObjectSource for S3Source {
    async fn open(&self, obj: &ObjectRef) -> Result<OpenedObject, SourceError> {
        self.get(obj, 0).await
    }

    async fn open_from(&self, obj: &ObjectRef, offset: u64) -> Result<OpenedObject, SourceError> {
        self.get(obj, offset).await
    }
}

impl S3Source {
    /// GetObject of the pinned object (version, else If-Match ETag), from
    /// byte `offset` on.
    async fn get(&self, obj: &ObjectRef, offset: u64) -> Result<OpenedObject, SourceError> {
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
        if offset > 0 {
            req = req.range(format!("bytes={offset}-"));
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
                    // The range starts at or past the end (S3 checks the
                    // version or ETag first): nothing is left to read.
                    (Some(416), _) | (_, "InvalidRange") if offset > 0 => {
                        return Ok(OpenedObject {
                            body: Box::new(tokio::io::empty()),
                            size: Some(0),
                            etag: obj.etag.clone(),
                            version_id: obj.version_id.clone(),
                        })
                    }
                    (Some(404), _) | (_, "NoSuchKey" | "NoSuchVersion" | "NoSuchBucket") => {
                        SourceError::NotFound(name)
                    }
                    (Some(403), _) | (_, "AccessDenied") => SourceError::AccessDenied(name, msg),
                    (Some(s), _) if s >= 500 || s == 429 || s == 503 => {
                        SourceError::Transient(name, msg)
                    }
                    (None, _) => SourceError::Transient(name, format!("{}", DisplayErrorChain(&e))),
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
            .map_err(|e| format!("s3://{bucket}/{key}: {}", DisplayErrorChain(&e)))
    }
}

/// A store error from an SDK error: retryable for 5xx, throttling and
/// network failures.
fn store_error<E>(
    what: String,
    e: &s3::error::SdkError<E, s3::config::http::HttpResponse>,
) -> StoreError
where
    E: std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let msg = format!("{what}: {}", DisplayErrorChain(e));
    match status {
        Some(s) if s >= 500 || s == 429 => StoreError::Transient(msg),
        Some(_) => StoreError::Fatal(msg),
        // No response: a network failure.
        None => StoreError::Transient(msg),
    }
}

impl ObjectStore for S3Put {
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let what = format!("s3://{bucket}/{key}");
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(store_error(what, &e)),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Transient(format!("{what}: {}", DisplayErrorChain(&e))))?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/octet-stream")
            .body(body.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| store_error(format!("s3://{bucket}/{key}"), &e))
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| store_error(format!("s3://{bucket}/{key}"), &e))
    }

    async fn put_object_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .if_none_match("*")
            .content_type("application/octet-stream")
            .body(body.into())
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            // 412: the key exists. (409 ConditionalRequestConflict, a
            // concurrent conditional write in flight, is a 4xx the caller
            // must retry: mapped to Transient below.)
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(412) => Ok(false),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(409) => Err(
                StoreError::Transient(format!("s3://{bucket}/{key}: {}", DisplayErrorChain(&e))),
            ),
            Err(e) => Err(store_error(format!("s3://{bucket}/{key}"), &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::test_http::{sdk_config, Replay};
    use tokio::io::AsyncReadExt;

    fn obj(version: Option<&str>, etag: Option<&str>) -> ObjectRef {
        ObjectRef {
            bucket: "results".into(),
            key: "runs/checkout 1+ü.json.gz".into(),
            version_id: version.map(str::to_owned),
            etag: etag.map(str::to_owned),
        }
    }

    fn ok(replay: &Replay, body: &str) {
        let len = body.len().to_string();
        replay.respond(
            200,
            &[
                ("etag", "\"d41d8cd9\""),
                ("x-amz-version-id", "v2"),
                ("content-length", &len),
            ],
            body,
        );
    }

    const ENCODED_KEY: &str = "/runs/checkout%201%2B%C3%BC.json.gz";

    #[test]
    fn path_style_exactly_when_an_endpoint_override_is_set() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |v: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == v)
                    .map(|(_, x)| x.to_string())
            }
        };
        assert!(endpoint_override_set(env(&[(
            "AWS_ENDPOINT_URL_S3",
            "http://127.0.0.1:9000"
        )])));
        assert!(endpoint_override_set(env(&[(
            "AWS_ENDPOINT_URL",
            "http://localhost:4566"
        )])));
        assert!(!endpoint_override_set(env(&[("AWS_ENDPOINT_URL_S3", "")])));
        assert!(!endpoint_override_set(env(&[(
            "AWS_ENDPOINT_URL_TIMESTREAM_WRITE",
            "http://x"
        )])));
    }

    #[tokio::test]
    async fn get_object_request_shapes() {
        let replay = Replay::default();
        let sdk = sdk_config(&replay, "eu-west-1", None, None);
        // Against AWS: virtual-hosted, the announced version, no If-Match.
        let src = S3Source {
            client: client_for(&sdk, false),
        };
        ok(&replay, "line\n");
        let mut o = src.open(&obj(Some("v1 /x"), Some("abc"))).await.unwrap();
        let mut body = String::new();
        o.body.read_to_string(&mut body).await.unwrap();
        assert_eq!(body, "line\n");
        assert_eq!(
            (o.etag.as_deref(), o.version_id.as_deref(), o.size),
            (Some("d41d8cd9"), Some("v2"), Some(5))
        );
        let sent = replay.sent().pop().unwrap();
        assert_eq!(sent.method, "GET");
        assert_eq!(
            sent.uri,
            format!(
                "https://results.s3.eu-west-1.amazonaws.com{ENCODED_KEY}?x-id=GetObject&versionId=v1%20%2Fx"
            )
        );
        assert_eq!(sent.header("if-match"), None);

        // An endpoint override: path-style; an unversioned object is read
        // only while it has the announced ETag, quoted as HTTP wants it.
        let local = sdk
            .to_builder()
            .endpoint_url("http://127.0.0.1:9000")
            .build();
        let src = S3Source {
            client: client_for(&local, true),
        };
        for etag in ["abc", "\"abc\""] {
            ok(&replay, "x");
            src.open(&obj(None, Some(etag))).await.unwrap();
            let sent = replay.sent().pop().unwrap();
            assert_eq!(
                sent.uri,
                format!("http://127.0.0.1:9000/results{ENCODED_KEY}?x-id=GetObject")
            );
            assert_eq!(sent.header("if-match"), Some("\"abc\""));
        }
        ok(&replay, "x");
        src.open(&obj(None, None)).await.unwrap();
        assert_eq!(replay.sent().pop().unwrap().header("if-match"), None);
    }

    #[tokio::test]
    async fn get_object_errors_are_typed() {
        let replay = Replay::default();
        // One attempt per error (the client's own retries would ask for
        // more answers; what is mapped is the same).
        let sdk = sdk_config(&replay, "eu-west-1", None, None)
            .to_builder()
            .endpoint_url("http://127.0.0.1:9000")
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        let src = S3Source {
            client: client_for(&sdk, true),
        };
        let xml = |code: &str| format!("<Error><Code>{code}</Code><Message>m</Message></Error>");
        let ct = [("content-type", "application/xml")];
        for (status, code, want) in [
            (412, "PreconditionFailed", "changed"),
            (404, "NoSuchKey", "not found"),
            (404, "NoSuchVersion", "not found"),
            (403, "AccessDenied", "denied"),
            (503, "SlowDown", "transient"),
            (500, "InternalError", "transient"),
            (400, "InvalidArgument", "fatal"),
        ] {
            replay.respond(status, &ct, &xml(code));
            let e = src.open(&obj(None, Some("abc"))).await.err().unwrap();
            let got = match e {
                SourceError::Changed(_) => "changed",
                SourceError::NotFound(_) => "not found",
                SourceError::AccessDenied(..) => "denied",
                SourceError::Transient(..) => "transient",
                SourceError::Fatal(..) => "fatal",
            };
            assert_eq!(got, want, "{status} {code}: {e}");
        }
        replay.fail("connection reset by peer");
        let e = src.open(&obj(None, None)).await.err().unwrap();
        assert!(
            e.retryable() && e.to_string().contains("connection reset"),
            "{e}"
        );
    }

    /// A ranged read asks for the rest from the offset, pinned like a whole
    /// read; a range at or past the end (416) is an empty rest.
    #[tokio::test]
    async fn ranged_reads_are_pinned_and_may_be_empty() {
        let replay = Replay::default();
        let sdk = sdk_config(&replay, "eu-west-1", None, None)
            .to_builder()
            .endpoint_url("http://127.0.0.1:9000")
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        let src = S3Source {
            client: client_for(&sdk, true),
        };
        ok(&replay, "rest\n");
        let mut o = src
            .open_from(&obj(Some("v1"), Some("abc")), 1234)
            .await
            .unwrap();
        let mut body = String::new();
        o.body.read_to_string(&mut body).await.unwrap();
        assert_eq!(body, "rest\n");
        let sent = replay.sent().pop().unwrap();
        assert_eq!(sent.header("range"), Some("bytes=1234-"));
        assert!(sent.uri.ends_with("versionId=v1"), "{}", sent.uri);
        ok(&replay, "x");
        src.open_from(&obj(None, Some("abc")), 7).await.unwrap();
        let sent = replay.sent().pop().unwrap();
        assert_eq!(
            (sent.header("range"), sent.header("if-match")),
            (Some("bytes=7-"), Some("\"abc\""))
        );
        ok(&replay, "whole");
        src.open_from(&obj(None, None), 0).await.unwrap();
        assert_eq!(replay.sent().pop().unwrap().header("range"), None);
        replay.respond(
            416,
            &[("content-type", "application/xml")],
            "<Error><Code>InvalidRange</Code><Message>m</Message></Error>",
        );
        let mut o = src.open_from(&obj(None, Some("abc")), 99).await.unwrap();
        let mut body = Vec::new();
        o.body.read_to_end(&mut body).await.unwrap();
        assert!(body.is_empty() && o.size == Some(0));
        // A replaced object is still caught on a ranged read.
        replay.respond(
            412,
            &[("content-type", "application/xml")],
            "<Error><Code>PreconditionFailed</Code><Message>m</Message></Error>",
        );
        assert!(matches!(
            src.open_from(&obj(None, Some("abc")), 99).await,
            Err(SourceError::Changed(_))
        ));
    }

    /// Checkpoint objects: a missing key reads as None, throttling and 5xx
    /// are retryable, a denial is not; puts and deletes go where asked.
    #[tokio::test]
    async fn the_object_store_maps_missing_keys_and_errors() {
        let replay = Replay::default();
        let sdk = sdk_config(&replay, "eu-west-1", None, None)
            .to_builder()
            .endpoint_url("http://127.0.0.1:9000")
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        let store = S3Put {
            client: client_for(&sdk, true),
        };
        let ct = [("content-type", "application/xml")];
        let xml = |code: &str| format!("<Error><Code>{code}</Code><Message>m</Message></Error>");
        ok(&replay, "state");
        assert_eq!(
            store.get_object("b", "k6-timestream-state/k").await,
            Ok(Some(b"state".to_vec()))
        );
        assert_eq!(
            replay.sent().pop().unwrap().uri,
            "http://127.0.0.1:9000/b/k6-timestream-state/k?x-id=GetObject"
        );
        replay.respond(404, &ct, &xml("NoSuchKey"));
        assert_eq!(store.get_object("b", "k").await, Ok(None));
        for (status, code, retryable) in [
            (503, "SlowDown", true),
            (500, "InternalError", true),
            (403, "AccessDenied", false),
        ] {
            replay.respond(status, &ct, &xml(code));
            let e = store.get_object("b", "k").await.unwrap_err();
            assert_eq!(e.retryable(), retryable, "{status} {code}: {e}");
        }
        replay.respond(200, &[], "");
        store.put_object("b", "k", b"ck".to_vec()).await.unwrap();
        let sent = replay.sent().pop().unwrap();
        assert_eq!(
            (sent.method.as_str(), sent.body.as_slice()),
            ("PUT", &b"ck"[..])
        );
        replay.respond(204, &[], "");
        store.delete_object("b", "k").await.unwrap();
        assert_eq!(replay.sent().pop().unwrap().method, "DELETE");
        replay.fail("connection reset by peer");
        assert!(store
            .put_object("b", "k", Vec::new())
            .await
            .unwrap_err()
            .retryable());
        // Conditional puts: created, existing, raced.
        replay.respond(200, &[], "");
        assert_eq!(
            store.put_object_if_absent("b", "k", b"1".to_vec()).await,
            Ok(true)
        );
        assert_eq!(
            replay.sent().pop().unwrap().header("if-none-match"),
            Some("*")
        );
        replay.respond(412, &ct, &xml("PreconditionFailed"));
        assert_eq!(
            store.put_object_if_absent("b", "k", b"1".to_vec()).await,
            Ok(false)
        );
        replay.respond(409, &ct, &xml("ConditionalRequestConflict"));
        assert!(store
            .put_object_if_absent("b", "k", b"1".to_vec())
            .await
            .unwrap_err()
            .retryable());
        replay.respond(403, &ct, &xml("AccessDenied"));
        assert!(!store
            .put_object_if_absent("b", "k", b"1".to_vec())
            .await
            .unwrap_err()
            .retryable());
    }
}
