-- Row versions get a sequence number (their place in the table), row data becomes bytes (JSON,
-- compressed with zstd when that is smaller), and finding a row's versions by id moves from the table's primary key to `row_index`. On the embedded store the writer
-- fills `row_index` in large sorted batches (see `index.rs`): a B-tree keyed by random ids
-- that is updated on every commit rewrites about one page per row.
CREATE TABLE rows_v2 (
    seq INTEGER PRIMARY KEY,
    org_id TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    row_id TEXT NOT NULL,
    xact_id BIGINT NOT NULL,
    root_span_id TEXT,
    is_deleted BOOLEAN NOT NULL,
    data BLOB NOT NULL
);
INSERT INTO rows_v2 (org_id, object_type, object_id, row_id, xact_id, root_span_id, is_deleted, data)
SELECT org_id, object_type, object_id, row_id, xact_id, root_span_id, is_deleted, CAST(data AS BLOB)
FROM rows ORDER BY xact_id;
DROP TABLE rows;
ALTER TABLE rows_v2 RENAME TO rows;
CREATE INDEX rows_trace ON rows(object_type, object_id, root_span_id);
CREATE INDEX rows_xact ON rows(xact_id);
CREATE TABLE row_index (
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    row_id TEXT NOT NULL,
    xact_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    is_deleted BOOLEAN NOT NULL,
    PRIMARY KEY (object_type, object_id, row_id, xact_id)
) WITHOUT ROWID;
INSERT INTO row_index (object_type, object_id, row_id, xact_id, seq, is_deleted)
SELECT object_type, object_id, row_id, xact_id, seq, is_deleted FROM rows
ORDER BY object_type, object_id, row_id, xact_id;
-- Every row version with an `_xact_id` up to this one is in `row_index`.
INSERT INTO counters (name, value) VALUES ('indexed_xact', (SELECT COALESCE(MAX(xact_id), 0) FROM rows));
