//! Retention policies: `/v1/project_automation` and `/v1/org_automation` with
//! `event_type: "retention"`, their preview, and their application.
//!
//! A policy keeps `retention_days` of one object type: a project's logs (rows by their
//! `created`), its experiments (whole, by the experiment's creation time) or its datasets'
//! rows (by their `created`; the datasets stay). A project's own policy for an object type
//! overrides its organization's. Applying a policy deletes what it expires the way a user's
//! deletion does: an experiment gets `deleted_at`, a row gets a deleting version. Both
//! disappear at once from every read, are restorable for the deletion grace period (an
//! experiment through `/v1/experiment/{id}/restore`, once no policy would expire it again),
//! and are then purged with everything else deleted (see `purge`). Policies are applied at
//! the start of every purge run, under its lease.
//!
//! Rows are found through the value index of `created` (oldest first, in text order), read
//! again, and expired only if their `created` is an RFC 3339 timestamp strictly before the
//! cutoff: a row exactly at the cutoff stays, and so does one whose `created` is not a
//! timestamp. The scan stops at the first entry whose text is past the cutoff's second, so a
//! `created` written with a positive UTC offset (local time ahead of UTC) expires up to that
//! offset late; the SDKs write UTC (`Z`, `+00:00`). Rows written with an old `created` are
//! found once the index holds them, by a later run.

use crate::{Result, ServiceError, Services};
use holdfast_api::objects::{
    CreateOrgAutomation, CreateProjectAutomation, ExportDefinitionType, OrgAutomation,
    PatchAutomation, ProjectAutomation, ProjectAutomationConfig, RetentionConfig,
    RetentionObjectType, RetentionPreview, RetentionPreviewProject, RetentionPreviewRequest,
};
use holdfast_core::authz::{
    Kind, ObjectPass, Permission, Principal, SystemPass, system_delete_pass, system_read_pass,
};
use holdfast_core::clock::{format_timestamp, parse_timestamp};
use holdfast_core::merge::take_control;
use holdfast_core::object::ObjectType;
pub use holdfast_store::AutomationRecord;
use holdfast_store::{
    AutomationScope, IncomingRow, IndexValue, NewAuditEntry, ValueFrom, ValueQuery,
};
use serde_json::{Map, Value, json};
use std::sync::atomic::Ordering::Relaxed;
use time::OffsetDateTime;

/// Index entries read at a time when looking for expired rows.
const PAGE: usize = 1000;
/// The longest retention period, in days (100 years).
pub const MAX_RETENTION_DAYS: i64 = 36_500;

fn why() -> SystemPass {
    SystemPass::new("applying retention policies")
}

/// What one application of the policies expired.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub rows: u64,
    pub objects: u64,
}

fn check_config(c: &RetentionConfig) -> Result<()> {
    if !(1..=MAX_RETENTION_DAYS).contains(&c.retention_days) {
        return Err(ServiceError::field(
            "config.retention_days",
            format!("`retention_days` must be 1 to {MAX_RETENTION_DAYS}"),
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<&str> {
    if name.trim().is_empty() || name.len() > 1024 || name.contains('\0') {
        return Err(ServiceError::field(
            "name",
            "`name` must be 1 to 1024 characters, without NUL",
        ));
    }
    Ok(name)
}

fn check_description(d: Option<&str>) -> Result<()> {
    if d.is_some_and(|d| d.len() > 65_536 || d.contains('\0')) {
        return Err(ServiceError::field(
            "description",
            "`description` must be at most 65536 bytes, without NUL",
        ));
    }
    Ok(())
}

fn config_of(rec: &AutomationRecord) -> Result<RetentionConfig> {
    serde_json::from_value(rec.config.clone()).map_err(|e| {
        ServiceError::Internal(format!(
            "automation {} has a bad configuration: {e}",
            rec.id
        ))
    })
}

pub fn project_automation_json(rec: &AutomationRecord) -> Result<ProjectAutomation> {
    let config: ProjectAutomationConfig =
        serde_json::from_value(rec.config.clone()).map_err(|e| {
            ServiceError::Internal(format!(
                "automation {} has a bad configuration: {e}",
                rec.id
            ))
        })?;
    Ok(ProjectAutomation {
        id: rec.id.clone(),
        project_id: rec.project_id.clone().unwrap_or_default(),
        user_id: rec.user_id.clone(),
        created: rec.created.clone(),
        name: rec.name.clone(),
        description: rec.description.clone(),
        config,
    })
}

pub fn org_automation_json(rec: &AutomationRecord) -> Result<OrgAutomation> {
    Ok(OrgAutomation {
        id: rec.id.clone(),
        org_id: rec.org_id.clone(),
        user_id: rec.user_id.clone(),
        created: rec.created.clone(),
        name: rec.name.clone(),
        description: rec.description.clone(),
        config: config_of(rec)?,
    })
}

fn object_type_of(t: RetentionObjectType) -> ObjectType {
    match t {
        RetentionObjectType::ProjectLogs => ObjectType::ProjectLogs,
        RetentionObjectType::Experiment => ObjectType::Experiment,
        RetentionObjectType::Dataset => ObjectType::Dataset,
    }
}

/// Whether a row's `created` puts it before the cutoff: an RFC 3339 timestamp (the server's
/// form, the TypeScript SDK's `Z` and the Python SDK's `+00:00`), strictly earlier.
fn created_before(created: &str, cutoff: OffsetDateTime) -> bool {
    parse_timestamp(created).is_some_and(|t| t < cutoff)
}

/// The cutoff of a policy applied at `now`: what was created before it is expired.
fn cutoff_of(now: OffsetDateTime, days: i64) -> OffsetDateTime {
    now - time::Duration::days(days)
}

/// An automation's event type, and the object type of a retention policy.
fn kind_of(c: &ProjectAutomationConfig) -> (&'static str, Option<String>) {
    match c {
        ProjectAutomationConfig::Retention { object_type, .. } => {
            ("retention", Some(object_type.as_str().into()))
        }
        ProjectAutomationConfig::BtqlExport { .. } => ("btql_export", None),
    }
}

/// Where the automation routes act.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Project,
    Org,
}

/// The oldest index entries of `created`: the read of [`Services::expired_row_ids`].
fn created_query() -> ValueQuery {
    ValueQuery {
        path: vec!["created".into()],
        text: true,
        roots: false,
        descending: false,
    }
}

impl Services {
    // ---- the automation routes ----

    /// `POST /v1/project_automation`: creates a project's retention policy (for someone who
    /// may delete the project), or returns the one of that name unchanged.
    pub async fn create_project_automation(
        &self,
        principal: &Principal,
        body: &CreateProjectAutomation,
    ) -> Result<AutomationRecord> {
        self.check_project_config(&body.config, &body.project_id)?;
        check_description(body.description.as_deref())?;
        let name = check_name(&body.name)?;
        let (_, pass) = self
            .project_pass_showing(principal, &body.project_id, Permission::Delete)
            .await?;
        let rec = self.new_automation(principal, name, body.description.clone(), &body.config)?;
        let made = self
            .store
            .create_automation(AutomationScope::Project(&pass), &rec)
            .await?;
        if made.id == rec.id {
            principal
                .trail
                .change(json!({"created": "project_automation",
                "id": made.id, "project_id": pass.project_id(), "config": made.config}));
        }
        Ok(made)
    }

    /// `POST /v1/org_automation`: the organization's default policy for an object type, for
    /// those who may change the organization.
    pub async fn create_org_automation(
        &self,
        principal: &Principal,
        body: &CreateOrgAutomation,
    ) -> Result<AutomationRecord> {
        check_config(&body.config)?;
        check_description(body.description.as_deref())?;
        let name = check_name(&body.name)?;
        let pass = self
            .org_grant(principal, Permission::Update, Kind::Organization)
            .await?;
        self.is_own_org(principal, body.org_name.as_deref()).await?;
        let config = ProjectAutomationConfig::from(body.config);
        let rec = self.new_automation(principal, name, body.description.clone(), &config)?;
        let made = self
            .store
            .create_automation(AutomationScope::Org(&pass), &rec)
            .await?;
        if made.id == rec.id {
            principal
                .trail
                .change(json!({"created": "org_automation", "id": made.id, "config": made.config}));
        }
        Ok(made)
    }

    /// Not found unless `org_name` (when given) names the principal's organization.
    pub async fn is_own_org(&self, principal: &Principal, org_name: Option<&str>) -> Result<()> {
        if let Some(name) = org_name {
            let mine = self.store.get_org(&self.lookup(principal)?).await?;
            if name != mine.name {
                return Err(ServiceError::NotFound("organization".into()));
            }
        }
        Ok(())
    }

    fn new_automation(
        &self,
        principal: &Principal,
        name: &str,
        description: Option<String>,
        config: &ProjectAutomationConfig,
    ) -> Result<AutomationRecord> {
        let (event_type, object_type) = kind_of(config);
        Ok(AutomationRecord {
            id: crate::random::uuid()?,
            org_id: principal.org_id.clone(),
            project_id: None,
            name: name.to_owned(),
            description,
            event_type: event_type.into(),
            object_type,
            config: serde_json::to_value(config)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            user_id: Some(principal.user_id.clone()).filter(|u| !u.is_empty()),
            created: self.now(),
        })
    }

    /// Checks the configuration of an automation of `project_id`: a retention policy's period;
    /// a scheduled export's interval, destination and query.
    fn check_project_config(&self, c: &ProjectAutomationConfig, project_id: &str) -> Result<()> {
        match c {
            ProjectAutomationConfig::Retention { .. } => {
                c.retention().map_or(Ok(()), |r| check_config(&r))
            }
            ProjectAutomationConfig::BtqlExport {
                export_definition,
                export_path,
                interval_seconds,
                ..
            } => {
                match (export_definition.kind, &export_definition.btql_query) {
                    (ExportDefinitionType::LogSpans, None) => {}
                    (ExportDefinitionType::LogSpans, Some(_)) => {
                        return Err(ServiceError::field(
                            "config.export_definition.btql_query",
                            "a `log_spans` export has no query; use `type: btql_query`",
                        ));
                    }
                    (ExportDefinitionType::BtqlQuery, None) => {
                        return Err(ServiceError::field(
                            "config.export_definition.btql_query",
                            "a `btql_query` export needs `btql_query`",
                        ));
                    }
                    (ExportDefinitionType::BtqlQuery, Some(q)) => {
                        crate::btql::scheduled_query(q, project_id)?;
                    }
                }
                if !(60..=2_678_400).contains(interval_seconds) {
                    return Err(ServiceError::field(
                        "config.interval_seconds",
                        "`interval_seconds` must be 60 to 2678400 (31 days)",
                    ));
                }
                self.export_location(export_path).map(|_| ())
            }
        }
    }

    /// Where a scheduled export's `export_path` sends it: `local`, or the server's bucket.
    pub(crate) fn export_location(&self, path: &str) -> Result<crate::export::Location> {
        if path == "local" {
            return Ok(crate::export::Location::Dir(self.exports.dir.clone()));
        }
        match &self.exports.s3 {
            Some(s3) if path.trim_end_matches('/') == s3.url_prefix().trim_end_matches('/') => {
                Ok(crate::export::Location::S3(s3.clone()))
            }
            Some(s3) => Err(ServiceError::field(
                "config.export_path",
                format!(
                    "`export_path` must be `local` or this server's bucket, {}",
                    s3.url_prefix()
                ),
            )),
            None => Err(ServiceError::field(
                "config.export_path",
                "`export_path` must be `local`: this server has no bucket set up (s3_bucket)",
            )),
        }
    }

    /// `GET /v1/project_automation?project_id=` (read on the project) or
    /// `GET /v1/org_automation` (read on the organization).
    pub async fn list_automations(
        &self,
        principal: &Principal,
        project_id: Option<&str>,
        name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AutomationRecord>> {
        let lookup = self.lookup(principal)?;
        match project_id {
            Some(id) => {
                self.project_pass(principal, id, Permission::Read, Kind::Project)
                    .await?;
            }
            None => {
                self.org_grant(principal, Permission::Read, Kind::Organization)
                    .await?;
            }
        }
        Ok(self
            .store
            .list_automations(&lookup, project_id, name, limit)
            .await?)
    }

    /// One automation by id, at `level`, for `permission` where it belongs (read it first,
    /// so that a write-only credential learns nothing). Another level's id is not found.
    async fn automation_for(
        &self,
        principal: &Principal,
        level: Level,
        id: &str,
        permission: Permission,
    ) -> Result<(AutomationRecord, Scoped)> {
        let lookup = self.lookup(principal)?;
        let rec = self.store.get_automation(&lookup, id).await?;
        let scoped = match (level, rec.project_id.as_deref()) {
            (Level::Project, Some(project)) => {
                let (_, pass) = if permission == Permission::Read {
                    self.project_pass(principal, project, Permission::Read, Kind::Project)
                        .await?
                } else {
                    self.project_pass_showing(principal, project, permission)
                        .await?
                };
                Scoped::Project(pass)
            }
            (Level::Org, None) => {
                self.org_grant(principal, Permission::Read, Kind::Organization)
                    .await?;
                Scoped::Org(
                    self.org_grant(principal, permission, Kind::Organization)
                        .await?,
                )
            }
            _ => return Err(ServiceError::NotFound("automation".into())),
        };
        Ok((rec, scoped))
    }

    pub async fn get_automation(
        &self,
        principal: &Principal,
        level: Level,
        id: &str,
    ) -> Result<AutomationRecord> {
        Ok(self
            .automation_for(principal, level, id, Permission::Read)
            .await?
            .0)
    }

    /// `GET /v1/project_automation/{id}/runs`: a scheduled export's runs, newest first.
    pub async fn automation_runs(
        &self,
        principal: &Principal,
        id: &str,
        limit: i64,
    ) -> Result<Vec<holdfast_store::RunRecord>> {
        let (rec, _) = self
            .automation_for(principal, Level::Project, id, Permission::Read)
            .await?;
        Ok(self
            .store
            .list_runs(&self.lookup(principal)?, &rec.id, limit)
            .await?)
    }

    /// `POST /v1/project_automation/{id}/run`: the next purge run starts a run of this
    /// scheduled export, whatever its interval.
    pub async fn request_automation_run(&self, principal: &Principal, id: &str) -> Result<()> {
        let (rec, scoped) = self
            .automation_for(principal, Level::Project, id, Permission::Delete)
            .await?;
        let Scoped::Project(pass) = &scoped else {
            return Err(ServiceError::NotFound("automation".into()));
        };
        if rec.event_type != "btql_export" {
            return Err(ServiceError::Conflict(
                "only a scheduled export (event_type btql_export) runs on request".into(),
            ));
        }
        self.store.request_run(pass, id).await?;
        principal
            .trail
            .change(json!({"requested_run": "project_automation", "id": id}));
        Ok(())
    }

    /// `PATCH /v1/{project,org}_automation/{id}`.
    pub async fn patch_automation(
        &self,
        principal: &Principal,
        level: Level,
        id: &str,
        patch: &PatchAutomation,
    ) -> Result<AutomationRecord> {
        match (&patch.config, level) {
            // Checked below, once the automation's project is known.
            (Some(_), Level::Project) => {}
            (Some(c), Level::Org) => match c.retention() {
                Some(r) => check_config(&r)?,
                None => {
                    return Err(ServiceError::field(
                        "config.event_type",
                        "an organization's automation is a retention policy",
                    ));
                }
            },
            (None, _) => {}
        }
        if let Some(d) = &patch.description {
            check_description(d.as_deref())?;
        }
        if let Some(n) = &patch.name {
            check_name(n)?;
        }
        let (mut rec, scoped) = self
            .automation_for(principal, level, id, write_permission(level))
            .await?;
        if let (Some(c), Some(project_id)) = (&patch.config, &rec.project_id) {
            self.check_project_config(c, project_id)?;
        }
        let before = rec.config.clone();
        if let Some(n) = &patch.name {
            rec.name.clone_from(n);
        }
        if let Some(d) = &patch.description {
            rec.description.clone_from(d);
        }
        if let Some(c) = &patch.config {
            let (event_type, object_type) = kind_of(c);
            rec.event_type = event_type.into();
            rec.object_type = object_type;
            rec.config =
                serde_json::to_value(c).map_err(|e| ServiceError::Internal(e.to_string()))?;
        }
        let updated = self.store.update_automation(scoped.scope(), &rec).await?;
        principal
            .trail
            .change(json!({"updated": level.name(), "id": id,
            "config": {"before": before, "after": updated.config}}));
        Ok(updated)
    }

    /// `DELETE /v1/{project,org}_automation/{id}`: returns what was deleted.
    pub async fn delete_automation(
        &self,
        principal: &Principal,
        level: Level,
        id: &str,
    ) -> Result<AutomationRecord> {
        let (rec, scoped) = self
            .automation_for(principal, level, id, write_permission(level))
            .await?;
        self.store.delete_automation(scoped.scope(), id).await?;
        principal.trail.change(
            json!({"deleted": level.name(), "id": id, "name": rec.name, "config": rec.config}),
        );
        Ok(rec)
    }

    /// `POST /v1/{project,org}_automation/preview`: what a policy would delete if it were
    /// saved now, for someone who could save it. Counted through the value index of
    /// `created` (rows written since the index last caught up are not counted) in the
    /// objects the caller may read; `unreadable_objects` says how many it may not.
    pub async fn preview_retention(
        &self,
        principal: &Principal,
        level: Level,
        req: &RetentionPreviewRequest,
    ) -> Result<RetentionPreview> {
        check_config(&req.config)?;
        let lookup = self.lookup(principal)?;
        let kind = object_type_of(req.config.object_type);
        // (project id, name, pass to list its objects).
        let mut projects = Vec::new();
        match (level, req.project_id.as_deref()) {
            (Level::Project, Some(id)) => {
                let (project, pass) = self
                    .project_pass_showing(principal, id, Permission::Delete)
                    .await?;
                projects.push((project.id, project.name, Some(pass)));
            }
            (Level::Project, None) => {
                return Err(ServiceError::field(
                    "project_id",
                    "`project_id` is required",
                ));
            }
            (Level::Org, Some(_)) => {
                return Err(ServiceError::field(
                    "project_id",
                    "an organization's policy applies to every project: preview a project's \
                     through /v1/project_automation/preview",
                ));
            }
            (Level::Org, None) => {
                let pass = self
                    .org_grant(principal, Permission::Update, Kind::Organization)
                    .await?;
                for (id, name) in self.store.live_projects(&pass).await? {
                    let own = self.store.retention_policies_for(&lookup, &id).await?;
                    if own.iter().any(|p| {
                        p.project_id.is_some()
                            && p.object_type.as_deref() == Some(req.config.object_type.as_str())
                    }) {
                        continue;
                    }
                    projects.push((id, name, None));
                }
            }
        }
        let now = self.clock.now();
        let cutoff = cutoff_of(now, req.config.retention_days);
        let cutoff_text = format_timestamp(cutoff);
        // A preview counts, however many projects and rows there are, for at most the query
        // time limit.
        let deadline = std::time::Instant::now() + self.limits.query_timeout;
        let mut out = RetentionPreview {
            object_type: req.config.object_type,
            retention_days: req.config.retention_days,
            cutoff: cutoff_text.clone(),
            rows: 0,
            objects: 0,
            unreadable_objects: 0,
            projects: Vec::new(),
        };
        for (project_id, name, pass) in projects {
            let mut p = RetentionPreviewProject {
                project_id: project_id.clone(),
                name,
                rows: 0,
                objects: 0,
            };
            let objects: Vec<(String, String)> = if kind == ObjectType::ProjectLogs {
                vec![(project_id.clone(), String::new())]
            } else {
                let pass = match pass {
                    Some(pass) => pass,
                    None => {
                        self.project_pass(principal, &project_id, Permission::Read, Kind::Project)
                            .await?
                            .1
                    }
                };
                self.store
                    .live_objects(&pass, kind)
                    .await?
                    .into_iter()
                    .filter(|(_, _, created)| {
                        kind != ObjectType::Experiment || *created < cutoff_text
                    })
                    .map(|(id, _, created)| (id, created))
                    .collect()
            };
            for (id, _) in objects {
                let pass = match self
                    .object_pass(principal, kind, &id, Permission::Read)
                    .await
                {
                    Ok((_, pass)) => pass,
                    Err(ServiceError::Forbidden(_) | ServiceError::NotFound(_)) => {
                        out.unreadable_objects += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if kind == ObjectType::Experiment {
                    p.objects += 1;
                    p.rows += self.count_created(&pass, None, deadline).await?;
                } else {
                    p.rows += self.count_created(&pass, Some(cutoff), deadline).await?;
                }
            }
            out.rows += p.rows;
            out.objects += p.objects;
            if p.rows > 0 || p.objects > 0 {
                out.projects.push(p);
            }
        }
        Ok(out)
    }

    /// Rows of an object the value index holds with a `created` before `cutoff` (every row
    /// with a `created`, without one).
    async fn count_created(
        &self,
        pass: &ObjectPass,
        cutoff: Option<OffsetDateTime>,
        deadline: std::time::Instant,
    ) -> Result<u64> {
        let q = created_query();
        let cutoff_text = cutoff.map(format_timestamp);
        let mut from = ValueFrom::Start;
        let mut n = 0u64;
        loop {
            if std::time::Instant::now() > deadline {
                return Err(ServiceError::QueryTimeout(format!(
                    "the preview counted for longer than the query time limit ({} ms); \
                     preview one project at a time",
                    self.limits.query_timeout.as_millis()
                )));
            }
            let entries = self.store.value_entries(pass, &q, &from, 10 * PAGE).await?;
            let Some(last) = entries.last() else {
                return Ok(n);
            };
            from = ValueFrom::After(last.value.clone(), last.seq);
            let full = entries.len() == 10 * PAGE;
            for e in &entries {
                let IndexValue::Text(v) = &e.value else {
                    continue;
                };
                match (cutoff, &cutoff_text) {
                    (Some(c), Some(text)) => {
                        if past(v, text) {
                            return Ok(n);
                        }
                        n += u64::from(created_before(v, c));
                    }
                    _ => n += 1,
                }
            }
            if !full {
                return Ok(n);
            }
        }
    }

    // ---- applying the policies ----

    /// Applies every retention policy once (the first step of a purge run, under its lease).
    pub(crate) async fn apply_retention(&self, holder: &str) -> Result<Expired> {
        let mut total = Expired::default();
        let policies = self.store.all_retention_policies(&why()).await?;
        let mut orgs: Vec<&str> = policies.iter().map(|p| p.org_id.as_str()).collect();
        orgs.dedup();
        for org in orgs {
            let of_org: Vec<&AutomationRecord> =
                policies.iter().filter(|p| p.org_id == org).collect();
            let projects = self.store.live_projects_system(&why(), org).await?;
            for (project, _) in projects {
                for t in [
                    RetentionObjectType::ProjectLogs,
                    RetentionObjectType::Experiment,
                    RetentionObjectType::Dataset,
                ] {
                    let of_type =
                        |p: &&&AutomationRecord| p.object_type.as_deref() == Some(t.as_str());
                    let policy = of_org
                        .iter()
                        .filter(of_type)
                        .find(|p| p.project_id.as_deref() == Some(project.as_str()))
                        .or_else(|| {
                            of_org
                                .iter()
                                .filter(of_type)
                                .find(|p| p.project_id.is_none())
                        });
                    if let Some(policy) = policy {
                        let e = self.apply_policy(holder, policy, &project).await?;
                        total.rows += e.rows;
                        total.objects += e.objects;
                    }
                }
            }
        }
        Ok(total)
    }

    async fn apply_policy(
        &self,
        holder: &str,
        policy: &AutomationRecord,
        project: &str,
    ) -> Result<Expired> {
        let config = config_of(policy)?;
        let now = self.clock.now();
        let cutoff = cutoff_of(now, config.retention_days);
        let org = policy.org_id.as_str();
        let mut out = Expired::default();
        let kind = object_type_of(config.object_type);
        let objects = match kind {
            ObjectType::ProjectLogs => vec![(project.to_owned(), String::new(), String::new())],
            _ => {
                self.store
                    .live_objects_system(&why(), org, project, kind)
                    .await?
            }
        };
        let cutoff_text = format_timestamp(cutoff);
        for (id, name, created) in objects {
            if kind == ObjectType::Experiment {
                if created >= cutoff_text {
                    // Oldest first: the rest are younger.
                    break;
                }
                if self
                    .store
                    .expire_object(&why(), org, kind, &id, &cutoff_text, &format_timestamp(now))
                    .await?
                {
                    out.objects += 1;
                    self.audit
                        .record_durable(retention_entry(
                            self.now(),
                            policy,
                            kind,
                            &id,
                            json!({"name": name, "created": created, "cutoff": cutoff_text}),
                        ))
                        .await?;
                }
                continue;
            }
            out.rows += self
                .expire_rows(holder, policy, project, kind, &id, cutoff)
                .await?;
        }
        self.purge.retention_rows.fetch_add(out.rows, Relaxed);
        self.purge.retention_objects.fetch_add(out.objects, Relaxed);
        Ok(out)
    }

    /// Writes a deleting version for every row of an object created before `cutoff`, a page
    /// of the index at a time, each page's deletions with their audit entry in one
    /// transaction.
    async fn expire_rows(
        &self,
        holder: &str,
        policy: &AutomationRecord,
        project: &str,
        kind: ObjectType,
        id: &str,
        cutoff: OffsetDateTime,
    ) -> Result<u64> {
        let org = policy.org_id.as_str();
        let read = system_read_pass(&why(), org, project, kind, id);
        let delete = system_delete_pass(&why(), org, project, kind, id);
        let q = created_query();
        let cutoff_text = format_timestamp(cutoff);
        let mut from = ValueFrom::Start;
        let mut total = 0u64;
        loop {
            if !self.renew_purge_lease(holder).await? {
                return Err(crate::purge::lease_lost());
            }
            let entries = self.store.value_entries(&read, &q, &from, PAGE).await?;
            let Some(last) = entries.last() else {
                break;
            };
            from = ValueFrom::After(last.value.clone(), last.seq);
            let mut done = entries.len() < PAGE;
            let mut ids = Vec::new();
            for e in &entries {
                let IndexValue::Text(v) = &e.value else {
                    continue;
                };
                if past(v, &cutoff_text) {
                    done = true;
                    break;
                }
                if created_before(v, cutoff) {
                    ids.push(e.row_id.clone());
                }
            }
            ids.sort_unstable();
            ids.dedup();
            if !ids.is_empty() {
                // Read again: the index may be behind a newer version of a row.
                let rows = self.store.read_row_ids(&read, &ids, None).await?;
                let mut deletions = Vec::new();
                for row in rows {
                    let old = row
                        .data
                        .get("created")
                        .and_then(Value::as_str)
                        .is_some_and(|c| created_before(c, cutoff));
                    if old {
                        deletions.push(deletion(&row.row_id, &delete)?);
                    }
                }
                let n = deletions.len() as u64;
                if n > 0 {
                    let entry = retention_entry(
                        self.now(),
                        policy,
                        kind,
                        id,
                        json!({"rows": n, "cutoff": cutoff_text}),
                    );
                    self.store
                        .write_rows_audited(
                            vec![(delete.clone(), deletions)],
                            &self.now(),
                            vec![entry],
                        )
                        .await?;
                    total += n;
                }
            }
            if done {
                break;
            }
        }
        Ok(total)
    }

    /// A conflict when a retention policy would delete this experiment again as soon as it
    /// was restored.
    pub(crate) async fn retention_allows_restore(
        &self,
        principal: &Principal,
        project_id: &str,
        kind: ObjectType,
        created: &str,
    ) -> Result<()> {
        if kind != ObjectType::Experiment {
            return Ok(());
        }
        let lookup = self.lookup(principal)?;
        let policies = self
            .store
            .retention_policies_for(&lookup, project_id)
            .await?;
        for p in policies {
            let config = config_of(&p)?;
            if config.object_type != RetentionObjectType::Experiment {
                continue;
            }
            let cutoff = format_timestamp(cutoff_of(self.clock.now(), config.retention_days));
            if created < cutoff.as_str() {
                return Err(ServiceError::Conflict(format!(
                    "the retention policy {:?} ({} days) would delete this experiment again: \
                     change or delete that policy first",
                    p.name, config.retention_days
                )));
            }
        }
        Ok(())
    }
}

impl Services {
    /// A conflict when a retention policy of the object's project would delete one of these
    /// rows (about to be restored) again.
    pub(crate) async fn retention_allows_rows(
        &self,
        principal: &Principal,
        pass: &ObjectPass,
        rows: &[holdfast_store::StoredRow],
    ) -> Result<()> {
        let t = match pass.object_type() {
            ObjectType::ProjectLogs => RetentionObjectType::ProjectLogs,
            ObjectType::Dataset => RetentionObjectType::Dataset,
            _ => return Ok(()),
        };
        let lookup = self.lookup(principal)?;
        let policies = self
            .store
            .retention_policies_for(&lookup, pass.project_id())
            .await?;
        for p in policies {
            let config = config_of(&p)?;
            if config.object_type != t {
                continue;
            }
            let cutoff = cutoff_of(self.clock.now(), config.retention_days);
            let expired = rows.iter().filter(|r| {
                r.data
                    .get("created")
                    .and_then(Value::as_str)
                    .is_some_and(|c| created_before(c, cutoff))
            });
            if let Some(r) = expired.clone().next() {
                return Err(ServiceError::Conflict(format!(
                    "the retention policy {:?} ({} days) would delete {} of these rows again \
                     (row {:?} among them): change or delete that policy first, or restore \
                     other rows by `row_ids`",
                    p.name,
                    config.retention_days,
                    expired.count(),
                    r.row_id
                )));
            }
        }
        Ok(())
    }
}

/// An index entry of `created` past the cutoff's second: every later entry is too (entries
/// are in text order, and a timestamp's first 19 characters name its second).
fn past(v: &str, cutoff: &str) -> bool {
    v.get(..19).unwrap_or(v) > cutoff.get(..19).unwrap_or(cutoff)
}

/// The deleting version of a row.
fn deletion(row_id: &str, pass: &ObjectPass) -> Result<IncomingRow> {
    let mut data = Map::new();
    data.insert("id".into(), json!(row_id));
    data.insert("_object_delete".into(), json!(true));
    let control = take_control(&mut data).map_err(|e| ServiceError::Internal(e.to_string()))?;
    crate::ingest::stamp_object_fields(&mut data, pass);
    Ok(IncomingRow {
        row_id: row_id.to_owned(),
        control,
        data,
    })
}

fn retention_entry(
    at: String,
    policy: &AutomationRecord,
    kind: ObjectType,
    id: &str,
    mut detail: Value,
) -> NewAuditEntry {
    if let Value::Object(m) = &mut detail {
        m.insert("automation_id".into(), json!(policy.id));
        m.insert("automation".into(), json!(policy.name));
        m.insert("config".into(), policy.config.clone());
    }
    NewAuditEntry {
        at,
        org_id: Some(policy.org_id.clone()),
        actor_id: None,
        key_id: None,
        action: "retention".into(),
        object_type: Some(kind.as_str().into()),
        object_id: Some(id.into()),
        detail,
    }
}

/// A policy deletes: a project's takes `delete` on the project; the organization's, `update`
/// on the organization (Owners).
fn write_permission(level: Level) -> Permission {
    match level {
        Level::Project => Permission::Delete,
        Level::Org => Permission::Update,
    }
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Self::Project => "project_automation",
            Self::Org => "org_automation",
        }
    }
}

/// The pass an automation is changed under.
enum Scoped {
    Project(holdfast_core::authz::ProjectPass),
    Org(holdfast_core::authz::OrgPass),
}

impl Scoped {
    fn scope(&self) -> AutomationScope<'_> {
        match self {
            Self::Project(p) => AutomationScope::Project(p),
            Self::Org(p) => AutomationScope::Org(p),
        }
    }
}

/// A stored run as the API shows it.
pub fn run_json(r: &holdfast_store::RunRecord) -> holdfast_api::objects::AutomationRun {
    // The SDKs' 19-digit form; `0` before the first write.
    let xact = |x: i64| {
        holdfast_core::xact::XactId::from_i64(x).map_or_else(|| "0".to_owned(), |x| x.to_string())
    };
    holdfast_api::objects::AutomationRun {
        run: r.run,
        status: r.status.clone(),
        started: r.started.clone(),
        finished: r.finished.clone(),
        from_xact: xact(r.from_xact),
        to_xact: xact(r.to_xact),
        rows: r.rows,
        location: r.location.clone(),
        export_id: r.export_id.clone(),
        error: r.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_core::clock::{Clock, ManualClock};

    /// A row exactly at the cutoff stays; a microsecond earlier it is expired; the same
    /// instant written with another precision compares as that instant; what is not a
    /// timestamp in the server's form never expires.
    #[test]
    fn expiry_at_the_boundary() {
        let now = ManualClock::at_unix(1_800_000_000).now();
        let cutoff = cutoff_of(now, 30);
        let at = format_timestamp(cutoff);
        assert_eq!(at, "2026-12-16T08:00:00.000000Z");
        assert!(!created_before(&at, cutoff));
        assert!(!created_before("2026-12-16T08:00:00Z", cutoff));
        assert!(!created_before("2026-12-16T08:00:00.000Z", cutoff));
        assert!(created_before("2026-12-16T07:59:59.999999Z", cutoff));
        assert!(created_before("2026-12-16T07:59:59Z", cutoff));
        assert!(!created_before("2026-12-16T08:00:00.000001Z", cutoff));
        assert!(
            !created_before("2026-12-16T09:00:00+01:00", cutoff),
            "the same instant"
        );
        assert!(created_before("2026-12-16T07:59:59.999999+00:00", cutoff));
        assert!(created_before("2026-12-16T08:59:59+01:00", cutoff));
        assert!(!created_before("last year", cutoff));
        assert!(!created_before("", cutoff));
    }

    /// The scan of the index stops at the first entry past the cutoff's second, and not
    /// before: entries of the cutoff's own second, in any precision, are still read.
    #[test]
    fn the_scan_stops_after_the_cutoff_second() {
        let at = "2026-12-16T08:00:00.000000Z";
        assert!(!past("2026-12-16T08:00:00Z", at));
        assert!(!past("2026-12-16T08:00:00.5Z", at));
        assert!(!past("2026-12-16T07:59:59.999999Z", at));
        assert!(past("2026-12-16T08:00:01Z", at));
        assert!(past("2026-12-17T00:00:00.000000Z", at));
    }

    #[test]
    fn policies_are_checked() {
        let config = |days| RetentionConfig {
            event_type: holdfast_api::objects::AutomationEvent::Retention,
            object_type: RetentionObjectType::ProjectLogs,
            retention_days: days,
        };
        assert!(check_config(&config(1)).is_ok());
        assert!(check_config(&config(MAX_RETENTION_DAYS)).is_ok());
        for bad in [0, -1, MAX_RETENTION_DAYS + 1, i64::MAX] {
            match check_config(&config(bad)) {
                Err(ServiceError::InvalidField { field, .. }) => {
                    assert_eq!(field, "config.retention_days")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(check_name("").is_err());
        assert!(check_name("  ").is_err());
        assert!(check_name(&"x".repeat(1025)).is_err());
        assert!(check_name("keep 30 days").is_ok());
    }
}
