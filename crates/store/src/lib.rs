//! The row store and metadata store, on embedded SQLite or on PostgreSQL.
//!
//! Guarantees:
//! * Tenant data is reached only through a pass from `holdfast_core::authz`; every query is
//!   scoped by the ids the pass carries, so one organization never sees another's data.
//! * A row batch is one transaction: all of it is stored, or none. It returns only after the
//!   commit, which on SQLite runs with `synchronous=FULL` in WAL mode, so an acknowledged batch
//!   survives a process kill.
//! * Writers are serialized by the transaction counter row, which each write transaction
//!   updates first; `_xact_id`s are therefore handed out in commit order, and a merge reads the
//!   row it merges onto under that lock (no lost updates between concurrent requests). Within
//!   one process, row writes go through one writer task that commits concurrent requests
//!   together (see `writer`).
//! * Rows are found by id through `row_index`. On the embedded store the versions written since
//!   the last catch-up live in the writing process's memory (see `index`): another process
//!   that opens the store first indexes everything committed so far, so it reads all of that,
//!   but it does not see the serving process's later writes until they are indexed.
//!
//! The same SQL runs on both backends (`$N` placeholders, TEXT JSON, BIGINT ids); the
//! [`with_pool!`] macro expands each query once per backend.

mod access;
mod accounts;
mod automations;
mod backup;
mod db;
mod index;
mod meta;
mod purge;
mod rows;
mod search;
mod secrets;
mod sso;
mod summaries;
#[cfg(test)]
mod testing;
mod uploads;
mod values;
mod writer;

pub use access::{
    AclRecord, AuditFilter, Entity, EntityRecord, NewAuditEntry, ProviderMember, UserInfo,
    member_permission_json, parse_member_permission,
};
pub use accounts::{AccountLink, SessionRecord};
pub use automations::{ApiExportRecord, AutomationRecord, AutomationScope, RunRecord};
pub use backup::{PgSnapshot, pg_table_counts, snapshot_sqlite, table_counts};
pub use db::{DEFAULT_READ_STATEMENT_TIMEOUT, Store, sqlite_options};
pub use meta::{ApiKeyRecord, ObjectRecord, OnNameConflict, OrgRecord, ProjectRecord, UserRecord};
pub use purge::{Expired, PurgeCursor, PurgedBatch, RowDeletion};
pub use rows::{IncomingRow, RowQuery, StoredRow, TraceRead, TraceStamp};
pub use search::{FIELDS as SEARCH_FIELDS, Found, MAX_CANDIDATES, TextQuery};
pub use secrets::{DataKeyRecord, SecretRecord};
pub use sso::{SsoConnectionRecord, SsoLoginRecord};
pub use uploads::{AttachmentRecord, ExpiredUpload, UploadGrant, UploadKind};
pub use values::{
    CreatedCounts, Held, IndexValue, MAX_EXTRA_ROWS, TraceRoot, ValueEntry, ValueExtras, ValueFrom,
    ValueQuery, Walked, held, server_timestamp,
};
pub use writer::{MAX_MERGE_READ_BYTES, MAX_ROW_BYTES, WriterStats};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the pass does not allow this operation")]
    WrongPermission,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the write was not committed: {0}")]
    WriteFailed(String),
    /// A row the write cannot apply (for example, a merge that would leave too many tags).
    #[error("{0}")]
    InvalidRow(String),
    #[error("the writer has stopped")]
    WriterStopped,
    #[error("transaction id space exhausted")]
    XactExhausted,
    /// The database cancelled a read that ran past its statement limit (PostgreSQL's read
    /// pool: see [`Store::open_postgres_with`]).
    #[error("a read ran past the database's statement time limit")]
    ReadTimeout,
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// The store holds migrations this build does not know: a newer build migrated it, and
    /// this one would misread what that build writes (the value index's entries, say).
    #[error(
        "the store was migrated by a newer Holdfast (schema version {found}; this build knows up to {known}): run that version or newer"
    )]
    NewerSchema { found: i64, known: i64 },
}

/// PostgreSQL's code for a statement cancelled by `statement_timeout` (or by a request).
const QUERY_CANCELED: &str = "57014";

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.code().as_deref() == Some(QUERY_CANCELED) => {
                StoreError::ReadTimeout
            }
            _ => StoreError::Db(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
