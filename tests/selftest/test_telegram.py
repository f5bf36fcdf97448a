"""The fake Bot API, the drivers, the launcher and broadcast, tested with real client libraries:
python-telegram-bot (through the launcher) and aiogram (TelegramAPIServer.from_base)."""
from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time

import pytest

from deploycheck.telegram import FakeBotAPI, FakeDriver, LiveDriver, NoReply
from deploycheck.telegram.broadcast import BroadcastError, broadcast
from deploycheck.telegram.driver import ButtonNotFound
from deploycheck.telegram.live_driver import LiveDriverError
from deploycheck.telegram.launcher import parse
from fakebot import BOTS, ROOT, call, run_bot, stop_bot  # tests/selftest/fakebot.py


@pytest.fixture
async def api():
    async with FakeBotAPI() as server:
        yield server


# -- the server alone ---------------------------------------------------------------------------------
async def test_unknown_method_is_a_clear_400(api):
    status, body = await call(api, "sendPoll", chat_id="1", question="?")
    assert status == 400 and body["ok"] is False and body["error_code"] == 400
    assert "sendPoll" in body["description"] and "not supported by the fake Bot API" in body["description"]
    assert api.calls[-1].method == "sendPoll" and api.calls[-1].status == 400


async def test_wrong_token_is_401(api):
    status, body = await call(api, "getMe", token="123:wrong")
    assert status == 401 and body["description"] == "Unauthorized"


async def test_rate_limit_answers_429_with_retry_after_then_recovers(api):
    api.add_user(1, "Sari")
    api.rate_limit("sendMessage", retry_after=3, times=1)
    status, body = await call(api, "sendMessage", chat_id="1", text="hi")
    assert status == 429 and body["parameters"] == {"retry_after": 3}
    status, body = await call(api, "sendMessage", chat_id="1", text="hi")
    assert status == 200 and body["result"]["text"] == "hi"


async def test_down_window_answers_502_until_it_passes(api):
    api.down(0.3)
    assert (await call(api, "getMe"))[0] == 502
    await asyncio.sleep(0.35)
    assert (await call(api, "getMe"))[0] == 200


async def test_get_updates_holds_then_answers_at_once_and_forgets_below_offset(api):
    api.add_user(1, "Sari")
    started = time.monotonic()
    status, body = await call(api, "getUpdates", timeout="0.3")
    assert body["result"] == [] and time.monotonic() - started >= 0.25
    waiting = asyncio.create_task(call(api, "getUpdates", timeout="5"))
    await asyncio.sleep(0.1)
    api.send_user_message(1, "/start")
    status, body = await asyncio.wait_for(waiting, 2)
    (update,) = body["result"]
    assert update["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    api.send_user_message(1, "second")
    status, body = await call(api, "getUpdates", offset=str(update["update_id"] + 1))
    assert [u["message"]["text"] for u in body["result"]] == ["second"]


async def test_bad_chat_and_blocked_user(api):
    api.add_user(1, "Sari")
    api.block_bot(1)
    assert (await call(api, "sendMessage", chat_id="1", text="x"))[0] == 403
    status, body = await call(api, "sendMessage", chat_id="999", text="x")
    assert status == 400 and "chat not found" in body["description"]


async def test_the_server_never_logs_its_token(api, caplog):
    caplog.set_level(logging.DEBUG)
    await call(api, "getMe")
    await call(api, "nope")
    assert api.token not in caplog.text and api.token not in repr(api)


# -- real client libraries as subprocesses --------------------------------------------------------------
async def conversation(api, user_id):
    user = await FakeDriver(api, user_id, "Sari", settle=0.2).start()
    try:
        await user.send("/start")
        welcome = await user.next_message(5)
        assert welcome.text == "Hello Sari" and welcome.button_texts[0] == "Ping" and not welcome.is_edit
        await user.click("Ping")
        answers = await user.collect(5)
        assert [(m.text, m.is_alert, m.is_edit) for m in answers] == [("pong!", True, False), ("Pong", False, True)]
        await user.send("hello")
        assert (await user.next_message(5)).text == "echo: hello"
        with pytest.raises(ButtonNotFound, match="no button 'Nope' on screen"):
            await user.click("Nope")
        with pytest.raises(NoReply):
            await user.next_message(0.2)
    finally:
        await user.stop()


async def test_ptb_bot_runs_unmodified_through_the_launcher(api):
    bot = await run_bot(api, [sys.executable, "-m", "deploycheck.telegram.launcher", "--api-url", api.url,
                              str(BOTS / "ptb_echo.py")])
    try:
        await conversation(api, 11)
    finally:
        code, stderr = await stop_bot(bot)
    assert code == 0, stderr
    methods = [c.method for c in api.calls]
    assert methods[:3] == ["getMe", "setMyCommands", "deleteWebhook"] and "getUpdates" in methods
    assert "answerCallbackQuery" in methods and "editMessageText" in methods
    assert api.commands == [{"command": "start", "description": "Start"}]
    assert api.token not in stderr


async def test_aiogram_bot_through_its_api_server_setting(api):
    import aiogram  # noqa: F401  (the `dev` extra, which ./run installs)
    bot = await run_bot(api, [sys.executable, str(BOTS / "aiogram_echo.py")], {"FAKE_API_ROOT": api.url})
    try:
        await conversation(api, 12)
    finally:
        code, stderr = await stop_bot(bot)
    assert code == 0, stderr
    assert api.token not in stderr


async def test_ptb_bot_keeps_polling_after_the_server_was_down(api):
    bot = await run_bot(api, [sys.executable, "-m", "deploycheck.telegram.launcher", "--api-url", api.url,
                              str(BOTS / "ptb_echo.py")])
    try:
        api.down(1.0)
        await asyncio.sleep(1.1)          # the bot's polls fail meanwhile
        user = await FakeDriver(api, 13, "Sari").start()
        await user.send("still there?")
        assert (await user.next_message(15)).text == "echo: still there?"
        assert any(c.status == 502 for c in api.calls_to("getUpdates"))
        await user.stop()
    finally:
        await stop_bot(bot)


# -- launcher arguments -------------------------------------------------------------------------------
def test_launcher_takes_the_bots_own_options_as_the_bots():
    assert parse(["--api-url", "http://x", "-m", "src.main", "--mode", "polling"]) == \
        ("http://x", "src.main", ["--mode", "polling"])
    assert parse(["--api-url=http://x", "bot.py", "--fault", "no_reply"]) == ("http://x", None, ["bot.py", "--fault", "no_reply"])
    with pytest.raises(SystemExit, match="--api-url is required"):
        parse(["bot.py"])


def test_launcher_points_ptb_at_the_fake_and_leaves_chosen_urls_alone():
    code = ("from deploycheck.telegram.launcher import point_ptb_at\n"
            "point_ptb_at('http://127.0.0.1:9/')\n"
            "from telegram.ext import ApplicationBuilder\n"
            "from telegram import Bot\n"
            "print(ApplicationBuilder().token('1:T').build().bot.base_url)\n"
            "print(Bot('1:T', base_url='http://elsewhere/bot').base_url)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.split() == ["http://127.0.0.1:9/bot1:T", "http://elsewhere/bot1:T"], out.stderr


# -- broadcast ------------------------------------------------------------------------------------------
async def test_broadcast_keeps_to_the_rate(api):
    for i in range(1, 21):
        api.add_user(i, f"U{i}")
    started = time.monotonic()
    result = await broadcast(api.url, api.token, range(1, 21), "Maintenance 10 menit", rate=40, timeout=10)
    elapsed = time.monotonic() - started
    assert result == {"delivered": 20, "failed": 0, "blocked": 0}
    assert elapsed >= 19 / 40 - 0.02
    sends = [c.at for c in api.calls_to("sendMessage")]
    assert sends[-1] - sends[0] >= 19 / 40 - 0.02                    # never faster than the rate overall
    assert all(b - a >= 1 / 80 for a, b in zip(sends, sends[1:], strict=False))      # and no bursts (jitter allowed)


async def test_broadcast_waits_out_retry_after_and_counts_blocked_and_failed(api):
    for i in (1, 2, 3):
        api.add_user(i, f"U{i}")
    api.block_bot(2)
    api.rate_limit("sendMessage", retry_after=1, times=1)
    started = time.monotonic()
    result = await broadcast(api.url, api.token, [1, 2, 3, 404], "Maintenance", rate=100, timeout=10)
    assert result == {"delivered": 2, "failed": 1, "blocked": 1}
    assert time.monotonic() - started >= 1.0
    statuses = [c.status for c in api.calls_to("sendMessage")]
    assert statuses[:2] == [429, 200]


async def test_broadcast_gives_up_at_its_timeout(api):
    api.add_user(1, "U1")
    api.rate_limit("sendMessage", retry_after=5, times=10)
    started = time.monotonic()
    assert await broadcast(api.url, api.token, [1], "x", timeout=1) == {"delivered": 0, "failed": 1, "blocked": 0}
    assert time.monotonic() - started < 5  # 1 s and slack for a busy 2-core machine


async def test_broadcast_never_shows_the_token(caplog):
    token = "123456:SECRET-token-for-the-test"
    caplog.set_level(logging.DEBUG)
    for url in ("http://127.0.0.1:9", "http://bad host:x"):     # refused; an invalid URL (aiohttp quotes it)
        result = await broadcast(url, token, [1], "x", timeout=1)
        assert result == {"delivered": 0, "failed": 1, "blocked": 0}
    with pytest.raises(BroadcastError) as failure:
        await broadcast("http://127.0.0.1:9", token, [1], "x", rate=0)
    assert "SECRET" not in caplog.text and "SECRET" not in str(failure.value)
    assert "<token>" in caplog.text


# -- live driver, without Telegram ---------------------------------------------------------------------
def test_live_driver_names_what_is_missing(monkeypatch):
    for name in ("TELEGRAM_API_ID", "TELEGRAM_API_HASH", "TELEGRAM_SESSION", "TELEGRAM_BOT_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(LiveDriverError, match="missing: TELEGRAM_API_ID, TELEGRAM_API_HASH, TELEGRAM_SESSION, "
                                              "TELEGRAM_BOT_USERNAME"):
        LiveDriver.from_env()


async def test_live_driver_never_shows_its_session(monkeypatch):
    session = "1SECRETSESSIONSTRINGthatmustneverbeshown=="
    monkeypatch.setenv("TELEGRAM_API_ID", "12345")
    monkeypatch.setenv("TELEGRAM_API_HASH", "abcdef0123456789")
    monkeypatch.setenv("TELEGRAM_SESSION", session)
    driver = LiveDriver.from_env("@toko_bot")
    assert "SECRET" not in repr(driver) and "abcdef" not in repr(driver)
    import telethon  # noqa: F401  (the `dev` extra, which ./run installs)
    with pytest.raises(LiveDriverError) as failure:
        await driver.start()           # not a valid StringSession: refused before any network use
    assert "SECRET" not in str(failure.value) and failure.value.__cause__ is None
