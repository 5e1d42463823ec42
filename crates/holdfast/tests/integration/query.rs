//! The query engine's conformance table: queries in SQL, BTQL and the structured form over a
//! fixed set of traces, each with the answer it must give, on every backend.

use crate::harness::{Backend, Server, assert_error, backends};
use serde_json::{Value, json};

/// What a query must answer.
enum Want {
    /// These row ids, in any order.
    Ids(&'static [&'static str]),
    /// These row ids, in this order.
    Ordered(&'static [&'static str]),
    /// Exactly these rows (numbers compared to 1e-9).
    Rows(Value),
    /// A 400 whose message holds this text.
    Error(&'static str),
}
use Want::*;

/// Four traces in one project's logs (`P`) and one in another's (`Q`).
fn fixture(p: &str, q: &str) -> Vec<Value> {
    let span = |id: &str, root: &str, parent: Option<&str>, created: &str, extra: Value| {
        let mut row = json!({
            "id": id, "span_id": id, "root_span_id": root,
            "span_parents": parent.map_or(json!([]), |p| json!([p])),
            "created": created, "project_id": p, "log_id": "g",
        });
        for (k, v) in extra.as_object().unwrap() {
            row[k] = v.clone();
        }
        row
    };
    vec![
        span(
            "a0",
            "a0",
            None,
            "2026-01-01T10:00:00.000000Z",
            json!({
            "metadata": {"user_id": "u-1", "model": "gpt-4", "n": 1}, "scores": {"f": 0.9},
            "input": {"messages": [{"role": "user", "content": "Tell me about zebras"}]},
            "output": "Zebras are striped", "tags": ["good"],
            "metrics": {"start": 100.0, "end": 103.0},
            "span_attributes": {"name": "chat", "type": "task"}}),
        ),
        span(
            "a1",
            "a0",
            Some("a0"),
            "2026-01-01T10:00:01.000000Z",
            json!({
            "metadata": {"user_id": "u-1"}, "input": "prompt about zebras",
            "output": "Zebras are striped horses",
            "metrics": {"start": 100.5, "end": 102.5, "prompt_tokens": 10, "completion_tokens": 5},
            "span_attributes": {"name": "llm", "type": "llm"}}),
        ),
        span(
            "a2",
            "a0",
            Some("a0"),
            "2026-01-01T10:00:02.000000Z",
            json!({
            "metadata": {"user_id": "u-1"}, "scores": {"f": 0.7, "g": 1},
            "span_attributes": {"name": "score", "type": "score"}}),
        ),
        span(
            "b0",
            "b0",
            None,
            "2026-01-01T10:30:00.000000Z",
            json!({
            "metadata": {"user_id": "u-2", "model": "gpt-3.5", "n": 2}, "scores": {"f": 0.2},
            "input": "What is 2+2?", "output": "5", "tags": ["bad"],
            "metrics": {"start": 200.0, "end": 201.0},
            "span_attributes": {"name": "chat", "type": "task"}}),
        ),
        span(
            "b1",
            "b0",
            Some("b0"),
            "2026-01-01T10:30:01.000000Z",
            json!({
            "metadata": {"user_id": "u-2"}, "error": "rate limited", "input": "2+2",
            "metrics": {"start": 200.2, "end": 200.9, "prompt_tokens": 4, "completion_tokens": 1},
            "span_attributes": {"name": "llm", "type": "llm"}}),
        ),
        span(
            "c0",
            "c0",
            None,
            "2026-01-01T11:30:00.000000Z",
            json!({
            "metadata": {"user_id": "u-1", "model": "claude", "n": 3}, "scores": {"f": 0.5},
            "input": "hello world", "output": "Hello, World!", "tags": ["good", "short"],
            "metrics": {"start": 300.0, "end": 300.5},
            "span_attributes": {"name": "chat", "type": "task"}}),
        ),
        span(
            "d0",
            "d0",
            None,
            "2026-01-02T09:00:00.000000Z",
            json!({
            "metadata": {"user_id": "u-3", "n": 4}, "input": "Rare word xylophone here",
            "tags": [], "metrics": {"start": 400.0, "end": 410.0},
            "span_attributes": {"name": "batch", "type": "task"}}),
        ),
        span(
            "d1",
            "d0",
            Some("d0"),
            "2026-01-02T09:00:01.000000Z",
            json!({
            "metadata": {"user_id": "u-3"}, "output": "first",
            "span_attributes": {"type": "function"}}),
        ),
        span(
            "d2",
            "d0",
            Some("d0"),
            "2026-01-02T09:00:02.000000Z",
            json!({
            "metadata": {"raw": "{\"k\": 5}"}, "output": "second", "scores": {"f": 0.4}}),
        ),
        span(
            "d3",
            "d0",
            Some("d1"),
            "2026-01-02T09:00:03.000000Z",
            json!({
            "output": "third 50% done", "error": "boom"}),
        ),
        {
            let mut e = span(
                "e0",
                "e0",
                None,
                "2026-01-03T00:00:00.000000Z",
                json!({
                "metadata": {"user_id": "u-1", "model": "gpt-4"},
                "input": "other project zebra", "scores": {"f": 1.0}}),
            );
            e["project_id"] = json!(q);
            e
        },
    ]
}

/// Filters, each asked in SQL and in BTQL over project P.
fn filters() -> Vec<(&'static str, Want)> {
    vec![
        ("metadata.user_id = 'u-1'", Ids(&["a0", "a1", "a2", "c0"])),
        // One row by id (read through the row index): the rest of the filter still applies,
        // and a row of another project is not found.
        ("id = 'c0'", Ids(&["c0"])),
        ("id = 'c0' AND metadata.user_id = 'u-2'", Ids(&[])),
        ("metadata.user_id = 'u-1' AND id = 'a1'", Ids(&["a1"])),
        ("id = 'c0' OR id = 'b1'", Ids(&["b1", "c0"])),
        ("id = 'no such row'", Ids(&[])),
        ("id = 'e0'", Ids(&[])),
        ("metadata.user_id != 'u-1'", Ids(&["b0", "b1", "d0", "d1"])),
        ("metadata.user_id <> 'u-1'", Ids(&["b0", "b1", "d0", "d1"])),
        (
            "metadata.model IS NULL",
            Ids(&["a1", "a2", "b1", "d0", "d1", "d2", "d3"]),
        ),
        ("metadata.model IS NOT NULL", Ids(&["a0", "b0", "c0"])),
        ("scores.f > 0.5", Ids(&["a0", "a2"])),
        ("scores.f >= 0.5", Ids(&["a0", "a2", "c0"])),
        ("scores.f < 0.5", Ids(&["b0", "d2"])),
        ("scores.f <= 0.2", Ids(&["b0"])),
        ("scores.f BETWEEN 0.4 AND 0.7", Ids(&["a2", "c0", "d2"])),
        ("scores.f NOT BETWEEN 0.4 AND 0.7", Ids(&["a0", "b0"])),
        ("metadata.n IN (1, 3)", Ids(&["a0", "c0"])),
        ("metadata.n NOT IN (1, 3)", Ids(&["b0", "d0"])),
        ("metadata.model LIKE 'gpt%'", Ids(&["a0", "b0"])),
        ("metadata.model NOT LIKE 'gpt%'", Ids(&["c0"])),
        ("metadata.model LIKE 'gpt-_'", Ids(&["a0"])),
        ("output ILIKE '%world%'", Ids(&["c0"])),
        ("output LIKE '%World%'", Ids(&["c0"])),
        ("output LIKE '%world%'", Ids(&[])),
        ("output LIKE '%50\\% done'", Ids(&["d3"])),
        ("input MATCH 'zebras'", Ids(&["a0", "a1"])),
        ("output MATCH 'ZEBRAS'", Ids(&["a0", "a1"])),
        ("input MATCH 'xylophone'", Ids(&["d0"])),
        ("input MATCH 'nowhere'", Ids(&[])),
        (
            "input MATCH 'xylophone' OR output MATCH 'world'",
            Ids(&["c0", "d0"]),
        ),
        ("input MATCH 'tell zebras'", Ids(&["a0"])),
        ("input MATCH 'tell horses'", Ids(&[])),
        ("error IS NOT NULL", Ids(&["b1", "d3"])),
        ("tags INCLUDES 'good'", Ids(&["a0", "c0"])),
        ("tags CONTAINS 'short'", Ids(&["c0"])),
        ("tags NOT INCLUDES 'good'", Ids(&["b0", "d0"])),
        ("span_attributes.type = 'llm'", Ids(&["a1", "b1"])),
        ("is_root", Ids(&["a0", "b0", "c0", "d0"])),
        (
            "is_root = false",
            Ids(&["a1", "a2", "b1", "d1", "d2", "d3"]),
        ),
        ("NOT is_root", Ids(&["a1", "a2", "b1", "d1", "d2", "d3"])),
        (
            "created >= '2026-01-02T00:00:00Z'",
            Ids(&["d0", "d1", "d2", "d3"]),
        ),
        ("created < '2026-01-01T10:30:00Z'", Ids(&["a0", "a1", "a2"])),
        ("created > now() - interval 1 day", Ids(&[])),
        (
            "created > now() - interval '52 weeks'",
            Ids(&["a0", "a1", "a2", "b0", "b1", "c0", "d0", "d1", "d2", "d3"]),
        ),
        (
            "created < now()",
            Ids(&["a0", "a1", "a2", "b0", "b1", "c0", "d0", "d1", "d2", "d3"]),
        ),
        (
            "metrics.prompt_tokens + metrics.completion_tokens > 10",
            Ids(&["a1"]),
        ),
        ("metrics.end - metrics.start > 2", Ids(&["a0", "d0"])),
        ("lower(metadata.model) = 'claude'", Ids(&["c0"])),
        ("upper(output) LIKE '%ZEBRAS%'", Ids(&["a0", "a1"])),
        ("length(output) < 6", Ids(&["b0", "d1"])),
        (
            "coalesce(metadata.model, 'none') = 'none'",
            Ids(&["a1", "a2", "b1", "d0", "d1", "d2", "d3"]),
        ),
        (
            "metadata.user_id = 'u-1' AND scores.f > 0.6",
            Ids(&["a0", "a2"]),
        ),
        (
            "metadata.user_id = 'u-1' OR error IS NOT NULL",
            Ids(&["a0", "a1", "a2", "b1", "c0", "d3"]),
        ),
        (
            "NOT (metadata.user_id = 'u-1')",
            Ids(&["b0", "b1", "d0", "d1"]),
        ),
        (
            "CASE WHEN scores.f > 0.5 THEN 'hi' ELSE 'lo' END = 'hi'",
            Ids(&["a0", "a2"]),
        ),
        (
            "hour(created) = '2026-01-01T10:00:00Z'",
            Ids(&["a0", "a1", "a2", "b0", "b1"]),
        ),
        (
            "date_trunc('day', created) = '2026-01-02T00:00:00Z'",
            Ids(&["d0", "d1", "d2", "d3"]),
        ),
        ("metadata.n % 2 = 0", Ids(&["b0", "d0"])),
        ("-metadata.n < -3", Ids(&["d0"])),
        ("metadata.n * 2 = 6", Ids(&["c0"])),
        ("metadata.n / 2 = 1.5", Ids(&["c0"])),
        ("root_span_id = 'd0'", Ids(&["d0", "d1", "d2", "d3"])),
        ("root_span_id = 'd0' AND output = 'second'", Ids(&["d2"])),
        ("json_extract(metadata.raw, '$.k') = 5", Ids(&["d2"])),
        ("span_attributes.name = 'chat'", Ids(&["a0", "b0", "c0"])),
        ("scores.g = 1.0", Ids(&["a2"])),
        (
            "nullif(metadata.model, 'gpt-4') IS NULL AND metadata.n > 0",
            Ids(&["a0", "d0"]),
        ),
        // As in PostgreSQL, greatest() skips nulls.
        (
            "greatest(metadata.n, 2) = 2",
            Ids(&["a0", "a1", "a2", "b0", "b1", "d1", "d2", "d3"]),
        ),
        ("id IN ('a0', 'zz', 'c0')", Ids(&["a0", "c0"])),
        ("\"metadata\".\"user_id\" = \"u-2\"", Ids(&["b0", "b1"])),
        ("metadata.user_id = 'x''; DROP TABLE rows; --'", Ids(&[])),
    ]
}

/// Whole queries; `P` and `Q` stand for the two projects' ids.
fn queries() -> Vec<(&'static str, Want)> {
    vec![
        // Braintrust's documentation examples, on this fixture's fields (`scores.f` for
        // `scores.Factuality`, project P for the project id).
        (
            "SELECT * FROM project_logs('P', shape => 'spans') WHERE scores.f > 0.8 AND created > now() - interval 7 day ORDER BY created DESC LIMIT 100",
            Ids(&[]),
        ),
        (
            "SELECT * FROM project_logs('P', shape => 'spans') WHERE scores.f > 0.5 AND created > now() - interval 3650 day ORDER BY created DESC LIMIT 100",
            Ordered(&["a2", "a0"]),
        ),
        (
            "select: * | from: project_logs('P') spans | filter: scores.f > 0.5 and created > now() - interval 3650 day | sort: created desc | limit: 100",
            Ordered(&["a2", "a0"]),
        ),
        (
            "SELECT * FROM project_logs('P') WHERE tags INCLUDES 'good'",
            Ids(&["a0", "c0"]),
        ),
        (
            "select: * | from: project_logs('P') | filter: tags includes 'good'",
            Ids(&["a0", "c0"]),
        ),
        (
            "SELECT * FROM project_logs('P') LIMIT 10",
            Ids(&["a0", "a1", "a2", "b0", "b1", "c0", "d0", "d1", "d2", "d3"]),
        ),
        (
            "SELECT count(*) AS n FROM project_logs('P') WHERE created < CURRENT_DATE - INTERVAL 1 DAY",
            Rows(json!([{"n": 10}])),
        ),
        (
            "SELECT id FROM project_logs('P') WHERE metadata.user_id = 'u-3'",
            Ids(&["d0", "d1"]),
        ),
        // Projections and sorting.
        (
            "SELECT id, scores.f AS f FROM project_logs('P') WHERE is_root ORDER BY f DESC",
            Rows(
                json!([{"id": "a0", "f": 0.9}, {"id": "c0", "f": 0.5}, {"id": "b0", "f": 0.2}, {"id": "d0", "f": null}]),
            ),
        ),
        (
            "SELECT id FROM project_logs('P') WHERE is_root ORDER BY scores.f",
            Ordered(&["b0", "c0", "a0", "d0"]),
        ),
        (
            "SELECT id FROM project_logs('P') WHERE is_root ORDER BY created DESC LIMIT 2",
            Ordered(&["d0", "c0"]),
        ),
        (
            "select: id | from: project_logs('P') | filter: is_root | sort: metadata.n desc | limit: 3",
            Ordered(&["d0", "c0", "b0"]),
        ),
        (
            "SELECT id, metadata.n * 10 AS n10 FROM project_logs('P') WHERE metadata.n > 2 ORDER BY n10",
            Rows(json!([{"id": "c0", "n10": 30}, {"id": "d0", "n10": 40}])),
        ),
        (
            "SELECT upper(metadata.model) AS m FROM project_logs('P') WHERE metadata.model IS NOT NULL ORDER BY m",
            Rows(json!([{"m": "CLAUDE"}, {"m": "GPT-3.5"}, {"m": "GPT-4"}])),
        ),
        (
            "SELECT id FROM project_logs('P') WHERE is_root ORDER BY metadata.user_id, created DESC",
            Ordered(&["c0", "a0", "b0", "d0"]),
        ),
        (
            "SELECT id, CASE WHEN error IS NULL THEN 'ok' ELSE 'failed' END AS status FROM project_logs('P') WHERE root_span_id = 'b0' ORDER BY id",
            Rows(json!([{"id": "b0", "status": "ok"}, {"id": "b1", "status": "failed"}])),
        ),
        (
            "SELECT id, span_attributes.type FROM project_logs('P') WHERE root_span_id = 'a0' ORDER BY created DESC",
            Rows(
                json!([{"id": "a2", "type": "score"}, {"id": "a1", "type": "llm"}, {"id": "a0", "type": "task"}]),
            ),
        ),
        // A trace's spans filtered and sorted on fields the select does not name.
        (
            "SELECT id, output FROM project_logs('P') WHERE root_span_id = 'a0' AND metadata.user_id = 'u-1' AND input IS NOT NULL AND NOT is_root",
            Rows(json!([{"id": "a1", "output": "Zebras are striped horses"}])),
        ),
        (
            "SELECT id, input AS asked FROM project_logs('P') WHERE root_span_id = 'a0' ORDER BY scores.f DESC, id",
            Rows(
                json!([{"id": "a0", "asked": {"messages": [{"role": "user", "content": "Tell me about zebras"}]}},
                       {"id": "a2", "asked": null}, {"id": "a1", "asked": "prompt about zebras"}]),
            ),
        ),
        (
            "select: id, concat(metadata.user_id, '/', metadata.model) as k | from: project_logs('P') | filter: metadata.n = 1",
            Rows(json!([{"id": "a0", "k": "u-1/gpt-4"}])),
        ),
        (
            "SELECT id, round(metrics.end - metrics.start, 1) AS d FROM project_logs('P') WHERE root_span_id = 'b0' ORDER BY d DESC",
            Rows(json!([{"id": "b0", "d": 1}, {"id": "b1", "d": 0.7}])),
        ),
        // Grouping and aggregates.
        (
            "SELECT metadata.user_id AS user, count(*) AS n FROM project_logs('P') GROUP BY 1 ORDER BY user",
            Rows(
                json!([{"user": "u-1", "n": 4}, {"user": "u-2", "n": 2}, {"user": "u-3", "n": 2}, {"user": null, "n": 2}]),
            ),
        ),
        (
            "SELECT metadata.user_id, count(*) AS n FROM project_logs('P') GROUP BY metadata.user_id HAVING count(*) > 2",
            Rows(json!([{"user_id": "u-1", "n": 4}])),
        ),
        (
            "SELECT count(*) AS n FROM project_logs('P')",
            Rows(json!([{"n": 10}])),
        ),
        (
            "SELECT count(*) AS n FROM project_logs('P') WHERE input MATCH 'nowhere'",
            Rows(json!([{"n": 0}])),
        ),
        (
            "SELECT count(DISTINCT metadata.user_id) AS users FROM project_logs('P')",
            Rows(json!([{"users": 3}])),
        ),
        (
            "SELECT count(metadata.model) AS n FROM project_logs('P')",
            Rows(json!([{"n": 3}])),
        ),
        (
            "SELECT sum(metrics.prompt_tokens) AS p, max(scores.f) AS hi, min(scores.f) AS lo FROM project_logs('P')",
            Rows(json!([{"p": 14, "hi": 0.9, "lo": 0.2}])),
        ),
        (
            "SELECT avg(scores.f) AS a FROM project_logs('P') WHERE is_root",
            Rows(json!([{"a": 0.533_333_333_333_333_3}])),
        ),
        (
            "SELECT percentile(metrics.end - metrics.start, 0.5) AS p50 FROM project_logs('P') WHERE is_root",
            Rows(json!([{"p50": 2.0}])),
        ),
        (
            "SELECT hour(created) AS h, count(*) AS n FROM project_logs('P') GROUP BY 1 ORDER BY h",
            Rows(
                json!([{"h": "2026-01-01T10:00:00.000000Z", "n": 5}, {"h": "2026-01-01T11:00:00.000000Z", "n": 1},
                     {"h": "2026-01-02T09:00:00.000000Z", "n": 4}]),
            ),
        ),
        (
            "from: project_logs('P') | dimensions: span_attributes.type as t | measures: count(1) as n | sort: n desc, t",
            Rows(
                json!([{"t": "task", "n": 4}, {"t": "llm", "n": 2}, {"t": null, "n": 2}, {"t": "function", "n": 1}, {"t": "score", "n": 1}]),
            ),
        ),
        (
            "SELECT metadata.model AS model, avg(scores.f) AS f FROM project_logs('P') WHERE is_root GROUP BY 1 ORDER BY f DESC",
            Rows(
                json!([{"model": "gpt-4", "f": 0.9}, {"model": "claude", "f": 0.5}, {"model": "gpt-3.5", "f": 0.2}, {"model": null, "f": null}]),
            ),
        ),
        (
            "SELECT count(*) AS n, sum(metadata.n) / count(metadata.n) AS mean_n FROM project_logs('P')",
            Rows(json!([{"n": 10, "mean_n": 2.5}])),
        ),
        (
            "SELECT day(created) AS d, count(*) AS n FROM project_logs('P') GROUP BY 1 HAVING n > 4 ORDER BY d",
            Rows(json!([{"d": "2026-01-01T00:00:00.000000Z", "n": 6}])),
        ),
        (
            "SELECT date_trunc('week', created) AS w, count(*) AS n FROM project_logs('P') GROUP BY 1",
            Rows(json!([{"w": "2025-12-29T00:00:00.000000Z", "n": 10}])),
        ),
        (
            "SELECT metadata.user_id AS u, count(*) AS n FROM project_logs('P') WHERE metadata.user_id IS NOT NULL GROUP BY 1 ORDER BY n DESC, u LIMIT 2",
            Rows(json!([{"u": "u-1", "n": 4}, {"u": "u-2", "n": 2}])),
        ),
        (
            "SELECT is_root AS root, sum(metrics.prompt_tokens) AS t FROM project_logs('P') GROUP BY 1 ORDER BY root",
            Rows(json!([{"root": false, "t": 14}, {"root": true, "t": null}])),
        ),
        (
            "from: project_logs('P') | measures: count(1) as n, max(created) as last | filter: error is not null",
            Rows(json!([{"n": 2, "last": "2026-01-02T09:00:03.000000Z"}])),
        ),
        // Shapes.
        (
            "SELECT * FROM project_logs('P', shape => 'traces') WHERE output MATCH 'striped'",
            Ids(&["a0", "a1", "a2"]),
        ),
        (
            "from: project_logs('P') traces | filter: error IS NOT NULL",
            Ids(&["b0", "b1", "d0", "d1", "d2", "d3"]),
        ),
        (
            "SELECT id FROM project_logs('P', shape => 'traces') WHERE input MATCH 'nowhere'",
            Ids(&[]),
        ),
        (
            "SELECT id FROM project_logs('P', shape => 'summary') WHERE metadata.user_id = 'u-3'",
            Ids(&["d0"]),
        ),
        (
            "SELECT id FROM project_logs('P', shape => 'summary') ORDER BY created DESC LIMIT 3",
            Ordered(&["d0", "c0", "b0"]),
        ),
        (
            "SELECT id, metrics.span_count AS spans, metrics.tokens AS tokens, scores.f AS f, metrics.error_count AS errors FROM project_logs('P', shape => 'summary') ORDER BY created",
            Rows(
                json!([{"id": "a0", "spans": 3, "tokens": 15, "f": 0.8, "errors": 0},
                     {"id": "b0", "spans": 2, "tokens": 5, "f": 0.2, "errors": 1},
                     {"id": "c0", "spans": 1, "tokens": null, "f": 0.5, "errors": 0},
                     {"id": "d0", "spans": 4, "tokens": null, "f": 0.4, "errors": 1}]),
            ),
        ),
        (
            "SELECT id FROM project_logs('P', shape => 'summary') WHERE span_attributes.type = 'llm' ORDER BY created",
            Ordered(&["a0", "b0"]),
        ),
        (
            "select: id, metrics.duration as d | from: project_logs('P') summary | filter: input match 'xylophone'",
            Rows(json!([{"id": "d0", "d": 10.0}])),
        ),
        (
            "SELECT id FROM project_logs('P', shape => 'traces') WHERE is_root ORDER BY metadata.n DESC LIMIT 1",
            Ids(&["d0", "d1", "d2", "d3"]),
        ),
        // Several objects.
        (
            "SELECT id FROM project_logs('P', 'Q') WHERE input MATCH 'zebra'",
            Ids(&["e0"]),
        ),
        (
            "SELECT id FROM project_logs('P', 'Q') WHERE metadata.model = 'gpt-4' ORDER BY created DESC",
            Ordered(&["e0", "a0"]),
        ),
        (
            "SELECT count(*) AS n FROM project_logs('P', 'Q')",
            Rows(json!([{"n": 11}])),
        ),
        (
            "SELECT id FROM project_logs('P', 'Q', shape => 'summary') ORDER BY created DESC LIMIT 2",
            Ordered(&["e0", "d0"]),
        ),
        // Refusals.
        (
            "SELECT * FROM project_logs('P') WHERE nope(input) = 1",
            Error("unknown function `nope`"),
        ),
        (
            "SELECT * FROM project_logs('P') GROUP BY input",
            Error("SELECT * cannot be grouped"),
        ),
        (
            "SELECT count(*) AS n FROM project_logs('P') ORDER BY created",
            Error("`created` is not a dimension or measure"),
        ),
        (
            "from: project_logs('P') | measures: metadata.n as n",
            Error("has no aggregate"),
        ),
        (
            "SELECT * FROM project_logs('P') WHERE count(*) > 1",
            Error("allowed only in measures"),
        ),
        (
            "SELECT * FROM project_logs('P', shape => 'trees')",
            Error("unknown shape"),
        ),
        (
            "SELECT * FROM project_logs('P') WHERE created > now() - interval 1 month",
            Error("interval unit \"month\""),
        ),
        (
            "SELECT id AS x, input AS x FROM project_logs('P')",
            Error("`x` is used twice"),
        ),
        (
            "SELECT * FROM project_logs('P') LIMIT 0",
            Error("positive integer"),
        ),
        (
            "SELECT count(*) AS n FROM project_logs('P') OFFSET 'abc'",
            Error("one page"),
        ),
        (
            "SELECT * FROM project_logs('P') OFFSET 'abc'",
            Error("invalid cursor"),
        ),
        (
            "SELECT * FROM project_logs('P') WHERE lower() = 'x'",
            Error("takes 1 argument"),
        ),
        (
            "SELECT metadata.user_id AS u FROM project_logs('P') GROUP BY 1 HAVING input = 'x'",
            Error("`input` is not a dimension"),
        ),
        (
            "SELECT * FROM project_logs('P') WHERE input LIKE",
            Error("expected a field or a literal"),
        ),
        (
            "SELECT * FROM project_logs('P') WHERE a = 1 UNION SELECT * FROM project_logs('Q')",
            Error("UNION is not allowed here"),
        ),
    ]
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-9
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

async fn check(server: &Server, query: Value, want: &Want, label: &str) {
    let (status, body) = server
        .call(
            "POST",
            "/btql",
            Some(&server.key),
            Some(json!({"query": query})),
        )
        .await;
    let ids = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{label}: {body}"))
            .iter()
            .map(|r| r["id"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    match want {
        Error(says) => {
            assert_eq!(status, 400, "{label}: {body}");
            let m = body["error"]["message"].as_str().unwrap_or("");
            assert!(m.contains(says), "{label}: wanted {says:?} in {body}");
        }
        Ids(want) => {
            assert_eq!(status, 200, "{label}: {body}");
            let mut got = ids(&body);
            got.sort();
            assert_eq!(got, *want, "{label}");
        }
        Ordered(want) => {
            assert_eq!(status, 200, "{label}: {body}");
            assert_eq!(ids(&body), *want, "{label}");
        }
        Rows(want) => {
            assert_eq!(status, 200, "{label}: {body}");
            assert!(
                same(&body["data"], want),
                "{label}: got {} want {want}",
                body["data"]
            );
        }
    }
}

/// Every query of the table, in each front end it is written for, on this backend: with the
/// word index, and reading every row instead (the same answers either way).
async fn conformance(backend: Backend) {
    for env in [
        [("HOLDFAST_QUERY_SEARCH_INDEX", "true")],
        [("HOLDFAST_QUERY_SEARCH_INDEX", "false")],
    ] {
        conformance_with(backend, &env).await;
    }
}

async fn conformance_with(backend: Backend, env: &[(&str, &str)]) {
    let server = Server::start_with(backend, env).await;
    let p = server
        .ok("POST", "/v1/project", Some(json!({"name": "qc"})))
        .await;
    let q = server
        .ok("POST", "/v1/project", Some(json!({"name": "qc2"})))
        .await;
    let (p, q) = (p["id"].as_str().unwrap(), q["id"].as_str().unwrap());
    server
        .ok("POST", "/logs3", Some(json!({"rows": fixture(p, q)})))
        .await;
    let fill = |text: &str| {
        text.replace("'P'", &format!("'{p}'"))
            .replace("'Q'", &format!("'{q}'"))
    };
    let mut asked = 0;
    for (filter, want) in filters() {
        let sql = fill(&format!("SELECT * FROM project_logs('P') WHERE {filter}"));
        check(&server, json!(sql), &want, &sql).await;
        let btql = fill(&format!(
            "select: * | from: project_logs('P') spans | filter: {filter}"
        ));
        check(&server, json!(btql), &want, &btql).await;
        asked += 2;
    }
    for (text, want) in queries() {
        let text = fill(text);
        check(&server, json!(text), &want, &text).await;
        asked += 1;
    }
    // The structured form the text becomes answers the same.
    let structured = json!({
        "from": {"op": "function", "name": {"op": "ident", "name": ["project_logs"]},
                 "args": [{"op": "literal", "value": p}], "shape": "summary"},
        "select": [{"alias": "id", "expr": {"op": "ident", "name": ["id"]}}],
        "filter": {"op": "match", "left": {"op": "ident", "name": ["output"]},
                   "right": {"op": "literal", "value": "world"}},
        "sort": [{"expr": {"op": "ident", "name": ["created"]}, "dir": "desc"}]});
    check(&server, structured, &Ordered(&["c0"]), "structured summary").await;
    let grouped = json!({
        "from": {"op": "function", "name": {"op": "ident", "name": ["project_logs"]},
                 "args": [{"op": "literal", "value": p}]},
        "dimensions": [{"alias": "u", "expr": {"op": "ident", "name": ["metadata", "user_id"]}}],
        "measures": [{"alias": "n", "expr": {"op": "function", "name": {"op": "ident", "name": ["count"]},
                                             "args": [{"op": "star"}]}}],
        "filter": {"op": "eq", "left": {"op": "ident", "name": ["metadata", "user_id"]},
                   "right": {"op": "literal", "value": "u-2"}}});
    check(
        &server,
        grouped,
        &Rows(json!([{"u": "u-2", "n": 2}])),
        "structured grouped",
    )
    .await;
    asked += 2;
    assert!(asked >= 100, "the table asks {asked} queries");
}

/// The ids of every page of a query, following its cursors; `late` is written after the
/// first page.
async fn all_pages(server: &Server, text: String, late: Option<Value>) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        assert!(page < 200, "{text}: too many pages");
        let t = match &cursor {
            Some(c) => format!("{text} OFFSET '{c}'"),
            None => text.clone(),
        };
        let body = server.ok("POST", "/btql", Some(json!({"query": t}))).await;
        if page == 0
            && let Some(row) = &late
        {
            server
                .ok("POST", "/logs3", Some(json!({"rows": [row]})))
                .await;
        }
        for r in body["data"].as_array().unwrap() {
            seen.push(r["id"].as_str().unwrap().to_owned());
        }
        match body["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen
}

/// Pages of a sorted query, of traces and of summaries: every row once, in order, while
/// new rows keep arriving.
async fn paging(backend: Backend) {
    let server = Server::start(backend).await;
    let p = server
        .ok("POST", "/v1/project", Some(json!({"name": "qp"})))
        .await;
    let q = server
        .ok("POST", "/v1/project", Some(json!({"name": "qp2"})))
        .await;
    let (p, q) = (p["id"].as_str().unwrap(), q["id"].as_str().unwrap());
    server
        .ok("POST", "/logs3", Some(json!({"rows": fixture(p, q)})))
        .await;
    let late = json!({"id": "late", "span_id": "late", "root_span_id": "late",
        "span_parents": [], "project_id": p, "log_id": "g",
        "created": "2026-01-05T00:00:00.000000Z", "scores": {"f": 0.99},
        "metadata": {"n": 9}});
    // Rows written after the first page are not part of this query's snapshot.
    let all_pages = |text: String| all_pages(&server, text, Some(late.clone()));
    let seen = all_pages(format!(
        "SELECT id FROM project_logs('{p}') ORDER BY scores.f DESC, id LIMIT 2"
    ))
    .await;
    assert_eq!(
        seen,
        ["a0", "a2", "c0", "d2", "b0", "a1", "b1", "d0", "d1", "d3"]
    );
    let seen = all_pages(format!(
        "SELECT id FROM project_logs('{p}', shape => 'traces') WHERE metadata.n >= 1 AND metadata.n <= 4 LIMIT 1"
    ))
    .await;
    assert_eq!(
        seen,
        ["a0", "a1", "a2", "b0", "b1", "c0", "d0", "d1", "d2", "d3"]
    );
    // A trace with several matching spans appears once, on the page of its first match.
    let seen = all_pages(format!(
        "SELECT id FROM project_logs('{p}', shape => 'summary') WHERE metadata.user_id IS NOT NULL OR error IS NOT NULL LIMIT 1"
    ))
    .await;
    assert_eq!(seen, ["a0", "b0", "c0", "d0"]);
    let seen = all_pages(format!(
        "SELECT id FROM project_logs('{p}', '{q}', shape => 'summary') ORDER BY created DESC LIMIT 2"
    ))
    .await;
    assert_eq!(seen, ["late", "e0", "d0", "c0", "b0", "a0"]);
    // A last page that the rows read show to be the last has no cursor (the trace of a0
    // has three spans); one that cannot tell has one.
    for (limit, pages) in [(3, 1), (5, 1), (2, 2), (1, 3)] {
        let text =
            format!("SELECT id FROM project_logs('{p}') WHERE root_span_id = 'a0' LIMIT {limit}");
        let mut cursor: Option<String> = None;
        let mut seen = Vec::new();
        let mut read = 0;
        loop {
            let t = match &cursor {
                Some(c) => format!("{text} OFFSET '{c}'"),
                None => text.clone(),
            };
            let body = server.ok("POST", "/btql", Some(json!({"query": t}))).await;
            read += 1;
            seen.extend(
                body["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].clone()),
            );
            match body["cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, ["a0", "a1", "a2"], "{text}");
        assert_eq!(read, pages, "{text}");
    }
}

/// Queries read only what the caller may read: an object of another project is a 404 for a
/// key limited to one project, even next to one it may read.
async fn queries_respect_access(backend: Backend) {
    let server = Server::start(backend).await;
    let p = server
        .ok("POST", "/v1/project", Some(json!({"name": "qa"})))
        .await;
    let q = server
        .ok("POST", "/v1/project", Some(json!({"name": "qa2"})))
        .await;
    let (p, q) = (p["id"].as_str().unwrap(), q["id"].as_str().unwrap());
    server
        .ok("POST", "/logs3", Some(json!({"rows": fixture(p, q)})))
        .await;
    let viewer = server.member_key("viewer@example.com", "Viewers");
    let limited = server
        .ok(
            "POST",
            "/v1/api_key",
            Some(json!({"name": "only-p", "project_ids": [p]})),
        )
        .await;
    let limited = limited["key"].as_str().unwrap().to_owned();
    let ask = |key: String, text: String| {
        let server = &server;
        async move {
            server
                .call("POST", "/btql", Some(&key), Some(json!({"query": text})))
                .await
        }
    };
    let (s, b) = ask(
        viewer.clone(),
        format!("SELECT count(*) AS n FROM project_logs('{p}', '{q}')"),
    )
    .await;
    assert_eq!((s, &b["data"]), (200, &json!([{"n": 11}])), "{b}");
    let (s, b) = ask(
        limited.clone(),
        format!("SELECT count(*) AS n FROM project_logs('{p}')"),
    )
    .await;
    assert_eq!((s, &b["data"]), (200, &json!([{"n": 10}])), "{b}");
    // By name: the same answers; another project's name is as unknown as its id.
    let (s, b) = ask(
        viewer.clone(),
        "SELECT count(*) AS n FROM project_logs('qa', 'qa2')".into(),
    )
    .await;
    assert_eq!((s, &b["data"]), (200, &json!([{"n": 11}])), "{b}");
    let (s, b) = ask(
        limited.clone(),
        "SELECT count(*) AS n FROM project_logs('qa')".into(),
    )
    .await;
    assert_eq!((s, &b["data"]), (200, &json!([{"n": 10}])), "{b}");
    for text in [
        "SELECT count(*) AS n FROM project_logs('qa2')".to_owned(),
        "SELECT count(*) AS n FROM project_logs('no such project')".to_owned(),
        format!("SELECT count(*) AS n FROM project_logs('{p}', '{q}')"),
        format!("SELECT * FROM project_logs('{q}', shape => 'summary')"),
        format!("from: project_logs('{q}') | dimensions: id as i | measures: count(1) as n"),
    ] {
        let (s, b) = ask(limited.clone(), text.clone()).await;
        assert_error(s, &b, 404, "not_found");
    }
}

/// The word index follows every write: a row is found by its new words as soon as the
/// write is acknowledged, and no longer by words it lost; a deleted row is not found.
async fn search_follows_writes(backend: Backend) {
    let server = Server::start(backend).await;
    let p = server
        .ok("POST", "/v1/project", Some(json!({"name": "qs"})))
        .await;
    let p = p["id"].as_str().unwrap();
    let ids = |body: &Value| -> Vec<String> {
        let mut v: Vec<String> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let find = |word: &str| {
        let text = format!(
            "SELECT id FROM project_logs('{p}') WHERE output MATCH '{word}' OR metadata.tag = '{word}'"
        );
        let server = &server;
        async move {
            ids(&server
                .ok("POST", "/btql", Some(json!({"query": text})))
                .await)
        }
    };
    let write = |row: Value| {
        let server = &server;
        let mut row = row;
        row["project_id"] = json!(p);
        row["log_id"] = json!("g");
        async move {
            server
                .ok("POST", "/logs3", Some(json!({"rows": [row]})))
                .await
        }
    };
    write(json!({"id": "r1", "output": "alpha beta", "metadata": {"tag": "gamma"}})).await;
    write(json!({"id": "r2", "output": "beta"})).await;
    assert_eq!(find("alpha").await, ["r1"]);
    assert_eq!(find("beta").await, ["r1", "r2"]);
    assert_eq!(find("gamma").await, ["r1"]);
    // A merge that replaces the output: found by the new word at once, not by the old one.
    write(json!({"id": "r1", "output": "delta", "_is_merge": true})).await;
    assert_eq!(find("alpha").await, Vec::<String>::new());
    assert_eq!(find("delta").await, ["r1"]);
    assert_eq!(find("gamma").await, ["r1"], "the merge kept the metadata");
    // Deleted: not found by any of its words.
    write(json!({"id": "r2", "_object_delete": true})).await;
    assert_eq!(find("beta").await, Vec::<String>::new());
    // A word too long to index (PostgreSQL takes at most 2,047 bytes) is still found.
    let long = "z".repeat(3_000);
    write(json!({"id": "big", "output": format!("kappa {long}")})).await;
    assert_eq!(find("kappa").await, ["big"]);
    assert_eq!(find(&long[..2_999]).await, Vec::<String>::new());
    assert_eq!(find(&long).await, ["big"]);
    // A page of candidates that are all outdated still ends.
    for i in 0..30 {
        write(json!({"id": format!("m{i}"), "output": "omega"})).await;
        write(json!({"id": format!("m{i}"), "output": "psi", "_is_merge": true})).await;
    }
    assert_eq!(find("omega").await, Vec::<String>::new());
    assert_eq!(find("psi").await.len(), 30);
}

/// Writes rows to a project's logs.
async fn log_rows(server: &Server, project: &str, rows: Vec<Value>) {
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|mut r| {
            r["project_id"] = json!(project);
            r["log_id"] = json!("g");
            r
        })
        .collect();
    server
        .ok("POST", "/logs3", Some(json!({"rows": rows})))
        .await;
}

/// Waits until the embedded store's word and value indexes hold every version written.
async fn indexed(server: &Server) {
    for _ in 0..600 {
        if server.metric("holdfast_search_index_lag_versions").await == 0.0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the indexes did not catch up");
}

/// Sorts on `created`, scores and metrics read through the value index (embedded store)
/// and answer exactly what reading every row answers: every row once, in order, page after
/// page, whether the rows are indexed, written since, replaced, deleted, without the field
/// or with a value the index does not order.
async fn sorted_reads(backend: Backend) {
    let server = Server::start_with(backend, &[("HOLDFAST_METRICS_TOKEN", "metrics-token")]).await;
    let p = server
        .ok("POST", "/v1/project", Some(json!({"name": "qv"})))
        .await;
    let p = p["id"].as_str().unwrap().to_owned();
    // 40 traces of 3 spans; scores with ties, some missing, some null; all but 12 spans
    // share one token count (more ties than a page of the index holds).
    let mut rows: std::collections::BTreeMap<String, Value> = Default::default();
    for t in 0..40 {
        for s in 0..3 {
            let id = format!("t{t:02}s{s}");
            let mut row = json!({"id": id, "span_id": id, "root_span_id": format!("t{t:02}s0"),
                "span_parents": if s == 0 { json!([]) } else { json!([format!("t{t:02}s0")]) },
                "created": format!("2026-03-01T00:{:02}:{:02}.000000Z", (t * 17) % 40, s),
                "metrics": {"tokens": i64::from((t + s) % 10 != 0)}});
            match (t * 7 + s) % 9 {
                0 => {}
                1 => row["scores"] = json!({ "f": null }),
                k => row["scores"] = json!({"f": f64::from(k % 5) / 4.0}),
            }
            let kind = match (t + s) % 3 {
                0 => "llm",
                1 => "tool",
                _ => "task",
            };
            row["span_attributes"] = json!({"type": kind, "name": format!("n{}", t % 4)});
            // `metadata.v` of every kind: numbers (with ties) and texts, which the index
            // holds, and values it cannot order (a boolean, an object, a text that compares
            // as an instant), null or absent.
            row["metadata"] = json!({"user": format!("u{}", t % 5)});
            let v = match (t * 5 + s) % 11 {
                0 => None,
                1 => Some(Value::Null),
                2 => Some(json!(true)),
                3 => Some(json!({"a": 1})),
                4 => Some(json!("2026-03-01T00:00:00Z")),
                5..=7 => Some(json!(f64::from((t + s) % 6) / 2.0)),
                _ => Some(json!(format!("v{}", (t + 2 * s) % 5))),
            };
            if let Some(v) = v {
                row["metadata"]["v"] = v;
            }
            // `error` of several types on a few spans, null on some.
            match (t * 3 + s) % 13 {
                0 => row["error"] = json!("boom"),
                5 => row["error"] = json!({"message": "rate limited"}),
                9 => row["error"] = Value::Null,
                _ => {}
            }
            if s == 0 && t % 4 != 3 {
                row["tags"] = match t % 4 {
                    0 => json!(["vip", "a"]),
                    1 => json!(["a"]),
                    _ => json!([]),
                };
            }
            rows.insert(id, row);
        }
    }
    // `created` in other forms: an offset (00:20:30Z, whose text sorts after every other
    // row's) and a shorter precision.
    rows.get_mut("t13s1").unwrap()["created"] = json!("2026-03-01T01:20:30+01:00");
    rows.get_mut("t14s2").unwrap()["created"] = json!("2026-03-01T00:21:00Z");
    // Values the index cannot list: a tag that compares as an instant, a span type that is a number; and a score past the
    // 64 names a group lists.
    rows.get_mut("t16s0").unwrap()["tags"] = json!(["2026-03-01T00:00:00Z", "vip"]);
    rows.get_mut("t17s2").unwrap()["span_attributes"]["type"] = json!(5);
    let mut many: serde_json::Map<String, Value> =
        (0..64).map(|i| (format!("a{i:02}"), json!(0))).collect();
    many.insert("f".into(), json!(0.9));
    rows.get_mut("t18s0").unwrap()["scores"] = Value::Object(many);
    // Metadata past the 64 names a group indexes.
    let mut wide: serde_json::Map<String, Value> =
        (0..64).map(|i| (format!("a{i:02}"), json!(i))).collect();
    wide.insert("v".into(), json!(1.5));
    rows.get_mut("t19s1").unwrap()["metadata"] = Value::Object(wide);
    // A trace whose root span is written as a child (turned back into its root below).
    rows.get_mut("t12s0").unwrap()["span_parents"] = json!(["elsewhere"]);
    let write = |batch: Vec<Value>| log_rows(&server, &p, batch);
    write(rows.values().cloned().collect()).await;
    indexed(&server).await;
    let pages = |text: String| all_pages(&server, text, None);
    // What reading every row answers: sorted by the value (nulls last), then by row id.
    let expect = |rows: &std::collections::BTreeMap<String, Value>,
                  path: &[&str],
                  desc: bool,
                  keep: &dyn Fn(&Value) -> bool| {
        let mut v: Vec<(Value, String)> = rows
            .values()
            .filter(|r| keep(r))
            .map(|r| {
                let mut x = r;
                for f in path {
                    x = &x[*f];
                }
                (x.clone(), r["id"].as_str().unwrap().to_owned())
            })
            .collect();
        v.sort_by(|(a, ia), (b, ib)| {
            let o = match (a.is_null(), b.is_null()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => holdfast_core::qexpr::sort_cmp(b, a),
                _ => holdfast_core::qexpr::sort_cmp(a, b),
            };
            o.then_with(|| ia.cmp(ib))
        });
        v.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
    };
    let check = |rows: std::collections::BTreeMap<String, Value>| {
        let pages = &pages;
        let expect = &expect;
        let p = p.clone();
        async move {
            let all = |_: &Value| true;
            let high = |r: &Value| r["scores"]["f"].as_f64().is_some_and(|f| f > 0.3);
            let root = |r: &Value| r["span_parents"] == json!([]);
            // `created` compares as an instant.
            let at = |r: &Value| {
                let t = r["created"].as_str().unwrap();
                holdfast_core::clock::parse_timestamp(t).unwrap()
            };
            let instant = |t: &str| holdfast_core::clock::parse_timestamp(t).unwrap();
            let window = |r: &Value| {
                (instant("2026-03-01T00:20:00Z")..instant("2026-03-01T00:25:00.5Z"))
                    .contains(&at(r))
            };
            let late = |r: &Value| at(r) > instant("2026-03-01T00:38:01Z");
            let early = |r: &Value| at(r) <= instant("2026-03-01T00:02:00Z");
            const WINDOW: &str =
                "created >= '2026-03-01T00:20:00Z' AND '2026-03-01T00:25:00.5Z' > created";
            // (source and filter, sort path, limit, which rows reading everything keeps)
            type Case<'a> = (&'a str, &'a [&'a str], usize, &'a dyn Fn(&Value) -> bool);
            let window_source = format!("project_logs('P') WHERE {WINDOW}");
            let late_source = "project_logs('P', shape => 'summary') \
                               WHERE created > '2026-03-01T00:38:01Z'";
            let late_root = |r: &Value| root(r) && late(r);
            // An open bound at a value rows hold (0.25): those rows are not read, nor kept.
            let above = |r: &Value| r["scores"]["f"].as_f64().is_some_and(|f| f > 0.25);
            let v = |r: &Value| r["metadata"]["v"].clone();
            let v_above_1 = |r: &Value| v(r).as_f64().is_some_and(|n| n > 1.0);
            let v_from_v2 = |r: &Value| v(r).as_str().is_some_and(|t| t >= "v2");
            // Sorts whose filter the index narrows to a few rows through another field: those
            // rows are read, not the object in the sort's order.
            let has_vip = |r: &Value| {
                r["tags"]
                    .as_array()
                    .is_some_and(|a| a.contains(&json!("vip")))
            };
            let llm_high = |r: &Value| {
                r["span_attributes"]["type"] == json!("llm")
                    && r["scores"]["f"].as_f64().is_some_and(|f| f > 0.3)
            };
            // Summaries of the traces a filter matches, by their roots' `created`: matched
            // through roots and through other spans (whose roots the index finds).
            let traces_with = |keep: &dyn Fn(&Value) -> bool| -> std::collections::HashSet<Value> {
                rows.values()
                    .filter(|r| keep(r))
                    .map(|r| r["root_span_id"].clone())
                    .collect()
            };
            let failed_traces =
                traces_with(&|r: &Value| r.get("error").is_some_and(|e| !e.is_null()));
            let tool_traces =
                traces_with(&|r: &Value| r["span_attributes"]["type"] == json!("tool"));
            let failed_root = |r: &Value| root(r) && failed_traces.contains(&r["root_span_id"]);
            let tool_root = |r: &Value| root(r) && tool_traces.contains(&r["root_span_id"]);
            let cases: [Case<'_>; 21] = [
                (
                    "project_logs('P', shape => 'summary') WHERE error IS NOT NULL",
                    &["created"],
                    3,
                    &failed_root,
                ),
                (
                    "project_logs('P', shape => 'summary') WHERE span_attributes.type = 'tool'",
                    &["created"],
                    4,
                    &tool_root,
                ),
                (
                    "project_logs('P') WHERE tags INCLUDES 'vip'",
                    &["metadata", "v"],
                    3,
                    &has_vip,
                ),
                (
                    "project_logs('P') WHERE tags INCLUDES 'vip'",
                    &["created"],
                    2,
                    &has_vip,
                ),
                (
                    "project_logs('P') WHERE span_attributes.type = 'llm' AND scores.f > 0.3",
                    &["scores", "f"],
                    4,
                    &llm_high,
                ),
                ("project_logs('P')", &["metadata", "v"], 5, &all),
                ("project_logs('P')", &["metadata", "v"], 30, &all),
                ("project_logs('P')", &["metadata", "v"], 200, &all),
                (
                    "project_logs('P', shape => 'summary')",
                    &["metadata", "v"],
                    4,
                    &root,
                ),
                (
                    "project_logs('P') WHERE metadata.v > 1",
                    &["metadata", "v"],
                    4,
                    &v_above_1,
                ),
                (
                    "project_logs('P') WHERE metadata.v >= 'v2'",
                    &["metadata", "v"],
                    3,
                    &v_from_v2,
                ),
                ("project_logs('P')", &["span_attributes", "name"], 7, &all),
                (
                    "project_logs('P') WHERE scores.f > 0.25",
                    &["scores", "f"],
                    3,
                    &above,
                ),
                (&window_source, &["created"], 4, &window),
                (late_source, &["created"], 2, &late_root),
                ("project_logs('P')", &["scores", "f"], 2, &all),
                ("project_logs('P')", &["scores", "f"], 7, &all),
                ("project_logs('P')", &["scores", "f"], 50, &all),
                (
                    "project_logs('P') WHERE scores.f > 0.3",
                    &["scores", "f"],
                    4,
                    &high,
                ),
                ("project_logs('P')", &["metrics", "tokens"], 9, &all),
                (
                    "project_logs('P', shape => 'summary')",
                    &["created"],
                    3,
                    &root,
                ),
            ];
            // Unsorted filters bounding a score or a metric read the rows the index puts in
            // range (and those it cannot place): rows in row-id order, every page. First,
            // while the writer waits to be idle before it indexes the changes.
            let f = |r: &Value| r["scores"]["f"].as_f64();
            let mid = |r: &Value| f(r).is_some_and(|f| (0.25..0.75).contains(&f));
            let low = |r: &Value| f(r).is_some_and(|f| f <= 0.25);
            let none = |r: &Value| r["metrics"]["tokens"].as_f64() == Some(0.0);
            let big = |r: &Value| r["metrics"]["tokens"].as_f64().is_some_and(|t| t > 1.0);
            type Range<'a> = (&'a str, &'a dyn Fn(&Value) -> bool);
            let low_or_none = |r: &Value| f(r).is_some_and(|f| f < 0.25) || none(r);
            let late_or_high = |r: &Value| late(r) || high(r);
            // Tags and span attributes, as the query evaluates them (`/logs3` stores tags
            // only as arrays of texts).
            let tagged =
                |r: &Value, t: &str| r["tags"].as_array().is_some_and(|a| a.contains(&json!(t)));
            let kind = |r: &Value, k: &str| r["span_attributes"]["type"] == json!(k);
            let vip = |r: &Value| tagged(r, "vip");
            let llm = |r: &Value| kind(r, "llm");
            let tool_or_task = |r: &Value| kind(r, "tool") || kind(r, "task");
            let names = |r: &Value| {
                let n = r["span_attributes"]["name"].as_str().unwrap_or_default();
                n > "n1" && n <= "n3"
            };
            let a_or_high = |r: &Value| tagged(r, "a") || f(r).is_some_and(|f| f > 0.6);
            let late_llm = |r: &Value| late(r) && llm(r);
            let v_1_to_2 = |r: &Value| v(r).as_f64().is_some_and(|n| (1.0..2.5).contains(&n));
            let v_to_v3 = |r: &Value| v(r).as_str().is_some_and(|t| t <= "v3");
            let v_in = |r: &Value| v(r) == json!(1.5) || v(r) == json!("v1");
            let v_in_true = |r: &Value| v_in(r) || v(r) == json!(true);
            let failed = |r: &Value| r.get("error").is_some_and(|e| !e.is_null());
            let failed_high = |r: &Value| failed(r) && high(r);
            let ranges: [Range<'_>; 24] = [
                ("error IS NOT NULL", &failed),
                ("error IS NOT NULL AND scores.f > 0.3", &failed_high),
                ("metadata.v > 1", &v_above_1),
                ("metadata.v >= 1 AND metadata.v < 2.5", &v_1_to_2),
                ("metadata.v <= 'v3' LIMIT 4", &v_to_v3),
                ("metadata.v IN (1.5, 'v1')", &v_in),
                ("metadata.v IN (1.5, 'v1', true)", &v_in_true),
                ("tags INCLUDES 'vip'", &vip),
                ("span_attributes.type = 'llm'", &llm),
                (
                    "span_attributes.type IN ('tool', 'task') LIMIT 3",
                    &tool_or_task,
                ),
                (
                    "span_attributes.name > 'n1' AND span_attributes.name <= 'n3'",
                    &names,
                ),
                ("tags INCLUDES 'a' OR scores.f > 0.6", &a_or_high),
                (
                    "span_attributes.type = 'llm' AND created > '2026-03-01T00:38:01Z'",
                    &late_llm,
                ),
                ("scores.f < 0.25 OR metrics.tokens = 0", &low_or_none),
                (
                    "created > '2026-03-01T00:38:01Z' OR scores.f > 0.3 LIMIT 5",
                    &late_or_high,
                ),
                (WINDOW, &window),
                ("created > '2026-03-01T00:38:01Z'", &late),
                ("created <= '2026-03-01T00:02:00.000000Z' LIMIT 2", &early),
                ("metrics.tokens BETWEEN 2 AND 1000", &big),
                ("scores.f > 0.3 LIMIT 4", &high),
                ("scores.f >= 0.25 AND scores.f < 0.75", &mid),
                ("0.25 >= scores.f LIMIT 3", &low),
                ("metrics.tokens = 0", &none),
                (
                    "metrics.tokens > 1 AND scores.f IS NOT NULL OR metrics.tokens > 1",
                    &big,
                ),
            ];
            for (filter, keep) in ranges {
                let text = format!("SELECT id FROM project_logs('{p}') WHERE {filter}");
                let want: Vec<String> =
                    rows.keys().filter(|id| keep(&rows[*id])).cloned().collect();
                assert_eq!(pages(text.clone()).await, want, "{text}");
            }
            for (dir, desc) in [("DESC", true), ("ASC", false)] {
                for (source, path, limit, keep) in cases {
                    let source = source.replace("'P'", &format!("'{p}'"));
                    let text = format!(
                        "SELECT id FROM {source} ORDER BY {} {dir} LIMIT {limit}",
                        path.join(".")
                    );
                    assert_eq!(
                        pages(text.clone()).await,
                        expect(&rows, path, desc, keep),
                        "{text}"
                    );
                }
            }
        }
    };
    check(rows.clone()).await;
    // Replaced, merged and deleted rows, before and after the index has them.
    let mut changes = Vec::new();
    for (i, id) in ["t03s1", "t11s0", "t20s2", "t33s1", "t05s0"]
        .iter()
        .enumerate()
    {
        let row = rows.get_mut(*id).unwrap();
        let f = json!([0.99, 0.01, 0.75, null, 0.5])[i].clone();
        row["scores"] = json!({ "f": f });
        row["metrics"] = json!({"tokens": 100 - i});
        changes.push(
            json!({"id": id, "scores": row["scores"], "metrics": row["metrics"],
                            "_is_merge": true}),
        );
    }
    // Merges that add tags (a merge adds to the stored set) and change a span attribute.
    for (id, tag, kind) in [("t00s0", "b", "tool"), ("t01s0", "vip", "llm")] {
        let row = rows.get_mut(id).unwrap();
        row["tags"].as_array_mut().unwrap().push(json!(tag));
        let tags = json!([tag]);
        row["span_attributes"]["type"] = json!(kind);
        changes.push(
            json!({"id": id, "tags": tags, "span_attributes": row["span_attributes"],
                            "_is_merge": true}),
        );
    }
    // Merges that set an error and clear one.
    for (id, error) in [("t02s1", json!("late failure")), ("t00s0", Value::Null)] {
        rows.get_mut(id).unwrap()["error"] = error.clone();
        changes.push(json!({"id": id, "error": error, "_is_merge": true}));
    }
    // Merges that change `metadata.v` to the highest text and to a number.
    for (id, value) in [("t04s0", json!("zz")), ("t06s1", json!(0.25))] {
        let row = rows.get_mut(id).unwrap();
        row["metadata"]["v"] = value.clone();
        changes.push(json!({"id": id, "metadata": {"v": value}, "_is_merge": true}));
    }
    // Merges that turn a root span into a child and a child into a root (summaries by
    // `created` read the roots the index does not hold yet, and no other span).
    for (id, parents) in [("t10s0", json!(["elsewhere"])), ("t12s0", json!([]))] {
        rows.get_mut(id).unwrap()["span_parents"] = parents.clone();
        changes.push(json!({"id": id, "span_parents": parents, "_is_merge": true}));
    }
    // A replace that moves a row into the window of `created`.
    let moved = rows.get_mut("t22s1").unwrap();
    moved["created"] = json!("2026-03-01T00:22:30Z");
    changes.push(moved.clone());
    // A replace without scores or metrics (`created` stays the stored one).
    let replaced = rows.get_mut("t07s0").unwrap();
    let obj = replaced.as_object_mut().unwrap();
    obj.remove("scores");
    obj.remove("metrics");
    changes.push(replaced.clone());
    for id in ["t08s0", "t09s2"] {
        rows.remove(id);
        changes.push(json!({"id": id, "_object_delete": true}));
    }
    write(changes).await;
    // At once, while the writer waits to be idle (0.5 s) before it indexes the changes: the
    // summaries by `created` read the root the index does not list yet, and not the root
    // turned child that it still lists.
    let text = format!(
        "SELECT id FROM project_logs('{p}', shape => 'summary') ORDER BY created DESC LIMIT 6"
    );
    let got = pages(text.clone()).await;
    let lag = server.metric("holdfast_search_index_lag_versions").await;
    let root = |r: &Value| r["span_parents"] == json!([]);
    assert_eq!(got, expect(&rows, &["created"], true, &root), "{text}");
    if lag == 0.0 {
        eprintln!("the changes were indexed before the summaries were read");
    }
    check(rows.clone()).await;
    indexed(&server).await;
    check(rows).await;
}

/// Counts by time from the value index (embedded store) answer exactly what reading every
/// row answers (a second server, without the index, holds the same rows): timestamps of
/// every precision and form, bounds inside and at the edges of hours, rows indexed or
/// written since, replaced with another `created`, deleted, or holding comments alone.
async fn indexed_counts(backend: Backend) {
    let env = |index: &'static str| {
        [
            ("HOLDFAST_METRICS_TOKEN", "metrics-token"),
            ("HOLDFAST_QUERY_SEARCH_INDEX", index),
        ]
    };
    let servers = [
        Server::start_with(backend, &env("true")).await,
        Server::start_with(backend, &env("false")).await,
    ];
    let mut projects = Vec::new();
    // Per server, the project and eleven others (more objects than the store's read
    // connections) counted together by one query.
    let mut many = Vec::new();
    for server in &servers {
        let mut ids = Vec::new();
        for i in 0..12 {
            let p = server
                .ok(
                    "POST",
                    "/v1/project",
                    Some(json!({"name": format!("qn{i}")})),
                )
                .await;
            let id = p["id"].as_str().unwrap().to_owned();
            if i > 0 {
                let created = format!("2026-03-0{}T0{}:00:00Z", 1 + i % 2, i % 10);
                log_rows(server, &id, vec![json!({"id": "x", "created": created})]).await;
            }
            ids.push(format!("'{id}'"));
        }
        projects.push(ids[0].trim_matches('\'').to_owned());
        many.push(ids.join(", "));
    }
    let write = |rows: Vec<Value>| {
        let (servers, projects) = (&servers, &projects);
        async move {
            for (server, p) in servers.iter().zip(projects) {
                log_rows(server, p, rows.clone()).await;
            }
        }
    };
    let at = |i: usize| {
        let (h, m) = ((i * 7) % 48, (i * 13) % 60);
        let (day, hour) = (1 + h / 24, h % 24);
        match i % 9 {
            0 => format!("2026-03-0{day}T{hour:02}:{m:02}:{m:02}Z"),
            1 => format!("2026-03-0{day}T{hour:02}:{m:02}:07.5Z"),
            2 => format!("2026-03-0{day}T{hour:02}:{m:02}:59.123456789Z"),
            3 => format!("2026-03-0{day}T{hour:02}:{m:02}:00+02:00"),
            4 => format!("2026-03-0{day}t{hour:02}:{m:02}:00z"),
            5 if i % 2 == 1 => "2026-02-30T10:00:00Z".to_owned(),
            6 if i.is_multiple_of(2) => "not a time".to_owned(),
            _ => format!("2026-03-0{day}T{hour:02}:{m:02}:{:02}.000000Z", i % 60),
        }
    };
    let mut rows: Vec<Value> = (0..150)
        .map(|i| json!({"id": format!("r{i:03}"), "created": at(i), "input": i}))
        .collect();
    // On the bounds the queries use.
    for (id, created) in [
        ("edge1", "2026-03-01T10:30:00Z"),
        ("edge2", "2026-03-01T10:30:00.000000Z"),
        ("edge3", "2026-03-02T05:00:00.5Z"),
        ("edge4", "2026-03-02T05:00:00.499999Z"),
        ("edge5", "2026-03-01T12:00:00.000001Z"),
        ("edge6", "2026-03-01T09:30:00Z"),
    ] {
        rows.push(json!({"id": id, "created": created}));
    }
    let queries = [
        "SELECT hour(created) AS h, count(*) AS n FROM project_logs('P') GROUP BY 1 ORDER BY h",
        "SELECT day(created) AS d, count(*) AS n, count(created) AS c FROM project_logs('P') \
         WHERE created >= '2026-03-01T10:30:00Z' AND created < '2026-03-02T05:00:00.5Z' \
         GROUP BY 1 ORDER BY d",
        "SELECT minute(created) AS m, count(1) AS n FROM project_logs('P') \
         WHERE created > '2026-03-01T10:30:00Z' AND created <= '2026-03-01T12:00:00.000001Z' \
         GROUP BY 1 ORDER BY m",
        "SELECT count(*) AS n FROM project_logs('P') WHERE '2026-03-01T09:30:00+00:00' <= created",
        "SELECT date_trunc('week', created) AS w, second(created) AS s, count(*) AS n \
         FROM project_logs('P') GROUP BY 1, 2 HAVING count(*) > 0 ORDER BY n DESC LIMIT 30",
        "SELECT count(*) AS n FROM project_logs('P') WHERE created > now() - interval 1 day",
        "from: project_logs('P') | dimensions: hour(created) as h | measures: count(1) as n \
         | filter: created < '2026-03-01T20:00:00Z' | sort: h",
        "SELECT day(created) AS d, count(*) AS n FROM project_logs('MANY') GROUP BY 1 ORDER BY d",
    ];
    let compare = |label: &'static str| {
        let (servers, projects, many) = (&servers, &projects, &many);
        async move {
            let before = servers[0]
                .metric("holdfast_grouped_queries_indexed_total")
                .await;
            for q in queries {
                let mut answers = Vec::new();
                for ((server, p), many) in servers.iter().zip(projects).zip(many) {
                    let text = q.replace("'P'", &format!("'{p}'")).replace("'MANY'", many);
                    let body = server
                        .ok("POST", "/btql", Some(json!({"query": text})))
                        .await;
                    answers.push(body["data"].clone());
                }
                assert!(
                    answers[0].as_array().is_some_and(|a| !a.is_empty()),
                    "{label}: {q}"
                );
                assert_eq!(answers[0], answers[1], "{label}: {q}");
            }
            let after = servers[0]
                .metric("holdfast_grouped_queries_indexed_total")
                .await;
            let want = queries.len() as f64;
            assert_eq!(after - before, want, "{label}: answered from the index");
        }
    };
    write(rows.clone()).await;
    compare("written").await;
    indexed(&servers[0]).await;
    compare("indexed").await;
    // Merged, replaced with another `created` (or without one: it stays), deleted, new, and
    // a row of comments alone (a comment on a row not written yet).
    let mut changes = Vec::new();
    for i in (0..150).step_by(5) {
        let id = format!("r{i:03}");
        changes.push(match i % 4 {
            0 => json!({"id": id, "output": "merged", "_is_merge": true}),
            1 => json!({"id": id, "created": at(i + 17), "input": "replaced"}),
            2 => json!({"id": id, "input": "replaced, created kept"}),
            _ => json!({"id": id, "_object_delete": true}),
        });
    }
    for i in 150..170 {
        changes.push(json!({"id": format!("r{i:03}"), "created": at(i)}));
    }
    changes.push(json!({"id": "c1", "comment": {"text": "first"}, "origin": {"id": "ghost"}}));
    write(changes).await;
    compare("changed").await;
    indexed(&servers[0]).await;
    compare("changed and indexed").await;
    // The row the comment was about arrives.
    write(vec![
        json!({"id": "ghost", "created": "2026-03-01T10:45:00Z"}),
    ])
    .await;
    compare("ghost").await;
}

/// A summary row estimates what a trace's LLM calls cost from each call's model and token
/// counts, as the SDK wrappers log them; calls to unknown models are not priced.
async fn summaries_estimate_cost(backend: Backend) {
    let server = Server::start(backend).await;
    let p = server
        .ok("POST", "/v1/project", Some(json!({"name": "costs"})))
        .await;
    let p = p["id"].as_str().unwrap();
    let call = |id: &str, root: &str, model: &str, metrics: Value| {
        json!({"id": id, "span_id": id, "root_span_id": root, "span_parents": [root],
               "project_id": p, "log_id": "g", "metadata": {"model": model},
               "span_attributes": {"type": "llm"}, "metrics": metrics})
    };
    let root = |id: &str, created: &str| {
        json!({"id": id, "span_id": id, "root_span_id": id, "project_id": p, "log_id": "g",
               "created": created, "input": "q", "span_attributes": {"type": "task"}})
    };
    let rows = vec![
        root("t1", "2026-02-01T00:00:00Z"),
        // gpt-4o-mini: 1,000 prompt tokens at 0.15, 1,000 cached at 0.075, 500 out at 0.60.
        call(
            "t1a",
            "t1",
            "gpt-4o-mini-2024-07-18",
            json!({"prompt_tokens": 2000, "prompt_cached_tokens": 1000, "completion_tokens": 500}),
        ),
        // claude-3-5-sonnet: 100 in at 3, 10 out at 15.
        call(
            "t1b",
            "t1",
            "claude-3-5-sonnet-latest",
            json!({"prompt_tokens": 100, "completion_tokens": 10}),
        ),
        root("t2", "2026-02-01T00:01:00Z"),
        call(
            "t2a",
            "t2",
            "in-house-model",
            json!({"prompt_tokens": 100, "completion_tokens": 10}),
        ),
    ];
    server
        .ok("POST", "/logs3", Some(json!({"rows": rows})))
        .await;
    let b = server
        .ok(
            "POST",
            "/btql",
            Some(json!({"query": format!(
                "SELECT id, metrics.estimated_cost AS cost, metrics.tokens AS tokens \
                 FROM project_logs('{p}', shape => 'summary') ORDER BY created"
            )})),
        )
        .await;
    let data = b["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{b}");
    let want = (1000.0 * 0.15 + 1000.0 * 0.075 + 500.0 * 0.6 + 100.0 * 3.0 + 10.0 * 15.0) / 1e6;
    let got = data[0]["cost"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-12, "{got} != {want}: {b}");
    assert_eq!(data[0]["tokens"], json!(2610));
    assert_eq!(
        (&data[1]["id"], &data[1]["cost"]),
        (&json!("t2"), &Value::Null),
        "{b}"
    );
}

mod run {
    use super::backends;
    on_all_backends!(
        conformance,
        paging,
        queries_respect_access,
        search_follows_writes,
        sorted_reads,
        indexed_counts,
        summaries_estimate_cost
    );
}
