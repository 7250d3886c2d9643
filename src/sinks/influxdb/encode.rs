//! InfluxDB line protocol: the encoder, k6's point layout on top of it, and
//! a strict parser that is the encoder's exact inverse.
//!
//! Escaping follows the line-protocol reference: measurements escape comma
//! and space; tag keys, tag values and field keys escape comma, equals sign
//! and space; string field values escape double quote and backslash. Tags
//! are written sorted by their escaped key bytes (the reference's advice,
//! and what makes the output deterministic); empty tag values are omitted.
//!
//! Backslashes inside names (measurement, tag keys and values, field keys)
//! are where servers disagree. The Go parser of InfluxDB 1.x and 2.x keeps
//! `\\` as two backslashes; the Rust parser of InfluxDB 3 reads it as one,
//! and both refuse a name that ends with a backslash. [`Dialect::Portable`]
//! writes backslashes as they are and refuses the names whose meaning would
//! differ between the two parsers (a backslash before another backslash,
//! before a character that is escaped or quoted, or at the end);
//! [`Dialect::V3`] doubles every backslash, which InfluxDB 3 reads back
//! exactly. A refused point comes back as a typed [`EncodeError`]: nothing
//! is dropped or rewritten silently.

use std::cmp::Ordering;
use std::fmt;

/// One point, as borrowed text; encoded by [`encode_point`].
#[derive(Debug, Clone, PartialEq)]
pub struct LpPoint<'a> {
    pub measurement: &'a str,
    /// Any order; a pair with an empty value is omitted.
    pub tags: Vec<(&'a str, &'a str)>,
    pub fields: Vec<(&'a str, FieldValue<'a>)>,
    pub time_ns: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// Decimal text of a finite float64, written verbatim once checked
    /// (the shortest round-trip text, e.g. Rust's `{}` of an `f64`).
    Float(&'a str),
    Int(i64),
    Str(&'a str),
    Bool(bool),
}

/// How backslashes in names are written (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Dialect {
    /// Read identically by InfluxDB 1.x, 2.x and 3; refuses the few names
    /// whose backslashes those parsers read differently. For the v1 and v2
    /// write APIs, which InfluxDB 3 also serves.
    #[default]
    Portable,
    /// InfluxDB 3 (`/api/v3/write_lp`): `\` in a name is written `\\`.
    V3,
}

/// The part of a line an [`EncodeError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
    StringField,
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Element::Measurement => "measurement",
            Element::TagKey => "tag key",
            Element::TagValue => "tag value",
            Element::FieldKey => "field key",
            Element::StringField => "string field value",
        })
    }
}

/// Why a point cannot be written. `name` is the offending text (or the
/// field's key for field values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("empty {0}")]
    Empty(Element),
    #[error("a point needs at least one field")]
    NoFields,
    /// `\n` anywhere; line protocol has no way to carry it.
    #[error("{element} {name:?} contains a newline")]
    Newline { element: Element, name: String },
    /// Tab or NUL in a name: the parsers treat them as separators or
    /// strip them.
    #[error("{element} {name:?} contains {ch:?}, which line protocol cannot carry in names")]
    UnsupportedChar {
        element: Element,
        name: String,
        ch: char,
    },
    /// Both parsers refuse a name ending in a backslash, escaped or not.
    #[error("{element} {name:?} ends with a backslash")]
    TrailingBackslash { element: Element, name: String },
    /// [`Dialect::Portable`]: a backslash before `\`, `,`, `=`, space or
    /// `"`, which InfluxDB 1.x/2.x and InfluxDB 3 would read differently.
    #[error("{element} {name:?} has a backslash that InfluxDB 1.x/2.x and 3 read differently")]
    AmbiguousBackslash { element: Element, name: String },
    /// A line starting with `#` is a comment: the point would vanish.
    #[error("measurement {0:?} starts with '#', which makes the line a comment")]
    CommentMeasurement(String),
    #[error("duplicate tag key {0:?}")]
    DuplicateTag(String),
    #[error("duplicate field key {0:?}")]
    DuplicateField(String),
    #[error("field {field:?}: {text:?} is not a finite decimal float")]
    InvalidFloat { field: String, text: String },
    /// Longer than the 64 KiB InfluxDB accepts for a string field.
    #[error("field {field:?}: string of {len} bytes exceeds {MAX_STRING_BYTES}")]
    StringTooLong { field: String, len: usize },
    /// The series key (measurement, tags, longest field key) is longer than
    /// InfluxDB's 65,535-byte limit.
    #[error("series key of {len} bytes exceeds {MAX_KEY_BYTES}")]
    KeyTooLong { len: usize },
}

impl EncodeError {
    /// A stable key for the run report (`dropped.influxdb_<reason>`).
    pub fn reason(&self) -> &'static str {
        match self {
            EncodeError::Empty(_) => "influxdb_empty_name",
            EncodeError::NoFields => "influxdb_no_fields",
            EncodeError::Newline { .. } => "influxdb_newline",
            EncodeError::UnsupportedChar { .. } => "influxdb_unsupported_char",
            EncodeError::TrailingBackslash { .. } => "influxdb_trailing_backslash",
            EncodeError::AmbiguousBackslash { .. } => "influxdb_ambiguous_backslash",
            EncodeError::CommentMeasurement(_) => "influxdb_comment_measurement",
            EncodeError::DuplicateTag(_) => "influxdb_duplicate_tag",
            EncodeError::DuplicateField(_) => "influxdb_duplicate_field",
            EncodeError::InvalidFloat { .. } => "influxdb_invalid_float",
            EncodeError::StringTooLong { .. } => "influxdb_string_too_long",
            EncodeError::KeyTooLong { .. } => "influxdb_key_too_long",
        }
    }
}

/// The latest timestamp InfluxDB 1.x and 2.x store (`models.MaxNanoTime`,
/// one below `i64::MAX`); a point after it is refused.
pub const MAX_TIME_NS: i64 = i64::MAX - 1;

/// Longest string field value (bytes, unescaped) InfluxDB accepts.
pub const MAX_STRING_BYTES: usize = 65_536;
/// Longest series key: escaped measurement and tags, 4 bytes of separator
/// and the field key (InfluxDB 1.x/2.x `MaxKeyLength`).
pub const MAX_KEY_BYTES: usize = 65_535;
const SERIES_FIELD_SEPARATOR: usize = 4;

/// Characters escaped in each element (besides the backslash in V3).
fn escaped_set(el: Element) -> &'static [u8] {
    match el {
        Element::Measurement => b", ",
        Element::TagKey | Element::TagValue | Element::FieldKey => b",= ",
        Element::StringField => b"\"\\",
    }
}

/// Characters a literal backslash may not precede in [`Dialect::Portable`].
const PORTABLE_BACKSLASH_FORBIDDEN: &[u8] = b"\\,= \"";

fn check_name(el: Element, s: &str, dialect: Dialect) -> Result<(), EncodeError> {
    if s.is_empty() {
        return Err(EncodeError::Empty(el));
    }
    let b = s.as_bytes();
    if el == Element::Measurement && b[0] == b'#' {
        return Err(EncodeError::CommentMeasurement(s.to_owned()));
    }
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\n' => {
                return Err(EncodeError::Newline {
                    element: el,
                    name: s.to_owned(),
                })
            }
            b'\t' | 0 => {
                return Err(EncodeError::UnsupportedChar {
                    element: el,
                    name: s.to_owned(),
                    ch: c as char,
                })
            }
            b'\\' => {
                if i + 1 == b.len() {
                    return Err(EncodeError::TrailingBackslash {
                        element: el,
                        name: s.to_owned(),
                    });
                }
                if dialect == Dialect::Portable && PORTABLE_BACKSLASH_FORBIDDEN.contains(&b[i + 1])
                {
                    return Err(EncodeError::AmbiguousBackslash {
                        element: el,
                        name: s.to_owned(),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The escaped bytes of a (checked) name, lazily, for sorting and sizing.
fn escaped_bytes(el: Element, s: &str, dialect: Dialect) -> impl Iterator<Item = u8> + '_ {
    let set = escaped_set(el);
    s.bytes().flat_map(move |c| {
        let esc = set.contains(&c) || (c == b'\\' && dialect == Dialect::V3);
        [Some(b'\\').filter(|_| esc), Some(c)].into_iter().flatten()
    })
}

fn escaped_len(el: Element, s: &str, dialect: Dialect) -> usize {
    let set = escaped_set(el);
    s.len()
        + s.bytes()
            .filter(|c| set.contains(c) || (*c == b'\\' && dialect == Dialect::V3))
            .count()
}

fn write_escaped(out: &mut Vec<u8>, el: Element, s: &str, dialect: Dialect) {
    let set = escaped_set(el);
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if set.contains(&c) || (c == b'\\' && dialect == Dialect::V3) {
            out.extend_from_slice(&b[start..i]);
            out.push(b'\\');
            start = i;
        }
    }
    out.extend_from_slice(&b[start..]);
}

fn write_int(out: &mut Vec<u8>, n: i64) {
    use std::io::Write as _;
    write!(out, "{n}").expect("write to a Vec");
}

/// `-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?`: the float syntax both the Go
/// and the Rust parser accept, parsing to a finite value.
pub fn is_float_literal(s: &str) -> bool {
    fn digits(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    }
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let j = digits(b, i);
    if j == i {
        return false;
    }
    i = j;
    if i < b.len() && b[i] == b'.' {
        let j = digits(b, i + 1);
        if j == i + 1 {
            return false;
        }
        i = j;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let j = digits(b, i);
        if j == i {
            return false;
        }
        i = j;
    }
    i == b.len() && s.parse::<f64>().is_ok_and(f64::is_finite)
}

fn check_string_field(key: &str, v: &str) -> Result<(), EncodeError> {
    if v.contains('\n') {
        return Err(EncodeError::Newline {
            element: Element::StringField,
            name: key.to_owned(),
        });
    }
    if v.len() > MAX_STRING_BYTES {
        return Err(EncodeError::StringTooLong {
            field: key.to_owned(),
            len: v.len(),
        });
    }
    Ok(())
}

/// Appends `p` as one line (with its `\n`) to `out`. On error `out` is left
/// as it was.
pub fn encode_point(
    out: &mut Vec<u8>,
    p: &LpPoint<'_>,
    dialect: Dialect,
) -> Result<(), EncodeError> {
    check_name(Element::Measurement, p.measurement, dialect)?;
    if p.fields.is_empty() {
        return Err(EncodeError::NoFields);
    }

    let mut tags: Vec<(&str, &str)> = Vec::with_capacity(p.tags.len());
    for &(k, v) in &p.tags {
        if v.is_empty() {
            continue;
        }
        check_name(Element::TagKey, k, dialect)?;
        check_name(Element::TagValue, v, dialect)?;
        tags.push((k, v));
    }
    let key_order = |a: &str, b: &str| -> Ordering {
        escaped_bytes(Element::TagKey, a, dialect).cmp(escaped_bytes(Element::TagKey, b, dialect))
    };
    tags.sort_unstable_by(|a, b| key_order(a.0, b.0));
    if let Some(w) = tags.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(EncodeError::DuplicateTag(w[0].0.to_owned()));
    }

    let mut longest_field_key = 0;
    for (i, (k, v)) in p.fields.iter().enumerate() {
        check_name(Element::FieldKey, k, dialect)?;
        if p.fields[..i].iter().any(|(other, _)| other == k) {
            return Err(EncodeError::DuplicateField((*k).to_owned()));
        }
        longest_field_key = longest_field_key.max(escaped_len(Element::FieldKey, k, dialect));
        match v {
            FieldValue::Float(text) if !is_float_literal(text) => {
                return Err(EncodeError::InvalidFloat {
                    field: (*k).to_owned(),
                    text: (*text).to_owned(),
                })
            }
            FieldValue::Str(s) => check_string_field(k, s)?,
            _ => {}
        }
    }

    let key_len = escaped_len(Element::Measurement, p.measurement, dialect)
        + tags
            .iter()
            .map(|(k, v)| {
                2 + escaped_len(Element::TagKey, k, dialect)
                    + escaped_len(Element::TagValue, v, dialect)
            })
            .sum::<usize>();
    let series_len = key_len + SERIES_FIELD_SEPARATOR + longest_field_key;
    if series_len > MAX_KEY_BYTES {
        return Err(EncodeError::KeyTooLong { len: series_len });
    }

    write_escaped(out, Element::Measurement, p.measurement, dialect);
    for (k, v) in &tags {
        out.push(b',');
        write_escaped(out, Element::TagKey, k, dialect);
        out.push(b'=');
        write_escaped(out, Element::TagValue, v, dialect);
    }
    out.push(b' ');
    for (i, (k, v)) in p.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_escaped(out, Element::FieldKey, k, dialect);
        out.push(b'=');
        match v {
            FieldValue::Float(text) => out.extend_from_slice(text.as_bytes()),
            FieldValue::Int(n) => {
                write_int(out, *n);
                out.push(b'i');
            }
            FieldValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            FieldValue::Str(s) => {
                out.push(b'"');
                write_escaped(out, Element::StringField, s, dialect);
                out.push(b'"');
            }
        }
    }
    out.push(b' ');
    write_int(out, p.time_ns);
    out.push(b'\n');
    Ok(())
}

// ---------------------------------------------------------------------------
// k6's layout
// ---------------------------------------------------------------------------

/// The type a tag (or metadata entry) is converted to when written as a
/// field, as k6's `tagsAsFields` `name:type` syntax names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum FieldKind {
    #[default]
    String,
    Int,
    Float,
    Bool,
}

/// Which tags become fields, and as what. Parsed from k6's syntax by
/// [`super::config::parse_tags_as_fields`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TagsAsFields(pub Vec<(String, FieldKind)>);

impl Default for TagsAsFields {
    /// k6's default: `vu`, `iter` and `url`, all as strings.
    fn default() -> Self {
        Self(
            ["vu", "iter", "url"]
                .iter()
                .map(|n| ((*n).to_owned(), FieldKind::String))
                .collect(),
        )
    }
}

impl TagsAsFields {
    pub fn kind_of(&self, name: &str) -> Option<FieldKind> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, k)| *k)
    }
}

/// k6 points sharing one time, tag set and metadata: one line per measure.
#[derive(Debug, Clone, Copy)]
pub struct K6Group<'a> {
    pub time_ns: i64,
    pub tags: &'a [(&'a str, &'a str)],
    /// (metric name, decimal text of the float64 sample value).
    pub measures: &'a [(&'a str, &'a str)],
    pub metadata: &'a [(&'a str, &'a str)],
}

/// What [`encode_k6_group`] did: how many lines it appended, and the
/// measures (by index into `measures`) it refused, with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupOutcome {
    pub lines: usize,
    pub refused: Vec<(usize, EncodeError)>,
}

/// A field whose value had to be converted (owned text).
enum Converted {
    Float(String),
    Int(i64),
    Bool(bool),
    Str,
}

/// k6's conversion of a tag to a field of `kind`: the text is parsed as Go's
/// `strconv` would, and kept as a string when it does not parse (k6's
/// fallback). Floats that parse to NaN or an infinity also stay strings:
/// InfluxDB refuses those values.
fn convert(kind: FieldKind, text: &str) -> Converted {
    match kind {
        FieldKind::String => Converted::Str,
        FieldKind::Int => text.parse::<i64>().map_or(Converted::Str, Converted::Int),
        FieldKind::Float => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Converted::Float(format!("{v}")),
            _ => Converted::Str,
        },
        FieldKind::Bool => match text {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Converted::Bool(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Converted::Bool(false),
            _ => Converted::Str,
        },
    }
}

/// Appends one line per measure of `group` in k6's own InfluxDB layout:
/// measurement = metric name, a float field `value`, the tags (those named
/// in `tags_as_fields` moved to fields, converted to their kind), and each
/// metadata entry as a field (a string, or the kind `tags_as_fields` gives
/// its name: k6 now reports `vu` and `iter` as metadata).
///
/// A measure whose line cannot be encoded is listed in the outcome with its
/// reason; the others are still written.
pub fn encode_k6_group(
    out: &mut Vec<u8>,
    group: &K6Group<'_>,
    tags_as_fields: &TagsAsFields,
    dialect: Dialect,
) -> GroupOutcome {
    let mut tags = Vec::with_capacity(group.tags.len());
    let mut extra: Vec<(&str, &str, FieldKind)> = Vec::new();
    for &(k, v) in group.tags {
        match tags_as_fields.kind_of(k) {
            Some(kind) if !v.is_empty() => extra.push((k, v, kind)),
            Some(_) => {}
            None => tags.push((k, v)),
        }
    }
    for &(k, v) in group.metadata {
        extra.push((k, v, tags_as_fields.kind_of(k).unwrap_or_default()));
    }
    extra.sort_by(|a, b| a.0.cmp(b.0));
    let converted: Vec<Converted> = extra.iter().map(|&(_, v, kind)| convert(kind, v)).collect();

    let mut fields: Vec<(&str, FieldValue<'_>)> = Vec::with_capacity(1 + extra.len());
    // A stand-in: each measure writes its own value.
    fields.push(("value", FieldValue::Float("0")));
    for ((k, v, _), c) in extra.iter().zip(&converted) {
        let value = match c {
            Converted::Float(s) => FieldValue::Float(s),
            Converted::Int(n) => FieldValue::Int(*n),
            Converted::Bool(b) => FieldValue::Bool(*b),
            Converted::Str => FieldValue::Str(v),
        };
        fields.push((k, value));
    }

    let mut outcome = GroupOutcome::default();
    // The tag set and the fields after `value` are the same on every line:
    // check and encode them once, with a stand-in measurement and value.
    let point = LpPoint {
        measurement: "m",
        tags,
        fields,
        time_ns: group.time_ns,
    };
    let mut shared = Vec::new();
    if let Err(e) = encode_point(&mut shared, &point, dialect) {
        outcome.refused = (0..group.measures.len()).map(|i| (i, e.clone())).collect();
        return outcome;
    }
    let tagset_len: usize = point
        .tags
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| {
            2 + escaped_len(Element::TagKey, k, dialect)
                + escaped_len(Element::TagValue, v, dialect)
        })
        .sum();
    let tagset = &shared[1..1 + tagset_len];
    let tail = &shared[1 + tagset_len + b" value=0".len()..];
    let longest_field_key = point
        .fields
        .iter()
        .map(|(k, _)| escaped_len(Element::FieldKey, k, dialect))
        .max()
        .unwrap_or(0);
    for (i, &(metric, value)) in group.measures.iter().enumerate() {
        let checked = check_name(Element::Measurement, metric, dialect).and_then(|()| {
            if !is_float_literal(value) {
                return Err(EncodeError::InvalidFloat {
                    field: "value".to_owned(),
                    text: value.to_owned(),
                });
            }
            let len = escaped_len(Element::Measurement, metric, dialect)
                + tagset_len
                + SERIES_FIELD_SEPARATOR
                + longest_field_key;
            if len > MAX_KEY_BYTES {
                return Err(EncodeError::KeyTooLong { len });
            }
            Ok(())
        });
        match checked {
            Ok(()) => {
                write_escaped(out, Element::Measurement, metric, dialect);
                out.extend_from_slice(tagset);
                out.extend_from_slice(b" value=");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(tail);
                outcome.lines += 1;
            }
            Err(e) => outcome.refused.push((i, e)),
        }
    }
    outcome
}

// ---------------------------------------------------------------------------
// Strict parser
// ---------------------------------------------------------------------------

/// A field value as [`parse_lines`] reads it; floats keep their text.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedValue {
    Float(String),
    Int(i64),
    Str(String),
    Bool(bool),
}

impl ParsedValue {
    pub fn from_field(v: &FieldValue<'_>) -> Self {
        match v {
            FieldValue::Float(s) => Self::Float((*s).to_owned()),
            FieldValue::Int(n) => Self::Int(*n),
            FieldValue::Str(s) => Self::Str((*s).to_owned()),
            FieldValue::Bool(b) => Self::Bool(*b),
        }
    }

    /// InfluxDB's name for the value's type (as its error messages say it).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Float(_) => "float",
            Self::Int(_) => "integer",
            Self::Str(_) => "string",
            Self::Bool(_) => "boolean",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPoint {
    pub measurement: String,
    /// In line order (the encoder's order: sorted by escaped key).
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, ParsedValue)>,
    pub time_ns: i64,
}

impl ParsedPoint {
    /// The point `p` is expected to parse back to when written in
    /// `dialect` (tags in the encoder's order).
    pub fn expected(p: &LpPoint<'_>, dialect: Dialect) -> Self {
        let mut tags: Vec<(String, String)> = p
            .tags
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tags.sort_by(|a, b| {
            escaped_bytes(Element::TagKey, &a.0, dialect).cmp(escaped_bytes(
                Element::TagKey,
                &b.0,
                dialect,
            ))
        });
        Self {
            measurement: p.measurement.to_owned(),
            tags,
            fields: p
                .fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ParsedValue::from_field(v)))
                .collect(),
            time_ns: p.time_ns,
        }
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn field(&self, key: &str) -> Option<&ParsedValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Parses a body the encoder wrote with [`Dialect::Portable`]. See
/// [`parse_lines_with`].
pub fn parse_lines(body: &str) -> Result<Vec<ParsedPoint>, String> {
    parse_lines_with(Dialect::Portable, body)
}

/// Parses `body` strictly: exactly the language [`encode_point`] writes in
/// `dialect` (every line ends with `\n`, tags sorted and unique, a
/// timestamp on every line, no comments or blank lines, no escape the
/// encoder would not write). The error names the 1-based line.
pub fn parse_lines_with(dialect: Dialect, body: &str) -> Result<Vec<ParsedPoint>, String> {
    let Some(body) = body.strip_suffix('\n') else {
        return Err(if body.is_empty() {
            "empty body".to_owned()
        } else {
            "the last line does not end with a newline".to_owned()
        });
    };
    body.split('\n')
        .enumerate()
        .map(|(i, line)| {
            parse_line(dialect, line).map_err(|e| format!("line {}: {e}: {line:?}", i + 1))
        })
        .collect()
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {what} at byte {}", self.i))
        }
    }

    /// Reads a name up to an unescaped byte in `stops`; a raw byte of
    /// `forbidden` is an error.
    fn name(
        &mut self,
        el: Element,
        dialect: Dialect,
        stops: &[u8],
        forbidden: &[u8],
    ) -> Result<String, String> {
        let set = escaped_set(el);
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            if stops.contains(&c) {
                break;
            }
            if forbidden.contains(&c) {
                return Err(format!("unescaped {:?} in {el}", c as char));
            }
            match c {
                b'\n' | b'\t' | 0 => return Err(format!("{:?} in {el}", c as char)),
                b'\\' => {
                    let next = self.b.get(self.i + 1).copied();
                    match (dialect, next) {
                        (_, None) => return Err(format!("{el} ends with a backslash")),
                        (_, Some(n)) if set.contains(&n) => {
                            out.push(n);
                            self.i += 2;
                        }
                        (Dialect::V3, Some(b'\\')) => {
                            out.push(b'\\');
                            self.i += 2;
                        }
                        (Dialect::V3, Some(n)) => {
                            return Err(format!("{el}: backslash before {:?}", n as char))
                        }
                        (Dialect::Portable, Some(n))
                            if PORTABLE_BACKSLASH_FORBIDDEN.contains(&n) =>
                        {
                            return Err(format!("{el}: ambiguous backslash before {:?}", n as char))
                        }
                        (Dialect::Portable, Some(_)) => {
                            out.push(b'\\');
                            self.i += 1;
                        }
                    }
                }
                _ => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        if out.is_empty() {
            return Err(format!("empty {el}"));
        }
        if out.last() == Some(&b'\\') {
            return Err(format!("{el} ends with a backslash"));
        }
        String::from_utf8(out).map_err(|_| format!("{el} is not UTF-8"))
    }

    fn integer(&mut self) -> Result<i64, String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if self.i == digits {
            return Err(format!("expected digits at byte {digits}"));
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).expect("ASCII");
        text.parse::<i64>().map_err(|e| format!("{text:?}: {e}"))
    }

    fn field_value(&mut self) -> Result<ParsedValue, String> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err("unterminated string".to_owned()),
                        Some(b'"') => {
                            self.i += 1;
                            break;
                        }
                        Some(b'\\') => match self.b.get(self.i + 1) {
                            Some(&c @ (b'"' | b'\\')) => {
                                out.push(c);
                                self.i += 2;
                            }
                            _ => return Err("unescaped backslash in string".to_owned()),
                        },
                        Some(b'\n') => return Err("newline in string".to_owned()),
                        Some(c) => {
                            out.push(c);
                            self.i += 1;
                        }
                    }
                }
                String::from_utf8(out)
                    .map(ParsedValue::Str)
                    .map_err(|_| "string is not UTF-8".to_owned())
            }
            Some(b't') if self.b[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(ParsedValue::Bool(true))
            }
            Some(b'f') if self.b[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(ParsedValue::Bool(false))
            }
            Some(_) => {
                let start = self.i;
                while self.peek().is_some_and(|c| c != b',' && c != b' ') {
                    self.i += 1;
                }
                let text =
                    std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?;
                if let Some(int) = text.strip_suffix('i') {
                    let ok = int.strip_prefix('-').unwrap_or(int);
                    if !ok.is_empty() && ok.bytes().all(|c| c.is_ascii_digit()) {
                        return int
                            .parse::<i64>()
                            .map(ParsedValue::Int)
                            .map_err(|e| format!("{text:?}: {e}"));
                    }
                } else if is_float_literal(text) {
                    return Ok(ParsedValue::Float(text.to_owned()));
                }
                Err(format!("invalid field value {text:?}"))
            }
            None => Err("missing field value".to_owned()),
        }
    }
}

fn parse_line(dialect: Dialect, line: &str) -> Result<ParsedPoint, String> {
    let mut c = Cursor {
        b: line.as_bytes(),
        i: 0,
    };
    if line.starts_with('#') {
        return Err("comment line".to_owned());
    }
    let measurement = c.name(Element::Measurement, dialect, b", ", b"")?;
    let mut tags: Vec<(String, String)> = Vec::new();
    while c.peek() == Some(b',') {
        c.i += 1;
        let k = c.name(Element::TagKey, dialect, b"=", b", ")?;
        c.expect(b'=', "'='")?;
        let v = c.name(Element::TagValue, dialect, b", ", b"=")?;
        if let Some((prev, _)) = tags.last() {
            match escaped_bytes(Element::TagKey, prev, dialect).cmp(escaped_bytes(
                Element::TagKey,
                &k,
                dialect,
            )) {
                Ordering::Less => {}
                Ordering::Equal => return Err(format!("duplicate tag {k:?}")),
                Ordering::Greater => return Err(format!("tag {k:?} out of order")),
            }
        }
        tags.push((k, v));
    }
    c.expect(b' ', "a space before the fields")?;
    let mut fields: Vec<(String, ParsedValue)> = Vec::new();
    loop {
        let k = c.name(Element::FieldKey, dialect, b"=", b", ")?;
        c.expect(b'=', "'='")?;
        let v = c.field_value()?;
        if fields.iter().any(|(other, _)| *other == k) {
            return Err(format!("duplicate field {k:?}"));
        }
        fields.push((k, v));
        if c.peek() == Some(b',') {
            c.i += 1;
        } else {
            break;
        }
    }
    c.expect(b' ', "a space before the timestamp")?;
    let time_ns = c.integer()?;
    if c.i != c.b.len() {
        return Err(format!("trailing bytes at {}", c.i));
    }
    Ok(ParsedPoint {
        measurement,
        tags,
        fields,
        time_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(p: &LpPoint<'_>, d: Dialect) -> Result<String, EncodeError> {
        let mut out = Vec::new();
        encode_point(&mut out, p, d)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn pt<'a>(
        m: &'a str,
        tags: &[(&'a str, &'a str)],
        fields: &[(&'a str, FieldValue<'a>)],
    ) -> LpPoint<'a> {
        LpPoint {
            measurement: m,
            tags: tags.to_vec(),
            fields: fields.to_vec(),
            time_ns: 1_700_000_000_123_456_789,
        }
    }

    #[test]
    fn escapes_each_element_per_the_reference() {
        let p = pt(
            "my m,x=y",
            &[("t k,=", "v a,l=ue"), ("a", "")],
            &[
                ("f k,=", FieldValue::Str(r#"say "hi" \ there"#)),
                ("n", FieldValue::Int(-42)),
                ("x", FieldValue::Float("1.5e-7")),
                ("b", FieldValue::Bool(false)),
            ],
        );
        assert_eq!(
            line(&p, Dialect::Portable).unwrap(),
            "my\\ m\\,x=y,t\\ k\\,\\==v\\ a\\,l\\=ue f\\ k\\,\\==\"say \\\"hi\\\" \\\\ there\",n=-42i,x=1.5e-7,b=false 1700000000123456789\n"
        );
    }

    #[test]
    fn sorts_tags_by_escaped_key_and_omits_empty_values() {
        // ' ' (0x20) sorts before '!' raw, but its escape '\' (0x5c) after.
        let p = pt(
            "m",
            &[("z", "1"), ("a b", "2"), ("a!", "3"), ("e", "")],
            &[("v", FieldValue::Float("1"))],
        );
        assert_eq!(
            line(&p, Dialect::Portable).unwrap(),
            "m,a!=3,a\\ b=2,z=1 v=1 1700000000123456789\n"
        );
    }

    #[test]
    fn refuses_what_cannot_be_carried() {
        let f = [("v", FieldValue::Float("1"))];
        let cases: Vec<Case<'_>> = vec![
            (pt("", &[], &f), |e| {
                matches!(e, EncodeError::Empty(Element::Measurement))
            }),
            (pt("m", &[], &[]), |e| matches!(e, EncodeError::NoFields)),
            (pt("#m", &[], &f), |e| {
                matches!(e, EncodeError::CommentMeasurement(_))
            }),
            (pt("m", &[("t", "a\nb")], &f), |e| {
                matches!(
                    e,
                    EncodeError::Newline {
                        element: Element::TagValue,
                        ..
                    }
                )
            }),
            (pt("m", &[], &[("s", FieldValue::Str("a\nb"))]), |e| {
                matches!(
                    e,
                    EncodeError::Newline {
                        element: Element::StringField,
                        ..
                    }
                )
            }),
            (pt("m", &[("t", "a\tb")], &f), |e| {
                matches!(e, EncodeError::UnsupportedChar { ch: '\t', .. })
            }),
            (pt("m\0", &[], &f), |e| {
                matches!(e, EncodeError::UnsupportedChar { ch: '\0', .. })
            }),
            (pt("m", &[("t", "ab\\")], &f), |e| {
                matches!(
                    e,
                    EncodeError::TrailingBackslash {
                        element: Element::TagValue,
                        ..
                    }
                )
            }),
            (pt("m", &[("t\\\\x", "a")], &f), |e| {
                matches!(
                    e,
                    EncodeError::AmbiguousBackslash {
                        element: Element::TagKey,
                        ..
                    }
                )
            }),
            (pt("m", &[("t", "a\\,b")], &f), |e| {
                matches!(e, EncodeError::AmbiguousBackslash { .. })
            }),
            (pt("m", &[("t", "a\\\"b")], &f), |e| {
                matches!(e, EncodeError::AmbiguousBackslash { .. })
            }),
            (pt("m", &[("t", "1"), ("t", "2")], &f), |e| {
                matches!(e, EncodeError::DuplicateTag(_))
            }),
            (
                pt(
                    "m",
                    &[],
                    &[("v", FieldValue::Int(1)), ("v", FieldValue::Int(2))],
                ),
                |e| matches!(e, EncodeError::DuplicateField(_)),
            ),
            (pt("m", &[], &[("v", FieldValue::Float("1."))]), |e| {
                matches!(e, EncodeError::InvalidFloat { .. })
            }),
            (pt("m", &[], &[("v", FieldValue::Float("NaN"))]), |e| {
                matches!(e, EncodeError::InvalidFloat { .. })
            }),
            (pt("m", &[], &[("v", FieldValue::Float("1e999"))]), |e| {
                matches!(e, EncodeError::InvalidFloat { .. })
            }),
        ];
        for (p, ok) in cases {
            let mut out = b"keep".to_vec();
            let err = encode_point(&mut out, &p, Dialect::Portable).unwrap_err();
            assert!(ok(&err), "{p:?}: {err:?}");
            assert_eq!(out, b"keep", "buffer untouched on error");
        }
    }

    #[test]
    fn v3_doubles_backslashes_and_allows_them_before_specials() {
        let p = pt(
            "m\\1",
            &[("t", "a\\,b\\\\c")],
            &[("k\\=", FieldValue::Float("1"))],
        );
        assert_eq!(
            line(&p, Dialect::V3).unwrap(),
            "m\\\\1,t=a\\\\\\,b\\\\\\\\c k\\\\\\==1 1700000000123456789\n"
        );
        // Portable keeps a backslash before an ordinary character as is.
        let p = pt(
            "m\\1",
            &[("t", "C:\\dir")],
            &[("v", FieldValue::Float("1"))],
        );
        assert_eq!(
            line(&p, Dialect::Portable).unwrap(),
            "m\\1,t=C:\\dir v=1 1700000000123456789\n"
        );
    }

    #[test]
    fn long_values_are_refused_at_the_limits() {
        let big = "x".repeat(MAX_STRING_BYTES + 1);
        let p = pt("m", &[], &[("s", FieldValue::Str(&big))]);
        assert!(matches!(
            line(&p, Dialect::Portable),
            Err(EncodeError::StringTooLong { .. })
        ));
        let ok = "x".repeat(MAX_STRING_BYTES);
        assert!(line(
            &pt("m", &[], &[("s", FieldValue::Str(&ok))]),
            Dialect::Portable
        )
        .is_ok());

        // measurement + ",t=" + value + 4 + "v" == MAX_KEY_BYTES exactly.
        let v = "y".repeat(MAX_KEY_BYTES - 1 - 3 - 4 - 1);
        let f = [("v", FieldValue::Float("1"))];
        assert!(line(&pt("m", &[("t", &v)], &f), Dialect::Portable).is_ok());
        let v = format!("{v}y");
        assert!(matches!(
            line(&pt("m", &[("t", &v)], &f), Dialect::Portable),
            Err(EncodeError::KeyTooLong { len }) if len == MAX_KEY_BYTES + 1
        ));
    }

    #[test]
    fn float_literals() {
        for ok in [
            "0",
            "-0",
            "1",
            "1.5",
            "-0.000001",
            "1e5",
            "1E+5",
            "2.5e-300",
            "123456789012345678901234567890",
        ] {
            assert!(is_float_literal(ok), "{ok}");
        }
        for bad in [
            "", "-", "1.", ".5", "1e", "1e+", "+1", "inf", "NaN", "1_0", "0x10", "1e309", " 1",
        ] {
            assert!(!is_float_literal(bad), "{bad}");
        }
    }

    #[test]
    fn k6_group_layout() {
        let tags = [
            ("url", "https://x/?a=1 b"),
            ("name", "n"),
            ("vu", "7"),
            ("status", ""),
        ];
        let group = K6Group {
            time_ns: 5,
            tags: &tags,
            measures: &[
                ("http_reqs", "1"),
                ("http_req_duration", "12.5"),
                ("bad", "1."),
            ],
            metadata: &[("iter", "3"), ("trace_id", "abc")],
        };
        let taf =
            crate::sinks::influxdb::config::parse_tags_as_fields("vu:int,iter:int,url").unwrap();
        let mut out = Vec::new();
        let o = encode_k6_group(&mut out, &group, &taf, Dialect::Portable);
        assert_eq!(o.lines, 2);
        assert_eq!(o.refused.len(), 1);
        assert_eq!(o.refused[0].0, 2);
        assert!(matches!(o.refused[0].1, EncodeError::InvalidFloat { .. }));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "http_reqs,name=n value=1,iter=3i,trace_id=\"abc\",url=\"https://x/?a=1 b\",vu=7i 5\n\
             http_req_duration,name=n value=12.5,iter=3i,trace_id=\"abc\",url=\"https://x/?a=1 b\",vu=7i 5\n"
        );
    }

    #[test]
    fn k6_defaults_write_vu_and_iter_as_strings_with_go_fallbacks() {
        let mut out = Vec::new();
        let group = K6Group {
            time_ns: 1,
            tags: &[("vu", "7")],
            measures: &[("m", "1")],
            metadata: &[("iter", "x")],
        };
        encode_k6_group(
            &mut out,
            &group,
            &TagsAsFields::default(),
            Dialect::Portable,
        );
        assert_eq!(out, b"m value=1,iter=\"x\",vu=\"7\" 1\n");

        let taf = crate::sinks::influxdb::config::parse_tags_as_fields(
            "a:int,b:float,c:bool,d:float,e:bool",
        )
        .unwrap();
        let group = K6Group {
            time_ns: 1,
            tags: &[
                ("a", "x1"),
                ("b", "1e3"),
                ("c", "T"),
                ("d", "inf"),
                ("e", "yes"),
            ],
            measures: &[("m", "1")],
            metadata: &[],
        };
        let mut out = Vec::new();
        encode_k6_group(&mut out, &group, &taf, Dialect::Portable);
        assert_eq!(
            out,
            b"m value=1,a=\"x1\",b=1000,c=true,d=\"inf\",e=\"yes\" 1\n"
        );
    }

    #[test]
    fn k6_group_collisions_are_refused() {
        let group = K6Group {
            time_ns: 1,
            tags: &[("url", "u")],
            measures: &[("m", "1"), ("n", "2")],
            metadata: &[("url", "v"), ("value", "x")],
        };
        let o = encode_k6_group(
            &mut Vec::new(),
            &group,
            &TagsAsFields::default(),
            Dialect::Portable,
        );
        assert_eq!(o.lines, 0);
        assert_eq!(o.refused.len(), 2);
        assert!(o
            .refused
            .iter()
            .all(|(_, e)| matches!(e, EncodeError::DuplicateField(_))));
    }

    #[test]
    fn parser_is_strict() {
        for bad in [
            "",
            "m v=1 1",
            "m v=1\n\n",
            "# c\n",
            " m v=1 1\n",
            "m v=1\n",
            "m,b=1,a=2 v=1 1\n",
            "m,a=1,a=2 v=1 1\n",
            "m,a= v=1 1\n",
            "m,a=x=y v=1 1\n",
            "m v=1,v=2 1\n",
            "m v=\"a\\b\" 1\n",
            "m v=1. 1\n",
            "m v=1 1 \n",
            "m\\ v=1 1\n",
            "m,t=a\\\\b v=1 1\n",
            "m v=t 1\n",
            "m v=1u 1\n",
        ] {
            assert!(parse_lines(bad).is_err(), "{bad:?}");
        }
        let p = parse_lines("m\\ x,a=b\\=c v=\"q\\\"\\\\\",i=-3i,t=true 7\n").unwrap();
        assert_eq!(p[0].measurement, "m x");
        assert_eq!(p[0].tag("a"), Some("b=c"));
        assert_eq!(p[0].field("v"), Some(&ParsedValue::Str("q\"\\".into())));
        assert_eq!(p[0].field("i"), Some(&ParsedValue::Int(-3)));
        assert_eq!(p[0].time_ns, 7);
        assert!(parse_lines_with(Dialect::V3, "m,t=C:\\dir v=1 1\n").is_err());
        assert_eq!(
            parse_lines_with(Dialect::V3, "m,t=C:\\\\dir v=1 1\n").unwrap()[0].tag("t"),
            Some("C:\\dir")
        );
    }

    /// Names full of the characters that need care; V3 may use any
    /// backslash placement except a trailing one.
    fn nasty_name(dialect: Dialect) -> impl Strategy<Value = String> {
        let atom = prop_oneof![
            Just(" ".to_owned()),
            Just(",".to_owned()),
            Just("=".to_owned()),
            Just("\"".to_owned()),
            Just("'".to_owned()),
            Just("\\".to_owned()),
            Just("\\x".to_owned()),
            Just("é".to_owned()),
            Just("日本".to_owned()),
            Just("🚀".to_owned()),
            Just("\r".to_owned()),
            "[a-z0-9_.-]{1,3}",
            any::<char>().prop_map(|c| c.to_string()),
        ];
        prop::collection::vec(atom, 1..6).prop_map(move |v| sanitize(&v.concat(), dialect))
    }

    /// Makes `s` an encodable name with the same nasty characters: a
    /// backslash the dialect cannot carry gets an `x` after it.
    pub(crate) fn sanitize(s: &str, dialect: Dialect) -> String {
        let chars: Vec<char> = s.chars().collect();
        let mut out = String::new();
        if chars.first() == Some(&'#') {
            out.push('x');
        }
        for (i, &c) in chars.iter().enumerate() {
            match c {
                '\t' | '\n' | '\0' => out.push('x'),
                '\\' => {
                    out.push('\\');
                    let next = chars.get(i + 1).copied();
                    let bad = match next {
                        None => true,
                        Some(n) => {
                            dialect == Dialect::Portable
                                && n.is_ascii()
                                && PORTABLE_BACKSLASH_FORBIDDEN.contains(&(n as u8))
                        }
                    };
                    if bad {
                        out.push('x');
                    }
                }
                c => out.push(c),
            }
        }
        out
    }

    /// A field: key, (string, kind selector, integer, bool), float.
    type GenField = (String, (String, u8, i64, bool), f64);
    type GenPoint = (String, Vec<(String, String)>, Vec<GenField>, i64);
    type Case<'a> = (LpPoint<'a>, fn(&EncodeError) -> bool);

    fn field_value() -> impl Strategy<Value = (String, u8, i64, bool)> {
        (
            prop::string::string_regex("([ ,=\"\\\\a-z]|é|🚀|\r|\t){0,12}").unwrap(),
            0u8..4,
            any::<i64>(),
            any::<bool>(),
        )
    }

    fn round_trip(dialect: Dialect) -> impl Strategy<Value = GenPoint> {
        (
            nasty_name(dialect),
            prop::collection::vec((nasty_name(dialect), nasty_name(dialect)), 0..5),
            prop::collection::vec((nasty_name(dialect), field_value(), any::<f64>()), 1..5),
            any::<i64>(),
        )
    }

    fn check_round_trip(
        dialect: Dialect,
        m: &str,
        tags: &[(String, String)],
        fields: &[GenField],
        t: i64,
    ) -> Result<(), TestCaseError> {
        let floats: Vec<String> = fields
            .iter()
            .map(|(_, _, f)| {
                if f.is_finite() {
                    format!("{f}")
                } else {
                    "0".to_owned()
                }
            })
            .collect();
        let p = LpPoint {
            measurement: m,
            tags: tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            fields: fields
                .iter()
                .zip(&floats)
                .map(|((k, (s, kind, i, b), _), f)| {
                    let v = match kind {
                        0 => FieldValue::Str(s),
                        1 => FieldValue::Int(*i),
                        2 => FieldValue::Bool(*b),
                        _ => FieldValue::Float(f),
                    };
                    (k.as_str(), v)
                })
                .collect(),
            time_ns: t,
        };
        let mut out = Vec::new();
        match encode_point(&mut out, &p, dialect) {
            Ok(()) => {
                let text = String::from_utf8(out).unwrap();
                let parsed = parse_lines_with(dialect, &text).map_err(TestCaseError::fail)?;
                prop_assert_eq!(parsed, vec![ParsedPoint::expected(&p, dialect)], "{}", text);
            }
            // Generated keys may repeat; nothing else may fail.
            Err(EncodeError::DuplicateTag(_) | EncodeError::DuplicateField(_)) => {}
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn portable_round_trips((m, tags, fields, t) in round_trip(Dialect::Portable)) {
            check_round_trip(Dialect::Portable, &m, &tags, &fields, t)?;
        }

        #[test]
        fn v3_round_trips((m, tags, fields, t) in round_trip(Dialect::V3)) {
            check_round_trip(Dialect::V3, &m, &tags, &fields, t)?;
        }

        /// The group encoder writes exactly what encoding each measure's
        /// point on its own would, and refuses the same measures.
        #[test]
        fn group_matches_point_by_point(
            tags in prop::collection::vec((nasty_name(Dialect::Portable), "(\\PC|\\\\){0,6}"), 0..4),
            meta in prop::collection::vec((nasty_name(Dialect::Portable), "\\PC{0,6}"), 0..3),
            measures in prop::collection::vec(("(\\PC|\\\\|#){0,6}", prop_oneof![Just("1".to_owned()), Just("1.".to_owned()), Just("-2.5e-3".to_owned())]), 1..4),
        ) {
            let taf = TagsAsFields(vec![("vu".into(), FieldKind::Int)]);
            let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let measures: Vec<(&str, &str)> = measures.iter().map(|(m, v)| (m.as_str(), v.as_str())).collect();
            let group = K6Group { time_ns: 3, tags: &tags, measures: &measures, metadata: &meta };
            let mut got = Vec::new();
            let o = encode_k6_group(&mut got, &group, &taf, Dialect::Portable);
            let mut want = Vec::new();
            let mut refused = Vec::new();
            let mut fields = vec![("value", FieldValue::Float(""))];
            let mut extra: Vec<(&str, &str)> = meta.clone();
            extra.sort_by(|a, b| a.0.cmp(b.0));
            fields.extend(extra.iter().map(|&(k, v)| (k, FieldValue::Str(v))));
            for (i, &(m, v)) in measures.iter().enumerate() {
                fields[0].1 = FieldValue::Float(v);
                let p = LpPoint { measurement: m, tags: tags.clone(), fields: fields.clone(), time_ns: 3 };
                if let Err(e) = encode_point(&mut want, &p, Dialect::Portable) {
                    refused.push(i);
                    let _ = e;
                }
            }
            prop_assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
            prop_assert_eq!(o.refused.iter().map(|(i, _)| *i).collect::<Vec<_>>(), refused);
        }

        /// Any name is either encoded and parsed back, or refused with a
        /// reason; never written wrongly.
        #[test]
        fn arbitrary_names_never_corrupt(m in "\\PC{0,8}", k in "(\\PC|\\\\|\t|\n){0,8}", v in "(\\PC|\\\\|\t|\n){0,8}") {
            for d in [Dialect::Portable, Dialect::V3] {
                let p = LpPoint { measurement: &m, tags: vec![(&k, &v)], fields: vec![("f", FieldValue::Str(&v))], time_ns: 0 };
                let mut out = Vec::new();
                if encode_point(&mut out, &p, d).is_ok() {
                    let text = String::from_utf8(out).unwrap();
                    let parsed = parse_lines_with(d, &text).map_err(TestCaseError::fail)?;
                    prop_assert_eq!(parsed, vec![ParsedPoint::expected(&p, d)]);
                }
            }
        }
    }
}
