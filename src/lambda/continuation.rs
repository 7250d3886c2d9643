//! Continuations: the rest of an object, handed to a new invocation as a
//! small event that pins the exact object version.

use super::event::{Continuation, ContinuationEvent, StoredObject};
use crate::core::report::RunReport;
use crate::sources::ObjectRef;

/// The event that continues `object` from request `next` on (from
/// `checkpoint` when there is one), carrying the writer-side counters of
/// `report` (the conversion side is in the checkpoint, or recomputed by
/// re-reading: nothing is counted twice).
pub fn continuation_event(
    object: &ObjectRef,
    next: u64,
    checkpoint: Option<StoredObject>,
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
            checkpoint,
            attempt,
            carried,
        },
    }
}

/// Where the checkpoint that link `attempt` of `object`'s chain starts from
/// is stored: under `prefix` (which the function's trigger never matches),
/// by source bucket, key and the pinned version (or ETag), so two versions
/// of one key never share a checkpoint.
pub fn checkpoint_key(prefix: &str, object: &ObjectRef, attempt: u32) -> String {
    let pin = object
        .version_id
        .as_deref()
        .map(|v| format!("v-{v}"))
        .or_else(|| object.etag.as_deref().map(|e| format!("e-{e}")))
        .unwrap_or_else(|| "unpinned".to_owned());
    format!(
        "{prefix}{}/{}/{pin}/link-{attempt}.ckpt",
        object.bucket, object.key
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_keys_name_the_object_version_and_link() {
        let mut o = ObjectRef {
            bucket: "b".into(),
            key: "k6-results/run 1.json.gz".into(),
            version_id: None,
            etag: Some("abc-2".into()),
        };
        let p = "k6-timestream-state/";
        assert_eq!(
            checkpoint_key(p, &o, 3),
            "k6-timestream-state/b/k6-results/run 1.json.gz/e-abc-2/link-3.ckpt"
        );
        o.version_id = Some("v1".into());
        assert_eq!(
            checkpoint_key(p, &o, 1),
            "k6-timestream-state/b/k6-results/run 1.json.gz/v-v1/link-1.ckpt"
        );
        o.version_id = None;
        o.etag = None;
        assert!(checkpoint_key(p, &o, 1).ends_with("/unpinned/link-1.ckpt"));
    }
}
