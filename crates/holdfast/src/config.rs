//! Settings: defaults, then a TOML file (`--config`), then `HOLDFAST_*` environment
//! variables, then command-line flags. A bad value is an error that names the setting and
//! where it came from.

use anyhow::{Result, anyhow, bail};
use clap::Args;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Longest grace period after a deletion (ten years).
const MAX_DELETION_GRACE_SECS: u64 = 10 * 365 * 24 * 3600;
/// The largest purge batch: each batch is one transaction that holds the embedded store's
/// writer, so it must stay short.
const MAX_PURGE_BATCH_ROWS: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub listen: String,
    pub public_url: Option<String>,
    pub logs3_payload_max_bytes: usize,
    /// Largest JSON request body, and most JSON values in one.
    pub max_body_bytes: usize,
    pub max_json_values: usize,
    /// Largest attachment and overflow batch a signed URL accepts.
    pub max_attachment_bytes: u64,
    pub max_overflow_bytes: u64,
    /// Bytes of attachments and unconsumed overflow batches one organization may store.
    pub org_blob_quota_bytes: u64,
    /// Seconds a signed URL stays valid and an uploaded overflow batch waits to be consumed.
    pub upload_ttl_secs: u64,
    /// Connections served at once; seconds a client has to send a request's headers (also
    /// how long an idle connection stays open) and each piece of its body.
    pub max_connections: usize,
    pub header_read_timeout_secs: u64,
    pub body_read_timeout_secs: u64,
    /// How long one query (`/btql`, `fetch`) may read, in milliseconds.
    pub query_timeout_ms: u64,
    /// PostgreSQL: how long one read statement may run before the database cancels it, in
    /// milliseconds.
    pub pg_read_statement_timeout_ms: u64,
    /// How long a deleted project, experiment, dataset or prompt can be restored, in seconds.
    pub deletion_grace_secs: u64,
    /// Seconds between purges of what was deleted longer than `deletion_grace_secs` ago;
    /// 0 turns the purge off.
    pub purge_interval_secs: u64,
    /// Row versions the purge removes per transaction.
    pub purge_batch_rows: usize,
    /// Seconds the purge lease lasts unless renewed (after a purging replica stops, how
    /// long until another carries on).
    pub purge_lease_secs: u64,
    /// Seconds a browser session lasts without a request (idle expiry).
    pub session_idle_secs: u64,
    /// Seconds a browser session lasts after sign-in, whatever the activity.
    pub session_max_secs: u64,
    /// Whether queries use the word and value indexes (turn off only to measure what they
    /// save).
    pub query_search_index: bool,
    /// Bytes of request bodies held in memory at once, and requests one key may have in
    /// flight.
    pub max_inflight_body_bytes: usize,
    pub max_requests_per_key: usize,
    /// Encrypt new embedded stores and blobs at rest (with a storage key the KMS wraps).
    pub encrypt_at_rest: bool,
    /// Where the key-encryption key lives: `local` (key files in the data dir) or `aws`.
    pub kms: String,
    /// AWS KMS: the key id or ARN, its region, and an endpoint for KMS-compatible servers.
    /// Credentials come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub kms_aws_key_id: Option<String>,
    pub kms_aws_region: Option<String>,
    pub kms_aws_endpoint: Option<String>,
    /// GCP, Azure and Vault: the key (GCP `projects/…/cryptoKeys/…`, the Azure key's URL, or
    /// Vault `mount/key`) and the API endpoint (GCP and Vault). Tokens come from
    /// `GOOGLE_OAUTH_ACCESS_TOKEN`, `AZURE_KEY_VAULT_TOKEN` or `VAULT_TOKEN`, or from the file that
    /// `<that name>_FILE` names, read at every call so that renewing it needs no restart.
    pub kms_key: Option<String>,
    pub kms_endpoint: Option<String>,
    /// GCP and Azure: `env` (the variables above) or `metadata` (the instance's metadata
    /// service: the service account on GCP, the managed identity on Azure, a user-assigned
    /// one picked by `AZURE_CLIENT_ID`), at `kms_metadata_endpoint` if set.
    pub kms_token_source: String,
    pub kms_metadata_endpoint: Option<String>,
    /// Where attachments and overflow batches live: `local` (the data dir) or `s3`.
    pub blob_store: String,
    /// S3 or an S3-compatible server: bucket, object name prefix, region, endpoint (for
    /// compatible servers; path-style requests), and the server-side encryption every object
    /// is written with: `AES256` or `aws:kms` (with `s3_sse_kms_key_id`, or the bucket's
    /// default key). Credentials come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`.
    pub s3_bucket: Option<String>,
    pub s3_prefix: String,
    pub s3_region: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_sse: String,
    pub s3_sse_kms_key_id: Option<String>,
    /// The bucket that `ExternalAttachment` references may point into (`s3://<bucket>/...`),
    /// read with the same region, endpoint and credentials as `s3_*`. Unset: external
    /// attachments do not resolve. No other URL is ever fetched.
    pub external_attachments_bucket: Option<String>,
    /// The prefix an organization's objects there must have; `{org_id}` stands for the
    /// organization's id. The default keeps organizations from naming each other's objects;
    /// a server of one organization may set `""` to open the whole bucket to it.
    pub external_attachments_prefix: String,
    /// Serve HTTPS with this certificate chain and private key (PEM).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Origins (`scheme://host[:port]`) that may call the API from a browser.
    pub cors_allowed_origins: Vec<String>,
    /// `/metrics` is served to requests bearing this token, and not at all without one.
    pub metrics_token: Option<String>,
    /// Also serve `/metrics` (only) on this address, over plain HTTP, for a scraper on a
    /// private network: without a token unless `metrics_token` is set.
    pub metrics_listen: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        let limits = holdfast_services::Limits::default();
        Self {
            data_dir: PathBuf::from("./holdfast-data"),
            database_url: None,
            listen: "127.0.0.1:8000".into(),
            public_url: None,
            logs3_payload_max_bytes: 6 * 1024 * 1024,
            max_body_bytes: limits.max_body_bytes,
            max_json_values: limits.max_json_values,
            max_attachment_bytes: limits.max_attachment_bytes,
            max_overflow_bytes: limits.max_overflow_bytes,
            org_blob_quota_bytes: limits.org_blob_quota_bytes,
            upload_ttl_secs: limits.upload_ttl_seconds.unsigned_abs(),
            max_connections: 1024,
            header_read_timeout_secs: 30,
            body_read_timeout_secs: limits.body_read_timeout.as_secs(),
            query_timeout_ms: u64::try_from(limits.query_timeout.as_millis()).unwrap_or(u64::MAX),
            pg_read_statement_timeout_ms: u64::try_from(
                holdfast_store::DEFAULT_READ_STATEMENT_TIMEOUT.as_millis(),
            )
            .unwrap_or(u64::MAX),
            deletion_grace_secs: limits.deletion_grace.as_secs(),
            purge_interval_secs: 300,
            purge_batch_rows: limits.purge_batch_rows,
            purge_lease_secs: limits.purge_lease.as_secs(),
            session_idle_secs: limits.session_idle.as_secs(),
            session_max_secs: limits.session_max.as_secs(),
            query_search_index: true,
            max_inflight_body_bytes: limits.max_inflight_body_bytes,
            max_requests_per_key: limits.max_requests_per_key,
            encrypt_at_rest: true,
            kms: "local".into(),
            kms_aws_key_id: None,
            kms_aws_region: None,
            kms_aws_endpoint: None,
            kms_key: None,
            kms_endpoint: None,
            kms_token_source: "env".into(),
            kms_metadata_endpoint: None,
            blob_store: "local".into(),
            s3_bucket: None,
            s3_prefix: String::new(),
            s3_region: None,
            s3_endpoint: None,
            s3_sse: "AES256".into(),
            s3_sse_kms_key_id: None,
            external_attachments_bucket: None,
            external_attachments_prefix: "{org_id}/".into(),
            tls_cert: None,
            tls_key: None,
            cors_allowed_origins: Vec::new(),
            metrics_token: None,
            metrics_listen: None,
        }
    }
}

/// Flags every command takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Data directory (embedded database, key material, blobs).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use PostgreSQL (postgres://...) instead of the embedded store.
    #[arg(long)]
    pub database_url: Option<String>,
    /// A TOML settings file.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Serialize)]
struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
}

impl CommonArgs {
    pub fn settings(&self, listen: Option<String>) -> Result<Settings> {
        self.settings_with(listen, None, None)
    }

    /// Settings with the `serve` flags.
    pub fn settings_with(
        &self,
        listen: Option<String>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
    ) -> Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = &self.config {
            if !path.is_file() {
                bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            .merge(Env::prefixed("HOLDFAST_").ignore(&["LOG", "LOG_FORMAT"]))
            .merge(Serialized::globals(Overrides {
                tls_cert,
                tls_key,
                data_dir: self.data_dir.clone(),
                database_url: self.database_url.clone(),
                listen,
            }));
        let settings: Settings = figment
            .extract()
            .map_err(|e| anyhow!("invalid setting: {e}"))?;
        if let Some(url) = &settings.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!(
                "invalid setting: database_url must start with postgres:// (got a different scheme)"
            );
        }
        if settings.logs3_payload_max_bytes == 0
            || settings.logs3_payload_max_bytes > settings.max_body_bytes
        {
            bail!("invalid setting: logs3_payload_max_bytes must be between 1 and max_body_bytes");
        }
        for (name, value) in [
            ("max_json_values", settings.max_json_values as u64),
            ("max_attachment_bytes", settings.max_attachment_bytes),
            ("max_overflow_bytes", settings.max_overflow_bytes),
            ("org_blob_quota_bytes", settings.org_blob_quota_bytes),
            ("upload_ttl_secs", settings.upload_ttl_secs),
            ("max_connections", settings.max_connections as u64),
            (
                "header_read_timeout_secs",
                settings.header_read_timeout_secs,
            ),
            ("body_read_timeout_secs", settings.body_read_timeout_secs),
            ("query_timeout_ms", settings.query_timeout_ms),
            (
                "pg_read_statement_timeout_ms",
                settings.pg_read_statement_timeout_ms,
            ),
            ("deletion_grace_secs", settings.deletion_grace_secs),
            ("purge_batch_rows", settings.purge_batch_rows as u64),
            ("purge_lease_secs", settings.purge_lease_secs),
            ("session_idle_secs", settings.session_idle_secs),
            ("session_max_secs", settings.session_max_secs),
            ("max_requests_per_key", settings.max_requests_per_key as u64),
        ] {
            if value == 0 {
                bail!("invalid setting: {name} must be at least 1");
            }
        }
        if settings.deletion_grace_secs > MAX_DELETION_GRACE_SECS {
            bail!(
                "invalid setting: deletion_grace_secs must be at most {MAX_DELETION_GRACE_SECS} (ten years)"
            );
        }
        if settings.session_max_secs > 30 * 24 * 3600
            || settings.session_idle_secs > settings.session_max_secs
        {
            bail!(
                "invalid setting: session_max_secs must be at most 30 days, and session_idle_secs at most session_max_secs"
            );
        }
        if settings.purge_batch_rows > MAX_PURGE_BATCH_ROWS {
            bail!("invalid setting: purge_batch_rows must be at most {MAX_PURGE_BATCH_ROWS}");
        }
        if settings.max_inflight_body_bytes < settings.max_body_bytes {
            bail!("invalid setting: max_inflight_body_bytes must be at least max_body_bytes");
        }
        if settings.tls_cert.is_some() != settings.tls_key.is_some() {
            bail!("invalid setting: tls_cert and tls_key go together");
        }
        for o in &settings.cors_allowed_origins {
            let ok = (o.starts_with("https://") || o.starts_with("http://"))
                && o.split_once("://")
                    .is_some_and(|(_, h)| !h.is_empty() && !h.contains('/'));
            if !ok {
                bail!(
                    "invalid setting: cors_allowed_origins entries are scheme://host[:port] (got {o:?})"
                );
            }
        }
        match settings.kms.as_str() {
            "local" => {}
            "aws" => {
                if settings.kms_aws_key_id.is_none() || settings.kms_aws_region.is_none() {
                    bail!("invalid setting: kms = \"aws\" needs kms_aws_key_id and kms_aws_region");
                }
            }
            "gcp" | "azure" | "vault" => {
                if settings.kms_key.is_none() {
                    bail!("invalid setting: kms = {:?} needs kms_key", settings.kms);
                }
                if settings.kms == "vault" && settings.kms_endpoint.is_none() {
                    bail!("invalid setting: kms = \"vault\" needs kms_endpoint");
                }
                match settings.kms_token_source.as_str() {
                    "env" => {}
                    "metadata" if settings.kms != "vault" => {}
                    other => bail!(
                        "invalid setting: kms_token_source must be \"env\", or \"metadata\" with kms = \"gcp\" or \"azure\" (got {other:?})"
                    ),
                }
            }
            other => bail!(
                "invalid setting: kms must be \"local\", \"aws\", \"gcp\", \"azure\" or \"vault\" (got {other:?})"
            ),
        }
        match settings.blob_store.as_str() {
            "local" => {}
            "s3" => {
                if settings.s3_bucket.is_none() || settings.s3_region.is_none() {
                    bail!("invalid setting: blob_store = \"s3\" needs s3_bucket and s3_region");
                }
                if !matches!(settings.s3_sse.as_str(), "AES256" | "aws:kms") {
                    bail!(
                        "invalid setting: s3_sse must be \"AES256\" or \"aws:kms\" (got {:?})",
                        settings.s3_sse
                    );
                }
                if settings.s3_sse_kms_key_id.is_some() && settings.s3_sse != "aws:kms" {
                    bail!("invalid setting: s3_sse_kms_key_id needs s3_sse = \"aws:kms\"");
                }
            }
            other => {
                bail!("invalid setting: blob_store must be \"local\" or \"s3\" (got {other:?})")
            }
        }
        if settings.external_attachments_bucket.is_some() && settings.s3_region.is_none() {
            bail!("invalid setting: external_attachments_bucket needs s3_region");
        }
        if settings
            .external_attachments_prefix
            .replace("{org_id}", "")
            .contains(['{', '}'])
        {
            bail!(
                "invalid setting: external_attachments_prefix may hold only the placeholder {{org_id}} (got {:?})",
                settings.external_attachments_prefix
            );
        }
        if settings.listen.parse::<std::net::SocketAddr>().is_err() {
            bail!(
                "invalid setting: listen must be an address like 127.0.0.1:8000 (got {:?})",
                settings.listen
            );
        }
        Ok(settings)
    }
}

impl Settings {
    /// The limits the services and the edge enforce.
    pub fn limits(&self) -> holdfast_services::Limits {
        holdfast_services::Limits {
            logs3_payload_max_bytes: self.logs3_payload_max_bytes,
            max_body_bytes: self.max_body_bytes,
            max_json_values: self.max_json_values,
            max_attachment_bytes: self.max_attachment_bytes,
            max_overflow_bytes: self.max_overflow_bytes,
            org_blob_quota_bytes: self.org_blob_quota_bytes,
            upload_ttl_seconds: i64::try_from(self.upload_ttl_secs).unwrap_or(i64::MAX),
            body_read_timeout: std::time::Duration::from_secs(self.body_read_timeout_secs),
            max_inflight_body_bytes: self.max_inflight_body_bytes,
            max_requests_per_key: self.max_requests_per_key,
            query_timeout: std::time::Duration::from_millis(self.query_timeout_ms),
            query_search_index: self.query_search_index,
            deletion_grace: std::time::Duration::from_secs(self.deletion_grace_secs),
            purge_batch_rows: self.purge_batch_rows,
            purge_lease: std::time::Duration::from_secs(self.purge_lease_secs),
            session_idle: std::time::Duration::from_secs(self.session_idle_secs),
            session_max: std::time::Duration::from_secs(self.session_max_secs),
        }
    }

    /// The limits of the listening socket.
    pub fn conn_limits(&self) -> holdfast_server::listen::ConnLimits {
        holdfast_server::listen::ConnLimits {
            max_connections: self.max_connections,
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            ..Default::default()
        }
    }
}
