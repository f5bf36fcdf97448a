"""Database access for checks: connections that fail with a clear message, read-only transactions."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import asyncpg

from deploycheck.infra.dsn import Dsn, DsnError
from deploycheck.failure import CheckFailed

CONNECT_TIMEOUT = 10
STATEMENT_TIMEOUT = "60s"
LOCK_TIMEOUT = "5s"


class ConnectionFailed(CheckFailed):  # a finding like any check's: its message is the cause
    """The database did not answer: a NO-GO (checklist: "Database connection issues")."""


def describe(dsn: str | Dsn) -> str:
    """host:port/database as user, without the password."""
    try:
        return Dsn.parse(dsn).describe()
    except DsnError:
        return "the database (its URL does not parse; it is not shown)"


async def connect(dsn: str, timeout: float = CONNECT_TIMEOUT) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=timeout, server_settings={"application_name": "deploycheck"})
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            reason = f"no answer within {timeout:.0f} s"
        raise ConnectionFailed(
            f"cannot connect to {describe(dsn)}: {reason}. Check that the server runs and accepts connections "
            "from this host, and the user and password in DATABASE_URL or POSTGRES_* (the password is not shown)."
        ) from None


@asynccontextmanager
async def readonly(conn: asyncpg.Connection, statement_timeout: str = STATEMENT_TIMEOUT):
    """A read-only transaction with statement and lock timeouts: how every check reads production."""
    async with conn.transaction(readonly=True):
        await conn.execute(f"SET LOCAL statement_timeout = '{statement_timeout}'; "
                           f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        yield conn


async def violations(conn: asyncpg.Connection, sql: str, limit: int = 5) -> tuple[int, list[dict]]:
    """dbt's rule: the query returns the violating rows; zero rows pass. Returns (count, first rows)."""
    async with readonly(conn):
        count = await conn.fetchval(f"SELECT count(*) FROM ({sql}) AS violations")
        rows = await conn.fetch(f"SELECT * FROM ({sql}) AS violations LIMIT {int(limit)}") if count else []
    return count, [{k: (v if isinstance(v, (int, float, bool, type(None))) else str(v)) for k, v in r.items()}
                   for r in rows]
