"""The reference bot (fixtures/bot/) as a process: start, wait until it polls, stop with SIGINT.

The rehearsal's deploy steps stop and start it like the real service; the smoke self-tests start
broken variants of it (`fault=`). It always runs through the launcher, pointed at a Bot API server
(normally a FakeBotAPI in this process).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path

from deploycheck.infra.process import Process, ProcessExited, ProcessNotReady
from deploycheck.resources import ROOT
from deploycheck.telegram.fake_api import FakeBotAPI

BOT_SCRIPT = ROOT / "fixtures" / "bot" / "main.py"
REHEARSAL_USER_ID = 7000000001
REHEARSAL_USER_NAME = "Sari"
REHEARSAL_ADMIN_ID = 7000000002
REHEARSAL_ADMIN_NAME = "Budi"
REHEARSAL_STORE_NAME = "Toko Uji Deploycheck"
READY_LINE = "polling for updates"     # what main.py logs once set up (used when the server is not a fake here)


class ReferenceBotError(RuntimeError):
    pass


class ReferenceBot:
    """One reference bot process. `start(...)`, `await wait_ready()`, `await stop()`; `pid`, `log_text()`."""

    def __init__(self, script: Path = BOT_SCRIPT, python: str = sys.executable):
        self.script, self.python = Path(script), python
        self.process: Process | None = None
        self.log_path: Path | None = None
        self._token = ""
        self._api_url = ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self, dsn: str, api_url: str, token: str, admin_ids=(REHEARSAL_ADMIN_ID,),
              store_name: str = REHEARSAL_STORE_NAME, log_path: str | Path | None = None,
              fault: str | None = None, extra_env: dict | None = None) -> "ReferenceBot":
        if self.running:
            raise ReferenceBotError(f"the reference bot is already running (pid {self.pid}); stop it first")
        if not self.script.is_file():
            raise ReferenceBotError(f"reference bot not found at {self.script}")
        self._token, self._api_url = token, api_url.rstrip("/")
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="refbot-", suffix=".log")[1])
        env = {**os.environ, **(extra_env or {}), "TELEGRAM_BOT_TOKEN": token, "DATABASE_URL": dsn,
               "TELEGRAM_ADMIN_IDS": json.dumps([int(a) for a in admin_ids]), "BOT_STORE_NAME": store_name,
               "LOG_LEVEL": (extra_env or {}).get("LOG_LEVEL", "INFO"), "PYTHONUNBUFFERED": "1"}
        env.pop("BOT_FAULT", None)
        if fault:
            env["BOT_FAULT"] = fault
        command = [self.python, "-m", "deploycheck.telegram.launcher", "--api-url", self._api_url, str(self.script)]
        # Own session: a Ctrl-C meant for pytest does not hit the bot; we stop it ourselves (SIGINT, as systemd).
        self.process = Process(command, name="the reference bot", log=self.log_path, stop_signal=signal.SIGINT,
                               env=env, start_new_session=True).start()
        return self

    def log_text(self) -> str:
        """The bot's log so far, token removed."""
        if not self.log_path or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return text.replace(self._token, "<token>") if self._token else text

    def _tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    async def wait_ready(self, timeout: float = 15.0) -> float:
        """Until the bot's first getUpdates reaches the server; returns seconds since start."""
        if self.process is None:
            raise ReferenceBotError("the reference bot was not started")
        api = FakeBotAPI.running.get(self._api_url)
        since = self.process.started_at

        def polls() -> bool:
            if api is not None:
                return any(c.at >= since and c.method.lower() == "getupdates" for c in api.calls)
            return READY_LINE in self.log_text()
        try:
            return await self.process.wait_ready_async(polls, timeout, interval=0.02)
        except ProcessExited as exc:
            raise ReferenceBotError(f"the reference bot exited with code {exc.returncode} before "
                                    f"polling; its log ({self.log_path}) ends with:\n{self._tail()}") from None
        except ProcessNotReady:
            raise ReferenceBotError(f"the reference bot did not start polling within {timeout:g} s; its log "
                                    f"({self.log_path}) ends with:\n{self._tail()}") from None

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (as systemd's stop would ask), then SIGKILL after `timeout`; returns the exit code.
        Async because the bot's last getUpdates may need this process's event loop (the fake) to answer."""
        if self.process is None:
            return None
        return await self.process.stop_async(timeout)

    def __repr__(self) -> str:
        return f"<ReferenceBot pid={self.pid} running={self.running}>"
