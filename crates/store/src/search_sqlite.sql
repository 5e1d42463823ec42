-- Word search (see search.rs): one document per row version, `rowid` = its `seq`, a column
-- per field and a `scope` token naming its object. Contentless: the words are not stored
-- again, only the index.
CREATE VIRTUAL TABLE row_text USING fts5(
    scope, input, output, expected, metadata, error,
    content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 0'
);
-- Versions up to this seq were stored before the index; the store indexes them when opened.
INSERT INTO counters (name, value) VALUES ('text_indexed_seq', 0);
INSERT INTO counters (name, value) VALUES ('text_index_from_seq', (SELECT COALESCE(MAX(seq), 0) FROM rows));
