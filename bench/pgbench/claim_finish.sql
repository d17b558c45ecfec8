-- One no-op job's life on the vidjobs claim path, as the runner sends it (batch size 1):
-- claim the next due pending job + its job.claimed outbox row in one transaction, then the
-- fenced finish + its job.succeeded outbox row in another. pgbench runs it prepared (-M
-- prepared); every statement is the one jobs/statements.py and jobs/outbox.py emit.
BEGIN;
UPDATE jobs SET status = 'running', attempts = jobs.attempts + 1, lease_owner = 'pgbench',
    lease_expires_at = statement_timestamp() + CAST(30.0 AS double precision) * interval '1 second',
    fencing_token = jobs.fencing_token + 1, progress = 0.0,
    updated_at = statement_timestamp(), started_at = statement_timestamp()
  WHERE jobs.id IN (SELECT jobs.id FROM jobs
                    WHERE jobs.status = 'pending' AND jobs.run_after <= statement_timestamp()
                    ORDER BY jobs.priority DESC, jobs.run_after, jobs.id
                    LIMIT 1 FOR UPDATE SKIP LOCKED)
    AND jobs.status = 'pending'
  RETURNING jobs.id AS job_id, jobs.fencing_token AS token, jobs.tenant_id AS tenant, jobs.key AS job_key, jobs.attempts AS attempts
\gset
INSERT INTO outbox (event_id, tenant_id, job_id, job_key, type, payload, created_at)
  VALUES (gen_random_uuid()::text, :tenant::text, :job_id::bigint, :job_key::text, 'job.claimed',
          jsonb_build_object('job_id', :job_id::bigint, 'tenant_id', :tenant::text, 'key', :job_key::text,
                             'status', 'running', 'attempts', :attempts::int,
                             'fencing_token', :token::bigint, 'owner', 'pgbench'),
          statement_timestamp())
  RETURNING outbox.id;
COMMIT;
BEGIN;
UPDATE jobs SET status = 'succeeded', output = '{"digest": "sha256:0", "size": 0}'::jsonb,
    progress = 1.0, lease_owner = NULL, lease_expires_at = NULL, error_code = NULL,
    error_message = NULL, finished_at = statement_timestamp(), updated_at = statement_timestamp()
  WHERE jobs.id = :job_id::bigint AND jobs.status = 'running' AND jobs.fencing_token = :token::bigint
  RETURNING jobs.id;
INSERT INTO outbox (event_id, tenant_id, job_id, job_key, type, payload, created_at)
  VALUES (gen_random_uuid()::text, :tenant::text, :job_id::bigint, :job_key::text, 'job.succeeded',
          jsonb_build_object('job_id', :job_id::bigint, 'tenant_id', :tenant::text, 'key', :job_key::text,
                             'status', 'succeeded', 'attempts', :attempts::int,
                             'fencing_token', :token::bigint,
                             'output', '{"digest": "sha256:0", "size": 0}'::jsonb),
          statement_timestamp())
  RETURNING outbox.id;
COMMIT;
