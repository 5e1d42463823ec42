-- Access control: groups, roles, ACLs, scoped keys, key usage, the audit log.
ALTER TABLE orgs ADD COLUMN policy_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN kind TEXT NOT NULL DEFAULT 'user';
ALTER TABLE users ADD COLUMN given_name TEXT;
ALTER TABLE users ADD COLUMN family_name TEXT;
ALTER TABLE api_keys ADD COLUMN project_ids TEXT;
ALTER TABLE api_keys ADD COLUMN capability TEXT NOT NULL DEFAULT 'full';
ALTER TABLE api_keys ADD COLUMN last_used_from TEXT;
CREATE TABLE user_groups (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    description TEXT,
    user_id TEXT,
    created TEXT NOT NULL,
    member_users TEXT NOT NULL,
    member_groups TEXT NOT NULL,
    UNIQUE (org_id, name)
);
CREATE TABLE roles (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    description TEXT,
    user_id TEXT,
    created TEXT NOT NULL,
    member_permissions TEXT NOT NULL,
    member_roles TEXT NOT NULL,
    UNIQUE (org_id, name)
);
-- Absent fields are stored as '' so that the unique constraint makes grants idempotent.
CREATE TABLE acls (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    permission TEXT NOT NULL,
    role_id TEXT NOT NULL,
    restrict_object_type TEXT NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (org_id, object_type, object_id, user_id, group_id, permission, role_id, restrict_object_type)
);
CREATE INDEX acls_object ON acls(org_id, object_type, object_id);
CREATE TABLE key_usage (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (key_id, day)
);
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at TEXT NOT NULL,
    org_id TEXT,
    actor_id TEXT,
    key_id TEXT,
    action TEXT NOT NULL,
    object_type TEXT,
    object_id TEXT,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_org ON audit_log(org_id, seq);
INSERT INTO counters (name, value) VALUES ('audit', 0);
