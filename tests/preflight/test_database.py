"""1.3: the database answers (a stop-the-deployment gate: "Database connection issues")."""
import pytest

from deploycheck.checks.window import identity
from deploycheck.infra.db import ConnectionFailed, connect, readonly


@pytest.mark.item("1.3")
async def test_database_answers(target, run, evidence):
    try:
        conn = await connect(target.dsn)
    except ConnectionFailed as exc:
        pytest.fail(run.redactor.text(str(exc)), pytrace=False)
    try:
        async with readonly(conn):
            version = await conn.fetchval("SELECT version()")
        evidence["Database Identity"] = await identity(conn)  # 7.2 proves the migration targets this one
    finally:
        await conn.close()
    target.server_version = conn.get_settings().server_version
    evidence["Server Version"] = version
    evidence["Database Reached"] = target.reached  # directly, or through an SSH tunnel via the bot's host
