"""Compiled detectors agree with a plain reference interpreter of the YAML, for random conditions and
events: generic code, and code specialised per API call through the engine's index."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvs_sentinel.config import load_config
from kvs_sentinel.detectors.codegen import generate
from kvs_sentinel.detectors.conditions import specialise
from kvs_sentinel.engine import Engine
from kvs_sentinel.events import DOC_DECODER, Event, Location

SOURCES = ["kinesisvideo.amazonaws.com", "iam.amazonaws.com"]
NAMES = ["GetMedia", "PutMedia", "DeleteStream"]
FIELDS = {
    "eventSource": SOURCES,
    "eventName": NAMES,
    "userIdentity.type": ["IAMUser", "AssumedRole", "Root"],
    "userIdentity.sessionContext.sessionIssuer.arn": [
        "arn:aws:iam::1:role/cam",
        "arn:aws:iam::1:role/viewer",
    ],
    "requestParameters.aPIName": ["PUT_MEDIA", "GET_MEDIA"],
    "errorCode": ["AccessDenied"],
}

values = {path: st.sampled_from(options) for path, options in FIELDS.items()}


def leaf() -> st.SearchStrategy[dict[str, Any]]:
    def one(path: str) -> st.SearchStrategy[dict[str, Any]]:
        option = values[path]
        specs = st.one_of(
            option,
            st.lists(option, min_size=1, max_size=3),
            st.just(None),
            option.map(lambda v: {"prefix": v[:3]}),
            option.map(lambda v: {"glob": v[:4] + "*"}),
            st.booleans().map(lambda b: {"exists": b}),
        )
        return specs.map(lambda spec: {path: spec})

    return st.sampled_from(sorted(FIELDS)).flatmap(one)


conditions = st.recursive(
    leaf(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"all": cs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"any": cs}),
        inner.map(lambda c: {"not": c}),
    ),
    max_leaves=6,
)


def event_strategy() -> st.SearchStrategy[dict[str, Any]]:
    def build(picked: dict[str, Any]) -> dict[str, Any]:
        event: dict[str, Any] = {"eventVersion": "1.08", "eventID": "e"}
        for path, value in picked.items():
            if value is None:
                continue
            node = event
            *parents, last = path.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = value
        return event

    return st.fixed_dictionaries({p: st.one_of(st.none(), v) for p, v in values.items()}).map(build)


def lookup(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def reference(condition: dict[str, Any], event: dict[str, Any]) -> bool:
    """The language's meaning, written as plainly as possible."""
    results = []
    for key, spec in condition.items():
        if key == "all":
            results.append(all(reference(c, event) for c in spec))
        elif key == "any":
            results.append(any(reference(c, event) for c in spec))
        elif key == "not":
            results.append(not reference(spec, event))
        else:
            value = lookup(event, key)
            if spec is None:
                results.append(value is None)
            elif isinstance(spec, list):
                results.append(value in spec)
            elif isinstance(spec, dict) and "prefix" in spec:
                results.append(isinstance(value, str) and value.startswith(spec["prefix"]))
            elif isinstance(spec, dict) and "glob" in spec:
                results.append(isinstance(value, str) and fnmatch.fnmatchcase(value, spec["glob"]))
            elif isinstance(spec, dict) and "exists" in spec:
                results.append((value is not None) is spec["exists"])
            else:
                results.append(value == spec)
    return all(results)


def compile_one(tmp: Path, condition: dict[str, Any]) -> Engine:
    pack = {
        "detectors": [
            {
                "id": "random",
                "title": "random condition",
                "severity": "low",
                "description": "a generated condition",
                "remediation": "none, generated for a test",
                "match": condition,
            }
        ]
    }
    (tmp / "pack.json").write_text(json.dumps(pack))  # YAML is a superset of JSON
    (tmp / "sentinel.yaml").write_text("packs: [pack.json]\n")
    return Engine(load_config(tmp / "sentinel.yaml").detectors)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(condition=conditions, events=st.lists(event_strategy(), min_size=1, max_size=6))
def test_compiled_detectors_agree_with_the_reference_interpreter(
    tmp_path: Path, condition: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    engine = compile_one(tmp_path, condition)
    (detector,) = engine.detectors
    generic = generate(detector.condition)
    for raw in events:
        expected = reference(condition, raw)
        event = Event(DOC_DECODER.decode(json.dumps(raw)), "record", Location("t"), None)
        assert bool(generic(event)) == expected, (condition, raw)
        assert bool(engine.evaluate(event)) == expected, (condition, raw)
        known = {"eventSource": raw.get("eventSource"), "eventName": raw.get("eventName")}
        assert bool(generate(specialise(detector.condition, known))(event)) == expected, (condition, raw)


def test_generated_code_refuses_a_top_level_name_that_is_not_a_record_field() -> None:
    from kvs_sentinel.detectors.conditions import FieldTest
    from kvs_sentinel.detectors.operators import compile_operator

    hostile = FieldTest("__class__.x", (compile_operator("exists", True),), 1.0)
    with pytest.raises(ValueError, match="not a CloudTrail record field"):
        generate(hostile)
