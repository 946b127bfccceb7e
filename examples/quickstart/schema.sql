CREATE TABLE IF NOT EXISTS pushes (
    delivery TEXT PRIMARY KEY,
    repo     TEXT NOT NULL,
    branch   TEXT NOT NULL,
    pusher   TEXT NOT NULL,
    commits  INTEGER NOT NULL
);
