-- The value index becomes exact (see values.rs): each row's entries are those of its newest
-- indexed version. Entries written before kept those of replaced and deleted versions, so
-- the index is rebuilt: the writer indexes every version again, in the background.
DELETE FROM row_values;
UPDATE counters SET value = 0 WHERE name = 'values_indexed_seq';
