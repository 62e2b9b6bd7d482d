-- Version 2: owners and the model index. Every model a training job made gets an entry with its
-- owner (the job's) and when it was registered, so ListModels pages from an index instead of
-- reading every manifest; a name records the token that claimed it. NULL owners are names and
-- models from before owners were recorded; a NULL created_ns is a model not in the index yet
-- (adopted once, from storage, by the first gateway that lists models).

ALTER TABLE model_names ADD COLUMN owner text;
ALTER TABLE model_entries ADD COLUMN owner text, ADD COLUMN created_ns bigint;
CREATE INDEX model_entries_by_age ON model_entries (created_ns DESC, model_id DESC)
    WHERE created_ns IS NOT NULL;

CREATE TABLE registry_meta (
    key text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);
