//! The InfluxDB sink's options, defined once: the command line's
//! ([`InfluxEncodingArgs`], [`InfluxArgs`]) and the Lambda's environment
//! ([`InfluxSettings::from_lookup`]) fill the same types: where and how
//! requests go ([`InfluxConfig`]: URL, API generation and its target,
//! credentials) and how records become lines ([`EncoderOptions`]: the
//! dialect, k6's `tagsAsFields`, the request bounds).

use super::encode::{Dialect, FieldKind, TagsAsFields};
use super::request::{EncoderOptions, DEFAULT_MAX_BYTES, DEFAULT_MAX_LINES};
use std::fmt;
use std::time::Duration;

/// The write API and its target.
#[derive(Clone, PartialEq, Eq)]
pub enum Api {
    /// `POST /write?db=&rp=&precision=ns`: InfluxDB 1.x, and the v1
    /// compatibility API of InfluxDB 2 and 3.
    V1 {
        database: String,
        retention_policy: Option<String>,
    },
    /// `POST /api/v2/write?org=&bucket=&precision=ns`: InfluxDB 2 (and 3).
    V2 { org: String, bucket: String },
    /// `POST /api/v3/write_lp?db=&precision=nanosecond`: InfluxDB 3.
    V3 { database: String },
}

impl Api {
    /// The backslash dialect to encode with: only the v3 API guarantees an
    /// InfluxDB 3 parser; the v1 and v2 APIs may be served by 1.x, 2.x or 3.
    pub fn dialect(&self) -> Dialect {
        match self {
            Api::V3 { .. } => Dialect::V3,
            Api::V1 { .. } | Api::V2 { .. } => Dialect::Portable,
        }
    }

    /// What the data is written into, for messages.
    pub fn target(&self) -> String {
        match self {
            Api::V1 {
                database,
                retention_policy: Some(rp),
            } => format!("database {database:?}, retention policy {rp:?}"),
            Api::V1 { database, .. } | Api::V3 { database } => format!("database {database:?}"),
            Api::V2 { org, bucket } => format!("bucket {bucket:?} of organization {org:?}"),
        }
    }
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Api::V1 { .. } => write!(f, "V1({})", self.target()),
            Api::V2 { .. } => write!(f, "V2({})", self.target()),
            Api::V3 { .. } => write!(f, "V3({})", self.target()),
        }
    }
}

/// Credentials. Sent in the `Authorization` header only, never in the URL
/// (which ends up in logs).
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    #[default]
    None,
    /// InfluxDB 1.x users (`Authorization: Basic`).
    Basic { username: String, password: String },
    /// An API token: `Authorization: Token <t>` on the v1 and v2 APIs
    /// (InfluxDB 2 and 3 both take it there), `Bearer <t>` on the v3 API.
    Token(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfluxConfig {
    /// Base URL, `http(s)://host[:port][/prefix]`; API paths are appended.
    pub url: String,
    pub api: Api,
    pub auth: Auth,
    /// Whole-request timeout (connect, send, answer).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Send bodies gzip-compressed (`Content-Encoding: gzip`). Every
    /// InfluxDB generation accepts it; line protocol shrinks 10-20x.
    pub gzip: bool,
}

impl InfluxConfig {
    pub fn new(url: impl Into<String>, api: Api) -> Self {
        Self {
            url: url.into(),
            api,
            auth: Auth::None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            gzip: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("tagsAsFields entry {0:?}: empty tag name")]
    EmptyTagName(String),
    #[error("tagsAsFields: tag {0:?} is listed more than once")]
    DuplicateTag(String),
    #[error(
        "tagsAsFields: invalid type {kind:?} for tag {tag:?} (expected string, int, float or bool)"
    )]
    InvalidKind { tag: String, kind: String },
}

/// Parses k6's `tagsAsFields` syntax: comma-separated `name[:type]` with
/// type `string` (the default), `int`, `float` or `bool`. An empty string,
/// or `none` (what an environment variable can say: an empty one is
/// unset), gives an empty list (no tag becomes a field).
pub fn parse_tags_as_fields(s: &str) -> Result<TagsAsFields, ConfigError> {
    let mut out: Vec<(String, FieldKind)> = Vec::new();
    if s.trim() == "none" {
        return Ok(TagsAsFields(out));
    }
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, kind) = match entry.split_once(':') {
            Some((n, k)) => (n.trim(), k.trim()),
            None => (entry, "string"),
        };
        if name.is_empty() {
            return Err(ConfigError::EmptyTagName(entry.to_owned()));
        }
        let kind = match kind {
            "string" => FieldKind::String,
            "int" => FieldKind::Int,
            "float" => FieldKind::Float,
            "bool" => FieldKind::Bool,
            other => {
                return Err(ConfigError::InvalidKind {
                    tag: name.to_owned(),
                    kind: other.to_owned(),
                })
            }
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(ConfigError::DuplicateTag(name.to_owned()));
        }
        out.push((name.to_owned(), kind));
    }
    Ok(TagsAsFields(out))
}

/// k6's own default for `tagsAsFields`.
pub const DEFAULT_TAGS_AS_FIELDS: &str = "vu,iter,url";

/// Which write API (`--influxdb-api`, `K6TS_INFLUXDB_API`).
// (Plain comments on the variants: doc comments would become clap's
// per-value help and switch `--help` to its long layout.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApiVersion {
    // `/write`: InfluxDB 1.x, and the v1 compatibility API of 2 and 3.
    V1,
    // `/api/v2/write`: InfluxDB 2 (Timestream for InfluxDB's v2 engine).
    V2,
    // `/api/v3/write_lp`: InfluxDB 3.
    V3,
}

impl ApiVersion {
    /// The dialect bodies are encoded in (see [`Api::dialect`]).
    pub fn dialect(self) -> Dialect {
        match self {
            ApiVersion::V3 => Dialect::V3,
            ApiVersion::V1 | ApiVersion::V2 => Dialect::Portable,
        }
    }
}

impl std::str::FromStr for ApiVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1" => Ok(Self::V1),
            "v2" => Ok(Self::V2),
            "v3" => Ok(Self::V3),
            _ => Err(format!("expected v1, v2 or v3, got {s:?}")),
        }
    }
}

fn parse_tags_as_fields_arg(s: &str) -> Result<TagsAsFields, String> {
    parse_tags_as_fields(s).map_err(|e| e.to_string())
}

/// How records become line protocol: what `convert --sink influxdb`
/// needs, and `ingest` too.
#[derive(clap::Args, Debug, Clone)]
pub struct InfluxEncodingArgs {
    /// InfluxDB write API: v1 (/write: InfluxDB 1.x, and the compatibility API of 2 and 3), v2 (/api/v2/write: InfluxDB 2, Timestream for InfluxDB), v3 (/api/v3/write_lp: InfluxDB 3).
    #[arg(
        id = "influxdb_api",
        long = "influxdb-api",
        value_name = "API",
        value_enum,
        default_value = "v2"
    )]
    pub api: ApiVersion,
    /// k6's tagsAsFields: tags written as fields instead of tags, `name[:string|int|float|bool]`, comma-separated ("" or `none` for none).
    #[arg(id = "influxdb_tags_as_fields", long = "influxdb-tags-as-fields", value_name = "LIST", default_value = DEFAULT_TAGS_AS_FIELDS, value_parser = parse_tags_as_fields_arg)]
    pub tags_as_fields: TagsAsFields,
    /// Most lines in one write request.
    #[arg(id = "influxdb_batch_lines", long = "influxdb-batch-lines", value_name = "N", default_value_t = DEFAULT_MAX_LINES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch_lines: usize,
    /// Most bytes (uncompressed) in one write request.
    #[arg(id = "influxdb_batch_bytes", long = "influxdb-batch-bytes", value_name = "BYTES", default_value_t = DEFAULT_MAX_BYTES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..))]
    pub batch_bytes: usize,
}

impl InfluxEncodingArgs {
    pub fn encoder_options(&self) -> EncoderOptions {
        EncoderOptions {
            dialect: self.api.dialect(),
            tags_as_fields: self.tags_as_fields.clone(),
            max_lines: self.batch_lines,
            max_bytes: self.batch_bytes,
        }
    }
}

/// Where `ingest --sink influxdb` writes.
#[derive(clap::Args, Debug, Clone)]
pub struct InfluxArgs {
    #[command(flatten)]
    pub encoding: InfluxEncodingArgs,
    /// InfluxDB base URL, e.g. https://<id>-<account>.timestream-influxdb.<region>.on.aws:8086 (with --sink influxdb).
    #[arg(id = "influxdb_url", long = "influxdb-url", value_name = "URL")]
    pub url: Option<String>,
    /// The v1 database, v2 bucket or v3 database written to (with --sink influxdb).
    #[arg(
        id = "influxdb_database",
        long = "influxdb-database",
        value_name = "DB"
    )]
    pub database: Option<String>,
    /// Organization of the bucket (v2).
    #[arg(id = "influxdb_org", long = "influxdb-org", value_name = "ORG")]
    pub org: Option<String>,
    /// API token (default: the environment variable K6TS_INFLUXDB_TOKEN; prefer that: arguments show in process lists).
    #[arg(id = "influxdb_token", long = "influxdb-token", value_name = "TOKEN")]
    pub token: Option<String>,
}

/// The environment variable the token is also read from.
pub const TOKEN_ENV: &str = "K6TS_INFLUXDB_TOKEN";

impl InfluxArgs {
    /// The writer's configuration; `env` looks up [`TOKEN_ENV`] when no
    /// `--influxdb-token` is given. The error names the missing option.
    pub fn config(&self, env: impl Fn(&str) -> Option<String>) -> Result<InfluxConfig, String> {
        let url = self
            .url
            .clone()
            .ok_or("--influxdb-url is required with --sink influxdb")?;
        let database = self
            .database
            .clone()
            .ok_or("--influxdb-database is required with --sink influxdb")?;
        let api = api_for(self.encoding.api, database, self.org.clone())
            .map_err(|()| "--influxdb-org is required with --influxdb-api v2".to_owned())?;
        let token = self
            .token
            .clone()
            .or_else(|| env(TOKEN_ENV))
            .filter(|t| !t.is_empty());
        let mut cfg = InfluxConfig::new(url, api);
        cfg.auth = token.map_or(Auth::None, Auth::Token);
        Ok(cfg)
    }
}

/// The API with its target; `Err` when v2 has no organization.
fn api_for(version: ApiVersion, database: String, org: Option<String>) -> Result<Api, ()> {
    Ok(match version {
        ApiVersion::V1 => Api::V1 {
            database,
            retention_policy: None,
        },
        ApiVersion::V2 => Api::V2 {
            org: org.ok_or(())?,
            bucket: database,
        },
        ApiVersion::V3 => Api::V3 { database },
    })
}

/// The InfluxDB sink as the Lambda's environment configures it.
#[derive(Debug, Clone, PartialEq)]
pub struct InfluxSettings {
    /// `auth` holds `K6TS_INFLUXDB_TOKEN` if set; a token read from
    /// `token_secret_arn` replaces it at init.
    pub config: InfluxConfig,
    pub encoder: EncoderOptions,
    /// `K6TS_INFLUXDB_TOKEN_SECRET_ARN`: a Secrets Manager secret holding
    /// the token (see [`token_from_secret`]).
    pub token_secret_arn: Option<String>,
}

/// A variable of the environment that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub var: &'static str,
    pub msg: String,
}

impl InfluxSettings {
    /// Reads `K6TS_INFLUXDB_URL`, `_API` (default v2), `_DATABASE`, `_ORG`,
    /// `_TOKEN_SECRET_ARN` or `_TOKEN`, `_TAGS_AS_FIELDS`, `_BATCH_LINES`,
    /// `_BATCH_BYTES` (`get` returns trimmed, non-empty values).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let err = |var: &'static str, msg: String| EnvError { var, msg };
        let required = |var: &'static str| {
            get(var).ok_or_else(|| err(var, "is required with K6TS_SINK=influxdb".into()))
        };
        let url = required("K6TS_INFLUXDB_URL")?;
        let version = match get("K6TS_INFLUXDB_API") {
            None => ApiVersion::V2,
            Some(v) => v.parse().map_err(|e| err("K6TS_INFLUXDB_API", e))?,
        };
        let database = required("K6TS_INFLUXDB_DATABASE")?;
        let api = api_for(version, database, get("K6TS_INFLUXDB_ORG")).map_err(|()| {
            err(
                "K6TS_INFLUXDB_ORG",
                "is required with K6TS_INFLUXDB_API=v2".into(),
            )
        })?;
        let token_secret_arn = get("K6TS_INFLUXDB_TOKEN_SECRET_ARN");
        let token = get(TOKEN_ENV);
        if token_secret_arn.is_some() && token.is_some() {
            return Err(err(
                "K6TS_INFLUXDB_TOKEN",
                "set either it or K6TS_INFLUXDB_TOKEN_SECRET_ARN, not both".into(),
            ));
        }
        let tags_as_fields = parse_tags_as_fields(
            &get("K6TS_INFLUXDB_TAGS_AS_FIELDS").unwrap_or_else(|| DEFAULT_TAGS_AS_FIELDS.into()),
        )
        .map_err(|e| err("K6TS_INFLUXDB_TAGS_AS_FIELDS", e.to_string()))?;
        let count = |var: &'static str, default: usize, min: usize| match get(var) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(err(var, format!("expected a number ≥ {min}, got {v:?}"))),
            },
        };
        let mut config = InfluxConfig::new(url, api);
        config.auth = token.map_or(Auth::None, Auth::Token);
        Ok(Self {
            config,
            encoder: EncoderOptions {
                dialect: version.dialect(),
                tags_as_fields,
                max_lines: count("K6TS_INFLUXDB_BATCH_LINES", DEFAULT_MAX_LINES, 1)?,
                max_bytes: count("K6TS_INFLUXDB_BATCH_BYTES", DEFAULT_MAX_BYTES, 1024)?,
            },
            token_secret_arn,
        })
    }
}

/// The token in a Secrets Manager secret: the secret string itself, or
/// the `token` key of a JSON object (the shape of Timestream for
/// InfluxDB's token secrets, `{"engine":"timestream-influxdb","token":…}`,
/// which its rotation functions keep current). The instance's own admin
/// secret holds a username and password, not a token: it is refused with
/// a message saying so.
pub fn token_from_secret(secret: &str) -> Result<String, String> {
    let trimmed = secret.trim();
    if !trimmed.starts_with('{') {
        return if trimmed.is_empty() {
            Err("the secret is empty".into())
        } else {
            Ok(trimmed.to_owned())
        };
    }
    let v: serde_json::Value = serde_json::from_str(trimmed)
        .map_err(|e| format!("the secret looks like JSON but does not parse: {e}"))?;
    match v.get("token").and_then(serde_json::Value::as_str) {
        Some(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        _ if v.get("password").is_some() => Err(
            "the secret holds a username and password (an instance's admin secret), not a token: store an API token as {\"token\": \"…\"} or as the plain secret string".into(),
        ),
        _ => Err("the secret is a JSON object without a non-empty \"token\" string".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_as_fields_syntax() {
        let t = parse_tags_as_fields("vu:int, iter:int,url,ok:bool,x:float").unwrap();
        assert_eq!(
            t.0,
            vec![
                ("vu".to_owned(), FieldKind::Int),
                ("iter".to_owned(), FieldKind::Int),
                ("url".to_owned(), FieldKind::String),
                ("ok".to_owned(), FieldKind::Bool),
                ("x".to_owned(), FieldKind::Float),
            ]
        );
        assert_eq!(parse_tags_as_fields("").unwrap().0, vec![]);
        assert_eq!(parse_tags_as_fields(" none ").unwrap().0, vec![]);
        assert_eq!(
            parse_tags_as_fields("vu,vu:int"),
            Err(ConfigError::DuplicateTag("vu".into()))
        );
        assert!(matches!(
            parse_tags_as_fields("vu:integer"),
            Err(ConfigError::InvalidKind { .. })
        ));
        assert!(matches!(
            parse_tags_as_fields(":int"),
            Err(ConfigError::EmptyTagName(_))
        ));
        assert_eq!(
            parse_tags_as_fields("vu,iter,url").unwrap(),
            TagsAsFields::default()
        );
    }

    #[test]
    fn dialect_follows_the_api_and_secrets_stay_out_of_debug() {
        let v3 = Api::V3 {
            database: "d".into(),
        };
        assert_eq!(v3.dialect(), Dialect::V3);
        let v2 = Api::V2 {
            org: "o".into(),
            bucket: "b".into(),
        };
        assert_eq!(v2.dialect(), Dialect::Portable);
        let mut c = InfluxConfig::new("http://h", v2);
        c.auth = Auth::Token("s3cr3t".into());
        assert!(!format!("{c:?}").contains("s3cr3t"));
        c.auth = Auth::Basic {
            username: "u".into(),
            password: "pw123".into(),
        };
        assert!(!format!("{c:?}").contains("pw123"));
    }

    fn env(pairs: &[(&str, &str)]) -> Result<InfluxSettings, EnvError> {
        let m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        InfluxSettings::from_lookup(&|k| m.get(k).cloned())
    }

    #[test]
    fn lambda_environment() {
        let base = [
            ("K6TS_INFLUXDB_URL", "https://db.example:8086"),
            ("K6TS_INFLUXDB_DATABASE", "k6"),
            ("K6TS_INFLUXDB_ORG", "perf"),
        ];
        let s = env(&base).unwrap();
        assert_eq!(
            s.config.api,
            Api::V2 {
                org: "perf".into(),
                bucket: "k6".into()
            }
        );
        assert_eq!(s.config.auth, Auth::None);
        assert_eq!(s.encoder, EncoderOptions::default());
        assert_eq!(s.token_secret_arn, None);

        let mut p = base.to_vec();
        p.extend([
            ("K6TS_INFLUXDB_API", "v3"),
            ("K6TS_INFLUXDB_TOKEN", "t0k"),
            ("K6TS_INFLUXDB_TAGS_AS_FIELDS", "vu:int,iter:int"),
            ("K6TS_INFLUXDB_BATCH_LINES", "100"),
        ]);
        let s = env(&p).unwrap();
        assert_eq!(
            s.config.api,
            Api::V3 {
                database: "k6".into()
            }
        );
        assert_eq!(s.config.auth, Auth::Token("t0k".into()));
        assert_eq!(s.encoder.dialect, Dialect::V3);
        assert_eq!(s.encoder.max_lines, 100);
        assert_eq!(s.encoder.tags_as_fields.kind_of("vu"), Some(FieldKind::Int));

        let mut p = base.to_vec();
        p.push((
            "K6TS_INFLUXDB_TOKEN_SECRET_ARN",
            "arn:aws:secretsmanager:r:1:secret:x",
        ));
        let s = env(&p).unwrap();
        assert_eq!(
            s.token_secret_arn.as_deref(),
            Some("arn:aws:secretsmanager:r:1:secret:x")
        );

        for (missing, var) in [
            ("K6TS_INFLUXDB_URL", "K6TS_INFLUXDB_URL"),
            ("K6TS_INFLUXDB_DATABASE", "K6TS_INFLUXDB_DATABASE"),
            ("K6TS_INFLUXDB_ORG", "K6TS_INFLUXDB_ORG"),
        ] {
            let p: Vec<_> = base
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            assert_eq!(env(&p).unwrap_err().var, var);
        }
        // v1 and v3 need no organization.
        let p = [base[0], base[1], ("K6TS_INFLUXDB_API", "v1")];
        assert!(matches!(env(&p).unwrap().config.api, Api::V1 { .. }));
        for (k, v) in [
            ("K6TS_INFLUXDB_API", "v4"),
            ("K6TS_INFLUXDB_TAGS_AS_FIELDS", "vu:long"),
            ("K6TS_INFLUXDB_BATCH_LINES", "0"),
            ("K6TS_INFLUXDB_BATCH_BYTES", "12"),
        ] {
            let mut p = base.to_vec();
            p.push((k, v));
            assert_eq!(env(&p).unwrap_err().var, k, "{k}={v}");
        }
        let mut p = base.to_vec();
        p.extend([
            ("K6TS_INFLUXDB_TOKEN", "t"),
            ("K6TS_INFLUXDB_TOKEN_SECRET_ARN", "arn"),
        ]);
        assert_eq!(env(&p).unwrap_err().var, "K6TS_INFLUXDB_TOKEN");
    }

    #[derive(clap::Parser, Debug)]
    struct Cmd {
        #[command(flatten)]
        influx: InfluxArgs,
    }

    fn args(a: &[&str]) -> InfluxArgs {
        use clap::Parser;
        Cmd::try_parse_from(std::iter::once("x").chain(a.iter().copied()))
            .unwrap()
            .influx
    }

    #[test]
    fn command_line() {
        let a = args(&[]);
        assert_eq!(a.encoding.encoder_options(), EncoderOptions::default());
        assert!(a.config(|_| None).unwrap_err().contains("--influxdb-url"));
        let a = args(&[
            "--influxdb-url",
            "http://h:8086",
            "--influxdb-database",
            "k6",
        ]);
        assert!(a.config(|_| None).unwrap_err().contains("--influxdb-org"));
        let a = args(&[
            "--influxdb-url",
            "http://h:8086",
            "--influxdb-database",
            "k6",
            "--influxdb-api",
            "v1",
            "--influxdb-tags-as-fields",
            "",
            "--influxdb-batch-lines",
            "10",
        ]);
        let c = a
            .config(|k| (k == TOKEN_ENV).then(|| "from-env".to_owned()))
            .unwrap();
        assert_eq!(c.auth, Auth::Token("from-env".into()));
        assert_eq!(c.url, "http://h:8086");
        let e = a.encoding.encoder_options();
        assert_eq!((e.max_lines, e.tags_as_fields.0.len()), (10, 0));
        let a = args(&[
            "--influxdb-url",
            "http://h",
            "--influxdb-database",
            "b",
            "--influxdb-org",
            "o",
            "--influxdb-token",
            "flag",
        ]);
        let c = a.config(|_| Some("env".into())).unwrap();
        assert_eq!(c.auth, Auth::Token("flag".into()), "the flag wins");
        use clap::Parser;
        for bad in [
            &["--influxdb-api", "v9"][..],
            &["--influxdb-tags-as-fields", "vu:x"],
            &["--influxdb-batch-lines", "0"],
            &["--influxdb-batch-bytes", "100"],
        ] {
            assert!(
                Cmd::try_parse_from(std::iter::once("x").chain(bad.iter().copied())).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn token_secrets() {
        assert_eq!(token_from_secret(" abc==\n").unwrap(), "abc==");
        assert_eq!(
            token_from_secret(r#"{"engine":"timestream-influxdb","org":"o","token":"t=="}"#)
                .unwrap(),
            "t=="
        );
        assert!(token_from_secret("").is_err());
        assert!(token_from_secret(r#"{"token":""}"#).is_err());
        assert!(token_from_secret(r#"{"token": 5}"#).is_err());
        assert!(token_from_secret("{not json")
            .unwrap_err()
            .contains("does not parse"));
        let admin = r#"{"engine":"timestream-influxdb","username":"admin","password":"p","dbIdentifier":"x"}"#;
        assert!(token_from_secret(admin)
            .unwrap_err()
            .contains("admin secret"));
    }
}
