"""Stop means stop: an action whose prerequisite failed does not run, a failed window says where production
stands, an incomplete run is never GO, phases respect earlier verdicts, and a failure's message is its cause.

The inner runs use stand-in tests for the items (each writes its id to ran.txt, and fails when named in FAIL)
with the real checklist data: what is proven here is the plugin's rule over the real dependencies."""
from __future__ import annotations

import json

import pytest

from deploycheck.record.ledger import Ledger

LIVE = "postgresql://ops@db.invalid:5432/bot_auto_order"


def stand_ins(project, *items: str, body: str = "") -> None:
    lines = ["import os, pytest", "from pathlib import Path", "",
             "def act(item):",
             "    with Path('ran.txt').open('a') as ran:",
             "        ran.write(item + '\\n')",
             "    if item in os.environ.get('FAIL', '').split(','):",
             "        pytest.fail(f'{item} failed on purpose', pytrace=False)", "", body]
    for item in items:
        lines += [f"@pytest.mark.item({item!r})", f"def test_{item.replace('.', '_')}():", f"    act({item!r})", ""]
    (project.path / "tests" / "test_stand_ins.py").write_text("\n".join(lines))


def ran(project) -> list[str]:
    path = project.path / "ran.txt"
    return path.read_text().split() if path.exists() else []


def last_entry(project) -> dict:
    return Ledger(next((project.path / "reports").glob("*/ledger.jsonl"))).read()[-1]


WINDOW = ("1.3", "4.1", "4.2", "4.4", "6.1", "6.2", "6.3", "6.4", "7.1", "7.2", "7.3", "7.4", "7.5", "9.1", "9.2", "9.3",
          "10.1", "10.2", "10.3", "10.4", "10.5")


def test_wrong_database_is_never_migrated(project, monkeypatch):
    stand_ins(project, *WINDOW)
    monkeypatch.setenv("FAIL", "7.2")
    result = project.runpytest("--target", "embedded", "-m", "preflight or deploy")
    assert "7.2" in ran(project) and "7.3" not in ran(project), ran(project)
    entry = last_entry(project)
    assert entry["items"]["7.3"]["outcome"] == "not run"
    assert entry["items"]["7.3"]["message"] == "not run: 7.2 failed"
    assert entry["verdict"] == "NO-GO" and "7.3" in entry["failed_items"]
    assert "database: unchanged at v0.6 (the migration did not run)" in entry["production"]["stands"]
    assert "bot: stopped (6.1)" in entry["production"]["stands"]
    result.stdout.fnmatch_lines(["*the rehearsal's copy now: bot: stopped (6.1)*", "*next: fix the cause*rollback*",
                                 "*7.2*failed on purpose*", "*caused*7.3*", "*NO-GO: cause*7.2*"])


def test_failed_migration_leaves_the_bot_stopped(project, monkeypatch):
    stand_ins(project, *WINDOW)
    monkeypatch.setenv("FAIL", "7.3")
    project.runpytest("--target", "embedded", "-m", "preflight or deploy")
    assert not {"9.1", "9.3", "10.1", "10.2", "10.3", "10.4"} & set(ran(project)), ran(project)
    entry = last_entry(project)
    assert entry["items"]["10.1"]["message"].startswith("not run: 7.3 failed")
    assert entry["production"]["stands"] == [
        "bot: stopped (6.1)", "database: unchanged at v0.6 (the migration rolled back as one transaction)"]


def test_refused_restore_reverts_no_code_and_starts_no_bot(project, monkeypatch):
    stand_ins(project, "1.3", "4.2", "4.3", "16.1", "16.2", "16.3", "16.4", "16.5", "16.6")
    monkeypatch.setenv("FAIL", "16.2")
    project.runpytest("--target", "embedded", "-m", "preflight or rollback")
    assert "16.2" in ran(project) and not {"16.3", "16.4", "16.5", "16.6"} & set(ran(project)), ran(project)
    entry = last_entry(project)
    assert entry["production"]["stands"] == [
        "bot: stopped (16.1)", "database: not restored: still the database the rollback started from",
        "code: still the release"]
    assert "rerun `pytest -m rollback --execute`" in entry["production"]["next"]


def test_restore_needs_the_backup_preflight_verified(project, monkeypatch):
    """16.2 in a rollback run of its own reads 4.2/4.3 from the deployment's ledger."""
    stand_ins(project, "4.2", "4.3", "16.1", "16.2")
    monkeypatch.setenv("FAIL", "4.3")
    project.runpytest("--target", "embedded", "-m", "preflight", "-k", "4_2 or 4_3")
    monkeypatch.delenv("FAIL")
    project.runpytest("--target", "embedded", "-m", "rollback", "-k", "16_1 or 16_2")
    assert "16.2" not in ran(project)
    assert last_entry(project)["items"]["16.2"]["message"].startswith("not run: 4.3 failed in its last run")


def test_deploy_refuses_after_a_no_go_preflight_and_runs_with_a_recorded_override(project, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", LIVE)
    stand_ins(project, "4.3", "6.1")
    missing = project.runpytest("-m", "deploy", "--execute", "-k", "6_1")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR and "6.1" not in ran(project)
    missing.stdout.fnmatch_lines(["*refused: no preflight has been recorded for this deployment*--override*"])

    monkeypatch.setenv("FAIL", "4.3")
    project.runpytest("-m", "preflight", "-k", "4_3")
    monkeypatch.delenv("FAIL")
    refused = project.runpytest("-m", "deploy", "--execute", "-k", "6_1")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR and "6.1" not in ran(project)
    refused.stdout.fnmatch_lines(["*refused: the latest preflight (*) is NO-GO (failed: 4.3)*"])

    overridden = project.runpytest("-m", "deploy", "--execute", "-k", "6_1",
                                   "--override", "4.3 restore tested by hand on staging")
    overridden.assert_outcomes(passed=1)
    overridden.stdout.fnmatch_lines(["*OVERRIDE: the latest preflight*-- going on because: 4.3 restore tested*",
                                     "*>>> 6.1 Stop bot service: stops the bot (systemd:bot-auto-order)*"])
    entry = last_entry(project)
    assert entry["override"]["reason"] == "4.3 restore tested by hand on staging"
    assert "(failed: 4.3)" in entry["override"]["overridden"][0] and entry["verdict"] == "GO"


def test_interrupted_run_is_no_go(project):
    stand_ins(project, "1.3", "4.2", "4.3", body=(
        "@pytest.mark.item('1.5')\ndef test_interrupt():\n    raise KeyboardInterrupt\n"))
    result = project.runpytest_subprocess("--target", "embedded", "-m", "preflight")  # Ctrl-C stays inside
    assert result.ret == pytest.ExitCode.INTERRUPTED
    entry = last_entry(project)
    assert entry["verdict"] == "NO-GO" and entry["incomplete"].startswith("interrupted:")
    assert entry["items"]["4.3"]["outcome"] == "not run"
    assert entry["items"]["1.3"]["outcome"] == "passed"


def test_stopped_early_run_is_no_go(project, monkeypatch):
    stand_ins(project, "1.3", "4.2", "4.3")
    monkeypatch.setenv("FAIL", "1.3")
    project.runpytest("--target", "embedded", "-m", "preflight", "-x")
    entry = last_entry(project)
    assert entry["incomplete"].startswith("stopped early:") and entry["items"]["4.2"]["outcome"] == "not run"


def test_attested_maintenance_message_is_not_sent(project, monkeypatch):
    """6.3 attested (users told through other channels) stands even under --execute."""
    stand_ins(project, "1.3", "4.1", "4.2", "4.4", "6.1", "6.3")
    result = project.runpytest("--target", "embedded", "-m", "preflight or deploy", "-k", "1_3 or 4_ or 6_1 or 6_3",
                               "--attest", "6.3=announced in the shop's channel and status page")
    assert "6.1" in ran(project) and "6.3" not in ran(project)
    result.assert_outcomes(passed=6)


def test_failure_messages_are_causes(project):
    project.makepyfile(test_messages='''
        import pytest
        @pytest.mark.item("1.3")
        def test_introspection():
            found = {"answer": 2}
            assert found.get("answer") == 1, "the server answered 2, expected 1: check the replica"

        @pytest.mark.item("1.4")
        def test_os_error():
            open("/no-such-folder/backup.dump", "w")

        @pytest.mark.item("1.5")
        def test_long_message_keeps_the_server_error():
            lines = ["the migration failed:"] + [f"NOTICE: step {n}" for n in range(400)]
            lines.insert(200, "ERROR:  index row size 6016 exceeds btree version 4 maximum 2704")
            try:
                raise ValueError("inner")
            except ValueError:
                pytest.fail("\\n".join(lines + ["fix the data, then rerun"]))
    ''')
    project.path.joinpath("test_messages.py").rename(project.path / "tests" / "test_messages.py")
    project.runpytest("--target", "embedded", "-m", "preflight", "-k", "introspection or os_error or long")
    items = last_entry(project)["items"]
    assert items["1.3"]["message"] == "the server answered 2, expected 1: check the replica"
    assert items["1.4"]["message"].startswith("No such file or directory (/no-such-folder/backup.dump)")
    assert "OSError" not in items["1.4"]["message"].split("(unexpected")[0]
    long = items["1.5"]["message"]
    assert long.startswith("the migration failed:") and "index row size 6016 exceeds btree" in long
    assert long.rstrip().endswith("fix the data, then rerun") and "During handling" not in long


def test_gate_fails_only_for_its_own_items_failure(project, monkeypatch):
    """A migration gate item that was only not run (something before it failed) is no "script not found"."""
    stand_ins(project, "1.3", "4.1", "4.2")
    monkeypatch.setenv("FAIL", "1.3")
    project.runpytest("--target", "embedded", "-m", "preflight", "-k", "1_3 or 4_1 or 4_2")
    entry = last_entry(project)
    assert entry["items"]["4.1"]["outcome"] == "not run"
    assert entry["failed_gates"] == ["database"]
    assert json.dumps(entry).count("not run: 1.3 failed") == 1


MANUAL_SERVICE = '''
import pytest
from datetime import datetime, timezone
from deploycheck.infra.service import LogLine, Service

class ByHand(Service):
    """The bot as the operator left it: stopped, migrated and started again by hand."""
    name, kind = "bot-auto-order", "systemd"
    async def start(self, timeout=60): raise AssertionError("done by hand: not started by the suite")
    async def stop(self, timeout=60): raise AssertionError("done by hand: not stopped by the suite")
    def status(self): return "active"
    def is_active(self): return True
    async def wait_ready(self, since, timeout): return 0.1
    def pids(self): return []
    def logs(self, since):
        return [LogLine(datetime.now(timezone.utc), "INFO", "Application started")]

@pytest.fixture(scope="session")
def service():
    return ByHand()
'''


def test_window_done_by_hand_reaches_go(project, copy_tests, fresh_db, tmp_path, monkeypatch):
    """Stop, migrate and start by hand, then `-m deploy` with the actions attested: the items that read their
    times take them from the attestations, and 7.4/7.5 measure schema_migrations."""
    import asyncio
    import shutil
    import subprocess
    import sys

    import asyncpg

    from deploycheck.checks import window as deploy
    from deploycheck.rehearsal.checkout import MIGRATION, RUNNER
    from deploycheck.infra.targets import ROOT, baseline_generator

    async def v06_shop() -> dict:
        conn = await asyncpg.connect(fresh_db)
        try:
            await baseline_generator().generate(conn, scale=0.05)
            return await deploy.identity(conn)
        finally:
            await conn.close()
    identity = asyncio.run(v06_shop())  # a sync test: the inner pytest runs its own event loop
    bot = tmp_path / "bot"
    for relative in (MIGRATION, RUNNER):
        (bot / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, bot / relative)
    (bot / "requirements.txt").write_text("asyncpg\n")
    by_hand = subprocess.run([sys.executable, RUNNER, MIGRATION, "--yes", "--dsn", fresh_db], cwd=bot,
                             capture_output=True, text=True, timeout=300)
    assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr

    copy_tests("deploy/conftest.py", "deploy/test_maintenance.py", "deploy/test_migration.py",
               "deploy/test_update.py", "deploy/test_start.py")
    (project.path / "tests" / "conftest.py").write_text(MANUAL_SERVICE)
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    reports = project.path / "reports" / "manual"
    Ledger(reports / "ledger.jsonl").append({  # preflight was GO and recorded the database it backed up
        "run_id": "preflight", "phases": ["preflight"], "verdict": "GO", "ended": "2025-01-06T01:00:00+00:00",
        "items": {"1.3": {"phase": "preflight", "outcome": "passed", "evidence": {"Database Identity": identity}}}})
    result = project.runpytest_subprocess(  # its test modules share names with the self-tests' own
        "-m", "deploy", "--deployment-id", "manual", f"--bot-dir={bot}", f"--bot-python={sys.executable}",
        f"--expected={ROOT / 'checklists' / 'v0.7.0-expected.toml'}",  # this preflight rehearsed nothing (no 5.3)
        "--attest", "6.1=stopped by hand with systemctl", "--attest", "6.3=announced in the shop's channel",
        "--attest", "7.3=ran run_migration.py by hand", "--attest", "10.1=started by hand with systemctl")
    entry = last_entry(project)
    failed = {i: r["message"] for i, r in entry["items"].items() if r["outcome"] != "passed"}
    assert entry["verdict"] == "GO", (failed, result.stdout.str()[-3000:])
    assert entry["items"]["6.4"]["evidence"]["Downtime Started"] == entry["items"]["6.1"]["evidence"]["Attested At"]
    assert entry["items"]["7.5"]["evidence"]["Migration Time"].endswith(" s")
    assert "measured: schema_migrations says 001_fix_schema_constraints" in json.dumps(entry["items"]["7.4"])
