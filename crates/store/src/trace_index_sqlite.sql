-- Traces are found through `trace_index` (trace key, seq), filled in sorted batches like
-- `row_index` (see `index.rs`), instead of an index on `rows` that every commit updated at
-- one random page per trace. Trace keys are computed by the server, so the store indexes
-- every version again when it next opens.
DROP INDEX rows_trace;
CREATE TABLE trace_index (
    trace INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (trace, seq)
) WITHOUT ROWID;
UPDATE counters SET value = 0 WHERE name = 'indexed_xact';
