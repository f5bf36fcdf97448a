"""The smoke items through the real screens: the stand-in for bot-auto-order v0.7.0 (fixtures/standin-bot)
walked with the v0.7.0 bot profile. Every item passes on the good stand-in (content addition and voucher
redemption reported as not offered, with what the bot showed); each fault variant fails its item, with the
transcript in the message; test data is gone afterwards, also when the flow broke mid-wizard."""
from __future__ import annotations

import pytest

from deploycheck.checks import smoke
from deploycheck.failure import CheckFailed
from standin import StandinShop, migrated_shop  # tests/selftest/standin.py


@pytest.fixture
async def shop_dsn(fresh_db):
    await migrated_shop(fresh_db)
    return fresh_db


async def leftovers(db) -> int:
    return await db.fetchval("""SELECT (SELECT count(*) FROM products WHERE code LIKE 'DCSMOKE-%')
                                     + (SELECT count(*) FROM coupons WHERE code LIKE 'DCSMOKE-%')
                                     + (SELECT count(*) FROM product_contents WHERE content LIKE 'DCSMOKE-%')""")


async def test_every_item_passes_on_the_standin_through_the_v070_profile(shop_dsn, tmp_path):
    async with StandinShop(shop_dsn, tmp_path) as shop:
        before = await shop.db.fetch("SELECT code, stock, sold_count FROM products ORDER BY code")
        try:
            found = {"11.1": await smoke.bot_responds(shop.talk), "11.2": await smoke.product_listing(shop.talk)}
            for item_id, check in (("11.3", smoke.product_creation), ("11.4", smoke.content_addition),
                                   ("11.5", smoke.voucher_limit), ("11.6", smoke.order_flow)):
                found[item_id] = await check(shop.talk, shop.run)
                await shop.cleanup()
            found["13.4"] = await smoke.response_time(shop.talk)
        finally:
            await shop.cleanup()
        assert await leftovers(shop.db) == 0
        assert await shop.db.fetch("SELECT code, stock, sold_count FROM products ORDER BY code") == before
    assert found["11.1"]["Bot Responding"] == "OK" and found["11.2"]["Product Listing"] == "OK"
    assert found["11.2"]["list_pages"] >= 2
    assert found["11.6"]["Order Flow"] == "OK"
    # what v0.7.0 lacks is said, with what the bot showed, never passed silently
    assert found["11.3"]["Product Creation"].startswith("not offered by this bot version: a category")
    assert found["11.4"]["Content Addition"].startswith("not offered by this bot version: adding content")
    assert found["11.5"]["Voucher System"].startswith("not offered by this bot version: redeeming a voucher")
    assert "Fitur kupon akan segera hadir" in found["11.5"]["Not Offered"][0]["bot showed"]
    assert "Tambah Produk" in found["11.4"]["Not Offered"][0]["bot showed"]
    # the transcript is the evidence: what each person sent and saw
    transcript = "\n".join(found["11.6"]["Transcript"])
    assert "user presses [💠 QRIS]" in transcript and "Pembayaran Berhasil" in transcript
    assert found["13.4"]["p95_ms"] < 2000 and found["13.4"]["tries"] == 5


FAULTS = [
    ("no_reply", "11.1", "the bot showed nothing at all"),
    ("no_inline_keyboard", "11.1", "without an inline button matching 'INFORMASI'"),
    ("stale_stock", "11.2", "the product list does not match the database"),
    ("duplicate_code_accepted", "11.3", "a duplicate product code was accepted"),
    ("stock_not_raised", "11.3", "no {code} with price Rp 25.000 and stock 12"),
    ("spam_when_paced", "11.3", "the bot's anti-spam answered"),
    ("voucher_overuse", "11.5", "has no {voucher} with max_uses 2"),
    ("inactive_sold", "11.6", "is listed (page"),
    ("duplicate_content_accepted", "11.6", "the delivered content is not marked used by a paid order"),
    ("slow_reply", "13.4", "the bot answers too slowly"),
]
CHECKS = {"11.1": smoke.bot_responds, "11.2": smoke.product_listing, "11.3": smoke.product_creation,
          "11.5": smoke.voucher_limit, "11.6": smoke.order_flow, "13.4": smoke.response_time}


@pytest.mark.parametrize("fault, item_id, expected", FAULTS, ids=[f[0] for f in FAULTS])
async def test_each_faulty_standin_fails_its_item_with_the_transcript(shop_dsn, tmp_path, fault, item_id, expected):
    async with StandinShop(shop_dsn, tmp_path, fault, reply_timeout=4.0) as shop:
        args = (shop.talk, shop.run) if item_id in ("11.3", "11.5", "11.6") else (shop.talk,)
        try:
            with pytest.raises(CheckFailed) as failure:
                await CHECKS[item_id](*args)
        finally:
            await shop.cleanup()
        assert await leftovers(shop.db) == 0
    message = str(failure.value)
    assert expected.replace("{code}", shop.run.code("P")).replace("{voucher}", shop.run.code("V")) in message
    assert message.startswith((item_id, "13.4 try")), message
    assert "Transcript" in message and " > " in message, message          # what was sent, what was seen
    assert "Transcript" in failure.value.evidence


async def test_a_duplicate_refused_in_the_databases_words_is_a_refusal_and_a_finding(shop_dsn, tmp_path):
    """As bot-auto-order's acb53f6 on the migrated schema: the wizard refuses the duplicate code showing
    PostgreSQL's error. Nothing was written, so 11.3 holds; the raw error is reported, not taken for acceptance."""
    async with StandinShop(shop_dsn, tmp_path, "raw_duplicate_error", reply_timeout=4.0) as shop:
        try:
            found = await smoke.product_creation(shop.talk, shop.run)
        finally:
            await shop.cleanup()
    (finding,) = found["Findings"]
    assert finding["finding"].startswith("the admin was shown the database's raw error")
    assert "products_code_key" in finding["bot showed"]
