"""First start: one organization, its admin (the server administrator, who may create more
organizations) and an API key, written to a private file.

Runs under the migration advisory lock's sibling lock so two servers starting together create
one organization, not two. Later starts find an organization and do nothing.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from levered.db import Connection
from levered.db import organizations as db
from levered.services.passwords import hash_password
from levered.services.tokens import digest, new_api_key

BOOTSTRAP_LOCK = 0x6C65766572656401
ADMIN_EMAIL = "admin@levered.local"
CREDENTIALS_FILE = "initial-credentials"


@dataclass(frozen=True)
class InitialCredentials:
    path: Path
    organization_id: str
    email: str
    password: str
    api_key: str


async def bootstrap(
    conn: Connection, data_dir: Path, admin_password: str | None
) -> InitialCredentials | None:
    """Create the first organization if there is none; returns what was created, once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", BOOTSTRAP_LOCK)
        if await db.count_organizations(conn) > 0:
            return None
        password = admin_password or secrets.token_urlsafe(12)
        org_id = await db.insert_organization(conn, "Default organization")
        await db.insert_admin(
            conn, org_id, ADMIN_EMAIL, "Admin", hash_password(password), server_admin=True
        )
        key, prefix = new_api_key()
        await db.insert_api_key(conn, org_id, "bootstrap", prefix, digest(key))
        creds = InitialCredentials(
            data_dir / CREDENTIALS_FILE, str(org_id), ADMIN_EMAIL, password, key
        )
        _write_private(creds)
        return creds


def _write_private(creds: InitialCredentials) -> None:
    creds.path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# Levered initial credentials (created at first start; shown once)\n"
        f"organization_id={creds.organization_id}\n"
        f"email={creds.email}\n"
        f"password={creds.password}\n"
        f"api_key={creds.api_key}\n"
    )
    fd = os.open(creds.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(creds.path, 0o600)
