"""The stand-in for bot-auto-order v0.7.0 (fixtures/standin-bot) as the smoke self-tests run it: a v0.6 shop
migrated by the project's runner, the bot and its webhook server behind the fake Bot API and the rehearsal's
fake Pakasir (deploycheck.rehearsal.fake_gateway), a user and an admin, and a Conversation through the
v0.7.0 profile. `async with StandinShop(dsn, tmp_path, fault) as shop: shop.talk, shop.db, shop.run`.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from deploycheck.checks import conversation_profile, smoke_data
from deploycheck.checks.conversation import Conversation
from deploycheck.infra.targets import baseline_generator
from deploycheck.rehearsal.fake_gateway import WEBHOOK_PATH, FakeGateway
from deploycheck.telegram.driver import FakeDriver
from deploycheck.telegram.fake_api import FakeBotAPI

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "fixtures" / "standin-bot"
USER, ADMIN = 7200000001, 7200000002


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def migrated_shop(dsn: str, scale: float = 0.3) -> None:
    """The generated v0.6 shop, migrated to v0.7.0 with the project's runner."""
    conn = await asyncpg.connect(dsn)
    try:
        await baseline_generator().generate(conn, scale=scale)
    finally:
        await conn.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_")} | {"DATABASE_URL": dsn}
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_migration.py"), "--yes",
                             str(ROOT / "scripts" / "migrations" / "001_fix_schema_constraints.sql")],
                            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError("the migration failed: " + result.stdout[-2000:] + result.stderr[-2000:])


class StandinShop:
    def __init__(self, dsn: str, tmp_path: Path, fault: str | None = None, reply_timeout: float | None = None,
                 **env: str):
        self.dsn, self.tmp, self.fault, self.extra = dsn, tmp_path, fault, env
        self.reply_timeout = reply_timeout
        self.processes: list[subprocess.Popen] = []
        self.run = smoke_data.SmokeRun()

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "STANDIN_", "BOT_"))}
        env |= {"TELEGRAM_BOT_TOKEN": self.api.token, "DATABASE_URL": self.dsn, "PAKASIR_PROJECT_SLUG": "dcsmoke",
                "PAKASIR_API_KEY": "fake-key", "TELEGRAM_ADMIN_IDS": json.dumps([ADMIN]),
                "TELEGRAM_OWNER_IDS": str(ADMIN), "BOT_STORE_NAME": "Toko Uji", "PAKASIR_BASE_URL": self.gateway.url,
                "PAKASIR_PUBLIC_DOMAIN": "http://127.0.0.1:9", "PYTHONPATH": str(STANDIN),
                "PYTHONUNBUFFERED": "1", "TELEGRAM_API_BASE_URL": self.api.url,
                "STANDIN_HEALTHCHECK_FIRST_SECONDS": "600"}
        if self.fault:
            env["STANDIN_FAULT"] = self.fault
        return env | self.extra

    def _spawn(self, args: list[str], log: Path) -> None:
        (self.tmp / "bot").mkdir(exist_ok=True)
        with open(log, "wb") as out:
            self.processes.append(subprocess.Popen([sys.executable, "-m", *args], cwd=self.tmp / "bot",
                                                   env=self._env(), stdout=out, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL, start_new_session=True))

    async def __aenter__(self) -> "StandinShop":
        self.api = await FakeBotAPI().start()
        port = free_port()
        self.gateway = await FakeGateway(project="dcsmoke", api_key="fake-key",
                                         webhook_url=f"http://127.0.0.1:{port}{WEBHOOK_PATH}").start()
        self.log = self.tmp / "bot.log"
        self._spawn(["src.main", "--mode", "polling"], self.log)
        self._spawn(["src.server", "--host", "127.0.0.1", "--port", str(port)], self.tmp / "server.log")
        await self.api.wait_for_call("getUpdates", timeout=20)
        await self._wait_port(port)
        self.user = await FakeDriver(self.api, USER, "Sari", settle=0.3).start()
        self.admin = await FakeDriver(self.api, ADMIN, "Budi", settle=0.3).start()
        self.db = await asyncpg.connect(self.dsn)
        profile = conversation_profile.load("bot-auto-order-v0.7.0")
        self.talk = Conversation(profile, {"user": self.user, "admin": self.admin}, self.db, self.gateway,
                                 reply_timeout=self.reply_timeout)
        return self

    async def _wait_port(self, port: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the stand-in's webhook server did not listen within {timeout} s")

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
        for thing in (getattr(self, "user", None), getattr(self, "admin", None)):
            if thing:
                await thing.stop()
        if getattr(self, "db", None):
            await self.db.close()
        await self.gateway.stop()
        await self.api.stop()

    async def cleanup(self) -> dict:
        return await smoke_data.cleanup(self.db, user_telegram_ids=[USER, ADMIN])
