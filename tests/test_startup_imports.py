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


def test_replay_does_not_import_what_only_other_commands_use(tmp_path: Path) -> None:
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
    loaded = [m for m in found["modules"] if any(m == n or m.startswith(n + ".") for n in NOT_FOR_REPLAY)]
    assert loaded == []
