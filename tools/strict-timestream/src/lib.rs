//! A strict local Amazon Timestream Write endpoint for tests and benchmarks.
//!
//! The server speaks the awsJson1_0 protocol the official SDKs use (HTTP/1.1 `POST /`,
//! `X-Amz-Target: Timestream_20181101.<Operation>`, `Content-Type: application/x-amz-json-1.0`)
//! and implements `WriteRecords`, `DescribeEndpoints`, `CreateDatabase`, `CreateTable`,
//! `DescribeDatabase` and `DescribeTable`. Request signatures are not checked.
//!
//! `WriteRecords` validates like the real service, with the same split between request-level
//! `ValidationException`s and per-record `RejectedRecordsException`s (partial success: the
//! other records of the request are stored); see the `validate` module source for the rules.
//! Accepted records are kept in memory and can be read back through [`ServerHandle::records`]
//! or the admin HTTP API under `/_strict/` (a path the protocol never uses).
//!
//! Faults (throttling, internal errors, dropped connections, latency, rejected records) can be
//! injected into `WriteRecords`, at start and at runtime; their draws come from a generator
//! seeded by [`Config::seed`] and the call's sequence number, so a run that sends the same
//! calls in the same order sees the same faults.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use strict_timestream::{Config, Server, TableConfig};
//! let cfg = Config {
//!     tables: vec![TableConfig::new("k6", "metrics")],
//!     ..Config::default()
//! };
//! let server = Server::start("127.0.0.1:0".parse().unwrap(), cfg).await?;
//! // Point the SDK at it: `.endpoint_url(server.endpoint_url())`, without endpoint discovery.
//! let stored = server.records("k6", "metrics");
//! # let _ = stored;
//! server.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

mod service;
mod store;
mod validate;
mod wire;

use store::Table;

/// Scalar type of a stored measure value (`MeasureValueType` without `MULTI`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ValueType {
    Double,
    Bigint,
    Varchar,
    Boolean,
    Timestamp,
}

impl ValueType {
    /// The wire name (`DOUBLE`, `BIGINT`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Double => "DOUBLE",
            ValueType::Bigint => "BIGINT",
            ValueType::Varchar => "VARCHAR",
            ValueType::Boolean => "BOOLEAN",
            ValueType::Timestamp => "TIMESTAMP",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<ValueType> {
        Some(match s {
            "DOUBLE" => ValueType::Double,
            "BIGINT" => ValueType::Bigint,
            "VARCHAR" => ValueType::Varchar,
            "BOOLEAN" => ValueType::Boolean,
            "TIMESTAMP" => ValueType::Timestamp,
            _ => return None,
        })
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Server configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Tables (and, implicitly, their databases) that exist from the start.
    pub tables: Vec<TableConfig>,
    /// Faults injected into `WriteRecords` from the start.
    pub faults: Faults,
    /// Seed of the fault generator.
    pub seed: u64,
}

/// A table and its retention settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableConfig {
    pub database: String,
    pub table: String,
    /// Memory store retention: records older than this are rejected unless magnetic store
    /// writes are enabled. 1..=8766; default 24. (A table made through the `CreateTable`
    /// operation without `RetentionProperties` gets the service default of 6 hours instead.)
    pub memory_retention_hours: u64,
    /// Magnetic store retention, 1..=73000; default 73000. With magnetic store writes, records
    /// down to this age are accepted (into the magnetic store).
    pub magnetic_retention_days: u64,
    /// `MagneticStoreWriteProperties.EnableMagneticStoreWrites`.
    pub magnetic_writes: bool,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            database: String::new(),
            table: String::new(),
            memory_retention_hours: 24,
            magnetic_retention_days: 73_000,
            magnetic_writes: false,
        }
    }
}

impl TableConfig {
    /// A table with the default retention and magnetic store writes disabled.
    pub fn new(database: impl Into<String>, table: impl Into<String>) -> Self {
        TableConfig {
            database: database.into(),
            table: table.into(),
            ..TableConfig::default()
        }
    }

    /// Enables or disables magnetic store writes.
    pub fn with_magnetic_writes(mut self, enabled: bool) -> Self {
        self.magnetic_writes = enabled;
        self
    }

    /// Sets the memory store retention in hours.
    pub fn with_memory_retention_hours(mut self, hours: u64) -> Self {
        self.memory_retention_hours = hours;
        self
    }

    /// Sets the magnetic store retention in days.
    pub fn with_magnetic_retention_days(mut self, days: u64) -> Self {
        self.magnetic_retention_days = days;
        self
    }

    /// Checks names and retention against the service's constraints.
    pub fn validate(&self) -> Result<(), String> {
        check_resource_name("database", &self.database)?;
        check_resource_name("table", &self.table)?;
        if !(1..=8766).contains(&self.memory_retention_hours) {
            return Err(format!(
                "memory_retention_hours must be within 1..=8766, got {}",
                self.memory_retention_hours
            ));
        }
        if !(1..=73_000).contains(&self.magnetic_retention_days) {
            return Err(format!(
                "magnetic_retention_days must be within 1..=73000, got {}",
                self.magnetic_retention_days
            ));
        }
        Ok(())
    }
}

/// Database and table names: 1..=256 bytes of `[a-zA-Z0-9_.-]` (the model's pattern and the
/// quota on name length).
pub(crate) fn check_resource_name(what: &str, name: &str) -> Result<(), String> {
    if !(1..=256).contains(&name.len()) {
        return Err(format!(
            "The {what} name '{name}' must be between 1 and 256 bytes long."
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(format!(
            "The {what} name '{name}' may only contain letters, digits, '_', '.' and '-'."
        ));
    }
    Ok(())
}

/// Faults injected into `WriteRecords` (other operations are never faulted). Rates are
/// probabilities in `0.0..=1.0`, drawn independently per call (per record for `reject_rate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Answer `ThrottlingException` (HTTP 429); nothing is stored.
    pub throttle_rate: f64,
    /// Answer `InternalServerException` (HTTP 500); nothing is stored.
    pub server_error_rate: f64,
    /// Minimum response time of every `WriteRecords` call, measured from the arrival of the
    /// request body: processing time is part of it, not added to it. Applies to every
    /// outcome, faults included.
    pub latency_ms: u64,
    /// Close the connection without answering; nothing is stored.
    pub reset_rate: f64,
    /// Reject a record that is otherwise valid with a synthetic reason; the other records
    /// of the call are stored, as with real rejections.
    pub reject_rate: f64,
}

impl Faults {
    /// Checks that the rates are probabilities.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("throttle_rate", self.throttle_rate),
            ("server_error_rate", self.server_error_rate),
            ("reset_rate", self.reset_rate),
            ("reject_rate", self.reject_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be within 0.0..=1.0, got {rate}"));
            }
        }
        Ok(())
    }
}

/// One stored measure: a single-measure record, or one value of a MULTI record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMeasure {
    /// The record's dimensions after the `CommonAttributes` merge, by name.
    pub dimensions: BTreeMap<String, String>,
    pub measure_name: String,
    /// For a MULTI record, the name of this measure value.
    pub sub_measure: Option<String>,
    /// Nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// The value as it was sent.
    pub value: String,
    pub value_type: ValueType,
    pub version: i64,
    /// Written to the magnetic store (older than the memory store retention).
    pub magnetic: bool,
}

/// When a stored record arrived (for latency figures: how long after its own time a
/// record got here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    /// The record's time, ns since the Unix epoch.
    pub time_ns: i64,
    /// Wall-clock time the server stored it (its latest version), ns since the Unix epoch.
    /// Identical duplicates do not change it.
    pub arrived_unix_ns: i64,
    /// Measures it holds (values of a MULTI record).
    pub measures: usize,
}

/// Counters since the start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// awsJson API calls of every operation (the admin API is not counted).
    pub requests: u64,
    /// `WriteRecords` calls, whatever their outcome.
    pub write_calls: u64,
    /// `WriteRecords` calls answered with success (every record accepted).
    pub write_calls_ok: u64,
    /// `WriteRecords` calls answered with `RejectedRecordsException`.
    pub write_calls_rejected: u64,
    /// Records in `WriteRecords` calls that got past faults and request validation.
    pub records_received: u64,
    /// Records accepted: stored, upserted or identical duplicates.
    pub records_ingested: u64,
    /// New records stored (a MULTI record counts once).
    pub records_stored: u64,
    /// Existing records updated by a higher version.
    pub records_upserted: u64,
    /// Identical records accepted without storing them again.
    pub records_duplicate: u64,
    /// Records rejected, injected rejections included.
    pub records_rejected: u64,
    /// `WriteRecords` calls refused with `ValidationException` or `SerializationException`.
    pub validation_errors: u64,
    /// `WriteRecords` calls refused with `ResourceNotFoundException`.
    pub not_found_errors: u64,
    /// Injected faults by kind.
    pub faults: FaultStats,
}

/// Injected faults by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultStats {
    pub throttled: u64,
    pub server_errors: u64,
    pub resets: u64,
    /// Records rejected by `reject_rate`.
    pub rejected_records: u64,
    /// Calls held back by `latency_ms`.
    pub delayed_calls: u64,
}

macro_rules! counters {
    ($($field:ident),* ; $($fault:ident),*) => {
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub $field: AtomicU64,)*
            $(pub $fault: AtomicU64,)*
        }

        impl Counters {
            fn snapshot(&self) -> Stats {
                Stats {
                    $($field: self.$field.load(Ordering::Relaxed),)*
                    faults: FaultStats {
                        $($fault: self.$fault.load(Ordering::Relaxed),)*
                    },
                }
            }

            fn reset(&self) {
                $(self.$field.store(0, Ordering::Relaxed);)*
                $(self.$fault.store(0, Ordering::Relaxed);)*
            }
        }
    };
}

counters!(
    requests, write_calls, write_calls_ok, write_calls_rejected, records_received,
    records_ingested, records_stored, records_upserted, records_duplicate, records_rejected,
    validation_errors, not_found_errors;
    throttled, server_errors, resets, rejected_records, delayed_calls
);

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

pub(crate) struct DatabaseEntry {
    pub created_secs: f64,
    pub kms_key_id: Option<String>,
    pub tables: HashMap<String, Arc<Mutex<Table>>>,
}

/// State shared by the connections and the handle.
pub(crate) struct Shared {
    /// Databases and tables. Each table has its own lock, held only while a call's prepared
    /// records are applied (never across an await), so calls to different tables and the
    /// parsing and validation of calls to the same table run in parallel.
    pub catalog: RwLock<HashMap<String, DatabaseEntry>>,
    pub faults: Mutex<Faults>,
    pub seed: u64,
    pub counters: Counters,
    /// `host:port` of this server, as `DescribeEndpoints` reports it.
    pub advertised: String,
    pub request_ids: AtomicU64,
}

pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Shared {
    fn create_table(&self, t: TableConfig) -> Result<(), String> {
        t.validate()?;
        let mut catalog = self.catalog.write().expect("catalog lock");
        let db = catalog
            .entry(t.database.clone())
            .or_insert_with(|| DatabaseEntry {
                created_secs: now_secs(),
                kms_key_id: None,
                tables: HashMap::new(),
            });
        match db.tables.get(&t.table) {
            // Existing table: new settings, data kept.
            Some(existing) => existing.lock().expect("table lock").cfg = t,
            None => {
                let name = t.table.clone();
                db.tables
                    .insert(name, Arc::new(Mutex::new(Table::new(t, now_secs()))));
            }
        }
        Ok(())
    }

    pub(crate) fn table(&self, database: &str, table: &str) -> Option<Arc<Mutex<Table>>> {
        let catalog = self.catalog.read().expect("catalog lock");
        catalog.get(database)?.tables.get(table).cloned()
    }

    fn tables(&self) -> Vec<TableConfig> {
        let catalog = self.catalog.read().expect("catalog lock");
        let mut out: Vec<TableConfig> = catalog
            .values()
            .flat_map(|db| db.tables.values())
            .map(|t| t.lock().expect("table lock").cfg.clone())
            .collect();
        out.sort_by(|a, b| (&a.database, &a.table).cmp(&(&b.database, &b.table)));
        out
    }

    fn reset(&self) {
        let catalog = self.catalog.read().expect("catalog lock");
        for t in catalog.values().flat_map(|db| db.tables.values()) {
            t.lock().expect("table lock").clear();
        }
        self.counters.reset();
    }

    fn records(&self, database: &str, table: &str) -> Option<Vec<StoredMeasure>> {
        let t = self.table(database, table)?;
        let t = t.lock().expect("table lock");
        Some(t.records())
    }

    fn set_faults(&self, faults: Faults) -> Result<(), String> {
        faults.validate()?;
        *self.faults.lock().expect("faults lock") = faults;
        Ok(())
    }
}

/// Entry point: starts servers.
pub struct Server;

impl Server {
    /// Binds `addr` (use port 0 for a free port), creates the configured tables and serves
    /// until [`ServerHandle::shutdown`] or until the handle is dropped. Must be called from
    /// within a Tokio runtime; the server runs on that runtime.
    pub async fn start(addr: SocketAddr, cfg: Config) -> std::io::Result<ServerHandle> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        cfg.faults.validate().map_err(invalid)?;
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let advertised = if local.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
        } else {
            local
        };
        let shared = Arc::new(Shared {
            catalog: RwLock::new(HashMap::new()),
            faults: Mutex::new(cfg.faults),
            seed: cfg.seed,
            counters: Counters::default(),
            advertised: advertised.to_string(),
            request_ids: AtomicU64::new(0),
        });
        for t in cfg.tables {
            shared.create_table(t).map_err(invalid)?;
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), shutdown_rx));
        Ok(ServerHandle {
            shared,
            addr: advertised,
            shutdown_tx,
            task: Some(task),
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(service::serve_connection(
                    stream,
                    shared.clone(),
                    shutdown.clone(),
                ));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    // Connections finish their in-flight request and close; give them a bounded time.
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        connections.abort_all();
    }
}

/// A running server. Dropping it stops the server (without waiting); prefer
/// [`ServerHandle::shutdown`].
pub struct ServerHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// `http://host:port`, for the SDK's `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stored measures of a table in arrival order (empty if the table does not exist).
    pub fn records(&self, database: &str, table: &str) -> Vec<StoredMeasure> {
        self.shared.records(database, table).unwrap_or_default()
    }

    /// When each stored record of a table arrived, in arrival order (empty if the table does
    /// not exist).
    pub fn arrivals(&self, database: &str, table: &str) -> Vec<Arrival> {
        self.shared
            .table(database, table)
            .map(|t| t.lock().expect("table lock").arrivals())
            .unwrap_or_default()
    }

    /// Number of stored measures of a table, without copying them.
    pub fn record_count(&self, database: &str, table: &str) -> usize {
        self.shared
            .table(database, table)
            .map(|t| t.lock().expect("table lock").measure_count())
            .unwrap_or(0)
    }

    /// Counters since the start or the last reset.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// The faults currently injected.
    pub fn faults(&self) -> Faults {
        *self.shared.faults.lock().expect("faults lock")
    }

    /// Replaces the injected faults. Panics if a rate is outside `0.0..=1.0`.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults).expect("valid fault rates");
    }

    /// Drops every stored record and the learned schemas, and zeroes the counters. Tables,
    /// databases and faults stay as they are.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Creates a table (and its database if needed); for an existing table, replaces its
    /// settings and keeps its data. Fails on invalid names or retention.
    pub fn create_table(&self, table: TableConfig) -> Result<(), String> {
        self.shared.create_table(table)
    }

    /// Every table's settings, sorted by database and table.
    pub fn tables(&self) -> Vec<TableConfig> {
        self.shared.tables()
    }

    /// Stops accepting connections, lets in-flight requests finish (up to 5 s) and returns
    /// when the server has stopped.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_config_validation() {
        assert!(TableConfig::new("db1", "tbl").validate().is_ok());
        assert!(TableConfig::new("", "tbl").validate().is_err());
        assert!(TableConfig::new("db1", "x".repeat(257)).validate().is_err());
        assert!(TableConfig::new("db 1", "tbl").validate().is_err());
        assert!(TableConfig::new("db1", "tbl")
            .with_memory_retention_hours(0)
            .validate()
            .is_err());
        assert!(TableConfig::new("db1", "tbl")
            .with_magnetic_retention_days(73_001)
            .validate()
            .is_err());
    }

    #[test]
    fn config_json_defaults() {
        let cfg: Config = serde_json::from_str(
            r#"{"tables":[{"database":"db1","table":"tbl"}],"faults":{"throttle_rate":0.5}}"#,
        )
        .unwrap();
        assert_eq!(cfg.tables[0], TableConfig::new("db1", "tbl"));
        assert_eq!(cfg.faults.throttle_rate, 0.5);
        assert_eq!(cfg.faults.latency_ms, 0);
        assert!(Faults {
            reject_rate: 1.5,
            ..Faults::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn value_type_names() {
        assert_eq!(
            serde_json::to_string(&ValueType::Bigint).unwrap(),
            "\"BIGINT\""
        );
        assert_eq!(ValueType::parse("TIMESTAMP"), Some(ValueType::Timestamp));
        assert_eq!(ValueType::parse("MULTI"), None);
    }
}
