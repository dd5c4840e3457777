from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


@pytest.fixture
def corpus() -> Path:
    assert CORPUS.is_dir(), f"the shared corpus is expected at {CORPUS}"
    return CORPUS


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`main()` configures structlog to print to the sys.stderr of that moment, which is a test's capsys
    stream; restore the previous configuration so later tests do not log into a closed file."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
