-- Large values (payloads, headers, attempt records) are compressed with lz4 where the server
-- has it (PostgreSQL 14 or later, built with lz4; Debian's and the official images are):
-- PostgreSQL's default, pglz, was the largest single cost of storing an event (22% of the
-- server's time inserting 2 KiB GitHub pushes). Only values written from now on change;
-- older ones stay readable, and a node of the previous release reads and writes both.
-- Elsewhere this changes nothing.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE events
            ALTER COLUMN payload SET COMPRESSION lz4,
            ALTER COLUMN headers SET COMPRESSION lz4,
            ALTER COLUMN match_trace SET COMPRESSION lz4;
        ALTER TABLE delivery_attempts
            ALTER COLUMN headers SET COMPRESSION lz4,
            ALTER COLUMN body SET COMPRESSION lz4;
        ALTER TABLE execution_attempts
            ALTER COLUMN output SET COMPRESSION lz4,
            ALTER COLUMN logs SET COMPRESSION lz4,
            ALTER COLUMN http_calls SET COMPRESSION lz4,
            ALTER COLUMN db_statements SET COMPRESSION lz4;
    END IF;
END
$$;
