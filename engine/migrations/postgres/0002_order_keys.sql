-- Claims check, for an execution with an order key, whether an earlier one of the same rule and
-- key is unfinished; this index keeps that check to a few rows.
CREATE INDEX executions_order ON executions (rule_id, order_key, event_seq)
    WHERE order_key IS NOT NULL AND status IN ('pending', 'running');
