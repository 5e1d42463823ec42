//! The access service: turns a principal and a request into passes. Every service function
//! reaches tenant data through these helpers, which load the organization's policy, read the
//! record being opened inside the principal's organization, and hand its facts to
//! `holdfast_core::authz`.
//!
//! # 403 or 404
//!
//! * Anything in another organization, and any object the credential may not read, answers
//!   404 exactly like an object that does not exist: ids in other projects or organizations
//!   leak nothing.
//! * An object the credential may read, but not act on as asked (a viewer updating, a
//!   read-only key writing), answers 403: the caller already knows it exists.
//! * Organization-level actions (creating projects, administering groups, roles, ACLs,
//!   members, keys of others, reading the audit log) answer 403 when not allowed: the caller's
//!   own organization is no secret to them.
//! * Without a valid key: 401.
//!
//! # Freshness
//!
//! The policy of an organization is cached per process. A change made through this process
//! replaces the cached copy at once. A change made by another process (the CLI, another
//! replica) increments the organization's policy version, which is checked at most
//! [`POLICY_CHECK`] after the last check, and at once for a user the cached policy does not
//! know.

use crate::{Result, ServiceError, Services};
use holdfast_core::authz::{
    self, Kind, ObjectFacts, ObjectPass, OrgPass, Permission, Policy, Principal, ProjectPass,
    Target,
};
use holdfast_core::object::ObjectType;
use holdfast_store::{ObjectRecord, ProjectRecord};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const POLICY_CHECK: Duration = Duration::from_secs(1);

struct Cached {
    policy: Arc<Policy>,
    version: i64,
    checked: Instant,
}

#[derive(Default)]
pub struct PolicyCache {
    entries: Mutex<HashMap<String, Cached>>,
    /// Answered from the cache; confirmed current by the store's version; loaded again.
    pub hits: AtomicU64,
    pub revalidated: AtomicU64,
    pub misses: AtomicU64,
}

impl std::fmt::Debug for PolicyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyCache")
    }
}

impl PolicyCache {
    fn get(&self, org_id: &str) -> Option<(Arc<Policy>, i64, Instant)> {
        let e = self.entries.lock().ok()?;
        e.get(org_id)
            .map(|c| (c.policy.clone(), c.version, c.checked))
    }
    fn put(&self, org_id: &str, policy: Arc<Policy>, version: i64) {
        if let Ok(mut e) = self.entries.lock() {
            e.insert(
                org_id.to_owned(),
                Cached {
                    policy,
                    version,
                    checked: Instant::now(),
                },
            );
        }
    }
    fn forget(&self, org_id: &str) {
        if let Ok(mut e) = self.entries.lock() {
            e.remove(org_id);
        }
    }
}

impl Services {
    /// The lookup pass for the principal's own organization.
    pub fn lookup(&self, principal: &Principal) -> Result<OrgPass> {
        Ok(authz::org_lookup(principal, &principal.org_id)?)
    }

    /// The principal's organization's policy, fresh as described in the module header.
    pub async fn policy(&self, principal: &Principal) -> Result<Arc<Policy>> {
        let org = &principal.org_id;
        let cached = self.policies.get(org);
        if let Some((policy, _, checked)) = &cached
            && checked.elapsed() < POLICY_CHECK
            && policy.knows(&principal.user_id)
        {
            self.policies.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(policy.clone());
        }
        let lookup = self.lookup(principal)?;
        if let Some((policy, version, _)) = cached
            && self.store.policy_version(&lookup).await? == version
        {
            self.policies.revalidated.fetch_add(1, Ordering::Relaxed);
            self.policies.put(org, policy.clone(), version);
            return Ok(policy);
        }
        self.policies.misses.fetch_add(1, Ordering::Relaxed);
        let (version, policy) = self.store.load_policy(&lookup).await?;
        let policy = Arc::new(policy);
        self.policies.put(org, policy.clone(), version);
        Ok(policy)
    }

    /// Lookups of the policy and API-key caches, as (cache, result, count).
    pub fn cache_stats(&self) -> [(&'static str, &'static str, u64); 5] {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("policy", "hit", n(&self.policies.hits)),
            ("policy", "revalidated", n(&self.policies.revalidated)),
            ("policy", "miss", n(&self.policies.misses)),
            ("api_key", "hit", n(&self.keys.cache_hits)),
            ("api_key", "miss", n(&self.keys.cache_misses)),
        ]
    }

    /// Drops the cached policy after a change made through this process.
    pub fn policy_changed(&self, org_id: &str) {
        self.policies.forget(org_id);
    }

    /// A denial of `permission` on `kind`: 403 if the credential may read `shown` (the object
    /// named in the request), else 404 (see the module header).
    pub(crate) fn denial(
        &self,
        principal: &Principal,
        policy: &Policy,
        shown: &Target<'_>,
        permission: Permission,
        kind: Kind,
    ) -> ServiceError {
        if principal.may(policy, Permission::Read, shown) {
            ServiceError::Forbidden(format!(
                "this credential lacks permission {} on {} here",
                permission.as_str(),
                kind.as_str()
            ))
        } else {
            ServiceError::NotFound(shown.kind.as_str().to_owned())
        }
    }

    /// An organization-level decision; a denial is 403.
    pub async fn org_grant(
        &self,
        principal: &Principal,
        permission: Permission,
        kind: Kind,
    ) -> Result<OrgPass> {
        let policy = self.policy(principal).await?;
        authz::org_grant(principal, &policy, permission, kind).map_err(|_| {
            ServiceError::Forbidden(format!(
                "missing permission {} on {} in this organization",
                permission.as_str(),
                kind.as_str()
            ))
        })
    }

    /// True (and recorded as a read) when the principal may read `target`; used to filter
    /// lists.
    pub fn can_see(&self, principal: &Principal, policy: &Policy, target: &Target<'_>) -> bool {
        let allowed = principal.may(policy, Permission::Read, target);
        if allowed {
            let id = target.object_id.or(target.project_id);
            principal.note(target.kind, id, Permission::Read, true);
        }
        allowed
    }

    /// Opens a project for `permission` on `kind` (`Project` itself, or the kind of a child
    /// being created in it).
    pub async fn project_pass(
        &self,
        principal: &Principal,
        project_id: &str,
        permission: Permission,
        kind: Kind,
    ) -> Result<(ProjectRecord, ProjectPass)> {
        let lookup = self.lookup(principal)?;
        let policy = self.policy(principal).await?;
        let project = self.store.get_project(&lookup, project_id).await?;
        let pass = self.pass_on_project(principal, &policy, &project, permission, kind)?;
        Ok((project, pass))
    }

    fn pass_on_project(
        &self,
        principal: &Principal,
        policy: &Policy,
        project: &ProjectRecord,
        permission: Permission,
        kind: Kind,
    ) -> Result<ProjectPass> {
        authz::project_pass(
            principal,
            policy,
            permission,
            kind,
            &project.org_id,
            &project.id,
        )
        .map_err(|_| {
            self.denial(
                principal,
                policy,
                &Target::project(Kind::Project, &project.id),
                permission,
                kind,
            )
        })
    }

    /// Opens a deleted project to restore it: the credential must be able to read it and
    /// to delete it, as its policy says (grants stay while it is deleted).
    pub async fn deleted_project_pass(
        &self,
        principal: &Principal,
        id: &str,
        permission: Permission,
    ) -> Result<(ProjectRecord, ProjectPass)> {
        let lookup = self.lookup(principal)?;
        let policy = self.policy(principal).await?;
        let project = self.store.get_deleted_project(&lookup, id).await?;
        self.pass_on_project(
            principal,
            &policy,
            &project,
            Permission::Read,
            Kind::Project,
        )?;
        let pass = self.pass_on_project(principal, &policy, &project, permission, Kind::Project)?;
        Ok((project, pass))
    }

    /// The same for a deleted experiment, dataset or prompt; also whether its project is
    /// live.
    pub async fn deleted_object_pass(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
        permission: Permission,
    ) -> Result<(ObjectRecord, bool, ObjectPass)> {
        let lookup = self.lookup(principal)?;
        let policy = self.policy(principal).await?;
        let (object, live) = self.store.get_deleted_object(&lookup, kind, id).await?;
        self.object_pass_for(principal, &policy, &object, Permission::Read)?;
        let pass = self.object_pass_for(principal, &policy, &object, permission)?;
        Ok((object, live, pass))
    }

    /// Opens an experiment, dataset or prompt by id; project logs are opened by project id.
    pub async fn object_pass(
        &self,
        principal: &Principal,
        object_type: ObjectType,
        id: &str,
        permission: Permission,
    ) -> Result<(Option<ObjectRecord>, ObjectPass)> {
        let lookup = self.lookup(principal)?;
        let policy = self.policy(principal).await?;
        let (object, org_id, project_id) = if object_type == ObjectType::ProjectLogs {
            let project = self.store.get_project(&lookup, id).await?;
            (None, project.org_id, project.id)
        } else {
            let object = self.store.get_object(&lookup, object_type, id).await?;
            let (org_id, project_id) = (object.org_id.clone(), object.project_id.clone());
            (Some(object), org_id, project_id)
        };
        let object_id = object
            .as_ref()
            .map_or(project_id.as_str(), |o| o.id.as_str());
        let facts = ObjectFacts {
            org_id: &org_id,
            project_id: &project_id,
            object_type,
            object_id,
        };
        let pass = authz::object_pass(principal, &policy, permission, facts).map_err(|_| {
            self.denial(
                principal,
                &policy,
                &Target::object(Kind::of(object_type), &project_id, object_id),
                permission,
                Kind::of(object_type),
            )
        })?;
        Ok((object, pass))
    }

    /// For operations whose answer carries the object (patch, delete): the credential must be
    /// able to read it too, so that a write-only key learns nothing through them.
    pub async fn object_pass_showing(
        &self,
        principal: &Principal,
        object_type: ObjectType,
        id: &str,
        permission: Permission,
    ) -> Result<(Option<ObjectRecord>, ObjectPass)> {
        self.object_pass(principal, object_type, id, Permission::Read)
            .await?;
        self.object_pass(principal, object_type, id, permission)
            .await
    }

    /// The same for a project.
    pub async fn project_pass_showing(
        &self,
        principal: &Principal,
        project_id: &str,
        permission: Permission,
    ) -> Result<(ProjectRecord, ProjectPass)> {
        self.project_pass(principal, project_id, Permission::Read, Kind::Project)
            .await?;
        self.project_pass(principal, project_id, permission, Kind::Project)
            .await
    }

    /// A pass on an object whose record the caller already read through a lookup pass.
    pub fn object_pass_for(
        &self,
        principal: &Principal,
        policy: &Policy,
        object: &ObjectRecord,
        permission: Permission,
    ) -> Result<ObjectPass> {
        let facts = ObjectFacts {
            org_id: &object.org_id,
            project_id: &object.project_id,
            object_type: object.kind,
            object_id: &object.id,
        };
        authz::object_pass(principal, policy, permission, facts).map_err(|_| {
            self.denial(
                principal,
                policy,
                &Target::object(Kind::of(object.kind), &object.project_id, &object.id),
                permission,
                Kind::of(object.kind),
            )
        })
    }

    /// Refuses, before a body is read, a credential that may write rows nowhere in the
    /// organization (a viewer, a read-only key).
    pub async fn may_write_rows(&self, principal: &Principal) -> Result<()> {
        let policy = self.policy(principal).await?;
        authz::org_wide_pass(principal, &policy, Permission::Update)
            .map(|_| ())
            .map_err(|_| ServiceError::Forbidden("this credential may not write rows".into()))
    }

    /// A pass on organization-wide data no single object owns (overflow batches).
    pub async fn org_wide_pass(
        &self,
        principal: &Principal,
        permission: Permission,
    ) -> Result<OrgPass> {
        let policy = self.policy(principal).await?;
        authz::org_wide_pass(principal, &policy, permission).map_err(|_| {
            ServiceError::Forbidden(format!(
                "this credential may not {} attachments",
                permission.as_str()
            ))
        })
    }
}
