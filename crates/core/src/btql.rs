//! Text queries: BTQL's pipe syntax and Braintrust's SQL syntax, parsed into the structured
//! JSON form the SDKs send, so that every front end is answered by the same engine.
//!
//! - BTQL: `select: ... | from: project_logs('<id>'[, '<id>'...]) [spans|traces|summary] |
//!   filter: ... | dimensions: ... | measures: ... | sort: ... | limit: n | cursor: '...'`.
//! - SQL: `SELECT ... FROM project_logs('<id>', shape => 'traces') WHERE ... GROUP BY ...
//!   HAVING ... ORDER BY ... LIMIT n OFFSET '<cursor>'`. A select list with aggregates, or a
//!   `GROUP BY`, becomes `dimensions` (the `GROUP BY` items, by expression, alias or
//!   position) and `measures` (the aggregates).
//! - Expressions: comparisons, `IS [NOT] NULL`, `[NOT] IN`, `[NOT] BETWEEN`, `[NOT] LIKE`,
//!   `[NOT] ILIKE`, `[NOT] MATCH`, `[NOT] INCLUDES`/`CONTAINS`, `AND`/`OR`/`NOT`, `+ - * / %`,
//!   unary minus, `CASE`, `INTERVAL n unit`, functions ([`qexpr::FUNCTIONS`]) including
//!   `count(*)` and `count(DISTINCT x)`, field paths (`metadata.user_id`, quoted parts with
//!   `` `...` ``, or `"..."` next to a `.`) and literals (strings in `'...'`, or in `"..."`
//!   standing alone as Braintrust's filters write them; numbers, `true`, `false`, `null`).
//!
//! Anything else is refused with an error that names it and where it is, never skipped.
//! Which clauses may hold aggregates, and what a function accepts, is checked again when the
//! engine builds the query ([`qexpr::Expr::from_json`]).
//!
//! Guarantees: parsing is linear in the text, never recurses deeper than [`MAX_DEPTH`], and
//! never panics (a property test feeds it a million generated inputs); an error names the
//! line and column (1-based, in characters) and what was expected.

use crate::qexpr;
use serde_json::{Map, Value, json};

/// Deepest nesting of parentheses and `NOT`.
pub const MAX_DEPTH: usize = 32;
/// Most values an `IN` list may hold.
pub const MAX_IN_VALUES: usize = 1_000;
/// Longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    /// `` `...` ``: always a name.
    Quoted(String),
    /// `"..."`: a name inside a field path (`metadata."user id"`), else a string, as
    /// Braintrust's filters write them (`metadata.model = "gpt-4"`).
    DoubleQuoted(String),
    Str(String),
    Num(Value),
    Sym(&'static str),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Quoted(w) => format!("`{w}`"),
            Tok::DoubleQuoted(w) => format!("`\"{w}\"`"),
            Tok::Str(_) => "a string".into(),
            Tok::Num(n) => format!("`{n}`"),
            Tok::Sym(s) => format!("`{s}`"),
            Tok::End => "the end of the query".into(),
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self, Tok::Word(x) if x.eq_ignore_ascii_case(w))
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

const SYMBOLS: [&str; 20] = [
    "<=", ">=", "!=", "<>", "==", "=>", "=", "<", ">", "(", ")", ",", ".", ":", "|", "*", "+", "-",
    "/", "%",
];

/// A position in the text being lexed.
struct Scan {
    chars: Vec<char>,
    i: usize,
    line: usize,
    column: usize,
}

impl Scan {
    fn at(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn bump(&mut self) {
        if self.at(0) == Some('\n') {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        self.i += 1;
    }

    fn text(&self, from: usize) -> String {
        self.chars
            .get(from..self.i)
            .unwrap_or_default()
            .iter()
            .collect()
    }
}

fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let mut s = Scan {
        chars: src.chars().collect(),
        i: 0,
        line: 1,
        column: 1,
    };
    let mut out = Vec::new();
    let err = |line, column, message: String| ParseError {
        line,
        column,
        message,
    };
    while let Some(c) = s.at(0) {
        let (line, column, start) = (s.line, s.column, s.i);
        let tok = if c.is_whitespace() {
            s.bump();
            continue;
        } else if c == '-' && s.at(1) == Some('-') {
            while s.at(0).is_some_and(|c| c != '\n') {
                s.bump();
            }
            continue;
        } else if c.is_ascii_alphabetic() || c == '_' {
            while s
                .at(0)
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                s.bump();
            }
            Tok::Word(s.text(start))
        } else if c.is_ascii_digit() {
            s.bump();
            while s
                .at(0)
                .is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E'))
            {
                s.bump();
            }
            let text = s.text(start);
            Tok::Num(if let Ok(n) = text.parse::<i64>() {
                json!(n)
            } else {
                text.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| err(line, column, format!("`{text}` is not a number")))?
            })
        } else if matches!(c, '\'' | '"' | '`') {
            // Strings ('...') and quoted names ("..." or `...`); the quote doubled is itself.
            s.bump();
            let mut text = String::new();
            loop {
                match s.at(0) {
                    None => return Err(err(line, column, format!("this {c} is never closed"))),
                    Some(q) if q == c && s.at(1) == Some(c) => {
                        text.push(c);
                        s.bump();
                        s.bump();
                    }
                    Some(q) if q == c => {
                        s.bump();
                        break;
                    }
                    Some('\0') => {
                        return Err(err(s.line, s.column, "NUL is not allowed".into()));
                    }
                    Some(other) => {
                        text.push(other);
                        s.bump();
                    }
                }
            }
            match c {
                '\'' => Tok::Str(text),
                '"' => Tok::DoubleQuoted(text),
                _ => Tok::Quoted(text),
            }
        } else {
            let next: String = [Some(c), s.at(1)].into_iter().flatten().collect();
            let Some(sym) = SYMBOLS.iter().find(|x| next.starts_with(**x)) else {
                return Err(err(line, column, format!("unexpected character {c:?}")));
            };
            for _ in 0..sym.chars().count() {
                s.bump();
            }
            Tok::Sym(sym)
        };
        out.push(Token { tok, line, column });
    }
    out.push(Token {
        tok: Tok::End,
        line: s.line,
        column: s.column,
    });
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    at: usize,
    /// Expression nodes produced so far, against [`qexpr::MAX_NODES`].
    nodes: usize,
}

/// Words that end an expression or a select item, so that `WHERE a = 1 LIMIT 5` stops
/// before `LIMIT` and `SELECT a FROM` does not read `FROM` as an alias.
const RESERVED: [&str; 24] = [
    "where", "limit", "offset", "order", "group", "having", "union", "from", "as", "asc", "desc",
    "and", "or", "not", "by", "is", "in", "like", "ilike", "match", "between", "when", "then",
    "end",
];

impl Parser {
    fn peek(&self) -> &Token {
        static END: Token = Token {
            tok: Tok::End,
            line: 0,
            column: 0,
        };
        self.toks.get(self.at).or(self.toks.last()).unwrap_or(&END)
    }

    fn peek_at(&self, k: usize) -> &Tok {
        self.toks.get(self.at + k).map_or(&Tok::End, |t| &t.tok)
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.at < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        let t = self.peek();
        Err(ParseError {
            line: t.line,
            column: t.column,
            message: message.into(),
        })
    }

    fn expected<T>(&self, what: &str) -> Result<T, ParseError> {
        let found = self.peek().tok.describe();
        self.fail(format!("expected {what}, found {found}"))
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if self.peek().tok == Tok::Sym(sym_of(s)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), ParseError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            self.expected(&format!("`{s}`"))
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek().tok.is_word(w) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<(), ParseError> {
        if self.eat_word(w) {
            Ok(())
        } else {
            self.expected(&format!("`{w}`"))
        }
    }

    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek().tok.clone() {
            Tok::Str(s) => {
                self.at += 1;
                Ok(s)
            }
            _ => self.expected(what),
        }
    }

    fn limit(&mut self) -> Result<Value, ParseError> {
        match self.peek().tok.clone() {
            Tok::Num(Value::Number(n)) if n.as_u64().is_some() => {
                self.at += 1;
                Ok(Value::Number(n))
            }
            _ => self.expected("a whole number"),
        }
    }

    /// Counts an expression node against the complexity cap.
    fn node(&mut self) -> Result<(), ParseError> {
        self.nodes += 1;
        if self.nodes > qexpr::MAX_NODES {
            return self.fail(format!(
                "the query has more than {} expression nodes",
                qexpr::MAX_NODES
            ));
        }
        Ok(())
    }

    /// `*`, or a list of `expr [AS alias]`.
    fn select_list(&mut self) -> Result<Value, ParseError> {
        if self.eat_sym("*") {
            return Ok(json!([{"op": "star"}]));
        }
        self.aliased_list()
    }

    /// `expr [AS alias], ...` as `[{"alias", "expr"}]`.
    fn aliased_list(&mut self) -> Result<Value, ParseError> {
        let mut items = Vec::new();
        loop {
            let expr = self.expr(0)?;
            let alias = if self.eat_word("as") {
                match self.next().tok {
                    Tok::Word(w) | Tok::Quoted(w) | Tok::DoubleQuoted(w) | Tok::Str(w) => w,
                    _ => {
                        self.at = self.at.saturating_sub(1);
                        return self.expected("an alias");
                    }
                }
            } else {
                match self.peek().tok.clone() {
                    Tok::Word(w) if !RESERVED.contains(&w.to_ascii_lowercase().as_str()) => {
                        self.at += 1;
                        w
                    }
                    Tok::Quoted(w) | Tok::DoubleQuoted(w) => {
                        self.at += 1;
                        w
                    }
                    _ => default_alias(&expr, items.len()),
                }
            };
            items.push(json!({"alias": alias, "expr": expr}));
            if !self.eat_sym(",") {
                return Ok(Value::Array(items));
            }
        }
    }

    /// `expr [ASC|DESC], ...` as `[{"expr", "dir"}]`.
    fn sort_list(&mut self) -> Result<Value, ParseError> {
        let mut items = Vec::new();
        loop {
            let expr = self.expr(0)?;
            let dir = if self.eat_word("desc") {
                "desc"
            } else {
                self.eat_word("asc");
                "asc"
            };
            items.push(json!({"expr": expr, "dir": dir}));
            if !self.eat_sym(",") {
                return Ok(Value::Array(items));
            }
        }
    }

    /// `dataset('<id>')`, `project_logs('<id>', '<id>') traces` (BTQL) or
    /// `project_logs('<id>', shape => 'summary')` (SQL).
    fn source(&mut self) -> Result<Value, ParseError> {
        let name = match self.peek().tok.clone() {
            Tok::Word(w) => w.to_ascii_lowercase(),
            _ => return self.expected("a source such as project_logs('<id>')"),
        };
        if !matches!(
            name.as_str(),
            "project_logs" | "experiment" | "dataset" | "project_prompts"
        ) {
            return self.fail(format!(
                "unknown source `{name}`: use project_logs, experiment, dataset or project_prompts"
            ));
        }
        self.at += 1;
        self.expect_sym("(")?;
        let mut ids =
            vec![json!({"op": "literal", "value": self.string("the object's id as a string")?})];
        let mut shape = None;
        while self.eat_sym(",") {
            if self.peek().tok.is_word("shape") {
                self.at += 1;
                self.expect_sym("=>")?;
                shape = Some(self.string("a shape: 'spans', 'traces' or 'summary'")?);
            } else if let Tok::Str(id) = self.peek().tok.clone() {
                if ids.len() >= MAX_SOURCE_IDS {
                    return self.fail(format!("a source takes at most {MAX_SOURCE_IDS} ids"));
                }
                self.at += 1;
                ids.push(json!({"op": "literal", "value": id}));
            } else {
                return self.expected("another id or `shape => '...'`");
            }
        }
        self.expect_sym(")")?;
        if let Tok::Word(w) = self.peek().tok.clone()
            && matches!(
                w.to_ascii_lowercase().as_str(),
                "spans" | "traces" | "summary"
            )
        {
            self.at += 1;
            shape = Some(w.to_ascii_lowercase());
        }
        let mut from =
            json!({"op": "function", "name": {"op": "ident", "name": [name]}, "args": ids});
        match shape.as_deref() {
            None | Some("spans") => {}
            Some(s @ ("traces" | "summary")) => {
                if let Some(o) = from.as_object_mut() {
                    o.insert("shape".into(), json!(s));
                }
            }
            Some(other) => {
                return self.fail(format!(
                    "unknown shape `{other}`: use spans, traces or summary"
                ));
            }
        }
        Ok(from)
    }

    fn expr(&mut self, depth: usize) -> Result<Value, ParseError> {
        let mut children = vec![self.and(depth)?];
        while self.eat_word("or") {
            children.push(self.and(depth)?);
        }
        Ok(fold("or", children))
    }

    fn and(&mut self, depth: usize) -> Result<Value, ParseError> {
        let mut children = vec![self.not(depth)?];
        while self.eat_word("and") {
            children.push(self.not(depth)?);
        }
        Ok(fold("and", children))
    }

    fn not(&mut self, depth: usize) -> Result<Value, ParseError> {
        if depth >= MAX_DEPTH {
            return self.fail(format!("the query nests deeper than {MAX_DEPTH}"));
        }
        if self.eat_word("not") {
            self.node()?;
            return Ok(json!({"op": "not", "expr": self.not(depth + 1)?}));
        }
        self.predicate(depth)
    }

    /// A value, then at most one comparison, `IS [NOT] NULL`, `[NOT] IN`, `[NOT] LIKE`,
    /// `[NOT] ILIKE`, `[NOT] MATCH`, `[NOT] INCLUDES`, `[NOT] BETWEEN`.
    fn predicate(&mut self, depth: usize) -> Result<Value, ParseError> {
        let left = self.additive(depth)?;
        if self.eat_word("is") {
            self.node()?;
            let negated = self.eat_word("not");
            self.expect_word("null")?;
            let op = if negated { "isnotnull" } else { "isnull" };
            return Ok(json!({"op": op, "expr": left}));
        }
        const WORD_OPS: [&str; 7] = [
            "in", "includes", "contains", "like", "ilike", "match", "between",
        ];
        let negated =
            self.peek().tok.is_word("not") && WORD_OPS.iter().any(|w| self.peek_at(1).is_word(w));
        if negated {
            self.at += 1;
        }
        let wrap = |v: Value| {
            if negated {
                json!({"op": "not", "expr": v})
            } else {
                v
            }
        };
        if self.eat_word("in") {
            self.node()?;
            self.expect_sym("(")?;
            let mut values = Vec::new();
            loop {
                match self.additive(depth + 1)? {
                    Value::Object(o) if o.get("op") == Some(&json!("literal")) => {
                        values.push(o.get("value").cloned().unwrap_or(Value::Null));
                    }
                    _ => return self.fail("IN lists only literals"),
                }
                if values.len() > MAX_IN_VALUES {
                    return self.fail(format!("IN lists at most {MAX_IN_VALUES} values"));
                }
                if !self.eat_sym(",") {
                    break;
                }
            }
            self.expect_sym(")")?;
            return Ok(wrap(json!({"op": "in", "left": left,
                                  "right": {"op": "literal", "value": values}})));
        }
        if self.eat_word("between") {
            self.node()?;
            let low = self.additive(depth + 1)?;
            self.expect_word("and")?;
            let high = self.additive(depth + 1)?;
            return Ok(wrap(json!({"op": "and", "children": [
                {"op": "ge", "left": left, "right": low},
                {"op": "le", "left": left, "right": high}]})));
        }
        for (word, op) in [
            ("includes", "includes"),
            ("contains", "includes"),
            ("like", "like"),
            ("ilike", "ilike"),
            ("match", "match"),
        ] {
            if self.eat_word(word) {
                self.node()?;
                let right = self.additive(depth + 1)?;
                return Ok(wrap(json!({"op": op, "left": left, "right": right})));
            }
        }
        if negated {
            return self.expected("IN, LIKE, ILIKE, MATCH, INCLUDES or BETWEEN after NOT");
        }
        let op = match &self.peek().tok {
            Tok::Sym("=" | "==") => "eq",
            Tok::Sym("!=" | "<>") => "ne",
            Tok::Sym("<") => "lt",
            Tok::Sym("<=") => "le",
            Tok::Sym(">") => "gt",
            Tok::Sym(">=") => "ge",
            _ => return Ok(left),
        };
        self.at += 1;
        self.node()?;
        let right = self.additive(depth + 1)?;
        Ok(json!({"op": op, "left": left, "right": right}))
    }

    fn additive(&mut self, depth: usize) -> Result<Value, ParseError> {
        let mut left = self.multiplicative(depth)?;
        loop {
            let op = match self.peek().tok {
                Tok::Sym("+") => "add",
                Tok::Sym("-") => "sub",
                _ => return Ok(left),
            };
            self.at += 1;
            self.node()?;
            let right = self.multiplicative(depth)?;
            left = json!({"op": op, "left": left, "right": right});
        }
    }

    fn multiplicative(&mut self, depth: usize) -> Result<Value, ParseError> {
        let mut left = self.unary(depth)?;
        loop {
            let op = match self.peek().tok {
                Tok::Sym("*") => "mul",
                Tok::Sym("/") => "div",
                Tok::Sym("%") => "mod",
                _ => return Ok(left),
            };
            self.at += 1;
            self.node()?;
            let right = self.unary(depth)?;
            left = json!({"op": op, "left": left, "right": right});
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Value, ParseError> {
        if depth >= MAX_DEPTH {
            return self.fail(format!("the query nests deeper than {MAX_DEPTH}"));
        }
        if self.eat_sym("-") {
            self.node()?;
            // A negative number stays a literal.
            if let Tok::Num(Value::Number(n)) = self.peek().tok.clone() {
                self.at += 1;
                let neg = n
                    .as_i64()
                    .and_then(i64::checked_neg)
                    .map(|i| json!(i))
                    .or_else(|| {
                        n.as_f64()
                            .and_then(|f| serde_json::Number::from_f64(-f))
                            .map(Value::Number)
                    })
                    .unwrap_or(Value::Null);
                return Ok(json!({"op": "literal", "value": neg}));
            }
            return Ok(json!({"op": "neg", "expr": self.unary(depth + 1)?}));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.node()?;
        let t = self.peek().tok.clone();
        match t {
            Tok::Sym("(") => {
                self.at += 1;
                let inner = self.expr(depth + 1)?;
                self.expect_sym(")")?;
                Ok(inner)
            }
            Tok::Str(s) => {
                self.at += 1;
                Ok(json!({"op": "literal", "value": s}))
            }
            Tok::Num(n) => {
                self.at += 1;
                Ok(json!({"op": "literal", "value": n}))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("true") || w.eq_ignore_ascii_case("false") => {
                self.at += 1;
                Ok(json!({"op": "literal", "value": w.eq_ignore_ascii_case("true")}))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("null") => {
                self.at += 1;
                Ok(json!({"op": "literal", "value": null}))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("case") => {
                self.at += 1;
                self.case(depth + 1)
            }
            Tok::Word(w)
                if w.eq_ignore_ascii_case("interval")
                    && matches!(self.peek_at(1), Tok::Num(_) | Tok::Str(_)) =>
            {
                self.at += 1;
                self.interval()
            }
            Tok::Word(w)
                if (w.eq_ignore_ascii_case("current_date")
                    || w.eq_ignore_ascii_case("current_timestamp"))
                    && self.peek_at(1) != &Tok::Sym("(") =>
            {
                self.at += 1;
                Ok(function(&w.to_ascii_lowercase(), Vec::new()))
            }
            Tok::DoubleQuoted(s) if self.peek_at(1) != &Tok::Sym(".") => {
                self.at += 1;
                Ok(json!({"op": "literal", "value": s}))
            }
            Tok::Word(w) if self.peek_at(1) == &Tok::Sym("(") => {
                let name = w.to_ascii_lowercase();
                if !qexpr::FUNCTIONS.contains(&name.as_str()) {
                    return self.fail(format!("unknown function `{w}`"));
                }
                self.at += 2;
                self.call(name, depth + 1)
            }
            Tok::Word(_) | Tok::Quoted(_) | Tok::DoubleQuoted(_) => {
                let mut path = Vec::new();
                loop {
                    match self.next().tok {
                        Tok::Word(w) | Tok::Quoted(w) | Tok::DoubleQuoted(w) => path.push(w),
                        _ => {
                            self.at = self.at.saturating_sub(1);
                            return self.expected("a field name");
                        }
                    }
                    if !self.eat_sym(".") {
                        break;
                    }
                }
                Ok(json!({"op": "ident", "name": path}))
            }
            _ => self.expected("a field or a literal"),
        }
    }

    /// After `name(`: the arguments, `*` for `count(*)`, `DISTINCT` for `count(DISTINCT x)`.
    fn call(&mut self, name: String, depth: usize) -> Result<Value, ParseError> {
        let distinct = self.eat_word("distinct");
        let mut args = Vec::new();
        if self.eat_sym("*") {
            args.push(json!({"op": "star"}));
        } else if self.peek().tok != Tok::Sym(")") {
            loop {
                args.push(self.expr(depth)?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        self.expect_sym(")")?;
        let mut f = function(&name, args);
        if distinct && let Some(o) = f.as_object_mut() {
            o.insert("distinct".into(), json!(true));
        }
        Ok(f)
    }

    /// After `CASE`: `[x] WHEN c THEN v ... [ELSE e] END`.
    fn case(&mut self, depth: usize) -> Result<Value, ParseError> {
        let subject = if self.peek().tok.is_word("when") {
            None
        } else {
            Some(self.expr(depth)?)
        };
        let mut conds = Vec::new();
        while self.eat_word("when") {
            let mut cond = self.expr(depth)?;
            if let Some(s) = &subject {
                cond = json!({"op": "eq", "left": s, "right": cond});
            }
            self.expect_word("then")?;
            let then = self.expr(depth)?;
            conds.push(json!({"cond": cond, "then": then}));
        }
        if conds.is_empty() {
            return self.expected("`WHEN`");
        }
        let other = if self.eat_word("else") {
            self.expr(depth)?
        } else {
            Value::Null
        };
        self.expect_word("end")?;
        Ok(json!({"op": "if", "conds": conds, "else": other}))
    }

    /// After `INTERVAL`: `1 DAY`, `'1 day'` or `'1' DAY`.
    fn interval(&mut self) -> Result<Value, ParseError> {
        let (value, unit) = match self.next().tok {
            Tok::Num(n) => (n.as_i64(), None),
            Tok::Str(s) => {
                let mut parts = s.split_whitespace();
                let n = parts.next().and_then(|n| n.parse::<i64>().ok());
                (n, parts.next().map(str::to_owned))
            }
            _ => (None, None),
        };
        let Some(value) = value else {
            self.at = self.at.saturating_sub(1);
            return self.expected("a whole number of units, as in INTERVAL 1 DAY");
        };
        let unit = match unit {
            Some(u) => u,
            None => match self.next().tok {
                Tok::Word(w) => w,
                _ => {
                    self.at = self.at.saturating_sub(1);
                    return self.expected("a unit: second, minute, hour, day or week");
                }
            },
        };
        Ok(json!({"op": "interval", "value": value, "unit": unit.to_ascii_lowercase()}))
    }
}

/// Most ids one source takes.
pub const MAX_SOURCE_IDS: usize = 100;

fn function(name: &str, args: Vec<Value>) -> Value {
    json!({"op": "function", "name": {"op": "ident", "name": [name]}, "args": args})
}

/// The name a select item gets without `AS`: a field's last part, a function's name.
fn default_alias(expr: &Value, position: usize) -> String {
    let last = |v: &Value| {
        v.get("name")
            .and_then(Value::as_array)
            .and_then(|a| a.last())
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match expr.get("op").and_then(Value::as_str) {
        Some("ident") => last(expr),
        Some("function") => expr.get("name").and_then(last),
        _ => None,
    }
    .unwrap_or_else(|| format!("_{}", position + 1))
}

fn sym_of(s: &str) -> &'static str {
    SYMBOLS.iter().find(|x| **x == s).copied().unwrap_or("")
}

fn fold(op: &str, mut children: Vec<Value>) -> Value {
    if children.len() == 1 {
        return children.pop().unwrap_or(Value::Null);
    }
    json!({"op": op, "children": children})
}

/// Parses a text query (BTQL pipe syntax or SQL) into the structured form.
pub fn parse(src: &str) -> Result<Value, ParseError> {
    if src.len() > MAX_QUERY_BYTES {
        return Err(ParseError {
            line: 1,
            column: 1,
            message: format!("the query is longer than {MAX_QUERY_BYTES} bytes"),
        });
    }
    let mut p = Parser {
        toks: lex(src)?,
        at: 0,
        nodes: 0,
    };
    let pipe = p.toks.get(1).is_some_and(|t| t.tok == Tok::Sym(":"));
    let query = if pipe { p.pipe()? } else { p.sql()? };
    if p.peek().tok != Tok::End {
        return p.expected("the end of the query");
    }
    Ok(query)
}

/// Parses one filter expression (what follows `filter:` or `WHERE`), as the web UI's filter
/// box takes it, into the structured form.
pub fn parse_filter(src: &str) -> Result<Value, ParseError> {
    if src.len() > MAX_QUERY_BYTES {
        return Err(ParseError {
            line: 1,
            column: 1,
            message: format!("the filter is longer than {MAX_QUERY_BYTES} bytes"),
        });
    }
    let mut p = Parser {
        toks: lex(src)?,
        at: 0,
        nodes: 0,
    };
    let expr = p.expr(0)?;
    if p.peek().tok != Tok::End {
        return p.expected("the end of the filter");
    }
    Ok(expr)
}

/// The clauses of BTQL's pipe syntax.
const PIPE_CLAUSES: [&str; 8] = [
    "select",
    "from",
    "filter",
    "dimensions",
    "measures",
    "sort",
    "limit",
    "cursor",
];

impl Parser {
    /// `select: ... | from: dataset('<id>') | filter: ... | dimensions: ... | measures: ... |
    /// sort: ... | limit: 10 | cursor: '...'`.
    fn pipe(&mut self) -> Result<Value, ParseError> {
        let mut q = Map::new();
        loop {
            let clause = match self.peek().tok.clone() {
                Tok::Word(w) => w.to_ascii_lowercase(),
                _ => return self.expected("a clause such as `from:`"),
            };
            if q.contains_key(&clause) {
                return self.fail(format!("`{clause}` is given twice"));
            }
            if !PIPE_CLAUSES.contains(&clause.as_str()) {
                return self.fail(format!(
                    "the `{clause}` clause is not supported (supported: {})",
                    PIPE_CLAUSES.join(", ")
                ));
            }
            self.at += 1;
            self.expect_sym(":")?;
            let value = match clause.as_str() {
                "select" => self.select_list()?,
                "from" => self.source()?,
                "filter" => self.expr(0)?,
                "dimensions" | "measures" => self.aliased_list()?,
                "sort" => self.sort_list()?,
                "limit" => self.limit()?,
                _ => Value::String(self.string("the cursor as a string")?),
            };
            q.insert(clause, value);
            if !self.eat_sym("|") {
                break;
            }
        }
        if !q.contains_key("from") {
            return self.fail("the query needs a `from:` clause");
        }
        if q.contains_key("select") && (q.contains_key("dimensions") || q.contains_key("measures"))
        {
            return self.fail("use either `select:` or `dimensions:`/`measures:`, not both");
        }
        if !q.contains_key("dimensions") && !q.contains_key("measures") {
            q.entry("select").or_insert(json!([{"op": "star"}]));
        }
        Ok(Value::Object(q))
    }

    /// `SELECT ... FROM source WHERE ... GROUP BY ... HAVING ... ORDER BY ... LIMIT n
    /// OFFSET '<cursor>'`. A select list with aggregates, or a `GROUP BY`, becomes
    /// dimensions and measures.
    fn sql(&mut self) -> Result<Value, ParseError> {
        let mut q = Map::new();
        self.expect_word("select")?;
        let select_at = self.at;
        let select = self.select_list()?;
        self.expect_word("from")?;
        q.insert("from".into(), self.source()?);
        if self.eat_word("where") {
            q.insert("filter".into(), self.expr(0)?);
        }
        let mut group = None;
        if self.eat_word("group") {
            self.expect_word("by")?;
            let mut items = Vec::new();
            loop {
                items.push((self.at, self.expr(0)?));
                if !self.eat_sym(",") {
                    break;
                }
            }
            group = Some(items);
        }
        let having = if self.eat_word("having") {
            Some(self.expr(0)?)
        } else {
            None
        };
        if self.eat_word("order") {
            self.expect_word("by")?;
            q.insert("sort".into(), self.sort_list()?);
        }
        if self.eat_word("limit") {
            q.insert("limit".into(), self.limit()?);
        }
        if self.eat_word("offset") {
            let cursor = self.string("the cursor as a string (OFFSET '<cursor>')")?;
            q.insert("cursor".into(), Value::String(cursor));
        }
        if let Tok::Word(w) = &self.peek().tok
            && RESERVED.contains(&w.to_ascii_lowercase().as_str())
        {
            let w = w.to_ascii_uppercase();
            return self.fail(format!("{w} is not allowed here"));
        }
        let items = select.as_array().cloned().unwrap_or_default();
        let aggregated = items.iter().any(|i| has_aggregate(part(i, "expr")));
        if group.is_none() && !aggregated {
            if having.is_some() {
                return self.fail("HAVING needs GROUP BY or an aggregate in SELECT");
            }
            q.insert("select".into(), select);
            return Ok(Value::Object(q));
        }
        // Grouped: GROUP BY items are the dimensions (named like the select item they
        // repeat, or by position: `GROUP BY 1`), aggregates in SELECT are the measures.
        if items.iter().any(|i| i.get("op") == Some(&json!("star"))) {
            self.at = select_at;
            return self.fail("SELECT * cannot be grouped; list the dimensions and measures");
        }
        let mut dimensions: Vec<Value> = Vec::new();
        for (at, g) in group.unwrap_or_default() {
            let by_position = g
                .get("value")
                .and_then(Value::as_u64)
                .filter(|_| g.get("op") == Some(&json!("literal")));
            let by_alias = g
                .get("name")
                .and_then(Value::as_array)
                .filter(|n| n.len() == 1)
                .and_then(|n| n.first())
                .and_then(Value::as_str);
            let item = if let Some(n) = by_position {
                match usize::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|n| items.get(n))
                {
                    Some(i) => i.clone(),
                    None => {
                        self.at = at;
                        return self.fail(format!("GROUP BY {n}: there is no select item {n}"));
                    }
                }
            } else if let Some(i) = items.iter().find(|i| *part(i, "expr") == g) {
                i.clone()
            } else if let Some(i) = items
                .iter()
                .find(|i| by_alias.is_some_and(|a| *part(i, "alias") == json!(a)))
            {
                i.clone()
            } else {
                json!({"alias": default_alias(&g, dimensions.len()), "expr": g})
            };
            if has_aggregate(part(&item, "expr")) {
                self.at = at;
                return self.fail("GROUP BY cannot name an aggregate");
            }
            dimensions.push(item);
        }
        let mut measures = Vec::new();
        for item in items {
            if has_aggregate(part(&item, "expr")) {
                measures.push(item);
            } else if !dimensions
                .iter()
                .any(|d| part(d, "expr") == part(&item, "expr"))
            {
                self.at = select_at;
                return self.fail(format!(
                    "`{}` must appear in GROUP BY or be inside an aggregate",
                    part(&item, "alias").as_str().unwrap_or("?")
                ));
            }
        }
        q.insert("dimensions".into(), Value::Array(dimensions));
        q.insert("measures".into(), Value::Array(measures));
        if let Some(h) = having {
            q.insert("having".into(), h);
        }
        Ok(Value::Object(q))
    }
}

/// A member of a select item (`alias` or `expr`), null when missing.
fn part<'a>(item: &'a Value, key: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    item.get(key).unwrap_or(&NULL)
}

/// Whether a structured expression calls an aggregate function.
fn has_aggregate(v: &Value) -> bool {
    match v {
        Value::Object(o) => {
            let is_agg = o.get("op") == Some(&json!("function"))
                && o.get("name")
                    .and_then(|n| n.get("name"))
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(Value::as_str)
                    .is_some_and(|n| qexpr::AGGREGATES.contains(&n));
            is_agg || o.values().any(has_aggregate)
        }
        Value::Array(a) => a.iter().any(has_aggregate),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset() -> Value {
        json!({"op": "function", "name": {"op": "ident", "name": ["dataset"]},
               "args": [{"op": "literal", "value": "d1"}]})
    }

    #[test]
    fn a_filter_alone_parses_as_the_filter_clause_does() {
        let text = "metadata.user_id = 'u-1' AND (scores.Factuality < 0.5 OR output IS NULL)";
        let whole = parse(&format!("select: * | from: dataset('d1') | filter: {text}")).unwrap();
        assert_eq!(parse_filter(text).unwrap(), whole["filter"]);
        // Nothing may follow the expression: no second clause slips in through the box.
        let err = parse_filter("true | from: dataset('d2')").unwrap_err();
        assert_eq!((err.line, err.column), (1, 6));
        assert!(parse_filter("").is_err());
        assert!(parse_filter(&"(".repeat(100)).is_err());
    }

    #[test]
    fn both_syntaxes_give_the_structured_query() {
        let filter = json!({"op": "and", "children": [
            {"op": "eq", "left": {"op": "ident", "name": ["metadata", "user_id"]},
             "right": {"op": "literal", "value": "u-1"}},
            {"op": "or", "children": [
                {"op": "lt", "left": {"op": "ident", "name": ["scores", "Factuality"]},
                 "right": {"op": "literal", "value": 0.5}},
                {"op": "isnull", "expr": {"op": "ident", "name": ["output"]}}]}]});
        let want = json!({"select": [{"op": "star"}], "from": dataset(), "filter": filter,
                          "limit": 10, "cursor": "c1"});
        let sql = parse(
            "SELECT * FROM dataset('d1') WHERE metadata.user_id = 'u-1' AND \
             (scores.\"Factuality\" < 0.5 OR output IS NULL) LIMIT 10 OFFSET 'c1'",
        )
        .unwrap();
        assert_eq!(sql, want);
        let btql = parse(
            "select: * | from: dataset('d1') spans | filter: metadata.user_id = 'u-1' and \
             (scores.Factuality < 0.5 or output is null) | limit: 10 | cursor: 'c1'",
        )
        .unwrap();
        assert_eq!(btql, want);
        let shaped = parse("select * from dataset('d1', shape => 'spans')").unwrap();
        assert_eq!(
            shaped,
            json!({"select": [{"op": "star"}], "from": dataset()})
        );
    }

    #[test]
    fn in_and_includes() {
        let q = parse(
            "from: dataset('d') | filter: a IN ('x', 2, null) and tags not includes 'bad' \
             and b not in (1) and c contains 'sub'",
        )
        .unwrap();
        let f = &q["filter"]["children"];
        assert_eq!(
            f[0],
            json!({"op": "in", "left": {"op": "ident", "name": ["a"]},
                   "right": {"op": "literal", "value": ["x", 2, null]}})
        );
        assert_eq!(f[1]["op"], "not");
        assert_eq!(f[1]["expr"]["op"], "includes");
        assert_eq!(f[2]["expr"]["op"], "in");
        assert_eq!(f[3]["op"], "includes");
        let many = format!(
            "from: dataset('d') | filter: a in ({})",
            vec!["1"; 1001].join(", ")
        );
        assert!(parse(&many).unwrap_err().message.contains("at most 1000"));
    }

    #[test]
    fn literals_and_operators() {
        let q = parse(
            "from: experiment('e') | filter: not (a != -3) and b <> 'it''s' and c >= 1e3 \
             and d is not null and e = true and `weird name`.x <= null",
        )
        .unwrap();
        let f = &q["filter"]["children"];
        assert_eq!(f[0]["op"], "not");
        assert_eq!(f[0]["expr"]["right"]["value"], -3);
        assert_eq!(f[1]["right"]["value"], "it's");
        assert_eq!(f[2]["right"]["value"], 1000.0);
        assert_eq!(f[3]["op"], "isnotnull");
        assert_eq!(f[4]["right"]["value"], true);
        assert_eq!(f[5]["left"]["name"], json!(["weird name", "x"]));
    }

    #[test]
    fn errors_name_line_column_and_what_was_expected() {
        let e = parse("SELECT *\nFROM dataset('d1')\nWHERE a = ").unwrap_err();
        assert_eq!((e.line, e.column), (3, 11), "{e}");
        assert!(e.message.contains("expected a field or a literal"), "{e}");
        for (q, says) in [
            (
                "select: * | from: dataset('d') | order: created desc",
                "`order` clause is not supported",
            ),
            (
                "SELECT * FROM dataset('d') GROUP BY a",
                "SELECT * cannot be grouped",
            ),
            (
                "SELECT id, count(*) FROM dataset('d')",
                "`id` must appear in GROUP BY",
            ),
            (
                "SELECT id FROM dataset('d') HAVING id > 1",
                "HAVING needs GROUP BY",
            ),
            ("SELECT a FROM dataset('d') GROUP BY 2", "no select item 2"),
            (
                "SELECT * FROM project_logs('p', shape => 'trees')",
                "unknown shape `trees`",
            ),
            (
                "SELECT * FROM dataset('d') WHERE nope(a) = 'x'",
                "unknown function `nope`",
            ),
            (
                "SELECT * FROM dataset('d') WHERE a NOT = 1",
                "NOT is not allowed here",
            ),
            (
                "select: a | from: dataset('d') | measures: count(1) as n",
                "not both",
            ),
            (
                "SELECT * FROM dataset('d') WHERE created > now() - INTERVAL 'x days'",
                "a whole number of units",
            ),
            (
                "SELECT CASE WHEN a THEN 1 FROM dataset('d')",
                "expected `end`",
            ),
            (
                "SELECT * FROM dataset('d') WHERE a IN (b)",
                "IN lists only literals",
            ),
            (
                "SELECT * FROM dataset('d') WHERE a IN ()",
                "expected a field or a literal",
            ),
            ("SELECT * FROM users", "unknown source `users`"),
            ("SELECT * FROM dataset", "expected `(`"),
            ("SELECT * FROM pg_catalog('x')", "unknown source"),
            (
                "SELECT * FROM dataset('d'); DROP TABLE rows",
                "unexpected character ';'",
            ),
            ("SELECT * FROM dataset('d) ", "never closed"),
            ("from: dataset('d') | limit: -1", "a whole number"),
            (
                "SELECT * FROM dataset('d', 'e', shape => 'x')",
                "unknown shape",
            ),
            ("from: dataset('d') | from: dataset('e')", "given twice"),
            ("filter: a = 1", "needs a `from:`"),
        ] {
            let e = parse(q).unwrap_err();
            assert!(e.to_string().contains(says), "{q}: {e}");
        }
        let deep = format!("from: dataset('d') | filter: {}a = 1", "not ".repeat(40));
        assert!(parse(&deep).unwrap_err().message.contains("nests deeper"));
        let deep = format!(
            "from: dataset('d') | filter: {}a = 1{}",
            "(".repeat(40),
            ")".repeat(40)
        );
        assert!(parse(&deep).unwrap_err().message.contains("nests deeper"));
    }

    #[test]
    fn projections_sorts_groups_and_shapes() {
        let q = parse(
            "SELECT metadata.model AS model, count(*) AS n, avg(scores.f) \
             FROM project_logs('p1', 'p2', shape => 'traces') \
             WHERE input ILIKE '%hi%' AND NOT output MATCH 'bye' AND x BETWEEN 1 AND 2 \
             GROUP BY 1 HAVING n > 1 ORDER BY n DESC, model LIMIT 5",
        )
        .unwrap();
        assert_eq!(
            q["from"]["args"],
            json!([{"op": "literal", "value": "p1"}, {"op": "literal", "value": "p2"}])
        );
        assert_eq!(q["from"]["shape"], "traces");
        assert_eq!(
            q["dimensions"],
            json!([{"alias": "model", "expr": {"op": "ident", "name": ["metadata", "model"]}}])
        );
        assert_eq!(q["measures"][0]["alias"], "n");
        assert_eq!(q["measures"][0]["expr"]["args"], json!([{"op": "star"}]));
        assert_eq!(q["measures"][1]["alias"], "avg");
        assert_eq!(q["having"]["op"], "gt");
        assert_eq!(q["sort"][0]["dir"], "desc");
        assert_eq!(q["sort"][1]["dir"], "asc");
        let f = &q["filter"]["children"];
        assert_eq!(f[0]["op"], "ilike");
        assert_eq!(f[1]["expr"]["op"], "match");
        assert_eq!(f[2]["children"][0]["op"], "ge");
        assert!(q.get("select").is_none());

        let q = parse(
            "select: id, -scores.f * 2 + 1 as neg, count(distinct x) | \
             from: experiment('e') summary | sort: created desc | limit: 3",
        );
        // An aggregate in `select:` is accepted by the parser and refused by the engine,
        // which knows where aggregates may stand.
        let q = q.unwrap();
        assert_eq!(q["select"][1]["alias"], "neg");
        assert_eq!(q["select"][1]["expr"]["op"], "add");
        assert_eq!(q["select"][1]["expr"]["left"]["op"], "mul");
        assert_eq!(q["select"][1]["expr"]["left"]["left"]["op"], "neg");
        assert_eq!(q["select"][2]["expr"]["distinct"], true);
        assert_eq!(q["from"]["shape"], "summary");

        let q = parse(
            "from: dataset('d') | dimensions: hour(created) as h | measures: count(1) as n \
             | filter: created > now() - interval 1 day and a - 1 >= -2",
        )
        .unwrap();
        assert_eq!(q["dimensions"][0]["expr"]["name"]["name"], json!(["hour"]));
        assert_eq!(
            q["filter"]["children"][0]["right"]["right"],
            json!({"op": "interval", "value": 1, "unit": "day"})
        );
        assert_eq!(q["filter"]["children"][1]["left"]["op"], "sub");
        assert_eq!(q["filter"]["children"][1]["right"]["value"], -2);

        let q = parse(
            "SELECT CASE WHEN a > 1 THEN 'big' ELSE 'small' END AS size, \
             CASE b WHEN 1 THEN 'one' END FROM dataset('d')",
        )
        .unwrap();
        assert_eq!(q["select"][0]["expr"]["op"], "if");
        assert_eq!(q["select"][1]["expr"]["conds"][0]["cond"]["op"], "eq");
        assert_eq!(q["select"][1]["alias"], "_2");
    }

    #[test]
    fn hostile_names_and_literals_stay_data() {
        let q = parse(
            "SELECT * FROM dataset('x''); DROP TABLE rows; --') \
             WHERE `a``; DELETE FROM rows`.\"b\"\"c\" = '\\' -- trailing comment",
        )
        .unwrap();
        assert_eq!(q["from"]["args"][0]["value"], "x'); DROP TABLE rows; --");
        assert_eq!(
            q["filter"]["left"]["name"],
            json!(["a`; DELETE FROM rows", "b\"c"])
        );
        assert_eq!(q["filter"]["right"]["value"], "\\");
        // `"..."` standing alone is a string, as in `metadata.model = "gpt-4"`.
        let q = parse("from: dataset('d') | filter: metadata.model = \"gpt-4\"").unwrap();
        assert_eq!(
            q["filter"]["right"],
            json!({"op": "literal", "value": "gpt-4"})
        );
    }

    /// A million generated inputs, mixing the grammar's tokens with noise: none panics, and
    /// every error points inside the text.
    #[test]
    fn a_million_generated_inputs_never_panic() {
        const PIECES: [&str; 60] = [
            "like",
            "ILIKE",
            "match",
            "between",
            "group",
            "by",
            "order",
            "desc",
            "as",
            "count(*)",
            "lower(",
            "case",
            "when",
            "then",
            "end",
            "interval",
            "+",
            "in",
            "includes",
            "contains",
            "select",
            "SELECT",
            "from",
            "FROM",
            "where",
            "filter",
            "limit",
            "offset",
            "cursor",
            "*",
            ":",
            "|",
            "(",
            ")",
            ",",
            ".",
            "=",
            "!=",
            "<>",
            "<=",
            ">",
            "and",
            "OR",
            "not",
            "is",
            "null",
            "true",
            "'s'",
            "'",
            "\"q\"",
            "`",
            "1",
            "-2.5e3",
            "dataset('d')",
            "project_logs",
            "shape",
            "=>",
            "\n",
            "--",
            "é",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Valid queries, edited at random (pieces dropped, inserted, replaced), and noise.
        const SEEDS: [&str; 6] = [
            "SELECT metadata.m AS m, count(*) AS n FROM project_logs('p', 'q') WHERE input ILIKE '%a%' GROUP BY 1 HAVING n > 1 ORDER BY n DESC LIMIT 2",
            "select: id, -a * 2 + 1 as z | from: dataset('d') traces | filter: b match 'w' and created > now() - interval 1 day | sort: z desc",
            "select: * | from: dataset('d') | filter: a.b = 1 and not (c is null or d != 'x') | limit: 5",
            "SELECT * FROM project_logs('p', shape => 'spans') WHERE \"m\".k >= -2.5 LIMIT 3 OFFSET 'c'",
            "from: experiment('e') spans | filter: ((x < 2)) or y <> true | cursor: 'z'",
            "SELECT * FROM dataset('d') WHERE NOT a = null AND b <= 4e2",
        ];
        let mut parsed = 0;
        for _ in 0..1_000_000 {
            let mut parts: Vec<&str> = if next() % 4 == 0 {
                Vec::new()
            } else {
                let seed = SEEDS.get((next() % SEEDS.len() as u64) as usize);
                seed.copied().unwrap_or("").split(' ').collect()
            };
            let edits = if parts.is_empty() {
                (next() % 12) as usize
            } else {
                (next() % 4) as usize
            };
            for _ in 0..edits {
                let piece = PIECES
                    .get((next() % PIECES.len() as u64) as usize)
                    .copied()
                    .unwrap_or("");
                let at = (next() % (parts.len() as u64 + 1)) as usize;
                match next() % 3 {
                    0 if at < parts.len() => {
                        parts.remove(at);
                    }
                    1 if at < parts.len() => {
                        if let Some(p) = parts.get_mut(at) {
                            *p = piece;
                        }
                    }
                    _ => parts.insert(at, piece),
                }
            }
            let text = parts.join(if next() % 5 == 0 { "" } else { " " });
            match parse(&text) {
                Ok(_) => parsed += 1,
                Err(e) => {
                    let lines = text.split('\n').count().max(1);
                    assert!(e.line >= 1 && e.line <= lines, "{text:?}: {e}");
                }
            }
        }
        assert!(parsed > 0, "some generated inputs are queries");
    }
}
