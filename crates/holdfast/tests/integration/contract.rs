//! The API contract: `/openapi.json` describes every route the server serves and nothing
//! else, and errors carry codes from the table with the offending field named.

use crate::harness::{Backend, Server, assert_error, backends};
use serde_json::{Value, json};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Fills `{param}`s with a value no object has.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push_str("00000000-0000-4000-8000-000000000000");
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

async fn openapi_describes_every_route(backend: Backend) {
    let server = Server::start(backend).await;
    // Served without a key.
    let (status, doc) = server.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 40, "{}", paths.len());
    for (path, item) in paths {
        let documented: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .filter(|m| METHODS.contains(&m.as_str()))
            .collect();
        assert!(!documented.is_empty(), "{path}");
        for method in METHODS {
            let (status, body) = server
                .call(method, &concrete(path), Some(&server.key), None)
                .await;
            let route_missing = status == 404
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("route"));
            if documented.iter().any(|m| m == method) {
                // Every documented operation is served (it may refuse this request, but the
                // route exists) and documents its errors.
                assert!(
                    !route_missing && status != 405,
                    "{method} {path}: {status} {body}"
                );
                let op = &item[method.to_lowercase()];
                assert!(op["responses"]["default"].is_object(), "{method} {path}");
                assert!(op["responses"]["200"].is_object(), "{method} {path}");
                assert!(op["operationId"].is_string(), "{method} {path}");
            } else {
                // And the server takes no method on the path that is not documented.
                assert_eq!(status, 405, "{method} {path} is served but not documented");
            }
        }
    }
    // Every route in the code is in the document: routes are registered only through the
    // documented router, and this finds any registered around it.
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/../server/src");
    let mut stack = vec![std::path::PathBuf::from(src)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            // The HTML pages (sign-in, account, and the web UI under `app/`) are not the API;
            // they are checked below.
            if p.file_name().is_some_and(|n| n == "pages.rs")
                || p.parent().is_some_and(|d| d.ends_with("app"))
                || p.extension().is_some_and(|e| e == "css" || e == "js")
            {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (n, line) in lines.iter().enumerate() {
                // The one plain route is the document itself.
                let next = lines.get(n + 1).copied().unwrap_or_default();
                let is_doc = format!("{line}{next}").contains("\"/openapi.json\"");
                let undocumented = line.contains(".route(") && !is_doc
                    || line.contains("Router::new()") && !line.contains("OpenApiRouter::new()");
                assert!(
                    !undocumented,
                    "{}:{}: a route registered outside the OpenAPI router: {line}",
                    p.display(),
                    n + 1
                );
            }
        }
    }
    // The pages are HTML under a policy that allows no script but the server's own, and
    // none is an API path.
    for page in [
        "/login",
        "/account",
        "/auth/set-password",
        "/app",
        "/app/default/keys",
    ] {
        assert!(!paths.contains_key(page), "{page}");
        let resp = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}{page}", server.url))
            .send()
            .await
            .unwrap();
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.starts_with("default-src 'none'") && !csp.contains("unsafe"),
            "{csp}"
        );
        if resp.status() == 303 {
            let to = h["location"].to_str().unwrap();
            assert!(
                to == "/login" || to.starts_with("/login?next=%2Fapp"),
                "{page}: {to}"
            );
        } else {
            assert_eq!(resp.status(), 200, "{page}");
            assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        }
    }
    // Shared schemas are present.
    for name in ["ErrorBody", "ErrorCode", "Project", "NamedObject"] {
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
    let codes = doc["components"]["schemas"]["ErrorCode"].to_string();
    for code in [
        "invalid_field",
        "body_too_large",
        "key_expired",
        "rate_limited",
    ] {
        assert!(codes.contains(code), "{code}");
    }
}

async fn errors_name_the_field(backend: Backend) {
    let server = Server::start(backend).await;
    let key = Some(server.key.as_str());
    // A wrong type in the body names the field.
    let (s, b) = server
        .call("POST", "/v1/project", key, Some(json!({"name": 5})))
        .await;
    assert_error(s, &b, 400, "invalid_field");
    assert_eq!(b["error"]["field"], "name", "{b}");
    // A missing field is named too.
    let (s, b) = server
        .call("POST", "/api/base_experiment/get_id", key, Some(json!({})))
        .await;
    assert_error(s, &b, 400, "invalid_field");
    assert_eq!(b["error"]["field"], "id", "{b}");
    // Nested: the path to the value.
    let ds = server.new_dataset("contract", "d").await;
    let (s, b) = server
        .call(
            "POST",
            &format!("/v1/dataset/{ds}/insert"),
            key,
            Some(json!({"events": [{"input": 1}, 7]})),
        )
        .await;
    assert_error(s, &b, 400, "invalid_field");
    assert_eq!(b["error"]["field"], "events[1]", "{b}");
    // A query clause that is not applied is refused, never dropped; a malformed one is named.
    for clause in ["order_by", "measures", "dimensions"] {
        let mut query = json!({"from": {"op": "function", "name": {"op": "ident", "name": ["dataset"]},
                                        "args": [{"op": "literal", "value": ds}]}});
        query[clause] = json!([{"expr": {"op": "ident", "name": ["created"]}}]);
        let (s, b) = server
            .call("POST", "/btql", key, Some(json!({"query": query})))
            .await;
        assert_error(s, &b, 400, "invalid_field");
        assert_eq!(b["error"]["field"], format!("query.{clause}"), "{b}");
    }
    // A bad query parameter.
    let (s, b) = server
        .call("GET", "/v1/project?limit=many", key, None)
        .await;
    assert_error(s, &b, 400, "invalid_query");
    assert_eq!(b["error"]["field"], "limit", "{b}");
    let (s, b) = server.call("GET", "/v1/project?limit=0", key, None).await;
    assert_error(s, &b, 400, "invalid_query");
    // Not JSON at all.
    let (s, b) = server
        .raw("POST", "/v1/project", key, b"{\"name\":".to_vec())
        .await;
    assert_error(s, &b, 400, "invalid_json");
    // Unknown fields, as newer SDKs send, are accepted.
    let (s, b) = server
        .call(
            "POST",
            "/v1/project",
            key,
            Some(json!({"name": "contract", "a_field_from_the_future": {"x": 1}})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    // An expired key has its own code.
    let created = server
        .ok(
            "POST",
            "/v1/api_key",
            Some(json!({"name": "brief", "expires_at": crate::access::in_seconds(2)})),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (s, b) = server
        .call("GET", "/v1/project", created["key"].as_str(), None)
        .await;
    assert_error(s, &b, 401, "key_expired");
    // A browser preflight from a foreign origin.
    let r = server
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/project", server.url),
        )
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "GET")
        .header("x-request-id", "cors-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "cors_origin_not_allowed", "{b}");
    assert_eq!(b["error"]["request_id"], "cors-1", "{b}");
}

/// Lists read only where the caller may read, and page through exactly what they may see.
async fn lists_page_through_what_may_be_read(backend: Backend) {
    let server = Server::start(backend).await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let mut projects = Vec::new();
    let mut experiments = Vec::new();
    for p in ["pa", "pb", "pc"] {
        let pid = id(&server
            .ok("POST", "/v1/project", Some(json!({"name": p})))
            .await);
        for n in 1..=3 {
            let e = server
                .ok(
                    "POST",
                    "/v1/experiment",
                    Some(json!({"project_id": pid, "name": format!("{p}-e{n}")})),
                )
                .await;
            experiments.push((pid.clone(), id(&e), format!("{p}-e{n}")));
        }
        projects.push(pid);
    }
    server
        .ok("POST", "/v1/group", Some(json!({"name": "nothing-yet"})))
        .await;
    let key = server.member_key("lim@example.test", "nothing-yet");
    let users = server.ok("GET", "/v1/user", None).await;
    let lim = users["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "lim@example.test")
        .map(id)
        .unwrap();
    let names = |v: &Value| -> Vec<String> {
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let list = |path: String| {
        let key = key.clone();
        let server = &server;
        async move {
            let (s, b) = server.call("GET", &path, Some(&key), None).await;
            assert_eq!(s, 200, "{path}: {b}");
            b
        }
    };
    // No grant: nothing.
    assert!(names(&list("/v1/experiment".into()).await).is_empty());
    // Read on project B, and on one experiment of C.
    let (pb, c2) = (projects[1].clone(), experiments[7].1.clone());
    for (kind, object) in [("project", &pb), ("experiment", &c2)] {
        server
            .ok(
                "POST",
                "/v1/acl",
                Some(
                    json!({"object_type": kind, "object_id": object, "user_id": lim,
                            "permission": "read"}),
                ),
            )
            .await;
    }
    let all = names(&list("/v1/experiment".into()).await);
    assert_eq!(all, ["pc-e2", "pb-e3", "pb-e2", "pb-e1"], "newest first");
    // A page at a time, each page the next visible one.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/experiment?limit=1&starting_after={a}"),
            None => "/v1/experiment?limit=1".into(),
        };
        let page = list(path).await;
        let objects = page["objects"].as_array().unwrap().clone();
        let Some(last) = objects.last() else { break };
        assert_eq!(objects.len(), 1);
        paged.push(last["name"].as_str().unwrap().to_owned());
        after = Some(id(last));
    }
    assert_eq!(paged, all);
    // An experiment's grant does not list its project.
    assert_eq!(names(&list("/v1/project".into()).await), ["pb"]);
}

/// `POST /insert-functions`: `if_exists` decides what an existing slug gets, and a request
/// refused for one definition stores none of them.
async fn insert_functions(backend: Backend) {
    let server = Server::start(backend).await;
    let key = Some(server.key.as_str());
    let p = server
        .ok("POST", "/v1/project", Some(json!({"name": "published"})))
        .await;
    let def = |slug: &str, text: &str, if_exists: &str| {
        json!({"project_id": p["id"], "name": slug, "slug": slug, "function_data": {"type": "prompt"},
               "prompt_data": {"prompt": {"type": "chat", "messages": [{"role": "user", "content": text}]}},
               "if_exists": if_exists})
    };
    let listed = |slug: &str| {
        format!(
            "/v1/prompt?project_id={}&slug={slug}",
            p["id"].as_str().unwrap()
        )
    };
    let r = server
        .ok(
            "POST",
            "/insert-functions",
            Some(json!({"functions": [def("one", "v1", "error")]})),
        )
        .await;
    assert_eq!(r["functions"][0]["found_existing"], false, "{r}");
    // Existing slug with `error`, beside a new one: 409, and the new one is not stored.
    let (s, b) = server
        .call(
            "POST",
            "/insert-functions",
            key,
            Some(json!({"functions": [def("two", "x", "error"), def("one", "v2", "error")]})),
        )
        .await;
    assert_error(s, &b, 409, "conflict");
    let two = server.ok("GET", &listed("two"), None).await;
    assert_eq!(two["objects"].as_array().unwrap().len(), 0, "{two}");
    // `ignore` keeps the stored one; `replace` stores a new version.
    for (mode, expect) in [("ignore", "v1"), ("replace", "v3")] {
        let r = server
            .ok(
                "POST",
                "/insert-functions",
                Some(json!({"functions": [def("one", "v3", mode)]})),
            )
            .await;
        assert_eq!(r["functions"][0]["found_existing"], true, "{r}");
        let one = server.ok("GET", &listed("one"), None).await;
        assert_eq!(
            one["objects"][0]["prompt_data"]["prompt"]["messages"][0]["content"], expect,
            "{mode}: {one}"
        );
    }
    // Code bundles are refused, naming the field.
    let mut code = def("three", "x", "error");
    code["function_data"] = json!({"type": "code", "data": {"type": "bundle"}});
    let (s, b) = server
        .call(
            "POST",
            "/insert-functions",
            key,
            Some(json!({"functions": [code]})),
        )
        .await;
    assert_error(s, &b, 400, "invalid_field");
    assert_eq!(
        b["error"]["field"], "functions[0].function_data.type",
        "{b}"
    );
}

/// `POST /btql` with a text query, as the owner.
async fn btql_text(server: &Server, text: &str) -> (u16, Value) {
    server
        .call(
            "POST",
            "/btql",
            Some(&server.key),
            Some(json!({ "query": text })),
        )
        .await
}

/// `/btql` answers text queries (BTQL pipe syntax and SQL) as it answers the structured form,
/// and a malformed or unsupported query is a 400 that says where and what.
async fn text_queries(backend: Backend) {
    let server = Server::start(backend).await;
    let ds = server.new_dataset("text-queries", "d").await;
    let ds = ds.as_str();
    let events: Vec<Value> = (0..6)
        .map(|i| {
            json!({"id": format!("r{i}"), "input": format!("q{i}"), "expected": i,
                   "tags": [format!("t{}", i % 2)],
                   "metadata": {"user_id": format!("u-{}", i % 3), "n": i}})
        })
        .collect();
    server
        .ok(
            "POST",
            &format!("/v1/dataset/{ds}/insert"),
            Some(json!({"events": events})),
        )
        .await;
    let ids = |reply: &Value| -> Vec<String> {
        let mut ids: Vec<String> = reply["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let structured = server
        .ok(
            "POST",
            "/btql",
            Some(json!({"query": {
                "from": {"op": "function", "name": {"op": "ident", "name": ["dataset"]},
                         "args": [{"op": "literal", "value": ds}]},
                "filter": {"op": "and", "children": [
                    {"op": "eq", "left": {"op": "ident", "name": ["metadata", "user_id"]},
                     "right": {"op": "literal", "value": "u-1"}},
                    {"op": "gt", "left": {"op": "ident", "name": ["metadata", "n"]},
                     "right": {"op": "literal", "value": 0}}]}}})),
        )
        .await;
    assert_eq!(ids(&structured), ["r1", "r4"]);
    for text in [
        format!("SELECT * FROM dataset('{ds}') WHERE metadata.user_id = 'u-1' AND metadata.n > 0"),
        format!(
            "select: * | from: dataset('{ds}') spans | filter: metadata.user_id = 'u-1' and metadata.n > 0"
        ),
        format!(
            "from: dataset('{ds}') | filter: not (metadata.user_id != 'u-1' or metadata.n <= 0)"
        ),
    ] {
        let reply = server
            .ok("POST", "/btql", Some(json!({"query": text})))
            .await;
        assert_eq!(ids(&reply), ["r1", "r4"], "{text}");
    }
    for (filter, want) in [
        ("tags includes 't1'", vec!["r1", "r3", "r5"]),
        (
            "metadata.user_id IN ('u-0', 'u-2') AND metadata.n NOT IN (0)",
            vec!["r2", "r3", "r5"],
        ),
        (
            "input contains '4' or tags not contains 't0'",
            vec!["r1", "r3", "r4", "r5"],
        ),
        ("metadata.user_id = \"u-1\"", vec!["r1", "r4"]),
    ] {
        let text = format!("SELECT * FROM dataset('{ds}') WHERE {filter}");
        let reply = server
            .ok("POST", "/btql", Some(json!({"query": text})))
            .await;
        assert_eq!(ids(&reply), want, "{text}");
    }
    // Paging through a text query: LIMIT, then OFFSET with the cursor it returned.
    let first = server
        .ok(
            "POST",
            "/btql",
            Some(json!({"query": format!("SELECT * FROM dataset('{ds}') LIMIT 4")})),
        )
        .await;
    let cursor = first["cursor"].as_str().unwrap();
    let rest = server
        .ok(
            "POST",
            "/btql",
            Some(json!({"query": format!("SELECT * FROM dataset('{ds}') LIMIT 4 OFFSET '{cursor}'")})),
        )
        .await;
    let mut all = ids(&first);
    all.extend(ids(&rest));
    all.sort();
    assert_eq!(all, ["r0", "r1", "r2", "r3", "r4", "r5"]);
    // Hostile literals and names are data: no rows, no error from the database.
    let hostile = server
        .ok(
            "POST",
            "/btql",
            Some(json!({"query": format!(
                "SELECT * FROM dataset('{ds}') WHERE \"metadata\".\"user_id'; DROP TABLE rows; --\" = 'x'' OR ''1''=''1'"
            )})),
        )
        .await;
    assert_eq!(ids(&hostile), Vec::<String>::new());
    // Errors: where, and what was expected or is not supported.
    for (text, says) in [
        (
            format!("SELECT * FROM dataset('{ds}')\nWHERE metadata.n >"),
            "line 2, column 19",
        ),
        (
            format!("SELECT * FROM dataset('{ds}') GROUP BY created"),
            "SELECT * cannot be grouped",
        ),
        (
            format!("select: * | from: dataset('{ds}') | order: created"),
            "`order` clause",
        ),
        (
            "SELECT * FROM dataset('nope') WHERE a = 1; DELETE FROM rows".to_owned(),
            "unexpected character ';'",
        ),
    ] {
        let (s, b) = btql_text(&server, &text).await;
        assert_error(s, &b, 400, "invalid_field");
        assert_eq!(b["error"]["field"], "query", "{b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(says),
            "{text}: {b}"
        );
    }
    // A missing object is a 404, as for the structured form.
    let (s, b) = btql_text(
        &server,
        "SELECT * FROM dataset('00000000-0000-0000-0000-000000000000')",
    )
    .await;
    assert_error(s, &b, 404, "not_found");
}

/// A query that reads past `query_timeout_ms` is stopped with `query_timeout`, and the server
/// goes on answering.
async fn queries_have_a_time_limit(backend: Backend) {
    let server = Server::start_with(backend, &[("HOLDFAST_QUERY_TIMEOUT_MS", "1")]).await;
    let ds = server.new_dataset("slow", "d").await;
    let events: Vec<Value> = (0..5500)
        .map(|i| json!({"id": format!("r{i:04}"), "input": i}))
        .collect();
    server
        .ok(
            "POST",
            &format!("/v1/dataset/{ds}/insert"),
            Some(json!({"events": events})),
        )
        .await;
    // Nothing matches: pages of 1,000 rows are read, far past 1 ms.
    let query = format!("SELECT * FROM dataset('{ds}') WHERE input = 'none' LIMIT 1");
    let (s, b) = btql_text(&server, &query).await;
    assert_error(s, &b, 422, "query_timeout");
    // So is a summary that reads every row of the object (in pages of 5,000: it is checked
    // between pages).
    let (s, b) = server
        .call(
            "GET",
            &format!("/v1/dataset/{ds}/summarize?summarize_data=true"),
            Some(&server.key),
            None,
        )
        .await;
    assert_error(s, &b, 422, "query_timeout");
    // An organization's retention preview counts under the same limit, however many
    // projects and objects it goes through.
    for i in 0..20 {
        server.new_dataset(&format!("many-{i}"), "d").await;
    }
    let (s, b) = server
        .call(
            "POST",
            "/v1/org_automation/preview",
            Some(&server.key),
            Some(
                json!({"config": {"event_type": "retention", "object_type": "dataset",
                "retention_days": 1}}),
            ),
        )
        .await;
    assert_error(s, &b, 422, "query_timeout");
    let (s, _) = server.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
    // A query that fills its page at once is not affected.
    let first = server
        .ok(
            "POST",
            "/btql",
            Some(json!({"query": format!("SELECT * FROM dataset('{ds}') LIMIT 5")})),
        )
        .await;
    assert_eq!(first["data"].as_array().unwrap().len(), 5);
}

mod run {
    use super::backends;
    on_all_backends!(
        queries_have_a_time_limit,
        text_queries,
        insert_functions,
        openapi_describes_every_route,
        errors_name_the_field,
        lists_page_through_what_may_be_read
    );
}

/// Requests schemathesis must send for a run to count.
const SCHEMATHESIS_MIN_REQUESTS: u64 = 5000;

/// Schemathesis (PyPI, pinned in `compat/schemathesis-requirements.txt`) generates requests
/// from `/openapi.json`, valid and invalid, and checks every answer: no 5xx, every status and
/// content type documented, every body valid against its schema.
async fn schemathesis_finds_nothing(backend: Backend) {
    let _alone = crate::harness::HEAVY.lock().await;
    let server = Server::start(backend).await;
    // Some objects, so that lists and names have something to find.
    let p = server
        .ok("POST", "/v1/project", Some(json!({"name": "fuzzed"})))
        .await;
    for kind in ["experiment", "dataset"] {
        server
            .ok(
                "POST",
                &format!("/v1/{kind}"),
                Some(json!({"project_id": p["id"], "name": kind})),
            )
            .await;
    }
    let st = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../compat/.schemathesis-venv/bin/st"
    );
    let report = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(st)
        .args(["run", &format!("{}/openapi.json", server.url)])
        .args(["-H", &format!("Authorization: Bearer {}", server.key)])
        .args(["--max-examples", "50"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--request-timeout", "30", "--max-failures", "50"])
        .args(["--no-color", "--output-truncate", "false"])
        .args(["--generation-database", "none"])
        .arg("--report-dir")
        .arg(report.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {st} (run ./scripts/test.sh to install schemathesis): {e}")
        });
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    // "Test cases:\n  N generated, N passed"
    let generated: u64 = text
        .lines()
        .find_map(|l| {
            let l = l.trim();
            l.split_once(" generated, ")
                .and_then(|(n, rest)| rest.ends_with(" passed").then(|| n.parse().ok())?)
        })
        .unwrap_or_else(|| panic!("no test-case count in:\n{text}"));
    assert!(
        generated >= SCHEMATHESIS_MIN_REQUESTS,
        "schemathesis sent {generated} requests; at least {SCHEMATHESIS_MIN_REQUESTS} are \
         needed:\n{text}"
    );
    println!("schemathesis ({backend:?}): {generated} requests, 0 failures");
}

mod fuzz {
    use super::backends;
    on_all_backends!(schemathesis_finds_nothing);
}
