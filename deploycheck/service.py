"""The bot service: status, stop, start, processes and logs, over systemd (through the testinfra host),
docker compose, or in a rehearsal a plain process with its own log file. Every call has a timeout."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

COMMAND_TIMEOUT = 60
LEVEL = re.compile(r"\b(CRITICAL|ERROR|WARNING|WARN)\b")
STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)")


class ServiceError(RuntimeError):
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


class Systemd:
    """A systemd unit on the host (`systemctl`, `journalctl -o json`)."""

    kind = "systemd"

    def __init__(self, host, unit: str = "bot-auto-order"):
        self.host, self.name = host, unit

    def _run(self, command: str, timeout: int = COMMAND_TIMEOUT):
        # testinfra has no timeout of its own: coreutils' timeout bounds the command on the host.
        result = self.host.run(f"timeout {timeout} {command}")
        if result.rc == 124:
            raise ServiceError(f"`{command}` did not finish within {timeout} s on the host")
        return result

    def status(self) -> str:
        return self._run(f"systemctl is-active {shlex.quote(self.name)}").stdout.strip() or "unknown"

    def is_active(self) -> bool:
        return self.status() == "active"

    def _control(self, verb: str, timeout: int) -> None:
        result = self._run(f"systemctl {verb} {shlex.quote(self.name)}", timeout)
        if result.rc != 0:
            raise ServiceError(f"systemctl {verb} {self.name} failed (exit {result.rc}): {result.stderr.strip()}; "
                               f"see `systemctl status {self.name}` and `journalctl -u {self.name}`")

    def stop(self, timeout: int = COMMAND_TIMEOUT) -> None:
        self._control("stop", timeout)

    def start(self, timeout: int = COMMAND_TIMEOUT) -> None:
        self._control("start", timeout)

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


class Compose:
    """A docker compose service (`docker compose ps/stop/start/logs`), run where deploycheck runs."""

    kind = "compose"

    def __init__(self, service: str = "bot", compose_file: Path | None = None):
        self.name = service
        self.base = ["docker", "compose"] + (["-f", str(compose_file)] if compose_file else [])

    def _run(self, *args: str, timeout: int = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
        try:
            result = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise ServiceError("docker is not installed here; use --service systemd:UNIT") from None
        except subprocess.TimeoutExpired:
            raise ServiceError(f"`docker compose {' '.join(args)}` did not finish within {timeout} s") from None
        if result.returncode != 0:
            raise ServiceError(f"`docker compose {' '.join(args)}` failed: {result.stderr.strip()[-500:]}")
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

    def stop(self, timeout: int = COMMAND_TIMEOUT) -> None:
        self._run("stop", self.name, timeout=timeout)

    def start(self, timeout: int = COMMAND_TIMEOUT) -> None:
        self._run("start", self.name, timeout=timeout)

    def pids(self) -> list[int]:
        return []  # processes live in the container's namespace; CPU and memory come from docker stats

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


class Process:
    """The rehearsal's bot: a child process with its own log file."""

    kind = "process"

    def __init__(self, name: str, argv: list[str], env: dict, cwd: Path, log_path: Path):
        self.name, self.argv, self.env, self.cwd, self.log_path = name, argv, env, cwd, log_path
        self.process: subprocess.Popen | None = None

    def status(self) -> str:
        return "active" if self.is_active() else "inactive"

    def is_active(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: int = COMMAND_TIMEOUT) -> None:
        if self.is_active():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, env={**os.environ, **self.env}, cwd=self.cwd, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    def stop(self, timeout: int = COMMAND_TIMEOUT) -> None:
        if not self.is_active():
            return
        self.process.send_signal(signal.SIGINT)  # how python-telegram-bot expects to be stopped
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise ServiceError(f"{self.name} ignored SIGINT for {timeout} s and was killed")

    def pids(self) -> list[int]:
        return [self.process.pid] if self.is_active() else []

    def logs(self, since: datetime) -> list[LogLine]:
        if not self.log_path.exists():
            return []
        lines, when = [], since
        for raw in self.log_path.read_text(errors="replace").splitlines():
            when = parse_stamp(raw) or when  # a traceback's lines belong to the record above them
            if when >= since:
                lines.append(LogLine(when, level_of(raw), raw))
        return lines


def wait_until(condition, timeout: float, interval: float = 0.1) -> bool:
    """Poll instead of sleeping blindly: true as soon as the condition holds, false at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
