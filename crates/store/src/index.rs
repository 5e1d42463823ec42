//! Finding a row's versions by its id.
//!
//! `rows` holds every version in the order written (`seq`); `row_index` maps (object, row id,
//! `_xact_id`) to the version's `seq`. On PostgreSQL the writer fills `row_index` in the
//! transaction that writes the rows.
//!
//! On the embedded store that would cost about one rewritten page per row and commit: row ids
//! are random, so once the index outgrows the cache each commit touches about as many index
//! pages as it has rows, and SQLite's log takes whole pages (measured with `bench ingest`:
//! half the throughput at 500k rows). There the writer keeps the versions committed since the
//! last catch-up in memory (the tail) and adds them to `row_index` in one sorted batch when the
//! tail reaches `catch_up_rows` or the writer is idle; a sorted batch rewrites each index page
//! once. `counters.indexed_xact` says up to which `_xact_id` `row_index` is complete; on start
//! the store indexes every version after it, so the tail starts empty and a crash loses
//! nothing the table holds.
//!
//! Readers combine `row_index` with the tail. Their statement also reads `counters.xact`, the
//! snapshot it saw: tail versions after it are ignored (the statement could not see those
//! rows), and a reader that raced a catch-up, which moves versions from the tail into
//! `row_index`, notices by the tail's generation and reads again.
//!
//! Traces are found the same way. `trace_index` maps a trace key (the first 8 bytes of
//! SHA-256 over object and root span id: a compact integer, so that a catch-up rewrites few
//! pages) to the `seq` of each version filed under it; the tail holds the trace keys of its
//! versions. A B-tree on root span ids updated at every commit cost the embedded store 40% of
//! its ingest throughput at 1M spans (one random page per trace and commit). PostgreSQL keeps
//! its index on `rows.root_span_id`.
//!
//! A trace read keeps a version filed under the trace only if its row has no newer version
//! elsewhere. `trace_exits` lists each version whose row's previous version was filed under
//! another trace (moved under another root, or deleted), keyed by that trace: `row_index`
//! keeps each version's trace key, and the catch-up that indexes a version looks up the
//! row's previous one (PostgreSQL's writer does the same in its transaction). Exits of tail
//! versions are not listed; readers check the tail.

use sha2::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

/// How many versions the tail holds before the writer indexes them.
pub(crate) const CATCH_UP_ROWS: usize = 200_000;
/// How long the writer waits for work before it indexes the tail anyway.
pub(crate) const CATCH_UP_IDLE: Duration = Duration::from_millis(500);

/// One stored version of a row, as the index knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    pub xact: i64,
    pub seq: i64,
    pub deleted: bool,
}

/// What the tail holds of one trace (see [`TailView::trace_stamp`]). A catch-up moves
/// these versions to `trace_index` (those filed under the trace) and `trace_exits` (those
/// that left it), where [`crate::TraceStamp`] counts them the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TailStamp {
    pub filed: usize,
    pub left: usize,
    /// The newest `_xact_id` of the versions counted.
    pub newest: i64,
    /// The tail's smallest `seq` and `_xact_id` (of any object): indexed versions from
    /// these on are the tail's, indexed by a catch-up since it was read.
    pub first_seq: i64,
    pub first_xact: i64,
}

impl Default for TailStamp {
    /// An empty tail: every indexed version counts.
    fn default() -> Self {
        TailStamp {
            filed: 0,
            left: 0,
            newest: 0,
            first_seq: i64::MAX,
            first_xact: i64::MAX,
        }
    }
}

/// (object type, object id, row id).
pub(crate) type Key = (String, String, String);

/// (object type, object id).
type Object = (String, String);

/// A version the writer committed: its row, where it is, and its trace key if it has a root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    pub key: Key,
    pub version: Version,
    pub trace: Option<i64>,
}

/// What a catch-up indexes: versions in `row_index` order with their trace keys, and
/// (trace key, seq) pairs in `trace_index` order.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub rows: Vec<(Key, Version, Option<i64>)>,
    pub traces: Vec<(i64, i64)>,
}

/// The `trace_index` key of a root span id in an object. Distinct traces may share a key;
/// readers compare the stored root span id, so a shared key only costs a few extra reads,
/// and SHA-256 makes it impractical to aim one at somebody else's trace.
pub(crate) fn trace_key(object_type: &str, object_id: &str, root_span_id: &str) -> i64 {
    let mut h = sha2::Sha256::new();
    for part in [object_type, object_id, root_span_id] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let first = digest.first_chunk::<8>().copied().unwrap_or_default();
    i64::from_be_bytes(first)
}

#[derive(Debug)]
struct Tail {
    /// Per object and row, versions in `_xact_id` order.
    versions: HashMap<Object, BTreeMap<String, Vec<Version>>>,
    /// Per trace key, the `seq` of each tail version filed under it.
    traces: HashMap<i64, Vec<i64>>,
    /// Per trace key, the newest `_xact_id` of the tail versions filed under it.
    trace_newest: HashMap<i64, i64>,
    len: usize,
    /// The smallest `seq` and `_xact_id` of the tail's versions (`i64::MAX` when empty):
    /// every indexed version before the catch-up that indexes the tail is older.
    first_seq: i64,
    first_xact: i64,
    /// The newest `_xact_id` that this process knows to be indexed or in the tail: every
    /// version up to it is found through `row_index`, `trace_index` and the tail. Kept
    /// across catch-ups.
    committed: i64,
    /// Bumped by every catch-up.
    generation: u64,
}

impl Default for Tail {
    fn default() -> Self {
        Tail {
            versions: HashMap::new(),
            traces: HashMap::new(),
            trace_newest: HashMap::new(),
            len: 0,
            first_seq: i64::MAX,
            first_xact: i64::MAX,
            committed: 0,
            generation: 0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct RowIndex {
    /// Whether `row_index` lags behind `rows` (the embedded store).
    deferred: bool,
    catch_up_rows: usize,
    idle: Duration,
    tail: RwLock<Tail>,
}

impl RowIndex {
    pub(crate) fn new(deferred: bool, catch_up_rows: usize, idle: Duration) -> Self {
        Self {
            deferred,
            catch_up_rows,
            idle,
            tail: RwLock::new(Tail::default()),
        }
    }

    pub(crate) fn deferred(&self) -> bool {
        self.deferred
    }

    /// How long an idle writer waits before it indexes the tail.
    pub(crate) fn idle(&self) -> Duration {
        self.idle
    }

    fn lock(&self) -> RwLockReadGuard<'_, Tail> {
        // Updates under the lock only push to vectors and maps or clear them; nothing there
        // panics short of running out of memory, which aborts. A poisoned lock is usable.
        self.tail.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The current generation; compare with [`TailView::generation`] after reading.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// A consistent view of the tail for one read.
    pub(crate) fn view(&self) -> TailView<'_> {
        TailView(self.lock())
    }

    /// Records that every version up to `xact` is indexed (when the store opens).
    pub(crate) fn set_committed(&self, xact: i64) {
        let mut tail = self.tail.write().unwrap_or_else(|e| e.into_inner());
        tail.committed = tail.committed.max(xact);
    }

    /// Records versions that have just committed (writer only).
    pub(crate) fn add(&self, committed: Vec<Written>) {
        if !self.deferred || committed.is_empty() {
            return;
        }
        let mut tail = self.tail.write().unwrap_or_else(|e| e.into_inner());
        tail.len += committed.len();
        for Written {
            key: (object_type, object_id, row_id),
            version,
            trace,
        } in committed
        {
            tail.committed = tail.committed.max(version.xact);
            tail.first_seq = tail.first_seq.min(version.seq);
            tail.first_xact = tail.first_xact.min(version.xact);
            if let Some(trace) = trace {
                tail.traces.entry(trace).or_default().push(version.seq);
                let newest = tail.trace_newest.entry(trace).or_default();
                *newest = (*newest).max(version.xact);
            }
            let versions = tail
                .versions
                .entry((object_type, object_id))
                .or_default()
                .entry(row_id)
                .or_default();
            versions.push(version);
            versions.sort_by_key(|v| v.xact);
        }
    }

    /// Versions committed but not yet in `row_index` (the tail).
    pub(crate) fn lag(&self) -> usize {
        self.lock().len
    }

    pub(crate) fn needs_catch_up(&self, idle: bool) -> bool {
        let len = self.lock().len;
        self.deferred && (len >= self.catch_up_rows || (idle && len > 0))
    }

    /// The tail in index order, for a catch-up (writer only).
    pub(crate) fn pending(&self) -> Pending {
        let tail = self.lock();
        let traces_by_seq: HashMap<i64, i64> = tail
            .traces
            .iter()
            .flat_map(|(t, seqs)| seqs.iter().map(move |s| (*s, *t)))
            .collect();
        let trace_of = &traces_by_seq;
        let mut objects: Vec<_> = tail.versions.iter().collect();
        objects.sort_by(|a, b| a.0.cmp(b.0));
        let rows = objects
            .into_iter()
            .flat_map(|((t, o), rows)| {
                rows.iter().flat_map(move |(r, vs)| {
                    vs.iter().map(move |v| {
                        let key = (t.clone(), o.clone(), r.clone());
                        (key, *v, trace_of.get(&v.seq).copied())
                    })
                })
            })
            .collect();
        let mut traces: Vec<(i64, i64)> = tail
            .traces
            .iter()
            .flat_map(|(t, seqs)| seqs.iter().map(move |s| (*t, *s)))
            .collect();
        traces.sort_unstable();
        Pending { rows, traces }
    }

    /// Forgets the tail once a catch-up has committed it (writer only).
    pub(crate) fn caught_up(&self) {
        let mut tail = self.tail.write().unwrap_or_else(|e| e.into_inner());
        tail.versions.clear();
        tail.traces.clear();
        tail.trace_newest.clear();
        tail.len = 0;
        tail.first_seq = i64::MAX;
        tail.first_xact = i64::MAX;
        tail.generation += 1;
    }
}

/// A read lock on the tail, held only while a reader combines it with what it read.
pub(crate) struct TailView<'a>(RwLockReadGuard<'a, Tail>);

impl TailView<'_> {
    pub(crate) fn generation(&self) -> u64 {
        self.0.generation
    }

    /// See [`Tail::committed`].
    pub(crate) fn committed(&self) -> i64 {
        self.0.committed
    }

    /// The `seq` of each tail version filed under a trace key.
    pub(crate) fn trace(&self, trace: i64) -> &[i64] {
        self.0.traces.get(&trace).map_or(&[], Vec::as_slice)
    }

    /// Whether the tail holds a version of an object.
    pub(crate) fn holds(&self, object_type: &str, object_id: &str) -> bool {
        let object = (object_type.to_owned(), object_id.to_owned());
        self.0.versions.contains_key(&object)
    }

    /// What the tail holds of a trace of an object: its versions filed under the trace, and
    /// those of `rows` that take a row out of it (filed elsewhere, or deleted, after a
    /// version in the trace). See `TraceStamp`.
    pub(crate) fn trace_stamp(
        &self,
        object_type: &str,
        object_id: &str,
        trace: i64,
        rows: &[String],
    ) -> TailStamp {
        let filed = self.trace(trace);
        let mut newest = self.0.trace_newest.get(&trace).copied().unwrap_or_default();
        let mut left = 0;
        let object = (object_type.to_owned(), object_id.to_owned());
        if let Some(held) = self.0.versions.get(&object).filter(|_| !rows.is_empty()) {
            let in_trace: HashSet<i64> = filed.iter().copied().collect();
            // The versions a catch-up lists as leaving the trace: those whose row's version
            // before was filed under it. Before a row's first tail version is its newest
            // indexed one, taken to be in the trace when none of the row's tail versions
            // is (the row was read in the trace, or leaving it).
            for versions in rows.iter().filter_map(|r| held.get(r)) {
                let mut before_in = !versions.iter().any(|v| in_trace.contains(&v.seq));
                for v in versions {
                    let inside = in_trace.contains(&v.seq);
                    if before_in && !inside {
                        left += 1;
                        newest = newest.max(v.xact);
                    }
                    before_in = inside;
                }
            }
        }
        TailStamp {
            filed: filed.len(),
            left,
            newest,
            first_seq: self.0.first_seq,
            first_xact: self.0.first_xact,
        }
    }

    /// The newest `_xact_id` of the tail's versions of an object.
    pub(crate) fn newest(&self, object_type: &str, object_id: &str) -> Option<i64> {
        let object = (object_type.to_owned(), object_id.to_owned());
        self.0
            .versions
            .get(&object)?
            .values()
            .filter_map(|vs| vs.last().map(|v| v.xact))
            .max()
    }

    /// The tail's rows of an object with a version after `since`, at most `limit`.
    pub(crate) fn changed(
        &self,
        (object_type, object_id): (&str, &str),
        since: i64,
        limit: usize,
    ) -> Vec<String> {
        let object = (object_type.to_owned(), object_id.to_owned());
        self.0.versions.get(&object).map_or_else(Vec::new, |rows| {
            rows.iter()
                .filter(|(_, vs)| vs.last().is_some_and(|v| v.xact > since))
                .map(|(r, _)| r.clone())
                .take(limit)
                .collect()
        })
    }

    /// The newest tail version of a row at or below `max_xact`.
    pub(crate) fn latest(
        &self,
        object_type: &str,
        object_id: &str,
        row_id: &str,
        max_xact: i64,
    ) -> Option<Version> {
        let object = (object_type.to_owned(), object_id.to_owned());
        newest(self.0.versions.get(&object)?.get(row_id)?, max_xact)
    }

    /// The newest version at or below `max_xact` of each tail row of an object with
    /// `after < row id <= up_to`, in row-id order, stopping after `live` rows that are not
    /// deleted.
    pub(crate) fn range(
        &self,
        object_type: &str,
        object_id: &str,
        (after, up_to): (Option<&str>, Option<&str>),
        max_xact: i64,
        live: usize,
    ) -> Vec<(String, Version)> {
        let object = (object_type.to_owned(), object_id.to_owned());
        let Some(rows) = self.0.versions.get(&object) else {
            return Vec::new();
        };
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        let mut found = 0;
        let rows = rows
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(r, _)| up_to.is_none_or(|u| r.as_str() <= u));
        for (r, vs) in rows {
            if found == live {
                break;
            }
            if let Some(v) = newest(vs, max_xact) {
                found += usize::from(!v.deleted);
                out.push((r.clone(), v));
            }
        }
        out
    }
}

fn newest(versions: &[Version], max_xact: i64) -> Option<Version> {
    versions.iter().rev().find(|v| v.xact <= max_xact).copied()
}

/// The newer of two versions.
pub(crate) fn newer(a: Option<Version>, b: Option<Version>) -> Option<Version> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.xact > a.xact { b } else { a }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(r: &str) -> Key {
        ("dataset".into(), "d".into(), r.into())
    }

    fn v(xact: i64, seq: i64) -> Version {
        Version {
            xact,
            seq,
            deleted: false,
        }
    }

    fn w(key: Key, version: Version, trace: Option<i64>) -> Written {
        Written {
            key,
            version,
            trace,
        }
    }

    #[test]
    fn the_tail_answers_by_row_and_by_range_at_a_snapshot() {
        let index = RowIndex::new(true, 3, CATCH_UP_IDLE);
        index.set_committed(5);
        index.add(vec![
            w(key("b"), v(20, 2), Some(7)),
            w(key("a"), v(10, 1), None),
        ]);
        index.add(vec![
            w(key("b"), v(30, 3), Some(-1)),
            w(
                ("dataset".into(), "e".into(), "a".into()),
                v(31, 4),
                Some(7),
            ),
        ]);
        let view = index.view();
        assert_eq!(view.committed(), 31);
        assert_eq!(view.trace(7), [2, 4]);
        assert_eq!(view.trace(8), [] as [i64; 0]);
        assert_eq!(view.latest("dataset", "d", "b", i64::MAX), Some(v(30, 3)));
        assert_eq!(view.latest("dataset", "d", "b", 29), Some(v(20, 2)));
        assert_eq!(view.latest("dataset", "d", "b", 19), None);
        let all = view.range("dataset", "d", (None, None), i64::MAX, 10);
        assert_eq!(all, vec![("a".into(), v(10, 1)), ("b".into(), v(30, 3))]);
        let after_a = view.range("dataset", "d", (Some("a"), None), 25, 10);
        assert_eq!(after_a, vec![("b".into(), v(20, 2))]);
        assert_eq!(
            view.range("dataset", "d", (None, Some("a")), i64::MAX, 10)
                .len(),
            1
        );
        assert_eq!(
            view.range("dataset", "d", (None, None), i64::MAX, 1).len(),
            1
        );
        drop(view);
        assert!(index.needs_catch_up(false));
        let pending = index.pending();
        assert_eq!(pending.rows.len(), 4);
        assert_eq!(pending.traces, [(-1, 3), (7, 2), (7, 4)]);
        let before = index.generation();
        index.caught_up();
        assert!(!index.needs_catch_up(true));
        assert_eq!(index.generation(), before + 1);
        let view = index.view();
        assert_eq!(view.trace(7), [] as [i64; 0]);
        assert_eq!(view.committed(), 31, "kept across catch-ups");
    }

    #[test]
    fn trace_keys_are_stable_and_separate_objects() {
        let k = trace_key("project_logs", "p", "root");
        // Stored in `trace_index`: a different function would need the store re-indexed.
        assert_eq!(k, 7_986_738_422_862_195_792);
        assert_ne!(k, trace_key("project_logs", "q", "root"));
        assert_ne!(k, trace_key("project_logs", "p", "roo"));
        // The separator keeps the parts apart.
        assert_ne!(trace_key("a", "bc", "d"), trace_key("ab", "c", "d"));
    }

    #[test]
    fn a_store_that_indexes_at_once_keeps_no_tail() {
        let index = RowIndex::new(false, 1, CATCH_UP_IDLE);
        index.add(vec![w(key("a"), v(1, 1), Some(1))]);
        assert!(!index.needs_catch_up(true));
        assert_eq!(index.view().latest("dataset", "d", "a", i64::MAX), None);
    }
}
