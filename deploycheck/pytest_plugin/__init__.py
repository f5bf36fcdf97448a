"""The deploycheck pytest plugin (entry point `deploycheck`): configures the run and registers its parts,
one job each: options, state, collection, safety, recorder, report, fixtures."""
from __future__ import annotations

import getpass
import importlib
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from types import MappingProxyType

from deploycheck import attest, checklist as checklist_data
from deploycheck.infra import targets
from deploycheck.pytest_plugin import backends
from deploycheck.pytest_plugin.deployment import Deployment
from deploycheck.pytest_plugin.options import pytest_addoption  # noqa: F401  (a hook: found here by pytest)
from deploycheck.pytest_plugin.recorder import Recorder
from deploycheck.pytest_plugin.state import STATE, RunState, state_of  # noqa: F401  (state_of: the plugin's API)
from deploycheck.redact import Redactor, password_of
from deploycheck.resources import ROOT

PARTS = ("collection", "safety", "recorder", "report", "fixtures", "bot_fixtures", "profile_fixtures",
         "release_fixtures")
STAMP = pytest.StashKey[str]()  # the run's UTC time, its reports' names
REHEARSAL_ATTESTATIONS = ROOT / "fixtures" / "rehearsal-attestations.toml"


# The suite's thin tests, from the checkout or from the installed wheel (deploycheck.resources); used when
# pytest runs in another folder (the bot's repository, CI).
SUITE = [ROOT / "tests" / phase for phase in checklist_data.PHASES]
# What this checkout's pyproject.toml sets for the suite, given on the command line elsewhere.
SUITE_INI = {"asyncio_mode": "auto", "asyncio_default_fixture_loop_scope": "session",
             "asyncio_default_test_loop_scope": "session"}


def _phases_asked(args: list[str]) -> bool:
    """`-m preflight`, `-m "deploy or smoke"`, `-mpreflight`: a marker expression naming a checklist phase."""
    expressions = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-m"] + [a[2:] for a in args
                                                                                 if a.startswith("-m") and len(a) > 2]
    return any(word in checklist_data.PHASES for e in expressions for word in e.replace("(", " ").replace(")", " ").split())


def _ours(config: pytest.Config) -> bool:
    """This checkout's configuration (its pyproject.toml names the checklist)."""
    return bool(config.getini("deploycheck_checklist"))


def _elsewhere(config: pytest.Config) -> bool:
    """Run from a folder whose pytest configuration is not deploycheck's, with a checklist phase asked for."""
    return not _ours(config) and _phases_asked(list(config.invocation_params.args))


def pytest_addhooks(pluginmanager) -> None:
    from deploycheck.pytest_plugin import hooks
    pluginmanager.add_hookspecs(hooks)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser, args: list[str]) -> None:
    """`pip install deploycheck`, then `pytest -m preflight` in any folder: the suite brings its own settings.
    pytest has no public way for a plugin to set ini values before they are read, so this sets them the way
    pytest applies `-o` itself, and lets collection reach the suite's folders outside that folder. And the run's
    pytest-html report goes beside its ledger: given as pytest-html's own --html here, before the options are
    parsed, so no option is written afterwards."""
    early_config.stash[STAMP] = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    _html_beside_the_ledger(early_config, args)
    if _ours(early_config) or not _phases_asked(args):
        return
    from _pytest.config.findpaths import parse_override_ini
    early_config._inicfg.update(parse_override_ini([f"{k}={v}" for k, v in SUITE_INI.items()]))
    early_config._inicache.clear()
    early_config.known_args_namespace.confcutdir = os.path.commonpath([early_config.rootpath, ROOT])


def _html_beside_the_ledger(config: pytest.Config, args: list[str]) -> None:
    known = config.known_args_namespace
    if not config.pluginmanager.hasplugin("html") or getattr(known, "htmlpath", None) or known.collectonly \
            or getattr(known, "help", False) or not _checklist_run(known.file_or_dir or []) \
            or not (_ours(config) or _phases_asked(args)):
        return
    try:
        data = checklist_data.load(_checklist_path(config))
    except checklist_data.ChecklistError:
        return  # pytest_configure says what is wrong with it
    path = (config.rootpath / known.reports_dir / deployment_id_of(config, data, known)
            / f"{_label(known)}-{config.stash[STAMP]}.html")
    args.extend([f"--html={path}", "--self-contained-html"])


def _checklist_path(config: pytest.Config):
    if not _ours(config):
        return checklist_data.DEFAULT_PATH
    return config.rootpath / config.getini("deploycheck_checklist")


def _checklist_run(args: list[str]) -> bool:
    """The suite's own tests (tests/selftest) run pytest inside pytest; their outer run is not a deployment run."""
    return not args or not all("selftest" in Path(arg.split("::")[0]).parts for arg in args)


def _label(option) -> str:
    """What the run's reports are named after: its phases (a fleet's wave: the wave too)."""
    words = [w for w in (option.markexpr or "").replace("(", " ").replace(")", " ").split()
             if w in checklist_data.PHASES]
    wave = option.fleet_wave.split("/")[1] if getattr(option, "fleet_wave", None) else None
    return (f"wave{wave}-" if wave else "") + ("+".join(words) or "all")


def deployment_id_of(config: pytest.Config, data=None, option=None) -> str:
    """--deployment-id, else v<release>-<UTC date>."""
    data = data or checklist_data.load(_checklist_path(config))
    option = option or config.option
    return option.deployment_id or f"v{data.release}-{datetime.now(timezone.utc):%Y%m%d}"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for part in PARTS:
        name = f"deploycheck.pytest_plugin.{part}"
        if not config.pluginmanager.has_plugin(name):
            config.pluginmanager.register(importlib.import_module(name), name)
    config.addinivalue_line("markers", "item(id): the checklist item this test implements, e.g. item('8.2')")
    config.addinivalue_line("markers", "slow: a self-test that takes a minute or more (deselect: -m 'not slow')")
    try:
        data = checklist_data.load(_checklist_path(config))
    except checklist_data.ChecklistError as exc:
        raise pytest.UsageError(str(exc)) from None
    for phase, meaning in data.phases.items():
        config.addinivalue_line("markers", f"{phase}: {meaning}")
    if not _checklist_run(config.args):
        return
    if not _ours(config) and not _elsewhere(config):
        return  # another project's own tests, in a virtualenv where deploycheck is installed: stay out of them
    if _elsewhere(config) and config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args = [str(path) for path in SUITE if path.is_dir()] + [str(data.path)]
    option = config.option
    operator = option.operator or getpass.getuser()
    base = base_deployment(config, data)
    deployments = config.hook.pytest_deploycheck_deployments(config=config, base=base) or [base]
    # A Docker shop (a fleet's wave: its tenants, whose kinds come from their own services, not from --service):
    # the items say how they are done there, and what they touch. The fleet's driver refuses a fleet that mixes.
    if any(deployment.bot == "image" for deployment in deployments):
        data = data.for_docker()
    file = option.attestations
    # The rehearsal's own decisions are about the shop it generates: with your dump, yours (--attestations).
    if file is None and base.rehearsal and not option.baseline_dump and REHEARSAL_ATTESTATIONS.exists():
        file = REHEARSAL_ATTESTATIONS
    try:
        final_lines = {f"final:{n}" for n in range(1, len(data.report.get("final_checklist", [])) + 1)}
        attestations = attest.parse(option.attest, file, operator, set(data.items) | final_lines)
    except attest.AttestationError as exc:
        raise pytest.UsageError(str(exc)) from None
    if base.target == "live" and not option.markexpr and not option.collectonly:
        raise pytest.UsageError(
            "a live target needs a phase: run one of\n" +
            "\n".join(f"  pytest -m {p:<11}  {m}" for p, m in data.phases.items()) +
            "\nPlain `pytest` (every phase, including rollback) is the rehearsal on a throwaway database.")
    redactor = Redactor()
    for deployment in deployments:
        redactor.add(password_of(deployment.database or "") or "")
    state = RunState(checklist=data, execute=option.execute, operator=operator, attestations=attestations,
                     redactor=redactor, label=_label(option), stamp=config.stash[STAMP],
                     deployments=MappingProxyType({d.tenant: d for d in deployments}))
    state.full_rehearsal = (state.rehearsal and not option.markexpr and not option.keyword
                            and config.args_source == pytest.Config.ArgsSource.TESTPATHS)
    config.stash[STATE] = state
    # Under pytest-xdist with several deployments (a fleet's wave) the workers record, each its tenants'.
    if not (state.fleet and option.numprocesses and not hasattr(config, "workerinput")):
        config.pluginmanager.register(Recorder(config, state), "deploycheck-recorder")
    if getattr(option, "htmlpath", None):
        state.html_path = Path(option.htmlpath)


def base_deployment(config: pytest.Config, data) -> Deployment:
    """The deployment the options describe: `auto` resolved once, the backends picked (backends.py)."""
    option = config.option
    deployment_id = deployment_id_of(config, data)
    kind, why = backends.target_kind(option)
    if option.fleet_wave and option.target == "auto":  # tenants bring their databases; a rehearsal shares one
        kind, why = ("embedded", "a fleet rehearsal's shared server") if option.fleet_rehearsal else (
            "live", "a fleet's tenants bring their databases")
    bot = backends.bot_kind(kind, option.bot_dir, option.service, option.deploy_host)
    return Deployment(id=deployment_id, reports_dir=config.rootpath / option.reports_dir / deployment_id,
                      target=kind, target_reason=why, service=backends.service_kind(kind, option.service, bot),
                      bot=bot, host=option.deploy_host,
                      service_name=option.service, compose_file=option.compose_file, bot_dir=option.bot_dir,
                      bot_env=option.bot_env, release_image=option.release_image, database=targets.live_dsn() if kind == "live" else None)
