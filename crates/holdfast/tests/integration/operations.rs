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
        ("GET", "/attachment?key=a&key=b", 400, "invalid_query"),
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

/// `HOLDFAST_LOG_FORMAT=json`: one JSON object per line; the access line carries the route,
/// status, key id and the request id; no line carries the key itself.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let mut child = std::process::Command::new(crate::harness::BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("HOLDFAST_LOG", "info")
        .env("HOLDFAST_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let key = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("export BRAINTRUST_API_KEY=")
                .map(str::to_owned)
        })
        .unwrap();
    let http = crate::harness::client();
    let t = std::time::Instant::now();
    loop {
        let r = http
            .get(format!("http://127.0.0.1:{port}/v1/project"))
            .bearer_auth(&key)
            .header("x-request-id", "log-check-1")
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(30));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let lines: Vec<Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|l| l["target"] == "holdfast::access" && l["span"]["request_id"] == "log-check-1")
        .unwrap_or_else(|| panic!("no access line in {err}"));
    assert_eq!(access["fields"]["route"], "/v1/project", "{access}");
    assert_eq!(access["fields"]["status"], 200, "{access}");
    assert_eq!(access["fields"]["key_id"].as_str().unwrap(), &key[3..35]);
    assert!(!err.contains(&key));
}

/// `/metrics`: served only with the token; the exposition passes Prometheus's own checker
/// (`promtool check metrics`, from Debian's prometheus, installed by scripts/test.sh).
async fn metrics(backend: Backend) {
    let server = Server::start_with(backend, &[("HOLDFAST_METRICS_TOKEN", "scrape-me")]).await;
    let p = server
        .ok("POST", "/v1/project", Some(json!({"name": "m"})))
        .await;
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": [{"project_id": p["id"], "log_id": "g", "input": 1}]})),
        )
        .await;
    let scrape = |token: Option<&str>| {
        let mut req = server.http.get(format!("{}/metrics", server.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    for token in [None, Some("wrong"), Some(server.key.as_str())] {
        assert_eq!(scrape(token).await.unwrap().status(), 401, "{token:?}");
    }
    let r = scrape(Some("scrape-me")).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains(
            "holdfast_http_requests_total{method=\"POST\",route=\"/logs3\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("holdfast_rows_written_total 1\n"), "{text}");
    let commits = text
        .lines()
        .find_map(|l| l.strip_prefix("holdfast_writer_commits_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_default();
    assert!(commits >= 1.0, "{text}");
    assert!(
        text.contains("holdfast_http_request_duration_seconds_count{route=\"/v1/project\"} 1"),
        "{text}"
    );
    use std::io::Write;
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus; scripts/test.sh installs it)");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `metrics_listen`: `/metrics` on an address of its own, open there when no token is set;
/// the API's address then has no metrics.
async fn metrics_on_their_own_address(backend: Backend) {
    let port = crate::harness::free_port();
    let addr = format!("127.0.0.1:{port}");
    let server = Server::start_with(backend, &[("HOLDFAST_METRICS_LISTEN", addr.as_str())]).await;
    server.ok("GET", "/v1/project", None).await;
    let r = server
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("holdfast_cache_lookups_total{cache=\"api_key\",result=\"hit\"}"),
        "{text}"
    );
    let (s, b) = server.call("GET", "/metrics", None, None).await;
    assert_eq!(s, 404, "{b}");
    // Only /metrics is there.
    let r = server
        .http
        .get(format!("http://{addr}/v1/project"))
        .bearer_auth(&server.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

mod run {
    use super::backends;
    on_all_backends!(
        request_ids_and_json_errors,
        readiness,
        metrics,
        metrics_on_their_own_address
    );
}
