"""The rehearsal's bot as a service: what the fixtures hand out where production has systemd or docker compose,
over the rehearsal's bot processes (rehearsal/bots.py, botprocess.py, or the old reference bot)."""
from __future__ import annotations

from datetime import datetime

from deploycheck.infra.service import COMMAND_TIMEOUT, LogLine, Service, level_of, parse_stamp


class RehearsalBot(Service):
    """The rehearsal's bot: the operator's (or the stand-in, or the old reference bot) from the rehearsal's
    checkout, as processes with log files, talking to the fakes. Ready means its first getUpdates reached the
    fake Bot API (and its webhook server listens)."""

    kind = "process"

    def __init__(self, bot, start_args: dict, name: str = "reference bot"):
        self.bot, self.start_args, self.name = bot, start_args, name

    def status(self) -> str:
        return "active" if self.is_active() else "inactive"

    def is_active(self) -> bool:
        return self.bot.running

    async def start(self, timeout: int = COMMAND_TIMEOUT) -> None:
        if not self.bot.running:
            self.bot.start(**self.start_args)

    async def stop(self, timeout: int = COMMAND_TIMEOUT) -> None:
        await self.bot.stop(timeout=timeout)

    async def wait_ready(self, since: datetime, timeout: float) -> float:
        return await self.bot.wait_ready(timeout)

    def pids(self) -> list[int]:
        if hasattr(self.bot, "pids"):  # the bot and its webhook server
            return list(self.bot.pids)
        return [self.bot.pid] if self.bot.running else []

    def logs(self, since: datetime) -> list[LogLine]:
        # bot-auto-order stamps its lines to the second: a line of the same second as `since` is not older
        lines, when, floor = [], since, since.replace(microsecond=0)
        for raw in self.bot.log_text().splitlines():
            when = parse_stamp(raw) or when  # a traceback's lines belong to the record above them
            if when >= floor:
                lines.append(LogLine(when, level_of(raw), raw))
        return lines
