"""The fake Telegram as faithful as bot-auto-order needs it: photos uploaded with captions and their
captions edited, stickers, deletions, callback alerts, messages to the shop's users (delivered, 403
for those who blocked the bot, 400 for chats Telegram does not know), the log of what each user
received, and no replay of confirmed updates to a restarted bot. Both with raw calls and with
python-telegram-bot, which chooses its exceptions from the fake's statuses."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from deploycheck.telegram import FakeBotAPI, FakeDriver, NoReply
from deploycheck.telegram.driver import ButtonNotFound
from fakebot import call, ptb_command, run_bot, stop_bot  # tests/selftest/fakebot.py

USER = 21


@pytest.fixture
async def api():
    async with FakeBotAPI() as server:
        server.add_user(USER, "Sari")
        yield server


async def upload_photo(api, chat_id, caption, markup=None):
    """sendPhoto as python-telegram-bot sends an upload: multipart, the file in the field `photo`."""
    form = aiohttp.FormData()
    form.add_field("chat_id", str(chat_id))
    form.add_field("caption", caption)
    form.add_field("parse_mode", "HTML")
    if markup:
        form.add_field("reply_markup", json.dumps(markup))
    form.add_field("photo", b"\x89PNG fake bytes", filename="qris.png", content_type="image/png")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{api.url}/bot{api.token}/sendPhoto", data=form,
                                timeout=aiohttp.ClientTimeout(total=10)) as response:
            return response.status, await response.json()


# -- photos, captions, edits --------------------------------------------------------------------------
async def test_send_photo_multipart_with_an_html_caption(api):
    markup = {"inline_keyboard": [[{"text": "❌ Batalkan", "callback_data": "cancel"}]]}
    status, body = await upload_photo(api, USER, "<b>Invoice</b> tg21 &amp; co", markup)
    assert status == 200, body
    message = body["result"]
    assert message["caption"] == "Invoice tg21 & co" and message["photo"][0]["file_id"].startswith("fake-photo-")
    assert message["reply_markup"] == markup and message["chat"]["id"] == USER
    (entry,) = api.received_by(USER)
    assert entry["method"] == "sendPhoto" and entry["photo"] == "upload qris.png (15 bytes)"
    assert entry["caption"] == "Invoice tg21 & co" and entry["buttons"] == [["❌ Batalkan"]]


async def test_edit_message_caption_on_a_photo_and_the_errors_telegram_gives(api):
    photo = (await upload_photo(api, USER, "Invoice"))[1]["result"]
    text = (await call(api, "sendMessage", chat_id=str(USER), text="hello"))[1]["result"]
    status, body = await call(api, "editMessageCaption", chat_id=str(USER), message_id=str(photo["message_id"]),
                              caption="<i>Kedaluwarsa</i>", parse_mode="HTML")
    assert status == 200 and body["result"]["caption"] == "Kedaluwarsa" and "edit_date" in body["result"]
    assert api.message(USER, photo["message_id"])["caption"] == "Kedaluwarsa"
    status, body = await call(api, "editMessageCaption", chat_id=str(USER), message_id=str(photo["message_id"]),
                              caption="Kedaluwarsa")
    assert status == 400 and "message is not modified" in body["description"]
    status, body = await call(api, "editMessageCaption", chat_id=str(USER), message_id=str(text["message_id"]),
                              caption="x")
    assert status == 400 and body["description"] == "Bad Request: there is no caption in the message to edit"
    status, body = await call(api, "editMessageText", chat_id=str(USER), message_id=str(photo["message_id"]),
                              text="x")
    assert status == 400 and body["description"] == "Bad Request: there is no text in the message to edit"


# -- the shop's users -----------------------------------------------------------------------------------
async def test_the_shops_users_get_messages_blocked_ones_403_unknown_chats_400(api):
    started = time.monotonic()
    api.add_users(range(8_000_000, 8_050_000), blocked={8_000_007})
    assert time.monotonic() - started < 1.0            # 50,000 ids: a set, no chat objects made up front
    status, body = await call(api, "sendMessage", chat_id="8000001", text="❌ <b>Pesanan Dibatalkan</b>",
                              parse_mode="HTML")
    assert status == 200 and body["result"]["chat"] == {"id": 8000001, "type": "private", "first_name": "User 8000001"}
    status, body = await call(api, "sendMessage", chat_id="8000007", text="SNK")
    assert (status, body["description"]) == (403, "Forbidden: bot was blocked by the user")
    status, body = await call(api, "sendMessage", chat_id="999", text="x")
    assert (status, body["description"]) == (400, "Bad Request: chat not found")
    assert [(e["method"], e.get("text"), e.get("error")) for e in api.received_by(8000001)] == \
        [("sendMessage", "❌ Pesanan Dibatalkan", None)]
    assert api.received_by(8000007)[0]["error"] == "403 Forbidden: bot was blocked by the user"
    assert api.deliveries() == {"chats": 3, "delivered": 1, "blocked": 1, "chat_not_found": 1}


async def test_a_resolver_answers_for_chats_the_fake_was_not_told_of(api):
    api.resolver = lambda chat_id: {5: "ok", 6: "blocked"}.get(chat_id)
    assert (await call(api, "sendMessage", chat_id="5", text="x"))[0] == 200
    assert (await call(api, "sendMessage", chat_id="6", text="x"))[0] == 403
    assert (await call(api, "sendMessage", chat_id="7", text="x"))[0] == 400
    api.resolver = lambda chat_id: "yes"
    status, body = await call(api, "sendMessage", chat_id="8", text="x")
    assert status == 500 and "must answer 'ok', 'blocked' or None" in body["description"]


async def test_received_by_lists_sends_edits_deletions_and_alerts_in_order(api):
    keyboard = json.dumps({"inline_keyboard": [[{"text": "➕", "callback_data": "add"}]]})
    reply = json.dumps({"keyboard": [["🛍 Semua Produk"]], "resize_keyboard": True})
    await call(api, "sendSticker", chat_id=str(USER), sticker="CAACAgIAAxkBAAIDbW")
    first = (await call(api, "sendMessage", chat_id=str(USER), text="Produk", reply_markup=keyboard))[1]["result"]
    await call(api, "sendMessage", chat_id=str(USER), text="Menu", reply_markup=reply)
    callback = api.press_button(USER, first["message_id"], "add")
    assert (await call(api, "answerCallbackQuery", callback_query_id=callback, text="⛔️ Stop spamming!",
                       show_alert="true"))[0] == 200
    await call(api, "editMessageText", chat_id=str(USER), message_id=str(first["message_id"]), text="In Cart: 1x")
    await call(api, "deleteMessage", chat_id=str(USER), message_id=str(first["message_id"]))
    log = api.received_by(USER)
    json.dumps(log)                                   # evidence: JSON as it is
    assert [{k: v for k, v in e.items() if k != "at"} for e in log] == [
        {"method": "sendSticker", "message_id": 1, "sticker": "CAACAgIAAxkBAAIDbW"},
        {"method": "sendMessage", "message_id": 2, "text": "Produk", "buttons": [["➕"]]},
        {"method": "sendMessage", "message_id": 3, "text": "Menu", "keyboard": [["🛍 Semua Produk"]]},
        {"method": "answerCallbackQuery", "text": "⛔️ Stop spamming!", "show_alert": True},
        {"method": "editMessageText", "message_id": 2, "text": "In Cart: 1x"},
        {"method": "deleteMessage", "message_id": 2}]
    assert all(e["at"].endswith("Z") for e in log) and [e["at"] for e in log] == sorted(e["at"] for e in log)
    assert api.received_by(USER, clip=3)[1]["text"] == "Pro…"


async def test_callbacks_need_no_answer_and_one_answer_only(api):
    sent = (await call(api, "sendMessage", chat_id=str(USER), text="x",
                       reply_markup=json.dumps({"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]})))[1]
    api.press_button(USER, sent["result"]["message_id"], "a")          # left unanswered: nothing fails
    answered = api.press_button(USER, sent["result"]["message_id"], "a")
    assert (await call(api, "answerCallbackQuery", callback_query_id=answered))[0] == 200
    status, body = await call(api, "answerCallbackQuery", callback_query_id=answered)
    assert status == 400 and "query is too old" in body["description"]
    assert api.received_by(USER)[-1]["method"] == "sendMessage"      # an answer without text shows nothing


# -- updates ---------------------------------------------------------------------------------------------
async def test_confirmed_updates_are_not_replayed_to_a_new_poller(api):
    api.send_user_message(USER, "/start")
    (update,) = (await call(api, "getUpdates"))[1]["result"]
    assert (await call(api, "getUpdates", offset=str(update["update_id"] + 1)))[1]["result"] == []
    # a second bot process starts from offset 0: the confirmed /start is gone, as on Telegram
    api.send_user_message(USER, "later")
    assert [u["message"]["text"] for u in (await call(api, "getUpdates", offset="0"))[1]["result"]] == ["later"]
    api.send_user_message(USER, "last")
    assert [u["message"]["text"] for u in (await call(api, "getUpdates", offset="-1"))[1]["result"]] == ["last"]
    assert len(api.updates) == 1


async def test_set_webhook_stops_get_updates_until_it_is_deleted(api):
    status, body = await call(api, "setWebhook", url="http://shop.example/telegram")
    assert status == 400 and "HTTPS URL must be provided" in body["description"]
    assert (await call(api, "setWebhook", url="https://shop.example/telegram"))[0] == 200
    assert (await call(api, "getWebhookInfo"))[1]["result"]["url"] == "https://shop.example/telegram"
    status, body = await call(api, "getUpdates")
    assert status == 409 and "webhook is active" in body["description"]
    api.send_user_message(USER, "pending")
    assert (await call(api, "deleteWebhook", drop_pending_updates="true"))[0] == 200
    assert (await call(api, "getUpdates"))[1]["result"] == []


# -- the driver sees what a person sees ----------------------------------------------------------------
async def test_the_driver_sees_stickers_photos_alerts_edits_and_deletions(api):
    user = await FakeDriver(api, USER, "Sari", settle=0.2).start()
    try:
        await call(api, "sendSticker", chat_id=str(USER), sticker="CAACAgIAAxkBAAIDbW")
        markup = {"inline_keyboard": [[{"text": "❌ Batalkan", "callback_data": "cancel"}]]}
        photo = (await upload_photo(api, USER, "<b>Invoice</b>", markup))[1]["result"]
        sticker, invoice = await user.collect(5)
        assert (sticker.kind, sticker.text, sticker.describe()) == ("sticker", "", "sticker")
        assert (invoice.kind, invoice.text, invoice.button_texts) == ("photo", "Invoice", ["❌ Batalkan"])
        callback = api.press_button(USER, photo["message_id"], "cancel")
        await call(api, "answerCallbackQuery", callback_query_id=callback, text="⛔️ Stop spamming!", show_alert="true")
        alert = await user.next_message(5)
        assert (alert.kind, alert.is_alert, alert.show_alert, alert.text) == ("alert", True, True, "⛔️ Stop spamming!")
        waiting = asyncio.create_task(user.wait_for_edit(invoice, timeout=5))
        await call(api, "editMessageCaption", chat_id=str(USER), message_id=str(photo["message_id"]),
                   caption="Kedaluwarsa")
        edit = await waiting
        assert (edit.is_edit, edit.kind, edit.text, edit.message_id) == (True, "photo", "Kedaluwarsa", invoice.message_id)
        assert user.current(invoice.message_id).text == "Kedaluwarsa" and invoice.text == "Invoice"  # history kept
        with pytest.raises(ButtonNotFound):          # the edit took the keyboard away
            await user.click("❌ Batalkan")
        await call(api, "deleteMessage", chat_id=str(USER), message_id=str(photo["message_id"]))
        for _ in range(50):
            if user.current(invoice.message_id).deleted:
                break
            await asyncio.sleep(0.02)
        assert user.current(invoice.message_id).deleted
        with pytest.raises(NoReply, match="was not edited within 0.2 s"):
            await user.wait_for_edit(invoice.message_id, timeout=0.2)
    finally:
        await user.stop()


# -- python-telegram-bot against it -------------------------------------------------------------------------
async def test_ptb_sends_photos_edits_captions_and_tells_blocked_from_unknown(api):
    api.add_users([31, 32], blocked=[32])
    bot = await run_bot(api, ptb_command(api, "ptb_media.py"))
    user = await FakeDriver(api, USER, "Sari", settle=0.3).start()
    try:
        await user.send("/start")
        sticker, invoice = await user.collect(10)
        assert sticker.kind == "sticker" and (invoice.kind, invoice.text) == ("photo", "Invoice tg1-abc & co")
        await user.click("❌ Batalkan")
        alert = await user.next_message(5)
        assert (alert.kind, alert.show_alert, alert.text) == ("alert", True, "⛔️ Stop spamming!")
        assert (await user.wait_for_edit(invoice, timeout=5)).text == "Kedaluwarsa"
        assert [m.is_edit for m in user.drain()] == [True]         # the edit is in the inbox too
        await user.send("/notify 31 32 33")
        assert (await user.next_message(5)).text == "31:ok 32:forbidden 33:bad request Chat not found"
        (upload,) = api.calls_to("sendPhoto")
        assert upload.params["photo"]["filename"] == "qris.png" and upload.params["photo"]["size"] > 0
    finally:
        await user.stop()
        code, stderr = await stop_bot(bot)
    assert code == 0, stderr
    assert [e["method"] for e in api.received_by(USER)] == [
        "sendSticker", "sendPhoto", "answerCallbackQuery", "editMessageCaption", "sendMessage"]
    assert api.received_by(31)[0]["text"] == "❌ Pesanan Dibatalkan"


async def test_a_restarted_ptb_bot_does_not_get_old_updates_again(api):
    bot = await run_bot(api, ptb_command(api, "ptb_media.py"))
    user = await FakeDriver(api, USER, "Sari", settle=0.3).start()
    try:
        await user.send("/start")
        assert len(await user.collect(10)) == 2
        await stop_bot(bot)
        bot = await run_bot(api, ptb_command(api, "ptb_media.py"))     # starts again from offset 0
        assert await user.collect(1.5) == []                             # the old /start is not replayed
        await user.send("/start")
        assert len(await user.collect(10)) == 2
    finally:
        await user.stop()
        await stop_bot(bot)
    assert len(api.calls_to("sendSticker")) == 2
