-- The value index also lists tags and span attributes, and marks rows whose group of
-- scores, metrics or span attributes it does not hold whole (see values.rs). The writer
-- indexes every version again, in the background; until it has caught up, sorted reads,
-- range filters and counts read the rows it has not indexed, as they do for any new rows.
DELETE FROM row_values;
UPDATE counters SET value = 0 WHERE name = 'values_indexed_seq';
