//! k6 JSON output (`k6 run --out json=FILE`): one JSON object per line.
//!
//! ```text
//! {"type":"Metric","data":{"name":"http_reqs","type":"counter",...},"metric":"http_reqs"}
//! {"type":"Point","data":{"time":"2024-03-01T17:04:05.1234+05:30","value":1,"tags":{...},"metadata":{...}},"metric":"http_reqs"}
//! ```
//!
//! Parsing borrows from the line buffer (`Cow` only allocates for strings
//! with escapes), which keeps the per-line cost close to the JSON scan itself.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// The four k6 metric kinds (`type` of a `Metric` line).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
pub enum MetricKind {
    Counter,
    Gauge,
    Rate,
    Trend,
}

impl MetricKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "counter" => Some(Self::Counter),
            "gauge" => Some(Self::Gauge),
            "rate" => Some(Self::Rate),
            "trend" => Some(Self::Trend),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Rate => "rate",
            Self::Trend => "trend",
        }
    }
}

/// One parsed line.
#[derive(Debug, PartialEq)]
pub enum Line<'a> {
    Metric {
        name: Cow<'a, str>,
        kind: Option<MetricKind>,
    },
    Point(Point<'a>),
    /// A line with a `type` this tool does not know (future k6 versions).
    Other {
        kind: Cow<'a, str>,
    },
}

/// A k6 sample: what the converter takes, from either k6 format.
#[derive(Debug, PartialEq)]
pub struct Point<'a> {
    pub metric: Cow<'a, str>,
    /// `data.time` as k6 wrote it. The converter does not read it (it is
    /// handed the parsed instant): points of the CSV output, whose time
    /// arrives as an instant, leave it empty.
    pub time: Cow<'a, str>,
    pub value: f64,
    /// The value as the input printed it, as canonical decimal text, when
    /// the format gives one that is worth keeping (k6 CSV's `%f` text: see
    /// [`crate::core::value::measure_text`]); `None` (JSON): the value is
    /// written as `value`'s shortest round-trip text.
    pub value_text: Option<Cow<'a, str>>,
    /// `data.tags`; `null` and `{}` both give an empty list. Non-string
    /// scalars are kept as their JSON text, `null` values are left out.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// `data.metadata` (k6 ≥ 0.41: `vu`, `iter`, trace ids, custom).
    pub metadata: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The exact JSON text of `data.tags` and of `data.metadata` (empty
    /// when the member is absent), when the parser kept it (the fast path
    /// does; the serde parser and k6 CSV do not). Parsing is a function of
    /// the text, so two points with equal texts have equal `tags` and
    /// `metadata`: the converter then reuses the dimensions it built for
    /// the previous point (k6 writes the ~10 points of one request with
    /// the same tags) instead of building and comparing them again.
    pub raw_tags: Option<RawTags<'a>>,
}

/// The exact JSON text of a point's `data.tags` and `data.metadata` ("" for
/// an absent member), see [`Point::raw_tags`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawTags<'a> {
    pub tags: &'a str,
    pub metadata: &'a str,
    /// `tags` was left unparsed (`Point::tags` is empty): its text is the
    /// one the caller said it knows ([`super::fast::parse_line_known`]).
    pub tags_elided: bool,
    /// The same for `metadata`.
    pub metadata_elided: bool,
}

/// Why a line could not be used. The names are the report's reason keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    MalformedJson,
    MissingField,
}

impl LineError {
    pub fn reason(self) -> &'static str {
        match self {
            LineError::MalformedJson => "malformed_json",
            LineError::MissingField => "missing_field",
        }
    }
}

#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    metric: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<RawData<'a>>,
}

#[derive(Deserialize)]
struct RawData<'a> {
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    value: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    tags: Pairs<'a>,
    #[serde(borrow, default)]
    metadata: Pairs<'a>,
    // Metric lines
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
}

/// `data.value`, kept as its JSON text and parsed with Rust's own float
/// parser: correctly rounded (bit-exact for every decimal k6 writes) and
/// faster than serde_json's exact mode. Besides numbers it accepts the
/// non-finite spellings k6 (Go) can produce: k6 1.1.0 writes
/// `Trend.add(Infinity)` as a bare `+Inf`, which is not JSON;
/// [`parse_line`] quotes such tokens, so the point is counted and dropped
/// with a reason instead of the line being reported as malformed.
fn number(raw: &serde_json::value::RawValue) -> Result<f64, LineError> {
    let t = raw.get();
    if let Some(q) = t.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return match q {
            "+Inf" | "Inf" | "Infinity" | "+Infinity" => Ok(f64::INFINITY),
            "-Inf" | "-Infinity" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ => Err(LineError::MalformedJson),
        };
    }
    match t.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => t.parse::<f64>().map_err(|_| LineError::MalformedJson),
        // null, true, objects, arrays
        _ => Err(LineError::MalformedJson),
    }
}

/// A JSON object of scalars as ordered (key, text) pairs; `null` → empty.
#[derive(Default)]
struct Pairs<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

struct Scalar<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Borrowed(if v {
                    "true"
                } else {
                    "false"
                }))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(crate::core::value::format_value(
                    v,
                )))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of scalars or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Pairs(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Pairs(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some((k, s)) = m.next_entry::<Cow<'de, str>, Scalar<'de>>()? {
                    if let Some(s) = s.0 {
                        v.push((k, s));
                    }
                }
                Ok(Pairs(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses one line (already known to be valid UTF-8 and non-blank).
pub fn parse_line(line: &str) -> Result<Line<'_>, LineError> {
    match serde_json::from_str::<RawLine>(line) {
        Ok(raw) => from_raw(raw),
        Err(_) => {
            // Go's `+Inf`/`-Inf`/`NaN` as a bare `value`: quote it and retry
            // (rare, so the copy only happens on this path).
            let mut fixed = None;
            for tok in ["+Inf", "-Inf", "NaN"] {
                let bare = format!("\"value\":{tok}");
                if line.contains(&bare) {
                    fixed = Some(line.replacen(&bare, &format!("\"value\":\"{tok}\""), 1));
                    break;
                }
            }
            let fixed = fixed.ok_or(LineError::MalformedJson)?;
            let raw: RawLine =
                serde_json::from_str(&fixed).map_err(|_| LineError::MalformedJson)?;
            from_raw(raw).map(into_owned)
        }
    }
}

fn own(v: Vec<(Cow<'_, str>, Cow<'_, str>)>) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
    v.into_iter()
        .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
        .collect()
}

fn into_owned(l: Line<'_>) -> Line<'static> {
    match l {
        Line::Point(p) => Line::Point(Point {
            metric: Cow::Owned(p.metric.into_owned()),
            time: Cow::Owned(p.time.into_owned()),
            value: p.value,
            value_text: p.value_text.map(|t| Cow::Owned(t.into_owned())),
            tags: own(p.tags),
            metadata: own(p.metadata),
            raw_tags: None,
        }),
        Line::Metric { name, kind } => Line::Metric {
            name: Cow::Owned(name.into_owned()),
            kind,
        },
        Line::Other { kind } => Line::Other {
            kind: Cow::Owned(kind.into_owned()),
        },
    }
}

fn from_raw(raw: RawLine<'_>) -> Result<Line<'_>, LineError> {
    let kind = raw.kind.ok_or(LineError::MissingField)?;
    match &*kind {
        "Point" => {
            let data = raw.data.ok_or(LineError::MissingField)?;
            let metric = raw
                .metric
                .filter(|m| !m.is_empty())
                .ok_or(LineError::MissingField)?;
            Ok(Line::Point(Point {
                metric,
                time: data.time.ok_or(LineError::MissingField)?,
                value: number(data.value.ok_or(LineError::MissingField)?)?,
                value_text: None,
                tags: data.tags.0,
                metadata: data.metadata.0,
                raw_tags: None,
            }))
        }
        "Metric" => {
            let data = raw.data;
            let name = data
                .as_ref()
                .and_then(|d| d.name.clone())
                .or(raw.metric)
                .ok_or(LineError::MissingField)?;
            let kind = data
                .and_then(|d| d.kind)
                .and_then(|k| MetricKind::parse(&k));
            Ok(Line::Metric { name, kind })
        }
        _ => Ok(Line::Other { kind }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_with_tags_and_metadata() {
        let l = r#"{"metric":"http_req_duration","type":"Point","data":{"time":"2024-03-01T17:04:05.1234+05:30","value":1.5,"tags":{"name":"http://x/\u00e9","status":"200","empty":""},"metadata":{"vu":"3","iter":7}}}"#;
        let Line::Point(p) = parse_line(l).unwrap() else {
            panic!()
        };
        assert_eq!(p.metric, "http_req_duration");
        assert_eq!(p.value, 1.5);
        assert_eq!(p.tags.len(), 3);
        assert_eq!(p.tags[0].1, "http://x/é");
        assert_eq!(
            p.metadata,
            vec![("vu".into(), "3".into()), ("iter".into(), "7".into())]
        );
    }

    #[test]
    fn null_and_absent_tags() {
        for l in [
            r#"{"type":"Point","metric":"vus","data":{"time":"2024-03-01T11:34:05Z","value":2,"tags":null}}"#,
            r#"{"type":"Point","metric":"vus","data":{"time":"2024-03-01T11:34:05Z","value":2,"tags":{}}}"#,
            r#"{"type":"Point","metric":"vus","data":{"time":"2024-03-01T11:34:05Z","value":2}}"#,
        ] {
            let Line::Point(p) = parse_line(l).unwrap() else {
                panic!()
            };
            assert!(p.tags.is_empty() && p.metadata.is_empty());
        }
    }

    #[test]
    fn metric_definition() {
        let l = r#"{"type":"Metric","data":{"name":"checks","type":"rate","contains":"default","thresholds":[],"submetrics":null},"metric":"checks"}"#;
        assert_eq!(
            parse_line(l),
            Ok(Line::Metric {
                name: "checks".into(),
                kind: Some(MetricKind::Rate)
            })
        );
    }

    #[test]
    fn go_non_finite_values() {
        for (tok, want) in [("+Inf", f64::INFINITY), ("-Inf", f64::NEG_INFINITY)] {
            let l = format!(
                r#"{{"metric":"t","type":"Point","data":{{"time":"2024-03-01T11:34:05Z","value":{tok},"tags":{{"a":"b"}}}}}}"#
            );
            let Line::Point(p) = parse_line(&l).unwrap() else {
                panic!()
            };
            assert_eq!(p.value, want);
            assert_eq!(p.tags, vec![("a".into(), "b".into())]);
        }
        let l =
            r#"{"metric":"t","type":"Point","data":{"time":"2024-03-01T11:34:05Z","value":NaN}}"#;
        let Line::Point(p) = parse_line(l).unwrap() else {
            panic!()
        };
        assert!(p.value.is_nan());
    }

    #[test]
    fn errors() {
        assert_eq!(parse_line("{"), Err(LineError::MalformedJson));
        assert_eq!(parse_line("[1]"), Err(LineError::MalformedJson));
        assert_eq!(
            parse_line(r#"{"metric":"x"}"#),
            Err(LineError::MissingField)
        );
        assert_eq!(
            parse_line(r#"{"type":"Point","metric":"x","data":{"time":"t"}}"#),
            Err(LineError::MissingField)
        );
        assert_eq!(
            parse_line(r#"{"type":"Point","metric":"x","data":{"time":"t","value":"abc"}}"#),
            Err(LineError::MalformedJson)
        );
        assert_eq!(
            parse_line(
                r#"{"type":"Point","metric":"x","data":{"time":"t","value":1,"tags":{"a":[1]}}}"#
            ),
            Err(LineError::MalformedJson)
        );
        assert!(matches!(
            parse_line(r#"{"type":"Summary","data":{}}"#),
            Ok(Line::Other { .. })
        ));
    }
}
