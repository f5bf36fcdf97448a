"""The release's contract: what its own migration did to the restored copy in 5.3, measured there, not typed.

A release brings its own migration and runner, with objects of its own names and definitions. 5.3 applies
them to the copy 4.3 restored and records the difference here; postdeploy (7.4, 8.x, 13.3, 14.3) then
checks production against it. The contract has the format of an expected-schema file
(checklists/v0.7.0-expected.toml, the bundled migration's): `python -m deploycheck expected ID` writes it
as one, and `--expected FILE` gives one where no rehearsal ran in this deployment. So one set of checks
reads all three.

Objects named after the moment they were made (bot-auto-order's runner makes `<table>_backup_<YYYYmmdd_HHMMSS>`
tables) are kept under their pattern: production's copies are made at another moment.
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import asyncpg
import tomllib

from deploycheck.checks.expected import EXPECTED, load_expected, table_columns
from deploycheck.checks.performance import indexes_usable
from deploycheck.failure import CheckFailed
from deploycheck.infra.catalog import (constraints_named, count_indexes_with_prefix, diff, ident, index_keys,
                                       row_counts, snapshot)
from deploycheck.infra.db import readonly

MOMENT = re.compile(r"_(?:\d{8}_\d{6}|\d{14})(?=$|[^0-9])")
PATTERN = "_<YYYYmmdd_HHMMSS>"


def timeless(text: str) -> str:
    return MOMENT.sub(PATTERN, text)


def timeless_snapshot(found: dict) -> dict:
    return {kind: {timeless(key): timeless(value) for key, value in part.items()} for kind, part in found.items()}


def _table_and_name(key: str) -> tuple[str, str]:
    table, _, name = key.rpartition(".")
    return table, name


async def measure(copy: asyncpg.Connection, before: dict, rows_before: dict[str, int], source: str,
                  prebuilt: tuple[str, ...] = ()) -> dict:
    """The contract: the copy's schema and rows now (after the release's migration) against `before`, its
    snapshot() and row_counts() taken just before the migration ran. `prebuilt`: the migration's own indexes
    that 3.3+indexes built before the backup, so the copy had them before the migration: theirs too."""
    after, rows_after = await snapshot(copy), await row_counts(copy)
    was, has = timeless_snapshot(before), timeless_snapshot(after)
    change = diff(was, has)

    bundled = load_expected()
    contract: dict = {"release": bundled["release"], "schema": "public", "source": source,
                      # the checklist's floors (8.1's four names, 8.2's 25+) are the checklist's, not the release's
                      "constraints": bundled["constraints"], "indexes": bundled["indexes"]}
    made = {kind: [e.partition(":")[2] for e in change["added"] + change["changed"] if e.startswith(kind + ":")]
            for kind in has}
    made["indexes"] += [key for key in has["indexes"] if _table_and_name(key)[1] in prebuilt
                        and key not in made["indexes"]]
    contract["constraint"] = [await _constraint(copy, key, has["constraints"][key]) for key in made["constraints"]]
    contract["index"] = [await _index(copy, key, has["indexes"][key]) for key in made["indexes"]]
    contract["tables"] = {key: {"columns": await columns_of(copy, key)} for key in made["tables"] if PATTERN not in key}
    # Everything else it added or redefined, as the copy prints it: production must have it the same.
    contract["added"] = {kind: {key: has[kind][key] for key in made[kind]}
                         for kind in ("tables", "columns", "functions", "triggers")}
    contract["planned"] = {"changes": change["changed"], "drops": change["dropped"]}
    contract["row_counts"] = {"copy": {t: [rows_before.get(t, 0), rows_after.get(t, 0)]
                                       for t in sorted(set(rows_before) | set(rows_after))}}
    contract["migration"] = {"table": "schema_migrations", "name_prefix": await _latest_migration(copy)}
    contract["query"] = [dict(q, indexes=twins(await indexes_usable(copy, q), after["indexes"]))
                         for q in bundled["query"]]
    # the checklist's own 8.1 and 8.2 queries, on the copy: the numbers 8.x then finds here
    async with readonly(copy):
        contract["on_copy"] = {
            "Audit Log Exists": "audit_log" in has["tables"],
            "Constraints Count": len(await constraints_named(copy, bundled["constraints"]["checklist_names"])),
            "Indexes Count": await count_indexes_with_prefix(copy, bundled["indexes"]["prefix"])}
    return contract


def twins(used: set[str], indexes: dict[str, str]) -> list[str]:
    """The indexes a query's plan used on the copy, and those defined the same but for their name: the planner
    picks either of two equal indexes, so production's plan may use the other (e.g. bot-auto-order's own
    deposits_gateway_order_id_idx beside the migration's idx_deposits_gateway)."""
    shape = {key.rpartition(".")[2]: definition.partition(" ON ")[2] for key, definition in indexes.items()}
    wanted = {shape[name] for name in used if name in shape}
    return sorted(used | {name for name, on in shape.items() if on in wanted})


async def columns_of(conn: asyncpg.Connection, key: str) -> list[dict]:
    """A table's columns by its snapshot key ("table" in public, "schema.table" elsewhere)."""
    schema, _, table = key.rpartition(".")
    return await table_columns(conn, table, schema or "public") or []


async def _constraint(conn: asyncpg.Connection, key: str, definition: str) -> dict:
    table, name = _table_and_name(key)
    kind = await conn.fetchval("SELECT contype FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2",
                               table, name)
    return {"name": name, "table": table, "type": kind.decode() if isinstance(kind, bytes) else kind,
            "definition": definition}


async def _index(conn: asyncpg.Connection, key: str, definition: str) -> dict:
    table, name = _table_and_name(key)
    schema = table.rpartition(".")[0]
    row = await conn.fetchrow("SELECT x.indisunique, pg_get_expr(x.indpred, x.indrelid) AS predicate FROM pg_index x "
                              "WHERE x.indexrelid = to_regclass($1)", ident(f"{schema}.{name}" if schema else name))
    found = {"name": name, "table": table, "columns": index_keys(definition), "definition": definition,
             "unique": bool(row and row["indisunique"])}
    if row and row["predicate"]:
        found["where"] = row["predicate"]
    return found


async def _latest_migration(conn: asyncpg.Connection) -> str | None:
    async with readonly(conn):
        if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
            return None
        return await conn.fetchval("SELECT migration_name FROM schema_migrations "
                                   "ORDER BY executed_at DESC NULLS LAST, id DESC LIMIT 1")


def made(contract: dict) -> list[str]:
    """Every object the release's migration made or redefined on the copy, by name."""
    return [c["name"] for c in contract["constraint"]] + [i["name"] for i in contract["index"]] + \
        [key for part in contract["added"].values() for key in part]


# ---------------------------------------------------------------------------- the checklist's floors
def names_count(accepted, count: int) -> bool:
    """An owner's attestation accepts a number only by naming it: a later release making fewer needs a new one."""
    return bool(accepted) and re.search(rf"(?<!\d){count}(?!\d)", accepted.text) is not None


def floor_problems(contract: dict | None, attestations: dict) -> list[str]:
    """The checklist's own numbers (8.1's 4+, 8.2's 25+ idx_*) and 8.3's audit_log against what the release's
    migration makes on the copy: each shortfall the owner has not accepted (5.3 says so before the window)."""
    if not contract:
        return []
    on_copy, problems = contract["on_copy"], []
    floors = (("8.1", "Constraints Count", contract["constraints"]["min_count"], ""),
              ("8.2", "Indexes Count", contract["indexes"]["min_count"], f" {contract['indexes']['prefix']}* indexes"))
    for item, blank, least, what in floors:
        count = on_copy[blank]
        if count < least and not names_count(attestations.get(item), count):
            problems.append(f"{item} {blank}: the checklist says {least}+{what}, the release's migration makes {count}. "
                            f'If the owner accepts it, attest it naming the number: --attest {item}="owner accepts '
                            f'{count}{what}" (it then passes {item} after the window too)')
    if not on_copy["Audit Log Exists"] and "8.3" not in attestations:
        problems.append('8.3 Audit Log Exists: the checklist says true, the release\'s migration makes no audit_log. '
                        'If the owner accepts it: --attest 8.3="owner accepts no audit_log"')
    return problems


# ---------------------------------------------------------------------------- which expectation a run uses
def expectation(contract: dict | None, file: Path | None, deployment_id: str) -> dict:
    """What postdeploy compares production with: the contract 5.3 measured in this deployment, else the
    expected-schema file given (--expected), else a failure saying how to get one."""
    if contract:
        return contract
    if file:
        try:
            found = tomllib.loads(Path(file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckFailed(f"--expected {file}: no such file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CheckFailed(f"--expected {file} is not a valid expected-schema file: {exc}") from None
        missing = [k for k in ("constraint", "index", "migration") if k not in found]
        if missing:
            raise CheckFailed(f"--expected {file} lacks {', '.join(missing)}: write it with "
                              "`python -m deploycheck expected DEPLOYMENT-ID` from a rehearsal, or follow "
                              f"{EXPECTED.name}")
        return dict(found, source=found.get("source") or f"the file {file}", file=str(file))
    raise CheckFailed(f"no expectation: run preflight for this deployment id ({deployment_id}: 5.3 measures what "
                      "the release's migration does on the restored copy), or give --expected FILE (an expected-"
                      "schema file the release ships, written by `python -m deploycheck expected ID`)")


def source_of(expected: dict) -> str:
    return expected.get("source") or f"{EXPECTED.name} (the bundled migration)"


def stamp(deployment_id: str, at: datetime) -> str:
    return f"the rehearsal of deployment {deployment_id} on the restored copy at {at.isoformat(timespec='seconds')}"
