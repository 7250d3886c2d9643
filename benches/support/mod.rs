//! Shared by the bench binaries: run a command, measure wall time, CPU
//! time and peak RSS of the child (wait4's rusage).

#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Measure {
    pub wall: Duration,
    pub cpu: Duration,
    pub max_rss_kib: u64,
}

/// Runs `sh -c script` with stdout to /dev/null and returns its figures.
pub fn measure(script: &str) -> Measure {
    let start = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain syscall on our own child; `ru` is a valid out-pointer.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = start.elapsed();
    assert_eq!(r, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "command failed: {script}"
    );
    // The shell's children are reaped by the shell; RUSAGE of the shell
    // includes its waited-for children only via getrusage(CHILDREN), so
    // run the measured program with `exec` (see callers) to make it the child.
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Measure {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_kib: ru.ru_maxrss as u64,
    }
}

pub fn median(mut v: Vec<Measure>) -> Measure {
    v.sort_by_key(|m| m.wall);
    v[v.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The big real k6 file to measure: the first argument, or
/// `$K6TS_BENCH_INPUT`, or one generated with `scripts/fixtures/big.sh`
/// (real k6 against a loopback server) under `target/bench/`.
pub fn big_input() -> String {
    if let Some(p) = std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        return p;
    }
    if let Ok(p) = std::env::var("K6TS_BENCH_INPUT") {
        return p;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = format!("{root}/target/bench/big.json.gz");
    if !std::path::Path::new(&out).exists() {
        std::fs::create_dir_all(format!("{root}/target/bench")).unwrap();
        eprintln!("generating {out} with a real k6 run (about 40 s)…");
        let st = Command::new(format!("{root}/scripts/fixtures/big.sh"))
            .arg(&out)
            .status()
            .expect("run big.sh");
        assert!(st.success(), "big.sh failed");
    }
    out
}

pub fn count_lines(path: &str) -> u64 {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc '{path}' | wc -l"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Writes `copies` time-shifted copies of a k6 result as one gzip file
/// (level 1): each copy shifted by the run's span, so the file is a
/// valid k6 result `copies` times as long.
pub fn make_longer(input: &str, out: &std::path::Path, copies: i64) {
    make_longer_at(input, out, copies, flate2::Compression::fast());
}

/// [`make_longer`] at gzip `level`. (Level 1 of zlib-rs writes one
/// deflate block: no access points, so such a file is never cut into
/// segments; the default level ends a block every few hundred KiB.)
pub fn make_longer_at(input: &str, out: &std::path::Path, copies: i64, level: flate2::Compression) {
    use k6_timestream::core::k6::time::{format_rfc3339_ns, parse_rfc3339_ns};
    use std::io::{BufRead, Write};
    let read = || {
        std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
            std::fs::File::open(input).unwrap(),
        ))
    };
    // The run's time span.
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    let time_of = |l: &str| -> Option<(usize, usize, i64)> {
        let start = l.find("\"time\":\"")? + 8;
        let end = start + l[start..].find('"')?;
        Some((start, end, parse_rfc3339_ns(&l[start..end]).ok()?))
    };
    for l in read().lines() {
        if let Some((_, _, t)) = time_of(&l.unwrap()) {
            lo = lo.min(t);
            hi = hi.max(t);
        }
    }
    let span = hi - lo + 1_000_000_000;
    let mut w = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(std::fs::File::create(out).unwrap()),
        level,
    );
    for k in 0..copies {
        for l in read().lines() {
            let l = l.unwrap();
            match time_of(&l) {
                Some((s, e, t)) => {
                    writeln!(
                        w,
                        "{}{}{}",
                        &l[..s],
                        format_rfc3339_ns(t + k * span),
                        &l[e..]
                    )
                    .unwrap();
                }
                None => writeln!(w, "{l}").unwrap(),
            }
        }
    }
    w.finish().unwrap().flush().unwrap();
}

/// The strict Timestream endpoint on a runtime of its own (one worker
/// thread, beside the client being measured): `tables` of database `k6`
/// with magnetic writes (the fixtures' times are long past), every
/// WriteRecords call answered after 20 ms.
pub fn strict_endpoint(
    tables: &[&str],
) -> (tokio::runtime::Runtime, strict_timestream::ServerHandle) {
    use strict_timestream::{Config, Faults, Server, TableConfig};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cfg = Config {
        tables: tables
            .iter()
            .map(|t| TableConfig::new("k6", *t).with_magnetic_writes(true))
            .collect(),
        faults: Faults {
            latency_ms: 20,
            ..Default::default()
        },
        seed: 1,
    };
    let server = rt
        .block_on(Server::start("127.0.0.1:0".parse().unwrap(), cfg))
        .unwrap();
    (rt, server)
}
