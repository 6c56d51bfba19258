"""Parser and evaluator for the subset of NQL (Neptune Query Language) that neptune 1.x sends.

Supported: backticked or bare attribute names with an optional ``:type`` suffix; the operators ``=``, ``==``,
``!=``, ``>``, ``>=``, ``<``, ``<=``, ``CONTAINS``, ``MATCHES`` and ``EXISTS``; ``AND``, ``OR`` and ``NOT`` with
parentheses; quoted or bare literals.  A query is compiled once into a predicate over a container's attributes,
so a 12k-run project is filtered without re-parsing.

Semantics chosen for the fake (a real server's corner cases are not documented): a missing attribute makes
every comparison false except ``!=``; a literal that cannot be coerced to the attribute's type is false;
``CONTAINS`` on a string set is membership, on a string a substring test; ``MATCHES`` is ``re.search``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .model import FloatSeries, RunState, StringSeries

Predicate = Callable[[dict[str, Any]], bool]


class NQLSyntaxError(ValueError):
    """Raised for queries outside the supported subset; the server answers 400 ``Syntax error``."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<bt>`(?:[^`\\]|\\.)*`)
      | (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|>=|<=|=|>|<)
      | (?P<lp>\()
      | (?P<rp>\))
      | (?P<colon>:)
      | (?P<word>[^\s()`":=!<>]+)
    )""",
    re.VERBOSE,
)

_KEYWORDS = {"AND", "OR", "NOT", "CONTAINS", "MATCHES", "EXISTS"}


def _tokenize(query: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    query = query.rstrip()
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if not m or m.end() == pos:
            raise NQLSyntaxError(f"unexpected character at {pos}: {query[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        text = m.group(kind)  # type: ignore[arg-type]
        if kind == "bt":
            tokens.append(("name", text[1:-1].replace("\\`", "`")))
        elif kind == "str":
            tokens.append(("lit", re.sub(r"\\(.)", r"\1", text[1:-1])))
        elif kind == "word" and text.upper() in _KEYWORDS:
            tokens.append((text.upper(), text))
        else:
            tokens.append((kind or "", text))
    return tokens


def _plain(value: Any) -> Any:
    """The comparable value of an attribute: series compare by their last value, states by API name."""
    if isinstance(value, FloatSeries | StringSeries):
        return value.values[-1] if len(value) else None
    if isinstance(value, RunState):
        return value.value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _parse_datetime(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _coerce(literal: str, like: Any) -> Any:
    if isinstance(like, bool):
        low = literal.lower()
        if low not in ("true", "false"):
            raise ValueError(literal)
        return low == "true"
    if isinstance(like, int | float):
        return float(literal)
    if isinstance(like, datetime):
        return _parse_datetime(literal)
    return literal


def _compare(op: str, attr_value: Any, literal: str) -> bool:
    value = _plain(attr_value)
    if op == "EXISTS":
        return value is not None
    if value is None:
        return op == "!="
    if op == "CONTAINS":
        if isinstance(value, set | frozenset | list | tuple):
            return literal in value
        return literal in str(value)
    if op == "MATCHES":
        if isinstance(value, set | frozenset | list | tuple):
            return any(re.search(literal, str(v)) for v in value)
        return re.search(literal, str(value)) is not None
    if isinstance(value, set | frozenset):
        if op in ("=", "=="):
            return literal in value
        if op == "!=":
            return literal not in value
        return False
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        other = _coerce(literal, value)
    except (ValueError, TypeError):
        return op == "!="
    try:
        if op in ("=", "=="):
            return value == other
        if op == "!=":
            return value != other
        if op == ">":
            return value > other
        if op == ">=":
            return value >= other
        if op == "<":
            return value < other
        if op == "<=":
            return value <= other
    except TypeError:
        return False
    raise NQLSyntaxError(f"unknown operator {op}")


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise NQLSyntaxError("unexpected end of query")
        tok = self.tokens[self.pos]
        if kind is not None and tok[0] != kind:
            raise NQLSyntaxError(f"expected {kind}, got {tok[1]!r}")
        self.pos += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.parse_or()
        if self.peek() is not None:
            raise NQLSyntaxError(f"unexpected token {self.tokens[self.pos][1]!r}")
        return pred

    def parse_or(self) -> Predicate:
        items = [self.parse_and()]
        while self.peek() == "OR":
            self.take()
            items.append(self.parse_and())
        if len(items) == 1:
            return items[0]
        return lambda attrs: any(p(attrs) for p in items)

    def parse_and(self) -> Predicate:
        items = [self.parse_not()]
        while self.peek() == "AND":
            self.take()
            items.append(self.parse_not())
        if len(items) == 1:
            return items[0]
        return lambda attrs: all(p(attrs) for p in items)

    def parse_not(self) -> Predicate:
        if self.peek() == "NOT":
            self.take()
            inner = self.parse_not()
            return lambda attrs: not inner(attrs)
        return self.parse_primary()

    def parse_primary(self) -> Predicate:
        if self.peek() == "lp":
            self.take()
            pred = self.parse_or()
            self.take("rp")
            return pred
        return self.parse_condition()

    def parse_condition(self) -> Predicate:
        kind, name = self.take()
        if kind not in ("name", "word"):
            raise NQLSyntaxError(f"expected attribute name, got {name!r}")
        if self.peek() == "colon":
            self.take()
            self.take("word")  # the declared type; the fake coerces by the stored value instead
        kind, op = self.take()
        if kind == "EXISTS":
            return lambda attrs: name in attrs
        if kind not in ("op", "CONTAINS", "MATCHES"):
            raise NQLSyntaxError(f"expected operator, got {op!r}")
        op = op.upper() if kind != "op" else op
        lkind, literal = self.take()
        if lkind not in ("lit", "word"):
            raise NQLSyntaxError(f"expected value, got {literal!r}")
        if op == "MATCHES":
            re.compile(literal)
        return lambda attrs: _compare(op, attrs.get(name), literal)


def compile_query(query: str) -> Predicate:
    """Compile an NQL string into a predicate over an attribute dict; an empty query matches everything."""
    tokens = _tokenize(query or "")
    if not tokens:
        return lambda attrs: True
    try:
        return _Parser(tokens).parse()
    except re.error as e:
        raise NQLSyntaxError(str(e)) from e
