"""The database through the bot's host: when DATABASE_URL (or POSTGRES_HOST) names the server's own localhost
and --host is ssh://, deploycheck reaches it through an SSH tunnel (`ssh -N -L`, the same ssh_config, user and
key as every other command on the host), and everything that runs on the host (7.3's runner) still gets the
address as the host sees it."""
from __future__ import annotations

import signal
import socket

from deploycheck.infra.dsn import Dsn
from deploycheck.infra.host import BotHost
from deploycheck.infra.process import Process, ProcessExited, ProcessNotReady

LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}
OPEN_TIMEOUT = 20  # seconds until the tunnel's port answers: login included


class TunnelError(RuntimeError):
    pass


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the tunnel's local end; the rehearsal's bot's webhook server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _swap(dsn: str | Dsn, old: tuple[str, int], new: tuple[str, int]) -> str | Dsn:
    """The DSN with its host:port `old` replaced by `new` (anything else: as it is), as text if given as text."""
    parsed = Dsn.parse(dsn)
    moved = parsed.moved(old, new)
    if isinstance(dsn, Dsn):
        return moved
    return dsn if moved is parsed else moved.url


class Tunnel:
    """`ssh -N -L 127.0.0.1:<free port>:<server's address>` to the bot's host, for the run's length."""

    def __init__(self, host: BotHost, remote: tuple[str, int]):
        self.host, self.remote = host, remote
        self.local = ("127.0.0.1", free_port())
        self.process: Process | None = None

    def _listens(self) -> bool:
        try:
            socket.create_connection(self.local, timeout=1).close()
            return True
        except OSError:
            return False

    def open(self, timeout: float = OPEN_TIMEOUT) -> "Tunnel":
        forward = f"{self.local[0]}:{self.local[1]}:{self.remote[0]}:{self.remote[1]}"
        argv = self.host.ssh_command(None, ("-N", "-o", "ExitOnForwardFailure=yes", "-L", forward))
        self.process = Process(argv, name=f"`ssh -N -L {forward}`", stop_signal=signal.SIGTERM, grace=5).start()
        try:
            self.process.wait_ready(self._listens, timeout, interval=0.1)
        except ProcessExited as exc:
            raise TunnelError(f"the SSH tunnel to the database through {self.host.name} "
                              f"(`ssh -N -L {forward}`) ended: {exc.process.output().strip()[-500:]}") from None
        except ProcessNotReady:
            self.close()
            message = (f"the SSH tunnel to the database through {self.host.name} did not open within "
                       f"{timeout:.0f} s; check that `ssh` logs in there and AllowTcpForwarding is not off")
            raise TunnelError(message) from None
        return self

    def close(self) -> None:
        if self.process:
            self.process.stop()

    def here(self, dsn: str | Dsn) -> str | Dsn:
        """A DSN as the host sees it, as deploycheck reaches it: through this tunnel."""
        return _swap(dsn, self.remote, self.local)

    def there(self, dsn: str | Dsn) -> str | Dsn:
        """A DSN deploycheck reaches through this tunnel, as the host sees it (for what runs on the host)."""
        return _swap(dsn, self.local, self.remote)


def needs_tunnel(dsn: str | Dsn, host: BotHost) -> bool:
    """The database is the server's own (localhost) and the server is reached over ssh."""
    return host.kind == "ssh" and Dsn.parse(dsn).host in LOCAL_NAMES


def through_host(target, host: BotHost) -> Tunnel | None:
    """For a live target whose database is the bot server's localhost: open the tunnel and point the target's
    DSNs at it; the target then says how it is reached ("through an SSH tunnel via <host>")."""
    if target.rehearsal or not needs_tunnel(target.dsn, host):
        return None
    tunnel = Tunnel(host, Dsn.parse(target.dsn).address).open()
    target.dsn, target.admin_dsn = tunnel.here(target.dsn), tunnel.here(target.admin_dsn)
    target.tunnel, target.reached = tunnel, f"through an SSH tunnel via {host.name}"
    return tunnel


def host_side(target, dsn: str | Dsn) -> str | Dsn:
    """A DSN of the target as the bot's host reaches it (the tunnel's far end), for commands run there."""
    tunnel = getattr(target, "tunnel", None)
    return tunnel.there(dsn) if tunnel else dsn


def here_side(target, dsn: str | Dsn) -> str | Dsn:
    """A DSN named as the host sees it (the operator's POSTGRES_*), as deploycheck reaches it."""
    tunnel = getattr(target, "tunnel", None)
    return tunnel.here(dsn) if tunnel else dsn
