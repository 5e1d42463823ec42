//! The CLI contract.

use crate::harness::{BIN, Backend, backends, fresh_database};
use std::process::Command;

fn holdfast(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("HOLDFAST_LOG", "warn")
        .output()
        .unwrap()
}

async fn init_contract(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_owned();
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_database().await),
    };
    let mut args = vec![
        "init",
        "--data-dir",
        d.as_str(),
        "--org",
        "acme",
        "--owner",
        "owner@acme.test",
    ];
    if let Some(url) = &db {
        args.extend(["--database-url", url.as_str()]);
    }
    let out = holdfast(&args, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "init prints only the key: {stdout:?}"
    );
    let key = stdout.trim().to_owned();
    assert!(key.starts_with("hf_"));
    // On stderr, the link for the owner to set a password.
    let stderr = String::from_utf8(out.stderr).unwrap();
    let token = stderr
        .split_once("/auth/set-password#token=")
        .map(|(_, t)| t.split_whitespace().next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no password link: {stderr}"));
    // Key material is private, and the pepper and storage key are kept only wrapped.
    use std::os::unix::fs::PermissionsExt;
    for f in ["pepper.wrapped", "storage.key"] {
        let path = dir.path().join(f);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"kek_id\":\"local:"), "{f}: {text}");
    }
    assert!(!dir.path().join("pepper.key").exists());
    let kms = dir.path().join("kms");
    assert_eq!(
        std::fs::metadata(&kms).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // A second init fails and changes nothing.
    let again = holdfast(&args, &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialized"));
    assert!(again.stdout.is_empty());
    // The key works against `serve` on the same store, and serve does not re-initialize.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = Command::new(BIN);
    serve.args([
        "serve",
        "--data-dir",
        &d,
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    if let Some(url) = &db {
        serve.args(["--database-url", url]);
    }
    let mut child = serve
        .env("HOLDFAST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = crate::harness::client();
    let mut login = None;
    for _ in 0..200 {
        if let Ok(r) = http
            .post(format!("http://127.0.0.1:{port}/api/apikey/login"))
            .bearer_auth(&key)
            .send()
            .await
        {
            login = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The owner sets a password with the link printed by init, and signs in with it.
    let base = format!("http://127.0.0.1:{port}");
    let set = http
        .post(format!("{base}/auth/password"))
        .json(&serde_json::json!({"token": token, "password": "first owner password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let signed_in = http
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"email": "owner@acme.test", "password": "first owner password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(login.unwrap()["org_info"][0]["name"], "acme");
    assert!(
        out.stdout.is_empty(),
        "serve on an initialized store prints no key"
    );
    // A command that opens the store and exits logs no error as the store closes under the
    // writer's index catch-up (on PostgreSQL it logged one in nearly every run).
    let mut create = vec![
        "user",
        "create",
        "--data-dir",
        d.as_str(),
        "--org",
        "acme",
        "--email",
        "",
        "--group",
        "Viewers",
        "--print-key",
    ];
    if let Some(url) = &db {
        create.extend(["--database-url", url.as_str()]);
    }
    for email in ["second@acme.test", "third@acme.test", "fourth@acme.test"] {
        create[7] = email;
        let out = holdfast(&create, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("ERROR"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn init_prints_one_key_and_refuses_to_run_twice() {
    for b in backends() {
        init_contract(b).await;
    }
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["serve", "--data-dir", d, "--listen", "nonsense"],
            vec![],
            "listen",
        ),
        (
            vec!["serve", "--data-dir", d],
            vec![("HOLDFAST_MAX_BODY_BYTES", "lots")],
            "max_body_bytes",
        ),
        (
            vec!["serve", "--data-dir", d, "--database-url", "mysql://x"],
            vec![],
            "database_url",
        ),
        (
            vec!["serve", "--data-dir", d, "--config", "/nonexistent.toml"],
            vec![],
            "config file",
        ),
        (
            vec!["serve", "--data-dir", d],
            vec![("HOLDFAST_BLOB_STORE", "ftp")],
            "blob_store",
        ),
        (
            vec!["serve", "--data-dir", d],
            vec![
                ("HOLDFAST_KMS", "vault"),
                ("HOLDFAST_KMS_KEY", "transit/k"),
                ("HOLDFAST_KMS_ENDPOINT", "http://127.0.0.1:1"),
                ("HOLDFAST_KMS_TOKEN_SOURCE", "metadata"),
            ],
            "kms_token_source",
        ),
        (
            vec!["serve", "--data-dir", d],
            vec![("HOLDFAST_BLOB_STORE", "s3")],
            "s3_bucket",
        ),
        (
            vec!["serve", "--data-dir", d],
            vec![
                ("HOLDFAST_BLOB_STORE", "s3"),
                ("HOLDFAST_S3_BUCKET", "b"),
                ("HOLDFAST_S3_REGION", "us-east-1"),
                ("HOLDFAST_S3_SSE", "none"),
            ],
            "s3_sse",
        ),
    ];
    for (args, env, needle) in cases {
        let out = holdfast(&args, &env);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.to_lowercase().contains(needle), "{args:?}: {err}");
    }
    let toml = dir.path().join("bad.toml");
    std::fs::write(&toml, "listen = 5\nunknown_setting = true\n").unwrap();
    let out = holdfast(
        &["serve", "--data-dir", d, "--config", toml.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listen") || err.contains("unknown_setting"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn config_file_sets_the_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = dir.path().join("holdfast.toml");
    std::fs::write(
        &toml,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", toml.to_str().unwrap()])
        .env("HOLDFAST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..200 {
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "server from config file did not listen on {port}");
}
