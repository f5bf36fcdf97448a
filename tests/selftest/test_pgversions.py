"""PostgreSQL 15 to 18: client tools matched to the server, restores into an older server, a live preflight
against 15, the migration on 15 and 18, and a --baseline-dump that needs pgcrypto."""
from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from deploycheck.checks import backup

from deploycheck.infra import pgtools

from deploycheck.checks import verify
from deploycheck.checks.expected import load_expected

from deploycheck.infra import targets
from deploycheck.rehearsal.checkout import MIGRATION, RUNNER, build_checkout
from deploycheck.infra.targets import baseline_generator

ROOT = Path(__file__).resolve().parents[2]
ATTESTATIONS = ROOT / "fixtures" / "rehearsal-attestations.toml"  # 5.3: the owner accepts products going to zero


def fake_tools(folder: Path, version: str) -> Path:
    """A bin folder whose pg_dump, pg_restore and psql only say their version."""
    folder.mkdir(parents=True)
    for tool in pgtools.CLIENT_TOOLS:
        (folder / tool).write_text(f"#!/bin/sh\necho '{tool} (PostgreSQL) {version}'\n")
        (folder / tool).chmod(0o755)
    return folder


async def new_database(server, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server.dsn_for(name)


def ledger(project, deployment_id: str) -> list[dict]:
    path = project.path / "reports" / deployment_id / "ledger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------------- choosing the tools
def test_the_servers_major_wins_over_newer_tools(tmp_path, monkeypatch):
    newer, same = fake_tools(tmp_path / "18", "18.6"), fake_tools(tmp_path / "15", "15.20")
    monkeypatch.setattr(pgtools, "client_bindirs", lambda major, preferred=None: [newer, same])
    chosen = pgtools.for_server("15.4 (Debian 15.4-1)")
    assert chosen.bindir == same and chosen.matched
    assert chosen.evidence() == {"Server Version": "15.4 (Debian 15.4-1)", "Client Tools": f"15.20 in {same}"}


def test_only_newer_tools_are_used_and_say_so(tmp_path, monkeypatch):
    newest, newer = fake_tools(tmp_path / "18", "18.6"), fake_tools(tmp_path / "17", "17.2")
    monkeypatch.setattr(pgtools, "client_bindirs", lambda major, preferred=None: [newest, newer])
    chosen = pgtools.for_server("15.4")
    assert chosen.bindir == newer and not chosen.matched  # the closest newer
    assert "restores drop the settings PostgreSQL 15 does not know" in chosen.evidence()["Client Tools"]


def test_only_older_tools_name_what_to_install(tmp_path, monkeypatch):
    older = fake_tools(tmp_path / "14", "14.11")
    monkeypatch.setattr(pgtools, "client_bindirs", lambda major, preferred=None: [older])
    with pytest.raises(pgtools.ToolsError, match=r"PostgreSQL 15 or newer.*found only older: 14.11.*"
                                                 r"apt-get install postgresql-client-15"):
        pgtools.for_server("15.4")


def test_pg_bindir_is_looked_in_first(tmp_path, monkeypatch):
    mine = fake_tools(tmp_path / "mine", "15.9")
    monkeypatch.setenv("PG_BINDIR", str(mine))
    assert pgtools.client_bindirs(15)[0] == mine
    assert pgtools.for_server("15.4").bindir == mine  # even with Debian's 15 installed
    assert pgtools.client_bindirs(15, preferred=tmp_path)[:2] == [tmp_path, mine]


# ------------------------------------------------------------------------- restoring into an older server
async def test_newer_pg_restore_restores_into_15(pg15_server, pg18_server, tmp_path):
    """The fault: pg_restore 18 sets transaction_timeout, which 15 rejects (4.3 failed on every 15 server).
    backup.restore drops what the server does not know and the copy is proven equal."""
    wheel = Path(pg18_server.bindir)
    source = await new_database(pg15_server, "newer_tools")
    conn = await asyncpg.connect(source)
    await conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, note text); "
                       "INSERT INTO orders (note) SELECT 'SET transaction_timeout = 0;' FROM generate_series(1, 40)")
    await conn.close()
    made = await backup.dump(source, wheel / "pg_dump", tmp_path / "b.dump")
    direct = await new_database(pg15_server, "direct")
    plain, env = backup.libpq_env(direct)
    with pytest.raises(backup.BackupError, match="transaction_timeout"):
        await backup.run_tool([str(wheel / "pg_restore"), "--exit-on-error", "-d", plain, made.file], env, 60)
    restored = await backup.restore(made, pg15_server.dsn, f"filtered_{uuid.uuid4().hex[:8]}", wheel / "pg_restore")
    assert await backup.compare_with(made, restored) == []  # the data line that looks like a setting is kept


# ------------------------------------------------------------------------------ a live preflight against 15
@pytest.fixture
async def live_15_shop(pg15_server):
    """A v0.6 shop on PostgreSQL 15, given to the inner run as production (DATABASE_URL)."""
    dsn = await new_database(pg15_server, "live_shop")
    conn = await asyncpg.connect(dsn)
    try:
        await baseline_generator().generate(conn, scale=1)
    finally:
        await conn.close()
    return dsn


PREFLIGHT_BACKUP = ("test_database_answers or test_full_backup_created or test_backup_file_verified "
                    "or test_backup_restores_equal_to_source or test_migration_rehearsed_on_restored_copy")


def test_live_preflight_against_15_backs_up_restores_and_rehearses(project, copy_tests, live_15_shop, tmp_path,
                                                                   monkeypatch):
    copy_tests("preflight/test_database.py", "preflight/test_backup.py", "preflight/test_state.py")
    monkeypatch.setenv("DATABASE_URL", live_15_shop)
    checkout = build_checkout(tmp_path / "release")
    result = project.runpytest("-m", "preflight", "--target", "live", "--deployment-id", "live15",
                               f"--bot-dir={checkout}", f"--bot-python={sys.executable}",
                               f"--backup-dir={tmp_path / 'backup'}", f"--attestations={ATTESTATIONS}",
                               "-k", PREFLIGHT_BACKUP)
    result.assert_outcomes(passed=5)
    items = ledger(project, "live15")[-1]["items"]
    assert {"4.1", "4.2", "4.3", "5.3"} <= {i for i, r in items.items() if r["outcome"] == "passed"}
    for item in ("4.1", "4.3"):  # the report shows the server's version and the tools' version and path
        assert items[item]["evidence"]["Server Version"].startswith("15.")
        assert items[item]["evidence"]["Client Tools"].startswith("15.")


def test_live_preflight_without_usable_tools_names_the_package(project, copy_tests, live_15_shop, tmp_path,
                                                               monkeypatch):
    copy_tests("preflight/test_database.py", "preflight/test_backup.py")
    monkeypatch.setenv("DATABASE_URL", live_15_shop)
    older = fake_tools(tmp_path / "14", "14.11")
    monkeypatch.setattr(pgtools, "client_bindirs", lambda major, preferred=None: [older])
    result = project.runpytest("-m", "preflight", "--target", "live", f"--backup-dir={tmp_path / 'backup'}",
                               "-k", "test_database_answers or test_full_backup_created")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*no pg_dump, pg_restore and psql of PostgreSQL 15 or newer*"
                                 "apt-get install postgresql-client-15*"])


# ------------------------------------------------------------------------------- the migration on 15 and 18
@pytest.mark.parametrize("server", ["pg15_server", "pg18_server"])
async def test_migration_leaves_v070_schema_on(server, request, tmp_path):
    pg = request.getfixturevalue(server)
    dsn = await new_database(pg, "migrate")
    conn = await asyncpg.connect(dsn)
    try:
        await baseline_generator().generate(conn, scale=1)
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / RUNNER), "--yes", "--json", "--dsn", dsn, str(ROOT / MIGRATION),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, out.decode()[-2000:]
        expected = load_expected()
        for constraint in expected["constraint"]:
            await verify.check_constraint(conn, constraint)  # CheckFailed names what is missing
        for index in expected["index"]:
            await verify.check_index(conn, index)
        assert pgtools.major_of(await conn.fetchval("SHOW server_version")) == pgtools.major_of(pg.version)
    finally:
        await conn.close()


# ----------------------------------------------------------------------- a --baseline-dump that needs pgcrypto
async def pgcrypto_dump(pg15_server, tmp_path) -> Path:
    """A real shop's dump in miniature: its schema creates pgcrypto (as bot-auto-order's does)."""
    dsn = await new_database(pg15_server, "crypto_shop")
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE EXTENSION pgcrypto; CREATE TABLE users (id serial PRIMARY KEY, telegram_id bigint "
                       "NOT NULL, token text DEFAULT encode(gen_random_bytes(8), 'hex')); "
                       "INSERT INTO users (telegram_id) SELECT g FROM generate_series(1, 1234) g")
    await conn.close()
    made = await backup.dump(dsn, Path(pg15_server.bindir) / "pg_dump", tmp_path / "crypto.dump")
    return Path(made.file)


def test_baseline_dump_with_pgcrypto_restores_on_15_and_names_the_package_on_the_wheel(
        project, copy_tests, pg15_server, pg18_server, tmp_path):
    dumped = asyncio.run(pgcrypto_dump(pg15_server, tmp_path))
    copy_tests("preflight/test_state.py")
    on_15 = project.runpytest("-m", "preflight", "--target", "embedded", "--pg-version", "15",
                              f"--baseline-dump={dumped}", "--deployment-id", "crypto15",
                              "-k", "test_row_counts_recorded")
    on_15.assert_outcomes(passed=1)
    entry = ledger(project, "crypto15")[-1]
    assert entry["items"]["5.1"]["evidence"]["tables"] == {"users": 1234}
    assert entry["target"]["server_version"].startswith("15.")
    on_wheel = project.runpytest("-m", "preflight", "--target", "embedded", f"--pg-bindir={pg18_server.bindir}",
                                 f"--baseline-dump={dumped}", "-k", "test_row_counts_recorded")
    on_wheel.assert_outcomes(errors=1)
    on_wheel.stdout.fnmatch_lines(["*needs the extension pgcrypto*apt-get install postgresql-15*--pg-version 15*"])


async def test_dump_from_a_newer_pg_dump_names_the_version_to_rehearse_on(pg15_server, pg18_server, tmp_path):
    source = await new_database(pg18_server, "newer_dump")
    made = await backup.dump(source, Path(pg18_server.bindir) / "pg_dump", tmp_path / "18.dump")
    on_15 = targets.Target(kind="embedded", dsn=pg15_server.dsn_for(targets.DEPLOYMENT_DB), admin_dsn=pg15_server.dsn,
                           server_version=pg15_server.version, bindir=Path(pg15_server.bindir))
    with pytest.raises(targets.TargetError, match="made by a newer pg_dump: rehearse on that version"):
        await targets.load_baseline(on_15, Path(made.file))


async def test_server_that_does_not_answer_is_a_clear_tools_error():
    silent = targets.Target(kind="live", dsn="postgresql://ops@127.0.0.1:1/shop",
                            admin_dsn="postgresql://ops@127.0.0.1:1/postgres")
    with pytest.raises(pgtools.ToolsError, match="cannot choose pg_dump and pg_restore: the server's version is"):
        await targets.client_tools(silent)
