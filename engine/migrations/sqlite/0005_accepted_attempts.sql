-- An accepted request's delivery attempt is kept in its event's row (docs/store.md): one row
-- written per accepted event instead of two. Listings read attempts from both tables. Rows
-- written before this have their attempts in delivery_attempts, and these columns NULL.
ALTER TABLE events ADD COLUMN attempt_id BLOB;
ALTER TABLE events ADD COLUMN remote_addr TEXT;
ALTER TABLE events ADD COLUMN method TEXT;
ALTER TABLE events ADD COLUMN path TEXT;
ALTER TABLE events ADD COLUMN body_size INTEGER;
ALTER TABLE events ADD COLUMN answered INTEGER;
