//! HTTPS, CORS and security headers, as a browser and a TLS client see them.

use crate::harness::{BIN, Backend, Server, free_port};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

const UI: &str = "https://ui.example.test";

async fn preflight(server: &Server, origin: &str) -> reqwest::Response {
    crate::harness::client()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/project", server.url),
        )
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap()
}

fn assert_security_headers(h: &reqwest::header::HeaderMap) {
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(
            h.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{name}"
        );
    }
    assert!(h.contains_key("content-security-policy"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_allowlist_and_security_headers() {
    let origins = format!("[\"{UI}\"]");
    let server = Server::start_with(
        Backend::Sqlite,
        &[("HOLDFAST_CORS_ALLOWED_ORIGINS", origins.as_str())],
    )
    .await;
    // An allowed origin's preflight is answered, without a key.
    let ok = preflight(&server, UI).await;
    assert_eq!(ok.status(), 204);
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], UI);
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    assert!(h.get("access-control-allow-credentials").is_none());
    assert_security_headers(h);
    // Any other origin's preflight is refused with a reason.
    for other in [
        "https://evil.example.test",
        "https://ui.example.test.evil.test",
        "null",
    ] {
        let refused = preflight(&server, other).await;
        assert_eq!(refused.status(), 403, "{other}");
        assert!(
            refused
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "cors_origin_not_allowed");
    }
    // Simple requests: the allowed origin may read the answer, another may not.
    let http = crate::harness::client();
    for (origin, allowed) in [(UI, true), ("https://evil.example.test", false)] {
        let r = http
            .get(format!("{}/v1/project", server.url))
            .bearer_auth(&server.key)
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers().contains_key("access-control-allow-origin"),
            allowed
        );
        assert_security_headers(r.headers());
    }
    // Security headers on errors and public routes too; no HSTS over plain HTTP.
    for path in ["/healthz", "/v1/project", "/no/such/route"] {
        let r = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_security_headers(r.headers());
        assert!(r.headers().get("strict-transport-security").is_none());
    }
    // Nothing is allowed cross-origin by default.
    let default = Server::start(Backend::Sqlite).await;
    assert_eq!(preflight(&default, UI).await.status(), 403);
}

fn self_signed(dir: &Path, name: &str) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.crt")))
        .args([
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// `openssl s_client` with one protocol version; returns (handshake ok, output).
fn s_client(port: u16, version: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            version,
        ])
        // Let the client offer old versions at all, so that the server is what refuses.
        .args(["-cipher", "DEFAULT:@SECLEVEL=0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
    (ok, text)
}

/// The subject of the certificate the server presents.
fn presented_subject(port: u16) -> String {
    let (_, text) = s_client(port, "-tls1_3");
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_modern_tls_only_and_certificate_reload() {
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path(), "first");
    std::fs::copy(dir.path().join("first.crt"), dir.path().join("tls.crt")).unwrap();
    std::fs::copy(dir.path().join("first.key"), dir.path().join("tls.key")).unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .env("HOLDFAST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "the HTTPS server did not start");
    // TLS 1.3 and 1.2 are served; 1.1 and 1.0 are refused by the server.
    for v in ["-tls1_3", "-tls1_2"] {
        let (ok, text) = s_client(port, v);
        assert!(ok, "{v} failed: {text}");
    }
    for v in ["-tls1_1", "-tls1"] {
        let (ok, text) = s_client(port, v);
        assert!(!ok, "{v} was accepted: {text}");
    }
    // HTTPS answers with HSTS (curl trusts the self-signed certificate explicitly).
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(dir.path().join("first.crt"))
        .arg(format!("https://127.0.0.1:{port}/healthz"))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let status_line = headers.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with("http/") && status_line.contains(" 200"),
        "{headers}"
    );
    assert!(
        headers.contains("strict-transport-security: max-age="),
        "{headers}"
    );
    // SIGHUP reloads a replaced certificate without a restart.
    assert!(
        presented_subject(port).contains("CN=first")
            || presented_subject(port).contains("CN = first")
    );
    self_signed(dir.path(), "second");
    std::fs::copy(dir.path().join("second.crt"), dir.path().join("tls.crt")).unwrap();
    std::fs::copy(dir.path().join("second.key"), dir.path().join("tls.key")).unwrap();
    Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    let mut reloaded = false;
    for _ in 0..50 {
        let s = presented_subject(port);
        if s.contains("second") {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reloaded, "the certificate was not reloaded");
}

/// Stops the server even when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
