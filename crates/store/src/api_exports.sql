-- Exports started through the API (`POST /v1/export`): who asked, and how each went. The
-- export's files are in the exports folder under `export_id`.
CREATE TABLE api_exports (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    project_id TEXT,
    user_id TEXT,
    format TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    finished TEXT,
    export_id TEXT,
    rows BIGINT,
    error TEXT
);
CREATE INDEX api_exports_org ON api_exports(org_id, created);
