"""Post-deployment monitoring (15.1-15.12), repeatable in the first 24 hours (e.g. hourly from a timer).
Each run labels its evidence with the checklist's window, counted from the downtime end (10.5)."""
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from deploycheck.checks import integrity, monitor
from deploycheck.checks.expected import load_expected
from deploycheck.checks.environment import free_bytes
from deploycheck.checks.performance import bot_usage
from deploycheck.infra.db import readonly, violations
from deploycheck.pytest_plugin.findings import into


@pytest.fixture
def released(recorded) -> datetime:
    ended = recorded("10.5").get("Downtime Ended")
    assert ended, ("no downtime end recorded for this deployment: monitoring counts from 10.5; run "
                   "`pytest -m deploy` (or pass the same --deployment-id as the deployment)")
    return datetime.fromisoformat(ended)


@pytest.fixture
def labelled(released, bot_has_run, evidence) -> dict:
    evidence["Window"] = monitor.window(released)
    if bot_has_run:
        evidence["Bot Observed For"] = f"{bot_has_run:.0f} s"
    return evidence


def baseline_errors_per_hour(recorded) -> float:
    before = recorded("1.2").get("Errors Per Hour")
    assert before is not None, "preflight measured no error rate (1.2): run `pytest -m preflight` first"
    return float(before)


@pytest.mark.item("15.1")
async def test_active_transactions(db, labelled):
    long_count, long_rows = await violations(db, monitor.LONG_TRANSACTIONS)
    blocked_count, blocked_rows = await violations(db, monitor.BLOCKED)
    labelled.update({"Long Or Idle Transactions": long_rows, "Blocked Sessions": blocked_rows})
    assert not long_count and not blocked_count, (
        f"{long_count} long or idle-in-transaction session(s) and {blocked_count} blocked session(s): "
        f"{(long_rows + blocked_rows)[:3]}; find the holder (pg_stat_activity) before it stalls orders")


@pytest.mark.item("15.2")
def test_no_error_spike(service, recorded, labelled):
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    rate = monitor.errors_per_hour(service.logs(since), since)
    before = baseline_errors_per_hour(recorded)
    labelled.update({"Errors Last Hour": round(rate, 1), "Errors Per Hour Before": before})
    assert not monitor.spike(rate, before), (f"error spike: {rate:.0f} ERROR lines in the last hour against "
                                             f"{before:.1f}/hour before the release; read the bot's logs")


@pytest.mark.item("15.3")
async def test_customer_orders_processing(db, released, labelled):
    async with readonly(db):
        counts = await db.fetchrow(monitor.ORDERS_SINCE, released)
    stuck, first = await violations(db, monitor.STUCK_ORDERS.format(since=monitor.since(released)))
    before, _ = await violations(db, monitor.STUCK_ORDERS.format(since=monitor.since("-infinity")))
    labelled.update({"Orders Since Release": counts["created"], "Paid Since Release": counts["paid"],
                     "Stuck Orders": stuck, "First Stuck": first, "Stuck Before The Release": before - stuck})
    assert not stuck, (f"{stuck} order(s) still awaiting payment past their expiry, e.g. {first[:3]}: check the "
                       "payment webhook (src.server, port 9000) and the gateway")


@pytest.mark.item("15.4")
async def test_admin_operations_working(db, released, recorded, labelled):
    async with readonly(db):
        actions = await db.fetchval(monitor.ADMIN_ACTIONS_SINCE, released)
    smoke = [i for i in ("11.3", "11.4") if recorded(i)]
    labelled.update({"Audit Entries Since Release": actions, "Admin Smoke Flows Passed": smoke})
    assert actions or smoke, ("no admin operation is known to have worked since the release: no audit_log entry "
                              "and no admin smoke flow (11.3/11.4); run `pytest -m smoke --execute`")


@pytest.mark.item("15.5")
async def test_system_performance(service, host, bot_dir, db, backup_dir, recorded, request, labelled):
    usage = await bot_usage(service, host, service.pids(), seconds=2)  # on the bot's host, never this machine's
    async with readonly(db):
        size = await db.fetchval("SELECT pg_database_size(current_database())")
    # From the end of the deployment: the release itself adds indexes, backup and quarantine tables.
    before = recorded("10.5").get("Database Bytes") or recorded("1.4").get("Database Bytes") or size
    backup_dir.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(backup_dir).free / 1024 ** 3
    growth = (size - before) / before if before else 0
    if host.remote:  # the bot's server fills too (its logs, a local database), not only the backup folder
        labelled[f"Free Disk On {host.name}"] = f"{free_bytes(host, bot_dir) / 1024 ** 3:.1f} GB"
    labelled.update({"CPU": f"{usage['CPU']}%", "RSS": f"{usage['RSS']} MB", "Free Disk": f"{free_gb:.1f} GB",
                     "Sampled On": usage["Sampled On"],
                     "Processes": [{k: p[k] for k in ("PID", "Command", "CPU", "RSS")} for p in usage["Processes"]],
                     "Database Growth": f"{growth:+.1%}"})
    assert usage["CPU"] < 50 and usage["RSS"] < 500, f"the bot uses {usage['CPU']}% CPU and {usage['RSS']} MB"
    assert free_gb >= request.config.option.min_free_gb, f"only {free_gb:.1f} GB disk free"
    assert growth < 0.5, f"the database grew {growth:.0%} since the deployment ended: look for runaway inserts"


@pytest.mark.item("15.6")
def test_error_rate_since_release(service, released, recorded, labelled):
    rate = monitor.errors_per_hour(service.logs(released), released)
    before = baseline_errors_per_hour(recorded)
    labelled.update({"Errors Per Hour Since Release": round(rate, 2), "Errors Per Hour Before": before})
    assert not monitor.spike(rate, before), (f"{rate:.1f} errors/hour since the release against {before:.1f} "
                                             "before: the release made things worse")


@pytest.mark.item("15.8")
async def test_voucher_usage_tracking(db, released, labelled):
    count, first = await violations(db, monitor.VOUCHERS.format(since=monitor.since(released)))
    labelled.update({"Voucher Problems": count, "First": first})
    assert not count, (f"{count} voucher(s) with a used_count that is NULL, negative, above max_uses, or below "
                       f"the paid orders placed with them since the release: {first[:3]}")


@pytest.mark.item("15.9")
async def test_daily_metrics_recorded(db, released, labelled):
    """Today's figures from the orders themselves; and where the bot keeps daily metrics of its own
    (telemetry_daily had rows before the release), today's row must be there once the day is 6 hours old
    (the checklist's window for this item): a missing one means its metrics job stopped."""
    async with readonly(db):
        labelled["Orders Today"] = [dict(r) for r in await db.fetch(monitor.ORDERS_TODAY)]
        today = await db.fetchrow(monitor.TELEMETRY_TODAY)
        kept_before = await db.fetchval(monitor.TELEMETRY_BEFORE, released.date())
    labelled["Telemetry Today"] = dict(today) if today else None
    hours = (datetime.now(timezone.utc) - released).total_seconds() / 3600
    assert today or not kept_before or hours < 6, (
        f"no telemetry_daily row for today, {hours:.0f} h after the release, although the bot recorded daily "
        "metrics before it: its metrics job stopped; read its log")


@pytest.mark.item("15.10")
async def test_stock_synchronization(db, labelled):
    await into(labelled, integrity.check_stock_sync(db))  # 12.2's check, again in the first day


@pytest.mark.item("15.11")
async def test_database_performance(db, recorded, labelled):
    before = recorded("5.1").get("Query Timings")
    assert before, "preflight recorded no query timings (5.1): run `pytest -m preflight` first"
    now, slower = {}, []
    for query in load_expected()["query"]:
        now[query["name"]] = await monitor.timing_ms(db, query)
        was = before.get(query["name"])
        if was is not None and now[query["name"]] is not None and monitor.slower(now[query["name"]], was):
            slower.append(f"{query['name']}: {was} ms before, {now[query['name']]} ms now")
    labelled.update({"Query Timings": now, "Slower": slower})
    assert not slower, "critical queries got slower since the release:\n  " + "\n  ".join(slower)
