"""Helpers of the Telegram self-tests (test_telegram.py, test_fake_telegram.py): a raw Bot API call to
the fake, and a real client bot run as a subprocess until its first getUpdates."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
BOTS = Path(__file__).parent / "bots"


async def call(api, method, token=None, **params):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{api.url}/bot{token or api.token}/{method}", data=params,
                                timeout=aiohttp.ClientTimeout(total=10)) as response:
            return response.status, await response.json()


def ptb_command(api, bot: str) -> list[str]:
    """A PTB bot of tests/selftest/bots, pointed at the fake by the launcher."""
    return [sys.executable, "-m", "deploycheck.telegram.launcher", "--api-url", api.url, str(BOTS / bot)]


async def run_bot(api, command, env_extra=None):
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": api.token, **(env_extra or {})}
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await api.wait_for_call("getUpdates", since=started, timeout=20)
    except TimeoutError:
        process.kill()
        raise AssertionError("bot did not poll: " + process.communicate(timeout=5)[1].decode()[-2000:]) from None
    return process


async def stop_bot(process):
    process.send_signal(2)
    for _ in range(200):
        if process.poll() is not None:
            break
        await asyncio.sleep(0.05)
    else:
        process.kill()
    stderr = process.communicate(timeout=5)[1].decode()
    return process.returncode, stderr
