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

use super::{Plan, Ranked, rank_cmp};
use crate::{Result, Services};
use holdfast_core::authz::ObjectPass;
use holdfast_core::qexpr::{CmpOp, Expr, sort_cmp};
use holdfast_core::xact::XactId;
use holdfast_store::{
    IndexValue, MAX_CANDIDATES, StoredRow, ValueEntry, ValueFrom, ValueQuery, indexed_path,
};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

/// Entries read per page at most.
const MAX_PAGE: usize = 2_000;

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
        (Expr::Lit(Value::Number(n)), Expr::Field(p)) => match op {
            CmpOp::Gt => (p, CmpOp::Lt, n),
            CmpOp::Ge => (p, CmpOp::Le, n),
            CmpOp::Lt => (p, CmpOp::Gt, n),
            CmpOp::Le => (p, CmpOp::Ge, n),
            o => (p, *o, n),
        },
        _ => return None,
    };
    Some((path, op, n.as_f64()?))
}

/// The numeric range a filter's top-level conjunction puts on a field: `Some` when it
/// compares the field with a number (so no row without a number there is kept).
fn numeric_range(filter: Option<&Expr>, path: &[String]) -> Option<(Option<f64>, Option<f64>)> {
    let mut range: Option<(Option<f64>, Option<f64>)> = None;
    for (p, op, n) in conjuncts(filter?).into_iter().filter_map(field_vs_number) {
        if p != path {
            continue;
        }
        let (lo, hi) = range.get_or_insert((None, None));
        let tighten = |bound: &mut Option<f64>, n: f64, higher: bool| {
            *bound = Some(match *bound {
                Some(b) if higher => b.max(n),
                Some(b) => b.min(n),
                None => n,
            });
        };
        match op {
            CmpOp::Gt | CmpOp::Ge => tighten(lo, n, true),
            CmpOp::Lt | CmpOp::Le => tighten(hi, n, false),
            CmpOp::Eq => {
                tighten(lo, n, true);
                tighten(hi, n, false);
            }
            // `x != n` still needs a number in x.
            CmpOp::Ne => {}
        }
    }
    range
}

/// A numeric field the index orders that a filter's top-level conjunction bounds, and the
/// bounds: `scores.f < 0.5`, `metrics.tokens BETWEEN 10 AND 20`.
fn bounded_field(filter: &Expr) -> Option<(Vec<String>, Option<f64>, Option<f64>)> {
    conjuncts(filter)
        .into_iter()
        .filter_map(field_vs_number)
        .filter(|(path, ..)| indexed_path(path) == Some(false))
        .find_map(|(path, ..)| match numeric_range(Some(filter), path)? {
            (None, None) => None,
            (lo, hi) => Some((path.to_vec(), lo, hi)),
        })
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
    /// The rows of one object that a filter bounding an indexed number (`scores.f < 0.5`,
    /// without a sort on it) can keep, from the value index instead of reading the object:
    /// those whose entry is in the range, and every row the index cannot place (written
    /// after it or after the snapshot, or with a value it does not order). The filter is
    /// evaluated again on each row read, so the index decides only which rows are read.
    /// Row ids, sorted; `None` when the filter bounds no such field, or the range holds more
    /// than [`MAX_CANDIDATES`] rows (reading the object is then as fast).
    pub(super) async fn range_candidates(
        &self,
        filter: &Expr,
        pass: &ObjectPass,
        version: XactId,
        started: Instant,
    ) -> Result<Option<Vec<String>>> {
        let Some((path, lo, hi)) = bounded_field(filter) else {
            return Ok(None);
        };
        let Some(extras) = self.store.value_extras(pass, &path, version).await? else {
            return Ok(None);
        };
        let mut ids: BTreeSet<String> = extras.into_iter().collect();
        let q = ValueQuery {
            path,
            roots: false,
            descending: false,
        };
        let mut from = lo.map_or(ValueFrom::Start, |n| {
            ValueFrom::AtValue(IndexValue::Number(n))
        });
        loop {
            self.check_query_time(started)?;
            let entries = self.store.value_entries(pass, &q, &from, MAX_PAGE).await?;
            let past_end = |e: &&ValueEntry| match (&e.value, hi) {
                (IndexValue::Number(v), Some(h)) => *v > h,
                _ => false,
            };
            let within = entries.iter().take_while(|e| !past_end(e));
            ids.extend(within.map(|e| e.row_id.clone()));
            if ids.len() > MAX_CANDIDATES {
                return Ok(None);
            }
            let Some(last) = entries.last() else { break };
            if entries.len() < MAX_PAGE || past_end(&last) {
                break;
            }
            from = ValueFrom::After(last.value.clone(), last.seq);
        }
        // As for sorted reads: entries may have moved while they were read.
        let Some(changed) = self.store.rows_changed_since(pass, version).await? else {
            return Ok(None);
        };
        ids.extend(changed);
        Ok((ids.len() <= MAX_CANDIDATES).then(|| ids.into_iter().collect()))
    }

    /// The best candidates of one object (with `best`, those of the objects read before),
    /// read through the value index; `None` when the index cannot answer and the caller
    /// must read the object. `roots`: only root spans are candidates. `accept` turns a row
    /// into a candidate (filter, key, cursor) or refuses it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn indexed_sort(
        &self,
        plan: &Plan,
        pass: &ObjectPass,
        object: usize,
        version: XactId,
        started: Instant,
        roots: bool,
        best: &[Ranked],
        accept: &mut (dyn FnMut(StoredRow) -> Option<Ranked> + Send),
    ) -> Result<Option<Vec<Ranked>>> {
        let Some((Expr::Field(path), descending)) = plan.sort.first() else {
            return Ok(None);
        };
        if !self.limits.query_search_index {
            return Ok(None);
        }
        let descending = *descending;
        let Some(text) = indexed_path(path) else {
            return Ok(None);
        };
        let Some(extras) = self.store.value_extras(pass, path, version).await? else {
            return Ok(None);
        };
        let range = if text {
            None
        } else {
            numeric_range(plan.filter.as_ref(), path)
        };
        let keep = plan.limit + 1;
        let mut local: Vec<Ranked> = best.to_vec();
        // The rows read first are not read again. A row proposed again otherwise (its entry
        // moved while the entries were read) is read again (memory stays bounded by the page,
        // not by the rows read): read at the same snapshot, it ranks exactly as before, so it
        // is left out while it is among the kept rows, and trimmed again otherwise.
        let extra_ids: HashSet<&str> = extras.iter().map(String::as_str).collect();
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
        for chunk in extras.chunks(1000) {
            self.check_query_time(started)?;
            for row in self.store.read_row_ids(pass, chunk, Some(version)).await? {
                take(&mut local, &mut kept, row);
            }
            settle(&mut local, &mut kept);
        }
        // Where the entries start: the cursor's key, else the filter's bound.
        let cursor_start = plan
            .cursor
            .as_ref()
            .and_then(|c| c.key.as_ref()?.first().cloned())
            .and_then(|v| match v {
                Value::String(s) if text => Some(IndexValue::Text(s)),
                Value::Number(n) if !text => n.as_f64().map(IndexValue::Number),
                _ => None,
            });
        let (lo, hi) = range.unwrap_or((None, None));
        let (start, end) = if descending { (hi, lo) } else { (lo, hi) };
        let mut from = match (cursor_start, start) {
            (Some(c), _) => ValueFrom::AtValue(c),
            (None, Some(n)) => ValueFrom::AtValue(IndexValue::Number(n)),
            (None, None) => ValueFrom::Start,
        };
        let q = ValueQuery {
            path: path.clone(),
            roots,
            descending,
        };
        let mut page = keep.saturating_mul(2).clamp(64, MAX_PAGE);
        let complete = loop {
            self.check_query_time(started)?;
            let entries = self.store.value_entries(pass, &q, &from, page).await?;
            let Some(last) = entries.last() else {
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
            let position = last.value.to_json();
            from = ValueFrom::After(last.value.clone(), last.seq);
            let past_end = end.is_some_and(|e| {
                cmp_first(&position, &serde_json::json!(e), descending) == Ordering::Greater
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
            let ids: Vec<String> = entries
                .iter()
                .filter(|e| !ranks_after(e) && !extra_ids.contains(e.row_id.as_str()))
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
            page = page.saturating_mul(2).min(MAX_PAGE);
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
            .filter(|id| !extra_ids.contains(id.as_str()))
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

    #[test]
    fn ranges_from_filters() {
        let path = vec!["scores".to_owned(), "f".to_owned()];
        let f = |op: &str, n: f64| {
            json!({"op": op, "left": {"op": "ident", "name": ["scores", "f"]},
                   "right": {"op": "literal", "value": n}})
        };
        let gt = expr(f("gt", 0.9));
        assert_eq!(numeric_range(Some(&gt), &path), Some((Some(0.9), None)));
        let both =
            expr(json!({"op": "and", "children": [f("ge", 0.2), f("lt", 0.5), f("gt", 0.3)]}));
        assert_eq!(
            numeric_range(Some(&both), &path),
            Some((Some(0.3), Some(0.5)))
        );
        let other = expr(
            json!({"op": "gt", "left": {"op": "ident", "name": ["scores", "g"]},
                                "right": {"op": "literal", "value": 1}}),
        );
        assert_eq!(numeric_range(Some(&other), &path), None);
        let or = expr(json!({"op": "or", "children": [f("gt", 0.9), f("lt", 0.1)]}));
        assert_eq!(
            numeric_range(Some(&or), &path),
            None,
            "a disjunction bounds nothing"
        );
        assert_eq!(numeric_range(None, &path), None);
    }
}
