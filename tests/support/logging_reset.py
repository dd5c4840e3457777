"""Import `fresh_logging` into a test module to start each of its tests from structlog's defaults."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """`main()` binds structlog to the stderr of the test that ran it; start each test from defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
