"""Current state (5.1-5.3, and the same queries after the release): row counts, duplicates, stock."""
from __future__ import annotations

import asyncpg

from deploycheck.infra.db import readonly

# The six tables the checklist's 5.1 names, with the blank each fills.
NAMED = {"users": "Users", "products": "Products", "product_contents": "Contents", "orders": "Orders",
         "coupons": "Coupons", "deposits": "Deposits"}
# The same queries before the release (5.2, 5.3: recorded) and after it (12.1, 12.2, 15.10: must be empty).
# A content is a sellable credential: rows name it by a hash prefix and its ids, never by its text.
DUPLICATE_CONTENTS = """
    SELECT left(md5(content), 12) AS content_md5, count(*) AS copies,
           array_agg(id ORDER BY id)::text AS content_ids, array_agg(DISTINCT product_id)::text AS product_ids,
           count(*) FILTER (WHERE is_used) AS used
    FROM product_contents GROUP BY content HAVING count(*) > 1"""
# One aggregate join, not a subquery per product: bounded on a million contents.
STOCK_MISMATCHES = """
    SELECT p.id AS product_id, p.code, p.stock, coalesce(u.unused, 0) AS unused_contents
    FROM products p
    LEFT JOIN (SELECT product_id, count(*) AS unused FROM product_contents WHERE is_used = FALSE
               GROUP BY product_id) u ON u.product_id = p.id
    WHERE p.stock IS DISTINCT FROM coalesce(u.unused, 0)"""


def named_counts(counts: dict[str, int]) -> dict:
    """The checklist's six blanks first, then every table."""
    return {**{blank: counts.get(table) for table, blank in NAMED.items()}, "tables": counts}


async def stock_per_product(conn: asyncpg.Connection) -> dict[str, int]:
    """{product id: stock}: postdeploy finds products that had stock before and have none now."""
    async with readonly(conn):
        return {str(r["id"]): r["stock"] for r in await conn.fetch("SELECT id, stock FROM products")}


async def catalog_of_products(conn: asyncpg.Connection) -> dict[str, dict]:
    """{product id: code, name, stock}: what the migration rehearsal compares before and after."""
    async with readonly(conn):
        return {str(r["id"]): dict(r) for r in await conn.fetch("SELECT id, code, name, stock FROM products")}


def products_to_zero(before: dict[str, dict], after: dict[str, dict]) -> list[dict]:
    """Products in stock before the migration and at zero after it: the owner must accept each by name.
    Measured on the database, so it holds for any runner (the release's own, not only ours)."""
    return [{"id": int(pid), "code": p["code"], "name": p["name"], "old_stock": p["stock"]}
            for pid, p in before.items() if (p["stock"] or 0) > 0 and pid in after and not after[pid]["stock"]]
