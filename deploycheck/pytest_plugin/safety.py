"""Safety: an item runs only when what it needs passed (stop means stop), a live action only with
--execute or an attestation, and a live window not after a NO-GO preflight unless overridden."""
from __future__ import annotations

import pytest

from deploycheck import checklist as checklist_data
from deploycheck.infra.db import describe
from deploycheck.pytest_plugin import prerequisites
from deploycheck.pytest_plugin.state import EVIDENCE, RunState, checklist_item, results_of, state_of, utcnow

NOT_RUN = pytest.StashKey[str]()
NOT_EXECUTED = "action not executed: pass --execute, or attest that it was done by hand"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Stop means stop: an item whose needs did not pass does not run (before its fixtures, which may act)."""
    state, entry = state_of(item.config), checklist_item(item)
    if not state or not entry:
        return
    deployment = state.deployment_of(item)
    results = results_of(item.config, deployment)
    problems = prerequisites.unmet(entry, results.items, state.in_run, deployment.ledger, bool(state.override))
    refused = state.refused.get(deployment.tenant)
    if problems or (refused and checklist_data.guarded(entry)):
        item.stash[NOT_RUN] = prerequisites.not_run_message(problems) if problems else refused
        pytest.fail(item.stash[NOT_RUN], pytrace=False)
    if entry.touches and checklist_data.guarded(entry) and not state.rehearsal and state.execute \
            and entry.id not in state.attestations:
        _say(item.config, f"{entry.id} {entry.title}: {entry.touches.format(**facts(state, deployment, results))}")


def facts(state: RunState, deployment, results) -> dict:
    """What the data's touches/stands texts name: the service, the database (no password), the host."""
    target = results.target
    return {"service": deployment.service_name, "host": deployment.host,
            "database": describe(target.dsn) if target else "the deployment database"}


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line("")
        reporter.write_line(f">>> {line}", bold=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Which items this run holds; then the window's refusal, per deployment (a fleet's tenant reads its own
    ledger)."""
    state = state_of(session.config)
    if state is None:
        return
    state.in_run = {entry.id for node in session.items if (entry := checklist_item(node))}
    for deployment in state.deployments.values():
        refuse_window(session.config, state, deployment)


def refuse_window(config: pytest.Config, state: RunState, deployment) -> None:
    """A live run that would act refuses to start while an earlier phase it needs is NO-GO or missing, unless
    --override gives a reason (kept in the ledger and the record). In a fleet, the refused tenant's actions
    are not run and it is NO-GO; the other tenants of its wave go on."""
    reason = config.option.override
    if state.rehearsal and reason:  # a rehearsal may look past its own NO-GO preflight, said and recorded
        state.override = {"reason": reason, "by": state.operator, "at": utcnow(),
                          "overridden": ["the phases this window needs, whatever their verdict in this run"]}
        return
    if state.rehearsal or not state.execute:
        return
    selected = [state.checklist[item_id] for item_id in state.in_run]
    entries = deployment.ledger.read()
    problems = sorted({problem for entry in selected if checklist_data.guarded(entry) for need in entry.needs
                       if need in checklist_data.PHASES and need not in {e.phase for e in selected}
                       and (problem := prerequisites.phase_problem(need, {}, entries))})
    if not problems:
        return
    if not reason:
        refusal = ("refused: " + "; ".join(problems) + f" (deployment {deployment.id}). Fix it and run "
                   "that phase again, or, if you must go on, say why: --override \"reason\" (recorded in the "
                   "ledger and the signed record)")
        if deployment.tenant:
            state.refused[deployment.tenant] = refusal
            return
        pytest.exit(refusal, returncode=pytest.ExitCode.USAGE_ERROR)
    state.override = {"reason": reason, "by": state.operator, "at": utcnow(), "overridden": problems}
    _say(config, "OVERRIDE: " + "; ".join(problems) + f" -- going on because: {reason}")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """An action attested as done by hand is not done again (6.3: users told through other channels);
    otherwise, against a live target, it runs only with --execute."""
    state, entry = state_of(pyfuncitem.config), checklist_item(pyfuncitem)
    if not state or not entry or not checklist_data.guarded(entry):
        return None
    attestation = state.attestations.get(entry.id)
    if attestation is not None and entry.kind == "check" and (state.rehearsal or state.execute):
        return None  # a writing check (smoke) still runs: its attestation covers what the bot version lacks
    if attestation is None:
        if state.rehearsal or state.execute or pyfuncitem.get_closest_marker("item").kwargs.get("observes"):
            return None  # an `observes` test checks the effect itself when not executing
        pytest.fail(f"{entry.id} {entry.title}: {NOT_EXECUTED}", pytrace=False)
    pyfuncitem.stash[EVIDENCE].update(attestation.evidence())
    return True

