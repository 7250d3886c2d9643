//! WriteRecords requests as the JSON the Timestream API takes
//! (`aws timestream-write write-records --cli-input-json`), one per line.

use crate::core::model::{DataModel, Values};
use crate::sinks::timestream::WriteRequest;

/// Appends `v` as a JSON string literal.
fn string(out: &mut Vec<u8>, v: &str) {
    out.push(b'"');
    let b = v.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

fn dims<'a>(out: &mut Vec<u8>, ds: impl Iterator<Item = &'a crate::core::model::Dimension>) {
    out.extend_from_slice(b"\"Dimensions\":[");
    for (i, d) in ds.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Name\":");
        string(out, &d.name);
        out.extend_from_slice(b",\"Value\":");
        string(out, &d.value);
        out.extend_from_slice(b",\"DimensionValueType\":\"VARCHAR\"}");
    }
    out.push(b']');
}

/// Appends `req` as one JSON line. MeasureValueType and TimeUnit are always
/// shared, so they always sit in CommonAttributes. Hand-written (no
/// intermediate structs): this runs once per record of the input and is a
/// visible share of `convert`'s time.
pub fn encode(out: &mut Vec<u8>, database: &str, table: &str, req: &WriteRequest) {
    out.extend_from_slice(b"{\"DatabaseName\":");
    string(out, database);
    out.extend_from_slice(b",\"TableName\":");
    string(out, table);
    out.extend_from_slice(b",\"CommonAttributes\":{");
    if !req.common_dimensions.is_empty() {
        dims(out, req.common_dimensions.iter());
        out.push(b',');
    }
    if let Some(m) = &req.common_measure_name {
        out.extend_from_slice(b"\"MeasureName\":");
        string(out, m);
        out.push(b',');
    }
    out.extend_from_slice(match req.model {
        DataModel::Single => b"\"MeasureValueType\":\"DOUBLE\"",
        DataModel::Multi => b"\"MeasureValueType\":\"MULTI\"",
    });
    out.extend_from_slice(b",\"TimeUnit\":\"NANOSECONDS\"},\"Records\":[");
    for (i, r) in req.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        let mut own = crate::sinks::timestream::request::own_dimensions(req, r).peekable();
        if own.peek().is_some() {
            dims(out, own);
            out.push(b',');
        }
        if req.common_measure_name.is_none() {
            out.extend_from_slice(b"\"MeasureName\":");
            string(out, &r.measure_name);
            out.push(b',');
        }
        match &r.values {
            Values::Single(v) => {
                out.extend_from_slice(b"\"MeasureValue\":");
                string(out, v);
            }
            Values::Multi(m) => {
                out.extend_from_slice(b"\"MeasureValues\":[");
                for (j, (n, v)) in m.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"Name\":");
                    string(out, n);
                    out.extend_from_slice(b",\"Value\":");
                    string(out, v);
                    out.extend_from_slice(b",\"Type\":\"DOUBLE\"}");
                }
                out.push(b']');
            }
        }
        out.extend_from_slice(b",\"Time\":\"");
        out.extend_from_slice(r.time_ns.to_string().as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"]}\n");
}

/// Writes `req` as one JSON line.
pub fn write_json<W: std::io::Write>(
    w: &mut W,
    database: &str,
    table: &str,
    req: &WriteRequest,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(32 * 1024);
    encode(&mut buf, database, table, req);
    w.write_all(&buf)
}

/// One record as a self-contained Timestream `Record` JSON value (all
/// dimensions, MeasureValueType and TimeUnit included): what a dead letter
/// carries so it can be re-sent as is.
pub fn record_value(model: DataModel, r: &crate::core::model::Record) -> serde_json::Value {
    use serde_json::json;
    let dims: Vec<_> = r
        .dimensions
        .iter()
        .map(|d| json!({"Name": d.name, "Value": d.value, "DimensionValueType": "VARCHAR"}))
        .collect();
    let mut v = json!({
        "Dimensions": dims,
        "MeasureName": r.measure_name,
        "Time": r.time_ns.to_string(),
        "TimeUnit": "NANOSECONDS",
    });
    match (&r.values, model) {
        (Values::Single(x), _) => {
            v["MeasureValue"] = json!(x);
            v["MeasureValueType"] = json!("DOUBLE");
        }
        (Values::Multi(m), _) => {
            v["MeasureValues"] = m
                .iter()
                .map(|(n, x)| json!({"Name": n, "Value": x, "Type": "DOUBLE"}))
                .collect();
            v["MeasureValueType"] = json!("MULTI");
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{Dimension, Record};

    #[test]
    fn strings_are_valid_json() {
        for v in [
            "plain",
            "q\"uote",
            "back\\slash",
            "ctl\u{1}\n\t\r",
            "ünï ✓ 🚀",
            "</script>",
        ] {
            let mut out = Vec::new();
            string(&mut out, v);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, v);
        }
    }

    #[test]
    fn request_shape() {
        let rec = |v: &str, t| Record {
            dimensions: vec![
                Dimension {
                    name: "a".into(),
                    value: "1".into(),
                },
                Dimension {
                    name: "b".into(),
                    value: v.into(),
                },
            ],
            measure_name: "k6".into(),
            values: Values::Multi(vec![("http_reqs".into(), "1".into())]),
            time_ns: t,
            lines: vec![1],
            metadata_mask: 0,
        };
        let req = crate::sinks::timestream::request::build_request(
            0,
            DataModel::Multi,
            vec![rec("x", 5), rec("y", 6)],
        );
        let mut out = Vec::new();
        encode(&mut out, "db", "t\"", &req);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["TableName"], "t\"");
        assert_eq!(v["CommonAttributes"]["Dimensions"][0]["Name"], "a");
        assert_eq!(v["CommonAttributes"]["MeasureName"], "k6");
        assert_eq!(v["CommonAttributes"]["MeasureValueType"], "MULTI");
        assert_eq!(v["Records"][1]["Dimensions"][0]["Value"], "y");
        assert_eq!(v["Records"][1]["Time"], "6");
        assert!(v["Records"][0].get("MeasureName").is_none());
        assert_eq!(v["Records"][0]["MeasureValues"][0]["Type"], "DOUBLE");
    }
}
