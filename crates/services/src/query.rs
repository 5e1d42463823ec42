//! Reading rows back: object fetch, the BTQL subset the SDKs send, and summaries.
//!
//! BTQL support: `select: [star]`, `from: experiment|dataset|project_logs(id)`, `filter` with
//! `and`, `or`, `not`, `eq`, `ne`, `gt`, `ge`, `lt`, `le`, `isnull`, `isnotnull` over
//! `ident` paths and `literal` values, `limit` and `cursor`, and `version`. A filter on
//! `root_span_id` equality uses the trace index; other filters are evaluated on the rows
//! as they are read. Anything else is refused with a clear 400.
//!
//! Paging: rows come in row-id order; a cursor carries the version the first page was read
//! at and the last row id, so later pages see the same snapshot.

use crate::objects::ListParams;
use crate::{Result, ServiceError, Services};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use holdfast_core::authz::{ObjectPass, Permission, Principal};
use holdfast_core::object::ObjectType;
use holdfast_core::qexpr::{Expr, truthy};
use holdfast_core::summary::{self, Entry};
use holdfast_core::xact::XactId;
use holdfast_store::{ObjectRecord, RowQuery, StoredRow};
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

pub const MAX_FETCH_LIMIT: i64 = 10_000;
pub(crate) const DEFAULT_LIMIT: i64 = 1000;
/// Rows read at once by a read of a whole object (a summary).
const ROWS_PAGE: i64 = 5_000;

/// Where a page ended: the snapshot, the source object (its place in the query's list) and
/// row, and for a sorted query the sort key of that row.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Cursor {
    pub version: XactId,
    pub object: usize,
    pub after: String,
    pub key: Option<Vec<Value>>,
}

pub(crate) fn encode_cursor(c: &Cursor) -> String {
    let mut v = Map::new();
    v.insert("v".into(), json!(c.version.to_string()));
    v.insert("a".into(), json!(c.after));
    if c.object > 0 {
        v.insert("o".into(), json!(c.object));
    }
    if let Some(k) = &c.key {
        v.insert("k".into(), json!(k));
    }
    URL_SAFE_NO_PAD.encode(Value::Object(v).to_string())
}

pub(crate) fn decode_cursor(s: &str) -> Result<Cursor> {
    let bad = || ServiceError::bad("invalid cursor");
    let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let version = v
        .get("v")
        .and_then(Value::as_str)
        .and_then(XactId::parse)
        .ok_or_else(bad)?;
    let after = v
        .get("a")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_owned();
    let object = match v.get("o") {
        None => 0,
        Some(o) => o
            .as_u64()
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(bad)?,
    };
    let key = match v.get("k") {
        None => None,
        Some(Value::Array(k)) => Some(k.clone()),
        Some(_) => return Err(bad()),
    };
    Ok(Cursor {
        version,
        object,
        after,
        key,
    })
}

/// A read request, whatever route it came from.
#[derive(Debug, Clone, Default)]
pub struct FetchRequest {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub version: Option<String>,
    pub(crate) filter: Option<Expr>,
}

impl FetchRequest {
    pub fn from_body(body: &Value) -> Result<Self> {
        let limit = match body.get("limit") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().filter(|n| *n > 0).ok_or_else(|| {
                ServiceError::field("limit", "`limit` must be a positive integer")
            })?),
        };
        let text = |f: &str| -> Result<Option<String>> {
            match body.get(f) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(ServiceError::field(
                    f.to_string(),
                    format!("`{f}` must be a string"),
                )),
            }
        };
        let filter = match body.get("filter") {
            None | Some(Value::Null) => None,
            Some(f) => Some(
                Expr::from_json(f, false)
                    .map_err(|e| ServiceError::field("filter", format!("filter: {e}")))?,
            ),
        };
        Ok(Self {
            limit,
            cursor: text("cursor")?,
            version: text("version")?,
            filter,
        })
    }
}

pub(crate) use holdfast_core::merge::only_discussion;

/// The one literal argument of a query's source: the id in `dataset('<id>')`.
pub(crate) fn from_argument(query: &Value) -> Result<&str> {
    query
        .get("from")
        .and_then(|f| f.get("args"))
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|a| a.get("value"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ServiceError::field("query.from", "`query.from` needs one literal id argument")
        })
}

/// The shape of a row as the SDKs read it.
pub fn row_json(row: StoredRow, kind: ObjectType) -> Value {
    let mut m = row.data;
    m.insert("_xact_id".into(), json!(row.xact_id.to_string()));
    if m.contains_key("span_id") {
        let is_root = holdfast_core::merge::is_root_span(&m);
        m.insert("is_root".into(), json!(is_root));
    }
    if kind == ObjectType::Dataset {
        for f in ["input", "expected", "metadata", "tags"] {
            m.entry(f).or_insert(Value::Null);
        }
    }
    Value::Object(m)
}

impl Services {
    /// Reads one page of an object's rows; returns (rows, next cursor).
    pub async fn fetch(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
        req: &FetchRequest,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let (_, pass) = self
            .object_pass(principal, kind, id, Permission::Read)
            .await?;
        self.fetch_with(&pass, req).await
    }

    async fn fetch_with(
        &self,
        pass: &ObjectPass,
        req: &FetchRequest,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let limit = req.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_FETCH_LIMIT);
        let (version, mut after) = match &req.cursor {
            Some(c) => {
                let c = decode_cursor(c)?;
                (c.version, Some(c.after))
            }
            None => match &req.version {
                Some(v) => (
                    XactId::parse(v)
                        .ok_or_else(|| ServiceError::bad(format!("invalid version {v:?}")))?,
                    None,
                ),
                None => match self.store.current_xact().await? {
                    Some(x) => (x, None),
                    None => return Ok((Vec::new(), None)),
                },
            },
        };
        let root_span_id = req
            .filter
            .as_ref()
            .and_then(|f| f.equality_on("root_span_id"));
        let cx = self.query_context();
        let mut out = Vec::new();
        let started = std::time::Instant::now();
        loop {
            if started.elapsed() > self.limits.query_timeout {
                return Err(ServiceError::QueryTimeout(format!(
                    "the query read for longer than the limit of {} ms without filling a \
                     page; narrow its filter",
                    self.limits.query_timeout.as_millis()
                )));
            }
            let q = RowQuery {
                as_of: Some(version),
                after_row_id: after.clone(),
                root_span_id: root_span_id.clone(),
                limit,
            };
            let page = self.store.read_rows(pass, &q).await?;
            let exhausted = (page.len() as i64) < limit;
            for row in page {
                after = Some(row.row_id.clone());
                if only_discussion(&row.data) {
                    continue;
                }
                let row = row_json(row, pass.object_type());
                if req
                    .filter
                    .as_ref()
                    .is_none_or(|f| row.as_object().is_some_and(|m| truthy(&f.eval(m, &cx))))
                {
                    out.push(row);
                    if out.len() as i64 == limit {
                        let next = after.map(|a| {
                            encode_cursor(&Cursor {
                                version,
                                after: a,
                                ..Cursor::default()
                            })
                        });
                        return Ok((out, next));
                    }
                }
            }
            if exhausted {
                return Ok((out, None));
            }
        }
    }

    /// `project_prompts('<project id>')`: the project's prompts as `/v1/prompt` shows them,
    /// or, with `audit_log: true`, the versions of each (oldest first) with `audit_data`
    /// naming what each version was (`upsert`, or `delete`). A filter on `id` reads only
    /// that prompt.
    pub(crate) async fn project_prompts(
        &self,
        principal: &Principal,
        query: &Value,
        body: &Value,
    ) -> Result<Value> {
        let project_id = from_argument(query)?;
        let req = FetchRequest::from_body(query)?;
        let limit = req.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_FETCH_LIMIT);
        let audit_log = match body.get("audit_log") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ServiceError::field("audit_log", "expected a boolean")),
        };
        let project = self.get_project(principal, project_id).await?;
        let wanted = req.filter.as_ref().and_then(|f| f.equality_on("id"));
        let cx = self.query_context();
        if !audit_log {
            let params = ListParams {
                project_id: Some(project.id.clone()),
                ..ListParams::default()
            };
            let prompts = self
                .list_objects(principal, ObjectType::Prompt, &params)
                .await?;
            let policy = self.policy(principal).await?;
            let mut data = Vec::new();
            for o in prompts
                .iter()
                .filter(|o| wanted.as_ref().is_none_or(|w| *w == o.id))
            {
                let pass = self.object_pass_for(principal, &policy, o, Permission::Read)?;
                let row = self.prompt_json(o, &pass, None).await?;
                if let (Some(f), Some(m)) = (&req.filter, row.as_object())
                    && !truthy(&f.eval(m, &cx))
                {
                    continue;
                }
                data.push(row);
            }
            return Ok(json!({"data": data, "cursor": null}));
        }
        let Some(wanted) = wanted else {
            return Err(ServiceError::field(
                "query.filter",
                "`audit_log: true` on project_prompts needs a filter `id = '<prompt id>'`",
            ));
        };
        let (prompt, pass) = self
            .open_prompt(principal, &wanted, Permission::Read)
            .await?;
        if prompt.project_id != project.id {
            return Err(ServiceError::NotFound("prompt".into()));
        }
        let after = match &req.cursor {
            Some(c) => Some(XactId::parse(c).ok_or_else(|| {
                ServiceError::field("query.cursor", format!("invalid cursor {c:?}"))
            })?),
            None => None,
        };
        let versions = self.store.row_versions(&pass, after, limit).await?;
        let cursor = match versions.last() {
            Some((_, x, _)) if versions.len() as i64 == limit => Some(x.to_string()),
            _ => None,
        };
        let data: Vec<Value> = versions
            .into_iter()
            .map(|(_, xact, deleted)| {
                json!({
                    "id": prompt.id,
                    "_xact_id": xact.to_string(),
                    "project_id": prompt.project_id,
                    "slug": prompt.name,
                    "audit_data": {"action": if deleted { "delete" } else { "upsert" }},
                })
            })
            .collect();
        Ok(json!({"data": data, "cursor": cursor}))
    }

    /// Visits every live row of an object, read in pages of [`ROWS_PAGE`] as of one
    /// snapshot; no row is held past its page, so memory is bounded by a page whatever the
    /// object's size, and time by the per-query limit. Returns the object's record.
    async fn each_row(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
        mut visit: impl FnMut(&Map<String, Value>),
    ) -> Result<Option<ObjectRecord>> {
        let (object, pass) = self
            .object_pass(principal, kind, id, Permission::Read)
            .await?;
        let Some(as_of) = self.store.current_xact().await? else {
            return Ok(object);
        };
        let mut q = RowQuery {
            as_of: Some(as_of),
            limit: ROWS_PAGE,
            ..RowQuery::default()
        };
        let started = std::time::Instant::now();
        loop {
            self.check_query_time(started)?;
            let page = self.store.read_rows(&pass, &q).await?;
            for row in &page {
                visit(&row.data);
            }
            if (page.len() as i64) < ROWS_PAGE {
                return Ok(object);
            }
            q.after_row_id = page.last().map(|r| r.row_id.clone());
        }
    }

    /// An experiment's rows summed up per trace (see [`summary::Traces`]).
    async fn experiment_traces(&self, principal: &Principal, id: &str) -> Result<summary::Traces> {
        let mut traces = summary::Traces::default();
        self.each_row(principal, ObjectType::Experiment, id, |r| traces.add(r))
            .await?;
        Ok(traces)
    }

    /// An experiment's rows summed up per trace, with each row's trace while they fit in
    /// [`SUMMED_BYTES_EACH`] (past it the map is dropped, so it stays bounded whatever the
    /// experiment's size).
    async fn experiment_summed(&self, principal: &Principal, id: &str) -> Result<Summed> {
        let mut traces = summary::Traces::default();
        let mut of = Some(HashMap::new());
        let mut bytes = 0;
        self.each_row(principal, ObjectType::Experiment, id, |r| {
            traces.add(r);
            let Some(map) = &mut of else {
                return;
            };
            let (row, root) = (r.get("id"), r.get("root_span_id"));
            match (row.and_then(Value::as_str), root.and_then(Value::as_str)) {
                (Some(row), Some(root)) if bytes <= SUMMED_BYTES_EACH => {
                    bytes += entry_bytes(row, root);
                    map.insert(row.to_owned(), root.to_owned());
                }
                _ => of = None,
            }
        })
        .await?;
        Ok(Summed::new(traces, of))
    }

    /// `was`, an experiment's rows summed up as of transaction `at`, brought up to date by
    /// reading again only the traces that the rows changed since were in or are in now;
    /// `None` when more rows changed than [`changed_rows_limit`] allows or a changed row
    /// has no root span id. Read at a snapshot at or after the newest version read before,
    /// as [`Services::experiment_scores`] needs.
    async fn summed_since(
        &self,
        principal: &Principal,
        id: &str,
        at: XactId,
        was: &Summed,
    ) -> Result<Option<Summed>> {
        let Some(of) = &was.of else {
            return Ok(None);
        };
        let pass = self.experiment_pass(principal, id).await?;
        let max = changed_rows_limit(of.len());
        let Some((changed, mut roots, as_of)) = self.changed_in(&pass, at, max).await? else {
            return Ok(None);
        };
        roots.extend(changed.iter().filter_map(|r| of.get(r)).cloned());
        // At most as many rows as the experiment had plus the most that may change: past
        // that the whole read (a page at a time) costs less and holds less.
        let mut left = of.len().saturating_add(max);
        let mut traces = was.traces.clone();
        let mut of = of.clone();
        of.retain(|_, root| !roots.contains(root));
        for root in roots {
            traces.remove(&root);
            let q = RowQuery {
                as_of: Some(as_of),
                root_span_id: Some(root.clone()),
                limit: i64::try_from(left.saturating_add(1)).unwrap_or(i64::MAX),
                ..RowQuery::default()
            };
            let rows = self.store.read_rows(&pass, &q).await?;
            left = match left.checked_sub(rows.len()) {
                Some(n) => n,
                None => return Ok(None),
            };
            for row in rows {
                if row.data.get("root_span_id").and_then(Value::as_str) == Some(&root) {
                    traces.add(&row.data);
                    of.insert(row.row_id, root.clone());
                }
            }
        }
        Ok(Some(Summed::new(traces, Some(of))))
    }

    /// The experiment to compare with: the one asked for, else the experiment's base, else
    /// the newest earlier experiment of the same project.
    pub async fn comparison_experiment(
        &self,
        principal: &Principal,
        experiment: &ObjectRecord,
        requested: Option<&str>,
    ) -> Result<Option<ObjectRecord>> {
        if let Some(id) = requested {
            return Ok(Some(
                self.get_object(principal, ObjectType::Experiment, id)
                    .await?,
            ));
        }
        if let Some(id) = experiment.info.get("base_exp_id").and_then(Value::as_str) {
            return match self.get_object(principal, ObjectType::Experiment, id).await {
                Ok(o) => Ok(Some(o)),
                Err(ServiceError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            };
        }
        let params = crate::objects::ListParams {
            project_id: Some(experiment.project_id.clone()),
            ..Default::default()
        };
        let earlier = self
            .list_objects(principal, ObjectType::Experiment, &params)
            .await?
            .into_iter()
            .find(|e| e.id != experiment.id && e.created <= experiment.created);
        Ok(earlier)
    }

    /// The score summary of an experiment on its own (the scores of [`Services::compare`]
    /// without a base), kept while no row of the experiment changes: the experiments page
    /// summarizes up to 30 experiments, and an experiment seldom changes once its `Eval` has
    /// finished. With it are kept the experiment's rows summed up per trace, so that after a
    /// change of few rows only the traces they were or are in are read again (see
    /// [`Services::summed_since`]). The experiment's newest version is read before its rows,
    /// so a summary is never kept under a newer version than the rows it was made from.
    pub async fn experiment_scores(
        &self,
        principal: &Principal,
        experiment: &ObjectRecord,
    ) -> Result<Value> {
        let pass = self.experiment_pass(principal, &experiment.id).await?;
        let Some(newest) = self.store.newest_xact(&pass).await? else {
            let traces = self.experiment_traces(principal, &experiment.id).await?;
            return Ok(summary_entries(&traces.summary()).0);
        };
        let kept = &self.score_summaries;
        let mut summed = None;
        if let Some(was) = kept.get(&experiment.id) {
            if was.newest == newest {
                kept.count("hit");
                return Ok(was.scores);
            }
            if let Some(sums) = was.summed.filter(|_| was.newest < newest) {
                summed = self
                    .summed_since(principal, &experiment.id, was.newest, &sums)
                    .await?;
            }
        }
        if summed.is_none()
            && let Some((at, scores)) = self.store.kept_scores(&pass).await?
            && at == newest
        {
            // Made before a restart, or by another replica.
            kept.count("stored");
            kept.keep(&experiment.id, newest, scores.clone(), None);
            return Ok(scores);
        }
        let summed = match summed {
            Some(s) => {
                kept.count("updated");
                s
            }
            None => {
                kept.count("miss");
                self.experiment_summed(principal, &experiment.id).await?
            }
        };
        let (scores, _) = summary_entries(&summed.traces.summary());
        let sums = summed.of.is_some().then(|| Arc::new(summed));
        self.keep_scores(&pass, newest, &scores, sums).await;
        Ok(scores)
    }

    /// Keeps an experiment's score summary, made from its rows whose newest version was
    /// `newest`, in memory (with `sums`) and in the store: a failure there costs only a later
    /// read.
    async fn keep_scores(
        &self,
        pass: &ObjectPass,
        newest: XactId,
        scores: &Value,
        sums: Option<Arc<Summed>>,
    ) {
        let id = pass.object_id();
        self.score_summaries.keep(id, newest, scores.clone(), sums);
        if let Err(e) = self.store.keep_scores(pass, newest, scores).await {
            tracing::warn!(error = %e, experiment = %id, "keeping a score summary failed");
        }
    }

    /// The newest version of any row of an experiment the principal may read (`None` while
    /// it has no rows): what is derived from its rows may be kept under it, and stays right
    /// while it is unchanged. Read it before the rows.
    pub async fn newest_version(
        &self,
        principal: &Principal,
        experiment_id: &str,
    ) -> Result<Option<XactId>> {
        let pass = self.experiment_pass(principal, experiment_id).await?;
        Ok(self.store.newest_xact(&pass).await?)
    }

    /// The principal's pass to read an experiment's rows.
    async fn experiment_pass(
        &self,
        principal: &Principal,
        experiment_id: &str,
    ) -> Result<ObjectPass> {
        let (_, pass) = self
            .object_pass(
                principal,
                ObjectType::Experiment,
                experiment_id,
                Permission::Read,
            )
            .await?;
        Ok(pass)
    }

    /// The rows of an experiment the principal may read with a version after `since`
    /// (deleted ones too), sorted by id, and the traces (root span ids) those still live are
    /// in now; `None` when more than `max` changed or a changed row has no root span id. It
    /// costs what the experiment holds (see [`holdfast_store::Store::object_rows_changed`]).
    /// With [`Services::newest_version`], what brings something derived from the rows as of
    /// `since` up to date: the traces to read again are these and those the rows were in.
    pub async fn changed_traces(
        &self,
        principal: &Principal,
        experiment_id: &str,
        since: XactId,
        max: usize,
    ) -> Result<Option<(Vec<String>, BTreeSet<String>)>> {
        let pass = self.experiment_pass(principal, experiment_id).await?;
        let changed = self.changed_in(&pass, since, max).await?;
        Ok(changed.map(|(rows, roots, _)| (rows, roots)))
    }

    /// [`Services::changed_traces`] in `pass`'s object, and the snapshot the rows were read
    /// at (at or after every version listed).
    async fn changed_in(
        &self,
        pass: &ObjectPass,
        since: XactId,
        max: usize,
    ) -> Result<Option<(Vec<String>, BTreeSet<String>, XactId)>> {
        let Some(changed) = self.store.object_rows_changed(pass, since, max).await? else {
            return Ok(None);
        };
        let Some(as_of) = self.store.current_xact().await? else {
            return Ok(None);
        };
        let mut roots = BTreeSet::new();
        for row in self.store.read_row_ids(pass, &changed, Some(as_of)).await? {
            match row.data.get("root_span_id").and_then(Value::as_str) {
                Some(root) => roots.insert(root.to_owned()),
                None => return Ok(None),
            };
        }
        Ok(Some((changed, roots, as_of)))
    }

    /// `{scores, metrics}` in the SDKs' strict entry shapes.
    pub async fn compare(
        &self,
        principal: &Principal,
        experiment: &ObjectRecord,
        base: Option<&ObjectRecord>,
    ) -> Result<(Value, Value)> {
        let pass = self.experiment_pass(principal, &experiment.id).await?;
        let newest = self.store.newest_xact(&pass).await?;
        let current = self.experiment_traces(principal, &experiment.id).await?;
        // The experiment's own summary, as the experiments page makes it: the SDKs
        // summarize at the end of each `Eval`, so the page need not read it again.
        if let Some(n) = newest
            && self
                .score_summaries
                .get(&experiment.id)
                .is_none_or(|k| k.newest != n)
        {
            let (scores, _) = summary_entries(&current.summary());
            self.keep_scores(&pass, n, &scores, None).await;
        }
        let base = match base {
            Some(b) => Some(self.experiment_traces(principal, &b.id).await?),
            None => None,
        };
        Ok(summary_entries(&summary::summarize_traces(current, base)))
    }

    /// `GET /v1/experiment/{id}/summarize`.
    pub async fn summarize_experiment(
        &self,
        principal: &Principal,
        id: &str,
        summarize_scores: bool,
        comparison_id: Option<&str>,
        base_url: &str,
    ) -> Result<Value> {
        let experiment = self
            .get_object(principal, ObjectType::Experiment, id)
            .await?;
        let project = self.get_project(principal, &experiment.project_id).await?;
        let base = self
            .comparison_experiment(principal, &experiment, comparison_id)
            .await?;
        let mut out = json!({
            "project_name": project.name, "experiment_name": experiment.name,
            "project_url": format!("{base_url}/app/projects/{}", project.id),
            "experiment_url": format!("{base_url}/app/experiments/{}", experiment.id),
            "comparison_experiment_name": base.as_ref().map(|b| b.name.clone()),
        });
        if summarize_scores {
            let (scores, metrics) = self.compare(principal, &experiment, base.as_ref()).await?;
            if let Some(o) = out.as_object_mut() {
                o.insert("scores".into(), scores);
                o.insert("metrics".into(), metrics);
            }
        }
        Ok(out)
    }

    /// `GET /v1/dataset/{id}/summarize`.
    pub async fn summarize_dataset(
        &self,
        principal: &Principal,
        id: &str,
        summarize_data: bool,
        base_url: &str,
    ) -> Result<Value> {
        let mut records = 0u64;
        let dataset = self
            .each_row(principal, ObjectType::Dataset, id, |_| records += 1)
            .await?;
        let dataset = dataset.ok_or_else(|| ServiceError::NotFound("dataset".into()))?;
        let project = self.get_project(principal, &dataset.project_id).await?;
        let mut out = json!({
            "project_name": project.name, "dataset_name": dataset.name,
            "project_url": format!("{base_url}/app/projects/{}", project.id),
            "dataset_url": format!("{base_url}/app/datasets/{}", dataset.id),
            "data_summary": null,
        });
        if summarize_data && let Some(o) = out.as_object_mut() {
            o.insert("data_summary".into(), json!({"total_records": records}));
        }
        Ok(out)
    }

    /// The number of live records in a dataset (`GET /dataset-summary`, the JS SDK's
    /// `dataset.summarize()`).
    pub async fn dataset_total_records(&self, principal: &Principal, id: &str) -> Result<u64> {
        let mut records = 0u64;
        self.each_row(principal, ObjectType::Dataset, id, |_| records += 1)
            .await?
            .ok_or_else(|| ServiceError::NotFound("dataset".into()))?;
        Ok(records)
    }
}

fn metric_value(e: &Entry) -> Value {
    if e.all_integers && e.value.abs() < 9e15 {
        // Integral by the check above; the SDK prints integers without decimals.
        json!(e.value as i64)
    } else {
        json!(e.value)
    }
}

/// Most score summaries [`ScoreSummaries`] keeps; when full it starts again empty.
const SCORE_SUMMARIES_KEPT: usize = 1024;
/// Bytes of experiments summed up per trace that [`ScoreSummaries`] keeps in all, and for one.
const SUMMED_BYTES: usize = 32 << 20;
const SUMMED_BYTES_EACH: usize = 4 << 20;

/// How many of an object's rows, of `rows` rows, may have changed for what was derived from
/// them to be brought up to date trace by trace rather than read whole: one per 8 rows, from
/// 4 to 1,000. The changed rows are read in one call, then each trace they were or are in:
/// on the experiment page about 0.2 ms per changed span against 0.03 ms per span for the
/// whole read, so they cost the same at about one changed span in 6 (measured on
/// experiments of 3-span traces, 3,000 to 12,000 spans). The most bounds the traces read
/// one by one on a large experiment.
pub fn changed_rows_limit(rows: usize) -> usize {
    (rows / 8).clamp(4, 1_000)
}

/// An experiment's rows summed up per trace, with the trace (root span id) of each row by
/// row id; `of` is `None` when a row has no root span id or the map would be too large (then
/// it is not brought up to date trace by trace).
struct Summed {
    traces: summary::Traces,
    of: Option<HashMap<String, String>>,
    /// About how many bytes it holds (counted once, when made).
    bytes: usize,
}

impl Summed {
    fn new(traces: summary::Traces, of: Option<HashMap<String, String>>) -> Summed {
        let map = of.as_ref().map_or(0, |of| {
            of.iter().map(|(row, root)| entry_bytes(row, root)).sum()
        });
        let bytes = traces.bytes() + map;
        Summed { traces, of, bytes }
    }
}

/// About how many bytes one entry of [`Summed`]'s map takes.
fn entry_bytes(row: &str, root: &str) -> usize {
    row.len() + root.len() + 64
}

/// What [`ScoreSummaries`] keeps of one experiment.
#[derive(Clone)]
struct KeptScores {
    /// The newest `_xact_id` of the experiment's rows when it was made.
    newest: XactId,
    scores: Value,
    summed: Option<Arc<Summed>>,
}

/// Experiments' score summaries by experiment id, with their rows summed up per trace
/// within [`SUMMED_BYTES`].
#[derive(Default)]
pub struct ScoreSummaries {
    kept: std::sync::Mutex<KeptSummaries>,
    /// Summaries answered from memory, from the store, brought up to date trace by trace,
    /// and made from every row (see [`ScoreSummaries::lookups`]).
    counts: [std::sync::atomic::AtomicU64; 4],
}

/// The results [`ScoreSummaries::lookups`] counts, in the order of its counts.
const LOOKUP_RESULTS: [&str; 4] = ["hit", "stored", "updated", "miss"];

#[derive(Default)]
struct KeptSummaries {
    by_id: HashMap<String, KeptScores>,
    /// [`Summed::bytes`] of the `summed` kept.
    summed_bytes: usize,
}

impl std::fmt::Debug for ScoreSummaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.lock();
        f.debug_struct("ScoreSummaries")
            .field("experiments", &kept.by_id.len())
            .field("summed_bytes", &kept.summed_bytes)
            .finish()
    }
}

impl ScoreSummaries {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeptSummaries> {
        // Nothing panics while the lock is held but an allocation failure, which aborts.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Score summaries since the start, by how they were answered: from memory (`hit`),
    /// from the store (`stored`), brought up to date trace by trace (`updated`), made from
    /// every row (`miss`).
    pub fn lookups(&self) -> [(&'static str, u64); 4] {
        let mut out = LOOKUP_RESULTS.map(|r| (r, 0));
        for ((_, n), c) in out.iter_mut().zip(&self.counts) {
            *n = c.load(std::sync::atomic::Ordering::Relaxed);
        }
        out
    }

    fn count(&self, result: &str) {
        if let Some(i) = LOOKUP_RESULTS.iter().position(|r| *r == result)
            && let Some(c) = self.counts.get(i)
        {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// What is kept for an experiment.
    fn get(&self, experiment_id: &str) -> Option<KeptScores> {
        self.lock().by_id.get(experiment_id).cloned()
    }

    /// Keeps an experiment's scores, and its rows summed up when they fit: other
    /// experiments' are dropped (their scores stay) to make room.
    fn keep(
        &self,
        experiment_id: &str,
        newest: XactId,
        scores: Value,
        summed: Option<Arc<Summed>>,
    ) {
        let mut kept = self.lock();
        let kept = &mut *kept;
        if kept.by_id.len() >= SCORE_SUMMARIES_KEPT && !kept.by_id.contains_key(experiment_id) {
            kept.by_id.clear();
            kept.summed_bytes = 0;
        }
        if let Some(old) = kept.by_id.remove(experiment_id) {
            kept.summed_bytes -= old.summed.map_or(0, |s| s.bytes);
        }
        let summed = summed.filter(|s| s.bytes <= SUMMED_BYTES_EACH);
        if let Some(s) = &summed {
            let bytes = s.bytes;
            for other in kept.by_id.values_mut() {
                if kept.summed_bytes + bytes <= SUMMED_BYTES {
                    break;
                }
                if let Some(dropped) = other.summed.take() {
                    kept.summed_bytes -= dropped.bytes;
                }
            }
            kept.summed_bytes += bytes;
        }
        let entry = KeptScores {
            newest,
            scores,
            summed,
        };
        kept.by_id.insert(experiment_id.to_owned(), entry);
    }
}

/// A summary's `{scores, metrics}` in the SDKs' strict entry shapes.
pub fn summary_entries(s: &summary::Summary) -> (Value, Value) {
    let scores: Map<String, Value> = s
            .scores
            .iter()
            .map(|(name, e)| {
                (name.clone(), json!({"name": name, "score": e.value, "diff": e.diff, "improvements": e.improvements, "regressions": e.regressions}))
            })
            .collect();
    let metrics: Map<String, Value> = s
            .metrics
            .iter()
            .map(|(name, e)| {
                let unit = if name == "duration" { "s" } else { "tok" };
                (name.clone(), json!({"name": name, "metric": metric_value(e), "unit": unit, "diff": e.diff, "improvements": e.improvements, "regressions": e.regressions}))
            })
            .collect();
    (Value::Object(scores), Value::Object(metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Score summaries keep the experiments' rows summed up within their byte budget: one
    /// over its own limit keeps only its scores, and others' are dropped (their scores
    /// stay) to make room; the bytes counted are those kept.
    #[test]
    fn summed_experiments_stay_within_their_budget() {
        let summed = |bytes: usize| {
            let of = HashMap::from([("r".repeat(bytes), "t".to_owned())]);
            Some(Arc::new(Summed::new(summary::Traces::default(), Some(of))))
        };
        let kept = ScoreSummaries::default();
        let v1 = XactId::from_counter(1).unwrap();
        let counted = |kept: &ScoreSummaries| {
            let k = kept.lock();
            let sum: usize = k
                .by_id
                .values()
                .filter_map(|e| e.summed.as_ref())
                .map(|s| s.bytes)
                .sum();
            (
                k.summed_bytes,
                sum,
                k.by_id.values().filter(|e| e.summed.is_some()).count(),
            )
        };
        kept.keep("huge", v1, json!(1), summed(SUMMED_BYTES_EACH + 1));
        let huge = kept.get("huge").unwrap();
        assert!(huge.summed.is_none() && huge.scores == json!(1));
        let each = 3 << 20;
        for i in 0..11 {
            kept.keep(&format!("e{i}"), v1, json!(i), summed(each));
            kept.keep("e0", v1, json!(0), summed(each));
        }
        let (bytes, sum, n) = counted(&kept);
        assert_eq!(bytes, sum, "the bytes counted are those kept");
        assert!(bytes <= SUMMED_BYTES);
        assert_eq!(n, 10, "one dropped to make room");
        assert_eq!(
            kept.lock().by_id.len(),
            12,
            "every experiment's scores stay"
        );
        assert!(
            kept.get("e10").unwrap().summed.is_some(),
            "the newest is kept"
        );
        assert_eq!(changed_rows_limit(0), 4);
        assert_eq!(changed_rows_limit(3_000), 375);
        assert_eq!(changed_rows_limit(1 << 20), 1_000);
    }

    /// Summary rows (one per trace, as the web UI reads an experiment) give the same score
    /// summary as the experiment's spans.
    #[test]
    fn scores_from_summary_rows_match_scores_from_spans() {
        let spans = |v: Value| -> Vec<Map<String, Value>> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_object().unwrap().clone())
                .collect()
        };
        let current = spans(json!([
            {"id": "r1", "root_span_id": "t1", "span_parents": null, "is_root": true, "input": {"q": 1, "k": [2]}},
            {"id": "s1", "root_span_id": "t1", "span_parents": ["r1"], "scores": {"acc": 1.0, "f": 0.2}},
            {"id": "s2", "root_span_id": "t1", "span_parents": ["r1"], "scores": {"acc": 0.0}},
            {"id": "r2", "root_span_id": "t2", "span_parents": null, "is_root": true, "input": "b", "scores": {"acc": 0.5}},
            {"id": "r3", "root_span_id": "t3", "span_parents": null, "is_root": true, "input": "c"},
            {"id": "s3", "root_span_id": "t3", "span_parents": ["r3"], "scores": {"f": null, "acc": 1.0}},
        ]));
        let base = spans(json!([
            {"id": "b1", "root_span_id": "u1", "span_parents": null, "is_root": true, "input": {"k": [2], "q": 1}, "scores": {"acc": 0.25, "f": 0.9}},
            {"id": "b2", "root_span_id": "u2", "span_parents": null, "is_root": true, "input": "b", "scores": {"acc": 0.5}},
            {"id": "b3", "root_span_id": "u3", "span_parents": null, "is_root": true, "input": "c", "scores": {"acc": 0.0}},
        ]));
        let summaries = |rows: &[Map<String, Value>]| -> Vec<Value> {
            let mut traces: std::collections::BTreeMap<&str, Vec<Value>> = Default::default();
            for r in rows {
                let root = r["root_span_id"].as_str().unwrap();
                traces
                    .entry(root)
                    .or_default()
                    .push(Value::Object(r.clone()));
            }
            traces
                .values()
                .map(|t| crate::btql::summary_row(t))
                .collect()
        };
        let (rows, base_rows) = (summaries(&current), summaries(&base));
        fn maps(v: &[Value]) -> Vec<&Map<String, Value>> {
            v.iter().map(|r| r.as_object().unwrap()).collect()
        }
        let from_rows = summary::summarize_refs(&maps(&rows), Some(&maps(&base_rows)));
        let from_spans = summary::summarize(&current, Some(&base));
        assert_eq!(from_rows.scores, from_spans.scores);
        assert_eq!(from_spans.scores["acc"].improvements, 2);
        assert_eq!(
            summary_entries(&from_rows).0,
            summary_entries(&from_spans).0
        );
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            version: XactId::from_counter(5).unwrap(),
            after: "row-9".into(),
            ..Cursor::default()
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)).unwrap(), c);
        let c = Cursor {
            object: 2,
            key: Some(vec![json!(1.5), Value::Null]),
            ..c
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)).unwrap(), c);
        assert!(decode_cursor("nonsense").is_err());
    }
}
