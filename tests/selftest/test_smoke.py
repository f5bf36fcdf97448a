"""The smoke checks pass against the reference bot and fail, saying what the user saw, against each
broken variant of it. Every test starts its own bot on its own v0.7.0 database behind a fresh fake."""
from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from deploycheck.checks import smoke, smoke_data
from deploycheck.telegram import FakeBotAPI, FakeDriver
from deploycheck.rehearsal.refbot import REHEARSAL_ADMIN_ID, REHEARSAL_STORE_NAME, REHEARSAL_USER_ID, ReferenceBot

SCHEMA = Path(__file__).parent / "data" / "schema-v0.7-min.sql"
OPTS = smoke.SmokeOptions(reply_timeout=1.5, store_name=REHEARSAL_STORE_NAME, response_tries=3)


class Shop:
    def __init__(self, api, db, bot, user, admin):
        self.api, self.db, self.bot, self.user, self.admin = api, db, bot, user, admin


ROOT = Path(__file__).resolve().parents[2]
REAL_SCHEMA = [ROOT / "fixtures" / "schema-v0.6.sql", ROOT / "fixtures" / "schema-v0.6-runtime.sql",
               ROOT / "scripts" / "migrations" / "001_fix_schema_constraints.sql"]


async def load_schema(db: asyncpg.Connection, real: bool) -> None:
    """The small stand-in, or the real thing: the v0.6 baseline schema plus the v0.7.0 migration."""
    if not real:
        await db.execute(SCHEMA.read_text())
        return
    missing = [str(f) for f in REAL_SCHEMA if not f.exists()]
    if missing:
        pytest.fail(f"the v0.6 schema or the v0.7.0 migration is missing: {missing}")
    async with db.transaction():
        for sql in REAL_SCHEMA:
            await db.execute(sql.read_text())


async def seed(db: asyncpg.Connection, real: bool = False) -> None:
    """A small shop: two active products with contents (stock in sync), one inactive."""
    await load_schema(db, real)
    await db.execute("""
        INSERT INTO categories (name, slug) VALUES ('Streaming', 'streaming'), ('Game', 'game');
        INSERT INTO products (category_id, code, name, price_cents, stock, is_active) VALUES
            (1, 'NF1', 'Netflix 1 Bulan', 2500000, 3, true),
            (2, 'ML86', 'Diamond ML 86', 2000000, 2, true),
            (1, 'OLD', 'Produk Lama', 500000, 1, false);
        INSERT INTO product_contents (product_id, content)
            SELECT 1, 'nf-' || g FROM generate_series(1, 3) g
            UNION ALL SELECT 2, 'ml-' || g FROM generate_series(1, 2) g
            UNION ALL SELECT 3, 'old-1';""")


@pytest.fixture
async def shop(fresh_db, tmp_path, request):
    """start(fault=None, **env) -> Shop; the bot, drivers and fake are stopped afterwards.
    Indirect parameter "real" loads the real v0.6 schema + v0.7.0 migration instead of the stand-in."""
    db = await asyncpg.connect(fresh_db)
    await seed(db, real=getattr(request, "param", None) == "real")
    api = await FakeBotAPI().start()
    started: list = []

    async def start(fault: str | None = None, **env: str) -> Shop:
        bot = ReferenceBot().start(fresh_db, api.url, api.token, admin_ids=[REHEARSAL_ADMIN_ID],
                                   store_name=REHEARSAL_STORE_NAME, log_path=tmp_path / "bot.log",
                                   fault=fault, extra_env=env)
        started.append(bot)
        await bot.wait_ready(15)
        user = await FakeDriver(api, REHEARSAL_USER_ID, "Sari", settle=0.15).start()
        admin = await FakeDriver(api, REHEARSAL_ADMIN_ID, "Budi", settle=0.15).start()
        started.extend([user, admin])
        return Shop(api, db, bot, user, admin)

    yield start
    for thing in reversed(started):
        await thing.stop()
    await api.stop()
    await db.close()


async def leftovers(db) -> int:
    return await db.fetchval("""SELECT (SELECT count(*) FROM products WHERE code LIKE 'DCSMOKE-%')
                                     + (SELECT count(*) FROM coupons WHERE code LIKE 'DCSMOKE-%')
                                     + (SELECT count(*) FROM categories WHERE name LIKE 'DCSMOKE-%')
                                     + (SELECT count(*) FROM product_contents WHERE content LIKE 'DCSMOKE-%')""")


@pytest.mark.parametrize("shop", ["minimal", "real"], indirect=True)
async def test_every_item_passes_against_the_reference_bot(shop):
    s = await shop()
    run = smoke_data.SmokeRun()
    evidence = {}
    before = await s.db.fetch("SELECT code, stock, sold_count FROM products ORDER BY code")
    try:
        evidence.update(await smoke.bot_responds(s.user, OPTS))
        evidence.update(await smoke.product_listing(s.user, s.db, OPTS))
        evidence.update(await smoke.product_creation(s.admin, s.db, run, OPTS))
        evidence.update(await smoke.content_addition(s.admin, s.db, run, OPTS))
        evidence.update(await smoke.voucher_limit(s.user, s.admin, s.db, run, OPTS))
        evidence.update(await smoke.order_flow(s.user, s.db, run, OPTS))
        evidence.update(await smoke.response_time(s.user, OPTS))
    finally:
        removed = await smoke_data.cleanup(s.db, user_telegram_ids=[REHEARSAL_USER_ID, REHEARSAL_ADMIN_ID])
    for blank in ("Bot Responding", "Product Listing", "Product Creation", "Content Addition", "Voucher System",
                  "Order Flow", "Bot responds within 2 seconds"):
        assert blank in evidence
    assert evidence["p95_ms"] < 2000
    # nothing of the run is left, and the real shop is as it was
    assert await leftovers(s.db) == 0
    assert removed["products"] == 5 and removed["coupons"] == 1 and removed["orders"] == 3
    assert await s.db.fetch("SELECT code, stock, sold_count FROM products ORDER BY code") == before
    assert await s.db.fetchval("SELECT count(*) FROM users") == 0
    assert await s.db.fetchval("SELECT count(*) FROM orders") == 0
    # the bot's log never carried its token
    raw = s.bot.log_path.read_text()
    assert "polling for updates" in raw and s.api.token not in raw


FAULTS = [
    ("no_reply", "bot_responds", "after /start the user saw nothing"),
    ("no_inline_keyboard", "bot_responds", "expected an inline keyboard under the welcome, there is none"),
    ("duplicate_code_accepted", "product_creation", "a duplicate product code was written"),
    ("duplicate_content_accepted", "content_addition", "a duplicate content got no clear error"),
    ("stock_not_raised", "content_addition", "stock did not auto-increment"),
    ("voucher_overuse", "voucher_limit", "was accepted a third time"),
    ("inactive_sold", "order_flow", "an inactive product could be ordered"),
    ("slow_reply", "response_time", "the bot answers too slowly"),
]


@pytest.mark.parametrize("fault, check, expected", FAULTS, ids=[f[0] for f in FAULTS])
async def test_each_broken_bot_fails_its_item(shop, fault, check, expected):
    s = await shop(fault, BOT_SLOW_SECONDS="0.6")
    opts = OPTS
    if fault == "slow_reply":
        opts = smoke.SmokeOptions(reply_timeout=1.5, response_tries=2, response_limit=0.4)
    run = smoke_data.SmokeRun()
    args = {"bot_responds": (s.user, opts), "response_time": (s.user, opts),
            "product_creation": (s.admin, s.db, run, opts), "content_addition": (s.admin, s.db, run, opts),
            "voucher_limit": (s.user, s.admin, s.db, run, opts), "order_flow": (s.user, s.db, run, opts)}[check]
    try:
        with pytest.raises(AssertionError) as failure:
            await getattr(smoke, check)(*args)
    finally:
        await smoke_data.cleanup(s.db, user_telegram_ids=[REHEARSAL_USER_ID, REHEARSAL_ADMIN_ID])
    message = str(failure.value)
    assert expected in message
    assert "saw" in message or "slowly" in message    # says what the user experienced
    assert await leftovers(s.db) == 0


async def test_listing_fails_when_stock_is_out_of_sync(shop):
    s = await shop()
    await s.db.execute("UPDATE products SET stock = stock + 4 WHERE code = 'ML86'")
    with pytest.raises(AssertionError, match=r"Diamond ML 86 \(ML86\): the user saw stock 6, the database has 2"):
        await smoke.product_listing(s.user, s.db, OPTS)


async def test_listing_catches_stock_not_raised_after_an_admin_adds_content(shop):
    s = await shop("stock_not_raised")
    await s.admin.send("/addcontent NF1|nf-new")
    await s.admin.collect(1.5)
    with pytest.raises(AssertionError, match=r"Netflix 1 Bulan \(NF1\): the user saw stock 3, the database has 4"):
        await smoke.product_listing(s.user, s.db, OPTS)


def test_percentile_is_nearest_rank():
    assert smoke.percentile([0.1, 0.2, 0.3, 0.4, 5.0], 95) == 5.0
    assert smoke.percentile([0.1, 0.2, 0.3, 0.4, 5.0], 50) == 0.3


def test_run_refuses_a_prefix_too_short_to_delete_by():
    with pytest.raises(ValueError):
        smoke_data.SmokeRun("")
