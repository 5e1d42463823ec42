-- Word search (see search.rs): each row version's words as a tsvector, fields as weights.
ALTER TABLE rows ADD COLUMN search tsvector;
CREATE INDEX rows_search ON rows USING GIN (search);
-- Versions up to this seq were stored before the index; the store indexes them when opened.
INSERT INTO counters (name, value) VALUES ('text_indexed_seq', 0);
INSERT INTO counters (name, value) VALUES ('text_index_from_seq', (SELECT COALESCE(MAX(seq), 0) FROM rows));
