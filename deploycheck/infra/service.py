"""The bot service behind one interface (Service: status, stop, start, readiness, processes, logs), as
pytest-testinfra does it: systemd (on the bot host), a Docker shop's compose service (infra.compose), or in a
rehearsal a plain process with its own log file. A check asks the service, never which backend it is. Every call has a timeout."""
from __future__ import annotations

import abc
import asyncio
import json
import re
import shlex
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from deploycheck.infra.host import BotHost, HostTimeout
from deploycheck.failure import CheckFailed

COMMAND_TIMEOUT = 60
LEVEL = re.compile(r"\b(CRITICAL|ERROR|WARNING|WARN)\b")
STAMP = re.compile(r"^\[?(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)")


class ServiceError(CheckFailed):  # a finding like any check's: its message is the cause
    pass


@dataclass(frozen=True)
class LogLine:
    time: datetime
    level: str          # ERROR, WARNING or INFO
    text: str


def level_of(text: str, priority: int | None = None) -> str:
    """journald priority when there is one (3 and below are errors, 4 warnings), else the word in the line."""
    if priority is not None and priority <= 3:
        return "ERROR"
    if priority == 4:
        return "WARNING"
    match = LEVEL.search(text)
    if not match:
        return "INFO"
    return {"CRITICAL": "ERROR", "WARN": "WARNING"}.get(match.group(1), match.group(1))


def parse_stamp(text: str) -> datetime | None:
    match = STAMP.match(text)
    if not match:
        return None
    stamp = datetime.fromisoformat(match.group(1).replace(",", "."))
    return stamp if stamp.tzinfo else stamp.astimezone(timezone.utc)


class Service(abc.ABC):
    """The bot service, whatever runs it. `name` is what the operator knows it by; `kind` the backend."""

    name: str
    kind: str

    @abc.abstractmethod
    def status(self) -> str:
        """The manager's own word for the state (active, inactive, running, exited, ...)."""

    @abc.abstractmethod
    def is_active(self) -> bool:
        ...

    @abc.abstractmethod
    async def start(self, timeout: int = COMMAND_TIMEOUT) -> None:
        ...

    @abc.abstractmethod
    async def stop(self, timeout: int = COMMAND_TIMEOUT) -> None:
        ...

    @abc.abstractmethod
    async def wait_ready(self, since: datetime, timeout: float) -> float:
        """Seconds until the bot polls Telegram again; ServiceError when it does not within the timeout."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """The bot's processes as seen from here (empty where they are not visible, e.g. in a container)."""

    @abc.abstractmethod
    def logs(self, since: datetime) -> list[LogLine]:
        ...

    def settings(self) -> dict[str, str]:
        """The bot's own settings where the service keeps them (a Docker shop's bot.env); empty for a unit."""
        return {}

    def running_image(self) -> dict:
        """The image the service runs (a Docker shop's "Image Id", "Image"); empty for a unit, whose code is
        its checkout (3.2 records that)."""
        return {}

    def use(self, release, why: str) -> dict:
        """Have the service run `release` from its next start (infra.release). A unit runs whatever is checked
        out in its folder, so there is nothing to change; a Docker shop's names an image (infra.compose)."""
        return {}


class Systemd(Service):
    """A systemd unit on the bot host (`systemctl`, `journalctl -o json`)."""

    kind = "systemd"

    def __init__(self, host, unit: str = "bot-auto-order"):
        self.host, self.name = host, unit
        self.shell = BotHost.of(host)

    def _run(self, command: str, timeout: int = COMMAND_TIMEOUT):
        try:
            return self.shell.run(command, timeout=timeout)
        except HostTimeout:
            raise ServiceError(f"`{command}` did not finish within {timeout} s on {self.shell.name}") from None

    def status(self) -> str:
        return self._run(f"systemctl is-active {shlex.quote(self.name)}").stdout.strip() or "unknown"

    def is_active(self) -> bool:
        return self.status() == "active"

    def _control(self, verb: str, timeout: int) -> None:
        result = self._run(f"systemctl {verb} {shlex.quote(self.name)}", timeout)
        if result.rc != 0:
            raise ServiceError(f"systemctl {verb} {self.name} failed (exit {result.rc}): {result.stderr.strip()}; "
                               f"see `systemctl status {self.name}` and `journalctl -u {self.name}`")

    async def stop(self, timeout: int = COMMAND_TIMEOUT) -> None:
        await asyncio.to_thread(self._control, "stop", timeout)

    async def start(self, timeout: int = COMMAND_TIMEOUT) -> None:
        await asyncio.to_thread(self._control, "start", timeout)

    async def wait_ready(self, since: datetime, timeout: float) -> float:
        return await ready_by_log(self, since, timeout)

    def pids(self) -> list[int]:
        out = self._run(f"systemctl show -p MainPID --value {shlex.quote(self.name)}").stdout.strip()
        return [int(out)] if out.isdigit() and int(out) > 0 else []

    def logs(self, since: datetime) -> list[LogLine]:
        out = self._run(f"journalctl -u {shlex.quote(self.name)} -o json --no-pager "
                        f"--since @{int(since.timestamp())}").stdout
        lines = []
        for raw in out.splitlines():
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                continue
            text = record.get("MESSAGE") or ""
            text = text if isinstance(text, str) else bytes(text).decode(errors="replace")
            when = datetime.fromtimestamp(int(record.get("__REALTIME_TIMESTAMP", 0)) / 1e6, timezone.utc)
            priority = int(record["PRIORITY"]) if str(record.get("PRIORITY", "")).isdigit() else None
            lines.append(LogLine(when, level_of(text, priority), text))
        return lines


READY_PATTERN = re.compile(r"(?i)application started|start(ed)? polling|polling for updates")


async def ready_by_log(service, since: datetime, timeout: float) -> float:
    """A real service is ready when it is active and has logged that it polls: no blind sleep."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if service.is_active() and any(READY_PATTERN.search(line.text) for line in service.logs(since)):
            return time.monotonic() - began
        await asyncio.sleep(1)
    raise ServiceError(f"{service.name} did not log that it is polling within {timeout:.0f} s "
                       f"(state: {service.status()}); look at its logs")


async def wait_until(condition, timeout: float, interval: float = 0.1) -> bool:
    """Poll instead of sleeping blindly: true as soon as the condition holds, false at the deadline.
    Async, so the event loop keeps serving (a rehearsal's fake Bot API lives on it)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
