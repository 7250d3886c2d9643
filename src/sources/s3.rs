//! S3: reading the exact k6 results object announced ([`S3Source`]), and
//! storing objects ([`S3Put`], for dead letters) behind [`ObjectPut`].

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
