//! Sorted reads through the store's value index: a query sorted by `created`, a score or a
//! metric reads rows in the order of its first sort key and stops once no unread row can
//! enter the page, instead of reading the whole object.
//!
//! The index proposes rows; each is read at the query's snapshot and goes through the same
//! filter, key and cursor as in a full read, so the index decides only how many rows are
//! read. Rows the index cannot place (written after it or after the snapshot, or with a
//! value it does not order) are read first, every one, and rows changed while the entries
//! are read (the writer may move their entries meanwhile) are read last. A row absent from
//! the index has no value for the field and sorts last: when the entries run out before the
//! page is full, and the filter does not exclude such rows, the caller reads the object
//! instead.

use super::counts::created_bound;
use super::{Plan, Ranked, rank_cmp};
use crate::query::row_json;
use crate::{Result, Services};
use holdfast_core::authz::ObjectPass;
use holdfast_core::clock::format_timestamp;
use holdfast_core::qexpr::{CmpOp, Context, Expr, sort_cmp, timestamp_like};
use holdfast_core::xact::XactId;
use holdfast_store::{
    Held, IndexValue, MAX_CANDIDATES, MAX_EXTRA_ROWS, StoredRow, ValueEntry, ValueExtras,
    ValueFrom, ValueQuery, Walked, held, server_timestamp,
};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

/// Entries read per page at most.
const MAX_PAGE: usize = 2_000;
/// Entries a read restricted to a set of rows ([`Among::RootsOf`]) walks per statement at
/// most: the store passes over the entries of other rows and returns only the set's.
const MAX_WALKED_PAGE: usize = 8_000;
/// Entries a sorted read restricted to a set of rows ([`Among::RootsOf`]) walks per row of
/// the set before it stops and lets the caller read the set's rows instead (when the rows
/// of the set sort far from the start, walking to them costs more than reading them).
const WALK_PER_LISTED_ROW: usize = 32;

/// The rows a sorted read through the index may propose.
#[derive(Clone, Copy)]
pub(super) enum Among<'a> {
    /// Every span.
    Spans,
    /// Root spans.
    Roots,
    /// Root spans among these rows; no other row is read. With their entries of `created`
    /// ([`ListedRoots`]), a read sorted by `created` takes them from there instead of
    /// walking the object's roots.
    RootsOf(&'a HashSet<&'a str>, Option<&'a ListedRoots>),
}

/// The root rows of given traces as the value index lists them ([`Services::root_rows`]).
pub(super) struct ListedRoots {
    /// Every row that may be one of the roots, sorted: those listed, those the index could
    /// not place, and those changed since the snapshot.
    pub(super) ids: Vec<String>,
    /// The listed roots' entries of `created` among roots (those that have one), ascending
    /// by value and `seq`: the entries a walk of that field would find of these rows.
    created: Vec<ValueEntry>,
    /// The rows the index did not hold when it was asked (their entries, if any, may be of
    /// an older version): a read using `created` reads them whole (those not known to be
    /// other spans than roots).
    unplaced: ValueExtras,
}

/// The part of `entries` (ascending by value and `seq`) that a walk in the query's order
/// (`descending`) from `from` reads, up to `limit` entries: as [`Store::value_walk`] does
/// with the walk's other rows left out.
///
/// [`Store::value_walk`]: holdfast_store::Store::value_walk
fn walk_listed(entries: &[ValueEntry], descending: bool, from: &ValueFrom, limit: usize) -> Walked {
    // The entries are texts (of `created`), as the bounds a read of them starts from.
    let text_cmp =
        |e: &ValueEntry, v: &IndexValue| cmp_values(&e.value, v).unwrap_or(Ordering::Less);
    // Entries before the walk's start in ascending order: with `descending`, those after
    // it are taken from the end.
    let cut = match from {
        ValueFrom::Start if descending => entries.len(),
        ValueFrom::Start => 0,
        ValueFrom::AtValue(v) if descending => {
            entries.partition_point(|e| text_cmp(e, v) != Ordering::Greater)
        }
        ValueFrom::AtValue(v) => entries.partition_point(|e| text_cmp(e, v) == Ordering::Less),
        ValueFrom::After(v, seq) if descending => {
            entries.partition_point(|e| text_cmp(e, v).then(e.seq.cmp(seq)) == Ordering::Less)
        }
        ValueFrom::After(v, seq) => {
            entries.partition_point(|e| text_cmp(e, v).then(e.seq.cmp(seq)) != Ordering::Greater)
        }
    };
    let listed: Vec<ValueEntry> = if descending {
        entries
            .get(..cut)
            .unwrap_or_default()
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    } else {
        entries
            .get(cut..)
            .unwrap_or_default()
            .iter()
            .take(limit)
            .cloned()
            .collect()
    };
    Walked::whole(listed)
}

/// The conjuncts of a filter's top level (the filter itself unless it is an `AND`).
fn conjuncts(filter: &Expr) -> Vec<&Expr> {
    match filter {
        Expr::And(cs) => cs.iter().collect(),
        e => vec![e],
    }
}

/// A comparison of a field with a number, as (field, operator with the field on its left,
/// number): `0.5 > scores.f` is (`scores.f`, `<`, 0.5).
fn field_vs_number(c: &Expr) -> Option<(&[String], CmpOp, f64)> {
    let Expr::Cmp(op, a, b) = c else { return None };
    let (path, op, n) = match (a.as_ref(), b.as_ref()) {
        (Expr::Field(p), Expr::Lit(Value::Number(n))) => (p, *op, n),
        (Expr::Lit(Value::Number(n)), Expr::Field(p)) => (p, op.flipped(), n),
        _ => return None,
    };
    Some((path, op, n.as_f64()?))
}

/// The entries of one indexed field that can hold every row a filter keeps, from its
/// top-level conjunction.
#[derive(Debug, Clone, PartialEq)]
struct EntryRange {
    path: Vec<String>,
    /// Which kind of entries (`true`: texts, else numbers).
    text: bool,
    /// The lowest value that can hold a kept row (`low_open`: only values above it).
    low: Option<IndexValue>,
    low_open: bool,
    /// The highest value that can hold a kept row (`high_open`: only values below it).
    high: Option<IndexValue>,
    high_open: bool,
    /// The rows whose `created` is not a server timestamp must be read besides (their text
    /// need not sort as their instant does).
    odd: bool,
}

impl EntryRange {
    /// A range of the entries of one kind of `path` with no bounds.
    fn whole(path: &[String], text: bool) -> Self {
        EntryRange {
            path: path.to_vec(),
            text,
            low: None,
            low_open: false,
            high: None,
            high_open: false,
            odd: false,
        }
    }

    /// Whether entries from `v` on (ascending) can hold no kept row.
    fn past_high(&self, v: &IndexValue) -> bool {
        match self.high.as_ref().and_then(|h| cmp_values(v, h)) {
            Some(Ordering::Greater) => true,
            Some(Ordering::Equal) => self.high_open,
            _ => false,
        }
    }

    /// Where a read of the entries in this direction starts: at its first bound, or just
    /// past it when the bound is open.
    fn start(&self, descending: bool) -> ValueFrom {
        let (bound, open) = if descending {
            (&self.high, self.high_open)
        } else {
            (&self.low, self.low_open)
        };
        match bound {
            None => ValueFrom::Start,
            // Past every entry of the value, whatever its `seq`.
            Some(v) if open => {
                ValueFrom::After(v.clone(), if descending { i64::MIN } else { i64::MAX })
            }
            Some(v) => ValueFrom::AtValue(v.clone()),
        }
    }
}

/// Orders two values of one kind as the index does (`None` for a number and a text).
fn cmp_values(a: &IndexValue, b: &IndexValue) -> Option<Ordering> {
    match (a, b) {
        (IndexValue::Number(a), IndexValue::Number(b)) => a.partial_cmp(b),
        (IndexValue::Text(a), IndexValue::Text(b)) => Some(a.as_str().cmp(b)),
        _ => None,
    }
}

/// The range that comparisons of `path` with values (operator with the field on its left)
/// put on it together: the tightest bound on each side, open when a strict comparison sets
/// it (`x > 0.5 AND x >= 0.5` is `x > 0.5`). `None` without a bound (`!=` sets none).
fn bounded_range(
    path: &[String],
    text: bool,
    comparisons: impl IntoIterator<Item = (CmpOp, IndexValue)>,
) -> Option<EntryRange> {
    let mut range = EntryRange::whole(path, text);
    let mut bounded = false;
    for (op, v) in comparisons {
        // Whether `v` (`open`: strictly) bounds tighter than `bound` on its side.
        let tighter = |bound: &Option<IndexValue>, open: bool, higher: bool| match bound {
            None => true,
            Some(b) => match cmp_values(&v, b) {
                Some(Ordering::Equal) => open,
                Some(o) => (o == Ordering::Greater) == higher,
                None => false,
            },
        };
        if matches!(op, CmpOp::Gt | CmpOp::Ge | CmpOp::Eq)
            && tighter(&range.low, op == CmpOp::Gt, true)
        {
            range.low = Some(v.clone());
            range.low_open = op == CmpOp::Gt;
        }
        if matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Eq)
            && tighter(&range.high, op == CmpOp::Lt, false)
        {
            range.high = Some(v);
            range.high_open = op == CmpOp::Lt;
        }
        bounded |= op != CmpOp::Ne;
    }
    bounded.then_some(range)
}

/// The range a filter's top-level conjunction puts on the numbers of a field the index
/// holds numbers of, by comparing it with numbers (`scores.f < 0.5`, `metadata.n >= 3`).
fn number_range(filter: &Expr, path: &[String]) -> Option<EntryRange> {
    let comparisons = conjuncts(filter)
        .into_iter()
        .filter_map(field_vs_number)
        .filter(|(p, ..)| *p == path)
        .map(|(_, op, n)| (op, IndexValue::Number(n)));
    bounded_range(path, false, comparisons)
}

/// The range a filter puts on `created` by comparing it with instants (`created >=
/// '2026-12-01'`, `created > now() - interval 1 day`), as entry text: a server-written
/// timestamp starts with the 19 characters naming its second, so one of an instant from
/// `low` to `high` sorts from `low`'s second's text to (before) the text of the second after
/// `high`'s. Other values of `created` are the odd rows. `None` without such a comparison.
fn created_range(filter: &Expr, cx: &Context) -> Option<EntryRange> {
    let (mut low, mut high) = (None, None);
    for (op, at) in conjuncts(filter)
        .into_iter()
        .filter_map(|c| created_bound(c, cx))
    {
        match op {
            CmpOp::Gt | CmpOp::Ge => {
                low = Some(low.map_or(at, |l: time::OffsetDateTime| l.max(at)))
            }
            CmpOp::Lt | CmpOp::Le => {
                high = Some(high.map_or(at, |h: time::OffsetDateTime| h.min(at)))
            }
            CmpOp::Eq | CmpOp::Ne => {}
        }
    }
    // Past the years a server timestamp can name, a side stays open.
    let second = |t: time::OffsetDateTime| {
        let text: String = format_timestamp(t).chars().take(19).collect();
        server_timestamp(&format!("{text}Z")).then_some(IndexValue::Text(text))
    };
    let low = low.and_then(second);
    let high = high
        .and_then(|h| {
            h.replace_nanosecond(0)
                .ok()?
                .checked_add(time::Duration::SECOND)
        })
        .and_then(second);
    // `high` is the first second past the range.
    (low.is_some() || high.is_some()).then(|| EntryRange {
        low,
        high,
        high_open: true,
        odd: true,
        ..EntryRange::whole(&["created".to_owned()], true)
    })
}

/// A comparison with a text of a field whose texts the index holds (tags, metadata, span
/// attributes), as (field, operator with the field on its left, text): `'x' <
/// span_attributes.name` is (`span_attributes.name`, `>`, `x`), and `tags INCLUDES 'x'` is
/// (`tags`, `=`, `x`). A text that compares as an instant is left out: it equals texts of
/// other forms, which the index does not relate.
fn field_vs_text(c: &Expr) -> Option<(&[String], CmpOp, &str)> {
    let (path, op, text) = match c {
        Expr::Cmp(op, a, b) => match (a.as_ref(), b.as_ref()) {
            (Expr::Field(p), Expr::Lit(Value::String(s))) => (p, *op, s),
            (Expr::Lit(Value::String(s)), Expr::Field(p)) => (p, op.flipped(), s),
            _ => return None,
        },
        Expr::Includes(a, b) => match (a.as_ref(), b.as_ref()) {
            (Expr::Field(p), Expr::Lit(Value::String(s))) if p.as_slice() == ["tags"] => {
                (p, CmpOp::Eq, s)
            }
            _ => return None,
        },
        _ => return None,
    };
    (held(path).is_some_and(Held::texts) && !timestamp_like(text)).then_some((
        path.as_slice(),
        op,
        text.as_str(),
    ))
}

/// The range a filter's top-level conjunction puts on the texts of a field by comparing it
/// with texts (`span_attributes.type = 'llm'`, `tags INCLUDES 'x'`).
fn text_range(filter: &Expr, path: &[String]) -> Option<EntryRange> {
    let comparisons = conjuncts(filter)
        .into_iter()
        .filter_map(field_vs_text)
        .filter(|(p, ..)| *p == path)
        .map(|(_, op, text)| (op, IndexValue::Text(text.to_owned())));
    bounded_range(path, true, comparisons)
}

/// The point ranges of `x IN ('a', 2)` on a field the index holds those values of.
fn in_ranges(c: &Expr) -> Option<Vec<EntryRange>> {
    let Expr::In(e, values) = c else { return None };
    let Expr::Field(path) = e.as_ref() else {
        return None;
    };
    let how = held(path)?;
    values
        .iter()
        .map(|v| {
            let point = match v {
                Value::String(t) if how.texts() && !timestamp_like(t) => {
                    IndexValue::Text(t.clone())
                }
                Value::Number(n) if how.numbers() => IndexValue::Number(n.as_f64()?),
                _ => return None,
            };
            Some(EntryRange {
                low: Some(point.clone()),
                high: Some(point.clone()),
                ..EntryRange::whole(path, matches!(point, IndexValue::Text(_)))
            })
        })
        .collect()
}

/// The entries of a field the index marks when set (`error IS NOT NULL`, the errors view).
fn present_range(c: &Expr) -> Option<EntryRange> {
    let Expr::IsNull(e, false) = c else {
        return None;
    };
    let Expr::Field(path) = e.as_ref() else {
        return None;
    };
    (held(path) == Some(Held::Present)).then(|| EntryRange::whole(path, true))
}

/// A range of an indexed field that a filter's top-level conjunction puts on it: a number
/// range (on a score, a metric, metadata or a span attribute) first, else a range of
/// `created`.
fn entry_range(filter: &Expr, cx: &Context) -> Option<EntryRange> {
    conjuncts(filter)
        .into_iter()
        .filter_map(field_vs_number)
        .filter(|(path, ..)| held(path).is_some_and(Held::numbers))
        .find_map(|(path, ..)| number_range(filter, path))
        .or_else(|| created_range(filter, cx))
}

/// Ways to read every row a filter keeps from the index, each a set of ranges of indexed
/// fields whose union holds them, the likeliest to be narrow first: an equality with a text
/// or an `IN` (one range a value), the rows with an error, a number range or a range of `created` (see
/// [`entry_range`]), another range of texts, and, for a conjunct that is an `OR`
/// each of whose branches has a way (`scores.f < 0.1 OR created > '...'`), the union of
/// their first ways.
fn entry_plans(filter: &Expr, cx: &Context) -> Vec<Vec<EntryRange>> {
    let cs = conjuncts(filter);
    let mut listed: Vec<&[String]> = cs
        .iter()
        .filter_map(|c| field_vs_text(c))
        .map(|(p, ..)| p)
        .collect();
    listed.sort();
    listed.dedup();
    let texts: Vec<EntryRange> = listed
        .into_iter()
        .filter_map(|p| text_range(filter, p))
        .collect();
    let point = |r: &EntryRange| r.low.is_some() && r.low == r.high;
    let mut plans: Vec<Vec<EntryRange>> = texts
        .iter()
        .filter(|r| point(r))
        .map(|r| vec![r.clone()])
        .collect();
    plans.extend(cs.iter().filter_map(|c| in_ranges(c)));
    plans.extend(cs.iter().filter_map(|c| present_range(c)).map(|r| vec![r]));
    plans.extend(entry_range(filter, cx).map(|r| vec![r]));
    plans.extend(texts.into_iter().filter(|r| !point(r)).map(|r| vec![r]));
    plans.extend(cs.iter().filter_map(|c| {
        match c {
            Expr::Or(branches) => branches
                .iter()
                .map(|b| entry_plans(b, cx).into_iter().next())
                .collect::<Option<Vec<_>>>()
                .map(|ways| ways.concat()),
            _ => None,
        }
    }));
    plans
}

/// Orders two first sort-key parts in the query's direction, nulls last.
fn cmp_first(a: &Value, b: &Value, descending: bool) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if descending => sort_cmp(b, a),
        _ => sort_cmp(a, b),
    }
}

impl Services {
    /// The rows of one object that a filter bounding an indexed field (`scores.f < 0.5`,
    /// `created >= '...'`, `span_attributes.type = 'llm'`, `tags INCLUDES 'x'`, or an `OR`
    /// of such bounds; without a sort on it) can keep, from the value index instead of
    /// reading the object: those whose entry is in a range, and every row the index cannot
    /// place (written after it or after the snapshot, or with a value it does not order).
    /// The filter is evaluated again on each row read, so the index decides only which rows
    /// are read. The ways of [`entry_plans`] are tried in turn until one names at most
    /// `cap` rows (at most [`MAX_CANDIDATES`]), leaving out ways through the field
    /// `sorted` (a read in its order reads the same range and stops early). Row ids,
    /// sorted; `None` when none does (reading the object, or reading it in a sort's order,
    /// is then as fast).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn range_candidates(
        &self,
        filter: &Expr,
        pass: &ObjectPass,
        version: XactId,
        started: Instant,
        cx: &Context,
        cap: usize,
        sorted: Option<&[String]>,
    ) -> Result<Option<Vec<String>>> {
        let cap = cap.min(MAX_CANDIDATES);
        let ways = entry_plans(filter, cx)
            .into_iter()
            .filter(|ranges| ranges.iter().all(|r| Some(r.path.as_slice()) != sorted));
        for ranges in ways {
            if let Some(ids) = self
                .plan_candidates(&ranges, pass, version, started, cap)
                .await?
            {
                return Ok(Some(ids));
            }
        }
        Ok(None)
    }

    /// The rows in the union of `ranges` and those the index cannot place; `None` when
    /// there are more than `cap`.
    async fn plan_candidates(
        &self,
        ranges: &[EntryRange],
        pass: &ObjectPass,
        version: XactId,
        started: Instant,
        cap: usize,
    ) -> Result<Option<Vec<String>>> {
        let mut ids: BTreeSet<String> = BTreeSet::new();
        // Branches of an `OR` on one field share its extras: read them once a field.
        let mut fields: HashSet<&[String]> = HashSet::new();
        for range in ranges {
            if fields.insert(&range.path) {
                let Some(extras) = self.extras(pass, range, version, cap, false).await? else {
                    return Ok(None);
                };
                ids.extend(extras.ids);
            }
            let q = ValueQuery {
                path: range.path.clone(),
                text: range.text,
                roots: false,
                descending: false,
            };
            let mut from = range.start(false);
            loop {
                self.check_query_time(started)?;
                let entries = self.store.value_entries(pass, &q, &from, MAX_PAGE).await?;
                let past_end = |e: &&ValueEntry| range.past_high(&e.value);
                let within = entries.iter().take_while(|e| !past_end(e));
                ids.extend(within.map(|e| e.row_id.clone()));
                if ids.len() > cap {
                    return Ok(None);
                }
                let Some(last) = entries.last() else { break };
                if entries.len() < MAX_PAGE || past_end(&last) {
                    break;
                }
                from = ValueFrom::After(last.value.clone(), last.seq);
            }
        }
        // As for sorted reads: entries may have moved while they were read.
        let Some(changed) = self.store.rows_changed_since(pass, version).await? else {
            return Ok(None);
        };
        ids.extend(changed);
        Ok((ids.len() <= cap).then(|| ids.into_iter().collect()))
    }

    /// The traces holding a row whose `error` is set at `version`, for a filter that is
    /// `error IS NOT NULL` alone (the errors view), from the value index's marks, which hold
    /// each failed row's trace: only the rows the index cannot place, and those whose mark
    /// names no trace, are read. `None` for another filter, without the index, or with more
    /// than `max` such traces (the caller reads the failed rows instead).
    pub(super) async fn failed_traces(
        &self,
        plan: &Plan,
        pass: &ObjectPass,
        version: XactId,
        started: Instant,
        cx: &Context,
        max: usize,
    ) -> Result<Option<HashSet<String>>> {
        let Some(range) = plan.filter.as_ref().and_then(present_range) else {
            return Ok(None);
        };
        if !self.limits.query_search_index || !self.store.has_value_index() {
            return Ok(None);
        }
        let Some(extras) = self
            .extras(pass, &range, version, MAX_EXTRA_ROWS, false)
            .await?
        else {
            return Ok(None);
        };
        let q = ValueQuery {
            path: range.path.clone(),
            text: true,
            roots: false,
            descending: false,
        };
        let mut marks: Vec<(String, String)> = Vec::new();
        let mut from = ValueFrom::Start;
        loop {
            self.check_query_time(started)?;
            let entries = self.store.value_entries(pass, &q, &from, MAX_PAGE).await?;
            let Some(last) = entries.last() else { break };
            from = ValueFrom::After(last.value.clone(), last.seq);
            let full = entries.len() == MAX_PAGE;
            for e in entries {
                let IndexValue::Text(trace) = e.value else {
                    continue;
                };
                marks.push((e.row_id, trace));
            }
            if marks.len() > MAX_EXTRA_ROWS {
                return Ok(None);
            }
            if !full {
                break;
            }
        }
        // Rows changed since the snapshot may have had their marks moved while they were
        // read: like the rows the index cannot place, they are read at the snapshot.
        let Some(changed) = self.store.rows_changed_since(pass, version).await? else {
            return Ok(None);
        };
        let mut read: BTreeSet<String> = extras.ids.iter().cloned().chain(changed).collect();
        let mut traces = HashSet::new();
        for (row_id, trace) in marks {
            if read.contains(&row_id) {
                continue;
            }
            if trace.is_empty() {
                read.insert(row_id);
            } else {
                traces.insert(trace);
            }
        }
        // Reading the rest cannot bring the traces back within `max`.
        if traces.len() > max {
            return Ok(None);
        }
        let read: Vec<String> = read.into_iter().collect();
        for chunk in read.chunks(1000) {
            self.check_query_time(started)?;
            let rows = self
                .store
                .read_value_extras(pass, &extras, chunk, version, false)
                .await?;
            for row in rows {
                let shown = row_json(row, plan.kind);
                if let Some(m) = shown.as_object().filter(|m| plan.keep(m, cx))
                    && let Some(trace) = m.get("root_span_id").and_then(Value::as_str)
                {
                    traces.insert(trace.to_owned());
                }
            }
        }
        Ok((traces.len() <= max).then_some(traces))
    }

    /// The rows that may be the root spans of the traces `roots` at `version`, from the
    /// value index: the root rows it lists under those traces (with their `created`), and
    /// every row it cannot place (see [`Services::range_candidates`]) that may be a root
    /// span; each must be read and checked. `None` without the index or when too many rows
    /// are unplaced.
    pub(super) async fn root_rows(
        &self,
        pass: &ObjectPass,
        roots: &[&String],
        version: XactId,
    ) -> Result<Option<ListedRoots>> {
        if !self.limits.query_search_index || !self.store.has_value_index() {
            return Ok(None);
        }
        let path = ["root_span_id".to_owned()];
        let range = EntryRange::whole(&path, true);
        let Some(unplaced) = self
            .extras(pass, &range, version, MAX_EXTRA_ROWS, true)
            .await?
        else {
            return Ok(None);
        };
        let traces: Vec<String> = roots.iter().map(|r| (*r).clone()).collect();
        // Listed after the extras: a row whose entry is older than its version at the
        // snapshot was not indexed when they were listed, so it is among them.
        let found = self.store.trace_roots(pass, &traces).await?;
        // Rows whose entries moved while they were read.
        let Some(changed) = self.store.rows_changed_since(pass, version).await? else {
            return Ok(None);
        };
        let mut ids: Vec<String> = unplaced.ids.iter().cloned().chain(changed).collect();
        ids.extend(found.iter().map(|r| r.row_id.clone()));
        ids.sort();
        ids.dedup();
        let mut dated: Vec<(String, i64, String)> = found
            .into_iter()
            .filter_map(|r| Some((r.created?, r.seq, r.row_id)))
            .collect();
        dated.sort_unstable();
        let created = dated
            .into_iter()
            .map(|(c, seq, row_id)| ValueEntry {
                value: IndexValue::Text(c),
                seq,
                row_id,
            })
            .collect();
        Ok(Some(ListedRoots {
            ids,
            created,
            unplaced,
        }))
    }

    /// The rows a read of `range` must read besides its entries ([`Store::value_extras`],
    /// and the odd rows when the range is one of `created`), sorted; `None` when either
    /// holds more than `max` (a caller that may read only a few rows stops listing early).
    /// `roots`: the read takes only root spans (rows known to be other spans are left out).
    ///
    /// [`Store::value_extras`]: holdfast_store::Store::value_extras
    async fn extras(
        &self,
        pass: &ObjectPass,
        range: &EntryRange,
        version: XactId,
        max: usize,
        roots: bool,
    ) -> Result<Option<ValueExtras>> {
        let Some(mut extras) = self
            .store
            .value_extras(pass, &range.path, version, max, roots)
            .await?
        else {
            return Ok(None);
        };
        if range.odd {
            let Some(odd) = self.store.odd_created_rows(pass, max).await? else {
                return Ok(None);
            };
            extras.ids.extend(odd);
            extras.ids.sort();
            extras.ids.dedup();
        }
        Ok(Some(extras))
    }

    /// The best candidates of one object (with `best`, those of the objects read before),
    /// read through the value index; `None` when the index cannot answer and the caller
    /// must read the object (or, for [`Among::RootsOf`], the listed rows). `among`: which
    /// rows can be candidates. `accept` turns a row into a candidate (filter, key, cursor)
    /// or refuses it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn indexed_sort(
        &self,
        plan: &Plan,
        pass: &ObjectPass,
        object: usize,
        version: XactId,
        started: Instant,
        among: Among<'_>,
        best: &[Ranked],
        cx: &Context,
        accept: &mut (dyn FnMut(StoredRow) -> Option<Ranked> + Send),
    ) -> Result<Option<Vec<Ranked>>> {
        let (roots, only, known) = match among {
            Among::Spans => (false, None, None),
            Among::Roots => (true, None, None),
            Among::RootsOf(set, known) => (true, Some(set), known),
        };
        let listed = |id: &str| only.is_none_or(|set| set.contains(id));
        let mut walk_left = only.map(|set| set.len().saturating_mul(WALK_PER_LISTED_ROW));
        // The index's order holds every row, not only those changed since a transaction.
        if plan.since.is_some() {
            return Ok(None);
        }
        let Some((Expr::Field(path), descending)) = plan.sort.first() else {
            return Ok(None);
        };
        if !self.limits.query_search_index {
            return Ok(None);
        }
        let descending = *descending;
        let Some(how) = held(path).filter(|h| h.sorted()) else {
            return Ok(None);
        };
        // The listed roots' entries serve a read sorted by `created`.
        let known = known.filter(|_| how == Held::Created);
        // A range the filter puts on the sorted field: where the entries start and end.
        let range = plan.filter.as_ref().and_then(|f| match how {
            Held::Created => created_range(f, cx),
            _ => number_range(f, path).or_else(|| text_range(f, path)),
        });
        // The kinds of entries read, one after the other in the query's order (numbers sort
        // before texts); only the range's kind when the filter bounds the field (no value of
        // the other kind compares with its bounds).
        let mut kinds: Vec<bool> = match &range {
            Some(r) => vec![r.text],
            None => how.sort_kinds().to_vec(),
        };
        if descending {
            kinds.reverse();
        }
        let whole = EntryRange::whole(path, how == Held::Created);
        let Some(mut extras) = self
            .extras(
                pass,
                range.as_ref().unwrap_or(&whole),
                version,
                MAX_EXTRA_ROWS,
                roots,
            )
            .await?
        else {
            return Ok(None);
        };
        extras.ids.retain(|id| listed(id));
        // Rows the listed entries may be stale for (not indexed when the roots were listed,
        // indexed since) are read whole, like the extras.
        let unplaced: Vec<String> = known
            .map(|k| {
                k.unplaced
                    .ids
                    .iter()
                    .filter(|id| listed(id) && extras.ids.binary_search(id).is_err())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let keep = plan.limit + 1;
        let mut local: Vec<Ranked> = best.to_vec();
        // The rows read first are not read again. A row proposed again otherwise (its entry
        // moved while the entries were read) is read again (memory stays bounded by the page,
        // not by the rows read): read at the same snapshot, it ranks exactly as before, so it
        // is left out while it is among the kept rows, and trimmed again otherwise.
        let extra_ids: HashSet<&str> = extras
            .ids
            .iter()
            .chain(&unplaced)
            .map(String::as_str)
            .collect();
        let mut kept: HashSet<(usize, String)> = HashSet::new();
        let mut take = |local: &mut Vec<Ranked>, kept: &mut HashSet<(usize, String)>, row| {
            if let Some(c) = accept(row)
                && kept.insert((c.1, c.2.clone()))
            {
                local.push(c);
            }
        };
        let settle = |local: &mut Vec<Ranked>, kept: &mut HashSet<(usize, String)>| {
            local.sort_by(|a, b| rank_cmp(plan, a, b));
            local.truncate(keep);
            *kept = local.iter().map(|r| (r.1, r.2.clone())).collect();
        };
        // The candidates given are in no order (and may be more than a page): the page's
        // last candidate, which decides which entries are read, is that of the sorted page.
        settle(&mut local, &mut kept);
        for chunk in extras.ids.chunks(1000) {
            self.check_query_time(started)?;
            let read = self
                .store
                .read_value_extras(pass, &extras, chunk, version, roots)
                .await?;
            for row in read {
                take(&mut local, &mut kept, row);
            }
            settle(&mut local, &mut kept);
        }
        if let Some(k) = known {
            for chunk in unplaced.chunks(1000) {
                self.check_query_time(started)?;
                let read = self
                    .store
                    .read_value_extras(pass, &k.unplaced, chunk, version, roots)
                    .await?;
                for row in read {
                    take(&mut local, &mut kept, row);
                }
                settle(&mut local, &mut kept);
            }
        }
        // Where the entries start: the cursor's key (in the entries of its kind: those
        // before sort before it), else the filter's bound.
        let cursor_start = plan
            .cursor
            .as_ref()
            .and_then(|c| c.key.as_ref()?.first().cloned())
            .and_then(|v| match v {
                Value::String(s) => Some(IndexValue::Text(s)),
                Value::Number(n) => n.as_f64().map(IndexValue::Number),
                _ => None,
            })
            .and_then(|c| {
                let text = matches!(c, IndexValue::Text(_));
                Some((kinds.iter().position(|k| *k == text)?, c))
            });
        let (end, end_open) = match &range {
            Some(r) if descending => (r.low.clone(), r.low_open),
            Some(r) => (r.high.clone(), r.high_open),
            None => (None, false),
        };
        let (mut kind, mut from) = match (cursor_start, &range) {
            (Some((kind, c)), _) => (kind, ValueFrom::AtValue(c)),
            (None, Some(r)) => (0, r.start(descending)),
            (None, None) => (0, ValueFrom::Start),
        };
        let Some(&text) = kinds.get(kind) else {
            return Ok(None);
        };
        let mut q = ValueQuery {
            path: path.clone(),
            text,
            roots,
            descending,
        };
        // A restricted read passes over the other rows' entries in the store, so it reads
        // longer stretches; the set is bound once, sorted.
        let only_ids: Option<Vec<&str>> = only.map(|set| {
            let mut ids: Vec<&str> = set.iter().copied().collect();
            ids.sort_unstable();
            ids
        });
        // Every listed entry is a row read until the page is full: those are walked a page
        // at a time.
        let (mut page, max_page) = match (&only_ids, known) {
            (Some(_), Some(_)) => (keep.min(MAX_PAGE), MAX_PAGE),
            (Some(_), None) => (MAX_PAGE, MAX_WALKED_PAGE),
            (None, _) => (keep.saturating_mul(2).clamp(64, MAX_PAGE), MAX_PAGE),
        };
        let complete = loop {
            self.check_query_time(started)?;
            // Never past the walk's allowance by more than one entry (which ends it).
            let limit = walk_left.map_or(page, |left| page.min(left.saturating_add(1)));
            let walked = match (&only_ids, known) {
                (Some(_), Some(k)) => walk_listed(&k.created, descending, &from, limit),
                (Some(ids), None) => self.store.value_walk(pass, &q, &from, limit, ids).await?,
                (None, _) => Walked::whole(self.store.value_entries(pass, &q, &from, limit).await?),
            };
            if walked.walked == 0
                && let Some(&next) = kinds.get(kind + 1)
            {
                // On to the entries of the next kind, which all sort after these.
                kind += 1;
                q.text = next;
                from = ValueFrom::Start;
                continue;
            }
            let Some(last) = walked.last else {
                // Out of entries: complete unless rows without a value could still enter.
                local.sort_by(|a, b| rank_cmp(plan, a, b));
                local.truncate(keep);
                let full = local.len() == keep
                    && local
                        .last()
                        .and_then(|r| r.0.first())
                        .is_some_and(|v| !v.is_null());
                break full || range.is_some();
            };
            if let Some(left) = walk_left.as_mut() {
                let Some(rest) = left.checked_sub(walked.walked) else {
                    return Ok(None);
                };
                *left = rest;
            }
            let position = last.value.to_json();
            from = ValueFrom::After(last.value, last.seq);
            let past_end = end.as_ref().is_some_and(|e| {
                match cmp_first(&position, &e.to_json(), descending) {
                    Ordering::Greater => true,
                    Ordering::Equal => end_open,
                    Ordering::Less => false,
                }
            });
            // Once the page is full, a row whose entry sorts after the page's last row cannot
            // enter, whatever it holds (its entry holds its value at the snapshot, or the row
            // is read first or last), so it is not read: one with a value past the last row's,
            // and, on a single sort key, one tied with it whose (object, row id) ranks after
            // it. Without this, a page of a sort on few distinct values would read every row
            // sharing the last value, and the rest of the entries page past it.
            let cutoff = local
                .last()
                .filter(|_| local.len() == keep)
                .and_then(|r| Some((r.0.first().filter(|v| !v.is_null())?, r.1, &r.2)));
            let ranks_after = |e: &ValueEntry| {
                cutoff.is_some_and(|(t, o, id)| {
                    match cmp_first(&e.value.to_json(), t, descending) {
                        Ordering::Greater => true,
                        Ordering::Equal => {
                            plan.sort.len() == 1 && (object, e.row_id.as_str()) > (o, id.as_str())
                        }
                        Ordering::Less => false,
                    }
                })
            };
            let ids: Vec<String> = walked
                .listed
                .iter()
                .filter(|e| {
                    listed(&e.row_id) && !ranks_after(e) && !extra_ids.contains(e.row_id.as_str())
                })
                .map(|e| e.row_id.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            for row in self.store.read_row_ids(pass, &ids, Some(version)).await? {
                take(&mut local, &mut kept, row);
            }
            settle(&mut local, &mut kept);
            // Every unread row sorts at or after `position`: done once that is past the
            // page's last candidate, or past the filter's range.
            let threshold = local
                .last()
                .filter(|_| local.len() == keep)
                .and_then(|r| r.0.first());
            let beyond = threshold.is_some_and(|t| {
                !t.is_null() && cmp_first(&position, t, descending) == Ordering::Greater
            });
            if beyond || past_end {
                break true;
            }
            page = page.saturating_mul(2).min(max_page);
        };
        if !complete {
            return Ok(None);
        }
        // A row changed since the snapshot may have had its entry moved while the entries
        // were read (by the writer indexing its new version): read every such row too.
        let Some(changed) = self.store.rows_changed_since(pass, version).await? else {
            return Ok(None);
        };
        let changed: Vec<String> = changed
            .into_iter()
            .filter(|id| listed(id) && !extra_ids.contains(id.as_str()))
            .collect();
        for chunk in changed.chunks(1000) {
            self.check_query_time(started)?;
            for row in self.store.read_row_ids(pass, chunk, Some(version)).await? {
                take(&mut local, &mut kept, row);
            }
            settle(&mut local, &mut kept);
        }
        Ok(Some(local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expr(v: Value) -> Expr {
        Expr::from_json(&v, false).unwrap()
    }

    /// `created` compared with instants: entries from the first second's text to (before)
    /// the text of the second after the last; odd rows besides; far years leave a side open.
    #[test]
    fn created_ranges_from_filters() {
        let cx = Context {
            now: time::OffsetDateTime::UNIX_EPOCH,
        };
        let cmp = |op: &str, t: &str| {
            json!({"op": op, "left": {"op": "ident", "name": ["created"]},
                   "right": {"op": "literal", "value": t}})
        };
        let text = |t: &str| Some(IndexValue::Text(t.to_owned()));
        let both = expr(json!({"op": "and", "children": [
            cmp("ge", "2026-03-01T10:30:00.5Z"),
            cmp("lt", "2026-03-02T00:00:00+01:00"),
            cmp("gt", "2026-03-01T09:00:00Z"),
            {"op": "gt", "left": {"op": "ident", "name": ["scores", "f"]},
             "right": {"op": "literal", "value": 1}},
        ]}));
        let range = created_range(&both, &cx).unwrap();
        assert_eq!(range.low, text("2026-03-01T10:30:00"));
        assert_eq!(range.high, text("2026-03-01T23:00:01"));
        assert!(range.odd);
        assert!(range.past_high(&IndexValue::Text("2026-03-01T23:00:01".into())));
        assert!(!range.past_high(&IndexValue::Text("2026-03-01T23:00:00.999999Z".into())));
        // The numeric range comes first when there is one.
        assert_eq!(entry_range(&both, &cx).unwrap().path, ["scores", "f"]);
        let open = expr(cmp("le", "9999-12-31T23:59:59.5Z"));
        assert_eq!(created_range(&open, &cx), None);
        let not_time = expr(cmp("gt", "yesterday"));
        assert_eq!(created_range(&not_time, &cx), None);
        let or = expr(
            json!({"op": "or", "children": [cmp("gt", "2026-01-01T00:00:00Z"),
                                                       cmp("lt", "2025-01-01T00:00:00Z")]}),
        );
        assert_eq!(created_range(&or, &cx), None);
        // An `OR` whose every branch has a range: one range a branch; else none.
        let plans = entry_plans(&or, &cx);
        assert_eq!(plans.len(), 1);
        let ranges = &plans[0];
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].low, text("2026-01-01T00:00:00"));
        assert_eq!(ranges[1].high, text("2025-01-01T00:00:01"));
        let score = json!({"op": "lt", "left": {"op": "ident", "name": ["scores", "f"]},
                           "right": {"op": "literal", "value": 0.1}});
        let input = json!({"op": "eq", "left": {"op": "ident", "name": ["input", "t"]},
                           "right": {"op": "literal", "value": "x"}});
        let mixed = expr(json!({"op": "and", "children": [
            input.clone(),
            {"op": "or", "children": [score.clone(), cmp("ge", "2026-01-01T00:00:00Z")]},
        ]}));
        let plans = entry_plans(&mixed, &cx);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0][0].path, ["scores", "f"]);
        assert_eq!(plans[0][1].path, ["created"]);
        let open_branch = expr(json!({"op": "or", "children": [score, input]}));
        assert_eq!(
            entry_plans(&open_branch, &cx),
            Vec::<Vec<EntryRange>>::new()
        );
    }

    /// `error IS NOT NULL` reads the rows the index marks as having an error, tried before a
    /// score's range; `IS NULL`, and fields the index does not mark, have no way.
    #[test]
    fn errors_in_filters() {
        let cx = Context {
            now: time::OffsetDateTime::UNIX_EPOCH,
        };
        let null = |op: &str, p: &[&str]| json!({"op": op, "expr": {"op": "ident", "name": p}});
        let score = json!({"op": "gt", "left": {"op": "ident", "name": ["scores", "f"]},
                           "right": {"op": "literal", "value": 0.5}});
        let failed = null("isnotnull", &["error"]);
        let f = expr(json!({"op": "and", "children": [score, failed]}));
        let plans = entry_plans(&f, &cx);
        assert_eq!(plans.len(), 2);
        assert_eq!(
            plans[0],
            vec![EntryRange::whole(&["error".to_owned()], true)]
        );
        assert_eq!(plans[1][0].path, ["scores", "f"]);
        for none in [null("isnull", &["error"]), null("isnotnull", &["output"])] {
            assert_eq!(entry_plans(&expr(none), &cx), Vec::<Vec<EntryRange>>::new());
        }
    }

    #[test]
    fn listed_fields_in_filters() {
        let cx = Context {
            now: time::OffsetDateTime::UNIX_EPOCH,
        };
        let ident = |p: &[&str]| json!({"op": "ident", "name": p});
        let lit = |v: Value| json!({"op": "literal", "value": v});
        let cmp = |op: &str, p: &[&str], v: &str| json!({"op": op, "left": ident(p), "right": lit(json!(v))});
        let kind = ["span_attributes", "type"];
        let text = |t: &str| Some(IndexValue::Text(t.to_owned()));
        let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // Equality and `INCLUDES` on tags are points, tried before a score's range; the
        // texts' bounds tighten like numbers'; a text that compares as an instant is left
        // out, as are fields the index does not list.
        let f = expr(json!({"op": "and", "children": [
            {"op": "gt", "left": ident(&["scores", "f"]), "right": lit(json!(0.5))},
            {"op": "includes", "left": ident(&["tags"]), "right": lit(json!("vip"))},
            cmp("eq", &kind, "llm"),
            cmp("ge", &["span_attributes", "name"], "b"),
            cmp("gt", &["span_attributes", "name"], "b"),
            cmp("le", &["span_attributes", "name"], "q"),
            cmp("lt", &["span_attributes", "name"], "z"),
            cmp("eq", &["span_attributes", "at"], "2026-01-01T00:00:00Z"),
            cmp("eq", &["metadata", "k"], "v"),
            {"op": "includes", "left": ident(&kind), "right": lit(json!("l"))},
        ]}));
        let plans = entry_plans(&f, &cx);
        let paths: Vec<&[String]> = plans.iter().map(|p| p[0].path.as_slice()).collect();
        assert_eq!(
            paths,
            [
                &path(&["metadata", "k"])[..],
                &path(&kind),
                &path(&["tags"]),
                &path(&["scores", "f"]),
                &path(&["span_attributes", "name"]),
            ]
        );
        let plans = &plans[1..];
        assert_eq!(
            (plans[1][0].low.clone(), plans[1][0].high.clone()),
            (text("vip"), text("vip"))
        );
        let name = &plans[3][0];
        assert_eq!((name.low.clone(), name.low_open), (text("b"), true));
        assert_eq!((name.high.clone(), name.high_open), (text("q"), false));
        assert!(name.past_high(&IndexValue::Text("qa".into())));
        assert!(!name.past_high(&IndexValue::Text("q".into())));
        // `IN` on a listed field: one point a value; any value the index cannot look up
        // (a number, an instant) leaves it out.
        let isin =
            |vals: Value| expr(json!({"op": "in", "left": ident(&kind), "right": lit(vals)}));
        let plans = entry_plans(&isin(json!(["llm", "tool"])), &cx);
        assert_eq!(plans.len(), 1);
        assert_eq!(
            plans[0].iter().map(|r| r.low.clone()).collect::<Vec<_>>(),
            [text("llm"), text("tool")]
        );
        // A span attribute's numbers are held too, under their own kind; tags' are not.
        let plans = entry_plans(&isin(json!(["llm", 1])), &cx);
        assert_eq!(
            plans[0].iter().map(|r| r.text).collect::<Vec<_>>(),
            [true, false]
        );
        // Metadata: numbers bound a number range, texts a text range.
        let num = json!({"op": "gt", "left": ident(&["metadata", "n"]), "right": lit(json!(2))});
        let plans = entry_plans(&expr(num), &cx);
        assert_eq!(
            (plans[0][0].text, plans[0][0].low.clone()),
            (false, Some(IndexValue::Number(2.0)))
        );
        let plans = entry_plans(&expr(cmp("le", &["metadata", "n"], "b")), &cx);
        assert_eq!(
            (plans[0][0].text, plans[0][0].high.clone()),
            (true, text("b"))
        );
        let tags_in =
            expr(json!({"op": "in", "left": ident(&["tags"]), "right": lit(json!(["a", 1]))}));
        assert!(entry_plans(&tags_in, &cx).is_empty());
        assert!(entry_plans(&isin(json!(["2026-01-01T00:00:00Z"])), &cx).is_empty());
        // `tags = 'x'` compares the whole value (the index still holds every row it keeps);
        // `INCLUDES` on a span attribute is a substring test, which the index cannot bound.
        assert_eq!(entry_plans(&expr(cmp("eq", &["tags"], "x")), &cx).len(), 1);
        let sub = json!({"op": "includes", "left": ident(&kind), "right": lit(json!("l"))});
        assert!(entry_plans(&expr(sub), &cx).is_empty());
        // An `OR` of a tag and a `created` range.
        let or = expr(json!({"op": "or", "children": [
            {"op": "includes", "left": ident(&["tags"]), "right": lit(json!("a"))},
            cmp("gt", &["created"], "2026-01-01T00:00:00Z"),
        ]}));
        let plans = entry_plans(&or, &cx);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].len(), 2);
    }

    /// A walk of listed entries reads them as a walk of the whole field does, in either
    /// direction, from any start, in pages of any size: the same entries, ties on a value
    /// ordered by `seq`.
    #[test]
    fn walks_of_listed_entries() {
        let text = |s: &str| IndexValue::Text(s.to_owned());
        let mut entries: Vec<ValueEntry> = (0..40)
            .map(|k: i64| ValueEntry {
                value: text(&format!("2026-01-01T00:00:{:02}Z", (k * 7) % 13)),
                seq: 1000 - k,
                row_id: format!("r{k:02}"),
            })
            .collect();
        let key = |e: &ValueEntry| match &e.value {
            IndexValue::Text(t) => (t.clone(), e.seq),
            IndexValue::Number(_) => unreachable!(),
        };
        entries.sort_by_key(key);
        for descending in [false, true] {
            let mut ordered = entries.clone();
            if descending {
                ordered.reverse();
            }
            let after = |e: &ValueEntry, from: &ValueFrom| {
                let (v, s) = key(e);
                match from {
                    ValueFrom::Start => true,
                    ValueFrom::AtValue(IndexValue::Text(t)) if descending => v <= *t,
                    ValueFrom::AtValue(IndexValue::Text(t)) => v >= *t,
                    ValueFrom::After(IndexValue::Text(t), q) if descending => {
                        (v, s) < (t.clone(), *q)
                    }
                    ValueFrom::After(IndexValue::Text(t), q) => (v, s) > (t.clone(), *q),
                    _ => unreachable!(),
                }
            };
            let mut starts = vec![
                ValueFrom::Start,
                ValueFrom::AtValue(text("2026-01-01T00:00:05Z")),
                ValueFrom::AtValue(text("2026-01-01T00:00:05.5Z")),
                ValueFrom::AtValue(text("2027")),
                ValueFrom::AtValue(text("2025")),
            ];
            starts.extend(
                entries
                    .iter()
                    .step_by(3)
                    .map(|e| ValueFrom::After(e.value.clone(), e.seq)),
            );
            for from in &starts {
                for limit in [1, 4, 100] {
                    let want: Vec<&str> = ordered
                        .iter()
                        .filter(|e| after(e, from))
                        .take(limit)
                        .map(|e| e.row_id.as_str())
                        .collect();
                    let walked = walk_listed(&entries, descending, from, limit);
                    let got: Vec<&str> = walked.listed.iter().map(|e| e.row_id.as_str()).collect();
                    assert_eq!(got, want, "{descending} {from:?} {limit}");
                    assert_eq!(walked.walked, want.len());
                    assert_eq!(
                        walked.last.map(|e| e.row_id),
                        want.last().map(|r| (*r).to_owned())
                    );
                }
            }
            // Page after page, every entry once, in order.
            let mut from = ValueFrom::Start;
            let mut all = Vec::new();
            loop {
                let walked = walk_listed(&entries, descending, &from, 6);
                let Some(last) = walked.last else { break };
                all.extend(walked.listed.iter().map(|e| e.row_id.clone()));
                from = ValueFrom::After(last.value, last.seq);
            }
            let want: Vec<String> = ordered.iter().map(|e| e.row_id.clone()).collect();
            assert_eq!(all, want);
        }
    }

    #[test]
    fn ranges_from_filters() {
        let path = vec!["scores".to_owned(), "f".to_owned()];
        let f = |op: &str, n: f64| {
            json!({"op": op, "left": {"op": "ident", "name": ["scores", "f"]},
                   "right": {"op": "literal", "value": n}})
        };
        let gt = expr(f("gt", 0.9));
        let r = number_range(&gt, &path).unwrap();
        assert_eq!((r.low, r.high), (Some(IndexValue::Number(0.9)), None));
        let both =
            expr(json!({"op": "and", "children": [f("ge", 0.2), f("lt", 0.5), f("gt", 0.3)]}));
        let r = number_range(&both, &path).unwrap();
        assert_eq!(
            (r.low, r.high),
            (Some(IndexValue::Number(0.3)), Some(IndexValue::Number(0.5)))
        );
        // Strict comparisons make open bounds: reads start past the bound's entries.
        let r = number_range(&both, &path).unwrap();
        assert!(r.low_open && r.high_open);
        assert!(r.past_high(&IndexValue::Number(0.5)));
        assert!(!r.past_high(&IndexValue::Number(0.49)));
        assert!(matches!(r.start(false),
            ValueFrom::After(IndexValue::Number(n), i64::MAX) if n == 0.3));
        assert!(matches!(r.start(true),
            ValueFrom::After(IndexValue::Number(n), i64::MIN) if n == 0.5));
        let closed = expr(json!({"op": "and", "children": [f("ge", 0.2), f("le", 0.5)]}));
        let r = number_range(&closed, &path).unwrap();
        assert!(!r.low_open && !r.high_open);
        assert!(!r.past_high(&IndexValue::Number(0.5)));
        assert!(matches!(r.start(false), ValueFrom::AtValue(IndexValue::Number(n)) if n == 0.2));
        let other = expr(
            json!({"op": "gt", "left": {"op": "ident", "name": ["scores", "g"]},
                                "right": {"op": "literal", "value": 1}}),
        );
        assert_eq!(number_range(&other, &path), None);
        let or = expr(json!({"op": "or", "children": [f("gt", 0.9), f("lt", 0.1)]}));
        assert_eq!(
            number_range(&or, &path),
            None,
            "a disjunction bounds nothing"
        );
        let ne = expr(f("ne", 0.9));
        assert_eq!(number_range(&ne, &path), None);
    }
}
