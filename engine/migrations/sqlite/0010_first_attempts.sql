-- An execution whose first attempt succeeded with nothing to show beyond a small output (no
-- error, plugin logs, HTTP calls or DB statements: the common case) keeps that attempt in its
-- own row (docs/store.md): finishing it updates one row instead of also writing a second with
-- its index entries. Reads of an execution's attempts read both. Rows written before this
-- have their attempts in execution_attempts, and these columns NULL.
ALTER TABLE executions ADD COLUMN first_started_at INTEGER;
ALTER TABLE executions ADD COLUMN first_finished_at INTEGER;
ALTER TABLE executions ADD COLUMN first_output TEXT;
ALTER TABLE executions ADD COLUMN first_fuel_used INTEGER;
ALTER TABLE executions ADD COLUMN first_memory_peak INTEGER;
