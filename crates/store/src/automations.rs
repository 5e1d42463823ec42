//! Automations of a project or of an organization: today, retention policies (see
//! `holdfast_services::retention`). An organization's automations have no project and are
//! the default of every project without one of its own for the same object type.

use crate::db::with_pool;
use crate::meta::{require_grant, require_write};
use crate::{Result, Store, StoreError};
use holdfast_core::authz::{Kind, OrgPass, Permission, ProjectPass, SystemPass};
use holdfast_core::object::ObjectType;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct AutomationRecord {
    pub id: String,
    pub org_id: String,
    /// `None` for an organization's automation.
    pub project_id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub event_type: String,
    /// For a retention policy: `project_logs`, `experiment` or `dataset`.
    pub object_type: Option<String>,
    pub config: Value,
    pub user_id: Option<String>,
    pub created: String,
}

/// Where an automation belongs, with the decision that lets the caller change it there.
pub enum AutomationScope<'a> {
    Project(&'a ProjectPass),
    /// An organization pass carrying `update` on the organization.
    Org(&'a OrgPass),
}

impl AutomationScope<'_> {
    fn check(&self) -> Result<(&str, Option<&str>)> {
        match self {
            Self::Project(p) => {
                require_write(p.permission())?;
                Ok((p.org_id(), Some(p.project_id())))
            }
            Self::Org(p) => {
                require_grant(p, Permission::Update, Kind::Organization)?;
                Ok((p.org_id(), None))
            }
        }
    }
}

type Row = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
);

const COLUMNS: &str = "id, org_id, project_id, name, description, event_type, object_type, \
                       config, user_id, created";

fn record(r: Row) -> Result<AutomationRecord> {
    let config = serde_json::from_str(&r.7)
        .map_err(|e| StoreError::Corrupt(format!("automation {}: {e}", r.0)))?;
    Ok(AutomationRecord {
        id: r.0,
        org_id: r.1,
        project_id: r.2,
        name: r.3,
        description: r.4,
        event_type: r.5,
        object_type: r.6,
        config,
        user_id: r.8,
        created: r.9,
    })
}

fn records(rows: Vec<Row>) -> Result<Vec<AutomationRecord>> {
    rows.into_iter().map(record).collect()
}

impl Store {
    /// Creates an automation in `scope`, or returns the one of that name there unchanged.
    /// A conflict when the scope already has a retention policy for the object type.
    pub async fn create_automation(
        &self,
        scope: AutomationScope<'_>,
        rec: &AutomationRecord,
    ) -> Result<AutomationRecord> {
        let (org_id, project_id) = scope.check()?;
        let inserted = with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "INSERT INTO automations (id, org_id, project_id, name, description, event_type, \
                 object_type, config, user_id, created) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(&rec.id)
            .bind(org_id)
            .bind(project_id)
            .bind(&rec.name)
            .bind(&rec.description)
            .bind(&rec.event_type)
            .bind(&rec.object_type)
            .bind(rec.config.to_string())
            .bind(&rec.user_id)
            .bind(&rec.created)
            .execute(p)
            .await?;
            Ok::<_, StoreError>(done.rows_affected() == 1)
        })?;
        if inserted {
            return self
                .automation_in(org_id, project_id, "id", &rec.id)
                .await?
                .ok_or(StoreError::NotFound("automation"));
        }
        if let Some(existing) = self
            .automation_in(org_id, project_id, "name", &rec.name)
            .await?
        {
            return Ok(existing);
        }
        Err(StoreError::Conflict(format!(
            "{} already has a retention policy for {}: change that one instead",
            if project_id.is_some() {
                "this project"
            } else {
                "this organization"
            },
            rec.object_type.as_deref().unwrap_or("this object type")
        )))
    }

    /// The automation whose `column` (`id` or `name`) is `value` in a scope.
    async fn automation_in(
        &self,
        org_id: &str,
        project_id: Option<&str>,
        column: &'static str,
        value: &str,
    ) -> Result<Option<AutomationRecord>> {
        let row: Option<Row> = with_pool!(&self.read, |p, DB| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM automations WHERE org_id = $1 \
                 AND COALESCE(project_id, '') = $2 AND {column} = $3"
            )))
            .bind(org_id)
            .bind(project_id.unwrap_or(""))
            .bind(value)
            .fetch_optional(p)
            .await?
        });
        row.map(record).transpose()
    }

    /// An automation of the pass's organization by id (project or organization level; the
    /// caller decides access by where it belongs).
    pub async fn get_automation(&self, pass: &OrgPass, id: &str) -> Result<AutomationRecord> {
        let row: Option<Row> = with_pool!(&self.read, |p, DB| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM automations WHERE org_id = $1 AND id = $2"
            )))
            .bind(pass.org_id())
            .bind(id)
            .fetch_optional(p)
            .await?
        });
        row.map(record)
            .transpose()?
            .ok_or(StoreError::NotFound("automation"))
    }

    /// The automations of a project (`Some`) or of the organization itself (`None`), by
    /// name, at most `limit`.
    pub async fn list_automations(
        &self,
        pass: &OrgPass,
        project_id: Option<&str>,
        name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AutomationRecord>> {
        let rows: Vec<Row> = with_pool!(&self.read, |p, DB| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM automations WHERE org_id = $1 \
                 AND COALESCE(project_id, '') = $2 AND ($3 IS NULL OR name = $3) \
                 ORDER BY name LIMIT $4"
            )))
            .bind(pass.org_id())
            .bind(project_id.unwrap_or(""))
            .bind(name)
            .bind(limit)
            .fetch_all(p)
            .await?
        });
        records(rows)
    }

    /// Replaces an automation's name, description and configuration (its scope and id stay).
    pub async fn update_automation(
        &self,
        scope: AutomationScope<'_>,
        rec: &AutomationRecord,
    ) -> Result<AutomationRecord> {
        let (org_id, project_id) = scope.check()?;
        let done = with_pool!(&self.write, |p, DB| {
            sqlx::query(
                "UPDATE automations SET name = $1, description = $2, object_type = $3, \
                 config = $4, event_type = $8 \
                 WHERE id = $5 AND org_id = $6 AND COALESCE(project_id, '') = $7",
            )
            .bind(&rec.name)
            .bind(&rec.description)
            .bind(&rec.object_type)
            .bind(rec.config.to_string())
            .bind(&rec.id)
            .bind(org_id)
            .bind(project_id.unwrap_or(""))
            .bind(&rec.event_type)
            .execute(p)
            .await
            .map(|d| d.rows_affected())
        });
        match done {
            Ok(0) => Err(StoreError::NotFound("automation")),
            Ok(_) => self
                .automation_in(org_id, project_id, "id", &rec.id)
                .await?
                .ok_or(StoreError::NotFound("automation")),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
                "another automation here has this name, or is the retention policy for this \
                 object type"
                    .into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_automation(&self, scope: AutomationScope<'_>, id: &str) -> Result<()> {
        let (org_id, project_id) = scope.check()?;
        let done = with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let n = sqlx::query(
                "DELETE FROM automations WHERE id = $1 AND org_id = $2 \
                 AND COALESCE(project_id, '') = $3",
            )
            .bind(id)
            .bind(org_id)
            .bind(project_id.unwrap_or(""))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                sqlx::query("DELETE FROM automation_runs WHERE automation_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            n
        });
        if done == 0 {
            return Err(StoreError::NotFound("automation"));
        }
        Ok(())
    }

    /// Every retention policy of every organization (for the retention run).
    pub async fn all_retention_policies(&self, _why: &SystemPass) -> Result<Vec<AutomationRecord>> {
        let rows: Vec<Row> = with_pool!(&self.read, |p, DB| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM automations WHERE event_type = 'retention' \
                 ORDER BY org_id, project_id, object_type"
            )))
            .fetch_all(p)
            .await?
        });
        records(rows)
    }

    /// The retention policies that apply in a project: its own, and its organization's for
    /// the object types it has none for.
    pub async fn retention_policies_for(
        &self,
        pass: &OrgPass,
        project_id: &str,
    ) -> Result<Vec<AutomationRecord>> {
        let rows: Vec<Row> = with_pool!(&self.read, |p, DB| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM automations a WHERE org_id = $1 AND event_type = 'retention' \
                 AND (project_id = $2 OR (project_id IS NULL AND NOT EXISTS ( \
                   SELECT 1 FROM automations o WHERE o.org_id = a.org_id AND o.project_id = $2 \
                   AND o.event_type = 'retention' AND o.object_type = a.object_type))) \
                 ORDER BY object_type"
            )))
            .bind(pass.org_id())
            .bind(project_id)
            .fetch_all(p)
            .await?
        });
        records(rows)
    }
}

/// A live object: (id, name, created).
pub type LiveObject = (String, String, String);

impl Store {
    /// The organization's live projects, (id, name), for someone allowed to change its
    /// automations (a pass carrying `update` on the organization).
    pub async fn live_projects(&self, pass: &OrgPass) -> Result<Vec<(String, String)>> {
        require_grant(pass, Permission::Update, Kind::Organization)?;
        self.live_projects_of(pass.org_id()).await
    }

    /// The same, for the retention run.
    pub async fn live_projects_system(
        &self,
        _why: &SystemPass,
        org_id: &str,
    ) -> Result<Vec<(String, String)>> {
        self.live_projects_of(org_id).await
    }

    async fn live_projects_of(&self, org_id: &str) -> Result<Vec<(String, String)>> {
        Ok(with_pool!(&self.read, |p, DB| {
            sqlx::query_as(
                "SELECT id, name FROM projects WHERE org_id = $1 AND deleted_at IS NULL ORDER BY id",
            )
            .bind(org_id)
            .fetch_all(p)
            .await?
        }))
    }

    /// A project's live objects of a kind, oldest first.
    pub async fn live_objects(
        &self,
        pass: &ProjectPass,
        kind: ObjectType,
    ) -> Result<Vec<LiveObject>> {
        self.live_objects_of(pass.org_id(), pass.project_id(), kind)
            .await
    }

    /// The same, for the retention run.
    pub async fn live_objects_system(
        &self,
        _why: &SystemPass,
        org_id: &str,
        project_id: &str,
        kind: ObjectType,
    ) -> Result<Vec<LiveObject>> {
        self.live_objects_of(org_id, project_id, kind).await
    }

    async fn live_objects_of(
        &self,
        org_id: &str,
        project_id: &str,
        kind: ObjectType,
    ) -> Result<Vec<LiveObject>> {
        Ok(with_pool!(&self.read, |p, DB| {
            sqlx::query_as(
                "SELECT id, name, created FROM objects WHERE org_id = $1 AND project_id = $2 \
                 AND kind = $3 AND deleted_at IS NULL ORDER BY created, id",
            )
            .bind(org_id)
            .bind(project_id)
            .bind(kind.as_str())
            .fetch_all(p)
            .await?
        }))
    }

    /// Deletes (softly, as `DELETE` does) a live object created before `cutoff`, for the
    /// retention run; false when it is no longer live or no longer that old.
    pub async fn expire_object(
        &self,
        _why: &SystemPass,
        org_id: &str,
        kind: ObjectType,
        id: &str,
        cutoff: &str,
        now: &str,
    ) -> Result<bool> {
        Ok(with_pool!(&self.write, |p, DB| {
            sqlx::query(
                "UPDATE objects SET deleted_at = $1 WHERE id = $2 AND org_id = $3 AND kind = $4 \
                 AND deleted_at IS NULL AND created < $5",
            )
            .bind(now)
            .bind(id)
            .bind(org_id)
            .bind(kind.as_str())
            .bind(cutoff)
            .execute(p)
            .await?
            .rows_affected()
                == 1
        }))
    }
}

/// One run of a scheduled export, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunRecord {
    pub automation_id: String,
    pub run: i64,
    pub status: String,
    pub started: String,
    pub finished: Option<String>,
    pub from_xact: i64,
    pub to_xact: i64,
    pub rows: Option<i64>,
    pub location: Option<String>,
    pub export_id: Option<String>,
    pub error: Option<String>,
}

/// The runs an automation's history keeps (the newest).
pub const RUNS_KEPT: i64 = 1000;

const RUN_COLUMNS: &str = "automation_id, run, status, started, finished, from_xact, to_xact, \
                           rows, location, export_id, error";

impl Store {
    /// Every scheduled export of every organization, with whether a run was asked for.
    pub async fn export_automations(
        &self,
        _why: &SystemPass,
    ) -> Result<Vec<(AutomationRecord, bool)>> {
        let (rows, requested): (Vec<Row>, Vec<String>) = with_pool!(&self.read, |p, DB| {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM automations WHERE event_type = 'btql_export' ORDER BY id"
            )))
            .fetch_all(p)
            .await?;
            let requested = sqlx::query_scalar(
                "SELECT id FROM automations WHERE event_type = 'btql_export' AND run_requested",
            )
            .fetch_all(p)
            .await?;
            (rows, requested)
        });
        let requested: std::collections::HashSet<String> = requested.into_iter().collect();
        records(rows)?
            .into_iter()
            .map(|r| {
                let asked = requested.contains(&r.id);
                Ok((r, asked))
            })
            .collect()
    }

    /// Asks for a run of a project's scheduled export at the next lifecycle run.
    pub async fn request_run(&self, pass: &ProjectPass, id: &str) -> Result<()> {
        require_write(pass.permission())?;
        let done = with_pool!(&self.write, |p, DB| {
            sqlx::query(
                "UPDATE automations SET run_requested = TRUE WHERE id = $1 AND org_id = $2 \
                 AND project_id = $3 AND event_type = 'btql_export'",
            )
            .bind(id)
            .bind(pass.org_id())
            .bind(pass.project_id())
            .execute(p)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound("scheduled export"));
        }
        Ok(())
    }

    /// The latest run of an automation.
    pub async fn last_run(
        &self,
        _why: &SystemPass,
        automation_id: &str,
    ) -> Result<Option<RunRecord>> {
        let row: Option<RunRecord> = with_pool!(&self.read, |p, DB| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {RUN_COLUMNS} FROM automation_runs WHERE automation_id = $1 \
                 ORDER BY run DESC LIMIT 1"
            )))
            .bind(automation_id)
            .fetch_optional(p)
            .await?
        });
        Ok(row)
    }

    /// Records a run as started (or started again, after a stop), and clears the request
    /// for one.
    pub async fn begin_run(&self, _why: &SystemPass, run: &RunRecord) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO automation_runs (automation_id, run, status, started, from_xact, \
                 to_xact) VALUES ($1, $2, 'running', $3, $4, $5) \
                 ON CONFLICT (automation_id, run) DO UPDATE SET status = 'running', \
                 started = $3, finished = NULL, error = NULL",
            )
            .bind(&run.automation_id)
            .bind(run.run)
            .bind(&run.started)
            .bind(run.from_xact)
            .bind(run.to_xact)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE automations SET run_requested = FALSE WHERE id = $1")
                .bind(&run.automation_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })
    }

    /// Records how a run ended, and forgets the automation's runs older than its newest
    /// [`RUNS_KEPT`] (run numbers follow each other, so that is one range).
    pub async fn end_run(&self, _why: &SystemPass, run: &RunRecord) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM automation_runs WHERE automation_id = $1 AND run <= $2")
                .bind(&run.automation_id)
                .bind(run.run - RUNS_KEPT)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE automation_runs SET status = $1, finished = $2, rows = $3, location = $4, \
                 export_id = $5, error = $6 WHERE automation_id = $7 AND run = $8",
            )
            .bind(&run.status)
            .bind(&run.finished)
            .bind(run.rows)
            .bind(&run.location)
            .bind(&run.export_id)
            .bind(&run.error)
            .bind(&run.automation_id)
            .bind(run.run)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })
    }

    /// An automation's runs, newest first, at most `limit` (the caller checked access to
    /// the automation).
    pub async fn list_runs(
        &self,
        pass: &OrgPass,
        automation_id: &str,
        limit: i64,
    ) -> Result<Vec<RunRecord>> {
        let rows: Vec<RunRecord> = with_pool!(&self.read, |p, DB| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {RUN_COLUMNS} FROM automation_runs r WHERE automation_id = $1 \
                 AND EXISTS (SELECT 1 FROM automations a WHERE a.id = r.automation_id \
                 AND a.org_id = $2) ORDER BY run DESC LIMIT $3"
            )))
            .bind(automation_id)
            .bind(pass.org_id())
            .bind(limit)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }
}

/// An export started through the API.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiExportRecord {
    pub id: String,
    pub org_id: String,
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    pub format: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    pub created: String,
    pub finished: Option<String>,
    pub export_id: Option<String>,
    pub rows: Option<i64>,
    pub error: Option<String>,
}

const API_EXPORT_COLUMNS: &str = "id, org_id, project_id, user_id, format, status, created, \
                                  finished, export_id, rows, error";

impl Store {
    /// Records an export started through the API (a pass carrying `create` on exports); a
    /// conflict while another export of the organization, started after `stale_before`, runs
    /// (one started before is taken for a replica that stopped).
    pub async fn insert_api_export(
        &self,
        pass: &OrgPass,
        rec: &ApiExportRecord,
        stale_before: &str,
    ) -> Result<()> {
        require_grant(pass, Permission::Create, Kind::OrgExport)?;
        let inserted = with_pool!(&self.write, |p, DB| {
            sqlx::query(
                "INSERT INTO api_exports (id, org_id, project_id, user_id, format, status, created) \
                 SELECT $1, $2, $3, $4, $5, $6, $7 WHERE NOT EXISTS \
                 (SELECT 1 FROM api_exports WHERE org_id = $2 AND status = 'running' \
                  AND created > $8)",
            )
            .bind(&rec.id)
            .bind(pass.org_id())
            .bind(&rec.project_id)
            .bind(&rec.user_id)
            .bind(&rec.format)
            .bind(&rec.status)
            .bind(&rec.created)
            .bind(stale_before)
            .execute(p)
            .await?
            .rows_affected()
        });
        if inserted == 0 {
            return Err(StoreError::Conflict(
                "an export of this organization is running; wait until it ends".into(),
            ));
        }
        Ok(())
    }

    /// Records how an export ended (the server's own bookkeeping).
    pub async fn finish_api_export(&self, _why: &SystemPass, rec: &ApiExportRecord) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            sqlx::query(
                "UPDATE api_exports SET status = $1, finished = $2, export_id = $3, rows = $4, \
                 error = $5 WHERE id = $6",
            )
            .bind(&rec.status)
            .bind(&rec.finished)
            .bind(&rec.export_id)
            .bind(rec.rows)
            .bind(&rec.error)
            .bind(&rec.id)
            .execute(p)
            .await?;
            Ok::<_, StoreError>(())
        })
    }

    /// Exports still `running` when a server starts were stopped with it: failed.
    pub async fn fail_running_api_exports(&self, _why: &SystemPass, now: &str) -> Result<u64> {
        Ok(with_pool!(&self.write, |p, DB| {
            sqlx::query(
                "UPDATE api_exports SET status = 'failed', finished = $1, \
                 error = 'the server stopped during the export; start it again' \
                 WHERE status = 'running'",
            )
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()
        }))
    }

    /// One export of the organization (a pass carrying `read` on exports).
    pub async fn get_api_export(&self, pass: &OrgPass, id: &str) -> Result<ApiExportRecord> {
        require_grant(pass, Permission::Read, Kind::OrgExport)?;
        let row: Option<ApiExportRecord> = with_pool!(&self.read, |p, DB| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {API_EXPORT_COLUMNS} FROM api_exports WHERE id = $1 AND org_id = $2"
            )))
            .bind(id)
            .bind(pass.org_id())
            .fetch_optional(p)
            .await?
        });
        row.ok_or(StoreError::NotFound("export"))
    }

    /// The organization's exports, newest first.
    pub async fn list_api_exports(
        &self,
        pass: &OrgPass,
        limit: i64,
    ) -> Result<Vec<ApiExportRecord>> {
        require_grant(pass, Permission::Read, Kind::OrgExport)?;
        let rows: Vec<ApiExportRecord> = with_pool!(&self.read, |p, DB| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {API_EXPORT_COLUMNS} FROM api_exports WHERE org_id = $1 \
                 ORDER BY created DESC, id LIMIT $2"
            )))
            .bind(pass.org_id())
            .bind(limit)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::both_stores;

    /// However many runs an automation makes, its history keeps the newest `RUNS_KEPT`, and
    /// another automation's history is untouched.
    #[tokio::test]
    async fn run_history_is_bounded() {
        let why = SystemPass::new("test");
        for (store, db) in both_stores("runs").await {
            let run = |automation: &str, n: i64| RunRecord {
                automation_id: automation.into(),
                run: n,
                status: "done".into(),
                started: "2026-12-01T00:00:00.000000Z".into(),
                finished: Some("2026-12-01T00:00:01.000000Z".into()),
                from_xact: n,
                to_xact: n + 1,
                rows: Some(0),
                location: None,
                export_id: None,
                error: None,
            };
            store.begin_run(&why, &run("other", 1)).await.unwrap();
            store.end_run(&why, &run("other", 1)).await.unwrap();
            for n in 1..=RUNS_KEPT + 25 {
                store.begin_run(&why, &run("a", n)).await.unwrap();
                store.end_run(&why, &run("a", n)).await.unwrap();
            }
            let count = |automation: &'static str| {
                let store = &store;
                async move {
                    with_pool!(&store.read, |p, DB| sqlx::query_scalar::<_, i64>(
                        "SELECT COUNT(*) FROM automation_runs WHERE automation_id = $1"
                    )
                    .bind(automation)
                    .fetch_one(p)
                    .await
                    .unwrap())
                }
            };
            assert_eq!(count("a").await, RUNS_KEPT);
            assert_eq!(count("other").await, 1);
            let last = store.last_run(&why, "a").await.unwrap().unwrap();
            assert_eq!(last.run, RUNS_KEPT + 25);
            store.close().await;
            if let Some(db) = db {
                db.drop_database().await;
            }
        }
    }
}
