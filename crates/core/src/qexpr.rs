//! Query expressions: the expressions of the structured query form (what the SDKs send and
//! what [`crate::btql::parse`] produces from text), checked once and evaluated on rows.
//!
//! Values are JSON. Logic is SQL's three-valued logic: a comparison with a missing or null
//! side is null, `NOT null` is null, and a filter keeps a row only when it is `true`.
//! Timestamps are RFC 3339 text (fixed width, so they compare as strings); adding or
//! subtracting an interval gives a timestamp in the same form.
//!
//! Cost: evaluation is linear in the expression and the values it touches. `LIKE` matches in
//! at most (text length × pattern length) steps with the pattern capped at
//! [`MAX_PATTERN_CHARS`]; `MATCH` tokenizes once. An expression has at most [`MAX_NODES`]
//! nodes and nests at most [`MAX_DEPTH`] deep.

use crate::clock::{format_timestamp, parse_timestamp};
use serde_json::{Map, Number, Value, json};
use std::cmp::Ordering;
use time::OffsetDateTime;

/// Most nodes in one expression.
pub const MAX_NODES: usize = 2_000;
/// Deepest nesting of one expression.
pub const MAX_DEPTH: usize = 64;
/// Longest `LIKE` pattern, in characters.
pub const MAX_PATTERN_CHARS: usize = 1_024;
/// Most values an `IN` list may hold.
pub const MAX_IN_VALUES: usize = crate::btql::MAX_IN_VALUES;

/// The aggregate functions.
pub const AGGREGATES: [&str; 6] = ["count", "sum", "avg", "min", "max", "percentile"];

/// Every function name, aggregates included.
pub const FUNCTIONS: [&str; 32] = [
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "percentile",
    "lower",
    "upper",
    "length",
    "len",
    "concat",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "json_extract",
    "now",
    "current_timestamp",
    "current_date",
    "date_trunc",
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    /// The operator with its sides swapped: `a > b` is `b < a`.
    pub fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            o => o,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    Percentile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Lower,
    Upper,
    Length,
    Concat,
    Coalesce,
    NullIf,
    Greatest,
    Least,
    Abs,
    Round,
    Floor,
    Ceil,
    JsonExtract,
    Now,
    CurrentDate,
    DateTrunc,
    /// `second(t)` ... `year(t)`: `t` truncated to that unit.
    Trunc(Unit),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    pub fn parse(s: &str) -> Option<Unit> {
        Some(match s.trim_end_matches('s') {
            "second" => Unit::Second,
            "minute" => Unit::Minute,
            "hour" => Unit::Hour,
            "day" => Unit::Day,
            "week" => Unit::Week,
            "month" => Unit::Month,
            "year" => Unit::Year,
            _ => return None,
        })
    }

    fn seconds(self) -> Option<i64> {
        Some(match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
            Unit::Week => 604_800,
            Unit::Month | Unit::Year => return None,
        })
    }
}

/// A checked expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    Field(Vec<String>),
    /// `*`, only as the argument of `count`.
    Star,
    Not(Box<Expr>),
    Neg(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>, bool),
    In(Box<Expr>, Vec<Value>),
    /// An array holding the value, an object holding it as a value, or a string holding it
    /// as a substring.
    Includes(Box<Expr>, Box<Expr>),
    /// `LIKE` (case-insensitive when the flag is set).
    Like(Box<Expr>, Box<Expr>, bool),
    /// Every word of the right side is a word of the left side (case-insensitive).
    Match(Box<Expr>, Box<Expr>),
    Case(Vec<(Expr, Expr)>, Option<Box<Expr>>),
    Call(Func, Vec<Expr>),
    /// A length of time, in seconds (months and years are not fixed lengths and refused).
    Interval(i64),
    /// An aggregate: only in measures, `HAVING` and the sort of a grouped query.
    Agg(AggKind, Vec<Expr>),
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExprError(pub String);

fn err<T>(m: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError(m.into()))
}

struct Builder {
    nodes: usize,
    aggregates: bool,
}

impl Expr {
    /// Checks a structured expression. `aggregates` says whether aggregate functions are
    /// allowed (measures); they never nest.
    pub fn from_json(v: &Value, aggregates: bool) -> Result<Expr, ExprError> {
        Builder {
            nodes: 0,
            aggregates,
        }
        .build(v, 0)
    }

    /// Whether the expression holds an aggregate.
    pub fn has_aggregate(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= matches!(e, Expr::Agg(..)));
        found
    }

    fn walk(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Lit(_) | Expr::Field(_) | Expr::Star | Expr::Interval(_) => {}
            Expr::Not(e) | Expr::Neg(e) | Expr::IsNull(e, _) | Expr::In(e, _) => e.walk(f),
            Expr::And(cs) | Expr::Or(cs) | Expr::Call(_, cs) | Expr::Agg(_, cs) => {
                cs.iter().for_each(|c| c.walk(f))
            }
            Expr::Cmp(_, a, b)
            | Expr::Arith(_, a, b)
            | Expr::Includes(a, b)
            | Expr::Like(a, b, _)
            | Expr::Match(a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Case(arms, other) => {
                for (c, t) in arms {
                    c.walk(f);
                    t.walk(f);
                }
                if let Some(o) = other {
                    o.walk(f);
                }
            }
        }
    }

    /// The expression with each node for which `f` answers replaced by that answer (the
    /// replacement is not visited again).
    pub fn rewrite(&self, f: &impl Fn(&Expr) -> Option<Expr>) -> Expr {
        if let Some(e) = f(self) {
            return e;
        }
        let b = |e: &Expr| Box::new(e.rewrite(f));
        let all = |cs: &[Expr]| cs.iter().map(|c| c.rewrite(f)).collect::<Vec<_>>();
        match self {
            Expr::Lit(_) | Expr::Field(_) | Expr::Star | Expr::Interval(_) => self.clone(),
            Expr::Not(e) => Expr::Not(b(e)),
            Expr::Neg(e) => Expr::Neg(b(e)),
            Expr::IsNull(e, n) => Expr::IsNull(b(e), *n),
            Expr::In(e, v) => Expr::In(b(e), v.clone()),
            Expr::And(cs) => Expr::And(all(cs)),
            Expr::Or(cs) => Expr::Or(all(cs)),
            Expr::Call(g, cs) => Expr::Call(*g, all(cs)),
            Expr::Agg(k, cs) => Expr::Agg(*k, all(cs)),
            Expr::Cmp(o, x, y) => Expr::Cmp(*o, b(x), b(y)),
            Expr::Arith(o, x, y) => Expr::Arith(*o, b(x), b(y)),
            Expr::Includes(x, y) => Expr::Includes(b(x), b(y)),
            Expr::Like(x, y, i) => Expr::Like(b(x), b(y), *i),
            Expr::Match(x, y) => Expr::Match(b(x), b(y)),
            Expr::Case(arms, other) => Expr::Case(
                arms.iter()
                    .map(|(c, t)| (c.rewrite(f), t.rewrite(f)))
                    .collect(),
                other.as_ref().map(|o| b(o)),
            ),
        }
    }

    /// Calls `f` with the path of every field the expression reads.
    pub fn walk_fields(&self, f: &mut impl FnMut(&[String])) {
        self.walk(&mut |e| {
            if let Expr::Field(p) = e {
                f(p);
            }
        });
    }

    /// The aggregates in the expression, in a fixed order.
    pub fn aggregates(&self) -> Vec<Expr> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if matches!(e, Expr::Agg(..)) {
                out.push(e.clone());
            }
        });
        out
    }

    /// The field a top-level `field = 'text'` requires, when the expression (alone or as a
    /// conjunct of an `AND`) requires one.
    pub fn equality_on(&self, field: &str) -> Option<String> {
        match self {
            Expr::Cmp(CmpOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
                (Expr::Field(p), Expr::Lit(Value::String(s)))
                | (Expr::Lit(Value::String(s)), Expr::Field(p))
                    if p.len() == 1 && p.first().is_some_and(|n| n == field) =>
                {
                    Some(s.clone())
                }
                _ => None,
            },
            Expr::And(cs) => cs.iter().find_map(|c| c.equality_on(field)),
            _ => None,
        }
    }
}

impl Builder {
    fn build(&mut self, v: &Value, depth: usize) -> Result<Expr, ExprError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return err(format!(
                "the query has more than {MAX_NODES} expression nodes"
            ));
        }
        if depth > MAX_DEPTH {
            return err(format!("an expression nests deeper than {MAX_DEPTH}"));
        }
        let op = v
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| ExprError("an expression needs an `op`".into()))?;
        let sub = |b: &mut Self, key: &str| -> Result<Box<Expr>, ExprError> {
            let child = v
                .get(key)
                .ok_or_else(|| ExprError(format!("`{op}` needs `{key}`")))?;
            Ok(Box::new(b.build(child, depth + 1)?))
        };
        let pair = |b: &mut Self| -> Result<(Box<Expr>, Box<Expr>), ExprError> {
            Ok((sub(b, "left")?, sub(b, "right")?))
        };
        Ok(match op {
            "literal" => Expr::Lit(v.get("value").cloned().unwrap_or(Value::Null)),
            "ident" => {
                let path = v
                    .get("name")
                    .and_then(Value::as_array)
                    .and_then(|a| {
                        a.iter()
                            .map(|s| s.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                    })
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| ExprError("`ident` needs a `name` array of strings".into()))?;
                Expr::Field(path)
            }
            "star" => Expr::Star,
            "and" | "or" => {
                let children = match v.get("children").and_then(Value::as_array) {
                    Some(cs) => cs
                        .iter()
                        .map(|c| self.build(c, depth + 1))
                        .collect::<Result<Vec<_>, _>>()?,
                    None => {
                        let (l, r) = pair(self)?;
                        vec![*l, *r]
                    }
                };
                if op == "and" {
                    Expr::And(children)
                } else {
                    Expr::Or(children)
                }
            }
            "not" => Expr::Not(sub(self, "expr")?),
            "neg" => Expr::Neg(sub(self, "expr")?),
            "isnull" | "isnotnull" => Expr::IsNull(sub(self, "expr")?, op == "isnull"),
            "eq" | "ne" | "gt" | "ge" | "lt" | "le" => {
                let c = match op {
                    "eq" => CmpOp::Eq,
                    "ne" => CmpOp::Ne,
                    "gt" => CmpOp::Gt,
                    "ge" => CmpOp::Ge,
                    "lt" => CmpOp::Lt,
                    _ => CmpOp::Le,
                };
                let (l, r) = pair(self)?;
                Expr::Cmp(c, l, r)
            }
            "add" | "sub" | "mul" | "div" | "mod" => {
                let a = match op {
                    "add" => ArithOp::Add,
                    "sub" => ArithOp::Sub,
                    "mul" => ArithOp::Mul,
                    "div" => ArithOp::Div,
                    _ => ArithOp::Mod,
                };
                let (l, r) = pair(self)?;
                Expr::Arith(a, l, r)
            }
            "in" => {
                let left = sub(self, "left")?;
                match v.get("right") {
                    Some(r)
                        if r.get("op").and_then(Value::as_str) == Some("literal")
                            && r.get("value")
                                .and_then(Value::as_array)
                                .is_some_and(|a| a.len() <= MAX_IN_VALUES) =>
                    {
                        let values = r
                            .get("value")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        Expr::In(left, values)
                    }
                    _ => {
                        return err(format!(
                            "`in` needs a literal array of at most {MAX_IN_VALUES} values as `right`"
                        ));
                    }
                }
            }
            "includes" => {
                let (l, r) = pair(self)?;
                Expr::Includes(l, r)
            }
            "like" | "ilike" => {
                let (l, r) = pair(self)?;
                if let Expr::Lit(Value::String(p)) = r.as_ref()
                    && p.chars().count() > MAX_PATTERN_CHARS
                {
                    return err(format!(
                        "a LIKE pattern is longer than {MAX_PATTERN_CHARS} characters"
                    ));
                }
                Expr::Like(l, r, op == "ilike")
            }
            "match" => {
                let (l, r) = pair(self)?;
                Expr::Match(l, r)
            }
            "if" => {
                let arms = v
                    .get("conds")
                    .and_then(Value::as_array)
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| ExprError("`if` needs a non-empty `conds` array".into()))?;
                let mut out = Vec::new();
                for arm in arms {
                    let cond = arm
                        .get("cond")
                        .ok_or_else(|| ExprError("each `if` arm needs `cond`".into()))?;
                    let then = arm
                        .get("then")
                        .ok_or_else(|| ExprError("each `if` arm needs `then`".into()))?;
                    out.push((self.build(cond, depth + 1)?, self.build(then, depth + 1)?));
                }
                let other = match v.get("else") {
                    None | Some(Value::Null) => None,
                    Some(e) => Some(Box::new(self.build(e, depth + 1)?)),
                };
                Expr::Case(out, other)
            }
            "interval" => {
                let n = v
                    .get("value")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| ExprError("`interval` needs an integer `value`".into()))?;
                let unit = v.get("unit").and_then(Value::as_str).unwrap_or("");
                let secs = Unit::parse(&unit.to_ascii_lowercase())
                    .and_then(Unit::seconds)
                    .ok_or_else(|| {
                        ExprError(format!(
                            "interval unit {unit:?} is not supported: use second, minute, \
                             hour, day or week"
                        ))
                    })?;
                Expr::Interval(
                    n.checked_mul(secs)
                        .ok_or_else(|| ExprError("the interval is too long".into()))?,
                )
            }
            "function" => self.function(v, depth)?,
            other => return err(format!("unsupported operator {other:?}")),
        })
    }

    fn function(&mut self, v: &Value, depth: usize) -> Result<Expr, ExprError> {
        let name = v
            .get("name")
            .and_then(|n| n.get("name"))
            .and_then(Value::as_array)
            .and_then(|a| match a.as_slice() {
                [Value::String(s)] => Some(s.to_ascii_lowercase()),
                _ => None,
            })
            .ok_or_else(|| {
                ExprError(
                    "a function needs a `name` like {\"op\":\"ident\",\"name\":[\"lower\"]}".into(),
                )
            })?;
        let raw_args = match v.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return err(format!("`{name}`: `args` must be an array")),
        };
        let distinct = v.get("distinct").and_then(Value::as_bool).unwrap_or(false);
        let agg = match name.as_str() {
            "count" if distinct => Some(AggKind::CountDistinct),
            "count" => Some(AggKind::Count),
            "sum" => Some(AggKind::Sum),
            "avg" => Some(AggKind::Avg),
            "min" => Some(AggKind::Min),
            "max" => Some(AggKind::Max),
            "percentile" => Some(AggKind::Percentile),
            _ => None,
        };
        if let Some(kind) = agg {
            if !self.aggregates {
                return err(format!(
                    "the aggregate `{name}` is allowed only in measures (SELECT with GROUP BY), \
                     HAVING and the sort of a grouped query"
                ));
            }
            // Aggregates never nest.
            self.aggregates = false;
            let args = raw_args
                .iter()
                .map(|a| self.build(a, depth + 1))
                .collect::<Result<Vec<_>, _>>();
            self.aggregates = true;
            let args = args?;
            let ok = match kind {
                AggKind::Count => args.len() == 1,
                AggKind::Percentile => {
                    args.len() == 2
                        && matches!(args.get(1), Some(Expr::Lit(Value::Number(p)))
                            if p.as_f64().is_some_and(|p| (0.0..=1.0).contains(&p)))
                }
                _ => args.len() == 1 && !matches!(args.first(), Some(Expr::Star)),
            };
            if !ok {
                return err(match kind {
                    AggKind::Percentile => {
                        "percentile takes a value and a literal fraction between 0 and 1".into()
                    }
                    _ => format!("`{name}` takes one argument"),
                });
            }
            return Ok(Expr::Agg(kind, args));
        }
        let args = raw_args
            .iter()
            .map(|a| self.build(a, depth + 1))
            .collect::<Result<Vec<_>, _>>()?;
        if args.iter().any(|a| matches!(a, Expr::Star)) {
            return err(format!("`*` is not an argument of `{name}`"));
        }
        let (func, arity): (Func, (usize, usize)) = match name.as_str() {
            "lower" => (Func::Lower, (1, 1)),
            "upper" => (Func::Upper, (1, 1)),
            "length" | "len" => (Func::Length, (1, 1)),
            "concat" => (Func::Concat, (1, 64)),
            "coalesce" => (Func::Coalesce, (1, 64)),
            "nullif" => (Func::NullIf, (2, 2)),
            "greatest" => (Func::Greatest, (1, 64)),
            "least" => (Func::Least, (1, 64)),
            "abs" => (Func::Abs, (1, 1)),
            "round" => (Func::Round, (1, 2)),
            "floor" => (Func::Floor, (1, 1)),
            "ceil" | "ceiling" => (Func::Ceil, (1, 1)),
            "json_extract" => (Func::JsonExtract, (2, 2)),
            "now" | "current_timestamp" => (Func::Now, (0, 0)),
            "current_date" => (Func::CurrentDate, (0, 0)),
            "date_trunc" => {
                match args.first() {
                    Some(Expr::Lit(Value::String(u)))
                        if Unit::parse(&u.to_ascii_lowercase()).is_some() => {}
                    _ => {
                        return err(
                            "date_trunc's first argument is a literal unit: 'second', 'minute', \
                             'hour', 'day', 'week', 'month' or 'year'",
                        );
                    }
                }
                (Func::DateTrunc, (2, 2))
            }
            other => match Unit::parse(other) {
                Some(u) if !other.ends_with('s') => (Func::Trunc(u), (1, 1)),
                _ => return err(format!("unknown function `{other}`")),
            },
        };
        if args.len() < arity.0 || args.len() > arity.1 {
            return err(format!(
                "`{name}` takes {} argument(s), not {}",
                if arity.0 == arity.1 {
                    arity.0.to_string()
                } else {
                    format!("{} to {}", arity.0, arity.1)
                },
                args.len()
            ));
        }
        Ok(Expr::Call(func, args))
    }
}

/// What an evaluation may need besides the row.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: OffsetDateTime,
}

/// Whether a value counts as true in a filter.
pub fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

fn num(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9e15 {
        // Integral and in range by the check above.
        json!(f as i64)
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// A value's text, for string functions and pattern matching: strings as they are, other
/// values as JSON.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Whether text looks like an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS...`).
pub fn timestamp_like(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20 && b.get(10) == Some(&b'T') && b.get(4) == Some(&b'-')
}

/// Compares two values of the same kind: numbers numerically, two timestamps as instants
/// (whatever their precision or offset), other text as text.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) if timestamp_like(x) && timestamp_like(y) => {
            match (parse_timestamp(x), parse_timestamp(y)) {
                (Some(p), Some(q)) => Some(p.cmp(&q)),
                _ => Some(x.cmp(y)),
            }
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) if timestamp_like(x) && timestamp_like(y) => {
            compare(a, b) == Some(Ordering::Equal)
        }
        _ => a == b,
    }
}

/// A total order for sorting and grouping: null, booleans, numbers, strings, arrays,
/// objects; within a kind, by value.
pub fn sort_cmp(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            a.to_string().cmp(&b.to_string())
        }
        _ => Ordering::Equal,
    })
}

/// The words of a text for `MATCH`: runs of letters and digits, lower-cased (keeping only
/// letters and digits: lower-casing `İ` adds a combining mark).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            if w.is_ascii() {
                return w.to_ascii_lowercase();
            }
            let mut lower = w.to_lowercase();
            lower.retain(char::is_alphanumeric);
            lower
        })
        .filter(|w| !w.is_empty())
}

/// Calls `f` with each word `MATCH` sees in a value: the words of every string in it (object
/// keys excluded) and, for a number, of its text. Search indexes hold exactly these words.
pub fn value_words(v: &Value, f: &mut impl FnMut(String)) {
    match v {
        Value::String(s) => words(s).for_each(&mut *f),
        Value::Array(a) => a.iter().for_each(|x| value_words(x, f)),
        Value::Object(m) => m.values().for_each(|x| value_words(x, f)),
        Value::Number(n) => words(&n.to_string()).for_each(f),
        _ => {}
    }
}

fn matches_words(haystack: &Value, query: &str) -> bool {
    let wanted: Vec<String> = words(query).collect();
    if wanted.is_empty() {
        return false;
    }
    let mut found = vec![false; wanted.len()];
    value_words(haystack, &mut |w| {
        for (q, f) in wanted.iter().zip(found.iter_mut()) {
            if *q == w {
                *f = true;
            }
        }
    });
    found.iter().all(|f| *f)
}

/// SQL `LIKE`: `%` any run, `_` one character, `\` escapes. Greedy segment matching:
/// at most (text × pattern) character steps.
pub fn like(text: &str, pattern: &str, fold_case: bool) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Ch(char),
    }
    let lower = |s: &str| {
        if fold_case {
            s.to_lowercase()
        } else {
            s.to_owned()
        }
    };
    let t: Vec<char> = lower(text).chars().collect();
    let mut pat = Vec::new();
    let mut chars = lower(pattern).chars().collect::<Vec<_>>().into_iter();
    while let Some(c) = chars.next() {
        pat.push(match c {
            '%' => P::Any,
            '_' => P::One,
            '\\' => P::Ch(chars.next().unwrap_or('\\')),
            c => P::Ch(c),
        });
    }
    // Segments between `%`; the first is anchored at the start, the last at the end.
    let segments: Vec<&[P]> = pat.split(|p| *p == P::Any).collect();
    let fits = |seg: &[P], at: usize| -> bool {
        seg.iter()
            .enumerate()
            .all(|(k, p)| match (p, t.get(at + k)) {
                (P::One, Some(_)) => true,
                (P::Ch(c), Some(x)) => c == x,
                _ => false,
            })
    };
    if segments.len() == 1 {
        let seg = segments.first().copied().unwrap_or(&[]);
        return seg.len() == t.len() && fits(seg, 0);
    }
    let first = segments.first().copied().unwrap_or(&[]);
    let last = segments.last().copied().unwrap_or(&[]);
    if first.len() + last.len() > t.len() || !fits(first, 0) {
        return false;
    }
    let end = t.len() - last.len();
    if !fits(last, end) {
        return false;
    }
    let mut at = first.len();
    for seg in segments
        .iter()
        .skip(1)
        .take(segments.len().saturating_sub(2))
    {
        let mut found = None;
        let mut i = at;
        while i + seg.len() <= end {
            if fits(seg, i) {
                found = Some(i);
                break;
            }
            i += 1;
        }
        match found {
            Some(i) => at = i + seg.len(),
            None => return false,
        }
    }
    true
}

fn truncate(t: OffsetDateTime, unit: Unit) -> Option<OffsetDateTime> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let day = t.replace_time(time::Time::MIDNIGHT);
    Some(match unit {
        Unit::Second => t.replace_nanosecond(0).ok()?,
        Unit::Minute => t.replace_nanosecond(0).ok()?.replace_second(0).ok()?,
        Unit::Hour => t
            .replace_nanosecond(0)
            .ok()?
            .replace_second(0)
            .ok()?
            .replace_minute(0)
            .ok()?,
        Unit::Day => day,
        Unit::Week => day - time::Duration::days(i64::from(t.weekday().number_days_from_monday())),
        Unit::Month => day.replace_day(1).ok()?,
        Unit::Year => day
            .replace_day(1)
            .ok()?
            .replace_month(time::Month::January)
            .ok()?,
    })
}

fn arith(op: ArithOp, a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                let r = match op {
                    ArithOp::Add => x.checked_add(y),
                    ArithOp::Sub => x.checked_sub(y),
                    ArithOp::Mul => x.checked_mul(y),
                    ArithOp::Div => None,
                    ArithOp::Mod => x.checked_rem(y),
                };
                if let Some(r) = r {
                    return json!(r);
                }
                if op == ArithOp::Mod {
                    return Value::Null;
                }
            }
            let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) else {
                return Value::Null;
            };
            let r = match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div if y == 0.0 => return Value::Null,
                ArithOp::Div => x / y,
                ArithOp::Mod if y == 0.0 => return Value::Null,
                ArithOp::Mod => x % y,
            };
            Number::from_f64(r).map_or(Value::Null, Value::Number)
        }
        _ => Value::Null,
    }
}

fn field<'a>(row: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut cur = row.get(first)?;
    for k in rest {
        cur = match cur {
            Value::Object(m) => m.get(k)?,
            Value::Array(a) => a.get(k.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

impl Expr {
    /// Evaluates the expression on a row. Aggregates evaluate to null here; grouped queries
    /// compute them with [`Accumulator`].
    pub fn eval(&self, row: &Map<String, Value>, cx: &Context) -> Value {
        match self {
            Expr::Lit(v) => v.clone(),
            Expr::Field(p) => field(row, p).cloned().unwrap_or(Value::Null),
            Expr::Star | Expr::Agg(..) => Value::Null,
            Expr::Interval(s) => json!(s),
            Expr::Not(e) => match e.eval(row, cx) {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Null,
            },
            Expr::Neg(e) => match e.eval(row, cx) {
                Value::Number(n) => n
                    .as_i64()
                    .and_then(i64::checked_neg)
                    .map(|i| json!(i))
                    .or_else(|| n.as_f64().map(|f| num(-f)))
                    .unwrap_or(Value::Null),
                _ => Value::Null,
            },
            Expr::And(cs) => {
                let mut unknown = false;
                for c in cs {
                    match c.eval(row, cx) {
                        Value::Bool(false) => return Value::Bool(false),
                        Value::Bool(true) => {}
                        _ => unknown = true,
                    }
                }
                if unknown {
                    Value::Null
                } else {
                    Value::Bool(true)
                }
            }
            Expr::Or(cs) => {
                let mut unknown = false;
                for c in cs {
                    match c.eval(row, cx) {
                        Value::Bool(true) => return Value::Bool(true),
                        Value::Bool(false) => {}
                        _ => unknown = true,
                    }
                }
                if unknown {
                    Value::Null
                } else {
                    Value::Bool(false)
                }
            }
            Expr::Cmp(op, a, b) => {
                let (a, b) = (a.eval(row, cx), b.eval(row, cx));
                if a.is_null() || b.is_null() {
                    return Value::Null;
                }
                Value::Bool(match op {
                    CmpOp::Eq => equal(&a, &b),
                    CmpOp::Ne => !equal(&a, &b),
                    CmpOp::Gt => compare(&a, &b) == Some(Ordering::Greater),
                    CmpOp::Ge => {
                        matches!(compare(&a, &b), Some(Ordering::Greater | Ordering::Equal))
                    }
                    CmpOp::Lt => compare(&a, &b) == Some(Ordering::Less),
                    CmpOp::Le => matches!(compare(&a, &b), Some(Ordering::Less | Ordering::Equal)),
                })
            }
            Expr::Arith(op, a, b) => {
                let (x, y) = (a.eval(row, cx), b.eval(row, cx));
                // Timestamp ± interval.
                if let (Value::String(t), true) = (&x, matches!(b.as_ref(), Expr::Interval(_)))
                    && let (Some(t), Some(s)) = (parse_timestamp(t), y.as_i64())
                {
                    let d = time::Duration::seconds(s);
                    return match op {
                        ArithOp::Add => t.checked_add(d),
                        ArithOp::Sub => t.checked_sub(d),
                        _ => None,
                    }
                    .map_or(Value::Null, |t| Value::String(format_timestamp(t)));
                }
                arith(*op, &x, &y)
            }
            Expr::IsNull(e, want_null) => Value::Bool(e.eval(row, cx).is_null() == *want_null),
            Expr::In(e, values) => {
                let v = e.eval(row, cx);
                if v.is_null() {
                    return Value::Null;
                }
                Value::Bool(values.iter().any(|x| equal(x, &v)))
            }
            Expr::Includes(h, n) => {
                let (h, n) = (h.eval(row, cx), n.eval(row, cx));
                if h.is_null() || n.is_null() {
                    return Value::Null;
                }
                Value::Bool(match (&h, &n) {
                    (Value::Array(a), n) => a.iter().any(|x| equal(x, n)),
                    (Value::Object(m), n) => m.values().any(|x| equal(x, n)),
                    (Value::String(s), Value::String(n)) => s.contains(n.as_str()),
                    _ => false,
                })
            }
            Expr::Like(t, p, fold) => {
                let (Some(t), Value::String(p)) = (text_of(&t.eval(row, cx)), p.eval(row, cx))
                else {
                    return Value::Null;
                };
                if p.chars().count() > MAX_PATTERN_CHARS {
                    return Value::Null;
                }
                Value::Bool(like(&t, &p, *fold))
            }
            Expr::Match(h, q) => {
                let h = h.eval(row, cx);
                let Value::String(q) = q.eval(row, cx) else {
                    return Value::Null;
                };
                if h.is_null() {
                    return Value::Bool(false);
                }
                Value::Bool(matches_words(&h, &q))
            }
            Expr::Case(arms, other) => {
                for (c, t) in arms {
                    if truthy(&c.eval(row, cx)) {
                        return t.eval(row, cx);
                    }
                }
                other.as_ref().map_or(Value::Null, |o| o.eval(row, cx))
            }
            Expr::Call(f, args) => call(*f, args, row, cx),
        }
    }
}

fn call(f: Func, args: &[Expr], row: &Map<String, Value>, cx: &Context) -> Value {
    let arg = |i: usize| args.get(i).map_or(Value::Null, |a| a.eval(row, cx));
    let number = |i: usize| arg(i).as_f64();
    let time_arg = |i: usize| match arg(i) {
        Value::String(s) => parse_timestamp(&s),
        _ => None,
    };
    match f {
        Func::Lower => text_of(&arg(0)).map_or(Value::Null, |s| Value::String(s.to_lowercase())),
        Func::Upper => text_of(&arg(0)).map_or(Value::Null, |s| Value::String(s.to_uppercase())),
        Func::Length => match arg(0) {
            Value::String(s) => json!(s.chars().count()),
            Value::Array(a) => json!(a.len()),
            Value::Object(m) => json!(m.len()),
            _ => Value::Null,
        },
        Func::Concat => {
            let mut out = String::new();
            for i in 0..args.len() {
                if let Some(s) = text_of(&arg(i)) {
                    out.push_str(&s);
                }
            }
            Value::String(out)
        }
        Func::Coalesce => args
            .iter()
            .map(|a| a.eval(row, cx))
            .find(|v| !v.is_null())
            .unwrap_or(Value::Null),
        Func::NullIf => {
            let (a, b) = (arg(0), arg(1));
            if equal(&a, &b) { Value::Null } else { a }
        }
        Func::Greatest | Func::Least => {
            let want = if f == Func::Greatest {
                Ordering::Greater
            } else {
                Ordering::Less
            };
            let mut best: Option<Value> = None;
            for a in args {
                let v = a.eval(row, cx);
                if v.is_null() {
                    continue;
                }
                best = match best {
                    Some(b) if compare(&v, &b) != Some(want) => Some(b),
                    _ => Some(v),
                };
            }
            best.unwrap_or(Value::Null)
        }
        Func::Abs => number(0).map_or(Value::Null, |x| num(x.abs())),
        Func::Floor => number(0).map_or(Value::Null, |x| num(x.floor())),
        Func::Ceil => number(0).map_or(Value::Null, |x| num(x.ceil())),
        Func::Round => {
            let Some(x) = number(0) else {
                return Value::Null;
            };
            let digits = number(1).unwrap_or(0.0).clamp(-15.0, 15.0) as i32;
            let scale = 10f64.powi(digits);
            num((x * scale).round() / scale)
        }
        Func::JsonExtract => {
            let Value::String(doc) = arg(0) else {
                return Value::Null;
            };
            let Value::String(path) = arg(1) else {
                return Value::Null;
            };
            let Ok(doc) = serde_json::from_str::<Value>(&doc) else {
                return Value::Null;
            };
            let path = path.trim_start_matches('$').trim_start_matches('.');
            let mut cur = &doc;
            for part in path.split('.').filter(|p| !p.is_empty()) {
                cur = match cur {
                    Value::Object(m) => match m.get(part) {
                        Some(v) => v,
                        None => return Value::Null,
                    },
                    Value::Array(a) => match part.parse::<usize>().ok().and_then(|i| a.get(i)) {
                        Some(v) => v,
                        None => return Value::Null,
                    },
                    _ => return Value::Null,
                };
            }
            cur.clone()
        }
        Func::Now => Value::String(format_timestamp(cx.now)),
        Func::CurrentDate => {
            truncate(cx.now, Unit::Day).map_or(Value::Null, |t| Value::String(format_timestamp(t)))
        }
        Func::DateTrunc => {
            let unit = match arg(0) {
                Value::String(u) => Unit::parse(&u.to_ascii_lowercase()),
                _ => None,
            };
            match (unit, time_arg(1)) {
                (Some(u), Some(t)) => {
                    truncate(t, u).map_or(Value::Null, |t| Value::String(format_timestamp(t)))
                }
                _ => Value::Null,
            }
        }
        Func::Trunc(u) => time_arg(0)
            .and_then(|t| truncate(t, u))
            .map_or(Value::Null, |t| Value::String(format_timestamp(t))),
    }
}

/// Most distinct values `count(DISTINCT ...)` and values `percentile` keep, across a query.
pub const MAX_AGGREGATE_VALUES: usize = 1_000_000;

/// The running state of one aggregate in one group.
#[derive(Debug, Clone)]
pub enum Accumulator {
    Count(u64),
    Distinct(std::collections::HashSet<String>),
    Sum { sum: f64, ints: bool, seen: bool },
    Avg { sum: f64, n: u64 },
    Extreme(Option<Value>, bool),
    Values(Vec<f64>, f64),
}

impl Accumulator {
    pub fn new(e: &Expr) -> Accumulator {
        match e {
            Expr::Agg(AggKind::Count, _) => Accumulator::Count(0),
            Expr::Agg(AggKind::CountDistinct, _) => Accumulator::Distinct(Default::default()),
            Expr::Agg(AggKind::Sum, _) => Accumulator::Sum {
                sum: 0.0,
                ints: true,
                seen: false,
            },
            Expr::Agg(AggKind::Avg, _) => Accumulator::Avg { sum: 0.0, n: 0 },
            Expr::Agg(AggKind::Max, _) => Accumulator::Extreme(None, true),
            Expr::Agg(AggKind::Min, _) => Accumulator::Extreme(None, false),
            Expr::Agg(AggKind::Percentile, args) => Accumulator::Values(
                Vec::new(),
                args.get(1)
                    .and_then(|p| match p {
                        Expr::Lit(v) => v.as_f64(),
                        _ => None,
                    })
                    .unwrap_or(0.5),
            ),
            // Not an aggregate: counted as `count(*)` would never be asked for.
            _ => Accumulator::Count(0),
        }
    }

    /// Adds a row; returns how many values this added to what the query keeps (distinct
    /// values and percentile samples), for the caller's budget.
    pub fn add(&mut self, e: &Expr, row: &Map<String, Value>, cx: &Context) -> usize {
        let Expr::Agg(_, args) = e else {
            return 0;
        };
        let v = match args.first() {
            Some(Expr::Star) | None => Value::Bool(true),
            Some(a) => a.eval(row, cx),
        };
        if v.is_null() {
            return 0;
        }
        match self {
            Accumulator::Count(n) => *n += 1,
            Accumulator::Distinct(set) => {
                return usize::from(set.insert(v.to_string()));
            }
            Accumulator::Sum { sum, ints, seen } => {
                if let Some(x) = v.as_f64() {
                    *sum += x;
                    *ints &= v.is_i64() || v.is_u64();
                    *seen = true;
                }
            }
            Accumulator::Avg { sum, n } => {
                if let Some(x) = v.as_f64() {
                    *sum += x;
                    *n += 1;
                }
            }
            Accumulator::Extreme(best, max) => {
                let want = if *max {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
                let replace = match best {
                    None => true,
                    Some(b) => compare(&v, b) == Some(want),
                };
                if replace {
                    *best = Some(v);
                }
            }
            Accumulator::Values(values, _) => {
                if let Some(x) = v.as_f64() {
                    values.push(x);
                    return 1;
                }
            }
        }
        0
    }

    pub fn finish(self) -> Value {
        match self {
            Accumulator::Count(n) => json!(n),
            Accumulator::Distinct(s) => json!(s.len()),
            Accumulator::Sum { sum, ints, seen } => {
                if !seen {
                    Value::Null
                } else if ints {
                    num(sum)
                } else {
                    Number::from_f64(sum).map_or(Value::Null, Value::Number)
                }
            }
            Accumulator::Avg { sum, n } => {
                if n == 0 {
                    Value::Null
                } else {
                    Number::from_f64(sum / n as f64).map_or(Value::Null, Value::Number)
                }
            }
            Accumulator::Extreme(best, _) => best.unwrap_or(Value::Null),
            Accumulator::Values(mut v, p) => {
                if v.is_empty() {
                    return Value::Null;
                }
                v.sort_by(f64::total_cmp);
                // Linear interpolation between the closest ranks.
                let pos = p * (v.len() - 1) as f64;
                let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
                let (a, b) = (
                    v.get(lo).copied().unwrap_or(0.0),
                    v.get(hi).copied().unwrap_or(0.0),
                );
                Number::from_f64(a + (b - a) * (pos - lo as f64)).map_or(Value::Null, Value::Number)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context {
        Context {
            now: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        }
    }

    fn eval(e: Value, row: Value) -> Value {
        Expr::from_json(&e, false)
            .unwrap()
            .eval(row.as_object().unwrap(), &cx())
    }

    fn ident(p: &[&str]) -> Value {
        json!({"op": "ident", "name": p})
    }

    fn lit(v: Value) -> Value {
        json!({"op": "literal", "value": v})
    }

    #[test]
    fn like_matches_sql_patterns() {
        for (t, p, want) in [
            ("hello world", "hello%", true),
            ("hello world", "%world", true),
            ("hello world", "%lo w%", true),
            ("hello world", "h_llo%", true),
            ("hello world", "hello", false),
            ("hello", "hello", true),
            ("", "%", true),
            ("abc", "a%b%c", true),
            ("abc", "a%c%b", false),
            ("aaa", "%aa%aa%", false),
            ("50%", "50\\%", true),
            ("500", "50\\%", false),
            ("ab", "a__", false),
        ] {
            assert_eq!(like(t, p, false), want, "{t:?} LIKE {p:?}");
        }
        assert!(like("Hello", "hello", true));
        assert!(!like("Hello", "hello", false));
        // A long text and a pattern of many `%a`: bounded by text × pattern steps.
        let long = "a".repeat(200_000);
        let pattern = "%a".repeat(500) + "b";
        let start = std::time::Instant::now();
        assert!(!like(&long, &pattern, false));
        assert!(start.elapsed().as_secs() < 10);
    }

    #[test]
    fn three_valued_logic() {
        let missing = ident(&["metadata", "nope"]);
        let row = json!({"metadata": {"n": 2}});
        let eq = json!({"op": "eq", "left": missing, "right": lit(json!(1))});
        assert_eq!(eval(eq.clone(), row.clone()), Value::Null);
        assert_eq!(
            eval(json!({"op": "not", "expr": eq.clone()}), row.clone()),
            Value::Null
        );
        let t = json!({"op": "eq", "left": ident(&["metadata", "n"]), "right": lit(json!(2.0))});
        assert_eq!(
            eval(
                json!({"op": "or", "children": [eq.clone(), t.clone()]}),
                row.clone()
            ),
            json!(true)
        );
        assert_eq!(
            eval(json!({"op": "and", "children": [eq, t]}), row),
            Value::Null
        );
    }

    #[test]
    fn functions_and_arithmetic() {
        let row = json!({"a": 7, "b": 2, "s": "MiXed", "t": "2026-03-04T05:06:07.123456Z",
                         "m": {"x": [1, 2]}, "j": "{\"k\": {\"v\": 3}}"});
        let f = |name: &str, args: Vec<Value>| json!({"op": "function", "name": {"op": "ident", "name": [name]}, "args": args});
        let cases = [
            (
                json!({"op": "add", "left": ident(&["a"]), "right": ident(&["b"])}),
                json!(9),
            ),
            (
                json!({"op": "div", "left": ident(&["a"]), "right": ident(&["b"])}),
                json!(3.5),
            ),
            (
                json!({"op": "div", "left": ident(&["a"]), "right": lit(json!(0))}),
                Value::Null,
            ),
            (
                json!({"op": "mod", "left": ident(&["a"]), "right": ident(&["b"])}),
                json!(1),
            ),
            (f("lower", vec![ident(&["s"])]), json!("mixed")),
            (f("length", vec![ident(&["m", "x"])]), json!(2)),
            (
                f("coalesce", vec![ident(&["zz"]), lit(json!("d"))]),
                json!("d"),
            ),
            (
                f("hour", vec![ident(&["t"])]),
                json!("2026-03-04T05:00:00.000000Z"),
            ),
            (
                f("date_trunc", vec![lit(json!("month")), ident(&["t"])]),
                json!("2026-03-01T00:00:00.000000Z"),
            ),
            (
                f("date_trunc", vec![lit(json!("week")), ident(&["t"])]),
                json!("2026-03-02T00:00:00.000000Z"),
            ),
            (
                f("json_extract", vec![ident(&["j"]), lit(json!("$.k.v"))]),
                json!(3),
            ),
            (
                json!({"op": "sub", "left": f("now", vec![]),
                       "right": {"op": "interval", "value": 1, "unit": "day"}}),
                json!("2023-11-13T22:13:20.000000Z"),
            ),
            (
                json!({"op": "if", "conds": [{"cond": {"op": "gt", "left": ident(&["a"]), "right": lit(json!(5))}, "then": lit(json!("big"))}], "else": lit(json!("small"))}),
                json!("big"),
            ),
            (
                f("round", vec![lit(json!(2.345)), lit(json!(2))]),
                json!(2.35),
            ),
            (
                json!({"op": "match", "left": ident(&["s"]), "right": lit(json!("mixed"))}),
                json!(true),
            ),
        ];
        for (e, want) in cases {
            assert_eq!(eval(e.clone(), row.clone()), want, "{e}");
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let f = |name: &str, args: Vec<Value>| json!({"op": "function", "name": {"op": "ident", "name": [name]}, "args": args});
        for (e, aggregates, says) in [
            (
                f("count", vec![json!({"op": "star"})]),
                false,
                "allowed only in measures",
            ),
            (f("nope", vec![]), true, "unknown function `nope`"),
            (f("lower", vec![]), false, "takes 1 argument"),
            (
                f("sum", vec![f("count", vec![json!({"op": "star"})])]),
                true,
                "allowed only",
            ),
            (
                f("date_trunc", vec![lit(json!("fortnight")), lit(json!("x"))]),
                false,
                "literal unit",
            ),
            (
                json!({"op": "interval", "value": 1, "unit": "month"}),
                false,
                "not supported",
            ),
            (json!({"op": "regex"}), false, "unsupported operator"),
        ] {
            let got = Expr::from_json(&e, aggregates).unwrap_err().0;
            assert!(got.contains(says), "{e}: {got}");
        }
        let mut deep = lit(json!(1));
        for _ in 0..100 {
            deep = json!({"op": "neg", "expr": deep});
        }
        assert!(
            Expr::from_json(&deep, false)
                .unwrap_err()
                .0
                .contains("nests deeper")
        );
    }

    #[test]
    fn aggregates() {
        let rows: Vec<Map<String, Value>> = (1..=5)
            .map(|i| json!({"x": i, "k": i % 2}).as_object().unwrap().clone())
            .collect();
        let f = |name: &str, args: Vec<Value>, distinct: bool| {
            Expr::from_json(
                &json!({"op": "function", "name": {"op": "ident", "name": [name]}, "args": args, "distinct": distinct}),
                true,
            )
            .unwrap()
        };
        for (e, want) in [
            (f("count", vec![json!({"op": "star"})], false), json!(5)),
            (f("count", vec![ident(&["k"])], true), json!(2)),
            (f("sum", vec![ident(&["x"])], false), json!(15)),
            (f("avg", vec![ident(&["x"])], false), json!(3.0)),
            (f("max", vec![ident(&["x"])], false), json!(5)),
            (f("min", vec![ident(&["x"])], false), json!(1)),
            (
                f("percentile", vec![ident(&["x"]), lit(json!(0.5))], false),
                json!(3.0),
            ),
            (f("sum", vec![ident(&["nope"])], false), Value::Null),
        ] {
            let mut acc = Accumulator::new(&e);
            for r in &rows {
                acc.add(&e, r, &cx());
            }
            assert_eq!(acc.finish(), want, "{e:?}");
        }
    }
}
