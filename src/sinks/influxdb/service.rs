//! Sends line-protocol bodies to InfluxDB's v1, v2 or v3 write API and
//! turns each answer into a typed result. One request per call, no retry
//! here: the retry loop decides what to do with [`InfluxError`].
//!
//! How each API reports refused lines (all with HTTP 400 unless noted):
//!
//! * v1 (InfluxDB 1.x): `{"error":"partial write: <reason> dropped=N"}`.
//!   Lines that failed to parse are named by their text, one
//!   `unable to parse '<line>': <why>` per line, and are not counted in
//!   `dropped`; points the storage refused (field type conflicts,
//!   retention bounds, limits) are only counted in `dropped`, and a
//!   `field type conflict` reason names the measurement, field and type,
//!   which lets us find those lines. When every line fails to parse there
//!   is no `partial write:` prefix. A response reports storage drops or
//!   parse failures, never both (1.x checks the storage result first).
//! * v2 (InfluxDB 2.x): JSON `{"code","message"}`. A parse failure refuses
//!   the whole batch (400, code `invalid`, every failed line named as in
//!   v1); storage refusals are 422 (`unprocessable entity`) with v1's
//!   `partial write: ... dropped=N` message.
//! * v3 (InfluxDB 3): `{"error":"partial write of line protocol occurred",
//!   "data":[{"original_line","line_number","error_message"}]}` with
//!   1-based line numbers; the other lines are stored. With
//!   `accept_partial=false` (not used here) `data` is one object and
//!   nothing is stored.
//!
//! Re-sending lines InfluxDB already stored is harmless: a point is keyed by
//! measurement, tag set, field and time, and a re-write replaces it with
//! the same value.
//!
//! As a [`Service`] of the shared driver, the answers map onto
//! [`WriteError`] (see [`write_error`]): refused lines name their records
//! (rejected, dead-lettered), a refusal that does not say which records
//! is split until it does.

use super::config::{Api, Auth, InfluxConfig};
use super::encode::{parse_lines_with, Dialect, ParsedValue};
use super::request::InfluxRequest;
use crate::sinks::{RejectedRecord, Service, WriteError};
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::{Method, StatusCode, Url};
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Why a write (or probe) did not fully succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfluxError {
    /// 429, or 503: try again after `retry_after` when the server said.
    #[error("throttled (retry after {retry_after:?}): {message}")]
    Throttled {
        retry_after: Option<Duration>,
        message: String,
    },
    /// Any other 5xx.
    #[error("server error {status}: {message}")]
    Server { status: u16, message: String },
    /// Connection refused or reset, DNS, TLS, an answer cut short.
    #[error("connection error: {0}")]
    Connection(String),
    /// The request timeout elapsed.
    #[error("request timed out")]
    Timeout,
    /// Some lines were refused, the others stored. `lines`: the refused
    /// lines the answer named, by 0-based index into the body (sorted,
    /// unique), each with the server's reason; `unidentified` more were
    /// refused that the answer did not let us name (InfluxDB 1.x/2.x count
    /// storage refusals without naming them, except field type conflicts).
    #[error("{} line(s) refused, {unidentified} more unnamed: {message}", lines.len())]
    PartialWrite {
        lines: Vec<RefusedLine>,
        unidentified: usize,
        message: String,
    },
    /// The whole body was refused, nothing stored. `lines` are those the
    /// server named as the cause (possibly none): without them the rest of
    /// the body can be sent again.
    #[error("request refused ({} line(s) named): {message}", lines.len())]
    BadRequest { lines: Vec<usize>, message: String },
    /// 401 or 403: missing, wrong or insufficient credentials.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The database, retention policy, organization or bucket is missing.
    #[error("not found: {0}")]
    NotFound(String),
    /// 413: the body is larger than the server accepts; split it.
    #[error("request too large: {0}")]
    TooLarge(String),
    /// Anything else: a configuration error or an unexpected answer.
    #[error("{0}")]
    Fatal(String),
}

/// A line of a body the server refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedLine {
    /// 0-based index of the line in the body.
    pub line: usize,
    pub reason: String,
}

impl InfluxError {
    /// The indexes of the refused lines a partial write names.
    pub fn refused_indexes(&self) -> Vec<usize> {
        match self {
            Self::PartialWrite { lines, .. } => lines.iter().map(|l| l.line).collect(),
            Self::BadRequest { lines, .. } => lines.clone(),
            _ => Vec::new(),
        }
    }

    /// Whether sending the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. } | Self::Server { .. } | Self::Connection(_) | Self::Timeout
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What a successful probe learnt about the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerInfo {
    /// `X-Influxdb-Version`, when the server sends it.
    pub version: Option<String>,
}

/// Which of the three write APIs, without its target (for classifying).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    V1,
    V2,
    V3,
}

impl ApiKind {
    fn of(api: &Api) -> Self {
        match api {
            Api::V1 { .. } => Self::V1,
            Api::V2 { .. } => Self::V2,
            Api::V3 { .. } => Self::V3,
        }
    }
}

/// Longest answer body read; InfluxDB 1.x can quote every refused line.
const MAX_ANSWER_BYTES: usize = 16 << 20;

pub struct InfluxWriter {
    client: reqwest::Client,
    kind: ApiKind,
    dialect: Dialect,
    write_url: Url,
    health_url: Url,
    auth: Option<HeaderValue>,
    gzip: bool,
    target: String,
}

impl std::fmt::Debug for InfluxWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxWriter")
            .field("kind", &self.kind)
            .field("write_url", &self.write_url.as_str())
            .finish_non_exhaustive()
    }
}

fn endpoint(base: &str, path: &str, query: &[(&str, &str)]) -> Result<Url, InfluxError> {
    let mut url = Url::parse(&format!("{}{path}", base.trim_end_matches('/')))
        .map_err(|e| InfluxError::Fatal(format!("invalid InfluxDB URL {base:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(InfluxError::Fatal(format!(
            "invalid InfluxDB URL {base:?}: the scheme must be http or https"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(InfluxError::Fatal(format!(
            "invalid InfluxDB URL {base:?}: no query or fragment expected"
        )));
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

/// rustls with aws-lc-rs (the provider the AWS SDK already links) and the
/// platform's root certificates, handed to reqwest so that no process-wide
/// default provider is needed.
fn tls_config(https: bool) -> Result<rustls::ClientConfig, InfluxError> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for cert in loaded.certs {
        // A certificate the store cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if https && roots.is_empty() {
        return Err(InfluxError::Fatal(format!(
            "no usable root certificate found on this system ({} error(s) loading them)",
            loaded.errors.len()
        )));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| InfluxError::Fatal(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl InfluxWriter {
    pub fn new(cfg: &InfluxConfig) -> Result<Self, InfluxError> {
        let (write_url, health_path) = match &cfg.api {
            Api::V1 {
                database,
                retention_policy,
            } => {
                let mut q = vec![("db", database.as_str())];
                if let Some(rp) = retention_policy {
                    q.push(("rp", rp.as_str()));
                }
                q.push(("precision", "ns"));
                (endpoint(&cfg.url, "/write", &q)?, "/ping")
            }
            Api::V2 { org, bucket } => (
                endpoint(
                    &cfg.url,
                    "/api/v2/write",
                    &[("org", org), ("bucket", bucket), ("precision", "ns")],
                )?,
                "/health",
            ),
            Api::V3 { database } => (
                endpoint(
                    &cfg.url,
                    "/api/v3/write_lp",
                    &[
                        ("db", database),
                        ("precision", "nanosecond"),
                        ("accept_partial", "true"),
                    ],
                )?,
                "/health",
            ),
        };
        let health_url = endpoint(&cfg.url, health_path, &[])?;
        let kind = ApiKind::of(&cfg.api);
        let auth = match &cfg.auth {
            Auth::None => None,
            Auth::Basic { username, password } => {
                let mut enc = Vec::new();
                write!(enc, "{username}:{password}").expect("write to a Vec");
                Some(format!("Basic {}", base64(&enc)))
            }
            Auth::Token(t) if kind == ApiKind::V3 => Some(format!("Bearer {t}")),
            Auth::Token(t) => Some(format!("Token {t}")),
        }
        .map(|h| {
            HeaderValue::from_str(&h)
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
                .map_err(|_| {
                    InfluxError::Fatal(
                        "credentials contain characters not allowed in an HTTP header".into(),
                    )
                })
        })
        .transpose()?;

        let tls = tls_config(write_url.scheme() == "https")?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            .user_agent(concat!("k6-timestream/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| InfluxError::Fatal(format!("HTTP client setup: {e}")))?;
        Ok(Self {
            client,
            kind,
            dialect: cfg.api.dialect(),
            write_url,
            health_url,
            auth,
            gzip: cfg.gzip,
            target: cfg.api.target(),
        })
    }

    pub fn kind(&self) -> ApiKind {
        self.kind
    }

    /// The dialect bodies for this writer must be encoded in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Writes `body`: `line_count` lines, each ending with `\n`, as the
    /// encoder appends them. Line indexes in the error refer to this body.
    pub async fn write(&self, body: &[u8], line_count: usize) -> Result<(), InfluxError> {
        debug_assert_eq!(
            memchr_count(body),
            line_count,
            "line_count must match the body"
        );
        let answer = self.post_write(body).await?;
        classify(
            self.kind,
            answer.status,
            &answer.headers,
            &answer.body,
            body,
            self.dialect,
            SystemTime::now(),
        )
    }

    /// Checks, before any work, that the server answers and that the
    /// target exists and takes writes with these credentials:
    ///
    /// * v1: `GET /ping`, then an empty write to the target. InfluxDB 1.x
    ///   looks the database up and checks the user before reading the body
    ///   (404 `database not found` for a missing one, 204 otherwise).
    /// * v2: `GET /health`, then an empty write: InfluxDB 2 looks up the
    ///   organization and bucket (404) and the token's write permission
    ///   (403) before it refuses the empty batch (400 `writing requires
    ///   points`). A bucket listing would need a read permission a
    ///   write-only token lacks.
    /// * v3: `GET /health` with the token (401 without a valid one).
    ///   InfluxDB 3 creates a missing database on first write, so there is
    ///   nothing more to check up front.
    ///
    /// For the empty write, 2xx and 400 both mean the checks passed.
    pub async fn probe(&self) -> Result<ServerInfo, InfluxError> {
        let health = self
            .send(Method::GET, self.health_url.clone(), None)
            .await?;
        if !health.status.is_success() {
            return Err(classify_status(self.kind, &health, &self.target)
                .unwrap_or_else(|| unexpected(&health)));
        }
        let info = ServerInfo {
            version: health
                .headers
                .get("x-influxdb-version")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        if self.kind == ApiKind::V3 {
            return Ok(info);
        }
        let answer = self
            .send(Method::POST, self.write_url.clone(), Some(Vec::new()))
            .await?;
        if answer.status.is_success() || answer.status == StatusCode::BAD_REQUEST {
            return Ok(info);
        }
        match classify(
            self.kind,
            answer.status,
            &answer.headers,
            &answer.body,
            b"",
            self.dialect,
            SystemTime::now(),
        ) {
            Err(InfluxError::NotFound(m)) => {
                Err(InfluxError::NotFound(format!("{}: {m}", self.target)))
            }
            Err(e) => Err(e),
            Ok(()) => Ok(info),
        }
    }

    async fn post_write(&self, body: &[u8]) -> Result<Answer, InfluxError> {
        let payload = if self.gzip { gzip(body) } else { body.to_vec() };
        self.send(Method::POST, self.write_url.clone(), Some(payload))
            .await
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, InfluxError> {
        let mut req = self
            .client
            .request(method, url)
            .header("accept", "application/json");
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "text/plain; charset=utf-8");
            if self.gzip && !body.is_empty() {
                req = req.header(CONTENT_ENCODING, "gzip");
            }
            req = req.body(body);
        }
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = read_limited(resp).await?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, InfluxError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
        let room = MAX_ANSWER_BYTES.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room < chunk.len() {
            break;
        }
    }
    Ok(out)
}

fn transport_error(e: reqwest::Error) -> InfluxError {
    if e.is_timeout() {
        return InfluxError::Timeout;
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_builder() {
        InfluxError::Fatal(msg)
    } else {
        InfluxError::Connection(msg)
    }
}

fn memchr_count(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

fn gzip(body: &[u8]) -> Vec<u8> {
    // Level 1: about 3x faster than the default for ~10% more bytes on
    // line protocol, which is already highly repetitive.
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body).expect("write to a Vec");
    enc.finish().expect("write to a Vec")
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn message_of(kind: ApiKind, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let key = match kind {
        ApiKind::V1 | ApiKind::V3 => "error",
        ApiKind::V2 => "message",
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get(key).and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned())
}

fn unexpected(a: &Answer) -> InfluxError {
    InfluxError::Fatal(format!(
        "unexpected answer {}: {}",
        a.status,
        String::from_utf8_lossy(&a.body).trim()
    ))
}

/// The statuses whose meaning does not depend on the body.
fn classify_status(kind: ApiKind, a: &Answer, target: &str) -> Option<InfluxError> {
    let message = || message_of(kind, &a.body);
    Some(match a.status.as_u16() {
        401 | 403 => InfluxError::Unauthorized(message()),
        404 => InfluxError::NotFound(format!("{target}: {}", message())),
        413 => InfluxError::TooLarge(message()),
        429 | 503 => InfluxError::Throttled {
            retry_after: a
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
            message: message(),
        },
        s @ 500..=599 => InfluxError::Server {
            status: s,
            message: message(),
        },
        _ => return None,
    })
}

/// Turns a write answer into the result, naming refused lines of `sent`.
pub fn classify(
    kind: ApiKind,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    sent: &[u8],
    dialect: Dialect,
    now: SystemTime,
) -> Result<(), InfluxError> {
    if status.is_success() {
        return Ok(());
    }
    let message = message_of(kind, body);
    let lines = SentLines::new(sent, dialect);
    match (kind, status.as_u16()) {
        (_, 401 | 403) => Err(InfluxError::Unauthorized(message)),
        (_, 404) => Err(InfluxError::NotFound(message)),
        (_, 413) => Err(InfluxError::TooLarge(message)),
        (_, 429 | 503) => Err(InfluxError::Throttled {
            retry_after: headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now)),
            message,
        }),
        (ApiKind::V1, 400) => Err(classify_v1_refusal(message, &lines)),
        (ApiKind::V2, 400) => Err(InfluxError::BadRequest {
            lines: indexes(&lines.named_by_parse_errors(&message)),
            message,
        }),
        (ApiKind::V2, 422) => Err(storage_refusal(message, &lines)),
        (ApiKind::V3, 400 | 422) => {
            Err(classify_v3_refusal(body, message, &lines, status.as_u16()))
        }
        // InfluxDB 1.x answers a missing retention policy with a 500.
        (ApiKind::V1, 500) if message.starts_with("retention policy not found") => {
            Err(InfluxError::NotFound(message))
        }
        (_, s @ 500..=599) => Err(InfluxError::Server { status: s, message }),
        (_, s) => Err(InfluxError::Fatal(format!(
            "unexpected answer {s}: {message}"
        ))),
    }
}

fn indexes(lines: &[RefusedLine]) -> Vec<usize> {
    lines.iter().map(|l| l.line).collect()
}

fn classify_v1_refusal(message: String, lines: &SentLines<'_>) -> InfluxError {
    // The only signal InfluxDB 1.x gives for these is the message.
    if message.starts_with("retention policy not found")
        || message.starts_with("database not found")
    {
        return InfluxError::NotFound(message);
    }
    let named = lines.named_by_parse_errors(&message);
    if !named.is_empty() {
        return InfluxError::PartialWrite {
            lines: named,
            unidentified: 0,
            message,
        };
    }
    if message.starts_with("partial write:") {
        return storage_refusal(message, lines);
    }
    InfluxError::BadRequest {
        lines: Vec::new(),
        message,
    }
}

/// `partial write: <reason> dropped=N` from the storage layer (1.x, 2.x).
fn storage_refusal(message: String, lines: &SentLines<'_>) -> InfluxError {
    let dropped = dropped_count(&message);
    // The reason, without the prefix and the count around it.
    let reason = message
        .strip_prefix("failure writing points to database: ")
        .unwrap_or(&message);
    let reason = reason.strip_prefix("partial write: ").unwrap_or(reason);
    let reason = reason.rfind(" dropped=").map_or(reason, |at| &reason[..at]);
    let named: Vec<RefusedLine> = storage_reason(&message)
        .map(|r| lines.matching(&r))
        .unwrap_or_default()
        .into_iter()
        .map(|line| RefusedLine {
            line,
            reason: reason.to_owned(),
        })
        .collect();
    InfluxError::PartialWrite {
        unidentified: dropped.map_or(0, |d| d.saturating_sub(named.len())),
        lines: named,
        message,
    }
}

fn classify_v3_refusal(
    body: &[u8],
    message: String,
    lines: &SentLines<'_>,
    status: u16,
) -> InfluxError {
    let data = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("data").cloned());
    let index = |item: &serde_json::Value| {
        item.get("line_number")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n >= 1 && n <= lines.count())
            .map(|n| n - 1)
    };
    match data {
        Some(serde_json::Value::Array(items)) => {
            let mut named: Vec<RefusedLine> = items
                .iter()
                .filter_map(|item| {
                    Some(RefusedLine {
                        line: index(item)?,
                        reason: item
                            .get("error_message")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("refused")
                            .to_owned(),
                    })
                })
                .collect();
            named.sort_by_key(|l| l.line);
            named.dedup_by_key(|l| l.line);
            let unidentified = items.len().saturating_sub(named.len());
            InfluxError::PartialWrite {
                lines: named,
                unidentified,
                message: detail(message, &items),
            }
        }
        Some(item @ serde_json::Value::Object(_)) => InfluxError::BadRequest {
            lines: index(&item).into_iter().collect(),
            message: detail(message, std::slice::from_ref(&item)),
        },
        _ if status == 422 => InfluxError::PartialWrite {
            lines: Vec::new(),
            unidentified: lines.count(),
            message,
        },
        _ => InfluxError::BadRequest {
            lines: Vec::new(),
            message,
        },
    }
}

/// The summary plus the first few per-line reasons.
fn detail(message: String, items: &[serde_json::Value]) -> String {
    let reasons: Vec<String> = items
        .iter()
        .take(3)
        .filter_map(|i| {
            Some(format!(
                "line {}: {}",
                i.get("line_number")?.as_u64()?,
                i.get("error_message")?.as_str()?
            ))
        })
        .collect();
    if reasons.is_empty() {
        message
    } else {
        format!("{message}: {}", reasons.join("; "))
    }
}

/// The `dropped=N` that ends InfluxDB 1.x/2.x partial-write messages.
fn dropped_count(message: &str) -> Option<usize> {
    let at = message.rfind("dropped=")?;
    let digits: String = message[at + "dropped=".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The storage refusals of InfluxDB 1.x/2.x whose message says which
/// points they are about (it names the first refusal only).
#[derive(Debug, PartialEq, Eq)]
enum StorageReason {
    /// `field type conflict: input field "F" on measurement "M" is type T,
    /// already exists as type U`: lines of M whose F has type T.
    TypeConflict {
        measurement: String,
        field: String,
        input_type: String,
    },
    /// `invalid field name: input field "F" on measurement "M" is invalid`
    /// (`time`).
    InvalidField { measurement: String, field: String },
    /// `invalid tag key: input tag "K" on measurement "M" is invalid`.
    InvalidTag { measurement: String, tag: String },
}

fn storage_reason(message: &str) -> Option<StorageReason> {
    fn quoted_pair<'m>(message: &'m str, open: &str) -> Option<(&'m str, &'m str)> {
        let rest = &message[message.find(open)? + open.len()..];
        let (name, rest) = rest.split_once("\" on measurement \"")?;
        let end = rest.rfind("\" is ")?;
        Some((name, &rest[..end]))
    }
    if let Some((field, measurement)) = quoted_pair(message, "field type conflict: input field \"")
    {
        let after = &message[message.rfind("\" is type ")? + "\" is type ".len()..];
        return Some(StorageReason::TypeConflict {
            measurement: measurement.to_owned(),
            field: field.to_owned(),
            input_type: after.split(',').next()?.trim().to_owned(),
        });
    }
    if let Some((field, measurement)) = quoted_pair(message, "invalid field name: input field \"") {
        return Some(StorageReason::InvalidField {
            measurement: measurement.to_owned(),
            field: field.to_owned(),
        });
    }
    let (tag, measurement) = quoted_pair(message, "invalid tag key: input tag \"")?;
    Some(StorageReason::InvalidTag {
        measurement: measurement.to_owned(),
        tag: tag.to_owned(),
    })
}

/// The lines of a sent body, for naming the ones an answer refers to.
struct SentLines<'a> {
    lines: Vec<&'a [u8]>,
    dialect: Dialect,
}

impl<'a> SentLines<'a> {
    fn new(body: &'a [u8], dialect: Dialect) -> Self {
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        let lines = if body.is_empty() {
            Vec::new()
        } else {
            body.split(|&c| c == b'\n').collect()
        };
        Self { lines, dialect }
    }

    fn count(&self) -> usize {
        self.lines.len()
    }

    /// Lines quoted by `unable to parse '<line>': <reason>` entries (one per
    /// message line), with `unable to parse: <reason>`. A line's text may
    /// itself contain `': `, so each candidate end is tried against the
    /// sent lines.
    fn named_by_parse_errors(&self, message: &str) -> Vec<RefusedLine> {
        const OPEN: &str = "unable to parse '";
        if !message.contains(OPEN) {
            return Vec::new();
        }
        let mut by_text: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for (i, l) in self.lines.iter().enumerate() {
            by_text.entry(l).or_default().push(i);
        }
        let mut named: Vec<RefusedLine> = Vec::new();
        for entry in message.split('\n') {
            let Some(at) = entry.find(OPEN) else { continue };
            let rest = &entry[at + OPEN.len()..];
            let found = rest.match_indices("': ").find_map(|(end, _)| {
                by_text
                    .get(&rest.as_bytes()[..end])
                    .map(|idx| (idx, &rest[end + 3..]))
            });
            if let Some((idx, why)) = found {
                // The last entry carries the response's ` dropped=N`.
                let why = why.rfind(" dropped=").map_or(why, |at| &why[..at]);
                named.extend(idx.iter().map(|&line| RefusedLine {
                    line,
                    reason: format!("unable to parse: {why}"),
                }));
            }
        }
        named.sort_by_key(|l| l.line);
        named.dedup_by_key(|l| l.line);
        named
    }

    /// The lines a storage refusal is about.
    fn matching(&self, reason: &StorageReason) -> Vec<usize> {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                let Ok(text) = std::str::from_utf8(l) else {
                    return false;
                };
                let Ok(parsed) = parse_lines_with(self.dialect, &format!("{text}\n")) else {
                    return false;
                };
                parsed.first().is_some_and(|p| match reason {
                    StorageReason::TypeConflict {
                        measurement,
                        field,
                        input_type,
                    } => {
                        p.measurement == *measurement
                            && p.field(field).map(ParsedValue::type_name)
                                == Some(input_type.as_str())
                    }
                    StorageReason::InvalidField { measurement, field } => {
                        p.measurement == *measurement && p.field(field).is_some()
                    }
                    StorageReason::InvalidTag { measurement, tag } => {
                        p.measurement == *measurement && p.tag(tag).is_some()
                    }
                })
            })
            .map(|(i, _)| i)
            .collect()
    }
}

impl Service<InfluxRequest> for InfluxWriter {
    async fn write(&self, req: &InfluxRequest) -> Result<(), WriteError> {
        InfluxWriter::write(self, &req.body, req.line_count())
            .await
            .map_err(|e| write_error(e, req))
    }
}

/// What the driver makes of an InfluxDB answer for `req`:
///
/// * a partial write naming every refused line: the records holding them
///   are rejected (a record is one k6 group, several lines: it is
///   rejected if any of its lines was), the others were stored;
/// * a partial write that leaves refused lines unnamed (InfluxDB 1.x/2.x
///   count storage refusals), and any whole-body refusal (400, 413):
///   [`WriteError::Validation`], so the driver halves the request until
///   the refused records stand alone. Lines already stored are stored
///   again with the same values, which changes nothing. A single record
///   with unnamed refused lines is rejected;
/// * throttling carries its `Retry-After`; 401/403 and a missing database
///   or bucket stop the run.
pub fn write_error(e: InfluxError, req: &InfluxRequest) -> WriteError {
    match e {
        InfluxError::Throttled {
            retry_after,
            message,
        } => WriteError::Throttled {
            message,
            retry_after,
        },
        InfluxError::Server { status, message } => {
            WriteError::Server(format!("HTTP {status}: {message}"))
        }
        InfluxError::Connection(m) => WriteError::Connection(m),
        InfluxError::Timeout => WriteError::Timeout,
        InfluxError::PartialWrite {
            lines,
            unidentified,
            message,
        } => {
            if unidentified == 0 && !lines.is_empty() {
                return WriteError::Rejected(rejected_records(&lines, req));
            }
            if req.records.len() == 1 {
                let reason = lines.first().map_or(message, |l| l.reason.clone());
                return WriteError::Rejected(vec![RejectedRecord {
                    index: 0,
                    reason,
                    existing_version: None,
                }]);
            }
            WriteError::Validation(format!(
                "{message} ({unidentified} refused line(s) not named: halving the request to find them)"
            ))
        }
        InfluxError::BadRequest { message, .. } => WriteError::Validation(message),
        InfluxError::TooLarge(m) => WriteError::Validation(format!("request too large: {m}")),
        InfluxError::Unauthorized(m) => WriteError::AccessDenied(m),
        InfluxError::NotFound(m) => WriteError::NotFound(m),
        InfluxError::Fatal(m) => WriteError::Fatal(m),
    }
}

/// One rejection per record with a refused line; the reason is the first
/// refused line's, with how many of the record's lines were refused.
fn rejected_records(lines: &[RefusedLine], req: &InfluxRequest) -> Vec<RejectedRecord> {
    let mut out: Vec<RejectedRecord> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for l in lines {
        let Some(index) = req.record_of_line(l.line) else {
            continue;
        };
        match out.last() {
            Some(last) if last.index == index => *counts.last_mut().expect("parallel") += 1,
            _ => {
                let first = l.line - req.record_lines(index).start + 1;
                out.push(RejectedRecord {
                    index,
                    reason: format!("line {first} of the record: {}", l.reason),
                    existing_version: None,
                });
                counts.push(1);
            }
        }
    }
    for (r, n) in out.iter_mut().zip(counts) {
        if n > 1 {
            r.reason.push_str(&format!(" ({n} of its lines refused)"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn run(
        kind: ApiKind,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
        sent: &str,
    ) -> Result<(), InfluxError> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        classify(
            kind,
            StatusCode::from_u16(status).unwrap(),
            &h,
            body.as_bytes(),
            sent.as_bytes(),
            Dialect::Portable,
            now(),
        )
    }

    const SENT: &str =
        "m,t=a value=1 1\nm,t=b\\ c value=\"x\" 2\nn value=1 3\nm,t=b\\ c value=\"x\" 4\n";

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("7", now()), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now()), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now() + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now()),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now() - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now()), None);
        assert_eq!(parse_retry_after("-1", now()), None);
    }

    #[test]
    fn statuses_and_retryability() {
        let cases: &[(u16, bool)] = &[
            (204, false),
            (429, true),
            (503, true),
            (500, true),
            (502, true),
            (504, true),
            (401, false),
            (403, false),
            (404, false),
            (413, false),
            (400, false),
            (418, false),
        ];
        for kind in [ApiKind::V1, ApiKind::V2, ApiKind::V3] {
            for &(status, retryable) in cases {
                let r = run(
                    kind,
                    status,
                    &[("retry-after", "3")],
                    "{\"error\":\"e\",\"message\":\"e\"}",
                    SENT,
                );
                match r {
                    Ok(()) => assert_eq!(status, 204),
                    Err(e) => {
                        assert_eq!(e.is_retryable(), retryable, "{kind:?} {status}: {e:?}");
                        let expect_after =
                            matches!(status, 429 | 503).then_some(Duration::from_secs(3));
                        assert_eq!(e.retry_after(), expect_after);
                        match status {
                            401 | 403 => assert!(matches!(e, InfluxError::Unauthorized(_))),
                            404 => assert!(matches!(e, InfluxError::NotFound(_))),
                            413 => assert!(matches!(e, InfluxError::TooLarge(_))),
                            500..=599 if status != 503 => {
                                assert_eq!(
                                    e,
                                    InfluxError::Server {
                                        status,
                                        message: "e".into()
                                    }
                                )
                            }
                            418 => assert!(matches!(e, InfluxError::Fatal(_))),
                            _ => {}
                        }
                    }
                }
            }
        }
        let e = run(
            ApiKind::V2,
            429,
            &[],
            "{\"code\":\"too many requests\",\"message\":\"slow down\"}",
            SENT,
        )
        .unwrap_err();
        assert_eq!(
            e,
            InfluxError::Throttled {
                retry_after: None,
                message: "slow down".into()
            }
        );
    }

    #[test]
    fn v1_parse_failures_name_lines_by_text() {
        // Two entries, as InfluxDB 1.x joins them; the quoted text holds
        // "': " itself in a real k6 URL, so the matcher must try each end.
        let sent = "m,u=a\\ b s=\"it': x\" 1\nm value=1 2\nm value=1 2\nok value=1 3\n";
        let msg = "partial write: unable to parse 'm,u=a\\ b s=\"it': x\" 1': invalid\nunable to parse 'm value=1 2': bad dropped=0";
        let body = serde_json::json!({ "error": msg }).to_string();
        let e = run(ApiKind::V1, 400, &[], &body, sent).unwrap_err();
        let refused = |line: usize, why: &str| RefusedLine {
            line,
            reason: format!("unable to parse: {why}"),
        };
        assert_eq!(
            e,
            InfluxError::PartialWrite {
                lines: vec![refused(0, "invalid"), refused(1, "bad"), refused(2, "bad")],
                unidentified: 0,
                message: msg.into()
            }
        );
        // Every line failed: no "partial write:" prefix.
        let body = serde_json::json!({ "error": "unable to parse 'ok value=1 3': x" }).to_string();
        assert_eq!(
            run(ApiKind::V1, 400, &[], &body, sent)
                .unwrap_err()
                .refused_indexes(),
            vec![3]
        );
    }

    #[test]
    fn storage_refusals_count_and_type_conflicts_are_attributed() {
        let msg = "partial write: field type conflict: input field \"value\" on measurement \"m\" is type string, already exists as type float dropped=3";
        let body = serde_json::json!({ "error": msg }).to_string();
        let why = "field type conflict: input field \"value\" on measurement \"m\" is type string, already exists as type float";
        let refused = |line: usize| RefusedLine {
            line,
            reason: why.into(),
        };
        assert_eq!(
            run(ApiKind::V1, 400, &[], &body, SENT).unwrap_err(),
            InfluxError::PartialWrite {
                lines: vec![refused(1), refused(3)],
                unidentified: 1,
                message: msg.into()
            }
        );
        let body = serde_json::json!({ "code": "unprocessable entity", "message": format!("failure writing points to database: {msg}") }).to_string();
        assert!(matches!(
            run(ApiKind::V2, 422, &[], &body, SENT).unwrap_err(),
            InfluxError::PartialWrite { lines, unidentified: 1, .. } if lines == vec![refused(1), refused(3)]
        ));
        let body = serde_json::json!({ "error": "partial write: points beyond retention policy dropped=2" }).to_string();
        assert!(matches!(
            run(ApiKind::V1, 400, &[], &body, SENT).unwrap_err(),
            InfluxError::PartialWrite { lines, unidentified: 2, .. } if lines.is_empty()
        ));
        let body = serde_json::json!({ "error": "retention policy not found: nope" }).to_string();
        assert!(matches!(
            run(ApiKind::V1, 400, &[], &body, SENT).unwrap_err(),
            InfluxError::NotFound(_)
        ));
        let body = serde_json::json!({ "error": "retention policy not found: nope" }).to_string();
        assert!(matches!(
            run(ApiKind::V1, 500, &[], &body, SENT).unwrap_err(),
            InfluxError::NotFound(_)
        ));
        let body = serde_json::json!({ "error": "something else" }).to_string();
        assert!(
            matches!(run(ApiKind::V1, 400, &[], &body, SENT).unwrap_err(), InfluxError::BadRequest { lines, .. } if lines.is_empty())
        );
    }

    #[test]
    fn v2_invalid_refuses_the_whole_body() {
        let body = serde_json::json!({ "code": "invalid", "message": "unable to parse 'n value=1 3': bad" }).to_string();
        assert_eq!(
            run(ApiKind::V2, 400, &[], &body, SENT).unwrap_err(),
            InfluxError::BadRequest {
                lines: vec![2],
                message: "unable to parse 'n value=1 3': bad".into()
            }
        );
    }

    #[test]
    fn v3_line_numbers() {
        let body = r#"{"error":"partial write of line protocol occurred","data":[
            {"original_line":"n value=1 3","line_number":3,"error_message":"bad"},
            {"original_line":"m","line_number":1,"error_message":"worse"},
            {"original_line":"?","line_number":99,"error_message":"out of range"}]}"#;
        let e = run(ApiKind::V3, 400, &[], body, SENT).unwrap_err();
        let InfluxError::PartialWrite {
            lines,
            unidentified,
            message,
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(
            lines,
            vec![
                RefusedLine {
                    line: 0,
                    reason: "worse".into()
                },
                RefusedLine {
                    line: 2,
                    reason: "bad".into()
                }
            ]
        );
        assert_eq!(unidentified, 1);
        assert!(
            message.starts_with("partial write of line protocol occurred: line 3: bad"),
            "{message}"
        );
        let body = r#"{"error":"parsing failed for write_lp endpoint","data":{"original_line":"x","line_number":2,"error_message":"No fields were provided"}}"#;
        assert!(matches!(
            run(ApiKind::V3, 400, &[], body, SENT).unwrap_err(),
            InfluxError::BadRequest { lines, .. } if lines == vec![1]
        ));
    }

    #[test]
    fn storage_reason_messages() {
        assert_eq!(
            storage_reason("partial write: field type conflict: input field \"a \"x\" b\" on measurement \"m\" is type integer, already exists as type float dropped=1"),
            Some(StorageReason::TypeConflict { measurement: "m".into(), field: "a \"x\" b".into(), input_type: "integer".into() })
        );
        assert_eq!(
            storage_reason("partial write: invalid field name: input field \"time\" on measurement \"m\" is invalid dropped=1"),
            Some(StorageReason::InvalidField { measurement: "m".into(), field: "time".into() })
        );
        assert_eq!(
            storage_reason("partial write: invalid tag key: input tag \"time\" on measurement \"m,x\" is invalid dropped=1"),
            Some(StorageReason::InvalidTag { measurement: "m,x".into(), tag: "time".into() })
        );
        assert_eq!(storage_reason("partial write: something dropped=1"), None);
        assert_eq!(dropped_count("x dropped=12 for database: d"), Some(12));
        assert_eq!(dropped_count("x"), None);
    }

    #[test]
    fn urls_and_auth_headers() {
        let mut cfg = InfluxConfig::new(
            "http://h:8086/pre/",
            Api::V1 {
                database: "k 6&x".into(),
                retention_policy: Some("autogen".into()),
            },
        );
        cfg.auth = Auth::Basic {
            username: "Aladdin".into(),
            password: "open sesame".into(),
        };
        let w = InfluxWriter::new(&cfg).unwrap();
        assert_eq!(
            w.write_url.as_str(),
            "http://h:8086/pre/write?db=k+6%26x&rp=autogen&precision=ns"
        );
        assert_eq!(w.health_url.as_str(), "http://h:8086/pre/ping");
        assert_eq!(
            w.auth.as_ref().unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );

        cfg.api = Api::V2 {
            org: "o".into(),
            bucket: "b".into(),
        };
        cfg.auth = Auth::Token("t0k".into());
        let w = InfluxWriter::new(&cfg).unwrap();
        assert_eq!(
            w.write_url.as_str(),
            "http://h:8086/pre/api/v2/write?org=o&bucket=b&precision=ns"
        );
        assert_eq!(w.auth.as_ref().unwrap(), "Token t0k");

        cfg.api = Api::V3 {
            database: "d".into(),
        };
        let w = InfluxWriter::new(&cfg).unwrap();
        assert_eq!(
            w.write_url.as_str(),
            "http://h:8086/pre/api/v3/write_lp?db=d&precision=nanosecond&accept_partial=true"
        );
        assert_eq!(w.auth.as_ref().unwrap(), "Bearer t0k");
        assert_eq!(w.dialect(), Dialect::V3);

        // https: the platform's roots load and rustls gets aws-lc-rs.
        let w =
            InfluxWriter::new(&InfluxConfig::new("https://h.example", cfg.api.clone())).unwrap();
        assert_eq!(w.write_url.scheme(), "https");

        for bad in ["ftp://h", "http://h/?x=1", "not a url"] {
            assert!(
                matches!(
                    InfluxWriter::new(&InfluxConfig::new(bad, cfg.api.clone())),
                    Err(InfluxError::Fatal(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    /// `n` records of two lines each (lines 2i and 2i+1 are record i's).
    fn request(n: usize) -> InfluxRequest {
        use crate::core::model::{Dimension, Record, Values};
        use crate::core::pipeline::Encoder;
        let mut e = super::super::InfluxEncoder::new(Default::default(), 60);
        let mut rep = crate::core::report::RunReport::default();
        for i in 0..n {
            let r = Record {
                dimensions: vec![Dimension {
                    name: "t".into(),
                    value: i.to_string(),
                }],
                measure_name: "k6".into(),
                values: Values::Multi(vec![("a".into(), "1".into()), ("b".into(), "2".into())]),
                time_ns: 1,
                lines: vec![1, 2],
                metadata_mask: 0,
            };
            assert!(e.push(r, &mut rep).is_none());
        }
        e.finish(&mut rep).unwrap()
    }

    fn refused(line: usize, reason: &str) -> RefusedLine {
        RefusedLine {
            line,
            reason: reason.into(),
        }
    }

    #[test]
    fn named_lines_reject_their_records() {
        let req = request(4);
        let e = InfluxError::PartialWrite {
            lines: vec![refused(1, "bad"), refused(4, "worse"), refused(5, "worst")],
            unidentified: 0,
            message: "partial".into(),
        };
        let WriteError::Rejected(r) = write_error(e, &req) else {
            panic!()
        };
        assert_eq!(
            r,
            vec![
                RejectedRecord {
                    index: 0,
                    reason: "line 2 of the record: bad".into(),
                    existing_version: None
                },
                RejectedRecord {
                    index: 2,
                    reason: "line 1 of the record: worse (2 of its lines refused)".into(),
                    existing_version: None
                },
            ]
        );
    }

    #[test]
    fn unnamed_refusals_split_until_one_record_is_left() {
        let partial = |lines| InfluxError::PartialWrite {
            lines,
            unidentified: 1,
            message: "partial write: points beyond retention policy dropped=1".into(),
        };
        assert!(
            matches!(write_error(partial(vec![]), &request(3)), WriteError::Validation(m) if m.contains("halving"))
        );
        assert!(matches!(
            write_error(partial(vec![refused(0, "x")]), &request(3)),
            WriteError::Validation(_)
        ));
        let WriteError::Rejected(r) = write_error(partial(vec![]), &request(1)) else {
            panic!()
        };
        assert_eq!(r[0].index, 0);
        assert!(r[0].reason.contains("retention policy"), "{}", r[0].reason);
        for e in [
            InfluxError::BadRequest {
                lines: vec![1],
                message: "bad".into(),
            },
            InfluxError::TooLarge("big".into()),
        ] {
            assert!(matches!(
                write_error(e, &request(2)),
                WriteError::Validation(_)
            ));
        }
    }

    #[test]
    fn the_other_answers_map_one_to_one() {
        let req = request(1);
        let t = write_error(
            InfluxError::Throttled {
                retry_after: Some(Duration::from_secs(4)),
                message: "slow".into(),
            },
            &req,
        );
        assert_eq!(t.retry_after(), Some(Duration::from_secs(4)));
        assert!(matches!(
            write_error(InfluxError::Unauthorized("no".into()), &req),
            WriteError::AccessDenied(_)
        ));
        assert!(matches!(
            write_error(InfluxError::NotFound("db".into()), &req),
            WriteError::NotFound(_)
        ));
        assert!(matches!(
            write_error(
                InfluxError::Server {
                    status: 502,
                    message: "gw".into()
                },
                &req
            ),
            WriteError::Server(m) if m == "HTTP 502: gw"
        ));
        assert_eq!(write_error(InfluxError::Timeout, &req), WriteError::Timeout);
        assert!(matches!(
            write_error(InfluxError::Connection("reset".into()), &req),
            WriteError::Connection(_)
        ));
        assert!(matches!(
            write_error(InfluxError::Fatal("x".into()), &req),
            WriteError::Fatal(_)
        ));
    }
}
