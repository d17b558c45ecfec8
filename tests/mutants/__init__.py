"""The mutation suite: break one guarantee at a time and check that a test notices.

    python -m tests.mutants                 every mutant (with a baseline run first)
    python -m tests.mutants --list          names, rules and test subsets
    python -m tests.mutants NAME [NAME...]  only these
    python -m tests.mutants --check         only check that every snippet is found once

Each mutant (`catalog.py`) names the invariant or security rule it breaks, the exact source
snippet(s) it replaces, and the pytest node ids that must fail with it. The suite copies
the working tree (tracked and untracked files, not ignored ones) into a scratch directory
once, then for each mutant writes the mutated files there, runs its tests with `-x` against
the services of the environment (VIDJOBS_TEST_DATABASE_URL, VIDJOBS_TEST_KAFKA_BOOTSTRAP;
VIDJOBS_REQUIRE_SERVICES=1, so a missing service fails instead of skipping), and restores
the scratch files. The real tree is never written. Before the mutants, one baseline run of
every listed test on the unmutated copy must pass, or "caught" would mean nothing. It
prints a table (mutant, rule, caught/survived, seconds) and the total time, and exits
non-zero if a mutant that is not marked equivalent survived, a run errored, or a snippet
is not found exactly once in its file ("mutant X: snippet not found in FILE").

Why hand-written mutants rather than mutmut or cosmic-ray: those generate syntactic
mutants (operators, constants) over whole modules, most of them in code no invariant
depends on, and for each they run a whole suite that needs PostgreSQL, Kafka and ffmpeg; a
full run would take hours on this machine and its survivors would be noise. Our guarantees
live in a few SQL texts, WHERE clauses, orderings of two calls and ffmpeg arguments, which
those tools do not mutate (SQL strings, argument lists, statement order). A named mutant
says which guarantee it breaks, runs only the tests that claim to protect it (seconds), and
fails loudly when the code it targets moves (`tests/unit/test_mutant_catalog.py` checks
every snippet in `make test`).
"""
