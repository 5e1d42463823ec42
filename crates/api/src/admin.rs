//! Administration: ACLs, groups and roles, users, the organization and its members, API keys,
//! service tokens, secrets and the audit log.

use crate::JsonObject;
use crate::secret::{SecretValue, ShownOnce};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// A grant: a user or group gets a permission or role on an object.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Acl {
    pub id: String,
    pub object_type: String,
    pub object_id: String,
    pub user_id: Option<String>,
    pub group_id: Option<String>,
    pub permission: Option<String>,
    pub role_id: Option<String>,
    pub restrict_object_type: Option<String>,
    pub _object_org_id: String,
    pub created: String,
}

/// A grant to make or remove: exactly one of `user_id`/`group_id` and one of
/// `permission`/`role_id`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct NewAcl {
    pub object_type: String,
    pub object_id: String,
    pub user_id: Option<String>,
    pub group_id: Option<String>,
    pub permission: Option<String>,
    pub role_id: Option<String>,
    pub restrict_object_type: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AclBatch {
    pub add_acls: Option<Vec<NewAcl>>,
    pub remove_acls: Option<Vec<NewAcl>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AclBatchResult {
    pub added_acls: Vec<Acl>,
    pub removed_acls: Vec<Acl>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AclQuery {
    pub object_type: String,
    pub object_id: String,
}

/// A group (`member_users`, `member_groups`) or a role (`member_permissions`,
/// `member_roles`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Entity {
    pub id: String,
    pub org_id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub user_id: Option<String>,
    pub created: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub members: JsonObject,
}

/// Members of a group (`member_users`, `member_groups`) or of a role (`member_permissions`:
/// `{"permission", "restrict_object_type"}` objects, `member_roles`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Members {
    pub member_users: Option<Vec<String>>,
    pub member_groups: Option<Vec<String>>,
    pub member_permissions: Option<Vec<Value>>,
    pub member_roles: Option<Vec<String>>,
}

/// A group or role to store (`POST` gets or creates by name, `PUT` creates or replaces).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct EntityBody {
    pub name: String,
    pub description: Option<String>,
    #[serde(flatten)]
    pub members: Members,
}

/// Changes to a group or role: its name and description, and members added and removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct EntityPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub add_member_users: Option<Vec<String>>,
    pub add_member_groups: Option<Vec<String>>,
    pub add_member_permissions: Option<Vec<Value>>,
    pub add_member_roles: Option<Vec<String>>,
    pub remove_member_users: Option<Vec<String>>,
    pub remove_member_groups: Option<Vec<String>>,
    pub remove_member_permissions: Option<Vec<Value>>,
    pub remove_member_roles: Option<Vec<String>>,
}

impl EntityPatch {
    /// The members it adds.
    pub fn added(&self) -> Members {
        Members {
            member_users: self.add_member_users.clone(),
            member_groups: self.add_member_groups.clone(),
            member_permissions: self.add_member_permissions.clone(),
            member_roles: self.add_member_roles.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: String,
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub avatar_url: Option<String>,
    pub created: String,
    pub is_service_account: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub api_url: String,
    pub proxy_url: String,
    pub realtime_url: Option<String>,
    pub is_universal_api: bool,
    pub created: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PatchOrganization {
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct InviteUsers {
    pub emails: Option<Vec<String>>,
    pub ids: Option<Vec<String>>,
    pub group_ids: Option<Vec<String>>,
    pub group_id: Option<String>,
    pub group_names: Option<Vec<String>>,
    pub group_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RemoveUsers {
    pub emails: Option<Vec<String>>,
    pub ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PatchMembers {
    pub org_id: Option<String>,
    pub org_name: Option<String>,
    pub invite_users: Option<InviteUsers>,
    pub remove_users: Option<RemoveUsers>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MembersChanged {
    pub status: String,
    pub org_id: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub other: JsonObject,
}

/// An API key or service token as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub preview_name: String,
    pub created: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub user_id: String,
    pub user_email: Option<String>,
    pub user_given_name: Option<String>,
    pub user_family_name: Option<String>,
    pub org_id: String,
    pub project_ids: Option<Vec<String>>,
    pub capability: String,
    pub last_used_at: Option<String>,
    pub last_used_from: Option<String>,
    /// Requests per day, newest first (`GET /v1/api_key/{id}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Vec<KeyUsage>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyUsage {
    pub day: String,
    pub requests: i64,
}

/// The key a rotation replaced, and when it stops working.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotatedFrom {
    pub id: String,
    pub expires_at: String,
}

/// A new key: `key` is its secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub record: ApiKey,
    pub key: ShownOnce,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<RotatedFrom>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateKey {
    pub name: Option<String>,
    /// RFC 3339; never later than the creating key's own expiry.
    pub expires_at: Option<String>,
    /// Limits the key to these projects.
    pub project_ids: Option<Vec<String>>,
    /// `full` (the default), `read`, or `ingest` (writing rows only).
    pub capability: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RotateKey {
    /// How long the old key keeps working, in seconds (0 to 30 days; one day by default).
    #[schema(minimum = 0, maximum = 2592000)]
    pub grace_seconds: Option<i64>,
}

/// A token for a service account: a new account (named `service_account_name`, or `name`)
/// unless `service_account_id` names one; the account joins the groups named.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateServiceToken {
    pub name: String,
    pub service_account_id: Option<String>,
    pub service_account_name: Option<String>,
    pub group_ids: Option<Vec<String>>,
    pub group_names: Option<Vec<String>>,
    pub expires_at: Option<String>,
    pub project_ids: Option<Vec<String>>,
    pub capability: Option<String>,
}

/// An AI provider secret or environment variable: never its value, only a preview.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Secret {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub other: JsonObject,
}

/// `POST`/`PUT /v1/ai_secret` and `/v1/env_var`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PutSecret {
    /// 1 to 256 characters.
    pub name: String,
    /// `ai_secret` only: the provider (`openai`, `anthropic`, ...).
    #[serde(rename = "type")]
    pub secret_type: Option<String>,
    /// `ai_secret`: the provider key.
    pub secret: Option<SecretValue>,
    /// `env_var`: the value (required).
    pub value: Option<SecretValue>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "crate::secret::nullable")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<JsonObject>>,
    /// `env_var` only: `organization` or `project` (with `object_id`).
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub org_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PatchSecret {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub secret_type: Option<String>,
    pub secret: Option<SecretValue>,
    pub value: Option<SecretValue>,
    #[serde(default, deserialize_with = "crate::secret::nullable")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<JsonObject>>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct DeleteSecretByName {
    pub name: String,
    pub org_name: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SecretListQuery {
    pub name: Option<String>,
    pub ai_secret_name: Option<String>,
    pub ai_secret_type: Option<String>,
    pub env_var_name: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub org_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// From the previous page's `cursor`.
    pub cursor: Option<String>,
    pub actor_id: Option<String>,
    pub key_id: Option<String>,
    pub object_id: Option<String>,
    pub action: Option<String>,
    /// RFC 3339: entries at or after this time.
    pub since: Option<String>,
    /// RFC 3339: entries before this time.
    pub until: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub created: String,
    pub org_id: Option<String>,
    pub actor_id: Option<String>,
    pub key_id: Option<String>,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub detail: Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub objects: Vec<AuditEntry>,
    pub cursor: Option<String>,
}
