"""The `sqlite:PATH` backend: a local file, for replays that should remember and a single local `run`.

Each operation is one statement or one `BEGIN IMMEDIATE` transaction, so it is atomic even between
processes sharing the file; inside `batch()`, the operations of one message share one transaction (a
commit costs more than the statements it commits). Calls are synchronous: a local SQLite statement
takes microseconds, far less than handing it to a thread would. WAL lets readers go on while one
writer writes.

With `commit_every` (seconds; a replay, which acknowledges no message), batches are committed in groups:
each batch is a savepoint inside a transaction that commits at the end of the first batch `commit_every`
after it began, and when the store closes. A failed batch is still undone alone. Half the cost of a
replay's store was its commits; what a killed replay loses is its last `commit_every` of work, which
replaying the same input learns again.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from kvs_sentinel.state.base import Membership, StateError, remember_in_turn

# Keys are the tables' primary keys (WITHOUT ROWID: one b-tree to write per row, not two); `sets` keeps
# each set's size (see `_remember`). A file made before these (rowid tables, a members_of_key index,
# no `sets`) is used as it is: its sets are counted once, then kept.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY, total INTEGER NOT NULL, expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    key TEXT NOT NULL, member TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (key, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sets (
    key TEXT PRIMARY KEY, size INTEGER NOT NULL, earliest REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS claims_expiry ON claims (expires_at);
CREATE INDEX IF NOT EXISTS counters_expiry ON counters (expires_at);
CREATE INDEX IF NOT EXISTS members_expiry ON members (expires_at);
"""

# Rows are never returned once expired, but they stay in the file until swept: every SWEEP_EVERY
# operations, those that expired LATE_GRACE before the latest `now` any caller passed go. Callers on
# event time pass `now` out of order, so a row expired for the latest event may still hold for a late
# one: a day of grace is the tolerance for late events.
SWEEP_EVERY = 10_000
LATE_GRACE = 86_400.0
GROUP_COMMIT_SECONDS = 0.25  # `commit_every` for a replay


class SqliteStore:
    overlaps = False  # synchronous statements: tasks would only add their own cost

    def __init__(self, path: Path, sweep_every: int = SWEEP_EVERY, commit_every: float = 0.0) -> None:
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
        self.commit_every = commit_every
        self._began: float | None = None  # when the open group of batches began (monotonic)
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
        # A set's size is kept in `sets`, with a bound on its members' earliest expiry: until then none
        # has expired and the size holds, so a remember reads two rows, not every member (a viewer's
        # streams are hundreds). A set without a row (a file from before `sets`, or swept) is counted.
        known, size, earliest = self._run(
            "SELECT coalesce((SELECT expires_at > ?2 FROM members WHERE key = ?1 AND member = ?3), 0), "
            "(SELECT size FROM sets WHERE key = ?1), (SELECT earliest FROM sets WHERE key = ?1)",
            (key, now, member),
        ).fetchone()
        counted = size is None or earliest <= now
        if counted:
            # what expired goes, as it always did: a late event (an earlier `now`) must not find it known
            self._run("DELETE FROM members WHERE key = ? AND expires_at <= ?", (key, now))
            size, earliest = self._run(
                "SELECT count(*), min(expires_at) FROM members WHERE key = ? AND expires_at > ?", (key, now)
            ).fetchone()
        if not known and size >= limit:
            if counted:
                self._set_size(key, size, math.inf if earliest is None else earliest)
            return Membership(False, size, True)
        expires_at = now + ttl
        self._run(
            "INSERT INTO members (key, member, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key, member) DO UPDATE SET expires_at = excluded.expires_at",
            (key, member, expires_at),
        )
        size += not known
        if counted or not known or expires_at < earliest:
            self._set_size(key, size, expires_at if earliest is None else min(earliest, expires_at))
        return Membership(not known, size, False)

    def _set_size(self, key: str, size: int, earliest: float) -> None:
        self._run(
            "INSERT INTO sets (key, size, earliest) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET size = excluded.size, earliest = excluded.earliest",
            (key, size, earliest),
        )

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        if self._batched:  # already in one: the outer batch commits
            yield
            return
        if not self.commit_every:
            async with self._between("BEGIN IMMEDIATE", self._rollback, "COMMIT"):
                yield
            return
        if self._began is not None and not self.db.in_transaction:
            self._began = None  # SQLite rolled the group back itself (a full disk, an I/O error)
        if self._began is None:
            self._run("BEGIN IMMEDIATE", ())
            self._began = time.monotonic()
        async with self._between("SAVEPOINT batch", self._undo_batch, "RELEASE batch"):
            yield
        if time.monotonic() - self._began >= self.commit_every:
            self._commit_group()

    @asynccontextmanager
    async def _between(self, begin: str, undo: Callable[[], None], end: str) -> AsyncIterator[None]:
        """One batch's operations between `begin` and `end`; `undo` if the batch fails."""
        self._run(begin, ())
        self._batched = True
        try:
            yield
        except BaseException:
            self._batched = False
            undo()
            raise
        self._batched = False
        self._run(end, ())

    def _undo_batch(self) -> None:
        try:
            self._run("ROLLBACK TO batch", ())
            self._run("RELEASE batch", ())
        except StateError:  # the connection broke: the whole group is lost, and so is its transaction
            self._began = None
            self._rollback()

    def _commit_group(self) -> None:
        self._began = None
        try:
            self._run("COMMIT", ())
        except StateError:
            self._rollback()
            raise

    async def remember_all(
        self, key: str, members: Sequence[tuple[str, float]], *, ttl: float, limit: int
    ) -> list[Membership]:
        return await remember_in_turn(self, key, members, ttl=ttl, limit=limit)

    async def forget(self, key: str, member: str, *, expires_at: float) -> None:
        async with self.batch():
            deleted = self._run(
                "DELETE FROM members WHERE key = ? AND member = ? AND expires_at = ?",
                (key, member, expires_at),
            ).rowcount
            if deleted:
                self._run("UPDATE sets SET size = size - 1 WHERE key = ?", (key,))

    async def members(self, key: str, *, now: float) -> frozenset[str]:
        self._tick(now)
        rows = self._run("SELECT member FROM members WHERE key = ? AND expires_at > ?", (key, now)).fetchall()
        return frozenset(row[0] for row in rows)

    async def aclose(self) -> None:
        try:
            if self._began is not None:
                self._commit_group()
        finally:
            self.db.close()

    def _tick(self, now: float) -> None:
        self._latest = max(self._latest, now)
        self._operations += 1
        if self._operations % self.sweep_every == 0:
            before = (self._latest - LATE_GRACE,)
            for table in ("claims", "counters", "members"):
                self._run(f"DELETE FROM {table} WHERE expires_at < ?", before)
            self._run("DELETE FROM sets", ())  # their sizes may count swept members: counted afresh

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
