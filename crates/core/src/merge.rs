//! Row write semantics of the SDK protocol, applied to one row at a time:
//!
//! * replace (default): the incoming row becomes the row. `created` is kept from the stored
//!   version when the incoming row has none.
//! * merge (`_is_merge: true`): objects merge recursively into the stored row; any other
//!   value, arrays included, replaces; top-level `tags` is merged as a set (stored order
//!   first, then new tags). `_merge_paths` lists paths at which the merge stops and the
//!   incoming value replaces. The stored `created` always wins. A merge onto a row that does
//!   not exist is an insert.
//! * `_array_delete: [{path, delete}]` removes the listed values from the array at `path`.
//! * delete (`_object_delete: true`): the row is hidden from reads; history keeps it.
//!
//! * a comment (a row with `comment` and `origin.id`, as `log_feedback(comment=...)` sends
//!   it) is not a row of its own: it is added to the `comments` of the row it is about (the
//!   row `origin.id`), replacing an earlier comment with the same id.
//!
//! Control fields (`_is_merge`, `_merge_paths`, `_array_delete`, `_object_delete`,
//! `_xact_id`) are stripped before storing; the store stamps `_xact_id` on read. The audit
//! fields (`_audit_source`, `_audit_metadata`) describe a write, not the row: a write that
//! carries them adds an entry to the row's `audit_data`, so a later write cannot reset what
//! an earlier one recorded. A replace keeps the row's `comments` and `audit_data` unless it
//! sends its own.
//!
//! Merges run inside the single writer that every organization shares, so their work is
//! linear in what they touch: tag unions and array deletes go through hash sets, merge paths
//! are looked up in a set, and the counts an outsider controls are capped ([`MAX_TAGS`],
//! [`MAX_MERGE_PATHS`], [`MAX_PATH_DEPTH`], [`MAX_ARRAY_DELETE_VALUES`]), including the tags
//! a merge leaves on the stored row.

use serde_json::{Map, Value};
use std::collections::HashSet;

/// Most tags a row may carry, sent or left by a merge.
pub const MAX_TAGS: usize = 1_000;
/// Most `_merge_paths` in one row.
pub const MAX_MERGE_PATHS: usize = 1_000;
/// Most comments one row may hold.
pub const MAX_COMMENTS: usize = 1_000;
/// Most `audit_data` entries one row may hold.
pub const MAX_AUDIT_ENTRIES: usize = 1_000;
/// Deepest path in `_merge_paths` or `_array_delete`.
pub const MAX_PATH_DEPTH: usize = 64;
/// Most values `_array_delete` may list in one row, over all its entries.
pub const MAX_ARRAY_DELETE_VALUES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("field `{0}` has the wrong type: {1}")]
    WrongType(&'static str, &'static str),
    #[error("row must be a JSON object")]
    NotAnObject,
    #[error("`{field}` holds too many {what}: at most {limit} are allowed")]
    TooMany {
        field: &'static str,
        what: &'static str,
        limit: usize,
    },
}

fn at_most(
    field: &'static str,
    what: &'static str,
    n: usize,
    limit: usize,
) -> Result<(), RowError> {
    if n > limit {
        return Err(RowError::TooMany { field, what, limit });
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Replace,
    Merge,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RowControl {
    pub kind: WriteKind,
    merge_paths: HashSet<Vec<String>>,
    array_delete: Vec<(Vec<String>, Vec<Value>)>,
    /// `_audit_source` and `_audit_metadata`, when the write carried them.
    audit: Map<String, Value>,
    /// For a comment: the id of the row it is about, and the entry it adds.
    comment: Option<(String, Map<String, Value>)>,
}

impl RowControl {
    /// The row a comment is about; `None` for any other write.
    pub fn comment_on(&self) -> Option<&str> {
        self.comment.as_ref().map(|(target, _)| target.as_str())
    }
}

fn string_path(v: &Value) -> Option<Vec<String>> {
    let parts = v.as_array()?;
    if parts.len() > MAX_PATH_DEPTH {
        return None;
    }
    parts
        .iter()
        .map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// A string that is equal for two values exactly when the values are equal (object keys are
/// sorted, since objects compare without regard to order): the key of hash-set membership.
fn canonical(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (k, v) in entries {
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(v, out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for v in a {
                    write(v, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// Whether a stored row is a trace's root span: a span (it has `span_id`) without parents.
pub fn is_root_span(data: &Map<String, Value>) -> bool {
    data.contains_key("span_id")
        && match data.get("span_parents") {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        }
}

/// A row that holds only comments (and the fields the server adds): one whose comments
/// arrived before the row itself. It is not shown until the row is written.
pub fn only_discussion(data: &Map<String, Value>) -> bool {
    data.contains_key("comments")
        && data.keys().all(|k| {
            matches!(
                k.as_str(),
                "id" | "created"
                    | "comments"
                    | "audit_data"
                    | "project_id"
                    | "experiment_id"
                    | "dataset_id"
                    | "log_id"
                    | "org_id"
            )
        })
}

/// Removes and validates the control fields of an incoming row.
pub fn take_control(row: &mut Map<String, Value>) -> Result<RowControl, RowError> {
    let flag = |row: &mut Map<String, Value>, name: &'static str| match row.remove(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(_) => Err(RowError::WrongType(name, "expected a boolean")),
    };
    let is_merge = flag(row, "_is_merge")?;
    let is_delete = flag(row, "_object_delete")?;
    row.remove("_xact_id");
    let merge_paths = match row.remove("_merge_paths") {
        None | Some(Value::Null) => HashSet::new(),
        Some(Value::Array(paths)) => {
            at_most("_merge_paths", "paths", paths.len(), MAX_MERGE_PATHS)?;
            paths
                .iter()
                .map(string_path)
                .collect::<Option<HashSet<_>>>()
                .ok_or(RowError::WrongType(
                    "_merge_paths",
                    "expected an array of string arrays, each at most 64 deep",
                ))?
        }
        Some(_) => return Err(RowError::WrongType("_merge_paths", "expected an array")),
    };
    let array_delete = match row.remove("_array_delete") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => {
            let parsed = entries
                .iter()
                .map(|e| {
                    let path = string_path(e.get("path")?)?;
                    let delete = e.get("delete")?.as_array()?.clone();
                    Some((path, delete))
                })
                .collect::<Option<Vec<_>>>()
                .ok_or(RowError::WrongType(
                    "_array_delete",
                    "expected [{path, delete}], paths at most 64 deep",
                ))?;
            let values = parsed.iter().map(|(_, d)| d.len()).sum::<usize>() + parsed.len();
            at_most("_array_delete", "values", values, MAX_ARRAY_DELETE_VALUES)?;
            parsed
        }
        Some(_) => return Err(RowError::WrongType("_array_delete", "expected an array")),
    };
    for (name, ok) in [
        ("id", row.get("id").is_none_or(|v| v.is_string())),
        (
            "created",
            row.get("created")
                .is_none_or(|v| v.is_string() || v.is_null()),
        ),
        (
            "tags",
            row.get("tags")
                .is_none_or(|v| v.is_null() || is_string_array(v)),
        ),
        (
            "metadata",
            row.get("metadata")
                .is_none_or(|v| v.is_null() || v.is_object()),
        ),
        ("scores", row.get("scores").is_none_or(valid_scores)),
        (
            "metrics",
            row.get("metrics")
                .is_none_or(|v| v.is_null() || v.is_object()),
        ),
    ] {
        if !ok {
            return Err(RowError::WrongType(name, type_hint(name)));
        }
    }
    if let Some(Value::Array(tags)) = row.get("tags") {
        at_most("tags", "tags", tags.len(), MAX_TAGS)?;
    }
    let mut audit = Map::new();
    for (name, ok, hint) in [
        (
            "_audit_source",
            Value::is_string as fn(&Value) -> bool,
            "expected a string",
        ),
        ("_audit_metadata", Value::is_object, "expected an object"),
    ] {
        match row.remove(name) {
            None | Some(Value::Null) => {}
            Some(v) if ok(&v) => {
                audit.insert(name.to_owned(), v);
            }
            Some(_) => return Err(RowError::WrongType(name, hint)),
        }
    }
    let target = row
        .get("origin")
        .and_then(|o| o.get("id"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let comment = match (row.get("comment"), target) {
        (Some(Value::Object(_)), Some(target)) if !is_delete => {
            let mut entry = Map::new();
            for f in ["id", "created", "comment", "origin"] {
                if let Some(v) = row.remove(f).filter(|v| !v.is_null()) {
                    entry.insert(f.to_owned(), v);
                }
            }
            entry.extend(std::mem::take(&mut audit));
            row.clear();
            Some((target, entry))
        }
        _ => None,
    };
    let kind = if is_delete {
        WriteKind::Delete
    } else if is_merge || comment.is_some() {
        WriteKind::Merge
    } else {
        WriteKind::Replace
    };
    Ok(RowControl {
        kind,
        merge_paths,
        array_delete,
        audit,
        comment,
    })
}

fn type_hint(field: &str) -> &'static str {
    match field {
        "id" => "expected a string",
        "created" => "expected an ISO-8601 string",
        "tags" => "expected an array of strings",
        "scores" => "expected an object of numbers or nulls",
        _ => "expected an object",
    }
}

fn is_string_array(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
}

fn valid_scores(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(|s| s.is_null() || s.is_number()),
        _ => false,
    }
}

/// Computes the stored row that results from writing `incoming` onto `existing`.
/// Returns `None` for a delete, and an error when a merge would leave more than [`MAX_TAGS`]
/// tags.
pub fn apply(
    existing: Option<&Map<String, Value>>,
    mut incoming: Map<String, Value>,
    control: &RowControl,
) -> Result<Option<Map<String, Value>>, RowError> {
    let mut row = match (control.kind, existing) {
        (WriteKind::Delete, _) => return Ok(None),
        (WriteKind::Replace, Some(old)) => {
            for kept in ["created", "comments", "audit_data"] {
                if incoming.get(kept).is_none_or(Value::is_null)
                    && let Some(v) = old.get(kept)
                {
                    incoming.insert(kept.into(), v.clone());
                }
            }
            incoming
        }
        (WriteKind::Merge, Some(old)) => {
            let mut merged = old.clone();
            let created = old.get("created").cloned();
            if let (Some(Value::Array(old_tags)), Some(Value::Array(new_tags))) =
                (old.get("tags"), incoming.get("tags"))
            {
                incoming.insert("tags".into(), Value::Array(union(old_tags, new_tags)?));
            }
            merge_into(&mut merged, incoming, &control.merge_paths, &mut Vec::new());
            if let Some(created) = created {
                merged.insert("created".into(), created);
            }
            merged
        }
        (_, None) => incoming,
    };
    for (path, values) in &control.array_delete {
        if let Some(Value::Array(arr)) = lookup_mut(&mut row, path) {
            let gone: HashSet<String> = values.iter().map(canonical).collect();
            arr.retain(|v| !gone.contains(&canonical(v)));
        }
    }
    if let Some((_, entry)) = &control.comment {
        let mut comments = take_list(&mut row, "comments");
        let id = entry.get("id");
        match comments
            .iter_mut()
            .find(|c| id.is_some() && c.get("id") == id)
        {
            Some(same) => *same = Value::Object(entry.clone()),
            None => comments.push(Value::Object(entry.clone())),
        }
        at_most("comments", "comments", comments.len(), MAX_COMMENTS)?;
        row.insert("comments".into(), Value::Array(comments));
    } else if !control.audit.is_empty() {
        let action = match control.kind {
            WriteKind::Merge => "merge",
            _ => "upsert",
        };
        let mut entry = Map::new();
        entry.insert("action".into(), Value::String(action.into()));
        entry.extend(control.audit.clone());
        let mut trail = take_list(&mut row, "audit_data");
        trail.push(Value::Object(entry));
        at_most("audit_data", "entries", trail.len(), MAX_AUDIT_ENTRIES)?;
        row.insert("audit_data".into(), Value::Array(trail));
    }
    Ok(Some(row))
}

/// Removes the array at top-level `field` (anything else there counts as none).
fn take_list(row: &mut Map<String, Value>, field: &str) -> Vec<Value> {
    match row.remove(field) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}
/// The stored tags, then the new ones not among them; tags are strings (checked on the way
/// in), anything else is kept as it is.
fn union(old: &[Value], new: &[Value]) -> Result<Vec<Value>, RowError> {
    let mut seen: HashSet<String> = old.iter().map(canonical).collect();
    let mut out = old.to_vec();
    for t in new {
        if seen.insert(canonical(t)) {
            out.push(t.clone());
        }
    }
    at_most("tags", "tags", out.len(), MAX_TAGS)?;
    Ok(out)
}

fn merge_into(
    target: &mut Map<String, Value>,
    source: Map<String, Value>,
    stop_paths: &HashSet<Vec<String>>,
    path: &mut Vec<String>,
) {
    for (key, value) in source {
        path.push(key.clone());
        let stop = !stop_paths.is_empty() && stop_paths.contains(path.as_slice());
        match (target.get_mut(&key), value) {
            (Some(Value::Object(t)), Value::Object(s)) if !stop => {
                merge_into(t, s, stop_paths, path)
            }
            (_, v) => {
                target.insert(key, v);
            }
        }
        path.pop();
    }
}

fn lookup_mut<'a>(row: &'a mut Map<String, Value>, path: &[String]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let mut cur = row.get_mut(first)?;
    for key in rest {
        cur = cur.as_object_mut()?.get_mut(key)?;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn write(existing: Option<Value>, incoming: Value) -> Option<Value> {
        let mut incoming = obj(incoming);
        let control = take_control(&mut incoming).unwrap();
        let existing = existing.map(obj);
        apply(existing.as_ref(), incoming, &control)
            .unwrap()
            .map(Value::Object)
    }

    #[test]
    fn replace_overwrites_but_keeps_created() {
        let out = write(
            Some(json!({"id":"a","created":"t0","input":1,"output":2})),
            json!({"id":"a","input":3}),
        );
        assert_eq!(out, Some(json!({"id":"a","input":3,"created":"t0"})));
    }

    #[test]
    fn merge_is_deep_with_tag_union_and_original_created() {
        let out = write(
            Some(
                json!({"id":"a","created":"t0","tags":["x","y"],"metadata":{"a":1,"b":{"c":1}},"arr":[1,2]}),
            ),
            json!({"id":"a","_is_merge":true,"created":"t9","tags":["y","z"],"metadata":{"b":{"d":2}},"arr":[3]}),
        );
        assert_eq!(
            out,
            Some(
                json!({"id":"a","created":"t0","tags":["x","y","z"],"metadata":{"a":1,"b":{"c":1,"d":2}},"arr":[3]})
            )
        );
    }

    #[test]
    fn merge_paths_stop_the_merge() {
        let out = write(
            Some(json!({"id":"a","metadata":{"b":{"c":1},"k":1}})),
            json!({"id":"a","_is_merge":true,"_merge_paths":[["metadata","b"]],"metadata":{"b":{"d":2}}}),
        );
        assert_eq!(out, Some(json!({"id":"a","metadata":{"b":{"d":2},"k":1}})));
    }

    /// Writes `incoming` onto the row it addresses (a comment onto the row it is about).
    fn apply_to(existing: Option<Value>, incoming: Value) -> Value {
        let mut incoming = obj(incoming);
        let control = take_control(&mut incoming).unwrap();
        let existing = existing.map(obj);
        Value::Object(
            apply(existing.as_ref(), incoming, &control)
                .unwrap()
                .unwrap(),
        )
    }

    #[test]
    fn comments_attach_to_their_row_and_audit_fields_are_kept_per_write() {
        let span = json!({"id":"r","span_id":"s","root_span_id":"t","input":1,"created":"t0"});
        let mut c = obj(
            json!({"id":"c1","comment":{"text":"hi"},"origin":{"id":"r"},"_audit_source":"external","_audit_metadata":{"u":1}}),
        );
        let control = take_control(&mut c).unwrap();
        assert_eq!(control.comment_on(), Some("r"));
        assert!(
            c.is_empty(),
            "a comment leaves nothing for the row itself: {c:?}"
        );
        let row = apply_to(
            Some(span),
            json!({"id":"c1","comment":{"text":"hi"},"origin":{"id":"r"},"_audit_source":"external","_audit_metadata":{"u":1}}),
        );
        let row = apply_to(
            Some(row),
            json!({"id":"c2","comment":{"text":"more"},"origin":{"id":"r"}}),
        );
        assert_eq!(
            row["comments"],
            json!([
                {"id":"c1","comment":{"text":"hi"},"origin":{"id":"r"},"_audit_source":"external","_audit_metadata":{"u":1}},
                {"id":"c2","comment":{"text":"more"},"origin":{"id":"r"}}
            ])
        );
        assert_eq!(row["input"], json!(1));
        // Two feedback merges: the second's null metadata does not reset the first's.
        let row = apply_to(
            Some(row),
            json!({"id":"r","_is_merge":true,"scores":{"a":1},"_audit_source":"external","_audit_metadata":{"by":"x"}}),
        );
        let row = apply_to(
            Some(row),
            json!({"id":"r","_is_merge":true,"scores":{"b":0},"_audit_source":"external","_audit_metadata":null}),
        );
        assert_eq!(
            row["audit_data"],
            json!([
                {"action":"merge","_audit_source":"external","_audit_metadata":{"by":"x"}},
                {"action":"merge","_audit_source":"external"}
            ])
        );
        assert!(row.get("_audit_metadata").is_none() && row.get("_audit_source").is_none());
        // A replace of the row keeps its discussion.
        let row = apply_to(
            Some(row),
            json!({"id":"r","span_id":"s","root_span_id":"t","input":2}),
        );
        assert_eq!(row["comments"].as_array().map(Vec::len), Some(2));
        assert_eq!(row["audit_data"].as_array().map(Vec::len), Some(2));
        // Eval rows built from a dataset carry `origin` but no comment: they stay rows.
        let mut eval_row =
            obj(json!({"id":"e","origin":{"id":"d","object_type":"dataset"},"input":1}));
        assert_eq!(take_control(&mut eval_row).unwrap().comment_on(), None);
        assert!(take_control(&mut obj(json!({"_audit_metadata":"x"}))).is_err());
    }

    #[test]
    fn merge_onto_missing_row_is_insert() {
        let out = write(None, json!({"id":"a","_is_merge":true,"x":{"y":1}}));
        assert_eq!(out, Some(json!({"id":"a","x":{"y":1}})));
    }

    #[test]
    fn array_delete_removes_values() {
        let out = write(
            Some(json!({"id":"a","tags":["x","y","z"],"m":{"l":[1,2,3]}})),
            json!({"id":"a","_is_merge":true,"_array_delete":[{"path":["tags"],"delete":["y"]},{"path":["m","l"],"delete":[1,3]}]}),
        );
        assert_eq!(out, Some(json!({"id":"a","tags":["x","z"],"m":{"l":[2]}})));
    }

    #[test]
    fn delete_hides_row() {
        assert_eq!(
            write(
                Some(json!({"id":"a"})),
                json!({"id":"a","_object_delete":true})
            ),
            None
        );
    }

    #[test]
    fn control_fields_are_validated() {
        for bad in [
            json!({"_is_merge":"yes"}),
            json!({"_merge_paths":[[1]]}),
            json!({"_array_delete":[{"path":"x"}]}),
            json!({"id":5}),
            json!({"tags":[1]}),
            json!({"scores":{"a":"high"}}),
            json!({"metadata":[]}),
        ] {
            assert!(take_control(&mut obj(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn array_delete_compares_objects_whatever_their_key_order() {
        let out = write(
            Some(json!({"id":"a","l":[{"a":1,"b":[1,{"c":2,"d":3}]},{"a":2},1,"1",1.0]})),
            json!({"id":"a","_is_merge":true,"_array_delete":[{"path":["l"],"delete":[{"b":[1,{"d":3,"c":2}],"a":1},"1",1.0]}]}),
        );
        assert_eq!(out, Some(json!({"id":"a","l":[{"a":2},1]})));
    }

    #[test]
    fn large_merges_are_exact() {
        // Sizes at the caps: with the former nested loops these were 10^7 comparisons.
        let old: Vec<String> = (0..MAX_TAGS / 2).map(|i| format!("t{i}")).collect();
        let new: Vec<String> = (MAX_TAGS / 4..MAX_TAGS).map(|i| format!("t{i}")).collect();
        let out = write(
            Some(json!({"id":"a","tags":old,"l":(0..20_000).collect::<Vec<_>>()})),
            json!({"id":"a","_is_merge":true,"tags":new,
                   "_array_delete":[{"path":["l"],"delete":(0..9_000).map(|i| i * 2).collect::<Vec<_>>()}]}),
        )
        .unwrap();
        let tags: Vec<String> = (0..MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(out["tags"], json!(tags));
        let left: Vec<u64> = (0..20_000).filter(|i| i % 2 == 1 || *i >= 18_000).collect();
        assert_eq!(out["l"], json!(left));
    }

    #[test]
    fn counts_are_capped() {
        let many = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
        let paths: Vec<Vec<String>> = (0..=MAX_MERGE_PATHS)
            .map(|i| vec![format!("p{i}")])
            .collect();
        let deep: Vec<String> = many(MAX_PATH_DEPTH + 1);
        for (bad, field) in [
            (json!({"tags": many(MAX_TAGS + 1)}), "tags"),
            (json!({"_merge_paths": paths}), "_merge_paths"),
            (json!({"_merge_paths": [deep.clone()]}), "_merge_paths"),
            (
                json!({"_array_delete": [{"path": deep, "delete": []}]}),
                "_array_delete",
            ),
            (
                json!({"_array_delete": [{"path": ["l"], "delete": many(MAX_ARRAY_DELETE_VALUES)}]}),
                "_array_delete",
            ),
        ] {
            let err = take_control(&mut obj(bad)).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
        assert!(take_control(&mut obj(json!({"tags": many(MAX_TAGS)}))).is_ok());
        // A merge that would leave too many tags on the stored row is refused.
        let mut incoming = obj(json!({"id":"a","_is_merge":true,"tags":many(MAX_TAGS)}));
        let control = take_control(&mut incoming).unwrap();
        let stored = obj(json!({"id":"a","tags":["other"]}));
        let err = apply(Some(&stored), incoming, &control).unwrap_err();
        assert!(
            matches!(err, RowError::TooMany { field: "tags", .. }),
            "{err}"
        );
    }
}
