"""`${VAR}` in the YAML: replaced from the environment, or, where the command will not use it, deferred.

`replay`, `test` and `validate` never deliver and never consume SQS, so a production configuration must be
checkable in CI without its secrets: under `sinks:` and `sources:` an unset variable is then left in place
and recorded, and the fields that hold one are checked once it is set (by `run` and `replay --deliver`,
which require every variable).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kvs_sentinel.errors import ConfigError

_Model = TypeVar("_Model", bound=BaseModel)
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute_env(value: Any, where: str, unset: list[str] | None = None) -> Any:
    """Replace `${VAR}` in strings from the environment; a missing variable is an error, never ''.

    With `unset`, a missing variable is left as written and `where: VAR` is appended to it instead.
    """
    return _substitute(value, (where,), unset)


# Where a value is, as the chain (parent, key, in a list) down from the top: written out as text only for
# a string that names a variable (a pack is thousands of values, and hardly any does).
_Path = tuple[Any, ...]


def _substitute(value: Any, path: _Path, unset: list[str] | None) -> Any:
    if isinstance(value, str):
        if "${" not in value:
            return value
        where = _where(path)

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in os.environ:
                return os.environ[name]
            if unset is None:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            unset.append(f"{where}: {name}")
            return match.group(0)

        return ENV_REFERENCE.sub(lookup, value)
    if isinstance(value, list):
        return [_substitute(element, (path, i, True), unset) for i, element in enumerate(value)]
    if isinstance(value, dict):
        return {key: _substitute(element, (path, key, False), unset) for key, element in value.items()}
    return value


def _where(path: _Path) -> str:
    """`top: key.key[0]`: the first key after the top follows `: `, the next ones `.`; an index `[i]`."""
    if len(path) == 1:
        return str(path[0])
    parent, key, in_list = path
    where = _where(parent)
    if in_list:
        return f"{where}[{key}]"
    return f"{where}{': ' if ': ' not in where else '.'}{key}"


def validate_options(model: type[_Model], options: Mapping[str, Any]) -> _Model:
    """`model` from `options`; a field still holding an unset `${VAR}` is not checked (nor usable).

    Raises pydantic's ValidationError for the other fields.
    """
    deferred = {
        key for key, value in options.items() if isinstance(value, str) and ENV_REFERENCE.search(value)
    }
    if not deferred:
        return model.model_validate(options)
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        remaining = [error for error in exc.errors() if not error["loc"] or error["loc"][0] not in deferred]
        if remaining:
            raise ValidationError.from_exception_data(exc.title, remaining) from None  # type: ignore[arg-type]
    return model.model_construct(**options)
