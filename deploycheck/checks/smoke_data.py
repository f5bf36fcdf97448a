"""The smoke tests' own data: every product, content, category and voucher a run creates is named with the
prefix (`DCSMOKE-<run>-...`), products are marked `[DEPLOYCHECK TEST]`, and `cleanup()` removes all of it,
plus the orders that touched it; call it in a `finally`."""
from __future__ import annotations

import secrets

import asyncpg

TEST_MARK = "[DEPLOYCHECK TEST]"


class SmokeRun:
    """Names for one run's test data; all begin with the prefix, which is how cleanup() finds them."""

    def __init__(self, prefix: str = "DCSMOKE-"):
        if len(prefix) < 4:
            raise ValueError(f"test data prefix {prefix!r} is too short to be safe to delete by")
        self.prefix, self.id = prefix, secrets.token_hex(3).upper()

    def code(self, what: str) -> str:
        return f"{self.prefix}{self.id}-{what}"



async def create_test_product(db: asyncpg.Connection, run: SmokeRun, what: str, contents: int = 0,
                              active: bool = True, price_rupiah: int = 10000) -> dict:
    """A marked test product written directly (so 11.4–11.6 do not depend on 11.3), stock = contents."""
    code, name = run.code(what), f"{TEST_MARK} {what} {run.id}"
    async with db.transaction():
        product_id = await db.fetchval(
            """INSERT INTO products (code, name, description, price_cents, stock, is_active)
               VALUES ($1, $2, 'created by deploycheck smoke tests; removed automatically', $3, $4, $5)
               RETURNING id""", code, name, price_rupiah * 100, contents, active)
        items = [f"{code}-content-{i}-{secrets.token_hex(4)}" for i in range(1, contents + 1)]
        if items:
            await db.executemany("INSERT INTO product_contents (product_id, content) VALUES ($1, $2)",
                                 [(product_id, c) for c in items])
    return {"id": product_id, "code": code, "name": name, "contents": items, "price_cents": price_rupiah * 100}


async def cleanup(db: asyncpg.Connection, prefix: str = "DCSMOKE-", user_telegram_ids=()) -> dict:
    """Remove every smoke test's data: orders touching test products or vouchers (with their items and
    payments), the products (contents cascade), the vouchers, test categories no other product uses,
    and, in a rehearsal, the fake users. audit_log rows are kept: an audit trail is not test data."""
    if len(prefix) < 4:
        raise ValueError(f"refusing to clean up by the prefix {prefix!r}: too short")
    like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    async with db.transaction():
        products = [r["id"] for r in await db.fetch("SELECT id FROM products WHERE code LIKE $1", like)]
        coupons = [r["id"] for r in await db.fetch("SELECT id FROM coupons WHERE code LIKE $1", like)]
        orders = await db.fetchval(
            """WITH doomed AS (
                   SELECT order_id AS id FROM order_items WHERE product_id = ANY($1::int[])
                   UNION SELECT id FROM orders WHERE coupon_id = ANY($2::int[]))
               , gone AS (DELETE FROM orders WHERE id IN (SELECT id FROM doomed) RETURNING 1)
               SELECT count(*) FROM gone""", products, coupons)
        n_products = await db.fetchval(
            "WITH gone AS (DELETE FROM products WHERE id = ANY($1::int[]) RETURNING 1) SELECT count(*) FROM gone",
            products)
        n_coupons = await db.fetchval(
            "WITH gone AS (DELETE FROM coupons WHERE id = ANY($1::int[]) RETURNING 1) SELECT count(*) FROM gone",
            coupons)
        n_categories = await db.fetchval(
            """WITH gone AS (DELETE FROM categories c WHERE (c.name LIKE $1 OR c.slug LIKE lower($1))
                   AND NOT EXISTS (SELECT 1 FROM products p WHERE p.category_id = c.id) RETURNING 1)
               SELECT count(*) FROM gone""", like)
        n_users = 0
        if user_telegram_ids:
            n_users = await db.fetchval(
                "WITH gone AS (DELETE FROM users WHERE telegram_id = ANY($1::bigint[]) RETURNING 1) "
                "SELECT count(*) FROM gone", list(user_telegram_ids))
    return {"orders": orders, "products": n_products, "coupons": n_coupons, "categories": n_categories,
            "users": n_users}
