"""The first 24 hours (15.x): queries whose rows are the problems (zero rows pass), and the rules that
compare a monitor run with what preflight measured before the release."""
from __future__ import annotations

import json
import statistics
from datetime import datetime, timezone

import asyncpg

from deploycheck.infra.db import readonly
from deploycheck.checks.performance import query_args

# 15.1: long transactions, sessions idle inside a transaction, sessions waiting on a lock.
LONG_TRANSACTIONS = """
SELECT pid, usename, application_name, state, now() - xact_start AS running, left(query, 200) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
  AND ((state = 'idle in transaction' AND now() - state_change > interval '1 minute')
       OR now() - xact_start > interval '5 minutes')
"""
BLOCKED = """
SELECT pid, usename, pg_blocking_pids(pid) AS blocked_by, now() - query_start AS waiting, left(query, 200) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND cardinality(pg_blocking_pids(pid)) > 0
"""
# 15.3: orders awaiting payment whose payment has expired (or, without a payment, older than a day).
# {since} bounds it to orders created since the release: older stuck ones were there before and are evidence.
STUCK_ORDERS = """
SELECT o.id, o.status, o.created_at, max(p.expires_at) AS expires_at
FROM orders o LEFT JOIN payments p ON p.order_id = o.id
WHERE o.status IN ('pending', 'awaiting_payment') AND o.created_at >= {since}
GROUP BY o.id
HAVING coalesce(max(p.expires_at), o.created_at + interval '1 day') < now() - interval '5 minutes'
"""
ORDERS_SINCE = """
SELECT count(*) AS created, count(*) FILTER (WHERE status = 'paid') AS paid
FROM orders WHERE created_at >= $1
"""
# 15.8: a voucher used more than allowed, or counting fewer uses than the paid orders placed with it since
# the release ({since}). Older orders are history: the migration clamped overused vouchers and audited it.
VOUCHERS = """
SELECT c.id, c.code, c.used_count, c.max_uses, count(o.id) AS paid_orders_since_release
FROM coupons c LEFT JOIN orders o ON o.coupon_id = c.id AND o.status = 'paid' AND o.created_at >= {since}
GROUP BY c.id
HAVING c.used_count IS NULL OR c.used_count < 0 OR (c.max_uses IS NOT NULL AND c.used_count > c.max_uses)
    OR c.used_count < count(o.id)
"""
TELEMETRY_TODAY = "SELECT date, total_users, total_transactions, total_failures FROM telemetry_daily WHERE date = current_date"
TELEMETRY_BEFORE = "SELECT count(*) > 0 FROM telemetry_daily WHERE date < $1"
ORDERS_TODAY = ("SELECT status, count(*) AS orders, sum(total_price_cents) / 100 AS rupiah FROM orders "
                "WHERE created_at >= date_trunc('day', now()) GROUP BY status ORDER BY status")
ADMIN_ACTIONS_SINCE = "SELECT count(*) FROM audit_log WHERE coalesce(\"timestamp\", created_at) >= $1"


def window(downtime_ended: datetime, now: datetime | None = None) -> str:
    """The checklist's monitoring window this run falls in, counted from the end of the downtime (10.5)."""
    hours = ((now or datetime.now(timezone.utc)) - downtime_ended).total_seconds() / 3600
    if hours < 1:
        return "Hour 1"
    if hours < 6:
        return "Hour 2-6"
    if hours < 24:
        return "Hour 6-24"
    return "after 24 hours"


SMOKE_DATA = "DCSMOKE-"  # the smoke tests' own test data (checks.smoke.SmokeOptions.prefix)


def provoked(line) -> bool:
    """An error the smoke tests caused on purpose (11.3 offers a duplicate product code; the bot logs its
    refusal as an ERROR): it names their marked test data. Listed apart, never counted as the bot's own."""
    return SMOKE_DATA in line.text


def own_errors(lines) -> list:
    return [line for line in lines if line.level == "ERROR" and not provoked(line)]


def errors_per_hour(lines, since: datetime, now: datetime | None = None) -> float:
    hours = max(((now or datetime.now(timezone.utc)) - since).total_seconds() / 3600, 1 / 60)
    return sum(1 for line in own_errors(lines) if line.time >= since) / hours


def spike(current_per_hour: float, baseline_per_hour: float, floor: float = 3.0, factor: float = 2.0) -> bool:
    """A spike: above both a small absolute floor and `factor` times the rate before the release."""
    return current_per_hour > max(floor, factor * baseline_per_hour)


def slower(now_ms: float, before_ms: float, factor: float = 2.0, slack_ms: float = 50.0) -> bool:
    """A critical query got slower: more than `factor` times preflight's time and more than `slack_ms` worse
    (tiny queries jitter by milliseconds)."""
    return now_ms > max(factor * before_ms, before_ms + slack_ms)


async def timing_ms(conn: asyncpg.Connection, query: dict, runs: int = 3) -> float | None:
    """Median execution time of a critical query (checklists/v0.7.0-expected.toml); None where it cannot run
    yet (a table the release adds)."""
    times = []
    for _ in range(runs):
        try:
            async with readonly(conn):
                args = await query_args(conn, query)
                plan = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query['sql']}", *args))[0]
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            return None
        times.append(plan["Execution Time"])
    return round(statistics.median(times), 3)


def since(moment: datetime | str) -> str:
    """A timestamp literal for the {since} of the queries above."""
    return "'-infinity'" if moment == "-infinity" else f"'{moment.isoformat()}'::timestamptz"
