-- The events list filters by event type, newest first: with this index a type's events are
-- read in arrival order from the end, and paging seeks straight to the cursor.
CREATE INDEX events_type_seq ON events (event_type, seq);
