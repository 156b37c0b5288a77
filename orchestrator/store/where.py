"""``--where`` text to a pyarrow compute expression, by a tokenizer and a recursive-descent parser.

Nothing is ever evaluated as Python: the only things a filter can name are the store's
columns, and the only things it can build are ``pc.field(column)`` comparisons joined by
and/or/not, so pyarrow can push it into the scan and skip row groups by their statistics.

Grammar (keywords case-insensitive; ``not`` binds tighter than ``and``, ``and`` than ``or``)::

    expr      := conj ("or" conj)*
    conj      := neg ("and" neg)*
    neg       := "not" neg | "(" expr ")" | predicate
    predicate := operand OP operand                      OP: == != < <= > >=
               | column ["not"] "in" "(" literal ("," literal)* ")"
               | column "is" ["not"] "null"
    operand   := column | literal
    literal   := number | -number | 'string' | "string"   (escapes: \\\\ \\' \\" \\n \\t \\r)

Nulls follow SQL: a comparison with a null value is neither true nor false, so the row is
left out whether or not the comparison is negated; test nulls with ``is null``.
"""
from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from orchestrator.errors import UsageError

OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
KEYWORDS = {"and", "or", "not", "in", "is", "null"}
ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
MAX_DEPTH = 64
ALLOWED = ("allowed: column names, numbers, 'quoted' or \"quoted\" strings, == != < <= > >=, "
           "in (...), is null, is not null, and, or, not, parentheses")

_NUMBER = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Token:
    kind: str  # name, number, string, op, "(", ")", ",", "-", end
    text: str
    pos: int  # 0-based character offset
    value: object = None


@dataclass(frozen=True)
class Clause:
    """One conjunct of the filter and the columns it reads."""

    expression: pc.Expression
    columns: frozenset[str]


@dataclass(frozen=True)
class Where:
    """A parsed filter: its top-level conjuncts (``a and b and c`` gives three)."""

    text: str
    clauses: tuple[Clause, ...]

    @property
    def expression(self) -> pc.Expression:
        return _all(c.expression for c in self.clauses)

    @property
    def columns(self) -> frozenset[str]:
        return frozenset().union(*(c.columns for c in self.clauses))

    def split(self, safe: frozenset[str] | set[str]) -> tuple[pc.Expression | None, pc.Expression | None]:
        """(the conjuncts reading only ``safe`` columns, the rest), each None when empty."""
        inside = [c.expression for c in self.clauses if c.columns <= safe]
        outside = [c.expression for c in self.clauses if not c.columns <= safe]
        return (_all(inside) if inside else None), (_all(outside) if outside else None)


def _all(expressions) -> pc.Expression:
    expressions = list(expressions)
    result = expressions[0]
    for e in expressions[1:]:
        result = result & e
    return result


def _merge(clauses: list[Clause]) -> Clause:
    return Clause(_all(c.expression for c in clauses), frozenset().union(*(c.columns for c in clauses)))


def parse_where(text: str, schema: pa.Schema) -> Where:
    """Parse ``text`` against the columns of ``schema``; any problem is one UsageError line."""
    parser = _Parser(text, tokenize(text), schema)
    clauses = parser.expr(0)
    parser.expect_end()
    return Where(text, tuple(clauses))


def _fail(text: str, pos: int, message: str) -> UsageError:
    return UsageError(f"--where {text!r}, character {pos + 1}: {message}")


def tokenize(text: str) -> list[Token]:
    tokens, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "(),-":
            tokens.append(Token(c, c, i))
            i += 1
        elif c in "=!<>":
            op = next((o for o in OPERATORS if text.startswith(o, i)), None)
            if op is None:
                hint = "use '==' to compare" if c == "=" else ALLOWED
                raise _fail(text, i, f"unexpected {c!r}; {hint}")
            tokens.append(Token("op", op, i))
            i += len(op)
        elif c in "'\"":
            value, end = _string(text, i)
            tokens.append(Token("string", text[i:end], i, value))
            i = end
        elif number := _NUMBER.match(text, i):
            end = number.end()
            if end < len(text) and (text[end].isalnum() or text[end] in "_."):
                raise _fail(text, i, f"malformed number {text[i:end + 1]!r}")
            literal = number.group()
            value = int(literal) if literal.isdigit() else float(literal)
            tokens.append(Token("number", literal, i, value))
            i = end
        elif name := _NAME.match(text, i):
            tokens.append(Token("name", name.group(), i))
            i = name.end()
        else:
            raise _fail(text, i, f"unexpected {c!r}; {ALLOWED}")
    tokens.append(Token("end", "", len(text)))
    return tokens


def _string(text: str, start: int) -> tuple[str, int]:
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in ESCAPES:
                raise _fail(text, i, f"unknown escape {text[i:i + 2]!r} (known: \\\\ \\' \\\" \\n \\t \\r)")
            out.append(ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    raise _fail(text, start, "unterminated string")


class _Parser:
    def __init__(self, text: str, tokens: list[Token], schema: pa.Schema):
        self.text, self.tokens, self.schema, self.i = text, tokens, schema, 0

    # -- tokens
    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def keyword(self, word: str, offset: int = 0) -> bool:
        token = self.tokens[min(self.i + offset, len(self.tokens) - 1)]
        return token.kind == "name" and token.text.lower() == word

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, message: str, token: Token | None = None) -> UsageError:
        return _fail(self.text, (token or self.token).pos, message)

    def found(self, token: Token | None = None) -> str:
        token = token or self.token
        return "end of input" if token.kind == "end" else repr(token.text)

    def expect(self, kind: str, what: str) -> Token:
        if self.token.kind != kind:
            raise self.fail(f"expected {what}, found {self.found()}")
        return self.advance()

    def expect_end(self) -> None:
        if self.token.kind != "end":
            raise self.fail(f"expected and, or or the end, found {self.found()}")

    # -- grammar
    def expr(self, depth: int) -> list[Clause]:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} levels deep")
        alternatives = [self.conj(depth)]
        while self.keyword("or"):
            self.advance()
            alternatives.append(self.conj(depth))
        if len(alternatives) == 1:
            return alternatives[0]  # a conjunction keeps its clauses apart, for pushdown
        alternatives = [_merge(a) for a in alternatives]
        expression = alternatives[0].expression
        for alternative in alternatives[1:]:
            expression = expression | alternative.expression
        return [Clause(expression, frozenset().union(*(a.columns for a in alternatives)))]

    def conj(self, depth: int) -> list[Clause]:
        clauses = self.neg(depth)
        while self.keyword("and"):
            self.advance()
            clauses = clauses + self.neg(depth)
        return clauses

    def neg(self, depth: int) -> list[Clause]:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} levels deep")
        if self.keyword("not"):
            self.advance()
            inner = _merge(self.neg(depth + 1))
            return [Clause(~inner.expression, inner.columns)]
        if self.token.kind == "(":
            self.advance()
            clauses = self.expr(depth + 1)
            self.expect(")", "')'")
            return clauses
        return [self.predicate()]

    def predicate(self) -> Clause:
        left = self.operand()
        if self.token.kind == "op":
            op = self.advance()
            return self.comparison(left, op, self.operand())
        negate = self.keyword("not") and self.keyword("in", 1)
        if negate or self.keyword("in"):
            self.i += 2 if negate else 1
            clause = self.membership(self.column_of(left, "in (...)"))
            return Clause(~clause.expression, clause.columns) if negate else clause
        if self.keyword("is"):
            self.advance()
            column = self.column_of(left, "is null")
            negate = self.keyword("not")
            if negate:
                self.advance()
            if not self.keyword("null"):
                raise self.fail(f"expected 'null' after 'is{' not' if negate else ''}', found {self.found()}")
            self.advance()
            test = pc.field(column).is_valid() if negate else pc.field(column).is_null()
            return Clause(test, frozenset({column}))
        what = f"column {left[1]!r}" if left[0] == "column" else "a value"
        raise self.fail(f"expected a comparison (== != < <= > >=, in (...), is null) after {what}, found {self.found()}")

    def operand(self) -> tuple[str, object, Token]:
        """("column", name, token) or ("value", python value, token)."""
        token = self.token
        if token.kind != "name":
            return ("value", self.literal(), token)
        if token.text.lower() in KEYWORDS:
            raise self.fail(f"expected a column or a value, found keyword {token.text!r}")
        self.advance()
        if self.token.kind == "(":
            raise self.fail(f"function calls are not allowed ({token.text}(...)); {ALLOWED}", token)
        if token.text not in self.schema.names:
            close = difflib.get_close_matches(token.text, self.schema.names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(f"unknown column {token.text!r}{hint}; columns: {', '.join(self.schema.names)}", token)
        return ("column", token.text, token)

    def literal(self):
        token = self.token
        if token.kind in ("number", "string"):
            self.advance()
            return token.value
        if token.kind == "-" and self.tokens[self.i + 1].kind == "number":
            self.i += 2
            return -self.tokens[self.i - 1].value
        raise self.fail(f"expected a column or a value, found {self.found()}")

    def column_of(self, operand, what: str) -> str:
        if operand[0] != "column":
            raise self.fail(f"{what} needs a column on its left", operand[2])
        return operand[1]

    def membership(self, column: str) -> Clause:
        field = self.schema.field(column)
        self.expect("(", "'(' after in")
        if self.token.kind == ")":
            raise self.fail("in () needs at least one value")
        scalars = []
        while True:
            token = self.token
            scalars.append(self.typed(field, self.literal(), token))
            if self.token.kind != ",":
                break
            self.advance()
        self.expect(")", "',' or ')' in the in (...) list")
        # x == a or x == b: a null x is then neither in nor not in the list, as with
        # comparisons (Arrow's is_in would call it "not in"), and statistics still prune.
        expression = None
        for scalar in dict.fromkeys(scalars):
            test = pc.field(column) == scalar
            expression = test if expression is None else expression | test
        return Clause(expression, frozenset({column}))

    def comparison(self, left, op: Token, right) -> Clause:
        if left[0] != "column" and right[0] != "column":
            raise self.fail("a comparison needs a column on at least one side", left[2])
        if left[0] != "column":
            left, right, operator = right, left, FLIPPED[op.text]
        else:
            operator = op.text
        column = left[1]
        field = self.schema.field(column)
        if pa.types.is_map(field.type):
            raise self.fail(f"column {column!r} is a map; it can only be tested with is null / is not null", left[2])
        if right[0] == "column":
            other = self.schema.field(right[1])
            if _kind(field.type) != _kind(other.type):
                raise self.fail(f"cannot compare {column!r} ({field.type}) with {right[1]!r} ({other.type})", op)
            rhs, columns = pc.field(right[1]), frozenset({column, right[1]})
        else:
            rhs, columns = self.typed(field, right[1], right[2]), frozenset({column})
        lhs = pc.field(column)
        expression = {
            "==": lambda: lhs == rhs, "!=": lambda: lhs != rhs, "<": lambda: lhs < rhs,
            "<=": lambda: lhs <= rhs, ">": lambda: lhs > rhs, ">=": lambda: lhs >= rhs,
        }[operator]()
        return Clause(expression, columns)

    def typed(self, field: pa.Field, value, token: Token) -> pa.Scalar:
        """The literal as a scalar of the column's type, so statistics can prune row groups."""
        kind = _kind(field.type)
        if kind == "number":
            if isinstance(value, str):
                raise self.fail(f"column {field.name!r} is numeric ({field.type}); compare it with a number, not {token.text}", token)
            if isinstance(value, int) and pa.types.is_integer(field.type):
                info = (2 ** (field.type.bit_width - 1))
                if -(2**63) <= value < 2**63:
                    return pa.scalar(value, field.type if -info <= value < info else pa.int64())
            try:
                return pa.scalar(float(value), pa.float64())
            except OverflowError:
                raise self.fail(f"{token.text} is too large a number (at most about 1.8e308)", token) from None
        if kind == "text":
            if not isinstance(value, str):
                raise self.fail(f"column {field.name!r} holds text; quote the value, e.g. {field.name} == '{value}'", token)
            return pa.scalar(value, pa.string())
        if kind == "time":
            if not isinstance(value, str):
                raise self.fail(f"column {field.name!r} is a time; give it as a quoted ISO date, e.g. '2025-01-31T12:00:00'", token)
            try:
                moment = dt.datetime.fromisoformat(value)
            except ValueError:
                raise self.fail(f"{token.text} is not an ISO date or time (e.g. '2025-01-31T12:00:00')", token) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.timezone.utc)
            return pa.scalar(moment, field.type)
        raise self.fail(f"column {field.name!r} ({field.type}) cannot be compared", token)


def _kind(type_: pa.DataType) -> str:
    if pa.types.is_integer(type_) or pa.types.is_floating(type_):
        return "number"
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return "text"
    if pa.types.is_timestamp(type_):
        return "time"
    return str(type_)
