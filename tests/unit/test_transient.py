"""Which database errors are a 503 (retry later) and which are a real 500."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from jobs.api.errors import is_transient


class PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def wrapped(inner: BaseException) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, inner)  # type: ignore[arg-type]


def test_shutdown_and_connection_errors_are_transient() -> None:
    for state in ("57P01", "57P03", "08006", "53300", "40001", "40P01"):
        assert is_transient(wrapped(PgError(state))), state
    assert is_transient(wrapped(ConnectionResetError()))


def test_query_errors_are_not_transient() -> None:
    for state in ("42601", "23505", "22P02"):
        assert not is_transient(wrapped(PgError(state))), state
    assert not is_transient(wrapped(ValueError("bad")))
