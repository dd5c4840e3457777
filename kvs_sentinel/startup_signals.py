"""`run` before its event loop: SIGTERM or SIGINT end the process with exit 0, not killed by the signal.

ECS sends SIGTERM to stop a task, including one still starting (a deployment rolled back, a scale-in).
Until `service.serve` installs its own handlers (which only request a stop), the default action would end
the process with -15, which ECS reports as a failed task. Nothing has been received yet, so there is
nothing to drain: exiting at once is the clean stop. Cheap to import, so it can run before the config load
and the heavy imports of `service`.

The handler takes no lock and unwinds nothing: the signal may land while the main thread holds the log
writer's lock (structlog's PrintLogger lock is not reentrant) or inside code that cleans up on the way out,
so it writes its one line with os.write and leaves with os._exit.

A Python signal handler runs only between bytecodes, in the main thread: a signal that lands just before
the main thread enters a blocking read (a configuration on a slow or stalled file system) waits for that
read to end, maybe forever. `stoppable` keeps such work off the main thread, which waits in short slices.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_cleanly_on_stop_signals() -> None:
    """Until replaced by the service's handlers: a stop signal logs one line and exits 0."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _exit_cleanly)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    timestamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    entry = {"signal": name, "event": "stopped_before_start", "level": "info", "timestamp": timestamp}
    with contextlib.suppress(OSError, ValueError):  # no usable stderr: the exit code still tells
        os.write(sys.stderr.fileno(), (json.dumps(entry) + "\n").encode())
    os._exit(0)


def stoppable(work: Callable[[], T]) -> T:
    """`work()`, run in a thread while the main thread waits where a stop signal's handler can run."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # re-raised in the main thread, where the caller handles it
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="kvs-sentinel-startup", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)  # the signal handler runs between slices even if a wait missed the signal
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]
