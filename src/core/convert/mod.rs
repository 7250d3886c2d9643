//! k6 points → Timestream records: naming rules, limits, multi-measure grouping.
//!
//! Every rule that changes or removes data is counted in the run report
//! (`adjusted` for changes that keep the point, `dropped` for points that
//! cannot be written), so nothing is lost silently:
//!
//! | situation | rule | report key |
//! |---|---|---|
//! | tag/metadata value empty | dimension left out (Timestream needs non-empty values) | `adjusted.dimension_empty_value_omitted` |
//! | tag/metadata value blank (every char `char::is_whitespace`: `" "`, `"\t"`, U+00A0, U+3000, …), also when a cut below leaves only whitespace | dimension left out, like an empty one (a blank dimension value is refused too) | `adjusted.dimension_blank_value_omitted` |
//! | dimension name reserved (`time`, `measure_value`, `measure_name*`, `ts_*`) | renamed `tag_<name>` | `adjusted.dimension_renamed_reserved` |
//! | dimension name equals a k6 metric (= measure) name | renamed `tag_<name>` | `adjusted.dimension_renamed_metric_clash` |
//! | metadata key equals a tag key | metadata renamed `meta_<name>` | `adjusted.metadata_renamed_tag_clash` |
//! | dimension name > 60 bytes | cut to 51 bytes + `_` + 8 hex digits of its hash (stays unique) | `adjusted.dimension_name_truncated` |
//! | two dimensions end with the same name | first (by sorted original) kept | `adjusted.dimension_duplicate_omitted` |
//! | dimension value > 2048 chars | cut to 2048 chars | `adjusted.dimension_value_truncated` |
//! | > 128 dimensions | the first 128 by name kept | `adjusted.dimension_limit_exceeded` |
//! | record > 2 KiB (metered size) | longest dimension values shortened until it fits | `adjusted.record_size_reduced` |
//! | measure name reserved | renamed `k6_<name>` | `adjusted.measure_renamed_reserved` |
//! | measure name > 256 bytes | cut + hash as for dimension names | `adjusted.measure_name_truncated` |
//! | value NaN/±Inf | point dropped | `dropped.non_finite_value` |
//! | time before 1970 or beyond i64 ns | point dropped | `dropped.time_out_of_range` |
//!
//! Values are written as Rust's shortest round-trip decimal text (`{}` of
//! `f64`), never with a fixed precision: re-processing a file gives the same
//! bytes, so Timestream treats a resend as a duplicate, not a conflict. A
//! point that carries the text its input printed (k6 CSV) is written with
//! that text instead ([`crate::core::value::measure_text`]).

use crate::core::hash::{fnv1a, FnvBuild, FNV_OFFSET};
use crate::core::k6::time::TimeError;
use crate::core::k6::{fast, MetricKind, Point, RawTags};
use crate::core::model::{limits, DataModel, Dimension, Record, Values};
use crate::core::report::RunReport;
use crate::core::value::measure_text;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// Default MeasureName of MULTI records. One constant name keeps queries
/// simple (`WHERE measure_name = 'k6'`, every metric is a column) and stable
/// across k6 versions whatever order k6 emits a request's metrics in.
pub const DEFAULT_MULTI_MEASURE_NAME: &str = "k6";

/// The testid rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestId {
    /// Derived from the input's file name (without `.json`, `.ndjson`,
    /// `.csv`, `.gz`).
    FromInput,
    Fixed(String),
    Off,
}

impl TestId {
    /// The value to add for input `name`, if any.
    pub fn resolve(&self, name: &str) -> Option<String> {
        match self {
            TestId::FromInput => Some(derive_testid(name)),
            TestId::Fixed(v) => Some(v.clone()),
            TestId::Off => None,
        }
    }
}

/// `s3://b/runs/checkout 1.json.gz` → `checkout 1`.
pub fn derive_testid(name: &str) -> String {
    let mut base = name.rsplit('/').next().unwrap_or(name);
    loop {
        let before = base;
        for suf in [".gz", ".json", ".ndjson", ".jsonl", ".csv"] {
            if base.len() > suf.len() && base.to_ascii_lowercase().ends_with(suf) {
                base = &base[..base.len() - suf.len()];
            }
        }
        if before == base {
            break;
        }
    }
    if base.is_empty() || base == "-" {
        "stdin".to_owned()
    } else {
        base.to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvertOptions {
    pub model: DataModel,
    /// Resolved testid value (added when a point has no `testid` tag).
    pub testid: Option<String>,
    /// `--dimension K=V`: added to every record; a point's own tag of the
    /// same name wins.
    pub extra_dimensions: Vec<(String, String)>,
    pub multi_measure_name: String,
    /// Consecutive points form one MULTI group only if each of their
    /// dimensions also comes from the same place (a tag or metadata), as
    /// well as having the same name and value. For sinks that store
    /// metadata apart from tags (InfluxDB: fields, not tags); Timestream
    /// stores both as dimensions and leaves this off, so its records do not
    /// depend on it.
    pub keep_metadata_apart: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            model: DataModel::Multi,
            testid: None,
            extra_dimensions: Vec::new(),
            multi_measure_name: DEFAULT_MULTI_MEASURE_NAME.to_owned(),
            keep_metadata_apart: false,
        }
    }
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Shortens `name` to at most `max` bytes, keeping it unique with a hash of
/// the full name.
fn shorten_name(name: &str, max: usize) -> String {
    let h = fnv1a(name.as_bytes(), FNV_OFFSET);
    let keep = floor_char_boundary(name, max - 9);
    format!("{}_{:08x}", &name[..keep], h as u32)
}

/// Names Timestream reserves: `time`, and anything starting with
/// `measure_value`, `measure_name` or `ts_` (case-insensitive).
pub fn is_reserved(name: &str) -> bool {
    let b = name.as_bytes();
    let starts = |p: &[u8]| b.len() >= p.len() && b[..p.len()].eq_ignore_ascii_case(p);
    name.eq_ignore_ascii_case("time")
        || starts(b"measure_value")
        || starts(b"measure_name")
        || starts(b"ts_")
}

/// Is `name` usable as the MeasureName of MULTI records?
pub fn check_measure_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > limits::MAX_MEASURE_NAME_BYTES {
        return Err(format!(
            "measure name must be 1-{} bytes",
            limits::MAX_MEASURE_NAME_BYTES
        ));
    }
    if is_reserved(name) || name.contains(':') {
        return Err(format!(
            "{name:?} is reserved by Timestream or contains ':'"
        ));
    }
    Ok(())
}

/// Only whitespace (`char::is_whitespace`, Unicode White_Space), and not
/// empty: Timestream refuses such a dimension value like an empty one.
pub fn is_blank(s: &str) -> bool {
    !s.is_empty() && s.chars().all(char::is_whitespace)
}

/// Is `v` usable as a dimension value (non-empty, not blank)?
fn has_content(v: &str) -> bool {
    !v.is_empty() && !is_blank(v)
}

/// The report key of a tag/metadata value that must be left out, if any.
fn omitted_value(v: &str) -> Option<&'static str> {
    if v.is_empty() {
        Some("dimension_empty_value_omitted")
    } else if is_blank(v) {
        Some("dimension_blank_value_omitted")
    } else {
        None
    }
}

/// Cuts `v` to at most `max_chars` characters.
fn truncate_chars(v: &mut String, max_chars: usize) -> bool {
    if v.len() <= max_chars {
        return false; // bytes ≥ chars
    }
    if let Some((i, _)) = v.char_indices().nth(max_chars) {
        v.truncate(i);
        true
    } else {
        false
    }
}

#[derive(Serialize, Deserialize)]
struct Group {
    time_ns: i64,
    /// The dimensions before the record-size rule, when it changed them
    /// (what later points of the group are compared with).
    raw_dims: Option<Vec<Dimension>>,
    /// [`Record::metadata_mask`] of the dimensions before that rule.
    raw_mask: u128,
    dims: Vec<Dimension>,
    mask: u128,
    measures: Vec<(String, String)>,
    lines: Vec<u64>,
    /// Metered size so far.
    size: usize,
    /// The [`DimMemo::epoch`] its dimensions were built in (0: unknown, as
    /// after a restore): a later point whose dimensions come from the same
    /// build has the same dimensions, without comparing them.
    #[serde(skip)]
    memo: u64,
    /// The [`MetricMemo`] bits of its measures (None: not kept, as after a
    /// restore).
    #[serde(skip)]
    bits: Option<u64>,
}

/// A dimension of a point being converted: name, value, and whether it
/// came from the point's metadata.
type PointDim<'p> = (Cow<'p, str>, Cow<'p, str>, bool);

/// Stateful converter: feed it points in input order.
///
/// Serialisable (checkpoints of a stopped run): a converter restored from
/// its serialised form converts the rest of the input exactly as the
/// original would have.
#[derive(Serialize, Deserialize)]
pub struct Converter {
    opts: ConvertOptions,
    kinds: HashMap<String, MetricKind, FnvBuild>,
    metric_names: HashSet<String, FnvBuild>,
    group: Option<Group>,
    /// Bumped whenever `metric_names` grows (invalidates `tag_memo`).
    names_gen: u64,
    /// The naming outcome of the tag keys of the previous point, by
    /// position: consecutive k6 points almost always carry the same keys in
    /// the same order, so one string compare replaces the rule checks and
    /// the hash lookup per tag. A cache (every entry is recomputed when
    /// missing), so not part of the serialised state.
    #[serde(skip)]
    tag_memo: Vec<NameMemo>,
    /// The dimensions of the last point, by its tag and metadata text
    /// (see [`Point::raw_tags`]). A cache like `tag_memo`: rebuilt from the
    /// point whenever it does not match, so not serialised.
    #[serde(skip)]
    memo: DimMemo,
    /// Per metric name, what its points share: `metrics[metric_index[name]]`
    /// (a cache: rebuilt as the names come, so not serialised).
    #[serde(skip)]
    metric_index: HashMap<String, usize, FnvBuild>,
    #[serde(skip)]
    metrics: Vec<MetricMemo>,
}

/// What every point of one metric gets: one lookup per point instead of
/// one per rule (kind, remembered names, measure name).
struct MetricMemo {
    /// The metric's kind, as `points_by_kind` counts it (kept up to date
    /// by [`Converter::define_metric`]).
    kind: &'static str,
    /// Once a point of the metric got that far: its measure name, one bit
    /// of a 64-bit set standing for the name (a hash), and the adjustments
    /// the name made, made again for each point.
    measure: Option<(String, u64, Vec<&'static str>)>,
}

/// The dimensions built for a point: what [`Converter::push_point`] takes
/// them from, and (when the point's tag text is known) what the next points
/// with the same text reuse instead of building them again.
#[derive(Default)]
struct DimMemo {
    /// The `tags` text followed by the `metadata` text, split at `split`;
    /// meaningful only when `known`.
    text: String,
    split: usize,
    known: bool,
    /// `names_gen` when built: a new metric name can rename a dimension.
    gen: u64,
    /// Bumped by every build (so never 0 once built).
    epoch: u64,
    /// Sorted, rule-abiding, before the record size rule.
    dims: Vec<Dimension>,
    mask: u128,
    /// The report adjustments the build made, made again on each reuse.
    adjusts: Vec<&'static str>,
}

impl DimMemo {
    /// Were these dimensions built from `raw` (a point's tag and metadata text)?
    fn matches(&self, raw: Option<RawTags<'_>>, gen: u64) -> bool {
        match raw {
            Some(RawTags {
                tags: t,
                metadata: m,
                ..
            }) if self.known && self.gen == gen => {
                self.text.len() == t.len() + m.len()
                    && self.split == t.len()
                    && self.text.as_bytes()[..self.split] == *t.as_bytes()
                    && self.text.as_bytes()[self.split..] == *m.as_bytes()
            }
            _ => false,
        }
    }
}

struct NameMemo {
    key: String,
    gen: u64,
    /// None: left out; Some(None): unchanged; Some(Some(n)): renamed.
    out: Option<Option<String>>,
    adjusts: Vec<&'static str>,
}

impl Converter {
    pub fn new(opts: ConvertOptions) -> Self {
        let mut metric_names: HashSet<String, FnvBuild> = HashSet::default();
        if opts.model == DataModel::Multi {
            // A dimension named like the MeasureName column value is refused
            // by strict validators; keep clear of it.
            metric_names.insert(opts.multi_measure_name.clone());
        }
        Self {
            opts,
            kinds: HashMap::default(),
            metric_names,
            group: None,
            names_gen: 0,
            tag_memo: Vec::new(),
            memo: DimMemo::default(),
            metric_index: HashMap::default(),
            metrics: Vec::new(),
        }
    }

    /// The measure name of metric `m` (an index from [`Self::metric_memo`])
    /// made the first time, then given again with its adjustments; and its
    /// bit.
    fn measure_of(&mut self, m: usize, metric: &str, report: &mut RunReport) -> (String, u64) {
        if self.metrics[m].measure.is_none() {
            let mut adj = Vec::new();
            let name = self.measure_name(metric, &mut adj);
            let bit = 1u64 << (crate::core::hash::wide_hash(name.as_bytes(), 0) & 63);
            self.metrics[m].measure = Some((name, bit, adj));
        }
        let (name, bit, adj) = self.metrics[m].measure.as_ref().expect("just made");
        for a in adj {
            report.adjust(a);
        }
        (name.clone(), *bit)
    }

    /// The `tags` and `metadata` texts of the last point, when known ("" for
    /// none): what the line parser may leave unparsed in the next one
    /// ([`fast::parse_line_known`]).
    pub fn known_tags(&self) -> (&str, &str) {
        if self.memo.known {
            self.memo.text.split_at(self.memo.split)
        } else {
            ("", "")
        }
    }

    /// A `Metric` definition line.
    pub fn define_metric(&mut self, name: &str, kind: Option<MetricKind>) {
        if let Some(k) = kind {
            self.kinds.insert(name.to_owned(), k);
            if let Some(&m) = self.metric_index.get(name) {
                self.metrics[m].kind = k.as_str();
            }
        }
        if !self.metric_names.contains(name) {
            self.metric_names.insert(name.to_owned());
            self.names_gen += 1;
        }
    }

    /// The measure name of a metric. Every name handed out is remembered,
    /// so no dimension is ever given the name of a measure.
    ///
    /// A function of `metric` alone (its adjustments go to `adj`), apart
    /// from remembering the name, which only the first call does: so
    /// [`MetricMemo`] keeps the outcome.
    fn measure_name(&mut self, metric: &str, adj: &mut Vec<&'static str>) -> String {
        let mut name = if metric.contains(':') {
            adj.push("measure_name_colon_replaced");
            metric.replace(':', "_")
        } else {
            metric.to_owned()
        };
        if is_reserved(&name) {
            adj.push("measure_renamed_reserved");
            name = format!("k6_{name}");
        }
        if name.len() > limits::MAX_MEASURE_NAME_BYTES {
            adj.push("measure_name_truncated");
            name = shorten_name(&name, limits::MAX_MEASURE_NAME_BYTES);
        }
        if name != metric && !self.metric_names.contains(&name) {
            self.metric_names.insert(name.clone());
            self.names_gen += 1;
        }
        name
    }

    /// The index in `metrics` of the point's metric's state, made when it
    /// is first seen (which also remembers the metric's name, as every
    /// point's does).
    fn metric_memo(&mut self, metric: &str) -> usize {
        if let Some(&i) = self.metric_index.get(metric) {
            return i;
        }
        if !self.metric_names.contains(metric) {
            self.metric_names.insert(metric.to_owned());
            self.names_gen += 1;
        }
        let kind = self.kinds.get(metric).map_or("unknown", |k| k.as_str());
        self.metrics.push(MetricMemo {
            kind,
            measure: None,
        });
        self.metric_index
            .insert(metric.to_owned(), self.metrics.len() - 1);
        self.metrics.len() - 1
    }

    /// The dimension name for a tag/metadata key (None: left out); the
    /// adjustments made go to `adj`.
    fn dim_name<'n>(&self, name: &'n str, adj: &mut Vec<&'static str>) -> Option<Cow<'n, str>> {
        self.dim_name_with(name, &mut |a| adj.push(a))
    }

    /// [`Self::dim_name`] through the positional memo (tags only).
    fn tag_name<'n>(
        &mut self,
        slot: usize,
        name: &'n str,
        adj: &mut Vec<&'static str>,
    ) -> Option<Cow<'n, str>> {
        if let Some(m) = self.tag_memo.get(slot) {
            if m.gen == self.names_gen && m.key == name {
                adj.extend_from_slice(&m.adjusts);
                return match &m.out {
                    None => None,
                    Some(None) => Some(Cow::Borrowed(name)),
                    Some(Some(n)) => Some(Cow::Owned(n.clone())),
                };
            }
        }
        let mut adjusts = Vec::new();
        let out = self.dim_name_with(name, &mut |a| adjusts.push(a));
        adj.extend_from_slice(&adjusts);
        let memo = NameMemo {
            key: name.to_owned(),
            gen: self.names_gen,
            out: out.as_ref().map(|c| match c {
                Cow::Borrowed(_) => None,
                Cow::Owned(n) => Some(n.clone()),
            }),
            adjusts,
        };
        if slot < self.tag_memo.len() {
            self.tag_memo[slot] = memo;
        } else {
            self.tag_memo.push(memo);
        }
        out
    }

    fn dim_name_with<'n>(
        &self,
        name: &'n str,
        adjust: &mut dyn FnMut(&'static str),
    ) -> Option<Cow<'n, str>> {
        if name.is_empty() {
            adjust("dimension_empty_name_omitted");
            return None;
        }
        let mut n: Cow<str> = Cow::Borrowed(name);
        if name.contains(':') {
            adjust("dimension_name_colon_replaced");
            n = Cow::Owned(name.replace(':', "_"));
        }
        if is_reserved(&n) {
            adjust("dimension_renamed_reserved");
            n = Cow::Owned(format!("tag_{n}"));
        }
        if self.metric_names.contains(&*n) {
            adjust("dimension_renamed_metric_clash");
            while self.metric_names.contains(&*n) {
                n = Cow::Owned(format!("tag_{n}"));
            }
        }
        if n.len() > limits::MAX_DIMENSION_NAME_BYTES {
            adjust("dimension_name_truncated");
            n = Cow::Owned(shorten_name(&n, limits::MAX_DIMENSION_NAME_BYTES));
        }
        Some(n)
    }

    /// Builds the sorted, rule-abiding dimensions of a point, borrowing
    /// from the line where no rule changes them (the common case: most
    /// points of a MULTI group then cost no dimension allocation at all).
    fn dimensions<'p>(
        &mut self,
        tags: &'p [(Cow<'_, str>, Cow<'_, str>)],
        metadata: &'p [(Cow<'_, str>, Cow<'_, str>)],
        adj: &mut Vec<&'static str>,
    ) -> Vec<PointDim<'p>> {
        let mut dims: Vec<PointDim<'p>> = Vec::with_capacity(tags.len() + metadata.len() + 2);
        let push = |dims: &mut Vec<PointDim<'p>>,
                    name: Cow<'p, str>,
                    value: &'p str,
                    metadata: bool,
                    adj: &mut Vec<&'static str>| {
            let value = if value.len() > limits::MAX_VALUE_CHARS
                && value.chars().count() > limits::MAX_VALUE_CHARS
            {
                let mut v = value.to_owned();
                truncate_chars(&mut v, limits::MAX_VALUE_CHARS);
                if is_blank(&v) {
                    // Only whitespace within the first 2048 chars.
                    adj.push("dimension_blank_value_omitted");
                    return;
                }
                adj.push("dimension_value_truncated");
                Cow::Owned(v)
            } else {
                Cow::Borrowed(value)
            };
            dims.push((name, value, metadata));
        };
        for (i, (k, v)) in tags.iter().enumerate() {
            if let Some(why) = omitted_value(v) {
                adj.push(why);
                continue;
            }
            if let Some(n) = self.tag_name(i, k, adj) {
                push(&mut dims, n, v, false, adj);
            }
        }
        for (k, v) in metadata {
            if let Some(why) = omitted_value(v) {
                adj.push(why);
                continue;
            }
            let n = if tags.iter().any(|(t, _)| t == k) {
                adj.push("metadata_renamed_tag_clash");
                let renamed = format!("meta_{k}");
                self.dim_name(&renamed, adj)
                    .map(|c| Cow::Owned(c.into_owned()))
            } else {
                self.dim_name(k, adj)
            };
            if let Some(n) = n {
                push(&mut dims, n, v, true, adj);
            }
        }
        // "Has a tag" is judged on the point's own keys, before renames.
        // A tag left out (empty or blank) does not count.
        let has = |n: &str| tags.iter().any(|(k, v)| k == n && has_content(v));
        if let Some(t) = &self.opts.testid {
            if !has("testid") && has_content(t) {
                if let Some(n) = self.dim_name("testid", adj) {
                    dims.push((Cow::Owned(n.into_owned()), Cow::Owned(t.clone()), false));
                }
            }
        }
        for (k, v) in &self.opts.extra_dimensions {
            if !has(k) && has_content(v) {
                if let Some(n) = self.dim_name(k, adj) {
                    dims.push((Cow::Owned(n.into_owned()), Cow::Owned(v.clone()), false));
                }
            }
        }
        dims.sort_unstable();
        let before = dims.len();
        dims.dedup_by(|b, a| a.0 == b.0);
        for _ in dims.len()..before {
            adj.push("dimension_duplicate_omitted");
        }
        if dims.len() > limits::MAX_DIMENSIONS {
            adj.push("dimension_limit_exceeded");
            dims.truncate(limits::MAX_DIMENSIONS);
        }
        dims
    }

    /// Converts one point; records come out through `emit` (in MULTI mode a
    /// record comes out when its group ends, see [`Converter::flush`]).
    ///
    /// `time` is the parsed `data.time` (syntax errors make the line a bad
    /// line before it gets here, so only the range is judged).
    pub fn push_point(
        &mut self,
        p: &Point<'_>,
        time: Result<i64, TimeError>,
        line: u64,
        report: &mut RunReport,
        emit: &mut dyn FnMut(Record),
    ) {
        report.points += 1;
        let m = self.metric_memo(&p.metric);
        crate::core::report::bump_key(&mut report.points_by_kind, self.metrics[m].kind);
        let time_ns = match time {
            Ok(t) if t >= 0 => t,
            _ => {
                report.drop_point("time_out_of_range", line);
                return;
            }
        };
        if !p.value.is_finite() {
            report.drop_point("non_finite_value", line);
            return;
        }
        let value = measure_text(p.value, p.value_text.as_deref());
        let (measure, bit) = self.measure_of(m, &p.metric, report);
        self.point_dimensions(p, report);
        if self.memo.dims.is_empty() {
            // Timestream needs ≥ 1 dimension. Only possible with the
            // testid turned off and a point without tags or metadata.
            report.drop_point("no_dimensions", line);
            return;
        }
        match self.opts.model {
            DataModel::Single => {
                let (mut dims, mut mask) = (self.memo.dims.clone(), self.memo.mask);
                let fixed =
                    limits::TIME_BYTES as usize + measure.len() + limits::DOUBLE_BYTES as usize;
                fit_record(&mut dims, &mut mask, fixed, report);
                if dims.is_empty() {
                    // The size rule cut the only dimension down to blanks.
                    report.drop_point("no_dimensions", line);
                    return;
                }
                report.measures += 1;
                emit(Record {
                    dimensions: dims,
                    measure_name: measure,
                    values: Values::Single(value),
                    time_ns,
                    lines: vec![line],
                    metadata_mask: mask,
                });
            }
            DataModel::Multi => {
                let add = measure.len() + limits::DOUBLE_BYTES as usize;
                let memo = &self.memo;
                if let Some(g) = &mut self.group {
                    // Dimensions from the build the group's came from are
                    // the same; others are compared.
                    let same = g.time_ns == time_ns
                        && ((g.memo != 0 && g.memo == memo.epoch) || {
                            let raw = g.raw_dims.as_ref().unwrap_or(&g.dims);
                            *raw == memo.dims
                                && (!self.opts.keep_metadata_apart || g.raw_mask == memo.mask)
                        });
                    // A measure whose bit is clear is not in the group; a
                    // set bit (or none kept, after a restore) is checked.
                    let repeated = || match g.bits {
                        Some(b) if b & bit == 0 => false,
                        _ => g.measures.iter().any(|(n, _)| *n == measure),
                    };
                    if same
                        && g.size + add <= limits::MAX_RECORD_BYTES
                        && g.measures.len() < limits::MAX_MEASURES_PER_RECORD
                        && !repeated()
                    {
                        if let Some(b) = &mut g.bits {
                            *b |= bit;
                        }
                        g.measures.push((measure, value));
                        g.lines.push(line);
                        g.size += add;
                        report.measures += 1;
                        return;
                    }
                }
                let (mut dims, mut mask) = (memo.dims.clone(), memo.mask);
                let epoch = memo.epoch;
                let raw_mask = mask;
                let fixed = limits::TIME_BYTES as usize + self.opts.multi_measure_name.len() + add;
                // Keep the original only when the size rule changed it.
                let raw_dims =
                    (fixed + dims_bytes(&dims) > limits::MAX_RECORD_BYTES).then(|| dims.clone());
                fit_record(&mut dims, &mut mask, fixed, report);
                if dims.is_empty() {
                    report.drop_point("no_dimensions", line);
                    return;
                }
                self.flush(emit);
                report.measures += 1;
                let size = fixed + dims_bytes(&dims);
                self.group = Some(Group {
                    time_ns,
                    raw_dims,
                    raw_mask,
                    dims,
                    mask,
                    measures: vec![(measure, value)],
                    lines: vec![line],
                    size,
                    memo: epoch,
                    bits: Some(bit),
                });
            }
        }
    }

    /// Puts the point's dimensions (before the record size rule) into
    /// `self.memo`: reused when they were built from the same tag and
    /// metadata text under the same metric names, built otherwise. Either
    /// way the report gets the build's adjustments, once per point.
    fn point_dimensions<'p>(&mut self, p: &Point<'p>, report: &mut RunReport) {
        if !self.memo.matches(p.raw_tags, self.names_gen) {
            let mut adjusts = std::mem::take(&mut self.memo.adjusts);
            adjusts.clear();
            // A member the parser left unparsed (its text was the memo's,
            // which the metric names have made stale since) is parsed now.
            let parse = |elided: bool, text: &'p str| {
                elided.then(|| fast::parse_pairs(text).expect("a member text the parser took"))
            };
            let raw = p.raw_tags.unwrap_or_default();
            let (tags, metadata) = (
                parse(raw.tags_elided, raw.tags),
                parse(raw.metadata_elided, raw.metadata),
            );
            let built = self.dimensions(
                tags.as_deref().unwrap_or(&p.tags),
                metadata.as_deref().unwrap_or(&p.metadata),
                &mut adjusts,
            );
            let memo = &mut self.memo;
            memo.adjusts = adjusts;
            memo.mask = mask_of(&built);
            memo.dims.truncate(built.len());
            let have = memo.dims.len();
            for (i, (n, v, _)) in built.iter().enumerate() {
                if i < have {
                    let d = &mut memo.dims[i];
                    d.name.clear();
                    d.name.push_str(n);
                    d.value.clear();
                    d.value.push_str(v);
                } else {
                    memo.dims.push(Dimension {
                        name: n.to_string(),
                        value: v.to_string(),
                    });
                }
            }
            memo.gen = self.names_gen;
            memo.epoch += 1;
            memo.text.clear();
            match p.raw_tags {
                Some(r) => {
                    memo.text.push_str(r.tags);
                    memo.text.push_str(r.metadata);
                    memo.split = r.tags.len();
                    memo.known = true;
                }
                None => memo.known = false,
            }
        }
        for a in &self.memo.adjusts {
            report.adjust(a);
        }
    }

    /// Leaves out the pending MULTI group, counting its points as dropped
    /// for `reason` (they leave `measures`, so `points = measures + Σ
    /// dropped` still holds). For an input that ends mid-write: the group
    /// may continue in the complete file (see `pipeline::run`).
    pub fn discard_group(&mut self, reason: &str, report: &mut RunReport) {
        if let Some(g) = self.group.take() {
            for l in g.lines {
                report.measures -= 1;
                report.drop_point(reason, l);
            }
        }
    }

    /// Emits the pending MULTI group, if any (end of input, or before a stop).
    pub fn flush(&mut self, emit: &mut dyn FnMut(Record)) {
        if let Some(g) = self.group.take() {
            emit(Record {
                dimensions: g.dims,
                measure_name: self.opts.multi_measure_name.clone(),
                values: Values::Multi(g.measures),
                time_ns: g.time_ns,
                lines: g.lines,
                metadata_mask: g.mask,
            });
        }
    }
}

/// Bit `i` set when `dims[i]` came from metadata (at most
/// [`limits::MAX_DIMENSIONS`] entries: the caller truncated them).
fn mask_of(dims: &[PointDim<'_>]) -> u128 {
    dims.iter()
        .take(128)
        .enumerate()
        .filter(|(_, d)| d.2)
        .fold(0, |m, (i, _)| m | 1u128 << i)
}

/// `mask` without bit `i`, the bits above it moved down one (the
/// dimension at `i` was removed).
fn remove_bit(mask: u128, i: usize) -> u128 {
    let below = mask & ((1u128 << i) - 1);
    let above = mask.checked_shr(i as u32 + 1).unwrap_or(0) << i;
    below | above
}

pub fn dims_bytes(dims: &[Dimension]) -> usize {
    dims.iter().map(|d| d.name.len() + d.value.len()).sum()
}

/// Shortens the longest dimension values until `fixed + dims` fits the
/// record size limit (long URLs: k6 copies them into both `url` and `name`).
fn fit_record(dims: &mut Vec<Dimension>, mask: &mut u128, fixed: usize, report: &mut RunReport) {
    let limit = limits::MAX_RECORD_BYTES;
    if fixed + dims_bytes(dims) <= limit {
        return;
    }
    report.adjust("record_size_reduced");
    while fixed + dims_bytes(dims) > limit {
        let excess = fixed + dims_bytes(dims) - limit;
        let (i, longest) = dims
            .iter()
            .enumerate()
            .max_by_key(|(_, d)| d.value.len())
            .map(|(i, d)| (i, d.value.len()))
            .unwrap_or((0, 0));
        if dims.is_empty() {
            break;
        }
        if longest > 1 {
            let target = longest.saturating_sub(excess).max(1);
            let cut = floor_char_boundary(&dims[i].value, target)
                .max(dims[i].value.chars().next().map_or(1, char::len_utf8));
            if cut < longest {
                if is_blank(&dims[i].value[..cut]) {
                    // What would be left is only whitespace: no value.
                    dims.remove(i);
                    *mask = remove_bit(*mask, i);
                    report.adjust("dimension_blank_value_omitted");
                } else {
                    dims[i].value.truncate(cut);
                }
                continue;
            }
        }
        // Values are already minimal: only names are left to give.
        let (j, _) = dims
            .iter()
            .enumerate()
            .max_by_key(|(_, d)| d.name.len() + d.value.len())
            .unwrap();
        dims.remove(j);
        *mask = remove_bit(*mask, j);
        report.adjust("dimension_limit_exceeded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::k6::{parse_line, Line};
    use crate::core::value::format_value;

    fn point(line: &str) -> Point<'_> {
        match parse_line(line).unwrap() {
            Line::Point(p) => p,
            _ => panic!(),
        }
    }

    fn run(model: DataModel, lines: &[&str]) -> (Vec<Record>, RunReport) {
        let mut c = Converter::new(ConvertOptions {
            model,
            testid: Some("t1".into()),
            ..Default::default()
        });
        let mut rep = RunReport::default();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let p = point(l);
            let t = crate::core::k6::time::parse_rfc3339_ns(&p.time);
            c.push_point(&p, t, i as u64 + 1, &mut rep, &mut |r| out.push(r));
        }
        c.flush(&mut |r| out.push(r));
        (out, rep)
    }

    #[test]
    fn values_are_shortest_roundtrip() {
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(-0.0), "0");
        assert_eq!(format_value(1e-7), "0.0000001");
        assert_eq!(format_value(12.345678901234567), "12.345678901234567");
        for v in [f64::MAX, f64::MIN_POSITIVE, 5e-324] {
            let s = format_value(v);
            assert_eq!(s.parse::<f64>().unwrap(), v);
            assert!(s.len() <= limits::MAX_VALUE_CHARS);
        }
    }

    #[test]
    fn testid_derivation() {
        assert_eq!(
            derive_testid("s3://b/runs/checkout 1.json.gz"),
            "checkout 1"
        );
        assert_eq!(derive_testid("results.JSON"), "results");
        assert_eq!(derive_testid("a.ndjson.gz"), "a");
        assert_eq!(derive_testid("runs/b.csv.gz"), "b");
        assert_eq!(derive_testid("-"), "stdin");
        assert_eq!(derive_testid(".json"), ".json");
    }

    #[test]
    fn multi_groups_consecutive_points_and_never_repeats_a_metric() {
        let t = r#""time":"2024-03-01T11:34:05.5Z","tags":{"name":"a","status":"200"}"#;
        let l1 = format!(r#"{{"type":"Point","metric":"http_reqs","data":{{{t},"value":1}}}}"#);
        let l2 = format!(
            r#"{{"type":"Point","metric":"http_req_duration","data":{{{t},"value":2.5}}}}"#
        );
        let l3 = format!(r#"{{"type":"Point","metric":"http_reqs","data":{{{t},"value":1}}}}"#);
        let (recs, rep) = run(DataModel::Multi, &[&l1, &l2, &l3]);
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0].values,
            Values::Multi(vec![
                ("http_reqs".into(), "1".into()),
                ("http_req_duration".into(), "2.5".into())
            ])
        );
        assert_eq!(recs[0].lines, vec![1, 2]);
        assert_eq!(recs[0].measure_name, "k6");
        assert_eq!(recs[1].lines, vec![3]);
        assert_eq!(rep.measures, 3);
        let names: Vec<_> = recs[0].dimensions.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["name", "status", "testid"]);
    }

    #[test]
    fn naming_rules() {
        let l = r#"{"type":"Point","metric":"time","data":{"time":"2024-03-01T11:34:05Z","value":1,"tags":{"time":"x","ts_a":"y","e":"","testid":"own","checks":"c"},"metadata":{"e":"m","vu":"1"}}}"#;
        let mut c = Converter::new(ConvertOptions {
            model: DataModel::Single,
            testid: Some("t1".into()),
            ..Default::default()
        });
        c.define_metric("checks", Some(MetricKind::Rate));
        let mut rep = RunReport::default();
        let mut out = Vec::new();
        let p = point(l);
        c.push_point(
            &p,
            crate::core::k6::time::parse_rfc3339_ns(&p.time),
            1,
            &mut rep,
            &mut |r| out.push(r),
        );
        let r = &out[0];
        assert_eq!(r.measure_name, "k6_time");
        let dims: Vec<_> = r
            .dimensions
            .iter()
            .map(|d| (d.name.as_str(), d.value.as_str()))
            .collect();
        assert_eq!(
            dims,
            [
                ("meta_e", "m"),
                ("tag_checks", "c"),
                ("tag_time", "x"),
                ("tag_ts_a", "y"),
                ("testid", "own"),
                ("vu", "1")
            ]
        );
        assert_eq!(rep.adjusted["dimension_empty_value_omitted"], 1);
        assert_eq!(rep.adjusted["dimension_renamed_reserved"], 2);
        assert_eq!(rep.adjusted["dimension_renamed_metric_clash"], 1);
        assert_eq!(rep.adjusted["measure_renamed_reserved"], 1);
    }

    #[test]
    fn long_names_and_values_fit_limits() {
        let long_name = "n".repeat(100);
        let long_url = format!("http://x/?{}", "q".repeat(3000));
        let l = format!(
            r#"{{"type":"Point","metric":"m","data":{{"time":"2024-03-01T11:34:05Z","value":1,"tags":{{"{long_name}":"v","url":"{long_url}","name":"{long_url}"}}}}}}"#
        );
        for model in [DataModel::Single, DataModel::Multi] {
            let (recs, rep) = run(model, &[&l]);
            let r = &recs[0];
            assert!(r.dimensions.iter().all(|d| d.name.len() <= 60
                && !d.value.is_empty()
                && d.value.chars().count() <= 2048));
            let size = 8 + dims_bytes(&r.dimensions) + r.measure_name.len() + 1 + 8;
            assert!(size <= limits::MAX_RECORD_BYTES + 2, "{size}");
            assert_eq!(rep.adjusted["dimension_name_truncated"], 1);
            assert!(rep.adjusted["record_size_reduced"] >= 1);
        }
    }

    #[test]
    fn metadata_dimensions_are_marked() {
        let l = r#"{"type":"Point","metric":"m","data":{"time":"2024-03-01T11:34:05Z","value":1,"tags":{"name":"a","status":"200"},"metadata":{"vu":"1","iter":"3","name":"n"}}}"#;
        for model in [DataModel::Single, DataModel::Multi] {
            let (recs, _) = run(model, &[l]);
            let r = &recs[0];
            let marked: Vec<(&str, bool)> = r
                .dimensions
                .iter()
                .enumerate()
                .map(|(i, d)| (d.name.as_str(), r.is_metadata(i)))
                .collect();
            assert_eq!(
                marked,
                [
                    ("iter", true),
                    ("meta_name", true),
                    ("name", false),
                    ("status", false),
                    ("testid", false),
                    ("vu", true)
                ]
            );
        }
    }

    #[test]
    fn keeping_metadata_apart_splits_groups_only_when_asked() {
        let t = r#""time":"2024-03-01T11:34:05Z","value":1"#;
        let a = format!(r#"{{"type":"Point","metric":"a","data":{{{t},"tags":{{"x":"1"}}}}}}"#);
        let b = format!(r#"{{"type":"Point","metric":"b","data":{{{t},"metadata":{{"x":"1"}}}}}}"#);
        for (apart, records) in [(false, 1), (true, 2)] {
            let mut c = Converter::new(ConvertOptions {
                keep_metadata_apart: apart,
                ..Default::default()
            });
            let mut rep = RunReport::default();
            let mut out = Vec::new();
            for (i, l) in [&a, &b].into_iter().enumerate() {
                let p = point(l);
                let time = crate::core::k6::time::parse_rfc3339_ns(&p.time);
                c.push_point(&p, time, i as u64 + 1, &mut rep, &mut |r| out.push(r));
            }
            c.flush(&mut |r| out.push(r));
            assert_eq!(out.len(), records, "keep_metadata_apart = {apart}");
            assert_eq!(out[0].metadata_mask, 0);
            assert_eq!(out.last().unwrap().metadata_mask, u128::from(apart));
        }
    }

    #[test]
    fn removing_a_dimension_moves_the_mask_bits_above_it() {
        assert_eq!(remove_bit(0b1011, 1), 0b101);
        assert_eq!(remove_bit(0b1011, 0), 0b101);
        assert_eq!(remove_bit(0b1011, 2), 0b111);
        assert_eq!(remove_bit(u128::MAX, 127), u128::MAX >> 1);
        assert_eq!(remove_bit(1 << 127, 0), 1 << 126);
    }

    #[test]
    fn drops_are_counted() {
        let l = r#"{"type":"Point","metric":"m","data":{"time":"1969-03-01T11:34:05Z","value":1}}"#;
        let (recs, rep) = run(DataModel::Single, &[l]);
        assert!(recs.is_empty());
        assert_eq!(rep.dropped["time_out_of_range"], 1);
        assert!(rep.conversion_balanced());
    }

    fn dims_of(r: &Record) -> Vec<(&str, &str)> {
        r.dimensions
            .iter()
            .map(|d| (d.name.as_str(), d.value.as_str()))
            .collect()
    }

    #[test]
    fn blank_values_are_left_out_like_empty_ones() {
        // The fuzzer's reproducer, and the other blanks it found.
        for blank in [
            r#"" ""#,
            r#""\t""#,
            r#""\n""#,
            "\"\u{a0}\"",
            "\"\u{3000}\"",
            r#"" \r\n\t""#,
        ] {
            let l = format!(
                r#"{{"metric":"http_reqs","type":"Point","data":{{"time":"2026-11-25T10:00:00Z","value":1,"tags":{{"k":{blank},"time":{blank},"ok":"v"}},"metadata":{{"m":{blank}}}}}}}"#
            );
            for model in [DataModel::Single, DataModel::Multi] {
                let (recs, rep) = run(model, &[&l]);
                assert_eq!(recs.len(), 1, "{blank}");
                assert_eq!(
                    dims_of(&recs[0]),
                    [("ok", "v"), ("testid", "t1")],
                    "{blank}"
                );
                assert_eq!(rep.adjusted["dimension_blank_value_omitted"], 3, "{blank}");
                // `time` would have been renamed had it been kept.
                assert!(!rep.adjusted.contains_key("dimension_renamed_reserved"));
                assert!(rep.conversion_balanced());
            }
        }
        // Not blank: a zero-width no-break space is not White_Space.
        assert!(!is_blank("\u{feff}") && !is_blank("") && is_blank("\u{2003}\u{85}"));
    }

    #[test]
    fn a_blank_tag_does_not_win_over_the_default_testid() {
        let l = r#"{"metric":"m","type":"Point","data":{"time":"2026-11-25T10:00:00Z","value":1,"tags":{"testid":" "}}}"#;
        let (recs, rep) = run(DataModel::Single, &[l]);
        assert_eq!(dims_of(&recs[0]), [("testid", "t1")]);
        assert_eq!(rep.adjusted["dimension_blank_value_omitted"], 1);
        // A blank testid option adds nothing: the point has no dimension.
        let mut c = Converter::new(ConvertOptions {
            model: DataModel::Single,
            testid: Some("\u{3000}".into()),
            extra_dimensions: vec![("env".into(), " ".into())],
            ..Default::default()
        });
        let (mut rep, mut out) = (RunReport::default(), Vec::new());
        let p = point(l);
        let t = crate::core::k6::time::parse_rfc3339_ns(&p.time);
        c.push_point(&p, t, 1, &mut rep, &mut |r| out.push(r));
        assert!(out.is_empty());
        assert_eq!(rep.dropped["no_dimensions"], 1);
        assert!(rep.conversion_balanced());
    }

    #[test]
    fn cuts_never_leave_a_blank_value() {
        // Over 2048 chars, only whitespace within the first 2048.
        let ws = format!("{}x", " ".repeat(3000));
        // Over the record size limit: the size rule would cut `a` to
        // whitespace (its first ~1.9 KB are blanks).
        let a = format!("{}{}", "\u{3000}".repeat(650), "y".repeat(100));
        let b = "z".repeat(1000);
        let l = format!(
            r#"{{"metric":"m","type":"Point","data":{{"time":"2026-11-25T10:00:00Z","value":1,"tags":{{"w":"{ws}","a":"{a}","b":"{b}"}}}}}}"#
        );
        for model in [DataModel::Single, DataModel::Multi] {
            let (recs, rep) = run(model, &[&l]);
            assert_eq!(recs.len(), 1);
            for d in &recs[0].dimensions {
                assert!(has_content(&d.value), "{:?}", d.name);
            }
            assert_eq!(dims_of(&recs[0]), [("b", b.as_str()), ("testid", "t1")]);
            assert_eq!(rep.adjusted["dimension_blank_value_omitted"], 2);
            assert_eq!(rep.adjusted["record_size_reduced"], 1);
            assert!(rep.conversion_balanced());
        }
    }

    #[test]
    fn discarded_group_is_counted_as_dropped() {
        let t = r#""time":"2024-03-01T11:34:05.5Z","tags":{"name":"a"}"#;
        let l1 = format!(r#"{{"type":"Point","metric":"a","data":{{{t},"value":1}}}}"#);
        let l2 = format!(r#"{{"type":"Point","metric":"b","data":{{{t},"value":2}}}}"#);
        let mut c = Converter::new(ConvertOptions::default());
        let (mut rep, mut out) = (RunReport::default(), Vec::new());
        for (i, l) in [&l1, &l2].iter().enumerate() {
            let p = point(l);
            let tm = crate::core::k6::time::parse_rfc3339_ns(&p.time);
            c.push_point(&p, tm, i as u64 + 1, &mut rep, &mut |r| out.push(r));
        }
        c.discard_group("input_truncated_tail", &mut rep);
        c.flush(&mut |r| out.push(r));
        assert!(out.is_empty());
        assert_eq!(rep.measures, 0);
        assert_eq!(rep.dropped["input_truncated_tail"], 2);
        assert_eq!(rep.dropped_first_lines["input_truncated_tail"], [1, 2]);
        assert!(rep.conversion_balanced());
    }
}
