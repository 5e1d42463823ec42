-- A queued attachment the purge has claimed and whose blob it is deleting. A row written
-- meanwhile that references it is refused (a conflict) rather than left pointing at a blob
-- about to go; one written before the claim takes the key off the queue instead.
ALTER TABLE unreferenced_attachments ADD COLUMN deleting BOOLEAN NOT NULL DEFAULT FALSE;
