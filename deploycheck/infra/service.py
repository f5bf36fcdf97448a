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
    """A systemd unit on the bot host (`systemctl`, `journalctl -o json`). Its state is read as the login user;
    its control (stop, start) and its journal need root: a user who is not root runs them with `sudo -n`
    (never a password prompt), which takes a sudoers rule for the unit (`sudo_rule`), or, for the journal alone,
    membership in a group that reads it (systemd-journal, adm)."""

    kind = "systemd"
    PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts", "UnitFileState",
                  "MainPID")
    # sudo's words when it will not run a command: no rule (with -n it cannot ask for a password), or not allowed
    SUDO_REFUSED = re.compile(r"a password is required|is not allowed to execute[^\n]*|is not in the sudoers file"
                              r"|may not run sudo[^\n]*|sudo: a terminal is required")
    JOURNAL_GROUPS = ("systemd-journal", "adm", "wheel")
    LAST_LINES = 12  # of the journal, in a failure message

    def __init__(self, host, unit: str = "bot-auto-order"):
        self.host, self.name = host, unit
        self.shell = BotHost.of(host)
        self._login: dict | None = None

    def _run(self, command: str, timeout: int = COMMAND_TIMEOUT):
        try:
            return self.shell.run(command, timeout=timeout)
        except HostTimeout:
            raise ServiceError(f"`{command}` did not finish within {timeout} s on {self.shell.name}") from None

    # -- who runs the commands ---------------------------------------------------------------------------------
    def login(self) -> dict:
        """The login user on the host (name, root or not, may read the whole journal) and where systemctl and
        journalctl are (sudoers names commands by path), asked once. A host that does not say is taken as a user
        who needs sudo for both."""
        if self._login is None:
            found = self._run("id -un; id -u; id -nG; command -v systemctl journalctl", timeout=15)
            lines = found.stdout.splitlines() if found.rc == 0 else []
            name = lines[0].strip() if lines else "the ssh user"
            root = len(lines) > 1 and lines[1].strip() == "0"
            groups = set(lines[2].split()) if len(lines) > 2 else set()
            tools = {p.strip().rsplit("/", 1)[-1]: p.strip() for p in lines[3:] if p.strip().startswith("/")}
            self._login = {"user": name, "root": root, "journal": root or bool(groups & set(self.JOURNAL_GROUPS)),
                           "systemctl": tools.get("systemctl", "/usr/bin/systemctl"),
                           "journalctl": tools.get("journalctl", "/usr/bin/journalctl")}
        return self._login

    def sudo_rule(self) -> str:
        """The sudoers line that lets the login user control this unit and read its journal, and nothing else."""
        who = self.login()
        unit, systemctl = shlex.quote(self.name), who["systemctl"]
        return (f"{who['user']} ALL=(root) NOPASSWD: {systemctl} start {unit}, {systemctl} stop {unit}, "
                f"{who['journalctl']} -u {unit} *")

    def _as_root(self, command: str, timeout: int = COMMAND_TIMEOUT, journal: bool = False):
        """`command` as root: as it is for root (or, for the journal, a member of a group that reads it), else
        through `sudo -n`; sudo's refusal is a ServiceError naming the rule the user needs."""
        who = self.login()
        if who["root"] or (journal and who["journal"]):
            return self._run(command, timeout)
        result = self._run(f"sudo -n {command}", timeout)
        refused = self.SUDO_REFUSED.search(result.stderr) if result.rc != 0 else None
        if refused or result.rc == 127 and "sudo" in result.stderr:
            what = " ".join(command.split()[:3])  # systemctl stop UNIT, journalctl -u UNIT
            also = f", or add {who['user']} to the systemd-journal group" if journal else ""
            raise ServiceError(
                f"{who['user']} may not run `{what}` as root on {self.shell.name} "
                f"(sudo: {refused.group(0) if refused else 'not installed'}): give {who['user']} this sudoers rule "
                f"for the unit, without a password (`visudo -f /etc/sudoers.d/{self.name}`): "
                f"`{self.sudo_rule()}`; or run deploycheck as root{also}")
        return result

    # -- state -------------------------------------------------------------------------------------------------
    def status(self) -> str:
        """systemctl is-active's word (active, inactive, failed, activating, ...); `masked` for a masked unit
        that is not running. A unit the host does not have is a ServiceError (is-active says "inactive")."""
        state = self._run(f"systemctl is-active {shlex.quote(self.name)}").stdout.strip() or "unknown"
        if state == "active":
            return state
        loaded = self._run(f"systemctl show -p LoadState --value {shlex.quote(self.name)}")
        load_state = loaded.stdout.strip() if loaded.rc == 0 else ""
        if load_state == "not-found":
            raise ServiceError(f"there is no systemd unit {self.name} on {self.shell.name}: "
                               f"`systemctl list-units --all '*bot*'` shows the unit names; give yours with "
                               "--service systemd:UNIT")
        return "masked" if load_state == "masked" else state

    def is_active(self) -> bool:
        return self.status() == "active"

    def properties(self) -> dict[str, str]:
        """What systemd says of the unit's last run (ActiveState, SubState, Result, ExecMainStatus, NRestarts,
        LoadState, UnitFileState, MainPID): readable by any user."""
        out = self._run(f"systemctl show -p {','.join(self.PROPERTIES)} {shlex.quote(self.name)}").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    # -- control -----------------------------------------------------------------------------------------------
    def _control(self, verb: str, timeout: int) -> None:
        began = datetime.now(timezone.utc)
        result = self._as_root(f"systemctl {verb} {shlex.quote(self.name)}", timeout)
        if result.rc == 0:
            return
        error = result.stderr.strip()
        if "is masked" in error:
            raise ServiceError(f"systemctl {verb} {self.name} failed on {self.shell.name}: the unit is masked "
                               f"({error.splitlines()[0]}), so systemd will not start it. Find out who masked it and "
                               f"why, then `systemctl unmask {self.name}` and start it again")
        hint = (f"; the login user needs root for it: {self.sudo_rule()}" if "Access denied" in error
                or "Interactive authentication required" in error else "")
        message = (f"systemctl {verb} {self.name} failed (exit {result.rc}): {error[-500:]}{hint}; "
                   f"see `systemctl status {self.name}` and `journalctl -u {self.name}`")
        if verb == "start" and not hint:  # what the unit said while it failed: the cause is usually there
            message += "\n" + self._not_ready(self.properties(), self._journal(began), None)
        raise ServiceError(message)

    async def stop(self, timeout: int = COMMAND_TIMEOUT) -> None:
        await asyncio.to_thread(self._control, "stop", timeout)

    async def start(self, timeout: int = COMMAND_TIMEOUT) -> None:
        await asyncio.to_thread(self._control, "start", timeout)

    async def wait_ready(self, since: datetime, timeout: float) -> float:
        """Active and its journal says it polls. A unit that failed since `since` fails at once, with systemd's
        result and the journal's last lines; at the timeout, the same, and what the journal lacks."""
        began = time.monotonic()
        while True:
            state = await asyncio.to_thread(self.properties)
            lines = await asyncio.to_thread(self._journal, since)
            own = [line for line, manager in lines if not manager]
            if state.get("ActiveState") == "active" and any(READY_PATTERN.search(line.text) for line in own):
                return time.monotonic() - began
            late = time.monotonic() - began >= timeout
            if state.get("ActiveState") == "failed" or late:
                raise ServiceError(self._not_ready(state, lines, timeout if late else None))
            await asyncio.sleep(1)

    def _not_ready(self, state: dict, lines: list, timeout: float | None) -> str:
        result = (f"{state.get('ActiveState', '?')} ({state.get('SubState', '?')}; result {state.get('Result', '?')}, "
                  f"main process exit status {state.get('ExecMainStatus', '?')}, restarted "
                  f"{state.get('NRestarts', '?')} times)")
        head = (f"{self.name} did not log that it is polling within {timeout:.0f} s on {self.shell.name}: {result}"
                if timeout is not None else f"{self.name} failed to start on {self.shell.name}: {result}")
        if not lines:
            return (f"{head}; its journal has nothing since the start: is journald keeping it (`journalctl -u "
                    f"{self.name}` on the host; Storage= in journald.conf) and does the host's clock agree with "
                    "this machine's?")
        if not any(not manager for _, manager in lines):
            said = [line.text for line, _ in lines[-self.LAST_LINES:]]
            if state.get("ActiveState") == "active":
                why = ("it runs, but since the start the journal has only systemd's own lines, nothing the bot wrote: "
                       "does the unit send its output to the journal (StandardOutput=, StandardError=)?")
            elif any("repeated too quickly" in text for text in said):
                why = (f"systemd will not start it again so soon after failures (its start limit): read the earlier "
                       f"failures in `journalctl -u {self.name}`, fix the cause, then `systemctl reset-failed "
                       f"{self.name}`; systemd said:")
            else:
                why = "the bot wrote nothing since the start; systemd said:"
            return f"{head}; {why}\n  " + "\n  ".join(said)
        own = [line for line, manager in lines if not manager]  # systemd's own say the result, which head has
        return (f"{head}; the last lines it wrote since the start:\n  "
                + "\n  ".join(line.text for line in own[-self.LAST_LINES:])
                + f"\nFix the cause, then `systemctl start {self.name}` (or rerun this phase)")

    # -- processes and journal ---------------------------------------------------------------------------------
    def pids(self) -> list[int]:
        """The unit's processes, the main one first: its control group holds what the main process started too
        (bot-auto-order's webhook server beside the bot). Only the main process where the group is not readable."""
        unit = shlex.quote(self.name)
        out = self._run(f"systemctl show -p MainPID --value {unit}; group=$(systemctl show -p ControlGroup --value "
                        f"{unit}); for root in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do "
                        '[ -n "$group" ] && [ -r "$root$group/cgroup.procs" ] && { cat "$root$group/cgroup.procs"; '
                        "break; }; done").stdout.split()
        found = [int(p) for p in out if p.isdigit() and int(p) > 0]
        if not found or not out or out[0] == "0":  # not running: whatever the group still holds is stopping
            return []
        return list(dict.fromkeys(found))

    def logs(self, since: datetime) -> list[LogLine]:
        """What the unit's processes wrote to the journal since `since` (systemd's own lines about the unit,
        "Started ...", "Failed with result ...", are not the bot's log: see wait_ready)."""
        return [line for line, manager in self._journal(since) if not manager]

    def _journal(self, since: datetime) -> list[tuple[LogLine, bool]]:
        """The unit's journal since `since`, each line with whether systemd (PID 1) wrote it. Read as root (or a
        member of a group that reads the journal): as another user, journalctl shows only that user's own
        processes and says so in a hint, which would pass for an empty log."""
        out = self._as_root(f"journalctl -u {shlex.quote(self.name)} -o json --no-pager "
                            f"--since @{since.timestamp():.6f}", journal=True).stdout
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
            manager = record.get("_PID") == "1" or record.get("_SYSTEMD_UNIT") == "init.scope"
            lines.append((LogLine(when, level_of(text, priority), text), manager))
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
