"""What keeps the window short, each shown to fail on the fault it exists to catch: the migration's plain
indexes built before the window (3.3+indexes), 6.3 proving the notice gets through without holding the window,
and 5.3's prediction of the whole window."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest

from deploycheck.checks import window as deploy
from deploycheck.infra import catalog as schema
from deploycheck.infra.targets import baseline_generator
from deploycheck.telegram import FakeBotAPI
from test_migration import MIGRATION, run  # tests/selftest/test_migration.py: the runner as 7.3 runs it

SQL = MIGRATION.read_text()
LEFT_TO_THE_WINDOW = {"idx_audit_log_timestamp", "idx_audit_log_actor", "idx_audit_log_action"}  # audit_log is new


@pytest.fixture
async def shop(fresh_db):
    """The dirty v0.6 baseline at scale 1, and a connection to it."""
    conn = await asyncpg.connect(fresh_db)
    await baseline_generator().generate(conn, scale=1)
    yield fresh_db, conn
    await conn.close()


async def invalidate(conn: asyncpg.Connection, index: str) -> None:
    """What an interrupted CREATE INDEX CONCURRENTLY leaves: the index there, marked invalid."""
    await conn.execute(f"CREATE INDEX IF NOT EXISTS {index} ON orders (status)")
    await conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = $1::regclass", index)


# ------------------------------------------------------------------------------- 3.3+indexes
def test_the_plain_indexes_are_the_migrations_non_unique_ones():
    found = {name: table for name, table, _ in deploy.plain_indexes(SQL)}
    assert len(found) >= 25 and found["idx_orders_status"] == "orders"
    assert found["idx_product_contents_used_by_order"] == "product_contents"  # a statement over two lines
    assert not any("UNIQUE" in statement.upper() for _, _, statement in deploy.plain_indexes(SQL))
    assert "product_contents_content_key" not in found  # refuses duplicates: only in the window, after the cleanup


async def test_indexes_built_before_the_window_leave_the_same_schema(shop, pg_server):
    dsn, conn = shop
    rows, problems = await deploy.build_before_window(conn, SQL, build=True)
    assert not problems, problems
    states = {r["Index"]: r["State"] for r in rows}
    assert {name for name, state in states.items() if state.startswith("left to the window")} == LEFT_TO_THE_WINDOW
    assert states["idx_orders_status"] == "built, valid" and states["idx_orders_user"] == "valid"  # v0.6 has it
    code, out = await run(dsn)
    assert code == 0, out
    built_first = await schema.snapshot(conn)

    other = "selftest_plain_" + dsn.rsplit("_", 1)[-1]
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{other}"')
        plain = await asyncpg.connect(pg_server.dsn_for(other))
        try:
            await baseline_generator().generate(plain, scale=1)
            code, out = await run(pg_server.dsn_for(other))
            assert code == 0, out
            only_migrated = await schema.snapshot(plain)
        finally:
            await plain.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
        await admin.close()
    assert built_first["indexes"] == only_migrated["indexes"]
    assert built_first["constraints"] == only_migrated["constraints"]


async def test_missing_indexes_fail_3_3_indexes_when_not_executing(shop):
    _, conn = shop
    rows, problems = await deploy.build_before_window(conn, SQL, build=False)
    assert "idx_orders_status is not built" in problems
    assert not any(name in problem for problem in problems for name in LEFT_TO_THE_WINDOW)
    assert await deploy.index_valid(conn, "idx_orders_status") is None, "looking must not build"


async def test_an_invalid_index_fails_3_3_indexes_and_is_rebuilt_when_executing(shop):
    _, conn = shop
    await invalidate(conn, "idx_orders_status")
    _, problems = await deploy.build_before_window(conn, SQL, build=False)
    assert "idx_orders_status is INVALID" in problems
    rows, problems = await deploy.build_before_window(conn, SQL, build=True)
    assert not problems, problems
    assert {r["Index"]: r["State"] for r in rows}["idx_orders_status"] == "built, valid"
    assert await deploy.index_valid(conn, "idx_orders_status") is True


async def test_a_build_that_cannot_lock_fails_3_3_indexes_and_leaves_no_index(shop, monkeypatch):
    dsn, conn = shop
    monkeypatch.setitem(deploy.PREWINDOW_SETTINGS, "lock_timeout", "300ms")
    holder = await asyncpg.connect(dsn, server_settings={"application_name": "bot-auto-order"})
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE orders IN SHARE MODE")  # a session that will not let go in time
            _, problems = await deploy.build_before_window(conn, SQL, build=True)
    finally:
        await holder.close()
    assert any(p.startswith("idx_orders_status was not built: lock_timeout") for p in problems), problems
    assert await deploy.index_valid(conn, "idx_orders_status") is None, "a half-built index was left behind"


async def test_the_migration_rebuilds_an_index_left_invalid(shop):
    """If 3.3+indexes was interrupted after preflight, the migration's IF NOT EXISTS must not keep the broken index."""
    dsn, conn = shop
    await invalidate(conn, "idx_orders_status")
    code, out = await run(dsn)
    assert code == 0, out
    assert "idx_orders_status: invalid (an interrupted concurrent build), dropped and built again" in out
    assert await deploy.index_valid(conn, "idx_orders_status") is True


# ------------------------------------------------------------------------------- 6.3
@pytest.fixture
async def telegram():
    async with FakeBotAPI() as api:
        yield api


async def test_the_notice_is_proven_by_a_handful_of_deliveries_6_3(telegram):
    chats = list(range(1, 301))  # twelve seconds of sending at 25 a second
    telegram.add_users(chats)
    sending = deploy.MaintenanceBroadcast(telegram.url, telegram.token, chats, "Maintenance")
    try:
        await sending.settle(10)
        assert not sending.task.done(), "6.3 waited for the whole broadcast"
        tally = sending.tally()
        assert tally["Delivered"] >= deploy.CONFIRMED and tally["Not Sent Yet"] > 0, tally
        assert sending.problem() is None
    finally:
        await sending.stop()


async def test_a_refused_notice_fails_6_3_at_telegrams_first_error(telegram):
    telegram.add_users(range(1, 301))
    sending = deploy.MaintenanceBroadcast(telegram.url, "123:wrong-token", list(range(1, 301)), "Maintenance")
    try:
        await sending.settle(10)
        assert not sending.task.done() and sending.tally()["Failed"] >= 1
        assert "Telegram refused the first message" in sending.problem()
    finally:
        await sending.stop()


async def test_one_failed_chat_among_deliveries_does_not_fail_6_3(telegram):
    telegram.add_users([1, 2, 3, 4, 5, 6])  # 404: a chat Telegram does not know ("chat not found")
    sending = deploy.MaintenanceBroadcast(telegram.url, telegram.token, [1, 2, 3, 404, 4, 5, 6], "Maintenance")
    await sending.settle(10)
    await sending.stop()
    assert sending.tally()["Failed"] == 1 and sending.problem() is None


async def test_telegram_answering_nothing_fails_6_3():
    async def silent(reader, writer):  # accepts the request, never answers; ends when the client goes
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sending = deploy.MaintenanceBroadcast(f"http://127.0.0.1:{port}", "1:T", [1, 2, 3], "Maintenance")
    try:
        await sending.settle(1)
        assert sending.problem() == "Telegram answered no message in time"
    finally:
        await sending.stop()
        server.close()


# ------------------------------------------------------------------------------- 5.3 and 10.5
def test_the_prediction_is_the_whole_window_and_10_5_shows_how_far_off():
    predicted = deploy.predicted_window(5.0)
    assert predicted["Predicted Downtime Seconds"] == round(5.0 * deploy.BUSIER_IN_THE_WINDOW
                                                           + deploy.WINDOW_BESIDES_MIGRATION, 1)
    assert "5.0 s on the restored copy" in predicted["Predicted Downtime"]
    assert deploy.prediction_error(8.0, 9.0) == "+12% (9.0 s measured, 8.0 s predicted)"
    assert deploy.prediction_error(None, 9.0) == "no prediction recorded (5.3)"
