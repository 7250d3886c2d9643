//! `ingest --parallel N` on a big generated load file against the strict
//! local Timestream endpoint with 20 ms per WriteRecords call: serial vs
//! `--parallel 2` vs `--parallel 4`, `--concurrency 32` in total (a
//! parallel run gives each of its N segments 32 / N calls in flight).
//! Reported per run: wall, client CPU (wait4's rusage), points/s end to
//! end, bytes inflated in total (a parallel run: its index pass plus every
//! segment with its look-back and read-ahead), segments, peak RSS.
//!
//! The input: `COPIES` time-shifted copies of the big real k6 file (see
//! `support::big_input`) as one valid k6 result, gzip at the default level
//! (a deflate block every few hundred KiB, so the segments start at access
//! points near their lines). The endpoint's tables are emptied between
//! runs; every run must write every point, reject nothing and store the
//! same number of records.
//!
//! Run: `cargo bench --bench parallel [-- FILE.json.gz]` (`K6TS_BENCH_COPIES`
//! overrides the number of copies, `K6TS_BENCH_ROUNDS` the rounds, 3).

mod support;
use serde_json::Value;
use support::*;

/// 8 copies of the ~420k-point file: ~3.4 M points, ~860 MB of JSON.
const COPIES: i64 = 8;

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let input = big_input();
    let bin = env!("CARGO_BIN_EXE_k6-timestream");
    let copies = env_or("K6TS_BENCH_COPIES", COPIES);
    let rounds = env_or("K6TS_BENCH_ROUNDS", 3).max(1) as usize;
    let dir = tempfile::tempdir().unwrap();
    let load = dir.path().join("load.json.gz");
    eprintln!("writing {copies} time-shifted copies of {input}…");
    make_longer_at(&input, &load, copies, flate2::Compression::default());
    let size = std::fs::metadata(&load).unwrap().len();
    let plain = {
        use std::io::Read;
        let mut d = flate2::read::MultiGzDecoder::new(std::fs::File::open(&load).unwrap());
        std::io::copy(&mut d.by_ref(), &mut std::io::sink()).unwrap()
    };
    println!("input: {copies} copies of {input}: {size} bytes gzip, {plain} bytes JSON");
    // What every parallel run does before any segment starts: inflate
    // the whole input once (here: the index pass itself, in this process,
    // with the spacing of `--parallel 4`), next to `gzip -dc`.
    let gz = median(
        (0..rounds)
            .map(|_| measure(&format!("exec gzip -dc '{}'", load.display())))
            .collect(),
    );
    let t = std::time::Instant::now();
    let index = k6_timestream::core::segment::index(
        std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(&load).unwrap()),
        k6_timestream::core::segment::candidate_spacing(size.div_ceil(4)),
        &Default::default(),
        &Default::default(),
    )
    .unwrap();
    println!(
        "index pass alone: {:.2} s wall ({} candidates, {} lines); gzip -dc: {:.2} s wall, {:.2} s CPU",
        t.elapsed().as_secs_f64(),
        index.candidates.len(),
        index.lines,
        gz.wall.as_secs_f64(),
        gz.cpu.as_secs_f64()
    );

    let (rt, server) = strict_endpoint(&["load"]);
    let url = server.endpoint_url();
    let q = load.display();
    let mut stored = None;
    let mut failed = false;
    println!(
        "| run | points | records | segments | wall | client CPU | points/s | inflated in total | × JSON | peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for parallel in [1u32, 2, 4] {
        let mut runs = Vec::new();
        for round in 0..rounds {
            server.reset();
            let summary = dir.path().join(format!("p{parallel}-{round}.json"));
            let script = format!(
                "AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_EC2_METADATA_DISABLED=true \
                 AWS_ENDPOINT_URL_TIMESTREAM_WRITE={url} exec '{bin}' ingest --database k6 --table load \
                 --concurrency 32 --parallel {parallel} --progress none --summary-json '{}' '{q}' 2>/dev/null",
                summary.display()
            );
            let m = measure(&script);
            let r: Value =
                serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
            let stats = server.stats();
            let get = |k: &str| r[k].as_u64().unwrap_or(0);
            let points = get("points");
            if get("written_measures") != points
                || get("rejected_records") != 0
                || get("dead_lettered") != 0
                || stats.records_rejected != 0
                || *stored.get_or_insert(stats.records_stored) != stats.records_stored
            {
                eprintln!("--parallel {parallel}: not every point stored once: {r} {stats:?}");
                failed = true;
            }
            // A serial run's own counters are the whole run's; a parallel
            // run adds its index pass in the chain counters.
            let inflated = get("chain_bytes_decompressed").max(get("bytes_decompressed"));
            runs.push((
                m,
                points,
                get("written_records"),
                get("segments").max(1),
                inflated,
            ));
        }
        runs.sort_by_key(|r| r.0.wall);
        let (m, points, records, segments, inflated) = runs[runs.len() / 2];
        if segments != u64::from(parallel) {
            eprintln!("--parallel {parallel}: {segments} segments");
            failed = true;
        }
        let walls: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.1}", r.0.wall.as_secs_f64()))
            .collect();
        println!(
            "| {} | {points} | {records} | {segments} | {:.2} s (of {} s) | {:.2} s | {:.0} | {inflated} | {:.2} | {} MiB |",
            if parallel == 1 {
                "serial".to_owned()
            } else {
                format!("`--parallel {parallel}`")
            },
            m.wall.as_secs_f64(),
            walls.join(" / "),
            m.cpu.as_secs_f64(),
            points as f64 / m.wall.as_secs_f64(),
            inflated as f64 / plain as f64,
            m.max_rss_kib / 1024
        );
    }
    rt.block_on(server.shutdown());
    println!("{}", if failed { "FAIL" } else { "PASS" });
    if failed {
        std::process::exit(1);
    }
}
