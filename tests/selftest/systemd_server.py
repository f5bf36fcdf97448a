"""The checklist's own server, for real, built by the self-tests: a container with systemd as PID 1, an OpenSSH
server on a port of its own, PostgreSQL 15 on the server's localhost holding the v0.6 shop, and the stand-in bot
checked out with its history at /opt/bot-auto-order (v0.6.0 running, v0.7.0 on its origin) in a virtualenv, run by
the unit `bot-auto-order` (journal logging, its settings from an EnvironmentFile), and a sudo rule for the login
user `deploy` limited to that unit. deploycheck reaches it as an operator on a laptop would: `--host ssh://`, the
database through its ssh tunnel.

The image is made from Debian's packages (mmdebstrap, `docker import`, then a small build: the machine's CA
bundle, the login user, the bot's virtualenv), tagged by what goes into it and reused. A container runs by the
recipe of ../shared/facts/bot-auto-order-docker.md (`--cap-add SYS_ADMIN --security-opt seccomp=unconfined`,
cgroups mounted, tmpfs on /run; `--privileged` fails here) on the host network, so every port it listens on is
chosen free here and written into its files before it boots (sshd, PostgreSQL). Each container has a name and
label of its own and is removed when its fixture ends, whatever happened (and, with the daemon, at the end of
the session).

    def test_x(systemd_server):
        systemd_server.host_spec            # --host
        systemd_server.database_url         # DATABASE_URL as the server knows it (localhost:<port>)
        systemd_server.root("journalctl -u bot-auto-order")   # docker exec: what the server's root sees
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sshd import LoopbackSSHD, free_port, keygen

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "sudo", "postgresql-15", "git", "python3-venv",
            "python3-pip", "ca-certificates")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # this machine trusts a CA Debian's bundle lacks (facts)
REQUIREMENTS = ROOT / "fixtures" / "standin-bot" / "requirements.txt"
BUILD_TIMEOUT = 900
BOOT_TIMEOUT = 90
LABEL = "deploycheck.selftest.systemd-server"

UNIT = "bot-auto-order"
USER = "deploy"
BOT_DIR = "/opt/bot-auto-order"
ORIGIN = "/srv/git/bot-auto-order.git"
ENV_FILE = "/etc/bot-auto-order/bot.env"
SUDOERS = "/etc/sudoers.d/bot-auto-order"
# Where a package would put it, not /etc/systemd/system: `systemctl mask` links /etc/systemd/system/<unit> to
# /dev/null, which it cannot do over a unit file of that name there (a fault test masks it)
UNIT_PATH = f"/usr/local/lib/systemd/system/{UNIT}.service"
DROP_INS = f"/etc/systemd/system/{UNIT}.service.d"
STARTUP = re.compile(r"Starting bot in \w+ mode\..*\(stand-in ([0-9.]+)\)")
DATABASE = "bot_auto_order"
# What the `deploy` user may run as root: the unit's control and its journal, nothing else (sudoers matches the
# arguments: `*` stands for journalctl's own options after the unit).
SUDO_RULE = (f"{USER} ALL=(root) NOPASSWD: /usr/bin/systemctl start {UNIT}, /usr/bin/systemctl stop {UNIT}, "
             f"/usr/bin/systemctl restart {UNIT}, /usr/bin/journalctl -u {UNIT} *\n")

DOCKERFILE = f"""\
FROM {{base}}
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY requirements.txt /tmp/requirements.txt
RUN printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > /etc/pip.conf \\
 && useradd --uid 1000 --create-home --shell /bin/bash {USER} && usermod -p '*' {USER} \\
 && mkdir -p {BOT_DIR} /srv/git /etc/bot-auto-order && chown {USER}:{USER} {BOT_DIR} /srv/git \\
 && su {USER} -c 'python3 -m venv {BOT_DIR}/venv && {BOT_DIR}/venv/bin/pip install --quiet --no-cache-dir \\
      -r /tmp/requirements.txt' \\
 && rm -f /etc/ssh/ssh_host_* /tmp/requirements.txt \\
 && echo 'LANG=C.UTF-8' > /etc/default/locale
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
"""


class ServerError(RuntimeError):
    """The server could not be built or started; the message says which step and what it printed."""


def _run(command: list[str], timeout: float, what: str, env: dict | None = None, stdin: bytes | None = None) -> str:
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, env=env, input=stdin)
    except subprocess.TimeoutExpired:
        raise ServerError(f"{what}: `{' '.join(command[:3])}` did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        text = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()[-12:]
        raise ServerError(f"{what}: `{' '.join(command[:3])}` exited {done.returncode}:\n  " + "\n  ".join(text))
    return done.stdout.decode(errors="replace")


# -- the image --------------------------------------------------------------------------------------------------
def image_tag() -> str:
    """Tagged by everything that goes into it: a change to any of them is a new image, built once."""
    digest = hashlib.sha256()
    for part in (SUITE, " ".join(PACKAGES), DOCKERFILE, REQUIREMENTS.read_text(), CA_BUNDLE.read_bytes()):
        digest.update(part if isinstance(part, bytes) else part.encode())
    return f"deploycheck/systemd-server:{SUITE}-{digest.hexdigest()[:10]}"


def server_image(daemon, say=print) -> tuple[str, float]:
    """The server's image on `daemon`: there already, or built now (mmdebstrap, docker import, docker build).
    Returns the tag and the seconds the build took (0 when it was there)."""
    tag = image_tag()
    if daemon.docker("image", "inspect", tag).returncode == 0:
        return tag, 0.0
    if not shutil.which("mmdebstrap"):
        raise ServerError("building the systemd server's image needs mmdebstrap (apt-get install mmdebstrap)")
    env = {**os.environ, **daemon.env}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="deploycheck-systemd-image-") as folder:
        rootfs = Path(folder) / "rootfs.tar"
        say(f"building {tag} from Debian {SUITE}'s packages (mmdebstrap; a few minutes, once)")
        _run(["mmdebstrap", "--variant=apt", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs)],
             BUILD_TIMEOUT, f"building {tag}'s root filesystem")
        base = f"{tag}-base"
        _run(["docker", "import", str(rootfs), base], BUILD_TIMEOUT, f"importing {tag}'s base", env)
        rootfs.unlink()
        shutil.copy(CA_BUNDLE, Path(folder) / "ca-certificates.crt")
        shutil.copy(REQUIREMENTS, Path(folder) / "requirements.txt")
        (Path(folder) / "Dockerfile").write_text(DOCKERFILE.format(base=base))
        # the bridge is off on the tests' daemon: the build's pip reaches PyPI on the host network
        _run(["docker", "build", "--network", "host", "-q", "-t", tag, folder], BUILD_TIMEOUT, f"building {tag}", env)
        daemon.docker("rmi", base)
    took = time.monotonic() - began
    say(f"built {tag} in {took:.0f} s")
    return tag, took


# -- the fakes the bot talks to -----------------------------------------------------------------------------------
FAKE_SERVER = "deploycheck.rehearsal.fake_server"
REPLY_TIMEOUT = 15


class FakeServer:
    """The test fakes of Telegram and Pakasir as one process of the session (`python -m
    deploycheck.rehearsal.fake_server`), on this machine's 127.0.0.1, which the container shares (host network):
    the bot under systemd talks to them, and each phase's pytest process finds them through
    DEPLOYCHECK_TEST_FAKES (its state file), so 6.3's notice, the smoke's users and 16.6 go there."""

    def __init__(self, folder: Path, token: str, webhook_url: str):
        self.folder, self.token, self.webhook_url = folder, token, webhook_url
        self.state_path, self.log_path = folder / "fakes.json", folder / "fakes.log"
        self.process: subprocess.Popen | None = None
        self.state: dict = {}

    def start(self) -> "FakeServer":
        import json
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", FAKE_SERVER, "--token", self.token, "--state",
                                             str(self.state_path), "--webhook-url", self.webhook_url],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self.state_path.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"the test fakes ({FAKE_SERVER}) did not start: {self.log_path.read_text()[-800:]}")
            time.sleep(0.1)
        self.state = json.loads(self.state_path.read_text())
        return self

    @property
    def telegram_url(self) -> str:
        return self.state["telegram_url"]

    @property
    def gateway_url(self) -> str:
        return self.state["gateway_url"]

    @property
    def env(self) -> dict[str, str]:
        return {"DEPLOYCHECK_TEST_FAKES": str(self.state_path)}

    def _control(self, path: str, body: dict | None = None, timeout: float = 10):
        import json
        import urllib.request
        request = urllib.request.Request(self.state["control_url"] + path, method="POST" if body is not None else "GET",
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=timeout) as answer:
            return json.loads(answer.read())

    def polls(self) -> int:
        """How many times the bot asked the fake Telegram for updates so far."""
        return len(self._control("/telegram/calls?method=getUpdates"))

    def ask(self, text: str) -> str:
        """The rehearsal's user sends `text`; the bot's first answer's text ("" when none came in time)."""
        from deploycheck.rehearsal.refbot import REHEARSAL_USER_ID, REHEARSAL_USER_NAME
        self._control("/telegram/users", {"users": [{"id": REHEARSAL_USER_ID, "first_name": REHEARSAL_USER_NAME}]})
        mark = self._control(f"/telegram/outbox/{REHEARSAL_USER_ID}")["next"]
        self._control("/telegram/send", {"user_id": REHEARSAL_USER_ID, "text": text})
        items = self._control(f"/telegram/outbox/{REHEARSAL_USER_ID}?after={mark}&timeout={REPLY_TIMEOUT}",
                              timeout=REPLY_TIMEOUT + 10)["items"]
        return (items[0].get("message") or {}).get("text", "") if items else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- the server ----------------------------------------------------------------------------------------------------
SSHD_CONFIG = """\
# deploycheck's systemd server: its own file, like tests/selftest/sshd.py's, on a port of its own (host network).
ListenAddress 127.0.0.1
Port {port}
HostKey /etc/ssh/ssh_host_ed25519_key
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# pam_loginuid fails in containers; keys need no PAM (the account is unlocked with '*' for that)
UsePAM no
PermitRootLogin no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel VERBOSE
"""

UNIT_FILE = f"""\
[Unit]
Description=bot-auto-order, the Telegram shop bot (deploycheck's stand-in)
Wants=postgresql.service
After=network.target postgresql.service
StartLimitIntervalSec=60
StartLimitBurst=3

[Service]
Type=simple
User={USER}
Group={USER}
WorkingDirectory={BOT_DIR}
EnvironmentFile={ENV_FILE}
Environment=PYTHONUNBUFFERED=1
# both of bot-auto-order's processes: the Pakasir webhook server beside the bot, in the unit's group
ExecStart=/bin/sh -c '{BOT_DIR}/venv/bin/python -m src.server --host 127.0.0.1 --port $PAKASIR_PORT & exec {BOT_DIR}/venv/bin/python -m src.main --mode polling'
Restart=on-failure
RestartSec=2
KillSignal=SIGINT
TimeoutStopSec=20
StandardOutput=journal
StandardError=journal
SyslogIdentifier={UNIT}

[Install]
WantedBy=multi-user.target
"""


def _tar(entries: list[tuple[str, bytes | None, int]]) -> bytes:
    """A tar of (path, content or None for a folder, mode), owned by root: `docker cp -` unpacks it at /."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, content, mode in entries:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.mode, info.mtime = mode, int(time.time())
            if content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@dataclass
class SystemdServer:
    """One container of the server's image. start() makes it what the checklist imagines; remove() ends it."""

    daemon: object
    image: str
    folder: Path
    fakes: FakeServer
    webhook_port: int = 0
    name: str = field(default_factory=lambda: f"deploycheck-sysd-{uuid.uuid4().hex[:10]}")
    ssh_port: int = field(default_factory=free_port)
    pg_port: int = field(default_factory=free_port)
    pg_password: str = field(default_factory=lambda: os.urandom(9).hex())
    timings: dict = field(default_factory=dict)

    # -- what a test uses --------------------------------------------------------------------------------------
    @property
    def host_spec(self) -> str:
        """--host as an operator gives it, with the client config that holds the throwaway key and host key."""
        return f"ssh://{USER}@127.0.0.1:{self.ssh_port}?ssh_config={self.ssh.ssh_config}&timeout=10"

    @property
    def database_url(self) -> str:
        """DATABASE_URL as the server knows its database: its own localhost (deploycheck tunnels to it)."""
        return f"postgresql://postgres:{self.pg_password}@localhost:{self.pg_port}/{DATABASE}"

    @property
    def env(self) -> dict[str, str]:
        """What an operator exports before running a phase against this server (the bot's admins: 16.6 tells
        them of a rollback), and the switch to the test fakes."""
        from deploycheck.rehearsal.refbot import REHEARSAL_ADMIN_ID
        return {"DATABASE_URL": self.database_url, "TELEGRAM_BOT_TOKEN": self.fakes.token,
                "TELEGRAM_ADMIN_IDS": f"[{REHEARSAL_ADMIN_ID}]", **self.fakes.env}

    def root(self, command: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
        """A command as the server's root (docker exec): how the tests plant faults and look behind deploycheck."""
        done = self.daemon.docker("exec", self.name, "sh", "-c", command, timeout=timeout)
        if check and done.returncode != 0:
            raise ServerError(f"`{command[:120]}` on {self.name} exited {done.returncode}: "
                              f"{(done.stderr or done.stdout).strip()[-800:]}")
        return done

    def as_deploy(self, command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """A command as the login user, through ssh like deploycheck's own (what an operator types)."""
        done = subprocess.run(["ssh", "-F", str(self.ssh.ssh_config), "127.0.0.1", command], capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise ServerError(f"ssh {USER}@{self.name} `{command[:120]}` exited {done.returncode}: "
                              f"{done.stderr.strip()[-800:]}")
        return done

    def journal(self, since: str | None = None) -> str:
        """The unit's journal as the server's root reads it (short-iso, for messages)."""
        when = f" --since {shlex.quote(since)}" if since else ""
        return self.root(f"journalctl -u {UNIT} --no-pager -o short-iso{when}").stdout

    def started_versions(self, since: float) -> list[str]:
        """The stand-in's releases the unit started since `since` (time.time()), from its startup lines in the
        journal (`▶️ Starting bot in polling mode. (stand-in 0.7.0)`), read as root."""
        return STARTUP.findall(self.root(f"journalctl -u {UNIT} --no-pager -o cat --since @{since:.3f}").stdout)

    def version(self) -> str:
        """What the running bot says it is: its answer to /version (`bot-auto-order stand-in 0.7.0`)."""
        answer = self.fakes.ask("/version")
        return answer.rsplit(" ", 1)[-1] if answer.startswith("bot-auto-order stand-in") else f"no answer ({answer!r})"

    def drop_in(self, name: str, text: str | None) -> None:
        """A drop-in for the unit (None removes it), then daemon-reload: what an admin's change to the unit does."""
        path = f"{DROP_INS}/{name}.conf"
        if text is None:
            self.root(f"rm -f {path}", check=True)
        else:
            self.put([(DROP_INS, None, 0o755), (path, text.encode(), 0o644)])
        self.root("systemctl daemon-reload", check=True)

    def sql(self, query: str) -> str:
        """A query on the shop's database as the server's postgres user (psql -At), its output."""
        return self.root(f"su postgres -c {shlex.quote(f'psql -p {self.pg_port} -d {DATABASE} -Atc {shlex.quote(query)}')}"
                         ).stdout.strip()

    def main_pid(self) -> int:
        out = self.root(f"systemctl show -p MainPID --value {UNIT}").stdout.strip()
        return int(out) if out.isdigit() else 0

    def state(self) -> str:
        return self.root(f"systemctl is-active {UNIT}").stdout.strip()

    def head(self) -> str:
        return self.as_deploy(f"git -C {BOT_DIR} describe --tags --always HEAD").stdout.strip()

    # -- life ----------------------------------------------------------------------------------------------------
    def start(self) -> "SystemdServer":
        began = time.monotonic()
        self._ssh_files()
        self._create()
        self._boot()
        self.timings["boot"] = time.monotonic() - began
        self._database()
        self.timings["database"] = time.monotonic() - began - self.timings["boot"]
        self._checkout()
        self._bot()
        self.timings["ready"] = time.monotonic() - began
        return self

    def _ssh_files(self) -> None:
        self.ssh = LoopbackSSHD(alias="127.0.0.1")  # its client config and spec, for this server's port
        self.ssh.folder, self.ssh.port, self.ssh.user = self.folder, self.ssh_port, USER
        self.host_key = keygen(self.folder / "host_ed25519_key", "deploycheck-systemd-server-host")
        self.ssh.client_key = keygen(self.folder / "client_ed25519_key")
        public = (self.folder / "host_ed25519_key.pub").read_text().split()
        (self.folder / "known_hosts").write_text(f"127.0.0.1 {public[0]} {public[1]}\n")
        self.ssh.ssh_config = self.ssh.write_ssh_config("ssh_config", connect_timeout=10)

    def settings(self, **changes: str | None) -> dict[str, str]:
        """The bot's EnvironmentFile: its database on the server's localhost, a token, the fakes; `changes`
        override (None drops a setting)."""
        from deploycheck.rehearsal.refbot import REHEARSAL_ADMIN_ID, REHEARSAL_STORE_NAME
        values = {"DATABASE_URL": self.database_url, "TELEGRAM_BOT_TOKEN": self.fakes.token,
                  "TELEGRAM_API_BASE_URL": self.fakes.telegram_url, "PAKASIR_BASE_URL": self.fakes.gateway_url,
                  "PAKASIR_PROJECT_SLUG": "deploycheck-systemd", "PAKASIR_API_KEY": "systemd-server-key",
                  "PAKASIR_PUBLIC_DOMAIN": self.fakes.gateway_url, "TELEGRAM_ADMIN_IDS": f"[{REHEARSAL_ADMIN_ID}]",
                  "TELEGRAM_OWNER_IDS": f"[{REHEARSAL_ADMIN_ID}]", "BOT_STORE_NAME": REHEARSAL_STORE_NAME,
                  "PAKASIR_PORT": str(self.webhook_port), "STANDIN_HEALTHCHECK_FIRST_SECONDS": "5"}
        values.update(changes)
        return {key: value for key, value in values.items() if value is not None}

    def write_settings(self, **changes: str | None) -> None:
        text = "".join(f"{key}={value}\n" for key, value in self.settings(**changes).items())
        self.put([(ENV_FILE, text.encode(), 0o600)])

    def put(self, entries: list[tuple[str, bytes | None, int]]) -> None:
        """Files into the container (created or running), owned by root."""
        _run(["docker", "cp", "-", f"{self.name}:/"], 60, f"copying files into {self.name}",
             {**os.environ, **self.daemon.env}, _tar(entries))

    def _create(self) -> None:
        _run(["docker", "create", "--name", self.name, "--label", f"{LABEL}={self.name}", "--hostname", self.name,
              "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--network", "host",
              "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
              self.image, "/lib/systemd/systemd"], 60, f"creating {self.name}", {**os.environ, **self.daemon.env})
        self.created = True
        self.put([
            ("/etc/ssh/sshd_config", SSHD_CONFIG.format(port=self.ssh_port, user=USER).encode(), 0o644),
            ("/etc/ssh/ssh_host_ed25519_key", self.host_key.read_bytes(), 0o600),
            ("/etc/ssh/ssh_host_ed25519_key.pub", self.host_key.with_suffix(".pub").read_bytes(), 0o644),
            ("/etc/ssh/authorized_keys", None, 0o755),
            (f"/etc/ssh/authorized_keys/{USER}", self.ssh.client_key.with_suffix(".pub").read_bytes(), 0o644),
            ("/etc/postgresql/15/main/conf.d/deploycheck.conf",
             f"port = {self.pg_port}\nlisten_addresses = 'localhost'\n".encode(), 0o644),
            (SUDOERS, SUDO_RULE.encode(), 0o440),
            (UNIT_PATH, UNIT_FILE.encode(), 0o644),
        ])
        self.write_settings()
        _run(["docker", "start", self.name], 60, f"starting {self.name}", {**os.environ, **self.daemon.env})

    def _boot(self) -> None:
        """systemd up (running, or degraded when a unit that does not matter here failed), sshd answering. Its
        own name in /etc/hosts (docker writes the host's there on the host network): sudo looks it up."""
        self.root(f"grep -q ' {self.name}$' /etc/hosts || echo '127.0.1.1 {self.name}' >> /etc/hosts")
        deadline = time.monotonic() + BOOT_TIMEOUT
        state = ""
        while time.monotonic() < deadline:
            state = self.root("systemctl is-system-running", timeout=20).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        else:
            raise ServerError(f"{self.name}'s systemd did not finish booting within {BOOT_TIMEOUT} s (state "
                              f"{state!r}): {self.root('systemctl --failed --no-pager').stdout[-800:]}")
        for unit in ("ssh", "postgresql@15-main"):
            if self.root(f"systemctl is-active {unit}").stdout.strip() != "active":
                raise ServerError(f"{unit} is not active on {self.name}: "
                                  f"{self.root(f'journalctl -u {unit} --no-pager -n 20').stdout[-1500:]}")
        self.as_deploy("true", timeout=20)

    def _database(self) -> None:
        """The postgres user's password (the bot and deploycheck log in over TCP), then the v0.6 shop, loaded
        from here: on the host network the server's localhost is this machine's."""
        self.root(f"su postgres -c \"psql -q -p {self.pg_port} -c \\\"ALTER USER postgres PASSWORD "
                  f"'{self.pg_password}'\\\"\"", check=True)
        from deploycheck.infra.targets import baseline_generator
        import asyncpg

        async def load() -> dict:
            admin = f"postgresql://postgres:{self.pg_password}@127.0.0.1:{self.pg_port}/postgres"
            conn = await asyncpg.connect(admin, timeout=20)
            try:
                await conn.execute(f'CREATE DATABASE "{DATABASE}"')
            finally:
                await conn.close()
            conn = await asyncpg.connect(admin.rsplit("/", 1)[0] + f"/{DATABASE}", timeout=20)
            try:
                return await baseline_generator().generate(conn, scale=1)
            finally:
                await conn.close()
        self.baseline = asyncio.run(load())

    def _checkout(self) -> None:
        """The stand-in's history (build_checkout: v0.6.0, v0.7.0, a bare origin) at /opt/bot-auto-order, its
        origin at /srv/git; the server's main is still at v0.6.0, as it was cloned before the release: the
        operator pulls v0.7.0 before preflight (3.1)."""
        from deploycheck.rehearsal.checkout import build_checkout, git
        built = self.folder / "checkout"
        checkout = build_checkout(built, "standin")
        git(checkout, "reset", "-q", "--hard", "v0.6.0")
        (checkout / ".git" / "info").mkdir(exist_ok=True)
        with (checkout / ".git" / "info" / "exclude").open("a") as exclude:
            exclude.write("venv/\n")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.add(checkout, arcname=BOT_DIR.lstrip("/"))
            tar.add(built / "origin.git", arcname=ORIGIN.lstrip("/"))
        _run(["docker", "cp", "-", f"{self.name}:/"], 120, f"copying the checkout into {self.name}",
             {**os.environ, **self.daemon.env}, archive.getvalue())
        self.root(f"chown -R {USER}:{USER} {BOT_DIR} /srv/git", check=True)
        self.as_deploy(f"git -C {BOT_DIR} remote set-url origin {ORIGIN} && git -C {BOT_DIR} fetch -q origin")

    def _bot(self) -> None:
        """The unit enabled and started (v0.6.0), ready when it polls the fake Telegram."""
        polls = self.fakes.polls()
        self.root(f"systemctl daemon-reload && systemctl enable --now {UNIT}", check=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.fakes.polls() > polls:
                return
            if self.state() == "failed":
                break
            time.sleep(0.5)
        raise ServerError(f"{UNIT} on {self.name} did not poll the fake Telegram (state {self.state()}):\n"
                          f"{self.journal()[-2000:]}")

    def restart(self, timeout: float = 60) -> None:
        """The server restarts (docker restart: systemd shuts down and boots again)."""
        _run(["docker", "restart", "-t", "20", self.name], timeout, f"restarting {self.name}",
             {**os.environ, **self.daemon.env})
        self._boot()

    def remove(self) -> None:
        if getattr(self, "created", False):
            self.daemon.docker("rm", "-f", "-v", self.name, timeout=60)
            self.created = False


@pytest.fixture(scope="session")
def systemd_image(docker_daemon):
    """The server's image on the tests' Docker daemon (built once per machine, then reused by its tag), and the
    seconds building it took this session (0 when it was there)."""
    if not shutil.which("mmdebstrap") and docker_daemon.docker("image", "inspect", image_tag()).returncode != 0:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("CI needs mmdebstrap to build the systemd server's image: .ci/run installs it", pytrace=False)
        pytest.skip("no mmdebstrap here to build the systemd server's image (apt-get install mmdebstrap)")
    try:
        return server_image(docker_daemon)
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


def make_server(docker_daemon, image: str, folder: Path):
    """A context manager: a started server, removed at the end whatever happened (its journal in the message
    when it did not start)."""
    from contextlib import contextmanager

    @contextmanager
    def server():
        webhook_port = free_port()  # the bot's Pakasir webhook server, where the fake gateway posts payments
        fakes = FakeServer(folder, f"6000000001:SYSD{uuid.uuid4().hex}",
                           f"http://127.0.0.1:{webhook_port}/webhooks/pakasir").start()
        made = SystemdServer(docker_daemon, image, folder, fakes, webhook_port=webhook_port)
        try:
            made.start()
            yield made
        finally:
            made.remove()
            fakes.stop()
    return server()


@pytest.fixture(scope="module")
def systemd_server(docker_daemon, systemd_image, tmp_path_factory):
    """One server for a module's tests (the live phases run against it in order)."""
    with make_server(docker_daemon, systemd_image[0], tmp_path_factory.mktemp("systemd-server")) as server:
        yield server
