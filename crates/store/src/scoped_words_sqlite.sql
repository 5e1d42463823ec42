-- The embedded word index is rebuilt with one token per word of an object (its scope, its
-- field's letter and the word, see search.rs), instead of the words plus one scope token per
-- document that every search had to intersect with; and with FTS5's `ascii` tokenizer, which
-- never splits a word (documents hold only words of letters and digits, lowercased, separated
-- by spaces), where `unicode61` split words holding combining marks (Devanagari vowel signs)
-- into several tokens that a search could not ask for. The writer indexes every version again
-- in the background; until it has caught up, searches read the rows it has not indexed.
DROP TABLE row_text;
CREATE VIRTUAL TABLE row_text USING fts5(
    words,
    content = '', contentless_delete = 1, detail = none,
    tokenize = 'ascii'
);
INSERT INTO row_text (row_text, rank) VALUES ('hashsize', 16777216);
INSERT INTO row_text (row_text, rank) VALUES ('automerge', 8);
UPDATE counters SET value = 0 WHERE name = 'text_indexed_seq';
