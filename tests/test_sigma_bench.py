"""The Sigma benchmark feeds azuma what it needs to judge the same events fairly (azuma itself is a
bench-only extra: these tests cover our side of the comparison)."""

from __future__ import annotations

import orjson

from bench.sigma_bench import case_events, corpus, flat


def test_flat_gives_dotted_keys_whole_objects_and_what_a_path_through_an_array_finds() -> None:
    record = {
        "eventName": "RegisterTaskDefinition",
        "userIdentity": {"type": "IAMUser", "sessionContext": {"sessionIssuer": {"type": "Role"}}},
        "requestParameters": {"containerDefinitions": [{"command": ["sh"]}, {"command": ["curl"]}]},
    }
    found = flat(record)
    assert found["eventName"] == "RegisterTaskDefinition"
    assert found["userIdentity.type"] == "IAMUser"
    assert found["userIdentity.sessionContext.sessionIssuer.type"] == "Role"
    assert found["userIdentity"] == record["userIdentity"]  # for |contains over the whole object
    assert found["requestParameters.containerDefinitions.command"] == [["sh"], ["curl"]]


def test_corpus_mixes_every_case_event_in_with_unique_event_ids() -> None:
    lines = corpus(2_000)
    records = [orjson.loads(line) for line in lines]
    assert len({r["eventID"] for r in records}) == len(records) == 2_000
    names = {(r.get("eventSource"), r.get("eventName")) for r in records}
    assert all((e["eventSource"], e["eventName"]) in names for e in case_events())
