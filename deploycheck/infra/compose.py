"""A Docker shop's bot: one service of the shop's compose file (`docker compose` on the bot's host, like
systemctl). A release is an image, so starting the bot on a release means recreating its container on that
image: `docker compose start` would restart the old container on the old image (seen on these machines: a
tag rebuilt to print "version-2" still printed "version-1" after stop and start). `use(image)` changes the
`image:` line of the shop's own compose file (the file kept beside, the change returned for the evidence):
an override alone would be undone by the shop's run.sh or its cron health check (`docker compose up -d`).

The docker CLI is driven through the host (local or ssh), as systemctl is: the docker SDK would need the
daemon's socket here, and the bot's host may be another machine."""
from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
from datetime import datetime, timezone
from pathlib import PurePosixPath

from deploycheck.infra import envfile
from deploycheck.infra.host import BotHost, HostTimeout
from deploycheck.infra.service import (COMMAND_TIMEOUT, READY_PATTERN, LogLine, Service, ServiceError, level_of)

NO_DAEMON = re.compile(r"Cannot connect to the Docker daemon|Is the docker daemon running|docker\.sock.*(no such|refused)"
                       r"|permission denied while trying to connect to the Docker daemon", re.I)
LAST_LINES = 8


class ComposeShop(Service):
    """The shop's bot service under docker compose: status, stop, start (recreated on the image its compose
    file names), readiness and logs from the container, the image it runs."""

    kind = "compose"
    guard = None  # a rehearsal's outbound guard in the container (rehearsal.container_guard); 14.2+outbound reads it

    def __init__(self, host, service: str = "bot", compose_file: str | None = None):
        self.name, self.shell = service, BotHost.of(host)
        if not compose_file:
            raise ServiceError(f"--service compose:{service} needs --compose-file: the shop's compose.yml on the "
                               "bot's host (deployments/bot-<slug>-<gateway>/compose.yml)")
        self.compose_file = str(compose_file)
        self.folder = str(PurePosixPath(self.compose_file).parent)
        self.base = f"docker compose -f {shlex.quote(self.compose_file)} --project-directory {shlex.quote(self.folder)}"

    def __repr__(self) -> str:
        return f"ComposeShop({self.name!r}, {self.compose_file!r})"

    # ------------------------------------------------------------------------------------------ commands
    def _sh(self, command: str, timeout: int = COMMAND_TIMEOUT, stdin: str | None = None):
        return _run(self.shell, command, timeout, stdin)

    def _compose(self, *args: str, timeout: int = COMMAND_TIMEOUT):
        result = self._sh(f"{self.base} {' '.join(shlex.quote(a) for a in args)}", timeout)
        if result.rc != 0:
            said = result.stderr.strip()
            if "no such service" in said.lower():
                raise ServiceError(f"{self.compose_file} has no service {self.name!r}{self._services()}: give "
                                   "--service compose:NAME with the service the shop's bot runs as")
            raise ServiceError(f"`docker compose {' '.join(args)}` on {self.shell.name} failed: {_last(said)}")
        return result

    def _services(self) -> str:
        """What the compose file has instead, for the message: " (its services: bot, db)"; empty when even
        that cannot be read."""
        found = self._sh(f"{self.base} config --services")
        names = found.stdout.split() if found.rc == 0 else []
        return f" (its services: {', '.join(names)})" if names else ""

    def _containers(self) -> list[dict]:
        out = self._compose("ps", "--all", "--format", "json", self.name).stdout.strip()
        if not out:
            return []
        # Compose v2.21+ prints one JSON object per line; older versions a JSON list.
        return json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines()]

    def inspect(self) -> dict | None:
        """`docker inspect` of the service's container (None when there is none)."""
        found = self._containers()
        if not found:
            return None
        result = self._sh(f"docker inspect {shlex.quote(found[0]['ID'])}")
        return json.loads(result.stdout)[0] if result.rc == 0 and result.stdout.strip() else None

    # ------------------------------------------------------------------------------------------- Service
    def status(self) -> str:
        """The container's state, with its health when it has a health check and its restarts when it has
        restarted: "running (healthy)", "running (unhealthy, 3 restarts)". A crash-looping container reads
        restarting, running or exited by the moment: its restarts say it loops."""
        found = self.inspect()
        if not found:
            return "absent"
        state, restarts = found["State"], found.get("RestartCount") or 0
        said = [(state.get("Health") or {}).get("Status"), f"{restarts} restart(s)" if restarts else None]
        said = ", ".join(part for part in said if part)
        return state["Status"] + (f" ({said})" if said else "")

    def is_active(self) -> bool:
        return self.status().startswith("running")

    async def stop(self, timeout: int = COMMAND_TIMEOUT) -> None:
        await asyncio.to_thread(self._compose, "stop", self.name, timeout=timeout)

    async def start(self, timeout: int = COMMAND_TIMEOUT) -> None:
        """The container recreated on the image the compose file names now (not `start`: that reuses the old
        container and with it the old image)."""
        await asyncio.to_thread(self._compose, "up", "-d", "--no-deps", "--force-recreate", self.name,
                                timeout=timeout)

    async def wait_ready(self, since: datetime, timeout: float) -> float:
        """Ready when the container runs and has logged that it polls (its health check runs every 5 minutes: too
        slow to wait for). A container that exits or restarts meanwhile fails at once with its last log lines."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            found = self.inspect()
            state = (found or {}).get("State", {})
            if found and (state.get("Restarting") or state.get("Status") == "exited" or found.get("RestartCount")):
                again = state.get("Running")  # restarted meanwhile: the lines of its run that ended say why
                raise ServiceError(f"the container {found['Name'].lstrip('/')} of {self.name} on "
                                   f"{found['Config']['Image']} {_crashed(found)}; its last log lines"
                                   f"{' before it started again' if again else ''}:\n  "
                                   + "\n  ".join(line.text for line in self._ended(since, found)))
            if state.get("Running") and any(READY_PATTERN.search(line.text) for line in self.logs(since)):
                return time.monotonic() - began
            await asyncio.sleep(1)
        raise ServiceError(f"{self.name} did not log that it is polling within {timeout:.0f} s "
                           f"(container: {self.status()}); look at `docker compose -f {self.compose_file} logs "
                           f"{self.name}`")

    def _ended(self, since: datetime, found: dict) -> list[LogLine]:
        """The last log lines of the container's run that ended: all of them while it waits to restart or has
        exited; once it runs again, those before its current start (the new run's first lines say nothing)."""
        lines = self.logs(since)
        started = found["State"].get("StartedAt", "")
        if found["State"].get("Running") and started:
            try:
                began = datetime.fromisoformat(started.replace("Z", "+00:00"))
            except ValueError:
                began = None
            lines = [line for line in lines if began is None or line.time < began] or lines
        return lines[-LAST_LINES:]

    def pids(self) -> list[int]:
        """The container's main process as the host numbers it (docker inspect's State.Pid): the host's /proc has
        it, so CPU and memory are sampled like a systemd unit's."""
        found = self.inspect()
        pid = (found or {}).get("State", {}).get("Pid") or 0
        return [pid] if pid > 0 else []

    def logs(self, since: datetime) -> list[LogLine]:
        out = self._compose("logs", "--no-color", "--timestamps", "--since", since.isoformat(), self.name).stdout
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

    # -------------------------------------------------------------------------------------------- images
    def running_image(self) -> dict:
        """What the shop runs now: the container's image id (what "previous release" is: a tag may move) and
        the reference its compose file names."""
        found = self.inspect()
        return {"Image Id": found["Image"] if found else None, "Image": self.configured_image(),
                "Container": found["Name"].lstrip("/") if found else None}

    def settings(self) -> dict[str, str]:
        """The shop's own settings: bot.env beside its compose file (provision_tenant.py's env_file)."""
        path = f"{self.folder}/bot.env"
        result = self._sh(f"cat {shlex.quote(path)}")
        if result.rc != 0:
            raise ServiceError(f"cannot read the shop's settings {path} on {self.shell.name}: {_last(result.stderr, 1)}")
        try:
            return envfile.parse(result.stdout, path)
        except envfile.EnvFileError as exc:
            raise ServiceError(str(exc)) from None

    def configured_image(self) -> str | None:
        text = self._read()
        span = _image_span(text, self.name)
        return text[span[0]:span[1]].strip("'\"") if span else None

    def _read(self) -> str:
        result = self._sh(f"cat {shlex.quote(self.compose_file)}")
        if result.rc != 0:
            raise ServiceError(f"cannot read the shop's compose file {self.compose_file} on {self.shell.name}: "
                               f"{_last(result.stderr, 1)}")
        return result.stdout

    def use(self, release, why: str) -> dict:
        """Point the shop's compose file at the image `release` (infra.release.Image): its tag while the tag still
        names that image, else its id. The `image:` line is changed in place and the file as it was kept beside
        it (compose.yml.before-<time>). Returns what changed, for the evidence."""
        found = self._sh(f"docker image inspect -f '{{{{.Id}}}}' {shlex.quote(release.name)}")
        image = release.name if found.rc == 0 and found.stdout.strip() == release.image else release.image
        text = self._read()
        span = _image_span(text, self.name)
        if not span:
            raise ServiceError(f"{self.compose_file} has no `image:` line under service {self.name!r}: give "
                               "--service compose:NAME with the shop's bot service")
        before = text[span[0]:span[1]].strip("'\"")
        change = {"Compose File": self.compose_file, "Image Before": before, "Image After": image, "Why": why}
        if before == image:
            return {**change, "Changed": "no: it already names this image"}
        kept = f"{self.compose_file}.before-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
        updated = text[:span[0]] + image + text[span[1]:]
        # written beside and renamed: a reader (cron's `docker compose up -d`) never sees half a file
        command = (f"cp -p {shlex.quote(self.compose_file)} {shlex.quote(kept)} && "
                   f"cat > {shlex.quote(self.compose_file + '.deploycheck')} && "
                   f"mv {shlex.quote(self.compose_file + '.deploycheck')} {shlex.quote(self.compose_file)}")
        result = self._sh(command, stdin=updated)
        if result.rc != 0:
            raise ServiceError(f"could not change {self.compose_file} on {self.shell.name} (is the compose folder "
                               f"writable by this user?): {_last(result.stderr, 1)}")
        return {**change, "Changed": "yes", "Kept As": kept}


def check_docker(host) -> None:
    """Docker answers on the bot's host (BotHost), else the ServiceError every Docker step gives: the same
    text, raised from the same place, so the items that meet it count as one fault."""
    _run(BotHost.of(host), "docker version --format '{{.Server.Version}}'", COMMAND_TIMEOUT)


def _run(shell: BotHost, command: str, timeout: int, stdin: str | None = None):
    """A docker command on the bot's host; docker missing or its daemon not answering is said so, with what to
    do (not as the command's own error)."""
    try:
        result = shell.run(command, timeout=timeout, stdin=stdin)
    except HostTimeout:
        raise ServiceError(f"`{command}` did not finish within {timeout} s on {shell.name}") from None
    if result.rc == 127:
        raise ServiceError(f"docker (with Compose v2) is not installed on {shell.name}: install it, or use "
                           "--service systemd:UNIT for a shop that runs under systemd")
    if NO_DAEMON.search(result.stderr):
        raise ServiceError(f"Docker does not answer on {shell.name}: {_last(result.stderr, 1)}; start the "
                           "daemon (systemctl start docker) and check that this user may use it (group docker)")
    return result


def _image_span(text: str, service: str) -> tuple[int, int] | None:
    """Where the image of one service is written in a compose file: the service's block starts at its
    indented `name:` under `services:` and holds the lines indented deeper."""
    text = text if text.endswith("\n") else text + "\n"
    block = re.search(rf"(?m)^(?P<indent>[ \t]+){re.escape(service)}:[ \t]*\n"
                      r"(?P<body>(?:(?P=indent)[ \t]+.*\n|[ \t]*\n)*)", text)
    found = block and re.search(r"(?m)^[ \t]+image:[ \t]*(?P<image>['\"]?[^\s#'\"]+['\"]?)", block.group("body"))
    if not found:
        return None
    return block.start("body") + found.start("image"), block.start("body") + found.end("image")


def _crashed(found: dict) -> str:
    state = found.get("State", {})
    if state.get("Restarting") or found.get("RestartCount"):
        # running again between restarts, docker keeps no exit code (it says 0): the log lines say how it ended
        code = "" if state.get("Running") else f"exit code {state.get('ExitCode')}, "
        return f"restarts ({code}{found.get('RestartCount', 0)} restart(s))"
    return f"exited with code {state.get('ExitCode')}"


def _last(text: str, lines: int = LAST_LINES) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no message"
