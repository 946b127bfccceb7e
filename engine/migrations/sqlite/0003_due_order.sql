-- Claims take pending executions in (next_attempt_at, event_seq) order with a LIMIT; with both
-- columns in the index a claim reads only the rows it takes, whatever the backlog.
DROP INDEX executions_due;
CREATE INDEX executions_due ON executions (next_attempt_at, event_seq) WHERE status = 'pending';
