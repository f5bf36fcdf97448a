"""The operator's bot as the rehearsal runs it: its checkout's own code, in its own environment, with its
own settings (a tenant's bot.env), and the rehearsal's database, token, admin and fakes put in.

bot-auto-order runs two processes: the bot (`python -m src.main --mode polling`) and the payment webhook
server (`python -m src.server`); both talk to Telegram. Each goes through the launcher (PTB pointed at the
fake Bot API, raw HTTP routed to the fakes, everything else refused and listed), with the bot's
interpreter: deploycheck reaches it through a folder on PYTHONPATH that holds only the deploycheck
package, so nothing else of ours can shadow the bot's modules.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
import time
from pathlib import Path

import deploycheck
from deploycheck.infra.process import Process, ProcessExited, ProcessNotReady, stop_async, wait_ready_async
from deploycheck.infra.tunnel import free_port  # noqa: F401  (bots.py takes it from here)

READY_TIMEOUT = 60


class BotStartError(RuntimeError):
    pass


def default_commands(checkout: Path, server_port: int) -> list[list[str]]:
    """bot-auto-order's layout: the bot in polling mode, and the webhook server when the checkout has one."""
    if not (checkout / "src" / "main.py").is_file():
        raise BotStartError(f"{checkout} has no src/main.py: give the bot's command with --bot-command")
    commands = [["-m", "src.main", "--mode", "polling"]]
    if (checkout / "src" / "server.py").is_file():
        commands.append(["-m", "src.server", "--host", "127.0.0.1", "--port", str(server_port)])
    return commands


def shim() -> Path:
    """A folder holding only a link to the deploycheck package, for the bot interpreter's PYTHONPATH."""
    folder = Path(tempfile.gettempdir()) / f"deploycheck-shim-{os.getuid()}"
    link = folder / "deploycheck"
    folder.mkdir(exist_ok=True)
    if not link.exists():
        link.symlink_to(Path(deploycheck.__file__).resolve().parent)
    return folder


class BotProcess:
    """The bot's processes: `start()`, `await wait_ready()`, `await stop()`, `pids`, `log_text()`."""

    def __init__(self, checkout: Path, python: str, commands: list[list[str]], env: dict[str, str],
                 api_url: str, log_dir: Path, token: str, server_port: int | None = None, polled=None):
        self.checkout, self.python, self.commands = Path(checkout), python, commands
        self.polled = polled  # polled(since): the bot's first getUpdates reached the fake after `since`
        self.env, self.api_url, self.token, self.server_port = env, api_url, token, server_port
        self.log_dir = Path(log_dir)
        self.processes: list[Process] = []
        self.started_at = 0.0

    @property
    def running(self) -> bool:
        return bool(self.processes) and all(p.running for p in self.processes)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.running]

    @property
    def pid(self) -> int | None:
        return self.pids[0] if self.pids else None

    def start(self) -> "BotProcess":
        if self.running:
            return self
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join([str(shim()), str(self.checkout)])}
        for name in ("VIRTUAL_ENV", "PYTHONHOME"):  # deploycheck's own environment is not the bot's
            env.pop(name, None)
        self.processes, self.started_at = [], time.monotonic()
        for number, command in enumerate(self.commands):
            self.processes.append(Process(
                [self.python, "-m", "deploycheck.telegram.launcher", "--api-url", self.api_url, *command],
                name=f"`{self.python} -m {' '.join(command[1:])}`", log=self.log_dir / f"process-{number}.log",
                stop_signal=signal.SIGINT, cwd=self.checkout, env=env,
                start_new_session=True).start())  # a Ctrl-C meant for pytest does not reach the bot
        return self

    def log_text(self) -> str:
        """Every process's output (the bot also keeps its own logs/ folder), its token masked."""
        parts = []
        for path in sorted(self.log_dir.glob("process-*.log")):
            parts.append(path.read_text(errors="replace"))
        return self._masked("\n".join(parts))

    def _masked(self, text: str) -> str:
        return text.replace(self.token, "<token>") if self.token else text

    def _server_listens(self) -> bool:
        if not self.server_port:
            return True
        try:
            socket.create_connection(("127.0.0.1", self.server_port), timeout=0.5).close()
            return True
        except OSError:
            return False

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        """Until the bot polls (`polled()`: its first getUpdates reached the fake) and the webhook server
        listens; a process that exits first fails with its own last lines (an import error, a setting)."""
        def ready() -> bool:
            return (self.polled is None or self.polled(self.started_at)) and self._server_listens()
        try:
            return await wait_ready_async(self.processes, ready, timeout, interval=0.1, since=self.started_at)
        except ProcessExited as exc:
            raise BotStartError(f"{exc.process.name} exited with code {exc.returncode} in {self.checkout}; its "
                                f"output ends with:\n{self._masked(exc.tail)}") from None
        except ProcessNotReady:
            raise BotStartError(f"the bot in {self.checkout} did not start polling within {timeout:g} s; its "
                                f"output ends with:\n{self.log_text()[-1500:]}") from None

    async def stop(self, timeout: float = 15.0) -> list[int | None]:
        """SIGINT, as systemd's stop would send, to all of them, then SIGKILL after `timeout`."""
        return await stop_async(self.processes, timeout)


def rehearsal_settings(base: dict[str, str], dsn: str, token: str, admin_id: int, routes: dict[str, str],
                       refused_log: Path, gateway_url: str) -> dict[str, str]:
    """The tenant's settings with what a rehearsal must put in: its database and token, its admin, the
    fakes, and the jobs that would reach outside (owner alerts, off-site backups) switched off. The stand-in's
    own addresses for Telegram and Pakasir (TELEGRAM_API_BASE_URL, PAKASIR_BASE_URL, which a test shop's bot.env
    may hold) are dropped: the guard routes the bot to the rehearsal's fakes, as it routes the real bot."""
    base = {k: v for k, v in base.items() if k not in ("TELEGRAM_API_BASE_URL", "PAKASIR_BASE_URL")}
    return {**base, "DATABASE_URL": dsn, "TELEGRAM_BOT_TOKEN": token,
            "TELEGRAM_ADMIN_IDS": json.dumps([admin_id]), "TELEGRAM_OWNER_IDS": json.dumps([admin_id]),
            "PAKASIR_PROJECT_SLUG": base.get("PAKASIR_PROJECT_SLUG") or "rehearsal",
            "PAKASIR_API_KEY": "rehearsal-key", "PAKASIR_PUBLIC_DOMAIN": gateway_url,
            "PAKASIR_WEBHOOK_SECRET": "", "TELEGRAM_WEBHOOK_URL": "",
            "ENABLE_OWNER_ALERTS": "false", "ENABLE_AUTO_BACKUP": "false",
            "DEPLOYCHECK_ROUTES": json.dumps(routes), "DEPLOYCHECK_REFUSED_LOG": str(refused_log)}
