-- An experiment's score summary (what the experiments page shows of it), kept with the
-- newest version of its rows it was made at, so that it outlives a restart and is shared by
-- replicas. It is good only while that is still the object's newest version; a purge of the
-- object's versions removes it.
CREATE TABLE score_summaries (
    org_id TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    newest BIGINT NOT NULL,
    scores TEXT NOT NULL,
    PRIMARY KEY (object_type, object_id)
);
