-- The runs of scheduled exports: each exports the rows with a version in (from_xact,
-- to_xact]. A run recorded `running` when its server stopped is done again, over the same
-- range, by the next one.
CREATE TABLE automation_runs (
    automation_id TEXT NOT NULL,
    run BIGINT NOT NULL,
    status TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    from_xact BIGINT NOT NULL,
    to_xact BIGINT NOT NULL,
    rows BIGINT,
    location TEXT,
    export_id TEXT,
    error TEXT,
    PRIMARY KEY (automation_id, run)
);
-- "Run now": the next lifecycle run starts a run whatever the interval.
ALTER TABLE automations ADD COLUMN run_requested BOOLEAN NOT NULL DEFAULT FALSE;
