//! `strict-timestream`: runs the strict local Timestream Write endpoint until SIGTERM/SIGINT.
//!
//! Arguments are parsed by hand: a handful of flags does not justify another dependency.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use strict_timestream::{Config, Faults, Server, TableConfig};

const USAGE: &str = "\
Usage: strict-timestream [OPTIONS]

A strict local Amazon Timestream Write endpoint (awsJson1_0) with fault injection.

Options:
  --listen ADDR                 Address to listen on [default: 127.0.0.1:0]
  --table DB.TABLE              Create a table (repeatable; split at the first '.')
  --magnetic-writes             Enable magnetic store writes on the --table tables
  --memory-retention-hours N    Memory store retention of the --table tables [default: 24]
  --magnetic-retention-days N   Magnetic store retention of the --table tables [default: 73000]
  --throttle-rate F             Probability of ThrottlingException per WriteRecords call
  --server-error-rate F         Probability of InternalServerException per WriteRecords call
  --latency-ms N                Minimum response time of WriteRecords, in milliseconds
  --reset-rate F                Probability of closing the connection without a response
  --reject-rate F               Probability of rejecting each otherwise valid record
  --seed N                      Seed of the fault generator [default: 0]
  -h, --help                    Print this help

Prints `listening on http://HOST:PORT` once ready. Admin API: GET /_strict/records?database=&table=,
GET /_strict/stats, GET|POST /_strict/faults, POST /_strict/reset, GET|POST /_strict/tables.";

struct Args {
    listen: SocketAddr,
    config: Config,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("valid default");
    let mut tables: Vec<(String, String)> = Vec::new();
    let mut magnetic_writes = false;
    let mut memory_hours = 24u64;
    let mut magnetic_days = 73_000u64;
    let mut faults = Faults::default();
    let mut seed = 0u64;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: invalid number '{v}'"))
        }
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                let v = value()?;
                listen = v
                    .parse()
                    .map_err(|_| format!("--listen: invalid address '{v}' (expected HOST:PORT)"))?;
            }
            "--table" => {
                let v = value()?;
                let (db, table) = v
                    .split_once('.')
                    .ok_or_else(|| format!("--table: expected DB.TABLE, got '{v}'"))?;
                tables.push((db.to_owned(), table.to_owned()));
            }
            "--magnetic-writes" => magnetic_writes = true,
            "--memory-retention-hours" => memory_hours = num(&flag, value()?)?,
            "--magnetic-retention-days" => magnetic_days = num(&flag, value()?)?,
            "--throttle-rate" => faults.throttle_rate = num(&flag, value()?)?,
            "--server-error-rate" => faults.server_error_rate = num(&flag, value()?)?,
            "--latency-ms" => faults.latency_ms = num(&flag, value()?)?,
            "--reset-rate" => faults.reset_rate = num(&flag, value()?)?,
            "--reject-rate" => faults.reject_rate = num(&flag, value()?)?,
            "--seed" => seed = num(&flag, value()?)?,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    faults.validate()?;
    let tables = tables
        .into_iter()
        .map(|(db, table)| {
            let t = TableConfig::new(db, table)
                .with_magnetic_writes(magnetic_writes)
                .with_memory_retention_hours(memory_hours)
                .with_magnetic_retention_days(magnetic_days);
            t.validate().map(|()| t)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Args {
        listen,
        config: Config {
            tables,
            faults,
            seed,
        },
    }))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("strict-timestream: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strict-timestream: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let server = match Server::start(args.listen, args.config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("strict-timestream: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on {}", server.endpoint_url());
        let _ = stdout.flush();
        drop(stdout);
        shutdown_signal().await;
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_flags() {
        let args = parse(&[
            "--listen",
            "127.0.0.1:9000",
            "--table",
            "k6.metrics",
            "--table=db.t.x",
            "--magnetic-writes",
            "--memory-retention-hours",
            "2",
            "--throttle-rate=0.25",
            "--latency-ms",
            "20",
            "--reject-rate",
            "0.1",
            "--seed",
            "42",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(args.listen.port(), 9000);
        assert_eq!(args.config.tables.len(), 2);
        assert_eq!(args.config.tables[0].database, "k6");
        assert_eq!(args.config.tables[1].table, "t.x");
        assert!(args.config.tables[0].magnetic_writes);
        assert_eq!(args.config.tables[0].memory_retention_hours, 2);
        assert_eq!(args.config.faults.throttle_rate, 0.25);
        assert_eq!(args.config.faults.latency_ms, 20);
        assert_eq!(args.config.seed, 42);
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--table", "nodot"]).is_err());
        assert!(parse(&["--throttle-rate", "2"]).is_err());
        assert!(parse(&["--latency-ms"]).is_err());
        assert!(parse(&["--listen", "nope"]).is_err());
    }
}
