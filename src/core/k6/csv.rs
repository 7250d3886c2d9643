//! k6 CSV output (`k6 run --out csv=FILE[.gz]`).
//!
//! ```text
//! metric_name,timestamp,metric_value,check,error,...,url,extra_tags,metadata
//! http_reqs,1709292845,1.000000,,,,true,::home,GET,...,"page=a, b&testid=x","trace_id=t-1&vu=2"
//! ```
//!
//! # What k6 writes (k6 `internal/output/csv/output.go`, v1.1.0)
//!
//! * Go's `encoding/csv` writer: `,` between cells, `\n` after each record,
//!   a cell is quoted when it contains `,` `"` `\r` `\n`, is exactly `\.`,
//!   or starts with a Unicode space; `"` inside quotes is doubled, `\r` and
//!   `\n` are written as they are. So one record can span several lines.
//! * Header: `metric_name,timestamp,metric_value`, then one column per
//!   enabled *indexable* system tag, sorted by name (`vu` and `iter` never
//!   get a column), then `extra_tags`, then (k6 ≥ 0.41) `metadata`.
//! * `timestamp` per `K6_CSV_TIME_FORMAT`: `unix` (default, `Time.Unix()`),
//!   `unix_milli`, `unix_micro`, `unix_nano` (k6 ≥ 0.44), `rfc3339`
//!   (`time.RFC3339`, whole seconds, local zone, k6 ≥ 0.39) and
//!   `rfc3339_nano` (`time.RFC3339Nano`, k6 ≥ 0.44). Both Go formats
//!   truncate, they never round.
//! * `metric_value` is `fmt.Sprintf("%f", v)`: always 6 decimals, so values
//!   below 0.0000005 print as `0.000000` (or `-0.000000`); `+Inf`, `-Inf`.
//! * A system-tag cell holds the tag's value, empty when the sample lacks it
//!   (an empty value and a missing tag look the same).
//! * `extra_tags` is every other tag and `metadata` every metadata entry as
//!   `key=value` joined by `&`, in Go map order (random). **Nothing is
//!   escaped**: `&`, `=` and `%` appear as they are. Metadata whose key is a
//!   system-tag column name is left out by k6.
//!
//! # Decoding `k=v&k=v`
//!
//! Since k6 does not escape, the cell is split on `&`; a piece containing `=`
//! starts a new pair (key up to its first `=`), a piece without `=` belongs to
//! the previous pair's value (`html=<b>&amp;</b>` is one tag). This recovers
//! every value except one holding `&` followed later by `=` (`a=x&y=z` reads
//! as two tags, `a=x` and `y=z`) and keys holding `=`: k6's text is truly
//! ambiguous there, no decoder can do better.
//!
//! # Timestamp units
//!
//! Integer timestamps carry no unit. For instants from 2001-09-09T01:46:40Z
//! to 2262-04-11T23:47:16Z (the `i64` nanosecond limit) every unit has its
//! own digit count: seconds 10, milliseconds 13, microseconds 16,
//! nanoseconds 19. The first valid data row of a layout fixes the format
//! (unless the caller forces one with [`CsvLayout::with_time_format`]); every later
//! row must match it, so a file mixing units is reported instead of being
//! silently scaled wrong. RFC 3339 text is told apart from integers by its
//! shape; `rfc3339` and `rfc3339_nano` by the fraction (a `rfc3339` layout
//! becomes `rfc3339_nano` at the first row with a fraction: Go trims a zero
//! fraction, so a whole-second row proves nothing).
//!
//! # Cost
//!
//! A record without `"` (the common k6 row: only tag values with `,`, `"`,
//! newlines or a leading space need quotes) is split in place, eight bytes
//! at a time, and every string borrows from the line. Quoted cells borrow
//! too; a `""` inside one makes only the cell (or, in `extra_tags` and
//! `metadata`, only the key or value) holding it a copy. k6's `%f` values
//! are read in one pass without `str::parse`. The per-point allocations are
//! the two pair vectors, sized from the previous row.

use crate::core::k6::json::Point;
use crate::core::k6::time::{parse_rfc3339_ns, TimeError};

use memchr::memchr;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::ops::Range;

/// Name of the column holding the tags without a column of their own.
pub const EXTRA_TAGS: &str = "extra_tags";
/// Name of the column holding the metadata (k6 ≥ 0.41).
pub const METADATA: &str = "metadata";
const FIXED: [&str; 3] = ["metric_name", "timestamp", "metric_value"];

/// One k6 sample read from a CSV record.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvPoint<'a> {
    pub metric: Cow<'a, str>,
    /// Nanoseconds since the Unix epoch, at the precision the file has
    /// (whole seconds for k6's default `unix` format).
    pub time_ns: i64,
    /// `value_text` as a float (`+Inf`/`-Inf`/`NaN` included).
    pub value: f64,
    /// The value as k6 printed it, canonical: trailing fractional zeros and a
    /// trailing `.` removed, `-0` written `0`, so equal numbers give equal
    /// text. It is exactly the decimal the file holds: write it instead of
    /// re-formatting `value`.
    pub value_text: Cow<'a, str>,
    /// Non-empty system-tag cells (key = column name), then `extra_tags`.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The `metadata` cell's pairs (`vu`, `iter`, trace ids, custom).
    pub metadata: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> CsvPoint<'a> {
    /// The converter's point: the same strings (moved, not copied), the
    /// printed value text kept. `time` stays empty: the converter takes the
    /// instant ([`CsvPoint::time_ns`]) as it is.
    pub fn into_point(self) -> Point<'a> {
        Point {
            metric: self.metric,
            time: Cow::Borrowed(""),
            value: self.value,
            value_text: Some(self.value_text),
            tags: self.tags,
            metadata: self.metadata,
            raw_tags: None,
        }
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a record could not be used. [`CsvError::reason`] gives the report key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvError {
    /// The record does not have one cell per header column.
    CellCount { expected: usize, found: usize },
    /// `metric_name` is empty.
    EmptyMetricName,
    /// `metric_value` is not a number.
    BadNumber,
    /// `timestamp` is unusable.
    BadTime(BadTime),
    /// `extra_tags` or `metadata` is not of the form `k=v&k=v`.
    BadPairs(PairsColumn),
    /// A `"` inside an unquoted cell, or text after a cell's closing quote.
    BadQuote,
    /// The input ended inside a quoted cell.
    UnterminatedQuote,
    /// A quoted cell spanning lines went past a [`RecordLimits`] cap (or a
    /// line of it was dropped by the input layer). `bytes` and `lines` are
    /// what had been joined when it was abandoned.
    RecordTooLong { bytes: usize, lines: usize },
    /// The record is not UTF-8.
    InvalidUtf8,
    /// A data record before any k6 CSV header.
    MissingHeader,
}

/// The two `k=v&k=v` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairsColumn {
    ExtraTags,
    Metadata,
}

impl PairsColumn {
    pub fn name(self) -> &'static str {
        match self {
            PairsColumn::ExtraTags => EXTRA_TAGS,
            PairsColumn::Metadata => METADATA,
        }
    }
}

/// Why a `timestamp` cell is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadTime {
    Empty,
    /// Neither an integer nor RFC 3339 shaped.
    Syntax,
    /// RFC 3339 shaped but invalid (or out of the `i64` ns range).
    Rfc3339(TimeError),
    /// An integer that is no unit's instant between 2001-09-09 and
    /// 2262-04-11 (see the module docs); force the format to read it.
    UnknownUnit,
    /// Not in the format of the layout's first data row (or the forced one).
    Mismatch {
        expected: TimeFormat,
    },
    /// The instant does not fit `i64` nanoseconds.
    Overflow,
}

impl CsvError {
    /// Stable key for run reports (`invalid_time` and `invalid_utf8` are the
    /// keys the JSON path uses for the same faults).
    pub fn reason(self) -> &'static str {
        match self {
            CsvError::CellCount { .. } => "csv_cell_count",
            CsvError::EmptyMetricName => "missing_field",
            CsvError::BadNumber => "csv_bad_number",
            CsvError::BadTime(_) => "invalid_time",
            CsvError::BadPairs(_) => "csv_bad_pairs",
            CsvError::BadQuote => "csv_bad_quote",
            CsvError::UnterminatedQuote => "csv_unterminated_quote",
            CsvError::RecordTooLong { .. } => "csv_record_too_long",
            CsvError::InvalidUtf8 => "invalid_utf8",
            CsvError::MissingHeader => "csv_missing_header",
        }
    }

    /// Errors about one cell's content; a wrong cell count is reported in
    /// their place (shifted cells make them misleading).
    fn is_cell_content(self) -> bool {
        matches!(
            self,
            CsvError::CellCount { .. }
                | CsvError::EmptyMetricName
                | CsvError::BadNumber
                | CsvError::BadTime(_)
                | CsvError::BadPairs(_)
        )
    }
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CsvError::CellCount { expected, found } => {
                write!(f, "record has {found} cells, the header has {expected}")
            }
            CsvError::EmptyMetricName => f.write_str("metric_name is empty"),
            CsvError::BadNumber => f.write_str("metric_value is not a number"),
            CsvError::BadTime(t) => write!(f, "timestamp: {t}"),
            CsvError::BadPairs(c) => write!(f, "{} is not of the form k=v&k=v", c.name()),
            CsvError::BadQuote => {
                f.write_str("misplaced '\"' (inside an unquoted cell or after a closing quote)")
            }
            CsvError::UnterminatedQuote => f.write_str("quoted cell not closed at end of input"),
            CsvError::RecordTooLong { bytes, lines } => write!(
                f,
                "record over the size limit, abandoned at {lines} lines and {bytes} bytes"
            ),
            CsvError::InvalidUtf8 => f.write_str("record is not valid UTF-8"),
            CsvError::MissingHeader => f.write_str("data record before the k6 CSV header"),
        }
    }
}

impl fmt::Display for BadTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BadTime::Empty => f.write_str("empty"),
            BadTime::Syntax => f.write_str("neither an integer nor RFC 3339"),
            BadTime::Rfc3339(e) => e.fmt(f),
            BadTime::UnknownUnit => f.write_str(
                "integer is no seconds/ms/µs/ns instant between 2001-09-09 and 2262-04-11",
            ),
            BadTime::Mismatch { expected } => write!(
                f,
                "not in the file's timestamp format ({})",
                expected.k6_name()
            ),
            BadTime::Overflow => f.write_str("instant outside the i64 nanosecond range"),
        }
    }
}

impl std::error::Error for CsvError {}

/// A [`CsvError`] with the first physical line (1-based) of its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordError {
    pub line: u64,
    pub error: CsvError,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.error)
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

// ---------------------------------------------------------------------------
// Time formats
// ---------------------------------------------------------------------------

/// k6's `K6_CSV_TIME_FORMAT` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeFormat {
    Unix,
    UnixMilli,
    UnixMicro,
    UnixNano,
    Rfc3339,
    Rfc3339Nano,
}

impl TimeFormat {
    pub const ALL: [TimeFormat; 6] = [
        TimeFormat::Unix,
        TimeFormat::UnixMilli,
        TimeFormat::UnixMicro,
        TimeFormat::UnixNano,
        TimeFormat::Rfc3339,
        TimeFormat::Rfc3339Nano,
    ];

    /// The spelling k6 accepts (ASCII case-insensitive, as k6 does).
    pub fn from_k6_name(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.k6_name().eq_ignore_ascii_case(s))
    }

    pub fn k6_name(self) -> &'static str {
        match self {
            TimeFormat::Unix => "unix",
            TimeFormat::UnixMilli => "unix_milli",
            TimeFormat::UnixMicro => "unix_micro",
            TimeFormat::UnixNano => "unix_nano",
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::Rfc3339Nano => "rfc3339_nano",
        }
    }

    /// Whether k6 drops the sub-second part in this format.
    pub fn whole_seconds(self) -> bool {
        matches!(self, TimeFormat::Unix | TimeFormat::Rfc3339)
    }

    /// Whether k6 cuts the instant to a unit coarser than the nanosecond
    /// (`unix`, `unix_milli`, `unix_micro`, `rfc3339`): samples that were
    /// apart in time may then share a timestamp.
    pub fn truncates(self) -> bool {
        !matches!(self, TimeFormat::UnixNano | TimeFormat::Rfc3339Nano)
    }

    /// What a timestamp in this format resolves, in words.
    pub fn resolution(self) -> &'static str {
        match self {
            TimeFormat::Unix | TimeFormat::Rfc3339 => "whole seconds",
            TimeFormat::UnixMilli => "milliseconds",
            TimeFormat::UnixMicro => "microseconds",
            TimeFormat::UnixNano | TimeFormat::Rfc3339Nano => "nanoseconds",
        }
    }

    /// Nanoseconds per unit for the integer formats.
    fn scale(self) -> Option<i64> {
        match self {
            TimeFormat::Unix => Some(1_000_000_000),
            TimeFormat::UnixMilli => Some(1_000_000),
            TimeFormat::UnixMicro => Some(1_000),
            TimeFormat::UnixNano => Some(1),
            TimeFormat::Rfc3339 | TimeFormat::Rfc3339Nano => None,
        }
    }

    /// The unit whose 2001-09-09 .. 2262-04-11 range holds `v`.
    fn of_integer(v: i64) -> Option<Self> {
        match v {
            1_000_000_000..=9_999_999_999 => Some(TimeFormat::Unix),
            1_000_000_000_000..=9_999_999_999_999 => Some(TimeFormat::UnixMilli),
            1_000_000_000_000_000..=9_999_999_999_999_999 => Some(TimeFormat::UnixMicro),
            1_000_000_000_000_000_000.. => Some(TimeFormat::UnixNano),
            _ => None,
        }
    }
}

impl fmt::Display for TimeFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.k6_name())
    }
}

/// `[-]digits` as `i64`; `Err(true)` when it is digits but too large.
fn parse_int(b: &[u8]) -> Result<i64, bool> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(false);
    }
    let mut v: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        v = v
            .checked_mul(10)
            .and_then(|v| {
                if neg {
                    v.checked_sub(d)
                } else {
                    v.checked_add(d)
                }
            })
            .ok_or(true)?;
    }
    Ok(v)
}

// ---------------------------------------------------------------------------
// Layout (header)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Role {
    Tag,
    ExtraTags,
    Metadata,
}

/// The columns of a k6 CSV file, from its header, and the timestamp format
/// fixed by its first data row.
///
/// The format is kept in a [`Cell`] so that parsing takes `&self` and the
/// points can borrow the column names (tag keys) while the next rows are
/// parsed; a layout is therefore not `Sync` (one file is read by one thread).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CsvLayout {
    /// The cells after the first three, in order.
    columns: Vec<(String, Role)>,
    time: Cell<Option<TimeFormat>>,
    forced: bool,
    /// Pair counts of the last row: the next row's vectors are allocated
    /// once at that size (rows of one file are alike).
    last_len: Cell<(usize, usize)>,
}

impl CsvLayout {
    /// Recognises a k6 CSV header: `metric_name,timestamp,metric_value`, then
    /// tag columns, an `extra_tags` column and at most one `metadata` column
    /// (k6 < 0.41 has none). Any other column name is a tag column (a future
    /// system tag); empty or repeated names, or a missing `extra_tags`, mean
    /// it is not a k6 header. Accepts a UTF-8 BOM, a trailing `\r` and quoted
    /// names.
    pub fn from_header(line: &str) -> Option<CsvLayout> {
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut cells = Cells::new(line, memchr(b'"', line.as_bytes()).is_some());
        for want in FIXED {
            if cells.next()?.ok()?.unescape() != want {
                return None;
            }
        }
        let mut columns: Vec<(String, Role)> = Vec::new();
        for cell in cells {
            let name = cell.ok()?.unescape().into_owned();
            if name.is_empty()
                || FIXED.contains(&name.as_str())
                || columns.iter().any(|(n, _)| *n == name)
            {
                return None;
            }
            let role = match name.as_str() {
                EXTRA_TAGS => Role::ExtraTags,
                METADATA => Role::Metadata,
                _ => Role::Tag,
            };
            columns.push((name, role));
        }
        if !columns.iter().any(|(_, r)| *r == Role::ExtraTags) {
            return None;
        }
        let tag_columns = columns.iter().filter(|(_, r)| *r == Role::Tag).count();
        Some(CsvLayout {
            columns,
            time: Cell::new(None),
            forced: false,
            last_len: Cell::new((tag_columns + 4, 4)),
        })
    }

    /// Reads every timestamp in `format` (e.g. from a known
    /// `K6_CSV_TIME_FORMAT`), without the magnitude checks, so instants
    /// before 2001 read too.
    pub fn with_time_format(mut self, format: TimeFormat) -> Self {
        self.time = Cell::new(Some(format));
        self.forced = true;
        self
    }

    /// Number of cells every record must have.
    pub fn cell_count(&self) -> usize {
        FIXED.len() + self.columns.len()
    }

    /// The tag columns' names (system tags), in file order.
    pub fn tag_columns(&self) -> impl Iterator<Item = &str> + '_ {
        self.columns
            .iter()
            .filter(|(_, r)| *r == Role::Tag)
            .map(|(n, _)| n.as_str())
    }

    /// Whether the file has a `metadata` column (k6 ≥ 0.41).
    pub fn has_metadata(&self) -> bool {
        self.columns.iter().any(|(_, r)| *r == Role::Metadata)
    }

    /// The timestamp format: forced, or fixed by the first data row; `None`
    /// before that row.
    pub fn time_format(&self) -> Option<TimeFormat> {
        self.time.get()
    }

    /// Whether the timestamps are whole seconds (`unix`, `rfc3339`; k6's
    /// default), i.e. many points share a time and the caller should suggest
    /// `K6_CSV_TIME_FORMAT=unix_nano`. `None` before the first data row.
    pub fn whole_seconds(&self) -> Option<bool> {
        self.time.get().map(TimeFormat::whole_seconds)
    }

    /// Parses a record from [`CsvRecordReader`].
    pub fn parse_record<'a>(&'a self, record: Record<'a>) -> Result<CsvPoint<'a>, CsvError> {
        self.parse_cells(record.text, record.has_quotes)
    }

    /// Parses one complete record's text (a trailing `\r` is ignored).
    pub fn parse_text<'a>(&'a self, text: &'a str) -> Result<CsvPoint<'a>, CsvError> {
        let text = text.strip_suffix('\r').unwrap_or(text);
        self.parse_cells(text, memchr(b'"', text.as_bytes()).is_some())
    }

    fn parse_cells<'a>(&'a self, text: &'a str, quotes: bool) -> Result<CsvPoint<'a>, CsvError> {
        match self.parse_inner(text, quotes) {
            Ok((p, format)) => {
                self.time.set(Some(format));
                Ok(p)
            }
            Err(e) if e.is_cell_content() => {
                let expected = self.cell_count();
                match count_cells(text, quotes) {
                    Ok(found) if found != expected => Err(CsvError::CellCount { expected, found }),
                    Ok(_) => Err(e),
                    Err(quote_error) => Err(quote_error),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn parse_inner<'a>(
        &'a self,
        text: &'a str,
        quotes: bool,
    ) -> Result<(CsvPoint<'a>, TimeFormat), CsvError> {
        // `found` is filled in by `parse_cells`.
        let short = CsvError::CellCount {
            expected: self.cell_count(),
            found: 0,
        };
        let mut cells = Cells::new(text, quotes);
        let mut next = || cells.next().unwrap_or(Err(short));
        let metric = next()?.unescape();
        if metric.is_empty() {
            return Err(CsvError::EmptyMetricName);
        }
        let (time_ns, format) = self
            .parse_time(&next()?.unescape())
            .map_err(CsvError::BadTime)?;
        let value_cell = next()?.unescape();
        let (value, text_range) = parse_value(&value_cell).ok_or(CsvError::BadNumber)?;
        let value_text = match text_range {
            ValueText::Sub(r) => sub(&value_cell, r),
            ValueText::Owned(s) => Cow::Owned(s),
        };
        let (tags_len, metadata_len) = self.last_len.get();
        let mut tags = Vec::with_capacity(tags_len);
        let mut metadata = Vec::with_capacity(metadata_len);
        for (name, role) in &self.columns {
            let cell = next()?;
            match role {
                Role::Tag if cell.text.is_empty() => {}
                Role::Tag => tags.push((Cow::Borrowed(name.as_str()), cell.unescape())),
                Role::ExtraTags => split_pairs(cell, &mut tags)
                    .map_err(|()| CsvError::BadPairs(PairsColumn::ExtraTags))?,
                Role::Metadata => split_pairs(cell, &mut metadata)
                    .map_err(|()| CsvError::BadPairs(PairsColumn::Metadata))?,
            }
        }
        if let Some(extra) = cells.next() {
            extra?;
            return Err(short);
        }
        self.last_len.set((tags.len(), metadata.len()));
        Ok((
            CsvPoint {
                metric,
                time_ns,
                value,
                value_text,
                tags,
                metadata,
            },
            format,
        ))
    }

    /// The instant and the format this row shows (committed by the caller
    /// only when the whole row is valid).
    fn parse_time(&self, s: &str) -> Result<(i64, TimeFormat), BadTime> {
        if s.is_empty() {
            return Err(BadTime::Empty);
        }
        let locked = self.time.get();
        match parse_int(s.as_bytes()) {
            Ok(v) => {
                let format = match locked {
                    Some(f) if f.scale().is_some() => {
                        if !self.forced && TimeFormat::of_integer(v) != Some(f) {
                            return Err(BadTime::Mismatch { expected: f });
                        }
                        f
                    }
                    Some(f) => return Err(BadTime::Mismatch { expected: f }),
                    None => TimeFormat::of_integer(v).ok_or(BadTime::UnknownUnit)?,
                };
                let scale = format.scale().unwrap_or(1);
                let ns = v.checked_mul(scale).ok_or(BadTime::Overflow)?;
                Ok((ns, format))
            }
            Err(true) => Err(BadTime::Overflow),
            Err(false) => {
                if let Some(f) = locked.filter(|f| f.scale().is_some()) {
                    return Err(BadTime::Mismatch { expected: f });
                }
                let b = s.as_bytes();
                if b.len() < 5 || b[4] != b'-' {
                    return Err(BadTime::Syntax);
                }
                let ns = parse_rfc3339_ns(s).map_err(BadTime::Rfc3339)?;
                // A parsed RFC 3339 text has its fraction at byte 19.
                let format = if b[19] == b'.' || locked == Some(TimeFormat::Rfc3339Nano) {
                    TimeFormat::Rfc3339Nano
                } else {
                    TimeFormat::Rfc3339
                };
                Ok((ns, format))
            }
        }
    }
}

/// A sub-slice of a cell, borrowed when the cell is.
#[inline]
fn sub<'a>(cell: &Cow<'a, str>, r: Range<usize>) -> Cow<'a, str> {
    match cell {
        Cow::Borrowed(s) => Cow::Borrowed(&s[r]),
        Cow::Owned(s) => Cow::Owned(s[r].to_owned()),
    }
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

enum ValueText {
    Sub(Range<usize>),
    Owned(String),
}

/// `metric_value` → (value, canonical text). Accepts k6's `%f` output and,
/// for files that went through other tools, any plain decimal
/// (`[+-]digits[.digits]`, `.5`); exponent forms (`1e-07`) are accepted with
/// their text re-formatted from the float (Rust's shortest round-trip
/// decimal), since their digits are not k6's.
fn parse_value(s: &str) -> Option<(f64, ValueText)> {
    match s {
        "+Inf" => return Some((f64::INFINITY, ValueText::Sub(0..s.len()))),
        "Inf" => return Some((f64::INFINITY, ValueText::Owned("+Inf".to_owned()))),
        "-Inf" => return Some((f64::NEG_INFINITY, ValueText::Sub(0..s.len()))),
        "NaN" => return Some((f64::NAN, ValueText::Sub(0..s.len()))),
        _ => {}
    }
    if let Some(fast) = fast_decimal(s) {
        return Some(fast);
    }
    if let Some(text) = canonical_decimal(s) {
        let t = match &text {
            ValueText::Sub(r) => &s[r.clone()],
            ValueText::Owned(o) => o.as_str(),
        };
        // Canonical decimals always parse; `ok()?` keeps this panic-free.
        return Some((t.parse::<f64>().ok()?, text));
    }
    if !is_exponent_number(s.as_bytes()) {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    if v.is_infinite() {
        let t = if v > 0.0 { "+Inf" } else { "-Inf" };
        return Some((v, ValueText::Owned(t.to_owned())));
    }
    let shortest = v.to_string();
    let text = match canonical_decimal(&shortest)? {
        ValueText::Sub(r) => shortest[r].to_owned(),
        ValueText::Owned(o) => o,
    };
    Some((text.parse().ok()?, ValueText::Owned(text)))
}

/// Exact powers of ten as `f64` (10^22 is the largest).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// One pass over k6's own `%f` shape, `-?(0|[1-9][0-9]*)(.[0-9]+)?`, when its
/// significant digits fit 2^53: the value is then an exact integer divided
/// by an exact power of ten, one IEEE division, so it is correctly rounded
/// (the float `str::parse` gives). Anything else takes the general path.
fn fast_decimal(s: &str) -> Option<(f64, ValueText)> {
    let b = s.as_bytes();
    let start = usize::from(b.first() == Some(&b'-'));
    let mut i = start;
    let mut m: u64 = 0;
    while i < b.len() && b[i].is_ascii_digit() && i - start < 15 {
        m = m * 10 + u64::from(b[i] - b'0');
        i += 1;
    }
    let int_len = i - start;
    if int_len == 0 || int_len > 1 && b[start] == b'0' {
        return None;
    }
    // End of the canonical text and the mantissa/scale up to its last
    // non-zero fractional digit.
    let (mut end, mut kept, mut scale) = (i, m, 0usize);
    if i < b.len() {
        if b[i] != b'.' {
            return None;
        }
        i += 1;
        let mut digits = 0;
        while i < b.len() {
            let d = b[i].wrapping_sub(b'0');
            if d > 9 || int_len + digits >= 15 {
                return None;
            }
            m = m * 10 + u64::from(d);
            digits += 1;
            i += 1;
            if d != 0 {
                (end, kept, scale) = (i, m, digits);
            }
        }
    }
    if kept == 0 {
        return Some((0.0, ValueText::Sub(start..start + 1)));
    }
    // At most 15 digits: below 2^53, and the scale is at most 10^15.
    let v = kept as f64 / POW10[scale];
    Some(if start == 1 {
        (-v, ValueText::Sub(0..end))
    } else {
        (v, ValueText::Sub(0..end))
    })
}

/// `[+-]?(digits[.digits*] | .digits)[(e|E)[+-]digits]` with an exponent.
fn is_exponent_number(b: &[u8]) -> bool {
    let Some(e) = b.iter().position(|&c| c == b'e' || c == b'E') else {
        return false;
    };
    let (mantissa, exp) = (&b[..e], &b[e + 1..]);
    let exp = exp
        .strip_prefix(b"+")
        .or_else(|| exp.strip_prefix(b"-"))
        .unwrap_or(exp);
    !exp.is_empty() && exp.iter().all(u8::is_ascii_digit) && decimal_parts(mantissa).is_some()
}

/// Splits `[+-]?int[.frac]` into (negative, int range, frac range); at least
/// one digit in all.
fn decimal_parts(b: &[u8]) -> Option<(bool, Range<usize>, Range<usize>)> {
    let (neg, start) = match b.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let dot = memchr(b'.', &b[start..]).map(|o| start + o);
    let int = start..dot.unwrap_or(b.len());
    let frac = dot.map_or(b.len()..b.len(), |d| d + 1..b.len());
    let digits = |r: &Range<usize>| b[r.clone()].iter().all(u8::is_ascii_digit);
    if int.is_empty() && frac.is_empty() || !digits(&int) || !digits(&frac) {
        return None;
    }
    Some((neg, int, frac))
}

/// The canonical text of a plain decimal: no `+`, no leading zeros, no
/// trailing fractional zeros or `.`, zero as `0`. A sub-range of `s` unless
/// a `-` must be re-attached or a `0` supplied (never for k6's `%f` text).
fn canonical_decimal(s: &str) -> Option<ValueText> {
    let b = s.as_bytes();
    let (neg, int, frac) = decimal_parts(b)?;
    let frac_end = b[frac.clone()]
        .iter()
        .rposition(|&c| c != b'0')
        .map_or(frac.start, |p| frac.start + p + 1);
    let int_start = b[int.clone()]
        .iter()
        .position(|&c| c != b'0')
        .map_or(int.end, |p| int.start + p);
    let has_int = int_start < int.end;
    let has_frac = frac_end > frac.start;
    if !has_int && !has_frac {
        // Every spelling of zero has a `0` digit.
        let z = memchr(b'0', b)?;
        return Some(ValueText::Sub(z..z + 1));
    }
    let end = if has_frac { frac_end } else { int.end };
    // Where the kept digits start: the first significant integer digit, or
    // the last `0` before the `.` when the integer part is zero.
    let digits_start = match (has_int, int.is_empty()) {
        (true, _) => int_start,
        (false, false) => int.end - 1,
        (false, true) => {
            let sign = if neg { "-" } else { "" };
            return Some(ValueText::Owned(format!("{sign}0{}", &s[int.end..end])));
        }
    };
    Some(match neg {
        false => ValueText::Sub(digits_start..end),
        true if digits_start == 1 => ValueText::Sub(0..end),
        true => ValueText::Owned(format!("-{}", &s[digits_start..end])),
    })
}

// ---------------------------------------------------------------------------
// k=v&k=v
// ---------------------------------------------------------------------------

/// Appends the pairs of an `extra_tags`/`metadata` cell (rules in the module
/// docs). `Err` when a non-empty cell has no `=` at all.
fn split_pairs<'a>(
    cell: RawCell<'a>,
    out: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>,
) -> Result<(), ()> {
    let b = cell.text.as_bytes();
    if b.is_empty() {
        return Ok(());
    }
    // (key, value) of the pair being built: a later piece without `=` may
    // still extend its value.
    let mut cur: Option<(Range<usize>, Range<usize>)> = None;
    // Start of leading pieces without `=` (a key containing `&`).
    let mut key_start: Option<usize> = None;
    let mut start = 0;
    // First `=` of the current piece.
    let mut eq: Option<usize> = None;
    let mut found = ByteFinder::new(b, b'&', b'=');
    loop {
        let hit = found.next();
        if let Some(i) = hit.filter(|&i| b[i] == b'=') {
            eq.get_or_insert(i);
            continue;
        }
        let end = hit.unwrap_or(b.len());
        if let Some(eq) = eq.take() {
            if let Some((k, v)) = cur.take() {
                out.push((cell.part(k), cell.part(v)));
            }
            let ks = key_start.take().unwrap_or(start);
            cur = Some((ks..eq, eq + 1..end));
        } else if let Some((_, v)) = cur.as_mut() {
            v.end = end;
        } else {
            key_start.get_or_insert(start);
        }
        if hit.is_none() {
            break;
        }
        start = end + 1;
    }
    let (k, v) = cur.ok_or(())?;
    out.push((cell.part(k), cell.part(v)));
    Ok(())
}

/// Finds the positions of two bytes (may be equal) in a short text, in
/// order, eight bytes at a time (SWAR). Cells and pairs are mostly a few
/// bytes long, where one `memchr` call per cell costs more than the scan.
struct ByteFinder<'a> {
    hay: &'a [u8],
    /// Offset of the chunk `mask` describes.
    base: usize,
    /// High bit of each byte of the chunk that matches.
    mask: u64,
    a: u64,
    b: u64,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

impl<'a> ByteFinder<'a> {
    fn new(hay: &'a [u8], a: u8, b: u8) -> Self {
        let mut f = ByteFinder {
            hay,
            base: 0,
            mask: 0,
            a: LO * u64::from(a),
            b: LO * u64::from(b),
        };
        f.mask = f.load(0);
        f
    }

    /// Exact per-byte equality: the high bit of every byte of `x` that is 0.
    #[inline]
    fn zero_bytes(x: u64) -> u64 {
        !(((x & !HI) + !HI) | x) & HI
    }

    #[inline]
    fn load(&self, at: usize) -> u64 {
        let rest = &self.hay[at.min(self.hay.len())..];
        let chunk = match rest.get(..8) {
            Some(c) => u64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
            None => {
                // Short tail: zero padding never matches (needles are not 0
                // in this module).
                let mut c = [0u8; 8];
                c[..rest.len()].copy_from_slice(rest);
                u64::from_le_bytes(c)
            }
        };
        Self::zero_bytes(chunk ^ self.a) | Self::zero_bytes(chunk ^ self.b)
    }

    #[inline]
    fn next(&mut self) -> Option<usize> {
        loop {
            if self.mask != 0 {
                let p = self.base + (self.mask.trailing_zeros() / 8) as usize;
                self.mask &= self.mask - 1;
                return Some(p);
            }
            self.base += 8;
            if self.base >= self.hay.len() {
                return None;
            }
            self.mask = self.load(self.base);
        }
    }
}

// ---------------------------------------------------------------------------
// Cells (RFC 4180)
// ---------------------------------------------------------------------------

/// A cell's text between its quotes, `""` still doubled when `escaped`.
/// Pair cells are split before unescaping (`&` and `=` are never part of a
/// `""`), so only the keys and values that hold a quote are copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawCell<'a> {
    text: &'a str,
    escaped: bool,
}

impl<'a> RawCell<'a> {
    fn unescape(self) -> Cow<'a, str> {
        self.part(0..self.text.len())
    }

    #[inline]
    fn part(self, r: Range<usize>) -> Cow<'a, str> {
        let t = &self.text[r];
        if self.escaped && memchr(b'"', t.as_bytes()).is_some() {
            Cow::Owned(t.replace("\"\"", "\""))
        } else {
            Cow::Borrowed(t)
        }
    }
}

/// Iterates the cells of one complete record.
struct Cells<'a> {
    text: &'a str,
    pos: usize,
    done: bool,
    /// The commas, for records without quotes.
    commas: ByteFinder<'a>,
    /// The record has a `"` somewhere: cells may be quoted. Without one
    /// (the common case) a cell is the text up to the next `,`.
    quotes: bool,
}

impl<'a> Cells<'a> {
    fn new(text: &'a str, quotes: bool) -> Self {
        Cells {
            text,
            pos: 0,
            done: false,
            commas: ByteFinder::new(if quotes { b"" } else { text.as_bytes() }, b',', b','),
            quotes,
        }
    }

    fn fail(&mut self, e: CsvError) -> Option<Result<RawCell<'a>, CsvError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl<'a> Iterator for Cells<'a> {
    type Item = Result<RawCell<'a>, CsvError>;

    // Inlined into the row parser's loop: a call per cell costs as much as
    // scanning a short cell.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let b = self.text.as_bytes();
        let start = self.pos;
        if self.quotes && b.get(start) == Some(&b'"') {
            let mut i = start + 1;
            let mut escaped = false;
            loop {
                let Some(off) = memchr(b'"', &b[i..]) else {
                    return self.fail(CsvError::UnterminatedQuote);
                };
                let q = i + off;
                if b.get(q + 1) == Some(&b'"') {
                    escaped = true;
                    i = q + 2;
                    continue;
                }
                match b.get(q + 1) {
                    None => self.done = true,
                    Some(b',') => self.pos = q + 2,
                    Some(_) => return self.fail(CsvError::BadQuote),
                }
                // `"` and `,` are ASCII: these are char boundaries.
                let inner = &self.text[start + 1..q];
                return Some(Ok(RawCell {
                    text: inner,
                    escaped,
                }));
            }
        }
        let end = if self.quotes {
            memchr(b',', &b[start..]).map_or(b.len(), |o| start + o)
        } else {
            self.commas.next().unwrap_or(b.len())
        };
        if end == b.len() {
            self.done = true;
        } else {
            self.pos = end + 1;
        }
        let cell = &self.text[start..end];
        if self.quotes && memchr(b'"', cell.as_bytes()).is_some() {
            return self.fail(CsvError::BadQuote);
        }
        Some(Ok(RawCell {
            text: cell,
            escaped: false,
        }))
    }
}

fn count_cells(text: &str, quotes: bool) -> Result<usize, CsvError> {
    let mut n = 0;
    for c in Cells::new(text, quotes) {
        c?;
        n += 1;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------
// Physical lines → records
// ---------------------------------------------------------------------------

/// Caps on one record that spans lines (a quoted cell with newlines). They
/// bound memory when a stray `"` opens a quote that never closes: the
/// record is then abandoned with [`CsvError::RecordTooLong`] and reading goes
/// on with the next line, so at most `max_lines` lines are lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLimits {
    /// Bytes of the joined record (newlines included); also caps one line.
    pub max_bytes: usize,
    /// Physical lines of one record.
    pub max_lines: usize,
}

impl Default for RecordLimits {
    /// 1 MiB (the input layer's line cap) and 1024 lines: k6 records span
    /// one line plus one per newline in their tag values.
    fn default() -> Self {
        RecordLimits {
            max_bytes: 1 << 20,
            max_lines: 1024,
        }
    }
}

/// One complete CSV record (without its line terminator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    text: &'a str,
    line: u64,
    has_quotes: bool,
}

impl<'a> Record<'a> {
    pub fn text(&self) -> &'a str {
        self.text
    }
    /// First physical line (1-based) of the record.
    pub fn line(&self) -> u64 {
        self.line
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    FieldStart,
    Unquoted,
    Quoted,
    /// Just after a `"` inside a quoted cell: an escape or the close.
    AfterQuote,
}

/// Runs the quote state machine over `b`. Malformed quoting (a `"` in an
/// unquoted cell, text after a closing quote) never opens a quote here; the
/// cell splitter reports it.
fn scan(b: &[u8], mut st: Scan) -> Scan {
    let mut i = 0;
    while i < b.len() {
        match st {
            Scan::FieldStart => {
                if b[i] == b'"' {
                    i += 1;
                    st = Scan::Quoted;
                } else {
                    st = Scan::Unquoted;
                }
            }
            Scan::Unquoted => match memchr(b',', &b[i..]) {
                Some(o) => {
                    i += o + 1;
                    st = Scan::FieldStart;
                }
                None => return Scan::Unquoted,
            },
            Scan::Quoted => match memchr(b'"', &b[i..]) {
                Some(o) => {
                    i += o + 1;
                    st = Scan::AfterQuote;
                }
                None => return Scan::Quoted,
            },
            Scan::AfterQuote => {
                st = match b[i] {
                    b'"' => Scan::Quoted,
                    b',' => Scan::FieldStart,
                    _ => Scan::Unquoted,
                };
                i += 1;
            }
        }
    }
    st
}

#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    first_line: u64,
    lines: usize,
}

/// Joins physical lines into CSV records while a quoted cell is open.
///
/// Feed it every line of the input, in order, without its `\n` (with or
/// without the `\r` before it: inside a quoted cell a `\r` that is there is
/// kept, at a record's end it is dropped), blank lines included, since a
/// blank line inside a quoted cell is content. Blank lines between records
/// are skipped and counted. Line numbers count from 1 at the first line
/// pushed (or skipped).
#[derive(Debug, Serialize, Deserialize)]
pub struct CsvRecordReader {
    limits: RecordLimits,
    buf: Vec<u8>,
    pending: Option<Pending>,
    next_line: u64,
    blank_lines: u64,
}

impl Default for CsvRecordReader {
    fn default() -> Self {
        Self::new(RecordLimits::default())
    }
}

impl CsvRecordReader {
    pub fn new(limits: RecordLimits) -> Self {
        CsvRecordReader {
            limits,
            buf: Vec::new(),
            pending: None,
            next_line: 1,
            blank_lines: 0,
        }
    }

    /// Numbers lines from `line` on (the input's number of the first line
    /// pushed, when the reader starts in the middle of an input).
    pub fn with_first_line(mut self, line: u64) -> Self {
        self.next_line = line;
        self
    }

    /// Pushes the next physical line. Returns the record it completes, if
    /// any: borrowed from `line` when the record is this one line, from the
    /// reader's buffer otherwise. After an error the next line starts a new
    /// record.
    pub fn push_line<'a>(&'a mut self, line: &'a [u8]) -> Result<Option<Record<'a>>, RecordError> {
        let n = self.next_line;
        self.next_line += 1;
        let Some(p) = self.pending.as_mut() else {
            return self.start_record(line, n);
        };
        let first_line = p.first_line;
        let bytes = self.buf.len() + 1 + line.len();
        if bytes > self.limits.max_bytes || p.lines >= self.limits.max_lines {
            let error = CsvError::RecordTooLong {
                bytes: self.buf.len(),
                lines: p.lines,
            };
            self.pending = None;
            return Err(RecordError {
                line: first_line,
                error,
            });
        }
        p.lines += 1;
        self.buf.push(b'\n');
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        if scan(content, Scan::Quoted) == Scan::Quoted {
            self.buf.extend_from_slice(line);
            return Ok(None);
        }
        self.buf.extend_from_slice(content);
        self.pending = None;
        let text = std::str::from_utf8(&self.buf).map_err(|_| RecordError {
            line: first_line,
            error: CsvError::InvalidUtf8,
        })?;
        Ok(Some(Record {
            text,
            line: first_line,
            has_quotes: true,
        }))
    }

    fn start_record<'a>(
        &mut self,
        line: &'a [u8],
        n: u64,
    ) -> Result<Option<Record<'a>>, RecordError> {
        let err = |error| RecordError { line: n, error };
        if line.len() > self.limits.max_bytes {
            return Err(err(CsvError::RecordTooLong {
                bytes: line.len(),
                lines: 1,
            }));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            self.blank_lines += 1;
            return Ok(None);
        }
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        let has_quotes = memchr(b'"', content).is_some();
        if has_quotes && scan(content, Scan::FieldStart) == Scan::Quoted {
            if self.limits.max_lines <= 1 {
                return Err(err(CsvError::RecordTooLong {
                    bytes: line.len(),
                    lines: 1,
                }));
            }
            self.buf.clear();
            self.buf.extend_from_slice(line);
            self.pending = Some(Pending {
                first_line: n,
                lines: 1,
            });
            return Ok(None);
        }
        let text = std::str::from_utf8(content).map_err(|_| err(CsvError::InvalidUtf8))?;
        Ok(Some(Record {
            text,
            line: n,
            has_quotes,
        }))
    }

    /// Counts a line the input layer dropped (too long). A record it was
    /// part of cannot be completed: that record is abandoned with
    /// [`CsvError::RecordTooLong`].
    pub fn skip_line(&mut self) -> Result<(), RecordError> {
        self.next_line += 1;
        match self.pending.take() {
            None => Ok(()),
            Some(p) => Err(RecordError {
                line: p.first_line,
                error: CsvError::RecordTooLong {
                    bytes: self.buf.len(),
                    lines: p.lines,
                },
            }),
        }
    }

    /// Call at the end of the input: a record still open is an error.
    pub fn finish(&mut self) -> Result<(), RecordError> {
        match self.pending.take() {
            None => Ok(()),
            Some(p) => Err(RecordError {
                line: p.first_line,
                error: CsvError::UnterminatedQuote,
            }),
        }
    }

    /// Whether a quoted cell is open (lines are being joined).
    pub fn in_record(&self) -> bool {
        self.pending.is_some()
    }

    /// Blank lines skipped between records.
    pub fn blank_lines(&self) -> u64 {
        self.blank_lines
    }

    /// Number of the next line to be pushed.
    pub fn next_line(&self) -> u64 {
        self.next_line
    }
}

// ---------------------------------------------------------------------------
// Lines → points
// ---------------------------------------------------------------------------

/// What a record turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Row<'a> {
    /// A k6 CSV header: it replaces the layout (files concatenated from
    /// several runs, e.g. multi-member gzip, repeat it with their columns).
    Header,
    Point(CsvPoint<'a>),
}

/// [`CsvRecordReader`] plus the current [`CsvLayout`]: lines in, points out.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CsvParser {
    records: CsvRecordReader,
    layout: Option<CsvLayout>,
    time_format: Option<TimeFormat>,
}

impl CsvParser {
    pub fn new(limits: RecordLimits) -> Self {
        CsvParser {
            records: CsvRecordReader::new(limits),
            layout: None,
            time_format: None,
        }
    }

    /// See [`CsvRecordReader::with_first_line`].
    pub fn with_first_line(mut self, line: u64) -> Self {
        self.records = std::mem::take(&mut self.records).with_first_line(line);
        self
    }

    /// Applies [`CsvLayout::with_time_format`] to every header.
    pub fn with_time_format(mut self, format: TimeFormat) -> Self {
        self.time_format = Some(format);
        self
    }

    /// See [`CsvRecordReader::push_line`].
    pub fn push_line<'a>(&'a mut self, line: &'a [u8]) -> Result<Option<Row<'a>>, RecordError> {
        let CsvParser {
            records,
            layout,
            time_format,
        } = self;
        let Some(rec) = records.push_line(line)? else {
            return Ok(None);
        };
        if looks_like_header(rec.text) {
            if let Some(l) = CsvLayout::from_header(rec.text) {
                *layout = Some(match *time_format {
                    Some(f) => l.with_time_format(f),
                    None => l,
                });
                return Ok(Some(Row::Header));
            }
        }
        let err = |error| RecordError {
            line: rec.line,
            error,
        };
        let layout = layout.as_ref().ok_or(err(CsvError::MissingHeader))?;
        layout
            .parse_record(rec)
            .map(|p| Some(Row::Point(p)))
            .map_err(err)
    }

    /// See [`CsvRecordReader::skip_line`].
    pub fn skip_line(&mut self) -> Result<(), RecordError> {
        self.records.skip_line()
    }

    /// See [`CsvRecordReader::finish`].
    pub fn finish(&mut self) -> Result<(), RecordError> {
        self.records.finish()
    }

    /// The current header's layout.
    pub fn layout(&self) -> Option<&CsvLayout> {
        self.layout.as_ref()
    }

    pub fn records(&self) -> &CsvRecordReader {
        &self.records
    }
}

/// Is this line a k6 CSV header? (What tells k6 CSV input from any other
/// text: the file name is never looked at.)
pub fn is_header(line: &str) -> bool {
    looks_like_header(line) && CsvLayout::from_header(line).is_some()
}

/// Cheap pre-check before [`CsvLayout::from_header`].
fn looks_like_header(text: &str) -> bool {
    let t = text.strip_prefix('\u{feff}').unwrap_or(text);
    t.starts_with("metric_name,") || t.starts_with("\"metric_name\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::k6::time::format_rfc3339_ns;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// k6 1.1.0's header with its default system tags.
    const HEADER: &str = "metric_name,timestamp,metric_value,check,error,error_code,expected_response,group,method,name,proto,scenario,service,status,subproto,tls_version,url,extra_tags,metadata";

    fn layout() -> CsvLayout {
        CsvLayout::from_header(HEADER).unwrap()
    }

    fn pairs<'a>(v: &'a [(Cow<'a, str>, Cow<'a, str>)]) -> Vec<(&'a str, &'a str)> {
        v.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect()
    }

    fn is_borrowed_from(c: Cow<'_, str>, base: &[u8]) -> bool {
        match c {
            Cow::Borrowed(s) => base.as_ptr_range().contains(&s.as_ptr()) || s.is_empty(),
            Cow::Owned(_) => false,
        }
    }

    /// Pushes `text` line by line the way the input layer hands it over.
    type Records = Vec<Result<(u64, String), RecordError>>;

    fn read_all(text: &str) -> (Records, CsvRecordReader) {
        let mut r = CsvRecordReader::default();
        let mut out = Vec::new();
        for line in text.split('\n') {
            match r.push_line(line.as_bytes()) {
                Ok(Some(rec)) => out.push(Ok((rec.line(), rec.text().to_owned()))),
                Ok(None) => {}
                Err(e) => out.push(Err(e)),
            }
        }
        if let Err(e) = r.finish() {
            out.push(Err(e));
        }
        (out, r)
    }

    // ----- header -------------------------------------------------------

    #[test]
    fn header_k6_default() {
        let l = layout();
        assert_eq!(l.cell_count(), 19);
        assert_eq!(l.tag_columns().count(), 14);
        assert_eq!(l.tag_columns().next(), Some("check"));
        assert!(l.has_metadata());
        assert_eq!(l.time_format(), None);
        assert_eq!(l.whole_seconds(), None);
    }

    #[test]
    fn header_variants() {
        // k6 < 0.41: no metadata column.
        let l =
            CsvLayout::from_header("metric_name,timestamp,metric_value,group,extra_tags").unwrap();
        assert!(!l.has_metadata());
        assert_eq!(l.cell_count(), 5);
        // No system tags at all.
        let l = CsvLayout::from_header("metric_name,timestamp,metric_value,extra_tags,metadata")
            .unwrap();
        assert_eq!(l.tag_columns().count(), 0);
        // Unknown and trailing columns are tag columns; BOM, CR, quotes.
        let l = CsvLayout::from_header(
            "\u{feff}\"metric_name\",timestamp,metric_value,future_tag,extra_tags,metadata,later\r",
        )
        .unwrap();
        assert_eq!(l.tag_columns().collect::<Vec<_>>(), ["future_tag", "later"]);
        let p = l.parse_text("m,1709292845,1.000000,f,a=1,vu=2,z").unwrap();
        assert_eq!(
            pairs(&p.tags),
            [("future_tag", "f"), ("a", "1"), ("later", "z")]
        );
        assert_eq!(pairs(&p.metadata), [("vu", "2")]);
    }

    #[test]
    fn header_rejects() {
        for h in [
            "",
            "metric_name",
            "metric_name,timestamp,metric_value",
            "metric_name,timestamp,metric_value,group",
            "metric_name,time,metric_value,extra_tags",
            "timestamp,metric_name,metric_value,extra_tags",
            "metric_name,timestamp,metric_value,extra_tags,extra_tags",
            "metric_name,timestamp,metric_value,group,group,extra_tags",
            "metric_name,timestamp,metric_value,,extra_tags",
            "metric_name,timestamp,metric_value,extra_tags,metadata,metadata",
            "metric_name,timestamp,metric_value,timestamp,extra_tags",
            "metric_name,timestamp,metric_value,\"extra_tags",
            "{\"type\":\"Metric\",\"data\":{}}",
            "http_reqs,1709292845,1.000000,,extra_tags",
        ] {
            assert!(CsvLayout::from_header(h).is_none(), "{h}");
        }
    }

    // ----- records (line joining) ----------------------------------------

    #[test]
    fn single_line_records_borrow_the_line() {
        let mut r = CsvRecordReader::default();
        let line = b"http_reqs,1709292845,1.000000,x\r".to_vec();
        let rec = r.push_line(&line).unwrap().unwrap();
        assert_eq!(rec.text(), "http_reqs,1709292845,1.000000,x");
        assert!(line.as_ptr_range().contains(&rec.text().as_ptr()));
        assert_eq!(rec.line(), 1);
        // Quoted but closed on the line: still borrowed.
        let line = b"a,\"b,c\",d".to_vec();
        let rec = r.push_line(&line).unwrap().unwrap();
        assert!(line.as_ptr_range().contains(&rec.text().as_ptr()));
        assert_eq!(rec.line(), 2);
    }

    #[test]
    fn quoted_newlines_join_lines() {
        let text = "a,\"one\ntwo\n\nthree\",b\nnext,1\nc,\"x\"\"\ny\"\"\"\r\n";
        let (out, r) = read_all(text);
        assert_eq!(
            out,
            vec![
                Ok((1, "a,\"one\ntwo\n\nthree\",b".to_owned())),
                Ok((5, "next,1".to_owned())),
                Ok((6, "c,\"x\"\"\ny\"\"\"".to_owned())),
            ]
        );
        assert_eq!(r.blank_lines(), 1); // the final empty line
        assert_eq!(r.next_line(), 9);
    }

    #[test]
    fn cr_inside_quotes_is_kept_cr_at_record_end_dropped() {
        // What k6 writes for the tag value "a\r\nb": the `\r` is content.
        let (out, _) = read_all("m,\"a\r\nb\"\r\nn,1\r\n");
        assert_eq!(
            out,
            vec![
                Ok((1, "m,\"a\r\nb\"".to_owned())),
                Ok((3, "n,1".to_owned()))
            ]
        );
        // An input layer that already stripped `\r` loses it (documented).
        let (out, _) = read_all("m,\"a\nb\"");
        assert_eq!(out, vec![Ok((1, "m,\"a\nb\"".to_owned()))]);
    }

    #[test]
    fn blank_lines_between_records_are_skipped() {
        let (out, r) = read_all("\na,1\n  \r\nb,2");
        assert_eq!(
            out,
            vec![Ok((2, "a,1".to_owned())), Ok((4, "b,2".to_owned()))]
        );
        assert_eq!(r.blank_lines(), 2);
    }

    #[test]
    fn unterminated_quote_at_end() {
        let (out, r) = read_all("a,1\nb,\"open\nstill open");
        assert_eq!(
            out,
            vec![
                Ok((1, "a,1".to_owned())),
                Err(RecordError {
                    line: 2,
                    error: CsvError::UnterminatedQuote
                })
            ]
        );
        assert!(!r.in_record());
    }

    #[test]
    fn malformed_quotes_do_not_open_records() {
        // A bare quote in an unquoted cell and text after a closing quote:
        // each stays one record, and the cell splitter reports it.
        let (out, _) = read_all("a,b\"c,d\ne,\"f\"g\"h,i\nj,1");
        assert_eq!(out.len(), 3);
        let l = CsvLayout::from_header("metric_name,timestamp,metric_value,extra_tags").unwrap();
        for rec in ["a,b\"c,d", "e,\"f\"g\"h,i"] {
            assert_eq!(l.parse_text(rec), Err(CsvError::BadQuote), "{rec}");
        }
    }

    #[test]
    fn record_caps() {
        let mut r = CsvRecordReader::new(RecordLimits {
            max_bytes: 20,
            max_lines: 3,
        });
        // Too many lines: abandoned on the 4th, reading resumes after it.
        for l in ["m,\"1", "2", "3"] {
            assert_eq!(r.push_line(l.as_bytes()), Ok(None));
        }
        assert_eq!(
            r.push_line(b"4"),
            Err(RecordError {
                line: 1,
                error: CsvError::RecordTooLong { bytes: 8, lines: 3 }
            })
        );
        assert!(!r.in_record());
        assert_eq!(r.push_line(b"n,5").unwrap().unwrap().line(), 5);
        // Too many bytes while joining.
        assert_eq!(r.push_line(b"m,\"0123456789"), Ok(None));
        assert_eq!(
            r.push_line(b"0123456789"),
            Err(RecordError {
                line: 6,
                error: CsvError::RecordTooLong {
                    bytes: 13,
                    lines: 1
                }
            })
        );
        // One line over the byte cap.
        assert_eq!(
            r.push_line(&[b'x'; 21]),
            Err(RecordError {
                line: 8,
                error: CsvError::RecordTooLong {
                    bytes: 21,
                    lines: 1
                }
            })
        );
        // A record may not span lines at all with max_lines = 1.
        let mut r = CsvRecordReader::new(RecordLimits {
            max_bytes: 100,
            max_lines: 1,
        });
        assert!(matches!(
            r.push_line(b"a,\"b"),
            Err(RecordError {
                error: CsvError::RecordTooLong { .. },
                ..
            })
        ));
        assert_eq!(r.push_line(b"a,\"b\"").unwrap().unwrap().text(), "a,\"b\"");
    }

    #[test]
    fn skipped_lines() {
        let mut r = CsvRecordReader::default();
        assert_eq!(r.skip_line(), Ok(()));
        assert_eq!(r.push_line(b"a,\"b"), Ok(None));
        assert_eq!(
            r.skip_line(),
            Err(RecordError {
                line: 2,
                error: CsvError::RecordTooLong { bytes: 4, lines: 1 }
            })
        );
        assert_eq!(r.push_line(b"c,d").unwrap().unwrap().line(), 4);
    }

    #[test]
    fn invalid_utf8() {
        let mut r = CsvRecordReader::default();
        assert_eq!(
            r.push_line(b"m,\xff"),
            Err(RecordError {
                line: 1,
                error: CsvError::InvalidUtf8
            })
        );
        assert_eq!(r.push_line(b"m,\"\xff"), Ok(None));
        assert_eq!(
            r.push_line(b"\""),
            Err(RecordError {
                line: 2,
                error: CsvError::InvalidUtf8
            })
        );
        assert_eq!(r.push_line(b"ok").unwrap().unwrap().text(), "ok");
    }

    // ----- cells -----------------------------------------------------------

    fn cells(text: &str) -> Result<Vec<Cow<'_, str>>, CsvError> {
        Cells::new(text, text.contains('"'))
            .map(|c| c.map(RawCell::unescape))
            .collect()
    }

    #[test]
    fn rfc4180_cells() {
        assert_eq!(cells("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(cells("").unwrap(), [""]);
        assert_eq!(cells(",").unwrap(), ["", ""]);
        assert_eq!(cells("\"\",\"\"").unwrap(), ["", ""]);
        assert_eq!(
            cells("\"a,b\",\"say \"\"hi\"\"\",\"\\.\",\" lead\",\"x\ny\"").unwrap(),
            ["a,b", "say \"hi\"", "\\.", " lead", "x\ny"]
        );
        let text = "\"a,b\",\"c\"\"\"";
        let c = cells(text).unwrap();
        assert!(is_borrowed_from(c[0].clone(), text.as_bytes()));
        assert!(matches!(c[1], Cow::Owned(_)));
        assert_eq!(cells("a,\"b"), Err(CsvError::UnterminatedQuote));
        assert_eq!(cells("a,\"b\"c"), Err(CsvError::BadQuote));
        assert_eq!(cells("a,b\"c"), Err(CsvError::BadQuote));
        assert_eq!(cells("\"a\" ,b"), Err(CsvError::BadQuote));
    }

    fn naive_positions(hay: &[u8], a: u8, b: u8) -> Vec<usize> {
        (0..hay.len())
            .filter(|&i| hay[i] == a || hay[i] == b)
            .collect()
    }

    #[test]
    fn byte_finder() {
        for hay in [
            &b""[..],
            b",",
            b"a,b",
            b"&&&&&&&&&",
            b"x=1&y=2&zzzzzzzzzzzzz=&",
        ] {
            let mut f = ByteFinder::new(hay, b'&', b'=');
            let got: Vec<usize> = std::iter::from_fn(|| f.next()).collect();
            assert_eq!(got, naive_positions(hay, b'&', b'='), "{hay:?}");
        }
    }

    // ----- values ---------------------------------------------------------

    fn value(s: &str) -> Option<(f64, String)> {
        let (v, t) = parse_value(s)?;
        Some((
            v,
            match t {
                ValueText::Sub(r) => s[r].to_owned(),
                ValueText::Owned(o) => o,
            },
        ))
    }

    #[test]
    fn value_text_is_canonical() {
        for (input, text) in [
            ("1.000000", "1"),
            ("0.000000", "0"),
            ("-0.000000", "0"),
            ("-1.250000", "-1.25"),
            ("0.100000", "0.1"),
            ("0.000002", "0.000002"),
            ("-0.500000", "-0.5"),
            ("100.000000", "100"),
            ("123456.789012", "123456.789012"),
            ("9007199254740993.000000", "9007199254740993"),
            ("1500000000000000000000.000000", "1500000000000000000000"),
            // Not k6's spelling, but plain decimals: same canonical text.
            ("1", "1"),
            ("1.", "1"),
            ("+1.50", "1.5"),
            ("007.50", "7.5"),
            ("-007.50", "-7.5"),
            ("-00.50", "-0.5"),
            (".5", "0.5"),
            ("-.5", "-0.5"),
            ("000", "0"),
            ("-.000", "0"),
            // Exponent forms get the float's shortest text.
            ("1e-07", "0.0000001"),
            ("1.2345675E+06", "1234567.5"),
            ("-0e5", "0"),
            ("1e400", "+Inf"),
            // Go's non-finite spellings.
            ("+Inf", "+Inf"),
            ("Inf", "+Inf"),
            ("-Inf", "-Inf"),
            ("NaN", "NaN"),
        ] {
            let (v, t) = value(input).unwrap_or_else(|| panic!("{input}"));
            assert_eq!(t, text, "{input}");
            if v.is_nan() {
                assert_eq!(text, "NaN");
            } else {
                assert_eq!(
                    v,
                    text.replace("+Inf", "inf").parse::<f64>().unwrap(),
                    "{input}"
                );
                assert!(v != 0.0 || v.is_sign_positive(), "{input}: -0");
            }
        }
        // The value text is a slice of the cell for k6's output.
        let l = layout();
        let line = "m,1709292845,-12.500000,,,,,,,,,,,,,,,,";
        let p = l.parse_text(line).unwrap();
        assert!(is_borrowed_from(p.value_text.clone(), line.as_bytes()));
        assert_eq!(p.value_text, "-12.5");
    }

    #[test]
    fn bad_values() {
        for s in [
            "", "-", "+", ".", "-.", "abc", "1.2.3", "1,5", "0x10", "inf", "Infinity", "nan", "1e",
            "1e+", "e5", ".e5", "1 ", " 1", "--1", "1_000", "١",
        ] {
            assert!(parse_value(s).is_none(), "{s:?}");
        }
    }

    // ----- time -----------------------------------------------------------

    fn row(time: &str) -> String {
        format!("m,{time},1.000000,,,,,,,,,,,,,,,,")
    }

    #[test]
    fn integer_units_by_magnitude() {
        let cases = [
            ("1709292845", TimeFormat::Unix, 1_709_292_845_000_000_000),
            (
                "1709292845123",
                TimeFormat::UnixMilli,
                1_709_292_845_123_000_000,
            ),
            (
                "1709292845123456",
                TimeFormat::UnixMicro,
                1_709_292_845_123_456_000,
            ),
            (
                "1709292845123456789",
                TimeFormat::UnixNano,
                1_709_292_845_123_456_789,
            ),
            // The ends of the unambiguous range.
            ("1000000000", TimeFormat::Unix, 1_000_000_000_000_000_000),
            ("9223372036", TimeFormat::Unix, 9_223_372_036_000_000_000),
            ("9223372036854775807", TimeFormat::UnixNano, i64::MAX),
        ];
        for (t, f, ns) in cases {
            let l = layout();
            let text = row(t);
            let p = l.parse_text(&text).unwrap();
            assert_eq!((p.time_ns, l.time_format()), (ns, Some(f)), "{t}");
            assert_eq!(l.whole_seconds(), Some(f == TimeFormat::Unix));
        }
        let l = layout();
        for (t, e) in [
            ("999999999", BadTime::UnknownUnit), // 2001-09-09 minus 1 s
            ("17092928451", BadTime::UnknownUnit),
            ("0", BadTime::UnknownUnit),
            ("-1709292845", BadTime::UnknownUnit),
            ("9223372037", BadTime::Overflow), // seconds past 2262-04-11
            ("9223372036854775808", BadTime::Overflow),
            ("99999999999999999999999", BadTime::Overflow),
            ("", BadTime::Empty),
            ("17092928x5", BadTime::Syntax),
            ("1709292845.5", BadTime::Syntax),
            (" 1709292845", BadTime::Syntax),
        ] {
            assert_eq!(l.parse_text(&row(t)), Err(CsvError::BadTime(e)), "{t}");
        }
        // Failed rows fix no format.
        assert_eq!(l.time_format(), None);
    }

    #[test]
    fn first_row_fixes_the_unit() {
        let l = layout();
        l.parse_text(&row("1709292845123456789")).unwrap();
        l.parse_text(&row("1000000000000000000")).unwrap();
        for t in ["1709292845", "1709292845123", "2024-03-01T11:34:05Z"] {
            assert_eq!(
                l.parse_text(&row(t)),
                Err(CsvError::BadTime(BadTime::Mismatch {
                    expected: TimeFormat::UnixNano
                })),
                "{t}"
            );
        }
        let l = layout();
        l.parse_text(&row("2024-03-01T11:34:05Z")).unwrap();
        assert_eq!(
            l.parse_text(&row("1709292845")),
            Err(CsvError::BadTime(BadTime::Mismatch {
                expected: TimeFormat::Rfc3339
            }))
        );
    }

    #[test]
    fn rfc3339_formats() {
        let l = layout();
        let text = row("2024-03-01T17:04:05+05:30");
        let p = l.parse_text(&text).unwrap();
        assert_eq!(p.time_ns, 1_709_292_845_000_000_000);
        assert_eq!(l.time_format(), Some(TimeFormat::Rfc3339));
        assert_eq!(l.whole_seconds(), Some(true));
        // A fraction shows it is rfc3339_nano; whole seconds stay possible.
        let text = row("2024-03-01T11:34:05.1234Z");
        let p = l.parse_text(&text).unwrap();
        assert_eq!(p.time_ns, 1_709_292_845_123_400_000);
        assert_eq!(l.time_format(), Some(TimeFormat::Rfc3339Nano));
        l.parse_text(&row("2024-03-01T11:34:06Z")).unwrap();
        assert_eq!(l.time_format(), Some(TimeFormat::Rfc3339Nano));
        assert_eq!(l.whole_seconds(), Some(false));
        for (t, e) in [
            ("2024-03-01T11:34:05", TimeError::Syntax),
            ("2024-02-30T11:34:05Z", TimeError::Range),
            ("9999-01-01T00:00:00Z", TimeError::Overflow),
        ] {
            assert_eq!(
                l.parse_text(&row(t)),
                Err(CsvError::BadTime(BadTime::Rfc3339(e))),
                "{t}"
            );
        }
        assert_eq!(
            layout().parse_text(&row("2024/03/01")),
            Err(CsvError::BadTime(BadTime::Syntax))
        );
    }

    #[test]
    fn forced_time_format() {
        let l = layout().with_time_format(TimeFormat::UnixMilli);
        assert_eq!(l.whole_seconds(), Some(false));
        // Before 2001 and even before 1970: no magnitude check.
        assert_eq!(l.parse_text(&row("5")).unwrap().time_ns, 5_000_000);
        assert_eq!(l.parse_text(&row("-5")).unwrap().time_ns, -5_000_000);
        assert_eq!(
            l.parse_text(&row("2024-03-01T11:34:05Z")),
            Err(CsvError::BadTime(BadTime::Mismatch {
                expected: TimeFormat::UnixMilli
            }))
        );
        assert_eq!(
            l.parse_text(&row("9223372036854776")),
            Err(CsvError::BadTime(BadTime::Overflow))
        );
        assert_eq!(l.time_format(), Some(TimeFormat::UnixMilli));
    }

    #[test]
    fn time_format_names() {
        for f in TimeFormat::ALL {
            assert_eq!(TimeFormat::from_k6_name(f.k6_name()), Some(f));
            assert_eq!(f.to_string(), f.k6_name());
        }
        assert_eq!(
            TimeFormat::from_k6_name("UNIX_Nano"),
            Some(TimeFormat::UnixNano)
        );
        assert_eq!(TimeFormat::from_k6_name("rfc3399"), None);
        assert_eq!(TimeFormat::from_k6_name("unixnano"), None);
    }

    // ----- k=v&k=v ----------------------------------------------------------

    fn split(s: &str) -> Result<Vec<(String, String)>, ()> {
        let mut v = Vec::new();
        split_pairs(
            RawCell {
                text: s,
                escaped: false,
            },
            &mut v,
        )?;
        Ok(v.into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect())
    }

    fn kv(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pairs_decoding() {
        for (cell, want) in [
            ("", kv(&[])),
            ("a=1", kv(&[("a", "1")])),
            ("a=1&b=2", kv(&[("a", "1"), ("b", "2")])),
            ("a=&b=", kv(&[("a", ""), ("b", "")])),
            ("=v", kv(&[("", "v")])),
            // `=` in a value: the key ends at the first `=`.
            ("eq=a=b==c", kv(&[("eq", "a=b==c")])),
            // `&` followed by text without `=` stays in the value.
            (
                "html=<b>&amp;</b>&x=1",
                kv(&[("html", "<b>&amp;</b>"), ("x", "1")]),
            ),
            ("a=&lead", kv(&[("a", "&lead")])),
            ("a=x&", kv(&[("a", "x&")])),
            ("a=1&&b=2", kv(&[("a", "1&"), ("b", "2")])),
            (
                "t=csv run, \"q\" 100% & more",
                kv(&[("t", "csv run, \"q\" 100% & more")]),
            ),
            // `%` is never decoded.
            ("p=100%25 %41", kv(&[("p", "100%25 %41")])),
            // A leading key with `&`.
            ("a&b=c&d=e", kv(&[("a&b", "c"), ("d", "e")])),
            // The ambiguity k6 leaves: `&` then `=` in one value.
            ("ambiguous=x&y=z", kv(&[("ambiguous", "x"), ("y", "z")])),
        ] {
            assert_eq!(split(cell), Ok(want), "{cell}");
        }
        for cell in ["x", "&", "a&b", "&&"] {
            assert_eq!(split(cell), Err(()), "{cell}");
        }
    }

    #[test]
    fn pairs_borrow_or_own_like_their_cell() {
        let cell = "a=1&b=x&y";
        let mut v = Vec::new();
        let raw = |text, escaped| RawCell { text, escaped };
        split_pairs(raw(cell, false), &mut v).unwrap();
        assert!(v
            .iter()
            .all(|(k, val)| is_borrowed_from(k.clone(), cell.as_bytes())
                && is_borrowed_from(val.clone(), cell.as_bytes())));
        // Inside a quoted cell with `""`: only the parts with a quote are
        // copied.
        let cell = "a=\"\"1\"\"&b=x&y&\"\"k=v";
        let mut v = Vec::new();
        split_pairs(raw(cell, true), &mut v).unwrap();
        assert_eq!(pairs(&v), [("a", "\"1\""), ("b", "x&y"), ("\"k", "v")]);
        let borrowed: Vec<bool> = v
            .iter()
            .flat_map(|(k, val)| [k, val])
            .map(|c| is_borrowed_from(c.clone(), cell.as_bytes()))
            .collect();
        assert_eq!(borrowed, [true, false, true, true, false, true]);
    }

    // ----- rows -------------------------------------------------------------

    #[test]
    fn k6_row() {
        let l = layout();
        // A real k6 1.1.0 row (a group name and a metadata value needed quotes).
        let line = r#"http_req_duration,1796159384,2.029744,,,,true,"::pages, ""main""",GET,http://127.0.0.1:43499/,HTTP/1.1,steady,,200,,,http://127.0.0.1:43499/,page=home page&html=<b>&amp;</b>&empty=,"trace_id=t-2-0&note=a, ""q"" 50%&vu=2""#;
        let p = l.parse_text(line).unwrap();
        assert_eq!(p.metric, "http_req_duration");
        assert_eq!(p.time_ns, 1_796_159_384_000_000_000);
        assert_eq!((p.value, p.value_text.as_ref()), (2.029744, "2.029744"));
        assert_eq!(
            pairs(&p.tags),
            [
                ("expected_response", "true"),
                ("group", "::pages, \"main\""),
                ("method", "GET"),
                ("name", "http://127.0.0.1:43499/"),
                ("proto", "HTTP/1.1"),
                ("scenario", "steady"),
                ("status", "200"),
                ("url", "http://127.0.0.1:43499/"),
                ("page", "home page"),
                ("html", "<b>&amp;</b>"),
                ("empty", ""),
            ]
        );
        assert_eq!(
            pairs(&p.metadata),
            [("trace_id", "t-2-0"), ("note", "a, \"q\" 50%"), ("vu", "2")]
        );
        assert!(is_borrowed_from(p.metric.clone(), line.as_bytes()));
        assert!(p.tags[2..]
            .iter()
            .all(|(_, v)| is_borrowed_from(v.clone(), line.as_bytes())));
        assert_eq!(l.whole_seconds(), Some(true));
    }

    #[test]
    fn row_errors() {
        let l = layout();
        let ok = "m,1709292845,1.000000,,,,,,,,,,,,,,,,";
        assert!(l.parse_text(ok).is_ok());
        let count = |found| CsvError::CellCount {
            expected: 19,
            found,
        };
        assert_eq!(l.parse_text("m,1709292845,1.000000"), Err(count(3)));
        assert_eq!(l.parse_text(&format!("{ok},")), Err(count(20)));
        assert_eq!(l.parse_text("m"), Err(count(1)));
        // A wrong count wins over what shifted cells look like.
        assert_eq!(l.parse_text("m,x,1.000000"), Err(count(3)));
        assert_eq!(
            l.parse_text("m,1709292845,x,,,,,,,,,,,,,,,,,"),
            Err(count(20))
        );
        // With the right count, the cell's own error.
        assert_eq!(
            l.parse_text("m,1709292845,x,,,,,,,,,,,,,,,,"),
            Err(CsvError::BadNumber)
        );
        assert_eq!(
            l.parse_text(",1709292845,1.000000,,,,,,,,,,,,,,,,"),
            Err(CsvError::EmptyMetricName)
        );
        assert_eq!(
            l.parse_text("m,1709292845,1.000000,,,,,,,,,,,,,,,noequals,"),
            Err(CsvError::BadPairs(PairsColumn::ExtraTags))
        );
        assert_eq!(
            l.parse_text("m,1709292845,1.000000,,,,,,,,,,,,,,,,vu"),
            Err(CsvError::BadPairs(PairsColumn::Metadata))
        );
        // Quote errors are reported as such, even with a wrong count.
        assert_eq!(l.parse_text("m,1709292845,x\"y"), Err(CsvError::BadQuote));
        assert_eq!(
            l.parse_text("m,\"1709292845"),
            Err(CsvError::UnterminatedQuote)
        );
        // A trailing CR is not part of the last cell.
        let text = format!("{ok}vu=1\r");
        let p = l.parse_text(&text).unwrap();
        assert_eq!(pairs(&p.metadata), [("vu", "1")]);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let all = [
            CsvError::CellCount {
                expected: 19,
                found: 3,
            },
            CsvError::EmptyMetricName,
            CsvError::BadNumber,
            CsvError::BadTime(BadTime::Empty),
            CsvError::BadTime(BadTime::Syntax),
            CsvError::BadTime(BadTime::Rfc3339(TimeError::Range)),
            CsvError::BadTime(BadTime::UnknownUnit),
            CsvError::BadTime(BadTime::Mismatch {
                expected: TimeFormat::UnixNano,
            }),
            CsvError::BadTime(BadTime::Overflow),
            CsvError::BadPairs(PairsColumn::Metadata),
            CsvError::BadQuote,
            CsvError::UnterminatedQuote,
            CsvError::RecordTooLong { bytes: 5, lines: 2 },
            CsvError::InvalidUtf8,
            CsvError::MissingHeader,
        ];
        let texts: Vec<String> = all.iter().map(ToString::to_string).collect();
        for (e, t) in all.iter().zip(&texts) {
            assert!(!t.is_empty());
            assert!(!e.reason().is_empty() && !e.reason().contains(' '));
        }
        let unique: std::collections::HashSet<&String> = texts.iter().collect();
        assert_eq!(unique.len(), texts.len());
        assert!(texts[0].contains("19") && texts[0].contains('3'));
        assert!(texts[7].contains("unix_nano"));
        assert!(texts[9].contains("metadata"));
        let e = RecordError {
            line: 42,
            error: CsvError::BadNumber,
        };
        assert_eq!(e.to_string(), "line 42: metric_value is not a number");
        assert_eq!(CsvError::BadTime(BadTime::Empty).reason(), "invalid_time");
    }

    // ----- parser ---------------------------------------------------------

    fn parse_all(text: &str, p: &mut CsvParser) -> Vec<Result<String, RecordError>> {
        let mut out = Vec::new();
        for line in text.split('\n') {
            match p.push_line(line.as_bytes()) {
                Ok(Some(Row::Header)) => out.push(Ok("header".to_owned())),
                Ok(Some(Row::Point(pt))) => out.push(Ok(format!(
                    "{}@{}={}",
                    pt.metric, pt.time_ns, pt.value_text
                ))),
                Ok(None) => {}
                Err(e) => out.push(Err(e)),
            }
        }
        if let Err(e) = p.finish() {
            out.push(Err(e));
        }
        out
    }

    #[test]
    fn header_detection_and_input_line_numbers() {
        assert!(is_header(HEADER) && is_header(&format!("\u{feff}{HEADER}\r")));
        for not in [
            "metric_name,timestamp,metric_value",
            "id,name,score",
            "{\"type\":\"Metric\"}",
            "http_reqs,1709292845,1.000000,,,,,,,,,,,,,,,,",
        ] {
            assert!(!is_header(not), "{not}");
        }
        // A parser started at input line 40 reports input line numbers.
        let mut p = CsvParser::default().with_first_line(40);
        let text = "metric_name,timestamp,metric_value,extra_tags\nm,x,1,\nm,1709292845,1,\"a=1\n";
        let out = parse_all(text, &mut p);
        assert_eq!(out[0], Ok("header".to_owned()));
        assert_eq!(out[1].as_ref().unwrap_err().line, 41);
        assert_eq!(
            out[2],
            Err(RecordError {
                line: 42,
                error: CsvError::UnterminatedQuote
            })
        );
    }

    #[test]
    fn into_point_keeps_the_strings_and_the_text() {
        let l = layout();
        let row = "http_reqs,1709292845,1.500000,,,,,,,,,,,200,,,,a=1,vu=2";
        let p = l.parse_text(row).unwrap();
        let q = p.clone().into_point();
        assert_eq!((q.metric.as_ref(), q.value), ("http_reqs", 1.5));
        assert_eq!(q.value_text.as_deref(), Some("1.5"));
        assert_eq!((q.tags, q.metadata), (p.tags, p.metadata));
        assert!(q.time.is_empty());
        assert!(matches!(q.metric, Cow::Borrowed(_)));
    }

    #[test]
    fn coarse_formats() {
        let coarse: Vec<_> = TimeFormat::ALL
            .into_iter()
            .filter(|f| f.truncates())
            .collect();
        assert_eq!(
            coarse,
            [
                TimeFormat::Unix,
                TimeFormat::UnixMilli,
                TimeFormat::UnixMicro,
                TimeFormat::Rfc3339
            ]
        );
        assert!(TimeFormat::ALL
            .into_iter()
            .all(|f| f.whole_seconds() == (f.resolution() == "whole seconds")));
    }

    #[test]
    fn parser_headers_and_rows() {
        let text = "m,1709292845,1.000000,,\n\
                    metric_name,timestamp,metric_value,group,extra_tags\n\
                    a,1709292845,1.500000,\"g\nh\",x=1\n\
                    metric_name,timestamp,metric_value,extra_tags,metadata\n\
                    b,1709292845123456789,2.000000,,vu=1\n\
                    c,1709292845,2.000000,,\n";
        let mut p = CsvParser::default();
        let out = parse_all(text, &mut p);
        assert_eq!(
            out,
            vec![
                Err(RecordError {
                    line: 1,
                    error: CsvError::MissingHeader
                }),
                Ok("header".to_owned()),
                Ok("a@1709292845000000000=1.5".to_owned()),
                Ok("header".to_owned()),
                Ok("b@1709292845123456789=2".to_owned()),
                Err(RecordError {
                    line: 7,
                    error: CsvError::BadTime(BadTime::Mismatch {
                        expected: TimeFormat::UnixNano
                    })
                }),
            ]
        );
        assert_eq!(p.layout().unwrap().whole_seconds(), Some(false));
        // A forced format applies to every header.
        let mut p = CsvParser::default().with_time_format(TimeFormat::Unix);
        let out = parse_all(
            "metric_name,timestamp,metric_value,extra_tags\nm,7,1,\n",
            &mut p,
        );
        assert_eq!(out[1], Ok("m@7000000000=1".to_owned()));
        // A metric named like the first header cell is still data.
        let mut p = CsvParser::default();
        let out = parse_all(
            "metric_name,timestamp,metric_value,extra_tags\nmetric_name,1709292845,1,\n",
            &mut p,
        );
        assert_eq!(out[1], Ok("metric_name@1709292845000000000=1".to_owned()));
    }

    // ----- property tests -------------------------------------------------

    /// k6 1.1.0's system tags that get a column (not `vu`, `iter`), sorted.
    const SYSTEM_COLUMNS: [&str; 16] = [
        "check",
        "error",
        "error_code",
        "expected_response",
        "group",
        "ip",
        "method",
        "name",
        "ocsp_status",
        "proto",
        "scenario",
        "service",
        "status",
        "subproto",
        "tls_version",
        "url",
    ];

    /// Go `encoding/csv`'s `fieldNeedsQuotes` (`unicode.IsSpace` and Rust's
    /// `char::is_whitespace` are the same set).
    fn go_needs_quotes(f: &str) -> bool {
        !f.is_empty()
            && (f == "\\."
                || f.contains([',', '"', '\r', '\n'])
                || f.chars().next().is_some_and(char::is_whitespace))
    }

    /// Go `csv.Writer.Write` with the default `Comma` and `UseCRLF = false`.
    fn go_write(out: &mut String, record: &[String]) {
        for (i, f) in record.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if go_needs_quotes(f) {
                out.push('"');
                out.push_str(&f.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(f);
            }
        }
        out.push('\n');
    }

    /// Go's `fmt.Sprintf("%f", v)`.
    fn go_f(v: f64) -> String {
        if v.is_nan() {
            "NaN".to_owned()
        } else if v == f64::INFINITY {
            "+Inf".to_owned()
        } else if v == f64::NEG_INFINITY {
            "-Inf".to_owned()
        } else {
            format!("{v:.6}")
        }
    }

    /// The canonical text, by plain string trimming.
    fn expected_text(go: &str) -> String {
        if !go.contains('.') {
            return go.to_owned();
        }
        let t = go.trim_end_matches('0').trim_end_matches('.');
        if t == "-0" {
            "0".to_owned()
        } else {
            t.to_owned()
        }
    }

    /// Go's `Time.Format(time.RFC3339[Nano])` in a zone `off_min` east of UTC.
    fn go_rfc3339(ns: i64, off_min: i64, nano: bool) -> String {
        let local = format_rfc3339_ns(ns + off_min * 60_000_000_000);
        let (head, frac) = local[..local.len() - 1].split_once('.').unwrap();
        let frac = frac.trim_end_matches('0');
        let mut s = head.to_owned();
        if nano && !frac.is_empty() {
            s.push('.');
            s.push_str(frac);
        }
        if off_min == 0 {
            s.push('Z');
        } else {
            let a = off_min.abs();
            let sign = if off_min < 0 { '-' } else { '+' };
            s.push_str(&format!("{sign}{:02}:{:02}", a / 60, a % 60));
        }
        s
    }

    #[derive(Debug, Clone)]
    struct Sample {
        metric: String,
        ns: i64,
        value: f64,
        tags: BTreeMap<String, String>,
        metadata: BTreeMap<String, String>,
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        // Everything Go's writer treats specially, plus arbitrary text.
        prop_oneof![
            "[a-z_ ,\"\r\n\\\\.%é✓]{0,8}",
            ".{0,6}",
            Just("\\.".to_owned()),
            Just(" lead".to_owned()),
            Just("\u{a0}nbsp".to_owned()),
        ]
    }

    /// A value whose `&`-pieces after the first hold no `=` (others are
    /// ambiguous in k6's format, see `pairs_decoding`).
    fn pair_value() -> impl Strategy<Value = String> {
        (text_strategy(), prop::collection::vec("[^&=]{0,4}", 0..3)).prop_map(|(head, rest)| {
            let mut v = head.replace('&', "");
            for r in rest {
                v.push('&');
                v.push_str(&r);
            }
            v
        })
    }

    fn pair_key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(SYSTEM_COLUMNS.to_vec()).prop_map(str::to_owned),
            "[a-z_]{1,8}",
            text_strategy().prop_map(|s| s.replace(['&', '='], "")),
        ]
    }

    fn value_strategy() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("k6 drops NaN", |v| !v.is_nan()),
            (-10_000i64..10_000).prop_map(|k| k as f64 / 128.0), // `%f` ties
            (-1_000_000i64..1_000_000).prop_map(|k| k as f64 / 1e6),
            Just(-0.0),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
        ]
    }

    fn sample_strategy() -> impl Strategy<Value = Sample> {
        (
            "[a-z_]{1,12}|.{1,6}",
            // Up to a day before the end of the range: the RFC 3339 writer adds
            // the zone offset in i64.
            1_000_000_000_000_000_000i64..=i64::MAX - 86_400_000_000_000,
            value_strategy(),
            prop::collection::btree_map(pair_key(), pair_value(), 0..6),
            prop::collection::btree_map(pair_key(), pair_value(), 0..4),
        )
            .prop_map(|(metric, ns, value, tags, metadata)| Sample {
                metric,
                ns,
                value,
                tags,
                metadata,
            })
    }

    /// Writes `samples` as k6's `SampleToRow` + Go's csv writer would, with
    /// pairs in the order given by `order` (Go's map order is random).
    fn k6_csv(
        columns: &[&str],
        with_metadata: bool,
        format: TimeFormat,
        off_min: i64,
        samples: &[Sample],
        order: &[usize],
    ) -> String {
        let mut header: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
        header.extend(columns.iter().map(|s| s.to_string()));
        header.push(EXTRA_TAGS.to_owned());
        if with_metadata {
            header.push(METADATA.to_owned());
        }
        let mut out = String::new();
        go_write(&mut out, &header);
        for (i, s) in samples.iter().enumerate() {
            let time = match format {
                TimeFormat::Rfc3339 => go_rfc3339(s.ns, off_min, false),
                TimeFormat::Rfc3339Nano => go_rfc3339(s.ns, off_min, true),
                f => (s.ns.div_euclid(f.scale().unwrap())).to_string(),
            };
            let mut row = vec![s.metric.clone(), time, go_f(s.value)];
            for c in columns {
                row.push(s.tags.get(*c).cloned().unwrap_or_default());
            }
            let join = |m: &BTreeMap<String, String>| {
                let mut kv: Vec<String> = m
                    .iter()
                    .filter(|(k, _)| !columns.contains(&k.as_str()))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let n = kv.len().max(1);
                kv.rotate_left(order[i % order.len()] % n);
                kv.join("&")
            };
            row.push(join(&s.tags));
            if with_metadata {
                row.push(join(&s.metadata));
            }
            go_write(&mut out, &row);
        }
        out
    }

    type Canon = (
        String,
        i64,
        String,
        Vec<(String, String)>,
        Vec<(String, String)>,
    );

    fn canon_point(p: &CsvPoint<'_>) -> Canon {
        let own = |v: &[(Cow<'_, str>, Cow<'_, str>)]| {
            let mut v: Vec<(String, String)> = v
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            v.sort();
            v
        };
        (
            p.metric.to_string(),
            p.time_ns,
            p.value_text.to_string(),
            own(&p.tags),
            own(&p.metadata),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// k6's CSV encoding of arbitrary samples parses back to them.
        #[test]
        fn roundtrip_k6_encoding(
            columns in prop::sample::subsequence(SYSTEM_COLUMNS.to_vec(), 0..=16),
            with_metadata in any::<bool>(),
            format in prop::sample::select(TimeFormat::ALL.to_vec()),
            off_min in prop_oneof![Just(0i64), -1439i64..=1439],
            samples in prop::collection::vec(sample_strategy(), 1..6),
            order in prop::collection::vec(any::<usize>(), 1..6),
        ) {
            let text = k6_csv(&columns, with_metadata, format, off_min, &samples, &order);
            let mut parser = CsvParser::default();
            let mut got = Vec::new();
            let mut lines = text.split('\n').collect::<Vec<_>>();
            prop_assert_eq!(lines.pop(), Some(""));
            for line in lines {
                match parser.push_line(line.as_bytes()) {
                    Ok(Some(Row::Point(p))) => {
                        prop_assert_eq!(p.value_text.parse::<f64>().ok().or(
                            match p.value_text.as_ref() { "+Inf" => Some(f64::INFINITY), "-Inf" => Some(f64::NEG_INFINITY), _ => None }
                        ), Some(p.value));
                        got.push(canon_point(&p));
                    }
                    Ok(Some(Row::Header)) => {}
                    Ok(None) => {}
                    Err(e) => prop_assert!(false, "{e} in\n{text}"),
                }
            }
            prop_assert_eq!(parser.finish(), Ok(()));
            let layout = parser.layout().unwrap();
            let seen = layout.time_format().unwrap();
            let whole = format.whole_seconds();
            match format {
                // A whole-second rfc3339_nano file reads as rfc3339.
                TimeFormat::Rfc3339Nano => prop_assert!(seen == format || samples.iter().all(|s| s.ns % 1_000_000_000 == 0)),
                _ => prop_assert_eq!(seen, format),
            }
            prop_assert!(layout.whole_seconds() == Some(whole) || !whole && seen == TimeFormat::Rfc3339);
            let want: Vec<Canon> = samples.iter().map(|s| {
                let step = match format {
                    TimeFormat::Rfc3339 => 1_000_000_000,
                    TimeFormat::Rfc3339Nano => 1,
                    f => f.scale().unwrap(),
                };
                let mut tags: Vec<(String, String)> = s.tags.iter()
                    .filter(|(k, v)| !(columns.contains(&k.as_str()) && v.is_empty()))
                    .map(|(k, v)| (k.clone(), v.clone())).collect();
                tags.sort();
                let mut md: Vec<(String, String)> = if with_metadata {
                    s.metadata.iter()
                        .filter(|(k, _)| !columns.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone())).collect()
                } else { Vec::new() };
                md.sort();
                (s.metric.clone(), s.ns - s.ns.rem_euclid(step), expected_text(&go_f(s.value)), tags, md)
            }).collect();
            prop_assert_eq!(got, want, "{}", text);
        }

        /// Arbitrary lines never panic the reader, the header check or the
        /// row parser, and every line is accounted for.
        #[test]
        fn arbitrary_bytes_never_panic(
            lines in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..40),
                    prop::collection::vec(prop::sample::select(b"\",=&\r\n .-+0123456789eE:TZmx".to_vec()), 0..40),
                    "metric_name,timestamp,metric_value(,[a-z\"]{0,3}){0,3},extra_tags(,metadata)?".prop_map(String::into_bytes),
                ],
                0..12,
            ),
            max_lines in 1usize..5,
        ) {
            let mut p = CsvParser::new(RecordLimits { max_bytes: 64, max_lines });
            let n = lines.len() as u64;
            for l in &lines {
                if let Err(e) = p.push_line(l) {
                    prop_assert!(e.line >= 1 && e.line <= n);
                }
                if let Ok(s) = std::str::from_utf8(l) {
                    if let Some(layout) = CsvLayout::from_header(s) {
                        let _ = layout.parse_text(s);
                    }
                    let _ = layout().parse_text(s);
                }
            }
            let _ = p.finish();
            prop_assert_eq!(p.records().next_line(), n + 1);
            prop_assert!(!p.records().in_record());
        }

        /// The one-pass path and the general path agree on every plain
        /// decimal (digits, fraction, sign, leading and trailing zeros).
        #[test]
        fn fast_and_general_decimal_agree(s in "-?[0-9]{1,20}(\\.[0-9]{0,20})?") {
            let general = canonical_decimal(&s).map(|t| match t {
                ValueText::Sub(r) => s[r].to_owned(),
                ValueText::Owned(o) => o,
            });
            let general = general.unwrap();
            let (v, t) = value(&s).unwrap();
            prop_assert_eq!(&t, &general);
            prop_assert_eq!(v, general.parse::<f64>().unwrap());
            if let Some((fv, ft)) = fast_decimal(&s) {
                let ft = match ft { ValueText::Sub(r) => s[r].to_owned(), ValueText::Owned(o) => o };
                prop_assert_eq!((fv, ft), (v, t));
            }
        }

        /// The SWAR finder reports exactly the positions of its two bytes.
        #[test]
        fn byte_finder_matches_naive(hay in prop::collection::vec(prop_oneof![any::<u8>(), Just(b','), Just(b'&'), Just(b'=')], 0..80)) {
            for (a, b) in [(b',', b','), (b'&', b'='), (0x80, 0xff), (0x7f, 0x01)] {
                let mut f = ByteFinder::new(&hay, a, b);
                let got: Vec<usize> = std::iter::from_fn(|| f.next()).collect();
                prop_assert_eq!(got, naive_positions(&hay, a, b));
            }
        }

        /// Canonical value text parses to the same float as k6's text, and is
        /// a fixed point.
        #[test]
        fn value_text_canonical(v in value_strategy()) {
            let go = go_f(v);
            let (val, text) = value(&go).unwrap();
            prop_assert_eq!(&text, &expected_text(&go));
            if v.is_finite() {
                prop_assert_eq!(val, text.parse::<f64>().unwrap());
                prop_assert_eq!(val, go.parse::<f64>().unwrap() + 0.0);
            }
            prop_assert_eq!(value(&text).map(|(_, t)| t), Some(text));
        }
    }
}
