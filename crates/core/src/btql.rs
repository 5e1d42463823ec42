//! Text queries: BTQL's pipe syntax and Braintrust's SQL syntax, parsed into the structured
//! JSON form the SDKs send (`{"select", "from", "filter", "limit", "cursor"}`), so that every
//! front end is answered by the same code.
//!
//! Supported now: `select *`; sources `project_logs`, `experiment`, `dataset` and
//! `project_prompts` with one literal id and the `spans` shape; filters of comparisons
//! (`=`, `!=`, `<>`, `<`, `<=`, `>`, `>=`), `IS [NOT] NULL`, `[NOT] IN (...)`,
//! `[NOT] INCLUDES` (alias `CONTAINS`: an array holding the value, an object holding it as a
//! value, a string holding it as a substring), `AND`, `OR`, `NOT` and
//! parentheses over field paths (`metadata.user_id`, quoted parts with `` `...` ``, or `"..."`
//! next to a `.`) and literals (strings in `'...'`, or in `"..."` standing alone as
//! Braintrust's filters write them; numbers, `true`, `false`, `null`); `limit`; a cursor (`cursor:` or
//! SQL `OFFSET '<cursor>'`). Anything else (sorting, grouping, measures, functions, other
//! shapes) is refused with an error that names it and where it is, never skipped.
//!
//! Guarantees: parsing is linear in the text, never recurses deeper than [`MAX_DEPTH`], and
//! never panics (a property test feeds it a million generated inputs); an error names the
//! line and column (1-based, in characters) and what was expected.

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

const SYMBOLS: [&str; 16] = [
    "<=", ">=", "!=", "<>", "==", "=>", "=", "<", ">", "(", ")", ",", ".", ":", "|", "*",
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
        } else if c.is_ascii_digit() || (c == '-' && s.at(1).is_some_and(|d| d.is_ascii_digit())) {
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
}

/// Words that end an expression in SQL, so that `WHERE a = 1 LIMIT 5` stops before `LIMIT`.
const SQL_CLAUSES: [&str; 8] = [
    "where", "limit", "offset", "order", "group", "having", "union", "from",
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

    /// `select *` (BTQL `select: *`); any other projection is refused.
    fn star(&mut self) -> Result<Value, ParseError> {
        if self.eat_sym("*") {
            return Ok(json!([{"op": "star"}]));
        }
        self.fail("only `*` can be selected for now (projections are not supported)")
    }

    /// `dataset('<id>')`, `project_logs('<id>') spans` (BTQL) or
    /// `project_logs('<id>', shape => 'spans')` (SQL).
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
        let id = self.string("the object's id as a string")?;
        let mut shape = None;
        while self.eat_sym(",") {
            if self.peek().tok.is_word("shape") {
                self.at += 1;
                self.expect_sym("=>")?;
                shape = Some(self.string("a shape: 'spans'")?);
            } else if matches!(self.peek().tok, Tok::Str(_)) {
                return self.fail("queries over several objects are not supported yet");
            } else {
                return self.expected("`shape => '...'`");
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
        if let Some(s) = shape
            && s != "spans"
        {
            return self.fail(format!("the `{s}` shape is not supported yet; use spans"));
        }
        Ok(
            json!({"op": "function", "name": {"op": "ident", "name": [name]},
                  "args": [{"op": "literal", "value": id}]}),
        )
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
            return self.fail(format!("the filter nests deeper than {MAX_DEPTH}"));
        }
        if self.eat_word("not") {
            return Ok(json!({"op": "not", "expr": self.not(depth + 1)?}));
        }
        self.comparison(depth)
    }

    fn comparison(&mut self, depth: usize) -> Result<Value, ParseError> {
        if self.eat_sym("(") {
            let inner = self.expr(depth + 1)?;
            self.expect_sym(")")?;
            return Ok(inner);
        }
        let left = self.operand()?;
        if self.eat_word("is") {
            let negated = self.eat_word("not");
            self.expect_word("null")?;
            let op = if negated { "isnotnull" } else { "isnull" };
            return Ok(json!({"op": op, "expr": left}));
        }
        // `x [NOT] IN (a, b)`, `x [NOT] INCLUDES v` (alias CONTAINS).
        let negated = self.peek().tok.is_word("not")
            && self.toks.get(self.at + 1).is_some_and(|t| {
                ["in", "includes", "contains"]
                    .iter()
                    .any(|w| t.tok.is_word(w))
            });
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
            self.expect_sym("(")?;
            let mut values = Vec::new();
            loop {
                match self.operand()? {
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
        if self.eat_word("includes") || self.eat_word("contains") {
            let right = self.operand()?;
            return Ok(wrap(
                json!({"op": "includes", "left": left, "right": right}),
            ));
        }
        let op = match &self.peek().tok {
            Tok::Sym("=" | "==") => "eq",
            Tok::Sym("!=" | "<>") => "ne",
            Tok::Sym("<") => "lt",
            Tok::Sym("<=") => "le",
            Tok::Sym(">") => "gt",
            Tok::Sym(">=") => "ge",
            Tok::Word(w)
                if matches!(
                    w.to_ascii_lowercase().as_str(),
                    "like" | "ilike" | "match" | "between"
                ) =>
            {
                let w = w.to_ascii_uppercase();
                return self.fail(format!("`{w}` is not supported yet"));
            }
            _ => return self.expected("a comparison (=, !=, <, <=, >, >=) or IS [NOT] NULL"),
        };
        self.at += 1;
        let right = self.operand()?;
        Ok(json!({"op": op, "left": left, "right": right}))
    }

    fn operand(&mut self) -> Result<Value, ParseError> {
        let t = self.peek().tok.clone();
        match t {
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
            Tok::DoubleQuoted(s)
                if self.toks.get(self.at + 1).map(|t| &t.tok) != Some(&Tok::Sym(".")) =>
            {
                self.at += 1;
                Ok(json!({"op": "literal", "value": s}))
            }
            Tok::Word(_) | Tok::Quoted(_) | Tok::DoubleQuoted(_) => {
                let mut path = Vec::new();
                loop {
                    match self.next().tok {
                        Tok::Word(w) | Tok::Quoted(w) | Tok::DoubleQuoted(w) => path.push(w),
                        _ => return self.expected("a field name"),
                    }
                    if self.peek().tok == Tok::Sym("(") {
                        let name = path.join(".");
                        return self.fail(format!("function `{name}` is not supported yet"));
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
    };
    let pipe = p.toks.get(1).is_some_and(|t| t.tok == Tok::Sym(":"));
    let query = if pipe { p.pipe()? } else { p.sql()? };
    if p.peek().tok != Tok::End {
        return p.expected("the end of the query");
    }
    Ok(query)
}

impl Parser {
    /// `select: * | from: dataset('<id>') | filter: ... | limit: 10 | cursor: '...'`.
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
            self.at += 1;
            self.expect_sym(":")?;
            let value = match clause.as_str() {
                "select" => self.star()?,
                "from" => self.source()?,
                "filter" => self.expr(0)?,
                "limit" => self.limit()?,
                "cursor" => Value::String(self.string("the cursor as a string")?),
                other => {
                    self.at = self.at.saturating_sub(2);
                    return self.fail(format!(
                        "the `{other}` clause is not supported yet \
                         (supported: select, from, filter, limit, cursor)"
                    ));
                }
            };
            q.insert(clause, value);
            if !self.eat_sym("|") {
                break;
            }
        }
        if !q.contains_key("from") {
            return self.fail("the query needs a `from:` clause");
        }
        q.entry("select").or_insert(json!([{"op": "star"}]));
        Ok(Value::Object(q))
    }

    /// `SELECT * FROM dataset('<id>') WHERE ... LIMIT n OFFSET '<cursor>'`.
    fn sql(&mut self) -> Result<Value, ParseError> {
        let mut q = Map::new();
        self.expect_word("select")?;
        q.insert("select".into(), self.star()?);
        self.expect_word("from")?;
        q.insert("from".into(), self.source()?);
        if self.eat_word("where") {
            q.insert("filter".into(), self.expr(0)?);
        }
        for refused in ["group", "having", "order", "union"] {
            if self.peek().tok.is_word(refused) {
                let what = refused.to_ascii_uppercase();
                return self.fail(format!("{what} is not supported yet"));
            }
        }
        if self.eat_word("limit") {
            q.insert("limit".into(), self.limit()?);
        }
        if self.eat_word("offset") {
            let cursor = self.string("the cursor as a string (OFFSET '<cursor>')")?;
            q.insert("cursor".into(), Value::String(cursor));
        }
        if let Tok::Word(w) = &self.peek().tok
            && SQL_CLAUSES.contains(&w.to_ascii_lowercase().as_str())
        {
            let w = w.to_ascii_uppercase();
            return self.fail(format!("{w} is not allowed here"));
        }
        Ok(Value::Object(q))
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
                "select: * | from: dataset('d') | sort: created desc",
                "`sort` clause",
            ),
            (
                "select: * | from: dataset('d') | measures: count(1)",
                "`measures` clause",
            ),
            (
                "SELECT * FROM dataset('d') ORDER BY created",
                "ORDER is not supported",
            ),
            (
                "SELECT * FROM dataset('d') GROUP BY a",
                "GROUP is not supported",
            ),
            ("SELECT id FROM dataset('d')", "only `*`"),
            (
                "SELECT * FROM project_logs('p', shape => 'traces')",
                "`traces` shape",
            ),
            ("from: project_logs('p') summary", "`summary` shape"),
            (
                "SELECT * FROM dataset('d') WHERE lower(a) = 'x'",
                "function `lower`",
            ),
            (
                "SELECT * FROM dataset('d') WHERE a IN (b)",
                "IN lists only literals",
            ),
            (
                "SELECT * FROM dataset('d') WHERE a IN ()",
                "expected a field or a literal",
            ),
            (
                "SELECT * FROM dataset('d') WHERE a LIKE 'x%'",
                "`LIKE` is not supported",
            ),
            (
                "SELECT * FROM dataset('d') WHERE a MATCH 'x'",
                "`MATCH` is not supported",
            ),
            ("SELECT * FROM users", "unknown source `users`"),
            ("SELECT * FROM dataset", "expected `(`"),
            ("SELECT * FROM pg_catalog('x')", "unknown source"),
            (
                "SELECT * FROM dataset('d'); DROP TABLE rows",
                "unexpected character ';'",
            ),
            ("SELECT * FROM dataset('d) ", "never closed"),
            ("SELECT * FROM dataset('d', 'e')", "several objects"),
            ("from: dataset('d') | limit: -1", "a whole number"),
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
        const PIECES: [&str; 43] = [
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
        const SEEDS: [&str; 4] = [
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
