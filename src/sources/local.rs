//! Where k6 results come from: a local file, stdin, or an S3 object.

use std::io::Read;

/// Opens a local path, or stdin for `-`.
pub fn open_local(input: &str) -> std::io::Result<Box<dyn Read + Send>> {
    if input == "-" {
        Ok(Box::new(std::io::stdin()))
    } else {
        std::fs::File::open(input)
            .map(|f| Box::new(f) as Box<dyn Read + Send>)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{input}: {e}")))
    }
}

use super::{ObjectRef, ObjectSource, OpenedObject, SourceError};
use std::io::{Seek, SeekFrom};

/// Local files as an [`ObjectSource`], so that a run reading ranges of its
/// input (`ingest --parallel`) has one code path for files and S3
/// objects. An [`ObjectRef`]'s `key` is the path; `bucket` is not used
/// ([`ObjectRef::local`]).
///
/// A file's ETag is a fingerprint of its length and modification time
/// (taken from the opened handle, so it describes the bytes read): a
/// reference carrying one reads only while the file still has it, else
/// [`SourceError::Changed`], as S3's `If-Match` does. Unlike an S3 GET,
/// which serves one version to its end, a file rewritten in place while it
/// is being read is not detected (nor is a rewrite that keeps the length
/// within the file system's timestamp granularity): local files have no
/// versions to pin, and the check costs one `fstat` per open.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFiles;

impl LocalFiles {
    /// The file from `offset` on, pinned to `obj.etag` if it is set.
    fn open_at(obj: &ObjectRef, offset: u64) -> Result<OpenedObject, SourceError> {
        let path = &obj.key;
        let err = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => SourceError::NotFound(path.clone()),
            std::io::ErrorKind::PermissionDenied => {
                SourceError::AccessDenied(path.clone(), e.to_string())
            }
            _ => SourceError::Fatal(path.clone(), e.to_string()),
        };
        let mut file = std::fs::File::open(path).map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        if !meta.is_file() {
            // A pipe or a device has no ranges to read.
            return Err(SourceError::Fatal(
                path.clone(),
                "not a regular file (it cannot be read in ranges)".into(),
            ));
        }
        let etag = fingerprint(&meta);
        if obj.etag.as_ref().is_some_and(|e| *e != etag) {
            return Err(SourceError::Changed(path.clone()));
        }
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).map_err(err)?;
        }
        Ok(OpenedObject {
            body: Box::new(tokio::fs::File::from_std(file)),
            size: Some(meta.len().saturating_sub(offset)),
            etag: Some(etag),
            version_id: None,
        })
    }
}

/// Length and modification time (ns since the epoch; 0 where the file
/// system keeps none).
fn fingerprint(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}-{mtime}", meta.len())
}

impl ObjectSource for LocalFiles {
    async fn open(&self, obj: &ObjectRef) -> Result<OpenedObject, SourceError> {
        Self::open_at(obj, 0)
    }

    async fn open_from(&self, obj: &ObjectRef, offset: u64) -> Result<OpenedObject, SourceError> {
        Self::open_at(obj, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn read(o: OpenedObject) -> Vec<u8> {
        let mut body = o.body;
        let mut out = Vec::new();
        body.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn ranges_of_a_file_pinned_to_what_was_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(&path, b"0123456789").unwrap();
        let obj = ObjectRef::local(path.to_str().unwrap());
        let whole = LocalFiles.open(&obj).await.unwrap();
        let pinned = ObjectRef {
            etag: whole.etag.clone(),
            ..obj.clone()
        };
        assert_eq!(whole.size, Some(10));
        assert_eq!(read(whole).await, b"0123456789");
        let rest = LocalFiles.open_from(&pinned, 4).await.unwrap();
        assert_eq!(rest.size, Some(6));
        assert_eq!(read(rest).await, b"456789");
        let past = LocalFiles.open_from(&pinned, 99).await.unwrap();
        assert_eq!(past.size, Some(0));
        assert!(read(past).await.is_empty());

        // Rewritten with another length: the pinned reference no longer
        // reads; an unpinned one does.
        std::fs::write(&path, b"01234567890").unwrap();
        assert!(matches!(
            LocalFiles.open_from(&pinned, 4).await,
            Err(SourceError::Changed(p)) if p == obj.key
        ));
        assert!(LocalFiles.open_from(&obj, 4).await.is_ok());
    }

    #[tokio::test]
    async fn missing_files_and_directories_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.json");
        assert!(matches!(
            LocalFiles
                .open(&ObjectRef::local(missing.to_str().unwrap()))
                .await,
            Err(SourceError::NotFound(_))
        ));
        let e = LocalFiles
            .open(&ObjectRef::local(dir.path().to_str().unwrap()))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, SourceError::Fatal(..)), "{e}");
        assert!(!e.retryable());
    }
}
