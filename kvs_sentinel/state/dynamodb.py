"""The `dynamodb:TABLE` backend: one table every task shares, so N tasks decide as one.

One item per key (`pk`), with `expires_at` (epoch seconds) as the table's TTL attribute. DynamoDB deletes
expired items late (hours to days), so every condition and every read compares `expires_at` with `now`
itself. Atomicity comes from single conditional writes:

- claim: PutItem if absent or expired; release: the claim's expiry set to 0 if it is still the one we set
  (an UpdateItem, so the task role needs no DeleteItem);
- count: UpdateItem ADD while unexpired, else a conditional PutItem that restarts the window;
- remember: the members are a map member → expiry, updated by one conditional UpdateItem that refuses a
  new member once the map is full; expired members are removed when the map fills up. A set this task
  has not met yet is first created by a conditional PutItem (if absent): most such sets are new.
- remember_all: several members of one set in one UpdateItem (or one PutItem creating it), on condition
  that the map has room for all of them; its old value tells what each call one by one would have said.
  Without room, the members go one by one.

DynamoDB has no batched conditional write across items (BatchWriteItem takes no conditions, and a
transaction of conditional writes fails whole when one condition fails): writes are batched by item.

The table: partition key `pk` (string), TTL on `expires_at`. deploy/sentinel.yaml creates it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any

from kvs_sentinel.aws import classify
from kvs_sentinel.state.base import Membership, StateError, Unbatched, forget_new, remember_in_turn

_ATTEMPTS = 4  # a conditional write that lost a race is tried again with what it learned
_SETS_KNOWN = 100_000
# an expression is at most 4 KB: ~25 bytes per member in the update leaves room for long attribute names
_MEMBERS_PER_REQUEST = 50
# Every attribute is named through an alias: some names (TOTAL, and perhaps others) are reserved words.
_NAMES = {"#pk": "pk", "#expires": "expires_at", "#total": "total", "#members": "members"}
_ALIAS = re.compile(r"#\w+")


class DynamoDbStore:
    overlaps = True  # a request per operation: a message's independent requests overlap

    def __init__(self, client: Any, table: str, sets_known: int = _SETS_KNOWN) -> None:
        self.client = client
        self.table = table
        self.sets_known = sets_known
        self._sets: set[str] = set()  # keys of sets this task created or found: updated, not created

    def _met(self, key: str) -> None:
        if len(self._sets) >= self.sets_known:
            self._sets.clear()  # simplest bound: a set forgotten costs one create that fails
        self._sets.add(key)

    async def claim(self, key: str, *, now: float, ttl: float) -> bool:
        try:
            await self._call(
                "put_item",
                Item={"pk": {"S": key}, "expires_at": _n(now + ttl)},
                ConditionExpression="attribute_not_exists(#pk) OR #expires <= :now",
                ExpressionAttributeValues={":now": _n(now)},
            )
        except _ConditionFailed:
            return False
        return True

    async def release(self, key: str, *, expires_at: float) -> None:
        # a failed condition: expired and claimed again by another task, or gone: not ours to undo
        with contextlib.suppress(_ConditionFailed):
            await self._call(
                "update_item",
                Key={"pk": {"S": key}},
                UpdateExpression="SET #expires = :zero",
                ConditionExpression="#expires = :ours",
                ExpressionAttributeValues={":zero": _n(0), ":ours": _n(expires_at)},
            )

    async def is_claimed(self, key: str, *, now: float) -> bool:
        return await self.claimed_until(key, now=now) is not None

    async def claimed_until(self, key: str, *, now: float) -> float | None:
        item = await self._get(key)
        if item is None:
            return None
        expires_at = float(item["expires_at"]["N"])
        return expires_at if expires_at > now else None

    async def count(self, key: str, amount: int, *, now: float, ttl: float) -> int:
        for _ in range(_ATTEMPTS):
            try:
                answer = await self._call(
                    "update_item",
                    Key={"pk": {"S": key}},
                    UpdateExpression="ADD #total :amount SET #expires = if_not_exists(#expires, :expires)",
                    ConditionExpression="attribute_not_exists(#pk) OR #expires > :now",
                    ExpressionAttributeValues={
                        ":amount": _n(amount),
                        ":expires": _n(now + ttl),
                        ":now": _n(now),
                    },
                    ReturnValues="ALL_NEW",  # UPDATED_NEW leaves out a total that ADD 0 did not change
                )
                return int(answer["Attributes"]["total"]["N"])
            except _ConditionFailed:
                pass  # the window ended: start a new one, unless another task just did
            try:
                await self._call(
                    "put_item",
                    Item={"pk": {"S": key}, "total": _n(amount), "expires_at": _n(now + ttl)},
                    ConditionExpression="#expires <= :now",
                    ExpressionAttributeValues={":now": _n(now)},
                )
                return amount
            except _ConditionFailed:
                continue
        raise StateError(f"dynamodb:{self.table}: counter {key!r} kept changing under us", retryable=True)

    async def remember(self, key: str, member: str, *, now: float, ttl: float, limit: int) -> Membership:
        if key not in self._sets:
            # a set this task never met is most likely new (a new window, group or alert record):
            # creating it first is one request where the update that fails, the read and the put are three
            if await self._create_set(key, member, now + ttl):
                self._met(key)
                return Membership(True, 1, False)
            self._met(key)  # it exists: from now on, update first
        for _ in range(_ATTEMPTS):
            try:
                answer = await self._call(
                    "update_item",
                    Key={"pk": {"S": key}},
                    UpdateExpression="SET #members.#m = :expires, #expires = :expires",
                    ConditionExpression="attribute_exists(#members) AND "
                    "(attribute_exists(#members.#m) OR size(#members) < :limit)",
                    ExpressionAttributeNames={"#m": member},
                    ExpressionAttributeValues={":expires": _n(now + ttl), ":limit": _n(limit)},
                    ReturnValues="ALL_OLD",
                )
                before = _unexpired(answer.get("Attributes", {}), now)
                new = member not in before
                return Membership(new, len(before) + new, False)
            except _ConditionFailed:
                pass
            item = await self._get(key)
            if item is None or "members" not in item:
                if await self._create_set(key, member, now + ttl):
                    return Membership(True, 1, False)
                continue  # another task created it first
            stale = [name for name, value in item["members"]["M"].items() if float(value["N"]) <= now]
            if not stale:
                return Membership(False, len(item["members"]["M"]), True)
            await self._forget(key, stale)
        raise StateError(f"dynamodb:{self.table}: set {key!r} kept changing under us", retryable=True)

    async def remember_all(
        self, key: str, members: Sequence[tuple[str, float]], *, ttl: float, limit: int
    ) -> list[Membership]:
        answers: list[Membership] = []
        try:
            for start in range(0, len(members), _MEMBERS_PER_REQUEST):
                part = members[start : start + _MEMBERS_PER_REQUEST]
                answers += await self._remember_part(key, part, ttl=ttl, limit=limit)
        except BaseException:  # the parts written were not judged: a retry must find their values new
            await forget_new(self, key, members, answers, ttl=ttl)
            raise
        return answers

    async def _remember_part(
        self, key: str, members: Sequence[tuple[str, float]], *, ttl: float, limit: int
    ) -> list[Membership]:
        expiries = {member: round(now + ttl, 3) for member, now in members}  # the last call's holds
        if len(members) < 2 or len(expiries) > limit:
            return await remember_in_turn(self, key, members, ttl=ttl, limit=limit)
        latest = members[-1][1] + ttl  # the item's expiry, as the last call would set it
        if key not in self._sets:
            created = await self._create_set_of(key, expiries, latest)
            self._met(key)
            if created:
                return _in_turn({}, members, ttl)
        names = {f"#m{n}": member for n, member in enumerate(expiries)}
        values = {f":e{n}": _n(expires) for n, expires in enumerate(expiries.values())}
        try:
            answer = await self._call(
                "update_item",
                Key={"pk": {"S": key}},
                UpdateExpression="SET "
                + ", ".join(f"#members.#m{n} = :e{n}" for n in range(len(names)))
                + ", #expires = :expires",
                # room for every one of them, as if all were new: else one by one, which knows better
                ConditionExpression="attribute_exists(#members) AND size(#members) <= :room",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={**values, ":expires": _n(latest), ":room": _n(limit - len(names))},
                ReturnValues="ALL_OLD",
            )
        except _ConditionFailed:
            return await remember_in_turn(self, key, members, ttl=ttl, limit=limit)
        old = answer.get("Attributes", {}).get("members", {}).get("M", {})
        return _in_turn({name: float(value["N"]) for name, value in old.items()}, members, ttl)

    async def forget(self, key: str, member: str, *, expires_at: float) -> None:
        with contextlib.suppress(_ConditionFailed):  # remembered again since, or gone: not ours to undo
            await self._call(
                "update_item",
                Key={"pk": {"S": key}},
                UpdateExpression="REMOVE #members.#m",
                ConditionExpression="#members.#m = :ours",
                ExpressionAttributeNames={"#m": member},
                ExpressionAttributeValues={":ours": _n(expires_at)},
            )

    async def members(self, key: str, *, now: float) -> frozenset[str]:
        item = await self._get(key)
        return frozenset(_unexpired(item, now)) if item is not None else frozenset()

    def batch(self) -> Unbatched:
        return Unbatched()

    async def aclose(self) -> None:
        await self.client.__aexit__(None, None, None)

    async def _create_set(self, key: str, member: str, expires: float) -> bool:
        return await self._create_set_of(key, {member: expires}, expires)

    async def _create_set_of(self, key: str, members: dict[str, float], expires: float) -> bool:
        try:
            await self._call(
                "put_item",
                Item={
                    "pk": {"S": key},
                    "members": {"M": {member: _n(until) for member, until in members.items()}},
                    "expires_at": _n(expires),
                },
                ConditionExpression="attribute_not_exists(#pk) OR attribute_not_exists(#members)",
            )
        except _ConditionFailed:
            return False
        return True

    async def _forget(self, key: str, stale: list[str]) -> None:
        # an expression is at most 4 KB, ~17 bytes per member removed: a full set of 1,000 expired
        # members is removed in parts
        for start in range(0, len(stale), _MEMBERS_PER_REQUEST):
            names = {f"#s{i}": name for i, name in enumerate(stale[start : start + _MEMBERS_PER_REQUEST])}
            await self._call(
                "update_item",
                Key={"pk": {"S": key}},
                UpdateExpression="REMOVE " + ", ".join(f"#members.{alias}" for alias in names),
                ExpressionAttributeNames=names,
            )

    async def _get(self, key: str) -> dict[str, Any] | None:
        answer = await self._call("get_item", Key={"pk": {"S": key}}, ConsistentRead=True)
        item: dict[str, Any] | None = answer.get("Item")
        return item

    async def _call(self, operation: str, **request: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        aliases = set(
            _ALIAS.findall(request.get("UpdateExpression", "") + request.get("ConditionExpression", ""))
        )
        if aliases:  # exactly the names the expressions use: DynamoDB refuses unused ones
            given = {**_NAMES, **request.get("ExpressionAttributeNames", {})}
            request["ExpressionAttributeNames"] = {alias: given[alias] for alias in aliases}
        try:
            answer: dict[str, Any] = await getattr(self.client, operation)(TableName=self.table, **request)
        except Exception as exc:
            if (
                isinstance(exc, ClientError)
                and exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED
            ):
                raise _ConditionFailed from None
            failure = classify(exc)
            if failure is None:
                raise
            retryable = failure.retryable or any(code in failure.text for code in _ALSO_TRANSIENT)
            text = f"dynamodb:{self.table}: {operation}: {failure.text[:300]}"
            raise StateError(text, retryable=retryable, maybe_applied=_maybe_applied(exc)) from None
        return answer


_CONDITION_FAILED = "ConditionalCheckFailedException"
# DynamoDB's own words for "later", beside those aws.classify knows for every service
_ALSO_TRANSIENT = ("ProvisionedThroughputExceededException", "InternalServerError", "TransactionConflict")


def _maybe_applied(exc: Exception) -> bool:
    """Whether the request may have reached DynamoDB and been applied: it was sent and no answer came
    (a read timeout, a connection closed). An error answer, or a request never sent, applied nothing."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
    )

    never_sent = (ConnectTimeoutError, EndpointConnectionError, NoCredentialsError, ParamValidationError)
    return not isinstance(exc, (ClientError, *never_sent))


class _ConditionFailed(Exception):
    """The write's condition did not hold: another task got there first, or the item is not as assumed."""


def _n(value: float) -> dict[str, str]:
    return {"N": repr(round(value, 3))}


def _in_turn(old: dict[str, float], members: Sequence[tuple[str, float]], ttl: float) -> list[Membership]:
    """What `remember` one by one says for each (member, now), starting from the members `old` held."""
    held = dict(old)
    answers = []
    for member, now in members:
        live = sum(expires > now for expires in held.values())
        new = held.get(member, now) <= now
        answers.append(Membership(new, live + new, False))
        held[member] = round(now + ttl, 3)
    return answers


def _unexpired(item: dict[str, Any], now: float) -> dict[str, float]:
    members = item.get("members", {}).get("M", {})
    return {name: float(value["N"]) for name, value in members.items() if float(value["N"]) > now}
