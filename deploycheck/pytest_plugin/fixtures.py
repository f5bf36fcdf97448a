"""The fixtures a checklist test reads like: target, dsn, db, evidence, recorded, execute, attestation, host."""
from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deploycheck import attest

from deploycheck.infra import targets
from deploycheck.checklist import item_key
from deploycheck.pytest_plugin.collection import require
from deploycheck.pytest_plugin.state import EVIDENCE, STATE
from deploycheck.infra.db import ConnectionFailed, connect
from deploycheck.infra.embedded import EmbeddedError


def _state(request):
    state = request.config.stash.get(STATE, None)
    if state is None:
        pytest.fail("deploycheck fixtures need a checklist run (the deploycheck plugin did not configure one)")
    return state


@pytest.fixture(scope="session")
async def target(request):
    """The database server this run checks; a rehearsal's is started here and loaded with the baseline."""
    state = _state(request)
    try:
        chosen = targets.open_target(state.target_kind, request.config.option.pg_bindir,
                                     request.config.option.pg_version)
    except (targets.TargetError, EmbeddedError) as exc:
        pytest.fail(f"target {state.target_kind}: {state.redactor.text(str(exc))}", pytrace=False)
    state.target, state.target_kind = chosen, chosen.kind
    for secret in chosen.secrets:
        state.redactor.add(secret)
    try:
        if chosen.rehearsal:
            chosen.baseline = await targets.load_baseline(chosen, request.config.option.baseline_dump,
                                                          request.config.option.scale)
    except (targets.TargetError, ConnectionFailed) as exc:
        chosen.stop()
        pytest.fail(f"rehearsal baseline: {state.redactor.text(str(exc))}", pytrace=False)
    yield chosen
    chosen.stop()


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
        pytest.fail(state.redactor.text(str(exc)), pytrace=False)
    if target.server_version is None:
        target.server_version = conn.get_settings().server_version
    yield conn
    try:
        await asyncio.wait_for(conn.close(), timeout=10)
    except (asyncio.TimeoutError, OSError):
        conn.terminate()


@pytest.fixture
def evidence(request) -> dict:
    """What this item found, shown in its report row and kept in the ledger: evidence["Users"] = 1234."""
    return request.node.stash.setdefault(EVIDENCE, {})


@pytest.fixture
def recorded(request):
    """recorded("5.1") -> the evidence an earlier item recorded: this run first, then the ledger.
    recorded("1.3", "16.5") -> the evidence of whichever of them passed last."""
    state = _state(request)

    def lookup(*item_ids: str) -> dict | None:
        passed = [i for i in item_ids if state.results.get(i, {}).get("outcome") == "passed"]
        if passed:  # this run goes in checklist order: the later item is the newer
            return state.results[max(passed, key=item_key)]["evidence"]
        earlier = state.ledger.latest(*item_ids)
        return earlier["evidence"] if earlier else None
    return lookup


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
def host(request):
    """The bot's host through pytest-testinfra (local, ssh://user@server, docker://container)."""
    import testinfra
    spec = request.config.option.deploy_host
    return testinfra.get_host("local://" if spec in ("local", "") else spec)


@pytest.fixture(scope="session")
def run(request):
    """This run's settings and state: deployment id, reports folder, operator, options."""
    return _state(request)


@pytest.fixture(scope="session")
def bot_dir(request, tmp_path_factory, run) -> str:
    """The bot checkout on the host: --bot-dir, or in a rehearsal a git checkout shaped like bot-auto-order's."""
    if run.rehearsal and not request.config.option.bot_dir:
        from deploycheck.rehearsal.checkout import build_checkout
        run.bot_dir = str(build_checkout(tmp_path_factory.mktemp("rehearsal")))
    elif request.config.option.bot_dir:
        run.bot_dir = str(request.config.option.bot_dir)
    else:
        pytest.fail("--bot-dir is needed against a live target: the bot-auto-order checkout on the host",
                    pytrace=False)
    return run.bot_dir


@pytest.fixture(scope="session")
def backup_dir(request, run) -> Path:
    return Path(request.config.option.backup_dir or run.reports_dir / "backup")


@pytest.fixture(scope="session")
def bot_python(request, run, host, bot_dir) -> str:
    if request.config.option.bot_python:
        return request.config.option.bot_python
    if run.rehearsal:
        return sys.executable  # the rehearsal's bot runs in this environment
    venv = f"{bot_dir.rstrip('/')}/venv/bin/python"
    return venv if host.file(venv).exists else "python3"


@pytest.fixture(scope="session")
async def service(request, run, target, host, bot_dir, fake_bot_api, tmp_path_factory):
    """The bot service. A rehearsal starts the reference bot from its checkout, as production runs the old
    release before the window; live: --service systemd:UNIT (default) or compose:SERVICE."""
    if target.rehearsal:
        from deploycheck.infra.service import RehearsalBot
        from deploycheck.rehearsal.refbot import ReferenceBot
        bot = RehearsalBot(ReferenceBot(script=Path(bot_dir) / "bot" / "main.py"),
                           {"dsn": target.dsn, "api_url": fake_bot_api.url, "token": fake_bot_api.token,
                            "log_path": tmp_path_factory.mktemp("bot") / "bot.log"})
        await bot.start()
        await bot.wait_ready(datetime.now(timezone.utc), 30)
        yield bot
        await bot.stop()
        return
    from deploycheck.infra.service import Compose, Systemd
    kind, _, name = request.config.option.service.partition(":")
    if kind == "systemd":
        yield Systemd(host, name or "bot-auto-order")
    elif kind == "compose":
        yield Compose(name or "bot", request.config.option.compose_file)
    else:
        pytest.fail(f"--service {request.config.option.service!r}: use systemd:UNIT or compose:SERVICE",
                    pytrace=False)


@pytest.fixture(scope="session")
async def scratch(target):
    """The scratch database 4.3 restores into, kept for the migration rehearsal, always dropped at the end."""
    from deploycheck.checks.backup import drop_database
    holder: dict = {}
    yield holder
    if holder.get("name"):
        await drop_database(target.admin_dsn, holder["name"])


@pytest.fixture
def progress(request):
    """Write a progress line to the terminal now, past pytest's capture (long backups and restores)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def write(line: str) -> None:
        if reporter:
            reporter.write_line(f"  {line}")
    return write


