//! API keys and service tokens: made, listed, rotated and revoked, never wider than the
//! key that asks.

use super::{DEFAULT_ROTATION_GRACE_SECONDS, Entity, MAX_ROTATION_GRACE_SECONDS};
use crate::{Result, ServiceError, Services, random};
use holdfast_api::ShownOnce;
use holdfast_api::admin::{
    ApiKey, CreateKey, CreateServiceToken, CreatedKey, KeyUsage, RotateKey, RotatedFrom,
};
use holdfast_core::authz::{self, Capability, KeyScope, Kind, OrgPass, Permission, Principal};
use holdfast_core::clock::{format_timestamp, parse_timestamp};
use holdfast_store::{ApiKeyRecord, UserInfo};
use secrecy::ExposeSecret;
use serde_json::json;
use std::collections::HashMap;

fn key_json(k: &ApiKeyRecord, user: Option<&UserInfo>) -> ApiKey {
    ApiKey {
        id: k.id.clone(),
        name: k.name.clone(),
        preview_name: k.preview_name.clone(),
        created: k.created.clone(),
        expires_at: k.expires_at.clone(),
        revoked_at: k.revoked_at.clone(),
        user_id: k.user_id.clone(),
        user_email: user.map(|u| u.email.clone()),
        user_given_name: user.and_then(|u| u.given_name.clone()),
        user_family_name: user.and_then(|u| u.family_name.clone()),
        org_id: k.org_id.clone(),
        project_ids: k.project_ids.clone(),
        capability: k.capability.clone(),
        last_used_at: k.last_used_at.clone(),
        last_used_from: k.last_used_from.clone(),
        usage: None,
    }
}

/// A new key's reply: its record and, this once, its secret.
fn created(record: ApiKey, secret: &str) -> CreatedKey {
    CreatedKey {
        record,
        key: ShownOnce(secret.to_owned()),
        rotated_from: None,
        service_account_id: None,
        service_account_email: None,
        service_account_name: None,
    }
}

/// What a new key asks for: its projects, capability and expiry.
struct KeyRequest<'a> {
    project_ids: Option<&'a [String]>,
    capability: Option<&'a str>,
    expires_at: Option<&'a str>,
}

impl Services {
    // ---- API keys ----

    /// The scope and expiry a new key asks for, checked to be no wider than the key the
    /// caller uses.
    async fn new_key_scope(
        &self,
        principal: &Principal,
        wanted: KeyRequest<'_>,
    ) -> Result<(KeyScope, Option<String>)> {
        let projects = wanted.project_ids.map(<[String]>::to_vec);
        let capability = match wanted.capability {
            None => Capability::Full,
            Some(c) => Capability::parse(c).ok_or_else(|| {
                ServiceError::field(
                    "capability",
                    "`capability` must be \"ingest\", \"read\" or \"full\"",
                )
            })?,
        };
        let caller = &principal.scope;
        if caller.capability != Capability::Full {
            return Err(ServiceError::Forbidden(
                "only a key with full capability can create keys".into(),
            ));
        }
        let scope = match (&caller.projects, projects) {
            (Some(mine), None) => KeyScope {
                projects: Some(mine.clone()),
                capability,
            },
            (Some(mine), Some(wanted)) if wanted.iter().any(|p| !mine.contains(p)) => {
                return Err(ServiceError::Forbidden(
                    "a key cannot reach projects the calling key cannot".into(),
                ));
            }
            (_, projects) => KeyScope {
                projects,
                capability,
            },
        };
        if let Some(ps) = &scope.projects {
            if ps.is_empty() {
                return Err(ServiceError::field(
                    "project_ids",
                    "`project_ids` must not be empty",
                ));
            }
            // A project that does not exist and one the caller may not read answer alike.
            for p in ps {
                self.project_pass(principal, p, Permission::Read, Kind::Project)
                    .await
                    .map_err(|_| {
                        ServiceError::field(
                            "project_ids",
                            format!("no project {p:?} that this credential reads"),
                        )
                    })?;
            }
        }
        let expires_at = match wanted.expires_at {
            None => None,
            Some(t) => Some(parse_timestamp(t).map(format_timestamp).ok_or_else(|| {
                ServiceError::field("expires_at", "field `expires_at` must be an RFC 3339 time")
            })?),
        };
        if let Some(t) = &expires_at
            && parse_timestamp(t).is_some_and(|t| t <= self.clock.now())
        {
            return Err(ServiceError::field(
                "expires_at",
                "`expires_at` is in the past",
            ));
        }
        Ok((scope, self.no_later_than_caller(principal, expires_at)))
    }

    /// A new key's expiry: never after the calling key's, and the calling key's when none is
    /// asked for.
    fn no_later_than_caller(
        &self,
        principal: &Principal,
        wanted: Option<String>,
    ) -> Option<String> {
        let Some(cap) = principal.expires_at else {
            return wanted;
        };
        let wanted_at = wanted
            .as_deref()
            .and_then(parse_timestamp)
            .map(|t| t.unix_timestamp());
        match wanted_at {
            Some(w) if w <= cap => wanted,
            _ => time::OffsetDateTime::from_unix_timestamp(cap)
                .ok()
                .map(format_timestamp),
        }
    }

    /// A key narrowed to some projects or to reading may act on itself only, never on its
    /// user's other keys.
    fn acts_on_own_key(principal: &Principal, key_id: &str) -> Result<()> {
        let narrowed =
            principal.scope.projects.is_some() || principal.scope.capability != Capability::Full;
        if narrowed && key_id != principal.key_id {
            return Err(ServiceError::Forbidden(
                "a key limited to some projects or capabilities acts on no key but itself".into(),
            ));
        }
        Ok(())
    }

    /// Creates a key for the caller; the token is in the answer and nowhere else.
    pub async fn create_own_key(
        &self,
        principal: &Principal,
        body: &CreateKey,
    ) -> Result<CreatedKey> {
        let name = body.name.clone().unwrap_or_else(|| "api key".into());
        let wanted = KeyRequest {
            project_ids: body.project_ids.as_deref(),
            capability: body.capability.as_deref(),
            expires_at: body.expires_at.as_deref(),
        };
        let (scope, expires_at) = self.new_key_scope(principal, wanted).await?;
        let key = self.keys.mint(
            &principal.org_id,
            &principal.user_id,
            &name,
            expires_at,
            &scope,
        )?;
        self.store
            .insert_own_key(&self.lookup(principal)?, &key.record)
            .await?;
        let out = key_json(&key.record, None);
        principal.trail.change(json!({"key_created": out}));
        Ok(created(out, key.token.expose_secret()))
    }

    async fn visible_keys(&self, principal: &Principal) -> Result<Vec<ApiKeyRecord>> {
        Self::not_ingest_only(principal)?;
        let policy = self.policy(principal).await?;
        let all = authz::org_grant(principal, &policy, Permission::Read, Kind::OrgMember);
        let pass = match all {
            Ok(p) => p,
            Err(_) => self.lookup(principal)?,
        };
        Ok(self.store.org_keys(&pass, pass.grant().is_some()).await?)
    }

    pub async fn list_keys(&self, principal: &Principal, service: bool) -> Result<Vec<ApiKey>> {
        if service {
            self.org_grant(principal, Permission::Read, Kind::OrgMember)
                .await?;
        }
        let users = self.store.list_users(&self.lookup(principal)?).await?;
        Ok(self
            .visible_keys(principal)
            .await?
            .iter()
            .filter_map(|k| {
                let u = users.iter().find(|u| u.id == k.user_id);
                let is_service = u.is_some_and(|u| u.kind == "service");
                (is_service == service).then(|| key_json(k, u))
            })
            .collect())
    }

    /// One key with its activity: requests per day (including uses not yet written).
    pub async fn get_key(&self, principal: &Principal, id: &str) -> Result<ApiKey> {
        let key = self
            .visible_keys(principal)
            .await?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| ServiceError::NotFound("api key".into()))?;
        let users = self.store.list_users(&self.lookup(principal)?).await?;
        let usage = self.store.key_usage(&self.lookup(principal)?, id).await?;
        let mut out = key_json(&key, users.iter().find(|u| u.id == key.user_id));
        out.usage = Some(self.with_pending(id, usage));
        Ok(out)
    }

    /// The keys [`Self::list_keys`] gives (not service keys), newest first, the `with_usage`
    /// newest of them with their requests on their `days` most recent days of use (read at
    /// once for all of them, with the uses not yet written).
    pub async fn list_keys_with_usage(
        &self,
        principal: &Principal,
        with_usage: usize,
        days: i64,
    ) -> Result<Vec<ApiKey>> {
        let mut keys = self.list_keys(principal, false).await?;
        keys.sort_by(|a, b| b.created.cmp(&a.created));
        let ids: Vec<&str> = keys
            .iter()
            .take(with_usage)
            .map(|k| k.id.as_str())
            .collect();
        let found = self
            .store
            .keys_usage(&self.lookup(principal)?, &ids, days)
            .await?;
        let mut by_key: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for (key, day, requests) in found {
            by_key.entry(key).or_default().push((day, requests));
        }
        for k in keys.iter_mut().take(with_usage) {
            let usage = by_key.remove(&k.id).unwrap_or_default();
            let mut shown = self.with_pending(&k.id, usage);
            shown.truncate(usize::try_from(days).unwrap_or(0));
            k.usage = Some(shown);
        }
        Ok(keys)
    }

    /// A key's written use per day (newest first) with the uses counted but not yet written.
    fn with_pending(&self, id: &str, mut usage: Vec<(String, i64)>) -> Vec<KeyUsage> {
        if let Some((day, n)) = self.keys.pending_usage(id) {
            match usage.iter_mut().find(|(d, _)| *d == day) {
                Some(u) => u.1 += n,
                None => usage.insert(0, (day, n)),
            }
        }
        usage
            .into_iter()
            .map(|(day, requests)| KeyUsage { day, requests })
            .collect()
    }

    /// Revokes a key: one's own, or any with `delete` on members.
    pub async fn revoke_key(&self, principal: &Principal, id: &str) -> Result<ApiKey> {
        let key = self
            .visible_keys(principal)
            .await?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| ServiceError::NotFound("api key".into()))?;
        let policy = self.policy(principal).await?;
        let pass = if key.user_id == principal.user_id {
            Self::acts_on_own_key(principal, id)?;
            self.lookup(principal)?
        } else {
            authz::org_grant(principal, &policy, Permission::Delete, Kind::OrgMember)
                .map_err(|_| ServiceError::Forbidden("only owners revoke others' keys".into()))?
        };
        self.revoke(principal, &pass, key, "api key").await
    }

    /// Revokes a key the caller was allowed to name, drops cached verifications, and answers
    /// the key as revoked.
    async fn revoke(
        &self,
        principal: &Principal,
        pass: &OrgPass,
        key: ApiKeyRecord,
        what: &str,
    ) -> Result<ApiKey> {
        let now = self.now();
        if !self.store.end_key(pass, &key.id, None, Some(&now)).await? {
            return Err(ServiceError::NotFound(format!("active {what}")));
        }
        self.keys.clear_cache();
        principal
            .trail
            .change(json!({"revoked": what, "id": key.id}));
        Ok(key_json(
            &ApiKeyRecord {
                revoked_at: Some(now),
                ..key
            },
            None,
        ))
    }

    /// Rotates one of the caller's keys: a new key with the same name and scope, while the
    /// old one keeps working for `grace_seconds` (default one day, at most 30 days).
    pub async fn rotate_key(
        &self,
        principal: &Principal,
        id: &str,
        body: &RotateKey,
    ) -> Result<CreatedKey> {
        let grace = match body.grace_seconds {
            None => DEFAULT_ROTATION_GRACE_SECONDS,
            Some(g) if (0..=MAX_ROTATION_GRACE_SECONDS).contains(&g) => g,
            Some(_) => {
                return Err(ServiceError::field(
                    "grace_seconds",
                    format!(
                        "`grace_seconds` must be an integer from 0 to {MAX_ROTATION_GRACE_SECONDS}"
                    ),
                ));
            }
        };
        let old = self
            .store
            .org_keys(&self.lookup(principal)?, false)
            .await?
            .into_iter()
            .find(|k| k.id == id && k.revoked_at.is_none())
            .ok_or_else(|| ServiceError::NotFound("active api key".into()))?;
        Self::acts_on_own_key(principal, id)?;
        let same_scope = KeyRequest {
            project_ids: old.project_ids.as_deref(),
            capability: Some(old.capability.as_str()),
            expires_at: None,
        };
        let (scope, _) = self.new_key_scope(principal, same_scope).await?;
        let key = self.keys.mint(
            &principal.org_id,
            &principal.user_id,
            &old.name,
            self.no_later_than_caller(principal, old.expires_at.clone()),
            &scope,
        )?;
        self.store
            .insert_own_key(&self.lookup(principal)?, &key.record)
            .await?;
        let grace_end = self.clock.now() + time::Duration::seconds(grace);
        let old_end = old.expires_at.as_deref().and_then(parse_timestamp);
        let end = format_timestamp(old_end.map_or(grace_end, |o| o.min(grace_end)));
        self.store
            .end_key(&self.lookup(principal)?, id, Some(&end), None)
            .await?;
        self.keys.clear_cache();
        let out = key_json(&key.record, None);
        principal
            .trail
            .change(json!({"key_rotated": id, "old_key_expires_at": end, "new_key": out}));
        Ok(CreatedKey {
            rotated_from: Some(RotatedFrom {
                id: id.to_owned(),
                expires_at: end,
            }),
            ..created(out, key.token.expose_secret())
        })
    }

    // ---- service accounts ----

    /// Creates a service token, and its service account unless `service_account_id` names
    /// an existing one. The account joins `group_names` / `group_ids`.
    pub async fn create_service_token(
        &self,
        principal: &Principal,
        body: &CreateServiceToken,
    ) -> Result<CreatedKey> {
        let pass = self
            .org_grant(principal, Permission::Create, Kind::OrgMember)
            .await?;
        let name = Some(body.name.as_str())
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ServiceError::field("name", "field `name` must not be empty"))?;
        let lookup = self.lookup(principal)?;
        let groups = self.store.list_entities(&lookup, Entity::Group).await?;
        let mut group_ids = body.group_ids.clone().unwrap_or_default();
        for n in body.group_names.iter().flatten() {
            let g = groups.iter().find(|g| &g.name == n).ok_or_else(|| {
                ServiceError::field("group_names", format!("no group named {n:?}"))
            })?;
            group_ids.push(g.id.clone());
        }
        self.may_place_in_groups(principal, &group_ids).await?;
        let wanted = KeyRequest {
            project_ids: body.project_ids.as_deref(),
            capability: body.capability.as_deref(),
            expires_at: body.expires_at.as_deref(),
        };
        let (scope, expires_at) = self.new_key_scope(principal, wanted).await?;
        let account = match body.service_account_id.as_deref() {
            Some(id) => self
                .store
                .list_users(&lookup)
                .await?
                .into_iter()
                .find(|u| u.id == id && u.kind == "service")
                .ok_or_else(|| {
                    ServiceError::field("service_account_id", format!("no service account {id:?}"))
                })?,
            None => {
                let account_name = body.service_account_name.as_deref().unwrap_or(name);
                let id = random::uuid()?;
                let email = format!("service-{id}@service-accounts.invalid");
                let user = UserInfo {
                    id,
                    email,
                    kind: "service".into(),
                    given_name: Some(account_name.to_owned()),
                    family_name: None,
                    created: self.now(),
                };
                let mut added = self.store.add_members(&pass, &[user], &group_ids).await?;
                added
                    .pop()
                    .ok_or_else(|| ServiceError::Internal("service account not stored".into()))?
            }
        };
        if body.service_account_id.is_some() && !group_ids.is_empty() {
            self.store
                .add_members(&pass, std::slice::from_ref(&account), &group_ids)
                .await?;
        }
        self.policy_changed(&principal.org_id);
        let key = self
            .keys
            .mint(&principal.org_id, &account.id, name, expires_at, &scope)?;
        self.store.insert_member_key(&pass, &key.record).await?;
        let out = CreatedKey {
            service_account_id: Some(account.id.clone()),
            service_account_email: Some(account.email.clone()),
            service_account_name: account.given_name.clone(),
            ..created(
                key_json(&key.record, Some(&account)),
                key.token.expose_secret(),
            )
        };
        // The audit entry holds the record, never the secret.
        principal.trail.change(
            json!({"service_token_created": out.record, "service_account_id": account.id,
                   "groups": group_ids}),
        );
        Ok(out)
    }

    pub async fn revoke_service_token(&self, principal: &Principal, id: &str) -> Result<ApiKey> {
        let pass = self
            .org_grant(principal, Permission::Delete, Kind::OrgMember)
            .await?;
        let users = self.store.list_users(&pass).await?;
        let key = self
            .store
            .org_keys(
                &self
                    .org_grant(principal, Permission::Read, Kind::OrgMember)
                    .await?,
                true,
            )
            .await?
            .into_iter()
            .find(|k| {
                k.id == id
                    && users
                        .iter()
                        .any(|u| u.id == k.user_id && u.kind == "service")
            })
            .ok_or_else(|| ServiceError::NotFound("service token".into()))?;
        self.revoke(principal, &pass, key, "service token").await
    }
}
