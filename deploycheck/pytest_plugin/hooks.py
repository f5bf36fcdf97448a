"""deploycheck's own hooks: the seams where the report, the signed record and the fleet hang on a run, so
the core imports none of them (pytest_addhooks registers these specifications)."""
from __future__ import annotations

import pytest


@pytest.hookspec(firstresult=True)
def pytest_deploycheck_deployments(config, base):
    """The deployments this run holds, as a list of Deployment: a fleet's wave returns one per tenant (its
    plugin: deploycheck.fleet.plugin). None: the one deployment the options describe."""


@pytest.hookspec
def pytest_deploycheck_baseline_loaded(config, deployment, target):
    """A rehearsal's shop is loaded into its target: return None, or an awaitable whose dict joins the
    baseline's facts (the fleet rehearsal plants its fault here)."""


@pytest.hookspec
def pytest_deploycheck_target_opened(config, deployment, target):
    """A deployment's database server is open (what it is, its version): the recorder keeps it for the ledger
    and the report."""


@pytest.hookspec
def pytest_deploycheck_run_recorded(config, deployment, results, entry):
    """A deployment's run is recorded: its results are final and its ledger entry written. The report
    writes its JSON; a rehearsal's record is built and signed (pytest_plugin/record_hooks.py)."""
