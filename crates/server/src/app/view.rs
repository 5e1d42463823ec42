//! How values are shown: previews for tables, JSON as a tree of `<details>`, chat messages as
//! a conversation, attachments as links, and binary payloads never as text.

use maud::{Markup, html};
use serde_json::{Map, Value};

/// Characters of one string shown in a span's detail; the rest is cut with a note.
const MAX_SHOWN_CHARS: usize = 20_000;
/// Levels of a JSON value shown as a tree; deeper values are shown as cut JSON text.
const MAX_TREE_DEPTH: usize = 16;
/// Entries of one object or array shown in a tree.
const MAX_TREE_ENTRIES: usize = 500;

/// `s` cut to `max` characters, with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// The value at a JSON pointer, as [`Value::pointer`] finds it, without allocating for a
/// pointer with no escapes (the viewer looks up several fields of each of a trace's spans).
pub fn at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.contains('~') || !(pointer.is_empty() || pointer.starts_with('/')) {
        return v.pointer(pointer);
    }
    let mut here = v;
    for token in pointer.split('/').skip(1) {
        here = match here {
            Value::Object(m) => m.get(token)?,
            Value::Array(a) if token == "0" || !token.starts_with('0') => {
                a.get(token.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(here)
}

/// The text at a JSON pointer of a value, or "" when there is none.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    at(v, pointer).and_then(Value::as_str).unwrap_or_default()
}

/// Whether a string is a binary payload (a `data:` URL or a long run of base64), which is
/// never rendered as text.
pub fn is_binary(s: &str) -> bool {
    if s.starts_with("data:") && s[..s.len().min(200)].contains(";base64,") {
        return true;
    }
    s.len() >= 256
        && !s.contains(' ')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
}

fn binary_note(s: &str) -> String {
    let kind = s
        .strip_prefix("data:")
        .and_then(|r| r.split([';', ',']).next())
        .filter(|k| !k.is_empty())
        .unwrap_or("binary");
    format!("[{kind} data, {} characters of base64, not shown]", s.len())
}

/// A one-line preview of a value for a table cell: text as is, a conversation as its last
/// message, anything else as compact JSON; at most `max` characters.
pub fn preview(v: &Value, max: usize) -> String {
    let text = match v {
        Value::Null => return String::new(),
        Value::String(s) if is_binary(s) => binary_note(s),
        Value::String(s) => s.clone(),
        _ => match messages(v).and_then(|m| m.last()).map(message_text) {
            Some(t) => t,
            None => compact(v, max * 4),
        },
    };
    // Cut before the whitespace is folded, so that a long value costs no more than its
    // preview (runs of whitespace fold to one, hence twice the room).
    let head = cut(&text, max.saturating_mul(2));
    cut(&head.split_whitespace().collect::<Vec<_>>().join(" "), max)
}

/// Compact JSON, with binary strings replaced by a note, cut to about `max` characters.
fn compact(v: &Value, max: usize) -> String {
    let mut out = String::new();
    write_compact(v, max, &mut out);
    cut(&out, max)
}

fn write_compact(v: &Value, max: usize, out: &mut String) {
    if out.len() > max {
        return;
    }
    match v {
        Value::String(s) if is_binary(s) => out.push_str(&Value::from(binary_note(s)).to_string()),
        Value::String(s) => out.push_str(&Value::from(cut(s, max)).to_string()),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_compact(x, max, out);
                if out.len() > max {
                    break;
                }
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                write_compact(x, max, out);
                if out.len() > max {
                    break;
                }
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The messages of a chat: an array of `{role, content}` objects, or an object holding one
/// under `messages`.
fn messages(v: &Value) -> Option<&Vec<Value>> {
    let list = match v {
        Value::Array(a) => a,
        Value::Object(m) => m.get("messages")?.as_array()?,
        _ => return None,
    };
    let chat = !list.is_empty()
        && list
            .iter()
            .all(|m| m.get("role").is_some_and(Value::is_string));
    chat.then_some(list)
}

fn message_text(m: &Value) -> String {
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        Some(other) if !other.is_null() => compact(other, 400),
        _ => m
            .get("tool_calls")
            .map(|t| compact(t, 400))
            .unwrap_or_default(),
    }
}

/// A value in a span's detail: a conversation when it is one, an attachment as a link,
/// otherwise a JSON tree.
pub fn value(org: &str, v: &Value) -> Markup {
    match messages(v) {
        Some(list) => conversation(org, list),
        None => tree(org, v, 0),
    }
}

fn conversation(org: &str, list: &[Value]) -> Markup {
    html! {
        ol.chat {
            @for m in list {
                @let role = m.get("role").and_then(Value::as_str).unwrap_or("message");
                li class={ "msg role-" (role_class(role)) } {
                    div.role { (role) }
                    @match m.get("content") {
                        Some(Value::String(s)) => { (text(s)) }
                        Some(Value::Array(parts)) => {
                            @for part in parts {
                                @if let Some(t) = part.get("text").and_then(Value::as_str) {
                                    (text(t))
                                } @else {
                                    (tree(org, part, 1))
                                }
                            }
                        }
                        Some(Value::Null) | None => {}
                        Some(other) => { (tree(org, other, 1)) }
                    }
                    @if let Some(calls) = m.get("tool_calls") {
                        div.tools { "Tool calls" (tree(org, calls, 1)) }
                    }
                }
            }
        }
    }
}

fn role_class(role: &str) -> &'static str {
    match role {
        "system" => "system",
        "user" => "user",
        "assistant" => "assistant",
        "tool" | "function" => "tool",
        _ => "other",
    }
}

fn text(s: &str) -> Markup {
    if is_binary(s) {
        return html! { p.muted { (binary_note(s)) } };
    }
    let chars = s.chars().count();
    html! {
        pre.text { (cut(s, MAX_SHOWN_CHARS)) }
        @if chars > MAX_SHOWN_CHARS {
            p.muted { "Showing " (MAX_SHOWN_CHARS) " of " (chars) " characters." }
        }
    }
}

/// An attachment reference (`braintrust_attachment` or `external_attachment`), if `m` is one.
fn attachment(org: &str, m: &Map<String, Value>) -> Option<Markup> {
    let kind = m.get("type").and_then(Value::as_str)?;
    let (param, reference) = match kind {
        "braintrust_attachment" => ("key", m.get("key")?.as_str()?),
        "external_attachment" => ("url", m.get("url")?.as_str()?),
        _ => return None,
    };
    let name = m
        .get("filename")
        .and_then(Value::as_str)
        .unwrap_or("attachment");
    let content_type = m
        .get("content_type")
        .and_then(Value::as_str)
        .unwrap_or("application/octet-stream");
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair(param, reference)
        .append_pair("content_type", content_type)
        .finish();
    let href = format!("/app/{}/attachment?{query}", super::path_part(org));
    Some(html! {
        div.attachment {
            @if content_type.starts_with("image/") {
                img src=(href) alt={ "Attachment " (name) };
            }
            a href=(href) download=(name) { "Download " (name) } " "
            span.muted { "(" (content_type) ")" }
        }
    })
}

fn tree(org: &str, v: &Value, depth: usize) -> Markup {
    match v {
        Value::Object(m) => {
            if let Some(a) = attachment(org, m) {
                return a;
            }
            if depth >= MAX_TREE_DEPTH {
                return html! { code { (compact(v, 2_000)) } };
            }
            html! {
                details.json open[depth < 2] {
                    summary { "{ " (m.len()) (if m.len() == 1 { " key" } else { " keys" }) " }" }
                    dl {
                        @for (k, x) in m.iter().take(MAX_TREE_ENTRIES) {
                            dt { (k) }
                            dd { (tree(org, x, depth + 1)) }
                        }
                    }
                    @if m.len() > MAX_TREE_ENTRIES {
                        p.muted { "Showing " (MAX_TREE_ENTRIES) " of " (m.len()) " keys." }
                    }
                }
            }
        }
        Value::Array(a) => {
            if depth >= MAX_TREE_DEPTH {
                return html! { code { (compact(v, 2_000)) } };
            }
            html! {
                details.json open[depth < 2] {
                    summary { "[ " (a.len()) (if a.len() == 1 { " item" } else { " items" }) " ]" }
                    ol start="0" {
                        @for x in a.iter().take(MAX_TREE_ENTRIES) {
                            li { (tree(org, x, depth + 1)) }
                        }
                    }
                    @if a.len() > MAX_TREE_ENTRIES {
                        p.muted { "Showing " (MAX_TREE_ENTRIES) " of " (a.len()) " items." }
                    }
                }
            }
        }
        Value::String(s) => text(s),
        Value::Null => html! { code.muted { "null" } },
        other => html! { code { (other.to_string()) } },
    }
}

/// `2026-12-04T01:02:03.456Z` as `2026-12-04 01:02:03`.
pub fn time(created: &str) -> String {
    let t = created.replace('T', " ");
    cut(t.trim_end_matches('Z'), 19)
        .trim_end_matches('…')
        .to_owned()
}

/// Seconds as a short duration.
pub fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else if seconds < 120.0 {
        format!("{seconds:.2} s")
    } else {
        format!("{:.1} min", seconds / 60.0)
    }
}

/// A score in [0, 1] as a percentage.
pub fn score(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A difference of scores in percentage points, signed.
pub fn delta(x: f64) -> String {
    format!("{:+.1}", x * 100.0)
}

/// Lines (or words) a diff compares at most on each side (its table is their product).
const MAX_DIFF_LINES: usize = 2_000;

/// One line (or word) of a diff.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// `a` and `b` as a diff (a longest common subsequence), or `None` when either has more than
/// [`MAX_DIFF_LINES`] parts.
fn lcs_diff<'a>(a: &[&'a str], b: &[&'a str]) -> Option<Vec<Line<'a>>> {
    if a.len() > MAX_DIFF_LINES || b.len() > MAX_DIFF_LINES {
        return None;
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..], in one flat table.
    let width = b.len() + 1;
    let mut lcs = vec![0u16; (a.len() + 1) * width];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            let here = if a.get(i) == b.get(j) {
                lcs.get((i + 1) * width + j + 1).copied().unwrap_or(0) + 1
            } else {
                let down = lcs.get((i + 1) * width + j).copied().unwrap_or(0);
                let right = lcs.get(i * width + j + 1).copied().unwrap_or(0);
                down.max(right)
            };
            if let Some(cell) = lcs.get_mut(i * width + j) {
                *cell = here;
            }
        }
    }
    let at = |i: usize, j: usize| lcs.get(i * width + j).copied().unwrap_or(0);
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                out.push(Line::Same(x));
                i += 1;
                j += 1;
            }
            (Some(x), Some(_)) if at(i + 1, j) >= at(i, j + 1) => {
                out.push(Line::Removed(x));
                i += 1;
            }
            (_, Some(y)) => {
                out.push(Line::Added(y));
                j += 1;
            }
            (Some(x), None) => {
                out.push(Line::Removed(x));
                i += 1;
            }
            (None, None) => break,
        }
    }
    Some(out)
}

/// The lines of `old` and `new` as a diff, or `None` when either has more than
/// [`MAX_DIFF_LINES`] lines.
pub fn line_diff<'a>(old: &'a str, new: &'a str) -> Option<Vec<Line<'a>>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    lcs_diff(&a, &b)
}

/// `s` cut into words and the whitespace between them, each a part of its own (so that the
/// parts joined give `s` back).
fn words(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut last: Option<bool> = None;
    for (i, c) in s.char_indices() {
        let space = c.is_whitespace();
        if last.is_some_and(|l| l != space) {
            out.extend(s.get(start..i));
            start = i;
        }
        last = Some(space);
    }
    out.extend(s.get(start..).filter(|rest| !rest.is_empty()));
    out
}

/// The words of `old` and `new` as a diff, or `None` when either has more than
/// [`MAX_DIFF_LINES`] words and spaces.
pub fn word_diff<'a>(old: &'a str, new: &'a str) -> Option<Vec<Line<'a>>> {
    lcs_diff(&words(old), &words(new))
}

/// One side of a word diff of `old` and `new`: `new` with the words it added marked (`ins`),
/// or with `old_side`, `old` with the words it lost marked (`del`). Plain text when the two
/// are too long to compare.
pub fn word_side(old: &str, new: &str, old_side: bool) -> Markup {
    let Some(parts) = word_diff(old, new) else {
        return html! { (if old_side { old } else { new }) };
    };
    html! {
        @for p in &parts {
            @match (p, old_side) {
                (Line::Same(t), _) => { (t) }
                (Line::Removed(t), true) => { del { (t) } }
                (Line::Added(t), false) => { ins { (t) } }
                _ => {}
            }
        }
    }
}

/// A diff as a table of lines marked removed (−) and added (+).
pub fn diff(old: &str, new: &str) -> Markup {
    match line_diff(old, new) {
        None => {
            html! { p.muted { "Too long to compare here (more than " (MAX_DIFF_LINES) " lines)." } }
        }
        Some(lines) => html! {
            pre.diff {
                @for l in &lines {
                    @match l {
                        Line::Same(t) => { span.same { "  " (t) } "\n" }
                        Line::Removed(t) => { del { "- " (t) } "\n" }
                        Line::Added(t) => { ins { "+ " (t) } "\n" }
                    }
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_find_what_serde_json_finds() {
        let v = json!({"a": {"b": [10, {"c": "x"}], "": 1, "t~/": 2, "01": 3}, "n": null});
        for p in [
            "",
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1/c",
            "/a/b/2",
            "/a/b/01",
            "/a/b/-1",
            "/a/b/x",
            "/a/",
            "/a/t~0~1",
            "/a/01",
            "/n",
            "/n/x",
            "/missing",
            "a",
            "/a/b/1/c/d",
        ] {
            assert_eq!(at(&v, p), v.pointer(p), "{p:?}");
        }
    }

    #[test]
    fn binary_payloads_are_never_shown_as_text() {
        let b64 = "QUJD".repeat(100);
        let data_url = format!("data:image/png;base64,{b64}");
        for v in [json!(b64), json!(data_url), json!({"image": data_url})] {
            let html = value("acme", &v).into_string();
            assert!(!html.contains("QUJDQUJD"), "{html}");
            assert!(html.contains("not shown"), "{html}");
            assert!(!preview(&v, 200).contains("QUJDQUJD"));
        }
        // Prose is not binary, however long.
        assert!(!is_binary(&"a few words ".repeat(100)));
    }

    #[test]
    fn conversations_are_rendered_as_messages_and_escaped() {
        let chat = json!([{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": [{"type": "text", "text": "<b>hi</b>"}]}]);
        let html = value("acme", &chat).into_string();
        assert!(html.contains("msg role-system") && html.contains("msg role-user"));
        assert!(html.contains("&lt;b&gt;hi&lt;/b&gt;") && !html.contains("<b>hi"));
        assert_eq!(preview(&chat, 100), "<b>hi</b>");
        assert_eq!(preview(&json!({"messages": chat}), 3), "<b>…");
    }

    #[test]
    fn deep_and_wide_values_are_bounded() {
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!({"a": deep});
        }
        let html = value("acme", &deep).into_string();
        assert_eq!(html.matches("<details").count(), MAX_TREE_DEPTH);
        let wide: Vec<u32> = (0..10_000).collect();
        let html = value("acme", &json!(wide)).into_string();
        assert_eq!(html.matches("<li>").count(), MAX_TREE_ENTRIES);
        assert!(preview(&json!(wide), 50).chars().count() <= 51);
    }

    #[test]
    fn a_line_diff_keeps_the_common_lines() {
        let d = line_diff("a\nb\nc\nd", "a\nc\nd\ne").unwrap();
        assert_eq!(
            d,
            [
                Line::Same("a"),
                Line::Removed("b"),
                Line::Same("c"),
                Line::Same("d"),
                Line::Added("e")
            ]
        );
        assert_eq!(line_diff("", "x").unwrap(), [Line::Added("x")]);
        let long = "x\n".repeat(MAX_DIFF_LINES + 1);
        assert!(line_diff(&long, "x").is_none());
        let html = diff("<a>", "<b>").into_string();
        assert!(html.contains("<del>- &lt;a&gt;</del>") && html.contains("<ins>+ &lt;b&gt;</ins>"));
    }

    #[test]
    fn a_word_diff_marks_the_words_each_side_changed() {
        assert_eq!(words("  a bc\td "), ["  ", "a", " ", "bc", "\t", "d", " "]);
        assert_eq!(words(""), Vec::<&str>::new());
        let d = word_diff("the cat sat", "the dog sat down").unwrap();
        assert_eq!(
            d,
            [
                Line::Same("the"),
                Line::Same(" "),
                Line::Removed("cat"),
                Line::Added("dog"),
                Line::Same(" "),
                Line::Same("sat"),
                Line::Added(" "),
                Line::Added("down")
            ]
        );
        let old = word_side("the <cat> sat", "the dog sat", true).into_string();
        assert_eq!(old, "the <del>&lt;cat&gt;</del> sat");
        let new = word_side("the <cat> sat", "the dog sat", false).into_string();
        assert_eq!(new, "the <ins>dog</ins> sat");
        let long = "w ".repeat(MAX_DIFF_LINES);
        assert!(word_diff(&long, "w").is_none());
        assert_eq!(word_side(&long, "w", false).into_string(), "w");
    }

    #[test]
    fn attachments_are_links_through_the_ui() {
        let v = json!({"type": "braintrust_attachment", "key": "k 1", "filename": "a.png",
                       "content_type": "image/png"});
        let html = value("my org", &v).into_string();
        assert!(
            html.contains("href=\"/app/my%20org/attachment?key=k+1&amp;content_type=image%2Fpng\""),
            "{html}"
        );
        assert!(html.contains("<img"));
    }
}
