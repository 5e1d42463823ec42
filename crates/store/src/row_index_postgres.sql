-- Row versions get a sequence number, row data becomes bytes (JSON, compressed with zstd when
-- that is smaller), and finding a row's versions by id moves from the
-- table's primary key to `row_index`, which PostgreSQL's writers fill in the transaction that
-- writes the rows (see `index.rs`).
ALTER TABLE rows ADD COLUMN seq BIGSERIAL;
ALTER TABLE rows ALTER COLUMN data TYPE BYTEA USING convert_to(data, 'UTF8');
ALTER TABLE rows DROP CONSTRAINT rows_pkey;
ALTER TABLE rows ADD PRIMARY KEY (seq);
CREATE INDEX rows_xact ON rows(xact_id);
CREATE TABLE row_index (
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    row_id TEXT NOT NULL,
    xact_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    is_deleted BOOLEAN NOT NULL,
    PRIMARY KEY (object_type, object_id, row_id, xact_id)
);
INSERT INTO row_index (object_type, object_id, row_id, xact_id, seq, is_deleted)
SELECT object_type, object_id, row_id, xact_id, seq, is_deleted FROM rows;
