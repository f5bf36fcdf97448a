"""The bot's host: commands and files on the machine the bot runs on, through pytest-testinfra (local,
ssh://user@server, docker://container). Every command is bounded by coreutils' `timeout` on the host
itself: testinfra has no timeout of its own, and over ssh only the host can end a hung command."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from deploycheck.failure import CheckFailed

COMMAND_TIMEOUT = 60
TIMED_OUT = 124  # coreutils' timeout: the command was ended


class HostTimeout(CheckFailed):
    """A command on the host did not finish in time: the check could not be made, which is a failure."""


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
    """The one way checks reach the bot's host: run() and file(), each command within its timeout."""

    def __init__(self, host, timeout: int = COMMAND_TIMEOUT):
        self.backend, self.timeout = host, timeout

    @classmethod
    def of(cls, host) -> "BotHost":
        """A BotHost as it is, or one around a testinfra host (anything with run(command))."""
        return host if isinstance(host, cls) else cls(host)

    @classmethod
    def get(cls, spec: str = "local://") -> "BotHost":
        import testinfra
        return cls(testinfra.get_host("local://" if spec in ("local", "") else spec))

    def run(self, command: str, timeout: int | None = None):
        """Run a shell command on the host (pipes and && allowed); a timeout is a HostTimeout naming it."""
        limit = timeout or self.timeout
        result = self.backend.run(f"timeout -k 5 {limit} sh -c {shlex.quote(command)}")
        if result.rc == TIMED_OUT:
            raise HostTimeout(f"`{command[:200]}` did not finish within {limit} s on the host; see whether the "
                              "host is overloaded or the command waits for input, then run the check again")
        return result

    def file(self, path: str) -> File:
        return File(self, path)
