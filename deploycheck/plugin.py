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

from deploycheck import attest, checklist as checklist_data, targets
from deploycheck.attest import EVIDENCE, STATE, AttestationItem
from deploycheck.ledger import Ledger
from deploycheck.redact import Redactor

OUTCOME_RANK = {"skipped": 0, "passed": 1, "failed": 2, "error": 3}
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


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the second deployment the rehearsal does what an operator does after a rollback: check the
    release out again (16.3 went back to the previous one)."""
    state = state_of(item.config)
    if state and state.full_rehearsal and _round(item) == 2 and not state.redeploying:
        from deploycheck.rehearsal import git
        state.redeploying = True
        git(Path(state.bot_dir), "checkout", "-q", "main")


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
    """Against a live target an action runs only with --execute; otherwise an attestation stands for it."""
    state, entry = state_of(pyfuncitem.config), checklist_item(pyfuncitem)
    if not state or not entry or not checklist_data.guarded(entry) or state.rehearsal or state.execute:
        return None
    marker = pyfuncitem.get_closest_marker("item")
    if marker.kwargs.get("observes"):  # the test itself checks the effect when not executing
        return None
    attestation = state.attestations.get(entry.id)
    if attestation is None:
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
    crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", None)
    if crash:  # the assertion's own words, for the ledger and the summary
        report.crash_message = redact(crash)
    if report.failed and report.longrepr is not None:
        report.longrepr = redact(str(report.longrepr))
    elif report.skipped and isinstance(report.longrepr, tuple):
        path, line, reason = report.longrepr
        report.longrepr = (path, line, redact(reason))
    report.sections = [(title, redact(content)) for title, content in report.sections]
    if entry:
        report.item_id = entry.id
        report.evidence = state.redactor.value(dict(item.stash.get(EVIDENCE, {})))


def verdict(state: RunState) -> dict:
    """GO only if no item failed; the failed stop-the-deployment gates come first."""
    failed = [i for i, r in sorted(state.results.items(), key=lambda kv: checklist_data.item_key(kv[0]))
              if r["outcome"] in ("failed", "error")]
    gates = sorted({state.results[i]["gate"] for i in failed if state.results[i]["gate"]})
    return {"verdict": "NO-GO" if failed else "GO", "failed_gates": gates, "failed_items": failed}


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

    def pytest_sessionstart(self) -> None:
        self.state.started = utcnow()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Worst outcome across an item's cases, summed duration, merged evidence."""
        if not getattr(report, "item_id", None):
            return
        entry = self.state.checklist[report.item_id]
        result = self.state.results.setdefault(entry.id, {
            "title": entry.title, "phase": entry.phase, "kind": entry.kind, "gate": entry.gate, "outcome": None,
            "duration": 0.0, "evidence": {}, "attestation": None, "message": None, "cases": {}})
        result["duration"] = round(result["duration"] + report.duration, 3)
        result["evidence"].update(report.evidence)
        result["attestation"] = attest.from_evidence(report.evidence) or result["attestation"]
        if report.when != "call" and report.passed:
            return
        outcome = "error" if report.failed and report.when != "call" else report.outcome
        result["cases"][report.nodeid] = outcome
        if result["outcome"] is None or OUTCOME_RANK[outcome] > OUTCOME_RANK[result["outcome"]]:
            result["outcome"] = outcome
        if outcome in ("failed", "error") and not result["message"]:
            text = getattr(report, "crash_message", None) or str(report.longrepr or outcome).strip()
            result["message"] = text[:1000]
        elif outcome == "skipped" and isinstance(report.longrepr, tuple) and not result["message"]:
            result["message"] = report.longrepr[2]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        state = self.state
        if not state.results:
            return
        state.verdict = verdict(state)
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
        state.record_message = (f"deployment record {problem or 'signed (rehearsal keys) and verified'}: "
                                f"{state.reports_dir / 'record.html'}")
    return result


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    state = state_of(config)
    if state and state.verdict:
        failed = ", ".join(state.verdict["failed_items"][:15])
        terminalreporter.write_sep("=", f"{state.verdict['verdict']}" + (f": failed {failed}" if failed else ""),
                                   green=state.verdict["verdict"] == "GO", red=state.verdict["verdict"] != "GO")
    if state and state.record_message:
        terminalreporter.write_sep("-", state.record_message)
