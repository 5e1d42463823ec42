//! Provider secrets (`/v1/ai_secret`) and environment variables (`/v1/env_var`).
//!
//! A value is accepted on create and update, sealed by the vault at once, and never returned:
//! answers carry only `preview_secret` (its last four characters when it is long enough to
//! spare them). Administering secrets needs a grant on `ai_secret` at organization level
//! (Owners have it; Engineers and Viewers do not). Environment variables belong to the
//! organization or to one of its projects (which must exist and be readable).

use crate::{Result, ServiceError, Services, random};
use holdfast_api::SecretValue;
use holdfast_api::admin::{DeleteSecretByName, PatchSecret, PutSecret, SecretListQuery};
use holdfast_core::authz::{Kind, OrgPass, Permission, Principal};
use holdfast_store::SecretRecord;
use serde_json::{Map, Value, json};

/// Which of the two resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    AiSecret,
    EnvVar,
}

impl SecretKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::AiSecret => "ai_secret",
            Self::EnvVar => "env_var",
        }
    }
    /// The body field that carries the value.
    fn value_field(self) -> &'static str {
        match self {
            Self::AiSecret => "secret",
            Self::EnvVar => "value",
        }
    }
}

/// Largest accepted secret value.
const MAX_SECRET_BYTES: usize = 64 * 1024;

fn preview(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() >= 16 {
        let tail: String = chars.iter().skip(chars.len() - 4).collect();
        format!("••••{tail}")
    } else {
        "••••".into()
    }
}

fn secret_json(kind: SecretKind, s: &SecretRecord) -> Value {
    match kind {
        SecretKind::AiSecret => json!({
            "id": s.id, "org_id": s.org_id, "name": s.name, "type": s.secret_type,
            "metadata": s.metadata, "preview_secret": s.preview, "created": s.created,
            "updated_at": s.updated_at, "secret_updated_at": s.secret_updated_at,
            "secret_updated_by_user_id": s.secret_updated_by,
        }),
        SecretKind::EnvVar => json!({
            "id": s.id, "object_type": s.object_type, "object_id": s.object_id, "name": s.name,
            "created": s.created, "used": null, "secret_type": s.secret_type,
            "secret_category": "env_var", "preview_secret": s.preview,
        }),
    }
}

impl Services {
    async fn secret_pass(&self, principal: &Principal, permission: Permission) -> Result<OrgPass> {
        self.org_grant(principal, permission, Kind::AiSecret).await
    }

    /// The object an env var belongs to, checked; `organization` for AI secrets.
    async fn secret_owner(
        &self,
        principal: &Principal,
        kind: SecretKind,
        object_type: Option<&str>,
        object_id: Option<&str>,
    ) -> Result<(String, String)> {
        if kind == SecretKind::AiSecret {
            return Ok(("organization".into(), principal.org_id.clone()));
        }
        match (object_type, object_id) {
            (Some("organization"), id) => {
                if id.is_some_and(|i| i != principal.org_id) {
                    return Err(ServiceError::NotFound("organization".into()));
                }
                Ok(("organization".into(), principal.org_id.clone()))
            }
            (Some("project"), Some(id)) => {
                let (p, _) = self
                    .project_pass(principal, id, Permission::Read, Kind::Project)
                    .await?;
                Ok(("project".into(), p.id))
            }
            _ => Err(ServiceError::bad(
                "`object_type` must be \"organization\" or \"project\" (with `object_id`)",
            )),
        }
    }

    /// The value field of this kind (`secret` or `value`), within its size.
    fn secret_value<'a>(
        kind: SecretKind,
        secret: Option<&'a SecretValue>,
        value: Option<&'a SecretValue>,
    ) -> Result<Option<&'a str>> {
        let field = kind.value_field();
        let v = match kind {
            SecretKind::AiSecret => secret,
            SecretKind::EnvVar => value,
        }
        .map(SecretValue::expose);
        if v.is_some_and(|v| v.len() > MAX_SECRET_BYTES) {
            return Err(ServiceError::TooLarge(format!(
                "`{field}` is larger than {MAX_SECRET_BYTES} bytes"
            )));
        }
        Ok(v)
    }

    fn metadata(m: &Option<Option<Map<String, Value>>>) -> Option<Value> {
        m.as_ref()
            .map(|m| m.clone().map_or(Value::Null, Value::Object))
    }

    /// `POST` (create; an existing name is returned unchanged) or `PUT` (create or replace).
    pub async fn put_secret(
        &self,
        principal: &Principal,
        kind: SecretKind,
        body: &PutSecret,
        replace: bool,
    ) -> Result<Value> {
        let pass = self.secret_pass(principal, Permission::Create).await?;
        if replace {
            self.secret_pass(principal, Permission::Update).await?;
        }
        let name = Some(body.name.as_str())
            .filter(|n| !n.trim().is_empty() && n.len() <= 256)
            .ok_or_else(|| {
                ServiceError::field("name", "`name` is required (1 to 256 characters)")
            })?;
        let value = Self::secret_value(kind, body.secret.as_ref(), body.value.as_ref())?;
        if kind == SecretKind::EnvVar && value.is_none() {
            return Err(ServiceError::field("value", "`value` is required"));
        }
        let (object_type, object_id) = self
            .secret_owner(
                principal,
                kind,
                body.object_type.as_deref(),
                body.object_id.as_deref(),
            )
            .await?;
        let existing = self
            .store
            .list_secrets(&pass, kind.as_str(), Some((&object_type, &object_id)))
            .await?
            .into_iter()
            .find(|s| s.name == name);
        if let Some(old) = &existing
            && !replace
        {
            return Ok(secret_json(kind, old));
        }
        let now = self.now();
        let id = existing
            .as_ref()
            .map_or_else(random::uuid, |e| Ok(e.id.clone()))?;
        let secret_type = match &body.secret_type {
            Some(t) => Some(t.clone()),
            None => existing.as_ref().and_then(|e| e.secret_type.clone()),
        };
        let metadata = Self::metadata(&body.metadata)
            .or_else(|| existing.as_ref().map(|e| e.metadata.clone()))
            .unwrap_or(Value::Null);
        let (dek_version, ciphertext, preview_text, secret_updated_at, by) = match value {
            Some(v) => {
                let (dv, ct) = self
                    .vault
                    .seal(&self.store, &pass, &id, "value", v.as_bytes(), &now)
                    .await?;
                (
                    dv,
                    ct,
                    preview(v),
                    now.clone(),
                    Some(principal.user_id.clone()),
                )
            }
            None => match &existing {
                Some(e) => (
                    e.dek_version,
                    e.ciphertext.clone(),
                    e.preview.clone(),
                    e.secret_updated_at.clone(),
                    e.secret_updated_by.clone(),
                ),
                None => {
                    // An AI secret may be created without a value (set later).
                    let (dv, ct) = self
                        .vault
                        .seal(&self.store, &pass, &id, "value", b"", &now)
                        .await?;
                    (dv, ct, String::new(), now.clone(), None)
                }
            },
        };
        let rec = SecretRecord {
            id,
            org_id: principal.org_id.clone(),
            kind: kind.as_str().to_owned(),
            object_type,
            object_id,
            name: name.to_owned(),
            secret_type,
            metadata,
            preview: preview_text,
            dek_version,
            ciphertext,
            created: existing.as_ref().map_or(now.clone(), |e| e.created.clone()),
            updated_at: now,
            secret_updated_at,
            secret_updated_by: by,
        };
        match &existing {
            Some(_) => self.store.update_secret(&pass, &rec).await?,
            None => self.store.insert_secret(&pass, &rec).await?,
        }
        let out = secret_json(kind, &rec);
        principal.trail.change(json!({
            if existing.is_some() { "replaced" } else { "created" }: kind.as_str(),
            "id": rec.id, "name": rec.name, "value_changed": value.is_some(),
        }));
        Ok(out)
    }

    pub async fn list_secrets(
        &self,
        principal: &Principal,
        kind: SecretKind,
        q: &SecretListQuery,
    ) -> Result<Vec<Value>> {
        let pass = self.secret_pass(principal, Permission::Read).await?;
        let object = match (&q.object_type, &q.object_id) {
            (Some(t), Some(i)) => Some((t.as_str(), i.as_str())),
            _ => None,
        };
        let name_filter = q
            .ai_secret_name
            .as_ref()
            .or(q.env_var_name.as_ref())
            .or(q.name.as_ref());
        let type_filter = q.ai_secret_type.as_ref();
        Ok(self
            .store
            .list_secrets(&pass, kind.as_str(), object)
            .await?
            .iter()
            .filter(|s| name_filter.is_none_or(|n| &s.name == n))
            .filter(|s| type_filter.is_none_or(|t| s.secret_type.as_ref() == Some(t)))
            .map(|s| secret_json(kind, s))
            .collect())
    }

    pub async fn get_secret(
        &self,
        principal: &Principal,
        kind: SecretKind,
        id: &str,
    ) -> Result<Value> {
        let pass = self.secret_pass(principal, Permission::Read).await?;
        Ok(secret_json(
            kind,
            &self.store.get_secret(&pass, kind.as_str(), id).await?,
        ))
    }

    /// `PATCH`: name, type, metadata, and the value.
    pub async fn patch_secret(
        &self,
        principal: &Principal,
        kind: SecretKind,
        id: &str,
        body: &PatchSecret,
    ) -> Result<Value> {
        let pass = self.secret_pass(principal, Permission::Update).await?;
        let old = self.store.get_secret(&pass, kind.as_str(), id).await?;
        let mut rec = old.clone();
        let now = self.now();
        if let Some(n) = &body.name {
            if n.trim().is_empty() || n.len() > 256 {
                return Err(ServiceError::field(
                    "name",
                    "`name` must be 1 to 256 characters",
                ));
            }
            rec.name.clone_from(n);
        }
        if let Some(t) = &body.secret_type {
            rec.secret_type = Some(t.clone());
        }
        if let Some(m) = Self::metadata(&body.metadata) {
            rec.metadata = m;
        }
        let value = Self::secret_value(kind, body.secret.as_ref(), body.value.as_ref())?;
        if let Some(v) = value {
            let (dv, ct) = self
                .vault
                .seal(&self.store, &pass, &rec.id, "value", v.as_bytes(), &now)
                .await?;
            rec.dek_version = dv;
            rec.ciphertext = ct;
            rec.preview = preview(v);
            rec.secret_updated_at.clone_from(&now);
            rec.secret_updated_by = Some(principal.user_id.clone());
        }
        rec.updated_at = now;
        self.store.update_secret(&pass, &rec).await?;
        principal.trail.change(json!({
            "patched": kind.as_str(), "id": rec.id,
            "before": {"name": old.name, "type": old.secret_type},
            "after": {"name": rec.name, "type": rec.secret_type}, "value_changed": value.is_some(),
        }));
        Ok(secret_json(kind, &rec))
    }

    pub async fn delete_secret(
        &self,
        principal: &Principal,
        kind: SecretKind,
        id: &str,
    ) -> Result<Value> {
        let pass = self.secret_pass(principal, Permission::Delete).await?;
        let gone = self.store.delete_secret(&pass, kind.as_str(), id).await?;
        principal
            .trail
            .change(json!({"deleted": kind.as_str(), "id": gone.id, "name": gone.name}));
        Ok(secret_json(kind, &gone))
    }

    /// `DELETE /v1/ai_secret` with `{name, org_name}`; `DELETE /v1/env_var` with `{name,
    /// object_type, object_id}`.
    pub async fn delete_secret_by_name(
        &self,
        principal: &Principal,
        kind: SecretKind,
        b: &DeleteSecretByName,
    ) -> Result<Value> {
        let name = &b.name;
        if let Some(org) = &b.org_name {
            let mine = self.store.get_org(&self.lookup(principal)?).await?;
            if &mine.name != org {
                return Err(ServiceError::NotFound("organization".into()));
            }
        }
        let pass = self.secret_pass(principal, Permission::Delete).await?;
        let (object_type, object_id) = self
            .secret_owner(
                principal,
                kind,
                b.object_type.as_deref(),
                b.object_id.as_deref(),
            )
            .await?;
        let found = self
            .store
            .list_secrets(&pass, kind.as_str(), Some((&object_type, &object_id)))
            .await?
            .into_iter()
            .find(|s| &s.name == name)
            .ok_or_else(|| ServiceError::NotFound(format!("{} {name:?}", kind.as_str())))?;
        self.delete_secret(principal, kind, &found.id).await
    }
}
