"""Turn a condition tree into one flat Python function, once per detector and API call.

Nested closures cost a Python call per node; here a whole condition becomes one `and`/`or` expression
with field lookups inline and compiled tests bound as constants, so a typical detector runs in one or two
calls. Only code we generate is executed: names are generated, every value from YAML is a bound constant.
"""

from __future__ import annotations

import functools
from types import CodeType
from typing import Any

from kvs_sentinel.detectors.conditions import (
    AllOf,
    CheckCall,
    Const,
    FieldPair,
    FieldTest,
    Node,
    NotOf,
    Predicate,
    with_memo,
)
from kvs_sentinel.events import LAZY_FIELDS, Getter, dig, split_field_path


def generate(node: Node) -> Predicate:
    writer = _Writer()
    expression = writer.node(node)
    predicate: Predicate = _define(writer, "predicate", expression, f"detector condition: {expression[:60]}")
    return predicate


def generate_getter(path: str) -> Getter:
    """The value at a field path, as one generated function (ValueError: not a CloudTrail field path)."""
    writer = _Writer()
    getter: Getter = _define(writer, "get", writer.fetch(path), f"field getter: {path[:60]}")
    return getter


def _define(writer: _Writer, name: str, expression: str, label: str) -> Any:
    """`def name(event): return expression`, with the writer's constants in its namespace."""
    source = f"def {name}(event):\n    doc = event.doc\n    return {expression}\n"
    namespace: dict[str, Any] = {"_dig": dig, **writer.constants}
    exec(_compiled(source, f"<{label}>"), namespace)
    return namespace[name]


@functools.lru_cache(maxsize=4096)
def _compiled(source: str, name: str) -> CodeType:
    """Compiled once per text: a detector specialised to many API calls often comes out the same (its
    constants differ, and they live in the namespace, not in the code)."""
    return compile(source, name, "exec")


class _Writer:
    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}
        self._names = 0

    def bind(self, value: Any) -> str:
        name = f"_k{len(self.constants)}"
        self.constants[name] = value
        return name

    def fresh(self) -> str:
        self._names += 1
        return f"_v{self._names}"

    def node(self, node: Node) -> str:
        if node.memo_key is not None:
            # evaluated once per event, whichever detector asks first
            inner = generate(with_memo(node, None))
            return f"event.remember({self.bind(node.memo_key)}, {self.bind(inner)})"
        if isinstance(node, Const):
            return "True" if node.value else "False"
        if isinstance(node, FieldTest):
            return self.field(node)
        if isinstance(node, FieldPair):
            return f"{self.bind(node.relation)}({self.fetch(node.left)}, {self.fetch(node.right)})"
        if isinstance(node, NotOf):
            return f"(not {self.node(node.child)})"
        if isinstance(node, CheckCall):
            return f"{self.bind(node.check)}(event)"
        joiner = " and " if isinstance(node, AllOf) else " or "
        children = sorted(node.children, key=lambda child: child.cost)
        return "(" + joiner.join(self.node(child) for child in children) + ")"

    def field(self, node: FieldTest) -> str:
        value = self.fetch(node.path)
        if len(node.tests) != 1:
            tests = node.tests
            return f"{self.bind(lambda v: all(test(v) for test in tests))}({value})"
        inline = self.inline_test(node, value)
        return inline if inline is not None else f"{self.bind(node.tests[0])}({value})"

    def fetch(self, path: str) -> str:
        """An expression for the value at `path`: dict lookups, `_dig` when the path meets a non-dict.

        The top-level name is the only text taken from a path into the source unquoted, so it is checked
        here (a CloudTrail record field, hence an identifier), whatever the caller checked before."""
        head, key_tuple = split_field_path(path)  # ValueError unless head is a record field
        keys = list(key_tuple)
        top = f"event.lazy({head!r})" if head in LAZY_FIELDS else f"doc.{head}"
        if not keys:
            return top
        whole = self.bind(tuple(keys))
        outer = self.fresh()
        if len(keys) == 1:
            return f"({outer}.get({keys[0]!r}) if type({outer} := {top}) is dict else _dig({outer}, {whole}))"
        if len(keys) == 2:
            inner = self.fresh()
            return (
                f"(({inner}.get({keys[1]!r}) if type({inner} := {outer}.get({keys[0]!r})) is dict "
                f"else _dig({outer}, {whole})) if type({outer} := {top}) is dict else _dig({outer}, {whole}))"
            )
        return f"_dig({top}, {whole})"

    def inline_test(self, node: FieldTest, value: str) -> str | None:
        """The test written out where its operator offers an expression (operators.py `_inlinable`: eq and
        in on strings, exists); other operators call their compiled test."""
        inline = getattr(node.tests[0], "inline", None)
        if inline is None:
            return None
        template, constant = inline
        return str(template.format(value=value, held=self.fresh(), constant=self.bind(constant)))
