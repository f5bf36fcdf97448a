"""What v0.7.0 must leave behind (checklists/v0.7.0-expected.toml) and the helpers the postdeploy checks
share to compare with it: normalised SQL, short lists, a table's columns against the expected ones."""
from __future__ import annotations

import tomllib
from pathlib import Path

import asyncpg

from deploycheck.infra.catalog import ident
from deploycheck.infra.db import readonly
from deploycheck.resources import ROOT

EXPECTED = ROOT / "checklists" / "v0.7.0-expected.toml"
EXAMPLES = 5        # violating rows kept as evidence
ROLLBACK = "or roll back (pytest -m rollback --execute)"


def load_expected(path: Path = EXPECTED) -> dict:
    return tomllib.loads(Path(path).read_text(encoding="utf-8"))


def norm(sql: str | None) -> str:
    return " ".join((sql or "").split())


def short(items, limit: int = 8) -> str:
    items = list(items)
    return ", ".join(map(str, items[:limit])) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


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


def column_problems(found: list[dict], wanted: list[dict]) -> list[str]:
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


def describe_columns(found: list[dict]) -> str:
    return ", ".join(f"{c['name']} {c['type']}{' NOT NULL' if c['not_null'] else ''}" for c in found)


