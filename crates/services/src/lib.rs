//! Holdfast's use cases: one function per operation, shared by every protocol edge. Services
//! know nothing of HTTP; they take an authenticated [`Principal`] and plain values, reach the
//! store only through passes from [`access`], and return [`ServiceError`]s.

pub mod access;
pub mod admin;
pub mod attachments;
pub mod audit;
pub mod blobs;
pub mod error;
pub mod export;
pub mod ingest;
pub mod keyfile;
pub mod keys;
pub mod objects;
pub mod query;
pub mod random;
pub mod s3;
pub mod secrets;
pub mod vault;

use holdfast_core::clock::{Clock, format_timestamp};
use holdfast_store::Store;
use std::sync::Arc;

pub use error::ServiceError;
pub use holdfast_core::authz::Principal;

pub type Result<T> = std::result::Result<T, ServiceError>;

/// Limits that the edge and the services share.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Advertised to the SDKs as `logs3_payload_max_bytes`; larger batches go through overflow.
    pub logs3_payload_max_bytes: usize,
    /// Hard cap for any request or upload body.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            logs3_payload_max_bytes: 6 * 1024 * 1024,
            max_body_bytes: 64 * 1024 * 1024,
        }
    }
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
}

impl Services {
    pub fn now(&self) -> String {
        format_timestamp(self.clock.now())
    }
}
