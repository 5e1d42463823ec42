//! The data lifecycle: deleted projects and objects restored within the grace period, and
//! refused after it; purged for good after it, with nothing left in the store's tables or
//! files, also when the purge is killed halfway.

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

/// With the default grace period of 24 hours and the server's clock moved forward: a
/// minute before the period ends a restore is still possible; a second after it, a restore
/// (even a preview) is refused naming when it ended, and nothing comes back.
async fn restore_refused_after_grace(backend: Backend) {
    let server = Server::start(backend).await;
    let restore = |p: &str| format!("/v1/project/{p}/restore");
    let preview = Some(json!({"preview": true}));
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "brief"})))
        .await);
    server.ok("DELETE", &format!("/v1/project/{p}"), None).await;
    let day = 24 * 3600;
    server.set_clock(day - 60);
    let shown = server.ok("POST", &restore(&p), preview.clone()).await;
    assert_eq!(shown["restored"], json!(false), "{shown}");
    server.set_clock(day + 1);
    for body in [preview, None] {
        let (s, b) = call(&server, "POST", &restore(&p), body).await;
        assert_error(s, &b, 409, "conflict");
        assert!(
            b.to_string().contains("grace period for restoring ended"),
            "{b}"
        );
    }
    let (s, _) = call(&server, "GET", &format!("/v1/project/{p}"), None).await;
    assert_eq!(s, 404);
    // Back inside the period (the clock moved back), the same project is restored.
    server.set_clock(day - 60);
    let done = server.ok("POST", &restore(&p), None).await;
    assert_eq!(done["restored"], json!(true), "{done}");
    server.ok("GET", &format!("/v1/project/{p}"), None).await;
}

/// Words and an attachment body that only what is purged holds.
const GONE_WORD: &str = "quarantinedzebrafinch";
const GONE_WORD_2: &str = "vanishedokapi";
const GONE_BODY: &str = "attachment to purge: 5500-0000-0000-0004";
const KEPT_WORD: &str = "keptmarmoset";

/// A server that purges one second after a deletion, checking every second, in batches of
/// `batch` versions, with its files unencrypted so that a search of them means something.
async fn purging_server(backend: Backend, batch: &str) -> Server {
    Server::start_with(
        backend,
        &[
            ("HOLDFAST_DELETION_GRACE_SECS", "1"),
            ("HOLDFAST_PURGE_INTERVAL_SECS", "1"),
            ("HOLDFAST_PURGE_BATCH_ROWS", batch),
            ("HOLDFAST_ENCRYPT_AT_REST", "false"),
            ("HOLDFAST_METRICS_TOKEN", "purge-test"),
            // A restarted server carries on after the lease its first run held expires.
            ("HOLDFAST_PURGE_LEASE_SECS", "2"),
        ],
    )
    .await
}

/// Inserts rows into a dataset or an experiment.
async fn insert(server: &Server, kind: &str, object_id: &str, events: Vec<Value>) {
    server
        .ok(
            "POST",
            &format!("/v1/{kind}/{object_id}/insert"),
            Some(json!({"events": events})),
        )
        .await;
}

/// Waits until the word and value indexes hold every version written.
pub(crate) async fn indexed(server: &Server) {
    for _ in 0..600 {
        if server.metric("holdfast_search_index_lag_versions").await == 0.0
            && server.metric("holdfast_index_lag_versions").await == 0.0
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the indexes did not catch up");
}

/// Waits until the purge has removed `n` projects and objects since the server started.
async fn purged(server: &Server, n: f64) {
    for _ in 0..1200 {
        if server.metric("holdfast_purge_objects_total").await >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "the purge did not finish: {} objects",
        server.metric("holdfast_purge_objects_total").await
    );
}

/// `'a', 'b'`: ids for an SQL `IN` list (uuids, so safe to quote).
fn sql_list(ids: &[&str]) -> String {
    ids.iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which of the needles some file under the data directory holds.
pub(crate) fn in_files(server: &Server, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for f in crate::secrets::files(server.data_dir()) {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        for n in needles {
            if crate::secrets::contains(&bytes, n) {
                found.push(format!("{n} in {}", f.display()));
            }
        }
    }
    found
}

/// A deleted project (logs with traces and an attachment, a dataset, an experiment, a
/// prompt) and a deleted dataset of a live project are purged once the grace period ends:
/// no version, index entry, word, attachment, grant or record of them is left in the
/// store, nor any of their text in the data directory's files (which held it before); the
/// live project keeps all of its own; each purge is audited and counted in the metrics.
async fn purge_after_grace(backend: Backend) {
    let server = purging_server(backend, "7").await;
    let doomed = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "doomed"})))
        .await);
    let attachment = json!({"type": "braintrust_attachment", "key": "att-purge",
                            "filename": "a.txt", "content_type": "text/plain"});
    let mut logs = Vec::new();
    for t in 0..10 {
        logs.push(
            json!({"id": format!("root-{t}"), "span_id": format!("root-{t}"),
            "root_span_id": format!("root-{t}"), "project_id": doomed, "log_id": "g",
            "input": format!("{GONE_WORD} asked {t}"), "metadata": {"note": GONE_WORD, "n": t},
            "tags": ["t"]}),
        );
        logs.push(
            json!({"id": format!("child-{t}"), "span_id": format!("child-{t}"),
            "root_span_id": format!("root-{t}"), "span_parents": [format!("root-{t}")],
            "project_id": doomed, "log_id": "g", "output": GONE_WORD}),
        );
    }
    logs.push(
        json!({"id": "with-file", "project_id": doomed, "log_id": "g",
                     "input": {"file": attachment}}),
    );
    server
        .ok("POST", "/logs3", Some(json!({"rows": logs})))
        .await;
    // An update: a second version of a row.
    server
        .ok(
            "POST",
            "/logs3",
            Some(
                json!({"rows": [{"id": "root-0", "project_id": doomed, "log_id": "g",
                                  "output": GONE_WORD, "_is_merge": true}]}),
            ),
        )
        .await;
    let upload = server
        .ok(
            "POST",
            "/attachment",
            Some(json!({"key": "att-purge", "filename": "a.txt", "content_type": "text/plain"})),
        )
        .await;
    let put = crate::harness::client()
        .put(upload["signedUrl"].as_str().unwrap())
        .body(GONE_BODY)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let mut purged_ids = vec![doomed.clone()];
    for kind in ["dataset", "experiment"] {
        let o = id(&server
            .ok(
                "POST",
                &format!("/v1/{kind}"),
                Some(json!({"project_id": doomed, "name": kind})),
            )
            .await);
        let events = vec![json!({"id": "e1", "input": GONE_WORD, "expected": GONE_WORD})];
        insert(&server, kind, &o, events).await;
        purged_ids.push(o);
    }
    let prompt = id(&server
        .ok(
            "POST",
            "/v1/prompt",
            Some(json!({"project_id": doomed, "name": "p", "slug": "p",
                        "prompt_data": {"prompt": {"type": "completion", "content": GONE_WORD}}})),
        )
        .await);
    purged_ids.push(prompt);
    // A live project with a dataset it keeps and one deleted alone.
    let kept = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "kept"})))
        .await);
    let mut kept_datasets = Vec::new();
    for (name, word) in [("stays", KEPT_WORD), ("goes", GONE_WORD_2)] {
        let ds = id(&server
            .ok(
                "POST",
                "/v1/dataset",
                Some(json!({"project_id": kept, "name": name})),
            )
            .await);
        let events: Vec<Value> = (0..12)
            .map(|i| {
                json!({"id": format!("r{i}"), "input": format!("{word} {i}"),
                            "metadata": {"word": word}})
            })
            .collect();
        insert(&server, "dataset", &ds, events).await;
        kept_datasets.push(ds);
    }
    let (stays, goes) = (kept_datasets[0].clone(), kept_datasets[1].clone());
    purged_ids.push(goes.clone());
    // Grants on what goes, and one on what stays.
    let users = server.ok("GET", "/v1/user", None).await;
    let user = users["objects"][0]["id"].clone();
    for (object_type, object_id) in [
        ("project", doomed.as_str()),
        ("dataset", purged_ids[1].as_str()),
        ("dataset", goes.as_str()),
        ("dataset", stays.as_str()),
    ] {
        server
            .ok(
                "POST",
                "/v1/acl",
                Some(json!({"object_type": object_type, "object_id": object_id,
                            "user_id": user, "permission": "update"})),
            )
            .await;
    }
    indexed(&server).await;
    let ids: Vec<&str> = purged_ids.iter().map(String::as_str).collect();
    let list = sql_list(&ids);
    let seqs: Vec<i64> = {
        let sql = format!("SELECT seq FROM rows WHERE object_id IN ({list})");
        match &server.database_url {
            Some(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let s = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                s
            }
            None => {
                let pool = server.sqlite_pool().await;
                let s = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                s
            }
        }
    };
    assert_eq!(seqs.len(), 21 + 1 + 2 + 1 + 12, "{seqs:?}");
    let seq_list = seqs
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    // What the purge must remove is there now: entries in the value and word indexes, and
    // (on the embedded store, unencrypted) the words and the attachment in the files.
    let words_table = match backend {
        Backend::Sqlite => "row_text",
        Backend::Postgres => "row_words",
    };
    let count_of = |table: &str, column: &str| {
        format!("SELECT count(*) FROM {table} WHERE {column} IN ({seq_list})")
    };
    assert!(server.count_sql(&count_of("row_values", "seq")).await > 0);
    let words_column = if backend == Backend::Sqlite {
        "rowid"
    } else {
        "seq"
    };
    assert!(server.count_sql(&count_of(words_table, words_column)).await > 0);
    // The experiments page keeps the experiment's score summary in the store.
    let (status, page) = call(&server, "GET", "/app/default/p/doomed/experiments", None).await;
    assert_eq!(status, 200, "{page}");
    let summaries = format!("SELECT count(*) FROM score_summaries WHERE object_id IN ({list})");
    assert_eq!(server.count_sql(&summaries).await, 1);
    let needles = [GONE_WORD, GONE_WORD_2, GONE_BODY];
    let before = in_files(&server, &needles);
    assert!(
        before.iter().any(|f| f.starts_with(GONE_BODY)),
        "{before:?}"
    );
    if backend == Backend::Sqlite {
        for w in [GONE_WORD, GONE_WORD_2] {
            assert!(before.iter().any(|f| f.starts_with(w)), "{w}: {before:?}");
        }
    }
    server
        .ok("DELETE", &format!("/v1/project/{doomed}"), None)
        .await;
    server
        .ok("DELETE", &format!("/v1/dataset/{goes}"), None)
        .await;
    purged(&server, 2.0).await;
    // Gone for good: no restore, no trace in any table.
    let (s, b) = call(
        &server,
        "POST",
        &format!("/v1/project/{doomed}/restore"),
        None,
    )
    .await;
    assert_error(s, &b, 404, "not_found");
    let (s, b) = call(
        &server,
        "POST",
        &format!("/v1/dataset/{goes}/restore"),
        None,
    )
    .await;
    assert_error(s, &b, 404, "not_found");
    for (table, column) in [
        ("rows", "object_id"),
        ("row_index", "object_id"),
        ("objects", "id"),
        ("projects", "id"),
        ("attachment_refs", "object_id"),
        ("attachments", "object_id"),
        ("acls", "object_id"),
        ("score_summaries", "object_id"),
    ] {
        let n = server
            .count_sql(&format!(
                "SELECT count(*) FROM {table} WHERE {column} IN ({list})"
            ))
            .await;
        assert_eq!(n, 0, "{table}");
    }
    let mut by_seq = vec![("row_values", "seq"), (words_table, words_column)];
    match backend {
        Backend::Sqlite => by_seq.push(("trace_index", "seq")),
        Backend::Postgres => by_seq.push(("row_words_pending", "seq")),
    }
    for (table, column) in by_seq {
        assert_eq!(
            server.count_sql(&count_of(table, column)).await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        server
            .count_sql("SELECT count(*) FROM uploads WHERE key = 'att-purge'")
            .await,
        0
    );
    // The live project keeps its dataset, searchable, and its value entries.
    assert_eq!(rows(&server, &stays).await, 12);
    assert_eq!(
        server
            .count_sql(&format!(
                "SELECT count(*) FROM acls WHERE object_id = '{stays}'"
            ))
            .await,
        1
    );
    let found = server
        .ok(
            "POST",
            "/btql",
            Some(json!({"query": format!(
                "select: id | from: dataset('{stays}') | filter: input MATCH '{KEPT_WORD}'"
            )})),
        )
        .await;
    assert_eq!(found["data"].as_array().unwrap().len(), 12, "{found}");
    assert!(server.count_sql("SELECT count(*) FROM row_values").await > 0);
    // Audited, once per project or object purged, and counted.
    let audit: Vec<(String, String, Option<String>)> = server
        .audit_rows()
        .await
        .into_iter()
        .filter(|(action, ..)| action == "purge")
        .collect();
    assert_eq!(audit.len(), 2, "{audit:?}");
    let project_entry: Value = serde_json::from_str(&audit[0].1).unwrap();
    assert_eq!(project_entry["name"], "doomed", "{project_entry}");
    assert_eq!(project_entry["versions"], 21 + 1 + 2 + 1, "{project_entry}");
    assert_eq!(project_entry["attachments"], 1, "{project_entry}");
    let dataset_entry: Value = serde_json::from_str(&audit[1].1).unwrap();
    assert_eq!(dataset_entry["name"], "goes");
    assert_eq!(dataset_entry["versions"], 12);
    assert_eq!(server.metric("holdfast_purge_versions_total").await, 37.0);
    assert_eq!(server.metric("holdfast_purge_attachments_total").await, 1.0);
    assert_eq!(server.metric("holdfast_purge_failures_total").await, 0.0);
    // Nothing of it in the files: the database, its log and the blobs.
    let after = in_files(&server, &needles);
    assert_eq!(after, Vec::<String>::new());
}

/// A purge killed with `kill -9` halfway through a large dataset is carried on after the
/// restart: every version goes, the record last, audited once.
async fn purge_resumes_after_kill(backend: Backend) {
    let mut server = purging_server(backend, "20").await;
    let ds = server.new_dataset("big", "d").await;
    const ROWS: usize = 6_000;
    for chunk in 0..ROWS / 1000 {
        let events: Vec<Value> = (0..1000)
            .map(|i| {
                json!({"id": format!("r{chunk}-{i}"), "input": format!("{GONE_WORD} {i}"),
                            "metadata": {"i": i}})
            })
            .collect();
        insert(&server, "dataset", &ds, events).await;
    }
    indexed(&server).await;
    server
        .ok("DELETE", &format!("/v1/dataset/{ds}"), None)
        .await;
    let mut removed = 0.0;
    for _ in 0..600 {
        removed = server.metric("holdfast_purge_versions_total").await;
        if removed > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill9();
    assert!(
        removed > 0.0 && removed < ROWS as f64,
        "the kill came too late to interrupt the purge: {removed} removed"
    );
    let remaining = server
        .count_sql(&format!(
            "SELECT count(*) FROM rows WHERE object_id = '{ds}'"
        ))
        .await;
    assert!(remaining > 0 && remaining < ROWS as i64, "{remaining}");
    server.spawn().await;
    purged(&server, 1.0).await;
    for table in ["rows", "row_index"] {
        let n = server
            .count_sql(&format!(
                "SELECT count(*) FROM {table} WHERE object_id = '{ds}'"
            ))
            .await;
        assert_eq!(n, 0, "{table}");
    }
    assert_eq!(
        server
            .count_sql(&format!("SELECT count(*) FROM objects WHERE id = '{ds}'"))
            .await,
        0
    );
    assert_eq!(
        server.count_sql("SELECT count(*) FROM row_values").await,
        0,
        "value entries of purged versions"
    );
    let purges = server
        .audit_rows()
        .await
        .into_iter()
        .filter(|(action, ..)| action == "purge")
        .count();
    assert_eq!(purges, 1);
    assert!(in_files(&server, &[GONE_WORD]).is_empty());
}

mod run {
    use super::backends;
    on_all_backends!(
        restore_within_grace,
        restore_refused_after_grace,
        purge_after_grace,
        purge_resumes_after_kill
    );
}
