//! Versioned rows. Every write stores a full new version of each row it touches under a fresh
//! `_xact_id`; reads pick, per row, the newest version at or below the requested one, and
//! hide rows whose newest version is a delete.

use crate::db::{Pools, with_pool};
use crate::index::{Version, newer, trace_key};
use crate::{Result, Store, StoreError};
use holdfast_core::authz::ObjectPass;
use holdfast_core::merge::RowControl;
use holdfast_core::xact::XactId;
use serde_json::{Map, Value};
use sqlx::QueryBuilder;
use std::collections::{BTreeMap, HashMap};

/// One row of a write, with its control fields already taken out.
#[derive(Debug, Clone)]
pub struct IncomingRow {
    pub row_id: String,
    pub control: RowControl,
    pub data: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub row_id: String,
    pub xact_id: XactId,
    pub data: Map<String, Value>,
}

#[derive(Debug, Clone, Default)]
pub struct RowQuery {
    /// Read the object as it was at this transaction.
    pub as_of: Option<XactId>,
    /// Rows are returned in row-id order; continue after this one.
    pub after_row_id: Option<String>,
    /// Only the rows of this trace.
    pub root_span_id: Option<String>,
    pub limit: i64,
}

/// What a read of one trace depends on: how many versions are filed under it, how many of
/// its rows' versions left it (see `trace_exits`), and the newest of all those. On the
/// embedded store the writer's tail is counted with the tables: its versions filed under the
/// trace, and those of the read's rows that take them out of it; a catch-up moves them to
/// the tables, where they count the same. A version filed under the trace or leaving it
/// changes the stamp (the counts and the newest), and so does a purge (the counts). So while
/// a trace's stamp stays the same, reads of it at or after a transaction that saw that
/// stamp return the same rows; see [`Store::trace_stamp`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceStamp {
    versions: i64,
    exits: i64,
    newest: i64,
}

impl TraceStamp {
    /// The newest `_xact_id` the stamp counts: a read at an older snapshot may differ.
    pub fn newest(&self) -> i64 {
        self.newest
    }
}

/// A whole trace as [`Store::read_whole_trace`] read it.
#[derive(Debug)]
pub struct TraceRead {
    /// Its live rows, in row-id order.
    pub rows: Vec<StoredRow>,
    /// The transaction the read saw the store at: every version of the trace's rows (filed
    /// under it or leaving it) at or before it was read, none after it. So when a
    /// [`TraceStamp`] made after the read counts nothing newer, the rows are the trace's
    /// as that stamp counts it.
    pub seen: i64,
    /// The rows that were in the trace and left it (deleted, or moved under another root)
    /// by `seen`. A stamp made with these and `rows` counts a row's leaving the same while
    /// it is in the writer's tail and once indexed.
    pub left: Vec<String>,
}

/// A version filed under a trace (row id, `_xact_id`, deleted, stored data) or one that left
/// it (no data: see `trace_exits`), and the statement's snapshot (`counters.xact`).
type TraceVersion = (String, i64, bool, Option<Vec<u8>>, i64);

/// At most this many tail versions of one trace are looked up by `seq` (statements take at
/// most 32,766 parameters on SQLite).
const TAIL_SEQS_LISTED: usize = 1000;

/// Row data is stored as JSON; large rows are compressed with zstd when that makes them
/// smaller. A stored value
/// is a zstd frame when it starts with the frame's magic number, which JSON text never does.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Fast compression: the writer compresses rows a merge produced on its own thread.
const ZSTD_LEVEL: i32 = 1;
/// On the embedded store, rows shorter than this are stored as they are. On typical spans (0.2–8 KB) zstd cost more
/// CPU than the smaller writes saved: `bench ingest`, 1M spans encrypted, spent 80–84 s of
/// server CPU compressing every row against 55–63 s storing them raw, and ingested 7–20%
/// less (2026-11-30). Compression gets cheaper per byte and better as rows grow (on this
/// machine: 1.5× at 91 MB/s below 1 KB, 2× at 143 MB/s for 4–8 KB, 4.5× at 290 MB/s for
/// 25 KB of prose), so long conversations and documents are still compressed.
const COMPRESS_FROM: usize = 8 * 1024;

/// The size from which a backend's rows are compressed. PostgreSQL compresses values over
/// about 2 KB itself (TOAST, with pglz), which costs it more than zstd here: 100k spans
/// ingested at 6.4k spans/s with raw rows against 7.2–7.6k with every row compressed
/// (2026-11-30), so there every row is.
pub(crate) fn compress_from(pools: &Pools) -> usize {
    match pools {
        Pools::Sqlite(_) => COMPRESS_FROM,
        Pools::Postgres(_) => 0,
    }
}

thread_local! {
    /// A compression context per thread: making one costs more than compressing a row.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok());
}

thread_local! {
    /// A decompression context per thread: making one (it allocates and clears its tables)
    /// cost a third of a 10,000-span trace's read on PostgreSQL, whose rows are all
    /// compressed.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// A stored zstd frame's content: with the thread's context into a buffer of the size the
/// frame declares (every frame the writer makes declares it) when that is at most
/// [`crate::MAX_ROW_BYTES`]; otherwise, or when that fails, with a stream decoder.
fn decompress(stored: &[u8]) -> std::io::Result<Vec<u8>> {
    let declared = zstd::zstd_safe::get_frame_content_size(stored)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n <= crate::MAX_ROW_BYTES);
    if let Some(size) = declared {
        let out = DECOMPRESSOR.with(|d| {
            d.borrow_mut()
                .as_mut()
                .and_then(|d| d.decompress(stored, size).ok())
        });
        if let Some(out) = out.filter(|o| o.len() == size) {
            return Ok(out);
        }
    }
    zstd::stream::decode_all(stored)
}

/// The stored form of a row's JSON.
pub(crate) fn encode_data(json: String, compress_from: usize) -> Vec<u8> {
    if json.len() < compress_from {
        return json.into_bytes();
    }
    let compressed = COMPRESSOR.with(|c| {
        c.borrow_mut()
            .as_mut()
            .and_then(|c| c.compress(json.as_bytes()).ok())
    });
    match compressed {
        Some(z) if z.len() < json.len() => z,
        _ => json.into_bytes(),
    }
}

/// A row's JSON from its stored form.
pub(crate) fn decode_data(row_id: &str, stored: &[u8]) -> Result<Map<String, Value>> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("row {row_id}: {e}"));
    if stored.starts_with(&ZSTD_MAGIC) {
        let json = decompress(stored).map_err(|e| corrupt(&e))?;
        serde_json::from_slice(&json).map_err(|e| corrupt(&e))
    } else {
        serde_json::from_slice(stored).map_err(|e| corrupt(&e))
    }
}

pub(crate) fn decode(row_id: String, xact: i64, stored: &[u8]) -> Result<StoredRow> {
    let xact_id =
        XactId::from_i64(xact).ok_or_else(|| StoreError::Corrupt(format!("xact id {xact}")))?;
    let data = decode_data(&row_id, stored)?;
    Ok(StoredRow {
        row_id,
        xact_id,
        data,
    })
}

/// Rows read together from which [`decode_all`] decodes in parts at once.
const DECODED_IN_PARTS_FROM: usize = 1_000;

/// Decodes rows `(row id, transaction, stored data)` in their order. A long list (a long
/// trace's spans) is decoded in parts at once, one per core ([`crate::db::read_parts`]), on
/// blocking threads: decompressing and parsing a 10,000-span trace is tens of milliseconds
/// of work.
pub(crate) async fn decode_all(rows: Vec<(String, i64, Vec<u8>)>) -> Result<Vec<StoredRow>> {
    let parts = crate::db::read_parts();
    if rows.len() < DECODED_IN_PARTS_FROM || parts < 2 {
        return rows
            .into_iter()
            .map(|(id, x, d)| decode(id, x, &d))
            .collect();
    }
    let per_part = rows.len().div_ceil(parts);
    let mut rows = rows.into_iter();
    let mut running = Vec::with_capacity(parts);
    loop {
        let part: Vec<_> = rows.by_ref().take(per_part).collect();
        if part.is_empty() {
            break;
        }
        running.push(tokio::task::spawn_blocking(move || {
            part.into_iter()
                .map(|(id, x, d)| decode(id, x, &d))
                .collect::<Result<Vec<_>>>()
        }));
    }
    let mut out = Vec::new();
    for part in running {
        match part.await {
            Ok(decoded) => out.extend(decoded?),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only when the runtime shuts down.
            Err(_) => return Err(sqlx::Error::WorkerCrashed.into()),
        }
    }
    Ok(out)
}

/// A page of an object's rows in row-id order, each row's newest version at a snapshot:
/// `$1`, `$2` the object's type and id, `$3` the last row id of the page before (`''` for
/// none: row ids are never empty), `$4` the snapshot's transaction, `$5` the page's length. A walk of `row_index`'s
/// primary key (see [`crate::db::INDEX_WALK`]): PostgreSQL otherwise estimates a few hundred
/// newest versions, reads every row of the object and sorts them (425 ms against 5 ms for a
/// page of 1,000 of 110,000 rows, measured with `EXPLAIN ANALYZE`).
pub(crate) const OBJECT_PAGE: &str = "SELECT ri.row_id, ri.xact_id, ri.seq, ri.is_deleted \
     FROM row_index ri WHERE ri.object_type = $1 AND ri.object_id = $2 AND ri.row_id > $3 \
     AND ri.xact_id = (SELECT MAX(x.xact_id) FROM row_index x \
     WHERE x.object_type = ri.object_type AND x.object_id = ri.object_id \
     AND x.row_id = ri.row_id AND x.xact_id <= $4) ORDER BY ri.row_id LIMIT $5";

/// Versions whose data [`Store::load_versions_with`] reads in one statement: a whole page of
/// an object's rows (`ROWS_PAGE` in the services is 5,000). A page's versions are in row-id
/// order, which is random against `seq`, the table's key, so a statement reads up to every
/// table page of the object once (a reader's page cache does not keep them from one statement
/// to the next). A whole read of a 12,030-span experiment (16 KiB pages, embedded) read 7,953
/// pages in statements of 1,000 versions, 3,105 in statements of 5,000. Well under the bound
/// parameters allowed (SQLite 32,766, PostgreSQL 65,535).
const LOAD_CHUNK: usize = 5_000;

impl Store {
    /// The newest version of each live row of an object, in row-id order.
    pub async fn read_rows(&self, pass: &ObjectPass, q: &RowQuery) -> Result<Vec<StoredRow>> {
        let as_of = q.as_of.map(XactId::as_i64).unwrap_or(i64::MAX);
        let limit = usize::try_from(q.limit).unwrap_or(0);
        loop {
            // A read that overlapped a catch-up (see `index`) may have missed versions.
            let generation = self.index.generation();
            let read = match &q.root_span_id {
                Some(root) => {
                    let after = q.after_row_id.as_deref();
                    self.read_trace(pass, root, after, limit, as_of, generation)
                        .await?
                        .map(|read| read.rows)
                }
                None => self.read_page(pass, q, as_of, limit, generation).await?,
            };
            let Some(rows) = read else { continue };
            return Ok(rows);
        }
    }

    /// Every live row of trace `root` as of `as_of`, in row-id order, with what a
    /// [`TraceStamp`] of the read counts: see [`TraceRead`].
    pub async fn read_whole_trace(
        &self,
        pass: &ObjectPass,
        root: &str,
        as_of: XactId,
    ) -> Result<TraceRead> {
        loop {
            let generation = self.index.generation();
            let read = self
                .read_trace(pass, root, None, usize::MAX, as_of.as_i64(), generation)
                .await?;
            if let Some(read) = read {
                return Ok(read);
            }
        }
    }

    /// The rows of one trace after row `after`, at most `limit` in row-id order: the versions
    /// filed under its root, each kept only if no newer version of its row exists elsewhere
    /// (a delete, or a move to another trace): `trace_exits` lists the indexed versions that
    /// left the trace, the tail the others. The check reads one range of `trace_exits`, not
    /// each row's entries in `row_index` (one random index page per span, which on the
    /// embedded store cost most of a 10,000-span trace's read). Only the rows returned are decoded, and rows
    /// up to `after` are not read, so paging through a long trace does not decode it again
    /// for every page.
    ///
    /// On the embedded store the versions come from `trace_index` and the tail (see `index`).
    /// The tail is read first, and the read is of the store as of the newest version this
    /// process had committed then: versions that commit later are left out of both the
    /// trace and the check for newer versions, so a row updated meanwhile is seen in one
    /// state, never in neither.
    async fn read_trace(
        &self,
        pass: &ObjectPass,
        root: &str,
        after: Option<&str>,
        limit: usize,
        as_of: i64,
        generation: u64,
    ) -> Result<Option<TraceRead>> {
        let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
        let trace = trace_key(object_type, object_id, root);
        let (bound, tail_seqs) = if self.index.deferred() {
            let tail = self.index.view();
            if tail.generation() != generation {
                return Ok(None);
            }
            (as_of.min(tail.committed()), tail.trace(trace).to_vec())
        } else {
            (as_of, Vec::new())
        };
        let found: Vec<TraceVersion> = with_pool!(&self.read, |p, DB| {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT r.row_id, r.xact_id, r.is_deleted, r.data, \
                     (SELECT c.value FROM counters c WHERE c.name = 'xact') \
                     FROM rows r WHERE r.object_type = ",
            );
            qb.push_bind(object_type);
            qb.push(" AND r.object_id = ").push_bind(object_id);
            qb.push(" AND r.org_id = ").push_bind(pass.org_id());
            qb.push(" AND r.root_span_id = ").push_bind(root);
            qb.push(" AND r.xact_id <= ").push_bind(bound);
            // Every version of a row has its row id: a row is wholly in or out.
            if let Some(after) = after {
                qb.push(" AND r.row_id > ").push_bind(after);
            }
            if self.index.deferred() {
                qb.push(" AND (r.seq IN (SELECT t.seq FROM trace_index t WHERE t.trace = ");
                qb.push_bind(trace);
                qb.push(")");
                if tail_seqs.len() > TAIL_SEQS_LISTED {
                    // A trace with this many recent versions: scan the tail's part of the
                    // table (seqs grow with commits) rather than bind them all.
                    let first = tail_seqs.iter().min().copied().unwrap_or_default();
                    qb.push(" OR r.seq >= ").push_bind(first);
                } else if !tail_seqs.is_empty() {
                    qb.push(" OR r.seq IN (");
                    let mut sep = qb.separated(", ");
                    for seq in &tail_seqs {
                        sep.push_bind(*seq);
                    }
                    qb.push(")");
                }
                qb.push(")");
            }
            // The trace's exits, in the same statement (the same snapshot): no data.
            qb.push(
                " UNION ALL SELECT e.row_id, e.xact_id, TRUE, NULL, \
                 (SELECT c.value FROM counters c WHERE c.name = 'xact') \
                 FROM trace_exits e WHERE e.trace = ",
            );
            qb.push_bind(trace);
            qb.push(" AND e.object_type = ").push_bind(object_type);
            qb.push(" AND e.object_id = ").push_bind(object_id);
            qb.push(" AND e.xact_id <= ").push_bind(bound);
            if let Some(after) = after {
                qb.push(" AND e.row_id > ").push_bind(after);
            }
            qb.build_query_as().fetch_all(p).await?
        });
        // Tail versions the statement could not see are not compared with it.
        let Some(snapshot) = found
            .first()
            .and_then(|f| u64::try_from(f.4).ok())
            .and_then(XactId::from_counter)
        else {
            return Ok(Some(TraceRead {
                rows: Vec::new(),
                seen: bound,
                left: Vec::new(),
            }));
        };
        let bound = bound.min(snapshot.as_i64());
        let mut newest: BTreeMap<String, (i64, bool, Vec<u8>)> = BTreeMap::new();
        // Per row, its newest version that left the trace.
        let mut left: HashMap<String, i64> = HashMap::new();
        for (row_id, xact, deleted, data, _) in found {
            match data {
                None => {
                    let e = left.entry(row_id).or_insert(xact);
                    *e = (*e).max(xact);
                }
                Some(data) => {
                    if newest.get(&row_id).is_none_or(|n| n.0 < xact) {
                        newest.insert(row_id, (xact, deleted, data));
                    }
                }
            }
        }
        // The tail's view is a lock guard: it is dropped before the decoding awaits.
        let (keep, gone) = {
            let tail = self.index.view();
            if tail.generation() != generation {
                return Ok(None);
            }
            let (mut keep, mut gone) = (Vec::new(), Vec::new());
            for (row_id, (xact, deleted, data)) in newest {
                if keep.len() >= limit {
                    break;
                }
                let elsewhere = tail
                    .latest(object_type, object_id, &row_id, bound)
                    .map(|v| v.xact)
                    .max(left.get(&row_id).copied());
                if !deleted && elsewhere.is_none_or(|e| e <= xact) {
                    keep.push((row_id, xact, data));
                } else {
                    gone.push(row_id);
                }
            }
            (keep, gone)
        };
        Ok(Some(TraceRead {
            rows: decode_all(keep).await?,
            seen: bound,
            left: gone,
        }))
    }

    /// A page of an object's rows in row-id order: the newest indexed version of each row,
    /// combined with the tail.
    async fn read_page(
        &self,
        pass: &ObjectPass,
        q: &RowQuery,
        as_of: i64,
        limit: usize,
        generation: u64,
    ) -> Result<Option<Vec<StoredRow>>> {
        let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
        let mut live: Vec<(String, Version)> = Vec::new();
        let mut after = q.after_row_id.clone();
        while live.len() < limit {
            let page: Vec<(String, i64, i64, bool)> = with_pool!(&self.read, |p, DB| {
                let query = sqlx::query_as(OBJECT_PAGE)
                    .bind(object_type)
                    .bind(object_id)
                    .bind(after.as_deref().unwrap_or_default())
                    .bind(as_of)
                    .bind(q.limit);
                let told = <DB as crate::values::ValueSql>::INDEX_WALK;
                crate::db::fetch_told!(p, told, query).await?
            });
            let full = page.len() == limit;
            let up_to = if full {
                page.last().map(|r| r.0.clone())
            } else {
                None
            };
            let mut merged: BTreeMap<String, Version> = page
                .into_iter()
                .map(|(id, xact, seq, deleted)| (id, Version { xact, seq, deleted }))
                .collect();
            let tail = self.index.view();
            if tail.generation() != generation {
                return Ok(None);
            }
            let pending = tail.range(
                object_type,
                object_id,
                (after.as_deref(), up_to.as_deref()),
                as_of,
                limit,
            );
            drop(tail);
            for (id, v) in pending {
                let v = newer(merged.get(&id).copied(), Some(v)).unwrap_or(v);
                merged.insert(id, v);
            }
            live.extend(merged.into_iter().filter(|(_, v)| !v.deleted));
            live.truncate(limit);
            match up_to {
                Some(u) => after = Some(u),
                None => break,
            }
        }
        self.load_versions(pass, live).await.map(Some)
    }

    /// The rows of these versions, in the order given: their stored data, read by `seq`.
    pub(crate) async fn load_versions(
        &self,
        pass: &ObjectPass,
        live: Vec<(String, Version)>,
    ) -> Result<Vec<StoredRow>> {
        self.load_versions_with(pass, live, &mut HashMap::new())
            .await
    }

    /// [`Store::load_versions`], taking the data of versions already read from `known` (by
    /// `seq`) instead of reading it again. A long list is decoded in parts at once (see
    /// [`decode_all`]).
    pub(crate) async fn load_versions_with(
        &self,
        pass: &ObjectPass,
        live: Vec<(String, Version)>,
        known: &mut HashMap<i64, Vec<u8>>,
    ) -> Result<Vec<StoredRow>> {
        let mut data: HashMap<i64, Vec<u8>> = live
            .iter()
            .filter_map(|(_, v)| Some((v.seq, known.remove(&v.seq)?)))
            .collect();
        let unread: Vec<&(String, Version)> = live
            .iter()
            .filter(|(_, v)| !data.contains_key(&v.seq))
            .collect();
        for chunk in unread.chunks(LOAD_CHUNK) {
            let found: Vec<(i64, Vec<u8>)> = with_pool!(&self.read, |p, DB| {
                let mut qb = QueryBuilder::<DB>::new("SELECT seq, data FROM rows WHERE org_id = ");
                qb.push_bind(pass.org_id());
                qb.push(" AND seq IN (");
                let mut sep = qb.separated(", ");
                for (_, v) in chunk {
                    sep.push_bind(v.seq);
                }
                qb.push(")");
                qb.build_query_as().fetch_all(p).await?
            });
            data.extend(found);
        }
        let stored = live
            .into_iter()
            .map(|(id, v)| match data.remove(&v.seq) {
                Some(text) => Ok((id, v.xact, text)),
                None => Err(StoreError::Corrupt(format!(
                    "row {id}: version {} has no data",
                    v.seq
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        decode_all(stored).await
    }

    /// The newest transaction whose versions this process is sure to read whole: a snapshot
    /// for a long read (an export) that later reads neither gain nor lose rows under. On
    /// PostgreSQL, and in the process that writes, it is [`Store::current_xact`]. Another
    /// process on the embedded store reads only what was indexed when it opened, and rows
    /// the serving process commits later reach the index while such a read runs; there it is
    /// the newest transaction indexed at open (see the crate's guarantees).
    pub async fn readable_xact(&self) -> Result<Option<XactId>> {
        let current = self.current_xact().await?;
        if !self.index.deferred() {
            return Ok(current);
        }
        let known = self.index.view().committed();
        Ok(current.and_then(|c| {
            if c.as_i64() <= known {
                Some(c)
            } else {
                XactId::from_i64(known)
            }
        }))
    }

    /// The history of an object's rows, oldest first: each version's row id, transaction and
    /// whether it is a delete; at most `limit`, after transaction `after`. Meant for objects
    /// of few rows and many versions (a prompt is one row).
    pub async fn row_versions(
        &self,
        pass: &ObjectPass,
        after: Option<XactId>,
        limit: i64,
    ) -> Result<Vec<(String, XactId, bool)>> {
        let after = after.map_or(0, XactId::as_i64);
        let found: Vec<(String, i64, bool)> = with_pool!(&self.read, |p, DB| {
            sqlx::query_as(
                "SELECT row_id, xact_id, is_deleted FROM rows WHERE object_type = $1 \
                 AND object_id = $2 AND org_id = $3 AND xact_id > $4 \
                 ORDER BY xact_id, row_id LIMIT $5",
            )
            .bind(pass.object_type().as_str())
            .bind(pass.object_id())
            .bind(pass.org_id())
            .bind(after)
            .bind(limit)
            .fetch_all(p)
            .await?
        });
        found
            .into_iter()
            .map(|(row_id, xact, deleted)| {
                let x = XactId::from_i64(xact)
                    .ok_or_else(|| StoreError::Corrupt(format!("xact id {xact}")))?;
                Ok((row_id, x, deleted))
            })
            .collect()
    }

    /// What a read of trace `root` depends on, read without its rows: see [`TraceStamp`].
    /// `rows`: the row ids a read of the trace returned and those it found leaving it (see
    /// [`TraceRead`]): a version of one of them in the tail may take it out of the trace
    /// before a catch-up lists that as an exit. A stamp
    /// made with no rows equals one made with a read's rows only while none of those has a
    /// tail version outside the trace. The tail is read before the tables, and only the
    /// tables' versions older than the tail's count: a version a catch-up moves meanwhile
    /// is counted once, in the tail, and versions committed after the tail was read are not
    /// counted at all (the stamp is of the store as of the tail read).
    pub async fn trace_stamp(
        &self,
        pass: &ObjectPass,
        root: &str,
        rows: &[String],
    ) -> Result<TraceStamp> {
        let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
        let trace = trace_key(object_type, object_id, root);
        let tail = if self.index.deferred() {
            self.index
                .view()
                .trace_stamp(object_type, object_id, trace, rows)
        } else {
            crate::index::TailStamp::default()
        };
        // One pass over each index range: the count and the newest together.
        let found: (i64, Option<i64>, i64, Option<i64>) = with_pool!(&self.read, |p, DB| {
            let mut qb = QueryBuilder::<DB>::new("SELECT v.n, ");
            if self.index.deferred() {
                // Versions get `seq`s in the order of their `_xact_id`s (one writer), so
                // the newest is the one of the greatest `seq`: read from `trace_index`
                // alone, and one row.
                qb.push(
                    "(SELECT r.xact_id FROM rows r WHERE r.seq = v.s), e.n, e.m FROM \
                     (SELECT COUNT(*) AS n, MAX(t.seq) AS s FROM trace_index t \
                     WHERE t.trace = ",
                );
                qb.push_bind(trace);
                qb.push(" AND t.seq < ").push_bind(tail.first_seq);
            } else {
                qb.push(
                    "v.m, e.n, e.m FROM (SELECT COUNT(*) AS n, MAX(r.xact_id) AS m \
                     FROM rows r WHERE r.object_type = ",
                );
                qb.push_bind(object_type);
                qb.push(" AND r.object_id = ").push_bind(object_id);
                qb.push(" AND r.root_span_id = ").push_bind(root);
            }
            qb.push(
                ") v, (SELECT COUNT(*) AS n, MAX(e.xact_id) AS m FROM trace_exits e \
                 WHERE e.trace = ",
            );
            qb.push_bind(trace);
            qb.push(" AND e.object_type = ").push_bind(object_type);
            qb.push(" AND e.object_id = ").push_bind(object_id);
            qb.push(" AND e.xact_id < ").push_bind(tail.first_xact);
            qb.push(") e");
            qb.build_query_as().fetch_one(p).await?
        });
        let (versions, newest, exits, newest_exit) = found;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(TraceStamp {
            versions: versions.saturating_add(count(tail.filed)),
            exits: exits.saturating_add(count(tail.left)),
            newest: newest
                .unwrap_or_default()
                .max(newest_exit.unwrap_or_default())
                .max(tail.newest),
        })
    }

    /// The newest `_xact_id` of any version of an object's rows (a delete too), or `None`
    /// when it has none: what changes whenever the object's rows do. The tail is read before
    /// `row_index`, so a version a catch-up moves meanwhile is seen in one of them; a version
    /// committed meanwhile may be missed (the answer is then older, never newer, than what a
    /// read made after it sees).
    pub async fn newest_xact(&self, pass: &ObjectPass) -> Result<Option<XactId>> {
        let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
        let tail = self.index.view().newest(object_type, object_id);
        let indexed: Option<i64> = with_pool!(&self.read, |p, DB| {
            sqlx::query_scalar::<DB, Option<i64>>(
                "SELECT MAX(xact_id) FROM row_index WHERE object_type = $1 AND object_id = $2",
            )
            .bind(object_type)
            .bind(object_id)
            .fetch_one(p)
            .await?
        });
        Ok(indexed.max(tail).and_then(XactId::from_i64))
    }

    /// The rows of an object with a version after `since` (deleted ones too), sorted by id;
    /// `None` when there are more than `max`. Read from the object's range of `row_index`
    /// (and the tail), so it costs what the object holds, however much the rest of the store
    /// has changed since (unlike [`Store::rows_changed_since`]). The tail is read first, so
    /// a version a catch-up moves meanwhile is seen in one of them; what
    /// [`Store::newest_xact`] saw before is seen here.
    pub async fn object_rows_changed(
        &self,
        pass: &ObjectPass,
        since: XactId,
        max: usize,
    ) -> Result<Option<Vec<String>>> {
        let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
        let since = since.as_i64();
        let over = max.saturating_add(1);
        let mut ids = self
            .index
            .view()
            .changed((object_type, object_id), since, over);
        if ids.len() > max {
            return Ok(None);
        }
        let limit = i64::try_from(over).unwrap_or(i64::MAX);
        let indexed: Vec<String> = with_pool!(&self.read, |p, DB| {
            sqlx::query_scalar::<DB, String>(
                "SELECT DISTINCT row_id FROM row_index WHERE object_type = $1 \
                 AND object_id = $2 AND xact_id > $3 ORDER BY row_id LIMIT $4",
            )
            .bind(object_type)
            .bind(object_id)
            .bind(since)
            .bind(limit)
            .fetch_all(p)
            .await?
        });
        ids.extend(indexed);
        ids.sort();
        ids.dedup();
        Ok((ids.len() <= max).then_some(ids))
    }

    /// The newest committed transaction of the whole store: a snapshot version that
    /// includes every write acknowledged so far. O(1), unlike a MAX over an object's rows.
    pub async fn current_xact(&self) -> Result<Option<XactId>> {
        with_pool!(&self.read, |p, DB| {
            let n: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = $1")
                .bind("xact")
                .fetch_one(p)
                .await?;
            Ok(u64::try_from(n).ok().and_then(XactId::from_counter))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Pools;
    use crate::index::RowIndex;
    use crate::testing::{dataset_pass, incoming, temp_dir};
    use serde_json::json;

    /// Writes rows as one request; its `_xact_id`.
    async fn write(store: &Store, pass: &ObjectPass, rows: Vec<Value>) -> XactId {
        let rows = rows.into_iter().map(incoming).collect();
        store
            .write_rows(vec![(pass.clone(), rows)], "now")
            .await
            .unwrap()
    }

    async fn ids(store: &Store, pass: &ObjectPass, q: RowQuery) -> Vec<String> {
        let rows = store.read_rows(pass, &q).await.unwrap();
        rows.into_iter().map(|r| r.row_id).collect()
    }

    async fn count(store: &Store, table: &str) -> i64 {
        let Pools::Sqlite(p) = &store.write else {
            unreachable!()
        };
        let sql = format!("SELECT COUNT(*) FROM {table}");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(p)
            .await
            .unwrap()
    }

    /// Row id `k` of a list whose ids are in no relation to the order they are written, as
    /// in use (distinct for every `k` below 2^32).
    fn scattered_id(k: usize) -> String {
        format!(
            "r{:08x}",
            (k as u64).wrapping_mul(2_654_435_761) % (1 << 32)
        )
    }

    /// Catches up at five versions and never on idle, so the test decides what is indexed.
    fn quiet_index() -> RowIndex {
        RowIndex::new(true, 5, std::time::Duration::from_secs(3600))
    }

    fn page(limit: i64) -> RowQuery {
        RowQuery {
            limit,
            ..RowQuery::default()
        }
    }

    fn trace(root: &str) -> RowQuery {
        RowQuery {
            root_span_id: Some(root.into()),
            ..page(100)
        }
    }

    /// Waits until the writer has indexed its tail.
    async fn indexed(store: &Store) {
        for _ in 0..200 {
            if store.index.lag() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the tail was not indexed");
    }

    /// The exits recorded so far, in key order: (row id, xact, trace key).
    async fn exits(store: &Store) -> Vec<(String, i64, i64)> {
        with_pool!(&store.write, |p, DB| {
            sqlx::query_as::<DB, (String, i64, i64)>(
                "SELECT row_id, xact_id, trace FROM trace_exits ORDER BY row_id, xact_id",
            )
            .fetch_all(p)
            .await
            .unwrap()
        })
    }

    /// PostgreSQL: a page of an object's rows walks `row_index`'s primary key under the
    /// settings it is read with, and reads the first rows in row-id order.
    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_object_pages_walk_the_row_index() {
        let Some(db) = crate::testing::TestDatabase::create("object_page").await else {
            return;
        };
        let store = Store::open_postgres(&db.url).await.unwrap();
        let pass = dataset_pass("d");
        // Row ids in no relation to the order rows are written (the planner then expects a
        // walk to read a heap page per row).
        let rows = (0..3000)
            .map(|k| incoming(json!({"id": scattered_id(k), "input": k})))
            .collect();
        store
            .write_rows(vec![(pass.clone(), rows)], "now")
            .await
            .unwrap();
        crate::testing::caught_up(&store).await;
        let mut tx = crate::testing::planned(&store, crate::db::INDEX_WALK).await;
        let explain = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {OBJECT_PAGE}")))
            .bind("dataset")
            .bind("d")
            .bind("")
            .bind(i64::MAX)
            .bind(1000i64);
        let plan = crate::testing::plan_of(&mut tx, explain).await;
        drop(tx);
        assert!(
            plan.contains("Index Scan using row_index_pkey on row_index ri")
                && !plan.contains("Sort")
                && !plan.contains("Seq Scan"),
            "{plan}"
        );
        // On this small table PostgreSQL 15 walks the index untold too: the plan it chose at
        // 110,000 rows (a read of every row and a sort) is in `OBJECT_PAGE`'s docs.
        let q = RowQuery {
            as_of: None,
            after_row_id: None,
            root_span_id: None,
            limit: 1000,
        };
        let page = store.read_rows(&pass, &q).await.unwrap();
        let mut ids: Vec<String> = (0..3000).map(scattered_id).collect();
        ids.sort();
        let read: Vec<&String> = page.iter().map(|r| &r.row_id).collect();
        assert_eq!(read, ids.iter().take(1000).collect::<Vec<_>>());
        store.close().await;
        db.drop_database().await;
    }

    /// A trace's stamp changes with every change to the trace (a span added, updated in
    /// place, moved to another trace, deleted), whether the change is in the tail or
    /// indexed; and with nothing else: not with the catch-up that indexes it.
    #[tokio::test(flavor = "multi_thread")]
    async fn trace_stamps_change_with_their_trace() {
        for (store, _db) in crate::testing::both_stores("trace_stamps").await {
            let pass = dataset_pass("d");
            let write = |rows: Vec<Value>| write(&store, &pass, rows);
            let deferred = store.index.deferred();
            let stamp = |rows: &[&str]| {
                let rows: Vec<String> = rows.iter().map(|r| (*r).to_owned()).collect();
                let (store, pass) = (&store, &pass);
                async move { store.trace_stamp(pass, "t1", &rows).await.unwrap() }
            };
            let span =
                |id: &str, root: &str| json!({"id": id, "created": "c", "root_span_id": root});
            let rows = ["a", "b", "c", "d"];
            let mut seen = vec![stamp(&rows).await];
            let changes = [
                vec![span("a", "t1"), span("b", "t1"), span("c", "t1")],
                vec![span("d", "t1")],
                vec![json!({"id": "a", "_is_merge": true, "input": 2})],
                vec![span("b", "t2")],
                vec![json!({"id": "c", "_object_delete": true})],
            ];
            for (i, change) in changes.into_iter().enumerate() {
                let written = write(change).await;
                let mut in_tail = None;
                if deferred {
                    // In the tail: a new stamp, which counts the change's transaction and
                    // which other traces' rows do not change.
                    let now = stamp(&rows).await;
                    assert!(
                        !seen.contains(&now),
                        "change {i} in the tail: {now:?} in {seen:?}"
                    );
                    assert_eq!(now.newest(), written.as_i64(), "change {i} in the tail");
                    seen.push(now);
                    // Rows that stay in the trace count once: a stamp made before the read
                    // (no rows known) matches the one made after it.
                    if i < 3 {
                        assert_eq!(stamp(&[]).await, now, "change {i} in the tail, no rows");
                    }
                    write(vec![span(&format!("y{i}"), "t2")]).await;
                    assert_eq!(
                        stamp(&rows).await,
                        now,
                        "change {i} in the tail, and another"
                    );
                    in_tail = Some(now);
                    // A catch-up that has committed the tail's versions to the tables but
                    // not yet let the tail go: each version counts once.
                    let pending = store.index.pending();
                    let upto = pending.rows.iter().map(|(_, v, _)| v.xact).max();
                    crate::writer::index_versions(&store.write, &pending, upto.unwrap())
                        .await
                        .unwrap();
                    assert_eq!(
                        stamp(&rows).await,
                        now,
                        "change {i} in the tail and indexed"
                    );
                }
                indexed(&store).await;
                let now = stamp(&rows).await;
                match in_tail {
                    // The catch-up moved the change to the tables: the trace is the same.
                    Some(tail) => assert_eq!(now, tail, "change {i} indexed"),
                    None => {
                        assert!(!seen.contains(&now), "change {i}: {now:?} in {seen:?}");
                        seen.push(now);
                    }
                }
                assert_eq!(now.newest(), written.as_i64(), "change {i} indexed");
                // Other traces' rows change nothing.
                write(vec![span(&format!("x{i}"), "t2")]).await;
                indexed(&store).await;
                assert_eq!(stamp(&rows).await, now, "after change {i}");
            }
            assert!(seen.last().is_some_and(|s| s.newest() > 0));
        }
    }

    /// A row that leaves a trace (moved under another root, or deleted) is not read in it,
    /// whether its versions are in the tail or indexed, on both stores; read as of before the
    /// change, it is. Rows that come back are read again. The exits the writer recorded are
    /// the ones migration 29 computes from the stored versions.
    #[tokio::test(flavor = "multi_thread")]
    async fn rows_that_leave_a_trace_are_not_read_in_it() {
        for (store, db) in crate::testing::both_stores("trace_exits").await {
            let pass = dataset_pass("d");
            let write = |rows: Vec<Value>| write(&store, &pass, rows);
            let span =
                |id: &str, root: &str| json!({"id": id, "created": "c", "root_span_id": root});
            let first = write(vec![span("a", "t1"), span("b", "t1"), span("c", "t1")]).await;
            indexed(&store).await;
            // A move and a delete of indexed rows, a merge that keeps its trace; and a row
            // that moves twice within one batch of the tail.
            write(vec![
                span("c", "t2"),
                json!({"id": "b", "_object_delete": true}),
                json!({"id": "a", "_is_merge": true, "input": 2}),
                span("d", "t1"),
            ])
            .await;
            write(vec![span("d", "t2")]).await;
            write(vec![span("d", "t3")]).await;
            let mut in_tail = None;
            for round in ["tail", "indexed"] {
                assert_eq!(ids(&store, &pass, trace("t1")).await, ["a"], "{round}");
                assert_eq!(ids(&store, &pass, trace("t2")).await, ["c"], "{round}");
                assert_eq!(ids(&store, &pass, trace("t3")).await, ["d"], "{round}");
                // A whole read also lists the rows that left the trace; a stamp made with
                // them and the rows read counts their leaving the same in the tail and
                // indexed.
                let now = store.current_xact().await.unwrap().unwrap();
                let mut stamps = Vec::new();
                for (root, live, gone) in [
                    ("t1", vec!["a"], vec!["b", "c", "d"]),
                    ("t2", vec!["c"], vec!["d"]),
                    ("t3", vec!["d"], vec![]),
                ] {
                    let read = store.read_whole_trace(&pass, root, now).await.unwrap();
                    let mut all: Vec<String> = read.rows.iter().map(|r| r.row_id.clone()).collect();
                    assert_eq!(all, live, "{round} {root}");
                    assert_eq!(read.left, gone, "{round} {root}");
                    all.extend(read.left);
                    stamps.push(store.trace_stamp(&pass, root, &all).await.unwrap());
                }
                match &in_tail {
                    None => in_tail = Some(stamps),
                    Some(tail) => assert_eq!(&stamps, tail, "{round}"),
                }
                let then = RowQuery {
                    as_of: Some(first),
                    ..trace("t1")
                };
                assert_eq!(ids(&store, &pass, then).await, ["a", "b", "c"], "{round}");
                indexed(&store).await;
            }
            // Back to the first trace; the object's newest version, and the rows changed
            // after a version, in the tail and indexed.
            let last = write(vec![span("c", "t1")]).await;
            let changed = |since: XactId, max: usize| {
                let (store, pass) = (&store, &pass);
                async move { store.object_rows_changed(pass, since, max).await.unwrap() }
            };
            for round in ["tail", "indexed"] {
                assert_eq!(
                    store.newest_xact(&pass).await.unwrap(),
                    Some(last),
                    "{round}"
                );
                assert_eq!(changed(first, 9).await.unwrap(), ["a", "b", "c", "d"]);
                assert_eq!(changed(first, 4).await.unwrap().len(), 4, "{round}");
                assert!(changed(first, 3).await.is_none(), "more than the most");
                let before_last = XactId::from_i64(last.as_i64() - 1).unwrap();
                assert_eq!(changed(before_last, 9).await.unwrap(), ["c"], "{round}");
                assert!(changed(last, 9).await.unwrap().is_empty(), "{round}");
                indexed(&store).await;
            }
            // Another object's changes are not this one's.
            write(vec![span("c", "t1")]).await;
            self::write(&store, &dataset_pass("another"), vec![span("z", "t9")]).await;
            assert_eq!(changed(last, 9).await.unwrap(), ["c"], "tail");
            indexed(&store).await;
            assert_eq!(changed(last, 9).await.unwrap(), ["c"], "indexed");
            let other = dataset_pass("other");
            assert_eq!(store.newest_xact(&other).await.unwrap(), None);
            assert_eq!(ids(&store, &pass, trace("t1")).await, ["a", "c"]);
            assert!(ids(&store, &pass, trace("t2")).await.is_empty());
            let key = |root: &str| crate::index::trace_key("dataset", "d", root);
            let recorded = exits(&store).await;
            let left: Vec<(&str, i64)> =
                recorded.iter().map(|(r, _, t)| (r.as_str(), *t)).collect();
            assert_eq!(
                left,
                [
                    ("b", key("t1")),
                    ("c", key("t1")),
                    ("c", key("t2")),
                    ("d", key("t1")),
                    ("d", key("t2"))
                ]
            );
            // The upgrade's computation from the stored versions agrees.
            let (drop, script) = match &store.write {
                Pools::Sqlite(_) => (
                    "DROP TABLE trace_exits",
                    include_str!("trace_exits_sqlite.sql"),
                ),
                Pools::Postgres(_) => (
                    "DROP TABLE trace_exits; DROP FUNCTION holdfast_trace_key",
                    include_str!("trace_exits_postgres.sql"),
                ),
            };
            with_pool!(&store.write, |p, DB| {
                sqlx::raw_sql(drop).execute(p).await.unwrap();
                sqlx::raw_sql(script).execute(p).await.unwrap();
            });
            assert_eq!(exits(&store).await, recorded);
            assert_eq!(ids(&store, &pass, trace("t1")).await, ["a", "c"]);
            store.close().await;
            if let Some(db) = db {
                db.drop_database().await;
            }
        }
    }

    /// A trace with more tail versions than are looked up one by one is read whole.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_large_trace_in_the_tail_is_read_whole() {
        let dir = temp_dir("large-trace");
        let index = RowIndex::new(true, 1_000_000, std::time::Duration::from_secs(3600));
        let store = Store::open_sqlite_with(&dir.join("t.db"), None, index)
            .await
            .unwrap();
        let pass = dataset_pass("d");
        let n = TAIL_SEQS_LISTED + 500;
        let rows = (0..n)
            .map(|i| {
                incoming(json!({"id": format!("s{i:05}"), "created": "c", "root_span_id": "big"}))
            })
            .chain([incoming(
                json!({"id": "other", "created": "c", "root_span_id": "small"}),
            )])
            .collect();
        store
            .write_rows(vec![(pass.clone(), rows)], "now")
            .await
            .unwrap();
        let q = RowQuery {
            root_span_id: Some("big".into()),
            ..page(10_000)
        };
        assert_eq!(store.read_rows(&pass, &q).await.unwrap().len(), n);
        assert_eq!(ids(&store, &pass, trace("small")).await, ["other"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A page of more rows than one statement loads the data of is read whole, in row-id
    /// order, each row with its own data, in the tail and once indexed, on both stores.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_page_longer_than_a_load_is_read_whole_in_order() {
        for (store, db) in crate::testing::both_stores("long_page").await {
            let pass = dataset_pass("d");
            let (id, n) = (scattered_id, LOAD_CHUNK + 3);
            let rows: Vec<Value> = (0..n)
                .map(|k| json!({"id": id(k), "created": "c", "input": k}))
                .collect();
            write(&store, &pass, rows).await;
            let mut want: Vec<(String, usize)> = (0..n).map(|k| (id(k), k)).collect();
            want.sort();
            for round in ["written", "indexed"] {
                if round == "indexed" {
                    indexed(&store).await;
                }
                let got: Vec<(String, usize)> = store
                    .read_rows(&pass, &page(n as i64 + 10))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| {
                        let k = r.data["input"].as_u64().unwrap() as usize;
                        assert_eq!(r.data["id"].as_str(), Some(r.row_id.as_str()));
                        (r.row_id, k)
                    })
                    .collect();
                assert!(
                    got == want,
                    "{round}: {} rows, not in order or not whole",
                    got.len()
                );
            }
            if let Some(db) = db {
                db.drop_database().await;
            }
        }
    }

    /// A long list is decoded in parts at once, in its order, and a corrupt row in any part
    /// fails the whole read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn long_lists_are_decoded_in_parts_in_order() {
        let stored = |i: usize| {
            let json = json!({"id": format!("r{i:05}"), "input": "words ".repeat(i % 300)});
            let xact = XactId::from_counter(i as u64 + 1).unwrap().as_i64();
            (format!("r{i:05}"), xact, encode_data(json.to_string(), 0))
        };
        let n = DECODED_IN_PARTS_FROM * 3 + 7;
        let rows: Vec<_> = (0..n).map(stored).collect();
        let decoded = decode_all(rows.clone()).await.unwrap();
        assert_eq!(decoded.len(), n);
        for (i, row) in decoded.iter().enumerate() {
            assert_eq!(
                (row.row_id.as_str(), row.data["id"].as_str()),
                (rows[i].0.as_str(), Some(rows[i].0.as_str()))
            );
            assert_eq!(row.xact_id.as_i64(), rows[i].1);
        }
        let mut broken = rows;
        broken[n - 2].2 = b"{not json".to_vec();
        let err = decode_all(broken).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("r03005")),
            "{err}"
        );
    }

    #[test]
    fn large_rows_are_compressed_when_that_is_smaller() {
        let long = json!({"id": "a", "input": "the same words again ".repeat(500)}).to_string();
        let stored = encode_data(long.clone(), COMPRESS_FROM);
        assert!(stored.starts_with(&ZSTD_MAGIC) && stored.len() < long.len() / 4);
        assert_eq!(
            Value::Object(decode_data("a", &stored).unwrap()).to_string(),
            long
        );
        let short = r#"{"id":"b"}"#.to_owned();
        assert_eq!(encode_data(short.clone(), COMPRESS_FROM), short.as_bytes());
        let typical = json!({"id": "c", "input": "the same words again ".repeat(100)}).to_string();
        assert_eq!(
            encode_data(typical.clone(), COMPRESS_FROM),
            typical.as_bytes()
        );
        let compressed = encode_data(typical.clone(), 0);
        assert!(
            compressed.starts_with(&ZSTD_MAGIC),
            "PostgreSQL's rows are all compressed"
        );
        assert_eq!(decode_data("b", short.as_bytes()).unwrap()["id"], "b");
        // A frame that does not declare its size (a stream's) is read too.
        let streamed = zstd::stream::encode_all(long.as_bytes(), 1).unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&streamed).unwrap(),
            None
        );
        assert_eq!(
            Value::Object(decode_data("a", &streamed).unwrap()).to_string(),
            long
        );
        let mut broken = stored;
        broken.truncate(12);
        assert!(matches!(
            decode_data("a", &broken),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// A second process (an export) reads as of what was indexed when it opened: the serving
    /// process's later rows are not in that snapshot, neither before nor after they reach the
    /// index.
    #[tokio::test(flavor = "multi_thread")]
    async fn another_process_reads_a_stable_snapshot() {
        let dir = temp_dir("readable-xact");
        let path = dir.join("t.db");
        let server = Store::open_sqlite_with(&path, None, quiet_index())
            .await
            .unwrap();
        let pass = dataset_pass("d");
        let write = |ids: &[&str]| {
            let rows = ids
                .iter()
                .map(|id| incoming(json!({"id": id, "input": 1})))
                .collect();
            server.write_rows(vec![(pass.clone(), rows)], "now")
        };
        write(&["a", "b"]).await.unwrap();
        let reader = Store::open_sqlite_with(&path, None, quiet_index())
            .await
            .unwrap();
        let snapshot = reader.readable_xact().await.unwrap();
        assert_eq!(snapshot, server.current_xact().await.unwrap());
        // A row still in the server's tail; then enough to make it index.
        write(&["c"]).await.unwrap();
        assert_eq!(
            server.readable_xact().await.unwrap(),
            server.current_xact().await.unwrap()
        );
        assert_eq!(
            reader.readable_xact().await.unwrap(),
            snapshot,
            "fixed at open"
        );
        assert!(reader.current_xact().await.unwrap() > snapshot);
        let at = |as_of| RowQuery {
            as_of,
            limit: 100,
            ..RowQuery::default()
        };
        assert_eq!(ids(&reader, &pass, at(snapshot)).await, ["a", "b"]);
        write(&["d", "e", "f"]).await.unwrap();
        for _ in 0..100 {
            if count(&server, "row_index").await == 6 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(count(&server, "row_index").await, 6, "caught up");
        assert_eq!(ids(&reader, &pass, at(snapshot)).await, ["a", "b"]);
        server.close().await;
        reader.close().await;
    }

    /// Versions are found while they are only in the tail, after a catch-up moved them into
    /// `row_index`, and after a restart indexed what the tail held.
    #[tokio::test(flavor = "multi_thread")]
    async fn rows_are_found_in_the_tail_in_the_index_and_after_a_restart() {
        let dir = temp_dir("row-index");
        let path = dir.join("t.db");
        let store = Store::open_sqlite_with(&path, None, quiet_index())
            .await
            .unwrap();
        let pass = dataset_pass("d");
        let write = |rows: Vec<Value>| write(&store, &pass, rows);
        let span = |id: &str, root: &str| json!({"id": id, "created": "c", "root_span_id": root, "input": 1});
        let first = write(vec![
            span("a", "t1"),
            span("b", "t1"),
            span("c", "t1"),
            span("d", "t2"),
        ])
        .await;
        assert_eq!(ids(&store, &pass, page(100)).await, ["a", "b", "c", "d"]);
        assert_eq!(ids(&store, &pass, trace("t1")).await, ["a", "b", "c"]);
        assert_eq!(count(&store, "row_index").await, 0, "still in the tail");

        // A merge onto a tail row; six versions reach the threshold of five.
        write(vec![
            json!({"id": "a", "_is_merge": true, "input": 2}),
            span("e", "t3"),
        ])
        .await;
        // The writer indexes after it has answered.
        for _ in 0..100 {
            if count(&store, "row_index").await == 6 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(count(&store, "row_index").await, 6, "caught up");
        assert_eq!(
            count(&store, "trace_index").await,
            6,
            "a merge keeps the root"
        );
        assert!(!store.index.needs_catch_up(true));

        // Changes to indexed rows: a delete, a move to another trace, a merge.
        write(vec![
            json!({"id": "b", "_object_delete": true}),
            span("c", "t2"),
            json!({"id": "d", "_is_merge": true, "output": 3}),
        ])
        .await;
        let check = |store: Store| {
            let pass = pass.clone();
            async move {
                assert_eq!(ids(&store, &pass, page(100)).await, ["a", "c", "d", "e"]);
                assert_eq!(ids(&store, &pass, page(2)).await, ["a", "c"]);
                let rest = RowQuery {
                    after_row_id: Some("c".into()),
                    ..page(2)
                };
                assert_eq!(ids(&store, &pass, rest).await, ["d", "e"]);
                assert_eq!(ids(&store, &pass, trace("t1")).await, ["a"]);
                assert_eq!(ids(&store, &pass, trace("t2")).await, ["c", "d"]);
                // A trace in pages: after a row, at most the limit (a row deleted or moved
                // away is not counted in a page).
                let trace_page = |root: &str, after: Option<&str>, limit| RowQuery {
                    after_row_id: after.map(str::to_owned),
                    limit,
                    ..trace(root)
                };
                assert_eq!(ids(&store, &pass, trace_page("t2", None, 1)).await, ["c"]);
                assert_eq!(
                    ids(&store, &pass, trace_page("t2", Some("c"), 1)).await,
                    ["d"]
                );
                assert!(
                    ids(&store, &pass, trace_page("t2", Some("d"), 1))
                        .await
                        .is_empty()
                );
                assert_eq!(ids(&store, &pass, trace_page("t1", None, 1)).await, ["a"]);
                assert!(
                    ids(&store, &pass, trace_page("t1", Some("a"), 5))
                        .await
                        .is_empty()
                );
                let rows = store.read_rows(&pass, &page(100)).await.unwrap();
                assert_eq!(rows[0].data["input"], 2);
                assert_eq!(rows[2].data["input"], 1);
                assert_eq!(rows[2].data["output"], 3);
                let then = RowQuery {
                    as_of: Some(first),
                    ..page(100)
                };
                let old = store.read_rows(&pass, &then).await.unwrap();
                assert_eq!(old.len(), 4);
                assert_eq!(old[0].data["input"], 1);
                let old_trace = RowQuery {
                    as_of: Some(first),
                    ..trace("t1")
                };
                assert_eq!(ids(&store, &pass, old_trace).await, ["a", "b", "c"]);
            }
        };
        check(store.clone()).await;
        assert_eq!(
            count(&store, "row_index").await,
            6,
            "three versions in the tail"
        );
        drop(store);

        let store = Store::open_sqlite_with(&path, None, quiet_index())
            .await
            .unwrap();
        assert_eq!(count(&store, "row_index").await, 9, "indexed on start");
        assert_eq!(
            count(&store, "trace_index").await,
            8,
            "a delete has no root"
        );
        check(store).await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
