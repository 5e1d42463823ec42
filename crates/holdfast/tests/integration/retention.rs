//! Retention policies (`/v1/project_automation`, `/v1/org_automation`): checked, previewed,
//! applied to logs, experiments and dataset rows of a project and, through the
//! organization's default, of a project without its own; what they expire disappears from
//! every read, an expired experiment is restorable once no policy would expire it again, and
//! deleted rows are purged after the grace period with nothing left of them.

use crate::access::in_seconds;
use crate::harness::{Backend, Server, assert_error, backends};
use crate::lifecycle::indexed;
use serde_json::{Value, json};

const DAY: i64 = 86_400;

/// `now + seconds` in the server's own form (microseconds, `Z`).
#[allow(clippy::disallowed_methods)]
fn server_time(seconds: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&f).unwrap()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn policy(object_type: &str, days: i64) -> Value {
    json!({"event_type": "retention", "object_type": object_type, "retention_days": days})
}

/// A row of `created` with a text to find it by.
fn row(id: &str, created: &str, text: &str) -> Value {
    json!({"id": id, "created": created, "input": text})
}

async fn dataset(server: &Server, project_id: &str, name: &str) -> String {
    id(&server
        .ok(
            "POST",
            "/v1/dataset",
            Some(json!({"project_id": project_id, "name": name})),
        )
        .await)
}

/// A server that runs the purge (and the policies) every second, with `env` besides, and a
/// project with a dataset: (server, project id, dataset id, the dataset's insert path).
async fn with_dataset(backend: Backend, env: &[(&str, &str)]) -> (Server, String, String, String) {
    let mut all = vec![
        ("HOLDFAST_PURGE_INTERVAL_SECS", "1"),
        ("HOLDFAST_METRICS_TOKEN", "retention-test"),
    ];
    all.extend_from_slice(env);
    let server = Server::start_with(backend, &all).await;
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "p"})))
        .await);
    let ds = dataset(&server, &p, "d").await;
    let path = format!("/v1/dataset/{ds}/insert");
    (server, p, ds, path)
}

async fn insert(server: &Server, path: &str, events: Vec<Value>) {
    server
        .ok("POST", path, Some(json!({ "events": events })))
        .await;
}

/// The ids of an object's rows as `fetch` returns them, sorted.
async fn ids(server: &Server, path: &str) -> Vec<String> {
    let mut out: Vec<String> = server
        .fetch_all(path, 100)
        .await
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

/// The ids a BTQL query of an object's rows returns, sorted.
async fn queried(server: &Server, from: &str) -> Vec<String> {
    let reply = server
        .ok(
            "POST",
            "/btql",
            Some(json!({"query": format!("select: id | from: {from} | limit: 1000")})),
        )
        .await;
    let mut out: Vec<String> = reply["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

/// Waits until a metric reaches `n`.
async fn reaches(server: &Server, metric: &str, n: f64) {
    for _ in 0..600 {
        if server.metric(metric).await >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{metric} stayed at {}", server.metric(metric).await);
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Policies are checked (400 naming the field, 404 for a project of nobody's, 409 for a
/// second policy of one object type), previewed without effect, then applied: old log rows,
/// an old experiment and old dataset rows disappear from fetch and queries; a row exactly
/// inside the window, one with a `created` that is no timestamp and a young experiment
/// stay; the organization's default applies to a project without a policy of its own and
/// not to one with its own; an expired experiment cannot be restored while its policy would
/// expire it again, and can once the policy allows it; every expiry is audited.
async fn policies_expire_old_data(backend: Backend) {
    let server = Server::start_with(
        backend,
        &[
            ("HOLDFAST_PURGE_INTERVAL_SECS", "1"),
            ("HOLDFAST_METRICS_TOKEN", "retention-test"),
        ],
    )
    .await;
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "kept-30-days"})))
        .await);
    let q = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "org-default"})))
        .await);
    let r = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "own-longer"})))
        .await);
    let old = in_seconds(-31 * DAY);
    let inside = in_seconds(-30 * DAY + 3600);
    let young = in_seconds(-DAY);
    let logs = |project: &str| format!("/v1/project_logs/{project}/insert");
    insert(
        &server,
        &logs(&p),
        vec![
            row("old-1", &old, "expired log"),
            row("old-2", &in_seconds(-400 * DAY), "older log"),
            // The Python SDK's form of a UTC time.
            row(
                "old-py",
                &old.replace('Z', "+00:00"),
                "expired log of the python sdk",
            ),
            row("inside", &inside, "log inside the window"),
            row("young", &young, "young log"),
            row("odd", "long ago", "a created that is no timestamp"),
        ],
    )
    .await;
    insert(
        &server,
        &logs(&q),
        vec![row("q-old", &old, "x"), row("q-young", &young, "y")],
    )
    .await;
    insert(
        &server,
        &logs(&r),
        vec![row("r-old", &old, "x"), row("r-young", &young, "y")],
    )
    .await;
    let ds = dataset(&server, &p, "golden").await;
    insert(
        &server,
        &format!("/v1/dataset/{ds}/insert"),
        vec![
            row("d-old", &old, "old case"),
            row("d-young", &young, "new case"),
        ],
    )
    .await;
    let mut experiments = Vec::new();
    for name in ["last-quarter", "yesterday"] {
        let e = id(&server
            .ok(
                "POST",
                "/v1/experiment",
                Some(json!({"project_id": p, "name": name})),
            )
            .await);
        insert(
            &server,
            &format!("/v1/experiment/{e}/insert"),
            vec![row("e1", &young, "a"), row("e2", &young, "b")],
        )
        .await;
        experiments.push(e);
    }
    let (e_old, e_young) = (experiments[0].clone(), experiments[1].clone());
    // Experiments are created now: make one 40 days old.
    server
        .execute_sql(&format!(
            "UPDATE objects SET created = '{}' WHERE id = '{e_old}'",
            server_time(-40 * DAY)
        ))
        .await;
    indexed(&server).await;

    // Bad policies are refused, naming the problem; nothing is created.
    let create = |body: Value| async {
        let key = server.key.clone();
        server
            .call("POST", "/v1/project_automation", Some(&key), Some(body))
            .await
    };
    for (days, why) in [(0, "zero"), (-5, "negative"), (36_501, "too long")] {
        let (s, b) = create(json!({"project_id": p, "name": "bad",
                                   "config": policy("project_logs", days)}))
        .await;
        assert_error(s, &b, 400, "invalid_field");
        assert!(b.to_string().contains("retention_days"), "{why}: {b}");
    }
    let (s, b) = create(json!({"project_id": p, "name": "bad", "config": {
        "event_type": "alert", "object_type": "project_logs", "retention_days": 3}}))
    .await;
    assert!(
        s == 400 && b.to_string().contains("unknown variant `alert`"),
        "{s} {b}"
    );
    let (s, b) = create(json!({"project_id": p, "name": "bad",
                               "config": policy("prompt", 3)}))
    .await;
    assert!(
        s == 400 && b.to_string().contains("unknown variant `prompt`"),
        "{s} {b}"
    );
    let (s, b) = create(json!({"project_id": "00000000-0000-0000-0000-000000000000",
                               "name": "x", "config": policy("project_logs", 3)}))
    .await;
    assert_error(s, &b, 404, "not_found");
    let listed = server
        .ok(
            "GET",
            &format!("/v1/project_automation?project_id={p}"),
            None,
        )
        .await;
    assert_eq!(listed["objects"], json!([]), "nothing was created");

    // Previews count what a policy would delete now, and change nothing.
    let preview = |project: Option<&str>, object_type: &str| {
        let (path, body) = match project {
            Some(p) => (
                "/v1/project_automation/preview",
                json!({"project_id": p, "config": policy(object_type, 30)}),
            ),
            None => (
                "/v1/org_automation/preview",
                json!({"config": policy(object_type, 30)}),
            ),
        };
        let server = &server;
        async move { server.ok("POST", path, Some(body)).await }
    };
    let v = preview(Some(&p), "project_logs").await;
    assert_eq!(
        (v["rows"].clone(), v["objects"].clone()),
        (json!(3), json!(0)),
        "{v}"
    );
    let v = preview(Some(&p), "dataset").await;
    assert_eq!(v["rows"], json!(1), "{v}");
    let v = preview(Some(&p), "experiment").await;
    assert_eq!(
        (v["rows"].clone(), v["objects"].clone()),
        (json!(2), json!(1)),
        "{v}"
    );
    assert_eq!(v["projects"][0]["project_id"], json!(p), "{v}");
    let v = preview(None, "project_logs").await;
    assert_eq!(v["rows"], json!(5), "every project's old logs: {v}");
    assert_eq!(v["projects"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(
        ids(&server, &format!("/v1/project_logs/{p}/fetch"))
            .await
            .len(),
        6
    );

    // The policies: 30 days for everything of P, the organization's 30 days for logs, and
    // R's own 1000 days, which the organization's does not override.
    let mut made = Vec::new();
    for t in ["project_logs", "dataset", "experiment"] {
        let body = json!({"project_id": p, "name": format!("{t} 30 days"),
                          "config": policy(t, 30)});
        let m = server
            .ok("POST", "/v1/project_automation", Some(body.clone()))
            .await;
        assert_eq!(m["config"], policy(t, 30), "{m}");
        // The same name again: the same policy, unchanged.
        let again = server
            .ok("POST", "/v1/project_automation", Some(body))
            .await;
        assert_eq!(again["id"], m["id"]);
        made.push(m);
    }
    let (s, b) = create(json!({"project_id": p, "name": "another",
                               "config": policy("dataset", 5)}))
    .await;
    assert_error(s, &b, 409, "conflict");
    server
        .ok(
            "POST",
            "/v1/project_automation",
            Some(json!({"project_id": r, "name": "long", "config": policy("project_logs", 1000)})),
        )
        .await;
    let org = server
        .ok(
            "POST",
            "/v1/org_automation",
            Some(json!({"name": "logs for a month", "config": policy("project_logs", 30)})),
        )
        .await;
    assert_eq!(org["config"], policy("project_logs", 30), "{org}");
    let listed = server.ok("GET", "/v1/org_automation", None).await;
    assert_eq!(listed["objects"].as_array().unwrap().len(), 1, "{listed}");

    // The next run expires: P's 3 old logs and old dataset row, Q's old log through the
    // organization's default, and P's old experiment; not R's (its own policy is longer).
    reaches(&server, "holdfast_retention_rows_total", 5.0).await;
    reaches(&server, "holdfast_retention_objects_total", 1.0).await;
    let p_logs = format!("project_logs('{p}')");
    assert_eq!(
        ids(&server, &format!("/v1/project_logs/{p}/fetch")).await,
        strings(&["inside", "odd", "young"])
    );
    assert_eq!(
        queried(&server, &p_logs).await,
        strings(&["inside", "odd", "young"])
    );
    assert_eq!(
        ids(&server, &format!("/v1/project_logs/{q}/fetch")).await,
        strings(&["q-young"])
    );
    assert_eq!(
        ids(&server, &format!("/v1/project_logs/{r}/fetch")).await,
        strings(&["r-old", "r-young"])
    );
    assert_eq!(
        ids(&server, &format!("/v1/dataset/{ds}/fetch")).await,
        strings(&["d-young"])
    );
    let summary = server
        .ok(
            "GET",
            &format!("/v1/dataset/{ds}/summarize?summarize_data=true"),
            None,
        )
        .await;
    assert_eq!(
        summary["data_summary"]["total_records"],
        json!(1),
        "{summary}"
    );
    let (s, b) = server
        .call(
            "GET",
            &format!("/v1/experiment/{e_old}"),
            Some(&server.key),
            None,
        )
        .await;
    assert_error(s, &b, 404, "not_found");
    server
        .ok("GET", &format!("/v1/experiment/{e_young}"), None)
        .await;
    // Full-text search does not find the expired rows.
    let found = server
        .ok(
            "POST",
            "/btql",
            Some(json!({"query": format!(
                "select: id | from: {p_logs} | filter: input MATCH 'expired' | limit: 10")})),
        )
        .await;
    assert_eq!(found["data"], json!([]), "{found}");

    // Restoring the experiment: refused while the policy would expire it again; allowed
    // once the policy keeps 60 days.
    let (s, b) = server
        .call(
            "POST",
            &format!("/v1/experiment/{e_old}/restore"),
            Some(&server.key),
            Some(json!({"preview": true})),
        )
        .await;
    assert_error(s, &b, 409, "conflict");
    assert!(b.to_string().contains("experiment 30 days"), "{b}");
    let experiment_policy = id(&made[2]);
    let patched = server
        .ok(
            "PATCH",
            &format!("/v1/project_automation/{experiment_policy}"),
            Some(json!({"config": policy("experiment", 60)})),
        )
        .await;
    assert_eq!(patched["config"]["retention_days"], json!(60));
    let restored = server
        .ok("POST", &format!("/v1/experiment/{e_old}/restore"), None)
        .await;
    assert_eq!(restored["restored"], json!(true), "{restored}");
    // Later runs leave it (and the rows inside the windows) alone.
    let runs = server.metric("holdfast_purge_runs_total").await;
    reaches(&server, "holdfast_purge_runs_total", runs + 2.0).await;
    server
        .ok("GET", &format!("/v1/experiment/{e_old}"), None)
        .await;
    assert_eq!(server.metric("holdfast_retention_objects_total").await, 1.0);
    assert_eq!(server.metric("holdfast_retention_rows_total").await, 5.0);

    // Every expiry is audited, with its policy.
    let audited: Vec<(String, String, Option<String>)> = server
        .audit_rows()
        .await
        .into_iter()
        .filter(|(action, ..)| action == "retention")
        .collect();
    assert_eq!(
        audited.len(),
        4,
        "P's logs, Q's logs, the dataset, the experiment: {audited:?}"
    );

    // Policies are read, changed and deleted by id, at their own level only.
    let org_id = id(&org);
    let (s, b) = server
        .call(
            "GET",
            &format!("/v1/project_automation/{org_id}"),
            Some(&server.key),
            None,
        )
        .await;
    assert_error(s, &b, 404, "not_found");
    server
        .ok("DELETE", &format!("/v1/org_automation/{org_id}"), None)
        .await;
    let (s, b) = server
        .call(
            "GET",
            &format!("/v1/org_automation/{org_id}"),
            Some(&server.key),
            None,
        )
        .await;
    assert_error(s, &b, 404, "not_found");
    let (s, b) = server
        .call(
            "PATCH",
            &format!("/v1/project_automation/{}", id(&made[0])),
            Some(&server.key),
            Some(json!({"config": policy("dataset", 3)})),
        )
        .await;
    assert_error(s, &b, 409, "conflict");
}

/// Rows deleted by `_object_delete` or a retention policy are purged once the grace period
/// has passed: no version, index entry or word of them is left, in the tables or (embedded
/// store) the files, while the object and its other rows stay; each purge is audited.
async fn deleted_rows_are_purged(backend: Backend) {
    let (server, p, ds, path) = with_dataset(
        backend,
        &[
            ("HOLDFAST_DELETION_GRACE_SECS", "1"),
            ("HOLDFAST_ENCRYPT_AT_REST", "false"),
        ],
    )
    .await;
    let young = in_seconds(-60);
    insert(
        &server,
        &path,
        vec![
            row("gone", &young, "deletedwordwombat first"),
            row("kept", &young, "keptwordquokka"),
            row("aged", &in_seconds(-10 * DAY), "expiredwordnumbat"),
        ],
    )
    .await;
    // A second version of the deleted row, then its deletion.
    insert(
        &server,
        &path,
        vec![json!({"id": "gone", "input": "deletedwordwombat second", "_is_merge": true})],
    )
    .await;
    indexed(&server).await;
    if backend == Backend::Sqlite {
        let held = crate::lifecycle::in_files(&server, &["deletedwordwombat", "expiredwordnumbat"]);
        for word in ["deletedwordwombat", "expiredwordnumbat"] {
            assert!(
                held.iter().any(|h| h.starts_with(word)),
                "the files hold {word} before: {held:?}"
            );
        }
    }
    insert(
        &server,
        &path,
        vec![json!({"id": "gone", "_object_delete": true})],
    )
    .await;
    server
        .ok(
            "POST",
            "/v1/project_automation",
            Some(json!({"project_id": p, "name": "week", "config": policy("dataset", 7)})),
        )
        .await;
    reaches(&server, "holdfast_purge_rows_total", 2.0).await;
    indexed(&server).await;
    assert_eq!(
        ids(&server, &format!("/v1/dataset/{ds}/fetch")).await,
        strings(&["kept"])
    );
    for gone in ["gone", "aged"] {
        let n = server
            .count_sql(&format!(
                "SELECT count(*) FROM rows WHERE object_id = '{ds}' AND row_id = '{gone}'"
            ))
            .await;
        assert_eq!(n, 0, "versions of {gone}");
    }
    assert_eq!(
        server
            .count_sql(&format!(
                "SELECT count(*) FROM rows WHERE object_id = '{ds}' AND row_id = 'kept'"
            ))
            .await,
        1
    );
    assert_eq!(
        server.count_sql("SELECT count(*) FROM row_deletions").await,
        0
    );
    assert_eq!(
        server
            .count_sql(&format!(
                "SELECT count(*) FROM row_index WHERE object_id = '{ds}'"
            ))
            .await,
        1
    );
    let words = server
        .ok(
            "POST",
            "/btql",
            Some(json!({"query": format!(
                "select: id | from: dataset('{ds}') | filter: input MATCH 'keptwordquokka' | limit: 10")})),
        )
        .await;
    assert_eq!(words["data"].as_array().unwrap().len(), 1, "{words}");
    let purges: Vec<_> = server
        .audit_rows()
        .await
        .into_iter()
        .filter(|(action, ..)| action == "purge")
        .collect();
    assert!(!purges.is_empty(), "{purges:?}");
    if backend == Backend::Sqlite {
        // The run that purged compacted the store: wait for one more run, then search.
        let runs = server.metric("holdfast_purge_runs_total").await;
        reaches(&server, "holdfast_purge_runs_total", runs + 1.0).await;
        let found =
            crate::lifecycle::in_files(&server, &["deletedwordwombat", "expiredwordnumbat"]);
        assert!(found.is_empty(), "{found:?}");
        assert!(
            !crate::lifecycle::in_files(&server, &["keptwordquokka"]).is_empty(),
            "the search finds what is kept"
        );
    }
}

/// Rows deleted by `_object_delete` or a retention policy come back within the grace period
/// through `/v1/{dataset,project_logs}/{id}/restore`, as they were just before their
/// deletion: a preview counts them, `row_ids` and `deleted_after` choose them, a row written
/// again since stays as it is, and rows a policy would delete again are refused until the
/// policy changes.
async fn deleted_rows_are_restored(backend: Backend) {
    let (server, p, ds, path) = with_dataset(backend, &[]).await;
    let young = in_seconds(-60);
    insert(
        &server,
        &path,
        vec![
            row("a", &young, "first a"),
            row("b", &young, "first b"),
            row("c", &young, "c"),
        ],
    )
    .await;
    insert(
        &server,
        &path,
        vec![json!({"id": "a", "expected": "merged a", "_is_merge": true})],
    )
    .await;
    let before: Vec<Value> = server
        .fetch_all(&format!("/v1/dataset/{ds}/fetch"), 100)
        .await;
    let a_before = before.iter().find(|r| r["id"] == "a").unwrap().clone();
    insert(
        &server,
        &path,
        vec![
            json!({"id": "a", "_object_delete": true}),
            json!({"id": "b", "_object_delete": true}),
        ],
    )
    .await;
    let restore = format!("/v1/dataset/{ds}/restore");
    let preview = server
        .ok("POST", &restore, Some(json!({"preview": true})))
        .await;
    assert_eq!(preview["rows"], json!(2), "{preview}");
    assert_eq!(preview["restored"], json!(false));
    assert!(
        preview["restorable_until"].as_str().unwrap() > preview["deleted_at"].as_str().unwrap()
    );
    assert_eq!(
        ids(&server, &format!("/v1/dataset/{ds}/fetch")).await,
        strings(&["c"])
    );
    let (s, b) = server
        .call(
            "POST",
            &restore,
            Some(&server.key),
            Some(json!({"deleted_after": "yesterday"})),
        )
        .await;
    assert_error(s, &b, 400, "invalid_field");
    let none = server
        .ok(
            "POST",
            &restore,
            Some(json!({"deleted_after": in_seconds(3600)})),
        )
        .await;
    assert_eq!(none["rows"], json!(0), "{none}");
    let one = server
        .ok("POST", &restore, Some(json!({"row_ids": ["a"]})))
        .await;
    assert_eq!(one["rows"], json!(1), "{one}");
    let after: Vec<Value> = server
        .fetch_all(&format!("/v1/dataset/{ds}/fetch"), 100)
        .await;
    let a_after = after.iter().find(|r| r["id"] == "a").unwrap();
    for field in ["input", "expected", "created"] {
        assert_eq!(a_after[field], a_before[field], "{field}");
    }
    // b is written again: the restore leaves it as it is now.
    insert(&server, &path, vec![row("b", &young, "second b")]).await;
    let rest = server.ok("POST", &restore, None).await;
    assert_eq!(rest["rows"], json!(0), "{rest}");
    let b_now = server
        .fetch_all(&format!("/v1/dataset/{ds}/fetch"), 100)
        .await
        .into_iter()
        .find(|r| r["id"] == "b")
        .unwrap();
    assert_eq!(b_now["input"], json!("second b"));

    // Logs a policy expired come back only once the policy no longer expires them.
    insert(
        &server,
        &format!("/v1/project_logs/{p}/insert"),
        vec![row("l-old", &in_seconds(-20 * DAY), "old log")],
    )
    .await;
    indexed(&server).await;
    let pol = server
        .ok(
            "POST",
            "/v1/project_automation",
            Some(json!({"project_id": p, "name": "logs", "config": policy("project_logs", 10)})),
        )
        .await;
    reaches(&server, "holdfast_retention_rows_total", 1.0).await;
    let logs_restore = format!("/v1/project_logs/{p}/restore");
    let (s, b) = server
        .call("POST", &logs_restore, Some(&server.key), None)
        .await;
    assert_error(s, &b, 409, "conflict");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"logs\" (10 days)"), "{b}");
    server
        .ok(
            "DELETE",
            &format!("/v1/project_automation/{}", id(&pol)),
            None,
        )
        .await;
    let back = server.ok("POST", &logs_restore, None).await;
    assert_eq!(back["rows"], json!(1), "{back}");
    assert_eq!(
        ids(&server, &format!("/v1/project_logs/{p}/fetch")).await,
        strings(&["l-old"])
    );
    // With the server's clock moved forward: a minute before the default 24-hour grace
    // period ends the deleted row is still restorable; a second after it, it is not.
    insert(
        &server,
        &path,
        vec![json!({"id": "c", "_object_delete": true})],
    )
    .await;
    let day = 24 * 3600;
    server.set_clock(day - 60);
    let late = server
        .ok("POST", &restore, Some(json!({"preview": true})))
        .await;
    assert_eq!(late["rows"], json!(1), "{late}");
    server.set_clock(day + 1);
    for body in [
        Some(json!({"preview": true})),
        Some(json!({"row_ids": ["c"]})),
    ] {
        let gone = server.ok("POST", &restore, body).await;
        assert_eq!(gone["rows"], json!(0), "{gone}");
    }
    assert!(
        !ids(&server, &format!("/v1/dataset/{ds}/fetch"))
            .await
            .contains(&"c".to_owned())
    );
    server.set_clock(0);
    // Rows of a deleted dataset: restore the dataset first.
    server
        .ok("DELETE", &format!("/v1/dataset/{ds}"), None)
        .await;
    let (s, b) = server
        .call(
            "POST",
            &restore,
            Some(&server.key),
            Some(json!({"row_ids": ["b"]})),
        )
        .await;
    assert_error(s, &b, 409, "conflict");
    let audited = server
        .audit_rows()
        .await
        .into_iter()
        .filter(|(_, detail, _)| detail.contains("restored_rows"))
        .count();
    assert!(audited >= 2, "{audited}");
}

/// Uploads an attachment's body under `key` through its signed URL.
async fn upload(server: &Server, key: &str, body: &str) {
    let grant = server
        .ok(
            "POST",
            "/attachment",
            Some(json!({"key": key, "filename": "a.txt", "content_type": "text/plain"})),
        )
        .await;
    let put = crate::harness::client()
        .put(grant["signedUrl"].as_str().unwrap())
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{put:?}");
}

/// An attachment that only purged rows referenced goes with them (blob, record, upload and
/// references), audited; one that another row still references stays until that row goes
/// too; one referenced before rows' references were recorded (per object only) stays with
/// its object.
async fn attachments_of_purged_rows_go(backend: Backend) {
    let (server, _, ds, path) = with_dataset(
        backend,
        &[
            ("HOLDFAST_DELETION_GRACE_SECS", "1"),
            ("HOLDFAST_ENCRYPT_AT_REST", "false"),
        ],
    )
    .await;
    let file = |key: &str| {
        json!({"type": "braintrust_attachment", "key": key, "filename": "a.txt",
               "content_type": "text/plain"})
    };
    insert(
        &server,
        &path,
        vec![
            json!({"id": "gone", "input": {"a": file("only-gone"), "b": file("shared")}}),
            json!({"id": "kept", "input": {"a": file("shared")}}),
            json!({"id": "old", "input": {"a": file("legacy")}}),
        ],
    )
    .await;
    let body = |key: &str| format!("attachment body of {key} 7e1c");
    for key in ["only-gone", "shared", "legacy"] {
        upload(&server, key, &body(key)).await;
    }
    let bodies = [body("only-gone"), body("shared"), body("legacy")];
    let needles: Vec<&str> = bodies.iter().map(String::as_str).collect();
    assert_eq!(
        crate::lifecycle::in_files(&server, &needles).len(),
        3,
        "the blobs hold the bodies before"
    );
    // `legacy` as references were recorded before rows' were: per object only.
    server
        .execute_sql("DELETE FROM attachment_row_refs WHERE key = 'legacy'")
        .await;
    server
        .execute_sql("UPDATE attachment_refs SET by_rows = FALSE WHERE key = 'legacy'")
        .await;
    insert(
        &server,
        &path,
        vec![
            json!({"id": "gone", "_object_delete": true}),
            json!({"id": "old", "_object_delete": true}),
        ],
    )
    .await;
    reaches(&server, "holdfast_purge_rows_total", 2.0).await;
    reaches(&server, "holdfast_purge_attachments_total", 1.0).await;
    let count = |table: &str, key: &str| {
        let sql = format!("SELECT count(*) FROM {table} WHERE key = '{key}'");
        let server = &server;
        async move { server.count_sql(&sql).await }
    };
    for table in [
        "attachments",
        "uploads",
        "attachment_refs",
        "attachment_row_refs",
    ] {
        assert_eq!(count(table, "only-gone").await, 0, "{table}");
        assert_eq!(count(table, "shared").await, 1, "{table}: shared");
    }
    assert_eq!(count("attachments", "legacy").await, 1);
    assert_eq!(count("attachment_refs", "legacy").await, 1);
    let left = crate::lifecycle::in_files(&server, &needles);
    assert!(
        left.len() == 2 && !left.iter().any(|f| f.starts_with(&body("only-gone"))),
        "{left:?}"
    );
    let audited = server
        .audit_rows()
        .await
        .into_iter()
        .filter(|(action, detail, _)| action == "purge" && detail.contains("only-gone"))
        .count();
    assert_eq!(audited, 1);
    // The shared one goes with the last row that referenced it.
    insert(
        &server,
        &path,
        vec![json!({"id": "kept", "_object_delete": true})],
    )
    .await;
    reaches(&server, "holdfast_purge_attachments_total", 2.0).await;
    assert_eq!(count("attachments", "shared").await, 0);
    assert_eq!(
        ids(&server, &format!("/v1/dataset/{ds}/fetch")).await,
        Vec::<String>::new()
    );
    let left = crate::lifecycle::in_files(&server, &needles);
    assert!(
        left.len() == 1 && left[0].starts_with(&body("legacy")),
        "{left:?}"
    );
}

mod run {
    use super::backends;
    on_all_backends!(
        policies_expire_old_data,
        deleted_rows_are_purged,
        deleted_rows_are_restored,
        attachments_of_purged_rows_go
    );
}
