"""Monitoring checks (15.x), each shown to fail on the fault it exists to catch."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from deploycheck.checks import monitor

from deploycheck.checks.expected import load_expected

from deploycheck.checks import state
from deploycheck.infra.db import violations
from deploycheck.infra.targets import baseline_generator
from deploycheck.infra.service import LogLine

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
async def shop(fresh_db):
    conn = await asyncpg.connect(fresh_db)
    await baseline_generator().generate(conn, scale=0.5, dirty=False)
    yield conn
    await conn.close()


@pytest.mark.parametrize("hours, label", [(0.5, "Hour 1"), (3, "Hour 2-6"), (12, "Hour 6-24"), (30, "after 24 hours")])
def test_window_label(hours, label):
    assert monitor.window(NOW - timedelta(hours=hours), NOW) == label


def test_error_spike_15_2_and_rate_15_6():
    lines = [LogLine(NOW - timedelta(minutes=m), "ERROR", "boom") for m in range(12)]
    rate = monitor.errors_per_hour(lines + [LogLine(NOW, "WARNING", "meh")], NOW - timedelta(hours=1), NOW)
    assert rate == 12
    assert monitor.spike(rate, baseline_per_hour=1.0)          # 12/hour against 1/hour before: a spike
    assert not monitor.spike(rate, baseline_per_hour=10.0)     # the bot was that noisy before the release
    assert not monitor.spike(2, baseline_per_hour=0.0)         # two errors are not a spike


def test_slower_critical_query_15_11():
    assert monitor.slower(300, 100) and not monitor.slower(0.9, 0.3) and not monitor.slower(120, 100)


async def test_stuck_order_15_3(shop):
    since = monitor.since(datetime.now(timezone.utc))
    assert (await violations(shop, monitor.STUCK_ORDERS.format(since=since)))[0] == 0
    order = await shop.fetchval(
        "INSERT INTO orders (user_id, total_price_cents, status) SELECT min(id), 5000000, 'awaiting_payment' "
        "FROM users RETURNING id")
    await shop.execute("UPDATE orders SET created_at = now() WHERE id = $1", order)
    await shop.execute("INSERT INTO payments (order_id, gateway_order_id, method, status, amount_cents, "
                       "total_payment_cents, expires_at) VALUES ($1, 'PKS-STUCK', 'qris', 'waiting', 5000000, "
                       "5000000, now() - interval '20 minutes')", order)
    an_hour_ago = monitor.since(datetime.now(timezone.utc) - timedelta(hours=1))
    count, rows = await violations(shop, monitor.STUCK_ORDERS.format(since=an_hour_ago))
    assert count == 1 and rows[0]["id"] == str(order)


async def test_voucher_over_its_limit_15_8(shop):
    vouchers = monitor.VOUCHERS.format(since=monitor.since(datetime.now(timezone.utc) - timedelta(hours=1)))
    assert (await violations(shop, vouchers))[0] == 0
    code = await shop.fetchval("UPDATE coupons SET used_count = max_uses + 1 WHERE id = "
                               "(SELECT min(id) FROM coupons WHERE max_uses IS NOT NULL) RETURNING code")
    count, rows = await violations(shop, vouchers)
    assert count == 1 and rows[0]["code"] == code


async def test_voucher_counting_fewer_uses_than_orders_since_release_15_8(shop):
    vouchers = monitor.VOUCHERS.format(since=monitor.since(datetime.now(timezone.utc) - timedelta(hours=1)))
    coupon = await shop.fetchval("SELECT min(id) FROM coupons WHERE max_uses IS NULL OR max_uses > 5")
    await shop.execute("UPDATE coupons SET used_count = 0 WHERE id = $1", coupon)
    order = await shop.fetchval("SELECT id FROM orders WHERE status = 'paid' LIMIT 1")
    await shop.execute("UPDATE orders SET coupon_id = $1 WHERE id = $2", coupon, order)
    assert (await violations(shop, vouchers))[0] == 0   # a paid order from before the release is history
    await shop.execute("UPDATE orders SET created_at = now() WHERE id = $1", order)
    assert (await violations(shop, vouchers))[0] == 1   # one since the release that the counter missed


async def test_missing_daily_metrics_15_9(shop):
    await shop.execute("DELETE FROM telemetry_daily WHERE date = current_date")
    assert await shop.fetchrow(monitor.TELEMETRY_TODAY) is None
    # the bot kept daily metrics before the release: 15.9 then wants today's row once the day is 6 hours old
    assert await shop.fetchval(monitor.TELEMETRY_BEFORE, datetime.now(timezone.utc).date())
    await shop.execute("UPDATE orders SET created_at = now() WHERE id = (SELECT id FROM orders LIMIT 1)")
    today = await shop.fetch(monitor.ORDERS_TODAY)       # today's figures come from the orders themselves
    assert today and all(set(r.keys()) == {"status", "orders", "rupiah"} and r["orders"] for r in today)


def test_errors_provoked_by_the_smoke_tests_are_listed_apart_14_1_15_6():
    """11.3 offers a duplicate product code on purpose; the bot logs its refusal as an ERROR naming the test
    data: that line is not the bot's own error. Any other ERROR line still counts."""
    lines = [LogLine(NOW, "ERROR", "[ERROR] Error adding product: Produk dengan kode 'DCSMOKE-61F744-P' sudah ada"),
             LogLine(NOW, "ERROR", "[ERROR] asyncpg.exceptions.UndefinedColumnError: column x")]
    assert [line.text for line in monitor.own_errors(lines)] == [lines[1].text]
    assert monitor.errors_per_hour(lines, NOW - timedelta(hours=1), NOW) == 1


async def test_stock_out_of_sync_15_10(shop):
    assert (await violations(shop, state.STOCK_MISMATCHES))[0] == 0
    await shop.execute("UPDATE products SET stock = stock + 3 WHERE id = (SELECT min(id) FROM products)")
    assert (await violations(shop, state.STOCK_MISMATCHES))[0] == 1


async def test_long_idle_transaction_15_1(fresh_db):
    watcher = await asyncpg.connect(fresh_db)
    holder = await asyncpg.connect(fresh_db)
    try:
        await holder.execute("BEGIN; SELECT 1")
        await watcher.execute("SELECT 1")
        assert (await violations(watcher, monitor.LONG_TRANSACTIONS))[0] == 0  # idle in transaction for < 1 min
        idle_for_two_minutes = monitor.LONG_TRANSACTIONS.replace("interval '1 minute'", "interval '0 seconds'")
        count, rows = await violations(watcher, idle_for_two_minutes)
        assert count == 1 and rows[0]["state"] == "idle in transaction"
    finally:
        await holder.close()
        await watcher.close()


async def test_critical_query_timing_15_11(shop):
    query = next(q for q in load_expected()["query"] if "$1" in q["sql"])
    assert await monitor.timing_ms(shop, query) >= 0
    assert await monitor.timing_ms(shop, {"sql": "SELECT * FROM audit_log_missing"}) is None


async def test_blocked_session_15_1(fresh_db):
    holder, waiter, watcher = [await asyncpg.connect(fresh_db) for _ in range(3)]
    try:
        await holder.execute("CREATE TABLE t (x int)")
        await holder.execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        waiting = asyncio.create_task(waiter.execute("SELECT * FROM t"))
        await asyncio.sleep(0.5)
        count, rows = await violations(watcher, monitor.BLOCKED)
        assert count == 1 and rows[0]["query"] == "SELECT * FROM t"
        await holder.execute("ROLLBACK")
        await waiting
    finally:
        for conn in (holder, waiter, watcher):
            await conn.close()
