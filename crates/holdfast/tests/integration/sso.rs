//! Signing in through a real OpenID provider (npm `oidc-provider`, run locally by
//! `compat/js/oidc_provider.mjs`) in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven by Python `selenium`): `compat/py/oidc_browser.py` signs in,
//! provisions, maps groups, signs out and checks every refusal; this test configures the
//! connection through the API and reads the audit log afterwards.

use crate::harness::{Backend, Server, assert_error, backends, free_port};
use serde_json::json;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn compat_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../compat")
}

const CLIENT_ID: &str = "holdfast-test";
const CLIENT_SECRET: &str = "oidc-client-secret-7f3a9c";

/// The local OpenID provider; stopped when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    fn start(redirect_uri: &str) -> Self {
        let (port, inner) = (free_port(), free_port());
        let (child, issuer) = spawn_ready(
            Command::new("node")
                .arg(compat_dir().join("js/oidc_provider.mjs"))
                .args([
                    &port.to_string(),
                    redirect_uri,
                    CLIENT_ID,
                    CLIENT_SECRET,
                    &inner.to_string(),
                ]),
        );
        Self { child, issuer }
    }
}

/// Starts a local identity provider and waits for its "ready <address>" line; answers the
/// process and the address.
fn spawn_ready(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the local identity provider runs (run the README's test command)");
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout);
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready "), "provider said {line:?}");
    // The provider keeps writing notices; a closed pipe would stop it.
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    let address = line["ready ".len()..].trim().to_owned();
    (child, address)
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn oidc_in_chromium(backend: Backend) {
    let server = Server::start(backend).await;
    let provider = Provider::start(&format!("{}/auth/oidc/callback", server.url));
    let org = server.ok("GET", "/v1/organization", None).await["objects"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/organization/{org}/oidc");
    let config = |issuer: &str, mapping: serde_json::Value| {
        json!({
            "name": "Acme IdP", "preset": "custom", "issuer": issuer,
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "scopes": ["email", "profile", "groups"],
            "allowed_domains": ["acme.test"], "group_mapping": mapping,
        })
    };
    let mapping = json!({"hf-eng": "Engineers", "hf-view": "Viewers"});

    // Refused configurations: nothing is stored.
    for (body, field) in [
        (config("http://idp.example.com", mapping.clone()), "issuer"),
        (
            config(
                &format!("http://127.0.0.1:{}", free_port()),
                mapping.clone(),
            ),
            "issuer",
        ),
        (
            config(&provider.issuer, json!({"hf-eng": "No such group"})),
            "group_mapping",
        ),
    ] {
        let (s, b) = server
            .call("POST", &path, Some(&server.key), Some(body))
            .await;
        assert_error(s, &b, 400, "invalid_field");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    let engineer = server.member_key("eng@acme.test", "Engineers");
    let (s, b) = server
        .call(
            "POST",
            &path,
            Some(&engineer),
            Some(config(&provider.issuer, mapping.clone())),
        )
        .await;
    assert_eq!(s, 403, "only Owners configure sign-in: {b}");
    // Whoever configures a provider can sign in as any member it names, so updating the
    // organization is not enough: the caller must hold what every group grants (Owners).
    let admins = server
        .ok("POST", "/v1/group", Some(json!({"name": "org-admins"})))
        .await;
    server
        .ok(
            "POST",
            "/v1/acl",
            Some(json!({"object_type": "organization", "object_id": org,
                "group_id": admins["id"], "permission": "update"})),
        )
        .await;
    let admin = server.member_key("admin@acme.test", "org-admins");
    let (s, b) = server
        .call(
            "POST",
            &path,
            Some(&admin),
            Some(config(&provider.issuer, json!({}))),
        )
        .await;
    assert_eq!(s, 403, "org update alone does not configure sign-in: {b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("group"),
        "refused for the groups it could reach: {b}"
    );
    let (s, listed) = server.call("GET", &path, Some(&server.key), None).await;
    assert_eq!((s, listed["objects"].as_array().unwrap().len()), (200, 0));

    let created = server
        .ok("POST", &path, Some(config(&provider.issuer, mapping)))
        .await;
    assert_eq!(created["client_secret_set"], true);
    assert_eq!(
        created["redirect_uri"],
        format!("{}/auth/oidc/callback", server.url)
    );
    let listed = server.ok("GET", &path, None).await;
    assert!(
        !listed.to_string().contains(CLIENT_SECRET),
        "the secret is never returned"
    );

    // The browser: a password from an invite link; then login through the provider,
    // provisioning, mapping, logout, rotation and every refusal.
    let invite = server.cli_line(&[
        "user",
        "invite",
        "--org",
        "default",
        "--email",
        "dave@acme.test",
        "--group",
        "Engineers",
    ]);
    // The CLI prints the link at the configured public URL; this server listens elsewhere.
    let token = invite
        .rsplit_once("#token=")
        .expect("the invite command prints the link")
        .1;
    let invite = format!("{}/auth/set-password#token={token}", server.url);
    let shots = std::env::temp_dir().join(format!("holdfast-oidc-{backend:?}"));
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(compat_dir().join(".venv/bin/python"))
        .arg(compat_dir().join("py/oidc_browser.py"))
        .env("HOLDFAST", &server.url)
        .env("PROVIDER", &provider.issuer)
        .env("OWNER_KEY", &server.key)
        .env("INVITE", &invite)
        .env("SHOTS", &shots)
        .env("SE_OFFLINE", "true")
        .output()
        .expect("the browser script runs (run the README's test command)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser checks failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shots.join("02-account.png").exists());

    // Every sign-in and every refusal is in the audit log, with the method and the provider,
    // and the reason of each refusal; the client secret never is.
    let audit = server.audit_rows().await;
    assert!(
        !audit.iter().any(|(_, d, _)| d.contains(CLIENT_SECRET)),
        "no client secret in the audit log"
    );
    let logins = audit
        .iter()
        .filter(|(a, d, _)| a == "login" && d.contains("\"method\":\"oidc\""))
        .count();
    assert!(logins >= 4, "{logins} OIDC sign-ins audited");
    let reasons: Vec<&str> = audit
        .iter()
        .filter(|(a, d, _)| a == "login_failure" && d.contains("\"method\":\"oidc\""))
        .map(|(_, d, _)| d.as_str())
        .collect();
    for expected in [
        "InvalidIssuer",
        "InvalidAudience",
        "InvalidSignature",
        "not usable",
        "HS256",
        "ExpiredSignature",
        "nonce",
        "unknown, used or expired state",
        "invalid_grant",
        "not an allowed domain",
        "not verified",
        "another browser",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no refusal audited for {expected:?}:\n{}",
            reasons.join("\n")
        );
    }
    assert!(
        audit.iter().any(|(a, _, _)| a == "logout"),
        "signing out from the page is audited"
    );

    // A sign-in or password form posted from another site is refused (login CSRF).
    let http = reqwest::Client::new();
    for (name, value) in [
        ("origin", "http://evil.test"),
        ("sec-fetch-site", "cross-site"),
    ] {
        for page in ["/login", "/auth/set-password"] {
            let resp = http
                .post(format!("{}{page}", server.url))
                .header(name, value)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("email=dave%40acme.test&password=correct+horse+battery+staple")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403, "{page} with {name}: {value}");
        }
    }

    // Rotating the organization's data key re-seals the client secret too.
    let before = server
        .count_sql("SELECT max(secret_dek_version) FROM sso_connections")
        .await;
    server.cli_line(&["keys", "rotate-dek", "--org", "default"]);
    let after = server
        .count_sql("SELECT min(secret_dek_version) FROM sso_connections")
        .await;
    assert_eq!(
        after,
        before + 1,
        "the client secret is sealed under the new key"
    );

    // Removing the connection ends the sessions made through it.
    let id = created["id"].as_str().unwrap();
    server.ok("DELETE", &format!("{path}/{id}"), None).await;
    let live = server
        .count_sql(&format!(
            "SELECT count(*) FROM sessions WHERE method = 'oidc:{id}' AND revoked IS NULL"
        ))
        .await;
    assert_eq!(live, 0);
    let (s, b) = server
        .call("DELETE", &format!("{path}/{id}"), Some(&server.key), None)
        .await;
    assert_error(s, &b, 404, "not_found");
}

/// The local SAML identity provider (pysaml2); stopped when dropped.
#[cfg(feature = "saml")]
struct SamlIdp {
    child: Child,
    base: String,
}

#[cfg(feature = "saml")]
impl SamlIdp {
    fn start() -> Self {
        let port = free_port();
        let (child, _) = spawn_ready(
            Command::new(compat_dir().join(".venv/bin/python"))
                .arg(compat_dir().join("py/saml_idp.py"))
                .arg(port.to_string()),
        );
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

#[cfg(feature = "saml")]
impl Drop for SamlIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signing in through a real SAML identity provider (pysaml2 signing with Debian's xmlsec1,
/// `compat/py/saml_idp.py`): this test configures the connection through the API (and the
/// configurations it must refuse), hands the IdP this service provider's metadata, and runs
/// `compat/py/saml_browser.py` (Chromium login, provisioning, group mapping, sign-out, and
/// every refusal); then reads the audit log, and removes the connection.
#[cfg(feature = "saml")]
async fn saml_in_chromium(backend: Backend) {
    let server = Server::start(backend).await;
    let idp = SamlIdp::start();
    let org = server.ok("GET", "/v1/organization", None).await["objects"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/organization/{org}/saml");
    let http = reqwest::Client::new();
    let metadata = http
        .get(format!("{}/metadata", idp.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mapping = json!({"hf-eng": "Engineers", "hf-view": "Viewers"});
    let config = |source: serde_json::Value| {
        let mut c = json!({"name": "Acme SAML", "allowed_domains": ["acme.test"],
            "group_mapping": mapping});
        c.as_object_mut()
            .unwrap()
            .extend(source.as_object().unwrap().clone());
        c
    };
    // Metadata without a signing certificate would let unsigned responses through: refused.
    let unsigned_md = {
        let start = metadata
            .find("<ns0:KeyDescriptor")
            .or_else(|| metadata.find("<md:KeyDescriptor"));
        let end_tag = "KeyDescriptor>";
        let start = start.expect("the IdP's metadata has a KeyDescriptor");
        let end = metadata[start..].find(end_tag).unwrap() + start + end_tag.len();
        format!("{}{}", &metadata[..start], &metadata[end..])
    };
    for (body, field) in [
        (
            config(json!({"idp_metadata_xml": unsigned_md})),
            "idp_metadata_xml",
        ),
        (
            config(json!({"idp_metadata_xml": "<not-metadata/>"})),
            "idp_metadata_xml",
        ),
        (
            config(
                json!({"idp_metadata_xml": "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"b\">]><x/>"}),
            ),
            "idp_metadata_xml",
        ),
        (config(json!({})), "idp_metadata_xml"),
        (
            config(
                json!({"idp_metadata_xml": metadata, "idp_metadata_url": format!("{}/metadata", idp.base)}),
            ),
            "idp_metadata_xml",
        ),
        (
            config(
                json!({"idp_metadata_url": format!("http://127.0.0.1:{}/metadata", free_port())}),
            ),
            "idp_metadata_url",
        ),
        (
            config(json!({"idp_metadata_url": "http://idp.example.com/metadata"})),
            "idp_metadata_url",
        ),
    ] {
        let (s, b) = server
            .call("POST", &path, Some(&server.key), Some(body))
            .await;
        assert_error(s, &b, 400, "invalid_field");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    let engineer = server.member_key("eng@acme.test", "Engineers");
    let (s, b) = server
        .call(
            "POST",
            &path,
            Some(&engineer),
            Some(config(
                json!({"idp_metadata_url": format!("{}/metadata", idp.base)}),
            )),
        )
        .await;
    assert_eq!(s, 403, "only Owners configure sign-in: {b}");
    let (s, listed) = server.call("GET", &path, Some(&server.key), None).await;
    assert_eq!((s, listed["objects"].as_array().unwrap().len()), (200, 0));

    let created = server
        .ok(
            "POST",
            &path,
            Some(config(
                json!({"idp_metadata_url": format!("{}/metadata", idp.base)}),
            )),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["idp_entity_id"], format!("{}/metadata", idp.base));
    assert_eq!(
        created["acs_url"],
        format!("{}/auth/saml/{id}/acs", server.url)
    );
    assert_eq!(
        created["idp_certificate_sha256"].as_array().unwrap().len(),
        1,
        "{created}"
    );
    // A replace without metadata keeps the identity provider's (what the admin page's edit
    // form sends): the settings change, the IdP stays.
    let one = format!("{path}/{id}");
    let mut wider = config(json!({}));
    wider["allowed_domains"] = json!(["acme.test", "acme.example"]);
    wider["email_attribute"] = json!("mail");
    let replaced = server.ok("PUT", &one, Some(wider)).await;
    assert_eq!(
        replaced["allowed_domains"],
        json!(["acme.test", "acme.example"])
    );
    assert_eq!(replaced["email_attribute"], "mail");
    for kept in [
        "idp_entity_id",
        "idp_sso_url",
        "idp_metadata_url",
        "idp_certificate_sha256",
    ] {
        assert_eq!(replaced[kept], created[kept], "{kept}");
    }
    let replaced = server.ok("PUT", &one, Some(config(json!({})))).await;
    assert_eq!(replaced["allowed_domains"], created["allowed_domains"]);
    assert_eq!(replaced["email_attribute"], created["email_attribute"]);
    // OpenID Connect's API does not see SAML connections, and cannot remove them.
    let oidc = server
        .ok("GET", &format!("/v1/organization/{org}/oidc"), None)
        .await;
    assert_eq!(oidc["objects"].as_array().unwrap().len(), 0);
    let (s, b) = server
        .call(
            "DELETE",
            &format!("/v1/organization/{org}/oidc/{id}"),
            Some(&server.key),
            None,
        )
        .await;
    assert_error(s, &b, 404, "not_found");

    // This service provider's metadata, which the IdP's administrator registers.
    let sp_md = http
        .get(created["sp_entity_id"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(sp_md.status(), 200);
    let sp_md = sp_md.text().await.unwrap();
    assert!(
        sp_md.contains(created["acs_url"].as_str().unwrap()),
        "{sp_md}"
    );
    let resp = http
        .post(format!("{}/__sp", idp.base))
        .body(sp_md.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the IdP takes the SP metadata {sp_md}: {}",
        resp.text().await.unwrap_or_default()
    );

    let shots = std::env::temp_dir().join(format!("holdfast-saml-{backend:?}"));
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(compat_dir().join(".venv/bin/python"))
        .arg(compat_dir().join("py/saml_browser.py"))
        .env("HOLDFAST", &server.url)
        .env("IDP", &idp.base)
        .env("CONNECTION", &id)
        .env("OWNER_KEY", &server.key)
        .env("SHOTS", &shots)
        .env("SE_OFFLINE", "true")
        .output()
        .expect("the browser script runs (run the README's test command)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "SAML checks failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shots.join("01-saml-account.png").exists());

    // Every sign-in and refusal is audited with its method, provider and reason.
    let audit = server.audit_rows().await;
    let logins = audit
        .iter()
        .filter(|(a, d, _)| a == "login" && d.contains("\"method\":\"saml\""))
        .count();
    assert!(logins >= 6, "{logins} SAML sign-ins audited");
    let reasons: Vec<&str> = audit
        .iter()
        .filter(|(a, d, _)| a == "login_failure" && d.contains("\"method\":\"saml\""))
        .map(|(_, d, _)| d.as_str())
        .collect();
    for expected in [
        "must be signed",
        "exactly one is accepted",
        "Condition expired",
        "AudienceRequirement",
        "Recipient",
        "InResponseTo",
        "unknown, used or expired RelayState",
        "another browser",
        "not an allowed domain",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no refusal audited for {expected:?}:\n{}",
            reasons.join("\n")
        );
    }

    // Removing the connection ends the sessions made through it; key rotation skips it.
    server.cli_line(&["keys", "rotate-dek", "--org", "default"]);
    server.ok("DELETE", &format!("{path}/{id}"), None).await;
    let live = server
        .count_sql(&format!(
            "SELECT count(*) FROM sessions WHERE method = 'saml:{id}' AND revoked IS NULL"
        ))
        .await;
    assert_eq!(live, 0);
    let resp = http
        .get(format!("{}/auth/saml/{id}/start", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// Without the `saml` feature a SAML connection cannot be made, and says why.
#[cfg(not(feature = "saml"))]
async fn saml_in_chromium(backend: Backend) {
    let server = Server::start(backend).await;
    let org = server.ok("GET", "/v1/organization", None).await["objects"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, b) = server
        .call(
            "POST",
            &format!("/v1/organization/{org}/saml"),
            Some(&server.key),
            Some(json!({"name": "x", "idp_metadata_xml": "<x/>"})),
        )
        .await;
    assert_error(s, &b, 400, "invalid_field");
    assert!(b.to_string().contains("`saml` feature"), "{b}");
}

mod run {
    use super::backends;
    on_all_backends!(oidc_in_chromium, saml_in_chromium);
}
