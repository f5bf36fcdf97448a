"""Verification (8.1-8.4): the constraints, indexes and audit_log v0.7.0 adds, no rows lost since preflight,
and (under 8.4, beyond the checklist) the schema diff against preflight's snapshot.

Each check takes an asyncpg connection plus what v0.7.0 must leave behind (checks.expected) and, where it
compares, what preflight recorded (5.1 "schema" and "tables", from deploycheck.infra.catalog's snapshot()
and row_counts()). It reads in a read-only transaction, returns evidence (a dict for the report), and
raises CheckFailed whose message says what was expected, what was found and what to do next.
"""
from __future__ import annotations

from datetime import datetime

import asyncpg

from deploycheck.checks.contract import names_count, source_of, timeless
from deploycheck.checks.expected import ROLLBACK, column_problems, describe_columns, norm, short, table_columns
from deploycheck.failure import CheckFailed
from deploycheck.infra.catalog import (constraints_named, count_indexes_with_prefix, diff, ident, index_keys,
                                       row_counts, snapshot)
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


async def check_constraints(conn: asyncpg.Connection, expected: dict) -> dict:
    """8.1: every constraint the expectation names (what the release's migration added or redefined on the
    copy, or the expected file's), each as check_constraint; and none it dropped still here."""
    return await _each(conn, expected, "constraint", check_constraint, "constraints")


async def _each(conn: asyncpg.Connection, expected: dict, section: str, check, kind: str) -> dict:
    """One case for all the objects of a kind: they are known only once 5.3 ran (in plain pytest, after
    collection), so they cannot be a parametrization; each is in the evidence, each problem in the message."""
    evidence, problems = {}, []
    for wanted in expected.get(section, []):
        try:
            evidence.update(await check(conn, wanted, expected.get("schema", "public")))
        except CheckFailed as exc:
            evidence.update(exc.evidence)
            problems.append(str(exc))
    after = await snapshot(conn)
    for entry in expected.get("planned", {}).get("drops", []):
        gone_kind, _, key = entry.partition(":")
        if gone_kind == kind and any(timeless(k) == key for k in after.get(kind, {})):
            evidence[key] = "still here"
            problems.append(f"{key}: the release's migration drops it ({source_of(expected)}), but it is still here")
    evidence["Expected From"] = source_of(expected)
    if problems:
        more = f" ({len(problems)} problems)" if len(problems) > 1 else ""
        raise CheckFailed("\n".join(problems) + more, evidence)
    return evidence


def floor_problem(blank: str, least: int, what: str, found: int, on_copy: int | None, item: str,
                  accepted) -> str | None:
    """The checklist's own number ("25+") as a floor. A release whose migration makes fewer on the copy too
    passes only when the owner attests the item naming the number they accept."""
    if found >= least:
        return None
    if on_copy is None:  # an expected file: no rehearsal says what the release makes
        return f"{blank}: expected {least}+{what}, found {found}"
    facts = (f"{blank}: the checklist says {least}+{what}, the release's migration makes {on_copy} on the copy "
             f"and {found} here")
    if found < on_copy:
        return f"{facts}: production lacks some the migration made on the copy"
    if names_count(accepted, found):
        return None
    if accepted:
        return f"{facts}; the attestation of {item} does not name {found}, the number it would accept"
    return (f"{facts}. If the owner accepts the release as it is, attest it naming the number: "
            f'--attest {item}="owner accepts {found}{what}"')


async def check_constraint_count(conn: asyncpg.Connection, expected: dict, accepted=None) -> dict:
    """The checklist's own 8.1 query: the four names in pg_constraint, "should be 4+"."""
    names = expected["constraints"]["checklist_names"]
    async with readonly(conn):
        found = await constraints_named(conn, names)
    evidence = {"Constraints Count": len(found)}
    least, on_copy = expected["constraints"]["min_count"], expected.get("on_copy", {}).get("Constraints Count")
    problem = floor_problem("Constraints Count", least, "", len(found), on_copy, "8.1", accepted)
    if problem:
        missing = sorted(set(names) - set(found))
        raise CheckFailed(f"{problem}; missing {', '.join(missing)}. The migration did not apply them: read its "
                          f"output (7.4), fix and re-run it, {ROLLBACK}.", evidence)
    if accepted and len(found) < least:
        evidence["Owner Acceptance"] = accepted.text
    return evidence


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
    # A contract measured on the copy has the whole definition (method, INCLUDE, operator classes) to match.
    if found["table"] != table or keys != want_keys or where != want_where or \
            (expected.get("unique") and not found["indisunique"]) or \
            (expected.get("definition") and norm(found["definition"]) != norm(expected["definition"])):
        wanted = f" where the migration made {expected['definition']} on the copy" if expected.get("definition") else ""
        raise CheckFailed(f"{head}: found {found['definition']}{wanted}. It does not serve the queries it is for: "
                          f"drop it and create it as expected, {ROLLBACK}.", evidence)
    if not (found["indisvalid"] and found["indisready"]):
        raise CheckFailed(f"{head}: found it INVALID (a CREATE INDEX CONCURRENTLY that failed or is still running); "
                          f"the planner ignores it. Run REINDEX INDEX CONCURRENTLY {name}, or drop and create it.",
                          evidence)
    return evidence


async def check_indexes(conn: asyncpg.Connection, expected: dict) -> dict:
    """8.2: every index the expectation names, each as check_index; and none it dropped still here."""
    return await _each(conn, expected, "index", check_index, "indexes")


async def check_index_count(conn: asyncpg.Connection, expected: dict, accepted=None) -> dict:
    """The checklist's own 8.2 query: idx_* indexes, "should be 25+"."""
    prefix = expected["indexes"]["prefix"]
    async with readonly(conn):
        count = await count_indexes_with_prefix(conn, prefix, expected.get("schema", "public"))
    evidence = {"Indexes Count": count}
    least, on_copy = expected["indexes"]["min_count"], expected.get("on_copy", {}).get("Indexes Count")
    problem = floor_problem("Indexes Count", least, f" {prefix}* indexes", count, on_copy, "8.2", accepted)
    if problem:
        raise CheckFailed(f"{problem}. The migration's index phase did not run or did not finish, or the release "
                          f"makes fewer: see this item's other case, create them or re-run the migration, {ROLLBACK}.",
                          evidence)
    if accepted and count < least:
        evidence["Owner Acceptance"] = accepted.text
    return evidence


# ---------------------------------------------------------------------------- 8.3 and tables
async def check_audit_log(conn: asyncpg.Connection, expected: dict, accepted=None) -> dict:
    """8.3: audit_log exists (the checklist's floor), with the columns the release's migration gave it on the
    copy (or the expected file's)."""
    schema = expected.get("schema", "public")
    found = await table_columns(conn, "audit_log", schema)
    if found is None:
        evidence = {"Audit Log Exists": False}
        if expected.get("on_copy", {}).get("Audit Log Exists") is False:
            if accepted:
                return evidence | {"Owner Acceptance": accepted.text}
            raise CheckFailed("Audit Log Exists: the checklist says true; the release's migration makes no audit_log "
                              "on the copy either, and there is none here. If the owner accepts a release without "
                              'it, attest it: --attest 8.3="owner accepts no audit_log"', evidence)
        raise CheckFailed("Audit Log Exists: expected true, found false: the migration's audit_log phase did not "
                          f"run. Re-run the migration, {ROLLBACK}.", evidence)
    evidence = {"Audit Log Exists": True, "audit_log columns": describe_columns(found)}
    wanted = expected.get("tables", {}).get("audit_log")
    problems = column_problems(found, wanted["columns"]) if wanted else []
    if problems:
        raise CheckFailed(f"audit_log exists but its columns differ from the release's ({source_of(expected)}): "
                          f"{'; '.join(problems)}. An older or hand-made table was kept (CREATE TABLE IF NOT EXISTS "
                          "does not change it): alter it to the release's definition before the bot writes to it.",
                          evidence)
    return evidence


async def check_tables(conn: asyncpg.Connection, expected: dict) -> dict:
    """8.3, the other tables the release's migration adds (its tracking table, its backup tables: those named
    after the moment they were made by their pattern), each here with the columns it has on the copy."""
    schema = expected.get("schema", "public")
    here = [timeless(t) for t in (await snapshot(conn))["tables"]]
    evidence, problems = {}, []
    for table in sorted(expected.get("added", {}).get("tables", {})):
        if table not in here:
            evidence[table] = "missing"
            problems.append(f"{table}: missing")
            continue
        evidence[table] = "present"
        wanted = expected.get("tables", {}).get(table)
        in_schema, _, name = table.rpartition(".")
        if wanted and (found := await table_columns(conn, name, in_schema or schema)) is not None:
            if wrong := column_problems(found, wanted["columns"]):
                evidence[table] = describe_columns(found)
                problems.append(f"{table}: {'; '.join(wrong)}")
    evidence["Expected From"] = source_of(expected)
    if problems:
        raise CheckFailed(f"tables the release's migration adds ({source_of(expected)}) are not here as it made "
                          f"them: {short(problems, 6)}. The migration did not run here as it ran on the copy: read "
                          f"its output (7.4), {ROLLBACK}.", evidence)
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
                           recorded_at: str | datetime | None = None, after: dict[str, int] | None = None) -> dict:
    """8.4: users, products, orders exactly as preflight counted them; the tables the cleanup touches
    accounting for the rows it moved to the quarantine table; no other table lost rows unless v0.7.0
    means it to. With recorded_at (preflight's database time), rows created since are not counted.
    Against a contract (rows measured on the copy), see rows_as_on_copy; `after`: counts taken right after
    the migration (7.3), instead of counting now."""
    rules = expected["row_counts"]
    if "copy" in rules:
        return await rows_as_on_copy(conn, rules["copy"], before, recorded_at, after)
    exact, accounted, may_shrink = set(rules["exact"]), set(rules.get("accounted", [])), rules.get("may_shrink", {})
    since = datetime.fromisoformat(recorded_at) if isinstance(recorded_at, str) else recorded_at
    tables = sorted(set(before) | exact | accounted)
    now = after if after is not None else await row_counts(conn, tables, created_before=since)
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
    return _counted(counts, problems, since, "lost (or appeared) in the migration")


async def rows_as_on_copy(conn: asyncpg.Connection, copy: dict[str, list[int]], before: dict[str, int],
                          counted_at: str | datetime | None = None, after: dict[str, int] | None = None) -> dict:
    """8.4 against the release's contract: each table's rows move as the migration moved them on the copy.
    A table it did not shrink there must not shrink here; one it shrank (duplicates removed) may lose as
    many here, plus the rows written to it since the backup (they may be duplicates too). `before`: the
    counts taken in the window with the bot stopped (6.2), so what the running bot did since preflight is
    not loss."""
    since = datetime.fromisoformat(counted_at) if isinstance(counted_at, str) else counted_at
    now = after if after is not None else await row_counts(conn, sorted(before), created_before=since)
    counts, problems = {}, []
    for table in sorted(before):
        was, has = before[table], now.get(table)
        copy_before, copy_after = copy.get(table, [was, was])
        removed = max(0, copy_before - copy_after)
        if has is None:
            counts[table] = f"{was} -> table missing"
            problems.append(f"{table}: the table is gone ({was} rows before; on the copy it kept {copy_after})")
            continue
        counts[table] = f"{was} -> {has}" + (f" (copy: {copy_before} -> {copy_after})" if removed else "")
        allowed = removed + max(0, was - copy_before) if removed else 0
        if was - has > allowed:
            problems.append(f"{table}: {was} before the migration, {has} after: {was - has} rows gone where the "
                            f"migration removed {removed} on the copy" + (f" (and {was - copy_before} were written "
                                                                          "since the backup)" if removed else ""))
    return _counted(counts, problems, since, "lost in the migration beyond what it removed on the rehearsal's copy")


def _counted(counts: dict, problems: list[str], since: datetime | None, how: str) -> dict:
    """8.4's evidence and finding: the counts, and what does not add up."""
    evidence = {"Row counts match pre-migration": "no" if problems else "yes", "Row counts": counts}
    if since:
        evidence["Counted Rows Created Before"] = since.isoformat()
    if problems:
        raise CheckFailed(f"Row counts match pre-migration: expected yes, found no: {'; '.join(problems)}. Rows were "
                          f"{how}: compare with the backup restored in preflight, restore the missing rows from it, "
                          f"{ROLLBACK}.", evidence)
    return evidence


# ---------------------------------------------------------------------------- schema diff (beyond)
def _planned(entry: str, planned: set[str]) -> bool:
    """Planned itself (by its pattern, for names made of a moment), or part of a table whose drop is planned."""
    entry = timeless(entry)
    kind, _, key = entry.partition(":")
    return entry in planned or (kind != "tables" and f"tables:{key.rsplit('.', 1)[0]}" in planned)


async def check_schema_diff(conn: asyncpg.Connection, expected: dict, before: dict) -> dict:
    """The schema against preflight's snapshot: anything dropped or redefined that the release's migration
    did not drop or redefine (on the copy, or in the expected file's [planned]) fails; so does a column,
    function or trigger it added on the copy that is not here as it made it. Other additions are listed,
    not failed: the bot creates tables and columns of its own at run time."""
    after = await snapshot(conn)
    found = diff(before, after)
    plan = expected.get("planned", {})
    drops, changes = set(plan.get("drops", [])), set(plan.get("changes", [])) | set(plan.get("drops", []))
    lost = [e for e in found["dropped"] if not _planned(e, drops)]
    redefined = [e for e in found["changed"] if not _planned(e, changes)]
    here = {kind: {timeless(k): timeless(v) for k, v in part.items()} for kind, part in after.items()}
    unlike = [f"{kind}:{key}" + (" missing" if key not in here.get(kind, {}) else f" is {here[kind][key]}, "
                                 f"the migration made {definition}")
              for kind, made in expected.get("added", {}).items() if kind != "tables"
              for key, definition in made.items() if here.get(kind, {}).get(key) != definition]
    evidence = {"Schema Added": found["added"], "Schema Dropped": found["dropped"],
                "Schema Changed": found["changed"], "Expected From": source_of(expected)}
    if lost or redefined or unlike:
        kind_of = lambda e: e.partition(":")[0]
        detail = [f"dropped {e} (was {before[kind_of(e)].get(e.partition(':')[2], '?')})" for e in lost] + \
                 [f"changed {e}: {before[kind_of(e)][e.partition(':')[2]]} -> {after[kind_of(e)][e.partition(':')[2]]}"
                  for e in redefined] + unlike
        raise CheckFailed(f"schema diff against preflight's snapshot: {len(lost)} dropped and {len(redefined)} "
                          f"changed that the release's migration does not ({source_of(expected)})"
                          + (f", {len(unlike)} of what it adds not here as it made it" if unlike else "")
                          + f": {short(detail, 6)}. The bot or the data still need what was dropped: restore it "
                          f"from the preflight backup, {ROLLBACK}. If the release does mean it, "
                          + ("its migration does it on the rehearsal's copy too (5.3)" if "on_copy" in expected else
                             f"add it under [planned] in {expected.get('file', 'checklists/v0.7.0-expected.toml')}")
                          + ".", evidence)
    return evidence
