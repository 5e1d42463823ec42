//! Exports through the CLI while the server serves: an organization or one project, at one
//! point in time, sealed under a key the KMS wraps (or plain when asked), split into parts,
//! checked and opened again; tampering, another organization's data and another KMS are
//! refused; to a bucket with server-side encryption; rows as Parquet, read back by pyarrow
//! and duckdb.

use crate::harness::{Backend, Server, assert_error, backends};
use crate::secrets::{contains, files, id};
use serde_json::{Value, json};
use std::path::Path;

const SENTENCE: &str = "the patient reported chest pain after the second dose";
const OTHER_ORG_TEXT: &str = "acme quarterly numbers, not for default";
const EXPERIMENT_ROWS: usize = 2500;

/// Runs the CLI; returns (success, stdout as JSON or Null, stderr).
fn cli(server: &Server, args: &[&str]) -> (bool, Value, String) {
    let out = server.cli(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.success(),
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every line of every `.jsonl` file of an opened export, by its path.
fn lines(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for f in files(dir) {
        let rel = f.strip_prefix(dir).unwrap().display().to_string();
        if rel.ends_with(".jsonl") {
            for l in std::fs::read_to_string(&f).unwrap().lines() {
                out.push((rel.clone(), serde_json::from_str(l).unwrap()));
            }
        }
    }
    out
}

/// A project with logs, an experiment of 2,500 rows (one of them merged afterwards, one
/// deleted), a dataset and a prompt; a second project; and another organization's project.
async fn fill(server: &Server) -> (String, String) {
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "clinic"})))
        .await);
    let e = id(&server
        .ok(
            "POST",
            "/v1/experiment",
            Some(json!({"name": "e1", "project_id": p})),
        )
        .await);
    let d = id(&server
        .ok(
            "POST",
            "/v1/dataset",
            Some(json!({"name": "d1", "project_id": p})),
        )
        .await);
    server
        .ok(
            "POST",
            "/v1/prompt",
            Some(json!({"project_id": p, "name": "G", "slug": "g",
                        "prompt_data": {"prompt": {"type": "completion", "content": "Hi {{name}}"}}})),
        )
        .await;
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": [
                {"id": "log-1", "project_id": p, "log_id": "g", "input": SENTENCE},
                {"id": "ds-1", "dataset_id": d, "input": "q", "expected": "a"},
            ]})),
        )
        .await;
    let padding = "x".repeat(600);
    for batch in 0..5 {
        let rows: Vec<Value> = (0..EXPERIMENT_ROWS / 5)
            .map(|i| {
                let n = batch * (EXPERIMENT_ROWS / 5) + i;
                json!({"id": format!("row-{n:05}"), "experiment_id": e, "input": n,
                       "output": padding, "scores": {"acc": 0}})
            })
            .collect();
        server
            .ok("POST", "/logs3", Some(json!({"rows": rows})))
            .await;
    }
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": [
                {"id": "row-00007", "experiment_id": e, "_is_merge": true, "scores": {"acc": 1}},
                {"id": "gone", "experiment_id": e, "input": "to delete"},
            ]})),
        )
        .await;
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": [{"id": "gone", "experiment_id": e, "_object_delete": true}]})),
        )
        .await;
    let other = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "other"})))
        .await);
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": [{"id": "o-1", "project_id": other, "log_id": "g", "input": "other project"}]})),
        )
        .await;
    // Another organization, with text that must never be in default's export.
    let acme_key = server.cli_line(&["org", "create", "acme", "--owner", "ceo@acme.test"]);
    let (status, acme_project) = server
        .call(
            "POST",
            "/v1/project",
            Some(&acme_key),
            Some(json!({"name": "clinic"})),
        )
        .await;
    assert_eq!(status, 200, "{acme_project}");
    let (status, body) = server
        .call(
            "POST",
            "/logs3",
            Some(&acme_key),
            Some(
                json!({"rows": [{"id": "a-1", "project_id": id(&acme_project), "log_id": "g",
                                  "input": OTHER_ORG_TEXT}]}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (p, e)
}

/// A row's identity, to put two readings of the same rows in one order.
fn row_key(row: &Value) -> (String, String) {
    (row["id"].to_string(), row["_xact_id"].to_string())
}

/// Rows exported as Parquet (sealed, in parts), opened, and read by pyarrow and duckdb:
/// the same rows as the JSON Lines export of the same store, field for field.
async fn parquet_exports(backend: Backend) {
    let server = Server::start(backend).await;
    let (_, experiment) = fill(&server).await;
    let reference = tempfile::tempdir().unwrap();
    let (ok, jsonl, err) = cli(
        &server,
        &[
            "export",
            "create",
            "--org",
            "default",
            "--plaintext",
            "--to",
            reference.path().to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let expected: Vec<Value> = {
        let mut rows: Vec<Value> = lines(&reference.path().join(jsonl["id"].as_str().unwrap()))
            .into_iter()
            .filter(|(f, _)| f.starts_with("rows/"))
            .map(|(_, v)| v)
            .collect();
        rows.sort_by_key(row_key);
        rows
    };
    let (ok, done, err) = cli(
        &server,
        &[
            "export",
            "create",
            "--org",
            "default",
            "--format",
            "parquet",
            "--part-mib",
            "1",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(done["totals"]["rows"], expected.len(), "{done}");
    let export_id = done["id"].as_str().unwrap().to_owned();
    let dir = server.data_dir().join("exports").join(&export_id);
    let stored = files(&dir);
    let experiment_parts = stored
        .iter()
        .filter(|f| f.display().to_string().contains(&experiment))
        .count();
    assert!(experiment_parts >= 2, "{stored:?}");
    for f in &stored {
        let name = f.file_name().unwrap().to_str().unwrap();
        let rel = f.strip_prefix(&dir).unwrap().display().to_string();
        assert!(
            name == "manifest.json"
                || (rel.starts_with("rows/") && name.ends_with(".parquet.enc"))
                || (!rel.starts_with("rows/") && name.ends_with(".jsonl.enc")),
            "{rel}"
        );
        assert!(!contains(&std::fs::read(f).unwrap(), SENTENCE), "{rel}");
    }
    let plain = tempfile::tempdir().unwrap();
    let to = plain.path().join("opened");
    let (ok, opened, err) = cli(
        &server,
        &["export", "open", &export_id, "--to", to.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert_eq!(opened["totals"]["rows"], expected.len());
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../compat/.venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../compat/py/read_parquet.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&to)
        .output()
        .expect("run compat/.venv/bin/python (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(read["files"].as_u64().unwrap() >= 4, "{}", read["files"]);
    let mut rows = read["pyarrow_rows"].as_array().unwrap().clone();
    rows.sort_by_key(row_key);
    assert_eq!(rows.len(), expected.len());
    for (got, want) in rows.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    assert_eq!(read["duckdb_count"], expected.len());
    assert_eq!(read["duckdb_distinct_ids"], expected.len());
    assert_eq!(read["duckdb_acc"], json!([1]), "the merged score");
    // Whole Parquet files, with the magic number at both ends.
    let first = files(&to)
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let bytes = std::fs::read(&first).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
    assert_eq!(&bytes[bytes.len() - 4..], b"PAR1");
}

async fn exports(backend: Backend) {
    let server = Server::start(backend).await;
    let (project, experiment) = fill(&server).await;
    let exports = server.data_dir().join("exports");

    // The whole organization, sealed (the default), in files of at most 1 MiB of rows.
    let (ok, done, err) = cli(
        &server,
        &["export", "create", "--org", "default", "--part-mib", "1"],
    );
    assert!(ok, "{err}");
    let export_id = done["id"].as_str().unwrap().to_owned();
    let expected_rows = EXPERIMENT_ROWS + 1 /* log */ + 1 /* dataset */ + 1 /* prompt */ + 1 /* other */;
    assert_eq!(done["totals"]["rows"], expected_rows, "{done}");
    assert_eq!(done["totals"]["projects"], 2, "{done}");
    assert_eq!(done["totals"]["objects"], 3, "{done}");
    assert_eq!(done["encrypted"], true);
    let dir = exports.join(&export_id);
    let stored = files(&dir);
    assert!(stored.iter().all(|f| {
        let name = f.file_name().unwrap().to_str().unwrap();
        name == "manifest.json" || name.ends_with(".jsonl.enc")
    }));
    for f in &stored {
        let bytes = std::fs::read(f).unwrap();
        for needle in [
            SENTENCE,
            "row-00007",
            "clinic",
            "Hi {{name}}",
            OTHER_ORG_TEXT,
        ] {
            assert!(
                !contains(&bytes, needle),
                "{needle:?} readable in {}",
                f.display()
            );
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", f.display());
    }
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(
        manifest["encryption"]["kek_id"]
            .as_str()
            .unwrap()
            .starts_with("local:")
    );
    let experiment_parts: Vec<&Value> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["object_id"] == experiment.as_str())
        .collect();
    assert!(experiment_parts.len() >= 2, "{experiment_parts:?}");
    assert!(
        experiment_parts
            .iter()
            .all(|f| f["bytes"].as_u64().unwrap() < (1 << 20) + 4096)
    );

    // Written after the export began: not in it.
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": [{"id": "late", "project_id": project, "log_id": "g", "input": "late"}]})),
        )
        .await;

    // Opened with the KMS: every row, newest versions, no deleted row, nothing of acme.
    let plain = tempfile::tempdir().unwrap();
    let to = plain.path().join("opened");
    let (ok, opened, err) = cli(
        &server,
        &["export", "open", &export_id, "--to", to.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert_eq!(opened["totals"]["rows"], expected_rows);
    let all = lines(&to);
    let rows: Vec<&Value> = all
        .iter()
        .filter(|(f, _)| f.starts_with(&format!("rows/experiment/{experiment}/")))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(rows.len(), EXPERIMENT_ROWS);
    assert!(
        rows.windows(2)
            .all(|w| w[0]["id"].as_str() < w[1]["id"].as_str())
    );
    let merged = rows.iter().find(|r| r["id"] == "row-00007").unwrap();
    assert_eq!(merged["scores"]["acc"], 1);
    assert_eq!(merged["input"], 7);
    assert!(
        all.iter()
            .all(|(_, v)| v["id"] != "gone" && v["id"] != "late")
    );
    assert!(all.iter().any(|(_, v)| v["input"] == SENTENCE));
    assert!(
        all.iter()
            .any(|(f, v)| f == "objects.jsonl" && v["object_type"] == "prompt")
    );
    // A prompt's versions are its rows.
    assert!(all.iter().any(|(f, v)| f.starts_with("rows/prompt/")
        && v["prompt_data"]["prompt"]["content"] == "Hi {{name}}"));
    assert!(
        all.iter()
            .any(|(f, v)| f == "objects.jsonl" && v["object_type"] == "dataset")
    );
    let text: Vec<u8> = files(&to)
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(!contains(&text, OTHER_ORG_TEXT));
    assert!(!contains(&text, "ceo@acme.test"));

    // Opening into a folder that exists is refused and changes nothing.
    let (ok, _, err) = cli(
        &server,
        &["export", "open", &export_id, "--to", to.to_str().unwrap()],
    );
    assert!(!ok && err.contains("already exists"), "{err}");

    // Tampering: an altered file is caught by its digest; with the digest fixed in the
    // manifest too, by its authentication tag; a file moved to another part's place, by its
    // key. Nothing is written in each case.
    let victim = dir.join(experiment_parts[0]["path"].as_str().unwrap());
    let original = std::fs::read(&victim).unwrap();
    let mut altered = original.clone();
    let at = altered.len() / 2;
    altered[at] ^= 0x20;
    std::fs::write(&victim, &altered).unwrap();
    let refused = |what: &str, expect: &str| {
        let to = plain.path().join(what);
        let (ok, _, err) = cli(
            &server,
            &["export", "open", &export_id, "--to", to.to_str().unwrap()],
        );
        assert!(!ok && err.contains(expect), "{what}: {err}");
        assert!(!to.exists(), "{what}");
    };
    refused("altered", "differs from the manifest");
    let rewrite_manifest = |f: &dyn Fn(&mut Value)| {
        let mut m = manifest.clone();
        f(&mut m);
        std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    };
    let digest = holdfast_crypto::sigv4::sha256_hex;
    let victim_path = experiment_parts[0]["path"].clone();
    rewrite_manifest(&|m| {
        for f in m["files"].as_array_mut().unwrap() {
            if f["path"] == victim_path {
                f["sha256"] = json!(digest(&altered));
            }
        }
    });
    // The manifest is authenticated: edited digests no longer pass.
    refused("altered-and-rehashed", "not authentic");
    std::fs::write(&victim, &original).unwrap();
    // Two parts swapped, manifest entries swapped with them.
    let second = dir.join(experiment_parts[1]["path"].as_str().unwrap());
    let second_bytes = std::fs::read(&second).unwrap();
    std::fs::write(&victim, &second_bytes).unwrap();
    std::fs::write(&second, &original).unwrap();
    let (p0, p1) = (experiment_parts[0].clone(), experiment_parts[1].clone());
    rewrite_manifest(&|m| {
        for f in m["files"].as_array_mut().unwrap() {
            let path = f["path"].clone();
            let src = if path == p0["path"] {
                &p1
            } else if path == p1["path"] {
                &p0
            } else {
                continue;
            };
            for k in ["bytes", "sha256", "records"] {
                f[k] = src[k].clone();
            }
        }
    });
    refused("swapped", "not authentic");
    std::fs::write(&victim, &original).unwrap();
    std::fs::write(&second, &second_bytes).unwrap();
    // A sealed export's manifest made to say plaintext, or stripped of its authentication.
    rewrite_manifest(&|m| m["encryption"] = Value::Null);
    refused("made-plaintext", "not authentic");
    rewrite_manifest(&|m| {
        m.as_object_mut().unwrap().remove("authentication");
    });
    refused("unauthenticated", "not authenticated");
    rewrite_manifest(&|_| {});

    // Another installation's KMS cannot unwrap the export key.
    let elsewhere = tempfile::tempdir().unwrap();
    let to = plain.path().join("elsewhere");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args([
            "export",
            "open",
            &export_id,
            "--from",
            exports.to_str().unwrap(),
            "--to",
        ])
        .arg(&to)
        .arg("--data-dir")
        .arg(elsewhere.path())
        .env("HOLDFAST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not unwrap"),
        "{err}"
    );
    assert!(!to.exists());

    // One project, in plain JSON Lines when asked: readable, so the checks above can fail.
    let (ok, done, err) = cli(
        &server,
        &[
            "export",
            "create",
            "--org",
            "default",
            "--project",
            "clinic",
            "--plaintext",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(done["encrypted"], false);
    assert_eq!(done["totals"]["projects"], 1);
    // The late row is in this one.
    assert_eq!(done["totals"]["rows"], expected_rows);
    let dir = exports.join(done["id"].as_str().unwrap());
    let text: Vec<u8> = files(&dir)
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(contains(&text, SENTENCE));
    assert!(!contains(&text, "other project"));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["project_id"], project.as_str());
    assert_eq!(manifest["encryption"], Value::Null);
    // A plaintext export put in place of a sealed one, under its id: refused.
    let forged = exports.join(&export_id);
    let sealed_backup = plain.path().join("sealed-backup");
    std::fs::rename(&forged, &sealed_backup).unwrap();
    std::fs::create_dir(&forged).unwrap();
    for f in files(&dir) {
        let rel = f.strip_prefix(&dir).unwrap();
        std::fs::create_dir_all(forged.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&f, forged.join(rel)).unwrap();
    }
    let mut m = manifest.clone();
    m["id"] = json!(export_id);
    m["authentication"]["key_context"] = json!(format!("holdfast-export:{export_id}"));
    std::fs::write(
        forged.join("manifest.json"),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let to = plain.path().join("forged");
    let (ok, _, err) = cli(
        &server,
        &["export", "open", &export_id, "--to", to.to_str().unwrap()],
    );
    assert!(!ok && err.contains("does not unwrap"), "{err}");
    m["authentication"] = Value::Null;
    std::fs::write(
        forged.join("manifest.json"),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let (ok, _, err) = cli(
        &server,
        &["export", "open", &export_id, "--to", to.to_str().unwrap()],
    );
    assert!(!ok && err.contains("not authenticated"), "{err}");
    assert!(!to.exists());
    std::fs::remove_dir_all(&forged).unwrap();
    std::fs::rename(&sealed_backup, &forged).unwrap();

    // Bad requests name the problem and leave nothing behind.
    let before = std::fs::read_dir(&exports).unwrap().count();
    for (args, expect) in [
        (vec!["--org", "nobody"], "not found"),
        (vec!["--org", "default", "--project", "nope"], "not found"),
        (vec!["--org", "default", "--part-mib", "0"], "--part-mib"),
    ] {
        let mut a = vec!["export", "create"];
        a.extend(args);
        let (ok, _, err) = cli(&server, &a);
        assert!(!ok && err.contains(expect), "{a:?}: {err}");
    }
    assert_eq!(std::fs::read_dir(&exports).unwrap().count(), before);

    // The audit log names both exports.
    let log = server.ok("GET", "/v1/audit_log?action=export", None).await;
    let entries = log["objects"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{log}");
    assert!(
        entries
            .iter()
            .any(|e| e["detail"]["export_id"] == export_id.as_str())
    );
}

/// To a bucket (moto's S3 server): every object written with server-side encryption under a
/// KMS key (`aws:kms`, the key made in moto's KMS), sealed, under `exports/<id>/` inside the
/// prefix, and opened again from the bucket.
#[tokio::test(flavor = "multi_thread")]
async fn export_to_s3() {
    let moto = crate::secrets::Moto::start();
    let kms_key = moto.create_kms_key().await;
    let http = crate::harness::client();
    let bucket = moto.create_bucket("holdfast-exports").await;
    let env = [
        ("HOLDFAST_S3_BUCKET", "holdfast-exports"),
        ("HOLDFAST_S3_PREFIX", "team-a/"),
        ("HOLDFAST_S3_REGION", "us-east-1"),
        ("HOLDFAST_S3_ENDPOINT", moto.endpoint.as_str()),
        ("HOLDFAST_S3_SSE", "aws:kms"),
        ("HOLDFAST_S3_SSE_KMS_KEY_ID", kms_key.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let server = Server::start_with(Backend::Sqlite, &env).await;
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "clinic"})))
        .await);
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": [{"id": "log-1", "project_id": p, "log_id": "g", "input": SENTENCE}]})),
        )
        .await;
    let (ok, done, err) = cli(&server, &["export", "create", "--org", "default", "--s3"]);
    assert!(ok, "{err}");
    let export_id = done["id"].as_str().unwrap().to_owned();
    assert_eq!(
        done["location"],
        format!("s3://holdfast-exports/team-a/exports/{export_id}/")
    );
    let names = crate::secrets::object_names(&http, &bucket).await;
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with(&format!("team-a/exports/{export_id}/")))
    );
    let s3 = moto.s3("holdfast-exports");
    for n in &names {
        assert_eq!(
            s3.encryption_of(n).await.unwrap().as_deref(),
            Some("aws:kms"),
            "{n}"
        );
        assert!(
            !contains(&s3.get(n).await.unwrap().unwrap(), SENTENCE),
            "{n}"
        );
    }
    assert!(
        !server.data_dir().join("exports").exists(),
        "nothing on local disk"
    );
    let plain = tempfile::tempdir().unwrap();
    let to = plain.path().join("opened");
    let (ok, opened, err) = cli(
        &server,
        &[
            "export",
            "open",
            &export_id,
            "--s3",
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(opened["totals"]["rows"], 1);
    assert!(lines(&to).iter().any(|(_, v)| v["input"] == SENTENCE));
}

/// The records of the JSON Lines files under `dir`, sorted by their text.
fn jsonl_records(dir: &std::path::Path) -> Vec<Value> {
    let mut out: Vec<Value> = crate::secrets::files(dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

/// The rows of an export's JSON Lines files under `rows/`, by id.
fn exported_ids(dir: &std::path::Path) -> Vec<String> {
    let mut ids = Vec::new();
    for f in crate::secrets::files(&dir.join("rows")) {
        if f.extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(&f).unwrap().lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                ids.push(v["id"].as_str().unwrap().to_owned());
            }
        }
    }
    ids.sort();
    ids
}

/// A scheduled export of a project's logs (`project_automation` with `event_type:
/// "btql_export"`): checked when made; its first run exports every row, the next only the
/// rows written or changed since (by transaction id), one with nothing new exports nothing;
/// a run stopped halfway (left `running`) is done again over the same range; every run is
/// in the history with its range, rows and place.
async fn scheduled_exports(backend: Backend) {
    let server = Server::start_with(
        backend,
        &[
            ("HOLDFAST_PURGE_INTERVAL_SECS", "1"),
            ("HOLDFAST_METRICS_TOKEN", "export-test"),
        ],
    )
    .await;
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "shipped"})))
        .await);
    let log = |ids: &[&str], text: &str| {
        json!({"rows": ids.iter().map(|i| json!({"id": i, "project_id": p, "log_id": "g",
                                                  "input": text})).collect::<Vec<_>>()})
    };
    server
        .ok(
            "POST",
            "/logs3",
            Some(log(&["a1", "a2", "a3", "a4", "a5"], "first")),
        )
        .await;
    let config = |path: &str, interval: i64, kind: &str| {
        json!({"event_type": "btql_export", "export_definition": {"type": kind},
               "export_path": path, "format": "jsonl", "interval_seconds": interval,
               "encrypt": false})
    };
    let query_config = |q: &str| {
        json!({"event_type": "btql_export",
               "export_definition": {"type": "btql_query", "btql_query": q},
               "export_path": "local", "format": "jsonl", "interval_seconds": 3600,
               "encrypt": false})
    };
    // Two scheduled queries: chosen fields of some spans, and counts by input.
    let mut queries = Vec::new();
    for (name, q) in [
        (
            "some",
            format!("select: id, output | from: project_logs('{p}') | filter: id != 'a2'"),
        ),
        (
            "counts",
            format!("from: project_logs('{p}') | dimensions: input as i | measures: count(1) as n"),
        ),
    ] {
        let made = server
            .ok(
                "POST",
                "/v1/project_automation",
                Some(json!({"project_id": p, "name": name, "config": query_config(&q)})),
            )
            .await;
        queries.push(id(&made));
    }
    for (bad, field) in [
        (config("/etc", 3600, "log_spans"), "export_path"),
        (config("s3://elsewhere/x", 3600, "log_spans"), "export_path"),
        (config("local", 5, "log_spans"), "interval_seconds"),
        (config("local", 3600, "log_traces"), "expected `log_spans`"),
        (config("local", 3600, "btql_query"), "needs `btql_query`"),
        (
            query_config(&format!(
                "select: id | from: project_logs('{p}') | limit: 5"
            )),
            "remove `limit`",
        ),
        (
            query_config("select: id | from: project_logs('00000000-0000-0000-0000-000000000000')"),
            "this project's logs only",
        ),
        (
            query_config(&format!("select: id | from: project_logs('{p}') traces")),
            "spans shape",
        ),
        (query_config("select: id from where"), "btql_query"),
        (query_config(&"x".repeat(10_001)), "10000 characters"),
    ] {
        let (s, b) = server
            .call(
                "POST",
                "/v1/project_automation",
                Some(&server.key),
                Some(json!({"project_id": p, "name": "bad", "config": bad})),
            )
            .await;
        assert!(s == 400 && b.to_string().contains(field), "{s} {b}");
    }
    let made = server
        .ok(
            "POST",
            "/v1/project_automation",
            Some(json!({"project_id": p, "name": "hourly", "config": config("local", 3600, "log_spans")})),
        )
        .await;
    assert_eq!(made["config"]["event_type"], json!("btql_export"), "{made}");
    let a = id(&made);
    // Waits until run `n` of automation `a` is done; returns its runs, newest first.
    let done = |a: String, n: i64| {
        let server = &server;
        let runs_path = format!("/v1/project_automation/{a}/runs");
        async move {
            for _ in 0..300 {
                let runs = server.ok("GET", &runs_path, None).await;
                let list = runs["objects"].as_array().unwrap().clone();
                if list
                    .first()
                    .is_some_and(|r| r["run"] == n && r["status"] == "done")
                {
                    return list;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!(
                "run {n} did not finish: {}",
                server.ok("GET", &runs_path, None).await
            );
        }
    };
    let exports = server.data_dir().join("exports");
    let first = done(a.clone(), 1).await;
    let mut first_queries = Vec::new();
    for q in &queries {
        first_queries.push(done(q.clone(), 1).await);
    }
    assert_eq!(first[0]["rows"], json!(5), "{first:?}");
    let dir = exports.join(first[0]["export_id"].as_str().unwrap());
    assert_eq!(exported_ids(&dir), ["a1", "a2", "a3", "a4", "a5"]);
    // New rows and a changed one: only they go in the next run.
    server
        .ok("POST", "/logs3", Some(log(&["b1", "b2"], "second")))
        .await;
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": [{"id": "a1", "project_id": p, "log_id": "g",
                                  "output": "changed", "_is_merge": true}]})),
        )
        .await;
    server
        .ok("POST", &format!("/v1/project_automation/{a}/run"), None)
        .await;
    let second = done(a.clone(), 2).await;
    assert_eq!(second[0]["rows"], json!(3), "{second:?}");
    assert_eq!(second[0]["from_xact"], first[0]["to_xact"]);
    let dir2 = exports.join(second[0]["export_id"].as_str().unwrap());
    assert_eq!(exported_ids(&dir2), ["a1", "b1", "b2"]);
    // The scheduled queries: their first run saw the five first rows, the second only what
    // changed since (a1's new output, b1 and b2), each query applied to those rows.
    for q in &queries {
        server
            .ok("POST", &format!("/v1/project_automation/{q}/run"), None)
            .await;
    }
    let records = |run: &Value| {
        jsonl_records(
            &exports
                .join(run["export_id"].as_str().unwrap())
                .join("query"),
        )
    };
    assert_eq!(
        records(&first_queries[0][0]),
        ["a1", "a3", "a4", "a5"].map(|i| json!({"id": i, "output": null}))
    );
    assert_eq!(
        records(&done(queries[0].clone(), 2).await[0]),
        [
            json!({"id": "a1", "output": "changed"}),
            json!({"id": "b1", "output": null}),
            json!({"id": "b2", "output": null})
        ]
    );
    assert_eq!(
        records(&first_queries[1][0]),
        [json!({"i": "first", "n": 5})]
    );
    assert_eq!(
        records(&done(queries[1].clone(), 2).await[0]),
        [
            json!({"i": "first", "n": 1}),
            json!({"i": "second", "n": 2})
        ]
    );
    // Run 2 stopped halfway: it is done again, over the same range.
    server
        .execute_sql(&format!(
            "UPDATE automation_runs SET status = 'running', finished = NULL, rows = NULL \
             WHERE automation_id = '{a}' AND run = 2"
        ))
        .await;
    let again = done(a.clone(), 2).await;
    assert_eq!(again.len(), 2);
    assert_eq!(again[0]["rows"], json!(3));
    assert_eq!(
        (again[0]["from_xact"].clone(), again[0]["to_xact"].clone()),
        (second[0]["from_xact"].clone(), second[0]["to_xact"].clone())
    );
    // Nothing new: a run exports nothing.
    server
        .ok("POST", &format!("/v1/project_automation/{a}/run"), None)
        .await;
    let third = done(a.clone(), 3).await;
    assert_eq!(third[0]["rows"], json!(0), "{third:?}");
    // A row deleted since: the next run holds one record saying so, with the deleting
    // version's transaction id, and nothing else.
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": [{"id": "a2", "project_id": p, "log_id": "g",
                                  "_object_delete": true}]})),
        )
        .await;
    server
        .ok("POST", &format!("/v1/project_automation/{a}/run"), None)
        .await;
    let fourth = done(a.clone(), 4).await;
    assert_eq!(fourth[0]["rows"], json!(1), "{fourth:?}");
    let dir4 = exports.join(fourth[0]["export_id"].as_str().unwrap());
    let records = jsonl_records(&dir4.join("rows"));
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["id"], "a2");
    assert_eq!(records[0]["_object_delete"], true);
    let deleted_at: u64 = records[0]["_xact_id"].as_str().unwrap().parse().unwrap();
    let range = |k: &str| {
        let v = &fourth[0][k];
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap()
    };
    assert!(
        range("from_xact") < deleted_at && deleted_at <= range("to_xact"),
        "{records:?} {fourth:?}"
    );
    // A retention policy does not run on request.
    let retention = server
        .ok(
            "POST",
            "/v1/project_automation",
            Some(
                json!({"project_id": p, "name": "keep", "config": {"event_type": "retention",
                        "object_type": "project_logs", "retention_days": 30}}),
            ),
        )
        .await;
    let (s, b) = server
        .call(
            "POST",
            &format!("/v1/project_automation/{}/run", id(&retention)),
            Some(&server.key),
            None,
        )
        .await;
    assert_error(s, &b, 409, "conflict");
}

/// A scheduled export run that lasts longer than its lease finishes: one run in the history,
/// with every row. On the embedded store (a one-second lease) it is started once: a renewal
/// that waited for the work, or for the one write connection the work held, failed the run
/// over and over. On PostgreSQL a second replica of the same store asks for the (two-second)
/// lease all along; when a renewal is over a second late, as on a loaded machine, the other
/// takes the run over and does it again, whole. That a renewed lease is never taken is the
/// store test `a_lease_is_held_while_its_work_runs`.
async fn a_run_outlasts_its_lease(backend: Backend) {
    let lease = match backend {
        Backend::Sqlite => 1.0,
        Backend::Postgres => 2.0,
    };
    let server = Server::start_with(
        backend,
        &[
            ("HOLDFAST_PURGE_INTERVAL_SECS", "1"),
            ("HOLDFAST_PURGE_LEASE_SECS", &lease.to_string()),
        ],
    )
    .await;
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "long"})))
        .await);
    // Rows large enough for the run to take seconds (checked below).
    const ROWS: usize = 10_000;
    let filler = "lorem ipsum dolor sit amet ".repeat(200);
    for batch in 0..(ROWS / 500) {
        let rows: Vec<Value> = (0..500)
            .map(|i| {
                json!({"id": format!("r{}", batch * 500 + i), "project_id": p, "log_id": "g",
                       "input": filler, "output": filler, "metadata": {"n": i}})
            })
            .collect();
        server
            .ok("POST", "/logs3", Some(json!({ "rows": rows })))
            .await;
    }
    let _replica = match backend {
        Backend::Postgres => Some(server.replica().await),
        Backend::Sqlite => None,
    };
    let made = server
        .ok(
            "POST",
            "/v1/project_automation",
            Some(json!({"project_id": p, "name": "long", "config": {
                "event_type": "btql_export", "export_definition": {"type": "log_spans"},
                "export_path": "local", "format": "parquet", "interval_seconds": 3600,
                "encrypt": true}})),
        )
        .await;
    let runs_path = format!("/v1/project_automation/{}/runs", id(&made));
    let mut runs = Vec::new();
    for _ in 0..1200 {
        runs = server.ok("GET", &runs_path, None).await["objects"]
            .as_array()
            .unwrap()
            .clone();
        if runs.first().is_some_and(|r| r["status"] == "done") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(run["rows"], json!(ROWS), "{run}");
    let at = |k: &str| {
        time::OffsetDateTime::parse(
            run[k].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let took = (at("finished") - at("started")).as_seconds_f64();
    let attempts = server
        .audit_rows()
        .await
        .into_iter()
        .filter(|(action, detail, _)| action == "export" && detail.contains("automation"))
        .count();
    match backend {
        // One replica: its lease cannot pass to another, however late a renewal.
        Backend::Sqlite => assert_eq!(attempts, 1, "the run was started more than once"),
        // A renewal late by over a second (a loaded machine) lets the other replica take
        // the run over, as it should; it then does the run again, whole: still one run in
        // the history, with every row (checked above).
        Backend::Postgres => eprintln!("PostgreSQL: the run was started {attempts} times"),
    }
    // A run started again records its new start: `took` is then the last attempt's, and the
    // first one outlasted its lease (the other replica took the lease once it ran out).
    assert!(
        took >= 1.5 * lease || attempts > 1,
        "the run took {took:.1} s: not long enough to outlast its lease of {lease} s; export \
         more rows"
    );
    eprintln!("{backend:?}: a run of {ROWS} rows took {took:.1} s");
}

/// Exports through the API: started by an Owner, or by a member granted `create` on
/// `org_export` (refused before, like reading them without `read`); one at a time per
/// organization; once done, each file downloads, opened, from its signed link (whose
/// tampering is refused) and holds the rows; downloads are audited.
async fn api_exports(backend: Backend) {
    let server = Server::start(backend).await;
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "exported"})))
        .await);
    let rows: Vec<Value> = (0..120)
        .map(|i| json!({"id": format!("r{i}"), "project_id": p, "log_id": "g", "input": i}))
        .collect();
    server
        .ok("POST", "/logs3", Some(json!({ "rows": rows })))
        .await;
    let org = id(&server.ok("GET", "/v1/organization", None).await["objects"][0]);
    let engineer = server.member_key("eng@example.test", "Engineers");
    let as_engineer = |method: &'static str, path: String, body: Option<Value>| {
        let server = &server;
        let key = engineer.clone();
        async move { server.call(method, &path, Some(&key), body).await }
    };
    let (s, b) = as_engineer("POST", "/v1/export".into(), Some(json!({}))).await;
    assert_error(s, &b, 403, "forbidden");
    // One export at a time: another that is running holds the organization's turn.
    server
        .execute_sql(&format!(
            "INSERT INTO api_exports (id, org_id, format, status, created) \
             VALUES ('other', '{org}', 'jsonl', 'running', '{}')",
            crate::access::in_seconds(0)
        ))
        .await;
    let (s, b) = server
        .call("POST", "/v1/export", Some(&server.key), Some(json!({})))
        .await;
    assert_error(s, &b, 409, "conflict");
    server
        .execute_sql("DELETE FROM api_exports WHERE id = 'other'")
        .await;
    // A grant lets the engineer start and read exports.
    let users = server.ok("GET", "/v1/user", None).await;
    let eng_id = users["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "eng@example.test")
        .map(id)
        .unwrap();
    for permission in ["create", "read"] {
        server
            .ok(
                "POST",
                "/v1/acl",
                Some(
                    json!({"object_type": "organization", "object_id": org, "user_id": eng_id,
                            "permission": permission, "restrict_object_type": "org_export"}),
                ),
            )
            .await;
    }
    let (s, started) = as_engineer(
        "POST",
        "/v1/export".into(),
        Some(json!({"project_id": p, "format": "jsonl"})),
    )
    .await;
    assert_eq!(s, 200, "{started}");
    assert_eq!(started["status"], json!("running"));
    let job_path = format!("/v1/export/{}", id(&started));
    let mut job = Value::Null;
    for _ in 0..300 {
        job = as_engineer("GET", job_path.clone(), None).await.1;
        if job["status"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(job["status"], json!("done"), "{job}");
    assert_eq!(job["rows"], json!(120));
    let files = job["files"].as_array().unwrap();
    assert!(!files.is_empty(), "{job}");
    let mut ids = Vec::new();
    let http = crate::harness::client();
    for f in files {
        let url = f["url"].as_str().unwrap();
        let got = http.get(url).send().await.unwrap();
        assert_eq!(got.status(), 200, "{url}");
        let text = got.text().await.unwrap();
        if f["contents"] == "rows" {
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                ids.push(v["id"].as_str().unwrap().to_owned());
            }
        }
        // A link altered in any way does not download.
        let tampered = format!("{}x", url);
        assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);
    }
    ids.sort();
    let mut want: Vec<String> = (0..120).map(|i| format!("r{i}")).collect();
    want.sort();
    assert_eq!(ids, want);
    let listed = server.ok("GET", "/v1/export", None).await;
    assert_eq!(listed["objects"].as_array().unwrap().len(), 1, "{listed}");
    let downloads = server
        .audit_rows()
        .await
        .into_iter()
        .filter(|(action, ..)| action == "export_download")
        .count();
    assert_eq!(downloads, files.len());
}

/// What an export killed halfway leaves (`.<id>.partial/`, unchanged for over an hour) is
/// removed when the server starts; a partial export still being written and finished exports
/// stay.
#[tokio::test(flavor = "multi_thread")]
async fn orphaned_partial_exports_are_removed() {
    let mut server = Server::start(Backend::Sqlite).await;
    server.stop();
    let exports = server.data_dir().join("exports");
    let make = |name: &str| {
        let dir = exports.join(name).join("rows");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("00001.jsonl"), "{}").unwrap();
    };
    make(".stopped.partial");
    make(".running.partial");
    make("finished");
    for name in [".stopped.partial", "finished"] {
        let touched = std::process::Command::new("find")
            .arg(exports.join(name))
            .args(["-exec", "touch", "-d", "2 hours ago", "{}", "+"])
            .status()
            .unwrap();
        assert!(touched.success());
    }
    server.spawn().await;
    for _ in 0..100 {
        if !exports.join(".stopped.partial").exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!exports.join(".stopped.partial").exists());
    assert!(exports.join(".running.partial/rows/00001.jsonl").exists());
    assert!(exports.join("finished/rows/00001.jsonl").exists());
}

mod run {
    use super::backends;
    on_all_backends!(
        exports,
        parquet_exports,
        scheduled_exports,
        a_run_outlasts_its_lease,
        api_exports
    );
}
