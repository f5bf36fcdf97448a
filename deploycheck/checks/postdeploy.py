"""The postdeploy database checks (8.1-8.4, 12.1-12.3, 13.3, 14.3, and the schema diff and stock kept).

Each check takes an asyncpg connection plus what v0.7.0 must leave behind (checklists/v0.7.0-expected.toml)
and, where it compares, what preflight recorded. It reads in a read-only transaction, returns evidence
(a dict for the report), and raises CheckFailed (an AssertionError) whose message says what was
expected, what was found and what to do next. Integrity checks follow dbt: the query returns the
violating rows, zero rows pass, the first rows are the evidence.

What preflight records and these checks compare (5.1 "schema" and "tables") comes from
deploycheck.infra.catalog's snapshot() and row_counts().
"""
from __future__ import annotations

import json
import re
import tomllib
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import asyncpg

from deploycheck import attest
from deploycheck.infra.db import readonly, violations
from deploycheck.infra.catalog import diff, ident, row_counts, snapshot
from deploycheck.checks.state import DUPLICATE_CONTENTS, STOCK_MISMATCHES

EXPECTED = Path(__file__).resolve().parents[2] / "checklists" / "v0.7.0-expected.toml"
EXAMPLES = 5        # violating rows kept as evidence
ROLLBACK = "or roll back (pytest -m rollback --execute)"
# 5.1's blanks, for a preflight record without the "tables" dict.
BLANK_TABLES = {"Users": "users", "Products": "products", "Contents": "product_contents", "Orders": "orders",
                "Coupons": "coupons", "Deposits": "deposits"}


class CheckFailed(AssertionError):
    """A check's finding: the message is for the operator, the evidence goes in the report anyway."""

    def __init__(self, message: str, evidence: dict | None = None):
        super().__init__(message)
        self.evidence = evidence or {}


def load_expected(path: Path = EXPECTED) -> dict:
    return tomllib.loads(Path(path).read_text(encoding="utf-8"))


def norm(sql: str | None) -> str:
    return " ".join((sql or "").split())


def _short(items, limit: int = 8) -> str:
    items = list(items)
    return ", ".join(map(str, items[:limit])) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


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
async def table_columns(conn: asyncpg.Connection, table: str, schema: str = "public") -> list[dict] | None:
    """[{name, type, not_null}] of a table, or None if it does not exist."""
    async with readonly(conn):
        oid = await conn.fetchval("SELECT to_regclass($1)::oid", f"{ident(schema)}.{ident(table)}")
        if oid is None:
            return None
        rows = await conn.fetch("""
            SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attnotnull AS not_null
            FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum""", oid)
    return [dict(r) for r in rows]


def _column_problems(found: list[dict], wanted: list[dict]) -> list[str]:
    have = {c["name"]: c for c in found}
    problems = []
    for col in wanted:
        got = have.get(col["name"])
        if got is None:
            problems.append(f"{col['name']} missing")
        elif got["type"] != col["type"] or bool(got["not_null"]) != bool(col.get("not_null")):
            problems.append(f"{col['name']} is {got['type']}{' NOT NULL' if got['not_null'] else ''}, expected "
                            f"{col['type']}{' NOT NULL' if col.get('not_null') else ''}")
    return problems


def _describe_columns(found: list[dict]) -> str:
    return ", ".join(f"{c['name']} {c['type']}{' NOT NULL' if c['not_null'] else ''}" for c in found)


async def check_audit_log(conn: asyncpg.Connection, expected: dict) -> dict:
    """8.3: audit_log exists, with the columns v0.7.0 defines."""
    schema = expected.get("schema", "public")
    found = await table_columns(conn, "audit_log", schema)
    if found is None:
        raise CheckFailed("Audit Log Exists: expected true, found false: the migration's audit_log phase did not "
                          f"run. Re-run the migration, {ROLLBACK}.", {"Audit Log Exists": False})
    evidence = {"Audit Log Exists": True, "audit_log columns": _describe_columns(found)}
    problems = _column_problems(found, expected["tables"]["audit_log"]["columns"])
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
                          f"changed that v0.7.0 does not plan to: {_short(detail, 6)}. The bot or the data still "
                          "need what was dropped: restore it from the preflight backup, " + ROLLBACK +
                          ". If the release does mean it, add it under [planned] in checklists/v0.7.0-expected.toml.",
                          evidence)
    return evidence


# ---------------------------------------------------------------------------- 12.x integrity
ORPHANS = """
    SELECT 'order_items without product' AS kind, oi.id::text AS row_id, oi.product_id::text AS points_to
    FROM order_items oi WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = oi.product_id)
    UNION ALL
    SELECT 'order_items without order', oi.id::text, oi.order_id::text
    FROM order_items oi WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = oi.order_id)
    UNION ALL
    SELECT 'product_contents without product', pc.id::text, pc.product_id::text
    FROM product_contents pc WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = pc.product_id)
    UNION ALL
    SELECT 'product_contents pointing to a missing order', pc.id::text, pc.used_by_order_id::text
    FROM product_contents pc WHERE pc.used_by_order_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = pc.used_by_order_id)
    UNION ALL
    SELECT 'orders without user', o.id::text, o.user_id::text
    FROM orders o WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id)
    UNION ALL
    SELECT 'payments without order', pm.id::text, pm.order_id::text
    FROM payments pm WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = pm.order_id)"""


async def check_duplicates(conn: asyncpg.Connection) -> dict:
    """12.1: no content twice (each row: content md5 prefix, copies, ids; never the content, a credential)."""
    count, rows = await violations(conn, DUPLICATE_CONTENTS, EXAMPLES)
    evidence = {"Duplicates": count}
    if count:
        evidence["Duplicate examples"] = rows
        raise CheckFailed(f"Duplicates: expected 0, found {count} contents stored more than once (first: content ids "
                          f"{rows[0]['content_ids']}). Each copy can be sold to two customers: resolve them (keep one, "
                          "move the others to the quarantine table) before the bot sells them, " + ROLLBACK + ".",
                          evidence)
    return evidence


async def check_stock_sync(conn: asyncpg.Connection) -> dict:
    """12.2: products.stock equals the product's unused contents, for every product."""
    count, rows = await violations(conn, STOCK_MISMATCHES, EXAMPLES)
    evidence = {"Mismatches": count}
    if count:
        evidence["Mismatch examples"] = rows
        first = ", ".join(f"{r['code']} stock {r['stock']} vs {r['unused_contents']} unused" for r in rows[:3])
        raise CheckFailed(f"Mismatches: expected 0, found {count} products whose stock differs from their unused "
                          f"contents ({first}). The bot shows and sells by products.stock: recount it (UPDATE products "
                          "SET stock = unused contents), then run this check again.", evidence)
    return evidence


async def check_stock_kept(conn: asyncpg.Connection, before: dict, attested=None) -> dict:
    """Beyond the checklist: products that had stock before (preflight 5.3 "stock") and have none now.
    A recount sends admin-typed stock with no contents behind it to zero; that fails unless the 12.2
    attestation (attest.Attestation) names each such product."""
    had = {int(k): int(v) for k, v in before.items() if v is not None and int(v) > 0}
    async with readonly(conn):
        found = await conn.fetch("""
            SELECT b.product_id, p.code, b.before, p.stock AS now,
                   CASE WHEN p.id IS NULL THEN 'product gone' ELSE 'no stock' END AS what
            FROM unnest($1::int[], $2::int[]) AS b(product_id, before)
            LEFT JOIN products p ON p.id = b.product_id
            WHERE coalesce(p.stock, 0) <= 0 ORDER BY b.before DESC, b.product_id""", list(had), list(had.values()))
    count, rows = len(found), [dict(r) for r in found[:20]]
    evidence = {"Products Lost Stock": count}
    if count:
        evidence["Lost stock"] = rows
        listed = _short((f"{r['code'] or r['product_id']} (was {r['before']})" for r in rows), 6)
        lost = [{"code": r["code"], "id": r["product_id"]} for r in found]
        problem = attest.acceptance_problem("12.2", attested, lost)
        if not problem:
            evidence["Lost stock accepted"] = attested.text
            return evidence
        if attested is None:
            raise CheckFailed(f"{count} products had stock before the migration and have none now: {listed}. "
                              "Customers no longer see them for sale; usually an admin typed their stock with no "
                              "contents behind it and v0.7.0 recounts stock from unused contents. Upload their "
                              "contents, or if the owner accepts it, attest it by name in the --attestations file: "
                              + attest.file_entry("12.2", [str(p["code"] or p["id"]) for p in lost]), evidence)
        raise CheckFailed(problem, evidence)
    return evidence


async def check_orphans(conn: asyncpg.Connection) -> dict:
    """12.3: order items without product or order, contents without product or pointing to a missing order,
    orders without user, payments without order."""
    count, rows = await violations(conn, ORPHANS, EXAMPLES)
    evidence = {"Orphans": count}
    if count:
        async with readonly(conn):
            kinds = {r[0]: r[1] for r in await conn.fetch(f"SELECT kind, count(*) FROM ({ORPHANS}) o GROUP BY kind")}
        evidence.update({"Orphans by kind": kinds, "Orphan examples": rows})
        raise CheckFailed(f"Orphans: expected 0, found {count} ({', '.join(f'{n} {k}' for k, n in kinds.items())}). "
                          "A foreign key was dropped, disabled or never validated: restore the referenced rows from "
                          f"the preflight backup and re-add the foreign key, {ROLLBACK}.", evidence)
    return evidence


# ---------------------------------------------------------------------------- 13.3 query plans
def plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def describe_plan(plan: dict) -> str:
    """The scans of a plan: "Index Scan using idx_x on t", "Seq Scan on t"."""
    scans = []
    for node in plan_nodes(plan):
        if "Index Name" in node or "Relation Name" in node:
            text = node["Node Type"]
            if "Index Name" in node:
                text += f" using {node['Index Name']}"
            if "Relation Name" in node:
                text += f" on {node['Relation Name']}"
            scans.append(text + (" (disabled)" if node.get("Disabled") else ""))
    return ", ".join(scans) or plan.get("Node Type", "?")


async def query_args(conn: asyncpg.Connection, query: dict) -> list:
    """A critical query's $1: a real value from its `sample` query, else its `fallback`."""
    if "$1" not in query["sql"]:
        return []
    value = await conn.fetchval(query["sample"]) if query.get("sample") else None
    return [value if value is not None else query.get("fallback")]


async def check_query_plan(conn: asyncpg.Connection, query: dict) -> dict:
    """13.3 for one critical query: the natural plan and timing are recorded (a sequential scan on a small
    table is right); with sequential scans discouraged the plan must use one of the query's indexes."""
    sql, wanted = query["sql"], query["indexes"]
    async with readonly(conn):
        args = await query_args(conn, query)
        natural = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args))[0]
        await conn.execute("SET LOCAL enable_seqscan = off")
        forced = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))[0]
    used = {n["Index Name"] for n in plan_nodes(forced["Plan"]) if "Index Name" in n}
    evidence = {query["name"]: f"{describe_plan(natural['Plan'])}, {natural.get('Execution Time', 0):.2f} ms; "
                               f"seqscan off: {describe_plan(forced['Plan'])}"}
    if not used & set(wanted):
        raise CheckFailed(f"{query['name']}: the plan cannot use {' or '.join(wanted)} (with sequential scans "
                          f"discouraged it is: {describe_plan(forced['Plan'])}). The index is missing, invalid or does "
                          "not match the query (see 8.2): create it with CREATE INDEX CONCURRENTLY as the migration "
                          f"defines it, {ROLLBACK}. Query: {norm(sql)}", evidence)
    return evidence


# ---------------------------------------------------------------------------- 14.3 migration log
def _mask(text: str | None) -> str | None:
    """An error message without the row values PostgreSQL quotes in it (contents are credentials)."""
    if not text:
        return text
    return re.sub(r"=\(.*?\)( |$)", r"=(...)\1", text)[:300]


async def check_migration_log(conn: asyncpg.Connection, expected: dict) -> dict:
    """14.3: the latest schema_migrations row is 001_fix_schema_constraints..., status success."""
    rules, schema = expected["migration"], expected.get("schema", "public")
    table = rules["table"]
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
        evidence["Error"] = _mask(latest["error_message"])
        raise CheckFailed(f"Migration Status: expected 'success', found {latest['status']!r} for "
                          f"{latest['migration_name']} ({evidence['Error'] or 'no error message'}). Do not start "
                          "the bot on this schema: read the runner's output, fix the cause and re-run the "
                          f"migration, {ROLLBACK}.", evidence)
    if not latest["migration_name"].startswith(rules["name_prefix"]):
        raise CheckFailed(f"Migration Status: the latest migration is {latest['migration_name']}, expected "
                          f"{rules['name_prefix']}...: another migration ran after it, or this one was recorded "
                          "under another name. Check which migrations ran (SELECT * FROM schema_migrations).",
                          evidence)
    problems = _column_problems(columns, expected["tables"].get(table, {}).get("columns", []))
    if problems:
        raise CheckFailed(f"{table} columns differ from v0.7.0's: {'; '.join(problems)}. Later migrations and the "
                          "runner write to it: alter it to v0.7.0's definition.", evidence)
    return evidence


# ---------------------------------------------------------------------------- for the thin tests
@contextmanager
def findings(evidence: dict):
    """Within it, a finding (CheckFailed) or a failed query fails the test with the operator's message only,
    the finding's evidence kept for the report."""
    import pytest

    message = None
    try:
        yield evidence
    except CheckFailed as exc:
        evidence.update(exc.evidence)
        message = str(exc)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        message = (f"the check's query failed: {type(exc).__name__}: {_mask(str(exc))}. The schema is not what "
                   "v0.7.0 leaves behind (a table or column missing?), or the check has no read access.")
    if message:  # `from None`: the report shows the operator's message, not a chain of tracebacks
        raise pytest.fail.Exception(message, pytrace=False) from None


async def into(evidence: dict, check) -> dict:
    """Await a check and put its evidence in the item's evidence (a finding fails the test, see findings)."""
    with findings(evidence):
        found = await check
        evidence.update(found)
        return found
