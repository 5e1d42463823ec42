-- Both indexes written after the commit are rebuilt (see values.rs and search.rs): value
-- entries now hold their row's id, so that sorted reads walk the index without reading a row
-- page per entry; and the word index becomes exact (a version's document replaces that of
-- the row's previous version), so that a search can take a found version for the row's
-- current one without looking it up. The writer indexes every version again, in the
-- background; until it has caught up, searches, sorted reads and counts read the rows it
-- has not indexed, as they do for any new rows.
DROP TABLE row_values;
CREATE TABLE row_values (
    field INTEGER NOT NULL,
    value NOT NULL,
    seq INTEGER NOT NULL,
    row_id TEXT NOT NULL,
    PRIMARY KEY (field, value, seq)
) WITHOUT ROWID;
UPDATE counters SET value = 0 WHERE name = 'values_indexed_seq';
DROP TABLE row_text;
CREATE VIRTUAL TABLE row_text USING fts5(
    words,
    content = '', contentless_delete = 1, detail = none,
    tokenize = 'unicode61 remove_diacritics 0'
);
INSERT INTO row_text (row_text, rank) VALUES ('hashsize', 16777216);
INSERT INTO row_text (row_text, rank) VALUES ('automerge', 8);
UPDATE counters SET value = 0 WHERE name = 'text_indexed_seq';
