//! Exports through the API: `POST /v1/export` starts one in the background (one at a time
//! per organization), `GET /v1/export/{id}` says how it goes and, once done, gives a download
//! link per file, signed for `upload_ttl_seconds`. Starting one takes `create` on
//! `org_export` (Owners; grantable on the organization with `restrict_object_type:
//! "org_export"`), reading them `read` on it. Files stay sealed in the exports folder; a
//! download opens its file a segment at a time. Every download is in the audit log.

use crate::export::{ExportRequest, Format, Location};
use crate::{Result, ServiceError, Services};
use holdfast_api::objects::{ExportFormat, ExportJob, ExportJobFile, StartExport};
use holdfast_core::authz::{Kind, Permission, Principal, SystemPass};
use holdfast_core::clock::format_timestamp;
use holdfast_store::{ApiExportRecord, NewAuditEntry};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;

fn why() -> SystemPass {
    SystemPass::new("running an export started through the API")
}

/// What a download link allows: one file of one export, until `expires`.
#[derive(Serialize, Deserialize)]
struct Link {
    org_id: String,
    export_id: String,
    path: String,
    expires: i64,
}

impl Services {
    fn sign_link(&self, link: &Link) -> Result<String> {
        crate::blobs::sign_token(self.keys.derive("export downloads")?.expose_secret(), link)
    }

    fn verify_link(&self, token: &str) -> Result<Link> {
        let invalid = || ServiceError::Forbidden("invalid or expired download link".into());
        let key = self.keys.derive("export downloads")?;
        let link: Link =
            crate::blobs::open_token(key.expose_secret(), token)?.ok_or_else(invalid)?;
        if link.expires <= self.clock.now().unix_timestamp() {
            return Err(invalid());
        }
        Ok(link)
    }

    /// `POST /v1/export`.
    pub async fn start_api_export(
        &self,
        principal: &Principal,
        body: &StartExport,
    ) -> Result<ExportJob> {
        let pass = self
            .org_grant(principal, Permission::Create, Kind::OrgExport)
            .await?;
        if let Some(p) = &body.project_id {
            self.project_pass(principal, p, Permission::Read, Kind::Project)
                .await?;
        }
        let format = match body.format.unwrap_or(ExportFormat::Jsonl) {
            ExportFormat::Jsonl => Format::JsonLines,
            ExportFormat::Parquet => Format::Parquet,
        };
        let rec = ApiExportRecord {
            id: crate::random::uuid()?,
            org_id: principal.org_id.clone(),
            project_id: body.project_id.clone(),
            user_id: Some(principal.user_id.clone()).filter(|u| !u.is_empty()),
            format: format.as_str().into(),
            status: "running".into(),
            created: self.now(),
            finished: None,
            export_id: None,
            rows: None,
            error: None,
        };
        let stale = format_timestamp(self.clock.now() - time::Duration::hours(24));
        self.store.insert_api_export(&pass, &rec, &stale).await?;
        principal
            .trail
            .change(json!({"started": "export", "id": rec.id, "project_id": rec.project_id}));
        let services = self.clone();
        let job = rec.clone();
        tokio::spawn(async move { services.run_api_export(job, format).await });
        Ok(job_json(&rec))
    }

    async fn run_api_export(&self, mut rec: ApiExportRecord, format: Format) {
        let req = ExportRequest {
            org_id: Some(rec.org_id.clone()),
            project: rec.project_id.clone(),
            encrypt: true,
            part_bytes: 64 * 1024 * 1024,
            format,
            ..Default::default()
        };
        let done = self
            .export(&req, Location::Dir(self.exports.dir.clone()))
            .await;
        rec.finished = Some(self.now());
        match done {
            Ok(d) => {
                rec.status = "done".into();
                rec.export_id = Some(d.manifest.id);
                rec.rows = i64::try_from(d.manifest.totals.rows).ok();
            }
            Err(e) => {
                tracing::warn!(export = %rec.id, error = %e, "an export started through the API failed");
                rec.status = "failed".into();
                rec.error = Some(e.to_string());
            }
        }
        if let Err(e) = self.store.finish_api_export(&why(), &rec).await {
            tracing::error!(export = %rec.id, error = %e, "recording the end of an export");
        }
    }

    /// At the embedded store's start: exports left `running` by the stopped server failed.
    /// (Replicas sharing PostgreSQL leave them: another replica may be running them; one
    /// running for a day no longer holds its organization's turn.)
    pub async fn fail_interrupted_exports(&self) -> Result<u64> {
        Ok(self
            .store
            .fail_running_api_exports(&why(), &self.now())
            .await?)
    }

    /// `GET /v1/export/{id}`: its state, and when done a signed link per file.
    pub async fn api_export(
        &self,
        principal: &Principal,
        id: &str,
        base_url: &str,
    ) -> Result<ExportJob> {
        let pass = self
            .org_grant(principal, Permission::Read, Kind::OrgExport)
            .await?;
        let rec = self.store.get_api_export(&pass, id).await?;
        let mut job = job_json(&rec);
        if let (Some(export_id), "done") = (&rec.export_id, rec.status.as_str()) {
            if !self
                .exports
                .dir
                .join(export_id)
                .join("manifest.json")
                .exists()
            {
                return Err(ServiceError::Conflict(
                    "this export's files are not in this server's exports folder (another \
                     replica made it, or they were removed): ask the replica that made it, or \
                     start a new export"
                        .into(),
                ));
            }
            let manifest =
                crate::export::verified_manifest(self.vault.kms(), &self.exports.dir, export_id)
                    .await?;
            let expires = self.clock.now().unix_timestamp() + self.limits.upload_ttl_seconds;
            for f in manifest.files {
                let token = self.sign_link(&Link {
                    org_id: rec.org_id.clone(),
                    export_id: export_id.clone(),
                    path: f.path.clone(),
                    expires,
                })?;
                job.files.push(ExportJobFile {
                    path: f.path.strip_suffix(".enc").unwrap_or(&f.path).to_owned(),
                    contents: f.contents,
                    records: f.records,
                    url: format!("{base_url}/v1/export/download/{token}"),
                });
            }
            job.links_expire = time::OffsetDateTime::from_unix_timestamp(expires)
                .ok()
                .map(format_timestamp);
        }
        Ok(job)
    }

    /// `GET /v1/export`.
    pub async fn api_exports(&self, principal: &Principal, limit: i64) -> Result<Vec<ExportJob>> {
        let pass = self
            .org_grant(principal, Permission::Read, Kind::OrgExport)
            .await?;
        Ok(self
            .store
            .list_api_exports(&pass, limit)
            .await?
            .iter()
            .map(job_json)
            .collect())
    }

    /// `GET /v1/export/download/{token}`: the file a valid link names, opened.
    pub async fn download_export_file(
        &self,
        token: &str,
        from: Option<&str>,
    ) -> Result<(
        &'static str,
        tokio::sync::mpsc::Receiver<std::result::Result<Vec<u8>, String>>,
    )> {
        let link = self.verify_link(token)?;
        let opened = crate::export::stream_file(
            self.vault.kms(),
            &self.exports.dir,
            &link.export_id,
            &link.path,
        )
        .await?;
        // Durable before a byte is sent: a download is the largest read there is, and its
        // entry must not be lost to a crash that follows it.
        self.audit
            .record_durable(NewAuditEntry {
                at: self.now(),
                org_id: Some(link.org_id.clone()),
                actor_id: None,
                key_id: None,
                action: "export_download".into(),
                object_type: None,
                object_id: None,
                detail: json!({"export_id": link.export_id, "path": link.path, "from": from}),
            })
            .await?;
        Ok(opened)
    }
}

fn job_json(rec: &ApiExportRecord) -> ExportJob {
    ExportJob {
        id: rec.id.clone(),
        status: rec.status.clone(),
        created: rec.created.clone(),
        finished: rec.finished.clone(),
        project_id: rec.project_id.clone(),
        format: rec.format.clone(),
        rows: rec.rows,
        error: rec.error.clone(),
        files: Vec::new(),
        links_expire: None,
    }
}
