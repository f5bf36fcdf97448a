"""Current state (5.1-5.3, and the same queries after the release): row counts, duplicates, stock."""
from __future__ import annotations

import asyncpg

from deploycheck.db import readonly

# The six tables the checklist's 5.1 names, with the blank each fills.
NAMED = {"users": "Users", "products": "Products", "product_contents": "Contents", "orders": "Orders",
         "coupons": "Coupons", "deposits": "Deposits"}
# A content is a sellable credential: evidence names it by a hash prefix, never by its text.
DUPLICATE_CONTENTS = ("SELECT left(md5(content), 12) AS content_md5, count(*) AS copies FROM product_contents "
                      "GROUP BY content HAVING count(*) > 1")
# One aggregate join, not a subquery per product: bounded on a million contents.
STOCK = """
SELECT p.id, p.code, p.stock, coalesce(u.unused, 0) AS unused
FROM products p
LEFT JOIN (SELECT product_id, count(*) AS unused FROM product_contents WHERE is_used = false GROUP BY product_id) u
       ON u.product_id = p.id
"""
STOCK_MISMATCHES = f"SELECT * FROM ({STOCK}) s WHERE s.stock <> s.unused"


def named_counts(counts: dict[str, int]) -> dict:
    """The checklist's six blanks first, then every table."""
    return {**{blank: counts.get(table) for table, blank in NAMED.items()}, "tables": counts}


async def stock_per_product(conn: asyncpg.Connection) -> dict[str, int]:
    """{product id: stock}: postdeploy finds products that had stock before and have none now."""
    async with readonly(conn):
        return {str(r["id"]): r["stock"] for r in await conn.fetch(STOCK)}
