//! Dead letters into a local JSON-lines file (the CLI's `--dead-letter`).

use super::{DeadLetter, DeadLetterSink};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// A local JSON-lines file, created on the first letter (no empty files).
pub struct FileSink {
    path: PathBuf,
    file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
}

impl FileSink {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: Mutex::new(None),
        }
    }
}

impl DeadLetterSink for FileSink {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), String> {
        // Dead letters are rare and small: a blocking append under a mutex
        // is simpler than a writer task and costs nothing measurable.
        let mut g = self.file.lock().unwrap();
        if g.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
            *g = Some(std::io::BufWriter::new(f));
        }
        let w = g.as_mut().unwrap();
        for l in letters {
            serde_json::to_writer(&mut *w, &l).map_err(|e| e.to_string())?;
            w.write_all(b"\n")
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
        }
        Ok(())
    }

    async fn finish(&self) -> Result<Option<String>, String> {
        let mut g = self.file.lock().unwrap();
        match g.as_mut() {
            Some(w) => {
                w.flush()
                    .map_err(|e| format!("{}: {e}", self.path.display()))?;
                Ok(Some(self.path.display().to_string()))
            }
            None => Ok(None),
        }
    }
}
