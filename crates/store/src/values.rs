//! Sorted reads through a value index (embedded store).
//!
//! A query sorted by `created`, a score or a metric (`ORDER BY scores.Factuality DESC LIMIT
//! 50`, the 50 most recent traces) would otherwise read every row of the object to keep the
//! best few. The table `row_values` holds, for every row version, one entry per indexed
//! field: (field key, value, `seq`), in a B-tree ordered by field key then value. The field
//! key is the first 8 bytes of SHA-256 over the object and the field's path (and, for the
//! entries of root spans only, a marker), so an object's values of one field are one range
//! of the tree, read in either direction from any value.
//!
//! Indexed: `created` (text: sorts compare strings byte by byte, as SQLite's BINARY does)
//! and every number directly under `scores` and `metrics` (at most [`MAX_PER_GROUP`] names
//! each). A non-null value of another type (a string score, a numeric `created`) is not
//! ordered by the index: the row gets an *irregular* entry for the field instead, and
//! readers always read such rows. A row without the field has no entry: sorts put nulls
//! last, so readers that run out of entries before they have enough rows read the object.
//!
//! Like the word index, entries are written by the writer after the commit (see `search`),
//! and `counters.values_indexed_seq` says up to which `seq` every version has its entries;
//! readers also read every row with a newer version. Entries of replaced or deleted versions
//! stay: the index only proposes rows, in order, and callers read each one's current version
//! at their snapshot and evaluate it again. An entry therefore never makes a wrong answer;
//! an outdated one costs a read.

use crate::db::Pools;
use crate::search::{ROWS_AFTER, object_row_ids};
use crate::{Result, Store};
use holdfast_core::authz::ObjectPass;
use serde_json::{Map, Value};
use sha2::Digest;
use sqlx::QueryBuilder;

/// Most names under `scores` (and under `metrics`) indexed per row.
pub const MAX_PER_GROUP: usize = 64;
/// Rows a sorted read may have to read besides the index (unindexed or irregular) before
/// the caller is told to read the object instead.
pub const MAX_EXTRA_ROWS: usize = 100_000;

/// A value as the index orders it.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    Number(f64),
    Text(String),
}

impl IndexValue {
    pub fn to_json(&self) -> Value {
        match self {
            IndexValue::Number(n) => {
                serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
            IndexValue::Text(s) => Value::String(s.clone()),
        }
    }
}

/// Whether a field path is indexed, and how its values are ordered (text or number).
pub fn indexed_path(path: &[String]) -> Option<bool> {
    match path {
        [f] if f == "created" => Some(true),
        [g, name] if (g == "scores" || g == "metrics") && !name.is_empty() => Some(false),
        _ => None,
    }
}

/// The index key of a field of an object (`roots`: the entries of root spans only;
/// `irregular`: the rows whose value the index cannot order).
fn field_key(object_type: &str, object_id: &str, path: &str, roots: bool, irregular: bool) -> i64 {
    let mut h = sha2::Sha256::new();
    for part in [object_type, object_id, path] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.update([u8::from(roots), u8::from(irregular)]);
    let digest = h.finalize();
    i64::from_be_bytes(digest.first_chunk::<8>().copied().unwrap_or_default())
}

/// One entry to write: (field key, value, or `None` for an irregular entry).
pub(crate) type Entry = (i64, Option<IndexValue>);

/// A row's entries (see the module docs).
pub(crate) fn entries(object_type: &str, object_id: &str, row: &Map<String, Value>) -> Vec<Entry> {
    let root = row.contains_key("span_id")
        && match row.get("span_parents") {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
    let mut out = Vec::new();
    let mut add = |path: &str, v: &Value, text: bool| {
        let value = match v {
            Value::Null => return,
            Value::String(s) if text => Some(IndexValue::Text(s.clone())),
            Value::Number(n) if !text => n.as_f64().map(IndexValue::Number),
            _ => None,
        };
        match value {
            Some(value) => {
                out.push((
                    field_key(object_type, object_id, path, false, false),
                    Some(value.clone()),
                ));
                if root {
                    out.push((
                        field_key(object_type, object_id, path, true, false),
                        Some(value),
                    ));
                }
            }
            None => out.push((field_key(object_type, object_id, path, false, true), None)),
        }
    };
    if let Some(c) = row.get("created") {
        add("created", c, true);
    }
    for group in ["scores", "metrics"] {
        if let Some(Value::Object(m)) = row.get(group) {
            for (name, v) in m.iter().take(MAX_PER_GROUP) {
                add(&format!("{group}.{name}"), v, false);
            }
        }
    }
    out
}

/// Adds versions' entries to `row_values`.
pub(crate) async fn insert_entries(
    conn: &mut sqlx::SqliteConnection,
    versions: &[(i64, Vec<Entry>)],
) -> Result<()> {
    let flat: Vec<(i64, &Entry)> = versions
        .iter()
        .flat_map(|(seq, es)| es.iter().map(move |e| (*seq, e)))
        .collect();
    for chunk in flat.chunks(300) {
        let mut qb = QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT OR IGNORE INTO row_values (field, value, seq) ",
        );
        qb.push_values(chunk, |mut b, (seq, (key, value))| {
            b.push_bind(*key);
            match value {
                Some(IndexValue::Number(n)) => b.push_bind(*n),
                Some(IndexValue::Text(s)) => b.push_bind(s.clone()),
                None => b.push_bind(0i64),
            };
            b.push_bind(*seq);
        });
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// A sorted read of one field of an object.
#[derive(Debug, Clone)]
pub struct ValueQuery {
    /// The field's path: `["created"]`, `["scores", name]` or `["metrics", name]`.
    pub path: Vec<String>,
    /// Only root spans' entries.
    pub roots: bool,
    pub descending: bool,
}

/// Where a sorted read continues: at this value (inclusive) or after an entry.
#[derive(Debug, Clone)]
pub enum ValueFrom {
    Start,
    AtValue(IndexValue),
    After(IndexValue, i64),
}

/// One entry read: its value, the version's `seq` and its row id.
#[derive(Debug, Clone)]
pub struct ValueEntry {
    pub value: IndexValue,
    pub seq: i64,
    pub row_id: String,
}

impl Store {
    /// Whether sorted reads can use the value index.
    pub fn has_value_index(&self) -> bool {
        matches!(self.read, Pools::Sqlite(_)) && !cfg!(feature = "bench-no-search-index")
    }

    /// The rows of an object that a sorted read of `path` must read besides the index: those
    /// with a version newer than the index, and those whose value the index cannot order.
    /// Sorted; `None` when there are more than [`MAX_EXTRA_ROWS`] or there is no index.
    /// Read this before the entries: entries indexed meanwhile are then seen twice, never
    /// missed.
    pub async fn value_extras(
        &self,
        pass: &ObjectPass,
        path: &[String],
    ) -> Result<Option<Vec<String>>> {
        let Pools::Sqlite(p) = &self.read else {
            return Ok(None);
        };
        if !self.has_value_index() || indexed_path(path).is_none() {
            return Ok(None);
        }
        let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
        let limit = i64::try_from(MAX_EXTRA_ROWS + 1).unwrap_or(i64::MAX);
        let mut tx = p.begin().await?;
        let indexed: i64 =
            sqlx::query_scalar("SELECT value FROM counters WHERE name = 'values_indexed_seq'")
                .fetch_one(&mut *tx)
                .await?;
        let mut ids = object_row_ids(&mut *tx, ROWS_AFTER, indexed, pass, limit).await?;
        let irregular = object_row_ids(
            &mut *tx,
            "SELECT DISTINCT r.row_id FROM row_values v JOIN rows r ON r.seq = v.seq \
             WHERE v.field = $1",
            field_key(object_type, object_id, &path.join("."), false, true),
            pass,
            limit,
        )
        .await?;
        tx.commit().await?;
        ids.extend(irregular);
        ids.sort();
        ids.dedup();
        Ok((ids.len() <= MAX_EXTRA_ROWS).then_some(ids))
    }

    /// Up to `limit` entries of a field of an object, in the query's order from `from`.
    pub async fn value_entries(
        &self,
        pass: &ObjectPass,
        q: &ValueQuery,
        from: &ValueFrom,
        limit: usize,
    ) -> Result<Vec<ValueEntry>> {
        let Pools::Sqlite(p) = &self.read else {
            return Ok(Vec::new());
        };
        let Some(text) = indexed_path(&q.path) else {
            return Ok(Vec::new());
        };
        let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
        let key = field_key(object_type, object_id, &q.path.join("."), q.roots, false);
        let (cmp, dir) = if q.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let mut qb = QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT v.value, v.seq, r.row_id FROM row_values v JOIN rows r ON r.seq = v.seq \
             WHERE v.field = ",
        );
        qb.push_bind(key);
        let bind = |qb: &mut QueryBuilder<sqlx::Sqlite>, v: &IndexValue| match v {
            IndexValue::Number(n) => {
                qb.push_bind(*n);
            }
            IndexValue::Text(s) => {
                qb.push_bind(s.clone());
            }
        };
        match from {
            ValueFrom::Start => {}
            ValueFrom::AtValue(v) => {
                qb.push(format!(" AND v.value {cmp}= "));
                bind(&mut qb, v);
            }
            ValueFrom::After(v, seq) => {
                qb.push(format!(" AND (v.value, v.seq) {cmp} ("));
                bind(&mut qb, v);
                qb.push(", ").push_bind(*seq).push(")");
            }
        }
        qb.push(" AND r.object_type = ").push_bind(object_type);
        qb.push(" AND r.object_id = ").push_bind(object_id);
        qb.push(" AND r.org_id = ").push_bind(pass.org_id());
        qb.push(format!(" ORDER BY v.value {dir}, v.seq {dir} LIMIT "));
        qb.push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let out = if text {
            let rows: Vec<(String, i64, String)> = qb.build_query_as().fetch_all(p).await?;
            rows.into_iter()
                .map(|(v, seq, row_id)| ValueEntry {
                    value: IndexValue::Text(v),
                    seq,
                    row_id,
                })
                .collect()
        } else {
            let rows: Vec<(f64, i64, String)> = qb.build_query_as().fetch_all(p).await?;
            rows.into_iter()
                .map(|(v, seq, row_id)| ValueEntry {
                    value: IndexValue::Number(v),
                    seq,
                    row_id,
                })
                .collect()
        };
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_of_a_row() {
        let key =
            |path: &str, roots: bool, irregular: bool| field_key("l", "o", path, roots, irregular);
        let root = json!({"span_id": "a", "span_parents": [], "created": "2026-01-01T00:00:00Z",
                          "scores": {"f": 0.5, "g": null, "h": "x"}, "metrics": {"tokens": 3}});
        let got = entries("l", "o", root.as_object().unwrap());
        let text = |s: &str| Some(IndexValue::Text(s.to_owned()));
        let num = |n: f64| Some(IndexValue::Number(n));
        assert_eq!(
            got,
            vec![
                (key("created", false, false), text("2026-01-01T00:00:00Z")),
                (key("created", true, false), text("2026-01-01T00:00:00Z")),
                (key("scores.f", false, false), num(0.5)),
                (key("scores.f", true, false), num(0.5)),
                (key("scores.h", false, true), None),
                (key("metrics.tokens", false, false), num(3.0)),
                (key("metrics.tokens", true, false), num(3.0)),
            ]
        );
        // A child span has no root entries; a numeric `created` is irregular.
        let child = json!({"span_id": "b", "span_parents": ["a"], "created": 5});
        assert_eq!(
            entries("l", "o", child.as_object().unwrap()),
            vec![(key("created", false, true), None)]
        );
        // Objects differ in every key.
        assert_ne!(
            field_key("l", "o", "created", false, false),
            field_key("l", "p", "created", false, false)
        );
        assert_eq!(indexed_path(&["scores".into(), "f".into()]), Some(false));
        assert_eq!(indexed_path(&["metadata".into(), "f".into()]), None);
    }
}
