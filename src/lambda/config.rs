//! The function's configuration: environment variables, typed, read once at
//! cold start. A bad variable is an init error that names it.

use crate::core::collision::DEFAULT_COLLISION_WINDOW_SECS;
use crate::core::convert::{TestId, DEFAULT_MULTI_MEASURE_NAME};
use crate::core::input::{DEFAULT_MAX_DECOMPRESSED_BYTES, DEFAULT_MAX_LINE_BYTES};
use crate::core::model::DataModel;
use crate::sinks::driver::{DEFAULT_CONCURRENCY, DEFAULT_REQUEST_TIMEOUT_SECS, MAX_CONCURRENCY};
use crate::sinks::influxdb::InfluxSettings;
use crate::sinks::SinkKind;
use std::time::Duration;

pub use crate::sources::DEFAULT_SUFFIXES;
pub const DEFAULT_DEAD_LETTER_PREFIX: &str = "k6-timestream-dead-letter/";
pub const DEFAULT_STATE_PREFIX: &str = "k6-timestream-state/";
/// `K6TS_SAFETY_MARGIN_SECONDS`: time kept before the deadline to drain
/// the writes in flight and hand over.
pub const DEFAULT_SAFETY_MARGIN_SECS: u64 = 60;
/// `K6TS_MAX_CONTINUATIONS`: self-invocations of one object at most (a
/// guard against runaway loops).
pub const DEFAULT_MAX_CONTINUATIONS: u32 = 50;
/// `K6TS_MAX_PARALLEL`: segments of one object running at once.
pub const DEFAULT_MAX_PARALLEL: u32 = 8;

/// `K6TS_SINK` and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    /// `K6TS_DATABASE`, `K6TS_TABLE` below.
    Timestream,
    /// The `K6TS_INFLUXDB_*` variables.
    InfluxDb(Box<InfluxSettings>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LambdaConfig {
    pub sink: SinkConfig,
    /// Timestream's database and table (empty with the InfluxDB sink).
    pub database: String,
    pub table: String,
    pub model: DataModel,
    pub concurrency: usize,
    /// `K6TS_TESTID` (fixed) / `K6TS_TESTID_FROM` (`key` | `none`).
    pub testid: TestId,
    pub dimensions: Vec<(String, String)>,
    pub suffixes: Vec<String>,
    /// None: the object's own bucket.
    pub dead_letter_bucket: Option<String>,
    pub dead_letter_prefix: String,
    /// Checkpoints of continuation chains go under this prefix
    /// (`K6TS_STATE_PREFIX`), in `state_bucket` (`K6TS_STATE_BUCKET`;
    /// None: the object's own bucket).
    pub state_prefix: String,
    pub state_bucket: Option<String>,
    /// 0 = none: run until the deadline margin.
    pub work_budget: Duration,
    pub safety_margin: Duration,
    pub max_continuations: u32,
    pub max_line_bytes: usize,
    pub max_decompressed_bytes: u64,
    pub measure_name: String,
    pub collision_window_secs: u64,
    /// Timestream: records sorted by dimensions per window before they are
    /// cut into requests (`K6TS_GROUP_WINDOW`; ≤ 100: arrival order).
    pub group_window: usize,
    pub request_timeout: Duration,
    pub metrics_namespace: String,
    /// Function to invoke for continuations (default: this function,
    /// `AWS_LAMBDA_FUNCTION_NAME`).
    pub self_function: Option<String>,
    /// An object whose estimated uncompressed size exceeds this is written
    /// as segments of about this size by parallel invocations
    /// (`K6TS_SEGMENT_BYTES`).
    pub segment_bytes: u64,
    /// Segments of one object running at once (`K6TS_MAX_PARALLEL`).
    pub max_parallel: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {var}: {msg}")]
pub struct ConfigError {
    pub var: &'static str,
    pub msg: String,
}

fn err(var: &'static str, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        msg: msg.into(),
    }
}

impl LambdaConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads from any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |k: &'static str| get(k).ok_or_else(|| err(k, "is required"));
        fn num<T>(
            get: &dyn Fn(&str) -> Option<String>,
            k: &'static str,
            default: T,
            min: T,
        ) -> Result<T, ConfigError>
        where
            T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
        {
            match get(k) {
                None => Ok(default),
                Some(v) => match v.parse::<T>() {
                    Ok(n) if n >= min => Ok(n),
                    _ => Err(err(k, format!("expected a number ≥ {min}, got {v:?}"))),
                },
            }
        }
        let model = match get("K6TS_MODEL") {
            None => DataModel::Multi,
            Some(v) => v.parse().map_err(|e: String| err("K6TS_MODEL", e))?,
        };
        let testid = match (get("K6TS_TESTID"), get("K6TS_TESTID_FROM").as_deref()) {
            (Some(t), _) => TestId::Fixed(t),
            (None, None | Some("key")) => TestId::FromInput,
            (None, Some("none")) => TestId::Off,
            (None, Some(o)) => {
                return Err(err(
                    "K6TS_TESTID_FROM",
                    format!("expected `key` or `none`, got {o:?}"),
                ))
            }
        };
        let dimensions = match get("K6TS_DIMENSIONS") {
            None => Vec::new(),
            Some(v) => crate::core::kv::parse_kv_list(&v).map_err(|e| err("K6TS_DIMENSIONS", e))?,
        };
        let suffixes = match get("K6TS_SUFFIXES") {
            None => DEFAULT_SUFFIXES.iter().map(|s| s.to_string()).collect(),
            Some(v) => v
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        };
        let g: &dyn Fn(&str) -> Option<String> = &get;
        let sink = match get("K6TS_SINK") {
            None => SinkKind::Timestream,
            Some(v) => v.parse().map_err(|e: String| err("K6TS_SINK", e))?,
        };
        let (sink, database, table) = match sink {
            SinkKind::Timestream => (
                SinkConfig::Timestream,
                required("K6TS_DATABASE")?,
                required("K6TS_TABLE")?,
            ),
            SinkKind::Influxdb => (
                SinkConfig::InfluxDb(Box::new(
                    InfluxSettings::from_lookup(g).map_err(|e| err(e.var, e.msg))?,
                )),
                String::new(),
                String::new(),
            ),
        };
        let concurrency = num(g, "K6TS_CONCURRENCY", DEFAULT_CONCURRENCY, 1)?;
        if concurrency > MAX_CONCURRENCY {
            return Err(err(
                "K6TS_CONCURRENCY",
                format!("at most {MAX_CONCURRENCY}"),
            ));
        }
        Ok(Self {
            sink,
            database,
            table,
            model,
            concurrency,
            testid,
            dimensions,
            suffixes,
            dead_letter_bucket: get("K6TS_DEAD_LETTER_BUCKET"),
            dead_letter_prefix: get("K6TS_DEAD_LETTER_PREFIX")
                .unwrap_or_else(|| DEFAULT_DEAD_LETTER_PREFIX.to_owned()),
            state_prefix: get("K6TS_STATE_PREFIX")
                .unwrap_or_else(|| DEFAULT_STATE_PREFIX.to_owned()),
            state_bucket: get("K6TS_STATE_BUCKET"),
            work_budget: Duration::from_secs_f64(num(g, "K6TS_WORK_BUDGET_SECONDS", 0.0, 0.0)?),
            safety_margin: Duration::from_secs_f64(num(
                g,
                "K6TS_SAFETY_MARGIN_SECONDS",
                DEFAULT_SAFETY_MARGIN_SECS as f64,
                1.0,
            )?),
            max_continuations: num(g, "K6TS_MAX_CONTINUATIONS", DEFAULT_MAX_CONTINUATIONS, 0)?,
            max_line_bytes: num(g, "K6TS_MAX_LINE_BYTES", DEFAULT_MAX_LINE_BYTES, 1024)?,
            max_decompressed_bytes: num(
                g,
                "K6TS_MAX_DECOMPRESSED_BYTES",
                DEFAULT_MAX_DECOMPRESSED_BYTES,
                1,
            )?,
            measure_name: match get("K6TS_MEASURE_NAME") {
                None => DEFAULT_MULTI_MEASURE_NAME.to_owned(),
                Some(m) => {
                    crate::core::convert::check_measure_name(&m)
                        .map_err(|e| err("K6TS_MEASURE_NAME", e))?;
                    m
                }
            },
            collision_window_secs: num(
                g,
                "K6TS_COLLISION_WINDOW_SECONDS",
                DEFAULT_COLLISION_WINDOW_SECS,
                1,
            )?,
            group_window: num(
                g,
                "K6TS_GROUP_WINDOW",
                crate::sinks::timestream::DEFAULT_GROUP_WINDOW,
                0,
            )?,
            request_timeout: Duration::from_secs(num(
                g,
                "K6TS_REQUEST_TIMEOUT_SECONDS",
                DEFAULT_REQUEST_TIMEOUT_SECS,
                1,
            )?),
            metrics_namespace: get("K6TS_METRICS_NAMESPACE")
                .unwrap_or_else(|| "k6-timestream".to_owned()),
            self_function: get("K6TS_SELF_FUNCTION").or_else(|| get("AWS_LAMBDA_FUNCTION_NAME")),
            segment_bytes: num(
                g,
                "K6TS_SEGMENT_BYTES",
                crate::core::segment::DEFAULT_SEGMENT_BYTES,
                1 << 20,
            )?,
            max_parallel: num(g, "K6TS_MAX_PARALLEL", DEFAULT_MAX_PARALLEL, 1)?,
        })
    }

    /// Does this key look like k6 results (and not a dead letter or a
    /// checkpoint)?
    pub fn wants_key(&self, key: &str) -> bool {
        if key.starts_with(&self.dead_letter_prefix) || key.starts_with(&self.state_prefix) {
            return false;
        }
        crate::sources::has_suffix(key, &self.suffixes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<LambdaConfig, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LambdaConfig::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_and_required() {
        assert_eq!(
            cfg(&[("K6TS_TABLE", "t")]).unwrap_err().var,
            "K6TS_DATABASE"
        );
        let c = cfg(&[("K6TS_DATABASE", "d"), ("K6TS_TABLE", "t")]).unwrap();
        assert_eq!(c.model, DataModel::Multi);
        assert_eq!(c.testid, TestId::FromInput);
        assert_eq!(c.concurrency, DEFAULT_CONCURRENCY);
        assert!(c.wants_key("runs/a.json.gz") && c.wants_key("a.JSON") && !c.wants_key("a.txt"));
        assert!(c.wants_key("runs/a.csv") && c.wants_key("runs/a.CSV.gz"));
        assert!(!c.wants_key("k6-timestream-dead-letter/b/a.json"));
        assert!(!c.wants_key("k6-timestream-state/b/a.json/e1/link-1.ckpt"));
        assert!(!c.wants_key("k6-timestream-state/b/a.json.gz"));
        assert_eq!(
            (c.state_prefix.as_str(), c.state_bucket.as_deref()),
            (DEFAULT_STATE_PREFIX, None)
        );
        assert_eq!(
            (c.segment_bytes, c.max_parallel),
            (crate::core::segment::DEFAULT_SEGMENT_BYTES, 8)
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let base = [("K6TS_DATABASE", "d"), ("K6TS_TABLE", "t")];
        for (k, v) in [
            ("K6TS_MODEL", "triple"),
            ("K6TS_CONCURRENCY", "0"),
            ("K6TS_CONCURRENCY", "lots"),
            ("K6TS_TESTID_FROM", "path"),
            ("K6TS_DIMENSIONS", "a=1,b"),
            ("K6TS_WORK_BUDGET_SECONDS", "-1"),
            ("K6TS_MAX_CONTINUATIONS", "x"),
            ("K6TS_SEGMENT_BYTES", "1000"),
            ("K6TS_MAX_PARALLEL", "0"),
        ] {
            let mut p = base.to_vec();
            p.push((k, v));
            let e = cfg(&p).unwrap_err();
            assert_eq!(e.var, k, "{k}={v}");
            assert!(e.to_string().contains(k));
        }
        let mut p = base.to_vec();
        p.extend([
            ("K6TS_DIMENSIONS", "env=ci, team=perf"),
            ("K6TS_TESTID_FROM", "none"),
            ("K6TS_MODEL", "single"),
        ]);
        let c = cfg(&p).unwrap();
        assert_eq!(
            c.dimensions,
            vec![("env".into(), "ci".into()), ("team".into(), "perf".into())]
        );
        assert_eq!(c.testid, TestId::Off);
        assert_eq!(c.model, DataModel::Single);
    }

    #[test]
    fn the_sink_and_what_it_requires() {
        assert_eq!(
            cfg(&[("K6TS_DATABASE", "d"), ("K6TS_TABLE", "t")])
                .unwrap()
                .sink,
            SinkConfig::Timestream
        );
        assert_eq!(cfg(&[("K6TS_SINK", "kafka")]).unwrap_err().var, "K6TS_SINK");
        let influx = [
            ("K6TS_SINK", "influxdb"),
            ("K6TS_INFLUXDB_URL", "http://h:8086"),
            ("K6TS_INFLUXDB_API", "v1"),
            ("K6TS_INFLUXDB_DATABASE", "k6"),
        ];
        let c = cfg(&influx).unwrap();
        assert!(
            matches!(c.sink, SinkConfig::InfluxDb(_)),
            "no Timestream table needed"
        );
        assert_eq!(cfg(&influx[..3]).unwrap_err().var, "K6TS_INFLUXDB_DATABASE");
    }
}
