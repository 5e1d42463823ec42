//! Boots servers for tests.

use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_holdfast");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends this run covers.
pub fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Sqlite];
    if std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        b.push(Backend::Postgres);
    }
    b
}

/// A fresh, empty PostgreSQL database for one test.
pub async fn fresh_database() -> String {
    use sqlx::Executor;
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("connect to PostgreSQL");
    let name = format!("hf_{}", uuid::Uuid::new_v4().simple());
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(b, _)| b)
        .to_owned();
    format!("{base}/{name}")
}

pub struct Server {
    pub child: Option<Child>,
    pub url: String,
    pub key: String,
    pub dir: PathBuf,
    pub database_url: Option<String>,
    _tmp: Option<tempfile::TempDir>,
    pub http: reqwest::Client,
    pub env: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Held by tests that load the machine heavily (the fuzzer) and by those that measure time
/// (the connection limits), so that they do not run at once.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An HTTP client whose connects and requests are bounded, so that a server that stops
/// answering fails the test that waits on it instead of hanging the suite.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .build()
        .expect("HTTP client")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    /// Starts `holdfast serve` on a new data dir; `env` adds HOLDFAST_* settings.
    pub async fn start_with(backend: Backend, env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_database().await),
        };
        let mut s = Server {
            child: None,
            url: String::new(),
            key: String::new(),
            dir: tmp.path().to_path_buf(),
            database_url,
            _tmp: Some(tmp),
            http: client(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let key = s.spawn().await;
        s.key = key.expect("first start prints the owner key");
        s
    }

    /// Starts `holdfast serve` on an existing embedded store in `dir` (left in place), whose
    /// owner key is `key`.
    pub async fn start_on(dir: &Path, key: &str, env: &[(&str, &str)]) -> Self {
        Self::start_on_store(dir, key, None, env).await
    }

    /// Starts `holdfast serve` on an existing data dir and, with `database_url`, an existing
    /// PostgreSQL store.
    pub async fn start_on_store(
        dir: &Path,
        key: &str,
        database_url: Option<String>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut s = Server {
            child: None,
            url: String::new(),
            key: key.to_owned(),
            dir: dir.to_path_buf(),
            database_url,
            _tmp: None,
            http: client(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn().await;
        s
    }

    /// Another replica of this server: the same data dir (its key files) and PostgreSQL
    /// database, the same settings, its own process and port.
    pub async fn replica(&self) -> Self {
        let mut s = Server {
            child: None,
            url: String::new(),
            key: self.key.clone(),
            dir: self.dir.clone(),
            database_url: self.database_url.clone(),
            _tmp: None,
            http: client(),
            env: self.env.clone(),
        };
        s.spawn().await;
        s
    }

    /// The file whose number of seconds moves the server's clock (a debug build's).
    fn clock_file(&self) -> PathBuf {
        self.dir.join("test-clock")
    }

    /// Moves the server's clock to `seconds` after the wall clock (at once: it reads the
    /// file at every reading of the time).
    pub fn set_clock(&self, seconds: i64) {
        std::fs::write(self.clock_file(), seconds.to_string()).unwrap();
    }

    /// Starts the process (again); returns the printed key on first start.
    pub async fn spawn(&mut self) -> Option<String> {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        if let Some(url) = &self.database_url {
            cmd.arg("--database-url").arg(url);
        }
        cmd.env("TEST_CLOCK_FILE", self.clock_file())
            .env("HOLDFAST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn holdfast serve");
        let stdout = child.stdout.take().unwrap();
        // Read what `serve` prints on first start, without blocking on later starts.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.url = format!("http://127.0.0.1:{port}");
        self.child = Some(child);
        let mut key = None;
        for _ in 0..600 {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("holdfast serve exited early: {status}");
            }
            while let Ok(line) = rx.try_recv() {
                if let Some(k) = line.strip_prefix("export BRAINTRUST_API_KEY=") {
                    key = Some(k.to_owned());
                }
            }
            if self
                .http
                .get(format!("{}/healthz", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
                while let Ok(line) = rx.try_recv() {
                    if let Some(k) = line.strip_prefix("export BRAINTRUST_API_KEY=") {
                        key = Some(k.to_owned());
                    }
                }
                return key;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not become healthy");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-9")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Common CLI flags for this server's store.
    pub fn store_args(&self) -> Vec<String> {
        let mut a = vec!["--data-dir".to_owned(), self.dir.display().to_string()];
        if let Some(url) = &self.database_url {
            a.push("--database-url".into());
            a.push(url.clone());
        }
        a
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        self.raw(method, path, key, bytes).await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let auth = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.with_headers(method, path, &headers, body).await
    }

    /// A request with these headers (a browser's cookie and CSRF token, say).
    pub async fn with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{}", self.url, path))
            .body(body);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Calls with the owner key and expects 200.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, Some(&self.key.clone()), body).await;
        assert_eq!(status, 200, "{method} {path}: {v}");
        v
    }

    /// Runs the CLI against this server's store.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args(self.store_args())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HOLDFAST_LOG", "warn");
        cmd.output().expect("run holdfast")
    }

    /// Adds a member of organization `default` to `group` with the CLI; returns their new key.
    pub fn member_key(&self, email: &str, group: &str) -> String {
        self.cli_line(&[
            "user",
            "create",
            "--org",
            "default",
            "--email",
            email,
            "--group",
            group,
            "--print-key",
        ])
    }

    /// Runs the CLI, expects success, and returns its one line of output (a key).
    pub fn cli_line(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Logs a row in project `files` that references attachment `key`, as the SDKs do before
    /// they upload it (an attachment belongs to the object whose rows reference it).
    /// A new project named `project` and a dataset `name` in it; returns the dataset's id.
    pub async fn new_dataset(&self, project: &str, name: &str) -> String {
        let p = self
            .ok(
                "POST",
                "/v1/project",
                Some(serde_json::json!({"name": project})),
            )
            .await;
        let ds = self
            .ok(
                "POST",
                "/v1/dataset",
                Some(serde_json::json!({"project_id": p["id"], "name": name})),
            )
            .await;
        ds["id"].as_str().expect("dataset id").to_owned()
    }

    pub async fn reference_attachment(&self, key: &str) {
        let project = self
            .ok(
                "POST",
                "/v1/project",
                Some(serde_json::json!({"name": "files"})),
            )
            .await;
        let attachment = serde_json::json!({"type": "braintrust_attachment", "key": key,
                                            "filename": "a.txt", "content_type": "text/plain"});
        self.ok(
            "POST",
            "/logs3",
            Some(serde_json::json!({"rows": [{"id": format!("row-{key}"),
                "project_id": project["id"], "log_id": "g", "input": {"file": attachment}}]})),
        )
        .await;
    }

    /// Every event of an object, following cursors page by page.
    pub async fn fetch_all(&self, path: &str, limit: u64) -> Vec<Value> {
        let mut events = Vec::new();
        let mut cursor = Value::Null;
        loop {
            let page = self
                .ok(
                    "POST",
                    path,
                    Some(serde_json::json!({"limit": limit, "cursor": cursor})),
                )
                .await;
            events.extend(page["events"].as_array().unwrap().iter().cloned());
            cursor = page["cursor"].clone();
            if cursor.is_null() {
                return events;
            }
        }
    }
}

/// Asserts an error reply: the status and a JSON body naming the problem.
pub fn assert_error(status: u16, body: &Value, expected: u16, code: &str) {
    assert_eq!(status, expected, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
}

impl Server {
    /// Runs one statement straight against the store's database (PostgreSQL, or the
    /// embedded one opened with its key), as an operator with the disk and the key would.
    pub async fn execute_sql(&self, statement: &str) {
        let statement = sqlx::AssertSqlSafe(statement.to_owned());
        match &self.database_url {
            Some(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::query(statement).execute(&pool).await.unwrap();
            }
            None => {
                let pool = self.sqlite_pool().await;
                sqlx::query(statement).execute(&pool).await.unwrap();
            }
        }
    }

    /// Every audit entry as (action, detail, key id), in chain order, read straight from
    /// the database.
    pub async fn audit_rows(&self) -> Vec<(String, String, Option<String>)> {
        const SQL: &str = "SELECT action, detail, key_id FROM audit_log ORDER BY seq";
        match &self.database_url {
            Some(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::query_as(SQL).fetch_all(&pool).await.unwrap()
            }
            None => {
                let pool = self.sqlite_pool().await;
                sqlx::query_as(SQL).fetch_all(&pool).await.unwrap()
            }
        }
    }

    /// One number read straight from the database (a count), on a connection closed at once
    /// so that it holds no snapshot of the store.
    pub async fn count_sql(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.database_url {
            Some(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
            None => {
                let pool = self.sqlite_pool().await;
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
        }
    }

    /// A counter or gauge from `/metrics`, with the server's `HOLDFAST_METRICS_TOKEN`.
    pub async fn metric(&self, name: &str) -> f64 {
        let token = self
            .env
            .iter()
            .find(|(k, _)| k == "HOLDFAST_METRICS_TOKEN")
            .map(|(_, v)| v.clone())
            .expect("the server needs HOLDFAST_METRICS_TOKEN");
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }

    /// How many `/logs3` requests the audit log says wrote rows.
    pub async fn audited_logs3_writes(&self) -> usize {
        self.audit_rows()
            .await
            .iter()
            .filter(|(action, detail, _)| {
                action == "POST /logs3" && detail.contains("rows_written")
            })
            .count()
    }

    /// A direct connection to the embedded database, opened with its storage key (unwrapped
    /// by the local KMS), as an operator holding the key material would.
    pub async fn sqlite_pool(&self) -> sqlx::SqlitePool {
        let kms = holdfast_crypto::AnyKms::Local(
            holdfast_crypto::local::LocalKms::open_or_create(&self.dir.join("kms")).unwrap(),
        );
        let key = holdfast_services::keyfile::load(
            &kms,
            &self.dir.join("storage.key"),
            "holdfast-storage",
        )
        .await
        .unwrap();
        let opts = holdfast_store::sqlite_options(
            &self.dir.join("holdfast.db"),
            key.as_ref().map(|k| k.expose()),
        )
        .await;
        sqlx::SqlitePool::connect_with(opts).await.unwrap()
    }
}
