"""The stand-in for bot-auto-order v0.7.0 (fixtures/standin-bot) against a migrated v0.6 shop, the fake Bot
API and a small fake Pakasir: the screens and flows the v0.7.0 smoke profile walks, paced like a person
(anti-spam joins actions less than 1 s apart), plus the spam warning for a fast client.

The bot runs as `python -m src.main --mode polling` with TELEGRAM_API_BASE_URL (ours) pointing python-
telegram-bot and the raw-httpx health check at the fake; the webhook server runs through
deploycheck.telegram.launcher with no base URL, so its delivery bot is routed the way a real checkout's is.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from aiohttp import ClientSession, web

from deploycheck.telegram.driver import FakeDriver, Message
from deploycheck.telegram.fake_api import FakeBotAPI
from standin import free_port, migrated_shop

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "fixtures" / "standin-bot"
PACE = 1.1                      # a bit over the anti-spam gap (1.0 s)
USER, ADMIN_A, ADMIN_B = 7100000001, 7100000002, 7100000003
CODE = "DCSMOKE-STANDIN1"


class FakePakasir:
    """POST /api/transactioncreate/qris answered as Pakasir documents it; `pay()` POSTs the paid webhook."""

    def __init__(self) -> None:
        self.created: list[dict] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> "FakePakasir":
        app = web.Application()
        app.router.add_post("/api/transactioncreate/{method}", self._create)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        amount = int(body["amount"])
        fee = -(-amount * 7 // 1000) + 310
        self.created.append({**body, "fee": fee, "total_payment": amount + fee})
        return web.json_response({"payment": {
            "project": body["project"], "order_id": body["order_id"], "amount": amount, "fee": fee,
            "total_payment": amount + fee, "payment_method": "qris", "payment_number": "00020101021226670016COM.FAKE",
            "expired_at": "2099-09-19T01:18:49.678622564Z"}})

    async def pay(self, webhook_url: str, order_id: str, amount: int) -> tuple[int, str]:
        body = {"amount": amount, "order_id": order_id, "project": "dcsmoke", "status": "completed",
                "payment_method": "qris", "completed_at": "2025-11-06T16:30:00+07:00"}
        async with ClientSession() as session, session.post(webhook_url, data=json.dumps(body)) as response:
            return response.status, await response.text()


class Person:
    """A FakeDriver that paces its actions and waits for an answer matching a pattern."""

    def __init__(self, api: FakeBotAPI, user_id: int, name: str):
        self.driver = FakeDriver(api, user_id, name, username=name.lower())
        self.last = 0.0
        self.transcript: list[str] = []

    async def _pace(self) -> None:
        await asyncio.sleep(max(0.0, self.last + PACE - time.monotonic()))
        self.last = time.monotonic()

    async def send(self, text: str, expect: str, timeout: float = 10) -> Message:
        await self._pace()
        self.transcript.append(f"> {text}")
        await self.driver.send(text)
        return await self.expect(expect, timeout)

    async def click(self, label: str, expect: str, timeout: float = 10) -> Message:
        await self._pace()
        self.transcript.append(f"> [{label}]")
        await self.driver.click(label)
        return await self.expect(expect, timeout)

    async def expect(self, pattern: str, timeout: float = 10) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = await self.driver.next_message(max(0.05, deadline - time.monotonic()))
            except AssertionError:
                raise AssertionError(f"expected {pattern!r}; transcript:\n" + "\n".join(self.transcript)) from None
            self.transcript.append("< " + message.describe())
            if re.search(pattern, message.text):
                return message


@pytest.fixture
async def shop(fresh_db):
    """A v0.6 shop migrated to v0.7.0 by the project's runner; product 2 made inactive."""
    await migrated_shop(fresh_db)
    conn = await asyncpg.connect(fresh_db)
    try:
        await conn.execute("UPDATE products SET is_active = FALSE WHERE id = 2")
        await conn.execute("UPDATE products SET is_active = TRUE WHERE id <> 2 AND id <= 6")
    finally:
        await conn.close()
    return fresh_db


async def wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the webhook server exited: {log.read_text()[-2000:]}"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"the webhook server did not listen within {timeout} s: {log.read_text()[-2000:]}")


async def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        for _ in range(200):
            if process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        else:
            process.kill()
            process.wait(5)
    return process.returncode


async def test_standin_walks_the_v070_screens(shop, tmp_path):
    api, gateway = await FakeBotAPI().start(), await FakePakasir().start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "STANDIN_", "BOT_"))}
    env |= {"TELEGRAM_BOT_TOKEN": api.token, "DATABASE_URL": shop, "PAKASIR_PROJECT_SLUG": "dcsmoke",
            "PAKASIR_API_KEY": "fake-key", "TELEGRAM_ADMIN_IDS": json.dumps([ADMIN_A, ADMIN_B]),
            "TELEGRAM_OWNER_IDS": str(ADMIN_A), "BOT_STORE_NAME": "Toko Uji", "PAKASIR_BASE_URL": gateway.url,
            "PAKASIR_PUBLIC_DOMAIN": "http://127.0.0.1:9", "PYTHONPATH": str(STANDIN), "PYTHONUNBUFFERED": "1",
            "STANDIN_HEALTHCHECK_FIRST_SECONDS": "0.5"}
    (tmp_path / "bot").mkdir()
    bot_log, server_log = tmp_path / "bot.log", tmp_path / "server.log"
    with open(bot_log, "wb") as out:
        bot = subprocess.Popen([sys.executable, "-m", "src.main", "--mode", "polling"], cwd=tmp_path / "bot",
                               env=env | {"TELEGRAM_API_BASE_URL": api.url}, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    with open(server_log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "deploycheck.telegram.launcher", "--api-url", api.url,
                                   "-m", "src.server", "--host", "127.0.0.1", "--port", str(port)],
                                  cwd=tmp_path / "bot", env=env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    user, admin_a, admin_b = Person(api, USER, "Sari"), Person(api, ADMIN_A, "Budi"), Person(api, ADMIN_B, "Rina")
    db = await asyncpg.connect(shop)
    try:
        await api.wait_for_call("getUpdates", timeout=15)
        await wait_port(port, server, server_log)
        active = await db.fetch("SELECT id, name, price_cents, stock FROM products WHERE is_active ORDER BY id LIMIT 5")
        pick = next(p for p in active if p["stock"] > 0 and p["price_cents"] % 100000 == 0)

        async def customer():
            welcome = await user.send("/start", r"Selamat datang di Toko Uji!")
            assert welcome.text.startswith("—  Hai, Sari 👋🏻") and "Total Pengguna Bot:" in welcome.text
            assert welcome.button_texts == ["📋 INFORMASI", "📖 Cara Order"]
            hint = await user.expect(r"Gunakan menu di bawah")
            assert hint.reply_keyboard[:3] == [["🛍 Semua Produk"], ["🏷 Cek Stok", "💰 Deposit"],
                                               ["ℹ️ Informasi", "📘 Cara Order"]]
            page = await user.send("🛍 Semua Produk", r"Daftar Semua Produk")
            heading, *entries, footer = page.text.split("\n" + "-" * 32 + "\n")     # products between 32-hyphen lines
            assert heading == "🧾 Daftar Semua Produk", page.text
            assert len(entries) == 5 and re.fullmatch(r"\n📄 Halaman 1/\d+", footer), page.text
            for i, (entry, product) in enumerate(zip(entries, active, strict=False), 1):
                price = "Rp " + f"{product['price_cents'] / 100:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
                assert entry.startswith(f"{i}. {product['name']} = {price}\n"), entry
                assert f"📦 Stok ➜ x{product['stock']}" in entry, entry
            assert "2. " + active[1]["name"] in page.text and await db.fetchval(
                "SELECT name FROM products WHERE id = 2") not in page.text        # the inactive one is not listed
            assert page.button_texts == ["➡️ Next", "1", "2", "3", "4", "5"]
            await user.click(str(active.index(pick) + 1), r"Stok Tersedia")
            await user.click("➕", r"In Cart: 1x")
            await user.click("🧺 Lanjut ke Keranjang", r"Keranjang Belanja Kamu")
            await user.click("🎟️ Gunakan Kupon", r"Fitur kupon akan segera hadir")
            await user.click("💳 Lanjut ke Pembayaran", r"Silakan Pilih Metode Pembayaran")
            return await user.click("💠 QRIS", r"Invoice Berhasil Dibuat")

        async def wizard(person: Person, code: str, final: str, before_last=None) -> Message:
            await person.send("⚙️ Admin Settings", r"Admin Settings")
            await person.send("🛒 Kelola Produk", r"Kelola Produk")
            await person.click("➕ Tambah Produk", r"Langkah 1/5")
            await person.send(code, r"Langkah 2/5")
            await person.send("Produk Uji Stand-in", r"Langkah 3/5")
            await person.send("abc", r"Harga tidak valid")
            await person.send("25000", r"Langkah 4/5")
            await person.send("12", r"Langkah 5/5")
            if before_last:
                await before_last
            return await person.send("Deskripsi uji", final)

        first_added = asyncio.get_running_loop().create_future()

        async def first_admin():
            await admin_a.send("/admin", r"Admin Settings:")
            added = await wizard(admin_a, CODE, r"Produk berhasil ditambahkan!")
            first_added.set_result(True)
            return added

        async def second_admin():
            await admin_b.send("/admin", r"Admin Settings:")
            await admin_b.send("⚙️ Admin Settings", r"Admin Settings")
            await admin_b.send("🎟️ Kelola Voucher", r"Kelola Voucher")
            await admin_b.click("➕ Generate Voucher Baru", r"KODE \| NOMINAL \| BATAS_PAKAI")
            await admin_b.send("dcsmoke10 5000 2", r"Format tidak valid")
            made = await admin_b.send("dcsmoke10 | 5000 | 2", r"Voucher berhasil dibuat!")
            await admin_b.send("⬅️ Kembali ke Menu Utama", r"Selamat datang")
            refused = await wizard(admin_b, CODE, r"Gagal menambahkan produk", before_last=first_added)
            return made, refused

        invoice, added, (voucher, refused) = await asyncio.wait_for(
            asyncio.gather(customer(), first_admin(), second_admin()), 60)

        # the wizard: typed stock, no category, no contents; the duplicate refused and nothing written
        row = await db.fetchrow("SELECT * FROM products WHERE code = $1", CODE)
        assert (row["name"], row["price_cents"], row["stock"], row["category_id"]) == ("Produk Uji Stand-in",
                                                                                         2500000, 12, None)
        assert f"🆔 ID: {row['id']}" in added.text and "📊 Stok: 12 pcs" in added.text
        assert refused.text == f"❌ Gagal menambahkan produk: Produk dengan kode '{CODE}' sudah ada"
        assert await db.fetchval("SELECT count(*) FROM products WHERE code = $1", CODE) == 1
        assert await db.fetchval("SELECT count(*) FROM product_contents WHERE product_id = $1", row["id"]) == 0
        # the voucher: upper-cased code, flat amount as typed (rupiah), max uses; the tags shown as sent
        coupon = await db.fetchrow("SELECT * FROM coupons WHERE code = 'DCSMOKE10'")
        assert (coupon["discount_type"], coupon["discount_value"], coupon["max_uses"], coupon["used_count"]) == \
               ("flat", 5000, 2, 0)
        assert voucher.text.startswith("✅ <b>Voucher berhasil dibuat!</b>") and "Max Pakai: <b>2x</b>" in voucher.text

        # the payment: the gateway was asked for the subtotal, the webhook must carry subtotal + fee
        gateway_id = re.search(r"tg\d+-[0-9a-f]{8}", invoice.text).group()
        created = gateway.created[-1]
        assert (created["order_id"], created["amount"], created["project"]) == (gateway_id, pick["price_cents"] // 100,
                                                                               "dcsmoke")
        webhook = f"http://127.0.0.1:{port}/webhooks/pakasir"
        assert (await gateway.pay(webhook, gateway_id, created["amount"]))[0] == 400      # the fee is missing
        unused = await db.fetchval("SELECT count(*) FROM product_contents WHERE product_id = $1 AND NOT is_used", pick["id"])
        sold = await db.fetchval("SELECT sold_count FROM products WHERE id = $1", pick["id"])
        assert await gateway.pay(webhook, gateway_id, created["total_payment"]) == (200, '{"ok": true}')
        delivered = await user.expect(r"Pembayaran Berhasil, Sari!")
        content = await db.fetchrow("SELECT pc.content FROM product_contents pc JOIN payments p ON p.order_id = "
                                    "pc.used_by_order_id WHERE p.gateway_order_id = $1", gateway_id)
        assert content and content["content"] in delivered.text
        after = await db.fetchrow("SELECT stock, sold_count FROM products WHERE id = $1", pick["id"])
        assert (after["stock"], after["sold_count"]) == (unused - 1, sold + 1)
        assert await db.fetchval("SELECT o.status FROM orders o JOIN payments p ON p.order_id = o.id "
                                 "WHERE p.gateway_order_id = $1", gateway_id) == "paid"
        assert (await gateway.pay(webhook, gateway_id, created["total_payment"]))[0] == 200  # a replay is ignored

        # six fast presses of ➡️ Next: from the 5th on, the alert; once, the chat warning
        await asyncio.sleep(PACE)
        page = await user.send("🛍 Semua Produk", r"Daftar Semua Produk")
        user.driver.drain()
        for _ in range(6):
            api.press_button(USER, page.message_id, "products:page:1")
        seen = await user.driver.collect(timeout=5, settle=0.8)
        alerts = [m for m in seen if m.is_alert and m.text == "⛔️ Stop spamming!"]
        warnings = [m for m in seen if m.text == "🚫 Jangan spam ya, tindakanmu akan dilaporkan ke admin."]
        assert len(alerts) >= 2 and len(warnings) == 1, [m.describe() for m in seen]
        await admin_a.expect(r"🚨 Deteksi spam pada bot!")

        # readiness and the raw-httpx health check, as logged
        log = bot_log.read_text()
        for line in ("▶️ Starting bot in polling mode.", "✅ Bot initialised.", "Application started",
                     "[health] telegram_api - API reachable", "Health-check selesai, status: semua OK ✅"):
            assert line in log, f"{line!r} not in the bot's log:\n{log[-3000:]}"
        assert re.search(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[INFO\] ", log, re.M)
    finally:
        await db.close()
        codes = (await stop(bot), await stop(server))
        for person in (user, admin_a, admin_b):
            await person.driver.stop()
        await gateway.stop()
        await api.stop()
    assert codes[0] == 0, bot_log.read_text()[-3000:]
    assert "👋 Shutdown complete." in bot_log.read_text()
    # v0.7.0 logs the refused duplicate as an ERROR with its traceback; nothing else is an error
    errors = re.findall(r"\[ERROR\] (.*)", bot_log.read_text())
    assert errors == [f"Error adding product: Produk dengan kode '{CODE}' sudah ada"], bot_log.read_text()[-3000:]
