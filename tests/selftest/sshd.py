"""A throwaway OpenSSH server on 127.0.0.1 for the self-tests: the bot's host reached over ssh, for real.

Debian's sshd (package openssh-server) runs in the foreground as a child of the test session, on a free port,
with its own host key, client key pair, sshd_config and ssh_config in a temp folder. Nothing of the machine's
ssh setup is read or changed; the one thing made outside the temp folder is /run/sshd when sshd runs as root
(see _privsep_dir).

    with LoopbackSSHD() as server:
        subprocess.run(["ssh", "-F", server.ssh_config, server.alias, "true"], timeout=10)
        host = testinfra.get_host(server.host_spec)      # also a value for --host

The `sshd` fixture below is the same server, one per session; a missing sshd skips it (fails it in CI).
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"  # absolute: sshd re-executes itself and refuses a relative path
ALIAS = "deploycheck-sshd"
TOOL_TIMEOUT = 20  # ssh-keygen, sshd -t
START_TIMEOUT = 10  # until the port answers with an SSH banner
STOP_TIMEOUT = 5
CONNECT_TIMEOUT = 5  # ssh's ConnectTimeout: TCP connect and the banner exchange


class SSHDError(RuntimeError):
    """The loopback sshd could not be set up; the message says why and what to do."""


class SSHDMissing(SSHDError):
    """No sshd binary on this machine."""


def _run(cmd: list[str], what: str) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise SSHDError(f"{what}: `{' '.join(cmd)}` did not finish within {TOOL_TIMEOUT} s") from None
    if done.returncode != 0:
        raise SSHDError(f"{what}: `{' '.join(cmd)}` exited {done.returncode}: {done.stderr.strip()}")


def keygen(path: Path, comment: str = "deploycheck-selftest") -> Path:
    """A new Ed25519 key pair without a passphrase at `path` (and `path`.pub); ssh-keygen leaves it 0600."""
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], "ssh-keygen")
    return path


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick; another process may take it before sshd)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _privsep_dir() -> None:
    # sshd as root chroots its pre-auth child into /run/sshd (compiled in, no option for it) and refuses to
    # start without it. systemd's unit creates it (RuntimeDirectory=sshd); without systemd (a container) we
    # do: an empty root-owned 0755 folder on the /run tmpfs, the same one the package's unit would make.
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)


def _locked(user: str) -> bool:
    # Without PAM, sshd refuses an account whose password in /etc/shadow starts with "!" (useradd's default),
    # even for key logins. root in Debian's images has "*", which is fine.
    try:
        lines = Path("/etc/shadow").read_text().splitlines()
    except OSError:
        return False
    return any(line.split(":")[0] == user and line.split(":")[1].startswith("!") for line in lines if ":" in line)


class LoopbackSSHD:
    """sshd on 127.0.0.1:<free port>, logging in the user running the tests (root in CI) with a throwaway key.

    Attributes once started: port, user, alias, client_key, ssh_config, host_spec, folder, log_path."""

    def __init__(self, sshd: str = SSHD, alias: str = ALIAS):
        self.sshd, self.alias = sshd, alias
        self.user = pwd.getpwuid(os.geteuid()).pw_name  # sshd not run as root can log in only its own user
        self.port: int | None = None
        self.folder: Path | None = None
        self.process: subprocess.Popen | None = None

    # -- files -------------------------------------------------------------------------------------------
    def _write_sshd_config(self) -> Path:
        f = self.folder
        config = f / "sshd_config"
        config.write_text(f"""\
# Own file, not /etc/ssh/sshd_config: no Include of the machine's sshd_config.d either.
ListenAddress 127.0.0.1
Port {self.port}
HostKey {f}/host_ed25519_key
PidFile {f}/sshd.pid
AuthorizedKeysFile {f}/authorized_keys
AllowUsers {self.user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# PAM's session stack (pam_loginuid) fails in containers; keys need no PAM.
UsePAM no
# Keys only, for root too (Debian's default, said here so the machine's defaults do not matter).
PermitRootLogin prohibit-password
# StrictModes walks up from authorized_keys to / and refuses a world-writable parent such as /tmp.
StrictModes no
X11Forwarding no
PrintMotd no
PrintLastLog no
# A check must not take the machine's DNS down with it.
UseDNS no
LogLevel VERBOSE
""")
        return config

    def write_ssh_config(self, name: str, *, port: int | None = None, identity: Path | None = None,
                         connect_timeout: int = CONNECT_TIMEOUT) -> Path:
        """A client config for `ssh -F <it> <alias>`: this server by default, or another port or key (the
        failure tests). Known hosts hold only the throwaway host key, under the alias, whatever the port."""
        path = self.folder / name
        path.write_text(f"""\
Host {self.alias}
    HostName 127.0.0.1
    Port {port or self.port}
    User {self.user}
    IdentityFile {identity or self.client_key}
    IdentitiesOnly yes
    IdentityAgent none
    HostKeyAlias {self.alias}
    UserKnownHostsFile {self.folder}/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    BatchMode yes
    PasswordAuthentication no
    ConnectTimeout {connect_timeout}
    ServerAliveInterval 5
    ServerAliveCountMax 2
    LogLevel ERROR
""")
        return path

    def spec(self, ssh_config: Path, timeout: int = CONNECT_TIMEOUT) -> str:
        """A pytest-testinfra spec for `ssh_config`: testinfra reads `ssh_config` and `timeout` (its
        ConnectTimeout, 10 s unless given, which overrides the file's) from the query string."""
        query = urllib.parse.urlencode({"ssh_config": str(ssh_config), "timeout": timeout})
        return f"ssh://{self.alias}?{query}"

    # -- life --------------------------------------------------------------------------------------------
    def start(self) -> LoopbackSSHD:
        if not os.access(self.sshd, os.X_OK) or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
            raise SSHDMissing(f"{self.sshd} (with ssh and ssh-keygen) is needed for the ssh self-tests: install "
                              "Debian's openssh-server (`apt-get install -y openssh-server`); in CI, .ci/run "
                              "must install it")
        if _locked(self.user):
            raise SSHDError(f"account {self.user} is locked ('!' in /etc/shadow) and sshd without PAM refuses "
                            f"it even with a key: `usermod -p '*' {self.user}` unlocks it for key logins only")
        self.folder = Path(tempfile.mkdtemp(prefix="deploycheck-sshd-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        f = self.folder
        keygen(f / "host_ed25519_key", "deploycheck-selftest-host")
        self.client_key = keygen(f / "client_ed25519_key")
        shutil.copy(f / "client_ed25519_key.pub", f / "authorized_keys")
        host_pub = (f / "host_ed25519_key.pub").read_text().split()
        (f / "known_hosts").write_text(f"{self.alias} {host_pub[0]} {host_pub[1]}\n")
        _privsep_dir()
        self.log_path = f / "sshd.log"
        for _ in range(3):  # the free port may be taken before sshd binds it: try another
            self.port = free_port()
            config = self._write_sshd_config()
            _run([self.sshd, "-t", "-f", str(config)], "sshd's config test")
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen([self.sshd, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                                stdout=log, stderr=subprocess.STDOUT)
            if self._wait_ready():
                break
            if "Address already in use" not in self.log():
                raise SSHDError(f"sshd did not start on 127.0.0.1:{self.port} (exit {self.process.returncode}): "
                                f"{self.log().strip()[-800:]}")
        else:
            raise SSHDError(f"sshd found no free port in 3 tries: {self.log().strip()[-400:]}")
        self.ssh_config = self.write_ssh_config("ssh_config")
        self.host_spec = self.spec(self.ssh_config)

    def _wait_ready(self) -> bool:
        """True once the port answers with an SSH banner; False if sshd exited; SSHDError after the timeout."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        raise SSHDError(f"sshd on 127.0.0.1:{self.port} did not answer within {START_TIMEOUT} s: "
                        f"{self.log().strip()[-800:]}")

    def log(self) -> str:
        """sshd's own log so far (-e: to this file): why a login was refused, for a failure message."""
        try:
            return self.log_path.read_text(errors="replace")
        except (AttributeError, OSError):
            return ""

    def stop(self) -> None:
        """Stops the server and removes the temp folder. Sessions still open keep their own processes (sshd
        forks one per connection in its own session) until the client hangs up."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> LoopbackSSHD:
        return self if self.process else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_or_skip(server: LoopbackSSHD) -> LoopbackSSHD:
    """Starts `server`. No sshd on this machine: a skip, but a failure in CI (CI=true), where .ci/run installs
    openssh-server so the ssh path is always tested there."""
    try:
        return server.start()
    except SSHDMissing as exc:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI needs sshd: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def sshd():
    """The loopback sshd, one per session (see LoopbackSSHD)."""
    with start_or_skip(LoopbackSSHD()) as server:
        yield server


def timed(fn):
    """(result or the exception raised, seconds it took): a failure must also come in time."""
    start = time.monotonic()
    try:
        return fn(), time.monotonic() - start
    except Exception as exc:  # the failure, and how long it took to come
        return exc, time.monotonic() - start
