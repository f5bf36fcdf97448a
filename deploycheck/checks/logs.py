"""Log review (14.x): the bot's log lines of a period by level, and 14.3, the migration's own record in
schema_migrations."""
from __future__ import annotations

import re

import asyncpg

from deploycheck.checks.expected import ROLLBACK, column_problems, table_columns
from deploycheck.failure import CheckFailed
from deploycheck.infra.catalog import ident
from deploycheck.infra.db import readonly


def mask(text: str | None) -> str | None:
    """An error message without the row values PostgreSQL quotes in it (contents are credentials)."""
    if not text:
        return text
    return re.sub(r"=\(.*?\)( |$)", r"=(...)\1", text)[:300]


async def check_migration_log(conn: asyncpg.Connection, expected: dict) -> dict:
    """14.3: the latest schema_migrations row is the release's migration (the one it recorded on the
    rehearsal's copy, or the expected file's name_prefix), status success."""
    rules, schema = expected["migration"], expected.get("schema", "public")
    table = rules["table"]
    if not rules.get("name_prefix"):  # measured on the copy: the release's runner wrote no row there either
        raise CheckFailed(f"Migration Status: the release's migration records itself nowhere: on the rehearsal's "
                          f"copy it left no {table} row, so nothing here can show it ran. Check by hand (7.4's "
                          "output) and ask the release to record its migrations.", {"Migration Status": "not recorded"})
    columns = await table_columns(conn, table, schema)
    if columns is None:
        raise CheckFailed(f"Migration Status: {table} does not exist, so no migration was recorded: the runner never "
                          "ran (7.3) or ran without its tracking phase. Run python3 scripts/run_migration.py "
                          "scripts/migrations/001_fix_schema_constraints.sql and read its output.",
                          {"Migration Status": "no schema_migrations table"})
    async with readonly(conn):
        latest = await conn.fetchrow(f"""
            SELECT migration_name, status, executed_at, execution_time_ms, error_message
            FROM {ident(schema)}.{ident(table)} ORDER BY executed_at DESC NULLS LAST, id DESC LIMIT 1""")
    if latest is None:
        raise CheckFailed(f"Migration Status: {table} is empty: the migration did not record itself. Read the "
                          "runner's output (7.4); re-run it if it did not finish.", {"Migration Status": "no rows"})
    evidence = {"Migration Status": latest["status"], "Migration": latest["migration_name"],
                "Executed At": latest["executed_at"].isoformat() if latest["executed_at"] else None,
                "Execution Time ms": latest["execution_time_ms"]}
    if latest["status"] != "success":
        evidence["Error"] = mask(latest["error_message"])
        raise CheckFailed(f"Migration Status: expected 'success', found {latest['status']!r} for "
                          f"{latest['migration_name']} ({evidence['Error'] or 'no error message'}). Do not start "
                          "the bot on this schema: read the runner's output, fix the cause and re-run the "
                          f"migration, {ROLLBACK}.", evidence)
    if not latest["migration_name"].startswith(rules["name_prefix"]):
        raise CheckFailed(f"Migration Status: the latest migration is {latest['migration_name']}, expected "
                          f"{rules['name_prefix']}...: another migration ran after it, or this one was recorded "
                          "under another name. Check which migrations ran (SELECT * FROM schema_migrations).",
                          evidence)
    problems = column_problems(columns, expected["tables"].get(table, {}).get("columns", []))
    if problems:
        raise CheckFailed(f"{table} columns differ from v0.7.0's: {'; '.join(problems)}. Later migrations and the "
                          "runner write to it: alter it to v0.7.0's definition.", evidence)
    return evidence


