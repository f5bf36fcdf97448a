"""The bot a rehearsal's service controls, like production's: before the window the previous release runs
(from a worktree of its own, as the server ran it before anyone pulled); every start runs the code the
checkout has at that moment: the release after the update (9.x, 10.1), the previous one after the code
rollback (16.3, 16.4)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable

from deploycheck.rehearsal import botprocess, container_guard
from deploycheck.rehearsal.botprocess import BotProcess
from deploycheck.rehearsal.checkout import git
from deploycheck.rehearsal.image_bot import ImageBot

IMPORT_TIMEOUT = 120


def checkout_bot(code: Path, python: str, dsn: str, api, gateway, logs: Path, base_env: dict, admin_id: int,
                 commands: list[list[str]] | None = None) -> BotProcess:
    """The bot of a checkout on `dsn`, behind the fake Bot API `api` and the fake gateway (whose webhook now
    points at this bot's server). Ready when its first getUpdates reaches `api`."""
    port = botprocess.free_port()
    gateway.webhook_url = f"http://127.0.0.1:{port}/webhooks/pakasir"
    routes = {"api.telegram.org": api.url, "app.pakasir.com": gateway.url}
    settings = botprocess.rehearsal_settings(base_env, dsn, api.token, admin_id, routes,
                                             Path(logs) / "refused.jsonl", gateway.url)
    gateway.project, gateway.api_key = settings["PAKASIR_PROJECT_SLUG"], settings["PAKASIR_API_KEY"]
    commands = commands or botprocess.default_commands(Path(code), port)
    server = port if any("src.server" in part for command in commands for part in command) else None
    return BotProcess(code, python, commands, settings, api.url, logs, api.token, server, polled_by(api))


def polled_by(api) -> Callable[[float], bool]:
    """polled(since): the bot's first getUpdates reached the fake Bot API after `since` (it is ready)."""
    return lambda since: any(c.at >= since and c.method.lower() == "getupdates" for c in api.calls)


def image_bot(image: str, dsn: str, api, gateway, logs: Path, base_env: dict, admin_id: int):
    """The release image's bot on `dsn` in a container of its own, behind the fakes (5.3+release in a Docker
    shop): its own entry point, as the container rehearsal's shop runs."""
    port = botprocess.free_port()
    gateway.webhook_url = f"http://127.0.0.1:{port}/webhooks/pakasir"
    guard, settings = container_settings(image, Path(logs) / "trial-guard", dsn, api, gateway, base_env, admin_id)
    settings.update({"PAKASIR_HOST": "127.0.0.1", "PAKASIR_PORT": str(port)})
    return ImageBot(image, settings, api.token, polled_by(api), Path(logs), guard.volumes())


def container_settings(image: str, folder: Path, dsn: str, api, gateway, base_env: dict,
                       admin_id: int) -> tuple[container_guard.ContainerGuard, dict[str, str]]:
    """The guard and the settings of a rehearsal's bot in its image: the rehearsal's database, token and admin,
    polling, every Python process behind the outbound guard mounted into the container (container_guard), the
    fakes as Telegram and Pakasir."""
    guard = container_guard.ContainerGuard(container_guard.lay_out(folder),
                                           {"api.telegram.org": api.url, "app.pakasir.com": gateway.url}, api.url)
    settings = botprocess.rehearsal_settings(base_env, dsn, api.token, admin_id, guard.routes, guard.refused_log,
                                             gateway.url)
    settings.update({**guard.settings(container_guard.image_pythonpath(image)), "TELEGRAM_MODE": "polling"})
    gateway.project, gateway.api_key = settings["PAKASIR_PROJECT_SLUG"], settings["PAKASIR_API_KEY"]
    return guard, settings


def import_problem(python: str, code: Path) -> str | None:
    """Does the release's code import with the bot's interpreter? Its own error when not (a SyntaxError, a
    missing package); None when it does. bot-auto-order reads its settings in main(), not at import."""
    # bot-auto-order is a package (src/); the old reference bot a script beside its modules (bot/).
    package = (Path(code) / "src" / "main.py").is_file()
    module, path = ("src.main", Path(code)) if package else ("main", Path(code) / "bot")
    try:
        done = subprocess.run([python, "-c", f"import importlib; importlib.import_module({module!r})"],
                              cwd=code, capture_output=True, text=True, timeout=IMPORT_TIMEOUT,
                              env={**os.environ, "PYTHONPATH": str(path)})
    except subprocess.TimeoutExpired:
        return f"importing {module} with {python} did not finish within {IMPORT_TIMEOUT} s"
    if done.returncode == 0:
        return None
    return f"`{python} -c 'import {module}'` in {code} fails:\n" + "\n".join(done.stderr.strip().splitlines()[-8:])


def previous_worktree(checkout: Path, previous_ref: str | None, folder: Path) -> Path | None:
    """A worktree of the previous release, or None when there is none to find (then the checkout's own code
    runs before the window too)."""
    try:
        ref = previous_ref or git(checkout, "describe", "--tags", "--abbrev=0", "HEAD^")
        git(checkout, "worktree", "add", "--detach", "-q", str(folder), ref)
    except RuntimeError:
        return None
    return folder


class RehearsalBots:
    """running, pid, pids, log_text(), start(), wait_ready(), stop(): what the rehearsal's service needs."""

    def __init__(self, make: Callable[[Path], BotProcess], checkout: Path, before_window: Path | None):
        self.make, self.checkout = make, Path(checkout)
        self.first = before_window          # the code of the first start: the previous release, if found
        self.current: BotProcess | None = None
        self.starts = 0                     # bot processes started so far (each installs the guard once)

    @property
    def running(self) -> bool:
        return bool(self.current and self.current.running)

    @property
    def pid(self) -> int | None:
        return self.current.pid if self.current else None

    @property
    def pids(self) -> list[int]:
        return self.current.pids if self.current else []

    def log_text(self) -> str:
        return self.current.log_text() if self.current else ""

    @property
    def refused_log(self) -> Path | None:
        """Where the launcher's outbound guard writes what it refused (and that it was installed)."""
        return Path(self.current.env["DEPLOYCHECK_REFUSED_LOG"]) if self.current else None

    @property
    def started_processes(self) -> int:
        return self.starts


    def start(self) -> "RehearsalBots":
        if not self.running:
            code, self.first = self.first or self.checkout, None
            self.current = self.make(code)
            self.current.start()
            self.starts += len(self.current.commands)
        return self

    async def wait_ready(self, timeout: float = 60) -> float:
        return await self.current.wait_ready(timeout)

    async def stop(self, timeout: float = 15) -> list[int | None]:
        return await self.current.stop(timeout) if self.current else []
