//! k6's result formats: the JSON output's lines ([`json`]), the CSV
//! output's records ([`csv`]) and their times ([`time`]).

pub mod csv;
pub mod json;
pub mod time;

pub use json::{parse_line, Line, LineError, MetricKind, Point};
