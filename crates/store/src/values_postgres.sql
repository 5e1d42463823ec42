-- The value index on PostgreSQL (see values.rs): per row, one entry per indexed field of its
-- newest indexed version, ordered by field key (object and path), value and seq. Values are
-- bytes that compare as the values do (numbers as numbers, text byte by byte, as on the
-- embedded store); the row id is in the entry, so a sorted read walks the index alone.
CREATE TABLE row_values (
    field BIGINT NOT NULL,
    value BYTEA NOT NULL,
    seq BIGINT NOT NULL,
    row_id TEXT NOT NULL,
    PRIMARY KEY (field, value, seq) INCLUDE (row_id)
);
-- Every version up to this seq has its entries. The writer indexes every version stored so
-- far in the background; until it has caught up, sorted reads and counts read the rows it
-- has not indexed, as they do for any new rows.
INSERT INTO counters (name, value) VALUES ('values_indexed_seq', 0);
