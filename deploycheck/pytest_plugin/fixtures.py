"""The fixtures a checklist test reads like: target, dsn, db, evidence, recorded, execute, attestation, host,
service, and the values that differ between a rehearsal and production (maintenance_message,
backup_copy_to, migration_env, bot_python), so no test asks which one it is in."""
from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from deploycheck import attest
from deploycheck.checklist import ATTESTED, ChecklistError, Item, Read, item_key
from deploycheck.checks import contract, environment
from deploycheck.checks import window as deploy
from deploycheck.failure import CheckFailed
from deploycheck.infra import targets, tunnel
from deploycheck.pytest_plugin import backends
from deploycheck.pytest_plugin.collection import _round, require
from deploycheck.pytest_plugin.deployment import Deployment
from deploycheck.pytest_plugin.state import EVIDENCE, HANDED, STATE, Run, results_of
from deploycheck.infra.db import ConnectionFailed, connect
from deploycheck.infra.embedded import EmbeddedError
from deploycheck.infra.host import BotHost


def _state(request):
    state = request.config.stash.get(STATE, None)
    if state is None:
        pytest.fail("deploycheck fixtures need a checklist run (the deploycheck plugin did not configure one)")
    return state


@pytest.fixture(scope="session")
def deployment(request) -> Deployment:
    """This deployment (frozen): in a fleet's wave the tenant's, the fleet parametrizing this fixture."""
    return getattr(request, "param", None) or _state(request).base


@pytest.fixture(scope="session")
async def target(request, deployment, host):
    """The database server this run checks; a rehearsal's is started here and loaded with the baseline. A live
    database on the ssh host's own localhost is reached through an SSH tunnel to it (infra/tunnel.py). What
    it yields (the server, its version) goes to the recorder; nothing changes it afterwards."""
    state, option = _state(request), request.config.option
    try:
        chosen = backends.open_target(deployment, option, _say(request))
        tunnel.through_host(chosen, host)
    except (targets.TargetError, EmbeddedError, tunnel.TunnelError, CheckFailed) as exc:
        pytest.fail(f"target {deployment.target}: {state.redactor.text(str(exc))}", pytrace=False)
    for secret in chosen.secrets:
        state.redactor.add(secret)
    try:
        if chosen.rehearsal:
            chosen.baseline = await targets.load_baseline(chosen, option.baseline_dump, option.scale)
            for planted in request.config.hook.pytest_deploycheck_baseline_loaded(
                    config=request.config, deployment=deployment, target=chosen):
                chosen.baseline.update(await planted)
    except (targets.TargetError, ConnectionFailed) as exc:
        chosen.stop()
        pytest.fail(f"rehearsal baseline: {state.redactor.text(str(exc))}", pytrace=False)
    if chosen.server_version is None:  # part of opening it; a server that does not answer fails 1.3 and `db`
        chosen.server_version = await _version(chosen.dsn)
    request.config.hook.pytest_deploycheck_target_opened(config=request.config, deployment=deployment, target=chosen)
    yield chosen
    chosen.stop()


async def _version(dsn: str) -> str | None:
    try:
        conn = await connect(dsn)
    except ConnectionFailed:
        return None
    try:
        return conn.get_settings().server_version
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def dsn(target) -> str:
    return target.dsn


@pytest.fixture
async def db(target, request):
    """An asyncpg connection to the deployment database; not answering is a failure (NO-GO), never a skip."""
    state = _state(request)
    try:
        conn = await connect(target.dsn)
    except ConnectionFailed as exc:
        ended = target.tunnel and not target.tunnel.process.running
        why = (f" (the SSH tunnel via {target.tunnel.host.name} has ended: the server restarted or the connection "
               "dropped)" if ended else "")
        pytest.fail(state.redactor.text(str(exc)) + why, pytrace=False)
    yield conn
    try:
        await asyncio.wait_for(conn.close(), timeout=10)
    except (asyncio.TimeoutError, OSError):
        conn.terminate()


@pytest.fixture
def evidence(request) -> dict:
    """What this item found, shown in its report row and kept in the ledger: evidence["Users"] = 1234."""
    return request.node.stash.setdefault(EVIDENCE, {})


class Recorded(Mapping):
    """What earlier items recorded, as far as the checklist data lets this item read it: a key the source
    items do not declare in `records`, or this item does not declare in `reads`, is an error naming both
    (a typo shows the first time the test runs, not as "run preflight first" at 2 a.m.). Empty (falsy)
    when nothing was recorded; .get(key) is then None."""

    def __init__(self, reader: Item | None, sources: list[Item], evidence: dict | None):
        self.reader, self.sources, self.evidence = reader, sources, evidence or {}

    def _check(self, key: str) -> None:
        for source in self.sources:
            if not source.readable(key):
                raise ChecklistError(
                    f"{self._who()} reads {key!r} of item {source.id}, which does not record it (it records "
                    f"{list(source.records) or 'nothing'}): fix the key, or add it to {source.id}'s records in "
                    "the checklist data")
            if self.reader and Read(source.id, key) not in self.reader.reads and not (
                    key in ATTESTED and any(read.item == source.id for read in self.reader.reads)):
                raise ChecklistError(f"item {self.reader.id} reads {source.id}:{key}, which its `reads` in the "
                                     "checklist data do not declare: add it there")

    def _who(self) -> str:
        return f"item {self.reader.id}" if self.reader else "a test"

    def __getitem__(self, key: str):
        self._check(key)
        return self.evidence[key]

    def __contains__(self, key) -> bool:
        self._check(key)
        return key in self.evidence

    def __iter__(self):
        return (key for key in self.evidence if any(source.readable(key) for source in self.sources))

    def __len__(self) -> int:
        return len(self.evidence)


@pytest.fixture
def recorded(request, deployment):
    """recorded("5.1") -> the evidence an earlier item recorded (this run first, then the ledger), readable
    as the checklist data declares: recorded("6.1").get("Stopped At"), recorded("5.1")["tables"].
    recorded("1.3", "16.5") -> the evidence of whichever of them passed last. What an item hands later items
    of this run (its `hands`: a live value, e.g. 6.3's broadcast) is read the same way, in this run only."""
    state = _state(request)
    results = results_of(request.config, deployment)
    reader = getattr(request.node, "checklist_item", None)

    def lookup(*item_ids: str) -> Recorded:
        sources = [state.checklist[i] for i in item_ids]
        if reader and not any(read.item in item_ids for read in reader.reads):
            raise ChecklistError(f"item {reader.id} reads {' or '.join(item_ids)}, which its `reads` in the "
                                 "checklist data do not name: add it there")
        handed = {key: value for i in item_ids for key, value in results.handed(i).items()}
        passed = [i for i in item_ids if results.outcome(i) == "passed"]
        if passed:  # this run goes in checklist order: the later item is the newer
            return Recorded(reader, sources, {**results.get(max(passed, key=item_key))["evidence"], **handed})
        earlier = deployment.ledger.latest(*item_ids)
        return Recorded(reader, sources, {**(earlier["evidence"] if earlier else {}), **handed} or None)
    return lookup


@pytest.fixture
def hand(request) -> dict:
    """What this item hands later items of this run (its `hands` in the checklist data), e.g. 6.3's
    maintenance broadcast for 10.1 to stop: hand["Broadcast"] = sending. Live values: never in the ledger."""
    return request.node.stash.setdefault(HANDED, {})


@pytest.fixture
def expected(request, recorded, run) -> dict:
    """What 7.4 and postdeploy compare production with (checks.contract): what the release's migration did on
    the restored copy in this deployment's 5.3, else the --expected file, else a failure saying how to get one."""
    return contract.expectation(recorded("5.3").get("Contract"), request.config.option.expected, run.deployment_id)


@pytest.fixture
def execute(request) -> bool:
    """May this run change things? Always in a rehearsal; against live only with --execute."""
    state = _state(request)
    return state.rehearsal or state.execute


@pytest.fixture
def attestation(request) -> attest.Attestation:
    """The attestation for this test's item: given passes, missing fails on live and skips in a rehearsal."""
    state = _state(request)
    entry = getattr(request.node, "checklist_item", None)
    if entry is None:
        pytest.fail("the attestation fixture needs @pytest.mark.item(...) on the test")
    found = require(entry, state.attestations.get(entry.id), state.rehearsal)
    request.node.stash[EVIDENCE].update(found.evidence())
    return found


@pytest.fixture(scope="session")
def host(deployment) -> BotHost:
    """The bot's host through pytest-testinfra (local, ssh://user@server, docker://container); every
    command on it bounded by a timeout, on the host and (ssh) on the client."""
    return BotHost.get(deployment.host)


@pytest.fixture(scope="session")
def run(request, deployment) -> Run:
    """This run as a test sees it: its settings, its deployment (id, reports folder), its results."""
    return Run(_state(request), deployment, results_of(request.config, deployment))


@pytest.fixture(scope="session")
def bot_dir(request, tmp_path_factory, deployment) -> str:
    """The bot checkout on the host. Against live: --bot-dir. In a rehearsal: a copy of --bot-dir's history
    with main at --release-ref (their own checkout is never touched), else a checkout the rehearsal builds,
    shaped like bot-auto-order's."""
    from deploycheck.rehearsal.checkout import build_checkout, clone_release
    given, option = deployment.bot_dir, request.config.option
    if deployment.rehearsal:
        folder = tmp_path_factory.mktemp("rehearsal")
        try:
            return str(clone_release(given, folder, option.release_ref, option.previous_ref) if given
                       else build_checkout(folder, "standin"))
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
    if not given:
        pytest.fail("--bot-dir is needed against a live target: the bot-auto-order checkout on the host",
                    pytrace=False)
    return str(given)


@pytest.fixture(autouse=True)
def checkout_again_before_redeploying(request) -> None:
    """Before the full rehearsal's second deployment, what an operator does after a rollback: check the release
    out again (16.3 went back to the previous one). Once per deployment, at its first item of round 2."""
    state = request.config.stash.get(STATE, None)
    if not state or not state.full_rehearsal or _round(request.node) != 2:
        return
    deployment = state.deployment_of(request.node)
    if deployment.tenant not in state.redeployed:
        state.redeployed.add(deployment.tenant)
        from deploycheck.rehearsal.checkout import git
        git(Path(request.getfixturevalue("bot_dir")), "checkout", "-q", "main")


@pytest.fixture(scope="session")
def backup_dir(request, deployment) -> Path:
    return Path(request.config.option.backup_dir or deployment.reports_dir / "backup")


@pytest.fixture
def backup_copy_to(request, deployment) -> Path | None:
    """4.4's safe location: --backup-copy-to; a rehearsal's stands in the deployment folder."""
    given = request.config.option.backup_copy_to
    if given is None and deployment.rehearsal:
        return deployment.reports_dir / "backup-copy"
    # a fleet's tenants share the option: a folder each, or two backups of one second would overwrite each other
    return given / deployment.id if given is not None and deployment.tenant else given


@pytest.fixture
def maintenance_message(request, deployment) -> str:
    """2.3's text: --maintenance-message; a rehearsal fills the checklist's own template with an end time."""
    return environment.maintenance_message(request.config.option.maintenance_message, deployment.rehearsal)


@pytest.fixture(scope="module")
def migration_env(request, deployment, target) -> dict:
    """Step 7.1's variables: the operator's own against live (else a Docker shop's own, from its bot.env);
    derived from the target in a rehearsal."""
    try:
        shop = request.getfixturevalue("service").settings() if deployment.bot == "image" and not deployment.rehearsal \
            else None
        return deploy.migration_env(deployment.rehearsal, target.dsn, shop)
    except CheckFailed as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def bot_python(request, deployment, host, bot_dir, progress_line) -> str:
    """The bot's interpreter: --bot-python; in a rehearsal an environment built from the checkout's
    requirements.txt (cached), as the server has one; live: <bot-dir>/venv/bin/python, else python3."""
    if request.config.option.bot_python:
        return request.config.option.bot_python
    if deployment.rehearsal:
        if deployment.bot == "reference":
            return sys.executable  # the old reference bot runs in deploycheck's own environment
        from deploycheck.rehearsal import botenv
        try:
            return str(botenv.ensure(Path(bot_dir), progress_line))
        except botenv.BotEnvError as exc:
            pytest.fail(str(exc), pytrace=False)
    venv = f"{bot_dir.rstrip('/')}/venv/bin/python"
    return venv if host.file(venv).exists else "python3"


@pytest.fixture(scope="session")
async def service(request, deployment, target, host, bot_dir, fake_bot_api, fake_gateway, tmp_path_factory):
    """The bot service. A rehearsal starts the bot from its checkout, as production runs the previous
    release before the window; live: --service systemd:UNIT (default) or compose:SERVICE."""
    if deployment.service == "rehearsal":
        from deploycheck.rehearsal.service import RehearsalBot
        if deployment.bot == "reference":
            from deploycheck.rehearsal.refbot import ReferenceBot
            bot = RehearsalBot(ReferenceBot(script=Path(bot_dir) / "bot" / "main.py"),
                               {"dsn": target.dsn, "api_url": fake_bot_api.url, "token": fake_bot_api.token,
                                "log_path": tmp_path_factory.mktemp("bot") / "bot.log"})
        else:
            bot = RehearsalBot(_checkout_bots(request, target, bot_dir, fake_bot_api, fake_gateway,
                                              tmp_path_factory), {}, name="bot-auto-order (rehearsal)")
        try:
            await bot.start()
            await bot.wait_ready(datetime.now(timezone.utc), 60)
        except Exception as exc:  # the bot's own error (an import error, a setting): the service fixture says it
            await bot.stop()
            pytest.fail(f"the bot running before the window did not start: {exc}", pytrace=False)
        yield bot
        await bot.stop()
        return
    if deployment.rehearsal:  # a container rehearsal: the bot in its own image, under compose
        from deploycheck.rehearsal.container_shop import close_shop
        shop = await _container_shop(request, target, bot_dir, fake_bot_api, fake_gateway, tmp_path_factory)
        try:
            yield shop
        finally:
            await close_shop(shop)
        return
    try:
        chosen = backends.live_service(deployment, host)
    except CheckFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    yield chosen


async def _container_shop(request, target, bot_dir, api, gateway, tmp_path_factory):
    """The previous release's container on the rehearsal's database, behind the fakes; gone at the session's end."""
    from deploycheck.rehearsal import container_shop
    from deploycheck.rehearsal.refbot import REHEARSAL_ADMIN_ID, REHEARSAL_STORE_NAME
    option = request.config.option
    settings = {"BOT_STORE_NAME": REHEARSAL_STORE_NAME, **request.getfixturevalue("bot_settings")}
    try:
        previous = container_shop.previous_ref(Path(bot_dir), option.previous_ref, option.release_ref)
        shop = await container_shop.open_shop(Path(bot_dir), previous, target.dsn, api, gateway, settings,
                                              REHEARSAL_ADMIN_ID, tmp_path_factory.mktemp("shop"), _say(request))
    except CheckFailed as exc:
        pytest.fail(f"the rehearsal's Docker shop: {exc}", pytrace=False)
    try:
        await shop.wait_ready(datetime.now(timezone.utc) - timedelta(seconds=5), 60)
    except CheckFailed as exc:
        await container_shop.close_shop(shop)
        pytest.fail(f"the bot running before the window did not start in its container: {exc}", pytrace=False)
    return shop


def _checkout_bots(request, target, bot_dir, api, gateway, tmp_path_factory):
    """The operator's bot (or the stand-in) from the checkout, in its own environment, behind the fakes."""
    from deploycheck.rehearsal import botenv, botprocess
    from deploycheck.rehearsal.bots import RehearsalBots, checkout_bot, previous_worktree
    from deploycheck.rehearsal.refbot import REHEARSAL_ADMIN_ID
    option = request.config.option
    base = request.getfixturevalue("bot_settings")
    commands = [c.split() for c in option.bot_command] if option.bot_command else None
    logs = tmp_path_factory.mktemp("bot-logs")

    def make(code: Path) -> botprocess.BotProcess:
        python = option.bot_python or str(botenv.ensure(code, _say(request)))
        return checkout_bot(code, python, target.dsn, api, gateway, logs, base, REHEARSAL_ADMIN_ID, commands)

    before = previous_worktree(Path(bot_dir), option.previous_ref, tmp_path_factory.mktemp("previous") / "code")
    return RehearsalBots(make, Path(bot_dir), before)


@pytest.fixture(scope="session")
def bot_settings(deployment) -> dict:
    """The bot's own settings in a rehearsal: --bot-env (a tenant's bot.env), else none."""
    from deploycheck.infra import envfile
    try:
        return envfile.read(deployment.bot_env) if deployment.bot_env else {}
    except envfile.EnvFileError as exc:
        pytest.fail(f"--bot-env: {exc}", pytrace=False)


def _say(request):
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    return (lambda line: reporter.write_line(f"  {line}")) if reporter else print


@pytest.fixture(scope="session")
async def scratch_databases(target):
    """The scratch databases this run makes (4.3's restored copy, handed to 5.3): always dropped at the end,
    whatever failed. scratch_databases.append(name)."""
    from deploycheck.checks.backup import drop_database
    made: list[str] = []
    yield made
    for name in made:
        await drop_database(target.admin_dsn, name)


@pytest.fixture(scope="session")
def progress_line(request):
    """progress, for session fixtures (building the bot's environment)."""
    return _say(request)


@pytest.fixture
def progress(request):
    """Write a progress line to the terminal now, past pytest's capture (long backups and restores)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def write(line: str) -> None:
        if reporter:
            reporter.write_line(f"  {line}")
    return write


