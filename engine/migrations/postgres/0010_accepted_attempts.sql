-- An accepted request's delivery attempt is kept in its event's row, as on SQLite (docs/store.md):
-- one row written per accepted event instead of two. Listings read attempts from both tables.
-- Rows written before this keep their attempts in delivery_attempts, with these columns NULL.
-- Adding NULL columns rewrites nothing, and a node of the previous release goes on working
-- (it neither writes nor reads them; its listings miss the attempts that newer nodes folded).
ALTER TABLE events
    ADD COLUMN attempt_id UUID,
    ADD COLUMN remote_addr TEXT,
    ADD COLUMN method TEXT,
    ADD COLUMN path TEXT,
    ADD COLUMN body_size BIGINT,
    ADD COLUMN answered INTEGER;
