-- Which rows reference an attachment key (written at ingest, beside `attachment_refs`), so
-- that purging deleted rows can release the attachments only they referenced.
CREATE TABLE attachment_row_refs (
    org_id TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    row_id TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (object_type, object_id, row_id, key)
);
CREATE INDEX attachment_row_refs_key ON attachment_row_refs(org_id, key, object_type, object_id);

-- An object's reference is `by_rows` when every row of it that references the key is in
-- `attachment_row_refs`: references recorded before that table are not, and keep their
-- attachment until the whole object is purged.
ALTER TABLE attachment_refs ADD COLUMN by_rows BOOLEAN NOT NULL DEFAULT FALSE;

-- Attachments no row references any more, waiting for the purge to delete their blobs.
CREATE TABLE unreferenced_attachments (
    org_id TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (org_id, key)
);
