"""The outbox relay: committed outbox rows to the bus, in id order, never losing one.

Exactly one relay is active. On PostgreSQL it holds a session advisory lock on a
dedicated connection and does all its reads and marks on that same connection, so a
relay that lost its lock (connection gone) cannot mark anything; standbys try the lock
every `relay_standby_seconds` and take over within seconds of the active one dying. On
SQLite (one process, the embedded mode) the lock is trivially held.

A pass reads unpublished rows in id order (no high-water mark: an open transaction may
commit a lower id later, and the next pass still sees it), publishes them, waits for every
ack, then marks them published. A crash between the ack and the mark publishes the rows
again; consumers deduplicate by event id. The relay wakes on LISTEN/NOTIFY (a trigger on
the outbox, PostgreSQL) or the in-process signal, with a poll fallback. Bus and database
errors are retried with an exponential, jittered backoff (tenacity).

A relay may `linger` after a wake-up before it reads, so events committed close together
go out in one pass (one read, one publish, one mark). `vidjobs up` lingers: its worker is
woken in-process, so the bus carries only hints and the ledger's and webhooks' events, and
a pass less is one SQLite write lock less in the way of the next claim. A fleet's relay
does not: its events are how the workers of other processes learn of work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from jobs import outbox
from jobs.db import Database
from jobs.settings import Settings
from workers import loop, metrics, tracing
from workers.bus import Bus, BusError, Publisher
from workers.bus.events import message_for
from workers.wakeup import Wakeup

log = logging.getLogger("vidjobs.relay")

LOCK_KEY = 0x76696A6F62730001  # "vijobs" + 1: the relay's advisory lock (a bigint)
CHANNEL = "vidjobs_outbox"  # NOTIFY channel of the outbox insert trigger (migration 0002)
BACKLOG_EVERY = 1.0  # seconds between the backlog gauges' reads


class LeadershipLost(Exception):
    """The relay's lock connection failed: stop publishing and try to lead again."""


class Leadership:
    """Single-active relay. The base class is the one-process case (SQLite): always held."""

    def __init__(self, db: Database, wakeup: Wakeup) -> None:
        self.db = db
        self.wakeup = wakeup
        self.lost = False

    async def try_acquire(self) -> bool:
        self.lost = False
        return True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.db.transaction() as conn:
                yield conn
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise LeadershipLost(f"database error: {exc}") from exc

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A read of the outbox. SQLite: through the reader engine (a deferred transaction,
        which takes no write lock: the relay's reads no longer queue the runner's claim
        behind them); PostgreSQL: on the lock connection, like every step."""
        try:
            async with self.db.reader.connect() as conn:
                yield conn
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise LeadershipLost(f"database error: {exc}") from exc

    async def release(self) -> None:
        return None


class PgLeadership(Leadership):
    """A session advisory lock held on a dedicated connection, which also LISTENs."""

    def __init__(self, db: Database, wakeup: Wakeup, key: int = LOCK_KEY) -> None:
        super().__init__(db, wakeup)
        self.key = key
        self._conn: AsyncConnection | None = None

    async def try_acquire(self) -> bool:
        conn = await self.db.engine.connect()
        try:
            query = sa.text("SELECT pg_try_advisory_lock(:key)")
            held = bool((await conn.execute(query, {"key": self.key})).scalar())
            await conn.commit()
            if held:
                raw = (await conn.get_raw_connection()).driver_connection
                assert raw is not None
                raw.add_termination_listener(self._terminated)
                await raw.add_listener(CHANNEL, self._notified)
        except BaseException:
            await conn.invalidate()
            await conn.close()
            raise
        if not held:
            await conn.close()
            return False
        self._conn, self.lost = conn, False
        return True

    def _terminated(self, *_: Any) -> None:
        self.lost = True
        self.wakeup.notify()

    def _notified(self, *_: Any) -> None:
        self.wakeup.notify()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        conn = self._conn
        if conn is None or self.lost:
            raise LeadershipLost("the relay lock is not held")
        try:
            async with conn.begin():
                yield conn
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            self.lost = True
            raise LeadershipLost(f"lock connection failed: {exc}") from exc

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        async with self.transaction() as conn:
            yield conn

    async def release(self) -> None:
        """Drop the lock connection (never back to the pool: it would keep the lock)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.invalidate(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 5)


def leadership_for(db: Database, wakeup: Wakeup) -> Leadership:
    return PgLeadership(db, wakeup) if db.is_postgres else Leadership(db, wakeup)


class Relay:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        settings: Settings,
        *,
        wakeup: Wakeup | None = None,
        publisher: Publisher | None = None,
        leadership: Leadership | None = None,
        linger: float = 0.0,
    ) -> None:
        self.db = db
        self.linger = linger
        self.bus = bus
        self.settings = settings
        self.wakeup = wakeup or Wakeup()
        self.publisher = publisher or bus.publisher()
        self.leadership = leadership or leadership_for(db, self.wakeup)
        self.published = 0
        self.leading = asyncio.Event()
        self._publisher_started = False
        self._stop = asyncio.Event()
        self._standing_by = False
        self._backlog_at = float("-inf")

    async def run(self, stop: asyncio.Event) -> None:
        """Lead (or stand by) and publish until `stop` is set."""
        self._stop = stop
        self.wakeup.bind()
        stop_watch = asyncio.create_task(self._wake_on_stop(stop))
        try:
            await self._retrying(self.bus.ensure_topic, "creating the topic")
            while not stop.is_set():
                if not await self._acquire():
                    continue
                try:
                    await self._lead()
                except Exception:  # a bug must not end the relay: stand by, lead again
                    log.exception("relay failed; standing by before leading again")
                    await self._sleep(self.settings.relay_standby_seconds)
                finally:
                    self.leading.clear()
                    metrics.RELAY_ACTIVE.set(0)
                    await self.leadership.release()
        finally:
            stop_watch.cancel()
            if self._publisher_started:
                await self.publisher.stop()

    async def _wake_on_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wakeup.notify()  # an idle relay waits on its wake-up, not on `stop`

    async def _acquire(self) -> bool:
        try:
            held = await self.leadership.try_acquire()
        except Exception as exc:
            log.warning("could not try the relay lock, will retry: %s", exc)
            held = False
        if held:
            log.info("relay is active")
            self._standing_by = False
            self.leading.set()
            metrics.RELAY_ACTIVE.set(1)
            return True
        if not self._standing_by:  # once per standby, not at every try
            log.info("relay is standing by: another relay holds the lock")
            self._standing_by = True
        await self._sleep(self.settings.relay_standby_seconds)
        return False

    async def _lead(self) -> None:
        while not self._stop.is_set():
            try:
                await self._retrying(self.publish_pending, "publishing")
            except LeadershipLost as exc:
                log.warning("relay lost its lock (%s); standing by", exc)
                await self._sleep(self.settings.relay_standby_seconds)
                return
            if self._stop.is_set():
                return
            await self._report_backlog()
            if await self.wakeup.wait(self.settings.relay_poll_seconds) and self.linger:
                await self._sleep(self.linger)

    async def publish_pending(self) -> int:
        """Publish every unpublished row, batch by batch; return how many were marked."""
        if not self._publisher_started:
            await self.publisher.start()
            self._publisher_started = True
        total = 0
        batch = self.settings.relay_batch
        while not self._stop.is_set():
            async with self.leadership.reading() as conn:
                rows = await outbox.select_unpublished(conn, batch)
            if not rows:
                break
            with tracing.publishing([message_for(r) for r in rows], self.bus.topic) as messages:
                await self.publisher.publish(messages)
            ids = [row.id for row in rows if row.id is not None]
            async with self.leadership.transaction() as conn:
                await outbox.mark_published(conn, ids)
            total += len(rows)
            self.published += len(rows)
            metrics.RELAY_PUBLISHED.inc(len(rows))
            if len(rows) < batch:
                break
        return total

    async def _report_backlog(self) -> None:
        """The backlog gauges, at most once a second: a metric, not worth a read per pass."""
        now = asyncio.get_running_loop().time()
        if now - self._backlog_at < BACKLOG_EVERY:
            return
        self._backlog_at = now
        try:
            async with self.leadership.reading() as conn:
                count, age = await outbox.select_backlog(conn)
        except LeadershipLost:
            return
        metrics.OUTBOX_BACKLOG.set(count)
        metrics.RELAY_LAG.set(age)

    async def _retrying(self, step: Any, what: str) -> None:
        """Run `step` until it succeeds, backing off on bus errors; stop ends the wait."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s failed (attempt %d), will retry: %s", what, state.attempt_number, exc)

        retrying = AsyncRetrying(
            retry=retry_if_exception_type((BusError, OSError, asyncio.TimeoutError)),
            wait=wait_random_exponential(multiplier=0.2, max=10.0),
            stop=lambda _state: self._stop.is_set(),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await step()
        except (TimeoutError, BusError, OSError):
            if not self._stop.is_set():
                raise

    async def _sleep(self, seconds: float) -> None:
        await loop.sleep_unless_stopped(self._stop, seconds)
