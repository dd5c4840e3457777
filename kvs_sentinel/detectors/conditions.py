"""Compiled conditions: a small tree, turned into closures, and specialised per (eventSource, eventName).

The tree exists so that conditions on eventSource and eventName can be decided once per API call instead
of once per event: `specialise` replaces them with constants and simplifies, and `build` turns what is
left into plain closures, cheapest test first. A costly sub-condition that several detectors share is
evaluated once per event (`memo_key`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvs_sentinel.detectors.checks import CompiledCheck
from kvs_sentinel.detectors.operators import Test
from kvs_sentinel.events import Event, Getter, field_reader

Predicate = Callable[[Event], bool]

# Rough relative costs, to test cheap conditions first. Cached string tests (glob, regex, cidr) are cheap
# on repeated values; a lazy field costs a JSON decode the first time; a check is Python analysis.
LAZY_FIELD_COST = 4.0
CHECK_COST = 20.0
OPERATOR_COST = {"glob": 1.5, "iglob": 1.5, "regex": 1.5, "iregex": 1.5, "cidr": 1.5, "is_ip": 1.5}
INDEXED_FIELDS = ("eventSource", "eventName")


@dataclass(frozen=True, eq=False)
class FieldTest:
    path: str
    getter: Getter
    tests: tuple[Test, ...]
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


Node = FieldTest | AllOf | AnyOf | NotOf | CheckCall | Const
TRUE, FALSE = Const(True), Const(False)


def with_memo(node: Node, key: str) -> Node:
    """The same condition, marked to be evaluated once per event under `key`."""
    if isinstance(node, Const):
        return node
    clone: Node
    if isinstance(node, FieldTest):
        clone = FieldTest(node.path, node.getter, node.tests, node.cost, key)
    elif isinstance(node, AllOf):
        clone = AllOf(node.children, key)
    elif isinstance(node, AnyOf):
        clone = AnyOf(node.children, key)
    elif isinstance(node, NotOf):
        clone = NotOf(node.child, key)
    else:
        clone = CheckCall(node.check, node.cost, key)
    return clone


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
    """Closures for the tree: children cheapest first, memoised where marked."""
    predicate = _build(node)
    if node.memo_key is None:
        return predicate
    key = node.memo_key
    return lambda event: event.remember(key, predicate)


def _build(node: Node) -> Predicate:
    if isinstance(node, Const):
        value = node.value
        return lambda event: value
    if isinstance(node, FieldTest):
        return _field_predicate(node)
    if isinstance(node, NotOf):
        inner = build(node.child)
        return lambda event: not inner(event)
    if isinstance(node, CheckCall):
        return node.check
    ordered = [build(child) for child in sorted(node.children, key=lambda child: child.cost)]
    return all_of(ordered) if isinstance(node, AllOf) else any_of(ordered)


def _field_predicate(node: FieldTest) -> Predicate:
    if len(node.tests) == 1:
        return field_reader(node.path, node.tests[0])
    tests = node.tests
    return field_reader(node.path, lambda value: all(test(value) for test in tests))


def all_of(predicates: Sequence[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda event: first(event) and second(event)

    def every(event: Event) -> bool:
        for predicate in predicates:
            if not predicate(event):
                return False
        return True

    return every


def any_of(predicates: Sequence[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda event: first(event) or second(event)

    def some(event: Event) -> bool:
        for predicate in predicates:
            if predicate(event):
                return True
        return False

    return some
