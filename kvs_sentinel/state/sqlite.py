"""The `sqlite:PATH` backend: a local file, for replays that should remember and a single local `run`.

Each operation is one statement or one `BEGIN IMMEDIATE` transaction, so it is atomic even between
processes sharing the file; inside `batch()`, the operations of one message share one transaction (a
commit costs more than the statements it commits). Calls are synchronous: a local SQLite statement
takes microseconds, far less than handing it to a thread would. WAL lets readers go on while one
writer writes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from kvs_sentinel.state.base import Membership, StateError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, total INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    key TEXT NOT NULL, member TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (key, member)
);
CREATE INDEX IF NOT EXISTS claims_expiry ON claims (expires_at);
CREATE INDEX IF NOT EXISTS counters_expiry ON counters (expires_at);
CREATE INDEX IF NOT EXISTS members_expiry ON members (expires_at);
CREATE INDEX IF NOT EXISTS members_of_key ON members (key, expires_at);
"""

# Rows are never returned once expired, but they stay in the file until swept: every SWEEP_EVERY
# operations, those that expired LATE_GRACE before the latest `now` any caller passed go. Callers on
# event time pass `now` out of order, so a row expired for the latest event may still hold for a late
# one: a day of grace is the tolerance for late events.
SWEEP_EVERY = 10_000
LATE_GRACE = 86_400.0


class SqliteStore:
    overlaps = False  # synchronous statements: tasks would only add their own cost

    def __init__(self, path: Path, sweep_every: int = SWEEP_EVERY) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"sqlite:{path}: {exc}", retryable=False) from None
        self.path = path
        self._batched = False
        self.sweep_every = sweep_every
        self._operations = 0
        self._latest = float("-inf")  # the latest `now` a caller passed

    async def claim(self, key: str, *, now: float, ttl: float) -> bool:
        self._tick(now)
        cursor = self._run(
            "INSERT INTO claims (key, expires_at) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
            "SET expires_at = excluded.expires_at WHERE claims.expires_at <= ?",
            (key, now + ttl, now),
        )
        return cursor.rowcount == 1

    async def release(self, key: str, *, expires_at: float) -> None:
        self._run("DELETE FROM claims WHERE key = ? AND expires_at = ?", (key, expires_at))

    async def is_claimed(self, key: str, *, now: float) -> bool:
        return await self.claimed_until(key, now=now) is not None

    async def claimed_until(self, key: str, *, now: float) -> float | None:
        self._tick(now)
        row = self._run(
            "SELECT expires_at FROM claims WHERE key = ? AND expires_at > ?", (key, now)
        ).fetchone()
        return None if row is None else float(row[0])

    async def count(self, key: str, amount: int, *, now: float, ttl: float) -> int:
        self._tick(now)
        row = self._run(
            "INSERT INTO counters (key, total, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "total = CASE WHEN counters.expires_at <= ? THEN excluded.total "
            "ELSE counters.total + excluded.total END, "
            "expires_at = CASE WHEN counters.expires_at <= ? THEN excluded.expires_at "
            "ELSE counters.expires_at END "
            "RETURNING total",
            (key, amount, now + ttl, now, now),
        ).fetchone()
        return int(row[0])

    async def remember(self, key: str, member: str, *, now: float, ttl: float, limit: int) -> Membership:
        self._tick(now)
        if self._batched:
            return self._remember(key, member, now, ttl, limit)
        async with self.batch():
            return self._remember(key, member, now, ttl, limit)

    def _remember(self, key: str, member: str, now: float, ttl: float, limit: int) -> Membership:
        # three look-ups of the indexes, where one aggregate over the set read every member's row
        known, size, expired = self._run(
            "SELECT coalesce((SELECT expires_at > ?2 FROM members WHERE key = ?1 AND member = ?3), 0), "
            "(SELECT count(*) FROM members WHERE key = ?1 AND expires_at > ?2), "
            "EXISTS (SELECT 1 FROM members WHERE key = ?1 AND expires_at <= ?2)",
            (key, now, member),
        ).fetchone()
        if not known and size >= limit:
            return Membership(False, size, True)
        if expired:
            self._run("DELETE FROM members WHERE key = ? AND expires_at <= ?", (key, now))
        self._run(
            "INSERT INTO members (key, member, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key, member) DO UPDATE SET expires_at = excluded.expires_at",
            (key, member, now + ttl),
        )
        return Membership(not known, size + (not known), False)

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        if self._batched:  # already in one: the outer batch commits
            yield
            return
        self._run("BEGIN IMMEDIATE", ())
        self._batched = True
        try:
            yield
        except BaseException:
            self._batched = False
            self._rollback()
            raise
        self._batched = False
        self._run("COMMIT", ())

    async def members(self, key: str, *, now: float) -> frozenset[str]:
        self._tick(now)
        rows = self._run("SELECT member FROM members WHERE key = ? AND expires_at > ?", (key, now)).fetchall()
        return frozenset(row[0] for row in rows)

    async def aclose(self) -> None:
        self.db.close()

    def _tick(self, now: float) -> None:
        self._latest = max(self._latest, now)
        self._operations += 1
        if self._operations % self.sweep_every == 0:
            before = (self._latest - LATE_GRACE,)
            for table in ("claims", "counters", "members"):
                self._run(f"DELETE FROM {table} WHERE expires_at < ?", before)

    def _rollback(self) -> None:
        # no transaction left to undo (a closed or broken connection) means nothing was committed
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("ROLLBACK")

    def _run(self, statement: str, parameters: tuple[object, ...]) -> sqlite3.Cursor:
        try:
            return self.db.execute(statement, parameters)
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from None


def _failure(path: Path, exc: sqlite3.Error) -> StateError:
    # "database is locked" outlasting the 30 s busy timeout may pass; anything else (corrupt, read-only
    # file, full disk) needs an operator
    return StateError(f"sqlite:{path}: {exc}", retryable=isinstance(exc, sqlite3.OperationalError))
