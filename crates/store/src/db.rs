//! Connections, pragmas and migrations.

use crate::index::{CATCH_UP_IDLE, CATCH_UP_ROWS, RowIndex};
use crate::{Result, StoreError};
use sqlx::Connection as _;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub(crate) enum Pools {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` once per backend, with `$p` bound to the pool and `$DB` naming the
/// `sqlx::Database` type.
macro_rules! with_pool {
    ($pools:expr, |$p:ident, $DB:ident| $body:expr) => {
        match $pools {
            $crate::db::Pools::Sqlite($p) => {
                #[allow(dead_code)]
                type $DB = sqlx::Sqlite;
                $body
            }
            $crate::db::Pools::Postgres($p) => {
                #[allow(dead_code)]
                type $DB = sqlx::Postgres;
                $body
            }
        }
    };
}
pub(crate) use with_pool;

/// `fetch_all` of `$query` (a `query_as`, or a builder's `build_query_as()`) on the pool
/// `$p`: when `$told` (an `Option<&str>`) names a statement that tells PostgreSQL's planner
/// how to read ([`INDEX_WALK`], [`GIN_SEARCH`]), in a transaction that runs it first, so
/// that the read the statement is written as is what runs. A `sqlx::Result`.
macro_rules! fetch_told {
    ($p:expr, $told:expr, $query:expr) => {
        async {
            match $told {
                None => $query.fetch_all($p).await,
                Some(told) => {
                    let mut tx = $p.begin().await?;
                    sqlx::query(told).execute(&mut *tx).await?;
                    let rows = $query.fetch_all(&mut *tx).await?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(rows)
                }
            }
        }
    };
}
pub(crate) use fetch_told;

/// The store. Cloning is cheap (pools are shared).
#[derive(Clone, Debug)]
pub struct Store {
    /// Many readers.
    pub(crate) read: Pools,
    /// On SQLite one connection, so writers queue in-process instead of spinning on locks.
    pub(crate) write: Pools,
    /// The row writer task (group commit).
    pub(crate) writer: crate::writer::WriterHandle,
    /// Versions not yet in `row_index` (see `index`).
    pub(crate) index: Arc<RowIndex>,
    /// The embedded store's checkpointing connection.
    checkpointer: Option<SqlitePool>,
    /// The key audit chains are linked under (see `holdfast_core::audit`); set once by
    /// [`Store::set_audit_key`] before anything is audited.
    pub(crate) audit_key: AuditKey,
    /// What the row writer has done (for metrics).
    pub(crate) writer_stats: Arc<crate::writer::WriterStats>,
}

/// The audit key, shared with the row writer.
pub(crate) type AuditKey = Arc<std::sync::OnceLock<[u8; 32]>>;

/// The page size of new embedded stores. SQLCipher's work per page (an IV, AES-256-CBC, an
/// HMAC, a cipher lookup) is partly fixed, so larger pages cost less per byte: `bench ingest`,
/// 1M spans, 21.6k spans/s encrypted with 16 KiB pages against 19.1k with 4 KiB (2026-11-30).
pub const PAGE_SIZE: u32 = 16 * 1024;
/// How long PostgreSQL lets one read statement run before it cancels it, unless the server
/// sets otherwise (see [`Store::open_postgres_with`]).
pub const DEFAULT_READ_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The page size of encrypted stores created before `PAGE_SIZE`; SQLCipher needs to be told.
const LEGACY_CIPHER_PAGE_SIZE: u32 = 4096;

fn connect_options(path: &Path, key: Option<&[u8; 32]>, page_size: u32) -> SqliteConnectOptions {
    // SQLCipher's libcrypto, left to initialize itself on first use, registers a cleanup that
    // `exit` runs and that frees its global state. A connection's thread still finishing
    // (its own thread-local cleanup in libcrypto) then races with it, and the process can
    // abort with heap corruption after its work is done. Initialized here first, with
    // OPENSSL_INIT_NO_ATEXIT, it registers no such cleanup; the memory goes with the process.
    openssl_sys::init();
    let mut opts = SqliteConnectOptions::new();
    if let Some(k) = key {
        let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
        // Must be the first statement on every connection; sqlx keeps `key` first.
        opts = opts.pragma("key", format!("\"x'{hex}'\""));
        // SHA-256 runs on the CPU's SHA instructions and costs about half of SHA-512 (the
        // SQLCipher default) per page here.
        opts = opts.pragma("cipher_hmac_algorithm", "HMAC_SHA256");
        opts = opts.pragma("cipher_page_size", page_size.to_string());
        opts = secure_delete(opts);
    } else {
        // Takes effect when the file is created; an existing store keeps its own.
        opts = secure_delete(opts.page_size(page_size));
    }
    opts.filename(path)
}

/// Deleted content is overwritten with zeros, in pages that stay and pages that are freed, so
/// that what the purge removes is gone from the file once the log is checkpointed (see
/// `purge`). Set on every connection, since any of them may delete.
fn secure_delete(opts: SqliteConnectOptions) -> SqliteConnectOptions {
    opts.pragma("secure_delete", "ON")
}

/// How every connection to an embedded store opens: with `key`, through SQLCipher with the
/// store's cipher settings (part of its file format). An encrypted store's page size is not
/// readable without them, so an existing one is tried with each page size its length is a
/// multiple of (a database file holds whole pages), `PAGE_SIZE` first. Each failed try makes
/// SQLCipher log an error, so a 4 KiB store whose length rules out 16 KiB opens quietly.
/// Operators' tools connect the same way.
pub async fn sqlite_options(path: &Path, key: Option<&[u8; 32]>) -> SqliteConnectOptions {
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    if key.is_none() || len == 0 {
        return connect_options(path, key, PAGE_SIZE);
    }
    let sizes = [PAGE_SIZE, LEGACY_CIPHER_PAGE_SIZE];
    let whole = |ps: &&u32| len.is_multiple_of(u64::from(**ps));
    let candidates: Vec<u32> = if sizes.iter().any(|ps| whole(&ps)) {
        sizes.iter().filter(whole).copied().collect()
    } else {
        sizes.to_vec()
    };
    for page_size in candidates {
        let opts = connect_options(path, key, page_size);
        if let Ok(mut c) = sqlx::SqliteConnection::connect_with(&opts).await {
            let readable = sqlx::query("SELECT count(*) FROM sqlite_master")
                .execute(&mut c)
                .await
                .is_ok();
            let _ = sqlx::Connection::close(c).await;
            if readable {
                return opts;
            }
        }
    }
    // Neither opens: the caller's open reports the error (usually a wrong key).
    connect_options(path, key, PAGE_SIZE)
}

/// Schema versions: the SQL for SQLite, then for PostgreSQL.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, include_str!("schema.sql"), include_str!("schema.sql")),
    (2, include_str!("authz.sql"), include_str!("authz.sql")),
    (3, include_str!("secrets.sql"), include_str!("secrets.sql")),
    (
        4,
        include_str!("row_index_sqlite.sql"),
        include_str!("row_index_postgres.sql"),
    ),
    (
        5,
        include_str!("trace_index_sqlite.sql"),
        "-- PostgreSQL keeps its index on rows.root_span_id.",
    ),
    (6, include_str!("uploads.sql"), include_str!("uploads.sql")),
    (
        7,
        include_str!("audit_chains.sql"),
        include_str!("audit_chains.sql"),
    ),
    (
        8,
        include_str!("search_sqlite.sql"),
        include_str!("search_postgres.sql"),
    ),
    (
        9,
        include_str!("values_sqlite.sql"),
        "-- PostgreSQL has no value index yet: its sorted reads read the object.",
    ),
    (
        10,
        include_str!("values_exact_sqlite.sql"),
        "-- PostgreSQL has no value index yet.",
    ),
    (
        11,
        "-- The embedded store's word index is row_text (migration 8).",
        include_str!("words_postgres.sql"),
    ),
    (
        12,
        include_str!("exact_indexes_sqlite.sql"),
        "-- PostgreSQL has no value index yet.",
    ),
    (
        13,
        include_str!("scoped_words_sqlite.sql"),
        "-- PostgreSQL's word index keeps its object lexeme (not profiled there).",
    ),
    (
        14,
        "-- The embedded store's value index is row_values (migrations 9, 10 and 12).",
        include_str!("values_postgres.sql"),
    ),
    (
        15,
        include_str!("values_listed_sqlite.sql"),
        include_str!("values_listed_postgres.sql"),
    ),
    (
        16,
        include_str!("values_mixed_sqlite.sql"),
        include_str!("values_mixed_postgres.sql"),
    ),
    (17, include_str!("purge.sql"), include_str!("purge.sql")),
    (
        18,
        include_str!("automations.sql"),
        include_str!("automations.sql"),
    ),
    (
        19,
        include_str!("automation_runs.sql"),
        include_str!("automation_runs.sql"),
    ),
    (
        20,
        include_str!("api_exports.sql"),
        include_str!("api_exports.sql"),
    ),
    (
        21,
        include_str!("accounts.sql"),
        include_str!("accounts.sql"),
    ),
    (22, include_str!("sso.sql"), include_str!("sso.sql")),
    (
        23,
        include_str!("sso_saml.sql"),
        include_str!("sso_saml.sql"),
    ),
    (
        24,
        include_str!("row_deletions_xact.sql"),
        include_str!("row_deletions_xact.sql"),
    ),
    (
        25,
        include_str!("values_errors_sqlite.sql"),
        include_str!("values_errors_postgres.sql"),
    ),
    (
        26,
        include_str!("attachment_rows.sql"),
        include_str!("attachment_rows.sql"),
    ),
    (
        27,
        include_str!("attachment_deleting.sql"),
        include_str!("attachment_deleting.sql"),
    ),
    (
        28,
        include_str!("values_error_traces_sqlite.sql"),
        include_str!("values_error_traces_postgres.sql"),
    ),
    (
        29,
        include_str!("trace_exits_sqlite.sql"),
        include_str!("trace_exits_postgres.sql"),
    ),
    (
        30,
        include_str!("rows_root.sql"),
        include_str!("rows_root.sql"),
    ),
    (
        31,
        include_str!("values_root_created_sqlite.sql"),
        include_str!("values_root_created_postgres.sql"),
    ),
    (
        32,
        include_str!("score_summaries.sql"),
        include_str!("score_summaries.sql"),
    ),
];

impl Store {
    /// Opens (creating if missing) the embedded store; with `key`, the database and its log
    /// are encrypted with it (SQLCipher: AES-256 per page with an HMAC), and a wrong key
    /// fails here rather than later.
    pub async fn open_sqlite(path: &Path, key: Option<&[u8; 32]>) -> Result<Self> {
        let index = RowIndex::new(true, CATCH_UP_ROWS, CATCH_UP_IDLE);
        Self::open_sqlite_with(path, key, index).await
    }

    pub(crate) async fn open_sqlite_with(
        path: &Path,
        key: Option<&[u8; 32]>,
        index: RowIndex,
    ) -> Result<Self> {
        let opts = sqlite_options(path, key)
            .await
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // Multi-row INSERTs inside a transaction keep a statement journal; in memory.
            .pragma("temp_store", "MEMORY");
        // The writer keeps a large page cache. Readers keep the default: in WAL mode a reader
        // drops its whole cache whenever another connection has written, so a big reader cache
        // is mostly time spent discarding it.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(
                opts.clone()
                    .pragma("cache_size", "-65536")
                    // A connection of its own copies the log into the database in the
                    // background (`checkpoint_loop`); the writer's own checkpoint, every
                    // 64 MiB of log (16 KiB pages), then finds most of the work done and
                    // restarts the log.
                    .pragma("wal_autocheckpoint", "4096")
                    .pragma("journal_size_limit", "67108864"),
            )
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts.clone())
            .await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        tokio::spawn(checkpoint_loop(checkpointer.clone()));
        let write = Pools::Sqlite(write);
        let index = Arc::new(index);
        Self::migrate(&write).await?;
        let store = Self::assemble(Pools::Sqlite(read), write, index, Some(checkpointer))?;
        let indexed = crate::writer::index_after_start(&store.write).await?;
        store.index.set_committed(indexed);
        Ok(store)
    }

    /// Opens PostgreSQL with the default read statement limit
    /// ([`DEFAULT_READ_STATEMENT_TIMEOUT`]).
    pub async fn open_postgres(url: &str) -> Result<Self> {
        Self::open_postgres_with(url, DEFAULT_READ_STATEMENT_TIMEOUT).await
    }

    /// Opens PostgreSQL. Reads and writes have pools of their own: the database cancels a
    /// statement of the read pool that runs longer than `read_statement_timeout`
    /// (`statement_timeout`, set on each of its connections), so a read that a caller gave
    /// up on does not keep a connection and a backend busy; writes are never cancelled.
    ///
    /// Both pools run with JIT compilation off (`jit = off`): the planner compiles any
    /// statement whose estimated cost passes `jit_above_cost`, and an index read with a
    /// `LIMIT` that it expects not to reach is estimated at its whole range. A page of an
    /// object's rows (1,000 of 100k spans) took 48 ms with JIT, 13.7 ms of it compiling,
    /// and 5.0 ms without.
    pub async fn open_postgres_with(url: &str, read_statement_timeout: Duration) -> Result<Self> {
        let write = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query(NO_JIT).execute(conn).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        let millis = read_statement_timeout
            .as_millis()
            .clamp(1, i32::MAX as u128);
        let read = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SET statement_timeout = {millis}"
                    )))
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query(NO_JIT).execute(conn).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        let write = Pools::Postgres(write);
        let index = Arc::new(RowIndex::new(false, CATCH_UP_ROWS, CATCH_UP_IDLE));
        Self::migrate(&write).await?;
        Self::assemble(Pools::Postgres(read), write, index, None)
    }

    /// Closes every connection, waiting for those in use. A process calls this before it
    /// exits: connections still open in their worker threads while the process tears down
    /// the cipher library crash it.
    pub async fn close(&self) {
        if let Some(c) = &self.checkpointer {
            c.close().await;
        }
        for pools in [&self.read, &self.write] {
            match pools {
                Pools::Sqlite(p) => p.close().await,
                Pools::Postgres(p) => p.close().await,
            }
        }
    }

    /// The store around its pools, with its row writer started.
    fn assemble(
        read: Pools,
        write: Pools,
        index: Arc<RowIndex>,
        checkpointer: Option<SqlitePool>,
    ) -> Result<Self> {
        let audit_key = AuditKey::default();
        let writer_stats = Arc::<crate::writer::WriterStats>::default();
        Ok(Self {
            read,
            writer: crate::writer::spawn_writer(
                write.clone(),
                index.clone(),
                audit_key.clone(),
                writer_stats.clone(),
            )?,
            write,
            index,
            checkpointer,
            audit_key,
            writer_stats,
        })
    }

    /// Sets the key the audit chains are linked under (once; later calls keep the first).
    pub fn set_audit_key(&self, key: [u8; 32]) {
        let _ = self.audit_key.set(key);
    }

    /// Brings the schema up to date; before the writer starts, which indexes in the
    /// background into tables the migrations create.
    async fn migrate(write: &Pools) -> Result<()> {
        with_pool!(write, |pool, DB| {
            let mut tx = pool.begin().await?;
            if let Pools::Postgres(_) = write {
                // Replicas starting together take turns.
                sqlx::query("SELECT pg_advisory_xact_lock(7308356221)")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)",
            )
            .execute(&mut *tx)
            .await?;
            let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
                .fetch_all(&mut *tx)
                .await?;
            let known = MIGRATIONS
                .iter()
                .map(|(v, _, _)| *v)
                .max()
                .unwrap_or_default();
            if let Some(&found) = applied.iter().max().filter(|v| **v > known) {
                return Err(StoreError::NewerSchema { found, known });
            }
            for (version, sqlite, postgres) in MIGRATIONS {
                if applied.contains(version) {
                    continue;
                }
                let sql = match write {
                    Pools::Sqlite(_) => sqlite,
                    Pools::Postgres(_) => postgres,
                };
                sqlx::raw_sql(*sql).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

/// Copies the write-ahead log into the database file four times a second, beside the writer
/// (a passive checkpoint never blocks it), so that the writer's own automatic checkpoint
/// has little left to do.
async fn checkpoint_loop(pool: SqlitePool) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "checkpoint failed");
        }
    }
}

/// Takes the next value of a named counter inside the caller's transaction. Updating the
/// counter row first serializes writers (see the crate docs).
pub(crate) const NEXT_COUNTER: &str =
    "UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value";

/// Takes the next `$1` values of the counter `$2`; returns the last of them.
pub(crate) const NEXT_COUNTER_BY: &str =
    "UPDATE counters SET value = value + $1 WHERE name = $2 RETURNING value";

/// How many parts a long list of random reads is split into, each read on its own
/// connection at once: reading a page costs its decryption and HMAC, so as many as there are
/// cores, at most 4 (counted once: on Linux the count reads the cgroup's files).
pub(crate) fn read_parts() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
}

/// PostgreSQL, on every connection: no JIT compilation (see [`Store::open_postgres_with`]).
const NO_JIT: &str = "SET jit = off";

/// PostgreSQL, first in the transaction of a statement written as a walk of an index in its
/// order (`ORDER BY` the index's columns, `LIMIT`): the walk is what runs. The planner
/// estimates a row comparison such as `(value, seq) < ($1, $2)` at a tenth of what it
/// matches, and then reads every match and sorts it: measured on the value index at 100k
/// spans, 24-84 ms for 2,000 entries against 3 ms walked.
pub(crate) const INDEX_WALK: &str = "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)";

/// PostgreSQL, first in the transaction of a word search: the search asks the GIN index. The
/// planner does not count reading the `tsvector`s out of their TOAST table, so with a
/// `LIMIT` it would rather read them all: measured at 100k spans, 280-320 ms against 11 ms.
pub(crate) const GIN_SEARCH: &str = "SELECT set_config('enable_seqscan', 'off', true)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{dataset_pass, incoming, temp_dir};
    use crate::{RowQuery, StoreError};
    use holdfast_core::xact::XactId;
    use serde_json::json;

    /// PostgreSQL cancels a read statement past the read limit (the store says so, and the
    /// connection goes on serving), but never a write's; no connection compiles statements.
    #[tokio::test]
    async fn postgres_reads_are_cancelled_past_their_limit() {
        let Some(db) = crate::testing::TestDatabase::create("read_limit").await else {
            return;
        };
        let store = Store::open_postgres_with(&db.url, Duration::from_millis(200))
            .await
            .unwrap();
        let (Pools::Postgres(read), Pools::Postgres(write)) = (&store.read, &store.write) else {
            unreachable!()
        };
        let started = std::time::Instant::now();
        let slow: std::result::Result<(), StoreError> = async {
            sqlx::query("SELECT pg_sleep(5)").execute(read).await?;
            Ok(())
        }
        .await;
        assert!(matches!(slow, Err(StoreError::ReadTimeout)), "{slow:?}");
        assert!(started.elapsed() < Duration::from_secs(4));
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(read)
            .await
            .unwrap();
        assert_eq!(one, 1);
        sqlx::query("SELECT pg_sleep(0.5)")
            .execute(write)
            .await
            .unwrap();
        // Neither pool compiles statements (the server's default is `on`).
        for pool in [read, write] {
            let jit: String = sqlx::query_scalar("SHOW jit")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(jit, "off");
        }
        store.close().await;
        db.drop_database().await;
    }

    /// A store a newer build migrated is refused, naming both schema versions, each time it
    /// is opened (the refusal changes nothing).
    async fn newer_schema_cases(open: impl AsyncFn() -> Result<Store>) {
        let store = open().await.unwrap();
        with_pool!(&store.write, |p, DB| {
            sqlx::query("INSERT INTO schema_migrations (version) VALUES (9999)")
                .execute(p)
                .await
                .unwrap();
        });
        store.close().await;
        let known = MIGRATIONS.last().map(|m| m.0).unwrap();
        match open().await {
            Err(e @ StoreError::NewerSchema { found: 9999, .. }) => {
                assert!(e.to_string().contains(&format!("up to {known}")), "{e}");
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a store of a newer schema was opened"),
        }
        assert!(matches!(
            open().await,
            Err(StoreError::NewerSchema { found: 9999, .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn stores_of_a_newer_schema_are_refused() {
        let dir = temp_dir("newer-schema");
        let path = dir.join("t.db");
        newer_schema_cases(async || Store::open_sqlite(&path, None).await).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_stores_of_a_newer_schema_are_refused() {
        let Some(db) = crate::testing::TestDatabase::create("newer").await else {
            return;
        };
        newer_schema_cases(async || Store::open_postgres(&db.url).await).await;
        db.drop_database().await;
    }

    /// A store as the previous schema version left it: rows in the old layout (JSON text,
    /// versions found through the table's primary key), one row deleted.
    async fn fill_old_store(pools: &Pools) {
        let x = |n| XactId::from_counter(n).unwrap().as_i64();
        with_pool!(pools, |p, DB| {
            sqlx::raw_sql("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY)")
                .execute(p)
                .await
                .unwrap();
            for (version, sqlite, postgres) in MIGRATIONS.iter().filter(|m| m.0 <= 3) {
                let sql = match pools {
                    Pools::Sqlite(_) => sqlite,
                    Pools::Postgres(_) => postgres,
                };
                sqlx::raw_sql(*sql).execute(p).await.unwrap();
                sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
                    .bind(version)
                    .execute(p)
                    .await
                    .unwrap();
            }
            for (row_id, xact, root, deleted, data) in [
                ("a", x(1), Some("t"), false, r#"{"id":"a","input":1}"#),
                ("a", x(2), Some("t"), false, r#"{"id":"a","input":2}"#),
                ("b", x(1), Some("t"), false, r#"{"id":"b","input":3}"#),
                ("b", x(2), None, true, r#"{"id":"b"}"#),
                ("c", x(2), None, false, r#"{"id":"c","input":4}"#),
            ] {
                sqlx::query(
                    "INSERT INTO rows (org_id, object_type, object_id, row_id, xact_id, \
                     root_span_id, is_deleted, data) VALUES ('o', 'dataset', 'd', $1, $2, $3, $4, $5)",
                )
                .bind(row_id)
                .bind(xact)
                .bind(root)
                .bind(deleted)
                .bind(data)
                .execute(p)
                .await
                .unwrap();
            }
            sqlx::query("UPDATE counters SET value = 2 WHERE name = 'xact'")
                .execute(p)
                .await
                .unwrap();
        });
    }

    async fn upgraded_store_reads_and_merges(store: Store) {
        let pass = dataset_pass("d");
        let all = RowQuery {
            limit: 100,
            ..RowQuery::default()
        };
        let rows = store.read_rows(&pass, &all).await.unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.row_id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(rows[0].data["input"], 2);
        let trace = RowQuery {
            root_span_id: Some("t".into()),
            ..all.clone()
        };
        let rows = store.read_rows(&pass, &trace).await.unwrap();
        assert_eq!(rows.len(), 1, "b is deleted: {rows:?}");
        let merge = incoming(json!({"id": "a", "_is_merge": true, "output": 5}));
        store
            .write_rows(vec![(pass.clone(), vec![merge])], "now")
            .await
            .unwrap();
        let rows = store.read_rows(&pass, &all).await.unwrap();
        assert_eq!(rows[0].data["input"], 2);
        assert_eq!(rows[0].data["output"], 5);
    }

    /// Encrypted stores made with 4 KiB pages still open; new ones get `PAGE_SIZE`; a wrong
    /// key still fails at open.
    #[tokio::test]
    async fn encrypted_stores_of_either_page_size_open() {
        use sqlx::Connection as _;
        let dir = crate::testing::temp_dir("page-size");
        let key = [7u8; 32];
        let old = dir.join("old.db");
        let mut c = sqlx::SqliteConnection::connect_with(
            &connect_options(&old, Some(&key), LEGACY_CIPHER_PAGE_SIZE).create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::query("CREATE TABLE earlier (x INTEGER)")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::Connection::close(c).await.unwrap();
        for path in [old, dir.join("new.db")] {
            for _ in 0..2 {
                let store = Store::open_sqlite(&path, Some(&key)).await.unwrap();
                store.close().await;
            }
            let mut c =
                sqlx::SqliteConnection::connect_with(&sqlite_options(&path, Some(&key)).await)
                    .await
                    .unwrap();
            let page: i64 =
                sqlx::query_scalar("SELECT CAST(page_size AS INTEGER) FROM pragma_page_size()")
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
            let expected = if path.ends_with("old.db") {
                4096
            } else {
                16384
            };
            assert_eq!(page, expected, "{}", path.display());
            sqlx::Connection::close(c).await.unwrap();
            assert!(Store::open_sqlite(&path, Some(&[8u8; 32])).await.is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_embedded_store_of_the_previous_layout_is_upgraded() {
        let dir = temp_dir("upgrade");
        let path = dir.join("t.db");
        let pool =
            SqlitePool::connect_with(sqlite_options(&path, None).await.create_if_missing(true))
                .await
                .unwrap();
        fill_old_store(&Pools::Sqlite(pool.clone())).await;
        pool.close().await;
        upgraded_store_reads_and_merges(Store::open_sqlite(&path, None).await.unwrap()).await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_postgres_store_of_the_previous_layout_is_upgraded() {
        let Some(db) = crate::testing::TestDatabase::create("upgrade").await else {
            return;
        };
        let url = db.url.clone();
        let pool = PgPool::connect(&url).await.unwrap();
        fill_old_store(&Pools::Postgres(pool.clone())).await;
        pool.close().await;
        let store = Store::open_postgres(&url).await.unwrap();
        upgraded_store_reads_and_merges(store.clone()).await;
        if let Pools::Postgres(p) = &store.read {
            p.close().await;
        }
        if let Pools::Postgres(p) = &store.write {
            p.close().await;
        }
        drop(store);
        db.drop_database().await;
    }
}
