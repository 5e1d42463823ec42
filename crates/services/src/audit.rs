//! The audit log: what is recorded, and the appender that chains it.
//!
//! Recorded (one entry each):
//! * every request made with a valid key: who (user, key), from where, the route, the status,
//!   every access decision taken for it (which object, which permission, allowed or not) and
//!   brief notes of the changes it made (before and after for policy and key changes);
//! * every failed authentication: the key id if the token was well formed (never the
//!   secret), the reason and the address;
//! * operator commands run from the CLI.
//!
//! Entries of requests that changed something are durable before the response is sent;
//! entries of reads and of failed authentications are appended within milliseconds, in
//! batches, and a crash in that window can lose them.

use crate::admin::set;
use crate::{Result, ServiceError, Services};
use holdfast_core::audit::{Break, Entry, Verifier};
use holdfast_core::authz::{Kind, Permission, Principal, SystemPass};
use holdfast_core::clock::{format_timestamp, parse_timestamp};
use holdfast_store::{AuditFilter, NewAuditEntry, Store};
use serde_json::{Value, json};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

/// Most entries one append transaction takes.
const BATCH: usize = 500;

enum Msg {
    Entry(Box<NewAuditEntry>, Option<oneshot::Sender<Result<()>>>),
    Flush(oneshot::Sender<()>),
}

/// Appends entries in batches, in the order they were recorded.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
}

impl AuditLog {
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(65_536);
        tokio::spawn(append_loop(store, rx));
        Self { tx }
    }

    /// Queues an entry; waits only if the queue is full.
    pub async fn record(&self, entry: NewAuditEntry) {
        if self
            .tx
            .send(Msg::Entry(Box::new(entry), None))
            .await
            .is_err()
        {
            tracing::error!("audit appender stopped; an entry was lost");
        }
    }

    /// Queues an entry and waits until it is durable.
    pub async fn record_durable(&self, entry: NewAuditEntry) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Msg::Entry(Box::new(entry), Some(reply)))
            .await
            .map_err(|_| ServiceError::Internal("the audit appender has stopped".into()))?;
        done.await
            .map_err(|_| ServiceError::Internal("the audit appender has stopped".into()))?
    }

    /// Waits until everything queued so far is appended (at shutdown).
    pub async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(reply)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn append_loop(store: Store, mut rx: mpsc::Receiver<Msg>) {
    let why = SystemPass::new("appending to the audit log");
    while let Some(first) = rx.recv().await {
        let mut entries = Vec::new();
        let mut replies = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Entry(e, r) => {
                    entries.push(*e);
                    replies.extend(r);
                }
                Msg::Flush(r) => flushes.push(r),
            }
            if entries.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        let count = entries.len();
        let result = store.append_audit_grouped(&why, entries).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, lost = count, "could not append to the audit log");
        }
        for r in replies {
            let _ = r.send(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| ServiceError::Internal(format!("audit log: {e}"))),
            );
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

impl Services {
    /// Writes rows with the request's audit entry in the same commit (noting `change` on
    /// the trail first), so that a crash can never keep the rows and lose the entry. The
    /// edge then writes no second entry for the request, unless it changes more or fails.
    pub(crate) async fn write_rows_audited(
        &self,
        principal: &Principal,
        writes: Vec<(
            holdfast_core::authz::ObjectPass,
            Vec<holdfast_store::IncomingRow>,
        )>,
        change: Value,
    ) -> Result<holdfast_core::xact::XactId> {
        principal.trail.change(change);
        let now = self.now();
        let entry = principal.trail.request().map(|(action, from)| {
            request_entry(principal, now.clone(), &action, 200, from.as_deref())
        });
        let audited = entry.is_some();
        let xact = self
            .store
            .write_rows_audited(writes, &now, entry.into_iter().collect())
            .await?;
        if audited {
            principal.trail.mark_audited();
        }
        Ok(xact)
    }

    /// Records an operator command (`holdfast org create`, `keys revoke`, ...) before it
    /// acts, durably: a command that changes something is never unaudited, even if the
    /// process dies during it. `org` names the organization it acts on, when it names one.
    pub async fn record_operator_command(
        &self,
        command: &str,
        org: Option<&str>,
        detail: Value,
    ) -> Result<()> {
        let org_id = match org {
            Some(name) => self.org_id_by_name(name).await.ok(),
            None => None,
        };
        let mut detail = detail;
        set(detail.as_object_mut(), "by", json!("operator"));
        let entry = NewAuditEntry {
            at: self.now(),
            org_id,
            actor_id: None,
            key_id: None,
            action: format!("cli: {command}"),
            object_type: None,
            object_id: None,
            detail,
        };
        self.store
            .append_audit(&SystemPass::new("an operator command"), &[entry])
            .await?;
        Ok(())
    }
}

/// The entry for one authenticated request.
pub fn request_entry(
    principal: &Principal,
    at: String,
    action: &str,
    status: u16,
    from: Option<&str>,
) -> NewAuditEntry {
    let (accesses, more) = principal.trail.snapshot();
    let changes = principal.trail.changes();
    let primary = accesses.iter().find(|a| a.allowed && a.id.is_some());
    let accessed: Vec<Value> = accesses
        .iter()
        .map(|a| {
            json!({"kind": a.kind.as_str(), "id": a.id, "permission": a.permission.as_str(),
                   "allowed": a.allowed})
        })
        .collect();
    let mut detail = json!({"status": status, "from": from, "accessed": accessed});
    if more > 0 {
        set(detail.as_object_mut(), "more_accessed", json!(more));
    }
    if !changes.is_empty() {
        set(detail.as_object_mut(), "changes", Value::Array(changes));
    }
    NewAuditEntry {
        at,
        org_id: Some(principal.org_id.clone()),
        actor_id: Some(principal.user_id.clone()),
        key_id: Some(principal.key_id.clone()),
        action: action.to_owned(),
        object_type: primary.map(|a| a.kind.as_str().to_owned()),
        object_id: primary.and_then(|a| a.id.clone()),
        detail,
    }
}

/// True when the request's decisions included a write that was allowed: its entry must be
/// durable before the response.
pub fn changed_something(principal: &Principal) -> bool {
    let (accesses, _) = principal.trail.snapshot();
    accesses.iter().any(|a| a.allowed && a.permission.writes())
        || !principal.trail.changes().is_empty()
}

fn entry_json(e: &Entry) -> Value {
    let detail: Value = serde_json::from_str(&e.detail).unwrap_or(Value::String(e.detail.clone()));
    json!({"seq": e.seq, "created": e.at, "org_id": e.org_id, "actor_id": e.actor_id,
           "key_id": e.key_id, "action": e.action, "object_type": e.object_type,
           "object_id": e.object_id, "detail": detail, "prev_hash": e.prev_hash, "hash": e.hash})
}

/// Most entries one page of `GET /v1/audit_log` returns.
pub const AUDIT_PAGE_MAX: i64 = 1000;

impl Services {
    /// `GET /v1/audit_log`: the organization's entries, newest first, filtered by `actor_id`,
    /// `key_id`, `object_id`, `action`, `since`, `until` (RFC 3339) and paginated with
    /// `limit` and `cursor` (the `cursor` of the previous page). Needs `read` on
    /// `org_audit_logs`.
    pub async fn list_audit(
        &self,
        principal: &Principal,
        q: &HashMap<String, String>,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let pass = self
            .org_grant(principal, Permission::Read, Kind::OrgAuditLogs)
            .await?;
        let time = |k: &str| -> Result<Option<String>> {
            match q.get(k) {
                None => Ok(None),
                Some(t) => parse_timestamp(t)
                    .map(|t| Some(format_timestamp(t)))
                    .ok_or_else(|| ServiceError::bad(format!("`{k}` must be an RFC 3339 time"))),
            }
        };
        let limit = match q.get("limit") {
            None => 100,
            Some(l) => l
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=AUDIT_PAGE_MAX).contains(n))
                .ok_or_else(|| {
                    ServiceError::bad(format!("`limit` must be from 1 to {AUDIT_PAGE_MAX}"))
                })?,
        };
        let before_seq = match q.get("cursor") {
            None => None,
            Some(c) => Some(
                c.parse::<i64>()
                    .map_err(|_| ServiceError::bad("`cursor` is not one this server returned"))?,
            ),
        };
        let filter = AuditFilter {
            actor_id: q.get("actor_id").cloned(),
            key_id: q.get("key_id").cloned(),
            object_id: q.get("object_id").cloned(),
            action: q.get("action").cloned(),
            since: time("since")?,
            until: time("until")?,
            before_seq,
            limit,
        };
        let entries = self.store.list_audit(&pass, &filter).await?;
        let cursor = (entries.len() as i64 == limit)
            .then(|| entries.last().map(|e| e.seq.to_string()))
            .flatten();
        Ok((entries.iter().map(entry_json).collect(), cursor))
    }
}

/// The entry for a failed authentication.
pub fn auth_failure_entry(
    at: String,
    key_id: Option<String>,
    reason: &str,
    action: &str,
    from: Option<&str>,
) -> NewAuditEntry {
    NewAuditEntry {
        at,
        org_id: None,
        actor_id: None,
        key_id,
        action: "auth.failure".into(),
        object_type: None,
        object_id: None,
        detail: json!({"reason": reason, "request": action, "from": from}),
    }
}

/// The outcome of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact { entries: i64 },
    Broken { seq: i64, why: String },
}

/// Checks the whole chain, page by page, and names the first broken entry. Entries appended
/// while it runs (the server may be serving) are left for the next run.
pub async fn verify(store: &Store) -> Result<Verdict> {
    let why = SystemPass::new("verifying the audit log");
    // The counter and the entries commit together, so every entry up to it is stored.
    let expected = store.audit_count(&why).await?;
    let mut v = Verifier::default();
    let mut after = 0;
    while after < expected {
        let page: Vec<Entry> = store
            .audit_chain(&why, after, (expected - after).min(5_000))
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if let Err(b) = v.check(e) {
                let (seq, why) = match b {
                    Break::Sequence { expected, found } => (
                        expected,
                        format!("it is missing (the next stored entry is {found}): deleted"),
                    ),
                    Break::Link => (
                        e.seq,
                        "its link to the entry before does not match: an entry before it was altered or removed".into(),
                    ),
                    Break::Content => (e.seq, "its contents do not match its hash: edited".into()),
                };
                return Ok(Verdict::Broken { seq, why });
            }
        }
    }
    if v.count() < expected {
        return Ok(Verdict::Broken {
            seq: v.count() + 1,
            why: format!(
                "the chain ends at entry {} but {expected} were written: the last entries were deleted",
                v.count()
            ),
        });
    }
    Ok(Verdict::Intact { entries: v.count() })
}
