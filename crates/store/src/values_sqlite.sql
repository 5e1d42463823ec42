-- Sorted reads (see values.rs): per row version, one entry per indexed field (`created`,
-- numbers under `scores` and `metrics`), ordered by field key (object and path), value and
-- `seq`. The value column has no type: text and numbers keep their own order.
CREATE TABLE row_values (
    field INTEGER NOT NULL,
    value NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (field, value, seq)
) WITHOUT ROWID;
-- Every version up to this seq has its entries; the writer adds the rest when it has time.
INSERT INTO counters (name, value) VALUES ('values_indexed_seq', 0);
