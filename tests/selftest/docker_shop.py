"""A "production" Docker shop on this machine, for the self-tests of the Docker window (issue 24): the shop's
PostgreSQL 15 in a container (testcontainers, deploycheck's image built from Debian's packages) holding the v0.6
shop, the stand-in bot's v0.6.0 image built from its checkout's own Dockerfile, a tenant folder laid out as
provision_tenant.py lays one out (compose.yml naming the image literally, bot.env, run.sh), its container
started by `docker compose up -d` as the shop's run.sh does, and the fake Telegram and Pakasir in a process of
their own (deploycheck.rehearsal.fake_server) that outlives each phase's run.

The live phases then run as an operator runs them: `pytest -m PHASE --execute --service compose:bot
--compose-file ...`, each its own process, with DATABASE_URL, DOCKER_HOST and DEPLOYCHECK_TEST_FAKES (the
test-only way deploycheck's own Telegram calls reach the fakes; against a real shop the smoke uses Telethon).
Everything on the host network, on 127.0.0.1."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from deploycheck.infra import bot_image, targets
from deploycheck.infra.tunnel import free_port
from deploycheck.record.ledger import Ledger
from deploycheck.telegram.driver import FakeDriver
from deploycheck.telegram.remote_fake import RemoteFakeAPI, RemoteGateway, read_state
from deploycheck.rehearsal import tenant
from deploycheck.rehearsal.checkout import build_checkout
from deploycheck.rehearsal.refbot import REHEARSAL_ADMIN_ID, REHEARSAL_STORE_NAME, REHEARSAL_USER_ID, REHEARSAL_USER_NAME

ROOT = Path(__file__).resolve().parents[2]
PREVIOUS, RELEASE = "v0.6.0", "v0.7.0"
PHASE_TIMEOUT = 900
# What a person attests against a live shop (the manual items), once for every phase run.
ATTESTATIONS = """
["2.1"]
text = "self-test: window scheduled"
by = "selftest"
["2.2"]
text = "self-test: stakeholders told"
by = "selftest"
["2.4"]
text = "self-test: team on call"
by = "selftest"
["3.4"]
text = "self-test: release documents read"
by = "selftest"
["15.7"]
text = "self-test: no customer complaints"
by = "selftest"
["15.12"]
text = "self-test: support tickets normal"
by = "selftest"
["16.7"]
text = "self-test: incident documented"
by = "selftest"
"""


def generate_shop(dsn: str) -> dict:
    """The v0.6 shop (fixtures/generate.py, seed 7), as production holds it before the release."""
    done = subprocess.run([sys.executable, str(ROOT / "fixtures" / "generate.py"), "--dsn", dsn, "--json"],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"generate.py failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


async def create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@dataclass
class FakeServer:
    """deploycheck.rehearsal.fake_server in a process of its own: the shops' Telegram and Pakasir."""

    process: subprocess.Popen
    state_file: Path
    state: dict

    @classmethod
    def start(cls, folder: Path) -> "FakeServer":
        state_file = folder / "fakes.json"
        process = subprocess.Popen([sys.executable, "-m", "deploycheck.rehearsal.fake_server", "--telegram-port",
                                    str(free_port()), "--gateway-port", str(free_port()), "--state", str(state_file)],
                                   stdout=(folder / "fakes.log").open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 60
        while not state_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the fake server did not start: {(folder / 'fakes.log').read_text()[-1500:]}")
            time.sleep(0.2)
        time.sleep(0.2)  # written, then renamed: present means complete
        return cls(process, state_file, json.loads(state_file.read_text()))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@dataclass
class Shop:
    """One tenant: its database on the shared server, its folder, its container."""

    slug: str
    dsn: str
    folder: Path
    env: dict = field(default_factory=dict)

    @property
    def compose_file(self) -> Path:
        return self.folder / "compose.yml"

    @property
    def container(self) -> str:
        return f"bot-{self.slug}-pakasir"


@dataclass
class DockerShops:
    """The machine's Docker shops: the daemon's client settings, the shared PostgreSQL, the checkout the
    releases are built from, the fakes."""

    docker_env: dict
    database: targets.Target
    checkout: Path
    fakes: FakeServer
    folder: Path
    shops: list[Shop] = field(default_factory=list)
    saved_env: dict = field(default_factory=dict)   # the process's own DOCKER_* before open_shops: put back at close

    def docker(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker", *args], env={**os.environ, **self.docker_env}, capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr[-1500:]}")
        return done

    async def add_shop(self, slug: str, image: str) -> Shop:
        """A tenant as provision_tenant.py makes one, running `image`, started as its run.sh starts it."""
        name = f"db_{slug}_{uuid.uuid4().hex[:6]}"
        await create_database(self.database.admin_dsn, name)
        dsn = self.database.dsn.rsplit("/", 1)[0] + f"/{name}"
        generate_shop(dsn)
        fakes = self.fakes.state
        settings = {"DATABASE_URL": dsn, "TELEGRAM_BOT_TOKEN": fakes["token"], "STORE_SLUG": slug,
                    "TELEGRAM_ADMIN_IDS": str(REHEARSAL_ADMIN_ID), "TELEGRAM_OWNER_IDS": str(REHEARSAL_ADMIN_ID),
                    "BOT_STORE_NAME": REHEARSAL_STORE_NAME,
                    "TELEGRAM_MODE": "polling", "PAKASIR_PROJECT_SLUG": slug, "PAKASIR_API_KEY": "selftest-key",
                    "PAKASIR_PORT": str(free_port()), "BOT_WEBHOOK_PORT": str(free_port()),
                    # the test-only ways to the fakes (the stand-in's own settings: see its README)
                    "TELEGRAM_API_BASE_URL": fakes["telegram_url"], "PAKASIR_BASE_URL": fakes["gateway_url"]}
        folder = tenant.provision(self.folder / "deployments", slug, "pakasir", image, settings, host_network=True)
        shop = Shop(slug, dsn, folder)
        RemoteGateway(read_state(self.fakes.state_file)).configure(  # the paid webhook goes to this shop's server
            webhook_url=f"http://127.0.0.1:{settings['PAKASIR_PORT']}/webhooks/pakasir", project=slug,
            api_key=settings["PAKASIR_API_KEY"])
        self.compose(shop, "up", "-d")
        self.shops.append(shop)
        self.wait_polling(shop)
        return shop

    def wait_polling(self, shop: Shop, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "Application started" not in self.logs(shop):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{shop.container} did not start polling: {self.logs(shop)[-2000:]}")
            time.sleep(0.5)

    def logs(self, shop: Shop) -> str:
        done = self.docker("logs", shop.container, check=False)
        return done.stdout + done.stderr

    def compose(self, shop: Shop, *args: str) -> subprocess.CompletedProcess:
        return self.docker("compose", "-f", str(shop.compose_file), *args, timeout=300)

    def running_image(self, shop: Shop) -> str:
        return self.docker("inspect", "-f", "{{.Image}}", shop.container).stdout.strip()

    def phase(self, shop: Shop, phase: str, deployment_id: str, *extra: str) -> subprocess.CompletedProcess:
        """`pytest -m PHASE --execute` against the shop, as its operator runs it, in a process of its own."""
        attestations = self.folder / "attestations.toml"
        # the shop is the generated one: the rehearsal's decisions about its data (5.3, 12.2) hold for it too
        attestations.write_text((ROOT / "fixtures" / "rehearsal-attestations.toml").read_text() + ATTESTATIONS)
        argv = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "deploycheck.pytest_plugin",
                "-p", "no:cacheprovider", "-m", phase, "--execute", "--service", "compose:bot", "--compose-file",
                str(shop.compose_file), "--bot-dir", str(self.checkout), "--release-ref", RELEASE, "--previous-ref",
                PREVIOUS, "--deployment-id", deployment_id, "--reports-dir", str(self.folder / "reports"),
                "--attestations", str(attestations), "--backup-copy-to", str(self.folder / "safe" / deployment_id),
                "--maintenance-message", "🔧 Maintenance until 03:00 UTC (self-test)", "--html", str(self.folder / f"{deployment_id}-{phase}.html"),
                *extra]
        env = {**os.environ, **self.docker_env, "DATABASE_URL": shop.dsn, "DEPLOYCHECK_TEST_FAKES": str(self.fakes.state_file),
               "TELEGRAM_ADMIN_IDS": str(REHEARSAL_ADMIN_ID), "BOT_STORE_NAME": REHEARSAL_STORE_NAME, "CI": ""}
        env.pop("PYTEST_XDIST_WORKER", None)
        return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=PHASE_TIMEOUT)

    def recorded(self, deployment_id: str, item: str) -> dict:
        """The evidence of the newest pass of an item in the deployment's ledger."""
        found = Ledger(self.folder / "reports" / deployment_id / "ledger.jsonl").latest(item)
        return found["evidence"] if found else {}

    async def version_answered(self) -> str:
        """What the shops' bot says to /version (the stand-in's own command: its release's VERSION)."""
        api = RemoteFakeAPI(read_state(self.fakes.state_file))
        user = await FakeDriver(api, REHEARSAL_USER_ID, REHEARSAL_USER_NAME, settle=0.5).start()
        try:
            await user.send("/version")
            return " | ".join(m.text for m in await user.collect(timeout=30))
        finally:
            await user.stop()
            await api.close()

    def close(self) -> None:
        for shop in self.shops:
            self.compose(shop, "down", "--remove-orphans")
        self.fakes.stop()
        self.database.stop()
        for name, value in self.saved_env.items():  # later tests of this worker must not find this daemon
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def opened(daemon, folder: Path):
    """The shops of a module (its `shops` fixture): closed at the end, and no container left behind."""
    made = open_shops(daemon.env, folder)
    try:
        yield made
    finally:
        made.close()
    assert not daemon.containers(), "a container was left behind"


def open_shops(docker_env: dict, folder: Path) -> DockerShops:
    """The shared pieces: PostgreSQL 15 in a container, the stand-in's checkout and its v0.6.0 image, the fakes."""
    saved = {name: os.environ.get(name) for name in docker_env}
    os.environ.update(docker_env)  # testcontainers and deploycheck's image builders find the daemon so
    database = targets.open_container(15, None, print)
    checkout = build_checkout(folder / "code", "standin")
    bot_image.build_release(checkout, PREVIOUS, f"bot-auto-order:{PREVIOUS}", None, print)
    fakes = FakeServer.start(folder)
    return DockerShops(docker_env, database, checkout, fakes, folder, saved_env=saved)
