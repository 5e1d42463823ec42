//! `holdfast bench query`: loads a project's logs with realistic traces (5 spans each, chat
//! inputs, ~500 distinct user ids, a request latency in metadata, a rare word in 0.1% of
//! spans, a rare tag on 0.1% of traces, 500 tool names, spread over one day), then times the
//! queries people ask through
//! `/btql`, each several times, and reports medians.

use crate::bench::{
    Rng, ServerProcess, TraceShape, peak_rss_mib, percentile, post_all, rss_mib, start_server,
    trace_shaped,
};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// The word in 0.1% of spans, and one in none.
const RARE_WORD: &str = "quasarium";
const ABSENT_WORD: &str = "zzyzxqv";
/// The tag of 0.1% of traces (on their root span).
const RARE_TAG: &str = "escalated";
const DAY: &str = "2026-11-30";

pub struct Options {
    pub traces: u64,
    pub runs: usize,
    pub clients: usize,
    pub database_url: Option<String>,
    pub data_dir: Option<std::path::PathBuf>,
    pub purge: bool,
    pub export: bool,
    pub retention: bool,
    pub pages: bool,
}

/// Runs `holdfast export create` of the whole organization in `format` to a temporary
/// folder, and reports its time, rate, size and peak memory (sampled every 20 ms).
fn time_export(o: &Options, traces_rows: u64, format: &str) -> Result<()> {
    let out = tempfile::tempdir()?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args([
        "export",
        "create",
        "--org",
        "default",
        "--plaintext",
        "--format",
        format,
    ])
    .arg("--to")
    .arg(out.path());
    if let Some(d) = &o.data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    if let Some(u) = &o.database_url {
        cmd.arg("--database-url").arg(u);
    }
    let t0 = Instant::now();
    let mut child = cmd
        .env("HOLDFAST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the export")?;
    let mut peak = 0.0f64;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        peak = peak.max(peak_rss_mib(child.id()).unwrap_or(0.0));
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let took = t0.elapsed().as_secs_f64();
    if !status.success() {
        bail!("the {format} export failed: {status}");
    }
    let mut summary = String::new();
    if let Some(mut so) = child.stdout.take() {
        use std::io::Read;
        so.read_to_string(&mut summary)?;
    }
    let rows = serde_json::from_str::<Value>(summary.trim())
        .ok()
        .and_then(|v| v.pointer("/totals/rows").and_then(Value::as_u64))
        .unwrap_or(traces_rows);
    let bytes: u64 = walk_bytes(out.path());
    say!(
        "export {format:<7} {rows} rows in {took:.1} s: {:.0} rows/s, {:.0} MiB written, peak RSS {peak:.0} MiB",
        rows as f64 / took,
        bytes as f64 / 1048576.0
    );
    Ok(())
}

/// Bytes of every file under `dir`.
fn walk_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk_bytes(&path)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

/// One metric's value from `/metrics` (the benchmark's server has the token `bench`).
async fn metric(client: &reqwest::Client, server: &ServerProcess, name: &str) -> Result<f64> {
    let metrics = client
        .get(format!("{}/metrics", server.url))
        .header("authorization", "Bearer bench")
        .send()
        .await?
        .text()
        .await?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no {name} in /metrics"))
}

/// Waits until the indexes written after the commit have caught up, polling every
/// `poll_ms`; the seconds it waited.
pub(crate) async fn wait_for_indexes(
    client: &reqwest::Client,
    server: &ServerProcess,
    poll_ms: u64,
) -> Result<f64> {
    let waited = Instant::now();
    while metric(client, server, "holdfast_search_index_lag_versions").await? != 0.0 {
        tokio::time::sleep(std::time::Duration::from_millis(poll_ms)).await;
    }
    Ok(waited.elapsed().as_secs_f64())
}

/// Bytes of the files directly in `dir` (the embedded database and its log).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Deletes the project and waits for the purge (see [`Options::purge`]); reports how long it
/// took from the deletion, how fast, and the server's memory while it ran.
async fn time_purge(
    client: &reqwest::Client,
    server: &ServerProcess,
    project_id: &str,
    data_dir: Option<&std::path::Path>,
) -> Result<()> {
    let pid = server.child.id();
    let before = rss_mib(pid).unwrap_or(0.0);
    let bytes_before = data_dir.map(dir_bytes);
    let t0 = Instant::now();
    let resp = client
        .delete(format!("{}/v1/project/{project_id}", server.url))
        .header("authorization", format!("Bearer {}", server.key))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("deleting the project: {}", resp.status());
    }
    let mut max_rss = before;
    let mut purged = false;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        max_rss = max_rss.max(rss_mib(pid).unwrap_or(0.0));
        // The run that purged the project has ended (its compaction included) once nothing
        // is waiting.
        if !purged {
            purged = metric(client, server, "holdfast_purge_objects_total").await? >= 1.0;
        } else if metric(client, server, "holdfast_purge_waiting").await? == 0.0 {
            break;
        }
        if metric(client, server, "holdfast_purge_failures_total").await? > 0.0 {
            bail!("the purge failed (see the server's log)");
        }
    }
    let took = t0.elapsed().as_secs_f64();
    let versions = metric(client, server, "holdfast_purge_versions_total").await?;
    let compaction = metric(client, server, "holdfast_purge_last_compaction_seconds").await?;
    say!(
        "purge         {versions:.0} versions in {took:.1} s from the deletion (grace 1 s): {:.0} versions/s",
        versions / took
    );
    say!("purge compact {compaction:.2} s of it compacting the store (the writer waits meanwhile)");
    say!(
        "purge memory  server RSS {before:.0} MiB before, at most {max_rss:.0} MiB while purging (sampled every 200 ms)"
    );
    if let (Some(b), Some(dir)) = (bytes_before, data_dir) {
        say!(
            "purge files   {:.0} MiB before, {:.0} MiB after (database and log; the log emptied, freed pages kept in the database, zeroed)",
            b as f64 / 1048576.0,
            dir_bytes(dir) as f64 / 1048576.0
        );
    }
    Ok(())
}

/// Gives the project a 3-day retention policy for its logs (see [`Options::retention`]) and
/// times the run that applies it, then the purge of the rows it deleted; reports rows/s and
/// the server's memory.
async fn time_retention(
    client: &reqwest::Client,
    server: &ServerProcess,
    project_id: &str,
) -> Result<()> {
    let pid = server.child.id();
    let before = rss_mib(pid).unwrap_or(0.0);
    let policy = serde_json::json!({"project_id": project_id, "name": "bench",
        "config": {"event_type": "retention", "object_type": "project_logs", "retention_days": 3}});
    let preview: Value = client
        .post(format!("{}/v1/project_automation/preview", server.url))
        .header("authorization", format!("Bearer {}", server.key))
        .json(&policy)
        .send()
        .await?
        .json()
        .await?;
    let t0 = Instant::now();
    let resp = client
        .post(format!("{}/v1/project_automation", server.url))
        .header("authorization", format!("Bearer {}", server.key))
        .json(&policy)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("creating the policy: {}", resp.status());
    }
    let want = preview
        .get("rows")
        .and_then(Value::as_f64)
        .context("the preview's row count")?;
    let mut max_rss = before;
    let mut expired_at = None;
    let last = loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        max_rss = max_rss.max(rss_mib(pid).unwrap_or(0.0));
        let expired = metric(client, server, "holdfast_retention_rows_total").await?;
        if expired_at.is_none() && expired >= want {
            expired_at = Some(t0.elapsed().as_secs_f64());
        }
        let purged = metric(client, server, "holdfast_purge_rows_total").await?;
        if expired_at.is_some() && purged >= want {
            break purged;
        }
        if metric(client, server, "holdfast_purge_failures_total").await? > 0.0
            || metric(client, server, "holdfast_retention_failures_total").await? > 0.0
        {
            bail!("the purge or the retention run failed (see the server's log)");
        }
    };
    let took = t0.elapsed().as_secs_f64();
    let applied = expired_at.unwrap_or(took);
    say!(
        "retention     {want:.0} rows expired (the preview's count) in {applied:.1} s: {:.0} rows/s",
        want / applied
    );
    say!(
        "row purge     {last:.0} deleted rows purged {:.1} s after that (grace 1 s): {:.0} rows/s",
        took - applied,
        last / (took - applied).max(0.001)
    );
    say!(
        "retention mem server RSS {before:.0} MiB before, at most {max_rss:.0} MiB meanwhile (sampled every 200 ms)"
    );
    Ok(())
}

/// Loads the store; returns (project id, a few root span ids, spans/s).
async fn load(
    client: &reqwest::Client,
    server: &ServerProcess,
    traces: u64,
    clients: usize,
) -> Result<(String, Vec<String>, f64)> {
    let project: Value = client
        .post(format!("{}/v1/project", server.url))
        .header("authorization", format!("Bearer {}", server.key))
        .json(&json!({"name": "bench-query"}))
        .send()
        .await?
        .json()
        .await?;
    let project_id = project
        .get("id")
        .and_then(Value::as_str)
        .context("project id")?
        .to_owned();
    const TRACES_PER_BATCH: u64 = 20;
    let batches = traces.div_ceil(TRACES_PER_BATCH);
    let seconds_per_trace = 86_400.0 / traces.max(1) as f64;
    let mut generators = Vec::new();
    for part in 0..2u64 {
        let project_id = project_id.clone();
        generators.push(tokio::task::spawn_blocking(move || {
            let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B ^ (part + 1));
            let mut bodies = Vec::new();
            let mut roots = Vec::new();
            for b in (part..batches).step_by(2) {
                let mut rows = Vec::new();
                for i in 0..TRACES_PER_BATCH {
                    let n = b * TRACES_PER_BATCH + i;
                    if n >= traces {
                        break;
                    }
                    let secs = (n as f64 * seconds_per_trace) as u64;
                    let created = format!(
                        "{DAY}T{:02}:{:02}:{:02}.{:06}Z",
                        secs / 3600,
                        secs / 60 % 60,
                        secs % 60,
                        n % 1_000_000
                    );
                    let user = format!("user-{:03}", rng.next() % 500);
                    // One trace in 200 has the word in one of its 5 spans: 0.1% of spans.
                    let rare = rng.next().is_multiple_of(200);
                    // One trace in 1,000 has a rare tag; the tool span has one of 500 names.
                    let tagged = rng.next().is_multiple_of(1000);
                    let tool = format!("search_{:03}", rng.next() % 500);
                    // One trace in 100 has a failed tool call.
                    let failed = rng.next().is_multiple_of(100);
                    let shape = TraceShape {
                        created: &created,
                        user_id: Some(user),
                        rare_word: rare.then_some(RARE_WORD),
                        tag: tagged.then_some(RARE_TAG),
                        tool: Some(&tool),
                        error: failed.then_some("search backend timed out"),
                    };
                    let (root, spans) = trace_shaped(&mut rng, &project_id, n as f64, &shape);
                    if roots.len() < 64 {
                        roots.push(root);
                    }
                    rows.extend(spans);
                }
                bodies.push(serde_json::to_vec(
                    &json!({"rows": rows, "api_version": 2}),
                )?);
            }
            Ok::<_, anyhow::Error>((bodies, roots))
        }));
    }
    let mut bodies = Vec::new();
    let mut roots = Vec::new();
    for g in generators {
        let (b, r) = g.await??;
        bodies.extend(b);
        roots.extend(r);
    }
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    post_all(client, server, bodies, clients, TRACES_PER_BATCH * 5, &done).await?;
    let rate = (traces * 5) as f64 / started.elapsed().as_secs_f64();
    Ok((project_id, roots, rate))
}

pub async fn run(o: Options) -> Result<()> {
    // Checked before the load, which can take half an hour.
    if o.export && o.data_dir.is_none() {
        bail!("--export needs --data-dir: the export reads the store with its keys");
    }
    let server = start_server(
        &std::env::current_exe()?,
        o.database_url.as_deref(),
        o.data_dir.as_deref(),
        true,
        // Scans of a large store take longer than the default limit; the benchmark reports
        // how long they take instead of stopping them.
        &[
            ("HOLDFAST_QUERY_TIMEOUT_MS", "600000"),
            ("HOLDFAST_METRICS_TOKEN", "bench"),
            ("HOLDFAST_DELETION_GRACE_SECS", "1"),
            (
                "HOLDFAST_PURGE_INTERVAL_SECS",
                if o.purge || o.retention { "1" } else { "0" },
            ),
        ],
    )
    .await?;
    let client = reqwest::Client::new();
    say!(
        err,
        "loading {} traces ({} spans)...",
        o.traces,
        o.traces * 5
    );
    let (p, roots, rate) = load(&client, &server, o.traces, o.clients).await?;
    // Both stores index words (the embedded store also values) after the commit; wait until
    // they have caught up.
    let caught_up = wait_for_indexes(&client, &server, 500).await?;
    // PostgreSQL plans by its table statistics, which autovacuum refreshes after a load this
    // size; refresh them now, as a server with autovacuum (the default) would have.
    if let Some(url) = &o.database_url {
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::raw_sql("ANALYZE").execute(&pool).await?;
        pool.close().await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let auth = format!("Bearer {}", server.key);
    let queries: Vec<(&str, String)> = vec![
        (
            "whole trace by id",
            format!("SELECT * FROM project_logs('{p}') WHERE root_span_id = '{{root}}'"),
        ),
        (
            "50 most recent traces (summary)",
            format!(
                "SELECT * FROM project_logs('{p}', shape => 'summary') ORDER BY created DESC LIMIT 50"
            ),
        ),
        (
            "metadata.user_id = X",
            format!("SELECT * FROM project_logs('{p}') WHERE metadata.user_id = 'user-042'"),
        ),
        (
            "rare word (MATCH)",
            format!("SELECT * FROM project_logs('{p}') WHERE input MATCH '{RARE_WORD}'"),
        ),
        (
            "word that occurs nowhere",
            format!("SELECT * FROM project_logs('{p}') WHERE input MATCH '{ABSENT_WORD}'"),
        ),
        (
            "rare word in input OR output",
            format!(
                "SELECT * FROM project_logs('{p}') WHERE input MATCH '{RARE_WORD}' OR output MATCH '{RARE_WORD}'"
            ),
        ),
        (
            "rare tag (tags INCLUDES)",
            format!("SELECT * FROM project_logs('{p}') WHERE tags INCLUDES '{RARE_TAG}'"),
        ),
        (
            "rare tag, 50 most recent",
            format!(
                "SELECT * FROM project_logs('{p}') WHERE tags INCLUDES '{RARE_TAG}' ORDER BY created DESC LIMIT 50"
            ),
        ),
        (
            "span_attributes.name = X",
            format!("SELECT * FROM project_logs('{p}') WHERE span_attributes.name = 'search_042'"),
        ),
        (
            "metadata range sorted (slowest 50)",
            format!(
                "SELECT * FROM project_logs('{p}') WHERE metadata.latency_ms > 4900 ORDER BY metadata.latency_ms DESC LIMIT 50"
            ),
        ),
        (
            "50 traces by metadata.user_id (summary)",
            format!(
                "SELECT * FROM project_logs('{p}', shape => 'summary') ORDER BY metadata.user_id LIMIT 50"
            ),
        ),
        (
            "score filter sorted by score",
            format!(
                "SELECT * FROM project_logs('{p}') WHERE scores.Factuality > 0.9 ORDER BY scores.Factuality DESC LIMIT 50"
            ),
        ),
        (
            "counts per hour over a day (GROUP BY)",
            format!(
                "SELECT hour(created) AS h, count(*) AS n FROM project_logs('{p}') \
                 WHERE created >= '{DAY}T00:00:00Z' AND created < '{DAY}T23:59:59.999999Z' GROUP BY 1 ORDER BY h"
            ),
        ),
    ];
    let backend = if o.database_url.is_some() {
        "postgresql"
    } else {
        "sqlite (embedded, encrypted at rest)"
    };
    say!("backend       {backend}");
    say!(
        "store         {} spans ({} traces), loaded at {rate:.0} spans/s",
        o.traces * 5,
        o.traces
    );
    say!("indexes       caught up {caught_up:.1} s after the load ended");
    say!("runs          {} per query after one warm-up", o.runs);
    say!(
        "{:<40} {:>10} {:>10} {:>10} {:>8}",
        "query",
        "p50 ms",
        "min ms",
        "max ms",
        "rows"
    );
    for (name, text) in &queries {
        let mut times = Vec::new();
        let mut rows = 0;
        for run in 0..=o.runs {
            let root = roots
                .get(run % roots.len().max(1))
                .cloned()
                .unwrap_or_default();
            let body = json!({"query": text.replace("{root}", &root)});
            let t0 = Instant::now();
            let resp = client
                .post(format!("{}/btql", server.url))
                .header("authorization", &auth)
                .json(&body)
                .send()
                .await?;
            let status = resp.status();
            let reply: Value = resp.json().await?;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            if !status.is_success() {
                bail!("{name}: {status} {reply}");
            }
            rows = reply
                .get("data")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if run > 0 {
                times.push(ms);
            }
        }
        times.sort_by(f64::total_cmp);
        say!(
            "{:<40} {:>10.1} {:>10.1} {:>10.1} {:>8}",
            name,
            percentile(&times, 0.5),
            times.first().copied().unwrap_or(0.0),
            times.last().copied().unwrap_or(0.0),
            rows
        );
    }
    say!(
        "server peak RSS {:.0} MiB",
        peak_rss_mib(server.child.id()).unwrap_or(0.0)
    );
    if o.pages {
        crate::bench_pages::run(&client, &server, &p, &roots, o.runs).await?;
    }
    if o.export {
        for format in ["jsonl", "parquet"] {
            time_export(&o, o.traces * 5, format)?;
        }
    }
    if o.retention {
        time_retention(&client, &server, &p).await?;
    }
    if o.purge {
        let dir = match (&o.database_url, &o.data_dir) {
            (None, Some(d)) => Some(d.as_path()),
            _ => None,
        };
        time_purge(&client, &server, &p, dir).await?;
    }
    Ok(())
}
