"""A small in-memory evaluator for the CQL2-JSON subset the pipeline uses.

Supported: ``and``, ``or``, ``not``, comparisons ``=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``,
``between``, ``in``, ``isNull``, ``like`` (``%``/``_`` wildcards) on item properties
(``{"property": "eo:cloud_cover"}``; ``id`` and ``collection`` are also properties) and literals.
Anything else is an error naming the operator, so a filter is never silently ignored.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import pystac

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class Cql2Error(ValueError):
    """A CQL2-JSON expression uses something this evaluator does not support."""


def _value(arg: Any, item: pystac.Item) -> Any:
    if isinstance(arg, dict) and "property" in arg:
        name = arg["property"]
        if name == "id":
            return item.id
        if name == "collection":
            return item.collection_id
        if name == "datetime" and item.datetime is not None:
            return item.datetime.isoformat()
        return item.properties.get(name)
    if isinstance(arg, dict) and "timestamp" in arg:
        return arg["timestamp"]
    if isinstance(arg, dict) and "date" in arg:
        return arg["date"]
    if isinstance(arg, dict):
        raise Cql2Error(f"unsupported CQL2 argument {arg!r}; use a property, a number or a string")
    return arg


def _like(value: Any, pattern: str) -> bool:
    if value is None:
        return False
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, str(value)) is not None


def evaluate(expr: dict[str, Any], item: pystac.Item) -> bool:
    """True when ``item`` satisfies the CQL2-JSON expression ``expr``."""
    if not isinstance(expr, dict) or "op" not in expr:
        raise Cql2Error(f"CQL2-JSON expression must be an object with 'op' and 'args', got {expr!r}")
    op = str(expr["op"]).lower() if expr["op"] not in _COMPARE else expr["op"]
    args = expr.get("args", [])
    if op == "and":
        return all(evaluate(a, item) for a in args)
    if op == "or":
        return any(evaluate(a, item) for a in args)
    if op == "not":
        return not evaluate(args[0], item)
    if op == "isnull":
        return _value(args[0], item) is None
    values = [_value(a, item) if not isinstance(a, list) else a for a in args]
    if any(v is None for v in values):
        return False  # comparisons with a missing property are false (CQL2 semantics)
    try:
        if op in _COMPARE:
            return bool(_COMPARE[op](values[0], values[1]))
        if op == "between":
            return bool(values[1] <= values[0] <= values[2])
        if op == "in":
            return values[0] in values[1]
        if op == "like":
            return _like(values[0], values[1])
    except TypeError as exc:
        raise Cql2Error(f"CQL2 operator {op!r} cannot compare {values!r}: {exc}") from None
    raise Cql2Error(
        f"CQL2 operator {expr['op']!r} is not supported by the static catalog; supported: "
        "and, or, not, =, <>, <, <=, >, >=, between, in, like, isNull"
    )
