-- Automations of an organization (`project_id` NULL) or of a project. Only retention policies
-- are kept today: one per object type per project, and one per object type as the
-- organization's default for projects without their own.
CREATE TABLE automations (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    project_id TEXT,
    name TEXT NOT NULL,
    description TEXT,
    event_type TEXT NOT NULL,
    -- For retention: project_logs, experiment or dataset.
    object_type TEXT,
    -- The whole configuration as the API takes it (JSON).
    config TEXT NOT NULL,
    user_id TEXT,
    created TEXT NOT NULL
);
CREATE UNIQUE INDEX automations_name ON automations(org_id, COALESCE(project_id, ''), name);
CREATE UNIQUE INDEX automations_retention ON automations(org_id, COALESCE(project_id, ''), object_type)
    WHERE event_type = 'retention';
-- Rows deleted by a write (`_object_delete`, or a retention policy): when, so that the purge
-- removes their versions once the grace period has passed. One entry per deleting version.
CREATE TABLE row_deletions (
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    row_id TEXT NOT NULL,
    xact_id BIGINT NOT NULL,
    deleted_at TEXT NOT NULL,
    PRIMARY KEY (object_type, object_id, row_id, xact_id)
);
CREATE INDEX row_deletions_at ON row_deletions(deleted_at);
