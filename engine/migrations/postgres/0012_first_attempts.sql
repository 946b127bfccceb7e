-- An execution whose first attempt succeeded with nothing to show beyond a small output (no
-- error, plugin logs, HTTP calls or DB statements: the common case) keeps that attempt in its
-- own row, as on SQLite (docs/store.md): finishing it updates one row instead of also writing
-- a second with its index entries. Reads of an execution's attempts read both. Rows written
-- before this have their attempts in execution_attempts, and these columns NULL. Adding NULL
-- columns rewrites nothing; a node of the previous release goes on working, but shows no
-- attempt for executions that newer nodes finished this way.
ALTER TABLE executions
    ADD COLUMN first_started_at BIGINT,
    ADD COLUMN first_finished_at BIGINT,
    ADD COLUMN first_output JSONB,
    ADD COLUMN first_fuel_used BIGINT,
    ADD COLUMN first_memory_peak BIGINT;
