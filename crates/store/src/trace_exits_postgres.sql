-- A trace is read from the versions filed under it. Whether a row has left the trace since
-- (a newer version under another root, or a delete) was checked by looking the row up in
-- `row_index`, once per span. `trace_exits` lists instead each version whose row's previous
-- version was filed under another trace, keyed by that trace's key (the server's
-- `index::trace_key`, computed here by `holdfast_trace_key`): a trace's exits are one range
-- of a small table. Writers record exits in the transaction that writes the versions.
CREATE FUNCTION holdfast_trace_key(object_type TEXT, object_id TEXT, root_span_id TEXT)
RETURNS BIGINT LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ('x' || encode(substring(sha256(
        convert_to($1, 'UTF8') || decode('00', 'hex') ||
        convert_to($2, 'UTF8') || decode('00', 'hex') ||
        convert_to($3, 'UTF8') || decode('00', 'hex')) FROM 1 FOR 8), 'hex'))::bit(64)::bigint
$$;
CREATE TABLE trace_exits (
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    row_id TEXT NOT NULL,
    xact_id BIGINT NOT NULL,
    trace BIGINT NOT NULL,
    PRIMARY KEY (object_type, object_id, row_id, xact_id)
);
CREATE INDEX trace_exits_trace ON trace_exits (trace);
INSERT INTO trace_exits (object_type, object_id, row_id, xact_id, trace)
SELECT object_type, object_id, row_id, xact_id, holdfast_trace_key(object_type, object_id, prev)
FROM (
    SELECT object_type, object_id, row_id, xact_id, root_span_id,
           LAG(root_span_id) OVER (PARTITION BY object_type, object_id, row_id ORDER BY xact_id) AS prev
    FROM rows
) v WHERE prev IS NOT NULL AND prev IS DISTINCT FROM root_span_id;
