//! WriteRecords validation.
//!
//! # Which problem is a `ValidationException` and which is a rejected record
//!
//! Timestream answers a bad WriteRecords call in two different ways, and a client must handle
//! both: a `ValidationException` (HTTP 400) fails the whole request and stores nothing, while a
//! `RejectedRecordsException` (HTTP 419) lists the bad records by index and *stores all the
//! others*. The split used here follows the API reference:
//!
//! * **Whole request, `ValidationException`** — violations of the constraints declared in the
//!   API model, which AWS front ends check on the whole input before any record is looked at:
//!   a missing required member (`DatabaseName`, `TableName`, `Records`, a dimension's `Name` or
//!   `Value`, a measure value's `Name`/`Value`/`Type`); `Records` outside 1..=100;
//!   `Dimensions` longer than 128; an enum value outside its set (`DimensionValueType` is only
//!   `VARCHAR`, `MeasureValueType`, `TimeUnit`); an empty `MeasureName` or dimension `Name`;
//!   `MeasureValue`/`Value` outside 1..=2048 characters; `Time` outside 1..=256 characters.
//!   Two rules the reference names explicitly as `ValidationException` belong here too: a
//!   `Version` below 1, and a dimension name present both in `CommonAttributes` and in a
//!   record ("Dimensions may not overlap, or a ValidationException will be thrown").
//!   The message uses the usual AWS form, `N validation error(s) detected: Value at
//!   'records.2.member.measureName' failed to satisfy constraint: ...` (1-based indexes).
//!   JSON that does not decode into the shapes at all is a `SerializationException`.
//! * **Per record, `RejectedRecords`** — everything that needs the meaning of the data or the
//!   table: the `RejectedRecordsException` reference lists duplicates with a different value
//!   and no higher version, timestamps outside the retention window, and "dimensions or
//!   measures that exceed the Timestream defined limits". So: no dimension after the
//!   `CommonAttributes` merge; an empty dimension value; a dimension name over 60 bytes or a
//!   measure name over 256 bytes (quotas); reserved or malformed names; a repeated dimension
//!   or measure value name; a measure value that does not parse as its type; `MeasureValue`
//!   with `MULTI` or `MeasureValues` without it; a `MULTI` record with 0 or more than 256
//!   measure values; no `MeasureName` or `Time` after the merge; a `Time` that is not a
//!   non-negative integer; a timestamp more than 15 minutes ahead or older than the memory
//!   store retention (older records are accepted into the magnetic store when the table has
//!   magnetic store writes, down to the magnetic retention); a record over 2 KiB (metering
//!   size); and, decided under the table lock in `store`, names that clash with the table's
//!   schema, a measure name changing its value type, and version conflicts.
//!
//! Judgement calls, kept strict on purpose: the 60/256-byte name limits are treated as quotas
//! (rejected records) although newer API references also print them as length constraints;
//! `true`/`false` are accepted in any ASCII case for BOOLEAN (the service parses them that
//! way); a TIMESTAMP measure value must be an integer; a measure name may not be `time`,
//! `measure_name` or `measure_value` nor start with `ts_`; a column name (dimension or
//! multi-measure value name) may additionally not start with `measure_name`/`measure_value`
//! nor contain `:`.

use std::fmt::Write as _;

use crate::wire::{WireRecord, WriteRecordsRequest};
use crate::ValueType;

/// Maximum records per WriteRecords call.
pub(crate) const MAX_RECORDS: usize = 100;
/// Maximum dimensions in a record (model) and distinct dimension names per table (quota).
pub(crate) const MAX_DIMENSIONS: usize = 128;
/// Maximum bytes of a dimension name.
pub(crate) const MAX_DIMENSION_NAME_BYTES: usize = 60;
/// Maximum bytes of a measure name (and of a multi-measure value name).
pub(crate) const MAX_MEASURE_NAME_BYTES: usize = 256;
/// Maximum characters of a measure value.
pub(crate) const MAX_VALUE_CHARS: usize = 2048;
/// Maximum measure values in a MULTI record.
pub(crate) const MAX_MULTI_VALUES: usize = 256;
/// Maximum metered size of a record.
pub(crate) const MAX_RECORD_BYTES: usize = 2048;
/// Maximum distinct measure names per table.
pub(crate) const MAX_MEASURE_NAMES: usize = 8192;
/// How far into the future a timestamp may be.
pub(crate) const FUTURE_WINDOW_NS: i128 = 15 * 60 * 1_000_000_000;

const NS_PER_HOUR: i128 = 3600 * 1_000_000_000;
const NS_PER_DAY: i128 = 24 * NS_PER_HOUR;

/// The kind of a record's measure: one scalar value or a MULTI record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MeasureKind {
    Scalar(ValueType),
    Multi,
}

impl MeasureKind {
    fn parse(s: &str) -> Option<MeasureKind> {
        Some(match s {
            "MULTI" => MeasureKind::Multi,
            other => MeasureKind::Scalar(ValueType::parse(other)?),
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            MeasureKind::Scalar(t) => t.as_str(),
            MeasureKind::Multi => "MULTI",
        }
    }
}

fn time_unit_ns(unit: &str) -> Option<i128> {
    Some(match unit {
        "MILLISECONDS" => 1_000_000,
        "SECONDS" => 1_000_000_000,
        "MICROSECONDS" => 1_000,
        "NANOSECONDS" => 1,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Request-level (model) validation
// ---------------------------------------------------------------------------------------------

/// Collects model-constraint violations in the AWS message format.
struct ModelErrors {
    shown: Vec<String>,
    total: usize,
}

impl ModelErrors {
    const SHOWN: usize = 10;

    fn add(&mut self, path: impl FnOnce() -> String, constraint: &str) {
        self.total += 1;
        if self.shown.len() < Self::SHOWN {
            self.shown.push(format!(
                "Value at '{}' failed to satisfy constraint: {constraint}",
                path()
            ));
        }
    }

    fn into_message(self) -> Option<String> {
        if self.total == 0 {
            return None;
        }
        let mut msg = format!(
            "{} validation error{} detected: ",
            self.total,
            if self.total == 1 { "" } else { "s" }
        );
        msg.push_str(&self.shown.join("; "));
        if self.total > self.shown.len() {
            let _ = write!(msg, "; and {} more", self.total - self.shown.len());
        }
        Some(msg)
    }
}

/// Whether `s` has more than `max` characters (model lengths count characters). The byte
/// length bounds the character count, so the count is only taken for long strings.
fn longer_than(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

fn check_record_model(rec: &WireRecord<'_>, prefix: &str, errors: &mut ModelErrors) {
    if let Some(dims) = &rec.dimensions {
        if dims.len() > MAX_DIMENSIONS {
            errors.add(
                || format!("{prefix}.dimensions"),
                "Member must have length less than or equal to 128",
            );
        }
        for (i, d) in dims.iter().enumerate() {
            let p = || format!("{prefix}.dimensions.{}.member", i + 1);
            match &d.name {
                None => errors.add(|| format!("{}.name", p()), "Member must not be null"),
                Some(n) if n.as_str().is_empty() => errors.add(
                    || format!("{}.name", p()),
                    "Member must have length greater than or equal to 1",
                ),
                Some(_) => {}
            }
            if d.value.is_none() {
                errors.add(|| format!("{}.value", p()), "Member must not be null");
            }
            if let Some(t) = &d.dimension_value_type {
                if t.as_str() != "VARCHAR" {
                    errors.add(
                        || format!("{}.dimensionValueType", p()),
                        "Member must satisfy enum value set: [VARCHAR]",
                    );
                }
            }
        }
    }
    if let Some(name) = &rec.measure_name {
        if name.as_str().is_empty() {
            errors.add(
                || format!("{prefix}.measureName"),
                "Member must have length greater than or equal to 1",
            );
        }
    }
    if let Some(v) = &rec.measure_value {
        check_value_length(v.as_str(), || format!("{prefix}.measureValue"), errors);
    }
    if let Some(t) = &rec.measure_value_type {
        if MeasureKind::parse(t.as_str()).is_none() {
            errors.add(
                || format!("{prefix}.measureValueType"),
                "Member must satisfy enum value set: [DOUBLE, BIGINT, VARCHAR, BOOLEAN, TIMESTAMP, MULTI]",
            );
        }
    }
    if let Some(t) = &rec.time {
        if t.as_str().is_empty() {
            errors.add(
                || format!("{prefix}.time"),
                "Member must have length greater than or equal to 1",
            );
        } else if longer_than(t.as_str(), 256) {
            errors.add(
                || format!("{prefix}.time"),
                "Member must have length less than or equal to 256",
            );
        }
    }
    if let Some(u) = &rec.time_unit {
        if time_unit_ns(u.as_str()).is_none() {
            errors.add(
                || format!("{prefix}.timeUnit"),
                "Member must satisfy enum value set: [MILLISECONDS, SECONDS, MICROSECONDS, NANOSECONDS]",
            );
        }
    }
    if let Some(v) = rec.version {
        if v < 1 {
            errors.add(
                || format!("{prefix}.version"),
                "Member must have value greater than or equal to 1",
            );
        }
    }
    if let Some(values) = &rec.measure_values {
        for (i, mv) in values.iter().enumerate() {
            let p = || format!("{prefix}.measureValues.{}.member", i + 1);
            match &mv.name {
                None => errors.add(|| format!("{}.name", p()), "Member must not be null"),
                Some(n) if n.as_str().is_empty() => errors.add(
                    || format!("{}.name", p()),
                    "Member must have length greater than or equal to 1",
                ),
                Some(_) => {}
            }
            match &mv.value {
                None => errors.add(|| format!("{}.value", p()), "Member must not be null"),
                Some(v) => check_value_length(v.as_str(), || format!("{}.value", p()), errors),
            }
            match &mv.value_type {
                None => errors.add(|| format!("{}.type", p()), "Member must not be null"),
                Some(t) if MeasureKind::parse(t.as_str()).is_none() => errors.add(
                    || format!("{}.type", p()),
                    "Member must satisfy enum value set: [DOUBLE, BIGINT, VARCHAR, BOOLEAN, TIMESTAMP, MULTI]",
                ),
                Some(_) => {}
            }
        }
    }
}

fn check_value_length(v: &str, path: impl FnOnce() -> String, errors: &mut ModelErrors) {
    if v.is_empty() {
        errors.add(path, "Member must have length greater than or equal to 1");
    } else if longer_than(v, MAX_VALUE_CHARS) {
        errors.add(path, "Member must have length less than or equal to 2048");
    }
}

/// Checks the request against the API model. `Err` is the `ValidationException` message.
pub(crate) fn check_request(req: &WriteRecordsRequest<'_>) -> Result<(), String> {
    let mut errors = ModelErrors {
        shown: Vec::new(),
        total: 0,
    };
    if req.database_name.is_none() {
        errors.add(|| "databaseName".into(), "Member must not be null");
    }
    if req.table_name.is_none() {
        errors.add(|| "tableName".into(), "Member must not be null");
    }
    match &req.records {
        None => errors.add(|| "records".into(), "Member must not be null"),
        Some(r) if r.is_empty() => errors.add(
            || "records".into(),
            "Member must have length greater than or equal to 1",
        ),
        Some(r) if r.len() > MAX_RECORDS => errors.add(
            || "records".into(),
            "Member must have length less than or equal to 100",
        ),
        Some(_) => {}
    }
    if let Some(common) = &req.common_attributes {
        check_record_model(common, "commonAttributes", &mut errors);
    }
    if let Some(records) = &req.records {
        for (i, rec) in records.iter().enumerate() {
            check_record_model(rec, &format!("records.{}.member", i + 1), &mut errors);
        }
    }
    if let Some(msg) = errors.into_message() {
        return Err(msg);
    }
    // Documented as a ValidationException: common and record dimensions must not overlap.
    if let (Some(common), Some(records)) = (&req.common_attributes, &req.records) {
        let common_dims = common.dimensions.as_deref().unwrap_or_default();
        if !common_dims.is_empty() {
            for (i, rec) in records.iter().enumerate() {
                for d in rec.dimensions.as_deref().unwrap_or_default() {
                    let name = d.name.as_ref().map(|n| n.as_str());
                    if common_dims
                        .iter()
                        .any(|c| c.name.as_ref().map(|n| n.as_str()) == name)
                    {
                        return Err(format!(
                            "Dimension '{}' of the record at index {i} is also defined in \
                             CommonAttributes. Dimensions in CommonAttributes and records \
                             may not overlap.",
                            name.unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Record-level validation
// ---------------------------------------------------------------------------------------------

/// The ingestion window of a table at one instant, in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub now_ns: i128,
    /// Oldest timestamp the memory store accepts.
    pub memory_floor_ns: i128,
    /// Oldest timestamp accepted at all (into the magnetic store), when magnetic writes are on.
    pub magnetic_floor_ns: Option<i128>,
}

impl Window {
    pub(crate) fn new(
        now_ns: i128,
        memory_retention_hours: u64,
        magnetic_retention_days: u64,
        magnetic_writes: bool,
    ) -> Window {
        Window {
            now_ns,
            memory_floor_ns: now_ns - i128::from(memory_retention_hours) * NS_PER_HOUR,
            magnetic_floor_ns: magnetic_writes
                .then(|| now_ns - i128::from(magnetic_retention_days) * NS_PER_DAY),
        }
    }
}

/// A record that passed every check that does not need the table's state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Prepared<'r> {
    /// Dimensions sorted by name (unique).
    pub dims: Vec<(&'r str, &'r str)>,
    pub measure_name: &'r str,
    pub time_ns: i64,
    pub version: i64,
    /// Goes to the magnetic store (older than the memory store retention).
    pub magnetic: bool,
    pub value: PreparedValue<'r>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PreparedValue<'r> {
    Single(ValueType, &'r str),
    /// Measure values sorted by name (unique).
    Multi(Vec<(&'r str, ValueType, &'r str)>),
}

impl PreparedValue<'_> {
    pub(crate) fn kind(&self) -> MeasureKind {
        match self {
            PreparedValue::Single(t, _) => MeasureKind::Scalar(*t),
            PreparedValue::Multi(_) => MeasureKind::Multi,
        }
    }
}

fn reserved_column_name(name: &str) -> bool {
    name == "time"
        || name.starts_with("measure_name")
        || name.starts_with("measure_value")
        || name.starts_with("ts_")
        || name.contains(':')
}

fn reserved_measure_name(name: &str) -> bool {
    matches!(name, "time" | "measure_name" | "measure_value") || name.starts_with("ts_")
}

/// Checks that `value` is a valid literal of `ty`.
pub(crate) fn check_value(ty: ValueType, value: &str) -> Result<(), String> {
    let ok = match ty {
        ValueType::Double => value.parse::<f64>().is_ok_and(f64::is_finite),
        ValueType::Bigint | ValueType::Timestamp => value.parse::<i64>().is_ok(),
        ValueType::Boolean => {
            value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
        }
        ValueType::Varchar => !value.is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid measure value '{}' for measure value type {}.",
            truncate(value, 64),
            ty.as_str()
        ))
    }
}

/// Metered size of a measure value.
fn value_size(ty: ValueType, value: &str) -> usize {
    match ty {
        ValueType::Boolean => 1,
        ValueType::Double | ValueType::Bigint | ValueType::Timestamp => 8,
        ValueType::Varchar => value.len(),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Parses a `Time` string: a non-negative decimal integer.
fn parse_time(time: &str) -> Option<i128> {
    if time.is_empty() || time.len() > 38 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    time.parse::<i128>().ok()
}

/// Formats nanoseconds since the epoch as an RFC 3339 UTC timestamp (second precision).
pub(crate) fn format_time(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian), valid for any day count that fits.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Merges `CommonAttributes` into `rec` and validates the result against everything that
/// does not need the table's state. `Err` is the rejection reason.
pub(crate) fn prepare<'r>(
    rec: &'r WireRecord<'r>,
    common: Option<&'r WireRecord<'r>>,
    window: &Window,
) -> Result<Prepared<'r>, String> {
    // A record's own members win over CommonAttributes; dimensions are concatenated (overlap
    // was refused as a ValidationException before).
    let pick = |own: Option<&'r crate::wire::Str<'r>>,
                shared: fn(&'r WireRecord<'r>) -> Option<&'r crate::wire::Str<'r>>| {
        own.or_else(|| common.and_then(shared)).map(|s| s.as_str())
    };
    let measure_name = pick(rec.measure_name.as_ref(), |c| c.measure_name.as_ref());
    let measure_value = pick(rec.measure_value.as_ref(), |c| c.measure_value.as_ref());
    let measure_type = pick(rec.measure_value_type.as_ref(), |c| {
        c.measure_value_type.as_ref()
    });
    let time = pick(rec.time.as_ref(), |c| c.time.as_ref());
    let time_unit = pick(rec.time_unit.as_ref(), |c| c.time_unit.as_ref());
    let version = rec
        .version
        .or_else(|| common.and_then(|c| c.version))
        .unwrap_or(1);
    let measure_values = rec
        .measure_values
        .as_deref()
        .or_else(|| common.and_then(|c| c.measure_values.as_deref()));

    // Dimensions.
    let common_dims = common
        .and_then(|c| c.dimensions.as_deref())
        .unwrap_or_default();
    let own_dims = rec.dimensions.as_deref().unwrap_or_default();
    let mut dims: Vec<(&'r str, &'r str)> = Vec::with_capacity(common_dims.len() + own_dims.len());
    for d in common_dims.iter().chain(own_dims) {
        // Name and Value presence was checked against the model.
        let name = d.name.as_ref().map(|n| n.as_str()).unwrap_or_default();
        let value = d.value.as_ref().map(|v| v.as_str()).unwrap_or_default();
        dims.push((name, value));
    }
    if dims.is_empty() {
        return Err("The record has no dimensions. At least one dimension is required.".into());
    }
    if dims.len() > MAX_DIMENSIONS {
        return Err(format!(
            "The record has {} dimensions; at most {MAX_DIMENSIONS} are allowed.",
            dims.len()
        ));
    }
    let mut size = 8usize;
    for &(name, value) in &dims {
        if name.len() > MAX_DIMENSION_NAME_BYTES {
            return Err(format!(
                "Dimension name '{}...' is {} bytes long; the maximum is {MAX_DIMENSION_NAME_BYTES} bytes.",
                truncate(name, 32),
                name.len()
            ));
        }
        if reserved_column_name(name) {
            return Err(format!(
                "Dimension name '{name}' is reserved or invalid: dimension names cannot be \
                 'time', start with 'measure_name', 'measure_value' or 'ts_', or contain ':'."
            ));
        }
        if value.is_empty() {
            return Err(format!(
                "Dimension '{name}' has an empty value. Dimension values must not be empty."
            ));
        }
        size += name.len() + value.len();
    }
    dims.sort_unstable_by(|a, b| a.0.cmp(b.0));
    if let Some(w) = dims.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "Dimension '{}' appears more than once in the record. Dimension names must be unique.",
            w[0].0
        ));
    }

    // Measure name.
    let Some(measure_name) = measure_name else {
        return Err("The record has no MeasureName. MeasureName is required.".into());
    };
    if measure_name.len() > MAX_MEASURE_NAME_BYTES {
        return Err(format!(
            "Measure name '{}...' is {} bytes long; the maximum is {MAX_MEASURE_NAME_BYTES} bytes.",
            truncate(measure_name, 32),
            measure_name.len()
        ));
    }
    if reserved_measure_name(measure_name) {
        return Err(format!(
            "Measure name '{measure_name}' is reserved: measure names cannot be 'time', \
             'measure_name' or 'measure_value', or start with 'ts_'."
        ));
    }
    if dims.binary_search_by(|d| d.0.cmp(measure_name)).is_ok() {
        return Err(format!(
            "Measure name '{measure_name}' is also a dimension name of the record. A name \
             cannot be both a dimension and a measure."
        ));
    }
    size += measure_name.len();

    // Measure value(s).
    let kind = match measure_type {
        None => MeasureKind::Scalar(ValueType::Double),
        Some(t) => MeasureKind::parse(t).expect("checked against the model"),
    };
    let value = match kind {
        MeasureKind::Scalar(ty) => {
            if measure_values.is_some_and(|v| !v.is_empty()) {
                return Err(format!(
                    "MeasureValues is only allowed with MeasureValueType MULTI, not {}.",
                    ty.as_str()
                ));
            }
            let Some(v) = measure_value else {
                return Err(format!(
                    "The record has no MeasureValue. MeasureValue is required for MeasureValueType {}.",
                    ty.as_str()
                ));
            };
            check_value(ty, v)?;
            size += value_size(ty, v);
            PreparedValue::Single(ty, v)
        }
        MeasureKind::Multi => {
            if measure_value.is_some() {
                return Err(
                    "MeasureValue is not allowed with MeasureValueType MULTI; use MeasureValues."
                        .into(),
                );
            }
            let values = measure_values.unwrap_or_default();
            if values.is_empty() {
                return Err("A MULTI record needs at least one entry in MeasureValues.".into());
            }
            if values.len() > MAX_MULTI_VALUES {
                return Err(format!(
                    "A MULTI record has {} measure values; at most {MAX_MULTI_VALUES} are allowed.",
                    values.len()
                ));
            }
            let mut out = Vec::with_capacity(values.len());
            for mv in values {
                // Presence and enum membership were checked against the model.
                let name = mv.name.as_ref().map(|n| n.as_str()).unwrap_or_default();
                let v = mv.value.as_ref().map(|n| n.as_str()).unwrap_or_default();
                let value_type = mv.value_type.as_ref().map(|t| t.as_str());
                let Some(MeasureKind::Scalar(ty)) = value_type.and_then(MeasureKind::parse) else {
                    return Err(format!(
                        "Measure value '{name}' has type MULTI; the values of a MULTI record \
                         must be DOUBLE, BIGINT, VARCHAR, BOOLEAN or TIMESTAMP."
                    ));
                };
                if name.len() > MAX_MEASURE_NAME_BYTES {
                    return Err(format!(
                        "Measure value name '{}...' is {} bytes long; the maximum is \
                         {MAX_MEASURE_NAME_BYTES} bytes.",
                        truncate(name, 32),
                        name.len()
                    ));
                }
                if reserved_column_name(name) {
                    return Err(format!(
                        "Measure value name '{name}' is reserved or invalid: it cannot be \
                         'time', start with 'measure_name', 'measure_value' or 'ts_', or \
                         contain ':'."
                    ));
                }
                if dims.binary_search_by(|d| d.0.cmp(name)).is_ok() {
                    return Err(format!(
                        "Measure value name '{name}' is also a dimension name of the record. A \
                         name cannot be both a dimension and a measure."
                    ));
                }
                check_value(ty, v).map_err(|e| format!("Measure value '{name}': {e}"))?;
                size += name.len() + value_size(ty, v);
                out.push((name, ty, v));
            }
            out.sort_unstable_by(|a, b| a.0.cmp(b.0));
            if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(format!(
                    "Measure value name '{}' appears more than once in MeasureValues.",
                    w[0].0
                ));
            }
            PreparedValue::Multi(out)
        }
    };

    if size > MAX_RECORD_BYTES {
        return Err(format!(
            "The record size is {size} bytes; the maximum record size is {MAX_RECORD_BYTES} bytes."
        ));
    }

    // Time.
    let Some(time) = time else {
        return Err("The record has no Time. Time is required.".into());
    };
    let unit = time_unit.unwrap_or("MILLISECONDS");
    let per_unit = time_unit_ns(unit).expect("checked against the model");
    let Some(t) = parse_time(time) else {
        return Err(format!(
            "Invalid time '{}': Time must be a non-negative integer number of {}.",
            truncate(time, 64),
            unit.to_ascii_lowercase()
        ));
    };
    let time_ns = t.saturating_mul(per_unit);
    let future_limit = window.now_ns + FUTURE_WINDOW_NS;
    if time_ns > future_limit {
        return Err(format!(
            "The record timestamp {} is more than 15 minutes in the future: it is outside the \
             time range [{}, {}] of the memory store.",
            format_time(time_ns),
            format_time(window.memory_floor_ns),
            format_time(future_limit)
        ));
    }
    let magnetic = time_ns < window.memory_floor_ns;
    if magnetic {
        match window.magnetic_floor_ns {
            None => {
                return Err(format!(
                    "The record timestamp {} is outside the time range [{}, {}] of the memory \
                     store, and magnetic store writes are not enabled on the table.",
                    format_time(time_ns),
                    format_time(window.memory_floor_ns),
                    format_time(future_limit)
                ))
            }
            Some(floor) if time_ns < floor => {
                return Err(format!(
                    "The record timestamp {} is older than the magnetic store retention (oldest \
                     accepted timestamp {}).",
                    format_time(time_ns),
                    format_time(floor)
                ))
            }
            Some(_) => {}
        }
    }
    let time_ns = i64::try_from(time_ns).map_err(|_| {
        format!(
            "The record timestamp {} is out of range.",
            format_time(time_ns)
        )
    })?;

    Ok(Prepared {
        dims,
        measure_name,
        time_ns,
        version,
        magnetic,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WriteRecordsRequest;

    const NOW_MS: i128 = 1_700_000_000_000;

    fn window(magnetic: bool) -> Window {
        Window::new(NOW_MS * 1_000_000, 24, 73_000, magnetic)
    }

    fn parse(json: &str) -> WriteRecordsRequest<'_> {
        serde_json::from_str(json).unwrap()
    }

    fn record(extra: &str) -> String {
        format!(
            r#"{{"DatabaseName":"d","TableName":"t","Records":[{{"Dimensions":[{{"Name":"host","Value":"a"}}],"MeasureName":"cpu","MeasureValue":"1.5","MeasureValueType":"DOUBLE","Time":"{NOW_MS}"{extra}}}]}}"#
        )
    }

    fn prepare_one(json: &str, magnetic: bool) -> Result<Prepared<'_>, String> {
        prepare_in(json, window(magnetic))
    }

    fn prepare_in(json: &str, window: Window) -> Result<Prepared<'_>, String> {
        // Leak the parsed request so the prepared record can borrow it in the test.
        let req: &'static WriteRecordsRequest<'_> =
            Box::leak(Box::new(parse(Box::leak(json.to_owned().into_boxed_str()))));
        check_request(req).map_err(|e| format!("VALIDATION: {e}"))?;
        prepare(
            &req.records.as_ref().unwrap()[0],
            req.common_attributes.as_ref(),
            &window,
        )
    }

    #[test]
    fn good_record_prepares() {
        let json = record("");
        let p = prepare_one(&json, false).unwrap();
        assert_eq!(p.dims, vec![("host", "a")]);
        assert_eq!(p.measure_name, "cpu");
        assert_eq!(p.time_ns, (NOW_MS * 1_000_000) as i64);
        assert_eq!(p.version, 1);
        assert!(!p.magnetic);
        assert_eq!(p.value, PreparedValue::Single(ValueType::Double, "1.5"));
    }

    #[test]
    fn model_violations_are_validation_errors() {
        let too_many = format!(
            r#"{{"DatabaseName":"d","TableName":"t","Records":[{}]}}"#,
            vec![r#"{"MeasureName":"m"}"#; 101].join(",")
        );
        let err = check_request(&parse(&too_many)).unwrap_err();
        assert!(err.starts_with("1 validation error detected"), "{err}");
        assert!(err.contains("'records'"), "{err}");
        assert!(err.contains("less than or equal to 100"), "{err}");

        let err = check_request(&parse(r#"{"TableName":"t","Records":[]}"#)).unwrap_err();
        assert!(err.starts_with("2 validation errors detected"), "{err}");

        for (extra, needle) in [
            (r#","Version":0"#, "records.1.member.version"),
            (r#","TimeUnit":"HOURS""#, "records.1.member.timeUnit"),
        ] {
            let err = prepare_one(&record(extra), false).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let bad_type = record("").replace("\"DOUBLE\"", "\"FLOAT\"");
        assert!(prepare_one(&bad_type, false)
            .unwrap_err()
            .contains("measureValueType"));
        let bad_dim_type = record("").replace(
            r#""Value":"a"}"#,
            r#""Value":"a","DimensionValueType":"BIGINT"}"#,
        );
        assert!(prepare_one(&bad_dim_type, false)
            .unwrap_err()
            .contains("dimensionValueType"));
    }

    #[test]
    fn common_attribute_dimension_overlap_is_a_validation_error() {
        let json = format!(
            r#"{{"DatabaseName":"d","TableName":"t","CommonAttributes":{{"Dimensions":[{{"Name":"host","Value":"x"}}]}},"Records":[{{"Dimensions":[{{"Name":"host","Value":"a"}}],"MeasureName":"cpu","MeasureValue":"1","Time":"{NOW_MS}"}}]}}"#
        );
        let err = check_request(&parse(&json)).unwrap_err();
        assert!(err.contains("CommonAttributes"), "{err}");
    }

    #[test]
    fn common_attributes_merge() {
        let json = format!(
            r#"{{"DatabaseName":"d","TableName":"t","CommonAttributes":{{"Dimensions":[{{"Name":"region","Value":"eu"}}],"MeasureValueType":"BIGINT","Time":"{}","TimeUnit":"SECONDS","MeasureName":"common"}},"Records":[{{"Dimensions":[{{"Name":"host","Value":"a"}}],"MeasureName":"reqs","MeasureValue":"7"}}]}}"#,
            NOW_MS / 1000
        );
        let p = prepare_one(&json, false).unwrap();
        assert_eq!(p.dims, vec![("host", "a"), ("region", "eu")]);
        assert_eq!(p.measure_name, "reqs");
        assert_eq!(p.value, PreparedValue::Single(ValueType::Bigint, "7"));
        assert_eq!(p.time_ns, (NOW_MS / 1000 * 1_000_000_000) as i64);
    }

    #[test]
    fn record_level_rejections() {
        let cases: Vec<(String, &str)> = vec![
            (
                record("").replace(r#""Value":"a""#, r#""Value":"""#),
                "empty value",
            ),
            (
                record("").replace(r#""Name":"host""#, r#""Name":"time""#),
                "reserved",
            ),
            (
                record("").replace(r#""Name":"host""#, r#""Name":"ts_host""#),
                "reserved",
            ),
            (
                record("").replace(r#""Name":"host""#, r#""Name":"measure_value::x""#),
                "reserved",
            ),
            (
                record("").replace(r#""Name":"host""#, r#""Name":"cpu""#),
                "both a dimension and a measure",
            ),
            (
                record("").replace(r#""MeasureName":"cpu""#, r#""MeasureName":"ts_cpu""#),
                "reserved",
            ),
            (
                record("").replace(
                    r#""Name":"host""#,
                    &format!(r#""Name":"{}""#, "h".repeat(61)),
                ),
                "61 bytes",
            ),
            (
                record("").replace(
                    r#""MeasureName":"cpu""#,
                    &format!(r#""MeasureName":"{}""#, "m".repeat(257)),
                ),
                "257 bytes",
            ),
            (
                record("").replace(
                    r#""Dimensions":[{"Name":"host","Value":"a"}]"#,
                    r#""Dimensions":[{"Name":"h","Value":"a"},{"Name":"h","Value":"b"}]"#,
                ),
                "more than once",
            ),
            (
                record("").replace(r#""Dimensions":[{"Name":"host","Value":"a"}],"#, ""),
                "no dimensions",
            ),
            (
                record("").replace(r#""MeasureValue":"1.5""#, r#""MeasureValue":"abc""#),
                "Invalid measure value",
            ),
            (
                record("").replace(r#""MeasureValue":"1.5""#, r#""MeasureValue":"NaN""#),
                "Invalid measure value",
            ),
            (
                record("").replace(r#""MeasureValue":"1.5""#, r#""MeasureValue":"inf""#),
                "Invalid measure value",
            ),
            (
                record("").replace(
                    r#""MeasureValue":"1.5","MeasureValueType":"DOUBLE""#,
                    r#""MeasureValue":"1.5","MeasureValueType":"BIGINT""#,
                ),
                "Invalid measure value",
            ),
            (
                record("").replace(
                    r#""MeasureValue":"1.5","MeasureValueType":"DOUBLE""#,
                    r#""MeasureValue":"yes","MeasureValueType":"BOOLEAN""#,
                ),
                "Invalid measure value",
            ),
            (
                record("").replace(r#""MeasureValue":"1.5","#, ""),
                "no MeasureValue",
            ),
            (
                record("").replace(r#""MeasureName":"cpu","#, ""),
                "no MeasureName",
            ),
            (
                record("").replace(&format!(r#","Time":"{NOW_MS}""#), ""),
                "no Time",
            ),
            (
                record("").replace(&format!(r#""Time":"{NOW_MS}""#), r#""Time":"-5""#),
                "Invalid time",
            ),
            (
                record("").replace(&format!(r#""Time":"{NOW_MS}""#), r#""Time":"1.5e12""#),
                "Invalid time",
            ),
            (
                record("").replace(
                    &format!(r#""Time":"{NOW_MS}""#),
                    &format!(r#""Time":"{}""#, NOW_MS + 16 * 60_000),
                ),
                "future",
            ),
            (
                record("").replace(
                    &format!(r#""Time":"{NOW_MS}""#),
                    &format!(r#""Time":"{}""#, NOW_MS - 25 * 3_600_000),
                ),
                "magnetic store writes are not enabled",
            ),
            (
                record("").replace(
                    r#""MeasureValue":"1.5","MeasureValueType":"DOUBLE""#,
                    r#""MeasureValue":"1.5","MeasureValueType":"MULTI""#,
                ),
                "not allowed with MeasureValueType MULTI",
            ),
            (
                record("").replace(
                    r#""MeasureValue":"1.5","MeasureValueType":"DOUBLE""#,
                    r#""MeasureValueType":"MULTI""#,
                ),
                "at least one",
            ),
            (
                record("").replace(
                    r#""MeasureValue":"1.5","#,
                    r#""MeasureValues":[{"Name":"a","Value":"1","Type":"DOUBLE"}],"#,
                ),
                "only allowed with MeasureValueType MULTI",
            ),
            (
                record("").replace(
                    r#""Value":"a""#,
                    &format!(r#""Value":"{}""#, "v".repeat(2100)),
                ),
                "record size",
            ),
        ];
        for (json, needle) in cases {
            let err = prepare_one(&json, false).expect_err(&json);
            assert!(!err.starts_with("VALIDATION"), "{json}: {err}");
            assert!(
                err.contains(needle),
                "{json}: expected '{needle}' in '{err}'"
            );
        }
    }

    #[test]
    fn multi_records() {
        let multi = |values: &str| {
            record("").replace(
                r#""MeasureValue":"1.5","MeasureValueType":"DOUBLE""#,
                &format!(r#""MeasureValueType":"MULTI","MeasureValues":[{values}]"#),
            )
        };
        let ok = multi(
            r#"{"Name":"p99","Value":"3.5","Type":"DOUBLE"},{"Name":"count","Value":"10","Type":"BIGINT"},{"Name":"ok","Value":"TRUE","Type":"BOOLEAN"}"#,
        );
        let p = prepare_one(&ok, false).unwrap();
        assert_eq!(
            p.value,
            PreparedValue::Multi(vec![
                ("count", ValueType::Bigint, "10"),
                ("ok", ValueType::Boolean, "TRUE"),
                ("p99", ValueType::Double, "3.5"),
            ])
        );
        for (values, needle) in [
            (
                r#"{"Name":"a","Value":"1","Type":"DOUBLE"},{"Name":"a","Value":"2","Type":"DOUBLE"}"#,
                "more than once",
            ),
            (
                r#"{"Name":"a","Value":"x","Type":"BIGINT"}"#,
                "Invalid measure value",
            ),
            (r#"{"Name":"a","Value":"1","Type":"MULTI"}"#, "type MULTI"),
            (
                r#"{"Name":"measure_name","Value":"1","Type":"DOUBLE"}"#,
                "reserved",
            ),
            (
                r#"{"Name":"host","Value":"1","Type":"DOUBLE"}"#,
                "both a dimension and a measure",
            ),
        ] {
            let err = prepare_one(&multi(values), false).unwrap_err();
            assert!(err.contains(needle), "{values}: {err}");
        }
        let many = (0..257)
            .map(|i| format!(r#"{{"Name":"m{i}","Value":"1","Type":"BOOLEAN"}}"#))
            .collect::<Vec<_>>()
            .join(",");
        assert!(prepare_one(&multi(&many), false)
            .unwrap_err()
            .contains("at most 256"));
        let missing_type = multi(r#"{"Name":"a","Value":"1"}"#);
        assert!(prepare_one(&missing_type, false)
            .unwrap_err()
            .starts_with("VALIDATION"));
    }

    #[test]
    fn magnetic_window() {
        let old = record("").replace(
            &format!(r#""Time":"{NOW_MS}""#),
            &format!(r#""Time":"{}""#, NOW_MS - 48 * 3_600_000),
        );
        assert!(prepare_one(&old, false).is_err());
        let p = prepare_one(&old, true).unwrap();
        assert!(p.magnetic);
        let forty_days = record("").replace(
            &format!(r#""Time":"{NOW_MS}""#),
            &format!(r#""Time":"{}""#, NOW_MS - 40 * 24 * 3_600_000),
        );
        assert!(prepare_one(&forty_days, true).is_ok());
        let thirty_day_magnetic = Window::new(NOW_MS * 1_000_000, 24, 30, true);
        let err = prepare_in(&forty_days, thirty_day_magnetic).unwrap_err();
        assert!(err.contains("magnetic store retention"), "{err}");
    }

    #[test]
    fn time_units() {
        for (unit, value) in [
            ("SECONDS", NOW_MS / 1000),
            ("MILLISECONDS", NOW_MS),
            ("MICROSECONDS", NOW_MS * 1000),
            ("NANOSECONDS", NOW_MS * 1_000_000),
        ] {
            let json = record(&format!(r#","TimeUnit":"{unit}""#)).replace(
                &format!(r#""Time":"{NOW_MS}""#),
                &format!(r#""Time":"{value}""#),
            );
            let p = prepare_one(&json, false).unwrap();
            assert_eq!(p.time_ns, (NOW_MS * 1_000_000) as i64, "{unit}");
        }
    }

    #[test]
    fn record_size_follows_metering() {
        // 8 (time) + 4+1 (host=a) + 3 (cpu) + 8 (double) = 24; fill a VARCHAR up to the limit.
        let base = 8 + 4 + 1 + 3;
        let at_limit = record("").replace(
            r#""MeasureValue":"1.5","MeasureValueType":"DOUBLE""#,
            &format!(
                r#""MeasureValue":"{}","MeasureValueType":"VARCHAR""#,
                "x".repeat(MAX_RECORD_BYTES - base)
            ),
        );
        assert!(prepare_one(&at_limit, false).is_ok());
        let over = at_limit.replacen("xx", "xxx", 1);
        assert!(prepare_one(&over, false)
            .unwrap_err()
            .contains("record size"));
    }

    #[test]
    fn check_value_by_type() {
        assert!(check_value(ValueType::Double, "1e3").is_ok());
        assert!(check_value(ValueType::Double, "-0.5").is_ok());
        assert!(check_value(ValueType::Double, "1e400").is_err());
        assert!(check_value(ValueType::Double, " 1").is_err());
        assert!(check_value(ValueType::Bigint, "9223372036854775807").is_ok());
        assert!(check_value(ValueType::Bigint, "9223372036854775808").is_err());
        assert!(check_value(ValueType::Bigint, "1.0").is_err());
        assert!(check_value(ValueType::Boolean, "false").is_ok());
        assert!(check_value(ValueType::Boolean, "1").is_err());
        assert!(check_value(ValueType::Timestamp, "1700000000000").is_ok());
        assert!(check_value(ValueType::Varchar, "").is_err());
    }

    #[test]
    fn formats_times() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(1_700_000_000 * 1_000_000_000),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            format_time(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00Z"
        );
    }
}
