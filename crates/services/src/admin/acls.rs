//! ACLs: grants of a permission or role on an object to a user or group.

use super::Entity;
use crate::{Result, ServiceError, Services, random};
use holdfast_api::admin::{Acl, NewAcl};
use holdfast_core::authz::{self, Kind, Permission, Principal, Subject, Target, builtin_roles};
use holdfast_store::AclRecord;
use serde_json::json;

/// The subject's user id or group id.
fn subject_ids(s: &Subject) -> (Option<String>, Option<String>) {
    match s {
        Subject::User(u) => (Some(u.clone()), None),
        Subject::Group(g) => (None, Some(g.clone())),
    }
}

pub fn acl_json(a: &AclRecord) -> Acl {
    let (user_id, group_id) = subject_ids(&a.subject);
    Acl {
        id: a.id.clone(),
        object_type: a.object_type.as_str().to_owned(),
        object_id: a.object_id.clone(),
        user_id,
        group_id,
        permission: a.permission.map(|p| p.as_str().to_owned()),
        role_id: a.role_id.clone(),
        restrict_object_type: a.restrict_object_type.map(|k| k.as_str().to_owned()),
        _object_org_id: a.org_id.clone(),
        created: a.created.clone(),
    }
}

impl Services {
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
            Kind::OrgMember | Kind::OrgAuditLogs | Kind::AiSecret | Kind::OrgExport => {
                return Err(ServiceError::bad(format!(
                    "grants on {} are made on the organization with restrict_object_type",
                    kind.as_str()
                )));
            }
        })
    }

    /// Parses one ACL from a request body and checks what it names.
    async fn parse_acl(&self, principal: &Principal, v: &NewAcl) -> Result<AclRecord> {
        let kind_field = |f: &str, value: Option<&str>| -> Result<Option<Kind>> {
            match value {
                None => Ok(None),
                Some(s) => Kind::parse(s)
                    .map(Some)
                    .ok_or_else(|| ServiceError::field(f, format!("unknown {f} {s:?}"))),
            }
        };
        let object_type = kind_field("object_type", Some(&v.object_type))?
            .ok_or_else(|| ServiceError::field("object_type", "`object_type` is required"))?;
        let object_id = v.object_id.as_str();
        let subject = match (&v.user_id, &v.group_id) {
            (Some(u), None) => Subject::User(u.clone()),
            (None, Some(g)) => Subject::Group(g.clone()),
            _ => {
                return Err(ServiceError::bad(
                    "exactly one of `user_id` and `group_id` is required",
                ));
            }
        };
        let permission = match &v.permission {
            None => None,
            Some(p) => Some(Permission::parse(p).ok_or_else(|| {
                ServiceError::field("permission", format!("unknown permission {p:?}"))
            })?),
        };
        let role_id = v.role_id.clone();
        if permission.is_some() == role_id.is_some() {
            return Err(ServiceError::bad(
                "exactly one of `permission` and `role_id` is required",
            ));
        }
        let restrict = kind_field("restrict_object_type", v.restrict_object_type.as_deref())?;
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
        add: &[NewAcl],
        remove: &[NewAcl],
    ) -> Result<(Vec<Acl>, Vec<Acl>)> {
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
        let added: Vec<Acl> = added.iter().map(acl_json).collect();
        let removed: Vec<Acl> = removed.iter().map(acl_json).collect();
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
    ) -> Result<Vec<Acl>> {
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

    pub async fn list_org_acls(&self, principal: &Principal) -> Result<Vec<Acl>> {
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

    pub async fn get_acl(&self, principal: &Principal, id: &str) -> Result<Acl> {
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

    pub async fn delete_acl(&self, principal: &Principal, id: &str) -> Result<Acl> {
        let acl = self.store.get_acl(&self.lookup(principal)?, id).await?;
        let (user_id, group_id) = subject_ids(&acl.subject);
        let named = NewAcl {
            object_type: acl.object_type.as_str().to_owned(),
            object_id: acl.object_id.clone(),
            user_id,
            group_id,
            permission: acl.permission.map(|p| p.as_str().to_owned()),
            role_id: acl.role_id.clone(),
            restrict_object_type: acl.restrict_object_type.map(|k| k.as_str().to_owned()),
        };
        let (_, removed) = self.change_acls(principal, &[], &[named]).await?;
        removed
            .into_iter()
            .next()
            .ok_or_else(|| ServiceError::NotFound("acl".into()))
    }
}
