//! Administration routes: ACLs, roles, groups, users, the organization and its members, API
//! keys, service tokens and the audit log.

use crate::extract::{Authed, BaseUrl, JsonBody, OptionalJson};
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use holdfast_services::ServiceError;
use holdfast_services::admin::Entity;
use holdfast_services::secrets::SecretKind;
use serde_json::{Value, json};
use std::collections::HashMap;

type Reply = Result<Json<Value>, ApiError>;
type Params = Query<HashMap<String, String>>;

fn objects(list: Vec<Value>) -> Json<Value> {
    Json(json!({ "objects": list }))
}

pub fn router() -> Router<AppState> {
    let mut r = Router::new()
        .route("/v1/acl", get(list_acls).post(create_acl))
        .route("/v1/acl/batch_update", post(batch_update_acls))
        .route("/v1/acl/list_org", get(list_org_acls))
        .route("/v1/acl/{id}", get(get_acl).delete(delete_acl))
        .route("/v1/user", get(list_users))
        .route("/v1/user/{id}", get(get_user))
        .route("/v1/organization", get(list_orgs))
        .route("/v1/organization/members", patch(patch_members))
        .route("/v1/organization/{id}", get(get_org).patch(patch_org))
        .route("/v1/api_key", get(list_keys).post(create_key))
        .route("/v1/api_key/{id}", get(get_key).delete(revoke_key))
        .route("/v1/api_key/{id}/rotate", post(rotate_key))
        .route(
            "/v1/service_token",
            get(list_service_tokens).post(create_service_token),
        )
        .route(
            "/v1/service_token/{id}",
            axum::routing::delete(revoke_service_token),
        )
        .route("/v1/audit_log", get(audit_log));
    for (k, name) in [
        (SecretKind::AiSecret, "ai_secret"),
        (SecretKind::EnvVar, "env_var"),
    ] {
        let collection = get(move |s, a, q| list_secrets(k, s, a, q))
            .post(move |s, a, b| put_secret(k, false, s, a, b))
            .put(move |s, a, b| put_secret(k, true, s, a, b))
            .delete(move |s, a, b| delete_secret_by_name(k, s, a, b));
        r = r.route(&format!("/v1/{name}"), collection).route(
            &format!("/v1/{name}/{{id}}"),
            get(move |s, a, p| get_secret(k, s, a, p))
                .patch(move |s, a, p, b| patch_secret(k, s, a, p, b))
                .delete(move |s, a, p| delete_secret(k, s, a, p)),
        );
    }
    for (e, name) in [(Entity::Group, "group"), (Entity::Role, "role")] {
        r = r
            .route(
                &format!("/v1/{name}"),
                get(move |s, a| list_entities(e, s, a))
                    .post(move |s, a, b| put_entity(e, false, s, a, b))
                    .put(move |s, a, b| put_entity(e, true, s, a, b)),
            )
            .route(
                &format!("/v1/{name}/{{id}}"),
                get(move |s, a, p| get_entity(e, s, a, p))
                    .patch(move |s, a, p, b| patch_entity(e, s, a, p, b))
                    .delete(move |s, a, p| delete_entity(e, s, a, p)),
            );
    }
    r
}

// ---- ACLs ----

async fn create_acl(State(st): State<AppState>, Authed(p): Authed, JsonBody(b): JsonBody) -> Reply {
    let (added, _) = st.services.change_acls(&p, &[b], &[]).await?;
    added
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError(ServiceError::Internal("acl not stored".into())))
}

async fn batch_update_acls(
    State(st): State<AppState>,
    Authed(p): Authed,
    JsonBody(b): JsonBody,
) -> Reply {
    let list = |field: &str| -> Result<Vec<Value>, ApiError> {
        match b.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(_) => Err(ApiError::bad(format!("`{field}` must be a list of ACLs"))),
        }
    };
    if !b.is_object() {
        return Err(ApiError::bad("the body must be a JSON object"));
    }
    let (added, removed) = st
        .services
        .change_acls(&p, &list("add_acls")?, &list("remove_acls")?)
        .await?;
    Ok(Json(json!({"added_acls": added, "removed_acls": removed})))
}

async fn list_acls(State(st): State<AppState>, Authed(p): Authed, Query(q): Params) -> Reply {
    let (Some(ty), Some(id)) = (q.get("object_type"), q.get("object_id")) else {
        return Err(ApiError::bad("`object_type` and `object_id` are required"));
    };
    Ok(objects(st.services.list_acls(&p, ty, id).await?))
}

async fn list_org_acls(State(st): State<AppState>, Authed(p): Authed) -> Reply {
    Ok(objects(st.services.list_org_acls(&p).await?))
}

async fn get_acl(State(st): State<AppState>, Authed(p): Authed, Path(id): Path<String>) -> Reply {
    Ok(Json(st.services.get_acl(&p, &id).await?))
}

async fn delete_acl(
    State(st): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(st.services.delete_acl(&p, &id).await?))
}

// ---- groups and roles ----

async fn list_entities(e: Entity, State(st): State<AppState>, Authed(p): Authed) -> Reply {
    Ok(objects(st.services.list_entities(&p, e).await?))
}

async fn put_entity(
    e: Entity,
    replace: bool,
    State(st): State<AppState>,
    Authed(p): Authed,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(st.services.put_entity(&p, e, &b, replace).await?))
}

async fn get_entity(
    e: Entity,
    State(st): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(st.services.get_entity(&p, e, &id).await?))
}

async fn patch_entity(
    e: Entity,
    State(st): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(st.services.patch_entity(&p, e, &id, &b).await?))
}

async fn delete_entity(
    e: Entity,
    State(st): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(st.services.delete_entity(&p, e, &id).await?))
}

// ---- users and the organization ----

async fn list_users(State(st): State<AppState>, Authed(p): Authed) -> Reply {
    Ok(objects(st.services.list_users(&p).await?))
}

async fn get_user(State(st): State<AppState>, Authed(p): Authed, Path(id): Path<String>) -> Reply {
    Ok(Json(st.services.get_user(&p, &id).await?))
}

async fn list_orgs(State(st): State<AppState>, Authed(p): Authed, BaseUrl(base): BaseUrl) -> Reply {
    Ok(objects(vec![st.services.organization(&p, &base).await?]))
}

async fn get_org(
    State(st): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Reply {
    if id != p.org_id {
        return Err(ApiError(ServiceError::NotFound("organization".into())));
    }
    Ok(Json(st.services.organization(&p, &base).await?))
}

async fn patch_org(
    State(st): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Reply {
    if id != p.org_id {
        return Err(ApiError(ServiceError::NotFound("organization".into())));
    }
    st.services.rename_organization(&p, &b).await?;
    Ok(Json(st.services.organization(&p, &base).await?))
}

async fn patch_members(
    State(st): State<AppState>,
    Authed(p): Authed,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(st.services.patch_members(&p, &b).await?))
}

// ---- keys ----

async fn list_keys(State(st): State<AppState>, Authed(p): Authed) -> Reply {
    Ok(objects(st.services.list_keys(&p, false).await?))
}

async fn create_key(
    State(st): State<AppState>,
    Authed(p): Authed,
    OptionalJson(b): OptionalJson,
) -> Reply {
    Ok(Json(st.services.create_own_key(&p, &b).await?))
}

async fn get_key(State(st): State<AppState>, Authed(p): Authed, Path(id): Path<String>) -> Reply {
    Ok(Json(st.services.get_key(&p, &id).await?))
}

async fn revoke_key(
    State(st): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(st.services.revoke_key(&p, &id).await?))
}

async fn rotate_key(
    State(st): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    OptionalJson(b): OptionalJson,
) -> Reply {
    Ok(Json(st.services.rotate_key(&p, &id, &b).await?))
}

async fn list_service_tokens(State(st): State<AppState>, Authed(p): Authed) -> Reply {
    Ok(objects(st.services.list_keys(&p, true).await?))
}

async fn create_service_token(
    State(st): State<AppState>,
    Authed(p): Authed,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(st.services.create_service_token(&p, &b).await?))
}

async fn revoke_service_token(
    State(st): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(st.services.revoke_service_token(&p, &id).await?))
}

// ---- secrets ----

async fn list_secrets(
    k: SecretKind,
    State(st): State<AppState>,
    Authed(p): Authed,
    Query(q): Params,
) -> Reply {
    Ok(objects(st.services.list_secrets(&p, k, &q).await?))
}

async fn put_secret(
    k: SecretKind,
    replace: bool,
    State(st): State<AppState>,
    Authed(p): Authed,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(st.services.put_secret(&p, k, &b, replace).await?))
}

async fn get_secret(
    k: SecretKind,
    State(st): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(st.services.get_secret(&p, k, &id).await?))
}

async fn patch_secret(
    k: SecretKind,
    State(st): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(st.services.patch_secret(&p, k, &id, &b).await?))
}

async fn delete_secret(
    k: SecretKind,
    State(st): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(st.services.delete_secret(&p, k, &id).await?))
}

async fn delete_secret_by_name(
    k: SecretKind,
    State(st): State<AppState>,
    Authed(p): Authed,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(st.services.delete_secret_by_name(&p, k, &b).await?))
}

// ---- audit ----

async fn audit_log(State(st): State<AppState>, Authed(p): Authed, Query(q): Params) -> Reply {
    let (entries, cursor) = st.services.list_audit(&p, &q).await?;
    Ok(Json(json!({"objects": entries, "cursor": cursor})))
}
