"""Whole processes, measured in one run: commands alternate round by round, and each gets the median of
its wall time and of its CPU time (user + system, from the children's rusage), so that a noisy machine
moves every side alike and start-up counts as a user feels it."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


def medians(
    commands: Mapping[str, Sequence[str]],
    rounds: int,
    *,
    envs: Mapping[str, Mapping[str, str]] | None = None,
    cwd: Path | None = None,
    warmup: int = 0,
    drop: Sequence[str] = (),
) -> dict[str, Timing]:
    """Run every command once per round, in turn; each command's median wall and CPU seconds.

    `envs`: variables added to the environment of the named commands; `warmup`: rounds run first and not
    counted (they let each command write its bytecode, as an installed package has it); `drop`: variables
    removed from every command's environment."""
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    inherited = {key: value for key, value in os.environ.items() if key not in drop}
    environments = {name: inherited | dict((envs or {}).get(name, {})) for name in commands}
    for round_ in range(warmup + rounds):
        for name, command in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(
                command,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=environments[name],
                cwd=cwd,
            )
            if round_ < warmup:
                continue
            walls[name].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return {name: Timing(statistics.median(walls[name]), statistics.median(cpus[name])) for name in commands}
