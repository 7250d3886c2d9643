//! The Lambda's world for end-to-end tests: S3 (moto), the strict
//! Timestream endpoint, a Lambda Invoke API relay, and the real
//! `k6-timestream-lambda` binary run either under `cargo lambda watch`
//! (through a runtime API proxy) or against [`RuntimeApi`]; sample events
//! and what a run must report.
//!
//! ```text
//!  test ──Invoke──▶ cargo lambda watch ◀──runtime API── runtime proxy ◀── k6-timestream-lambda
//!                   (--only-lambda-apis)                (deadline fix)      │  │  │
//!                         S3: moto_server (or a fault proxy before it) ◀────┘  │  │
//!                         Timestream: strict-timestream (in process) ◀────────┘  │
//!          Lambda Invoke (Event): relay (202, records the payload) ◀─────────────┘
//! ```
//!
//! * `watch` runs with `--only-lambda-apis --ignore-changes`: it is the
//!   runtime API and the Invoke API; the function process is started by the
//!   test from the binary cargo built for this test (`CARGO_BIN_EXE_…`), with
//!   the environment `watch` would give it. That avoids a `cargo run` (and a
//!   rebuild whenever someone edits the tree) inside the test, and gives the
//!   test the function's PID (peak RSS, SIGKILL) and start instant (cold
//!   init). `watch` only serves functions named like the crate's binaries,
//!   so each function configuration gets its own `watch` (about a second to
//!   start) under the real name `k6-timestream-lambda`.
//! * The runtime proxy forwards the function's runtime API calls to `watch`
//!   unchanged (it notes when the function first asks for work: cold init).
//!   cargo-lambda 1.9.2 sends `Lambda-Runtime-Deadline-Ms: 600000` (a
//!   duration) where the Lambda service sends epoch milliseconds; the
//!   handler reads such a 1970 "deadline" as the time left, and the tests
//!   run against exactly that. `K6TS_E2E_FIX_DEADLINE=1` rewrites the
//!   header into a real epoch deadline instead (the service's form).
//! * The relay answers `POST /2015-03-31/functions/{name}/invocations` with
//!   202 at once and records the payload; the test then delivers each
//!   continuation itself through `watch`'s Invoke API. (`watch` would answer
//!   an `InvocationType=Event` call synchronously, so the function's own
//!   self-invoke would wait for its continuation.)
//! * The strict Timestream endpoint runs in the test process: typed access
//!   to its records, counters and faults.
//!
//! Everything is started on free 127.0.0.1 ports and stopped by Drop guards
//! (process groups: SIGTERM, then SIGKILL), also when a check fails.
//! `K6TS_E2E_KEEP=1` keeps the logs (moto, watch, each function).

use super::http::{end_to_end_headers, header_map, response, Client, Server};
use super::measures::{self, M};
use super::moto::Moto;
use super::procs::{fake_aws_env, free_port, log_dir, wait_until, Proc};
use super::runtime_api::{FunctionError, RuntimeApi};
use super::strict::Strict;
use super::{fixture, gunzip, gzip, root};
use hyper::{Method, Response};
use k6_timestream::core::report::{Outcome, RunReport};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use strict_timestream::{ServerHandle, TableConfig};

pub const LAMBDA_BIN: &str = env!("CARGO_BIN_EXE_k6-timestream-lambda");
pub const DB: &str = "k6";
pub const TABLE: &str = "results";
/// The function name `cargo lambda watch` gives the binary.
pub const FUNCTION: &str = "k6-timestream-lambda";

// ---------------------------------------------------------------------------
// The Lambda Invoke API relay and the runtime API proxy

#[derive(Debug, Clone)]
pub struct RelayedInvoke {
    pub method: String,
    pub path: String,
    pub invocation_type: Option<String>,
    pub payload: Value,
}

/// Answers the Lambda Invoke API with 202 at once and keeps the requests.
pub struct InvokeRelay {
    server: Server,
    seen: Arc<Mutex<Vec<RelayedInvoke>>>,
}

impl InvokeRelay {
    pub fn start(rt: &tokio::runtime::Handle) -> InvokeRelay {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let server = Server::start(rt, move |req, _| {
            let payload = serde_json::from_slice(&req.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into_owned()));
            seen2.lock().unwrap().push(RelayedInvoke {
                method: req.method.to_string(),
                path: req.path.clone(),
                invocation_type: req.header("x-amz-invocation-type").map(str::to_owned),
                payload,
            });
            std::future::ready(response(202, &[("x-amzn-RequestId", "relay")], ""))
        });
        InvokeRelay { server, seen }
    }
    pub fn url(&self) -> String {
        self.server.url()
    }
    pub fn take(&self) -> Vec<RelayedInvoke> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Forwards the function's runtime API calls to `watch` (optionally rewriting the deadline).
pub struct RuntimeProxy {
    server: Server,
    /// When each function (by name) first asked for an invocation.
    first_next: Arc<Mutex<HashMap<String, Instant>>>,
}

impl RuntimeProxy {
    pub fn start(rt: &tokio::runtime::Handle, watch: SocketAddr) -> RuntimeProxy {
        let fix = std::env::var("K6TS_E2E_FIX_DEADLINE").is_ok_and(|v| v == "1");
        let first_next = Arc::new(Mutex::new(HashMap::new()));
        let fnx = first_next.clone();
        let client = Client::default();
        let server = Server::start(rt, move |req, _| {
            let path = req.path_only().to_owned();
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
            let client = client.clone();
            async move {
                // `next` is a long poll: no timeout, it waits as long as it takes.
                let headers = end_to_end_headers(&req.headers, &["host"]);
                let res = match client
                    .send(
                        watch,
                        req.method.clone(),
                        &req.path,
                        headers,
                        req.body.clone(),
                    )
                    .await
                {
                    Ok(r) => r,
                    Err(e) => return response(502, &[], e),
                };
                let mut headers = end_to_end_headers(&res.headers, &[]);
                if fix {
                    fix_deadline(&mut headers);
                }
                let mut out = Response::new(super::http::full(res.body));
                *out.status_mut() = hyper::StatusCode::from_u16(res.status).unwrap();
                *out.headers_mut() = headers;
                out
            }
        });
        RuntimeProxy { server, first_next }
    }
}

/// A `Lambda-Runtime-Deadline-Ms` below 1e12 ms (2001) is a duration, not a
/// time: made into the epoch deadline the service would send.
fn fix_deadline(headers: &mut hyper::HeaderMap) {
    let Some(ms) = headers
        .get("lambda-runtime-deadline-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    if ms < 1_000_000_000_000 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        headers.insert("lambda-runtime-deadline-ms", (now + ms).into());
    }
}

// ---------------------------------------------------------------------------
// The environment

/// A function instance under `watch` and its runtime API (dropped in this order).
pub struct Function {
    pub name: String,
    pub proc: Proc,
    /// Process start → first `next` request.
    pub init: Duration,
    _proxy: RuntimeProxy,
    pub watch: Proc,
    pub watch_addr: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct Uploaded {
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub version_id: Option<String>,
    pub size: u64,
}

pub struct Env {
    // Dropped in this order: the relay, moto (when no other test holds
    // it), the S3 client, the logs, the strict endpoint and the runtime.
    pub relay: InvokeRelay,
    pub moto: Arc<Moto>,
    pub s3: aws_sdk_s3::Client,
    pub dir: tempfile::TempDir,
    functions: AtomicUsize,
    strict: Strict,
    http: Client,
}

impl Env {
    /// The strict endpoint (table `k6.results`, magnetic writes on), the
    /// relay, and moto (shared by the tests of this binary that run at the
    /// same time: each test uses its own buckets).
    pub fn start() -> Env {
        let dir = log_dir("lambda");
        let strict = Strict::start(
            vec![TableConfig::new(DB, TABLE).with_magnetic_writes(true)],
            0,
        );
        let moto = Moto::shared();
        Env {
            relay: InvokeRelay::start(strict.rt().handle()),
            s3: moto.s3_client(),
            moto,
            dir,
            functions: Default::default(),
            strict,
            http: Client::default(),
        }
    }

    pub fn strict(&self) -> &ServerHandle {
        self.strict.h()
    }

    pub fn rt(&self) -> &tokio::runtime::Runtime {
        self.strict.rt()
    }

    /// The function binary's command, with the environment Lambda (or
    /// `watch`) gives it, the endpoints of this environment, the function's
    /// configuration (template.yaml's variables), then `extra` (which may
    /// override any of them, e.g. `AWS_ENDPOINT_URL_S3`).
    fn function_command(&self, bin: &str, runtime_api: &str, extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .current_dir(self.dir.path())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LOG", "info")
            // What `cargo lambda watch` sets.
            .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096")
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api);
        // Where the AWS services are.
        fake_aws_env(&mut cmd)
            .env("AWS_ENDPOINT_URL_S3", self.moto.url())
            .env(
                "AWS_ENDPOINT_URL_TIMESTREAM_WRITE",
                self.strict().endpoint_url(),
            )
            .env("AWS_ENDPOINT_URL_LAMBDA", self.relay.url())
            .env("K6TS_DATABASE", DB)
            .env("K6TS_TABLE", TABLE)
            .envs(extra.iter().copied());
        cmd
    }

    /// Starts a `cargo lambda watch` (runtime and Invoke API; it only knows
    /// the functions named like the crate's binaries), then the function
    /// binary against it, and waits until the function asks for its first
    /// invocation. One `watch` per function: each function instance has
    /// its own configuration, under the same name.
    pub fn start_function(&self, bin: &str, extra: &[(&str, &str)]) -> Function {
        let n = self.functions.fetch_add(1, Ordering::SeqCst);
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
        let proxy = RuntimeProxy::start(self.rt().handle(), watch_addr);
        let api = format!("{}/.rt/{FUNCTION}", proxy.server.url());
        let proc = Proc::spawn(
            FUNCTION,
            self.function_command(bin, &api, extra),
            self.dir.path().join(format!("{FUNCTION}-{n}.log")),
        );
        let mut init = Duration::ZERO;
        wait_until(
            &format!("function {FUNCTION}: first /runtime/invocation/next"),
            Duration::from_secs(60),
            Some(&proc),
            || match proxy.first_next.lock().unwrap().get(FUNCTION) {
                Some(t) => {
                    init = t.saturating_duration_since(proc.started);
                    true
                }
                None => false,
            },
        );
        Function {
            name: FUNCTION.to_owned(),
            proc,
            init,
            _proxy: proxy,
            watch,
            watch_addr,
        }
    }

    /// Starts the function binary against `api` and waits until it polls
    /// for its first invocation.
    pub fn start_function_on(&self, api: &RuntimeApi, bin: &str, extra: &[(&str, &str)]) -> Proc {
        let n = self.functions.fetch_add(1, Ordering::SeqCst);
        let polls = api.polls();
        let proc = Proc::spawn(
            FUNCTION,
            self.function_command(bin, &api.url(), extra),
            self.dir.path().join(format!("{FUNCTION}-{n}.log")),
        );
        wait_until(
            &format!("function {FUNCTION}: first /runtime/invocation/next"),
            Duration::from_secs(60),
            Some(&proc),
            || api.polls() > polls,
        );
        proc
    }

    /// Invokes through `watch`'s Invoke API (RequestResponse): the
    /// function's answer, or the error it returned (`watch` answers 500
    /// with the runtime's `errorType`/`errorMessage`).
    pub fn try_invoke(&self, f: &Function, payload: &Value) -> Result<Value, FunctionError> {
        let body = serde_json::to_vec(payload).unwrap();
        let path = format!("/2015-03-31/functions/{}/invocations", f.name);
        let call = self.http.send(
            f.watch_addr,
            Method::POST,
            &path,
            header_map(&[("content-type", "application/json")]),
            body.into(),
        );
        let res = self
            .rt()
            .block_on(async {
                tokio::pin!(call);
                let until = Instant::now() + Duration::from_secs(300);
                loop {
                    tokio::select! {
                        r = &mut call => return r,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {
                            if Instant::now() >= until {
                                return Err(format!("invoke {}: no answer after 300 s", f.name));
                            }
                            if !f.proc.alive() {
                                return Err(format!("invoke {}: gave up waiting (the function is gone)", f.name));
                            }
                        }
                    }
                }
            })
            .unwrap_or_else(|e| {
                panic!(
                    "{e}\n{}\n{}\n{}",
                    f.proc.tail(40),
                    f.watch.tail(20),
                    self.moto.tail(20)
                )
            });
        let v = res.json();
        match FunctionError::from_json(&v) {
            Some(e) => Err(e),
            None => {
                assert_eq!(
                    res.status,
                    200,
                    "invoke {}: {res:?}\n{}",
                    f.name,
                    f.proc.tail(40)
                );
                assert!(
                    res.header("x-amz-function-error").is_none(),
                    "invoke {}: function error {v}\n{}",
                    f.name,
                    f.proc.tail(40)
                );
                Ok(v)
            }
        }
    }

    /// [`Env::try_invoke`] that must succeed.
    pub fn invoke(&self, f: &Function, payload: &Value) -> Value {
        self.try_invoke(f, payload).unwrap_or_else(|e| {
            panic!(
                "invoke {}: function error {e:?}\n{}",
                f.name,
                f.proc.tail(40)
            )
        })
    }

    pub fn reports(&self, f: &Function, payload: &Value) -> Vec<RunReport> {
        reports_of(&self.invoke(f, payload))
    }

    pub fn create_bucket(&self, bucket: &str, versioned: bool) {
        self.rt().block_on(async {
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
    pub fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Uploaded {
        let size = body.len() as u64;
        let out = self
            .rt()
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

    pub fn get(&self, bucket: &str, key: &str) -> String {
        self.rt().block_on(async {
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

    /// The keys under `prefix` in `bucket`.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.rt().block_on(async {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .unwrap_or_else(|e| panic!("list s3://{bucket}/{prefix}: {e:?}"));
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect()
        })
    }

    /// [`k6_runs`]`(copies)` uploaded gzipped as `key`, and what `convert`
    /// makes of it (measures, report).
    pub fn put_k6_runs(
        &self,
        bucket: &str,
        key: &str,
        copies: i32,
    ) -> (Uploaded, Vec<M>, RunReport) {
        let raw = k6_runs(copies);
        let local = self.dir.path().join(format!("k6-runs-{copies}.json"));
        std::fs::write(&local, &raw).unwrap();
        let (want, want_r) = expected(&local, key);
        (self.put(bucket, key, gzip(&raw)), want, want_r)
    }

    /// What the table holds.
    pub fn stored(&self) -> Vec<M> {
        self.strict.stored(DB, TABLE)
    }
}

/// The reports of a function answer `{"reports": [...]}`.
pub fn reports_of(v: &Value) -> Vec<RunReport> {
    serde_json::from_value::<Vec<RunReport>>(v["reports"].clone())
        .unwrap_or_else(|e| panic!("not a report list ({e}): {v}"))
}

// ---------------------------------------------------------------------------
// Events and expectations

pub fn sample_event(name: &str) -> Value {
    let p = root().join("events").join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

/// Form-urlencodes a key as S3 does in event notifications.
pub fn s3_encode(key: &str) -> String {
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
pub fn s3_event(sample: &str, objs: &[&Uploaded], keep_keys: bool) -> Value {
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

/// What `k6-timestream convert` makes of `file` (as the function would for
/// an object named `key`), expanded into measures, and its report.
pub fn expected(file: &Path, key: &str) -> (Vec<M>, RunReport) {
    let testid = k6_timestream::core::convert::derive_testid(key);
    measures::convert(file, &["--testid", &testid])
}

/// The Lambda binary the big end-to-end tests run: `K6TS_E2E_LAMBDA_BIN`
/// (the scripts' release build), or this build's.
pub fn e2e_lambda_bin() -> String {
    std::env::var("K6TS_E2E_LAMBDA_BIN").unwrap_or_else(|_| LAMBDA_BIN.to_owned())
}

/// The big real k6 result of the end-to-end tests, uploaded.
pub struct BigObject {
    pub up: Uploaded,
    /// Its inflated size.
    pub plain: u64,
    /// What `convert` makes of it: measures and report.
    pub want: Vec<M>,
    pub want_report: RunReport,
}

impl Env {
    /// Uploads the big real k6 result (≥ 300k points: `K6TS_E2E_BIG`,
    /// default `target/bench/big.json.gz` from `scripts/fixtures/big.sh`)
    /// to a new `bucket` as `key`.
    pub fn put_big(&self, bucket: &str, key: &str) -> BigObject {
        let big = std::env::var("K6TS_E2E_BIG").map_or_else(
            |_| super::root().join("target/bench/big.json.gz"),
            std::path::PathBuf::from,
        );
        assert!(
            big.is_file(),
            "{}: make one with scripts/fixtures/big.sh (or set K6TS_E2E_BIG)",
            big.display()
        );
        self.create_bucket(bucket, false);
        let body = std::fs::read(&big).unwrap();
        let plain = super::gunzip(&body).len() as u64;
        let up = self.put(bucket, key, body);
        let (want, want_report) = expected(&big, key);
        assert!(
            want_report.points >= 300_000,
            "{} points",
            want_report.points
        );
        BigObject {
            up,
            plain,
            want,
            want_report,
        }
    }
}

/// The checks every fully processed k6 object must pass.
pub fn assert_complete(r: &RunReport, want: &RunReport, what: &str) {
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

/// `copies` runs of `mixed.json.gz` in one file, like consecutive k6 runs
/// appended: copy k is `copies - 1 - k` years older than the fixture (times
/// rewritten, nothing else), so the file stays in time order as k6 writes.
pub fn k6_runs(copies: i32) -> Vec<u8> {
    let base =
        String::from_utf8(gunzip(&std::fs::read(fixture("mixed.json.gz")).unwrap())).unwrap();
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
