//! Administration: groups, roles, ACLs, users, the organization and its members, API keys
//! and service tokens (the Braintrust `/v1/group`, `/v1/role`, `/v1/acl`, `/v1/user`,
//! `/v1/organization`, `/v1/api_key` and `/v1/service_token` resources).
//!
//! Who may do what (all of it also bounded by the caller's key scope):
//! * groups and roles: read / create / update / delete on `group` or `role` at organization
//!   level (Owners);
//! * ACLs: `read_acls`, `create_acls`, `delete_acls` on the object the ACL is on;
//!   `list_org` needs `read_acls` on the organization;
//! * users: any member may list the members of their organization;
//! * members: `create` (invite) and `delete` (remove) on `org_member` (Owners);
//! * API keys: everyone lists, reads, rotates and revokes their own keys and creates keys for
//!   themselves, never wider than the key they call with; `read` / `delete` on `org_member`
//!   (Owners) extends listing and revoking to every key of the organization;
//! * service tokens: `create` / `read` / `delete` on `org_member` (Owners).
//!
//! One module per resource: [`entities`] (groups and roles), [`acls`], [`org`] (users, the
//! organization and its members), [`keys`] (API keys and service tokens) and [`bootstrap`]
//! (built-in groups and the operator's commands).

mod acls;
mod bootstrap;
mod entities;
mod keys;
mod org;

use serde_json::{Map, Value};

pub use entities::entity_tag;
pub use holdfast_store::Entity;

/// Longest grace period a rotated key keeps working.
pub const MAX_ROTATION_GRACE_SECONDS: i64 = 30 * 24 * 3600;
pub const DEFAULT_ROTATION_GRACE_SECONDS: i64 = 24 * 3600;

/// Sets a field of a JSON object built in this module.
pub(crate) fn set(obj: Option<&mut Map<String, Value>>, field: &str, value: Value) {
    if let Some(m) = obj {
        m.insert(field.to_owned(), value);
    }
}
