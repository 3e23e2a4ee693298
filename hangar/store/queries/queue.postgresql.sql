-- The run queue's statements on PostgreSQL, run on asyncpg's pool (the hot path).
-- Loaded by hangar.store.named_sql: a block starts with "-- name: NAME", its
-- comment lines say why, "{NAME}" includes another block of this file, ":name" is a
-- parameter. Each claim walks an index in small steps (one probe each), never a sort
-- of the whole queue, and skips rows other claimers hold (SKIP LOCKED).


-- name: heads
-- Each namespace with queued runs: its best priority p, its runs running n, its
-- limit cap (its Quota's; NULL: the default). The namespaces are walked one index
-- probe each (a loose index scan: a recursive CTE, as PostgreSQL lacks a skip scan),
-- ordered by all of ix_runs_queued's columns so the planner takes that index (of
-- queued runs only) over any other that leads with the namespace.
ns(namespace) AS (
    SELECT (SELECT r.namespace FROM runs r WHERE r.status = 'queued' AND {not_held_back}
            ORDER BY r.namespace, r.priority DESC, r.created_at, r.id LIMIT 1)
    UNION ALL
    SELECT (SELECT r.namespace FROM runs r
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
              AND r.lease_expires_at >= :now AND r.id <> :ending) AS n,
           (SELECT min(CAST(q.spec ->> 'maxRunning' AS INTEGER)) FROM resources q
            WHERE q.namespace = ns.namespace AND q.kind = 'Quota') AS cap
    FROM ns WHERE ns.namespace IS NOT NULL
)


-- name: fair_choice
-- The fair choice: a run whose worker died comes first (it was claimed before
-- anything queued now); else, among the namespaces under their limit, the one with
-- the highest priority, then the fewest running (fair share), then its oldest run at
-- that priority. (One query ordering every queued run by its namespace's count of
-- running runs took 4.6 s per claim at 20,000 queued.) Never the run :ending (a run
-- being ended in the same statement: its lease may have run out while it was held;
-- '' when none).
WITH RECURSIVE {heads},
chosen AS (
    SELECT namespace, p FROM heads WHERE n < coalesce(cap, :max_running)
    ORDER BY p DESC, n, namespace LIMIT 1
),
choice AS (
    SELECT coalesce(
        (SELECT o.id FROM runs o
         WHERE o.status = 'running' AND o.lease_expires_at < :now AND o.id <> :ending
         ORDER BY o.priority DESC, o.created_at, o.id LIMIT 1 FOR UPDATE SKIP LOCKED),
        (SELECT r.id FROM runs r
         WHERE r.status = 'queued' AND r.namespace = (SELECT namespace FROM chosen)
           AND r.priority = (SELECT p FROM chosen) AND {not_held_back}
         ORDER BY r.created_at, r.id LIMIT 1 FOR UPDATE SKIP LOCKED)
    ) AS id
)


-- name: next_choice
-- The next run of the namespace :namespace, which the process chose from its look
-- at the queue (hangar.runtime.queue): one probe, its first entry in ix_runs_queued.
-- Under four busy worker processes the fair choice's probes in every claim cost a
-- third of their throughput.
WITH RECURSIVE choice AS (
    SELECT r.id FROM runs r
    WHERE r.status = 'queued' AND r.namespace = :namespace AND {not_held_back}
    ORDER BY r.namespace, r.priority DESC, r.created_at, r.id LIMIT 1 FOR UPDATE SKIP LOCKED
)


-- name: take
-- Take the chosen run if the statement's gate is open, and store its run_started
-- event (:started, marked resumed when the run had events before) in the same
-- statement when :started is given.
claimed AS (
    UPDATE runs
    SET status = 'running', worker = :worker, started_at = coalesce(started_at, :now),
        lease_expires_at = :until,
        last_seq = last_seq + CASE WHEN CAST(:started AS jsonb) IS NULL THEN 0 ELSE 1 END
    WHERE id = (SELECT id FROM choice) AND (SELECT open FROM gate)
        AND (status = 'queued' OR (status = 'running' AND lease_expires_at < :now))
    RETURNING *
),
started AS (
    INSERT INTO run_events (run_id, seq, namespace, type, data, created_at)
    SELECT id, last_seq, namespace, 'run_started',
        CASE WHEN last_seq > 1 THEN CAST(:started AS jsonb) || '{"resumed": true}'
             ELSE CAST(:started AS jsonb) END, :now
    FROM claimed WHERE CAST(:started AS jsonb) IS NOT NULL
)


-- name: claim_fair
{fair_choice},
gate AS (SELECT true AS open),
{take}
SELECT * FROM claimed


-- name: claim_next
{next_choice},
gate AS (SELECT true AS open),
{take}
SELECT * FROM claimed


-- name: end
-- End the run :run_id and store its last events (:types and :data, in order), while
-- held by :holder unless that is NULL.
changed AS (
    UPDATE runs SET status = :status, reason = :reason,
        last_seq = last_seq + cardinality(CAST(:types AS text[])),
        finished_at = coalesce(:finished_at, finished_at),
        timing = coalesce(CAST(:timing AS jsonb), timing),
        output = coalesce(CAST(:output AS jsonb), output),
        error = coalesce(CAST(:error AS jsonb), error),
        usage = coalesce(CAST(:usage AS jsonb), usage)
    WHERE id = :run_id
        AND (CAST(:holder AS text) IS NULL OR (worker = :holder AND status = 'running'))
    RETURNING *
),
stored AS (
    INSERT INTO run_events (run_id, seq, namespace, type, data, created_at)
    SELECT c.id, c.last_seq - cardinality(CAST(:types AS text[])) + e.n, c.namespace,
        e.type, e.data, :now
    FROM changed c,
        unnest(CAST(:types AS text[]), CAST(:data AS jsonb[])) WITH ORDINALITY AS e(type, data, n)
)


-- name: finish
-- A run's end and its last events as one statement: through SQLAlchemy it took four
-- round trips and a transaction of its own, the worker's costliest call per run.
WITH {end}
SELECT * FROM changed


-- name: finish_and_claim_fair
-- A held run's end and the slot's next claim in one statement. The claim happens
-- only if the end did (the run was still held); rows come back marked finished or
-- not. The run being ended (:ending = :run_id) is neither claimed nor counted as
-- running (the statement sees the table as it was).
{fair_choice},
{end},
gate AS (SELECT EXISTS (SELECT 1 FROM changed) AS open),
{take}
SELECT true AS finished, * FROM changed UNION ALL SELECT false, * FROM claimed


-- name: finish_and_claim_next
{next_choice},
{end},
gate AS (SELECT EXISTS (SELECT 1 FROM changed) AS open),
{take}
SELECT true AS finished, * FROM changed UNION ALL SELECT false, * FROM claimed


-- name: queue_view
-- What the fair choice depends on: the namespaces' heads, and whether a run's lease
-- ran out.
WITH RECURSIVE {heads}
SELECT h.namespace, h.p, h.n, h.cap,
    EXISTS (SELECT 1 FROM runs o
            WHERE o.status = 'running' AND o.lease_expires_at < :now) AS expired
FROM heads h


-- name: statistics_stale
-- Whether autovacuum's own rule says the runs table's statistics are stale (changes
-- since the last analyse over 50 + 10% of the rows).
SELECT s.n_mod_since_analyze > 50 + 0.1 * greatest(s.n_live_tup, c.reltuples)
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.relid = 'runs'::regclass


-- name: analysing
-- Take (:take) or give back the lock that lets one process at a time analyse.
SELECT CASE WHEN :take
            THEN pg_try_advisory_lock(hashtext('hangar analyse ' || current_schema()))
            ELSE pg_advisory_unlock(hashtext('hangar analyse ' || current_schema())) END


-- name: create
-- A new run and its first events (a run created claimed, handed to a worker at once,
-- has its run_started) as one statement on the driver: through SQLAlchemy, a
-- transaction and three round trips. The events' insert runs even when it selects
-- nothing, as every data-changing part of a WITH does.
WITH created AS (
    INSERT INTO runs (id, namespace, agent, agent_generation, status, reason, input,
        output, error, usage, last_seq, cancel_requested, worker, created_at, started_at,
        parent_id, depth, trace_context, lease_expires_at, priority, session_id, user_id,
        key_id)
    VALUES (:id, :namespace, :agent, :agent_generation, :status, :reason, :input::jsonb,
        :output::jsonb, :error::jsonb, :usage::jsonb, :last_seq, false,
        :worker, :created_at, :started_at, :parent_id, :depth, :trace_context,
        :lease_expires_at, :priority, :session_id, :user_id, :key_id)
    RETURNING id
)
INSERT INTO run_events (run_id, seq, namespace, type, data, created_at)
SELECT c.id, e.i, :namespace, e.type, e.data, :created_at
FROM created c, unnest(:types::text[], :data::jsonb[]) WITH ORDINALITY AS e(type, data, i)


-- name: get_run
SELECT * FROM runs WHERE namespace = :namespace AND id = :run_id


-- name: not_held_back
-- Not a run of an agent whose Model has no room in the claiming process
-- (:held_back: 'namespace/agent' each, NULL for none: then the check costs nothing).
(CAST(:held_back AS text[]) IS NULL
 OR r.namespace || '/' || r.agent <> ALL (CAST(:held_back AS text[])))
