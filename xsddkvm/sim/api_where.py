"""The ``get_all_records_where`` expression language (xapi-records.md §5).

Grammar (ocaml/database/db_filter_parse.mly): ``expr := value "=" value | expr "and" expr |
expr "or" expr | "not" expr | "true" | "false" | "(" expr ")"``; ``value := field "<column>" |
"<literal>"``. ``and``/``or`` share one precedence level, left-associative; ``not`` binds tightest.
Comparison is string equality of the database form (db_filter.ml, gen_db_actions.ml).
"""

from __future__ import annotations

import re
import xmlrpc.client
from typing import Any, Callable

from .errors import XapiError

# Datamodel namespaces: the database column of ``name_label`` is ``name__label``.
_NAMESPACES = ("name", "memory", "VCPUs", "actions", "PV", "HVM", "qos")
_TOKEN = re.compile(r'\s*(?:(\()|(\))|(=)|"([^"]*)"|([A-Za-z_]+))')

Predicate = Callable[[dict[str, Any]], bool]


def db_column(cls: str, field: str) -> str:
    """The database column of a wire field (``name_label`` -> ``name__label``)."""
    for ns in _NAMESPACES:
        if ns == "PV" and cls != "VM":
            continue  # VM_guest_metrics.PV_drivers_* are plain fields
        if field.startswith(ns + "_") and not field.startswith(ns + "__"):
            return f"{ns}__{field[len(ns) + 1 :]}"
    return field


def db_form(value: Any) -> str:
    """A value as the database stores it (xapi-records.md §1.1, last column)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.18g}"
    if isinstance(value, xmlrpc.client.DateTime):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        return "(" + " ".join(_sexpr(v) for v in value) + ")"
    if isinstance(value, dict):
        return "(" + " ".join(f"({_sexpr(k)} {_sexpr(v)})" for k, v in value.items()) + ")"
    return str(value)


def _sexpr(value: Any) -> str:
    text = db_form(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def compile_where(cls: str, expr: str, fields: dict[str, Any]) -> Predicate:
    """Parse ``expr`` into a predicate over records of ``cls``; raises INVALID_VALUE."""
    columns = {db_column(cls, f): f for f in fields}
    tokens = _tokenize(expr)
    pos = 0

    def fail() -> XapiError:
        # ocaml/xapi/exnHelper.ml Expression_error; the printed exception is UNCONFIRMED.
        return XapiError("INVALID_VALUE", expr, "Stdlib.Parsing.Parse_error")

    def peek() -> tuple[str, str]:
        return tokens[pos] if pos < len(tokens) else ("end", "")

    def take(kind: str, text: str = "") -> str:
        nonlocal pos
        got = peek()
        if got[0] != kind or (text and got[1] != text):
            raise fail()
        pos += 1
        return got[1]

    def operand() -> Callable[[dict[str, Any]], str]:
        if peek() == ("word", "field"):
            take("word")
            column = take("str")

            def read(rec: dict[str, Any]) -> str:
                if column not in columns:
                    raise XapiError("INTERNAL_ERROR", "missing field", column, "")
                return db_form(rec[columns[column]])

            return read
        literal = take("str")
        return lambda rec: literal

    def primary() -> Predicate:
        kind, text = peek()
        if (kind, text) == ("word", "not"):
            take("word")
            inner = primary()
            return lambda rec: not inner(rec)
        if kind == "(":
            take("(")
            inner = expression()
            take(")")
            return inner
        if (kind, text) in (("word", "true"), ("word", "false")):
            take("word")
            return lambda rec: text == "true"
        left, _, right = operand(), take("="), operand()
        return lambda rec: left(rec) == right(rec)

    def expression() -> Predicate:
        result = primary()
        while peek()[0] == "word" and peek()[1] in ("and", "or"):
            op = take("word")
            lhs, rhs = result, primary()
            result = _combine(op, lhs, rhs)
        return result

    predicate = expression()
    if pos != len(tokens):
        raise fail()
    return predicate


def _combine(op: str, lhs: Predicate, rhs: Predicate) -> Predicate:
    if op == "and":
        return lambda rec: lhs(rec) and rhs(rec)
    return lambda rec: lhs(rec) or rhs(rec)


def _tokenize(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while expr[pos:].strip():
        match = _TOKEN.match(expr, pos)
        if not match:
            raise XapiError("INVALID_VALUE", expr, "Stdlib.Parsing.Parse_error")
        lparen, rparen, eq, string, word = match.groups()
        if lparen or rparen or eq:
            tokens.append((lparen or rparen or eq, ""))
        elif string is not None:
            tokens.append(("str", string))
        else:
            tokens.append(("word", word))
        pos = match.end()
    return tokens
