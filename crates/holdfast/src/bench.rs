//! `holdfast bench ingest` (and the shared pieces of `bench query`): starts a real server process on a fresh embedded store, posts
//! realistic traces through `/logs3` from concurrent clients, and reports throughput, request
//! latency, the server's peak RSS, and trace-fetch latency by `root_span_id`.

// The generator indexes JSON objects it has just built and a constant word list; it is a
// load tool outside the server.
#![allow(clippy::indexing_slicing)]

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Ingest throughput and trace fetch latency.
    Ingest {
        /// Traces to ingest (5 spans each).
        #[arg(long, default_value_t = 40_000)]
        traces: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Rows per request.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Trace fetches to time after ingest.
        #[arg(long, default_value_t = 300)]
        fetches: usize,
        /// Run against PostgreSQL instead of the embedded store.
        #[arg(long)]
        database_url: Option<String>,
        /// Keep the store in this (new) directory instead of a temporary one.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// Store without encryption at rest (to measure what it costs).
        #[arg(long)]
        no_encryption_at_rest: bool,
    },
    /// Query latency over a project's logs: whole traces, recent traces (summary), metadata
    /// filters, word search, a sorted score filter and counts per hour.
    Query {
        /// Traces to load (5 spans each).
        #[arg(long, default_value_t = 20_000)]
        traces: u64,
        /// Timed runs of each query (after one warm-up).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Concurrent clients while loading.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Run against PostgreSQL instead of the embedded store.
        #[arg(long)]
        database_url: Option<String>,
        /// Keep the store in this (new) directory instead of a temporary one.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// After the queries, delete the project and time its purge (grace period and
        /// purge interval of one second): duration, versions/s, the server's memory.
        #[arg(long)]
        purge: bool,
        /// After the queries (before a purge), time `export create` of the organization as
        /// JSON Lines and as Parquet (plaintext, to a temporary folder) while the server runs:
        /// rows/s, size, the export process's peak memory.
        #[arg(long)]
        export: bool,
        /// After the queries (before a purge), give the project a retention policy that
        /// expires the spans created before this time of day three days ago (the load's spans
        /// are all of one day), and time its application and the purge of the rows it
        /// deleted (grace period and purge interval of one second): rows/s, the server's
        /// memory.
        #[arg(long)]
        retention: bool,
        /// After the queries, time the web UI's pages on this store (with the owner's key):
        /// the logs table, its filters and search, a second page, a trace, and a trace of
        /// 10,000 spans loaded for it; medians of `runs`, and each page's size.
        #[arg(long)]
        pages: bool,
    },
    /// What authorization costs: one minimal authenticated request (`GET /v1/project/{id}`)
    /// against this build and against a build whose decision is short-circuited, in
    /// alternating rounds; reports server CPU per request and throughput, medians of rounds.
    Authz {
        /// A `holdfast` binary built with `--features authz-bypass`.
        #[arg(long)]
        bypass_binary: std::path::PathBuf,
        /// Requests per round and server.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        #[arg(long, default_value_t = 7)]
        rounds: usize,
    },
}

/// A small deterministic generator, so runs are comparable.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    pub(crate) fn hex(&mut self, n: usize) -> String {
        (0..n.div_ceil(16))
            .map(|_| format!("{:016x}", self.next()))
            .collect::<String>()
            .chars()
            .take(n)
            .collect()
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ser", "tan", "vo", "ri", "pel", "du", "gro", "ne", "fi", "zar", "hu", "bel",
    "cor", "ta", "in", "ex", "pro", "ment", "ing", "ion", "al", "re", "de", "con", "st", "qu",
    "ly", "ar", "om",
];

/// Text from a vocabulary of about 30,000 pseudo-words drawn uniformly, so that it compresses
/// about as well as prose does (not like a short list of repeated words would).
fn text(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 16);
    while s.len() < bytes {
        for _ in 0..rng.range(1, 3) {
            s.push_str(SYLLABLES[rng.range(0, SYLLABLES.len() - 1)]);
        }
        s.push(if rng.range(0, 14) == 0 { '.' } else { ' ' });
        if s.ends_with('.') {
            s.push(' ');
        }
    }
    s
}

/// What varies between traces besides random text.
pub(crate) struct TraceShape<'a> {
    pub created: &'a str,
    /// The root's `metadata.user_id`; random when absent.
    pub user_id: Option<String>,
    /// A word to put in one span's input (even `t`) or output (odd `t`).
    pub rare_word: Option<&'a str>,
    /// A tag to add to the root's.
    pub tag: Option<&'a str>,
    /// The tool span's name (`search_docs` when absent).
    pub tool: Option<&'a str>,
    /// An error for the tool span to have failed with.
    pub error: Option<&'a str>,
}

/// One trace: root task, two LLM calls, a tool call and a score span.
fn trace(rng: &mut Rng, project_id: &str, t: f64) -> (String, Vec<Value>) {
    let shape = TraceShape {
        created: "2026-11-30T00:00:00.000000Z",
        user_id: None,
        rare_word: None,
        tag: None,
        tool: None,
        error: None,
    };
    trace_shaped(rng, project_id, t, &shape)
}

pub(crate) fn trace_shaped(
    rng: &mut Rng,
    project_id: &str,
    t: f64,
    shape: &TraceShape<'_>,
) -> (String, Vec<Value>) {
    let root_span_id = rng.hex(32);
    let root = rng.hex(16);
    let created = shape.created;
    let base = |span_id: &str, parents: Value, name: &str, ty: &str| {
        json!({
            "id": span_id, "span_id": span_id, "root_span_id": root_span_id, "span_parents": parents,
            "created": created, "project_id": project_id, "log_id": "g",
            "span_attributes": {"name": name, "type": ty},
        })
    };
    let mut rows = Vec::with_capacity(5);
    let mut r = base(&root, Value::Null, "handle_request", "task");
    r["input"] = json!({"question": text(rng, 120)});
    r["output"] = json!({"answer": text(rng, 200)});
    let user_id = shape.user_id.clone().unwrap_or_else(|| rng.hex(8));
    let latency_ms = rng.range(50, 5000);
    r["metadata"] =
        json!({"user_id": user_id, "env": "prod", "release": "2026.11", "latency_ms": latency_ms});
    r["tags"] = json!(["prod", "support"]);
    if let (Some(tag), Some(tags)) = (shape.tag, r["tags"].as_array_mut()) {
        tags.push(json!(tag));
    }
    r["metrics"] = json!({"start": t, "end": t + 2.5});
    rows.push(r);
    for (i, name) in ["plan", "respond"].into_iter().enumerate() {
        let id = rng.hex(16);
        let mut l = base(&id, json!([root]), name, "llm");
        let prompt_len = rng.range(500, 4000);
        let out_len = rng.range(200, 2000);
        l["input"] = json!([
            {"role": "system", "content": text(rng, prompt_len / 3)},
            {"role": "user", "content": text(rng, prompt_len * 2 / 3)},
        ]);
        l["output"] = json!([{"role": "assistant", "content": text(rng, out_len)}]);
        l["metadata"] = json!({"model": "gpt-4o-mini", "temperature": 0.2, "step": i});
        let p = (prompt_len / 4) as u64;
        let c = (out_len / 4) as u64;
        l["metrics"] = json!({"start": t + 0.1, "end": t + 1.2, "prompt_tokens": p, "completion_tokens": c, "tokens": p + c});
        rows.push(l);
    }
    let tool = rng.hex(16);
    let tool_name = shape.tool.unwrap_or("search_docs");
    let mut tl = base(&tool, json!([root]), tool_name, "tool");
    tl["input"] = json!({"query": text(rng, 60)});
    tl["output"] = json!({"hits": [text(rng, 150), text(rng, 150)]});
    tl["metrics"] = json!({"start": t + 1.2, "end": t + 1.4});
    if let Some(error) = shape.error {
        tl["error"] = json!(error);
    }
    rows.push(tl);
    let score = rng.hex(16);
    let mut sc = base(&score, json!([root]), "Factuality", "score");
    sc["scores"] = json!({"Factuality": (rng.next() % 100) as f64 / 100.0});
    sc["metrics"] = json!({"start": t + 2.4, "end": t + 2.5});
    rows.push(sc);
    if let Some(word) = shape.rare_word {
        let field = if (t as u64).is_multiple_of(2) {
            "input"
        } else {
            "output"
        };
        rows[3][field] = json!({"text": format!("{} {word} {}", text(rng, 40), text(rng, 40))});
    }
    (root_span_id, rows)
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(idx).copied().unwrap_or(0.0)
}

/// User plus system CPU seconds the process has used.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

pub(crate) fn peak_rss_mib(pid: u32) -> Option<f64> {
    proc_status_mib(pid, "VmHWM:")
}

/// Resident memory now.
pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    proc_status_mib(pid, "VmRSS:")
}

fn proc_status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) struct ServerProcess {
    pub child: std::process::Child,
    pub url: String,
    pub key: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn start_server(
    binary: &std::path::Path,
    database_url: Option<&str>,
    data_dir: Option<&std::path::Path>,
    encrypt_at_rest: bool,
    env: &[(&str, &str)],
) -> Result<ServerProcess> {
    let tmp = match data_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir()?),
    };
    let dir = match (data_dir, &tmp) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => bail!("no data directory"),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = std::process::Command::new(binary);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(&dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    // The server logs warnings only, unless HOLDFAST_LOG asks for more.
    let log = std::env::var("HOLDFAST_LOG").unwrap_or_else(|_| "warn".into());
    cmd.env("HOLDFAST_LOG", log)
        .env("HOLDFAST_ENCRYPT_AT_REST", encrypt_at_rest.to_string())
        .env("BENCH_AUTHZ_BYPASS_OK", "1")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().context("starting the server")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut key = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(k) = line.strip_prefix("export BRAINTRUST_API_KEY=") {
            key = Some(k.to_owned());
        }
        if line.starts_with("export BRAINTRUST_APP_URL=") {
            break;
        }
    }
    let key = key.context("the server printed no key")?;
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(ServerProcess {
                child,
                url,
                key,
                _dir: tmp,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not become ready")
}

pub async fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Ingest {
            traces,
            clients,
            batch,
            fetches,
            database_url,
            data_dir,
            no_encryption_at_rest,
        } => {
            ingest(
                traces,
                clients,
                batch,
                fetches,
                database_url,
                data_dir,
                !no_encryption_at_rest,
            )
            .await
        }
        BenchCommand::Query {
            traces,
            runs,
            clients,
            database_url,
            data_dir,
            purge,
            export,
            retention,
            pages,
        } => {
            crate::bench_query::run(crate::bench_query::Options {
                traces,
                runs,
                clients,
                database_url,
                data_dir,
                purge,
                export,
                retention,
                pages,
            })
            .await
        }
        BenchCommand::Authz {
            bypass_binary,
            requests,
            clients,
            rounds,
        } => authz(&bypass_binary, requests, clients, rounds).await,
    }
}

/// A server ready for the authorization benchmark: a project and a policy with some body to
/// it (custom groups, each granted on the project), and the path of the request to time.
async fn authz_target(binary: &std::path::Path) -> Result<(ServerProcess, String)> {
    let server = start_server(binary, None, None, true, &[]).await?;
    let client = reqwest::Client::new();
    let auth = format!("Bearer {}", server.key);
    let post = |path: &str, body: Value| {
        client
            .post(format!("{}{path}", server.url))
            .header("authorization", &auth)
            .json(&body)
            .send()
    };
    let project: Value = post("/v1/project", json!({"name": "bench"}))
        .await?
        .json()
        .await?;
    let pid = project["id"].as_str().context("project id")?.to_owned();
    for i in 0..20 {
        let group: Value = post("/v1/group", json!({"name": format!("team-{i}")}))
            .await?
            .json()
            .await?;
        let acl = json!({"object_type": "project", "object_id": pid,
                         "group_id": group["id"], "permission": "read"});
        if !post("/v1/acl", acl).await?.status().is_success() {
            bail!("could not set up the policy");
        }
    }
    Ok((server, format!("/v1/project/{pid}")))
}

/// One round: `requests` GETs from `clients` clients; returns (server CPU µs per request,
/// requests per second).
async fn authz_round(
    server: &ServerProcess,
    path: &str,
    requests: usize,
    clients: usize,
) -> Result<(f64, f64)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .build()?;
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(requests));
    let cpu0 = cpu_seconds(server.child.id()).unwrap_or(0.0);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, left) = (client.clone(), left.clone());
        let url = format!("{}{path}", server.url);
        let auth = format!("Bearer {}", server.key);
        tasks.push(tokio::spawn(async move {
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                let resp = client
                    .get(&url)
                    .header("authorization", &auth)
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!("request failed: {}", resp.status());
                }
                resp.bytes().await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.child.id()).unwrap_or(0.0) - cpu0;
    Ok((cpu * 1e6 / requests as f64, requests as f64 / wall))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

async fn authz(
    bypass_binary: &std::path::Path,
    requests: usize,
    clients: usize,
    rounds: usize,
) -> Result<()> {
    let (real, real_path) = authz_target(&std::env::current_exe()?).await?;
    let (bypass, bypass_path) = authz_target(bypass_binary).await?;
    // Warm both up.
    authz_round(&real, &real_path, requests / 4, clients).await?;
    authz_round(&bypass, &bypass_path, requests / 4, clients).await?;
    let (mut real_cpu, mut real_rps, mut bypass_cpu, mut bypass_rps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        // Alternate which goes first, so drift on a shared machine hits both alike.
        let order = if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_real in order {
            let (server, path) = if is_real {
                (&real, &real_path)
            } else {
                (&bypass, &bypass_path)
            };
            let (cpu, rps) = authz_round(server, path, requests, clients).await?;
            say!(
                err,
                "round {r} {}: {cpu:.1} us CPU/request, {rps:.0} requests/s",
                if is_real { "authorized" } else { "bypassed" }
            );
            if is_real {
                real_cpu.push(cpu);
                real_rps.push(rps);
            } else {
                bypass_cpu.push(cpu);
                bypass_rps.push(rps);
            }
        }
    }
    let (rc, bc) = (median(real_cpu), median(bypass_cpu));
    let (rr, br) = (median(real_rps), median(bypass_rps));
    say!("request            GET /v1/project/{{id}} (key check, policy of 23 ACLs, audit entry)");
    say!("rounds             {rounds} x {requests} requests per build, {clients} clients");
    say!("authorized         {rc:.1} us server CPU/request, {rr:.0} requests/s (medians)");
    say!("decision bypassed  {bc:.1} us server CPU/request, {br:.0} requests/s (medians)");
    say!(
        "authorization cost {:+.1}% CPU per request, {:+.1}% throughput",
        100.0 * (rc / bc - 1.0),
        100.0 * (rr / br - 1.0)
    );
    Ok(())
}

async fn ingest(
    traces: u64,
    clients: usize,
    batch: usize,
    fetches: usize,
    database_url: Option<String>,
    data_dir: Option<std::path::PathBuf>,
    encrypt_at_rest: bool,
) -> Result<()> {
    let server = start_server(
        &std::env::current_exe()?,
        database_url.as_deref(),
        data_dir.as_deref(),
        encrypt_at_rest,
        &[],
    )
    .await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .build()?;
    let auth = format!("Bearer {}", server.key);
    let project: Value = client
        .post(format!("{}/v1/project", server.url))
        .header("authorization", &auth)
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let project_id = project["id"].as_str().context("project id")?.to_owned();

    let traces_per_batch = (batch / 5).max(1) as u64;
    let batches = traces.div_ceil(traces_per_batch);
    // Request bodies are generated before the clock starts, on both cores, so that the
    // load generator does not compete with the server while it is measured.
    let generated = Instant::now();
    let mut generators = Vec::new();
    for part in 0..2u64 {
        let project_id = project_id.clone();
        generators.push(tokio::task::spawn_blocking(move || {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (part + 1));
            let mut bodies = Vec::new();
            let mut roots = Vec::new();
            for b in (part..batches).step_by(2) {
                let mut rows = Vec::with_capacity(batch);
                for i in 0..traces_per_batch {
                    let (root, spans) = trace(
                        &mut rng,
                        &project_id,
                        1.8e9 + (b * traces_per_batch + i) as f64,
                    );
                    if roots.len() < 256 {
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
    let total_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    say!(
        err,
        "generated {} requests in {:.1} s",
        bodies.len(),
        generated.elapsed().as_secs_f64()
    );
    let rows_per_request = traces_per_batch * 5;
    let client_cpu_before = cpu_seconds(std::process::id()).unwrap_or(0.0);
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let progress = report_progress(done.clone(), started);
    let mut latencies =
        post_all(&client, &server, bodies, clients, rows_per_request, &done).await?;
    let elapsed = started.elapsed().as_secs_f64();
    progress.abort();
    let server_cpu = cpu_seconds(server.child.id()).unwrap_or(0.0);
    let client_cpu = cpu_seconds(std::process::id()).unwrap_or(0.0) - client_cpu_before;
    latencies.sort_by(f64::total_cmp);
    let spans = traces * 5;
    let mb = total_bytes as f64 / 1e6;

    let mut fetch_ms = Vec::new();
    for i in 0..fetches.min(roots.len().max(1) * 100) {
        let Some(root) = roots.get(i % roots.len().max(1)) else {
            break;
        };
        let body = json!({"query": {
            "select": [{"op": "star"}],
            "from": {"op": "function", "name": {"op": "ident", "name": ["project_logs"]}, "args": [{"op": "literal", "value": project_id}]},
            "filter": {"op": "eq", "left": {"op": "ident", "name": ["root_span_id"]}, "right": {"op": "literal", "value": root}},
            "limit": 1000
        }});
        let t0 = Instant::now();
        let resp: Value = client
            .post(format!("{}/btql", server.url))
            .header("authorization", &auth)
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        fetch_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        let n = resp["data"].as_array().map_or(0, Vec::len);
        if n != 5 {
            bail!("trace fetch returned {n} spans, expected 5");
        }
    }
    fetch_ms.sort_by(f64::total_cmp);
    let rss = peak_rss_mib(server.child.id()).unwrap_or(0.0);
    let backend = if database_url.is_some() {
        "postgresql"
    } else {
        if encrypt_at_rest {
            "sqlite (embedded, synchronous=FULL, encrypted at rest)"
        } else {
            "sqlite (embedded, synchronous=FULL, not encrypted)"
        }
    };
    say!("backend            {backend}");
    say!(
        "spans ingested     {spans} ({traces} traces, {batches} requests of {} rows, {clients} clients)",
        traces_per_batch * 5
    );
    say!("elapsed            {elapsed:.2} s");
    say!(
        "throughput         {:.0} spans/s, {:.1} MB/s",
        spans as f64 / elapsed,
        mb / elapsed
    );
    say!(
        "request latency    p50 {:.1} ms, p99 {:.1} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    say!(
        "trace fetch        p50 {:.2} ms, p99 {:.2} ms ({} fetches by root_span_id)",
        percentile(&fetch_ms, 0.5),
        percentile(&fetch_ms, 0.99),
        fetch_ms.len()
    );
    say!("server peak RSS    {rss:.0} MiB");
    say!(
        "server CPU         {server_cpu:.1} s during ingest ({:.0}% of one core)",
        100.0 * server_cpu / elapsed
    );
    say!(
        "load generator CPU {client_cpu:.1} s during ingest ({:.0}% of one core)",
        100.0 * client_cpu / elapsed
    );
    Ok(())
}

/// Throughput per interval on stderr, so that a slowdown as the store grows shows.
fn report_progress(
    done: Arc<std::sync::atomic::AtomicU64>,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        let mut last = 0u64;
        loop {
            tick.tick().await;
            let now = done.load(std::sync::atomic::Ordering::Relaxed);
            say!(
                err,
                "{:>6.0} s  {:>9} rows stored  {:>6.0} rows/s in the last 10 s",
                started.elapsed().as_secs_f64(),
                now,
                (now - last) as f64 / 10.0
            );
            last = now;
        }
    })
}

/// Posts every body to `/logs3` from `clients` concurrent clients; returns request latencies
/// in milliseconds.
pub(crate) async fn post_all(
    client: &reqwest::Client,
    server: &ServerProcess,
    bodies: Vec<Vec<u8>>,
    clients: usize,
    rows_per_request: u64,
    done: &Arc<std::sync::atomic::AtomicU64>,
) -> Result<Vec<f64>> {
    let queue = Arc::new(tokio::sync::Mutex::new(bodies.into_iter()));
    let auth = format!("Bearer {}", server.key);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, auth, url, queue, done) = (
            client.clone(),
            auth.clone(),
            server.url.clone(),
            queue.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let Some(body) = queue.lock().await.next() else {
                    break;
                };
                let t0 = Instant::now();
                let resp = client
                    .post(format!("{url}/logs3"))
                    .header("authorization", &auth)
                    .body(body)
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!(
                        "ingest failed: {} {}",
                        resp.status(),
                        resp.text().await.unwrap_or_default()
                    );
                }
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                done.fetch_add(rows_per_request, std::sync::atomic::Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(latencies)
}
