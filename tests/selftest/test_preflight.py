"""Preflight checks, each shown to fail on the fault it exists to catch."""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import asyncpg
import pytest
from deploycheck.infra.release import Checkout
from deploycheck.infra.host import BotHost

from deploycheck.checks import backup

from deploycheck.checks import code

from deploycheck.checks import environment
from deploycheck.infra.embedded import find_bindir
from deploycheck.checks.locks import LintError, lint
from deploycheck.infra.pgtools import major_of
from deploycheck.rehearsal.checkout import build_checkout, git

BIN = find_bindir()
LOCAL = BotHost.get("local://")  # the testinfra host behind the bounded-command facade


async def shop(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.execute("""
        CREATE TABLE users (id serial PRIMARY KEY, name text);
        CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users, total bigint);
        INSERT INTO users (name) SELECT 'user ' || g FROM generate_series(1, 300) g;
        INSERT INTO orders (user_id, total) SELECT 1 + g % 300, g * 1000 FROM generate_series(1, 900) g;
    """)
    await conn.close()


@pytest.fixture
async def dumped(fresh_db, pg_server, tmp_path):
    await shop(fresh_db)
    return await backup.dump(fresh_db, BIN / "pg_dump", tmp_path / "backup.dump")


async def test_backup_restores_equal(dumped, pg_server):
    assert await backup.verify_file(dumped, BIN / "pg_restore") > 0
    restored = await backup.restore(dumped, pg_server.dsn, "restore_equal", BIN / "pg_restore")
    try:
        assert await backup.compare_with(dumped, restored) == []
    finally:
        await backup.drop_database(pg_server.dsn, "restore_equal")


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "changed since it was made"),
    (lambda p: p.write_bytes(b"\0" + p.read_bytes()[1:]), "changed since it was made"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.unlink(), "does not exist"),
])
async def test_truncated_or_corrupt_backup_is_refused(dumped, damage, message):
    damage(Path(dumped.file))
    with pytest.raises(backup.BackupError, match=message):
        await backup.verify_file(dumped, BIN / "pg_restore")


async def test_unreadable_archive_is_refused(dumped):
    path = Path(dumped.file)
    path.write_bytes(path.read_bytes()[:200])
    dumped.sha256 = backup.sha256_of(path)  # even with a matching hash, pg_restore must be able to read it
    with pytest.raises(backup.BackupError, match="pg_restore"):
        await backup.verify_file(dumped, BIN / "pg_restore")


@pytest.mark.parametrize("fault, message", [
    ("DROP TABLE orders", "public.orders missing from the restore"),
    ("DELETE FROM orders WHERE id <= 5", "public.orders: 895 rows restored, 900 dumped"),
    ("UPDATE users SET name = 'x' WHERE id = 7", "public.users: same row count but different content"),
])
async def test_restore_that_differs_fails(dumped, pg_server, fault, message):
    restored = await backup.restore(dumped, pg_server.dsn, "restore_damaged", BIN / "pg_restore")
    try:
        conn = await asyncpg.connect(restored)
        await conn.execute(fault)
        await conn.close()
        assert any(message in problem for problem in await backup.compare_with(dumped, restored))
    finally:
        await backup.drop_database(pg_server.dsn, "restore_damaged")


async def test_old_pg_dump_is_a_clear_error(fresh_db, pg_server, tmp_path):
    old = tmp_path / "pg_dump"
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    old.chmod(old.stat().st_mode | stat.S_IEXEC)
    server = major_of(pg_server.version)  # the binaries in use: the wheel's 18, or PG_BINDIR's
    with pytest.raises(backup.BackupError, match=rf"pg_dump 9 is older than the server \({server}\)"):
        await backup.dump(fresh_db, old, tmp_path / "x.dump")


def test_password_never_on_the_command_line():
    plain, env = backup.libpq_env("postgresql://ops:s3cret-pw@db:5432/shop")
    assert "s3cret-pw" not in plain and env["PGPASSWORD"] == "s3cret-pw"


def test_disk_threshold_not_met(tmp_path):
    with pytest.raises(AssertionError, match="GB free.*need"):
        environment.check_disk(tmp_path, 10 ** 6, min_free_gb=10 ** 6)
    with pytest.raises(AssertionError, match="twice the database"):
        environment.check_disk(tmp_path, 10 ** 15, min_free_gb=0)
    assert environment.check_disk(tmp_path, 10 ** 6, min_free_gb=0.001)["Free Space"].endswith("GB")


def test_bot_python_missing_or_without_asyncpg(tmp_path):
    with pytest.raises(AssertionError, match="cannot run the bot's Python"):
        environment.check_python(LOCAL, Checkout(str(tmp_path), str(tmp_path / "no-python")))
    bare = tmp_path / "bare"
    os.system(f"{sys.executable} -m venv --without-pip {bare}")
    with pytest.raises(AssertionError, match="asyncpg is not installed"):
        environment.check_python(LOCAL, Checkout(str(tmp_path), str(bare / "bin" / "python")))
    assert environment.check_python(LOCAL, Checkout(str(tmp_path), sys.executable))["asyncpg Version"] != "missing"


@pytest.mark.parametrize("text, message", [
    ("", "no maintenance message"),
    (environment.MAINTENANCE_MESSAGE, r"still says \[TIME\]"),
    ("x" * 4097, "4097 characters"),
])
def test_maintenance_message_faults(text, message):
    with pytest.raises(AssertionError, match=message):
        environment.check_message(text)


def test_missing_host_directory():
    with pytest.raises(AssertionError, match="bot directory /nonexistent/bot not found"):
        environment.check_host(LOCAL, "/nonexistent/bot")


@pytest.fixture
def checkout(tmp_path) -> str:
    return str(build_checkout(tmp_path))


def test_clean_checkout_on_the_release_passes(checkout):
    assert code.check_checkout(LOCAL, checkout)["Behind Remote"] == 0
    found = code.check_release(LOCAL, checkout, "v0.7.0", None)
    assert found["Previous Ref"] == "v0.6.0" and found["Commit"] != found["Previous Commit"]


def test_dirty_checkout_fails(checkout):
    Path(checkout, "requirements.txt").write_text("edited on the server\n")
    with pytest.raises(AssertionError, match="local changes"):
        code.check_checkout(LOCAL, checkout)


def test_checkout_behind_its_remote_fails(checkout, tmp_path):
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(tmp_path / "origin.git"), str(other))
    (other / "hotfix.txt").write_text("newer\n")
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", "hotfix")
    git(other, "push", "-q", "origin", "main")
    with pytest.raises(AssertionError, match="1 commit\\(s\\) behind its remote"):
        code.check_checkout(LOCAL, checkout)


def test_wrong_branch_fails(checkout):
    git(Path(checkout), "checkout", "-q", "-b", "experiment")
    with pytest.raises(AssertionError, match="on 'experiment', not 'main'"):
        code.check_checkout(LOCAL, checkout)


def test_wrong_tag_fails(checkout):
    git(Path(checkout), "checkout", "-q", "v0.6.0")
    with pytest.raises(AssertionError, match=r"HEAD is \w+ \(v0.6.0\), not v0.7.0"):
        code.check_release(LOCAL, checkout, "v0.7.0", None)
    with pytest.raises(AssertionError, match="v9.9.9 is not a tag or commit"):
        code.check_release(LOCAL, checkout, "v9.9.9", None)


def test_missing_migration_file_fails(checkout):
    Path(checkout, "scripts/run_migration.py").unlink()
    with pytest.raises(AssertionError, match="scripts/run_migration.py not found"):
        code.check_file(LOCAL, checkout, "scripts/run_migration.py")
    with pytest.raises(AssertionError, match="FIXES_SUMMARY_v9.txt not found"):
        code.find_document(LOCAL, checkout, "FIXES_SUMMARY_v9.txt")


async def test_migration_that_does_not_parse_is_refused(tmp_path):
    broken = tmp_path / "001.sql"
    broken.write_text("BEGIN;\nALTER TABLE orders ADD CONSTRAINT x CHECK (total >= 0;\nCOMMIT;\n")
    with pytest.raises(LintError, match="does not parse at line"):
        await lint(broken)
