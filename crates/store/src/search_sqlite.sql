-- Word search (see search.rs): one document per row version, `rowid` = its `seq`, holding a
-- token naming its object and each word prefixed by a letter naming its field. Contentless
-- (the words are not stored again) and without positions (`detail = none`), so the index
-- holds only which versions have which tokens.
CREATE VIRTUAL TABLE row_text USING fts5(
    words,
    content = '', contentless_delete = 1, detail = none,
    tokenize = 'unicode61 remove_diacritics 0'
);
-- Terms are held in memory for up to 16 MiB before a segment is written, and a level merges
-- once it has 8 segments rather than 4: fewer, larger writes for the same words.
INSERT INTO row_text (row_text, rank) VALUES ('hashsize', 16777216);
INSERT INTO row_text (row_text, rank) VALUES ('automerge', 8);
-- Every version up to this seq is indexed; the writer indexes the rest when it has time.
INSERT INTO counters (name, value) VALUES ('text_indexed_seq', 0);
