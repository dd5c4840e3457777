"""Waiting for a condition with a deadline: polling, never sleeping a guessed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import pytest


async def wait_until(predicate: Callable[[], Any], seconds: float, what: str | Callable[[], str]) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; fail after `seconds`. `what`
    may be a function, called only on failure (to describe the state at that moment)."""
    deadline = time.monotonic() + seconds
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.1)
