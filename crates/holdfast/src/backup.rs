//! `holdfast backup` and `holdfast restore`: a consistent copy of the store, taken while the
//! server keeps serving, and brought back into an empty data directory (and, with
//! PostgreSQL, an empty database).
//!
//! A backup directory holds `holdfast.db` (a `VACUUM INTO` snapshot, encrypted with the
//! store's key when the store is), `blobs/` (already encrypted), the KMS-wrapped keys
//! (`storage.key`, `pepper.wrapped`) and `backup.json`: every file with its size and
//! SHA-256, and the row count of every table of the snapshot. The KMS key itself (a local
//! KMS's `kms/` directory, or the cloud KMS key) is never copied: restoring needs the KMS.
//!
//! Blobs are copied before the snapshot and again after it (those that appeared meanwhile),
//! so every blob the snapshot references is in the backup: blobs are written before the rows
//! that reference them, and removed only long after the rows are gone (the purge, after the
//! grace period). The backup is written as `DIR.partial` and renamed when complete.
//!
//! With PostgreSQL (`--database-url`), the database is dumped by `pg_dump` (custom format)
//! into `holdfast.pgdump` instead: the dump reads the snapshot a read-only, repeatable-read
//! transaction exported, and the tables' rows are counted in that same snapshot, so the
//! manifest's counts are the dump's. The dump is sealed with the storage key (segmented
//! AES-256-GCM, as exports are) when the store has one. `holdfast restore --database-url`
//! refuses a database that holds tables, feeds the opened dump to `pg_restore` in one
//! transaction, and checks every table's rows against the manifest. `pg_dump` and
//! `pg_restore` (PostgreSQL's client tools, of the server's major version or newer) must be
//! on the `PATH`.
//!
//! With `--s3`, the backup is made in the data directory, then written to the bucket of the
//! `s3_*` settings under `backups/<id>/` (server-side encrypted, as exports are), in objects of
//! at most [`PART`] bytes (`name`, or `name.part00000`, ... for larger files, so that no
//! file is ever held whole in memory), the manifest last: a backup without `backup.json` is
//! incomplete. `holdfast restore --s3 <id>` reads it back the same way.

use anyhow::{Context, Result, bail};
use holdfast_services::kek::STORAGE_CONTEXT;
use holdfast_services::keyfile;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MANIFEST: &str = "backup.json";
/// The largest object of a backup in S3.
const PART: u64 = 32 * 1024 * 1024;
const DB: &str = "holdfast.db";
/// The PostgreSQL dump of a backup of a PostgreSQL store.
const PG_DUMP: &str = "holdfast.pgdump";
/// What the dump's sealing is bound to (a sealed file opens only under its own name).
const PG_DUMP_LABEL: &[u8] = b"holdfast backup holdfast.pgdump";
/// Files of the data directory copied as they are (wrapped by the KMS).
const KEY_FILES: [&str; 2] = ["storage.key", "pepper.wrapped"];

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// The version of Holdfast that made it.
    version: String,
    created: String,
    encrypted: bool,
    /// A PostgreSQL store's backup (`holdfast.pgdump`), not the embedded store's.
    #[serde(default)]
    postgres: bool,
    /// Relative path → (bytes, SHA-256 in hex).
    files: BTreeMap<String, (u64, String)>,
    /// Rows of every table of the snapshot.
    tables: BTreeMap<String, i64>,
}

fn sha256_file(path: &Path) -> Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        n += got as u64;
        hasher.update(buf.get(..got).unwrap_or_default());
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((n, hex))
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        for e in entries {
            let e = e?;
            let rel = rel.join(e.file_name());
            let kind = e.file_type()?;
            if kind.is_dir() {
                todo.push(rel);
            } else if kind.is_file() {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Copies the blobs under `from` that `to` does not hold yet; returns how many.
fn copy_new_blobs(from: &Path, to: &Path) -> Result<usize> {
    let mut n = 0;
    for rel in files_under(from)? {
        let target = to.join(&rel);
        if target.exists() {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::copy(from.join(&rel), &target) {
            Ok(_) => n += 1,
            // Removed since it was listed (an expired upload): nothing references it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("copying blob {}", rel.display())),
        }
    }
    Ok(n)
}

/// The store's key, unwrapped by the KMS the settings name (`None`: not encrypted at rest).
async fn storage_key(settings: &crate::Settings) -> Result<Option<[u8; 32]>> {
    let kms = crate::open_kms(settings)?;
    let key = keyfile::load(
        &kms,
        &settings.data_dir.join("storage.key"),
        STORAGE_CONTEXT,
    )
    .await
    .context("unwrapping the storage key with the KMS")?;
    Ok(key.map(|k| *k.expose()))
}

/// The objects a file of `bytes` is written to in S3: itself when it fits one, else its parts.
fn part_names(name: &str, bytes: u64, part: u64) -> Vec<String> {
    if bytes <= part {
        return vec![name.to_owned()];
    }
    (0..bytes.div_ceil(part))
        .map(|i| format!("{name}.part{i:05}"))
        .collect()
}

/// `holdfast backup --s3`: a backup made beside the store, then written to the bucket.
pub async fn backup_to_s3(settings: &crate::Settings) -> Result<()> {
    use std::io::Read;
    let s3 = crate::s3_client(settings).context("--s3")?;
    let now = holdfast_core::clock::Clock::now(&holdfast_core::clock::SystemClock);
    let id = format!(
        "{}-{}",
        holdfast_core::clock::format_timestamp(now)
            .replace([':', '-', '.'], "")
            .get(..15)
            .unwrap_or_default(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let local = settings.data_dir.join(format!(".backup-{id}"));
    backup(settings, &local).await?;
    let result = async {
        let manifest: Manifest = serde_json::from_slice(&std::fs::read(local.join(MANIFEST))?)?;
        let prefix = format!("backups/{id}");
        for (name, (bytes, _)) in &manifest.files {
            let mut f = std::fs::File::open(local.join(name))?;
            for object in part_names(name, *bytes, PART) {
                let mut chunk = Vec::new();
                (&mut f).take(PART).read_to_end(&mut chunk)?;
                s3.put(&format!("{prefix}/{object}"), chunk)
                    .await
                    .with_context(|| format!("writing {object} to the bucket"))?;
            }
        }
        s3.put(
            &format!("{prefix}/{MANIFEST}"),
            std::fs::read(local.join(MANIFEST))?,
        )
        .await?;
        println!(
            "written to {}{prefix}/ (restore with: holdfast restore --s3 {id})",
            s3.url_prefix()
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    std::fs::remove_dir_all(&local).context("removing the local copy")?;
    result
}

/// `holdfast restore --s3 <id>`: the backup is read from the bucket beside the data
/// directory (each file checked), then restored.
pub async fn restore_from_s3(settings: &crate::Settings, id: &str) -> Result<()> {
    use std::io::Write;
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        bail!("a backup id is letters, digits and '-' (as `holdfast backup --s3` prints it)");
    }
    let s3 = crate::s3_client(settings).context("--s3")?;
    let prefix = format!("backups/{id}");
    let manifest_bytes = s3
        .get(&format!("{prefix}/{MANIFEST}"))
        .await?
        .with_context(|| format!("no complete backup {id} in the bucket"))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)?;
    std::fs::create_dir_all(&settings.data_dir)?;
    let local = settings.data_dir.join(format!(".restore-{id}"));
    if local.exists() {
        std::fs::remove_dir_all(&local)?;
    }
    let result = async {
        for (name, (bytes, _)) in &manifest.files {
            if name.contains("..") || name.starts_with('/') {
                bail!("the manifest names a file outside the backup: {name}");
            }
            let path = local.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut f = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?
            };
            for object in part_names(name, *bytes, PART) {
                let chunk = s3
                    .get(&format!("{prefix}/{object}"))
                    .await?
                    .with_context(|| format!("{object} is missing from the backup"))?;
                f.write_all(&chunk)?;
            }
        }
        std::fs::write(local.join(MANIFEST), &manifest_bytes)?;
        restore(settings, &local).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&local);
    result
}

/// `holdfast backup --to DIR`.
pub async fn backup(settings: &crate::Settings, to: &Path) -> Result<()> {
    let data = &settings.data_dir;
    let db = data.join(DB);
    if settings.database_url.is_none() && !db.exists() {
        bail!("no embedded store at {}", db.display());
    }
    if to.exists() {
        bail!(
            "{} already exists; back up into a new directory",
            to.display()
        );
    }
    let partial = PathBuf::from(format!("{}.partial", to.display()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing the unfinished {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o700))?;
    }
    let key = storage_key(settings).await?;
    let local_blobs = settings.blob_store != "s3";
    let blobs = data.join("blobs");
    let mut copied = 0;
    if local_blobs {
        copied += copy_new_blobs(&blobs, &partial.join("blobs"))?;
    }
    let tables = match &settings.database_url {
        None => {
            holdfast_store::snapshot_sqlite(&db, key.as_ref(), &partial.join(DB))
                .await
                .context("copying the database")?;
            holdfast_store::table_counts(&partial.join(DB), key.as_ref()).await?
        }
        Some(url) => dump_postgres(url, key.as_ref(), &partial).await?,
    };
    if local_blobs {
        copied += copy_new_blobs(&blobs, &partial.join("blobs"))?;
    }
    for f in KEY_FILES {
        let from = data.join(f);
        if from.exists() {
            std::fs::copy(&from, partial.join(f)).with_context(|| format!("copying {f}"))?;
        }
    }
    let mut files = BTreeMap::new();
    for rel in files_under(&partial)? {
        let name = rel.to_string_lossy().into_owned();
        files.insert(name, sha256_file(&partial.join(&rel))?);
    }
    let manifest = Manifest {
        format: 1,
        version: env!("CARGO_PKG_VERSION").into(),
        created: holdfast_core::clock::format_timestamp(holdfast_core::clock::Clock::now(
            &holdfast_core::clock::SystemClock,
        )),
        encrypted: key.is_some(),
        postgres: settings.database_url.is_some(),
        files,
        tables,
    };
    std::fs::write(
        partial.join(MANIFEST),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    std::fs::rename(&partial, to)
        .with_context(|| format!("renaming {} to {}", partial.display(), to.display()))?;
    let rows = manifest.tables.get("rows").copied().unwrap_or(0);
    println!(
        "backed up to {}: {} files, {copied} blobs, {rows} row versions{}",
        to.display(),
        manifest.files.len(),
        if manifest.encrypted {
            ", encrypted"
        } else {
            " (the store is not encrypted at rest: neither is the backup)"
        }
    );
    if !local_blobs {
        println!("blobs stay in the S3 bucket (blob_store = \"s3\"); they are not copied");
    }
    Ok(())
}

/// `holdfast restore --from DIR`: into a data directory without a store; the KMS the
/// settings name must unwrap the backup's keys.
pub async fn restore(settings: &crate::Settings, from: &Path) -> Result<()> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(from.join(MANIFEST))
            .with_context(|| format!("reading {}/{MANIFEST}", from.display()))?,
    )
    .context("the backup's manifest")?;
    if manifest.format != 1 {
        bail!(
            "backup format {} is not known to this version",
            manifest.format
        );
    }
    // Every file whole, before anything is written.
    for (name, (bytes, sha)) in &manifest.files {
        let got = sha256_file(&from.join(name))?;
        if got != (*bytes, sha.clone()) {
            bail!("{name} in the backup is damaged (size or SHA-256 differs from the manifest)");
        }
    }
    match (&settings.database_url, manifest.postgres) {
        (Some(_), false) => {
            bail!("this backup is of an embedded store; restore it without a database URL")
        }
        (None, true) => bail!(
            "this backup is of a PostgreSQL store; give the (empty) database to restore it \
             into with --database-url"
        ),
        (Some(url), true) => {
            let held = holdfast_store::pg_table_counts(url)
                .await
                .context("reading the database to restore into")?;
            if !held.is_empty() {
                bail!(
                    "the database to restore into holds {} tables; restore into an empty database",
                    held.len()
                );
            }
        }
        (None, false) => {}
    }
    let data = &settings.data_dir;
    if data.join(DB).exists() {
        bail!(
            "{} already holds a store; restore into an empty data directory",
            data.display()
        );
    }
    std::fs::create_dir_all(data)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))?;
    }
    for f in KEY_FILES {
        if manifest.files.contains_key(f) && data.join(f).exists() {
            bail!(
                "{} already holds {f}; restore into an empty data directory",
                data.display()
            );
        }
    }
    // The keys first: the KMS must unwrap them, or nothing else is written.
    for f in KEY_FILES {
        if manifest.files.contains_key(f) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::copy(from.join(f), data.join(f))?;
            std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let key = match storage_key(settings).await {
        Ok(k) => k,
        Err(e) => {
            for f in KEY_FILES {
                let _ = std::fs::remove_file(data.join(f));
            }
            return Err(e.context(
                "the configured KMS cannot unwrap the backup's keys: restore with the KMS (or \
                 the local KMS's kms/ directory) of the store that was backed up",
            ));
        }
    };
    if manifest.encrypted && key.is_none() {
        bail!("the backup is encrypted but holds no storage key");
    }
    let partial = data.join(format!("{DB}.restoring"));
    let tables = match &settings.database_url {
        None => {
            std::fs::copy(from.join(DB), &partial)?;
            holdfast_store::table_counts(&partial, key.as_ref())
                .await
                .context("opening the restored database with the unwrapped key")?
        }
        Some(url) => restore_postgres(url, key.as_ref(), &from.join(PG_DUMP)).await?,
    };
    if tables != manifest.tables {
        bail!("the restored database's tables do not hold the rows the manifest counts");
    }
    let mut blobs = 0;
    for name in manifest.files.keys() {
        if let Some(rel) = name.strip_prefix("blobs/") {
            let target = data.join("blobs").join(rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(from.join(name), &target)?;
            blobs += 1;
        }
    }
    if settings.database_url.is_none() {
        std::fs::rename(&partial, data.join(DB))?;
    }
    let rows = tables.get("rows").copied().unwrap_or(0);
    println!(
        "restored {} (made {}) into {}: {rows} row versions, {blobs} blobs; every table's rows \
         counted as the backup's manifest says",
        from.display(),
        manifest.created,
        data.display()
    );
    Ok(())
}

/// `%xx` escapes of a URL's part decoded (a password in a database URL).
fn percent_decoded(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&c, tail)) = rest.split_first() {
        let hex = tail
            .get(..2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                rest = tail.get(2..).unwrap_or_default();
            }
            _ => {
                out.push(c);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One of PostgreSQL's client tools, connecting to `url`: its password goes in the
/// environment, not on the command line (which other users of the machine can read).
fn pg_tool(program: &str, url: &str) -> Result<std::process::Command> {
    let mut parsed = reqwest::Url::parse(url).context("the database URL")?;
    let password = parsed.password().map(percent_decoded);
    let _ = parsed.set_password(None);
    let mut cmd = std::process::Command::new(program);
    cmd.arg("--dbname").arg(parsed.as_str());
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    Ok(cmd)
}

/// Runs a client tool with its standard error in a file; its failure names what it said.
fn finished(what: &str, mut child: std::process::Child, log: &Path) -> Result<()> {
    let status = child
        .wait()
        .with_context(|| format!("waiting for {what}"))?;
    let said = std::fs::read_to_string(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    if !status.success() {
        bail!("{what} failed ({status}): {}", said.trim());
    }
    Ok(())
}

/// Dumps the PostgreSQL store at `url` into `dir/holdfast.pgdump` (sealed with `key` when
/// given) from an exported snapshot; returns the rows of every table in that snapshot.
async fn dump_postgres(
    url: &str,
    key: Option<&[u8; 32]>,
    dir: &Path,
) -> Result<BTreeMap<String, i64>> {
    let mut snapshot = holdfast_store::PgSnapshot::begin(url)
        .await
        .context("opening a snapshot of the database")?;
    let log = dir.join(".pg_dump.log");
    let mut cmd = pg_tool("pg_dump", url)?;
    cmd.args(["--format=custom", "--no-owner", "--no-privileges"])
        .arg(format!("--snapshot={}", snapshot.id))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log)?);
    let mut child = cmd
        .spawn()
        .context("running pg_dump (PostgreSQL's client tools must be on the PATH)")?;
    let out = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(PG_DUMP))?
    };
    let sealing = key
        .map(|k| holdfast_crypto::aead::DataKey::from_bytes(k))
        .transpose()
        .context("the storage key")?;
    let mut stdout = child.stdout.take().context("pg_dump's output")?;
    let copied = tokio::task::spawn_blocking(move || -> Result<()> {
        let out = std::io::BufWriter::with_capacity(1 << 20, out);
        match sealing {
            Some(k) => {
                let mut sealer = holdfast_crypto::stream::Sealer::new(&k, PG_DUMP_LABEL, out)
                    .context("sealing the dump")?;
                std::io::copy(&mut stdout, &mut sealer)?;
                sealer.finish()?.into_inner()?.sync_all()?;
            }
            None => {
                let mut out = out;
                std::io::copy(&mut stdout, &mut out)?;
                out.into_inner()?.sync_all()?;
            }
        }
        Ok(())
    })
    .await?;
    let done = tokio::task::spawn_blocking(move || finished("pg_dump", child, &log)).await?;
    done?;
    copied.context("writing the dump")?;
    let tables = snapshot.table_counts().await?;
    snapshot.end().await?;
    Ok(tables)
}

/// Restores `dump` (opened with `key` when given) into the empty database at `url` with
/// `pg_restore`, in one transaction; returns the rows of every table after.
async fn restore_postgres(
    url: &str,
    key: Option<&[u8; 32]>,
    dump: &Path,
) -> Result<BTreeMap<String, i64>> {
    let log = std::env::temp_dir().join(format!(
        "holdfast-pg_restore-{}.log",
        uuid::Uuid::new_v4().simple()
    ));
    let mut cmd = pg_tool("pg_restore", url)?;
    cmd.args([
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(&log)?);
    let mut child = cmd
        .spawn()
        .context("running pg_restore (PostgreSQL's client tools must be on the PATH)")?;
    let stdin = child.stdin.take().context("pg_restore's input")?;
    let opening = key
        .map(|k| holdfast_crypto::aead::DataKey::from_bytes(k))
        .transpose()
        .context("the storage key")?;
    let input = std::fs::File::open(dump).context("the backup's dump")?;
    let fed = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut stdin = std::io::BufWriter::with_capacity(1 << 20, stdin);
        match opening {
            Some(k) => {
                holdfast_crypto::stream::open_to(&k, PG_DUMP_LABEL, input, &mut stdin)
                    .context("opening the dump with the storage key")?;
            }
            None => {
                std::io::copy(&mut std::io::BufReader::new(input), &mut stdin)?;
            }
        }
        // Closing the input ends the archive; an input cut short is refused whole.
        drop(stdin.into_inner().map_err(|e| e.into_error())?);
        Ok(())
    })
    .await?;
    let done = tokio::task::spawn_blocking(move || finished("pg_restore", child, &log)).await?;
    // pg_restore's own refusal says more than the broken pipe its input then met.
    if let Err(e) = done {
        return Err(match fed {
            Err(f) => e.context(format!("{f:#}")),
            Ok(()) => e,
        });
    }
    fed?;
    holdfast_store::pg_table_counts(url)
        .await
        .context("counting the restored database's rows")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_password_is_decoded() {
        assert_eq!(percent_decoded("p%40ss%2Fw%3Ad"), "p@ss/w:d");
        assert_eq!(percent_decoded("plain"), "plain");
        assert_eq!(percent_decoded("100%"), "100%");
        assert_eq!(percent_decoded("%zz%4"), "%zz%4");
    }

    #[test]
    fn files_are_split_into_parts() {
        assert_eq!(part_names("holdfast.db", 0, 10), vec!["holdfast.db"]);
        assert_eq!(part_names("holdfast.db", 10, 10), vec!["holdfast.db"]);
        assert_eq!(
            part_names("holdfast.db", 11, 10),
            vec!["holdfast.db.part00000", "holdfast.db.part00001"]
        );
        assert_eq!(part_names("b", 30, 10).len(), 3);
    }
}
