"""Rollback checks (16.2, 16.3, 16.5), each shown to fail on the fault it exists to catch."""
from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
import testinfra

from deploycheck.checks import backup

from deploycheck.checks import code

from deploycheck.checks import rollback
from deploycheck.infra.embedded import find_bindir
from deploycheck.rehearsal.checkout import build_checkout, git

BIN = find_bindir()
LOCAL = testinfra.get_host("local://")


@pytest.fixture
async def dumped(pg_server, tmp_path):
    admin = await asyncpg.connect(pg_server.dsn)
    await admin.execute('DROP DATABASE IF EXISTS "shop_rb" WITH (FORCE)')
    await admin.execute('CREATE DATABASE "shop_rb"')
    await admin.close()
    dsn = pg_server.dsn_for("shop_rb")
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, total bigint); "
                       "INSERT INTO orders (total) SELECT g FROM generate_series(1, 50) g")
    await conn.close()
    yield dsn, await backup.dump(dsn, BIN / "pg_dump", tmp_path / "backup.dump")
    admin = await asyncpg.connect(pg_server.dsn)
    for name in await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'shop_rb%'"):
        await admin.execute(f'DROP DATABASE "{name[0]}" WITH (FORCE)')
    await admin.close()


async def test_backup_whose_hash_changed_is_refused_16_2(dumped):
    _, made = dumped
    rollback.check_unchanged(made, made.sha256)
    Path(made.file).write_bytes(Path(made.file).read_bytes() + b"tampered")
    with pytest.raises(backup.BackupError, match="changed since; do not restore it"):
        rollback.check_unchanged(made, made.sha256)
    with pytest.raises(backup.BackupError, match="no SHA-256"):
        rollback.check_unchanged(made, None)


async def test_restore_beside_and_swap_keeps_the_failed_database_16_2(dumped, pg_server):
    dsn, made = dumped
    conn = await asyncpg.connect(dsn)
    await conn.execute("DELETE FROM orders WHERE id > 10")  # the "failed deployment" lost rows
    await conn.close()
    done = await rollback.restore_in_place(made, pg_server.dsn, "shop_rb", BIN / "pg_restore", "t1")
    assert done["Failed Database Kept As"] == "shop_rb_failed_t1"
    restored = await asyncpg.connect(dsn)
    failed = await asyncpg.connect(pg_server.dsn_for("shop_rb_failed_t1"))
    assert await restored.fetchval("SELECT count(*) FROM orders") == 50
    assert await failed.fetchval("SELECT count(*) FROM orders") == 10
    await restored.close()
    await failed.close()


def test_restore_missing_rows_fails_16_5(dumped):
    _, made = dumped
    assert rollback.missing_rows(made, {"orders": 50}) == []
    assert rollback.missing_rows(made, {"orders": 51}) == []  # the bot wrote since: nothing lost
    assert rollback.missing_rows(made, {"orders": 49}) == ["public.orders: 49 rows, the backup has 50"]
    assert rollback.missing_rows(made, {}) == ["public.orders is missing"]


def test_checkout_that_cannot_go_back_fails_16_3(tmp_path):
    checkout = build_checkout(tmp_path)
    previous = code.output(LOCAL, str(checkout), "rev-parse", "v0.6.0")
    (checkout / "scripts" / "run_migration.py").write_text("# edited on the server\n")  # v0.6.0 lacks it
    result = code.git(LOCAL, str(checkout), "checkout", "--quiet", previous)
    assert result.rc != 0 and "run_migration.py" in result.stderr
    git(checkout, "checkout", "--", "scripts/run_migration.py")
    assert code.git(LOCAL, str(checkout), "checkout", "--quiet", previous).rc == 0
