//! Administration: groups, roles, ACLs, users, the organization and its members, API keys
//! and service tokens (the Braintrust `/v1/group`, `/v1/role`, `/v1/acl`, `/v1/user`,
//! `/v1/organization`, `/v1/api_key` and `/v1/service_token` resources).
//!
//! Who may do what (all of it also bounded by the caller's key scope):
//! * groups and roles: read / create / update / delete on `group` or `role` at organization
//!   level (Owners);
//! * ACLs: `read_acls`, `create_acls`, `delete_acls` on the object the ACL is on;
//!   `list_org` needs `read_acls` on the organization;
//! * users: any member may list the members of their organization;
//! * members: `create` (invite) and `delete` (remove) on `org_member` (Owners);
//! * API keys: everyone lists, reads, rotates and revokes their own keys and creates keys for
//!   themselves, never wider than the key they call with; `read` / `delete` on `org_member`
//!   (Owners) extends listing and revoking to every key of the organization;
//! * service tokens: `create` / `read` / `delete` on `org_member` (Owners).

use crate::objects::{body_obj, opt_str};
use crate::{Result, ServiceError, Services, random};
use holdfast_core::authz::{
    self, BUILTIN_GROUPS, Capability, KeyScope, Kind, OrgPass, Permission, Principal, Subject,
    SystemPass, Target, builtin_roles,
};
use holdfast_core::clock::{format_timestamp, parse_timestamp};
use holdfast_store::{
    AclRecord, ApiKeyRecord, EntityRecord, UserInfo, member_permission_json,
    parse_member_permission,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

pub use holdfast_store::Entity;

/// Longest grace period a rotated key keeps working.
pub const MAX_ROTATION_GRACE_SECONDS: i64 = 30 * 24 * 3600;
pub const DEFAULT_ROTATION_GRACE_SECONDS: i64 = 24 * 3600;

/// Sets a field of a JSON object built in this module.
pub(crate) fn set(obj: Option<&mut Map<String, Value>>, field: &str, value: Value) {
    if let Some(m) = obj {
        m.insert(field.to_owned(), value);
    }
}

fn str_list(body: &Map<String, Value>, field: &str) -> Result<Vec<String>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ServiceError::field(
                        field.to_string(),
                        format!("field `{field}` must be a list of strings"),
                    )
                })
            })
            .collect(),
        Some(_) => Err(ServiceError::field(
            field.to_string(),
            format!("field `{field}` must be a list of strings"),
        )),
    }
}

/// Built-in roles are the same in every organization and cannot be changed or deleted.
fn refuse_builtin_role(id: &str) -> Result<()> {
    if builtin_roles().iter().any(|r| r.0 == id) {
        return Err(ServiceError::Forbidden(
            "built-in roles cannot be changed or deleted".into(),
        ));
    }
    Ok(())
}

fn entity_json(e: Entity, r: &EntityRecord) -> Value {
    let (members, includes) = match e {
        Entity::Group => ("member_users", "member_groups"),
        Entity::Role => ("member_permissions", "member_roles"),
    };
    json!({"id": r.id, "org_id": r.org_id, "name": r.name, "description": r.description,
           "user_id": r.user_id, "created": r.created, members: r.members, includes: r.includes})
}

fn builtin_role_json() -> Vec<Value> {
    builtin_roles()
        .into_iter()
        .map(|(id, name, description, def)| {
            let perms: Vec<Value> = def
                .member_permissions
                .iter()
                .map(|(p, r)| member_permission_json(*p, *r))
                .collect();
            json!({"id": id, "org_id": null, "name": name, "description": description,
                   "user_id": null, "created": null, "member_permissions": perms, "member_roles": []})
        })
        .collect()
}

pub fn acl_json(a: &AclRecord) -> Value {
    let (user_id, group_id) = match &a.subject {
        Subject::User(u) => (Some(u), None),
        Subject::Group(g) => (None, Some(g)),
    };
    json!({"id": a.id, "object_type": a.object_type.as_str(), "object_id": a.object_id,
           "user_id": user_id, "group_id": group_id, "permission": a.permission.map(Permission::as_str),
           "role_id": a.role_id, "restrict_object_type": a.restrict_object_type.map(Kind::as_str),
           "_object_org_id": a.org_id, "created": a.created})
}

fn user_json(u: &UserInfo) -> Value {
    json!({"id": u.id, "email": u.email, "given_name": u.given_name, "family_name": u.family_name,
           "avatar_url": null, "created": u.created, "is_service_account": u.kind == "service"})
}

fn key_json(k: &ApiKeyRecord, user: Option<&UserInfo>) -> Value {
    json!({"id": k.id, "name": k.name, "preview_name": k.preview_name, "created": k.created,
           "expires_at": k.expires_at, "revoked_at": k.revoked_at, "user_id": k.user_id,
           "user_email": user.map(|u| &u.email), "user_given_name": user.and_then(|u| u.given_name.as_ref()),
           "user_family_name": user.and_then(|u| u.family_name.as_ref()), "org_id": k.org_id,
           "project_ids": k.project_ids, "capability": k.capability,
           "last_used_at": k.last_used_at, "last_used_from": k.last_used_from})
}

fn timestamp_field(body: &Map<String, Value>, field: &str) -> Result<Option<String>> {
    match opt_str(body, field)? {
        None => Ok(None),
        Some(t) => parse_timestamp(t)
            .map(|t| Some(format_timestamp(t)))
            .ok_or_else(|| {
                ServiceError::field(
                    field.to_string(),
                    format!("field `{field}` must be an RFC 3339 time"),
                )
            }),
    }
}

impl Services {
    // ---- groups and roles ----

    pub async fn list_entities(&self, principal: &Principal, e: Entity) -> Result<Vec<Value>> {
        let pass = self
            .org_grant(principal, Permission::Read, e.kind())
            .await?;
        let mut out: Vec<Value> = if e == Entity::Role {
            builtin_role_json()
        } else {
            Vec::new()
        };
        out.extend(
            self.store
                .list_entities(&pass, e)
                .await?
                .iter()
                .map(|r| entity_json(e, r)),
        );
        Ok(out)
    }

    pub async fn get_entity(&self, principal: &Principal, e: Entity, id: &str) -> Result<Value> {
        let pass = self
            .org_grant(principal, Permission::Read, e.kind())
            .await?;
        if e == Entity::Role
            && let Some(r) = builtin_role_json().into_iter().find(|r| r["id"] == id)
        {
            return Ok(r);
        }
        Ok(entity_json(e, &self.store.get_entity(&pass, e, id).await?))
    }

    /// Checks and normalizes the two member lists of a group or role body.
    async fn entity_lists(
        &self,
        principal: &Principal,
        e: Entity,
        body: &Map<String, Value>,
        prefix: &str,
    ) -> Result<(Vec<Value>, Vec<String>)> {
        let lookup = self.lookup(principal)?;
        match e {
            Entity::Group => {
                let users = str_list(body, &format!("{prefix}member_users"))?;
                let groups = str_list(body, &format!("{prefix}member_groups"))?;
                let members = self.store.list_users(&lookup).await?;
                if let Some(u) = users.iter().find(|u| !members.iter().any(|m| &m.id == *u)) {
                    return Err(ServiceError::bad(format!(
                        "user {u:?} is not a member of this organization"
                    )));
                }
                let known = self.store.list_entities(&lookup, Entity::Group).await?;
                if let Some(g) = groups.iter().find(|g| !known.iter().any(|k| &k.id == *g)) {
                    return Err(ServiceError::bad(format!("no group {g:?}")));
                }
                Ok((users.into_iter().map(Value::String).collect(), groups))
            }
            Entity::Role => {
                let field = format!("{prefix}member_permissions");
                let perms = match body.get(&field) {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|v| {
                            parse_member_permission(v)
                                .map(|(p, r)| member_permission_json(p, r))
                                .ok_or_else(|| {
                                    ServiceError::bad(format!(
                                        "`{field}` entries are {{permission, restrict_object_type}} with known values"
                                    ))
                                })
                        })
                        .collect::<Result<_>>()?,
                    Some(_) => return Err(ServiceError::field(field.to_string(), format!("`{field}` must be a list"))),
                };
                let roles = str_list(body, &format!("{prefix}member_roles"))?;
                let known = self.store.list_entities(&lookup, Entity::Role).await?;
                let builtin: Vec<&str> = builtin_roles().iter().map(|r| r.0).collect();
                if let Some(r) = roles
                    .iter()
                    .find(|r| !known.iter().any(|k| &k.id == *r) && !builtin.contains(&r.as_str()))
                {
                    return Err(ServiceError::bad(format!("no role {r:?}")));
                }
                Ok((perms, roles))
            }
        }
    }

    /// `POST` (get-or-create by name) or `PUT` (create or replace by name).
    pub async fn put_entity(
        &self,
        principal: &Principal,
        e: Entity,
        body: &Value,
        replace: bool,
    ) -> Result<Value> {
        let body = body_obj(body)?;
        let name = opt_str(body, "name")?
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ServiceError::field("name", "field `name` is required"))?;
        let perm = if replace {
            Permission::Update
        } else {
            Permission::Create
        };
        let pass = self.org_grant(principal, perm, e.kind()).await?;
        if replace {
            self.org_grant(principal, Permission::Create, e.kind())
                .await?;
        }
        let (members, includes) = self.entity_lists(principal, e, body, "").await?;
        let rec = EntityRecord {
            id: random::uuid()?,
            org_id: principal.org_id.clone(),
            name: name.to_owned(),
            description: opt_str(body, "description")?.map(str::to_owned),
            user_id: Some(principal.user_id.clone()),
            created: self.now(),
            members,
            includes,
        };
        let stored = self.store.put_entity(&pass, e, &rec, replace).await?;
        self.policy_changed(&principal.org_id);
        let out = entity_json(e, &stored);
        principal
            .trail
            .change(json!({"put": e.noun(), "after": out.clone()}));
        Ok(out)
    }

    /// `PATCH`: name, description, and add_/remove_ member lists.
    pub async fn patch_entity(
        &self,
        principal: &Principal,
        e: Entity,
        id: &str,
        body: &Value,
    ) -> Result<Value> {
        let body = body_obj(body)?;
        refuse_builtin_role(id)?;
        let pass = self
            .org_grant(principal, Permission::Update, e.kind())
            .await?;
        let (add_m, add_i) = self.entity_lists(principal, e, body, "add_").await?;
        let (rm_m, rm_i) = {
            // Removals need not name things that still exist.
            let (m, i) = match e {
                Entity::Group => ("remove_member_users", "remove_member_groups"),
                Entity::Role => ("remove_member_permissions", "remove_member_roles"),
            };
            let rm_m: Vec<Value> = match body.get(m) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a.clone(),
                Some(_) => {
                    return Err(ServiceError::field(
                        m.to_string(),
                        format!("`{m}` must be a list"),
                    ));
                }
            };
            (rm_m, str_list(body, i)?)
        };
        let name = match opt_str(body, "name")? {
            Some(n) if n.trim().is_empty() => {
                return Err(ServiceError::field(
                    "name",
                    "field `name` must not be empty",
                ));
            }
            n => n.map(str::to_owned),
        };
        let description = opt_str(body, "description")?.map(str::to_owned);
        let mut before = None;
        let stored = self
            .store
            .update_entity(&pass, e, id, |r| {
                before = Some(entity_json(e, r));
                if let Some(n) = name {
                    r.name = n;
                }
                if description.is_some() {
                    r.description = description;
                }
                let same = |a: &Value, b: &Value| match e {
                    Entity::Group => a == b,
                    Entity::Role => parse_member_permission(a) == parse_member_permission(b),
                };
                r.members.retain(|m| !rm_m.iter().any(|x| same(x, m)));
                for m in add_m {
                    if !r.members.iter().any(|x| same(x, &m)) {
                        r.members.push(m);
                    }
                }
                r.includes.retain(|i| !rm_i.contains(i));
                for i in add_i {
                    if !r.includes.contains(&i) && i != r.id {
                        r.includes.push(i);
                    }
                }
                Ok(())
            })
            .await?;
        self.policy_changed(&principal.org_id);
        let out = entity_json(e, &stored);
        principal
            .trail
            .change(json!({"patch": e.noun(), "before": before, "after": out.clone()}));
        Ok(out)
    }

    pub async fn delete_entity(&self, principal: &Principal, e: Entity, id: &str) -> Result<Value> {
        refuse_builtin_role(id)?;
        let pass = self
            .org_grant(principal, Permission::Delete, e.kind())
            .await?;
        let gone = self.store.delete_entity(&pass, e, id).await?;
        self.policy_changed(&principal.org_id);
        let out = entity_json(e, &gone);
        principal
            .trail
            .change(json!({"delete": e.noun(), "before": out.clone()}));
        Ok(out)
    }

    // ---- ACLs ----

    /// The project an ACL's object sits in (checking that the object exists in this
    /// organization): `None` for organization-level objects.
    pub(crate) async fn acl_object_project(
        &self,
        principal: &Principal,
        kind: Kind,
        object_id: &str,
    ) -> Result<Option<String>> {
        let lookup = self.lookup(principal)?;
        let missing = || ServiceError::NotFound(kind.as_str().to_owned());
        Ok(match kind {
            Kind::Organization => {
                if object_id != principal.org_id {
                    return Err(missing());
                }
                None
            }
            Kind::Project | Kind::ProjectLog => {
                let p = self.store.get_project(&lookup, object_id).await?;
                Some(p.id)
            }
            Kind::Experiment | Kind::Dataset | Kind::Prompt => {
                let ty = match kind {
                    Kind::Experiment => holdfast_core::object::ObjectType::Experiment,
                    Kind::Dataset => holdfast_core::object::ObjectType::Dataset,
                    _ => holdfast_core::object::ObjectType::Prompt,
                };
                Some(
                    self.store
                        .get_object(&lookup, ty, object_id)
                        .await?
                        .project_id,
                )
            }
            Kind::Group => {
                self.store
                    .get_entity(&lookup, Entity::Group, object_id)
                    .await?;
                None
            }
            Kind::Role => {
                self.store
                    .get_entity(&lookup, Entity::Role, object_id)
                    .await?;
                None
            }
            Kind::OrgMember | Kind::OrgAuditLogs | Kind::AiSecret => {
                return Err(ServiceError::bad(format!(
                    "grants on {} are made on the organization with restrict_object_type",
                    kind.as_str()
                )));
            }
        })
    }

    /// Parses one ACL from a request body and checks what it names.
    async fn parse_acl(&self, principal: &Principal, v: &Value) -> Result<AclRecord> {
        let body = body_obj(v)?;
        let kind_field = |f: &str| -> Result<Option<Kind>> {
            match opt_str(body, f)? {
                None => Ok(None),
                Some(s) => Kind::parse(s)
                    .map(Some)
                    .ok_or_else(|| ServiceError::bad(format!("unknown {f} {s:?}"))),
            }
        };
        let object_type = kind_field("object_type")?
            .ok_or_else(|| ServiceError::field("object_type", "`object_type` is required"))?;
        let object_id = opt_str(body, "object_id")?
            .ok_or_else(|| ServiceError::field("object_id", "`object_id` is required"))?;
        let subject = match (opt_str(body, "user_id")?, opt_str(body, "group_id")?) {
            (Some(u), None) => Subject::User(u.to_owned()),
            (None, Some(g)) => Subject::Group(g.to_owned()),
            _ => {
                return Err(ServiceError::bad(
                    "exactly one of `user_id` and `group_id` is required",
                ));
            }
        };
        let permission = match opt_str(body, "permission")? {
            None => None,
            Some(p) => Some(
                Permission::parse(p)
                    .ok_or_else(|| ServiceError::bad(format!("unknown permission {p:?}")))?,
            ),
        };
        let role_id = opt_str(body, "role_id")?.map(str::to_owned);
        if permission.is_some() == role_id.is_some() {
            return Err(ServiceError::bad(
                "exactly one of `permission` and `role_id` is required",
            ));
        }
        let restrict = kind_field("restrict_object_type")?;
        if restrict.is_some() && role_id.is_some() {
            return Err(ServiceError::bad(
                "`restrict_object_type` is only allowed with `permission`",
            ));
        }
        Ok(AclRecord {
            id: random::uuid()?,
            org_id: principal.org_id.clone(),
            object_type,
            object_id: object_id.to_owned(),
            subject,
            permission,
            role_id,
            restrict_object_type: restrict,
            created: self.now(),
        })
    }

    /// Checks that the user, group and role an ACL names exist in the organization.
    async fn check_acl_refs(&self, principal: &Principal, acl: &AclRecord) -> Result<()> {
        let (subject, role_id) = (&acl.subject, &acl.role_id);
        let lookup = self.lookup(principal)?;
        match subject {
            Subject::User(u) => {
                if !self
                    .store
                    .list_users(&lookup)
                    .await?
                    .iter()
                    .any(|m| &m.id == u)
                {
                    return Err(ServiceError::bad(format!(
                        "user {u:?} is not a member of this organization"
                    )));
                }
            }
            Subject::Group(g) => {
                self.store
                    .get_entity(&lookup, Entity::Group, g)
                    .await
                    .map_err(|_| ServiceError::bad(format!("no group {g:?}")))?;
            }
        }
        if let Some(r) = role_id
            && !builtin_roles().iter().any(|b| b.0 == r)
        {
            self.store
                .get_entity(&lookup, Entity::Role, r)
                .await
                .map_err(|_| ServiceError::bad(format!("no role {r:?}")))?;
        }
        Ok(())
    }

    /// The pass to act on the grants of an object; 404 for objects the caller cannot see.
    async fn acl_pass(
        &self,
        principal: &Principal,
        permission: Permission,
        kind: Kind,
        object_id: &str,
    ) -> Result<authz::AclPass> {
        let project = self.acl_object_project(principal, kind, object_id).await?;
        let policy = self.policy(principal).await?;
        authz::acl_pass(
            principal,
            &policy,
            permission,
            kind,
            project.as_deref(),
            object_id,
        )
        .map_err(|_| match (kind, project.as_deref()) {
            // Objects in projects: 404 unless the credential may read them.
            (Kind::Project, Some(p)) => self.denial(
                principal,
                &policy,
                &Target::project(Kind::Project, p),
                permission,
                kind,
            ),
            (k, Some(p)) if k.in_project() => self.denial(
                principal,
                &policy,
                &Target::object(k, p, object_id),
                permission,
                k,
            ),
            _ => ServiceError::Forbidden(format!(
                "missing permission {} on this {}",
                permission.as_str(),
                kind.as_str()
            )),
        })
    }

    /// `batch_update`: adds and removes grants atomically.
    pub async fn change_acls(
        &self,
        principal: &Principal,
        add: &[Value],
        remove: &[Value],
    ) -> Result<(Vec<Value>, Vec<Value>)> {
        let mut adds = Vec::new();
        for v in add {
            let acl = self.parse_acl(principal, v).await?;
            let pass = self
                .acl_pass(
                    principal,
                    Permission::CreateAcls,
                    acl.object_type,
                    &acl.object_id,
                )
                .await?;
            self.check_acl_refs(principal, &acl).await?;
            adds.push((pass, acl));
        }
        let mut removes = Vec::new();
        for v in remove {
            let acl = self.parse_acl(principal, v).await?;
            let pass = self
                .acl_pass(
                    principal,
                    Permission::DeleteAcls,
                    acl.object_type,
                    &acl.object_id,
                )
                .await?;
            removes.push((pass, acl));
        }
        let lookup = self.lookup(principal)?;
        let (added, removed) = self.store.change_acls(&lookup, &adds, &removes).await?;
        self.policy_changed(&principal.org_id);
        let added: Vec<Value> = added.iter().map(acl_json).collect();
        let removed: Vec<Value> = removed.iter().map(acl_json).collect();
        principal
            .trail
            .change(json!({"acls_added": added.clone(), "acls_removed": removed.clone()}));
        Ok((added, removed))
    }

    pub async fn list_acls(
        &self,
        principal: &Principal,
        object_type: &str,
        object_id: &str,
    ) -> Result<Vec<Value>> {
        let kind = Kind::parse(object_type)
            .ok_or_else(|| ServiceError::bad(format!("unknown object_type {object_type:?}")))?;
        let pass = self
            .acl_pass(principal, Permission::ReadAcls, kind, object_id)
            .await?;
        Ok(self
            .store
            .list_acls(&pass)
            .await?
            .iter()
            .map(acl_json)
            .collect())
    }

    pub async fn list_org_acls(&self, principal: &Principal) -> Result<Vec<Value>> {
        let pass = self
            .acl_pass(
                principal,
                Permission::ReadAcls,
                Kind::Organization,
                &principal.org_id.clone(),
            )
            .await?;
        Ok(self
            .store
            .list_org_acls(&pass)
            .await?
            .iter()
            .map(acl_json)
            .collect())
    }

    pub async fn get_acl(&self, principal: &Principal, id: &str) -> Result<Value> {
        let acl = self.store.get_acl(&self.lookup(principal)?, id).await?;
        self.acl_pass(
            principal,
            Permission::ReadAcls,
            acl.object_type,
            &acl.object_id,
        )
        .await
        .map_err(|_| ServiceError::NotFound("acl".into()))?;
        Ok(acl_json(&acl))
    }

    pub async fn delete_acl(&self, principal: &Principal, id: &str) -> Result<Value> {
        let acl = self.store.get_acl(&self.lookup(principal)?, id).await?;
        let as_body = acl_json(&acl);
        let (_, removed) = self.change_acls(principal, &[], &[as_body]).await?;
        removed
            .into_iter()
            .next()
            .ok_or_else(|| ServiceError::NotFound("acl".into()))
    }

    // ---- users and the organization ----

    /// Organization metadata (members, keys) is not for ingest-only keys, which read nothing.
    fn not_ingest_only(principal: &Principal) -> Result<()> {
        if principal.scope.capability == Capability::Ingest {
            return Err(ServiceError::Forbidden("an ingest key cannot read".into()));
        }
        Ok(())
    }

    pub async fn list_users(&self, principal: &Principal) -> Result<Vec<Value>> {
        Self::not_ingest_only(principal)?;
        let lookup = self.lookup(principal)?;
        Ok(self
            .store
            .list_users(&lookup)
            .await?
            .iter()
            .map(user_json)
            .collect())
    }

    pub async fn get_user(&self, principal: &Principal, id: &str) -> Result<Value> {
        Self::not_ingest_only(principal)?;
        let lookup = self.lookup(principal)?;
        self.store
            .list_users(&lookup)
            .await?
            .iter()
            .find(|u| u.id == id)
            .map(user_json)
            .ok_or_else(|| ServiceError::NotFound("user".into()))
    }

    pub async fn organization(&self, principal: &Principal, base_url: &str) -> Result<Value> {
        let org = self.store.get_org(&self.lookup(principal)?).await?;
        Ok(
            json!({"id": org.id, "name": org.name, "api_url": base_url, "proxy_url": base_url,
                  "realtime_url": null, "is_universal_api": true, "created": org.created}),
        )
    }

    pub async fn rename_organization(&self, principal: &Principal, body: &Value) -> Result<()> {
        let body = body_obj(body)?;
        let name = opt_str(body, "name")?
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ServiceError::field("name", "field `name` is required"))?;
        let pass = self
            .org_grant(principal, Permission::Update, Kind::Organization)
            .await?;
        let before = self.store.get_org(&pass).await?.name;
        self.store.rename_org(&pass, name).await?;
        principal
            .trail
            .change(json!({"organization": {"before": before, "after": name}}));
        Ok(())
    }

    /// `PATCH /v1/organization/members`: invite users by email or id into groups, remove
    /// users by email or id.
    pub async fn patch_members(&self, principal: &Principal, body: &Value) -> Result<Value> {
        let body = body_obj(body)?;
        let lookup = self.lookup(principal)?;
        let org = self.store.get_org(&lookup).await?;
        if opt_str(body, "org_id")?.is_some_and(|id| id != org.id)
            || opt_str(body, "org_name")?.is_some_and(|n| n != org.name)
        {
            return Err(ServiceError::NotFound("organization".into()));
        }
        let members = self.store.list_users(&lookup).await?;
        let groups = self.store.list_entities(&lookup, Entity::Group).await?;
        let mut added = Vec::new();
        if let Some(invite) = body.get("invite_users").filter(|v| !v.is_null()) {
            let invite = body_obj(invite)?;
            let pass = self
                .org_grant(principal, Permission::Create, Kind::OrgMember)
                .await?;
            let mut group_ids = str_list(invite, "group_ids")?;
            group_ids.extend(opt_str(invite, "group_id")?.map(str::to_owned));
            let mut names = str_list(invite, "group_names")?;
            names.extend(opt_str(invite, "group_name")?.map(str::to_owned));
            for n in names {
                let g = groups
                    .iter()
                    .find(|g| g.name == n)
                    .ok_or_else(|| ServiceError::bad(format!("no group named {n:?}")))?;
                group_ids.push(g.id.clone());
            }
            let mut users = Vec::new();
            self.may_place_in_groups(principal, &group_ids).await?;
            for email in str_list(invite, "emails")? {
                if !email.contains('@') || email.ends_with("@service-accounts.invalid") {
                    return Err(ServiceError::bad(format!(
                        "{email:?} is not an email address"
                    )));
                }
                users.push(UserInfo {
                    id: random::uuid()?,
                    email,
                    kind: "user".into(),
                    given_name: None,
                    family_name: None,
                    created: self.now(),
                });
            }
            for id in str_list(invite, "ids")? {
                let u = members.iter().find(|m| m.id == id).ok_or_else(|| {
                    ServiceError::bad(format!("no user {id:?} in this organization"))
                })?;
                users.push(u.clone());
            }
            added = self.store.add_members(&pass, &users, &group_ids).await?;

            principal.trail.change(
                json!({"members_added": added.iter().map(|u| &u.email).collect::<Vec<_>>(),
                                          "into_groups": group_ids}),
            );
        }
        let mut removed = Vec::new();
        if let Some(remove) = body.get("remove_users").filter(|v| !v.is_null()) {
            let remove = body_obj(remove)?;
            let pass = self
                .org_grant(principal, Permission::Delete, Kind::OrgMember)
                .await?;
            let mut ids = str_list(remove, "ids")?;
            for email in str_list(remove, "emails")? {
                if let Some(u) = members.iter().find(|m| m.email == email) {
                    ids.push(u.id.clone());
                }
            }
            if ids.contains(&principal.user_id) {
                return Err(ServiceError::bad("you cannot remove yourself"));
            }
            removed = self.store.remove_members(&pass, &ids, &self.now()).await?;
            self.keys.clear_cache();
            principal.trail.change(json!({"members_removed": removed}));
        }
        self.policy_changed(&principal.org_id);
        Ok(
            json!({"status": "success", "org_id": org.id, "send_email_error": null,
                  // Only what the inviter already knows: a user who also belongs to
                  // another organization shows nothing of that account here.
                  "added_users": added.iter().map(|u| json!({"id": u.id, "email": u.email}))
                      .collect::<Vec<_>>(),
                  "removed_user_ids": removed}),
        )
    }

    // ---- API keys ----

    /// Reads `project_ids`, `capability` and `expires_at` for a new key and checks that it
    /// is no wider than the key the caller uses.
    async fn new_key_scope(
        &self,
        principal: &Principal,
        body: &Map<String, Value>,
    ) -> Result<(KeyScope, Option<String>)> {
        let projects = match body.get("project_ids") {
            None | Some(Value::Null) => None,
            Some(_) => Some(str_list(body, "project_ids")?),
        };
        let capability = match opt_str(body, "capability")? {
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
        let expires_at = timestamp_field(body, "expires_at")?;
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
    pub async fn create_own_key(&self, principal: &Principal, body: &Value) -> Result<Value> {
        let body = body_obj(body)?;
        let name = opt_str(body, "name")?.unwrap_or("api key").to_owned();
        let (scope, expires_at) = self.new_key_scope(principal, body).await?;
        let key = self.keys.mint(
            &principal.org_id,
            &principal.user_id,
            &name,
            expires_at,
            &scope,
        )?;
        self.store
            .insert_api_key(
                &SystemPass::new("a user creates their own key"),
                &key.record,
            )
            .await?;
        let mut out = key_json(&key.record, None);
        principal.trail.change(json!({"key_created": out.clone()}));
        set(out.as_object_mut(), "key", json!(key.token.expose_secret()));
        Ok(out)
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

    pub async fn list_keys(&self, principal: &Principal, service: bool) -> Result<Vec<Value>> {
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
    pub async fn get_key(&self, principal: &Principal, id: &str) -> Result<Value> {
        let key = self
            .visible_keys(principal)
            .await?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| ServiceError::NotFound("api key".into()))?;
        let users = self.store.list_users(&self.lookup(principal)?).await?;
        let mut usage = self.store.key_usage(&self.lookup(principal)?, id).await?;
        if let Some((day, n)) = self.keys.pending_usage(id) {
            match usage.iter_mut().find(|(d, _)| *d == day) {
                Some(u) => u.1 += n,
                None => usage.insert(0, (day, n)),
            }
        }
        let mut out = key_json(&key, users.iter().find(|u| u.id == key.user_id));
        set(
            out.as_object_mut(),
            "usage",
            usage
                .iter()
                .map(|(day, n)| json!({"day": day, "requests": n}))
                .collect(),
        );
        Ok(out)
    }

    /// Revokes a key: one's own, or any with `delete` on members.
    pub async fn revoke_key(&self, principal: &Principal, id: &str) -> Result<Value> {
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
    ) -> Result<Value> {
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
    pub async fn rotate_key(&self, principal: &Principal, id: &str, body: &Value) -> Result<Value> {
        let empty = json!({});
        let body = if body.is_null() { &empty } else { body };
        let body = body_obj(body)?;
        let grace = match body.get("grace_seconds") {
            None | Some(Value::Null) => DEFAULT_ROTATION_GRACE_SECONDS,
            Some(v) => v
                .as_i64()
                .filter(|g| (0..=MAX_ROTATION_GRACE_SECONDS).contains(g))
                .ok_or_else(|| {
                    ServiceError::bad(format!(
                        "`grace_seconds` must be an integer from 0 to {MAX_ROTATION_GRACE_SECONDS}"
                    ))
                })?,
        };
        let old = self
            .store
            .org_keys(&self.lookup(principal)?, false)
            .await?
            .into_iter()
            .find(|k| k.id == id && k.revoked_at.is_none())
            .ok_or_else(|| ServiceError::NotFound("active api key".into()))?;
        Self::acts_on_own_key(principal, id)?;
        let scope_body = json!({"project_ids": old.project_ids, "capability": old.capability});
        let (scope, _) = self
            .new_key_scope(principal, body_obj(&scope_body)?)
            .await?;
        let key = self.keys.mint(
            &principal.org_id,
            &principal.user_id,
            &old.name,
            self.no_later_than_caller(principal, old.expires_at.clone()),
            &scope,
        )?;
        self.store
            .insert_api_key(&SystemPass::new("a user rotates their key"), &key.record)
            .await?;
        let grace_end = self.clock.now() + time::Duration::seconds(grace);
        let old_end = old.expires_at.as_deref().and_then(parse_timestamp);
        let end = format_timestamp(old_end.map_or(grace_end, |o| o.min(grace_end)));
        self.store
            .end_key(&self.lookup(principal)?, id, Some(&end), None)
            .await?;
        self.keys.clear_cache();
        let mut out = key_json(&key.record, None);
        principal
            .trail
            .change(json!({"key_rotated": id, "old_key_expires_at": end, "new_key": out.clone()}));
        set(out.as_object_mut(), "key", json!(key.token.expose_secret()));
        set(
            out.as_object_mut(),
            "rotated_from",
            json!({"id": id, "expires_at": end}),
        );
        Ok(out)
    }

    // ---- service accounts ----

    /// Creates a service token, and its service account unless `service_account_id` names
    /// an existing one. The account joins `group_names` / `group_ids`.
    pub async fn create_service_token(&self, principal: &Principal, body: &Value) -> Result<Value> {
        let body = body_obj(body)?;
        let pass = self
            .org_grant(principal, Permission::Create, Kind::OrgMember)
            .await?;
        let name = opt_str(body, "name")?
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ServiceError::field("name", "field `name` is required"))?;
        let lookup = self.lookup(principal)?;
        let groups = self.store.list_entities(&lookup, Entity::Group).await?;
        let mut group_ids = str_list(body, "group_ids")?;
        for n in str_list(body, "group_names")? {
            let g = groups
                .iter()
                .find(|g| g.name == n)
                .ok_or_else(|| ServiceError::bad(format!("no group named {n:?}")))?;
            group_ids.push(g.id.clone());
        }
        self.may_place_in_groups(principal, &group_ids).await?;
        let (scope, expires_at) = self.new_key_scope(principal, body).await?;
        let account = match opt_str(body, "service_account_id")? {
            Some(id) => self
                .store
                .list_users(&lookup)
                .await?
                .into_iter()
                .find(|u| u.id == id && u.kind == "service")
                .ok_or_else(|| ServiceError::bad(format!("no service account {id:?}")))?,
            None => {
                let account_name = opt_str(body, "service_account_name")?.unwrap_or(name);
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
        if opt_str(body, "service_account_id")?.is_some() && !group_ids.is_empty() {
            self.store
                .add_members(&pass, std::slice::from_ref(&account), &group_ids)
                .await?;
        }
        self.policy_changed(&principal.org_id);
        let key = self
            .keys
            .mint(&principal.org_id, &account.id, name, expires_at, &scope)?;
        self.store
            .insert_api_key(
                &SystemPass::new("an owner creates a service token"),
                &key.record,
            )
            .await?;
        let mut out = key_json(&key.record, Some(&account));
        set(out.as_object_mut(), "service_account_id", json!(account.id));
        set(
            out.as_object_mut(),
            "service_account_email",
            json!(account.email),
        );
        set(
            out.as_object_mut(),
            "service_account_name",
            json!(account.given_name),
        );
        principal
            .trail
            .change(json!({"service_token_created": out.clone(), "groups": group_ids}));
        set(out.as_object_mut(), "key", json!(key.token.expose_secret()));
        Ok(out)
    }

    pub async fn revoke_service_token(&self, principal: &Principal, id: &str) -> Result<Value> {
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

    // ---- bootstrap and the operator CLI ----

    /// Gives an organization its built-in groups (idempotent); `owners` join Owners.
    pub async fn ensure_builtin_groups(&self, org_id: &str, owners: &[String]) -> Result<()> {
        let now = self.now();
        let mut groups = Vec::new();
        for (name, role, description) in BUILTIN_GROUPS {
            let id = random::uuid()?;
            let acl = AclRecord {
                id: random::uuid()?,
                org_id: org_id.to_owned(),
                object_type: Kind::Organization,
                object_id: org_id.to_owned(),
                subject: Subject::Group(id.clone()),
                permission: None,
                role_id: Some(role.to_owned()),
                restrict_object_type: None,
                created: now.clone(),
            };
            let group = EntityRecord {
                id,
                org_id: org_id.to_owned(),
                name: name.to_owned(),
                description: Some(description.to_owned()),
                user_id: None,
                created: now.clone(),
                members: Vec::new(),
                includes: Vec::new(),
            };
            groups.push((group, acl));
        }
        self.store
            .ensure_builtin_groups(
                &SystemPass::new("creating an organization's built-in groups"),
                org_id,
                &groups,
                owners,
            )
            .await?;
        self.policy_changed(org_id);
        Ok(())
    }

    /// Upgrades organizations made before access control: each gets its built-in groups, and
    /// its members (who all had full access) join Owners.
    pub async fn upgrade_access_control(&self) -> Result<()> {
        let why = SystemPass::new("upgrading organizations to access control");
        for (org, members) in self.store.orgs_without_groups(&why).await? {
            self.ensure_builtin_groups(&org, &members).await?;
        }
        Ok(())
    }

    /// `holdfast user create`: adds a user to an organization and a group, and returns a new
    /// key for them.
    pub async fn create_user_cli(
        &self,
        org_name: &str,
        email: &str,
        group: &str,
    ) -> Result<SecretString> {
        if !email.contains('@') {
            return Err(ServiceError::bad(format!(
                "{email:?} is not an email address"
            )));
        }
        let why = SystemPass::new("operator adds a user");
        let org = self
            .store
            .find_org_by_name(&why, org_name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("organization {org_name:?}")))?;
        let new_user = UserInfo {
            id: random::uuid()?,
            email: email.to_owned(),
            kind: "user".into(),
            given_name: None,
            family_name: None,
            created: self.now(),
        };
        let user = self
            .store
            .add_member_as_operator(&why, &org.id, &new_user, group)
            .await?;
        self.policy_changed(&org.id);
        let key = self
            .keys
            .mint(&org.id, &user, "cli key", None, &KeyScope::default())?;
        self.store.insert_api_key(&why, &key.record).await?;
        self.audit
            .record_durable(holdfast_store::NewAuditEntry {
                at: self.now(),
                org_id: Some(org.id.clone()),
                actor_id: None,
                key_id: None,
                action: "cli user create".into(),
                object_type: Some("org_member".into()),
                object_id: Some(user),
                detail: json!({"email": email, "group": group, "key_created": key.record.id}),
            })
            .await?;
        Ok(key.token)
    }
}
