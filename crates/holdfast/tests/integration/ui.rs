//! The web UI in a real browser (Debian's `chromium` and `chromium-driver`, driven by Python
//! `selenium`, with npm `axe-core` checking every page): `compat/py/ui_flow.py` signs in, runs
//! the Python SDK's `Eval` twice, opens the link it prints, compares, opens traces and the
//! SDK's span links, filters the logs, and checks what a member who may read one project
//! sees. And over HTTP: what a page answers without a session, to another organization's
//! name, and to a forged sign-in return address.

use crate::harness::{Backend, Server, backends};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

fn compat_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../compat")
}

/// A one-time set-password link for `email` in `group`, at this server's address.
fn invite(server: &Server, email: &str, group: &str) -> String {
    let line = server.cli_line(&[
        "user", "invite", "--org", "default", "--email", email, "--group", group,
    ]);
    let token = line
        .rsplit_once("#token=")
        .expect("the invite command prints the link")
        .1;
    format!("{}/auth/set-password#token={token}", server.url)
}

async fn ui_in_chromium(backend: Backend) {
    let server = Server::start(backend).await;
    // The reader's group; the owner grants it one project in the browser.
    server
        .ok("POST", "/v1/project", Some(json!({"name": "Say Hi Bot"})))
        .await;
    server
        .ok("POST", "/v1/group", Some(json!({"name": "Bot readers"})))
        .await;
    let owner = invite(&server, "ann@acme.test", "Owners");
    let reader = invite(&server, "rita@acme.test", "Bot readers");
    let shots = std::env::temp_dir().join(format!("holdfast-ui-{backend:?}"));
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(compat_dir().join(".venv/bin/python"))
        .arg(compat_dir().join("py/ui_flow.py"))
        .env("HOLDFAST", &server.url)
        .env("OWNER_KEY", &server.key)
        .env("INVITE", &owner)
        .env("READER_INVITE", &reader)
        .env(
            "AXE",
            compat_dir().join("js/node_modules/axe-core/axe.min.js"),
        )
        .env("SHOTS", &shots)
        .env("SE_OFFLINE", "true")
        .env("NO_COLOR", "1")
        .output()
        .expect("the browser script runs (run the README's test command)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser checks failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "01-experiment",
        "03-experiment-trace",
        "08-logs",
        "12-reader-projects",
    ] {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}");
    }
    // Pages are reads like any other: the reader's refusal and the owner's reads are audited.
    let audit = server.audit_rows().await;
    let read = |action: &str, status: u16| {
        audit
            .iter()
            .any(|(a, d, _)| a == action && d.contains(&format!("\"status\":{status}")))
    };
    assert!(
        read("GET /app/{org}/p/{project}/experiments/{name}", 200),
        "the owner's page reads are audited"
    );
    assert!(
        read("GET /app/{org}/p/{project}/logs", 404),
        "the reader's refused read is audited"
    );
}

/// Without a session a page sends the browser to sign in and back; another organization's
/// name is a 404 page; a sign-in's return address is only ever a page of the UI.
async fn pages_without_a_session(backend: Backend) {
    let server = Server::start(backend).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/app/default/p/x/logs?oid=1", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/login?next=%2Fapp%2Fdefault%2Fp%2Fx%2Flogs%3Foid%3D1"
    );
    // A session cookie that names no session is sent to sign in too, not shown an error.
    let r = http
        .get(format!("{}/app/default", server.url))
        .header("cookie", format!("holdfast_session={}", "a".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // With a key: pages answer as the API does.
    let page = |path: &str| {
        let req = http
            .get(format!("{}{path}", server.url))
            .bearer_auth(&server.key);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let csp = r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_owned();
            (status, csp, r.text().await.unwrap())
        }
    };
    let (status, csp, body) = page("/app/default").await;
    assert_eq!(status, 200, "{body}");
    assert!(!csp.contains("unsafe-inline") && csp.contains("script-src 'self'"));
    assert!(body.contains("<h1>Projects</h1>"));
    let (status, _, body) = page("/app/another-org/p/x/logs").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("role=\"alert\""));
    let (status, _, _) = page("/app/default/p/no%20such%20project/experiments").await;
    assert_eq!(status, 404);
    // A filter that is not an expression is a 400 page that says where.
    server
        .ok("POST", "/v1/project", Some(json!({"name": "p"})))
        .await;
    let (status, _, body) = page("/app/default/p/p/logs?filter=a%20%3D%20%27").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("line 1, column"), "{body}");
    // The sign-in form carries only a return address under /app, and follows only such.
    let login = |next: &str| {
        http.get(format!("{}/login?next={}", server.url, next))
            .send()
    };
    let body = login("%2Fapp%2Fdefault")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("name=\"next\" value=\"/app/default\""),
        "{body}"
    );
    let body = login("https%3A%2F%2Fevil.test%2Fapp")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!body.contains("name=\"next\""), "{body}");
}

/// The keys page shows each key's most recent days of use (read for all keys at once), the
/// newest first.
async fn keys_page_shows_recent_use(backend: Backend) {
    let server = Server::start(backend).await;
    let mut ids = Vec::new();
    for name in ["busy key", "quiet key"] {
        let k = server
            .ok("POST", "/v1/api_key", Some(json!({"name": name})))
            .await;
        ids.push(k["id"].as_str().unwrap().to_owned());
    }
    let mut values: Vec<String> = (1..=10)
        .map(|d| format!("('{}', '2026-01-{d:02}', {d})", ids[0]))
        .collect();
    values.extend((1..=2).map(|d| format!("('{}', '2026-02-{d:02}', {})", ids[1], 100 + d)));
    server
        .execute_sql(&format!(
            "INSERT INTO key_usage (key_id, day, requests) VALUES {}",
            values.join(", ")
        ))
        .await;
    let (status, page) = server
        .call("GET", "/app/default/keys", Some(&server.key), None)
        .await;
    assert_eq!(status, 200, "{page}");
    let body = page.as_str().unwrap();
    let at = |text: &str| body.find(&format!("<li>{text}</li>"));
    // The busy key: its seven newest days, newest first; the older ones are not shown.
    let shown: Vec<usize> = (4..=10)
        .rev()
        .map(|d| at(&format!("2026-01-{d:02}: {d}")).unwrap_or_else(|| panic!("day {d}: {body}")))
        .collect();
    assert!(shown.windows(2).all(|w| w[0] < w[1]), "{shown:?}");
    assert!(at("2026-01-03: 3").is_none(), "{body}");
    assert!(
        at("2026-02-02: 102").is_some() && at("2026-02-01: 101").is_some(),
        "{body}"
    );
}

/// A new experiment `name` in a new project `project`.
async fn experiment(server: &Server, project: &str, name: &str) -> serde_json::Value {
    let project = server
        .ok("POST", "/v1/project", Some(json!({"name": project})))
        .await;
    server
        .ok(
            "POST",
            "/v1/experiment",
            Some(json!({"project_id": project["id"], "name": name})),
        )
        .await
}

/// The first score cell of project `project`'s experiments page.
async fn first_score(server: &Server, project: &str) -> String {
    let (status, page) = server
        .call(
            "GET",
            &format!("/app/default/p/{project}/experiments"),
            Some(&server.key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let body = page.as_str().unwrap().to_owned();
    let at = body.find("<td class=\"num\">").expect("a score cell");
    body[at..]
        .split('>')
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned()
}

/// The experiments page's score summaries since the server started, by how they were
/// answered: from memory, from the store, brought up to date, read whole (`/metrics`).
async fn score_lookups(server: &Server) -> Vec<f64> {
    let mut counts = Vec::new();
    for result in ["hit", "stored", "updated", "miss"] {
        let name =
            format!("holdfast_cache_lookups_total{{cache=\"score_summary\",result=\"{result}\"}}");
        counts.push(server.metric(&name).await);
    }
    counts
}

/// An experiment's score summary is kept in the store too: after a restart the experiments
/// page shows it without reading the experiment again (`/metrics`), until it changes; and
/// the SDK's summarize keeps it too.
async fn experiment_scores_outlive_a_restart(backend: Backend) {
    let mut server = Server::start_with(backend, &[("HOLDFAST_METRICS_TOKEN", "scrape-me")]).await;
    let e = experiment(&server, "Kept", "e1").await;
    let row = |id: &str, acc: f64| {
        json!({"id": id, "span_id": id, "root_span_id": id, "experiment_id": e["id"],
               "input": id, "scores": {"acc": acc}})
    };
    let rows = json!({"rows": [row("a", 1.0), row("b", 0.0)]});
    server.ok("POST", "/logs3", Some(rows)).await;
    assert_eq!(first_score(&server, "Kept").await, "50.0%");
    assert_eq!(first_score(&server, "Kept").await, "50.0%");
    assert_eq!(score_lookups(&server).await, [1.0, 0.0, 0.0, 1.0]);
    server.stop();
    server.spawn().await;
    assert_eq!(first_score(&server, "Kept").await, "50.0%");
    assert_eq!(first_score(&server, "Kept").await, "50.0%");
    assert_eq!(
        score_lookups(&server).await,
        [1.0, 1.0, 0.0, 0.0],
        "after the restart"
    );
    // A change: the kept summary is of an older version, and the experiment is read.
    let rows = json!({"rows": [row("c", 1.0)]});
    server.ok("POST", "/logs3", Some(rows)).await;
    assert_eq!(first_score(&server, "Kept").await, "66.7%");
    assert_eq!(
        score_lookups(&server).await,
        [1.0, 1.0, 0.0, 1.0],
        "after a change"
    );
    server.stop();
    server.spawn().await;
    assert_eq!(first_score(&server, "Kept").await, "66.7%");
    assert_eq!(
        score_lookups(&server).await,
        [0.0, 1.0, 0.0, 0.0],
        "the change kept"
    );
    // An experiment the SDK summarized (as at the end of an `Eval`) is not read again for
    // the page, after a restart either.
    let project = server
        .ok("GET", "/v1/project?project_name=Kept", None)
        .await;
    let e2 = server
        .ok(
            "POST",
            "/v1/experiment",
            Some(json!({"project_id": project["objects"][0]["id"], "name": "e2"})),
        )
        .await;
    let rows = json!({"rows": [
        {"id": "x", "span_id": "x", "root_span_id": "x", "experiment_id": e2["id"], "input": "x",
         "scores": {"acc": 0.25}}]});
    server.ok("POST", "/logs3", Some(rows)).await;
    let summarize = format!(
        "/v1/experiment/{}/summarize?summarize_scores=true",
        e2["id"].as_str().unwrap()
    );
    server.ok("GET", &summarize, None).await;
    server.stop();
    server.spawn().await;
    assert_eq!(first_score(&server, "Kept").await, "25.0%");
    assert_eq!(
        score_lookups(&server).await,
        [0.0, 2.0, 0.0, 0.0],
        "summarized by the SDK"
    );
}

/// The experiments page's score averages follow the experiment's rows: a new row and a
/// deleted one each change them, though an unchanged experiment's summary is kept between
/// views.
async fn experiment_scores_follow_their_rows(backend: Backend) {
    let server = Server::start(backend).await;
    let e = experiment(&server, "Scored", "e1").await;
    let row = |id: &str, acc: f64| {
        json!({"id": id, "span_id": id, "root_span_id": id, "experiment_id": e["id"],
               "input": id, "scores": {"acc": acc}})
    };
    let log =
        |rows: Vec<serde_json::Value>| server.ok("POST", "/logs3", Some(json!({"rows": rows})));
    let average = || first_score(&server, "Scored");
    // The experiment's own page, whose summary rows are kept while the experiment is
    // unchanged: how many rows it says it has, and whether it shows `text`.
    let server = &server;
    let page = |text: &'static str| async move {
        let (status, page) = server
            .call(
                "GET",
                "/app/default/p/Scored/experiments/e1",
                Some(&server.key),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let body = page.as_str().unwrap();
        let rows = body
            .split(" rows")
            .next()
            .and_then(|b| b.rsplit("· ").next())
            .unwrap()
            .to_owned();
        (rows, body.contains(text))
    };
    log(vec![row("a", 1.0), row("b", 1.0)]).await;
    assert_eq!(average().await, "100.0%");
    assert_eq!(average().await, "100.0%");
    assert_eq!(page(">c</a>").await, ("2".into(), false));
    assert_eq!(page(">c</a>").await, ("2".into(), false));
    log(vec![row("c", 0.0), row("d", 0.0)]).await;
    assert_eq!(average().await, "50.0%");
    assert_eq!(page(">c</a>").await, ("4".into(), true));
    log(vec![
        json!({"id": "c", "experiment_id": e["id"], "_object_delete": true}),
    ])
    .await;
    assert_eq!(average().await, "66.7%");
    assert_eq!(page(">c</a>").await, ("3".into(), false));
    // An update in place: row d's input changes.
    log(vec![
        json!({"id": "d", "experiment_id": e["id"], "input": "d-changed",
                    "_is_merge": true}),
    ])
    .await;
    assert_eq!(page(">d-changed</a>").await, ("3".into(), true));
    // A span added to trace b, then moved to trace d: the page reads again only the traces
    // of the rows changed, and both traces' rows follow.
    let child = |root: &str| {
        json!({"id": "b1", "span_id": "b1", "root_span_id": root, "span_parents": [root],
               "experiment_id": e["id"], "scores": {"acc": 0.5}})
    };
    assert_eq!(page("58.3%").await, ("3".into(), false));
    log(vec![child("b")]).await;
    assert_eq!(average().await, "58.3%");
    assert_eq!(page("58.3%").await, ("3".into(), true));
    log(vec![child("d")]).await;
    assert_eq!(page("75.0%").await, ("3".into(), true));
    assert_eq!(average().await, "75.0%");
    // More rows changed than are read one trace at a time: the experiment is read whole.
    log((0..70).map(|i| row(&format!("n{i:02}"), 0.0)).collect()).await;
    assert_eq!(average().await, "3.1%");
    assert_eq!(page(">n69</a>").await, ("73".into(), true));
}

/// An experiment's rows table shows 200 rows at a time, with links to the others; the
/// summary counts every row.
async fn experiment_rows_in_pages(backend: Backend) {
    let server = Server::start(backend).await;
    let e = experiment(&server, "Paged", "big").await;
    let rows: Vec<serde_json::Value> = (0..450)
        .map(|i| {
            let id = format!("r{i:03}");
            json!({"id": id, "span_id": id, "root_span_id": id, "experiment_id": e["id"],
                   "input": i, "scores": {"acc": if i < 90 { 1.0 } else { 0.0 }}})
        })
        .collect();
    server
        .ok("POST", "/logs3", Some(json!({"rows": rows})))
        .await;
    let server = &server;
    let page = |from: &str| {
        let path = format!("/app/default/p/Paged/experiments/big{from}");
        async move {
            let (status, page) = server.call("GET", &path, Some(&server.key), None).await;
            assert_eq!(status, 200, "{page}");
            page.as_str().unwrap().to_owned()
        }
    };
    let shown = |body: &str| body.matches("<td class=\"preview\"><a href=").count();
    let first = page("").await;
    assert_eq!(shown(&first), 200);
    assert!(first.contains("Rows 1–200 of 450"), "{first}");
    assert!(
        first.contains("20.0%"),
        "the summary is of every row: {first}"
    );
    assert!(first.contains("from=200\" rel=\"next\""), "{first}");
    let last = page("?from=400").await;
    assert_eq!(shown(&last), 50);
    assert!(
        last.contains("Rows 401–450 of 450") && last.contains("from=200\" rel=\"prev\""),
        "{last}"
    );
    assert!(!last.contains("rel=\"next\""), "{last}");
    assert_eq!(
        shown(&page("?from=99999").await),
        50,
        "past the end: the last rows"
    );
    assert_eq!(
        shown(&page("?from=x").await),
        200,
        "not a number: the first rows"
    );
}

/// The logs' time range is of the traces' times (their roots' `created`): a trace that
/// started before the range is not in it though one of its spans is, and a range holding
/// every trace answers like no range.
async fn logs_time_range_is_of_traces(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server
        .ok("POST", "/v1/project", Some(json!({"name": "Ranged"})))
        .await;
    let ago = |mins: i64| {
        use holdfast_core::clock::Clock as _;
        (holdfast_core::clock::SystemClock.now() - time::Duration::minutes(mins))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let span = |id: &str, root: &str, mins: i64, name: &str| {
        json!({"id": id, "span_id": id, "root_span_id": root, "project_id": project["id"],
               "log_id": "g", "created": ago(mins), "span_parents": if id == root { json!(null) } else { json!([root]) },
               "span_attributes": {"name": name}})
    };
    let rows = vec![
        span("old", "old", 120, "started two hours ago"),
        span("old-child", "old", 5, "child five minutes ago"),
        span("new", "new", 10, "started ten minutes ago"),
        span("ancient", "ancient", 60 * 24 * 40, "started forty days ago"),
    ];
    server
        .ok("POST", "/logs3", Some(json!({"rows": rows})))
        .await;
    let shown = |range: &str| {
        let path = format!("/app/default/p/Ranged/logs?range={range}");
        let server = &server;
        async move {
            let (status, page) = server.call("GET", &path, Some(&server.key), None).await;
            assert_eq!(status, 200, "{page}");
            let body = page.as_str().unwrap().to_owned();
            ["ten minutes", "two hours", "forty days"]
                .into_iter()
                .filter(|n| body.contains(&format!("started {n} ago")))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(shown("1h").await, ["ten minutes"]);
    assert_eq!(shown("24h").await, ["ten minutes", "two hours"]);
    assert_eq!(shown("30d").await, ["ten minutes", "two hours"]);
    assert_eq!(
        shown("all").await,
        ["ten minutes", "two hours", "forty days"]
    );
}

/// The logs' trace viewer: the detail shows the opened span's input, output, metadata and
/// scores, the tree every span with its error badge, and no other span's input or error.
async fn trace_page_shows_the_opened_span(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server
        .ok("POST", "/v1/project", Some(json!({"name": "Viewed"})))
        .await;
    let span = |id: &str, parent: Option<&str>, extra: serde_json::Value| {
        let mut row = json!({"id": id, "span_id": id, "root_span_id": "root", "project_id": project["id"],
               "log_id": "g", "span_parents": parent.map_or(json!(null), |p| json!([p])),
               "span_attributes": {"name": format!("step {id}"), "type": "llm"},
               "metrics": {"start": 1.0, "end": 2.0}});
        row.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        row
    };
    let rows = vec![
        span(
            "root",
            None,
            json!({"input": "root-question-marker", "output": "root-answer-marker"}),
        ),
        span(
            "kid",
            Some("root"),
            json!({"input": [{"role": "user", "content": "kid-question-marker"}],
                                         "output": "kid-answer-marker", "metadata": {"note": "kid-metadata-marker"},
                                         "scores": {"kid_score": 0.25}}),
        ),
        span(
            "bad",
            Some("root"),
            json!({"input": "bad-question-marker", "error": "bad-error-marker"}),
        ),
    ];
    server
        .ok("POST", "/logs3", Some(json!({"rows": rows})))
        .await;
    let (status, page) = server
        .call(
            "GET",
            "/app/default/p/Viewed/logs?oid=kid",
            Some(&server.key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let body = page.as_str().unwrap();
    for shown in [
        "kid-question-marker",
        "kid-answer-marker",
        "kid-metadata-marker",
        "kid_score",
    ] {
        assert!(
            body.contains(shown),
            "the opened span's detail shows {shown}"
        );
    }
    for name in ["step root", "step kid", "step bad"] {
        assert!(body.contains(name), "the tree shows {name}");
    }
    assert!(
        body.contains("badge t-error"),
        "the failed span is marked in the tree"
    );
    for hidden in [
        "root-question-marker",
        "bad-question-marker",
        "bad-error-marker",
    ] {
        assert!(
            !body.contains(hidden),
            "another span's {hidden} is not on the page"
        );
    }
    // Opening the failed span shows its error.
    let (_, page) = server
        .call(
            "GET",
            "/app/default/p/Viewed/logs?oid=bad",
            Some(&server.key),
            None,
        )
        .await;
    assert!(page.as_str().unwrap().contains("bad-error-marker"));
}

/// A long trace's summary row (the logs page) and its outline (the trace viewer) are kept
/// between reads while the trace is unchanged; each change to the trace shows in both at
/// once: a span added, spans updated in place, a span moved to another trace, a span
/// deleted. Each state is read several times, before and after the store indexes it, and
/// the trace is read whole once per state for each (`/metrics`): from its first read, and
/// not again when the store indexes what it read in the writer's tail.
async fn long_traces_follow_their_changes(backend: Backend) {
    let server = Server::start_with(backend, &[("HOLDFAST_METRICS_TOKEN", "scrape-me")]).await;
    let project = server
        .ok("POST", "/v1/project", Some(json!({"name": "Long"})))
        .await;
    let p = project["id"].as_str().unwrap().to_owned();
    let span = |id: &str, root: &str| {
        json!({"id": id, "span_id": id, "root_span_id": root, "project_id": p, "log_id": "g",
               "span_parents": if id == root { json!(null) } else { json!([root]) },
               "span_attributes": {"name": format!("step {id}")}, "metrics": {"tokens": 1}})
    };
    let merge = |id: &str, fields: serde_json::Value| {
        let mut row = json!({"id": id, "project_id": p, "log_id": "g", "_is_merge": true});
        row.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        row
    };
    let server = &server;
    let log = |rows: Vec<serde_json::Value>| async move {
        server
            .ok("POST", "/logs3", Some(json!({"rows": rows})))
            .await;
    };
    // (spans, tokens, errors) of trace `r` as the logs page's query reads it, and the trace
    // page's span count, failed spans and whether it shows span `name`.
    let summary = || async {
        let q = format!(
            "SELECT id, metrics.span_count AS spans, metrics.tokens AS tokens, \
             metrics.error_count AS errors FROM project_logs('{p}', shape => 'summary') \
             ORDER BY created DESC LIMIT 10"
        );
        let body = server.ok("POST", "/btql", Some(json!({"query": q}))).await;
        let row = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "r")
            .cloned()
            .expect("trace r is listed");
        (
            row["spans"].clone(),
            row["tokens"].clone(),
            row["errors"].clone(),
        )
    };
    let page = |name: &'static str| async move {
        let (status, page) = server
            .call(
                "GET",
                "/app/default/p/Long/logs?oid=s010",
                Some(&server.key),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let body = page.as_str().unwrap();
        let spans = body
            .split(" spans")
            .next()
            .and_then(|b| b.rsplit("· ").next())
            .unwrap()
            .to_owned();
        let failed = body.matches("badge t-error").count();
        (spans, failed, body.contains(&format!(">step {name}<")))
    };
    // Long traces read whole, and answered from what was kept.
    let lookups = || async {
        let count = |result: &str| {
            format!("holdfast_cache_lookups_total{{cache=\"long_trace\",result=\"{result}\"}}")
        };
        (
            server.metric(&count("miss")).await,
            server.metric(&count("hit")).await,
        )
    };
    let expect = |spans: i64, tokens: i64, errors: i64, name: &'static str, shown: bool| async move {
        let (reads, hits) = lookups().await;
        // Read while the store may still hold the change in its tail, then after it is
        // indexed: kept results are made and used there.
        for round in 0..5 {
            assert_eq!(
                summary().await,
                (json!(spans), json!(tokens), json!(errors)),
                "summary, read {round}"
            );
            let failed = usize::try_from(errors).unwrap();
            assert_eq!(
                page(name).await,
                (spans.to_string(), failed, shown),
                "trace page, read {round}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        // The summary row and the outline: each made once, at the first read.
        let (reads_now, hits_now) = lookups().await;
        assert_eq!(
            reads_now - reads,
            2.0,
            "long traces read whole, {spans} spans"
        );
        assert!(hits_now - hits >= 8.0, "kept results used, {spans} spans");
    };
    let mut rows = vec![span("r", "r"), span("o", "o")];
    rows.extend((1..300).map(|i| span(&format!("s{i:03}"), "r")));
    log(rows).await;
    expect(300, 300, 0, "s299", true).await;
    log(vec![span("s300", "r")]).await;
    expect(301, 301, 0, "s300", true).await;
    log(vec![
        merge("s001", json!({"error": "failed-marker"})),
        merge("s004", json!({"metrics": {"tokens": 5}})),
    ])
    .await;
    expect(301, 305, 1, "s004", true).await;
    log(vec![span("s002", "o")]).await;
    expect(300, 304, 1, "s002", false).await;
    log(vec![
        json!({"id": "s003", "project_id": p, "log_id": "g", "_object_delete": true}),
    ])
    .await;
    expect(299, 303, 1, "s003", false).await;
}

/// The administration page lists each member once for all the groups' member forms: its
/// size grows with groups plus members, not groups times members.
async fn admin_page_lists_members_once(backend: Backend) {
    let server = Server::start(backend).await;
    server.member_key("zed@example.test", "Viewers");
    for i in 0..30 {
        server
            .ok(
                "POST",
                "/v1/group",
                Some(json!({"name": format!("team-{i}")})),
            )
            .await;
    }
    let (status, page) = server
        .call("GET", "/app/default/admin", Some(&server.key), None)
        .await;
    assert_eq!(status, 200, "{page}");
    let body = page.as_str().unwrap();
    assert_eq!(
        body.matches("list=\"member-emails\"").count(),
        30 + 3,
        "a form per group"
    );
    assert_eq!(
        body.matches("<option value=\"zed@example.test\"").count(),
        1,
        "one suggestion for all the forms"
    );
    let at: Vec<&str> = body
        .match_indices("zed@example.test")
        .map(|(i, _)| &body[i.saturating_sub(80)..i])
        .collect();
    assert!(
        at.len() <= 5,
        "the member's table row and sign-in link button, Viewers' members, the suggestion and \
         the grant form: {at:#?}"
    );
}

mod run {
    use super::*;
    on_all_backends!(
        admin_page_lists_members_once,
        logs_time_range_is_of_traces,
        experiment_rows_in_pages,
        ui_in_chromium,
        pages_without_a_session,
        keys_page_shows_recent_use,
        experiment_scores_follow_their_rows,
        experiment_scores_outlive_a_restart,
        trace_page_shows_the_opened_span,
        long_traces_follow_their_changes
    );
}
