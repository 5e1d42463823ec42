//! Administration routes: ACLs, roles, groups, users, the organization and its members, API
//! keys, service tokens, secrets and the audit log.

use super::reply;
use crate::extract::{Authed, BaseUrl, Checked, CheckedOrEmpty, Id, Params};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use holdfast_api::ObjectList;
use holdfast_api::admin::{
    Acl, AclBatch, AclBatchResult, AclQuery, ApiKey, AuditPage, AuditQuery, CreateKey,
    CreateServiceToken, CreatedKey, DeleteSecretByName, Entity as EntityWire, EntityBody,
    EntityPatch, MembersChanged, NewAcl, Organization, PatchMembers, PatchOrganization,
    PatchSecret, PutSecret, RotateKey, Secret, SecretListQuery, User,
};
use holdfast_services::ServiceError;
use holdfast_services::admin::{Entity, entity_tag};
use holdfast_services::secrets::SecretKind;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Reply<T> = Result<Json<T>, ApiError>;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_acls, create_acl))
        .routes(routes!(batch_update_acls))
        .routes(routes!(list_org_acls))
        .routes(routes!(get_acl, delete_acl))
        .routes(routes!(list_users))
        .routes(routes!(get_user))
        .routes(routes!(list_orgs))
        .routes(routes!(patch_members))
        .routes(routes!(get_org, patch_org))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(get_key, revoke_key))
        .routes(routes!(rotate_key))
        .routes(routes!(list_service_tokens, create_service_token))
        .routes(routes!(revoke_service_token))
        .routes(routes!(audit_log))
        .routes(routes!(
            ai_secret::list,
            ai_secret::create,
            ai_secret::replace,
            ai_secret::delete_by_name
        ))
        .routes(routes!(ai_secret::get, ai_secret::patch, ai_secret::delete))
        .routes(routes!(
            env_var::list,
            env_var::create,
            env_var::replace,
            env_var::delete_by_name
        ))
        .routes(routes!(env_var::get, env_var::patch, env_var::delete))
        .routes(routes!(group::list, group::create, group::replace))
        .routes(routes!(group::get, group::patch, group::delete))
        .routes(routes!(role::list, role::create, role::replace))
        .routes(routes!(role::get, role::patch, role::delete))
}

fn list<T: serde::de::DeserializeOwned>(v: Vec<Value>) -> Reply<ObjectList<T>> {
    let Json(objects) = reply::<Vec<T>>(Value::Array(v))?;
    Ok(Json(objects.into()))
}

// ---- ACLs ----

/// Grants a permission or role on an object to a user or group.
#[utoipa::path(post, path = "/v1/acl", tag = "access", request_body = NewAcl,
    responses((status = 200, body = Acl)))]
async fn create_acl(
    State(st): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<NewAcl>,
) -> Reply<Acl> {
    let (added, _) = st.services.change_acls(&p, &[b], &[]).await?;
    added
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError(ServiceError::Internal("acl not stored".into())))
}

/// Adds and removes grants in one change.
#[utoipa::path(post, path = "/v1/acl/batch_update", tag = "access", request_body = AclBatch,
    responses((status = 200, body = AclBatchResult)))]
async fn batch_update_acls(
    State(st): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<AclBatch>,
) -> Reply<AclBatchResult> {
    let (added, removed) = st
        .services
        .change_acls(
            &p,
            b.add_acls.as_deref().unwrap_or_default(),
            b.remove_acls.as_deref().unwrap_or_default(),
        )
        .await?;
    Ok(Json(AclBatchResult {
        added_acls: added,
        removed_acls: removed,
    }))
}

#[utoipa::path(get, path = "/v1/acl", tag = "access", params(AclQuery),
    responses((status = 200, body = ObjectList<Acl>)))]
async fn list_acls(
    State(st): State<AppState>,
    Authed(p): Authed,
    Params(q): Params<AclQuery>,
) -> Reply<ObjectList<Acl>> {
    Ok(Json(
        st.services
            .list_acls(&p, &q.object_type, &q.object_id)
            .await?
            .into(),
    ))
}

/// Every grant in the organization.
#[utoipa::path(get, path = "/v1/acl/list_org", tag = "access",
    responses((status = 200, body = ObjectList<Acl>)))]
async fn list_org_acls(State(st): State<AppState>, Authed(p): Authed) -> Reply<ObjectList<Acl>> {
    Ok(Json(st.services.list_org_acls(&p).await?.into()))
}

#[utoipa::path(get, path = "/v1/acl/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 200, body = Acl)))]
async fn get_acl(State(st): State<AppState>, Authed(p): Authed, Id(id): Id) -> Reply<Acl> {
    Ok(Json(st.services.get_acl(&p, &id).await?))
}

#[utoipa::path(delete, path = "/v1/acl/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 200, body = Acl)))]
async fn delete_acl(State(st): State<AppState>, Authed(p): Authed, Id(id): Id) -> Reply<Acl> {
    Ok(Json(st.services.delete_acl(&p, &id).await?))
}

// ---- groups and roles ----

/// A group or role with its version in an `ETag` header.
type Tagged = Result<([(header::HeaderName, String); 1], Json<EntityWire>), ApiError>;

fn tagged(shown: Value) -> Tagged {
    let tag = entity_tag(&shown);
    Ok(([(header::ETAG, tag)], reply(shown)?))
}

/// The request's `If-Match` headers as one list, if it has any.
fn if_match(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = Vec::new();
    for v in headers.get_all(header::IF_MATCH) {
        values.push(v.to_str().map_err(|_| {
            ApiError(ServiceError::bad(
                "the If-Match header must be a list of quoted entity tags, or *",
            ))
        })?);
    }
    Ok((!values.is_empty()).then(|| values.join(", ")))
}

macro_rules! entity_routes {
    ($module:ident, $e:expr, $tag:literal, $collection:literal, $item:literal,
     $list_op:literal, $create_op:literal, $replace_op:literal, $get_op:literal,
     $patch_op:literal, $delete_op:literal) => {
        mod $module {
            use super::*;

            #[utoipa::path(get, path = $collection, tag = $tag, operation_id = $list_op,
                responses((status = 200, body = ObjectList<EntityWire>)))]
            pub(super) async fn list(
                State(st): State<AppState>,
                Authed(p): Authed,
            ) -> Reply<ObjectList<EntityWire>> {
                super::list(st.services.list_entities(&p, $e).await?)
            }

            /// Creates one, or returns the one of that name unchanged.
            #[utoipa::path(post, path = $collection, tag = $tag, operation_id = $create_op,
                request_body = EntityBody, responses((status = 200, body = EntityWire,
                    headers(("ETag" = String, description = "Its version, for `If-Match` on a change")))))]
            pub(super) async fn create(
                State(st): State<AppState>,
                Authed(p): Authed,
                Checked(b): Checked<EntityBody>,
            ) -> Tagged {
                tagged(st.services.put_entity(&p, $e, &b, false).await?)
            }

            /// Creates one, or replaces the one of that name.
            #[utoipa::path(put, path = $collection, tag = $tag, operation_id = $replace_op,
                request_body = EntityBody, responses((status = 200, body = EntityWire,
                    headers(("ETag" = String, description = "Its version, for `If-Match` on a change")))))]
            pub(super) async fn replace(
                State(st): State<AppState>,
                Authed(p): Authed,
                Checked(b): Checked<EntityBody>,
            ) -> Tagged {
                tagged(st.services.put_entity(&p, $e, &b, true).await?)
            }

            #[utoipa::path(get, path = $item, tag = $tag, operation_id = $get_op,
                params(("id" = String, Path)), responses((status = 200, body = EntityWire,
                    headers(("ETag" = String, description = "Its version, for `If-Match` on a change")))))]
            pub(super) async fn get(
                State(st): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
            ) -> Tagged {
                tagged(st.services.get_entity(&p, $e, &id).await?)
            }

            /// Changes one in place; with `If-Match`, only if it is still the version read.
            #[utoipa::path(patch, path = $item, tag = $tag, operation_id = $patch_op,
                params(("id" = String, Path),
                    ("If-Match" = Option<String>, Header, description = "Change it only if its `ETag` is one of these (or `*`); else 412")),
                request_body = EntityPatch,
                responses((status = 200, body = EntityWire,
                    headers(("ETag" = String, description = "Its version, for `If-Match` on a change")))))]
            pub(super) async fn patch(
                State(st): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
                headers: HeaderMap,
                Checked(b): Checked<EntityPatch>,
            ) -> Tagged {
                let if_match = if_match(&headers)?;
                tagged(st.services.patch_entity(&p, $e, &id, &b, if_match.as_deref()).await?)
            }

            #[utoipa::path(delete, path = $item, tag = $tag, operation_id = $delete_op,
                params(("id" = String, Path)), responses((status = 200, body = EntityWire)))]
            pub(super) async fn delete(
                State(st): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
            ) -> Reply<EntityWire> {
                reply(st.services.delete_entity(&p, $e, &id).await?)
            }
        }
    };
}

entity_routes!(
    group,
    Entity::Group,
    "access",
    "/v1/group",
    "/v1/group/{id}",
    "list_groups",
    "create_group",
    "replace_group",
    "get_group",
    "patch_group",
    "delete_group"
);
entity_routes!(
    role,
    Entity::Role,
    "access",
    "/v1/role",
    "/v1/role/{id}",
    "list_roles",
    "create_role",
    "replace_role",
    "get_role",
    "patch_role",
    "delete_role"
);

// ---- users and the organization ----

#[utoipa::path(get, path = "/v1/user", tag = "organization",
    responses((status = 200, body = ObjectList<User>)))]
async fn list_users(State(st): State<AppState>, Authed(p): Authed) -> Reply<ObjectList<User>> {
    Ok(Json(st.services.list_users(&p).await?.into()))
}

#[utoipa::path(get, path = "/v1/user/{id}", tag = "organization", params(("id" = String, Path)),
    responses((status = 200, body = User)))]
async fn get_user(State(st): State<AppState>, Authed(p): Authed, Id(id): Id) -> Reply<User> {
    Ok(Json(st.services.get_user(&p, &id).await?))
}

/// The caller's organization.
#[utoipa::path(get, path = "/v1/organization", tag = "organization",
    responses((status = 200, body = ObjectList<Organization>)))]
async fn list_orgs(
    State(st): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
) -> Reply<ObjectList<Organization>> {
    Ok(Json(
        vec![st.services.organization(&p, &base).await?].into(),
    ))
}

#[utoipa::path(get, path = "/v1/organization/{id}", tag = "organization",
    params(("id" = String, Path)), responses((status = 200, body = Organization)))]
async fn get_org(
    State(st): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Id(id): Id,
) -> Reply<Organization> {
    super::this_org(&p, &id)?;
    Ok(Json(st.services.organization(&p, &base).await?))
}

#[utoipa::path(patch, path = "/v1/organization/{id}", tag = "organization",
    params(("id" = String, Path)), request_body = PatchOrganization,
    responses((status = 200, body = Organization)))]
async fn patch_org(
    State(st): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Id(id): Id,
    Checked(b): Checked<PatchOrganization>,
) -> Reply<Organization> {
    super::this_org(&p, &id)?;
    st.services.rename_organization(&p, &b).await?;
    Ok(Json(st.services.organization(&p, &base).await?))
}

/// Invites users into groups and removes members.
#[utoipa::path(patch, path = "/v1/organization/members", tag = "organization",
    request_body = PatchMembers, responses((status = 200, body = MembersChanged)))]
async fn patch_members(
    State(st): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<PatchMembers>,
) -> Reply<MembersChanged> {
    reply(st.services.patch_members(&p, &b).await?)
}

// ---- keys ----

/// The caller's own API keys.
#[utoipa::path(get, path = "/v1/api_key", tag = "keys",
    responses((status = 200, body = ObjectList<ApiKey>)))]
async fn list_keys(State(st): State<AppState>, Authed(p): Authed) -> Reply<ObjectList<ApiKey>> {
    Ok(Json(st.services.list_keys(&p, false).await?.into()))
}

/// Makes an API key for the caller; its secret is in the reply and nowhere else.
#[utoipa::path(post, path = "/v1/api_key", tag = "keys", request_body = CreateKey,
    responses((status = 200, body = CreatedKey)))]
async fn create_key(
    State(st): State<AppState>,
    Authed(p): Authed,
    CheckedOrEmpty(b): CheckedOrEmpty<CreateKey>,
) -> Reply<CreatedKey> {
    Ok(Json(st.services.create_own_key(&p, &b).await?))
}

#[utoipa::path(get, path = "/v1/api_key/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 200, body = ApiKey)))]
async fn get_key(State(st): State<AppState>, Authed(p): Authed, Id(id): Id) -> Reply<ApiKey> {
    Ok(Json(st.services.get_key(&p, &id).await?))
}

#[utoipa::path(delete, path = "/v1/api_key/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 200, body = ApiKey)))]
async fn revoke_key(State(st): State<AppState>, Authed(p): Authed, Id(id): Id) -> Reply<ApiKey> {
    Ok(Json(st.services.revoke_key(&p, &id).await?))
}

/// A new key with the old one's scope; the old key keeps working for the grace period.
#[utoipa::path(post, path = "/v1/api_key/{id}/rotate", tag = "keys",
    params(("id" = String, Path)), request_body = RotateKey,
    responses((status = 200, body = CreatedKey)))]
async fn rotate_key(
    State(st): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    CheckedOrEmpty(b): CheckedOrEmpty<RotateKey>,
) -> Reply<CreatedKey> {
    Ok(Json(st.services.rotate_key(&p, &id, &b).await?))
}

#[utoipa::path(get, path = "/v1/service_token", tag = "keys",
    responses((status = 200, body = ObjectList<ApiKey>)))]
async fn list_service_tokens(
    State(st): State<AppState>,
    Authed(p): Authed,
) -> Reply<ObjectList<ApiKey>> {
    Ok(Json(st.services.list_keys(&p, true).await?.into()))
}

/// Makes a key for a service account (created when named and missing).
#[utoipa::path(post, path = "/v1/service_token", tag = "keys", request_body = CreateServiceToken,
    responses((status = 200, body = CreatedKey)))]
async fn create_service_token(
    State(st): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<CreateServiceToken>,
) -> Reply<CreatedKey> {
    Ok(Json(st.services.create_service_token(&p, &b).await?))
}

#[utoipa::path(delete, path = "/v1/service_token/{id}", tag = "keys",
    params(("id" = String, Path)), responses((status = 200, body = ApiKey)))]
async fn revoke_service_token(
    State(st): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
) -> Reply<ApiKey> {
    Ok(Json(st.services.revoke_service_token(&p, &id).await?))
}

// ---- secrets ----

macro_rules! secret_routes {
    ($module:ident, $k:expr, $collection:literal, $item:literal, $list_op:literal,
     $create_op:literal, $replace_op:literal, $delete_name_op:literal, $get_op:literal,
     $patch_op:literal, $delete_op:literal) => {
        mod $module {
            use super::*;

            #[utoipa::path(get, path = $collection, tag = "secrets", operation_id = $list_op,
                params(SecretListQuery), responses((status = 200, body = ObjectList<Secret>)))]
            pub(super) async fn list(
                State(st): State<AppState>,
                Authed(p): Authed,
                Params(q): Params<SecretListQuery>,
            ) -> Reply<ObjectList<Secret>> {
                super::list(st.services.list_secrets(&p, $k, &q).await?)
            }

            /// Stores a secret; an existing name is returned unchanged.
            #[utoipa::path(post, path = $collection, tag = "secrets", operation_id = $create_op,
                request_body = PutSecret, responses((status = 200, body = Secret)))]
            pub(super) async fn create(
                State(st): State<AppState>,
                Authed(p): Authed,
                Checked(b): Checked<PutSecret>,
            ) -> Reply<Secret> {
                reply(st.services.put_secret(&p, $k, &b, false).await?)
            }

            /// Stores a secret, replacing one of the same name.
            #[utoipa::path(put, path = $collection, tag = "secrets", operation_id = $replace_op,
                request_body = PutSecret, responses((status = 200, body = Secret)))]
            pub(super) async fn replace(
                State(st): State<AppState>,
                Authed(p): Authed,
                Checked(b): Checked<PutSecret>,
            ) -> Reply<Secret> {
                reply(st.services.put_secret(&p, $k, &b, true).await?)
            }

            #[utoipa::path(delete, path = $collection, tag = "secrets",
                operation_id = $delete_name_op, request_body = DeleteSecretByName,
                responses((status = 200, body = Secret)))]
            pub(super) async fn delete_by_name(
                State(st): State<AppState>,
                Authed(p): Authed,
                Checked(b): Checked<DeleteSecretByName>,
            ) -> Reply<Secret> {
                reply(st.services.delete_secret_by_name(&p, $k, &b).await?)
            }

            #[utoipa::path(get, path = $item, tag = "secrets", operation_id = $get_op,
                params(("id" = String, Path)), responses((status = 200, body = Secret)))]
            pub(super) async fn get(
                State(st): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
            ) -> Reply<Secret> {
                reply(st.services.get_secret(&p, $k, &id).await?)
            }

            #[utoipa::path(patch, path = $item, tag = "secrets", operation_id = $patch_op,
                params(("id" = String, Path)), request_body = PatchSecret,
                responses((status = 200, body = Secret)))]
            pub(super) async fn patch(
                State(st): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
                Checked(b): Checked<PatchSecret>,
            ) -> Reply<Secret> {
                reply(st.services.patch_secret(&p, $k, &id, &b).await?)
            }

            #[utoipa::path(delete, path = $item, tag = "secrets", operation_id = $delete_op,
                params(("id" = String, Path)), responses((status = 200, body = Secret)))]
            pub(super) async fn delete(
                State(st): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
            ) -> Reply<Secret> {
                reply(st.services.delete_secret(&p, $k, &id).await?)
            }
        }
    };
}

secret_routes!(
    ai_secret,
    SecretKind::AiSecret,
    "/v1/ai_secret",
    "/v1/ai_secret/{id}",
    "list_ai_secrets",
    "create_ai_secret",
    "replace_ai_secret",
    "delete_ai_secret_by_name",
    "get_ai_secret",
    "patch_ai_secret",
    "delete_ai_secret"
);
secret_routes!(
    env_var,
    SecretKind::EnvVar,
    "/v1/env_var",
    "/v1/env_var/{id}",
    "list_env_vars",
    "create_env_var",
    "replace_env_var",
    "delete_env_var_by_name",
    "get_env_var",
    "patch_env_var",
    "delete_env_var"
);

// ---- audit ----

/// The organization's audit log, newest first.
#[utoipa::path(get, path = "/v1/audit_log", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage)))]
async fn audit_log(
    State(st): State<AppState>,
    Authed(p): Authed,
    Params(q): Params<AuditQuery>,
) -> Reply<AuditPage> {
    let (entries, cursor) = st.services.list_audit(&p, &q).await?;
    reply(json!({"objects": entries, "cursor": cursor}))
}
