"""The postdeploy checks (deploycheck/checks: verify, integrity, performance, logs): each passes on a good
v0.7.0 database and fails on the fault it exists to catch. The good database is the v0.6 baseline (fixtures/generate.py, clean data)
migrated by scripts/run_migration.py with scripts/migrations/001_fix_schema_constraints.sql (a migration
that fails fails these tests: no stand-in schema hides it). Preflight's record (row counts, schema snapshot,
stock) is taken just before."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from deploycheck.checks import integrity, logs, performance, verify
from deploycheck.checks.expected import load_expected
from deploycheck.infra import catalog as schema
from deploycheck.attest import Attestation
from deploycheck.failure import CheckFailed
from deploycheck.infra.targets import baseline_generator

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "scripts" / "run_migration.py"
MIGRATION = ROOT / "scripts" / "migrations" / "001_fix_schema_constraints.sql"
EXPECTED = load_expected()
CONSTRAINTS = {c["name"]: c for c in EXPECTED["constraint"]}
INDEXES = {i["name"]: i for i in EXPECTED["index"]}
QUERIES = {q["name"]: q for q in EXPECTED["query"]}


def migrate(dsn: str) -> None:
    """The release's own runner and migration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_")} | {"DATABASE_URL": dsn}
    run = subprocess.run([sys.executable, str(RUNNER), "--yes", str(MIGRATION)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"run_migration.py failed (exit {run.returncode}): {run.stdout[-1500:]}"


@pytest.fixture(scope="session")
async def baseline(pg_server):
    """A template database in the good v0.7.0 state, and what preflight recorded on it at v0.6."""
    name = "pd_template_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(pg_server.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(pg_server.dsn_for(name))
    try:
        await baseline_generator().generate(conn, scale=1, dirty=False)
        before = await record_preflight(conn)
        migrate(pg_server.dsn_for(name))
    finally:
        await conn.close()
    yield name, before
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def good_dsn(pg_server, baseline):
    """A fresh copy of the good database (the tests break things in it)."""
    template, _ = baseline
    name = "pd_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(pg_server.dsn)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield pg_server.dsn_for(name)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def good(good_dsn):
    """A superuser connection to it."""
    conn = await asyncpg.connect(good_dsn)
    yield conn
    await conn.close()


@pytest.fixture
def before(baseline):
    import copy
    return copy.deepcopy(baseline[1])


async def fails(check, *words) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        await check
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"
    return info.value


# ---------------------------------------------------------------------------------- the good database
async def test_good_database_passes_every_check(good, before):
    for constraint in EXPECTED["constraint"]:
        assert (await verify.check_constraint(good, constraint))[constraint["name"]] == constraint["definition"]
    assert (await verify.check_constraint_count(good, EXPECTED)) == {"Constraints Count": 4}
    for index in EXPECTED["index"]:
        await verify.check_index(good, index)
    assert (await verify.check_index_count(good, EXPECTED))["Indexes Count"] >= 25
    assert (await verify.check_audit_log(good, EXPECTED))["Audit Log Exists"] is True
    counts = await verify.check_row_counts(good, EXPECTED, before["tables"], before["Recorded At"])
    assert counts["Row counts match pre-migration"] == "yes"
    assert counts["Row counts"]["product_contents"] == "500 -> 500 + 0 in migration_quarantine"
    diff = await verify.check_schema_diff(good, EXPECTED, before["schema"])
    assert "tables:audit_log" in diff["Schema Added"] and "tables:migration_quarantine" in diff["Schema Added"]
    assert diff["Schema Dropped"] == []
    assert set(diff["Schema Changed"]) <= set(EXPECTED["planned"]["changes"])
    assert (await integrity.check_duplicates(good)) == {"Duplicates": 0}
    assert (await integrity.check_stock_sync(good)) == {"Mismatches": 0}
    assert (await integrity.check_stock_kept(good, before["stock"])) == {"Products Lost Stock": 0}
    assert (await integrity.check_orphans(good)) == {"Orphans": 0}
    for query in EXPECTED["query"]:
        await performance.check_query_plan(good, query)
    log = await logs.check_migration_log(good, EXPECTED)
    assert log["Migration Status"] == "success" and log["Migration"].startswith("001_fix_schema_constraints")


async def test_checks_only_read(good, good_dsn):
    """Every check runs in a read-only transaction: a role that may only read is enough."""
    from urllib.parse import urlsplit
    role = "pd_reader_" + uuid.uuid4().hex[:8]
    await good.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'; GRANT pg_read_all_data TO {role}")
    parts = urlsplit(good_dsn)
    reader = await asyncpg.connect(f"postgresql://{role}:reader-pw@{parts.hostname}:{parts.port}{parts.path}")
    try:
        await verify.check_constraint_count(reader, EXPECTED)
        await integrity.check_orphans(reader)
        await performance.check_query_plan(reader, QUERIES["active products (checklist 13.3)"])
        await logs.check_migration_log(reader, EXPECTED)
        assert (await schema.snapshot(reader))["tables"]["audit_log"] == "table"
    finally:
        await reader.close()
        await good.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


async def test_small_table_seq_scan_is_recorded_not_failed(good):
    found = await performance.check_query_plan(good, QUERIES["active products (checklist 13.3)"])
    natural, forced = found["active products (checklist 13.3)"].split("; seqscan off: ")
    assert natural.startswith("Seq Scan on products")  # 20 rows: the planner is right to scan
    assert "idx_products_active" in forced


# ---------------------------------------------------------------------------------- 8.1 constraints
async def test_missing_constraint_fails(good):
    await good.execute("ALTER TABLE product_contents DROP CONSTRAINT product_contents_content_key")
    error = await fails(verify.check_constraint(good, CONSTRAINTS["product_contents_content_key"]),
                        "expected UNIQUE (content)", "does not exist", "run_migration.py")
    assert error.evidence == {"product_contents_content_key": "missing"}
    error = await fails(verify.check_constraint_count(good, EXPECTED), "expected 4+, found 3",
                        "missing product_contents_content_key")
    assert error.evidence == {"Constraints Count": 3}


async def test_constraint_with_a_different_definition_fails(good):
    await good.execute("ALTER TABLE coupons DROP CONSTRAINT check_used_count_le_max_uses; ALTER TABLE coupons ADD "
                       "CONSTRAINT check_used_count_le_max_uses CHECK (used_count < max_uses)")
    await fails(verify.check_constraint(good, CONSTRAINTS["check_used_count_le_max_uses"]),
                "expected CHECK (((max_uses IS NULL) OR (used_count <= max_uses)))",
                "found CHECK ((used_count < max_uses))")
    # the old v0.6 definition of a redefined constraint is a different definition too
    await good.execute("ALTER TABLE deposits DROP CONSTRAINT deposits_status_check; ALTER TABLE deposits ADD "
                       "CONSTRAINT deposits_status_check CHECK (status IN ('pending', 'completed', 'failed'))")
    await fails(verify.check_constraint(good, CONSTRAINTS["deposits_status_check"]), "'cancelled'::text", "found CHECK")


async def test_not_valid_constraint_and_unique_index_instead_fail(good):
    await good.execute("ALTER TABLE deposits DROP CONSTRAINT deposits_amount_cents_check; ALTER TABLE deposits ADD "
                       "CONSTRAINT deposits_amount_cents_check CHECK (amount_cents > 0) NOT VALID")
    await fails(verify.check_constraint(good, CONSTRAINTS["deposits_amount_cents_check"]), "NOT VALID",
                "VALIDATE CONSTRAINT deposits_amount_cents_check")
    await good.execute("ALTER TABLE product_contents DROP CONSTRAINT product_contents_content_key; "
                       "CREATE UNIQUE INDEX product_contents_content_key ON product_contents (content)")
    await fails(verify.check_constraint(good, CONSTRAINTS["product_contents_content_key"]), "only an index of that name")


# ---------------------------------------------------------------------------------- 8.2 indexes, 13.3
async def test_missing_index_fails_and_its_query_cannot_use_it(good):
    await good.execute("DROP INDEX idx_payments_gateway")
    await fails(verify.check_index(good, INDEXES["idx_payments_gateway"]), "idx_payments_gateway on payments",
                "missing", "CREATE INDEX CONCURRENTLY idx_payments_gateway ON payments (gateway_order_id)")
    await verify.check_index_count(good, EXPECTED)  # 26 of 27 is still the checklist's "25+"
    await good.execute("DROP INDEX idx_users_created_at; DROP INDEX idx_deposits_created_at")
    error = await fails(verify.check_index_count(good, EXPECTED), "expected 25+ idx_* indexes, found 24")
    assert error.evidence == {"Indexes Count": 24}
    error = await fails(performance.check_query_plan(good, QUERIES["payment by gateway id (webhook)"]),
                        "cannot use idx_payments_gateway", "Query: SELECT * FROM payments")
    assert "seqscan off:" in error.evidence["payment by gateway id (webhook)"]


async def test_5_3_records_every_index_a_query_can_use_on_the_copy(good):
    """The planner picks among a query's indexes by the statistics, which differ between the copy and production:
    5.3 records all those it can use (each dropped in turn, in a transaction rolled back), and 13.3 accepts any."""
    query = QUERIES["catalogue: active products of a category"]
    usable = await performance.indexes_usable(good, query)
    assert {"idx_products_active", "idx_products_category"} <= usable, usable
    assert await good.fetchval("SELECT count(*) FROM pg_indexes WHERE indexname = ANY($1)", sorted(usable)) == len(usable)
    # production's plan taking the other one passes; one the copy's plan could not use fails
    await good.execute("DROP INDEX idx_products_active")
    await performance.check_query_plan(good, dict(query, indexes=sorted(usable)))
    await fails(performance.check_query_plan(good, dict(query, indexes=["idx_products_active"])),
                "cannot use idx_products_active")


async def test_index_renamed_redefined_or_invalid_fails(good):
    await good.execute("ALTER INDEX idx_orders_status RENAME TO orders_status_idx")
    await fails(verify.check_index(good, INDEXES["idx_orders_status"]), "same keys exists as orders_status_idx")
    await good.execute("DROP INDEX idx_products_active; CREATE INDEX idx_products_active ON products (category_id, name)")
    await fails(verify.check_index(good, INDEXES["idx_products_active"]), "(category_id, name) WHERE (is_active = true)",
                "found CREATE INDEX idx_products_active ON public.products USING btree (category_id, name)")
    await good.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_orders_user'::regclass")
    await fails(verify.check_index(good, INDEXES["idx_orders_user"]), "INVALID", "REINDEX INDEX CONCURRENTLY")
    await fails(performance.check_query_plan(good, QUERIES["orders of a user"]), "cannot use idx_orders_user")


def test_index_keys_are_read_from_the_definition():
    assert verify.index_keys('CREATE INDEX i ON public.a USING btree ("timestamp" DESC) WHERE (x IS NULL)') == \
        '"timestamp" DESC'
    assert verify.index_keys("CREATE INDEX i ON public.a USING btree (lower(code), id) INCLUDE (y)") == "lower(code), id"


# ---------------------------------------------------------------------------------- 8.3 audit_log
async def test_missing_or_wrong_audit_log_fails(good):
    await good.execute("ALTER TABLE audit_log DROP COLUMN details")
    await fails(verify.check_audit_log(good, EXPECTED), "details missing")
    await good.execute("DROP TABLE audit_log")
    error = await fails(verify.check_audit_log(good, EXPECTED), "Audit Log Exists: expected true, found false")
    assert error.evidence == {"Audit Log Exists": False}


# ---------------------------------------------------------------------------------- 8.4 row counts
async def test_lost_row_fails(good, before):
    await good.execute("DELETE FROM orders WHERE id = (SELECT id FROM orders ORDER BY id LIMIT 1)")
    error = await fails(verify.check_row_counts(good, EXPECTED, before["tables"], before["Recorded At"]),
                        "expected yes, found no", "orders: 200 before, 199 now", "pytest -m rollback")
    assert error.evidence["Row counts match pre-migration"] == "no"


async def test_contents_moved_to_quarantine_count_as_kept_deleted_ones_do_not(good, before):
    await quarantine(good, "product_contents", "id IN (SELECT id FROM product_contents WHERE NOT is_used "
                     "ORDER BY id LIMIT 2)")
    found = await verify.check_row_counts(good, EXPECTED, before["tables"], before["Recorded At"])
    assert found["Row counts"]["product_contents"] == "500 -> 498 + 2 in migration_quarantine"
    await good.execute("DELETE FROM product_contents WHERE id = (SELECT max(id) FROM product_contents WHERE NOT is_used)")
    await fails(verify.check_row_counts(good, EXPECTED, before["tables"], before["Recorded At"]),
                "product_contents: 500 before, 497 now + 2 quarantined = 499")


async def test_rows_created_after_preflight_are_not_a_mismatch(good, before):
    await good.execute("INSERT INTO users (telegram_id, first_name) VALUES (999000111, 'Baru')")
    await verify.check_row_counts(good, EXPECTED, before["tables"], before["Recorded At"])
    await fails(verify.check_row_counts(good, EXPECTED, before["tables"]), "users: 50 before, 51 now")


async def test_other_tables_may_only_shrink_into_quarantine(good, before):
    await quarantine(good, "product_term_submissions", "id = (SELECT min(id) FROM product_term_submissions)")
    await quarantine(good, "telemetry_daily", "id = (SELECT max(id) FROM telemetry_daily)")
    await verify.check_row_counts(good, EXPECTED, before["tables"], before["Recorded At"])
    await good.execute("DELETE FROM deposits WHERE id = (SELECT min(id) FROM deposits)")
    await fails(verify.check_row_counts(good, EXPECTED, before["tables"], before["Recorded At"]),
                "deposits: 60 before, 59 now + 0 quarantined = 59")
    await good.execute("DELETE FROM telemetry_daily WHERE id = (SELECT min(id) FROM telemetry_daily)")
    await fails(verify.check_row_counts(good, EXPECTED, before["tables"], before["Recorded At"]),
                "telemetry_daily: 1 of 120 rows lost")


async def quarantine(conn, table: str, where: str) -> None:
    """Move rows to the quarantine table the way the migration's cleanup does."""
    await conn.execute(f"""
        WITH moved AS (DELETE FROM {table} WHERE {where} RETURNING *)
        INSERT INTO migration_quarantine (migration_name, source_table, source_id, reason, row_data)
        SELECT '001_fix_schema_constraints', '{table}', moved.id::text, 'selftest', to_jsonb(moved) FROM moved""")


def test_missing_preflight_record_says_to_run_preflight_first():
    with pytest.raises(CheckFailed, match=r"run `pytest -m preflight --deployment-id v0.7.0-x` first"):
        verify.preflight(lambda item: None, "5.1", "tables", "v0.7.0-x")
    with pytest.raises(CheckFailed, match=r"no preflight record of stock \(item 5.3\)"):
        verify.preflight(lambda item: {"Stock Mismatches": 0}, "5.3", "stock", "v0.7.0-x")
    # a 5.1 that only filled the checklist's blanks still gives the six tables
    assert verify.preflight(lambda item: {"Users": 5, "Contents": 9}, "5.1", "tables", "d") == \
        {"users": 5, "product_contents": 9}


# ---------------------------------------------------------------------------------- schema diff
async def test_dropped_column_fails_the_schema_diff(good, before):
    await good.execute("ALTER TABLE users DROP COLUMN whatsapp_number; CREATE TABLE bot_runtime_extra (id int)")
    error = await fails(verify.check_schema_diff(good, EXPECTED, before["schema"]),
                        "1 dropped and 0 changed", "dropped columns:users.whatsapp_number (was text)",
                        "[planned] in checklists/v0.7.0-expected.toml")
    assert "tables:bot_runtime_extra" in error.evidence["Schema Added"]


async def test_unplanned_change_fails_the_schema_diff(good, before):
    await good.execute("ALTER TABLE orders ALTER COLUMN total_price_cents TYPE integer")
    await fails(verify.check_schema_diff(good, EXPECTED, before["schema"]),
                "changed columns:orders.total_price_cents: bigint NOT NULL -> integer NOT NULL")


def test_diff_hides_the_parts_of_a_whole_table():
    was = {"tables": {"a": "table"}, "columns": {"a.x": "int"}, "constraints": {}, "indexes": {"a.a_pkey": "..."}}
    has = {"tables": {"b": "table"}, "columns": {"b.y": "int"}, "constraints": {}, "indexes": {}}
    assert schema.diff(was, has) == {"added": ["tables:b"], "dropped": ["tables:a"], "changed": []}


# ---------------------------------------------------------------------------------- 12.x
async def test_remaining_duplicate_fails_without_showing_the_content(good):
    secret = "netflix-user@example.com:Hunter2-secret"
    await good.execute("ALTER TABLE product_contents DROP CONSTRAINT product_contents_content_key")
    await good.execute("INSERT INTO product_contents (product_id, content, is_used) VALUES (1, $1, false), "
                       "(2, $1, false)", secret)
    error = await fails(integrity.check_duplicates(good), "Duplicates: expected 0, found 1")
    assert error.evidence["Duplicates"] == 1 and error.evidence["Duplicate examples"][0]["copies"] == 2
    assert secret not in str(error) and secret not in str(error.evidence)


async def test_stock_mismatch_fails(good):
    code = await good.fetchval("UPDATE products SET stock = stock + 3 WHERE id = 1 RETURNING code")
    error = await fails(integrity.check_stock_sync(good), "Mismatches: expected 0, found 1", code)
    assert error.evidence["Mismatches"] == 1


async def test_stock_lost_fails_unless_attested_by_name(good, before):
    code = await good.fetchval("SELECT code FROM products WHERE id = 3")
    before["stock"]["3"] = 40   # preflight saw admin-typed stock the recount threw away
    await good.execute("UPDATE products SET stock = 0 WHERE id = 3")
    error = await fails(integrity.check_stock_kept(good, before["stock"]), "1 products had stock before",
                        f"{code} (was 40)", f'["12.2"] text = "<who accepted, why>" products = ["{code}"]')
    assert error.evidence["Lost stock"][0]["product_id"] == 3
    other = Attestation("12.2", "owner accepts another", "owner", "now", ("SOMETHING-ELSE",))
    await fails(integrity.check_stock_kept(good, before["stock"], other), f"does not name: {code}")
    named = Attestation("12.2", "owner will upload NFX codes", "owner", "now", (code,))
    found = await integrity.check_stock_kept(good, before["stock"], named)
    assert found["Products Lost Stock"] == 1 and found["Lost stock accepted"] == "owner will upload NFX codes"


async def test_orphans_fail(good):
    await good.execute("ALTER TABLE orders DROP CONSTRAINT orders_user_id_fkey; "
                       "DELETE FROM users WHERE id = (SELECT user_id FROM orders ORDER BY created_at LIMIT 1)")
    error = await fails(integrity.check_orphans(good), "Orphans: expected 0", "orders without user")
    assert error.evidence["Orphans by kind"]["orders without user"] >= 1
    await good.execute("SET session_replication_role = replica; "
                       "DELETE FROM orders WHERE id = (SELECT order_id FROM order_items LIMIT 1)")
    error = await fails(integrity.check_orphans(good), "order_items without order", "payments without order")


# ---------------------------------------------------------------------------------- 14.3
async def test_failed_migration_row_fails_without_leaking_row_values(good):
    await good.execute("""INSERT INTO schema_migrations (migration_name, executed_at, status, error_message)
        VALUES ('001_fix_schema_constraints.sql.retry', now() + interval '1 minute', 'failed',
                'could not create unique index: Key (content)=(user:Hunter2) is duplicated.')""")
    error = await fails(logs.check_migration_log(good, EXPECTED), "expected 'success', found 'failed'",
                        "Key (content)=(...)")
    assert "Hunter2" not in str(error) and error.evidence["Migration Status"] == "failed"


async def test_other_latest_migration_or_no_table_fails(good):
    await good.execute("INSERT INTO schema_migrations (migration_name, executed_at, status) "
                       "VALUES ('002_something', now() + interval '1 minute', 'success')")
    await fails(logs.check_migration_log(good, EXPECTED), "latest migration is 002_something")
    await good.execute("DROP TABLE schema_migrations")
    await fails(logs.check_migration_log(good, EXPECTED), "schema_migrations does not exist")


# ---------------------------------------------------------------------------------- thin tests, inner run
@pytest.fixture
def postdeploy_project(project, copy_tests):
    """An inner checkout with the real postdeploy tests."""
    copy_tests(*(f"postdeploy/{name}" for name in ("test_schema.py", "test_integrity.py",
                                                            "test_performance.py", "test_migration_log.py")))
    return project


@pytest.fixture
async def stock_off_dsn(good, good_dsn):
    await good.execute("UPDATE products SET stock = stock + 1 WHERE id = 2")
    return good_dsn


def test_thin_tests_fail_with_the_operator_message(postdeploy_project, stock_off_dsn, monkeypatch):
    """Sync on purpose: the inner pytest runs its own event loop."""
    monkeypatch.setenv("DATABASE_URL", stock_off_dsn)
    result = postdeploy_project.runpytest("-m", "postdeploy", "--deployment-id", "v0.7.0-selftest", "-p", "no:cacheprovider",
                                          f"--expected={ROOT / 'checklists' / 'v0.7.0-expected.toml'}",
                               "-k", "stock_matches or row_counts or orphans or constraints_count or migration")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines([
        "*no preflight record of tables (item 5.1) for deployment v0.7.0-selftest: run "
        "`pytest -m preflight --deployment-id v0.7.0-selftest` first*",
        "*Mismatches: expected 0, found 1 products whose stock differs*",
    ])
    assert "Traceback" not in result.stdout.str() and "During handling" not in result.stdout.str()
    import json
    ledger = next((postdeploy_project.path / "reports").glob("*/ledger.jsonl")).read_text().splitlines()
    items = json.loads(ledger[-1])["items"]
    assert items["12.2"]["outcome"] == "failed" and items["12.2"]["evidence"]["Mismatches"] == 1
    assert items["12.3"]["evidence"] == {"Orphans": 0}
    assert items["8.1"]["evidence"] == {"Constraints Count": 4}
    assert items["14.3"]["evidence"]["Migration Status"] == "success"


# ---------------------------------------------------------------------------------- the release itself
async def record_preflight(conn) -> dict:
    """What preflight records (5.1 tables, schema, Recorded At; 5.3 stock), the way it records it."""
    return {"tables": await schema.row_counts(conn), "schema": await schema.snapshot(conn),
            "Recorded At": (await conn.fetchval("SELECT now()")).isoformat(),
            "stock": {str(r[0]): r[1] for r in await conn.fetch("SELECT id, stock FROM products")}}


@pytest.fixture
async def dirty_dsn(fresh_db):
    conn = await asyncpg.connect(fresh_db)
    try:
        dirty = await baseline_generator().generate(conn, scale=1, dirty=True)
    finally:
        await conn.close()
    return fresh_db, dirty


async def test_the_migration_on_dirty_data_passes_everything_but_names_the_stock_it_zeroes(dirty_dsn):
    dsn, dirty = dirty_dsn
    conn = await asyncpg.connect(dsn)
    try:
        before = await record_preflight(conn)
        migrate(dsn)
        counts = await verify.check_row_counts(conn, EXPECTED, before["tables"], before["Recorded At"])
        moved = dirty["dirty_duplicate_contents_both_unused"] + dirty["dirty_duplicate_contents_used_unused"] + \
            dirty["dirty_duplicate_contents_both_used"]
        assert counts["Row counts"]["product_contents"] == f"500 -> {500 - moved} + {moved} in migration_quarantine"
        assert (await verify.check_schema_diff(conn, EXPECTED, before["schema"]))["Schema Dropped"] == []
        for check in (integrity.check_duplicates(conn), integrity.check_stock_sync(conn), integrity.check_orphans(conn),
                      logs.check_migration_log(conn, EXPECTED), verify.check_constraint_count(conn, EXPECTED),
                      verify.check_index_count(conn, EXPECTED), verify.check_audit_log(conn, EXPECTED)):
            await check
        for item in EXPECTED["constraint"]:
            await verify.check_constraint(conn, item)
        for item in EXPECTED["index"]:
            await verify.check_index(conn, item)
        for item in EXPECTED["query"]:
            await performance.check_query_plan(conn, item)
        error = await fails(integrity.check_stock_kept(conn, before["stock"]), 'products = ["')
        # at least every product whose stock was typed in with no contents behind it
        assert error.evidence["Products Lost Stock"] >= dirty["dirty_stock_without_contents"] > 0
    finally:
        await conn.close()


PREFLIGHT_STUB = '''
import pytest
from deploycheck.infra import catalog as schema

@pytest.mark.item("5.1")
async def test_record_counts(db, evidence):
    evidence["tables"] = await schema.row_counts(db)
    evidence["schema"] = await schema.snapshot(db)
    evidence["Recorded At"] = (await db.fetchval("SELECT now()")).isoformat()

@pytest.mark.item("5.3")
async def test_record_stock(db, evidence):
    evidence["stock"] = {str(r[0]): r[1] for r in await db.fetch("SELECT id, stock FROM products")}
'''


@pytest.fixture
async def migrated_after_preflight(dirty_dsn):
    """A dirty v0.6 database; calling the returned function migrates it (between the inner runs)."""
    dsn, _ = dirty_dsn
    return dsn, lambda: migrate(dsn)


def test_preflight_then_postdeploy_through_the_ledger(postdeploy_project, migrated_after_preflight, monkeypatch):
    """The whole path: preflight records into the ledger, the migration runs, postdeploy reads it back."""
    dsn, run_migration = migrated_after_preflight
    monkeypatch.setenv("DATABASE_URL", dsn)
    (postdeploy_project.path / "tests" / "preflight").mkdir()
    # Not test_record.py: the inner run is in-process, and the self-tests' own test_record is imported.
    (postdeploy_project.path / "tests" / "preflight" / "test_preflight_stub.py").write_text(PREFLIGHT_STUB)
    # No 5.3 contract in this deployment (the stub records stock only): the bundled migration's expected file.
    common = ("--deployment-id", "v0.7.0-e2e", "-p", "no:cacheprovider", "-k", "test_",
              f"--expected={ROOT / 'checklists' / 'v0.7.0-expected.toml'}")  # `=`: not a path for pytest's rootdir
    postdeploy_project.runpytest("-m", "preflight", *common).assert_outcomes(passed=2)
    run_migration()
    result = postdeploy_project.runpytest("-m", "postdeploy", *common)
    result.stdout.fnmatch_lines(["*products had stock before the migration and have none now*products = *"])
    lost = int(re.search(r"(\d+) products had stock before", result.stdout.str()).group(1))
    # one case per kind of object (8.1, 8.2, 8.3's tables), one per critical query, and the rest
    result.assert_outcomes(failed=1, passed=len(EXPECTED["query"]) + 12)
    # The owner accepts the products by name (the failure listed them, as the ledger does).
    codes = re.search(r'products = \[(.*?)\]', result.stdout.str()).group(1)
    (postdeploy_project.path / "attest.toml").write_text(
        f'["12.2"]\ntext = "owner will upload the codes"\nproducts = [{codes}]\n')
    attested = postdeploy_project.runpytest("-m", "postdeploy", *common, "--attestations", "attest.toml")
    attested.assert_outcomes(passed=len(EXPECTED["query"]) + 13)
    import json
    items = json.loads(next((postdeploy_project.path / "reports").glob("*/ledger.jsonl")).read_text().splitlines()[-1])["items"]
    assert items["8.4"]["evidence"]["Row counts match pre-migration"] == "yes"
    assert items["12.2+stock"]["evidence"]["Products Lost Stock"] == lost > 0
    assert items["12.2+stock"]["attestation"]["text"] == "owner will upload the codes"
    assert items["8.1"]["evidence"]["Constraints Count"] == 4
    assert items["8.2"]["evidence"]["Expected From"] == f"the file {ROOT / 'checklists' / 'v0.7.0-expected.toml'}"
    assert set(items["8.2"]["evidence"]) >= {i["name"] for i in EXPECTED["index"]}  # each object in the evidence
    assert items["14.3"]["evidence"]["Migration Status"] == "success"
