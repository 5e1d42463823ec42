//! Identity-provider connections, the subjects linked to members, and sign-ins in flight; see
//! `holdfast_services::sso`. The connection's client secret is stored only sealed.

use crate::db::with_pool;
use crate::meta::require_grant;
use crate::{Result, Store, StoreError};
use holdfast_core::authz::{Kind, OrgPass, Permission, SystemPass};

/// A connection as stored: its protocol (`oidc` or `saml`), its settings as JSON, its client
/// secret sealed (base64; empty for SAML).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SsoConnectionRecord {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub protocol: String,
    pub config: String,
    pub secret_dek_version: i64,
    pub secret_ciphertext: String,
    pub created: String,
    pub updated: String,
}

/// A sign-in started at the provider and not yet finished.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SsoLoginRecord {
    pub state_hash: String,
    pub browser_hash: String,
    pub connection_id: String,
    pub nonce: String,
    pub code_verifier: String,
    pub created: String,
    pub expires: String,
    /// SAML: the identity a verified response asserts (JSON), waiting for the browser.
    pub verified: Option<String>,
}

macro_rules! connection_columns {
    () => {
        "id, org_id, name, protocol, config, secret_dek_version, secret_ciphertext, created, \
         updated"
    };
}

fn name_taken(e: sqlx::Error, name: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(format!(
            "the organization already has a sign-in connection named {name:?}"
        )),
        _ => e.into(),
    }
}

impl Store {
    /// Adds a connection (`update` on the organization).
    pub async fn insert_sso_connection(
        &self,
        pass: &OrgPass,
        c: &SsoConnectionRecord,
    ) -> Result<()> {
        require_grant(pass, Permission::Update, Kind::Organization)?;
        with_pool!(&self.write, |p, DB| {
            sqlx::query(concat!(
                "INSERT INTO sso_connections (",
                connection_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .bind(&c.id)
            .bind(pass.org_id())
            .bind(&c.name)
            .bind(&c.protocol)
            .bind(&c.config)
            .bind(c.secret_dek_version)
            .bind(&c.secret_ciphertext)
            .bind(&c.created)
            .bind(&c.updated)
            .execute(p)
            .await
            .map_err(|e| name_taken(e, &c.name))?;
            Ok(())
        })
    }

    /// Replaces a connection's name, settings and secret (`update` on the organization);
    /// false when the organization has no such connection.
    pub async fn update_sso_connection(
        &self,
        pass: &OrgPass,
        c: &SsoConnectionRecord,
    ) -> Result<bool> {
        require_grant(pass, Permission::Update, Kind::Organization)?;
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "UPDATE sso_connections SET name = $1, config = $2, secret_dek_version = $3, \
                 secret_ciphertext = $4, updated = $5 WHERE id = $6 AND org_id = $7",
            )
            .bind(&c.name)
            .bind(&c.config)
            .bind(c.secret_dek_version)
            .bind(&c.secret_ciphertext)
            .bind(&c.updated)
            .bind(&c.id)
            .bind(pass.org_id())
            .execute(p)
            .await
            .map_err(|e| name_taken(e, &c.name))?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Removes a connection and the subjects linked through it (`update` on the
    /// organization); false when there was none.
    pub async fn delete_sso_connection(&self, pass: &OrgPass, id: &str) -> Result<bool> {
        require_grant(pass, Permission::Update, Kind::Organization)?;
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let done = sqlx::query("DELETE FROM sso_connections WHERE id = $1 AND org_id = $2")
                .bind(id)
                .bind(pass.org_id())
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 1 {
                sqlx::query("DELETE FROM sso_identities WHERE connection_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM sso_logins WHERE connection_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM saml_assertions WHERE connection_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// The organization's connections, by name (any member may see them: the sign-in page
    /// lists them).
    pub async fn list_sso_connections(
        &self,
        _why: &SystemPass,
        org_id: &str,
    ) -> Result<Vec<SsoConnectionRecord>> {
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_as(concat!(
            "SELECT ",
            connection_columns!(),
            " FROM sso_connections WHERE org_id = $1 ORDER BY name"
        ))
        .bind(org_id)
        .fetch_all(p)
        .await?))
    }

    /// A connection by id, whatever its organization (a sign-in names it).
    pub async fn sso_connection(
        &self,
        _why: &SystemPass,
        id: &str,
    ) -> Result<Option<SsoConnectionRecord>> {
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_as(concat!(
            "SELECT ",
            connection_columns!(),
            " FROM sso_connections WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(p)
        .await?))
    }

    /// Records a sign-in started; removes those that expired.
    pub async fn insert_sso_login(
        &self,
        _why: &SystemPass,
        l: &SsoLoginRecord,
        now: &str,
    ) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM sso_logins WHERE expires <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO sso_logins (state_hash, browser_hash, connection_id, nonce, \
                 code_verifier, created, expires, verified) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&l.state_hash)
            .bind(&l.browser_hash)
            .bind(&l.connection_id)
            .bind(&l.nonce)
            .bind(&l.code_verifier)
            .bind(&l.created)
            .bind(&l.expires)
            .bind(&l.verified)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// How many sign-ins are in flight (started, not used, not expired).
    pub async fn sso_logins_in_flight(&self, _why: &SystemPass, now: &str) -> Result<i64> {
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM sso_logins WHERE used IS NULL AND expires > $1"
        )
        .bind(now)
        .fetch_one(p)
        .await?))
    }

    /// Takes a sign-in in flight by its state's hash: marked used in the same statement, so
    /// that only one request ever gets it. None when unknown, used or expired.
    pub async fn take_sso_login(
        &self,
        _why: &SystemPass,
        state_hash: &str,
        now: &str,
    ) -> Result<Option<SsoLoginRecord>> {
        with_pool!(&self.write, |p, DB| Ok(sqlx::query_as(
            "UPDATE sso_logins SET used = $1 WHERE state_hash = $2 AND used IS NULL \
             AND expires > $1 RETURNING state_hash, browser_hash, connection_id, nonce, \
             code_verifier, created, expires, verified"
        )
        .bind(now)
        .bind(state_hash)
        .fetch_optional(p)
        .await?))
    }

    /// The member a provider's subject is linked to, if it is linked.
    pub async fn sso_identity(
        &self,
        _why: &SystemPass,
        connection_id: &str,
        subject: &str,
    ) -> Result<Option<String>> {
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_scalar(
            "SELECT user_id FROM sso_identities WHERE connection_id = $1 AND subject = $2"
        )
        .bind(connection_id)
        .bind(subject)
        .fetch_optional(p)
        .await?))
    }

    /// Links a provider's subject to a user (kept if it is linked already), and records the
    /// sign-in's time.
    pub async fn link_sso_identity(
        &self,
        _why: &SystemPass,
        connection_id: &str,
        subject: &str,
        user_id: &str,
        now: &str,
    ) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            sqlx::query(
                "INSERT INTO sso_identities (connection_id, subject, user_id, created, \
                 last_login) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (connection_id, subject) \
                 DO UPDATE SET last_login = excluded.last_login",
            )
            .bind(connection_id)
            .bind(subject)
            .bind(user_id)
            .bind(now)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// Records that a SAML assertion was used, until it expires; false when it was used
    /// already (a replay). Assertions that expired are forgotten in the same transaction.
    pub async fn remember_saml_assertion(
        &self,
        _why: &SystemPass,
        connection_id: &str,
        assertion_id: &str,
        expires: &str,
        now: &str,
    ) -> Result<bool> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM saml_assertions WHERE expires <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query(
                "INSERT INTO saml_assertions (connection_id, assertion_id, expires) \
                 VALUES ($1, $2, $3) ON CONFLICT (connection_id, assertion_id) DO NOTHING",
            )
            .bind(connection_id)
            .bind(assertion_id)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::both_stores;

    /// An assertion is accepted once per connection; a replay is refused until it expires,
    /// and then forgotten.
    #[tokio::test]
    async fn a_saml_assertion_is_used_once() {
        let why = SystemPass::new("test");
        for (store, db) in both_stores("saml_replay").await {
            let t0 = "2026-12-01T00:00:00.000000Z";
            let t1 = "2026-12-01T00:05:00.000000Z";
            let t2 = "2026-12-01T00:10:00.000000Z";
            assert!(
                store
                    .remember_saml_assertion(&why, "c", "a1", t1, t0)
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .remember_saml_assertion(&why, "c", "a1", t1, t0)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .remember_saml_assertion(&why, "d", "a1", t1, t0)
                    .await
                    .unwrap()
            );
            // Once it expired it is forgotten (a replay would fail its own time checks).
            assert!(
                store
                    .remember_saml_assertion(&why, "c", "a1", t2, t2)
                    .await
                    .unwrap()
            );
            store.close().await;
            if let Some(db) = db {
                db.drop_database().await;
            }
        }
    }
}
