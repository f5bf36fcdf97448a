"""The bot service behind one interface (Service: status, stop, start, readiness, processes, logs), as
pytest-testinfra does it: systemd (on the bot host), docker compose, or in a rehearsal a plain process with
its own log file. A check asks the service, never which backend it is. Every call has a timeout."""
from __future__ import annotations

import abc
import asyncio
import json
import re
import shlex
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

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


class Compose(Service):
    """A docker compose service (`docker compose ps/stop/start/logs`), run on the bot's host like systemctl:
    the compose file (--compose-file) is a path there."""

    kind = "compose"

    def __init__(self, host, service: str = "bot", compose_file: str | Path | None = None):
        self.name, self.shell = service, BotHost.of(host)
        self.base = "docker compose" + (f" -f {shlex.quote(str(compose_file))}" if compose_file else "")

    def _run(self, *args: str, timeout: int = COMMAND_TIMEOUT):
        command = f"{self.base} {' '.join(shlex.quote(a) for a in args)}"
        try:
            result = self.shell.run(command, timeout=timeout)
        except HostTimeout:
            raise ServiceError(f"`{command}` did not finish within {timeout} s on {self.shell.name}") from None
        if result.rc == 127:
            raise ServiceError(f"docker is not installed on {self.shell.name}; use --service systemd:UNIT")
        if result.rc != 0:
            raise ServiceError(f"`docker compose {' '.join(args)}` on {self.shell.name} failed: "
                               f"{result.stderr.strip()[-500:]}")
        return result

    def _containers(self) -> list[dict]:
        out = self._run("ps", "--all", "--format", "json", self.name).stdout.strip()
        if not out:
            return []
        # Compose v2.21+ prints one JSON object per line; older versions a JSON list.
        return json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines()]

    def status(self) -> str:
        states = {c.get("State", "unknown") for c in self._containers()}
        return ",".join(sorted(states)) or "absent"

    def is_active(self) -> bool:
        return self.status() == "running"

    async def stop(self, timeout: int = COMMAND_TIMEOUT) -> None:
        await asyncio.to_thread(self._run, "stop", self.name, timeout=timeout)

    async def start(self, timeout: int = COMMAND_TIMEOUT) -> None:
        await asyncio.to_thread(self._run, "start", self.name, timeout=timeout)

    async def wait_ready(self, since: datetime, timeout: float) -> float:
        return await ready_by_log(self, since, timeout)

    def pids(self) -> list[int]:
        """The containers' main processes as the host numbers them (docker inspect's State.Pid): the host's
        /proc has them, so CPU and memory are sampled like a systemd unit's."""
        ids = [c["ID"] for c in self._containers() if c.get("ID") and c.get("State") == "running"]
        if not ids:
            return []
        out = self.shell.run("docker inspect -f '{{.State.Pid}}' " + " ".join(shlex.quote(i) for i in ids)).stdout
        return [int(p) for p in out.split() if p.isdigit() and int(p) > 0]

    def logs(self, since: datetime) -> list[LogLine]:
        out = self._run("logs", "--no-color", "--timestamps", "--since", since.isoformat(), self.name).stdout
        lines = []
        for raw in out.splitlines():
            text = raw.split("|", 1)[-1].strip()
            stamp, _, message = text.partition(" ")
            try:
                when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except ValueError:
                when, message = since, text
            lines.append(LogLine(when, level_of(message), message))
        return lines


def live_service(spec: str, host, compose_file: Path | None = None) -> Service:
    """The production bot service named by --service: systemd:UNIT (on the bot host) or compose:SERVICE."""
    kind, _, name = spec.partition(":")
    if kind == "systemd":
        return Systemd(host, name or "bot-auto-order")
    if kind == "compose":
        return Compose(host, name or "bot", compose_file)
    raise ServiceError(f"--service {spec!r}: use systemd:UNIT or compose:SERVICE")


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
