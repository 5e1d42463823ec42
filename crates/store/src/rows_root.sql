-- Whether a version is a trace's root span (a span without parents), computed when the
-- version is written; NULL for versions written before (and for deletions): not known. A
-- sorted read of root spans reads the rows the value index does not hold yet; after a large
-- trace's write those are thousands of spans of which one is a root, and it reads only the
-- versions not known to be other spans.
ALTER TABLE rows ADD COLUMN is_root BOOLEAN;
