-- The value index also marks the rows whose `error` is set (the errors view) and lists root
-- spans by their trace (summaries of matched traces), see
-- values.rs. The writer indexes every version again, in the background; until it has
-- caught up, sorted reads, range filters and counts read the rows it has not indexed, as
-- they do for any new rows.
DELETE FROM row_values;
UPDATE counters SET value = 0 WHERE name = 'values_indexed_seq';
