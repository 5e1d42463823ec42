//! Removing for good what was deleted, once its grace period has ended.
//!
//! A deleted project, experiment, dataset or prompt stays in the store, hidden, until the
//! purge (`holdfast_services::purge`) claims it ([`Store::claim_for_purge`]: from then on it
//! cannot be restored) and removes it: its row versions with their entries in every index
//! (`row_index`, `trace_index`, `row_values`, the word index), then its attachments, grants and
//! record. Versions go in batches of one transaction each, so a purge stopped at any point
//! (even by `kill -9`) leaves every remaining version whole and findable, and the next run
//! carries on; the record goes last, once none of its versions remain.
//!
//! Guarantees:
//! * A batch holds at most the versions asked for and at most [`MAX_BATCH_BYTES`] of stored
//!   data (and at least one version), so memory does not grow with what is purged. Batches
//!   walk the object's versions in `row_index` order from where the last one stopped, so each
//!   costs the same however far the purge has gone.
//! * No index entry outlives its version. On the embedded store a batch runs on the one
//!   write connection, between the writer's and the indexer's transactions, and only removes
//!   versions already in `row_index` (an object whose versions are still in the writer's
//!   tail keeps its record until they are indexed). On PostgreSQL a batch first takes the
//!   value indexer's counter and the versions' places in the word index's queue, so an indexer
//!   that read a version before the batch has committed its entries before the batch removes
//!   them, and one after finds no version.
//! * On the embedded store deleted content is overwritten with zeros (`secure_delete`, set on
//!   every connection), and [`Store::compact_after_purge`] rewrites the word index (whose
//!   deletions are marks until its segments are merged) and empties the write-ahead log, after
//!   which nothing removed is left in the files.
//! * One replica at a time purges: [`Store::take_lease`].

use crate::access::BUMP_POLICY;
use crate::db::{Pools, with_pool};
use crate::rows::decode_data;
use crate::search::{MAX_BATCH_BYTES, within_bytes};
use crate::{Result, Store};
use holdfast_core::authz::{ObjectPass, SystemPass};
use holdfast_core::clock::Clock;
use holdfast_core::object::ObjectType;
use sqlx::QueryBuilder;
use std::collections::HashMap;

/// Something deleted whose grace period has ended: a project (with everything in it), or
/// one experiment, dataset or prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub org_id: String,
    pub project_id: String,
    /// `None` for the project itself.
    pub object: Option<(ObjectType, String)>,
    pub name: String,
    pub deleted_at: String,
}

/// A row deleted by a write (`_object_delete` or a retention policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDeletion {
    pub org_id: String,
    pub object_type: ObjectType,
    pub object_id: String,
    pub row_id: String,
    /// The deleting version's.
    pub xact_id: i64,
}

/// Where a purge of an object's versions carries on: after this (row id, `_xact_id`).
pub type PurgeCursor = Option<(String, i64)>;

/// What one batch removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PurgedBatch {
    /// Row versions removed.
    pub versions: usize,
    /// Where the next batch starts; `None` when this one found nothing.
    pub next: PurgeCursor,
}

/// Statements shared by both backends, with each backend's own steps in `extra`.
macro_rules! backend_purge {
    ($m:ident, $DB:ty, $values:ident, $extra:ident) => {
        mod $m {
            use super::$extra as extra;
            use super::*;
            type Db = $DB;

            /// Pushes an OR of whole keys of an object's rows: `(row id, xact)` pairs, with
            /// `xact_id` compared by `cmp` (an OR of keys, not a row-value `IN` list, which
            /// SQLite answers with a scan; see `values::delete_entries`).
            fn push_keys<'a>(
                qb: &mut QueryBuilder<Db>,
                object_type: &'a str,
                object_id: &'a str,
                keys: impl Iterator<Item = (&'a str, i64)>,
                cmp: &str,
            ) {
                let mut sep = qb.separated(" OR ");
                for (row_id, xact) in keys {
                    sep.push("(object_type = ")
                        .push_bind_unseparated(object_type)
                        .push_unseparated(" AND object_id = ")
                        .push_bind_unseparated(object_id)
                        .push_unseparated(" AND row_id = ")
                        .push_bind_unseparated(row_id)
                        .push_unseparated(format!(" AND xact_id {cmp} "))
                        .push_bind_unseparated(xact)
                        .push_unseparated(")");
                }
            }

            /// See [`Store::purge_versions`].
            pub(super) async fn purge_versions(
                p: &sqlx::Pool<Db>,
                object_type: &str,
                object_id: &str,
                after: &PurgeCursor,
                max_rows: i64,
            ) -> Result<PurgedBatch> {
                let mut tx = p.begin().await?;
                // (row id, xact, seq, deleted)
                let listed: Vec<(String, i64, i64, bool)> = match after {
                    None => {
                        sqlx::query_as(
                            "SELECT row_id, xact_id, seq, is_deleted FROM row_index \
                             WHERE object_type = $1 AND object_id = $2 \
                             ORDER BY row_id, xact_id LIMIT $3",
                        )
                        .bind(object_type)
                        .bind(object_id)
                        .bind(max_rows)
                        .fetch_all(&mut *tx)
                        .await?
                    }
                    Some((row_id, xact)) => {
                        sqlx::query_as(
                            "SELECT row_id, xact_id, seq, is_deleted FROM row_index \
                             WHERE object_type = $1 AND object_id = $2 \
                             AND (row_id, xact_id) > ($3, $4) \
                             ORDER BY row_id, xact_id LIMIT $5",
                        )
                        .bind(object_type)
                        .bind(object_id)
                        .bind(row_id)
                        .bind(xact)
                        .bind(max_rows)
                        .fetch_all(&mut *tx)
                        .await?
                    }
                };
                if listed.is_empty() {
                    return Ok(PurgedBatch::default());
                }
                let fit = remove(&mut tx, object_type, object_id, &listed).await?;
                tx.commit().await?;
                let chosen = listed.get(..fit).unwrap_or(&listed);
                let last = chosen.last().map(|(r, x, ..)| (r.clone(), *x));
                Ok(PurgedBatch {
                    versions: chosen.len(),
                    next: last,
                })
            }

            /// See [`Store::purge_deleted_rows`].
            pub(super) async fn purge_deleted_rows(
                p: &sqlx::Pool<Db>,
                object_type: &str,
                object_id: &str,
                rows: &[(String, i64)],
            ) -> Result<(usize, usize)> {
                let mut tx = p.begin().await?;
                let mut listed: Vec<(String, i64, i64, bool)> = Vec::new();
                for chunk in rows.chunks(250) {
                    let mut qb = QueryBuilder::<Db>::new(
                        "SELECT row_id, xact_id, seq, is_deleted FROM row_index WHERE ",
                    );
                    let keys = chunk.iter().map(|(r, x)| (r.as_str(), *x));
                    push_keys(&mut qb, object_type, object_id, keys, "<=");
                    let found: Vec<(String, i64, i64, bool)> =
                        qb.build_query_as().fetch_all(&mut *tx).await?;
                    listed.extend(found);
                }
                listed.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                listed.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
                let fit = if listed.is_empty() {
                    0
                } else {
                    remove(&mut tx, object_type, object_id, &listed).await?
                };
                let chosen: std::collections::HashSet<(&str, i64)> = listed
                    .get(..fit)
                    .unwrap_or(&listed)
                    .iter()
                    .map(|(r, x, ..)| (r.as_str(), *x))
                    .collect();
                // A deletion is done once its deleting version is gone, with every earlier
                // version of its row (listed before it).
                let done: Vec<&(String, i64)> = rows
                    .iter()
                    .filter(|(r, x)| chosen.contains(&(r.as_str(), *x)))
                    .collect();
                for chunk in done.chunks(250) {
                    let mut qb = QueryBuilder::<Db>::new("DELETE FROM row_deletions WHERE ");
                    let keys = chunk.iter().map(|(r, x)| (r.as_str(), *x));
                    push_keys(&mut qb, object_type, object_id, keys, "=");
                    qb.build().execute(&mut *tx).await?;
                }
                let gone: Vec<&str> = done.iter().map(|(r, _)| r.as_str()).collect();
                release_row_refs(&mut tx, object_type, object_id, &gone).await?;
                tx.commit().await?;
                Ok((fit, done.len()))
            }

            /// Forgets the attachment references of purged rows (those with no version
            /// left); an attachment no row of any object references any more is queued in
            /// `unreferenced_attachments` for its blob to be deleted. One read per 250 rows
            /// when none of them referenced an attachment (the usual case).
            async fn release_row_refs(
                tx: &mut sqlx::Transaction<'static, Db>,
                object_type: &str,
                object_id: &str,
                rows: &[&str],
            ) -> Result<()> {
                let mut with_refs: Vec<String> = Vec::new();
                for chunk in rows.chunks(250) {
                    let mut qb = QueryBuilder::<Db>::new(
                        "SELECT DISTINCT row_id FROM attachment_row_refs WHERE object_type = ",
                    );
                    qb.push_bind(object_type)
                        .push(" AND object_id = ")
                        .push_bind(object_id)
                        .push(" AND row_id IN (");
                    let mut ids = qb.separated(", ");
                    for r in chunk {
                        ids.push_bind(*r);
                    }
                    qb.push(")");
                    let found: Vec<String> = qb.build_query_scalar().fetch_all(&mut **tx).await?;
                    with_refs.extend(found);
                }
                for row in &with_refs {
                    // A row written again after its deletion keeps its references.
                    let left: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM row_index WHERE object_type = $1 \
                         AND object_id = $2 AND row_id = $3)",
                    )
                    .bind(object_type)
                    .bind(object_id)
                    .bind(row)
                    .fetch_one(&mut **tx)
                    .await?;
                    if left {
                        continue;
                    }
                    let keys: Vec<(String, String)> = sqlx::query_as(
                        "DELETE FROM attachment_row_refs WHERE object_type = $1 \
                         AND object_id = $2 AND row_id = $3 RETURNING org_id, key",
                    )
                    .bind(object_type)
                    .bind(object_id)
                    .bind(row)
                    .fetch_all(&mut **tx)
                    .await?;
                    for (org, key) in keys {
                        let (still, any): (bool, bool) = sqlx::query_as(
                            "SELECT EXISTS (SELECT 1 FROM attachment_row_refs WHERE org_id = $1 \
                               AND key = $2 AND object_type = $3 AND object_id = $4), \
                             EXISTS (SELECT 1 FROM attachment_refs WHERE org_id = $1 AND key = $2 \
                               AND NOT (object_type = $3 AND object_id = $4 AND by_rows))",
                        )
                        .bind(&org)
                        .bind(&key)
                        .bind(object_type)
                        .bind(object_id)
                        .fetch_one(&mut **tx)
                        .await?;
                        if still {
                            continue;
                        }
                        sqlx::query(
                            "DELETE FROM attachment_refs WHERE org_id = $1 AND key = $2 \
                             AND object_type = $3 AND object_id = $4 AND by_rows",
                        )
                        .bind(&org)
                        .bind(&key)
                        .bind(object_type)
                        .bind(object_id)
                        .execute(&mut **tx)
                        .await?;
                        if !any {
                            sqlx::query(
                                "INSERT INTO unreferenced_attachments (org_id, key) \
                                 VALUES ($1, $2) ON CONFLICT DO NOTHING",
                            )
                            .bind(&org)
                            .bind(&key)
                            .execute(&mut **tx)
                            .await?;
                        }
                    }
                }
                Ok(())
            }

            /// Removes the first of `listed` (row id, xact, seq, deleted) versions of an
            /// object that fit in [`MAX_BATCH_BYTES`] (at least one) with their entries in
            /// every index; returns how many.
            async fn remove(
                tx: &mut sqlx::Transaction<'static, Db>,
                object_type: &str,
                object_id: &str,
                listed: &[(String, i64, i64, bool)],
            ) -> Result<usize> {
                let sizes: HashMap<i64, i64> = in_chunks(
                    tx,
                    "SELECT seq, CAST(length(data) AS BIGINT) FROM rows WHERE seq IN (",
                    &listed.iter().map(|l| l.2).collect::<Vec<_>>(),
                )
                .await?
                .into_iter()
                .collect();
                let by_size: Vec<(i64, i64)> = listed
                    .iter()
                    .map(|l| (l.2, sizes.get(&l.2).copied().unwrap_or(0)))
                    .collect();
                let fit = within_bytes(&by_size, MAX_BATCH_BYTES);
                let chosen = listed.get(..fit).unwrap_or(listed);
                let seqs: Vec<i64> = chosen.iter().map(|c| c.2).collect();
                extra::before(&mut **tx, &seqs).await?;
                let deleted: HashMap<i64, (&str, bool)> = chosen
                    .iter()
                    .map(|(r, _, seq, d)| (*seq, (r.as_str(), *d)))
                    .collect();
                // Each stored version's index entries, worked out from its data.
                let mut entries = Vec::new();
                let mut traces = Vec::new();
                for chunk in seqs.chunks(500) {
                    let mut qb = QueryBuilder::<Db>::new(
                        "SELECT seq, root_span_id, data FROM rows WHERE seq IN (",
                    );
                    let mut sep = qb.separated(", ");
                    for s in chunk {
                        sep.push_bind(*s);
                    }
                    qb.push(")");
                    let stored: Vec<(i64, Option<String>, Vec<u8>)> =
                        qb.build_query_as().fetch_all(&mut **tx).await?;
                    for (seq, root, data) in stored {
                        let Some((row_id, is_deleted)) = deleted.get(&seq) else {
                            continue;
                        };
                        if let Some(root) = root {
                            traces.push((
                                crate::index::trace_key(object_type, object_id, &root),
                                seq,
                            ));
                        }
                        if *is_deleted {
                            continue;
                        }
                        // An unreadable version has no entries: the indexer could not
                        // read it either.
                        if let Ok(row) = decode_data(row_id, &data) {
                            entries
                                .push((seq, crate::values::entries(object_type, object_id, &row)));
                        }
                    }
                }
                crate::values::$values::delete_entries(&mut **tx, &entries).await?;
                drop(entries);
                let live: Vec<i64> = chosen.iter().filter(|c| !c.3).map(|c| c.2).collect();
                extra::after(&mut **tx, &traces, &live, &seqs).await?;
                for chunk in seqs.chunks(500) {
                    let mut qb = QueryBuilder::<Db>::new("DELETE FROM rows WHERE seq IN (");
                    let mut sep = qb.separated(", ");
                    for s in chunk {
                        sep.push_bind(*s);
                    }
                    qb.push(")");
                    qb.build().execute(&mut **tx).await?;
                }
                // What was made of the object's rows goes with any of them.
                sqlx::query(
                    "DELETE FROM score_summaries WHERE object_type = $1 AND object_id = $2",
                )
                .bind(object_type)
                .bind(object_id)
                .execute(&mut **tx)
                .await?;
                // A version's exit from a trace goes with it; versions go in (row, xact)
                // order, so an exit never outlives the older versions it hides.
                for table in ["row_index", "trace_exits"] {
                    for chunk in chosen.chunks(250) {
                        let mut qb = QueryBuilder::<Db>::new(format!("DELETE FROM {table} WHERE "));
                        let keys = chunk.iter().map(|(r, x, ..)| (r.as_str(), *x));
                        push_keys(&mut qb, object_type, object_id, keys, "=");
                        qb.build().execute(&mut **tx).await?;
                    }
                }
                Ok(chosen.len())
            }

            /// `(seq, value)` pairs of a query ending in `seq IN (`, for every seq given.
            async fn in_chunks(
                tx: &mut sqlx::Transaction<'_, Db>,
                head: &str,
                seqs: &[i64],
            ) -> Result<Vec<(i64, i64)>> {
                let mut out = Vec::with_capacity(seqs.len());
                for chunk in seqs.chunks(500) {
                    let mut qb = QueryBuilder::<Db>::new(head);
                    let mut sep = qb.separated(", ");
                    for s in chunk {
                        sep.push_bind(*s);
                    }
                    qb.push(")");
                    let found: Vec<(i64, i64)> = qb.build_query_as().fetch_all(&mut **tx).await?;
                    out.extend(found);
                }
                Ok(out)
            }
        }
    };
}

/// The embedded store's own steps: `trace_index` and the word index (`row_text`).
mod sqlite_extra {
    use super::*;

    pub(super) async fn before(_tx: &mut sqlx::SqliteConnection, _seqs: &[i64]) -> Result<()> {
        Ok(())
    }

    pub(super) async fn after(
        tx: &mut sqlx::SqliteConnection,
        traces: &[(i64, i64)],
        live: &[i64],
        _seqs: &[i64],
    ) -> Result<()> {
        for chunk in traces.chunks(400) {
            let mut qb = QueryBuilder::<sqlx::Sqlite>::new("DELETE FROM trace_index WHERE ");
            let mut sep = qb.separated(" OR ");
            for (trace, seq) in chunk {
                sep.push("(trace = ")
                    .push_bind_unseparated(*trace)
                    .push_unseparated(" AND seq = ")
                    .push_bind_unseparated(*seq)
                    .push_unseparated(")");
            }
            qb.build().execute(&mut *tx).await?;
        }
        crate::search::delete_documents(tx, live).await
    }
}

/// PostgreSQL's own steps: the indexers' locks first, then the word index (`row_words` and
/// its queue).
mod postgres_extra {
    use super::*;

    pub(super) async fn before(tx: &mut sqlx::PgConnection, seqs: &[i64]) -> Result<()> {
        // Waits for a value indexer that is working (it holds this row), and keeps the next
        // one out until the batch commits.
        sqlx::query("SELECT value FROM counters WHERE name = 'values_indexed_seq' FOR UPDATE")
            .execute(&mut *tx)
            .await?;
        // Waits for a word indexer holding any of these versions' places in its queue.
        sqlx::query("DELETE FROM row_words_pending WHERE seq = ANY($1)")
            .bind(seqs)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    pub(super) async fn after(
        tx: &mut sqlx::PgConnection,
        _traces: &[(i64, i64)],
        _live: &[i64],
        seqs: &[i64],
    ) -> Result<()> {
        sqlx::query("DELETE FROM row_words WHERE seq = ANY($1)")
            .bind(seqs)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

backend_purge!(sqlite_batch, sqlx::Sqlite, on_sqlite, sqlite_extra);
backend_purge!(postgres_batch, sqlx::Postgres, on_postgres, postgres_extra);

/// Removes the grants on a purged project or object, in the caller's transaction; the
/// organization's policy version moves on when there were any, so caches reload.
macro_rules! forget_grants {
    ($tx:expr, $org_id:expr, $object_id:expr) => {{
        let done = sqlx::query("DELETE FROM acls WHERE org_id = $1 AND object_id = $2")
            .bind($org_id)
            .bind($object_id)
            .execute(&mut *$tx)
            .await?;
        if done.rows_affected() > 0 {
            let _: i64 = sqlx::query_scalar(BUMP_POLICY)
                .bind($org_id)
                .fetch_one(&mut *$tx)
                .await?;
        }
    }};
}

impl Store {
    /// Projects and objects deleted before `cutoff` (at most `limit` of each), oldest
    /// deletion first; projects first.
    pub async fn expired_deletions(
        &self,
        _why: &SystemPass,
        cutoff: &str,
        limit: i64,
    ) -> Result<Vec<Expired>> {
        with_pool!(&self.read, |p, DB| {
            let projects: Vec<(String, String, String, String)> = sqlx::query_as(
                "SELECT id, org_id, name, deleted_at FROM projects \
                 WHERE deleted_at IS NOT NULL AND deleted_at < $1 ORDER BY deleted_at LIMIT $2",
            )
            .bind(cutoff)
            .bind(limit)
            .fetch_all(p)
            .await?;
            let objects: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
                "SELECT id, org_id, project_id, kind, name, deleted_at FROM objects \
                 WHERE deleted_at IS NOT NULL AND deleted_at < $1 ORDER BY deleted_at LIMIT $2",
            )
            .bind(cutoff)
            .bind(limit)
            .fetch_all(p)
            .await?;
            let mut out: Vec<Expired> = projects
                .into_iter()
                .map(|(id, org_id, name, deleted_at)| Expired {
                    org_id,
                    project_id: id,
                    object: None,
                    name,
                    deleted_at,
                })
                .collect();
            out.extend(objects.into_iter().filter_map(
                |(id, org_id, project_id, kind, name, deleted_at)| {
                    Some(Expired {
                        org_id,
                        project_id,
                        object: Some((ObjectType::parse(&kind)?, id)),
                        name,
                        deleted_at,
                    })
                },
            ));
            Ok(out)
        })
    }

    /// Marks a deleted project or object as being purged, if it is still deleted as it was
    /// found; from then on it cannot be restored. False when it was restored (or deleted
    /// again) meanwhile.
    pub async fn claim_for_purge(&self, _why: &SystemPass, expired: &Expired) -> Result<bool> {
        with_pool!(&self.write, |p, DB| {
            let done = match &expired.object {
                None => {
                    sqlx::query(
                        "UPDATE projects SET purging = TRUE \
                     WHERE id = $1 AND org_id = $2 AND deleted_at = $3",
                    )
                    .bind(&expired.project_id)
                    .bind(&expired.org_id)
                    .bind(&expired.deleted_at)
                    .execute(p)
                    .await?
                }
                Some((_, id)) => {
                    sqlx::query(
                        "UPDATE objects SET purging = TRUE \
                     WHERE id = $1 AND org_id = $2 AND deleted_at = $3",
                    )
                    .bind(id)
                    .bind(&expired.org_id)
                    .bind(&expired.deleted_at)
                    .execute(p)
                    .await?
                }
            };
            Ok(done.rows_affected() == 1)
        })
    }

    /// Rows deleted before `cutoff` whose versions remain (at most `limit`), oldest deletion
    /// first.
    pub async fn expired_row_deletions(
        &self,
        _why: &SystemPass,
        cutoff: &str,
        limit: i64,
    ) -> Result<Vec<RowDeletion>> {
        with_pool!(&self.read, |p, DB| {
            let found: Vec<(String, String, String, i64, Option<String>)> = sqlx::query_as(
                "SELECT d.object_type, d.object_id, d.row_id, d.xact_id, \
                        COALESCE(o.org_id, p.org_id) \
                 FROM row_deletions d LEFT JOIN objects o ON o.id = d.object_id \
                 LEFT JOIN projects p ON p.id = d.object_id \
                 WHERE d.deleted_at < $1 ORDER BY d.deleted_at LIMIT $2",
            )
            .bind(cutoff)
            .bind(limit)
            .fetch_all(p)
            .await?;
            Ok(found
                .into_iter()
                .filter_map(|(t, object_id, row_id, xact_id, org_id)| {
                    Some(RowDeletion {
                        object_type: ObjectType::parse(&t)?,
                        object_id,
                        row_id,
                        xact_id,
                        org_id: org_id.unwrap_or_default(),
                    })
                })
                .collect())
        })
    }

    /// Removes, with their entries in every index, the versions of deleted rows of an
    /// object up to and including each deleting version (`rows`: row id and the deleting
    /// version's `_xact_id`), as many as fit one batch (see the module docs), and forgets
    /// the deletions whose versions are all gone. Returns (versions removed, deletions
    /// done); a deletion whose deleting version is still in the writer's tail waits.
    pub async fn purge_deleted_rows(
        &self,
        _why: &SystemPass,
        object_type: ObjectType,
        object_id: &str,
        rows: &[(String, i64)],
    ) -> Result<(usize, usize)> {
        let t = object_type.as_str();
        match &self.write {
            Pools::Sqlite(p) => sqlite_batch::purge_deleted_rows(p, t, object_id, rows).await,
            Pools::Postgres(p) => postgres_batch::purge_deleted_rows(p, t, object_id, rows).await,
        }
    }

    /// The newest deletion of each row of an object deleted at or after `since` (only the
    /// rows named, when `row_ids` is given), by row id, at most `limit` rows: (row id, the
    /// deleting version's `_xact_id`, when).
    pub async fn row_deletions_since(
        &self,
        pass: &ObjectPass,
        since: &str,
        row_ids: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<(String, i64, String)>> {
        let t = pass.object_type().as_str();
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        // Each id once, so that a row is never found in two chunks.
        let ids: Option<Vec<&String>> = row_ids.map(|ids| {
            let mut ids: Vec<&String> = ids.iter().collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        });
        let chunks: Vec<Option<&[&String]>> = match &ids {
            None => vec![None],
            Some(ids) => ids.chunks(500).map(Some).collect(),
        };
        let mut found: Vec<(String, i64, String)> = Vec::new();
        for chunk in chunks {
            let part: Vec<(String, i64, String)> = with_pool!(&self.read, |p, DB| {
                // A row's newest deletion: deletion times grow with `_xact_id`.
                let mut qb = QueryBuilder::<DB>::new(
                    "SELECT row_id, MAX(xact_id), MAX(deleted_at) FROM row_deletions \
                     WHERE object_type = ",
                );
                qb.push_bind(t)
                    .push(" AND object_id = ")
                    .push_bind(pass.object_id())
                    .push(" AND deleted_at >= ")
                    .push_bind(since);
                if let Some(ids) = chunk {
                    qb.push(" AND row_id IN (");
                    let mut sep = qb.separated(", ");
                    for id in ids {
                        sep.push_bind(id.as_str());
                    }
                    qb.push(")");
                }
                qb.push(" GROUP BY row_id ORDER BY row_id LIMIT ")
                    .push_bind(limit_sql);
                qb.build_query_as().fetch_all(p).await?
            });
            found.extend(part);
            if found.len() >= limit {
                break;
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// The deletions of an object's rows whose deleting version is in (`after`, `upto`]
    /// (`_xact_id`s), in `_xact_id` then row id order, after `from` (the last one of the
    /// previous page), at most `limit`: (row id, the deleting version's `_xact_id`).
    pub async fn row_deletions_between(
        &self,
        pass: &ObjectPass,
        after: i64,
        upto: i64,
        from: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<(String, i64)>> {
        let (from_xact, from_row) = from.unwrap_or((after, ""));
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_as(
            "SELECT row_id, xact_id FROM row_deletions WHERE object_type = $1 \
             AND object_id = $2 AND xact_id > $3 AND xact_id <= $4 \
             AND (xact_id > $5 OR (xact_id = $5 AND row_id > $6)) \
             ORDER BY xact_id, row_id LIMIT $7"
        )
        .bind(pass.object_type().as_str())
        .bind(pass.object_id())
        .bind(after)
        .bind(upto)
        .bind(from_xact)
        .bind(from_row)
        .bind(limit)
        .fetch_all(p)
        .await?))
    }

    /// The experiments, datasets and prompts of a project, deleted or not (at most `limit`).
    pub async fn project_contents(
        &self,
        _why: &SystemPass,
        project_id: &str,
        limit: i64,
    ) -> Result<Vec<(ObjectType, String)>> {
        with_pool!(&self.read, |p, DB| {
            let found: Vec<(String, String)> = sqlx::query_as(
                "SELECT kind, id FROM objects WHERE project_id = $1 ORDER BY id LIMIT $2",
            )
            .bind(project_id)
            .bind(limit)
            .fetch_all(p)
            .await?;
            Ok(found
                .into_iter()
                .filter_map(|(k, id)| Some((ObjectType::parse(&k)?, id)))
                .collect())
        })
    }

    /// Removes up to `max_rows` versions of an object, after `after`, with their entries in
    /// every index (see the module docs). Only for an object claimed for purging (or the logs
    /// of a claimed project).
    pub async fn purge_versions(
        &self,
        _why: &SystemPass,
        object_type: ObjectType,
        object_id: &str,
        after: &PurgeCursor,
        max_rows: usize,
    ) -> Result<PurgedBatch> {
        let max_rows = i64::try_from(max_rows.max(1)).unwrap_or(i64::MAX);
        let t = object_type.as_str();
        match &self.write {
            Pools::Sqlite(p) => {
                sqlite_batch::purge_versions(p, t, object_id, after, max_rows).await
            }
            Pools::Postgres(p) => {
                postgres_batch::purge_versions(p, t, object_id, after, max_rows).await
            }
        }
    }

    /// Attachments an object owns (at most `limit`), for their blobs to be removed before
    /// [`Store::forget_attachment`]. One that rows of another object also reference passes
    /// to that object instead, and is not listed.
    pub async fn owned_attachments(
        &self,
        _why: &SystemPass,
        org_id: &str,
        object_type: ObjectType,
        object_id: &str,
        limit: i64,
    ) -> Result<Vec<String>> {
        let t = object_type.as_str();
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let keys: Vec<String> = sqlx::query_scalar(
                "SELECT key FROM attachments WHERE org_id = $1 AND object_type = $2 \
                 AND object_id = $3 ORDER BY key LIMIT $4",
            )
            .bind(org_id)
            .bind(t)
            .bind(object_id)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let mut owned = Vec::with_capacity(keys.len());
            for key in keys {
                let other: Option<(String, String)> = sqlx::query_as(
                    "SELECT object_type, object_id FROM attachment_refs WHERE org_id = $1 \
                     AND key = $2 AND NOT (object_type = $3 AND object_id = $4) \
                     ORDER BY object_type, object_id LIMIT 1",
                )
                .bind(org_id)
                .bind(&key)
                .bind(t)
                .bind(object_id)
                .fetch_optional(&mut *tx)
                .await?;
                match other {
                    Some((ot, oid)) => {
                        sqlx::query(
                            "UPDATE attachments SET object_type = $1, object_id = $2 \
                             WHERE org_id = $3 AND key = $4",
                        )
                        .bind(ot)
                        .bind(oid)
                        .bind(org_id)
                        .bind(&key)
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => owned.push(key),
                }
            }
            tx.commit().await?;
            Ok(owned)
        })
    }

    /// Claims up to `limit` attachments that purged rows were the last to reference (queued
    /// by the row purge), as (organization, key), to have their blobs deleted and then be
    /// forgotten ([`Store::forget_attachment`]). A claimed one is marked `deleting`, so that
    /// a row referencing it from then on is refused ([`Store::add_attachment_refs`]); one
    /// referenced again before its claim (by a new row) is taken off the queue instead. Ones
    /// claimed by a run that stopped before forgetting them are returned again.
    pub async fn unreferenced_attachments(
        &self,
        _why: &SystemPass,
        limit: i64,
    ) -> Result<Vec<(String, String)>> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let queued: Vec<(String, String, bool)> = sqlx::query_as(
                "SELECT org_id, key, deleting FROM unreferenced_attachments \
                 ORDER BY org_id, key LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let mut out = Vec::with_capacity(queued.len());
            for (org, key, deleting) in queued {
                if deleting {
                    out.push((org, key));
                    continue;
                }
                // The claim comes first: on PostgreSQL it locks the entry, so that a row
                // write taking the key off the queue either went before (nothing to claim)
                // or waits for this transaction and then sees the claim.
                let claimed = sqlx::query(
                    "UPDATE unreferenced_attachments SET deleting = TRUE \
                     WHERE org_id = $1 AND key = $2 AND NOT deleting",
                )
                .bind(&org)
                .bind(&key)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if claimed == 0 {
                    continue;
                }
                let referenced: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM attachment_refs WHERE org_id = $1 AND key = $2)",
                )
                .bind(&org)
                .bind(&key)
                .fetch_one(&mut *tx)
                .await?;
                if referenced {
                    sqlx::query(
                        "DELETE FROM unreferenced_attachments WHERE org_id = $1 AND key = $2",
                    )
                    .bind(&org)
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    out.push((org, key));
                }
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    /// Forgets an attachment whose blob is gone: its record, upload and references.
    pub async fn forget_attachment(
        &self,
        _why: &SystemPass,
        org_id: &str,
        key: &str,
    ) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            for sql in [
                "DELETE FROM attachments WHERE org_id = $1 AND key = $2",
                "DELETE FROM uploads WHERE org_id = $1 AND kind = 'attachment' AND key = $2",
                "DELETE FROM attachment_refs WHERE org_id = $1 AND key = $2",
                "DELETE FROM attachment_row_refs WHERE org_id = $1 AND key = $2",
                "DELETE FROM unreferenced_attachments WHERE org_id = $1 AND key = $2",
            ] {
                sqlx::query(sql)
                    .bind(org_id)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Forgets a purged object (project logs included): its attachment references, the
    /// grants on it and its record. False while versions of it remain (in `row_index`, or in
    /// the writer's tail, which is looked at first so that a catch-up cannot slip past).
    pub async fn forget_object(
        &self,
        _why: &SystemPass,
        org_id: &str,
        object_type: ObjectType,
        object_id: &str,
    ) -> Result<bool> {
        let t = object_type.as_str();
        if self.index.view().holds(t, object_id) {
            return Ok(false);
        }
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let remaining: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM row_index WHERE object_type = $1 AND object_id = $2)",
            )
            .bind(t)
            .bind(object_id)
            .fetch_one(&mut *tx)
            .await?;
            if remaining {
                return Ok(false);
            }
            sqlx::query("DELETE FROM row_deletions WHERE object_type = $1 AND object_id = $2")
                .bind(t)
                .bind(object_id)
                .execute(&mut *tx)
                .await?;
            for sql in [
                "DELETE FROM attachment_refs WHERE org_id = $1 AND object_type = $2 AND object_id = $3",
                "DELETE FROM attachment_row_refs WHERE org_id = $1 AND object_type = $2 AND object_id = $3",
                "DELETE FROM score_summaries WHERE org_id = $1 AND object_type = $2 AND object_id = $3",
            ] {
                sqlx::query(sql)
                    .bind(org_id)
                    .bind(t)
                    .bind(object_id)
                    .execute(&mut *tx)
                    .await?;
            }
            if object_type != ObjectType::ProjectLogs {
                forget_grants!(tx, org_id, object_id);
                sqlx::query("DELETE FROM objects WHERE id = $1 AND org_id = $2")
                    .bind(object_id)
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Forgets a purged project once nothing of it remains: the grants on it and its
    /// record. False while it still has objects.
    pub async fn forget_project(
        &self,
        _why: &SystemPass,
        org_id: &str,
        project_id: &str,
    ) -> Result<bool> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let remaining: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM objects WHERE project_id = $1)")
                    .bind(project_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if remaining {
                return Ok(false);
            }
            forget_grants!(tx, org_id, project_id);
            sqlx::query(
                "DELETE FROM automation_runs WHERE automation_id IN \
                 (SELECT id FROM automations WHERE org_id = $1 AND project_id = $2)",
            )
            .bind(org_id)
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM automations WHERE org_id = $1 AND project_id = $2")
                .bind(org_id)
                .bind(project_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM projects WHERE id = $1 AND org_id = $2 AND purging")
                .bind(project_id)
                .bind(org_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// After a purge: on the embedded store, rewrites the word index without the documents
    /// removed (FTS5 keeps a removed document's words in its segments, marked deleted, until
    /// they are merged) and copies the log into the database and empties it, so that no
    /// removed text is left in either file. Whether the log could be emptied (a reader that
    /// holds an old snapshot keeps it; the next purge tries again). Nothing to do on
    /// PostgreSQL, whose vacuum reclaims removed rows.
    pub async fn compact_after_purge(&self, _why: &SystemPass) -> Result<bool> {
        let Pools::Sqlite(p) = &self.write else {
            return Ok(true);
        };
        sqlx::query("INSERT INTO row_text (row_text) VALUES ('optimize')")
            .execute(p)
            .await?;
        for _ in 0..20 {
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(p)
                .await?;
            if busy == 0 {
                return Ok(true);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(false)
    }

    /// Takes or renews the lease `name` for `holder` until `now + ttl` (Unix seconds): true
    /// when it is free, expired, or already this holder's.
    pub async fn take_lease(&self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<bool> {
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
            )
            .bind(name)
            .bind(holder)
            .bind(now.saturating_add(ttl))
            .bind(now)
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Runs `work` while `holder` holds the lease `name`, renewing it every third of `ttl`
    /// (at `clock`'s time), so that work longer than the lease keeps it.
    /// `Some` with the work's outcome; `None` when a renewal finds that another holder has
    /// taken the lease (this one stalled past `ttl`): the work is then dropped where it was,
    /// for the new holder to do again. An error renewing the lease also drops the work. The
    /// caller takes the lease first and gives it up after.
    pub async fn holding_lease<T>(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        clock: std::sync::Arc<dyn Clock>,
        work: impl std::future::Future<Output = T>,
    ) -> Result<Option<T>> {
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        let mut renew = tokio::time::interval((ttl / 3).max(std::time::Duration::from_millis(10)));
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: the caller has just taken the lease.
        renew.tick().await;
        // The renewals run in a task of their own, beside the work, never paused by it: a
        // renewal that paused the work to wait for the embedded store's one write
        // connection, while the work held it mid-write, waited for the pool's timeout (and
        // every other write with it); and a renewal polled with the work waits whenever the
        // work computes without yielding.
        let (store, name_owned, holder_owned) = (self.clone(), name.to_owned(), holder.to_owned());
        let renewals = tokio::spawn(async move {
            loop {
                renew.tick().await;
                if !store
                    .take_lease(
                        &name_owned,
                        &holder_owned,
                        clock.now().unix_timestamp(),
                        secs,
                    )
                    .await?
                {
                    return Ok::<(), crate::StoreError>(());
                }
            }
        });
        let stop = renewals.abort_handle();
        let out = tokio::select! {
            out = work => Ok(Some(out)),
            lost = renewals => match lost {
                Ok(Ok(())) => {
                    tracing::warn!(lease = name, holder, "a lease passed to another holder during its work; the work stops");
                    Ok(None)
                }
                Ok(Err(e)) => Err(e),
                Err(e) => Err(crate::StoreError::WriteFailed(format!("the lease's renewals stopped: {e}"))),
            },
        };
        stop.abort();
        out
    }

    /// Gives up a lease `holder` holds (another holder's is left alone).
    pub async fn end_lease(&self, name: &str, holder: &str) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(p)
                .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::both_stores as stores;

    /// One holder at a time: another takes the lease only once it has expired, the holder
    /// renews it, and gives it up.
    #[tokio::test]
    async fn one_lease_holder_at_a_time() {
        for (store, db) in stores("lease").await {
            assert!(store.take_lease("purge", "a", 1000, 60).await.unwrap());
            assert!(!store.take_lease("purge", "b", 1059, 60).await.unwrap());
            // Renewed by its holder, it lasts from the renewal.
            assert!(store.take_lease("purge", "a", 1050, 60).await.unwrap());
            assert!(!store.take_lease("purge", "b", 1100, 60).await.unwrap());
            assert!(store.take_lease("purge", "b", 1111, 60).await.unwrap());
            assert!(!store.take_lease("purge", "a", 1112, 60).await.unwrap());
            // Another lease is independent; ending one's lease lets the other in at once,
            // and ending a lease one does not hold changes nothing.
            assert!(store.take_lease("other", "a", 1112, 60).await.unwrap());
            store.end_lease("purge", "a").await.unwrap();
            assert!(!store.take_lease("purge", "a", 1113, 60).await.unwrap());
            store.end_lease("purge", "b").await.unwrap();
            assert!(store.take_lease("purge", "a", 1113, 60).await.unwrap());
            store.close().await;
            if let Some(db) = db {
                db.drop_database().await;
            }
        }
    }

    /// Work longer than its lease keeps it (renewed meanwhile, so no one else takes it);
    /// work whose holder lost the lease while it stalled is stopped.
    #[tokio::test]
    async fn a_lease_is_held_while_its_work_runs() {
        use holdfast_core::clock::ManualClock;
        use std::sync::Arc;
        use std::time::Duration;
        for (store, db) in stores("holding").await {
            let clock = ManualClock::at_unix(1000);
            let now = || clock.now().unix_timestamp();
            // Renewed every 2/3 s, while the clock moves a second every half second: a
            // renewal would have to be 1.5 s late for the lease to lapse.
            let ttl = Duration::from_secs(2);
            assert!(store.take_lease("l", "a", now(), 2).await.unwrap());
            // Four lease lengths of work while the clock moves on; another holder asking
            // all along never gets the lease.
            let work = {
                let (store, clock) = (store.clone(), clock.clone());
                async move {
                    let mut refused = 0;
                    for _ in 0..8 {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        let t = clock.advance(1);
                        refused += u32::from(!store.take_lease("l", "b", t, 2).await.unwrap());
                    }
                    refused
                }
            };
            let got = store
                .holding_lease("l", "a", ttl, Arc::new(clock.clone()), work)
                .await
                .unwrap();
            assert_eq!(got, Some(8));
            // A holder that stalls past its lease: another takes it, and the work stops at
            // the next renewal rather than running on beside the new holder's.
            let work = {
                let (store, clock) = (store.clone(), clock.clone());
                async move {
                    let t = clock.advance(10);
                    assert!(store.take_lease("l", "b", t, 60).await.unwrap());
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "finished"
                }
            };
            let started = std::time::Instant::now();
            let got = store
                .holding_lease("l", "a", ttl, Arc::new(clock.clone()), work)
                .await
                .unwrap();
            assert_eq!(got, None);
            assert!(started.elapsed() < Duration::from_secs(5));
            assert!(!store.take_lease("l", "a", now(), 2).await.unwrap());
            store.close().await;
            if let Some(db) = db {
                db.drop_database().await;
            }
        }
    }

    /// Work that holds the write connection across a renewal (a transaction open over a
    /// pause) goes on while the renewal waits for that connection: the embedded store has
    /// one, and a renewal that paused the work to wait for it waited for the pool's timeout.
    #[tokio::test]
    async fn a_renewal_does_not_pause_the_work() {
        use std::time::{Duration, Instant};
        for (store, db) in stores("renewal").await {
            let clock = holdfast_core::clock::ManualClock::at_unix(1000);
            assert!(store.take_lease("l", "a", 1000, 2).await.unwrap());
            let work = async {
                with_pool!(&store.write, |p, DB| {
                    let mut tx = p.begin().await.unwrap();
                    sqlx::query("DELETE FROM leases WHERE name = 'none'")
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    // Two renewals fall due meanwhile.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    tx.commit().await.unwrap();
                });
                "done"
            };
            let started = Instant::now();
            let got = store
                .holding_lease(
                    "l",
                    "a",
                    Duration::from_secs(2),
                    std::sync::Arc::new(clock),
                    work,
                )
                .await
                .unwrap();
            assert_eq!(got, Some("done"));
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            store.close().await;
            if let Some(db) = db {
                db.drop_database().await;
            }
        }
    }

    /// The queue of attachments no row references, against rows that reference them again:
    /// a row written before the purge claims one takes it off the queue; once claimed (its
    /// blob being deleted), a row referencing it is refused and leaves no reference behind;
    /// a claim a stopped run left is handed out again until the attachment is forgotten.
    #[tokio::test]
    async fn a_claimed_attachment_is_not_referenced_again() {
        let why = SystemPass::new("test");
        for (store, db) in stores("claim").await {
            let pass = crate::testing::dataset_pass("d");
            with_pool!(&store.write, |p, DB| {
                for key in ["back", "going"] {
                    sqlx::query(
                        "INSERT INTO unreferenced_attachments (org_id, key) VALUES ('o', $1)",
                    )
                    .bind(key)
                    .execute(p)
                    .await
                    .unwrap();
                }
            });
            let refs = |key: &str| vec![("r1".to_owned(), key.to_owned())];
            store
                .add_attachment_refs(&pass, &refs("back"))
                .await
                .unwrap();
            let claimed = store.unreferenced_attachments(&why, 10).await.unwrap();
            assert_eq!(claimed, vec![("o".to_owned(), "going".to_owned())]);
            let refused = store.add_attachment_refs(&pass, &refs("going")).await;
            match refused {
                Err(crate::StoreError::Conflict(m)) => {
                    assert!(m.contains("\"going\" is being deleted"), "{m}")
                }
                other => panic!("{other:?}"),
            }
            let count = |sql: &'static str| {
                let store = store.clone();
                async move {
                    with_pool!(&store.read, |p, DB| {
                        let n: i64 = sqlx::query_scalar(sql).fetch_one(p).await.unwrap();
                        n
                    })
                }
            };
            assert_eq!(
                count("SELECT count(*) FROM attachment_refs WHERE key = 'going'").await,
                0
            );
            assert_eq!(
                count("SELECT count(*) FROM attachment_row_refs WHERE key = 'going'").await,
                0
            );
            assert_eq!(
                count("SELECT count(*) FROM attachment_row_refs WHERE key = 'back'").await,
                1
            );
            // A run that stopped before forgetting it: the next is given it again.
            let again = store.unreferenced_attachments(&why, 10).await.unwrap();
            assert_eq!(again, claimed);
            store.forget_attachment(&why, "o", "going").await.unwrap();
            assert!(
                store
                    .unreferenced_attachments(&why, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            // Forgotten, the key is like any other never uploaded.
            store
                .add_attachment_refs(&pass, &refs("going"))
                .await
                .unwrap();
            store.close().await;
            if let Some(db) = db {
                db.drop_database().await;
            }
        }
    }

    /// A deletion exactly at the cutoff is not yet expired, one a microsecond before is; a
    /// claim holds only for the deletion it was made for.
    #[tokio::test]
    async fn expiry_at_the_cutoff() {
        let why = SystemPass::new("test");
        for (store, db) in stores("expiry").await {
            with_pool!(&store.write, |p, DB| {
                for sql in [
                    "INSERT INTO orgs (id, name, created) VALUES ('o', 'o', '2026-01-01T00:00:00.000000Z')",
                    "INSERT INTO projects (id, org_id, name, created, deleted_at, seq, info) \
                     VALUES ('p', 'o', 'p', '2026-01-01T00:00:00.000000Z', '2026-12-01T10:00:00.000000Z', 1, '{}')",
                    "INSERT INTO objects (id, org_id, project_id, kind, name, created, deleted_at, seq, info) \
                     VALUES ('d', 'o', 'p', 'dataset', 'd', '2026-01-01T00:00:00.000000Z', '2026-12-01T10:00:00.000001Z', 2, '{}')",
                ] {
                    sqlx::query(sql).execute(p).await.unwrap();
                }
            });
            let at = |cutoff: &'static str| {
                let store = store.clone();
                async move {
                    store
                        .expired_deletions(&why, cutoff, 10)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|e| e.object.map_or(e.project_id, |(_, id)| id))
                        .collect::<Vec<_>>()
                }
            };
            assert_eq!(
                at("2026-12-01T10:00:00.000000Z").await,
                Vec::<String>::new()
            );
            assert_eq!(at("2026-12-01T10:00:00.000001Z").await, vec!["p"]);
            assert_eq!(at("2026-12-01T10:00:00.000002Z").await, vec!["p", "d"]);
            let expired = store
                .expired_deletions(&why, "2026-12-02T00:00:00.000000Z", 10)
                .await
                .unwrap();
            let mut stale = expired[1].clone();
            stale.deleted_at = "2026-12-01T09:00:00.000000Z".into();
            assert!(!store.claim_for_purge(&why, &stale).await.unwrap());
            for e in &expired {
                assert!(store.claim_for_purge(&why, e).await.unwrap());
            }
            // Nothing of either remains to purge, so both are forgotten.
            assert!(
                store
                    .forget_object(&why, "o", ObjectType::Dataset, "d")
                    .await
                    .unwrap()
            );
            assert!(store.forget_project(&why, "o", "p").await.unwrap());
            assert_eq!(
                at("2026-12-02T00:00:00.000000Z").await,
                Vec::<String>::new()
            );
            store.close().await;
            if let Some(db) = db {
                db.drop_database().await;
            }
        }
    }

    /// Deletions by transaction range come in `_xact_id` then row id order, page after page
    /// with nothing lost or repeated at a page boundary inside one transaction, and only
    /// those of the object and inside (`after`, `upto`].
    #[tokio::test]
    async fn deletions_by_transaction_range_page_in_order() {
        for (store, db) in stores("deletions_range").await {
            let pass = crate::testing::dataset_pass("d");
            with_pool!(&store.write, |p, DB| {
                for (object, row, xact) in [
                    ("d", "r1", 10),
                    ("d", "r2", 11),
                    ("d", "r3", 11),
                    ("d", "r4", 11),
                    ("d", "r5", 12),
                    ("d", "r6", 20),
                    ("other", "r7", 11),
                ] {
                    sqlx::query(
                        "INSERT INTO row_deletions (object_type, object_id, row_id, xact_id, \
                         deleted_at) VALUES ('dataset', $1, $2, $3, 't')",
                    )
                    .bind(object)
                    .bind(row)
                    .bind(xact)
                    .execute(p)
                    .await
                    .unwrap();
                }
            });
            let mut got = Vec::new();
            let mut from: Option<(i64, String)> = None;
            loop {
                let page = store
                    .row_deletions_between(
                        &pass,
                        10,
                        12,
                        from.as_ref().map(|(x, r)| (*x, r.as_str())),
                        2,
                    )
                    .await
                    .unwrap();
                from = page.last().map(|(r, x)| (*x, r.clone()));
                let done = page.len() < 2;
                got.extend(page);
                if done {
                    break;
                }
            }
            let want: Vec<(String, i64)> = [("r2", 11), ("r3", 11), ("r4", 11), ("r5", 12)]
                .map(|(r, x)| (r.to_owned(), x))
                .into();
            assert_eq!(got, want);
            store.close().await;
            if let Some(db) = db {
                db.drop_database().await;
            }
        }
    }
}
