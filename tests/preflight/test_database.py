"""1.3: the database answers (a stop-the-deployment gate: "Database connection issues")."""
import pytest

from deploycheck.checks.window import identity
from deploycheck.infra.db import connect, readonly


@pytest.mark.item("1.3")
async def test_database_answers(target, evidence):
    conn = await connect(target.dsn)
    try:
        async with readonly(conn):
            version = await conn.fetchval("SELECT version()")
        evidence["Database Identity"] = await identity(conn)  # 7.2 proves the migration targets this one
    finally:
        await conn.close()
    evidence["Server Version"] = version
    evidence["Database Reached"] = target.reached  # directly, or through an SSH tunnel via the bot's host
