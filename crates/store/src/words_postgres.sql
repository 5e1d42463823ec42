-- The word index is written after the commit (see search.rs): words in the row cost most of
-- ingest. Each version to index is listed in row_words_pending by the transaction that stores
-- it; indexing moves it to row_words in one transaction, so a version is always in exactly
-- one of the two.
DROP INDEX IF EXISTS rows_search;
ALTER TABLE rows DROP COLUMN IF EXISTS search;
DELETE FROM counters WHERE name IN ('text_indexed_seq', 'text_index_from_seq');
CREATE TABLE row_words (
    seq BIGINT PRIMARY KEY,
    words tsvector NOT NULL
);
CREATE INDEX row_words_words ON row_words USING GIN (words);
CREATE TABLE row_words_pending (seq BIGINT PRIMARY KEY);
-- Every live version stored so far is indexed in the background like a new one.
INSERT INTO row_words_pending (seq) SELECT seq FROM rows WHERE NOT is_deleted;
