-- Work that one replica at a time may do (the purge of deleted data): the holder keeps its
-- lease by renewing it before it expires; another replica takes it only once it has expired.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    -- Unix seconds.
    expires_at BIGINT NOT NULL
);
-- A purge claims what it removes, so that a restore racing it fails instead of bringing back
-- half an object.
ALTER TABLE projects ADD COLUMN purging BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE objects ADD COLUMN purging BOOLEAN NOT NULL DEFAULT FALSE;
-- The purge finds an object's attachments and references by the object.
CREATE INDEX attachments_owner ON attachments(org_id, object_type, object_id);
CREATE INDEX attachment_refs_object ON attachment_refs(org_id, object_type, object_id);
