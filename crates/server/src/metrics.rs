//! Prometheus metrics, in the text exposition format, at `/metrics`.
//!
//! On the API's address, served only when `metrics_token` is set, and only to a request
//! carrying it as a bearer token (compared in constant time; 401 otherwise, 404 with no
//! token configured). With `metrics_listen`, also served on a separate plain-HTTP address
//! of its own, without a token unless one is configured. Also rendered: the policy and
//! API-key caches' lookups by result, and calls to the KMS and S3 (outcomes, retries,
//! latency).
//! Counted per request by the edge layer: requests by method, route and status, and a
//! latency histogram per route. Read at each scrape: rows written, the row writer's group
//! commits (count, requests and rows in them, time spent), index lag and uptime. Route labels are route templates (`/v1/project/{id}`), never raw paths, so
//! their number is bounded by the route table.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Latency {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

pub struct Metrics {
    started: Instant,
    requests: Mutex<HashMap<(String, String, u16), u64>>,
    latency: Mutex<HashMap<String, Latency>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            requests: Mutex::default(),
            latency: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Counts one finished request. Methods outside the standard set count as `OTHER`:
    /// a client may send any method name, and each would otherwise add a series.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
        let method = KNOWN.into_iter().find(|m| *m == method).unwrap_or("OTHER");
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(route.to_owned()).or_default();
            for (bucket, bound) in h.buckets.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }
}

/// A label value, escaped as the exposition format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render(state: &crate::AppState) -> String {
    let m = &state.metrics;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP holdfast_http_requests_total Requests answered, by method, route and status."
    );
    let _ = writeln!(out, "# TYPE holdfast_http_requests_total counter");
    if let Ok(r) = m.requests.lock() {
        let mut rows: Vec<_> = r.iter().collect();
        rows.sort();
        for ((method, route, status), n) in rows {
            let _ = writeln!(
                out,
                "holdfast_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                label(method),
                label(route)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP holdfast_http_request_duration_seconds Time to answer a request, by route."
    );
    let _ = writeln!(
        out,
        "# TYPE holdfast_http_request_duration_seconds histogram"
    );
    if let Ok(l) = m.latency.lock() {
        let mut routes: Vec<_> = l.iter().collect();
        routes.sort_by(|a, b| a.0.cmp(b.0));
        for (route, h) in routes {
            let route = label(route);
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "holdfast_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "holdfast_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "holdfast_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "holdfast_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
    }
    let services = &state.services;
    let _ = writeln!(
        out,
        "# HELP holdfast_cache_lookups_total Lookups of the policy and API-key caches, of long \
         traces' kept summaries and outlines (a miss reads the trace whole) and of experiments' \
         score summaries (a miss reads the experiment whole), by result."
    );
    let _ = writeln!(out, "# TYPE holdfast_cache_lookups_total counter");
    let (hits, reads) = services.kept_traces.lookups();
    let traces = [("long_trace", "hit", hits), ("long_trace", "miss", reads)];
    let scores = services
        .score_summaries
        .lookups()
        .map(|(result, n)| ("score_summary", result, n));
    for (cache, result, n) in services
        .cache_stats()
        .into_iter()
        .chain(traces)
        .chain(scores)
    {
        let _ = writeln!(
            out,
            "holdfast_cache_lookups_total{{cache=\"{cache}\",result=\"{result}\"}} {n}"
        );
    }
    render_outbound(&mut out);
    let (commits, jobs, rows, seconds) = services.store.writer_stats().totals();
    let purge = &services.purge;
    use std::sync::atomic::Ordering::Relaxed;
    for (name, kind, help, value) in [
        (
            "holdfast_writer_commits_total",
            "counter",
            "Group commits of the row writer.",
            commits as f64,
        ),
        (
            "holdfast_writer_requests_total",
            "counter",
            "Requests committed by the row writer (per commit: the group size).",
            jobs as f64,
        ),
        (
            "holdfast_writer_rows_total",
            "counter",
            "Rows committed by the row writer.",
            rows as f64,
        ),
        (
            "holdfast_writer_commit_seconds_total",
            "counter",
            "Time the row writer spent committing groups.",
            seconds,
        ),
        (
            "holdfast_rows_written_total",
            "counter",
            "Row versions written by requests.",
            services.rows_written() as f64,
        ),
        (
            "holdfast_index_lag_versions",
            "gauge",
            "Row versions committed but not yet in the row index.",
            services.store.index_lag() as f64,
        ),
        (
            "holdfast_search_index_lag_versions",
            "gauge",
            "Row versions committed and not yet in the word and value indexes.",
            services.store.writer_stats().text_backlog() as f64,
        ),
        (
            "holdfast_grouped_queries_indexed_total",
            "counter",
            "Grouped queries answered from the value index without reading rows.",
            services
                .grouped_queries
                .indexed
                .load(std::sync::atomic::Ordering::Relaxed) as f64,
        ),
        (
            "holdfast_grouped_queries_read_total",
            "counter",
            "Grouped queries answered by reading rows.",
            services
                .grouped_queries
                .read
                .load(std::sync::atomic::Ordering::Relaxed) as f64,
        ),
        (
            "holdfast_purge_runs_total",
            "counter",
            "Purge runs (including those that found another replica holding the lease).",
            purge.runs.load(Relaxed) as f64,
        ),
        (
            "holdfast_purge_failures_total",
            "counter",
            "Purge runs that stopped on an error (the next run carries on).",
            purge.failures.load(Relaxed) as f64,
        ),
        (
            "holdfast_purge_versions_total",
            "counter",
            "Row versions the purge removed, with their index entries.",
            purge.versions.load(Relaxed) as f64,
        ),
        (
            "holdfast_purge_objects_total",
            "counter",
            "Projects, experiments, datasets and prompts the purge removed.",
            purge.objects.load(Relaxed) as f64,
        ),
        (
            "holdfast_purge_rows_total",
            "counter",
            "Deleted rows of live objects (by `_object_delete` or a retention policy) the purge \
             removed with all their versions.",
            purge.rows.load(Relaxed) as f64,
        ),
        (
            "holdfast_retention_rows_total",
            "counter",
            "Log and dataset rows that retention policies deleted.",
            purge.retention_rows.load(Relaxed) as f64,
        ),
        (
            "holdfast_retention_failures_total",
            "counter",
            "Purge runs whose application of the retention policies stopped on an error (the \
             purge itself goes on; the next run tries again).",
            purge.retention_failures.load(Relaxed) as f64,
        ),
        (
            "holdfast_retention_objects_total",
            "counter",
            "Experiments that retention policies deleted.",
            purge.retention_objects.load(Relaxed) as f64,
        ),
        (
            "holdfast_purge_attachments_total",
            "counter",
            "Attachments the purge removed with their blobs.",
            purge.attachments.load(Relaxed) as f64,
        ),
        (
            "holdfast_purge_waiting",
            "gauge",
            "Deletions past their grace period that the running purge found (0 between runs).",
            purge.waiting.load(Relaxed) as f64,
        ),
        (
            "holdfast_purge_last_compaction_seconds",
            "gauge",
            "How long the store's compaction after the last purge that removed anything took \
             (the embedded store's writer waits for it).",
            purge.last_compaction_ms.load(Relaxed) as f64 / 1000.0,
        ),
        (
            "holdfast_purge_last_run_timestamp_seconds",
            "gauge",
            "When the last purge run on this replica ended (Unix seconds; 0 before the first).",
            purge.last_run.load(Relaxed) as f64,
        ),
        (
            "holdfast_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            m.started.elapsed().as_secs_f64(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// Calls to the KMS and S3: outcomes, retries and a latency histogram, by service.
fn render_outbound(out: &mut String) {
    use holdfast_crypto::retry::{CALL_BUCKETS, call_stats};
    let stats = call_stats();
    let _ = writeln!(
        out,
        "# HELP holdfast_outbound_calls_total Calls to the KMS and S3, by service and outcome \
         (after retries)."
    );
    let _ = writeln!(out, "# TYPE holdfast_outbound_calls_total counter");
    for (service, s) in &stats {
        for (outcome, n) in [("ok", s.ok), ("error", s.failed)] {
            let _ = writeln!(
                out,
                "holdfast_outbound_calls_total{{service=\"{service}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP holdfast_outbound_retries_total Attempts after the first, by service."
    );
    let _ = writeln!(out, "# TYPE holdfast_outbound_retries_total counter");
    for (service, s) in &stats {
        let _ = writeln!(
            out,
            "holdfast_outbound_retries_total{{service=\"{service}\"}} {}",
            s.retries
        );
    }
    let _ = writeln!(
        out,
        "# HELP holdfast_outbound_call_duration_seconds Time of a call to the KMS or S3, \
         retries included."
    );
    let _ = writeln!(
        out,
        "# TYPE holdfast_outbound_call_duration_seconds histogram"
    );
    for (service, s) in &stats {
        let count = s.ok + s.failed;
        for (bound, n) in CALL_BUCKETS.iter().zip(s.buckets) {
            let _ = writeln!(
                out,
                "holdfast_outbound_call_duration_seconds_bucket{{service=\"{service}\",le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "holdfast_outbound_call_duration_seconds_bucket{{service=\"{service}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "holdfast_outbound_call_duration_seconds_sum{{service=\"{service}\"}} {}",
            s.seconds
        );
        let _ = writeln!(
            out,
            "holdfast_outbound_call_duration_seconds_count{{service=\"{service}\"}} {count}"
        );
    }
}

/// `/metrics`, described in the API.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(serve_metrics))
}

/// Prometheus metrics, to requests that carry the configured metrics token (401 without it;
/// 404 to all when no token is configured).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("metrics_token" = [])),
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn serve_metrics(State(state): State<crate::AppState>, req: Request) -> Response {
    let Some(token) = &state.metrics_token else {
        return crate::ApiError(holdfast_services::ServiceError::NotFound(
            "metrics (no metrics_token is configured, so they are off)".into(),
        ))
        .into_response();
    };
    if !bearer_matches(&req, token) {
        return needs_token();
    }
    exposition(&state)
}

fn bearer_matches(req: &Request, token: &str) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                token.as_bytes(),
                given.as_bytes(),
            ))
        })
}

fn needs_token() -> Response {
    crate::ApiError(holdfast_services::ServiceError::Unauthenticated(
        "/metrics needs the configured metrics token",
    ))
    .into_response()
}

fn exposition(state: &crate::AppState) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(state),
    )
        .into_response()
}

/// The router of the separate metrics address (`metrics_listen`): `/metrics` and nothing else.
pub fn router(state: crate::AppState) -> axum::Router {
    let (router, _) = utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(private_metrics))
        .split_for_parts();
    router
        .fallback(|| async {
            crate::ApiError(holdfast_services::ServiceError::NotFound("route".into()))
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::edge::request_context,
        ))
        .with_state(state)
}

/// Prometheus metrics on the separate metrics address: open, unless a token is configured.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String)))]
async fn private_metrics(State(state): State<crate::AppState>, req: Request) -> Response {
    match &state.metrics_token {
        Some(token) if !bearer_matches(&req, token) => needs_token(),
        _ => exposition(&state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_series() {
        let m = Metrics::default();
        for i in 0..100 {
            m.observe(&format!("X{i}"), "/v1/project", 405, 0.001);
        }
        m.observe("GET", "/v1/project", 200, 0.001);
        let r = m.requests.lock().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[&("OTHER".to_owned(), "/v1/project".to_owned(), 405)], 100);
    }
}
