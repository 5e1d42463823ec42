//! What is made from a whole long trace (its summary row, the trace viewer's outline), kept
//! between reads while the trace does not change.
//!
//! A 10,000-span trace takes about 100 ms to read and decode, and the logs page reads it
//! whole for its one summary row. A kept result is used again while the store's
//! [`TraceStamp`] of the trace is the one it was made under: a version filed under the trace
//! or leaving it changes the stamp (in the writer's tail or indexed), and so does a purge.
//! The stamp is taken after the read, with the read's rows, and the result is kept when the
//! stamp counts no version newer than what the read saw (the store's read tells up to which
//! transaction it saw every version of the trace); only readers at or after the read's
//! snapshot use it. See [`Services::kept_trace`].
//!
//! Only traces of at least [`KEEP_FROM`] spans are kept: a shorter trace reads in a few
//! milliseconds, less than the stamp would save, and costs no statement more than its read.
//! A long trace is kept from its first read.

use crate::btql::spans_of;
use crate::query::row_json;
use crate::{Result, Services};
use holdfast_core::authz::{ObjectPass, Principal};
use holdfast_core::object::ObjectType;
use holdfast_core::xact::XactId;
use holdfast_store::TraceStamp;
use serde_json::Value;
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Traces shorter than this are read every time.
pub(crate) const KEEP_FROM: usize = 200;
/// Bytes kept in all (estimated: the results' own estimates and the row ids).
const BUDGET: usize = 32 << 20;
/// The most one trace's result may take.
const BUDGET_EACH: usize = BUDGET / 4;
/// The most traces kept or marked.
const MAX_ENTRIES: usize = 4096;

/// (what is kept, org, object type, object id, root span id).
type Key = (&'static str, String, String, String, String);

#[derive(Clone)]
struct Kept {
    stamp: TraceStamp,
    /// The snapshot of the read that made it: readers at older snapshots read afresh.
    version: i64,
    /// The rows read in the trace and those read leaving it: a tail version of one of them
    /// may take it out of the trace before the stamp's tables show it (see
    /// [`holdfast_store::Store::trace_stamp`]).
    rows: Arc<[String]>,
    value: Arc<dyn Any + Send + Sync>,
}

struct Entry {
    /// `None`: a long trace with nothing usable kept.
    kept: Option<Kept>,
    bytes: usize,
    used: u64,
}

enum Found {
    /// Nothing is known of the trace.
    Unknown,
    /// A long trace with nothing usable kept (its result was over the limit, or newer than
    /// the reader).
    Marked,
    Kept(Kept),
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    bytes: usize,
    clock: u64,
}

/// See the module.
#[derive(Default)]
pub struct KeptTraces {
    inner: Mutex<Inner>,
    /// Reads of long traces answered with a kept result.
    hits: AtomicU64,
    /// Long traces read whole.
    reads: AtomicU64,
}

impl std::fmt::Debug for KeptTraces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("KeptTraces")
            .field("entries", &inner.entries.len())
            .field("bytes", &inner.bytes)
            .finish()
    }
}

impl KeptTraces {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held but an allocation failure, which aborts.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (long traces answered with a kept result, long traces read whole) since the start.
    pub fn lookups(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.reads.load(Ordering::Relaxed),
        )
    }

    fn find(&self, key: &Key, version: i64) -> Found {
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        match inner.entries.get_mut(key) {
            None => Found::Unknown,
            Some(e) => {
                e.used = clock;
                match &e.kept {
                    Some(k) if k.version <= version => Found::Kept(k.clone()),
                    _ => Found::Marked,
                }
            }
        }
    }

    /// Keeps `kept` (or a mark) for `key`, making room by dropping the least recently used.
    fn put(&self, key: Key, kept: Option<Kept>, bytes: usize) {
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(&key) {
            inner.bytes -= old.bytes;
        }
        let (kept, bytes) = match kept {
            Some(_) if bytes > BUDGET_EACH => (None, 0),
            k => (k, bytes),
        };
        let bytes = bytes + key_bytes(&key);
        while inner.bytes + bytes > BUDGET || inner.entries.len() >= MAX_ENTRIES {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= e.bytes;
            }
        }
        inner.clock += 1;
        let used = inner.clock;
        inner.bytes += bytes;
        inner.entries.insert(key, Entry { kept, bytes, used });
    }

    fn forget(&self, key: &Key) {
        let mut inner = self.lock();
        if let Some(e) = inner.entries.remove(key) {
            inner.bytes -= e.bytes;
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

fn key_bytes(key: &Key) -> usize {
    key.1.len() + key.2.len() + key.3.len() + key.4.len() + 128
}

/// About how many bytes a JSON value takes in memory.
pub fn value_bytes(v: &Value) -> usize {
    let mut total = 0;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total += 32;
        match v {
            Value::String(s) => total += s.len(),
            Value::Array(a) => stack.extend(a),
            Value::Object(m) => {
                for (k, x) in m {
                    total += k.len() + 32;
                    stack.push(x);
                }
            }
            _ => {}
        }
    }
    total
}

impl Services {
    /// [`Services::kept_trace`] for `principal`, who must be able to read `kind('object_id')`
    /// (a `project_logs` source also by the project's name), at the store's newest snapshot;
    /// what a page that shows one trace reads.
    pub async fn trace_of_source<T: Send + Sync + 'static>(
        &self,
        principal: &Principal,
        (kind, object_id): (ObjectType, &str),
        root: &str,
        what: &'static str,
        derive: impl FnOnce(&[Value]) -> (T, usize),
    ) -> Result<Arc<T>> {
        let pass = self.source_pass(principal, kind, object_id).await?;
        let Some(version) = self.store.current_xact().await? else {
            return Ok(Arc::new(derive(&[]).0));
        };
        self.kept_trace(what, &pass, root, version, Instant::now(), derive)
            .await
    }

    /// `derive` of every span of trace `root` in `pass`'s object as of `version` (spans as a
    /// query shows them, in row-id order), made from the trace's rows or kept from an
    /// earlier read (see the module). `derive` returns its result and about how many bytes
    /// it takes; `what` names what it makes (one `what`, one type).
    pub(crate) async fn kept_trace<T: Send + Sync + 'static>(
        &self,
        what: &'static str,
        pass: &ObjectPass,
        root: &str,
        version: XactId,
        started: Instant,
        derive: impl FnOnce(&[Value]) -> (T, usize),
    ) -> Result<Arc<T>> {
        let key: Key = (
            what,
            pass.org_id().to_owned(),
            pass.object_type().as_str().to_owned(),
            pass.object_id().to_owned(),
            root.to_owned(),
        );
        let at = version.as_i64();
        if let Found::Kept(k) = self.kept_traces.find(&key, at) {
            let now = self.store.trace_stamp(pass, root, &k.rows).await?;
            if now == k.stamp
                && let Ok(value) = k.value.downcast::<T>()
            {
                self.kept_traces.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(value);
            }
        }
        let read = self.trace_read(pass, version, root, started).await?;
        // Every row id read in the trace (spans or not) and those leaving it.
        let rows: Arc<[String]> = read
            .rows
            .iter()
            .map(|r| r.row_id.clone())
            .chain(read.left)
            .collect();
        let (kind, seen) = (pass.object_type(), read.seen);
        let spans: Vec<Value> = spans_of(read.rows, root)
            .into_iter()
            .map(|r| row_json(r, kind))
            .collect();
        let (value, bytes) = derive(&spans);
        let value = Arc::new(value);
        if spans.len() < KEEP_FROM {
            self.kept_traces.forget(&key);
            return Ok(value);
        }
        // Freeing a long trace's spans is a few tens of milliseconds (a 10,000-span trace:
        // 23-33 ms) that the answer need not wait for.
        tokio::task::spawn_blocking(move || drop(spans));
        self.kept_traces.reads.fetch_add(1, Ordering::Relaxed);
        // The read saw every version of the trace up to `seen`: when the stamp counts none
        // newer, what was read is the trace the stamp counts. The stamp counts the tail's
        // versions outside the trace of the rows read and of those that left it.
        let stamp = self.store.trace_stamp(pass, root, &rows).await?;
        tracing::debug!(
            what,
            root,
            rows = rows.len(),
            seen,
            ?stamp,
            "long trace read"
        );
        let mut kept = None;
        if stamp.newest() <= seen {
            let erased: Arc<dyn Any + Send + Sync> = value.clone();
            kept = Some(Kept {
                stamp,
                version: at,
                rows: rows.clone(),
                value: erased,
            });
        }
        let bytes = bytes + rows.iter().map(|r| r.len() + 24).sum::<usize>();
        self.kept_traces.put(key, kept, bytes);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(root: &str) -> Key {
        ("t", "o".into(), "dataset".into(), "d".into(), root.into())
    }

    fn kept(version: i64) -> Kept {
        Kept {
            stamp: holdfast_store::TraceStamp::default(),
            version,
            rows: Arc::from(Vec::<String>::new()),
            value: Arc::new(1u8),
        }
    }

    /// A kept result is for readers at or after its snapshot; marks and results are dropped
    /// oldest-used first to stay within the budget; a result over its own limit is only a
    /// mark.
    #[test]
    fn kept_traces_stay_within_their_budget() {
        let k = KeptTraces::default();
        assert!(matches!(k.find(&key("a"), 5), Found::Unknown));
        k.put(key("a"), Some(kept(5)), 100);
        assert!(matches!(k.find(&key("a"), 5), Found::Kept(_)));
        assert!(matches!(k.find(&key("a"), 4), Found::Marked));
        k.put(key("b"), None, 0);
        assert!(matches!(k.find(&key("b"), 9), Found::Marked));
        // `a` was used before `b`: it goes first.
        k.put(key("c"), Some(kept(1)), BUDGET_EACH);
        k.put(key("d"), Some(kept(1)), BUDGET_EACH);
        k.put(key("e"), Some(kept(1)), BUDGET_EACH);
        assert!(k.bytes() <= BUDGET);
        k.put(key("f"), Some(kept(1)), BUDGET_EACH);
        assert!(k.bytes() <= BUDGET);
        assert!(matches!(k.find(&key("a"), 9), Found::Unknown));
        assert!(matches!(k.find(&key("f"), 9), Found::Kept(_)));
        k.put(key("g"), Some(kept(1)), BUDGET_EACH + 1);
        assert!(matches!(k.find(&key("g"), 9), Found::Marked));
        k.forget(&key("g"));
        assert!(matches!(k.find(&key("g"), 9), Found::Unknown));
        let mut left = 0;
        for root in ["b", "c", "d", "e", "f"] {
            if !matches!(k.find(&key(root), 9), Found::Unknown) {
                left += 1;
            }
        }
        assert!(left < 5, "something made room");
        assert!(value_bytes(&json!({"a": "xyz", "b": [1, 2]})) > 3);
    }
}
