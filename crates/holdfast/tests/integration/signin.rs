//! Signing in with a local password and browser sessions, as a browser's requests make them:
//! a password set through a one-time link, sign-in and its throttling, the session cookie
//! and the CSRF token, fixation, listing and revocation, idle and absolute expiry (with the
//! server's clock moved), sign-out, and a password reset ending every session.

use crate::harness::{Backend, Server, assert_error, backends};
use serde_json::{Value, json};

const COOKIE: &str = "holdfast_session";

/// Makes `email` a member of `group` with an invite link, and returns the link's token.
fn invite(server: &Server, email: &str, group: &str, reset: bool) -> String {
    let mut args = vec![
        "user", "invite", "--org", "default", "--email", email, "--group", group,
    ];
    if reset {
        args.push("--reset");
    }
    let link = server.cli_line(&args);
    assert!(link.contains("/auth/set-password#token="), "{link}");
    link.rsplit_once("#token=").unwrap().1.to_owned()
}

struct Browser<'a> {
    server: &'a Server,
    http: reqwest::Client,
}

/// What a sign-in answered: status, body, and the cookie it set (value and attributes).
struct SignIn {
    status: u16,
    body: Value,
    cookie: Option<String>,
    set_cookie: String,
}

impl<'a> Browser<'a> {
    fn new(server: &'a Server) -> Self {
        Self {
            server,
            http: crate::harness::client(),
        }
    }

    async fn post_public(
        &self,
        path: &str,
        body: Value,
        cookie: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.server.url))
            .json(&body);
        if let Some(c) = cookie {
            req = req.header("cookie", format!("{COOKIE}={c}"));
        }
        req.send().await.unwrap()
    }

    async fn login(&self, email: &str, password: &str, cookie: Option<&str>) -> SignIn {
        let resp = self
            .post_public(
                "/auth/login",
                json!({"email": email, "password": password}),
                cookie,
            )
            .await;
        let status = resp.status().as_u16();
        let set_cookie = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let cookie = set_cookie
            .split(';')
            .next()
            .and_then(|kv| kv.strip_prefix(&format!("{COOKIE}=")))
            .map(str::to_owned);
        SignIn {
            status,
            body: resp.json().await.unwrap_or(Value::Null),
            cookie,
            set_cookie,
        }
    }

    /// A request with the session cookie (and the CSRF token, when given).
    async fn call(
        &self,
        method: &str,
        path: &str,
        cookie: &str,
        csrf: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(
                method.parse().unwrap(),
                format!("{}{path}", self.server.url),
            )
            .header("cookie", format!("{COOKIE}={cookie}"));
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

const PASSWORD: &str = "correct horse battery";

async fn set_password(b: &Browser<'_>, token: &str, password: &str) -> (u16, Value) {
    let resp = b
        .post_public(
            "/auth/password",
            json!({"token": token, "password": password}),
            None,
        )
        .await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A password set through an invite link (once; checked), then sign-in: wrong passwords and
/// unknown emails refused alike; the cookie's attributes; reads with the cookie alone,
/// changes only with the CSRF token; the session acts with its user's permissions; a
/// session id chosen before sign-in is never used.
async fn password_sign_in(backend: Backend) {
    let server = Server::start(backend).await;
    let b = Browser::new(&server);
    let token = invite(&server, "Ana@Example.test", "Engineers", false);
    let (s, body) = set_password(&b, &token, "short").await;
    assert_error(s, &body, 400, "invalid_field");
    assert_eq!(body["error"]["field"], "password");
    let (s, body) = set_password(&b, &format!("{token}0"), PASSWORD).await;
    assert_error(s, &body, 400, "invalid_field");
    assert_eq!(body["error"]["field"], "token");
    let (s, body) = set_password(&b, &token, PASSWORD).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = set_password(&b, &token, "another good password").await;
    assert_error(s, &body, 400, "invalid_field");

    let wrong = b.login("ana@example.test", "not the password", None).await;
    assert_error(wrong.status, &wrong.body, 401, "unauthenticated");
    let unknown = b.login("nobody@example.test", PASSWORD, None).await;
    assert_error(unknown.status, &unknown.body, 401, "unauthenticated");
    assert_eq!(
        wrong.body["error"]["message"],
        unknown.body["error"]["message"]
    );
    assert!(wrong.cookie.is_none() && unknown.cookie.is_none());
    let long = b
        .login(&format!("{}@example.test", "a".repeat(320)), PASSWORD, None)
        .await;
    assert_error(long.status, &long.body, 400, "invalid_field");
    assert_eq!(long.body["error"]["field"], "email");

    // A session id planted before sign-in is not the one that comes out, and is no session.
    let planted = "a".repeat(64);
    let ok = b.login("ANA@example.test", PASSWORD, Some(&planted)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let cookie = ok.cookie.clone().expect("a session cookie");
    assert_ne!(cookie, planted);
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(ok.set_cookie.contains(attribute), "{}", ok.set_cookie);
    }
    assert!(
        !ok.set_cookie.contains("Secure"),
        "no TLS: {}",
        ok.set_cookie
    );
    let csrf = ok.body["csrf_token"].as_str().unwrap().to_owned();
    let (s, body) = b.call("GET", "/v1/project", &planted, None, None).await;
    assert_error(s, &body, 401, "unauthenticated");

    // Reads with the cookie alone; changes need the CSRF token.
    let (s, body) = b.call("GET", "/v1/project", &cookie, None, None).await;
    assert_eq!(s, 200, "{body}");
    let create = Some(json!({"name": "from the browser"}));
    let (s, body) = b
        .call("POST", "/v1/project", &cookie, None, create.clone())
        .await;
    assert_error(s, &body, 403, "forbidden");
    assert!(body.to_string().contains("X-CSRF-Token"), "{body}");
    let (s, body) = b
        .call(
            "POST",
            "/v1/project",
            &cookie,
            Some(&"0".repeat(64)),
            create.clone(),
        )
        .await;
    assert_error(s, &body, 403, "forbidden");
    let (s, body) = b
        .call("POST", "/v1/project", &cookie, Some(&csrf), create)
        .await;
    assert_eq!(s, 200, "{body}");
    // As the user: an Engineer may make an API key for themselves, and may not start an
    // organization export (Owners only).
    let (s, body) = b
        .call(
            "POST",
            "/v1/api_key",
            &cookie,
            Some(&csrf),
            Some(json!({"name": "mine"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = b
        .call("POST", "/v1/export", &cookie, Some(&csrf), Some(json!({})))
        .await;
    assert_error(s, &body, 403, "forbidden");
    // A bearer key wins over a cookie: the request is the key's.
    let (s, projects) = server
        .call("GET", "/v1/project", Some(&server.key), None)
        .await;
    assert_eq!(s, 200);
    assert!(projects.to_string().contains("from the browser"));

    // Only an Owner turns passwords off; that ends the password sessions and refuses
    // password sign-in (even the right one) until turned back on.
    let org = server.ok("GET", "/v1/organization", None).await["objects"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let settings = format!("/v1/organization/{org}/sign_in");
    let (s, body) = b.call("GET", &settings, &cookie, None, None).await;
    assert_eq!((s, &body["password_login"]), (200, &json!(true)), "{body}");
    let off = Some(json!({"password_login": false}));
    let (s, body) = b
        .call("PUT", &settings, &cookie, Some(&csrf), off.clone())
        .await;
    assert_error(s, &body, 403, "forbidden");
    server.ok("PUT", &settings, off).await;
    let (s, _) = b.call("GET", "/v1/project", &cookie, None, None).await;
    assert_eq!(s, 401, "password sessions end");
    let refused = b.login("ana@example.test", PASSWORD, None).await;
    assert_error(refused.status, &refused.body, 403, "forbidden");
    assert!(refused.cookie.is_none());
    let wrong = b.login("ana@example.test", "not it either", None).await;
    assert_eq!(
        wrong.status, 401,
        "a wrong password says no more than before"
    );
    server
        .ok("PUT", &settings, Some(json!({"password_login": true})))
        .await;
    assert_eq!(
        b.login("ana@example.test", PASSWORD, None).await.status,
        200
    );

    let audit = server.audit_rows().await;
    let actions: Vec<&str> = audit.iter().map(|(a, _, _)| a.as_str()).collect();
    for action in ["password_link", "password_set", "login", "login_failure"] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
    let failures: Vec<&String> = audit
        .iter()
        .filter(|(a, _, _)| a == "login_failure")
        .map(|(_, d, _)| d)
        .collect();
    assert!(
        failures.iter().any(|d| d.contains("wrong password")),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|d| d.contains("no such member")),
        "{failures:?}"
    );
    assert!(
        !audit
            .iter()
            .any(|(_, d, _)| d.contains(PASSWORD) || d.contains(&csrf)),
        "no secret in the audit log"
    );
}

/// Sessions end: listed and revoked by their user (at once), revoked by an Owner, signed
/// out, after the idle limit and after the absolute limit however active, and all of a
/// user's at a password reset; sign-in is throttled after five failures.
async fn sessions_end(backend: Backend) {
    let server = Server::start(backend).await;
    let b = Browser::new(&server);
    let token = invite(&server, "bo@example.test", "Viewers", false);
    assert_eq!(set_password(&b, &token, PASSWORD).await.0, 200);
    let first = b.login("bo@example.test", PASSWORD, None).await;
    let second = b.login("bo@example.test", PASSWORD, None).await;
    let (c1, c2) = (first.cookie.unwrap(), second.cookie.unwrap());
    let csrf1 = first.body["csrf_token"].as_str().unwrap().to_owned();
    let (s, list) = b.call("GET", "/v1/session", &c1, None, None).await;
    assert_eq!(s, 200, "{list}");
    let sessions = list["objects"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{list}");
    assert_eq!(
        sessions
            .iter()
            .filter(|x| x["current"] == json!(true))
            .count(),
        1
    );
    assert!(
        !list.to_string().contains(&c1),
        "no session secret in the list"
    );
    let other = second.body["session_id"].as_str().unwrap().to_owned();
    // The user revokes their other session: it stops at once.
    let (s, body) = b
        .call(
            "DELETE",
            &format!("/v1/session/{other}"),
            &c1,
            Some(&csrf1),
            None,
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = b.call("GET", "/v1/project", &c2, None, None).await;
    assert_error(s, &body, 401, "unauthenticated");
    // An Owner revokes anyone's; a member only their own (another's is not found).
    let third = b.login("bo@example.test", PASSWORD, None).await;
    let c3 = third.cookie.unwrap();
    let third_id = third.body["session_id"].as_str().unwrap();
    let viewer_key = server.member_key("cy@example.test", "Viewers");
    // An Owner lists bo's sessions; another member may not.
    let bo = first.body["user_id"].as_str().unwrap();
    let listed = server
        .ok("GET", &format!("/v1/session?user_id={bo}"), None)
        .await;
    assert!(listed.to_string().contains(third_id), "{listed}");
    let (s, body) = server
        .call(
            "GET",
            &format!("/v1/session?user_id={bo}"),
            Some(&viewer_key),
            None,
        )
        .await;
    assert_error(s, &body, 403, "forbidden");
    let (s, body) = server
        .call(
            "DELETE",
            &format!("/v1/session/{third_id}"),
            Some(&viewer_key),
            None,
        )
        .await;
    assert_error(s, &body, 404, "not_found");
    server
        .ok("DELETE", &format!("/v1/session/{third_id}"), None)
        .await;
    let (s, _) = b.call("GET", "/v1/project", &c3, None, None).await;
    assert_eq!(s, 401);
    // Sign-out ends the session and removes the cookie.
    let resp = b
        .http
        .post(format!("{}/auth/logout", server.url))
        .header("cookie", format!("{COOKIE}={c1}"))
        .header("x-csrf-token", &csrf1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cleared = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cleared.starts_with(&format!("{COOKIE}=;")) && cleared.contains("Max-Age=0"));
    let (s, _) = b.call("GET", "/v1/project", &c1, None, None).await;
    assert_eq!(s, 401);
    // With an API key there is no session to sign out of.
    let (s, body) = server
        .call("POST", "/auth/logout", Some(&server.key), None)
        .await;
    assert_error(s, &body, 400, "bad_request");

    // Idle: two hours without a request end a session.
    let idle = b
        .login("bo@example.test", PASSWORD, None)
        .await
        .cookie
        .unwrap();
    server.set_clock(2 * 3600 - 120);
    assert_eq!(b.call("GET", "/v1/project", &idle, None, None).await.0, 200);
    server.set_clock(2 * (2 * 3600 - 120));
    assert_eq!(
        b.call("GET", "/v1/project", &idle, None, None).await.0,
        200,
        "used: still alive"
    );
    server.set_clock(2 * (2 * 3600 - 120) + 2 * 3600 + 1);
    assert_eq!(b.call("GET", "/v1/project", &idle, None, None).await.0, 401);
    // Absolute: twelve hours after sign-in, however active.
    let start = 2 * (2 * 3600 - 120) + 2 * 3600 + 1;
    let busy = b
        .login("bo@example.test", PASSWORD, None)
        .await
        .cookie
        .unwrap();
    for hour in 1..12 {
        server.set_clock(start + hour * 3600);
        assert_eq!(
            b.call("GET", "/v1/project", &busy, None, None).await.0,
            200,
            "{hour}"
        );
    }
    server.set_clock(start + 12 * 3600 + 1);
    assert_eq!(b.call("GET", "/v1/project", &busy, None, None).await.0, 401);
    server.set_clock(0);

    // A password reset ends every session of the user; the old password no longer works.
    let live = b
        .login("bo@example.test", PASSWORD, None)
        .await
        .cookie
        .unwrap();
    let reset = invite(&server, "bo@example.test", "Viewers", true);
    assert_eq!(
        set_password(&b, &reset, "a brand new passphrase").await.0,
        200
    );
    assert_eq!(b.call("GET", "/v1/project", &live, None, None).await.0, 401);
    assert_eq!(b.login("bo@example.test", PASSWORD, None).await.status, 401);
    assert_eq!(
        b.login("bo@example.test", "a brand new passphrase", None)
            .await
            .status,
        200
    );

    // Throttling: after five failures in a row, even the right password is refused (429).
    for _ in 0..5 {
        assert_eq!(b.login("bo@example.test", "guess", None).await.status, 401);
    }
    let resp = b
        .post_public(
            "/auth/login",
            json!({"email": "bo@example.test", "password": "a brand new passphrase"}),
            None,
        )
        .await;
    assert_eq!(resp.headers()["retry-after"], "900");
    let throttled = b
        .login("bo@example.test", "a brand new passphrase", None)
        .await;
    assert_error(throttled.status, &throttled.body, 429, "rate_limited");
    assert!(throttled.cookie.is_none());
    // Fifteen minutes later it signs in again.
    server.set_clock(15 * 60 + 1);
    assert_eq!(
        b.login("bo@example.test", "a brand new passphrase", None)
            .await
            .status,
        200
    );
    let revoked = server
        .audit_rows()
        .await
        .into_iter()
        .filter(|(_, d, _)| d.contains("\"revoked\":\"session\""))
        .count();
    assert!(revoked >= 2, "{revoked}");
}

/// An Owner's password links through the API: an invite for a member without a password, a
/// reset for one with it; refused to a non-Owner, for a member with grants of their own, and
/// of the wrong kind.
async fn owner_password_links(backend: Backend) {
    let server = Server::start(backend).await;
    let b = Browser::new(&server);
    let engineer_key = server.member_key("erin@example.test", "Engineers");
    server.member_key("vic@example.test", "Viewers");
    let org = server.ok("GET", "/v1/organization", None).await["objects"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let users = server.ok("GET", "/v1/user", None).await;
    let id_of = |email: &str| {
        users["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == email)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (erin, vic) = (id_of("erin@example.test"), id_of("vic@example.test"));
    let path = format!("/v1/organization/{org}/password_link");
    let token_of = |v: &Value| {
        let link = v["link"].as_str().unwrap();
        assert!(link.starts_with(&format!("{}/auth/set-password#token=", server.url)));
        link.rsplit_once("#token=").unwrap().1.to_owned()
    };

    let invite = server
        .ok("POST", &path, Some(json!({"user_id": erin})))
        .await;
    assert_eq!(set_password(&b, &token_of(&invite), PASSWORD).await.0, 200);
    assert_eq!(
        b.login("erin@example.test", PASSWORD, None).await.status,
        200
    );
    let (s, body) = server
        .call(
            "POST",
            &path,
            Some(&server.key),
            Some(json!({"user_id": erin})),
        )
        .await;
    assert_error(s, &body, 409, "conflict");
    let reset = server
        .ok("POST", &path, Some(json!({"user_id": erin, "reset": true})))
        .await;
    assert_eq!(
        set_password(&b, &token_of(&reset), "another good password")
            .await
            .0,
        200
    );
    assert_eq!(
        b.login("erin@example.test", PASSWORD, None).await.status,
        401
    );
    assert_eq!(
        b.login("erin@example.test", "another good password", None)
            .await
            .status,
        200
    );

    // Only those who may remove members, for members without grants of their own.
    let (s, body) = server
        .call(
            "POST",
            &path,
            Some(&engineer_key),
            Some(json!({"user_id": vic})),
        )
        .await;
    assert_error(s, &body, 403, "forbidden");
    let project = server
        .ok("POST", "/v1/project", Some(json!({"name": "links"})))
        .await;
    server
        .ok(
            "POST",
            "/v1/acl",
            Some(json!({"object_type": "project", "object_id": project["id"],
                "user_id": vic, "permission": "read"})),
        )
        .await;
    let (s, body) = server
        .call(
            "POST",
            &path,
            Some(&server.key),
            Some(json!({"user_id": vic})),
        )
        .await;
    assert_error(s, &body, 403, "forbidden");
    let (s, body) = server
        .call(
            "POST",
            &path,
            Some(&server.key),
            Some(json!({"user_id": "nobody"})),
        )
        .await;
    assert_error(s, &body, 400, "invalid_field");
    let links = server
        .audit_rows()
        .await
        .into_iter()
        .filter(|(a, _, _)| a == "password_link")
        .count();
    assert_eq!(links, 3, "the first owner's link, erin's invite and reset");
}

mod run {
    use super::backends;
    on_all_backends!(password_sign_in, sessions_end, owner_password_links);
}
