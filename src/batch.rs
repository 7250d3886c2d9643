//! Records → WriteRecords requests: collision nudging, ≤100-record batches,
//! CommonAttributes, metered-size estimate.
//!
//! Batching is a pure function of the record sequence: request N of an input
//! is always the same request, which is what lets the Lambda resume a large
//! object by re-reading it and skipping the requests already confirmed.

use crate::convert::FNV_OFFSET;
use crate::model::{limits, DataModel, Dimension, Record, Values, WriteRequest};
use crate::report::RunReport;

/// Default span of record times kept for collision detection.
pub const DEFAULT_COLLISION_WINDOW_SECS: u64 = 60;

/// At most this many records are remembered for collision detection
/// (~35 bytes each: ≤ 14 MB), whatever the rate: at 1000 requests/s that is
/// ~130 s of the multi model or ~30 s of the single model.
pub const MAX_REMEMBERED: usize = 400_000;

/// Makes sure no two records share dimensions, measure name and time with
/// different values (Timestream rejects the second one). Real k6 output has
/// such pairs even at ns precision (two requests of one VU finishing in the
/// same clock tick with identical tags). The later record moves by +1 ns, as
/// often as needed; identical records are left alone (Timestream treats them
/// as duplicates).
///
/// Trade-off: memory must not grow with the input, so only records within
/// `window` of the newest time seen, and at most [`MAX_REMEMBERED`], are
/// remembered. Colliding points come from one VU's one request or
/// iteration and are written within moments of each other, and k6 writes
/// samples in roughly time order (a sample can lag by its request's
/// duration, at most k6's 60 s default timeout), so a 60 s window catches
/// every real collision; a record older than what is remembered is counted
/// as `collision_window_misses` rather than checked.
pub struct CollisionGuard {
    window_ns: i64,
    max_time: i64,
    /// Records up to this time may have been forgotten (count cap).
    forgotten_before: i64,
    /// key(time, series) → value hash of the remembered records.
    seen: std::collections::HashMap<u64, u64, crate::convert::FnvBuild>,
    /// (time, key) in arrival order, for eviction. k6 output is nearly
    /// time-ordered, so evicting from the front by time frees what left
    /// the window; a slightly late key is evicted slightly late (safe).
    order: std::collections::VecDeque<(i64, u64)>,
}

/// One u64 for (time, series): equal inputs give equal keys (no missed
/// conflict); unequal inputs that happen to collide cost at most a
/// needless +1 ns.
fn slot_key(time_ns: i64, series: u64) -> u64 {
    let mut h = series ^ (time_ns as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 32;
    h = h.wrapping_mul(0xd6e8_feb8_6659_fd93);
    h ^ (h >> 32)
}

impl CollisionGuard {
    pub fn new(window_secs: u64) -> Self {
        Self {
            window_ns: i64::try_from(window_secs)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000_000),
            max_time: i64::MIN,
            forgotten_before: i64::MIN,
            seen: Default::default(),
            order: Default::default(),
        }
    }

    /// Records currently remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn hashes(r: &Record) -> (u64, u64) {
        let mut s = FNV_OFFSET;
        for d in &r.dimensions {
            s = wide_hash(d.name.as_bytes(), s);
            s = wide_hash(d.value.as_bytes(), s ^ 0xff);
        }
        s = wide_hash(r.measure_name.as_bytes(), s);
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
        (s, v)
    }

    /// Adjusts `r.time_ns` if needed.
    pub fn admit(&mut self, r: &mut Record, report: &mut RunReport) {
        let floor = self
            .max_time
            .saturating_sub(self.window_ns)
            .max(self.forgotten_before);
        if self.max_time != i64::MIN && r.time_ns < floor {
            report.collision_window_misses += 1;
            return;
        }
        let (series, value) = Self::hashes(r);
        let original = r.time_ns;
        // +1 ns steps; at the last representable nanosecond (year 2262)
        // there is no later one, so search downwards from the original.
        let mut step: i64 = 1;
        let mut moved = false;
        loop {
            let key = slot_key(r.time_ns, series);
            match self.seen.get(&key) {
                None => {
                    self.seen.insert(key, value);
                    self.order.push_back((r.time_ns, key));
                    break;
                }
                Some(v) if *v == value => {
                    report.identical_duplicates += 1;
                    report.identical_duplicate_measures += r.measure_count();
                    break;
                }
                Some(_) => {
                    moved = true;
                    match r.time_ns.checked_add(step) {
                        Some(t) => r.time_ns = t,
                        None => {
                            step = -1;
                            r.time_ns = original - 1;
                        }
                    }
                }
            }
        }
        if moved {
            report.nudged += 1;
        }
        if r.time_ns > self.max_time {
            self.max_time = r.time_ns;
            let floor = self.max_time.saturating_sub(self.window_ns);
            while let Some(&(t, k)) = self.order.front() {
                if t >= floor {
                    break;
                }
                self.order.pop_front();
                self.seen.remove(&k);
            }
        }
        while self.order.len() > MAX_REMEMBERED {
            let (t, k) = self.order.pop_front().expect("non-empty");
            self.seen.remove(&k);
            self.forgotten_before = self.forgotten_before.max(t.saturating_add(1));
        }
    }
}

/// A fast, platform-independent 64-bit hash, 8 bytes per step (FxHash's
/// mixing with the length folded in). Only used for collision keys in
/// memory, never persisted: speed matters (one per record), and a false
/// "same series" costs at most an unneeded +1 ns.
fn wide_hash(bytes: &[u8], seed: u64) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let mut h = mix(seed, bytes.len() as u64);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().unwrap()));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(buf));
    }
    // Final avalanche so nearby inputs spread over the hash map.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
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

/// Groups records into requests of at most 100.
pub struct Batcher {
    model: DataModel,
    seq: u64,
    pending: Vec<Record>,
    guard: CollisionGuard,
}

impl Batcher {
    pub fn new(model: DataModel, collision_window_secs: u64) -> Self {
        Self {
            model,
            seq: 0,
            pending: Vec::with_capacity(limits::MAX_RECORDS_PER_REQUEST),
            guard: CollisionGuard::new(collision_window_secs),
        }
    }

    /// Adds a record; returns a request when one is full.
    pub fn push(&mut self, mut r: Record, report: &mut RunReport) -> Option<WriteRequest> {
        self.guard.admit(&mut r, report);
        report.records += 1;
        self.pending.push(r);
        if self.pending.len() == limits::MAX_RECORDS_PER_REQUEST {
            Some(self.take(report))
        } else {
            None
        }
    }

    /// The last, partial request.
    pub fn finish(&mut self, report: &mut RunReport) -> Option<WriteRequest> {
        (!self.pending.is_empty()).then(|| self.take(report))
    }

    fn take(&mut self, report: &mut RunReport) -> WriteRequest {
        let records = std::mem::replace(
            &mut self.pending,
            Vec::with_capacity(limits::MAX_RECORDS_PER_REQUEST),
        );
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
        common.retain(|d| r.dimensions.binary_search(d).is_ok());
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
        }
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
            g.admit(r, &mut rep);
        }
        assert_eq!(
            [a.time_ns, b.time_ns, c.time_ns, d.time_ns, e.time_ns],
            [10, 11, 10, 12, 10]
        );
        assert_eq!(rep.nudged, 2);
    }

    #[test]
    fn count_cap_bounds_memory_and_reports_what_it_cannot_check() {
        let mut g = CollisionGuard::new(u64::MAX);
        let mut rep = RunReport::default();
        for i in 0..(MAX_REMEMBERED as i64 + 1000) {
            let mut r = rec(&[("a", "1")], i, "1");
            g.admit(&mut r, &mut rep);
        }
        assert_eq!(g.len(), MAX_REMEMBERED);
        assert_eq!(rep.collision_window_misses, 0);
        let mut old = rec(&[("a", "1")], 5, "2");
        g.admit(&mut old, &mut rep);
        assert_eq!(
            rep.collision_window_misses, 1,
            "a forgotten slot is not silently trusted"
        );
        let mut recent = rec(&[("a", "1")], MAX_REMEMBERED as i64 + 999, "2");
        g.admit(&mut recent, &mut rep);
        assert_eq!(recent.time_ns, MAX_REMEMBERED as i64 + 1000, "still nudged");
    }

    #[test]
    fn window_bounds_memory() {
        let mut g = CollisionGuard::new(1);
        let mut rep = RunReport::default();
        for i in 0..10_000i64 {
            let mut r = rec(&[("a", "1")], i * 10_000_000, "1");
            g.admit(&mut r, &mut rep);
        }
        assert!(g.len() <= 101, "{}", g.len());
        let mut late = rec(&[("a", "1")], 0, "2");
        g.admit(&mut late, &mut rep);
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
