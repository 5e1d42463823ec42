//! Local accounts (passwords set through one-time links) and browser sessions; see
//! `holdfast_services::accounts`. Only hashes of link and session secrets are stored.

use crate::db::with_pool;
use crate::meta::require_grant;
use crate::{Result, Store};
use holdfast_core::authz::{Kind, OrgPass, Permission, SystemPass};

/// A browser session as stored (never its secret).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: String,
    pub csrf_hash: String,
    pub user_id: String,
    pub org_id: String,
    /// How the person signed in: `password`, `oidc:<provider>`, `saml`.
    pub method: String,
    pub created: String,
    pub last_seen: String,
    /// The absolute expiry, whatever the activity.
    pub expires: String,
    pub revoked: Option<String>,
    pub from_addr: Option<String>,
    pub user_agent: Option<String>,
}

macro_rules! session_columns {
    () => {
        "id, csrf_hash, user_id, org_id, method, created, last_seen, expires, revoked, \
         from_addr, user_agent"
    };
}

/// A one-time link to set a password.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountLink {
    pub id: String,
    pub secret_hash: String,
    /// `invite` or `reset`.
    pub kind: String,
    pub user_id: String,
    pub org_id: String,
    pub created: String,
    pub expires: String,
}

impl Store {
    /// The organizations (id, name) a user of this email belongs to, with the user's id.
    pub async fn memberships_by_email(
        &self,
        _why: &SystemPass,
        email: &str,
    ) -> Result<Vec<(String, String, String)>> {
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_as(
            "SELECT o.id, o.name, u.id FROM users u JOIN org_members m ON m.user_id = u.id \
             JOIN orgs o ON o.id = m.org_id WHERE lower(u.email) = $1 ORDER BY o.name"
        )
        .bind(email)
        .fetch_all(p)
        .await?))
    }

    /// How many grants are made to a user directly (not through a group) in an organization.
    pub async fn direct_grant_count(
        &self,
        _why: &SystemPass,
        org_id: &str,
        user_id: &str,
    ) -> Result<i64> {
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM acls WHERE org_id = $1 AND user_id = $2"
        )
        .bind(org_id)
        .bind(user_id)
        .fetch_one(p)
        .await?))
    }

    pub async fn password_hash(&self, _why: &SystemPass, user_id: &str) -> Result<Option<String>> {
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_scalar(
            "SELECT hash FROM passwords WHERE user_id = $1"
        )
        .bind(user_id)
        .fetch_optional(p)
        .await?))
    }

    pub async fn insert_account_link(&self, _why: &SystemPass, link: &AccountLink) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            sqlx::query(
                "INSERT INTO account_links (id, secret_hash, kind, user_id, org_id, created, \
                 expires) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&link.id)
            .bind(&link.secret_hash)
            .bind(&link.kind)
            .bind(&link.user_id)
            .bind(&link.org_id)
            .bind(&link.created)
            .bind(&link.expires)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// An unused, unexpired link by id (its hash is checked by the caller).
    pub async fn find_account_link(
        &self,
        _why: &SystemPass,
        id: &str,
        now: &str,
    ) -> Result<Option<AccountLink>> {
        with_pool!(&self.read, |p, DB| {
            let r: Option<(String, String, String, String, String, String, String)> =
                sqlx::query_as(
                    "SELECT id, secret_hash, kind, user_id, org_id, created, expires \
                     FROM account_links WHERE id = $1 AND used IS NULL AND expires > $2",
                )
                .bind(id)
                .bind(now)
                .fetch_optional(p)
                .await?;
            Ok(r.map(
                |(id, secret_hash, kind, user_id, org_id, created, expires)| AccountLink {
                    id,
                    secret_hash,
                    kind,
                    user_id,
                    org_id,
                    created,
                    expires,
                },
            ))
        })
    }

    /// Uses a link and sets its user's password, in one transaction: false (nothing changed)
    /// when the link was used or expired meanwhile. The user's sessions end (a reset signs
    /// out everywhere).
    pub async fn use_account_link(
        &self,
        _why: &SystemPass,
        link: &AccountLink,
        hash: &str,
        now: &str,
    ) -> Result<bool> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let used = sqlx::query(
                "UPDATE account_links SET used = $1 WHERE id = $2 AND used IS NULL \
                 AND expires > $1",
            )
            .bind(now)
            .bind(&link.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if used != 1 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO passwords (user_id, hash, updated) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, \
                 updated = excluded.updated",
            )
            .bind(&link.user_id)
            .bind(hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE sessions SET revoked = $1 WHERE user_id = $2 AND revoked IS NULL")
                .bind(now)
                .bind(&link.user_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    pub async fn insert_session(
        &self,
        _why: &SystemPass,
        s: &SessionRecord,
        secret_hash: &str,
    ) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            sqlx::query(concat!(
                "INSERT INTO sessions (secret_hash, ",
                session_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ))
            .bind(secret_hash)
            .bind(&s.id)
            .bind(&s.csrf_hash)
            .bind(&s.user_id)
            .bind(&s.org_id)
            .bind(&s.method)
            .bind(&s.created)
            .bind(&s.last_seen)
            .bind(&s.expires)
            .bind(&s.revoked)
            .bind(&s.from_addr)
            .bind(&s.user_agent)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// The session whose secret hashes to `secret_hash`, still a member of its organization.
    pub async fn find_session(
        &self,
        _why: &SystemPass,
        secret_hash: &str,
    ) -> Result<Option<SessionRecord>> {
        // A revocation is committed before it answers, so the next read sees it.
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_as(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE secret_hash = $1 AND EXISTS (SELECT 1 FROM org_members m \
             WHERE m.org_id = s.org_id AND m.user_id = s.user_id)"
        ))
        .bind(secret_hash)
        .fetch_optional(p)
        .await?))
    }

    pub async fn touch_session(&self, _why: &SystemPass, id: &str, now: &str) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id = $2 AND last_seen < $1")
                .bind(now)
                .bind(id)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    /// Ends a session of the organization (of `user_id` only, when given); false when there
    /// is no such live session.
    pub async fn revoke_session(
        &self,
        _why: &SystemPass,
        org_id: &str,
        user_id: Option<&str>,
        id: &str,
        now: &str,
    ) -> Result<bool> {
        with_pool!(&self.write, |p, DB| {
            let n = sqlx::query(
                "UPDATE sessions SET revoked = $1 WHERE id = $2 AND org_id = $3 \
                 AND ($4 IS NULL OR user_id = $4) AND revoked IS NULL",
            )
            .bind(now)
            .bind(id)
            .bind(org_id)
            .bind(user_id)
            .execute(p)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    /// A user's sessions in an organization that have not ended, newest first (at most 1000).
    pub async fn list_sessions(
        &self,
        _why: &SystemPass,
        org_id: &str,
        user_id: &str,
        now: &str,
    ) -> Result<Vec<SessionRecord>> {
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_as(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE org_id = $1 AND user_id = $2 AND revoked IS NULL \
             AND expires > $3 ORDER BY created DESC LIMIT 1000"
        ))
        .bind(org_id)
        .bind(user_id)
        .bind(now)
        .fetch_all(p)
        .await?))
    }

    /// Failed sign-ins of each subject at or after `since`.
    pub async fn login_failures(
        &self,
        _why: &SystemPass,
        subjects: &[&str],
        since: &str,
    ) -> Result<Vec<i64>> {
        let mut out = Vec::with_capacity(subjects.len());
        for subject in subjects {
            let n: i64 = with_pool!(&self.read, |p, DB| Ok::<i64, crate::StoreError>(
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM login_failures WHERE subject = $1 AND at >= $2"
                )
                .bind(subject)
                .bind(since)
                .fetch_one(p)
                .await?
            ))?;
            out.push(n);
        }
        Ok(out)
    }

    /// Records a failed sign-in for each subject, and forgets those before `forget_before`.
    pub async fn record_login_failure(
        &self,
        _why: &SystemPass,
        subjects: &[&str],
        now: &str,
        forget_before: &str,
    ) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM login_failures WHERE at < $1")
                .bind(forget_before)
                .execute(&mut *tx)
                .await?;
            for subject in subjects {
                sqlx::query("INSERT INTO login_failures (subject, at) VALUES ($1, $2)")
                    .bind(subject)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Forgets an account's failed sign-ins (after it signed in).
    pub async fn clear_login_failures(&self, _why: &SystemPass, subject: &str) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            sqlx::query("DELETE FROM login_failures WHERE subject = $1")
                .bind(subject)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    /// Whether the organization's members may sign in with a password (the default).
    pub async fn password_login_allowed(&self, _why: &SystemPass, org_id: &str) -> Result<bool> {
        let v: Option<i64> = with_pool!(&self.read, |p, DB| Ok::<_, crate::StoreError>(
            sqlx::query_scalar("SELECT password_login FROM sign_in_settings WHERE org_id = $1")
                .bind(org_id)
                .fetch_optional(p)
                .await?
        ))?;
        Ok(v.is_none_or(|v| v != 0))
    }

    /// Allows or forbids password sign-in for the pass's organization (which must carry
    /// `update` on it); forbidding it ends the sessions signed in with a password, in the
    /// same transaction. Returns how many sessions ended.
    pub async fn set_password_login(
        &self,
        pass: &OrgPass,
        allowed: bool,
        now: &str,
    ) -> Result<u64> {
        require_grant(pass, Permission::Update, Kind::Organization)?;
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO sign_in_settings (org_id, password_login, updated) VALUES ($1, $2, $3) \
                 ON CONFLICT (org_id) DO UPDATE SET password_login = excluded.password_login, \
                 updated = excluded.updated",
            )
            .bind(pass.org_id())
            .bind(i64::from(allowed))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let ended = if allowed {
                0
            } else {
                sqlx::query(
                    "UPDATE sessions SET revoked = $1 WHERE org_id = $2 AND method = 'password' \
                     AND revoked IS NULL",
                )
                .bind(now)
                .bind(pass.org_id())
                .execute(&mut *tx)
                .await?
                .rows_affected()
            };
            tx.commit().await?;
            Ok(ended)
        })
    }

    /// Ends the organization's live sessions made by one sign-in method; returns how many.
    pub async fn end_sessions_by_method(
        &self,
        _why: &SystemPass,
        org_id: &str,
        method: &str,
        now: &str,
    ) -> Result<u64> {
        with_pool!(&self.write, |p, DB| Ok(sqlx::query(
            "UPDATE sessions SET revoked = $1 WHERE org_id = $2 AND method = $3 \
             AND revoked IS NULL"
        )
        .bind(now)
        .bind(org_id)
        .bind(method)
        .execute(p)
        .await?
        .rows_affected()))
    }
}
