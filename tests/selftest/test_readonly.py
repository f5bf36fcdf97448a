"""DESIGN: every check against the database must pass with a role that may only read. Preflight's, the
window's and monitoring's reads, and the backup itself (pg_dump on an exported snapshot), as such a role."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from deploycheck.checks import backup

from deploycheck.checks import window as deploy

from deploycheck.checks import monitor

from deploycheck.checks.expected import load_expected

from deploycheck.infra import catalog as schema

from deploycheck.checks import state
from deploycheck.infra.db import violations
from deploycheck.infra.targets import baseline_generator
from deploycheck.infra.embedded import find_bindir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def reader(fresh_db):
    """(owner DSN, read-only DSN) of the dirty v0.6 baseline."""
    owner = await asyncpg.connect(fresh_db)
    await baseline_generator().generate(owner, scale=0.5)
    role = "reader_" + uuid.uuid4().hex[:8]
    await owner.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'only-reads'; GRANT pg_read_all_data TO {role}; "
                        f"ALTER ROLE {role} SET default_transaction_read_only = on")
    parts = urlsplit(fresh_db)
    yield fresh_db, f"postgresql://{role}:only-reads@{parts.hostname}:{parts.port}{parts.path}"
    await owner.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
    await owner.close()


async def preflight_reads(conn) -> None:
    await violations(conn, state.DUPLICATE_CONTENTS)
    await violations(conn, state.STOCK_MISMATCHES)
    assert await state.stock_per_product(conn)
    assert (await schema.row_counts(conn))["users"] > 0
    assert "users" in (await schema.snapshot(conn))["tables"]
    assert (await deploy.identity(conn))["name"]
    assert await deploy.recipients(conn)
    await deploy.other_sessions(conn)


async def monitor_reads(conn) -> None:
    since = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    for sql in (monitor.LONG_TRANSACTIONS, monitor.BLOCKED, monitor.VOUCHERS.format(since=f"'{since}'"),
                monitor.STUCK_ORDERS.format(since=f"'{since}'")):
        await violations(conn, sql)
    await conn.fetchrow(monitor.TELEMETRY_TODAY)
    for query in load_expected()["query"]:
        await monitor.timing_ms(conn, query, runs=1)


async def test_preflight_and_monitor_reads_need_only_read(reader, tmp_path):
    _, dsn = reader
    conn = await asyncpg.connect(dsn)
    try:
        await preflight_reads(conn)
        await monitor_reads(conn)
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):  # the role really cannot write
            await conn.execute("UPDATE products SET stock = 0")
    finally:
        await conn.close()
    made = await backup.dump(dsn, find_bindir() / "pg_dump", tmp_path / "b.dump")
    assert made.size > 0 and made.snapshot_counts["public.users"] > 0


async def test_monitor_reads_after_the_migration_need_only_read(reader):
    owner_dsn, dsn = reader
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_")} | {"DATABASE_URL": owner_dsn}
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_migration.py"), "--yes",
                          str(ROOT / "scripts" / "migrations" / "001_fix_schema_constraints.sql")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-1000:]
    conn = await asyncpg.connect(dsn)
    try:
        await monitor_reads(conn)
        await conn.fetchval(monitor.ADMIN_ACTIONS_SINCE, datetime.now(timezone.utc))
    finally:
        await conn.close()
