"""sentinel.yaml: which packs to load, named-list overrides, inline detectors, delivery, and what `run`
consumes (run_config.py). Errors name file and path."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kvs_sentinel.detectors.compiler import Detector, DetectorCompiler, count_conditions
from kvs_sentinel.detectors.spec import DetectorSpec, PackSpec
from kvs_sentinel.env_refs import ENV_REFERENCE, substitute_env, validate_options
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.flood import GroupingSpec, SuppressionSpec
from kvs_sentinel.routing import RouteSpec
from kvs_sentinel.run_config import ServiceConfig, SourceSpec, check_sources
from kvs_sentinel.sinks.base import SinkSpec
from kvs_sentinel.sinks.registry import SinkSetting, secret_fields, sink_type
from kvs_sentinel.sources.base import SourceConfig
from kvs_sentinel.yaml_files import read_yaml

BUILTIN_PREFIX = "builtin:"
SIGMA_PREFIX = "sigma:"


class SentinelConfig(BaseModel):
    # defer_build, here and on every model: a schema is built when first used, so a command pays only for
    # the models it validates (start-up: most commands never validate a sink's or a check's options)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    packs: list[str] = [BUILTIN_PREFIX + "kvs"]
    lists: dict[str, list[str | int | float]] = {}
    detectors: list[DetectorSpec] = []
    disabled: list[str] = []
    # delivery (replay --deliver, run): named sinks, routes to them, and flood control
    sinks: dict[str, SinkSpec] = {}
    routes: list[RouteSpec] = []
    default_route: list[str] | None = None
    suppressions: list[SuppressionSpec] = []
    grouping: GroupingSpec = Field(default_factory=lambda: GroupingSpec.model_validate({}))
    # `run`: the queues it consumes, and how it behaves as a service
    sources: list[SourceSpec] = []
    service: ServiceConfig = Field(default_factory=lambda: ServiceConfig.model_validate({}))


@dataclass(frozen=True)
class DeliverySettings:
    """The delivery sections after pass two: sink configs checked by their type, names resolved."""

    sinks: Mapping[str, SinkSetting] = field(default_factory=dict)
    routes: tuple[RouteSpec, ...] = ()
    default_route: tuple[str, ...] = ()
    suppressions: tuple[SuppressionSpec, ...] = ()
    grouping: GroupingSpec = field(default_factory=lambda: GroupingSpec.model_validate({}))


@dataclass(frozen=True)
class LoadedConfig:
    path: Path | None
    config: SentinelConfig
    lists: Mapping[str, Sequence[Any]]
    detectors: tuple[Detector, ...]
    packs: tuple[Path, ...]
    delivery: DeliverySettings = field(default_factory=DeliverySettings)  # not built at import
    sources: tuple[SourceConfig, ...] = ()
    # `sinks.NAME.FIELD: VAR` for each variable left unset because the command does not deliver
    unset_env: tuple[str, ...] = ()
    # ids of the detectors translated from Sigma rules (which carry no examples for `test`)
    sigma_detectors: frozenset[str] = frozenset()


def shipped_config_dir() -> Path:
    """`config/` of a source checkout, or its copy inside the installed wheel."""
    # the package's folder, as importlib.resources.files would give it, without its ~10 ms of imports
    packaged = Path(__file__).parent / "_config"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "config"


def default_config_path() -> Path:
    return shipped_config_dir() / "sentinel.yaml"


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


def builtin_packs() -> list[str]:
    return sorted(BUILTIN_PREFIX + path.stem for path in (shipped_config_dir() / "packs").glob("*.yaml"))


def _pack_path(reference: str, base: Path, where: str) -> Path:
    """`builtin:NAME` is a pack shipped with kvs-sentinel; `sigma:PATH` a Sigma rule file or a folder of
    them; any other path is relative to the config file."""
    if reference.startswith(SIGMA_PREFIX):
        reference = reference[len(SIGMA_PREFIX) :]
    elif reference.startswith(BUILTIN_PREFIX):
        path = shipped_config_dir() / "packs" / f"{reference[len(BUILTIN_PREFIX) :]}.yaml"
        if not path.is_file():
            known = ", ".join(builtin_packs()) or "none"
            raise ConfigError(f"{where}: no built-in pack {reference!r}; built-in packs: {known}")
        return path
    path = Path(reference)
    path = path if path.is_absolute() else base / path
    if not path.exists():
        raise ConfigError(
            f"{where}: {path}: no such file (a relative path is relative to the configuration file's "
            f"folder; the shipped packs are {', '.join(builtin_packs())})"
        )
    return path


def load_pack(path: Path) -> PackSpec:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a detector pack is a mapping with `lists` and `detectors`")
    try:
        return PackSpec.model_validate(substitute_env(data, str(path)))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc, data)}") from None


def _load_packs(reference: str, path: Path) -> list[tuple[Path, PackSpec]]:
    """(origin, pack) pairs: one for a YAML pack, one per rule file for Sigma, so errors name the file."""
    if reference.startswith(SIGMA_PREFIX):
        # pySigma costs ~150 ms of imports: only configurations with Sigma packs pay it
        from kvs_sentinel.detectors.sigma_rules import load_sigma_rules

        return [(file, PackSpec(detectors=specs)) for file, specs in load_sigma_rules(path)]
    return [(path, load_pack(path))]


def load_config(path: Path | None = None, *, deliver: bool = True, consume: bool = True) -> LoadedConfig:
    """Load and compile a configuration; raises ConfigError naming the file, detector and field.

    A command that does not deliver (replay, test, validate) passes `deliver=False`, one that does not
    consume SQS `consume=False`: `${VAR}`s left unset under `sinks:` (or `sources:`) then stay unresolved
    and are listed in `unset_env`, and those sinks (or sources) must not be built.
    """
    config_path = path or default_config_path()
    data = read_yaml(config_path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{config_path}: the configuration is a mapping (packs, lists, detectors, disabled)"
        )
    _check_secrets_from_env(data, config_path)
    unset: list[str] = []
    deferred = {"sinks": not deliver, "sources": not consume}
    substituted = {
        key: substitute_env(value, f"{config_path}: {key}", unset if deferred.get(key) else None)
        for key, value in data.items()
    }
    try:
        config = SentinelConfig.model_validate(substituted)
    except ValidationError as exc:
        raise ConfigError(f"{config_path}: {validation_problems(exc, data)}") from None
    loaded = compile_config(config, config_path)
    prefix = f"{config_path}: "
    return replace(loaded, unset_env=tuple(where.removeprefix(prefix) for where in unset))


def compile_config(config: SentinelConfig, config_path: Path) -> LoadedConfig:
    base = config_path.parent
    pack_paths = tuple(
        _pack_path(reference, base, f"{config_path}: packs[{i}]") for i, reference in enumerate(config.packs)
    )
    packs: list[tuple[Path, PackSpec]] = []
    sigma_detectors: set[str] = set()
    for reference, pack_path in zip(config.packs, pack_paths, strict=True):
        loaded_packs = _load_packs(reference, pack_path)
        packs.extend(loaded_packs)
        if reference.startswith(SIGMA_PREFIX):
            sigma_detectors.update(spec.id for _, pack in loaded_packs for spec in pack.detectors)

    lists: dict[str, list[Any]] = {}
    list_origins: dict[str, Path] = {}
    for pack_path, pack in packs:
        for name, values in pack.lists.items():
            if name in lists and lists[name] != values:
                raise ConfigError(f"{pack_path}: lists.{name}: already defined differently by another pack")
            lists[name] = list(values)
            list_origins.setdefault(name, pack_path)
    for name, values in config.lists.items():
        if name not in lists and not config.detectors:
            known = ", ".join(sorted(lists)) or "none"
            raise ConfigError(f"{config_path}: lists.{name}: no pack uses this list (known lists: {known})")
        lists[name] = list(values)
        list_origins[name] = config_path

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
        compiler = DetectorCompiler(lists, origin, repeated, list_origins)
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
    delivery = check_delivery(config, frozenset(seen), config_path)
    queues = check_sources(config.sources, config_path, validation_problems)
    return LoadedConfig(
        config_path,
        config,
        lists,
        enabled,
        pack_paths,
        delivery,
        queues,
        sigma_detectors=frozenset(sigma_detectors),
    )


def _check_secrets_from_env(data: Mapping[str, Any], path: Path) -> None:
    """A sink's secret fields (a Slack webhook URL) must be `${VAR}` in the file, never the value."""
    sinks = data.get("sinks")
    if not isinstance(sinks, dict):
        return
    for name, spec in sinks.items():
        if not isinstance(spec, dict):
            continue
        for secret in secret_fields(str(spec.get("type"))):
            value = spec.get(secret)
            if value is not None and not (isinstance(value, str) and ENV_REFERENCE.fullmatch(value.strip())):
                raise ConfigError(
                    f"{path}: sinks.{name}.{secret}: this is a secret; write ${{VARIABLE}} here and set "
                    "the variable in the environment (the value itself must not be in the file)"
                )


def check_delivery(config: SentinelConfig, detector_ids: frozenset[str], path: Path) -> DeliverySettings:
    """Pass two of the delivery sections: sink options by type, sink and detector names that exist."""
    sinks: dict[str, SinkSetting] = {}
    for name, spec in config.sinks.items():
        try:
            options = dict(spec.model_extra or {})
            sinks[name] = SinkSetting(name, spec.type, validate_options(sink_type(spec.type).Config, options))
        except ValidationError as exc:
            options = spec.model_extra or {}
            raise ConfigError(f"{path}: sinks.{name}.{validation_problems(exc, options)}") from None
        except ValueError as exc:
            raise ConfigError(f"{path}: sinks.{name}.type: {exc}") from None

    def known_sinks(names: Sequence[str], where: str) -> tuple[str, ...]:
        unknown = [n for n in names if n not in sinks]
        if unknown:
            configured = ", ".join(sorted(sinks)) or "none: add a sinks section"
            raise ConfigError(
                f"{path}: {where}: unknown sink {', '.join(unknown)} (configured: {configured})"
            )
        return tuple(names)

    def known_detector(pattern: str, where: str) -> None:
        if not any(c in pattern for c in "*?[") and pattern not in detector_ids:
            raise ConfigError(f"{path}: {where}: no detector has the id {pattern!r}")

    for i, route in enumerate(config.routes):
        where = f"routes[{i}]" + (f" ({route.name})" if route.name else "")
        known_sinks(route.sinks, f"{where}.sinks")
        for pattern in route.detectors:
            known_detector(pattern, f"{where}.detectors")
    if config.default_route is None:
        if config.routes:
            raise ConfigError(
                f"{path}: default_route: required with routes, so an alert no route matches is not lost "
                "(default_route: [] drops such alerts on purpose)"
            )
        default = tuple(sinks)
    else:
        default = known_sinks(config.default_route, "default_route")
    for detector in config.grouping.detectors:
        known_detector(detector, f"grouping.detectors.{detector}")
    for i, suppression in enumerate(config.suppressions):
        condition = suppression.match.get("detector")
        patterns = [condition] if isinstance(condition, str) else condition
        if isinstance(patterns, list):
            for pattern in patterns:
                known_detector(pattern, f"suppressions[{i}].match.detector")
    return DeliverySettings(sinks, tuple(config.routes), default, tuple(config.suppressions), config.grouping)
