//! End to end: the real `k6-timestream-lambda` binary, driven through the
//! Lambda runtime API of `cargo lambda watch`, reading real k6 results from
//! S3 (moto) and writing to the strict local Timestream endpoint; its
//! continuations go through a local Lambda Invoke API relay.
//!
//! ```text
//!  test ──Invoke──▶ cargo lambda watch ◀──runtime API── runtime proxy ◀── k6-timestream-lambda
//!                   (--only-lambda-apis)                (deadline fix)      │  │  │
//!                                                  S3: moto_server ◀────────┘  │  │
//!                         Timestream: strict-timestream (in process) ◀────────┘  │
//!          Lambda Invoke (Event): relay (202, records the payload) ◀─────────────┘
//! ```
//!
//! Everything is started here on free 127.0.0.1 ports and stopped by Drop
//! guards (process groups: SIGTERM, then SIGKILL), also when a check fails.
//!
//! * `watch` runs with `--only-lambda-apis --ignore-changes`: it is the
//!   runtime API and the Invoke API; the function process is started by the
//!   test from the binary cargo built for this test (`CARGO_BIN_EXE_…`), with
//!   the environment `watch` would give it. That avoids a `cargo run` (and a
//!   rebuild whenever someone edits the tree) inside the test, and gives the
//!   test the function's PID (peak RSS) and start instant (cold init).
//!   `watch` only serves functions named like the crate's binaries, so each
//!   function configuration (the continuation case has its own work budget)
//!   gets its own `watch` (about a second to start) under the real name
//!   `k6-timestream-lambda`.
//! * The runtime proxy forwards the function's runtime API calls to `watch`
//!   unchanged (it notes when the function first asks for work: cold init).
//!   cargo-lambda 1.9.2 sends `Lambda-Runtime-Deadline-Ms: 600000` (a
//!   duration) where the Lambda service sends epoch milliseconds; the
//!   handler reads such a 1970 "deadline" as the time left, and this test
//!   runs against exactly that. `K6TS_E2E_FIX_DEADLINE=1` rewrites the
//!   header into a real epoch deadline instead (the service's form).
//! * The relay answers `POST /2015-03-31/functions/{name}/invocations` with
//!   202 at once and records the payload; the test then delivers each
//!   continuation itself through `watch`'s Invoke API. (`watch` would answer
//!   an `InvocationType=Event` call synchronously, so the function's own
//!   self-invoke would wait for its continuation.)
//!
//! * The strict Timestream endpoint runs in the test process (the
//!   `strict-timestream` library, as in `tests/ingest.rs`): same server as
//!   the binary, typed access to its records, counters and faults.
//!
//! `K6TS_E2E_KEEP=1` keeps the logs (moto, watch, each function).
//! `lambda_figures` (ignored; `scripts/lambda-figures.sh`) measures cold init
//! and throughput of a release binary on a big k6 result.

use flate2::read::MultiGzDecoder;
use k6_timestream::core::report::{Outcome, RunReport};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use strict_timestream::{Config, Faults, Server, ServerHandle, TableConfig};

const LAMBDA_BIN: &str = env!("CARGO_BIN_EXE_k6-timestream-lambda");
const CLI_BIN: &str = env!("CARGO_BIN_EXE_k6-timestream");
const DB: &str = "k6";
const TABLE: &str = "results";
/// The function name `cargo lambda watch` gives the binary.
const FUNCTION: &str = "k6-timestream-lambda";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

// ---------------------------------------------------------------------------
// Processes

/// A child process in its own process group; dropping it ends the group
/// (SIGTERM, then SIGKILL after 5 s).
struct Proc {
    name: String,
    child: Mutex<Child>,
    log: PathBuf,
    started: Instant,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0);
        let started = Instant::now();
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("starting {name} ({cmd:?}): {e}; the tools come from scripts/install-tools.sh")
        });
        Proc {
            name: name.to_owned(),
            child: Mutex::new(child),
            log,
            started,
        }
    }

    fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    fn alive(&self) -> bool {
        matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }

    /// The last `n` lines of its output.
    fn tail(&self, n: usize) -> String {
        let s = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        format!(
            "--- last lines of {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let pgid = child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on the process group this guard created.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if !matches!(child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The leader may be gone while others of its group are not.
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `ready` every 100 ms until it holds, `proc` dies, or `limit`.
fn wait_until(what: &str, limit: Duration, proc: Option<&Proc>, mut ready: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    loop {
        if ready() {
            return;
        }
        if let Some(p) = proc {
            assert!(p.alive(), "{what}: {} exited\n{}", p.name, p.tail(40));
        }
        assert!(
            Instant::now() < until,
            "{what}: not ready after {limit:?}{}",
            proc.map(|p| format!("\n{}", p.tail(40)))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_millis(ticks * 1000 / hz))
}

/// Peak resident set size (`VmHWM`) of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------
// Minimal HTTP/1.1 (std only): a client and request parsing for the relays.

#[derive(Debug)]
struct HttpMsg {
    /// Request: "METHOD PATH"; response: the status code.
    start: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpMsg {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

fn decode_chunked(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_txt = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        b = &b[eol + 2..];
        if size == 0 || b.len() < size {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..).unwrap_or_default();
    }
}

/// One request on a fresh connection (`Connection: close`), the answer read
/// to the end. Reads time out after `step`; `keep_waiting` decides whether
/// to go on (e.g. while the function process is alive), up to `limit`.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    limit: Duration,
    keep_waiting: &dyn Fn() -> bool,
) -> Result<HttpMsg, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let step = Duration::from_millis(500).min(limit);
    s.set_read_timeout(Some(step)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let until = Instant::now() + limit;
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= until {
                    return Err(format!(
                        "{method} {path} on {addr}: no complete answer after {limit:?}"
                    ));
                }
                if !keep_waiting() {
                    return Err(format!(
                        "{method} {path} on {addr}: gave up waiting (the function is gone)"
                    ));
                }
            }
            Err(e) => return Err(format!("{method} {path} on {addr}: {e}")),
        }
    }
    parse_response(&raw).ok_or_else(|| {
        format!(
            "{method} {path} on {addr}: unparsable answer {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(300)])
        )
    })
}

fn parse_head(head: &str) -> (String, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    (start, headers)
}

fn parse_response(raw: &[u8]) -> Option<HttpMsg> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let (start, headers) = parse_head(std::str::from_utf8(&raw[..end]).ok()?);
    let status = start.split(' ').nth(1)?.parse().ok()?;
    let mut m = HttpMsg {
        start,
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    if m.header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        m.body = decode_chunked(&m.body);
    } else if let Some(n) = m
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        m.body.truncate(n);
    }
    Some(m)
}

/// Reads one request from a server-side connection.
fn read_request(stream: &TcpStream) -> std::io::Result<Option<HttpMsg>> {
    let mut r = BufReader::new(stream.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line);
    }
    let (start, headers) = parse_head(head.trim_end());
    let mut m = HttpMsg {
        start,
        status: 0,
        headers,
        body: Vec::new(),
    };
    if m.header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        (&*stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if m.header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16)
                .unwrap_or(0);
            if n == 0 {
                // Trailers up to the empty line.
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l)? == 0 || l == "\r\n" {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            chunk.truncate(n);
            body.extend(chunk);
        }
        m.body = body;
    } else if let Some(n) = m
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut body = vec![0; n];
        r.read_exact(&mut body)?;
        m.body = body;
    }
    Ok(Some(m))
}

fn write_response(
    mut stream: &TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut s = format!("HTTP/1.1 {status} X\r\n");
    for (k, v) in headers {
        if !["connection", "content-length", "transfer-encoding"]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    s.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(s.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// A tiny threaded HTTP server: one request per connection.
struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    fn start(handler: impl Fn(HttpMsg, &TcpStream) + Send + Sync + 'static) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, handler) = (stop.clone(), Arc::new(handler));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || {
                    if let Ok(Some(req)) = read_request(&conn) {
                        handler(req, &conn);
                    }
                });
            }
        });
        HttpServer { addr, stop }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------
// The Lambda Invoke API relay and the runtime API proxy

#[derive(Debug, Clone)]
struct RelayedInvoke {
    method: String,
    path: String,
    invocation_type: Option<String>,
    payload: Value,
}

/// Answers the Lambda Invoke API with 202 at once and keeps the requests.
struct InvokeRelay {
    server: HttpServer,
    seen: Arc<Mutex<Vec<RelayedInvoke>>>,
}

impl InvokeRelay {
    fn start() -> InvokeRelay {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let server = HttpServer::start(move |req, conn| {
            let (method, path) = req
                .start
                .split_once(' ')
                .map(|(m, p)| (m.to_owned(), p.split(' ').next().unwrap_or("").to_owned()))
                .unwrap_or_default();
            let payload = serde_json::from_slice(&req.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into_owned()));
            seen2.lock().unwrap().push(RelayedInvoke {
                method,
                path,
                invocation_type: req.header("x-amz-invocation-type").map(str::to_owned),
                payload,
            });
            let _ = write_response(
                conn,
                202,
                &[("x-amzn-RequestId".into(), "relay".into())],
                b"",
            );
        });
        InvokeRelay { server, seen }
    }
    fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }
    fn take(&self) -> Vec<RelayedInvoke> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Forwards the function's runtime API calls to `watch` (optionally rewriting the deadline).
struct RuntimeProxy {
    server: HttpServer,
    /// When each function (by name) first asked for an invocation.
    first_next: Arc<Mutex<HashMap<String, Instant>>>,
}

impl RuntimeProxy {
    fn start(watch: SocketAddr) -> RuntimeProxy {
        let fix = std::env::var("K6TS_E2E_FIX_DEADLINE").is_ok_and(|v| v == "1");
        let first_next = Arc::new(Mutex::new(HashMap::new()));
        let fnx = first_next.clone();
        let server = HttpServer::start(move |req, conn| {
            let (method, rest) = req.start.split_once(' ').unwrap_or(("GET", "/"));
            let path = rest.split(' ').next().unwrap_or("/").to_owned();
            if path.ends_with("/runtime/invocation/next") {
                // /.rt/{function}/2018-06-01/runtime/invocation/next
                let name = path
                    .trim_start_matches("/.rt/")
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                fnx.lock().unwrap().entry(name).or_insert_with(Instant::now);
            }
            let fwd: Vec<(&str, &str)> = req
                .headers
                .iter()
                .filter(|(k, _)| {
                    ![
                        "host",
                        "connection",
                        "content-length",
                        "transfer-encoding",
                        "expect",
                    ]
                    .iter()
                    .any(|h| k.eq_ignore_ascii_case(h))
                })
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            // `next` is a long poll: wait as long as it takes.
            let res = match http(
                watch,
                method,
                &path,
                &fwd,
                &req.body,
                Duration::from_secs(24 * 3600),
                &|| true,
            ) {
                Ok(r) => r,
                Err(e) => {
                    let _ = write_response(conn, 502, &[], e.as_bytes());
                    return;
                }
            };
            let mut headers = res.headers.clone();
            if fix {
                for (k, v) in headers.iter_mut() {
                    if k.eq_ignore_ascii_case("lambda-runtime-deadline-ms") {
                        if let Ok(ms) = v.parse::<u64>() {
                            // Below 1e12 ms (2001) it is a duration, not a time.
                            if ms < 1_000_000_000_000 {
                                let now = SystemTime::now()
                                    .duration_since(UNIX_EPOCH)
                                    .unwrap()
                                    .as_millis() as u64;
                                *v = (now + ms).to_string();
                            }
                        }
                    }
                }
            }
            let _ = write_response(conn, res.status, &headers, &res.body);
        });
        RuntimeProxy { server, first_next }
    }
}

// ---------------------------------------------------------------------------
// The environment

struct Env {
    // Dropped after `drop` (which stops the strict endpoint): moto, …, the
    // runtime last.
    moto: Proc,
    strict: Option<ServerHandle>,
    relay: InvokeRelay,
    s3: aws_sdk_s3::Client,
    moto_url: String,
    dir: tempfile::TempDir,
    watches: std::sync::atomic::AtomicUsize,
    rt: tokio::runtime::Runtime,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(h) = self.strict.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}

impl Env {
    fn start() -> Env {
        let mut dir = tempfile::tempdir().unwrap();
        // K6TS_E2E_KEEP=1: keep the logs (moto, watch, the functions).
        if std::env::var_os("K6TS_E2E_KEEP").is_some_and(|v| v != "0") {
            dir.disable_cleanup(true);
            eprintln!("[lambda_e2e] logs kept in {}", dir.path().display());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let strict = rt
            .block_on(Server::start(
                "127.0.0.1:0".parse().unwrap(),
                Config {
                    tables: vec![TableConfig::new(DB, TABLE).with_magnetic_writes(true)],
                    ..Default::default()
                },
            ))
            .unwrap();

        let moto_port = free_port();
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &moto_port.to_string()]);
        let moto = Proc::spawn("moto_server", cmd, dir.path().join("moto.log"));
        let moto_addr: SocketAddr = format!("127.0.0.1:{moto_port}").parse().unwrap();
        wait_until("moto_server", Duration::from_secs(60), Some(&moto), || {
            http(
                moto_addr,
                "GET",
                "/",
                &[],
                b"",
                Duration::from_secs(2),
                &|| true,
            )
            .is_ok()
        });

        let moto_url = format!("http://{moto_addr}");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "lambda_e2e",
            ))
            .endpoint_url(&moto_url)
            .force_path_style(true)
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(conf);
        Env {
            relay: InvokeRelay::start(),
            moto,
            strict: Some(strict),
            s3,
            moto_url,
            dir,
            watches: Default::default(),
            rt,
        }
    }

    fn strict(&self) -> &ServerHandle {
        self.strict.as_ref().unwrap()
    }

    /// Starts a `cargo lambda watch` (runtime and Invoke API; it only knows
    /// the functions named like the crate's binaries), then the function
    /// binary against it, as `watch` would (its variables, plus the
    /// function's configuration), and waits until the function asks for its
    /// first invocation. One `watch` per function: each function instance
    /// has its own configuration, under the same name.
    fn start_function(&self, bin: &str, extra: &[(&str, &str)]) -> Function {
        let name = FUNCTION;
        let n = self.watches.fetch_add(1, Ordering::SeqCst);
        let watch_port = free_port();
        let mut cmd = Command::new("cargo");
        cmd.args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "--ignore-changes",
            "-A",
            "127.0.0.1",
            "-P",
            &watch_port.to_string(),
        ])
        .current_dir(root());
        let watch = Proc::spawn(
            "cargo lambda watch",
            cmd,
            self.dir.path().join(format!("watch-{n}.log")),
        );
        let watch_addr: SocketAddr = format!("127.0.0.1:{watch_port}").parse().unwrap();
        // (Any other path may be a function URL call: a TCP connect it is.)
        wait_until(
            "cargo lambda watch",
            Duration::from_secs(120),
            Some(&watch),
            || TcpStream::connect_timeout(&watch_addr, Duration::from_secs(1)).is_ok(),
        );
        let proxy = RuntimeProxy::start(watch_addr);

        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .current_dir(self.dir.path())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LOG", "info")
            // What `cargo lambda watch` sets.
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096")
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://{}/.rt/{name}", proxy.server.addr),
            )
            // Where the AWS services are.
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_ENDPOINT_URL_S3", &self.moto_url)
            .env(
                "AWS_ENDPOINT_URL_TIMESTREAM_WRITE",
                self.strict().endpoint_url(),
            )
            .env("AWS_ENDPOINT_URL_LAMBDA", self.relay.url())
            // The function's configuration (template.yaml's variables).
            .env("K6TS_DATABASE", DB)
            .env("K6TS_TABLE", TABLE);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let proc = Proc::spawn(name, cmd, self.dir.path().join(format!("{name}-{n}.log")));
        let mut init = Duration::ZERO;
        wait_until(
            &format!("function {name}: first /runtime/invocation/next"),
            Duration::from_secs(60),
            Some(&proc),
            || match proxy.first_next.lock().unwrap().get(name) {
                Some(t) => {
                    init = t.saturating_duration_since(proc.started);
                    true
                }
                None => false,
            },
        );
        Function {
            name: name.to_owned(),
            proc,
            init,
            _proxy: proxy,
            watch,
            watch_addr,
        }
    }

    /// Invokes through `watch`'s Invoke API (RequestResponse) and returns the
    /// function's answer.
    fn invoke(&self, f: &Function, payload: &Value) -> Value {
        let body = serde_json::to_vec(payload).unwrap();
        let path = format!("/2015-03-31/functions/{}/invocations", f.name);
        let res = http(
            f.watch_addr,
            "POST",
            &path,
            &[("Content-Type", "application/json")],
            &body,
            Duration::from_secs(300),
            &|| f.proc.alive(),
        )
        .unwrap_or_else(|e| {
            panic!(
                "invoke {}: {e}\n{}\n{}\n{}",
                f.name,
                f.proc.tail(40),
                f.watch.tail(20),
                self.moto.tail(20)
            )
        });
        assert_eq!(
            res.status,
            200,
            "invoke {}: {res:?}\n{}",
            f.name,
            f.proc.tail(40)
        );
        let v = res.json();
        assert!(
            v.get("errorMessage").is_none() && res.header("x-amz-function-error").is_none(),
            "invoke {}: function error {v}\n{}",
            f.name,
            f.proc.tail(40)
        );
        v
    }

    fn reports(&self, f: &Function, payload: &Value) -> Vec<RunReport> {
        let v = self.invoke(f, payload);
        serde_json::from_value::<Vec<RunReport>>(v["reports"].clone())
            .unwrap_or_else(|e| panic!("not a report list ({e}): {v}"))
    }

    fn create_bucket(&self, bucket: &str, versioned: bool) {
        self.rt.block_on(async {
            self.s3.create_bucket().bucket(bucket).send().await.unwrap();
            if versioned {
                use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
                let vc = VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build();
                self.s3
                    .put_bucket_versioning()
                    .bucket(bucket)
                    .versioning_configuration(vc)
                    .send()
                    .await
                    .unwrap();
            }
        });
    }

    /// Uploads; returns the object's ETag (unquoted, as S3 events carry it)
    /// and version.
    fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Uploaded {
        let size = body.len() as u64;
        let out = self
            .rt
            .block_on(
                self.s3
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(body.into())
                    .send(),
            )
            .unwrap_or_else(|e| panic!("put s3://{bucket}/{key}: {e:?}"));
        Uploaded {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag: out.e_tag().unwrap().trim_matches('"').to_owned(),
            version_id: out.version_id().map(str::to_owned),
            size,
        }
    }

    fn get(&self, bucket: &str, key: &str) -> String {
        self.rt.block_on(async {
            let out = self
                .s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get s3://{bucket}/{key}: {e:?}"));
            String::from_utf8(out.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()
        })
    }

    fn stored(&self) -> Vec<M> {
        sorted(
            self.strict()
                .records(DB, TABLE)
                .into_iter()
                .map(|m| {
                    (
                        m.dimensions,
                        m.measure_name,
                        m.sub_measure,
                        m.time_ns,
                        m.value,
                    )
                })
                .collect(),
        )
    }
}

/// A function instance and its runtime API (dropped in this order).
struct Function {
    name: String,
    proc: Proc,
    /// Process start → first `next` request.
    init: Duration,
    _proxy: RuntimeProxy,
    watch: Proc,
    watch_addr: SocketAddr,
}

#[derive(Debug, Clone)]
struct Uploaded {
    bucket: String,
    key: String,
    etag: String,
    version_id: Option<String>,
    size: u64,
}

// ---------------------------------------------------------------------------
// Events and expectations

fn sample_event(name: &str) -> Value {
    let p = root().join("events").join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

/// Form-urlencodes a key as S3 does in event notifications.
fn s3_encode(key: &str) -> String {
    let mut s = String::new();
    for b in key.bytes() {
        match b {
            b' ' => s.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => {
                s.push(b as char)
            }
            _ => s.push_str(&format!("%{b:02X}")),
        }
    }
    s
}

/// A sample S3 event with record `i` pointed at `objs[i]`: bucket, ETag,
/// size, version; the key replaced by its S3 encoding unless `keep_keys`
/// (then the sample's own encoded key is kept and must name the object).
fn s3_event(sample: &str, objs: &[&Uploaded], keep_keys: bool) -> Value {
    let mut ev = sample_event(sample);
    let records = ev["Records"].as_array_mut().unwrap();
    assert_eq!(records.len(), objs.len(), "{sample}: one object per record");
    for (r, o) in records.iter_mut().zip(objs) {
        let s3 = &mut r["s3"];
        s3["bucket"]["name"] = json!(o.bucket);
        s3["bucket"]["arn"] = json!(format!("arn:aws:s3:::{}", o.bucket));
        if !keep_keys {
            s3["object"]["key"] = json!(s3_encode(&o.key));
        }
        s3["object"]["eTag"] = json!(o.etag);
        s3["object"]["size"] = json!(o.size);
        match &o.version_id {
            Some(v) => s3["object"]["versionId"] = json!(v),
            None => {
                s3["object"].as_object_mut().unwrap().remove("versionId");
            }
        }
    }
    ev
}

/// A stored or expected measure: (dimensions, measure name, sub-measure, time ns, value).
type M = (
    BTreeMap<String, String>,
    String,
    Option<String>,
    i64,
    String,
);

fn sorted(mut v: Vec<M>) -> Vec<M> {
    v.sort();
    v
}

/// What `k6-timestream convert` makes of `file` (as the function would for
/// an object named `key`), expanded into measures, and its report.
fn expected(file: &Path, key: &str) -> (Vec<M>, RunReport) {
    let testid = k6_timestream::core::convert::derive_testid(key);
    let summary = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(CLI_BIN)
        .args([
            "convert",
            "--testid",
            &testid,
            "--summary-json",
            summary.path().to_str().unwrap(),
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "convert {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: RunReport =
        serde_json::from_str(&std::fs::read_to_string(summary.path()).unwrap()).unwrap();
    let mut v = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let req: Value = serde_json::from_str(line).unwrap();
        let common = &req["CommonAttributes"];
        let dims_of = |d: &Value, into: &mut BTreeMap<String, String>| {
            for d in d["Dimensions"].as_array().into_iter().flatten() {
                into.insert(
                    d["Name"].as_str().unwrap().to_owned(),
                    d["Value"].as_str().unwrap().to_owned(),
                );
            }
        };
        let mut cdims = BTreeMap::new();
        dims_of(common, &mut cdims);
        for r in req["Records"].as_array().unwrap() {
            let mut dims = cdims.clone();
            dims_of(r, &mut dims);
            let name = r["MeasureName"]
                .as_str()
                .or(common["MeasureName"].as_str())
                .unwrap()
                .to_owned();
            let t: i64 = r["Time"]
                .as_str()
                .or(common["Time"].as_str())
                .unwrap()
                .parse()
                .unwrap();
            if let Some(mv) = r["MeasureValues"].as_array() {
                for m in mv {
                    v.push((
                        dims.clone(),
                        name.clone(),
                        Some(m["Name"].as_str().unwrap().to_owned()),
                        t,
                        m["Value"].as_str().unwrap().to_owned(),
                    ));
                }
            } else {
                v.push((
                    dims,
                    name,
                    None,
                    t,
                    r["MeasureValue"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    (sorted(v), report)
}

/// Equal multisets (both sorted); otherwise a panic naming a few measures
/// only one side has.
fn assert_same(got: &[M], want: &[M], what: &str) {
    if got == want {
        return;
    }
    fn count(v: &[M]) -> BTreeMap<&M, i64> {
        let mut m = BTreeMap::new();
        for x in v {
            *m.entry(x).or_default() += 1;
        }
        m
    }
    let (g, w) = (count(got), count(want));
    let only = |a: &BTreeMap<&M, i64>, b: &BTreeMap<&M, i64>| -> Vec<String> {
        a.iter()
            .filter(|(k, n)| b.get(*k).copied().unwrap_or(0) < **n)
            .take(5)
            .map(|(k, n)| format!("  {n}x {k:?}"))
            .collect()
    };
    panic!(
        "{what}: {} measures stored, {} expected\nexpected, not stored:\n{}\nstored, not expected:\n{}",
        got.len(),
        want.len(),
        only(&w, &g).join("\n"),
        only(&g, &w).join("\n")
    );
}

/// The checks every fully processed k6 object must pass.
fn assert_complete(r: &RunReport, want: &RunReport, what: &str) {
    assert_eq!(
        r.outcome.map(Outcome::as_str),
        Some("complete"),
        "{what}: {r:#?}"
    );
    assert!(r.complete && r.error.is_none(), "{what}: {r:#?}");
    assert_eq!(
        (r.points, r.measures, r.records, r.batches),
        (want.points, want.measures, want.records, want.batches),
        "{what}: conversion differs from the CLI's"
    );
    assert_eq!(r.dropped, want.dropped, "{what}");
    assert_eq!(r.skipped, want.skipped, "{what}");
    assert_eq!(
        r.measures,
        r.points - r.dropped_total(),
        "{what}: measures = points - Σdropped"
    );
    assert_eq!(r.written_measures, r.measures, "{what}: written_measures");
    assert_eq!(
        (
            r.dead_lettered,
            r.dead_lettered_measures,
            r.rejected_records
        ),
        (0, 0, 0),
        "{what}: {r:#?}"
    );
}

fn gunzip(p: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    MultiGzDecoder::new(File::open(p).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// `copies` runs of `mixed.json.gz` in one file, like consecutive k6 runs
/// appended: copy k is `copies - 1 - k` years older than the fixture (times
/// rewritten, nothing else), so the file stays in time order as k6 writes.
fn k6_runs(copies: i32) -> Vec<u8> {
    let base = String::from_utf8(gunzip(&fixture("mixed.json.gz"))).unwrap();
    let mut out = String::new();
    const AT: &str = "\"data\":{\"time\":\"";
    for k in 0..copies {
        let back = copies - 1 - k;
        for line in base.lines() {
            match line.find(AT) {
                Some(i) if back > 0 => {
                    let y = i + AT.len();
                    let year: i32 = line[y..y + 4].parse().unwrap();
                    assert!(!line[y..].starts_with(&format!("{year}-02-29")));
                    out.push_str(&line[..y]);
                    out.push_str(&format!("{:04}", year - back));
                    out.push_str(&line[y + 4..]);
                }
                _ => out.push_str(line),
            }
            out.push('\n');
        }
    }
    out.into_bytes()
}

// ---------------------------------------------------------------------------
// The test

#[test]
fn lambda_end_to_end() {
    let t0 = Instant::now();
    let env = Env::start();
    eprintln!(
        "[lambda_e2e] moto, strict endpoint, relay up in {:.1?}",
        t0.elapsed()
    );
    let f = env.start_function(LAMBDA_BIN, &[]);
    eprintln!(
        "[lambda_e2e] debug binary: start -> first /next {:.1?}",
        f.init
    );
    let bucket = "k6-e2e";
    let vbucket = "k6-e2e-versioned";
    env.create_bucket(bucket, false);
    env.create_bucket(vbucket, true);

    // 1. Plain and gzip objects from S3 ObjectCreated events.
    for (sample, key, file) in [
        ("s3-put-plain.json", "k6-results/run-1.json", "plain.json"),
        (
            "s3-put-gzip.json",
            "k6-results/run-2.json.gz",
            "mixed.json.gz",
        ),
    ] {
        env.strict().reset();
        let up = env.put(bucket, key, std::fs::read(fixture(file)).unwrap());
        let (want, want_r) = expected(&fixture(file), key);
        let reports = env.reports(&f, &s3_event(sample, &[&up], false));
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        let what = format!("{sample} ({file})");
        assert_complete(r, &want_r, &what);
        assert_eq!(r.input, format!("s3://{bucket}/{key}"));
        assert_eq!(r.gzip, file.ends_with(".gz"), "{what}");
        let stored = env.stored();
        assert_eq!(stored.len() as u64, r.points - r.dropped_total(), "{what}");
        assert_same(&stored, &want, &what);
        assert_eq!(env.strict().stats().records_rejected, 0, "{what}");
        eprintln!(
            "[lambda_e2e] {what}: {} points -> {} measures, {:.2} s",
            r.points, r.written_measures, r.seconds
        );
    }

    // 1b. Three objects in one event (the multi-record sample; one key has
    // `+` for a space, one object is the synthetic edge-case file).
    env.strict().reset();
    let files = [
        ("k6-results/batch/run-3.json", "plain.json"),
        ("k6-results/batch/run-4.json.gz", "notags.json.gz"),
        ("k6-results/batch/run 5.ndjson", "edge_cases.ndjson"),
    ];
    let ups: Vec<Uploaded> = files
        .iter()
        .map(|(k, f)| env.put(bucket, k, std::fs::read(fixture(f)).unwrap()))
        .collect();
    let reports = env.reports(
        &f,
        &s3_event(
            "s3-multi-record.json",
            &ups.iter().collect::<Vec<_>>(),
            true,
        ),
    );
    assert_eq!(reports.len(), 3);
    let mut want_all = Vec::new();
    let mut points = 0;
    for ((key, file), r) in files.iter().zip(&reports) {
        let (want, want_r) = expected(&fixture(file), key);
        assert_eq!(r.input, format!("s3://{bucket}/{key}"));
        assert_complete(r, &want_r, &format!("s3-multi-record.json: {key}"));
        want_all.extend(want);
        points += r.points - r.dropped_total();
    }
    // edge_cases.ndjson has identical points (same metric, no tags, same
    // time and value: `tags` null / {} / absent). The converter leaves
    // identical records alone and Timestream keeps one of them: the table
    // holds fewer measures than the report's `measures` by exactly those.
    let mut want_all = sorted(want_all);
    let n = want_all.len();
    want_all.dedup();
    let identical = (n - want_all.len()) as u64;
    assert_eq!(
        identical, 2,
        "edge_cases.ndjson: 3 identical tag-less points"
    );
    let stored = env.stored();
    assert_eq!(
        stored.len() as u64 + identical,
        points,
        "s3-multi-record.json: stored + identical duplicates = points - Σdropped"
    );
    assert_same(&stored, &want_all, "s3-multi-record.json");

    // 2. Encoded keys: space → `+`, `+` → %2B, UTF-8 and `=` percent-encoded.
    env.strict().reset();
    let key = "k6-results/my run+1 résumé=x.json.gz";
    assert_eq!(
        s3_encode(key),
        "k6-results/my+run%2B1+r%C3%A9sum%C3%A9%3Dx.json.gz"
    );
    let up = env.put(
        bucket,
        key,
        std::fs::read(fixture("offset.json.gz")).unwrap(),
    );
    let event = s3_event("s3-put-encoded-key.json", &[&up], false);
    let reports = env.reports(&f, &event);
    let (want, want_r) = expected(&fixture("offset.json.gz"), key);
    assert_complete(&reports[0], &want_r, "encoded key");
    assert_eq!(reports[0].input, format!("s3://{bucket}/{key}"));
    let stored = env.stored();
    assert!(
        stored
            .iter()
            .all(|m| m.0.get("testid").map(String::as_str) == Some("my run+1 résumé=x")),
        "testid from the decoded key"
    );
    assert_same(&stored, &want, "encoded key");
    // The sample event's own encoded key.
    let sample_key = "k6-results/team a+b/run=1 100% ✓ héllo 日本 🚀.json.gz";
    let up2 = env.put(
        bucket,
        sample_key,
        std::fs::read(fixture("notags.json.gz")).unwrap(),
    );
    let r2 = env.reports(&f, &s3_event("s3-put-encoded-key.json", &[&up2], true));
    assert_eq!(r2[0].input, format!("s3://{bucket}/{sample_key}"));
    assert_complete(
        &r2[0],
        &expected(&fixture("notags.json.gz"), sample_key).1,
        "sample encoded key",
    );

    // 3. The same event again: identical records are duplicates.
    let before = env.strict().stats();
    let count = env.strict().record_count(DB, TABLE);
    let again = env.reports(&f, &event);
    assert_complete(&again[0], &want_r, "duplicate event");
    let after = env.strict().stats();
    assert_eq!(after.records_rejected, 0, "duplicate event: rejections");
    assert_eq!(
        after.records_stored, before.records_stored,
        "duplicate event: nothing new stored"
    );
    assert_eq!(
        after.records_duplicate - before.records_duplicate,
        want_r.records,
        "duplicate event: every record a duplicate"
    );
    assert_eq!(
        env.strict().record_count(DB, TABLE),
        count,
        "duplicate event: measure count"
    );

    // 4. Replaced since the event (ETag no longer matches): `replaced`, no error.
    env.strict().reset();
    let old = env.put(
        bucket,
        "k6-results/replaced.json",
        std::fs::read(fixture("plain.json")).unwrap(),
    );
    let new = env.put(
        bucket,
        "k6-results/replaced.json",
        std::fs::read(fixture("special_values.json")).unwrap(),
    );
    assert_ne!(old.etag, new.etag);
    let r = &env.reports(&f, &s3_event("s3-put-plain.json", &[&old], false))[0];
    assert_eq!(r.outcome.map(Outcome::as_str), Some("replaced"), "{r:#?}");
    assert!(
        r.error.as_deref().unwrap_or("").contains("replaced"),
        "{r:#?}"
    );
    assert_eq!(
        (r.written_measures, r.points, r.batches_written),
        (0, 0, 0),
        "{r:#?}"
    );
    assert_eq!(
        env.strict().stats().write_calls,
        0,
        "replaced: nothing written"
    );

    // 4b. Versioned bucket: the event's version is read even after an overwrite.
    env.strict().reset();
    let v1 = env.put(
        vbucket,
        "k6-results/run-6.json.gz",
        std::fs::read(fixture("notags.json.gz")).unwrap(),
    );
    let _v2 = env.put(
        vbucket,
        "k6-results/run-6.json.gz",
        std::fs::read(fixture("offset.json.gz")).unwrap(),
    );
    assert!(v1.version_id.is_some(), "moto gives versions");
    let r = &env.reports(&f, &s3_event("s3-put-versioned.json", &[&v1], false))[0];
    let (want, want_r) = expected(&fixture("notags.json.gz"), &v1.key);
    assert_complete(r, &want_r, "versioned");
    assert_eq!(r.version_id, v1.version_id, "the event's version");
    assert_same(
        &env.stored(),
        &want,
        "versioned: the first version's points",
    );
    // Direct re-processing (sample event; key not encoded) of a version.
    env.strict().reset();
    let d1 = env.put(
        vbucket,
        sample_key,
        std::fs::read(fixture("plain.json")).unwrap(),
    );
    env.put(
        vbucket,
        sample_key,
        std::fs::read(fixture("offset.json.gz")).unwrap(),
    );
    let mut direct = sample_event("direct-reprocess.json");
    direct["bucket"] = json!(vbucket);
    assert_eq!(direct["key"], json!(sample_key));
    direct["version_id"] = json!(d1.version_id);
    let r = &env.reports(&f, &direct)[0];
    let (want, want_r) = expected(&fixture("plain.json"), sample_key);
    assert_complete(r, &want_r, "direct re-process");
    assert_same(&env.stored(), &want, "direct re-process");

    // 5. Not k6 results.
    env.strict().reset();
    let up = env.put(bucket, "k6-results/notes.txt", b"not results\n".to_vec());
    let r = &env.reports(&f, &s3_event("s3-put-plain.json", &[&up], false))[0];
    assert_eq!(r.outcome.map(Outcome::as_str), Some("skipped"), "{r:#?}");
    assert!(r.error.is_none() && r.points == 0, "{r:#?}");
    let up = env.put(
        bucket,
        "k6-results/hello.json",
        b"{\"hello\":\"world\"}\n{\"hello\":\"again\"}\n\n{\"type\":\"Summary\",\"data\":{}}\n"
            .to_vec(),
    );
    // JSON, but no k6 line in it: one error, `failed`, not retried.
    let r = &env.reports(&f, &s3_event("s3-put-plain.json", &[&up], false))[0];
    assert_eq!(r.outcome.map(Outcome::as_str), Some("failed"), "{r:#?}");
    let e = r.error.as_deref().unwrap_or_default();
    assert!(
        e.starts_with("s3://") && e.contains("k6-results/hello.json: not k6 output"),
        "{r:#?}"
    );
    assert_eq!(
        (
            r.points,
            r.records,
            r.written_records,
            r.lines,
            r.blank_lines
        ),
        (0, 0, 0, 4, 1),
        "{r:#?}"
    );
    assert!(r.skipped.is_empty() && r.ignored.is_empty(), "{r:#?}");
    assert_eq!(env.strict().stats().write_calls, 0, "no records");

    // 7. Rejected records: dead letters in S3, next to the object.
    env.strict().reset();
    env.strict().set_faults(Faults {
        reject_rate: 0.1,
        ..Default::default()
    });
    let key = "k6-results/rejects.json.gz";
    let up = env.put(
        bucket,
        key,
        std::fs::read(fixture("mixed.json.gz")).unwrap(),
    );
    let r = &env.reports(&f, &s3_event("s3-put-gzip.json", &[&up], false))[0];
    env.strict().set_faults(Faults::default());
    let (want, want_r) = expected(&fixture("mixed.json.gz"), key);
    assert_eq!(r.outcome.map(Outcome::as_str), Some("complete"), "{r:#?}");
    assert_eq!(
        (r.points, r.measures, r.records),
        (want_r.points, want_r.measures, want_r.records)
    );
    assert!(
        r.dead_lettered > 0 && r.rejected_records == r.dead_lettered,
        "{r:#?}"
    );
    assert_eq!(
        r.written_measures + r.dead_lettered_measures,
        r.measures,
        "{r:#?}"
    );
    let dl_key = format!("k6-timestream-dead-letter/{bucket}/{key}.from-batch-0.part-0001.jsonl");
    assert_eq!(
        r.dead_letter_location.as_deref(),
        Some(format!("s3://{bucket}/{dl_key}").as_str())
    );
    let letters = env.get(bucket, &dl_key);
    let letters: Vec<Value> = letters
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len() as u64, r.dead_lettered);
    assert_eq!(
        letters
            .iter()
            .map(|l| l["measures"].as_u64().unwrap())
            .sum::<u64>(),
        r.dead_lettered_measures
    );
    assert!(letters.iter().all(|l| l["kind"] == "rejected" && l["input"] == json!(format!("s3://{bucket}/{key}"))), "{}", letters[0]);
    let stored = env.stored();
    assert_eq!(stored.len() as u64, r.written_measures);
    let mut rest = want.clone();
    for m in &stored {
        let i = rest
            .binary_search(m)
            .unwrap_or_else(|_| panic!("stored, not expected: {m:?}"));
        rest.remove(i);
    }
    // The dead-letter object's own event is not k6 results (no loop).
    let dl = Uploaded {
        bucket: bucket.into(),
        key: dl_key.clone(),
        etag: String::new(),
        version_id: None,
        size: 0,
    };
    let r = &env.reports(&f, &s3_event("s3-put-plain.json", &[&dl], false))[0];
    assert_eq!(r.outcome.map(Outcome::as_str), Some("skipped"), "{r:#?}");
    assert!(env.relay.take().is_empty(), "nothing continued so far");

    // 6. Continuations: a small work budget, one request at a time, slow
    // writes. A write takes longer (200 ms) than the budget (0.2 s), so each
    // link writes exactly one request and stops; the last-but-one link then
    // always stops with the final request already queued by the converter
    // (the case that lost it before src/ingest.rs also honoured the
    // writer's stop). 15 requests: 15 links, ~6 s.
    drop(f);
    let g = env.start_function(
        LAMBDA_BIN,
        &[
            ("K6TS_WORK_BUDGET_SECONDS", "0.2"),
            ("K6TS_CONCURRENCY", "1"),
        ],
    );
    env.strict().reset();
    env.strict().set_faults(Faults {
        latency_ms: 200,
        ..Default::default()
    });
    let key = "k6-results/chain.json.gz";
    let raw = k6_runs(2);
    let local = env.dir.path().join("chain.json");
    std::fs::write(&local, &raw).unwrap();
    let (want, want_r) = expected(&local, key);
    let up = env.put(bucket, key, gzip(&raw));
    let t = Instant::now();
    let mut report = env
        .reports(&g, &s3_event("s3-put-gzip.json", &[&up], false))
        .remove(0);
    let mut relayed = Vec::new();
    let mut links = 1;
    let sample_cont = sample_event("continuation.json");
    while report.outcome.map(Outcome::as_str) == Some("continued") {
        let got = env.relay.take();
        assert_eq!(
            got.len(),
            1,
            "one continuation per stopped invocation: {got:?}"
        );
        let c = got.into_iter().next().unwrap();
        assert_eq!(c.method, "POST");
        assert_eq!(
            c.path,
            format!("/2015-03-31/functions/{FUNCTION}/invocations"),
            "the function continues itself"
        );
        assert_eq!(
            c.invocation_type.as_deref(),
            Some("Event"),
            "asynchronous invoke"
        );
        let cont = &c.payload["continuation"];
        for k in sample_cont["continuation"].as_object().unwrap().keys() {
            assert!(
                cont.get(k).is_some(),
                "continuation without {k:?} (events/continuation.json has it): {cont}"
            );
        }
        assert_eq!(
            (
                cont["bucket"].as_str(),
                cont["key"].as_str(),
                cont["etag"].as_str()
            ),
            (Some(bucket), Some(key), Some(up.etag.as_str())),
            "pinned object"
        );
        assert_eq!(cont["attempt"], json!(links), "attempt numbers");
        relayed.push(c.payload.clone());
        assert!(links < 60, "continuation chain does not end");
        report = env.reports(&g, &c.payload).remove(0);
        links += 1;
        eprintln!(
            "[lambda_e2e] link {links}: {} after skipping {} requests; so far {} requests, {} measures written",
            report.outcome.map(Outcome::as_str).unwrap_or("?"),
            report.batches_skipped,
            report.batches_written,
            report.written_measures
        );
    }
    let chain_secs = t.elapsed().as_secs_f64();
    env.strict().set_faults(Faults::default());
    assert!(
        env.relay.take().is_empty(),
        "no continuation after the last link"
    );
    let skips: Vec<u64> = relayed
        .iter()
        .map(|p| p["continuation"]["skip_batches"].as_u64().unwrap())
        .collect();
    eprintln!(
        "[lambda_e2e] continuations: {links} links, skip_batches {skips:?}, {chain_secs:.1} s"
    );
    let r = &report;
    assert_eq!(r.outcome.map(Outcome::as_str), Some("complete"), "{r:#?}");
    assert!(
        relayed.len() >= 3 && r.continuations >= 3,
        "at least 3 continuations, got {} ({r:#?})",
        relayed.len()
    );
    assert!(
        skips.windows(2).all(|w| w[0] < w[1]) && skips[0] > 0,
        "every link makes progress: {skips:?}"
    );
    assert_eq!(r.continuations, relayed.len() as u64);
    assert_eq!(
        (r.points, r.measures, r.records, r.batches),
        (
            want_r.points,
            want_r.measures,
            want_r.records,
            want_r.batches
        )
    );
    assert_eq!(
        r.measures,
        r.points - r.dropped_total(),
        "measures = points - Σdropped"
    );
    assert_eq!(
        r.written_measures + r.dead_lettered_measures,
        r.measures,
        "nothing lost, nothing counted twice: {r:#?}"
    );
    assert_eq!(
        r.batches_written, r.batches,
        "every request written exactly once over the chain: {r:#?}"
    );
    let stats = env.strict().stats();
    assert_eq!(
        (
            stats.records_stored,
            stats.records_duplicate,
            stats.records_rejected
        ),
        (want_r.records, 0, 0),
        "{stats:?}"
    );
    assert_same(&env.stored(), &want, "continuation chain");

    drop(g);
    eprintln!("[lambda_e2e] done in {:.1?}", t0.elapsed());
}

/// Figures for the docs (run by `scripts/lambda-figures.sh`): cold init of
/// the binary in `K6TS_E2E_LAMBDA_BIN` (default: this build's), first-invoke
/// latency, and points/s with peak RSS on `K6TS_E2E_BIG` (a big k6 result,
/// `scripts/fixtures/big.sh`).
#[test]
#[ignore]
fn lambda_figures() {
    let bin = std::env::var("K6TS_E2E_LAMBDA_BIN").unwrap_or_else(|_| LAMBDA_BIN.to_owned());
    let env = Env::start();
    let bucket = "k6-figures";
    env.create_bucket(bucket, false);
    let up = env.put(
        bucket,
        "k6-results/small.json",
        std::fs::read(fixture("plain.json")).unwrap(),
    );
    let mut inits = Vec::new();
    let mut firsts = Vec::new();
    for _ in 0..5 {
        let f = env.start_function(&bin, &[]);
        inits.push(f.init);
        let t = Instant::now();
        let r = env.reports(&f, &s3_event("s3-put-plain.json", &[&up], false));
        assert_eq!(r[0].outcome.map(Outcome::as_str), Some("complete"));
        firsts.push(f.init + t.elapsed());
    }
    inits.sort();
    firsts.sort();
    eprintln!("[figures] binary: {bin}");
    eprintln!("[figures] cold init (spawn -> first /runtime/invocation/next), 5 runs: {inits:?}; median {:?}", inits[2]);
    eprintln!(
        "[figures] cold first invoke (spawn -> response, plain.json {} points): median {:?}",
        436, firsts[2]
    );

    let Ok(big) = std::env::var("K6TS_E2E_BIG") else {
        eprintln!("[figures] K6TS_E2E_BIG not set: no throughput figure");
        return;
    };
    let body = std::fs::read(&big).unwrap();
    let up = env.put(bucket, "k6-results/big.json.gz", body);
    env.strict().reset();
    let f = env.start_function(&bin, &[]);
    let rss0 = vm_hwm_kib(f.proc.pid()).unwrap_or(0);
    let cpu0 = cpu_time(f.proc.pid()).unwrap_or_default();
    let t = Instant::now();
    let r = env
        .reports(&f, &s3_event("s3-put-gzip.json", &[&up], false))
        .remove(0);
    let wall = t.elapsed().as_secs_f64();
    let rss = vm_hwm_kib(f.proc.pid()).unwrap_or(0);
    let cpu = cpu_time(f.proc.pid())
        .unwrap_or_default()
        .saturating_sub(cpu0);
    assert_eq!(r.outcome.map(Outcome::as_str), Some("complete"), "{r:#?}");
    assert_eq!(r.written_measures, r.measures, "{r:#?}");
    eprintln!(
        "[figures] {big}: {} lines, {} points, {} records, {} requests; invoke wall {wall:.2} s -> {:.0} points/s ({:.0} records/s); report seconds {:.2}",
        r.lines,
        r.points,
        r.records,
        r.batches,
        r.points as f64 / wall,
        r.records as f64 / wall,
        r.seconds
    );
    eprintln!(
        "[figures] function: CPU {cpu:.2?} for the object ({:.0}% of the wall time; the rest waits on S3/Timestream, \
         which share the 2 cores here); VmHWM {} MiB after the big object ({} MiB idle after init)",
        cpu.as_secs_f64() * 100.0 / wall,
        rss / 1024,
        rss0 / 1024
    );
    assert_eq!(env.strict().record_count(DB, TABLE) as u64, r.measures);
}
