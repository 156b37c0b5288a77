"""The --where parser: every construct against a Python reference, and every escape hatch closed."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import UsageError
from orchestrator.store.schema import dataset_schema
from orchestrator.store.where import parse_where

SCHEMA = dataset_schema()
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
ROWS = [
    dict(rank=r, alpha=a, scaling=s, model=m, eval_ce=ce, seed=seed, attempt=att,
         timestamp=T0 + dt.timedelta(days=day))
    for r, a, s, m, ce, seed, att, day in [
        (1, 1.0, "standard", "zoo/llama-xs", 2.5, 0, 1, 0),
        (4, 16.0, "rslora", "zoo/llama-s", 1.5, 1, 1, 1),
        (8, 16.0, "rslora", "it's \"quoted\"", None, 2, 2, 2),
        (32, 0.5, "standard", "back\\slash", 0.25, None, 1, 3),
        (64, 32.0, None, "a and b", 3.0, 0, 3, 4),
    ]
]
TABLE = pa.Table.from_pylist(ROWS, schema=pa.schema([SCHEMA.field(n) for n in ROWS[0]]))


def ranks(where: str) -> list[int]:
    return TABLE.filter(parse_where(where, SCHEMA).expression)["rank"].to_pylist()


@pytest.mark.parametrize("where, expected", [
    ("rank == 8", [8]),
    ("rank != 8", [1, 4, 32, 64]),
    ("rank < 8", [1, 4]),
    ("rank <= 8", [1, 4, 8]),
    ("rank > 8", [32, 64]),
    ("rank >= 8", [8, 32, 64]),
    ("8 <= rank", [8, 32, 64]),
    ("alpha > 0.75", [1, 4, 8, 64]),
    ("alpha >= 1.6e1", [4, 8, 64]),
    ("eval_ce < .3", [32]),
    ("alpha > -1", [1, 4, 8, 32, 64]),
    ("rank > 4.5", [8, 32, 64]),
    ("attempt >= 2", [8, 64]),
    ("eval_ce > alpha", [1]),
    ("timestamp >= '2025-01-03'", [8, 32, 64]),
    ("timestamp < '2025-01-02T00:00:00+00:00'", [1]),
    ("timestamp <= '2025-01-02T01:00:00+01:00'", [1, 4]),
])
def test_comparisons(where, expected):
    assert ranks(where) == expected


@pytest.mark.parametrize("where, expected", [
    ("scaling == 'rslora'", [4, 8]),
    ('scaling == "rslora"', [4, 8]),
    (r"model == 'it\'s \"quoted\"'", [8]),
    (r'model == "it\'s \"quoted\""', [8]),
    (r"model == 'back\\slash'", [32]),
    ("model == 'a and b'", [64]),
    ("model == 'A AND B'", []),
])
def test_quoting(where, expected):
    assert ranks(where) == expected


@pytest.mark.parametrize("where, expected", [
    ("rank in (1, 8, 99)", [1, 8]),
    ("rank not in (1, 8)", [4, 32, 64]),
    ("rank in (4, 8.0)", [4, 8]),
    ("scaling in ('rslora', \"x\")", [4, 8]),
    ("scaling not in ('rslora')", [1, 32]),  # null is neither in nor not in
    ("scaling is null", [64]),
    ("scaling is not null", [1, 4, 8, 32]),
    ("eval_ce is null or seed is null", [8, 32]),
    ("not scaling == 'rslora'", [1, 32]),
    ("not (rank > 4 and scaling == 'standard')", [1, 4, 8]),
    ("NOT rank IN (1) AND seed IS NOT NULL", [4, 8, 64]),
])
def test_membership_nulls_and_negation(where, expected):
    assert ranks(where) == expected


def test_integers_beyond_int64_still_compare():
    assert ranks("rank < 99999999999999999999") == [1, 4, 8, 32, 64]
    assert ranks("rank in (4, 9223372036854775808)") == [4]


def test_precedence_not_then_and_then_or():
    assert ranks("rank == 1 or rank > 8 and scaling == 'standard'") == [1, 32]
    assert ranks("rank == 1 or (rank > 8 and scaling == 'standard')") == [1, 32]
    assert ranks("(rank == 1 or rank > 8) and scaling == 'standard'") == [1, 32]
    assert ranks("rank == 64 or rank == 1 and scaling == 'rslora'") == [64]
    assert ranks("(rank == 64 or rank == 1) and scaling == 'rslora'") == []
    assert ranks("not rank == 1 and rank < 8") == [4]


def test_conjuncts_split_by_the_columns_they_read():
    where = parse_where("rank >= 8 and (status == 'running' or rank == 1) and scaling == 'rslora'", SCHEMA)
    assert [sorted(c.columns) for c in where.clauses] == [["rank"], ["rank", "status"], ["scaling"]]
    pushed, rest = where.split({"rank", "scaling"})
    assert str(pushed) == '((rank >= 8) and (scaling == "rslora"))'
    assert "status" in str(rest)
    assert where.split({"rank"})[0] is not None and parse_where("status == 'x'", SCHEMA).split({"rank"})[0] is None


@pytest.mark.parametrize("where, fragment", [
    ("__import__('os').system('x')", "character 17: unexpected '.'"),
    ("rank.__class__", "character 5: unexpected '.'"),
    ("abs(rank) > 1", "character 1: function calls are not allowed"),
    ("__import__('os')", "function calls are not allowed"),
    ("rank > 1; rank < 2", "character 9: unexpected ';'"),
    ("rank > 1 and exec('x')", "function calls are not allowed"),
    ("lambda: 1", "unexpected ':'"),
    ("[x for x in rank]", "unexpected '['"),
    ("rank > `1`", "unexpected '`'"),
    ("rank = 1", "use '==' to compare"),
    ("rank >", "expected a column or a value, found end of input"),
    ("rank", "expected a comparison"),
    ("rank 8", "expected a comparison"),
    ("1 == 1", "needs a column on at least one side"),
    ("((rank > 1)", "expected ')'"),
    ("rank > 1)", "found ')'"),
    ("rank in ()", "in () needs at least one value"),
    ("rank in (1, 2", "',' or ')'"),
    ("rank in 1", "expected '(' after in"),
    ("1 in (1)", "needs a column on its left"),
    ("rank is 1", "expected 'null'"),
    ("model == 'abc", "unterminated string"),
    (r"model == 'a\qb'", "unknown escape"),
    ("rnak > 1", "unknown column 'rnak' (did you mean 'rank'?)"),
    ("rank >= 'x'", "column 'rank' is numeric"),
    ("scaling == rslora", "unknown column 'rslora'"),
    ("scaling == 1", "holds text; quote the value"),
    ("miub_layers > 1", "is a map"),
    ("rank < model", "cannot compare"),
    ("timestamp > 5", "give it as a quoted ISO date"),
    ("timestamp > 'yesterday'", "is not an ISO date"),
    ("0x10 == rank", "malformed number"),
    ("rank > \u00b2", "unexpected '\u00b2'"),
    ("r\u00e5nk > 1", "unexpected '\u00e5'"),
    ("rank > 1 \u2227 seed == 0", "unexpected '\u2227'"),
    ("rank > 1 and", "found end of input"),
    ("and rank > 1", "found keyword 'and'"),
    ("(" * 100 + "rank > 1" + ")" * 100, "nested more than"),
    ("not " * 3000 + "rank > 1", "nested more than"),
    ("alpha == 1" + "0" * 400, "is too large a number"),
    ("", "expected a column or a value"),
])
def test_malformed_and_hostile_filters_are_one_clear_line(where, fragment):
    with pytest.raises(UsageError) as caught:
        parse_where(where, SCHEMA)
    (line,) = caught.value.problems
    assert line.startswith("--where ") and fragment in line, line


# -- random filters against a three-valued (SQL) Python reference

COLUMNS = {"rank": [0, 1, 4, 8], "alpha": [0.5, 1.0, 16.0], "scaling": ["standard", "rslora"]}
OPS = ["==", "!=", "<", "<=", ">", ">="]


def _leaf():
    column = st.sampled_from(sorted(COLUMNS))
    return column.flatmap(lambda c: st.one_of(
        st.tuples(st.just("cmp"), st.just(c), st.sampled_from(OPS), st.sampled_from(COLUMNS[c])),
        st.tuples(st.just("in"), st.just(c), st.lists(st.sampled_from(COLUMNS[c]), min_size=1, max_size=3)),
        st.tuples(st.just("null"), st.just(c), st.booleans()),
    ))


_tree = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(["and", "or"]), inner, inner),
        st.tuples(st.just("not"), inner),
    ),
    max_leaves=8,
)


def _text(node) -> str:
    kind = node[0]
    if kind in ("and", "or"):
        return f"({_text(node[1])} {kind} {_text(node[2])})"
    if kind == "not":
        return f"not {_text(node[1])}"
    if kind == "cmp":
        return f"{node[1]} {node[2]} {node[3]!r}"
    if kind == "in":
        return f"{node[1]} in ({', '.join(map(repr, node[2]))})"
    return f"{node[1]} is {'not ' if node[2] else ''}null"


def _eval(node, row):
    """Kleene logic: None is unknown."""
    kind = node[0]
    if kind == "and":
        a, b = _eval(node[1], row), _eval(node[2], row)
        return False if a is False or b is False else None if a is None or b is None else True
    if kind == "or":
        a, b = _eval(node[1], row), _eval(node[2], row)
        return True if a is True or b is True else None if a is None or b is None else False
    if kind == "not":
        a = _eval(node[1], row)
        return None if a is None else not a
    value = row[node[1]]
    if kind == "null":
        return (value is not None) if node[2] else (value is None)
    if value is None:
        return None
    if kind == "in":
        return value in node[2]
    return {"==": value == node[3], "!=": value != node[3], "<": value < node[3], "<=": value <= node[3],
            ">": value > node[3], ">=": value >= node[3]}[node[2]]


_RANDOM_ROWS = [
    {"rank": r, "alpha": a, "scaling": s}
    for r in [None, 0, 4, 8] for a in [None, 0.5, 16.0] for s in [None, "standard", "rslora"]
]
_RANDOM_TABLE = pa.Table.from_pylist(
    [dict(row, i=i) for i, row in enumerate(_RANDOM_ROWS)],
    schema=pa.schema([SCHEMA.field("rank"), SCHEMA.field("alpha"), SCHEMA.field("scaling"), pa.field("i", pa.int64())]),
)


@settings(max_examples=200, deadline=None)
@given(_tree)
def test_random_filters_match_the_reference(tree):
    text = _text(tree)
    got = _RANDOM_TABLE.filter(parse_where(text, SCHEMA).expression)["i"].to_pylist()
    assert got == [i for i, row in enumerate(_RANDOM_ROWS) if _eval(tree, row) is True], text
