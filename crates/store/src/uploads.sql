-- Attachments belong to the object whose rows referenced them when they were registered.
ALTER TABLE attachments ADD COLUMN object_type TEXT;
ALTER TABLE attachments ADD COLUMN object_id TEXT;

-- Which objects' rows reference an attachment key (written at ingest).
CREATE TABLE attachment_refs (
    org_id TEXT NOT NULL,
    key TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    PRIMARY KEY (org_id, key, object_type, object_id)
);

-- Blobs uploaded through signed URLs: each grant is used once, within its size; overflow
-- batches not consumed by their expiry are deleted with their blob.
CREATE TABLE uploads (
    org_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    -- The one outstanding grant; NULL once it has been used.
    grant_id TEXT,
    max_bytes BIGINT NOT NULL,
    -- Bytes stored; 0 until an upload completes.
    size_bytes BIGINT NOT NULL DEFAULT 0,
    -- pending (granted), uploading, stored.
    state TEXT NOT NULL,
    -- Unix seconds after which an unused grant or an unconsumed overflow batch is removed;
    -- NULL for stored attachments.
    expires_at BIGINT,
    PRIMARY KEY (org_id, kind, key)
);
CREATE INDEX uploads_expiry ON uploads (expires_at);
