-- A root span's entry of `root_span_id` now holds its `created` after its trace (see
-- values.rs), so that a summary of the traces a filter matched orders their roots without
-- walking the roots' `created` entries. The writer indexes every version again, in the
-- background; until it has caught up, sorted reads, range filters and counts read the rows
-- it has not indexed, as they do for any new rows.
TRUNCATE row_values;
UPDATE counters SET value = 0 WHERE name = 'values_indexed_seq';
