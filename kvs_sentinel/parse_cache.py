"""Parsed YAML kept between runs, keyed by the file's bytes: start-up skips importing and running the YAML
parser for a file it has already parsed (the shipped pack is ~100 KB; parsing it was ~40 ms of every command).

What is kept is only what the parser made of the file, before `${VAR}`s are replaced (env_refs.py), so no
value from the environment, and no secret, is ever written. The key is a hash of the file's bytes, of this
package's version and of the YAML library's files: an edited file, an upgrade of either, or another parser
is another key. Entries are read with an unpickler that can build no object but plain data and dates, so a
tampered entry can at worst change the data, never run code. The cache is an optimisation only: a folder
that cannot be created or written (a read-only container) or an entry that cannot be read means the file
is parsed as before.

The folder: $KVS_SENTINEL_CACHE_DIR, else $XDG_CACHE_HOME/kvs-sentinel, else ~/.cache/kvs-sentinel.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from kvs_sentinel import __version__

CACHE_DIR_ENV = "KVS_SENTINEL_CACHE_DIR"
FORMAT = b"kvs-sentinel parsed yaml 1"
MAX_ENTRIES = 64  # older entries go when a new one would pass this
_DATES = {("datetime", name) for name in ("date", "datetime", "time", "timedelta", "timezone")}


def parsed(data: bytes, parse: Callable[[], Any]) -> Any:
    """What `parse()` makes of the file whose bytes are `data`: from the cache, else parsed and kept.

    `parse` raising is left to the caller (nothing is kept for a file that does not parse)."""
    folder = cache_dir()
    if folder is None:
        return parse()
    entry = folder / f"{_key(data)}.pickle"
    try:
        return _PlainData(io.BytesIO(entry.read_bytes())).load()
    except Exception:  # missing, truncated or foreign: parse the file instead
        pass
    value = parse()
    _store(folder, entry, value)
    return value


def cache_dir() -> Path | None:
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured) / "yaml"
    base = os.environ.get("XDG_CACHE_HOME")
    try:
        root = Path(base) if base else Path.home() / ".cache"
    except RuntimeError:  # no home folder to be found
        return None
    return root / "kvs-sentinel" / "yaml"


def _key(data: bytes) -> str:
    digest = hashlib.sha256(FORMAT)
    digest.update(f"\0{__version__}\0{_parser_identity()}\0".encode())
    digest.update(data)
    return digest.hexdigest()


@cache
def _parser_identity() -> str:
    """The YAML library's location, size and modification time, found without importing it."""
    spec = importlib.util.find_spec("yaml")
    origin = spec.origin if spec is not None else None
    if origin is None:
        return "?"
    stat = os.stat(origin)
    return f"{origin}:{stat.st_size}:{stat.st_mtime_ns}"


def _store(folder: Path, entry: Path, value: Any) -> None:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:  # first, so that a read-only system pays nothing more
        return
    try:
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        _PlainData(io.BytesIO(blob)).load()  # only data the reader accepts is kept
    except Exception:  # a value the cache cannot hold is simply not kept
        return
    try:
        _prune(folder)
        partial = entry.with_name(f"{entry.name}.{os.getpid()}.partial")
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
            handle.write(blob)
        os.replace(partial, entry)  # readers see the whole entry or none
    except OSError:
        return


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.pickle"), key=lambda path: path.stat().st_mtime)
    for old in entries[: max(0, len(entries) - MAX_ENTRIES + 1)]:
        old.unlink(missing_ok=True)


class _PlainData(pickle.Unpickler):
    """Builds containers, strings, numbers and dates, and refuses every other class or function."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _DATES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")
