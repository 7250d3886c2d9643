//! Checks of the deployment files: the sample events in `events/`, the CI
//! uploader policy, the Grafana dashboard JSON and a few invariants of
//! `template.yaml` that the code depends on (the template is checked as
//! text; cfn-lint and `sam validate --lint` do the rest).

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use support::root;

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
        "eventbridge-object-created.json",
        "batch-ops-1.0.json",
        "batch-ops-2.0.json",
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
    assert!(
        c["checkpoint"].is_null()
            || (c["checkpoint"]["bucket"].is_string() && c["checkpoint"]["key"].is_string()),
        "continuation: checkpoint is null or {{bucket, key}}"
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
    let state = template_default(&template, "StatePrefix");
    assert!(
        state.starts_with("k6-timestream-") && state.ends_with('/'),
        "StatePrefix {state}"
    );
    for other in [
        dead_letter.as_str(),
        state.as_str(),
        "k6-timestream-rejected/",
    ] {
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
        "K6TS_SEGMENT_BYTES",
        "K6TS_MAX_PARALLEL",
        "K6TS_GROUP_WINDOW",
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

#[test]
fn eventbridge_sample_has_s3s_shape_and_a_raw_key() {
    let expected = expected_keys();
    let name = "eventbridge-object-created.json";
    let e = json(&format!("events/{name}"));
    assert_eq!(e["version"], "0");
    assert_eq!(e["detail-type"], "Object Created");
    assert_eq!(e["source"], "aws.s3");
    assert!(e["id"].is_string() && e["account"].is_string() && e["time"].is_string());
    let d = &e["detail"];
    let bucket = d["bucket"]["name"].as_str().expect("detail.bucket.name");
    assert_eq!(
        e["resources"],
        serde_json::json!([format!("arn:aws:s3:::{bucket}")])
    );
    let o = &d["object"];
    assert!(o["size"].is_u64() && o["etag"].is_string() && o["sequencer"].is_string());
    assert!(o["version-id"].as_str().is_some_and(|v| !v.is_empty()));
    assert!(d["reason"].is_string() && d["request-id"].is_string());
    // Not URL-encoded: the key is the object's key, characters S3 would
    // encode in a notification included.
    let key = o["key"].as_str().unwrap();
    assert!(
        key.contains(' ') && key.contains('+') && key.contains('='),
        "{name}: the sample key should show raw characters: {key:?}"
    );
    assert_eq!(vec![key.to_owned()], expected[name]);
}

#[test]
fn batch_operations_samples_follow_both_schemas() {
    let expected = expected_keys();
    for (name, schema) in [("batch-ops-1.0.json", "1.0"), ("batch-ops-2.0.json", "2.0")] {
        let e = json(&format!("events/{name}"));
        assert_eq!(e["invocationSchemaVersion"], schema, "{name}");
        assert!(
            e["invocationId"].as_str().is_some_and(|s| !s.is_empty()),
            "{name}"
        );
        assert!(e["job"]["id"].is_string(), "{name}: job.id");
        let tasks = e["tasks"].as_array().expect("tasks");
        assert_eq!(
            tasks.len(),
            1,
            "{name}: Batch Operations sends one task per invocation"
        );
        let mut keys = Vec::new();
        for t in tasks {
            assert!(t["taskId"].is_string(), "{name}: taskId");
            assert!(t["s3VersionId"].is_null() || t["s3VersionId"].is_string());
            let (has_arn, has_name) = (t.get("s3BucketArn").is_some(), t.get("s3Bucket").is_some());
            match schema {
                // 1.0 names the bucket by ARN, 2.0 by name.
                "1.0" => assert!(has_arn && !has_name, "{name}: s3BucketArn only"),
                _ => assert!(has_name && !has_arn, "{name}: s3Bucket only"),
            }
            let raw = t["s3Key"].as_str().unwrap();
            assert!(
                !raw.contains(' ') && raw.is_ascii() && raw != form_decode(raw),
                "{name}: keys arrive URL-encoded, as in the manifest: {raw:?}"
            );
            assert_eq!(form_decode(raw), crate_decode(raw), "{name}");
            keys.push(form_decode(raw));
        }
        assert_eq!(keys, expected[name], "{name}: decoded keys");
        if schema == "2.0" {
            assert!(
                e["job"]["userArguments"].is_object(),
                "{name}: userArguments"
            );
        }
    }
}

/// `wildcard` patterns of the EventBridge rule, as suffixes after
/// `<escaped ResultsPrefix>*`.
fn rule_wildcard_suffixes(template: &str) -> Vec<String> {
    const HEAD: &str =
        "- wildcard: !Join ['', [!Join ['\\*', !Split ['*', !Ref ResultsPrefix]], '*";
    template
        .lines()
        .filter_map(|l| l.trim().strip_prefix(HEAD)?.strip_suffix("']]"))
        .map(str::to_owned)
        .collect()
}

/// EventBridge's `wildcard` on a pattern with a single `*`.
fn wildcard_matches(pattern: &str, s: &str) -> bool {
    let (head, tail) = pattern.split_once('*').expect("one *");
    s.len() >= head.len() + tail.len() && s.starts_with(head) && s.ends_with(tail)
}

/// The text of the resource `name` in template.yaml: its header line and
/// every line after it up to the next entry at the same (two-space) depth
/// or the next top-level section.
fn resource_block<'a>(template: &'a str, name: &str) -> &'a str {
    let start = template
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("resource {name} not in template.yaml"))
        + 1;
    let rest = &template[start..];
    let mut end = rest.len();
    let mut at = rest.find('\n').unwrap() + 1;
    while at < rest.len() {
        let line = &rest[at..];
        let next_entry = line.starts_with("  ") && !line[2..].starts_with([' ', '#', '\n']);
        let next_section = !line.starts_with([' ', '#', '\n']);
        if next_entry || next_section {
            end = at;
            break;
        }
        at += line.find('\n').map_or(line.len(), |i| i + 1);
    }
    &rest[..end]
}

#[test]
fn trigger_mode_chooses_notifications_or_an_eventbridge_rule() {
    let template = read("template.yaml");
    assert_eq!(template_default(&template, "TriggerMode"), "notification");
    assert!(template.contains("AllowedValues: [notification, eventbridge]"));
    for cond in [
        "UseNotifications: !Equals [!Ref TriggerMode, notification]",
        "UseEventBridge: !Equals [!Ref TriggerMode, eventbridge]",
    ] {
        assert!(template.contains(cond), "template.yaml lacks {cond:?}");
    }
    // The stack-created bucket: notifications or EventBridge, never both.
    let bucket = resource_block(&template, "ResultsBucket");
    assert!(bucket.contains("EventBridgeConfiguration: !If\n          - UseEventBridge\n          - EventBridgeEnabled: true"));
    assert!(bucket.contains("LambdaConfigurations: !If\n          - UseNotifications"));

    let rule = resource_block(&template, "ObjectCreatedRule");
    for needle in [
        "Type: AWS::Events::Rule",
        "Condition: UseEventBridge",
        "source: [aws.s3]",
        "detail-type: [Object Created]",
        "Arn: !GetAtt IngestFunction.Arn",
    ] {
        assert!(rule.contains(needle), "ObjectCreatedRule lacks {needle:?}");
    }
    assert!(
        !rule.contains("EventBridgeInvokePermission:"),
        "one resource's text"
    );
    let perm = resource_block(&template, "EventBridgeInvokePermission");
    assert!(perm.contains("Principal: events.amazonaws.com"));
    assert!(perm.contains("SourceArn: !GetAtt ObjectCreatedRule.Arn"));
    assert!(perm.contains("Condition: UseEventBridge"));

    // The rule filters exactly like the notifications.
    let suffixes = rule_wildcard_suffixes(&template);
    assert_eq!(
        suffixes,
        notification_suffixes(&template),
        "rule vs notification suffixes"
    );
    let prefix = template_default(&template, "ResultsPrefix");
    let patterns: Vec<String> = suffixes.iter().map(|s| format!("{prefix}*{s}")).collect();
    let matches = |key: &str| patterns.iter().any(|p| wildcard_matches(p, key));
    for (file, keys) in expected_keys() {
        for key in keys {
            assert!(
                matches(&key),
                "{file}: {key} would not reach the function through the rule"
            );
        }
    }
    let batch_prefix = template_default(&template, "BatchOperationsPrefix");
    for other in [
        template_default(&template, "DeadLetterPrefix"),
        "k6-timestream-rejected/".to_owned(),
        format!("{batch_prefix}reports/"),
        format!("{batch_prefix}manifests/"),
        template_default(&template, "StatePrefix"),
    ] {
        assert!(other.starts_with("k6-timestream-"));
        let key = format!("{other}{prefix}run.json.gz");
        assert!(
            !matches(&key),
            "{key} would trigger the function through the rule"
        );
    }
    assert!(!matches("k6-results/notes.txt") && !matches("other/run.json"));

    // An existing bucket: one output per mode.
    let out = |name: &str, cond: &str| {
        let at = template
            .find(&format!("\n  {name}:\n"))
            .unwrap_or_else(|| panic!("output {name}"));
        assert!(
            template[at..].lines().nth(2).unwrap().trim() == format!("Condition: {cond}"),
            "output {name} has condition {cond}"
        );
    };
    out(
        "ExistingBucketNotificationConfiguration",
        "ExistingBucketWithNotifications",
    );
    out(
        "ExistingBucketEventBridgeConfiguration",
        "ExistingBucketWithEventBridge",
    );
    assert!(template.contains("Value: '{\"EventBridgeConfiguration\":{}}'"));
}

#[test]
fn batch_operations_role_is_optional_and_narrow() {
    let template = read("template.yaml");
    assert_eq!(
        template_default(&template, "CreateBatchOperationsRole"),
        "false"
    );
    assert!(template.contains("CreateBatchRole: !Equals [!Ref CreateBatchOperationsRole, 'true']"));
    let prefix = template_default(&template, "BatchOperationsPrefix");
    assert!(
        prefix.starts_with("k6-timestream-") && prefix.ends_with('/'),
        "{prefix}"
    );
    let role = resource_block(&template, "BatchOperationsRole");
    for needle in [
        "Type: AWS::IAM::Role",
        "Condition: CreateBatchRole",
        "Service: batchoperations.s3.amazonaws.com",
        "Action: sts:AssumeRole",
        "Action: lambda:InvokeFunction",
        "- !GetAtt IngestFunction.Arn",
        "- s3:GetObject\n                  - s3:GetObjectVersion",
        "/${BatchOperationsPrefix}manifests/*'",
        "Action: s3:PutObject",
        "/${BatchOperationsPrefix}reports/*'",
    ] {
        assert!(
            role.contains(needle),
            "BatchOperationsRole lacks {needle:?}"
        );
    }
    assert!(!role.contains("FailedEventsQueue:"), "one resource's text");
    assert!(!role.contains("Resource: '*'"), "no wildcard resources");
    // PutObject only on the report prefix, reads only on the manifest prefix.
    let put = role.find("Action: s3:PutObject").unwrap();
    assert!(
        role[put..].find("reports/*").unwrap() < role[put..].find("Sid: LocateTheBucket").unwrap()
    );
    assert!(template.contains("BatchOperationsRoleArn:\n    Condition: CreateBatchRole"));
}

#[test]
fn the_sink_parameter_chooses_timestream_or_influxdb() {
    let template = read("template.yaml");
    assert_eq!(template_default(&template, "Sink"), "timestream");
    assert!(template.contains("AllowedValues: [timestream, influxdb]"));
    assert_eq!(template_default(&template, "InfluxDbApi"), "v2");
    assert_eq!(
        template_default(&template, "InfluxDbTagsAsFields"),
        "vu,iter,url"
    );
    for cond in [
        "UseTimestream: !Equals [!Ref Sink, timestream]",
        "UseInfluxDb: !Equals [!Ref Sink, influxdb]",
        "HasVpc: !Not [!Equals [!Join ['', !Ref VpcSubnetIds], '']]",
        // No LiveAnalytics resources with Sink influxdb.
        "CreateDatabase: !And [!Condition UseTimestream,",
        "CreateTable: !And [!Condition UseTimestream,",
    ] {
        assert!(template.contains(cond), "template.yaml lacks {cond:?}");
    }
    assert!(resource_block(&template, "TimestreamDatabase").contains("Condition: CreateDatabase"));
    assert!(resource_block(&template, "TimestreamTable").contains("Condition: CreateTable"));

    // The role: Timestream actions only for Timestream, the one secret only.
    let role = resource_block(&template, "IngestFunctionRole");
    for (sid, cond) in [
        ("WriteRecordsToTheTable", "UseTimestream"),
        ("TimestreamEndpointDiscovery", "UseTimestream"),
        ("ReadTheInfluxDbTokenSecretOnly", "UseInfluxDbTokenSecret"),
    ] {
        let at = role
            .find(&format!("- Sid: {sid}"))
            .unwrap_or_else(|| panic!("{sid}"));
        let before: Vec<&str> = role[..at]
            .trim_end()
            .lines()
            .rev()
            .take(2)
            .map(str::trim)
            .collect();
        assert_eq!(
            before,
            [format!("- {cond}").as_str(), "- !If"],
            "{sid} is under !If {cond}"
        );
    }
    let secret = &role[role.find("- Sid: ReadTheInfluxDbTokenSecretOnly").unwrap()..];
    let secret: String = secret.lines().take(4).collect::<Vec<_>>().join("\n");
    assert!(
        secret.contains("Action: secretsmanager:GetSecretValue"),
        "{secret}"
    );
    assert!(
        secret.contains("Resource: !Ref InfluxDbTokenSecretArn"),
        "{secret}"
    );
    assert_eq!(
        template.matches("secretsmanager:").count(),
        1 + template.matches(":secretsmanager:[").count(),
        "no other Secrets Manager permission"
    );
    assert!(role.contains("ManagedPolicyArns: !If\n        - HasVpc\n        - [!Sub 'arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole']"));

    // The function: a VpcConfig when subnets are given; the sink's variables.
    let function = resource_block(&template, "IngestFunction");
    assert!(function.contains("VpcConfig: !If\n        - HasVpc\n        - SubnetIds: !Ref VpcSubnetIds\n          SecurityGroupIds: !Ref VpcSecurityGroupIds\n        - !Ref AWS::NoValue"));
    assert!(function.contains("\n          K6TS_SINK: !Ref Sink\n"));
    let config_source = read("src/sinks/influxdb/config.rs");
    for var in [
        "K6TS_INFLUXDB_URL",
        "K6TS_INFLUXDB_API",
        "K6TS_INFLUXDB_DATABASE",
        "K6TS_INFLUXDB_ORG",
        "K6TS_INFLUXDB_TOKEN_SECRET_ARN",
        "K6TS_INFLUXDB_TAGS_AS_FIELDS",
    ] {
        let line = function
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{var}: ")))
            .unwrap_or_else(|| panic!("the function does not set {var}"));
        assert!(
            line.contains("!If [UseInfluxDb"),
            "{var} only with Sink influxdb: {line}"
        );
        assert!(
            config_source.contains(&format!("\"{var}\"")),
            "the code does not read {var}"
        );
    }
    for var in ["K6TS_DATABASE", "K6TS_TABLE"] {
        let line = function
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{var}: ")))
            .unwrap();
        assert!(line.contains("!If [UseTimestream"), "{line}");
    }

    // Deploying next to Timestream for InfluxDB: the endpoints a VPC
    // function needs are spelled out.
    for needle in [
        "gateway VPC endpoint for S3",
        "com.amazonaws.<region>.secretsmanager",
        "com.amazonaws.<region>.lambda",
    ] {
        assert!(
            template.contains(needle),
            "template.yaml does not mention {needle:?}"
        );
    }
    for output in [
        "TimestreamDatabaseName",
        "TimestreamTableName",
        "TimestreamTableArn",
        "RejectedDataPrefix",
    ] {
        let at = template.rfind(&format!("\n  {output}:\n")).unwrap();
        assert_eq!(
            template[at..].lines().nth(2).unwrap().trim(),
            "Condition: UseTimestream",
            "output {output}"
        );
    }
}

/// The template's parameter defaults are the function's own defaults (one
/// definition each: a deployment without overrides behaves as the README
/// and `--help` say).
#[test]
fn template_defaults_are_the_function_defaults() {
    use k6_timestream::lambda::config as lc;
    let template = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    for (parameter, want) in [
        (
            "WriteConcurrency",
            k6_timestream::sinks::driver::DEFAULT_CONCURRENCY.to_string(),
        ),
        (
            "GroupWindow",
            k6_timestream::sinks::timestream::DEFAULT_GROUP_WINDOW.to_string(),
        ),
        (
            "SegmentBytes",
            k6_timestream::core::segment::DEFAULT_SEGMENT_BYTES.to_string(),
        ),
        ("MaxParallel", lc::DEFAULT_MAX_PARALLEL.to_string()),
        (
            "MaxContinuations",
            lc::DEFAULT_MAX_CONTINUATIONS.to_string(),
        ),
        (
            "SafetyMarginSeconds",
            lc::DEFAULT_SAFETY_MARGIN_SECS.to_string(),
        ),
        ("StatePrefix", lc::DEFAULT_STATE_PREFIX.to_string()),
        (
            "DeadLetterPrefix",
            lc::DEFAULT_DEAD_LETTER_PREFIX.to_string(),
        ),
    ] {
        assert_eq!(
            template_default(&template, parameter).trim_matches(|c| c == '\'' || c == '"'),
            want,
            "template.yaml's {parameter} default"
        );
    }
}
