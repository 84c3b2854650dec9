"""Connected warehouses: connecting one (with its test), finding it, opening sessions on it.

A ``PUT /api/v2/warehouse`` with ``provider: postgres`` is accepted only after Levered logged
in with the credentials and found the dataset readable: a wrong password, an unknown schema or
an account that can read none of its tables is a 400 naming the problem, and nothing is
stored. An account that could write (or create, or is a superuser) is accepted with a warning
in the status: Levered only ever reads, but a read-only account is safer. ``provider:
clickhouse`` is tested and stored by :mod:`levered.services.connected_clickhouse`; both kinds
are found here (:func:`find`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import msgspec

from levered.db import Connection
from levered.db import connected_postgres as pg
from levered.db import connections as db
from levered.db.clickhouse_engine import ClickHouseTarget
from levered.errors import Conflict, Unavailable, ValidationError
from levered.schemas.warehouse import (
    ConnectionInfo,
    ExposureTable,
    PostgresCredentials,
    WarehouseSwitch,
)
from levered.services.secret_box import SecretBox

POSTGRES: Final = "postgres"
CLICKHOUSE: Final = "clickhouse"


@dataclass(frozen=True)
class Connected:
    """An organization's connected warehouse, password decrypted (never leaves the server)."""

    provider: str
    dataset_id: str
    target: pg.PostgresTarget | ClickHouseTarget
    warnings: list[str]
    tested_at: datetime
    exposures: ExposureTable | None = None
    """The table of the organization's own exposures training reads (None: Levered's)."""

    def info(self) -> ConnectionInfo:
        t = self.target
        if isinstance(t, ClickHouseTarget):
            parts = urlsplit(t.url)
            return ConnectionInfo(
                parts.hostname or "",
                parts.port or 0,
                t.database,
                t.username,
                "require" if parts.scheme == "https" else "",
                bool(t.password),
                self.tested_at,
                url=t.url,
            )
        return ConnectionInfo(
            t.host, t.port, t.database, t.username, t.sslmode, bool(t.password), self.tested_at
        )

    @property
    def postgres(self) -> pg.PostgresTarget:
        """The target of a PostgreSQL connection (the callers that only PostgreSQL reaches)."""
        assert isinstance(self.target, pg.PostgresTarget), self.provider
        return self.target


async def find(
    conn: Any, box: Callable[[], SecretBox | None], organization_id: UUID
) -> Connected | None:
    """The organization's connected warehouse, or None when it uses the managed one; ``box``
    is called only when a password must be decrypted."""
    row = await db.find(conn, organization_id)
    if row is None:
        return None
    if row["provider"] is None:
        raise Conflict(
            f"the organization's warehouse is {row['warehouse_provider']!r} but no connection "
            "is stored for it; connect it with PUT /api/v2/warehouse (or `levered warehouse "
            "connect`), or switch back to the managed warehouse",
            code="warehouse_not_connected",
        )
    password = ""
    if row["secret"] is not None:
        opened = box()
        if opened is None:
            raise Unavailable("this server has no secret key to read warehouse passwords")
        password = opened.open(row["secret"])
    target: pg.PostgresTarget | ClickHouseTarget
    if row["provider"] == CLICKHOUSE:
        settings = row["settings"]
        target = ClickHouseTarget(
            settings["url"], row["dataset_id"], settings.get("username", "default"), password
        )
    else:
        # The stored settings are what connect_postgres validated; converting checks them again.
        creds = msgspec.convert({**row["settings"], "password": password}, PostgresCredentials)
        target = _target(creds, row["dataset_id"])
    exposures = row["exposures"]
    return Connected(
        row["provider"],
        row["dataset_id"],
        target,
        list(row["warnings"]),
        row["tested_at"],
        None if exposures is None else msgspec.convert(exposures, ExposureTable),
    )


def _target(creds: PostgresCredentials, schema: str) -> pg.PostgresTarget:
    return pg.PostgresTarget(
        creds.host,
        creds.port,
        creds.database,
        creds.username,
        creds.password,
        creds.sslmode,
        schema,
    )


@asynccontextmanager
async def session(connected: Connected) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the organization's warehouse; unreachable → 503 ``warehouse_unavailable``."""
    target = connected.postgres
    try:
        async with pg.session(target) as conn:
            yield conn
    except pg.Unreachable as exc:
        raise Unavailable(
            f"the connected PostgreSQL warehouse ({target.host}:"
            f"{target.port}/{target.database}) cannot be reached: "
            f"{exc.reason}; retry later, or check it with `levered warehouse status`",
            code="warehouse_unavailable",
            retry_after=30,
        ) from exc


async def connect_postgres(
    app: Connection, box: SecretBox, organization_id: UUID, data: WarehouseSwitch
) -> None:
    """Test the credentials against the dataset, then store them (module doc)."""
    if not data.dataset_id:
        raise ValidationError.at(
            "$.dataset_id", "required for provider 'postgres' (the schema to read)"
        )
    if data.credentials is None:
        raise ValidationError.at(
            "$.credentials", "required for provider 'postgres': host, database, username, password"
        )
    try:
        creds = msgspec.convert(data.credentials, PostgresCredentials)
    except msgspec.ValidationError as exc:
        problem, path = _problem_and_path(str(exc))
        raise ValidationError(
            f"invalid credentials: {problem} ({path})", details=[{"path": path, "message": problem}]
        ) from exc
    target = _target(creds, data.dataset_id)
    try:
        async with pg.session(target) as remote:
            found = await pg.access(remote, data.dataset_id)
    except pg.Unreachable as exc:
        what = "log in" if exc.authentication else "reach the server"
        raise ValidationError(
            f"could not {what} at {creds.host}:{creds.port}/{creds.database} as "
            f"{creds.username!r}: {exc.reason}",
            details=[{"path": "$.credentials", "message": exc.reason}],
            code="warehouse_connection_failed",
        ) from exc
    if await pg.is_levered_database(app, found):
        raise ValidationError.at(
            "$.credentials", "this is Levered's own database, not a warehouse of yours"
        )
    if not found.schema_exists:
        raise ValidationError.at(
            "$.dataset_id", f"no schema {data.dataset_id!r} in {creds.database!r}"
        )
    if not found.usage or (found.relations and not found.readable):
        raise ValidationError.at(
            "$.dataset_id",
            f"{creds.username!r} cannot read schema {data.dataset_id!r}: grant USAGE on the "
            "schema and SELECT on its tables",
        )
    warnings = _warnings(found, creds.username)
    secret = box.seal(creds.password) if creds.password else None
    settings = {k: v for k, v in msgspec.structs.asdict(creds).items() if k != "password"}
    await db.connect(app, organization_id, POSTGRES, data.dataset_id, settings, secret, warnings)


def _warnings(found: pg.Access, username: str) -> list[str]:
    out: list[str] = []
    if found.relations == 0:
        out.append("the schema has no tables or views yet")
    if found.superuser:
        out.append(f"{username!r} is a superuser: give Levered a read-only account instead")
    if found.writable:
        names = ", ".join(found.writable[:5]) + (" …" if len(found.writable) > 5 else "")
        out.append(
            f"{username!r} can write to {len(found.writable)} table(s) ({names}); Levered only "
            "reads: a read-only account is safer"
        )
    if found.can_create:
        out.append(f"{username!r} can create objects in the schema; Levered needs only SELECT")
    return out


FIELD: Final = re.compile(r"(?:unknown|missing required) field `([^`]+)`")


def _problem_and_path(message: str) -> tuple[str, str]:
    """msgspec's message split into the problem and its JSON path under ``$.credentials``."""
    problem, _, at = message.partition(" - at `")
    path = "$.credentials" + at.rstrip("`").removeprefix("$")
    if field := FIELD.search(problem):
        path += f".{field.group(1)}"
    return problem, path
