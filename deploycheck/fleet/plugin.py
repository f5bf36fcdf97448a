"""The fleet as a pytest plugin of its own (entry point `deploycheck.fleet`): the core plugin imports none of it.

`--fleet`/`--fleet-rehearsal` hand the run to the fleet's driver (deploycheck/fleet/driver.py), which runs one
pytest run per wave with `--fleet-wave RUN/WAVE/NAMES -n <tenants>`. In that run this plugin gives the core one
Deployment per tenant (its own id `<fleet id>--<tenant>`, reports folder, ledger and signed record, and the
tenant's database, host, service and bot settings in place of the command line's) and parametrizes the
`deployment` fixture with them, as pytest-testinfra parametrizes `host`: each checklist test runs once per
tenant (`test_x[shop2]`), and pytest-xdist, scheduling by tenant, keeps a tenant's items in checklist order on
one worker. Nothing process-wide is rebound: no option, no environment variable.
"""
from __future__ import annotations

import os
from html import escape

import pytest

from deploycheck.fleet import driver, rehearsal
from deploycheck.fleet.tenants import FleetError, Tenant
from deploycheck.pytest_plugin.deployment import Deployment
from deploycheck.pytest_plugin.state import state_of

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


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config):
    """--fleet and --fleet-rehearsal: the fleet's driver runs the waves (one pytest run each) instead of a
    session here. Before any pytest_configure: the driver itself configures nothing."""
    option = config.option
    if asked(config) and not option.fleet_wave and not is_worker(config) \
            and not (option.help or option.version or option.collectonly):
        return driver.main(config)
    return None


def tenants_in_wave(config: pytest.Config) -> dict[str, Tenant]:
    """The tenants of this wave's run, in fleet order; none outside a wave."""
    wave = wave_of(config)
    if wave and TENANTS not in config.stash:
        try:
            known = {tenant.name: tenant for tenant in driver.load_tenants(config)}
        except FleetError as exc:
            raise pytest.UsageError(str(exc)) from None
        config.stash[TENANTS] = {name: known[name] for name in wave[2]}
    return config.stash.get(TENANTS, {})


def pytest_deploycheck_deployments(config: pytest.Config, base: Deployment) -> list[Deployment] | None:
    """Each tenant of this wave as its own deployment, built once before collection."""
    wave = wave_of(config)
    if not wave:
        return None
    run, number, _ = wave
    option, found = config.option, []
    for tenant in tenants_in_wave(config).values():
        if option.fleet_rehearsal:
            found.append(base.for_tenant(
                tenant.name, run, number, fleet_server=os.environ.get(rehearsal.SERVER_ENV),
                fleet_fault=tenant.name == rehearsal.tenant_name(option.fleet_rehearsal_fault or 0)))
        else:
            # its service kind and bot kind follow from its own service (for_tenant): compose:bot is a Docker shop
            found.append(base.for_tenant(
                tenant.name, run, number, host=tenant.host, service_name=tenant.service,
                compose_file=tenant.compose_file, bot_dir=tenant.bot_dir, bot_env=tenant.bot_env,
                database=tenant.database_url))
    return found


async def _plant(dsn: str) -> dict:
    return {"planted fault": await rehearsal.plant_fault(dsn)}


def pytest_deploycheck_baseline_loaded(config, deployment: Deployment, target):
    """The fleet rehearsal's planted fault, in its one tenant, once that tenant's shop is loaded."""
    return _plant(target.dsn) if deployment.fleet_fault else None


@pytest.hookimpl(tryfirst=True)  # first, so the tenant leads the test id: test_x[shop2] or test_x[shop2-redeploy]
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = state_of(metafunc.config)
    if state and state.fleet and metafunc.definition.get_closest_marker("item"):
        if "deployment" not in metafunc.fixturenames:
            metafunc.fixturenames.append("deployment")
        metafunc.parametrize("deployment", list(state.deployments.values()), ids=list(state.deployments),
                             indirect=True, scope="session")


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


def pytest_html_results_summary(prefix, summary, postfix, session):
    """A fleet wave's report: each tenant's verdict, as its worker wrote it in the tenant's own ledger."""
    wave = wave_of(session.config)
    if not wave or is_worker(session.config):
        return
    run, number, _ = wave
    state = state_of(session.config)
    fleet_id = state.base.fleet_id
    rows = []
    for tenant in tenants_in_wave(session.config).values():
        found = driver.verdict_of(state.base.reports_dir.parent, fleet_id, tenant, run)
        rows.append(f"<tr><td>{escape(tenant.name)}</td><td>{found.verdict}</td>"
                    f"<td>{escape(found.reports or '')}</td></tr>")
    prefix.extend([f"<h2>Fleet {escape(fleet_id)}, wave {number}</h2><table><tr><th>Tenant</th><th>Verdict</th>"
                   "<th>Its reports, ledger and signed record</th></tr>" + "".join(rows) + "</table>"])
