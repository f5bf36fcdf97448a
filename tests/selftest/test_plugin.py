"""The backbone: checklist data, markers and order, attestations, the live safety gates, secrets, the ledger."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploycheck import checklist
from deploycheck.record.ledger import Ledger, LedgerError

ROOT = Path(__file__).resolve().parents[2]
SHARED_SPEC = ROOT.parent / "shared" / "checklist-v0.7.0.md"   # the original, beside the checkout in CI
SPEC = ROOT / "checklists" / "checklist-v0.7.0.md"             # its verbatim copy, the data's source
DATA = checklist.load(ROOT / "checklists" / "v0.7.0.toml")
KNOWN_PASSWORD = "Kn0wn-Secret-pw-5150"
KNOWN_TOKEN = "123456789:AAHknownSecretTokenValueForSelfTests1"


def collect(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return [line for line in out.stdout.splitlines() if "::" in line]


def item_of(nodeid: str) -> str:
    """The item a collected node implements: from the checklist file's node name, or the test's marker."""
    if nodeid.startswith("checklists/"):
        return nodeid.rsplit("::", 1)[1]
    return MARKED[nodeid.split("[")[0]]


MARKED: dict[str, str] = {}


def _marked_tests() -> dict[str, str]:
    """nodeid (without parameters) -> item id, read from the tests' @pytest.mark.item decorators."""
    found = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        if "selftest" in path.parts:
            continue
        text = path.read_text()
        for match in re.finditer(r'@pytest\.mark\.item\("([\d.]+(?:\+\w+)?)"[^)]*\)\s*(?:@[^\n]+\s*)*(?:async )?def (\w+)', text):
            found[f"{path.relative_to(ROOT)}::{match.group(2)}"] = match.group(1)
    return found


def test_the_copy_of_the_checklist_is_the_original():
    if not SHARED_SPEC.exists():
        pytest.skip(f"{SHARED_SPEC} is not beside this checkout; the copy in checklists/ is used as is")
    assert SPEC.read_bytes() == SHARED_SPEC.read_bytes(), "checklists/checklist-v0.7.0.md differs from the original"


def test_every_numbered_item_of_the_markdown_checklist_is_in_the_data():
    numbered = dict(re.findall(r"^- \[ \] \*\*(\d+\.\d+)\*\* (.+?)\s*$", SPEC.read_text(), re.M))
    assert len(numbered) == 77
    assert set(numbered) == {i.id for i in DATA.ordered()}  # the checklist's own items, not checks beyond it
    assert all(i.extra and i.id.split('+')[0] in numbered for i in DATA.items.values() if i.id not in numbered)
    for item_id, title in numbered.items():
        assert DATA[item_id].title == title, f"{item_id}: title differs from the checklist"


def test_phases_follow_the_issue():
    expected = {"1": "preflight", "2": "preflight", "3": "preflight", "4": "preflight", "5": "preflight",
                "6": "deploy", "7": "deploy", "9": "deploy", "10": "deploy", "8": "postdeploy", "12": "postdeploy",
                "13": "postdeploy", "14": "postdeploy", "11": "smoke", "15": "monitor", "16": "rollback"}
    for item in DATA.items.values():
        want = "smoke" if item.id == "13.4" else expected[item.id.split(".")[0]]
        assert item.phase == want, item.id
    assert {i.id for i in DATA.items.values() if i.gate} >= {"1.3", "2.4", "3.3", "4.3"}


def test_item_order_is_numeric():
    ids = ["1.10", "1.2", "15.10", "15.9", "2.1", "1.1"]
    assert sorted(ids, key=checklist.item_key) == ["1.1", "1.2", "1.10", "2.1", "15.9", "15.10"]


def test_all_77_items_collected_once_in_checklist_order():
    MARKED.update(_marked_tests())
    nodes = collect()
    first = [item_of(n) for n in nodes if "redeploy" not in n]
    again = [item_of(n) for n in nodes if "redeploy" in n]
    in_order = sorted(DATA.items.values(), key=lambda i: i.key)  # with the checks beyond it, each after its item
    assert list(dict.fromkeys(first)) == [i.id for i in in_order], "items out of order, missing or repeated"
    assert first == sorted(first, key=checklist.item_key), "cases of one item are not together"
    # The full rehearsal then deploys again after the rollback: deploy and postdeploy only, in order, last.
    assert nodes.index(next(n for n in nodes if "redeploy" in n)) > max(
        i for i, n in enumerate(nodes) if item_of(n).startswith("16."))
    assert {DATA[i].phase for i in again} == {"deploy", "postdeploy"}
    assert again == sorted(again, key=checklist.item_key)


@pytest.mark.parametrize("phase", checklist.PHASES)
def test_marker_selects_exactly_that_phase(phase):
    MARKED.update(_marked_tests())
    selected = {item_of(n) for n in collect("-m", phase)}
    assert selected == {i.id for i in DATA.items.values() if i.phase == phase}


# ---------------------------------------------------------------------------------------- inner runs
def ledger_entries(pytester) -> list[dict]:
    ledgers = list((pytester.path / "reports").glob("*/ledger.jsonl"))
    assert len(ledgers) == 1
    return Ledger(ledgers[0]).read()


def test_attestation_passes_and_missing_one_fails_on_live(project, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://ops@db.invalid:5432/bot_auto_order")
    result = project.runpytest("-m", "preflight", "-k", "2.1 or 2.2", "--operator", "rina",
                               '--attest', '2.2="Owner and CS notified on the ops group"')
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*2.1 Schedule deployment window*no attestation*--attest 2.1=*"])
    items = ledger_entries(project)[-1]["items"]
    assert items["2.2"]["outcome"] == "passed"
    assert items["2.2"]["attestation"]["text"] == "Owner and CS notified on the ops group"
    assert items["2.2"]["attestation"]["by"] == "rina"
    assert items["2.1"]["outcome"] == "failed"


def test_attestations_file_and_rehearsal_skip(project):
    project.makefile(".toml", attest='"2.2" = "Owner notified"\n["2.4"]\ntext = "Primary Rina, backup Agus"\nby = "agus"\n')
    result = project.runpytest("-m", "preflight", "-k", "2.1 or 2.2 or 2.4", "--target", "embedded",
                               "--attestations", "attest.toml", "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*manual item: attest it against a live target*"])
    assert ledger_entries(project)[-1]["items"]["2.4"]["attestation"]["by"] == "agus"


def test_malformed_attestations_file_is_a_clear_error(project):
    project.makefile(".toml", attest='"2.2" = \n')
    result = project.runpytest("-m", "preflight", "--attestations", "attest.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--attestations attest.toml is not valid TOML*"])


def test_plain_pytest_is_refused_on_live(project, monkeypatch):
    monkeypatch.setenv("POSTGRES_HOST", "db.invalid")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*a live target needs a phase*", "*pytest -m preflight*", "*pytest -m rollback*"])


def test_action_refused_without_execute_on_live(project, passed_before, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://ops@db.invalid:5432/bot_auto_order")
    passed_before({"1.3": {}})  # a GO preflight: 6.1's prerequisite
    project.makepyfile(test_stop="""
        import pytest
        STOPPED = []
        @pytest.mark.item("6.1")
        def test_stop_bot():
            STOPPED.append(True)
            assert False, "the action body ran"
    """)
    project.path.joinpath("test_stop.py").rename(project.path / "tests" / "test_stop.py")
    result = project.runpytest("-m", "deploy", "-k", "6.1 or stop")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*action not executed: pass --execute, or attest that it was done by hand*"])
    attested = project.runpytest("-m", "deploy", "-k", "6.1 or stop", "--attest", "6.1=stopped by hand at 02:01")
    attested.assert_outcomes(passed=1)
    executed = project.runpytest("-m", "deploy", "-k", "6.1 or stop", "--execute")
    executed.stdout.fnmatch_lines(["*the action body ran*"])


def test_unknown_item_marker_is_a_usage_error(project):
    (project.path / "tests" / "test_x.py").write_text(
        'import pytest\n@pytest.mark.item("99.1")\ndef test_x():\n    pass\n')
    result = project.runpytest("--target", "embedded")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*item('99.1') is not an item of Deployment Checklist v0.7.0*"])


def test_wrong_password_is_a_no_go_not_a_skip(project, copy_tests, pg_server, monkeypatch):
    copy_tests("preflight/test_database.py")
    wrong = pg_server.dsn.replace(pg_server.password, KNOWN_PASSWORD)
    monkeypatch.setenv("DATABASE_URL", wrong)
    result = project.runpytest("-m", "preflight", "-k", "1.3 or database")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot connect to database postgres on 127.0.0.1:*password authentication failed*"])
    entry = ledger_entries(project)[-1]
    assert entry["verdict"] == "NO-GO"
    assert entry["failed_gates"] == ["database"]
    assert KNOWN_PASSWORD not in result.stdout.str()


def test_known_secrets_never_reach_reports(project, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://ops:{KNOWN_PASSWORD}@db.invalid:5432/bot_auto_order")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", KNOWN_TOKEN)
    (project.path / "tests" / "test_leaky.py").write_text(f'''
import os, logging, pytest

@pytest.mark.item("1.1")
def test_leaks_everywhere(evidence):
    print("dsn", os.environ["DATABASE_URL"])
    logging.getLogger("bot").warning("token %s", os.environ["TELEGRAM_BOT_TOKEN"])
    evidence["dsn"] = os.environ["DATABASE_URL"]
    evidence["{KNOWN_TOKEN}"] = "a key, too"
    assert False, "connect failed for " + os.environ["DATABASE_URL"] + " bot " + os.environ["TELEGRAM_BOT_TOKEN"]
''')
    result = project.runpytest("-m", "preflight", "-k", "1.1 or leaks")
    result.assert_outcomes(failed=1)
    files = [p for p in (project.path / "reports").rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".html", ".json", ".jsonl"}
    for path in files:
        text = path.read_text()
        assert KNOWN_PASSWORD not in text and KNOWN_TOKEN not in text, f"secret in {path.name}"
    assert KNOWN_PASSWORD not in result.stdout.str() and KNOWN_TOKEN not in result.stdout.str()


def test_report_names_release_deployment_and_verdict(project, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://ops@db.invalid:5432/bot_auto_order")
    project.runpytest("-m", "preflight", "-k", "2.4", "--deployment-id", "dep-42")
    html = next((project.path / "reports" / "dep-42").glob("preflight-*.html")).read_text()
    assert "bot-auto-order v0.7.0 deployment dep-42" in html
    assert "NO-GO" in html and "Team not available for support" in html
    document = json.loads(next((project.path / "reports" / "dep-42").glob("preflight-*.json")).read_text())
    assert document["verdict"] == "NO-GO" and document["failed_gates"] == ["team"]


def test_later_run_reads_earlier_evidence(project):
    (project.path / "tests" / "test_counts.py").write_text('''
import pytest

@pytest.mark.item("5.1")
def test_record(evidence):
    evidence["Users"] = 1234

@pytest.mark.item("8.4")
def test_compare(recorded, evidence):
    evidence["before"] = recorded("5.1")["Users"]
    assert recorded("5.1")["Users"] == 1234
''')
    first = project.runpytest("-m", "preflight", "--target", "embedded", "-k", "record", "--deployment-id", "d1")
    first.assert_outcomes(passed=1)
    second = project.runpytest("-m", "postdeploy", "--target", "embedded", "-k", "compare", "--deployment-id", "d1")
    second.assert_outcomes(passed=1)


def test_edited_ledger_line_breaks_the_chain(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    for n in range(3):
        ledger.append({"run_id": str(n), "items": {"5.1": {"outcome": "passed", "evidence": {"Users": n}}}})
    assert ledger.latest("5.1")["evidence"] == {"Users": 2}
    lines = ledger.path.read_text().splitlines()
    lines[1] = lines[1].replace('"Users":1', '"Users":7')
    ledger.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LedgerError, match="line 3: hash chain broken"):
        ledger.read()
    with pytest.raises(LedgerError):
        ledger.append({"run_id": "after tampering"})


def test_final_checklist_lines_are_attested_into_the_record(project):
    from deploycheck.record import compose as record
    result = project.runpytest("-m", "preflight", "--target", "embedded", "-k", "2.1",
                               "--attest", "final:4=Team told in the ops group", "--attest", "2.1=02:00 WIB")
    result.assert_outcomes(passed=1)
    assert ledger_entries(project)[-1]["attestations"]["final:4"]["text"] == "Team told in the ops group"
    built = record.load_record(next((project.path / "reports").glob("*/")))
    line = next(line for line in built["final_checklist"] if line["line"] == "Team notified of completion")
    assert line["done"] == "yes" and line["basis"] == "attested"
    refused = project.runpytest("-m", "preflight", "--attest", "final:99=nothing")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR


async def make_dump(pg_server, tmp_path) -> Path:
    import asyncpg
    from deploycheck.checks.backup import dump
    from deploycheck.infra.embedded import find_bindir
    admin = await asyncpg.connect(pg_server.dsn)
    await admin.execute('DROP DATABASE IF EXISTS "real_copy" WITH (FORCE)')
    await admin.execute('CREATE DATABASE "real_copy"')
    await admin.close()
    conn = await asyncpg.connect(pg_server.dsn_for("real_copy"))
    await conn.execute("CREATE TABLE users (id serial PRIMARY KEY, telegram_id bigint NOT NULL); "
                       "INSERT INTO users (telegram_id) SELECT g FROM generate_series(1, 1234) g")
    await conn.close()
    made = await dump(pg_server.dsn_for("real_copy"), find_bindir() / "pg_dump", tmp_path / "real.dump")
    return Path(made.file)


def test_baseline_dump_is_the_rehearsals_database(project, copy_tests, pg_server, tmp_path):
    import asyncio
    dumped = asyncio.run(make_dump(pg_server, tmp_path))
    copy_tests("preflight/test_state.py")
    # one argument: a lone path would make pytest look for its root directory around the dump
    result = project.runpytest("-m", "preflight", "--target", "embedded", f"--baseline-dump={dumped}",
                               "-k", "test_row_counts_recorded")
    result.assert_outcomes(passed=1)
    assert ledger_entries(project)[-1]["items"]["5.1"]["evidence"]["tables"] == {"users": 1234}
    missing = project.runpytest("-m", "preflight", "--target", "embedded", "--baseline-dump=nope.dump",
                                "-k", "test_row_counts_recorded")
    missing.assert_outcomes(errors=1)
    missing.stdout.fnmatch_lines(["*rehearsal baseline: --baseline-dump nope.dump: no such file*"])


def test_recorded_takes_the_newest_of_several_items(project):
    """7.2 compares with the newest of preflight's (1.3) and a rollback's (16.5) database identity. An
    earlier run's 16.5 must not win over the 1.3 this run recorded (found on a reused deployment id)."""
    (project.path / "tests" / "test_identity.py").write_text('''
import os, pytest

@pytest.mark.item("1.3")
def test_preflight(evidence):
    evidence["Database Identity"] = os.environ["IDENTITY_13"]

@pytest.mark.item("16.5")
def test_rollback(evidence):
    evidence["Database Identity"] = os.environ["IDENTITY_165"]

@pytest.mark.item("7.2")
def test_compare(recorded, evidence):
    evidence["Compared With"] = recorded("1.3", "16.5")["Database Identity"]
''')
    def run(*selected: str, **identities: str) -> str:
        env = {"IDENTITY_13": identities.get("at_13", "-"), "IDENTITY_165": identities.get("at_165", "-")}
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            result = project.runpytest("--target", "embedded", "--deployment-id", "reused", "-k", " or ".join(selected))
        result.assert_outcomes(passed=len(selected))
        return ledger_entries(project)[-1]["items"].get("7.2", {}).get("evidence", {}).get("Compared With")

    run("test_preflight", "test_rollback", at_13="old", at_165="rolled-back")       # an earlier deployment
    assert run("test_preflight", "test_compare", at_13="fresh") == "fresh"           # this run's 1.3 wins
    assert run("test_compare") == "fresh"                                             # newest ledger entry
    run("test_rollback", at_165="restored")                                           # a rollback since
    assert run("test_compare") == "restored"


@pytest.mark.slow  # runs ./run itself: a minute or more when pyproject.toml changed since its last install
def test_run_accepts_existing_folders_as_option_values(tmp_path):
    """`./run pytest --reports-dir /existing/folder` (or --bot-dir, --backup-copy-to): plain pytest would take the
    folder for a test path, look for its config there, and reject the option as unknown."""
    out = subprocess.run([str(ROOT / "run"), "pytest", "--collect-only", "-q", "-m", "preflight",
                          "--reports-dir", str(tmp_path), "--backup-copy-to", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    assert "checklists/v0.7.0.toml::2.1" in out.stdout


def test_installed_plugin_runs_the_suite_from_any_folder_and_stays_out_of_other_projects(tmp_path):
    """The pytest11 entry point: `pytest -m preflight` in a folder that is not this checkout (the bot's own
    repository, a CI job) collects the suite; plain `pytest` there runs that project's tests alone."""
    pytest_bin = Path(sys.executable).parent / "pytest"
    (tmp_path / "test_bot_own.py").write_text("def test_own():\n    pass\n")
    suite = subprocess.run([str(pytest_bin), "-m", "preflight", "--collect-only", "-q", "-p", "no:cacheprovider"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert suite.returncode == 0, suite.stdout + suite.stderr
    assert "test_migration_rehearsed_on_restored_copy" in suite.stdout and "test_own" not in suite.stdout
    own = subprocess.run([str(pytest_bin), "-q", "-p", "no:cacheprovider"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert own.returncode == 0 and "1 passed" in own.stdout, own.stdout + own.stderr
    assert not (tmp_path / "reports").exists()
