-- The run queue's statements on SQLite (see queue.postgresql.sql for the why of
-- each; the differences: one writer at a time, so no row locks to skip; a run's
-- start is stored by the caller in the claim's transaction; the planner, without
-- statistics, is told which index walks the queue: INDEXED BY ix_runs_queued, as
-- without it the planner sorted every queued run).


-- name: heads
ns(namespace) AS (
    SELECT (SELECT r.namespace FROM runs r INDEXED BY ix_runs_queued
            WHERE r.status = 'queued' AND {not_held_back}
            ORDER BY r.namespace, r.priority DESC, r.created_at, r.id LIMIT 1)
    UNION ALL
    SELECT (SELECT r.namespace FROM runs r INDEXED BY ix_runs_queued
            WHERE r.status = 'queued' AND r.namespace > ns.namespace AND {not_held_back}
            ORDER BY r.namespace, r.priority DESC, r.created_at, r.id LIMIT 1)
    FROM ns WHERE ns.namespace IS NOT NULL
),
heads AS MATERIALIZED (
    SELECT ns.namespace,
           (SELECT max(r.priority) FROM runs r
            WHERE r.status = 'queued' AND r.namespace = ns.namespace
              AND {not_held_back}) AS p,
           (SELECT count(*) FROM runs r
            WHERE r.status = 'running' AND r.namespace = ns.namespace
              AND r.lease_expires_at >= :now) AS n,
           (SELECT min(json_extract(q.spec, '$.maxRunning')) FROM resources q
            WHERE q.namespace = ns.namespace AND q.kind = 'Quota') AS cap
    FROM ns WHERE ns.namespace IS NOT NULL
)


-- name: take
-- Take the chosen run; :started_events is 1 when the caller stores its run_started
-- event in the same transaction.
UPDATE runs
SET status = 'running', worker = :worker, started_at = coalesce(started_at, :now),
    lease_expires_at = :until, last_seq = last_seq + :started_events
WHERE id = (SELECT id FROM choice)
    AND (status = 'queued' OR (status = 'running' AND lease_expires_at < :now))
RETURNING *


-- name: claim_fair
WITH RECURSIVE {heads},
chosen AS (
    SELECT namespace, p FROM heads WHERE n < coalesce(cap, :max_running)
    ORDER BY p DESC, n, namespace LIMIT 1
),
choice AS (
    SELECT coalesce(
        (SELECT o.id FROM runs o WHERE o.status = 'running' AND o.lease_expires_at < :now
         ORDER BY o.priority DESC, o.created_at, o.id LIMIT 1),
        (SELECT r.id FROM runs r
         WHERE r.status = 'queued' AND r.namespace = (SELECT namespace FROM chosen)
           AND r.priority = (SELECT p FROM chosen) AND {not_held_back}
         ORDER BY r.created_at, r.id LIMIT 1)
    ) AS id
)
{take}


-- name: claim_next
WITH choice AS (
    SELECT r.id FROM runs r INDEXED BY ix_runs_queued
    WHERE r.status = 'queued' AND r.namespace = :namespace AND {not_held_back}
    ORDER BY r.namespace, r.priority DESC, r.created_at, r.id LIMIT 1
)
{take}


-- name: queue_view
WITH RECURSIVE {heads}
SELECT h.namespace, h.p, h.n, h.cap,
    EXISTS (SELECT 1 FROM runs o
            WHERE o.status = 'running' AND o.lease_expires_at < :now) AS expired
FROM heads h


-- name: create
-- A new run; the caller stores its first events (last_seq of them) in the same
-- transaction.
INSERT INTO runs (id, namespace, agent, agent_generation, status, reason, input, output,
    error, usage, last_seq, cancel_requested, worker, created_at, started_at, parent_id,
    depth, trace_context, lease_expires_at, priority, session_id, user_id, key_id)
VALUES (:id, :namespace, :agent, :agent_generation, :status, :reason, :input, :output,
    :error, :usage, :last_seq, 0, :worker, :created_at, :started_at, :parent_id, :depth,
    :trace_context, :lease_expires_at, :priority, :session_id, :user_id, :key_id)


-- name: not_held_back
-- Not a run of an agent whose Model has no room in the claiming process
-- (:held_back: a JSON array of 'namespace/agent', NULL for none).
(:held_back IS NULL
 OR r.namespace || '/' || r.agent NOT IN (SELECT value FROM json_each(:held_back)))
