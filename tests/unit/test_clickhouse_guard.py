"""The ClickHouse guard on canned ``EXPLAIN AST`` output (the engine-side cases are in
tests/integration/test_clickhouse_escapes.py)."""

from __future__ import annotations

import pytest

from levered.db.clickhouse_guard import Refused, check

DATABASES = frozenset({"analytics", "other", "default", "system", "INFORMATION_SCHEMA"})
TABLE_FUNCTIONS = frozenset({"numbers", "file", "url", "merge", "view", "python"})

HEAD = (
    "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children 2)\n"
)


def tree(*lines: str) -> str:
    return HEAD + "\n".join("   " + line for line in lines)


@pytest.mark.parametrize(
    ("ast", "words"),
    [
        (tree("Function file (children 1)"), "file() is not allowed"),
        (tree("Function dictGetString (children 1)"), "dictGetString() is not allowed"),
        (tree("Function Fqdn"), "Fqdn() is not allowed"),
        (tree("Function DictGet (children 1)"), "DictGet() is not allowed"),
        (tree("Function python (alias p) (children 1)"), "python() is not allowed"),
        (tree("TableIdentifier other.secrets"), "outside the connected database"),
        (tree("TableIdentifier system.tables (alias t)"), "outside the connected database"),
        (tree("Identifier information_schema.tables"), "outside the connected database"),
        (tree("Set"), "SETTINGS clauses are not allowed"),
        ("SelectWithUnionQuery (children 3)\n ExpressionList (children 1)", "one query"),
        ("SelectWithUnionQuery (children 1)\n ExpressionList (children 2)", "one query"),
        ("KillQueryQuery", "one query"),
        (tree("TableExpression (children 1)", " Function format (children 1)"), "format()"),
        (tree("TableExpression (children 1)", " Function myView (children 1)"), "myView()"),
    ],
)
def test_refused(ast: str, words: str) -> None:
    with pytest.raises(Refused) as refused:
        check(ast, "analytics", DATABASES, TABLE_FUNCTIONS)
    assert words in refused.value.reason


def test_allowed() -> None:
    check(
        tree(
            "Function numbers (children 1)",
            "Function view (children 1)",
            "Function count (children 1)",
            "Function format (children 1)",
            "TableExpression (children 1)",
            " Function numbers (alias n) (children 1)",
            "TableIdentifier purchases",
            "TableIdentifier analytics.purchases (alias p)",
            "Identifier p.user_id",
            "Literal 'SELECT file(1) FROM other.secrets'",
        ),
        "analytics",
        DATABASES,
        TABLE_FUNCTIONS,
    )
