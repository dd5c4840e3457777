"""`run` before its event loop: SIGTERM or SIGINT end the process with exit 0, not killed by the signal.

ECS sends SIGTERM to stop a task, including one still starting (a deployment rolled back, a scale-in).
Until `service.serve` installs its own handlers (which only request a stop), the default action would end
the process with -15, which ECS reports as a failed task. Nothing has been received yet, so there is
nothing to drain: exiting at once is the clean stop. Cheap to import, so it can run before the config load
and the heavy imports of `service`.
"""

from __future__ import annotations

import signal
from types import FrameType

import structlog

log = structlog.get_logger("kvs_sentinel.service")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_cleanly_on_stop_signals() -> None:
    """Until replaced by the service's handlers: a stop signal logs one line and exits 0."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _exit_cleanly)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    log.info("stopped_before_start", signal=signal.Signals(signum).name)
    raise SystemExit(0)
