"""The smoke checks, through the reference profile (checklists/profiles/deploycheck-reference.toml), pass
against the reference bot and fail, with the transcript, against each broken variant of it. Every test starts
its own bot on its own v0.7.0 database behind a fresh fake. Bot profiles themselves: a typo is a clear error
at load."""
from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from deploycheck.checks import conversation_profile, smoke, smoke_data
from deploycheck.checks.conversation import Conversation
from deploycheck.checks.conversation_profile import ProfileError
from deploycheck.telegram import FakeBotAPI, FakeDriver
from deploycheck.rehearsal.refbot import REHEARSAL_ADMIN_ID, REHEARSAL_STORE_NAME, REHEARSAL_USER_ID, ReferenceBot

SCHEMA = Path(__file__).parent / "data" / "schema-v0.7-min.sql"
REFERENCE = conversation_profile.load("deploycheck-reference")


class Shop:
    def __init__(self, api, db, bot, user, admin, profile=REFERENCE):
        self.api, self.db, self.bot, self.user, self.admin = api, db, bot, user, admin
        self.talk = Conversation(profile, {"user": user, "admin": admin}, db, reply_timeout=1.5)


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

    async def start(fault: str | None = None, profile=REFERENCE, **env: str) -> Shop:
        bot = ReferenceBot().start(fresh_db, api.url, api.token, admin_ids=[REHEARSAL_ADMIN_ID],
                                   store_name=REHEARSAL_STORE_NAME, log_path=tmp_path / "bot.log",
                                   fault=fault, extra_env=env)
        started.append(bot)
        await bot.wait_ready(15)
        user = await FakeDriver(api, REHEARSAL_USER_ID, "Sari", settle=0.15).start()
        admin = await FakeDriver(api, REHEARSAL_ADMIN_ID, "Budi", settle=0.15).start()
        started.extend([user, admin])
        return Shop(api, db, bot, user, admin, profile)

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
        evidence.update(await smoke.bot_responds(s.talk))
        evidence.update(await smoke.product_listing(s.talk))
        evidence.update(await smoke.product_creation(s.talk, run))
        evidence.update(await smoke.content_addition(s.talk, run))
        evidence.update(await smoke.voucher_limit(s.talk, run))
        evidence.update(await smoke.order_flow(s.talk, run))
        evidence.update(await smoke.response_time(s.talk))
    finally:
        removed = await smoke_data.cleanup(s.db, user_telegram_ids=[REHEARSAL_USER_ID, REHEARSAL_ADMIN_ID])
    for blank in ("Bot Responding", "Product Listing", "Product Creation", "Content Addition", "Voucher System",
                  "Order Flow", "Bot responds within 2 seconds"):
        assert blank in evidence
    assert "Not Offered" not in evidence and evidence["Order Flow"] == "OK"
    assert any("user > '/start'" in line for line in evidence["Transcript"])    # 13.4's, the last item's
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
    ("no_reply", "bot_responds", "the bot showed nothing at all"),
    ("no_inline_keyboard", "bot_responds", "the message came without an inline button matching '.'"),
    ("duplicate_code_accepted", "product_creation", "a duplicate product code was accepted"),
    ("duplicate_content_accepted", "content_addition", "a duplicate content got no clear error"),
    ("stock_not_raised", "content_addition", "stock did not auto-increment"),
    ("voucher_overuse", "voucher_limit", "was accepted a third time"),
    ("inactive_sold", "order_flow", "an inactive product could be ordered"),
    ("slow_reply", "response_time", "the bot answers too slowly"),
]


def quick_profile(tmp_path: Path) -> conversation_profile.Profile:
    """The reference profile as an operator would adapt it: 13.4's limit 0.4 s over 2 tries."""
    text = (conversation_profile.PROFILES_DIR / "deploycheck-reference.toml").read_text()
    fork = tmp_path / "fork.toml"
    fork.write_text(text.replace("tries = 5\nlimit = 2.0", "tries = 2\nlimit = 0.4"))
    return conversation_profile.load(str(fork))


@pytest.mark.parametrize("fault, check, expected", FAULTS, ids=[f[0] for f in FAULTS])
async def test_each_broken_bot_fails_its_item(shop, tmp_path, fault, check, expected):
    profile = quick_profile(tmp_path) if fault == "slow_reply" else REFERENCE
    s = await shop(fault, profile=profile, BOT_SLOW_SECONDS="0.6")
    run = smoke_data.SmokeRun()
    args = (s.talk, run) if check in ("product_creation", "content_addition", "voucher_limit", "order_flow") \
        else (s.talk,)
    try:
        with pytest.raises(AssertionError) as failure:
            await getattr(smoke, check)(*args)
    finally:
        await smoke_data.cleanup(s.db, user_telegram_ids=[REHEARSAL_USER_ID, REHEARSAL_ADMIN_ID])
    message = str(failure.value)
    assert expected in message
    assert "Transcript" in message and " > '" in message    # what was sent and what the bot showed
    assert await leftovers(s.db) == 0


async def test_listing_fails_when_stock_is_out_of_sync(shop):
    s = await shop()
    await s.db.execute("UPDATE products SET stock = stock + 4 WHERE code = 'ML86'")
    await s.db.execute("DELETE FROM product_contents WHERE content = 'ml-2'")
    with pytest.raises(AssertionError, match=r"Diamond ML 86 \(ML86\): the user saw stock 6, the database has 1"):
        await smoke.product_listing(s.talk)


async def test_listing_catches_stock_not_raised_after_an_admin_adds_content(shop):
    s = await shop("stock_not_raised")
    await s.admin.send("/addcontent NF1|nf-new")
    await s.admin.collect(1.5)
    with pytest.raises(AssertionError, match=r"Netflix 1 Bulan \(NF1\): the user saw stock 3, the database has 4"):
        await smoke.product_listing(s.talk)


async def test_a_bare_driver_still_gets_the_generic_welcome_check(shop):
    """16.5 (after a rollback, the previous release) asks only for a welcome with an inline keyboard."""
    s = await shop()
    found = await smoke.bot_responds(s.user, smoke.SmokeOptions(reply_timeout=1.5))
    assert found["Bot Responding"] == "yes" and found["inline_buttons"]


@pytest.mark.parametrize("name", conversation_profile.available())
def test_every_shipped_profile_loads_with_every_smoke_item(name):
    profile = conversation_profile.load(name)
    assert sorted(profile.items) == list(conversation_profile.ITEMS) and profile.gap > 0
    assert profile.spam == ("⛔️ Stop spamming!", "🚫 Jangan spam ya")


TYPOS = [
    ('[pacing]\ngap = 0.2', '[pacing]\ngapp = 0.2', r"unknown key 'gapp' in \[pacing\] \(did you mean 'gap'\?\)"),
    ("expect = 'Daftar Produk' }", "expekt = 'Daftar Produk' }", r"unknown key 'expekt' in \[list\] open\[1\] "
                                                                 r"\(did you mean 'expect'\?\)"),
    ('{ send = "/start", expect', '{ sned = "/start", expect', r"unknown key 'sned'"),
    ("expect = 'tidak aktif'", "expect = 'tidak aktif('", r"steps\[7\] expect = 'tidak aktif\(' is not a valid "
                                                       "regular expression"),
    ('[items."13.4"]', '[items."13.5"]', r"\[items.\"13.5\"\] is not a smoke item"),
    ('{ seed = "O", contents = 1 }', '{ seed = "O", contents = 1, as = "owner" }', r"as = 'owner'"),
    ('{ db = "SELECT 1 WHERE', '{ dbb = "SELECT 1 WHERE', r"unknown key 'dbb'.*did you mean 'db'"),
]


@pytest.mark.parametrize("good, bad, error", TYPOS, ids=[t[2][:30] for t in TYPOS])
def test_a_profile_with_a_typo_is_a_clear_error_at_load(tmp_path, good, bad, error):
    text = (conversation_profile.PROFILES_DIR / "deploycheck-reference.toml").read_text()
    assert good in text
    fork = tmp_path / "fork.toml"
    fork.write_text(text.replace(good, bad, 1))
    with pytest.raises(ProfileError, match=error) as failure:
        conversation_profile.load(str(fork))
    assert str(fork) in str(failure.value)


def test_an_unknown_profile_names_the_shipped_ones():
    with pytest.raises(ProfileError, match="shipped profiles: bot-auto-order-d1c1072, bot-auto-order-v0.7.0, "
                                           "deploycheck-reference"):
        conversation_profile.load("bot-auto-order-v9")


def test_percentile_is_nearest_rank():
    assert smoke.percentile([0.1, 0.2, 0.3, 0.4, 5.0], 95) == 5.0
    assert smoke.percentile([0.1, 0.2, 0.3, 0.4, 5.0], 50) == 0.3


def test_run_refuses_a_prefix_too_short_to_delete_by():
    with pytest.raises(ValueError):
        smoke_data.SmokeRun("")
