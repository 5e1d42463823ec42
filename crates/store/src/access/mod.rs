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
//!
//! The records are here; the queries are in [`policy`] (the policy: groups, roles and ACLs),
//! [`members`] (members and the organization), [`keys`] (keys as their owners and
//! administrators see them) and [`audit`].

mod audit;
mod keys;
mod members;
pub use members::ProviderMember;
mod policy;

use crate::{Result, StoreError};
use holdfast_core::audit::Entry;
use holdfast_core::authz::{Acl, Kind, OrgPass, Permission, Subject};
use serde_json::{Value, json};

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

pub(crate) const BUMP_POLICY: &str =
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
