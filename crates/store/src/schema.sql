CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE org_members (
    org_id TEXT NOT NULL REFERENCES orgs(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    created TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    preview_name TEXT NOT NULL,
    created TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    last_used_at TEXT
);
CREATE INDEX api_keys_user ON api_keys(org_id, user_id);
CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    user_id TEXT,
    created TEXT NOT NULL,
    deleted_at TEXT,
    seq BIGINT NOT NULL,
    info TEXT NOT NULL
);
CREATE UNIQUE INDEX projects_name ON projects(org_id, name) WHERE deleted_at IS NULL;
CREATE TABLE objects (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    project_id TEXT NOT NULL REFERENCES projects(id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    user_id TEXT,
    created TEXT NOT NULL,
    deleted_at TEXT,
    seq BIGINT NOT NULL,
    info TEXT NOT NULL
);
CREATE UNIQUE INDEX objects_name ON objects(project_id, kind, name) WHERE deleted_at IS NULL;
CREATE INDEX objects_org ON objects(org_id, kind, seq);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('xact', 0), ('seq', 0);
CREATE TABLE rows (
    org_id TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    row_id TEXT NOT NULL,
    xact_id BIGINT NOT NULL,
    root_span_id TEXT,
    is_deleted BOOLEAN NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (object_type, object_id, row_id, xact_id)
);
CREATE INDEX rows_trace ON rows(object_type, object_id, root_span_id);
CREATE TABLE attachments (
    org_id TEXT NOT NULL REFERENCES orgs(id),
    key TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (org_id, key)
);
