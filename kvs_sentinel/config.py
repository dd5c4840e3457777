"""sentinel.yaml: which packs to load, named-list overrides, inline detectors. Errors name file and path."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from kvs_sentinel.detectors.compiler import Detector, DetectorCompiler, count_conditions
from kvs_sentinel.detectors.spec import DetectorSpec, PackSpec
from kvs_sentinel.errors import ConfigError

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
BUILTIN_PREFIX = "builtin:"


class SentinelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    packs: list[str] = [BUILTIN_PREFIX + "kvs"]
    lists: dict[str, list[str | int | float]] = {}
    detectors: list[DetectorSpec] = []
    disabled: list[str] = []


@dataclass(frozen=True)
class LoadedConfig:
    path: Path | None
    config: SentinelConfig
    lists: Mapping[str, Sequence[Any]]
    detectors: tuple[Detector, ...]
    packs: tuple[Path, ...]


def shipped_config_dir() -> Path:
    """`config/` of a source checkout, or its copy inside the installed wheel."""
    packaged = Path(str(resources.files("kvs_sentinel"))) / "_config"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "config"


def default_config_path() -> Path:
    return shipped_config_dir() / "sentinel.yaml"


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None


def substitute_env(value: Any, where: str) -> Any:
    """Replace `${VAR}` in strings from the environment; a missing variable is an error, never ''."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REFERENCE.sub(lookup, value)
    if isinstance(value, list):
        return [substitute_env(element, f"{where}[{i}]") for i, element in enumerate(value)]
    if isinstance(value, dict):
        separator = ": " if ": " not in where else "."
        return {key: substitute_env(element, f"{where}{separator}{key}") for key, element in value.items()}
    return value


def validation_problems(exc: ValidationError, data: Any) -> str:
    """Pydantic errors as `detectors[2] (my-id).severity: Input should be ...`, one per line."""
    lines = []
    for error in exc.errors():
        parts: list[str] = []
        node = data
        for key in error["loc"]:
            if isinstance(key, int):
                label = f"[{key}]"
                node = node[key] if isinstance(node, list) and key < len(node) else None
                if isinstance(node, dict) and isinstance(node.get("id"), str):
                    label += f" ({node['id']})"
                parts.append(label)
            else:
                parts.append(("." if parts else "") + str(key))
                node = node.get(key) if isinstance(node, dict) else None
        lines.append(f"{''.join(parts) or '(top level)'}: {error['msg']}")
    return "; ".join(lines)


def _pack_path(reference: str, base: Path) -> Path:
    if reference.startswith(BUILTIN_PREFIX):
        return shipped_config_dir() / "packs" / f"{reference[len(BUILTIN_PREFIX) :]}.yaml"
    path = Path(reference)
    return path if path.is_absolute() else base / path


def load_pack(path: Path) -> PackSpec:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a detector pack is a mapping with `lists` and `detectors`")
    try:
        return PackSpec.model_validate(substitute_env(data, str(path)))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc, data)}") from None


def load_config(path: Path | None = None) -> LoadedConfig:
    """Load and compile a configuration; raises ConfigError naming the file, detector and field."""
    config_path = path or default_config_path()
    data = read_yaml(config_path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{config_path}: the configuration is a mapping (packs, lists, detectors, disabled)"
        )
    try:
        config = SentinelConfig.model_validate(substitute_env(data, str(config_path)))
    except ValidationError as exc:
        raise ConfigError(f"{config_path}: {validation_problems(exc, data)}") from None
    return compile_config(config, config_path)


def compile_config(config: SentinelConfig, config_path: Path) -> LoadedConfig:
    base = config_path.parent
    pack_paths = tuple(_pack_path(reference, base) for reference in config.packs)
    packs = [(pack_path, load_pack(pack_path)) for pack_path in pack_paths]

    lists: dict[str, list[Any]] = {}
    for pack_path, pack in packs:
        for name, values in pack.lists.items():
            if name in lists and lists[name] != values:
                raise ConfigError(f"{pack_path}: lists.{name}: already defined differently by another pack")
            lists[name] = list(values)
    for name, values in config.lists.items():
        if name not in lists and not config.detectors:
            known = ", ".join(sorted(lists)) or "none"
            raise ConfigError(f"{config_path}: lists.{name}: no pack uses this list (known lists: {known})")
        lists[name] = list(values)

    detectors: list[Detector] = []
    seen: dict[str, Path] = {}
    sources = [(pack_path, pack.detectors) for pack_path, pack in packs] + [(config_path, config.detectors)]
    counts: Counter[str] = Counter()
    for _, specs in sources:
        for spec in specs:
            count_conditions(spec.match, counts)
            for rule in spec.escalate:
                count_conditions(rule.when, counts)
    repeated = frozenset(key for key, count in counts.items() if count > 1)
    for origin, specs in sources:
        compiler = DetectorCompiler(lists, origin, repeated)
        for position, spec in enumerate(specs):
            if spec.id in seen:
                raise ConfigError(
                    f"{origin}: detectors[{position}] ({spec.id}): id already used in {seen[spec.id]}"
                )
            seen[spec.id] = origin
            detectors.append(compiler.detector(spec, position))

    unknown = sorted(set(config.disabled) - set(seen))
    if unknown:
        raise ConfigError(f"{config_path}: disabled: unknown detector ids {', '.join(unknown)}")
    enabled = tuple(d for d in detectors if d.id not in set(config.disabled))
    return LoadedConfig(config_path, config, lists, enabled, pack_paths)
