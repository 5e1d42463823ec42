//! Groups and roles: custom ones stored per organization, built-in roles the same everywhere.

use super::Entity;
use crate::{Result, ServiceError, Services, random};
use holdfast_api::admin::{EntityBody, EntityPatch, Members};
use holdfast_core::authz::{Permission, Principal, builtin_roles};
use holdfast_store::{EntityRecord, StoreError, member_permission_json, parse_member_permission};
use serde_json::{Value, json};
use sha2::Digest;

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

/// A group's or role's version as a strong HTTP entity tag (quoted): a digest of what the API
/// shows of it, so any change to its name, description or members gives another tag.
pub fn entity_tag(shown: &Value) -> String {
    let digest = sha2::Sha256::digest(shown.to_string().as_bytes());
    let half = digest.get(..16).unwrap_or_default();
    format!("\"{}\"", random::hex(half))
}

/// Whether an `If-Match` header's value (`*`, or a list of entity tags) allows a change of an
/// object whose current tag is `tag`. Comparison is strong: a weak tag (`W/"…"`) never
/// matches.
fn if_match_allows(header: &str, tag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == tag)
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

    /// Checks and normalizes the two member lists of a group or role body (`prefix` names
    /// the fields in errors: `add_` for a patch).
    async fn entity_lists(
        &self,
        principal: &Principal,
        e: Entity,
        body: &Members,
        prefix: &str,
    ) -> Result<(Vec<Value>, Vec<String>)> {
        let lookup = self.lookup(principal)?;
        match e {
            Entity::Group => {
                let users = body.member_users.clone().unwrap_or_default();
                let groups = body.member_groups.clone().unwrap_or_default();
                let members = self.store.list_users(&lookup).await?;
                if let Some(u) = users.iter().find(|u| !members.iter().any(|m| &m.id == *u)) {
                    return Err(ServiceError::field(
                        format!("{prefix}member_users"),
                        format!("user {u:?} is not a member of this organization"),
                    ));
                }
                let known = self.store.list_entities(&lookup, Entity::Group).await?;
                if let Some(g) = groups.iter().find(|g| !known.iter().any(|k| &k.id == *g)) {
                    return Err(ServiceError::field(
                        format!("{prefix}member_groups"),
                        format!("no group {g:?}"),
                    ));
                }
                Ok((users.into_iter().map(Value::String).collect(), groups))
            }
            Entity::Role => {
                let field = format!("{prefix}member_permissions");
                let perms = body
                    .member_permissions
                    .iter()
                    .flatten()
                    .map(|v| {
                        parse_member_permission(v)
                            .map(|(p, r)| member_permission_json(p, r))
                            .ok_or_else(|| {
                                ServiceError::field(
                                    field.clone(),
                                    format!(
                                        "`{field}` entries are {{permission, restrict_object_type}} with known values"
                                    ),
                                )
                            })
                    })
                    .collect::<Result<_>>()?;
                let roles = body.member_roles.clone().unwrap_or_default();
                let known = self.store.list_entities(&lookup, Entity::Role).await?;
                let builtin: Vec<&str> = builtin_roles().iter().map(|r| r.0).collect();
                if let Some(r) = roles
                    .iter()
                    .find(|r| !known.iter().any(|k| &k.id == *r) && !builtin.contains(&r.as_str()))
                {
                    return Err(ServiceError::field(
                        format!("{prefix}member_roles"),
                        format!("no role {r:?}"),
                    ));
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
        body: &EntityBody,
        replace: bool,
    ) -> Result<Value> {
        let name = Some(body.name.as_str())
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ServiceError::field("name", "field `name` must not be empty"))?;
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
        let (members, includes) = self.entity_lists(principal, e, &body.members, "").await?;
        let rec = EntityRecord {
            id: random::uuid()?,
            org_id: principal.org_id.clone(),
            name: name.to_owned(),
            description: body.description.clone(),
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

    /// `PATCH`: name, description, and add_/remove_ member lists; with `if_match` (an
    /// `If-Match` header's value) only if the group or role is still the version it names.
    pub async fn patch_entity(
        &self,
        principal: &Principal,
        e: Entity,
        id: &str,
        body: &EntityPatch,
        if_match: Option<&str>,
    ) -> Result<Value> {
        refuse_builtin_role(id)?;
        let pass = self
            .org_grant(principal, Permission::Update, e.kind())
            .await?;
        let (add_m, add_i) = self
            .entity_lists(principal, e, &body.added(), "add_")
            .await?;
        // Removals need not name things that still exist.
        let (rm_m, rm_i): (Vec<Value>, Vec<String>) = match e {
            Entity::Group => (
                body.remove_member_users
                    .iter()
                    .flatten()
                    .cloned()
                    .map(Value::String)
                    .collect(),
                body.remove_member_groups.clone().unwrap_or_default(),
            ),
            Entity::Role => (
                body.remove_member_permissions.clone().unwrap_or_default(),
                body.remove_member_roles.clone().unwrap_or_default(),
            ),
        };
        let name = match &body.name {
            Some(n) if n.trim().is_empty() => {
                return Err(ServiceError::field(
                    "name",
                    "field `name` must not be empty",
                ));
            }
            n => n.clone(),
        };
        let description = body.description.clone();
        let mut before = None;
        let mut stale = false;
        let stored = self
            .store
            .update_entity(&pass, e, id, |r| {
                let was = entity_json(e, r);
                if if_match.is_some_and(|want| !if_match_allows(want, &entity_tag(&was))) {
                    stale = true;
                    return Err(StoreError::Conflict(String::new()));
                }
                before = Some(was);
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
            .await
            .map_err(|err| match stale {
                true => ServiceError::PreconditionFailed(format!(
                    "the {} changed since it was read (If-Match names none of its current \
                     versions); read it again and redo the change",
                    e.noun()
                )),
                false => err.into(),
            })?;
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
}
