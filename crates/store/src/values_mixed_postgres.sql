-- The value index also holds the numbers and texts directly under metadata and span
-- attributes, with entries of root spans, for sorted reads and range filters on them (see
-- values.rs). The writer indexes every version again, in the background; until it has
-- caught up, sorted reads, range filters and counts read the rows it has not indexed, as
-- they do for any new rows.
TRUNCATE row_values;
UPDATE counters SET value = 0 WHERE name = 'values_indexed_seq';
