//! Versioned rows. Every write stores a full new version of each row it touches under a fresh
//! `_xact_id`; reads pick, per row, the newest version at or below the requested one, and
//! hide rows whose newest version is a delete.

use crate::db::with_pool;
use crate::{Result, Store, StoreError};
use holdfast_core::authz::ObjectPass;
use holdfast_core::merge::RowControl;
use holdfast_core::xact::XactId;
use serde_json::{Map, Value};
use sqlx::QueryBuilder;

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

impl Store {
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

    /// The newest committed transaction of the whole store: a snapshot version that
    /// includes every write acknowledged so far. O(1), unlike a MAX over an object's rows.
    pub async fn current_xact(&self) -> Result<Option<XactId>> {
        with_pool!(&self.read, |p, DB| {
            let n: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = $1")
                .bind("xact")
                .fetch_one(p)
                .await?;
            Ok(u64::try_from(n).ok().and_then(XactId::from_counter))
        })
    }
}
