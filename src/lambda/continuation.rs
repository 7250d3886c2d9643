//! Continuations: the rest of an object, handed to a new invocation as a
//! small event that pins the exact object version.

use super::event::{Continuation, ContinuationEvent};
use crate::core::report::RunReport;
use crate::sources::ObjectRef;

/// The event that continues `object` from request `next` on, carrying the
/// writer-side counters of `report` (the conversion side is recomputed by
/// re-reading, so nothing is counted twice).
pub fn continuation_event(
    object: &ObjectRef,
    next: u64,
    attempt: u32,
    report: &RunReport,
) -> ContinuationEvent {
    let mut carried = RunReport::default();
    carried.add_carried(report);
    ContinuationEvent {
        continuation: Continuation {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: object.version_id.clone(),
            etag: object.etag.clone(),
            skip_batches: next,
            attempt,
            carried,
        },
    }
}
