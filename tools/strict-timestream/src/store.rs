//! In-memory storage of one table: accepted records, the learned schema and the key index
//! behind the duplicate/version rule.
//!
//! Trade-offs: a record's dimension set is interned once per distinct series (names and values
//! become shared `Arc<str>`s), so a stored record is a few integers plus its value string, and
//! the duplicate index is a hash map keyed by `(series id, measure id, time)`: three integers,
//! cheap to hash. Looking a series up costs one hash over its sorted dimensions per record. A
//! table's records are kept in arrival order; an upsert replaces the record in place.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::validate::{MeasureKind, Prepared, PreparedValue, MAX_DIMENSIONS, MAX_MEASURE_NAMES};
use crate::{Arrival, StoredMeasure, TableConfig, ValueType};

type Series = Arc<[(Arc<str>, Arc<str>)]>;
/// Values of a MULTI record: (name, type, value), sorted by name.
type MultiValues = Box<[(Arc<str>, ValueType, Box<str>)]>;

/// What happened to one prepared record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// New record stored.
    Stored,
    /// Existing record updated by a higher version (value and/or version).
    Upserted,
    /// Identical record already stored: accepted, nothing changes.
    Duplicate,
    Rejected {
        reason: String,
        existing_version: Option<i64>,
    },
}

fn reject(reason: String) -> Outcome {
    Outcome::Rejected {
        reason,
        existing_version: None,
    }
}

#[derive(Debug, Clone, Copy)]
struct MeasureInfo {
    id: u32,
    kind: MeasureKind,
}

#[derive(Debug)]
enum EntryValue {
    Single(ValueType, Box<str>),
    Multi(MultiValues),
}

#[derive(Debug)]
struct Entry {
    series: u32,
    measure: u32,
    time_ns: i64,
    version: i64,
    magnetic: bool,
    value: EntryValue,
    /// Wall-clock time the record (or its latest version) was stored, ns
    /// since the Unix epoch.
    arrived_ns: i64,
}

#[derive(Debug, Default)]
struct TableData {
    dim_names: HashSet<Arc<str>>,
    measures: HashMap<Arc<str>, MeasureInfo>,
    measure_names: Vec<Arc<str>>,
    multi_attrs: HashMap<Arc<str>, ValueType>,
    series: Vec<Series>,
    series_by_hash: HashMap<u64, Vec<u32>>,
    index: HashMap<(u32, u32, i64), u32>,
    entries: Vec<Entry>,
    /// Stored measures, counting each value of a MULTI record.
    measure_count: usize,
}

/// One table: its configuration and its data.
#[derive(Debug)]
pub(crate) struct Table {
    pub cfg: TableConfig,
    /// Creation time, seconds since the epoch.
    pub created_secs: f64,
    data: TableData,
}

fn hash_dims(dims: &[(&str, &str)]) -> u64 {
    // SipHash with fixed keys: deterministic, and only used to find candidate series.
    let mut h = DefaultHasher::new();
    for (name, value) in dims {
        name.hash(&mut h);
        value.hash(&mut h);
    }
    h.finish()
}

fn same_scalar(ty: ValueType, a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    // Values are compared as values, not as text: "1.0" and "1" are the same DOUBLE.
    match ty {
        ValueType::Double => matches!(
            (a.parse::<f64>(), b.parse::<f64>()),
            (Ok(x), Ok(y)) if x == y
        ),
        ValueType::Bigint | ValueType::Timestamp => matches!(
            (a.parse::<i64>(), b.parse::<i64>()),
            (Ok(x), Ok(y)) if x == y
        ),
        ValueType::Boolean => a.eq_ignore_ascii_case(b),
        ValueType::Varchar => false,
    }
}

fn same_value(stored: &EntryValue, new: &PreparedValue<'_>) -> bool {
    match (stored, new) {
        (EntryValue::Single(t1, a), PreparedValue::Single(t2, b)) => {
            t1 == t2 && same_scalar(*t1, a, b)
        }
        (EntryValue::Multi(a), PreparedValue::Multi(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|((n1, t1, v1), (n2, t2, v2))| {
                    &**n1 == *n2 && t1 == t2 && same_scalar(*t1, v1, v2)
                })
        }
        _ => false,
    }
}

impl TableData {
    fn find_series(&self, hash: u64, dims: &[(&str, &str)]) -> Option<u32> {
        self.series_by_hash.get(&hash)?.iter().copied().find(|&id| {
            let s = &self.series[id as usize];
            s.len() == dims.len()
                && s.iter()
                    .zip(dims)
                    .all(|((n1, v1), (n2, v2))| &**n1 == *n2 && &**v1 == *v2)
        })
    }

    fn intern_dim_name(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.dim_names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        self.dim_names.insert(n.clone());
        n
    }

    fn intern_attr(&mut self, name: &str, ty: ValueType) -> Arc<str> {
        if let Some((n, _)) = self.multi_attrs.get_key_value(name) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        self.multi_attrs.insert(n.clone(), ty);
        n
    }

    fn entry_value(&mut self, value: &PreparedValue<'_>) -> EntryValue {
        match value {
            PreparedValue::Single(ty, v) => EntryValue::Single(*ty, (*v).into()),
            PreparedValue::Multi(values) => EntryValue::Multi(
                values
                    .iter()
                    .map(|&(name, ty, v)| (self.intern_attr(name, ty), ty, v.into()))
                    .collect(),
            ),
        }
    }
}

fn value_count(value: &EntryValue) -> usize {
    match value {
        EntryValue::Single(..) => 1,
        EntryValue::Multi(values) => values.len(),
    }
}

impl Table {
    pub(crate) fn new(cfg: TableConfig, created_secs: f64) -> Table {
        Table {
            cfg,
            created_secs,
            data: TableData::default(),
        }
    }

    /// [`Table::apply_at`] without an arrival time.
    #[cfg(test)]
    pub(crate) fn apply(&mut self, p: &Prepared<'_>) -> Outcome {
        self.apply_at(p, 0)
    }

    /// Applies the schema, quota and version rules to one prepared record and stores it,
    /// noting `arrived_ns` (wall clock, ns since the epoch) for a new or updated record.
    pub(crate) fn apply_at(&mut self, p: &Prepared<'_>, arrived_ns: i64) -> Outcome {
        let d = &mut self.data;
        let kind = p.value.kind();

        // Schema: a name is either a dimension or a measure in a table, and a measure name
        // (and a MULTI value name) keeps its value type.
        for &(name, _) in &p.dims {
            if d.measures.contains_key(name) || d.multi_attrs.contains_key(name) {
                return reject(format!(
                    "Dimension name '{name}' is already a measure name in this table. A name \
                     cannot be both a dimension and a measure."
                ));
            }
        }
        if d.dim_names.contains(p.measure_name) {
            return reject(format!(
                "Measure name '{}' is already a dimension name in this table. A name cannot be \
                 both a dimension and a measure.",
                p.measure_name
            ));
        }
        if let PreparedValue::Multi(values) = &p.value {
            for &(name, ty, _) in values {
                if d.dim_names.contains(name) {
                    return reject(format!(
                        "Measure value name '{name}' is already a dimension name in this table. \
                         A name cannot be both a dimension and a measure."
                    ));
                }
                if let Some(existing) = d.multi_attrs.get(name) {
                    if *existing != ty {
                        return reject(format!(
                            "Measure value '{name}' already has the type {} in this table; it \
                             cannot be written as {}.",
                            existing.as_str(),
                            ty.as_str()
                        ));
                    }
                }
            }
        }
        let measure = d.measures.get(p.measure_name).copied();
        match measure {
            Some(info) if info.kind != kind => {
                return reject(format!(
                    "Measure name '{}' already has the measure value type {} in this table. Each \
                     measure name can have only one measure value type, and it cannot be \
                     changed to {}.",
                    p.measure_name,
                    info.kind.name(),
                    kind.name()
                ))
            }
            None if d.measures.len() >= MAX_MEASURE_NAMES => {
                return reject(format!(
                    "The table already has {MAX_MEASURE_NAMES} measure names, the maximum; \
                     measure name '{}' cannot be added.",
                    p.measure_name
                ))
            }
            _ => {}
        }
        let new_dims = p
            .dims
            .iter()
            .filter(|(n, _)| !d.dim_names.contains(*n))
            .count();
        if new_dims > 0 && d.dim_names.len() + new_dims > MAX_DIMENSIONS {
            return reject(format!(
                "The table would have more than {MAX_DIMENSIONS} dimension names."
            ));
        }

        // Duplicates and versions.
        let hash = hash_dims(&p.dims);
        let series = d.find_series(hash, &p.dims);
        if let (Some(sid), Some(info)) = (series, measure) {
            if let Some(&idx) = d.index.get(&(sid, info.id, p.time_ns)) {
                let idx = idx as usize;
                let (existing_version, same) = {
                    let e = &d.entries[idx];
                    (e.version, same_value(&e.value, &p.value))
                };
                if p.version <= existing_version {
                    return if same {
                        Outcome::Duplicate
                    } else {
                        Outcome::Rejected {
                            reason: format!(
                                "A record with the same dimensions, measure name and timestamp \
                                 already exists with a different value (existing version \
                                 {existing_version}, record version {}). A higher record version \
                                 must be specified in order to update the measure value.",
                                p.version
                            ),
                            existing_version: Some(existing_version),
                        }
                    };
                }
                let value = d.entry_value(&p.value);
                let e = &mut d.entries[idx];
                d.measure_count = d.measure_count + value_count(&value) - value_count(&e.value);
                e.value = value;
                e.version = p.version;
                e.magnetic = p.magnetic;
                e.arrived_ns = arrived_ns;
                return Outcome::Upserted;
            }
        }

        // New record: commit names, series and the entry.
        let sid = match series {
            Some(sid) => sid,
            None => {
                let interned: Series = p
                    .dims
                    .iter()
                    .map(|&(n, v)| (d.intern_dim_name(n), Arc::<str>::from(v)))
                    .collect();
                let sid = u32::try_from(d.series.len()).expect("fewer than 2^32 series");
                d.series.push(interned);
                d.series_by_hash.entry(hash).or_default().push(sid);
                sid
            }
        };
        let mid = match measure {
            Some(info) => info.id,
            None => {
                let id = u32::try_from(d.measure_names.len()).expect("bounded by quota");
                let name: Arc<str> = p.measure_name.into();
                d.measure_names.push(name.clone());
                d.measures.insert(name, MeasureInfo { id, kind });
                id
            }
        };
        let value = d.entry_value(&p.value);
        d.measure_count += value_count(&value);
        let idx = u32::try_from(d.entries.len()).expect("fewer than 2^32 records per table");
        d.entries.push(Entry {
            series: sid,
            measure: mid,
            time_ns: p.time_ns,
            version: p.version,
            magnetic: p.magnetic,
            value,
            arrived_ns,
        });
        d.index.insert((sid, mid, p.time_ns), idx);
        Outcome::Stored
    }

    /// Number of stored measures (a MULTI record counts once per value).
    pub(crate) fn measure_count(&self) -> usize {
        self.data.measure_count
    }

    /// Drops every record and the learned schema.
    pub(crate) fn clear(&mut self) {
        self.data = TableData::default();
    }

    /// When each stored record arrived, in arrival order.
    pub(crate) fn arrivals(&self) -> Vec<Arrival> {
        self.data
            .entries
            .iter()
            .map(|e| Arrival {
                time_ns: e.time_ns,
                arrived_unix_ns: e.arrived_ns,
                measures: value_count(&e.value),
            })
            .collect()
    }

    /// The stored measures, in arrival order.
    pub(crate) fn records(&self) -> Vec<StoredMeasure> {
        let d = &self.data;
        let mut out = Vec::with_capacity(d.measure_count);
        for e in &d.entries {
            let dims: BTreeMap<String, String> = d.series[e.series as usize]
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            let measure_name = d.measure_names[e.measure as usize].to_string();
            let make = |sub: Option<&str>, ty: ValueType, v: &str| StoredMeasure {
                dimensions: dims.clone(),
                measure_name: measure_name.clone(),
                sub_measure: sub.map(str::to_owned),
                time_ns: e.time_ns,
                value: v.to_owned(),
                value_type: ty,
                version: e.version,
                magnetic: e.magnetic,
            };
            match &e.value {
                EntryValue::Single(ty, v) => out.push(make(None, *ty, v)),
                EntryValue::Multi(values) => {
                    for (n, ty, v) in values.iter() {
                        out.push(make(Some(n), *ty, v));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single<'a>(dims: &[(&'a str, &'a str)], m: &'a str, t: i64, v: &'a str) -> Prepared<'a> {
        let mut dims = dims.to_vec();
        dims.sort();
        Prepared {
            dims,
            measure_name: m,
            time_ns: t,
            version: 1,
            magnetic: false,
            value: PreparedValue::Single(ValueType::Double, v),
        }
    }

    fn table() -> Table {
        Table::new(TableConfig::new("db", "t"), 0.0)
    }

    #[test]
    fn stores_and_flattens() {
        let mut t = table();
        assert_eq!(
            t.apply(&single(&[("h", "a")], "cpu", 1, "1.5")),
            Outcome::Stored
        );
        let multi = Prepared {
            value: PreparedValue::Multi(vec![
                ("a", ValueType::Bigint, "1"),
                ("b", ValueType::Varchar, "x"),
            ]),
            ..single(&[("h", "a")], "stats", 1, "")
        };
        assert_eq!(t.apply(&multi), Outcome::Stored);
        assert_eq!(t.measure_count(), 3);
        let recs = t.records();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].measure_name, "cpu");
        assert_eq!(recs[0].sub_measure, None);
        assert_eq!(recs[1].sub_measure.as_deref(), Some("a"));
        assert_eq!(recs[2].value, "x");
        assert_eq!(recs[2].value_type, ValueType::Varchar);
        assert_eq!(recs[2].dimensions.get("h").map(String::as_str), Some("a"));
    }

    #[test]
    fn duplicate_and_version_rules() {
        let mut t = table();
        let r = single(&[("h", "a")], "cpu", 1, "1.5");
        assert_eq!(t.apply(&r), Outcome::Stored);
        // Identical value (also when spelled differently) is accepted and not stored twice.
        assert_eq!(t.apply(&r), Outcome::Duplicate);
        assert_eq!(
            t.apply(&single(&[("h", "a")], "cpu", 1, "1.50")),
            Outcome::Duplicate
        );
        assert_eq!(t.measure_count(), 1);
        // Different value, same version: rejected with the existing version.
        match t.apply(&single(&[("h", "a")], "cpu", 1, "2")) {
            Outcome::Rejected {
                reason,
                existing_version,
            } => {
                assert!(reason.contains("A record with the same dimensions, measure name and timestamp already exists with a different value"));
                assert_eq!(existing_version, Some(1));
            }
            other => panic!("{other:?}"),
        }
        // Higher version: upsert in place.
        let v2 = Prepared {
            version: 2,
            ..single(&[("h", "a")], "cpu", 1, "2")
        };
        assert_eq!(t.apply(&v2), Outcome::Upserted);
        let recs = t.records();
        assert_eq!(recs.len(), 1);
        assert_eq!((recs[0].value.as_str(), recs[0].version), ("2", 2));
        // Other time, other series: new records.
        assert_eq!(
            t.apply(&single(&[("h", "a")], "cpu", 2, "2")),
            Outcome::Stored
        );
        assert_eq!(
            t.apply(&single(&[("h", "b")], "cpu", 1, "2")),
            Outcome::Stored
        );
        assert_eq!(t.measure_count(), 3);
    }

    #[test]
    fn arrivals_are_noted_for_new_and_updated_records_only() {
        let mut t = table();
        let r = single(&[("h", "a")], "cpu", 7, "1");
        assert_eq!(t.apply_at(&r, 100), Outcome::Stored);
        assert_eq!(t.apply_at(&r, 200), Outcome::Duplicate);
        let v2 = Prepared {
            version: 2,
            ..single(&[("h", "a")], "cpu", 7, "2")
        };
        assert_eq!(
            t.apply_at(&single(&[("h", "b")], "cpu", 8, "1"), 300),
            Outcome::Stored
        );
        let a = t.arrivals();
        assert_eq!(
            a.iter()
                .map(|x| (x.time_ns, x.arrived_unix_ns))
                .collect::<Vec<_>>(),
            [(7, 100), (8, 300)],
            "a duplicate leaves the first arrival"
        );
        assert_eq!(t.apply_at(&v2, 400), Outcome::Upserted);
        assert_eq!(
            t.arrivals()[0].arrived_unix_ns,
            400,
            "an upsert is a new arrival"
        );
        assert_eq!(t.arrivals()[0].measures, 1);
    }

    #[test]
    fn schema_conflicts() {
        let mut t = table();
        assert_eq!(
            t.apply(&single(&[("h", "a")], "cpu", 1, "1")),
            Outcome::Stored
        );
        let Outcome::Rejected { reason, .. } = t.apply(&single(&[("cpu", "a")], "mem", 1, "1"))
        else {
            panic!()
        };
        assert!(reason.contains("already a measure name"), "{reason}");
        let Outcome::Rejected { reason, .. } = t.apply(&single(&[("x", "a")], "h", 1, "1")) else {
            panic!()
        };
        assert!(reason.contains("already a dimension name"), "{reason}");
        let bigint = Prepared {
            value: PreparedValue::Single(ValueType::Bigint, "1"),
            ..single(&[("h", "a")], "cpu", 5, "")
        };
        let Outcome::Rejected { reason, .. } = t.apply(&bigint) else {
            panic!()
        };
        assert!(reason.contains("only one measure value type"), "{reason}");
        // Rejected records leave no trace in the schema.
        assert_eq!(
            t.apply(&single(&[("mem", "a")], "disk", 1, "1")),
            Outcome::Stored
        );
    }

    #[test]
    fn dimension_name_quota() {
        let mut t = table();
        let names: Vec<String> = (0..129).map(|i| format!("d{i}")).collect();
        for (i, n) in names.iter().enumerate().take(128) {
            assert_eq!(
                t.apply(&single(&[(n, "v")], "m", i as i64, "1")),
                Outcome::Stored
            );
        }
        assert!(matches!(
            t.apply(&single(&[(&names[128], "v")], "m", 0, "1")),
            Outcome::Rejected { .. }
        ));
    }
}
