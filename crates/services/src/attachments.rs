//! Attachments and overflow uploads through signed URLs that point back at this server.
//!
//! Guarantees:
//! * An attachment belongs to the object whose rows referenced it when it was first
//!   registered (rows are logged before their attachments are uploaded; ingest records every
//!   `braintrust_attachment` reference). Registering it again, setting its status and
//!   uploading need `update` on that object, reading it needs `read`, so project boundaries
//!   and key scopes hold for attachments as for rows.
//! * A signed upload URL is checked before a byte of its body is read, is used once (its id is
//!   claimed in the store), and accepts at most the size bound into it: the declared
//!   `size_bytes` of an overflow batch, or `max_attachment_bytes`.
//! * An organization stores at most `org_blob_quota_bytes` of attachments and unconsumed
//!   overflow batches; an overflow batch not consumed within `upload_ttl_seconds` of its
//!   upload, and a grant never used, are removed by [`Services::expire_uploads`].

use crate::blobs::{BlobKind, Grant, Purpose, UploadLimit};
use crate::{Result, ServiceError, Services, random};
use holdfast_api::sdk::{
    AttachmentQuery, AttachmentStatusRequest, AttachmentUploadRequest, OverflowRequest,
};
use holdfast_core::authz::{GrantPass, ObjectPass, Permission, Principal, SystemPass};
use holdfast_store::{AttachmentRecord, UploadGrant, UploadKind};
use serde_json::{Value, json};

/// Most attachment references one request may carry.
pub const MAX_ATTACHMENT_REFS: usize = 10_000;

fn check_org(principal: &Principal, org_id: Option<&str>) -> Result<()> {
    match org_id {
        Some(o) if o != principal.org_id => {
            Err(ServiceError::NotFound(format!("organization {o:?}")))
        }
        _ => Ok(()),
    }
}

fn valid_key(key: &str) -> Result<&str> {
    if key.is_empty() || key.len() > 512 || key.starts_with("url:") {
        return Err(ServiceError::field(
            "key",
            "`key` must be 1 to 512 characters and not start with `url:`",
        ));
    }
    Ok(key)
}

/// Longest external attachment URL that is indexed (and so can be resolved).
pub const MAX_EXTERNAL_URL: usize = 1024;

/// How an external attachment's URL is filed among attachment references (uploaded
/// attachments are filed by their key, which cannot take this form).
fn external_ref(url: &str) -> String {
    format!("url:{url}")
}

/// The attachments a row references, added to `out`: the keys of uploaded ones
/// (`{"type": "braintrust_attachment", "key": ...}`) and the URLs of external ones
/// (`{"type": "external_attachment", "url": "s3://..."}`), anywhere in it.
pub fn attachment_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(m) => {
            match (
                m.get("type").and_then(Value::as_str),
                m.get("key").and_then(Value::as_str),
                m.get("url").and_then(Value::as_str),
            ) {
                (Some("braintrust_attachment"), Some(key), _) if !key.starts_with("url:") => {
                    out.push(key.to_owned());
                }
                (Some("external_attachment"), _, Some(url)) if url.len() <= MAX_EXTERNAL_URL => {
                    out.push(external_ref(url));
                }
                _ => {}
            }
            m.values().for_each(|v| attachment_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| attachment_refs(v, out)),
        _ => {}
    }
}

impl Services {
    fn signed_url(&self, base_url: &str, grant: Grant) -> Result<String> {
        Ok(format!("{base_url}/signed/{}", self.blobs.sign(&grant)?))
    }

    fn grant(
        &self,
        purpose: Purpose,
        kind: BlobKind,
        org_id: &str,
        key: &str,
        content_type: Option<&str>,
        upload: Option<UploadLimit>,
    ) -> Grant {
        Grant {
            purpose,
            kind,
            org_id: org_id.to_owned(),
            key: key.to_owned(),
            expires: self.clock.now().unix_timestamp() + self.limits.upload_ttl_seconds,
            content_type: content_type.map(str::to_owned),
            upload,
        }
    }

    /// Refuses a new grant while the organization is at its storage quota.
    async fn within_quota(&self, principal: &Principal) -> Result<()> {
        let used = self.store.blob_usage(&self.lookup(principal)?).await?;
        if used.max(0) as u64 >= self.limits.org_blob_quota_bytes {
            return Err(ServiceError::QuotaExceeded(format!(
                "the organization stores {used} bytes of attachments and overflow batches, \
                 its quota is {} bytes",
                self.limits.org_blob_quota_bytes
            )));
        }
        Ok(())
    }

    /// A pass for `permission` on the object that owns attachment `key`. A record without an
    /// owner (registered before owners were kept), or no record when `registering`, is decided
    /// on the objects whose rows reference the key: the first the caller may act on.
    async fn attachment_pass(
        &self,
        principal: &Principal,
        key: &str,
        permission: Permission,
        registering: bool,
    ) -> Result<(Option<AttachmentRecord>, ObjectPass)> {
        let lookup = self.lookup(principal)?;
        let record = self.store.get_attachment(&lookup, key).await?;
        if let Some((kind, id)) = record.as_ref().and_then(|r| r.owner.clone()) {
            let (_, pass) = self.object_pass(principal, kind, &id, permission).await?;
            return Ok((record, pass));
        }
        if record.is_none() && !registering {
            return Err(ServiceError::NotFound("attachment".into()));
        }
        let mut denial = None;
        for (kind, id) in self.store.attachment_refs(&lookup, key).await? {
            match self.object_pass(principal, kind, &id, permission).await {
                Ok((_, pass)) => return Ok((record, pass)),
                Err(e) => {
                    denial.get_or_insert(e);
                }
            }
        }
        Err(denial.unwrap_or_else(|| {
            ServiceError::NotFound(format!(
                "a row referencing attachment {key:?} (log the row that holds it first)"
            ))
        }))
    }

    /// `POST /attachment`: registers the attachment with its owner and returns a signed
    /// upload URL for it.
    pub async fn attachment_upload(
        &self,
        principal: &Principal,
        body: &AttachmentUploadRequest,
        base_url: &str,
    ) -> Result<Value> {
        check_org(principal, body.org_id.as_deref())?;
        let key = valid_key(&body.key)?;
        let filename = body.filename.as_deref().unwrap_or("attachment");
        let content_type = body
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        if filename.len() > 1024 || content_type.len() > 255 {
            return Err(ServiceError::bad(
                "`filename` is limited to 1024 bytes and `content_type` to 255",
            ));
        }
        let (_, pass) = self
            .attachment_pass(principal, key, Permission::Update, true)
            .await?;
        self.within_quota(principal).await?;
        let grant_id = random::uuid()?;
        let grant = self.grant(
            Purpose::Upload,
            BlobKind::Attachment,
            &principal.org_id,
            key,
            None,
            Some(UploadLimit {
                id: grant_id.clone(),
                max_bytes: self.limits.max_attachment_bytes,
            }),
        );
        let rec = AttachmentRecord {
            key: key.to_owned(),
            filename: filename.to_owned(),
            content_type: content_type.to_owned(),
            status: json!({"upload_status": "uploading"}),
            owner: None,
        };
        let upload = UploadGrant {
            kind: UploadKind::Attachment,
            key,
            grant_id: &grant_id,
            max_bytes: i64::try_from(self.limits.max_attachment_bytes).unwrap_or(i64::MAX),
            expires_at: grant.expires,
        };
        self.store
            .register_attachment(&pass, &rec, &upload, &self.now())
            .await?;
        let url = self.signed_url(base_url, grant)?;
        Ok(json!({"signedUrl": url, "headers": {}}))
    }

    /// `POST /attachment/status`.
    pub async fn attachment_status(
        &self,
        principal: &Principal,
        body: &AttachmentStatusRequest,
    ) -> Result<Value> {
        check_org(principal, body.org_id.as_deref())?;
        let key = valid_key(&body.key)?;
        let status = Value::Object(body.status.clone());
        if status.to_string().len() > 16 * 1024 {
            return Err(ServiceError::field(
                "status",
                "`status` is limited to 16 KiB",
            ));
        }
        let (_, pass) = self
            .attachment_pass(principal, key, Permission::Update, false)
            .await?;
        self.store
            .set_attachment_status(&pass, key, &status)
            .await?;
        Ok(json!({}))
    }

    /// `GET /attachment?key=...` (or `?url=...`): a signed download URL and the status.
    pub async fn attachment_download(
        &self,
        principal: &Principal,
        q: &AttachmentQuery,
        base_url: &str,
    ) -> Result<Value> {
        check_org(principal, q.org_id.as_deref())?;
        let key = match (&q.key, &q.url) {
            (Some(key), None) => key,
            (None, Some(url)) => {
                return self
                    .external_download(principal, url, q.content_type.as_deref(), base_url)
                    .await;
            }
            _ => {
                return Err(ServiceError::field(
                    "key",
                    "give either `key` (an uploaded attachment) or `url` (an external one)",
                ));
            }
        };
        let (record, _) = self
            .attachment_pass(principal, valid_key(key)?, Permission::Read, false)
            .await?;
        let rec = record.ok_or_else(|| ServiceError::NotFound("attachment".into()))?;
        let grant = self.grant(
            Purpose::Download,
            BlobKind::Attachment,
            &principal.org_id,
            key,
            Some(&rec.content_type),
            None,
        );
        let url = self.signed_url(base_url, grant)?;
        Ok(json!({"downloadUrl": url, "status": rec.status}))
    }

    /// An external attachment: only `s3://<bucket>/<prefix><object>` in the bucket configured
    /// for them, under the caller's organization's prefix, and only when a row the caller may
    /// read references that URL. The server never fetches anything else; the object is read
    /// when the signed URL is used.
    async fn external_download(
        &self,
        principal: &Principal,
        url: &str,
        content_type: Option<&str>,
        base_url: &str,
    ) -> Result<Value> {
        let Some((bucket, prefix)) = self.blobs.external_bucket(&principal.org_id) else {
            return Err(ServiceError::field(
                "url",
                "external attachments are not enabled on this server \
                 (set external_attachments_bucket)",
            ));
        };
        let object = url
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(b, o)| {
                *b == bucket
                    && o.len() > prefix.len()
                    && o.starts_with(prefix.as_str())
                    && url.len() <= MAX_EXTERNAL_URL
            })
            .map(|(_, o)| o)
            .ok_or_else(|| {
                ServiceError::field(
                    "url",
                    format!(
                        "only URLs of the form s3://{bucket}/{prefix}<object> (at most \
                         {MAX_EXTERNAL_URL} characters) resolve for this organization"
                    ),
                )
            })?;
        let lookup = self.lookup(principal)?;
        let mut readable = false;
        let mut denial = None;
        for (kind, id) in self
            .store
            .attachment_refs(&lookup, &external_ref(url))
            .await?
        {
            match self
                .object_pass(principal, kind, &id, Permission::Read)
                .await
            {
                Ok(_) => {
                    readable = true;
                    break;
                }
                Err(e) => {
                    denial.get_or_insert(e);
                }
            }
        }
        if !readable {
            return Err(denial.unwrap_or_else(|| {
                ServiceError::NotFound("a row referencing this external attachment".into())
            }));
        }
        let status = match self.blobs.external_size(object).await? {
            Some(size) if size <= self.limits.max_attachment_bytes => {
                json!({"upload_status": "done"})
            }
            Some(size) => json!({"upload_status": "error", "error_message": format!(
                "the object is {size} bytes; downloads through this server are limited to {}",
                self.limits.max_attachment_bytes)}),
            None => json!({"upload_status": "error",
                           "error_message": "the object does not exist in the bucket"}),
        };
        let grant = self.grant(
            Purpose::Download,
            BlobKind::External,
            &principal.org_id,
            object,
            content_type,
            None,
        );
        let url = self.signed_url(base_url, grant)?;
        Ok(json!({"downloadUrl": url, "status": status}))
    }

    /// `POST /logs3/overflow`: where to upload a batch too large for one request. The
    /// declared `size_bytes` is the most the URL accepts.
    pub async fn overflow_upload(
        &self,
        principal: &Principal,
        body: &OverflowRequest,
        base_url: &str,
    ) -> Result<Value> {
        let size = Some(body.size_bytes).filter(|s| *s > 0).ok_or_else(|| {
            ServiceError::field("size_bytes", "`size_bytes` must be a positive integer")
        })?;
        if size > self.limits.max_overflow_bytes {
            return Err(ServiceError::TooLarge(format!(
                "overflow payloads are limited to {} bytes",
                self.limits.max_overflow_bytes
            )));
        }
        let pass = self.org_wide_pass(principal, Permission::Create).await?;
        self.within_quota(principal).await?;
        let (key, grant_id) = (random::uuid()?, random::uuid()?);
        let grant = self.grant(
            Purpose::Upload,
            BlobKind::Overflow,
            &principal.org_id,
            &key,
            None,
            Some(UploadLimit {
                id: grant_id.clone(),
                max_bytes: size,
            }),
        );
        let upload = UploadGrant {
            kind: UploadKind::Overflow,
            key: &key,
            grant_id: &grant_id,
            max_bytes: i64::try_from(size).unwrap_or(i64::MAX),
            expires_at: grant.expires,
        };
        self.store.grant_overflow(&pass, &upload).await?;
        let url = self.signed_url(base_url, grant)?;
        Ok(json!({"method": "PUT", "signedUrl": url, "headers": {}, "key": key}))
    }

    /// Checks a signed upload URL; the caller reads no body before this succeeds.
    pub fn upload_grant(&self, token: &str) -> Result<Grant> {
        self.blobs
            .verify(token, Purpose::Upload, self.clock.now().unix_timestamp())
    }

    /// An unauthenticated PUT to a signed upload URL, already checked by
    /// [`Services::upload_grant`]: claims the grant's one use, then streams the body into
    /// place within the grant's size and the organization's quota.
    pub async fn signed_upload<S, C, E>(
        &self,
        grant: &Grant,
        body: S,
        from: Option<&str>,
    ) -> Result<u64>
    where
        S: futures::Stream<Item = std::result::Result<C, E>> + Unpin,
        C: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        let limit = grant
            .upload
            .as_ref()
            .ok_or_else(|| ServiceError::Forbidden("invalid or expired signed URL".into()))?;
        let pass = GrantPass::verified(&grant.org_id, &grant.key);
        let kind = grant
            .kind
            .upload_kind()
            .ok_or_else(|| ServiceError::Forbidden("invalid or expired signed URL".into()))?;
        if !self.store.claim_upload(&pass, kind, &limit.id).await? {
            return Err(ServiceError::Forbidden(
                "this upload URL has been used already".into(),
            ));
        }
        // Audited before a byte is stored, and again with the outcome.
        self.audit_transfer(
            grant,
            "signed upload",
            json!({"max_bytes": limit.max_bytes, "from": from}),
            true,
        )
        .await?;
        let used = self.store.blob_usage(&pass.org_lookup()).await?.max(0) as u64;
        let room = self.limits.org_blob_quota_bytes.saturating_sub(used);
        let max = limit.max_bytes.min(room);
        let now = self.clock.now().unix_timestamp();
        let stored = self
            .blobs
            .put_stream(&grant.org_id, grant.kind, &grant.key, body, max)
            .await;
        let (size, expires) = match &stored {
            Ok(n) => (
                Some(i64::try_from(*n).unwrap_or(i64::MAX)),
                (grant.kind == BlobKind::Overflow).then_some(now + self.limits.upload_ttl_seconds),
            ),
            Err(_) => (None, Some(grant.expires)),
        };
        self.store.finish_upload(&pass, kind, size, expires).await?;
        let outcome = match &stored {
            Ok(n) => json!({"bytes": n, "from": from}),
            Err(e) => json!({"error": e.to_string(), "from": from}),
        };
        self.audit_transfer(grant, "signed upload done", outcome, false)
            .await?;
        match stored {
            Err(ServiceError::TooLarge(_)) if room < limit.max_bytes => {
                Err(ServiceError::QuotaExceeded(format!(
                    "the upload would take the organization past its quota of {} bytes",
                    self.limits.org_blob_quota_bytes
                )))
            }
            other => other,
        }
    }

    /// An unauthenticated GET of a signed download URL: the content type, and the blob as a
    /// stream of pieces (see [`crate::blobs::BlobStore::get_stream`]).
    pub async fn signed_download(
        &self,
        token: &str,
        from: Option<&str>,
    ) -> Result<(
        String,
        tokio::sync::mpsc::Receiver<std::result::Result<Vec<u8>, String>>,
    )> {
        let grant =
            self.blobs
                .verify(token, Purpose::Download, self.clock.now().unix_timestamp())?;
        let bytes = self
            .blobs
            .get_stream(
                &grant.org_id,
                grant.kind,
                &grant.key,
                self.limits.max_attachment_bytes,
            )
            .await?;
        self.audit_transfer(&grant, "signed download", json!({"from": from}), false)
            .await?;
        // Only a plain `type/subtype` is echoed back; anything else is served as bytes.
        let content_type = grant
            .content_type
            .filter(|t| {
                t.len() <= 127
                    && t.split_once('/')
                        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b))
            })
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        Ok((content_type, bytes))
    }

    /// Records a transfer through a signed URL: whoever holds the URL acts, so the entry
    /// names the organization, the blob and the grant, not a user. `durable`: written before
    /// this returns (before an upload stores anything).
    async fn audit_transfer(
        &self,
        grant: &Grant,
        action: &str,
        mut detail: Value,
        durable: bool,
    ) -> Result<()> {
        crate::admin::set(detail.as_object_mut(), "by", json!("signed url"));
        crate::admin::set(detail.as_object_mut(), "expires", json!(grant.expires));
        let entry = holdfast_store::NewAuditEntry {
            at: self.now(),
            org_id: Some(grant.org_id.clone()),
            actor_id: None,
            key_id: None,
            action: action.to_owned(),
            object_type: Some(
                match grant.kind {
                    BlobKind::Attachment => "attachment",
                    BlobKind::Overflow => "overflow",
                    BlobKind::External => "external attachment",
                }
                .to_owned(),
            ),
            object_id: Some(grant.key.clone()),
            detail,
        };
        if durable {
            self.audit.record_durable(entry).await
        } else {
            self.audit.record(entry).await;
            Ok(())
        }
    }

    /// Removes unused grants and unconsumed overflow batches past their
    /// blobs; returns how many. The server runs it every half `upload_ttl_seconds`, at least
    /// once a minute.
    pub async fn expire_uploads(&self) -> Result<usize> {
        let why = SystemPass::new("removing expired uploads");
        let now = self.clock.now().unix_timestamp();
        let mut removed = 0;
        loop {
            let batch = self.store.expired_uploads(&why, now, 500).await?;
            if batch.is_empty() {
                return Ok(removed);
            }
            for (org_id, kind, key) in batch {
                let blob_kind = match kind {
                    UploadKind::Attachment => BlobKind::Attachment,
                    UploadKind::Overflow => BlobKind::Overflow,
                };
                // A pending attachment grant has no new blob; an attachment stored earlier
                // and registered again keeps its blob (its expiry is cleared).
                if kind == UploadKind::Overflow {
                    self.blobs.delete(&org_id, blob_kind, &key).await?;
                }
                self.store.remove_upload(&why, &org_id, kind, &key).await?;
                removed += 1;
            }
        }
    }
}
