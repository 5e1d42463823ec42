//! Access control over HTTP: the route × principal matrix, key scope and rotation, members
//! and groups, and the audit log with its tamper check.

use crate::harness::{Backend, Server, assert_error, backends};
use serde_json::{Value, json};

/// The principals of the matrix, in the order of each case's expectations.
const WHO: [&str; 11] = [
    "owner", "engineer", "viewer", "custom", "limited", "ingest", "read", "expired", "revoked",
    "foreign", "nobody",
];

/// Browser sessions of the Engineer: with its CSRF token, without one, and expired. They
/// come after `WHO`; their expectations follow from the Engineer's and from no credential's.
const SESSIONS: [&str; 3] = ["session", "session-no-csrf", "session-expired"];

/// Markers written into project A's and project B's data: a response to a principal that may
/// not read that project must never contain its marker.
const MARK_A: &str = "marker-alpha-7f3a";
const MARK_B: &str = "marker-bravo-91c2";

/// Who may read project A's data and project B's data.
fn may_see(who: &str, mark: &str) -> bool {
    match mark {
        MARK_A => matches!(
            who,
            "owner"
                | "engineer"
                | "viewer"
                | "custom"
                | "limited"
                | "read"
                | "session"
                | "session-no-csrf"
        ),
        _ => matches!(
            who,
            "owner" | "engineer" | "viewer" | "read" | "session" | "session-no-csrf"
        ),
    }
}

struct World {
    keys: Vec<Option<String>>,
    /// The headers of each of [`SESSIONS`].
    sessions: Vec<Vec<(String, String)>>,
    pa: String,
    pb: String,
    ea: String,
    eb: String,
    da: String,
    db: String,
    prompt_a: String,
    viewer_id: String,
    org_id: String,
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

#[allow(clippy::disallowed_methods)]
pub fn in_seconds(s: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(s);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn world(server: &Server) -> World {
    let owner = server.key.clone();
    let mk = |name: &str, mark: &str| json!({"name": name, "description": mark});
    let pa = id(&server
        .ok("POST", "/v1/project", Some(mk("alpha", MARK_A)))
        .await);
    let pb = id(&server
        .ok("POST", "/v1/project", Some(mk("bravo", MARK_B)))
        .await);
    let obj = |kind: &str, p: &str, mark: &str| {
        let (kind, p, mark) = (kind.to_owned(), p.to_owned(), mark.to_owned());
        async move {
            id(&server
                .ok(
                    "POST",
                    &format!("/v1/{kind}"),
                    Some(json!({"project_id": p, "name": format!("{kind}-{mark}"), "description": mark})),
                )
                .await)
        }
    };
    let ea = obj("experiment", &pa, MARK_A).await;
    let eb = obj("experiment", &pb, MARK_B).await;
    let da = obj("dataset", &pa, MARK_A).await;
    let db = obj("dataset", &pb, MARK_B).await;
    let prompt_a = id(&server
        .ok(
            "POST",
            "/v1/prompt",
            Some(json!({"project_id": pa, "slug": "greet", "name": MARK_A,
                        "prompt_data": {"prompt": {"type": "chat", "messages": [{"role": "user", "content": MARK_A}]}}})),
        )
        .await);
    let rows = |target: (&str, &str), mark: &str| {
        let mut row = json!({"id": format!("row-{mark}"), "input": mark, "output": mark});
        row[target.0] = json!(target.1);
        row
    };
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": [
                rows(("dataset_id", &da), MARK_A), rows(("dataset_id", &db), MARK_B),
                rows(("experiment_id", &ea), MARK_A), rows(("experiment_id", &eb), MARK_B),
                {"id": "log-a", "project_id": pa, "log_id": "g", "input": MARK_A,
                 "output": {"type": "braintrust_attachment", "key": "att-1", "filename": "a.txt"}},
                {"id": "log-b", "project_id": pb, "log_id": "g", "input": MARK_B,
                 "output": {"type": "braintrust_attachment", "key": "att-b", "filename": "b.txt"}},
            ]})),
        )
        .await;
    // Project B's attachment, registered by the owner: it belongs to B's logs.
    server
        .ok(
            "POST",
            "/attachment",
            Some(json!({"key": "att-b", "filename": "b.txt", "content_type": "text/plain"})),
        )
        .await;

    let user = |email: &str, group: &str| server.member_key(email, group);
    let engineer = user("eng@example.test", "Engineers");
    let viewer = user("view@example.test", "Viewers");
    // A custom group granted the Engineer role on project A only.
    let team = id(&server
        .ok("POST", "/v1/group", Some(json!({"name": "team-alpha"})))
        .await);
    let custom = user("contractor@example.test", "team-alpha");
    server
        .ok(
            "POST",
            "/v1/acl",
            Some(
                json!({"object_type": "project", "object_id": pa, "group_id": team,
                        "role_id": "00000000-0000-4000-8000-0000000000a2"}),
            ),
        )
        .await;
    let users = server.ok("GET", "/v1/user", None).await;
    let viewer_id = users["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "view@example.test")
        .map(id)
        .unwrap();
    let key = |body: Value| async move {
        server.ok("POST", "/v1/api_key", Some(body)).await["key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let limited = key(json!({"name": "limited", "project_ids": [pa]})).await;
    let ingest = key(json!({"name": "ingest", "capability": "ingest"})).await;
    let read = key(json!({"name": "read", "capability": "read"})).await;
    let expired = key(json!({"name": "expiring", "expires_at": in_seconds(2)})).await;
    let revoked_reply = server
        .ok("POST", "/v1/api_key", Some(json!({"name": "revoked"})))
        .await;
    server
        .ok(
            "DELETE",
            &format!("/v1/api_key/{}", id(&revoked_reply)),
            None,
        )
        .await;
    let revoked = revoked_reply["key"].as_str().unwrap().to_owned();
    let foreign = server.cli_line(&["org", "create", "other", "--owner", "eve@other.test"]);
    let sessions = engineer_sessions(server).await;
    let org_id = server.ok("GET", "/v1/organization", None).await["objects"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Let the expiring key expire.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    World {
        keys: vec![
            Some(owner),
            Some(engineer),
            Some(viewer),
            Some(custom),
            Some(limited),
            Some(ingest),
            Some(read),
            Some(expired),
            Some(revoked),
            Some(foreign),
            None,
        ],
        sessions,
        pa,
        pb,
        ea,
        eb,
        da,
        db,
        prompt_a,
        viewer_id,
        org_id,
    }
}

/// The Engineer signs in twice with a password (set through an invite link); one session is
/// then made to have expired. Headers of a request with the session and its CSRF token,
/// with the session only, and with the expired session.
async fn engineer_sessions(server: &Server) -> Vec<Vec<(String, String)>> {
    let link = server.cli_line(&[
        "user",
        "invite",
        "--org",
        "default",
        "--email",
        "eng@example.test",
        "--group",
        "Engineers",
    ]);
    let token = link.rsplit_once("#token=").unwrap().1;
    let password = "matrix password 1";
    let (s, b) = server
        .call(
            "POST",
            "/auth/password",
            None,
            Some(json!({"token": token, "password": password})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let mut signed_in = Vec::new();
    for _ in 0..2 {
        let resp = crate::harness::client()
            .post(format!("{}/auth/login", server.url))
            .json(&json!({"email": "eng@example.test", "password": password}))
            .send()
            .await
            .unwrap();
        let cookie = resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let body: Value = resp.json().await.unwrap();
        signed_in.push((cookie, body));
    }
    let expired = &signed_in[1];
    server
        .execute_sql(&format!(
            "UPDATE sessions SET expires = '2000-01-01T00:00:00.000000Z' WHERE id = '{}'",
            expired.1["session_id"].as_str().unwrap()
        ))
        .await;
    let (cookie, body) = &signed_in[0];
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let jar = |c: &str| ("cookie".to_owned(), c.to_owned());
    vec![
        vec![jar(cookie), ("x-csrf-token".to_owned(), csrf)],
        vec![jar(cookie)],
        vec![jar(&expired.0)],
    ]
}

/// What each of [`SESSIONS`] must get, from the Engineer's expectation and no credential's:
/// a session acts exactly as its user; without the CSRF token a request that may change
/// something is refused (403) where a credential is needed; an expired session is no
/// credential.
fn session_expectations(method: &str, expect: &[u16; 11]) -> [u16; 3] {
    let (engineer, nobody) = (expect[1], expect[10]);
    let safe = matches!(method, "GET" | "HEAD" | "OPTIONS");
    let no_csrf = match (safe, nobody) {
        (true, _) => engineer,
        (false, 401) => 403,
        (false, public) => public,
    };
    [engineer, no_csrf, nobody]
}

/// A target made afresh (with the owner key) before each principal's call, for routes that
/// consume what they act on.
#[derive(Clone, Copy)]
enum Fresh {
    None,
    /// A unique name.
    Unique,
    DatasetA,
    DatasetB,
    /// Deleted just before the call.
    DeletedDatasetA,
    DeletedDatasetB,
    DeletedProject,
    Group,
    AclA,
}

struct Case {
    method: &'static str,
    path: String,
    body: Option<Value>,
    fresh: Fresh,
    /// One status per principal, in `WHO` order.
    expect: [u16; 11],
}

fn parse(expect: &str) -> [u16; 11] {
    let v: Vec<u16> = expect
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    v.try_into().unwrap()
}

fn cases(w: &World) -> Vec<Case> {
    let (pa, pb, ea, eb, da, db, pr) = (&w.pa, &w.pb, &w.ea, &w.eb, &w.da, &w.db, &w.prompt_a);
    // owner eng view custom limited ingest read expired revoked foreign nobody
    let read_a = "200 200 200 200 200 404 200 401 401 404 401";
    let read_b = "200 200 200 404 404 404 200 401 401 404 401";
    let write_rows_a = "200 200 403 200 200 200 403 401 401 404 401";
    let write_rows_b = "200 200 403 404 404 200 403 401 401 404 401";
    let change_a = "200 200 403 200 200 404 403 401 401 404 401";
    let change_b = "200 200 403 404 404 404 403 401 401 404 401";
    let create_in_a = "200 200 403 200 200 200 403 401 401 404 401";
    let create_in_b = "200 200 403 404 404 200 403 401 401 404 401";
    let listing = "200 200 200 200 200 200 200 401 401 200 401";
    let org_admin_read = "200 403 403 403 403 403 200 401 401 200 401";
    let org_admin_write = "200 403 403 403 403 403 403 401 401 200 401";
    let member_meta = "200 200 200 200 200 403 200 401 401 200 401";
    let anyone = "200 200 200 200 200 200 200 401 401 200 401";
    let fetch = json!({"limit": 10});
    let btql = |kind: &str, id: &str| {
        json!({"query": {"from": {"op": "function", "name": {"op": "ident", "name": [kind]},
                "args": [{"op": "literal", "value": id}]}, "limit": 10}})
    };
    let row =
        |field: &str, id: &str| json!({"rows": [{"id": "matrix-row", field: id, "input": "x"}]});
    let mut c = vec![];
    let mut add =
        |method: &'static str, path: String, body: Option<Value>, fresh: Fresh, e: &str| {
            c.push(Case {
                method,
                path,
                body,
                fresh,
                expect: parse(e),
            });
        };
    // SDK routes.
    add(
        "POST",
        "/api/apikey/login".into(),
        None,
        Fresh::None,
        anyone,
    );
    add("GET", "/ping".into(), None, Fresh::None, anyone);
    add(
        "POST",
        "/logs3".into(),
        Some(row("dataset_id", da)),
        Fresh::None,
        write_rows_a,
    );
    add(
        "POST",
        "/logs3".into(),
        Some(row("dataset_id", db)),
        Fresh::None,
        write_rows_b,
    );
    add(
        "POST",
        "/logs3".into(),
        Some(json!({"rows": [{"id": "l", "project_id": pa, "log_id": "g"}]})),
        Fresh::None,
        write_rows_a,
    );
    add(
        "POST",
        "/logs3".into(),
        Some(row("experiment_id", eb)),
        Fresh::None,
        write_rows_b,
    );
    add(
        "POST",
        "/btql".into(),
        Some(btql("dataset", da)),
        Fresh::None,
        read_a,
    );
    add(
        "POST",
        "/btql".into(),
        Some(btql("experiment", eb)),
        Fresh::None,
        read_b,
    );
    add(
        "POST",
        "/btql".into(),
        Some(btql("project_logs", pa)),
        Fresh::None,
        read_a,
    );
    // Text queries are decided as the structured form is.
    let text = |q: String| Some(json!({ "query": q }));
    add(
        "POST",
        "/btql".into(),
        text(format!(
            "SELECT * FROM dataset('{da}') WHERE input IS NOT NULL LIMIT 10"
        )),
        Fresh::None,
        read_a,
    );
    add(
        "POST",
        "/btql".into(),
        text(format!("select: * | from: experiment('{eb}') | limit: 10")),
        Fresh::None,
        read_b,
    );
    add(
        "POST",
        "/btql".into(),
        text(format!(
            "SELECT * FROM project_logs('{pa}') WHERE tags INCLUDES 'x'"
        )),
        Fresh::None,
        read_a,
    );
    // Registering an existing project needs read, or create (an ingest key); the foreign
    // owner gets a project of their own.
    add(
        "POST",
        "/api/project/register".into(),
        Some(json!({"project_name": "alpha"})),
        Fresh::None,
        "200 200 200 200 200 200 200 401 401 200 401",
    );
    add(
        "POST",
        "/api/experiment/register".into(),
        Some(json!({"project_name": "alpha", "experiment_name": "reg"})),
        Fresh::None,
        "200 200 403 200 200 200 403 401 401 200 401",
    );
    add(
        "POST",
        "/api/dataset/register".into(),
        Some(json!({"project_name": "bravo", "dataset_name": "reg"})),
        Fresh::None,
        "200 200 403 404 404 200 403 401 401 200 401",
    );
    add(
        "POST",
        "/api/experiment/get".into(),
        Some(json!({"project_name": "alpha", "experiment_name": format!("experiment-{MARK_A}")})),
        Fresh::None,
        "200 200 200 200 200 404 200 401 401 200 401",
    );
    add(
        "POST",
        "/api/self/get_object_info".into(),
        Some(json!({"object_type": "dataset", "object_ids": [db]})),
        Fresh::None,
        read_b,
    );
    add(
        "POST",
        "/attachment".into(),
        Some(json!({"key": "att-1", "filename": "a.txt", "content_type": "text/plain"})),
        Fresh::None,
        "200 200 403 200 200 200 403 401 401 404 401",
    );
    // An attachment belongs to the object whose rows reference it: project B's attachment
    // is registered, read and updated only by those who may do so on B's logs.
    add(
        "POST",
        "/attachment".into(),
        Some(json!({"key": "att-b", "filename": "b.txt", "content_type": "text/html"})),
        Fresh::None,
        "200 200 403 404 404 200 403 401 401 404 401",
    );
    add(
        "GET",
        "/attachment?key=att-b".into(),
        None,
        Fresh::None,
        "200 200 200 404 404 404 200 401 401 404 401",
    );
    add(
        "POST",
        "/attachment/status".into(),
        Some(json!({"key": "att-b", "status": {"upload_status": "done"}})),
        Fresh::None,
        "200 200 403 404 404 200 403 401 401 404 401",
    );
    // Projects.
    add("GET", "/v1/project".into(), None, Fresh::None, listing);
    add(
        "GET",
        format!("/v1/project/{pa}"),
        None,
        Fresh::None,
        read_a,
    );
    add(
        "GET",
        format!("/v1/project/{pb}"),
        None,
        Fresh::None,
        read_b,
    );
    add(
        "POST",
        "/v1/project".into(),
        Some(json!({"name": "new-{fresh}"})),
        Fresh::Unique,
        "200 200 403 403 403 200 403 401 401 200 401",
    );
    // An existing name answers the project unchanged to those who may see it (an ingest key
    // gets ids and name only).
    add(
        "POST",
        "/v1/project".into(),
        Some(json!({"name": "alpha"})),
        Fresh::None,
        "200 200 200 200 200 200 200 401 401 200 401",
    );
    add(
        "POST",
        "/v1/project".into(),
        Some(json!({"name": "bravo"})),
        Fresh::None,
        "200 200 200 404 404 200 200 401 401 200 401",
    );
    add(
        "PATCH",
        format!("/v1/project/{pa}"),
        Some(json!({"description": MARK_A})),
        Fresh::None,
        change_a,
    );
    add(
        "PATCH",
        format!("/v1/project/{pb}"),
        Some(json!({"description": MARK_B})),
        Fresh::None,
        change_b,
    );
    // Experiments and datasets.
    add(
        "GET",
        format!("/v1/experiment?project_id={pa}"),
        None,
        Fresh::None,
        listing,
    );
    add("GET", "/v1/dataset".into(), None, Fresh::None, listing);
    add(
        "GET",
        format!("/v1/experiment/{ea}"),
        None,
        Fresh::None,
        read_a,
    );
    add(
        "GET",
        format!("/v1/experiment/{eb}"),
        None,
        Fresh::None,
        read_b,
    );
    add(
        "POST",
        format!("/v1/experiment/{ea}/fetch"),
        Some(fetch.clone()),
        Fresh::None,
        read_a,
    );
    add(
        "POST",
        format!("/v1/experiment/{eb}/fetch"),
        Some(fetch.clone()),
        Fresh::None,
        read_b,
    );
    add(
        "GET",
        format!("/v1/experiment/{ea}/summarize"),
        None,
        Fresh::None,
        read_a,
    );
    add(
        "POST",
        format!("/v1/dataset/{da}/fetch"),
        Some(fetch.clone()),
        Fresh::None,
        read_a,
    );
    add(
        "POST",
        format!("/v1/dataset/{db}/fetch"),
        Some(fetch.clone()),
        Fresh::None,
        read_b,
    );
    add(
        "GET",
        format!("/v1/dataset/{db}/summarize"),
        None,
        Fresh::None,
        read_b,
    );
    add(
        "POST",
        format!("/v1/project_logs/{pa}/fetch"),
        Some(fetch.clone()),
        Fresh::None,
        read_a,
    );
    add(
        "POST",
        format!("/v1/project_logs/{pb}/fetch"),
        Some(fetch.clone()),
        Fresh::None,
        read_b,
    );
    add(
        "POST",
        format!("/v1/dataset/{da}/insert"),
        Some(json!({"events": [{"id": "ins", "input": 1}]})),
        Fresh::None,
        write_rows_a,
    );
    add(
        "POST",
        format!("/v1/experiment/{eb}/insert"),
        Some(json!({"events": [{"id": "ins", "input": 1}]})),
        Fresh::None,
        write_rows_b,
    );
    add(
        "POST",
        format!("/v1/project_logs/{pb}/insert"),
        Some(json!({"events": [{"id": "ins", "input": 1}]})),
        Fresh::None,
        write_rows_b,
    );
    add(
        "POST",
        format!("/v1/experiment/{ea}/feedback"),
        Some(json!({"feedback": [{"id": format!("row-{MARK_A}"), "scores": {"s": 1}}]})),
        Fresh::None,
        write_rows_a,
    );
    add(
        "POST",
        "/v1/experiment".into(),
        Some(json!({"project_id": pa})),
        Fresh::None,
        create_in_a,
    );
    add(
        "POST",
        "/v1/dataset".into(),
        Some(json!({"project_id": pb, "name": "nd"})),
        Fresh::None,
        create_in_b,
    );
    add(
        "PATCH",
        format!("/v1/dataset/{da}"),
        Some(json!({"description": MARK_A})),
        Fresh::None,
        change_a,
    );
    add(
        "PATCH",
        format!("/v1/experiment/{eb}"),
        Some(json!({"description": MARK_B})),
        Fresh::None,
        change_b,
    );
    add(
        "DELETE",
        "/v1/dataset/{fresh}".into(),
        None,
        Fresh::DatasetA,
        change_a,
    );
    add(
        "DELETE",
        "/v1/dataset/{fresh}".into(),
        None,
        Fresh::DatasetB,
        change_b,
    );
    // Restoring what was deleted takes reading and deleting it.
    add(
        "POST",
        "/v1/dataset/{fresh}/restore".into(),
        None,
        Fresh::DeletedDatasetA,
        change_a,
    );
    add(
        "POST",
        "/v1/dataset/{fresh}/restore".into(),
        Some(json!({"preview": true})),
        Fresh::DeletedDatasetB,
        change_b,
    );
    // Restoring deleted rows takes writing them.
    add(
        "POST",
        format!("/v1/project_logs/{pb}/restore"),
        Some(json!({"preview": true})),
        Fresh::None,
        change_b,
    );
    // A project nobody was granted anything on: the organization's roles decide.
    add(
        "POST",
        "/v1/project/{fresh}/restore".into(),
        None,
        Fresh::DeletedProject,
        change_b,
    );
    // Prompts.
    add("GET", format!("/v1/prompt/{pr}"), None, Fresh::None, read_a);
    add(
        "GET",
        format!("/v1/prompt?project_id={pb}"),
        None,
        Fresh::None,
        listing,
    );
    add(
        "PATCH",
        format!("/v1/prompt/{pr}"),
        Some(json!({"description": MARK_A})),
        Fresh::None,
        change_a,
    );
    add(
        "POST",
        "/v1/prompt".into(),
        Some(json!({"project_id": pb, "slug": "s2", "name": "n"})),
        Fresh::None,
        // Prompts are not something an ingest key creates.
        "200 200 403 404 404 404 403 401 401 404 401",
    );
    // Administration.
    add("GET", "/v1/group".into(), None, Fresh::None, org_admin_read);
    add(
        "POST",
        "/v1/group".into(),
        Some(json!({"name": "g-new"})),
        Fresh::None,
        org_admin_write,
    );
    add(
        "PATCH",
        "/v1/group/{fresh}".into(),
        Some(json!({"description": "d"})),
        Fresh::Group,
        "200 403 403 403 403 403 403 401 401 404 401",
    );
    add(
        "DELETE",
        "/v1/group/{fresh}".into(),
        None,
        Fresh::Group,
        "200 403 403 403 403 403 403 401 401 404 401",
    );
    add("GET", "/v1/role".into(), None, Fresh::None, org_admin_read);
    add(
        "POST",
        "/v1/role".into(),
        Some(json!({"name": "r-new", "member_permissions": [{"permission": "read"}]})),
        Fresh::None,
        org_admin_write,
    );
    add(
        "GET",
        format!("/v1/acl?object_type=project&object_id={pa}"),
        None,
        Fresh::None,
        "200 403 403 403 200 404 403 401 401 404 401",
    );
    add(
        "GET",
        format!("/v1/acl?object_type=project&object_id={pb}"),
        None,
        Fresh::None,
        "200 403 403 404 404 404 403 401 401 404 401",
    );
    add(
        "GET",
        "/v1/acl/list_org".into(),
        None,
        Fresh::None,
        org_admin_write,
    );
    add(
        "POST",
        "/v1/acl".into(),
        Some(
            json!({"object_type": "dataset", "object_id": da, "user_id": w.viewer_id, "permission": "update"}),
        ),
        Fresh::None,
        "200 403 403 403 200 404 403 401 401 404 401",
    );
    add(
        "POST",
        "/v1/acl/batch_update".into(),
        Some(
            json!({"add_acls": [{"object_type": "project", "object_id": pb, "user_id": w.viewer_id, "permission": "update"}]}),
        ),
        Fresh::None,
        "200 403 403 404 404 404 403 401 401 404 401",
    );
    add(
        "DELETE",
        "/v1/acl/{fresh}".into(),
        None,
        Fresh::AclA,
        "200 403 403 403 200 404 403 401 401 404 401",
    );
    // Sign-in settings and identity-provider connections: Owners only, in their own
    // organization (the foreign Owner's is another).
    let owners_here = "200 403 403 403 403 403 403 401 401 404 401";
    let org = &w.org_id;
    add(
        "GET",
        format!("/v1/organization/{org}/oidc"),
        None,
        Fresh::None,
        owners_here,
    );
    add(
        "POST",
        format!("/v1/organization/{org}/oidc"),
        Some(
            json!({"name": "x", "preset": "custom", "issuer": "http://idp.example.com",
            "client_id": "c", "client_secret": "s"}),
        ),
        Fresh::None,
        "400 403 403 403 403 403 403 401 401 404 401",
    );
    add(
        "DELETE",
        format!("/v1/organization/{org}/oidc/no-such-connection"),
        None,
        Fresh::None,
        "404 403 403 403 403 403 403 401 401 404 401",
    );
    add(
        "GET",
        format!("/v1/organization/{org}/saml"),
        None,
        Fresh::None,
        owners_here,
    );
    add(
        "POST",
        format!("/v1/organization/{org}/saml"),
        Some(json!({"name": "x", "idp_metadata_xml": "<not-metadata/>"})),
        Fresh::None,
        "400 403 403 403 403 403 403 401 401 404 401",
    );
    add(
        "PUT",
        format!("/v1/organization/{org}/saml/no-such-connection"),
        Some(json!({"name": "x", "idp_metadata_xml": "<not-metadata/>"})),
        Fresh::None,
        "404 403 403 403 403 403 403 401 401 404 401",
    );
    add(
        "DELETE",
        format!("/v1/organization/{org}/saml/no-such-connection"),
        None,
        Fresh::None,
        "404 403 403 403 403 403 403 401 401 404 401",
    );
    add(
        "POST",
        format!("/v1/organization/{org}/password_link"),
        Some(json!({"user_id": "no-such-user"})),
        Fresh::None,
        "400 403 403 403 403 403 403 401 401 404 401",
    );
    add(
        "PUT",
        format!("/v1/organization/{org}/sign_in"),
        Some(json!({"password_login": true})),
        Fresh::None,
        owners_here,
    );
    add("GET", "/v1/user".into(), None, Fresh::None, member_meta);
    add("GET", "/v1/organization".into(), None, Fresh::None, anyone);
    add(
        "PATCH",
        "/v1/organization/members".into(),
        Some(json!({"invite_users": {"emails": ["new@example.test"], "group_names": ["Viewers"]}})),
        Fresh::None,
        org_admin_write,
    );
    add("GET", "/v1/api_key".into(), None, Fresh::None, member_meta);
    add(
        "POST",
        "/v1/api_key".into(),
        Some(json!({"name": "mine"})),
        Fresh::None,
        "200 200 200 200 200 403 403 401 401 200 401",
    );
    add(
        "GET",
        "/v1/service_token".into(),
        None,
        Fresh::None,
        org_admin_read,
    );
    add(
        "POST",
        "/v1/service_token".into(),
        Some(json!({"name": "robot", "group_names": ["Viewers"]})),
        Fresh::None,
        org_admin_write,
    );
    add(
        "GET",
        "/v1/ai_secret".into(),
        None,
        Fresh::None,
        org_admin_read,
    );
    add(
        "POST",
        "/v1/ai_secret".into(),
        Some(json!({"name": "s-{fresh}", "secret": "v"})),
        Fresh::Unique,
        org_admin_write,
    );
    add(
        "GET",
        "/v1/audit_log".into(),
        None,
        Fresh::None,
        org_admin_read,
    );
    // Retention policies: a project's takes deleting the project (project B: the matrix's
    // grants leave the viewer `delete` on A); the organization's, changing the organization.
    let keep = |project: &str| {
        json!({"project_id": project, "name": "keep",
               "config": {"event_type": "retention", "object_type": "project_logs",
                          "retention_days": 3650}})
    };
    add(
        "GET",
        format!("/v1/project_automation?project_id={pa}"),
        None,
        Fresh::None,
        read_a,
    );
    add(
        "POST",
        "/v1/project_automation".into(),
        Some(keep(pb)),
        Fresh::None,
        "200 200 403 404 404 404 403 401 401 404 401",
    );
    add(
        "POST",
        "/v1/project_automation/preview".into(),
        Some(keep(pb)),
        Fresh::None,
        "200 200 403 404 404 404 403 401 401 404 401",
    );
    // Exports through the API: Owners (or a grant on org_export).
    add(
        "GET",
        "/v1/export".into(),
        None,
        Fresh::None,
        org_admin_read,
    );
    add(
        "POST",
        "/v1/export".into(),
        Some(json!({"project_id": pb})),
        Fresh::None,
        "200 403 403 403 403 403 403 401 401 404 401",
    );
    add(
        "GET",
        "/v1/org_automation".into(),
        None,
        Fresh::None,
        org_admin_read,
    );
    add(
        "POST",
        "/v1/org_automation".into(),
        Some(json!({"name": "keep", "config": {"event_type": "retention",
                    "object_type": "dataset", "retention_days": 3650}})),
        Fresh::None,
        org_admin_write,
    );
    c
}

async fn make_fresh(server: &Server, w: &World, fresh: Fresh, n: usize) -> String {
    match fresh {
        Fresh::None => String::new(),
        Fresh::Unique => format!("u{n}"),
        Fresh::DatasetA | Fresh::DatasetB => {
            let p = if matches!(fresh, Fresh::DatasetA) {
                &w.pa
            } else {
                &w.pb
            };
            id(&server
                .ok(
                    "POST",
                    "/v1/dataset",
                    Some(json!({"project_id": p, "name": format!("fresh-{n}")})),
                )
                .await)
        }
        Fresh::DeletedDatasetA | Fresh::DeletedDatasetB => {
            let alive = if matches!(fresh, Fresh::DeletedDatasetA) {
                Fresh::DatasetA
            } else {
                Fresh::DatasetB
            };
            let ds = Box::pin(make_fresh(server, w, alive, n)).await;
            server
                .ok("DELETE", &format!("/v1/dataset/{ds}"), None)
                .await;
            ds
        }
        Fresh::DeletedProject => {
            let p = id(&server
                .ok(
                    "POST",
                    "/v1/project",
                    Some(json!({"name": format!("fresh-{n}")})),
                )
                .await);
            server.ok("DELETE", &format!("/v1/project/{p}"), None).await;
            p
        }
        Fresh::Group => id(&server
            .ok(
                "POST",
                "/v1/group",
                Some(json!({"name": format!("fresh-{n}")})),
            )
            .await),
        Fresh::AclA => id(&server
            .ok(
                "POST",
                "/v1/acl",
                Some(
                    json!({"object_type": "project", "object_id": w.pa, "user_id": w.viewer_id,
                            "permission": "delete"}),
                ),
            )
            .await),
    }
}

async fn matrix(backend: Backend) {
    let server = Server::start(backend).await;
    let w = world(&server).await;
    let cases = cases(&w);
    let (mut total, mut leaks, mut mismatches) = (0, 0, Vec::new());
    let mut n = 0;
    for case in &cases {
        let sessions = session_expectations(case.method, &case.expect);
        for (i, who) in WHO.iter().chain(SESSIONS.iter()).enumerate() {
            n += 1;
            let fresh = make_fresh(&server, &w, case.fresh, n).await;
            let path = case.path.replace("{fresh}", &fresh);
            let body = case
                .body
                .as_ref()
                .map(|b| serde_json::from_str(&b.to_string().replace("{fresh}", &fresh)).unwrap());
            let (status, body) = match i.checked_sub(WHO.len()) {
                None => {
                    server
                        .call(case.method, &path, w.keys[i].as_deref(), body)
                        .await
                }
                Some(s) => {
                    let headers: Vec<(&str, &str)> = w.sessions[s]
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let bytes = body
                        .map(|b| serde_json::to_vec(&b).unwrap())
                        .unwrap_or_default();
                    server
                        .with_headers(case.method, &path, &headers, bytes)
                        .await
                }
            };
            total += 1;
            let want = match i.checked_sub(WHO.len()) {
                None => case.expect[i],
                Some(s) => sessions[s],
            };
            let text = body.to_string();
            let leaked_status = (200..300).contains(&status) && !(200..300).contains(&want);
            let leaked_content = [MARK_A, MARK_B]
                .iter()
                .any(|m| text.contains(m) && !may_see(who, m));
            if leaked_status || leaked_content {
                leaks += 1;
            }
            if status != want || leaked_content {
                mismatches.push(format!(
                    "{} {} as {who}: got {status}, want {want}{}: {}",
                    case.method,
                    path,
                    if leaked_content {
                        " (LEAK of a marker)"
                    } else {
                        ""
                    },
                    text.chars().take(200).collect::<String>()
                ));
            }
            if status >= 400 {
                assert!(
                    body["error"]["code"].is_string(),
                    "{} {path} as {who}: error without a JSON body: {text}",
                    case.method
                );
            }
        }
    }
    println!(
        "access matrix ({backend:?}): {} routes x {} principals = {total} cases, {leaks} leaks, {} mismatches",
        cases.len(),
        WHO.len() + SESSIONS.len(),
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(leaks, 0);
}

/// Key scope beyond the matrix: rotation with a grace period, usage, self-service limits.
async fn key_lifecycle(backend: Backend) {
    let server = Server::start(backend).await;
    let created = server
        .ok(
            "POST",
            "/v1/api_key",
            Some(json!({"name": "ci", "capability": "read"})),
        )
        .await;
    let old = created["key"].as_str().unwrap().to_owned();
    let old_id = id(&created);
    // A read key cannot mint keys, so it cannot widen itself.
    let (s, b) = server
        .call(
            "POST",
            "/v1/api_key",
            Some(&old),
            Some(json!({"name": "wider"})),
        )
        .await;
    assert_error(s, &b, 403, "forbidden");
    for _ in 0..3 {
        assert_eq!(
            server.call("GET", "/v1/project", Some(&old), None).await.0,
            200
        );
    }
    // Usage is visible to the key's owner: four requests today (the refused one counts).
    let got = server
        .ok("GET", &format!("/v1/api_key/{old_id}"), None)
        .await;
    assert_eq!(got["usage"][0]["requests"], 4, "{got}");
    assert!(got.get("key").is_none() && !got.to_string().contains(&old));
    let rotated = server
        .ok(
            "POST",
            &format!("/v1/api_key/{old_id}/rotate"),
            Some(json!({"grace_seconds": 2})),
        )
        .await;
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["capability"], "read");
    // Both work during the grace period; afterwards only the new one.
    assert_eq!(
        server.call("GET", "/v1/project", Some(&old), None).await.0,
        200
    );
    assert_eq!(
        server.call("GET", "/v1/project", Some(&new), None).await.0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (s, b) = server.call("GET", "/v1/project", Some(&old), None).await;
    assert_error(s, &b, 401, "key_expired");
    assert_eq!(
        server.call("GET", "/v1/project", Some(&new), None).await.0,
        200
    );
    // The key's last use is recorded with the address it came from.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let listed = server.ok("GET", "/v1/api_key", None).await;
    let entry = listed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == rotated["id"])
        .cloned()
        .unwrap();
    assert_eq!(entry["last_used_from"], "127.0.0.1", "{entry}");
    assert!(entry["last_used_at"].is_string());
    // Bad input is named.
    for (body, field) in [
        (json!({"capability": "admin"}), "capability"),
        (json!({"project_ids": "p"}), "project_ids"),
        (json!({"project_ids": ["no-such-project"]}), "project_ids"),
        (json!({"expires_at": "yesterday"}), "expires_at"),
        (json!({"expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
    ] {
        let (s, b) = server
            .call("POST", "/v1/api_key", Some(&server.key), Some(body.clone()))
            .await;
        assert_error(s, &b, 400, "invalid_field");
        assert_eq!(b["error"]["field"], field, "{body}: {b}");
    }
}

/// Members, nested groups and custom roles take effect at once; removing a member ends their
/// access and their keys.
async fn groups_and_members(backend: Backend) {
    let server = Server::start(backend).await;
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "p"})))
        .await);
    let key = server.member_key("dana@example.test", "Viewers");
    let k = Some(key.as_str());
    let ds = json!({"project_id": p, "name": "d"});
    let (s, b) = server
        .call("POST", "/v1/dataset", k, Some(ds.clone()))
        .await;
    assert_error(s, &b, 403, "forbidden");
    // A custom role (create datasets) through a group nested in another group.
    let role = id(&server
        .ok(
            "POST",
            "/v1/role",
            Some(json!({"name": "dataset-maker", "member_permissions": [
                {"permission": "create", "restrict_object_type": "dataset"},
                {"permission": "read"}]})),
        )
        .await);
    let users = server.ok("GET", "/v1/user", None).await;
    let dana = users["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "dana@example.test")
        .map(id)
        .unwrap();
    let inner = id(&server
        .ok(
            "POST",
            "/v1/group",
            Some(json!({"name": "inner", "member_users": [dana]})),
        )
        .await);
    let outer = id(&server
        .ok(
            "POST",
            "/v1/group",
            Some(json!({"name": "outer", "member_groups": [inner]})),
        )
        .await);
    server
        .ok(
            "POST",
            "/v1/acl",
            Some(json!({"object_type": "project", "object_id": p, "group_id": outer, "role_id": role})),
        )
        .await;
    assert_eq!(
        server
            .call("POST", "/v1/dataset", k, Some(ds.clone()))
            .await
            .0,
        200
    );
    // ... but not experiments: the role is restricted to datasets.
    let (s, _) = server
        .call("POST", "/v1/experiment", k, Some(json!({"project_id": p})))
        .await;
    assert_eq!(s, 403);
    // Taking dana out of the inner group ends it.
    server
        .ok(
            "PATCH",
            &format!("/v1/group/{inner}"),
            Some(json!({"remove_member_users": [dana]})),
        )
        .await;
    let (s, _) = server
        .call(
            "POST",
            "/v1/dataset",
            k,
            Some(json!({"project_id": p, "name": "d2"})),
        )
        .await;
    assert_eq!(s, 403);
    // Invalid grants are refused with a reason and change nothing.
    for (bad, code) in [
        (
            json!({"object_type": "project", "object_id": p, "group_id": outer}),
            "bad_request",
        ),
        (
            json!({"object_type": "project", "object_id": p, "group_id": outer, "permission": "read", "role_id": role}),
            "bad_request",
        ),
        (
            json!({"object_type": "project", "object_id": p, "user_id": "nobody", "permission": "read"}),
            "bad_request",
        ),
        (
            json!({"object_type": "planet", "object_id": p, "group_id": outer, "permission": "read"}),
            "invalid_field",
        ),
        (
            json!({"object_type": "project", "object_id": p, "group_id": outer, "role_id": role, "restrict_object_type": "dataset"}),
            "bad_request",
        ),
    ] {
        let (s, b) = server
            .call("POST", "/v1/acl", Some(&server.key), Some(bad))
            .await;
        assert_error(s, &b, 400, code);
    }
    let acls = server
        .ok(
            "GET",
            &format!("/v1/acl?object_type=project&object_id={p}"),
            None,
        )
        .await;
    assert_eq!(acls["objects"].as_array().unwrap().len(), 1, "{acls}");
    // Removing dana from the organization revokes her keys.
    let removed = server
        .ok(
            "PATCH",
            "/v1/organization/members",
            Some(json!({"remove_users": {"emails": ["dana@example.test"]}})),
        )
        .await;
    assert_eq!(removed["removed_user_ids"][0], dana);
    let (s, b) = server.call("GET", "/v1/project", k, None).await;
    assert_error(s, &b, 401, "unauthenticated");
    // Concurrent edits of one group lose nothing.
    let emails: Vec<String> = (0..16).map(|i| format!("c{i}@example.test")).collect();
    server
        .ok(
            "PATCH",
            "/v1/organization/members",
            Some(json!({"invite_users": {"emails": emails}})),
        )
        .await;
    let users = server.ok("GET", "/v1/user", None).await;
    let ids: Vec<String> = users["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["email"].as_str().unwrap().starts_with('c'))
        .map(id)
        .collect();
    assert_eq!(ids.len(), 16);
    let crowd = id(&server
        .ok("POST", "/v1/group", Some(json!({"name": "crowd"})))
        .await);
    let path = format!("/v1/group/{crowd}");
    let edits = ids.iter().map(|u| {
        server.call(
            "PATCH",
            &path,
            Some(&server.key),
            Some(json!({"add_member_users": [u]})),
        )
    });
    for (s, b) in futures::future::join_all(edits).await {
        assert_eq!(s, 200, "{b}");
    }
    let group = server.ok("GET", &format!("/v1/group/{crowd}"), None).await;
    assert_eq!(
        group["member_users"].as_array().unwrap().len(),
        16,
        "{group}"
    );
    // Built-in roles cannot be changed.
    let (s, b) = server
        .call(
            "PATCH",
            "/v1/role/00000000-0000-4000-8000-0000000000a3",
            Some(&server.key),
            Some(json!({"add_member_permissions": [{"permission": "update"}]})),
        )
        .await;
    assert_error(s, &b, 403, "forbidden");
}

/// The audit log records who did and read what, and `holdfast audit verify` catches an
/// edited entry and names it.
async fn audit_trail(backend: Backend) {
    let server = Server::start(backend).await;
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "audited"})))
        .await);
    server.ok("GET", &format!("/v1/project/{p}"), None).await;
    let (s, _) = server
        .call("GET", "/v1/project", Some("hf_not-a-key"), None)
        .await;
    assert_eq!(s, 401);
    let viewer = server.member_key("v@example.test", "Viewers");
    assert_eq!(
        server
            .call(
                "PATCH",
                &format!("/v1/project/{p}"),
                Some(&viewer),
                Some(json!({"description": "x"}))
            )
            .await
            .0,
        403
    );
    server
        .ok(
            "PATCH",
            &format!("/v1/project/{p}"),
            Some(json!({"description": "after"})),
        )
        .await;
    // Reads are appended within milliseconds; wait for them.
    let mut entries = Vec::new();
    for _ in 0..50 {
        let page = server
            .ok(
                "GET",
                &format!("/v1/audit_log?object_id={p}&limit=100"),
                None,
            )
            .await;
        entries = page["objects"].as_array().unwrap().clone();
        if entries.len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let actions: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["detail"]["status"]
            )
        })
        .collect();
    assert!(
        actions.contains(&"POST /v1/project 200".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"GET /v1/project/{id} 200".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"PATCH /v1/project/{id} 403".to_owned()),
        "{actions:?}"
    );
    let denied = entries
        .iter()
        .find(|e| e["action"] == "PATCH /v1/project/{id}" && e["detail"]["status"] == 403)
        .unwrap();
    assert!(
        denied["detail"]["accessed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["permission"] == "update" && a["allowed"] == false),
        "{denied}"
    );
    // A change is recorded in brief: before and after.
    let patched = entries
        .iter()
        .find(|e| e["action"] == "PATCH /v1/project/{id}" && e["detail"]["status"] == 200)
        .unwrap();
    let change = &patched["detail"]["changes"][0];
    assert_eq!(change["before"]["description"], Value::Null, "{patched}");
    assert_eq!(change["after"]["description"], "after", "{patched}");
    // Filtering by actor and paging.
    let mine = server.ok("GET", "/v1/audit_log?limit=2", None).await;
    assert_eq!(mine["objects"].as_array().unwrap().len(), 2);
    let next = server
        .ok(
            "GET",
            &format!(
                "/v1/audit_log?limit=2&cursor={}",
                mine["cursor"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert!(next["objects"][0]["seq"].as_i64() < mine["objects"][1]["seq"].as_i64());
    let (s, b) = server
        .call("GET", "/v1/audit_log", Some(&viewer), None)
        .await;
    assert_error(s, &b, 403, "forbidden");
    // The failed authentication is in the chain without its secret.
    let verified = server.cli_line(&["audit", "verify"]);
    assert!(verified.starts_with("audit log intact"), "{verified}");
    let secret_free = dump_audit(&server).await;
    assert!(secret_free.contains("auth.failure"));
    assert!(!secret_free.contains(&server.key) && !secret_free.contains(&viewer));
    // Edit one stored entry: verify fails and names it.
    server
        .execute_sql(
            "UPDATE audit_log SET actor_id = 'mallory' WHERE chain <> '' AND chain_seq = 3",
        )
        .await;
    let out = server.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken at entry 3 of chain") && err.contains("edited"),
        "{err}"
    );
}

/// A group or role carries its version as an `ETag`; a change with `If-Match` applies only
/// while the version it names is current, and otherwise changes nothing (412).
async fn conditional_role_changes(backend: Backend) {
    let server = Server::start(backend).await;
    let send = |method: &str, path: String, if_match: Option<&str>, body: Option<Value>| {
        let mut req = server
            .http
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .bearer_auth(&server.key);
        if let Some(tag) = if_match {
            req = req.header("if-match", tag);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let tag = resp
                .headers()
                .get("etag")
                .map(|t| t.to_str().unwrap().to_owned());
            (status, tag, resp.json::<Value>().await.unwrap())
        }
    };
    let made = json!({"name": "editors", "member_permissions": [
        {"permission": "read", "restrict_object_type": "prompt"},
        {"permission": "update", "restrict_object_type": "prompt"}]});
    let (s, created, role) = send("POST", "/v1/role".into(), None, Some(made)).await;
    assert_eq!(s, 200, "{role}");
    let at = format!("/v1/role/{}", id(&role));
    let (_, read, _) = send("GET", at.clone(), None, None).await;
    let read = read.expect("GET answers with an ETag");
    assert!(
        read.starts_with('"') && read.ends_with('"') && read.len() > 20,
        "{read}"
    );
    assert_eq!(created.as_deref(), Some(read.as_str()));
    // Someone else's change gives the role a new version.
    let theirs = json!({"remove_member_permissions": [
        {"permission": "read", "restrict_object_type": "prompt"}]});
    let (s, after_theirs, _) = send("PATCH", at.clone(), Some(&read), Some(theirs)).await;
    assert_eq!(s, 200);
    let after_theirs = after_theirs.unwrap();
    assert_ne!(after_theirs, read);
    // A change made from the old version is refused, and nothing of it applies.
    let mine = json!({"name": "renamed", "add_member_permissions": [
        {"permission": "read", "restrict_object_type": "prompt"}]});
    let (s, _, body) = send("PATCH", at.clone(), Some(&read), Some(mine.clone())).await;
    assert_error(s, &body, 412, "precondition_failed");
    // A weak tag never matches, even of the current version.
    let weak = format!("W/{after_theirs}");
    let (s, _, body) = send("PATCH", at.clone(), Some(&weak), Some(mine.clone())).await;
    assert_error(s, &body, 412, "precondition_failed");
    let (_, now, role) = send("GET", at.clone(), None, None).await;
    assert_eq!(now.as_deref(), Some(after_theirs.as_str()));
    assert_eq!(role["name"], "editors");
    assert_eq!(
        role["member_permissions"],
        json!([{"permission": "update", "restrict_object_type": "prompt"}])
    );
    // From the current version (one of a list), or with `*`, or without the header, it applies.
    let list = format!("\"0\", {after_theirs}");
    let (s, mine_tag, role) = send("PATCH", at.clone(), Some(&list), Some(mine)).await;
    assert_eq!(s, 200, "{role}");
    assert_eq!(role["name"], "renamed");
    assert_ne!(mine_tag.as_deref(), Some(after_theirs.as_str()));
    let (s, _, _) = send(
        "PATCH",
        at.clone(),
        Some("*"),
        Some(json!({"description": "d"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = send("PATCH", at.clone(), None, Some(json!({"description": "e"}))).await;
    assert_eq!(s, 200);
    // Groups take it the same way.
    let (_, tag, group) = send("POST", "/v1/group".into(), None, Some(json!({"name": "g"}))).await;
    let at = format!("/v1/group/{}", id(&group));
    let (s, _, _) = send(
        "PATCH",
        at.clone(),
        tag.as_deref(),
        Some(json!({"description": "x"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, body) = send(
        "PATCH",
        at,
        tag.as_deref(),
        Some(json!({"description": "y"})),
    )
    .await;
    assert_error(s, &body, 412, "precondition_failed");
}

/// The audit rows as text, read straight from the database.
async fn dump_audit(server: &Server) -> String {
    format!("{:?}", server.audit_rows().await)
}

mod run {
    use super::backends;
    on_all_backends!(
        matrix,
        key_lifecycle,
        groups_and_members,
        conditional_role_changes,
        audit_trail
    );
}
