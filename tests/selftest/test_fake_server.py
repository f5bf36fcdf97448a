"""The test fakes that outlive a phase's process (deploycheck.rehearsal.fake_server) and their clients
(deploycheck.telegram.remote_fake): the stand-in bot (fixtures/standin-bot) runs as a shop of its own against the
fake server's Telegram and Pakasir, as the self-tests' "production" shop does; a FakeDriver on a RemoteFakeAPI plays
its user, the order flow pays through a RemoteGateway, a live `pytest -m smoke` with DEPLOYCHECK_TEST_FAKES does
both through the plugin's fixtures, and the server keeps the chats' history from one client process to the next.
A dead or hanging server and a bad state file are clear errors."""
from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from deploycheck.checks import conversation_profile, smoke, smoke_data
from deploycheck.checks.conversation import Conversation
from deploycheck.rehearsal.fake_gateway import WEBHOOK_PATH
from deploycheck.rehearsal.refbot import REHEARSAL_ADMIN_ID, REHEARSAL_USER_ID
from deploycheck.telegram.driver import FakeDriver
from deploycheck.telegram.remote_fake import (TEST_FAKES, FakeState, RemoteFakeAPI, RemoteFakeError, RemoteGateway,
                                              read_state)
from standin import ADMIN, STANDIN, USER, StandinShop, free_port, migrated_shop  # tests/selftest/standin.py

PACE = 1.1     # the stand-in's anti-spam joins actions less than 1 s apart
ADMINS = json.dumps([ADMIN, REHEARSAL_ADMIN_ID])   # this file's admin, and the plugin's (the rehearsal's id)


class FakeServer:
    """`python -m deploycheck.rehearsal.fake_server` as a process of its own, on free ports."""

    def __init__(self, folder: Path):
        self.state_path = folder / "fakes" / "state.json"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "FakeServer":
        ports = [str(free_port()) for _ in range(3)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploycheck.rehearsal.fake_server", "--telegram-port", ports[0],
             "--gateway-port", ports[1], "--control-port", ports[2], "--state", str(self.state_path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.state_path.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"the fake server did not start: {self.output}")
            time.sleep(0.05)
        self.state = read_state(self.state_path)
        return self

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.returncode is not None:     # stopped already
            return self.process.returncode
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            self.output = self.process.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output = self.process.communicate()[0]
        return self.process.returncode


class RemoteShop(StandinShop):
    """The stand-in as a shop of its own, set up (as its bot.env would be) for the fake server's Telegram and
    Pakasir; this process plays its user and admin through the control API."""

    def __init__(self, dsn: str, tmp_path: Path, state: FakeState):
        super().__init__(dsn, tmp_path, TELEGRAM_ADMIN_IDS=ADMINS, TELEGRAM_OWNER_IDS=ADMINS)
        self.state = state

    async def __aenter__(self) -> "RemoteShop":
        self.api, self.gateway = RemoteFakeAPI(self.state), RemoteGateway(self.state)
        port = free_port()
        self.gateway.configure(webhook_url=f"http://127.0.0.1:{port}{WEBHOOK_PATH}")
        self._spawn(["src.main", "--mode", "polling"], self.tmp / "bot.log")
        self._spawn(["src.server", "--host", "127.0.0.1", "--port", str(port)], self.tmp / "server.log")
        deadline = time.monotonic() + 20
        while not self.api.calls_to("getUpdates"):
            if time.monotonic() > deadline:
                raise RuntimeError("the stand-in did not poll the fake server: " + (self.tmp / "bot.log").read_text())
            await asyncio.sleep(0.1)
        await self._wait_port(port)
        self.user = await FakeDriver(self.api, USER, "Sari", settle=0.3).start()
        self.admin = await FakeDriver(self.api, ADMIN, "Budi", settle=0.3).start()
        self.db = await asyncpg.connect(self.dsn)
        self.talk = Conversation(conversation_profile.load("bot-auto-order-v0.7.0"),
                                 {"user": self.user, "admin": self.admin}, self.db, self.gateway)
        return self

    async def __aexit__(self, *exc) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for driver in (self.user, self.admin):
            await driver.stop()
        await self.db.close()
        await self.api.close()
        await self.gateway.close()


@pytest.fixture
def fakes(tmp_path):
    server = FakeServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
async def shop(fresh_db, tmp_path, fakes):
    await migrated_shop(fresh_db)
    async with RemoteShop(fresh_db, tmp_path, fakes.state) as running:
        yield running


def welcome_of(shown) -> object:
    found = [m for m in shown if "📋 INFORMASI" in m.button_texts]
    assert found, f"no welcome with its inline buttons; the user saw {[m.describe() for m in shown]}"
    return found[0]


# -- a FakeDriver on the remote fake -------------------------------------------------------------------------
async def test_a_fake_driver_on_the_remote_fake_gets_the_welcome_with_its_buttons_and_presses_one(shop):
    await shop.user.send("/start")
    shown = await shop.user.collect(timeout=15, settle=1.0)
    welcome = welcome_of(shown)
    assert "Hai, Sari" in welcome.text and welcome.button_texts == ["📋 INFORMASI", "📖 Cara Order"]
    assert any("🛍 Semua Produk" in row for m in shown for row in m.reply_keyboard)
    assert [m.kind for m in shown][0] == "sticker"
    await asyncio.sleep(PACE)
    await shop.user.click("📋 INFORMASI")
    answer = await shop.user.collect(timeout=15)
    assert any("Informasi Akun Kamu" in m.text and "Nama: Sari" in m.text for m in answer), answer
    # the fake's own log of what the user received, as the conversation fixture adds it to the evidence
    log = shop.api.received_by(USER)
    assert [e["method"] for e in log][:2] == ["sendSticker", "sendMessage"] and "Informasi Akun Kamu" in log[-1]["text"]


async def test_the_order_flow_pays_through_the_remote_gateway(shop):
    try:
        found = await smoke.order_flow(shop.talk, shop.run)
    finally:
        await smoke_data.cleanup(shop.db, user_telegram_ids=[USER, ADMIN])
    assert found["Order Flow"] == "OK", found
    (created,) = shop.gateway.requests_to("/api/transactioncreate/qris")
    assert created["status"] == 200 and created["body"]["api_key"] == "<api_key>"      # blanked
    order_id = created["body"]["order_id"]
    assert shop.gateway.payments[order_id]["status"] == "completed"
    assert [(h.body["order_id"], h.status) for h in shop.gateway.webhooks] == [(order_id, 200)]
    with pytest.raises(RemoteFakeError, match=r"refused POST /gateway/pay: 404 no payment for order_id 'tg1-nope'"):
        await shop.gateway.pay("tg1-nope")


CLIENT = """
import asyncio, sys
from deploycheck.telegram.driver import FakeDriver
from deploycheck.telegram.remote_fake import RemoteFakeAPI, read_state

async def main():
    api = RemoteFakeAPI(read_state(sys.argv[1]))
    user = await FakeDriver(api, int(sys.argv[2]), "Sari").start()
    await user.send("/start")
    shown = await user.collect(timeout=15, settle=1.0)
    print(max(m.message_id for m in shown if m.message_id))
    await user.stop()
    await api.close()

asyncio.run(main())
"""


async def test_the_fake_server_outlives_a_client_process_and_the_next_session_sees_the_history(shop, fakes, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    first = subprocess.run([sys.executable, str(script), str(fakes.state_path), str(USER)], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert first.returncode == 0, first.stderr
    last_of_first = int(first.stdout.split()[-1])
    await asyncio.sleep(PACE)
    # The second session: a new client here. The chat's history is on the server; its outbox starts from now.
    api = RemoteFakeAPI(fakes.state)
    history = api.received_by(USER)
    assert any(e.get("message_id") == last_of_first for e in history) and "Hai, Sari" in json.dumps(history)
    user = await FakeDriver(api, USER, "Sari").start()
    try:
        await user.send("/start")
        shown = await user.collect(timeout=15, settle=1.0)
    finally:
        await user.stop()
        await api.close()
    assert welcome_of(shown).message_id > last_of_first
    assert min(m.message_id for m in shown if m.message_id) > last_of_first, "the first session's messages again"
    assert len(shop.api.received_by(USER)) == 2 * len(history)


# -- the plugin's switch --------------------------------------------------------------------------------------
async def test_a_live_smoke_run_with_the_switch_plays_its_users_and_pays_on_the_test_fakes(shop, fakes, project,
                                                                                          copy_tests, monkeypatch):
    copy_tests("smoke/test_smoke.py")
    for name, value in (("DATABASE_URL", shop.dsn), (TEST_FAKES, str(fakes.state_path)), ("BOT_STORE_NAME", "Toko Uji")):
        monkeypatch.setenv(name, value)
    # --bot-dir=PATH in one word: given apart, pytest would take the folder for a test path and its rootdir
    result = project.runpytest_subprocess("-m", "smoke", "-k", "bot_responds_to_start or order_flow", "--execute",
                                          "-p", "no:cacheprovider", f"--bot-dir={STANDIN}", timeout=300)
    out = result.stdout.str()
    assert re.search(rf"deploycheck: TEST FAKES, not Telegram and Pakasir: {re.escape(fakes.state.telegram_url)} .*"
                     rf"{TEST_FAKES}={re.escape(str(fakes.state_path))}", out), out
    result.assert_outcomes(passed=2)
    written = "".join(p.read_text() for p in (project.path / "reports").rglob("*") if p.is_file())
    assert "Telegram Log (user)" in written and "Hai, Sari" in written      # the fake's log, in the evidence
    assert "TEST FAKES, not Telegram and Pakasir" in written                # the HTML report's metadata
    assert fakes.state.token not in out + result.stderr.str() + written
    # The run's process has ended; the server kept what its users received and what the gateway paid.
    assert "Hai, Sari" in json.dumps(shop.api.received_by(REHEARSAL_USER_ID))
    assert [h.status for h in shop.gateway.webhooks] == [200]
    assert not await shop.db.fetchval("SELECT count(*) FROM users WHERE telegram_id = ANY($1::bigint[])",
                                      [REHEARSAL_USER_ID, REHEARSAL_ADMIN_ID])    # smoke_run cleaned up


def test_a_live_run_with_a_bad_state_file_stops_before_anything_runs(project, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "postgresql://ops@db.invalid:5432/bot_auto_order")
    state = tmp_path / "nowhere.json"
    monkeypatch.setenv(TEST_FAKES, str(state))
    result = project.runpytest("-m", "smoke")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{TEST_FAKES}={state}: no such state file; start the test fake server first*"])


# -- errors ---------------------------------------------------------------------------------------------------
def test_the_server_writes_its_state_for_its_owner_only_never_prints_the_token_and_stops_on_sigterm(fakes):
    assert fakes.state_path.stat().st_mode & 0o777 == 0o600
    saved = json.loads(fakes.state_path.read_text())
    assert set(saved) == {"telegram_url", "token", "gateway_url", "control_url", "pid"}
    assert saved["pid"] == fakes.process.pid
    assert fakes.stop() == 0
    assert not fakes.state_path.exists()
    assert "deploycheck test fakes: Telegram http://127.0.0.1:" in fakes.output
    assert saved["token"] not in fakes.output


async def test_a_dead_fake_server_is_a_clear_error(fakes):
    api, gateway = RemoteFakeAPI(fakes.state), RemoteGateway(fakes.state)
    assert api.users == {}
    fakes.stop(signal.SIGKILL)        # gone without a word: its state file stays behind
    control = re.escape(fakes.state.control_url)
    with pytest.raises(RemoteFakeError, match=rf"^the test fake Telegram at {control} does not answer: "
                                              rf"ConnectionRefusedError.*still running \({TEST_FAKES}\)"):
        FakeDriver(api, USER, "Sari")
    with pytest.raises(RemoteFakeError, match=rf"^the test fake Pakasir gateway at {control} does not answer"):
        await gateway.pay("tg1-x")
    await api.close()
    await gateway.close()


def test_a_fake_server_that_hangs_is_a_clear_error_within_the_timeout():
    with socket.socket() as listening:       # accepts connections, answers nothing
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        api = RemoteFakeAPI(FakeState(url, "1:x", url, url), timeout=0.5)
        began = time.monotonic()
        with pytest.raises(RemoteFakeError, match="does not answer: .*timed out"):
            api.received_by(USER)
        assert time.monotonic() - began < 5


@pytest.mark.parametrize("content, says", [
    (None, "no such state file; start the test fake server first"),
    ("{not json", "cannot read the test fakes' state file: Expecting property name"),
    ("[]", "the test fakes' state file is not a JSON object"),
    ('{"telegram_url": "http://127.0.0.1:1", "token": ""}', "the test fakes' state file lacks token, gateway_url, "
                                                             "control_url"),
])
def test_a_bad_state_file_is_a_clear_error_naming_the_variable_and_the_file(tmp_path, content, says):
    path = tmp_path / "state.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(RemoteFakeError) as failed:
        read_state(path)
    assert str(failed.value).startswith(f"{TEST_FAKES}={path}: {says}")
