"""The subset of NQL (Neptune Query Language) that neptune-query generates, parsed and evaluated.

What the client emits (``neptune_query/internal/filters.py``):

- attributes: ``\\`name\\``` with an optional ``:type`` suffix (backend type name), optionally wrapped in an
  aggregation ``last(...)``, ``min(...)``, ``max(...)``, ``average(...)``, ``variance(...)``;
- binary operators ``==, !=, >, >=, <, <=, MATCHES, NOT MATCHES, CONTAINS, NOT CONTAINS`` against a
  double-quoted literal in which ``\\`` and ``"`` are backslash-escaped; the postfix ``EXISTS``;
- ``AND`` / ``OR`` between parenthesised operands, prefix ``NOT (...)``.

Semantics chosen for the fake (documented because the real server's are not public):
a predicate on a missing attribute (or one of another type than the suffix names) is false for every
operator; ``MATCHES`` is a regex search; numbers compare numerically, datetimes as instants, bools
from ``"true"/"false"`` case-insensitively; series compare through their aggregate (``last`` by default).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .store import Run


class NqlError(ValueError):
    """The query could not be parsed; the server answers 400."""


@dataclass(frozen=True)
class AttrRef:
    name: str
    type: str | None
    aggregation: str | None


@dataclass(frozen=True)
class Predicate:
    attr: AttrRef
    op: str
    literal: str | None


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR
    children: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    child: Any


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<name>`(?:[^`\\]|\\.)*`)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|>=|<=|>|<|\(|\)|:)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>-?[0-9][0-9.eE+-]*)
    """,
    re.VERBOSE,
)

_AGGREGATIONS = {"last", "min", "max", "average", "variance"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise NqlError(f"unexpected character at {pos}: {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        tokens.append((kind or "", m.group()))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise NqlError("unexpected end of query")
        self.i += 1
        return tok

    def is_word(self, word: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok[0] == "word" and tok[1].upper() == word

    def expect_op(self, op: str) -> None:
        tok = self.take()
        if tok != ("op", op):
            raise NqlError(f"expected {op!r}, got {tok[1]!r}")

    def parse(self) -> Any:
        node = self.parse_or()
        if self.peek() is not None:
            raise NqlError(f"trailing input at {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def parse_or(self) -> Any:
        children = [self.parse_and()]
        while self.is_word("OR"):
            self.take()
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else BoolOp("OR", tuple(children))

    def parse_and(self) -> Any:
        children = [self.parse_not()]
        while self.is_word("AND"):
            self.take()
            children.append(self.parse_not())
        return children[0] if len(children) == 1 else BoolOp("AND", tuple(children))

    def parse_not(self) -> Any:
        if self.is_word("NOT"):
            self.take()
            return Not(self.parse_not())
        return self.parse_primary()

    def parse_primary(self) -> Any:
        tok = self.peek()
        if tok == ("op", "("):
            self.take()
            node = self.parse_or()
            self.expect_op(")")
            return node
        return self.parse_predicate()

    def parse_attr(self) -> AttrRef:
        tok = self.take()
        aggregation = None
        if tok[0] == "word" and tok[1].lower() in _AGGREGATIONS and self.peek() == ("op", "("):
            aggregation = tok[1].lower()
            self.take()
            inner = self.parse_attr()
            self.expect_op(")")
            return AttrRef(inner.name, inner.type, aggregation)
        if tok[0] != "name":
            raise NqlError(f"expected a `name`, got {tok[1]!r}")
        name = re.sub(r"\\(.)", r"\1", tok[1][1:-1])
        attr_type = None
        if self.peek() == ("op", ":"):
            self.take()
            type_tok = self.take()
            if type_tok[0] != "word":
                raise NqlError(f"expected a type after ':', got {type_tok[1]!r}")
            attr_type = type_tok[1]
        return AttrRef(name, attr_type, aggregation)

    def parse_predicate(self) -> Predicate:
        attr = self.parse_attr()
        tok = self.take()
        if tok[0] == "op" and tok[1] in ("==", "!=", ">", ">=", "<", "<="):
            op = tok[1]
        elif tok[0] == "word" and tok[1].upper() == "EXISTS":
            return Predicate(attr, "EXISTS", None)
        elif tok[0] == "word" and tok[1].upper() in ("MATCHES", "CONTAINS"):
            op = tok[1].upper()
        elif (
            tok[0] == "word"
            and tok[1].upper() == "NOT"
            and (self.is_word("MATCHES") or self.is_word("CONTAINS"))
        ):
            op = "NOT " + self.take()[1].upper()
        else:
            raise NqlError(f"expected an operator, got {tok[1]!r}")
        lit = self.take()
        if lit[0] == "string":
            literal = re.sub(r"\\(.)", r"\1", lit[1][1:-1])
        elif lit[0] in ("number", "word"):
            literal = lit[1]
        else:
            raise NqlError(f"expected a literal, got {lit[1]!r}")
        return Predicate(attr, op, literal)


def parse(text: str) -> Any:
    """Parse a query string into a tree of ``BoolOp`` / ``Not`` / ``Predicate``."""
    return _Parser(text).parse()


def evaluate(node: Any, run: Run) -> bool:
    """Evaluate a parsed query against one run."""
    if isinstance(node, BoolOp):
        if node.op == "AND":
            return all(evaluate(c, run) for c in node.children)
        return any(evaluate(c, run) for c in node.children)
    if isinstance(node, Not):
        return not evaluate(node.child, run)
    return _evaluate_predicate(node, run)


def attribute_scalar(
    run: Run, name: str, attr_type: str | None, aggregation: str | None
) -> tuple[str, Any] | None:
    """The comparable (type, value) of an attribute, or None if missing. Used for filters and sorting."""
    attr = run.get(name)
    if attr is None or (attr_type is not None and attr.type != attr_type):
        return None
    if attr.type == "floatSeries":
        agg = attr.value.aggregates()
        value = agg.get(aggregation or "last")
        return None if value is None else ("float", value)
    if attr.type in ("stringSeries",):
        agg = attr.value.aggregates()
        return None if "last" not in agg else ("string", agg["last"])
    if attr.type in ("histogramSeries", "fileRefSeries"):
        agg = attr.value.aggregates()
        return None if "last_step" not in agg else ("float", agg["last_step"])
    if attr.type == "fileRef":
        return ("string", attr.value.path)
    return attr.type, attr.value


def _to_bool(literal: str) -> bool:
    return literal.strip().lower() == "true"


def _to_ms(literal: str) -> float:
    text = literal.strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return float(literal)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp() * 1000.0


def _evaluate_predicate(pred: Predicate, run: Run) -> bool:
    found = attribute_scalar(run, pred.attr.name, pred.attr.type, pred.attr.aggregation)
    if pred.op == "EXISTS":
        return found is not None
    if found is None or pred.literal is None:
        return False
    attr_type, value = found
    literal = pred.literal
    op = pred.op

    if op in ("MATCHES", "NOT MATCHES"):
        if attr_type == "stringSet":
            hit = any(re.search(literal, v) for v in value)
        else:
            hit = re.search(literal, str(value)) is not None
        return hit if op == "MATCHES" else not hit
    if op in ("CONTAINS", "NOT CONTAINS"):
        hit = literal in value if attr_type == "stringSet" else literal in str(value)
        return hit if op == "CONTAINS" else not hit

    left: Any
    right: Any
    if attr_type == "bool":
        left, right = bool(value), _to_bool(literal)
    elif attr_type in ("int", "float"):
        try:
            left, right = float(value), float(literal)
        except ValueError:
            return False
        if math.isnan(left) or math.isnan(right):
            return op == "!="
    elif attr_type == "datetime":
        left, right = float(value), _to_ms(literal)
    elif attr_type == "stringSet":
        left, right = sorted(value), sorted([literal])
    else:
        left, right = str(value), literal

    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    try:
        if op == ">":
            return left > right
        if op == ">=":
            return left >= right
        if op == "<":
            return left < right
        if op == "<=":
            return left <= right
    except TypeError:
        return False
    raise NqlError(f"unknown operator {op}")
