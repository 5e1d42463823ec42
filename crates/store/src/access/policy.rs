//! The policy: its version, groups and roles, and ACLs.

use super::{
    ACL_COLS, AclRecord, AclRow, BUMP_POLICY, Entity, EntityRecord, EntityRow, acl_from,
    entity_from, json_text, parse_member_permission, require_write_on, split_columns,
};
use crate::db::with_pool;
use crate::{Result, Store, StoreError};
use holdfast_core::authz::{AclPass, GroupDef, Kind, OrgPass, Permission, Policy, RoleDef};
use std::collections::HashMap;

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
}
