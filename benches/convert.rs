//! `convert` vs `gzip -dc` on a big real k6 file, side by side in one run.
//!
//! Targets (issue: conversion core): wall time of `k6-timestream convert
//! FILE > /dev/null` ≤ 1.4 × that of `gzip -dc FILE > /dev/null`; peak RSS
//! ≤ 64 MB and not growing with input size (checked on a 4× longer input:
//! the same run repeated four times, each copy shifted in time by the
//! run's duration, so it is a valid 4× longer k6 result).
//!
//! Also shown, not judged: the cost of k6 CSV's whole-second timestamps
//! for the collision guard (see [`whole_second_csv`]).
//!
//! Run: `cargo bench --bench convert [-- FILE.json.gz]`

mod support;
use support::*;

fn main() {
    let input = big_input();
    let bin = env!("CARGO_BIN_EXE_k6-timestream");
    let lines = count_lines(&input);
    let size = std::fs::metadata(&input).unwrap().len();
    println!("input: {input} ({lines} lines, {size} bytes gzip)");
    assert!(lines >= 300_000, "the benchmark wants a ≥300k-line file");

    // A 4× longer input, for the RSS-growth check.
    let dir = tempfile::tempdir().unwrap();
    let longer = dir.path().join("x4.json.gz");
    make_longer(&input, &longer, 4);
    let q = longer.display();

    let rounds = 5;
    let (mut g, mut c, mut cq) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        g.push(measure(&format!("exec gzip -dc '{input}'")));
        c.push(measure(&format!(
            "exec '{bin}' convert '{input}' 2>/dev/null"
        )));
        cq.push(measure(&format!("exec '{bin}' convert '{q}' 2>/dev/null")));
    }
    let (g, c, cq) = (median(g), median(c), median(cq));
    let ratio = c.wall.as_secs_f64() / g.wall.as_secs_f64();
    println!(
        "gzip -dc             wall {:8.1} ms  cpu {:8.1} ms  rss {:6} KiB",
        ms(g.wall),
        ms(g.cpu),
        g.max_rss_kib
    );
    println!(
        "k6-timestream convert wall {:8.1} ms  cpu {:8.1} ms  rss {:6} KiB",
        ms(c.wall),
        ms(c.cpu),
        c.max_rss_kib
    );
    println!(
        "  (4x longer input)  wall {:8.1} ms  cpu {:8.1} ms  rss {:6} KiB",
        ms(cq.wall),
        ms(cq.cpu),
        cq.max_rss_kib
    );
    whole_second_csv(bin, dir.path());
    println!(
        "convert/gzip wall ratio: {ratio:.2} (target ≤ 1.40); CPU ratio {:.2}",
        c.cpu.as_secs_f64() / g.cpu.as_secs_f64()
    );
    println!("lines/s: {:.0}", lines as f64 / c.wall.as_secs_f64());
    let rss_ok = c.max_rss_kib <= 64 * 1024;
    let growth_kib = cq.max_rss_kib as i64 - c.max_rss_kib as i64;
    println!(
        "peak RSS {} KiB (target ≤ 65536); 4x longer input {} KiB ({growth_kib:+} KiB)",
        c.max_rss_kib, cq.max_rss_kib
    );
    let ok = ratio <= 1.4 && rss_ok && cq.max_rss_kib <= 64 * 1024 && growth_kib < 8 * 1024;
    println!("{}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
}

/// k points of one series within one second, as k6's default CSV
/// (`K6_CSV_TIME_FORMAT=unix`) writes them, against the same points 1 µs
/// apart (`unix_nano`). Every record of the second lands on one slot of the
/// collision guard: the i-th is moved +1 ns at a time past the i taken
/// slots before it, so a second of k points costs k(k-1)/2 guard lookups.
fn whole_second_csv(bin: &str, dir: &std::path::Path) {
    use std::io::Write;
    println!(
        "whole-second k6 CSV: k points of one series in one second (--model single, median of 3):"
    );
    for k in [5_000u64, 10_000, 20_000] {
        let mut row = Vec::new();
        for nano in [false, true] {
            let path = dir.join(format!("one_second_{k}_{nano}.csv"));
            let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            writeln!(
                w,
                "metric_name,timestamp,metric_value,status,extra_tags,metadata"
            )
            .unwrap();
            for i in 0..k {
                let t = if nano {
                    format!("{}", 1_709_292_845_000_000_000u64 + i * 1000)
                } else {
                    "1709292845".to_owned()
                };
                let v = 1.0 + i as f64 / 1000.0;
                writeln!(w, "http_req_duration,{t},{v:.6},200,testid=bench,").unwrap();
            }
            w.flush().unwrap();
            drop(w);
            let p = path.display();
            let m = median(
                (0..3)
                    .map(|_| {
                        measure(&format!(
                            "exec '{bin}' convert --model single '{p}' 2>/dev/null"
                        ))
                    })
                    .collect(),
            );
            row.push(m);
        }
        let lookups = k * (k - 1) / 2;
        println!(
            "  k={k:6}: unix wall {:8.1} ms cpu {:8.1} ms | unix_nano wall {:6.1} ms cpu {:6.1} ms | {lookups} guard lookups, {:.1} ns each",
            ms(row[0].wall),
            ms(row[0].cpu),
            ms(row[1].wall),
            ms(row[1].cpu),
            (row[0].cpu.as_secs_f64() - row[1].cpu.as_secs_f64()) * 1e9 / lookups as f64
        );
    }
}
