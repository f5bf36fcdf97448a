"""Verification (8.1-8.4): the constraints, indexes and audit_log v0.7.0 adds, no rows lost since preflight,
and (under 8.4, beyond the checklist) the schema diff against preflight's snapshot.

Each check takes an asyncpg connection plus what v0.7.0 must leave behind (checks.expected) and, where it
compares, what preflight recorded (5.1 "schema" and "tables", from deploycheck.infra.catalog's snapshot()
and row_counts()). It reads in a read-only transaction, returns evidence (a dict for the report), and
raises CheckFailed whose message says what was expected, what was found and what to do next.
"""
from __future__ import annotations

import re
from datetime import datetime

import asyncpg

from deploycheck.checks.expected import ROLLBACK, column_problems, describe_columns, norm, short, table_columns
from deploycheck.failure import CheckFailed
from deploycheck.infra.catalog import diff, ident, row_counts, snapshot
from deploycheck.infra.db import readonly

# 5.1's blanks, for a preflight record without the "tables" dict.
BLANK_TABLES = {"Users": "users", "Products": "products", "Contents": "product_contents", "Orders": "orders",
                "Coupons": "coupons", "Deposits": "deposits"}


def missing_preflight(item: str, what: str, deployment_id: str) -> CheckFailed:
    return CheckFailed(
        f"no preflight record of {what} (item {item}) for deployment {deployment_id}: run "
        f"`pytest -m preflight --deployment-id {deployment_id}` first (same --reports-dir), before the migration, "
        "then run postdeploy again. Without it nothing shows what the migration changed.")


def preflight(recorded, item: str, key: str, deployment_id: str):
    """What preflight recorded under item/key in this deployment, or a failure saying to run it."""
    found = recorded(item)
    if not found:
        raise missing_preflight(item, key, deployment_id)
    if key == "tables" and "tables" not in found:  # an older 5.1: only its six blanks
        blanks = {table: found[blank] for blank, table in BLANK_TABLES.items() if isinstance(found.get(blank), int)}
        if blanks:
            return blanks
    if key not in found:
        raise missing_preflight(item, key, deployment_id)
    return found[key]


# ---------------------------------------------------------------------------- 8.1 constraints
async def check_constraint(conn: asyncpg.Connection, expected: dict, schema: str = "public") -> dict:
    """One expected constraint: on its table, of its type, with its definition, validated."""
    name, table = expected["name"], expected["table"]
    async with readonly(conn):
        found = await conn.fetchrow("""
            SELECT con.contype, pg_get_constraintdef(con.oid) AS definition, con.convalidated
            FROM pg_constraint con JOIN pg_class t ON t.oid = con.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE n.nspname = $1 AND t.relname = $2 AND con.conname = $3""", schema, table, name)
        elsewhere = [] if found else [r[0] for r in await conn.fetch(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE conname = $1", name)]
        as_index = None if found else await conn.fetchval(
            "SELECT pg_get_indexdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'i'", schema, name)
    want = expected["definition"]
    head = f"constraint {name} on {table}: expected {want}"
    if not found:
        if elsewhere:
            hint = f"it exists on {', '.join(elsewhere)} instead"
        elif as_index:
            hint = f"only an index of that name exists ({as_index}), which the checklist's pg_constraint query does not count"
        else:
            hint = "it does not exist"
        raise CheckFailed(f"{head}, but {hint}. The migration did not apply it: read its output (7.4) and "
                          f"schema_migrations (14.3), fix and re-run scripts/run_migration.py, {ROLLBACK}.",
                          {name: "missing"})
    definition = found["definition"]
    evidence = {name: definition}
    if not found["convalidated"]:
        raise CheckFailed(f"{head}, found it NOT VALID: rows that were there before were never checked. Run "
                          f"ALTER TABLE {table} VALIDATE CONSTRAINT {name} (it fails on the violating rows), "
                          f"{ROLLBACK}.", evidence)
    kind = found["contype"].decode() if isinstance(found["contype"], bytes) else found["contype"]
    if kind != expected["type"] or norm(definition) != norm(want):
        raise CheckFailed(f"{head}, found {definition}. A different definition lets through rows v0.7.0 refuses, "
                          "or refuses rows the bot writes: drop it and add it as the migration defines it, "
                          f"{ROLLBACK}.", evidence)
    return evidence


async def check_constraint_count(conn: asyncpg.Connection, expected: dict) -> dict:
    """The checklist's own 8.1 query: the four names in pg_constraint, "should be 4+"."""
    names = expected["constraints"]["checklist_names"]
    async with readonly(conn):
        found = [r[0] for r in await conn.fetch(
            "SELECT conname FROM pg_constraint WHERE conname = ANY($1::text[])", names)]
    evidence = {"Constraints Count": len(found)}
    least = expected["constraints"]["min_count"]
    if len(found) < least:
        missing = sorted(set(names) - set(found))
        raise CheckFailed(f"Constraints Count: expected {least}+, found {len(found)}; missing {', '.join(missing)}. "
                          f"The migration did not apply them: read its output (7.4), fix and re-run it, {ROLLBACK}.",
                          evidence)
    return evidence


# ---------------------------------------------------------------------------- 8.2 indexes
def index_keys(indexdef: str) -> str:
    """The key list of CREATE INDEX ... USING method (keys) [INCLUDE (...)] [WHERE ...]."""
    match = re.search(r" USING \w+ \(", indexdef)
    if not match:
        return ""
    depth, quoted, start = 1, False, match.end()
    for pos in range(start, len(indexdef)):
        char = indexdef[pos]
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return indexdef[start:pos]
    return ""


INDEX_SQL = """
    SELECT i.relname AS name, t.relname AS table, pg_get_indexdef(i.oid) AS definition, x.indisvalid,
           x.indisready, x.indisunique, pg_get_expr(x.indpred, x.indrelid) AS predicate
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = $1"""


async def check_index(conn: asyncpg.Connection, expected: dict, schema: str = "public") -> dict:
    """One expected index: on its table, with its keys and partial predicate, valid and ready."""
    name, table = expected["name"], expected["table"]
    want_keys, want_where = norm(expected["columns"]), norm(expected.get("where"))
    async with readonly(conn):
        found = await conn.fetchrow(INDEX_SQL + " AND i.relname = $2", schema, name)
        same = [] if found else await conn.fetch(INDEX_SQL + " AND t.relname = $2", schema, table)
    shape = f"({want_keys})" + (f" WHERE {want_where}" if want_where else "")
    head = f"index {name} on {table} {shape}"
    if not found:
        twins = [r["name"] for r in same
                 if norm(index_keys(r["definition"])) == want_keys and norm(r["predicate"]) == want_where]
        hint = f"; an index with the same keys exists as {', '.join(twins)}" if twins else ""
        raise CheckFailed(f"{head}: missing{hint}. Queries on {table} fall back to sequential scans: create it "
                          f"(CREATE INDEX CONCURRENTLY {name} ON {table} {shape}) or re-run the migration, {ROLLBACK}.",
                          {name: "missing"})
    evidence = {name: found["definition"]}
    keys, where = norm(index_keys(found["definition"])), norm(found["predicate"])
    if found["table"] != table or keys != want_keys or where != want_where or \
            (expected.get("unique") and not found["indisunique"]):
        raise CheckFailed(f"{head}: found {found['definition']}. It does not serve the queries it is for: drop it "
                          f"and create it as expected, {ROLLBACK}.", evidence)
    if not (found["indisvalid"] and found["indisready"]):
        raise CheckFailed(f"{head}: found it INVALID (a CREATE INDEX CONCURRENTLY that failed or is still running); "
                          f"the planner ignores it. Run REINDEX INDEX CONCURRENTLY {name}, or drop and create it.",
                          evidence)
    return evidence


async def check_index_count(conn: asyncpg.Connection, expected: dict) -> dict:
    """The checklist's own 8.2 query: idx_* indexes, "should be 25+"."""
    prefix = expected["indexes"]["prefix"]
    pattern = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    async with readonly(conn):
        count = await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname LIKE $2",
                                    expected.get("schema", "public"), pattern)
    evidence = {"Indexes Count": count}
    least = expected["indexes"]["min_count"]
    if count < least:
        raise CheckFailed(f"Indexes Count: expected {least}+ {prefix}* indexes, found {count}. The migration's index "
                          f"phase did not run or did not finish: see the missing ones in this item's cases, create "
                          f"them or re-run the migration, {ROLLBACK}.", evidence)
    return evidence


# ---------------------------------------------------------------------------- 8.3 and tables
async def check_audit_log(conn: asyncpg.Connection, expected: dict) -> dict:
    """8.3: audit_log exists, with the columns v0.7.0 defines."""
    schema = expected.get("schema", "public")
    found = await table_columns(conn, "audit_log", schema)
    if found is None:
        raise CheckFailed("Audit Log Exists: expected true, found false: the migration's audit_log phase did not "
                          f"run. Re-run the migration, {ROLLBACK}.", {"Audit Log Exists": False})
    evidence = {"Audit Log Exists": True, "audit_log columns": describe_columns(found)}
    problems = column_problems(found, expected["tables"]["audit_log"]["columns"])
    if problems:
        raise CheckFailed(f"audit_log exists but its columns differ from v0.7.0's: {'; '.join(problems)}. An older "
                          "or hand-made table was kept (CREATE TABLE IF NOT EXISTS does not change it): "
                          "alter it to v0.7.0's definition before the bot writes to it.", evidence)
    return evidence


# ---------------------------------------------------------------------------- 8.4 row counts
async def quarantined(conn: asyncpg.Connection, rules: dict, since: datetime | None = None) -> dict[str, int] | None:
    """Rows the migration moved to its quarantine table, by the table they came from (None: no such table).
    With since, only rows quarantined after it (an earlier run's rows were already gone at preflight)."""
    table = rules.get("quarantine_table")
    if not table:
        return {}
    source, at = ident(rules["quarantine_source_column"]), rules.get("quarantine_time_column")
    async with readonly(conn):
        if await conn.fetchval("SELECT to_regclass($1)", ident(table)) is None:
            return None
        where, args = (f" WHERE {ident(at)} > $1", [since]) if since and at else ("", [])
        rows = await conn.fetch(f"SELECT {source}::text, count(*) FROM {ident(table)}{where} GROUP BY 1", *args)
    return {r[0]: r[1] for r in rows}


async def check_row_counts(conn: asyncpg.Connection, expected: dict, before: dict[str, int],
                           recorded_at: str | datetime | None = None) -> dict:
    """8.4: users, products, orders exactly as preflight counted them; the tables the cleanup touches
    accounting for the rows it moved to the quarantine table; no other table lost rows unless v0.7.0
    means it to. With recorded_at (preflight's database time), rows created since are not counted."""
    rules = expected["row_counts"]
    exact, accounted, may_shrink = set(rules["exact"]), set(rules.get("accounted", [])), rules.get("may_shrink", {})
    since = datetime.fromisoformat(recorded_at) if isinstance(recorded_at, str) else recorded_at
    tables = sorted(set(before) | exact | accounted)
    now = await row_counts(conn, tables, created_before=since)
    moved = await quarantined(conn, rules, since)
    where = rules.get("quarantine_table", "quarantine")
    counts, problems = {}, []
    for table in tables:
        was, has, kept = before.get(table), now.get(table), (moved or {}).get(table, 0)
        if was is None:
            problems.append(f"{table}: preflight did not count it")
            continue
        if has is None:
            counts[table] = f"{was} -> table missing"
            problems.append(f"{table}: the table is gone ({was} rows before)")
            continue
        counts[table] = f"{was} -> {has}" + (f" + {kept} in {where}" if kept or table in accounted else "")
        if table in exact:
            if has != was:
                problems.append(f"{table}: {was} before, {has} now" + (f" ({kept} quarantined)" if kept else ""))
        elif table in accounted:
            if moved is None and has < was:
                problems.append(f"{table}: {was - has} rows gone and no {where} table to account for them")
            elif has + kept != was:
                problems.append(f"{table}: {was} before, {has} now + {kept} quarantined = {has + kept}")
        elif has + kept < was and table not in may_shrink:
            problems.append(f"{table}: {was - has - kept} of {was} rows lost")
    evidence = {"Row counts match pre-migration": "no" if problems else "yes", "Row counts": counts}
    if since:
        evidence["Counted Rows Created Before"] = since.isoformat()
    if problems:
        raise CheckFailed(f"Row counts match pre-migration: expected yes, found no: {'; '.join(problems)}. Rows were "
                          "lost (or appeared) in the migration: compare with the backup restored in preflight, "
                          f"restore the missing rows from it, {ROLLBACK}.", evidence)
    return evidence


# ---------------------------------------------------------------------------- schema diff (beyond)
def _planned(entry: str, planned: set[str]) -> bool:
    """Planned itself, or part of a table whose drop is planned."""
    kind, _, key = entry.partition(":")
    return entry in planned or (kind != "tables" and f"tables:{key.rsplit('.', 1)[0]}" in planned)


async def check_schema_diff(conn: asyncpg.Connection, expected: dict, before: dict) -> dict:
    """The schema against preflight's snapshot: lists what was added; anything dropped or redefined that
    v0.7.0 does not plan to drop or change fails (the bot's own run-time objects are simply listed)."""
    after = await snapshot(conn)
    found = diff(before, after)
    plan = expected.get("planned", {})
    drops, changes = set(plan.get("drops", [])), set(plan.get("changes", [])) | set(plan.get("drops", []))
    lost = [e for e in found["dropped"] if not _planned(e, drops)]
    redefined = [e for e in found["changed"] if not _planned(e, changes)]
    evidence = {"Schema Added": found["added"], "Schema Dropped": found["dropped"],
                "Schema Changed": found["changed"]}
    if lost or redefined:
        kind_of = lambda e: e.partition(":")[0]
        detail = [f"dropped {e} (was {before[kind_of(e)].get(e.partition(':')[2], '?')})" for e in lost] + \
                 [f"changed {e}: {before[kind_of(e)][e.partition(':')[2]]} -> {after[kind_of(e)][e.partition(':')[2]]}"
                  for e in redefined]
        raise CheckFailed(f"schema diff against preflight's snapshot: {len(lost)} dropped and {len(redefined)} "
                          f"changed that v0.7.0 does not plan to: {short(detail, 6)}. The bot or the data still "
                          "need what was dropped: restore it from the preflight backup, " + ROLLBACK +
                          ". If the release does mean it, add it under [planned] in checklists/v0.7.0-expected.toml.",
                          evidence)
    return evidence


