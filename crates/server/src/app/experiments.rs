//! Experiments: a project's list with score summaries and a chart of each score across
//! experiments, and the experiment page (the link `Eval` prints) with score distributions and
//! a comparison against a baseline: per-score deltas, improvements and regressions counted,
//! rows matched by input, sortable by regression, outputs side by side. With `oid` (what
//! `span.permalink()` makes) the page shows that row's trace.

use super::view;
use super::{
    AppState, PageError, PageResult, Place, Viewer, document, equals, in_project, object_named,
    param, path_part, project_page, project_path, query_string, run_query, source, trace,
};
use crate::extract::{Authed, BaseUrl};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use holdfast_core::object::ObjectType;
use holdfast_core::summary;
use holdfast_core::xact::XactId;
use holdfast_services::ObjectRecord;
use holdfast_services::ServiceError;
use holdfast_services::btql::summary_row;
use holdfast_services::query::{changed_rows_limit, summary_entries};
use maud::{Markup, html};
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// Experiments summarized on the list page (the newest).
const LISTED: usize = 30;
/// Rows (traces) of one experiment the page reads; a larger experiment is shown cut.
const MAX_ROWS: usize = 5_000;
/// Rows per query of summaries.
const PAGE: usize = 1_000;
/// Spans of an experiment read whole for its page (see [`read_rows`]).
const MAX_SPANS: usize = 50_000;
/// Spans per query.
const SPANS_PAGE: usize = 10_000;
/// Rows of the experiment's table shown at once.
const ROWS_SHOWN: usize = 200;

/// Average score per name, from the summary the SDKs print.
fn averages(scores: &Value) -> Map<String, Value> {
    scores
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, e)| e.get("score").map(|x| (k.clone(), x.clone())))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) async fn list(
    State(s): State<AppState>,
    authed: Authed,
    BaseUrl(base): BaseUrl,
    Path((org, project)): Path<(String, String)>,
) -> PageResult {
    let (v, project) = project_page(&s, authed, base, &org, &project).await?;
    let all = s
        .services
        .list_objects(&v.p, ObjectType::Experiment, &in_project(&project.id, None))
        .await?;
    let mut summarized = Vec::new();
    for e in all.iter().take(LISTED) {
        let scores = s.services.experiment_scores(&v.p, e).await?;
        summarized.push((e, averages(&scores)));
    }
    // Oldest first, as the chart reads.
    summarized.reverse();
    let names: BTreeSet<&String> = summarized.iter().flat_map(|(_, m)| m.keys()).collect();
    let here = project_path(&v, &project.name, "experiments", None);
    let body = html! {
        h1 { "Experiments" span.muted { " · " (project.name) } }
        @if all.is_empty() {
            p { "No experiments yet. Run an " code { "Eval" } " with an SDK to make one." }
        } @else {
            @if all.len() > LISTED { p.muted { "The newest " (LISTED) " of " (all.len()) " experiments are summarized." } }
            @if !names.is_empty() && summarized.len() > 1 {
                section.charts aria-label="Scores across experiments" {
                    @for name in &names {
                        (chart(name, &summarized))
                    }
                }
            }
            div.scroll {
                table #experiments {
                    thead { tr {
                        th scope="col" { "Experiment" } th scope="col" { "Created" }
                        @for n in &names { th.num scope="col" { (n) } }
                    } }
                    tbody {
                        @for (e, m) in summarized.iter().rev() {
                            tr {
                                td { a href={ (here) "/" (path_part(&e.name)) } { (e.name) } }
                                td.nowrap { (view::time(&e.created)) }
                                @for n in &names {
                                    td.num { @if let Some(x) = m.get(*n).and_then(Value::as_f64) { (view::score(x)) } }
                                }
                            }
                        }
                        @for e in all.iter().skip(LISTED) {
                            tr {
                                td { a href={ (here) "/" (path_part(&e.name)) } { (e.name) } }
                                td.nowrap { (view::time(&e.created)) }
                                @for _ in &names { td {} }
                            }
                        }
                    }
                }
            }
        }
    };
    let place = Some(Place {
        project: &project.name,
        section: "experiments",
    });
    Ok(document(
        StatusCode::OK,
        &format!("Experiments of {}", project.name),
        Some((&v, place)),
        body,
    ))
}

/// One score across experiments (oldest first) as a line on a 0–100% axis.
fn chart(name: &str, experiments: &[(&ObjectRecord, Map<String, Value>)]) -> Markup {
    let (w, h, pad) = (600.0, 140.0, 8.0);
    let n = experiments.len().max(2) as f64;
    let points: Vec<(f64, f64, &str, f64)> = experiments
        .iter()
        .enumerate()
        .filter_map(|(i, (e, m))| {
            let x = m.get(name)?.as_f64()?;
            let px = pad + (w - 2.0 * pad) * i as f64 / (n - 1.0);
            let py = pad + (h - 2.0 * pad) * (1.0 - x.clamp(0.0, 1.0));
            Some((px, py, e.name.as_str(), x))
        })
        .collect();
    let line: Vec<String> = points
        .iter()
        .map(|(x, y, _, _)| format!("{x:.1},{y:.1}"))
        .collect();
    html! {
        figure.chart {
            figcaption { (name) }
            svg viewBox={ "0 0 " (w) " " (h) } role="img" aria-label={ (name) " across " (points.len()) " experiments, oldest first" } {
                line.axis x1="0" y1=(h - pad) x2=(w) y2=(h - pad) {}
                line.axis x1="0" y1=(pad) x2=(w) y2=(pad) {}
                polyline.series points=(line.join(" ")) {}
                @for (x, y, e, score) in &points {
                    circle.point cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="4" {
                        title { (e) ": " (view::score(*score)) }
                    }
                }
            }
        }
    }
}

/// An experiment's summary rows for its page (see [`read_rows`]) and whether they were cut
/// at [`MAX_ROWS`].
pub(crate) struct Rows {
    pub rows: Vec<Value>,
    pub cut: bool,
    /// Their size as JSON and that of `traces`: what is counted against [`KEPT_BYTES`].
    bytes: usize,
    /// The trace (root span id) of each span the rows were made from, by row id: what
    /// [`update_rows`] reads again when some rows change. `None` when the rows were read
    /// through the summary shape or cut, or a span has no root span id.
    traces: Option<HashMap<String, String>>,
}

impl Rows {
    fn new(rows: Vec<Value>, cut: bool, traces: Option<HashMap<String, String>>) -> Rows {
        let bytes = json_size(&rows)
            + traces.as_ref().map_or(0, |t| {
                t.iter().map(|(id, root)| id.len() + root.len() + 64).sum()
            });
        Rows {
            rows,
            cut,
            bytes,
            traces,
        }
    }

    /// The rows of an experiment's spans (each trace's spans in row-id order): one summary
    /// row per trace, oldest first.
    fn of_spans(spans: Vec<Value>) -> Rows {
        let mut traces: HashMap<String, Vec<Value>> = HashMap::new();
        let mut of: HashMap<String, String> = HashMap::new();
        let mut rootless = false;
        for span in spans {
            let root = match span.get("root_span_id").and_then(Value::as_str) {
                Some(root) => root,
                None => {
                    rootless = true;
                    span.get("id").and_then(Value::as_str).unwrap_or_default()
                }
            }
            .to_owned();
            if let Some(id) = span.get("id").and_then(Value::as_str) {
                of.insert(id.to_owned(), root.clone());
            }
            traces.entry(root).or_default().push(span);
        }
        let (rows, cut) = ordered(traces.values().map(|t| summary_row(t)).collect());
        Rows::new(rows, cut, (!rootless && !cut).then_some(of))
    }

    /// These rows with the summary rows of `traces` (root span id → the trace's spans now,
    /// in row-id order; none when it is gone) made again. `None` when they cannot be: the
    /// rows were not kept with their traces, or the result would be cut.
    fn with_traces(&self, traces: &HashMap<String, Vec<Value>>) -> Option<Rows> {
        let mut of: HashMap<String, String> = self
            .traces
            .as_ref()?
            .iter()
            .filter(|(_, root)| !traces.contains_key(*root))
            .map(|(id, root)| (id.clone(), root.clone()))
            .collect();
        let mut rows: Vec<Value> = self
            .rows
            .iter()
            .filter(|r| {
                r.get("root_span_id")
                    .and_then(Value::as_str)
                    .is_none_or(|root| !traces.contains_key(root))
            })
            .cloned()
            .collect();
        for (root, spans) in traces {
            for id in spans
                .iter()
                .filter_map(|s| s.get("id").and_then(Value::as_str))
            {
                of.insert(id.to_owned(), root.clone());
            }
            if !spans.is_empty() {
                rows.push(summary_row(spans));
            }
        }
        let (rows, cut) = ordered(rows);
        (!cut).then(|| Rows::new(rows, false, Some(of)))
    }
}

/// Summary rows in the page's order (oldest first, then by id), cut at [`MAX_ROWS`]; and
/// whether they were cut.
fn ordered(mut rows: Vec<Value>) -> (Vec<Value>, bool) {
    let created = |r: &Value| {
        (
            r.get("created").and_then(Value::as_str).map(str::to_owned),
            r.get("id").and_then(Value::as_str).map(str::to_owned),
        )
    };
    rows.sort_by_cached_key(created);
    let cut = rows.len() > MAX_ROWS;
    rows.truncate(MAX_ROWS);
    (rows, cut)
}

/// Most JSON bytes of summary rows kept over all experiments, and for one experiment (1,000
/// rows of 4 KiB). Their memory is a few times this.
const KEPT_BYTES: usize = 16 << 20;
const KEPT_BYTES_EACH: usize = 4 << 20;

/// The summary rows of recently viewed experiments, each kept under the newest version of the
/// experiment's rows, read before the rows: a view of an unchanged experiment (or of a
/// baseline) does not read it again, and any write to it (a new row, an update, a delete)
/// makes a newer version, so its next view reads it afresh. Oldest first out, within
/// [`KEPT_BYTES`].
#[derive(Default)]
pub(crate) struct RowsKept(std::sync::Mutex<Kept>);

#[derive(Default)]
struct Kept {
    by_id: HashMap<String, (XactId, Arc<Rows>)>,
    /// Experiment ids, oldest kept first.
    order: VecDeque<String>,
    bytes: usize,
}

impl RowsKept {
    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Nothing panics while the lock is held but an allocation failure, which aborts.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rows kept for the experiment and the version they are kept under.
    fn get(&self, experiment_id: &str) -> Option<(XactId, Arc<Rows>)> {
        self.lock().by_id.get(experiment_id).cloned()
    }

    fn keep(&self, experiment_id: &str, newest: XactId, rows: Arc<Rows>) {
        if rows.bytes > KEPT_BYTES_EACH {
            return;
        }
        let mut kept = self.lock();
        let kept = &mut *kept;
        if let Some((_, old)) = kept.by_id.remove(experiment_id) {
            kept.bytes -= old.bytes;
            kept.order.retain(|id| id != experiment_id);
        }
        while kept.bytes + rows.bytes > KEPT_BYTES {
            let Some(id) = kept.order.pop_front() else {
                break;
            };
            if let Some((_, old)) = kept.by_id.remove(&id) {
                kept.bytes -= old.bytes;
            }
        }
        kept.bytes += rows.bytes;
        kept.order.push_back(experiment_id.to_owned());
        kept.by_id.insert(experiment_id.to_owned(), (newest, rows));
    }
}

/// Bytes of `value` as JSON, without writing it out; counting stops past
/// [`KEPT_BYTES_EACH`] (rows that large are not kept, so their size past it is not needed).
fn json_size(value: &[Value]) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            if self.0 > KEPT_BYTES_EACH {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Fails only past the limit (a Value has no non-string map keys); the count is then over it.
    let _ = serde_json::to_writer(&mut n, value);
    n.0
}

/// [`read_rows`], or the rows kept for the experiment when it is unchanged since (see
/// [`RowsKept`]), or brought up to date when few of its rows changed since (see
/// [`update_rows`]).
async fn rows_of(s: &AppState, v: &Viewer, experiment_id: &str) -> Result<Arc<Rows>, ServiceError> {
    let newest = s.services.newest_version(&v.p, experiment_id).await?;
    let kept = s.experiment_rows.get(experiment_id);
    let mut rows = None;
    if let (Some(n), Some((at, kept))) = (newest, kept) {
        if at == n {
            return Ok(kept);
        }
        if at < n {
            rows = update_rows(s, v, experiment_id, at, &kept).await?;
        }
    }
    let rows = match rows {
        Some(rows) => Arc::new(rows),
        None => Arc::new(read_rows(s, v, experiment_id).await?),
    };
    if let Some(n) = newest {
        s.experiment_rows.keep(experiment_id, n, rows.clone());
    }
    Ok(rows)
}

/// `kept`, the experiment's rows as of transaction `at`, brought up to date by reading again
/// only the traces that the rows changed since were in or are in now; `None` when it
/// cannot be (see [`Rows::with_traces`]) or too many rows changed (see
/// [`changed_rows_limit`]). Every read is at a snapshot at or after the newest version read
/// before (what the result is kept under), and the traces read are made whole from what
/// they hold then, so a change read here in part is read again in whole at the next view.
async fn update_rows(
    s: &AppState,
    v: &Viewer,
    experiment_id: &str,
    at: XactId,
    kept: &Rows,
) -> Result<Option<Rows>, ServiceError> {
    let Some(of) = &kept.traces else {
        return Ok(None);
    };
    let max = changed_rows_limit(of.len());
    let Some((changed, mut roots)) = s
        .services
        .changed_traces(&v.p, experiment_id, at, max)
        .await?
    else {
        return Ok(None);
    };
    // The traces the changed rows are in now, and those they were in.
    roots.extend(changed.iter().filter_map(|id| of.get(id)).cloned());
    // At most as many spans as a whole read holds: past that, the whole read it is.
    let mut spans = 0;
    let mut traces = HashMap::new();
    for root in roots {
        let (found, _) = run_query(
            s,
            v,
            json!({"select": [{"op": "star"}], "from": source("experiment", experiment_id, "spans"),
                   "filter": equals("root_span_id", &root), "limit": SPANS_PAGE}),
        )
        .await?;
        spans += found.len();
        if found.len() >= SPANS_PAGE || spans > MAX_SPANS {
            return Ok(None);
        }
        traces.insert(root, found);
    }
    Ok(kept.with_traces(&traces))
}

/// Every trace of an experiment as summary rows (scores merged over the trace), oldest
/// first; and whether there were more than [`MAX_ROWS`].
///
/// An experiment of at most [`MAX_SPANS`] spans is read whole, a page of spans per query,
/// and its summary rows are made here: one read of each span. A larger one is read through
/// the summary shape, which reads each trace of a page on its own (a statement per trace).
async fn read_rows(s: &AppState, v: &Viewer, experiment_id: &str) -> Result<Rows, ServiceError> {
    let mut spans = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = run_query(
            s,
            v,
            json!({"select": [{"op": "star"}], "from": source("experiment", experiment_id, "spans"),
                   "limit": SPANS_PAGE, "cursor": cursor}),
        )
        .await?;
        let n = page.len();
        if spans.len() + n > MAX_SPANS {
            let (rows, cut) = summaries_of(s, v, experiment_id).await?;
            return Ok(Rows::new(rows, cut, None));
        }
        spans.extend(page);
        match next {
            Some(c) if n == SPANS_PAGE => cursor = Some(c),
            _ => break,
        }
    }
    Ok(Rows::of_spans(spans))
}

/// [`read_rows`] through the summary shape, at most [`MAX_ROWS`].
async fn summaries_of(
    s: &AppState,
    v: &Viewer,
    experiment_id: &str,
) -> Result<(Vec<Value>, bool), ServiceError> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = run_query(
            s,
            v,
            json!({"select": [{"op": "star"}], "from": source("experiment", experiment_id, "summary"),
                   "sort": [{"expr": {"op": "ident", "name": ["created"]}, "dir": "asc"}],
                   "limit": PAGE, "cursor": cursor}),
        )
        .await?;
        let n = page.len();
        rows.extend(page);
        if rows.len() > MAX_ROWS {
            rows.truncate(MAX_ROWS);
            return Ok((rows, true));
        }
        match next {
            Some(c) if n == PAGE => cursor = Some(c),
            _ => return Ok((rows, false)),
        }
    }
}

/// The objects among `rows`.
fn maps(rows: &[Value]) -> Vec<&Map<String, Value>> {
    rows.iter().filter_map(Value::as_object).collect()
}

fn scores_of(row: &Value) -> HashMap<&str, f64> {
    row.get("scores")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, x)| x.as_f64().map(|x| (k.as_str(), x)))
                .collect()
        })
        .unwrap_or_default()
}

/// What rows are matched by: their input, as JSON text.
fn input_key(row: &Value) -> String {
    row.get("input").unwrap_or(&Value::Null).to_string()
}

/// A row of the comparison: the row, its baseline row (same input), and per score the
/// value, the baseline's value and the difference.
struct Compared<'a> {
    row: &'a Value,
    base: Option<&'a Value>,
    scores: Vec<(Option<f64>, Option<f64>)>,
    /// Sum of the negative differences (0 when nothing regressed).
    regression: f64,
    improvement: f64,
}

fn compare_rows<'a>(rows: &'a [Value], base: &'a [Value], names: &[&str]) -> Vec<Compared<'a>> {
    let by_input: HashMap<String, &Value> = base.iter().map(|b| (input_key(b), b)).collect();
    rows.iter()
        .map(|row| {
            let base = by_input.get(&input_key(row)).copied();
            let mine = scores_of(row);
            let theirs = base.map(scores_of).unwrap_or_default();
            let scores: Vec<(Option<f64>, Option<f64>)> = names
                .iter()
                .map(|n| (mine.get(n).copied(), theirs.get(n).copied()))
                .collect();
            let diffs = scores
                .iter()
                .filter_map(|(a, b)| Some(a.as_ref()? - b.as_ref()?));
            let (mut regression, mut improvement) = (0.0, 0.0);
            for d in diffs {
                if d < 0.0 {
                    regression += d;
                } else {
                    improvement += d;
                }
            }
            Compared {
                row,
                base,
                scores,
                regression,
                improvement,
            }
        })
        .collect()
}

/// The baseline of `experiment`: the one named `wanted` in the project, else the default
/// comparison (its base, else the newest earlier experiment).
async fn baseline_of(
    s: &AppState,
    v: &Viewer,
    experiment: &ObjectRecord,
    project_id: &str,
    wanted: &str,
) -> Result<Option<ObjectRecord>, PageError> {
    if wanted.is_empty() {
        Ok(s.services
            .comparison_experiment(&v.p, experiment, None)
            .await?)
    } else {
        Ok(Some(
            object_named(s, v, ObjectType::Experiment, project_id, wanted).await?,
        ))
    }
}

/// Longest output (as preview text) compared word by word with the baseline's.
const COMPARED_OUTPUT: usize = 4_000;

/// One row (the summary of its trace) against the baseline's row with the same input: its
/// scores side by side with their change, the outputs' word diff, and a link to the
/// baseline row's trace (on `base_here`, comparing back with `name`).
fn row_against(
    this: &Value,
    base_rows: &[Value],
    baseline: &ObjectRecord,
    base_here: &str,
    name: &str,
) -> Markup {
    let key = input_key(this);
    let base = base_rows.iter().find(|b| input_key(b) == key);
    let mine = scores_of(this);
    let output =
        |r: &Value| view::preview(r.get("output").unwrap_or(&Value::Null), COMPARED_OUTPUT);
    html! {
        section #row-compare aria-labelledby="row-compare-title" {
            h2 #row-compare-title { "Compared with " (baseline.name) }
            @match base {
                None => { p.muted { "The baseline has no row with this input." } }
                Some(b) => {
                    @let theirs = scores_of(b);
                    @let names: BTreeSet<&str> = mine.keys().chain(theirs.keys()).copied().collect();
                    @if !names.is_empty() {
                        table.scores {
                            thead { tr {
                                th scope="col" { "Score" } th.num scope="col" { "This row" }
                                th.num scope="col" { "Baseline" } th.num scope="col" { "Change" }
                            } }
                            tbody {
                                @for n in &names {
                                    @let (a, b) = (mine.get(n).copied(), theirs.get(n).copied());
                                    tr {
                                        th scope="row" { (n) }
                                        td.num { @if let Some(a) = a { (view::score(a)) } }
                                        td.num { @if let Some(b) = b { (view::score(b)) } }
                                        td.num { @if let (Some(a), Some(b)) = (a, b) { (delta(a - b)) } }
                                    }
                                }
                            }
                        }
                    }
                    @let (old, new) = (output(b), output(this));
                    div.sides {
                        div {
                            h3 { "Baseline output" }
                            p.words #baseline-output { (view::word_side(&old, &new, true)) }
                        }
                        div {
                            h3 { "This row's output" }
                            p.words #row-output { (view::word_side(&old, &new, false)) }
                        }
                    }
                    @let id = b.get("id").and_then(Value::as_str).unwrap_or_default();
                    p { a #baseline-trace href={ (base_here) "?" (query_string(&[("oid", id), ("compare", name)])) } {
                        "Open the baseline's trace for this input"
                    } }
                }
            }
        }
    }
}

pub(crate) async fn page(
    State(s): State<AppState>,
    authed: Authed,
    BaseUrl(base): BaseUrl,
    Path((org, project, name)): Path<(String, String, String)>,
    req: Request,
) -> PageResult {
    let (v, project) = project_page(&s, authed, base, &org, &project).await?;
    let q = req.uri().query();
    let experiment = object_named(&s, &v, ObjectType::Experiment, &project.id, &name).await?;
    let here = project_path(&v, &project.name, "experiments", Some(&experiment.name));
    let place = Some(Place {
        project: &project.name,
        section: "experiments",
    });
    let wanted = param(q, "compare");
    let baseline = baseline_of(&s, &v, &experiment, &project.id, &wanted).await?;
    let oid = param(q, "oid");
    if !oid.is_empty() {
        let at = trace::Opened {
            place: Place {
                project: &project.name,
                section: "experiments",
            },
            project_id: &project.id,
            source: ("experiment", experiment.id.as_str()),
            here: &here,
            oid: &oid,
            compare: &wanted,
        };
        let found = at.read(&s, &v).await?;
        let against = match (&found, &baseline) {
            (Some(t), Some(b)) if !t.outline.cut => {
                let base_rows = rows_of(&s, &v, &b.id).await?;
                let this = t.outline.summary.as_ref().unwrap_or(&Value::Null);
                let base_here = project_path(&v, &project.name, "experiments", Some(&b.name));
                Some(row_against(
                    this,
                    &base_rows.rows,
                    b,
                    &base_here,
                    &experiment.name,
                ))
            }
            _ => None,
        };
        let back = match query_string(&[("compare", &wanted)]) {
            q if q.is_empty() => here.clone(),
            q => format!("{here}?{q}"),
        };
        let head = html! {
            p { a href=(back) { "← Experiment " (experiment.name) } }
            @if let Some(a) = against { (a) }
        };
        return trace::page(&s, &v, at, found, head).await;
    }

    let read = rows_of(&s, &v, &experiment.id).await?;
    let (rows, cut) = (&read.rows, read.cut);
    let base_read = match &baseline {
        Some(b) => Some(rows_of(&s, &v, &b.id).await?),
        None => None,
    };
    let no_rows = Vec::new();
    let (base_rows, base_cut) = base_read
        .as_deref()
        .map_or((&no_rows, false), |b| (&b.rows, b.cut));
    // The scores summary from the summary rows read for the table, when they are every row
    // of both experiments; else from every row.
    let summary = if cut || base_cut {
        s.services
            .compare(&v.p, &experiment, baseline.as_ref())
            .await?
            .0
    } else {
        let base = baseline.as_ref().map(|_| maps(base_rows));
        summary_entries(&summary::summarize_refs(&maps(rows), base.as_deref())).0
    };
    let names: Vec<&str> = summary
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut compared = compare_rows(rows, base_rows, &names);
    let sort = param(q, "sort");
    match sort.as_str() {
        "regression" => compared.sort_by(|a, b| a.regression.total_cmp(&b.regression)),
        "improvement" => compared.sort_by(|a, b| b.improvement.total_cmp(&a.improvement)),
        _ => {}
    }
    // The rows table shows ROWS_SHOWN rows at a time, in the order chosen; the summary and
    // the distributions are of every row read.
    let from = param(q, "from").parse::<usize>().unwrap_or(0);
    let from = from.min(compared.len().saturating_sub(1)) / ROWS_SHOWN * ROWS_SHOWN;
    let shown = compared
        .get(from..(from + ROWS_SHOWN).min(compared.len()))
        .unwrap_or_default();
    let rows_link = |at: usize| {
        let at = at.to_string();
        format!(
            "{here}?{}",
            query_string(&[("compare", &wanted), ("sort", &sort), ("from", &at)])
        )
    };
    let before = from.checked_sub(ROWS_SHOWN).map(rows_link);
    let after = (from + ROWS_SHOWN < compared.len()).then(|| rows_link(from + ROWS_SHOWN));
    let others = s
        .services
        .list_objects(&v.p, ObjectType::Experiment, &in_project(&project.id, None))
        .await?;
    let base_name = baseline.as_ref().map(|b| b.name.as_str()).unwrap_or("");
    let access = super::admin::access(
        &s,
        &v,
        ("experiment", "experiment"),
        &experiment.id,
        &project.id,
    )
    .await?;
    let body = html! {
        h1 { "Experiment " (experiment.name) }
        p.muted { "Created " (view::time(&experiment.created)) " · " (rows.len()) " rows"
            @if let Some(b) = &baseline { " · compared with " strong #baseline { (b.name) } } }
        form.controls method="get" {
            div.row {
                div {
                    label for="compare" { "Baseline" }
                    select #compare name="compare" {
                        @for e in others.iter().filter(|e| e.id != experiment.id) {
                            option value=(e.name) selected[e.name == base_name] { (e.name) }
                        }
                    }
                }
                div {
                    label for="sort" { "Order rows" }
                    select #sort name="sort" {
                        @for (p, label) in [("", "As run"), ("regression", "Most regressed first"), ("improvement", "Most improved first")] {
                            option value=(p) selected[sort == p] { (label) }
                        }
                    }
                }
                button type="submit" #apply { "Apply" }
            }
        }
        @if let Some(a) = &access { (a) }
        (summary_table(&summary, baseline.is_some()))
        @if !names.is_empty() {
            section.charts aria-label="Score distributions" {
                @for (i, n) in names.iter().enumerate() {
                    (histogram(n, &compared, i, baseline.is_some().then_some(base_rows)))
                }
            }
        }
        @if cut { p.muted { "The first " (MAX_ROWS) " rows are read." } }
        @if compared.len() > ROWS_SHOWN {
            nav.windows aria-label="Rows shown" {
                "Rows " (from + 1) "–" (from + shown.len()) " of " (compared.len())
                @if let Some(href) = &before { " · " a href=(href) rel="prev" { "Previous " (ROWS_SHOWN) } }
                @if let Some(href) = &after { " · " a href=(href) rel="next" { "Next " (ROWS_SHOWN) } }
            }
        }
        (rows_table(&here, shown, &names, baseline.as_ref().map(|b| b.name.as_str())))
    };
    Ok(document(
        StatusCode::OK,
        &format!("Experiment {}", experiment.name),
        Some((&v, place)),
        body,
    ))
}

fn summary_table(summary: &Value, compared: bool) -> Markup {
    let Some(m) = summary.as_object().filter(|m| !m.is_empty()) else {
        return html! { p { "No scores yet." } };
    };
    let num = |e: &Value, k: &str| e.get(k).and_then(Value::as_f64);
    html! {
        table #summary {
            caption { "Scores" }
            thead { tr {
                th scope="col" { "Score" } th.num scope="col" { "Average" }
                @if compared { th.num scope="col" { "Change" } th.num scope="col" { "Improvements" } th.num scope="col" { "Regressions" } }
            } }
            tbody {
                @for (name, e) in m {
                    tr {
                        th scope="row" { (name) }
                        td.num { @if let Some(x) = num(e, "score") { (view::score(x)) } }
                        @if compared {
                            td.num { @if let Some(d) = num(e, "diff") { (delta(d)) } }
                            td.num.up { (num(e, "improvements").unwrap_or(0.0)) }
                            td.num.down { (num(e, "regressions").unwrap_or(0.0)) }
                        }
                    }
                }
            }
        }
    }
}

fn delta(d: f64) -> Markup {
    let class = if d > 0.0 {
        "delta up"
    } else if d < 0.0 {
        "delta down"
    } else {
        "delta"
    };
    html! { span class=(class) { (view::delta(d)) } }
}

/// A score's distribution in ten buckets, this experiment's bars beside the baseline's.
fn histogram(name: &str, rows: &[Compared<'_>], index: usize, base: Option<&Vec<Value>>) -> Markup {
    let bucket = |x: f64| ((x.clamp(0.0, 1.0) * 10.0) as usize).min(9);
    let mut mine = [0usize; 10];
    for x in rows.iter().filter_map(|r| r.scores.get(index)?.0) {
        if let Some(c) = mine.get_mut(bucket(x)) {
            *c += 1;
        }
    }
    let mut theirs = [0usize; 10];
    for b in base.into_iter().flatten() {
        if let Some(c) = scores_of(b)
            .get(name)
            .and_then(|x| theirs.get_mut(bucket(*x)))
        {
            *c += 1;
        }
    }
    let top = mine
        .iter()
        .chain(theirs.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (w, h) = (300.0, 100.0);
    let slot = w / 10.0;
    let bar = |count: usize| h * count as f64 / top;
    let rect = |x: f64, count: usize| {
        (
            format!("{x:.1}"),
            format!("{:.1}", h - bar(count)),
            format!("{:.1}", slot / 2.0 - 2.0),
            format!("{:.1}", bar(count)),
        )
    };
    html! {
        figure.chart.small {
            figcaption {
                (name) " "
                span.legend { span.key.series {} "this run" @if base.is_some() { " " span.key.base {} "baseline" } " · 0% to 100%" }
            }
            svg viewBox={ "0 0 " (w) " " (h) } role="img"
                aria-label={ "Distribution of " (name) " in ten buckets from 0 to 100%: " (mine.map(|c| c.to_string()).join(", ")) } {
                @for (i, (count, base_count)) in mine.iter().zip(theirs.iter()).enumerate() {
                    @let x = slot * i as f64;
                    @if base.is_some() {
                        @let (rx, ry, rw, rh) = rect(x + 2.0, *base_count);
                        rect.base x=(rx) y=(ry) width=(rw) height=(rh) {
                            title { "baseline " (i * 10) "–" (i * 10 + 10) "%: " (base_count) }
                        }
                    }
                    @let (rx, ry, rw, rh) = rect(x + slot / 2.0, *count);
                    rect.series x=(rx) y=(ry) width=(rw) height=(rh) {
                        title { (i * 10) "–" (i * 10 + 10) "%: " (count) }
                    }
                }
            }
        }
    }
}

/// The rows, each linking to its trace; with the name of a baseline, the baseline's output
/// beside each row's, the words that differ marked on both sides.
fn rows_table(here: &str, rows: &[Compared<'_>], names: &[&str], baseline: Option<&str>) -> Markup {
    let compared = baseline.is_some();
    if rows.is_empty() {
        return html! { p #empty { "No rows yet." } };
    }
    let text = |r: Option<&Value>, f: &str| {
        view::preview(r.and_then(|r| r.get(f)).unwrap_or(&Value::Null), 160)
    };
    html! {
        div.scroll {
            table #rows {
                thead { tr {
                    th scope="col" { "Input" } th scope="col" { "Output" }
                    @if compared { th scope="col" { "Baseline output" } }
                    th scope="col" { "Expected" }
                    @for n in names { th.num scope="col" { (n) } }
                } }
                tbody {
                    @for c in rows {
                        @let id = c.row.get("id").and_then(Value::as_str).unwrap_or_default();
                        @let out = text(Some(c.row), "output");
                        @let base_out = text(c.base, "output");
                        tr class=[(c.regression < 0.0).then_some("regressed")] {
                            td.preview { a href={ (here) "?" (query_string(&[("oid", id), ("compare", baseline.unwrap_or_default())])) } { (text(Some(c.row), "input")) } }
                            @let changed = c.base.is_some() && out != base_out;
                            td.preview.output {
                                @if changed { (view::word_side(&base_out, &out, false)) } @else { (out) }
                            }
                            @if compared {
                                td class={ "preview output" @if changed { " changed" } } {
                                    @if c.base.is_none() { span.muted { "no row with this input" } }
                                    @else if changed { (view::word_side(&base_out, &out, true)) }
                                    @else { (base_out) }
                                }
                            }
                            td.preview { (text(Some(c.row), "expected")) }
                            @for (value, base) in &c.scores {
                                td.num {
                                    @if let Some(x) = value { (view::score(*x)) }
                                    @if let (Some(a), Some(b)) = (value, base) { " " (delta(a - b)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_rows_are_of_the_newest_version_within_the_budget() {
        let rows = |bytes: usize| {
            Arc::new(Rows {
                rows: Vec::new(),
                cut: false,
                bytes,
                traces: None,
            })
        };
        let (v1, v2) = (
            XactId::from_counter(1).unwrap(),
            XactId::from_counter(2).unwrap(),
        );
        let kept = RowsKept::default();
        let at = |id: &str| kept.get(id).map(|(x, _)| x);
        let each = KEPT_BYTES_EACH;
        kept.keep("a", v1, rows(each));
        assert_eq!(at("a"), Some(v1));
        kept.keep("a", v2, rows(each));
        assert_eq!(at("a"), Some(v2), "a newer version replaces the older");
        assert_eq!(kept.lock().bytes, each, "a replaced entry is counted once");
        kept.keep("huge", v1, rows(each + 1));
        assert!(at("huge").is_none(), "over the limit for one");
        for id in ["b", "c", "d"] {
            kept.keep(id, v1, rows(each));
        }
        assert!(at("a").is_some(), "four fit");
        kept.keep("e", v1, rows(each));
        assert!(at("a").is_none(), "the oldest goes first");
        assert!(["b", "c", "d", "e"].iter().all(|id| at(id) == Some(v1)));
        assert_eq!(kept.lock().bytes, KEPT_BYTES);
        assert_eq!(
            json_size(&[json!({"a": [1, "x"]})]),
            r#"[{"a":[1,"x"]}]"#.len()
        );
        let big = vec![json!("x".repeat(1 << 20)); 8];
        assert!(
            json_size(&big) > KEPT_BYTES_EACH,
            "a size past the limit reads as over it"
        );
    }

    /// Rows brought up to date from the traces that changed are the rows made from every
    /// span: a span added to a trace, moved to another, deleted with its trace, a new
    /// trace; with the spans' traces too. Rows cut, or kept without their traces, are not.
    #[test]
    fn rows_updated_from_changed_traces_are_those_read_whole() {
        let span = |id: &str, root: &str, created: &str, acc: f64| {
            json!({"id": id, "span_id": id, "root_span_id": root, "created": created,
                   "is_root": id == root, "input": id, "scores": {"acc": acc}})
        };
        let before = vec![
            span("a", "a", "2026-01-01", 1.0),
            span("a1", "a", "2026-01-02", 0.0),
            span("b", "b", "2026-01-03", 1.0),
            span("b1", "b", "2026-01-04", 0.5),
            span("c", "c", "2026-01-05", 0.0),
        ];
        let kept = Rows::of_spans(before);
        assert_eq!(kept.rows.len(), 3);
        // a2 added to a; b1 moved from b to d (a new trace); c deleted.
        let after = vec![
            span("a", "a", "2026-01-01", 1.0),
            span("a1", "a", "2026-01-02", 0.0),
            span("a2", "a", "2026-01-06", 0.25),
            span("b", "b", "2026-01-03", 1.0),
            span("b1", "d", "2026-01-04", 0.5),
            span("d", "d", "2026-01-00", 0.75),
        ];
        let whole = Rows::of_spans(after.clone());
        let changed: BTreeSet<&str> = ["a", "b", "c", "d"].into();
        let mut traces: HashMap<String, Vec<Value>> = changed
            .iter()
            .map(|root| (root.to_string(), Vec::new()))
            .collect();
        for s in after {
            let root = s["root_span_id"].as_str().unwrap().to_owned();
            if let Some(t) = traces.get_mut(&root) {
                t.push(s);
            }
        }
        let updated = kept.with_traces(&traces).expect("kept with its traces");
        assert_eq!(updated.rows, whole.rows);
        assert_eq!(updated.traces, whole.traces);
        assert_eq!(updated.bytes, whole.bytes);
        assert_eq!(
            updated.rows.iter().map(|r| &r["id"]).collect::<Vec<_>>(),
            [&json!("d"), &json!("a"), &json!("b")],
            "oldest first"
        );
        // Only the changed traces: the unchanged ones are kept as they were.
        let only_a: HashMap<String, Vec<Value>> = traces
            .iter()
            .filter(|(root, _)| *root == "a")
            .map(|(r, t)| (r.clone(), t.clone()))
            .collect();
        let partly = kept.with_traces(&only_a).unwrap();
        assert_eq!(partly.rows[1], kept.rows[1], "trace b as it was");
        assert_ne!(partly.rows[0], kept.rows[0], "trace a made again");
        let rootless = Rows::of_spans(vec![json!({"id": "x", "created": "2026-01-01"})]);
        assert_eq!(rootless.rows.len(), 1);
        assert!(rootless.with_traces(&traces).is_none());
        let many = (0..=MAX_ROWS)
            .map(|i| span(&format!("r{i}"), &format!("r{i}"), "2026-01-01", 1.0))
            .collect();
        let cut = Rows::of_spans(many);
        assert!(cut.cut && cut.rows.len() == MAX_ROWS && cut.traces.is_none());
        let full = Rows::of_spans(
            (0..MAX_ROWS)
                .map(|i| span(&format!("r{i}"), &format!("r{i}"), "2026-01-01", 1.0))
                .collect(),
        );
        assert!(!full.cut && full.traces.is_some());
        assert!(
            full.with_traces(&traces).is_none(),
            "a new trace past the most rows"
        );
    }

    #[test]
    fn rows_are_matched_by_input_and_regressions_summed() {
        let rows = vec![
            json!({"id": "a", "input": {"q": 1}, "scores": {"acc": 0.5, "len": 1.0}}),
            json!({"id": "b", "input": {"q": 2}, "scores": {"acc": 1.0}}),
            json!({"id": "c", "input": {"q": 3}, "scores": {"acc": 0.0}}),
        ];
        let base = vec![
            json!({"id": "x", "input": {"q": 2}, "scores": {"acc": 0.0}}),
            json!({"id": "y", "input": {"q": 1}, "scores": {"acc": 1.0, "len": 0.5}}),
        ];
        let mut c = compare_rows(&rows, &base, &["acc", "len"]);
        assert_eq!(c[0].base.map(|b| &b["id"]), Some(&json!("y")));
        assert_eq!(
            c[0].scores,
            [(Some(0.5), Some(1.0)), (Some(1.0), Some(0.5))]
        );
        assert_eq!((c[0].regression, c[0].improvement), (-0.5, 0.5));
        assert!(c[2].base.is_none());
        assert_eq!(c[2].regression, 0.0);
        c.sort_by(|a, b| a.regression.total_cmp(&b.regression));
        assert_eq!(c[0].row["id"], "a");
    }
}
