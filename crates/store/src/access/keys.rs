//! API keys as their owners and administrators see them, and their use.

use crate::db::with_pool;
use crate::meta::{KEY_COLS, key_from, require_grant};
use crate::{ApiKeyRecord, Result, Store};
use holdfast_core::authz::{Kind, OrgPass, Permission, SystemPass};
use sqlx::QueryBuilder;

impl Store {
    // ---- keys seen by their owners and administrators ----

    /// Keys in the pass's organization: all of them with `all_users`, else the caller's own.
    pub async fn org_keys(&self, pass: &OrgPass, all_users: bool) -> Result<Vec<ApiKeyRecord>> {
        if all_users {
            require_grant(pass, Permission::Read, Kind::OrgMember)?;
        }
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE org_id = $1 AND ($2 OR user_id = $3) ORDER BY created DESC, id"
            );
            let rows: Vec<crate::meta::KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(all_users)
                .bind(pass.user_id())
                .fetch_all(p)
                .await?;
            rows.into_iter().map(key_from).collect()
        })
    }

    /// Sets a key's expiry (rotation grace) or revokes it, inside the pass's organization.
    pub async fn end_key(
        &self,
        pass: &OrgPass,
        key_id: &str,
        expires_at: Option<&str>,
        revoked_at: Option<&str>,
    ) -> Result<bool> {
        let own_only = require_grant(pass, Permission::Delete, Kind::OrgMember).is_err();
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "UPDATE api_keys SET expires_at = COALESCE($1, expires_at), revoked_at = COALESCE($2, revoked_at) \
                 WHERE id = $3 AND org_id = $4 AND ($5 = FALSE OR user_id = $6) AND revoked_at IS NULL",
            )
            .bind(expires_at)
            .bind(revoked_at)
            .bind(key_id)
            .bind(pass.org_id())
            .bind(own_only)
            .bind(pass.user_id())
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Adds `requests` to a key's count for `day`, and records when and from where it was
    /// last used.
    pub async fn record_key_use(
        &self,
        _why: &SystemPass,
        key_id: &str,
        day: &str,
        requests: i64,
        at: &str,
        from: Option<&str>,
    ) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO key_usage (key_id, day, requests) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_id, day) DO UPDATE SET requests = key_usage.requests + $3",
            )
            .bind(key_id)
            .bind(day)
            .bind(requests)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1, last_used_from = COALESCE($2, last_used_from) WHERE id = $3",
            )
            .bind(at)
            .bind(from)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Requests per day for a key of the pass's organization, newest day first.
    pub async fn key_usage(&self, pass: &OrgPass, key_id: &str) -> Result<Vec<(String, i64)>> {
        with_pool!(&self.read, |p, DB| {
            Ok(sqlx::query_as(
                "SELECT u.day, u.requests FROM key_usage u JOIN api_keys k ON k.id = u.key_id \
                 WHERE k.org_id = $1 AND u.key_id = $2 ORDER BY u.day DESC LIMIT 90",
            )
            .bind(pass.org_id())
            .bind(key_id)
            .fetch_all(p)
            .await?)
        })
    }

    /// The `days` most recent days of use of each of `key_ids` in the pass's organization:
    /// `(key id, day, requests)`, each key's newest day first; one read per
    /// [`USAGE_KEYS_PER_READ`] keys.
    pub async fn keys_usage(
        &self,
        pass: &OrgPass,
        key_ids: &[&str],
        days: i64,
    ) -> Result<Vec<(String, String, i64)>> {
        let mut out = Vec::new();
        for chunk in key_ids.chunks(USAGE_KEYS_PER_READ) {
            let found: Vec<(String, String, i64)> = with_pool!(&self.read, |p, DB| {
                let mut qb = QueryBuilder::<DB>::new(
                    "SELECT key_id, day, requests FROM (\
                       SELECT u.key_id, u.day, u.requests, \
                         ROW_NUMBER() OVER (PARTITION BY u.key_id ORDER BY u.day DESC) AS n \
                       FROM key_usage u JOIN api_keys k ON k.id = u.key_id WHERE k.org_id = ",
                );
                qb.push_bind(pass.org_id()).push(" AND u.key_id IN (");
                let mut ids = qb.separated(", ");
                for id in chunk {
                    ids.push_bind(*id);
                }
                qb.push(")) r WHERE n <= ")
                    .push_bind(days)
                    .push(" ORDER BY key_id, day DESC");
                Ok::<_, crate::StoreError>(qb.build_query_as().fetch_all(p).await?)
            })?;
            out.extend(found);
        }
        Ok(out)
    }
}

/// Keys whose usage one read of [`Store::keys_usage`] asks for (its binds).
const USAGE_KEYS_PER_READ: usize = 500;
