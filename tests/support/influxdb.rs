//! Test servers for the InfluxDB sink: a real InfluxDB 1.x (`influxd`,
//! Debian's package, see scripts/install-tools.sh) in a temporary
//! directory, read back with InfluxQL; and [`FakeInflux`], a local
//! endpoint for the v2 and v3 write APIs that checks every request
//! exactly (path, query, auth header, content type and encoding), parses
//! bodies with the strict line-protocol parser and injects faults by
//! script.

use super::http::{channel_body, header_map, response, Body, Client, Req, Server};
use super::procs::{free_port, Proc};
use hyper::{Method, Response};
use k6_timestream::sinks::influxdb::encode::{parse_lines_with, Dialect, ParsedPoint};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------
// Real InfluxDB 1.x
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct InfluxOptions {
    /// `[http] auth-enabled`; an admin user is created at start.
    pub auth: Option<(String, String)>,
    /// `[http] max-body-size` (bytes), when set.
    pub max_body_size: Option<u64>,
}

/// `influxd` on 127.0.0.1 with everything in a temporary directory; its
/// process group is ended on drop.
pub struct InfluxServer {
    pub addr: SocketAddr,
    auth: Option<(String, String)>,
    proc: Proc,
    rt: tokio::runtime::Runtime,
    client: Client,
    _dir: tempfile::TempDir,
}

/// The `influxd` binary: `$INFLUXD`, else `influxd` on the PATH.
pub fn influxd() -> String {
    std::env::var("INFLUXD").unwrap_or_else(|_| "influxd".to_owned())
}

/// A field or tag value as InfluxQL's JSON answer has it; numbers keep
/// their text (serde_json's own float parsing is not exact).
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Str(String),
    Float(f64),
    Int(i64),
    Bool(bool),
}

impl Stored {
    fn from_raw(raw: &RawValue) -> Option<Stored> {
        let t = raw.get();
        Some(match t.as_bytes().first()? {
            b'n' => return None,
            b'"' => Stored::Str(serde_json::from_str(t).expect("a JSON string")),
            b't' => Stored::Bool(true),
            b'f' => Stored::Bool(false),
            // InfluxQL's JSON writes integers without a fraction or an
            // exponent; the field's type (SHOW FIELD KEYS) tells them apart
            // in the tests that care.
            _ => match t.parse::<i64>() {
                Ok(i) => Stored::Int(i),
                Err(_) => Stored::Float(t.parse().expect("a JSON number")),
            },
        })
    }
}

/// One series of a query answer: measurement, tags, rows (the JSON text
/// of each column).
pub type Rows = (String, BTreeMap<String, String>, Vec<Vec<String>>);

/// One stored point.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
    pub time_ns: i64,
    pub fields: BTreeMap<String, Stored>,
}

#[derive(serde::Deserialize)]
struct QueryAnswer {
    results: Vec<QueryResult>,
}

#[derive(serde::Deserialize)]
struct QueryResult {
    #[serde(default)]
    series: Vec<Series>,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct Series {
    name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    columns: Vec<String>,
    values: Vec<Vec<Box<RawValue>>>,
}

impl InfluxServer {
    pub fn start() -> Self {
        Self::start_with(InfluxOptions::default())
    }

    pub fn start_with(opts: InfluxOptions) -> Self {
        // A port can be taken between choosing and binding: try again.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(&opts) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("influxd did not start: {last}");
    }

    fn try_start(opts: &InfluxOptions) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (http_port, rpc_port) = (free_port(), free_port());
        let defaults = Command::new(influxd())
            .arg("config")
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "{} config: {e} (install InfluxDB 1.x: scripts/install-tools.sh, or set INFLUXD)",
                    influxd()
                )
            })?;
        let config = rewrite_config(
            &String::from_utf8_lossy(&defaults.stdout),
            dir.path(),
            http_port,
            rpc_port,
            opts,
        );
        let config_path = dir.path().join("influxdb.conf");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(influxd());
        cmd.arg("-config").arg(&config_path);
        let proc = Proc::spawn("influxd", cmd, dir.path().join("influxd.log"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut server = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], http_port)),
            auth: None,
            proc,
            rt,
            client: Client::default(),
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if !server.proc.alive() {
                return Err(format!("influxd exited\n{}", server.proc.tail(20)));
            }
            if server.get("/ping").is_ok_and(|(s, _)| s == 204) {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "no answer to /ping within 30 s\n{}",
                    server.proc.tail(20)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some((user, password)) = &opts.auth {
            // The first user may be created without credentials.
            server.statement(&format!(
                "CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES"
            ));
            server.auth = Some((user.clone(), password.clone()));
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn headers(&self, extra: &[(&str, &str)]) -> hyper::HeaderMap {
        let mut pairs: Vec<(&str, String)> =
            extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        if let Some((u, p)) = &self.auth {
            pairs.push((
                "authorization",
                format!("Basic {}", base64(format!("{u}:{p}").as_bytes())),
            ));
        }
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        header_map(&pairs)
    }

    fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        let reply = self.rt.block_on(self.client.send(
            self.addr,
            Method::GET,
            path,
            self.headers(&[]),
            Default::default(),
        ))?;
        Ok((reply.status, reply.body.to_vec()))
    }

    fn statement(&self, q: &str) {
        let body = format!("q={}", encode_component(q));
        let reply = self
            .rt
            .block_on(self.client.send(
                self.addr,
                Method::POST,
                "/query",
                self.headers(&[("content-type", "application/x-www-form-urlencoded")]),
                body.into(),
            ))
            .unwrap();
        let text = String::from_utf8_lossy(&reply.body);
        assert_eq!(reply.status, 200, "{q}: {text}");
        assert!(!text.contains("\"error\""), "{q}: {text}");
    }

    pub fn create_database(&self, name: &str) {
        self.statement(&format!("CREATE DATABASE \"{name}\""));
    }

    /// `GET /query?db=&q=&epoch=ns`, asserted free of errors.
    fn query(&self, db: &str, q: &str) -> Vec<Series> {
        let path = format!(
            "/query?db={}&epoch=ns&q={}",
            encode_component(db),
            encode_component(q)
        );
        let (status, body) = self.get(&path).unwrap();
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{q}: {text}");
        let mut a: QueryAnswer =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{q}: {e}: {text}"));
        let r = a.results.remove(0);
        assert!(r.error.is_none(), "{q}: {:?}", r.error);
        r.series
    }

    /// `SELECT` results: per series (measurement, tags, rows of the JSON
    /// text of each column).
    pub fn rows(&self, db: &str, q: &str) -> Vec<Rows> {
        self.query(db, q)
            .into_iter()
            .map(|s| {
                let rows = s
                    .values
                    .iter()
                    .map(|r| r.iter().map(|v| v.get().to_owned()).collect())
                    .collect();
                (s.name, s.tags, rows)
            })
            .collect()
    }

    pub fn measurements(&self, db: &str) -> Vec<String> {
        self.query(db, "SHOW MEASUREMENTS")
            .into_iter()
            .flat_map(|s| s.values)
            .map(|row| serde_json::from_str(row[0].get()).unwrap())
            .collect()
    }

    /// `SHOW FIELD KEYS`: measurement → field → type.
    pub fn field_types(&self, db: &str) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for s in self.query(db, "SHOW FIELD KEYS") {
            let m: &mut BTreeMap<String, String> = out.entry(s.name.clone()).or_default();
            for row in &s.values {
                m.insert(
                    serde_json::from_str(row[0].get()).unwrap(),
                    serde_json::from_str(row[1].get()).unwrap(),
                );
            }
        }
        out
    }

    /// Every point of `db`, tags apart from fields: `SELECT * … GROUP BY *`
    /// one measurement at a time. (Over several measurements at once,
    /// InfluxQL's `*` takes a name that is a tag key anywhere for a tag and
    /// drops the field of that name elsewhere.) Sorted by time, measurement.
    pub fn points(&self, db: &str) -> Vec<StoredPoint> {
        let mut out = Vec::new();
        for name in self.measurements(db) {
            // An anchored regex: InfluxQL's quoted identifiers cannot hold
            // every character a measurement name can.
            let mut re = String::new();
            for c in name.chars() {
                if c.is_control() {
                    re.push_str(&format!("\\x{{{:x}}}", u32::from(c)));
                    continue;
                }
                if "\\.+*?()|[]{}^$/".contains(c) {
                    re.push('\\');
                }
                re.push(c);
            }
            for s in self.query(db, &format!("SELECT * FROM /^{re}$/ GROUP BY *")) {
                assert_eq!(s.name, name);
                let tags: BTreeMap<String, String> =
                    s.tags.into_iter().filter(|(_, v)| !v.is_empty()).collect();
                assert_eq!(s.columns[0], "time");
                for row in &s.values {
                    let fields = s
                        .columns
                        .iter()
                        .zip(row)
                        .skip(1)
                        .filter_map(|(c, v)| Some((c.clone(), Stored::from_raw(v)?)))
                        .collect();
                    out.push(StoredPoint {
                        measurement: name.clone(),
                        tags: tags.clone(),
                        time_ns: row[0].get().parse().expect("epoch=ns time"),
                        fields,
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.time_ns, &a.measurement).cmp(&(b.time_ns, &b.measurement)));
        out
    }

    pub fn tail(&self, n: usize) -> String {
        self.proc.tail(n)
    }
}

/// Percent-encoding of a query component (RFC 3986 unreserved kept).
fn encode_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Tests only: the sink has its own encoder.
fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `influxd config` output with every path in `dir`, HTTP on
/// 127.0.0.1:`http_port`, the RPC service on 127.0.0.1:`rpc_port`, usage
/// reporting, self-monitoring and every other listener off.
fn rewrite_config(
    defaults: &str,
    dir: &std::path::Path,
    http_port: u16,
    rpc_port: u16,
    opts: &InfluxOptions,
) -> String {
    let d = dir.display();
    let mut section = String::new();
    let mut out = String::new();
    let mut saw = (false, false);
    for line in defaults.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.trim_matches(|c| c == '[' || c == ']').to_owned();
            out.push_str(line);
            out.push('\n');
            if section == "http" {
                if let Some(n) = opts.max_body_size {
                    out.push_str(&format!("  max-body-size = {n}\n"));
                }
            }
            continue;
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        let replaced = match (section.as_str(), key) {
            ("", "reporting-enabled") | ("", "reporting-disabled") => {
                saw.0 = true;
                Some("reporting-disabled = true".to_owned())
            }
            ("", "bind-address") => {
                saw.1 = true;
                Some(format!("bind-address = \"127.0.0.1:{rpc_port}\""))
            }
            ("meta", "dir") => Some(format!("  dir = \"{d}/meta\"")),
            ("data", "dir") => Some(format!("  dir = \"{d}/data\"")),
            ("data", "wal-dir") => Some(format!("  wal-dir = \"{d}/wal\"")),
            ("data", "query-log-enabled") => Some("  query-log-enabled = false".into()),
            ("monitor", "store-enabled") => Some("  store-enabled = false".into()),
            ("subscriber", "enabled") | ("continuous_queries", "enabled") => {
                Some("  enabled = false".into())
            }
            ("http", "bind-address") => Some(format!("  bind-address = \"127.0.0.1:{http_port}\"")),
            ("http", "auth-enabled") => Some(format!("  auth-enabled = {}", opts.auth.is_some())),
            ("http", "log-enabled") => Some("  log-enabled = false".into()),
            ("http", "pprof-enabled") => Some("  pprof-enabled = false".into()),
            ("http", "max-body-size") if opts.max_body_size.is_some() => Some(String::new()),
            ("http", "bind-socket") => Some(format!("  bind-socket = \"{d}/influxdb.sock\"")),
            ("ifql", "enabled")
            | ("graphite", "enabled")
            | ("collectd", "enabled")
            | ("opentsdb", "enabled")
            | ("udp", "enabled") => Some("  enabled = false".into()),
            _ => None,
        };
        out.push_str(replaced.as_deref().unwrap_or(line));
        out.push('\n');
    }
    let mut head = String::new();
    if !saw.0 {
        head.push_str("reporting-disabled = true\n");
    }
    if !saw.1 {
        head.push_str(&format!("bind-address = \"127.0.0.1:{rpc_port}\"\n"));
    }
    head + &out
}

// ---------------------------------------------------------------------------
// FakeInflux: v2 and v3 write endpoints
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeApi {
    V2 { org: String, bucket: String },
    V3 { database: String },
}

/// What the next write request gets instead of a normal answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status, `Retry-After` header (if any) and JSON body; nothing
    /// is stored.
    Status {
        status: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// Read the request, then break the connection instead of answering.
    Reset,
    /// Wait, then answer normally (the points are stored).
    Delay(Duration),
    /// Refuse the lines for which the predicate holds, in the API's own
    /// format: v3 stores the others and lists their 1-based numbers; v2
    /// refuses the whole batch naming each line (as InfluxDB 2 does for
    /// parse errors).
    RefuseLines(fn(&str) -> bool),
}

/// A write request as the fake saw it.
#[derive(Debug, Clone)]
pub struct SeenWrite {
    pub at: std::time::Instant,
    /// Decompressed body.
    pub body: String,
    pub status: u16,
}

#[derive(Default)]
struct FakeState {
    faults: VecDeque<Fault>,
    points: Vec<ParsedPoint>,
    writes: Vec<SeenWrite>,
    violations: Vec<String>,
    requests: usize,
}

struct Expect {
    api: FakeApi,
    token: String,
    gzip: bool,
}

pub struct FakeInflux {
    server: Server,
    state: Arc<Mutex<FakeState>>,
}

fn json_error(kind: &FakeApi, code: &str, message: &str) -> String {
    match kind {
        FakeApi::V2 { .. } => serde_json::json!({ "code": code, "message": message }).to_string(),
        FakeApi::V3 { .. } => serde_json::json!({ "error": message }).to_string(),
    }
}

impl FakeInflux {
    /// `token` is expected as `Token <t>` (v2) or `Bearer <t>` (v3);
    /// `gzip` says whether write bodies must be gzip-encoded.
    pub fn start(rt: &tokio::runtime::Handle, api: FakeApi, token: &str, gzip: bool) -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let expect = Arc::new(Expect {
            api,
            token: token.to_owned(),
            gzip,
        });
        let st = state.clone();
        let server = Server::start(rt, move |req, conn| {
            let (state, expect) = (st.clone(), expect.clone());
            async move {
                let (reply, reset) = handle(&req, &state, &expect).await;
                if reset {
                    // Headers go out, then the body breaks off.
                    conn.reset_on_close();
                    let (tx, body) = channel_body(1);
                    let _ = tx.send(Err(std::io::Error::other("reset by test"))).await;
                    let mut r: Response<Body> = Response::new(body);
                    *r.status_mut() = hyper::StatusCode::OK;
                    return r;
                }
                reply
            }
        });
        Self { server, state }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn push_fault(&self, f: Fault) {
        self.state.lock().unwrap().faults.push_back(f);
    }

    pub fn points(&self) -> Vec<ParsedPoint> {
        self.state.lock().unwrap().points.clone()
    }

    /// The write requests that passed the checks, with their answers.
    pub fn writes(&self) -> Vec<SeenWrite> {
        self.state.lock().unwrap().writes.clone()
    }

    /// Every way a request differed from what the API expects.
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }
}

fn query_pairs(path: &str) -> (String, Vec<(String, String)>) {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let pairs = form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (p.to_owned(), pairs)
}

/// The answer, and whether to break the connection instead.
async fn handle(req: &Req, state: &Mutex<FakeState>, expect: &Expect) -> (Response<Body>, bool) {
    let (path, query) = query_pairs(&req.path);
    let (want_auth, write_path, want_query): (String, &str, Vec<(&str, &str)>) = match &expect.api {
        FakeApi::V2 { org, bucket } => (
            format!("Token {}", expect.token),
            "/api/v2/write",
            vec![("org", org), ("bucket", bucket), ("precision", "ns")],
        ),
        FakeApi::V3 { database } => (
            format!("Bearer {}", expect.token),
            "/api/v3/write_lp",
            vec![
                ("db", database),
                ("precision", "nanosecond"),
                ("accept_partial", "true"),
            ],
        ),
    };
    let authorized = req.headers.get_all("authorization").iter().count() == 1
        && req.header("authorization") == Some(want_auth.as_str());
    let json = |status: u16, code: &str, msg: &str| {
        (
            response(
                status,
                &[("content-type", "application/json")],
                json_error(&expect.api, code, msg),
            ),
            false,
        )
    };
    let mut violations = Vec::new();
    {
        let mut st = state.lock().unwrap();
        st.requests += 1;
        if req.method == Method::GET && path == "/health" && query.is_empty() {
            // InfluxDB 2 serves /health without credentials; 3 wants them.
            if matches!(expect.api, FakeApi::V3 { .. }) && !authorized {
                return json(401, "unauthorized", "unauthorized access");
            }
            return (
                response(
                    200,
                    &[("content-type", "application/json")],
                    r#"{"status":"pass"}"#,
                ),
                false,
            );
        }
        if req.method != Method::POST || path != write_path {
            st.violations
                .push(format!("unexpected {} {path}", req.method));
            return json(404, "not found", "not found");
        }
        let mut got: Vec<(&str, &str)> = query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut want = want_query.clone();
        got.sort_unstable();
        want.sort_unstable();
        if got != want {
            violations.push(format!("query {got:?}, expected {want:?}"));
        }
        if !authorized {
            st.violations.extend(violations);
            return json(401, "unauthorized", "unauthorized access");
        }
        if req.header("content-type") != Some("text/plain; charset=utf-8") {
            violations.push(format!("content-type {:?}", req.header("content-type")));
        }
        if req.body.is_empty() {
            // The probe: InfluxDB 2 refuses an empty batch after its checks.
            st.violations.extend(violations);
            return json(400, "invalid", "writing requires points");
        }
    }
    let raw = match (expect.gzip, req.header("content-encoding")) {
        (true, Some("gzip")) => super::gunzip(&req.body),
        (false, None) => req.body.to_vec(),
        (_, e) => {
            violations.push(format!("content-encoding {e:?}"));
            req.body.to_vec()
        }
    };
    let dialect = match expect.api {
        FakeApi::V2 { .. } => Dialect::Portable,
        FakeApi::V3 { .. } => Dialect::V3,
    };
    let text = String::from_utf8_lossy(&raw).into_owned();
    let parsed = match parse_lines_with(dialect, &text) {
        Ok(p) => p,
        Err(e) => {
            violations.push(format!("body: {e}"));
            Vec::new()
        }
    };
    let fault = {
        let mut st = state.lock().unwrap();
        if !violations.is_empty() {
            st.violations.extend(violations);
            drop(st);
            return json(400, "invalid", "request differs from the API");
        }
        st.faults.pop_front()
    };
    let seen = |status: u16| SeenWrite {
        at: std::time::Instant::now(),
        body: text.clone(),
        status,
    };
    let (reply, reset, stored) = match fault {
        None => (response(204, &[], ""), false, parsed),
        Some(Fault::Reset) => (response(204, &[], ""), true, Vec::new()),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            (response(204, &[], ""), false, parsed)
        }
        Some(Fault::Status {
            status,
            retry_after,
            body,
        }) => {
            let mut h = vec![("content-type", "application/json")];
            if let Some(r) = &retry_after {
                h.push(("retry-after", r));
            }
            (response(status, &h, body), false, Vec::new())
        }
        Some(Fault::RefuseLines(refuse)) => {
            let lines: Vec<&str> = text.trim_end_matches('\n').split('\n').collect();
            let refused: Vec<usize> = (0..lines.len()).filter(|&i| refuse(lines[i])).collect();
            if refused.is_empty() {
                (response(204, &[], ""), false, parsed)
            } else {
                match &expect.api {
                    FakeApi::V3 { .. } => {
                        let data: Vec<serde_json::Value> = refused
                            .iter()
                            .map(|&i| {
                                serde_json::json!({
                                    "original_line": lines[i],
                                    "line_number": i + 1,
                                    "error_message": "refused by test",
                                })
                            })
                            .collect();
                        let kept = parsed
                            .into_iter()
                            .enumerate()
                            .filter(|(i, _)| !refused.contains(i))
                            .map(|(_, p)| p)
                            .collect();
                        let body = serde_json::json!({
                            "error": "partial write of line protocol occurred",
                            "data": data,
                        });
                        (
                            response(
                                400,
                                &[("content-type", "application/json")],
                                body.to_string(),
                            ),
                            false,
                            kept,
                        )
                    }
                    FakeApi::V2 { .. } => {
                        let message: Vec<String> = refused
                            .iter()
                            .map(|&i| format!("unable to parse '{}': refused by test", lines[i]))
                            .collect();
                        let body = json_error(&expect.api, "invalid", &message.join("\n"));
                        (
                            response(400, &[("content-type", "application/json")], body),
                            false,
                            Vec::new(),
                        )
                    }
                }
            }
        }
    };
    let mut st = state.lock().unwrap();
    st.writes
        .push(seen(if reset { 0 } else { reply.status().as_u16() }));
    st.points.extend(stored);
    (reply, reset)
}

/// What InfluxDB keeps of `points`: one point per measurement, tag set
/// and time (a later write of the same key replaces it), as comparable
/// texts.
pub fn as_stored(points: &[ParsedPoint]) -> BTreeMap<String, String> {
    points
        .iter()
        .map(|p| {
            (
                format!("{}|{:?}|{}", p.measurement, p.tags, p.time_ns),
                format!("{:?}", p.fields),
            )
        })
        .collect()
}
