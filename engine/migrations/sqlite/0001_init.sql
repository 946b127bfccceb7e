-- hookwise store, SQLite. Times are milliseconds since the Unix epoch; ids are UUIDv7 (16-byte blobs).

CREATE TABLE delivery_attempts (
    id           BLOB PRIMARY KEY NOT NULL,
    source       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    remote_addr  TEXT,
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    headers      TEXT NOT NULL,          -- JSON object, secret values redacted
    body         BLOB,                   -- kept only where it may be replayed (quarantined payloads)
    body_size    INTEGER NOT NULL,
    verdict      TEXT NOT NULL,          -- accepted | duplicate | quarantined | handshake | rejected
    status       INTEGER NOT NULL,       -- HTTP status answered
    reason       TEXT,
    event_id     BLOB
) WITHOUT ROWID;
CREATE INDEX delivery_attempts_received ON delivery_attempts (received_at);
CREATE INDEX delivery_attempts_event ON delivery_attempts (event_id) WHERE event_id IS NOT NULL;

CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,    -- arrival order on this store
    id           BLOB NOT NULL UNIQUE,
    source       TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    headers      TEXT NOT NULL,
    payload      TEXT NOT NULL,          -- the JSON payload as received (form bodies turned into JSON)
    status       TEXT NOT NULL,          -- pending | quarantined | planned
    match_trace  TEXT,
    planned_at   INTEGER,
    UNIQUE (source, delivery_id)
);
CREATE INDEX events_pending ON events (seq) WHERE status = 'pending';
CREATE INDEX events_received ON events (received_at);

CREATE TABLE executions (
    id               BLOB PRIMARY KEY NOT NULL,
    event_id         BLOB NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    event_seq        INTEGER NOT NULL,
    rule_id          TEXT NOT NULL,
    action_index     INTEGER NOT NULL,
    generation       INTEGER NOT NULL,   -- 0 for the first run; each replay adds one
    plugin           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    order_key        TEXT,
    status           TEXT NOT NULL,      -- pending | running | succeeded | dead
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (event_id, rule_id, action_index, generation)
) WITHOUT ROWID;
CREATE INDEX executions_due ON executions (next_attempt_at) WHERE status = 'pending';
CREATE INDEX executions_leased ON executions (lease_until) WHERE status = 'running';

CREATE TABLE execution_attempts (
    id            BLOB PRIMARY KEY NOT NULL,
    execution_id  BLOB NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    outcome       TEXT NOT NULL,         -- succeeded | retryable | fatal
    error         TEXT,
    output        TEXT,                  -- JSON
    logs          TEXT NOT NULL,         -- JSON array of {level, message}
    http_calls    TEXT NOT NULL,         -- JSON array
    db_statements TEXT NOT NULL,         -- JSON array
    fuel_used     INTEGER,
    memory_peak   INTEGER,
    UNIQUE (execution_id, attempt)
) WITHOUT ROWID;

CREATE TABLE dead_letters (
    execution_id  BLOB PRIMARY KEY NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    event_id      BLOB NOT NULL,
    source        TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dead_letters_created ON dead_letters (created_at);
