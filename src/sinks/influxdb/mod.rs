//! InfluxDB (1.x, 2.x and 3, as Amazon Timestream for InfluxDB runs them):
//! records → line-protocol requests ([`request`]), the line protocol
//! itself ([`encode`]), the HTTP writer and its error mapping
//! ([`service`]), and the sink's options ([`config`]).
//!
//! The layout is k6's own InfluxDB output's: measurement = metric name,
//! tags = k6 tags (minus `tagsAsFields`, by default `vu`, `iter`, `url`),
//! one float field `value`, and the tags named in `tagsAsFields` as
//! fields. k6 does not write metadata to InfluxDB; here each metadata
//! entry (`vu`, `iter`, trace ids…) is a field as well, a string unless
//! `tagsAsFields` names it with a type. So dashboards and queries made for
//! k6's output work on this data.

pub mod config;
pub mod encode;
pub mod request;
pub mod service;

pub use config::{InfluxArgs, InfluxConfig, InfluxEncodingArgs, InfluxSettings};
pub use request::{EncoderOptions, InfluxEncoder, InfluxRequest};
pub use service::{InfluxError, InfluxWriter};

/// Reads the token from the Secrets Manager secret `arn` (once, at
/// start): the secret string, plain or JSON with a `token` key (see
/// [`config::token_from_secret`]).
pub async fn read_token_secret(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<String, String> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            format!(
                "reading the InfluxDB token from secret {arn}: {}",
                crate::aws::DisplayErrorChain(&e)
            )
        })?;
    let secret = out
        .secret_string()
        .ok_or_else(|| format!("secret {arn} has no string value (a binary secret?)"))?;
    config::token_from_secret(secret).map_err(|e| format!("secret {arn}: {e}"))
}
