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
use holdfast_api::admin::AuditQuery;
use holdfast_core::audit::{Break, Checkpoint, Entry, Head, Verifier};
use holdfast_core::authz::{Kind, Permission, Principal, SystemPass};
use holdfast_core::clock::{format_timestamp, parse_timestamp};
use holdfast_store::{AuditFilter, NewAuditEntry, Store};
use serde_json::{Value, json};
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
        let entry = principal
            .trail
            .request()
            .map(|_| request_entry(principal, now.clone(), 200));
        let audited = entry.is_some();
        let rows: usize = writes.iter().map(|(_, r)| r.len()).sum();
        let xact = self
            .store
            .write_rows_audited(writes, &now, entry.into_iter().collect())
            .await?;
        if audited {
            principal.trail.mark_audited();
        }
        self.rows_written
            .fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed);
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
pub fn request_entry(principal: &Principal, at: String, status: u16) -> NewAuditEntry {
    let request = principal.trail.request().unwrap_or_default();
    let (action, from) = (request.action.as_str(), request.from.as_deref());
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
    if let Some(id) = &request.request_id {
        set(detail.as_object_mut(), "request_id", json!(id));
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

/// True when the request's entry must be durable before the response: it noted a change,
/// or its decisions included a write that was allowed and its method is not `safe` (`GET`,
/// `HEAD`). A safe request that was allowed a write only decided what to show: the
/// administration page asks for `update` on the organization to list its sign-in
/// connections, and waiting for its entry made it wait for the row writer (seconds while
/// the writer indexes a large insert).
pub fn must_be_durable(principal: &Principal, safe: bool) -> bool {
    if !principal.trail.changes().is_empty() {
        return true;
    }
    let (accesses, _) = principal.trail.snapshot();
    !safe && accesses.iter().any(|a| a.allowed && a.permission.writes())
}

fn entry_json(e: &Entry) -> Value {
    let detail: Value = serde_json::from_str(&e.detail).unwrap_or(Value::String(e.detail.clone()));
    json!({"seq": e.chain_seq.unwrap_or(e.seq), "created": e.at, "org_id": e.org_id, "actor_id": e.actor_id,
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
        q: &AuditQuery,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let pass = self
            .org_grant(principal, Permission::Read, Kind::OrgAuditLogs)
            .await?;
        let time = |k: &str, given: &Option<String>| -> Result<Option<String>> {
            match given {
                None => Ok(None),
                Some(t) => parse_timestamp(t)
                    .map(|t| Some(format_timestamp(t)))
                    .ok_or_else(|| {
                        ServiceError::query_param(
                            k.to_string(),
                            format!("`{k}` must be an RFC 3339 time"),
                        )
                    }),
            }
        };
        let limit = match q.limit {
            None => 100,
            Some(l) => Some(l)
                .filter(|n| (1..=AUDIT_PAGE_MAX).contains(n))
                .ok_or_else(|| {
                    ServiceError::query_param(
                        "limit",
                        format!("`limit` must be from 1 to {AUDIT_PAGE_MAX}"),
                    )
                })?,
        };
        // A cursor names the last entry shown by its number in the organization's chain
        // (`c<n>`), or, for an entry from before chains were kept, by its old number
        // (`l<n>`); the global order is never shown.
        let bad_cursor =
            || ServiceError::query_param("cursor", "`cursor` is not one this server returned");
        let before_seq = match &q.cursor {
            None => None,
            Some(c) => {
                let n = |s: &str| s.parse::<i64>().map_err(|_| bad_cursor());
                if let Some(chained) = c.strip_prefix('c') {
                    Some(
                        self.store
                            .audit_position(&pass, n(chained)?)
                            .await?
                            .ok_or_else(bad_cursor)?,
                    )
                } else if let Some(legacy) = c.strip_prefix('l') {
                    Some(n(legacy)?)
                } else {
                    return Err(bad_cursor());
                }
            }
        };
        let filter = AuditFilter {
            actor_id: q.actor_id.clone(),
            key_id: q.key_id.clone(),
            object_id: q.object_id.clone(),
            action: q.action.clone(),
            since: time("since", &q.since)?,
            until: time("until", &q.until)?,
            before_seq,
            limit,
        };
        let entries = self.store.list_audit(&pass, &filter).await?;
        let cursor = (entries.len() as i64 == limit)
            .then(|| {
                entries.last().map(|e| match e.chain_seq {
                    Some(n) => format!("c{n}"),
                    None => format!("l{}", e.seq),
                })
            })
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

/// The outcome of checking the audit chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        entries: i64,
        chains: usize,
    },
    /// `chain`: the organization id, `""` for the server chain, `"legacy"` for entries
    /// written before chains were keyed.
    Broken {
        chain: String,
        seq: i64,
        why: String,
    },
}

fn broken(chain: &str, b: Break, e: &Entry) -> Verdict {
    let here = e.chain_seq.unwrap_or(e.seq);
    let (seq, why) = match b {
        Break::Sequence { expected, found } => (
            expected,
            format!("it is missing (the next stored entry is {found}): deleted"),
        ),
        Break::Link => (
            here,
            "its link to the entry before does not match: an entry before it was altered or removed".into(),
        ),
        Break::Content => (
            here,
            "its contents do not match its link: edited, or linked without the audit key".into(),
        ),
    };
    Verdict::Broken {
        chain: chain.to_owned(),
        seq,
        why,
    }
}

/// Checks one chain from `verifier`'s position up to `expected` entries.
async fn verify_chain(
    store: &Store,
    why: &SystemPass,
    chain: Option<&str>,
    mut v: Verifier,
    expected: i64,
) -> Result<std::result::Result<i64, Verdict>> {
    let name = chain.unwrap_or("legacy");
    let mut after = v.count();
    while after < expected || chain.is_none() {
        let page = store.audit_page(why, chain, after, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = last.chain_seq.unwrap_or(last.seq);
        for e in &page {
            if let Err(b) = v.check(e) {
                return Ok(Err(broken(name, b, e)));
            }
        }
    }
    if chain.is_some() && v.count() < expected {
        return Ok(Err(Verdict::Broken {
            chain: name.to_owned(),
            seq: v.count() + 1,
            why: format!(
                "the chain ends at entry {} but {expected} were written: the last entries were deleted",
                v.count()
            ),
        }));
    }
    Ok(Ok(v.count()))
}

/// Checks every chain, page by page, and names the first broken entry; with a checkpoint,
/// each chain it names must still hold its head there, and is checked from that head on.
/// Entries appended while it runs (the server may be serving) are left for the next run.
pub async fn verify(store: &Store, key: [u8; 32], since: Option<&Checkpoint>) -> Result<Verdict> {
    let why = SystemPass::new("verifying the audit log");
    if let Some(cp) = since
        && !cp.authentic(&key)
    {
        return Err(ServiceError::bad(
            "the checkpoint is not authentic: altered, or made by another installation",
        ));
    }
    let mut entries = 0;
    let chains = store.audit_chains(&why).await?;
    for (chain, expected) in &chains {
        let head = since.and_then(|cp| cp.heads.iter().find(|h| &h.chain == chain));
        let start = match head {
            None => Verifier::keyed(key),
            Some(h) => {
                let anchor = store.audit_page(&why, Some(chain), h.seq - 1, 1).await?;
                match anchor.first() {
                    Some(e) if e.chain_seq == Some(h.seq) && e.hash == h.hash => {}
                    Some(e) if e.chain_seq == Some(h.seq) => {
                        return Ok(Verdict::Broken {
                            chain: chain.clone(),
                            seq: h.seq,
                            why: "it differs from the checkpoint: the chain was rewritten".into(),
                        });
                    }
                    _ => {
                        return Ok(Verdict::Broken {
                            chain: chain.clone(),
                            seq: h.seq,
                            why: "the checkpoint's head is gone: the chain was cut".into(),
                        });
                    }
                }
                Verifier::resume(key, h.seq, &h.hash)
            }
        };
        match verify_chain(store, &why, Some(chain), start, *expected).await? {
            Ok(n) => entries += n,
            Err(v) => return Ok(v),
        }
    }
    // A chain the checkpoint names but the store no longer counts was removed whole.
    if let Some(cp) = since
        && let Some(h) = cp
            .heads
            .iter()
            .find(|h| !chains.iter().any(|(c, _)| c == &h.chain))
    {
        return Ok(Verdict::Broken {
            chain: h.chain.clone(),
            seq: 1,
            why: "the chain named by the checkpoint is gone".into(),
        });
    }
    if since.is_none() {
        match verify_chain(store, &why, None, Verifier::legacy(), 0).await? {
            Ok(n) => entries += n,
            Err(v) => return Ok(v),
        }
    }
    Ok(Verdict::Intact {
        entries,
        chains: chains.len(),
    })
}

/// The head of every chain, signed with the audit key, for keeping outside the database.
pub async fn checkpoint(store: &Store, key: [u8; 32], at: String) -> Result<Checkpoint> {
    let why = SystemPass::new("checkpointing the audit log");
    let mut heads = Vec::new();
    for (chain, count) in store.audit_chains(&why).await? {
        if count == 0 {
            continue;
        }
        let last = store.audit_page(&why, Some(&chain), count - 1, 1).await?;
        let e = last.first().ok_or_else(|| {
            ServiceError::Internal(format!("audit chain {chain:?} has no entry {count}"))
        })?;
        heads.push(Head {
            chain,
            seq: count,
            hash: e.hash.clone(),
        });
    }
    Ok(Checkpoint::sign(&key, at, heads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_core::authz::{Access, Kind, Permission};
    use serde_json::json;

    fn principal() -> Principal {
        Principal {
            user_id: "u".into(),
            org_id: "o".into(),
            key_id: "k".into(),
            scope: Default::default(),
            expires_at: None,
            trail: Default::default(),
        }
    }

    fn decided(p: &Principal, permission: Permission, allowed: bool) {
        p.trail.record(Access {
            kind: Kind::Organization,
            id: None,
            permission,
            allowed,
        });
    }

    #[test]
    fn only_changes_and_unsafe_writes_wait_for_their_entry() {
        let p = principal();
        decided(&p, Permission::Read, true);
        assert!(!must_be_durable(&p, false), "a read");
        decided(&p, Permission::Update, false);
        assert!(!must_be_durable(&p, false), "a write refused");
        decided(&p, Permission::Update, true);
        assert!(must_be_durable(&p, false), "a write allowed, by POST");
        assert!(
            !must_be_durable(&p, true),
            "a write allowed, checked by GET"
        );
        p.trail.change(json!({"what": "noted"}));
        assert!(must_be_durable(&p, true), "a change noted, even by GET");
    }
}
