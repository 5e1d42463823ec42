-- Incremental exports read an object's deletions by transaction range.
CREATE INDEX row_deletions_xact ON row_deletions(object_type, object_id, xact_id);
