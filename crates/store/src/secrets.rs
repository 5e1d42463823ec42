//! Data keys (stored only wrapped) and the secrets sealed under them. The store never sees a
//! plaintext key or secret: sealing and unwrapping happen in the services' vault.

use crate::db::with_pool;
use crate::meta::require_grant;
use crate::{Result, Store, StoreError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use holdfast_core::authz::{Kind, OrgPass, Permission, SystemPass};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct DataKeyRecord {
    pub org_id: String,
    pub version: i64,
    pub kek_id: String,
    /// The data key wrapped by the KEK.
    pub wrapped: Vec<u8>,
    pub created: String,
    pub retired: Option<String>,
}

/// A sealed secret: the value exists here only as ciphertext.
#[derive(Clone, PartialEq)]
pub struct SecretRecord {
    pub id: String,
    pub org_id: String,
    /// `ai_secret` or `env_var`.
    pub kind: String,
    pub object_type: String,
    pub object_id: String,
    pub name: String,
    pub secret_type: Option<String>,
    pub metadata: Value,
    pub preview: String,
    pub dek_version: i64,
    pub ciphertext: Vec<u8>,
    pub created: String,
    pub updated_at: String,
    pub secret_updated_at: String,
    pub secret_updated_by: Option<String>,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

type KeyRow = (String, i64, String, String, String, Option<String>);
const KEY_COLS: &str = "org_id, version, kek_id, wrapped, created, retired";

fn key_from(r: KeyRow) -> Result<DataKeyRecord> {
    let (org_id, version, kek_id, wrapped, created, retired) = r;
    Ok(DataKeyRecord {
        wrapped: B64
            .decode(&wrapped)
            .map_err(|e| StoreError::Corrupt(format!("data key: {e}")))?,
        org_id,
        version,
        kek_id,
        created,
        retired,
    })
}

type SecretRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
);
const SECRET_COLS: &str = "id, org_id, kind, object_type, object_id, name, secret_type, metadata, preview, dek_version, ciphertext, created, updated_at, secret_updated_at, secret_updated_by";

fn secret_from(r: SecretRow) -> Result<SecretRecord> {
    let (
        id,
        org_id,
        kind,
        object_type,
        object_id,
        name,
        secret_type,
        metadata,
        preview,
        dek_version,
        ciphertext,
        created,
        updated_at,
        secret_updated_at,
        secret_updated_by,
    ) = r;
    let corrupt = |e: String| StoreError::Corrupt(format!("secret {id}: {e}"));
    Ok(SecretRecord {
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt(e.to_string()))?,
        ciphertext: B64
            .decode(&ciphertext)
            .map_err(|e| corrupt(e.to_string()))?,
        id: id.clone(),
        org_id,
        kind,
        object_type,
        object_id,
        name,
        secret_type,
        preview,
        dek_version,
        created,
        updated_at,
        secret_updated_at,
        secret_updated_by,
    })
}

fn require_secret_grant(pass: &OrgPass, write: bool) -> Result<()> {
    match pass.grant() {
        Some((p, Kind::AiSecret)) if !write || p.writes() => Ok(()),
        _ => Err(StoreError::WrongPermission),
    }
}

impl Store {
    // ---- data keys (the vault's own records) ----

    /// The organization's newest data key that is not retired. Any pass of the organization
    /// will do: the vault uses the key only to seal or open what the caller's own pass
    /// allowed.
    pub async fn active_data_key(&self, pass: &OrgPass) -> Result<Option<DataKeyRecord>> {
        let org_id = pass.org_id();
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {KEY_COLS} FROM data_keys WHERE org_id = $1 AND retired IS NULL ORDER BY version DESC LIMIT 1"
            );
            let row: Option<KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(org_id)
                .fetch_optional(p)
                .await?;
            row.map(key_from).transpose()
        })
    }

    pub async fn data_key(&self, pass: &OrgPass, version: i64) -> Result<Option<DataKeyRecord>> {
        let org_id = pass.org_id();
        with_pool!(&self.read, |p, DB| {
            let sql =
                format!("SELECT {KEY_COLS} FROM data_keys WHERE org_id = $1 AND version = $2");
            let row: Option<KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(org_id)
                .bind(version)
                .fetch_optional(p)
                .await?;
            row.map(key_from).transpose()
        })
    }

    /// Stores a new data key; false when that version exists already (another process made
    /// it first).
    pub async fn insert_data_key(&self, pass: &OrgPass, k: &DataKeyRecord) -> Result<bool> {
        if k.org_id != pass.org_id() {
            return Err(StoreError::WrongPermission);
        }
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "INSERT INTO data_keys (org_id, version, kek_id, wrapped, created, retired) \
                 VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT DO NOTHING",
            )
            .bind(&k.org_id)
            .bind(k.version)
            .bind(&k.kek_id)
            .bind(B64.encode(&k.wrapped))
            .bind(&k.created)
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    pub async fn all_data_keys(&self, _why: &SystemPass) -> Result<Vec<DataKeyRecord>> {
        with_pool!(&self.read, |p, DB| {
            let sql = format!("SELECT {KEY_COLS} FROM data_keys ORDER BY org_id, version");
            let rows: Vec<KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(p)
                .await?;
            rows.into_iter().map(key_from).collect()
        })
    }

    /// Replaces a data key's wrapping (KEK rotation), if it is still `old_kek_id`'s.
    pub async fn rewrap_data_key(
        &self,
        _why: &SystemPass,
        k: &DataKeyRecord,
        old_kek_id: &str,
    ) -> Result<bool> {
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "UPDATE data_keys SET kek_id = $1, wrapped = $2 WHERE org_id = $3 AND version = $4 AND kek_id = $5",
            )
            .bind(&k.kek_id)
            .bind(B64.encode(&k.wrapped))
            .bind(&k.org_id)
            .bind(k.version)
            .bind(old_kek_id)
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Every secret of an organization (for re-encryption and verification).
    pub async fn org_secrets(&self, _why: &SystemPass, org_id: &str) -> Result<Vec<SecretRecord>> {
        with_pool!(&self.read, |p, DB| {
            let sql = format!("SELECT {SECRET_COLS} FROM secrets WHERE org_id = $1 ORDER BY id");
            let rows: Vec<SecretRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(org_id)
                .fetch_all(p)
                .await?;
            rows.into_iter().map(secret_from).collect()
        })
    }

    /// DEK rotation in one transaction: the new key is stored, every secret is replaced by its
    /// re-encryption (only if it did not change meanwhile; otherwise nothing is applied), and
    /// older keys are retired.
    pub async fn rotate_data_key(
        &self,
        _why: &SystemPass,
        new_key: &DataKeyRecord,
        reencrypted: &[(SecretRecord, Vec<u8>)],
        sso: &[(crate::SsoConnectionRecord, Vec<u8>)],
        now: &str,
    ) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO data_keys (org_id, version, kek_id, wrapped, created, retired) VALUES ($1, $2, $3, $4, $5, NULL)",
            )
            .bind(&new_key.org_id)
            .bind(new_key.version)
            .bind(&new_key.kek_id)
            .bind(B64.encode(&new_key.wrapped))
            .bind(&new_key.created)
            .execute(&mut *tx)
            .await?;
            for (old, ciphertext) in reencrypted {
                let done = sqlx::query(
                    "UPDATE secrets SET dek_version = $1, ciphertext = $2 WHERE id = $3 AND ciphertext = $4",
                )
                .bind(new_key.version)
                .bind(B64.encode(ciphertext))
                .bind(&old.id)
                .bind(B64.encode(&old.ciphertext))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict(format!(
                        "secret {} changed during the rotation; run it again",
                        old.id
                    )));
                }
            }
            for (old, ciphertext) in sso {
                let done = sqlx::query(
                    "UPDATE sso_connections SET secret_dek_version = $1, secret_ciphertext = $2 \
                     WHERE id = $3 AND secret_ciphertext = $4",
                )
                .bind(new_key.version)
                .bind(B64.encode(ciphertext))
                .bind(&old.id)
                .bind(&old.secret_ciphertext)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict(format!(
                        "sign-in connection {} changed during the rotation; run it again",
                        old.id
                    )));
                }
            }
            let left: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM secrets WHERE org_id = $1 AND dek_version <> $2) + \
                 (SELECT COUNT(*) FROM sso_connections WHERE org_id = $1 AND secret_dek_version <> $2 \
                 AND secret_ciphertext <> '')",
            )
            .bind(&new_key.org_id)
            .bind(new_key.version)
            .fetch_one(&mut *tx)
            .await?;
            if left != 0 {
                return Err(StoreError::Conflict(
                    "secrets were added during the rotation; run it again".into(),
                ));
            }
            sqlx::query(
                "UPDATE data_keys SET retired = $1 WHERE org_id = $2 AND version <> $3 AND retired IS NULL",
            )
            .bind(now)
            .bind(&new_key.org_id)
            .bind(new_key.version)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    // ---- secrets (grant on ai_secret) ----

    pub async fn list_secrets(
        &self,
        pass: &OrgPass,
        kind: &str,
        object: Option<(&str, &str)>,
    ) -> Result<Vec<SecretRecord>> {
        require_secret_grant(pass, false)?;
        let (ty, id) = object.unwrap_or(("", ""));
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {SECRET_COLS} FROM secrets WHERE org_id = $1 AND kind = $2 \
                 AND ($3 = '' OR (object_type = $3 AND object_id = $4)) ORDER BY created DESC, id"
            );
            let rows: Vec<SecretRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(kind)
                .bind(ty)
                .bind(id)
                .fetch_all(p)
                .await?;
            rows.into_iter().map(secret_from).collect()
        })
    }

    pub async fn get_secret(&self, pass: &OrgPass, kind: &str, id: &str) -> Result<SecretRecord> {
        require_secret_grant(pass, false)?;
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {SECRET_COLS} FROM secrets WHERE org_id = $1 AND kind = $2 AND id = $3"
            );
            let row: Option<SecretRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(kind)
                .bind(id)
                .fetch_optional(p)
                .await?;
            row.map(secret_from)
                .transpose()?
                .ok_or(StoreError::NotFound("secret"))
        })
    }

    /// Inserts a secret; a taken name is a conflict.
    pub async fn insert_secret(&self, pass: &OrgPass, rec: &SecretRecord) -> Result<()> {
        require_secret_grant(pass, true)?;
        if rec.org_id != pass.org_id() {
            return Err(StoreError::WrongPermission);
        }
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "INSERT INTO secrets (id, org_id, kind, object_type, object_id, name, secret_type, metadata, preview, \
                 dek_version, ciphertext, created, updated_at, secret_updated_at, secret_updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(&rec.id)
            .bind(&rec.org_id)
            .bind(&rec.kind)
            .bind(&rec.object_type)
            .bind(&rec.object_id)
            .bind(&rec.name)
            .bind(&rec.secret_type)
            .bind(rec.metadata.to_string())
            .bind(&rec.preview)
            .bind(rec.dek_version)
            .bind(B64.encode(&rec.ciphertext))
            .bind(&rec.created)
            .bind(&rec.updated_at)
            .bind(&rec.secret_updated_at)
            .bind(&rec.secret_updated_by)
            .execute(p)
            .await;
            match done {
                Ok(_) => Ok(()),
                Err(e)
                    if e.as_database_error()
                        .is_some_and(|d| d.is_unique_violation()) =>
                {
                    Err(StoreError::Conflict(format!(
                        "a secret named {:?} exists",
                        rec.name
                    )))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Overwrites a stored secret's fields (same id, organization and kind).
    pub async fn update_secret(&self, pass: &OrgPass, rec: &SecretRecord) -> Result<()> {
        require_secret_grant(pass, true)?;
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "UPDATE secrets SET name = $1, secret_type = $2, metadata = $3, preview = $4, dek_version = $5, \
                 ciphertext = $6, updated_at = $7, secret_updated_at = $8, secret_updated_by = $9 \
                 WHERE id = $10 AND org_id = $11 AND kind = $12",
            )
            .bind(&rec.name)
            .bind(&rec.secret_type)
            .bind(rec.metadata.to_string())
            .bind(&rec.preview)
            .bind(rec.dek_version)
            .bind(B64.encode(&rec.ciphertext))
            .bind(&rec.updated_at)
            .bind(&rec.secret_updated_at)
            .bind(&rec.secret_updated_by)
            .bind(&rec.id)
            .bind(pass.org_id())
            .bind(&rec.kind)
            .execute(p)
            .await;
            match done {
                Ok(d) if d.rows_affected() == 1 => Ok(()),
                Ok(_) => Err(StoreError::NotFound("secret")),
                Err(e)
                    if e.as_database_error()
                        .is_some_and(|d| d.is_unique_violation()) =>
                {
                    Err(StoreError::Conflict(format!(
                        "a secret named {:?} exists",
                        rec.name
                    )))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    pub async fn delete_secret(
        &self,
        pass: &OrgPass,
        kind: &str,
        id: &str,
    ) -> Result<SecretRecord> {
        require_grant(pass, Permission::Delete, Kind::AiSecret)?;
        let rec = self.get_secret(pass, kind, id).await?;
        with_pool!(&self.write, |p, DB| {
            sqlx::query("DELETE FROM secrets WHERE org_id = $1 AND kind = $2 AND id = $3")
                .bind(pass.org_id())
                .bind(kind)
                .bind(id)
                .execute(p)
                .await?;
            Ok(rec)
        })
    }
}
