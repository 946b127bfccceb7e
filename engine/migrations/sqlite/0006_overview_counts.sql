-- The dashboard's overview counts deliveries and events per source over the last hour and the
-- last day. With the source (and the verdict, and whether the event's row holds its accepted
-- attempt) in the time indexes, those counts read the indexes alone, never the rows. The
-- indexes keep their names and their leading column: what read them before still does.
DROP INDEX delivery_attempts_received;
CREATE INDEX delivery_attempts_received ON delivery_attempts (received_at, source, verdict);
DROP INDEX events_received;
CREATE INDEX events_received ON events (received_at, source, attempt_id);
