-- Envelope encryption: per-organization data keys (stored only wrapped) and the secrets
-- sealed under them.
CREATE TABLE data_keys (
    org_id TEXT NOT NULL REFERENCES orgs(id),
    version BIGINT NOT NULL,
    kek_id TEXT NOT NULL,
    wrapped TEXT NOT NULL,
    created TEXT NOT NULL,
    retired TEXT,
    PRIMARY KEY (org_id, version)
);
CREATE TABLE secrets (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    kind TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_type TEXT,
    metadata TEXT NOT NULL,
    preview TEXT NOT NULL,
    dek_version BIGINT NOT NULL,
    ciphertext TEXT NOT NULL,
    created TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    secret_updated_at TEXT NOT NULL,
    secret_updated_by TEXT,
    UNIQUE (org_id, kind, object_type, object_id, name)
);
