"""What tenant SQL may call on a connected ClickHouse, judged on ClickHouse's own parse tree.

Why a guard on top of ``readonly = 1``: the setting (fixed on every Levered session, which
then refuses ``SET`` and ``SETTINGS`` clauses) blocks writes, DDL and the table functions that
reach outside (``file()``, ``url()``, ``s3()``, ``remote()``, ``executable()``,
``postgresql()`` …). It does not block every *scalar* function: in the in-process engine
(chdb, ClickHouse's "local" mode) ``SELECT file('/etc/passwd')`` reads any file of the server,
whatever ``user_files_path`` says, and chdb has no users or grants to stop it. Nor does
anything in chdb keep a query to the connection's database (``system.tables``,
``other_db.t``, ``merge('other', '.*')``).

So every statement is first parsed by ClickHouse (``formatQuery``, which also refuses several
statements in one string), and its tree (``EXPLAIN AST`` of exactly the text that then runs) is
checked here: it must be one ``SELECT`` (the wrapper Levered put around the SQL, with its
``LIMIT``, and nothing after it), table functions are allowed from a short list of
generators, scalar functions that reach files, the network, dictionaries, other tables by
name or the server's configuration are refused, and a table (or ``IN`` operand) qualified
with another database —
``system`` and ``information_schema`` included — is refused. Levered never parses SQL itself;
it reads the tree the engine will execute.
"""

from __future__ import annotations

import re
from typing import Final

TABLE_FUNCTIONS: Final = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generateRandom",
        "generate_series",
        "generateSeries",
        "primes",
        "values",
        "null",
        "view",
    }
)
"""Table functions that only generate rows (``view`` runs a subquery, checked like the rest)."""

DENIED_FUNCTIONS: Final = frozenset(
    {
        "file",
        "getServerSetting",
        "getMergeTreeSetting",
        "filesystemAvailable",
        "filesystemCapacity",
        "filesystemUnreserved",
        "showCertificate",
        "joinGet",
        "joinGetOrNull",
        "hasColumnInTable",
        "getMacro",
        "getClientHTTPHeader",
        "currentRequestURL",
        "hostName",
        "hostname",
        "fullHostName",
        "FQDN",
        "fqdn",
        "serverUUID",
        "tcpPort",
        "getServerPort",
        "zookeeperSessionUptime",
        "globalVariable",
        "logTrace",
        "__getScalar",
        "addressToLine",
        "addressToLineWithInlines",
        "addressToSymbol",
        "demangle",
        "catboostEvaluate",
        "modelEvaluate",
    }
)
"""Scalar functions that read the server's files (``file`` ignores ``user_files_path`` in
chdb), its configuration or host, write to its log, or reach tables and dictionaries by a
name in a string (which the database check below cannot see)."""

_DENIED: Final = frozenset(name.lower() for name in DENIED_FUNCTIONS)
_GENERATORS: Final = frozenset(name.lower() for name in TABLE_FUNCTIONS)

_SCALARS_TOO: Final = frozenset({"format"})
"""Table-function names that are also plain scalar functions (``format('{}-{}', a, b)``): as
a scalar they are allowed; in a ``FROM`` (a ``TableExpression``'s child) the allow list
decides, as for every table function."""

DENIED_PREFIXES: Final = ("dict",)
"""``dictGet``, ``dictHas``, ``dictGetHierarchy`` …: dictionaries are server-wide objects."""

ALWAYS_DENIED_DATABASES: Final = frozenset({"system", "information_schema", "INFORMATION_SCHEMA"})

# One node per line, indented by depth: "Function file (alias f) (children 1)",
# "TableIdentifier db.t (alias x)", "Identifier other.s". Literals never match: their text is
# on a "Literal …" line.
_NODE: Final = re.compile(r"^\s*(Function|TableIdentifier|Identifier)\s+(\S+)")


TOP: Final = ("SelectWithUnionQuery (children 1)", " ExpressionList (children 1)")
"""The first two lines of the tree of one ``SELECT`` and nothing else: ``INTO OUTFILE``,
``FORMAT`` or ``SETTINGS`` after it, or a ``UNION`` that escaped Levered's wrapper (and its
``LIMIT``), would be more children of these nodes."""


class Refused(Exception):
    """The statement calls something a tenant may not: ``reason`` says what."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check(
    ast: str, database: str, databases: frozenset[str], table_functions: frozenset[str]
) -> None:
    """Raise :class:`Refused` unless the tree (``EXPLAIN AST`` output) stays inside ``database``.

    ``databases`` are the engine's databases and ``table_functions`` the engine's table
    functions (``system.table_functions``), both read by Levered itself, not the tenant.
    """
    lines = ast.splitlines()
    if tuple(lines[:2]) != TOP:
        raise Refused(
            "the SQL must be one query (SELECT, WITH … SELECT), with nothing after it: no "
            "UNION outside it, INTO OUTFILE, FORMAT or SETTINGS"
        )
    foreign = (databases | ALWAYS_DENIED_DATABASES) - {database}
    generators = {name.lower() for name in table_functions} - _SCALARS_TOO
    parents: list[str] = []  # the node text at each depth down to the current line
    for line in lines:
        depth = len(line) - len(line.lstrip(" "))
        del parents[depth:]
        parent = parents[-1] if parents else ""
        parents.append(line.strip())
        if line.strip() == "Set":
            # A SETTINGS clause: readonly refuses it at the top, but inside a subquery the
            # engine lets it pass unapplied; no tenant query needs one, so none is taken.
            raise Refused("SETTINGS clauses are not allowed: the session's settings are fixed")
        node = _NODE.match(line)
        if node is None:
            continue
        kind, name = node.group(1), node.group(2).strip('`"')
        if kind == "Function":
            # Compared without case: some functions are case-insensitive (FQDN is also Fqdn).
            folded = name.lower()
            in_from = parent.startswith("TableExpression")
            if (
                folded in _DENIED
                or folded.startswith(DENIED_PREFIXES)
                or (folded in generators and folded not in _GENERATORS)
                or (in_from and folded not in _GENERATORS)
            ):
                raise Refused(f"{name}() is not allowed on a connected warehouse")
            continue
        # A qualified name whose first part is another database: a table there, or an IN
        # operand. (An alias spelled like a database is refused too: rename it.)
        first, dot, _ = name.partition(".")
        if dot and (first in foreign or first.lower() in ALWAYS_DENIED_DATABASES):
            raise Refused(
                f"{name!r} is outside the connected database {database!r}: only its own "
                "tables can be read"
            )
