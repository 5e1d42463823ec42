//! The audit log: appended in chained entries, read by page.

use super::{
    AUDIT_COLS, AuditFilter, AuditRow, NewAuditEntry, append_audit_in, audit_from, like_quoted,
};
use crate::db::with_pool;
use crate::meta::require_grant;
use crate::{Result, Store};
use holdfast_core::audit::Entry;
use holdfast_core::authz::{Kind, OrgPass, Permission, SystemPass};

impl Store {
    // ---- audit ----

    /// Appends entries to the chain in one transaction, in order.
    pub async fn append_audit(&self, _why: &SystemPass, entries: &[NewAuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            append_audit_in!(tx, DB, entries, self.audit_key);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Appends entries through the row writer: they commit with the next group of row writes
    /// (sharing its fsync), and this returns once they are durable.
    pub async fn append_audit_grouped(
        &self,
        _why: &SystemPass,
        entries: Vec<NewAuditEntry>,
    ) -> Result<()> {
        self.write_audit(entries).await
    }

    /// The organization's entries, newest first, filtered.
    pub async fn list_audit(&self, pass: &OrgPass, f: &AuditFilter) -> Result<Vec<Entry>> {
        require_grant(pass, Permission::Read, Kind::OrgAuditLogs)?;
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {AUDIT_COLS} FROM audit_log WHERE org_id = $1 \
                 AND ($2 = '' OR actor_id = $2) AND ($3 = '' OR key_id = $3) \
                 AND ($4 = '' OR object_id = $4 OR detail LIKE $10 ESCAPE '!') \
                 AND ($5 = '' OR action = $5) AND ($6 = '' OR at >= $6) AND ($7 = '' OR at < $7) AND seq < $8 \
                 ORDER BY seq DESC LIMIT $9"
            );
            let s = |o: &Option<String>| o.clone().unwrap_or_default();
            let rows: Vec<AuditRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(s(&f.actor_id))
                .bind(s(&f.key_id))
                .bind(s(&f.object_id))
                .bind(s(&f.action))
                .bind(s(&f.since))
                .bind(s(&f.until))
                .bind(f.before_seq.unwrap_or(i64::MAX))
                .bind(f.limit)
                .bind(like_quoted(f.object_id.as_deref().unwrap_or_default()))
                .fetch_all(p)
                .await?;
            Ok(rows.into_iter().map(audit_from).collect())
        })
    }

    /// The global position of the organization's entry `chain_seq` (to resume a listing
    /// after it).
    pub async fn audit_position(&self, pass: &OrgPass, chain_seq: i64) -> Result<Option<i64>> {
        require_grant(pass, Permission::Read, Kind::OrgAuditLogs)?;
        with_pool!(&self.read, |p, DB| {
            Ok(
                sqlx::query_scalar("SELECT seq FROM audit_log WHERE chain = $1 AND chain_seq = $2")
                    .bind(pass.org_id())
                    .bind(chain_seq)
                    .fetch_optional(p)
                    .await?,
            )
        })
    }

    /// Every keyed chain with the number of entries its counter says it holds.
    pub async fn audit_chains(&self, _why: &SystemPass) -> Result<Vec<(String, i64)>> {
        with_pool!(&self.read, |p, DB| {
            let found: Vec<(String, i64)> = sqlx::query_as(
                "SELECT name, value FROM counters WHERE name LIKE 'audit:%' ORDER BY name",
            )
            .fetch_all(p)
            .await?;
            Ok(found
                .into_iter()
                .filter_map(|(n, v)| n.strip_prefix("audit:").map(|c| (c.to_owned(), v)))
                .collect())
        })
    }

    /// A page of one chain in order, after entry `after`: a keyed chain by its numbers, or
    /// (`chain` = `None`) the legacy chain by the global sequence.
    pub async fn audit_page(
        &self,
        _why: &SystemPass,
        chain: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Entry>> {
        with_pool!(&self.read, |p, DB| {
            let rows: Vec<AuditRow> = match chain {
                Some(chain) => {
                    let sql = format!(
                        "SELECT {AUDIT_COLS} FROM audit_log WHERE chain = $1 AND chain_seq > $2 \
                         ORDER BY chain_seq LIMIT $3"
                    );
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(chain)
                        .bind(after)
                        .bind(limit)
                        .fetch_all(p)
                        .await?
                }
                None => {
                    let sql = format!(
                        "SELECT {AUDIT_COLS} FROM audit_log WHERE chain IS NULL AND seq > $1 \
                         ORDER BY seq LIMIT $2"
                    );
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(after)
                        .bind(limit)
                        .fetch_all(p)
                        .await?
                }
            };
            Ok(rows.into_iter().map(audit_from).collect())
        })
    }
}
