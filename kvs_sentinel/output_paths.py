"""Output paths given on the command line (`-o`, `--summary-json`), checked before any work is done.

A replay can take minutes; finding out at the end that its summary cannot be written wastes them.
"""

from __future__ import annotations

import os
from pathlib import Path

from kvs_sentinel.errors import UsageError


def check_writable(path: Path, option: str) -> None:
    """Raise UsageError, naming the option, the path and what to do, unless `path` can be written."""
    where = f"{option} {path}"
    if path.is_dir():
        raise UsageError(f"{where}: is a folder; name a file in it, e.g. {path / 'summary.json'}")
    folder = path.parent
    if not folder.exists():
        raise UsageError(f"{where}: folder {folder} does not exist; create it or choose another path")
    if not folder.is_dir():
        raise UsageError(f"{where}: {folder} is not a folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{where}: the file is not writable; check its permissions or choose another path")
    if not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{where}: cannot create files in {folder}; check its permissions")
