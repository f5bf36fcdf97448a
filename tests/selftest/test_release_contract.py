"""Postdeploy holds production to what the release's own migration did on the restored copy (5.3's contract),
not to the bundled migration's names. The release here is a second migration written for these tests from
the bundled one the way bot-auto-order's own v0.7.0 (acb53f6) differs from it: other index names, an index
and a constraint defined otherwise, and (for the floor) fewer idx_* indexes than the checklist's 25+.

Its contract is measured on one copy of a dirty v0.6 shop; "production" is another copy of the same shop,
migrated the same way and then broken the way each check exists to catch."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from deploycheck.attest import Attestation
from deploycheck.checks import contract, logs, performance, review, verify
from deploycheck.failure import CheckFailed
from deploycheck.infra import catalog
from deploycheck.infra.targets import baseline_generator

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = (ROOT / "scripts" / "migrations" / "001_fix_schema_constraints.sql").read_text()
RENAMES = {"idx_orders_created_at ": "idx_orders_created ", "idx_coupons_validity ": "idx_coupons_valid ",
           "idx_product_contents_used_by_order ": "idx_product_contents_order ",
           "idx_product_term_notifications_pending ": "idx_term_notifications_pending ",
           # defined otherwise: the release's idx_products_active is on the flag alone
           "idx_products_active ON products (category_id, name) WHERE is_active = true":
               "idx_products_active ON products (is_active)",
           # and a constraint defined otherwise
           "'deposits_amount_cents_check', 'CHECK (amount_cents > 0)'":
               "'deposits_amount_cents_check', 'CHECK (amount_cents >= 0)'"}
# Five of its 27 idx_* gone: 22, as bot-auto-order's own migration makes.
UNDER_THE_FLOOR = ("idx_users_created_at ", "idx_audit_log_timestamp ", "idx_audit_log_actor ",
                   "idx_audit_log_action ", "idx_deposits_created_at ")


def release_migration(tmp_path: Path, under_the_floor: bool = False) -> Path:
    sql = BUNDLED
    for old, new in RENAMES.items():
        assert old in sql, old
        sql = sql.replace(old, new)
    if under_the_floor:  # and its own validation content with what it makes, as acb53f6's is
        sql = sql.replace("IF n < 25 THEN", "IF n < 20 THEN")
        lines = sql.splitlines()
        sql = "\n".join(line for line in lines if not any(name in line for name in UNDER_THE_FLOOR))
    path = tmp_path / "001_fix_schema_constraints.sql"  # the checklist's name; the release's own content
    path.write_text(sql)
    return path


def migrate(dsn: str, migration: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_")} | {"DATABASE_URL": dsn}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_migration.py"), "--yes", str(migration)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-1000:]


@pytest.fixture(scope="module")
async def shop(pg_server):
    """A dirty v0.6 shop as a template database."""
    name = "rc_shop_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(pg_server.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(pg_server.dsn_for(name))
    try:
        await baseline_generator().generate(conn, scale=1, dirty=True)
    finally:
        await conn.close()
    yield name
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def copy_of(pg_server, shop):
    """copy_of() -> (dsn, connection) of a new database from the shop template; dropped afterwards."""
    made = []

    async def make():
        name = "rc_" + uuid.uuid4().hex[:10]
        admin = await asyncpg.connect(pg_server.dsn)
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{shop}"')
        await admin.close()
        conn = await asyncpg.connect(pg_server.dsn_for(name))
        made.append((name, conn))
        return pg_server.dsn_for(name), conn
    yield make
    admin = await asyncpg.connect(pg_server.dsn)
    for name, conn in made:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def rehearsed(copy_of, migration: Path) -> dict:
    """5.3 on a copy: the contract of that migration."""
    dsn, conn = await copy_of()
    before, rows = await catalog.snapshot(conn), await catalog.row_counts(conn)
    migrate(dsn, migration)
    return await contract.measure(conn, before, rows, "the rehearsal of deployment selftest", ())


async def production(copy_of, migration: Path):
    """Production: preflight's snapshot and counts, then the window's migration."""
    dsn, conn = await copy_of()
    before = {"schema": await catalog.snapshot(conn), "tables": await catalog.row_counts(conn)}
    migrate(dsn, migration)
    return conn, before


async def fails(check, *words) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        await check
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"
    return info.value


async def test_production_migrated_by_the_release_passes_against_its_contract(copy_of, tmp_path):
    migration = release_migration(tmp_path)
    expected = await rehearsed(copy_of, migration)
    assert {"idx_orders_created", "idx_coupons_valid"} <= {i["name"] for i in expected["index"]}
    assert "idx_orders_created_at" not in {i["name"] for i in expected["index"]}
    assert any(t.startswith("migration_backup.") for t in expected["added"]["tables"])
    # 13.3: each critical query's index is the one its plan used on the copy, by the release's name
    latest = next(q for q in expected["query"] if "FROM orders ORDER BY created_at DESC" in q["sql"])
    assert latest["indexes"] == ["idx_orders_created"]
    conn, before = await production(copy_of, migration)
    evidence = await verify.check_indexes(conn, expected)
    assert evidence["idx_products_active"].endswith("USING btree (is_active)")
    assert "idx_orders_created_at" not in evidence  # the bundled name is not demanded
    assert "CHECK ((amount_cents >= 0))" in (await verify.check_constraints(conn, expected)).values()
    for check in (verify.check_constraint_count(conn, expected), verify.check_index_count(conn, expected),
                  verify.check_audit_log(conn, expected), verify.check_tables(conn, expected),
                  verify.check_schema_diff(conn, expected, before["schema"]), logs.check_migration_log(conn, expected),
                  verify.check_row_counts(conn, expected, before["tables"])):
        await check
    for query in expected["query"]:
        await performance.check_query_plan(conn, query)
    for check in ("Migration tracking table created", "Backup tables created (automatic)",
                  "Data cleanup completed (duplicates handled)", "Constraints applied successfully",
                  "Indexes created successfully", "Validation checks passed"):
        assert await review.problem(check, conn, expected, 0, None) is None, check


async def test_one_of_its_indexes_dropped_fails_8_2_and_7_4_naming_it(copy_of, tmp_path):
    migration = release_migration(tmp_path)
    expected = await rehearsed(copy_of, migration)
    conn, _ = await production(copy_of, migration)
    await conn.execute("DROP INDEX idx_coupons_valid")
    error = await fails(verify.check_indexes(conn, expected), "index idx_coupons_valid on coupons", "missing")
    assert error.evidence["idx_coupons_valid"] == "missing" and "Expected From" in error.evidence
    said = await review.problem("Indexes created successfully", conn, expected, 0, None)
    assert "idx_coupons_valid" in said
    # 13.3: a critical query that used it on the copy cannot now
    for query in (q for q in expected["query"] if "idx_coupons_valid" in q["indexes"]):
        await fails(performance.check_query_plan(conn, query), "the plan cannot use idx_coupons_valid")
    # one the release gives no index on the copy either is recorded, not failed: nothing regressed
    unindexed = dict(expected["query"][0], indexes=[])
    assert (await performance.check_query_plan(conn, unindexed))["Index"].startswith("none: ")
    # 7.4's other sub-checks, measured the same way: the backup tables and the tracking row it made on the copy
    await conn.execute("DROP SCHEMA migration_backup CASCADE")
    said = await review.problem("Backup tables created (automatic)", conn, expected, 0, None)
    assert "migration_backup." in said and "missing" in said
    await conn.execute("DELETE FROM schema_migrations")
    assert "is empty" in await review.problem("Migration tracking table created", conn, expected, 0, None)
    assert await review.problem("Validation checks passed", conn, expected, 1, None) == "the runner exited 1"


async def test_one_of_its_constraints_defined_otherwise_fails_8_1_with_both_definitions(copy_of, tmp_path):
    migration = release_migration(tmp_path)
    expected = await rehearsed(copy_of, migration)
    conn, _ = await production(copy_of, migration)
    await conn.execute("ALTER TABLE deposits DROP CONSTRAINT deposits_amount_cents_check, "
                       "ADD CONSTRAINT deposits_amount_cents_check CHECK (amount_cents > 0)")
    await fails(verify.check_constraints(conn, expected), "deposits_amount_cents_check",
                "expected CHECK ((amount_cents >= 0))", "found CHECK ((amount_cents > 0))")


async def test_a_migration_under_the_checklists_floor_fails_with_both_numbers_unless_accepted(copy_of, tmp_path):
    migration = release_migration(tmp_path, under_the_floor=True)
    expected = await rehearsed(copy_of, migration)
    assert expected["on_copy"]["Indexes Count"] == 22
    # 5.3 says so before the window, where stopping costs nothing; the owner's attestation, naming 22, clears it
    short = contract.floor_problems(expected, {})
    assert len(short) == 1 and short[0].startswith("8.2 Indexes Count: the checklist says 25+ idx_* indexes, the "
                                                   "release's migration makes 22")
    accepted = Attestation("8.2", "owner accepts 22 idx_* indexes", "owner", "2026-12-02T00:00:00+00:00")
    assert contract.floor_problems(expected, {"8.2": accepted}) == []
    conn, _ = await production(copy_of, migration)
    await verify.check_indexes(conn, expected)  # every index it makes is here
    await fails(verify.check_index_count(conn, expected),
                "the checklist says 25+ idx_* indexes, the release's migration makes 22 on the copy and 22 here",
                '--attest 8.2="owner accepts 22 idx_* indexes"')
    vague = Attestation("8.2", "owner accepts fewer indexes", "owner", "2026-12-02T00:00:00+00:00")
    await fails(verify.check_index_count(conn, expected, vague), "does not name 22")
    named = Attestation("8.2", "owner accepts 22 idx_* indexes", "owner", "2026-12-02T00:00:00+00:00")
    found = await verify.check_index_count(conn, expected, named)
    assert found == {"Indexes Count": 22, "Owner Acceptance": "owner accepts 22 idx_* indexes"}
    # production short of what the migration made on the copy is no release decision: no attestation helps
    await conn.execute("DROP INDEX idx_orders_created")
    await fails(verify.check_index_count(conn, expected, named), "makes 22 on the copy and 21 here",
                "production lacks some")


async def test_rows_the_bot_deletes_before_the_window_are_not_loss_a_row_the_migration_loses_is(copy_of, tmp_path):
    migration = release_migration(tmp_path)
    expected = await rehearsed(copy_of, migration)
    dsn, conn = await copy_of()
    preflight = await catalog.row_counts(conn)
    await conn.execute("DELETE FROM telemetry_daily WHERE id IN (SELECT id FROM telemetry_daily ORDER BY id LIMIT 3)")
    window = await catalog.row_counts(conn)  # 6.2: the bot stopped, right before the migration
    migrate(dsn, migration)
    after = await catalog.row_counts(conn)  # 7.3's Rows After
    found = await verify.check_row_counts(conn, expected, window, None, after)
    assert found["Row counts match pre-migration"] == "yes"
    assert "product_contents" in found["Row counts"] and "(copy:" in found["Row counts"]["product_contents"]
    # against preflight's counts the bot's own deletions would read as loss
    await fails(verify.check_row_counts(conn, expected, preflight, None, after), "telemetry_daily", "3 rows gone")
    # a row lost in the migration (here: gone before 7.3 counted) still fails
    await conn.execute("DELETE FROM reply_templates WHERE id = (SELECT min(id) FROM reply_templates)")
    lost = await catalog.row_counts(conn)
    await fails(verify.check_row_counts(conn, expected, window, None, lost),
                "reply_templates: 6 before the migration, 5 after: 1 rows gone where the migration removed 0 on the copy")


async def test_objects_named_after_a_moment_are_compared_by_their_pattern():
    assert contract.timeless("product_contents_backup_20261202_051502") == "product_contents_backup_<YYYYmmdd_HHMMSS>"
    assert contract.timeless("orders_backup_20261202051502.id") == "orders_backup_<YYYYmmdd_HHMMSS>.id"
    assert contract.timeless("idx_orders_created_at") == "idx_orders_created_at"
    assert contract.timeless("orders_backup_20270101_000000") == "orders_backup_<YYYYmmdd_HHMMSS>"


def test_no_expectation_says_how_to_get_one(tmp_path):
    with pytest.raises(CheckFailed, match=r"no expectation: run preflight for this deployment id \(shop1"):
        contract.expectation(None, None, "shop1")
    with pytest.raises(CheckFailed, match="no such file"):
        contract.expectation(None, tmp_path / "missing.toml", "shop1")
    (tmp_path / "bad.toml").write_text("[constraints\n")
    with pytest.raises(CheckFailed, match="not a valid expected-schema file"):
        contract.expectation(None, tmp_path / "bad.toml", "shop1")
    found = contract.expectation(None, ROOT / "checklists" / "v0.7.0-expected.toml", "shop1")
    assert found["source"].startswith("the file ") and found["index"]
    assert contract.expectation({"source": "5.3"}, ROOT / "checklists" / "v0.7.0-expected.toml", "x") == \
        {"source": "5.3"}  # the rehearsal of this deployment wins over a file


@pytest.fixture
async def identities(fresh_db, pg_server):
    """(the database preflight backed up, the one a rollback restored beside it and swapped in)."""
    from deploycheck.checks.window import identity
    found = []
    for dsn in (pg_server.dsn, fresh_db):
        conn = await asyncpg.connect(dsn)
        found.append(await identity(conn))
        await conn.close()
    return found


def test_a_redeploy_after_a_rollback_checks_7_2_against_the_database_16_2_swapped_in(
        project, copy_tests, passed_before, identities, fresh_db, monkeypatch):
    """16.5 did not pass (the bot did not answer after the rollback): 16.2's identity is the one to migrate."""
    backed_up, restored = identities
    copy_tests("deploy/test_migration.py")
    passed_before({"1.3": {"Database Identity": backed_up}})
    passed_before({"16.2": {"Database Identity": restored}})
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    result = project.runpytest_subprocess("-m", "deploy", "-k", "variables_point", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # and the old identity alone (no 16.2 recorded) is the fault 7.2 exists for
    (project.path / "reports").rename(project.path / "reports-swapped")
    passed_before({"1.3": {"Database Identity": backed_up}})
    result = project.runpytest_subprocess("-m", "deploy", "-k", "variables_point", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the migration would run on another database than the one preflight backed up*"])


async def test_the_contract_written_as_an_expected_file_reads_back_as_it_was(copy_of, tmp_path):
    """python -m deploycheck expected ID: the contract 5.3 recorded, as a file for --expected."""
    from deploycheck.record.ledger import Ledger
    expected = await rehearsed(copy_of, release_migration(tmp_path))
    Ledger(tmp_path / "reports" / "shop1" / "ledger.jsonl").append(
        {"run_id": "r1", "items": {"5.3": {"outcome": "passed", "evidence": {"Contract": expected}}}})
    done = subprocess.run([sys.executable, "-m", "deploycheck", "expected", "shop1", "--reports-dir",
                           str(tmp_path / "reports"), "-o", str(tmp_path / "release-expected.toml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    back = contract.expectation(None, tmp_path / "release-expected.toml", "other")
    assert back["source"] == expected["source"] and back["index"] == expected["index"]
    assert back["constraint"] == expected["constraint"] and back["on_copy"] == expected["on_copy"]
    Ledger(tmp_path / "reports" / "shop2" / "ledger.jsonl").append(
        {"run_id": "r1", "items": {"5.1": {"outcome": "passed", "evidence": {}}}})
    missing = subprocess.run([sys.executable, "-m", "deploycheck", "expected", "shop2", "--reports-dir",
                              str(tmp_path / "reports")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 3 and "run `pytest -m preflight --deployment-id shop2`" in missing.stderr


def test_a_query_may_use_either_of_two_equal_indexes():
    """The planner picks either of two indexes that differ only in name: the copy's pick and its twin serve."""
    indexes = {"deposits.idx_deposits_gateway": "CREATE INDEX idx_deposits_gateway ON public.deposits USING btree "
                                                 "(gateway_order_id) WHERE (gateway_order_id IS NOT NULL)",
               "deposits.deposits_gateway_order_id_idx": "CREATE UNIQUE INDEX deposits_gateway_order_id_idx ON "
               "public.deposits USING btree (gateway_order_id) WHERE (gateway_order_id IS NOT NULL)",
               "deposits.idx_deposits_user": "CREATE INDEX idx_deposits_user ON public.deposits USING btree (user_id)"}
    assert contract.twins({"deposits_gateway_order_id_idx"}, indexes) == ["deposits_gateway_order_id_idx",
                                                                          "idx_deposits_gateway"]
    assert contract.twins({"idx_deposits_user"}, indexes) == ["idx_deposits_user"]
