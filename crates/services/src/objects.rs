//! Organizations, keys, projects and the named objects in them: experiments, datasets and
//! prompts. REST and the SDKs' app-plane routes both call these.

use crate::{Result, ServiceError, Services, random};
use holdfast_api::objects::{
    CreateObject, CreateProject, InsertFunctions, InsertedFunction, NamedObject, PatchObject,
    PatchProject, PatchPrompt, Project, PutPrompt, RestoreRequest, Restored,
};
use holdfast_api::sdk::{LoginResponse, OrgInfo};
use holdfast_core::authz::{
    KeyScope, Kind, ObjectPass, Permission, Policy, Principal, Reach, SystemPass, Target,
};
use holdfast_core::clock::format_timestamp;
use holdfast_core::merge::take_control;
use holdfast_core::object::ObjectType;
use holdfast_core::xact::XactId;
use holdfast_store::{
    IncomingRow, ObjectRecord, OnNameConflict, OrgRecord, ProjectRecord, RowQuery, UserRecord,
};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

/// Filters and paging of `GET /v1/<collection>`.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
    pub name: Option<String>,
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    pub org_name: Option<String>,
}

const MAX_LIST: i64 = 1000;

/// Most ids a list's query names; a reach wider than this is read as the whole organization
/// (each row is still decided).
const MAX_REACH_IDS: usize = 10_000;

/// Where a list may find readable targets of `kind`: the store reads only there.
fn list_reach(principal: &Principal, policy: &Policy, kind: Kind) -> Reach {
    let reach = principal.reach(policy, Permission::Read, kind);
    if reach.projects.len() + reach.objects.len() > MAX_REACH_IDS {
        return Reach::all();
    }
    reach
}

/// Reads pages of a list until `limit` visible entries are found or the list ends. `page`
/// reads at most `n` rows after the given id and returns the visible ones, how many rows it
/// read, and the id of the last one.
async fn paged<T, F, Fut>(limit: i64, mut after: Option<String>, mut page: F) -> Result<Vec<T>>
where
    F: FnMut(Option<String>, i64) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, usize, Option<String>)>>,
{
    let want = usize::try_from(limit).unwrap_or(usize::MAX);
    let n = limit.max(100);
    let mut out = Vec::new();
    loop {
        let (visible, seen, last) = page(after.clone(), n).await?;
        out.extend(visible);
        if out.len() >= want || (seen as i64) < n || last.is_none() {
            out.truncate(want);
            return Ok(out);
        }
        after = last;
    }
}

/// The stored fields of a typed body: those named in `fields` that it sets. With
/// `keep_nulls` (a patch), a field set to null is kept, to clear the stored one.
fn fields_of<T: serde::Serialize>(
    body: &T,
    fields: &[&str],
    keep_nulls: bool,
) -> Result<Map<String, Value>> {
    let Value::Object(all) =
        serde_json::to_value(body).map_err(|e| ServiceError::Internal(e.to_string()))?
    else {
        return Ok(Map::new());
    };
    Ok(all
        .into_iter()
        .filter(|(k, v)| (keep_nulls || !v.is_null()) && fields.contains(&k.as_str()))
        .collect())
}

/// A name given in a body: 1 to 1024 characters, not blank.
fn checked_name<'a>(field: &str, name: &'a str) -> Result<&'a str> {
    if name.trim().is_empty() || name.len() > 1024 {
        return Err(ServiceError::field(
            field,
            format!("field `{field}` must be 1 to 1024 characters"),
        ));
    }
    Ok(name)
}

const PROJECT_FIELDS: &[&str] = &["description", "settings"];
const EXPERIMENT_FIELDS: &[&str] = &[
    "description",
    "repo_info",
    "base_exp_id",
    "dataset_id",
    "dataset_version",
    "public",
    "metadata",
    "tags",
    "parameters_id",
    "parameters_version",
    "commit",
];
const DATASET_FIELDS: &[&str] = &["description", "metadata", "tags"];
const PROMPT_FIELDS: &[&str] = &[
    "name",
    "description",
    "prompt_data",
    "tags",
    "metadata",
    "function_type",
    "function_data",
];

/// A patch in brief for the audit log: the fields it set, before and after.
fn brief_patch(
    kind: &str,
    id: &str,
    old_name: &str,
    new_name: &str,
    before: &Map<String, Value>,
    changes: &Map<String, Value>,
) -> Value {
    let mut was = Map::new();
    if old_name != new_name {
        was.insert("name".into(), json!(old_name));
    }
    for k in changes.keys() {
        was.insert(k.clone(), before.get(k).cloned().unwrap_or(Value::Null));
    }
    let mut now = changes.clone();
    if old_name != new_name {
        now.insert("name".into(), json!(new_name));
    }
    json!({"patched": kind, "id": id, "before": was, "after": now})
}

pub fn project_json(p: &ProjectRecord) -> Project {
    Project {
        id: p.id.clone(),
        org_id: p.org_id.clone(),
        name: p.name.clone(),
        created: p.created.clone(),
        deleted_at: p.deleted_at.clone(),
        user_id: p.user_id.clone(),
        description: p.info.get("description").cloned(),
        settings: p.info.get("settings").cloned(),
    }
}

/// An experiment or dataset as the API returns it: the fields every one has, the ones of its
/// kind (null until set), then its stored fields.
pub fn object_json(o: &ObjectRecord) -> NamedObject {
    let mut info = Map::new();
    match o.kind {
        ObjectType::Experiment => {
            for f in [
                "repo_info",
                "commit",
                "base_exp_id",
                "dataset_id",
                "dataset_version",
                "tags",
            ] {
                info.insert(f.into(), Value::Null);
            }
            info.insert("public".into(), json!(false));
        }
        ObjectType::Dataset => {
            info.insert("url_slug".into(), json!(o.name));
        }
        _ => {}
    }
    let mut description = None;
    let mut metadata = None;
    for (k, v) in &o.info {
        match k.as_str() {
            "description" => description = Some(v.clone()),
            "metadata" => metadata = Some(v.clone()),
            "id" | "project_id" | "name" | "created" | "deleted_at" | "user_id" => {}
            _ => {
                info.insert(k.clone(), v.clone());
            }
        }
    }
    NamedObject {
        id: o.id.clone(),
        project_id: o.project_id.clone(),
        name: o.name.clone(),
        created: o.created.clone(),
        deleted_at: o.deleted_at.clone(),
        user_id: o.user_id.clone(),
        description,
        metadata,
        info,
    }
}

impl Services {
    // ---- organizations and keys (operator CLI and bootstrap) ----

    /// Creates an organization with its owner and returns the owner's first API key.
    pub async fn create_org(&self, org_name: &str, owner_email: &str) -> Result<SecretString> {
        if org_name.trim().is_empty() || !owner_email.contains('@') {
            return Err(ServiceError::bad(
                "an organization name and an owner email are required",
            ));
        }
        let why = SystemPass::new("operator creates an organization");
        let now = self.now();
        let org = OrgRecord {
            id: random::uuid()?,
            name: org_name.to_owned(),
            created: now.clone(),
        };
        let owner = UserRecord {
            id: random::uuid()?,
            email: owner_email.to_owned(),
            created: now,
        };
        let key = self
            .keys
            .mint(&org.id, &owner.id, "owner key", None, &KeyScope::default())?;
        let owner_id = self
            .store
            .create_org_with_owner(&why, &org, &owner, &key.record)
            .await?;
        self.ensure_builtin_groups(&org.id, &[owner_id]).await?;
        Ok(key.token)
    }

    /// The id of an organization named by the operator.
    pub async fn org_id_by_name(&self, name: &str) -> Result<String> {
        Ok(self
            .store
            .find_org_by_name(&SystemPass::new("operator names an organization"), name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("organization {name:?}")))?
            .id)
    }

    /// Every organization as (id, name), for operator commands.
    pub async fn all_orgs(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .store
            .all_orgs(&SystemPass::new("operator command over all organizations"))
            .await?)
    }

    /// True once any organization exists.
    pub async fn is_initialized(&self) -> Result<bool> {
        Ok(self
            .store
            .org_count(&SystemPass::new("checking for first start"))
            .await?
            > 0)
    }

    async fn member(&self, org_name: &str, email: &str) -> Result<(OrgRecord, UserRecord)> {
        let why = SystemPass::new("operator manages keys");
        let org = self
            .store
            .find_org_by_name(&why, org_name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("organization {org_name:?}")))?;
        let user = self
            .store
            .find_member_by_email(&why, &org.id, email)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("member {email:?} of {org_name:?}")))?;
        Ok((org, user))
    }

    pub async fn create_key_for(
        &self,
        org_name: &str,
        email: &str,
        name: &str,
        expires_at: Option<String>,
    ) -> Result<SecretString> {
        let (org, user) = self.member(org_name, email).await?;
        let key = self
            .keys
            .mint(&org.id, &user.id, name, expires_at, &KeyScope::default())?;
        self.store
            .insert_api_key(&SystemPass::new("operator creates a key"), &key.record)
            .await?;
        Ok(key.token)
    }

    pub async fn list_keys_for(&self, org_name: &str, email: &str) -> Result<Vec<Value>> {
        let (org, user) = self.member(org_name, email).await?;
        let keys = self
            .store
            .list_api_keys(&SystemPass::new("operator lists keys"), &org.id, &user.id)
            .await?;
        Ok(keys
            .iter()
            .map(|k| {
                json!({"id": k.id, "name": k.name, "preview_name": k.preview_name, "created": k.created,
                       "expires_at": k.expires_at, "revoked_at": k.revoked_at, "last_used_at": k.last_used_at,
                       "user_id": k.user_id, "user_email": user.email, "org_id": k.org_id})
            })
            .collect())
    }

    pub async fn revoke_key_for(&self, org_name: &str, email: &str, key_id: &str) -> Result<()> {
        let (org, user) = self.member(org_name, email).await?;
        let now = self.now();
        if !self
            .store
            .revoke_api_key(
                &SystemPass::new("operator revokes a key"),
                &org.id,
                &user.id,
                key_id,
                &now,
            )
            .await?
        {
            return Err(ServiceError::NotFound(format!("active key {key_id:?}")));
        }
        self.keys.clear_cache();
        Ok(())
    }

    /// The SDK login reply: the caller's organization and where its data plane lives.
    pub async fn login(&self, principal: &Principal, base_url: &str) -> Result<LoginResponse> {
        let org = self.store.get_org(&self.lookup(principal)?).await?;
        Ok(LoginResponse {
            org_info: vec![OrgInfo {
                id: org.id,
                name: org.name,
                api_url: base_url.to_owned(),
                proxy_url: base_url.to_owned(),
                realtime_url: None,
                git_metadata: None,
                is_universal_api: true,
            }],
        })
    }

    fn check_org_name(&self, org: &OrgRecord, org_name: Option<&str>) -> Result<()> {
        match org_name {
            Some(n) if n != org.name => Err(ServiceError::NotFound(format!("organization {n:?}"))),
            _ => Ok(()),
        }
    }

    // ---- projects ----

    pub async fn create_project(
        &self,
        principal: &Principal,
        body: &CreateProject,
    ) -> Result<ProjectRecord> {
        let name = checked_name("name", &body.name)?;
        let lookup = self.lookup(principal)?;
        self.check_org_name(
            &self.store.get_org(&lookup).await?,
            body.org_name.as_deref(),
        )?;
        // An existing name returns the project unchanged, to those who may see it.
        if let Some(existing) = self.store.find_project(&lookup, name).await? {
            return self.open_named_project(principal, existing, true).await;
        }
        let org_pass = self
            .org_grant(principal, Permission::Create, Kind::Project)
            .await?;
        let org = self.store.get_org(&org_pass).await?;
        let rec = ProjectRecord {
            id: random::uuid()?,
            org_id: org.id,
            name: name.to_owned(),
            user_id: Some(principal.user_id.clone()),
            created: self.now(),
            deleted_at: None,
            info: fields_of(body, PROJECT_FIELDS, false)?,
        };
        let stored = self.store.create_project(&org_pass, &rec).await?;
        if stored.id != rec.id {
            // Created meanwhile by someone else.
            return self.open_named_project(principal, stored, true).await;
        }
        principal
            .trail
            .change(json!({"created": "project", "id": stored.id, "name": stored.name}));
        Ok(stored)
    }

    /// An existing project that a caller named: read gives the whole record; when the caller
    /// registers it (`create`), create alone (all an ingest key has) gives its ids and the
    /// name the caller already knows, nothing more.
    async fn open_named_project(
        &self,
        principal: &Principal,
        p: ProjectRecord,
        create: bool,
    ) -> Result<ProjectRecord> {
        match self
            .project_pass(principal, &p.id, Permission::Read, Kind::Project)
            .await
        {
            Ok((p, _)) => Ok(p),
            Err(e) if create => self
                .project_pass(principal, &p.id, Permission::Create, Kind::Project)
                .await
                .map(|(p, _)| ProjectRecord {
                    info: Map::new(),
                    ..p
                })
                .map_err(|_| e),
            Err(e) => Err(e),
        }
    }

    pub async fn get_project(&self, principal: &Principal, id: &str) -> Result<ProjectRecord> {
        Ok(self
            .project_pass(principal, id, Permission::Read, Kind::Project)
            .await?
            .0)
    }

    /// A project named by id or by name; with `create`, a missing name is created.
    pub async fn resolve_project(
        &self,
        principal: &Principal,
        id: Option<&str>,
        name: Option<&str>,
        create: bool,
    ) -> Result<ProjectRecord> {
        let lookup = self.lookup(principal)?;
        let found = match (id, name) {
            (Some(id), _) => Some(self.store.get_project(&lookup, id).await?),
            (None, Some(name)) => self.store.find_project(&lookup, name).await?,
            (None, None) => {
                return Err(ServiceError::bad("project_id or project_name is required"));
            }
        };
        match (found, name) {
            (Some(p), _) => self.open_named_project(principal, p, create).await,
            (None, Some(name)) if create => {
                self.create_project(
                    principal,
                    &CreateProject {
                        name: name.to_owned(),
                        ..Default::default()
                    },
                )
                .await
            }
            (None, name) => Err(ServiceError::NotFound(format!(
                "project {:?}",
                name.unwrap_or_default()
            ))),
        }
    }

    pub async fn list_projects(
        &self,
        principal: &Principal,
        params: &ListParams,
    ) -> Result<Vec<ProjectRecord>> {
        let org_pass = self.lookup(principal)?;
        let policy = self.policy(principal).await?;
        let org = self.store.get_org(&org_pass).await?;
        if params.org_name.as_deref().is_some_and(|n| n != org.name) {
            return Ok(Vec::new());
        }
        let limit = params.limit.unwrap_or(MAX_LIST).clamp(1, MAX_LIST);
        let name = params.name.as_deref().or(params.project_name.as_deref());
        let reach = list_reach(principal, &policy, Kind::Project);
        paged(limit, params.starting_after.clone(), |after, n| {
            let (org_pass, reach, policy) = (&org_pass, &reach, &policy);
            async move {
                let page = self
                    .store
                    .list_projects(org_pass, reach, name, after.as_deref(), n)
                    .await?;
                let last = page.last().map(|p| p.id.clone());
                let seen = page.len();
                let visible = page
                    .into_iter()
                    .filter(|p| {
                        self.can_see(principal, policy, &Target::project(Kind::Project, &p.id))
                    })
                    .collect();
                Ok((visible, seen, last))
            }
        })
        .await
    }

    pub async fn patch_project(
        &self,
        principal: &Principal,
        id: &str,
        body: &PatchProject,
    ) -> Result<ProjectRecord> {
        let (project, pass) = self
            .project_pass_showing(principal, id, Permission::Update)
            .await?;
        let name = match &body.name {
            Some(n) => checked_name("name", n)?.to_owned(),
            None => project.name.clone(),
        };
        let mut info = project.info.clone();
        let changes = fields_of(body, PROJECT_FIELDS, true)?;
        principal.trail.change(brief_patch(
            "project",
            &project.id,
            &project.name,
            &name,
            &project.info,
            &changes,
        ));
        info.extend(changes);
        Ok(self.store.update_project(&pass, &name, &info).await?)
    }

    pub async fn delete_project(&self, principal: &Principal, id: &str) -> Result<ProjectRecord> {
        let (_, pass) = self
            .project_pass_showing(principal, id, Permission::Delete)
            .await?;
        let gone = self.store.delete_project(&pass, &self.now()).await?;
        principal
            .trail
            .change(json!({"deleted": "project", "id": gone.id, "name": gone.name}));
        Ok(gone)
    }

    // ---- experiments and datasets ----

    /// Creates an experiment (`ensure_new`, the default, makes the name unique; without a
    /// name one is generated) or gets-or-creates a dataset by name.
    pub async fn create_object(
        &self,
        principal: &Principal,
        kind: ObjectType,
        body: &CreateObject,
    ) -> Result<ObjectRecord> {
        let project = self
            .resolve_project(
                principal,
                body.project_id.as_deref(),
                body.project_name.as_deref(),
                true,
            )
            .await?;
        let (_, project_pass) = self
            .project_pass(principal, &project.id, Permission::Create, Kind::of(kind))
            .await?;
        let (fields, on_conflict, name) = match kind {
            ObjectType::Experiment => {
                let ensure_new = body.ensure_new.unwrap_or(true);
                let name = match &body.name {
                    Some(n) => checked_name("name", n)?.to_owned(),
                    None => {
                        let t = self.clock.now();
                        format!(
                            "experiment-{:04}{:02}{:02}-{:02}{:02}{:02}",
                            t.year(),
                            u8::from(t.month()),
                            t.day(),
                            t.hour(),
                            t.minute(),
                            t.second()
                        )
                    }
                };
                let conflict = if ensure_new {
                    OnNameConflict::Rename
                } else {
                    OnNameConflict::ReturnExisting
                };
                (EXPERIMENT_FIELDS, conflict, name)
            }
            ObjectType::Dataset => (
                DATASET_FIELDS,
                OnNameConflict::ReturnExisting,
                checked_name(
                    "name",
                    body.name
                        .as_deref()
                        .ok_or_else(|| ServiceError::field("name", "field `name` is required"))?,
                )?
                .to_owned(),
            ),
            _ => return Err(ServiceError::bad("unsupported object type")),
        };
        let info = fields_of(body, fields, false)?;
        // References must name objects the caller can see.
        let experiment = kind == ObjectType::Experiment;
        if let Some(id) = body.dataset_id.as_deref().filter(|_| experiment) {
            self.object_pass(principal, ObjectType::Dataset, id, Permission::Read)
                .await?;
        }
        if let Some(id) = body.base_exp_id.as_deref().filter(|_| experiment) {
            self.object_pass(principal, ObjectType::Experiment, id, Permission::Read)
                .await?;
        }
        let rec = ObjectRecord {
            id: random::uuid()?,
            org_id: project.org_id.clone(),
            project_id: project.id.clone(),
            kind,
            name,
            user_id: Some(principal.user_id.clone()),
            created: self.now(),
            deleted_at: None,
            info,
        };
        let stored = self
            .store
            .create_object(&project_pass, &rec, on_conflict)
            .await?;
        if stored.id == rec.id {
            principal.trail.change(
                json!({"created": kind.as_str(), "id": stored.id, "name": stored.name, "project_id": stored.project_id}),
            );
            return Ok(stored);
        }
        // An existing object, returned by get-or-create: a credential that may not read it
        // (an ingest key) learns its id and name, which it named, and nothing more.
        if self
            .object_pass(principal, kind, &stored.id, Permission::Read)
            .await
            .is_err()
        {
            return Ok(ObjectRecord {
                info: Map::new(),
                user_id: None,
                ..stored
            });
        }
        Ok(stored)
    }

    pub async fn get_object(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
    ) -> Result<ObjectRecord> {
        self.object_pass(principal, kind, id, Permission::Read)
            .await?
            .0
            .ok_or_else(|| ServiceError::NotFound(kind.to_string()))
    }

    /// What the JS SDK asks about an object: its name, its project, and the permissions this
    /// credential holds on it.
    pub async fn object_info(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
    ) -> Result<Value> {
        let object = self.get_object(principal, kind, id).await?;
        // The parent of an object the caller may read is no secret to them.
        let project = self
            .store
            .get_project(&self.lookup(principal)?, &object.project_id)
            .await?;
        let policy = self.policy(principal).await?;
        let target = Target::object(Kind::of(kind), &object.project_id, &object.id);
        let permissions: Vec<&str> = Permission::ALL
            .into_iter()
            .filter(|p| principal.may(&policy, *p, &target))
            .map(Permission::as_str)
            .collect();
        Ok(json!({
            "object_id": object.id, "object_name": object.name,
            "parent_cols": {"project": {"id": project.id, "name": project.name}},
            "permissions": permissions,
        }))
    }

    /// Whether the caller holds `permission` on each of `objects` (of one kind), as
    /// [`Services::object_info`] decides it, with the caller's policy read once.
    pub async fn permitted(
        &self,
        principal: &Principal,
        kind: ObjectType,
        objects: &[ObjectRecord],
        permission: Permission,
    ) -> Result<Vec<bool>> {
        let policy = self.policy(principal).await?;
        Ok(objects
            .iter()
            .map(|o| {
                let target = Target::object(Kind::of(kind), &o.project_id, &o.id);
                principal.may(&policy, permission, &target)
            })
            .collect())
    }

    pub async fn list_objects(
        &self,
        principal: &Principal,
        kind: ObjectType,
        params: &ListParams,
    ) -> Result<Vec<ObjectRecord>> {
        let org_pass = self.lookup(principal)?;
        let policy = self.policy(principal).await?;
        let org = self.store.get_org(&org_pass).await?;
        if params.org_name.as_deref().is_some_and(|n| n != org.name) {
            return Ok(Vec::new());
        }
        let project_id = match (&params.project_id, &params.project_name) {
            (Some(id), _) => Some(id.clone()),
            (None, Some(name)) => match self.store.find_project(&org_pass, name).await? {
                Some(p) => Some(p.id),
                None => return Ok(Vec::new()),
            },
            (None, None) => None,
        };
        let limit = params.limit.unwrap_or(MAX_LIST).clamp(1, MAX_LIST);
        let reach = list_reach(principal, &policy, Kind::of(kind));
        paged(limit, params.starting_after.clone(), |after, n| {
            let (org_pass, reach, project_id, policy) = (&org_pass, &reach, &project_id, &policy);
            async move {
                let page = self
                    .store
                    .list_objects(
                        org_pass,
                        reach,
                        kind,
                        project_id.as_deref(),
                        params.name.as_deref(),
                        after.as_deref(),
                        n,
                    )
                    .await?;
                let last = page.last().map(|o| o.id.clone());
                let seen = page.len();
                let visible = page
                    .into_iter()
                    .filter(|o| {
                        self.can_see(
                            principal,
                            policy,
                            &Target::object(Kind::of(kind), &o.project_id, &o.id),
                        )
                    })
                    .collect();
                Ok((visible, seen, last))
            }
        })
        .await
    }

    pub async fn patch_object(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
        body: &PatchObject,
    ) -> Result<ObjectRecord> {
        let (object, pass) = self
            .object_pass_showing(principal, kind, id, Permission::Update)
            .await?;
        let object = object.ok_or_else(|| ServiceError::NotFound(kind.to_string()))?;
        let fields = match kind {
            ObjectType::Experiment => EXPERIMENT_FIELDS,
            _ => DATASET_FIELDS,
        };
        let name = match &body.name {
            Some(n) => checked_name("name", n)?.to_owned(),
            None => object.name.clone(),
        };
        let mut info = object.info.clone();
        let changes = fields_of(body, fields, true)?;
        principal.trail.change(brief_patch(
            kind.as_str(),
            &object.id,
            &object.name,
            &name,
            &object.info,
            &changes,
        ));
        info.extend(changes);
        Ok(self.store.update_object(&pass, &name, &info).await?)
    }

    pub async fn delete_object(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
    ) -> Result<ObjectRecord> {
        let (_, pass) = self
            .object_pass_showing(principal, kind, id, Permission::Delete)
            .await?;
        let gone = self.store.delete_object(&pass, &self.now()).await?;
        principal
            .trail
            .change(json!({"deleted": kind.as_str(), "id": gone.id, "name": gone.name}));
        Ok(gone)
    }

    /// The end of the grace period of something deleted at `deleted_at`; a conflict once it
    /// has passed (what was deleted is then only waiting to be purged).
    fn restorable_until(&self, deleted_at: &str) -> Result<String> {
        let at = holdfast_core::clock::parse_timestamp(deleted_at)
            .ok_or_else(|| ServiceError::Internal("a deletion time is not a timestamp".into()))?;
        let grace = time::Duration::try_from(self.limits.deletion_grace)
            .map_err(|_| ServiceError::Internal("the deletion grace period is too long".into()))?;
        let until = at + grace;
        let until_text = format_timestamp(until);
        if self.clock.now() > until {
            return Err(ServiceError::Conflict(format!(
                "the grace period for restoring ended at {until_text}"
            )));
        }
        Ok(until_text)
    }

    /// `POST /v1/project/{id}/restore`: undeletes a project within the grace period after its
    /// deletion (with its experiments, datasets, prompts and logs, which were hidden with
    /// it), for a credential that may delete it; `preview` changes nothing.
    pub async fn restore_project(
        &self,
        principal: &Principal,
        id: &str,
        preview: bool,
    ) -> Result<Restored> {
        let (project, pass) = self
            .deleted_project_pass(principal, id, Permission::Delete)
            .await?;
        let deleted_at = project.deleted_at.clone().unwrap_or_default();
        let restorable_until = self.restorable_until(&deleted_at)?;
        if !preview {
            self.store.restore_project(&pass, &deleted_at).await?;
            principal
                .trail
                .change(json!({"restored": "project", "id": project.id, "name": project.name}));
        }
        Ok(Restored {
            object_type: "project".into(),
            id: project.id,
            name: project.name,
            deleted_at,
            restorable_until,
            restored: !preview,
            rows: None,
            more: None,
        })
    }

    /// `POST /v1/{experiment,dataset,prompt,project_logs}/{id}/restore`: a deleted
    /// experiment, dataset or prompt comes back (its project must be live: restore the
    /// project first); a live dataset, experiment or project's logs get back their rows
    /// deleted within the grace period (see [`Services::restore_rows`]).
    pub async fn restore(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
        req: &RestoreRequest,
    ) -> Result<Restored> {
        let rows_asked = req.row_ids.is_some() || req.deleted_after.is_some();
        let live = match kind {
            ObjectType::ProjectLogs => true,
            _ => self
                .store
                .get_object(&self.lookup(principal)?, kind, id)
                .await
                .is_ok(),
        };
        if live && kind != ObjectType::Prompt {
            return self.restore_rows(principal, kind, id, req).await;
        }
        if rows_asked {
            return Err(ServiceError::Conflict(format!(
                "rows are restored in a live {0}: restore the {0} first",
                kind.as_str()
            )));
        }
        self.restore_object(principal, kind, id, req.preview).await
    }

    /// Rows of a live object deleted (by `_object_delete` or a retention policy) within the
    /// grace period come back as they were just before their deletion, up to
    /// [`crate::ingest::MAX_ROWS_PER_REQUEST`] per request, for a credential that may write
    /// the object's rows; `preview` counts them. A row written again since its deletion is
    /// left as it is. A conflict when a retention policy would delete a row again.
    pub async fn restore_rows(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
        req: &RestoreRequest,
    ) -> Result<Restored> {
        if let Some(ids) = &req.row_ids
            && ids.len() > crate::ingest::MAX_ROWS_PER_REQUEST
        {
            return Err(ServiceError::field(
                "row_ids",
                format!(
                    "at most {} row ids per request",
                    crate::ingest::MAX_ROWS_PER_REQUEST
                ),
            ));
        }
        let grace = time::Duration::try_from(self.limits.deletion_grace)
            .map_err(|_| ServiceError::Internal("the deletion grace period is too long".into()))?;
        let mut since = format_timestamp(self.clock.now() - grace);
        if let Some(after) = &req.deleted_after {
            let t = holdfast_core::clock::parse_timestamp(after).ok_or_else(|| {
                ServiceError::field("deleted_after", "`deleted_after` must be an RFC 3339 time")
            })?;
            since = since.max(format_timestamp(t));
        }
        let (object, pass) = self
            .object_pass_showing(principal, kind, id, Permission::Update)
            .await?;
        let limit = crate::ingest::MAX_ROWS_PER_REQUEST;
        let deletions = self
            .store
            .row_deletions_since(&pass, &since, req.row_ids.as_deref(), limit + 1)
            .await?;
        let more = deletions.len() > limit;
        let deletions = deletions.get(..limit).unwrap_or(&deletions);
        // Rows live again since their deletion are left alone.
        let ids: Vec<String> = deletions.iter().map(|d| d.0.clone()).collect();
        let live: std::collections::HashSet<String> = self
            .store
            .read_row_ids(&pass, &ids, None)
            .await?
            .into_iter()
            .map(|r| r.row_id)
            .collect();
        // Each row as it was just before its deletion, read per deleting transaction.
        let mut by_xact: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
        let mut oldest: Option<&str> = None;
        for (row_id, xact, at) in deletions {
            if live.contains(row_id) {
                continue;
            }
            by_xact.entry(*xact).or_default().push(row_id.clone());
            oldest = Some(oldest.map_or(at.as_str(), |o| o.min(at.as_str())));
        }
        let mut rows = Vec::new();
        for (xact, ids) in by_xact {
            let before = XactId::from_i64(xact - 1);
            rows.extend(self.store.read_row_ids(&pass, &ids, before).await?);
        }
        self.retention_allows_rows(principal, &pass, &rows).await?;
        let n = rows.len() as u64;
        if !req.preview && n > 0 {
            let mut incoming = Vec::with_capacity(rows.len());
            for row in rows {
                let mut data = row.data;
                let control = take_control(&mut data)
                    .map_err(|e| ServiceError::Internal(format!("a stored row: {e}")))?;
                crate::ingest::stamp_object_fields(&mut data, &pass);
                incoming.push(IncomingRow {
                    row_id: row.row_id,
                    control,
                    data,
                });
            }
            self.write_rows_audited(
                principal,
                vec![(pass.clone(), incoming)],
                json!({"restored_rows": {"object_type": kind.as_str(), "id": pass.object_id(),
                                          "rows": n}}),
            )
            .await?;
        }
        let deleted_at = oldest.unwrap_or_default().to_owned();
        let restorable_until = if deleted_at.is_empty() {
            String::new()
        } else {
            self.restorable_until(&deleted_at)?
        };
        Ok(Restored {
            object_type: kind.as_str().into(),
            id: pass.object_id().into(),
            name: object.map(|o| o.name).unwrap_or_else(|| "logs".into()),
            deleted_at,
            restorable_until,
            restored: !req.preview && n > 0,
            rows: Some(n),
            more: Some(more),
        })
    }

    /// `POST /v1/{experiment,dataset,prompt}/{id}/restore` of a deleted object, whose
    /// project must be live (restore the project first).
    pub async fn restore_object(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
        preview: bool,
    ) -> Result<Restored> {
        let (object, live, pass) = self
            .deleted_object_pass(principal, kind, id, Permission::Delete)
            .await?;
        let deleted_at = object.deleted_at.clone().unwrap_or_default();
        let restorable_until = self.restorable_until(&deleted_at)?;
        if !live {
            return Err(ServiceError::Conflict(format!(
                "the {}'s project is deleted: restore the project first",
                kind.as_str()
            )));
        }
        self.retention_allows_restore(principal, &object.project_id, kind, &object.created)
            .await?;
        if !preview {
            self.store.restore_object(&pass, &deleted_at).await?;
            principal
                .trail
                .change(json!({"restored": kind.as_str(), "id": object.id, "name": object.name}));
        }
        Ok(Restored {
            object_type: kind.as_str().into(),
            id: object.id,
            name: object.name,
            deleted_at,
            restorable_until,
            restored: !preview,
            rows: None,
            more: None,
        })
    }

    // ---- prompts: identity in the object table, versions in the row store ----

    /// `POST /v1/prompt` (get-or-create by project and slug) or, with `replace`, `PUT` (a new
    /// version when the slug exists).
    pub async fn put_prompt(
        &self,
        principal: &Principal,
        body: &PutPrompt,
        replace: bool,
    ) -> Result<Value> {
        let project = self
            .resolve_project(
                principal,
                body.project_id.as_deref(),
                body.project_name.as_deref(),
                false,
            )
            .await?;
        let slug = checked_name("slug", &body.slug)?;
        let name = checked_name("name", &body.name)?;
        let mut content = fields_of(body, PROMPT_FIELDS, false)?;
        content.insert("name".into(), json!(name));
        let (_, project_pass) = self
            .project_pass(principal, &project.id, Permission::Create, Kind::Prompt)
            .await?;
        let rec = ObjectRecord {
            id: random::uuid()?,
            org_id: project.org_id.clone(),
            project_id: project.id.clone(),
            kind: ObjectType::Prompt,
            name: slug.to_owned(),
            user_id: Some(principal.user_id.clone()),
            created: self.now(),
            deleted_at: None,
            info: Map::new(),
        };
        let object = self
            .store
            .create_object(&project_pass, &rec, OnNameConflict::ReturnExisting)
            .await?;
        let is_new = object.id == rec.id;
        let policy = self.policy(principal).await?;
        let permission = match (is_new, replace) {
            (true, _) => Permission::Create,
            (false, true) => Permission::Update,
            (false, false) => Permission::Read,
        };
        let pass = self.object_pass_for(principal, &policy, &object, permission)?;
        if is_new || replace {
            let mut data = content;
            let control = take_control(&mut data).map_err(|e| ServiceError::bad(e.to_string()))?;
            let row = IncomingRow {
                row_id: object.id.clone(),
                control,
                data,
            };
            self.write_rows_audited(
                principal,
                vec![(pass.clone(), vec![row])],
                json!({"prompt_version": object.id}),
            )
            .await?;
        }
        self.prompt_json(&object, &pass, None).await
    }

    /// Opens a prompt for reading: its record and pass.
    pub(crate) async fn open_prompt(
        &self,
        principal: &Principal,
        id: &str,
        permission: Permission,
    ) -> Result<(ObjectRecord, ObjectPass)> {
        let (object, pass) = self
            .object_pass_showing(principal, ObjectType::Prompt, id, permission)
            .await?;
        let object = object.ok_or_else(|| ServiceError::NotFound("prompt".into()))?;
        Ok((object, pass))
    }

    /// The prompt as the SDKs load it: the newest version, or the one at `version`.
    pub(crate) async fn prompt_json(
        &self,
        object: &ObjectRecord,
        pass: &ObjectPass,
        version: Option<&str>,
    ) -> Result<Value> {
        let as_of = match version {
            Some(v) => Some(
                XactId::parse(v)
                    .ok_or_else(|| ServiceError::bad(format!("invalid version {v:?}")))?,
            ),
            None => None,
        };
        let q = RowQuery {
            as_of,
            limit: 1,
            ..RowQuery::default()
        };
        let row = self
            .store
            .read_rows(pass, &q)
            .await?
            .pop()
            .ok_or_else(|| ServiceError::NotFound("prompt version".into()))?;
        let mut m = Map::new();
        for f in [
            "description",
            "prompt_data",
            "tags",
            "metadata",
            "function_data",
        ] {
            m.insert(f.into(), Value::Null);
        }
        m.insert("function_type".into(), Value::Null);
        m.extend(row.data);
        m.insert("id".into(), json!(object.id));
        m.insert("_xact_id".into(), json!(row.xact_id.to_string()));
        m.insert("project_id".into(), json!(object.project_id));
        m.insert("org_id".into(), json!(object.org_id));
        m.insert("log_id".into(), json!("p"));
        m.insert("slug".into(), json!(object.name));
        m.insert("created".into(), json!(object.created));
        Ok(Value::Object(m))
    }

    pub async fn get_prompt(
        &self,
        principal: &Principal,
        id: &str,
        version: Option<&str>,
    ) -> Result<Value> {
        let (object, pass) = self.open_prompt(principal, id, Permission::Read).await?;
        self.prompt_json(&object, &pass, version).await
    }

    /// `GET /v1/prompt`: by project and slug, or every prompt the filters match.
    pub async fn list_prompts(
        &self,
        principal: &Principal,
        params: &ListParams,
        slug: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<Value>> {
        let params = ListParams {
            name: slug.map(str::to_owned).or(params.name.clone()),
            ..params.clone()
        };
        let objects = self
            .list_objects(principal, ObjectType::Prompt, &params)
            .await?;
        let policy = self.policy(principal).await?;
        let mut out = Vec::with_capacity(objects.len());
        for o in &objects {
            let pass = self.object_pass_for(principal, &policy, o, Permission::Read)?;
            match self.prompt_json(o, &pass, version).await {
                Ok(v) => out.push(v),
                Err(ServiceError::NotFound(_)) if version.is_some() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub async fn patch_prompt(
        &self,
        principal: &Principal,
        id: &str,
        body: &PatchPrompt,
    ) -> Result<Value> {
        if let Some(Some(n)) = &body.name {
            checked_name("name", n)?;
        }
        let (object, pass) = self.open_prompt(principal, id, Permission::Update).await?;
        let mut data = fields_of(body, PROMPT_FIELDS, true)?;
        data.insert("_is_merge".into(), json!(true));
        let control = take_control(&mut data).map_err(|e| ServiceError::bad(e.to_string()))?;
        let row = IncomingRow {
            row_id: object.id.clone(),
            control,
            data,
        };
        self.write_rows_audited(
            principal,
            vec![(pass.clone(), vec![row])],
            json!({"prompt_version": object.id}),
        )
        .await?;
        self.prompt_json(&object, &pass, None).await
    }

    /// `POST /insert-functions`: prompts published from code. Every definition is checked
    /// before any is stored, so a refused request stores nothing.
    pub async fn insert_functions(
        &self,
        principal: &Principal,
        body: &InsertFunctions,
    ) -> Result<Vec<InsertedFunction>> {
        const MAX_FUNCTIONS: usize = 100;
        if body.functions.len() > MAX_FUNCTIONS {
            return Err(ServiceError::field(
                "functions",
                format!("at most {MAX_FUNCTIONS} functions at once"),
            ));
        }
        let mut plan = Vec::with_capacity(body.functions.len());
        for (i, f) in body.functions.iter().enumerate() {
            let kind = f.function_data.get("type").and_then(Value::as_str);
            if kind != Some("prompt") {
                return Err(ServiceError::field(
                    format!("functions[{i}].function_data.type"),
                    format!(
                        "{kind:?} functions cannot be inserted here yet; only prompts (code \
                         bundles and parameters come with hosted functions)"
                    ),
                ));
            }
            let replace = match f.if_exists.as_deref().unwrap_or("error") {
                "error" => None,
                "replace" => Some(true),
                "ignore" => Some(false),
                other => {
                    return Err(ServiceError::field(
                        format!("functions[{i}].if_exists"),
                        format!("`if_exists` is error, replace or ignore, not {other:?}"),
                    ));
                }
            };
            let params = ListParams {
                project_id: Some(f.project_id.clone()),
                name: Some(f.slug.clone()),
                limit: Some(1),
                ..Default::default()
            };
            let exists = !self
                .list_objects(principal, ObjectType::Prompt, &params)
                .await?
                .is_empty();
            if exists && replace.is_none() {
                return Err(ServiceError::Conflict(format!(
                    "a function with slug {:?} exists in the project (if_exists is \"error\")",
                    f.slug
                )));
            }
            plan.push((f, replace.unwrap_or(false), exists));
        }
        let mut out = Vec::with_capacity(plan.len());
        for (f, replace, exists) in plan {
            let put = PutPrompt {
                project_id: Some(f.project_id.clone()),
                project_name: None,
                slug: f.slug.clone(),
                name: f.name.clone(),
                description: f.description.clone(),
                prompt_data: f.prompt_data.clone(),
                function_data: Some(f.function_data.clone()),
                tags: f.tags.clone(),
                metadata: f.metadata.clone(),
                function_type: f.function_type.clone(),
            };
            let stored = self.put_prompt(principal, &put, replace).await?;
            out.push(InsertedFunction {
                id: stored
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                project_id: f.project_id.clone(),
                slug: f.slug.clone(),
                found_existing: exists,
            });
        }
        Ok(out)
    }

    pub async fn delete_prompt(&self, principal: &Principal, id: &str) -> Result<Value> {
        let (object, pass) = self.open_prompt(principal, id, Permission::Delete).await?;
        let out = self.prompt_json(&object, &pass, None).await?;
        self.store.delete_object(&pass, &self.now()).await?;
        principal
            .trail
            .change(json!({"deleted": "prompt", "id": object.id, "name": object.name}));
        Ok(out)
    }
}
