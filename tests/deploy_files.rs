//! Checks of the deployment files: the sample events in `events/`, the CI
//! uploader policy, the Grafana dashboard JSON and a few invariants of
//! `template.yaml` that the code depends on (std + serde_json only; the
//! template is checked as text, cfn-lint and `sam validate --lint` do the rest).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn json(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid JSON: {e}"))
}

/// Every `*.json` file of `events/` except the sidecar, by file name.
fn event_files() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("events")).expect("events/ exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            name.ends_with(".json"),
            "events/{name}: only .json files belong in events/"
        );
        if name == "expected-keys.json" {
            continue;
        }
        out.insert(name.clone(), json(&format!("events/{name}")));
    }
    out
}

fn expected_keys() -> BTreeMap<String, Vec<String>> {
    let v = json("events/expected-keys.json");
    v.as_object()
        .expect("expected-keys.json is an object")
        .iter()
        .map(|(file, keys)| {
            let keys = keys
                .as_array()
                .unwrap_or_else(|| panic!("expected-keys.json[{file}] is a list"))
                .iter()
                .map(|k| k.as_str().expect("keys are strings").to_owned())
                .collect();
            (file.clone(), keys)
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding as S3 applies it to keys in
/// event notifications: `+` is a space, `%XX` a byte, the bytes are UTF-8.
/// Written by hand on purpose, and compared with the `form_urlencoded` crate.
fn form_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("decoded key is UTF-8")
}

fn crate_decode(s: &str) -> String {
    // The whole value as one pair's value: "k=<encoded>". An encoded key never
    // contains a raw '&' or '=' (S3 encodes them), so there is exactly one pair.
    let input = format!("k={s}");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(input.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(pairs.len(), 1, "{s:?} decodes to one pair");
    pairs[0].1.clone()
}

/// Suffixes of the S3 notifications in template.yaml (`{Name: suffix, Value: X}`).
fn notification_suffixes(template: &str) -> Vec<String> {
    template
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("- {Name: suffix, Value: ")?;
            Some(rest.strip_suffix('}')?.trim().to_owned())
        })
        .collect()
}

/// `Default:` of a top-level parameter of template.yaml.
fn template_default(template: &str, parameter: &str) -> String {
    let start = template
        .find(&format!("\n  {parameter}:\n"))
        .unwrap_or_else(|| panic!("parameter {parameter} not in template.yaml"));
    template[start..]
        .lines()
        .skip(2) // the empty remainder of the previous line, and "  Name:"
        .take_while(|l| l.starts_with("    "))
        .find_map(|l| l.trim().strip_prefix("Default: "))
        .unwrap_or_else(|| panic!("parameter {parameter} has no Default"))
        .trim_matches(|c| c == '\'' || c == '"')
        .to_owned()
}

#[test]
fn form_decoding_matches_s3_encoding() {
    let cases = [
        ("k6-results/run-1.json", "k6-results/run-1.json"),
        ("a+b", "a b"),
        ("a%2Bb", "a+b"),
        ("x%3Dy%26z", "x=y&z"),
        ("100%25", "100%"),
        (
            "h%C3%A9llo+%E6%97%A5%E6%9C%AC+%F0%9F%9A%80",
            "héllo 日本 🚀",
        ),
        ("%E2%9C%93", "✓"),
        ("50%", "50%"), // a lone % is kept
        ("%zz", "%zz"), // so is an invalid escape
    ];
    for (enc, dec) in cases {
        assert_eq!(form_decode(enc), dec, "hand-written decoding of {enc:?}");
        assert_eq!(
            crate_decode(enc),
            dec,
            "form_urlencoded decoding of {enc:?}"
        );
    }
}

#[test]
fn every_event_is_valid_json_and_has_expected_keys() {
    let events = event_files();
    let expected = expected_keys();
    let files: BTreeSet<_> = events.keys().cloned().collect();
    let listed: BTreeSet<_> = expected.keys().cloned().collect();
    assert_eq!(
        files, listed,
        "events/expected-keys.json must list exactly the event files"
    );
    for required in [
        "s3-put-plain.json",
        "s3-put-gzip.json",
        "s3-put-encoded-key.json",
        "s3-multi-record.json",
        "s3-put-versioned.json",
        "direct-reprocess.json",
        "continuation.json",
    ] {
        assert!(files.contains(required), "events/{required} is missing");
    }
}

fn s3_keys(name: &str, event: &Value) -> Vec<String> {
    let records = event["Records"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: Records is a list"));
    assert!(!records.is_empty(), "{name}: no records");
    records
        .iter()
        .map(|r| {
            assert_eq!(r["eventVersion"], "2.1", "{name}: eventVersion");
            assert_eq!(r["eventSource"], "aws:s3", "{name}: eventSource");
            assert!(
                r["awsRegion"].is_string() && r["eventTime"].is_string(),
                "{name}: awsRegion/eventTime"
            );
            let event_name = r["eventName"].as_str().unwrap_or_default();
            assert!(
                event_name.starts_with("ObjectCreated:"),
                "{name}: eventName {event_name:?}"
            );
            let s3 = &r["s3"];
            assert_eq!(s3["s3SchemaVersion"], "1.0", "{name}: s3SchemaVersion");
            assert!(s3["configurationId"].is_string(), "{name}: configurationId");
            let bucket = s3["bucket"]["name"].as_str().expect("s3.bucket.name");
            assert!(!bucket.is_empty());
            assert_eq!(
                s3["bucket"]["arn"],
                format!("arn:aws:s3:::{bucket}"),
                "{name}: bucket arn"
            );
            let object = &s3["object"];
            assert!(
                object["size"].is_u64(),
                "{name}: s3.object.size is a number"
            );
            assert!(object["eTag"].is_string(), "{name}: s3.object.eTag");
            assert!(
                object["sequencer"].is_string(),
                "{name}: s3.object.sequencer"
            );
            if let Some(v) = object.get("versionId") {
                assert!(
                    v.as_str().is_some_and(|v| !v.is_empty()),
                    "{name}: versionId is a non-empty string"
                );
            }
            let encoded = object["key"].as_str().expect("s3.object.key");
            assert!(
                !encoded.contains(' ') && encoded.is_ascii(),
                "{name}: S3 keys in notifications are form-urlencoded ASCII: {encoded:?}"
            );
            let by_hand = form_decode(encoded);
            assert_eq!(
                by_hand,
                crate_decode(encoded),
                "{name}: the two decoders disagree on {encoded:?}"
            );
            by_hand
        })
        .collect()
}

#[test]
fn s3_event_keys_decode_to_the_expected_keys() {
    let expected = expected_keys();
    let mut seen_encoded = false;
    let mut seen_version = false;
    for (name, event) in event_files() {
        if event.get("Records").is_none() {
            continue;
        }
        let keys = s3_keys(&name, &event);
        assert_eq!(keys, expected[&name], "{name}: decoded keys");
        let raw: Vec<&str> = event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["s3"]["object"]["key"].as_str().unwrap())
            .collect();
        seen_encoded |= raw.iter().zip(&keys).any(|(r, k)| r != k);
        seen_version |= event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["s3"]["object"].get("versionId").is_some());
    }
    assert!(seen_encoded, "no sample exercises key decoding");
    assert!(seen_version, "no sample carries a versionId");

    // The encoded-key sample covers each special case S3 encodes.
    let enc = json("events/s3-put-encoded-key.json");
    let raw = enc["Records"][0]["s3"]["object"]["key"].as_str().unwrap();
    for needle in ["+", "%2B", "%3D", "%C3%A9", "%25"] {
        assert!(
            raw.contains(needle),
            "s3-put-encoded-key.json: key should contain {needle}"
        );
    }
    let multi = json("events/s3-multi-record.json");
    let n = multi["Records"].as_array().unwrap().len();
    assert!(
        (2..=3).contains(&n),
        "s3-multi-record.json has 2-3 records, not {n}"
    );
}

#[test]
fn direct_and_continuation_events() {
    let expected = expected_keys();

    let direct = json("events/direct-reprocess.json");
    let obj = direct.as_object().unwrap();
    for k in obj.keys() {
        assert!(
            ["bucket", "key", "version_id"].contains(&k.as_str()),
            "direct-reprocess.json: unexpected field {k}"
        );
    }
    assert!(direct["bucket"].as_str().is_some_and(|b| !b.is_empty()));
    assert!(direct["version_id"].is_null() || direct["version_id"].is_string());
    // Not url-encoded: the key is used exactly as written.
    assert_eq!(
        vec![direct["key"].as_str().unwrap().to_owned()],
        expected["direct-reprocess.json"]
    );

    let c = &json("events/continuation.json")["continuation"];
    assert!(
        c["bucket"].is_string() && c["etag"].is_string(),
        "continuation: bucket, etag"
    );
    assert!(
        c["version_id"].is_null() || c["version_id"].is_string(),
        "continuation: version_id"
    );
    assert!(
        c["skip_batches"].is_u64() && c["attempt"].is_u64(),
        "continuation: counters"
    );
    assert!(
        c["carried"].is_object(),
        "continuation: carried is an object"
    );
    assert_eq!(
        vec![c["key"].as_str().unwrap().to_owned()],
        expected["continuation.json"]
    );
}

#[test]
fn sample_keys_trigger_the_default_notification_and_suffixes_agree() {
    let template = read("template.yaml");
    let suffixes = notification_suffixes(&template);
    assert_eq!(
        suffixes.len(),
        4,
        "four notifications (.json, .ndjson, .csv, .gz): {suffixes:?}"
    );
    // S3 rejects overlapping suffixes for the same prefix and event type.
    for a in &suffixes {
        for b in &suffixes {
            assert!(
                a == b || !a.ends_with(b.as_str()),
                "notification suffixes {a} and {b} overlap"
            );
        }
    }
    // K6TS_SUFFIXES: every accepted suffix is delivered by some notification,
    // and every notification suffix is accepted.
    let env_line = template
        .lines()
        .find_map(|l| l.trim().strip_prefix("K6TS_SUFFIXES: "))
        .expect("K6TS_SUFFIXES in template.yaml");
    let accepted: Vec<&str> = env_line.trim().split(',').collect();
    for a in &accepted {
        assert!(
            suffixes.iter().any(|s| a.ends_with(s.as_str())),
            "K6TS_SUFFIXES entry {a} has no notification"
        );
    }
    for s in &suffixes {
        assert!(
            accepted.contains(&s.as_str()),
            "notification suffix {s} is not in K6TS_SUFFIXES"
        );
    }

    let prefix = template_default(&template, "ResultsPrefix");
    let dead_letter = template_default(&template, "DeadLetterPrefix");
    assert!(
        prefix.ends_with('/') && !prefix.starts_with("k6-timestream-"),
        "ResultsPrefix {prefix}"
    );
    assert!(
        dead_letter.starts_with("k6-timestream-") && dead_letter.ends_with('/'),
        "DeadLetterPrefix {dead_letter}"
    );
    assert!(
        template.contains("ObjectKeyPrefix: k6-timestream-rejected/"),
        "rejected-data prefix"
    );
    for other in [dead_letter.as_str(), "k6-timestream-rejected/"] {
        let key = format!("{other}k6-results/run.json.gz");
        assert!(
            !key.starts_with(&prefix),
            "{key} would trigger the function"
        );
    }

    let expected = expected_keys();
    for (file, keys) in &expected {
        for key in keys {
            assert!(
                key.starts_with(&prefix),
                "{file}: {key} is not under {prefix}"
            );
            assert!(
                suffixes.iter().any(|s| key.ends_with(s.as_str())),
                "{file}: {key} matches no notification suffix"
            );
        }
    }
}

#[test]
fn template_builds_and_configures_the_lambda_binary() {
    let template = read("template.yaml");
    let cargo = read("Cargo.toml");
    assert!(
        cargo.contains("name = \"k6-timestream-lambda\""),
        "Cargo.toml declares the k6-timestream-lambda binary"
    );
    for needle in [
        "BuildMethod: rust-cargolambda",
        "Binary: k6-timestream-lambda",
        "Runtime: provided.al2023",
        "Architectures: [arm64]",
        "Handler: bootstrap",
        "CodeUri: .",
        "RecursiveLoop: Allow",
        "LogFormat: JSON",
        "EnableMagneticStoreWrites: true",
        "SqsManagedSseEnabled: true",
    ] {
        assert!(template.contains(needle), "template.yaml lacks {needle:?}");
    }
    for var in [
        "K6TS_DATABASE",
        "K6TS_TABLE",
        "K6TS_MODEL",
        "K6TS_CONCURRENCY",
        "K6TS_TESTID",
        "K6TS_TESTID_FROM",
        "K6TS_DIMENSIONS",
        "K6TS_SUFFIXES",
        "K6TS_DEAD_LETTER_BUCKET",
        "K6TS_DEAD_LETTER_PREFIX",
        "K6TS_WORK_BUDGET_SECONDS",
        "K6TS_SAFETY_MARGIN_SECONDS",
        "K6TS_MAX_CONTINUATIONS",
        "K6TS_MAX_LINE_BYTES",
        "K6TS_MAX_DECOMPRESSED_BYTES",
        "K6TS_METRICS_NAMESPACE",
        "RUST_LOG",
    ] {
        assert!(
            template.contains(&format!("\n          {var}: ")),
            "template.yaml does not set {var}"
        );
    }
    for metric in [
        "MetricName: DeadLettered",
        "MetricName: FailedObjects",
        "MetricName: Errors",
        "MetricName: ApproximateNumberOfMessagesVisible",
    ] {
        assert!(
            template.contains(metric),
            "template.yaml has no alarm on {metric}"
        );
    }
}

#[test]
fn ci_uploader_policy_only_puts_under_the_results_prefix() {
    let policy = json("infra/iam/ci-uploader-policy.json");
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().expect("Statement list");
    assert!(!statements.is_empty());
    let as_list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
            other => panic!("expected a string or list, got {other}"),
        }
    };
    for s in statements {
        assert_eq!(s["Effect"], "Allow");
        assert!(s.get("NotAction").is_none() && s.get("NotResource").is_none());
        assert_eq!(
            as_list(&s["Action"]),
            vec!["s3:PutObject"],
            "the uploader may only PutObject"
        );
        for r in as_list(&s["Resource"]) {
            assert_eq!(
                r, "arn:aws:s3:::RESULTS_BUCKET_NAME/RESULTS_PREFIX*",
                "resource restricted to the results prefix"
            );
        }
    }
    let readme = read("infra/README.md");
    for placeholder in ["RESULTS_BUCKET_NAME", "RESULTS_PREFIX"] {
        assert!(
            readme.contains(placeholder),
            "infra/README.md documents {placeholder}"
        );
    }
}

fn all_panels<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
    for p in panels.as_array().expect("panels is a list") {
        out.push(p);
        if let Some(inner) = p.get("panels") {
            all_panels(inner, out);
        }
    }
}

#[test]
fn dashboard_json_is_valid_with_unique_panel_ids() {
    let dash = json("infra/grafana/dashboard.json");
    assert!(
        dash["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && u.len() <= 40),
        "dashboard uid"
    );
    assert!(dash["title"].is_string());
    let mut panels = Vec::new();
    all_panels(&dash["panels"], &mut panels);
    assert!(panels.len() >= 8, "dashboard has {} panels", panels.len());

    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for p in &panels {
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel without numeric id: {}", p["title"]));
        assert!(ids.insert(id), "duplicate panel id {id}");
        assert!(
            p["title"].as_str().is_some_and(|t| !t.is_empty()),
            "panel {id} has a title"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["type"], "grafana-timestream-datasource",
            "panel {id} data source"
        );
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {id} has targets"));
        let mut ref_ids = BTreeSet::new();
        for t in targets {
            assert!(
                ref_ids.insert(t["refId"].as_str().unwrap()),
                "panel {id}: duplicate refId"
            );
            let q = t["rawQuery"].as_str().unwrap_or_default();
            assert!(
                q.contains("$__database.$__table"),
                "panel {id}: query reads $__database.$__table"
            );
            assert!(
                q.contains("$__timeFilter"),
                "panel {id}: query is limited to the time range"
            );
            assert!(
                q.contains("${testid:sqlstring}"),
                "panel {id}: query filters on the testid variable"
            );
        }
        // Panels do not overlap on the 24-column grid.
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(
            x + w <= 24 && w > 0 && h > 0,
            "panel {id}: gridPos out of the grid"
        );
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), id) {
                    panic!("panels {other} and {id} overlap at ({cx},{cy})");
                }
            }
        }
    }

    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let names: BTreeSet<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), vars.len(), "variable names are unique");
    let testid = vars
        .iter()
        .find(|v| v["name"] == "testid")
        .expect("a testid variable");
    assert_eq!(testid["type"], "query");
    let q = testid["query"]
        .as_str()
        .or(testid["query"]["rawQuery"].as_str())
        .unwrap();
    assert!(
        q.contains("SELECT DISTINCT testid"),
        "testid variable query: {q}"
    );
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["query"], "grafana-timestream-datasource");
}

#[test]
fn grafana_provisioning_files_point_at_the_plugin_and_the_dashboard() {
    let ds = read("infra/grafana/provisioning/datasources/timestream.yaml");
    assert!(ds.contains("apiVersion: 1"));
    assert!(ds.contains("type: grafana-timestream-datasource"));
    for key in [
        "defaultRegion:",
        "defaultDatabase:",
        "defaultTable:",
        "authType:",
    ] {
        assert!(ds.contains(key), "datasource provisioning sets {key}");
    }
    let dashboards = read("infra/grafana/provisioning/dashboards/k6-timestream.yaml");
    assert!(dashboards.contains("apiVersion: 1") && dashboards.contains("type: file"));
    assert!(
        dashboards.contains("path: "),
        "dashboard provider has a path"
    );
    assert!(Path::new(&root().join("infra/grafana/dashboard.json")).is_file());
}
