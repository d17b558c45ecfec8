"""Engines, the database clock and transactions, for SQLite and PostgreSQL alike.

Lease expiries and backoffs are computed by the database (`db_now`), never by a worker's
clock. On SQLite every transaction starts with BEGIN IMMEDIATE, which serialises writers
and makes the claim statements safe without `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

UTC = dt.UTC
_DATETIME = dt.datetime  # bound at import: immune to clock-faking tests patching the module
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now'{offset}) || '000'"


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both databases.

    SQLite stores them as 'YYYY-MM-DD HH:MM:SS.ffffff' text, the same shape `db_now`
    produces there, so comparisons in SQL are plain string comparisons.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: give a UTC-aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # Naive UTC: SQLite's DateTime stores it as 'YYYY-MM-DD HH:MM:SS.ffffff'.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = _DATETIME.fromisoformat(value)
        assert isinstance(value, _DATETIME)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class db_now(FunctionElement[dt.datetime]):
    """The database's current time, optionally plus `seconds` (a number or a bound param)."""

    type = UTCDateTime()
    inherit_cache = True
    name = "db_now"

    def __init__(self, seconds: Any = None) -> None:
        args = (
            []
            if seconds is None
            else [
                sa.literal(seconds, sa.Float)
                if not isinstance(seconds, sa.ColumnElement)
                else seconds
            ]
        )
        super().__init__(*args)


@compiles(db_now, "postgresql")
def _pg_now(element: db_now, compiler: Any, **kw: Any) -> str:
    args = list(element.clauses)
    if not args:
        return "statement_timestamp()"
    secs = compiler.process(args[0], **kw)
    return f"(statement_timestamp() + CAST({secs} AS double precision) * interval '1 second')"


@compiles(db_now, "sqlite")
def _sqlite_now(element: db_now, compiler: Any, **kw: Any) -> str:
    args = list(element.clauses)
    if not args:
        return _SQLITE_NOW.format(offset="")
    secs = compiler.process(args[0], **kw)
    return _SQLITE_NOW.format(offset=f", printf('%+.6f seconds', {secs})")


def insert_on_conflict(conn: AsyncConnection, table: sa.Table) -> Any:
    """An INSERT of the connection's dialect, which has `on_conflict_do_nothing/_update`."""
    from sqlalchemy.dialects import postgresql, sqlite

    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def read_json(text: str | bytes) -> Any:
    """A JSON column's value: orjson's reading (about 4x the stdlib's decoder; a claim reads
    every claimed job's spec), or the stdlib's for what orjson refuses and Python's writer
    can produce (NaN, Infinity, a lone surrogate). The columns hold no integer beyond 64
    bits, the one value the two would read differently: every number vidjobs stores is
    bounded."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine set up for vidjobs (SQLite pragmas and BEGIN IMMEDIATE); JSON columns
    are read by `read_json`."""
    kwargs.setdefault("json_deserializer", read_json)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(url, **kwargs)
        _setup_sqlite(engine)
        return engine
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 20)  # Settings.db_pool_size / db_max_overflow
        kwargs.setdefault("max_overflow", 20)
        kwargs.setdefault("pool_timeout", 10)  # a starved pool is a 503, not a hung request
    # A database that is down or unreachable fails fast instead of hanging a request.
    kwargs.setdefault("connect_args", {"timeout": 5})
    engine = create_async_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _drop_closed_on_checkout(engine)
    return engine


def _drop_closed_on_checkout(engine: AsyncEngine) -> None:
    """Never hand out a pooled connection the server has closed (a restart, a kill).

    Instead of `pool_pre_ping`, which costs three round trips per checkout with asyncpg
    (BEGIN, a ping, ROLLBACK), ask asyncpg whether the socket is still open: it notices the
    server closing an idle connection as soon as the event loop runs. The pool then replaces
    the connection. A connection that dies mid-statement is invalidated where the error is
    seen (SQLAlchemy for its statements, `fetch_prepared` for the raw ones), and the callers
    retry.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_conn.driver_connection.is_closed():
            raise sa.exc.DisconnectionError("the server closed this pooled connection")


def _setup_sqlite(engine: AsyncEngine, immediate: bool = True) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how transactions start.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """An engine plus the one way vidjobs runs a transaction."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.dialect = self.engine.dialect.name
        # Reads that need no lock. On SQLite a second engine whose transactions start
        # deferred (WAL readers never block or wait for the writer); elsewhere the same one.
        self.reader = self.engine
        if self.dialect == "sqlite":
            self.reader = create_async_engine(
                url, **{"connect_args": {"timeout": 30}, **engine_kwargs}
            )
            _setup_sqlite(self.reader, immediate=False)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def single_statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for ONE statement that is its own transaction.

        PostgreSQL: no BEGIN/COMMIT round trips; the block runs one statement through
        `fetch_prepared`, which PostgreSQL commits atomically on its own (a data-modifying
        CTE changes the jobs and writes their outbox rows in it). SQLite: `transaction()`,
        since there the same work takes several statements.
        """
        if not self.is_postgres:
            async with self.transaction() as conn:
                yield conn
            return
        async with self.engine.connect() as conn:
            yield conn
            if conn.in_transaction():  # something ran through SQLAlchemy: keep it
                await conn.commit()

    async def ping(self) -> None:
        async with self.reader.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def now(self) -> dt.datetime:
        async with self.transaction() as conn:
            value = (await conn.execute(sa.select(db_now()))).scalar_one()
            assert isinstance(value, dt.datetime)
            return value

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()


async def fetch_prepared(
    conn: AsyncConnection, sql: str, *args: Any
) -> Sequence[Mapping[str, Any]]:
    """Run one PostgreSQL statement (`$1` parameters) and return its rows.

    Inside a transaction it joins it, through SQLAlchemy. Outside one
    (`Database.single_statement`) it goes straight to asyncpg, which prepares the statement
    once per connection and caches it: no compile or bind in SQLAlchemy, no BEGIN/COMMIT,
    one round trip. A connection found dead is invalidated, so the pool never hands it out
    again (SQLAlchemy does the same for the statements it runs itself).
    """
    if conn.in_transaction():
        result = await conn.exec_driver_sql(sql, args)
        return [dict(row) for row in result.mappings()]
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    try:
        rows: Sequence[Mapping[str, Any]] = await raw.fetch(sql, *args)
    except Exception as exc:
        if not raw.is_closed():
            raise
        await conn.invalidate()
        # As SQLAlchemy reports a connection lost under its own statements (a 503 at the
        # API, a retry in a worker), not as a bare asyncpg error (it was an HTML-less 500).
        raise sa.exc.DBAPIError(sql, args, exc, connection_invalidated=True) from exc
    return rows


async def execute_outside_transaction(conn: AsyncConnection, sql: str) -> None:
    """Run one PostgreSQL command straight through asyncpg, outside any transaction (a
    session setting: SET / RESET)."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    await raw.execute(sql)
