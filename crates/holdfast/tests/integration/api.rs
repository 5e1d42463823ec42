//! HTTP behaviour on both backends: authentication, bad input, tenant isolation, row
//! semantics and concurrent writes.

use crate::harness::{Backend, Server, assert_error, backends};
use serde_json::{Value, json};

async fn setup(server: &Server) -> (String, String) {
    let project = server
        .ok("POST", "/v1/project", Some(json!({"name": "p"})))
        .await;
    let pid = project["id"].as_str().unwrap().to_owned();
    let ds = server
        .ok(
            "POST",
            "/v1/dataset",
            Some(json!({"project_id": pid, "name": "d"})),
        )
        .await;
    (pid, ds["id"].as_str().unwrap().to_owned())
}

pub(crate) async fn dataset_rows(server: &Server, ds: &str) -> Vec<Value> {
    server
        .ok("POST", &format!("/v1/dataset/{ds}/fetch"), Some(json!({})))
        .await["events"]
        .as_array()
        .unwrap()
        .clone()
}

async fn authentication(backend: Backend) {
    let server = Server::start(backend).await;
    let (status, body) = server.call("POST", "/api/apikey/login", None, None).await;
    assert_error(status, &body, 401, "unauthenticated");
    let mut garbled = server.key.clone();
    garbled.replace_range(10..11, if &garbled[10..11] == "a" { "b" } else { "a" });
    let unknown = format!("hf_{}", "0".repeat(104));
    for bad in [
        "",
        "nonsense",
        garbled.as_str(),
        unknown.as_str(),
        "Basic abc",
    ] {
        let (status, body) = server
            .call("POST", "/v1/project", Some(bad), Some(json!({"name": "x"})))
            .await;
        assert_error(status, &body, 401, "unauthenticated");
    }
    // A key that has expired, and a revoked one.
    const ADMIN: [&str; 4] = ["--org", "default", "--email", "admin@localhost"];
    let expired =
        server.cli_line(&[&["keys", "create"][..], &ADMIN, &["--expires-in-days", "0"]].concat());
    let (status, body) = server
        .call("GET", "/v1/project", Some(&expired), None)
        .await;
    assert_error(status, &body, 401, "key_expired");
    let fresh = server.cli_line(&[&["keys", "create"][..], &ADMIN].concat());
    assert_eq!(
        server
            .call("GET", "/v1/project", Some(&fresh), None)
            .await
            .0,
        200
    );
    let listed = server.cli_line(&[&["keys", "list"][..], &ADMIN].concat());
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(
        !listed.contains(&fresh[10..]),
        "key list must not show secrets"
    );
    let fresh_id = &fresh[3..35];
    server.cli_line(&[&["keys", "revoke"][..], &ADMIN, &[fresh_id]].concat());
    // Revocation by another process is seen within the cache TTL.
    let mut revoked_seen = false;
    for _ in 0..60 {
        if server
            .call("GET", "/v1/project", Some(&fresh), None)
            .await
            .0
            == 401
        {
            revoked_seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(revoked_seen, "revoked key still accepted");
    // Open routes.
    assert_eq!(server.call("GET", "/healthz", None, None).await.0, 200);
    let (status, version) = server.call("GET", "/version", None, None).await;
    assert_eq!(status, 200);
    assert!(version["logs3_payload_max_bytes"].as_u64().is_some());
}

async fn bad_input(backend: Backend) {
    let server = Server::start_with(
        backend,
        &[
            ("HOLDFAST_MAX_BODY_BYTES", "1000000"),
            ("HOLDFAST_LOGS3_PAYLOAD_MAX_BYTES", "500000"),
        ],
    )
    .await;
    let (pid, ds) = setup(&server).await;
    let key = server.key.clone();
    let good = json!({"id": "keep", "dataset_id": ds, "input": 1, "expected": 2});
    server
        .ok("POST", "/logs3", Some(json!({"rows": [good]})))
        .await;

    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let deep_row = format!(r#"{{"rows":[{{"id":"deep","dataset_id":"{ds}","input":{deep}}}]}}"#);
    let oversize = format!(
        r#"{{"rows":[{{"id":"big","dataset_id":"{ds}","input":"{}"}}]}}"#,
        "x".repeat(1_100_000)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", b"{\"rows\": [".to_vec(), 400, "invalid_json"),
        ("empty body", Vec::new(), 400, "invalid_json"),
        ("rows not an array", br#"{"rows": 5}"#.to_vec(), 400, "invalid_field"),
        ("row not an object", br#"{"rows": [1]}"#.to_vec(), 400, "bad_request"),
        ("no object ids", br#"{"rows": [{"id": "a", "input": 1}]}"#.to_vec(), 400, "bad_request"),
        ("wrong id type", format!(r#"{{"rows": [{{"id": 5, "dataset_id": "{ds}"}}]}}"#).into_bytes(), 400, "bad_request"),
        ("wrong scores type", format!(r#"{{"rows": [{{"id": "s", "dataset_id": "{ds}", "scores": {{"a": "x"}}}}]}}"#).into_bytes(), 400, "bad_request"),
        ("wrong _is_merge type", format!(r#"{{"rows": [{{"id": "s", "dataset_id": "{ds}", "_is_merge": "yes"}}]}}"#).into_bytes(), 400, "bad_request"),
        ("unknown dataset", br#"{"rows": [{"id": "u", "dataset_id": "00000000-0000-0000-0000-000000000000"}]}"#.to_vec(), 404, "not_found"),
        // A good row followed by a bad one: the whole batch is refused.
        ("partly bad batch", format!(r#"{{"rows": [{{"id": "half", "dataset_id": "{ds}", "input": 1}}, {{"id": "half2", "experiment_id": "nope"}}]}}"#).into_bytes(), 404, "not_found"),
        ("deep nesting", deep_row.into_bytes(), 400, "invalid_json"),
        ("oversize body", oversize.into_bytes(), 413, "body_too_large"),
    ];
    for (what, body, status, code) in cases {
        let (s, b) = server.raw("POST", "/logs3", Some(&key), body).await;
        assert_eq!(s, status, "{what}: {b}");
        assert_error(s, &b, status, code);
    }
    // REST bad input.
    for (method, path, body, status, code) in [
        (
            "POST",
            "/v1/project".to_owned(),
            json!({"name": 5}),
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/project".to_owned(),
            json!({}),
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/experiment".to_owned(),
            json!({"project_id": pid, "name": "e", "metadata": [1]}),
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/experiment".to_owned(),
            json!({"project_id": "missing"}),
            404,
            "not_found",
        ),
        (
            "POST",
            format!("/v1/dataset/{ds}/fetch"),
            json!({"limit": -1}),
            400,
            "invalid_field",
        ),
        (
            "POST",
            format!("/v1/dataset/{ds}/fetch"),
            json!({"version": "abc"}),
            400,
            "bad_request",
        ),
        (
            "POST",
            format!("/v1/dataset/{ds}/fetch"),
            json!({"cursor": "garbage!"}),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/btql".to_owned(),
            json!({"query": {"from": {"op": "function", "name": {"op": "ident", "name": ["dataset"]}, "args": [{"op": "literal", "value": ds}]}, "filter": {"op": "regex"}}}),
            400,
            "invalid_field",
        ),
        (
            "GET",
            "/v1/experiment/nope".to_owned(),
            Value::Null,
            404,
            "not_found",
        ),
        (
            "GET",
            "/no/such/route".to_owned(),
            Value::Null,
            404,
            "not_found",
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (s, b) = server.call(method, &path, Some(&key), body).await;
        assert_error(s, &b, status, code);
    }
    // Nothing was written and the server still serves.
    let rows = dataset_rows(&server, &ds).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], "keep");
    let exps = server
        .ok("GET", &format!("/v1/experiment?project_id={pid}"), None)
        .await;
    assert_eq!(exps["objects"].as_array().unwrap().len(), 0);
    assert_eq!(server.call("GET", "/healthz", None, None).await.0, 200);
}

async fn isolation(backend: Backend) {
    let server = Server::start(backend).await;
    let (pid, ds) = setup(&server).await;
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": [{"id": "secret", "dataset_id": ds, "input": "private"}]})),
        )
        .await;
    let other = server.cli_line(&["org", "create", "other", "--owner", "eve@other.test"]);
    let o = Some(other.as_str());
    for (method, path, body) in [
        ("GET", format!("/v1/project/{pid}"), None),
        ("GET", format!("/v1/dataset/{ds}"), None),
        ("POST", format!("/v1/dataset/{ds}/fetch"), Some(json!({}))),
        (
            "POST",
            format!("/v1/project_logs/{pid}/fetch"),
            Some(json!({})),
        ),
        (
            "PATCH",
            format!("/v1/dataset/{ds}"),
            Some(json!({"name": "stolen"})),
        ),
        ("DELETE", format!("/v1/project/{pid}"), None),
        (
            "POST",
            "/logs3".to_owned(),
            Some(json!({"rows": [{"id": "secret", "dataset_id": ds, "input": "overwrite"}]})),
        ),
        (
            "POST",
            "/v1/experiment".to_owned(),
            Some(json!({"project_id": pid})),
        ),
    ] {
        let (s, b) = server.call(method, &path, o, body).await;
        assert_error(s, &b, 404, "not_found");
    }
    let listed = server.call("GET", "/v1/project", o, None).await.1;
    assert_eq!(listed["objects"].as_array().unwrap().len(), 0);
    let btql = json!({"query": {"from": {"op": "function", "name": {"op": "ident", "name": ["dataset"]}, "args": [{"op": "literal", "value": ds}]}}});
    assert_eq!(server.call("POST", "/btql", o, Some(btql)).await.0, 404);
    let rows = dataset_rows(&server, &ds).await;
    assert_eq!(rows[0]["input"], "private");
}

async fn row_semantics(backend: Backend) {
    let server = Server::start(backend).await;
    let (_, ds) = setup(&server).await;
    let w = |rows: Value| {
        server.ok(
            "POST",
            "/logs3",
            Some(json!({"rows": rows, "api_version": 2})),
        )
    };
    w(json!([{"id": "r", "dataset_id": ds, "created": "2026-01-01T00:00:00Z", "input": {"a": 1, "b": {"c": 1}}, "tags": ["x"], "metadata": {"m": 1}}])).await;
    let v1 = dataset_rows(&server, &ds).await[0]["_xact_id"]
        .as_str()
        .unwrap()
        .to_owned();
    w(json!([{"id": "r", "dataset_id": ds, "_is_merge": true, "created": "2027-01-01T00:00:00Z", "input": {"b": {"d": 2}}, "tags": ["y"]}])).await;
    w(json!([{"id": "r", "dataset_id": ds, "_is_merge": true, "_merge_paths": [["metadata"]], "metadata": {"n": 2}}])).await;
    w(json!([{"id": "r", "dataset_id": ds, "_is_merge": true, "_array_delete": [{"path": ["tags"], "delete": ["x"]}]}])).await;
    w(json!([{"id": "fresh", "dataset_id": ds, "_is_merge": true, "input": 7}])).await;
    let rows = dataset_rows(&server, &ds).await;
    let r = rows.iter().find(|r| r["id"] == "r").unwrap();
    assert_eq!(r["input"], json!({"a": 1, "b": {"c": 1, "d": 2}}));
    assert_eq!(r["tags"], json!(["y"]));
    assert_eq!(r["metadata"], json!({"n": 2}));
    assert_eq!(r["created"], "2026-01-01T00:00:00Z");
    assert!(r["_xact_id"].as_str().unwrap() > v1.as_str());
    assert_eq!(
        rows.iter().find(|r| r["id"] == "fresh").unwrap()["input"],
        7
    );
    // Replace overwrites; delete hides; the old version stays readable.
    w(json!([{"id": "r", "dataset_id": ds, "input": "replaced"}])).await;
    let rows = dataset_rows(&server, &ds).await;
    let r = rows.iter().find(|r| r["id"] == "r").unwrap();
    assert_eq!(r["input"], "replaced");
    assert!(r["metadata"].is_null() && r["expected"].is_null());
    w(json!([{"id": "r", "dataset_id": ds, "_object_delete": true}])).await;
    let rows = dataset_rows(&server, &ds).await;
    assert!(rows.iter().all(|r| r["id"] != "r"));
    let old = server
        .ok(
            "POST",
            &format!("/v1/dataset/{ds}/fetch"),
            Some(json!({"version": v1})),
        )
        .await["events"]
        .clone();
    assert_eq!(old.as_array().unwrap().len(), 1);
    assert_eq!(old[0]["input"], json!({"a": 1, "b": {"c": 1}}));
    // Paging with a cursor sees every row exactly once.
    let many: Vec<Value> = (0..25)
        .map(|i| json!({"id": format!("p{i:02}"), "dataset_id": ds, "input": i}))
        .collect();
    w(Value::Array(many)).await;
    let mut seen: Vec<String> = server
        .fetch_all(&format!("/v1/dataset/{ds}/fetch"), 7)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen.len(), 26, "a row was returned twice or not at all");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 26);
}

async fn concurrent_writes(backend: Backend) {
    let server = Server::start(backend).await;
    let (_, ds) = setup(&server).await;
    // 16 concurrent requests, each merging a different field into the same 20 rows.
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (http, url, key, ds) = (
            server.http.clone(),
            server.url.clone(),
            server.key.clone(),
            ds.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let rows: Vec<Value> = (0..20)
                .map(|r| json!({"id": format!("row{r}"), "dataset_id": ds, "_is_merge": true, "metadata": {format!("w{w}"): w}, "tags": [format!("t{w}")]}))
                .collect();
            let resp = http.post(format!("{url}/logs3")).bearer_auth(key).json(&json!({"rows": rows})).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()["xact_id"].as_str().unwrap().to_owned()
        }));
    }
    let mut xacts = Vec::new();
    for t in tasks {
        xacts.push(t.await.unwrap());
    }
    xacts.sort();
    xacts.dedup();
    assert_eq!(xacts.len(), 16, "every request gets its own transaction id");
    let rows = dataset_rows(&server, &ds).await;
    assert_eq!(rows.len(), 20);
    for r in rows {
        assert_eq!(
            r["metadata"].as_object().unwrap().len(),
            16,
            "lost update in {r}"
        );
        assert_eq!(r["tags"].as_array().unwrap().len(), 16);
    }
}

async fn rest_objects(backend: Backend) {
    let server = Server::start(backend).await;
    let (pid, ds) = setup(&server).await;
    // Get-or-create is idempotent and answers 200.
    let again = server
        .ok("POST", "/v1/project", Some(json!({"name": "p"})))
        .await;
    assert_eq!(again["id"], pid);
    assert_eq!(
        server
            .ok(
                "POST",
                "/v1/dataset",
                Some(json!({"project_id": pid, "name": "d"}))
            )
            .await["id"],
        ds
    );
    // ensure_new makes names unique; no name gets a generated one.
    let e1 = server
        .ok(
            "POST",
            "/v1/experiment",
            Some(json!({"project_id": pid, "name": "exp"})),
        )
        .await;
    let e2 = server
        .ok(
            "POST",
            "/v1/experiment",
            Some(json!({"project_id": pid, "name": "exp"})),
        )
        .await;
    assert_ne!(e1["id"], e2["id"]);
    assert_ne!(e1["name"], e2["name"]);
    let e3 = server
        .ok(
            "POST",
            "/v1/experiment",
            Some(json!({"project_id": pid, "ensure_new": true})),
        )
        .await;
    assert!(e3["name"].as_str().unwrap().starts_with("experiment-"));
    let open = server
        .ok(
            "GET",
            "/v1/experiment?experiment_name=exp&project_name=p&org_name=default",
            None,
        )
        .await;
    assert_eq!(open["objects"][0]["id"], e1["id"]);
    let patched = server
        .ok(
            "PATCH",
            &format!("/v1/experiment/{}", e1["id"].as_str().unwrap()),
            Some(json!({"description": "d1"})),
        )
        .await;
    assert_eq!(patched["description"], "d1");
    let deleted = server
        .ok(
            "DELETE",
            &format!("/v1/experiment/{}", e2["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(deleted["deleted_at"].is_string());
    assert_eq!(
        server
            .call(
                "GET",
                &format!("/v1/experiment/{}", e2["id"].as_str().unwrap()),
                Some(&server.key),
                None
            )
            .await
            .0,
        404
    );
    // Prompts: create, replace (new version), load by slug and by version.
    let p1 = server.ok("POST", "/v1/prompt", Some(json!({"project_id": pid, "name": "G", "slug": "g", "prompt_data": {"prompt": {"type": "completion", "content": "v1"}}}))).await;
    let p2 = server.ok("PUT", "/v1/prompt", Some(json!({"project_id": pid, "name": "G", "slug": "g", "prompt_data": {"prompt": {"type": "completion", "content": "v2"}}}))).await;
    assert_eq!(p1["id"], p2["id"]);
    assert!(p2["_xact_id"].as_str() > p1["_xact_id"].as_str());
    for key in [
        "id",
        "project_id",
        "_xact_id",
        "name",
        "slug",
        "description",
        "prompt_data",
        "tags",
    ] {
        assert!(p2.get(key).is_some(), "prompt lacks {key}");
    }
    let latest = server
        .ok("GET", "/v1/prompt?project_name=p&slug=g", None)
        .await;
    assert_eq!(
        latest["objects"][0]["prompt_data"]["prompt"]["content"],
        "v2"
    );
    let old = server
        .ok(
            "GET",
            &format!(
                "/v1/prompt?project_name=p&slug=g&version={}",
                p1["_xact_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(old["objects"][0]["prompt_data"]["prompt"]["content"], "v1");
    // Summaries: per trace, then over traces.
    let exp = e1["id"].as_str().unwrap();
    let rows = json!([
        {"id": "a", "span_id": "a", "root_span_id": "ta", "experiment_id": exp, "input": 1, "metrics": {"start": 0.0, "end": 2.0}},
        {"id": "a1", "span_id": "a1", "root_span_id": "ta", "span_parents": ["a"], "experiment_id": exp, "scores": {"s": 1.0}},
        {"id": "a2", "span_id": "a2", "root_span_id": "ta", "span_parents": ["a"], "experiment_id": exp, "scores": {"s": 0.0}},
        {"id": "b", "span_id": "b", "root_span_id": "tb", "experiment_id": exp, "input": 2, "scores": {"s": 1.0}, "metrics": {"start": 0.0, "end": 1.0}},
    ]);
    server
        .ok("POST", "/logs3", Some(json!({"rows": rows})))
        .await;
    let summary = server
        .ok(
            "GET",
            &format!("/v1/experiment/{exp}/summarize?summarize_scores=true"),
            None,
        )
        .await;
    assert_eq!(summary["scores"]["s"]["score"], 0.75);
    let keys: Vec<&String> = summary["scores"]["s"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["name", "score", "diff", "improvements", "regressions"]
    );
    assert_eq!(summary["metrics"]["duration"]["metric"].as_f64(), Some(1.5));
    // The JS SDK's base-experiment lookup answers 400 when there is none.
    let (s, b) = server
        .call(
            "POST",
            "/api/base_experiment/get_id",
            Some(&server.key),
            Some(json!({"id": exp})),
        )
        .await;
    assert_error(s, &b, 400, "bad_request");
}

/// Summaries read an object in pages (memory bounded by a page): an experiment of 6,000
/// spans, each trace's root and score spans far apart in row-id order (so in different
/// pages), compared with a base; and a dataset of 6,000 records counted.
async fn summaries_of_large_objects(backend: Backend) {
    let server = Server::start(backend).await;
    let (pid, ds) = setup(&server).await;
    let experiment = |name: &str| json!({"project_id": pid, "name": name});
    let base = server
        .ok("POST", "/v1/experiment", Some(experiment("base")))
        .await;
    let exp = server
        .ok("POST", "/v1/experiment", Some(experiment("new")))
        .await;
    let (base, exp) = (base["id"].as_str().unwrap(), exp["id"].as_str().unwrap());
    const TRACES: usize = 2_000;
    // Trace t's score spans: a = t even, b = (t mod 3) / 2; its mean against the base's 0.5.
    let (mut rows, mut base_rows) = (Vec::new(), Vec::new());
    let (mut sum, mut better, mut worse) = (0.0, 0, 0);
    for t in 0..TRACES {
        let (a, b) = (f64::from(u8::from(t % 2 == 0)), (t % 3) as f64 / 2.0);
        let mean = (a + b) / 2.0;
        sum += mean;
        better += usize::from(mean > 0.5);
        worse += usize::from(mean < 0.5);
        let (root, trace) = (format!("r-{t:05}"), format!("t-{t:05}"));
        rows.push(
            json!({"id": root, "span_id": root, "root_span_id": trace, "experiment_id": exp,
                         "input": {"case": t}, "metrics": {"start": 0.0, "end": 1.0}}),
        );
        for (which, score) in [("a", a), ("b", b)] {
            let id = format!("s-{t:05}-{which}");
            rows.push(
                json!({"id": id, "span_id": id, "root_span_id": trace, "span_parents": [root],
                             "experiment_id": exp, "scores": {"s": score}}),
            );
        }
        base_rows.push(
            json!({"id": format!("b-{t:05}"), "experiment_id": base, "input": {"case": t},
                              "scores": {"s": 0.5}}),
        );
        base_rows.push(json!({"id": format!("d-{t:05}"), "dataset_id": ds, "input": t}));
        base_rows.push(json!({"id": format!("e-{t:05}"), "dataset_id": ds, "input": -(t as i64)}));
        base_rows.push(json!({"id": format!("f-{t:05}"), "dataset_id": ds, "input": t + TRACES}));
    }
    for chunk in rows.chunks(1_000).chain(base_rows.chunks(1_000)) {
        server
            .ok("POST", "/logs3", Some(json!({"rows": chunk})))
            .await;
    }
    let summary = server
        .ok(
            "GET",
            &format!("/v1/experiment/{exp}/summarize?summarize_scores=true&comparison_experiment_id={base}"),
            None,
        )
        .await;
    let s = &summary["scores"]["s"];
    let mean = sum / TRACES as f64;
    assert!(
        (s["score"].as_f64().unwrap() - mean).abs() < 1e-9,
        "{summary}"
    );
    assert!(
        (s["diff"].as_f64().unwrap() - (mean - 0.5)).abs() < 1e-9,
        "{summary}"
    );
    assert_eq!(
        (s["improvements"].as_u64(), s["regressions"].as_u64()),
        (Some(better as u64), Some(worse as u64)),
        "{summary}"
    );
    assert_eq!(summary["metrics"]["duration"]["metric"].as_f64(), Some(1.0));
    let counted = server
        .ok(
            "GET",
            &format!("/v1/dataset/{ds}/summarize?summarize_data=true"),
            None,
        )
        .await;
    assert_eq!(
        counted["data_summary"]["total_records"],
        3 * TRACES,
        "{counted}"
    );
}

mod run {
    use super::backends;
    on_all_backends!(
        authentication,
        bad_input,
        isolation,
        row_semantics,
        concurrent_writes,
        rest_objects,
        summaries_of_large_objects
    );
}
