"""Read-only schema and data helpers over pg_catalog, in pgTAP's vocabulary: the one place for them.

Nothing is installed in the database: each helper is a catalog query. Table names may be given as
"table" (schema `public`) or "schema.table". snapshot() and row_counts() read in their own read-only
transaction; use the others inside `deploycheck.infra.db.readonly(conn)` when checking production.

    await has_table(conn, "audit_log")
    await has_constraint(conn, "coupons", "check_used_count_le_max_uses")
    await constraint_def(conn, "coupons", "check_used_count_le_max_uses")   # 'CHECK (...)'
    await col_is_unique(conn, "product_contents", "content")
    before = await snapshot(conn); diff(before, await snapshot(conn))
    await row_counts(conn); await table_checksums(conn)
"""
from __future__ import annotations

import re
from datetime import datetime

import asyncpg

from deploycheck.infra.db import readonly

# Schemas that are the application's: not the server's own (pg_catalog, pg_toast, pg_temp_N, ...).
USER_SCHEMAS = "n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'"
# Tables whose rows are counted once: ordinary and partitioned tables, not their partitions.
TABLES = "c.relkind IN ('r', 'p') AND NOT c.relispartition"


def _split(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return schema or "public", name


def _key(schema: str, table: str) -> str:
    """How snapshots and row counts name a table: "table" in public, "schema.table" elsewhere."""
    return table if schema == "public" else f"{schema}.{table}"


def ident(name: str) -> str:
    """schema.table or table -> a quoted identifier."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


async def has_table(conn: asyncpg.Connection, table: str) -> bool:
    schema, name = _split(table)
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))", schema, name)


async def has_column(conn: asyncpg.Connection, table: str, column: str) -> bool:
    schema, name = _split(table)
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 "
        "AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped)", schema, name, column)


async def has_index(conn: asyncpg.Connection, index: str, table: str | None = None) -> bool:
    """An index of that name (in schema public unless qualified), on `table` if given."""
    schema, name = _split(index)
    sql = ("SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = $2"
           + (" AND tablename = $3)" if table else ")"))
    return await conn.fetchval(sql, schema, name, *([_split(table)[1]] if table else []))


async def indexes_like(conn: asyncpg.Connection, pattern: str = "idx\\_%") -> list[str]:
    """Index names matching a LIKE pattern (default: the checklist's idx_* indexes), sorted."""
    return [r[0] for r in await conn.fetch(
        "SELECT indexname FROM pg_indexes WHERE indexname LIKE $1 ORDER BY indexname", pattern)]


async def count_indexes_with_prefix(conn: asyncpg.Connection, prefix: str, schema: str = "public") -> int:
    """The checklist's 8.2 count: the indexes of `schema` whose name starts with `prefix` (taken literally)."""
    pattern = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    return await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname LIKE $2",
                               schema, pattern)


async def constraints_named(conn: asyncpg.Connection, names: list[str]) -> list[str]:
    """The checklist's 8.1 query: which of these constraint names pg_constraint has."""
    return [r[0] for r in await conn.fetch("SELECT conname FROM pg_constraint WHERE conname = ANY($1::text[])", names)]


async def has_constraint(conn: asyncpg.Connection, table: str, constraint: str) -> bool:
    return await constraint_def(conn, table, constraint) is not None


async def constraint_def(conn: asyncpg.Connection, table: str, constraint: str) -> str | None:
    """pg_get_constraintdef of the named constraint on `table`, or None when it is not there."""
    schema, name = _split(table)
    return await conn.fetchval(
        "SELECT pg_get_constraintdef(con.oid) FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND con.conname = $3",
        schema, name, constraint)


async def col_is_unique(conn: asyncpg.Connection, table: str, columns: str | list[str]) -> bool:
    """True when a unique index (a UNIQUE/PRIMARY KEY constraint, or a plain unique index) covers exactly
    these columns with no WHERE clause: what makes a duplicate impossible."""
    schema, name = _split(table)
    wanted = [columns] if isinstance(columns, str) else list(columns)
    rows = await conn.fetch(
        """SELECT array_agg(a.attname ORDER BY k.ord) AS cols
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
            WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indpred IS NULL
            GROUP BY i.indexrelid""", schema, name)
    return any(sorted(r["cols"]) == sorted(wanted) for r in rows)


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


async def snapshot(conn: asyncpg.Connection) -> dict:
    """The schema as flat {kind: {key: definition}} maps, JSON-ready: what preflight records under 5.1
    "schema" and the diff compares. Keys: table, table.column, table.constraint, table.index,
    function(arguments), table.trigger (tables and functions outside public as schema.name). NOT NULL lives in the column (PostgreSQL 18 also lists it as a
    constraint; left out so the shape does not depend on the server version)."""
    async with readonly(conn):
        tables = await conn.fetch(f"""
            SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_SCHEMAS}""")
        columns = await conn.fetch(f"""
            SELECT n.nspname, c.relname, a.attname,
                   format_type(a.atttypid, a.atttypmod)
                   || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                   || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') AS definition
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_SCHEMAS}""")
        constraints = await conn.fetch(f"""
            SELECT n.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid) AS definition
            FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE con.contype <> 'n' AND {USER_SCHEMAS}""")
        indexes = await conn.fetch(f"""
            SELECT n.nspname, t.relname, i.relname AS index, pg_get_indexdef(i.oid) AS definition
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace WHERE {USER_SCHEMAS}""")
        # An extension's own functions (pgcrypto's) are the extension's, not the application's schema.
        functions = await conn.fetch(f"""
            SELECT n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                   pg_get_functiondef(p.oid) AS definition
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE p.prokind IN ('f', 'p') AND {USER_SCHEMAS} AND NOT EXISTS (
                SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                AND d.deptype = 'e')""")
        triggers = await conn.fetch(f"""
            SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid) AS definition
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE NOT t.tgisinternal AND {USER_SCHEMAS}""")
    kinds = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "f": "foreign table"}
    return {
        "tables": {_key(r[0], r[1]): kinds[r[2].decode() if isinstance(r[2], bytes) else r[2]] for r in tables},
        "columns": {f"{_key(r[0], r[1])}.{r[2]}": r[3] for r in columns},
        "constraints": {f"{_key(r[0], r[1])}.{r[2]}": r[3] for r in constraints},
        "indexes": {f"{_key(r[0], r[1])}.{r[2]}": r[3] for r in indexes},
        "functions": {_key(r[0], r[1]): r[2] for r in functions},
        "triggers": {f"{_key(r[0], r[1])}.{r[2]}": r[3] for r in triggers},
    }


KINDS = ("tables", "columns", "constraints", "indexes", "functions", "triggers")


def diff(before: dict, after: dict) -> dict:
    """What differs between two snapshots: added / dropped / changed as "kind:key" entries; a whole
    table added or dropped hides its parts. A kind the earlier snapshot does not have (one recorded
    before deploycheck read functions and triggers) is not compared."""
    out = {"added": [], "dropped": [], "changed": []}
    tables_gone = set(before.get("tables", {})) - set(after.get("tables", {}))
    tables_new = set(after.get("tables", {})) - set(before.get("tables", {}))
    for kind in (k for k in KINDS if k in before):
        was, has = before.get(kind, {}), after.get(kind, {})
        for name in sorted(set(was) | set(has)):
            owner = name if kind in ("tables", "functions") else name.rsplit(".", 1)[0]
            if name not in was:
                if kind == "tables" or owner not in tables_new:
                    out["added"].append(f"{kind}:{name}")
            elif name not in has:
                if kind == "tables" or owner not in tables_gone:
                    out["dropped"].append(f"{kind}:{name}")
            elif was[name] != has[name]:
                out["changed"].append(f"{kind}:{name}")
    return out


async def user_tables(conn: asyncpg.Connection, schema: str | None = "public") -> list[str]:
    """The tables of `schema` (of every application schema when None) as quote_ident'ed "schema.table",
    sorted; partitions are left out (their parent's rows include theirs)."""
    where = "n.nspname = $1" if schema else USER_SCHEMAS
    return [r[0] for r in await conn.fetch(
        f"""SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {where} AND {TABLES} ORDER BY 1""", *([schema] if schema else []))]


async def row_counts(conn: asyncpg.Connection, tables: list[str] | None = None,
                     created_before: datetime | None = None) -> dict[str, int]:
    """Exact row counts, one set-based query: every table (keys as snapshot()'s), or the given ones.
    With created_before, rows whose created_at is later are not counted (tables without it count all)."""
    async with readonly(conn):
        if tables is None:
            tables = [_key(r[0], r[1]) for r in await conn.fetch(f"""
                SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE {TABLES} AND {USER_SCHEMAS} ORDER BY 1, 2""")]
        present = {}
        for name in tables:
            oid = await conn.fetchval("SELECT to_regclass($1)::oid", ident(name))
            if oid is None:
                continue
            dated = created_before is not None and await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1 AND attname = 'created_at' "
                "AND NOT attisdropped)", oid)
            present[name] = dated
        if not present:
            return {}
        parts = [f"SELECT {i} AS i, count(*) AS n FROM {ident(name)}"
                 + (" WHERE created_at IS NULL OR created_at <= $1" if dated else "")
                 for i, (name, dated) in enumerate(present.items())]
        args = [created_before] if any(present.values()) else []
        rows = await conn.fetch(" UNION ALL ".join(parts), *args)
    names = list(present)
    return {names[r["i"]]: r["n"] for r in rows}


async def table_checksums(conn: asyncpg.Connection, schema: str | None = "public") -> dict[str, str]:
    """Per table, "<rows>:<checksum>" of every row's text form; independent of row order and physical
    layout, so equal data gives equal checksums. Keys: the table's name, or user_tables()' "schema.table"
    when schema is None."""
    sums = {}
    for t in await user_tables(conn, schema):
        rows, total = await conn.fetchrow(
            f"SELECT count(*), COALESCE(sum(hashtextextended(r::text, 0)::numeric), 0) FROM {t} AS r")
        sums[t.split(".", 1)[1].strip('"') if schema else t] = f"{rows}:{total}"
    return sums
