//! A project's logs: its traces newest first, one row per trace (the summary shape), with a
//! time range, a filter box taking a SQL/BTQL `WHERE` expression, full-text search, an
//! errors-only view, a choice of columns, and paging by the query engine's cursor. With
//! `oid` (what `span.link()` makes) the page shows that row's trace instead.

use super::view;
use super::{
    AppState, PageResult, Place, document, param, project_page, project_path, query_string,
    run_query, source, trace,
};
use crate::extract::{Authed, BaseUrl};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use holdfast_services::ServiceError;
use maud::{Markup, html};
use serde_json::{Value, json};

/// Traces per page.
const PAGE: u64 = 50;

/// The table's columns: (parameter, heading), in order.
const COLUMNS: [(&str, &str); 8] = [
    ("time", "Time"),
    ("name", "Name"),
    ("input", "Input"),
    ("output", "Output"),
    ("scores", "Scores"),
    ("duration", "Duration"),
    ("tokens", "Tokens"),
    ("errors", "Errors"),
];

/// The time ranges offered: (parameter, label, seconds).
const RANGES: [(&str, &str, i64); 5] = [
    ("1h", "Last hour", 3_600),
    ("24h", "Last 24 hours", 86_400),
    ("7d", "Last 7 days", 7 * 86_400),
    ("30d", "Last 30 days", 30 * 86_400),
    ("all", "All time", 0),
];

/// The start of the time range chosen, if any.
///
/// The range is of the traces' times (their roots' `created`, the table's time column), and
/// is applied to the table as read newest first: it ends at the first trace older than the
/// start. As a filter on spans it would match every span in the range, and a query must
/// then read each to find its trace; a range holding most of a project (the last 7 days of
/// 1M spans) ran into the query time limit.
fn range_start(s: &AppState, range: &str) -> Option<time::OffsetDateTime> {
    let secs = RANGES
        .iter()
        .find(|(p, _, _)| *p == range)
        .map_or(0, |(_, _, secs)| *secs);
    (secs > 0).then(|| s.services.clock.now() - time::Duration::seconds(secs))
}

/// Whether a row of the table is older than `start` (a row whose time cannot be read is not).
fn older_than(row: &Value, start: time::OffsetDateTime) -> bool {
    row.get("created")
        .and_then(Value::as_str)
        .and_then(holdfast_core::clock::parse_timestamp)
        .is_some_and(|t| t < start)
}

/// The filter the page's controls make, and what was wrong with the text the user typed.
fn filter(text: &str, search: &str, errors: bool) -> (Option<Value>, Option<String>) {
    let mut parts = Vec::new();
    let mut problem = None;
    if !text.trim().is_empty() {
        match holdfast_core::btql::parse_filter(text) {
            Ok(e) => parts.push(e),
            Err(e) => {
                problem = Some(format!(
                    "The filter is not valid at line {}, column {}: {}",
                    e.line, e.column, e.message
                ));
            }
        }
    }
    let quoted = |t: &str| format!("'{}'", t.replace('\'', "''"));
    if !search.trim().is_empty() {
        let any = holdfast_services::btql::TEXT_FIELDS
            .iter()
            .map(|f| format!("{f} MATCH {}", quoted(search.trim())))
            .collect::<Vec<_>>()
            .join(" OR ");
        match holdfast_core::btql::parse_filter(&any) {
            Ok(e) => parts.push(e),
            Err(e) => problem = Some(format!("The search is not valid: {}", e.message)),
        }
    }
    if errors && let Ok(e) = holdfast_core::btql::parse_filter("error IS NOT NULL") {
        parts.push(e);
    }
    let combined = match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(json!({"op": "and", "children": parts})),
    };
    (combined, problem)
}

pub(crate) async fn page(
    State(s): State<AppState>,
    authed: Authed,
    BaseUrl(base): BaseUrl,
    Path((org, project)): Path<(String, String)>,
    req: Request,
) -> PageResult {
    let (v, project) = project_page(&s, authed, base, &org, &project).await?;
    let q = req.uri().query();
    let here = project_path(&v, &project.name, "logs", None);
    let place = Some(Place {
        project: &project.name,
        section: "logs",
    });
    let oid = param(q, "oid");
    if !oid.is_empty() {
        let at = trace::Opened {
            place: Place {
                project: &project.name,
                section: "logs",
            },
            project_id: &project.id,
            source: ("project_logs", project.id.as_str()),
            here: &here,
            oid: &oid,
            compare: "",
        };
        let found = at.read(&s, &v).await?;
        let head = html! { p { a href=(here) { "← All logs of " (project.name) } } };
        return trace::page(&s, &v, at, found, head).await;
    }

    let (text, search, range) = (param(q, "filter"), param(q, "search"), param(q, "range"));
    let errors = param(q, "errors") == "1";
    let cursor = param(q, "cursor");
    let chosen: Vec<&str> = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "col")
        .filter_map(|(_, v)| COLUMNS.iter().find(|(c, _)| *c == v).map(|(c, _)| *c))
        .collect();
    let columns: Vec<(&str, &str)> = COLUMNS
        .iter()
        .filter(|(c, _)| chosen.is_empty() || chosen.contains(c))
        .copied()
        .collect();
    let (filter, mut problem) = filter(&text, &search, errors);
    let start = range_start(&s, &range);
    let mut rows = Vec::new();
    let mut next = None;
    if problem.is_none() {
        let query = json!({
            "select": [{"op": "star"}],
            "from": source("project_logs", &project.id, "summary"),
            "filter": filter,
            "sort": [{"expr": {"op": "ident", "name": ["created"]}, "dir": "desc"}],
            "limit": PAGE,
            "cursor": (!cursor.is_empty()).then_some(&cursor),
        });
        match run_query(&s, &v, query).await {
            Ok((mut data, c)) => {
                next = c.filter(|_| data.len() as u64 == PAGE);
                if let Some(start) = start
                    && let Some(end) = data.iter().position(|r| older_than(r, start))
                {
                    data.truncate(end);
                    next = None;
                }
                rows = data;
            }
            // What the user typed can be wrong in ways only running it shows.
            Err(
                ServiceError::InvalidField { message, .. }
                | ServiceError::BadRequest(message)
                | ServiceError::QueryTimeout(message),
            ) => {
                problem = Some(message);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let keep: Vec<(&str, &str)> = [
        ("filter", text.as_str()),
        ("search", search.as_str()),
        ("range", range.as_str()),
        ("errors", if errors { "1" } else { "" }),
    ]
    .into_iter()
    .chain(chosen.iter().map(|c| ("col", *c)))
    .collect();
    // Who may read the logs, on the first page (where an Owner looks for it).
    let access = if cursor.is_empty() {
        super::admin::access(
            &s,
            &v,
            ("project_log", "project's logs"),
            &project.id,
            &project.id,
        )
        .await?
    } else {
        None
    };
    let body = html! {
        h1 { "Logs" span.muted { " · " (project.name) } }
        (controls(&text, &search, &range, errors, &chosen))
        @if let Some(p) = &problem {
            p.error role="alert" #problem { (p) }
        }
        @if cursor.is_empty() {
            div.check.live hidden {
                input #live type="checkbox";
                label for="live" { "Refresh every 5 seconds" }
            }
        }
        div #results {
        (table(&here, &rows, &columns))
        nav.pager aria-label="Pages" {
            @if !cursor.is_empty() {
                a href={ (here) "?" (query_string(&keep)) } { "Newest" }
            }
            @if let Some(c) = &next {
                @let more: Vec<(&str, &str)> = keep.iter().copied().chain([("cursor", c.as_str())]).collect();
                a #next rel="next" href={ (here) "?" (query_string(&more)) } { "Older traces" }
            }
        }
        }
        @if let Some(a) = &access { (a) }
    };
    Ok(document(
        if problem.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        &format!("Logs of {}", project.name),
        Some((&v, place)),
        body,
    ))
}

fn controls(text: &str, search: &str, range: &str, errors: bool, chosen: &[&str]) -> Markup {
    html! {
        form.controls method="get" role="search" {
            div.row {
                div.grow {
                    label for="filter" { "Filter (SQL WHERE expression)" }
                    input #filter name="filter" value=(text) placeholder="metadata.user_id = 'u-1' AND scores.accuracy < 0.5" autocomplete="off";
                }
                div {
                    label for="search" { "Search text" }
                    input #search name="search" type="search" value=(search);
                }
                div {
                    label for="range" { "Time range" }
                    select #range name="range" {
                        @for (p, label, _) in RANGES {
                            option value=(p) selected[range == p || (range.is_empty() && p == "all")] { (label) }
                        }
                    }
                }
            }
            div.row {
                div.check {
                    input #errors type="checkbox" name="errors" value="1" checked[errors];
                    label for="errors" { "Only traces with errors" }
                }
                fieldset.columns {
                    legend { "Columns" }
                    @for (c, label) in COLUMNS {
                        span.check {
                            input id={ "col-" (c) } type="checkbox" name="col" value=(c)
                                checked[chosen.is_empty() || chosen.contains(&c)];
                            label for={ "col-" (c) } { (label) }
                        }
                    }
                }
                button type="submit" #apply { "Apply" }
            }
        }
    }
}

fn table(here: &str, rows: &[Value], columns: &[(&str, &str)]) -> Markup {
    if rows.is_empty() {
        return html! { p #empty { "No traces match." } };
    }
    html! {
        div.scroll {
            table #logs {
                thead { tr { @for (c, h) in columns {
                    th scope="col" class=[matches!(*c, "duration" | "tokens" | "errors").then_some("num")] { (h) }
                } } }
                tbody {
                    @for r in rows {
                        @let link = format!("{here}?{}", query_string(&[("oid", r.get("id").and_then(Value::as_str).unwrap_or_default())]));
                        tr {
                            @for (c, _) in columns {
                                (cell(c, r, &link))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn cell(column: &str, r: &Value, link: &str) -> Markup {
    let metric = |k: &str| r.pointer(&format!("/metrics/{k}")).and_then(Value::as_f64);
    match column {
        "time" => {
            html! { td.nowrap { a href=(link) { (view::time(r.get("created").and_then(Value::as_str).unwrap_or_default())) } } }
        }
        "name" => {
            let name = r
                .pointer("/span_attributes/name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)");
            html! { td { a href=(link) { (name) } } }
        }
        "input" | "output" => {
            html! { td.preview { (view::preview(r.get(column).unwrap_or(&Value::Null), 120)) } }
        }
        "scores" => html! {
            td.nowrap {
                @if let Some(m) = r.get("scores").and_then(Value::as_object) {
                    @for (k, x) in m {
                        @if let Some(x) = x.as_f64() { span.score { (k) ": " (view::score(x)) } br; }
                    }
                }
            }
        },
        "duration" => {
            html! { td.num { @if let Some(d) = metric("duration") { (view::duration(d)) } } }
        }
        "tokens" => html! { td.num { @if let Some(t) = metric("tokens") { (t) } } },
        _ => html! {
            td.num {
                @match metric("error_count") {
                    Some(n) if n > 0.0 => span.badge.t-error { (n) },
                    _ => {},
                }
            }
        },
    }
}
