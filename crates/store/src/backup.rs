//! Consistent copies of the embedded database, taken while a server keeps writing to it.

use crate::db::sqlite_options;
use crate::{Result, StoreError};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::path::Path;

/// Copies the embedded database at `path` into the new file `out`: `VACUUM INTO` reads the
/// database in one transaction (a snapshot, beside the writers of other connections and
/// processes) and writes a compact copy, encrypted with the same key when the database is.
/// The copy is then opened with that key and checked (`PRAGMA integrity_check`).
pub async fn snapshot_sqlite(path: &Path, key: Option<&[u8; 32]>, out: &Path) -> Result<()> {
    if out.exists() {
        return Err(StoreError::Conflict(format!(
            "{} already exists",
            out.display()
        )));
    }
    let target = out
        .to_str()
        .ok_or_else(|| StoreError::Conflict("the backup path is not UTF-8".into()))?;
    let opts = sqlite_options(path, key)
        .await
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(30));
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
    if key.is_some() {
        // The copy gets the store's cipher settings (SQLCipher gives a new file its
        // defaults), so it opens as the store does.
        let page: String = sqlx::query_scalar("PRAGMA cipher_page_size")
            .fetch_one(&mut conn)
            .await?;
        let page: u32 = page
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("cipher page size {page:?}")))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA cipher_default_page_size = {page}"
        )))
        .execute(&mut conn)
        .await?;
        sqlx::query("PRAGMA cipher_default_hmac_algorithm = HMAC_SHA256")
            .execute(&mut conn)
            .await?;
    }
    sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let opts = sqlite_options(out, key).await.read_only(true);
    let mut copy = sqlx::SqliteConnection::connect_with(&opts).await?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut copy)
        .await?;
    copy.close().await?;
    if verdict != "ok" {
        return Err(StoreError::Corrupt(format!(
            "the copy does not pass its integrity check: {verdict}"
        )));
    }
    Ok(())
}

/// The number of rows of every ordinary table of an embedded database file, by name.
pub async fn table_counts(path: &Path, key: Option<&[u8; 32]>) -> Result<BTreeMap<String, i64>> {
    let opts = sqlite_options(path, key).await.read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut out = BTreeMap::new();
    for t in tables {
        let n: i64 = sqlx::query_scalar(count_rows(&t))
            .fetch_one(&mut conn)
            .await?;
        out.insert(t, n);
    }
    conn.close().await?;
    Ok(out)
}

/// `SELECT count(*)` of a table whose name the database listed (quoted as an identifier).
fn count_rows(table: &str) -> sqlx::AssertSqlSafe<String> {
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {quoted}"))
}

/// A consistent view of a PostgreSQL store for a backup: a read-only, repeatable-read
/// transaction whose snapshot is exported, so that `pg_dump --snapshot` dumps exactly what
/// this transaction sees, and the tables' rows are counted in that same snapshot.
pub struct PgSnapshot {
    conn: sqlx::PgConnection,
    /// The exported snapshot's name, for `pg_dump --snapshot`.
    pub id: String,
}

impl PgSnapshot {
    pub async fn begin(url: &str) -> Result<Self> {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut conn)
            .await?;
        let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut conn)
            .await?;
        Ok(Self { conn, id })
    }

    /// Rows of every table of the store, in the snapshot.
    pub async fn table_counts(&mut self) -> Result<BTreeMap<String, i64>> {
        pg_counts(&mut self.conn).await
    }

    /// Ends the transaction (the snapshot is no longer importable).
    pub async fn end(mut self) -> Result<()> {
        sqlx::query("COMMIT").execute(&mut self.conn).await?;
        self.conn.close().await?;
        Ok(())
    }
}

async fn pg_counts(conn: &mut sqlx::PgConnection) -> Result<BTreeMap<String, i64>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
         ORDER BY tablename",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = BTreeMap::new();
    for t in tables {
        let n: i64 = sqlx::query_scalar(count_rows(&t))
            .fetch_one(&mut *conn)
            .await?;
        out.insert(t, n);
    }
    Ok(out)
}

/// Rows of every table of the PostgreSQL database at `url` (empty: no tables).
pub async fn pg_table_counts(url: &str) -> Result<BTreeMap<String, i64>> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let out = pg_counts(&mut conn).await?;
    conn.close().await?;
    Ok(out)
}
