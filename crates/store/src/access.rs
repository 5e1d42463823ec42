//! The access-control records (groups, roles, ACLs, members, key scope and usage) and the
//! audit log.
//!
//! Guarantees:
//! * Every change to an organization's policy (groups, roles, ACLs, members) runs in one
//!   transaction that first increments the organization's `policy_version`. That serializes
//!   policy changes per organization on both backends (no lost update when two requests edit
//!   one group), and lets every process notice that its cached policy is stale.
//! * Audit entries are appended in transactions that first advance the `audit` counter, which
//!   serializes appenders across processes and replicas; each entry's hash covers the hash of
//!   the one before (see `holdfast_core::audit`). Entries are never updated or deleted here.

use crate::db::with_pool;
use crate::meta::{KEY_COLS, key_from, require_grant};
use crate::{ApiKeyRecord, Result, Store, StoreError};
use holdfast_core::audit::Entry;
use holdfast_core::authz::{
    Acl, AclPass, GroupDef, Kind, OrgPass, Permission, Policy, RoleDef, Subject, SystemPass,
};
use serde_json::{Value, json};
use std::collections::HashMap;

/// A group or a role as stored: two JSON lists beside the name.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityRecord {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub description: Option<String>,
    pub user_id: Option<String>,
    pub created: String,
    /// Groups: member user ids. Roles: `{permission, restrict_object_type}` objects.
    pub members: Vec<Value>,
    /// Groups: included group ids. Roles: included role ids.
    pub includes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Group,
    Role,
}

impl Entity {
    fn table(self) -> &'static str {
        match self {
            Self::Group => "user_groups",
            Self::Role => "roles",
        }
    }
    fn columns(self) -> &'static str {
        match self {
            Self::Group => {
                "id, org_id, name, description, user_id, created, member_users, member_groups"
            }
            Self::Role => {
                "id, org_id, name, description, user_id, created, member_permissions, member_roles"
            }
        }
    }
    pub fn kind(self) -> Kind {
        match self {
            Self::Group => Kind::Group,
            Self::Role => Kind::Role,
        }
    }
    pub fn noun(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Role => "role",
        }
    }
}

type EntityRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
);

fn entity_from(r: EntityRow) -> Result<EntityRecord> {
    let (id, org_id, name, description, user_id, created, members, includes) = r;
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("group or role lists: {e}"));
    Ok(EntityRecord {
        id,
        org_id,
        name,
        description,
        user_id,
        created,
        members: serde_json::from_str(&members).map_err(corrupt)?,
        includes: serde_json::from_str(&includes).map_err(corrupt)?,
    })
}

/// An ACL as stored; exactly one of user/group and one of permission/role is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRecord {
    pub id: String,
    pub org_id: String,
    pub object_type: Kind,
    pub object_id: String,
    pub subject: Subject,
    pub permission: Option<Permission>,
    pub role_id: Option<String>,
    pub restrict_object_type: Option<Kind>,
    pub created: String,
}

type AclRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);
const ACL_COLS: &str = "id, org_id, object_type, object_id, user_id, group_id, permission, role_id, restrict_object_type, created";

fn acl_from(r: AclRow) -> Result<AclRecord> {
    let (id, org_id, ot, object_id, user_id, group_id, perm, role_id, restrict, created) = r;
    let corrupt = |what: &str| StoreError::Corrupt(format!("acl {id}: {what}"));
    let kind = |s: &str| Kind::parse(s).ok_or_else(|| corrupt("object type"));
    Ok(AclRecord {
        object_type: kind(&ot)?,
        object_id,
        subject: match (user_id.is_empty(), group_id.is_empty()) {
            (false, true) => Subject::User(user_id),
            (true, false) => Subject::Group(group_id),
            _ => return Err(corrupt("subject")),
        },
        permission: match perm.as_str() {
            "" => None,
            p => Some(Permission::parse(p).ok_or_else(|| corrupt("permission"))?),
        },
        role_id: (!role_id.is_empty()).then_some(role_id),
        restrict_object_type: match restrict.as_str() {
            "" => None,
            k => Some(kind(k)?),
        },
        created,
        org_id,
        id,
    })
}

impl AclRecord {
    fn columns(&self) -> (&str, &str, &str, String, &str) {
        let (user, group) = match &self.subject {
            Subject::User(u) => (u.as_str(), ""),
            Subject::Group(g) => ("", g.as_str()),
        };
        (
            user,
            group,
            self.permission.map_or("", Permission::as_str),
            self.role_id.clone().unwrap_or_default(),
            self.restrict_object_type.map_or("", Kind::as_str),
        )
    }

    fn to_acl(&self) -> Option<Acl> {
        Some(Acl {
            object_type: self.object_type,
            object_id: self.object_id.clone(),
            subject: self.subject.clone(),
            grant: match (&self.permission, &self.role_id) {
                (Some(p), None) => holdfast_core::authz::Grant::Permission(*p),
                (None, Some(r)) => holdfast_core::authz::Grant::Role(r.clone()),
                _ => return None,
            },
            restrict_object_type: self.restrict_object_type,
        })
    }
}

/// A member of an organization, as `/v1/user` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub id: String,
    pub email: String,
    pub kind: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub created: String,
}

type UserRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);
fn user_from(r: UserRow) -> UserInfo {
    let (id, email, kind, given_name, family_name, created) = r;
    UserInfo {
        id,
        email,
        kind,
        given_name,
        family_name,
        created,
    }
}

/// A new audit entry, before it gets its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    pub at: String,
    pub org_id: Option<String>,
    pub actor_id: Option<String>,
    pub key_id: Option<String>,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub detail: Value,
}

/// Filters for listing audit entries (newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor_id: Option<String>,
    pub key_id: Option<String>,
    pub object_id: Option<String>,
    pub action: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Entries with a smaller sequence number than this.
    pub before_seq: Option<i64>,
    pub limit: i64,
}

type AuditRow = (
    i64,
    Option<String>,
    Option<i64>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
);
pub(crate) const AUDIT_COLS: &str = "seq, chain, chain_seq, at, org_id, actor_id, key_id, action, object_type, object_id, detail, prev_hash, hash";
fn audit_from(r: AuditRow) -> Entry {
    let (
        seq,
        chain,
        chain_seq,
        at,
        org_id,
        actor_id,
        key_id,
        action,
        object_type,
        object_id,
        detail,
        prev,
        hash,
    ) = r;
    Entry {
        seq,
        chain,
        chain_seq,
        at,
        org_id,
        actor_id,
        key_id,
        action,
        object_type,
        object_id,
        detail,
        prev_hash: prev,
        hash,
    }
}

/// Appends `$entries` (a slice of [`NewAuditEntry`]) inside the open transaction `$tx`, each
/// to its organization's chain (see `holdfast_core::audit`), linked under `$key` (the audit
/// key; an error when it is not set). The global `audit` counter is advanced first
/// (serializing appenders), then each chain's own counter. Used by the direct append and by
/// the row writer.
macro_rules! append_audit_in {
    ($tx:ident, $DB:ident, $entries:expr, $key:expr) => {{
        let entries: &[$crate::access::NewAuditEntry] = $entries;
        let key: &[u8; 32] = $key
            .get()
            .ok_or_else(|| $crate::StoreError::WriteFailed("the audit key is not set".into()))?;
        let n = i64::try_from(entries.len())
            .map_err(|_| $crate::StoreError::Corrupt("audit batch".into()))?;
        let last: i64 = sqlx::query_scalar($crate::db::NEXT_COUNTER_BY)
            .bind(n)
            .bind("audit")
            .fetch_one(&mut *$tx)
            .await?;
        let mut stored: Vec<holdfast_core::audit::Entry> = (last - n + 1..)
            .zip(entries)
            .map(|(seq, e)| holdfast_core::audit::Entry {
                seq,
                chain: Some(e.org_id.clone().unwrap_or_default()),
                chain_seq: None,
                at: e.at.clone(),
                org_id: e.org_id.clone(),
                actor_id: e.actor_id.clone(),
                key_id: e.key_id.clone(),
                action: e.action.clone(),
                object_type: e.object_type.clone(),
                object_id: e.object_id.clone(),
                detail: e.detail.to_string(),
                prev_hash: String::new(),
                hash: String::new(),
            })
            .collect();
        // Each chain's entries, in the order they came.
        let mut chains: Vec<(String, Vec<usize>)> = Vec::new();
        let mut chain_of: std::collections::HashMap<String, usize> = Default::default();
        for (i, e) in stored.iter().enumerate() {
            let name = e.chain.clone().unwrap_or_default();
            let at = *chain_of.entry(name.clone()).or_insert_with(|| {
                chains.push((name, Vec::new()));
                chains.len() - 1
            });
            if let Some((_, members)) = chains.get_mut(at) {
                members.push(i);
            }
        }
        for (chain, members) in &chains {
            let counter = format!("audit:{chain}");
            sqlx::query(
                "INSERT INTO counters (name, value) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&counter)
            .execute(&mut *$tx)
            .await?;
            let k = i64::try_from(members.len())
                .map_err(|_| $crate::StoreError::Corrupt("audit batch".into()))?;
            let last: i64 = sqlx::query_scalar($crate::db::NEXT_COUNTER_BY)
                .bind(k)
                .bind(&counter)
                .fetch_one(&mut *$tx)
                .await?;
            let first = last - k + 1;
            let mut prev: String = if first == 1 {
                holdfast_core::audit::GENESIS.to_owned()
            } else {
                sqlx::query_scalar("SELECT hash FROM audit_log WHERE chain = $1 AND chain_seq = $2")
                    .bind(chain)
                    .bind(first - 1)
                    .fetch_optional(&mut *$tx)
                    .await?
                    .ok_or_else(|| {
                        $crate::StoreError::Corrupt(format!(
                            "audit entry {} of chain {chain:?} is missing",
                            first - 1
                        ))
                    })?
            };
            for (chain_seq, i) in (first..).zip(members) {
                if let Some(e) = stored.get_mut(*i) {
                    e.chain_seq = Some(chain_seq);
                    e.prev_hash = prev.clone();
                    e.hash = holdfast_core::audit::entry_mac(key, &prev, e);
                    prev.clone_from(&e.hash);
                }
            }
        }
        // 13 parameters per entry, well under both backends' limits.
        for chunk in stored.chunks(500) {
            let mut query = sqlx::QueryBuilder::<$DB>::new(format!(
                "INSERT INTO audit_log ({}) ",
                $crate::access::AUDIT_COLS
            ));
            query.push_values(chunk, |mut b, e| {
                b.push_bind(e.seq)
                    .push_bind(&e.chain)
                    .push_bind(e.chain_seq)
                    .push_bind(&e.at)
                    .push_bind(&e.org_id)
                    .push_bind(&e.actor_id)
                    .push_bind(&e.key_id)
                    .push_bind(&e.action)
                    .push_bind(&e.object_type)
                    .push_bind(&e.object_id)
                    .push_bind(&e.detail)
                    .push_bind(&e.prev_hash)
                    .push_bind(&e.hash);
            });
            query.build().execute(&mut *$tx).await?;
        }
    }};
}
pub(crate) use append_audit_in;

const BUMP_POLICY: &str =
    "UPDATE orgs SET policy_version = policy_version + 1 WHERE id = $1 RETURNING policy_version";

fn require_write_on(pass: &OrgPass, kind: Kind) -> Result<()> {
    match pass.grant() {
        Some((p, k)) if p.writes() && k == kind => Ok(()),
        _ => Err(StoreError::WrongPermission),
    }
}

fn json_text(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    // ---- the policy ----

    pub async fn policy_version(&self, pass: &OrgPass) -> Result<i64> {
        with_pool!(&self.read, |p, DB| {
            sqlx::query_scalar("SELECT policy_version FROM orgs WHERE id = $1")
                .bind(pass.org_id())
                .fetch_optional(p)
                .await?
                .ok_or(StoreError::NotFound("organization"))
        })
    }

    /// Everything a decision in this organization reads, and the version it was read at.
    pub async fn load_policy(&self, pass: &OrgPass) -> Result<(i64, Policy)> {
        let org = pass.org_id();
        let (version, groups, roles, acls) = with_pool!(&self.read, |p, DB| {
            let mut tx = p.begin().await?;
            let version: i64 = sqlx::query_scalar("SELECT policy_version FROM orgs WHERE id = $1")
                .bind(org)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound("organization"))?;
            let mut sets = Vec::new();
            for e in [Entity::Group, Entity::Role] {
                let sql = format!(
                    "SELECT {} FROM {} WHERE org_id = $1",
                    e.columns(),
                    e.table()
                );
                let rows: Vec<EntityRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(org)
                    .fetch_all(&mut *tx)
                    .await?;
                sets.push(rows);
            }
            let sql = format!("SELECT {ACL_COLS} FROM acls WHERE org_id = $1");
            let acls: Vec<AclRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(org)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            let roles = sets.pop().unwrap_or_default();
            let groups = sets.pop().unwrap_or_default();
            Ok::<_, StoreError>((version, groups, roles, acls))
        })?;
        let mut group_defs = HashMap::new();
        for g in groups {
            let g = entity_from(g)?;
            let users = g
                .members
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            group_defs.insert(
                g.id,
                GroupDef {
                    member_users: users,
                    member_groups: g.includes,
                },
            );
        }
        let mut role_defs = HashMap::new();
        for r in roles {
            let r = entity_from(r)?;
            role_defs.insert(
                r.id,
                RoleDef {
                    member_permissions: r
                        .members
                        .iter()
                        .filter_map(parse_member_permission)
                        .collect(),
                    member_roles: r.includes,
                },
            );
        }
        let acls = acls
            .into_iter()
            .map(acl_from)
            .collect::<Result<Vec<_>>>()?
            .iter()
            .filter_map(AclRecord::to_acl)
            .collect();
        Ok((version, Policy::new(org, group_defs, role_defs, acls)))
    }

    // ---- groups and roles ----

    pub async fn list_entities(&self, pass: &OrgPass, e: Entity) -> Result<Vec<EntityRecord>> {
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {} FROM {} WHERE org_id = $1 ORDER BY created DESC, id",
                e.columns(),
                e.table()
            );
            let rows: Vec<EntityRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .fetch_all(p)
                .await?;
            rows.into_iter().map(entity_from).collect()
        })
    }

    pub async fn get_entity(&self, pass: &OrgPass, e: Entity, id: &str) -> Result<EntityRecord> {
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {} FROM {} WHERE org_id = $1 AND id = $2",
                e.columns(),
                e.table()
            );
            let row: Option<EntityRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(id)
                .fetch_optional(p)
                .await?;
            row.map(entity_from)
                .transpose()?
                .ok_or(StoreError::NotFound(e.noun()))
        })
    }

    /// Creates a group or role; with `replace`, one of the same name is overwritten,
    /// otherwise it is returned unchanged. Returns the stored record.
    pub async fn put_entity(
        &self,
        pass: &OrgPass,
        e: Entity,
        rec: &EntityRecord,
        replace: bool,
    ) -> Result<EntityRecord> {
        require_write_on(pass, e.kind())?;
        let members = json_text(&rec.members)?;
        let includes = json_text(&rec.includes)?;
        let id = with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let _: i64 = sqlx::query_scalar(BUMP_POLICY)
                .bind(pass.org_id())
                .fetch_one(&mut *tx)
                .await?;
            let existing: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM {} WHERE org_id = $1 AND name = $2",
                e.table()
            )))
            .bind(pass.org_id())
            .bind(&rec.name)
            .fetch_optional(&mut *tx)
            .await?;
            let id = match existing {
                Some(id) if !replace => id,
                Some(id) => {
                    let (_, _, _, _, _, _, c7, c8) = split_columns(e);
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE {} SET description = $1, {c7} = $2, {c8} = $3 WHERE id = $4",
                        e.table()
                    )))
                    .bind(&rec.description)
                    .bind(&members)
                    .bind(&includes)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                    id
                }
                None => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO {} ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        e.table(),
                        e.columns()
                    )))
                    .bind(&rec.id)
                    .bind(pass.org_id())
                    .bind(&rec.name)
                    .bind(&rec.description)
                    .bind(&rec.user_id)
                    .bind(&rec.created)
                    .bind(&members)
                    .bind(&includes)
                    .execute(&mut *tx)
                    .await?;
                    rec.id.clone()
                }
            };
            tx.commit().await?;
            Ok::<_, StoreError>(id)
        })?;
        self.get_entity(pass, e, &id).await
    }

    /// Applies `change` to a group or role inside one policy transaction.
    pub async fn update_entity(
        &self,
        pass: &OrgPass,
        e: Entity,
        id: &str,
        change: impl FnOnce(&mut EntityRecord) -> Result<()>,
    ) -> Result<EntityRecord> {
        require_write_on(pass, e.kind())?;
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let _: i64 = sqlx::query_scalar(BUMP_POLICY)
                .bind(pass.org_id())
                .fetch_one(&mut *tx)
                .await?;
            let row: Option<EntityRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM {} WHERE org_id = $1 AND id = $2",
                e.columns(),
                e.table()
            )))
            .bind(pass.org_id())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let mut rec = row
                .map(entity_from)
                .transpose()?
                .ok_or(StoreError::NotFound(e.noun()))?;
            change(&mut rec)?;
            let (_, _, _, _, _, _, c7, c8) = split_columns(e);
            let renamed = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {} SET name = $1, description = $2, {c7} = $3, {c8} = $4 WHERE id = $5",
                e.table()
            )))
            .bind(&rec.name)
            .bind(&rec.description)
            .bind(json_text(&rec.members)?)
            .bind(json_text(&rec.includes)?)
            .bind(id)
            .execute(&mut *tx)
            .await;
            if let Err(err) = renamed {
                return Err(match err.as_database_error() {
                    Some(d) if d.is_unique_violation() => {
                        StoreError::Conflict(format!("a {} named {:?} exists", e.noun(), rec.name))
                    }
                    _ => err.into(),
                });
            }
            tx.commit().await?;
            Ok(rec)
        })
    }

    /// Deletes a group or role, every ACL that grants to or through it, and every reference
    /// to it from other groups or roles.
    pub async fn delete_entity(&self, pass: &OrgPass, e: Entity, id: &str) -> Result<EntityRecord> {
        require_write_on(pass, e.kind())?;
        let rec = self.get_entity(pass, e, id).await?;
        let (_, _, _, _, _, _, _, c8) = split_columns(e);
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let _: i64 = sqlx::query_scalar(BUMP_POLICY)
                .bind(pass.org_id())
                .fetch_one(&mut *tx)
                .await?;
            let others: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, {c8} FROM {} WHERE org_id = $1",
                e.table()
            )))
            .bind(pass.org_id())
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {} WHERE org_id = $1 AND id = $2",
                e.table()
            )))
            .bind(pass.org_id())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let column = match e {
                Entity::Group => "group_id",
                Entity::Role => "role_id",
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM acls WHERE org_id = $1 AND {column} = $2"
            )))
            .bind(pass.org_id())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            for (other, includes) in &others {
                let includes: Vec<String> = serde_json::from_str(includes)
                    .map_err(|e| StoreError::Corrupt(format!("included ids: {e}")))?;
                if !includes.iter().any(|i| i == id) {
                    continue;
                }
                let kept: Vec<&String> = includes.iter().filter(|i| *i != id).collect();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {} SET {c8} = $1 WHERE id = $2",
                    e.table()
                )))
                .bind(json_text(&kept)?)
                .bind(other)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        Ok(rec)
    }

    // ---- ACLs ----

    /// Grants on one object (or, with no pass object, on every object: `list_org`).
    pub async fn list_acls(&self, pass: &AclPass) -> Result<Vec<AclRecord>> {
        self.query_acls(pass.org(), Some((pass.object_type(), pass.object_id())))
            .await
    }

    /// Every grant in the organization; the caller holds `read_acls` on the organization.
    pub async fn list_org_acls(&self, pass: &AclPass) -> Result<Vec<AclRecord>> {
        if pass.object_type() != Kind::Organization || pass.permission() != Permission::ReadAcls {
            return Err(StoreError::WrongPermission);
        }
        self.query_acls(pass.org(), None).await
    }

    async fn query_acls(
        &self,
        org: &OrgPass,
        object: Option<(Kind, &str)>,
    ) -> Result<Vec<AclRecord>> {
        let (ty, id) = object.map_or(("", ""), |(k, id)| (k.as_str(), id));
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {ACL_COLS} FROM acls WHERE org_id = $1 AND ($2 = '' OR (object_type = $2 AND object_id = $3)) \
                 ORDER BY created, id"
            );
            let rows: Vec<AclRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(org.org_id())
                .bind(ty)
                .bind(id)
                .fetch_all(p)
                .await?;
            rows.into_iter().map(acl_from).collect()
        })
    }

    pub async fn get_acl(&self, org: &OrgPass, id: &str) -> Result<AclRecord> {
        with_pool!(&self.read, |p, DB| {
            let sql = format!("SELECT {ACL_COLS} FROM acls WHERE org_id = $1 AND id = $2");
            let row: Option<AclRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(org.org_id())
                .bind(id)
                .fetch_optional(p)
                .await?;
            row.map(acl_from)
                .transpose()?
                .ok_or(StoreError::NotFound("acl"))
        })
    }

    /// Adds and removes grants in one transaction. Adding an existing grant returns the stored
    /// one; removing a missing one is a no-op. Each change carries the pass for its object.
    /// Returns (added, removed) as stored.
    pub async fn change_acls(
        &self,
        org: &OrgPass,
        add: &[(AclPass, AclRecord)],
        remove: &[(AclPass, AclRecord)],
    ) -> Result<(Vec<AclRecord>, Vec<AclRecord>)> {
        for (pass, acl) in add.iter().chain(remove) {
            let fits = pass.org().org_id() == org.org_id()
                && acl.object_type == pass.object_type()
                && acl.object_id == pass.object_id();
            if !fits {
                return Err(StoreError::WrongPermission);
            }
        }
        if add
            .iter()
            .any(|(p, _)| p.permission() != Permission::CreateAcls)
            || remove
                .iter()
                .any(|(p, _)| p.permission() != Permission::DeleteAcls)
        {
            return Err(StoreError::WrongPermission);
        }
        let lookup = |acl: &AclRecord| {
            let (u, g, perm, role, restrict) = acl.columns();
            (
                acl.object_type.as_str(),
                acl.object_id.clone(),
                u.to_owned(),
                g.to_owned(),
                perm.to_owned(),
                role,
                restrict.to_owned(),
            )
        };
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let _: i64 = sqlx::query_scalar(BUMP_POLICY)
                .bind(org.org_id())
                .fetch_one(&mut *tx)
                .await?;
            let find_sql = format!(
                "SELECT {ACL_COLS} FROM acls WHERE org_id = $1 AND object_type = $2 AND object_id = $3 \
                 AND user_id = $4 AND group_id = $5 AND permission = $6 AND role_id = $7 AND restrict_object_type = $8"
            );
            let mut added = Vec::new();
            for (_, acl) in add {
                let (ot, oid, u, g, perm, role, restrict) = lookup(acl);
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO acls ({ACL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"
                )))
                .bind(&acl.id)
                .bind(org.org_id())
                .bind(ot)
                .bind(&oid)
                .bind(&u)
                .bind(&g)
                .bind(&perm)
                .bind(&role)
                .bind(&restrict)
                .bind(&acl.created)
                .execute(&mut *tx)
                .await?;
                let row: AclRow = sqlx::query_as(sqlx::AssertSqlSafe(find_sql.clone()))
                    .bind(org.org_id())
                    .bind(ot)
                    .bind(&oid)
                    .bind(&u)
                    .bind(&g)
                    .bind(&perm)
                    .bind(&role)
                    .bind(&restrict)
                    .fetch_one(&mut *tx)
                    .await?;
                added.push(acl_from(row)?);
            }
            let mut removed = Vec::new();
            for (_, acl) in remove {
                let (ot, oid, u, g, perm, role, restrict) = lookup(acl);
                let row: Option<AclRow> = sqlx::query_as(sqlx::AssertSqlSafe(find_sql.clone()))
                    .bind(org.org_id())
                    .bind(ot)
                    .bind(&oid)
                    .bind(&u)
                    .bind(&g)
                    .bind(&perm)
                    .bind(&role)
                    .bind(&restrict)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = row {
                    let rec = acl_from(row)?;
                    sqlx::query("DELETE FROM acls WHERE id = $1")
                        .bind(&rec.id)
                        .execute(&mut *tx)
                        .await?;
                    removed.push(rec);
                }
            }
            tx.commit().await?;
            Ok((added, removed))
        })
    }

    // ---- members ----

    pub async fn list_users(&self, pass: &OrgPass) -> Result<Vec<UserInfo>> {
        with_pool!(&self.read, |p, DB| {
            let rows: Vec<UserRow> = sqlx::query_as(
                "SELECT u.id, u.email, u.kind, u.given_name, u.family_name, u.created FROM users u \
                 JOIN org_members m ON m.user_id = u.id WHERE m.org_id = $1 ORDER BY u.created DESC, u.id",
            )
            .bind(pass.org_id())
            .fetch_all(p)
            .await?;
            Ok(rows.into_iter().map(user_from).collect())
        })
    }

    /// Adds users (by email; created if new; `kind` "user" or "service") to the
    /// organization and to the given groups. Returns the members as stored.
    pub async fn add_members(
        &self,
        pass: &OrgPass,
        users: &[UserInfo],
        group_ids: &[String],
    ) -> Result<Vec<UserInfo>> {
        require_write_on(pass, Kind::OrgMember)?;
        self.insert_members(pass.org_id(), users, Groups::Ids(group_ids))
            .await
    }

    /// Upserts users, makes them members and puts them into groups, in one policy
    /// transaction (groups are read inside it, so no concurrent change is lost).
    async fn insert_members(
        &self,
        org: &str,
        users: &[UserInfo],
        groups: Groups<'_>,
    ) -> Result<Vec<UserInfo>> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let _: i64 = sqlx::query_scalar(BUMP_POLICY)
                .bind(org)
                .fetch_one(&mut *tx)
                .await?;
            let all: Vec<(String, String, String)> =
                sqlx::query_as("SELECT id, name, member_users FROM user_groups WHERE org_id = $1")
                    .bind(org)
                    .fetch_all(&mut *tx)
                    .await?;
            let chosen: Vec<&(String, String, String)> = match groups {
                Groups::Ids(ids) => ids
                    .iter()
                    .map(|id| {
                        all.iter()
                            .find(|g| &g.0 == id)
                            .ok_or(StoreError::NotFound("group"))
                    })
                    .collect::<Result<_>>()?,
                Groups::Name(name) => vec![all.iter().find(|g| g.1 == name).ok_or_else(|| {
                    StoreError::Conflict(format!("the organization has no group named {name:?}"))
                })?],
            };
            let mut out = Vec::new();
            for u in users {
                sqlx::query(
                    "INSERT INTO users (id, email, created, kind, given_name, family_name) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (email) DO NOTHING",
                )
                .bind(&u.id)
                .bind(&u.email)
                .bind(&u.created)
                .bind(&u.kind)
                .bind(&u.given_name)
                .bind(&u.family_name)
                .execute(&mut *tx)
                .await?;
                let row: UserRow = sqlx::query_as(
                    "SELECT id, email, kind, given_name, family_name, created FROM users WHERE email = $1",
                )
                .bind(&u.email)
                .fetch_one(&mut *tx)
                .await?;
                let stored = user_from(row);
                sqlx::query(
                    "INSERT INTO org_members (org_id, user_id, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(org)
                .bind(&stored.id)
                .bind(&u.created)
                .execute(&mut *tx)
                .await?;
                out.push(stored);
            }
            for (id, _, members) in chosen {
                let mut members: Vec<Value> = serde_json::from_str(members)
                    .map_err(|e| StoreError::Corrupt(format!("group members: {e}")))?;
                for u in &out {
                    if !members.iter().any(|m| m.as_str() == Some(u.id.as_str())) {
                        members.push(Value::String(u.id.clone()));
                    }
                }
                sqlx::query("UPDATE user_groups SET member_users = $1 WHERE id = $2")
                    .bind(json_text(&members)?)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    /// Removes users from the organization: their membership, their places in groups, the
    /// grants made to them, and their keys in this organization (revoked at `now`).
    pub async fn remove_members(
        &self,
        pass: &OrgPass,
        user_ids: &[String],
        now: &str,
    ) -> Result<Vec<String>> {
        require_write_on(pass, Kind::OrgMember)?;
        let org = pass.org_id();
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let _: i64 = sqlx::query_scalar(BUMP_POLICY)
                .bind(org)
                .fetch_one(&mut *tx)
                .await?;
            let groups: Vec<(String, String)> =
                sqlx::query_as("SELECT id, member_users FROM user_groups WHERE org_id = $1")
                    .bind(org)
                    .fetch_all(&mut *tx)
                    .await?;
            let mut removed = Vec::new();
            for u in user_ids {
                let done =
                    sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
                        .bind(org)
                        .bind(u)
                        .execute(&mut *tx)
                        .await?;
                if done.rows_affected() == 0 {
                    continue;
                }
                sqlx::query("DELETE FROM acls WHERE org_id = $1 AND user_id = $2")
                    .bind(org)
                    .bind(u)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE api_keys SET revoked_at = $1 WHERE org_id = $2 AND user_id = $3 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(org)
                .bind(u)
                .execute(&mut *tx)
                .await?;
                removed.push(u.clone());
            }
            for (id, members) in &groups {
                let members: Vec<Value> = serde_json::from_str(members)
                    .map_err(|e| StoreError::Corrupt(format!("group members: {e}")))?;
                let kept: Vec<&Value> = members
                    .iter()
                    .filter(|m| !removed.iter().any(|r| m.as_str() == Some(r.as_str())))
                    .collect();
                if kept.len() != members.len() {
                    sqlx::query("UPDATE user_groups SET member_users = $1 WHERE id = $2")
                        .bind(json_text(&kept)?)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok(removed)
        })
    }

    /// The operator adds a user (created if new) to an organization and to one of its groups
    /// by name. Returns the user's id.
    pub async fn add_member_as_operator(
        &self,
        _why: &SystemPass,
        org_id: &str,
        user: &UserInfo,
        group_name: &str,
    ) -> Result<String> {
        let mut added = self
            .insert_members(org_id, std::slice::from_ref(user), Groups::Name(group_name))
            .await?;
        added
            .pop()
            .map(|u| u.id)
            .ok_or_else(|| StoreError::WriteFailed("the user was not stored".into()))
    }

    pub async fn rename_org(&self, pass: &OrgPass, name: &str) -> Result<()> {
        require_grant(pass, Permission::Update, Kind::Organization)?;
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query("UPDATE orgs SET name = $1 WHERE id = $2")
                .bind(name)
                .bind(pass.org_id())
                .execute(p)
                .await;
            match done {
                Ok(_) => Ok(()),
                Err(e)
                    if e.as_database_error()
                        .is_some_and(|d| d.is_unique_violation()) =>
                {
                    Err(StoreError::Conflict(format!(
                        "an organization named {name:?} exists"
                    )))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Creates the built-in groups of an organization that lacks them, granting each its
    /// built-in role at organization level; `owners` go into Owners. Idempotent.
    pub async fn ensure_builtin_groups(
        &self,
        _why: &SystemPass,
        org_id: &str,
        groups: &[(EntityRecord, AclRecord)],
        owners: &[String],
    ) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let _: i64 = sqlx::query_scalar(BUMP_POLICY)
                .bind(org_id)
                .fetch_one(&mut *tx)
                .await?;
            for (g, acl) in groups {
                let exists: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM user_groups WHERE org_id = $1 AND name = $2",
                )
                .bind(org_id)
                .bind(&g.name)
                .fetch_optional(&mut *tx)
                .await?;
                if exists.is_some() {
                    continue;
                }
                let members: Vec<&String> = if g.name == "Owners" {
                    owners.iter().collect()
                } else {
                    Vec::new()
                };
                sqlx::query(
                    "INSERT INTO user_groups (id, org_id, name, description, user_id, created, member_users, member_groups) \
                     VALUES ($1, $2, $3, $4, NULL, $5, $6, '[]')",
                )
                .bind(&g.id)
                .bind(org_id)
                .bind(&g.name)
                .bind(&g.description)
                .bind(&g.created)
                .bind(json_text(&members)?)
                .execute(&mut *tx)
                .await?;
                let (u, gr, perm, role, restrict) = acl.columns();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO acls ({ACL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"
                )))
                .bind(&acl.id)
                .bind(org_id)
                .bind(acl.object_type.as_str())
                .bind(&acl.object_id)
                .bind(u)
                .bind(gr)
                .bind(perm)
                .bind(&role)
                .bind(restrict)
                .bind(&acl.created)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Organizations without built-in groups, with their members (upgrade from a store made
    /// before access control existed, where every member had full access).
    pub async fn orgs_without_groups(
        &self,
        _why: &SystemPass,
    ) -> Result<Vec<(String, Vec<String>)>> {
        with_pool!(&self.read, |p, DB| {
            let orgs: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM orgs o WHERE NOT EXISTS (SELECT 1 FROM user_groups g WHERE g.org_id = o.id)",
            )
            .fetch_all(p)
            .await?;
            let mut out = Vec::new();
            for org in orgs {
                let members: Vec<String> =
                    sqlx::query_scalar("SELECT user_id FROM org_members WHERE org_id = $1")
                        .bind(&org)
                        .fetch_all(p)
                        .await?;
                out.push((org, members));
            }
            Ok(out)
        })
    }

    // ---- keys seen by their owners and administrators ----

    /// Keys in the pass's organization: all of them with `all_users`, else the caller's own.
    pub async fn org_keys(&self, pass: &OrgPass, all_users: bool) -> Result<Vec<ApiKeyRecord>> {
        if all_users {
            require_grant(pass, Permission::Read, Kind::OrgMember)?;
        }
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE org_id = $1 AND ($2 OR user_id = $3) ORDER BY created DESC, id"
            );
            let rows: Vec<crate::meta::KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(all_users)
                .bind(pass.user_id())
                .fetch_all(p)
                .await?;
            rows.into_iter().map(key_from).collect()
        })
    }

    /// Sets a key's expiry (rotation grace) or revokes it, inside the pass's organization.
    pub async fn end_key(
        &self,
        pass: &OrgPass,
        key_id: &str,
        expires_at: Option<&str>,
        revoked_at: Option<&str>,
    ) -> Result<bool> {
        let own_only = require_grant(pass, Permission::Delete, Kind::OrgMember).is_err();
        with_pool!(&self.write, |p, DB| {
            let done = sqlx::query(
                "UPDATE api_keys SET expires_at = COALESCE($1, expires_at), revoked_at = COALESCE($2, revoked_at) \
                 WHERE id = $3 AND org_id = $4 AND ($5 = FALSE OR user_id = $6) AND revoked_at IS NULL",
            )
            .bind(expires_at)
            .bind(revoked_at)
            .bind(key_id)
            .bind(pass.org_id())
            .bind(own_only)
            .bind(pass.user_id())
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Adds `requests` to a key's count for `day`, and records when and from where it was
    /// last used.
    pub async fn record_key_use(
        &self,
        _why: &SystemPass,
        key_id: &str,
        day: &str,
        requests: i64,
        at: &str,
        from: Option<&str>,
    ) -> Result<()> {
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO key_usage (key_id, day, requests) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_id, day) DO UPDATE SET requests = key_usage.requests + $3",
            )
            .bind(key_id)
            .bind(day)
            .bind(requests)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1, last_used_from = COALESCE($2, last_used_from) WHERE id = $3",
            )
            .bind(at)
            .bind(from)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Requests per day for a key of the pass's organization, newest day first.
    pub async fn key_usage(&self, pass: &OrgPass, key_id: &str) -> Result<Vec<(String, i64)>> {
        with_pool!(&self.read, |p, DB| {
            Ok(sqlx::query_as(
                "SELECT u.day, u.requests FROM key_usage u JOIN api_keys k ON k.id = u.key_id \
                 WHERE k.org_id = $1 AND u.key_id = $2 ORDER BY u.day DESC LIMIT 90",
            )
            .bind(pass.org_id())
            .bind(key_id)
            .fetch_all(p)
            .await?)
        })
    }

    // ---- audit ----

    /// Appends entries to the chain in one transaction, in order.
    pub async fn append_audit(&self, _why: &SystemPass, entries: &[NewAuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            append_audit_in!(tx, DB, entries, self.audit_key);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Appends entries through the row writer: they commit with the next group of row writes
    /// (sharing its fsync), and this returns once they are durable.
    pub async fn append_audit_grouped(
        &self,
        _why: &SystemPass,
        entries: Vec<NewAuditEntry>,
    ) -> Result<()> {
        self.write_audit(entries).await
    }

    /// The organization's entries, newest first, filtered.
    pub async fn list_audit(&self, pass: &OrgPass, f: &AuditFilter) -> Result<Vec<Entry>> {
        require_grant(pass, Permission::Read, Kind::OrgAuditLogs)?;
        with_pool!(&self.read, |p, DB| {
            let sql = format!(
                "SELECT {AUDIT_COLS} FROM audit_log WHERE org_id = $1 \
                 AND ($2 = '' OR actor_id = $2) AND ($3 = '' OR key_id = $3) \
                 AND ($4 = '' OR object_id = $4 OR detail LIKE $10 ESCAPE '!') \
                 AND ($5 = '' OR action = $5) AND ($6 = '' OR at >= $6) AND ($7 = '' OR at < $7) AND seq < $8 \
                 ORDER BY seq DESC LIMIT $9"
            );
            let s = |o: &Option<String>| o.clone().unwrap_or_default();
            let rows: Vec<AuditRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(pass.org_id())
                .bind(s(&f.actor_id))
                .bind(s(&f.key_id))
                .bind(s(&f.object_id))
                .bind(s(&f.action))
                .bind(s(&f.since))
                .bind(s(&f.until))
                .bind(f.before_seq.unwrap_or(i64::MAX))
                .bind(f.limit)
                .bind(like_quoted(f.object_id.as_deref().unwrap_or_default()))
                .fetch_all(p)
                .await?;
            Ok(rows.into_iter().map(audit_from).collect())
        })
    }

    /// The global position of the organization's entry `chain_seq` (to resume a listing
    /// after it).
    pub async fn audit_position(&self, pass: &OrgPass, chain_seq: i64) -> Result<Option<i64>> {
        require_grant(pass, Permission::Read, Kind::OrgAuditLogs)?;
        with_pool!(&self.read, |p, DB| {
            Ok(
                sqlx::query_scalar("SELECT seq FROM audit_log WHERE chain = $1 AND chain_seq = $2")
                    .bind(pass.org_id())
                    .bind(chain_seq)
                    .fetch_optional(p)
                    .await?,
            )
        })
    }

    /// Every keyed chain with the number of entries its counter says it holds.
    pub async fn audit_chains(&self, _why: &SystemPass) -> Result<Vec<(String, i64)>> {
        with_pool!(&self.read, |p, DB| {
            let found: Vec<(String, i64)> = sqlx::query_as(
                "SELECT name, value FROM counters WHERE name LIKE 'audit:%' ORDER BY name",
            )
            .fetch_all(p)
            .await?;
            Ok(found
                .into_iter()
                .filter_map(|(n, v)| n.strip_prefix("audit:").map(|c| (c.to_owned(), v)))
                .collect())
        })
    }

    /// A page of one chain in order, after entry `after`: a keyed chain by its numbers, or
    /// (`chain` = `None`) the legacy chain by the global sequence.
    pub async fn audit_page(
        &self,
        _why: &SystemPass,
        chain: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Entry>> {
        with_pool!(&self.read, |p, DB| {
            let rows: Vec<AuditRow> = match chain {
                Some(chain) => {
                    let sql = format!(
                        "SELECT {AUDIT_COLS} FROM audit_log WHERE chain = $1 AND chain_seq > $2 \
                         ORDER BY chain_seq LIMIT $3"
                    );
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(chain)
                        .bind(after)
                        .bind(limit)
                        .fetch_all(p)
                        .await?
                }
                None => {
                    let sql = format!(
                        "SELECT {AUDIT_COLS} FROM audit_log WHERE chain IS NULL AND seq > $1 \
                         ORDER BY seq LIMIT $2"
                    );
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(after)
                        .bind(limit)
                        .fetch_all(p)
                        .await?
                }
            };
            Ok(rows.into_iter().map(audit_from).collect())
        })
    }
}

type Cols = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

fn split_columns(e: Entity) -> Cols {
    match e {
        Entity::Group => (
            "id",
            "org_id",
            "name",
            "description",
            "user_id",
            "created",
            "member_users",
            "member_groups",
        ),
        Entity::Role => (
            "id",
            "org_id",
            "name",
            "description",
            "user_id",
            "created",
            "member_permissions",
            "member_roles",
        ),
    }
}

/// Which groups new members join.
enum Groups<'a> {
    Ids(&'a [String]),
    Name(&'a str),
}

/// A LIKE pattern matching `"value"` anywhere (with `!` as the escape character).
fn like_quoted(value: &str) -> String {
    let escaped: String = value
        .chars()
        .flat_map(|c| match c {
            '!' | '%' | '_' => vec!['!', c],
            c => vec![c],
        })
        .collect();
    format!("%\"{escaped}\"%")
}

/// A role's `{permission, restrict_object_type}` entry.
pub fn parse_member_permission(v: &Value) -> Option<(Permission, Option<Kind>)> {
    let p = Permission::parse(v.get("permission")?.as_str()?)?;
    let r = match v.get("restrict_object_type") {
        None | Some(Value::Null) => None,
        Some(k) => Some(Kind::parse(k.as_str()?)?),
    };
    Some((p, r))
}

pub fn member_permission_json(p: Permission, r: Option<Kind>) -> Value {
    json!({"permission": p.as_str(), "restrict_object_type": r.map(Kind::as_str)})
}
