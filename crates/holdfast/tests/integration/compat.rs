//! The real SDKs against a real server: Python `braintrust` 0.48.1 with `autoevals` 0.4.1 and
//! npm `braintrust` 3.35.0, installed (pinned) by the README's test command into `compat/`.

use crate::harness::{Backend, Server, backends};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

fn compat_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../compat")
}

/// Runs an SDK script with `key` and returns its stdout; stderr is appended after a marker.
fn run_script(server: &Server, key: &str, program: &str, script: &str, project: &str) -> String {
    run_script_with(server, key, program, script, project, &[])
}

fn run_script_with(
    server: &Server,
    key: &str,
    program: &str,
    script: &str,
    project: &str,
    env: &[(&str, &str)],
) -> String {
    let out = Command::new(program)
        .arg(compat_dir().join(script))
        .envs(env.iter().copied())
        .env("BRAINTRUST_API_KEY", key)
        .env("BRAINTRUST_APP_URL", &server.url)
        .env("BRAINTRUST_MAX_REQUEST_SIZE", "200000")
        .env(
            "BRAINTRUST_PROMPT_CACHE_DIR",
            server.data_dir().join("prompt-cache"),
        )
        .env("HF_PROJECT", project)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (run the README's test command to install it): {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    format!("{stdout}\n--- stderr\n{stderr}")
}

/// A bucket of a team's own files (moto's S3 server) holding one object, which rows may
/// reference as an `ExternalAttachment`; and the server settings that allow it.
struct TeamBucket {
    _moto: crate::secrets::Moto,
    settings: Vec<(&'static str, String)>,
    url: String,
}

const EXTERNAL_BODY: &str = "quarterly report, kept in the team's own bucket";

impl TeamBucket {
    async fn start() -> Self {
        let moto = crate::secrets::Moto::start();
        moto.create_bucket("team-files").await;
        moto.s3("team-files")
            .put("reports/q3.txt", EXTERNAL_BODY.as_bytes().to_vec())
            .await
            .unwrap();
        let settings = vec![
            (
                "HOLDFAST_EXTERNAL_ATTACHMENTS_BUCKET",
                "team-files".to_owned(),
            ),
            // One organization: its objects live under `reports/`.
            (
                "HOLDFAST_EXTERNAL_ATTACHMENTS_PREFIX",
                "reports/".to_owned(),
            ),
            ("HOLDFAST_S3_REGION", "us-east-1".to_owned()),
            ("HOLDFAST_S3_ENDPOINT", moto.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ];
        Self {
            _moto: moto,
            settings,
            url: "s3://team-files/reports/q3.txt".to_owned(),
        }
    }

    fn settings<'a>(&'a self, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut all: Vec<(&str, &str)> = self
            .settings
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        all.extend_from_slice(more);
        all
    }

    fn script_env(&self) -> [(&str, &str); 2] {
        [
            ("HF_EXTERNAL_URL", self.url.as_str()),
            ("HF_EXTERNAL_BODY", EXTERNAL_BODY),
        ]
    }
}

async fn python_flows(backend: Backend) {
    let bucket = TeamBucket::start().await;
    // The payload cap is lowered so that a 300 KB row goes through /logs3/overflow.
    let server = Server::start_with(
        backend,
        &bucket.settings(&[("HOLDFAST_LOGS3_PAYLOAD_MAX_BYTES", "200000")]),
    )
    .await;
    let python = compat_dir().join(".venv/bin/python");
    // The flows run as an Engineer, not as the owner.
    let engineer = server.member_key("engineer@example.test", "Engineers");
    let out = run_script_with(
        &server,
        &engineer,
        python.to_str().unwrap(),
        "py/sdk_flows.py",
        "compat-py",
        &bucket.script_env(),
    );
    assert!(out.contains("python sdk flows: all passed"), "{out}");
    // The overflow upload was consumed: its folder exists and is empty again.
    let blobs = server.data_dir().join("blobs");
    let org_dir = std::fs::read_dir(&blobs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let overflow = org_dir.join("overflow");
    assert!(overflow.is_dir(), "the SDK never used /logs3/overflow");
    assert_eq!(std::fs::read_dir(overflow).unwrap().count(), 0);
}

async fn js_flows(backend: Backend) {
    let bucket = TeamBucket::start().await;
    let server = Server::start_with(backend, &bucket.settings(&[])).await;
    let engineer = server.member_key("engineer@example.test", "Engineers");
    let out = run_script_with(
        &server,
        &engineer,
        "node",
        "js/sdk_flows.mjs",
        "compat-js",
        &bucket.script_env(),
    );
    assert!(out.contains("js sdk flows: all passed"), "{out}");
}

async fn viewer_flow(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server
        .ok(
            "POST",
            "/v1/project",
            Some(json!({"name": "compat-viewer"})),
        )
        .await;
    let pid = project["id"].as_str().unwrap();
    let viewer = server.member_key("viewer@example.test", "Viewers");
    let python = compat_dir().join(".venv/bin/python");
    let out = run_script(
        &server,
        &viewer,
        python.to_str().unwrap(),
        "py/viewer_flow.py",
        "compat-viewer",
    );
    assert!(out.contains("python viewer flow: all refused"), "{out}");
    // The SDK said why it dropped the log batch and the dataset.
    // Refused before the batch is read: the viewer may write rows nowhere.
    assert!(out.contains("may not write rows"), "{out}");
    assert!(out.contains("lacks permission create on dataset"), "{out}");
    // Nothing was written: no log rows, no experiment, no dataset.
    let logs = server
        .fetch_all(&format!("/v1/project_logs/{pid}/fetch"), 100)
        .await;
    assert!(logs.is_empty(), "{logs:?}");
    for kind in ["experiment", "dataset"] {
        let list = server
            .ok("GET", &format!("/v1/{kind}?project_id={pid}"), None)
            .await;
        assert_eq!(list["objects"].as_array().unwrap().len(), 0, "{list}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_viewer_is_refused() {
    for b in backends() {
        viewer_flow(b).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_flows() {
    for b in backends() {
        python_flows(b).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn js_sdk_flows() {
    for b in backends() {
        js_flows(b).await;
    }
}
