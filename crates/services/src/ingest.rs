//! Row ingest: `/logs3`, the REST `insert` and `feedback` routes, and overflow batches.
//!
//! A request is validated whole before anything is written (every row well formed, every
//! object found and writable), then written in one store transaction: it is applied fully or
//! not at all.

use crate::attachments::{MAX_ATTACHMENT_REFS, attachment_refs};
use crate::blobs::BlobKind;
use crate::{Result, ServiceError, Services, random};
use holdfast_api::rows::FeedbackRequest;
use holdfast_core::authz::{ObjectPass, Permission, Principal};
use holdfast_core::merge::take_control;
use holdfast_core::object::{ObjectType, RowTarget, row_target};
use holdfast_store::IncomingRow;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub const MAX_ROWS_PER_REQUEST: usize = 10_000;

#[derive(Debug, Clone)]
pub struct IngestResult {
    pub row_ids: Vec<String>,
    pub xact_id: String,
}

impl Services {
    /// The body of `POST /logs3`: `{"rows": [...], "api_version": 2}`, or an overflow reference
    /// `{"rows": {"type": "logs3_overflow", "key": ...}}`.
    pub async fn logs3(&self, principal: &Principal, body: Value) -> Result<IngestResult> {
        let Value::Object(mut body) = body else {
            return Err(ServiceError::bad("body must be a JSON object with `rows`"));
        };
        match body.remove("rows") {
            Some(Value::Array(rows)) => self.ingest(principal, rows, None).await,
            Some(Value::Object(reference))
                if reference.get("type").and_then(Value::as_str) == Some("logs3_overflow") =>
            {
                let key = reference
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ServiceError::bad("overflow reference needs a `key`"))?;
                self.ingest_overflow(principal, key).await
            }
            _ => Err(ServiceError::field(
                "rows",
                "`rows` must be an array of row objects",
            )),
        }
    }

    /// Ingests an uploaded overflow batch: claimed so that one request consumes it, removed
    /// with its blob once its rows are written, and put back if they are not.
    async fn ingest_overflow(&self, principal: &Principal, key: &str) -> Result<IngestResult> {
        let org = &principal.org_id;
        let pass = self.org_wide_pass(principal, Permission::Create).await?;
        if !self.store.claim_overflow(&pass, key).await? {
            return Err(ServiceError::bad(format!(
                "no uploaded overflow payload for key {key:?}"
            )));
        }
        let result = async {
            let bytes = self.blobs.get(org, BlobKind::Overflow, key).await?;
            crate::json_values_within(&bytes, self.limits.max_json_values)?;
            let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
                ServiceError::bad(format!("overflow payload is not valid JSON: {e}"))
            })?;
            drop(bytes);
            let rows = match body {
                Value::Object(mut m) => match m.remove("rows") {
                    Some(Value::Array(rows)) => rows,
                    _ => return Err(ServiceError::bad("overflow payload needs a `rows` array")),
                },
                _ => return Err(ServiceError::bad("overflow payload must be a JSON object")),
            };
            self.ingest(principal, rows, None).await
        }
        .await;
        match result {
            Ok(out) => {
                self.blobs.delete(org, BlobKind::Overflow, key).await?;
                self.store.consume_overflow(&pass, key).await?;
                Ok(out)
            }
            Err(e) => {
                self.store.release_overflow(&pass, key).await?;
                Err(e)
            }
        }
    }

    /// Writes rows. With `forced`, every row goes to that object (REST `insert`), whatever
    /// object fields it carries.
    pub async fn ingest(
        &self,
        principal: &Principal,
        rows: Vec<Value>,
        forced: Option<&RowTarget>,
    ) -> Result<IngestResult> {
        if rows.len() > MAX_ROWS_PER_REQUEST {
            return Err(ServiceError::TooLarge(format!(
                "at most {MAX_ROWS_PER_REQUEST} rows per request"
            )));
        }
        let mut groups: BTreeMap<RowTarget, Vec<IncomingRow>> = BTreeMap::new();
        let mut refs: BTreeMap<RowTarget, Vec<(String, String)>> = BTreeMap::new();
        let mut ref_count = 0;
        let mut row_ids = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            let Value::Object(mut row) = row else {
                return Err(ServiceError::bad(format!("row {i} is not a JSON object")));
            };
            let target = match forced {
                Some(t) => t.clone(),
                None => row_target(&row).map_err(|e| ServiceError::bad(format!("row {i}: {e}")))?,
            };
            let row_id = match row.get("id") {
                Some(Value::String(id)) if !id.is_empty() && id.len() <= 1024 => id.clone(),
                Some(Value::String(_)) => {
                    return Err(ServiceError::bad(format!(
                        "row {i}: `id` must be 1 to 1024 characters"
                    )));
                }
                _ => random::uuid()?,
            };
            if row.get("id").is_none_or(Value::is_null) {
                row.insert("id".into(), json!(row_id));
            }
            let control =
                take_control(&mut row).map_err(|e| ServiceError::bad(format!("row {i}: {e}")))?;
            row_ids.push(row_id.clone());
            // A comment is written onto the row it is about.
            let write_id = control.comment_on().map_or(row_id, str::to_owned);
            let mut found = Vec::new();
            row.values().for_each(|v| attachment_refs(v, &mut found));
            if !found.is_empty() {
                ref_count += found.len();
                if ref_count > MAX_ATTACHMENT_REFS {
                    return Err(ServiceError::bad(format!(
                        "at most {MAX_ATTACHMENT_REFS} attachment references per request"
                    )));
                }
                let here = refs.entry(target.clone()).or_default();
                here.extend(found.into_iter().map(|k| (write_id.clone(), k)));
            }
            groups.entry(target).or_default().push(IncomingRow {
                row_id: write_id,
                control,
                data: row,
            });
        }
        let mut writes: Vec<(ObjectPass, Vec<IncomingRow>)> = Vec::with_capacity(groups.len());
        for (target, mut rows) in groups {
            let (_, pass) = self
                .object_pass(
                    principal,
                    target.object_type,
                    &target.object_id,
                    Permission::Update,
                )
                .await
                .map_err(|e| match e {
                    ServiceError::NotFound(_) => ServiceError::NotFound(format!(
                        "{} {:?}",
                        target.object_type, target.object_id
                    )),
                    other => other,
                })?;
            for row in &mut rows {
                stamp_object_fields(&mut row.data, &pass);
            }
            // Recorded before the rows, so that their attachments can be registered as soon
            // as the rows are acknowledged.
            if let Some(found) = refs.get_mut(&target) {
                found.sort_unstable();
                found.dedup();
                self.store.add_attachment_refs(&pass, found).await?;
            }
            writes.push((pass, rows));
        }
        if writes.is_empty() {
            return Ok(IngestResult {
                row_ids,
                xact_id: String::new(),
            });
        }
        let written: Vec<Value> = writes
            .iter()
            .map(|(pass, rows)| {
                serde_json::json!({"object_type": pass.object_type().as_str(),
                                   "id": pass.object_id(), "rows": rows.len()})
            })
            .collect();
        let xact = self
            .write_rows_audited(principal, writes, json!({"rows_written": written}))
            .await?;
        Ok(IngestResult {
            row_ids,
            xact_id: xact.to_string(),
        })
    }

    /// `POST /v1/{experiment,dataset,project_logs}/{id}/feedback`: each item becomes a merge
    /// row on its target (scores, expected, tags, metadata) and, with a comment, a comment row.
    pub async fn feedback(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
        body: &FeedbackRequest,
    ) -> Result<()> {
        let target = RowTarget {
            object_type: kind,
            object_id: id.to_owned(),
        };
        let mut rows = Vec::new();
        for item in &body.feedback {
            // `metadata` describes the feedback (who gave it), not the row: it is kept in
            // the row's `audit_data` and with the comment, as the SDKs send it.
            let mut audit = Map::new();
            audit.insert(
                "_audit_source".into(),
                json!(item.source.as_deref().unwrap_or("external")),
            );
            if let Some(metadata) = &item.metadata {
                audit.insert("_audit_metadata".into(), json!(metadata));
            }
            let given = [
                ("scores", item.scores.clone().map(|v| json!(v))),
                ("expected", item.expected.clone().map(|v| json!(v))),
                ("tags", item.tags.clone().map(|v| json!(v))),
            ];
            if given.iter().any(|(_, v)| v.is_some()) {
                let mut merge = audit.clone();
                merge.insert("id".into(), json!(item.id));
                merge.insert("_is_merge".into(), json!(true));
                for (field, value) in given {
                    if let Some(v) = value {
                        merge.insert(field.into(), v);
                    }
                }
                rows.push(Value::Object(merge));
            }
            if let Some(comment) = &item.comment {
                let mut row = audit;
                row.insert("id".into(), json!(random::uuid()?));
                row.insert("created".into(), json!(self.now()));
                row.insert("comment".into(), json!({"text": comment}));
                row.insert("origin".into(), json!({"id": item.id}));
                rows.push(Value::Object(row));
            }
        }
        self.ingest(principal, rows, Some(&target)).await?;
        Ok(())
    }
}

/// Rows carry their object's ids, as the SDKs read them back.
pub(crate) fn stamp_object_fields(row: &mut Map<String, Value>, pass: &ObjectPass) {
    for f in ["experiment_id", "dataset_id", "log_id", "prompt_session_id"] {
        row.remove(f);
    }
    row.insert("project_id".into(), json!(pass.project_id()));
    match pass.object_type() {
        ObjectType::Experiment => {
            row.insert("experiment_id".into(), json!(pass.object_id()));
        }
        ObjectType::Dataset => {
            row.insert("dataset_id".into(), json!(pass.object_id()));
        }
        ObjectType::ProjectLogs => {
            row.insert("log_id".into(), json!("g"));
            row.insert("org_id".into(), json!(pass.org_id()));
        }
        ObjectType::Prompt => {
            row.insert("log_id".into(), json!("p"));
        }
    }
}
