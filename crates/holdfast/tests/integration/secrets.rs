//! Provider secrets under envelope encryption: the API never returns a value, the raw store
//! holds none, tampering is caught, rotation keeps everything readable, and the master key can
//! live in AWS KMS (proven against moto's KMS server).

use crate::harness::{Backend, Server, assert_error, backends, free_port};
use serde_json::{Value, json};
use std::path::PathBuf;

const SECRET: &str = "sk-live-PLANTED-7b1f2e9c4d3a";

pub fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

/// Every byte the store keeps for this server, as text: the embedded database and its log,
/// or a dump of every PostgreSQL table.
async fn raw_store(server: &Server) -> Vec<u8> {
    match &server.database_url {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let mut out = Vec::new();
            for t in tables {
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT row_to_json(x)::text FROM {t} x"
                )))
                .fetch_all(&pool)
                .await
                .unwrap();
                for r in rows {
                    out.extend(r.into_bytes());
                }
            }
            out
        }
        None => {
            let mut out = Vec::new();
            for f in ["holdfast.db", "holdfast.db-wal"] {
                if let Ok(b) = std::fs::read(server.data_dir().join(f)) {
                    out.extend(b);
                }
            }
            out
        }
    }
}

/// Whether `needle` is in `hay`, as is or inside a zstd frame: row data is stored compressed,
/// which hides nothing from someone holding the file.
pub fn contains(hay: &[u8], needle: &str) -> bool {
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
    let plain = |h: &[u8]| h.windows(needle.len()).any(|w| w == needle.as_bytes());
    plain(hay)
        || hay
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == ZSTD_MAGIC)
            .any(|(i, _)| {
                let Ok(decoder) = zstd::stream::read::Decoder::new(&hay[i..]) else {
                    return false;
                };
                let mut out = Vec::new();
                // Whatever follows the frame in the file does not decode; what came before
                // the error is kept.
                let _ = std::io::Read::read_to_end(
                    &mut std::io::Read::take(decoder.single_frame(), 1 << 20),
                    &mut out,
                );
                plain(&out)
            })
}

async fn provider_secrets(backend: Backend) {
    let server = Server::start(backend).await;
    let created = server
        .ok(
            "POST",
            "/v1/ai_secret",
            Some(
                json!({"name": "OPENAI_API_KEY", "type": "openai", "secret": SECRET,
                        "metadata": {"team": "search"}}),
            ),
        )
        .await;
    let sid = id(&created);
    assert_eq!(created["preview_secret"], "••••4d3a", "{created}");
    assert!(!created.to_string().contains(SECRET));
    // POST with a taken name answers the stored secret unchanged; PUT replaces the value.
    let again = server
        .ok(
            "POST",
            "/v1/ai_secret",
            Some(json!({"name": "OPENAI_API_KEY", "secret": "sk-other-0000000000000"})),
        )
        .await;
    assert_eq!(again["preview_secret"], created["preview_secret"]);
    let replaced = server
        .ok(
            "PUT",
            "/v1/ai_secret",
            Some(json!({"name": "OPENAI_API_KEY", "secret": "sk-rotated-111122223333"})),
        )
        .await;
    assert_eq!(id(&replaced), sid);
    assert_eq!(replaced["preview_secret"], "••••3333");
    assert_eq!(replaced["metadata"]["team"], "search");
    server
        .ok(
            "PATCH",
            &format!("/v1/ai_secret/{sid}"),
            Some(json!({"secret": SECRET})),
        )
        .await;
    for path in [format!("/v1/ai_secret/{sid}"), "/v1/ai_secret".into()] {
        let got = server.ok("GET", &path, None).await;
        assert!(!got.to_string().contains(SECRET), "{got}");
        assert!(!got.to_string().contains("\"secret\""), "{got}");
    }
    // Environment variables of a project.
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "p"})))
        .await);
    let env = server
        .ok(
            "POST",
            "/v1/env_var",
            Some(
                json!({"object_type": "project", "object_id": p, "name": "DB_PASSWORD",
                        "value": "hunter2-hunter2-hunter2"}),
            ),
        )
        .await;
    assert_eq!(env["object_id"], p);
    assert!(!env.to_string().contains("hunter2"));
    let listed = server
        .ok(
            "GET",
            &format!("/v1/env_var?object_type=project&object_id={p}"),
            None,
        )
        .await;
    assert_eq!(listed["objects"].as_array().unwrap().len(), 1);
    // Secret administration is not an Engineer's.
    let engineer = server.member_key("e@example.test", "Engineers");
    for (method, path, body) in [
        ("GET", "/v1/ai_secret".to_owned(), None),
        ("GET", format!("/v1/ai_secret/{sid}"), None),
        (
            "POST",
            "/v1/ai_secret".to_owned(),
            Some(json!({"name": "x", "secret": "y"})),
        ),
        ("DELETE", format!("/v1/ai_secret/{sid}"), None),
    ] {
        let (s, b) = server.call(method, &path, Some(&engineer), body).await;
        assert_error(s, &b, 403, "forbidden");
    }
    // Bad input is named.
    for (body, field) in [
        (json!({"secret": "no name"}), "name"),
        (json!({"name": "n", "secret": 5}), "secret"),
        (json!({"name": "n", "metadata": "x"}), "metadata"),
    ] {
        let (s, b) = server
            .call("POST", "/v1/ai_secret", Some(&server.key), Some(body))
            .await;
        assert_error(s, &b, 400, "invalid_field");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    // The raw store holds no value, and nothing but ciphertext for them.
    let raw = raw_store(&server).await;
    assert!(!contains(&raw, SECRET) && !contains(&raw, "hunter2"));
    assert!(!contains(&raw, "sk-rotated"));
    assert!(
        server
            .cli_line(&["secrets", "verify"])
            .starts_with("all 2 secrets decrypt")
    );
    // A ciphertext copied onto another row does not open there.
    let eid = id(&env);
    server.execute_sql(&format!(
            "UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE id = '{sid}') WHERE id = '{eid}'"
        ),
    )
    .await;
    let out = server.cli(&["secrets", "verify"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&eid) && !err.contains(&sid), "{err}");
    // Deleting by name: an env var names its owner.
    let (st, b) = server
        .call(
            "DELETE",
            "/v1/env_var",
            Some(&server.key),
            Some(json!({"name": "DB_PASSWORD"})),
        )
        .await;
    assert_error(st, &b, 400, "bad_request");
    let gone = server
        .ok(
            "DELETE",
            "/v1/env_var",
            Some(json!({"name": "DB_PASSWORD", "object_type": "project", "object_id": p})),
        )
        .await;
    assert_eq!(id(&gone), eid);
    let gone = server
        .ok(
            "DELETE",
            "/v1/ai_secret",
            Some(json!({"name": "OPENAI_API_KEY", "org_name": "default"})),
        )
        .await;
    assert_eq!(id(&gone), sid);
    let (s, _) = server
        .call(
            "GET",
            &format!("/v1/ai_secret/{sid}"),
            Some(&server.key),
            None,
        )
        .await;
    assert_eq!(s, 404);
}

/// KEK and DEK rotation while the server serves: every secret stays readable, new ones can
/// be made, and the old wrapping is gone from the store.
async fn rotation(backend: Backend) {
    let mut server = Server::start(backend).await;
    for i in 0..5 {
        server
            .ok(
                "POST",
                "/v1/ai_secret",
                Some(json!({"name": format!("k{i}"), "secret": format!("{SECRET}-{i}")})),
            )
            .await;
    }
    // Reads run throughout.
    let reader = {
        let (url, key) = (server.url.clone(), server.key.clone());
        tokio::spawn(async move {
            let http = crate::harness::client();
            let mut n = 0;
            for _ in 0..200 {
                let r = http
                    .get(format!("{url}/v1/ai_secret"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                n += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            n
        })
    };
    let before = raw_store(&server).await;
    let kms = server.data_dir().join("kms");
    let first = std::fs::read_to_string(kms.join("current")).unwrap();
    // An export in the data dir, its key wrapped by the first KEK.
    let export: Value =
        serde_json::from_str(&server.cli_line(&["export", "create", "--org", "default"])).unwrap();
    let export_id = export["id"].as_str().unwrap().to_owned();
    let manifest_path = server
        .data_dir()
        .join("exports")
        .join(&export_id)
        .join("manifest.json");
    let old_manifest = std::fs::read(&manifest_path).unwrap();
    let out = server.cli_line(&["keys", "rotate-kek"]);
    assert_eq!(out, "re-wrapped 1 data keys");
    assert!(
        server
            .cli_line(&["secrets", "verify"])
            .starts_with("all 5 secrets decrypt")
    );
    // The key files are re-wrapped too, so the first KEK can go; the current one cannot.
    let second = std::fs::read_to_string(kms.join("current")).unwrap();
    assert_ne!(first, second);
    for f in ["pepper.wrapped", "storage.key"] {
        let text = std::fs::read_to_string(server.data_dir().join(f)).unwrap();
        assert!(
            text.contains(&format!("\"kek_id\":\"{second}\"")),
            "{f}: {text}"
        );
    }
    let refused = server.cli(&["keys", "retire-kek", "--id", &second]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("current"));
    // The export's key was re-wrapped; one still under the first KEK keeps that KEK.
    let new_manifest = std::fs::read(&manifest_path).unwrap();
    let kek_of =
        |m: &[u8]| serde_json::from_slice::<Value>(m).unwrap()["encryption"]["kek_id"].clone();
    assert_eq!(kek_of(&old_manifest), first.as_str());
    assert_eq!(kek_of(&new_manifest), second.as_str());
    std::fs::write(&manifest_path, &old_manifest).unwrap();
    let refused = server.cli(&["keys", "retire-kek", "--id", &first]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains(&export_id),
        "{err}"
    );
    std::fs::write(&manifest_path, &new_manifest).unwrap();
    assert_eq!(
        server.cli_line(&["keys", "retire-kek", "--id", &first]),
        format!("retired {first}")
    );
    // The running server seals new secrets after the KEK rotation.
    server
        .ok(
            "POST",
            "/v1/ai_secret",
            Some(json!({"name": "after-kek", "secret": "v"})),
        )
        .await;
    let out = server.cli_line(&["keys", "rotate-dek", "--org", "default"]);
    assert_eq!(
        out,
        "re-encrypted 6 secrets of default under a new data key"
    );
    server
        .ok(
            "POST",
            "/v1/ai_secret",
            Some(json!({"name": "after-dek", "secret": "w"})),
        )
        .await;
    assert!(
        server
            .cli_line(&["secrets", "verify"])
            .starts_with("all 7 secrets decrypt")
    );
    assert_eq!(reader.await.unwrap(), 200);
    // Every secret now sits under data key 2, wrapped by the second KEK.
    let after = raw_store(&server).await;
    assert_ne!(before, after);
    let kms = server.data_dir().join("kms");
    let keys: Vec<PathBuf> = std::fs::read_dir(&kms)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    assert_eq!(keys.len(), 1, "the first KEK was retired");
    for k in keys {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // The export opens without the retired key.
    let opened = tempfile::tempdir().unwrap();
    server.cli_line(&[
        "export",
        "open",
        &export_id,
        "--to",
        opened.path().join("x").to_str().unwrap(),
    ]);
    // Everything opens without the retired key after a restart.
    server.stop();
    server.spawn().await;
    assert_eq!(
        server.ok("GET", "/v1/ai_secret", None).await["objects"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
}

/// The AWS provider against moto's KMS server: the data key is wrapped by a KMS key, and
/// everything works through it.
/// moto's server (AWS APIs, run locally): killed when dropped.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Self {
        let moto = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../compat/.moto-venv/bin/moto_server");
        let port = free_port();
        let child = std::process::Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {} (run ./scripts/test.sh): {e}", moto.display())
            });
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new KMS key, once the server answers; returns its id.
    pub async fn create_kms_key(&self) -> String {
        let kms = holdfast_crypto::aws::AwsKms::new(holdfast_crypto::aws::AwsConfig {
            key_id: String::new(),
            region: "us-east-1".into(),
            endpoint: Some(self.endpoint.clone()),
            credentials: testing_credentials(),
        })
        .unwrap();
        for _ in 0..100 {
            if let Ok(k) = kms
                .call("CreateKey", json!({"Description": "holdfast test"}))
                .await
            {
                return k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("moto's KMS server did not answer CreateKey");
    }

    /// A new bucket, once the server answers; returns its URL.
    pub async fn create_bucket(&self, name: &str) -> String {
        let bucket = format!("{}/{name}", self.endpoint);
        for _ in 0..100 {
            if crate::harness::client()
                .put(&bucket)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return bucket;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("moto's S3 server did not create the bucket");
    }

    /// A client for a bucket, without a prefix, to look at what the server stored.
    pub fn s3(&self, bucket: &str) -> holdfast_services::s3::S3 {
        holdfast_services::s3::S3::new(holdfast_services::s3::S3Config {
            bucket: bucket.into(),
            prefix: String::new(),
            region: "us-east-1".into(),
            endpoint: Some(self.endpoint.clone()),
            sse: holdfast_services::s3::Sse::S3,
            credentials: testing_credentials(),
        })
        .unwrap()
    }
}

fn testing_credentials() -> holdfast_crypto::aws_creds::CredentialChain {
    holdfast_crypto::aws_creds::CredentialChain::fixed(holdfast_crypto::sigv4::Credentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    })
    .unwrap()
}

/// Stores a provider secret through the API and checks with the CLI that every secret opens.
async fn store_and_verify_secret(server: &Server, name: &str, expect: usize) {
    server
        .ok(
            "POST",
            "/v1/ai_secret",
            Some(json!({"name": name, "secret": SECRET})),
        )
        .await;
    let out = server.cli_line(&["secrets", "verify"]);
    assert!(
        out.starts_with(&format!("all {expect} secrets decrypt")),
        "{out}"
    );
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn aws_kms(backend: Backend) {
    let moto = Moto::start();
    let endpoint = moto.endpoint.clone();
    let key = moto.create_kms_key().await;
    let env = [
        &aws_kms_env(&key, &endpoint)[..],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ][..],
    ]
    .concat();
    let server = Server::start_with(backend, &env).await;
    store_and_verify_secret(&server, "ANTHROPIC_API_KEY", 1).await;
    // The storage key and the pepper are wrapped by the KMS key; so is the data key.
    for f in ["storage.key", "pepper.wrapped"] {
        let text = std::fs::read_to_string(server.data_dir().join(f)).unwrap();
        assert!(
            text.contains(&format!("\"kek_id\":\"aws:{key}\"")),
            "{f}: {text}"
        );
    }
    if server.database_url.is_some() {
        let raw = raw_store(&server).await;
        assert!(
            contains(&raw, &format!("aws:{key}")),
            "the data key is not wrapped by KMS"
        );
    }
    assert!(!contains(&raw_store(&server).await, SECRET));
    assert!(
        !server.data_dir().join("kms").exists(),
        "no local key files with AWS KMS"
    );
    let out = server.cli_line(&["keys", "rotate-dek", "--org", "default"]);
    assert!(out.starts_with("re-encrypted 1 secrets"), "{out}");
    assert!(
        server
            .cli_line(&["secrets", "verify"])
            .starts_with("all 1 secrets decrypt")
    );
}

/// The names of the objects in a bucket (ListObjectsV2; moto does not check signatures).
pub async fn object_names(http: &reqwest::Client, bucket: &str) -> Vec<String> {
    let listing = http
        .get(format!("{bucket}?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    listing
        .split("<Key>")
        .skip(1)
        .filter_map(|k| k.split("</Key>").next())
        .map(str::to_owned)
        .collect()
}

/// External attachments under the default prefix (`{org_id}/`): an organization resolves
/// objects under its own id only, never another organization's, whatever its rows reference.
async fn external_attachments_stay_in_their_organization(backend: Backend) {
    let moto = Moto::start();
    moto.create_bucket("team-files").await;
    let env = [
        ("HOLDFAST_EXTERNAL_ATTACHMENTS_BUCKET", "team-files"),
        ("HOLDFAST_S3_REGION", "us-east-1"),
        ("HOLDFAST_S3_ENDPOINT", moto.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let server = Server::start_with(backend, &env).await;
    let other_key = server.cli_line(&["org", "create", "other", "--owner", "eve@other.test"]);
    let mut orgs = Vec::new();
    for key in [server.key.clone(), other_key.clone()] {
        let (s, login) = server
            .call("POST", "/api/apikey/login", Some(&key), None)
            .await;
        assert_eq!(s, 200, "{login}");
        orgs.push(login["org_info"][0]["id"].as_str().unwrap().to_owned());
    }
    let (mine, theirs) = (&orgs[0], &orgs[1]);
    let s3 = moto.s3("team-files");
    s3.put(&format!("{mine}/a.txt"), b"ours".to_vec())
        .await
        .unwrap();
    s3.put(&format!("{theirs}/b.txt"), b"theirs".to_vec())
        .await
        .unwrap();
    let ours = format!("s3://team-files/{mine}/a.txt");
    let foreign = format!("s3://team-files/{theirs}/b.txt");
    let project = server
        .ok("POST", "/v1/project", Some(json!({"name": "files"})))
        .await;
    let reference = |url: &str| {
        json!({"type": "external_attachment", "url": url,
                                       "filename": "f.txt", "content_type": "text/plain"})
    };
    server
        .ok(
            "POST",
            "/logs3",
            Some(
                json!({"rows": [{"id": "refs", "project_id": project["id"], "log_id": "g",
                                   "input": {"a": reference(&ours), "b": reference(&foreign)}}]}),
            ),
        )
        .await;
    let resolved = server
        .ok("GET", &format!("/attachment?url={ours}"), None)
        .await;
    assert_eq!(resolved["status"]["upload_status"], "done", "{resolved}");
    let got = crate::harness::client()
        .get(resolved["downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"ours");
    // The other organization's object: refused, though a row the caller reads names it.
    let (s, b) = server
        .call(
            "GET",
            &format!("/attachment?url={foreign}"),
            Some(&server.key.clone()),
            None,
        )
        .await;
    assert_error(s, &b, 400, "invalid_field");
    assert_eq!(b["error"]["field"], "url", "{b}");
    // And the other organization cannot resolve the first one's.
    let (s, b) = server
        .call(
            "GET",
            &format!("/attachment?url={ours}"),
            Some(&other_key),
            None,
        )
        .await;
    assert_error(s, &b, 400, "invalid_field");
}

/// Attachments and overflow batches in an S3 bucket (moto's S3 server): every object is
/// written with server-side encryption and confirmed so, holds no plaintext (it is sealed
/// with the storage key too), and round-trips through signed URLs.
async fn s3_blobs(backend: Backend) {
    const ATTACHMENT: &str = "attachment body: account number 4111-1111-1111-1111";
    let moto = Moto::start();
    let http = crate::harness::client();
    let bucket = moto.create_bucket("holdfast-blobs").await;
    let env = [
        ("HOLDFAST_BLOB_STORE", "s3"),
        ("HOLDFAST_S3_BUCKET", "holdfast-blobs"),
        ("HOLDFAST_S3_PREFIX", "team-a/"),
        ("HOLDFAST_S3_REGION", "us-east-1"),
        ("HOLDFAST_S3_ENDPOINT", moto.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let server = Server::start_with(backend, &env).await;
    server.reference_attachment("att-s3").await;
    let upload = server
        .ok(
            "POST",
            "/attachment",
            Some(json!({"key": "att-s3", "filename": "a.txt", "content_type": "text/plain"})),
        )
        .await;
    let put = http
        .put(upload["signedUrl"].as_str().unwrap())
        .body(ATTACHMENT)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    const CHECK: &str = "team-a/holdfast-key-check.json";
    let blob_names = || async {
        let mut names = object_names(&http, &bucket).await;
        let check = names.iter().position(|n| n == CHECK);
        assert!(check.is_some(), "the key check is in the bucket: {names:?}");
        names.retain(|n| n != CHECK);
        names
    };
    let names = blob_names().await;
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("team-a/"), "{names:?}");
    let s3 = moto.s3("holdfast-blobs");
    assert_eq!(
        s3.encryption_of(&names[0]).await.unwrap().as_deref(),
        Some("AES256")
    );
    let stored = s3.get(&names[0]).await.unwrap().unwrap();
    assert!(!contains(&stored, ATTACHMENT), "sealed before it is sent");
    let download = server
        .ok(
            "GET",
            "/attachment?key=att-s3&content_type=text/plain",
            None,
        )
        .await;
    let got = http
        .get(download["downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(got, ATTACHMENT);
    // An overflowing batch goes through the bucket and is removed once ingested.
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "s3"})))
        .await);
    let rows = json!({"rows": [{"id": "o1", "project_id": p, "log_id": "g", "input": "big"}]});
    let size = rows.to_string().len();
    let overflow = server
        .ok("POST", "/logs3/overflow", Some(json!({"size_bytes": size})))
        .await;
    let put = http
        .put(overflow["signedUrl"].as_str().unwrap())
        .body(rows.to_string())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": {"type": "logs3_overflow", "key": overflow["key"]}})),
        )
        .await;
    let fetched = server
        .ok(
            "POST",
            &format!("/v1/project_logs/{p}/fetch"),
            Some(json!({})),
        )
        .await;
    assert_eq!(fetched["events"][0]["input"], "big");
    assert_eq!(blob_names().await, names, "the batch was removed");
    // A replica with keys of its own (another data dir) refuses to start on this bucket,
    // before it serves anything; one with the same key files starts.
    let other = tempfile::tempdir().unwrap();
    let mut serve = std::process::Command::new(crate::harness::BIN);
    serve
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{}", crate::harness::free_port()))
        .arg("--data-dir")
        .arg(other.path())
        .envs(env)
        .env("HOLDFAST_LOG", "warn");
    if let Some(url) = &server.database_url {
        serve.arg("--database-url").arg(url);
    }
    let out = serve.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("must share the data dir's"),
        "{err}"
    );
    let same = server.cli(&["secrets", "verify"]);
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    assert!(
        server.data_dir().join("blobs").read_dir().is_err(),
        "nothing on local disk"
    );
}

/// Every file under a directory, recursively, in path order.
pub fn files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A copy of the data directory reveals no logged text, no attachment and no secret; the
/// same check finds the first two when encryption at rest is off (so it can fail).
#[tokio::test(flavor = "multi_thread")]
async fn raw_files_reveal_nothing() {
    let plain = Server::start_with(Backend::Sqlite, &[("HOLDFAST_ENCRYPT_AT_REST", "false")]).await;
    // Without it, logged text and attachments lie in the files; secrets never do.
    let shown = leaks(&plain).await;
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown.iter().all(|s| !s.starts_with("secret")), "{shown:?}");
    let server = Server::start(Backend::Sqlite).await;
    assert_eq!(leaks(&server).await, Vec::<String>::new());
}

/// Writes a sentence, an attachment and a secret; returns which of them the files show.
async fn leaks(server: &Server) -> Vec<String> {
    const SENTENCE: &str = "the patient reported chest pain after the second dose";
    const ATTACHMENT: &str = "attachment body: account number 4111-1111-1111-1111";
    let p = id(&server
        .ok("POST", "/v1/project", Some(json!({"name": "clinic"})))
        .await);
    server
        .ok(
            "POST",
            "/logs3",
            Some(json!({"rows": [{"id": "r1", "project_id": p, "log_id": "g",
                                  "input": SENTENCE, "output": SENTENCE}]})),
        )
        .await;
    server.reference_attachment("att-raw").await;
    let upload = server
        .ok(
            "POST",
            "/attachment",
            Some(json!({"key": "att-raw", "filename": "a.txt", "content_type": "text/plain"})),
        )
        .await;
    let url = upload["signedUrl"].as_str().unwrap();
    let put = crate::harness::client()
        .put(url)
        .body(ATTACHMENT)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    server
        .ok(
            "POST",
            "/v1/ai_secret",
            Some(json!({"name": "OPENAI_API_KEY", "secret": SECRET})),
        )
        .await;
    // Readable through the API...
    let fetched = server
        .ok(
            "POST",
            &format!("/v1/project_logs/{p}/fetch"),
            Some(json!({})),
        )
        .await;
    assert_eq!(fetched["events"][0]["input"], SENTENCE);
    // An export in the data dir: sealed by default, whatever the store's setting.
    server.cli_line(&["export", "create", "--org", "default"]);
    // ... and, with encryption at rest, nowhere in the files, while the server runs (the
    // write-ahead log not yet checkpointed), exports included.
    let all = files(server.data_dir());
    assert!(all.iter().any(|f| f.ends_with("manifest.json")), "{all:?}");
    assert!(all.len() >= 6, "{all:?}");
    let mut found = Vec::new();
    for (needle, what) in [
        (SENTENCE, "logged text"),
        (ATTACHMENT, "attachment"),
        ("sk-live-PLANTED", "secret"),
    ] {
        if let Some(f) = all
            .iter()
            .find(|f| contains(&std::fs::read(f).unwrap(), needle))
        {
            found.push(format!("{what} in {}", f.display()));
        }
    }
    found
}

/// AWS credentials come from the standard chain when the environment holds no keys: a web
/// identity token exchanged with STS, a container credentials endpoint, or instance metadata
/// (moto serves STS and the instance metadata service; its instance-role answer is also the
/// container endpoint's format). The server works through each, and fails to start when the
/// source it was given does not answer; with no source at all it refuses to start, saying so.
#[tokio::test(flavor = "multi_thread")]
async fn aws_credentials_from_the_chain() {
    let moto = Moto::start();
    let endpoint = moto.endpoint.clone();
    let key = moto.create_kms_key().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n").unwrap();
    let token_file = token_file.to_str().unwrap().to_owned();
    let role_url = format!("{endpoint}/latest/meta-data/iam/security-credentials/default-role");
    let base = [
        &aws_kms_env(&key, &endpoint)[..],
        &[
            // Keys in the environment would win; these are empty, so unset.
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ][..],
    ]
    .concat();
    let web_identity = |sts: &str| {
        vec![
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.clone()),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/holdfast".to_owned(),
            ),
            ("AWS_ENDPOINT_URL_STS", sts.to_owned()),
        ]
    };
    let sources = [
        web_identity(&endpoint),
        vec![
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", role_url.clone()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                "container-token".to_owned(),
            ),
        ],
        vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint.clone())],
    ];
    for source in &sources {
        let env: Vec<(&str, &str)> = base
            .iter()
            .copied()
            .chain(source.iter().map(|(k, v)| (*k, v.as_str())))
            .collect();
        let server = Server::start_with(Backend::Sqlite, &env).await;
        store_and_verify_secret(&server, "ANTHROPIC_API_KEY", 1).await;
    }
    let serve = |env: Vec<(&str, String)>| {
        std::process::Command::new(crate::harness::BIN)
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .envs(base.iter().copied())
            .envs(env)
            .output()
            .unwrap()
    };
    // A source that does not answer: no credentials, no start.
    let out = serve(web_identity("http://127.0.0.1:9"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AWS credentials from the web identity"),
        "{err}"
    );
    let out = serve(vec![("AWS_EC2_METADATA_DISABLED", "true".to_owned())]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no AWS credentials"), "{err}");
}

/// Settings that make the server use moto's KMS `key`.
fn aws_kms_env<'a>(key: &'a str, endpoint: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("HOLDFAST_KMS", "aws"),
        ("HOLDFAST_KMS_AWS_KEY_ID", key),
        ("HOLDFAST_KMS_AWS_REGION", "us-east-1"),
        ("HOLDFAST_KMS_AWS_ENDPOINT", endpoint),
    ]
}

/// `/readyz` fails, naming the KMS, when the KMS stops answering; the process stays up and
/// `/healthz` stays 200.
#[tokio::test(flavor = "multi_thread")]
async fn readiness_names_the_failed_check() {
    let moto = Moto::start();
    let endpoint = moto.endpoint.clone();
    let key = moto.create_kms_key().await;
    let env = [
        &aws_kms_env(&key, &endpoint)[..],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ][..],
    ]
    .concat();
    let server = Server::start_with(Backend::Sqlite, &env).await;
    drop(moto);
    let r = server
        .http
        .get(format!("{}/readyz", server.url))
        .header("x-request-id", "ready-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    assert_eq!(body["error"]["request_id"], "ready-1", "{body}");
    assert_eq!(body["checks"]["kms"]["ok"], false, "{body}");
    assert!(body["checks"]["kms"]["error"].is_string(), "{body}");
    for check in ["store", "writer", "index"] {
        assert_eq!(body["checks"][check]["ok"], true, "{body}");
    }
    let (s, _) = server.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
}

mod run {
    use super::backends;
    on_all_backends!(
        provider_secrets,
        rotation,
        aws_kms,
        s3_blobs,
        external_attachments_stay_in_their_organization
    );
}

/// A local stand-in for GCP Cloud KMS, Azure Key Vault and Vault transit, speaking the part
/// of each documented API that Holdfast uses, with real AES-256-GCM under a key of its own
/// (associated data where the real API has it), and refusing a wrong token.
mod doubles {
    use axum::Json;
    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
    use serde_json::{Value, json};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub const TOKEN: &str = "double-token-1234";

    #[derive(Clone)]
    struct Double {
        key: Arc<holdfast_crypto::DataKey>,
        calls: Arc<AtomicUsize>,
        tokens: Arc<AtomicUsize>,
        /// Calls still to answer with 503 (a service having a bad moment).
        fail_next: Arc<AtomicUsize>,
    }

    impl Double {
        fn unavailable(&self) -> Result<(), StatusCode> {
            let taken = self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if taken.is_ok() {
                return Err(StatusCode::SERVICE_UNAVAILABLE);
            }
            Ok(())
        }
    }

    type Reply = Result<Json<Value>, StatusCode>;

    fn authorized(h: &HeaderMap) -> Result<(), StatusCode> {
        let bearer = h.get("authorization").and_then(|v| v.to_str().ok());
        let vault = h.get("x-vault-token").and_then(|v| v.to_str().ok());
        if bearer == Some(&format!("Bearer {TOKEN}")) || vault == Some(TOKEN) {
            Ok(())
        } else {
            Err(StatusCode::FORBIDDEN)
        }
    }

    fn b64(v: &Value, field: &str) -> Result<Vec<u8>, StatusCode> {
        v[field]
            .as_str()
            .and_then(|s| B64.decode(s).ok())
            .ok_or(StatusCode::BAD_REQUEST)
    }

    impl Double {
        fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            holdfast_crypto::seal(&self.key, aad, plain).unwrap()
        }
        fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StatusCode> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            holdfast_crypto::open(&self.key, aad, sealed)
                .map(|p| p.to_vec())
                .map_err(|_| StatusCode::BAD_REQUEST)
        }
    }

    // GCP: POST /v1/{name}:encrypt|decrypt (the colon is part of the last segment).
    async fn gcp(
        State(d): State<Double>,
        h: HeaderMap,
        Path(rest): Path<String>,
        Json(b): Json<Value>,
    ) -> Reply {
        d.unavailable()?;
        authorized(&h)?;
        let aad = b64(&b, "additionalAuthenticatedData").unwrap_or_default();
        if rest.ends_with(":encrypt") {
            let ct = d.seal(&aad, &b64(&b, "plaintext")?);
            Ok(Json(json!({"name": rest, "ciphertext": B64.encode(ct)})))
        } else if rest.ends_with(":decrypt") {
            let pt = d.open(&aad, &b64(&b, "ciphertext")?)?;
            Ok(Json(json!({"plaintext": B64.encode(pt)})))
        } else {
            Err(StatusCode::NOT_FOUND)
        }
    }

    // Azure: POST /keys/{name}/{version}/wrapkey|unwrapkey?api-version=7.4
    async fn azure(
        State(d): State<Double>,
        h: HeaderMap,
        Path((name, version, op)): Path<(String, String, String)>,
        Json(b): Json<Value>,
    ) -> Reply {
        d.unavailable()?;
        authorized(&h)?;
        let value = b["value"]
            .as_str()
            .and_then(|s| B64URL.decode(s).ok())
            .ok_or(StatusCode::BAD_REQUEST)?;
        let kid = format!("keys/{name}/{version}");
        let out = match op.as_str() {
            "wrapkey" => d.seal(kid.as_bytes(), &value),
            "unwrapkey" => d.open(kid.as_bytes(), &value)?,
            _ => return Err(StatusCode::NOT_FOUND),
        };
        Ok(Json(json!({"kid": kid, "value": B64URL.encode(out)})))
    }

    // Vault transit: POST /v1/{mount}/encrypt|decrypt/{key}
    async fn vault(
        State(d): State<Double>,
        h: HeaderMap,
        Path((_mount, op, key)): Path<(String, String, String)>,
        Json(b): Json<Value>,
    ) -> Reply {
        d.unavailable()?;
        authorized(&h)?;
        let ctx = b64(&b, "context").unwrap_or_default();
        match op.as_str() {
            "encrypt" => {
                let ct = d.seal(&ctx, &b64(&b, "plaintext")?);
                Ok(Json(
                    json!({"data": {"ciphertext": format!("vault:v1:{}", B64.encode(ct)), "key_version": 1}}),
                ))
            }
            "decrypt" => {
                let ct = b["ciphertext"]
                    .as_str()
                    .and_then(|c| c.strip_prefix("vault:v1:"))
                    .and_then(|c| B64.decode(c).ok())
                    .ok_or(StatusCode::BAD_REQUEST)?;
                let pt = d.open(&ctx, &ct)?;
                let _ = key;
                Ok(Json(json!({"data": {"plaintext": B64.encode(pt)}})))
            }
            _ => Err(StatusCode::NOT_FOUND),
        }
    }

    // GCP's metadata server: the default service account's token, for a request that says
    // `Metadata-Flavor: Google`.
    async fn gcp_token(State(d): State<Double>, h: HeaderMap) -> Reply {
        if h.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
            return Err(StatusCode::FORBIDDEN);
        }
        d.tokens.fetch_add(1, Ordering::SeqCst);
        Ok(Json(
            json!({"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
        ))
    }

    // Azure's IMDS: a managed identity's token for Key Vault (`Metadata: true`); this one
    // expires within the minute, so it is fetched for every call.
    async fn azure_token(
        State(d): State<Double>,
        h: HeaderMap,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> Reply {
        if h.get("metadata").and_then(|v| v.to_str().ok()) != Some("true")
            || q.get("resource").map(String::as_str) != Some("https://vault.azure.net")
            || !q.contains_key("api-version")
        {
            return Err(StatusCode::BAD_REQUEST);
        }
        d.tokens.fetch_add(1, Ordering::SeqCst);
        Ok(Json(
            json!({"access_token": TOKEN, "expires_in": "30", "token_type": "Bearer"}),
        ))
    }

    /// Serves all three, and the two metadata services, on a loopback port; returns its base
    /// URL, a counter of KMS calls and one of tokens handed out.
    pub async fn start() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let d = Double {
            key: Arc::new(holdfast_crypto::DataKey::generate().unwrap()),
            calls: Arc::new(AtomicUsize::new(0)),
            tokens: Arc::new(AtomicUsize::new(0)),
            fail_next: Arc::new(AtomicUsize::new(0)),
        };
        let (calls, tokens, fail_next) = (d.calls.clone(), d.tokens.clone(), d.fail_next.clone());
        let app = axum::Router::new()
            .route("/v1/projects/{*rest}", post(gcp))
            .route("/keys/{name}/{version}/{op}", post(azure))
            .route("/v1/{mount}/{op}/{key}", post(vault))
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(gcp_token),
            )
            .route("/metadata/identity/oauth2/token", get(azure_token))
            .with_state(d);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (url, calls, tokens, fail_next)
    }
}

/// GCP Cloud KMS, Azure Key Vault and Vault transit, each against a local double of its API.
#[tokio::test(flavor = "multi_thread")]
async fn http_kms_providers() {
    let (base, calls, tokens, fail_next) = doubles::start().await;
    let azure_key = format!("{base}/keys/holdfast/v1");
    for (kms, key, endpoint, token_var) in [
        (
            "gcp",
            "projects/p/locations/global/keyRings/r/cryptoKeys/holdfast",
            base.as_str(),
            "GOOGLE_OAUTH_ACCESS_TOKEN",
        ),
        ("azure", azure_key.as_str(), "", "AZURE_KEY_VAULT_TOKEN"),
        ("vault", "transit/holdfast", base.as_str(), "VAULT_TOKEN"),
    ] {
        let before = calls.load(std::sync::atomic::Ordering::SeqCst);
        let mut env = vec![
            ("HOLDFAST_KMS", kms),
            ("HOLDFAST_KMS_KEY", key),
            (token_var, doubles::TOKEN),
        ];
        if !endpoint.is_empty() {
            env.push(("HOLDFAST_KMS_ENDPOINT", endpoint));
        }
        let server = Server::start_with(Backend::Sqlite, &env).await;
        server
            .ok(
                "POST",
                "/v1/ai_secret",
                Some(json!({"name": "K", "secret": SECRET})),
            )
            .await;
        assert!(
            server
                .cli_line(&["secrets", "verify"])
                .starts_with("all 1 secrets decrypt"),
            "{kms}"
        );
        // Two 503s in a row are retried through; a KMS that keeps failing is named.
        fail_next.store(2, std::sync::atomic::Ordering::SeqCst);
        assert!(
            server
                .cli_line(&["secrets", "verify"])
                .starts_with("all 1 secrets decrypt"),
            "{kms}: retried"
        );
        fail_next.store(1000, std::sync::atomic::Ordering::SeqCst);
        let out = server.cli(&["secrets", "verify"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success() && err.contains("503"), "{kms}: {err}");
        fail_next.store(0, std::sync::atomic::Ordering::SeqCst);
        let text = std::fs::read_to_string(server.data_dir().join("storage.key")).unwrap();
        assert!(
            text.contains(&format!("\"kek_id\":\"{kms}:{key}\"")),
            "{kms}: {text}"
        );
        assert!(!server.data_dir().join("kms").exists());
        assert!(
            calls.load(std::sync::atomic::Ordering::SeqCst) > before + 2,
            "{kms}"
        );
        // A wrong token: the server does not start, and says why.
        let bad: Vec<(&str, &str)> = env
            .iter()
            .map(|(k, v)| {
                if *k == token_var {
                    (*k, "wrong")
                } else {
                    (*k, *v)
                }
            })
            .collect();
        let out = std::process::Command::new(crate::harness::BIN)
            .args(["secrets", "verify"])
            .args(server.store_args())
            .envs(bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{kms}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("403"), "{kms}: {err}");
        // The token from a file instead (`<VAR>_FILE`).
        let file = server.data_dir().join("kms-token");
        std::fs::write(&file, format!("{}\n", doubles::TOKEN)).unwrap();
        let file_var = format!("{token_var}_FILE");
        let from_file: Vec<(&str, &str)> = env
            .iter()
            .filter(|(k, _)| *k != token_var)
            .copied()
            .chain([(file_var.as_str(), file.to_str().unwrap())])
            .collect();
        let out = std::process::Command::new(crate::harness::BIN)
            .args(["secrets", "verify"])
            .args(server.store_args())
            .envs(from_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{kms}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A token file is read at every call: renewing it needs no restart.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "expired").unwrap();
    let kms = holdfast_crypto::http::HttpKms::new(
        holdfast_crypto::http::Flavor::Vault,
        &base,
        "transit/holdfast",
        holdfast_crypto::http::Token::File(file.clone()),
    )
    .unwrap();
    let dek = holdfast_crypto::DataKey::generate().unwrap();
    let refused = holdfast_crypto::Kms::wrap(&kms, &dek, "org").await;
    assert!(refused.is_err_and(|e| e.to_string().contains("403")));
    std::fs::write(&file, doubles::TOKEN).unwrap();
    let wrapped = holdfast_crypto::Kms::wrap(&kms, &dek, "org").await.unwrap();
    let back = holdfast_crypto::Kms::unwrap(&kms, &wrapped, "org")
        .await
        .unwrap();
    assert_eq!(back.expose(), dek.expose());

    // Tokens from the metadata services: GCP's is kept until shortly before it expires, the
    // short-lived Azure one is fetched again for each call.
    use holdfast_crypto::http::{Flavor, HttpKms, MetadataToken, Token};
    let gcp = HttpKms::new(
        Flavor::Gcp,
        &base,
        "projects/p/locations/global/keyRings/r/cryptoKeys/holdfast",
        Token::Metadata(MetadataToken::gcp(&base).unwrap()),
    )
    .unwrap();
    let azure = HttpKms::new(
        Flavor::Azure,
        "",
        &format!("{base}/keys/holdfast/v1"),
        Token::Metadata(
            MetadataToken::azure(&base, Some("0b5d1f7e-1234-4cde-9abc-0123456789ab")).unwrap(),
        ),
    )
    .unwrap();
    let fetched = || tokens.load(std::sync::atomic::Ordering::SeqCst);
    let start = fetched();
    for _ in 0..3 {
        let w = holdfast_crypto::Kms::wrap(&gcp, &dek, "org").await.unwrap();
        let back = holdfast_crypto::Kms::unwrap(&gcp, &w, "org").await.unwrap();
        assert_eq!(back.expose(), dek.expose());
    }
    assert_eq!(fetched(), start + 1, "one GCP token for six calls");
    for _ in 0..3 {
        let w = holdfast_crypto::Kms::wrap(&azure, &dek, "org")
            .await
            .unwrap();
        let back = holdfast_crypto::Kms::unwrap(&azure, &w, "org")
            .await
            .unwrap();
        assert_eq!(back.expose(), dek.expose());
    }
    assert_eq!(fetched(), start + 7, "an Azure token per call");
    // A metadata service that refuses is named in the error.
    let refused = HttpKms::new(
        Flavor::Gcp,
        &base,
        "projects/p/locations/global/keyRings/r/cryptoKeys/holdfast",
        Token::Metadata(MetadataToken::gcp(&format!("{base}/nowhere")).unwrap()),
    )
    .unwrap();
    let err = holdfast_crypto::Kms::wrap(&refused, &dek, "org")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("metadata service"), "{err}");
    // And through the settings: a server whose GCP KMS token comes from the metadata server.
    let server = Server::start_with(
        Backend::Sqlite,
        &[
            ("HOLDFAST_KMS", "gcp"),
            (
                "HOLDFAST_KMS_KEY",
                "projects/p/locations/global/keyRings/r/cryptoKeys/holdfast",
            ),
            ("HOLDFAST_KMS_ENDPOINT", base.as_str()),
            ("HOLDFAST_KMS_TOKEN_SOURCE", "metadata"),
            ("HOLDFAST_KMS_METADATA_ENDPOINT", base.as_str()),
        ],
    )
    .await;
    store_and_verify_secret(&server, "K", 1).await;
}

/// With `sslmode=verify-full` the server talks to PostgreSQL over TLS, checking the
/// certificate and host name (the test server's certificate is Debian's snakeoil one, for
/// `localhost`); a host name the certificate does not name is refused at start.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_over_verified_tls() {
    let snakeoil = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
    if !backends().contains(&Backend::Postgres) || !std::path::Path::new(snakeoil).exists() {
        eprintln!(
            "skipped: needs TEST_DATABASE_URL and a PostgreSQL with the snakeoil certificate"
        );
        return;
    }
    let plain = crate::harness::fresh_database().await;
    let name = plain.rsplit('/').next().unwrap().to_owned();
    let tls_url = format!(
        "postgres://postgres@localhost:5432/{name}?sslmode=verify-full&sslrootcert={snakeoil}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args([
            "init",
            "--org",
            "o",
            "--owner",
            "a@example.test",
            "--database-url",
            &tls_url,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A server on it connects over TLS only.
    let port = free_port();
    let mut serve = std::process::Command::new(crate::harness::BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &tls_url,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("HOLDFAST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pool = sqlx::PgPool::connect(&plain).await.unwrap();
    let seen: Vec<(bool,)> = sqlx::query_as(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
         WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind(&name)
    .fetch_all(&pool)
    .await
    .unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(ready, "the server did not start over TLS");
    assert!(
        !seen.is_empty() && seen.iter().all(|(ssl,)| *ssl),
        "{seen:?}"
    );
    // A host name outside the certificate is refused, and the error says so.
    let wrong = tls_url.replace("@localhost:", "@127.0.0.1:");
    let out = std::process::Command::new(crate::harness::BIN)
        .args([
            "org",
            "create",
            "x",
            "--owner",
            "b@example.test",
            "--database-url",
            &wrong,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("certificate") || err.contains("tls"), "{err}");
}
