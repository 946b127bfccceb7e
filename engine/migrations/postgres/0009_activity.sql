-- Per-minute activity counts, kept by every write batch in the same transaction: the overview
-- and the plugins page read a day of them instead of counting a day of rows. `shard` lets
-- several nodes on one PostgreSQL add to the same minute without waiting on each other's row
-- (each node adds under its own; readers sum them). This migration counts what is already
-- stored, so the pages show history from before it too.
CREATE TABLE activity (
    minute BIGINT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    label TEXT NOT NULL,
    shard INTEGER NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (kind, minute, subject, label, shard)
);
INSERT INTO activity (minute, kind, subject, label, shard, count)
SELECT minute, kind, subject, label, 0, SUM(n) FROM (
    SELECT received_at / 60000 AS minute, 'delivery' AS kind, source AS subject,
        verdict AS label, COUNT(*) AS n
    FROM delivery_attempts GROUP BY 1, 3, 4
    UNION ALL
    SELECT received_at / 60000, 'refusal', source, substr(COALESCE(reason, ''), 1, 200), COUNT(*)
    FROM delivery_attempts WHERE verdict = 'rejected' GROUP BY 1, 3, 4
    UNION ALL
    SELECT received_at / 60000, 'event', source, '', COUNT(*) FROM events GROUP BY 1, 3
    UNION ALL
    SELECT created_at / 60000, 'execution', plugin, 'planned', COUNT(*)
    FROM executions GROUP BY 1, 3
    UNION ALL
    SELECT d.created_at / 60000, 'execution', x.plugin, 'dead', COUNT(*)
    FROM dead_letters d JOIN executions x ON x.id = d.execution_id GROUP BY 1, 3
    UNION ALL
    SELECT a.finished_at / 60000, 'call', x.plugin, a.outcome, COUNT(*)
    FROM execution_attempts a JOIN executions x ON x.id = a.execution_id GROUP BY 1, 3, 4
    UNION ALL
    SELECT minute, 'call_ms', plugin,
        CASE WHEN d <= 1 THEN '1' WHEN d <= 2 THEN '2' WHEN d <= 3 THEN '3' WHEN d <= 5 THEN '5'
        WHEN d <= 7 THEN '7' WHEN d <= 10 THEN '10' WHEN d <= 15 THEN '15' WHEN d <= 20 THEN
        '20' WHEN d <= 30 THEN '30' WHEN d <= 50 THEN '50' WHEN d <= 70 THEN '70' WHEN d <= 100
        THEN '100' WHEN d <= 150 THEN '150' WHEN d <= 200 THEN '200' WHEN d <= 300 THEN '300'
        WHEN d <= 500 THEN '500' WHEN d <= 700 THEN '700' WHEN d <= 1000 THEN '1000' WHEN d <=
        1500 THEN '1500' WHEN d <= 2000 THEN '2000' WHEN d <= 3000 THEN '3000' WHEN d <= 5000
        THEN '5000' WHEN d <= 7000 THEN '7000' WHEN d <= 10000 THEN '10000' WHEN d <= 15000 THEN
        '15000' WHEN d <= 20000 THEN '20000' WHEN d <= 30000 THEN '30000' WHEN d <= 60000 THEN
        '60000' WHEN d <= 120000 THEN '120000' WHEN d <= 300000 THEN '300000' WHEN d <= 600000
        THEN '600000' ELSE 'inf' END,
        COUNT(*)
    FROM (SELECT a.finished_at / 60000 AS minute, x.plugin, a.finished_at - a.started_at AS d
        FROM execution_attempts a JOIN executions x ON x.id = a.execution_id) c
    GROUP BY 1, 3, 4
) counted GROUP BY minute, kind, subject, label;
