-- Version 4: weighted aliases and shadows. An alias points at one version, or at weighted routes,
-- [{"version": 3, "weight": 90, "model_id": "mdl_..."}, ...] in version order (``version`` is
-- then the heaviest route), and may name a shadow version. The model ids are kept beside the
-- versions so that resolving an alias is one row: a version's model never changes, and deleting a
-- version deletes the aliases that route or shadow to it. Independent of version 3.

ALTER TABLE model_aliases
    ADD COLUMN routes jsonb,
    ADD COLUMN shadow_version integer,
    ADD COLUMN shadow_model_id text;
