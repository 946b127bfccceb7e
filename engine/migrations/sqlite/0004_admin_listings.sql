-- The admin API lists executions newest first (by planning time), page by page.
CREATE INDEX executions_created ON executions (created_at, id);
