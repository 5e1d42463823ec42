//! The trace viewer, shared by logs and experiments: the span tree with a timeline (each
//! span a bar on the trace's time axis, coloured by its type) and one span's detail. Every
//! span is a link to its own row (`?oid=<row id>`), so a selection is a bookmarkable URL and
//! works without script.

use super::view;
use super::{
    AppState, PageError, PageResult, Place, Viewer, document, equals, query_string, run_query,
    source, writable_datasets,
};
use axum::http::StatusCode;
use holdfast_core::object::ObjectType;
use holdfast_services::ServiceError;
use holdfast_services::btql::summary_row;
use holdfast_services::kept_traces::value_bytes;
use maud::{Markup, html};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Most spans of one trace the viewer shows; a longer trace is shown cut, with a note.
pub(crate) const MAX_TRACE_SPANS: usize = 20_000;
/// Spans of the tree shown at once: a longer trace is shown in windows of this many spans
/// in tree order, the one holding the selected span, with links to the windows before and
/// after it (the page stays small and quick to lay out however long the trace).
pub(crate) const TREE_WINDOW: usize = 500;

/// What the tree and the timeline show of a span.
pub(crate) struct OutlineSpan {
    id: String,
    span_id: String,
    parent: Option<String>,
    start: Option<f64>,
    end: Option<f64>,
    name: String,
    kind: String,
    error: bool,
}

/// What the viewer shows of a whole trace: each span's place in the tree and on the
/// timeline, in tree order, and the trace's summary row. Made once from the trace's spans
/// and kept with the trace while it does not change (see `kept_traces`), so opening
/// another span of a long trace does not read the trace again.
pub(crate) struct Outline {
    /// The first [`MAX_TRACE_SPANS`] spans in row-id order.
    spans: Vec<OutlineSpan>,
    /// Positions in `spans` in tree order, with their depth.
    order: Vec<(usize, usize)>,
    /// Whether the trace had more spans than `spans` holds.
    pub cut: bool,
    /// The trace's row in the summary shape (of all its spans), for an experiment's trace:
    /// what its page compares with the baseline's row.
    pub summary: Option<Value>,
}

impl Outline {
    /// The outline of a trace's spans (with its summary row when `summarized`), and about
    /// how many bytes it takes.
    pub(crate) fn of(spans: &[Value], summarized: bool) -> (Outline, usize) {
        let summary = summarized.then(|| summary_row(spans));
        let cut = spans.len() > MAX_TRACE_SPANS;
        let spans: Vec<OutlineSpan> = spans
            .iter()
            .take(MAX_TRACE_SPANS)
            .map(outline_span)
            .collect();
        let order = tree_order(&spans);
        let bytes = summary.as_ref().map_or(0, value_bytes)
            + spans
                .iter()
                .map(|s| {
                    let parent = s.parent.as_ref().map_or(0, String::len);
                    s.id.len() + s.span_id.len() + parent + s.name.len() + s.kind.len() + 160
                })
                .sum::<usize>();
        let outline = Outline {
            spans,
            order,
            cut,
            summary,
        };
        (outline, bytes)
    }
}

fn outline_span(s: &Value) -> OutlineSpan {
    let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
    let metrics = s.get("metrics");
    let metric = |k: &str| metrics.and_then(|m| m.get(k)).and_then(Value::as_f64);
    OutlineSpan {
        id: text("id").to_owned(),
        span_id: text("span_id").to_owned(),
        parent: s
            .get("span_parents")
            .and_then(|p| p.get(0))
            .and_then(Value::as_str)
            .map(str::to_owned),
        start: metric("start"),
        end: metric("end"),
        name: view::str_at(s, "/span_attributes/name").to_owned(),
        kind: view::str_at(s, "/span_attributes/type").to_owned(),
        error: s.get("error").is_some_and(|e| !e.is_null()),
    }
}

/// A trace opened at one of its spans: the trace's outline and the opened span, whole.
pub(crate) struct Trace {
    pub outline: Arc<Outline>,
    pub selected: Value,
}

/// The trace holding row `row_id` of `kind('object_id')`, or `None` when there is no such
/// row (or it is not a span).
pub(crate) async fn of_row(
    s: &AppState,
    v: &Viewer,
    (kind, object_id): (&str, &str),
    row_id: &str,
) -> Result<Option<Trace>, PageError> {
    let (rows, _) = run_query(
        s,
        v,
        json!({"select": [{"op": "star"}], "from": source(kind, object_id, "spans"),
               "filter": equals("id", row_id), "limit": 1}),
    )
    .await?;
    let Some(selected) = rows.into_iter().next() else {
        return Ok(None);
    };
    let Some(root) = selected.get("root_span_id").and_then(Value::as_str) else {
        return Ok(None);
    };
    let object_type = ObjectType::parse(kind)
        .ok_or_else(|| ServiceError::bad(format!("unknown source {kind}")))?;
    // Only an experiment's trace page shows its summary row.
    let summarized = object_type == ObjectType::Experiment;
    let what = if summarized {
        "outline+summary"
    } else {
        "outline"
    };
    let outline = s
        .services
        .trace_of_source(&v.p, (object_type, object_id), root, what, |spans| {
            Outline::of(spans, summarized)
        })
        .await?;
    Ok(Some(Trace { outline, selected }))
}

fn num_of(v: &Value, path: &str) -> Option<f64> {
    view::at(v, path).and_then(Value::as_f64)
}

/// The span types that have a colour of their own.
fn type_class(t: &str) -> &'static str {
    match t {
        "llm" => "t-llm",
        "score" => "t-score",
        "tool" | "function" => "t-tool",
        "task" => "t-task",
        "eval" => "t-eval",
        _ => "t-other",
    }
}

/// The spans in tree order (each after its parent, siblings by start time) with their depth.
/// Linear in the spans; a span whose parent is missing (or a cycle) is shown as a root.
fn tree_order(spans: &[OutlineSpan]) -> Vec<(usize, usize)> {
    let by_span: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        let parent = s
            .parent
            .as_deref()
            .and_then(|p| by_span.get(p))
            .filter(|p| **p != i);
        match parent {
            Some(p) => children.entry(*p).or_default().push(i),
            None => roots.push(i),
        }
    }
    let start = |i: &usize| spans.get(*i).and_then(|s| s.start).unwrap_or(f64::MAX);
    let by_start = |a: &usize, b: &usize| start(a).total_cmp(&start(b)).then(a.cmp(b));
    roots.sort_by(by_start);
    for list in children.values_mut() {
        list.sort_by(by_start);
    }
    let mut out = Vec::with_capacity(spans.len());
    let mut seen = vec![false; spans.len()];
    let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|r| (*r, 0)).collect();
    let mut next_unseen = 0;
    loop {
        while let Some((i, depth)) = stack.pop() {
            match seen.get_mut(i) {
                Some(s) if !*s => *s = true,
                _ => continue,
            }
            out.push((i, depth));
            if let Some(kids) = children.get(&i) {
                stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
            }
        }
        // Spans only reachable through a cycle: shown as roots.
        while seen.get(next_unseen) == Some(&true) {
            next_unseen += 1;
        }
        if next_unseen >= spans.len() {
            break;
        }
        stack.push((next_unseen, 0));
    }
    out
}

/// Where a span can be added as a dataset row: the span's source and the datasets the viewer
/// may write to.
pub(crate) struct AddTo<'a> {
    pub kind: &'static str,
    pub object_id: &'a str,
    pub datasets: &'a [(String, String)],
}

/// The viewer: the tree with its timeline, and the detail of the opened span. `link` gives
/// the page of a row id.
pub(crate) fn render(
    org: &str,
    trace: &Trace,
    link: &dyn Fn(&str) -> String,
    add: &AddTo<'_>,
) -> Markup {
    let Outline {
        spans, order, cut, ..
    } = &*trace.outline;
    let selected = view::str_at(&trace.selected, "/id");
    let chosen = spans
        .iter()
        .position(|s| s.id == selected)
        .or_else(|| order.first().map(|(i, _)| *i));
    // The window of the tree that holds the chosen span.
    let at = chosen
        .and_then(|c| order.iter().position(|(i, _)| *i == c))
        .unwrap_or(0);
    let first = at / TREE_WINDOW * TREE_WINDOW;
    let window = order
        .get(first..(first + TREE_WINDOW).min(order.len()))
        .unwrap_or_default();
    // A link to the window starting at position `from` of the tree (selecting its first span).
    let window_link = |from: usize| {
        order
            .get(from)
            .and_then(|(i, _)| spans.get(*i))
            .map(|s| link(&s.id))
    };
    let before = first.checked_sub(TREE_WINDOW).and_then(window_link);
    let after = window_link(first + TREE_WINDOW);
    let t0 = spans
        .iter()
        .filter_map(|s| s.start)
        .fold(f64::INFINITY, f64::min);
    let t1 = spans
        .iter()
        .filter_map(|s| s.end.or(s.start))
        .fold(f64::NEG_INFINITY, f64::max);
    let total = if t1 > t0 { t1 - t0 } else { 0.0 };
    let percent = |x: f64| ((x / total) * 100.0).clamp(0.0, 100.0).round() as u32;
    html! {
        div.trace {
            section.tree aria-label="Spans" {
                h2 { "Trace" span.muted { " · " (spans.len()) " spans" @if total > 0.0 { " · " (view::duration(total)) } } }
                @if *cut {
                    p.muted role="status" { "This trace has more spans than the viewer shows; the first " (spans.len()) " are shown." }
                }
                @if order.len() > TREE_WINDOW {
                    nav.windows aria-label="Spans shown" {
                        "Spans " (first + 1) "–" (first + window.len()) " of " (order.len()) " in tree order"
                        @if let Some(href) = &before { " · " a href=(href) rel="prev" { "Previous " (TREE_WINDOW) } }
                        @if let Some(href) = &after { " · " a href=(href) rel="next" { "Next " (TREE_WINDOW) } }
                    }
                }
                ol.spans {
                    @for (i, span, depth) in window.iter().filter_map(|(i, d)| spans.get(*i).map(|s| (*i, s, *d))) {
                        @let kind = span.kind.as_str();
                        li class={ "d" (depth.min(24)) } {
                            a href=(link(&span.id))
                              aria-current=[(Some(i) == chosen).then_some("true")] {
                                span.name { @if span.name.is_empty() { "(unnamed)" } @else { (span.name) } }
                                @if !kind.is_empty() { " " span class={ "badge " (type_class(kind)) } { (kind) } }
                                @if span.error { " " span.badge.t-error { "error" } }
                                @if let (Some(a), Some(b)) = (span.start, span.end) { " " span.muted { (view::duration(b - a)) } }
                            }
                            @if let (Some(a), true) = (span.start, total > 0.0) {
                                @let width = percent(span.end.unwrap_or(a) - a).max(1);
                                @let offset = percent(a - t0).min(100 - width);
                                span.track aria-hidden="true" {
                                    span class={ "bar " (type_class(kind)) " o" (offset) " w" (width) } {}
                                }
                            }
                        }
                    }
                }
            }
            (detail(org, &trace.selected, add))
        }
    }
}

fn detail(org: &str, span: &Value, add: &AddTo<'_>) -> Markup {
    let name = view::str_at(span, "/span_attributes/name");
    let fields = [
        ("error", "Error"),
        ("input", "Input"),
        ("output", "Output"),
        ("expected", "Expected"),
        ("metadata", "Metadata"),
    ];
    let numbers = |key: &str| -> Vec<(String, f64)> {
        span.get(key)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, x)| x.as_f64().map(|x| (k.clone(), x)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let scores = numbers("scores");
    let metrics = numbers("metrics");
    html! {
        section.detail #span aria-label="Span detail" {
            h2 { @if name.is_empty() { "Span" } @else { (name) } }
            dl.facts {
                dt { "Row id" } dd { code { (view::str_at(span, "/id")) } }
                dt { "Span id" } dd { code { (view::str_at(span, "/span_id")) } }
                @if let Some(t) = span.get("created").and_then(Value::as_str) { dt { "Created" } dd { (view::time(t)) } }
                @if let (Some(a), Some(b)) = (num_of(span, "/metrics/start"), num_of(span, "/metrics/end")) {
                    dt { "Duration" } dd { (view::duration(b - a)) }
                }
                @if let Some(tags) = span.get("tags").and_then(Value::as_array).filter(|t| !t.is_empty()) {
                    dt { "Tags" } dd { @for t in tags { span.badge { (view::preview(t, 60)) } " " } }
                }
            }
            @if !add.datasets.is_empty() {
                form.inline #add-to-dataset data-action="add-to-dataset" data-kind=(add.kind)
                    data-object=(add.object_id) data-row=(view::str_at(span, "/id")) {
                    label for="dataset" { "Add this span to a dataset" }
                    select #dataset name="dataset" {
                        @for (id, name) in add.datasets { option value=(id) { (name) } }
                    }
                    " " button type="submit" { "Add to dataset" }
                    span.note role="status" {}
                }
            }
            @if !scores.is_empty() {
                h3 { "Scores" }
                table.scores { tbody { @for (k, x) in &scores { tr { th scope="row" { (k) } td.num { (view::score(*x)) } } } } }
            }
            @for (key, label) in fields {
                @if let Some(x) = span.get(key).filter(|x| !x.is_null()) {
                    section class={ "field f-" (key) } {
                        h3 { (label) }
                        (view::value(org, x))
                    }
                }
            }
            @if !metrics.is_empty() {
                h3 { "Metrics" }
                table.metrics { tbody { @for (k, x) in &metrics { tr { th scope="row" { (k) } td.num { (x) } } } } }
            }
        }
    }
}

/// Where a trace page is: row `oid` of `kind('object_id')` (what the SDKs' span links open),
/// under the page `here` of `project_id`.
pub(crate) struct Opened<'a> {
    pub place: Place<'a>,
    pub project_id: &'a str,
    pub source: (&'static str, &'a str),
    pub here: &'a str,
    pub oid: &'a str,
    /// The baseline experiment a comparison is made with, kept on the page's links (empty
    /// for none).
    pub compare: &'a str,
}

impl Opened<'_> {
    /// The trace holding the opened row (see [`of_row`]).
    pub(crate) async fn read(&self, s: &AppState, v: &Viewer) -> Result<Option<Trace>, PageError> {
        of_row(s, v, self.source, self.oid).await
    }
}

/// The page of trace `found` (read by [`Opened::read`]), below `head` (the way back and
/// whatever the caller shows first).
pub(crate) async fn page(
    s: &AppState,
    v: &Viewer,
    at: Opened<'_>,
    found: Option<Trace>,
    head: Markup,
) -> PageResult {
    let Opened {
        place,
        project_id,
        source: (kind, object_id),
        here,
        oid,
        compare,
    } = at;
    let link = |id: &str| {
        format!(
            "{here}?{}",
            query_string(&[("oid", id), ("compare", compare)])
        )
    };
    let datasets = writable_datasets(s, v, project_id).await?;
    let add = AddTo {
        kind,
        object_id,
        datasets: &datasets,
    };
    let body = html! {
        (head)
        @match &found {
            Some(t) => (render(&v.org, t, &link, &add)),
            None => (missing(oid)),
        }
    };
    let status = if found.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    Ok(document(status, "Trace", Some((v, Some(place))), body))
}

/// The note shown when a link names a row that is not (or no longer) there.
pub(crate) fn missing(row: &str) -> Markup {
    html! {
        p.error role="alert" #missing {
            "No span with id " code { (row) } " here: it was deleted, is not ingested yet, or belongs elsewhere."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, start: f64) -> Value {
        json!({"id": format!("row-{id}"), "span_id": id, "root_span_id": "r",
               "span_parents": parent.map(|p| vec![p]).unwrap_or_default(),
               "metrics": {"start": start, "end": start + 1.0}})
    }

    #[test]
    fn tree_order_is_parents_first_and_siblings_by_start() {
        let spans = vec![
            span("c2", Some("r"), 5.0),
            span("g", Some("c1"), 3.0),
            span("r", None, 1.0),
            span("c1", Some("r"), 2.0),
            span("orphan", Some("nowhere"), 0.5),
        ];
        let outline = Outline::of(&spans, false).0;
        let order: Vec<(&str, usize)> = outline
            .order
            .iter()
            .map(|(i, d)| (view::str_at(&spans[*i], "/span_id"), *d))
            .collect();
        assert_eq!(
            order,
            [("orphan", 0), ("r", 0), ("c1", 1), ("g", 2), ("c2", 1)]
        );
    }

    #[test]
    fn cycles_and_deep_chains_are_shown_once_without_recursion() {
        let cycle = vec![span("a", Some("b"), 1.0), span("b", Some("a"), 2.0)];
        assert_eq!(Outline::of(&cycle, false).0.order.len(), 2);
        let mut chain = vec![span("s0", None, 0.0)];
        for i in 1..10_000 {
            chain.push(span(
                &format!("s{i}"),
                Some(&format!("s{}", i - 1)),
                i as f64,
            ));
        }
        let selected = chain[5].clone();
        let outline = Arc::new(Outline::of(&chain, false).0);
        assert_eq!(outline.order.len(), 10_000);
        assert_eq!(outline.order.last(), Some(&(9_999, 9_999)));
        let html = render(
            "acme",
            &Trace { outline, selected },
            &|id| format!("?oid={id}"),
            &AddTo {
                kind: "project_logs",
                object_id: "p",
                datasets: &[],
            },
        )
        .into_string();
        // The first window: the chosen span, and a link to the next window only.
        assert_eq!(html.matches("<li ").count(), TREE_WINDOW);
        assert_eq!(html.matches("<li class=\"d24\"").count(), TREE_WINDOW - 24);
        assert!(html.contains("href=\"?oid=row-s5\" aria-current=\"true\""));
        assert!(html.contains("Spans 1–500 of 10000 in tree order"));
        assert!(html.contains("href=\"?oid=row-s500\" rel=\"next\""));
        assert!(!html.contains("rel=\"prev\""));
    }

    /// A long trace shows the window of the tree holding the selected span (bounded
    /// whatever the trace's length), with links to the windows around it.
    #[test]
    fn long_traces_show_the_window_of_the_selected_span() {
        let mut spans = vec![span("r", None, 0.0)];
        spans.extend((1..1_234).map(|i| span(&format!("s{i:04}"), Some("r"), i as f64)));
        let outline = Arc::new(Outline::of(&spans, false).0);
        let add = AddTo {
            kind: "project_logs",
            object_id: "p",
            datasets: &[],
        };
        let page = |selected: &str| {
            let trace = Trace {
                outline: outline.clone(),
                selected: json!({ "id": selected }),
            };
            render("acme", &trace, &|id| format!("?oid={id}"), &add).into_string()
        };
        let html = page("row-s0700");
        assert!(html.contains("Spans 501–1000 of 1234 in tree order"));
        assert_eq!(html.matches("<li ").count(), TREE_WINDOW);
        assert!(html.contains("href=\"?oid=row-s0700\" aria-current=\"true\""));
        assert!(html.contains("href=\"?oid=row-r\" rel=\"prev\""));
        assert!(html.contains("href=\"?oid=row-s1000\" rel=\"next\""));
        // Its first span is the window's first.
        assert!(html.contains("<a href=\"?oid=row-s0500\">"));
        assert!(!html.contains("<a href=\"?oid=row-s0499\">"));
        // The last window holds the rest; an unknown row shows the first window.
        let html = page("row-s1233");
        assert!(html.contains("Spans 1001–1234 of 1234 in tree order"));
        assert_eq!(html.matches("<li ").count(), 234);
        assert!(!html.contains("rel=\"next\""));
        assert!(page("no-such-row").contains("Spans 1–500 of 1234"));
    }
}
