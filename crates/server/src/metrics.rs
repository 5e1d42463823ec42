//! Prometheus metrics, in the text exposition format, at `/metrics`.
//!
//! Served only when `metrics_token` is set, and only to a request carrying it as a bearer
//! token (compared in constant time); otherwise `/metrics` is a 404 like any unknown route.
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
    let (commits, jobs, rows, seconds) = services.store.writer_stats().totals();
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

pub async fn serve_metrics(State(state): State<crate::AppState>, req: Request) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let allowed = match (&state.metrics_token, given) {
        (Some(token), Some(given)) => bool::from(subtle::ConstantTimeEq::ct_eq(
            token.as_bytes(),
            given.as_bytes(),
        )),
        _ => false,
    };
    if !allowed {
        return crate::ApiError(holdfast_services::ServiceError::NotFound("route".into()))
            .into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&state),
    )
        .into_response()
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
