//! Holdfast's use cases: one function per operation, shared by every protocol edge. Services
//! know nothing of HTTP; they take an authenticated [`Principal`] and plain values, reach the
//! store only through passes from [`access`], and return [`ServiceError`]s.

pub mod access;
pub mod accounts;
pub mod admin;
pub mod attachments;
pub mod audit;
pub mod blobs;
pub mod btql;
pub mod error;
pub mod export;
pub mod export_api;
pub mod health;
pub mod ingest;
pub mod kek;
pub mod kept_traces;
pub mod keyfile;
pub mod keys;
mod manifest_auth;
mod membership;
pub mod objects;
pub mod purge;
pub mod query;
pub mod random;
pub mod retention;
pub mod s3;
pub mod saml;
pub mod scheduled;
pub mod secrets;
pub mod sso;
pub mod vault;

use holdfast_core::clock::{Clock, format_timestamp};
use holdfast_store::Store;
use std::sync::Arc;

pub use error::ServiceError;
pub use holdfast_core::authz::Principal;
pub use holdfast_store::{ObjectRecord, ProjectRecord, SessionRecord};

pub type Result<T> = std::result::Result<T, ServiceError>;

/// Limits that the edge and the services share: everything a client controls is bounded.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Advertised to the SDKs as `logs3_payload_max_bytes`; larger batches go through overflow.
    pub logs3_payload_max_bytes: usize,
    /// Largest JSON request body.
    pub max_body_bytes: usize,
    /// Most JSON values (objects, arrays, strings, numbers, ...) in one JSON body or overflow
    /// batch: with the size, this bounds the memory a parsed body takes.
    pub max_json_values: usize,
    /// Largest attachment, and largest overflow batch, one signed URL accepts.
    pub max_attachment_bytes: u64,
    pub max_overflow_bytes: u64,
    /// Bytes of attachments and unconsumed overflow batches an organization may store.
    pub org_blob_quota_bytes: u64,
    /// How long a signed URL stays valid, and an uploaded overflow batch waits to be
    /// consumed, in seconds.
    pub upload_ttl_seconds: i64,
    /// How long a request body may take to arrive.
    pub body_read_timeout: std::time::Duration,
    /// Bytes of request bodies held in memory at once, over all requests.
    pub max_inflight_body_bytes: usize,
    /// Requests one API key may have in flight at once.
    pub max_requests_per_key: usize,
    /// How long one query (`/btql`, `fetch`) may read before it is stopped.
    pub query_timeout: std::time::Duration,
    /// Whether queries use the store's word index (off only to measure what it saves).
    pub query_search_index: bool,
    /// How long a deleted project, experiment, dataset or prompt can be restored.
    pub deletion_grace: std::time::Duration,
    /// Row versions the purge removes per transaction.
    pub purge_batch_rows: usize,
    /// How long the purge lease lasts unless renewed: a run renews it before every batch,
    /// so when a purging replica stops, another (or the same one restarted) carries on
    /// after this long.
    pub purge_lease: std::time::Duration,
    /// A browser session ends after this long without a request...
    pub session_idle: std::time::Duration,
    /// ...and this long after sign-in, whatever the activity.
    pub session_max: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            logs3_payload_max_bytes: 6 * 1024 * 1024,
            max_body_bytes: 8 * 1024 * 1024,
            max_json_values: 500_000,
            max_attachment_bytes: 256 * 1024 * 1024,
            max_overflow_bytes: 64 * 1024 * 1024,
            org_blob_quota_bytes: 10 * 1024 * 1024 * 1024,
            upload_ttl_seconds: 3600,
            body_read_timeout: std::time::Duration::from_secs(60),
            max_inflight_body_bytes: 256 * 1024 * 1024,
            max_requests_per_key: 128,
            query_timeout: std::time::Duration::from_secs(30),
            query_search_index: true,
            deletion_grace: std::time::Duration::from_secs(24 * 3600),
            purge_batch_rows: 1000,
            purge_lease: std::time::Duration::from_secs(60),
            session_idle: std::time::Duration::from_secs(2 * 3600),
            session_max: std::time::Duration::from_secs(12 * 3600),
        }
    }
}

/// Counts the JSON values in `bytes` (a linear scan that stops past `limit`), so that a body
/// is refused before it is parsed into far more memory than its size. Refuses strings that
/// hold NUL (`\u0000`), which PostgreSQL cannot store: a body is refused the same way on
/// every backend.
pub fn json_values_within(bytes: &[u8], limit: usize) -> Result<()> {
    let (mut count, mut in_string, mut escaped) = (1usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, b'u') => {
                    escaped = false;
                    if bytes.get(i + 1..i + 5) == Some(b"0000".as_slice()) {
                        return Err(ServiceError::bad(
                            "strings may not contain the NUL character (\\u0000)",
                        ));
                    }
                }
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            // Each comma and each opened container starts one more value.
            b',' | b'[' | b'{' => {
                count += 1;
                if count > limit {
                    return Err(ServiceError::TooLarge(format!(
                        "the JSON body holds more than {limit} values"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Everything a request needs, shared across the server.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<keys::KeyService>,
    pub blobs: Arc<blobs::BlobStore>,
    pub limits: Limits,
    pub policies: Arc<access::PolicyCache>,
    pub audit: audit::AuditLog,
    pub vault: Arc<vault::Vault>,
    /// The last readiness check of the KMS.
    pub kms_check: Arc<health::KmsCheck>,
    /// Row versions written by requests since start (for `/metrics`).
    pub rows_written: Arc<std::sync::atomic::AtomicU64>,
    /// Grouped queries answered since start: from the value index, and by reading rows (for
    /// `/metrics`).
    pub grouped_queries: Arc<GroupedQueries>,
    /// What the purge has done (for `/metrics`).
    pub purge: Arc<purge::PurgeStats>,
    /// Where scheduled exports may write.
    pub exports: export::ExportTargets,
    /// Identity providers' documents and keys.
    pub oidc: Arc<sso::OidcClient>,
    /// Experiments' score summaries (see [`Services::experiment_scores`]).
    pub score_summaries: Arc<query::ScoreSummaries>,
    /// Long traces' summary rows and outlines (see [`kept_traces`]).
    pub kept_traces: Arc<kept_traces::KeptTraces>,
}

/// Grouped queries answered since start, by how.
#[derive(Debug, Default)]
pub struct GroupedQueries {
    /// From the value index, without reading rows.
    pub indexed: std::sync::atomic::AtomicU64,
    /// By reading rows.
    pub read: std::sync::atomic::AtomicU64,
}

impl Services {
    pub fn rows_written(&self) -> u64 {
        self.rows_written.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn now(&self) -> String {
        format_timestamp(self.clock.now())
    }

    /// What query expressions read besides rows (`now()`).
    pub fn query_context(&self) -> holdfast_core::qexpr::Context {
        holdfast_core::qexpr::Context {
            now: self.clock.now(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Where the permission model is bypassed: operator commands, first start, and the
    /// server's background jobs, each with its reason. A user's request never makes a
    /// `SystemPass`; adding one here must be a deliberate change to this list.
    const SYSTEM_PASSES: [&str; 27] = [
        "an operator command",
        "appending to the audit log",
        "applying retention policies",
        "checking for first start",
        "checkpointing the audit log",
        "creating an organization's built-in groups",
        "operator adds a user",
        "operator command over all organizations",
        "operator creates a key",
        "operator creates an organization",
        "operator exports an organization",
        "operator lists keys",
        "operator manages keys",
        "operator names an organization",
        "operator revokes a key",
        "purging what was deleted, after its grace period",
        "recording API key use",
        "removing expired uploads",
        "retiring a key-encryption key",
        "rotating an organization's data key",
        "rotating the key-encryption key",
        "running an export started through the API",
        "running scheduled exports",
        "signing in and browser sessions",
        "upgrading organizations to access control",
        "verifying secrets",
        "verifying the audit log",
    ];

    #[test]
    fn system_passes_are_only_where_they_are_listed() {
        // Spelled in two pieces so that this test does not find itself.
        let needle = concat!("SystemPass", "::new(");
        let mut found = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let mut rest = text.as_str();
                while let Some(at) = rest.find(needle) {
                    rest = rest.get(at + needle.len()..).unwrap_or_default();
                    let reason = rest
                        .trim_start()
                        .strip_prefix('"')
                        .and_then(|r| r.split('"').next())
                        .unwrap_or("(not a literal)");
                    found.push(reason.to_owned());
                }
            }
        }
        found.sort();
        found.dedup();
        assert_eq!(found, SYSTEM_PASSES, "SystemPass reasons changed");
    }
}
