"""scripts/run_migration.py with scripts/migrations/001_fix_schema_constraints.sql on the dirty v0.6
baseline: everything v0.7.0 must leave behind is there, nothing is lost, and every way a run can go
wrong (an error near the end, a second runner, SIGKILL, a held lock) leaves the database as it was."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from deploycheck.infra import catalog as schema
from deploycheck.infra.targets import baseline_generator

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "scripts" / "run_migration.py"
MIGRATION = ROOT / "scripts" / "migrations" / "001_fix_schema_constraints.sql"
NAME = "001_fix_schema_constraints"
generator = baseline_generator()

# Facts file, "What v0.7.0 must leave behind".
CONSTRAINTS = {
    ("product_contents", "product_contents_content_key"): "UNIQUE (content)",
    ("product_term_submissions", "product_term_submissions_unique_submission"):
        "UNIQUE (order_id, product_id, telegram_user_id)",
    ("coupons", "check_used_count_non_negative"): "used_count >= 0",
    ("coupons", "check_used_count_le_max_uses"): "used_count <= max_uses",
    ("product_contents", "check_used_at_when_used"): "used_at IS NOT NULL",
    ("order_items", "order_items_quantity_check"): "quantity > 0",
    ("order_items", "order_items_unit_price_cents_check"): "unit_price_cents >= 0",
    ("payments", "payments_amount_cents_check"): "amount_cents >= 0",
    ("payments", "payments_fee_cents_check"): "fee_cents >= 0",
    ("payments", "payments_total_payment_cents_check"): "total_payment_cents >= 0",
    ("deposits", "deposits_status_check"): "'cancelled'",
    ("deposits", "deposits_amount_cents_check"): "amount_cents > 0",
    ("deposits", "deposits_fee_cents_check"): "fee_cents >= 0",
    ("deposits", "deposits_payable_cents_check"): "payable_cents >= 0",
}
# The facts file's list of what the idx_* indexes must cover: (table, leading column, partial?).
INDEXED = [
    ("products", "is_active", True), ("products", "category_id", False), ("orders", "user_id", False),
    ("orders", "status", False), ("orders", "created_at", False), ("order_items", "order_id", False),
    ("order_items", "product_id", False), ("product_contents", "product_id", False),
    ("product_contents", "is_used", True), ("product_contents", "used_by_order_id", True),
    ("payments", "gateway_order_id", False), ("payments", "order_id", False), ("payments", "status", False),
    ("deposits", "user_id", False), ("deposits", "status", False), ("deposits", "gateway_order_id", True),
    ("coupons", "valid_from", False), ("product_term_submissions", "product_id", False),
    ("product_term_notifications", "product_id", False), ("audit_log", "timestamp", False),
    ("audit_log", "actor_id", False), ("audit_log", "action", False),
]
MARKS = ["[tracking]", "[backup]", "[cleanup]", "[constraints]", "[indexes]", "[validation]"]
QUARANTINE_KINDS = {
    "product_contents": ["dirty_duplicate_contents_both_unused", "dirty_duplicate_contents_used_unused",
                         "dirty_duplicate_contents_both_used"],
    "product_term_submissions": ["dirty_duplicate_term_submissions"],
    "deposits": ["dirty_zero_amount_deposits"],
    "order_items": ["dirty_zero_quantity_order_items"],
}


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------
def runner_env(dsn: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_")}
    env["DATABASE_URL"] = dsn
    return env


async def run(dsn: str, *args: str, migration: Path | None = MIGRATION, timeout: float = 120) -> tuple[int, str]:
    argv = [sys.executable, str(RUNNER), *args] + ([str(migration)] if migration else [])
    proc = await asyncio.create_subprocess_exec(*argv, env=runner_env(dsn), stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"the runner did not finish within {timeout} s") from None
    return proc.returncode, out.decode()


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


async def state(dsn: str) -> dict:
    """Catalog and per-table checksums of every application schema, schema_migrations aside (a failed
    run is expected to leave its failure row there, and nothing else)."""
    conn = await asyncpg.connect(dsn)
    try:
        snap = await schema.snapshot(conn)
        sums = await schema.table_checksums(conn, schema=None)
    finally:
        await conn.close()

    def keep(name: str) -> bool:  # "schema_migrations[.part]" in the snapshot, "public.schema_migrations" in sums
        return name.removeprefix("public.").split(".")[0] != "schema_migrations"

    return {kind: {k: v for k, v in found.items() if keep(k)} for kind, found in {**snap, "checksums": sums}.items()}


def inject(tmp_path: Path, marker: str, sql: str) -> Path:
    """A copy of the migration, same file name (same migration_name), with `sql` before `marker`."""
    text = MIGRATION.read_text()
    assert marker in text, f"marker {marker!r} not in the migration"
    path = tmp_path / MIGRATION.name
    path.write_text(text.replace(marker, sql + "\n" + marker, 1))
    return path


@pytest.fixture
async def baseline(fresh_db):
    """The dirty v0.6 baseline at scale 1: (dsn, generator counts)."""
    conn = await asyncpg.connect(fresh_db)
    try:
        counts = await generator.generate(conn, scale=1)
    finally:
        await conn.close()
    return fresh_db, counts


@pytest.fixture
async def db(baseline):
    dsn, _ = baseline
    conn = await asyncpg.connect(dsn)
    yield conn
    await conn.close()


# ---------------------------------------------------------------------------------------------------
# the migration's result
# ---------------------------------------------------------------------------------------------------
async def test_leaves_behind_everything_v070_needs(baseline, db):
    dsn, _ = baseline
    before = await schema.row_counts(db)
    code, out = await run(dsn)
    assert code == 0, out

    for (table, name), fragment in CONSTRAINTS.items():
        definition = await schema.constraint_def(db, table, name)
        assert definition is not None, f"constraint {table}.{name} missing"
        assert fragment in definition, f"{table}.{name} is {definition!r}, expected it to contain {fragment!r}"
    assert await schema.col_is_unique(db, "product_contents", "content")
    assert await schema.col_is_unique(db, "product_term_submissions", ["order_id", "product_id", "telegram_user_id"])
    used_count = await db.fetchrow("SELECT is_nullable, column_default FROM information_schema.columns "
                                   "WHERE table_name = 'coupons' AND column_name = 'used_count'")
    assert (used_count["is_nullable"], used_count["column_default"]) == ("NO", "0")
    for table, columns in {"audit_log": ["id", "timestamp", "actor_id", "action", "details", "created_at"],
                           "schema_migrations": ["id", "migration_name", "executed_at", "execution_time_ms",
                                                 "status", "error_message", "created_at", "sha256"]}.items():
        for column in columns:
            assert await schema.has_column(db, table, column), f"{table}.{column}"
    assert await schema.col_is_unique(db, "schema_migrations", "migration_name")

    idx = await db.fetch("""SELECT i.indexname, i.tablename, i.indexdef, obj_description(c.oid, 'pg_class') AS why
                              FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname
                             WHERE i.indexname LIKE 'idx\\_%'""")
    assert len(idx) >= 25, f"{len(idx)} idx_* indexes, the checklist expects 25 or more"
    assert not [r["indexname"] for r in idx if not r["why"]], "every idx_* index has a reason (COMMENT)"
    for table, column, partial in INDEXED:
        hits = [r for r in idx if r["tablename"] == table and f"({column}" in r["indexdef"].replace('"', "")
                and (" WHERE " in r["indexdef"]) == partial]
        assert hits, f"no idx_* index on {table}({column}){' (partial)' if partial else ''}"

    row = await db.fetchrow("SELECT * FROM schema_migrations WHERE migration_name = $1", NAME)
    assert row["status"] == "success" and row["sha256"] == hashlib.sha256(MIGRATION.read_bytes()).hexdigest()
    assert row["execution_time_ms"] is not None
    for mark in MARKS:
        assert any(line.startswith(mark) for line in out.splitlines()), f"no {mark} line in the output"
    assert "[result] success" in out and "no errors" in out
    # Backup tables: copies of the tables as they were before the cleanup.
    for table in ("products", "product_contents", "coupons", "deposits", "order_items", "product_term_submissions"):
        assert await db.fetchval(f"SELECT count(*) FROM migration_backup.{table}_001") == before[table], table


async def test_nothing_is_lost(baseline, db):
    dsn, counts = baseline
    before_counts = await schema.row_counts(db)
    before_rows = {t: {r["id"]: dict(r) for r in await db.fetch(f"SELECT * FROM {t}")} for t in QUARANTINE_KINDS}
    code, out = await run(dsn, "--json")
    assert code == 0, out
    after_counts = await schema.row_counts(db)

    for table in before_counts:  # 8.4: every other table keeps every row
        if table not in QUARANTINE_KINDS:
            assert after_counts[table] == before_counts[table], table
    for table, kinds in QUARANTINE_KINDS.items():
        still = {r[0] for r in await db.fetch(f"SELECT id FROM {table}")}
        moved = {int(r["source_id"]): json.loads(r["row_data"]) for r in await db.fetch(
            "SELECT source_id, row_data FROM migration_quarantine WHERE source_table = $1", table)}
        assert not still & set(moved), f"{table}: rows both in the table and in quarantine"
        assert still | set(moved) == set(before_rows[table]), f"{table}: rows neither in the table nor in quarantine"
        assert len(moved) == sum(counts[k] for k in kinds), f"{table}: quarantined {len(moved)}, dirty {kinds}"
        for id_, data in moved.items():  # moved whole: every column, same values
            original = before_rows[table][id_]
            assert set(data) == set(original)
            for column in ("content", "quantity", "amount_cents", "message", "order_id", "product_id"):
                if column in original:
                    assert str(data[column]) == str(original[column]), f"{table} {id_}.{column}"

    actions = {r[0]: r[1] for r in await db.fetch("SELECT action, count(*) FROM audit_log GROUP BY action")}
    assert actions["product_content_is_used_backfilled"] == counts["dirty_contents_is_used_null"]
    assert actions["product_content_used_at_backfilled"] == counts["dirty_used_contents_null_used_at"]
    assert (actions.get("product_content_marked_used", 0) + actions.get("product_content_released", 0)
            == counts["dirty_unused_contents_with_order"])
    assert actions["coupon_used_count_backfilled"] == counts["dirty_coupons_null_used_count"]
    assert actions["coupon_used_count_clamped"] >= counts["dirty_coupons_over_max_uses"]
    assert actions["deposit_quarantined"] == counts["dirty_zero_amount_deposits"]
    entry = await db.fetchval("SELECT details FROM audit_log WHERE action = 'coupon_used_count_clamped' LIMIT 1")
    assert {"old", "new"} <= set(json.loads(entry)), "audit entries carry old and new values"

    # Stock follows the contents now; every product sent from in stock to zero is named.
    assert await db.fetchval("SELECT count(*) FROM products p WHERE p.stock <> (SELECT count(*) FROM "
                             "product_contents c WHERE c.product_id = p.id AND NOT c.is_used)") == 0
    summary = last_json(out)
    zero = {p["code"] for p in summary["products_to_zero"]}
    assert len(zero) >= counts["dirty_stock_without_contents"]
    for code_ in zero:
        assert f"code={code_} " in out, f"{code_} goes to zero but no NOTICE names it"
    assert summary["stock_changes"] == actions["product_stock_recomputed"]
    assert summary["rows_quarantined"] == sum(sum(counts[k] for k in ks) for ks in QUARANTINE_KINDS.values())
    assert summary["status"] == "success" and summary["error"] is None


async def test_second_run_is_a_noop(baseline):
    dsn, _ = baseline
    code, out = await run(dsn)
    assert code == 0, out
    after_first = await state(dsn)
    code, out = await run(dsn, "--json")
    assert code == 0, out
    assert "already applied" in out and "nothing to do" in out
    assert "[backup]" not in out, "backup tables made on a skipped run"
    assert last_json(out)["status"] == "already_applied"
    assert await state(dsn) == after_first


async def test_applied_file_changed_is_reported_with_both_hashes(baseline, tmp_path):
    dsn, _ = baseline
    assert (await run(dsn))[0] == 0
    changed = inject(tmp_path, "-- Validation", "-- an edit after the migration was applied")
    code, out = await run(dsn, migration=changed)
    assert code == 2, out
    assert hashlib.sha256(MIGRATION.read_bytes()).hexdigest() in out
    assert hashlib.sha256(changed.read_bytes()).hexdigest() in out


async def test_sql_is_idempotent_on_a_v070_database(baseline, db):
    """Applied again outside the runner (a database already at v0.7.0): no duplicate objects, no changes."""
    dsn, _ = baseline
    assert (await run(dsn))[0] == 0
    first = await state(dsn)
    async with db.transaction():
        await db.execute(MIGRATION.read_text())
    again = await state(dsn)
    assert again["constraints"] == first["constraints"] and again["indexes"] == first["indexes"]
    assert again["checksums"] == first["checksums"]


async def test_bot_never_ran_database(fresh_db):
    conn = await asyncpg.connect(fresh_db)
    try:
        await generator.generate(conn, scale=1, bot_ran=False)
        code, out = await run(fresh_db)
        assert code == 0, out
        for (table, name) in CONSTRAINTS:
            assert await schema.has_constraint(conn, table, name), f"{table}.{name}"
        assert len(await schema.indexes_like(conn)) >= 25
        assert not await schema.has_table(conn, "broadcast_jobs"), "run-time tables are the bot's business"
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------------
# failures leave the database as it was
# ---------------------------------------------------------------------------------------------------
async def test_error_near_the_end_rolls_back_everything(baseline, tmp_path):
    dsn, _ = baseline
    before = await state(dsn)
    broken = inject(tmp_path, "-- Validation",
                    "DO $$ BEGIN RAISE EXCEPTION 'injected failure near the end'; END $$;")
    code, out = await run(dsn, "--json", migration=broken)
    assert code == 1, out
    assert "FAILED and ROLLED BACK" in out and "injected failure near the end" in out
    assert "[indexes]" in out, "the error must come after the migration did most of its work"
    assert await state(dsn) == before, "schema or data differ after a rolled-back migration"
    summary = last_json(out)
    assert summary["status"] == "failed" and "injected failure" in summary["error"]
    failing_line = broken.read_text().splitlines().index(
        "DO $$ BEGIN RAISE EXCEPTION 'injected failure near the end'; END $$;") + 1
    assert f"(statement at line {failing_line}: DO $$ BEGIN RAISE EXCEPTION" in summary["error"]  # where it stopped
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT status, error_message FROM schema_migrations WHERE migration_name = $1", NAME)
    finally:
        await conn.close()
    assert row["status"] == "failed" and "injected failure near the end" in row["error_message"]
    # The real migration then applies, and replaces the failure row.
    code, out = await run(dsn)
    assert code == 0, out


async def test_dry_run_changes_nothing(baseline):
    dsn, counts = baseline
    before = await state(dsn)
    code, out = await run(dsn, "--dry-run", "--json")
    assert code == 0, out
    summary = last_json(out)
    assert summary["status"] == "dry_run" and summary["dry_run"] is True
    assert "index public.idx_orders_status" in summary["objects_added"]
    assert "table public.audit_log" in summary["objects_added"]
    assert summary["rows_quarantined"] > 0 and summary["rows_cleaned"] > 0 and summary["stock_changes"] > 0
    assert len(summary["products_to_zero"]) >= counts["dirty_stock_without_contents"]
    assert summary["duration_ms"] > 0
    assert "ROLLED BACK" in out
    assert await state(dsn) == before
    conn = await asyncpg.connect(dsn)
    try:
        assert not await schema.has_table(conn, "schema_migrations"), "a dry run leaves no tracking table"
    finally:
        await conn.close()


async def test_runner_times_every_statement(baseline):
    """Where the window's time goes, from the runner's own clock: every statement of the file, by its line."""
    dsn, _ = baseline
    code, out = await run(dsn, "--dry-run", "--json")
    assert code == 0, out
    timings = last_json(out)["timings"]
    statements = runner_module().Migration(MIGRATION).statements()
    assert [t["line"] for t in timings if t["line"]] == [line for line, _ in statements]
    lines = MIGRATION.read_text().splitlines()
    status_index = next(t for t in timings if "idx_orders_status" in t["statement"] and "CREATE" in t["statement"])
    assert lines[status_index["line"] - 1].startswith("CREATE INDEX IF NOT EXISTS idx_orders_status")
    assert {"[runner] backup tables", "[runner] snapshot before"} <= {t["statement"] for t in timings}
    assert all(t["seconds"] >= 0 for t in timings)
    assert re.search(r"^\[timing\] \d+ statements and runner steps in the transaction", out, re.M)


def test_statements_split_where_postgresql_would(tmp_path):
    path = tmp_path / "002_split.sql"
    path.write_text("-- a comment; with a semicolon\nSELECT 'a;b', \"odd;name\" FROM t;\n/* block; */ SELECT 'it''s';\n"
                    "DO $$ BEGIN RAISE NOTICE 'x;'; END $$;\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $fn$\n"
                    "SELECT 1; $fn$;\n\n-- trailing comment\nSELECT 2")
    found = runner_module().Migration(path).statements()
    assert found == [(2, "SELECT 'a;b', \"odd;name\" FROM t;"), (3, "SELECT 'it''s';"),
                     (4, "DO $$ BEGIN RAISE NOTICE 'x;'; END $$;"),
                     (5, "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $fn$\nSELECT 1; $fn$;"), (9, "SELECT 2")]


def runner_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("run_migration_under_test", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _read_until(stream: asyncio.StreamReader, text: str, timeout: float) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(stream.readline(), max(0.1, deadline - time.monotonic()))
        if not line:
            break
        seen.append(line.decode())
        if text in seen[-1]:
            return "".join(seen)
    raise AssertionError(f"{text!r} did not appear; output so far:\n{''.join(seen)}")


async def test_second_runner_refused_and_sigkill_leaves_database_unchanged(baseline, tmp_path):
    dsn, _ = baseline
    before = await state(dsn)
    slow = inject(tmp_path, "-- Constraints\n", "SELECT pg_sleep(60);")
    first = await asyncio.create_subprocess_exec(
        sys.executable, str(RUNNER), str(slow), env=runner_env(dsn), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await _read_until(first.stdout, "[cleanup] data cleanup completed", 30)  # changes made, not committed

        code, out = await run(dsn, timeout=30)
        assert code == 2, out
        assert "REFUSED" in out and "another migration runner" in out

        first.send_signal(signal.SIGKILL)
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()

    conn = await asyncpg.connect(dsn)
    try:  # the server notices the dead client (client_connection_check_interval) and rolls back
        for _ in range(150):
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'run_migration'"):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the killed runner's session is still there after 15 s")
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE status = 'success'") == 0
    finally:
        await conn.close()
    assert await state(dsn) == before, "schema or data differ after the runner was killed"


async def test_lock_timeout_names_the_table(baseline):
    dsn, _ = baseline
    holder = await asyncpg.connect(dsn, server_settings={"application_name": "bot-auto-order"})
    try:
        async with holder.transaction():
            await holder.fetch("SELECT * FROM coupons LIMIT 1")  # a bot mid-transaction
            code, out = await run(dsn, "--lock-timeout", "1s", timeout=60)
    finally:
        await holder.close()
    assert code == 1, out
    error = next(line for line in out.splitlines() if line.startswith("[error]"))
    assert "lock_timeout" in error and "coupons" in error and "bot-auto-order" in error, error


async def test_a_role_that_may_not_lower_deadlock_timeout_still_migrates(baseline, db):
    """The runner lowers deadlock_timeout so an autovacuum gives way at once; a bot role that owns its tables but
    is no superuser may not, and the migration runs all the same, saying what that costs."""
    dsn, _ = baseline
    role = f"bot_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'bot-secret'")
    await db.execute(f"ALTER SCHEMA public OWNER TO {role}")
    await db.execute(f'GRANT CREATE ON DATABASE "{dsn.rsplit("/", 1)[1]}" TO {role}')  # the backup schema
    for name in await db.fetch("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                               "AND relkind = 'r'"):  # their sequences go with them
        await db.execute(f'ALTER TABLE "{name[0]}" OWNER TO {role}')
    try:
        code, out = await run(re.sub(r"//[^@]*@", f"//{role}:bot-secret@", dsn))
        assert code == 0, out
        assert 'deadlock_timeout stays at the server\'s setting (permission denied to set parameter "deadlock_timeout")' in out
    finally:
        await db.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}; DROP ROLE {role}")


async def test_connection_error_is_exit_2_without_the_password(pg_server):
    password = pg_server.password
    dsn = pg_server.dsn_for("no_such_database")
    code, out = await run(dsn, "--json", timeout=30)
    assert code == 2, out
    assert "no_such_database" in out and "127.0.0.1" in out
    assert password not in out
    assert last_json(out)["status"] == "error"


async def test_usage_errors_are_exit_2(pg_server, tmp_path):
    code, out = await run(pg_server.dsn, migration=tmp_path / "missing.sql", timeout=30)
    assert code == 2 and "not found" in out
    bad = tmp_path / "002_commits.sql"
    bad.write_text("CREATE TABLE t (id int);\nCOMMIT;\n")
    code, out = await run(pg_server.dsn, migration=bad, timeout=30)
    assert code == 2 and "transaction control" in out


def test_migration_lints_with_squawk():
    squawk = shutil.which("squawk", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    assert squawk, "squawk is a dependency (squawk-cli): reinstall deploycheck (./run does it)"
    out = subprocess.run([squawk, "--assume-in-transaction", str(MIGRATION)], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "NO_COLOR": "1"})
    # squawk colours and hyperlinks its output even when piped: strip the escape sequences.
    text = re.sub(r"\x1b\]8;;[^\x1b\x07]*(?:\x1b\\|\x07)|\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    rules = set(re.findall(r"^(?:warning|error)\[([a-z-]+)\]", text, re.M))
    assert rules, f"squawk reported nothing recognisable (exit {out.returncode}): {text[-2000:]}"
    assert "syntax-error" not in rules, text[-3000:]
    # Only the hazards the file's header accepts for the maintenance window.
    accepted = {"require-concurrent-index-creation", "adding-not-nullable-field", "require-lock-timeout",
                "require-statement-timeout", "prefer-identity", "prefer-bigint-over-int", "ban-drop-function"}
    assert rules <= accepted, f"new squawk findings: {rules - accepted}"


def test_the_runners_error_line_leads_a_failures_message():
    """5.3 and 7.3 put the runner's error lines first: its `[error]` line is the cause, not its notices."""
    from deploycheck.checks.window import error_lines
    output = ("[backup] migration_backup.coupons_001: 8 rows copied from coupons\n"
              "[notice] NOTICE: relation \"schema_migrations\" already exists, skipping\n"
              "[error] RaiseError [P0001]: [cleanup] 1 payments have a negative amount, fee or total\n"
              "[result] FAILED and ROLLED BACK\n")
    assert error_lines(output) == ["[error] RaiseError [P0001]: [cleanup] 1 payments have a negative amount, fee or total"]
    assert error_lines("psql:x.sql:3: ERROR:  relation \"t\" does not exist\n") == [
        'psql:x.sql:3: ERROR:  relation "t" does not exist']
