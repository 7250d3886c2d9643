//! Dead letters into S3, next to the results they came from.

use super::{DeadLetter, DeadLetterSink};
use crate::sources::s3::ObjectPut;
use crate::sources::ObjectRef;
use std::sync::Mutex;

/// Dead letters as JSON-lines objects `PREFIX + KEY + ".part-NNNN.jsonl"`,
/// flushed every ~4 MiB and at the end. The names depend only on the
/// source object and the first batch of this run, so a retried invocation
/// overwrites its own parts instead of duplicating them.
pub struct S3DeadLetterSink<P> {
    put: P,
    bucket: String,
    base: String,
    state: tokio::sync::Mutex<(Vec<u8>, u32)>,
    written: Mutex<Vec<String>>,
}

const PART_BYTES: usize = 4 << 20;

impl<P: ObjectPut> S3DeadLetterSink<P> {
    pub fn new(
        put: P,
        bucket: impl Into<String>,
        prefix: &str,
        source: &ObjectRef,
        first_batch: u64,
    ) -> Self {
        let base = format!(
            "{prefix}{}/{}.from-batch-{first_batch}",
            source.bucket, source.key
        );
        Self {
            put,
            bucket: bucket.into(),
            base,
            state: tokio::sync::Mutex::new((Vec::new(), 0)),
            written: Mutex::new(Vec::new()),
        }
    }

    async fn flush_part(&self, st: &mut (Vec<u8>, u32)) -> Result<(), String> {
        if st.0.is_empty() {
            return Ok(());
        }
        st.1 += 1;
        let key = format!("{}.part-{:04}.jsonl", self.base, st.1);
        self.put
            .put(&self.bucket, &key, std::mem::take(&mut st.0))
            .await?;
        self.written
            .lock()
            .unwrap()
            .push(format!("s3://{}/{key}", self.bucket));
        Ok(())
    }
}

impl<P: ObjectPut> DeadLetterSink for S3DeadLetterSink<P> {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), String> {
        let mut st = self.state.lock().await;
        for l in letters {
            serde_json::to_writer(&mut st.0, &l).map_err(|e| e.to_string())?;
            st.0.push(b'\n');
        }
        if st.0.len() >= PART_BYTES {
            self.flush_part(&mut st).await?;
        }
        Ok(())
    }

    async fn finish(&self) -> Result<Option<String>, String> {
        let mut st = self.state.lock().await;
        self.flush_part(&mut st).await?;
        let w = self.written.lock().unwrap();
        Ok(w.first().map(|first| {
            if w.len() == 1 {
                first.clone()
            } else {
                format!("{first} (+{} more parts)", w.len() - 1)
            }
        }))
    }
}
