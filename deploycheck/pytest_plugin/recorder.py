"""The recorder: each test report folded into its deployment's item result (outcome, evidence, message that
is a cause), the verdict, the ledger entry, the rehearsal's signed record, and the terminal summary. The only
writer of Results (pytest_plugin/results.py); what others add to a recorded run hangs on the
pytest_deploycheck_run_recorded hook (the JSON report: report.py)."""
from __future__ import annotations

import socket

import pytest

from deploycheck import attest, checklist as checklist_data
from deploycheck.pytest_plugin import backends, causes as causes_of, messages, prerequisites
from deploycheck.pytest_plugin.results import Results
from deploycheck.pytest_plugin.safety import NOT_RUN, facts
from deploycheck.pytest_plugin.state import (EVIDENCE, HANDED, RunState, checklist_item, results_of, state_of,
                                             utcnow)

OUTCOME_RANK = {"skipped": 0, "passed": 1, "not run": 2, "failed": 3, "error": 4}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    state, entry = state_of(item.config), checklist_item(item)
    if not state:
        return
    redact = state.redactor.text
    if item.stash.get(NOT_RUN, None):
        report.not_run = item.stash[NOT_RUN]
    if report.failed and call.excinfo is not None:
        cause, plain = messages.cause_of(call.excinfo)
        bot_dir = state.deployment_of(item).bot_dir
        # The message is short (a traceback reduced to its error line); the full text is the item's detail.
        report.crash_message = redact(messages.shorten(cause, (str(bot_dir),) if bot_dir else ()))
        report.fault = None if getattr(report, "not_run", None) else redact(messages.fault_of(call.excinfo))
        # A check's own failure is its message; pytest's introspection and exception chains are noise.
        report.longrepr = redact(cause if plain else str(report.longrepr))
        report.detail = report.longrepr if report.longrepr != report.crash_message else None
    elif report.failed and report.longrepr is not None:
        report.longrepr = redact(str(report.longrepr))
    elif report.skipped and isinstance(report.longrepr, tuple):
        path, line, reason = report.longrepr
        report.longrepr = (path, line, redact(reason))
    report.sections = [(title, redact(content)) for title, content in report.sections]
    if entry:
        report.item_id = entry.id
        report.tenant = state.deployment_of(item).tenant
        how = {"Docker Shop": entry.how} if entry.how else {}  # how this shop does the checklist's line
        report.evidence = state.redactor.value({**how, **item.stash.get(EVIDENCE, {})})
        if item.stash.get(HANDED, None):  # live values for later items of this run: kept here, never reported
            results_of(item.config, state.deployment_of(item))._hand(entry.id, item.stash[HANDED])


WORDS = {"passed": ("PASSED", {"green": True}), "failed": ("FAILED", {"red": True}),
         "skipped": ("SKIPPED", {"yellow": True})}


def pytest_report_teststatus(report, config):
    """`N` for an item that did not run because a need failed; with -v each line names its checklist item
    (`PASSED 8.2 Check indexes created`), so the terminal reads like the checklist."""
    state, item_id = state_of(config), getattr(report, "item_id", None)
    if getattr(report, "not_run", None):
        return "not run", "N", (f"NOT RUN {item_id}", {"yellow": True})
    if not state or not item_id or report.when != "call" or report.outcome not in WORDS:
        return None
    word, markup = WORDS[report.outcome]
    letter = {"passed": ".", "failed": "F", "skipped": "s"}[report.outcome]
    return report.outcome, letter, (f"{word} {item_id} {state.checklist[item_id].title}", markup)


def verdict(results: Results, checklist=None) -> dict:
    """GO only if every item passed (or was skipped as a rehearsal's manual item) and the run completed; the
    failed stop-the-deployment gates come first. A gate fails only when its own item failed: not when it was
    merely not run because something before it failed."""
    items = results.items
    failed = [i for i, r in sorted(items.items(), key=lambda kv: checklist_data.item_key(kv[0]))
              if r["outcome"] in prerequisites.NOT_PASSED]
    gates = sorted({items[i]["gate"] for i in failed if items[i]["gate"] and items[i]["outcome"] != "not run"})
    return {"verdict": "NO-GO" if failed or results.incomplete else "GO", "failed_gates": gates,
            "failed_items": failed, "incomplete": results.incomplete,
            # each cause once, with what it caused folded under it (pytest_plugin/causes.py)
            "causes": causes_of.classify(checklist, items) if checklist is not None else []}


def run_entry(state: RunState, results: Results, started: str, ended: str) -> dict:
    deployment, target, items = results.deployment, results.target, results.items
    commit = next((items[i]["evidence"].get("Commit") for i in ("3.2",) if i in items), None)
    return state.redactor.value({
        "run_id": state.run_id, "deployment_id": deployment.id, "release": state.checklist.release,
        "phases": sorted({r["phase"] for r in items.values()}, key=checklist_data.PHASES.index),
        "operator": state.operator, "host": deployment.host or socket.gethostname(),
        "target": {"kind": target.kind if target else deployment.target, "dsn": target.dsn if target else None,
                   "server_version": target.server_version if target else None, "rehearsal": deployment.rehearsal},
        "bot_commit": commit, "started": started, "ended": ended, **results.verdict,
        "override": state.override, "production": results.production,
        # the fleet, its run and wave, and this tenant (a fleet's wave; else null)
        "fleet": deployment.fleet or None,
        # the full rehearsal rolls back, then deploys again in the same run: its end state is deployed
        "redeployed_after_rollback": deployment.tenant in state.redeployed,
        # a monitoring run labels itself with the checklist's window (Hour 1, Hour 2-6, Hour 6-24)
        "window": next((r["evidence"]["Window"] for r in items.values() if "Window" in r["evidence"]), None),
        "reports": {"html": state.html_path.name if state.html_path else None,
                    "json": state.json_path(deployment).name},
        "items": dict(items),
        # the Final Checklist's human lines (e.g. final:4 "Team notified of completion"), for the record
        "attestations": {key: found.as_dict() for key, found in state.attestations.items() if key.startswith("final:")},
    })


class Recorder:
    """Per-run hooks: fold test reports into their deployment's item results, then write each deployment's
    ledger entry (and, through pytest_deploycheck_run_recorded, what else hangs on it)."""

    def __init__(self, config: pytest.Config, state: RunState):
        self.config, self.state = config, state
        self.started = utcnow()
        self.reported: set[str] = set()   # test ids that reached a result, to find the ones that did not

    def results(self, tenant: str | None) -> Results:
        return results_of(self.config, self.state.deployments[tenant])

    @pytest.hookimpl(trylast=True)
    def pytest_deploycheck_target_opened(self, config, deployment, target) -> None:
        results_of(config, deployment)._opened(target)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Worst outcome across an item's cases, summed duration, merged evidence."""
        if not getattr(report, "item_id", None):
            return
        if report.when == "call" or not report.passed:
            self.reported.add(report.nodeid)
        result = self.results(report.tenant)._result(self.state.checklist[report.item_id])
        result["duration"] = round(result["duration"] + report.duration, 3)
        result["evidence"].update(report.evidence)
        result["attestation"] = attest.from_evidence(report.evidence) or result["attestation"]
        if report.when != "call" and report.passed:
            return
        outcome = ("not run" if getattr(report, "not_run", None)
                   else "error" if report.failed and report.when != "call" else report.outcome)
        text = getattr(report, "crash_message", None) or str(report.longrepr or outcome).strip()
        if outcome in prerequisites.NOT_PASSED and not result["message"]:
            fault = getattr(report, "fault", None)
            earlier = causes_of.same_error_as(self.results(report.tenant).items, report.item_id, fault)
            result["fault"] = fault
            if earlier:  # no message repeats another's text: it points to it
                result["detail"] = messages.cause_first(getattr(report, "detail", None) or text)
                text = f"same error as {earlier} (see {earlier})"
            else:
                result["detail"] = getattr(report, "detail", None)
        self._note(result, report.nodeid, outcome, text if outcome in prerequisites.NOT_PASSED else None)
        if outcome == "skipped" and isinstance(report.longrepr, tuple) and not result["message"]:
            result["message"] = report.longrepr[2]

    @staticmethod
    def _note(result: dict, nodeid: str, outcome: str, message: str | None) -> None:
        result["cases"][nodeid] = outcome
        if result["outcome"] is None or OUTCOME_RANK[outcome] > OUTCOME_RANK[result["outcome"]]:
            result["outcome"] = outcome
        if message and not result["message"]:
            result["message"] = messages.cause_first(message)

    def _unfinished(self, session: pytest.Session, exitstatus, tenant: str | None) -> str | None:
        """Tests that never reached a result (Ctrl-C, -x, a crashed worker, a timeout) are "not run", and the
        run is incomplete: never GO."""
        # A fleet's worker collects every tenant's tests and runs some tenants' only.
        mine = [n for n in session.items if checklist_item(n) and self.state.deployment_of(n).tenant == tenant]
        missing = [n for n in mine if n.nodeid not in self.reported]
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        if not missing and not interrupted:
            return None
        stopped = session.shouldfail or session.shouldstop  # -x / --maxfail, or a plugin's stop
        why = "interrupted" if interrupted else "stopped early" if stopped else "did not run"
        for node in missing:
            result = self.results(tenant)._result(checklist_item(node))
            self._note(result, node.nodeid, "not run", f"not run: the run was {why}")
        return (f"{why}: {len(missing)} of {len(mine)} tests did not reach a result"
                + (f" ({stopped})" if isinstance(stopped, str) else ""))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus) -> None:
        state = self.state
        for tenant, deployment in state.deployments.items():
            results = self.results(tenant)
            if not results.items:
                continue
            incomplete = self._unfinished(session, exitstatus, tenant)
            results._finish({}, None, incomplete)
            found = verdict(results, state.checklist)
            production = None
            if found["verdict"] != "GO":
                production = {"stands": prerequisites.production_stands(state.checklist, results.items,
                                                                         facts(state, deployment, results))
                              + backends.measured_now(deployment),
                              "next": prerequisites.next_step(state.checklist, results.items),
                              "of": causes_of.where(deployment.rehearsal)}
            results._finish(found, production, incomplete)
            entry = run_entry(state, results, self.started, utcnow())
            deployment.ledger.append(entry)
            session.config.hook.pytest_deploycheck_run_recorded(config=session.config, deployment=deployment,
                                                                results=results, entry=entry)


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session):
    """A rehearsal ends with each deployment's record built, signed with throwaway keys and verified, so every
    CI run proves the whole chain; a record that does not verify fails the run. A wrapper: it runs after
    pytest-html has written the report the record lists."""
    result = yield
    state = state_of(session.config)
    for deployment in state.deployments.values() if state and state.rehearsal else ():
        results = results_of(session.config, deployment)
        if not results.items:
            continue
        from deploycheck.record import compose as record
        from deploycheck.record import sign as signing
        from deploycheck.record.verify import verify
        reports_root = deployment.reports_dir.parent
        try:
            record.build_record(reports_root, deployment.id, state.checklist, force=True)
            signing.sign_with_throwaway_keys(reports_root, deployment.id)
            checked = verify(reports_root, deployment.id)
            problem = None if checked.ok else f"does not verify: {checked.first_bad_file}"
        except (record.RecordError, signing.SigningError) as exc:
            problem = f"not signed: {exc}"
        if problem:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        state.record_messages.append(
            f"deployment record ({results.verdict.get('verdict')}{', incomplete' if results.incomplete else ''}) "
            f"{problem or 'signed (rehearsal keys) and verified'}: {deployment.reports_dir / 'record.html'}")
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, config: pytest.Config):
    """The verdict's last lines: where the target stands and what to do, then each cause once with what it
    caused folded under it, then the verdict naming every cause: the screen an operator reads first. A wrapper
    round the terminal's own, so it comes after pytest's short test summary (one line a failed test, longer
    under CI), right before the final count."""
    result = yield
    _verdict_lines(terminalreporter, config)
    return result


def _verdict_lines(terminalreporter, config: pytest.Config) -> None:
    state = state_of(config)
    width = min(getattr(terminalreporter, "_tw", None) and terminalreporter._tw.fullwidth or 80, 120)
    for deployment in state.deployments.values() if state else ():
        results = results_of(config, deployment)
        if not results.verdict:
            continue
        found, production = results.verdict, results.production or {}
        causes = found.get("causes") or []
        go = found["verdict"] == "GO"
        if results.incomplete:
            terminalreporter.write_line(f"incomplete run: {results.incomplete}", red=True)
        if state.override:
            terminalreporter.write_line(f"override: {state.override['reason']} "
                                        f"({'; '.join(state.override['overridden'])})", yellow=True)
        where = production.get("of") or causes_of.where(deployment.rehearsal)
        for line in production.get("stands", []):
            terminalreporter.write_line(f"{where} now: {line}", bold=True)
        if production.get("next"):
            terminalreporter.write_line(f"next: {production['next']}", bold=True)
        who = f"{deployment.tenant}: " if deployment.tenant else ""
        if causes:
            for line in causes_of.lines(causes, width):
                terminalreporter.write_line(line, red=line.startswith("  ") and not line.startswith("      "))
        named = ", ".join(c["item"] for c in causes)
        held = len(found["failed_items"])
        terminalreporter.write_sep("=", f"{who}{found['verdict']}"
                                   + (f": cause{'s' if len(causes) != 1 else ''} {named} ({held} items failed or "
                                      "not run)" if causes else f": failed {', '.join(found['failed_items'][:15])}"
                                      if held else "")
                                   + (" (incomplete)" if results.incomplete else ""), green=go, red=not go)
    for message in state.record_messages if state else ():
        terminalreporter.write_sep("-", message)
