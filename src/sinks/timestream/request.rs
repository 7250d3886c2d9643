//! Records → WriteRecords requests: collision nudging, ≤100-record batches,
//! CommonAttributes, metered-size estimate.
//!
//! Batching is a pure function of the record sequence: request N of an input
//! is always the same request, which is what lets the Lambda resume a large
//! object by re-reading it and skipping the requests already confirmed.

use crate::core::collision::CollisionGuard;
use crate::core::hash::{wide_hash, FNV_OFFSET};
use crate::core::model::{limits, DataModel, Dimension, Record, Values};
use crate::core::report::RunReport;
use std::collections::VecDeque;

/// One WriteRecords request: ≤ 100 records, with what all of them share
/// hoisted into CommonAttributes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WriteRequest {
    /// 0-based position in the deterministic request sequence of the input.
    pub seq: u64,
    pub model: DataModel,
    pub common_dimensions: Vec<Dimension>,
    /// Set when every record has the same measure name (then the records
    /// carry none).
    pub common_measure_name: Option<String>,
    pub records: Vec<Record>,
}

impl WriteRequest {
    pub fn measure_count(&self) -> u64 {
        self.records.iter().map(Record::measure_count).sum()
    }
}

/// Timestream's series and value hashes of a record for the
/// [`CollisionGuard`]: a series is (dimensions, measure name); values are
/// compared as measure sets.
pub fn record_hashes(r: &Record) -> (u64, u64) {
    let (_, series, value) = hashes(r);
    (series, value)
}

/// A hash of a dimension list alone (what [`record_hashes`]' series hash
/// starts from).
fn dims_hash(dims: &[Dimension]) -> u64 {
    let mut s = FNV_OFFSET;
    for d in dims {
        s = wide_hash(d.name.as_bytes(), s);
        s = wide_hash(d.value.as_bytes(), s ^ 0xff);
    }
    s
}

/// (dimensions hash, series hash, value hash) of a record.
fn hashes(r: &Record) -> (u64, u64, u64) {
    let dims = dims_hash(&r.dimensions);
    let s = wide_hash(r.measure_name.as_bytes(), dims);
    let v = match &r.values {
        Values::Single(x) => wide_hash(x.as_bytes(), FNV_OFFSET),
        Values::Multi(m) => {
            // Timestream compares measure sets, not their order: an
            // order-independent combination of per-measure hashes.
            let mut acc = 0u64;
            for (n, x) in m {
                let h = wide_hash(x.as_bytes(), wide_hash(n.as_bytes(), FNV_OFFSET));
                acc = acc.wrapping_add(h.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (h >> 29));
            }
            acc
        }
    };
    (dims, s, v)
}

/// The dimensions of `r` that are not in the request's CommonAttributes:
/// a merge walk of two sorted lists (no search per dimension).
pub fn own_dimensions<'a>(
    req: &'a WriteRequest,
    r: &'a Record,
) -> impl Iterator<Item = &'a Dimension> + 'a {
    let mut common = req.common_dimensions.iter().peekable();
    r.dimensions.iter().filter(move |d| {
        while let Some(c) = common.peek() {
            match (*c).cmp(d) {
                std::cmp::Ordering::Less => {
                    common.next();
                }
                std::cmp::Ordering::Equal => {
                    common.next();
                    return false;
                }
                std::cmp::Ordering::Greater => return true,
            }
        }
        true
    })
}

impl crate::sinks::Request for WriteRequest {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn records(&self) -> &[Record] {
        &self.records
    }
    fn split(self) -> (Self, Self) {
        let mut left = self.records;
        let right = left.split_off(left.len() / 2);
        (
            build_request(self.seq, self.model, left),
            build_request(self.seq, self.model, right),
        )
    }
    fn record_json(&self, i: usize) -> serde_json::Value {
        super::encode::record_value(self.model, &self.records[i])
    }
}

/// Records gathered before they are grouped into requests (see
/// [`Batcher`]): 50 requests' worth.
pub const DEFAULT_GROUP_WINDOW: usize = 5_000;

/// Groups records into requests of at most 100. Serialisable (checkpoints
/// of a stopped run): a restored batcher goes on with the same requests.
///
/// **Grouping.** Timestream meters a request's CommonAttributes once, so a
/// request is cheaper the more dimensions its records share. k6 writes the
/// records of concurrent requests to different URLs and scenarios
/// interleaved, so requests cut in arrival order share few dimensions. With
/// a group window of `w` records (> 100), the batcher gathers `w` records,
/// sorts them by (dimensions, measure name) (stable: records of one series
/// keep their order) and cuts the sorted run into requests of 100: records
/// of one series, then of series that share their leading dimensions,
/// travel together. On the big real k6 file this about halves the metered
/// units of arrival order (see BENCHMARKS.md).
///
/// The trade-offs: memory holds up to `w` + `w`/100 records (5,000 MULTI
/// records of an HTTP test are a few MB), a record waits for up to `w`
/// later ones before it is sent, and requests carry records in sorted, not
/// arrival, order. The records themselves are unchanged: the collision
/// guard admits (and nudges) every record in arrival order *before* it
/// enters the window, so a record's time does not depend on the grouping.
/// The grouping is a pure function of the record sequence, so request N of
/// an input is still always the same request; the window's records are
/// part of the serialised state, so a resumed run cuts the same requests.
/// A window of ≤ 100 records keeps arrival order (one request per 100
/// records, as before windows existed).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Batcher {
    model: DataModel,
    seq: u64,
    /// The records gathered since the last window was cut (arrival order).
    pending: Vec<Record>,
    guard: CollisionGuard,
    /// Records per window; ≤ 100: arrival order. Checkpoints written
    /// before windows existed restore as 0 (their run goes on as it began).
    #[serde(default)]
    group_window: usize,
    /// The sorted records of the last full window not yet in a request
    /// (drained one request per push, so at most `w`).
    #[serde(default)]
    ready: VecDeque<Record>,
    /// The [`dims_hash`] of each record of `pending` (windowed batchers
    /// only), computed with its collision hashes. Derivable, so not
    /// serialised: a restored batcher computes what it lacks.
    #[serde(skip)]
    pending_dims: Vec<u64>,
}

impl Batcher {
    /// A batcher cutting requests in arrival order (no group window).
    pub fn new(model: DataModel, collision_window_secs: u64) -> Self {
        Self::with_group_window(model, collision_window_secs, 0)
    }

    /// A batcher grouping over windows of `group_window` records (≤ 100:
    /// requests in arrival order).
    pub fn with_group_window(
        model: DataModel,
        collision_window_secs: u64,
        group_window: usize,
    ) -> Self {
        Self {
            model,
            seq: 0,
            pending: Vec::with_capacity(limits::MAX_RECORDS_PER_REQUEST),
            guard: CollisionGuard::new(collision_window_secs),
            group_window,
            ready: VecDeque::new(),
            pending_dims: Vec::new(),
        }
    }

    fn windowed(&self) -> bool {
        self.group_window > limits::MAX_RECORDS_PER_REQUEST
    }

    /// Moves the gathered records, sorted, behind those already waiting.
    fn cut_window(&mut self) {
        if self.pending_dims.len() != self.pending.len() {
            // A restored batcher: the hashes were not serialised.
            self.pending_dims = self
                .pending
                .iter()
                .map(|r| dims_hash(&r.dimensions))
                .collect();
        }
        let order = window_order(&self.pending, &self.pending_dims);
        self.pending_dims.clear();
        let mut slots: Vec<Option<Record>> = self.pending.drain(..).map(Some).collect();
        self.ready.extend(
            order
                .into_iter()
                .map(|i| slots[i as usize].take().expect("a permutation")),
        );
    }

    /// The next request of sorted records, if any wait.
    fn take_ready(&mut self, report: &mut RunReport) -> Option<WriteRequest> {
        if self.ready.is_empty() {
            return None;
        }
        let n = self.ready.len().min(limits::MAX_RECORDS_PER_REQUEST);
        let records: Vec<Record> = self.ready.drain(..n).collect();
        Some(self.take(records, report))
    }
}

/// The order records are grouped in: by dimensions (each list sorted, so
/// lists sharing their leading dimensions are neighbours), then measure
/// name (SINGLE requests whose records share it carry it once).
#[cfg(test)]
fn group_order(a: &Record, b: &Record) -> std::cmp::Ordering {
    a.dimensions
        .cmp(&b.dimensions)
        .then_with(|| a.measure_name.cmp(&b.measure_name))
}

/// The indices of `records` in the order of a stable sort by
/// [`group_order`], given each record's [`dims_hash`] (`hashes[i]` for
/// `records[i]`).
///
/// A window holds few distinct dimension lists (the series of a test's
/// URLs), each many times, and comparing two equal lists costs two string
/// compares per dimension: sorting the records themselves spent most of
/// its time proving lists equal. Instead, each distinct list (found by its
/// hash, equality checked, so a hash collision only costs a compare) and
/// each distinct measure name is ranked once, and the records are sorted
/// by (dimension rank, measure rank, arrival): the same order as the
/// stable sort, by integer keys.
fn window_order(records: &[Record], hashes: &[u64]) -> Vec<u32> {
    use std::collections::HashMap;
    debug_assert_eq!(records.len(), hashes.len());
    // Distinct dimension lists: the first record of each, and each
    // record's list.
    let mut lists: Vec<usize> = Vec::new();
    let mut by_hash: HashMap<u64, Vec<u32>, crate::core::hash::FnvBuild> = HashMap::default();
    let mut names: HashMap<&str, u32, crate::core::hash::FnvBuild> = HashMap::default();
    let mut of: Vec<(u32, u32)> = Vec::with_capacity(records.len());
    for (i, (r, h)) in records.iter().zip(hashes).enumerate() {
        let same = by_hash.entry(*h).or_default();
        let list = match same
            .iter()
            .find(|&&l| records[lists[l as usize]].dimensions == r.dimensions)
        {
            Some(&l) => l,
            None => {
                let l = lists.len() as u32;
                lists.push(i);
                same.push(l);
                l
            }
        };
        let next = names.len() as u32;
        let name = *names.entry(r.measure_name.as_str()).or_insert(next);
        of.push((list, name));
    }
    let mut list_rank = vec![0u64; lists.len()];
    let mut sorted: Vec<u32> = (0..lists.len() as u32).collect();
    sorted.sort_unstable_by(|&a, &b| {
        records[lists[a as usize]]
            .dimensions
            .cmp(&records[lists[b as usize]].dimensions)
    });
    for (rank, &l) in sorted.iter().enumerate() {
        list_rank[l as usize] = rank as u64;
    }
    let mut name_rank = vec![0u64; names.len()];
    let mut sorted: Vec<(&str, u32)> = names.into_iter().collect();
    sorted.sort_unstable();
    for (rank, &(_, n)) in sorted.iter().enumerate() {
        name_rank[n as usize] = rank as u64;
    }
    // Unique keys (the index is part of them): an unstable sort gives the
    // stable order.
    let mut keys: Vec<(u64, u32)> = of
        .iter()
        .enumerate()
        .map(|(i, &(l, n))| {
            (
                (list_rank[l as usize] << 32) | name_rank[n as usize],
                i as u32,
            )
        })
        .collect();
    keys.sort_unstable();
    keys.into_iter().map(|(_, i)| i).collect()
}

impl crate::core::pipeline::Encoder for Batcher {
    type Request = WriteRequest;

    /// Adds a record; returns a request when one is complete.
    fn push(&mut self, mut r: Record, report: &mut RunReport) -> Option<WriteRequest> {
        let (dims, series, value) = hashes(&r);
        self.guard.admit(&mut r, series, value, report);
        report.records += 1;
        if self.windowed() && self.pending_dims.len() == self.pending.len() {
            self.pending_dims.push(dims);
        }
        self.pending.push(r);
        if !self.windowed() {
            return (self.pending.len() == limits::MAX_RECORDS_PER_REQUEST).then(|| {
                let records = std::mem::replace(
                    &mut self.pending,
                    Vec::with_capacity(limits::MAX_RECORDS_PER_REQUEST),
                );
                self.take(records, report)
            });
        }
        if self.pending.len() >= self.group_window {
            self.cut_window();
        }
        self.take_ready(report)
    }

    /// The rest, one request per call (`None` when nothing is left).
    fn finish(&mut self, report: &mut RunReport) -> Option<WriteRequest> {
        if self.ready.is_empty() && !self.pending.is_empty() {
            if !self.windowed() {
                let records = std::mem::take(&mut self.pending);
                return Some(self.take(records, report));
            }
            self.cut_window();
        }
        self.take_ready(report)
    }

    /// Equal records are distinct samples (k6 CSV in whole seconds: every
    /// `http_reqs` 1 of one URL in one second): nudged apart instead of
    /// being stored once by Timestream as duplicates.
    fn coarse_times(&mut self) {
        self.guard.distinct_samples();
    }

    /// Only the collision guard depends on earlier records.
    fn warm(&mut self, mut r: Record, report: &mut RunReport) {
        let (series, value) = record_hashes(&r);
        self.guard.admit(&mut r, series, value, report);
    }
}

impl Batcher {
    fn take(&mut self, records: Vec<Record>, report: &mut RunReport) -> WriteRequest {
        let req = build_request(self.seq, self.model, records);
        self.seq += 1;
        report.batches += 1;
        let (event, metered) = estimate_write_bytes(&req);
        report.estimated_event_bytes += event;
        report.estimated_write_bytes += metered;
        req
    }
}

/// Hoists what every record shares into CommonAttributes. Records keep their
/// full dimension lists (the dead-letter sink wants whole records); the
/// request encoders leave out the common ones.
pub fn build_request(seq: u64, model: DataModel, records: Vec<Record>) -> WriteRequest {
    let mut common: Vec<Dimension> = records
        .first()
        .map(|r| r.dimensions.clone())
        .unwrap_or_default();
    for r in records.iter().skip(1) {
        // Both lists are sorted: one merge walk.
        let mut rest = r.dimensions.as_slice();
        common.retain(|d| {
            while let Some((first, tail)) = rest.split_first() {
                match first.cmp(d) {
                    std::cmp::Ordering::Less => rest = tail,
                    std::cmp::Ordering::Equal => {
                        rest = tail;
                        return true;
                    }
                    std::cmp::Ordering::Greater => return false,
                }
            }
            false
        });
        if common.is_empty() {
            break;
        }
    }
    let first = records.first().map(|r| r.measure_name.as_str());
    let common_measure_name = first
        .filter(|m| records.iter().all(|r| r.measure_name == *m))
        .map(str::to_owned);
    WriteRequest {
        seq,
        model,
        common_dimensions: common,
        common_measure_name,
        records,
    }
}

/// Estimated metered write size: (event bytes, event bytes rounded up to
/// the 1 KiB metering unit). Per the Timestream pricing page: 8 B per
/// timestamp, UTF-8 bytes of dimension names and values and measure names,
/// 8 B per DOUBLE; common attributes are counted once per request.
pub fn estimate_write_bytes(req: &WriteRequest) -> (u64, u64) {
    let mut b: u64 = req
        .common_dimensions
        .iter()
        .map(|d| (d.name.len() + d.value.len()) as u64)
        .sum();
    if let Some(m) = &req.common_measure_name {
        b += m.len() as u64;
    }
    for r in &req.records {
        b += limits::TIME_BYTES;
        for d in own_dimensions(req, r) {
            b += (d.name.len() + d.value.len()) as u64;
        }
        if req.common_measure_name.is_none() {
            b += r.measure_name.len() as u64;
        }
        b += match &r.values {
            Values::Single(_) => limits::DOUBLE_BYTES,
            Values::Multi(m) => m
                .iter()
                .map(|(n, _)| n.len() as u64 + limits::DOUBLE_BYTES)
                .sum(),
        };
    }
    (b, b.div_ceil(limits::METER_UNIT) * limits::METER_UNIT)
}

#[cfg(test)]
mod tests {
    use crate::core::collision::MAX_REMEMBERED;
    use crate::core::pipeline::Encoder;

    fn admit(g: &mut CollisionGuard, r: &mut Record, rep: &mut RunReport) {
        let (series, value) = record_hashes(r);
        g.admit(r, series, value, rep);
    }
    use super::*;

    fn rec(dims: &[(&str, &str)], t: i64, v: &str) -> Record {
        Record {
            dimensions: dims
                .iter()
                .map(|(n, v)| Dimension {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            measure_name: "m".into(),
            values: Values::Single(v.into()),
            time_ns: t,
            lines: vec![1],
            metadata_mask: 0,
        }
    }

    proptest::proptest! {
        /// The ranked order is the stable sort by `group_order`, with real
        /// hashes and with every hash colliding.
        #[test]
        fn window_order_is_the_stable_group_order(
            specs in proptest::collection::vec(
                (proptest::collection::vec((0u8..3, 0u8..3), 0..4), 0u8..3),
                0..60,
            ),
            collide in proptest::bool::ANY,
        ) {
            let records: Vec<Record> = specs
                .iter()
                .enumerate()
                .map(|(i, (dims, m))| {
                    let mut dims: Vec<(String, String)> = dims
                        .iter()
                        .map(|(n, v)| (format!("d{n}"), format!("v{v}")))
                        .collect();
                    dims.sort();
                    dims.dedup_by(|a, b| a.0 == b.0);
                    let dims: Vec<(&str, &str)> =
                        dims.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                    Record {
                        measure_name: format!("m{m}"),
                        lines: vec![i as u64],
                        ..rec(&dims, 0, "1")
                    }
                })
                .collect();
            let hashes: Vec<u64> = records
                .iter()
                .map(|r| if collide { 7 } else { dims_hash(&r.dimensions) })
                .collect();
            let got: Vec<u64> = window_order(&records, &hashes)
                .into_iter()
                .map(|i| records[i as usize].lines[0])
                .collect();
            let mut want: Vec<&Record> = records.iter().collect();
            want.sort_by(|a, b| group_order(a, b));
            let want: Vec<u64> = want.iter().map(|r| r.lines[0]).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// A live flush ([`Encoder::flush`]'s default, `finish`) sends the
    /// partial request and the batcher goes on: numbering continues, and
    /// a conflict with a record already sent is still nudged.
    #[test]
    fn a_live_flush_goes_on_with_the_sequence_and_the_guard() {
        use crate::core::pipeline::Encoder;
        let mut b = Batcher::new(DataModel::Single, 60);
        let mut rep = RunReport::default();
        assert!(b.push(rec(&[("a", "1")], 10, "1"), &mut rep).is_none());
        let first = b.flush(&mut rep).unwrap();
        assert!(b.flush(&mut rep).is_none(), "nothing held back");
        b.push(rec(&[("a", "1")], 10, "2"), &mut rep);
        let second = b.flush(&mut rep).unwrap();
        assert_eq!((first.seq, second.seq), (0, 1));
        assert_eq!(second.records.len(), 1);
        assert_eq!(second.records[0].time_ns, 11);
        assert_eq!((rep.nudged, rep.batches), (1, 2));
    }

    #[test]
    fn nudges_conflicts_not_duplicates() {
        let mut g = CollisionGuard::new(60);
        let mut rep = RunReport::default();
        let mut a = rec(&[("a", "1")], 10, "1");
        let mut b = rec(&[("a", "1")], 10, "2");
        let mut c = rec(&[("a", "1")], 10, "1");
        let mut d = rec(&[("a", "1")], 10, "3");
        let mut e = rec(&[("a", "2")], 10, "9");
        for r in [&mut a, &mut b, &mut c, &mut d, &mut e] {
            admit(&mut g, r, &mut rep);
        }
        assert_eq!(
            [a.time_ns, b.time_ns, c.time_ns, d.time_ns, e.time_ns],
            [10, 11, 10, 12, 10]
        );
        assert_eq!(rep.nudged, 2);
    }

    #[test]
    fn coarse_times_keep_equal_records_apart() {
        use crate::core::pipeline::Encoder;
        let same = |line| Record {
            lines: vec![line],
            ..rec(&[("a", "1")], 10, "1")
        };
        let mut rep = RunReport::default();
        let mut exact = Batcher::new(DataModel::Single, 60);
        let mut coarse = Batcher::new(DataModel::Single, 60);
        coarse.coarse_times();
        for line in 1..=3 {
            assert!(exact.push(same(line), &mut rep).is_none());
        }
        assert_eq!((rep.identical_duplicates, rep.nudged), (2, 0));
        let mut rep = RunReport::default();
        for line in 1..=3 {
            assert!(coarse.push(same(line), &mut rep).is_none());
        }
        assert_eq!((rep.identical_duplicates, rep.nudged), (0, 2));
        let req = coarse.finish(&mut rep).unwrap();
        let times: Vec<i64> = req.records.iter().map(|r| r.time_ns).collect();
        assert_eq!(times, [10, 11, 12]);
    }

    #[test]
    fn count_cap_bounds_memory_and_reports_what_it_cannot_check() {
        let mut g = CollisionGuard::new(u64::MAX);
        let mut rep = RunReport::default();
        for i in 0..(MAX_REMEMBERED as i64 + 1000) {
            let mut r = rec(&[("a", "1")], i, "1");
            admit(&mut g, &mut r, &mut rep);
        }
        assert_eq!(g.len(), MAX_REMEMBERED);
        assert_eq!(rep.collision_window_misses, 0);
        let mut old = rec(&[("a", "1")], 5, "2");
        admit(&mut g, &mut old, &mut rep);
        assert_eq!(
            rep.collision_window_misses, 1,
            "a forgotten slot is not silently trusted"
        );
        let mut recent = rec(&[("a", "1")], MAX_REMEMBERED as i64 + 999, "2");
        admit(&mut g, &mut recent, &mut rep);
        assert_eq!(recent.time_ns, MAX_REMEMBERED as i64 + 1000, "still nudged");
    }

    #[test]
    fn window_bounds_memory() {
        let mut g = CollisionGuard::new(1);
        let mut rep = RunReport::default();
        for i in 0..10_000i64 {
            let mut r = rec(&[("a", "1")], i * 10_000_000, "1");
            admit(&mut g, &mut r, &mut rep);
        }
        // 1 s of records behind a watermark that trails by ≤ 2048 arrivals.
        assert!(g.len() <= 101 + 2048, "{}", g.len());
        let mut late = rec(&[("a", "1")], 0, "2");
        admit(&mut g, &mut late, &mut rep);
        assert_eq!(rep.collision_window_misses, 1);
    }

    /// Reference for `own_dimensions`: is `d` a common dimension?
    fn is_common(req: &WriteRequest, d: &Dimension) -> bool {
        req.common_dimensions.binary_search(d).is_ok()
    }

    #[test]
    fn own_dimensions_is_set_difference() {
        let d = |n: &str, v: &str| Dimension {
            name: n.into(),
            value: v.into(),
        };
        let recs = vec![
            rec(&[("a", "1"), ("b", "x"), ("c", "1"), ("e", "5")], 1, "1"),
            rec(&[("a", "1"), ("b", "y"), ("c", "1"), ("d", "4")], 2, "2"),
        ];
        let req = build_request(0, DataModel::Single, recs);
        assert_eq!(req.common_dimensions, vec![d("a", "1"), d("c", "1")]);
        for r in &req.records {
            let fast: Vec<_> = own_dimensions(&req, r).collect();
            let slow: Vec<_> = r
                .dimensions
                .iter()
                .filter(|x| !is_common(&req, x))
                .collect();
            assert_eq!(fast, slow);
        }
    }

    /// Records of `urls` interleaved (as k6 writes concurrent requests),
    /// with collisions: every 7th record repeats the time of the one
    /// before it with another value.
    fn interleaved(n: usize, urls: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                // The series and time of the record before, or its own.
                let j = if i % 7 == 0 && i > 0 { i - 1 } else { i };
                let url = format!("http://h/{}", j % urls);
                let status = if j % 11 == 0 { "500" } else { "200" };
                let mut r = rec(
                    &[("status", status), ("url", &url)],
                    j as i64,
                    &i.to_string(),
                );
                r.measure_name = format!("m{}", j % 3);
                r.lines = vec![i as u64 + 1];
                r
            })
            .collect()
    }

    fn all_requests(b: &mut Batcher, recs: Vec<Record>, rep: &mut RunReport) -> Vec<WriteRequest> {
        let mut out: Vec<WriteRequest> = recs.into_iter().filter_map(|r| b.push(r, rep)).collect();
        while let Some(q) = b.finish(rep) {
            out.push(q);
        }
        out
    }

    fn records_by_line(reqs: &[WriteRequest]) -> Vec<Record> {
        let mut v: Vec<Record> = reqs.iter().flat_map(|q| q.records.clone()).collect();
        v.sort_by_key(|r| r.lines[0]);
        v
    }

    fn units(reqs: &[WriteRequest]) -> u64 {
        reqs.iter().map(|q| estimate_write_bytes(q).1).sum()
    }

    #[test]
    fn a_window_regroups_the_same_records_cheaper() {
        let recs = interleaved(2_345, 3);
        let (mut ra, mut rw) = (RunReport::default(), RunReport::default());
        let arrival = all_requests(
            &mut Batcher::new(DataModel::Single, 60),
            recs.clone(),
            &mut ra,
        );
        let mut b = Batcher::with_group_window(DataModel::Single, 60, 1_000);
        let grouped = all_requests(&mut b, recs, &mut rw);
        // The same records (nudged alike: admitted in arrival order).
        assert_eq!(records_by_line(&arrival), records_by_line(&grouped));
        assert_eq!(ra.nudged, rw.nudged);
        assert!(rw.nudged > 0);
        assert_eq!((ra.records, rw.records), (2_345, 2_345));
        // Numbered in order, ≤ 100 records, 1,000-record windows sorted.
        assert!(grouped.iter().enumerate().all(|(i, q)| q.seq == i as u64));
        assert!(grouped.iter().all(|q| q.records.len() <= 100));
        assert_eq!(grouped.len(), 24);
        let flat: Vec<&Record> = grouped.iter().flat_map(|q| &q.records).collect();
        for w in flat.chunks(1_000) {
            assert!(w.windows(2).all(|p| group_order(p[0], p[1]).is_le()));
            // Stable: one series keeps its arrival order.
            assert!(w
                .windows(2)
                .all(|p| { group_order(p[0], p[1]).is_ne() || p[0].lines[0] < p[1].lines[0] }));
        }
        // The report's estimate is the sum over the requests handed out.
        assert_eq!(rw.estimated_write_bytes, units(&grouped));
        assert_eq!(rw.batches, grouped.len() as u64);
        let (g, a) = (units(&grouped), units(&arrival));
        assert!(g * 4 < a * 3, "{g} vs {a}");
    }

    #[test]
    fn small_windows_keep_arrival_order() {
        let recs = interleaved(450, 5);
        let mut rep = RunReport::default();
        let want = all_requests(
            &mut Batcher::new(DataModel::Multi, 60),
            recs.clone(),
            &mut rep,
        );
        for w in [0, 1, 100] {
            let mut b = Batcher::with_group_window(DataModel::Multi, 60, w);
            assert_eq!(
                all_requests(&mut b, recs.clone(), &mut RunReport::default()),
                want
            );
        }
        assert_eq!(want.len(), 5);
        assert_eq!(want[0].records[0].lines, [1]);
    }

    /// Memory stays flat: never more than a window of records held, and
    /// every record pushed is either held or in a request handed out.
    #[test]
    fn a_window_bounds_what_is_held() {
        let mut b = Batcher::with_group_window(DataModel::Single, 60, 500);
        let mut rep = RunReport::default();
        let mut sent = 0;
        for (i, r) in interleaved(5_000, 7).into_iter().enumerate() {
            let waiting = !b.ready.is_empty();
            let got = b.push(r, &mut rep);
            assert!(got.is_some() || !waiting, "at {i}: sorted records wait");
            sent += got.map_or(0, |q| q.records.len());
            assert!(b.pending.len() + b.ready.len() <= 500, "at {i}");
            assert_eq!(sent + b.pending.len() + b.ready.len(), i + 1, "at {i}");
        }
    }

    /// Stopped anywhere (the batcher serialised and restored, as in a
    /// checkpoint), the rest of the requests are those of one run.
    #[test]
    fn a_restored_window_goes_on_alike() {
        let recs = interleaved(1_234, 9);
        let fresh = || Batcher::with_group_window(DataModel::Multi, 60, 300);
        let want = all_requests(&mut fresh(), recs.clone(), &mut RunReport::default());
        for cut in [0, 1, 99, 299, 300, 301, 650, 1_233, 1_234] {
            let mut b = fresh();
            let mut rep = RunReport::default();
            let mut got: Vec<WriteRequest> = recs[..cut]
                .iter()
                .filter_map(|r| b.push(r.clone(), &mut rep))
                .collect();
            let json = serde_json::to_string(&b).unwrap();
            let mut back: Batcher = serde_json::from_str(&json).unwrap();
            got.extend(all_requests(&mut back, recs[cut..].to_vec(), &mut rep));
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn common_attributes_and_estimate() {
        let recs = vec![
            rec(&[("a", "1"), ("b", "x")], 1, "1"),
            rec(&[("a", "1"), ("b", "y")], 2, "2"),
        ];
        let req = build_request(0, DataModel::Single, recs);
        assert_eq!(
            req.common_dimensions,
            vec![Dimension {
                name: "a".into(),
                value: "1".into()
            }]
        );
        assert_eq!(req.common_measure_name.as_deref(), Some("m"));
        // common: a1 (2) + m (1); records: 2 × (8 + "bx"/"by" 2 + 8)
        assert_eq!(estimate_write_bytes(&req), (3 + 2 * 18, 1024));
    }
}
