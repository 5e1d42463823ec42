//! The `holdfast` binary: `init`, `serve`, `keys`, `export` and `bench`.

/// Writes a line to stdout, or to stderr with `say!(err, ...)`. A closed stream (`holdfast
/// serve | head -1`) is not a crash: the line is dropped. Keys go through [`write_key`],
/// which fails instead.
macro_rules! say {
    (err, $($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod backup;
mod bench;
mod bench_pages;
mod bench_query;
mod config;
mod logging;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use config::{CommonArgs, Settings};
use holdfast_core::audit::Checkpoint;
use holdfast_core::clock::{Clock, SystemClock, format_timestamp};

use holdfast_crypto::AnyKms;
use holdfast_crypto::aws::{AwsConfig, AwsKms};
use holdfast_crypto::http::{Flavor, HttpKms, MetadataToken, Token};
use holdfast_crypto::local::LocalKms;
use holdfast_services::Services;
use holdfast_services::audit::{AuditLog, Verdict};
use holdfast_services::blobs::BlobStore;
use holdfast_services::keyfile;
use holdfast_services::keys::{KeyService, load_or_create_pepper};
use holdfast_services::s3::{S3, S3Config, Sse};
use holdfast_services::vault::Vault;
use holdfast_store::Store;
use secrecy::{ExposeSecret, SecretBox};
use serde_json::json;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "holdfast",
    version,
    about = "Self-hosted data plane for LLM evaluation and observability"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the store, an organization and its owner; print the owner's API key.
    Init {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long)]
        org: String,
        #[arg(long)]
        owner: String,
    },
    /// Serve the API.
    Serve {
        #[command(flatten)]
        common: CommonArgs,
        /// Address to listen on (default 127.0.0.1:8000).
        #[arg(long)]
        listen: Option<String>,
        /// Serve HTTPS with this PEM certificate chain (with --tls-key).
        #[arg(long)]
        tls_cert: Option<std::path::PathBuf>,
        /// The PEM private key for --tls-cert.
        #[arg(long)]
        tls_key: Option<std::path::PathBuf>,
    },
    /// Manage organizations.
    Org {
        #[command(subcommand)]
        action: OrgAction,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Check that every stored secret decrypts.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Check the audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Manage a user's API keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Export organizations and projects; open exports.
    Export {
        #[command(subcommand)]
        action: ExportAction,
    },
    /// Copy the store (the embedded database, or with --database-url a pg_dump of
    /// PostgreSQL; blobs; KMS-wrapped keys) into a new directory, as one consistent snapshot,
    /// while the server keeps serving.
    Backup {
        #[command(flatten)]
        common: CommonArgs,
        /// The new directory the backup goes into.
        #[arg(long, required_unless_present = "s3", conflicts_with = "s3")]
        to: Option<std::path::PathBuf>,
        /// Write the backup to the bucket of the s3_* settings, under backups/<id>/.
        #[arg(long)]
        s3: bool,
    },
    /// Bring a backup back into a data directory without a store (and, for a PostgreSQL
    /// store's backup, the empty database of --database-url); the KMS the settings name (for
    /// the local KMS, the original data directory's kms/) must unwrap its keys.
    Restore {
        #[command(flatten)]
        common: CommonArgs,
        /// The backup directory.
        #[arg(long, required_unless_present = "s3", conflicts_with = "s3")]
        from: Option<std::path::PathBuf>,
        /// The id of a backup in the bucket of the s3_* settings (as `backup --s3` prints it).
        #[arg(long)]
        s3: Option<String>,
    },
    /// Benchmarks that report figures.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum OrgAction {
    /// Create an organization and its owner; print the owner's API key.
    Create {
        #[command(flatten)]
        common: CommonArgs,
        name: String,
        #[arg(long)]
        owner: String,
    },
}

/// A member of an organization's group, as the user commands name one.
#[derive(clap::Args)]
struct MemberArgs {
    #[arg(long)]
    org: String,
    #[arg(long)]
    email: String,
    /// Owners, Engineers, Viewers, or a custom group.
    #[arg(long)]
    group: String,
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user (created if new) to an organization and one of its groups.
    Create {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        member: MemberArgs,
        /// Print a new API key for the user as the only line on stdout.
        #[arg(long)]
        print_key: bool,
    },
    /// Add a user (created if new) to an organization's group and print a one-time link to
    /// set their password (valid 7 days; with --reset, a reset link valid 24 hours).
    Invite {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        member: MemberArgs,
        /// A reset link for a member who already has a password.
        #[arg(long)]
        reset: bool,
    },
}

#[derive(Subcommand)]
enum ExportAction {
    /// Export an organization, or one of its projects, as JSON Lines (rows also as Parquet)
    /// read at one point in time. Files are sealed under a key the KMS wraps unless
    /// --plaintext. Prints a summary.
    Create {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long)]
        org: String,
        /// Only this project (name or id).
        #[arg(long)]
        project: Option<String>,
        /// The folder exports go in (default: <data dir>/exports).
        #[arg(long, conflicts_with = "s3")]
        to: Option<std::path::PathBuf>,
        /// Write to the bucket of the s3_* settings, under exports/.
        #[arg(long)]
        s3: bool,
        /// Write plain files that anyone with them can read.
        #[arg(long)]
        plaintext: bool,
        /// Rows files as `jsonl` (JSON Lines) or `parquet` (zstd-compressed Parquet).
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "parquet"])]
        format: String,
        /// The largest rows file, in MiB (of row text, before compression).
        #[arg(long, default_value_t = 64)]
        part_mib: usize,
    },
    /// Check an export (sizes, digests, record counts) and write it as plain JSON Lines to a
    /// new folder, unsealing its files with the KMS.
    Open {
        #[command(flatten)]
        common: CommonArgs,
        /// The export's id (its folder's name).
        id: String,
        /// The folder that holds the export (default: <data dir>/exports).
        #[arg(long, conflicts_with = "s3")]
        from: Option<std::path::PathBuf>,
        /// Read it from the bucket of the s3_* settings.
        #[arg(long)]
        s3: bool,
        /// The new folder to write the plain export to.
        #[arg(long)]
        to: std::path::PathBuf,
        /// Open an export whose manifest is not authenticated (one made before manifests
        /// were), with a warning.
        #[arg(long)]
        unauthenticated: bool,
    },
}

#[derive(Subcommand)]
enum SecretsAction {
    /// Open every secret of an organization (or of all); fail naming those that do not open.
    Verify {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check every chain; fail naming the first broken entry. With --since-checkpoint, each
    /// chain must still hold the head the checkpoint recorded, and is checked from there.
    Verify {
        #[command(flatten)]
        common: CommonArgs,
        /// A file written by `holdfast audit checkpoint`.
        #[arg(long)]
        since_checkpoint: Option<std::path::PathBuf>,
    },
    /// Print the head of every chain, signed with the audit key, as one line of JSON: keep it
    /// outside the database (and outside this machine) to detect rewrites and truncation.
    Checkpoint {
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key and print it (the only time it is shown).
    Create {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "cli key")]
        name: String,
        /// Expire the key after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List a user's keys (never the secrets) as JSON lines.
    List {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
    },
    /// Re-wrap every organization's data key under a new key-encryption key (with the
    /// local KMS a new key file is made; with AWS, the configured key is used).
    RotateKek {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Delete an old local key-encryption key once nothing is wrapped by it any more (after
    /// `rotate-kek`). Refuses the current key and any key still in use.
    RetireKek {
        #[command(flatten)]
        common: CommonArgs,
        /// The key's id, as `local:<hex>`.
        #[arg(long)]
        id: String,
    },
    /// Re-encrypt an organization's secrets under a new data key.
    RotateDek {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long)]
        org: String,
    },
    /// Revoke a key by id.
    Revoke {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        key_id: String,
    },
}

/// The configured key-encryption-key provider.
fn open_kms(settings: &Settings) -> Result<AnyKms> {
    match settings.kms.as_str() {
        "aws" => {
            let region = settings.kms_aws_region.clone().context("kms_aws_region")?;
            let config = AwsConfig {
                key_id: settings.kms_aws_key_id.clone().context("kms_aws_key_id")?,
                credentials: aws_credentials(&region)?,
                region,
                endpoint: settings.kms_aws_endpoint.clone(),
            };
            Ok(AnyKms::Aws(AwsKms::new(config)?))
        }
        flavor @ ("gcp" | "azure" | "vault") => {
            let (flavor, token_var, default_endpoint) = match flavor {
                "gcp" => (
                    Flavor::Gcp,
                    "GOOGLE_OAUTH_ACCESS_TOKEN",
                    "https://cloudkms.googleapis.com",
                ),
                "azure" => (Flavor::Azure, "AZURE_KEY_VAULT_TOKEN", ""),
                _ => (Flavor::Vault, "VAULT_TOKEN", ""),
            };
            let var = |name: &str| std::env::var(name).ok().filter(|t| !t.is_empty());
            // A token file is re-read at every call, so renewing it needs no restart.
            let token = match (
                settings.kms_token_source.as_str(),
                var(&format!("{token_var}_FILE")),
                var(token_var),
            ) {
                ("metadata", _, _) => {
                    let base = settings.kms_metadata_endpoint.as_deref();
                    Token::Metadata(match flavor {
                        Flavor::Gcp => {
                            MetadataToken::gcp(base.unwrap_or("http://metadata.google.internal"))?
                        }
                        _ => MetadataToken::azure(
                            base.unwrap_or("http://169.254.169.254"),
                            var("AZURE_CLIENT_ID").as_deref(),
                        )?,
                    })
                }
                (_, Some(path), _) => Token::File(path.into()),
                (_, None, Some(t)) => Token::Fixed(t.into()),
                (_, None, None) => {
                    bail!(
                        "kms = {flavor:?} needs {token_var} or {token_var}_FILE (or, on GCP and Azure, kms_token_source = \"metadata\")"
                    )
                }
            };
            let endpoint = settings
                .kms_endpoint
                .clone()
                .unwrap_or_else(|| default_endpoint.to_owned());
            let key = settings.kms_key.clone().context("kms_key")?;
            Ok(AnyKms::Http(HttpKms::new(flavor, &endpoint, &key, token)?))
        }
        _ => Ok(AnyKms::Local(LocalKms::open_or_create(
            &settings.data_dir.join("kms"),
        )?)),
    }
}

use holdfast_services::kek::{PEPPER_CONTEXT, STORAGE_CONTEXT};

/// The API-key pepper, kept wrapped by the KMS in `pepper.wrapped`. A raw `pepper.key` from
/// an older store is wrapped and then removed.
async fn open_pepper(kms: &AnyKms, data_dir: &std::path::Path) -> Result<SecretBox<[u8; 32]>> {
    let wrapped = data_dir.join("pepper.wrapped");
    let raw = data_dir.join("pepper.key");
    let key = match keyfile::load(kms, &wrapped, PEPPER_CONTEXT).await? {
        Some(k) => k,
        None if raw.exists() => {
            let legacy = load_or_create_pepper(&raw)?;
            let key = holdfast_crypto::DataKey::from_bytes(legacy.expose_secret())?;
            keyfile::store(kms, &wrapped, PEPPER_CONTEXT, &key).await?;
            std::fs::remove_file(&raw).context("removing the unwrapped pepper file")?;
            key
        }
        None => keyfile::load_or_create(kms, &wrapped, PEPPER_CONTEXT).await?,
    };
    Ok(SecretBox::new(Box::new(*key.expose())))
}

/// The bucket the `s3_*` settings name, written with their server-side encryption.
fn s3_client(settings: &Settings) -> Result<S3> {
    let (Some(bucket), Some(region)) = (&settings.s3_bucket, &settings.s3_region) else {
        bail!("s3_bucket and s3_region must be set");
    };
    let sse = match settings.s3_sse.as_str() {
        "aws:kms" => Sse::Kms {
            key_id: settings.s3_sse_kms_key_id.clone(),
        },
        _ => Sse::S3,
    };
    Ok(S3::new(S3Config {
        bucket: bucket.clone(),
        prefix: settings.s3_prefix.clone(),
        region: region.clone(),
        endpoint: settings.s3_endpoint.clone(),
        sse,
        credentials: aws_credentials(region)?,
    })?)
}

/// AWS credentials from the standard chain (environment, web identity, container endpoint,
/// instance metadata), for the KMS or S3 in `region`.
fn aws_credentials(region: &str) -> Result<holdfast_crypto::aws_creds::CredentialChain> {
    let source = holdfast_crypto::aws_creds::Source::from_env(region)?;
    tracing::info!(source = source.name(), "AWS credentials");
    Ok(holdfast_crypto::aws_creds::CredentialChain::new(source)?)
}

/// Where exports go unless told otherwise; key rotation looks after the ones kept here.
fn exports_dir(settings: &Settings) -> std::path::PathBuf {
    settings.data_dir.join("exports")
}

/// The server's clock: the wall clock, or in a debug build with `TEST_CLOCK_FILE`
/// set, the wall clock moved by the seconds in that file (tests of grace periods and expiry).
fn server_clock() -> Arc<dyn Clock> {
    #[cfg(debug_assertions)]
    if let Some(path) = std::env::var_os("TEST_CLOCK_FILE") {
        tracing::info!(file = ?path, "the clock is moved by the seconds in this file (a test build)");
        return Arc::new(holdfast_core::clock::OffsetFileClock(path.into()));
    }
    Arc::new(SystemClock)
}

/// The page where a password is set with a link's token.
fn password_link(settings: &Settings, token: &str) -> String {
    let base = base_url(settings);
    format!(
        "{}/auth/set-password#token={token}",
        base.trim_end_matches('/')
    )
}

/// The URL clients reach this server at: `public_url`, else the listening address.
fn base_url(settings: &Settings) -> String {
    settings.public_url.clone().unwrap_or_else(|| {
        let scheme = if settings.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", settings.listen)
    })
}

/// A one-time link for an organization's first owner to set a password.
async fn owner_link(
    services: &Services,
    settings: &Settings,
    org: &str,
    owner: &str,
) -> Result<String> {
    let (token, _) = services
        .invite_user_cli(org, owner, "Owners", false)
        .await?;
    Ok(password_link(settings, token.expose_secret()))
}

/// Every store this process opened, closed before it exits (see `Store::close`).
static OPENED: std::sync::Mutex<Vec<Store>> = std::sync::Mutex::new(Vec::new());

async fn open(settings: &Settings) -> Result<Services> {
    let data_dir = &settings.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("securing data dir {}", data_dir.display()))?;
    }
    let kms = open_kms(settings)?;
    let db_path = data_dir.join("holdfast.db");
    let storage_key_path = data_dir.join("storage.key");
    // The storage key encrypts the embedded database (SQLCipher) and the blobs. New stores
    // get one (unless encrypt_at_rest is off); a store made without one stays readable.
    let storage_key = match keyfile::load(&kms, &storage_key_path, STORAGE_CONTEXT).await? {
        Some(k) => Some(k),
        None if settings.encrypt_at_rest
            && (settings.database_url.is_some() || !db_path.exists()) =>
        {
            Some(keyfile::load_or_create(&kms, &storage_key_path, STORAGE_CONTEXT).await?)
        }
        None => {
            if db_path.exists() {
                tracing::warn!(
                    "the embedded database was created without encryption at rest; it stays unencrypted"
                );
            }
            None
        }
    };
    let store = match &settings.database_url {
        Some(url) => Store::open_postgres_with(
            url,
            std::time::Duration::from_millis(settings.pg_read_statement_timeout_ms),
        )
        .await
        .context("opening PostgreSQL")?,
        None => Store::open_sqlite(&db_path, storage_key.as_ref().map(|k| k.expose()))
            .await
            .context("opening the embedded store")?,
    };
    OPENED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(store.clone());
    let clock = server_clock();
    let pepper = open_pepper(&kms, data_dir).await?;
    let keys = KeyService::new(pepper, clock.clone());
    store.set_audit_key(keys.audit_key()?);
    let blob_key = match &storage_key {
        Some(k) => Some(holdfast_crypto::DataKey::from_bytes(k.expose())?),
        None => None,
    };
    let blobs = match settings.blob_store.as_str() {
        "s3" => BlobStore::s3(
            s3_client(settings).context("blob_store = \"s3\"")?,
            keys.derive("signed urls")?,
            blob_key,
        ),
        _ => BlobStore::new(
            data_dir.join("blobs"),
            keys.derive("signed urls")?,
            blob_key,
        ),
    };
    let blobs = match (&settings.external_attachments_bucket, &settings.s3_region) {
        (Some(bucket), Some(region)) => blobs.with_external(
            S3::new(S3Config {
                bucket: bucket.clone(),
                prefix: String::new(),
                region: region.clone(),
                endpoint: settings.s3_endpoint.clone(),
                sse: Sse::S3,
                credentials: aws_credentials(region)?,
            })?,
            settings.external_attachments_prefix.clone(),
        ),
        _ => blobs,
    };
    blobs.check_shared_keys().await?;
    let limits = settings.limits();
    let services = Services {
        audit: AuditLog::start(store.clone()),
        store,
        clock,
        keys: Arc::new(keys),
        blobs: Arc::new(blobs),
        limits,
        policies: Arc::default(),
        vault: Arc::new(Vault::new(kms)),
        kms_check: Arc::default(),
        rows_written: Arc::default(),
        grouped_queries: Arc::default(),
        score_summaries: Arc::default(),
        kept_traces: Arc::default(),
        oidc: Arc::default(),
        purge: Arc::default(),
        exports: holdfast_services::export::ExportTargets {
            dir: exports_dir(settings),
            s3: match &settings.s3_bucket {
                Some(_) => Some(Arc::new(s3_client(settings).context("the s3_* settings")?)),
                None => None,
            },
        },
    };
    services
        .upgrade_access_control()
        .await
        .context("giving organizations their built-in groups")?;
    Ok(services)
}

/// A partial export none of whose files changed for this long was left by an export that
/// stopped (a running export writes all the time).
const ORPHANED_EXPORT_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

async fn serve(settings: Settings) -> Result<()> {
    if cfg!(feature = "authz-bypass") {
        if std::env::var("BENCH_AUTHZ_BYPASS_OK").as_deref() != Ok("1") {
            bail!(
                "this build has authorization disabled (feature authz-bypass) and is for benchmarks only; set BENCH_AUTHZ_BYPASS_OK=1 to serve anyway"
            );
        }
        tracing::warn!("AUTHORIZATION IS DISABLED in this benchmark build");
    }
    let services = open(&settings).await?;
    let interrupted = if settings.database_url.is_none() {
        services.fail_interrupted_exports().await?
    } else {
        0
    };
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "exports started through the API were running when the server stopped: failed"
        );
    }
    if !services.is_initialized().await? {
        let key = services.create_org("default", "admin@localhost").await?;
        let base = base_url(&settings);
        say!("Holdfast initialized organization \"default\" with owner admin@localhost.");
        say!("This owner API key is shown only once:");
        say!("");
        say!("export BRAINTRUST_API_KEY={}", key.expose_secret());
        say!("export BRAINTRUST_APP_URL={base}");
        say!("");
        let link = owner_link(&services, &settings, "default", "admin@localhost").await?;
        say!("The owner sets a password for signing in, once, at: {link}");
        say!("");
    }
    // Partial exports that a stopped export left: at start, then every 10 minutes.
    let exports_janitor = {
        let dir = exports_dir(&settings);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
            loop {
                tick.tick().await;
                let dir = dir.clone();
                let done = tokio::task::spawn_blocking(move || {
                    holdfast_services::export::remove_orphaned_partials(&dir, ORPHANED_EXPORT_IDLE)
                })
                .await;
                match done {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => {
                        tracing::info!(n, "removed partial exports that a stopped export left")
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not clean up partial exports"),
                    Err(e) => tracing::warn!(error = %e, "the partial export cleanup stopped"),
                }
            }
        })
    };
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "serving");
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| {
                    format!(
                        "loading the TLS certificate {} and key {}",
                        cert.display(),
                        key.display()
                    )
                })?,
        ),
        _ => None,
    };
    let state = holdfast_server::AppState::new(
        services,
        settings.public_url.as_deref().map(Arc::from),
        settings.cors_allowed_origins.clone(),
        tls.is_some(),
    )
    .with_metrics_token(settings.metrics_token.as_deref());
    let background = {
        let services = state.services.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                services.keys.flush_usage(&services.store).await;
            }
        })
    };
    let sweeper = {
        let services = state.services.clone();
        let every = (services.limits.upload_ttl_seconds / 2).clamp(1, 60);
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(std::time::Duration::from_secs(every.unsigned_abs()));
            loop {
                tick.tick().await;
                match services.expire_uploads().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "removed expired uploads"),
                    Err(e) => tracing::warn!(error = %e, "removing expired uploads failed"),
                }
            }
        })
    };
    let purger = (settings.purge_interval_secs > 0).then(|| {
        let services = state.services.clone();
        let every = std::time::Duration::from_secs(settings.purge_interval_secs);
        // This replica's name for the purge lease.
        let holder = holdfast_services::random::uuid()
            .unwrap_or_else(|_| format!("pid-{}", std::process::id()));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match services.purge_expired(&holder).await {
                    Ok(r) if r.objects > 0 || r.versions > 0 => tracing::info!(
                        objects = r.objects,
                        versions = r.versions,
                        attachments = r.attachments,
                        "purged what was deleted"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the purge failed; the next run carries on")
                    }
                }
            }
        })
    });
    let metrics_server = match &settings.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for /metrics on {addr}"))?;
            tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
            let app = holdfast_server::metrics::router(state.clone());
            let limits = holdfast_server::listen::ConnLimits {
                max_connections: 16,
                ..settings.conn_limits()
            };
            Some(tokio::spawn(async move {
                if let Err(e) =
                    holdfast_server::listen::serve(listener, app, None, limits, shutdown()).await
                {
                    tracing::error!(error = %e, "the /metrics listener failed");
                }
            }))
        }
        None => None,
    };
    let services = state.services.clone();
    let app = holdfast_server::router(state);
    if let (Some(config), Some(cert), Some(key)) = (&tls, &settings.tls_cert, &settings.tls_key) {
        // SIGHUP reloads the certificate and key from the same files; connections already
        // open keep theirs. rustls speaks TLS 1.2 and 1.3 only.
        let (reload, cert, key) = (config.clone(), cert.clone(), key.clone());
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                match reload.reload_from_pem_file(&cert, &key).await {
                    Ok(()) => tracing::info!("reloaded the TLS certificate"),
                    Err(e) => {
                        tracing::error!(error = %e, "could not reload the TLS certificate; keeping the old one")
                    }
                }
            }
        });
    }
    let mut limits = settings.conn_limits();
    // Connections must leave descriptors for what is open already (including any the
    // process inherited) and 64 more for the store, blobs and the KMS.
    if let Some(limit) = open_file_limit() {
        let in_use = open_descriptors().unwrap_or(0);
        let room = limit.saturating_sub(in_use + 64).max(1);
        if limits.max_connections > room {
            tracing::warn!(
                max_connections = limits.max_connections,
                open_file_limit = limit,
                in_use,
                lowered_to = room,
                "max_connections lowered to leave 64 of the process's descriptors for everything else"
            );
            limits.max_connections = room;
        }
    }
    holdfast_server::listen::serve(listener, app, tls, limits, shutdown()).await?;
    background.abort();
    sweeper.abort();
    exports_janitor.abort();
    if let Some(p) = purger {
        p.abort();
    }
    if let Some(m) = metrics_server {
        m.abort();
    }
    services.keys.flush_usage(&services.store).await;
    services.audit.flush().await;
    Ok(())
}

/// Prints a new key as the only line on stdout; an unwritable stdout is an error, since the
/// key is shown nowhere else.
fn write_key(key: &str) -> Result<()> {
    write_out(key, "the key was created but").context("revoke it: it is shown nowhere else")
}

/// Writes a command's one line of output; an unwritable stdout is an error.
fn write_out(line: &str, what: &str) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .with_context(|| format!("{what} could not be written to stdout"))
}

/// The process's soft limit on open files (`/proc/self/limits`), where it can be read.
/// How many descriptors this process has open now.
fn open_descriptors() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn shutdown() {
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

async fn export(action: ExportAction) -> Result<()> {
    use holdfast_services::export::{ExportRequest, Location, open_export};
    let location = |settings: &Settings, s3: bool, dir: Option<std::path::PathBuf>| {
        Ok::<_, anyhow::Error>(if s3 {
            Location::S3(Arc::new(s3_client(settings).context("--s3")?))
        } else {
            Location::Dir(dir.unwrap_or_else(|| exports_dir(settings)))
        })
    };
    match action {
        ExportAction::Create {
            common,
            org,
            project,
            to,
            s3,
            plaintext,
            format,
            part_mib,
        } => {
            let settings = common.settings(None)?;
            let part_bytes = part_mib
                .checked_mul(1024 * 1024)
                .filter(|b| *b > 0)
                .context("--part-mib must be between 1 and 2^44")?;
            let to = location(&settings, s3, to)?;
            let services = open(&settings).await?;
            let request = ExportRequest {
                org_name: org,
                project,
                encrypt: !plaintext,
                part_bytes,
                format: holdfast_services::export::Format::parse(&format)
                    .context("--format is jsonl or parquet")?,
                ..Default::default()
            };
            let done = services.export(&request, to).await?;
            let m = &done.manifest;
            say!(
                "{}",
                serde_json::json!({
                    "id": m.id,
                    "location": done.location,
                    "encrypted": m.encryption.is_some(),
                    "as_of_xact": m.as_of_xact,
                    "totals": m.totals,
                    "files": m.files.len(),
                })
            );
        }
        ExportAction::Open {
            common,
            id,
            from,
            s3,
            to,
            unauthenticated,
        } => {
            let settings = common.settings(None)?;
            let from = location(&settings, s3, from)?;
            let kms = open_kms(&settings)?;
            let manifest = open_export(&kms, &from, &id, &to, unauthenticated).await?;
            say!(
                "{}",
                serde_json::json!({
                    "id": id,
                    "opened_to": to.display().to_string(),
                    "totals": manifest.totals,
                    "files": manifest.files.len(),
                })
            );
        }
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { common, org, owner } => {
            let services = open(&common.settings(None)?).await?;
            if services.is_initialized().await? {
                bail!("the store is already initialized; nothing was changed");
            }
            services
                .record_operator_command("init", None, json!({"org": org, "owner": owner}))
                .await?;
            let key = services.create_org(&org, &owner).await?;
            write_key(key.expose_secret())?;
            let link = owner_link(&services, &common.settings(None)?, &org, &owner).await?;
            say!(
                err,
                "the owner sets a password for signing in, once, at: {link}"
            );
        }
        Command::Org {
            action:
                OrgAction::Create {
                    common,
                    name,
                    owner,
                },
        } => {
            let services = open(&common.settings(None)?).await?;
            services
                .record_operator_command("org create", None, json!({"org": name, "owner": owner}))
                .await?;
            let key = services.create_org(&name, &owner).await?;
            write_key(key.expose_secret())?;
        }
        Command::Serve {
            common,
            listen,
            tls_cert,
            tls_key,
        } => serve(common.settings_with(listen, tls_cert, tls_key)?).await?,
        Command::Keys { action } => match action {
            KeysAction::Create {
                common,
                org,
                email,
                name,
                expires_in_days,
            } => {
                let services = open(&common.settings(None)?).await?;
                let expires = expires_in_days.map(|d| {
                    format_timestamp(services.clock.now() + time::Duration::days(i64::from(d)))
                });
                services
                    .record_operator_command(
                        "keys create",
                        Some(&org),
                        json!({"email": email, "name": name, "expires_at": expires}),
                    )
                    .await?;
                let key = services
                    .create_key_for(&org, &email, &name, expires)
                    .await?;
                write_key(key.expose_secret())?;
            }
            KeysAction::RotateKek { common } => {
                let settings = common.settings(None)?;
                let services = open(&settings).await?;
                services
                    .record_operator_command("keys rotate-kek", None, json!({}))
                    .await?;
                let done = services
                    .rotate_kek(&settings.data_dir, &exports_dir(&settings))
                    .await?;
                if let Some(id) = &done.new_kek {
                    say!(err, "new key-encryption key {id}");
                }
                for file in &done.files {
                    say!(err, "re-wrapped {file}");
                }
                if done.exports > 0 {
                    say!(err, "re-wrapped the keys of {} exports", done.exports);
                }
                say!("re-wrapped {} data keys", done.data_keys);
            }
            KeysAction::RetireKek { common, id } => {
                let settings = common.settings(None)?;
                let services = open(&settings).await?;
                services
                    .retire_kek(&settings.data_dir, &exports_dir(&settings), &id)
                    .await?;
                say!("retired {id}");
            }
            KeysAction::RotateDek { common, org } => {
                let services = open(&common.settings(None)?).await?;
                let org_id = services.org_id_by_name(&org).await?;
                services
                    .record_operator_command("keys rotate-dek", Some(&org), json!({}))
                    .await?;
                let n = services
                    .vault
                    .rotate_dek(&services.store, &org_id, &services.now())
                    .await?;
                say!("re-encrypted {n} secrets of {org} under a new data key");
            }
            KeysAction::List { common, org, email } => {
                let services = open(&common.settings(None)?).await?;
                for k in services.list_keys_for(&org, &email).await? {
                    say!("{k}");
                }
            }
            KeysAction::Revoke {
                common,
                org,
                email,
                key_id,
            } => {
                let services = open(&common.settings(None)?).await?;
                services
                    .record_operator_command(
                        "keys revoke",
                        Some(&org),
                        json!({"email": email, "key_id": key_id}),
                    )
                    .await?;
                services.revoke_key_for(&org, &email, &key_id).await?;
                say!(err, "revoked {key_id}");
            }
        },
        Command::User {
            action:
                UserAction::Create {
                    common,
                    member: MemberArgs { org, email, group },
                    print_key,
                },
        } => {
            let services = open(&common.settings(None)?).await?;
            services
                .record_operator_command(
                    "user create",
                    Some(&org),
                    json!({"email": email, "group": group, "key": print_key}),
                )
                .await?;
            let key = services.create_user_cli(&org, &email, &group).await?;
            if print_key {
                write_key(key.expose_secret())?;
            } else {
                say!(err, "added {email} to {group} in {org}");
            }
        }
        Command::User {
            action:
                UserAction::Invite {
                    common,
                    member: MemberArgs { org, email, group },
                    reset,
                },
        } => {
            let settings = common.settings(None)?;
            let services = open(&settings).await?;
            services
                .record_operator_command(
                    "user invite",
                    Some(&org),
                    json!({"email": email, "group": group, "reset": reset}),
                )
                .await?;
            let (token, expires) = services
                .invite_user_cli(&org, &email, &group, reset)
                .await?;
            say!("{}", password_link(&settings, token.expose_secret()));
            say!(err, "the link works once, until {expires}");
        }
        Command::Secrets {
            action: SecretsAction::Verify { common, org },
        } => {
            let services = open(&common.settings(None)?).await?;
            let orgs = match org {
                Some(name) => vec![(services.org_id_by_name(&name).await?, name)],
                None => services.all_orgs().await?,
            };
            let mut failed = Vec::new();
            let mut opened = 0;
            for (id, name) in orgs {
                let (ok, bad) = services.vault.verify(&services.store, &id).await?;
                opened += ok;
                failed.extend(bad.into_iter().map(|b| format!("{name}/{b}")));
            }
            if !failed.is_empty() {
                bail!(
                    "{} secrets do not decrypt: {}",
                    failed.len(),
                    failed.join(", ")
                );
            }
            say!("all {opened} secrets decrypt");
        }
        Command::Audit {
            action:
                AuditAction::Verify {
                    common,
                    since_checkpoint,
                },
        } => {
            let services = open(&common.settings(None)?).await?;
            let checkpoint = match &since_checkpoint {
                None => None,
                Some(path) => Some(
                    std::fs::read(path)
                        .map_err(anyhow::Error::from)
                        .and_then(|b| Ok(serde_json::from_slice::<Checkpoint>(&b)?))
                        .with_context(|| format!("reading the checkpoint {}", path.display()))?,
                ),
            };
            let key = services.keys.audit_key()?;
            match holdfast_services::audit::verify(&services.store, key, checkpoint.as_ref())
                .await?
            {
                Verdict::Intact { entries, chains } => {
                    let since = if checkpoint.is_some() {
                        " since the checkpoint"
                    } else {
                        ""
                    };
                    say!("audit log intact: {entries} entries in {chains} chains verified{since}");
                }
                Verdict::Broken { chain, seq, why } => {
                    let chain = if chain.is_empty() { "server" } else { &chain };
                    bail!("audit log broken at entry {seq} of chain {chain}: {why}");
                }
            }
        }
        Command::Audit {
            action: AuditAction::Checkpoint { common },
        } => {
            let services = open(&common.settings(None)?).await?;
            let key = services.keys.audit_key()?;
            let cp =
                holdfast_services::audit::checkpoint(&services.store, key, services.now()).await?;
            write_out(&serde_json::to_string(&cp)?, "the checkpoint")?;
        }
        Command::Export { action } => export(action).await?,
        Command::Backup { common, to, s3 } => {
            let settings = common.settings(None)?;
            match to {
                Some(to) if !s3 => backup::backup(&settings, &to).await?,
                _ => backup::backup_to_s3(&settings).await?,
            }
        }
        Command::Restore { common, from, s3 } => {
            let settings = common.settings(None)?;
            match (from, s3) {
                (Some(from), None) => backup::restore(&settings, &from).await?,
                (None, Some(id)) => backup::restore_from_s3(&settings, &id).await?,
                _ => bail!("give --from DIR or --s3 ID"),
            }
        }
        Command::Bench { which } => bench::run(which).await?,
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    // HOLDFAST_LOG filters (`info` by default); HOLDFAST_LOG_FORMAT=json writes one JSON
    // object per line, with the request span's fields (request_id) on each.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOLDFAST_LOG")
        .unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::registry()
        .with(filter)
        .with(logging::NoStoreKey);
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match std::env::var("HOLDFAST_LOG_FORMAT").as_deref() {
        Ok("json") => logs.with(lines.json().with_current_span(true)).init(),
        Ok("text") | Err(_) => logs.with(lines).init(),
        Ok(other) => {
            logs.with(lines).init();
            tracing::warn!(
                format = other,
                "HOLDFAST_LOG_FORMAT must be \"text\" or \"json\"; writing text"
            );
        }
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            say!(err, "error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    let opened = std::mem::take(&mut *OPENED.lock().unwrap_or_else(|e| e.into_inner()));
    runtime.block_on(async {
        for store in opened {
            store.close().await;
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            say!(err, "error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
