//! k6's result formats: the JSON output's lines ([`json`]) and its times
//! ([`time`]).

pub mod json;
pub mod time;

pub use json::{parse_line, Line, LineError, MetricKind, Point};
