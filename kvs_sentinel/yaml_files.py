"""Reading a YAML file (a configuration or a detector pack) into plain data, or one ConfigError that names
the file, the line and column where known, and what to fix. Never a traceback."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from kvs_sentinel import parse_cache
from kvs_sentinel.errors import ConfigError


@cache
def _loader() -> type[Any]:
    """SafeLoader (libyaml's when there: it reads the shipped pack ~8x faster than the pure-Python one)
    whose impossible dates (`expires: 2027-13-45`) are errors with a position, not a ValueError from deep
    inside the loader. Built on first use: a file found in the parse cache needs no YAML library."""
    import yaml
    from yaml.constructor import ConstructorError, SafeConstructor

    safe_loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(safe_loader):  # type: ignore[valid-type,misc]
        pass

    def timestamp(loader: Loader, node: yaml.ScalarNode) -> Any:
        try:
            return SafeConstructor.construct_yaml_timestamp(loader, node)
        except ValueError as exc:
            problem = f"{node.value!r} is not a date ({exc}); write dates as YYYY-MM-DD"
            raise ConstructorError(None, None, problem, node.start_mark) from None

    Loader.add_constructor("tag:yaml.org,2002:timestamp", timestamp)
    return Loader


def read_yaml(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}:{line}:{column}: not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    return parse_cache.parsed(data, lambda: _parse(text, path))


def _parse(text: str, path: Path) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    except ValueError as exc:  # any other value the loader cannot build (a number out of range...)
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
