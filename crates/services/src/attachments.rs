//! Attachments and overflow uploads through signed URLs that point back at this server.

use crate::blobs::{BlobKind, Grant, Purpose};
use crate::objects::{body_obj as obj, opt_str};
use crate::{Result, ServiceError, Services, random};
use holdfast_core::authz::{Permission, Principal};
use holdfast_store::AttachmentRecord;
use serde_json::{Value, json};

/// Signed URLs stay valid this long.
pub const SIGNED_URL_SECONDS: i64 = 3600;

fn check_org(principal: &Principal, org_id: Option<&str>) -> Result<()> {
    match org_id {
        Some(o) if o != principal.org_id => {
            Err(ServiceError::NotFound(format!("organization {o:?}")))
        }
        _ => Ok(()),
    }
}

fn valid_key(key: &str) -> Result<&str> {
    if key.is_empty() || key.len() > 512 {
        return Err(ServiceError::bad("`key` must be 1 to 512 characters"));
    }
    Ok(key)
}

impl Services {
    fn signed_url(
        &self,
        base_url: &str,
        purpose: Purpose,
        kind: BlobKind,
        org_id: &str,
        key: &str,
        content_type: Option<&str>,
    ) -> Result<String> {
        let expires = self.clock.now().unix_timestamp() + SIGNED_URL_SECONDS;
        let grant = Grant {
            purpose,
            kind,
            org_id: org_id.to_owned(),
            key: key.to_owned(),
            expires,
            content_type: content_type.map(str::to_owned),
        };
        Ok(format!("{base_url}/signed/{}", self.blobs.sign(&grant)?))
    }

    /// `POST /attachment`: records the attachment and returns a signed upload URL.
    pub async fn attachment_upload(
        &self,
        principal: &Principal,
        body: &Value,
        base_url: &str,
    ) -> Result<Value> {
        let body = obj(body)?;
        check_org(principal, opt_str(body, "org_id")?)?;
        let key = valid_key(
            opt_str(body, "key")?.ok_or_else(|| ServiceError::bad("`key` is required"))?,
        )?;
        let rec = AttachmentRecord {
            key: key.to_owned(),
            filename: opt_str(body, "filename")?
                .unwrap_or("attachment")
                .to_owned(),
            content_type: opt_str(body, "content_type")?
                .unwrap_or("application/octet-stream")
                .to_owned(),
            status: json!({"upload_status": "uploading"}),
        };
        let org = self.org_wide_pass(principal, Permission::Create).await?;
        self.store.put_attachment(&org, &rec, &self.now()).await?;
        let url = self.signed_url(
            base_url,
            Purpose::Upload,
            BlobKind::Attachment,
            &principal.org_id,
            key,
            None,
        )?;
        Ok(json!({"signedUrl": url, "headers": {}}))
    }

    /// `POST /attachment/status`.
    pub async fn attachment_status(&self, principal: &Principal, body: &Value) -> Result<Value> {
        let body = obj(body)?;
        check_org(principal, opt_str(body, "org_id")?)?;
        let key = valid_key(
            opt_str(body, "key")?.ok_or_else(|| ServiceError::bad("`key` is required"))?,
        )?;
        let status = body
            .get("status")
            .filter(|s| s.is_object())
            .ok_or_else(|| ServiceError::bad("`status` must be an object"))?;
        let org = self.org_wide_pass(principal, Permission::Update).await?;
        self.store.set_attachment_status(&org, key, status).await?;
        Ok(json!({}))
    }

    /// `GET /attachment?key=...`: a signed download URL and the upload status.
    pub async fn attachment_download(
        &self,
        principal: &Principal,
        key: &str,
        org_id: Option<&str>,
        base_url: &str,
    ) -> Result<Value> {
        check_org(principal, org_id)?;
        let org = self.org_wide_pass(principal, Permission::Read).await?;
        let rec = self.store.get_attachment(&org, valid_key(key)?).await?;
        let url = self.signed_url(
            base_url,
            Purpose::Download,
            BlobKind::Attachment,
            &principal.org_id,
            key,
            Some(&rec.content_type),
        )?;
        Ok(json!({"downloadUrl": url, "status": rec.status}))
    }

    /// `POST /logs3/overflow`: where to upload a batch too large for one request.
    pub async fn overflow_upload(
        &self,
        principal: &Principal,
        body: &Value,
        base_url: &str,
    ) -> Result<Value> {
        let body = obj(body)?;
        let size = body.get("size_bytes").and_then(Value::as_u64).unwrap_or(0);
        if size as usize > self.limits.max_body_bytes {
            return Err(ServiceError::TooLarge(format!(
                "overflow payloads are limited to {} bytes",
                self.limits.max_body_bytes
            )));
        }
        self.org_wide_pass(principal, Permission::Create).await?;
        let key = random::uuid()?;
        let url = self.signed_url(
            base_url,
            Purpose::Upload,
            BlobKind::Overflow,
            &principal.org_id,
            &key,
            None,
        )?;
        Ok(json!({"method": "PUT", "signedUrl": url, "headers": {}, "key": key}))
    }

    /// An unauthenticated PUT to a signed upload URL.
    pub async fn signed_upload(&self, token: &str, bytes: &[u8]) -> Result<()> {
        let grant = self
            .blobs
            .verify(token, Purpose::Upload, self.clock.now().unix_timestamp())?;
        self.blobs
            .put(&grant.org_id, grant.kind, &grant.key, bytes)
            .await
    }

    /// An unauthenticated GET of a signed download URL: (content type, bytes).
    pub async fn signed_download(&self, token: &str) -> Result<(String, Vec<u8>)> {
        let grant =
            self.blobs
                .verify(token, Purpose::Download, self.clock.now().unix_timestamp())?;
        let bytes = self
            .blobs
            .get(&grant.org_id, grant.kind, &grant.key)
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
}
