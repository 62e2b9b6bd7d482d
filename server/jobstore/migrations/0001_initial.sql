-- The PostgreSQL job store, version 1: job records, their rows and event logs, and the model
-- registry. Identifiers and aliases sort byte by byte ("C"), as in the SQLite and Redis stores,
-- whatever the database's collation.

CREATE TABLE jobs (
    id text COLLATE "C" PRIMARY KEY,
    kind integer NOT NULL,
    state integer NOT NULL,
    create_ns bigint NOT NULL,
    record bytea NOT NULL,          -- a serialized Job, without a prediction's rows
    rev bigint NOT NULL DEFAULT 0,  -- raised by every update: writers compare and set it
    end_at timestamptz,             -- when the job ended (the database's clock), for retention
    unpublished_at timestamptz      -- the outbox mark: recorded, not yet known to be published
);
-- ListJobs pages newest first, by any filter, from an index: never a scan of the table.
CREATE INDEX jobs_by_age ON jobs (create_ns DESC, id DESC);
CREATE INDEX jobs_by_kind ON jobs (kind, create_ns DESC, id DESC);
CREATE INDEX jobs_by_state ON jobs (state, create_ns DESC, id DESC);
CREATE INDEX jobs_by_kind_state ON jobs (kind, state, create_ns DESC, id DESC);
CREATE INDEX jobs_by_end ON jobs (end_at) WHERE end_at IS NOT NULL;
CREATE INDEX jobs_unpublished ON jobs (unpublished_at) WHERE unpublished_at IS NOT NULL;

CREATE TABLE job_rows (
    job_id text COLLATE "C" PRIMARY KEY,
    body bytea NOT NULL             -- a prediction's rows (a serialized PredictRequest)
);

CREATE TABLE events (
    job_id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    body bytea NOT NULL,            -- a serialized JobEvent
    PRIMARY KEY (job_id, seq)
);

-- last_version only grows, so a deleted version's number is never given to another model.
CREATE TABLE model_names (
    name text COLLATE "C" PRIMARY KEY,
    last_version integer NOT NULL
);

CREATE TABLE model_entries (
    model_id text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C",
    version integer,
    description text NOT NULL DEFAULT '',
    tags jsonb NOT NULL DEFAULT '{}',
    UNIQUE (name, version)
);

CREATE TABLE model_aliases (
    name text COLLATE "C" NOT NULL,
    alias text COLLATE "C" NOT NULL,
    version integer NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE INDEX model_aliases_by_version ON model_aliases (name, version);
