"""Deploy-window checks (6.x, 7.x, 9.x, 10.x) and the bot-process checks (13.1, 13.2, 14.x), each shown to
fail on the fault it exists to catch."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from deploycheck.infra.release import Checkout
from deploycheck.infra.host import BotHost

from deploycheck.checks import window as deploy
from deploycheck.checks.performance import sample
from deploycheck.rehearsal.service import RehearsalBot
from deploycheck.infra.targets import baseline_generator
from deploycheck.telegram.fake_api import FakeBotAPI
from deploycheck.rehearsal.refbot import ReferenceBot, ReferenceBotError

ROOT = Path(__file__).resolve().parents[2]
LOCAL = BotHost.get("local://")  # the testinfra host behind the bounded-command facade
STUB_SERVICE = '''
import pytest
from datetime import datetime, timedelta, timezone
from deploycheck.infra.service import LogLine, Service, ServiceError

class Stub(Service):
    name, kind = "stub bot", "process"
    def __init__(self, lines, ready=True):
        self.lines, self.ready = lines, ready
    def status(self): return "active"
    def is_active(self): return True
    async def start(self, timeout=60): pass
    async def stop(self, timeout=60): pass
    async def wait_ready(self, since, timeout):
        if not self.ready:
            raise ServiceError("stub bot did not log that it is polling within 120 s (state: failed)")
        return 0.1
    def pids(self): return []
    def logs(self, since):  # a line may say how many seconds before now it was logged
        lines = [LogLine(datetime.now(timezone.utc) - timedelta(seconds=(age or [0])[0]), level, text)
                 for level, text, *age in self.lines]
        return [line for line in lines if since is None or line.time >= since]

@pytest.fixture(scope="session")
def service():
    return Stub(LINES, READY)
'''


@pytest.fixture
def window_project(project, copy_tests, passed_before):
    """An inner checkout with the real start (10.x) and log review (14.x) tests; the window before them passed."""
    copy_tests("deploy/conftest.py", "deploy/test_start.py", "postdeploy/test_logs.py")
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc).isoformat()
    passed_before({"6.4": {"Downtime Started": now}, "7.3": {}, "7.4": {}, "9.1": {}, "9.2": {},
                   "10.1": {"Started At": now}})
    return project


def run_with(project, lines, ready=True):
    project.makeconftest('pytest_plugins = ["deploycheck.pytest_plugin"]\n'
                         f"LINES = {lines!r}\nREADY = {ready!r}\n" + STUB_SERVICE)
    result = project.runpytest("--target", "embedded", "tests")
    ledger = next((project.path / "reports").glob("*/ledger.jsonl")).read_text().splitlines()[-1]  # this run
    return result, json.loads(ledger)["items"]


def test_errors_in_the_log_fail_10_3_and_14_1(window_project):
    result, items = run_with(window_project, [("INFO", "Application started"),
                                       ("ERROR", "asyncpg.exceptions.UndefinedColumnError: column \"x\"")])
    assert items["10.3"]["outcome"] == "failed" and "1 ERROR line(s) since the start" in items["10.3"]["message"]
    assert items["14.1"]["outcome"] == "failed" and "UndefinedColumnError" in items["14.1"]["message"]
    assert items["14.2"]["outcome"] == "passed"


def test_the_previous_releases_errors_before_the_start_are_not_the_releases_14_1(window_project):
    """Within the 30 minutes but before 10.1 started the release: the previous release's, not counted."""
    result, items = run_with(window_project, [("ERROR", "previous release: payment job failed", 600),
                                              ("INFO", "Application started")])
    assert items["14.1"]["outcome"] == "passed", items["14.1"]
    assert "the release's start, 10.1" in items["14.1"]["evidence"]["Read Since"]


def test_too_many_warnings_fail_14_2(window_project):
    _, items = run_with(window_project, [("INFO", "Application started")] + [("WARNING", "retrying")] * 11)
    assert items["14.2"]["outcome"] == "failed" and "11 WARNING lines" in items["14.2"]["message"]


def test_bot_that_does_not_come_back_fails_10_4(window_project):
    _, items = run_with(window_project, [("INFO", "Application started")], ready=False)
    assert items["10.4"]["outcome"] == "failed"
    assert "the bot did not come back: " in items["10.4"]["message"] and "within 120 s" in items["10.4"]["message"]


async def test_reference_bot_that_dies_is_not_ready(tmp_path):
    async with FakeBotAPI() as api:
        bot = RehearsalBot(ReferenceBot(), {"dsn": "postgresql://nobody@127.0.0.1:1/none", "api_url": api.url,
                                            "token": api.token, "log_path": tmp_path / "bot.log"})
        await bot.start()
        with pytest.raises(ReferenceBotError, match="exited with code|did not start polling"):
            await bot.wait_ready(None, 10)
        await bot.stop()


async def test_migration_pointed_at_another_database_fails_7_2(fresh_db, pg_server):
    backed_up = await asyncpg.connect(fresh_db)
    other = await asyncpg.connect(pg_server.dsn)
    try:
        before, now = await deploy.identity(backed_up), await deploy.identity(other)
    finally:
        await backed_up.close()
        await other.close()
    assert deploy.same_database(before, before) == []
    differences = deploy.same_database(before, now)
    assert any(d.startswith("name:") for d in differences) and any(d.startswith("oid:") for d in differences)


def test_7_2_checks_the_database_the_runner_will_migrate():
    """The runner reads POSTGRES_* before DATABASE_URL; 7.2 must compare that database, not the bot's URL."""
    env = {"DATABASE_URL": "postgresql://bot@db.example:5432/shop", "POSTGRES_HOST": "staging.example",
           "POSTGRES_DB": "shop_copy", "POSTGRES_USER": "ops", "POSTGRES_PASSWORD": "p@ss word"}
    assert deploy.migration_dsn(env) == "postgresql://ops:p%40ss%20word@staging.example:5432/shop_copy"
    assert deploy.migration_dsn({"DATABASE_URL": env["DATABASE_URL"]}) == env["DATABASE_URL"]


def test_migration_output_errors_7_4():
    """The output's part of 7.4 (the rest is measured in the database: test_release_contract.py): any runner's
    error lines and exit code, whatever else it prints."""
    good = "📦 Creating backup tables...\n✅ Migration completed"  # bot-auto-order's runner prints so
    assert deploy.output_errors(good, 0) is None
    failed = deploy.output_errors(good + "\n[error] ERROR: duplicate key value", 1)
    assert failed.startswith("exit code 1") and "duplicate key value" in failed
    assert deploy.output_errors("Traceback (most recent call last):", 0).startswith("exit code 0; Traceback")


def test_unsatisfied_requirements_fail_9_1(tmp_path):
    (tmp_path / "requirements.txt").write_text("asyncpg>=999\nnot-a-package-xyz==1.0\n# note\n")
    problems = deploy.requirement_problems(LOCAL, Checkout(str(tmp_path), sys.executable))
    assert any("asyncpg" in p and ">=999" in p for p in problems)
    assert any("not-a-package-xyz is not installed" in p for p in problems)
    (tmp_path / "requirements.txt").write_text("asyncpg\n")
    assert deploy.requirement_problems(LOCAL, Checkout(str(tmp_path), sys.executable)) == []


def test_stale_python_cache_found_and_cleared_9_3(tmp_path):
    (tmp_path / "src" / "__pycache__").mkdir(parents=True)
    (tmp_path / "src" / "old.pyc").write_bytes(b"\0")
    (tmp_path / "venv" / "lib" / "__pycache__").mkdir(parents=True)  # the bot's virtualenv is not ours to clean
    checkout = Checkout(str(tmp_path), sys.executable)
    stale = deploy.stale_caches(LOCAL, checkout)
    assert sorted(Path(p).name for p in stale) == ["__pycache__", "old.pyc"]
    deploy.clear_caches(LOCAL, stale)
    assert deploy.stale_caches(LOCAL, checkout) == []
    assert (tmp_path / "venv" / "lib" / "__pycache__").exists()


async def test_bot_session_left_fails_6_2(fresh_db):
    ours = await asyncpg.connect(fresh_db, server_settings={"application_name": "deploycheck"})
    bot = await asyncpg.connect(fresh_db, server_settings={"application_name": "bot-auto-order"})
    try:
        left = await deploy.other_sessions(ours)
        assert [s["application_name"] for s in left] == ["bot-auto-order"]
        assert await deploy.other_sessions(ours, bot_user="someone-else") == []
    finally:
        await bot.close()
    assert await deploy.other_sessions(ours) == []
    await ours.close()


async def test_maintenance_recipients_skip_blocked_users_6_3(fresh_db):
    conn = await asyncpg.connect(fresh_db)
    await conn.execute("CREATE TABLE users (id serial, telegram_id bigint)")
    await conn.execute("INSERT INTO users (telegram_id) VALUES (1), (2), (3)")
    assert await deploy.recipients(conn) == [1, 2, 3]  # a database where the bot never ran
    await conn.execute("ALTER TABLE users ADD COLUMN is_blocked bool, ADD COLUMN bot_blocked bool DEFAULT false")
    await conn.execute("UPDATE users SET is_blocked = true WHERE telegram_id = 2")
    await conn.execute("UPDATE users SET bot_blocked = true WHERE telegram_id = 3")
    assert await deploy.recipients(conn) == [1]
    await conn.close()


async def test_busy_or_bloated_bot_fails_13_1_and_13_2():
    hog = subprocess.Popen([sys.executable, "-c", "x = bytearray(600 * 1024 * 1024)\nwhile True: pass"])
    try:
        await asyncio.sleep(1.0)
        usage = await sample(BotHost.get("local"), [hog.pid], seconds=1.5)
    finally:
        hog.kill()
        hog.wait()
    assert usage["CPU"] >= 50, usage   # 13.1 fails above 50%
    assert usage["RSS"] >= 500, usage  # 13.2 fails above 500 MB
    with pytest.raises(AssertionError, match="no bot process found"):
        await sample(BotHost.get("local"), [hog.pid])


async def test_migration_that_fails_on_the_data_fails_the_rehearsal_5_3(fresh_db):
    """Preflight's migration rehearsal (5.3) runs the release's runner on the restored copy: a migration that
    would fail in production fails there first, with the server's error."""
    conn = await asyncpg.connect(fresh_db)
    await baseline_generator().generate(conn, scale=0.3)
    await conn.execute("UPDATE payments SET amount_cents = -100 WHERE id = (SELECT min(id) FROM payments)")
    await conn.close()
    code, output, _ = await deploy.run_migration(BotHost.get("local"), Checkout(str(ROOT), sys.executable), "scripts/migrations/"
                                                 "001_fix_schema_constraints.sql", "scripts/run_migration.py",
                                                 {"DATABASE_URL": fresh_db}, lambda text: text, ("--yes", "--json"))
    assert code == 1 and deploy.summary_of(output)["status"] == "failed"
    assert "ROLLED BACK" in output


def test_migration_file_without_success_row_fails_9_2(project, copy_tests, passed_before):
    copy_tests("deploy/test_update.py")
    passed_before({"7.3": {}})  # 9.2 checks what the migration recorded
    (project.path / "bot" / "scripts" / "migrations").mkdir(parents=True)
    (project.path / "bot" / "scripts" / "migrations" / "001_fix_schema_constraints.sql").write_text("SELECT 1;")
    (project.path / "bot" / "scripts" / "migrations" / "002_next.sql").write_text("SELECT 2;")
    project.makeconftest('''
import pytest
pytest_plugins = ["deploycheck.pytest_plugin"]

class Conn:
    async def fetch(self, sql, *args):
        return [{"migration_name": "001_fix_schema_constraints"}]
    async def fetchval(self, sql, *args):
        return True
    def transaction(self, readonly=False):
        return self
    async def execute(self, sql):
        pass
    async def __aenter__(self):
        return self
    async def __aexit__(self, *exc):
        pass

@pytest.fixture
def db():
    return Conn()

@pytest.fixture(scope="session")
def release():
    from deploycheck.infra.release import Checkout
    return Checkout("bot", "python3")
''')
    result = project.runpytest("--target", "embedded", "tests/deploy/test_update.py", "-k", "migration_file")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*without a success row in schema_migrations:*002_next.sql*"])


def test_inactive_bot_fails_1_2_and_10_2(window_project, copy_tests):
    copy_tests("preflight/test_environment.py")
    window_project.makeconftest('pytest_plugins = ["deploycheck.pytest_plugin"]\nLINES = []\nREADY = True\n' + STUB_SERVICE
                         + "\nStub.is_active = lambda self: False\nStub.status = lambda self: 'failed'\n")
    result = window_project.runpytest("--target", "embedded", "tests", "-k", "bot_is_running or service_active")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*stub bot is 'failed', expected active (running)*",
                                 "*stub bot is 'failed' after the start, expected active*"])
