//! What the core hands to a sink: records (one k6 point, or a group of
//! points sharing time, tags and metadata), free of any SDK type.
//!
//! Every measure value is decimal text of a float64 (k6 samples are
//! float64), every time is in nanoseconds. The naming rules and limits the
//! converter applies are Timestream's (the strictest of the sinks); a sink
//! encodes records into its own requests (see [`crate::sinks`]).

use serde::{Deserialize, Serialize};

/// The data model: how k6 points map onto Timestream records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataModel {
    /// One MULTI record per group of consecutive points that share time,
    /// tags and metadata (one HTTP request ≈ 10 points → 1 record).
    #[default]
    Multi,
    /// One DOUBLE record per point; MeasureName = metric name.
    Single,
}

impl std::str::FromStr for DataModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "multi" => Ok(Self::Multi),
            "single" => Ok(Self::Single),
            _ => Err(format!(
                "unknown data model {s:?} (expected `multi` or `single`)"
            )),
        }
    }
}

impl DataModel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Multi => "multi",
            Self::Single => "single",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Values {
    /// A single DOUBLE measure value.
    Single(String),
    /// MULTI: (metric name, value) pairs, names unique within the record.
    Multi(Vec<(String, String)>),
}

impl Values {
    pub fn measure_count(&self) -> u64 {
        match self {
            Values::Single(_) => 1,
            Values::Multi(v) => v.len() as u64,
        }
    }
}

/// One Timestream record plus where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Sorted by name, unique names, non-empty values.
    pub dimensions: Vec<Dimension>,
    pub measure_name: String,
    pub values: Values,
    pub time_ns: i64,
    /// 1-based input line numbers of the k6 points in this record, in
    /// the order of `values` for MULTI records.
    pub lines: Vec<u64>,
    /// Which `dimensions` came from the points' metadata: bit `i` for
    /// `dimensions[i]` (at most [`limits::MAX_DIMENSIONS`] = 128 of them).
    /// The others are tags, the testid or `--dimension`s. Timestream does
    /// not look at it (all are dimensions there); InfluxDB writes metadata
    /// as fields, tags as tags.
    pub metadata_mask: u128,
}

impl Record {
    pub fn measure_count(&self) -> u64 {
        self.values.measure_count()
    }

    /// Did `dimensions[i]` come from the points' metadata?
    pub fn is_metadata(&self, i: usize) -> bool {
        i < 128 && self.metadata_mask & (1u128 << i) != 0
    }
}

// `Record::metadata_mask` has one bit per dimension.
const _: () = assert!(limits::MAX_DIMENSIONS <= 128);

/// Timestream's limits (WriteRecords API reference and quotas page).
pub mod limits {
    pub const MAX_RECORDS_PER_REQUEST: usize = 100;
    pub const MAX_DIMENSION_NAME_BYTES: usize = 60;
    pub const MAX_VALUE_CHARS: usize = 2048;
    /// A MeasureValue's length limit (a DOUBLE's text).
    pub const MAX_MEASURE_VALUE_CHARS: usize = 2048;
    pub const MAX_MEASURE_NAME_BYTES: usize = 256;
    pub const MAX_DIMENSIONS: usize = 128;
    pub const MAX_MEASURES_PER_RECORD: usize = 256;
    pub const MAX_RECORD_BYTES: usize = 2048;
    /// Metered size of a timestamp and of a DOUBLE value.
    pub const TIME_BYTES: u64 = 8;
    pub const DOUBLE_BYTES: u64 = 8;
    /// Writes are metered per request in units of this many bytes.
    pub const METER_UNIT: u64 = 1024;
}
