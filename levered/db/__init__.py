"""Database access: the embedded PostgreSQL launcher, the pool, migrations and typed queries."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""What query functions take: a plain connection or one acquired from the pool."""
