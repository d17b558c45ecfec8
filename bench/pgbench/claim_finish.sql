-- One no-op job's life on the vidjobs claim path, as the runner sends it on PostgreSQL
-- (batch size 1): the claim of the next due pending job together with its job.claimed
-- outbox row as ONE statement (a data-modifying CTE, its own implicit transaction), then
-- the fenced finish together with its job.succeeded outbox row as ONE statement. These are
-- the statements of jobs/statements.py (claim_due_pending_batch_with_events and
-- finish_succeeded_many_if_fenced_with_events); pgbench runs them prepared (-M prepared).
WITH due AS (
    SELECT id FROM jobs
    WHERE status = 'pending' AND run_after <= statement_timestamp()
    ORDER BY priority DESC, run_after, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), changed AS (
    UPDATE jobs SET status = 'running', lease_owner = 'pgbench',
        lease_expires_at = statement_timestamp() + 30.0::float8 * interval '1 second',
        fencing_token = jobs.fencing_token + 1, attempts = jobs.attempts + 1, progress = 0.0,
        started_at = statement_timestamp(), updated_at = statement_timestamp()
    WHERE jobs.id IN (SELECT id FROM due) AND jobs.status = 'pending'
    RETURNING jobs.*
), event AS (
    INSERT INTO outbox (event_id, tenant_id, job_id, job_key, type, payload, created_at)
    SELECT gen_random_uuid()::text, changed.tenant_id, changed.id, changed.key, 'job.claimed',
        jsonb_build_object('job_id', changed.id, 'tenant_id', changed.tenant_id, 'key', changed.key,
                           'status', changed.status, 'attempts', changed.attempts,
                           'fencing_token', changed.fencing_token, 'owner', 'pgbench'),
        statement_timestamp()
    FROM changed ORDER BY changed.id RETURNING *
)
SELECT changed.id AS job_id, changed.fencing_token AS token FROM changed JOIN event ON event.job_id = changed.id
\gset
WITH finished AS (
    SELECT * FROM unnest(ARRAY[:job_id]::bigint[], ARRAY[:token]::bigint[],
                         ARRAY['{"digest": "sha256:0", "size": 0}']::text[])
        WITH ORDINALITY AS f(id, token, output, ord)
), changed AS (
    UPDATE jobs SET status = 'succeeded', output = finished.output::jsonb, progress = 1.0,
        lease_owner = NULL, lease_expires_at = NULL, error_code = NULL, error_message = NULL,
        finished_at = statement_timestamp(), updated_at = statement_timestamp()
    FROM finished
    WHERE jobs.id = finished.id AND jobs.status = 'running' AND jobs.fencing_token = finished.token
    RETURNING jobs.*, finished.ord
), event AS (
    INSERT INTO outbox (event_id, tenant_id, job_id, job_key, type, payload, created_at)
    SELECT gen_random_uuid()::text, changed.tenant_id, changed.id, changed.key, 'job.succeeded',
        jsonb_build_object('job_id', changed.id, 'tenant_id', changed.tenant_id, 'key', changed.key,
                           'status', changed.status, 'attempts', changed.attempts,
                           'fencing_token', changed.fencing_token, 'output', changed.output),
        statement_timestamp()
    FROM changed ORDER BY changed.ord RETURNING *
)
SELECT count(*) FROM changed JOIN event ON event.job_id = changed.id;
