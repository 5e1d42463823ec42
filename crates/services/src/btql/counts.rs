//! Counts by time through the store's value index: `SELECT hour(created), count(*) ...
//! GROUP BY 1` over a range of `created` is answered from the index's entries of `created`
//! (one per shown row, see `holdfast_store::CreatedCounts`) without reading a row.
//!
//! The store groups the entries by their first characters: for timestamps in the form the
//! server writes, the day, hour, minute or second they fall in. Every other value (the
//! index lists them apart) counts one by one and is taken out of the group it fell in. A
//! group of timestamps is an interval of time: when the filter's
//! bounds on `created` keep all of it, its rows count in the group its dimensions give at the
//! interval's start (the dimensions truncate `created` to that unit or a coarser one, so all
//! of its rows agree); when they keep none, it is left out; when they keep part of it (at
//! most the two ends of the range), it is grouped again one unit finer, down to whole
//! values. Whole values go through the query's filter and dimensions like rows do.
//!
//! Rows written since the index last caught up are read twice: as they were at the newest
//! transaction the index holds (what their entry counted, taken away) and as they are now.

use super::{MAX_GROUPS, Plan, Shape, too_many_groups};
use crate::{Result, Services};
use holdfast_core::authz::ObjectPass;
use holdfast_core::clock::parse_timestamp;
use holdfast_core::merge::only_discussion;
use holdfast_core::qexpr::{AggKind, CmpOp, Context, Expr, Func, Unit, timestamp_like};
use holdfast_store::CreatedCounts;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Instant;
use time::OffsetDateTime;

/// The characters of a server-written timestamp that name its day, hour, minute and second,
/// with that unit's length in seconds: the levels a count groups entries at.
const LEVELS: [(usize, i64); 4] = [(10, 86_400), (13, 3_600), (16, 60), (19, 1)];
/// Rows newer than the index a count reads, at most, before it reads the object instead.
const MAX_EXTRAS: usize = 20_000;

/// Rows counted per group: the group's dimension values and its count.
pub(super) type Counts = HashMap<String, (Vec<Value>, i64)>;

/// What makes a grouped query answerable from the index.
struct CountPlan {
    /// `created <op> instant`, all of which a row must meet.
    bounds: Vec<(CmpOp, OffsetDateTime)>,
    /// The coarsest level of [`LEVELS`] at which the dimensions agree within a group.
    level: usize,
}

/// The level at which every use of `created` in a dimension agrees: `created` only appears
/// truncated (`hour(created)`, `date_trunc('day', created)`, ...).
fn dimension_level(e: &Expr) -> Option<usize> {
    let created = |a: Option<&Expr>| matches!(a, Some(Expr::Field(p)) if p == &["created"]);
    let level = |u: Unit| match u {
        Unit::Second => 3,
        Unit::Minute => 2,
        Unit::Hour => 1,
        Unit::Day | Unit::Week | Unit::Month | Unit::Year => 0,
    };
    let finest = std::cell::Cell::new(0usize);
    let rest = e.rewrite(&|x: &Expr| {
        let unit = match x {
            Expr::Call(Func::Trunc(u), args) if args.len() == 1 && created(args.first()) => *u,
            Expr::Call(Func::DateTrunc, args) if args.len() == 2 && created(args.get(1)) => {
                match args.first() {
                    Some(Expr::Lit(Value::String(u))) => Unit::parse(&u.to_ascii_lowercase())?,
                    _ => return None,
                }
            }
            _ => return None,
        };
        finest.set(finest.get().max(level(unit)));
        Some(Expr::Lit(Value::Null))
    });
    let mut other = false;
    rest.walk_fields(&mut |_| other = true);
    (!other).then_some(finest.get())
}

/// Whether an aggregate counts every row (`count(*)`, `count(1)`, `count(created)`).
fn counts_every_row(e: &Expr) -> bool {
    match e {
        Expr::Agg(AggKind::Count, args) => match args.as_slice() {
            [] | [Expr::Star] => true,
            [Expr::Lit(v)] => !v.is_null(),
            [Expr::Field(p)] => p == &["created"],
            _ => false,
        },
        _ => false,
    }
}

/// The instant a side of a comparison names, when it reads no field and is a timestamp
/// that comparisons treat as one.
fn instant(e: &Expr, cx: &Context) -> Option<OffsetDateTime> {
    let mut fields = false;
    e.walk_fields(&mut |_| fields = true);
    if fields || !e.aggregates().is_empty() {
        return None;
    }
    match e.eval(&Map::new(), cx) {
        Value::String(s) if timestamp_like(&s) => parse_timestamp(&s),
        _ => None,
    }
}

fn count_plan(plan: &Plan, cx: &Context) -> Option<CountPlan> {
    if plan.shape != Shape::Spans {
        return None;
    }
    for (_, e) in &plan.measures {
        if !e.aggregates().iter().all(counts_every_row) {
            return None;
        }
        let mut other = false;
        e.walk_fields(&mut |p| other |= p != ["created"]);
        if other {
            return None;
        }
    }
    let mut level = 0;
    for (_, e) in &plan.dimensions {
        level = level.max(dimension_level(e)?);
    }
    let conjuncts: Vec<&Expr> = match &plan.filter {
        None => Vec::new(),
        Some(Expr::And(cs)) => cs.iter().collect(),
        Some(e) => vec![e],
    };
    let bounds = conjuncts
        .into_iter()
        .map(|c| created_bound(c, cx))
        .collect::<Option<Vec<_>>>()?;
    Some(CountPlan { bounds, level })
}

/// A comparison of `created` with an instant, as (operator with `created` on its left,
/// instant): `'2026-01-01T00:00:00Z' <= created` is (`>=`, that instant). Not `=` or `!=`.
pub(super) fn created_bound(c: &Expr, cx: &Context) -> Option<(CmpOp, OffsetDateTime)> {
    let Expr::Cmp(op, a, b) = c else {
        return None;
    };
    let is_created = |e: &Expr| matches!(e, Expr::Field(p) if p == &["created"]);
    let (op, at) = if is_created(a) {
        (*op, instant(b, cx)?)
    } else if is_created(b) {
        (op.flipped(), instant(a, cx)?)
    } else {
        return None;
    };
    (!matches!(op, CmpOp::Eq | CmpOp::Ne)).then_some((op, at))
}

/// How much of the interval `[start, end)` the bounds keep: all of it, none, or part.
#[derive(Debug, PartialEq)]
enum Fit {
    All,
    Nothing,
    Part,
}

fn fit(bounds: &[(CmpOp, OffsetDateTime)], start: OffsetDateTime, end: OffsetDateTime) -> Fit {
    let mut all = true;
    for (op, at) in bounds {
        // Every value `v` of the interval has start <= v < end.
        let (keeps_all, keeps_none) = match op {
            CmpOp::Gt => (start > *at, end <= *at),
            CmpOp::Ge => (start >= *at, end <= *at),
            CmpOp::Lt => (end <= *at, start >= *at),
            CmpOp::Le => (end <= *at, start > *at),
            CmpOp::Eq | CmpOp::Ne => (false, false),
        };
        if keeps_none {
            return Fit::Nothing;
        }
        all &= keeps_all;
    }
    if all { Fit::All } else { Fit::Part }
}

/// The first instant of a group of server-written timestamps sharing `prefix`.
fn group_start(prefix: &str) -> Option<OffsetDateTime> {
    let zeros = "0000-00-00T00:00:00";
    parse_timestamp(&format!("{prefix}{}Z", zeros.get(prefix.len()..)?))
}

impl Services {
    /// A grouped query's counts read from the value index; `None` when the query or the
    /// index's state does not allow it (the caller reads the rows).
    pub(super) async fn indexed_counts(
        &self,
        plan: &Plan,
        passes: &[ObjectPass],
        cx: &Context,
        started: Instant,
    ) -> Result<Option<Counts>> {
        if !self.limits.query_search_index {
            return Ok(None);
        }
        let Some(cp) = count_plan(plan, cx) else {
            return Ok(None);
        };
        // One object at a time: each read holds a connection of the store's pool.
        let mut counts = Counts::new();
        for pass in passes {
            let Some(read) = self.store.created_counts(pass, MAX_EXTRAS).await? else {
                return Ok(None);
            };
            if !self
                .count_object(plan, &cp, pass, read, cx, started, &mut counts)
                .await?
            {
                return Ok(None);
            }
        }
        counts.retain(|_, (_, n)| *n != 0);
        Ok(Some(counts))
    }

    /// Adds one object's rows to `counts`; false when a row is not as the index expects.
    #[allow(clippy::too_many_arguments)]
    async fn count_object(
        &self,
        plan: &Plan,
        cp: &CountPlan,
        pass: &ObjectPass,
        mut read: CreatedCounts,
        cx: &Context,
        started: Instant,
        counts: &mut Counts,
    ) -> Result<bool> {
        // A value's rows, through the query's filter and dimensions.
        let add_value = |counts: &mut Counts, created: &str, n: i64| -> Result<()> {
            let row = created_row(created);
            if plan.keep(&row, cx) {
                add_group(plan, counts, &row, cx, n)?;
            }
            Ok(())
        };
        // Values that are not server timestamps count one by one, and are taken out of the
        // groups they fall in.
        let odd = std::mem::take(&mut read.odd);
        for (value, n) in &odd {
            add_value(counts, value, *n)?;
        }
        let mut todo: Vec<(usize, Option<String>)> = vec![(cp.level, None)];
        while let Some((level, within)) = todo.pop() {
            self.check_query_time(started)?;
            let unit = LEVELS.get(level);
            // Groups of the index are never fewer than the query's: past the query's limit,
            // the rows are read (and refused there if they make too many groups).
            let Some(found) = read
                .groups(unit.map(|u| u.0), within.as_deref(), MAX_GROUPS)
                .await?
            else {
                return Ok(false);
            };
            let mut groups: HashMap<String, i64> = found.into_iter().collect();
            for (value, n) in &odd {
                if within.as_deref().is_none_or(|w| value.starts_with(w)) {
                    let key: String = match unit {
                        Some((chars, _)) => value.chars().take(*chars).collect(),
                        None => value.clone(),
                    };
                    if let Some(rows) = groups.get_mut(&key) {
                        *rows -= n;
                    }
                }
            }
            for (key, rows) in groups.into_iter().filter(|(_, rows)| *rows != 0) {
                let Some((_, seconds)) = unit else {
                    add_value(counts, &key, rows)?;
                    continue;
                };
                let Some(start) = group_start(&key) else {
                    // Not a date (a 30th of February): its values are read one by one.
                    todo.push((LEVELS.len(), Some(key)));
                    continue;
                };
                match fit(&cp.bounds, start, start + time::Duration::seconds(*seconds)) {
                    Fit::Nothing => {}
                    Fit::Part => todo.push((level + 1, Some(key))),
                    Fit::All => {
                        let row = created_row(&holdfast_core::clock::format_timestamp(start));
                        add_group(plan, counts, &row, cx, rows)?;
                    }
                }
            }
        }
        let extras = std::mem::take(&mut read.extras);
        let reads = [(read.indexed_xact, -1), (read.xact, 1)];
        read.finish().await?;
        // Rows written since the index caught up: out goes the entry the index holds (the
        // row as it was at the index's transaction), in comes the row as it is now.
        for chunk in extras.chunks(1_000) {
            for (at, n) in reads {
                self.check_query_time(started)?;
                let Some(at) = at else { continue };
                for row in self.store.read_row_ids(pass, chunk, Some(at)).await? {
                    if only_discussion(&row.data) {
                        continue;
                    }
                    let Some(Value::String(created)) = row.data.get("created") else {
                        return Ok(false);
                    };
                    add_value(counts, created, n)?;
                }
            }
        }
        Ok(true)
    }
}

/// A row holding only `created`: all that the filter and dimensions of a count read.
fn created_row(created: &str) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("created".into(), json!(created));
    row
}

/// Adds `n` rows to the group `row`'s dimensions name; at most [`MAX_GROUPS`] groups, as
/// when the rows are read.
fn add_group(
    plan: &Plan,
    counts: &mut Counts,
    row: &Map<String, Value>,
    cx: &Context,
    n: i64,
) -> Result<()> {
    let dims: Vec<Value> = plan
        .dimensions
        .iter()
        .map(|(_, e)| e.eval(row, cx))
        .collect();
    let id = Value::Array(dims.clone()).to_string();
    if !counts.contains_key(&id) && counts.len() >= MAX_GROUPS {
        return Err(too_many_groups());
    }
    counts.entry(id).or_insert_with(|| (dims, 0)).1 += n;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        parse_timestamp(s).unwrap()
    }

    #[test]
    fn intervals_against_bounds() {
        let (start, end) = (at("2026-01-01T10:00:00Z"), at("2026-01-01T11:00:00Z"));
        let case = |op: CmpOp, b: &str| fit(&[(op, at(b))], start, end);
        // The interval's first instant is in it, its end is not.
        assert_eq!(case(CmpOp::Ge, "2026-01-01T10:00:00Z"), Fit::All);
        assert_eq!(case(CmpOp::Gt, "2026-01-01T10:00:00Z"), Fit::Part);
        assert_eq!(case(CmpOp::Gt, "2026-01-01T09:59:59.999999Z"), Fit::All);
        assert_eq!(case(CmpOp::Lt, "2026-01-01T11:00:00Z"), Fit::All);
        assert_eq!(case(CmpOp::Le, "2026-01-01T10:59:59.999999Z"), Fit::Part);
        assert_eq!(case(CmpOp::Lt, "2026-01-01T10:00:00Z"), Fit::Nothing);
        assert_eq!(case(CmpOp::Le, "2026-01-01T10:00:00Z"), Fit::Part);
        assert_eq!(case(CmpOp::Ge, "2026-01-01T11:00:00Z"), Fit::Nothing);
        assert_eq!(case(CmpOp::Gt, "2026-01-01T10:59:59Z"), Fit::Part);
        assert_eq!(fit(&[], start, end), Fit::All);
        assert_eq!(
            group_start("2026-01-01T10"),
            Some(at("2026-01-01T10:00:00Z"))
        );
        assert_eq!(group_start("2026-02-30"), None);
    }

    #[test]
    fn dimensions_that_truncate_created() {
        let f = |name: &str| Expr::Field(vec![name.to_owned()]);
        let trunc = |u: Unit| Expr::Call(Func::Trunc(u), vec![f("created")]);
        assert_eq!(dimension_level(&trunc(Unit::Hour)), Some(1));
        assert_eq!(dimension_level(&trunc(Unit::Month)), Some(0));
        let dt = Expr::Call(
            Func::DateTrunc,
            vec![Expr::Lit(json!("MINUTES")), f("created")],
        );
        assert_eq!(dimension_level(&dt), Some(2));
        assert_eq!(dimension_level(&Expr::Lit(json!(1))), Some(0));
        // `created` itself, another field, or a unit that is not a literal.
        assert_eq!(dimension_level(&f("created")), None);
        assert_eq!(
            dimension_level(&Expr::Call(Func::Trunc(Unit::Hour), vec![f("x")])),
            None
        );
        let unit = Expr::Call(Func::DateTrunc, vec![f("u"), f("created")]);
        assert_eq!(dimension_level(&unit), None);
    }
}
