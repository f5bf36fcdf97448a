"""The bot's host: commands and files on the machine the bot runs on, through pytest-testinfra (local,
ssh://user@server, docker://container). Every command is bounded twice: by coreutils' `timeout` on the host
itself (over ssh only the host can end a hung command: sshd does not signal a command without a terminal
when the client goes away), and here, by a timeout on the ssh client (a host that stops answering mid-command)."""
from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deploycheck.failure import CheckFailed

COMMAND_TIMEOUT = 60
TIMED_OUT = 124  # coreutils' timeout: the command was ended
CLIENT_SLACK = 20  # seconds the ssh client gets beyond the remote limit: connect, login, the -k 5 kill
SSH_FAILED = 255  # ssh's own exit status: no connection, login refused, connection lost
# Never ask for a password (a refused key fails instead of waiting for a person), and give up on a host
# that stops answering within 15 s instead of waiting for TCP to notice.
SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]


class HostTimeout(CheckFailed):
    """A command on the host did not finish in time: the check could not be made, which is a failure."""


class HostUnreachable(CheckFailed):
    """ssh could not log in to the host, or lost it: nothing about the bot's server can be checked."""


@dataclass
class Result:
    """What a command on the host did (the fields checks read of testinfra's CommandResult)."""

    rc: int
    stdout: str
    stderr: str

    @property
    def succeeded(self) -> bool:
        return self.rc == 0


@dataclass
class File:
    """A file or folder on the host, read with bounded commands."""

    host: "BotHost"
    path: str

    def _test(self, flag: str) -> bool:
        return self.host.run(f"test {flag} {shlex.quote(self.path)}").rc == 0

    @property
    def exists(self) -> bool:
        return self._test("-e")

    @property
    def is_file(self) -> bool:
        return self._test("-f")

    @property
    def is_directory(self) -> bool:
        return self._test("-d")

    @property
    def size(self) -> int:
        found = self.host.run(f"stat -c %s {shlex.quote(self.path)}")
        return int(found.stdout.strip()) if found.rc == 0 and found.stdout.strip().isdigit() else 0

    @property
    def content_string(self) -> str:
        return self.host.run(f"cat {shlex.quote(self.path)}").stdout


class BotHost:
    """The one way checks reach the bot's host: run() and file(), each command within its timeout.
    `name` says which host in messages and evidence ("this machine", or the --host spec)."""

    def __init__(self, host, timeout: int = COMMAND_TIMEOUT, name: str | None = None):
        self.backend, self.timeout = host, timeout
        self.kind = getattr(getattr(host, "backend", None), "NAME", "other")
        self.name = name or ("this machine" if self.kind == "local" else f"{self.kind} host")

    @classmethod
    def of(cls, host) -> "BotHost":
        """A BotHost as it is, or one around a testinfra host (anything with run(command))."""
        return host if isinstance(host, cls) else cls(host)

    @classmethod
    def get(cls, spec: str = "local://") -> "BotHost":
        import testinfra
        spec = "local://" if spec in ("local", "") else spec
        name = "this machine" if spec == "local://" else spec.split("?")[0]
        return cls(testinfra.get_host(spec), name=name)

    @property
    def remote(self) -> bool:
        return self.kind != "local"

    def ssh_command(self, command: str | None = None, options: tuple[str, ...] = ()) -> list[str]:
        """The ssh client's argv for this host, as testinfra builds it (its ssh_config, user, port, key,
        ConnectTimeout), with our options: for a command, or (command None) for a tunnel's `-N -L`."""
        backend = self.backend.backend
        parts, values = backend._build_ssh_command("")
        argv = shlex.split(backend.quote(" ".join(parts[:-1]), *values[:-2]))
        at = argv.index("ssh") + 1
        argv[at:at] = [*SSH_OPTIONS, *options]
        return [*argv, "--", values[-2]] + ([command] if command is not None else [])

    def run(self, command: str, timeout: int | None = None, stdin: str | None = None) -> Result:
        """Run a shell command on the host (pipes and && allowed), `stdin` given to it (secrets go there, never
        on a command line, where `ps` on the host shows them); a timeout is a HostTimeout naming it."""
        limit = timeout or self.timeout
        wrapped = f"timeout -k 5 {limit} sh -c {shlex.quote(command)}"
        if self.kind in ("ssh", "local"):
            argv = self.ssh_command(wrapped) if self.kind == "ssh" else ["sh", "-c", wrapped]
            result = self._client(argv, command, limit, stdin)
        elif stdin is not None:
            raise CheckFailed(f"`{command[:80]}` needs its standard input, which the {self.kind} backend of "
                              f"{self.name} cannot give; use --host ssh://user@server or run on the server")
        else:
            found = self.backend.run(wrapped)
            result = Result(found.rc, found.stdout, found.stderr)
        if result.rc == TIMED_OUT:
            raise HostTimeout(self._late(command, limit))
        return result

    def _client(self, argv: list[str], command: str, limit: int, stdin: str | None) -> Result:
        try:
            done = subprocess.run(argv, input=stdin if stdin is not None else "", capture_output=True, text=True,
                                  errors="replace", timeout=limit + CLIENT_SLACK)
        except subprocess.TimeoutExpired:
            raise HostTimeout(self._late(command, limit + CLIENT_SLACK)) from None
        if self.kind == "ssh" and done.returncode == SSH_FAILED and not done.stdout:
            raise HostUnreachable(
                f"ssh to {self.name} failed running `{command[:200]}`: {done.stderr.strip()[-500:] or 'exit 255'}; "
                "check that `ssh` with the same ssh_config logs in without a password (key, user, port) and that "
                "the server answers")
        return Result(done.returncode, done.stdout, done.stderr)

    def _late(self, command: str, limit: int) -> str:
        return (f"`{command[:200]}` did not finish within {limit} s on {self.name}; see whether the host is "
                "overloaded, unreachable or the command waits for input, then run the check again")

    def file(self, path: str) -> File:
        return File(self, path)

    def is_this_machine(self) -> bool:
        """Is the host the machine deploycheck runs on, seeing the same processes (same kernel boot, same pid
        namespace: a container on this kernel numbers its processes apart)? Then process ids mean the same here
        and there: a rehearsal's bot, started here, is on the host only if this is true."""
        if not self.remote:
            return True
        if self.kind != "ssh":
            return False  # docker:// and the like: another pid namespace, or nothing to compare with
        try:
            here = [Path("/proc/sys/kernel/random/boot_id").read_text().strip(), os.readlink("/proc/self/ns/pid")]
        except OSError:
            return False
        there = self.run("cat /proc/sys/kernel/random/boot_id; readlink /proc/self/ns/pid", timeout=15)
        return there.stdout.split() == here
