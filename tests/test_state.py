"""The state seam's contract, run against every backend: memory, SQLite, and DynamoDB (moto in server mode).

Each operation must be atomic (concurrent callers decide as one), and nothing expired may come back,
whether or not the backend has deleted it yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from pathlib import Path

import pytest

from kvs_sentinel.state.base import Membership, StateError, StateStore
from kvs_sentinel.state.dynamodb import DynamoDbStore
from kvs_sentinel.state.memory import MemoryStore
from kvs_sentinel.state.registry import StoreUse, open_store
from kvs_sentinel.state.sqlite import GROUP_COMMIT_SECONDS, SqliteStore
from tests.aws_fixtures import aws_client, moto_server
from tests.support.dynamodb_clients import CountedRequests, Failing, nth
from tests.support.state_tables import TABLE, make_table, store

__all__ = ["moto_server", "store"]

NOW = 1_767_225_600.0  # 2026-01-01, the caller's clock (event time)


async def test_the_first_claim_wins_until_it_expires(store: StateStore) -> None:
    assert await store.claim("alert/d/e1", now=NOW, ttl=60) is True
    assert await store.claim("alert/d/e1", now=NOW + 59, ttl=60) is False
    assert await store.is_claimed("alert/d/e1", now=NOW + 59)
    assert not await store.is_claimed("alert/d/e1", now=NOW + 60)
    assert await store.claim("alert/d/e1", now=NOW + 60, ttl=60) is True
    assert not await store.is_claimed("alert/d/never", now=NOW)


async def test_a_claim_tells_anyone_when_it_ends(store: StateStore) -> None:
    assert await store.claim("group/w", now=NOW, ttl=60.25)
    assert (
        await store.claimed_until("group/w", now=NOW + 1) == NOW + 60.25
    )  # exactly what its winner computed
    assert await store.claimed_until("group/w", now=NOW + 60.25) is None
    assert await store.claimed_until("group/never", now=NOW) is None


async def test_a_released_claim_can_be_won_again_but_not_one_won_since(store: StateStore) -> None:
    assert await store.claim("group/g", now=NOW, ttl=60)
    await store.release("group/g", expires_at=NOW + 60)  # the first alert failed: its retry goes first
    assert not await store.is_claimed("group/g", now=NOW + 1)
    assert await store.claim("group/g", now=NOW + 1, ttl=60)
    await store.release("group/g", expires_at=NOW + 60)  # a stale release: the claim is now another's
    assert await store.is_claimed("group/g", now=NOW + 2)
    await store.release("group/never", expires_at=NOW)  # nothing to undo is not an error


async def test_concurrent_claims_have_exactly_one_winner(store: StateStore) -> None:
    results = await asyncio.gather(*(store.claim("first-alert", now=NOW, ttl=60) for _ in range(20)))
    assert results.count(True) == 1


async def test_concurrent_counts_are_atomic_and_each_sees_its_own_total(store: StateStore) -> None:
    totals = await asyncio.gather(*(store.count("denied/p/w1", 1, now=NOW, ttl=600) for _ in range(30)))
    assert sorted(totals) == list(range(1, 31))


async def test_a_counter_restarts_when_its_window_ends(store: StateStore) -> None:
    assert await store.count("c", 5, now=NOW, ttl=600) == 5
    assert await store.count("c", 2, now=NOW + 599, ttl=600) == 7
    assert await store.count("c", 1, now=NOW + 600, ttl=600) == 1
    assert await store.count("c", 1, now=NOW + 1000, ttl=600) == 2  # the new window runs from NOW + 600


async def test_remember_says_what_is_new_and_refreshes_what_is_known(store: StateStore) -> None:
    assert await store.remember("nets/p", "203.0.113.0/24", now=NOW, ttl=100, limit=3) == Membership(
        True, 1, False
    )
    assert await store.remember("nets/p", "203.0.113.0/24", now=NOW + 50, ttl=100, limit=3) == Membership(
        False, 1, False
    )
    # refreshed at NOW + 50: still known at NOW + 120
    assert await store.members("nets/p", now=NOW + 120) == {"203.0.113.0/24"}
    assert await store.members("nets/p", now=NOW + 150) == frozenset()


async def test_a_full_set_takes_no_new_member_until_one_expires(store: StateStore) -> None:
    for n, member in enumerate(("a", "b", "c")):
        assert (await store.remember("s", member, now=NOW + n, ttl=100, limit=3)).new
    assert await store.remember("s", "d", now=NOW + 10, ttl=100, limit=3) == Membership(False, 3, True)
    assert await store.remember("s", "b", now=NOW + 10, ttl=100, limit=3) == Membership(False, 3, False)
    # "a" expires at NOW + 100: room for "d"
    assert await store.remember("s", "d", now=NOW + 100, ttl=100, limit=3) == Membership(True, 3, False)
    assert await store.members("s", now=NOW + 100) == {"b", "c", "d"}


async def test_a_set_s_size_counts_only_the_members_live_at_the_time_asked(store: StateStore) -> None:
    await store.remember("s", "a", now=NOW, ttl=100, limit=9)
    await store.remember("s", "b", now=NOW + 1, ttl=10, limit=9)  # expires first, though added last
    assert await store.remember("s", "c", now=NOW + 20, ttl=100, limit=9) == Membership(True, 2, False)
    await store.remember("s", "a", now=NOW + 30, ttl=5, limit=9)  # refreshed to expire sooner
    assert await store.remember("s", "d", now=NOW + 40, ttl=100, limit=9) == Membership(True, 2, False)
    assert await store.members("s", now=NOW + 40) == {"c", "d"}


async def test_concurrent_new_members_are_each_new_once(store: StateStore) -> None:
    members = [f"10.0.{n}.0/24" for n in range(10)]
    results = await asyncio.gather(
        *(store.remember("nets/q", member, now=NOW, ttl=100, limit=50) for member in members + members)
    )
    assert sum(result.new for result in results) == 10
    assert await store.members("nets/q", now=NOW) == set(members)


async def test_a_member_added_by_many_callers_to_a_set_that_exists_is_new_once(store: StateStore) -> None:
    await store.remember("nets/r", "198.51.100.0/24", now=NOW, ttl=100, limit=50)
    results = await asyncio.gather(
        *(store.remember("nets/r", "192.0.2.0/24", now=NOW + n / 100, ttl=100, limit=50) for n in range(20))
    )
    assert sum(result.new for result in results) == 1
    assert {result.size for result in results} == {2}


@pytest.mark.parametrize("seed", range(6))
async def test_remember_all_says_what_remembering_one_by_one_says(store: StateStore, seed: int) -> None:
    draw = random.Random(seed)
    now = NOW
    for round_ in range(4):  # each round: a message's values of one set, on one set and on its twin
        added = []
        for _ in range(draw.randint(1, 6)):
            now += draw.choice([0, 1, 30, 90])  # ttl 100: some members expire between rounds
            added.append((draw.choice("abcdefg"), now))
        limit = draw.choice([3, 5, 50])
        together = await store.remember_all("all", added, ttl=100, limit=limit)
        one_by_one = [await store.remember("each", m, now=at, ttl=100, limit=limit) for m, at in added]
        assert together == one_by_one, f"round {round_}: {added}"
        assert await store.members("all", now=now) == await store.members("each", now=now)


async def test_forget_undoes_a_remember_unless_the_member_was_remembered_again(store: StateStore) -> None:
    await store.remember("s", "a", now=NOW, ttl=100, limit=9)
    await store.remember("s", "b", now=NOW, ttl=100, limit=9)
    await store.forget("s", "a", expires_at=NOW + 100)
    await store.remember("s", "b", now=NOW + 5, ttl=100, limit=9)  # b remembered again since
    await store.forget("s", "b", expires_at=NOW + 100)
    await store.forget("s", "never", expires_at=NOW + 100)
    assert await store.members("s", now=NOW + 6) == {"b"}
    assert await store.remember("s", "a", now=NOW + 6, ttl=100, limit=9) == Membership(True, 2, False)


async def test_sqlite_is_atomic_between_two_processes_sharing_the_file(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'shared.db'}"
    first, second = await open_store(url), await open_store(url)
    try:
        wins = [await store.claim(f"k{n}", now=NOW, ttl=60) for n in range(20) for store in (first, second)]
        assert wins.count(True) == 20
        assert await second.count("c", 1, now=NOW, ttl=60) == 1
        assert await first.count("c", 1, now=NOW, ttl=60) == 2
        # each keeps the set's size in the file, not in its memory
        assert await first.remember("s", "a", now=NOW, ttl=60, limit=9) == Membership(True, 1, False)
        assert await second.remember("s", "b", now=NOW, ttl=60, limit=9) == Membership(True, 2, False)
        assert await first.remember("s", "c", now=NOW, ttl=60, limit=9) == Membership(True, 3, False)
    finally:
        await first.aclose()
        await second.aclose()


async def test_dynamodb_items_past_their_ttl_are_ignored_though_not_yet_deleted(moto_server: str) -> None:
    await make_table()
    store = await open_store(f"dynamodb:{TABLE}")
    try:
        async with aws_client("dynamodb") as dynamodb:  # as DynamoDB leaves them: expired, still there
            await dynamodb.put_item(
                TableName=TABLE, Item={"pk": {"S": "k"}, "expires_at": {"N": str(NOW - 1)}}
            )
            members = {"old": {"N": str(NOW - 1)}}
            await dynamodb.put_item(
                TableName=TABLE,
                Item={"pk": {"S": "s"}, "members": {"M": members}, "expires_at": {"N": str(NOW - 1)}},
            )
        assert not await store.is_claimed("k", now=NOW)
        assert await store.claim("k", now=NOW, ttl=60) is True
        assert await store.members("s", now=NOW) == frozenset()
        assert await store.remember("s", "new", now=NOW, ttl=60, limit=1) == Membership(True, 1, False)
    finally:
        await store.aclose()


async def test_dynamodb_makes_a_set_it_has_not_met_in_one_request_and_then_updates_it(
    moto_server: str,
) -> None:
    await make_table()
    store = await open_store(f"dynamodb:{TABLE}")
    assert isinstance(store, DynamoDbStore)
    client = store.client = CountedRequests(store.client)
    try:
        assert await store.remember("s", "a", now=NOW, ttl=60, limit=5) == Membership(True, 1, False)
        assert await store.remember("s", "b", now=NOW, ttl=60, limit=5) == Membership(True, 2, False)
        assert client.requests == ["put_item", "update_item"]
        other = await open_store(f"dynamodb:{TABLE}")  # another task, which has not met the set
        try:
            assert await other.remember("s", "a", now=NOW, ttl=60, limit=5) == Membership(False, 2, False)
        finally:
            await other.aclose()
    finally:
        await store.aclose()


async def test_dynamodb_remembers_a_message_s_values_of_one_set_in_one_request(moto_server: str) -> None:
    await make_table()
    store = await open_store(f"dynamodb:{TABLE}")
    assert isinstance(store, DynamoDbStore)
    client = store.client = CountedRequests(store.client)
    try:
        created = await store.remember_all("s", [("a", NOW), ("b", NOW + 1), ("a", NOW + 2)], ttl=60, limit=5)
        assert created == [
            Membership(True, 1, False),
            Membership(True, 2, False),
            Membership(False, 2, False),
        ]
        updated = await store.remember_all("s", [("c", NOW + 3), ("b", NOW + 4)], ttl=60, limit=5)
        assert updated == [Membership(True, 3, False), Membership(False, 3, False)]
        assert client.requests == ["put_item", "update_item"]
        # no room for both as if both were new: one by one, which finds "a" known and "x" too many
        full = await store.remember_all(
            "s", [("a", NOW + 5), ("d", NOW + 5), ("x", NOW + 5)], ttl=60, limit=4
        )
        assert full == [Membership(False, 3, False), Membership(True, 4, False), Membership(False, 4, True)]
        # a log file's worth of new values: requests of at most 50 members, each within DynamoDB's limits
        client.requests.clear()
        many = [(f"stream-{n:04d}", NOW + 6) for n in range(120)]
        answers = await store.remember_all("viewer", many, ttl=60, limit=1000)
        assert [answer.size for answer in answers] == list(range(1, 121))
        assert client.requests == ["put_item", "update_item", "update_item"]
    finally:
        await store.aclose()


async def test_a_dynamodb_remember_all_that_fails_midway_forgets_what_it_added(moto_server: str) -> None:
    await make_table()
    store = await open_store(f"dynamodb:{TABLE}")
    assert isinstance(store, DynamoDbStore)
    await store.remember("viewer", "known", now=NOW, ttl=60, limit=1000)
    # the second part's update is throttled, not the first's
    store.client = Failing(store.client, nth("update_item", 2), applied=False)
    many = [(f"stream-{n:04d}", NOW + 1) for n in range(80)] + [("known", NOW + 1)]
    try:
        with pytest.raises(StateError, match="ThrottlingException"):
            await store.remember_all("viewer", many, ttl=60, limit=1000)
        # the first 50 were written, then forgotten (forget is an update_item too: let them through)
        assert await store.members("viewer", now=NOW + 2) == {"known"}
    finally:
        await store.aclose()


async def test_dynamodb_makes_room_in_a_full_set_of_a_thousand_expired_members(moto_server: str) -> None:
    await make_table()
    store = await open_store(f"dynamodb:{TABLE}")
    try:
        many = [
            (f"arn:aws:kinesisvideo:eu-west-1:111122223333:stream/cam-{n:04d}/1", NOW) for n in range(1000)
        ]
        await store.remember_all("viewer", many, ttl=60, limit=1000)
        # all expired, none swept yet: one expression removing them all would pass DynamoDB's 4 KB
        assert await store.remember("viewer", "new", now=NOW + 61, ttl=60, limit=1000) == Membership(
            True, 1, False
        )
        assert await store.members("viewer", now=NOW + 62) == {"new"}
    finally:
        await store.aclose()


async def test_a_missing_dynamodb_table_is_a_state_error_not_worth_retrying(moto_server: str) -> None:
    store = await open_store("dynamodb:no-such-table")
    try:
        with pytest.raises(StateError, match="ResourceNotFoundException") as caught:
            await store.claim("k", now=NOW, ttl=60)
        assert caught.value.retryable is False
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://x", "unknown backend 'redis'; known: dynamodb, memory, sqlite"),
        ("sqlite:", "write sqlite:PATH"),
        ("dynamodb:", "write dynamodb:TABLE"),
        ("memory:x", "write memory"),
    ],
)
async def test_a_bad_state_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await open_store(url)


async def test_adding_nothing_reads_the_total_unchanged(store: StateStore) -> None:
    await store.count("denied/p/w2", 2, now=NOW, ttl=600)
    assert await store.count("denied/p/w2", 0, now=NOW + 1, ttl=600) == 2
    assert await store.count("denied/p/w2", 1, now=NOW + 2, ttl=600) == 3


async def test_a_claim_holds_for_a_late_caller_after_a_later_one(store: StateStore) -> None:
    # event time runs out of order: a claim made at a later event's time must not drop an earlier one
    assert await store.claim("learning/p1", now=NOW, ttl=60)
    assert await store.claim("learning/p2", now=NOW + 3600, ttl=60)
    assert await store.is_claimed("learning/p1", now=NOW + 30)


async def test_a_batch_s_operations_are_seen_after_it(store: StateStore) -> None:
    async with store.batch():
        assert await store.claim("batch/c", now=NOW, ttl=60)
        assert await store.count("batch/n", 2, now=NOW, ttl=60) == 2
        assert (await store.remember("batch/s", "a", now=NOW, ttl=60, limit=5)).new
        assert not (await store.remember("batch/s", "a", now=NOW, ttl=60, limit=5)).new
    assert await store.is_claimed("batch/c", now=NOW + 1)
    assert await store.members("batch/s", now=NOW + 1) == frozenset({"a"})


async def test_a_failed_sqlite_batch_undoes_all_of_it(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:{tmp_path / 'state.db'}")

    async def half_a_message() -> None:
        async with store.batch():
            await store.claim("undone/c", now=NOW, ttl=60)
            await store.remember("undone/s", "a", now=NOW, ttl=60, limit=5)
            raise RuntimeError("the message's next check failed")

    with pytest.raises(RuntimeError):
        await half_a_message()
    assert not await store.is_claimed("undone/c", now=NOW)
    assert await store.members("undone/s", now=NOW) == frozenset()
    await store.aclose()


def committed_claims(path: Path) -> set[str]:
    """What another process reading the file sees."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {row[0] for row in db.execute("SELECT key FROM claims")}


async def claim_in_a_batch(store: SqliteStore, key: str, *, fail: bool = False) -> None:
    async with store.batch():
        await store.claim(key, now=NOW, ttl=60)
        if fail:
            raise RuntimeError("the message's next check failed")


async def test_replay_sqlite_batches_commit_together_and_a_failed_one_alone_is_undone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path, commit_every=3600)  # no group ends by time in this test
    await claim_in_a_batch(store, "first")
    with pytest.raises(RuntimeError):
        await claim_in_a_batch(store, "failed", fail=True)
    await claim_in_a_batch(store, "third")
    assert committed_claims(path) == set()  # not yet: the group is open
    assert await store.is_claimed("first", now=NOW)
    assert not await store.is_claimed("failed", now=NOW)
    await store.aclose()
    assert committed_claims(path) == {"first", "third"}


async def test_a_group_of_sqlite_batches_commits_once_its_time_is_up(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path, commit_every=1e-9)  # up as soon as a batch ends
    await claim_in_a_batch(store, "first")
    assert committed_claims(path) == {"first"}
    await store.aclose()


async def test_replay_of_files_lets_sqlite_commit_in_groups_and_run_does_not(tmp_path: Path) -> None:
    grouped = await open_store(f"sqlite:{tmp_path / 'a.db'}", StoreUse(group_commits=True))
    each = await open_store(f"sqlite:{tmp_path / 'b.db'}")
    assert isinstance(grouped, SqliteStore)
    assert grouped.commit_every == GROUP_COMMIT_SECONDS
    assert isinstance(each, SqliteStore)
    assert each.commit_every == 0
    await claim_in_a_batch(each, "at-once")
    assert committed_claims(tmp_path / "b.db") == {"at-once"}
    await grouped.aclose()
    await each.aclose()


async def test_sqlite_counts_a_set_it_has_no_size_for_as_in_a_file_from_before_sizes_were_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    for n, member in enumerate(("a", "b", "c")):
        await store.remember("s", member, now=NOW + n, ttl=100, limit=9)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM sets")
    assert await store.remember("s", "d", now=NOW + 100, ttl=100, limit=9) == Membership(True, 3, False)
    # "b" expired at NOW + 101: "c" and "d" are left
    assert await store.remember("s", "c", now=NOW + 101, ttl=100, limit=9) == Membership(False, 2, False)
    await store.aclose()


async def test_sqlite_forgets_what_expired_when_it_counts_a_set_afresh(tmp_path: Path) -> None:
    # after a sweep (or in a file from before sizes were kept) a set is counted afresh: what expired
    # then must go, so that a late event does not find it known
    memory, sqlite = MemoryStore(), SqliteStore(tmp_path / "state.db")
    steps = [("a", NOW), ("b", NOW + 50), ("c", NOW + 120), ("a", NOW + 60), ("d", NOW + 61)]
    answers: dict[str, list[Membership]] = {"memory": [], "sqlite": []}
    for name, backend in (("memory", memory), ("sqlite", sqlite)):
        for n, (member, now) in enumerate(steps):
            if name == "sqlite" and n == 2:
                sqlite.db.execute("DELETE FROM sets")  # what the sweep does
            answers[name].append(await backend.remember("s", member, now=now, ttl=100, limit=3))
    assert answers["sqlite"] == answers["memory"]
    assert answers["sqlite"][3] == Membership(True, 3, False)  # "a" expired at NOW + 100: new again
    await sqlite.aclose()


async def test_sqlite_sweeps_what_expired_a_day_before_the_latest_time(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path, sweep_every=4)
    await store.claim("old/c", now=NOW, ttl=60)
    await store.count("old/n", 1, now=NOW, ttl=60)
    await store.remember("old/s", "a", now=NOW, ttl=60, limit=5)
    await store.claim(
        "late/c", now=NOW + 86_400, ttl=60
    )  # the 4th operation: a day on, nothing is old enough
    rows = sqlite3.connect(path).execute("SELECT count(*) FROM claims").fetchone()[0]
    assert rows == 2
    for n in range(4):
        await store.claim(f"new/{n}", now=NOW + 86_400 + 61 + n, ttl=60)
    db = sqlite3.connect(path)
    assert {row[0] for row in db.execute("SELECT key FROM claims")} == {
        "late/c",
        *(f"new/{n}" for n in range(4)),
    }
    assert db.execute("SELECT count(*) FROM counters").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM members").fetchone()[0] == 0
    await store.aclose()
