"""The service managers read their tools right and fail clearly. No systemd or Docker here: a stand-in
host answers as systemctl/journalctl would, and a stand-in `docker` answers as compose v2 does."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from deploycheck.infra.service import ServiceError, Systemd, level_of, parse_stamp, ready_by_log

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


@dataclass
class Result:
    rc: int
    stdout: str = ""
    stderr: str = ""


class Host:
    """Answers like a server with systemd: a table of command prefix -> result."""

    def __init__(self, answers: dict[str, Result]):
        self.answers, self.commands = answers, []

    def run(self, command: str) -> Result:
        self.commands.append(command)
        for prefix, result in self.answers.items():
            if prefix in command:
                return result
        return Result(127, stderr=f"unknown command {command}")


def journal(*records) -> str:
    return "\n".join(json.dumps({"MESSAGE": text, "PRIORITY": str(priority),
                                 "__REALTIME_TIMESTAMP": str(int((T0 + timedelta(seconds=i)).timestamp() * 1e6))})
                     for i, (priority, text) in enumerate(records))


def test_systemd_status_logs_and_pids():
    host = Host({"is-active": Result(0, "active\n"), "MainPID": Result(0, "4242\n"),
                 "journalctl": Result(0, journal((6, "Application started"), (3, "db down"), (4, "slow")))})
    unit = Systemd(host)
    assert unit.is_active() and unit.pids() == [4242]
    assert [(l.level, l.text) for l in unit.logs(T0)] == [("INFO", "Application started"), ("ERROR", "db down"),
                                                         ("WARNING", "slow")]
    assert all(c.startswith("timeout ") for c in host.commands), "every command on the host is bounded"
    assert "--since @" in host.commands[-1] and "-o json" in host.commands[-1]


def test_systemd_failures_are_clear():
    unit = Systemd(Host({"systemctl stop": Result(1, stderr="Access denied"), "systemctl start": Result(124)}))
    with pytest.raises(ServiceError, match="systemctl stop bot-auto-order failed .*Access denied.*journalctl"):
        asyncio.run(unit.stop())
    with pytest.raises(ServiceError, match="did not finish within"):
        asyncio.run(unit.start())
    assert Systemd(Host({"is-active": Result(3, "inactive\n")})).status() == "inactive"


def test_ready_by_log_waits_for_the_polling_line():
    unit = Systemd(Host({"is-active": Result(0, "active\n"), "journalctl": Result(0, journal((6, "Starting")))}))
    with pytest.raises(ServiceError, match="did not log that it is polling within 1 s"):
        asyncio.run(ready_by_log(unit, T0, timeout=1))
    unit.host.answers["journalctl"] = Result(0, journal((6, "Application started")))
    assert asyncio.run(ready_by_log(unit, T0, timeout=5)) < 5


def test_log_levels_and_stamps():
    assert level_of("2026-11-24 02:00:00,123 - bot - WARNING - slow") == "WARNING"
    assert level_of("CRITICAL shutting down") == "ERROR" and level_of("all fine") == "INFO"
    assert parse_stamp("2026-11-24 02:00:00,123 - x") == datetime(2026, 11, 24, 2, 0, 0, 123000).astimezone(timezone.utc)
    assert parse_stamp("Traceback (most recent call last):") is None


def test_rehearsal_bot_log_lines_stamped_to_the_second_count_from_their_second():
    """bot-auto-order writes `[YYYY-mm-dd HH:MM:SS]`: its readiness line in the same second as the start
    (10.1's Started At has milliseconds) is a line since the start, or 10.3 waits for nothing."""
    from datetime import datetime, timezone

    from deploycheck.rehearsal.service import RehearsalBot

    class Bot:
        running = True

        def log_text(self):
            return "[2026-11-30 10:00:04] [INFO] old bot stopping\n[2026-11-30 10:00:05] [INFO] Application started\n"
    since = datetime(2026, 11, 30, 10, 0, 5, 600000).astimezone(timezone.utc)  # the bot logs local time
    assert [line.text for line in RehearsalBot(Bot(), {}).logs(since)] == ["[2026-11-30 10:00:05] [INFO] Application started"]
