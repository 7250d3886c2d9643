//! `convert` vs `gzip -dc` on a big real k6 file, side by side in one run.
//!
//! Targets (issue: conversion core): wall time of `k6-timestream convert
//! FILE > /dev/null` ≤ 2 × that of `gzip -dc FILE > /dev/null`; peak RSS
//! ≤ 64 MB and not growing with input size (checked against a quarter of
//! the same file).
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

    // A quarter of the file, for the RSS-growth check.
    let dir = tempfile::tempdir().unwrap();
    let quarter = dir.path().join("quarter.json.gz");
    let q = quarter.display();
    measure(&format!(
        "gzip -dc '{input}' | head -n {} | gzip -1 > '{q}'",
        lines / 4
    ));

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
        "  (quarter input)     wall {:8.1} ms  cpu {:8.1} ms  rss {:6} KiB",
        ms(cq.wall),
        ms(cq.cpu),
        cq.max_rss_kib
    );
    println!("convert/gzip wall ratio: {ratio:.2} (target ≤ 2.00)");
    println!("lines/s: {:.0}", lines as f64 / c.wall.as_secs_f64());
    let rss_ok = c.max_rss_kib <= 64 * 1024;
    let growth_kib = c.max_rss_kib as i64 - cq.max_rss_kib as i64;
    println!(
        "peak RSS {} KiB (target ≤ 65536), growth full vs quarter: {growth_kib} KiB",
        c.max_rss_kib
    );
    let ok = ratio <= 2.0 && rss_ok && growth_kib < 8 * 1024;
    println!("{}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
}
