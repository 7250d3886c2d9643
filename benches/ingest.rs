//! `ingest` throughput against the strict local Timestream endpoint with
//! injected latency: with 20 ms per WriteRecords call and 32 calls in
//! flight, the ceiling is 32 × 100 / 0.020 s = 160,000 records/s; the
//! target is ≥ 90 % of it. Also reports CPU time per 1000 records.
//!
//! Run: `cargo bench --bench ingest [-- FILE.json.gz]` (default input: a
//! ≥300k-line real k6 file, generated on first use). The single model is
//! measured (one record per point: the most records per input byte).

mod support;
use std::process::Command;
use support::*;

fn main() {
    let input = big_input();
    let bin = env!("CARGO_BIN_EXE_k6-timestream");
    let (rt, server) = strict_endpoint(&["single", "multi"]);
    let url = server.endpoint_url();
    let dir = tempfile::tempdir().unwrap();
    let mut failed = false;
    for (model, concurrency) in [("single", 32), ("multi", 32)] {
        let summary = dir.path().join(format!("{model}.json"));
        let script = format!(
            "AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_EC2_METADATA_DISABLED=true \
             AWS_ENDPOINT_URL_TIMESTREAM_WRITE={url} exec '{bin}' ingest --database k6 --table {model} --model {model} \
             --concurrency {concurrency} --progress none --summary-json '{}' '{input}' 2>/dev/null",
            summary.display()
        );
        let m = measure(&script);
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        let records = r["written_records"].as_u64().unwrap();
        let points = r["written_measures"].as_u64().unwrap();
        assert_eq!(r["dead_lettered"].as_u64(), Some(0));
        let rate = records as f64 / m.wall.as_secs_f64();
        let ceiling = concurrency as f64 * 100.0 / 0.020;
        let cpu_per_k = ms(m.cpu) / (records as f64 / 1000.0);
        println!(
            "{model:6}: {points} points: {:.0} points/s end to end; client CPU {:.0} ms per million points",
            points as f64 / m.wall.as_secs_f64(),
            ms(m.cpu) * 1e6 / points as f64
        );
        println!(
            "{model:6}: {records} records in {:.0} ms wall = {rate:.0} records/s ({:.1} % of the {ceiling:.0}/s ceiling); client CPU {:.0} ms = {cpu_per_k:.2} ms per 1000 records; peak RSS {} KiB",
            ms(m.wall),
            100.0 * rate / ceiling,
            ms(m.cpu),
            m.max_rss_kib
        );
        if model == "single" && rate < 0.9 * ceiling {
            failed = true;
        }
    }
    let _ = Command::new("true").status();
    println!(
        "{}",
        if failed {
            "FAIL (single model below 90 % of the ceiling)"
        } else {
            "PASS"
        }
    );
    rt.block_on(server.shutdown());
    if failed {
        std::process::exit(1);
    }
}
