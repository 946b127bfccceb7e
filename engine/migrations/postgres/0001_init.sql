-- hookwise store, PostgreSQL. Times are milliseconds since the Unix epoch; ids are UUIDv7 (uuid).

CREATE TABLE delivery_attempts (
    id           UUID PRIMARY KEY,
    source       TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    remote_addr  TEXT,
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    headers      JSONB NOT NULL,          -- JSON object, secret values redacted
    body        BYTEA,                   -- kept only where it may be replayed (quarantined payloads)
    body_size    BIGINT NOT NULL,
    verdict      TEXT NOT NULL,          -- accepted | duplicate | quarantined | handshake | rejected
    status       INTEGER NOT NULL,       -- HTTP status answered
    reason       TEXT,
    event_id     UUID
);
CREATE INDEX delivery_attempts_received ON delivery_attempts (received_at);
CREATE INDEX delivery_attempts_event ON delivery_attempts (event_id) WHERE event_id IS NOT NULL;

CREATE TABLE events (
    seq          BIGSERIAL PRIMARY KEY, -- arrival order on this store
    id           UUID NOT NULL UNIQUE,
    source       TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    headers      JSONB NOT NULL,
    payload      TEXT NOT NULL,          -- the JSON payload as received (form bodies turned into JSON)
    status       TEXT NOT NULL,          -- pending | quarantined | planned
    match_trace  JSONB,
    planned_at   BIGINT,
    UNIQUE (source, delivery_id)
);
CREATE INDEX events_pending ON events (seq) WHERE status = 'pending';
CREATE INDEX events_received ON events (received_at);

CREATE TABLE executions (
    id               UUID PRIMARY KEY,
    event_id         UUID NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    event_seq        BIGINT NOT NULL,
    rule_id          TEXT NOT NULL,
    action_index     INTEGER NOT NULL,
    generation       INTEGER NOT NULL,   -- 0 for the first run; each replay adds one
    plugin           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    order_key        TEXT,
    status           TEXT NOT NULL,      -- pending | running | succeeded | dead
    attempts         INTEGER NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (event_id, rule_id, action_index, generation)
);
CREATE INDEX executions_due ON executions (next_attempt_at) WHERE status = 'pending';
CREATE INDEX executions_leased ON executions (lease_until) WHERE status = 'running';

CREATE TABLE execution_attempts (
    id            UUID PRIMARY KEY,
    execution_id  UUID NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    started_at    BIGINT NOT NULL,
    finished_at   BIGINT NOT NULL,
    outcome       TEXT NOT NULL,         -- succeeded | retryable | fatal
    error         TEXT,
    output        JSONB,                  -- JSON
    logs          JSONB NOT NULL,         -- JSON array of {level, message}
    http_calls    JSONB NOT NULL,         -- JSON array
    db_statements JSONB NOT NULL,         -- JSON array
    fuel_used     BIGINT,
    memory_peak   BIGINT,
    UNIQUE (execution_id, attempt)
);

CREATE TABLE dead_letters (
    execution_id  UUID PRIMARY KEY REFERENCES executions (id) ON DELETE CASCADE,
    event_id      UUID NOT NULL,
    source        TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX dead_letters_created ON dead_letters (created_at);
