//! Versioned rows. Every write stores a full new version of each row it touches under a fresh
//! `_xact_id`; reads pick, per row, the newest version at or below the requested one, and
//! hide rows whose newest version is a delete.

use crate::db::{NEXT_COUNTER, with_pool};
use crate::{Result, Store, StoreError};
use holdfast_core::authz::ObjectPass;
use holdfast_core::merge::{self, RowControl, WriteKind};
use holdfast_core::xact::XactId;
use serde_json::{Map, Value};
use sqlx::QueryBuilder;
use std::collections::HashMap;

/// One row of a write, with its control fields already taken out.
#[derive(Debug, Clone)]
pub struct IncomingRow {
    pub row_id: String,
    pub control: RowControl,
    pub data: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub row_id: String,
    pub xact_id: XactId,
    pub data: Map<String, Value>,
}

#[derive(Debug, Clone, Default)]
pub struct RowQuery {
    /// Read the object as it was at this transaction.
    pub as_of: Option<XactId>,
    /// Rows are returned in row-id order; continue after this one.
    pub after_row_id: Option<String>,
    /// Only the rows of this trace.
    pub root_span_id: Option<String>,
    pub limit: i64,
}

const INSERT_CHUNK: usize = 200;

fn decode(row_id: String, xact: i64, data: &str) -> Result<StoredRow> {
    let xact_id =
        XactId::from_i64(xact).ok_or_else(|| StoreError::Corrupt(format!("xact id {xact}")))?;
    let data = serde_json::from_str(data)
        .map_err(|e| StoreError::Corrupt(format!("row {row_id}: {e}")))?;
    Ok(StoredRow {
        row_id,
        xact_id,
        data,
    })
}

struct NewVersion {
    row_id: String,
    root_span_id: Option<String>,
    deleted: bool,
    data: String,
}

impl Store {
    /// Applies one request's rows atomically and returns the transaction id they got.
    pub async fn write_rows(
        &self,
        writes: &[(ObjectPass, Vec<IncomingRow>)],
        now: &str,
    ) -> Result<XactId> {
        if writes.iter().any(|(pass, _)| !pass.permission().writes()) {
            return Err(StoreError::WrongPermission);
        }
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let counter: i64 = sqlx::query_scalar(NEXT_COUNTER)
                .bind("xact")
                .fetch_one(&mut *tx)
                .await?;
            let xact = u64::try_from(counter)
                .ok()
                .and_then(XactId::from_counter)
                .ok_or(StoreError::XactExhausted)?;
            for (pass, rows) in writes {
                let needed: Vec<&str> = rows
                    .iter()
                    .filter(|r| match r.control.kind {
                        WriteKind::Merge => true,
                        WriteKind::Replace => r.data.get("created").is_none_or(Value::is_null),
                        WriteKind::Delete => false,
                    })
                    .map(|r| r.row_id.as_str())
                    .collect();
                let mut current: HashMap<String, Option<Map<String, Value>>> = HashMap::new();
                for chunk in needed.chunks(INSERT_CHUNK) {
                    let mut qb = QueryBuilder::<DB>::new(
                        "SELECT r.row_id, r.is_deleted, r.data FROM rows r WHERE r.object_type = ",
                    );
                    qb.push_bind(pass.object_type().as_str());
                    qb.push(" AND r.object_id = ").push_bind(pass.object_id());
                    qb.push(" AND r.org_id = ").push_bind(pass.org_id());
                    qb.push(" AND r.row_id IN (");
                    let mut sep = qb.separated(", ");
                    for id in chunk {
                        sep.push_bind(*id);
                    }
                    qb.push(
                        ") AND r.xact_id = (SELECT MAX(x.xact_id) FROM rows x WHERE x.object_type = r.object_type \
                         AND x.object_id = r.object_id AND x.row_id = r.row_id)",
                    );
                    let found: Vec<(String, bool, String)> =
                        qb.build_query_as().fetch_all(&mut *tx).await?;
                    for (row_id, deleted, data) in found {
                        let row = if deleted {
                            None
                        } else {
                            Some(
                                serde_json::from_str(&data)
                                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                            )
                        };
                        current.insert(row_id, row);
                    }
                }
                // Apply in order; a row id written twice in one batch ends as one version.
                let mut order: Vec<&str> = Vec::new();
                for row in rows {
                    let existing = current.get(&row.row_id).and_then(Option::as_ref);
                    let mut next = merge::apply(existing, row.data.clone(), &row.control);
                    if let Some(r) = next.as_mut() {
                        r.insert("id".into(), Value::String(row.row_id.clone()));
                        if r.get("created").is_none_or(Value::is_null) {
                            r.insert("created".into(), Value::String(now.to_owned()));
                        }
                    }
                    if current.insert(row.row_id.clone(), next).is_none()
                        || !order.contains(&row.row_id.as_str())
                    {
                        order.push(&row.row_id);
                    }
                }
                order.dedup();
                let versions: Vec<NewVersion> = order
                    .iter()
                    .filter_map(|id| current.get(*id).map(|row| (*id, row)))
                    .map(|(id, row)| match row {
                        Some(r) => NewVersion {
                            row_id: id.to_owned(),
                            root_span_id: r
                                .get("root_span_id")
                                .and_then(Value::as_str)
                                .map(str::to_owned),
                            deleted: false,
                            data: Value::Object(r.clone()).to_string(),
                        },
                        None => NewVersion {
                            row_id: id.to_owned(),
                            root_span_id: None,
                            deleted: true,
                            data: serde_json::json!({ "id": id }).to_string(),
                        },
                    })
                    .collect();
                for chunk in versions.chunks(INSERT_CHUNK) {
                    let mut qb = QueryBuilder::<DB>::new(
                        "INSERT INTO rows (org_id, object_type, object_id, row_id, xact_id, root_span_id, is_deleted, data) ",
                    );
                    qb.push_values(chunk, |mut b, v| {
                        b.push_bind(pass.org_id())
                            .push_bind(pass.object_type().as_str())
                            .push_bind(pass.object_id())
                            .push_bind(v.row_id.as_str())
                            .push_bind(xact.as_i64())
                            .push_bind(v.root_span_id.as_deref())
                            .push_bind(v.deleted)
                            .push_bind(v.data.as_str());
                    });
                    qb.build().execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            Ok(xact)
        })
    }

    /// The newest version of each live row of an object, in row-id order.
    pub async fn read_rows(&self, pass: &ObjectPass, q: &RowQuery) -> Result<Vec<StoredRow>> {
        let as_of = q.as_of.map(XactId::as_i64).unwrap_or(i64::MAX);
        with_pool!(&self.read, |p, DB| {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT r.row_id, r.xact_id, r.data FROM rows r WHERE r.object_type = ",
            );
            qb.push_bind(pass.object_type().as_str());
            qb.push(" AND r.object_id = ").push_bind(pass.object_id());
            qb.push(" AND r.org_id = ").push_bind(pass.org_id());
            qb.push(" AND r.is_deleted = ").push_bind(false);
            if let Some(root) = &q.root_span_id {
                qb.push(" AND r.root_span_id = ").push_bind(root.as_str());
            }
            if let Some(after) = &q.after_row_id {
                qb.push(" AND r.row_id > ").push_bind(after.as_str());
            }
            qb.push(
                " AND r.xact_id = (SELECT MAX(x.xact_id) FROM rows x WHERE x.object_type = r.object_type \
                 AND x.object_id = r.object_id AND x.row_id = r.row_id AND x.xact_id <= ",
            );
            qb.push_bind(as_of);
            qb.push(")");
            if q.root_span_id.is_none() {
                qb.push(" ORDER BY r.row_id LIMIT ").push_bind(q.limit);
            }
            let mut rows: Vec<(String, i64, String)> = qb.build_query_as().fetch_all(p).await?;
            if q.root_span_id.is_some() {
                // One trace is small. Ordering it here keeps the planner on the trace index
                // (an ORDER BY row_id in SQL makes SQLite walk the primary key instead).
                rows.sort_by(|a, b| a.0.cmp(&b.0));
                if let Some(after) = &q.after_row_id {
                    rows.retain(|r| &r.0 > after);
                }
                rows.truncate(usize::try_from(q.limit).unwrap_or(usize::MAX));
            }
            rows.into_iter()
                .map(|(id, x, d)| decode(id, x, &d))
                .collect()
        })
    }

    /// Every live row of an object (newest versions), read in pages.
    pub async fn read_all_rows(
        &self,
        pass: &ObjectPass,
        as_of: Option<XactId>,
    ) -> Result<Vec<StoredRow>> {
        let mut out = Vec::new();
        let mut q = RowQuery {
            as_of,
            limit: 5000,
            ..RowQuery::default()
        };
        loop {
            let page = self.read_rows(pass, &q).await?;
            let done = page.len() < 5000;
            q.after_row_id = page.last().map(|r| r.row_id.clone());
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// The newest transaction that touched the object.
    pub async fn latest_xact(&self, pass: &ObjectPass) -> Result<Option<XactId>> {
        with_pool!(&self.read, |p, DB| {
            let x: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(xact_id) FROM rows WHERE object_type = $1 AND object_id = $2 AND org_id = $3",
            )
            .bind(pass.object_type().as_str())
            .bind(pass.object_id())
            .bind(pass.org_id())
            .fetch_one(p)
            .await?;
            Ok(x.and_then(XactId::from_i64))
        })
    }
}
