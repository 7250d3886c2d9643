//! k6's result formats: the JSON output's lines ([`json`], the reference
//! serde parser; [`fast`], a scanner for k6's Point layout that falls back
//! to it), the CSV output's records ([`csv`]) and their times ([`time`]).

pub mod csv;
pub mod fast;
pub mod json;
pub mod time;

pub use json::{parse_line, Line, LineError, MetricKind, Point, RawTags};
