//! HTTP layer: connection handling, awsJson1_0 dispatch, the Timestream operations and the
//! admin API under `/_strict/`.

use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::store::Outcome;
use crate::validate::{self, Window};
use crate::wire::{self, ErrorKind, ResourceRequest, WireRejectedRecord, WriteRecordsRequest};
use crate::{check_resource_name, now_secs, Counters, DatabaseEntry, Faults, Shared, TableConfig};

type Body = Full<Bytes>;

/// Largest request body accepted (a full WriteRecords call is far below this).
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Returned by the service to make hyper drop the connection without writing a response.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped (injected fault)")
    }
}

impl StdError for DropConnection {}

pub(crate) async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { handle(&shared, req).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn response(status: u16, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).expect("valid status");
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// An awsJson1_0 response: success or modeled error.
struct ApiResponse {
    status: u16,
    body: Vec<u8>,
    error: Option<ErrorKind>,
}

impl ApiResponse {
    fn ok(body: Value) -> ApiResponse {
        ApiResponse {
            status: 200,
            body: serde_json::to_vec(&body).expect("serializable"),
            error: None,
        }
    }

    fn error(kind: ErrorKind, message: &str) -> ApiResponse {
        ApiResponse {
            status: kind.status(),
            body: wire::error_body(kind, message, None),
            error: Some(kind),
        }
    }

    fn into_http(self, request_id: &str) -> Response<Body> {
        let mut resp = response(self.status, wire::CONTENT_TYPE, self.body);
        let headers = resp.headers_mut();
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert("x-amzn-requestid", id);
        }
        if let Some(kind) = self.error {
            // The SDK takes the error code from this header first, then from `__type`.
            headers.insert("x-amzn-errortype", HeaderValue::from_static(kind.code()));
        }
        resp
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, DropConnection> {
    let path = req.uri().path();
    if path == "/_strict" || path.starts_with("/_strict/") {
        return Ok(admin(shared, req).await);
    }
    if req.method() != Method::POST || path != "/" {
        return Ok(admin_error(
            404,
            "not found: the Timestream API is POST / with X-Amz-Target; the admin API is under /_strict/",
        ));
    }
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(msg) => return Ok(ApiResponse::error(ErrorKind::Serialization, &msg).into_http("")),
    };
    let started = Instant::now();
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let n = shared.request_ids.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("00000000-0000-4000-8000-{n:012x}");
    let operation = target
        .as_deref()
        .and_then(|t| t.strip_prefix(wire::TARGET_PREFIX));
    let resp = match operation {
        Some("WriteRecords") => return write_records(shared, &body, started, &request_id).await,
        Some("DescribeEndpoints") => ApiResponse::ok(json!({
            "Endpoints": [{"Address": shared.advertised, "CachePeriodInMinutes": 1440}]
        })),
        Some("CreateDatabase") => with_request(&body, |r| create_database(shared, r)),
        Some("DescribeDatabase") => with_request(&body, |r| describe_database(shared, r)),
        Some("CreateTable") => with_request(&body, |r| create_table(shared, r)),
        Some("DescribeTable") => with_request(&body, |r| describe_table(shared, r)),
        _ => ApiResponse::error(
            ErrorKind::UnknownOperation,
            &format!(
                "Unknown or unsupported operation: X-Amz-Target '{}'",
                target.as_deref().unwrap_or("")
            ),
        ),
    };
    Ok(resp.into_http(&request_id))
}

async fn read_body(body: Incoming) -> Result<Bytes, String> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(format!("Could not read the request body: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// WriteRecords
// ---------------------------------------------------------------------------------------------

/// SplitMix64 finalizer: turns (seed, call number) into well-spread generator seeds.
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

enum CallFault {
    None,
    Reset,
    Throttle,
    ServerError,
}

async fn write_records(
    shared: &Shared,
    body: &[u8],
    started: Instant,
    request_id: &str,
) -> Result<Response<Body>, DropConnection> {
    let c = &shared.counters;
    let call = c.write_calls.fetch_add(1, Ordering::Relaxed);
    let faults: Faults = *shared.faults.lock().expect("faults lock");
    // One generator per call, seeded by the call's sequence number: no shared generator to
    // lock, and the same calls in the same order draw the same faults.
    let mut rng = fastrand::Rng::with_seed(mix(shared.seed, call));
    let draw = |rng: &mut fastrand::Rng, rate: f64| rate > 0.0 && rng.f64() < rate;
    let fault = if draw(&mut rng, faults.reset_rate) {
        CallFault::Reset
    } else if draw(&mut rng, faults.throttle_rate) {
        CallFault::Throttle
    } else if draw(&mut rng, faults.server_error_rate) {
        CallFault::ServerError
    } else {
        CallFault::None
    };

    let result = match fault {
        CallFault::Reset => {
            c.resets.fetch_add(1, Ordering::Relaxed);
            None
        }
        CallFault::Throttle => {
            c.throttled.fetch_add(1, Ordering::Relaxed);
            Some(ApiResponse::error(ErrorKind::Throttling, "Rate exceeded"))
        }
        CallFault::ServerError => {
            c.server_errors.fetch_add(1, Ordering::Relaxed);
            Some(ApiResponse::error(
                ErrorKind::InternalServer,
                "Timestream was unable to process this request because of an internal server \
                 error (injected fault).",
            ))
        }
        CallFault::None => Some(process_write(shared, body, &mut rng, faults.reject_rate)),
    };

    if faults.latency_ms > 0 {
        c.delayed_calls.fetch_add(1, Ordering::Relaxed);
        let deadline = started + Duration::from_millis(faults.latency_ms);
        tokio::time::sleep_until(deadline.into()).await;
    }
    match result {
        Some(resp) => Ok(resp.into_http(request_id)),
        None => Err(DropConnection),
    }
}

/// Parses, validates and applies one WriteRecords call. Synchronous: no lock is ever held
/// across an await.
fn process_write(
    shared: &Shared,
    body: &[u8],
    rng: &mut fastrand::Rng,
    reject_rate: f64,
) -> ApiResponse {
    let c = &shared.counters;
    let req: WriteRecordsRequest<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            c.validation_errors.fetch_add(1, Ordering::Relaxed);
            return ApiResponse::error(
                ErrorKind::Serialization,
                &format!("The request body is not a valid WriteRecords request: {e}"),
            );
        }
    };
    if let Err(msg) = validate::check_request(&req) {
        c.validation_errors.fetch_add(1, Ordering::Relaxed);
        return ApiResponse::error(ErrorKind::Validation, &msg);
    }
    let database = req
        .database_name
        .as_ref()
        .map(|s| s.as_str())
        .unwrap_or_default();
    let table_name = req
        .table_name
        .as_ref()
        .map(|s| s.as_str())
        .unwrap_or_default();
    let Some(table) = shared.table(database, table_name) else {
        c.not_found_errors.fetch_add(1, Ordering::Relaxed);
        return ApiResponse::error(
            ErrorKind::ResourceNotFound,
            &not_found_message(shared, database, table_name),
        );
    };
    let window = {
        let t = table.lock().expect("table lock");
        Window::new(
            now_ns(),
            t.cfg.memory_retention_hours,
            t.cfg.magnetic_retention_days,
            t.cfg.magnetic_writes,
        )
    };
    let records = req.records.as_deref().unwrap_or_default();
    Counters::add(&c.records_received, records.len() as u64);
    let common = req.common_attributes.as_ref();

    // Everything that does not need the table's state happens outside its lock.
    let mut injected = 0u64;
    let prepared: Vec<Result<validate::Prepared<'_>, String>> = records
        .iter()
        .map(|rec| {
            let rejected_by_fault = reject_rate > 0.0 && rng.f64() < reject_rate;
            let p = validate::prepare(rec, common, &window)?;
            if rejected_by_fault {
                injected += 1;
                return Err(
                    "The record was rejected by an injected fault (reject_rate); it is \
                            valid and may be retried."
                        .into(),
                );
            }
            Ok(p)
        })
        .collect();

    let mut rejected = Vec::new();
    let (mut stored, mut upserted, mut duplicate, mut memory, mut magnetic) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    {
        let mut t = table.lock().expect("table lock");
        let arrived = i64::try_from(now_ns()).unwrap_or(i64::MAX);
        for (index, p) in prepared.into_iter().enumerate() {
            let p = match p {
                Ok(p) => p,
                Err(reason) => {
                    rejected.push(WireRejectedRecord {
                        record_index: index,
                        reason,
                        existing_version: None,
                    });
                    continue;
                }
            };
            match t.apply_at(&p, arrived) {
                Outcome::Rejected {
                    reason,
                    existing_version,
                } => {
                    rejected.push(WireRejectedRecord {
                        record_index: index,
                        reason,
                        existing_version,
                    });
                    continue;
                }
                Outcome::Stored => stored += 1,
                Outcome::Upserted => upserted += 1,
                Outcome::Duplicate => duplicate += 1,
            }
            if p.magnetic {
                magnetic += 1;
            } else {
                memory += 1;
            }
        }
    }

    Counters::add(&c.records_stored, stored);
    Counters::add(&c.records_upserted, upserted);
    Counters::add(&c.records_duplicate, duplicate);
    Counters::add(&c.records_ingested, memory + magnetic);
    Counters::add(&c.records_rejected, rejected.len() as u64);
    Counters::add(&c.rejected_records, injected);
    if rejected.is_empty() {
        c.write_calls_ok.fetch_add(1, Ordering::Relaxed);
        ApiResponse::ok(json!({
            "RecordsIngested": {
                "Total": memory + magnetic,
                "MemoryStore": memory,
                "MagneticStore": magnetic,
            }
        }))
    } else {
        c.write_calls_rejected.fetch_add(1, Ordering::Relaxed);
        let kind = ErrorKind::RejectedRecords;
        ApiResponse {
            status: kind.status(),
            body: wire::error_body(
                kind,
                "One or more records have been rejected. See RejectedRecords for details.",
                Some(&rejected),
            ),
            error: Some(kind),
        }
    }
}

fn not_found_message(shared: &Shared, database: &str, table: &str) -> String {
    let catalog = shared.catalog.read().expect("catalog lock");
    if catalog.contains_key(database) {
        format!("The table {table} does not exist in the database {database}.")
    } else {
        format!("The database {database} does not exist.")
    }
}

// ---------------------------------------------------------------------------------------------
// Database and table operations
// ---------------------------------------------------------------------------------------------

fn with_request(body: &[u8], f: impl FnOnce(ResourceRequest) -> ApiResponse) -> ApiResponse {
    match serde_json::from_slice::<ResourceRequest>(if body.is_empty() { b"{}" } else { body }) {
        Ok(r) => f(r),
        Err(e) => ApiResponse::error(
            ErrorKind::Serialization,
            &format!("The request body could not be parsed: {e}"),
        ),
    }
}

fn required<'a>(value: &'a Option<String>, member: &str) -> Result<&'a str, ApiResponse> {
    value.as_deref().ok_or_else(|| {
        ApiResponse::error(
            ErrorKind::Validation,
            &format!("1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must not be null"),
        )
    })
}

fn arn(database: &str, table: Option<&str>) -> String {
    match table {
        Some(t) => format!("arn:aws:timestream:local:000000000000:database/{database}/table/{t}"),
        None => format!("arn:aws:timestream:local:000000000000:database/{database}"),
    }
}

fn database_json(name: &str, db: &DatabaseEntry) -> Value {
    json!({
        "Arn": arn(name, None),
        "DatabaseName": name,
        "TableCount": db.tables.len(),
        "KmsKeyId": db.kms_key_id.clone().unwrap_or_else(|| "alias/aws/timestream".into()),
        "CreationTime": db.created_secs,
        "LastUpdatedTime": db.created_secs,
    })
}

fn table_json(cfg: &TableConfig, created_secs: f64) -> Value {
    json!({
        "Arn": arn(&cfg.database, Some(&cfg.table)),
        "TableName": cfg.table,
        "DatabaseName": cfg.database,
        "TableStatus": "ACTIVE",
        "RetentionProperties": {
            "MemoryStoreRetentionPeriodInHours": cfg.memory_retention_hours,
            "MagneticStoreRetentionPeriodInDays": cfg.magnetic_retention_days,
        },
        "CreationTime": created_secs,
        "LastUpdatedTime": created_secs,
        "MagneticStoreWriteProperties": {"EnableMagneticStoreWrites": cfg.magnetic_writes},
    })
}

fn create_database(shared: &Shared, r: ResourceRequest) -> ApiResponse {
    let name = match required(&r.database_name, "databaseName") {
        Ok(n) => n,
        Err(e) => return e,
    };
    if let Err(msg) = check_resource_name("database", name) {
        return ApiResponse::error(ErrorKind::Validation, &msg);
    }
    let mut catalog = shared.catalog.write().expect("catalog lock");
    if catalog.contains_key(name) {
        return ApiResponse::error(
            ErrorKind::Conflict,
            &format!("The database {name} already exists."),
        );
    }
    let db = DatabaseEntry {
        created_secs: now_secs(),
        kms_key_id: r.kms_key_id.clone(),
        tables: Default::default(),
    };
    let body = json!({"Database": database_json(name, &db)});
    catalog.insert(name.to_owned(), db);
    ApiResponse::ok(body)
}

fn describe_database(shared: &Shared, r: ResourceRequest) -> ApiResponse {
    let name = match required(&r.database_name, "databaseName") {
        Ok(n) => n,
        Err(e) => return e,
    };
    let catalog = shared.catalog.read().expect("catalog lock");
    match catalog.get(name) {
        Some(db) => ApiResponse::ok(json!({"Database": database_json(name, db)})),
        None => ApiResponse::error(
            ErrorKind::ResourceNotFound,
            &format!("The database {name} does not exist."),
        ),
    }
}

fn create_table(shared: &Shared, r: ResourceRequest) -> ApiResponse {
    let (database, table) = match (
        required(&r.database_name, "databaseName"),
        required(&r.table_name, "tableName"),
    ) {
        (Ok(d), Ok(t)) => (d, t),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    // Service defaults when RetentionProperties is absent: 6 hours and 73000 days.
    let mut cfg = TableConfig::new(database, table).with_memory_retention_hours(6);
    if let Some(ret) = &r.retention_properties {
        let (Some(hours), Some(days)) = (ret.memory_hours, ret.magnetic_days) else {
            return ApiResponse::error(
                ErrorKind::Validation,
                "1 validation error detected: RetentionProperties requires both MemoryStoreRetentionPeriodInHours and MagneticStoreRetentionPeriodInDays",
            );
        };
        if !(1..=8766).contains(&hours) {
            return ApiResponse::error(
                ErrorKind::Validation,
                &format!("1 validation error detected: Value '{hours}' at 'retentionProperties.memoryStoreRetentionPeriodInHours' failed to satisfy constraint: Member must have value between 1 and 8766"),
            );
        }
        if !(1..=73_000).contains(&days) {
            return ApiResponse::error(
                ErrorKind::Validation,
                &format!("1 validation error detected: Value '{days}' at 'retentionProperties.magneticStoreRetentionPeriodInDays' failed to satisfy constraint: Member must have value between 1 and 73000"),
            );
        }
        cfg.memory_retention_hours = hours as u64;
        cfg.magnetic_retention_days = days as u64;
    }
    if let Some(m) = &r.magnetic_store_write_properties {
        let Some(enable) = m.enable else {
            return ApiResponse::error(
                ErrorKind::Validation,
                "1 validation error detected: Value at 'magneticStoreWriteProperties.enableMagneticStoreWrites' failed to satisfy constraint: Member must not be null",
            );
        };
        cfg.magnetic_writes = enable;
    }
    if let Err(msg) = cfg.validate() {
        return ApiResponse::error(ErrorKind::Validation, &msg);
    }
    let mut catalog = shared.catalog.write().expect("catalog lock");
    let Some(db) = catalog.get_mut(database) else {
        return ApiResponse::error(
            ErrorKind::ResourceNotFound,
            &format!("The database {database} does not exist."),
        );
    };
    if db.tables.contains_key(table) {
        return ApiResponse::error(
            ErrorKind::Conflict,
            &format!("The table {table} already exists in the database {database}."),
        );
    }
    let created = now_secs();
    let body = json!({"Table": table_json(&cfg, created)});
    db.tables.insert(
        table.to_owned(),
        Arc::new(std::sync::Mutex::new(crate::store::Table::new(
            cfg, created,
        ))),
    );
    ApiResponse::ok(body)
}

fn describe_table(shared: &Shared, r: ResourceRequest) -> ApiResponse {
    let (database, table) = match (
        required(&r.database_name, "databaseName"),
        required(&r.table_name, "tableName"),
    ) {
        (Ok(d), Ok(t)) => (d, t),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match shared.table(database, table) {
        Some(t) => {
            let t = t.lock().expect("table lock");
            ApiResponse::ok(json!({"Table": table_json(&t.cfg, t.created_secs)}))
        }
        None => ApiResponse::error(
            ErrorKind::ResourceNotFound,
            &not_found_message(shared, database, table),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Admin API
// ---------------------------------------------------------------------------------------------

fn admin_json(status: u16, body: &impl serde::Serialize) -> Response<Body> {
    response(
        status,
        "application/json",
        serde_json::to_vec(body).expect("serializable"),
    )
}

fn admin_error(status: u16, message: &str) -> Response<Body> {
    admin_json(status, &json!({"error": message}))
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

async fn admin(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query = req.uri().query().map(str::to_owned);
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(msg) => return admin_error(400, &msg),
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/_strict/records") => {
            let (Some(db), Some(table)) = (
                query_param(query.as_deref(), "database"),
                query_param(query.as_deref(), "table"),
            ) else {
                return admin_error(400, "query parameters 'database' and 'table' are required");
            };
            match shared.records(&db, &table) {
                Some(records) => admin_json(200, &records),
                None => admin_error(404, &format!("no table {db}.{table}")),
            }
        }
        (&Method::GET, "/_strict/stats") => admin_json(200, &shared.counters.snapshot()),
        (&Method::GET, "/_strict/faults") => {
            admin_json(200, &*shared.faults.lock().expect("faults lock"))
        }
        (&Method::POST, "/_strict/faults") => match serde_json::from_slice::<Faults>(&body) {
            Ok(f) => match shared.set_faults(f) {
                Ok(()) => admin_json(200, &f),
                Err(msg) => admin_error(400, &msg),
            },
            Err(e) => admin_error(400, &format!("invalid faults JSON: {e}")),
        },
        (&Method::POST, "/_strict/reset") => {
            shared.reset();
            admin_json(200, &json!({"reset": true}))
        }
        (&Method::GET, "/_strict/tables") => admin_json(200, &shared.tables()),
        (&Method::POST, "/_strict/tables") => match serde_json::from_slice::<TableConfig>(&body) {
            Ok(t) => match shared.create_table(t.clone()) {
                Ok(()) => admin_json(200, &t),
                Err(msg) => admin_error(400, &msg),
            },
            Err(e) => admin_error(400, &format!("invalid table JSON: {e}")),
        },
        _ => admin_error(
            404,
            "unknown admin endpoint; see GET /_strict/records?database=&table=, GET /_strict/stats, GET|POST /_strict/faults, POST /_strict/reset, GET|POST /_strict/tables",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = Some("database=my%2Ddb&table=a+b&x");
        assert_eq!(query_param(q, "database").as_deref(), Some("my-db"));
        assert_eq!(query_param(q, "table").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "x").as_deref(), Some(""));
        assert_eq!(query_param(q, "y"), None);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn seeds_are_spread() {
        assert_ne!(mix(0, 0), mix(0, 1));
        assert_ne!(mix(1, 0), mix(0, 0));
        assert_eq!(mix(7, 9), mix(7, 9));
    }
}
