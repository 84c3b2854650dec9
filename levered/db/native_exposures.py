"""A table of the organization's own exposures in its connected PostgreSQL, read in place.

The user names a table (or view) of their dataset and which of its columns hold the anonymous
id, the optimization id, the variant, the timestamp and, optionally, the context and the
holdout flag (:class:`levered.schemas.warehouse.ExposureTable`). Every cells pass then reads its
exposures from there through :func:`relation_sql`: a subquery with the columns of Levered's own
``warehouse.exposures`` that the pass's statements read (``optimization_id``,
``anonymous_id``, ``variant_number``, ``context``, ``holdout``, ``"timestamp"``), so the same
attribution SQL runs inside the customer's database (:mod:`levered.db.cell_passes`) and only
cells come back.

The subquery is a plain projection with a filter, which PostgreSQL flattens into the statement:
conditions on the id, user and time reach the customer's columns, and their indexes, unchanged
(a text or uuid id, a ``timestamptz`` time). A ``timestamp`` column is read as UTC, a ``date``
as its midnight UTC. A JSON variant becomes the variant number of the optimization's design
(:mod:`levered.bandit.variants`: mixed radix, first factor most significant; a factor whose
levels are all strings is compared as text, so a JSON ``1`` or ``true`` is its level ``"1"``
or ``"true"``); a row whose
variant names no variant of the design (a missing factor, an unknown level, a number out of
range) is not an exposure of it and is skipped, as are rows without a user or a time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import asyncpg
import msgspec

from levered.db import connected_postgres as pg
from levered.db.exposure_relation import Exposures
from levered.db.sandbox import quote_ident, quote_literal
from levered.errors import ValidationError
from levered.schemas.warehouse import ExposureTable

TEXT: Final = ("text", "character varying", "character")
INTEGER: Final = ("smallint", "integer", "bigint")
JSON: Final = ("json", "jsonb")
ACCEPTED: Final[dict[str, tuple[str, ...]]] = {
    "anonymous_id": (*TEXT, "uuid", *INTEGER),
    "optimization_id": ("uuid", *TEXT),
    "variant": (*JSON, *TEXT, *INTEGER),
    "timestamp": ("timestamp with time zone", "timestamp without time zone", "date"),
    "context": (*JSON, *TEXT),
    "holdout": ("boolean",),
}
"""The column types each field may have (``format_type``'s names without a length)."""
UUID_PATTERN: Final = "^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$"


MODIFIER: Final = re.compile(r"\(\d+(?:,\d+)?\)")


def base_type(type_name: str) -> str:
    """The type without its modifier: ``character varying(40)`` → ``character varying``,
    ``timestamp(3) with time zone`` → ``timestamp with time zone``."""
    return " ".join(MODIFIER.sub("", type_name).split())


async def column_types(
    conn: asyncpg.Connection, schema: str, table: ExposureTable
) -> dict[str, str]:
    """The base type of each mapped column; a 400 naming the field when the table cannot be
    read, a column is missing or its type cannot hold what the field needs."""
    found = {
        row["name"]: base_type(row["type"]) for row in await pg.columns(conn, schema, table.table)
    }
    if not found:
        raise ValidationError.at(
            "$.table",
            f"no table or view {table.table!r} that the account can read in schema {schema!r}",
        )
    types: dict[str, str] = {}
    for field, column in msgspec.structs.asdict(table.columns).items():
        if column is None:
            continue
        path = f"$.columns.{field}"
        if column not in found:
            raise ValidationError.at(
                path, f"no column {column!r} in {table.table!r} (its columns: {', '.join(found)})"
            )
        if found[column] not in ACCEPTED[field]:
            raise ValidationError.at(
                path,
                f"column {column!r} is {found[column]}; {field} takes "
                + ", ".join(ACCEPTED[field]),
            )
        types[field] = found[column]
    return types


async def exposures(
    conn: asyncpg.Connection,
    schema: str,
    table: ExposureTable,
    design_factors: Sequence[Mapping[str, Any]],
) -> Exposures:
    """The customer's table as the exposures a pass reads (:mod:`levered.db.exposure_relation`):
    its column types read first (:func:`column_types`, a 400 when they no longer fit)."""
    relation = relation_sql(schema, table, await column_types(conn, schema, table), design_factors)
    return Exposures(
        relation,
        key="0",
        arrivals=False,
        row_key='ROW(x.anonymous_id, x."timestamp", x.variant_number, x.holdout, x.context)::text',
        row_key_type="text",
        variant="NULL::jsonb",
        subject="the reward metric's SQL or the exposures table (as mapped)",
    )


def relation_sql(
    schema: str,
    table: ExposureTable,
    types: Mapping[str, str],
    design_factors: Sequence[Mapping[str, Any]],
) -> str:
    """The customer's exposures as Levered's exposures relation (module doc)."""
    c = table.columns
    q = quote_ident

    def col(name: str) -> str:
        return f"n.{q(name)}"

    optimization = col(c.optimization_id)
    if types["optimization_id"] != "uuid":
        pattern = quote_literal(UUID_PATTERN)
        optimization = f"(CASE WHEN {optimization} ~ {pattern} THEN {optimization}::uuid END)"
    at = col(c.timestamp)
    if types["timestamp"] == "timestamp without time zone":
        at = f"({at} AT TIME ZONE 'UTC')"
    elif types["timestamp"] == "date":
        at = f"({at}::timestamp AT TIME ZONE 'UTC')"
    number = variant_number_sql(col(c.variant), types["variant"], design_factors)
    context = "'{}'::jsonb" if c.context is None else f"coalesce({col(c.context)}::jsonb, '{{}}')"
    holdout = "false" if c.holdout is None else f"coalesce({col(c.holdout)}, false)"
    anonymous = col(c.anonymous_id)
    return (
        f"(SELECT {optimization} AS optimization_id, {anonymous}::text AS anonymous_id, "
        f"{number} AS variant_number, {context} AS context, {holdout} AS holdout, "
        f'{at} AS "timestamp"\n FROM {q(schema)}.{q(table.table)} AS n\n'
        f" WHERE {anonymous} IS NOT NULL AND {col(c.timestamp)} IS NOT NULL"
        f" AND {number} IS NOT NULL)"
    )


def variant_number_sql(
    column: str, type_name: str, design_factors: Sequence[Mapping[str, Any]]
) -> str:
    """SQL: the variant number of ``column`` in the design, NULL when it names none."""
    size = 1
    for factor in design_factors:
        size *= len(factor["levels"])
    if type_name in INTEGER:
        return f"(CASE WHEN {column} BETWEEN 1 AND {size} THEN {column}::integer END)"
    value = f"{column}::jsonb"
    terms: list[str] = []
    place = 1
    for factor in reversed(design_factors):
        name = quote_literal(str(factor["name"]))
        if all(isinstance(level, str) for level in factor["levels"]):
            # Text comparisons cost half as much as jsonb ones, measured at 10⁶ rows; a JSON
            # number or boolean spelled like a level ("1", "true") is taken as that level.
            levels = " ".join(
                f"WHEN {quote_literal(level)} THEN {i * place}"
                for i, level in enumerate(factor["levels"])
            )
            terms.append(f"(CASE {value} ->> {name} {levels} END)")
        else:
            levels = " ".join(
                f"WHEN {quote_literal(msgspec.json.encode(level).decode())}::jsonb THEN {i * place}"
                for i, level in enumerate(factor["levels"])
            )
            terms.append(f"(CASE {value} -> {name} {levels} END)")
        place *= len(factor["levels"])
    return "(1 + " + " + ".join(reversed(terms)) + ")" if terms else "1"
