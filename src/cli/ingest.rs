//! `k6-timestream ingest` (see the writer module).

use clap::Args;

#[derive(Args, Debug)]
pub struct IngestCmd {}

pub fn run(_cmd: IngestCmd) -> i32 {
    super::exit::FATAL
}
