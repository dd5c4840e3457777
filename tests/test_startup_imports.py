"""Start-up (issue 11): `replay` loads only what a replay uses. Timing belongs to bench/startup_bench.py;
this checks the cheap, deterministic part: which libraries a replay of the shipped configuration imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# what only `run`, `audit`, `backfill`, `health`, Sigma packs or a terminal's progress bar need
NOT_FOR_REPLAY = (
    "prometheus_client",
    "aiobotocore",
    "botocore",
    "aiohttp",
    "sigma",
    "tqdm",
    "kvs_sentinel.service",
    "kvs_sentinel.metrics",
    "kvs_sentinel.audit",
)

REPLAY_AND_LIST_MODULES = """
import contextlib, io, json, sys
from kvs_sentinel.cli import main
with contextlib.redirect_stderr(io.StringIO()):
    code = main(["replay", "--no-progress", sys.argv[1]])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def replay_modules(tmp_path: Path) -> list[str]:
    """The modules loaded by a process that replayed an empty file with the shipped configuration."""
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-c", REPLAY_AND_LIST_MODULES, str(empty)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(done.stdout)
    assert found["code"] == 0
    modules: list[str] = found["modules"]
    return modules


def loaded(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def test_replay_does_not_import_what_only_other_commands_use(tmp_path: Path) -> None:
    assert loaded(replay_modules(tmp_path), NOT_FOR_REPLAY) == []


def test_a_second_replay_reads_the_parsed_configuration_without_the_yaml_parser(tmp_path: Path) -> None:
    replay_modules(tmp_path)
    assert loaded(replay_modules(tmp_path), ("yaml", "_yaml")) == []


PROGRAM_GC = """
import gc, json
import kvs_sentinel.cli
seen = {}
def command_line():
    seen["enabled"] = gc.isenabled()
    seen["frozen"] = gc.get_freeze_count()
    return 3
kvs_sentinel.cli.main = command_line
from kvs_sentinel.program import main
code = main()
print(json.dumps({"code": code, "enabled_after": gc.isenabled(), **seen}))
"""


def test_the_program_runs_its_command_with_the_collector_on_and_start_up_objects_frozen() -> None:
    # its own process: freezing objects is for the life of a program, not of a test session
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM_GC], capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(done.stdout)
    assert found["code"] == 3
    assert found["enabled"]  # a long `run` must still collect its cycles
    assert found["enabled_after"]
    assert found["frozen"] > 10_000  # the imports' objects, which later collections need not walk
