//! Exports: a whole organization, or one project, as JSON Lines or (rows) Parquet, to a
//! directory or to an S3-compatible bucket, and opening them again.
//!
//! An export is a folder named by its id:
//! * `projects.jsonl`: one line per project, as `/v1/project` returns it;
//! * `objects.jsonl`: one line per experiment, dataset and prompt, as `/v1/<type>` returns it,
//!   with its `object_type`;
//! * `rows/<object type>/<object id>/<n>.jsonl`: the object's rows as `fetch` returns them,
//!   in row-id order, split into files of at most `part_bytes`; with [`Format::Parquet`],
//!   `<n>.parquet` files of the same rows (columns in `parquet_rows`);
//! * `manifest.json`: the id, the organization and project ids, the transaction it was read
//!   at, and for each file its contents, record count, size and SHA-256. It holds no names and
//!   no row data.
//!
//! Guarantees:
//! * One point in time: every object's rows are read as of the newest transaction committed
//!   when the export began (`as_of_xact`).
//! * Whole or absent: a local export is written to a hidden folder, synced, and renamed into
//!   place; in a bucket the manifest is written last (and the other objects are removed if the
//!   export fails), so a folder without `manifest.json` is not an export.
//! * Encrypted unless the operator asks otherwise: every data file is sealed in segments
//!   (`holdfast_crypto::stream`, suffix `.enc`) under a key made for this export, which the
//!   manifest keeps only wrapped by the KMS, bound to the export's id. A file opens only under
//!   its own path in its own export; the manifest's digests catch a missing or altered file of
//!   a plaintext export too. In a bucket each object is also written with server-side
//!   encryption.
//! * Memory is bounded by one file (`part_bytes`), whatever the size of the organization.
//! * The export is in the audit log before anything is read.

use crate::objects::{object_json, project_json};
use crate::query::row_json;
use crate::s3::S3;
use crate::{Result, ServiceError, Services, random};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use holdfast_core::authz::{Reach, SystemPass, system_org_lookup, system_read_pass};
use holdfast_core::object::ObjectType;
use holdfast_crypto::stream::Sealer;
use holdfast_crypto::{AnyKms, DataKey, Kms, Wrapped};
use holdfast_store::{NewAuditEntry, ProjectRecord, RowQuery};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};

mod parquet_rows;
use parquet_rows::Table;

pub const FORMAT: &str = "holdfast-export";
pub const VERSION: u64 = 1;
const SCHEME: &str = "HFSTRM1: AES-256-GCM, 64 KiB segments, per-file key by HKDF-SHA256";
/// The default size of a rows file.
pub const DEFAULT_PART_BYTES: usize = 64 * 1024 * 1024;
/// Rows read per store query.
const PAGE: i64 = 1000;
/// Objects listed per store query.
const LIST_PAGE: i64 = 1000;

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u64,
    pub id: String,
    pub created: String,
    pub org_id: String,
    /// Set when one project was exported.
    pub project_id: Option<String>,
    /// The transaction every row was read at; `None` when the store held no rows.
    pub as_of_xact: Option<String>,
    /// `None` for a plaintext export.
    pub encryption: Option<Encryption>,
    pub totals: Totals,
    pub files: Vec<FileEntry>,
    /// The manifest's authentication (see `manifest_auth`); absent in exports made before
    /// manifests were authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authentication {
    /// The KEK that wraps the manifest key.
    pub kek_id: String,
    /// The manifest key, wrapped by the KMS (base64): the export's key when it is sealed.
    pub wrapped_key: String,
    /// What the wrap is bound to: `holdfast-export:<export id>`.
    pub key_context: String,
    pub hmac_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    pub scheme: String,
    /// The KEK that wraps the export key.
    pub kek_id: String,
    /// The export key, wrapped by the KMS (base64).
    pub wrapped_key: String,
    /// What the wrap is bound to: `holdfast-export:<export id>`.
    pub key_context: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub projects: u64,
    pub objects: u64,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    /// `projects`, `objects` or `rows`.
    pub contents: String,
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
    /// For rows: whose they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
}

/// Where an export is written or read.
pub enum Location {
    /// The folder that holds exports (`<dir>/<export id>/`).
    Dir(PathBuf),
    /// A bucket; exports live under `exports/<export id>/` inside the client's prefix.
    S3(std::sync::Arc<S3>),
}

impl Location {
    fn describe(&self, id: &str) -> String {
        match self {
            Self::Dir(dir) => dir.join(id).display().to_string(),
            Self::S3(s3) => format!("{}exports/{id}/", s3.url_prefix()),
        }
    }
}

/// How rows files are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    JsonLines,
    Parquet,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jsonl" => Some(Self::JsonLines),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonLines => "jsonl",
            Self::Parquet => "parquet",
        }
    }
}

/// Where scheduled exports may go: the server's exports folder and, when the operator set
/// one up, its bucket.
#[derive(Clone, Default)]
pub struct ExportTargets {
    pub dir: PathBuf,
    pub s3: Option<std::sync::Arc<S3>>,
}

#[derive(Default)]
pub struct ExportRequest {
    pub org_name: String,
    /// The organization by id (for a scheduled export), instead of `org_name`.
    pub org_id: Option<String>,
    /// A project's name or id; the whole organization when `None`.
    pub project: Option<String>,
    /// Seal the data files (the default); `false` writes plain JSON Lines.
    pub encrypt: bool,
    pub part_bytes: usize,
    /// Of the rows files (projects and objects are always JSON Lines).
    pub format: Format,
    /// Only the project's logs (no projects or objects files): a scheduled export.
    pub logs_only: bool,
    /// Only rows whose newest version is after this transaction.
    pub since: Option<holdfast_core::xact::XactId>,
    /// Read as of this transaction instead of the newest.
    pub as_of: Option<holdfast_core::xact::XactId>,
    /// The scheduled export this run belongs to (for the audit log).
    pub automation: Option<String>,
    /// A scheduled export's query of the project's logs (see `btql::scheduled_query`): what
    /// it returns from the rows changed since `since` is exported, instead of the rows.
    pub query: Option<Value>,
}

/// What `export` wrote.
pub struct Exported {
    pub location: String,
    pub manifest: Manifest,
}

fn io_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(format!("{what}: {e}"))
}

/// Ids become path segments: they must not be able to name anything else.
fn path_safe(id: &str) -> Result<&str> {
    if !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(id)
    } else {
        Err(ServiceError::Internal(format!(
            "id {id:?} cannot be part of an export path"
        )))
    }
}

fn key_context(id: &str) -> String {
    format!("holdfast-export:{id}")
}

fn label(id: &str, path: &str) -> Vec<u8> {
    format!("{id}\0{path}").into_bytes()
}

/// One file of the export being filled.
struct Part {
    /// Path, contents and owner; the rest is filled in when the file is done.
    entry: FileEntry,
    sink: Sink,
    plain: usize,
    /// A Parquet file's rows, written to `sink` when the file is done.
    table: Option<Table>,
}

enum Sink {
    Plain(Vec<u8>),
    Sealed(Sealer<Vec<u8>>),
}

/// Writes the files of one export to its location and lists them for the manifest.
struct Writer {
    id: String,
    key: Option<DataKey>,
    target: Target,
    files: Vec<FileEntry>,
}

/// What a rows file holds: (object type, object id, project id).
type Owner<'a> = (ObjectType, &'a str, &'a str);

enum Target {
    /// The hidden folder the export is written to before it is renamed.
    Dir { partial: PathBuf },
    S3 {
        s3: std::sync::Arc<S3>,
        written: Vec<String>,
    },
}

/// The rows files of one object (or of a query's result), numbered from 1, each closed once
/// it holds `part_bytes` of text.
struct RowsFiles<'a> {
    dir: &'a str,
    format: Format,
    owner: Owner<'a>,
    part_bytes: usize,
    n: usize,
    current: Option<Part>,
}

impl<'a> RowsFiles<'a> {
    fn new(dir: &'a str, format: Format, owner: Owner<'a>, part_bytes: usize) -> Self {
        Self {
            dir,
            format,
            owner,
            part_bytes,
            n: 0,
            current: None,
        }
    }

    async fn line(&mut self, w: &mut Writer, v: Value) -> Result<()> {
        let part = match self.current.as_mut() {
            Some(p) => p,
            None => {
                self.n += 1;
                self.current
                    .insert(w.rows_part(self.dir, self.n, self.format, self.owner)?)
            }
        };
        part.line(v)?;
        if part.plain >= self.part_bytes
            && let Some(full) = self.current.take()
        {
            w.finish(full).await?;
        }
        Ok(())
    }

    async fn finish(mut self, w: &mut Writer) -> Result<()> {
        if let Some(last) = self.current.take() {
            w.finish(last).await?;
        }
        Ok(())
    }
}

impl Writer {
    /// A rows file of the object `owner`, numbered `n`, in the export's format.
    fn rows_part(&self, dir: &str, n: usize, format: Format, owner: Owner<'_>) -> Result<Part> {
        let mut part = self.part(
            format!("{dir}/{n:05}.{}", format.as_str()),
            "rows",
            Some(owner),
        )?;
        if format == Format::Parquet {
            part.table = Some(Table::new());
        }
        Ok(part)
    }

    fn part(&self, path: String, contents: &str, owner: Option<Owner<'_>>) -> Result<Part> {
        let (path, sink) = match &self.key {
            Some(key) => {
                let path = format!("{path}.enc");
                let sealer = Sealer::new(key, &label(&self.id, &path), Vec::new())
                    .map_err(|e| io_err("sealing an export file", e))?;
                (path, Sink::Sealed(sealer))
            }
            None => (path, Sink::Plain(Vec::new())),
        };
        Ok(Part {
            entry: FileEntry {
                path,
                contents: contents.to_owned(),
                records: 0,
                bytes: 0,
                sha256: String::new(),
                object_type: owner.map(|o| o.0.as_str().to_owned()),
                object_id: owner.map(|o| o.1.to_owned()),
                project_id: owner.map(|o| o.2.to_owned()),
            },
            sink,
            plain: 0,
            table: None,
        })
    }

    async fn finish(&mut self, mut part: Part) -> Result<()> {
        if let Some(table) = part.table.take() {
            let file = tokio::task::spawn_blocking(move || table.encode())
                .await
                .map_err(|e| io_err("writing a Parquet file", e))??;
            part.write(&file)?;
        }
        let bytes = match part.sink {
            Sink::Plain(b) => b,
            Sink::Sealed(s) => s
                .finish()
                .map_err(|e| io_err("sealing an export file", e))?,
        };
        let mut entry = part.entry;
        entry.bytes = bytes.len() as u64;
        entry.sha256 = random::hex(&sha2::Sha256::digest(&bytes));
        self.put(&entry.path, bytes).await?;
        self.files.push(entry);
        Ok(())
    }

    async fn put(&mut self, path: &str, bytes: Vec<u8>) -> Result<()> {
        match &mut self.target {
            Target::Dir { partial } => {
                let file = partial.join(path);
                tokio::task::spawn_blocking(move || write_new(&file, &bytes))
                    .await
                    .map_err(|e| io_err("writing the export", e))?
            }
            Target::S3 { s3, written } => {
                let name = format!("exports/{}/{path}", self.id);
                s3.put(&name, bytes).await?;
                written.push(name);
                Ok(())
            }
        }
    }
}

impl Part {
    fn line(&mut self, v: Value) -> Result<()> {
        self.entry.records += 1;
        if let Some(table) = &mut self.table {
            self.plain += table.push(v)?;
            return Ok(());
        }
        let mut text = serde_json::to_vec(&v).map_err(|e| io_err("encoding a row", e))?;
        text.push(b'\n');
        self.write(&text)?;
        self.plain += text.len();
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.sink {
            Sink::Plain(b) => b.extend_from_slice(bytes),
            Sink::Sealed(s) => s
                .write_all(bytes)
                .map_err(|e| io_err("sealing an export file", e))?,
        }
        Ok(())
    }
}

/// Creates `path` (and its folders, mode 0700) with `bytes`, mode 0600, synced.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| io_err(parent.display(), e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path.display(), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(path.display(), e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir.display(), e))
}

/// `dir` and every folder under it.
fn all_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    out.push(dir.to_path_buf());
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir.display(), e))? {
        let p = e.map_err(|e| io_err(dir.display(), e))?.path();
        if p.is_dir() {
            all_dirs(&p, out)?;
        }
    }
    Ok(())
}

impl Services {
    /// Writes an export of an organization or one of its projects; see the module's
    /// guarantees. The operator's command: it reads as no user, and says so in the audit log.
    pub async fn export(&self, req: &ExportRequest, to: Location) -> Result<Exported> {
        if req.part_bytes == 0 {
            return Err(ServiceError::bad("the part size must be at least one byte"));
        }
        let why = SystemPass::new("operator exports an organization");
        let org_id = match &req.org_id {
            Some(id) => id.clone(),
            None => self.org_id_by_name(&req.org_name).await?,
        };
        let org = system_org_lookup(&why, &org_id);
        let projects = match &req.project {
            Some(p) => vec![match self.store.find_project(&org, p).await? {
                Some(found) => found,
                None => self.store.get_project(&org, p).await.map_err(|_| {
                    ServiceError::NotFound(format!("project {p:?} in {}", req.org_name))
                })?,
            }],
            None => self.all_projects(&org).await?,
        };
        let now = self.clock.now();
        let stamp = now.to_offset(time::UtcOffset::UTC);
        let id = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
            stamp.year(),
            u8::from(stamp.month()),
            stamp.day(),
            stamp.hour(),
            stamp.minute(),
            stamp.second(),
            random::hex(&random::bytes::<6>()?)
        );
        let location = to.describe(&id);
        let project_id = req
            .project
            .as_ref()
            .and_then(|_| projects.first())
            .map(|p| p.id.clone());
        let as_of = match req.as_of {
            Some(x) => Some(x),
            None => self.store.readable_xact().await?,
        };
        self.audit
            .record_durable(NewAuditEntry {
                at: self.now(),
                org_id: Some(org_id.clone()),
                actor_id: None,
                key_id: None,
                action: "export".into(),
                object_type: req.project.as_ref().map(|_| "project".into()),
                object_id: project_id.clone(),
                detail: json!({"by": if req.automation.is_some() { "automation" } else { "operator" },
                               "automation_id": req.automation,
                               "export_id": id, "to": location,
                               "encrypted": req.encrypt, "format": req.format.as_str(),
                               "since_xact": req.since.map(|x| x.to_string()),
                               "as_of_xact": as_of.map(|x| x.to_string())}),
            })
            .await?;
        let (key, encryption) = if req.encrypt {
            let key = DataKey::generate().map_err(|e| io_err("making the export key", e))?;
            let wrapped = self
                .vault
                .kms()
                .wrap(&key, &key_context(&id))
                .await
                .map_err(|e| io_err("wrapping the export key", e))?;
            let meta = Encryption {
                scheme: SCHEME.into(),
                kek_id: wrapped.kek_id,
                wrapped_key: B64.encode(&wrapped.blob),
                key_context: key_context(&id),
            };
            (Some(key), Some(meta))
        } else {
            (None, None)
        };
        let target = match to {
            Location::Dir(dir) => Target::Dir {
                partial: dir.join(format!(".{id}.partial")),
            },
            Location::S3(s3) => Target::S3 {
                s3,
                written: Vec::new(),
            },
        };
        let mut w = Writer {
            id: id.clone(),
            key,
            target,
            files: Vec::new(),
        };
        let done = async {
            let totals = self
                .write_export(&mut w, &why, &org_id, &projects, as_of, req)
                .await?;
            let mut manifest = Manifest {
                format: FORMAT.into(),
                version: VERSION,
                id: id.clone(),
                created: self.now(),
                org_id: org_id.clone(),
                project_id,
                as_of_xact: as_of.map(|x| x.to_string()),
                encryption,
                totals,
                files: std::mem::take(&mut w.files),
                authentication: None,
            };
            let fresh;
            let manifest_key = match &w.key {
                Some(k) => k,
                None => {
                    fresh =
                        DataKey::generate().map_err(|e| io_err("making the manifest key", e))?;
                    &fresh
                }
            };
            crate::manifest_auth::sign(
                self.vault.kms(),
                manifest_key,
                &key_context(&id),
                &mut manifest,
            )
            .await?;
            let text = serde_json::to_vec_pretty(&manifest).map_err(|e| io_err("manifest", e))?;
            w.put("manifest.json", text).await?;
            if let Target::Dir { partial } = &w.target {
                let partial = partial.clone();
                let done = partial.with_file_name(&id);
                tokio::task::spawn_blocking(move || -> Result<()> {
                    let mut dirs = Vec::new();
                    all_dirs(&partial, &mut dirs)?;
                    for d in dirs.iter().rev() {
                        sync_dir(d)?;
                    }
                    std::fs::rename(&partial, &done).map_err(|e| io_err(done.display(), e))?;
                    done.parent().map_or(Ok(()), sync_dir)
                })
                .await
                .map_err(|e| io_err("finishing the export", e))??;
            }
            Ok::<_, ServiceError>(manifest)
        }
        .await;
        match done {
            Ok(manifest) => Ok(Exported { location, manifest }),
            Err(e) => {
                w.discard().await;
                Err(e)
            }
        }
    }

    async fn all_projects(
        &self,
        org: &holdfast_core::authz::OrgPass,
    ) -> Result<Vec<ProjectRecord>> {
        let mut out: Vec<ProjectRecord> = Vec::new();
        loop {
            let after = out.last().map(|p| p.id.clone());
            let page = self
                .store
                .list_projects(org, &Reach::all(), None, after.as_deref(), LIST_PAGE)
                .await?;
            let done = (page.len() as i64) < LIST_PAGE;
            out.extend(page);
            if done {
                out.reverse();
                return Ok(out);
            }
        }
    }

    async fn write_export(
        &self,
        w: &mut Writer,
        why: &SystemPass,
        org_id: &str,
        projects: &[ProjectRecord],
        as_of: Option<holdfast_core::xact::XactId>,
        req: &ExportRequest,
    ) -> Result<Totals> {
        let org = system_org_lookup(why, org_id);
        if !req.logs_only {
            let mut part = w.part("projects.jsonl".into(), "projects", None)?;
            for p in projects {
                part.line(to_json(&project_json(p))?)?;
            }
            w.finish(part).await?;
        }
        // Every object with rows: experiments, datasets and prompts, then each project's logs.
        let mut objects = Vec::new();
        for p in projects.iter().filter(|_| !req.logs_only) {
            for kind in [
                ObjectType::Experiment,
                ObjectType::Dataset,
                ObjectType::Prompt,
            ] {
                let mut listed: Vec<holdfast_store::ObjectRecord> = Vec::new();
                loop {
                    let after = listed.last().map(|o| o.id.clone());
                    let page = self
                        .store
                        .list_objects(
                            &org,
                            &Reach::all(),
                            kind,
                            Some(&p.id),
                            None,
                            after.as_deref(),
                            LIST_PAGE,
                        )
                        .await?;
                    let done = (page.len() as i64) < LIST_PAGE;
                    listed.extend(page);
                    if done {
                        break;
                    }
                }
                listed.reverse();
                objects.extend(listed);
            }
        }
        if !req.logs_only {
            let mut part = w.part("objects.jsonl".into(), "objects", None)?;
            for o in &objects {
                let mut v = to_json(&object_json(o))?;
                if let Some(m) = v.as_object_mut() {
                    m.insert("object_type".into(), json!(o.kind.as_str()));
                }
                part.line(v)?;
            }
            w.finish(part).await?;
        }
        if let (Some(query), Some(project), Some(as_of)) = (&req.query, projects.first(), as_of) {
            let rows = self
                .write_query(w, why, org_id, &project.id, query, as_of, req)
                .await?;
            return Ok(Totals {
                projects: 1,
                objects: 0,
                rows,
            });
        }
        let targets = objects
            .iter()
            .map(|o| (o.project_id.as_str(), o.kind, o.id.as_str()))
            .chain(
                projects
                    .iter()
                    .map(|p| (p.id.as_str(), ObjectType::ProjectLogs, p.id.as_str())),
            );
        let mut rows = 0u64;
        for (project_id, kind, object_id) in targets {
            let Some(as_of) = as_of else { break };
            let pass = system_read_pass(why, org_id, project_id, kind, object_id);
            let dir = format!("rows/{}/{}", kind.as_str(), path_safe(object_id)?);
            let mut files = RowsFiles::new(
                &dir,
                req.format,
                (kind, object_id, project_id),
                req.part_bytes,
            );
            let mut q = RowQuery {
                as_of: Some(as_of),
                limit: PAGE,
                ..RowQuery::default()
            };
            // Since a transaction: the rows changed since, when the store can list them.
            let mut changed = match req.since {
                Some(since) => self
                    .store
                    .rows_changed_since(&pass, since)
                    .await?
                    .map(std::collections::VecDeque::from),
                None => None,
            };
            loop {
                let page = match changed.as_mut() {
                    Some(ids) => {
                        let n = ids.len().min(PAGE as usize);
                        let chunk: Vec<String> = ids.drain(..n).collect();
                        if chunk.is_empty() {
                            break;
                        }
                        self.store.read_row_ids(&pass, &chunk, Some(as_of)).await?
                    }
                    None => self.store.read_rows(&pass, &q).await?,
                };
                let done = match &changed {
                    Some(ids) => ids.is_empty(),
                    None => (page.len() as i64) < PAGE,
                };
                q.after_row_id = page.last().map(|r| r.row_id.clone());
                for row in page {
                    if req.since.is_some_and(|s| row.xact_id <= s) {
                        continue;
                    }
                    files.line(w, row_json(row, kind)).await?;
                    rows += 1;
                }
                if done {
                    break;
                }
            }
            // Since a transaction: the rows deleted since (by a write or a retention policy),
            // one record each after the rows, so that a copy kept up to date by these exports
            // can remove them too. A deletion is known until the purge removes it, after the
            // grace period.
            if let Some(since) = req.since {
                let mut from: Option<(i64, String)> = None;
                loop {
                    let page = self
                        .store
                        .row_deletions_between(
                            &pass,
                            since.as_i64(),
                            as_of.as_i64(),
                            from.as_ref().map(|(x, r)| (*x, r.as_str())),
                            PAGE,
                        )
                        .await?;
                    let done = (page.len() as i64) < PAGE;
                    from = page.last().map(|(r, x)| (*x, r.clone()));
                    for (row_id, xact) in page {
                        let xact = holdfast_core::xact::XactId::from_i64(xact)
                            .map(|x| x.to_string())
                            .unwrap_or_default();
                        let line = json!({"id": row_id, "_xact_id": xact, "_object_delete": true});
                        files.line(w, line).await?;
                        rows += 1;
                    }
                    if done {
                        break;
                    }
                }
            }
            files.finish(w).await?;
        }
        Ok(Totals {
            projects: projects.len() as u64,
            objects: objects.len() as u64,
            rows,
        })
    }
}

impl Services {
    /// Writes what a scheduled export's query returns from the project's log rows changed
    /// after `req.since` (as of `as_of`) into `query/` files; returns how many records.
    #[allow(clippy::too_many_arguments)]
    async fn write_query(
        &self,
        w: &mut Writer,
        why: &SystemPass,
        org_id: &str,
        project_id: &str,
        query: &Value,
        as_of: holdfast_core::xact::XactId,
        req: &ExportRequest,
    ) -> Result<u64> {
        let pass = system_read_pass(why, org_id, project_id, ObjectType::ProjectLogs, project_id);
        let owner = (ObjectType::ProjectLogs, project_id, project_id);
        let mut records = 0u64;
        let mut files = RowsFiles::new("query", req.format, owner, req.part_bytes);
        let mut cursor = None;
        loop {
            let (page, next) = self
                .scheduled_query_page(&pass, query, req.since, as_of, cursor)
                .await?;
            for v in page {
                files.line(w, v).await?;
                records += 1;
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        files.finish(w).await?;
        Ok(records)
    }
}

impl Writer {
    /// Removes what a failed export wrote (best effort; a leftover has no manifest).
    async fn discard(&mut self) {
        match &mut self.target {
            Target::Dir { partial } => {
                let _ = tokio::fs::remove_dir_all(&partial).await;
            }
            Target::S3 { s3, written } => {
                for name in written.drain(..) {
                    let _ = s3.delete(&name).await;
                }
            }
        }
    }
}

/// Reads an export's file (or its manifest) from a location.
async fn read_file(from: &Location, id: &str, path: &str) -> Result<Vec<u8>> {
    match from {
        Location::Dir(dir) => {
            let file = dir.join(id).join(path);
            tokio::fs::read(&file)
                .await
                .map_err(|e| ServiceError::bad(format!("{}: {e}", file.display())))
        }
        Location::S3(s3) => s3
            .get(&format!("exports/{id}/{path}"))
            .await?
            .ok_or_else(|| ServiceError::bad(format!("{path} is missing from the bucket"))),
    }
}

fn parse_manifest(bytes: &[u8], id: &str) -> Result<Manifest> {
    let m: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| ServiceError::bad(format!("manifest.json of {id}: {e}")))?;
    if m.format != FORMAT || m.version != VERSION || m.id != id {
        return Err(ServiceError::bad(format!(
            "manifest.json is not a {FORMAT} version {VERSION} manifest for export {id}"
        )));
    }
    Ok(m)
}

/// Unwraps an export's key with the KMS; `None` for a plaintext export.
async fn export_key(kms: &AnyKms, m: &Manifest) -> Result<Option<DataKey>> {
    let Some(e) = &m.encryption else {
        return Ok(None);
    };
    let wrapped = Wrapped {
        kek_id: e.kek_id.clone(),
        blob: B64
            .decode(&e.wrapped_key)
            .map_err(|_| ServiceError::bad("manifest.json: the wrapped key is not base64"))?,
    };
    let key = kms
        .unwrap(&wrapped, &key_context(&m.id))
        .await
        .map_err(|err| {
            ServiceError::bad(format!(
                "the export key does not unwrap with this KMS (it was wrapped by {}): {err}",
                e.kek_id
            ))
        })?;
    Ok(Some(key))
}

/// The authenticated manifest of a sealed export in `dir`.
pub async fn verified_manifest(kms: &AnyKms, dir: &Path, id: &str) -> Result<Manifest> {
    path_safe(id).map_err(|_| ServiceError::bad(format!("{id:?} is not an export id")))?;
    let from = Location::Dir(dir.to_path_buf());
    let manifest = parse_manifest(&read_file(&from, id, "manifest.json").await?, id)?;
    crate::manifest_auth::verify(kms, &manifest, &key_context(id), false).await?;
    Ok(manifest)
}

/// One file of a sealed export in `dir`, opened a segment at a time into the returned
/// channel (memory stays one segment however large the file), with its content type. Each
/// segment is authenticated as it is opened; an altered file ends the stream with an error.
pub async fn stream_file(
    kms: &AnyKms,
    dir: &Path,
    id: &str,
    path: &str,
) -> Result<(
    &'static str,
    tokio::sync::mpsc::Receiver<std::result::Result<Vec<u8>, String>>,
)> {
    let manifest = verified_manifest(kms, dir, id).await?;
    let entry = manifest
        .files
        .iter()
        .find(|f| f.path == path && inside(path))
        .ok_or_else(|| ServiceError::NotFound("export file".into()))?;
    let key = export_key(kms, &manifest)
        .await?
        .ok_or_else(|| ServiceError::bad("a plaintext export is not served for download"))?;
    let content_type = if entry.path.ends_with(".parquet.enc") {
        "application/vnd.apache.parquet"
    } else {
        "application/x-ndjson"
    };
    let file =
        std::fs::File::open(dir.join(id).join(&entry.path)).map_err(|e| io_err(&entry.path, e))?;
    let label = label(id, &entry.path);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut out = crate::blobs::ChannelWriter(tx.clone());
        let reader = std::io::BufReader::with_capacity(1 << 16, file);
        if holdfast_crypto::stream::open_to(&key, &label, reader, &mut out).is_err() {
            let _ = tx.blocking_send(Err("the export file does not open (altered?)".into()));
        }
    });
    Ok((content_type, rx))
}

/// A manifest path is relative and stays inside the export.
fn inside(path: &str) -> bool {
    !path.starts_with('/')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// Opens an export into plain JSON Lines: checks every file's size and digest against the
/// manifest, opens sealed files with the export's key (unwrapped by the KMS), checks each
/// file's record count, and writes the files and a manifest without encryption to `to`, a
/// folder that must not exist yet (it is written hidden, then renamed). Returns the new
/// manifest.
///
/// The manifest is authenticated first (see `manifest_auth`); one without authentication is
/// refused unless `allow_unauthenticated`.
pub async fn open_export(
    kms: &AnyKms,
    from: &Location,
    id: &str,
    to: &Path,
    allow_unauthenticated: bool,
) -> Result<Manifest> {
    path_safe(id).map_err(|_| ServiceError::bad(format!("{id:?} is not an export id")))?;
    if to.exists() {
        return Err(ServiceError::bad(format!(
            "{} already exists; name a new folder",
            to.display()
        )));
    }
    let manifest = parse_manifest(&read_file(from, id, "manifest.json").await?, id)?;
    crate::manifest_auth::verify(kms, &manifest, &key_context(id), allow_unauthenticated).await?;
    let key = export_key(kms, &manifest).await?;
    let partial = to.with_file_name(format!(
        ".{}.partial",
        to.file_name().and_then(|n| n.to_str()).unwrap_or("export")
    ));
    let _ = tokio::fs::remove_dir_all(&partial).await;
    let mut opened = Vec::new();
    let result: Result<Manifest> = async {
        for f in &manifest.files {
            let path = f.path.as_str();
            if !inside(path) {
                return Err(ServiceError::bad(format!(
                    "manifest.json: bad path {path:?}"
                )));
            }
            let bytes = read_file(from, id, path).await?;
            if f.bytes != bytes.len() as u64
                || f.sha256 != random::hex(&sha2::Sha256::digest(&bytes))
            {
                return Err(ServiceError::bad(format!(
                    "{path}: size or SHA-256 differs from the manifest (altered or incomplete)"
                )));
            }
            let (plain_path, plain) = match (&key, path.strip_suffix(".enc")) {
                (Some(key), Some(plain_path)) => {
                    let mut out = Vec::new();
                    holdfast_crypto::stream::open_to(
                        key,
                        &label(id, path),
                        bytes.as_slice(),
                        &mut out,
                    )
                    .map_err(|_| {
                        ServiceError::bad(format!(
                            "{path}: does not decrypt (altered, or not from this export)"
                        ))
                    })?;
                    (plain_path.to_owned(), out)
                }
                (None, None) => (path.to_owned(), bytes),
                _ => {
                    return Err(ServiceError::bad(format!(
                        "{path}: its name does not match the manifest's encryption"
                    )));
                }
            };
            // Shared, not copied, with the Parquet reader.
            let plain = bytes::Bytes::from(plain);
            let lines = if plain_path.ends_with(".parquet") {
                parquet_rows::rows_in(plain.clone())?
            } else {
                plain.iter().filter(|b| **b == b'\n').count() as u64
            };
            if f.records != lines {
                return Err(ServiceError::bad(format!(
                    "{path}: {lines} records, the manifest says {}",
                    f.records
                )));
            }
            let mut entry = f.clone();
            entry.bytes = plain.len() as u64;
            entry.sha256 = random::hex(&sha2::Sha256::digest(&plain));
            entry.path = plain_path;
            let file = partial.join(&entry.path);
            tokio::task::spawn_blocking(move || write_new(&file, &plain))
                .await
                .map_err(|e| io_err("writing the opened export", e))??;
            opened.push(entry);
        }
        let plain_manifest = Manifest {
            encryption: None,
            files: opened,
            authentication: None,
            ..manifest.clone()
        };
        let text = serde_json::to_vec_pretty(&plain_manifest).map_err(|e| io_err("manifest", e))?;
        let file = partial.join("manifest.json");
        let (partial, to) = (partial.clone(), to.to_path_buf());
        tokio::task::spawn_blocking(move || -> Result<()> {
            write_new(&file, &text)?;
            std::fs::rename(&partial, &to).map_err(|e| io_err(to.display(), e))
        })
        .await
        .map_err(|e| io_err("writing the opened export", e))??;
        Ok(plain_manifest)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_dir_all(&partial).await;
    }
    result
}

/// The manifests of the exports in a folder (hidden, unfinished ones are skipped).
fn local_manifests(dir: &Path) -> Result<Vec<(PathBuf, Manifest)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir.display(), e)),
    };
    for e in entries {
        let e = e.map_err(|e| io_err(dir.display(), e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path().join("manifest.json");
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| io_err(path.display(), e))?;
        out.push((path, parse_manifest(&bytes, &name)?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The exports in a folder whose key `kek_id` wraps.
pub fn exports_wrapped_by(dir: &Path, kek_id: &str) -> Result<Vec<String>> {
    Ok(local_manifests(dir)?
        .into_iter()
        .filter(|(_, m)| {
            m.encryption.as_ref().is_some_and(|e| e.kek_id == kek_id)
                || m.authentication
                    .as_ref()
                    .is_some_and(|a| a.kek_id == kek_id)
        })
        .map(|(_, m)| m.id)
        .collect())
}

/// Re-wraps the key of every export in a folder under the KMS's current KEK (after a KEK
/// rotation); each manifest is replaced atomically. Returns how many were re-wrapped.
pub async fn rewrap_exports(kms: &AnyKms, dir: &Path) -> Result<usize> {
    let current = kms
        .current_kek()
        .map_err(|e| io_err("the current key-encryption key", e))?;
    let mut n = 0;
    for (path, mut m) in local_manifests(dir)? {
        let stale_file_key = m.encryption.as_ref().is_some_and(|e| e.kek_id != current);
        let stale_manifest_key = m
            .authentication
            .as_ref()
            .is_some_and(|a| a.kek_id != current);
        if !stale_file_key && !stale_manifest_key {
            continue;
        }
        if let Some(key) = export_key(kms, &m).await?.filter(|_| stale_file_key) {
            let wrapped = kms
                .wrap(&key, &key_context(&m.id))
                .await
                .map_err(|e| io_err("wrapping an export key", e))?;
            if let Some(e) = m.encryption.as_mut() {
                e.kek_id = wrapped.kek_id;
                e.wrapped_key = B64.encode(&wrapped.blob);
            }
        }
        if let Some(key) = crate::manifest_auth::key(kms, &m)
            .await?
            .filter(|_| stale_manifest_key)
        {
            let context = key_context(&m.id);
            let wrapped = kms
                .wrap(&key, &context)
                .await
                .map_err(|e| io_err("wrapping a manifest key", e))?;
            if let Some(a) = m.authentication.as_mut() {
                a.kek_id = wrapped.kek_id;
                a.wrapped_key = B64.encode(&wrapped.blob);
            }
        }
        let text = serde_json::to_vec_pretty(&m).map_err(|e| io_err("manifest", e))?;
        holdfast_crypto::local::write_private(&path, &text)
            .map_err(|e| io_err(path.display(), e))?;
        n += 1;
    }
    Ok(n)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| ServiceError::Internal(e.to_string()))
}

/// Removes what exports that crashed left in `dir`: `.<id>.partial/` folders none of whose
/// files changed for `idle` (an export at work writes to its current file all the time).
/// Returns how many were removed. A failed export removes its own; only a killed process
/// leaves one.
pub fn remove_orphaned_partials(dir: &Path, idle: std::time::Duration) -> std::io::Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with('.') && name.ends_with(".partial") && e.file_type()?.is_dir()) {
            continue;
        }
        let newest = newest_change(&e.path())?;
        let quiet = newest.elapsed().is_ok_and(|since| since >= idle);
        if quiet {
            std::fs::remove_dir_all(e.path())?;
            tracing::info!(folder = %name, "removed the partial export of an export that stopped");
            removed += 1;
        }
    }
    Ok(removed)
}

/// The latest modification time of a folder or anything under it.
fn newest_change(dir: &Path) -> std::io::Result<std::time::SystemTime> {
    let mut newest = std::fs::metadata(dir)?.modified()?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = if e.file_type()?.is_dir() {
            newest_change(&e.path())?
        } else {
            e.metadata()?.modified()?
        };
        newest = newest.max(m);
    }
    Ok(newest)
}
