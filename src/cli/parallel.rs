//! `ingest --parallel N`: one input (a local file or an S3 object, both
//! behind [`ObjectSource`]) indexed once, cut into N segments (see
//! [`crate::core::segment`]) written concurrently by this process, each
//! with its own encoder and reading only its range of the input.
//!
//! The steps and decisions are the Lambda fan-out's: one streaming read
//! that only inflates and records candidate starts ([`segment::index`]),
//! the plan ([`segment::plan_index`] with [`segment::default_lookback`]),
//! the check that the gzip stream has access points near the cuts
//! ([`segment::worth_fanning_out`]), then per segment a ranged read from
//! [`segment::source_offset`]. What differs is only the engine: tasks of
//! this process instead of async invocations, and N segments instead of
//! segments of `K6TS_SEGMENT_BYTES`.
//!
//! Every read after the index pass is pinned to what the index pass read
//! (the S3 object's version, else its ETag with `If-Match`; a file's
//! length and modification time). Every segment is opened before any of
//! them writes: an input replaced since the index pass is an error before
//! anything is written ([`ParallelError::Replaced`]), never a mix of two
//! versions' records. (An S3 GET serves one version to its end; a local
//! file rewritten in place while the segments read it is not detected, see
//! [`LocalFiles`].)

use crate::core::input::InputOptions;
use crate::core::pipeline::{Encoder, PipelineOptions};
use crate::core::report::RunReport;
use crate::core::segment;
use crate::ingest::{ingest_segment, Live, Sink};
use crate::sinks::dead_letter::DeadLetterSink;
use crate::sinks::driver::WriterConfig;
use crate::sinks::{Request, Service};
use crate::sources::local::LocalFiles;
use crate::sources::s3::S3Source;
use crate::sources::{ObjectRef, ObjectSource, OpenedObject, SourceError};
use std::sync::Arc;

/// Read buffer of the index pass and of each segment.
const READ_BUFFER: usize = 256 * 1024;

/// Why a parallel run could not start.
#[derive(Debug, thiserror::Error)]
pub enum ParallelError {
    /// Opening the input (or a range of it) failed.
    #[error("{0}")]
    Open(SourceError),
    #[error("indexing {name}: {source}")]
    Index {
        name: String,
        source: segment::IndexError,
    },
    /// The input is no longer what the index pass read: nothing was
    /// written.
    #[error(
        "{name}: {what} changed after the index pass (before {part} was read): nothing was written; run the ingest again (it indexes the new version)"
    )]
    Replaced {
        name: String,
        /// "the object" or "the file".
        what: &'static str,
        /// "segment 3 of 4", or "the serial run" (input that is not cut).
        part: String,
    },
}

/// What `--parallel` reads from: a local file or an S3 object, one code
/// path ([`run`] is generic over [`ObjectSource`]; this enum lets the CLI
/// pick one at run time).
#[derive(Clone)]
pub enum Source {
    Local(LocalFiles),
    S3(S3Source),
}

impl ObjectSource for Source {
    async fn open(&self, obj: &ObjectRef) -> Result<OpenedObject, SourceError> {
        match self {
            Source::Local(s) => s.open(obj).await,
            Source::S3(s) => s.open(obj).await,
        }
    }

    async fn open_from(&self, obj: &ObjectRef, offset: u64) -> Result<OpenedObject, SourceError> {
        match self {
            Source::Local(s) => s.open_from(obj, offset).await,
            Source::S3(s) => s.open_from(obj, offset).await,
        }
    }
}

/// The input of a parallel run, opened for its index pass.
pub struct Input<S = Source> {
    pub source: S,
    /// As the user named it (the report's `input`, messages).
    pub name: String,
    /// As opened: not yet pinned (the opened object's ETag and version
    /// pin it). No bucket: a local file ([`ObjectRef::local`]).
    pub object: ObjectRef,
    pub opened: OpenedObject,
}

impl Input {
    /// Opens `name`: `s3://bucket/key` with `s3` (built only for S3),
    /// else a local regular file. stdin (`-`) and pipes cannot be read in
    /// ranges: the caller refuses `-`, a pipe fails here.
    pub async fn open(name: &str, s3: impl FnOnce() -> S3Source) -> Result<Input, ParallelError> {
        let (source, object) = match crate::sources::parse_s3_url(name) {
            Some((bucket, key)) => (
                Source::S3(s3()),
                ObjectRef {
                    bucket,
                    key,
                    version_id: None,
                    etag: None,
                },
            ),
            None => (Source::Local(LocalFiles), ObjectRef::local(name)),
        };
        let opened = source.open(&object).await.map_err(ParallelError::Open)?;
        Ok(Input {
            source,
            name: name.to_owned(),
            object,
            opened,
        })
    }
}

/// `object` pinned to the version or ETag `opened` was read at.
fn pin(object: &ObjectRef, opened: &OpenedObject) -> ObjectRef {
    ObjectRef {
        version_id: opened.version_id.clone().or(object.version_id.clone()),
        etag: opened.etag.clone().or(object.etag.clone()),
        ..object.clone()
    }
}

/// The index pass's candidate spacing for `parts` segments of an input of
/// `len` bytes as stored. For gzip that under-estimates the segments
/// (~12× smaller), which makes candidates finer than
/// [`segment::candidate_spacing`] needs: more 32 KiB windows held (at most
/// about 32 × 12 per segment, ~12 MiB), never a coarser cut.
fn spacing(len: Option<u64>, parts: usize) -> u64 {
    segment::candidate_spacing(len.unwrap_or(0).div_ceil(parts.max(1) as u64))
}

/// Indexes `input` (its progress in `live`), writes its `parts` segments
/// concurrently (each with `concurrency / parts` requests in flight, at
/// least one, so the sink sees about the load of a serial run) and returns
/// the merged report.
#[allow(clippy::too_many_arguments)]
pub async fn run<S, E, W, D>(
    input: Input<S>,
    parts: usize,
    popts: PipelineOptions,
    encoder: impl Fn() -> E,
    service: Arc<W>,
    dead_letters: Arc<D>,
    wcfg: WriterConfig,
    live: Live,
) -> Result<RunReport, ParallelError>
where
    S: ObjectSource,
    E: Encoder + Send + 'static,
    E::Request: Request,
    W: Service<E::Request>,
    D: DeadLetterSink,
{
    let Input {
        source,
        name,
        object,
        opened,
    } = input;
    let pinned = pin(&object, &opened);
    let replaced = |part: String| ParallelError::Replaced {
        name: name.clone(),
        what: if object.bucket.is_empty() {
            "the file"
        } else {
            "the object"
        },
        part,
    };
    let open_at = |offset: u64, part: String| {
        let (source, pinned, replaced) = (&source, &pinned, &replaced);
        async move {
            source.open_at(pinned, offset).await.map_err(|e| match e {
                SourceError::Changed(_) => replaced(part),
                e => ParallelError::Open(e),
            })
        }
    };
    let spacing = spacing(opened.size, parts);
    let body = std::io::BufReader::with_capacity(
        READ_BUFFER,
        tokio_util::io::SyncIoBridge::new(opened.body),
    );
    let p2 = live.progress.clone();
    let opts: InputOptions = popts.input.clone();
    let index = tokio::task::spawn_blocking(move || segment::index(body, spacing, &opts, &p2))
        .await
        .expect("index thread")
        .map_err(|source| ParallelError::Index {
            name: name.clone(),
            source,
        })?;
    if !index.json {
        // k6 CSV (or input that may not be k6 output at all): one serial
        // run, which reads the header and tells the format (its byte
        // counters include the index pass).
        let again = open_at(0, "the serial run".into()).await?;
        let sink = Sink {
            encoder: encoder(),
            service,
            dead_letters,
            config: wcfg,
        };
        let res = crate::ingest::ingest(
            std::io::BufReader::with_capacity(
                READ_BUFFER,
                tokio_util::io::SyncIoBridge::new(again.body),
            ),
            name.clone(),
            popts,
            sink,
            live,
            Arc::new(|| false),
        )
        .await;
        return Ok(res.report);
    }
    let seg_bytes = index.bytes.div_ceil(parts.max(1) as u64).max(1);
    let mut plan = segment::plan_index(&index, seg_bytes, segment::default_lookback(seg_bytes));
    if plan.len() > 1 && !segment::worth_fanning_out(&index, &plan) {
        // A gzip stream without deflate block boundaries: every segment
        // would inflate all that comes before it.
        eprintln!(
            "{name}: the gzip stream has too few deflate block boundaries to start segments near their lines (written as one block, e.g. by zlib-ng/zlib-rs level 1): written as one segment"
        );
        plan = segment::plan_index(&index, index.bytes.max(1), 0);
    }
    // Every segment opened (pinned) before any writes: a replaced input
    // stops the run here, with nothing written.
    let count = plan.len();
    let mut opened = Vec::with_capacity(count);
    for spec in &plan {
        let from = segment::position(&index, &index.candidates[spec.read_from]);
        let offset = segment::source_offset(from.as_ref());
        let part = format!("segment {} of {count}", spec.number + 1);
        opened.push((open_at(offset, part).await?, from));
    }
    let metrics = Arc::new(index.metrics.clone());
    let per = (wcfg.concurrency / count.max(1)).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for (spec, (body, from)) in plan.into_iter().zip(opened) {
        let sink = Sink {
            encoder: encoder(),
            service: service.clone(),
            dead_letters: dead_letters.clone(),
            config: WriterConfig {
                concurrency: per,
                ..wcfg.clone()
            },
        };
        let (name, popts, metrics) = (name.clone(), popts.clone(), metrics.clone());
        let number = spec.number;
        let body = std::io::BufReader::with_capacity(
            READ_BUFFER,
            tokio_util::io::SyncIoBridge::new(body.body),
        );
        tasks.spawn(async move {
            // Its own counters: its report is its own work.
            let run = ingest_segment(
                body,
                name,
                popts,
                metrics,
                spec,
                from,
                sink,
                Live::default(),
                // No deadline here: a segment never wraps up early.
                Arc::new(|| false),
            )
            .await;
            (number, run.report)
        });
    }
    let mut parts_done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        parts_done.push(r.expect("segment task"));
    }
    parts_done.sort_by_key(|p| p.0);
    let reports: Vec<RunReport> = parts_done.into_iter().map(|p| p.1).collect();
    let mut merged = segment::merge_reports(&reports);
    // The index pass read the input once more.
    let (r, d) = live.progress.read();
    merged.chain_bytes_read = merged.bytes_read + r;
    merged.chain_bytes_decompressed = merged.bytes_decompressed + d;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::DataModel;
    use crate::sinks::dead_letter::MemorySink;
    use crate::sinks::timestream::{Batcher, WriteRequest};
    use crate::sinks::WriteError;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// An object in memory whose content (and ETag) is replaced by
    /// `other` when it is opened for the `replace_at`-th time (0-based).
    struct Replaced {
        now: Mutex<(Vec<u8>, String)>,
        other: Vec<u8>,
        opens: AtomicUsize,
        replace_at: usize,
    }

    impl ObjectSource for Replaced {
        async fn open(&self, obj: &ObjectRef) -> Result<OpenedObject, SourceError> {
            self.open_from(obj, 0).await
        }

        async fn open_from(
            &self,
            obj: &ObjectRef,
            offset: u64,
        ) -> Result<OpenedObject, SourceError> {
            let mut now = self.now.lock().unwrap();
            if self.opens.fetch_add(1, Ordering::SeqCst) == self.replace_at {
                *now = (self.other.clone(), "e2".into());
            }
            if obj.etag.as_ref().is_some_and(|e| *e != now.1) {
                return Err(SourceError::Changed(obj.to_string()));
            }
            let rest = now.0[(offset as usize).min(now.0.len())..].to_vec();
            Ok(OpenedObject {
                size: Some(rest.len() as u64),
                body: Box::new(std::io::Cursor::new(rest)),
                etag: Some(now.1.clone()),
                version_id: None,
            })
        }
    }

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Service<WriteRequest> for Count {
        async fn write(&self, _: &WriteRequest) -> Result<(), WriteError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// Lines of one VU's requests, 1 ms apart: ~4 MB of k6 JSON.
    fn k6_lines(n: u32) -> Vec<u8> {
        let mut s = String::from(
            "{\"type\":\"Metric\",\"data\":{\"name\":\"http_req_duration\",\"type\":\"trend\"},\"metric\":\"http_req_duration\"}\n",
        );
        for i in 0..n {
            s += &format!(
                "{{\"metric\":\"http_req_duration\",\"type\":\"Point\",\"data\":{{\"time\":\"2026-11-25T10:{:02}:{:02}.{:03}Z\",\"value\":{i},\"tags\":{{\"vu\":\"1\",\"url\":\"http://127.0.0.1/item/{}\"}}}}}}\n",
                i / 60_000,
                (i / 1000) % 60,
                i % 1000,
                i % 7
            );
        }
        s.into_bytes()
    }

    async fn run_on(source: Replaced) -> (Result<RunReport, ParallelError>, usize) {
        let object = ObjectRef {
            bucket: "b".into(),
            key: "run.json".into(),
            version_id: None,
            etag: None,
        };
        let opened = source.open(&object).await.unwrap();
        let service = Arc::new(Count::default());
        let res = run(
            Input {
                source,
                name: "s3://b/run.json".into(),
                object,
                opened,
            },
            4,
            PipelineOptions::default(),
            || Batcher::new(DataModel::Multi, 60),
            service.clone(),
            Arc::new(MemorySink::default()),
            WriterConfig::default(),
            Live::default(),
        )
        .await;
        (res, service.0.load(Ordering::SeqCst))
    }

    /// Replaced before the first segment's read, or before the last's:
    /// an error naming the part, and not one request sent. Not replaced:
    /// four segments write it.
    #[tokio::test]
    async fn an_input_replaced_after_the_index_pass_writes_nothing() {
        let data = k6_lines(30_000);
        let source = |replace_at| Replaced {
            now: Mutex::new((data.clone(), "e1".into())),
            other: k6_lines(100),
            opens: AtomicUsize::new(0),
            replace_at,
        };
        // Open 0 is the index pass's; opens 1–4 the segments'.
        for (at, part) in [(1, "segment 1 of 4"), (4, "segment 4 of 4")] {
            let (res, sent) = run_on(source(at)).await;
            match res {
                Err(ParallelError::Replaced {
                    name,
                    what,
                    part: p,
                }) => {
                    assert_eq!(
                        (name.as_str(), what, p.as_str()),
                        ("s3://b/run.json", "the object", part)
                    );
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(sent, 0, "replaced at open {at}");
        }
        let (res, sent) = run_on(source(usize::MAX)).await;
        let report = res.unwrap();
        assert_eq!((report.segments, report.points), (4, 30_000));
        assert!(report.error.is_none() && sent > 0);
        assert_eq!(report.written_measures, 30_000);
    }

    #[test]
    fn candidates_are_finer_than_a_segment_needs() {
        // Plain 1 GiB in 4: the segment's own spacing.
        assert_eq!(
            spacing(Some(1 << 30), 4),
            segment::candidate_spacing(1 << 28)
        );
        // Small or unknown sizes: the minimum.
        for len in [None, Some(0), Some(10)] {
            assert_eq!(spacing(len, 8), segment::MIN_CANDIDATE_SPACING);
        }
        assert_eq!(
            spacing(Some(1 << 30), 0),
            segment::candidate_spacing(1 << 30)
        );
    }

    #[test]
    fn reads_after_the_index_pass_are_pinned_to_what_it_read() {
        let obj = ObjectRef {
            bucket: "b".into(),
            key: "k".into(),
            version_id: None,
            etag: None,
        };
        let opened = |etag: Option<&str>, version: Option<&str>| OpenedObject {
            body: Box::new(tokio::io::empty()),
            size: None,
            etag: etag.map(str::to_owned),
            version_id: version.map(str::to_owned),
        };
        let p = pin(&obj, &opened(Some("e1"), Some("v1")));
        assert_eq!(
            (p.etag.as_deref(), p.version_id.as_deref()),
            (Some("e1"), Some("v1"))
        );
        assert_eq!((p.bucket.as_str(), p.key.as_str()), ("b", "k"));
        let given = ObjectRef {
            etag: Some("e0".into()),
            ..obj.clone()
        };
        assert_eq!(pin(&given, &opened(None, None)), given);
    }
}
