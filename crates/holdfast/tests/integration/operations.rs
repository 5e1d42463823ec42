//! Operations: request ids, JSON errors for every refusal, readiness.

use crate::harness::{Backend, Server, backends};
use serde_json::{Value, json};

async fn request_ids_and_json_errors(backend: Backend) {
    let server = Server::start(backend).await;
    let send = |method: &str, path: &str, id: Option<&str>| {
        let mut req = server
            .http
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .bearer_auth(&server.key);
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        req.send()
    };
    // A client's id is kept and returned; a bad one is replaced.
    let r = send("GET", "/v1/project", Some("trace-42.a_b"))
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42.a_b");
    let r = send("GET", "/v1/project", Some("no spaces allowed"))
        .await
        .unwrap();
    let made = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        made.len() == 32 && made.bytes().all(|b| b.is_ascii_hexdigit()),
        "{made}"
    );
    // Every refusal is JSON with a code and the request id: ours, and the framework's own.
    for (method, path, status, code) in [
        (
            "GET",
            "/v1/project/00000000-0000-4000-8000-000000000000",
            404,
            "not_found",
        ),
        ("PUT", "/v1/project", 405, "method_not_allowed"),
        ("GET", "/attachment?key=a&key=b", 400, "bad_request"),
        ("GET", "/no/such/route", 404, "not_found"),
    ] {
        let r = send(method, path, Some("req-1")).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{method} {path}: {body}");
        assert_eq!(body["error"]["request_id"], "req-1", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // The request id is in the request's audit entry.
    let r = server
        .http
        .post(format!("{}/v1/project", server.url))
        .bearer_auth(&server.key)
        .header("x-request-id", "audited-7")
        .json(&json!({"name": "rid"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rows = server.audit_rows().await;
    assert!(
        rows.iter()
            .any(|(a, d, _)| a == "POST /v1/project" && d.contains("\"request_id\":\"audited-7\"")),
        "{rows:?}"
    );
}

async fn readiness(backend: Backend) {
    let server = Server::start(backend).await;
    let r = server
        .http
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    for check in ["store", "writer", "kms", "index"] {
        assert_eq!(body["checks"][check]["ok"], true, "{body}");
    }
}

mod run {
    use super::backends;
    on_all_backends!(request_ids_and_json_errors, readiness);
}
