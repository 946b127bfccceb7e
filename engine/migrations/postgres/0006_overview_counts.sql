-- The dashboard's overview counts deliveries and events per source over the last hour and the
-- last day. With the source (and the verdict) in the time indexes, those counts are index-only
-- scans. The indexes keep their names and their leading column: what read them before still
-- does. (0005 is SQLite's alone.)
DROP INDEX delivery_attempts_received;
CREATE INDEX delivery_attempts_received ON delivery_attempts (received_at, source, verdict);
DROP INDEX events_received;
CREATE INDEX events_received ON events (received_at, source);
