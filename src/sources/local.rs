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
