//! `POST /btql`: one query engine for the structured form the SDKs send and for text (BTQL
//! pipe syntax and Braintrust's SQL, parsed by [`holdfast_core::btql`]).
//!
//! A query names a source (`project_logs`, `experiment`, `dataset` with one or several ids,
//! or `project_prompts`), a shape, a filter, and either a projection (`select`) or grouping
//! (`dimensions` and `measures`, with `having`), then `sort`, `limit` and `cursor`.
//!
//! - **spans**: matching rows. Unsorted, they come in (object, row id) order and the cursor is
//!   the last row; sorted, the engine keeps only the best `limit` rows while it reads (memory
//!   bounded by the page, not the object) and the cursor carries the last sort key.
//! - **traces**: every span of each trace that has a matching span, trace by trace in the
//!   order of each trace's first matching span. A trace on a later page is skipped when one
//!   of its spans at or before the cursor matches, so no trace appears twice.
//! - **summary**: one row per trace with the root's fields, merged scores and computed
//!   metrics (see [`summary_row`]).
//!
//!   With `sort`, traces and summaries are ordered by the sort key of their root span.
//! - **grouped**: rows are read once; memory is one accumulator per group and aggregate,
//!   bounded by [`MAX_GROUPS`] and [`holdfast_core::qexpr::MAX_AGGREGATE_VALUES`].
//!
//! Every page of a query reads the snapshot its first page saw, so rows that keep arriving
//! do not shift later pages. Every object named is opened with the caller's read permission
//! (404 otherwise, like every other route). Nothing is ever passed to the database but ids:
//! expressions are evaluated here.

use crate::kept_traces::value_bytes;
use crate::query::{
    Cursor, DEFAULT_LIMIT, MAX_FETCH_LIMIT, decode_cursor, encode_cursor, from_argument,
    only_discussion, row_json,
};
use crate::{Result, ServiceError, Services};
use holdfast_core::authz::{ObjectPass, Permission, Principal};
use holdfast_core::object::ObjectType;
use holdfast_core::pricing;
use holdfast_core::qexpr::{
    Accumulator, CmpOp, Context, Expr, MAX_AGGREGATE_VALUES, sort_cmp, truthy, words,
};
use holdfast_core::xact::XactId;
use holdfast_store::{Found, MAX_CANDIDATES, RowQuery, SEARCH_FIELDS, StoredRow, TextQuery, held};
use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

mod counts;
mod sorted;
use sorted::Among;

/// The fields full-text search reads.
pub use holdfast_store::SEARCH_FIELDS as TEXT_FIELDS;

/// A grouped query's groups by their dimensions' values: those values and the aggregates'
/// running states.
type Groups = HashMap<String, (Vec<Value>, Vec<Vec<Accumulator>>)>;

/// Rows a scheduled export's query reads at a time.
const SCHEDULED_PAGE: u64 = 1_000;
/// Longest text of a scheduled export's query.
pub const MAX_SCHEDULED_QUERY: usize = 10_000;

/// Checks the query of a scheduled export of `project_id`'s logs and returns its structured
/// form: BTQL or SQL text reading `project_logs` of that project only, in the spans shape
/// (grouped or not), without `limit` or `cursor` (every run returns all it matches).
pub(crate) fn scheduled_query(text: &str, project_id: &str) -> Result<Value> {
    let field = "config.export_definition.btql_query";
    if text.trim().is_empty() || text.chars().count() > MAX_SCHEDULED_QUERY {
        return Err(ServiceError::field(
            field,
            format!("the query must be 1 to {MAX_SCHEDULED_QUERY} characters"),
        ));
    }
    let query =
        holdfast_core::btql::parse(text).map_err(|e| ServiceError::field(field, e.to_string()))?;
    for clause in ["limit", "cursor"] {
        if query.get(clause).is_some_and(|v| !v.is_null()) {
            return Err(ServiceError::field(
                field,
                format!("a scheduled export returns every matching row; remove `{clause}`"),
            ));
        }
    }
    let plan = Plan::from_query(&query, &json!({}))
        .map_err(|e| ServiceError::field(field, e.to_string()))?;
    if plan.kind != ObjectType::ProjectLogs || plan.ids != [project_id] {
        return Err(ServiceError::field(
            field,
            format!("the query must read project_logs('{project_id}'), this project's logs only"),
        ));
    }
    if plan.shape != Shape::Spans {
        return Err(ServiceError::field(
            field,
            "a scheduled export's query returns spans or groups of spans; use the spans shape",
        ));
    }
    Ok(query)
}

/// Most groups one grouped query may build.
pub const MAX_GROUPS: usize = 100_000;
/// Most traces one page of the traces or summary shape holds.
pub const MAX_TRACES_PER_PAGE: usize = 1_000;
/// Matched traces whose roots a sorted traces or summary query finds by reading each trace;
/// more are found through the value index (one lookup, and a read of the roots alone).
const FEW_TRACE_READS: usize = 16;
/// Most traces a filtered, sorted traces or summary query may match.
pub const MAX_MATCHED_TRACES: usize = 1_000_000;
/// Most sort keys, select items, dimensions or measures.
pub const MAX_LIST: usize = 64;
/// Matched traces a sorted traces or summary query reads one by one rather than scanning
/// the object for their roots.
const FEW_TRACES: usize = 2_000;
/// Matched traces whose roots a sorted traces or summary query looks up in the value index
/// (one lookup a trace) to read only those that enter the page; with more, reading the
/// object's roots in the sort's order finds a page's worth sooner.
const INDEXED_TRACES: usize = 10_000;
/// Rows read from the store at a time while scanning.
const SCAN_PAGE: i64 = 1_000;
/// Rows a word search reads with their data in one pass (in parallel, one read a row); past
/// this it lists their ids and reads them a page at a time, each looked up in `row_index`
/// (about three reads a row). Fewer than the largest page a query may return (10,000
/// spans), so memory stays within what a query may hold anyway.
const FOUND_AT_ONCE: usize = 4_000;
/// Rows a filter must narrow an object to through the value index for a sorted query to
/// read them rather than read the object in the sort's order (which reads about `limit`
/// divided by the filter's share of the rows).
const FEW_CANDIDATES: usize = 1_000;

const CLAUSES: [&str; 9] = [
    "select",
    "from",
    "filter",
    "dimensions",
    "measures",
    "having",
    "sort",
    "limit",
    "cursor",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Spans,
    Traces,
    Summary,
}

#[derive(Debug)]
struct Plan {
    kind: ObjectType,
    ids: Vec<String>,
    shape: Shape,
    filter: Option<Expr>,
    select: Option<Vec<(String, Expr)>>,
    dimensions: Vec<(String, Expr)>,
    measures: Vec<(String, Expr)>,
    having: Option<Expr>,
    /// Sort expressions and whether each is descending.
    sort: Vec<(Expr, bool)>,
    limit: usize,
    cursor: Option<Cursor>,
    /// Only rows whose newest version is after this transaction (a scheduled export's run).
    since: Option<XactId>,
}

fn clause_err(clause: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::field(format!("query.{clause}"), format!("{clause}: {e}"))
}

/// `[{"alias", "expr"}]`.
fn aliased(query: &Value, clause: &str, aggregates: bool) -> Result<Vec<(String, Expr)>> {
    let Some(v) = query.get(clause).filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = v
        .as_array()
        .ok_or_else(|| clause_err(clause, "expected an array of {\"alias\", \"expr\"}"))?;
    if items.len() > MAX_LIST {
        return Err(clause_err(clause, format!("at most {MAX_LIST} items")));
    }
    let mut out: Vec<(String, Expr)> = Vec::new();
    for item in items {
        let alias = item
            .get("alias")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| clause_err(clause, "each item needs an `alias`"))?;
        if out.iter().any(|(a, _)| a == alias) {
            return Err(clause_err(
                clause,
                format!("the alias `{alias}` is used twice"),
            ));
        }
        let expr = item
            .get("expr")
            .ok_or_else(|| clause_err(clause, "each item needs an `expr`"))?;
        let expr = Expr::from_json(expr, aggregates).map_err(|e| clause_err(clause, e))?;
        out.push((alias.to_owned(), expr));
    }
    Ok(out)
}

impl Plan {
    fn from_query(query: &Value, body: &Value) -> Result<Plan> {
        let obj = query
            .as_object()
            .ok_or_else(|| ServiceError::field("query", "expected an object"))?;
        // A clause this engine does not apply is refused, never dropped.
        if let Some((clause, _)) = obj
            .iter()
            .find(|(k, v)| !v.is_null() && !CLAUSES.contains(&k.as_str()))
        {
            return Err(ServiceError::field(
                format!("query.{clause}"),
                format!(
                    "the `{clause}` clause is not supported; supported clauses: {}",
                    CLAUSES.join(", ")
                ),
            ));
        }
        let from = query
            .get("from")
            .ok_or_else(|| ServiceError::field("query.from", "`query.from` is required"))?;
        let kind = match source_name(query)? {
            "experiment" => ObjectType::Experiment,
            "dataset" => ObjectType::Dataset,
            "project_logs" => ObjectType::ProjectLogs,
            other => {
                return Err(ServiceError::bad(format!(
                    "unsupported btql source {other:?}"
                )));
            }
        };
        let ids = from
            .get("args")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty() && a.len() <= holdfast_core::btql::MAX_SOURCE_IDS)
            .and_then(|a| {
                a.iter()
                    .map(|x| x.get("value").and_then(Value::as_str).map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                ServiceError::field(
                    "query.from",
                    format!(
                        "`query.from` needs 1 to {} literal id arguments",
                        holdfast_core::btql::MAX_SOURCE_IDS
                    ),
                )
            })?;
        let shape = match from.get("shape").or_else(|| body.get("shape")) {
            None | Some(Value::Null) => Shape::Spans,
            Some(s) => match s.as_str() {
                Some("spans") => Shape::Spans,
                Some("traces") => Shape::Traces,
                Some("summary") => Shape::Summary,
                _ => {
                    return Err(ServiceError::field(
                        "query.from.shape",
                        "the shape is one of spans, traces, summary",
                    ));
                }
            },
        };
        if shape != Shape::Spans && kind == ObjectType::Dataset {
            return Err(ServiceError::field(
                "query.from.shape",
                "dataset rows are not traces; use the spans shape",
            ));
        }
        let filter = match query.get("filter") {
            None | Some(Value::Null) => None,
            Some(f) => Some(Expr::from_json(f, false).map_err(|e| clause_err("filter", e))?),
        };
        let select = match query.get("select") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items))
                if items.len() == 1
                    && items
                        .first()
                        .is_some_and(|i| i.get("op").and_then(Value::as_str) == Some("star")) =>
            {
                None
            }
            Some(_) => Some(aliased(query, "select", false)?),
        };
        let dimensions = aliased(query, "dimensions", false)?;
        let measures = aliased(query, "measures", true)?;
        let grouped = !dimensions.is_empty() || !measures.is_empty();
        if grouped && select.is_some() {
            return Err(ServiceError::field(
                "query.select",
                "use either `select` or `dimensions`/`measures`, not both",
            ));
        }
        if grouped && shape != Shape::Spans {
            return Err(ServiceError::field(
                "query.from.shape",
                "dimensions and measures group spans; use the spans shape",
            ));
        }
        if let Some((alias, _)) = measures.iter().find(|(_, e)| !e.has_aggregate()) {
            return Err(clause_err(
                "measures",
                format!("`{alias}` has no aggregate (count, sum, avg, min, max, percentile)"),
            ));
        }
        // Aggregates in `having` and `sort` name a measure; everything else there reads the
        // output row by alias.
        let by_alias = |clause: &str, e: Expr| -> Result<Expr> {
            let e = e.rewrite(&|x: &Expr| {
                measures
                    .iter()
                    .chain(dimensions.iter())
                    .find(|(_, m)| m == x)
                    .map(|(a, _)| Expr::Field(vec![a.clone()]))
            });
            if e.has_aggregate() {
                return Err(clause_err(
                    clause,
                    "an aggregate here must be one of the measures; name it by its alias",
                ));
            }
            // Grouped rows hold only the dimensions and measures.
            let mut stray = None;
            e.walk_fields(&mut |p: &[String]| {
                if stray.is_none()
                    && !(p.len() == 1
                        && measures
                            .iter()
                            .chain(dimensions.iter())
                            .any(|(a, _)| p.first() == Some(a)))
                {
                    stray = Some(p.join("."));
                }
            });
            if let Some(f) = stray {
                return Err(clause_err(
                    clause,
                    format!("`{f}` is not a dimension or measure of this query; use an alias"),
                ));
            }
            Ok(e)
        };
        let having = match query.get("having") {
            None | Some(Value::Null) => None,
            Some(_) if !grouped => {
                return Err(clause_err("having", "needs dimensions or measures"));
            }
            Some(h) => Some(by_alias(
                "having",
                Expr::from_json(h, true).map_err(|e| clause_err("having", e))?,
            )?),
        };
        let mut sort = Vec::new();
        if let Some(items) = query.get("sort").filter(|v| !v.is_null()) {
            let items = items
                .as_array()
                .ok_or_else(|| clause_err("sort", "expected an array of {\"expr\", \"dir\"}"))?;
            if items.len() > MAX_LIST {
                return Err(clause_err("sort", format!("at most {MAX_LIST} keys")));
            }
            for item in items {
                let e = item
                    .get("expr")
                    .ok_or_else(|| clause_err("sort", "each key needs an `expr`"))?;
                let desc = match item.get("dir").and_then(Value::as_str) {
                    None | Some("asc") => false,
                    Some("desc") => true,
                    Some(other) => {
                        return Err(clause_err(
                            "sort",
                            format!("`dir` {other:?} is not asc or desc"),
                        ));
                    }
                };
                let mut e = Expr::from_json(e, grouped).map_err(|e| clause_err("sort", e))?;
                if grouped {
                    e = by_alias("sort", e)?;
                } else if let (Some(sel), Expr::Field(p)) = (&select, &e)
                    && let [name] = p.as_slice()
                    && let Some((_, x)) = sel.iter().find(|(a, _)| a == name)
                {
                    // `ORDER BY alias` sorts by the select item.
                    e = x.clone();
                }
                sort.push((e, desc));
            }
        }
        let max = if shape == Shape::Spans {
            MAX_FETCH_LIMIT as usize
        } else {
            MAX_TRACES_PER_PAGE
        };
        let limit = match query.get("limit") {
            None | Some(Value::Null) => (DEFAULT_LIMIT as usize).min(max),
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    ServiceError::field("query.limit", "`limit` must be a positive integer")
                })?
                .min(max),
        };
        let cursor = match query.get("cursor") {
            None | Some(Value::Null) => None,
            Some(_) if grouped => {
                return Err(clause_err(
                    "cursor",
                    "grouped results come in one page; raise `limit` instead",
                ));
            }
            Some(Value::String(c)) => {
                let c = decode_cursor(c)?;
                if c.object >= ids.len()
                    || c.key.as_ref().map(Vec::len) != (!sort.is_empty()).then_some(sort.len())
                {
                    return Err(ServiceError::field(
                        "query.cursor",
                        "the cursor is not from this query",
                    ));
                }
                Some(c)
            }
            Some(_) => return Err(ServiceError::field("query.cursor", "expected a string")),
        };
        Ok(Plan {
            kind,
            ids,
            shape,
            filter,
            select,
            dimensions,
            measures,
            having,
            sort,
            limit,
            cursor,
            since: None,
        })
    }

    fn grouped(&self) -> bool {
        !self.dimensions.is_empty() || !self.measures.is_empty()
    }

    fn keep(&self, row: &Map<String, Value>, cx: &Context) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| truthy(&f.eval(row, cx)))
    }

    fn project(&self, row: Value, cx: &Context) -> Value {
        match (&self.select, row) {
            (Some(items), Value::Object(m)) => Value::Object(
                items
                    .iter()
                    .map(|(a, e)| (a.clone(), e.eval(&m, cx)))
                    .collect(),
            ),
            (_, row) => row,
        }
    }

    fn key(&self, row: &Map<String, Value>, cx: &Context) -> Vec<Value> {
        self.sort.iter().map(|(e, _)| e.eval(row, cx)).collect()
    }

    /// Orders two sort keys: each part in its direction, nulls last either way.
    fn cmp_keys(&self, a: &[Value], b: &[Value]) -> Ordering {
        for ((x, y), (_, desc)) in a.iter().zip(b).zip(&self.sort) {
            let o = match (x.is_null(), y.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ if *desc => sort_cmp(y, x),
                _ => sort_cmp(x, y),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// Whether (key, object, row) comes after the cursor.
    fn after_cursor(&self, key: &[Value], object: usize, row_id: &str) -> bool {
        let Some(c) = &self.cursor else {
            return true;
        };
        let ck = c.key.as_deref().unwrap_or_default();
        self.cmp_keys(key, ck)
            .then(object.cmp(&c.object))
            .then_with(|| row_id.cmp(c.after.as_str()))
            == Ordering::Greater
    }
}

fn source_name(query: &Value) -> Result<&str> {
    query
        .get("from")
        .and_then(|f| f.get("name"))
        .and_then(|n| n.get("name"))
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ServiceError::field(
                "query.from",
                "`query.from` must be a function like dataset('<id>')",
            )
        })
}

/// A sorted candidate: its key, object, row id and the row.
type Ranked = (Vec<Value>, usize, String, Value);

/// The word searches that every row a filter keeps must satisfy (one of them), when the
/// filter implies any: `MATCH` on an indexed field, and `=` between a path into one and a
/// string (the string's words are among the field's words).
fn text_plan(e: &Expr) -> Option<Vec<TextQuery>> {
    let field_of = |path: &[String]| {
        path.first()
            .and_then(|f| SEARCH_FIELDS.iter().position(|x| x == f))
    };
    let query = |field: usize, text: &str| {
        let words: Vec<String> = words(text).collect();
        (!words.is_empty()).then(|| vec![TextQuery { field, words }])
    };
    match e {
        Expr::Match(f, q) => match (f.as_ref(), q.as_ref()) {
            (Expr::Field(p), Expr::Lit(Value::String(text))) => query(field_of(p)?, text),
            _ => None,
        },
        Expr::Cmp(CmpOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
            (Expr::Field(p), Expr::Lit(Value::String(text)))
            | (Expr::Lit(Value::String(text)), Expr::Field(p)) => query(field_of(p)?, text),
            _ => None,
        },
        Expr::And(cs) => cs.iter().find_map(text_plan),
        Expr::Or(cs) => {
            let mut all = Vec::new();
            for c in cs {
                all.extend(text_plan(c)?);
            }
            Some(all)
        }
        _ => None,
    }
}

/// Reads an object's rows at a snapshot, a page at a time, within the time limit: every
/// row in row-id order, or only the candidates a word search named.
struct Scan<'a> {
    svc: &'a Services,
    pass: &'a ObjectPass,
    version: XactId,
    after: Option<String>,
    root: Option<String>,
    /// Row ids to read instead of the whole object (sorted), and how many are read.
    candidates: Option<(Vec<String>, usize)>,
    /// The rows a search found and read, few enough for one page (in row-id order).
    found: Option<Vec<StoredRow>>,
    done: bool,
    started: Instant,
    /// Only rows whose newest version is after this transaction.
    since: Option<XactId>,
}

impl<'a> Scan<'a> {
    fn new(svc: &'a Services, pass: &'a ObjectPass, version: XactId, started: Instant) -> Self {
        Scan {
            svc,
            pass,
            version,
            after: None,
            root: None,
            candidates: None,
            found: None,
            done: false,
            started,
            since: None,
        }
    }

    /// Whether the scan reads every row of the object (no index narrows it).
    fn reads_all(&self) -> bool {
        self.root.is_none() && self.candidates.is_none() && self.found.is_none()
    }

    /// The next page of rows (comment-only rows, and rows not changed since `since`, left
    /// out), or `None` at the end.
    async fn next(&mut self) -> Result<Option<Vec<StoredRow>>> {
        let page = self.next_page().await?;
        Ok(match self.since {
            Some(since) => {
                page.map(|rows| rows.into_iter().filter(|r| r.xact_id > since).collect())
            }
            None => page,
        })
    }

    async fn next_page(&mut self) -> Result<Option<Vec<StoredRow>>> {
        if self.done {
            return Ok(None);
        }
        self.svc.check_query_time(self.started)?;
        if let Some(rows) = self.found.take() {
            self.done = true;
            let after = self.after.take();
            return Ok(Some(
                rows.into_iter()
                    .filter(|r| after.as_ref().is_none_or(|a| r.row_id > *a))
                    .filter(|r| !only_discussion(&r.data))
                    .collect(),
            ));
        }
        if let Some((ids, at)) = &mut self.candidates {
            while ids
                .get(*at)
                .is_some_and(|id| self.after.as_ref().is_some_and(|a| id <= a))
            {
                *at += 1;
            }
            let end = (*at + SCAN_PAGE as usize).min(ids.len());
            let chunk = ids.get(*at..end).unwrap_or_default();
            *at = end;
            self.done = end >= ids.len();
            let rows = self
                .svc
                .store
                .read_row_ids(self.pass, chunk, Some(self.version))
                .await?;
            if let Some(last) = chunk.last() {
                self.after = Some(last.clone());
            }
            return Ok(Some(
                rows.into_iter()
                    .filter(|r| !only_discussion(&r.data))
                    .collect(),
            ));
        }
        // A trace is read whole by the store whatever the page (its versions are resolved
        // together), so it is taken in one page: paging through it would read it again for
        // every page, quadratic in its spans.
        let limit = match self.root {
            Some(_) => i64::MAX,
            None => SCAN_PAGE,
        };
        let q = RowQuery {
            as_of: Some(self.version),
            after_row_id: self.after.clone(),
            root_span_id: self.root.clone(),
            limit,
        };
        let page = self.svc.store.read_rows(self.pass, &q).await?;
        self.done = (page.len() as i64) < limit;
        if let Some(last) = page.last() {
            self.after = Some(last.row_id.clone());
        }
        Ok(Some(
            page.into_iter()
                .filter(|r| !only_discussion(&r.data))
                .collect(),
        ))
    }
}

/// The spans among a trace read's rows: not comment-only, and filed under `root`.
pub(crate) fn spans_of(rows: Vec<StoredRow>, root: &str) -> Vec<StoredRow> {
    rows.into_iter()
        .filter(|r| !only_discussion(&r.data))
        .filter(|r| r.data.get("root_span_id").and_then(Value::as_str) == Some(root))
        .collect()
}

impl Services {
    /// A scan of one object for a plan: the row index for `id = '...'`, the trace index for
    /// `root_span_id = '...'`, the word
    /// index when the filter implies words, the value index when it bounds a score, a metric
    /// or `created`, else every row. `every`: the caller reads every matching row (no read
    /// in the sort's order follows).
    async fn scan_for<'a>(
        &'a self,
        plan: &Plan,
        pass: &'a ObjectPass,
        version: XactId,
        started: Instant,
        cx: &Context,
        every: bool,
    ) -> Result<Scan<'a>> {
        let mut scan = Scan::new(self, pass, version, started);
        scan.since = plan.since;
        // Since a transaction: only the rows changed since, when the store can list them.
        if let Some(since) = plan.since
            && let Some(ids) = self.store.rows_changed_since(pass, since).await?
        {
            scan.candidates = Some((ids, 0));
        }
        let Some(filter) = &plan.filter else {
            return Ok(scan);
        };
        if scan.candidates.is_some() {
            return Ok(scan);
        }
        // One row by id (what a link to a span asks): read through the row index.
        if let Some(id) = filter.equality_on("id") {
            scan.candidates = Some((vec![id], 0));
            return Ok(scan);
        }
        scan.root = filter.equality_on("root_span_id");
        if scan.root.is_none()
            && self.limits.query_search_index
            && self.store.has_word_index()
            && let Some(queries) = text_plan(filter)
        {
            // Too many candidates read faster as a scan.
            match self
                .store
                .search_read(pass, &queries, MAX_CANDIDATES, FOUND_AT_ONCE, Some(version))
                .await?
            {
                Some(Found::Ids(ids)) => scan.candidates = Some((ids, 0)),
                Some(Found::Rows(rows)) => scan.found = Some(rows),
                None => {}
            }
        }
        // A sort on an indexed field reads through the index in its order instead (and
        // stops early), which the caller tries when this scan would read every row; but a
        // filter the index narrows to a few rows (a rare tag) reads those rows faster than
        // a read in the sort's order finds enough of them.
        let sorted_by_index = match plan.sort.first() {
            Some((Expr::Field(p), _)) if !every => {
                held(p).filter(|h| h.sorted()).map(|_| p.as_slice())
            }
            _ => None,
        };
        let cap = match sorted_by_index {
            Some(_) => FEW_CANDIDATES,
            None => MAX_CANDIDATES,
        };
        if scan.reads_all()
            && self.limits.query_search_index
            && self.store.has_value_index()
            && let Some(ids) = self
                .range_candidates(filter, pass, version, started, cx, cap, sorted_by_index)
                .await?
        {
            scan.candidates = Some((ids, 0));
        }
        Ok(scan)
    }

    /// Read access to one object of a source. `project_logs` also takes the project's name
    /// (ids are tried first); either way the caller's read permission decides, and a name
    /// the caller may not read is a 404 like an id.
    pub(crate) async fn source_pass(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
    ) -> Result<ObjectPass> {
        match self
            .object_pass(principal, kind, id, Permission::Read)
            .await
        {
            Err(ServiceError::NotFound(what)) if kind == ObjectType::ProjectLogs => {
                let lookup = self.lookup(principal)?;
                let Some(project) = self.store.find_project(&lookup, id).await? else {
                    return Err(ServiceError::NotFound(what));
                };
                let (_, pass) = self
                    .object_pass(principal, kind, &project.id, Permission::Read)
                    .await?;
                Ok(pass)
            }
            found => found.map(|(_, pass)| pass),
        }
    }

    pub(crate) fn check_query_time(&self, started: Instant) -> Result<()> {
        if started.elapsed() > self.limits.query_timeout {
            return Err(ServiceError::QueryTimeout(format!(
                "the query read for longer than the limit of {} ms; narrow its filter",
                self.limits.query_timeout.as_millis()
            )));
        }
        Ok(())
    }

    /// `POST /btql`.
    pub async fn btql(&self, principal: &Principal, body: &Value) -> Result<Value> {
        let query = body
            .get("query")
            .ok_or_else(|| ServiceError::field("query", "`query` is required"))?;
        match body.get("fmt") {
            None | Some(Value::Null) => {}
            Some(Value::String(f)) if f == "json" => {}
            Some(_) => {
                return Err(ServiceError::field("fmt", "only `json` is supported"));
            }
        }
        // Text (BTQL pipe syntax or SQL) is parsed into the structured form the SDKs send.
        let parsed;
        let query = match query {
            Value::String(text) => {
                parsed = holdfast_core::btql::parse(text)
                    .map_err(|e| ServiceError::field("query", e.to_string()))?;
                &parsed
            }
            Value::Object(_) => query,
            _ => {
                return Err(ServiceError::field(
                    "query",
                    "`query` must be text (BTQL or SQL) or a structured query object",
                ));
            }
        };
        if source_name(query)? == "project_prompts" {
            if let Some(clause) = ["dimensions", "measures", "having", "sort"]
                .iter()
                .find(|c| query.get(**c).is_some_and(|v| !v.is_null()))
            {
                return Err(clause_err(clause, "not supported on project_prompts"));
            }
            from_argument(query)?;
            return self.project_prompts(principal, query, body).await;
        }
        let plan = Plan::from_query(query, body)?;
        let mut passes = Vec::new();
        for id in &plan.ids {
            passes.push(self.source_pass(principal, plan.kind, id).await?);
        }
        let version = match (&plan.cursor, body.get("version")) {
            (Some(c), _) => c.version,
            (None, None | Some(Value::Null)) => match self.store.current_xact().await? {
                Some(x) => x,
                None => return Ok(json!({"data": [], "cursor": null})),
            },
            (None, Some(v)) => v
                .as_str()
                .map(str::to_owned)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
                .and_then(|v| XactId::parse(&v))
                .ok_or_else(|| ServiceError::field("version", "invalid version"))?,
        };
        // The index's counts are of the latest rows, not of an older snapshot.
        let latest = body.get("version").is_none_or(Value::is_null);
        let (data, cursor) = self.run_plan(&plan, &passes, version, latest).await?;
        // Built by hand: `json!` would copy every row (it serializes its values by reference).
        let mut out = Map::new();
        out.insert("data".into(), Value::Array(data));
        let cursor = cursor.map(|c| encode_cursor(&c));
        out.insert("cursor".into(), cursor.map_or(Value::Null, Value::String));
        Ok(Value::Object(out))
    }

    /// A scheduled export's query (see [`scheduled_query`]): the next page of what it returns
    /// from the rows of `pass`'s object changed after `since` (every row when `None`), read
    /// as of `version`, and the cursor of the page after it.
    pub(crate) async fn scheduled_query_page(
        &self,
        pass: &ObjectPass,
        query: &Value,
        since: Option<XactId>,
        version: XactId,
        cursor: Option<String>,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let mut query = query.clone();
        if let Some(m) = query.as_object_mut() {
            m.insert("limit".into(), json!(SCHEDULED_PAGE));
            m.insert("cursor".into(), json!(cursor));
        }
        let mut plan = Plan::from_query(&query, &json!({}))?;
        plan.since = since;
        let (data, cursor) = self
            .run_plan(&plan, std::slice::from_ref(pass), version, false)
            .await?;
        Ok((data, cursor.map(|c| encode_cursor(&c))))
    }

    /// Answers a planned query over its sources' passes, read as of `version`.
    async fn run_plan(
        &self,
        plan: &Plan,
        passes: &[ObjectPass],
        version: XactId,
        latest: bool,
    ) -> Result<(Vec<Value>, Option<Cursor>)> {
        let cx = self.query_context();
        let started = Instant::now();
        if plan.grouped() {
            let data = self
                .grouped(plan, passes, version, latest, &cx, started)
                .await?;
            return Ok((data, None));
        }
        match (plan.shape, plan.sort.is_empty()) {
            (Shape::Spans, true) => self.spans(plan, passes, version, &cx, started).await,
            (Shape::Spans, false) => self.sorted_spans(plan, passes, version, &cx, started).await,
            (_, true) => self.traces(plan, passes, version, &cx, started).await,
            (_, false) => {
                self.sorted_traces(plan, passes, version, &cx, started)
                    .await
            }
        }
    }

    /// Unsorted spans, in (object, row id) order.
    async fn spans(
        &self,
        plan: &Plan,
        passes: &[ObjectPass],
        version: XactId,
        cx: &Context,
        started: Instant,
    ) -> Result<(Vec<Value>, Option<Cursor>)> {
        let first = plan.cursor.as_ref().map_or(0, |c| c.object);
        let mut out = Vec::new();
        for (i, pass) in passes.iter().enumerate().skip(first) {
            let mut scan = self
                .scan_for(plan, pass, version, started, cx, true)
                .await?;
            if i == first {
                scan.after = plan.cursor.as_ref().map(|c| c.after.clone());
            }
            let last_object = i + 1 == passes.len();
            while let Some(page) = scan.next().await? {
                let mut rows = page.into_iter();
                while let Some(row) = rows.next() {
                    let row_id = row.row_id.clone();
                    let row = row_json(row, plan.kind);
                    if !row.as_object().is_some_and(|m| plan.keep(m, cx)) {
                        continue;
                    }
                    out.push(plan.project(row, cx));
                    if out.len() == plan.limit {
                        // No cursor when the rows read already show that none is left (a
                        // trace, read whole, of exactly `limit` spans is not read again for
                        // an empty page).
                        let more = !last_object
                            || !scan.done
                            || rows.any(|r| {
                                let r = row_json(r, plan.kind);
                                r.as_object().is_some_and(|m| plan.keep(m, cx))
                            });
                        let c = Cursor {
                            version,
                            object: i,
                            after: row_id,
                            key: None,
                        };
                        return Ok((out, more.then_some(c)));
                    }
                }
            }
        }
        Ok((out, None))
    }

    /// Sorted spans: the best `limit` rows after the cursor, kept while reading (through the
    /// value index when the sort allows and no other index narrows the read).
    async fn sorted_spans(
        &self,
        plan: &Plan,
        passes: &[ObjectPass],
        version: XactId,
        cx: &Context,
        started: Instant,
    ) -> Result<(Vec<Value>, Option<Cursor>)> {
        let mut best: Vec<Ranked> = Vec::new();
        for (i, pass) in passes.iter().enumerate() {
            let mut accept = |row: StoredRow| -> Option<Ranked> {
                let row_id = row.row_id.clone();
                let row = row_json(row, plan.kind);
                let key = plan.key(row.as_object().filter(|m| plan.keep(m, cx))?, cx);
                plan.after_cursor(&key, i, &row_id)
                    .then_some((key, i, row_id, row))
            };
            let mut scan = self
                .scan_for(plan, pass, version, started, cx, false)
                .await?;
            if scan.reads_all()
                && let Some(found) = self
                    .indexed_sort(
                        plan,
                        pass,
                        i,
                        version,
                        started,
                        Among::Spans,
                        &best,
                        cx,
                        &mut accept,
                    )
                    .await?
            {
                best = found;
                continue;
            }
            while let Some(page) = scan.next().await? {
                for row in page {
                    best.extend(accept(row));
                    trim(plan, &mut best, plan.limit + 1);
                }
            }
        }
        let (rows, cursor) = page_of(plan, best, version);
        Ok((
            rows.into_iter().map(|r| plan.project(r, cx)).collect(),
            cursor,
        ))
    }

    /// Every span of one trace at the snapshot.
    pub(crate) async fn trace_spans(
        &self,
        pass: &ObjectPass,
        version: XactId,
        root: &str,
        started: Instant,
    ) -> Result<Vec<StoredRow>> {
        let read = self.trace_read(pass, version, root, started).await?;
        Ok(spans_of(read.rows, root))
    }

    /// The store's whole read of one trace at the snapshot (see
    /// [`holdfast_store::TraceRead`]); [`spans_of`] its rows are the trace's spans.
    pub(crate) async fn trace_read(
        &self,
        pass: &ObjectPass,
        version: XactId,
        root: &str,
        started: Instant,
    ) -> Result<holdfast_store::TraceRead> {
        self.check_query_time(started)?;
        Ok(self.store.read_whole_trace(pass, root, version).await?)
    }

    /// What the traces or summary shape shows for trace `root`: a long trace's summary row is
    /// kept between reads (see `kept_traces`).
    async fn read_shaped_trace(
        &self,
        plan: &Plan,
        pass: &ObjectPass,
        version: XactId,
        root: &str,
        cx: &Context,
        started: Instant,
    ) -> Result<Vec<Value>> {
        if plan.shape != Shape::Summary {
            let spans = self.trace_spans(pass, version, root, started).await?;
            return Ok(self.shape_trace(plan, spans, cx));
        }
        let summary = self
            .kept_trace("summary", pass, root, version, started, |rows| {
                let row = summary_row(rows);
                let bytes = value_bytes(&row);
                (row, bytes)
            })
            .await?;
        Ok(vec![plan.project(Value::clone(&summary), cx)])
    }

    /// What the traces or summary shape shows for one trace.
    fn shape_trace(&self, plan: &Plan, spans: Vec<StoredRow>, cx: &Context) -> Vec<Value> {
        let rows: Vec<Value> = spans.into_iter().map(|r| row_json(r, plan.kind)).collect();
        match plan.shape {
            Shape::Summary => vec![plan.project(summary_row(&rows), cx)],
            _ => rows.into_iter().map(|r| plan.project(r, cx)).collect(),
        }
    }

    /// Unsorted traces, in the order of each trace's first matching span.
    async fn traces(
        &self,
        plan: &Plan,
        passes: &[ObjectPass],
        version: XactId,
        cx: &Context,
        started: Instant,
    ) -> Result<(Vec<Value>, Option<Cursor>)> {
        let first = plan.cursor.as_ref().map_or(0, |c| c.object);
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut emitted = 0;
        for (i, pass) in passes.iter().enumerate().skip(first) {
            let mut scan = self
                .scan_for(plan, pass, version, started, cx, true)
                .await?;
            let resumed = plan.cursor.as_ref().filter(|_| i == first);
            if let Some(c) = resumed {
                scan.after = Some(c.after.clone());
            }
            while let Some(page) = scan.next().await? {
                for row in page {
                    let Some(root) = row
                        .data
                        .get("root_span_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                    else {
                        continue;
                    };
                    if seen.contains(&root) {
                        continue;
                    }
                    let row_id = row.row_id.clone();
                    let shown = row_json(row, plan.kind);
                    if !shown.as_object().is_some_and(|m| plan.keep(m, cx)) {
                        continue;
                    }
                    match resumed {
                        Some(c) => {
                            let spans = self.trace_spans(pass, version, &root, started).await?;
                            // Shown on an earlier page when a span at or before the cursor
                            // matches.
                            let shown = spans.iter().any(|s| {
                                s.row_id <= c.after && {
                                    let r = row_json(s.clone(), plan.kind);
                                    r.as_object().is_some_and(|m| plan.keep(m, cx))
                                }
                            });
                            seen.insert(root);
                            if shown {
                                continue;
                            }
                            out.extend(self.shape_trace(plan, spans, cx));
                        }
                        None => {
                            out.extend(
                                self.read_shaped_trace(plan, pass, version, &root, cx, started)
                                    .await?,
                            );
                            seen.insert(root);
                        }
                    }
                    emitted += 1;
                    if emitted == plan.limit {
                        let c = Cursor {
                            version,
                            object: i,
                            after: row_id,
                            key: None,
                        };
                        return Ok((out, Some(c)));
                    }
                }
            }
        }
        Ok((out, None))
    }

    /// Sorted traces or summaries: ordered by their root span's sort key.
    async fn sorted_traces(
        &self,
        plan: &Plan,
        passes: &[ObjectPass],
        version: XactId,
        cx: &Context,
        started: Instant,
    ) -> Result<(Vec<Value>, Option<Cursor>)> {
        let mut best: Vec<Ranked> = Vec::new();
        for (i, pass) in passes.iter().enumerate() {
            // With a filter, first the traces that have a matching span. A matching span
            // that is its trace's root is a candidate at once (while few traces match), so
            // its trace need not be read to find the root.
            let mut direct: HashMap<String, Option<Ranked>> = HashMap::new();
            let failed = self
                .failed_traces(plan, pass, version, started, cx, INDEXED_TRACES)
                .await?;
            let matched = match (&plan.filter, failed) {
                (None, _) => None,
                (Some(_), Some(set)) => Some(set),
                (Some(_), None) => {
                    let mut set = HashSet::new();
                    let mut scan = self
                        .scan_for(plan, pass, version, started, cx, true)
                        .await?;
                    while let Some(page) = scan.next().await? {
                        for row in page {
                            let root = row
                                .data
                                .get("root_span_id")
                                .and_then(Value::as_str)
                                .map(str::to_owned);
                            let row_id = row.row_id.clone();
                            let shown = row_json(row, plan.kind);
                            if let Some(root) = root
                                && let Some(m) = shown.as_object().filter(|m| plan.keep(m, cx))
                            {
                                if m.get("is_root") == Some(&Value::Bool(true))
                                    && direct.len() < FEW_TRACES
                                {
                                    let key = plan.key(m, cx);
                                    let ranked = plan
                                        .after_cursor(&key, i, &row_id)
                                        .then(|| (key, i, row_id, json!(root)));
                                    direct.insert(root.clone(), ranked);
                                }
                                set.insert(root);
                                if set.len() > MAX_MATCHED_TRACES {
                                    return Err(ServiceError::bad(format!(
                                        "the filter matches more than {MAX_MATCHED_TRACES} \
                                         traces; narrow it to sort them"
                                    )));
                                }
                            }
                        }
                    }
                    Some(set)
                }
            };
            // A root span of a matched trace becomes a candidate keyed by its sort key.
            let mut accept = |span: StoredRow| -> Option<Ranked> {
                let row_id = span.row_id.clone();
                let shown = row_json(span, plan.kind);
                let m = shown.as_object()?;
                if m.get("is_root") != Some(&Value::Bool(true)) {
                    return None;
                }
                let root = m.get("root_span_id").and_then(Value::as_str)?;
                if matched.as_ref().is_some_and(|s| !s.contains(root)) {
                    return None;
                }
                let key = plan.key(m, cx);
                plan.after_cursor(&key, i, &row_id)
                    .then(|| (key, i, row_id, json!(root)))
            };
            // A few matched traces: their roots are found through the value index (or read
            // trace by trace), not by a scan. Else (or when the index cannot list them) the
            // object's roots are read in the sort's order until the page is full.
            if let Some(set) = matched.as_ref().filter(|s| s.len() <= INDEXED_TRACES) {
                let mut roots: Vec<&String> = set.iter().collect();
                roots.sort();
                // Traces whose root matched are placed already; the rest are still to place.
                let mut placed = best.clone();
                roots.retain(|r| match direct.remove(r.as_str()) {
                    Some(ranked) => {
                        placed.extend(ranked);
                        trim(plan, &mut placed, plan.limit + 1);
                        false
                    }
                    None => true,
                });
                let listed = if roots.len() > FEW_TRACE_READS {
                    self.root_rows(pass, &roots, version).await?
                } else {
                    None
                };
                if let Some(listed) = listed {
                    let ids = &listed.ids;
                    // Rows the index could not place may be of any trace: only those of
                    // the traces still to place (a root taken above is not taken again).
                    let unplaced: HashSet<&str> = roots.iter().map(|r| r.as_str()).collect();
                    let mut accept_unplaced = |span: StoredRow| {
                        let trace = span.data.get("root_span_id").and_then(Value::as_str);
                        if trace.is_some_and(|t| unplaced.contains(t)) {
                            accept(span)
                        } else {
                            None
                        }
                    };
                    // Through the sort's index, reading only the listed roots that can
                    // enter the page; else each listed root, while they are few.
                    let only: HashSet<&str> = ids.iter().map(String::as_str).collect();
                    if let Some(found) = self
                        .indexed_sort(
                            plan,
                            pass,
                            i,
                            version,
                            started,
                            Among::RootsOf(&only, Some(&listed)),
                            &placed,
                            cx,
                            &mut accept_unplaced,
                        )
                        .await?
                    {
                        best = found;
                        continue;
                    }
                    if roots.len() <= FEW_TRACES {
                        best = placed;
                        for chunk in ids.chunks(1000) {
                            self.check_query_time(started)?;
                            let read = self.store.read_row_ids(pass, chunk, Some(version)).await?;
                            for span in read {
                                best.extend(accept_unplaced(span));
                            }
                            trim(plan, &mut best, plan.limit + 1);
                        }
                        continue;
                    }
                } else if roots.len() <= FEW_TRACES {
                    best = placed;
                    for root in roots {
                        for span in self.trace_spans(pass, version, root, started).await? {
                            best.extend(accept(span));
                            trim(plan, &mut best, plan.limit + 1);
                        }
                    }
                    continue;
                }
            }
            if let Some(found) = self
                .indexed_sort(
                    plan,
                    pass,
                    i,
                    version,
                    started,
                    Among::Roots,
                    &best,
                    cx,
                    &mut accept,
                )
                .await?
            {
                best = found;
                continue;
            }
            let mut scan = Scan::new(self, pass, version, started);
            while let Some(page) = scan.next().await? {
                for row in page {
                    best.extend(accept(row));
                    trim(plan, &mut best, plan.limit + 1);
                }
            }
        }
        best.sort_by(|a, b| rank_cmp(plan, a, b));
        let roots: Vec<(usize, String)> = best
            .iter()
            .take(plan.limit)
            .filter_map(|(_, i, _, r)| Some((*i, r.as_str()?.to_owned())))
            .collect();
        let (_, cursor) = page_of(plan, best, version);
        let mut out = Vec::new();
        for (i, root) in roots {
            if let Some(pass) = passes.get(i) {
                out.extend(
                    self.read_shaped_trace(plan, pass, version, &root, cx, started)
                        .await?,
                );
            }
        }
        Ok((out, cursor))
    }

    /// Dimensions and measures: counted from the value index when it can answer (see
    /// `counts`), else one pass over the rows, one accumulator per group and aggregate.
    async fn grouped(
        &self,
        plan: &Plan,
        passes: &[ObjectPass],
        version: XactId,
        latest: bool,
        cx: &Context,
        started: Instant,
    ) -> Result<Vec<Value>> {
        let aggs: Vec<Vec<Expr>> = plan.measures.iter().map(|(_, e)| e.aggregates()).collect();
        let indexed = if latest {
            self.indexed_counts(plan, passes, cx, started).await?
        } else {
            None
        };
        let counter = match indexed {
            Some(_) => &self.grouped_queries.indexed,
            None => &self.grouped_queries.read,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut groups: Groups = match indexed {
            // Every aggregate counts every row (see `counts`).
            Some(counts) => counts
                .into_iter()
                .map(|(id, (dims, n))| {
                    let n = u64::try_from(n).unwrap_or(0);
                    let accs = aggs
                        .iter()
                        .map(|list| list.iter().map(|_| Accumulator::Count(n)).collect())
                        .collect();
                    (id, (dims, accs))
                })
                .collect(),
            None => {
                self.scanned_groups(plan, passes, version, cx, started, &aggs)
                    .await?
            }
        };
        // Aggregates without dimensions answer one row even over no rows, as in SQL.
        if groups.is_empty() && plan.dimensions.is_empty() {
            groups.insert(String::new(), (Vec::new(), fresh(&aggs)));
        }
        let empty = Map::new();
        let mut rows: Vec<Map<String, Value>> = Vec::new();
        for (_, (dims, accs)) in groups {
            let mut out = Map::new();
            for ((alias, _), v) in plan.dimensions.iter().zip(dims) {
                out.insert(alias.clone(), v);
            }
            for ((alias, e), (list, accs)) in plan.measures.iter().zip(aggs.iter().zip(accs)) {
                let values: Vec<(Expr, Value)> = list
                    .iter()
                    .cloned()
                    .zip(accs.into_iter().map(Accumulator::finish))
                    .collect();
                let filled = e.rewrite(&|x: &Expr| {
                    values
                        .iter()
                        .find(|(a, _)| a == x)
                        .map(|(_, v)| Expr::Lit(v.clone()))
                });
                out.insert(alias.clone(), filled.eval(&empty, cx));
            }
            if plan
                .having
                .as_ref()
                .is_none_or(|h| truthy(&h.eval(&out, cx)))
            {
                rows.push(out);
            }
        }
        // Sorted as asked, then by dimensions, so that the order never depends on hashing.
        let dim_key = |r: &Map<String, Value>| -> Vec<Value> {
            plan.dimensions
                .iter()
                .map(|(a, _)| r.get(a).cloned().unwrap_or(Value::Null))
                .collect()
        };
        rows.sort_by(|a, b| {
            plan.cmp_keys(&plan.key(a, cx), &plan.key(b, cx))
                .then_with(|| {
                    dim_key(a)
                        .iter()
                        .zip(dim_key(b).iter())
                        .map(|(x, y)| sort_cmp(x, y))
                        .find(|o| *o != Ordering::Equal)
                        .unwrap_or(Ordering::Equal)
                })
        });
        rows.truncate(plan.limit);
        Ok(rows.into_iter().map(Value::Object).collect())
    }

    /// A grouped query's groups, from every row its filter keeps.
    async fn scanned_groups(
        &self,
        plan: &Plan,
        passes: &[ObjectPass],
        version: XactId,
        cx: &Context,
        started: Instant,
        aggs: &[Vec<Expr>],
    ) -> Result<Groups> {
        let mut groups: Groups = HashMap::new();
        let mut kept = 0usize;
        for pass in passes {
            let mut scan = self
                .scan_for(plan, pass, version, started, cx, true)
                .await?;
            while let Some(page) = scan.next().await? {
                for row in page {
                    let shown = row_json(row, plan.kind);
                    let Some(m) = shown.as_object().filter(|m| plan.keep(m, cx)) else {
                        continue;
                    };
                    let dims: Vec<Value> =
                        plan.dimensions.iter().map(|(_, e)| e.eval(m, cx)).collect();
                    let id = Value::Array(dims.clone()).to_string();
                    if !groups.contains_key(&id) && groups.len() >= MAX_GROUPS {
                        return Err(too_many_groups());
                    }
                    let entry = groups.entry(id).or_insert_with(|| (dims, fresh(aggs)));
                    for (accs, list) in entry.1.iter_mut().zip(aggs) {
                        for (acc, e) in accs.iter_mut().zip(list) {
                            kept += acc.add(e, m, cx);
                        }
                    }
                    if kept > MAX_AGGREGATE_VALUES {
                        return Err(ServiceError::bad(format!(
                            "count(DISTINCT) and percentile would keep more than \
                             {MAX_AGGREGATE_VALUES} values; filter first"
                        )));
                    }
                }
            }
        }
        Ok(groups)
    }
}

/// Fresh accumulators for a group: one per aggregate of each measure.
fn fresh(aggs: &[Vec<Expr>]) -> Vec<Vec<Accumulator>> {
    aggs.iter()
        .map(|list| list.iter().map(Accumulator::new).collect())
        .collect()
}

/// The refusal of a query that makes more than [`MAX_GROUPS`] groups.
fn too_many_groups() -> ServiceError {
    ServiceError::bad(format!(
        "the query makes more than {MAX_GROUPS} groups; group by fewer distinct values or \
         filter first"
    ))
}

fn rank_cmp(plan: &Plan, a: &Ranked, b: &Ranked) -> Ordering {
    plan.cmp_keys(&a.0, &b.0)
        .then(a.1.cmp(&b.1))
        .then_with(|| a.2.cmp(&b.2))
}

/// Keeps the best `keep` candidates once twice as many have gathered: O(n log k) in all.
fn trim(plan: &Plan, best: &mut Vec<Ranked>, keep: usize) {
    if best.len() >= keep.saturating_mul(2).max(64) {
        best.sort_by(|a, b| rank_cmp(plan, a, b));
        best.truncate(keep);
    }
}

/// The first `limit` candidates, and a cursor when more follow.
fn page_of(plan: &Plan, mut best: Vec<Ranked>, version: XactId) -> (Vec<Value>, Option<Cursor>) {
    best.sort_by(|a, b| rank_cmp(plan, a, b));
    let more = best.len() > plan.limit;
    best.truncate(plan.limit);
    let cursor = match best.last() {
        Some((key, object, row_id, _)) if more => Some(Cursor {
            version,
            object: *object,
            after: row_id.clone(),
            key: Some(key.clone()),
        }),
        _ => None,
    };
    (best.into_iter().map(|(_, _, _, r)| r).collect(), cursor)
}

/// The estimated USD cost of one span's LLM call: its `metadata.model` priced by
/// [`holdfast_core::pricing`] with its token metrics. None for an unknown model or a span
/// without token counts.
fn span_cost(span: &Value, metrics: &Map<String, Value>) -> Option<f64> {
    let model = span.get("metadata")?.get("model")?.as_str()?;
    let count = |k: &str| metrics.get(k).and_then(Value::as_f64);
    let (prompt, completion) = (count("prompt_tokens"), count("completion_tokens"));
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    let tokens = pricing::Tokens {
        prompt: prompt.unwrap_or(0.0),
        cached: count("prompt_cached_tokens").unwrap_or(0.0),
        cache_write: count("prompt_cache_creation_tokens").unwrap_or(0.0),
        completion: completion.unwrap_or(0.0),
    };
    pricing::estimated_cost(model, tokens)
}

/// One row per trace: the root span's fields, scores averaged per name over the trace's
/// spans, and metrics: `start`/`end` (earliest and latest of any span), `duration`
/// (seconds), token counts summed over spans, `estimated_cost` (USD, summed over the spans
/// whose model has a known price; absent when none has), `span_count`, `llm_calls`,
/// `error_count`; `tags` of every span, and the newest `_xact_id`.
pub fn summary_row(spans: &[Value]) -> Value {
    let root = spans
        .iter()
        .find(|s| s.get("is_root") == Some(&Value::Bool(true)))
        .or(spans.first())
        .unwrap_or(&Value::Null);
    let mut out = Map::new();
    for f in [
        "id",
        "span_id",
        "root_span_id",
        "created",
        "input",
        "output",
        "expected",
        "metadata",
        "error",
        "span_attributes",
        "project_id",
        "experiment_id",
        "log_id",
        "origin",
    ] {
        if let Some(v) = root.get(f) {
            out.insert(f.into(), v.clone());
        }
    }
    let mut scores: HashMap<String, (f64, u32)> = HashMap::new();
    let (mut start, mut end): (Option<f64>, Option<f64>) = (None, None);
    let mut tokens: HashMap<&str, i64> = HashMap::new();
    let mut cost: Option<f64> = None;
    let (mut llm_calls, mut errors) = (0i64, 0i64);
    // Each distinct tag once, in the order first seen; `seen` holds their JSON text, so that a
    // trace of many distinct tags is not compared pairwise.
    let mut tags: Vec<Value> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut xact = String::new();
    for s in spans {
        if let Some(m) = s.get("scores").and_then(Value::as_object) {
            for (k, v) in m {
                if let Some(x) = v.as_f64() {
                    let e = scores.entry(k.clone()).or_insert((0.0, 0));
                    e.0 += x;
                    e.1 += 1;
                }
            }
        }
        if let Some(m) = s.get("metrics").and_then(Value::as_object) {
            if let Some(x) = m.get("start").and_then(Value::as_f64) {
                start = Some(start.map_or(x, |s| s.min(x)));
            }
            if let Some(x) = m.get("end").and_then(Value::as_f64) {
                end = Some(end.map_or(x, |e| e.max(x)));
            }
            for k in ["prompt_tokens", "completion_tokens", "tokens"] {
                if let Some(n) = m.get(k).and_then(Value::as_i64) {
                    *tokens.entry(k).or_insert(0) += n;
                }
            }
            if let Some(c) = span_cost(s, m) {
                *cost.get_or_insert(0.0) += c;
            }
        }
        if s.get("span_attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            == Some("llm")
        {
            llm_calls += 1;
        }
        if s.get("error").is_some_and(|e| !e.is_null()) {
            errors += 1;
        }
        if let Some(t) = s.get("tags").and_then(Value::as_array) {
            for t in t {
                if seen.insert(t.to_string()) {
                    tags.push(t.clone());
                }
            }
        }
        if let Some(x) = s.get("_xact_id").and_then(Value::as_str)
            && (x.len(), x) > (xact.len(), xact.as_str())
        {
            xact = x.to_owned();
        }
    }
    let mut scores: Vec<(String, (f64, u32))> = scores.into_iter().collect();
    scores.sort_by(|a, b| a.0.cmp(&b.0));
    out.insert(
        "scores".into(),
        Value::Object(
            scores
                .into_iter()
                .map(|(k, (sum, n))| (k, json!(sum / f64::from(n))))
                .collect(),
        ),
    );
    let mut metrics = Map::new();
    if let Some(s) = start {
        metrics.insert("start".into(), json!(s));
    }
    if let Some(e) = end {
        metrics.insert("end".into(), json!(e));
    }
    if let (Some(s), Some(e)) = (start, end) {
        metrics.insert("duration".into(), json!(e - s));
    }
    if !tokens.contains_key("tokens")
        && let (Some(p), Some(c)) = (
            tokens.get("prompt_tokens").copied(),
            tokens.get("completion_tokens").copied(),
        )
    {
        tokens.insert("tokens", p + c);
    }
    for (k, v) in tokens {
        metrics.insert(k.into(), json!(v));
    }
    if let Some(c) = cost {
        metrics.insert("estimated_cost".into(), json!(c));
    }
    metrics.insert("span_count".into(), json!(spans.len()));
    metrics.insert("llm_calls".into(), json!(llm_calls));
    metrics.insert("error_count".into(), json!(errors));
    out.insert("metrics".into(), Value::Object(metrics));
    out.insert("tags".into(), Value::Array(tags));
    out.insert("_xact_id".into(), json!(xact));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_rows_merge_a_trace() {
        let spans = vec![
            json!({"id": "r", "span_id": "r", "root_span_id": "r", "is_root": true,
                   "input": "q", "output": "a", "scores": {"f": 1.0}, "tags": ["x"],
                   "metrics": {"start": 10.0, "end": 12.5}, "_xact_id": "9"}),
            json!({"id": "c", "span_id": "c", "root_span_id": "r", "is_root": false,
                   "span_attributes": {"type": "llm"}, "scores": {"f": 0.0, "g": 0.5},
                   "metrics": {"start": 10.5, "end": 12.0, "prompt_tokens": 7,
                               "completion_tokens": 3}, "error": "boom", "tags": ["x", "y"],
                   "_xact_id": "10"}),
        ];
        let s = summary_row(&spans);
        assert_eq!(s["input"], "q");
        assert_eq!(s["scores"], json!({"f": 0.5, "g": 0.5}));
        assert_eq!(s["metrics"]["duration"], json!(2.5));
        assert_eq!(s["metrics"]["tokens"], json!(10));
        assert_eq!(s["metrics"]["span_count"], json!(2));
        assert_eq!(s["metrics"]["llm_calls"], json!(1));
        assert_eq!(s["metrics"]["error_count"], json!(1));
        assert_eq!(
            s["metrics"].get("estimated_cost"),
            None,
            "no model, no estimate"
        );
        assert_eq!(s["tags"], json!(["x", "y"]));
        assert_eq!(s["_xact_id"], "10");
    }

    #[test]
    fn summary_rows_keep_each_tag_once_in_first_seen_order() {
        let spans: Vec<Value> = (0..3000)
            .map(|i| {
                json!({"id": format!("s{i}"), "is_root": i == 0,
                            "tags": [format!("t{}", i % 1500), "all", 1, {"k": i % 2}]})
            })
            .collect();
        let s = summary_row(&spans);
        let tags = s["tags"].as_array().unwrap();
        assert_eq!(
            tags.len(),
            1500 + 4,
            "1,500 distinct strings, 'all', 1, two objects"
        );
        assert_eq!(
            tags[..5],
            [
                json!("t0"),
                json!("all"),
                json!(1),
                json!({"k": 0}),
                json!("t1")
            ]
        );
        assert_eq!(tags[5], json!({"k": 1}));
        assert_eq!(tags.last(), Some(&json!("t1499")));
    }

    #[test]
    fn summary_rows_estimate_the_cost_of_priced_calls() {
        let span =
            |model: &str, metrics: Value| json!({"metadata": {"model": model}, "metrics": metrics});
        let spans = vec![
            json!({"id": "r", "is_root": true, "metrics": {"start": 1.0, "end": 2.0}}),
            span(
                "gpt-4o-2024-08-06",
                json!({"prompt_tokens": 1000, "completion_tokens": 100}),
            ),
            span(
                "gpt-4o",
                json!({"prompt_tokens": 1000, "prompt_cached_tokens": 1000}),
            ),
            span(
                "my-own-model",
                json!({"prompt_tokens": 5000, "completion_tokens": 5000}),
            ),
            span("gpt-4o", json!({"start": 1.0})),
        ];
        let s = summary_row(&spans);
        let want = (1000.0 * 2.5 + 100.0 * 10.0 + 1000.0 * 1.25) / 1e6;
        let got = s["metrics"]["estimated_cost"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{got} != {want}");
        assert_eq!(
            s["metrics"]["prompt_tokens"],
            json!(7000),
            "unpriced calls still count tokens"
        );
    }
}
