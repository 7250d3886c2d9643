//! Records → line-protocol write requests: k6's layout
//! ([`encode_k6_group`]), collision nudging with InfluxDB's notion of a
//! series, requests bounded by lines and bytes.
//!
//! One record (a group of k6 points sharing time, tags and metadata)
//! becomes one line per measure, all with the same tag set and time:
//! `http_req_duration,name=…,status=200 value=12.5,vu="3",… 1700000000000000000`.
//!
//! Batching is a pure function of the record sequence, as for Timestream:
//! request N of an input is always the same request, so a resumed run can
//! skip the requests an earlier one confirmed.

use super::encode::{encode_k6_group, Dialect, K6Group, TagsAsFields, MAX_TIME_NS};
use crate::core::collision::CollisionGuard;
use crate::core::convert::ConvertOptions;
use crate::core::hash::{wide_hash, FNV_OFFSET};
use crate::core::model::{DataModel, Record, Values};
use crate::core::report::RunReport;
use std::ops::Range;

/// Lines per request: InfluxData's advice for writes (5,000 lines).
pub const DEFAULT_MAX_LINES: usize = 5_000;
/// Uncompressed bytes per request. InfluxDB 1.x and 2.x refuse bodies over
/// their `max-body-size` (25 MB by default, counted after decompression
/// in 2.x); 10 MB stays well under it and keeps a retry cheap.
pub const DEFAULT_MAX_BYTES: usize = 10 * 1024 * 1024;

/// How records become lines.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncoderOptions {
    pub dialect: Dialect,
    pub tags_as_fields: TagsAsFields,
    /// Most lines per request (a record's lines always travel together,
    /// so a single record larger than this is a request of its own).
    pub max_lines: usize,
    /// Most body bytes per request (same rule).
    pub max_bytes: usize,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        Self {
            dialect: Dialect::Portable,
            tags_as_fields: TagsAsFields::default(),
            max_lines: DEFAULT_MAX_LINES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// One write request: the records and their lines, in record order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InfluxRequest {
    /// 0-based position in the deterministic request sequence of the input.
    pub seq: u64,
    pub records: Vec<Record>,
    /// Line protocol, every line ending with `\n`: record `i` is
    /// `body[record_bytes(i)]`, one line per measure, in the order of its
    /// measures (and of its `lines`).
    pub body: Vec<u8>,
    /// Per record, the end of its bytes in `body` and of its lines
    /// (exclusive, cumulative).
    ends: Vec<(usize, usize)>,
}

impl InfluxRequest {
    /// Lines in the body.
    pub fn line_count(&self) -> usize {
        self.ends.last().map_or(0, |e| e.1)
    }

    fn start(&self, i: usize) -> (usize, usize) {
        if i == 0 {
            (0, 0)
        } else {
            self.ends[i - 1]
        }
    }

    /// Where record `i` is in the body.
    pub fn record_bytes(&self, i: usize) -> Range<usize> {
        self.start(i).0..self.ends[i].0
    }

    /// The 0-based body lines of record `i`.
    pub fn record_lines(&self, i: usize) -> Range<usize> {
        self.start(i).1..self.ends[i].1
    }

    /// The record that body line `line` (0-based) belongs to.
    pub fn record_of_line(&self, line: usize) -> Option<usize> {
        let i = self.ends.partition_point(|e| e.1 <= line);
        (i < self.ends.len()).then_some(i)
    }

    /// Record `i`'s line protocol.
    pub fn record_text(&self, i: usize) -> &str {
        std::str::from_utf8(&self.body[self.record_bytes(i)])
            .expect("the encoder writes UTF-8 only")
    }
}

impl crate::sinks::Request for InfluxRequest {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn records(&self) -> &[Record] {
        &self.records
    }
    fn split(self) -> (Self, Self) {
        let mid = self.records.len() / 2;
        let (cut_byte, cut_line) = self.start(mid);
        let mut left_records = self.records;
        let right_records = left_records.split_off(mid);
        let mut left_body = self.body;
        let right_body = left_body.split_off(cut_byte);
        let mut left_ends = self.ends;
        let right_ends = left_ends
            .split_off(mid)
            .into_iter()
            .map(|(b, l)| (b - cut_byte, l - cut_line))
            .collect();
        (
            InfluxRequest {
                seq: self.seq,
                records: left_records,
                body: left_body,
                ends: left_ends,
            },
            InfluxRequest {
                seq: self.seq,
                records: right_records,
                body: right_body,
                ends: right_ends,
            },
        )
    }
    /// `{"line_protocol": "<the record's lines>"}`: ready to re-send as
    /// the body of a write; line `k` of it is the point of input line
    /// `lines[k]` of the dead letter.
    fn record_json(&self, i: usize) -> serde_json::Value {
        serde_json::json!({ "line_protocol": self.record_text(i) })
    }
}

/// InfluxDB's series and value hashes of a record for the
/// [`CollisionGuard`]. A line's series is its measurement and tag set;
/// fields (metadata, the tags named in `tagsAsFields`, `value`) are not
/// part of it. A record's lines share the tag set and differ in
/// measurement, and two records of one tag set at one time may have
/// measurements in common (a group split in two is), so the series hash
/// covers the tag set only: records that could overwrite each other's
/// points always share a slot. The price is a needless +1 ns for two
/// such records without a common measurement, which only a group split
/// by the record size limit produces (Timestream nudges those too). The
/// value hash covers every field of every line.
pub fn record_hashes(r: &Record, tags_as_fields: &TagsAsFields) -> (u64, u64) {
    let mut series = FNV_OFFSET;
    let mut fields = FNV_OFFSET;
    for (i, d) in r.dimensions.iter().enumerate() {
        let h = if r.is_metadata(i) || tags_as_fields.kind_of(&d.name).is_some() {
            &mut fields
        } else {
            &mut series
        };
        *h = wide_hash(d.name.as_bytes(), *h);
        *h = wide_hash(d.value.as_bytes(), *h ^ 0xff);
    }
    // The measures as a set: an order-independent combination.
    let mut measures = 0u64;
    let mut add = |name: &str, value: &str| {
        let h = wide_hash(value.as_bytes(), wide_hash(name.as_bytes(), FNV_OFFSET));
        measures = measures.wrapping_add(h.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (h >> 29));
    };
    match &r.values {
        Values::Single(v) => add(&r.measure_name, v),
        Values::Multi(m) => m.iter().for_each(|(n, v)| add(n, v)),
    }
    (series, fields ^ measures.rotate_left(17))
}

/// Groups records into requests of at most `max_lines` lines and
/// `max_bytes` bytes. Serialisable (checkpoints of a stopped run): a
/// restored encoder goes on with the same requests.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct InfluxEncoder {
    opts: EncoderOptions,
    guard: CollisionGuard,
    seq: u64,
    records: Vec<Record>,
    body: Vec<u8>,
    ends: Vec<(usize, usize)>,
    /// The lines of the record being pushed.
    #[serde(skip)]
    scratch: Vec<u8>,
}

impl InfluxEncoder {
    pub fn new(opts: EncoderOptions, collision_window_secs: u64) -> Self {
        Self {
            opts,
            guard: CollisionGuard::new(collision_window_secs),
            seq: 0,
            records: Vec::new(),
            body: Vec::new(),
            ends: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Encodes `r` into `scratch`; returns the measures refused (index into
    /// the record's measures, reason key).
    fn encode(&mut self, r: &Record) -> Vec<(usize, &'static str)> {
        self.scratch.clear();
        if r.time_ns > MAX_TIME_NS {
            return (0..r.measure_count() as usize)
                .map(|i| (i, "influxdb_time_out_of_range"))
                .collect();
        }
        let mut tags = Vec::with_capacity(r.dimensions.len());
        let mut metadata = Vec::new();
        for (i, d) in r.dimensions.iter().enumerate() {
            let pair = (d.name.as_str(), d.value.as_str());
            if r.is_metadata(i) {
                metadata.push(pair);
            } else {
                tags.push(pair);
            }
        }
        let measures: Vec<(&str, &str)> = match &r.values {
            Values::Single(v) => vec![(r.measure_name.as_str(), v.as_str())],
            Values::Multi(m) => m.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect(),
        };
        let group = K6Group {
            time_ns: r.time_ns,
            tags: &tags,
            measures: &measures,
            metadata: &metadata,
        };
        let outcome = encode_k6_group(
            &mut self.scratch,
            &group,
            &self.opts.tags_as_fields,
            self.opts.dialect,
        );
        outcome
            .refused
            .into_iter()
            .map(|(i, e)| (i, e.reason()))
            .collect()
    }

    fn take(&mut self, report: &mut RunReport) -> InfluxRequest {
        let req = InfluxRequest {
            seq: self.seq,
            records: std::mem::take(&mut self.records),
            body: std::mem::take(&mut self.body),
            ends: std::mem::take(&mut self.ends),
        };
        self.seq += 1;
        report.batches += 1;
        req
    }
}

/// Removes the measures `refused` from `r`, counting each as dropped (it
/// was counted as a measure by the converter). Returns whether any is left.
fn drop_refused(r: &mut Record, refused: &[(usize, &'static str)], report: &mut RunReport) -> bool {
    for &(i, reason) in refused {
        report.drop_point(reason, r.lines.get(i).copied().unwrap_or(0));
        report.measures = report.measures.saturating_sub(1);
    }
    let keep = |i: usize| !refused.iter().any(|&(j, _)| j == i);
    match &mut r.values {
        Values::Single(_) => return refused.is_empty(),
        Values::Multi(m) => {
            let mut i = 0;
            m.retain(|_| (keep(i), i += 1).0);
        }
    }
    let mut i = 0;
    r.lines.retain(|_| (keep(i), i += 1).0);
    r.measure_count() > 0
}

impl crate::core::pipeline::Encoder for InfluxEncoder {
    type Request = InfluxRequest;

    /// Groups whatever the model (one record = one k6 request's points,
    /// sharing a tag set and time), and metadata kept apart from tags
    /// (they become fields, not tags).
    fn adapt(&self, convert: &mut ConvertOptions) {
        convert.model = DataModel::Multi;
        convert.keep_metadata_apart = true;
    }

    fn push(&mut self, mut r: Record, report: &mut RunReport) -> Option<InfluxRequest> {
        let refused = self.encode(&r);
        if !refused.is_empty() && !drop_refused(&mut r, &refused, report) {
            return None;
        }
        let (series, value) = record_hashes(&r, &self.opts.tags_as_fields);
        let before = r.time_ns;
        self.guard.admit(&mut r, series, value, report);
        if r.time_ns != before {
            // Moved: the lines carry the time. Only the time changed, so
            // nothing more is refused, unless it moved past the last
            // nanosecond InfluxDB stores.
            let refused = self.encode(&r);
            if !refused.is_empty() && !drop_refused(&mut r, &refused, report) {
                return None;
            }
        }
        report.records += 1;
        let lines = r.measure_count() as usize;
        let bytes = self.scratch.len();
        let (used_bytes, used_lines) = self.ends.last().copied().unwrap_or((0, 0));
        let out = (!self.records.is_empty()
            && (used_lines + lines > self.opts.max_lines
                || used_bytes + bytes > self.opts.max_bytes))
            .then(|| self.take(report));
        let (used_bytes, used_lines) = self.ends.last().copied().unwrap_or((0, 0));
        self.body.extend_from_slice(&self.scratch);
        self.ends.push((used_bytes + bytes, used_lines + lines));
        self.records.push(r);
        out
    }

    /// Also the live flush ([`Encoder::flush`]'s default): `take` leaves
    /// the encoder empty but going on, with the next sequence number and
    /// the collision guard's memory.
    ///
    /// [`Encoder::flush`]: crate::core::pipeline::Encoder::flush
    fn finish(&mut self, report: &mut RunReport) -> Option<InfluxRequest> {
        (!self.records.is_empty()).then(|| self.take(report))
    }

    /// Equal points are distinct samples (k6 CSV in whole seconds): nudged
    /// apart, since InfluxDB keeps one point per series and time (the last
    /// write's fields win).
    fn coarse_times(&mut self) {
        self.guard.distinct_samples();
    }

    /// What `push` does up to the collision guard: a record it would
    /// refuse whole never reaches the guard.
    fn warm(&mut self, mut r: Record, report: &mut RunReport) {
        let refused = self.encode(&r);
        if !refused.is_empty() && !drop_refused(&mut r, &refused, report) {
            return;
        }
        let (series, value) = record_hashes(&r, &self.opts.tags_as_fields);
        self.guard.admit(&mut r, series, value, report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Dimension;
    use crate::core::pipeline::Encoder;
    use crate::sinks::influxdb::encode::parse_lines_with;
    use crate::sinks::Request;

    /// A record: tags, metadata (name, value) and measures.
    fn rec(
        tags: &[(&str, &str)],
        meta: &[(&str, &str)],
        measures: &[(&str, &str)],
        t: i64,
    ) -> Record {
        let mut dims: Vec<(Dimension, bool)> = tags
            .iter()
            .map(|(n, v)| (n, v, false))
            .chain(meta.iter().map(|(n, v)| (n, v, true)))
            .map(|(n, v, m)| {
                (
                    Dimension {
                        name: n.to_string(),
                        value: v.to_string(),
                    },
                    m,
                )
            })
            .collect();
        dims.sort();
        let metadata_mask = dims
            .iter()
            .enumerate()
            .filter(|(_, d)| d.1)
            .fold(0u128, |m, (i, _)| m | 1 << i);
        Record {
            dimensions: dims.into_iter().map(|d| d.0).collect(),
            measure_name: "k6".into(),
            values: Values::Multi(
                measures
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            ),
            time_ns: t,
            lines: (1..=measures.len() as u64)
                .map(|l| l + t as u64 * 100)
                .collect(),
            metadata_mask,
        }
    }

    fn encoder(max_lines: usize, max_bytes: usize) -> InfluxEncoder {
        InfluxEncoder::new(
            EncoderOptions {
                max_lines,
                max_bytes,
                ..Default::default()
            },
            60,
        )
    }

    fn http(t: i64, name: &str, vu: &str) -> Record {
        rec(
            &[("name", name), ("status", "200"), ("url", "https://x/a b")],
            &[("vu", vu), ("iter", "1")],
            &[("http_reqs", "1"), ("http_req_duration", "12.5")],
            t,
        )
    }

    #[test]
    fn a_record_is_a_line_per_measure_in_k6s_layout() {
        let mut e = encoder(100, 1 << 20);
        let mut rep = RunReport::default();
        assert!(e.push(http(7, "GET /a", "3"), &mut rep).is_none());
        let req = e.finish(&mut rep).unwrap();
        assert_eq!(
            req.record_text(0),
            "http_reqs,name=GET\\ /a,status=200 value=1,iter=\"1\",url=\"https://x/a b\",vu=\"3\" 7\n\
             http_req_duration,name=GET\\ /a,status=200 value=12.5,iter=\"1\",url=\"https://x/a b\",vu=\"3\" 7\n"
        );
        assert_eq!(req.line_count(), 2);
        assert_eq!(
            req.record_json(0)["line_protocol"].as_str(),
            Some(req.record_text(0))
        );
        assert_eq!((rep.records, rep.batches), (1, 1));
    }

    #[test]
    fn adapts_the_conversion_to_groups_with_metadata_apart() {
        let mut c = ConvertOptions {
            model: DataModel::Single,
            ..Default::default()
        };
        encoder(1, 1024).adapt(&mut c);
        assert_eq!(c.model, DataModel::Multi);
        assert!(c.keep_metadata_apart);
    }

    #[test]
    fn requests_are_bounded_by_lines_and_bytes_and_keep_records_whole() {
        // 2 lines per record: at most 5 lines → 2 records per request.
        let mut e = encoder(5, 1 << 20);
        let mut rep = RunReport::default();
        let mut reqs = Vec::new();
        for t in 0..7 {
            reqs.extend(e.push(http(t, "n", "1"), &mut rep));
        }
        reqs.extend(e.finish(&mut rep));
        let sizes: Vec<usize> = reqs.iter().map(|r| r.records.len()).collect();
        assert_eq!(sizes, [2, 2, 2, 1]);
        assert!(reqs.iter().all(|r| r.line_count() <= 5));
        assert_eq!(reqs.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(rep.batches, 4);

        // By bytes: one record is ~210 bytes.
        let one = {
            let mut e = encoder(100, 1 << 20);
            e.push(http(0, "n", "1"), &mut RunReport::default());
            e.finish(&mut RunReport::default()).unwrap().body.len()
        };
        let mut e = encoder(100, one * 3);
        let mut reqs = Vec::new();
        for t in 0..7 {
            reqs.extend(e.push(http(t, "n", "1"), &mut rep));
        }
        reqs.extend(e.finish(&mut rep));
        assert!(reqs.iter().all(|r| r.body.len() <= one * 3));
        assert_eq!(
            reqs.iter().map(|r| r.records.len()).collect::<Vec<_>>(),
            [3, 3, 1]
        );
        // A record larger than the bound travels alone.
        let mut e = encoder(1, 1 << 20);
        let mut reqs = Vec::new();
        for t in 0..3 {
            reqs.extend(e.push(http(t, "n", "1"), &mut rep));
        }
        reqs.extend(e.finish(&mut rep));
        assert_eq!(
            reqs.iter().map(|r| r.line_count()).collect::<Vec<_>>(),
            [2, 2, 2]
        );
    }

    #[test]
    fn split_halves_records_and_their_lines() {
        let mut e = encoder(1000, 1 << 20);
        let mut rep = RunReport::default();
        for t in 0..5 {
            e.push(http(t, &format!("n{t}"), "1"), &mut rep);
        }
        let req = e.finish(&mut rep).unwrap();
        let whole = req.body.clone();
        let texts: Vec<String> = (0..5).map(|i| req.record_text(i).to_owned()).collect();
        assert_eq!(req.record_of_line(0), Some(0));
        assert_eq!(req.record_of_line(3), Some(1));
        assert_eq!(req.record_of_line(9), Some(4));
        assert_eq!(req.record_of_line(10), None);
        let (a, b) = req.split();
        assert_eq!((a.records.len(), b.records.len()), (2, 3));
        assert_eq!([a.body.as_slice(), b.body.as_slice()].concat(), whole);
        assert_eq!((a.line_count(), b.line_count()), (4, 6));
        assert_eq!(b.record_text(0), texts[2]);
        assert_eq!(b.record_lines(2), 4..6);
        assert_eq!(b.record_of_line(5), Some(2));
        let (c, d) = b.split();
        assert_eq!((c.records.len(), d.records.len()), (1, 2));
        assert_eq!(d.record_text(1), texts[4]);
        assert_eq!(c.seq, 0);
    }

    #[test]
    fn same_tag_set_and_time_with_other_fields_is_nudged_a_nanosecond() {
        let mut e = encoder(1000, 1 << 20);
        let mut rep = RunReport::default();
        // vu is a field: same series, other values → would overwrite.
        e.push(http(5, "n", "1"), &mut rep);
        e.push(http(5, "n", "2"), &mut rep);
        // Identical: stored once by InfluxDB, counted, left alone.
        e.push(http(5, "n", "1"), &mut rep);
        // Another tag set: another series.
        e.push(http(5, "m", "1"), &mut rep);
        let req = e.finish(&mut rep).unwrap();
        let times: Vec<i64> = req.records.iter().map(|r| r.time_ns).collect();
        assert_eq!(times, [5, 6, 5, 5]);
        assert_eq!((rep.nudged, rep.identical_duplicates), (1, 1));
        assert_eq!(rep.identical_duplicate_measures, 2);
        // The moved record's lines carry the new time.
        let lines = parse_lines_with(Dialect::Portable, req.record_text(1)).unwrap();
        assert!(lines.iter().all(|p| p.time_ns == 6));
    }

    /// A live flush sends the partial request and the sequence goes on:
    /// the next request numbers on, holds only its own lines, and a
    /// collision with a record already sent is still caught.
    #[test]
    fn a_live_flush_goes_on_with_the_sequence_and_the_guard() {
        let mut e = encoder(1000, 1 << 20);
        let mut rep = RunReport::default();
        assert!(e.push(http(5, "n", "1"), &mut rep).is_none());
        let first = e.flush(&mut rep).unwrap();
        assert!(e.flush(&mut rep).is_none(), "nothing held back");
        e.push(http(5, "n", "2"), &mut rep);
        e.push(http(9, "n", "1"), &mut rep);
        let second = e.flush(&mut rep).unwrap();
        assert_eq!((first.seq, second.seq), (0, 1));
        assert_eq!((first.records.len(), second.records.len()), (1, 2));
        assert_eq!(second.ends.first().map(|&(_, l)| l), Some(2));
        assert_eq!(second.line_count(), 4);
        let lines =
            parse_lines_with(Dialect::Portable, &String::from_utf8_lossy(&second.body)).unwrap();
        let times: Vec<i64> = lines.iter().map(|p| p.time_ns).collect();
        assert_eq!(times, [6, 6, 9, 9], "moved past the record sent before");
        assert_eq!((rep.nudged, rep.batches), (1, 2));
        e.push(http(20, "n", "1"), &mut rep);
        assert_eq!(e.finish(&mut rep).unwrap().seq, 2);
    }

    #[test]
    fn series_hash_is_the_tag_set_without_fields() {
        let taf = TagsAsFields::default();
        let a = http(1, "n", "1");
        let b = http(1, "n", "2");
        let (sa, va) = record_hashes(&a, &taf);
        let (sb, vb) = record_hashes(&b, &taf);
        assert_eq!(sa, sb, "vu (metadata) is a field");
        assert_ne!(va, vb);
        // url is a field by default; a tag once tagsAsFields is empty.
        let c = rec(&[("name", "n"), ("url", "u2")], &[], &[("m", "1")], 1);
        let d = rec(&[("name", "n"), ("url", "u1")], &[], &[("m", "1")], 1);
        assert_eq!(record_hashes(&c, &taf).0, record_hashes(&d, &taf).0);
        let none = TagsAsFields(Vec::new());
        assert_ne!(record_hashes(&c, &none).0, record_hashes(&d, &none).0);
        // The same name as a tag or as metadata: another series.
        let e = rec(&[("name", "n")], &[("x", "1")], &[("m", "1")], 1);
        let f = rec(&[("name", "n"), ("x", "1")], &[], &[("m", "1")], 1);
        assert_ne!(record_hashes(&e, &taf).0, record_hashes(&f, &taf).0);
        // Measure order does not matter; values do.
        let g = rec(&[("a", "1")], &[], &[("m", "1"), ("n", "2")], 1);
        let h = rec(&[("a", "1")], &[], &[("n", "2"), ("m", "1")], 1);
        let i = rec(&[("a", "1")], &[], &[("n", "1"), ("m", "2")], 1);
        assert_eq!(record_hashes(&g, &taf), record_hashes(&h, &taf));
        assert_ne!(record_hashes(&g, &taf).1, record_hashes(&i, &taf).1);
    }

    #[test]
    fn refused_measures_are_dropped_and_counted_the_rest_written() {
        let mut e = encoder(1000, 1 << 20);
        let mut rep = RunReport {
            measures: 5,
            points: 5,
            ..Default::default()
        };
        // A measurement starting with '#' would make the line a comment.
        let r = rec(
            &[("a", "1")],
            &[],
            &[("ok", "1"), ("#no", "2"), ("fine", "3")],
            1,
        );
        e.push(r, &mut rep);
        // A tag value InfluxDB 1.x/2.x and 3 would read differently:
        // every line of the record is refused.
        let r = rec(&[("a", "x\\,y")], &[], &[("m", "1"), ("n", "2")], 2);
        e.push(r, &mut rep);
        let req = e.finish(&mut rep).unwrap();
        assert_eq!(req.records.len(), 1);
        assert_eq!(req.records[0].lines, vec![101, 103]);
        assert_eq!(req.line_count(), 2);
        assert_eq!(rep.measures, 2);
        assert_eq!(rep.dropped["influxdb_comment_measurement"], 1);
        assert_eq!(rep.dropped["influxdb_ambiguous_backslash"], 2);
        assert_eq!(
            rep.dropped_first_lines["influxdb_comment_measurement"],
            vec![102]
        );
        assert!(rep.conversion_balanced());
        assert_eq!(rep.records, 1);
    }

    #[test]
    fn times_after_influxdbs_last_nanosecond_are_dropped() {
        let mut e = encoder(1000, 1 << 20);
        let mut rep = RunReport {
            measures: 2,
            points: 2,
            ..Default::default()
        };
        let mut r = rec(&[("a", "1")], &[], &[("m", "1"), ("n", "2")], 0);
        r.time_ns = i64::MAX;
        assert!(e.push(r, &mut rep).is_none());
        assert!(e.finish(&mut rep).is_none());
        assert_eq!(rep.dropped["influxdb_time_out_of_range"], 2);
        assert!(rep.conversion_balanced());
    }

    #[test]
    fn v3_dialect_doubles_backslashes() {
        let mut e = InfluxEncoder::new(
            EncoderOptions {
                dialect: Dialect::V3,
                ..Default::default()
            },
            60,
        );
        let mut rep = RunReport::default();
        e.push(rec(&[("path", "C:\\k6")], &[], &[("m", "1")], 3), &mut rep);
        let req = e.finish(&mut rep).unwrap();
        assert_eq!(req.record_text(0), "m,path=C:\\\\k6 value=1 3\n");
    }
}
