//! CloudWatch Embedded Metric Format: one JSON line per object on stdout,
//! which Lambda turns into metrics without any API call.

use crate::core::report::{Outcome, RunReport};
use serde_json::json;

pub fn line(namespace: &str, function: &str, r: &RunReport) -> String {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let failed = u64::from(matches!(
        r.outcome,
        Some(Outcome::Failed | Outcome::ChainLimit)
    ));
    let metrics = [
        ("Points", "Count", r.points as f64),
        ("RecordsWritten", "Count", r.written_records as f64),
        ("MeasuresWritten", "Count", r.written_measures as f64),
        ("RecordsRejected", "Count", r.rejected_records as f64),
        ("DeadLettered", "Count", r.dead_lettered as f64),
        ("Retries", "Count", r.retries as f64),
        ("BytesRead", "Bytes", r.bytes_read as f64),
        ("Seconds", "Seconds", r.seconds),
        ("FailedObjects", "Count", failed as f64),
        ("Continuations", "Count", u64::from(r.continued) as f64),
    ];
    let mut v = json!({
        "_aws": {
            "Timestamp": ts,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["FunctionName"]],
                "Metrics": metrics.iter().map(|(n, u, _)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }]
        },
        "FunctionName": function,
        "object": r.input,
        "outcome": r.outcome,
    });
    for (n, _, val) in metrics {
        v[n] = json!(val);
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn emf_shape() {
        let r = crate::core::report::RunReport {
            points: 7,
            dead_lettered: 1,
            outcome: Some(crate::core::report::Outcome::Failed),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&super::line("ns", "fn", &r)).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "ns");
        let names: Vec<_> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap().to_owned())
            .collect();
        for n in &names {
            assert!(v.get(n).is_some(), "{n} has a value");
        }
        assert_eq!(v["Points"], 7.0);
        assert_eq!(v["FailedObjects"], 1.0);
        assert_eq!(v["FunctionName"], "fn");
    }
}
