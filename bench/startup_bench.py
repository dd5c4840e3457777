"""Start-up as a user feels it: `kvs-sentinel replay` of an empty file with the shipped configuration, as a
whole process, beside a bare `python -c pass` measured in the same run (issue 11: < 150 ms).

With `--against REF`, the build at that git ref (its `kvs_sentinel/`, exported into bench/out/, on
PYTHONPATH ahead of this checkout; same interpreter and dependencies) is measured in the same rounds, so
a before/after comparison shares the machine's noise.

`replay (this checkout)` finds the configuration and the pack already parsed (kvs_sentinel/parse_cache.py),
as every run after the first does; `replay, no parse cache` parses them, as the first run does.

Children may write bytecode (PYTHONDONTWRITEBYTECODE is unset for them) and one uncounted round runs
first: an installed package has its bytecode (pip and the container image compile it), so a cold
compile of every module is not what a user waits for.

    python -m bench.startup_bench [--rounds 21] [--against main]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from bench.whole_process import medians
from kvs_sentinel.parse_cache import CACHE_DIR_ENV

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
REPO = HERE.parent
TARGET_MS = 150


def export_ref(ref: str) -> Path:
    """`kvs_sentinel/` and `config/` at `ref`, extracted under bench/out/ (replaced if there)."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", ref], check=True, capture_output=True, text=True
    ).stdout.strip()
    target = OUT / f"build-{commit}"
    if not target.exists():
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "kvs_sentinel", "config"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--against", metavar="REF", help="also measure the build at this git ref")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    empty = OUT / "empty.jsonl"
    empty.write_bytes(b"")
    # PYTHONDONTWRITEBYTECODE="" still counts as set: the children get the variable removed instead
    replay = [sys.executable, "-m", "kvs_sentinel", "replay", "--no-progress", str(empty)]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "replay (this checkout)": replay,
        "replay, no parse cache": replay,
    }
    # the parse cache in bench/out/, not the user's; a folder that cannot be made turns it off
    envs = {
        "replay (this checkout)": {CACHE_DIR_ENV: str(OUT / "cache")},
        "replay, no parse cache": {CACHE_DIR_ENV: os.devnull},
    }
    if args.against:
        commands[f"replay ({args.against})"] = replay
        envs[f"replay ({args.against})"] = {
            "PYTHONPATH": str(export_ref(args.against)),
            CACHE_DIR_ENV: str(OUT / "cache"),
        }
    found = medians(commands, args.rounds, envs=envs, cwd=OUT, warmup=1, drop=("PYTHONDONTWRITEBYTECODE",))
    bare = found["python -c pass"]
    print(f"start-up, median of {args.rounds} alternating rounds (target: replay < {TARGET_MS} ms wall)")
    for name, timing in found.items():
        over = (timing.wall - bare.wall) * 1000
        extra = f"  ({over:+.0f} ms over bare Python)" if timing is not bare else ""
        print(f"  {name:<28} {timing.wall * 1000:6.0f} ms wall {timing.cpu * 1000:6.0f} ms CPU{extra}")


if __name__ == "__main__":
    main()
