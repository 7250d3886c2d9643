//! WriteRecords requests as the JSON the Timestream API takes
//! (`aws timestream-write write-records --cli-input-json`), one per line.

use crate::batch::is_common;
use crate::model::{DataModel, Values, WriteRequest};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Req<'a> {
    database_name: &'a str,
    table_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    common_attributes: Option<Common<'a>>,
    records: Vec<Rec<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Common<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dimensions: Vec<Dim<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    measure_name: Option<&'a str>,
    measure_value_type: &'static str,
    time_unit: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Dim<'a> {
    name: &'a str,
    value: &'a str,
    dimension_value_type: &'static str,
}

fn dim(d: &crate::model::Dimension) -> Dim<'_> {
    Dim { name: &d.name, value: &d.value, dimension_value_type: "VARCHAR" }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Rec<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dimensions: Vec<Dim<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    measure_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    measure_value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    measure_values: Option<Vec<Mv<'a>>>,
    time: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Mv<'a> {
    name: &'a str,
    value: &'a str,
    #[serde(rename = "Type")]
    kind: &'static str,
}

/// Writes `req` as one JSON line. MeasureValueType and TimeUnit are always
/// shared, so they always sit in CommonAttributes.
pub fn write_json<W: std::io::Write>(w: &mut W, database: &str, table: &str, req: &WriteRequest) -> std::io::Result<()> {
    let common = Common {
        dimensions: req.common_dimensions.iter().map(dim).collect(),
        measure_name: req.common_measure_name.as_deref(),
        measure_value_type: match req.model {
            DataModel::Single => "DOUBLE",
            DataModel::Multi => "MULTI",
        },
        time_unit: "NANOSECONDS",
    };
    let records = req
        .records
        .iter()
        .map(|r| Rec {
            dimensions: r.dimensions.iter().filter(|d| !is_common(req, d)).map(dim).collect(),
            measure_name: if req.common_measure_name.is_some() { None } else { Some(&r.measure_name) },
            measure_value: match &r.values {
                Values::Single(v) => Some(v),
                Values::Multi(_) => None,
            },
            measure_values: match &r.values {
                Values::Single(_) => None,
                Values::Multi(m) => Some(m.iter().map(|(n, v)| Mv { name: n, value: v, kind: "DOUBLE" }).collect()),
            },
            time: r.time_ns.to_string(),
        })
        .collect();
    let body = Req { database_name: database, table_name: table, common_attributes: Some(common), records };
    serde_json::to_writer(&mut *w, &body)?;
    w.write_all(b"\n")
}

/// One record as a self-contained Timestream `Record` JSON value (all
/// dimensions, MeasureValueType and TimeUnit included): what a dead letter
/// carries so it can be re-sent as is.
pub fn record_value(model: DataModel, r: &crate::model::Record) -> serde_json::Value {
    use serde_json::json;
    let dims: Vec<_> = r.dimensions.iter().map(|d| json!({"Name": d.name, "Value": d.value, "DimensionValueType": "VARCHAR"})).collect();
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
            v["MeasureValues"] = m.iter().map(|(n, x)| json!({"Name": n, "Value": x, "Type": "DOUBLE"})).collect();
            v["MeasureValueType"] = json!("MULTI");
        }
    }
    v
}
