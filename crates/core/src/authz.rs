//! Authorization: the permission model, its resolution algorithm, and the passes that prove a
//! decision.
//!
//! # Model (compatible with Braintrust's `/v1/acl`, `/v1/role`, `/v1/group`)
//!
//! * Permissions: `create`, `read`, `update`, `delete`, and `create_acls`, `read_acls`,
//!   `update_acls`, `delete_acls` (administering the grants on an object).
//! * Objects form a tree: organization → project → experiment | dataset | prompt | project
//!   logs. Organization-level administrative objects (groups, roles, members, the audit log,
//!   provider secrets) hang directly under the organization.
//! * An ACL grants, on one object, to one user or one group, either one permission
//!   (optionally restricted to an object type) or a role.
//! * A role is a set of (permission, restrict_object_type) pairs plus the roles it includes.
//!   A group holds users and the groups it includes (a member of an included group is a member
//!   of the including group).
//!
//! # Resolution: may user U do P on target T?
//!
//! T is described by its kind (the type of the thing acted on; for a create, the type of the
//! thing being created) and its chain of ancestors: the organization, then the project if
//! any, then the object itself if it exists.
//!
//! 1. U's subjects are U itself and every group that holds U, directly or through included
//!    groups (a fixed point, so cycles are harmless).
//! 2. The candidate ACLs are those on any object of T's chain whose subject is one of U's
//!    subjects. A grant made higher up is inherited by everything below it.
//! 3. Each candidate ACL expands to (permission, restriction) pairs: a direct permission gives
//!    itself with the ACL's `restrict_object_type`; a role gives its pairs and, recursively,
//!    those of the roles it includes (cycles are harmless). As in Braintrust, a restriction on
//!    the ACL itself is only allowed with a direct permission.
//! 4. U may do P on T if some pair has permission P and either no restriction or a restriction
//!    equal to T's kind. Nothing else grants anything: the default is deny.
//!
//! An API key then narrows, never widens: it acts for its user (so it never exceeds the
//! user's current permissions), and its [`KeyScope`] may further limit it to a set of
//! projects (organization-level targets are then refused) and to a capability: `read` allows
//! only `read`; `ingest` allows only creating projects, experiments and datasets (the SDKs
//! register before they log) and writing rows (create/update on experiments, datasets and
//! project logs); `full` adds nothing to remove.
//!
//! # Passes
//!
//! Store methods that touch tenant data take a pass, and passes are made only here:
//! * [`OrgPass`]: the principal belongs to the organization. As a lookup it scopes reads of
//!   records needed to decide (a project's organization, an object's project); as a grant
//!   (made by [`org_grant`]) it also carries an organization-level decision.
//! * [`ProjectPass`] and [`ObjectPass`]: a decision on a project, or on an object, made by
//!   [`project_pass`] and [`object_pass`] from the facts read from the record.
//!
//! Intentional bypasses (bootstrap, authentication itself, the operator CLI, background jobs)
//! use [`SystemPass::new`], which names its reason.

use crate::object::ObjectType;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
    CreateAcls,
    ReadAcls,
    UpdateAcls,
    DeleteAcls,
}

impl Permission {
    pub const ALL: [Self; 8] = [
        Self::Create,
        Self::Read,
        Self::Update,
        Self::Delete,
        Self::CreateAcls,
        Self::ReadAcls,
        Self::UpdateAcls,
        Self::DeleteAcls,
    ];
    pub const CRUD: [Self; 4] = [Self::Create, Self::Read, Self::Update, Self::Delete];

    pub fn writes(self) -> bool {
        !matches!(self, Self::Read | Self::ReadAcls)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::CreateAcls => "create_acls",
            Self::ReadAcls => "read_acls",
            Self::UpdateAcls => "update_acls",
            Self::DeleteAcls => "delete_acls",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The types of object a grant can be made on, or restricted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Organization,
    Project,
    Experiment,
    Dataset,
    Prompt,
    ProjectLog,
    Group,
    Role,
    OrgMember,
    OrgAuditLogs,
    AiSecret,
    /// Starting exports of the organization's data through the API, and downloading them.
    OrgExport,
}

impl Kind {
    pub const ALL: [Self; 12] = [
        Self::Organization,
        Self::Project,
        Self::Experiment,
        Self::Dataset,
        Self::Prompt,
        Self::ProjectLog,
        Self::Group,
        Self::Role,
        Self::OrgMember,
        Self::OrgAuditLogs,
        Self::AiSecret,
        Self::OrgExport,
    ];
    /// Projects and everything that lives in them.
    pub const DATA: [Self; 5] = [
        Self::Project,
        Self::Experiment,
        Self::Dataset,
        Self::Prompt,
        Self::ProjectLog,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "organization",
            Self::Project => "project",
            Self::Experiment => "experiment",
            Self::Dataset => "dataset",
            Self::Prompt => "prompt",
            Self::ProjectLog => "project_log",
            Self::Group => "group",
            Self::Role => "role",
            Self::OrgMember => "org_member",
            Self::OrgAuditLogs => "org_audit_logs",
            Self::AiSecret => "ai_secret",
            Self::OrgExport => "org_export",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn of(object_type: ObjectType) -> Self {
        match object_type {
            ObjectType::Experiment => Self::Experiment,
            ObjectType::Dataset => Self::Dataset,
            ObjectType::Prompt => Self::Prompt,
            ObjectType::ProjectLogs => Self::ProjectLog,
        }
    }

    /// Kinds whose objects sit inside a project (their ACL object id is their own id; for
    /// project logs, the project's id).
    pub fn in_project(self) -> bool {
        matches!(
            self,
            Self::Experiment | Self::Dataset | Self::Prompt | Self::ProjectLog
        )
    }
}

/// Who an ACL grants to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    User(String),
    Group(String),
}

/// What an ACL grants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grant {
    Permission(Permission),
    Role(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Acl {
    pub object_type: Kind,
    pub object_id: String,
    pub subject: Subject,
    pub grant: Grant,
    pub restrict_object_type: Option<Kind>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupDef {
    pub member_users: Vec<String>,
    pub member_groups: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleDef {
    pub member_permissions: Vec<(Permission, Option<Kind>)>,
    pub member_roles: Vec<String>,
}

/// The built-in roles, shared by every organization (their `org_id` is null on the wire).
pub const OWNER_ROLE_ID: &str = "00000000-0000-4000-8000-0000000000a1";
pub const ENGINEER_ROLE_ID: &str = "00000000-0000-4000-8000-0000000000a2";
pub const VIEWER_ROLE_ID: &str = "00000000-0000-4000-8000-0000000000a3";

/// The built-in groups every organization gets, with the role each holds on it.
pub const BUILTIN_GROUPS: [(&str, &str, &str); 3] = [
    ("Owners", OWNER_ROLE_ID, "Full control of the organization"),
    (
        "Engineers",
        ENGINEER_ROLE_ID,
        "Create, read, update and delete projects and everything in them",
    ),
    (
        "Viewers",
        VIEWER_ROLE_ID,
        "Read projects and everything in them",
    ),
];

/// (id, name, description, definition) of each built-in role.
pub fn builtin_roles() -> Vec<(&'static str, &'static str, &'static str, RoleDef)> {
    let on_data = |perms: &[Permission]| {
        perms
            .iter()
            .flat_map(|p| Kind::DATA.into_iter().map(move |k| (*p, Some(k))))
            .collect()
    };
    vec![
        (
            OWNER_ROLE_ID,
            "Owner",
            "Every permission on everything",
            RoleDef {
                member_permissions: Permission::ALL.into_iter().map(|p| (p, None)).collect(),
                member_roles: Vec::new(),
            },
        ),
        (
            ENGINEER_ROLE_ID,
            "Engineer",
            "Create, read, update and delete on projects, experiments, datasets, prompts and logs",
            RoleDef {
                member_permissions: on_data(&Permission::CRUD),
                member_roles: Vec::new(),
            },
        ),
        (
            VIEWER_ROLE_ID,
            "Viewer",
            "Read projects, experiments, datasets, prompts and logs",
            RoleDef {
                member_permissions: on_data(&[Permission::Read]),
                member_roles: Vec::new(),
            },
        ),
    ]
}

/// One organization's groups, roles and ACLs: everything a decision reads.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    org_id: String,
    groups: HashMap<String, GroupDef>,
    roles: HashMap<String, RoleDef>,
    acls: Vec<Acl>,
}

/// What a decision is about: the kind acted on and the ancestors that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub kind: Kind,
    pub project_id: Option<&'a str>,
    /// The object itself (experiment, dataset or prompt id; for project logs, the project id).
    pub object_id: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn org(kind: Kind) -> Self {
        Self {
            kind,
            project_id: None,
            object_id: None,
        }
    }
    pub fn project(kind: Kind, project_id: &'a str) -> Self {
        Self {
            kind,
            project_id: Some(project_id),
            object_id: None,
        }
    }
    pub fn object(kind: Kind, project_id: &'a str, object_id: &'a str) -> Self {
        Self {
            kind,
            project_id: Some(project_id),
            object_id: Some(object_id),
        }
    }
}

impl Policy {
    pub fn new(
        org_id: &str,
        groups: HashMap<String, GroupDef>,
        custom_roles: HashMap<String, RoleDef>,
        acls: Vec<Acl>,
    ) -> Self {
        let mut roles = custom_roles;
        for (id, _, _, def) in builtin_roles() {
            roles.insert(id.to_owned(), def);
        }
        Self {
            org_id: org_id.to_owned(),
            groups,
            roles,
            acls,
        }
    }

    pub fn org_id(&self) -> &str {
        &self.org_id
    }

    /// True when some group holds the user directly or some ACL names them: a policy loaded
    /// before the user was added does not know them.
    pub fn knows(&self, user_id: &str) -> bool {
        self.groups
            .values()
            .any(|g| g.member_users.iter().any(|u| u == user_id))
            || self
                .acls
                .iter()
                .any(|a| matches!(&a.subject, Subject::User(u) if u == user_id))
    }

    /// The groups that hold `user_id`, directly or through included groups.
    pub fn groups_of(&self, user_id: &str) -> HashSet<&str> {
        self.with_including_groups(
            self.groups
                .iter()
                .filter(|(_, g)| g.member_users.iter().any(|u| u == user_id))
                .map(|(id, _)| id.as_str())
                .collect(),
        )
    }

    /// `found` and every group that includes one of them, directly or through others (a
    /// fixed point, so cycles are harmless).
    fn with_including_groups<'a>(&'a self, mut found: HashSet<&'a str>) -> HashSet<&'a str> {
        loop {
            let more: Vec<&str> = self
                .groups
                .iter()
                .filter(|(id, g)| {
                    !found.contains(id.as_str())
                        && g.member_groups.iter().any(|m| found.contains(m.as_str()))
                })
                .map(|(id, _)| id.as_str())
                .collect();
            if more.is_empty() {
                return found;
            }
            found.extend(more);
        }
    }

    /// Every (permission, restriction) a role gives, including through included roles.
    pub fn role_permissions(&self, role_id: &str) -> Vec<(Permission, Option<Kind>)> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut todo = vec![role_id];
        while let Some(id) = todo.pop() {
            if !seen.insert(id) {
                continue;
            }
            if let Some(role) = self.roles.get(id) {
                out.extend(role.member_permissions.iter().copied());
                todo.extend(role.member_roles.iter().map(String::as_str));
            }
        }
        out
    }

    fn on_chain(&self, acl: &Acl, target: &Target<'_>) -> bool {
        match acl.object_type {
            Kind::Organization => acl.object_id == self.org_id,
            Kind::Project => target.project_id == Some(acl.object_id.as_str()),
            k if k.in_project() => {
                k == target.kind && target.object_id == Some(acl.object_id.as_str())
            }
            // Grants on a group, role or other organization-level object apply to it alone.
            k => k == target.kind && target.object_id == Some(acl.object_id.as_str()),
        }
    }

    /// The resolution algorithm of the module header.
    pub fn allows(&self, user_id: &str, permission: Permission, target: &Target<'_>) -> bool {
        let groups = self.groups_of(user_id);
        let is_subject = |s: &Subject| match s {
            Subject::User(u) => u == user_id,
            Subject::Group(g) => groups.contains(g.as_str()),
        };
        let fits = |restrict: Option<Kind>| restrict.is_none_or(|k| k == target.kind);
        self.acls
            .iter()
            .filter(|acl| is_subject(&acl.subject) && self.on_chain(acl, target))
            .any(|acl| match &acl.grant {
                Grant::Permission(p) => *p == permission && fits(acl.restrict_object_type),
                Grant::Role(role) => self
                    .role_permissions(role)
                    .into_iter()
                    .any(|(p, r)| p == permission && fits(acl.restrict_object_type.or(r))),
            })
    }

    /// What joining `group_id` grants: every ACL whose subject is that group or a group that
    /// includes it (membership is inherited upwards), with the (permission, restriction)
    /// pairs each gives.
    pub fn grants_of_group(&self, group_id: &str) -> Vec<(&Acl, Vec<PermissionPair>)> {
        let holders = self.with_including_groups(HashSet::from([group_id]));
        self.acls
            .iter()
            .filter(|a| matches!(&a.subject, Subject::Group(g) if holders.contains(g.as_str())))
            .map(|a| {
                let pairs = match &a.grant {
                    Grant::Permission(p) => vec![(*p, a.restrict_object_type)],
                    Grant::Role(role) => self
                        .role_permissions(role)
                        .into_iter()
                        .map(|(p, r)| (p, a.restrict_object_type.or(r)))
                        .collect(),
                };
                (a, pairs)
            })
            .collect()
    }

    /// True when some grant gives the user `permission` on anything at all (used for
    /// organization-wide resources such as attachments, which no single object owns).
    pub fn grants_anywhere(&self, user_id: &str, permission: Permission) -> bool {
        let groups = self.groups_of(user_id);
        self.acls.iter().any(|acl| {
            let mine = match &acl.subject {
                Subject::User(u) => u == user_id,
                Subject::Group(g) => groups.contains(g.as_str()),
            };
            mine && match &acl.grant {
                Grant::Permission(p) => *p == permission,
                Grant::Role(role) => self
                    .role_permissions(role)
                    .iter()
                    .any(|(p, _)| *p == permission),
            }
        })
    }
}

/// A permission and the object type it is restricted to, if any.
pub type PermissionPair = (Permission, Option<Kind>);

/// Where a permission on a kind of project object (or on projects themselves) may hold: a
/// superset of the targets [`Policy::allows`] admits, narrow enough to filter a list in the
/// store's query. Each target must still be decided; this only keeps the rest unread.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reach {
    /// Anywhere in the organization.
    pub everywhere: bool,
    /// Within these projects.
    pub projects: BTreeSet<String>,
    /// On these objects (of the kind asked about).
    pub objects: BTreeSet<String>,
}

impl Reach {
    /// Everywhere in the organization (an operator's export, an organization-wide grant).
    pub fn all() -> Self {
        Self {
            everywhere: true,
            ..Self::default()
        }
    }

    pub fn nowhere(&self) -> bool {
        !self.everywhere && self.projects.is_empty() && self.objects.is_empty()
    }
}

impl Policy {
    /// Where `user_id` may have `permission` on targets of `kind` (a project, or a kind that
    /// lives in projects): the grants on the chain of such targets, read without a target.
    pub fn reach(&self, user_id: &str, permission: Permission, kind: Kind) -> Reach {
        let groups = self.groups_of(user_id);
        let mut reach = Reach::default();
        for acl in &self.acls {
            let mine = match &acl.subject {
                Subject::User(u) => u == user_id,
                Subject::Group(g) => groups.contains(g.as_str()),
            };
            let fits = |restrict: Option<Kind>| restrict.is_none_or(|k| k == kind);
            let gives = mine
                && match &acl.grant {
                    Grant::Permission(p) => *p == permission && fits(acl.restrict_object_type),
                    Grant::Role(role) => self
                        .role_permissions(role)
                        .into_iter()
                        .any(|(p, r)| p == permission && fits(acl.restrict_object_type.or(r))),
                };
            if !gives {
                continue;
            }
            match acl.object_type {
                Kind::Organization if acl.object_id == self.org_id => reach.everywhere = true,
                Kind::Project => {
                    reach.projects.insert(acl.object_id.clone());
                }
                k if k == kind && k.in_project() => {
                    reach.objects.insert(acl.object_id.clone());
                }
                _ => {}
            }
        }
        reach
    }
}

/// What a key may be used for, on top of its user's permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Capability {
    /// Create projects, experiments and datasets, and write rows. Never read.
    Ingest,
    /// Read only.
    Read,
    #[default]
    Full,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Read => "read",
            Self::Full => "full",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ingest" => Self::Ingest,
            "read" => Self::Read,
            "full" => Self::Full,
            _ => return None,
        })
    }
}

/// The limits a key carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyScope {
    /// `None`: every project the user may reach.
    pub projects: Option<Vec<String>>,
    pub capability: Capability,
}

impl KeyScope {
    pub fn allows(&self, permission: Permission, target: &Target<'_>) -> bool {
        if let Some(projects) = &self.projects {
            match target.project_id {
                Some(p) if projects.iter().any(|x| x == p) => {}
                _ => return false,
            }
        }
        match self.capability {
            Capability::Full => true,
            Capability::Read => permission == Permission::Read,
            Capability::Ingest => match permission {
                Permission::Create => matches!(
                    target.kind,
                    Kind::Project | Kind::Experiment | Kind::Dataset | Kind::ProjectLog
                ),
                Permission::Update => matches!(
                    target.kind,
                    Kind::Experiment | Kind::Dataset | Kind::ProjectLog
                ),
                _ => false,
            },
        }
    }
}

/// Who is asking: a user inside an organization, authenticated by an API key with a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub org_id: String,
    pub key_id: String,
    pub scope: KeyScope,
    /// When the key expires (unix seconds): keys it creates expire no later.
    pub expires_at: Option<i64>,
    /// Every decision made for this principal during one request, for the audit log.
    pub trail: Trail,
}

/// One decision: what was asked on which object, and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub kind: Kind,
    /// The object's id; `None` for an organization-level decision.
    pub id: Option<String>,
    pub permission: Permission,
    pub allowed: bool,
}

/// The decisions of one request, and brief notes of the changes it made. Clones share it.
/// It takes no part in comparisons.
#[derive(Clone, Default)]
pub struct Trail(Arc<Mutex<TrailInner>>);

#[derive(Clone, Default)]
struct TrailInner {
    accesses: Vec<Access>,
    more: usize,
    changes: Vec<serde_json::Value>,
    /// The request (action, client address, request id), for an audit entry written with a
    /// change.
    request: Option<RequestContext>,
    /// How many changes the entry committed with them covered.
    audited_changes: Option<usize>,
}

/// The request a trail belongs to, as its audit entry names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// `METHOD /route`.
    pub action: String,
    /// The client's address.
    pub from: Option<String>,
    pub request_id: Option<String>,
}

/// Decisions kept per request; beyond it only a count is kept.
pub const TRAIL_MAX: usize = 200;

impl Trail {
    pub fn record(&self, access: Access) {
        if let Ok(mut t) = self.0.lock() {
            if t.accesses.contains(&access) {
                return;
            }
            if t.accesses.len() < TRAIL_MAX {
                t.accesses.push(access);
            } else {
                t.more += 1;
            }
        }
    }
    /// Notes a change in brief (what, before and after) for the audit log.
    pub fn change(&self, note: serde_json::Value) {
        if let Ok(mut t) = self.0.lock()
            && t.changes.len() < TRAIL_MAX
        {
            t.changes.push(note);
        }
    }
    /// The decisions kept, and how many more were made.
    pub fn snapshot(&self) -> (Vec<Access>, usize) {
        self.0
            .lock()
            .map(|t| (t.accesses.clone(), t.more))
            .unwrap_or_default()
    }
    pub fn changes(&self) -> Vec<serde_json::Value> {
        self.0.lock().map(|t| t.changes.clone()).unwrap_or_default()
    }
    /// Names the request this trail belongs to.
    pub fn set_request(&self, request: RequestContext) {
        if let Ok(mut t) = self.0.lock() {
            t.request = Some(request);
        }
    }
    pub fn request(&self) -> Option<RequestContext> {
        self.0.lock().ok().and_then(|t| t.request.clone())
    }
    /// Records that the request's audit entry was committed with its changes so far.
    pub fn mark_audited(&self) {
        if let Ok(mut t) = self.0.lock() {
            t.audited_changes = Some(t.changes.len());
        }
    }
    /// True when an entry committed with the changes covers every change noted since.
    pub fn audited(&self) -> bool {
        self.0
            .lock()
            .is_ok_and(|t| t.audited_changes == Some(t.changes.len()))
    }
}

impl PartialEq for Trail {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Trail {}
impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trail")
    }
}

impl Principal {
    /// Benchmark builds only: the decision is short-circuited to "same organization", so that
    /// `holdfast bench authz` can measure what the real decision costs.
    #[cfg(feature = "authz-bypass")]
    pub fn may(&self, policy: &Policy, _permission: Permission, _target: &Target<'_>) -> bool {
        policy.org_id == self.org_id
    }

    pub fn note(&self, kind: Kind, id: Option<&str>, permission: Permission, allowed: bool) {
        self.trail.record(Access {
            kind,
            id: id.map(str::to_owned),
            permission,
            allowed,
        });
    }

    /// Where this principal may have `permission` on targets of `kind`: the user's reach,
    /// narrowed to the key's projects.
    pub fn reach(&self, policy: &Policy, permission: Permission, kind: Kind) -> Reach {
        if policy.org_id != self.org_id {
            return Reach::default();
        }
        if cfg!(feature = "authz-bypass") {
            return Reach {
                everywhere: true,
                ..Reach::default()
            };
        }
        let mut reach = policy.reach(&self.user_id, permission, kind);
        if let Some(projects) = &self.scope.projects {
            if reach.everywhere {
                reach.everywhere = false;
                reach.projects = projects.iter().cloned().collect();
            } else {
                reach.projects.retain(|p| projects.contains(p));
            }
            // Objects outside the key's projects are refused by the decision itself; their
            // projects are not known here, so they stay in (a superset is all this promises).
        }
        reach
    }

    /// The full decision: the user's permissions, narrowed by the key.
    #[cfg(not(feature = "authz-bypass"))]
    pub fn may(&self, policy: &Policy, permission: Permission, target: &Target<'_>) -> bool {
        policy.org_id == self.org_id
            && self.scope.allows(permission, target)
            && policy.allows(&self.user_id, permission, target)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access denied")]
pub struct Denied;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgPass {
    org_id: String,
    user_id: String,
    /// `None` for a lookup pass; the decision made for a grant.
    grant: Option<(Permission, Kind)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectPass {
    org: OrgPass,
    project_id: String,
    permission: Permission,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPass {
    org: OrgPass,
    project_id: String,
    object_type: ObjectType,
    object_id: String,
    permission: Permission,
}

/// The authority of a verified signed URL: the one transfer its grant names, of one blob of
/// one organization. Made only from a grant whose signature and expiry were checked; the
/// signed-URL routes have no user, and this is all they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantPass {
    org_id: String,
    key: String,
}

impl GrantPass {
    /// `org_id` and `key` must come from a grant whose signature was verified.
    pub fn verified(org_id: &str, key: &str) -> Self {
        Self {
            org_id: org_id.to_owned(),
            key: key.to_owned(),
        }
    }
    pub fn org_id(&self) -> &str {
        &self.org_id
    }
    pub fn key(&self) -> &str {
        &self.key
    }
    /// A lookup pass in the grant's organization (for its storage quota).
    pub fn org_lookup(&self) -> OrgPass {
        OrgPass {
            org_id: self.org_id.clone(),
            user_id: String::new(),
            grant: None,
        }
    }
}

/// The authority to find an API key by its id, to authenticate a request: before there is a
/// user, and for nothing else.
#[derive(Debug, Clone, Copy)]
pub struct KeyLookupPass(());

impl KeyLookupPass {
    pub fn authenticating() -> Self {
        Self(())
    }
}

/// A deliberate bypass of the permission model, with the reason written at the call site:
/// for operator commands and the server's background jobs, never on a user's request.
#[derive(Debug, Clone, Copy)]
pub struct SystemPass {
    reason: &'static str,
}

impl SystemPass {
    pub fn new(reason: &'static str) -> Self {
        Self { reason }
    }
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl OrgPass {
    pub fn org_id(&self) -> &str {
        &self.org_id
    }
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
    /// The decision this pass carries: `None` for a lookup pass.
    pub fn grant(&self) -> Option<(Permission, Kind)> {
        self.grant
    }
    fn lookup(&self) -> Self {
        Self {
            grant: None,
            ..self.clone()
        }
    }
}

impl ProjectPass {
    /// A lookup pass for the project's organization.
    pub fn org(&self) -> &OrgPass {
        &self.org
    }
    pub fn org_id(&self) -> &str {
        &self.org.org_id
    }
    pub fn project_id(&self) -> &str {
        &self.project_id
    }
    pub fn permission(&self) -> Permission {
        self.permission
    }
    /// The kind the decision was made for: `Project`, or the kind of a child being created.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

impl ObjectPass {
    /// A lookup pass for the object's organization.
    pub fn org(&self) -> &OrgPass {
        &self.org
    }
    pub fn org_id(&self) -> &str {
        &self.org.org_id
    }
    pub fn project_id(&self) -> &str {
        &self.project_id
    }
    pub fn object_type(&self) -> ObjectType {
        self.object_type
    }
    pub fn object_id(&self) -> &str {
        &self.object_id
    }
    pub fn permission(&self) -> Permission {
        self.permission
    }
}

/// An organization lookup pass for work done for no user (the operator CLI, background jobs).
pub fn system_org_lookup(_why: &SystemPass, org_id: &str) -> OrgPass {
    OrgPass {
        org_id: org_id.to_owned(),
        user_id: String::new(),
        grant: None,
    }
}

/// A read-only pass on an object found through [`system_org_lookup`], for work done for no
/// user: an operator's export reads every object of an organization.
pub fn system_read_pass(
    why: &SystemPass,
    org_id: &str,
    project_id: &str,
    object_type: ObjectType,
    object_id: &str,
) -> ObjectPass {
    ObjectPass {
        org: system_org_lookup(why, org_id),
        project_id: project_id.to_owned(),
        object_type,
        object_id: object_id.to_owned(),
        permission: Permission::Read,
    }
}

/// A pass to delete rows of an object found through [`system_org_lookup`], for work done for
/// no user: a retention policy expires rows by writing their deletions.
pub fn system_delete_pass(
    why: &SystemPass,
    org_id: &str,
    project_id: &str,
    object_type: ObjectType,
    object_id: &str,
) -> ObjectPass {
    ObjectPass {
        permission: Permission::Delete,
        ..system_read_pass(why, org_id, project_id, object_type, object_id)
    }
}

/// A lookup pass: the principal belongs to `org_id`. It decides nothing else.
pub fn org_lookup(principal: &Principal, org_id: &str) -> Result<OrgPass, Denied> {
    if principal.org_id != org_id {
        return Err(Denied);
    }
    Ok(OrgPass {
        org_id: org_id.to_owned(),
        user_id: principal.user_id.clone(),
        grant: None,
    })
}

/// Decides `permission` on the organization-level target `kind` (creating a project,
/// administering groups, reading the audit log, ...).
pub fn org_grant(
    principal: &Principal,
    policy: &Policy,
    permission: Permission,
    kind: Kind,
) -> Result<OrgPass, Denied> {
    let mut pass = org_lookup(principal, policy.org_id())?;
    let allowed = principal.may(policy, permission, &Target::org(kind));
    principal.note(kind, None, permission, allowed);
    if !allowed {
        return Err(Denied);
    }
    pass.grant = Some((permission, kind));
    Ok(pass)
}

/// Decides `permission` on the project `project_id` (whose record says it belongs to
/// `project_org_id`), for `kind`: `Project` for the project itself, or the kind of a child
/// being created in it.
pub fn project_pass(
    principal: &Principal,
    policy: &Policy,
    permission: Permission,
    kind: Kind,
    project_org_id: &str,
    project_id: &str,
) -> Result<ProjectPass, Denied> {
    let org = org_lookup(principal, project_org_id)?;
    let allowed = policy.org_id() == project_org_id
        && principal.may(policy, permission, &Target::project(kind, project_id));
    principal.note(Kind::Project, Some(project_id), permission, allowed);
    if !allowed {
        return Err(Denied);
    }
    Ok(ProjectPass {
        org: org.lookup(),
        project_id: project_id.to_owned(),
        permission,
        kind,
    })
}

/// The facts read from an object's record that a decision needs.
#[derive(Debug, Clone, Copy)]
pub struct ObjectFacts<'a> {
    pub org_id: &'a str,
    pub project_id: &'a str,
    pub object_type: ObjectType,
    /// For project logs, the project id.
    pub object_id: &'a str,
}

/// Decides `permission` on one object.
pub fn object_pass(
    principal: &Principal,
    policy: &Policy,
    permission: Permission,
    facts: ObjectFacts<'_>,
) -> Result<ObjectPass, Denied> {
    let org = org_lookup(principal, facts.org_id)?;
    if facts.object_type == ObjectType::ProjectLogs && facts.object_id != facts.project_id {
        return Err(Denied);
    }
    let target = Target::object(
        Kind::of(facts.object_type),
        facts.project_id,
        facts.object_id,
    );
    let allowed = policy.org_id() == facts.org_id && principal.may(policy, permission, &target);
    principal.note(target.kind, Some(facts.object_id), permission, allowed);
    if !allowed {
        return Err(Denied);
    }
    Ok(ObjectPass {
        org,
        project_id: facts.project_id.to_owned(),
        object_type: facts.object_type,
        object_id: facts.object_id.to_owned(),
        permission,
    })
}

/// A decision to read or change the grants on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclPass {
    org: OrgPass,
    object_type: Kind,
    object_id: String,
    permission: Permission,
}

impl AclPass {
    pub fn org(&self) -> &OrgPass {
        &self.org
    }
    pub fn object_type(&self) -> Kind {
        self.object_type
    }
    pub fn object_id(&self) -> &str {
        &self.object_id
    }
    pub fn permission(&self) -> Permission {
        self.permission
    }
}

/// Decides `permission` (one of the `*_acls`) on the grants of an object. `project_id` is the
/// project the object sits in (for a project, its own id; `None` at organization level).
pub fn acl_pass(
    principal: &Principal,
    policy: &Policy,
    permission: Permission,
    object_type: Kind,
    project_id: Option<&str>,
    object_id: &str,
) -> Result<AclPass, Denied> {
    let org = org_lookup(principal, policy.org_id())?;
    let target = match object_type {
        Kind::Organization if object_id == policy.org_id() => Target::org(Kind::Organization),
        Kind::Organization => return Err(Denied),
        Kind::Project => Target::project(Kind::Project, object_id),
        k => Target {
            kind: k,
            project_id,
            object_id: Some(object_id),
        },
    };
    let allowed = matches!(
        permission,
        Permission::CreateAcls
            | Permission::ReadAcls
            | Permission::UpdateAcls
            | Permission::DeleteAcls
    ) && principal.may(policy, permission, &target);
    principal.note(object_type, Some(object_id), permission, allowed);
    if !allowed {
        return Err(Denied);
    }
    Ok(AclPass {
        org,
        object_type,
        object_id: object_id.to_owned(),
        permission,
    })
}

/// A decision on organization-wide data that no single object owns (attachments, uploaded
/// before the rows that refer to them): the user must hold `permission` somewhere in the
/// organization, and the key's capability must allow it on rows.
pub fn org_wide_pass(
    principal: &Principal,
    policy: &Policy,
    permission: Permission,
) -> Result<OrgPass, Denied> {
    let mut pass = org_lookup(principal, policy.org_id())?;
    let capability_allows = match principal.scope.capability {
        Capability::Full => true,
        Capability::Read => permission == Permission::Read,
        Capability::Ingest => matches!(permission, Permission::Create | Permission::Update),
    };
    let allowed = capability_allows && policy.grants_anywhere(&principal.user_id, permission);
    principal.note(Kind::Organization, None, permission, allowed);
    if !allowed {
        return Err(Denied);
    }
    pass.grant = Some((permission, Kind::Organization));
    Ok(pass)
}

#[cfg(test)]
mod tests;
