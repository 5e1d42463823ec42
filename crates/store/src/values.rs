//! Sorted reads and counts through a value index, on both stores.
//!
//! A query sorted by `created`, a score or a metric (`ORDER BY scores.Factuality DESC LIMIT
//! 50`, the 50 most recent traces) would otherwise read every row of the object to keep the
//! best few, and a count by hour would read every row to count it. The table `row_values`
//! holds, for every row, one entry per indexed field of its newest indexed version: (field
//! key, value, `seq`, row id), in a B-tree ordered by field key then value (the row id is
//! data in the entry, so reading entries never reads the rows). The field key is the
//! first 8 bytes of SHA-256 over the object and the field's path (and, for the entries of
//! root spans only, a marker), so an object's values of one field are one range of the
//! tree, read in either direction from any value.
//!
//! Indexed (see [`Held`]): `created` (text: sorts compare strings byte by byte, as SQLite's
//! BINARY does); every number directly under `scores` and `metrics`; and every number and
//! text directly under `metadata` and `span_attributes`, numbers and texts in ranges of
//! their own (a number and a text never compare equal or ordered in a filter, and sorts put
//! every number before every text, so a sorted read of such a field reads the numbers' range
//! then the texts'). At most [`MAX_PER_GROUP`] names of each group are indexed. A non-null
//! value the index does not order (a string score, a boolean or an object in metadata, a
//! text holding a NUL) gives the row an *irregular* entry for the field instead, and readers
//! always read such rows. So does a text of metadata or span attributes that compares as an
//! instant (a query finds `'2026-01-01T00:00:00Z'` equal to `'2026-01-01T01:00:00+01:00'`,
//! which the index would not relate).
//!
//! *Listed* for filters (not for sorted reads): each of a row's `tags`, so that `tags
//! INCLUDES 'x'` reads one range of entries. A row has one entry per distinct tag and no
//! entries of root spans alone. Tags that are not an array of at most [`MAX_PER_GROUP`]
//! texts, or that hold a text that compares as an instant, make the row irregular for the
//! field. *Marked* for `error IS NOT NULL` (the errors view): a row whose `error` is set
//! has one entry for it, whatever the value, and no other; the entry's text is the row's
//! `root_span_id` (empty when that is not a text without NUL), so that the failed traces
//! are listed without reading the failed spans. *Looked up*: a root span's `root_span_id`
//! followed by its `created` ([`root_entry_text`]), so that the root rows of given traces
//! and the order of their `created` are found without reading the traces or walking the
//! roots' `created` entries (a summary of the traces a filter matched sorts them by their
//! roots, newest first).
//! A group (scores, metrics, metadata, span attributes) the index does not hold
//! whole, with more names than it indexes or an array (whose items a path reaches by
//! position), gives the row an irregular entry for the group, which readers of every field
//! of the group read. Paths deeper than a group's names (`metadata.a.b`) are not indexed.
//! A `created` that is not a [`server_timestamp`] also gets an *odd* entry, which lets
//! counts by time list such values without checking the form of every entry.
//! A row without the field has no entry: sorts put nulls last, so readers that run out of
//! entries before they have enough rows read the object. A row of comments alone (shown by
//! no query) has no entry.
//!
//! Like the word index, entries are written by the writer after the commit (see `search`),
//! in batches of whole transactions, and `counters.values_indexed_seq` says up to which `seq`
//! every version is indexed; readers also read every row with a newer version. The index is
//! exact: indexing a version removes the entries of the row's previous version (found in
//! `row_index` or the writer's tail, and read again when an earlier batch indexed it), and a
//! deletion leaves the row none. So every row shown at the index's transaction has exactly
//! one `created` entry, which is what lets [`Store::created_counts`] count rows without
//! reading them. Sorted reads still read each proposed row at their snapshot and evaluate it
//! again, so the index decides only how many rows they read.
//!
//! PostgreSQL holds the same entries (migration 14), with values as bytes that compare as the
//! values do ([`ValueSql`]), so one B-tree serves text and numbers there too. Its writers are
//! serialized by the transaction counter row like the embedded store's (see the crate docs):
//! versions commit in `seq` order, so the same counter says what is indexed. The writer of
//! every replica indexes when it has time; the batch locks the counter's row (`FOR UPDATE
//! SKIP LOCKED`), so one replica indexes at a time and a replica killed mid-batch leaves the
//! counter where it was. Readers that need the counter, the extras and the entries to agree
//! read them in one `REPEATABLE READ` transaction (an embedded read transaction is one
//! snapshot already).
//!
use crate::db::Pools;
use crate::index::{RowIndex, Version, newer};
use crate::rows::{StoredRow, decode_data};
use crate::search::{CHANGED_AFTER, ROWS_AFTER, Unindexed};
use crate::{Result, Store, StoreError};
use holdfast_core::authz::ObjectPass;
use holdfast_core::merge::{is_root_span, only_discussion};
use holdfast_core::qexpr::timestamp_like;
use holdfast_core::xact::XactId;
use serde_json::{Map, Value};
use sha2::Digest;
use sqlx::QueryBuilder;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The path of the *odd* entries: values of `created` that are not [`server_timestamp`]s.
const ODD: &str = "created:odd";

/// Most names under `scores` (and under `metrics`) indexed per row.
pub const MAX_PER_GROUP: usize = 64;
/// Rows a sorted read may have to read besides the index (unindexed or irregular) before
/// the caller is told to read the object instead.
pub const MAX_EXTRA_ROWS: usize = 100_000;

/// A value as the index orders it.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    Number(f64),
    Text(String),
}

impl IndexValue {
    pub fn to_json(&self) -> Value {
        match self {
            IndexValue::Number(n) => {
                serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
            IndexValue::Text(s) => Value::String(s.clone()),
        }
    }
}

/// How the value index holds a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// `created`: text, sorted.
    Created,
    /// Each name directly under `scores` and `metrics`: numbers, sorted.
    Number,
    /// `tags`: each text listed, for filters only (a row has one entry per tag, and no
    /// entries of root spans alone, so sorted reads cannot use them).
    Listed,
    /// Each name directly under `metadata` and `span_attributes`: numbers and texts, each
    /// kind in a range of its own (sorts put every number before every text), sorted and
    /// looked up.
    Mixed,
    /// `error`: one entry (an empty text) for each row where it is set, for `error IS NOT
    /// NULL` (the errors view) only: not sorted, not compared.
    Present,
    /// `root_span_id` of root spans, with their `created` ([`root_entry_text`]): looked up
    /// by trace to find the root rows of given traces ([`Store::trace_roots`]) without
    /// reading the traces; not sorted, not compared.
    Root,
}

impl Held {
    /// Whether filters can look up numbers of the field.
    pub fn numbers(self) -> bool {
        matches!(self, Held::Number | Held::Mixed)
    }

    /// Whether filters can look up texts of the field by comparing them as text (a text
    /// that compares as an instant is irregular: see [`Held::Listed`]).
    pub fn texts(self) -> bool {
        matches!(self, Held::Listed | Held::Mixed)
    }

    /// Whether the index holds values of the kind (`text`, else numbers) for the field.
    pub fn has_kind(self, text: bool) -> bool {
        if text {
            self != Held::Number
        } else {
            self.numbers()
        }
    }

    /// Whether sorted reads of the field can use the index.
    pub fn sorted(self) -> bool {
        !matches!(self, Held::Listed | Held::Present | Held::Root)
    }

    /// The kinds of value (`true`: text) a sorted read of the field reads, in ascending
    /// order; none for a listed field.
    pub fn sort_kinds(self) -> &'static [bool] {
        match self {
            Held::Created => &[true],
            Held::Number => &[false],
            Held::Listed | Held::Present | Held::Root => &[],
            Held::Mixed => &[false, true],
        }
    }
}

/// The groups whose names are fields of the index, one field per name, and how it holds
/// them.
const GROUPS: [(&str, Held); 4] = [
    ("scores", Held::Number),
    ("metrics", Held::Number),
    ("metadata", Held::Mixed),
    ("span_attributes", Held::Mixed),
];

/// How the index holds a group's fields.
fn group_held(group: &str) -> Option<Held> {
    GROUPS.iter().find(|(g, _)| *g == group).map(|(_, h)| *h)
}

/// How the index holds a field (see [`Held`]); `None` when it does not.
pub fn held(path: &[String]) -> Option<Held> {
    match path {
        [f] if f == "created" => Some(Held::Created),
        [f] if f == "tags" => Some(Held::Listed),
        [f] if f == "error" => Some(Held::Present),
        [f] if f == "root_span_id" => Some(Held::Root),
        [g, name] if !name.is_empty() => group_held(g),
        _ => None,
    }
}

/// The path a field's entries of one kind are keyed by: a mixed field's numbers are under
/// its path marked with `#` (no field's path starts with it), everything else under its
/// path (`joined`, its parts joined by dots).
fn kind_path(joined: &str, held: Held, text: bool) -> String {
    if held == Held::Mixed && !text {
        format!("#{joined}")
    } else {
        joined.to_owned()
    }
}

/// The path of the entry a row gets when the index does not hold every value of a group
/// (more than [`MAX_PER_GROUP`] names, or an array, whose items a path reaches by position):
/// readers of any field of the group read such rows.
fn group_path(path: &[String]) -> Option<&str> {
    match path {
        [g, _] if group_held(g).is_some() => Some(g),
        _ => None,
    }
}

/// The index key of a field of an object (`roots`: the entries of root spans only;
/// `irregular`: the rows whose value the index cannot order).
fn field_key(object_type: &str, object_id: &str, path: &str, roots: bool, irregular: bool) -> i64 {
    let mut h = sha2::Sha256::new();
    for part in [object_type, object_id, path] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.update([u8::from(roots), u8::from(irregular)]);
    let digest = h.finalize();
    i64::from_be_bytes(digest.first_chunk::<8>().copied().unwrap_or_default())
}

/// One entry to write: (field key, value, or `None` for an irregular entry).
pub(crate) type Entry = (i64, Option<IndexValue>);

/// Whether the index can hold a text: PostgreSQL reads entries' text as text, which holds
/// no NUL (such a value is irregular on both backends).
fn regular_text(s: &str, held: Held) -> bool {
    !s.contains('\0') && (held == Held::Created || !timestamp_like(s))
}

/// A row's entries (see the module docs). A row of comments alone is not shown by any
/// query and has none.
pub(crate) fn entries(object_type: &str, object_id: &str, row: &Map<String, Value>) -> Vec<Entry> {
    if only_discussion(row) {
        return Vec::new();
    }
    let root = is_root_span(row);
    let key = |path: &str, roots: bool, irregular: bool| {
        field_key(object_type, object_id, path, roots, irregular)
    };
    let mut out = Vec::new();
    let add = |out: &mut Vec<Entry>, path: &str, v: &Value, held: Held| {
        let value = match v {
            Value::Null => return,
            Value::String(s) if held.has_kind(true) && regular_text(s, held) => {
                Some(IndexValue::Text(s.clone()))
            }
            Value::Number(n) if held.has_kind(false) => n.as_f64().map(IndexValue::Number),
            _ => None,
        };
        match value {
            Some(value) => {
                let at = kind_path(path, held, matches!(value, IndexValue::Text(_)));
                out.push((key(&at, false, false), Some(value.clone())));
                if root && held.sorted() {
                    out.push((key(&at, true, false), Some(value)));
                }
            }
            None => out.push((key(path, false, true), None)),
        }
    };
    let odd = match row.get("created") {
        Some(c) => {
            add(&mut out, "created", c, Held::Created);
            // An irregular value (with a NUL) is not listed: counts read the object then.
            c.as_str()
                .filter(|s| !server_timestamp(s) && !s.contains('\0'))
        }
        None => None,
    };
    for (group, how) in GROUPS {
        match row.get(group) {
            Some(Value::Object(m)) => {
                for (name, v) in m.iter().take(MAX_PER_GROUP) {
                    add(&mut out, &format!("{group}.{name}"), v, how);
                }
                if m.len() > MAX_PER_GROUP {
                    out.push((key(group, false, true), None));
                }
            }
            Some(Value::Array(a)) if !a.is_empty() => out.push((key(group, false, true), None)),
            _ => {}
        }
    }
    // Each tag once; a row whose tags the index cannot list (not an array of at most
    // [`MAX_PER_GROUP`] regular texts) is irregular.
    match row.get("tags") {
        None | Some(Value::Null) => {}
        Some(tags) => {
            let listed: Option<BTreeSet<&str>> = tags
                .as_array()
                .filter(|a| a.len() <= MAX_PER_GROUP)
                .and_then(|a| {
                    a.iter()
                        .map(|t| t.as_str().filter(|s| regular_text(s, Held::Listed)))
                        .collect()
                });
            match listed {
                Some(tags) => out.extend(
                    tags.into_iter()
                        .map(|t| (key("tags", false, false), Some(IndexValue::Text(t.into())))),
                ),
                None => out.push((key("tags", false, true), None)),
            }
        }
    }
    // The row's trace, when it is a text the index can hold.
    let trace = row
        .get("root_span_id")
        .and_then(Value::as_str)
        .filter(|s| !s.contains('\0'));
    // A root span's `root_span_id`, which names its trace, with its `created` (irregular
    // when not a text the entry can hold).
    if root && row.contains_key("root_span_id") {
        let created = row.get("created").and_then(Value::as_str);
        match trace.and_then(|t| root_entry_text(t, created)) {
            Some(s) => out.push((key("root_span_id", false, false), Some(IndexValue::Text(s)))),
            None => out.push((key("root_span_id", false, true), None)),
        }
    }
    // `error`: whether it is set, whatever its value (the errors view's filter), holding the
    // row's trace (empty without one).
    if row.get("error").is_some_and(|e| !e.is_null()) {
        out.push((
            key("error", false, false),
            Some(IndexValue::Text(trace.unwrap_or_default().to_owned())),
        ));
    }
    if let Some(odd) = odd {
        out.push((
            key(ODD, false, false),
            Some(IndexValue::Text(odd.to_owned())),
        ));
    }
    out
}

/// Follows a trace in a root span's entry when the root has a `created` the index orders.
const ROOT_CREATED: char = '\u{1}';
/// Follows a trace in a root span's entry when the root has none.
const ROOT_UNORDERED: char = '\u{2}';

/// The text of a root span's entry: its trace, then [`ROOT_CREATED`] and its `created` when
/// that is a text the index orders (the value of its entry of `created` among roots), else
/// [`ROOT_UNORDERED`]. A trace's entries are then the range from its text followed by
/// `\u{1}` to its text followed by `\u{3}`, which holds no other trace's: `None` (an
/// irregular entry) for a trace holding a NUL, `\u{1}` or `\u{2}`.
fn root_entry_text(trace: &str, created: Option<&str>) -> Option<String> {
    if trace.contains(['\0', ROOT_CREATED, ROOT_UNORDERED]) {
        return None;
    }
    Some(match created.filter(|c| regular_text(c, Held::Created)) {
        Some(c) => format!("{trace}{ROOT_CREATED}{c}"),
        None => format!("{trace}{ROOT_UNORDERED}"),
    })
}

/// A root span found by its trace ([`Store::trace_roots`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRoot {
    pub trace: String,
    pub row_id: String,
    /// The indexed version's `seq`.
    pub seq: i64,
    /// Its `created`, when the index orders it (the value of its `created` entry among
    /// roots, which a sorted read of roots by `created` walks).
    pub created: Option<String>,
}

impl TraceRoot {
    /// The entry read back (`None`: not a root span's entry).
    fn read(text: &str, seq: i64, row_id: String) -> Option<Self> {
        let at = text.find([ROOT_CREATED, ROOT_UNORDERED])?;
        let (trace, rest) = text.split_at(at);
        let created = match rest.strip_prefix(ROOT_CREATED) {
            Some(c) => Some(c.to_owned()),
            None if rest.strip_prefix(ROOT_UNORDERED) == Some("") => None,
            None => return None,
        };
        Some(TraceRoot {
            trace: trace.to_owned(),
            row_id,
            seq,
            created,
        })
    }
}

/// How a backend stores an entry's value. The embedded store's column has no type: numbers
/// and text keep their own order, text compared byte by byte (SQLite's `BINARY`).
/// PostgreSQL's is bytes ([`value_bytes`]), compared byte by byte, which orders numbers as
/// numbers and text exactly as the embedded store does. An irregular entry's value is 0
/// (embedded) or no bytes (PostgreSQL).
pub(crate) trait ValueSql: sqlx::Database {
    /// The value column of a text field's entries, read as text.
    const TEXT: &'static str;
    /// The statement that makes the transaction it starts read one snapshot, if one is needed.
    const SNAPSHOT: Option<&'static str>;
    /// The statement that makes the transaction it starts walk the index in order, if the
    /// planner needs telling (see [`crate::db::INDEX_WALK`]).
    const INDEX_WALK: Option<&'static str>;
    /// A number field's value as read.
    type Number: for<'r> sqlx::Decode<'r, Self> + sqlx::Type<Self> + Send + Unpin;
    fn push_value(qb: &mut QueryBuilder<Self>, v: Option<&IndexValue>);
    fn number(raw: Self::Number) -> Result<f64>;
    /// A subquery of these row ids, one bound value for the whole list (a statement holds
    /// it once, however many entries it tests against it).
    fn push_row_ids(qb: &mut QueryBuilder<Self>, ids: &[&str]);
    /// The statement reading the root spans' entries of `traces` under `field` (see
    /// [`root_entry_text`]): text, `seq`, row id. One seek per trace, the traces one bound
    /// value.
    fn push_trace_roots(qb: &mut QueryBuilder<Self>, field: i64, traces: &[String]);
}

impl ValueSql for sqlx::Sqlite {
    const TEXT: &'static str = "value";
    // A read transaction in WAL mode reads one snapshot.
    const SNAPSHOT: Option<&'static str> = None;
    // SQLite's planner walks the primary key for these statements.
    const INDEX_WALK: Option<&'static str> = None;
    type Number = f64;
    fn push_value(qb: &mut QueryBuilder<Self>, v: Option<&IndexValue>) {
        match v {
            Some(IndexValue::Number(n)) => qb.push_bind(*n),
            Some(IndexValue::Text(s)) => qb.push_bind(s.clone()),
            None => qb.push_bind(0i64),
        };
    }
    fn number(raw: f64) -> Result<f64> {
        Ok(raw)
    }
    fn push_row_ids(qb: &mut QueryBuilder<Self>, ids: &[&str]) {
        qb.push("(SELECT value FROM json_each(")
            .push_bind(Value::from(ids).to_string())
            .push("))");
    }
    fn push_trace_roots(qb: &mut QueryBuilder<Self>, field: i64, traces: &[String]) {
        // The list first (`CROSS JOIN` keeps SQLite's order), each trace one range.
        qb.push("SELECT v.value, v.seq, v.row_id FROM json_each(")
            .push_bind(Value::from(traces).to_string())
            .push(") AS t CROSS JOIN row_values AS v WHERE v.field = ")
            .push_bind(field)
            .push(" AND v.value >= t.value || char(1) AND v.value < t.value || char(3)");
    }
}

impl ValueSql for sqlx::Postgres {
    const TEXT: &'static str = "convert_from(value, 'UTF8')";
    const SNAPSHOT: Option<&'static str> = Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
    const INDEX_WALK: Option<&'static str> = Some(crate::db::INDEX_WALK);
    type Number = Vec<u8>;
    fn push_value(qb: &mut QueryBuilder<Self>, v: Option<&IndexValue>) {
        qb.push_bind(v.map(value_bytes).unwrap_or_default());
    }
    fn number(raw: Vec<u8>) -> Result<f64> {
        bytes_number(&raw).ok_or_else(|| StoreError::Corrupt("a number in the value index".into()))
    }
    fn push_row_ids(qb: &mut QueryBuilder<Self>, ids: &[&str]) {
        let ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        qb.push("(SELECT unnest(CAST(")
            .push_bind(ids)
            .push(" AS TEXT[])))");
    }
    fn push_trace_roots(qb: &mut QueryBuilder<Self>, field: i64, traces: &[String]) {
        qb.push("SELECT convert_from(v.value, 'UTF8'), v.seq, v.row_id FROM unnest(CAST(")
            .push_bind(traces.to_vec())
            .push(
                " AS TEXT[])) AS t(trace) CROSS JOIN LATERAL (SELECT value, seq, row_id \
             FROM row_values WHERE field = ",
            )
            .push_bind(field)
            .push(
                " AND value >= convert_to(t.trace || chr(1), 'UTF8') \
             AND value < convert_to(t.trace || chr(3), 'UTF8')) v",
            );
    }
}

/// A value as PostgreSQL's index holds it: text as its UTF-8 bytes; a number as 8 bytes that
/// compare as the numbers do (its IEEE 754 bits, big-endian, with the sign bit set for a
/// positive number and every bit flipped for a negative one; -0 is 0).
fn value_bytes(v: &IndexValue) -> Vec<u8> {
    match v {
        IndexValue::Text(s) => s.as_bytes().to_vec(),
        IndexValue::Number(n) => {
            let bits = if *n == 0.0 { 0 } else { n.to_bits() };
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits | 1 << 63
            };
            ordered.to_be_bytes().to_vec()
        }
    }
}

/// The number [`value_bytes`] wrote.
fn bytes_number(b: &[u8]) -> Option<f64> {
    let ordered = u64::from_be_bytes(b.try_into().ok()?);
    let bits = if ordered >> 63 == 1 {
        ordered & !(1 << 63)
    } else {
        !ordered
    };
    Some(f64::from_bits(bits))
}

/// A sorted read of one field of an object.
#[derive(Debug, Clone)]
pub struct ValueQuery {
    /// The field's path (see [`held`]).
    pub path: Vec<String>,
    /// Which kind of entries to read (`true`: texts, else numbers).
    pub text: bool,
    /// Only root spans' entries.
    pub roots: bool,
    pub descending: bool,
}

/// Where a sorted read continues: at this value (inclusive) or after an entry.
#[derive(Debug, Clone)]
pub enum ValueFrom {
    Start,
    AtValue(IndexValue),
    After(IndexValue, i64),
}

/// One entry read: its value, the version's `seq` and its row id.
#[derive(Debug, Clone)]
pub struct ValueEntry {
    pub value: IndexValue,
    pub seq: i64,
    pub row_id: String,
}

/// A stretch of a field's entries walked in the query's order, of which only those of
/// listed rows were returned ([`Store::value_walk`]).
#[derive(Debug, Clone, Default)]
pub struct Walked {
    /// The entries of the listed rows, in the query's order.
    pub listed: Vec<ValueEntry>,
    /// How many entries were walked (fewer than asked for: the entries ran out).
    pub walked: usize,
    /// The last entry walked, listed or not: where the next stretch starts.
    pub last: Option<ValueEntry>,
}

impl Walked {
    /// Entries read whole ([`Store::value_entries`]) as a walk listing every row.
    pub fn whole(entries: Vec<ValueEntry>) -> Self {
        Walked {
            walked: entries.len(),
            last: entries.last().cloned(),
            listed: entries,
        }
    }
}

/// The rows a read through the index must read besides its entries ([`Store::value_extras`]):
/// their ids, and the version at the read's snapshot of those the index does not hold yet.
#[derive(Debug, Clone, Default)]
pub struct ValueExtras {
    /// Sorted.
    pub ids: Vec<String>,
    /// Rows with a version after the index, by id: their version at `as_of`, found by the
    /// statement that listed them. A row's versions commit in `seq` order, so its newest
    /// version with a `seq` after any bound and a transaction at or before `as_of` is its
    /// version at `as_of`. [`Store::read_value_extras`] reads these by `seq` without
    /// looking them up in `row_index` (a burst of writes leaves thousands of them).
    recent: HashMap<String, Recent>,
    as_of: i64,
}

/// The rows of an object with a version after `$1` at or before `$2` (`$3`–`$5` the object),
/// the first `$6` by id, with their newest such version ([`ValueExtras`]).
const RECENT: &str = "SELECT r.row_id, r.xact_id, r.seq, r.is_deleted, r.is_root FROM rows r \
     WHERE r.seq IN (SELECT MAX(s.seq) FROM rows s \
       WHERE s.seq > $1 AND s.xact_id <= $2 AND s.object_type = $3 \
         AND s.object_id = $4 AND s.org_id = $5 \
       GROUP BY s.row_id ORDER BY s.row_id LIMIT $6)";

/// [`RECENT`] of the rows whose newest such version is not known to be other than a root
/// span. After a large trace's write, its thousands of spans have such versions, and one is
/// a root: only the rows with a version that may be a root are grouped, and only those whose
/// newest version may be one are returned.
const RECENT_ROOTS: &str = "SELECT r.row_id, r.xact_id, r.seq, r.is_deleted, r.is_root \
     FROM rows r WHERE r.seq IN (SELECT MAX(s.seq) FROM rows s \
       WHERE s.seq > $1 AND s.xact_id <= $2 AND s.object_type = $3 \
         AND s.object_id = $4 AND s.org_id = $5 \
         AND s.row_id IN (SELECT c.row_id FROM rows c \
           WHERE c.seq > $1 AND c.xact_id <= $2 AND c.object_type = $3 \
             AND c.object_id = $4 AND c.org_id = $5 AND c.is_root IS NOT FALSE) \
       GROUP BY s.row_id) \
     AND r.is_root IS NOT FALSE ORDER BY r.row_id LIMIT $6";

/// A row's version at a read's snapshot, found by [`ValueExtras`]' statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recent {
    version: Version,
    /// Whether the version is a trace's root span, recorded when it was written (`None`:
    /// written before that was recorded, or a deletion).
    root: Option<bool>,
}

/// The index's statements, once per backend (`on_sqlite`, `on_postgres`; the differences
/// are in [`ValueSql`]). PostgreSQL's writers are serialized by the transaction counter like
/// the embedded store's (see the crate docs), so versions commit in `seq` order there too,
/// and `counters.values_indexed_seq` means the same on both.
macro_rules! backend_statements {
    ($m:ident, $DB:ty, $rows:ident) => {
        pub(crate) mod $m {
            use super::*;
            use crate::search::$rows::object_row_ids;

            type Db = $DB;
            type Conn = <$DB as sqlx::Database>::Connection;

            /// Adds versions' entries to `row_values`: (`seq`, row id, entries).
            async fn insert_entries(
                conn: &mut Conn,
                versions: &[(i64, &str, Vec<Entry>)],
            ) -> Result<()> {
                let flat: Vec<(i64, &str, &Entry)> = versions
                    .iter()
                    .flat_map(|(seq, id, es)| es.iter().map(move |e| (*seq, *id, e)))
                    .collect();
                for chunk in flat.chunks(250) {
                    let mut qb = QueryBuilder::<Db>::new(
                        "INSERT INTO row_values (field, value, seq, row_id) ",
                    );
                    qb.push("VALUES ");
                    for (i, (seq, id, (key, value))) in chunk.iter().enumerate() {
                        qb.push(if i == 0 { "(" } else { ", (" });
                        qb.push_bind(*key).push(", ");
                        <Db as ValueSql>::push_value(&mut qb, value.as_ref());
                        qb.push(", ").push_bind(*seq).push(", ");
                        qb.push_bind(id.to_string()).push(")");
                    }
                    qb.push(" ON CONFLICT DO NOTHING");
                    qb.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            /// Removes versions' entries from `row_values`.
            pub(crate) async fn delete_entries(
                conn: &mut Conn,
                versions: &[(i64, Vec<Entry>)],
            ) -> Result<()> {
                let flat: Vec<(i64, &Entry)> = versions
                    .iter()
                    .flat_map(|(seq, es)| es.iter().map(move |e| (*seq, e)))
                    .collect();
                for chunk in flat.chunks(250) {
                    // An OR of whole keys: SQLite reads the index once per key, where a
                    // row-value IN list would scan the table.
                    let mut qb = QueryBuilder::<Db>::new("DELETE FROM row_values WHERE ");
                    for (i, (seq, (key, value))) in chunk.iter().enumerate() {
                        qb.push(if i == 0 { "(field = " } else { " OR (field = " });
                        qb.push_bind(*key).push(" AND value = ");
                        <Db as ValueSql>::push_value(&mut qb, value.as_ref());
                        qb.push(" AND seq = ").push_bind(*seq).push(")");
                    }
                    qb.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            /// Indexes the versions of `batch` after `from` (every version up to `from` is
            /// indexed), keeping the index exact: each row's entries are those of its newest
            /// indexed version. A version's entries replace those of the row's previous
            /// version (`previous`, by `seq`, for every version of the batch after `from`),
            /// which are removed (read again when that version is not in the batch); a
            /// version replaced within the batch is never added. Runs in the catch-up's
            /// transaction.
            pub(crate) async fn index_versions(
                conn: &mut Conn,
                from: i64,
                batch: &[Unindexed],
                previous: &HashMap<i64, Version>,
            ) -> Result<()> {
                let by_seq: HashMap<i64, &Unindexed> = batch.iter().map(|u| (u.seq, u)).collect();
                let mut replaced: HashSet<i64> = HashSet::new();
                let mut stale: Vec<(i64, Vec<Entry>)> = Vec::new();
                for v in batch.iter().filter(|v| v.seq > from) {
                    let Some(prev) = previous.get(&v.seq) else {
                        continue;
                    };
                    if prev.deleted {
                        continue;
                    }
                    if prev.seq > from {
                        replaced.insert(prev.seq);
                        continue;
                    }
                    let old = match by_seq.get(&prev.seq) {
                        Some(u) => u.data.clone(),
                        None => {
                            let stored: Option<Vec<u8>> =
                                sqlx::query_scalar("SELECT data FROM rows WHERE seq = $1")
                                    .bind(prev.seq)
                                    .fetch_optional(&mut *conn)
                                    .await?;
                            stored
                                .map(|data| decode_data(&v.row_id, &data))
                                .transpose()?
                        }
                    };
                    if let Some(old) = old {
                        stale.push((prev.seq, entries(&v.object_type, &v.object_id, &old)));
                    }
                }
                delete_entries(conn, &stale).await?;
                let fresh: Vec<(i64, &str, Vec<Entry>)> = batch
                    .iter()
                    .filter(|v| v.seq > from && !replaced.contains(&v.seq))
                    .filter_map(|v| {
                        let row = v.data.as_ref()?;
                        Some((
                            v.seq,
                            v.row_id.as_str(),
                            entries(&v.object_type, &v.object_id, row),
                        ))
                    })
                    .collect();
                insert_entries(conn, &fresh).await
            }

            /// Starts a read of one snapshot.
            async fn snapshot(p: &sqlx::Pool<Db>) -> Result<sqlx::Transaction<'static, Db>> {
                let mut tx = p.begin().await?;
                if let Some(sql) = <Db as ValueSql>::SNAPSHOT {
                    sqlx::query(sql).execute(&mut *tx).await?;
                }
                Ok(tx)
            }

            /// The rows of an object with a version after `seq` at or before `as_of`, at most
            /// `limit` (the first by id), each with its newest such version: its version at
            /// `as_of` (see [`ValueExtras`]). With `roots_only`, only the rows whose version
            /// there is not known to be other than a trace's root span (deletions included).
            pub(crate) async fn recent_versions<'c, E>(
                conn: E,
                pass: &ObjectPass,
                seq: i64,
                as_of: XactId,
                limit: i64,
                roots_only: bool,
            ) -> Result<HashMap<String, Recent>>
            where
                E: sqlx::Executor<'c, Database = Db>,
            {
                let sql = if roots_only { RECENT_ROOTS } else { RECENT };
                let found: Vec<(String, i64, i64, bool, Option<bool>)> = sqlx::query_as(sql)
                    .bind(seq)
                    .bind(as_of.as_i64())
                    .bind(pass.object_type().as_str())
                    .bind(pass.object_id())
                    .bind(pass.org_id())
                    .bind(limit)
                    .fetch_all(conn)
                    .await?;
                Ok(found
                    .into_iter()
                    .map(|(id, xact, seq, deleted, root)| {
                        let version = Version { xact, seq, deleted };
                        (id, Recent { version, root })
                    })
                    .collect())
            }

            /// See [`Store::value_extras`]: the rows, at most `limit`.
            pub(crate) async fn value_extras(
                p: &sqlx::Pool<Db>,
                pass: &ObjectPass,
                path: &[String],
                as_of: XactId,
                limit: i64,
                roots_only: bool,
            ) -> Result<ValueExtras> {
                let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
                let mut tx = snapshot(p).await?;
                let indexed: i64 = sqlx::query_scalar(
                    "SELECT value FROM counters WHERE name = 'values_indexed_seq'",
                )
                .fetch_one(&mut *tx)
                .await?;
                // The rows with a version after the index: those with one at or before
                // `as_of` here, with that version; the others change after `as_of`.
                let recent =
                    recent_versions(&mut *tx, pass, indexed, as_of, limit, roots_only).await?;
                let mut ids: Vec<String> = recent.keys().cloned().collect();
                ids.extend(
                    object_row_ids(&mut *tx, CHANGED_AFTER, as_of.as_i64(), pass, limit).await?,
                );
                // Rows whose value the index cannot order, and those whose group it does not
                // hold whole.
                let paths =
                    std::iter::once(path.join(".")).chain(group_path(path).map(String::from));
                for p in paths {
                    ids.extend(
                        object_row_ids(
                            &mut *tx,
                            "SELECT DISTINCT r.row_id FROM row_values v \
                             JOIN rows r ON r.seq = v.seq WHERE v.field = $1",
                            field_key(object_type, object_id, &p, false, true),
                            pass,
                            limit,
                        )
                        .await?,
                    );
                }
                tx.commit().await?;
                ids.sort();
                ids.dedup();
                Ok(ValueExtras {
                    ids,
                    recent,
                    as_of: as_of.as_i64(),
                })
            }

            /// See [`Store::rows_changed_since`]: the rows, at most `limit`.
            pub(crate) async fn rows_changed_since(
                p: &sqlx::Pool<Db>,
                pass: &ObjectPass,
                as_of: XactId,
                limit: i64,
            ) -> Result<Vec<String>> {
                object_row_ids(p, CHANGED_AFTER, as_of.as_i64(), pass, limit).await
            }

            /// The statement of [`value_entries`], after `prefix` (`EXPLAIN` in a test);
            /// `None` for a path the index does not hold.
            pub(crate) fn entries_statement(
                prefix: &str,
                pass: &ObjectPass,
                q: &ValueQuery,
                from: &ValueFrom,
                limit: usize,
            ) -> Option<QueryBuilder<Db>> {
                let column = if q.text {
                    <Db as ValueSql>::TEXT
                } else {
                    "v.value"
                };
                let mut qb = QueryBuilder::<Db>::new(prefix);
                push_entries(&mut qb, column, pass, q, from, limit)?;
                Some(qb)
            }

            /// Pushes the walk of up to `limit` entries from `from` in the query's order:
            /// `column` (the value as read), `seq` and `row_id`. `None` for a path the index
            /// does not hold.
            fn push_entries(
                qb: &mut QueryBuilder<Db>,
                column: &str,
                pass: &ObjectPass,
                q: &ValueQuery,
                from: &ValueFrom,
                limit: usize,
            ) -> Option<()> {
                let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
                let at = kind_path(&q.path.join("."), held(&q.path)?, q.text);
                let key = field_key(object_type, object_id, &at, q.roots, false);
                let (cmp, dir) = if q.descending {
                    ("<", "DESC")
                } else {
                    (">", "ASC")
                };
                qb.push(format!(
                    "SELECT {column}, v.seq, v.row_id FROM row_values v WHERE v.field = "
                ));
                qb.push_bind(key);
                match from {
                    ValueFrom::Start => {}
                    ValueFrom::AtValue(v) => {
                        qb.push(format!(" AND v.value {cmp}= "));
                        <Db as ValueSql>::push_value(qb, Some(v));
                    }
                    ValueFrom::After(v, seq) => {
                        qb.push(format!(" AND (v.value, v.seq) {cmp} ("));
                        <Db as ValueSql>::push_value(qb, Some(v));
                        qb.push(", ").push_bind(*seq).push(")");
                    }
                }
                qb.push(format!(" ORDER BY v.value {dir}, v.seq {dir} LIMIT "));
                qb.push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
                Some(())
            }

            /// The statement of [`value_walk`], after `prefix` (`EXPLAIN` in a test): the
            /// walk is materialized once; out of it come its entries of the rows `only`
            /// (fourth column -1) and its last entry with the count walked, in the walk's
            /// order (the last entry after a listed copy of itself). `None` for a path the
            /// index does not hold.
            pub(crate) fn walk_statement(
                prefix: &str,
                pass: &ObjectPass,
                q: &ValueQuery,
                from: &ValueFrom,
                limit: usize,
                only: &[&str],
            ) -> Option<QueryBuilder<Db>> {
                let (dir, back) = if q.descending {
                    ("DESC", "ASC")
                } else {
                    ("ASC", "DESC")
                };
                // Ordered by the stored value (bytes on PostgreSQL), read as the kind's.
                let column = if q.text {
                    <Db as ValueSql>::TEXT
                } else {
                    "value"
                };
                let mut qb =
                    QueryBuilder::<Db>::new(format!("{prefix}WITH walked AS MATERIALIZED ("));
                push_entries(&mut qb, "v.value", pass, q, from, limit)?;
                qb.push(
                    ") SELECT ".to_owned()
                        + column
                        + ", seq, row_id, n FROM (SELECT value, seq, row_id, \
                           CAST(-1 AS BIGINT) AS n FROM walked WHERE row_id IN ",
                );
                <Db as ValueSql>::push_row_ids(&mut qb, only);
                qb.push(format!(
                    " UNION ALL SELECT value, seq, row_id, \
                     (SELECT CAST(COUNT(*) AS BIGINT) FROM walked) AS n FROM (\
                     SELECT value, seq, row_id FROM walked ORDER BY value {back}, seq {back} \
                     LIMIT 1) l) w ORDER BY w.value {dir}, w.seq {dir}, w.n"
                ));
                Some(qb)
            }

            /// The rows a walk of the index's primary key reads, as the statement's order
            /// says (the planner told so where it needs telling).
            async fn walk<T>(p: &sqlx::Pool<Db>, mut qb: QueryBuilder<Db>) -> Result<Vec<T>>
            where
                T: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
            {
                let told = <Db as ValueSql>::INDEX_WALK;
                Ok(crate::db::fetch_told!(p, told, qb.build_query_as()).await?)
            }

            /// See [`Store::value_entries`].
            pub(crate) async fn value_entries(
                p: &sqlx::Pool<Db>,
                pass: &ObjectPass,
                q: &ValueQuery,
                from: &ValueFrom,
                limit: usize,
            ) -> Result<Vec<ValueEntry>> {
                let Some(qb) = entries_statement("", pass, q, from, limit) else {
                    return Ok(Vec::new());
                };
                if q.text {
                    let rows: Vec<(String, i64, String)> = walk(p, qb).await?;
                    Ok(rows
                        .into_iter()
                        .map(|(v, seq, row_id)| ValueEntry {
                            value: IndexValue::Text(v),
                            seq,
                            row_id,
                        })
                        .collect())
                } else {
                    let rows: Vec<(<Db as ValueSql>::Number, i64, String)> = walk(p, qb).await?;
                    rows.into_iter()
                        .map(|(v, seq, row_id)| {
                            Ok(ValueEntry {
                                value: IndexValue::Number(<Db as ValueSql>::number(v)?),
                                seq,
                                row_id,
                            })
                        })
                        .collect()
                }
            }

            /// See [`Store::value_walk`].
            pub(crate) async fn value_walk(
                p: &sqlx::Pool<Db>,
                pass: &ObjectPass,
                q: &ValueQuery,
                from: &ValueFrom,
                limit: usize,
                only: &[&str],
            ) -> Result<Walked> {
                let Some(qb) = walk_statement("", pass, q, from, limit, only) else {
                    return Ok(Walked::default());
                };
                let rows: Vec<(IndexValue, i64, String, i64)> = if q.text {
                    let rows: Vec<(String, i64, String, i64)> = walk(p, qb).await?;
                    rows.into_iter()
                        .map(|(v, seq, id, n)| (IndexValue::Text(v), seq, id, n))
                        .collect()
                } else {
                    let rows: Vec<(<Db as ValueSql>::Number, i64, String, i64)> =
                        walk(p, qb).await?;
                    rows.into_iter()
                        .map(|(v, seq, id, n)| {
                            Ok((IndexValue::Number(<Db as ValueSql>::number(v)?), seq, id, n))
                        })
                        .collect::<Result<_>>()?
                };
                let mut out = Walked::default();
                for (value, seq, row_id, n) in rows {
                    let entry = ValueEntry { value, seq, row_id };
                    match usize::try_from(n) {
                        Ok(walked) => {
                            out.walked = walked;
                            out.last = Some(entry);
                        }
                        Err(_) => out.listed.push(entry),
                    }
                }
                Ok(out)
            }

            /// The statement of [`trace_roots`], after `prefix` (`EXPLAIN` in a test).
            pub(crate) fn trace_roots_statement(
                prefix: &str,
                pass: &ObjectPass,
                traces: &[String],
            ) -> QueryBuilder<Db> {
                let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
                let mut qb = QueryBuilder::<Db>::new(prefix);
                let field = field_key(object_type, object_id, "root_span_id", false, false);
                <Db as ValueSql>::push_trace_roots(&mut qb, field, traces);
                qb
            }

            /// See [`Store::trace_roots`]: one chunk of its traces.
            pub(crate) async fn trace_roots(
                p: &sqlx::Pool<Db>,
                pass: &ObjectPass,
                traces: &[String],
            ) -> Result<Vec<TraceRoot>> {
                // A seek of the index per trace, whatever the planner estimates.
                let rows: Vec<(String, i64, String)> =
                    walk(p, trace_roots_statement("", pass, traces)).await?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(text, seq, row_id)| TraceRoot::read(&text, seq, row_id))
                    .collect())
            }

            /// See [`Store::odd_created_rows`]: the rows, at most `limit`.
            pub(crate) async fn odd_created_rows(
                p: &sqlx::Pool<Db>,
                pass: &ObjectPass,
                limit: i64,
            ) -> Result<Vec<String>> {
                let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
                Ok(sqlx::query_scalar(
                    "SELECT DISTINCT row_id FROM row_values WHERE field = $1 \
                     ORDER BY row_id LIMIT $2",
                )
                .bind(field_key(object_type, object_id, ODD, false, false))
                .bind(limit)
                .fetch_all(p)
                .await?)
            }

            /// See [`Store::created_counts`].
            pub(crate) async fn created_counts(
                p: &sqlx::Pool<Db>,
                pass: &ObjectPass,
                max_extras: usize,
            ) -> Result<Option<CreatedCounts>> {
                let (object_type, object_id) = (pass.object_type().as_str(), pass.object_id());
                let mut tx = snapshot(p).await?;
                let (indexed, indexed_xact, xact): (i64, Option<i64>, i64) = sqlx::query_as(
                    "SELECT c.value, (SELECT xact_id FROM rows WHERE seq = c.value), \
                            (SELECT value FROM counters WHERE name = 'xact') \
                     FROM counters c WHERE c.name = 'values_indexed_seq'",
                )
                .fetch_one(&mut *tx)
                .await?;
                let limit = i64::try_from(max_extras + 1).unwrap_or(i64::MAX);
                let extras = object_row_ids(&mut *tx, ROWS_AFTER, indexed, pass, limit).await?;
                let irregular: bool =
                    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM row_values WHERE field = $1)")
                        .bind(field_key(object_type, object_id, "created", false, true))
                        .fetch_one(&mut *tx)
                        .await?;
                let text = <Db as ValueSql>::TEXT;
                let odd: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {text} AS v, count(*) FROM row_values WHERE field = $1 \
                     GROUP BY value LIMIT $2"
                )))
                .bind(field_key(object_type, object_id, ODD, false, false))
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                if extras.len() > max_extras || odd.len() > max_extras || irregular {
                    return Ok(None);
                }
                Ok(Some(CreatedCounts {
                    tx: tx.into(),
                    key: field_key(object_type, object_id, "created", false, false),
                    xact: u64::try_from(xact).ok().and_then(XactId::from_counter),
                    indexed_xact: indexed_xact.and_then(XactId::from_i64),
                    odd,
                    extras,
                }))
            }

            /// See [`CreatedCounts::groups`].
            pub(crate) async fn groups(
                tx: &mut sqlx::Transaction<'static, Db>,
                key: i64,
                prefix: Option<usize>,
                within: Option<&str>,
                max: usize,
            ) -> Result<Option<Vec<(String, i64)>>> {
                let text = <Db as ValueSql>::TEXT;
                let end = within.and_then(successor);
                let mut from: Option<(String, bool)> = within.map(|w| (w.to_owned(), true));
                let mut out = Vec::new();
                if let (Some(n), true) = (prefix, within.is_none() || end.is_some()) {
                    for _ in 0..RANGE_GROUPS {
                        let mut qb = select(key, text, &from, end.as_deref());
                        qb.push(" ORDER BY value LIMIT 1");
                        let first: Option<String> =
                            qb.build_query_scalar().fetch_optional(&mut **tx).await?;
                        let Some(first) = first else {
                            return Ok((out.len() <= max).then_some(out));
                        };
                        // A value shorter than the prefix is a group of its own.
                        let (group, upper) = if first.chars().count() < n {
                            (first.clone(), None)
                        } else {
                            let group: String = first.chars().take(n).collect();
                            match successor(&group) {
                                Some(after) => (group, Some(after)),
                                None => break,
                            }
                        };
                        let mut qb = select(key, "count(*)", &Some((group.clone(), true)), None);
                        let bound = |s: &str| Some(IndexValue::Text(s.to_owned()));
                        match &upper {
                            Some(_) => qb.push(" AND value < "),
                            None => qb.push(" AND value = "),
                        };
                        <Db as ValueSql>::push_value(
                            &mut qb,
                            bound(upper.as_deref().unwrap_or(&group)).as_ref(),
                        );
                        let rows: i64 = qb.build_query_scalar().fetch_one(&mut **tx).await?;
                        out.push((group.clone(), rows));
                        from = Some(match upper {
                            Some(after) => (after, true),
                            None => (group, false),
                        });
                    }
                }
                let cut =
                    prefix.map_or_else(|| text.to_owned(), |n| format!("substr({text}, 1, {n})"));
                let mut qb = select(key, &format!("{cut} AS k, count(*)"), &from, end.as_deref());
                if let (Some(w), None) = (within, &end) {
                    // No text follows every text starting with `w`: compare the start instead.
                    let chars = w.chars().count();
                    qb.push(format!(" AND substr({text}, 1, {chars}) = "))
                        .push_bind(w.to_owned());
                }
                qb.push(" GROUP BY k LIMIT ")
                    .push_bind(i64::try_from(max + 1).unwrap_or(i64::MAX));
                out.extend(
                    qb.build_query_as::<(String, i64)>()
                        .fetch_all(&mut **tx)
                        .await?,
                );
                Ok((out.len() <= max).then_some(out))
            }

            /// `SELECT what` over the entries of `key` from `from` (inclusive or not) to `end`
            /// (exclusive).
            fn select(
                key: i64,
                what: &str,
                from: &Option<(String, bool)>,
                end: Option<&str>,
            ) -> QueryBuilder<Db> {
                let mut qb = QueryBuilder::<Db>::new(format!(
                    "SELECT {what} FROM row_values WHERE field = "
                ));
                qb.push_bind(key);
                let text = |s: &str| Some(IndexValue::Text(s.to_owned()));
                if let Some((start, inclusive)) = from {
                    qb.push(if *inclusive {
                        " AND value >= "
                    } else {
                        " AND value > "
                    });
                    <Db as ValueSql>::push_value(&mut qb, text(start).as_ref());
                }
                if let Some(end) = end {
                    qb.push(" AND value < ");
                    <Db as ValueSql>::push_value(&mut qb, text(end).as_ref());
                }
                qb
            }
        }
    };
}
backend_statements!(on_sqlite, sqlx::Sqlite, on_sqlite);
backend_statements!(on_postgres, sqlx::Postgres, on_postgres);

/// Embedded store: the version of each row written just before each of `batch` (the newest
/// with an older transaction), in `row_index` or the writer's tail, by the later version's
/// `seq`. `row_index` is asked once for the batch: a statement per version cost the writer
/// half of an idle batch's time (2,000 round trips), while the lookups themselves are one
/// primary-key probe each.
pub(crate) async fn previous_versions(
    conn: &mut sqlx::SqliteConnection,
    index: &RowIndex,
    batch: &[&Unindexed],
) -> Result<HashMap<i64, Version>> {
    let mut out: HashMap<i64, Version> = HashMap::new();
    for chunk in batch.chunks(PREVIOUS_CHUNK) {
        let listed: Vec<Value> = chunk
            .iter()
            .map(|v| serde_json::json!([v.seq, v.object_type, v.object_id, v.row_id, v.xact]))
            .collect();
        let found: Vec<(i64, i64, i64, bool)> = sqlx::query_as(
            "SELECT json_extract(b.value, '$[0]'), i.xact_id, i.seq, i.is_deleted \
             FROM json_each($1) b JOIN row_index i \
               ON i.object_type = json_extract(b.value, '$[1]') \
              AND i.object_id = json_extract(b.value, '$[2]') \
              AND i.row_id = json_extract(b.value, '$[3]') \
              AND i.xact_id = (SELECT max(p.xact_id) FROM row_index p \
                    WHERE p.object_type = json_extract(b.value, '$[1]') \
                      AND p.object_id = json_extract(b.value, '$[2]') \
                      AND p.row_id = json_extract(b.value, '$[3]') \
                      AND p.xact_id < json_extract(b.value, '$[4]'))",
        )
        .bind(Value::Array(listed).to_string())
        .fetch_all(&mut *conn)
        .await?;
        out.extend(found.into_iter().map(|(seq, xact, prev, deleted)| {
            (
                seq,
                Version {
                    xact,
                    seq: prev,
                    deleted,
                },
            )
        }));
    }
    let tail = index.view();
    for v in batch {
        let stored = out.get(&v.seq).copied();
        let in_tail = tail.latest(&v.object_type, &v.object_id, &v.row_id, v.xact - 1);
        match newer(stored, in_tail) {
            Some(found) => out.insert(v.seq, found),
            None => out.remove(&v.seq),
        };
    }
    Ok(out)
}

/// Versions whose previous versions one statement looks up (the array is bound as one
/// JSON text).
const PREVIOUS_CHUNK: usize = 1_000;

/// PostgreSQL: the version of each row written just before each of `batch` (the newest with
/// an older transaction), by the later version's `seq`; one statement for the batch (the
/// writers fill `row_index` in their transaction there, so there is no tail).
async fn previous_versions_postgres(
    conn: &mut sqlx::PgConnection,
    batch: &[Unindexed],
) -> Result<HashMap<i64, Version>> {
    let column = |f: fn(&Unindexed) -> &str| batch.iter().map(f).collect::<Vec<&str>>();
    let found: Vec<(i64, i64, i64, bool)> = sqlx::query_as(
        "SELECT b.seq, p.xact_id, p.seq, p.is_deleted \
         FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[]) \
              AS b(seq, object_type, object_id, row_id, xact_id) \
         CROSS JOIN LATERAL (SELECT i.xact_id, i.seq, i.is_deleted FROM row_index i \
              WHERE i.object_type = b.object_type AND i.object_id = b.object_id \
              AND i.row_id = b.row_id AND i.xact_id < b.xact_id \
              ORDER BY i.xact_id DESC LIMIT 1) p",
    )
    .bind(batch.iter().map(|v| v.seq).collect::<Vec<i64>>())
    .bind(column(|v| &v.object_type))
    .bind(column(|v| &v.object_id))
    .bind(column(|v| &v.row_id))
    .bind(batch.iter().map(|v| v.xact).collect::<Vec<i64>>())
    .fetch_all(&mut *conn)
    .await?;
    Ok(found
        .into_iter()
        .map(|(seq, xact, prev, deleted)| {
            (
                seq,
                Version {
                    xact,
                    seq: prev,
                    deleted,
                },
            )
        })
        .collect())
}

/// PostgreSQL: adds up to `limit` versions after `values_indexed_seq` to the value index, in
/// one transaction with the counter's advance; how many it read and whether more are waiting.
/// The counter's row is locked for the batch: a replica that finds it locked leaves the work
/// to the one indexing.
pub(crate) async fn catch_up_postgres(p: &sqlx::PgPool, limit: i64) -> Result<(i64, bool)> {
    let mut tx = p.begin().await?;
    let from: Option<i64> = sqlx::query_scalar(
        "SELECT value FROM counters WHERE name = 'values_indexed_seq' FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(from) = from else {
        return Ok((0, false));
    };
    let (batch, cut) = crate::search::on_postgres::unindexed(&mut tx, from, limit).await?;
    let Some(last) = batch.last().map(|b| b.seq) else {
        return Ok((0, false));
    };
    let previous = previous_versions_postgres(&mut tx, &batch).await?;
    on_postgres::index_versions(&mut tx, from, &batch, &previous).await?;
    sqlx::query(
        "UPDATE counters SET value = GREATEST(value, $1) WHERE name = 'values_indexed_seq'",
    )
    .bind(last)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let n = batch.len() as i64;
    Ok((n, cut || n >= limit))
}

impl Store {
    /// Whether sorted reads can use the value index.
    pub fn has_value_index(&self) -> bool {
        !cfg!(feature = "bench-no-search-index")
    }

    /// The rows of an object that a sorted read of `path` at `as_of` must read besides the
    /// index: those with a version newer than the index or than `as_of` (their entry may not
    /// be that of their version at `as_of`), and those whose value the index cannot order.
    /// Sorted; `None` when there are more than `max` (at most [`MAX_EXTRA_ROWS`]) or there
    /// is no index. Entries read later can move (the writer indexes rows changed
    /// meanwhile): the caller also reads [`Store::rows_changed_since`] once it has read the
    /// entries.
    ///
    /// `roots_only`, for a read of root spans alone: of the rows with a version newer than
    /// the index, those whose version at `as_of` is known not to be a root span
    /// ([`holdfast_core::merge::is_root_span`]) are left out. Such a row is no candidate; an
    /// entry the index still holds for it is read like any other and found not to be one.
    pub async fn value_extras(
        &self,
        pass: &ObjectPass,
        path: &[String],
        as_of: XactId,
        max: usize,
        roots_only: bool,
    ) -> Result<Option<ValueExtras>> {
        if !self.has_value_index() || held(path).is_none() {
            return Ok(None);
        }
        let max = max.min(MAX_EXTRA_ROWS);
        let limit = i64::try_from(max + 1).unwrap_or(i64::MAX);
        let extras = match &self.read {
            Pools::Sqlite(p) => {
                on_sqlite::value_extras(p, pass, path, as_of, limit, roots_only).await?
            }
            Pools::Postgres(p) => {
                on_postgres::value_extras(p, pass, path, as_of, limit, roots_only).await?
            }
        };
        Ok((extras.ids.len() <= max).then_some(extras))
    }

    /// [`Store::read_row_ids`] of some of `extras`' rows at `as_of`: those whose version
    /// `extras` found are read by `seq` alone, the others as by [`Store::read_row_ids`].
    /// With `roots_only`, rows whose version is known not to be a trace's root span
    /// ([`holdfast_core::merge::is_root_span`]) may be left out; every root span is read.
    pub async fn read_value_extras(
        &self,
        pass: &ObjectPass,
        extras: &ValueExtras,
        ids: &[String],
        as_of: XactId,
        roots_only: bool,
    ) -> Result<Vec<StoredRow>> {
        let same_snapshot = extras.as_of == as_of.as_i64();
        let mut live: Vec<(String, Version)> = Vec::new();
        let mut other: Vec<String> = Vec::new();
        for id in ids {
            match extras.recent.get(id).filter(|_| same_snapshot) {
                Some(r) if r.version.deleted => {}
                Some(r) if roots_only && r.root == Some(false) => {}
                Some(r) => live.push((id.clone(), r.version)),
                None => other.push(id.clone()),
            }
        }
        let mut rows = self
            .load_versions_with(pass, live, &mut HashMap::new())
            .await?;
        rows.extend(self.read_row_ids(pass, &other, Some(as_of)).await?);
        rows.sort_by(|a, b| a.row_id.cmp(&b.row_id));
        Ok(rows)
    }

    /// The rows of an object with a version after `as_of` (sorted); `None` when there are
    /// more than [`MAX_EXTRA_ROWS`].
    pub async fn rows_changed_since(
        &self,
        pass: &ObjectPass,
        as_of: XactId,
    ) -> Result<Option<Vec<String>>> {
        let limit = i64::try_from(MAX_EXTRA_ROWS + 1).unwrap_or(i64::MAX);
        let ids = match &self.read {
            Pools::Sqlite(p) => on_sqlite::rows_changed_since(p, pass, as_of, limit).await?,
            Pools::Postgres(p) => on_postgres::rows_changed_since(p, pass, as_of, limit).await?,
        };
        Ok((ids.len() <= MAX_EXTRA_ROWS).then_some(ids))
    }

    /// The rows of an object whose indexed `created` is not a [`server_timestamp`] (its text
    /// then need not sort as its instant does), sorted; `None` when there are more than
    /// `max` (at most [`MAX_EXTRA_ROWS`]). Rows the index does not hold yet are the caller's
    /// extras.
    pub async fn odd_created_rows(
        &self,
        pass: &ObjectPass,
        max: usize,
    ) -> Result<Option<Vec<String>>> {
        let max = max.min(MAX_EXTRA_ROWS);
        let limit = i64::try_from(max + 1).unwrap_or(i64::MAX);
        let ids = match &self.read {
            Pools::Sqlite(p) => on_sqlite::odd_created_rows(p, pass, limit).await?,
            Pools::Postgres(p) => on_postgres::odd_created_rows(p, pass, limit).await?,
        };
        Ok((ids.len() <= max).then_some(ids))
    }

    /// The root spans the index lists under `traces` (their `root_span_id`), with the
    /// `created` it orders them by, sorted by row id, from the index alone. As for any read
    /// of entries, the caller also reads [`Store::value_extras`] (of `root_span_id`: the
    /// rows the index does not hold, and roots whose trace it cannot list) and
    /// [`Store::rows_changed_since`], and reads each row to check it.
    pub async fn trace_roots(
        &self,
        pass: &ObjectPass,
        traces: &[String],
    ) -> Result<Vec<TraceRoot>> {
        if traces.is_empty() {
            return Ok(Vec::new());
        }
        // Each trace is a seek: a long list is looked up in parts at once.
        let size = traces
            .len()
            .div_ceil(crate::db::read_parts())
            .clamp(100, 1000);
        let reads = traces.chunks(size).map(|chunk| async move {
            match &self.read {
                Pools::Sqlite(p) => on_sqlite::trace_roots(p, pass, chunk).await,
                Pools::Postgres(p) => on_postgres::trace_roots(p, pass, chunk).await,
            }
        });
        let mut roots: Vec<TraceRoot> = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect();
        roots.sort_by(|a, b| a.row_id.cmp(&b.row_id));
        roots.dedup_by(|a, b| a.row_id == b.row_id);
        Ok(roots)
    }

    /// Up to `limit` entries of a field of an object, in the query's order from `from`.
    /// Read from the index alone: each entry holds its row id, so a page of entries costs a
    /// few index pages rather than one row page per entry (a sort whose first page ties on
    /// one value walks thousands of entries). The field key names the object; callers read
    /// the proposed ids in the pass's object ([`Store::read_row_ids`]), so even an entry of
    /// another object under a colliding key could only name a row of this one.
    pub async fn value_entries(
        &self,
        pass: &ObjectPass,
        q: &ValueQuery,
        from: &ValueFrom,
        limit: usize,
    ) -> Result<Vec<ValueEntry>> {
        if !held(&q.path).is_some_and(|h| h.has_kind(q.text)) {
            return Ok(Vec::new());
        }
        match &self.read {
            Pools::Sqlite(p) => on_sqlite::value_entries(p, pass, q, from, limit).await,
            Pools::Postgres(p) => on_postgres::value_entries(p, pass, q, from, limit).await,
        }
    }

    /// [`Store::value_entries`] for a read that may propose only the rows `only`: walks up
    /// to `limit` entries and returns those of listed rows, and where the walk ended. The
    /// entries of other rows are passed over inside the store (a search's few hundred
    /// traces' roots are among 200,000 roots, one in 200 entries).
    pub async fn value_walk(
        &self,
        pass: &ObjectPass,
        q: &ValueQuery,
        from: &ValueFrom,
        limit: usize,
        only: &[&str],
    ) -> Result<Walked> {
        if !held(&q.path).is_some_and(|h| h.has_kind(q.text)) {
            return Ok(Walked::default());
        }
        match &self.read {
            Pools::Sqlite(p) => on_sqlite::value_walk(p, pass, q, from, limit, only).await,
            Pools::Postgres(p) => on_postgres::value_walk(p, pass, q, from, limit, only).await,
        }
    }
}

/// Whether `created` is a timestamp in the form the server writes, whatever its precision:
/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with an hour, minute and second in range. Such values
/// compare as instants in the order of their text, and their first 10, 13, 16 or 19
/// characters name the day, hour, minute or second they fall in. Other values of `created`
/// also get an *odd* entry (see [`Store::created_counts`]).
pub fn server_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |from: usize, to: usize| {
        b.get(from..to)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let below = |at: usize, limit: &[u8]| b.get(at..at + 2).is_some_and(|d| d < limit);
    let fraction = match b.len() {
        20 => true,
        22..=30 => b.get(19) == Some(&b'.') && digits(20, b.len() - 1),
        _ => false,
    };
    fraction
        && digits(0, 4)
        && digits(5, 7)
        && digits(8, 10)
        && digits(11, 13)
        && digits(14, 16)
        && digits(17, 19)
        && [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (b.len() - 1, b'Z'),
        ]
        .iter()
        .all(|(i, c)| b.get(*i) == Some(c))
        && below(11, b"24")
        && below(14, b"60")
        && below(17, b"60")
}

/// Groups [`CreatedCounts::groups`] finds one range at a time before it groups the rest in
/// one query (which sorts its entries).
const RANGE_GROUPS: usize = 256;

/// The smallest text after every text that starts with `s` (by code point, which is the
/// order of UTF-8 bytes): `s` with its last character's successor.
fn successor(s: &str) -> Option<String> {
    let mut out = s.to_owned();
    let last = u32::from(out.pop()?);
    let next = if last + 1 == 0xD800 { 0xE000 } else { last + 1 };
    out.push(char::from_u32(next)?);
    Some(out)
}

/// The transaction of a [`CreatedCounts`].
enum CountsTx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl From<sqlx::Transaction<'static, sqlx::Sqlite>> for CountsTx {
    fn from(tx: sqlx::Transaction<'static, sqlx::Sqlite>) -> Self {
        CountsTx::Sqlite(tx)
    }
}

impl From<sqlx::Transaction<'static, sqlx::Postgres>> for CountsTx {
    fn from(tx: sqlx::Transaction<'static, sqlx::Postgres>) -> Self {
        CountsTx::Postgres(tx)
    }
}

/// Rows of an object counted by `created` through the value index: see
/// [`Store::created_counts`].
pub struct CreatedCounts {
    tx: CountsTx,
    key: i64,
    /// The newest transaction of the snapshot the counts are taken at.
    pub xact: Option<XactId>,
    /// The newest transaction the index holds (it holds whole transactions).
    pub indexed_xact: Option<XactId>,
    /// Rows with a version the index does not hold yet (sorted). The index holds the entry
    /// of such a row as it was at [`CreatedCounts::indexed_xact`] (if it was shown then):
    /// the caller takes that away and counts the row as it is at [`CreatedCounts::xact`].
    pub extras: Vec<String>,
    /// The values of `created` that are not [`server_timestamp`]s, with their rows (at most
    /// `max_extras`, else there is no count): they are in the groups of
    /// [`CreatedCounts::groups`] too.
    pub odd: Vec<(String, i64)>,
}

impl CreatedCounts {
    /// The rows' `created` entries grouped by their first `prefix` characters (`None`: by
    /// whole value), as (key, rows); `within`: only the values starting with that text.
    /// `None` when there are more than `max` groups.
    ///
    /// Entries are ordered by value, so a group's entries are one range: the first groups
    /// are found one range at a time (the first value after the previous group, then a
    /// count of the range its prefix names), which reads each entry once and sorts nothing;
    /// past [`RANGE_GROUPS`] groups, one grouping query takes the rest.
    pub async fn groups(
        &mut self,
        prefix: Option<usize>,
        within: Option<&str>,
        max: usize,
    ) -> Result<Option<Vec<(String, i64)>>> {
        match &mut self.tx {
            CountsTx::Sqlite(tx) => on_sqlite::groups(tx, self.key, prefix, within, max).await,
            CountsTx::Postgres(tx) => on_postgres::groups(tx, self.key, prefix, within, max).await,
        }
    }

    /// Ends the read.
    pub async fn finish(self) -> Result<()> {
        match self.tx {
            CountsTx::Sqlite(tx) => tx.commit().await?,
            CountsTx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

impl Store {
    /// A consistent read of an object's rows by `created` through the value index, for
    /// counting them without reading them. Every row shown by queries at the index's
    /// transaction has exactly one entry holding its `created` (a string: writes refuse any
    /// other type); rows written since are the `extras`. `None` when there is no index or
    /// more than `max_extras` rows are newer than it: the caller reads the object.
    pub async fn created_counts(
        &self,
        pass: &ObjectPass,
        max_extras: usize,
    ) -> Result<Option<CreatedCounts>> {
        if !self.has_value_index() {
            return Ok(None);
        }
        match &self.read {
            Pools::Sqlite(p) => on_sqlite::created_counts(p, pass, max_extras).await,
            Pools::Postgres(p) => on_postgres::created_counts(p, pass, max_extras).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::with_pool;
    use crate::testing::{
        TestDatabase, caught_up, dataset_pass, incoming, plan_of, planned, temp_dir,
    };
    use serde_json::json;

    /// Every entry of the index, as (field, value, row id).
    async fn all_entries(store: &Store) -> Vec<(i64, String, String)> {
        const SQL: &str = "SELECT v.field, v.value, r.row_id, v.row_id FROM row_values v \
                           JOIN rows r ON r.seq = v.seq";
        let entries: Vec<(i64, String, String, String)> = match &store.read {
            Pools::Sqlite(p) => sqlx::query_as(sqlx::AssertSqlSafe(
                SQL.replace("v.value", "CAST(v.value AS TEXT)"),
            ))
            .fetch_all(p)
            .await
            .unwrap(),
            Pools::Postgres(p) => {
                let raw: Vec<(i64, Vec<u8>, String, String)> =
                    sqlx::query_as(SQL).fetch_all(p).await.unwrap();
                // The tests index positive numbers (first byte 0x80 or more) and ASCII text.
                raw.into_iter()
                    .map(|(field, value, id, entry_id)| {
                        let value = match bytes_number(&value) {
                            Some(n) if value[0] >= 0x80 => format!("{n:?}"),
                            _ => String::from_utf8(value).unwrap(),
                        };
                        (field, value, id, entry_id)
                    })
                    .collect()
            }
        };
        let mut out: Vec<(i64, String, String)> = entries
            .into_iter()
            .map(|(field, value, id, entry_id)| {
                assert_eq!(id, entry_id, "an entry holds its version's row id");
                (field, value, id)
            })
            .collect();
        out.sort();
        out
    }

    /// The index holds each row's newest version only: merges, replacements and deletes
    /// remove the entries of the version they follow, whether the writer indexes both in
    /// one batch or one after the other; rows of comments alone have no entry.
    async fn newest_version_cases(store: &Store) {
        let pass = dataset_pass("d");
        let write = |rows: Vec<serde_json::Value>| {
            let store = &store;
            let pass = pass.clone();
            async move {
                let rows = rows.into_iter().map(incoming).collect();
                store
                    .write_rows(vec![(pass, rows)], "2026-01-01T00:00:00Z")
                    .await
                    .unwrap()
            }
        };
        let day = |h: u32| format!("2026-01-0{}T{h:02}:00:00.000000Z", 1 + h / 24);
        write(vec![
            json!({"id": "a", "created": day(1), "scores": {"f": 0.1}}),
            json!({"id": "b", "created": day(2), "scores": {"f": 0.2}}),
            json!({"id": "c", "created": day(3), "scores": {"f": 0.3}}),
            json!({"id": "d", "created": "yesterday"}),
            json!({"id": "talk", "created": day(4), "comments": [{"text": "hi"}]}),
        ])
        .await;
        // Replaced in the same batch as written.
        write(vec![
            json!({"id": "c", "scores": {"f": 0.35}, "_is_merge": true}),
        ])
        .await;
        caught_up(store).await;
        // Replaced, deleted and merged after the index has them.
        write(vec![
            json!({"id": "a", "scores": {"f": 0.9}, "_is_merge": true}),
        ])
        .await;
        write(vec![json!({"id": "b", "_object_delete": true})]).await;
        write(vec![
            json!({"id": "d", "created": "ignored", "metrics": {"n": 2}}),
        ])
        .await;
        let last = write(vec![
            json!({"id": "a", "scores": {"f": 0.95}, "_is_merge": true}),
        ])
        .await;
        caught_up(store).await;
        let key = |path: &str| field_key("dataset", "d", path, false, false);
        let text = |f: f64| format!("{f:?}");
        let mut want = vec![
            (key("created"), day(1), "a".to_owned()),
            (key("created"), day(3), "c".to_owned()),
            // A replace sets `created` when it has one.
            (key("created"), "ignored".to_owned(), "d".to_owned()),
            // Not a server timestamp: listed apart too.
            (key(ODD), "ignored".to_owned(), "d".to_owned()),
            (key("scores.f"), text(0.95), "a".to_owned()),
            (key("scores.f"), text(0.35), "c".to_owned()),
            (key("metrics.n"), text(2.0), "d".to_owned()),
        ];
        want.sort();
        assert_eq!(all_entries(store).await, want);
        let mut read = store.created_counts(&pass, 10).await.unwrap().unwrap();
        assert!(read.extras.is_empty());
        assert_eq!((read.xact, read.indexed_xact), (Some(last), Some(last)));
        // Grouped by day; values that are not server timestamps also listed on their own.
        let mut groups = read.groups(Some(10), None, 10).await.unwrap().unwrap();
        groups.sort();
        assert_eq!(
            groups,
            [("2026-01-01".to_owned(), 2), ("ignored".to_owned(), 1)]
        );
        assert_eq!(read.odd, [("ignored".to_owned(), 1)]);
        let hours = read
            .groups(Some(13), Some("2026-01-01"), 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hours.len(), 2);
        read.finish().await.unwrap();
        // More groups than are found one range at a time, values shorter than the prefix,
        // and values sharing a prefix with server timestamps: the same groups as grouping
        // by the first characters.
        let mut values: Vec<String> = (0..RANGE_GROUPS + 40)
            .map(|i| format!("2026-01-02T00:{:02}:{:02}.5Z", i / 60, i % 60))
            .collect();
        values.extend(
            [
                "2026-01-02",
                "2026-01-02T00:00:00+01:00",
                "2026-01-02T00:00:0",
                "2026-01-02T00:00:00",
            ]
            .map(String::from),
        );
        let rows = values
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"id": format!("v{i:04}"), "created": c}))
            .collect();
        write(rows).await;
        caught_up(store).await;
        let mut read = store.created_counts(&pass, 10).await.unwrap().unwrap();
        let mut want: std::collections::BTreeMap<String, i64> = Default::default();
        for v in &values {
            *want.entry(v.chars().take(19).collect()).or_default() += 1;
        }
        let mut got: std::collections::BTreeMap<String, i64> = Default::default();
        let max = RANGE_GROUPS + 100;
        for (k, n) in read
            .groups(Some(19), Some("2026-01-02"), max)
            .await
            .unwrap()
            .unwrap()
        {
            assert!(got.insert(k, n).is_none(), "one group per key");
        }
        assert_eq!(got, want);
        let capped = read.groups(Some(19), Some("2026-01-02"), 10).await.unwrap();
        assert!(capped.is_none(), "more groups than asked for");
        read.finish().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_index_holds_each_rows_newest_version() {
        let dir = temp_dir("values-exact");
        let store = Store::open_sqlite(&dir.join("t.db"), None).await.unwrap();
        newest_version_cases(&store).await;
        store.close().await;
    }

    /// The same on PostgreSQL, whose entries hold values as bytes.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_postgres_index_holds_each_rows_newest_version() {
        let Some(db) = TestDatabase::create("values").await else {
            return;
        };
        let store = Store::open_postgres(&db.url).await.unwrap();
        newest_version_cases(&store).await;
        store.close().await;
        db.drop_database().await;
    }

    /// PostgreSQL: a page of the value index walks its primary key in order, whatever the
    /// planner estimates (at 100k spans it read all 16,839 entries past a cursor and sorted
    /// them to return 2,000: 24-84 ms against 3 ms walked).
    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_pages_of_values_walk_the_index() {
        let Some(db) = TestDatabase::create("walks").await else {
            return;
        };
        let store = Store::open_postgres(&db.url).await.unwrap();
        let pass = dataset_pass("d");
        let rows = (0..3000)
            .map(|k| {
                // Numbers sort after texts: the entries of other fields, as in use, make
                // the planner think few entries of `created` come before the cursor.
                let metadata: serde_json::Map<String, Value> =
                    (0..8).map(|f| (format!("n{f}"), json!(k * f))).collect();
                incoming(json!({"id": format!("r{k:05}"), "metadata": metadata,
                                "created": format!("2026-01-01T00:00:00.{k:06}Z")}))
            })
            .collect();
        store
            .write_rows(vec![(pass.clone(), rows)], "now")
            .await
            .unwrap();
        caught_up(&store).await;
        let q = ValueQuery {
            path: vec!["created".into()],
            text: true,
            roots: false,
            descending: true,
        };
        let from = ValueFrom::After(IndexValue::Text("2026-01-01T00:00:00.002900Z".into()), 1);
        let mut tx = planned(&store, crate::db::INDEX_WALK).await;
        let mut qb = on_postgres::entries_statement("EXPLAIN ", &pass, &q, &from, 1000)
            .expect("an indexed path");
        let told = plan_of(&mut tx, qb.build()).await;
        drop(tx);
        assert!(
            told.contains("Index Only Scan Backward using row_values_pkey")
                && !told.contains("Sort"),
            "{told}"
        );
        // Untold, PostgreSQL 15 plans a read of every entry past the cursor and a sort here.
        let entries = store.value_entries(&pass, &q, &from, 1000).await.unwrap();
        let ids: Vec<&str> = entries.iter().map(|e| e.row_id.as_str()).collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!((ids[0], ids[999]), ("r02899", "r01900"));
        store.close().await;
        db.drop_database().await;
    }

    /// A walk restricted to listed rows returns, page by page, exactly the listed rows'
    /// entries of the unrestricted pages, and ends each page where they end.
    async fn walk_cases(store: &Store) {
        let pass = dataset_pass("d");
        let rows = (0..300)
            .map(|k| {
                // Ties on both fields: the pages end inside runs of equal values.
                incoming(json!({"id": format!("r{k:03}"),
                                "created": format!("2026-01-01T00:00:{:02}Z", k % 45),
                                "scores": {"s": (f64::from(k % 23) - 11.0) / 4.0}}))
            })
            .collect();
        store
            .write_rows(vec![(pass.clone(), rows)], "now")
            .await
            .unwrap();
        caught_up(store).await;
        let ids: Vec<String> = (0..300).map(|k| format!("r{k:03}")).collect();
        let only: Vec<&str> = ids.iter().step_by(7).map(String::as_str).collect();
        for (path, text) in [("created", true), ("scores.s", false)] {
            for descending in [true, false] {
                let q = ValueQuery {
                    path: path.split('.').map(String::from).collect(),
                    text,
                    roots: false,
                    descending,
                };
                let mut from = ValueFrom::Start;
                let mut pages = 0;
                loop {
                    let whole = store.value_entries(&pass, &q, &from, 37).await.unwrap();
                    let walked = store.value_walk(&pass, &q, &from, 37, &only).await.unwrap();
                    let want: Vec<(String, i64)> = whole
                        .iter()
                        .filter(|e| only.contains(&e.row_id.as_str()))
                        .map(|e| (e.row_id.clone(), e.seq))
                        .collect();
                    let got: Vec<(String, i64)> = walked
                        .listed
                        .iter()
                        .map(|e| (e.row_id.clone(), e.seq))
                        .collect();
                    assert_eq!(got, want, "{path} {descending} page {pages}");
                    assert_eq!(walked.walked, whole.len());
                    let (Some(last), Some(end)) = (walked.last, whole.last()) else {
                        assert!(walked.listed.is_empty());
                        break;
                    };
                    assert_eq!((&last.row_id, last.seq), (&end.row_id, end.seq));
                    assert_eq!(last.value.to_json(), end.value.to_json());
                    from = ValueFrom::After(last.value, last.seq);
                    pages += 1;
                }
                assert_eq!(pages, 300usize.div_ceil(37), "{path} {descending}");
            }
        }
    }

    /// Rows read from the versions after a `seq` (`recent_versions`) are the rows
    /// `read_row_ids` reads at the same snapshot, whatever the bound: merged, deleted and
    /// changed-after-the-snapshot rows included.
    async fn recent_read_cases(store: &Store) {
        let pass = dataset_pass("d");
        let write = |rows: Vec<serde_json::Value>| {
            let store = &store;
            let pass = pass.clone();
            async move {
                let rows = rows.into_iter().map(incoming).collect();
                store.write_rows(vec![(pass, rows)], "now").await.unwrap()
            }
        };
        let max_seq = || async {
            const SQL: &str = "SELECT MAX(seq) FROM rows";
            match &store.read {
                Pools::Sqlite(p) => sqlx::query_scalar::<_, i64>(SQL).fetch_one(p).await,
                Pools::Postgres(p) => sqlx::query_scalar::<_, i64>(SQL).fetch_one(p).await,
            }
            .unwrap()
        };
        let id = |k: usize| format!("r{k:02}");
        // Root spans, child spans and rows that are not spans.
        let row = |k: usize| match k % 3 {
            0 => json!({"id": id(k), "input": k, "span_id": id(k), "span_parents": []}),
            1 => json!({"id": id(k), "input": k, "span_id": id(k), "span_parents": ["p"]}),
            _ => json!({"id": id(k), "input": k}),
        };
        write((0..40).map(row).collect()).await;
        let first = max_seq().await;
        // Merges; one turns a root into a child, one a child into a root.
        write(
            (0..10)
                .map(|k| match k {
                    3 => json!({"id": id(k), "span_parents": ["p"], "_is_merge": true}),
                    4 => json!({"id": id(k), "span_parents": null, "_is_merge": true}),
                    _ => json!({"id": id(k), "output": k, "_is_merge": true}),
                })
                .collect(),
        )
        .await;
        let second = max_seq().await;
        let as_of = write(
            (10..15)
                .map(|k| json!({"id": id(k), "_object_delete": true}))
                .collect(),
        )
        .await;
        // After the snapshot: changes and new rows the read must not see.
        write(
            (20..25)
                .map(|k| json!({"id": id(k), "input": "later"}))
                .chain((40..45).map(|k| json!({"id": id(k)})))
                .collect(),
        )
        .await;
        // Versions written before roots were recorded: one root span, one child.
        const UNKNOWN: &str = "UPDATE rows SET is_root = NULL WHERE row_id IN ('r06', 'r07')";
        with_pool!(&store.write, |p, DB| {
            sqlx::query(UNKNOWN).execute(p).await.unwrap();
        });
        let ids: Vec<String> = (0..45).map(id).collect();
        let shown = |rows: Vec<StoredRow>| -> Vec<(String, i64, Value)> {
            rows.into_iter()
                .map(|r| (r.row_id, r.xact_id.as_i64(), Value::Object(r.data)))
                .collect()
        };
        let want = shown(store.read_row_ids(&pass, &ids, Some(as_of)).await.unwrap());
        assert_eq!(want.len(), 35);
        let is_root = |(_, _, data): &(String, i64, Value)| is_root_span(data.as_object().unwrap());
        let roots: Vec<_> = want.iter().filter(|r| is_root(r)).cloned().collect();
        let root_ids: Vec<&str> = roots.iter().map(|r| r.0.as_str()).collect();
        assert!(
            root_ids.contains(&"r04") && !root_ids.contains(&"r03"),
            "{root_ids:?}"
        );
        let listing = |bound: i64, limit: i64, roots_only: bool| {
            let pass = &pass;
            async move {
                match &store.read {
                    Pools::Sqlite(p) => {
                        on_sqlite::recent_versions(p, pass, bound, as_of, limit, roots_only).await
                    }
                    Pools::Postgres(p) => {
                        on_postgres::recent_versions(p, pass, bound, as_of, limit, roots_only).await
                    }
                }
                .unwrap()
            }
        };
        let first_by_id = |recent: &HashMap<String, Recent>, n: usize| {
            let mut ids: Vec<&String> = recent.keys().collect();
            ids.sort();
            ids.truncate(n);
            ids.into_iter().cloned().collect::<Vec<_>>()
        };
        for bound in [0, first, second, max_seq().await] {
            let recent = listing(bound, 100, false).await;
            let expected = match bound {
                0 => 40,
                b if b == first => 15,
                b if b == second => 5,
                _ => 0,
            };
            assert_eq!(recent.len(), expected, "rows after {bound}");
            // Of roots alone: the same rows, less those known to be other than root spans.
            let recent_roots = listing(bound, 100, true).await;
            let not_others: HashMap<String, Recent> = recent
                .iter()
                .filter(|(_, r)| r.root != Some(false))
                .map(|(id, r)| (id.clone(), *r))
                .collect();
            assert_eq!(recent_roots, not_others, "roots after {bound}");
            if bound == 0 {
                // A child turned root, a root turned child, the unknown and the deleted.
                let has = |id: &str| recent_roots.contains_key(id);
                assert!(has("r04") && !has("r03") && !has("r01"), "{recent_roots:?}");
                assert!(has("r06") && has("r07") && has("r10"), "{recent_roots:?}");
            }
            // The first by id when there are more.
            for (full, roots_only) in [(&recent, false), (&recent_roots, true)] {
                let cut = listing(bound, 3, roots_only).await;
                let mut got: Vec<String> = cut.keys().cloned().collect();
                got.sort();
                assert_eq!(got, first_by_id(full, 3), "after {bound}, {roots_only}");
                assert!(cut.iter().all(|(id, r)| full.get(id) == Some(r)));
            }
            for snapshot in [as_of.as_i64(), as_of.as_i64() - 1] {
                let extras = ValueExtras {
                    ids: ids.clone(),
                    recent: recent.clone(),
                    as_of: snapshot,
                };
                // In chunks, as callers read them.
                let mut got = Vec::new();
                let mut got_roots = Vec::new();
                for chunk in ids.chunks(7) {
                    let read = store.read_value_extras(&pass, &extras, chunk, as_of, false);
                    got.extend(shown(read.await.unwrap()));
                    let read = store.read_value_extras(&pass, &extras, chunk, as_of, true);
                    got_roots.extend(shown(read.await.unwrap()));
                }
                assert_eq!(got, want, "rows after {bound}, extras at {snapshot}");
                // Every root span, and only rows as they are at the snapshot.
                let at = format!("roots, rows after {bound}, extras at {snapshot}");
                assert!(got_roots.iter().all(|r| want.contains(r)), "{at}");
                let read_roots: Vec<_> = got_roots.iter().filter(|r| is_root(r)).cloned().collect();
                assert_eq!(read_roots, roots, "{at}");
                if bound == 0 && snapshot == as_of.as_i64() {
                    // Every row found by the statement: the other spans are left out, but
                    // not those whose root-ness is unknown.
                    let read: Vec<&str> = got_roots.iter().map(|r| r.0.as_str()).collect();
                    let mut expected = root_ids.clone();
                    expected.push("r07");
                    expected.sort_unstable();
                    assert_eq!(read, expected, "{at}");
                    // The rows a read of roots alone lists are those same rows.
                    let listed = ValueExtras {
                        ids: first_by_id(&recent_roots, usize::MAX),
                        recent: recent_roots.clone(),
                        as_of: snapshot,
                    };
                    let read = store.read_value_extras(&pass, &listed, &listed.ids, as_of, true);
                    assert_eq!(shown(read.await.unwrap()), got_roots, "{at}, listed");
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn extras_read_from_recent_versions_are_the_rows_at_the_snapshot() {
        let dir = temp_dir("values-recent");
        let store = Store::open_sqlite(&dir.join("t.db"), None).await.unwrap();
        recent_read_cases(&store).await;
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_extras_read_from_recent_versions_are_the_rows_at_the_snapshot() {
        let Some(db) = TestDatabase::create("recent").await else {
            return;
        };
        let store = Store::open_postgres(&db.url).await.unwrap();
        recent_read_cases(&store).await;
        store.close().await;
        db.drop_database().await;
    }

    /// Roots found by their traces: each trace's root alone (not a trace whose id starts
    /// with another's, not a child), with the `created` the index orders, from the newest
    /// indexed version; a trace the entry cannot hold is not listed (its root is one of the
    /// extras).
    async fn trace_root_cases(store: &Store) {
        let pass = dataset_pass("d");
        let at = |s: u32| format!("2026-01-01T00:00:{s:02}Z");
        let span = |id: &str, trace: &str, parents: Value, created: Option<String>| {
            let mut row = json!({"id": id, "span_id": id, "root_span_id": trace,
                                 "span_parents": parents});
            if let Some(c) = created {
                row["created"] = json!(c);
            }
            incoming(row)
        };
        let rows = vec![
            span("r1", "t", Value::Null, Some(at(1))),
            span("c1", "t", json!(["r1"]), Some(at(0))),
            span("r2", "t1", json!([]), Some(at(2))),
            // Dated by the write.
            span("r3", "u", Value::Null, None),
            span("r4", "v\u{1}x", Value::Null, Some(at(4))),
            span("r5", "w", Value::Null, Some(at(5))),
        ];
        store
            .write_rows(vec![(pass.clone(), rows)], "now")
            .await
            .unwrap();
        // r1 is dated again; r5 becomes a child.
        let again = vec![
            span("r1", "t", Value::Null, Some(at(9))),
            span("r5", "w", json!(["r1"]), Some(at(5))),
        ];
        store
            .write_rows(vec![(pass.clone(), again)], "now")
            .await
            .unwrap();
        caught_up(store).await;
        let traces: Vec<String> = ["t", "t1", "u", "v\u{1}x", "w", "none", ""]
            .into_iter()
            .map(String::from)
            .collect();
        let found = store.trace_roots(&pass, &traces).await.unwrap();
        let got: Vec<(&str, &str, Option<&str>)> = found
            .iter()
            .map(|r| (r.trace.as_str(), r.row_id.as_str(), r.created.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("t", "r1", Some(at(9).as_str())),
                ("t1", "r2", Some(at(2).as_str())),
                ("u", "r3", Some("now")),
            ]
        );
        assert!(found.iter().all(|r| r.seq > 0));
        assert_eq!(store.trace_roots(&pass, &[]).await.unwrap(), vec![]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn roots_are_found_by_trace_with_their_created() {
        let dir = temp_dir("values-roots");
        let store = Store::open_sqlite(&dir.join("t.db"), None).await.unwrap();
        trace_root_cases(&store).await;
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_roots_are_found_by_trace_with_their_created() {
        let Some(db) = TestDatabase::create("roots").await else {
            return;
        };
        let store = Store::open_postgres(&db.url).await.unwrap();
        trace_root_cases(&store).await;
        // One seek of the primary key per trace, not a read of the object's entries.
        let traces: Vec<String> = (0..500).map(|k| format!("t{k}")).collect();
        let mut tx = planned(&store, crate::db::INDEX_WALK).await;
        let mut qb = on_postgres::trace_roots_statement("EXPLAIN ", &dataset_pass("d"), &traces);
        let told = plan_of(&mut tx, qb.build()).await;
        drop(tx);
        assert!(told.contains("Nested Loop"), "{told}");
        assert!(
            told.contains("Index Only Scan using row_values_pkey"),
            "{told}"
        );
        store.close().await;
        db.drop_database().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn walks_return_the_listed_rows_entries() {
        let dir = temp_dir("values-walk");
        let store = Store::open_sqlite(&dir.join("t.db"), None).await.unwrap();
        walk_cases(&store).await;
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_walks_return_the_listed_rows_entries() {
        let Some(db) = TestDatabase::create("walk").await else {
            return;
        };
        let store = Store::open_postgres(&db.url).await.unwrap();
        walk_cases(&store).await;
        let pass = dataset_pass("d");
        let q = ValueQuery {
            path: vec!["created".into()],
            text: true,
            roots: false,
            descending: true,
        };
        // The walk is one backward read of the primary key, as a page of entries is.
        let mut tx = planned(&store, crate::db::INDEX_WALK).await;
        let mut qb =
            on_postgres::walk_statement("EXPLAIN ", &pass, &q, &ValueFrom::Start, 500, &["r001"])
                .expect("an indexed path");
        let told = plan_of(&mut tx, qb.build()).await;
        drop(tx);
        assert!(
            told.contains("Index Only Scan Backward using row_values_pkey"),
            "{told}"
        );
        store.close().await;
        db.drop_database().await;
    }

    /// PostgreSQL's bytes order numbers as numbers (and -0 as 0), and read back as written.
    #[test]
    fn value_bytes_order_numbers() {
        let numbers = [
            f64::MIN,
            -1e300,
            -2.5,
            -1.0,
            -f64::MIN_POSITIVE,
            0.0,
            f64::MIN_POSITIVE,
            1e-300,
            0.5,
            1.0,
            3.0,
            1e300,
            f64::MAX,
        ];
        let bytes: Vec<Vec<u8>> = numbers
            .iter()
            .map(|n| value_bytes(&IndexValue::Number(*n)))
            .collect();
        assert!(
            bytes.windows(2).all(|w| w[0] < w[1]),
            "ordered as the numbers"
        );
        for (n, b) in numbers.iter().zip(&bytes) {
            assert_eq!(bytes_number(b), Some(*n));
        }
        assert_eq!(
            value_bytes(&IndexValue::Number(-0.0)),
            value_bytes(&IndexValue::Number(0.0))
        );
        assert_eq!(bytes_number(b"short"), None);
        // Text compares byte by byte, as SQLite's BINARY does: by code point.
        let texts = ["", "A", "a", "a\u{0}", "ab", "é", "\u{FFFF}", "\u{10000}"];
        let bytes: Vec<Vec<u8>> = texts
            .iter()
            .map(|t| value_bytes(&IndexValue::Text((*t).to_owned())))
            .collect();
        assert!(bytes.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn server_timestamps() {
        for ok in [
            "2026-01-01T00:00:00Z",
            "2026-01-01T23:59:59.5Z",
            "2026-01-01T10:00:00.123456789Z",
            "2026-02-30T10:00:00Z",
        ] {
            assert!(server_timestamp(ok), "{ok}");
        }
        for odd in [
            "2026-01-01T24:00:00Z",
            "2026-01-01T10:60:00Z",
            "2026-01-01T10:00:60Z",
            "2026-01-01t10:00:00Z",
            "2026-01-01T10:00:00z",
            "2026-01-01T10:00:00+02:00",
            "2026-01-01T10:00:00.Z",
            "2026-01-01T10:00:00.1234567890Z",
            "2026-01-01T10:00:00.12a4Z",
            "2026-01-01 10:00:00Z",
            "2026-1-01T10:00:00Z",
            "yesterday",
            "",
            "２026-01-01T10:00:00Z",
        ] {
            assert!(!server_timestamp(odd), "{odd}");
        }
    }

    #[test]
    fn entries_of_a_row() {
        let key =
            |path: &str, roots: bool, irregular: bool| field_key("l", "o", path, roots, irregular);
        let root = json!({"span_id": "a", "span_parents": [], "created": "2026-01-01T00:00:00Z",
                          "scores": {"f": 0.5, "g": null, "h": "x"}, "metrics": {"tokens": 3}});
        let got = entries("l", "o", root.as_object().unwrap());
        let text = |s: &str| Some(IndexValue::Text(s.to_owned()));
        let num = |n: f64| Some(IndexValue::Number(n));
        assert_eq!(
            got,
            vec![
                (key("created", false, false), text("2026-01-01T00:00:00Z")),
                (key("created", true, false), text("2026-01-01T00:00:00Z")),
                (key("scores.f", false, false), num(0.5)),
                (key("scores.f", true, false), num(0.5)),
                (key("scores.h", false, true), None),
                (key("metrics.tokens", false, false), num(3.0)),
                (key("metrics.tokens", true, false), num(3.0)),
            ]
        );
        // A child span has no root entries; a numeric `created` is irregular.
        let child = json!({"span_id": "b", "span_parents": ["a"], "created": 5});
        assert_eq!(
            entries("l", "o", child.as_object().unwrap()),
            vec![(key("created", false, true), None)]
        );
        // A text with a NUL is irregular (PostgreSQL reads entries' text as text).
        let nul = json!({"created": "2026\u{0}"});
        assert_eq!(
            entries("l", "o", nul.as_object().unwrap()),
            vec![(key("created", false, true), None)]
        );
        // Objects differ in every key.
        assert_ne!(
            field_key("l", "o", "created", false, false),
            field_key("l", "p", "created", false, false)
        );
        let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(held(&path(&["scores", "f"])), Some(Held::Number));
        assert_eq!(held(&path(&["metadata", "f"])), Some(Held::Mixed));
        assert_eq!(held(&path(&["metadata", "f", "g"])), None);
        assert_eq!(held(&path(&["metadata", ""])), None);
        assert_eq!(held(&path(&["input", "f"])), None);
        // Tags are listed (no root entries): each tag once. Metadata and span attributes hold
        // numbers and texts, each kind under its own key, with root entries; a text that
        // compares as an instant, or a value of another type, is irregular.
        let listed = json!({"span_id": "a", "tags": ["b", "a", "b"],
                            "metadata": {"user": "u-1", "n": 2.5, "ok": true, "o": {"a": 1}},
                            "span_attributes": {"type": "llm", "at": "2026-01-01T00:00:00Z",
                                                "n": 3, "none": null}});
        assert_eq!(
            entries("l", "o", listed.as_object().unwrap()),
            vec![
                (key("metadata.user", false, false), text("u-1")),
                (key("metadata.user", true, false), text("u-1")),
                (key("#metadata.n", false, false), num(2.5)),
                (key("#metadata.n", true, false), num(2.5)),
                (key("metadata.ok", false, true), None),
                (key("metadata.o", false, true), None),
                (key("span_attributes.type", false, false), text("llm")),
                (key("span_attributes.type", true, false), text("llm")),
                (key("span_attributes.at", false, true), None),
                (key("#span_attributes.n", false, false), num(3.0)),
                (key("#span_attributes.n", true, false), num(3.0)),
                (key("tags", false, false), text("a")),
                (key("tags", false, false), text("b")),
            ]
        );
        for tags in [
            json!(["a", 1]),
            json!("a"),
            json!(vec!["t"; MAX_PER_GROUP + 1]),
        ] {
            let row = json!({ "tags": tags });
            assert_eq!(
                entries("l", "o", row.as_object().unwrap()),
                vec![(key("tags", false, true), None)],
                "{tags}"
            );
        }
        // A group the index does not hold whole (too many names, or an array whose items a
        // path reaches by position) marks the row for every field of the group.
        let many: Map<String, Value> = (0..=MAX_PER_GROUP)
            .map(|i| (format!("s{i:03}"), json!(i)))
            .collect();
        let row = json!({"scores": many, "metrics": [1, 2]});
        let got = entries("l", "o", row.as_object().unwrap());
        assert_eq!(got.len(), MAX_PER_GROUP + 2);
        assert_eq!(got[MAX_PER_GROUP], (key("scores", false, true), None));
        assert_eq!(got[MAX_PER_GROUP + 1], (key("metrics", false, true), None));
        assert_eq!(
            group_path(&["scores".into(), "s070".into()]),
            Some("scores")
        );
        assert_eq!(group_path(&["tags".into()]), None);
        // A set `error` of any type is marked once, holding the row's trace (none without
        // a text `root_span_id`); a null one is not marked.
        for error in [json!("boom"), json!(""), json!({"message": "x"}), json!(0)] {
            let row = json!({"span_id": "a", "error": error});
            assert_eq!(
                entries("l", "o", row.as_object().unwrap()),
                vec![(key("error", false, false), text(""))],
                "{error}"
            );
            let row = json!({"span_id": "a", "span_parents": ["r"], "root_span_id": "r",
                             "error": error});
            assert_eq!(
                entries("l", "o", row.as_object().unwrap()),
                vec![(key("error", false, false), text("r"))],
                "{error}"
            );
        }
        let row = json!({"span_id": "a", "span_parents": ["r"], "root_span_id": 5, "error": 1});
        assert_eq!(
            entries("l", "o", row.as_object().unwrap()),
            vec![(key("error", false, false), text(""))]
        );
        let row = json!({"span_id": "a", "error": null});
        assert_eq!(entries("l", "o", row.as_object().unwrap()), vec![]);
        assert_eq!(held(&path(&["error"])), Some(Held::Present));
        // A root span's trace is looked up by its `root_span_id`, followed by its `created`
        // when the index orders it; a child's is not.
        let root = json!({"span_id": "a", "root_span_id": "t", "span_parents": null});
        assert_eq!(
            entries("l", "o", root.as_object().unwrap()),
            vec![(key("root_span_id", false, false), text("t\u{2}"))]
        );
        let at = "2026-01-01T00:00:00Z";
        let dated = json!({"span_id": "a", "root_span_id": "t", "created": at});
        assert!(entries("l", "o", dated.as_object().unwrap()).contains(&(
            key("root_span_id", false, false),
            text(&format!("t\u{1}{at}"))
        )));
        for created in [json!(5), json!("a\u{0}b")] {
            let undated = json!({"span_id": "a", "root_span_id": "t", "created": created});
            assert!(
                entries("l", "o", undated.as_object().unwrap())
                    .contains(&(key("root_span_id", false, false), text("t\u{2}")))
            );
        }
        for trace in ["t\u{1}", "\u{2}t"] {
            let odd = json!({"span_id": "a", "root_span_id": trace});
            assert_eq!(
                entries("l", "o", odd.as_object().unwrap()),
                vec![(key("root_span_id", false, true), None)]
            );
        }
        let child = json!({"span_id": "b", "root_span_id": "t", "span_parents": ["a"]});
        assert_eq!(entries("l", "o", child.as_object().unwrap()), vec![]);
        let odd = json!({"span_id": "a", "root_span_id": 7});
        assert_eq!(
            entries("l", "o", odd.as_object().unwrap()),
            vec![(key("root_span_id", false, true), None)]
        );
        assert!(!Held::Root.sorted() && !Held::Root.texts() && Held::Root.has_kind(true));
        assert!(!Held::Present.sorted() && !Held::Present.texts() && !Held::Present.numbers());
    }
}
