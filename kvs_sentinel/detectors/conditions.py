"""Compiled conditions: a small tree, specialised per (eventSource, eventName), then turned into code.

The tree exists so that conditions on eventSource and eventName can be decided once per API call instead
of once per event: `specialise` replaces them with constants and simplifies, and `build` turns what is
left into one generated function, cheapest test first. A costly sub-condition that several detectors
share is evaluated once per event (`memo_key`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kvs_sentinel.detectors.checks import CompiledCheck
from kvs_sentinel.detectors.operators import Test
from kvs_sentinel.events import Event

Predicate = Callable[[Event], bool]

# Rough relative costs, to test cheap conditions first. Cached string tests (glob, regex, cidr) are cheap
# on repeated values; a lazy field costs a JSON decode the first time; a check is Python analysis.
LAZY_FIELD_COST = 4.0
CHECK_COST = 20.0
OPERATOR_COST = {"glob": 1.5, "iglob": 1.5, "regex": 1.5, "iregex": 1.5, "cidr": 1.5, "is_ip": 1.5}


@dataclass(frozen=True, eq=False)
class FieldTest:
    path: str
    tests: tuple[Test, ...]
    cost: float
    memo_key: str | None = None


@dataclass(frozen=True, eq=False)
class FieldPair:
    """Two fields of one event compared (`userIdentity.arn: {ieq_field: requestParameters.userName}`)."""

    left: str
    right: str
    relation: Callable[[Any, Any], bool]
    cost: float
    memo_key: str | None = None


@dataclass(frozen=True, eq=False)
class _Group:
    children: tuple[Node, ...]
    memo_key: str | None = None
    cost: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cost", sum(child.cost for child in self.children))


class AllOf(_Group):
    """Every child holds."""


class AnyOf(_Group):
    """Some child holds."""


@dataclass(frozen=True, eq=False)
class NotOf:
    child: Node
    memo_key: str | None = None

    @property
    def cost(self) -> float:
        return self.child.cost


@dataclass(frozen=True, eq=False)
class CheckCall:
    check: CompiledCheck
    cost: float = CHECK_COST
    memo_key: str | None = None


@dataclass(frozen=True, eq=False)
class Const:
    value: bool
    cost: float = 0.0
    memo_key: str | None = None


Node = FieldTest | FieldPair | AllOf | AnyOf | NotOf | CheckCall | Const
TRUE, FALSE = Const(True), Const(False)


def with_memo(node: Node, key: str | None) -> Node:
    """The same condition, marked to be evaluated once per event under `key` (None: unmarked)."""
    return node if isinstance(node, Const) else dataclasses.replace(node, memo_key=key)


def specialise(node: Node, known: dict[str, Any]) -> Node:
    """The condition with tests on known fields (eventSource, eventName) decided and simplified away.

    Returns the very same node when nothing in it depends on the known fields, so memo keys stay valid.
    """
    if isinstance(node, FieldTest):
        if node.path in known:
            value = known[node.path]
            return TRUE if all(test(value) for test in node.tests) else FALSE
        return node
    if isinstance(node, NotOf):
        child = specialise(node.child, known)
        if child is node.child:
            return node
        if isinstance(child, Const):
            return FALSE if child.value else TRUE
        return NotOf(child)
    if isinstance(node, AllOf | AnyOf):
        children = [specialise(child, known) for child in node.children]
        if all(new is old for new, old in zip(children, node.children, strict=True)):
            return node
        deciding, neutral = (FALSE, TRUE) if isinstance(node, AllOf) else (TRUE, FALSE)
        if any(child is deciding for child in children):
            return deciding
        remaining = tuple(child for child in children if child is not neutral)
        if not remaining:
            return neutral
        if len(remaining) == 1:
            return remaining[0]
        return AllOf(remaining) if isinstance(node, AllOf) else AnyOf(remaining)
    return node


def build(node: Node) -> Predicate:
    """The condition as one generated function (see codegen.py)."""
    from kvs_sentinel.detectors.codegen import generate

    return generate(node)
