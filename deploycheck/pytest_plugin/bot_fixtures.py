"""Bot-side fixtures of the checklist run: fake_bot_api, fake_gateway, telegram_api, admins, bot_user, selftest_fakes,
admin_user, and what the smoke tests need around them (smoke_options, smoke_db, smoke_run). A pytest plugin module, registered
by deploycheck.pytest_plugin; it relies on that plugin's `target` and `dsn` fixtures.

In a rehearsal the users are FakeDrivers on a FakeBotAPI, talking to the bot the rehearsal's service
runs (started for the smoke items if no earlier phase did). Against a live target the users are LiveDrivers (Telethon), from
TELEGRAM_API_ID, TELEGRAM_API_HASH, TELEGRAM_SESSION (and TELEGRAM_ADMIN_SESSION for a separate admin
account; without it the one account must be a bot admin) and TELEGRAM_BOT_USERNAME.

FOR DEPLOYCHECK'S OWN TESTS ONLY: a live run with DEPLOYCHECK_TEST_FAKES=<the state file of
`python -m deploycheck.rehearsal.fake_server`> talks to that server's fake Telegram and fake Pakasir instead of
the real ones (the self-tests' "production" shop, built on the test machine, is configured to use them): the
6.3 and 16.6 notices go to its Bot API with its token, the user and admin are FakeDrivers on it (the
rehearsal's ids, REHEARSAL_USER_ID and REHEARSAL_ADMIN_ID: the shop's bot.env has
TELEGRAM_ADMIN_IDS=[REHEARSAL_ADMIN_ID]), and the order flow pays through its gateway. The run's header says so.
"""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from deploycheck.checks import smoke, smoke_data
from deploycheck.pytest_plugin.state import state_of
from deploycheck.telegram.driver import FakeDriver
from deploycheck.telegram.live_driver import LiveDriver, LiveDriverError
from deploycheck.telegram.fake_api import FakeBotAPI
from deploycheck.telegram.remote_fake import (TEST_FAKES, FakeState, RemoteFakeAPI, RemoteFakeError, RemoteGateway,
                                             read_state)
from deploycheck.rehearsal.refbot import (REHEARSAL_ADMIN_ID, REHEARSAL_ADMIN_NAME, REHEARSAL_STORE_NAME,
                                         REHEARSAL_USER_ID, REHEARSAL_USER_NAME, ReferenceBot, ReferenceBotError)

FAKES = pytest.StashKey[FakeState]()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session) -> None:
    """DEPLOYCHECK_TEST_FAKES is read once, before anything runs: a bad state file stops the run at once."""
    state, path = state_of(session.config), os.environ.get(TEST_FAKES)
    if not state or state.rehearsal or not path:      # a rehearsal has fakes of its own
        return
    try:
        fakes = read_state(path)
    except RemoteFakeError as exc:
        raise pytest.UsageError(str(exc)) from None
    state.redactor.add(fakes.token)
    session.config.stash[FAKES] = fakes
    try:        # the HTML report's metadata says it too (pytest-html's pytest-metadata, when installed)
        from pytest_metadata.plugin import metadata_key
        session.config.stash[metadata_key]["Test Fakes"] = _says(fakes)
    except (ImportError, KeyError):
        pass


def _says(fakes: FakeState) -> str:
    return (f"TEST FAKES, not Telegram and Pakasir: {fakes.telegram_url} and {fakes.gateway_url} "
            f"({TEST_FAKES}={fakes.path}; for deploycheck's own tests only)")


def pytest_report_header(config):
    fakes = config.stash.get(FAKES, None)
    if fakes:
        return f"deploycheck: {_says(fakes)}"


@pytest.fixture(scope="session")
def selftest_fakes(request, target) -> FakeState | None:
    """The test fake server of a live run of deploycheck's own tests (DEPLOYCHECK_TEST_FAKES); None otherwise."""
    return None if target.rehearsal else request.config.stash.get(FAKES, None)


@pytest_asyncio.fixture(scope="session")
async def fake_bot_api(target, selftest_fakes):
    """The fake Telegram Bot API of a rehearsal, with the rehearsal's user and admin; the test fake server's
    (a RemoteFakeAPI) in a live run with DEPLOYCHECK_TEST_FAKES; None against live."""
    if selftest_fakes is not None:
        api = RemoteFakeAPI(selftest_fakes)     # no call yet: the service fixture takes it too, and ignores it live
        yield api
        await api.close()
        return
    if not target.rehearsal:
        yield None
        return
    async with FakeBotAPI() as api:
        api.add_user(REHEARSAL_USER_ID, REHEARSAL_USER_NAME)
        api.add_user(REHEARSAL_ADMIN_ID, REHEARSAL_ADMIN_NAME)
        await _shop_users(api, target.dsn)
        yield api


async def _shop_users(api: FakeBotAPI, dsn: str) -> None:
    """Telegram delivers to every user of the shop (403 to those who blocked the bot): so does the fake, for
    the users of the rehearsal's database (expiry notices, deliveries, broadcasts reach them)."""
    from deploycheck.checks.window import recipients
    from deploycheck.infra.db import connect
    conn = await connect(dsn)
    try:
        every = [r["telegram_id"] for r in await conn.fetch("SELECT telegram_id FROM users")]
        reachable = set(await recipients(conn))
    finally:
        await conn.close()
    api.add_users(every, blocked=[u for u in every if u not in reachable])


@pytest_asyncio.fixture(scope="session")
async def fake_gateway(target, selftest_fakes):
    """The fake Pakasir gateway of a rehearsal (QRIS payments, the paid webhook); the test fake server's (a
    RemoteGateway) with DEPLOYCHECK_TEST_FAKES; None against live."""
    if selftest_fakes is not None:
        gateway = RemoteGateway(selftest_fakes)
        yield gateway
        await gateway.close()
        return
    if not target.rehearsal:
        yield None
        return
    from deploycheck.rehearsal.fake_gateway import FakeGateway
    async with FakeGateway() as gateway:
        yield gateway


@dataclass
class TelegramAPI:
    """Where the bot's own Bot API calls go (6.3's notice to users, 16.6's to the team): api.telegram.org with
    TELEGRAM_BOT_TOKEN against live, the fake in a rehearsal (or the test fake server's)."""

    base_url: str
    token: str
    fake: FakeBotAPI | RemoteFakeAPI | None = None

    def register(self, chats) -> None:
        """Make recipients reachable: the rehearsal's customers exist on the fake Telegram; real ones do."""
        if self.fake:
            self.fake.add_users(list(chats))


TELEGRAM = "https://api.telegram.org"


@pytest.fixture(scope="session")
def telegram_api(fake_bot_api, selftest_fakes, admins) -> TelegramAPI:
    if selftest_fakes is not None:
        api = TelegramAPI(selftest_fakes.telegram_url, selftest_fakes.token, fake_bot_api)
        try:
            api.register(admins)       # the team's accounts exist on Telegram: on the test fake, made known
        except RemoteFakeError as exc:
            pytest.fail(str(exc), pytrace=False)
        return api
    if fake_bot_api is not None:
        return TelegramAPI(fake_bot_api.url, fake_bot_api.token, fake_bot_api)
    return TelegramAPI(TELEGRAM, os.environ.get("TELEGRAM_BOT_TOKEN", ""))


@pytest.fixture(scope="session")
def admins(target) -> list:
    """The bot's admins (TELEGRAM_ADMIN_IDS, a JSON id or list), whom 16.6 tells of a rollback; in a
    rehearsal, the rehearsal's admin on the fake Telegram."""
    if target.rehearsal:
        return [REHEARSAL_ADMIN_ID]
    found = json.loads(os.environ.get("TELEGRAM_ADMIN_IDS") or "[]")
    return found if isinstance(found, list) else [found]


async def _live_driver(session_var: str) -> LiveDriver:
    try:
        return await LiveDriver.from_env(session_var=session_var).start()
    except LiveDriverError as exc:
        pytest.fail(f"smoke tests against the live bot: {exc}", pytrace=False)


async def _fake_driver(api, user_id: int, name: str) -> FakeDriver:
    try:
        return await FakeDriver(api, user_id, name, settle=0.2).start()
    except RemoteFakeError as exc:     # the test fake server: it does not answer
        pytest.fail(str(exc), pytrace=False)


@pytest_asyncio.fixture(scope="session")
async def bot_user(target, fake_bot_api, service, selftest_fakes):
    """A shop customer talking to the bot."""
    if target.rehearsal or selftest_fakes:
        driver = await _fake_driver(fake_bot_api, REHEARSAL_USER_ID, REHEARSAL_USER_NAME)
    else:
        driver = await _live_driver("TELEGRAM_SESSION")
    yield driver
    await driver.stop()


@pytest_asyncio.fixture(scope="session")
async def admin_user(target, fake_bot_api, service, bot_user, selftest_fakes):
    """A bot admin (TELEGRAM_ADMIN_IDS) talking to the bot."""
    if target.rehearsal or selftest_fakes:
        driver = await _fake_driver(fake_bot_api, REHEARSAL_ADMIN_ID, REHEARSAL_ADMIN_NAME)
    elif os.environ.get("TELEGRAM_ADMIN_SESSION"):
        driver = await _live_driver("TELEGRAM_ADMIN_SESSION")
    else:
        yield bot_user       # one account for both: it must be an admin of the bot
        return
    yield driver
    await driver.stop()


@pytest.fixture(scope="session")
def smoke_options(target, selftest_fakes) -> smoke.SmokeOptions:
    if target.rehearsal:
        return smoke.SmokeOptions(reply_timeout=5.0, store_name=REHEARSAL_STORE_NAME)
    if selftest_fakes:      # the test shop answers on this machine: a rehearsal's wait
        return smoke.SmokeOptions(reply_timeout=5.0, store_name=os.environ.get("BOT_STORE_NAME") or None)
    return smoke.SmokeOptions(reply_timeout=15.0, store_name=os.environ.get("BOT_STORE_NAME") or None)


@pytest.fixture
def smoke_db(db):
    """The connection the write flows use (test data in, test data out): the plugin's `db`, named so a
    reader sees which tests write; read-only checks use `db` itself."""
    return db


@pytest_asyncio.fixture
async def smoke_run(target, smoke_db, smoke_options, selftest_fakes):
    """Names this test's data; at the end (pass or fail) every smoke test's data is removed."""
    run = smoke_data.SmokeRun(smoke_options.prefix)
    users = (REHEARSAL_USER_ID, REHEARSAL_ADMIN_ID) if target.rehearsal or selftest_fakes else ()
    try:
        yield run
    finally:
        await smoke_data.cleanup(smoke_db, smoke_options.prefix, user_telegram_ids=users)


@dataclass
class ReleaseTrial:
    """The release's bot on the migrated copy, behind fakes of its own: `user` talks to it; `problem` says
    why it could not be started (then nothing else is tried)."""

    user: FakeDriver | None = None
    problem: str | None = None
    evidence: dict | None = None
    admin: FakeDriver | None = None
    db: object = None          # the migrated copy, for the checks that compare the screens with the data


@pytest_asyncio.fixture
async def release_trial(request, run, recorded, release, host, bot_settings, tmp_path_factory):
    """Preflight starts the release before the window (beyond the checklist): on the copy 5.3 migrated, the
    release's own code in its own environment (a Docker shop's: a container of the release image), behind its
    own fake Telegram and gateway; nothing of production is touched. When 5.3 did not pass there is no
    migrated copy: the code must still import."""
    from deploycheck.rehearsal.bots import checkout_bot, image_bot, import_problem
    from deploycheck.rehearsal.botprocess import BotStartError
    from deploycheck.rehearsal.fake_gateway import FakeGateway
    if release.kind == "checkout" and not host.is_this_machine():
        pytest.skip(f"the release's checkout is on {host.name}, not on this machine, where the trial starts it: run "
                    "preflight on the server (--host local) to start the release before the window")
    problem = import_problem(release.python, Path(release.folder)) if release.kind == "checkout" else None
    restored = recorded("4.3").get("Restored Copy")
    migrated = run.results.outcome("5.3") == "passed" and restored
    if problem or not migrated:
        yield ReleaseTrial(problem=problem, evidence={"Imports": "no" if problem else "yes", "Started": (
            "no: the migration rehearsal (5.3) left no migrated copy" if not migrated else "no")})
        return
    logs = tmp_path_factory.mktemp("release-trial")
    async with FakeBotAPI() as api, FakeGateway() as gateway:
        api.add_user(REHEARSAL_USER_ID, REHEARSAL_USER_NAME)
        api.add_user(REHEARSAL_ADMIN_ID, REHEARSAL_ADMIN_NAME)
        settings = {"BOT_STORE_NAME": REHEARSAL_STORE_NAME, **bot_settings}
        if run.deployment.bot == "reference":
            bot = ReferenceBot(script=Path(release.folder) / "bot" / "main.py").start(
                restored, api.url, api.token, log_path=logs / "bot.log")
        elif release.kind == "image":
            bot = image_bot(release.image, restored, api, gateway, logs, settings, REHEARSAL_ADMIN_ID).start()
        else:
            bot = checkout_bot(Path(release.folder), release.python, restored, api, gateway, logs, settings,
                               REHEARSAL_ADMIN_ID).start()
        try:
            seconds = await bot.wait_ready(60)
        except (BotStartError, ReferenceBotError) as exc:
            await bot.stop()
            yield ReleaseTrial(problem=f"the release's bot does not start on the migrated copy: {exc}",
                               evidence={"Imports": "yes", "Started": "no"})
            return
        from deploycheck.infra.db import connect
        user = await FakeDriver(api, REHEARSAL_USER_ID, REHEARSAL_USER_NAME, settle=0.2).start()
        admin = await FakeDriver(api, REHEARSAL_ADMIN_ID, REHEARSAL_ADMIN_NAME, settle=0.2).start()
        copy = await connect(restored)
        try:
            yield ReleaseTrial(user=user, admin=admin, db=copy,
                               evidence={"Imports": "yes", "Started": f"ready in {seconds:.1f} s"})
        finally:
            await copy.close()
            await user.stop()
            await admin.stop()
            await bot.stop()


@pytest_asyncio.fixture
async def outbound(service):
    """(processes started, installed, refused) of the rehearsal bot's outbound guard; None when there is no
    guard: a live bot talks to the real Telegram, and the old reference bot runs without the launcher's guard.
    In a container rehearsal, the Python processes in the bot's container now and its health check, run once."""
    from deploycheck.telegram.outbound_guard import read_log
    guard = getattr(service, "guard", None)
    if guard:
        container = await asyncio.to_thread(service.inspect)
        return await asyncio.to_thread(guard.check, container)
    bots = getattr(service, "bot", None)
    log = getattr(bots, "refused_log", None)
    if log is None:
        return None
    installed, refused = read_log(log)
    return bots.started_processes, installed, refused


@pytest_asyncio.fixture(scope="session")
async def bot_has_run(request, target, service, progress_line):
    """A rehearsal's monitoring looks at what the bot did on its own (its jobs: health checks, expiries,
    broadcasts) over --bot-run-seconds of running against the shop; production's bot has been running for
    real. Returns the seconds waited (0 against live)."""
    import time
    seconds = request.config.option.bot_run_seconds if target.rehearsal else 0
    began = time.monotonic()
    while (left := seconds - (time.monotonic() - began)) > 0:
        progress_line(f"monitoring: the bot runs against the shop, {left:.0f} s left (--bot-run-seconds)")
        await asyncio.sleep(min(15.0, left))
    return time.monotonic() - began if seconds else 0
