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
use holdfast_core::btql;
use holdfast_core::object::ObjectType;
use holdfast_core::summary::{self, Entry};
use holdfast_core::xact::XactId;
use holdfast_store::{ObjectRecord, RowQuery, StoredRow};
use serde_json::{Map, Value, json};
use std::cmp::Ordering;

pub const MAX_FETCH_LIMIT: i64 = 10_000;
const DEFAULT_LIMIT: i64 = 1000;

#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    version: XactId,
    after: String,
}

fn encode_cursor(c: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(json!({"v": c.version.to_string(), "a": c.after}).to_string())
}

fn decode_cursor(s: &str) -> Result<Cursor> {
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
    Ok(Cursor { version, after })
}

/// A filter expression of the BTQL subset.
#[derive(Debug, Clone, PartialEq)]
enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cmp(CmpOp, Operand, Operand),
    IsNull(Operand, bool),
    /// The value is one of the listed literals.
    In(Operand, Vec<Value>),
    /// An array holding the value, an object holding it as a value, or a string holding it
    /// as a substring.
    Includes(Operand, Operand),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Ident(Vec<String>),
    Literal(Value),
}

fn parse_operand(v: &Value) -> Result<Operand> {
    match v.get("op").and_then(Value::as_str) {
        Some("ident") => {
            let path = v
                .get("name")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .map(|s| s.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                })
                .filter(|p| !p.is_empty())
                .ok_or_else(|| ServiceError::bad("btql ident needs a `name` array of strings"))?;
            Ok(Operand::Ident(path))
        }
        Some("literal") => Ok(Operand::Literal(
            v.get("value").cloned().unwrap_or(Value::Null),
        )),
        Some(op) => Err(ServiceError::bad(format!(
            "unsupported btql operand {op:?}"
        ))),
        None => Err(ServiceError::bad("btql expression needs an `op`")),
    }
}

fn parse_filter(v: &Value, depth: usize) -> Result<Filter> {
    if depth > 32 {
        return Err(ServiceError::bad("btql filter is nested too deeply"));
    }
    let op = v
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| ServiceError::bad("btql expression needs an `op`"))?;
    let children = |key: &str| -> Result<Vec<Filter>> {
        v.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| ServiceError::bad(format!("btql `{op}` needs `{key}`")))?
            .iter()
            .map(|c| parse_filter(c, depth + 1))
            .collect()
    };
    let side = |key: &str| -> Result<Operand> {
        parse_operand(
            v.get(key)
                .ok_or_else(|| ServiceError::bad(format!("btql `{op}` needs `{key}`")))?,
        )
    };
    Ok(match op {
        "and" => Filter::And(children("children")?),
        "or" => Filter::Or(children("children")?),
        "not" => Filter::Not(Box::new(parse_filter(
            v.get("expr")
                .ok_or_else(|| ServiceError::bad("btql `not` needs `expr`"))?,
            depth + 1,
        )?)),
        "isnull" | "isnotnull" => Filter::IsNull(side("expr")?, op == "isnull"),
        "in" => match side("right")? {
            Operand::Literal(Value::Array(values)) if values.len() <= btql::MAX_IN_VALUES => {
                Filter::In(side("left")?, values)
            }
            _ => {
                return Err(ServiceError::bad(format!(
                    "btql `in` needs a literal array of at most {} values as `right`",
                    btql::MAX_IN_VALUES
                )));
            }
        },
        "includes" => Filter::Includes(side("left")?, side("right")?),
        "eq" | "ne" | "gt" | "ge" | "lt" | "le" => {
            let cmp = match op {
                "eq" => CmpOp::Eq,
                "ne" => CmpOp::Ne,
                "gt" => CmpOp::Gt,
                "ge" => CmpOp::Ge,
                "lt" => CmpOp::Lt,
                _ => CmpOp::Le,
            };
            Filter::Cmp(cmp, side("left")?, side("right")?)
        }
        other => {
            return Err(ServiceError::bad(format!(
                "unsupported btql operator {other:?}"
            )));
        }
    })
}

fn resolve<'a>(row: &'a Map<String, Value>, o: &'a Operand) -> Option<&'a Value> {
    match o {
        Operand::Literal(v) => Some(v),
        Operand::Ident(path) => {
            let (first, rest) = path.split_first()?;
            let mut cur = row.get(first)?;
            for k in rest {
                cur = cur.get(k)?;
            }
            Some(cur)
        }
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn matches(f: &Filter, row: &Map<String, Value>) -> bool {
    match f {
        Filter::And(cs) => cs.iter().all(|c| matches(c, row)),
        Filter::Or(cs) => cs.iter().any(|c| matches(c, row)),
        Filter::Not(c) => !matches(c, row),
        Filter::IsNull(o, want_null) => resolve(row, o).is_none_or(Value::is_null) == *want_null,
        Filter::In(o, values) => resolve(row, o).is_some_and(|v| values.contains(v)),
        Filter::Includes(haystack, needle) => {
            let (Some(h), Some(n)) = (resolve(row, haystack), resolve(row, needle)) else {
                return false;
            };
            match (h, n) {
                (Value::Array(a), n) => a.contains(n),
                (Value::Object(m), n) => m.values().any(|v| v == n),
                (Value::String(s), Value::String(n)) => s.contains(n.as_str()),
                _ => false,
            }
        }
        Filter::Cmp(op, l, r) => {
            let (Some(a), Some(b)) = (resolve(row, l), resolve(row, r)) else {
                return false;
            };
            match op {
                CmpOp::Eq => a == b,
                CmpOp::Ne => a != b,
                CmpOp::Gt => compare(a, b) == Some(Ordering::Greater),
                CmpOp::Ge => matches!(compare(a, b), Some(Ordering::Greater | Ordering::Equal)),
                CmpOp::Lt => compare(a, b) == Some(Ordering::Less),
                CmpOp::Le => matches!(compare(a, b), Some(Ordering::Less | Ordering::Equal)),
            }
        }
    }
}

/// `root_span_id = literal` at the top of the filter (alone or inside `and`).
/// The string a filter requires top-level `field` to equal, when it requires one.
fn equality_on(f: &Filter, field: &str) -> Option<String> {
    match f {
        Filter::Cmp(CmpOp::Eq, Operand::Ident(p), Operand::Literal(Value::String(s)))
        | Filter::Cmp(CmpOp::Eq, Operand::Literal(Value::String(s)), Operand::Ident(p))
            if p.len() == 1 && p.first().is_some_and(|n| n == field) =>
        {
            Some(s.clone())
        }
        Filter::And(cs) => cs.iter().find_map(|c| equality_on(c, field)),
        _ => None,
    }
}

/// A read request, whatever route it came from.
#[derive(Debug, Clone, Default)]
pub struct FetchRequest {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub version: Option<String>,
    filter: Option<Filter>,
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
            Some(f) => Some(parse_filter(f, 0)?),
        };
        Ok(Self {
            limit,
            cursor: text("cursor")?,
            version: text("version")?,
            filter,
        })
    }
}

/// A row that holds only comments (and the fields the server adds): one whose comments
/// arrived before the row itself. It is not shown until the row is written.
fn only_discussion(data: &Map<String, Value>) -> bool {
    data.contains_key("comments")
        && data.keys().all(|k| {
            matches!(
                k.as_str(),
                "id" | "created"
                    | "comments"
                    | "audit_data"
                    | "project_id"
                    | "experiment_id"
                    | "dataset_id"
                    | "log_id"
                    | "org_id"
            )
        })
}

/// The clauses of a structured query that are applied.
const SUPPORTED_CLAUSES: [&str; 5] = ["select", "from", "filter", "cursor", "limit"];

/// The one literal argument of a query's source: the id in `dataset('<id>')`.
fn from_argument(query: &Value) -> Result<&str> {
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
        let is_root = match m.get("span_parents") {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
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
            .and_then(|f| equality_on(f, "root_span_id"));
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
                if !only_discussion(&row.data)
                    && req.filter.as_ref().is_none_or(|f| matches(f, &row.data))
                {
                    out.push(row_json(row, pass.object_type()));
                    if out.len() as i64 == limit {
                        let next = after.map(|a| encode_cursor(&Cursor { version, after: a }));
                        return Ok((out, next));
                    }
                }
            }
            if exhausted {
                return Ok((out, None));
            }
        }
    }

    /// `POST /btql` with a structured query.
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
        // A clause this engine does not apply is refused, never dropped: an ignored `sort` or
        // `measures` would answer a different question than the one asked.
        if let Some((clause, _)) = query.as_object().and_then(|q| {
            q.iter()
                .find(|(k, v)| !v.is_null() && !SUPPORTED_CLAUSES.contains(&k.as_str()))
        }) {
            return Err(ServiceError::field(
                format!("query.{clause}"),
                format!(
                    "the `{clause}` clause is not supported; supported clauses: {}",
                    SUPPORTED_CLAUSES.join(", ")
                ),
            ));
        }
        let from = query
            .get("from")
            .ok_or_else(|| ServiceError::field("query.from", "`query.from` is required"))?;
        let name = from
            .get("name")
            .and_then(|n| n.get("name"))
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ServiceError::field(
                    "query.from",
                    "`query.from` must be a function like dataset('<id>')",
                )
            })?;
        let kind = match name {
            "project_prompts" => return self.project_prompts(principal, query, body).await,
            "experiment" => ObjectType::Experiment,
            "dataset" => ObjectType::Dataset,
            "project_logs" => ObjectType::ProjectLogs,
            other => {
                return Err(ServiceError::bad(format!(
                    "unsupported btql source {other:?}"
                )));
            }
        };
        let id = from_argument(query)?;
        if let Some(select) = query.get("select").and_then(Value::as_array)
            && !select
                .iter()
                .all(|s| s.get("op").and_then(Value::as_str) == Some("star"))
        {
            return Err(ServiceError::bad("only `select: *` is supported"));
        }
        let mut req = FetchRequest::from_body(query)?;
        if req.version.is_none() {
            req.version =
                FetchRequest::from_body(&json!({"version": body.get("version")}))?.version;
        }
        let (data, cursor) = self.fetch(principal, kind, id, &req).await?;
        Ok(json!({"data": data, "cursor": cursor}))
    }

    /// `project_prompts('<project id>')`: the project's prompts as `/v1/prompt` shows them,
    /// or, with `audit_log: true`, the versions of each (oldest first) with `audit_data`
    /// naming what each version was (`upsert`, or `delete`). A filter on `id` reads only
    /// that prompt.
    async fn project_prompts(
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
        let wanted = req.filter.as_ref().and_then(|f| equality_on(f, "id"));
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
                    && !matches(f, m)
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

    async fn all_rows(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
    ) -> Result<(Option<ObjectRecord>, Vec<Map<String, Value>>)> {
        let (object, pass) = self
            .object_pass(principal, kind, id, Permission::Read)
            .await?;
        let rows = self.store.read_all_rows(&pass, None).await?;
        Ok((object, rows.into_iter().map(|r| r.data).collect()))
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

    /// `{scores, metrics}` in the SDKs' strict entry shapes.
    pub async fn compare(
        &self,
        principal: &Principal,
        experiment: &ObjectRecord,
        base: Option<&ObjectRecord>,
    ) -> Result<(Value, Value)> {
        let (_, rows) = self
            .all_rows(principal, ObjectType::Experiment, &experiment.id)
            .await?;
        let base_rows = match base {
            Some(b) => Some(
                self.all_rows(principal, ObjectType::Experiment, &b.id)
                    .await?
                    .1,
            ),
            None => None,
        };
        let s = summary::summarize(&rows, base_rows.as_deref());
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
        Ok((Value::Object(scores), Value::Object(metrics)))
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
        let (dataset, rows) = self.all_rows(principal, ObjectType::Dataset, id).await?;
        let dataset = dataset.ok_or_else(|| ServiceError::NotFound("dataset".into()))?;
        let project = self.get_project(principal, &dataset.project_id).await?;
        let mut out = json!({
            "project_name": project.name, "dataset_name": dataset.name,
            "project_url": format!("{base_url}/app/projects/{}", project.id),
            "dataset_url": format!("{base_url}/app/datasets/{}", dataset.id),
            "data_summary": null,
        });
        if summarize_data && let Some(o) = out.as_object_mut() {
            o.insert("data_summary".into(), json!({"total_records": rows.len()}));
        }
        Ok(out)
    }

    /// The number of live records in a dataset (`GET /dataset-summary`, the JS SDK's
    /// `dataset.summarize()`).
    pub async fn dataset_total_records(&self, principal: &Principal, id: &str) -> Result<u64> {
        let (dataset, rows) = self.all_rows(principal, ObjectType::Dataset, id).await?;
        dataset.ok_or_else(|| ServiceError::NotFound("dataset".into()))?;
        Ok(rows.len() as u64)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_match() {
        let f = parse_filter(
            &json!({"op":"and","children":[
                {"op":"eq","left":{"op":"ident","name":["root_span_id"]},"right":{"op":"literal","value":"t1"}},
                {"op":"gt","left":{"op":"ident","name":["metadata","n"]},"right":{"op":"literal","value":2}},
                {"op":"not","expr":{"op":"isnull","expr":{"op":"ident","name":["input"]}}}
            ]}),
            0,
        )
        .unwrap();
        assert_eq!(equality_on(&f, "root_span_id"), Some("t1".into()));
        let row = |v: Value| v.as_object().unwrap().clone();
        assert!(matches(
            &f,
            &row(json!({"root_span_id":"t1","metadata":{"n":3},"input":1}))
        ));
        assert!(!matches(
            &f,
            &row(json!({"root_span_id":"t1","metadata":{"n":2},"input":1}))
        ));
        assert!(!matches(
            &f,
            &row(json!({"root_span_id":"t1","metadata":{"n":3}}))
        ));
        assert!(parse_filter(&json!({"op":"regex"}), 0).is_err());
        assert!(
            parse_filter(
                &json!({"op":"eq","left":{"op":"ident","name":[]},"right":{"op":"literal"}}),
                0
            )
            .is_err()
        );
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            version: XactId::from_counter(5).unwrap(),
            after: "row-9".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)).unwrap(), c);
        assert!(decode_cursor("nonsense").is_err());
    }
}
