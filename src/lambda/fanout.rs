//! Fan-out of a big object over parallel invocations, the decisions pure
//! (see [`crate::core::segment`] for why the segments' records are those
//! of one serial run).
//!
//! 1. The invocation S3 triggered sees an object whose estimated
//!    uncompressed size exceeds `K6TS_SEGMENT_BYTES` ([`fans_out`]): it
//!    reads the object once, only inflating and indexing, stores the
//!    [`StoredPlan`] under the state prefix ([`index_key`]) and starts
//!    the first `K6TS_MAX_PARALLEL` segments ([`first_wave`]), each an
//!    async self-invocation with a segment event.
//! 2. A segment reads its range (a ranged GetObject from its look-back
//!    start's access point), writes the records it owns, stores its
//!    report ([`segment_report_key`]) and starts its successor
//!    ([`successor`]): segment `k` hands out `k + K`, so at most `K` run
//!    at once and each is started by exactly one predecessor — no
//!    scheduler, no shared counter.
//! 3. Whichever segment finds every report stored (each segment's parts
//!    from its start to its end: [`next_part`]) claims the set with a
//!    conditional put of the [`done_key`] marker (`If-None-Match: *`: of
//!    two segments finishing together exactly one wins), merges the
//!    reports, emits the object's metric line and deletes the state.
//!
//! A segment whose time runs out (the deadline margin, or the work
//! budget) wraps up at its next hard break, stores its report for the
//! lines it stood for, and hands the rest to a *part* of the same segment
//! ([`segment_part_event`]): the same read start, a later nominal start
//! (see [`crate::core::segment::run_segment`]). A slow sink (throttling)
//! therefore slows a segment down but does not make it fail. The part
//! re-reads the segment's earlier lines to warm its collision guard:
//! converting is an order of magnitude faster than writing, and it
//! happens only when time ran out. At most `K6TS_MAX_CONTINUATIONS`
//! later parts per segment ([`may_continue_part`]); past that the segment is
//! reported failed. A segment that fails for another reason is retried
//! by Lambda's async retries; a failed segment's report names its lines,
//! the set is then merged as `failed`, the index and reports are kept,
//! and invoking the function with that segment's event again re-runs it
//! alone and completes the set.

use super::event::{SegmentEvent, SegmentTask, StoredObject};
use crate::core::input::InputPosition;
use crate::core::k6::MetricKind;
use crate::core::report::RunReport;
use crate::core::segment::{self, Index, MetricSeen, SegmentSpec};
use crate::sources::ObjectRef;
use serde::{Deserialize, Serialize};

/// Whether an object of `size` bytes (None: unknown) is fanned out:
/// only an original event (not a continuation or a segment), only when
/// its estimated uncompressed size exceeds `segment_bytes`. An unknown
/// size runs serially (continuations carry it as far as it goes).
pub fn fans_out(original: bool, size: Option<u64>, gzip: bool, segment_bytes: u64) -> bool {
    original && size.is_some_and(|s| segment::estimated_uncompressed(s, gzip) > segment_bytes)
}

/// The segments the fanning invocation starts itself.
pub fn first_wave(segments: u32, max_parallel: u32) -> std::ops::Range<u32> {
    0..segments.min(max_parallel.max(1))
}

/// The segment `number` starts when it is done: the one `max_parallel`
/// after it (the first wave started `0..max_parallel`, so every segment
/// has exactly one starter), None past the last.
pub fn successor(number: u32, segments: u32, max_parallel: u32) -> Option<u32> {
    let next = number.checked_add(max_parallel.max(1))?;
    (next < segments).then_some(next)
}

/// The order in which a finishing segment looks for the others' reports:
/// the segments started last first (the most likely missing), so an
/// incomplete set is found so after a read or two.
pub fn probe_order(segments: u32, me: u32) -> impl Iterator<Item = u32> {
    (0..segments).rev().filter(move |k| *k != me)
}

/// The state directory of an object's fan-out: under the state prefix, by
/// bucket, key and pinned version (or ETag), like checkpoints.
pub fn state_dir(prefix: &str, object: &ObjectRef) -> String {
    let pin = object
        .version_id
        .as_deref()
        .map(|v| format!("v-{v}"))
        .or_else(|| object.etag.as_deref().map(|e| format!("e-{e}")))
        .unwrap_or_else(|| "unpinned".to_owned());
    format!("{prefix}{}/{}/{pin}/fanout/", object.bucket, object.key)
}

pub fn index_key(prefix: &str, object: &ObjectRef) -> String {
    format!("{}index.json", state_dir(prefix, object))
}

pub fn segment_report_key(index_key: &str, number: u32) -> String {
    format!("{}segments/{number}.json", dir_of(index_key))
}

pub fn done_key(index_key: &str) -> String {
    format!("{}done", dir_of(index_key))
}

/// The directory of the index key, with its trailing `/`.
fn dir_of(index_key: &str) -> &str {
    index_key.rfind('/').map_or("", |i| &index_key[..=i])
}

/// The event that runs segment `number` of `object` (pinned).
pub fn segment_event(object: &ObjectRef, index: &StoredObject, number: u32) -> SegmentEvent {
    SegmentEvent {
        segment: SegmentTask {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: object.version_id.clone(),
            etag: object.etag.clone(),
            index: index.clone(),
            number,
            start_line: None,
            part: 0,
        },
    }
}

/// The event that runs the next part of segment `number`, from nominal
/// line `start_line` on (part `part`, counting from 0).
pub fn segment_part_event(
    object: &ObjectRef,
    index: &StoredObject,
    number: u32,
    start_line: u64,
    part: u32,
) -> SegmentEvent {
    let mut ev = segment_event(object, index, number);
    ev.segment.start_line = Some(start_line);
    ev.segment.part = part;
    ev
}

/// The key of a segment part's report: the segment's own key for its
/// first part (or a segment that never split), else one per start line.
pub fn part_report_key(
    index_key: &str,
    number: u32,
    start_line: u64,
    planned_start: u64,
) -> String {
    if start_line == planned_start {
        segment_report_key(index_key, number)
    } else {
        format!("{}segments/{number}@{start_line}.json", dir_of(index_key))
    }
}

/// Where the stored parts of a segment (planned to end at `planned_end`)
/// go on: the start line of the part after `stored`, None when `stored`
/// reaches the segment's end.
pub fn next_part(stored: &StoredReport, planned_end: Option<u64>) -> Option<u64> {
    match (stored.end_line, planned_end) {
        (Some(e), p) if Some(e) != p => Some(e),
        _ => None,
    }
}

/// Whether a segment part wraps up now: `owned_for` since it reached its
/// own lines, `to_hard_stop` left before the hard stop; at the hard stop,
/// or once a work budget (zero: none) has passed.
pub fn wrap_up_now(
    owned_for: std::time::Duration,
    to_hard_stop: std::time::Duration,
    work_budget: std::time::Duration,
) -> bool {
    to_hard_stop.is_zero() || (!work_budget.is_zero() && owned_for >= work_budget)
}

/// Whether a segment may go on in its part number `next` (its first run
/// is part 0): at most `K6TS_MAX_CONTINUATIONS` later parts, like the
/// continuations of a whole object. A sink so slow that a segment needs
/// more is better failed, named and re-run with smaller segments than
/// chained on and on.
pub fn may_continue_part(next: u32, max_later_parts: u32) -> bool {
    next <= max_later_parts
}

/// What follows a segment part that ran without a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterPart {
    /// It reached the segment's end: store its report as ending there.
    Done,
    /// It wrapped up early: the next part starts at this line.
    GoOn(u64),
    /// It wrapped up early once too often: the segment fails.
    TooManyParts,
}

/// The decision after part `part` (0: the segment's first run) of a
/// segment planned to end at `planned_end`, which stood for the lines up
/// to `ended_at` and was `complete`.
pub fn after_part(
    complete: bool,
    ended_at: Option<u64>,
    planned_end: Option<u64>,
    part: u32,
    max_parts: u32,
) -> AfterPart {
    match ended_at {
        Some(e) if complete && ended_at != planned_end => {
            if may_continue_part(part + 1, max_parts) {
                AfterPart::GoOn(e)
            } else {
                AfterPart::TooManyParts
            }
        }
        _ => AfterPart::Done,
    }
}

/// The index and plan as stored for the segments (JSON; a gzip access
/// point's 32 KiB window as hex, so ~64 KiB a segment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPlan {
    /// The object's URL (a plan of another object is refused).
    pub input: String,
    /// Fixed at fan-out: every segment hands out successors alike.
    pub max_parallel: u32,
    pub lines: u64,
    pub bytes: u64,
    /// What the index pass read and inflated (counted in the merged
    /// report's chain totals).
    pub index_bytes_read: u64,
    pub index_bytes_decompressed: u64,
    pub metrics: Vec<StoredMetric>,
    pub segments: Vec<StoredSegment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMetric {
    pub line: u64,
    pub name: String,
    #[serde(default)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSegment {
    pub number: u32,
    pub start_line: u64,
    #[serde(default)]
    pub end_line: Option<u64>,
    #[serde(default)]
    pub end_offset: Option<u64>,
    /// The position its reading starts from (hex of
    /// [`InputPosition::to_bytes`]); None: the object's start.
    #[serde(default)]
    pub from: Option<String>,
}

/// Why a stored plan cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the plan is not valid JSON: {0}")]
    Json(String),
    #[error("the plan has no segment {0}")]
    NoSuchSegment(u32),
    #[error("segment {0}: its start position is damaged: {1}")]
    Position(u32, String),
    #[error("the plan is of {0}, not of this object")]
    OtherObject(String),
}

impl StoredPlan {
    pub fn new(input: String, index: &Index, specs: &[SegmentSpec], max_parallel: u32) -> Self {
        StoredPlan {
            input,
            max_parallel,
            lines: index.lines,
            bytes: index.bytes,
            index_bytes_read: 0,
            index_bytes_decompressed: 0,
            metrics: index
                .metrics
                .iter()
                .map(|m| StoredMetric {
                    line: m.line,
                    name: m.name.clone(),
                    kind: m.kind.map(|k| k.as_str().to_owned()),
                })
                .collect(),
            segments: specs
                .iter()
                .map(|s| StoredSegment {
                    number: s.number,
                    start_line: s.start_line,
                    end_line: s.end_line,
                    end_offset: s.end_offset,
                    from: segment::position(index, &index.candidates[s.read_from])
                        .map(|p| hex(&p.to_bytes())),
                })
                .collect(),
        }
    }

    pub fn decode(bytes: &[u8], input: &str) -> Result<Self, PlanError> {
        let p: StoredPlan =
            serde_json::from_slice(bytes).map_err(|e| PlanError::Json(e.to_string()))?;
        if p.input != input {
            return Err(PlanError::OtherObject(p.input));
        }
        Ok(p)
    }

    pub fn segment_count(&self) -> u32 {
        self.segments.len() as u32
    }

    /// The metric list the converter of a segment starts from.
    pub fn metric_list(&self) -> Vec<MetricSeen> {
        self.metrics
            .iter()
            .map(|m| MetricSeen {
                line: m.line,
                name: m.name.clone(),
                kind: m.kind.as_deref().and_then(MetricKind::parse),
            })
            .collect()
    }

    /// Segment `number`'s spec and start position. The spec's
    /// `read_from` is meaningless here (the position stands for it).
    pub fn segment(&self, number: u32) -> Result<(SegmentSpec, Option<InputPosition>), PlanError> {
        let s = self
            .segments
            .get(number as usize)
            .filter(|s| s.number == number)
            .ok_or(PlanError::NoSuchSegment(number))?;
        let from = match &s.from {
            None => None,
            Some(h) => {
                let bytes =
                    unhex(h).ok_or_else(|| PlanError::Position(number, "not hex".into()))?;
                Some(
                    InputPosition::from_bytes(&bytes)
                        .map_err(|e| PlanError::Position(number, e.to_string()))?,
                )
            }
        };
        Ok((
            SegmentSpec {
                number,
                start_line: s.start_line,
                end_line: s.end_line,
                end_offset: s.end_offset,
                read_from: 0,
            },
            from,
        ))
    }
}

/// A segment's stored report: the report and the lines it stands for
/// (for the message naming a failed segment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReport {
    pub number: u32,
    pub start_line: u64,
    #[serde(default)]
    pub end_line: Option<u64>,
    pub report: RunReport,
}

/// The message of a merged set with failed segments: each with its line
/// range and error, and how to re-run it.
pub fn failed_segments_message(parts: &[StoredReport]) -> Option<String> {
    let failed: Vec<String> = parts
        .iter()
        .filter(|p| !p.report.complete)
        .map(|p| {
            let end = p
                .end_line
                .map_or_else(|| "end".to_owned(), |e| (e - 1).to_string());
            format!(
                "segment {} (lines {}-{end}): {}",
                p.number,
                p.start_line,
                p.report.error.as_deref().unwrap_or("incomplete")
            )
        })
        .collect();
    (!failed.is_empty()).then(|| {
        format!(
            "{} of {} segments failed: {}; re-run one by invoking the function with its segment event (the state is kept)",
            failed.len(),
            parts.len(),
            failed.join("; ")
        )
    })
}

fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[usize::from(x >> 4)] as char);
        s.push(D[usize::from(x & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|c| {
            let d = |x: u8| (x as char).to_digit(16);
            Some((d(c[0])? * 16 + d(c[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_objects_fan_out() {
        const G: u64 = 1 << 30;
        // (original, size, gzip, segment_bytes) → fans out
        type Row = ((bool, Option<u64>, bool, u64), bool);
        let rows: &[Row] = &[
            ((true, Some(3 * G), false, 2 * G), true),
            ((true, Some(2 * G), false, 2 * G), false),
            // gzip: estimated ×12.
            ((true, Some(G / 4), true, 2 * G), true),
            ((true, Some(G / 8), true, 2 * G), false),
            ((true, Some(G / 4), false, 2 * G), false),
            // Continuations and segments never fan out again.
            ((false, Some(100 * G), true, 2 * G), false),
            // An unknown size runs serially.
            ((true, None, true, 1), false),
            ((true, Some(0), true, 1), false),
        ];
        for &((original, size, gzip, seg), want) in rows {
            assert_eq!(
                fans_out(original, size, gzip, seg),
                want,
                "{original} {size:?} {gzip} {seg}"
            );
        }
    }

    #[test]
    fn waves_and_successors_start_each_segment_once() {
        // (segments, max_parallel) → first wave
        for (n, k, want) in [(10, 4, 0..4), (3, 8, 0..3), (1, 1, 0..1), (5, 0, 0..1)] {
            assert_eq!(first_wave(n, k), want, "{n} {k}");
        }
        type Row = ((u32, u32, u32), Option<u32>);
        let rows: &[Row] = &[
            ((0, 10, 4), Some(4)),
            ((5, 10, 4), Some(9)),
            ((6, 10, 4), None),
            ((9, 10, 4), None),
            ((0, 1, 8), None),
            ((2, 3, 1), None),
            ((1, 3, 1), Some(2)),
            ((u32::MAX - 1, u32::MAX, 8), None),
        ];
        for &((me, n, k), want) in rows {
            assert_eq!(successor(me, n, k), want, "{me} {n} {k}");
        }
        // Every segment has exactly one starter, at most k chains run.
        for n in 1..30u32 {
            for k in 1..10u32 {
                let mut started: Vec<u32> = first_wave(n, k).collect();
                started.extend((0..n).filter_map(|m| successor(m, n, k)));
                started.sort_unstable();
                assert_eq!(started, (0..n).collect::<Vec<_>>(), "{n} {k}");
            }
        }
    }

    #[test]
    fn a_segment_is_stored_when_its_parts_reach_its_end() {
        let part = |start: u64, end: Option<u64>| StoredReport {
            number: 2,
            start_line: start,
            end_line: end,
            report: RunReport::default(),
        };
        // Planned lines 100..200: a part ending at 150 goes on there.
        assert_eq!(next_part(&part(100, Some(150)), Some(200)), Some(150));
        assert_eq!(next_part(&part(150, Some(200)), Some(200)), None);
        // The last segment: a part with an end goes on, one without is it.
        assert_eq!(next_part(&part(100, Some(180)), None), Some(180));
        assert_eq!(next_part(&part(180, None), None), None);
        let idx = "p/b/k/v-1/fanout/index.json";
        assert_eq!(
            part_report_key(idx, 2, 100, 100),
            "p/b/k/v-1/fanout/segments/2.json"
        );
        assert_eq!(
            part_report_key(idx, 2, 150, 100),
            "p/b/k/v-1/fanout/segments/2@150.json"
        );
        let s = std::time::Duration::from_secs;
        assert!(!wrap_up_now(s(5), s(55), s(10)));
        assert!(wrap_up_now(s(10), s(50), s(10)), "the budget");
        assert!(wrap_up_now(s(3), s(0), s(10)), "the hard stop");
        assert!(!wrap_up_now(s(500), s(1), s(0)), "no budget");
        assert!(may_continue_part(1, 50) && may_continue_part(50, 50));
        use AfterPart::*;
        for (complete, ended, planned, part, max, want) in [
            (true, Some(200), Some(200), 0, 50, Done),
            (true, None, None, 3, 50, Done),
            (true, Some(150), Some(200), 0, 50, GoOn(150)),
            (true, Some(150), None, 0, 50, GoOn(150)),
            (true, Some(150), Some(200), 49, 50, GoOn(150)),
            (true, Some(150), Some(200), 50, 50, TooManyParts),
            (true, Some(150), Some(200), 0, 0, TooManyParts),
            // An incomplete part is the caller's failure, not a next part.
            (false, Some(150), Some(200), 0, 50, Done),
        ] {
            assert_eq!(
                after_part(complete, ended, planned, part, max),
                want,
                "{complete} {ended:?} {planned:?} {part}"
            );
        }
        assert!(!may_continue_part(51, 50) && !may_continue_part(1, 0));
        assert_eq!(probe_order(4, 1).collect::<Vec<_>>(), [3, 2, 0]);
        assert_eq!(probe_order(1, 0).count(), 0);
    }

    #[test]
    fn state_keys_live_under_the_prefix_by_version() {
        let mut o = ObjectRef {
            bucket: "b".into(),
            key: "k6-results/run 1.json.gz".into(),
            version_id: None,
            etag: Some("abc-2".into()),
        };
        let p = "k6-timestream-state/";
        let ix = index_key(p, &o);
        assert_eq!(
            ix,
            "k6-timestream-state/b/k6-results/run 1.json.gz/e-abc-2/fanout/index.json"
        );
        assert_eq!(
            segment_report_key(&ix, 3),
            "k6-timestream-state/b/k6-results/run 1.json.gz/e-abc-2/fanout/segments/3.json"
        );
        assert_eq!(
            done_key(&ix),
            "k6-timestream-state/b/k6-results/run 1.json.gz/e-abc-2/fanout/done"
        );
        o.version_id = Some("v1".into());
        assert!(index_key(p, &o).contains("/v-v1/fanout/"));
        assert_eq!(segment_report_key("index.json", 0), "segments/0.json");
    }

    #[test]
    fn hex_round_trips() {
        let b: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&b)).unwrap(), b);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn failed_segments_are_named_with_their_lines() {
        let part = |number, start_line, end_line, complete, error: Option<&str>| StoredReport {
            number,
            start_line,
            end_line,
            report: RunReport {
                complete,
                error: error.map(str::to_owned),
                ..Default::default()
            },
        };
        assert_eq!(
            failed_segments_message(&[part(0, 1, Some(10), true, None)]),
            None
        );
        let m = failed_segments_message(&[
            part(0, 1, Some(10), true, None),
            part(1, 10, Some(20), false, Some("boom")),
            part(2, 20, None, false, None),
        ])
        .unwrap();
        assert!(
            m.starts_with(
                "2 of 3 segments failed: segment 1 (lines 10-19): boom; segment 2 (lines 20-end): incomplete"
            ),
            "{m}"
        );
    }
}
