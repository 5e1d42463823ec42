//! Attachments, the objects whose rows reference them, and the blobs uploaded through signed
//! URLs (attachments and overflow batches).
//!
//! Guarantees:
//! * An attachment belongs to one object, its owner, set when it is first registered and
//!   never changed by a later registration; registering, uploading, reading and updating it
//!   are decided against the owner (`holdfast_services::attachments`).
//! * Every upload grant is recorded with its id and size bound, and can be claimed once: a
//!   second use of the same signed URL finds nothing to claim.
//! * An overflow batch not consumed by its expiry, and a grant never used by its expiry, are
//!   listed by [`Store::expired_uploads`] for removal; usage per organization is the sum of
//!   the bytes stored.

use crate::db::with_pool;
use crate::meta::require_org_write;
use crate::{Result, Store, StoreError};
use holdfast_core::authz::{GrantPass, ObjectPass, OrgPass, SystemPass};
use holdfast_core::object::ObjectType;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentRecord {
    pub key: String,
    pub filename: String,
    pub content_type: String,
    pub status: Value,
    /// The owning object; `None` only for attachments registered before owners were kept.
    pub owner: Option<(ObjectType, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    Attachment,
    Overflow,
}

impl UploadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attachment => "attachment",
            Self::Overflow => "overflow",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "attachment" => Some(Self::Attachment),
            "overflow" => Some(Self::Overflow),
            _ => None,
        }
    }
}

/// One upload grant, as recorded when it is issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadGrant<'a> {
    pub kind: UploadKind,
    pub key: &'a str,
    pub grant_id: &'a str,
    pub max_bytes: i64,
    /// Unix seconds after which an unused grant is removed.
    pub expires_at: i64,
}

/// key, filename, content type, status, owner type, owner id.
type AttachmentRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// An upload to remove: (organization, kind, key).
pub type ExpiredUpload = (String, UploadKind, String);

fn require_write(pass: &ObjectPass) -> Result<()> {
    if pass.permission().writes() {
        Ok(())
    } else {
        Err(StoreError::WrongPermission)
    }
}

impl Store {
    /// Records that rows of the pass's object reference attachment keys: `(row id, key)`.
    pub async fn add_attachment_refs(
        &self,
        pass: &ObjectPass,
        refs: &[(String, String)],
    ) -> Result<()> {
        require_write(pass)?;
        if refs.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<&str> = refs.iter().map(|(_, k)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let (org, kind, id) = (pass.org_id(), pass.object_type().as_str(), pass.object_id());
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            // Referenced again, a queued attachment leaves the purge's queue. The queue comes
            // first: on PostgreSQL this waits for a claim of the same entry in progress.
            for chunk in keys.chunks(500) {
                let mut qb = sqlx::QueryBuilder::<DB>::new(
                    "DELETE FROM unreferenced_attachments WHERE NOT deleting AND org_id = ",
                );
                qb.push_bind(org).push(" AND key IN (");
                let mut list = qb.separated(", ");
                for key in chunk {
                    list.push_bind(*key);
                }
                qb.push(")");
                qb.build().execute(&mut *tx).await?;
            }
            for chunk in keys.chunks(500) {
                let mut qb = sqlx::QueryBuilder::<DB>::new(
                    "INSERT INTO attachment_refs (org_id, key, object_type, object_id, by_rows) ",
                );
                qb.push_values(chunk, |mut b, key| {
                    b.push_bind(org)
                        .push_bind(*key)
                        .push_bind(kind)
                        .push_bind(id)
                        .push_bind(true);
                });
                // A reference from before rows were recorded stays one (not `by_rows`).
                qb.push(" ON CONFLICT DO NOTHING");
                qb.build().execute(&mut *tx).await?;
            }
            for chunk in refs.chunks(500) {
                let mut qb = sqlx::QueryBuilder::<DB>::new(
                    "INSERT INTO attachment_row_refs (org_id, object_type, object_id, row_id, key) ",
                );
                qb.push_values(chunk, |mut b, (row, key)| {
                    b.push_bind(org)
                        .push_bind(kind)
                        .push_bind(id)
                        .push_bind(row.as_str())
                        .push_bind(key.as_str());
                });
                qb.push(" ON CONFLICT DO NOTHING");
                qb.build().execute(&mut *tx).await?;
            }
            // One the purge has claimed is being deleted: the rows are refused. Read last, so
            // that a claim committed while this transaction ran is seen.
            for chunk in keys.chunks(500) {
                let mut qb = sqlx::QueryBuilder::<DB>::new(
                    "SELECT key FROM unreferenced_attachments WHERE deleting AND org_id = ",
                );
                qb.push_bind(org).push(" AND key IN (");
                let mut list = qb.separated(", ");
                for key in chunk {
                    list.push_bind(*key);
                }
                qb.push(") LIMIT 1");
                let going: Option<String> =
                    qb.build_query_scalar().fetch_optional(&mut *tx).await?;
                if let Some(key) = going {
                    return Err(StoreError::Conflict(format!(
                        "attachment {key:?} is being deleted (no row referenced it after the \
                         deletion grace period); upload the file again under a new key"
                    )));
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The objects whose rows reference `key` (read to decide who may register it).
    pub async fn attachment_refs(
        &self,
        pass: &OrgPass,
        key: &str,
    ) -> Result<Vec<(ObjectType, String)>> {
        with_pool!(&self.read, |p, DB| {
            let found: Vec<(String, String)> = sqlx::query_as(
                "SELECT object_type, object_id FROM attachment_refs WHERE org_id = $1 AND key = $2 \
                 ORDER BY object_type, object_id LIMIT 100",
            )
            .bind(pass.org_id())
            .bind(key)
            .fetch_all(p)
            .await?;
            Ok(found
                .into_iter()
                .filter_map(|(t, id)| ObjectType::parse(&t).map(|t| (t, id)))
                .collect())
        })
    }

    /// An attachment's record, read to decide on its owner.
    pub async fn get_attachment(
        &self,
        pass: &OrgPass,
        key: &str,
    ) -> Result<Option<AttachmentRecord>> {
        with_pool!(&self.read, |p, DB| {
            let r: Option<AttachmentRow> = sqlx::query_as(
                "SELECT key, filename, content_type, status, object_type, object_id \
                     FROM attachments WHERE org_id = $1 AND key = $2",
            )
            .bind(pass.org_id())
            .bind(key)
            .fetch_optional(p)
            .await?;
            let Some((key, filename, content_type, status, object_type, object_id)) = r else {
                return Ok(None);
            };
            let status =
                serde_json::from_str(&status).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let owner = match (
                object_type.as_deref().and_then(ObjectType::parse),
                object_id,
            ) {
                (Some(t), Some(id)) => Some((t, id)),
                _ => None,
            };
            Ok(Some(AttachmentRecord {
                key,
                filename,
                content_type,
                status,
                owner,
            }))
        })
    }

    /// Registers an attachment owned by the pass's object (an existing record keeps its
    /// owner, so the caller decides on that owner first) and records its upload grant.
    pub async fn register_attachment(
        &self,
        pass: &ObjectPass,
        rec: &AttachmentRecord,
        grant: &UploadGrant<'_>,
        now: &str,
    ) -> Result<()> {
        require_write(pass)?;
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO attachments (org_id, key, filename, content_type, status, created, object_type, object_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (org_id, key) DO UPDATE SET filename = $3, content_type = $4, status = $5, \
                 object_type = COALESCE(attachments.object_type, $7), object_id = COALESCE(attachments.object_id, $8)",
            )
            .bind(pass.org_id())
            .bind(&rec.key)
            .bind(&rec.filename)
            .bind(&rec.content_type)
            .bind(rec.status.to_string())
            .bind(now)
            .bind(pass.object_type().as_str())
            .bind(pass.object_id())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO uploads (org_id, kind, key, grant_id, max_bytes, size_bytes, state, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, 0, 'pending', $6) \
                 ON CONFLICT (org_id, kind, key) DO UPDATE SET grant_id = $4, max_bytes = $5, \
                 expires_at = CASE WHEN uploads.state = 'stored' THEN NULL ELSE $6 END",
            )
            .bind(pass.org_id())
            .bind(grant.kind.as_str())
            .bind(grant.key)
            .bind(grant.grant_id)
            .bind(grant.max_bytes)
            .bind(grant.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn set_attachment_status(
        &self,
        pass: &ObjectPass,
        key: &str,
        status: &Value,
    ) -> Result<()> {
        require_write(pass)?;
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "UPDATE attachments SET status = $1 WHERE org_id = $2 AND key = $3 \
                 AND object_type = $4 AND object_id = $5",
            )
            .bind(status.to_string())
            .bind(pass.org_id())
            .bind(key)
            .bind(pass.object_type().as_str())
            .bind(pass.object_id())
            .execute(p)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("attachment"));
            }
            Ok(())
        })
    }

    /// Records an overflow upload grant (the pass: a write grant in the organization).
    pub async fn grant_overflow(&self, pass: &OrgPass, grant: &UploadGrant<'_>) -> Result<()> {
        require_org_write(pass)?;
        with_pool!(&self.write, |p, DB| {
            sqlx::query(
                "INSERT INTO uploads (org_id, kind, key, grant_id, max_bytes, size_bytes, state, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, 0, 'pending', $6)",
            )
            .bind(pass.org_id())
            .bind(grant.kind.as_str())
            .bind(grant.key)
            .bind(grant.grant_id)
            .bind(grant.max_bytes)
            .bind(grant.expires_at)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// Bytes of blobs the organization has stored.
    pub async fn blob_usage(&self, pass: &OrgPass) -> Result<i64> {
        with_pool!(&self.read, |p, DB| {
            Ok(sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM uploads WHERE org_id = $1",
            )
            .bind(pass.org_id())
            .fetch_one(p)
            .await?)
        })
    }

    /// Claims the one use of an upload grant; false when it was used already (or was
    /// replaced by a newer grant).
    pub async fn claim_upload(
        &self,
        pass: &GrantPass,
        kind: UploadKind,
        grant_id: &str,
    ) -> Result<bool> {
        let (org_id, key) = (pass.org_id(), pass.key());
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "UPDATE uploads SET grant_id = NULL, state = CASE WHEN state = 'stored' THEN 'stored' ELSE 'uploading' END \
                 WHERE org_id = $1 AND kind = $2 AND key = $3 AND grant_id = $4",
            )
            .bind(org_id)
            .bind(kind.as_str())
            .bind(key)
            .bind(grant_id)
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Ends a claimed upload: stored with its size (and, for overflow, the expiry by which it
    /// must be consumed), or, when `size` is `None`, failed (a stored blob stays as it was).
    pub async fn finish_upload(
        &self,
        pass: &GrantPass,
        kind: UploadKind,
        size: Option<i64>,
        expires_at: Option<i64>,
    ) -> Result<()> {
        let (org_id, key) = (pass.org_id(), pass.key());
        with_pool!(&self.write, |p, DB| {
            let q = match size {
                Some(_) => {
                    "UPDATE uploads SET state = 'stored', size_bytes = $4, expires_at = $5 \
                     WHERE org_id = $1 AND kind = $2 AND key = $3"
                }
                None => {
                    "UPDATE uploads SET state = CASE WHEN size_bytes > 0 THEN 'stored' ELSE 'pending' END, \
                     expires_at = CASE WHEN size_bytes > 0 THEN expires_at ELSE $5 END \
                     WHERE org_id = $1 AND kind = $2 AND key = $3 AND $4 IS NULL"
                }
            };
            sqlx::query(q)
                .bind(org_id)
                .bind(kind.as_str())
                .bind(key)
                .bind(size)
                .bind(expires_at)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    /// Claims a stored overflow batch for ingest; false when there is none (never uploaded,
    /// expired, or being consumed by another request).
    pub async fn claim_overflow(&self, pass: &OrgPass, key: &str) -> Result<bool> {
        require_org_write(pass)?;
        self.set_overflow_state(pass, key, "stored", "consuming")
            .await
    }

    /// Puts a claimed overflow batch back (its ingest failed and may be retried).
    pub async fn release_overflow(&self, pass: &OrgPass, key: &str) -> Result<()> {
        require_org_write(pass)?;
        self.set_overflow_state(pass, key, "consuming", "stored")
            .await
            .map(|_| ())
    }

    /// Removes an overflow batch its claimer has ingested.
    pub async fn consume_overflow(&self, pass: &OrgPass, key: &str) -> Result<()> {
        require_org_write(pass)?;
        with_pool!(&self.write, |p, DB| {
            sqlx::query(
                "DELETE FROM uploads WHERE org_id = $1 AND kind = 'overflow' AND key = $2 \
                 AND state = 'consuming'",
            )
            .bind(pass.org_id())
            .bind(key)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    async fn set_overflow_state(
        &self,
        pass: &OrgPass,
        key: &str,
        from: &str,
        to: &str,
    ) -> Result<bool> {
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "UPDATE uploads SET state = $1 WHERE org_id = $2 AND kind = 'overflow' AND key = $3 AND state = $4",
            )
            .bind(to)
            .bind(pass.org_id())
            .bind(key)
            .bind(from)
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Uploads whose grant went unused, or overflow batches left unconsumed, past their
    /// expiry (at most `limit`); one being uploaded or consumed gets an hour more, after
    /// which it was abandoned by a process that stopped.
    pub async fn expired_uploads(
        &self,
        _why: &SystemPass,
        now: i64,
        limit: i64,
    ) -> Result<Vec<ExpiredUpload>> {
        with_pool!(&self.read, |p, DB| {
            let found: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT org_id, kind, key FROM uploads WHERE \
                 (expires_at < $1 AND state IN ('pending', 'stored')) \
                 OR (expires_at < $1 - 3600 AND state IN ('uploading', 'consuming')) LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(p)
            .await?;
            Ok(found
                .into_iter()
                .filter_map(|(o, k, key)| UploadKind::parse(&k).map(|k| (o, k, key)))
                .collect())
        })
    }

    /// Forgets an upload whose blob is gone (consumed or expired).
    pub async fn remove_upload(
        &self,
        _why: &SystemPass,
        org_id: &str,
        kind: UploadKind,
        key: &str,
    ) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            sqlx::query("DELETE FROM uploads WHERE org_id = $1 AND kind = $2 AND key = $3")
                .bind(org_id)
                .bind(kind.as_str())
                .bind(key)
                .execute(p)
                .await?;
            Ok(())
        })
    }
}
