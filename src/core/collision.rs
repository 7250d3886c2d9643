//! Collision nudging, shared by every sink: no two records of one series
//! at one time with different values leave the core. Each sink says what
//! a series is for it (Timestream: dimensions + measure name; InfluxDB:
//! measurement + tag set) by the hashes it passes in.

use crate::core::model::Record;
use crate::core::report::RunReport;

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
    seen: std::collections::HashMap<u64, u64, crate::core::hash::FnvBuild>,
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

    /// Admits a record at `r.time_ns` with the sink's notion of a series
    /// (what must differ for two records at one time to coexist) and of
    /// its value; moves `r.time_ns` if needed.
    pub fn admit(&mut self, r: &mut Record, series: u64, value: u64, report: &mut RunReport) {
        let floor = self
            .max_time
            .saturating_sub(self.window_ns)
            .max(self.forgotten_before);
        if self.max_time != i64::MIN && r.time_ns < floor {
            report.collision_window_misses += 1;
            return;
        }
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
