//! Browser safety: security headers on every response and CORS for an allowlist of origins.
//!
//! * Every response carries `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
//!   `Referrer-Policy: no-referrer`, a `Content-Security-Policy` that allows nothing (this is
//!   an API, not a page), `Cross-Origin-Resource-Policy: same-site` and, when served over
//!   TLS, `Strict-Transport-Security`.
//! * CORS: only origins on the configured allowlist get CORS headers. A preflight from an
//!   origin on the list is answered here (before authentication, as browsers send none); a
//!   preflight from any other origin is refused with a JSON 403. With an empty list (the
//!   default) nothing is allowed cross-origin. Credentials are never allowed: clients send
//!   bearer keys, not cookies.

use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOWED_HEADERS: &str =
    "authorization, content-type, content-encoding, x-bt-org-name, x-bt-parent, x-bt-use-cache";

fn set(h: &mut HeaderMap, name: &'static str, value: &'static str) {
    h.insert(name, HeaderValue::from_static(value));
}

fn security_headers(h: &mut HeaderMap, tls: bool) {
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    // A page sets its own (stricter than none would be unusable); everything else allows
    // nothing.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(
            h,
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
        );
    }
    set(h, "cross-origin-resource-policy", "same-site");
    if tls {
        set(
            h,
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        );
    }
}

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let allowed = origin
        .as_deref()
        .is_some_and(|o| state.cors_origins.iter().any(|a| a == o));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = match (preflight, allowed) {
        (true, true) => StatusCode::NO_CONTENT.into_response(),
        (true, false) => (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": {"code": "cors_origin_not_allowed",
                "message": "this origin may not call this server from a browser"}})),
        )
            .into_response(),
        (false, _) => next.run(req).await,
    };
    let h = resp.headers_mut();
    security_headers(h, state.tls);
    if let (Some(o), true) = (origin, allowed)
        && let Ok(v) = HeaderValue::from_str(&o)
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.append(header::VARY, HeaderValue::from_static("origin"));
        if preflight {
            set(h, "access-control-allow-methods", ALLOWED_METHODS);
            set(h, "access-control-allow-headers", ALLOWED_HEADERS);
            set(h, "access-control-max-age", "600");
        } else {
            set(
                h,
                "access-control-expose-headers",
                "content-type, retry-after",
            );
        }
    }
    resp
}
