//! `holdfast bench query --pages`: the web UI's pages on the store the query benchmark
//! loaded, timed as a client sees them (request to last byte, with the owner's key), plus a
//! trace of 10,000 spans loaded for the trace viewer. Reports medians and each page's size.

use crate::bench::{Rng, ServerProcess, percentile, post_all};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// Spans of the large trace.
const BIG_TRACE: usize = 10_000;

/// Loads one trace of [`BIG_TRACE`] spans (a tree four wide, of LLM, tool and task spans,
/// each with a chat input) into `project_id`'s logs; returns one of its row ids.
async fn load_big_trace(
    client: &reqwest::Client,
    server: &ServerProcess,
    project_id: &str,
) -> Result<String> {
    let mut rng = Rng(0xB16_7EACE);
    let root_span_id = rng.hex(32);
    let ids: Vec<String> = (0..BIG_TRACE).map(|_| rng.hex(16)).collect();
    let kinds = ["llm", "tool", "task", "function"];
    let t0 = 1_796_000_000.0;
    let rows: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| {
            let parents = match k {
                0 => Value::Null,
                _ => json!([ids.get((k - 1) / 4).cloned().unwrap_or_default()]),
            };
            let start = t0 + k as f64 * 0.01;
            json!({
                "id": id, "span_id": id, "root_span_id": root_span_id, "span_parents": parents,
                "project_id": project_id, "log_id": "g",
                "span_attributes": {"name": format!("step {k}"), "type": kinds.get(k % 4).copied().unwrap_or("task")},
                "input": [{"role": "user", "content": format!("question {k} of the long trace")}],
                "output": format!("answer {k}"),
                "metrics": {"start": start, "end": start + 0.5, "tokens": 30},
            })
        })
        .collect();
    post_rows(client, server, &rows).await?;
    ids.get(BIG_TRACE / 2)
        .cloned()
        .context("a row of the big trace")
}

/// Rows of each experiment and of the dataset loaded for the experiment and dataset pages.
const EVAL_ROWS: usize = 1_000;

/// Creates an object of `kind` (`experiment` or `dataset`) named `name` in `project_id`;
/// returns its id.
async fn create_object(
    client: &reqwest::Client,
    server: &ServerProcess,
    kind: &str,
    project_id: &str,
    name: &str,
) -> Result<String> {
    let made: Value = client
        .post(format!("{}/v1/{kind}", server.url))
        .header("authorization", format!("Bearer {}", server.key))
        .json(&json!({"project_id": project_id, "name": name}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    made.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("the new {kind}'s id"))
}

/// Loads two experiments of [`EVAL_ROWS`] rows as `Eval` writes them (per row a root span
/// with input, expected, output and scores, a task span and a scorer span; the same inputs
/// in both, scores differing) and a dataset of as many rows. Returns a root row id of the
/// second experiment.
async fn load_evals(
    client: &reqwest::Client,
    server: &ServerProcess,
    project_id: &str,
) -> Result<String> {
    let mut rng = Rng(0x000E_7A15);
    let t0 = 1_796_100_000.0;
    let mut first_root = String::new();
    for (n, name) in ["bench-base", "bench-new"].into_iter().enumerate() {
        let id = create_object(client, server, "experiment", project_id, name).await?;
        let mut rows = Vec::new();
        for i in 0..EVAL_ROWS {
            let (root, task, scorer) = (rng.hex(16), rng.hex(16), rng.hex(16));
            let right = rng.range(0, 99) < 60 + 10 * n;
            let start = t0 + (n * EVAL_ROWS + i) as f64;
            let question = format!("What is {i} plus {i}?");
            let answer = if right {
                format!("{}", 2 * i)
            } else {
                format!("{}", 2 * i + 1)
            };
            let score = if right { 1.0 } else { 0.0 };
            let common = json!({"experiment_id": id, "root_span_id": root});
            let span = |extra: Value| {
                let mut row = common.clone();
                if let (Some(r), Some(e)) = (row.as_object_mut(), extra.as_object()) {
                    r.extend(e.clone());
                }
                row
            };
            rows.push(span(json!({
                "id": root, "span_id": root, "span_parents": null,
                "span_attributes": {"name": "eval", "type": "eval"},
                "input": {"question": question}, "expected": format!("{}", 2 * i),
                "output": answer, "scores": {"exact": score, "length": 0.5 + score / 4.0},
                "metrics": {"start": start, "end": start + 0.8},
            })));
            rows.push(span(json!({
                "id": task, "span_id": task, "span_parents": [root],
                "span_attributes": {"name": "task", "type": "task"},
                "input": {"question": question}, "output": answer,
                "metrics": {"start": start + 0.1, "end": start + 0.6, "prompt_tokens": 40, "completion_tokens": 5},
            })));
            rows.push(span(json!({
                "id": scorer, "span_id": scorer, "span_parents": [root],
                "span_attributes": {"name": "exact", "type": "score"},
                "output": {"score": score}, "scores": {"exact": score},
                "metrics": {"start": start + 0.6, "end": start + 0.7},
            })));
            if n == 1 && i == EVAL_ROWS / 2 {
                first_root = root.clone();
            }
        }
        post_rows(client, server, &rows).await?;
    }
    let dataset = create_object(client, server, "dataset", project_id, "bench-data").await?;
    let rows: Vec<Value> = (0..EVAL_ROWS)
        .map(|i| {
            let id = rng.hex(16);
            json!({"id": id, "dataset_id": dataset, "input": {"question": format!("What is {i} plus {i}?")},
                   "expected": format!("{}", 2 * i), "metadata": {"source": "bench"}})
        })
        .collect();
    post_rows(client, server, &rows).await?;
    Ok(first_root)
}

/// Posts rows to `/logs3`, 500 a request, two requests at a time.
async fn post_rows(client: &reqwest::Client, server: &ServerProcess, rows: &[Value]) -> Result<()> {
    let bodies = rows
        .chunks(500)
        .map(|c| serde_json::to_vec(&json!({"rows": c, "api_version": 2})))
        .collect::<Result<Vec<_>, _>>()?;
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    post_all(client, server, bodies, 2, 500, &done).await?;
    Ok(())
}

/// GETs `path` once; (ms to the last byte, bytes).
async fn view(
    client: &reqwest::Client,
    server: &ServerProcess,
    path: &str,
) -> Result<(f64, usize)> {
    let t0 = Instant::now();
    let resp = client
        .get(format!("{}{path}", server.url))
        .header("authorization", format!("Bearer {}", server.key))
        .send()
        .await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if !status.is_success() {
        bail!("{path}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok((ms, body.len()))
}

/// GETs `path` `runs` times after a warm-up; returns (p50 ms, min, max, bytes).
async fn time_page(
    client: &reqwest::Client,
    server: &ServerProcess,
    path: &str,
    runs: usize,
) -> Result<(f64, f64, f64, usize)> {
    let mut times = Vec::new();
    let mut bytes = 0;
    for run in 0..=runs {
        let (ms, len) = view(client, server, path).await?;
        bytes = len;
        if run > 0 {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((
        percentile(&times, 0.5),
        times.first().copied().unwrap_or(0.0),
        times.last().copied().unwrap_or(0.0),
        bytes,
    ))
}

fn encoded(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn time_pages(
    client: &reqwest::Client,
    server: &ServerProcess,
    pages: &[(&str, String)],
    runs: usize,
) -> Result<()> {
    for (label, path) in pages {
        let (p50, min, max, bytes) = time_page(client, server, path, runs).await?;
        say!(
            "{:<48} {:>9.1} {:>9.1} {:>9.1} {:>9.0}",
            label,
            p50,
            min,
            max,
            bytes as f64 / 1024.0
        );
    }
    Ok(())
}

pub async fn run(
    client: &reqwest::Client,
    server: &ServerProcess,
    project_id: &str,
    roots: &[String],
    runs: usize,
) -> Result<()> {
    let auth = format!("Bearer {}", server.key);
    let org: Value = client
        .get(format!("{}/v1/organization", server.url))
        .header("authorization", &auth)
        .send()
        .await?
        .json()
        .await?;
    let org = org
        .pointer("/objects/0/name")
        .and_then(Value::as_str)
        .context("the organization's name")?
        .to_owned();
    let project: Value = client
        .get(format!("{}/v1/project/{project_id}", server.url))
        .header("authorization", &auth)
        .send()
        .await?
        .json()
        .await?;
    let name = project
        .get("name")
        .and_then(Value::as_str)
        .context("the project's name")?;
    let logs = format!("/app/{}/p/{}/logs", encoded(&org), encoded(name));
    // A row of a trace the load made, and the second page's cursor.
    let root = roots.first().context("a loaded trace")?;
    let found: Value = client
        .post(format!("{}/btql", server.url))
        .header("authorization", &auth)
        .json(&json!({"query": format!(
            "SELECT id FROM project_logs('{project_id}') WHERE root_span_id = '{root}' LIMIT 1")}))
        .send()
        .await?
        .json()
        .await?;
    let row = found
        .pointer("/data/0/id")
        .and_then(Value::as_str)
        .context("a row of a loaded trace")?
        .to_owned();
    let first = client
        .get(format!("{}{logs}", server.url))
        .header("authorization", &auth)
        .send()
        .await?
        .text()
        .await?;
    let next = first
        .split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(|s| s.replace("&amp;", "&"))
        .context("a link to the second page")?;
    let pages: Vec<(&str, String)> = vec![
        ("projects", format!("/app/{}", encoded(&org))),
        ("logs: 50 newest traces", logs.clone()),
        ("logs: second page", next),
        (
            "logs: filter metadata.user_id = X",
            format!("{logs}?filter={}", encoded("metadata.user_id = 'user-042'")),
        ),
        (
            "logs: search a rare word",
            format!("{logs}?search=quasarium"),
        ),
        ("logs: last hour", format!("{logs}?range=1h")),
        ("logs: errors only", format!("{logs}?errors=1")),
        ("trace (5 spans)", format!("{logs}?oid={row}")),
    ];
    say!("web UI pages (p50 of {runs} after a warm-up, request to last byte):");
    say!(
        "{:<48} {:>9} {:>9} {:>9} {:>9}",
        "page",
        "p50 ms",
        "min ms",
        "max ms",
        "KiB"
    );
    time_pages(client, server, &pages, runs).await?;
    say!(err, "loading a trace of {BIG_TRACE} spans...");
    let big = load_big_trace(client, server, project_id).await?;
    // Its first view comes before the writer has indexed the trace's versions for sorted
    // reads and search: the page reads them (and the whole trace, for its summary).
    let (first, _) = view(client, server, &logs).await?;
    say!(
        "{:<48} {:>9.1}",
        "logs: 50 newest, just after that trace's write",
        first
    );
    let caught_up = crate::bench_query::wait_for_indexes(client, server, 20).await?;
    say!("(the indexes caught up {caught_up:.1} s after that first view)");
    // The trace page's first view reads the whole trace; later views use what it kept.
    let (first, _) = view(client, server, &format!("{logs}?oid={big}")).await?;
    say!("{:<48} {:>9.1}", "trace (10,000 spans), first view", first);
    let pages: Vec<(&str, String)> = vec![
        (
            "trace (10,000 spans), later views",
            format!("{logs}?oid={big}"),
        ),
        ("logs: 50 newest, one of 10,000 spans", logs.clone()),
    ];
    time_pages(client, server, &pages, runs).await?;
    say!(
        err,
        "loading two experiments and a dataset of {EVAL_ROWS} rows..."
    );
    let eval_row = load_evals(client, server, project_id).await?;
    let project_page = |rest: &str| format!("/app/{}/p/{}/{rest}", encoded(&org), encoded(name));
    let org_page = |rest: &str| format!("/app/{}/{rest}", encoded(&org));
    let pages: Vec<(&str, String)> = vec![
        ("experiments (2 of 1,000 rows)", project_page("experiments")),
        (
            "experiment (1,000 rows)",
            project_page("experiments/bench-new"),
        ),
        (
            "experiment against a baseline, by regression",
            project_page("experiments/bench-new?compare=bench-base&sort=regression"),
        ),
        (
            "experiment row's trace against the baseline",
            project_page(&format!(
                "experiments/bench-new?compare=bench-base&oid={eval_row}"
            )),
        ),
        ("datasets", project_page("datasets")),
        ("dataset (1,000 rows)", project_page("datasets/bench-data")),
        ("prompts", project_page("prompts")),
        ("administration", org_page("admin")),
        ("API keys", org_page("keys")),
        ("audit log", org_page("audit")),
    ];
    time_pages(client, server, &pages, runs).await?;
    Ok(())
}
