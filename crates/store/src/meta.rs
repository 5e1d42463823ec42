//! Organizations, users, API keys, projects, and the named objects inside projects
//! (experiments, datasets, prompts).

use crate::db::{NEXT_COUNTER, with_pool};
use crate::{Result, Store, StoreError};
use holdfast_core::authz::{
    KeyLookupPass, Kind, ObjectPass, OrgPass, Permission, ProjectPass, Reach, SystemPass,
};
use holdfast_core::object::ObjectType;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct OrgRecord {
    pub id: String,
    pub name: String,
    pub created: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub created: String,
}

/// An API key as stored: never the secret, only its keyed hash.
#[derive(Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    pub name: String,
    pub secret_hash: String,
    pub preview_name: String,
    pub created: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    /// The projects the key is limited to; `None` for all the user may reach.
    pub project_ids: Option<Vec<String>>,
    /// `ingest`, `read` or `full`.
    pub capability: String,
    /// The network address the key was last used from.
    pub last_used_from: Option<String>,
}

impl std::fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("user_id", &self.user_id)
            .field("preview_name", &self.preview_name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRecord {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub user_id: Option<String>,
    pub created: String,
    pub deleted_at: Option<String>,
    /// description, settings, ...
    pub info: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRecord {
    pub id: String,
    pub org_id: String,
    pub project_id: String,
    pub kind: ObjectType,
    pub name: String,
    pub user_id: Option<String>,
    pub created: String,
    pub deleted_at: Option<String>,
    /// Every other field of the object (description, metadata, base_exp_id, ...).
    pub info: Map<String, Value>,
}

/// What to do when an object's name is taken in its project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNameConflict {
    /// Return the existing object unchanged (get-or-create).
    ReturnExisting,
    /// Make the name unique by adding a numeric suffix.
    Rename,
}

pub(crate) type KeyRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
);
type ProjectRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
);
type ObjectRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
);

pub(crate) const KEY_COLS: &str = "id, org_id, user_id, name, secret_hash, preview_name, created, expires_at, revoked_at, last_used_at, project_ids, capability, last_used_from";
const PROJECT_COLS: &str = "id, org_id, name, user_id, created, deleted_at, info";
const OBJECT_COLS: &str = "id, org_id, project_id, kind, name, user_id, created, deleted_at, info";
/// Objects of a deleted project are deleted too: every read and write of an object names it
/// through a query with this condition.
const LIVE_PROJECT: &str = "AND EXISTS (SELECT 1 FROM projects lp WHERE lp.id = objects.project_id AND lp.deleted_at IS NULL)";

pub(crate) fn key_from(r: KeyRow) -> Result<ApiKeyRecord> {
    let (
        id,
        org_id,
        user_id,
        name,
        secret_hash,
        preview_name,
        created,
        expires_at,
        revoked_at,
        last_used_at,
        project_ids,
        capability,
        last_used_from,
    ) = r;
    let project_ids = match project_ids {
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("api_keys.project_ids: {e}")))?,
        ),
        None => None,
    };
    Ok(ApiKeyRecord {
        id,
        org_id,
        user_id,
        name,
        secret_hash,
        preview_name,
        created,
        expires_at,
        revoked_at,
        last_used_at,
        project_ids,
        capability,
        last_used_from,
    })
}

fn parse_info(s: &str) -> Result<Map<String, Value>> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("info column: {e}")))
}

fn project_from(r: ProjectRow) -> Result<ProjectRecord> {
    let (id, org_id, name, user_id, created, deleted_at, info) = r;
    Ok(ProjectRecord {
        id,
        org_id,
        name,
        user_id,
        created,
        deleted_at,
        info: parse_info(&info)?,
    })
}

fn object_from(r: ObjectRow) -> Result<ObjectRecord> {
    let (id, org_id, project_id, kind, name, user_id, created, deleted_at, info) = r;
    let kind = ObjectType::parse(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("object kind {kind}")))?;
    Ok(ObjectRecord {
        id,
        org_id,
        project_id,
        kind,
        name,
        user_id,
        created,
        deleted_at,
        info: parse_info(&info)?,
    })
}

pub(crate) fn require_write(p: Permission) -> Result<()> {
    if p.writes() {
        Ok(())
    } else {
        Err(StoreError::WrongPermission)
    }
}

/// An organization pass that carries a decision to write.
pub(crate) fn require_org_write(pass: &OrgPass) -> Result<()> {
    match pass.grant() {
        Some((p, _)) if p.writes() => Ok(()),
        _ => Err(StoreError::WrongPermission),
    }
}

/// An organization pass that carries exactly this decision.
pub(crate) fn require_grant(pass: &OrgPass, permission: Permission, kind: Kind) -> Result<()> {
    if pass.grant() == Some((permission, kind)) {
        Ok(())
    } else {
        Err(StoreError::WrongPermission)
    }
}

fn info_text(info: &Map<String, Value>) -> String {
    Value::Object(info.clone()).to_string()
}

impl Store {
    // ---- bootstrap and authentication (system passes) ----

    pub async fn org_count(&self, _why: &SystemPass) -> Result<i64> {
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM orgs"
        )
        .fetch_one(p)
        .await?))
    }

    /// Creates an organization, its owner (or reuses the user with that email) and a first key
    /// for the owner, atomically. Returns the owner's user id.
    pub async fn create_org_with_owner(
        &self,
        _why: &SystemPass,
        org: &OrgRecord,
        owner: &UserRecord,
        key: &ApiKeyRecord,
    ) -> Result<String> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let taken: Option<String> = sqlx::query_scalar("SELECT id FROM orgs WHERE name = $1")
                .bind(&org.name)
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_some() {
                return Err(StoreError::Conflict(format!(
                    "organization {:?} already exists",
                    org.name
                )));
            }
            sqlx::query("INSERT INTO orgs (id, name, created) VALUES ($1, $2, $3)")
                .bind(&org.id)
                .bind(&org.name)
                .bind(&org.created)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO users (id, email, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(&owner.id)
            .bind(&owner.email)
            .bind(&owner.created)
            .execute(&mut *tx)
            .await?;
            let user_id: String = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                .bind(&owner.email)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO org_members (org_id, user_id, created) VALUES ($1, $2, $3)")
                .bind(&org.id)
                .bind(&user_id)
                .bind(&org.created)
                .execute(&mut *tx)
                .await?;
            Self::insert_key_in(
                &mut *tx,
                &ApiKeyRecord {
                    user_id: user_id.clone(),
                    ..key.clone()
                },
            )
            .await?;
            tx.commit().await?;
            Ok(user_id)
        })
    }

    pub async fn all_orgs(&self, _why: &SystemPass) -> Result<Vec<(String, String)>> {
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_as(
            "SELECT id, name FROM orgs ORDER BY name"
        )
        .fetch_all(p)
        .await?))
    }

    /// At most two organizations (id, name): the one whose id or name is `id_or_name`, or,
    /// with an empty one, any (so that a caller can tell whether there is only one).
    pub async fn orgs_for_sign_in(
        &self,
        _why: &SystemPass,
        id_or_name: &str,
    ) -> Result<Vec<(String, String)>> {
        with_pool!(&self.read, |p, DB| Ok(sqlx::query_as(
            "SELECT id, name FROM orgs WHERE $1 = '' OR id = $1 OR name = $1 ORDER BY name LIMIT 2"
        )
        .bind(id_or_name)
        .fetch_all(p)
        .await?))
    }

    pub async fn find_org_by_name(
        &self,
        _why: &SystemPass,
        name: &str,
    ) -> Result<Option<OrgRecord>> {
        with_pool!(&self.read, |p, DB| {
            let r: Option<(String, String, String)> =
                sqlx::query_as("SELECT id, name, created FROM orgs WHERE name = $1")
                    .bind(name)
                    .fetch_optional(p)
                    .await?;
            Ok(r.map(|(id, name, created)| OrgRecord { id, name, created }))
        })
    }

    /// The user with this email, if they are a member of the organization.
    pub async fn find_member_by_email(
        &self,
        _why: &SystemPass,
        org_id: &str,
        email: &str,
    ) -> Result<Option<UserRecord>> {
        with_pool!(&self.read, |p, DB| {
            let r: Option<(String, String, String)> = sqlx::query_as(
                "SELECT u.id, u.email, u.created FROM users u JOIN org_members m ON m.user_id = u.id \
                 WHERE m.org_id = $1 AND u.email = $2",
            )
            .bind(org_id)
            .bind(email)
            .fetch_optional(p)
            .await?;
            Ok(r.map(|(id, email, created)| UserRecord { id, email, created }))
        })
    }

    /// A key made by an operator command (the CLI, first start).
    pub async fn insert_api_key(&self, _why: &SystemPass, key: &ApiKeyRecord) -> Result<()> {
        with_pool!(&self.write, |p, DB| Self::insert_key_in(p, key).await)
    }

    /// A key its user makes for themselves: the pass is the user's own, in the key's
    /// organization.
    pub async fn insert_own_key(&self, pass: &OrgPass, key: &ApiKeyRecord) -> Result<()> {
        if key.org_id != pass.org_id() || key.user_id != pass.user_id() {
            return Err(StoreError::WrongPermission);
        }
        with_pool!(&self.write, |p, DB| Self::insert_key_in(p, key).await)
    }

    /// A key made for another member (a service account's token): the pass must carry
    /// `create` on members of the key's organization.
    pub async fn insert_member_key(&self, pass: &OrgPass, key: &ApiKeyRecord) -> Result<()> {
        require_grant(pass, Permission::Create, Kind::OrgMember)?;
        if key.org_id != pass.org_id() {
            return Err(StoreError::WrongPermission);
        }
        with_pool!(&self.write, |p, DB| Self::insert_key_in(p, key).await)
    }

    async fn insert_key_in<'c, E>(conn: E, key: &ApiKeyRecord) -> Result<()>
    where
        E: sqlx::Executor<'c>,
        for<'q> <E::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<E::Database>,
        for<'q> &'q String: sqlx::Encode<'q, E::Database> + sqlx::Type<E::Database>,
        for<'q> &'q Option<String>: sqlx::Encode<'q, E::Database> + sqlx::Type<E::Database>,
    {
        let project_ids: Option<String> = key
            .project_ids
            .as_ref()
            .map(|p| Value::from(p.clone()).to_string());
        sqlx::query(
            "INSERT INTO api_keys (id, org_id, user_id, name, secret_hash, preview_name, created, expires_at, revoked_at, last_used_at, project_ids, capability) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&key.id)
        .bind(&key.org_id)
        .bind(&key.user_id)
        .bind(&key.name)
        .bind(&key.secret_hash)
        .bind(&key.preview_name)
        .bind(&key.created)
        .bind(&key.expires_at)
        .bind(&key.revoked_at)
        .bind(&key.last_used_at)
        .bind(&project_ids)
        .bind(&key.capability)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub async fn find_api_key(
        &self,
        _why: &KeyLookupPass,
        id: &str,
    ) -> Result<Option<ApiKeyRecord>> {
        with_pool!(&self.read, |p, DB| {
            let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE id = $1");
            let r: Option<KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(p)
                .await?;
            r.map(key_from).transpose()
        })
    }

    pub async fn list_api_keys(
        &self,
        _why: &SystemPass,
        org_id: &str,
        user_id: &str,
    ) -> Result<Vec<ApiKeyRecord>> {
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE org_id = $1 AND user_id = $2 ORDER BY created DESC, id"
            );
            let r: Vec<KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(org_id)
                .bind(user_id)
                .fetch_all(p)
                .await?;
            r.into_iter().map(key_from).collect()
        })
    }

    /// Revokes one of the user's keys; false when there is no such unrevoked key.
    pub async fn revoke_api_key(
        &self,
        _why: &SystemPass,
        org_id: &str,
        user_id: &str,
        key_id: &str,
        now: &str,
    ) -> Result<bool> {
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND org_id = $3 AND user_id = $4 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(key_id)
            .bind(org_id)
            .bind(user_id)
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    pub async fn touch_api_key(&self, _why: &SystemPass, key_id: &str, now: &str) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(key_id)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    // ---- organizations ----

    pub async fn get_org(&self, pass: &OrgPass) -> Result<OrgRecord> {
        with_pool!(&self.read, |p, DB| {
            let r: Option<(String, String, String)> =
                sqlx::query_as("SELECT id, name, created FROM orgs WHERE id = $1")
                    .bind(pass.org_id())
                    .fetch_optional(p)
                    .await?;
            r.map(|(id, name, created)| OrgRecord { id, name, created })
                .ok_or(StoreError::NotFound("organization"))
        })
    }

    // ---- projects ----

    /// Get-or-create by name inside the pass's organization.
    pub async fn create_project(
        &self,
        pass: &OrgPass,
        rec: &ProjectRecord,
    ) -> Result<ProjectRecord> {
        require_grant(pass, Permission::Create, Kind::Project)?;
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let seq: i64 = sqlx::query_scalar(NEXT_COUNTER)
                .bind("seq")
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO projects (id, org_id, name, user_id, created, deleted_at, seq, info) \
                 VALUES ($1, $2, $3, $4, $5, NULL, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(&rec.id)
            .bind(pass.org_id())
            .bind(&rec.name)
            .bind(&rec.user_id)
            .bind(&rec.created)
            .bind(seq)
            .bind(info_text(&rec.info))
            .execute(&mut *tx)
            .await?;
            let sql = format!(
                "SELECT {PROJECT_COLS} FROM projects WHERE org_id = $1 AND name = $2 AND deleted_at IS NULL"
            );
            let row: ProjectRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(&rec.name)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            project_from(row)
        })
    }

    pub async fn get_project(&self, pass: &OrgPass, id: &str) -> Result<ProjectRecord> {
        self.project_by_id(pass, id, false).await
    }

    /// A live project, or (`deleted`) a deleted one, of the pass's organization.
    async fn project_by_id(
        &self,
        pass: &OrgPass,
        id: &str,
        deleted: bool,
    ) -> Result<ProjectRecord> {
        let state = if deleted { "IS NOT NULL" } else { "IS NULL" };
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {PROJECT_COLS} FROM projects WHERE org_id = $1 AND id = $2 AND deleted_at {state}"
            );
            let r: Option<ProjectRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(id)
                .fetch_optional(p)
                .await?;
            r.map(project_from)
                .transpose()?
                .ok_or(StoreError::NotFound(if deleted {
                    "deleted project"
                } else {
                    "project"
                }))
        })
    }

    pub async fn find_project(&self, pass: &OrgPass, name: &str) -> Result<Option<ProjectRecord>> {
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {PROJECT_COLS} FROM projects WHERE org_id = $1 AND name = $2 AND deleted_at IS NULL"
            );
            let r: Option<ProjectRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(name)
                .fetch_optional(p)
                .await?;
            r.map(project_from).transpose()
        })
    }

    /// Newest first; `starting_after` is the id of the last project of the previous page.
    /// The newest projects first, after `starting_after`, within `reach` (its projects; its
    /// objects do not make a project listed).
    pub async fn list_projects(
        &self,
        pass: &OrgPass,
        reach: &Reach,
        name: Option<&str>,
        starting_after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ProjectRecord>> {
        if !reach.everywhere && reach.projects.is_empty() {
            return Ok(Vec::new());
        }
        let within = if reach.everywhere {
            String::new()
        } else {
            format!("AND id IN ({})", placeholders(5, reach.projects.len()))
        };
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {PROJECT_COLS} FROM projects WHERE org_id = $1 AND deleted_at IS NULL \
                 AND ($2 IS NULL OR name = $2) \
                 AND ($3 IS NULL OR seq < (SELECT seq FROM projects WHERE id = $3 AND org_id = $1)) \
                 {within} ORDER BY seq DESC LIMIT $4"
            );
            let mut q = sqlx::query_as::<DB, ProjectRow>(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(name)
                .bind(starting_after)
                .bind(limit);
            if !reach.everywhere {
                for id in &reach.projects {
                    q = q.bind(id);
                }
            }
            let rows: Vec<ProjectRow> = q.fetch_all(p).await?;
            rows.into_iter().map(project_from).collect()
        })
    }

    pub async fn update_project(
        &self,
        pass: &ProjectPass,
        name: &str,
        info: &Map<String, Value>,
    ) -> Result<ProjectRecord> {
        require_write(pass.permission())?;
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "UPDATE projects SET name = $1, info = $2 WHERE id = $3 AND org_id = $4 AND deleted_at IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM projects o WHERE o.org_id = $4 AND o.name = $1 AND o.id <> $3 AND o.deleted_at IS NULL)",
            )
            .bind(name)
            .bind(info_text(info))
            .bind(pass.project_id())
            .bind(pass.org_id())
            .execute(p)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "a project named {name:?} already exists"
                )));
            }
            Ok::<_, StoreError>(())
        })?;
        self.get_project(pass.org(), pass.project_id()).await
    }

    pub async fn delete_project(&self, pass: &ProjectPass, now: &str) -> Result<ProjectRecord> {
        require_write(pass.permission())?;
        let mut rec = self.get_project(pass.org(), pass.project_id()).await?;
        with_pool!(&self.write, |p, DB| {
            sqlx::query("UPDATE projects SET deleted_at = $1 WHERE id = $2 AND org_id = $3")
                .bind(now)
                .bind(pass.project_id())
                .bind(pass.org_id())
                .execute(p)
                .await?;
            Ok::<_, StoreError>(())
        })?;
        rec.deleted_at = Some(now.to_owned());
        Ok(rec)
    }

    /// A deleted project of the pass's organization (for restoring it).
    pub async fn get_deleted_project(&self, pass: &OrgPass, id: &str) -> Result<ProjectRecord> {
        self.project_by_id(pass, id, true).await
    }

    /// Undeletes a project deleted at `deleted_at` (the time the caller checked against the
    /// grace period: a project deleted again since stays deleted). A live project holding its
    /// name since is a conflict.
    pub async fn restore_project(
        &self,
        pass: &ProjectPass,
        deleted_at: &str,
    ) -> Result<ProjectRecord> {
        require_write(pass.permission())?;
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "UPDATE projects SET deleted_at = NULL WHERE id = $1 AND org_id = $2 AND deleted_at = $3 \
                 AND NOT purging AND NOT EXISTS (SELECT 1 FROM projects o WHERE o.org_id = $2 AND o.name = projects.name \
                 AND o.deleted_at IS NULL)",
            )
            .bind(pass.project_id())
            .bind(pass.org_id())
            .bind(deleted_at)
            .execute(p)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict(
                    "the project cannot be restored: another project has its name now \
                     (rename that one first), it was deleted again meanwhile, or it is being \
                     purged"
                        .into(),
                ));
            }
            Ok::<_, StoreError>(())
        })?;
        self.get_project(pass.org(), pass.project_id()).await
    }

    // ---- objects: experiments, datasets, prompts ----

    pub async fn create_object(
        &self,
        pass: &ProjectPass,
        rec: &ObjectRecord,
        on_conflict: OnNameConflict,
    ) -> Result<ObjectRecord> {
        require_write(pass.permission())?;
        let kind = rec.kind.as_str();
        for attempt in 0..1000u32 {
            let name = if attempt == 0 {
                rec.name.clone()
            } else {
                format!("{}-{attempt}", rec.name)
            };
            let inserted = with_pool!(&self.write, |p, DB| {
                let mut tx = p.begin().await?;
                let seq: i64 = sqlx::query_scalar(NEXT_COUNTER)
                    .bind("seq")
                    .fetch_one(&mut *tx)
                    .await?;
                let done = sqlx::query(
                    "INSERT INTO objects (id, org_id, project_id, kind, name, user_id, created, deleted_at, seq, info) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9) ON CONFLICT DO NOTHING",
                )
                .bind(&rec.id)
                .bind(pass.org_id())
                .bind(pass.project_id())
                .bind(kind)
                .bind(&name)
                .bind(&rec.user_id)
                .bind(&rec.created)
                .bind(seq)
                .bind(info_text(&rec.info))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<_, StoreError>(done.rows_affected() == 1)
            })?;
            if inserted {
                return self.get_object(pass.org(), rec.kind, &rec.id).await;
            }
            if on_conflict == OnNameConflict::ReturnExisting {
                return self
                    .find_object(pass, rec.kind, &rec.name)
                    .await?
                    .ok_or(StoreError::NotFound(kind_name(rec.kind)));
            }
        }
        Err(StoreError::Conflict(format!(
            "no free name like {:?}",
            rec.name
        )))
    }

    /// Looks an object up inside the pass's organization.
    pub async fn get_object(
        &self,
        pass: &OrgPass,
        kind: ObjectType,
        id: &str,
    ) -> Result<ObjectRecord> {
        self.object_by_id(pass, kind, id, false).await
    }

    /// A live object of a live project, or (`deleted`) a deleted object of any project, of
    /// the pass's organization.
    async fn object_by_id(
        &self,
        pass: &OrgPass,
        kind: ObjectType,
        id: &str,
        deleted: bool,
    ) -> Result<ObjectRecord> {
        let state = if deleted {
            "IS NOT NULL".to_owned()
        } else {
            format!("IS NULL {LIVE_PROJECT}")
        };
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {OBJECT_COLS} FROM objects WHERE org_id = $1 AND kind = $2 AND id = $3 AND deleted_at {state}"
            );
            let r: Option<ObjectRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(kind.as_str())
                .bind(id)
                .fetch_optional(p)
                .await?;
            r.map(object_from)
                .transpose()?
                .ok_or(StoreError::NotFound(if deleted {
                    "deleted object"
                } else {
                    kind_name(kind)
                }))
        })
    }

    pub async fn find_object(
        &self,
        pass: &ProjectPass,
        kind: ObjectType,
        name: &str,
    ) -> Result<Option<ObjectRecord>> {
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {OBJECT_COLS} FROM objects WHERE org_id = $1 AND project_id = $2 AND kind = $3 AND name = $4 AND deleted_at IS NULL {LIVE_PROJECT}"
            );
            let r: Option<ObjectRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(pass.project_id())
                .bind(kind.as_str())
                .bind(name)
                .fetch_optional(p)
                .await?;
            r.map(object_from).transpose()
        })
    }

    /// Newest first, optionally inside one project and with one name.
    /// The newest objects of a kind first, after `starting_after`, within `reach` (in its
    /// projects, or among its objects).
    #[allow(clippy::too_many_arguments)]
    pub async fn list_objects(
        &self,
        pass: &OrgPass,
        reach: &Reach,
        kind: ObjectType,
        project_id: Option<&str>,
        name: Option<&str>,
        starting_after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ObjectRecord>> {
        if reach.nowhere() {
            return Ok(Vec::new());
        }
        let within = if reach.everywhere {
            String::new()
        } else {
            let (np, no) = (reach.projects.len(), reach.objects.len());
            let mut terms = Vec::new();
            if np > 0 {
                terms.push(format!("project_id IN ({})", placeholders(7, np)));
            }
            if no > 0 {
                terms.push(format!("id IN ({})", placeholders(7 + np, no)));
            }
            format!("AND ({})", terms.join(" OR "))
        };
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {OBJECT_COLS} FROM objects WHERE org_id = $1 AND kind = $2 AND deleted_at IS NULL {LIVE_PROJECT} \
                 AND ($3 IS NULL OR project_id = $3) AND ($4 IS NULL OR name = $4) \
                 AND ($5 IS NULL OR seq < (SELECT seq FROM objects WHERE id = $5 AND org_id = $1)) \
                 {within} ORDER BY seq DESC LIMIT $6"
            );
            let mut q = sqlx::query_as::<DB, ObjectRow>(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(kind.as_str())
                .bind(project_id)
                .bind(name)
                .bind(starting_after)
                .bind(limit);
            if !reach.everywhere {
                for id in reach.projects.iter().chain(&reach.objects) {
                    q = q.bind(id);
                }
            }
            let rows: Vec<ObjectRow> = q.fetch_all(p).await?;
            rows.into_iter().map(object_from).collect()
        })
    }

    pub async fn update_object(
        &self,
        pass: &ObjectPass,
        name: &str,
        info: &Map<String, Value>,
    ) -> Result<ObjectRecord> {
        require_write(pass.permission())?;
        let kind = pass.object_type().as_str();
        with_pool!(&self.write, |p, DB| {
            let sql = format!(
                "UPDATE objects SET name = $1, info = $2 WHERE id = $3 AND org_id = $4 AND kind = $5 AND deleted_at IS NULL {LIVE_PROJECT} \
                 AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.project_id = objects.project_id AND o.kind = $5 \
                 AND o.name = $1 AND o.id <> $3 AND o.deleted_at IS NULL)"
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(name)
                .bind(info_text(info))
                .bind(pass.object_id())
                .bind(pass.org_id())
                .bind(kind)
                .execute(p)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "a {kind} named {name:?} already exists in this project"
                )));
            }
            Ok::<_, StoreError>(())
        })?;
        self.get_object(pass.org(), pass.object_type(), pass.object_id())
            .await
    }

    pub async fn delete_object(&self, pass: &ObjectPass, now: &str) -> Result<ObjectRecord> {
        require_write(pass.permission())?;
        let mut rec = self
            .get_object(pass.org(), pass.object_type(), pass.object_id())
            .await?;
        with_pool!(&self.write, |p, DB| {
            sqlx::query("UPDATE objects SET deleted_at = $1 WHERE id = $2 AND org_id = $3")
                .bind(now)
                .bind(pass.object_id())
                .bind(pass.org_id())
                .execute(p)
                .await?;
            Ok::<_, StoreError>(())
        })?;
        rec.deleted_at = Some(now.to_owned());
        Ok(rec)
    }

    /// A deleted experiment, dataset or prompt of the pass's organization, and whether its
    /// project is live (for restoring it).
    pub async fn get_deleted_object(
        &self,
        pass: &OrgPass,
        kind: ObjectType,
        id: &str,
    ) -> Result<(ObjectRecord, bool)> {
        let object = self.object_by_id(pass, kind, id, true).await?;
        with_pool!(&self.read, |p, DB| {
            let live: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM projects WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL)",
            )
            .bind(&object.project_id)
            .bind(pass.org_id())
            .fetch_one(p)
            .await?;
            Ok((object, live))
        })
    }

    /// Undeletes an object deleted at `deleted_at` (see [`Store::restore_project`]); its
    /// project must be live, and no live object of its kind in the project may hold its name.
    pub async fn restore_object(
        &self,
        pass: &ObjectPass,
        deleted_at: &str,
    ) -> Result<ObjectRecord> {
        require_write(pass.permission())?;
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "UPDATE objects SET deleted_at = NULL WHERE id = $1 AND org_id = $2 AND kind = $3 \
                 AND deleted_at = $4 AND NOT purging \
                 AND EXISTS (SELECT 1 FROM projects lp WHERE lp.id = objects.project_id AND lp.deleted_at IS NULL) \
                 AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.project_id = objects.project_id \
                 AND o.kind = objects.kind AND o.name = objects.name AND o.deleted_at IS NULL)",
            )
            .bind(pass.object_id())
            .bind(pass.org_id())
            .bind(pass.object_type().as_str())
            .bind(deleted_at)
            .execute(p)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "the {} cannot be restored: another one in its project has its name now \
                     (rename that one first), its project is deleted, it was deleted again \
                     meanwhile, or it is being purged",
                    pass.object_type().as_str()
                )));
            }
            Ok::<_, StoreError>(())
        })?;
        self.get_object(pass.org(), pass.object_type(), pass.object_id())
            .await
    }
}

fn kind_name(kind: ObjectType) -> &'static str {
    kind.as_str()
}

/// `$first, $first+1, ...`: `n` numbered placeholders.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
