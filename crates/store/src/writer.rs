//! The row write path, with group commit.
//!
//! Requests hand their rows to one writer task per store. The writer takes every request that
//! is waiting (up to a bound), applies them in one transaction and commits once; only then
//! does any of them get its answer. If anything in the group fails, the transaction rolls
//! back and each request is retried in a transaction of its own, so a bad request fails alone.
//! Each request therefore stays atomic, is acknowledged only once durable, and gets its own
//! `_xact_id`, while concurrent requests share one commit and one fsync.
//!
//! Work that does not depend on stored state (rows written once in a request as a replace
//! that carries `created`, or as a delete) is serialized before it reaches the writer, so the
//! writer's critical section holds only SQL and the merges that must read the stored row.

use crate::access::{NewAuditEntry, append_audit_in};
use crate::db::{NEXT_COUNTER_BY, Pools, with_pool};
use crate::index::{Pending, RowIndex, Version, Written, newer, trace_key};
use crate::rows::{IncomingRow, compress_from, decode_data, encode_data};
use crate::{Result, Store, StoreError};
use holdfast_core::authz::ObjectPass;
use holdfast_core::merge::{self, WriteKind};
use holdfast_core::xact::XactId;
use serde_json::{Map, Value};
use sqlx::QueryBuilder;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Rows per INSERT statement (8 parameters each, well under both backends' limits).
const INSERT_CHUNK: usize = 1000;
/// Most requests one commit takes.
const MAX_GROUP_JOBS: usize = 64;
/// A group stops taking requests once it holds this many rows (a larger request still
/// commits, alone). Smaller groups keep the writer busy: while one commits, the requests that
/// arrive meanwhile form the next. Measured with `bench ingest` (16 clients, 100-row requests):
/// about 19k spans/s with groups of up to 64 requests, about 21k with this bound, also at 64
/// clients.
const MAX_GROUP_ROWS: usize = 1_000;

/// Largest row a write may store (its JSON, before compression): merges cannot grow a row
/// past it, so no merge reads and rewrites more than this per row.
pub const MAX_ROW_BYTES: usize = 8 * 1024 * 1024;
/// Most stored bytes the merges of one request may read inside the writer: with
/// [`MAX_ROW_BYTES`] and linear merges, this bounds how long one request holds the writer
/// that every organization shares.
pub const MAX_MERGE_READ_BYTES: usize = 64 * 1024 * 1024;

struct NewVersion {
    row_id: String,
    root_span_id: Option<String>,
    /// Whether it is a trace's root span (`None` for a deletion).
    root: Option<bool>,
    deleted: bool,
    /// Stored form (see `rows::encode_data`).
    data: Vec<u8>,
}

/// One object's share of a request.
struct Group {
    pass: ObjectPass,
    /// Serialized before the transaction.
    ready: Vec<NewVersion>,
    /// Need the stored row (merges, replaces without `created`, ids repeated in the request).
    pending: Vec<IncomingRow>,
}

pub(crate) struct Job {
    /// Empty for a job that only appends audit entries.
    groups: Vec<Group>,
    rows: usize,
    now: String,
    /// Audit entries that commit with the group.
    audit: Vec<NewAuditEntry>,
    /// The request's transaction id; `None` for an audit-only job.
    reply: oneshot::Sender<Result<Option<XactId>>>,
}

pub(crate) type WriterHandle = mpsc::Sender<Job>;

/// Totals of the row writer's group commits, read by `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    commits: std::sync::atomic::AtomicU64,
    jobs: std::sync::atomic::AtomicU64,
    rows: std::sync::atomic::AtomicU64,
    micros: std::sync::atomic::AtomicU64,
    /// Versions not yet in the word and value indexes: those left at start, then those
    /// committed since.
    text_backlog: std::sync::atomic::AtomicI64,
}

impl WriterStats {
    /// Versions not yet in the word and value indexes (on PostgreSQL, in the word index;
    /// zero once this replica finds none waiting), counted at start and kept up to date.
    pub fn text_backlog(&self) -> i64 {
        self.text_backlog
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(0)
    }

    fn record(&self, jobs: usize, rows: usize, took: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.commits.fetch_add(1, Relaxed);
        self.jobs.fetch_add(jobs as u64, Relaxed);
        self.rows.fetch_add(rows as u64, Relaxed);
        self.micros
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// (group commits, requests they held, rows they held, seconds spent committing).
    pub fn totals(&self) -> (u64, u64, u64, f64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.commits.load(Relaxed),
            self.jobs.load(Relaxed),
            self.rows.load(Relaxed),
            self.micros.load(Relaxed) as f64 / 1e6,
        )
    }
}

fn version(
    row_id: &str,
    row: Option<&Map<String, Value>>,
    compress_from: usize,
) -> Result<NewVersion> {
    Ok(match row {
        Some(r) => {
            let json = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if json.len() > MAX_ROW_BYTES {
                return Err(StoreError::InvalidRow(format!(
                    "row {row_id:?} would be {} bytes; a row may hold at most {MAX_ROW_BYTES}",
                    json.len()
                )));
            }
            NewVersion {
                row_id: row_id.to_owned(),
                root_span_id: r
                    .get("root_span_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                root: Some(holdfast_core::merge::is_root_span(r)),
                deleted: false,
                data: encode_data(json, compress_from),
            }
        }
        None => NewVersion {
            row_id: row_id.to_owned(),
            root_span_id: None,
            root: None,
            deleted: true,
            data: encode_data(
                serde_json::json!({ "id": row_id }).to_string(),
                compress_from,
            ),
        },
    })
}

fn finish(row: &mut Map<String, Value>, row_id: &str, now: &str) {
    row.insert("id".into(), Value::String(row_id.to_owned()));
    if row.get("created").is_none_or(Value::is_null) {
        row.insert("created".into(), Value::String(now.to_owned()));
    }
}

fn prepare(
    pass: ObjectPass,
    rows: Vec<IncomingRow>,
    now: &str,
    compress_from: usize,
) -> Result<Group> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in &rows {
        *seen.entry(r.row_id.as_str()).or_default() += 1;
    }
    let independent: Vec<bool> = rows
        .iter()
        .map(|r| {
            seen.get(r.row_id.as_str()) == Some(&1)
                && match r.control.kind {
                    WriteKind::Delete => true,
                    WriteKind::Replace => r.data.get("created").is_some_and(|c| !c.is_null()),
                    WriteKind::Merge => false,
                }
        })
        .collect();
    let mut group = Group {
        pass,
        ready: Vec::new(),
        pending: Vec::new(),
    };
    for (row, independent) in rows.into_iter().zip(independent) {
        if independent {
            let mut next = merge::apply(None, row.data, &row.control)
                .map_err(|e| StoreError::InvalidRow(format!("row {:?}: {e}", row.row_id)))?;
            if let Some(r) = next.as_mut() {
                finish(r, &row.row_id, now);
            }
            group
                .ready
                .push(version(&row.row_id, next.as_ref(), compress_from)?);
        } else {
            group.pending.push(row);
        }
    }
    Ok(group)
}

impl Store {
    /// Applies one request's rows atomically and returns the transaction id they got, once
    /// the commit that holds them is durable.
    pub async fn write_rows(
        &self,
        writes: Vec<(ObjectPass, Vec<IncomingRow>)>,
        now: &str,
    ) -> Result<XactId> {
        self.write_rows_audited(writes, now, Vec::new()).await
    }

    /// [`Store::write_rows`], with audit entries committed in the same transaction as the
    /// rows: the change and its entry are stored together or not at all.
    pub async fn write_rows_audited(
        &self,
        writes: Vec<(ObjectPass, Vec<IncomingRow>)>,
        now: &str,
        audit: Vec<NewAuditEntry>,
    ) -> Result<XactId> {
        if writes.iter().any(|(pass, _)| !pass.permission().writes()) {
            return Err(StoreError::WrongPermission);
        }
        let rows = writes.iter().map(|(_, r)| r.len()).sum();
        let from = compress_from(&self.write);
        let groups = writes
            .into_iter()
            .map(|(pass, rows)| prepare(pass, rows, now, from))
            .collect::<Result<Vec<_>>>()?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            groups,
            rows,
            now: now.to_owned(),
            audit,
            reply,
        };
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer
            .await
            .map_err(|_| StoreError::WriterStopped)??
            .ok_or_else(|| StoreError::WriteFailed("no transaction id".into()))
    }

    /// Waits for the row writer to take and commit an empty job (a readiness check); an
    /// error when it has stopped.
    pub async fn ping_writer(&self) -> Result<()> {
        self.submit_audit_only(Vec::new()).await
    }

    /// What the row writer has done since start.
    pub fn writer_stats(&self) -> &WriterStats {
        &self.writer_stats
    }

    /// Versions committed but not yet in the row index; they are read from memory until a
    /// catch-up writes them, so a growing number means catch-ups fail.
    pub fn index_lag(&self) -> usize {
        self.index.lag()
    }

    /// A trivial read (a readiness check).
    pub async fn ping(&self) -> Result<()> {
        crate::db::with_pool!(&self.read, |p, DB| {
            sqlx::query("SELECT 1").execute(p).await?;
            Ok(())
        })
    }

    /// Appends audit entries with the next group commit; returns once they are durable.
    pub(crate) async fn write_audit(&self, audit: Vec<NewAuditEntry>) -> Result<()> {
        if audit.is_empty() {
            return Ok(());
        }
        self.submit_audit_only(audit).await
    }

    /// Hands the writer a job without rows and waits for its commit.
    async fn submit_audit_only(&self, audit: Vec<NewAuditEntry>) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            groups: Vec::new(),
            rows: 0,
            now: String::new(),
            audit,
            reply,
        };
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer
            .await
            .map_err(|_| StoreError::WriterStopped)?
            .map(|_| ())
    }
}

/// Starts the writer task for a store's write pool.
pub(crate) fn spawn_writer(
    pools: Pools,
    index: Arc<RowIndex>,
    audit_key: crate::db::AuditKey,
    stats: Arc<WriterStats>,
) -> Result<WriterHandle> {
    let (tx, rx) = mpsc::channel::<Job>(1024);
    // The writer gets a thread and a runtime of its own: on the shared runtime it would wait
    // in line behind request handlers (JSON parsing) between its SQL statements, leaving the
    // database idle.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::WriteFailed(format!("cannot start the writer: {e}")))?;
    std::thread::Builder::new()
        .name("holdfast-writer".into())
        .spawn(move || runtime.block_on(writer_loop(pools, index, audit_key, stats, rx)))
        .map_err(|e| StoreError::WriteFailed(format!("cannot start the writer: {e}")))?;
    Ok(tx)
}

async fn writer_loop(
    pools: Pools,
    index: Arc<RowIndex>,
    audit_key: crate::db::AuditKey,
    stats: Arc<WriterStats>,
    mut rx: mpsc::Receiver<Job>,
) {
    let (mut commit_time, mut text_time) = (Duration::ZERO, Duration::ZERO);
    // When a group with rows last committed.
    let mut rows_at = std::time::Instant::now();
    // Versions are indexed for search after their commit (both stores; see `search`).
    let after_commit = index.deferred() || crate::search::lists_words(&pools);
    // What an earlier run (or an upgrade that rebuilds an index) left to index counts too.
    if after_commit {
        match crate::search::index_lag(&pools).await {
            Ok(lag) => stats
                .text_backlog
                .store(lag, std::sync::atomic::Ordering::Relaxed),
            Err(e) if closing(&e) => {}
            Err(e) => tracing::warn!(error = %e, "cannot count the versions left to index"),
        }
    }
    // While busy, indexing gets at most this share of the writer's time: a tenth on the
    // embedded store; a twentieth on PostgreSQL, whose GIN inserts also take the database's
    // CPU from the commits (with a tenth: 14.9% less ingest, 50k spans, 16 clients).
    let busy_share = if crate::search::lists_words(&pools) {
        20
    } else {
        10
    };
    loop {
        let first = if after_commit {
            match tokio::time::timeout(index.idle(), rx.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => break,
                Err(_) => {
                    if index.needs_catch_up(true) {
                        catch_up(&pools, &index).await;
                    }
                    text_time += index_while_idle(&pools, &index, &stats, &rx).await;
                    continue;
                }
            }
        } else {
            match rx.recv().await {
                Some(job) => job,
                None => break,
            }
        };
        let mut rows = first.rows;
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP_JOBS && rows < MAX_GROUP_ROWS {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.rows;
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let results = commit_group(&pools, &index, &audit_key, &jobs).await;
        let took = started.elapsed();
        stats.record(jobs.len(), rows, took);
        commit_time += took;
        if after_commit {
            stats
                .text_backlog
                .fetch_add(rows as i64, std::sync::atomic::Ordering::Relaxed);
        }
        for (job, result) in jobs.into_iter().zip(results) {
            // A requester that went away no longer needs its answer.
            let _ = job.reply.send(result);
        }
        // A group without rows (audit entries of reads, readiness checks) after `idle`
        // without rows counts as idle for indexing: such requests may come more often than
        // `idle` apart for as long as the server is used, and would otherwise keep the tail
        // in memory until it is full and the indexes behind.
        if rows > 0 {
            rows_at = std::time::Instant::now();
        }
        let quiet = rows == 0 && rows_at.elapsed() >= index.idle();
        if index.needs_catch_up(quiet) {
            catch_up(&pools, &index).await;
        }
        // Quiet (only requests without rows, such as a page's audit entries, for `idle`):
        // as when idle, so that a page refreshing itself does not hold indexing to a small
        // batch per request. Busy: indexing gets at most its share of the writer's time.
        if after_commit && quiet {
            text_time += index_while_idle(&pools, &index, &stats, &rx).await;
        } else if after_commit && text_time < commit_time / busy_share {
            let t0 = std::time::Instant::now();
            catch_up_indexes(&pools, &index, TEXT_BATCH_BUSY, &stats).await;
            text_time += t0.elapsed();
        }
    }
}

/// Indexes words and values in batches of [`TEXT_BATCH_IDLE`] until a request waits or
/// nothing is left; the time it took.
async fn index_while_idle(
    pools: &Pools,
    index: &RowIndex,
    stats: &WriterStats,
    rx: &mpsc::Receiver<Job>,
) -> Duration {
    let t0 = std::time::Instant::now();
    while catch_up_indexes(pools, index, TEXT_BATCH_IDLE, stats).await && rx.is_empty() {}
    t0.elapsed()
}

/// Whether `e` comes of the store's pools being closed ([`crate::Store::close`], as a process
/// exits): work left for later then, not a failure to report.
fn closing(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(sqlx::Error::PoolClosed))
}

/// Versions the writer indexes at a time (words and values): when idle, and between commits.
const TEXT_BATCH_IDLE: i64 = 2_000;
const TEXT_BATCH_BUSY: i64 = 200;

/// Adds a batch of versions to the word and value indexes; whether more are waiting. A
/// failure is logged and tried again later (queries read unindexed versions meanwhile).
async fn catch_up_indexes(
    pools: &Pools,
    index: &RowIndex,
    max_rows: i64,
    stats: &WriterStats,
) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match crate::search::catch_up_indexes(pools, index, max_rows).await {
        Ok((indexed, more)) => {
            if more {
                stats.text_backlog.fetch_sub(indexed, Relaxed);
            } else {
                stats.text_backlog.store(0, Relaxed);
            }
            more
        }
        Err(e) if closing(&e) => {
            tracing::debug!("indexing words and values stopped: the store is closing");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "indexing words and values failed");
            false
        }
    }
}

/// Commits a group of requests (see the module docs). The versions written are in the index
/// (or its tail) before any requester hears back.
async fn commit_group(
    pools: &Pools,
    index: &RowIndex,
    audit_key: &crate::db::AuditKey,
    jobs: &[Job],
) -> Vec<Result<Option<XactId>>> {
    let all: Vec<&Job> = jobs.iter().collect();
    match try_commit_group(pools, index, audit_key, &all).await {
        Ok((xacts, committed)) => {
            index.add(committed);
            xacts.into_iter().map(Ok).collect()
        }
        Err(e) if jobs.len() == 1 => vec![Err(e)],
        Err(e) => {
            // Something in the group failed: commit each request alone, so that only the
            // failing ones fail. Rolled-back counters are reused, so ids stay gapless.
            tracing::warn!(error = %e, "group commit failed; retrying its requests one by one");
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                let one = try_commit_group(pools, index, audit_key, &[job]).await;
                out.push(one.and_then(|(mut x, committed)| {
                    index.add(committed);
                    x.pop()
                        .ok_or_else(|| StoreError::WriteFailed("no result".into()))
                }));
            }
            out
        }
    }
}

/// Inserts a catch-up's versions into `row_index` and `trace_index`, and records in
/// `trace_exits` each version whose row's previous version was filed under another trace
/// (see `rows::read_trace`); indexing a version twice is harmless.
///
/// The previous version is looked up after the whole batch is in `row_index`, so a row's
/// versions in one batch are compared with each other too. The lookup lands on the index
/// pages the insert has just written.
macro_rules! insert_pending {
    ($pending:expr, $exec:expr, $DB:ty) => {
        for chunk in $pending.rows.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<$DB>::new(
                "INSERT INTO row_index (object_type, object_id, row_id, xact_id, seq, is_deleted, trace) ",
            );
            qb.push_values(chunk, |mut b, ((t, o, r), v, trace)| {
                b.push_bind(t.as_str())
                    .push_bind(o.as_str())
                    .push_bind(r.as_str())
                    .push_bind(v.xact)
                    .push_bind(v.seq)
                    .push_bind(v.deleted)
                    .push_bind(*trace);
            });
            // A version indexed again gets its trace key (an upgrade may have indexed it
            // before the store kept them).
            qb.push(
                " ON CONFLICT (object_type, object_id, row_id, xact_id) \
                 DO UPDATE SET trace = excluded.trace",
            );
            qb.build().execute($exec).await?;
        }
        for chunk in $pending.rows.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<$DB>::new(
                "WITH p (object_type, object_id, row_id, xact_id, trace) AS (",
            );
            qb.push_values(chunk, |mut b, ((t, o, r), v, trace)| {
                b.push_bind(t.as_str())
                    .push_bind(o.as_str())
                    .push_bind(r.as_str())
                    .push_bind(v.xact)
                    .push_bind(*trace);
            });
            qb.push(
                ") INSERT INTO trace_exits (object_type, object_id, row_id, xact_id, trace) \
                 SELECT object_type, object_id, row_id, xact_id, prev FROM (\
                 SELECT p.object_type, p.object_id, p.row_id, p.xact_id, p.trace, \
                 (SELECT x.trace FROM row_index x WHERE x.object_type = p.object_type \
                  AND x.object_id = p.object_id AND x.row_id = p.row_id \
                  AND x.xact_id < p.xact_id ORDER BY x.xact_id DESC LIMIT 1) AS prev \
                 FROM p) q WHERE prev IS NOT NULL AND (trace IS NULL OR trace <> prev) \
                 ON CONFLICT DO NOTHING",
            );
            qb.build().execute($exec).await?;
        }
        for chunk in $pending.traces.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<$DB>::new("INSERT INTO trace_index (trace, seq) ");
            qb.push_values(chunk, |mut b, (trace, seq)| {
                b.push_bind(*trace).push_bind(*seq);
            });
            qb.push(" ON CONFLICT DO NOTHING");
            qb.build().execute($exec).await?;
        }
    };
}

/// Adds the tail to `row_index` and `trace_index` in one sorted batch. On failure the tail
/// stays and the next catch-up tries again; reads stay correct either way.
async fn catch_up(pools: &Pools, index: &RowIndex) {
    let pending = index.pending();
    let Some(upto) = pending.rows.iter().map(|(_, v, _)| v.xact).max() else {
        return;
    };
    let started = std::time::Instant::now();
    match index_versions(pools, &pending, upto).await {
        Ok(()) => {
            index.caught_up();
            tracing::debug!(
                versions = pending.rows.len(),
                ms = started.elapsed().as_millis(),
                "indexed the row tail"
            );
        }
        Err(e) if closing(&e) => {
            tracing::debug!("indexing the row tail stopped: the store is closing");
        }
        Err(e) => {
            tracing::error!(error = %e, versions = pending.rows.len(), "indexing the row tail failed");
        }
    }
}

pub(crate) async fn index_versions(pools: &Pools, pending: &Pending, upto: i64) -> Result<()> {
    with_pool!(pools, |p, DB| {
        let mut tx = p.begin().await?;
        insert_pending!(pending, &mut *tx, DB);
        sqlx::query(ADVANCE_INDEXED)
            .bind(upto)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    })
}

/// Versions read back from `rows`: (object type, object id, row id, xact, seq, deleted, root).
type StoredVersion = (String, String, String, i64, i64, bool, Option<String>);

fn written((t, o, r, xact, seq, deleted, root): StoredVersion) -> Written {
    Written {
        trace: root.map(|root| trace_key(&t, &o, &root)),
        key: (t, o, r),
        version: Version { xact, seq, deleted },
    }
}

/// Versions after `from` read per statement while a store that opens indexes them.
const START_CHUNK: i64 = 20_000;

/// Indexes the versions that are not yet in `row_index` and `trace_index` (embedded store,
/// when it opens). The previous run's tail, or, when another process (the serving one) has
/// the store open, the versions that process holds in its tail: indexing them twice is
/// harmless, and this process then reads everything committed before it opened. Returns the
/// newest `_xact_id` indexed.
///
/// Each statement commits on its own, so that each waits for the write lock rather than
/// failing on a read snapshot that a concurrent writer made stale.
pub(crate) async fn index_after_start(pools: &Pools) -> Result<i64> {
    with_pool!(pools, |p, DB| {
        let from: i64 =
            sqlx::query_scalar("SELECT value FROM counters WHERE name = 'indexed_xact'")
                .fetch_one(p)
                .await?;
        let upto: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(xact_id), $1) FROM rows")
            .bind(from)
            .fetch_one(p)
            .await?;
        if upto <= from {
            return Ok(upto);
        }
        let mut after_seq: i64 =
            sqlx::query_scalar("SELECT COALESCE(MIN(seq), 1) - 1 FROM rows WHERE xact_id > $1")
                .bind(from)
                .fetch_one(p)
                .await?;
        loop {
            let found: Vec<StoredVersion> = sqlx::query_as(
                "SELECT object_type, object_id, row_id, xact_id, seq, is_deleted, root_span_id \
                 FROM rows WHERE seq > $1 AND xact_id <= $2 ORDER BY seq LIMIT $3",
            )
            .bind(after_seq)
            .bind(upto)
            .bind(START_CHUNK)
            .fetch_all(p)
            .await?;
            let Some(last) = found.last().map(|f| f.4) else {
                break;
            };
            after_seq = last;
            let mut pending = Pending::default();
            for w in found.into_iter().map(written) {
                if w.version.xact > from {
                    if let Some(t) = w.trace {
                        pending.traces.push((t, w.version.seq));
                    }
                    pending.rows.push((w.key, w.version, w.trace));
                }
            }
            pending
                .rows
                .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.xact.cmp(&b.1.xact)));
            pending.traces.sort_unstable();
            insert_pending!(&pending, p, DB);
        }
        sqlx::query(ADVANCE_INDEXED).bind(upto).execute(p).await?;
        Ok(upto)
    })
}

/// On PostgreSQL: records in `trace_exits` each version written from `$1` to `$2` whose row's
/// previous version was filed under another trace (or under none: then it left no trace).
const PG_TRACE_EXITS: &str = "INSERT INTO trace_exits (object_type, object_id, row_id, xact_id, trace) \
     SELECT n.object_type, n.object_id, n.row_id, n.xact_id, \
     holdfast_trace_key(p.object_type, p.object_id, p.root_span_id) \
     FROM rows n CROSS JOIN LATERAL (SELECT x.seq FROM row_index x \
      WHERE x.object_type = n.object_type AND x.object_id = n.object_id \
      AND x.row_id = n.row_id AND x.xact_id < n.xact_id \
      ORDER BY x.xact_id DESC LIMIT 1) prev \
     JOIN rows p ON p.seq = prev.seq \
     WHERE n.xact_id >= $1 AND n.xact_id <= $2 AND p.root_span_id IS NOT NULL \
     AND p.root_span_id IS DISTINCT FROM n.root_span_id \
     ON CONFLICT DO NOTHING";

/// Records that `row_index` holds every version up to `$1`. Never moves back: two processes
/// may index concurrently, and each claim is true on its own.
const ADVANCE_INDEXED: &str =
    "UPDATE counters SET value = $1 WHERE name = 'indexed_xact' AND value < $1";

type Committed = Vec<Written>;

/// The ids of a group's pending rows whose stored version the write needs: merges, and
/// replaces that must keep the stored `created`.
fn stored_rows_needed(group: &Group) -> Vec<&str> {
    group
        .pending
        .iter()
        .filter(|r| match r.control.kind {
            WriteKind::Merge => true,
            WriteKind::Replace => r.data.get("created").is_none_or(Value::is_null),
            WriteKind::Delete => false,
        })
        .map(|r| r.row_id.as_str())
        .collect()
}

/// The newest version of each of `$needed` rows of one object: in the row index, in the
/// index's tail, or written earlier in this transaction (from `$first_xact` on).
macro_rules! latest_versions {
    ($tx:ident, $DB:ident, $index:expr, $object_type:expr, $object_id:expr, $needed:expr,
     $first_xact:expr) => {{
        let (object_type, object_id, needed) = ($object_type, $object_id, $needed);
        let mut latest: HashMap<String, Version> = HashMap::new();
        for chunk in needed.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<$DB>::new(
                "SELECT row_id, xact_id, seq, is_deleted FROM row_index WHERE object_type = ",
            );
            qb.push_bind(object_type);
            qb.push(" AND object_id = ").push_bind(object_id);
            qb.push(" AND row_id IN (");
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            qb.push(
                ") UNION ALL SELECT row_id, xact_id, seq, is_deleted FROM rows WHERE xact_id >= ",
            );
            qb.push_bind($first_xact);
            qb.push(" AND object_type = ").push_bind(object_type);
            qb.push(" AND object_id = ").push_bind(object_id);
            qb.push(" AND row_id IN (");
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            qb.push(")");
            let found: Vec<(String, i64, i64, bool)> =
                qb.build_query_as().fetch_all(&mut *$tx).await?;
            for (row_id, xact, seq, deleted) in found {
                let v = Version { xact, seq, deleted };
                let e = latest.remove(&row_id);
                if let Some(v) = newer(e, Some(v)) {
                    latest.insert(row_id, v);
                }
            }
        }
        if !needed.is_empty() {
            let tail = $index.view();
            for id in needed {
                let t = tail.latest(object_type, object_id, id, i64::MAX);
                if let Some(v) = newer(latest.get(*id).copied(), t) {
                    latest.insert((*id).to_owned(), v);
                }
            }
        }
        latest
    }};
}

/// The stored data of the live versions in `$latest`, by `seq`.
macro_rules! stored_data {
    ($tx:ident, $DB:ident, $org_id:expr, $latest:expr) => {{
        let live: Vec<i64> = $latest
            .values()
            .filter(|v| !v.deleted)
            .map(|v| v.seq)
            .collect();
        let mut data: HashMap<i64, Vec<u8>> = HashMap::new();
        for chunk in live.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<$DB>::new("SELECT seq, data FROM rows WHERE org_id = ");
            qb.push_bind($org_id);
            qb.push(" AND seq IN (");
            let mut sep = qb.separated(", ");
            for seq in chunk {
                sep.push_bind(*seq);
            }
            qb.push(")");
            let found: Vec<(i64, Vec<u8>)> = qb.build_query_as().fetch_all(&mut *$tx).await?;
            data.extend(found);
        }
        data
    }};
}

/// The versions a group's pending rows become, in request order: each merged onto the
/// newest stored version of its row (or onto what the request wrote before it); a row id
/// written twice in one request ends as one version. The stored bytes read count against
/// the request's `merge_read` budget.
fn merge_pending(
    group: &Group,
    now: &str,
    latest: HashMap<String, Version>,
    data: &HashMap<i64, Vec<u8>>,
    merge_read: &mut usize,
    compress_from: usize,
) -> Result<Vec<NewVersion>> {
    let mut current: HashMap<String, Option<Map<String, Value>>> = HashMap::new();
    for (row_id, v) in latest {
        let row = if v.deleted {
            None
        } else {
            let stored = data.get(&v.seq).ok_or_else(|| {
                StoreError::Corrupt(format!("row {row_id}: version {} has no data", v.seq))
            })?;
            *merge_read += stored.len();
            if *merge_read > MAX_MERGE_READ_BYTES {
                return Err(StoreError::InvalidRow(format!(
                    "the request's merges would read more than {MAX_MERGE_READ_BYTES} \
                     bytes of stored rows; send it in smaller requests"
                )));
            }
            Some(decode_data(&row_id, stored)?)
        };
        current.insert(row_id, row);
    }
    let mut order: Vec<&str> = Vec::new();
    let mut ordered: HashSet<&str> = HashSet::new();
    for row in &group.pending {
        let existing = current.get(&row.row_id).and_then(Option::as_ref);
        let mut next = merge::apply(existing, row.data.clone(), &row.control)
            .map_err(|e| StoreError::InvalidRow(format!("row {:?}: {e}", row.row_id)))?;
        if let Some(r) = next.as_mut() {
            finish(r, &row.row_id, now);
        }
        current.insert(row.row_id.clone(), next);
        if ordered.insert(&row.row_id) {
            order.push(&row.row_id);
        }
    }
    order
        .into_iter()
        .map(|id| version(id, current.get(id).and_then(Option::as_ref), compress_from))
        .collect()
}

/// Applies the requests in one transaction; any failure rolls all of them back. Returns each
/// request's transaction id and, on the embedded store, the versions for the index's tail.
async fn try_commit_group(
    pools: &Pools,
    index: &RowIndex,
    audit_key: &crate::db::AuditKey,
    jobs: &[&Job],
) -> Result<(Vec<Option<XactId>>, Committed)> {
    let n = jobs.iter().filter(|j| !j.groups.is_empty()).count();
    let n = i64::try_from(n).map_err(|_| StoreError::XactExhausted)?;
    let xact_of = |counter: i64| {
        u64::try_from(counter)
            .ok()
            .and_then(XactId::from_counter)
            .ok_or(StoreError::XactExhausted)
    };
    with_pool!(pools, |p, DB| {
        let mut tx = p.begin().await?;
        // One counter update hands out consecutive ids to the whole group.
        let last: i64 = if n > 0 {
            sqlx::query_scalar(NEXT_COUNTER_BY)
                .bind(n)
                .bind("xact")
                .fetch_one(&mut *tx)
                .await?
        } else {
            0
        };
        let first_xact = if n > 0 {
            xact_of(last - n + 1)?.as_i64()
        } else {
            0
        };
        let mut results = Vec::with_capacity(jobs.len());
        let mut buffer: Vec<InsertRow<'_>> = Vec::new();
        // Inserts are batched across requests; they are flushed before any read of stored
        // rows, so a merge always sees what earlier requests of the group wrote.
        // PostgreSQL lists each live version for its word index in the same statement; the
        // writer indexes the listed versions after the commit, as it does the embedded
        // store's (see `search`).
        let list_words = crate::search::lists_words(pools);
        macro_rules! flush {
            () => {
                for chunk in buffer.chunks(INSERT_CHUNK) {
                    let mut qb = QueryBuilder::<DB>::new(if list_words {
                        "WITH stored AS (INSERT INTO rows (org_id, object_type, object_id, row_id, xact_id, root_span_id, is_root, is_deleted, data) "
                    } else {
                        "INSERT INTO rows (org_id, object_type, object_id, row_id, xact_id, root_span_id, is_root, is_deleted, data) "
                    });
                    qb.push_values(chunk, |mut b, r| {
                        let v = r.version();
                        b.push_bind(r.pass.org_id())
                            .push_bind(r.pass.object_type().as_str())
                            .push_bind(r.pass.object_id())
                            .push_bind(v.row_id.as_str())
                            .push_bind(r.xact)
                            .push_bind(v.root_span_id.as_deref())
                            .push_bind(v.root)
                            .push_bind(v.deleted)
                            .push_bind(v.data.as_slice());
                    });
                    if list_words {
                        qb.push(
                            " RETURNING seq, is_deleted) INSERT INTO row_words_pending (seq) \
                             SELECT seq FROM stored WHERE NOT is_deleted",
                        );
                    }
                    qb.build().execute(&mut *tx).await?;
                    // Deleting versions are remembered with their time, for the purge.
                    let deleting: Vec<&InsertRow<'_>> =
                        chunk.iter().filter(|r| r.version().deleted).collect();
                    if !deleting.is_empty() {
                        let mut qb = QueryBuilder::<DB>::new(
                            "INSERT INTO row_deletions (object_type, object_id, row_id, xact_id, deleted_at) ",
                        );
                        qb.push_values(deleting, |mut b, r| {
                            b.push_bind(r.pass.object_type().as_str())
                                .push_bind(r.pass.object_id())
                                .push_bind(r.version().row_id.as_str())
                                .push_bind(r.xact)
                                .push_bind(r.now);
                        });
                        qb.push(" ON CONFLICT DO NOTHING");
                        qb.build().execute(&mut *tx).await?;
                    }
                }
                buffer.clear();
            };
        }
        let mut i = 0;
        for job in jobs {
            if job.groups.is_empty() {
                results.push(None);
                continue;
            }
            let xact = xact_of(last - n + 1 + i)?;
            i += 1;
            let mut merge_read = 0usize;
            for group in &job.groups {
                let pass = &group.pass;
                let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
                let needed = stored_rows_needed(group);
                if !needed.is_empty() {
                    flush!();
                }
                // The newest version of each: indexed, in the tail, or written earlier in
                // this transaction.
                let latest =
                    latest_versions!(tx, DB, index, object_type, object_id, &needed, first_xact);
                let data = stored_data!(tx, DB, pass.org_id(), &latest);
                let computed = merge_pending(
                    group,
                    &job.now,
                    latest,
                    &data,
                    &mut merge_read,
                    compress_from(pools),
                )?;
                let xact = xact.as_i64();
                buffer.extend(group.ready.iter().map(|v| InsertRow {
                    pass,
                    xact,
                    now: &job.now,
                    version: Source::Ready(v),
                }));
                buffer.extend(computed.into_iter().map(|v| InsertRow {
                    pass,
                    xact,
                    now: &job.now,
                    version: Source::Computed(v),
                }));
            }
            results.push(Some(xact));
        }
        flush!();
        let mut committed = Vec::new();
        if n > 0 {
            let last_xact = xact_of(last)?.as_i64();
            if index.deferred() {
                let stored: Vec<StoredVersion> = sqlx::query_as(
                    "SELECT object_type, object_id, row_id, xact_id, seq, is_deleted, root_span_id \
                     FROM rows WHERE xact_id >= $1 AND xact_id <= $2",
                )
                .bind(first_xact)
                .bind(last_xact)
                .fetch_all(&mut *tx)
                .await?;
                committed = stored.into_iter().map(written).collect();
            } else {
                sqlx::query(
                    "INSERT INTO row_index (object_type, object_id, row_id, xact_id, seq, is_deleted) \
                     SELECT object_type, object_id, row_id, xact_id, seq, is_deleted \
                     FROM rows WHERE xact_id >= $1 AND xact_id <= $2",
                )
                .bind(first_xact)
                .bind(last_xact)
                .execute(&mut *tx)
                .await?;
                // Versions whose row's previous version was in another trace (see
                // `rows::read_trace`). Writers hold the `xact` counter's row until they
                // commit, so every earlier version is visible here.
                sqlx::query(PG_TRACE_EXITS)
                    .bind(first_xact)
                    .bind(last_xact)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let audit: Vec<NewAuditEntry> = jobs.iter().flat_map(|j| j.audit.iter().cloned()).collect();
        if !audit.is_empty() {
            append_audit_in!(tx, DB, &audit, audit_key);
        }
        tx.commit().await?;
        Ok((results, committed))
    })
}

/// A version waiting to be inserted: serialized before the transaction, or computed in it.
enum Source<'a> {
    Ready(&'a NewVersion),
    Computed(NewVersion),
}

struct InsertRow<'a> {
    pass: &'a ObjectPass,
    xact: i64,
    /// The request's time (a deletion's, for `row_deletions`).
    now: &'a str,
    version: Source<'a>,
}

impl InsertRow<'_> {
    fn version(&self) -> &NewVersion {
        match &self.version {
            Source::Ready(v) => v,
            Source::Computed(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{dataset_pass, incoming, temp_dir};
    use serde_json::json;

    /// A request that fails inside the writer (here: a merge onto a corrupt stored row) fails
    /// alone; requests committed in the same group still land.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_failing_request_does_not_take_its_group_down() {
        let dir = temp_dir("writer");
        let store = Store::open_sqlite(&dir.join("t.db"), None).await.unwrap();
        let pass = dataset_pass("d");
        // A stored row whose data is not JSON.
        if let Pools::Sqlite(p) = &store.write {
            sqlx::query(
                "INSERT INTO rows (org_id, object_type, object_id, row_id, xact_id, root_span_id, is_deleted, data) \
                 VALUES ('o', 'dataset', 'd', 'bad', $1, NULL, FALSE, 'not json')",
            )
            .bind(XactId::from_counter(1).unwrap().as_i64())
            .execute(p)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO row_index (object_type, object_id, row_id, xact_id, seq, is_deleted) \
                 SELECT object_type, object_id, row_id, xact_id, seq, is_deleted FROM rows",
            )
            .execute(p)
            .await
            .unwrap();
        }
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (store, pass) = (store.clone(), pass.clone());
            tasks.push(tokio::spawn(async move {
                let row = if i == 7 {
                    json!({"id": "bad", "_is_merge": true, "input": 1})
                } else {
                    json!({"id": format!("good{i}"), "created": "t", "input": i})
                };
                store
                    .write_rows(vec![(pass, vec![incoming(row)])], "now")
                    .await
            }));
        }
        let mut ok = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => assert!(
                    i == 7 && matches!(e, StoreError::Corrupt(_)),
                    "request {i}: {e}"
                ),
            }
        }
        assert_eq!(ok, 19);
        if let Pools::Sqlite(p) = &store.write {
            let good: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM rows WHERE row_id LIKE 'good%'")
                    .fetch_one(p)
                    .await
                    .unwrap();
            assert_eq!(good, 19);
            let bad: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rows WHERE row_id = 'bad'")
                .fetch_one(p)
                .await
                .unwrap();
            assert_eq!(bad, 1, "the failed merge wrote nothing");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Requests that write no rows (each read's audit entry, readiness checks) do not keep
    /// the writer from indexing: with one every 100 ms, never 500 ms apart, the row index
    /// tail and the word and value indexes still catch up once no row has been written for
    /// that long, on both stores.
    #[tokio::test(flavor = "multi_thread")]
    async fn audit_only_requests_do_not_hold_indexing_back() {
        for (store, db) in crate::testing::both_stores("audit_only").await {
            let pass = dataset_pass("d");
            let rows = (0..500)
                .map(|i| {
                    incoming(
                        json!({"id": format!("r{i}"), "input": "some words", "scores": {"s": 0.5}}),
                    )
                })
                .collect();
            store
                .write_rows(vec![(pass.clone(), rows)], "now")
                .await
                .unwrap();
            let mut caught_up = false;
            for _ in 0..100 {
                store.ping_writer().await.unwrap();
                if store.index_lag() == 0 && store.text_index_lag().await.unwrap() == 0 {
                    caught_up = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert!(
                caught_up,
                "tail {}, words and values {}",
                store.index_lag(),
                store.text_index_lag().await.unwrap()
            );
            store.close().await;
            if let Some(db) = db {
                db.drop_database().await;
            }
        }
    }
}
