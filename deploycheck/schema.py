"""Read-only schema and data helpers over pg_catalog, in pgTAP's vocabulary.

Nothing is installed in the database: each helper is one catalog query. Table names may be given as
"table" (schema `public`) or "schema.table". Use them inside `deploycheck.db.readonly(conn)` when
checking production; they only read.

    await has_table(conn, "audit_log")
    await has_constraint(conn, "coupons", "check_used_count_le_max_uses")
    await constraint_def(conn, "coupons", "check_used_count_le_max_uses")   # 'CHECK (...)'
    await col_is_unique(conn, "product_contents", "content")
    snap = await snapshot(conn); diff(snap, await snapshot(conn))
    await row_counts(conn); await table_checksums(conn)
"""
from __future__ import annotations

import asyncpg

# Schemas that are the server's own, never the application's.
SYSTEM = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"


def _split(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return schema or "public", name


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


async def snapshot(conn: asyncpg.Connection) -> dict:
    """The application's schema as plain data (JSON-ready), for before/after comparison:
    {"tables": {"public.users": {"id": "integer not null default nextval(...)", ...}},
     "constraints": {"public.users.users_pkey": "PRIMARY KEY (id)", ...},
     "indexes": {"public.idx_orders_user": "CREATE INDEX ... ", ...},
     "sequences": ["public.users_id_seq", ...]}"""
    tables: dict[str, dict[str, str]] = {}
    for r in await conn.fetch(
            f"""SELECT n.nspname || '.' || c.relname AS t, a.attname,
                       format_type(a.atttypid, a.atttypmod)
                       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                       || COALESCE(' default ' || pg_get_expr(d.adbin, d.adrelid), '') AS def
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
                 WHERE {SYSTEM} AND c.relkind IN ('r', 'p')
                 ORDER BY 1, a.attnum"""):
        cols = tables.setdefault(r["t"], {})
        if r["attname"]:
            cols[r["attname"]] = r["def"]
    constraints = {r[0]: r[1] for r in await conn.fetch(
        f"""SELECT n.nspname || '.' || c.relname || '.' || con.conname, pg_get_constraintdef(con.oid)
              FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {SYSTEM} ORDER BY 1""")}
    indexes = {r[0]: r[1] for r in await conn.fetch(
        f"""SELECT n.nspname || '.' || c.relname, pg_get_indexdef(c.oid)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {SYSTEM} AND c.relkind IN ('i', 'I') ORDER BY 1""")}
    sequences = [r[0] for r in await conn.fetch(
        f"""SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {SYSTEM} AND c.relkind = 'S' ORDER BY 1""")]
    return {"tables": tables, "constraints": constraints, "indexes": indexes, "sequences": sequences}


def diff(before: dict, after: dict) -> dict:
    """What differs between two snapshots: per section, added / removed / changed names."""
    out = {}
    for section in ("tables", "constraints", "indexes"):
        b, a = before.get(section, {}), after.get(section, {})
        out[section] = {"added": sorted(set(a) - set(b)), "removed": sorted(set(b) - set(a)),
                        "changed": sorted(k for k in set(a) & set(b) if a[k] != b[k])}
    b, a = set(before.get("sequences", [])), set(after.get("sequences", []))
    out["sequences"] = {"added": sorted(a - b), "removed": sorted(b - a), "changed": []}
    return out


async def user_tables(conn: asyncpg.Connection, schema: str | None = "public") -> list[str]:
    """Qualified names of the ordinary tables of `schema` (all application schemas when None)."""
    where = "n.nspname = $1" if schema else SYSTEM
    return [r[0] for r in await conn.fetch(
        f"""SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {where} AND c.relkind IN ('r', 'p') ORDER BY 1""", *([schema] if schema else []))]


async def row_counts(conn: asyncpg.Connection, schema: str | None = "public") -> dict[str, int]:
    """Exact count(*) per table: {"users": 50, ...} (schema-qualified names when schema is None)."""
    counts = {}
    for t in await user_tables(conn, schema):
        counts[t.split(".", 1)[1].strip('"') if schema else t] = await conn.fetchval(f"SELECT count(*) FROM {t}")
    return counts


async def table_checksums(conn: asyncpg.Connection, schema: str | None = "public") -> dict[str, str]:
    """Per table, "<rows>:<checksum>" of every row's text form; independent of row order and physical
    layout, so equal data gives equal checksums (a rolled-back migration must leave them all equal)."""
    sums = {}
    for t in await user_tables(conn, schema):
        rows, total = await conn.fetchrow(
            f"SELECT count(*), COALESCE(sum(hashtextextended(r::text, 0)::numeric), 0) FROM {t} AS r")
        sums[t.split(".", 1)[1].strip('"') if schema else t] = f"{rows}:{total}"
    return sums
