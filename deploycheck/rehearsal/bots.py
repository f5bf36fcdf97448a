"""The bot a rehearsal's service controls, like production's: before the window the previous release runs
(from a worktree of its own, as the server ran it before anyone pulled); every start runs the code the
checkout has at that moment: the release after the update (9.x, 10.1), the previous one after the code
rollback (16.3, 16.4)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from deploycheck.rehearsal.botprocess import BotProcess
from deploycheck.rehearsal.checkout import git


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

    def start(self) -> "RehearsalBots":
        if not self.running:
            code, self.first = self.first or self.checkout, None
            self.current = self.make(code)
            self.current.start()
        return self

    async def wait_ready(self, timeout: float = 60) -> float:
        return await self.current.wait_ready(timeout)

    async def stop(self, timeout: float = 15) -> list[int | None]:
        return await self.current.stop(timeout) if self.current else []
