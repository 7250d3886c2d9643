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
