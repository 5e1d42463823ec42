//! kill -9 during sustained ingest: every acknowledged row survives, no batch is partial,
//! and no stored batch lacks its audit entry.

use crate::harness::{Backend, Server, backends};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROWS_PER_BATCH: usize = 50;

async fn crash_during_ingest(backend: Backend) {
    let mut server = Server::start(backend).await;
    let project = server
        .ok("POST", "/v1/project", Some(json!({"name": "crash"})))
        .await;
    let ds = server
        .ok(
            "POST",
            "/v1/dataset",
            Some(json!({"project_id": project["id"], "name": "d"})),
        )
        .await;
    let ds = ds["id"].as_str().unwrap().to_owned();
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..4usize {
        let (http, url, key, ds, acked, stop) = (
            server.http.clone(),
            server.url.clone(),
            server.key.clone(),
            ds.clone(),
            acked.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let batch = w * 1_000_000 + i;
                let rows: Vec<Value> = (0..ROWS_PER_BATCH)
                    .map(|r| json!({"id": format!("b{batch}-r{r}"), "dataset_id": ds, "input": "x".repeat(500), "expected": r}))
                    .collect();
                let sent = http.post(format!("{url}/logs3")).bearer_auth(&key).json(&json!({"rows": rows})).send().await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push(batch),
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let acked: HashSet<usize> = acked.lock().unwrap().iter().copied().collect();
    assert!(
        acked.len() > 10,
        "too little ingest before the kill: {}",
        acked.len()
    );
    assert!(
        server.spawn().await.is_none(),
        "restart must not initialize again"
    );
    let ids: HashSet<String> = server
        .fetch_all(&format!("/v1/dataset/{ds}/fetch"), 5000)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let mut batches: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for id in &ids {
        let (b, _) = id.split_once('-').unwrap();
        *batches.entry(b.to_owned()).or_default() += 1;
    }
    for (b, n) in &batches {
        assert_eq!(*n, ROWS_PER_BATCH, "batch {b} is partial");
    }
    for b in &acked {
        assert_eq!(
            batches.get(&format!("b{b}")),
            Some(&ROWS_PER_BATCH),
            "acknowledged batch {b} lost"
        );
    }
    // Every stored batch has its audit entry: they commit together.
    let audited = server.audited_logs3_writes().await;
    assert!(
        audited >= batches.len(),
        "{} batches stored, {audited} audited",
        batches.len()
    );
    eprintln!(
        "crash test ({backend:?}): {} batches acknowledged, {} stored, none partial, {audited} audited",
        acked.len(),
        batches.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_no_acknowledged_row() {
    for b in backends() {
        crash_during_ingest(b).await;
    }
}
