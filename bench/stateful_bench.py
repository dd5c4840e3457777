"""Stateful detectors benchmark: ratios measured in one run, so a noisy machine moves every side alike.

The 200k-event replay corpus, replayed (best of N rounds, interleaved, each replay in a forked child of the
process that loaded the configuration, so each starts as cold as a user's replay; wall clock and CPU time):
1. the shipped pack without its stateful detectors: the stateless baseline;
2. the whole pack, stateful detectors on a memory store;
3. the whole pack, stateful detectors on SQLite (a fresh file each round, opened as a replay of files
   opens it); target (issue 14): >= 0.8x the stateless time; each ratio is given best-of against
   best-of, and as the median of each round's own ratio, beside the stateless pack against itself
   (how much two identical replays differ on this machine);
4. store calls per 1,000 events, by operation of the store (memory, counted);
5. DynamoDB requests per 1,000 events, by API operation: the whole pack replayed once on a table of a
   moto server on loopback (a new set or a race costs a `remember` more than one request).

    python -m bench.stateful_bench [--events 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from bench.corpus import write_corpus
from bench.replay_bench import replay
from kvs_sentinel.config import LoadedConfig, load_config
from kvs_sentinel.logs import configure_logging
from kvs_sentinel.state.base import Membership, StateStore
from kvs_sentinel.state.dynamodb import DynamoDbStore
from kvs_sentinel.state.memory import MemoryStore
from kvs_sentinel.state.registry import StoreUse, open_store

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
BENCH_CONFIG = HERE / "sentinel.yaml"
TABLE = "kvs-sentinel-state"


class CountingStore:
    """A store that counts the calls made to the one it wraps."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.overlaps = inner.overlaps
        self.calls: Counter[str] = Counter()

    async def claim(self, key: str, *, now: float, ttl: float) -> bool:
        self.calls["claim"] += 1
        return await self.inner.claim(key, now=now, ttl=ttl)

    async def release(self, key: str, *, expires_at: float) -> None:
        self.calls["release"] += 1
        await self.inner.release(key, expires_at=expires_at)

    async def is_claimed(self, key: str, *, now: float) -> bool:
        self.calls["is_claimed"] += 1
        return await self.inner.is_claimed(key, now=now)

    async def count(self, key: str, amount: int, *, now: float, ttl: float) -> int:
        self.calls["count"] += 1
        return await self.inner.count(key, amount, now=now, ttl=ttl)

    async def remember(self, key: str, member: str, *, now: float, ttl: float, limit: int) -> Membership:
        self.calls["remember"] += 1
        return await self.inner.remember(key, member, now=now, ttl=ttl, limit=limit)

    async def remember_all(
        self, key: str, members: Sequence[tuple[str, float]], *, ttl: float, limit: int
    ) -> list[Membership]:
        self.calls["remember_all"] += 1
        return await self.inner.remember_all(key, members, ttl=ttl, limit=limit)

    async def forget(self, key: str, member: str, *, expires_at: float) -> None:
        self.calls["forget"] += 1
        await self.inner.forget(key, member, expires_at=expires_at)

    async def members(self, key: str, *, now: float) -> frozenset[str]:
        self.calls["members"] += 1
        return await self.inner.members(key, now=now)

    def batch(self) -> AbstractAsyncContextManager[None]:
        self.calls["batch"] += 1
        return self.inner.batch()

    async def aclose(self) -> None:
        await self.inner.aclose()


class CountingClient:
    """A DynamoDB client that counts the requests made through it, by API operation."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, operation: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.inner, operation)

        async def counted(**request: Any) -> Any:
            self.calls[operation] += 1
            return await method(**request)

        return counted

    async def __aexit__(self, *exc_info: object) -> None:
        await self.inner.__aexit__(*exc_info)


@contextmanager
def moto_dynamodb() -> Iterator[None]:
    """A moto server on loopback, and the AWS environment pointed at it (restored after)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = dict(os.environ)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
    )
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(name, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()


async def open_replay_store(url: str) -> StateStore:
    """The store as `replay` of files opens it (SQLite commits its batches in groups)."""
    return await open_store(url, StoreUse(group_commits=True))


def dynamodb_replay(corpus: Path, loaded: LoadedConfig) -> tuple[Counter[str], float]:
    """The replay on a fresh DynamoDB table: requests by operation, and the seconds it took."""
    counting: list[CountingClient] = []

    async def open_table() -> StateStore:
        store = await open_store(f"dynamodb:{TABLE}")  # as `run` opens it
        assert isinstance(store, DynamoDbStore)
        await store.client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        counting.append(CountingClient(store.client))
        store.client = counting[0]
        return store

    with moto_dynamodb():
        start = time.perf_counter()
        replay(corpus, loaded, open_table)
        return counting[0].calls, time.perf_counter() - start


def in_child(work: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of `work` in a forked child of this process (configuration loaded, nothing
    replayed): every replay starts as cold as a user's does, with no string-test or event-time cache
    filled by an earlier round (in one process, later rounds ran up to 1.3x faster on those alone)."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            work()
            os.write(write, f"{time.perf_counter() - wall} {time.process_time() - cpu}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        took = answer.read().split()
    _, status = os.waitpid(child, 0)
    assert status == 0, "the replay in the child failed: see above"
    assert len(took) == 2, f"the child answered {took!r}"
    return float(took[0]), float(took[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure_logging("warning", json=False)
    OUT.mkdir(exist_ok=True)
    corpus = OUT / f"corpus-{args.events}.jsonl"
    if not corpus.exists():
        write_corpus(corpus, args.events, "jsonl")

    shipped = load_config(BENCH_CONFIG)
    stateful = [d.id for d in shipped.detectors if d.stateful is not None]
    stateless = dataclasses.replace(
        shipped, detectors=tuple(d for d in shipped.detectors if d.stateful is None)
    )
    with tempfile.TemporaryDirectory() as folder:
        runs: dict[str, Callable[[int], object]] = {
            "stateless": lambda _: replay(corpus, stateless, None),
            "memory": lambda _: replay(corpus, shipped, MemoryStore()),
            "sqlite": lambda n: replay(
                corpus, shipped, partial(open_replay_store, f"sqlite:{folder}/state-{n}.db")
            ),
            "stateless again": lambda _: replay(corpus, stateless, None),  # the machine's noise
        }
        walls: dict[str, list[float]] = {name: [] for name in runs}
        cpus: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for n in range(args.rounds):  # interleaved: a burst of load elsewhere slows all of them alike
            # and each round starts with the next one: the first replay of a round ran slower
            for name in names[n % len(names) :] + names[: n % len(names)]:
                run = runs[name]
                took_wall, took_cpu = in_child(lambda run=run, n=n: run(n))
                walls[name].append(took_wall)
                cpus[name].append(took_cpu)
        wall = {name: min(took) for name, took in walls.items()}
        cpu = {name: min(took) for name, took in cpus.items()}

    counting = CountingStore(MemoryStore())
    stats = replay(corpus, shipped, counting)
    print(
        f"corpus: {args.events} events; best of {args.rounds} interleaved rounds; "
        f"stateful: {', '.join(stateful)}"
    )
    print(f"stateless (the pack without them): {args.events / wall['stateless']:>9,.0f} events/s")
    for name, label, target in (
        ("memory", "with them, memory store", ""),
        ("sqlite", "with them, SQLite store", " (target >= 0.8x)"),
        ("stateless again", "without them, again", " (the noise: the same replay)"),
    ):
        print(
            f"{label}:{' ' * (35 - len(label))}{args.events / wall[name]:>9,.0f} events/s "
            f"= {wall['stateless'] / wall[name]:.2f}x the stateless speed by wall clock, "
            f"{cpu['stateless'] / cpu[name]:.2f}x by CPU time{target}"
        )
    # each round's own ratio, the stateless replay of the same round against the other: a slow spell
    # that spans a round cancels out; their median and range beside the best-of ratios above
    for name in ("memory", "sqlite", "stateless again"):
        paired = sorted(a / b for a, b in zip(cpus["stateless"], cpus[name], strict=True))
        print(
            f"paired by round, CPU, {name}: median {statistics.median(paired):.2f}x "
            f"(rounds {paired[0]:.2f}x to {paired[-1]:.2f}x)"
        )
    batches = counting.calls.pop("batch", 0)
    per_thousand = {op: round(n * 1000 / args.events, 1) for op, n in sorted(counting.calls.items())}
    stateful_alerts = {d: stats.alerts_by_detector[d] for d in stateful}
    print(
        f"store calls per 1,000 events: {sum(per_thousand.values()):.1f} {per_thousand}, in "
        f"{batches * 1000 / args.events:.1f} batches (one per message that asked); "
        f"stateful alerts: {stateful_alerts}"
    )
    requests, seconds = dynamodb_replay(corpus, shipped)
    per_thousand = {op: round(n * 1000 / args.events, 1) for op, n in sorted(requests.items())}
    print(
        f"DynamoDB (moto server) requests per 1,000 events: {sum(per_thousand.values()):.1f} "
        f"{per_thousand}; the replay took {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
