"""The recorder: each test report folded into its item's result (outcome, evidence, message that is a cause),
the verdict, the ledger entry and JSON report, the rehearsal's signed record, and the terminal summary."""
from __future__ import annotations

import socket

import pytest

from deploycheck import attest, checklist as checklist_data
from deploycheck.pytest_plugin import messages, prerequisites
from deploycheck.pytest_plugin.fleet import tenant_of
from deploycheck.pytest_plugin.safety import NOT_RUN, _facts
from deploycheck.pytest_plugin.state import EVIDENCE, RunState, checklist_item, state_of, utcnow

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
        report.crash_message = redact(cause)
        # A check's own failure is its message; pytest's introspection and exception chains are noise.
        report.longrepr = redact(cause if plain else str(report.longrepr))
    elif report.failed and report.longrepr is not None:
        report.longrepr = redact(str(report.longrepr))
    elif report.skipped and isinstance(report.longrepr, tuple):
        path, line, reason = report.longrepr
        report.longrepr = (path, line, redact(reason))
    report.sections = [(title, redact(content)) for title, content in report.sections]
    if entry:
        report.item_id = entry.id
        report.evidence = state.redactor.value(dict(item.stash.get(EVIDENCE, {})))


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


def verdict(state: RunState) -> dict:
    """GO only if every item passed (or was skipped as a rehearsal's manual item) and the run completed; the
    failed stop-the-deployment gates come first. A gate fails only when its own item failed: not when it was
    merely not run because something before it failed."""
    failed = [i for i, r in sorted(state.results.items(), key=lambda kv: checklist_data.item_key(kv[0]))
              if r["outcome"] in prerequisites.NOT_PASSED]
    gates = sorted({state.results[i]["gate"] for i in failed
                    if state.results[i]["gate"] and state.results[i]["outcome"] != "not run"})
    return {"verdict": "NO-GO" if failed or state.incomplete else "GO", "failed_gates": gates,
            "failed_items": failed, "incomplete": state.incomplete}


def run_entry(state: RunState, ended: str) -> dict:
    target = state.target
    return state.redactor.value({
        "run_id": state.run_id, "deployment_id": state.deployment_id, "release": state.checklist.release,
        "phases": sorted({r["phase"] for r in state.results.values()},
                         key=checklist_data.PHASES.index),
        "operator": state.operator, "host": state.host or socket.gethostname(),
        "target": {"kind": state.target_kind, "dsn": target.dsn if target else None,
                   "server_version": target.server_version if target else None, "rehearsal": state.rehearsal},
        "bot_commit": state.bot_commit, "started": state.started, "ended": ended, **state.verdict,
        "override": state.override, "production": state.production,
        "fleet": state.fleet,  # the fleet, its run and wave, and this tenant (a fleet's wave; else null)
        # the full rehearsal rolls back, then deploys again in the same run: its end state is deployed
        "redeployed_after_rollback": state.redeploying,
        # a monitoring run labels itself with the checklist's window (Hour 1, Hour 2-6, Hour 6-24)
        "window": next((r["evidence"]["Window"] for r in state.results.values() if "Window" in r["evidence"]), None),
        "reports": {"html": state.html_path.name if state.html_path else None, "json": state.json_path.name},
        "items": state.results,
        # the Final Checklist's human lines (e.g. final:4 "Team notified of completion"), for the record
        "attestations": {key: found.as_dict() for key, found in state.attestations.items() if key.startswith("final:")},
    })


class Recorder:
    """Per-run hooks: fold test reports into item results, then write the ledger entry and the JSON report."""

    def __init__(self, state: RunState):
        self.state = state
        self.reported: set[str] = set()   # test ids that reached a result, to find the ones that did not

    def pytest_sessionstart(self) -> None:
        self.state.started = utcnow()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Worst outcome across an item's cases, summed duration, merged evidence."""
        if not getattr(report, "item_id", None):
            return
        if report.when == "call" or not report.passed:
            self.reported.add(report.nodeid)
        entry = self.state.checklist[report.item_id]
        result = self.state.results.setdefault(entry.id, {
            "title": entry.title, "phase": entry.phase, "kind": entry.kind, "gate": entry.gate, "outcome": None,
            "duration": 0.0, "evidence": {}, "attestation": None, "message": None, "cases": {}})
        result["duration"] = round(result["duration"] + report.duration, 3)
        result["evidence"].update(report.evidence)
        result["attestation"] = attest.from_evidence(report.evidence) or result["attestation"]
        if report.when != "call" and report.passed:
            return
        outcome = ("not run" if getattr(report, "not_run", None)
                   else "error" if report.failed and report.when != "call" else report.outcome)
        text = getattr(report, "crash_message", None) or str(report.longrepr or outcome).strip()
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

    def _unfinished(self, session: pytest.Session, exitstatus) -> None:
        """Tests that never reached a result (Ctrl-C, -x, a crashed worker, a timeout) are "not run", and the
        run is incomplete: never GO."""
        # A fleet's worker collects every tenant's tests and runs its own tenant's only.
        mine = [n for n in session.items if checklist_item(n) and tenant_of(n) == self.state.tenant]
        missing = [n for n in mine if n.nodeid not in self.reported]
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        if not missing and not interrupted:
            return
        stopped = session.shouldfail or session.shouldstop  # -x / --maxfail, or a plugin's stop
        why = "interrupted" if interrupted else "stopped early" if stopped else "did not run"
        self.state.incomplete = (f"{why}: {len(missing)} of {len(mine)} tests did not reach a result"
                                 + (f" ({stopped})" if isinstance(stopped, str) else ""))
        for node in missing:
            entry = checklist_item(node)
            result = self.state.results.setdefault(entry.id, {
                "title": entry.title, "phase": entry.phase, "kind": entry.kind, "gate": entry.gate,
                "outcome": None, "duration": 0.0, "evidence": {}, "attestation": None, "message": None,
                "cases": {}})
            self._note(result, node.nodeid, "not run", f"not run: the run was {why}")
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus) -> None:
        state = self.state
        if not state.results:
            return
        self._unfinished(session, exitstatus)
        state.verdict = verdict(state)
        if state.verdict["verdict"] != "GO":
            stands = prerequisites.production_stands(state.checklist, state.results, _facts(state, session.config))
            state.production = {"stands": stands, "next": prerequisites.next_step(state.checklist, state.results)}
        entry = run_entry(state, utcnow())
        state.ledger.append(entry)
        from deploycheck.pytest_plugin.report import write_json
        write_json(state, entry)


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session):
    """A rehearsal ends with its deployment record built, signed with throwaway keys and verified, so every
    CI run proves the whole chain; a record that does not verify fails the run. A wrapper: it runs after
    pytest-html has written the report the record lists."""
    result = yield
    state = state_of(session.config)
    if state and state.results and state.rehearsal:
        from deploycheck.record import compose as record
        from deploycheck.record import sign as signing
        from deploycheck.record.verify import verify
        reports_root = state.reports_dir.parent
        try:
            record.build_record(reports_root, state.deployment_id, state.checklist, force=True)
            signing.sign_with_throwaway_keys(reports_root, state.deployment_id)
            checked = verify(reports_root, state.deployment_id)
            problem = None if checked.ok else f"does not verify: {checked.first_bad_file}"
        except (record.RecordError, signing.SigningError) as exc:
            problem = f"not signed: {exc}"
        if problem:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        state.record_message = (f"deployment record ({state.verdict.get('verdict')}"
                                f"{', incomplete' if state.incomplete else ''}) "
                                f"{problem or 'signed (rehearsal keys) and verified'}: "
                                f"{state.reports_dir / 'record.html'}")
    return result


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    state = state_of(config)
    if state and state.verdict:
        failed = ", ".join(state.verdict["failed_items"][:15])
        go = state.verdict["verdict"] == "GO"
        if state.incomplete:
            terminalreporter.write_line(f"incomplete run: {state.incomplete}", red=True)
        if state.override:
            terminalreporter.write_line(f"override: {state.override['reason']} "
                                        f"({'; '.join(state.override['overridden'])})", yellow=True)
        for line in (state.production or {}).get("stands", []):
            terminalreporter.write_line(f"production now: {line}", bold=True)
        if (state.production or {}).get("next"):
            terminalreporter.write_line(f"next: {state.production['next']}", bold=True)
        terminalreporter.write_sep("=", f"{state.verdict['verdict']}" + (f": failed {failed}" if failed else "")
                                   + (" (incomplete)" if state.incomplete else ""), green=go, red=not go)
    if state and state.record_message:
        terminalreporter.write_sep("-", state.record_message)
