"""A fleet's wave in the plugin: every checklist test once per tenant, each tenant's items on one worker.

`--fleet`/`--fleet-rehearsal` hand the run to the fleet's driver (deploycheck/fleet/driver.py), which runs one
pytest run per wave with `--fleet-wave RUN/WAVE/NAMES -n <tenants>`. In that run each checklist test is
parametrized by tenant (`test_x[shop2]`), and pytest-xdist, scheduling by tenant, keeps a tenant's items in
checklist order on one worker. A worker binds to its tenant when the tenant's first item starts: its own
deployment id (`<fleet id>--<tenant>`), reports folder, ledger and signed record, and the tenant's database,
host, service and bot settings in place of the command line's.
"""
from __future__ import annotations

import os

import pytest

from deploycheck.fleet.tenants import FleetError, Tenant, load_fleet
from deploycheck.pytest_plugin.state import RunState, state_of
from deploycheck.redact import password_of

TENANTS = pytest.StashKey[dict]()


def asked(config: pytest.Config) -> bool:
    return bool(config.option.fleet or config.option.fleet_rehearsal)


def wave_of(config: pytest.Config) -> tuple[str, int, list[str]] | None:
    """(fleet run id, wave number, tenant names) of a wave's run; None outside one."""
    spec = config.option.fleet_wave
    if not spec:
        return None
    run, wave, names = spec.split("/", 2)
    return run, int(wave), names.split(",")


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def load_tenants(config: pytest.Config) -> list[Tenant]:
    """The fleet the options name: a --fleet file or folder, or --fleet-rehearsal's shops on the shared server."""
    option = config.option
    if option.fleet_rehearsal:
        from deploycheck.fleet import rehearsal
        # The driver started the server; without it (e.g. --collect-only of a wave) only the names matter.
        server = os.environ.get(rehearsal.SERVER_ENV, "postgresql://rehearsal@localhost/postgres")
        return rehearsal.tenants(option.fleet_rehearsal, server)
    return load_fleet(option.fleet, group=option.fleet_group)


def tenants_in_wave(config: pytest.Config) -> dict[str, Tenant]:
    """The tenants of this wave's run, in fleet order; none outside a wave."""
    wave = wave_of(config)
    if wave and TENANTS not in config.stash:
        try:
            known = {tenant.name: tenant for tenant in load_tenants(config)}
        except FleetError as exc:
            raise pytest.UsageError(str(exc)) from None
        config.stash[TENANTS] = {name: known[name] for name in wave[2]}
    return config.stash.get(TENANTS, {})


def tenant_of(node: pytest.Item) -> str | None:
    callspec = getattr(node, "callspec", None)
    return callspec.params.get("fleet_tenant") if callspec else getattr(node, "fleet_tenant", None)


@pytest.hookimpl(tryfirst=True)  # first, so the tenant leads the test id: test_x[shop2] or test_x[shop2-redeploy]
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = list(tenants_in_wave(metafunc.config))
    if names and metafunc.definition.get_closest_marker("item"):
        metafunc.fixturenames.append("fleet_tenant")  # a parameter only: no test function takes it
        metafunc.parametrize("fleet_tenant", names, ids=names, scope="session")


def tenant_in_id(nodeid: str, names: list[str]) -> str | None:
    """The tenant a test id leads with (`...::test_x[shop2-redeploy]`, `...toml::6.3[shop2]`)."""
    if not nodeid.endswith("]"):
        return None
    params = nodeid[nodeid.rfind("[") + 1:-1]
    return next((n for n in sorted(names, key=len, reverse=True) if params == n or params.startswith(n + "-")), None)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: the plugin loads without xdist too
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """pytest-xdist's load-scope scheduling, the scope being the tenant: a tenant's items go to one worker as
    one unit, in collection (checklist) order. Not `--dist loadgroup` with xdist_group marks: on pytest 9.2
    that grouping silently does nothing (it rewrites node ids pytest no longer reads; pytest-xdist issue
    #1386), and tenants would share workers."""
    names = list(tenants_in_wave(config))
    if not names:
        return None
    from xdist.scheduler import LoadScopeScheduling

    class TenantScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return tenant_in_id(nodeid, names) or nodeid

    return TenantScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem) -> None:
    state, name = state_of(item.config), tenant_of(item)
    if state is None or name is None or not is_worker(item.config):
        return
    if state.fleet is None:
        bind(item.config, state, tenants_in_wave(item.config)[name])
    elif state.tenant != name:
        # Scheduling by tenant with a worker per tenant never does this; if it did, two tenants' state would mix.
        pytest.exit(f"worker {item.config.workerinput['workerid']} runs tenant {state.tenant} and was given "
                    f"{item.nodeid}: run a wave with -n at least its number of tenants", returncode=3)


def bind(config: pytest.Config, state: RunState, tenant: Tenant) -> None:
    """This worker is now the tenant's run: its deployment, reports and ledger, its database and bot."""
    from deploycheck.fleet import rehearsal
    from deploycheck.pytest_plugin.safety import refuse_window
    run, wave, _ = wave_of(config)
    state.fleet = {"id": state.deployment_id, "run": run, "wave": wave, "tenant": tenant.name}
    state.deployment_id = f"{state.deployment_id}--{tenant.name}"
    state.reports_dir = state.reports_dir.parent / state.deployment_id
    state.host = tenant.host
    option = config.option
    option.deploy_host, option.service = tenant.host, tenant.service
    for key in ("compose_file", "bot_dir", "bot_env"):
        if getattr(tenant, key):
            setattr(option, key, getattr(tenant, key))
    state.redactor.add(password_of(tenant.database_url) or "")
    if option.fleet_rehearsal:
        state.fleet_server = os.environ[rehearsal.SERVER_ENV]
        state.fleet_fault = tenant.name == rehearsal.tenant_name(option.fleet_rehearsal_fault or 0)
    else:
        os.environ["DATABASE_URL"] = tenant.database_url  # the live target reads it (targets.live_dsn)
    refuse_window(config, state)
