"""The deploycheck pytest plugin (entry point `deploycheck`): configures the run and registers its parts,
one job each: options, state, collection, safety, recorder, report, fixtures."""
from __future__ import annotations

import getpass
import importlib
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deploycheck import attest, checklist as checklist_data
from deploycheck.infra import targets
from deploycheck.pytest_plugin import fleet
from deploycheck.pytest_plugin.options import pytest_addoption  # noqa: F401  (a hook: found here by pytest)
from deploycheck.pytest_plugin.recorder import Recorder
from deploycheck.pytest_plugin.state import STATE, RunState, state_of  # noqa: F401  (state_of: the plugin's API)
from deploycheck.redact import Redactor

PARTS = ("fleet", "collection", "safety", "recorder", "report", "fixtures", "bot_fixtures", "profile_fixtures")
REHEARSAL_ATTESTATIONS = targets.ROOT / "fixtures" / "rehearsal-attestations.toml"


# The suite as this checkout lays it out; used when pytest runs in another folder (the bot's repository, CI).
SUITE = [checklist_data.DEFAULT_PATH.parents[1] / "tests" / phase for phase in checklist_data.PHASES]
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


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser, args: list[str]) -> None:
    """`pip install deploycheck`, then `pytest -m preflight` in any folder: the suite brings its own settings.
    pytest has no public way for a plugin to set ini values before they are read, so this sets them the way
    pytest applies `-o` itself, and lets collection reach the suite's folders outside that folder."""
    if _ours(early_config) or not _phases_asked(args):
        return
    from _pytest.config.findpaths import parse_override_ini
    early_config._inicfg.update(parse_override_ini([f"{k}={v}" for k, v in SUITE_INI.items()]))
    early_config._inicache.clear()
    early_config.known_args_namespace.confcutdir = os.path.commonpath([early_config.rootpath, SUITE[0].parents[1]])


def _checklist_path(config: pytest.Config):
    if not _ours(config):
        return checklist_data.DEFAULT_PATH
    return config.rootpath / config.getini("deploycheck_checklist")


def _checklist_run(config: pytest.Config) -> bool:
    """The suite's own tests (tests/selftest) run pytest inside pytest; their outer run is not a deployment run."""
    return not config.args or not all("selftest" in Path(arg.split("::")[0]).parts for arg in config.args)


def _phase_label(config: pytest.Config) -> str:
    words = [w for w in (config.option.markexpr or "").replace("(", " ").replace(")", " ").split()
             if w in checklist_data.PHASES]
    return "+".join(words) or "all"


def deployment_id_of(config: pytest.Config, data=None) -> str:
    """--deployment-id, else v<release>-<UTC date>."""
    data = data or checklist_data.load(_checklist_path(config))
    return config.option.deployment_id or f"v{data.release}-{datetime.now(timezone.utc):%Y%m%d}"


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config):
    """--fleet and --fleet-rehearsal: the fleet's driver runs the waves (one pytest run each) instead of a
    session here. Before any pytest_configure: the driver itself configures nothing."""
    option = config.option
    if fleet.asked(config) and not option.fleet_wave and not fleet.is_worker(config) \
            and not (option.help or option.version or option.collectonly):
        from deploycheck.fleet import driver
        return driver.main(config)
    return None


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
    if not _checklist_run(config):
        return
    if not _ours(config) and not _elsewhere(config):
        return  # another project's own tests, in a virtualenv where deploycheck is installed: stay out of them
    if _elsewhere(config) and config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args = [str(path) for path in SUITE if path.is_dir()] + [str(data.path)]
    operator = config.option.operator or getpass.getuser()
    kind = targets.choose(config.option.target)
    wave = fleet.wave_of(config)
    if wave and config.option.target == "auto":  # tenants bring their databases; a fleet rehearsal shares a server
        kind = "embedded" if config.option.fleet_rehearsal else "live"
    file = config.option.attestations
    if file is None and kind != "live" and REHEARSAL_ATTESTATIONS.exists():
        file = REHEARSAL_ATTESTATIONS
    try:
        final_lines = {f"final:{n}" for n in range(1, len(data.report.get("final_checklist", [])) + 1)}
        attestations = attest.parse(config.option.attest, file, operator, set(data.items) | final_lines)
    except attest.AttestationError as exc:
        raise pytest.UsageError(str(exc)) from None
    if kind == "live" and not config.option.markexpr and not config.option.collectonly:
        raise pytest.UsageError(
            "a live target needs a phase: run one of\n" +
            "\n".join(f"  pytest -m {p:<11}  {m}" for p, m in data.phases.items()) +
            "\nPlain `pytest` (every phase, including rollback) is the rehearsal on a throwaway database.")
    deployment_id = deployment_id_of(config, data)
    state = RunState(checklist=data, deployment_id=deployment_id, target_kind=kind,
                     execute=config.option.execute, operator=operator, host=config.option.deploy_host,
                     attestations=attestations, redactor=Redactor(),
                     label=(f"wave{wave[1]}-" if wave else "") + _phase_label(config),
                     reports_dir=(config.rootpath / config.option.reports_dir / deployment_id),
                     stamp=f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
    state.full_rehearsal = (state.rehearsal and not config.option.markexpr and not config.option.keyword
                            and config.args_source == pytest.Config.ArgsSource.TESTPATHS)
    config.stash[STATE] = state
    if not wave or fleet.is_worker(config):  # a wave's controller only gathers: each tenant's worker records
        config.pluginmanager.register(Recorder(state), "deploycheck-recorder")
    if config.pluginmanager.hasplugin("html") and not config.option.collectonly:
        if not config.option.htmlpath:
            config.option.htmlpath = str(state.json_path.with_suffix(".html"))
        config.option.self_contained_html = True
        state.html_path = Path(config.option.htmlpath)

