//! `holdfast backup` while the server serves and writes, and `holdfast restore` into a new
//! data directory: every row of every object, the attachments and the keys come back.

use crate::harness::{Backend, Server, client};
use serde_json::{Value, json};

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

const BODY: &str = "the attachment's body, kept through a backup";
const MARKER: &str = "plaintextmarkerbackup";

/// Every object's rows, by path, sorted by id.
async fn all_rows(server: &Server, paths: &[String]) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for p in paths {
        let mut rows = server.fetch_all(p, 50).await;
        rows.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        out.push(rows);
    }
    out
}

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(args)
        .envs(env.iter().copied())
        .env("HOLDFAST_LOG", "warn")
        .output()
        .unwrap()
}

/// Tables of the PostgreSQL database at `url`.
async fn pg_tables(url: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    n
}

/// A store with logs (an attachment with its uploaded body), a dataset, an experiment and a
/// prompt is backed up while a client keeps writing to another dataset; the backup holds no
/// plaintext; restoring without the store's KMS fails and writes nothing; restoring with it
/// gives a store where a server with the old keys reads every row of every object as the
/// original did, the rows written during the backup up to its snapshot, and the attachment.
/// On PostgreSQL the backup holds a `pg_dump` of the database, restored into a new, empty
/// database.
async fn backup_and_restore(backend: Backend) {
    let server = Server::start(backend).await;
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "kept"})))
        .await);
    let mut paths = vec![format!("/v1/project_logs/{p}/fetch")];
    let mut logs = Vec::new();
    for i in 0..300 {
        logs.push(
            json!({"id": format!("l{i}"), "project_id": p, "log_id": "g",
            "input": format!("{MARKER} {i}"), "scores": {"s": (i % 10) as f64 / 10.0},
            "metadata": {"n": i}}),
        );
    }
    logs.push(
        json!({"id": "with-file", "project_id": p, "log_id": "g", "input": {"file":
        {"type": "braintrust_attachment", "key": "att-backup", "filename": "a.txt",
         "content_type": "text/plain"}}}),
    );
    server
        .ok("POST", "/logs3", Some(json!({"rows": logs})))
        .await;
    let upload = server
        .ok(
            "POST",
            "/attachment",
            Some(json!({"key": "att-backup", "filename": "a.txt", "content_type": "text/plain"})),
        )
        .await;
    let put = client()
        .put(upload["signedUrl"].as_str().unwrap())
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    for kind in ["dataset", "experiment"] {
        let o = id(&server
            .ok(
                "POST",
                &format!("/v1/{kind}"),
                Some(json!({"project_id": p, "name": kind})),
            )
            .await);
        let events: Vec<Value> = (0..50)
            .map(|i| json!({"id": format!("{kind}-{i}"), "input": i, "expected": i * 2}))
            .collect();
        server
            .ok(
                "POST",
                &format!("/v1/{kind}/{o}/insert"),
                Some(json!({ "events": events })),
            )
            .await;
        paths.push(format!("/v1/{kind}/{o}/fetch"));
    }
    server
        .ok(
            "POST",
            "/v1/prompt",
            Some(json!({"project_id": p, "name": "greet", "slug": "greet",
                "prompt_data": {"prompt": {"type": "completion", "content": "Hi {{name}}"}}})),
        )
        .await;
    let busy = id(&server
        .ok(
            "POST",
            "/v1/dataset",
            Some(json!({"project_id": p, "name": "busy"})),
        )
        .await);
    let before = all_rows(&server, &paths).await;

    // A client keeps writing while the backup runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, key, busy, stop) = (
            server.url.clone(),
            server.key.clone(),
            busy.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let events: Vec<Value> = (0..20)
                    .map(|i| json!({"id": format!("busy-{n}-{i}"), "input": n}))
                    .collect();
                let r = client()
                    .post(format!("{url}/v1/dataset/{busy}/insert"))
                    .bearer_auth(&key)
                    .json(&json!({ "events": events }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let out_parent = tempfile::tempdir().unwrap();
    let out = out_parent.path().join("backup");
    let store = server.store_args();
    let store: Vec<&str> = store.iter().map(String::as_str).collect();
    let backup = |to: &str| {
        let mut args = vec!["backup", "--to", to];
        args.extend(&store);
        run(&args, &[])
    };
    let done = backup(out.to_str().unwrap());
    assert!(
        done.status.success(),
        "{:?} {} {}",
        done.status,
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let batches = writer.await.unwrap();
    assert!(batches > 0);
    println!("{}", String::from_utf8_lossy(&done.stdout).trim());
    // A second backup into the same place is refused.
    let again = backup(out.to_str().unwrap());
    assert!(!again.status.success());
    let (db_file, new_database) = match backend {
        Backend::Sqlite => ("holdfast.db", None),
        Backend::Postgres => (
            "holdfast.pgdump",
            Some(crate::harness::fresh_database().await),
        ),
    };
    // Sealed (a dump is compressed, so the search for plaintext below would not see it).
    if backend == Backend::Postgres {
        let dump = std::fs::read(out.join(db_file)).unwrap();
        assert!(dump.starts_with(b"HFSTRM1\0"), "the dump is sealed");
    }

    // Encrypted: no file of the backup holds the rows' or the attachment's text.
    let found: Vec<_> = crate::secrets::files(&out)
        .into_iter()
        .filter(|f| {
            let bytes = std::fs::read(f).unwrap();
            crate::secrets::contains(&bytes, MARKER) || crate::secrets::contains(&bytes, BODY)
        })
        .collect();
    assert!(found.is_empty(), "plaintext in the backup: {found:?}");
    assert!(
        !out.join("kms").exists(),
        "the KMS key stays out of the backup"
    );

    // Without the store's KMS the restore fails and leaves no store.
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("data");
    let t = target.to_str().unwrap().to_owned();
    let restore = |data: &str, from: &str| {
        let mut args = vec!["restore", "--data-dir", data, "--from", from];
        if let Some(url) = &new_database {
            args.extend(["--database-url", url.as_str()]);
        }
        run(&args, &[])
    };
    // A backup restored as the other kind of store is refused, saying how.
    let mut args = vec!["restore", "--data-dir", &t, "--from", out.to_str().unwrap()];
    let other = match &new_database {
        Some(_) => Some((None, "--database-url")),
        None if std::env::var("TEST_DATABASE_URL").is_ok() => Some((
            Some(crate::harness::fresh_database().await),
            "without a database URL",
        )),
        None => None,
    };
    if let Some((url, says)) = other {
        if let Some(url) = &url {
            args.extend(["--database-url", url.as_str()]);
        }
        let wrong = run(&args, &[]);
        let err = String::from_utf8_lossy(&wrong.stderr);
        assert!(!wrong.status.success() && err.contains(says), "{err}");
    }
    let refused = restore(&t, out.to_str().unwrap());
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("KMS"), "{err}");
    assert!(!target.join("holdfast.db").exists());
    assert!(!target.join("storage.key").exists());
    if let Some(url) = &new_database {
        assert_eq!(
            pg_tables(url).await,
            0,
            "nothing restored into the database"
        );
    }
    // With it (the local KMS's directory, carried over on its own) the store comes back.
    std::fs::remove_dir_all(target.join("kms")).unwrap();
    copy_dir(&server.data_dir().join("kms"), &target.join("kms"));
    let restored = restore(&t, out.to_str().unwrap());
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    println!("{}", String::from_utf8_lossy(&restored.stdout).trim());
    // A damaged backup is refused before anything is written.
    let other = tempfile::tempdir().unwrap();
    let damaged = other.path().join("b");
    copy_dir(&out, &damaged);
    let db = damaged.join(db_file);
    let mut bytes = std::fs::read(&db).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&db, bytes).unwrap();
    let bad = run(
        &[
            "restore",
            "--data-dir",
            other.path().join("d").to_str().unwrap(),
            "--from",
            damaged.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("damaged"));

    let copy = Server::start_on_store(&target, &server.key, new_database.clone(), &[]).await;
    let after = all_rows(&copy, &paths).await;
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(a.len(), b.len());
        assert_eq!(a, b, "every row as it was");
    }
    // The dataset written during the backup: whole requests, each row as the original has it.
    let busy_path = format!("/v1/dataset/{busy}/fetch");
    let original: std::collections::HashMap<String, Value> = server
        .fetch_all(&busy_path, 500)
        .await
        .into_iter()
        .map(|r| (id(&r), r))
        .collect();
    let copied = copy.fetch_all(&busy_path, 500).await;
    assert_eq!(copied.len() % 20, 0, "whole requests: {}", copied.len());
    for r in &copied {
        assert_eq!(Some(r), original.get(&id(r)));
    }
    println!(
        "during the backup {} rows were written; the backup holds {}",
        original.len(),
        copied.len()
    );
    let prompt = copy
        .ok(
            "GET",
            &format!("/v1/prompt?project_id={p}&slug=greet"),
            None,
        )
        .await;
    assert_eq!(prompt["objects"].as_array().unwrap().len(), 1, "{prompt}");
    let down = copy.ok("GET", "/attachment?key=att-backup", None).await;
    let got = client()
        .get(down["downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(got, BODY);
    // A full-text query works on the restored indexes.
    let found = copy
        .ok(
            "POST",
            "/btql",
            Some(json!({"query": format!(
                "select: id | from: project_logs('{p}') | filter: input MATCH '{MARKER}' | limit: 1000")})),
        )
        .await;
    assert_eq!(found["data"].as_array().unwrap().len(), 300);
    // Restoring over a store is refused.
    let over = restore(&t, out.to_str().unwrap());
    assert!(!over.status.success());
    if new_database.is_some() {
        let fresh = tempfile::tempdir().unwrap();
        let over = restore(fresh.path().to_str().unwrap(), out.to_str().unwrap());
        let err = String::from_utf8_lossy(&over.stderr);
        assert!(
            !over.status.success() && err.contains("restore into an empty database"),
            "{err}"
        );
    }
}

/// To a bucket (moto's S3 server) and back: every object server-side encrypted and without
/// plaintext, the manifest written last, and the restored store serving every row.
#[tokio::test(flavor = "multi_thread")]
async fn backup_to_s3_and_back() {
    let moto = crate::secrets::Moto::start();
    let bucket = moto.create_bucket("holdfast-backups").await;
    let env = [
        ("HOLDFAST_S3_BUCKET", "holdfast-backups"),
        ("HOLDFAST_S3_PREFIX", "team-a/"),
        ("HOLDFAST_S3_REGION", "us-east-1"),
        ("HOLDFAST_S3_ENDPOINT", moto.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let server = Server::start_with(Backend::Sqlite, &env).await;
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "kept"})))
        .await);
    let rows: Vec<Value> = (0..100)
        .map(|i| {
            json!({"id": format!("r{i}"), "project_id": p, "log_id": "g",
                        "input": format!("{MARKER} {i}")})
        })
        .collect();
    server
        .ok("POST", "/logs3", Some(json!({ "rows": rows })))
        .await;
    let path = format!("/v1/project_logs/{p}/fetch");
    let before = all_rows(&server, std::slice::from_ref(&path)).await;
    let data = server.data_dir().to_str().unwrap().to_owned();
    let done = run(&["backup", "--data-dir", &data, "--s3"], &env);
    let stdout = String::from_utf8_lossy(&done.stdout).into_owned();
    assert!(
        done.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let backup_id = stdout
        .split("restore --s3 ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(')')
        .to_owned();
    let http = client();
    let names = crate::secrets::object_names(&http, &bucket).await;
    assert!(
        names.contains(&format!("team-a/backups/{backup_id}/backup.json")),
        "{names:?}"
    );
    let s3 = moto.s3("holdfast-backups");
    for n in &names {
        assert!(s3.encryption_of(n).await.unwrap().is_some(), "{n}");
        let bytes = s3.get(n).await.unwrap().unwrap();
        assert!(!crate::secrets::contains(&bytes, MARKER), "{n}");
    }
    assert!(
        std::fs::read_dir(server.data_dir()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".backup")),
        "the local copy is removed"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("data");
    copy_dir(&server.data_dir().join("kms"), &target.join("kms"));
    let t = target.to_str().unwrap().to_owned();
    let restored = run(&["restore", "--data-dir", &t, "--s3", &backup_id], &env);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let missing = run(
        &["restore", "--data-dir", &t, "--s3", "no-such-backup"],
        &env,
    );
    assert!(!missing.status.success());
    let copy = Server::start_on(&target, &server.key, &env).await;
    assert_eq!(all_rows(&copy, std::slice::from_ref(&path)).await, before);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

mod run {
    use super::backends;
    on_all_backends!(backup_and_restore);
}

use crate::harness::backends;
