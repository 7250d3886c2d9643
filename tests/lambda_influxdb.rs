//! The Lambda binary with the InfluxDB sink (`K6TS_SINK=influxdb`), end to
//! end under `cargo lambda watch`: S3 in moto, the token from a Secrets
//! Manager secret (moto), writes into a checking v2 endpoint across a chain
//! of continuations that go on from checkpoints, into a real `influxd`
//! through the v1 API, and the init errors a wrong deployment gets.

mod support;

use k6_timestream::core::report::{Outcome, RunReport};
use k6_timestream::sinks::influxdb::encode::{parse_lines_with, Dialect, ParsedPoint};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::influxdb::{as_stored, FakeApi, FakeInflux, Fault, InfluxServer};
use support::lambda::{k6_runs, reports_of, s3_event, Env, Uploaded, LAMBDA_BIN};
use support::measures::CLI_BIN;
use support::procs::{fake_aws_env, wait_until, Proc};
use support::{gzip, root};

const TOKEN: &str = "s3cr3t-t0ken/+=";
const ORG: &str = "perf team";
const BUCKET: &str = "k6";

/// `copies` real k6 runs as one object `key` (gzip) in a new `bucket`
/// (`versioned` or not), and the points `convert` makes of them for the
/// InfluxDB `api`.
fn put_runs(
    env: &Env,
    bucket: &str,
    versioned: bool,
    key: &str,
    copies: i32,
    api: &str,
) -> (Uploaded, Vec<ParsedPoint>) {
    env.create_bucket(bucket, versioned);
    let raw = k6_runs(copies);
    let local = env.dir.path().join(format!("{bucket}.json"));
    std::fs::write(&local, &raw).unwrap();
    let want = expected_lines(&local, key, &["--influxdb-api", api]);
    (env.put(bucket, key, gzip(&raw)), want)
}

/// The line protocol `convert --sink influxdb` makes of `file` for an
/// object named `key` (the function derives the same testid from it).
fn expected_lines(file: &Path, key: &str, extra: &[&str]) -> Vec<ParsedPoint> {
    let testid = k6_timestream::core::convert::derive_testid(key);
    let out = Command::new(CLI_BIN)
        .args(["convert", "--sink", "influxdb", "--testid", &testid])
        .args(extra)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_lines_with(Dialect::Portable, &String::from_utf8(out.stdout).unwrap())
        .expect("strict line protocol")
}

fn create_secret(env: &Env, name: &str, value: &str) -> String {
    let sm = env.moto.secrets_client();
    let out = env
        .rt()
        .block_on(sm.create_secret().name(name).secret_string(value).send())
        .unwrap_or_else(|e| panic!("create secret {name}: {e:?}"));
    out.arn().unwrap().to_owned()
}

/// Invokes with `event`, then delivers every continuation the function
/// hands to the relay, until the object's chain ends; the reports in order.
fn run_chain(env: &Env, f: &support::lambda::Function, event: &Value) -> Vec<RunReport> {
    let mut reports = vec![env.reports(f, event).remove(0)];
    while reports.last().unwrap().outcome == Some(Outcome::Continued) {
        let got = env.relay.take();
        assert_eq!(got.len(), 1, "one continuation per link");
        assert!(
            got[0].payload["continuation"]["checkpoint"]["key"].is_string(),
            "link {} went on without a checkpoint: {}",
            reports.len(),
            got[0].payload
        );
        assert!(reports.len() < 100, "the chain does not end");
        reports.push(env.reports(f, &got[0].payload).remove(0));
    }
    reports
}

/// A token from Secrets Manager, a slow v2 endpoint and a 1 s work budget:
/// the object is written over several links, each going on from the
/// checkpoint of the last (the InfluxDB encoder's state included), every
/// point once and exactly as `convert` prints it; the same event again
/// writes the same lines (InfluxDB keeps one point per key: nothing new).
#[test]
fn lambda_chain_into_influxdb_v2_with_the_token_from_secrets_manager() {
    let env = Env::start();
    let fake = FakeInflux::start(
        env.rt().handle(),
        FakeApi::V2 {
            org: ORG.into(),
            bucket: BUCKET.into(),
        },
        TOKEN,
        true,
    );
    // Every write answered after 150 ms: with one request of 200 lines in
    // flight, a link of 1 s writes a handful of requests.
    for _ in 0..2000 {
        fake.push_fault(Fault::Delay(Duration::from_millis(150)));
    }
    let arn = create_secret(
        &env,
        "k6-timestream/influxdb",
        &format!("{{\"token\":\"{TOKEN}\"}}"),
    );
    let (up, want) = put_runs(
        &env,
        "k6-influx-chain",
        false,
        "k6-results/three runs.json.gz",
        3,
        "v2",
    );
    let f = env.start_function(
        LAMBDA_BIN,
        &[
            ("K6TS_SINK", "influxdb"),
            ("K6TS_INFLUXDB_URL", &fake.url()),
            ("K6TS_INFLUXDB_API", "v2"),
            ("K6TS_INFLUXDB_ORG", ORG),
            ("K6TS_INFLUXDB_DATABASE", BUCKET),
            ("K6TS_INFLUXDB_TOKEN_SECRET_ARN", &arn),
            ("K6TS_INFLUXDB_BATCH_LINES", "200"),
            ("K6TS_CONCURRENCY", "1"),
            ("K6TS_WORK_BUDGET_SECONDS", "1"),
            ("K6TS_MAX_CONTINUATIONS", "100"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", &env.moto.url()),
        ],
    );
    let event = s3_event("s3-put-gzip.json", &[&up], false);
    let reports = run_chain(&env, &f, &event);
    let last = reports.last().unwrap();
    eprintln!(
        "[lambda_influxdb] {} links, {} lines in {} requests",
        reports.len(),
        want.len(),
        fake.requests()
    );
    assert_eq!(last.outcome, Some(Outcome::Complete), "{last:#?}");
    assert!(
        reports.len() >= 3,
        "{} links: the budget did stop the runs",
        reports.len()
    );
    assert_eq!(fake.violations(), Vec::<String>::new(), "request shape");
    let first = fake.points();
    assert_eq!(first.len(), want.len(), "every line written once");
    assert_eq!(
        as_stored(&first),
        as_stored(&want),
        "as convert prints them"
    );
    assert_eq!(
        (last.written_measures, last.dead_lettered_measures),
        (last.measures, 0),
        "{last:#?}"
    );
    assert!(
        env.list(&up.bucket, "k6-timestream-state/").is_empty(),
        "every checkpoint deleted"
    );

    let again = run_chain(&env, &f, &event);
    assert_eq!(again.last().unwrap().outcome, Some(Outcome::Complete));
    let all = fake.points();
    assert_eq!(all.len(), 2 * want.len());
    assert_eq!(
        as_stored(&all[first.len()..]),
        as_stored(&want),
        "the same lines again"
    );
}

/// The v1 API into a real `influxd`: every point of a real k6 object is
/// stored (queried back with InfluxQL), one invocation, no token.
#[test]
fn lambda_into_a_real_influxd_through_the_v1_api() {
    let env = Env::start();
    let influx = InfluxServer::start();
    influx.create_database("k6lambda");
    let (up, want) = put_runs(&env, "k6-influx-v1", true, "runs/mixed.json.gz", 1, "v1");
    let f = env.start_function(
        LAMBDA_BIN,
        &[
            ("K6TS_SINK", "influxdb"),
            ("K6TS_INFLUXDB_URL", &influx.url()),
            ("K6TS_INFLUXDB_API", "v1"),
            ("K6TS_INFLUXDB_DATABASE", "k6lambda"),
        ],
    );
    let reports = reports_of(&env.invoke(&f, &s3_event("s3-put-gzip.json", &[&up], false)));
    let r = &reports[0];
    assert_eq!(r.outcome, Some(Outcome::Complete), "{r:#?}");
    assert_eq!(r.written_measures, r.measures, "{r:#?}");
    let stored = influx.points("k6lambda");
    // Measurement, tags and time of each point (InfluxQL's answer has no
    // field order; the fields are compared in the v1/v2 tests of the sink).
    let mut got: Vec<_> = stored
        .iter()
        .map(|p| (p.measurement.clone(), p.tags.clone(), p.time_ns))
        .collect();
    let mut exp: Vec<_> = want
        .iter()
        .map(|p| {
            let tags: BTreeMap<String, String> = p.tags.iter().cloned().collect();
            (p.measurement.clone(), tags, p.time_ns)
        })
        .collect();
    got.sort();
    exp.sort();
    assert_eq!(got.len(), exp.len(), "one stored point per line");
    assert_eq!(got, exp, "the same measurements, tags and times");
}

/// Starts the function binary against a runtime API nobody serves (init
/// fails before it is asked for work) and returns its log once it exited.
fn init_failure(env: &Env, extra: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(LAMBDA_BIN);
    cmd.env_clear()
        .current_dir(root())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_FUNCTION_NAME", "k6-timestream-lambda")
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_ENDPOINT_URL_S3", env.moto.url())
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", env.moto.url())
        .env("K6TS_SINK", "influxdb");
    fake_aws_env(&mut cmd).envs(extra.iter().copied());
    let p = Proc::spawn("init", cmd, env.dir.path().join("init.log"));
    wait_until(
        "the function's init to fail",
        Duration::from_secs(30),
        None,
        || !p.alive(),
    );
    p.tail(20)
}

/// A secret that does not exist, and a token the server refuses: the
/// function does not start, with one message naming what is wrong.
#[test]
fn wrong_influxdb_credentials_fail_the_init() {
    let env = Env::start();
    let fake = FakeInflux::start(
        env.rt().handle(),
        FakeApi::V2 {
            org: ORG.into(),
            bucket: BUCKET.into(),
        },
        TOKEN,
        true,
    );
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:no-such-secret-AbCdEf";
    let url = fake.url();
    let common = [
        ("K6TS_INFLUXDB_URL", url.as_str()),
        ("K6TS_INFLUXDB_API", "v2"),
        ("K6TS_INFLUXDB_ORG", ORG),
        ("K6TS_INFLUXDB_DATABASE", BUCKET),
    ];
    let mut env_missing = common.to_vec();
    env_missing.push(("K6TS_INFLUXDB_TOKEN_SECRET_ARN", missing));
    let log = init_failure(&env, &env_missing);
    assert!(
        log.contains("reading the InfluxDB token from secret") && log.contains(missing),
        "{log}"
    );
    let wrong = create_secret(&env, "k6-timestream/wrong", "not-the-token");
    let mut env_wrong = common.to_vec();
    env_wrong.push(("K6TS_INFLUXDB_TOKEN_SECRET_ARN", &wrong));
    let log = init_failure(&env, &env_wrong);
    assert!(log.contains(&format!("InfluxDB at {url}")), "{log}");
    assert_eq!(fake.points().len(), 0, "nothing written");
}
