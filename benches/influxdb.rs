//! `ingest --sink influxdb` into a real local InfluxDB 1.x (`influxd`,
//! Debian's package) through the v1 API: points/s end to end, client CPU
//! per 1000 points, client peak RSS, and the server's CPU over the run.
//! One run per configuration (the server's storage state changes with
//! every run: a fresh database each time).
//!
//! Run: `cargo bench --bench influxdb [-- FILE.json.gz]` (default input:
//! the big real k6 file of the other benches, generated on first use).
//! `$INFLUXD` names another `influxd` binary.

mod support;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `influxd config` with every path in `dir`, HTTP and RPC on loopback,
/// and usage reporting, self-monitoring, logging and other listeners off.
fn config(dir: &std::path::Path, http: u16, rpc: u16) -> String {
    let influxd = std::env::var("INFLUXD").unwrap_or_else(|_| "influxd".into());
    let out = Command::new(&influxd)
        .arg("config")
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{influxd} config: {e} (apt-get install influxdb)"));
    let d = dir.display();
    let mut section = String::new();
    let mut text = format!("reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n");
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').to_owned();
            text.push_str(line);
            text.push('\n');
            continue;
        }
        let key = t.split('=').next().unwrap_or("").trim();
        let new = match (section.as_str(), key) {
            ("", "reporting-disabled") | ("", "bind-address") => Some(String::new()),
            ("meta", "dir") => Some(format!("dir = \"{d}/meta\"")),
            ("data", "dir") => Some(format!("dir = \"{d}/data\"")),
            ("data", "wal-dir") => Some(format!("wal-dir = \"{d}/wal\"")),
            ("data", "query-log-enabled") => Some("query-log-enabled = false".into()),
            ("monitor", "store-enabled") => Some("store-enabled = false".into()),
            ("http", "bind-address") => Some(format!("bind-address = \"127.0.0.1:{http}\"")),
            ("http", "log-enabled") => Some("log-enabled = false".into()),
            ("http", "bind-socket") => Some(format!("bind-socket = \"{d}/influxdb.sock\"")),
            ("subscriber", "enabled")
            | ("continuous_queries", "enabled")
            | ("graphite", "enabled")
            | ("collectd", "enabled")
            | ("opentsdb", "enabled")
            | ("udp", "enabled") => Some("enabled = false".into()),
            _ => None,
        };
        text.push_str(new.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}

/// One HTTP/1.0 request to the server; the status code (0: no answer).
fn http(port: u16, request: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of a process so far, from /proc.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 (1-based); `rest` starts at 3.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

fn main() {
    let input = big_input();
    let bin = env!("CARGO_BIN_EXE_k6-timestream");
    let dir = tempfile::tempdir().unwrap();
    let (port, rpc) = (free_port(), free_port());
    let conf = dir.path().join("influxdb.conf");
    std::fs::write(&conf, config(dir.path(), port, rpc)).unwrap();
    let influxd = std::env::var("INFLUXD").unwrap_or_else(|_| "influxd".into());
    let mut server = Command::new(&influxd)
        .arg("-config")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("influxd.log")).unwrap())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while http(port, "GET /ping HTTP/1.0\r\n\r\n") != 204 {
        assert!(Instant::now() < until, "influxd did not answer /ping");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut failed = false;
    for (i, (concurrency, lines)) in [(4, 5000), (8, 5000), (8, 1000)].into_iter().enumerate() {
        let db = format!("bench{i}");
        let q = format!("q=CREATE+DATABASE+{db}");
        let st = http(
            port,
            &format!(
                "POST /query HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{q}",
                q.len()
            ),
        );
        assert_eq!(st, 200, "create database");
        let summary = dir.path().join(format!("{db}.json"));
        let server_cpu = cpu_of(server.id());
        let script = format!(
            "exec '{bin}' ingest --sink influxdb --influxdb-api v1 --influxdb-url http://127.0.0.1:{port} \
             --influxdb-database {db} --influxdb-batch-lines {lines} --concurrency {concurrency} \
             --progress none --summary-json '{}' '{input}' 2>/dev/null",
            summary.display()
        );
        let m = measure(&script);
        let server_cpu = cpu_of(server.id()) - server_cpu;
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        let points = r["written_measures"].as_u64().unwrap();
        let ok = r["dead_lettered"].as_u64() == Some(0) && r["measures"].as_u64() == Some(points);
        failed |= !ok;
        let rate = points as f64 / m.wall.as_secs_f64();
        println!(
            "concurrency {concurrency}, {lines} lines/request: {points} points in {:.0} ms wall = {rate:.0} points/s; \
             client CPU {:.0} ms = {:.3} ms per 1000 points, peak RSS {} KiB; influxd CPU {:.0} ms = {:.3} ms per 1000 points{}",
            ms(m.wall),
            ms(m.cpu),
            ms(m.cpu) / (points as f64 / 1000.0),
            m.max_rss_kib,
            ms(server_cpu),
            ms(server_cpu) / (points as f64 / 1000.0),
            if ok { "" } else { "  (NOT all written)" }
        );
    }
    let _ = server.kill();
    let _ = server.wait();
    if failed {
        std::process::exit(1);
    }
}
