"""`audit --suggest-policy ROLE PATH...`: the least-privilege policy for a producer role, from what the role
actually did in the CloudTrail given: the producer's three actions on the streams it used, and the WebRTC
master actions only if it used them, on the channels it used."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvs_sentinel.events import Event

KVS_SOURCE = "kinesisvideo.amazonaws.com"
PRODUCER_ACTIONS = ("DescribeStream", "GetDataEndpoint", "PutMedia")
WEBRTC_MASTER_ACTIONS = frozenset(
    {
        "ConnectAsMaster",
        "DescribeMediaStorageConfiguration",
        "DescribeSignalingChannel",
        "GetIceServerConfig",
        "GetSignalingChannelEndpoint",
        "JoinStorageSession",
    }
)


@dataclass
class RoleUsage:
    role: str
    events: int = 0
    streams: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)
    actions: set[str] = field(default_factory=set)


def is_role(event: Event, role: str) -> bool:
    identity = event.lazy("userIdentity")
    if not isinstance(identity, dict):
        return False
    issuer = (identity.get("sessionContext") or {}).get("sessionIssuer") or {}
    if isinstance(issuer, dict) and (
        issuer.get("userName") == role or str(issuer.get("arn", "")).endswith(f"/{role}")
    ):
        return True
    return f":assumed-role/{role}/" in str(identity.get("arn", ""))


def role_usage(role: str, events: Iterable[Event]) -> RoleUsage:
    usage = RoleUsage(role)
    for event in events:
        if event.doc.eventSource != KVS_SOURCE or not is_role(event, role):
            continue
        usage.events += 1
        usage.actions.add(str(event.doc.eventName))
        request = event.lazy("requestParameters") or {}
        request = request if isinstance(request, dict) else {}
        for resource in event.lazy("resources") or ():
            if isinstance(resource, dict) and isinstance(resource.get("ARN"), str):
                _add_arn(usage, resource["ARN"])
        for key in ("streamARN", "StreamARN", "channelARN", "ChannelARN"):
            if isinstance(request.get(key), str):
                _add_arn(usage, request[key])
        name = request.get("streamName") or request.get("StreamName")
        if isinstance(name, str) and not any(f":stream/{name}/" in arn for arn in usage.streams):
            usage.streams.add(_stream_arn(event, name))
    return usage


def _add_arn(usage: RoleUsage, arn: str) -> None:
    if ":stream/" in arn:
        usage.streams.add(arn)
    elif ":channel/" in arn:
        usage.channels.add(arn)


def _stream_arn(event: Event, name: str) -> str:
    identity = event.lazy("userIdentity") or {}
    arn = str(identity.get("arn", "")) if isinstance(identity, dict) else ""
    partition = arn.split(":")[1] if arn.count(":") >= 5 else "aws"
    account = event.doc.recipientAccountId or (
        identity.get("accountId") if isinstance(identity, dict) else None
    )
    return f"arn:{partition}:kinesisvideo:{event.doc.awsRegion}:{account}:stream/{name}/*"


def suggested_policy(usage: RoleUsage) -> dict[str, Any]:
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ProduceVideo",
            "Effect": "Allow",
            "Action": [f"kinesisvideo:{action}" for action in PRODUCER_ACTIONS],
            "Resource": sorted(_generalised(usage.streams)),
        }
    ]
    master = sorted(usage.actions & WEBRTC_MASTER_ACTIONS)
    if master and usage.channels:
        statements.append(
            {
                "Sid": "WebRtcMaster",
                "Effect": "Allow",
                "Action": [f"kinesisvideo:{action}" for action in master],
                "Resource": sorted(_generalised(usage.channels)),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _generalised(arns: Iterable[str]) -> set[str]:
    """Stream and channel ARNs end in a creation time (`stream/NAME/1700000000000`): a stream deleted and
    created again under its name gets a new one, so the suggestion names `NAME/*`."""
    out = set()
    for arn in arns:
        head, kind, rest = arn.partition(":stream/") if ":stream/" in arn else arn.partition(":channel/")
        out.add(f"{head}{kind}{rest.split('/')[0]}/*")
    return out


def suggested_actions(policy: dict[str, Any]) -> set[str]:
    return {action for statement in policy["Statement"] for action in statement["Action"]}


def dropped(current: Sequence[str], policy: dict[str, Any]) -> list[str]:
    """KVS actions the role can use today that the suggestion leaves out."""
    kept = suggested_actions(policy)
    return [action for action in current if action not in kept]
