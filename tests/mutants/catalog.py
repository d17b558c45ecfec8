"""The named mutants: one or more per DESIGN.md invariant and per security rule.

Each breaks exactly one guarantee, in the code that carries it, and names the tests that
must fail. Tests are behaviour-level (events, rows, what a client or consumer sees), so a
refactor that keeps the behaviour only has to move a snippet, not the test list.
"""

from __future__ import annotations

from tests.mutants.model import Edit, Mutant, m

ST = "jobs/statements.py"
FE = "jobs/fenced.py"
PG = "jobs/pgsql.py"
SL = "jobs/setlists.py"
OC = "jobs/outcomes.py"
SV = "jobs/service.py"
CL = "jobs/claims.py"
RUN = "workers/ffmpeg/run.py"
AVCHILD = "workers/ffmpeg/avchild.py"
HARDENED = "workers/ffmpeg/hardened.py"
CMD = "workers/ffmpeg/command.py"

T_CLAIMS = "tests/integration/test_claims.py"
T_SUBMIT = "tests/integration/test_submission.py"
T_EVENTS = "tests/integration/test_event_sequences.py"
T_API = "tests/integration/test_api.py"
T_PIPE = "tests/bus/test_pipeline.py"
T_HOSTILE = "tests/ffmpeg/test_ffmpeg_hostile.py"
T_RUN = "tests/ffmpeg/test_ffmpeg_run.py"

ZOMBIE = f"{T_CLAIMS}::test_zombie_worker_cannot_heartbeat_or_finish"
LOST_LEASE = "tests/integration/test_runner.py::test_a_worker_that_loses_its_lease_stops_and_attaches_nothing"
CLOCK = f"{T_CLAIMS}::test_lease_expiry_uses_the_database_clock"
CANCEL_EVENTS = f"{T_EVENTS}::test_cancels_and_a_cancel_request_each_write_their_event"
RESCUE_EVENTS = f"{T_EVENTS}::test_rescues_write_requeued_then_failed_when_attempts_run_out"
PROTOCOL = f"{T_HOSTILE}::test_the_protocol_allowlist_alone_stops_a_playlist_reaching_past_file"
FFMPEG_PROTOCOL = f"{T_HOSTILE}::test_ffmpegs_own_inputs_keep_to_the_file_protocol"

# A lease computed by the worker's own clock instead of the database's (mutants only).
_WORKER_CLOCK = """

def _worker_clock(seconds: float) -> Any:  # MUTANT: this process's clock, not the database's
    import datetime
    import time

    at = datetime.datetime.fromtimestamp(time.time() + seconds, datetime.UTC)
    return sa.literal(at, db_now.type)
"""

MUTANTS: tuple[Mutant, ...] = (
    # --- 1. deterministic keys ---------------------------------------------------------
    m(
        "key-ignores-tenant",
        "inv 1: keys derive from the tenant",
        "jobs/keys.py",
        'canonical_json({"v": KEY_VERSION, "tenant": tenant_id, "edit": edit})',
        'canonical_json({"v": KEY_VERSION, "edit": edit})',
        "tests/unit/test_keys.py::test_tenants_get_different_keys",
    ),
    m(
        "key-json-unsorted",
        "inv 1: canonical JSON (sorted keys)",
        "jobs/keys.py",
        "value, sort_keys=True, separators",
        "value, sort_keys=False, separators",
        "tests/unit/test_keys.py::test_golden_keys_are_pinned",
        "tests/unit/test_keys.py::test_canonical_json_is_byte_stable",
    ),
    m(
        "key-includes-priority",
        "inv 1: fields that do not change the output are not in the key",
        "jobs/canonical.py",
        'edit = {"source": source, "operations": ops, "output": canonical_output(req)}',
        'edit = {"source": source, "operations": ops, "output": canonical_output(req),'
        ' "priority": req.priority}',
        "tests/unit/test_keys.py::test_key_ignores_priority_attempts_and_labels",
    ),
    # --- 2. one row per key --------------------------------------------------------------
    m(
        "insert-without-on-conflict",
        "inv 2: INSERT ... ON CONFLICT DO NOTHING",
        ST,
        '            .on_conflict_do_nothing(index_elements=["tenant_id", "key"])\n'
        "            .returning(*c)\n",
        "            .returning(*c)\n",
        f"{T_SUBMIT}::test_fifty_concurrent_identical_submissions_make_one_row",
        "tests/integration/test_api.py::test_fifty_concurrent_posts_one_201",
    ),
    # --- 3. duplicates are answered, not re-processed ------------------------------------
    m(
        "succeeded-duplicate-runs-again",
        "inv 3: a succeeded key is answered with its job",
        "jobs/status.py",
        "RERUNNABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})",
        "RERUNNABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SUCCEEDED})",
        f"{T_SUBMIT}::test_a_succeeded_key_is_answered_and_not_run_again",
        more=(
            Edit(
                ST,
                "RERUNNABLE = (FAILED, CANCELLED)",
                "RERUNNABLE = (FAILED, CANCELLED, SUCCEEDED)",
            ),
        ),
    ),
    m(
        "duplicate-reject-ignored",
        "inv 3: on_duplicate=reject answers 409",
        SV,
        "                if on_duplicate is OnDuplicate.REJECT:\n                    raise duplicate_of(existing)\n",
        "",
        f"{T_SUBMIT}::test_duplicate_returns_existing_or_rejects",
        f"{T_API}::test_submit_then_duplicate_then_reject",
    ),
    m(
        "duplicate-not-marked-replayed",
        "inv 3: Idempotent-Replayed: true on a duplicate",
        "jobs/api/routes.py",
        '"Idempotent-Replayed": "true" if result.replayed else "false",',
        '"Idempotent-Replayed": "false",',
        f"{T_API}::test_submit_then_duplicate_then_reject",
    ),
    # --- 4. claims are conditional updates -----------------------------------------------
    m(
        "claim-by-key-ignores-status",
        "inv 4: claim only WHERE status = 'pending'",
        FE,
        "            c.key == key,\n            c.status == PENDING,\n            c.run_after <= db_now(),\n",
        "            c.key == key,\n            c.run_after <= db_now(),\n",
        f"{T_CLAIMS}::test_claim_by_key_has_one_winner",
    ),
    m(
        "batch-claim-neither-locks-nor-rechecks",
        "inv 4: batch claims lock (SKIP LOCKED) or re-check pending",
        PG,
        "greatest(turn.max_running - turn.running, 0)) END\n        FOR UPDATE SKIP LOCKED\n",
        "greatest(turn.max_running - turn.running, 0)) END\n",
        f"{T_CLAIMS}::test_eight_concurrent_claimers_take_each_job_once[postgres]",
        more=(
            Edit(
                PG,
                "    WHERE jobs.id IN (SELECT id FROM due) AND jobs.status = '{PENDING}'\n",
                "    WHERE jobs.id IN (SELECT id FROM due)\n",
            ),
        ),
    ),
    m(
        "claim-keeps-fencing-token",
        "inv 4: a claim increments the fencing token (its SET list, on both databases)",
        SL,
        '"fencing_token": c.fencing_token + 1,',
        '"fencing_token": c.fencing_token,',
        ZOMBIE,
    ),
    m(
        "lease-from-worker-clock",
        "inv 4: lease expiry from the database clock (claim by key, SQLite batch, heartbeat)",
        FE,
        '    return claim_values(owner, sa.bindparam("lease_s", lease_seconds, sa.Float))\n',
        '    values = claim_values(owner, sa.bindparam("lease_s", lease_seconds, sa.Float))\n'
        '    return {**values, "lease_expires_at": _worker_clock(lease_seconds)}\n',
        CLOCK,
        more=(
            Edit(
                FE,
                '        "lease_expires_at": db_now(sa.bindparam("lease_s", lease_seconds, sa.Float)),\n'
                '        "updated_at": db_now(),\n',
                '        "lease_expires_at": _worker_clock(lease_seconds),\n'
                '        "updated_at": db_now(),\n',
            ),
            Edit(
                FE,
                "_PENDING_LITERAL = sa.literal_column(f\"'{PENDING}'\", sa.String)\n",
                "_PENDING_LITERAL = sa.literal_column(f\"'{PENDING}'\", sa.String)\n"
                + _WORKER_CLOCK,
            ),
        ),
    ),
    m(
        "lease-from-worker-clock-pg-statement",
        "inv 4: lease expiry from the database clock (PostgreSQL one-statement claims)",
        PG,
        "    values = setlists.claim_values(sa.literal_column(owner), sa.literal_column(lease_seconds))\n",
        "    values = setlists.claim_values(sa.literal_column(owner), sa.literal_column(lease_seconds))\n"
        '    values["lease_expires_at"] = sa.literal_column(f"to_timestamp({lease_seconds}::float8)")\n',
        f"{CLOCK}[postgres]",
        more=(
            Edit(
                FE,
                "*arrays, owner, float(lease_seconds), max(0, limit))",
                '*arrays, owner, __import__("time").time() + float(lease_seconds), max(0, limit))',
            ),
        ),
    ),
    # --- 5. fencing ------------------------------------------------------------------------
    m(
        "heartbeat-unfenced",
        "inv 5: heartbeats carry the fencing token",
        FE,
        "stmt = sa.update(jobs).where(*_fenced(job_id, token)).values(**values).returning(*c)",
        "stmt = sa.update(jobs).where(c.id == job_id).values(**values).returning(*c)",
        ZOMBIE,
        LOST_LEASE,
    ),
    m(
        "finish-unfenced",
        "inv 5: the outcomes' one statement carries the fencing token (PostgreSQL)",
        PG,
        "    WHERE jobs.id = o.id AND jobs.status = '{RUNNING}' AND jobs.fencing_token = o.token\n",
        "    WHERE jobs.id = o.id\n",
        ZOMBIE,
        LOST_LEASE,
    ),
    m(
        "record-one-unfenced",
        "inv 5: an outcome's own statement (SQLite; task rows) carries the fencing token",
        FE,
        "        .where(*_fenced(o.job.id or 0, o.job.fencing_token))\n",
        "        .where(c.id == o.job.id)\n",
        ZOMBIE,
        LOST_LEASE,
        note="one statement for every kind (the kind's SET list from jobs.setlists), so "
        "one mutant stands for the former finish/fail/cancel/release ones on SQLite",
    ),
    m(
        "rescue-without-status-and-token",
        "inv 5: a rescue re-checks status and token",
        FE,
        ".where(*_fenced(job_id, token), c.lease_expires_at < db_now())",
        ".where(c.id == job_id, c.lease_expires_at < db_now())",
        f"{T_CLAIMS}::test_rescue_does_not_undo_a_finish_between_its_read_and_write",
        equivalent=(
            "every transition out of running clears lease_expires_at (NULL never compares "
            "< now), and a re-claim sets a fresh lease; so the expiry check alone already "
            "matches only the expired run that select_expired_leases saw, or a later run "
            "whose lease also expired (rescuing that one is right too)"
        ),
    ),
    # --- 6. transactional outbox -------------------------------------------------------------
    m(
        "cancel-pending-writes-no-event",
        "inv 6: every state change writes its outbox row",
        SV,
        "            events.append(await outbox.insert_event(conn, changed, event))\n",
        "            if event is not EventType.CANCELLED:\n"
        "                events.append(await outbox.insert_event(conn, changed, event))\n",
        CANCEL_EVENTS,
    ),
    m(
        "cancel-request-writes-no-event",
        "inv 6: every state change writes its outbox row",
        SV,
        "            events.append(await outbox.insert_event(conn, changed, event))\n",
        "            if event is not EventType.CANCEL_REQUESTED:\n"
        "                events.append(await outbox.insert_event(conn, changed, event))\n",
        CANCEL_EVENTS,
    ),
    m(
        "worker-cancel-writes-no-event",
        "inv 6: every state change writes its outbox row (a worker's cancel: job.cancelled)",
        OC,
        "    OutcomeKind.CANCELLED: (EventType.CANCELLED, {}),",
        "    OutcomeKind.CANCELLED: (EventType.REQUEUED, {}),",
        CANCEL_EVENTS,
    ),
    m(
        "rescue-writes-no-event",
        "inv 6: every state change writes its outbox row",
        CL,
        '                events.append(await outbox.insert_event(conn, row, type_, reason="lease_expired"))\n',
        "                pass  # MUTANT: no outbox row\n",
        RESCUE_EVENTS,
    ),
    m(
        "submit-row-commits-before-its-event",
        "inv 6: the outbox row is written in the transaction of the change",
        SV,
        "        new = await statements.insert_jobs_if_absent(\n            conn,\n",
        "        async with self.db.engine.begin() as own:  # MUTANT: its own transaction\n"
        "            new = await statements.insert_jobs_if_absent(\n                own,\n",
        f"{T_SUBMIT}::test_rolled_back_submission_leaves_no_job_and_no_outbox_row[postgres]",
    ),
    m(
        "relay-marks-before-publishing",
        "inv 6/7: rows are marked published only after the broker's ack",
        "workers/relay.py",
        "            with tracing.publishing([message_for(r) for r in rows], self.bus.topic) as messages:\n"
        "                await self.publisher.publish(messages)\n"
        "            ids = [row.id for row in rows if row.id is not None]\n"
        "            async with self.leadership.transaction() as conn:\n"
        "                await outbox.mark_published(conn, ids)\n",
        "            ids = [row.id for row in rows if row.id is not None]\n"
        "            async with self.leadership.transaction() as conn:\n"
        "                await outbox.mark_published(conn, ids)\n"
        "            with tracing.publishing([message_for(r) for r in rows], self.bus.topic) as messages:\n"
        "                await self.publisher.publish(messages)\n",
        f"{T_PIPE}::test_a_failed_publish_is_retried_and_every_event_arrives",
    ),
    m(
        "relay-high-water-mark",
        "inv 6: the relay never uses a high-water mark",
        "jobs/outbox.py",
        "    stmt = (\n"
        "        sa.select(outbox).where(outbox.c.published_at.is_(None)).order_by(outbox.c.id).limit(limit)\n",
        "    hw = outbox.alias('hw')  # MUTANT: only ids above the highest published one\n"
        "    mark = sa.select(sa.func.coalesce(sa.func.max(hw.c.id), 0))"
        ".where(hw.c.published_at.is_not(None)).scalar_subquery()\n"
        "    stmt = (\n"
        "        sa.select(outbox).where(outbox.c.published_at.is_(None), outbox.c.id > mark)"
        ".order_by(outbox.c.id).limit(limit)\n",
        "tests/kafka/test_relay_fleet.py::test_a_row_committed_after_a_later_one_is_still_published",
    ),
    # --- 7. at-least-once delivery, exactly-once effect ----------------------------------------
    m(
        "worker-skips-seen-check",
        "inv 7: consumers skip event ids they have seen",
        CL,
        "                if not await outbox.record_processed_if_new(conn, consumer, event_id):\n"
        "                    return None\n",
        "                await outbox.record_processed_if_new(conn, consumer, event_id)\n",
        f"{T_CLAIMS}::test_claim_by_key_records_the_event_id_and_skips_it_when_seen_again",
    ),
    m(
        "worker-records-no-event-id",
        "inv 7: consumers record the event id with the effect",
        CL,
        "            if consumer is not None and event_id is not None:\n",
        "            if consumer is not None and event_id is not None and False:  # MUTANT\n",
        f"{T_CLAIMS}::test_claim_by_key_records_the_event_id_and_skips_it_when_seen_again",
    ),
    m(
        "ledger-skips-seen-check",
        "inv 7: the ledger counts each event id once",
        "workers/ledger.py",
        "            if not await outbox.record_processed_if_new(conn, self.group, event.event_id):\n"
        "                self.duplicates += 1\n"
        '                return "duplicate"\n',
        "            await outbox.record_processed_if_new(conn, self.group, event.event_id)\n",
        f"{T_PIPE}::test_relay_killed_after_ack_before_marking_publishes_twice_effects_once",
    ),
    # --- 8. outputs are immutable ------------------------------------------------------------
    m(
        "ffmpeg-writes-outside-its-workdir",
        "inv 8: ffmpeg writes to a private temp path",
        "workers/ffmpeg/executor.py",
        'out = ctx.workdir / f"output-{secrets.token_hex(8)}.{container.value}"',
        'out = ctx.workdir.parent / f"output.{container.value}"  # MUTANT: shared, predictable',
        "tests/ffmpeg/test_ffmpeg_ops.py::test_plain_transcode_keeps_size_duration_and_audio",
    ),
    m(
        "stored-output-rewritten-in-place",
        "inv 8: a stored output is never rewritten",
        "jobs/storage/local.py",
        "                os.link(path, final)  # fails if present: the first writer's bytes stay\n",
        "                final.unlink(missing_ok=True)  # MUTANT: the new copy replaces the stored\n"
        "                os.link(path, final)\n",
        "tests/unit/test_stored_outputs.py",
    ),
    # --- 9 and security: untrusted input ---------------------------------------------------------
    m(
        "ffmpeg-through-a-shell",
        "sec: no user text reaches a shell (argv only)",
        RUN,
        "    proc = await asyncio.create_subprocess_exec(\n        *command,\n",
        '    proc = await asyncio.create_subprocess_shell(\n        " ".join(command),\n',
        "tests/ffmpeg/test_ffmpeg_ops.py::test_watermark_in_a_corner",
    ),
    m(
        "ffmpeg-reads-stdin",
        "inv 9: ffmpeg runs with no stdin",
        "workers/ffmpeg/hardened.py",
        'GLOBAL_ARGS = ("-nostdin", "-hide_banner",',
        'GLOBAL_ARGS = ("-hide_banner",',
        "tests/ffmpeg/test_ffmpeg_command.py::test_argv_holds_only_expected_tokens",
        more=(Edit(RUN, "        stdin=asyncio.subprocess.DEVNULL,\n", "        stdin=None,\n"),),
        note="caught by an argv-shape test only",
    ),
    m(
        "stored-spec-not-revalidated",
        "sec: nothing reaches a filter graph unchecked",
        CMD,
        "        return EditRequest.model_validate(data)\n",
        "        return EditRequest.model_construct(**data)\n",
        "tests/ffmpeg/test_ffmpeg_command.py::test_a_tampered_spec_is_revalidated",
    ),
    m(
        "unbounded-scale",
        "inv 9: operations have bounded numbers",
        "jobs/operations.py",
        "    width: int | None = Field(default=None, ge=16, le=7680)\n"
        "    height: int | None = Field(default=None, ge=16, le=4320)\n\n"
        '    @model_validator(mode="after")\n    def _one_side(self) -> Scale:',
        "    width: int | None = Field(default=None, ge=16)\n"
        "    height: int | None = Field(default=None, ge=16)\n\n"
        '    @model_validator(mode="after")\n    def _one_side(self) -> Scale:',
        "tests/unit/test_spec.py::test_error_names_the_json_path_and_what_is_allowed",
    ),
    m(
        "no-format-whitelist",
        "inv 9: a demuxer allowlist on every input the probe opens",
        AVCHILD,
        '    opts = {"protocol_whitelist": "file", "format_whitelist": whitelist}',
        '    opts = {"protocol_whitelist": "file"}',
        f"{T_HOSTILE}::test_hls_playlist_is_refused_without_reading_what_it_names",
        f"{T_HOSTILE}::test_concat_list_with_absolute_paths_is_refused",
    ),
    m(
        "no-protocol-whitelist-on-inputs",
        "inv 9: -protocol_whitelist file on every input of an ffmpeg command",
        HARDENED,
        '    options |= {"protocol_whitelist": "file", "format_whitelist": FORMAT_WHITELIST}',
        '    options |= {"format_whitelist": FORMAT_WHITELIST}',
        FFMPEG_PROTOCOL,
        more=(
            Edit(  # and the check that every input was made by hardened.source
                HARDENED,
                '            if kw.get("protocol_whitelist") != "file" or "format_whitelist" not in kw:',
                '            if "format_whitelist" not in kw:',
            ),
        ),
    ),
    m(
        "no-protocol-whitelist-anywhere",
        "inv 9: protocol_whitelist file on the probe, the keyframe reader, ffmpeg's inputs and output",
        HARDENED,
        '    options |= {"protocol_whitelist": "file", "format_whitelist": FORMAT_WHITELIST}',
        '    options |= {"format_whitelist": FORMAT_WHITELIST}',
        FFMPEG_PROTOCOL,
        PROTOCOL,
        more=(
            Edit(
                HARDENED,
                '            if kw.get("protocol_whitelist") != "file" or "format_whitelist" not in kw:',
                '            if "format_whitelist" not in kw:',
            ),
            Edit(
                HARDENED,
                '        file_arg(path),\n        protocol_whitelist="file",\n        map_metadata',
                "        file_arg(path),\n        map_metadata",
            ),
            Edit(
                HARDENED,
                '            if not null and kw.get("protocol_whitelist") != "file":',
                "            if False:",
            ),
            Edit(
                AVCHILD,
                '    opts = {"protocol_whitelist": "file", "format_whitelist": whitelist}',
                '    opts = {"format_whitelist": whitelist}',
            ),
            Edit(
                "workers/ffmpeg/kfchild.py",
                '    opts = {"protocol_whitelist": "file", "format_whitelist": whitelist}',
                '    opts = {"format_whitelist": whitelist}',
            ),
        ),
    ),
    m(
        "no-rlimits",
        "inv 9: ffmpeg runs under resource limits",
        RUN,
        "    command, preexec = contained(argv, limits.rlimits(timeout_s))\n",
        "    command, preexec = list(argv), None  # MUTANT: no limits\n",
        f"{T_RUN}::test_cpu_limit_stops_a_runaway_encode",
        f"{T_RUN}::test_file_size_limit_stops_a_growing_output",
    ),
    m(
        "no-wall-clock-limit",
        "inv 9: ffmpeg runs under a wall-clock limit",
        RUN,
        "        async with asyncio.timeout(timeout_s):\n",
        "        async with asyncio.timeout(None):\n",
        f"{T_RUN}::test_timeout_kills_the_process_group",
    ),
    m(
        "source-path-outside-roots",
        "sec: paths only inside the configured source roots",
        "jobs/keys.py",
        "        if any(real.is_relative_to(root) for root in roots) and real.is_file():\n",
        "        if real.is_file():\n",
        f"{T_SUBMIT}::test_symlink_out_of_the_source_root_is_refused",
        "tests/integration/test_security.py::test_path_traversal_is_refused",
    ),
    m(
        "job-lookup-ignores-tenant",
        "sec: tenants see only their own jobs",
        ST,
        "    stmt = sa.select(jobs).where(c.tenant_id == tenant_id, c.key == key)\n",
        "    stmt = sa.select(jobs).where(c.key == key)\n",
        f"{T_SUBMIT}::test_tenants_do_not_see_each_others_jobs",
        f"{T_API}::test_another_tenants_job_looks_missing",
        more=(
            Edit(
                PG,
                "FROM jobs WHERE tenant_id = $1 AND key = $2",
                "FROM jobs WHERE $1::text IS NOT NULL AND key = $2",
            ),
        ),
    ),
    m(
        "revoked-token-accepted",
        "sec: only live tokens authenticate a tenant",
        "jobs/tenants.py",
        '    " WHERE api_keys.token_hash = $1 AND api_keys.revoked_at IS NULL"\n',
        '    " WHERE api_keys.token_hash = $1"\n',
        f"{T_API}::test_a_revoked_token_is_refused_at_once",
        more=(
            Edit(
                "jobs/tenants.py",
                ".where(api_keys.c.token_hash == hash_token(token), api_keys.c.revoked_at.is_(None))",
                ".where(api_keys.c.token_hash == hash_token(token))",
            ),
        ),
    ),
    # --- guarantees added by the storage, scheduling and webhooks issues -------------------
    m(
        "foreign-digest-usable",
        "sec (tenants): a digest is usable only by a tenant that uploaded or produced it",
        "jobs/service.py",
        "            found = await owners.owns(conn, tenant.id, source.digest)\n",
        "            found = True  # MUTANT: any tenant's upload\n",
        "tests/integration/test_pinned_sources.py::test_another_tenants_digest_is_refused_exactly_like_an_unknown_one",
    ),
    m(
        "path-source-not-reverified",
        "inv 1/8: a worker encodes only the bytes its key names (pinned source content)",
        "workers/inputs.py",
        "        if found != digest:\n",
        "        if False:  # MUTANT: whatever the file holds now\n",
        "tests/integration/test_pinned_sources.py::test_a_path_source_changed_after_submission_fails_source_changed",
    ),
    m(
        "path-source-follows-symlinks",
        "sec (paths): a source replaced by a symlink is never read from outside the roots",
        "workers/inputs.py",
        "os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK",
        "os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK",
        "tests/integration/test_pinned_sources.py::test_a_path_source_changed_after_submission_fails_source_changed",
        more=(
            Edit(
                "workers/inputs.py",
                "        if real != path or not any(real.is_relative_to(r) for r in roots):\n",
                "        if False:  # MUTANT: no check of where the file really is\n",
            ),
        ),
    ),
    m(
        "claim-takes-low-priority-first",
        "scheduling: every claim takes the highest-priority due job",
        "jobs/pgsql.py",
        "    SELECT id FROM candidate ORDER BY priority DESC, turn, run_after, id LIMIT {limit}",
        "    SELECT id FROM candidate ORDER BY priority ASC, turn, run_after, id LIMIT {limit}",
        "tests/bus/test_scheduling.py::test_a_higher_priority_job_behind_a_backlog_starts_next",
        more=(
            Edit(
                FE,
                ".order_by(ranked.c.priority.desc(), turn, ranked.c.run_after, ranked.c.id)",
                ".order_by(ranked.c.priority.asc(), turn, ranked.c.run_after, ranked.c.id)",
            ),
        ),
        note="priority also orders each tenant's turns (its rank), so only an ordering that "
        "prefers low priority, not one that merely omits it here, can be seen by a test",
    ),
    m(
        "claim-ignores-tenant-turns",
        "scheduling: tenants of equal priority take turns (fair share)",
        "jobs/pgsql.py",
        "    SELECT id FROM candidate ORDER BY priority DESC, turn, run_after, id LIMIT {limit}",
        "    SELECT id FROM candidate ORDER BY priority DESC, run_after, id LIMIT {limit}",
        "tests/bus/test_scheduling.py::test_a_small_tenants_jobs_start_within_the_first_slots_beside_a_large_backlog",
        more=(
            Edit(
                FE,
                ".order_by(ranked.c.priority.desc(), turn, ranked.c.run_after, ranked.c.id)",
                ".order_by(ranked.c.priority.desc(), ranked.c.run_after, ranked.c.id)",
            ),
        ),
    ),
    m(
        "webhook-signature-without-timestamp",
        "webhooks: signatures follow Standard Webhooks ({id}.{timestamp}.{body})",
        "jobs/webhooks/signing.py",
        '    signed = f"{msg_id}.{timestamp}.".encode() + body\n',
        '    signed = f"{msg_id}.".encode() + body  # MUTANT: no timestamp\n',
        "tests/integration/test_webhooks_delivery.py::test_delivery_is_signed_per_standard_webhooks",
    ),
    m(
        "ssrf-private-addresses-allowed",
        "sec (URL fetch): private, loopback and link-local addresses are refused",
        "jobs/urlguard.py",
        "    return ip.is_global and not (ip.is_reserved or ip.is_multicast or ip.is_unspecified)\n",
        "    return True  # MUTANT: any address\n",
        "tests/unit/test_urlguard.py::test_non_public_addresses_are_refused",
        "tests/unit/test_urlguard.py::test_real_dns_localhost_is_refused",
        "tests/integration/test_url_import.py::test_private_loopback_and_link_local_targets_are_refused_before_any_request",
    ),
    m(
        "chunk-takes-more-than-its-frames",
        "chunked encoding: every source frame comes out once (a chunk is exactly its frames)",
        CMD,
        '        extra += ["-frames:v", str(window.frames), "-fps_mode", "passthrough", "-sn"]\n',
        '        extra += ["-fps_mode", "passthrough", "-sn"]  # MUTANT: to the end of the source\n',
        "tests/ffmpeg/test_ffmpeg_chunks.py::test_every_source_frame_comes_out_once_in_order",
        "tests/ffmpeg/test_ffmpeg_command.py::test_a_chunk_window_takes_exactly_its_frames_from_its_seek_without_audio",
    ),
    m(
        "probe-child-reused-verdict",
        "inv 9: a file's verdict never comes from a probe child that read other files first",
        "workers/ffmpeg/avpool.py",
        "            if not reused:\n                return answer\n",
        "            return answer  # MUTANT: a reused child's death is the verdict\n",
        "tests/ffmpeg/test_avpool.py::test_a_reused_child_dying_mid_file_is_not_the_verdict",
    ),
    m(
        "s3-part-unchecked",
        "inv 8: a stored object is exactly its digest's bytes (each part's checksum travels)",
        "jobs/storage/s3.py",
        "                    ChecksumCRC32=crc,\n",
        "",
        "tests/storage/test_storage.py::test_a_part_damaged_on_the_way_up_is_refused_by_the_server_and_leaves_nothing",
    ),
    m(
        "s3-part-length-unchecked",
        "inv 8: a fetched file is exactly its digest's bytes (parts land at their offsets)",
        "jobs/storage/s3.py",
        "                    if got != expected:",
        "                    if False:  # MUTANT: any length",
        "tests/storage/test_storage.py::test_a_ranged_part_of_the_wrong_length_is_refused_before_it_lands",
    ),
    m(
        "from-row-any-mapping",
        "a model read back from the database is the row as stored (no field lost or made up)",
        "jobs/models.py",
        "    if row.keys() != cls.model_fields.keys() or cls.__pydantic_post_init__:",
        "    if cls.__pydantic_post_init__:  # MUTANT: any mapping is a whole row",
        "tests/unit/test_from_row.py::test_partial_rows_and_extra_columns_take_model_construct",
    ),
    m(
        "chunk-starts-unordered",
        "sec: a task spec is input too; chunk start times out of order would cut overlapping "
        "or missing frames",
        "workers/ffmpeg/chunked.py",
        "        or any(a >= b for a, b in itertools.pairwise(starts))\n",
        "        or False  # MUTANT: any order\n",
        "tests/unit/test_chunk_start_times.py",
    ),
    m(
        "input-cache-leaves-partial",
        "a fetch that failed midway must leave no file the next task could be linked to",
        "workers/inputcache.py",
        "                    part.unlink(missing_ok=True)\n",
        "                    pass  # MUTANT: the partial file stays\n",
        "tests/unit/test_input_cache.py",
    ),
    m(
        "input-cache-unbounded",
        "the input cache must stay within input_cache_bytes of the worker's disk",
        "workers/inputcache.py",
        "        while self.held_bytes > self.max_bytes and len(self._sizes) > 1:\n",
        "        while False:  # MUTANT: never evicts\n",
        "tests/unit/test_input_cache.py",
    ),
    m(
        "scratch-sweeps-live-dirs",
        "the age sweep must not remove a live worker's dirs (a long encode, its input cache)",
        "jobs/storage/base.py",
        "                if entry.lstat().st_mtime >= cutoff or _live_owner(entry.name):\n",
        "                if entry.lstat().st_mtime >= cutoff:  # MUTANT: age only\n",
        "tests/unit/test_input_cache.py",
    ),
)

BY_NAME = {mutant.name: mutant for mutant in MUTANTS}
