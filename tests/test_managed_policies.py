"""The shipped AWS managed policy snapshot, and the script that refreshes it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kvs_sentinel.iam_actions import kvs_actions
from kvs_sentinel.managed_policies import (
    SNAPSHOT_PATH,
    is_aws_managed,
    kvs_statements,
    managed_policy,
    managed_policy_kvs_grant,
    snapshot_source,
)

REPO = Path(__file__).resolve().parents[1]
ALL = set(kvs_actions())


def test_snapshot_lists_every_aws_managed_policy_with_its_source() -> None:
    raw = json.loads(SNAPSHOT_PATH.read_text(encoding="utf-8"))
    assert len(raw["policies"]) > 1500
    source = snapshot_source()
    assert "iann0036/iam-dataset" in source["source"]
    assert "MIT" in source["source"]
    assert len(source["commit"]) == 40


@pytest.mark.parametrize(
    ("name", "actions", "conditional"),
    [
        ("AdministratorAccess", ALL, False),
        ("PowerUserAccess", ALL, False),
        ("AmazonKinesisVideoStreamsFullAccess", ALL, False),
        ("AWSMcpServiceActionsFullAccess", ALL, True),  # "*" under aws:IsMcpServiceAction
        ("AmazonRekognitionServiceRole", {"kinesisvideo:GetDataEndpoint", "kinesisvideo:GetMedia"}, False),
    ],
)
def test_managed_policies_outside_the_old_table_are_judged(
    name: str, actions: set[str], conditional: bool
) -> None:
    grant = managed_policy_kvs_grant(f"arn:aws:iam::aws:policy/{name}")
    assert grant is not None
    assert set(grant.actions) == actions
    assert grant.conditional is conditional


def test_a_deny_all_managed_policy_grants_nothing() -> None:
    assert managed_policy("arn:aws:iam::aws:policy/AWSDenyAll") is not None
    assert managed_policy_kvs_grant("arn:aws:iam::aws:policy/AWSDenyAll") is None


def test_known_policy_without_kvs_is_told_apart_from_an_unknown_one() -> None:
    known = managed_policy("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
    assert known is not None
    assert known.statements == ()
    assert managed_policy("arn:aws:iam::aws:policy/NoSuchPolicyEver") is None
    assert managed_policy("arn:aws:iam::111122223333:policy/AdministratorAccess") is None
    assert is_aws_managed("arn:aws-us-gov:iam::aws:policy/service-role/X")
    assert not is_aws_managed("arn:aws:iam::111122223333:policy/X")


def test_snapshot_keeps_only_kvs_entries_of_action_lists() -> None:
    document = {
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "kinesisvideo:Get*"], "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "NotAction": ["iam:*"], "Resource": "*"},
        ]
    }
    kept = kvs_statements(document)
    assert kept == [
        {"Effect": "Allow", "Action": ["kinesisvideo:Get*"], "Resource": "*"},
        {"Effect": "Deny", "NotAction": ["iam:*"], "Resource": "*"},
    ]


def test_refresh_script_rebuilds_the_snapshot_from_a_dataset_checkout(tmp_path: Path) -> None:
    folder = tmp_path / "aws" / "managedpolicies"
    folder.mkdir(parents=True)
    for i in range(1000):
        entry = {
            "name": f"Policy{i}",
            "arn": f"arn:aws:iam::aws:policy/Policy{i}",
            "version": "v1",
            "document": {"Statement": [{"Effect": "Allow", "Action": "kinesisvideo:Get*", "Resource": "*"}]},
        }
        (folder / f"Policy{i}.json").write_text(json.dumps(entry), encoding="utf-8")
    (folder / "Deprecated.json").write_text(
        json.dumps({"name": "Deprecated", "arn": None, "deprecated": True, "document": {"Statement": []}}),
        encoding="utf-8",
    )
    out = tmp_path / "snapshot.json"
    script = REPO / "scripts" / "refresh_managed_policies.py"
    completed = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--commit", "a" * 40, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr
    snapshot = json.loads(out.read_text(encoding="utf-8"))
    assert len(snapshot["policies"]) == 1001
    assert snapshot["policies"]["Deprecated"]["arn"] == "arn:aws:iam::aws:policy/Deprecated"
    assert snapshot["commit"] == "a" * 40
    assert out.read_text(encoding="utf-8").count("\n") > 1000  # one policy per line: diffs stay readable


def test_refresh_script_refuses_a_partial_dataset(tmp_path: Path) -> None:
    (tmp_path / "aws" / "managedpolicies").mkdir(parents=True)
    script = REPO / "scripts" / "refresh_managed_policies.py"
    completed = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert completed.returncode == 1
    assert not (tmp_path / "x.json").exists()
