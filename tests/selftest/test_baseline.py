"""The v0.6 baseline: the schema is production's (names exactly as the facts file has them), the data
is deterministic, and each kind of dirty data the generator reports is really in the database."""
from __future__ import annotations

import asyncpg
import pytest

from deploycheck.infra import catalog as schema
from deploycheck.infra.targets import baseline_generator

generator = baseline_generator()

# Facts file, "The database before v0.7.0": constraint names a v0.6 database has.
V06_CONSTRAINTS = [
    ("users", "users_pkey"), ("users", "users_telegram_id_key"), ("categories", "categories_slug_key"),
    ("products", "products_code_key"), ("products", "products_category_id_fkey"),
    ("product_contents", "product_contents_product_id_fkey"),
    ("product_contents", "product_contents_used_by_order_id_fkey"),
    ("reply_templates", "reply_templates_label_key"), ("coupons", "coupons_code_key"),
    ("coupons", "coupons_discount_type_check"), ("orders", "orders_status_check"),
    ("orders", "orders_user_id_fkey"), ("orders", "orders_coupon_id_fkey"),
    ("order_items", "order_items_order_id_fkey"), ("order_items", "order_items_product_id_fkey"),
    ("payments", "payments_status_check"), ("payments", "payments_order_id_gateway_order_id_key"),
    ("deposits", "deposits_status_check"), ("deposits", "deposits_user_id_fkey"),
    ("telemetry_daily", "telemetry_daily_date_key"), ("product_terms", "product_terms_product_id_fkey"),
    ("product_term_notifications", "product_term_notifications_order_id_product_id_key"),
]
V06_INDEXES = ["idx_products_category", "idx_orders_user", "idx_product_contents_product",
               "idx_product_contents_unused", "idx_payments_gateway"]
RUNTIME_TABLES = ["broadcast_jobs", "broadcast_job_targets", "payment_message_logs", "admin_custom_configs"]
RUNTIME_COLUMNS = [("users", c) for c in ("bank_id", "is_verified", "display_name", "whatsapp_number", "is_blocked",
                                          "bot_blocked")] + \
                  [("deposits", c) for c in ("gateway_order_id", "payable_cents", "fee_cents", "expires_at",
                                             "updated_at", "completed_at")]

# Each dirty kind, as a query counting the rows the generator says it made.
DIRTY_SQL = {
    "dirty_duplicate_contents_both_unused":
        "SELECT count(*) - count(DISTINCT content) FROM product_contents WHERE content IN "
        "(SELECT content FROM product_contents GROUP BY content HAVING count(*) > 1 AND bool_and(is_used = false))",
    "dirty_duplicate_contents_used_unused":
        "SELECT count(*) FROM (SELECT content FROM product_contents GROUP BY content "
        "HAVING count(*) FILTER (WHERE is_used) = 1 AND count(*) FILTER (WHERE is_used = false) = 1) d",
    "dirty_duplicate_contents_both_used":
        "SELECT count(*) FROM (SELECT content FROM product_contents GROUP BY content "
        "HAVING count(*) FILTER (WHERE is_used) = 2 AND count(DISTINCT product_id) = 2) d",
    "dirty_stock_off":
        "SELECT count(*) FROM products p WHERE EXISTS (SELECT 1 FROM product_contents c WHERE c.product_id = p.id) "
        "AND p.stock <> (SELECT count(*) FROM product_contents c WHERE c.product_id = p.id AND c.is_used = false)",
    "dirty_stock_without_contents":
        "SELECT count(*) FROM products p WHERE p.stock > 0 "
        "AND NOT EXISTS (SELECT 1 FROM product_contents c WHERE c.product_id = p.id)",
    "dirty_coupons_over_max_uses": "SELECT count(*) FROM coupons WHERE used_count > max_uses",
    "dirty_coupons_null_used_count": "SELECT count(*) FROM coupons WHERE used_count IS NULL",
    "dirty_used_contents_null_used_at": "SELECT count(*) FROM product_contents WHERE is_used AND used_at IS NULL",
    "dirty_unused_contents_with_order":
        "SELECT count(*) FROM product_contents WHERE is_used = false AND used_by_order_id IS NOT NULL",
    "dirty_contents_is_used_null": "SELECT count(*) FROM product_contents WHERE is_used IS NULL",
    "dirty_zero_amount_deposits": "SELECT count(*) FROM deposits WHERE amount_cents = 0",
    "dirty_zero_quantity_order_items": "SELECT count(*) FROM order_items WHERE quantity = 0",
    "dirty_duplicate_term_submissions":
        "SELECT count(*) - count(DISTINCT (order_id, product_id, telegram_user_id)) FROM product_term_submissions",
}


@pytest.fixture
async def conn(fresh_db):
    c = await asyncpg.connect(fresh_db)
    yield c
    await c.close()


async def test_schema_is_v06_with_runtime_parts(conn):
    counts = await generator.generate(conn, scale=1)
    for table, name in V06_CONSTRAINTS:
        assert await schema.has_constraint(conn, table, name), f"{table}.{name} missing from the v0.6 baseline"
    assert sorted(await schema.indexes_like(conn)) == sorted(V06_INDEXES)
    for table in RUNTIME_TABLES:
        assert await schema.has_table(conn, table)
    for table, column in RUNTIME_COLUMNS:
        assert await schema.has_column(conn, table, column), f"{table}.{column}"
    assert await schema.has_index(conn, "deposits_gateway_order_id_idx")
    # v0.7.0's objects are not there yet.
    for table, name in [("product_contents", "product_contents_content_key"), ("coupons", "check_used_count_le_max_uses")]:
        assert not await schema.has_constraint(conn, table, name)
    assert not await schema.has_table(conn, "audit_log")
    assert not await schema.col_is_unique(conn, "product_term_submissions", ["order_id", "product_id", "telegram_user_id"])
    assert "'expired'" not in await schema.constraint_def(conn, "deposits", "deposits_status_check")
    # The counts the generator reports are the rows in the database.
    assert {k: v for k, v in counts.items() if not k.startswith("dirty_")} == await schema.row_counts(conn)


async def test_scale_one_is_a_small_shop(conn):
    counts = await generator.generate(conn, scale=1)
    assert (counts["users"], counts["products"], counts["product_contents"], counts["orders"]) == (50, 20, 500, 200)
    statuses = {r[0] for r in await conn.fetch("SELECT DISTINCT status FROM orders")}
    assert statuses == {"pending", "awaiting_payment", "paid", "cancelled", "expired"}
    # Every order has items; paid orders have a completed payment and delivered contents.
    assert await conn.fetchval("SELECT count(*) FROM orders o WHERE NOT EXISTS "
                               "(SELECT 1 FROM order_items i WHERE i.order_id = o.id)") == 0
    assert await conn.fetchval("SELECT count(*) FROM orders o WHERE status = 'paid' AND NOT EXISTS "
                               "(SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.status = 'completed')") == 0
    assert await conn.fetchval("SELECT count(*) FROM orders o WHERE status = 'paid' AND NOT EXISTS "
                               "(SELECT 1 FROM product_contents c WHERE c.used_by_order_id = o.id)") == 0
    for table in ("deposits", "coupons", "product_term_submissions", "product_term_notifications", "telemetry_daily"):
        assert counts[table] > 0, table
    assert await conn.fetchval("SELECT bool_and(price_cents % 100 = 0) FROM products")  # rupiah in cents


async def test_every_dirty_kind_is_present_and_counted(conn):
    counts = await generator.generate(conn, scale=1)
    for kind in generator.DIRTY_KINDS:
        assert counts[kind] > 0, f"{kind}: the generator made none"
        found = await conn.fetchval(DIRTY_SQL[kind])
        assert found == counts[kind], f"{kind}: generator says {counts[kind]}, the database has {found}"
    # The checklist's own pre-flight queries (5.2, 5.3) see them too.
    assert await conn.fetchval("SELECT COUNT(*) FROM (SELECT content, COUNT(*) FROM product_contents "
                               "GROUP BY content HAVING COUNT(*) > 1) dups") > 0
    assert await conn.fetchval("SELECT COUNT(*) FROM products p WHERE p.stock != (SELECT COUNT(*) FROM "
                               "product_contents pc WHERE pc.product_id = p.id AND pc.is_used = FALSE)") > 0


async def test_clean_data_has_no_dirty_rows(conn):
    counts = await generator.generate(conn, scale=1, dirty=False)
    for kind in generator.DIRTY_KINDS:
        assert counts[kind] == 0
        assert await conn.fetchval(DIRTY_SQL[kind]) == 0, kind


async def test_same_seed_same_data_other_seed_other_data(conn):
    await generator.generate(conn, scale=1, seed=11)
    first = await schema.table_checksums(conn)
    await generator.generate(conn, scale=1, seed=11, clean=True)
    assert await schema.table_checksums(conn) == first
    await generator.generate(conn, scale=1, seed=12, clean=True)
    assert await schema.table_checksums(conn) != first


async def test_bot_never_ran_has_no_runtime_parts(conn):
    await generator.generate(conn, scale=1, bot_ran=False)
    for table in RUNTIME_TABLES:
        assert not await schema.has_table(conn, table)
    for table, column in RUNTIME_COLUMNS:
        assert not await schema.has_column(conn, table, column), f"{table}.{column}"
    assert not await schema.has_index(conn, "deposits_gateway_order_id_idx")


async def test_refuses_a_database_that_is_not_empty(conn):
    await generator.generate(conn, scale=1)
    with pytest.raises(generator.GeneratorError, match="expected an empty database"):
        await generator.generate(conn, scale=1)
