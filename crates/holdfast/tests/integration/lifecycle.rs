//! The data lifecycle: deleted projects and objects restored within the grace period, and
//! refused after it.

use crate::harness::{Backend, Server, assert_error, backends};
use serde_json::{Value, json};

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// A call with the owner's key.
async fn call(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    server
        .call(method, path, Some(&server.key.clone()), body)
        .await
}

/// The rows `fetch` returns of a dataset.
async fn rows(server: &Server, ds: &str) -> usize {
    crate::api::dataset_rows(server, ds).await.len()
}

/// A project with a dataset of one row, deleted: a preview restores nothing; a restore
/// brings back the project, its dataset and its rows; a dataset deleted alone comes back the
/// same way, and not while its project is deleted, and so does a prompt; a restored name
/// taken meanwhile is a conflict; every restore is audited.
async fn restore_within_grace(backend: Backend) {
    let server = Server::start(backend).await;
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "keep"})))
        .await);
    let ds = id(&server
        .ok(
            "POST",
            "/v1/dataset",
            Some(json!({"project_id": p, "name": "d"})),
        )
        .await);
    server
        .ok(
            "POST",
            &format!("/v1/dataset/{ds}/insert"),
            Some(json!({"events": [{"id": "r1", "input": "kept text"}]})),
        )
        .await;
    assert_eq!(rows(&server, &ds).await, 1);
    server.ok("DELETE", &format!("/v1/project/{p}"), None).await;
    let (s, b) = call(&server, "GET", &format!("/v1/dataset/{ds}"), None).await;
    assert_error(s, &b, 404, "not_found");
    // Restoring something that is not deleted (the dataset is hidden with its project, not
    // deleted itself), or unknown: 404.
    let (s, b) = call(&server, "POST", &format!("/v1/dataset/{ds}/restore"), None).await;
    assert_error(s, &b, 404, "not_found");
    let (s, b) = call(
        &server,
        "POST",
        "/v1/project/00000000-0000-0000-0000-000000000000/restore",
        None,
    )
    .await;
    assert_error(s, &b, 404, "not_found");
    let preview = server
        .ok(
            "POST",
            &format!("/v1/project/{p}/restore"),
            Some(json!({"preview": true})),
        )
        .await;
    assert_eq!(preview["restored"], json!(false), "{preview}");
    assert_eq!(preview["name"], json!("keep"));
    assert!(
        preview["restorable_until"].as_str().unwrap() > preview["deleted_at"].as_str().unwrap()
    );
    let (s, _) = call(&server, "GET", &format!("/v1/project/{p}"), None).await;
    assert_eq!(s, 404, "a preview changes nothing");
    let done = server
        .ok("POST", &format!("/v1/project/{p}/restore"), None)
        .await;
    assert_eq!(done["restored"], json!(true), "{done}");
    let back = server.ok("GET", &format!("/v1/project/{p}"), None).await;
    assert_eq!(back["deleted_at"], Value::Null);
    assert_eq!(rows(&server, &ds).await, 1);
    let (s, b) = call(&server, "POST", &format!("/v1/project/{p}/restore"), None).await;
    assert_error(s, &b, 404, "not_found");
    // A dataset deleted alone.
    server
        .ok("DELETE", &format!("/v1/dataset/{ds}"), None)
        .await;
    let restored = server
        .ok(
            "POST",
            &format!("/v1/dataset/{ds}/restore"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (&restored["object_type"], &restored["restored"]),
        (&json!("dataset"), &json!(true))
    );
    assert_eq!(rows(&server, &ds).await, 1);
    // Not while its project is deleted.
    server
        .ok("DELETE", &format!("/v1/dataset/{ds}"), None)
        .await;
    server.ok("DELETE", &format!("/v1/project/{p}"), None).await;
    let (s, b) = call(&server, "POST", &format!("/v1/dataset/{ds}/restore"), None).await;
    assert_error(s, &b, 409, "conflict");
    assert!(b.to_string().contains("restore the project first"), "{b}");
    // A project of the same name created meanwhile: the restore is refused, nothing changes.
    let other = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "keep"})))
        .await);
    let (s, b) = call(&server, "POST", &format!("/v1/project/{p}/restore"), None).await;
    assert_error(s, &b, 409, "conflict");
    let (s, _) = call(&server, "GET", &format!("/v1/project/{p}"), None).await;
    assert_eq!(s, 404);
    server
        .ok(
            "PATCH",
            &format!("/v1/project/{other}"),
            Some(json!({"name": "other"})),
        )
        .await;
    server
        .ok("POST", &format!("/v1/project/{p}/restore"), None)
        .await;
    server
        .ok("POST", &format!("/v1/dataset/{ds}/restore"), None)
        .await;
    assert_eq!(rows(&server, &ds).await, 1);
    // A prompt, deleted and restored with its content.
    let prompt = id(&server
        .ok(
            "POST",
            "/v1/prompt",
            Some(json!({"project_id": p, "slug": "greet", "name": "Greet",
                        "prompt_data": {"prompt": {"type": "chat",
                            "messages": [{"role": "user", "content": "hello {{name}}"}]}}})),
        )
        .await);
    server
        .ok("DELETE", &format!("/v1/prompt/{prompt}"), None)
        .await;
    let (s, _) = call(&server, "GET", &format!("/v1/prompt/{prompt}"), None).await;
    assert_eq!(s, 404);
    server
        .ok("POST", &format!("/v1/prompt/{prompt}/restore"), None)
        .await;
    let back = server
        .ok("GET", &format!("/v1/prompt/{prompt}"), None)
        .await;
    assert!(back.to_string().contains("hello {{name}}"), "{back}");
    // Bad input: a body that is not the request's shape.
    let (s, b) = call(
        &server,
        "POST",
        &format!("/v1/dataset/{ds}/restore"),
        Some(json!({"preview": "yes"})),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let audit: Vec<String> = server
        .audit_rows()
        .await
        .into_iter()
        .map(|(_, detail, _)| detail)
        .filter(|d| d.contains("restored"))
        .collect();
    assert_eq!(audit.len(), 5, "{audit:?}");
    // So is every deletion: the project twice, the dataset twice, the prompt once.
    let deletions = server
        .audit_rows()
        .await
        .into_iter()
        .filter(|(_, detail, _)| detail.contains("\"deleted\""))
        .count();
    assert_eq!(deletions, 5);
}

/// After the grace period a restore (even a preview) is refused, naming when it ended, and
/// nothing comes back.
async fn restore_refused_after_grace(backend: Backend) {
    let server = Server::start_with(backend, &[("HOLDFAST_DELETION_GRACE_SECS", "2")]).await;
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "brief"})))
        .await);
    server.ok("DELETE", &format!("/v1/project/{p}"), None).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (s, b) = call(
        &server,
        "POST",
        &format!("/v1/project/{p}/restore"),
        Some(json!({"preview": true})),
    )
    .await;
    assert_error(s, &b, 409, "conflict");
    assert!(
        b.to_string().contains("grace period for restoring ended"),
        "{b}"
    );
    let (s, _) = call(&server, "GET", &format!("/v1/project/{p}"), None).await;
    assert_eq!(s, 404);
}

mod run {
    use super::backends;
    on_all_backends!(restore_within_grace, restore_refused_after_grace);
}
