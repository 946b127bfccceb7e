-- The dashboard's sources page and rule backtests read a source's newest events; with this
-- index they read only that source's rows, newest first, and stop at the limit.
CREATE INDEX events_source_seq ON events (source, seq);
-- The plugins page counts the last hour's execution attempts: a range of this index.
CREATE INDEX execution_attempts_finished ON execution_attempts (finished_at);
