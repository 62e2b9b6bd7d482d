-- Version 3: child jobs (issue 20). A TRIAL or SHARD job records the SEARCH or SCORE job it
-- belongs to; a parent's children are read, and paged, from their own index. Listings without
-- a kind leave TRIAL (5) and SHARD (6) jobs out, from indexes that hold only the other kinds,
-- so a search's thousands of trials cost a user's listing nothing; they replace the indexes
-- those listings read before (a listing with a kind still reads jobs_by_kind*).

ALTER TABLE jobs ADD COLUMN parent_job_id text COLLATE "C";
CREATE INDEX jobs_by_parent ON jobs (parent_job_id, create_ns DESC, id DESC)
    WHERE parent_job_id IS NOT NULL;
CREATE INDEX jobs_listed_by_age ON jobs (create_ns DESC, id DESC) WHERE kind NOT IN (5, 6);
CREATE INDEX jobs_listed_by_state ON jobs (state, create_ns DESC, id DESC)
    WHERE kind NOT IN (5, 6);
DROP INDEX jobs_by_age;
DROP INDEX jobs_by_state;
