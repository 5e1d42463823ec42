//! Scheduled exports: project automations of `event_type: "btql_export"`.
//!
//! Each purge run (after the retention policies) looks at every scheduled export. One is due
//! when it has never run, when `interval_seconds` have passed since its last run started, or
//! when a run was asked for (`POST /v1/project_automation/{id}/run`). A run exports the
//! project's log rows whose newest version is in (`from_xact`, `to_xact`]: `from_xact` is
//! where the last finished run stopped (or the start of a failed one, whose rows are then
//! exported by the next), `to_xact` the newest transaction when it starts. The range is
//! recorded before the export starts, so a run that a stop interrupted is done again over
//! the same range by the next purge run: nothing is missed, and nothing is exported twice
//! by runs that finished. A `btql_query` export writes what its query returns from those
//! rows instead of the rows (see `btql::scheduled_query`). Each run is an export of its own
//! (see `export`), with the run's history in `automation_runs`. One replica runs a given
//! scheduled export at a time: a lease per automation, as long as the purge's and renewed
//! while the run goes on, so a run may take longer than the lease, and a replica that dies
//! mid-run leaves the run to another once the lease expires.

use crate::export::Format;
use crate::{Result, ServiceError, Services};
use holdfast_api::objects::{ExportFormat, ProjectAutomationConfig};
use holdfast_core::authz::SystemPass;
use holdfast_core::clock::{format_timestamp, parse_timestamp};
use holdfast_core::xact::XactId;
use holdfast_store::{AutomationRecord, RunRecord};

fn why() -> SystemPass {
    SystemPass::new("running scheduled exports")
}

impl Services {
    /// Runs every scheduled export that is due; returns how many runs finished.
    pub(crate) async fn run_scheduled_exports(&self, holder: &str) -> Result<u64> {
        let mut finished = 0;
        for (rec, requested) in self.store.export_automations(&why()).await? {
            let Ok(ProjectAutomationConfig::BtqlExport {
                export_definition,
                export_path,
                format,
                interval_seconds,
                encrypt,
                ..
            }) = serde_json::from_value::<ProjectAutomationConfig>(rec.config.clone())
            else {
                tracing::warn!(automation = %rec.id, "a scheduled export with a bad configuration");
                continue;
            };
            let Some(run) = self.due_run(&rec, requested, interval_seconds).await? else {
                continue;
            };
            let lease = format!("export:{}", rec.id);
            let ttl = self.limits.purge_lease;
            let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
            let now = self.clock.now().unix_timestamp();
            if !self.store.take_lease(&lease, holder, now, secs).await? {
                continue;
            }
            // The lease is renewed while the run goes on, however long it takes.
            let run = self.export_run(
                &rec,
                run,
                export_definition.btql_query.as_deref(),
                &export_path,
                format,
                encrypt.unwrap_or(true),
            );
            let outcome = self
                .store
                .holding_lease(&lease, holder, ttl, self.clock.clone(), run)
                .await;
            self.store.end_lease(&lease, holder).await?;
            // Another replica took the run over while this one stalled: it does the run.
            let Some(outcome) = outcome? else {
                continue;
            };
            if outcome? {
                finished += 1;
            }
        }
        Ok(finished)
    }

    /// The run to do now, if any: the one a stop interrupted, or a new one when due.
    async fn due_run(
        &self,
        rec: &AutomationRecord,
        requested: bool,
        interval_seconds: i64,
    ) -> Result<Option<RunRecord>> {
        let last = self.store.last_run(&why(), &rec.id).await?;
        let started = self.now();
        if let Some(r) = &last
            && r.status == "running"
        {
            return Ok(Some(RunRecord {
                started,
                ..r.clone()
            }));
        }
        let due = requested
            || last.as_ref().is_none_or(|r| {
                parse_timestamp(&r.started)
                    .is_none_or(|at| (self.clock.now() - at).whole_seconds() >= interval_seconds)
            });
        if !due {
            return Ok(None);
        }
        let to = self.store.readable_xact().await?.map_or(0, XactId::as_i64);
        let (run, from) = match &last {
            Some(r) if r.status == "done" => (r.run + 1, r.to_xact),
            Some(r) => (r.run + 1, r.from_xact),
            None => (1, 0),
        };
        Ok(Some(RunRecord {
            automation_id: rec.id.clone(),
            run,
            status: "running".into(),
            started,
            finished: None,
            from_xact: from,
            to_xact: to.max(from),
            rows: None,
            location: None,
            export_id: None,
            error: None,
        }))
    }

    /// Does one run; true when it finished.
    async fn export_run(
        &self,
        rec: &AutomationRecord,
        mut run: RunRecord,
        query: Option<&str>,
        export_path: &str,
        format: ExportFormat,
        encrypt: bool,
    ) -> Result<bool> {
        self.store.begin_run(&why(), &run).await?;
        let result = async {
            let project = rec.project_id.clone().ok_or_else(|| {
                ServiceError::Internal("a scheduled export without a project".into())
            })?;
            let to = self.export_location(export_path)?;
            // Checked again: the project's id is the one the query must read.
            let query = query
                .map(|q| crate::btql::scheduled_query(q, &project))
                .transpose()?;
            let request = crate::export::ExportRequest {
                org_id: Some(rec.org_id.clone()),
                project: Some(project),
                encrypt,
                part_bytes: 64 * 1024 * 1024,
                format: match format {
                    ExportFormat::Jsonl => Format::JsonLines,
                    ExportFormat::Parquet => Format::Parquet,
                },
                logs_only: true,
                since: XactId::from_i64(run.from_xact),
                as_of: XactId::from_i64(run.to_xact),
                automation: Some(rec.id.clone()),
                query,
                ..Default::default()
            };
            self.export(&request, to).await
        }
        .await;
        run.finished = Some(format_timestamp(self.clock.now()));
        let ok = match result {
            Ok(done) => {
                run.status = "done".into();
                run.rows = i64::try_from(done.manifest.totals.rows).ok();
                run.location = Some(done.location);
                run.export_id = Some(done.manifest.id);
                true
            }
            Err(e) => {
                tracing::warn!(automation = %rec.id, run = run.run, error = %e, "a scheduled export run failed");
                run.status = "failed".into();
                run.error = Some(e.to_string());
                false
            }
        };
        self.store.end_run(&why(), &run).await?;
        Ok(ok)
    }
}
