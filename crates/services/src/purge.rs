//! The purge: what was deleted is removed for good once its grace period has ended.
//!
//! The server runs [`Services::purge_expired`] every `purge_interval_secs`. A run takes the
//! purge lease (one replica at a time when several share PostgreSQL), then, for each deleted
//! project, experiment, dataset or prompt past its grace period: claims it (no restore from
//! then on), removes its row versions in batches of `purge_batch_rows` with every index
//! entry, removes the blobs of the attachments it owns, forgets its grants and record, and
//! writes a `purge` audit entry. A project goes with everything in it. After a run that
//! removed anything, the embedded store compacts its word index and empties its log (see
//! `holdfast_store::purge`). A run stopped at any point is carried on by the next.

use crate::blobs::BlobKind;
use crate::{Result, Services};
use holdfast_core::authz::SystemPass;
use holdfast_core::clock::format_timestamp;
use holdfast_core::object::ObjectType;
use holdfast_store::{Expired, NewAuditEntry};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

/// The lease a purging replica holds.
pub const LEASE: &str = "purge";
/// Expired deletions read at a time.
const LISTED: i64 = 100;
/// Attachments read at a time.
const ATTACHMENTS: i64 = 100;

/// What the purge has done since the server started (for `/metrics`).
#[derive(Debug, Default)]
pub struct PurgeStats {
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    /// Row versions removed.
    pub versions: AtomicU64,
    /// Projects, experiments, datasets and prompts removed.
    pub objects: AtomicU64,
    pub attachments: AtomicU64,
    /// Deletions past their grace period found at the start of the last run.
    pub waiting: AtomicU64,
    /// Unix seconds at the end of the last run that held the lease; 0 before.
    pub last_run: AtomicI64,
    /// A run removed something but could not compact the store afterwards: the next run
    /// tries again.
    pub compact_pending: AtomicBool,
    /// How long the last compaction after a purge took, in milliseconds.
    pub last_compaction_ms: AtomicU64,
    /// Deleted rows of live objects removed.
    pub rows: AtomicU64,
    /// Rows that retention policies deleted.
    pub retention_rows: AtomicU64,
    /// Runs whose application of the retention policies stopped on an error.
    pub retention_failures: AtomicU64,
    /// Experiments that retention policies deleted.
    pub retention_objects: AtomicU64,
}

/// The error of a run whose replica lost the purge lease to another (it stalled past it).
pub(crate) fn lease_lost() -> crate::ServiceError {
    crate::ServiceError::Internal("the purge lease passed to another replica during a run".into())
}

/// Deleted rows of one object: (row id, the deleting version's `_xact_id`).
type Deleted = Vec<(String, i64)>;

/// What one run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgeReport {
    /// False when another replica holds the lease (nothing was done).
    pub ran: bool,
    pub versions: u64,
    pub objects: u64,
    pub attachments: u64,
    /// Deleted rows (of live objects) removed.
    pub rows: u64,
    /// Rows and experiments that retention policies deleted at the start of the run.
    pub retention_rows: u64,
    pub retention_objects: u64,
}

/// What removing one object's data found.
#[derive(Debug, Default, Clone, Copy)]
struct Removed {
    versions: u64,
    attachments: u64,
}

impl Removed {
    fn add(&mut self, other: Removed) {
        self.versions += other.versions;
        self.attachments += other.attachments;
    }
}

fn why() -> SystemPass {
    SystemPass::new("purging what was deleted, after its grace period")
}

impl Services {
    /// One purge run as `holder` (this replica's lease holder id); see the module docs.
    pub async fn purge_expired(&self, holder: &str) -> Result<PurgeReport> {
        let stats = &self.purge;
        let result = self.purge_run(holder).await;
        stats.runs.fetch_add(1, Relaxed);
        match &result {
            Ok(r) if r.ran => stats
                .last_run
                .store(self.clock.now().unix_timestamp(), Relaxed),
            Ok(_) => {}
            Err(_) => {
                stats.failures.fetch_add(1, Relaxed);
            }
        }
        result
    }

    async fn purge_run(&self, holder: &str) -> Result<PurgeReport> {
        let mut report = PurgeReport::default();
        if !self.renew_purge_lease(holder).await? {
            return Ok(report);
        }
        report.ran = true;
        let grace = time::Duration::try_from(self.limits.deletion_grace).map_err(|_| {
            crate::ServiceError::Internal("the deletion grace period is too long".into())
        })?;
        // A policy that cannot be applied must not stop the purge of what was deleted.
        match self.apply_retention(holder).await {
            Ok(expired) => {
                report.retention_rows = expired.rows;
                report.retention_objects = expired.objects;
            }
            Err(e) => {
                self.purge.retention_failures.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "applying the retention policies failed; the next run tries again");
            }
        }
        // Scheduled exports that are due, before the purge removes anything they would see.
        // The purge lease is renewed while they run (an export may take longer than it).
        let exports = self.run_scheduled_exports(holder);
        match self
            .store
            .holding_lease(
                LEASE,
                holder,
                self.limits.purge_lease,
                self.clock.clone(),
                exports,
            )
            .await?
        {
            Some(Err(e)) => {
                tracing::warn!(error = %e, "running the scheduled exports failed; the next run tries again");
            }
            Some(Ok(_)) => {}
            None => return Err(lease_lost()),
        }
        let cutoff = format_timestamp(self.clock.now() - grace);
        let mut first = true;
        loop {
            let expired = self
                .store
                .expired_deletions(&why(), &cutoff, LISTED)
                .await?;
            if first {
                self.purge.waiting.store(expired.len() as u64, Relaxed);
                first = false;
            }
            let mut progress = false;
            for e in &expired {
                if !self.store.claim_for_purge(&why(), e).await? {
                    continue;
                }
                let removed = match &e.object {
                    Some((kind, id)) => self.purge_object(holder, &e.org_id, *kind, id).await?,
                    None => self.purge_project(holder, e).await?,
                };
                let Some(removed) = removed else {
                    // Versions still in the writer's tail: the next run finishes it.
                    continue;
                };
                progress = true;
                report.versions += removed.versions;
                report.attachments += removed.attachments;
                report.objects += 1;
                self.purge.objects.fetch_add(1, Relaxed);
                self.audit_purge(e, removed).await?;
            }
            if !progress {
                break;
            }
        }
        let (rows, versions) = self.purge_deleted_rows(holder, &cutoff).await?;
        report.rows = rows;
        report.versions += versions;
        report.attachments += self.purge_unreferenced_attachments(holder).await?;
        let removed_any = report.versions > 0 || report.objects > 0;
        if removed_any || self.purge.compact_pending.load(Relaxed) {
            self.purge.compact_pending.store(true, Relaxed);
            let started = std::time::Instant::now();
            let emptied = self.store.compact_after_purge(&why()).await?;
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.purge.last_compaction_ms.store(ms, Relaxed);
            if emptied {
                self.purge.compact_pending.store(false, Relaxed);
            } else {
                tracing::warn!(
                    "the purge could not empty the write-ahead log (a long read holds it); \
                     the next run tries again"
                );
            }
        }
        self.purge.waiting.store(0, Relaxed);
        self.store.end_lease(LEASE, holder).await?;
        Ok(report)
    }

    /// Takes or renews the purge lease; false when another replica holds it.
    pub(crate) async fn renew_purge_lease(&self, holder: &str) -> Result<bool> {
        let now = self.clock.now().unix_timestamp();
        let ttl = i64::try_from(self.limits.purge_lease.as_secs()).unwrap_or(i64::MAX);
        Ok(self.store.take_lease(LEASE, holder, now, ttl).await?)
    }

    /// Removes the deleted rows of live objects whose deletion is older than `cutoff`, a
    /// batch at a time, with one `purge` audit entry per object and batch; returns (rows,
    /// versions) removed.
    async fn purge_deleted_rows(&self, holder: &str, cutoff: &str) -> Result<(u64, u64)> {
        let batch = i64::try_from(self.limits.purge_batch_rows.max(1)).unwrap_or(i64::MAX);
        let (mut rows, mut versions) = (0u64, 0u64);
        loop {
            if !self.renew_purge_lease(holder).await? {
                return Err(lease_lost());
            }
            let found = self
                .store
                .expired_row_deletions(&why(), cutoff, batch)
                .await?;
            if found.is_empty() {
                break;
            }
            let mut by_object: BTreeMap<(ObjectType, &str, &str), Deleted> = BTreeMap::new();
            for d in &found {
                by_object
                    .entry((d.object_type, d.object_id.as_str(), d.org_id.as_str()))
                    .or_default()
                    .push((d.row_id.clone(), d.xact_id));
            }
            let mut progress = false;
            for ((kind, id, org), deleted) in by_object {
                let (v, done) = self
                    .store
                    .purge_deleted_rows(&why(), kind, id, &deleted)
                    .await?;
                if v == 0 && done == 0 {
                    continue;
                }
                progress = true;
                rows += done as u64;
                versions += v as u64;
                self.purge.versions.fetch_add(v as u64, Relaxed);
                self.purge.rows.fetch_add(done as u64, Relaxed);
                self.audit
                    .record_durable(NewAuditEntry {
                        at: self.now(),
                        org_id: Some(org.to_owned()).filter(|o| !o.is_empty()),
                        actor_id: None,
                        key_id: None,
                        action: "purge".into(),
                        object_type: Some(kind.as_str().into()),
                        object_id: Some(id.into()),
                        detail: json!({"deleted_rows": done, "versions": v}),
                    })
                    .await?;
            }
            if !progress {
                // Deleting versions still in the writer's tail: a later run.
                break;
            }
        }
        Ok((rows, versions))
    }

    /// Deletes the blobs of attachments that only purged rows referenced (queued by the row
    /// purge, so a run stopped between the two finishes them next time), then forgets them;
    /// returns how many.
    async fn purge_unreferenced_attachments(&self, holder: &str) -> Result<u64> {
        let mut removed = 0;
        loop {
            if !self.renew_purge_lease(holder).await? {
                return Err(lease_lost());
            }
            let keys = self
                .store
                .unreferenced_attachments(&why(), ATTACHMENTS)
                .await?;
            if keys.is_empty() {
                return Ok(removed);
            }
            let mut by_org: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (org, key) in keys {
                self.blobs.delete(&org, BlobKind::Attachment, &key).await?;
                self.store.forget_attachment(&why(), &org, &key).await?;
                removed += 1;
                self.purge.attachments.fetch_add(1, Relaxed);
                by_org.entry(org).or_default().push(key);
            }
            for (org, keys) in by_org {
                self.audit
                    .record_durable(NewAuditEntry {
                        at: self.now(),
                        org_id: Some(org),
                        actor_id: None,
                        key_id: None,
                        action: "purge".into(),
                        object_type: Some("attachment".into()),
                        object_id: None,
                        detail: json!({"unreferenced_attachments": keys}),
                    })
                    .await?;
            }
        }
    }

    /// Removes a claimed project's experiments, datasets, prompts and logs, then its record;
    /// `None` while something of it remains for a later run.
    async fn purge_project(&self, holder: &str, e: &Expired) -> Result<Option<Removed>> {
        let mut total = Removed::default();
        loop {
            let contents = self
                .store
                .project_contents(&why(), &e.project_id, LISTED)
                .await?;
            if contents.is_empty() {
                break;
            }
            let mut progress = false;
            for (kind, id) in contents {
                if let Some(r) = self.purge_object(holder, &e.org_id, kind, &id).await? {
                    total.add(r);
                    progress = true;
                }
            }
            if !progress {
                return Ok(None);
            }
        }
        match self
            .purge_object(holder, &e.org_id, ObjectType::ProjectLogs, &e.project_id)
            .await?
        {
            Some(r) => total.add(r),
            None => return Ok(None),
        }
        if !self
            .store
            .forget_project(&why(), &e.org_id, &e.project_id)
            .await?
        {
            return Ok(None);
        }
        Ok(Some(total))
    }

    /// Removes one object's versions, attachments, grants and record; `None` while versions
    /// of it are still in the writer's tail.
    async fn purge_object(
        &self,
        holder: &str,
        org_id: &str,
        kind: ObjectType,
        id: &str,
    ) -> Result<Option<Removed>> {
        let mut removed = Removed::default();
        let mut cursor = None;
        loop {
            if !self.renew_purge_lease(holder).await? {
                return Err(lease_lost());
            }
            let batch = self
                .store
                .purge_versions(&why(), kind, id, &cursor, self.limits.purge_batch_rows)
                .await?;
            if batch.versions == 0 {
                break;
            }
            removed.versions += batch.versions as u64;
            self.purge
                .versions
                .fetch_add(batch.versions as u64, Relaxed);
            cursor = batch.next;
        }
        loop {
            let keys = self
                .store
                .owned_attachments(&why(), org_id, kind, id, ATTACHMENTS)
                .await?;
            if keys.is_empty() {
                break;
            }
            for key in keys {
                self.blobs
                    .delete(org_id, BlobKind::Attachment, &key)
                    .await?;
                self.store.forget_attachment(&why(), org_id, &key).await?;
                removed.attachments += 1;
                self.purge.attachments.fetch_add(1, Relaxed);
            }
        }
        if !self.store.forget_object(&why(), org_id, kind, id).await? {
            return Ok(None);
        }
        Ok(Some(removed))
    }

    async fn audit_purge(&self, e: &Expired, removed: Removed) -> Result<()> {
        let (object_type, object_id) = match &e.object {
            Some((kind, id)) => (kind.as_str(), id.as_str()),
            None => ("project", e.project_id.as_str()),
        };
        self.audit
            .record_durable(NewAuditEntry {
                at: self.now(),
                org_id: Some(e.org_id.clone()),
                actor_id: None,
                key_id: None,
                action: "purge".into(),
                object_type: Some(object_type.into()),
                object_id: Some(object_id.into()),
                detail: json!({
                    "name": e.name,
                    "deleted_at": e.deleted_at,
                    "versions": removed.versions,
                    "attachments": removed.attachments,
                }),
            })
            .await
    }
}
