-- A trace is read from the versions filed under it. Whether a row has left the trace since
-- (a newer version under another root, or a delete) was checked by looking the row up in
-- `row_index`, one random index page per span; on a 10,000-span trace that was most of the
-- read. `trace_exits` lists instead each version whose row's previous version was filed under
-- another trace, keyed by that trace: a trace's exits are one range of a small table. The
-- writer records exits when it indexes versions (see `writer::insert_pending`), comparing
-- each with the row's previous version, so `row_index` now keeps each version's trace key.
CREATE INDEX trace_index_seq ON trace_index (seq, trace);
CREATE TABLE row_index_v2 (
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    row_id TEXT NOT NULL,
    xact_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    is_deleted BOOLEAN NOT NULL,
    trace INTEGER,
    PRIMARY KEY (object_type, object_id, row_id, xact_id)
) WITHOUT ROWID;
INSERT INTO row_index_v2 (object_type, object_id, row_id, xact_id, seq, is_deleted, trace)
SELECT ri.object_type, ri.object_id, ri.row_id, ri.xact_id, ri.seq, ri.is_deleted,
       (SELECT t.trace FROM trace_index t WHERE t.seq = ri.seq)
FROM row_index ri ORDER BY ri.object_type, ri.object_id, ri.row_id, ri.xact_id;
DROP INDEX trace_index_seq;
DROP TABLE row_index;
ALTER TABLE row_index_v2 RENAME TO row_index;
CREATE TABLE trace_exits (
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    row_id TEXT NOT NULL,
    xact_id BIGINT NOT NULL,
    trace INTEGER NOT NULL,
    PRIMARY KEY (object_type, object_id, row_id, xact_id)
) WITHOUT ROWID;
CREATE INDEX trace_exits_trace ON trace_exits (trace);
INSERT INTO trace_exits (object_type, object_id, row_id, xact_id, trace)
SELECT object_type, object_id, row_id, xact_id, prev FROM (
    SELECT object_type, object_id, row_id, xact_id, trace,
           LAG(trace) OVER (PARTITION BY object_type, object_id, row_id ORDER BY xact_id) AS prev
    FROM row_index
) WHERE prev IS NOT NULL AND (trace IS NULL OR trace <> prev);
