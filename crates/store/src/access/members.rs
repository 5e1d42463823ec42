//! Members of an organization, its name, and its built-in groups.

use super::{
    ACL_COLS, AclRecord, BUMP_POLICY, EntityRecord, Groups, UserInfo, UserRow, json_text,
    require_write_on, user_from,
};
use crate::db::with_pool;
use crate::meta::require_grant;
use crate::{Result, Store, StoreError};
use holdfast_core::authz::{BUILTIN_GROUPS, Kind, OrgPass, Permission, SystemPass};
use serde_json::Value;

/// A person signing in through an identity provider; see [`Store::sign_in_member`].
pub struct ProviderMember<'a> {
    /// The member the provider's subject is linked to, if it is.
    pub linked: Option<&'a str>,
    /// The user to create when they are new (found by its email otherwise).
    pub user: &'a UserInfo,
    /// Whether a person who is not a member may be made one.
    pub provision: bool,
    /// The groups the connection's mapping manages, and those the person's claims map to.
    pub managed: &'a [String],
    pub wanted: &'a [String],
}

impl Store {
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

    /// Signs in a member through the organization's identity provider, in one policy
    /// transaction: finds the member (`user_id` when the provider's subject is linked, else
    /// by email, case-insensitively), makes them a member first when `provision` allows it,
    /// and then, for each group named in `managed`, puts them in it when it is in `wanted`
    /// and takes them out when it is not (other groups are left as they are). Returns the
    /// member's id, or None when they are not a member and may not be made one.
    pub async fn sign_in_member(
        &self,
        _why: &SystemPass,
        org: &str,
        m: &ProviderMember<'_>,
    ) -> Result<Option<String>> {
        let (user_id, new_user, provision, managed, wanted) =
            (m.linked, m.user, m.provision, m.managed, m.wanted);
        with_pool!(&self.write, |p, DB| {
            let mut tx = p.begin().await?;
            let _: i64 = sqlx::query_scalar(BUMP_POLICY)
                .bind(org)
                .fetch_one(&mut *tx)
                .await?;
            let found: Option<String> = match user_id {
                Some(id) => {
                    sqlx::query_scalar(
                        "SELECT user_id FROM org_members WHERE org_id = $1 AND user_id = $2",
                    )
                    .bind(org)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                }
                None => {
                    sqlx::query_scalar(
                        "SELECT u.id FROM users u JOIN org_members m ON m.user_id = u.id \
                     WHERE m.org_id = $1 AND lower(u.email) = lower($2) ORDER BY u.created LIMIT 1",
                    )
                    .bind(org)
                    .bind(&new_user.email)
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
            let id = match (found, provision, user_id) {
                (Some(id), _, _) => id,
                (None, true, None) => {
                    sqlx::query(
                        "INSERT INTO users (id, email, created, kind, given_name, family_name) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING",
                    )
                    .bind(&new_user.id)
                    .bind(&new_user.email)
                    .bind(&new_user.created)
                    .bind(&new_user.kind)
                    .bind(&new_user.given_name)
                    .bind(&new_user.family_name)
                    .execute(&mut *tx)
                    .await?;
                    let id: String = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                        .bind(&new_user.email)
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO org_members (org_id, user_id, created) VALUES ($1, $2, $3) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(org)
                    .bind(&id)
                    .bind(&new_user.created)
                    .execute(&mut *tx)
                    .await?;
                    id
                }
                _ => return Ok(None),
            };
            let groups: Vec<(String, String, String)> =
                sqlx::query_as("SELECT id, name, member_users FROM user_groups WHERE org_id = $1")
                    .bind(org)
                    .fetch_all(&mut *tx)
                    .await?;
            for (gid, name, members) in &groups {
                if !managed.contains(name) {
                    continue;
                }
                let mut members: Vec<Value> = serde_json::from_str(members)
                    .map_err(|e| StoreError::Corrupt(format!("group members: {e}")))?;
                let present = members.iter().any(|m| m.as_str() == Some(id.as_str()));
                let want = wanted.contains(name);
                // The mapping never leaves an organization without an Owner.
                let last_owner = name == BUILTIN_GROUPS[0].0 && members.len() == 1;
                if present == want || (present && last_owner) {
                    continue;
                }
                if want {
                    members.push(Value::String(id.clone()));
                } else {
                    members.retain(|m| m.as_str() != Some(id.as_str()));
                }
                sqlx::query("UPDATE user_groups SET member_users = $1 WHERE id = $2")
                    .bind(json_text(&members)?)
                    .bind(gid)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Some(id))
        })
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::with_pool;
    use crate::testing::both_stores;

    /// Mapped groups are joined and left at each sign-in, other groups are left alone, and
    /// the last Owner stays one.
    #[tokio::test]
    async fn sign_in_maps_groups_but_keeps_the_last_owner() {
        let why = SystemPass::new("test");
        for (store, db) in both_stores("sso_members").await {
            with_pool!(&store.write, |p, DB| {
                for sql in [
                    "INSERT INTO orgs (id, name, created) VALUES ('o', 'o', 't')",
                    "INSERT INTO users (id, email, created) VALUES ('u', 'u@x.test', 't')",
                    "INSERT INTO org_members (org_id, user_id, created) VALUES ('o', 'u', 't')",
                    "INSERT INTO user_groups (id, org_id, name, created, member_users, member_groups) \
                     VALUES ('g1', 'o', 'Owners', 't', '[\"u\"]', '[]')",
                    "INSERT INTO user_groups (id, org_id, name, created, member_users, member_groups) \
                     VALUES ('g2', 'o', 'Engineers', 't', '[]', '[]')",
                    "INSERT INTO user_groups (id, org_id, name, created, member_users, member_groups) \
                     VALUES ('g3', 'o', 'Other', 't', '[\"u\"]', '[]')",
                ] {
                    sqlx::query(sql).execute(p).await.unwrap();
                }
            });
            let user = UserInfo {
                id: "new".into(),
                email: "U@x.test".into(),
                kind: "user".into(),
                given_name: None,
                family_name: None,
                created: "t".into(),
            };
            let managed = ["Owners".to_owned(), "Engineers".to_owned()];
            let sign_in = |wanted: &'static [&'static str], provision| {
                let store = &store;
                let (user, managed, why) = (&user, &managed, &why);
                async move {
                    let wanted: Vec<String> = wanted.iter().map(|s| (*s).to_owned()).collect();
                    let m = ProviderMember {
                        linked: None,
                        user,
                        provision,
                        managed,
                        wanted: &wanted,
                    };
                    store.sign_in_member(why, "o", &m).await.unwrap()
                }
            };
            let members = |g: &'static str| {
                let store = &store;
                async move {
                    let v: String = with_pool!(&store.read, |p, DB| sqlx::query_scalar(
                        "SELECT member_users FROM user_groups WHERE id = $1"
                    )
                    .bind(g)
                    .fetch_one(p)
                    .await
                    .unwrap());
                    v
                }
            };
            // Found by email whatever its case; put into Engineers; still the only Owner.
            assert_eq!(sign_in(&["Engineers"], false).await.as_deref(), Some("u"));
            assert_eq!(members("g2").await, "[\"u\"]");
            assert_eq!(members("g1").await, "[\"u\"]", "the last Owner stays");
            assert_eq!(
                members("g3").await,
                "[\"u\"]",
                "unmapped groups are untouched"
            );
            // Out of Engineers when the claim goes.
            sign_in(&[], false).await;
            assert_eq!(members("g2").await, "[]");
            store.close().await;
            if let Some(db) = db {
                db.drop_database().await;
            }
        }
    }
}
