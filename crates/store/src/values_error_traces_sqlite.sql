-- The value index's mark of a row whose `error` is set now holds the row's trace (its
-- `root_span_id`), so that the errors view finds the failed traces without reading the failed
-- spans (see values.rs). The writer indexes every version again, in the background; until it
-- has caught up, sorted reads, range filters and counts read the rows it has not indexed, as
-- they do for any new rows.
DELETE FROM row_values;
UPDATE counters SET value = 0 WHERE name = 'values_indexed_seq';
