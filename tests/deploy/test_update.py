"""Step 4, update code and dependencies (9.1-9.3). Each looks first and changes only what needs it."""
from pathlib import Path

import pytest

from deploycheck.checks import window as deploy
from deploycheck.infra.db import readonly


@pytest.mark.item("9.1", observes=True)
def test_dependencies_installed(host, bot_dir, bot_python, execute, evidence):
    requirements = host.file(f"{bot_dir}/requirements.txt")
    assert requirements.exists, f"{bot_dir}/requirements.txt not found: is the release checked out?"
    problems = deploy.requirement_problems(host, bot_python, requirements.content_string)
    if problems and execute:
        evidence["pip install"] = "exit %d" % deploy.install_requirements(host, bot_python, bot_dir)
        problems = deploy.requirement_problems(host, bot_python, requirements.content_string)
    evidence["Unsatisfied"] = problems
    assert not problems, ("the bot's environment does not satisfy requirements.txt:\n  " + "\n  ".join(problems)
                          + f"\nRun `{bot_python} -m pip install -r requirements.txt`, or pass --execute")


@pytest.mark.item("9.2")
async def test_every_migration_file_applied(db, host, bot_dir, evidence):
    files = deploy.migration_files(host, bot_dir)  # the checkout on the bot's host
    async with readonly(db):
        tracked = await db.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        applied = {r["migration_name"] for r in await db.fetch(
            "SELECT migration_name FROM schema_migrations WHERE status = 'success'")} if tracked else set()
    missing = [f for f in files if f not in applied and Path(f).stem not in applied]
    evidence.update({"Migration Files": files, "Not Applied": missing})
    assert not missing, (f"migration file(s) without a success row in schema_migrations: {missing}; "
                         "run each with scripts/run_migration.py")


@pytest.mark.item("9.3", observes=True)
def test_python_cache_cleared(host, bot_dir, execute, evidence):
    stale = deploy.stale_caches(host, bot_dir)
    if stale and execute:
        deploy.clear_caches(host, stale)
        evidence["Removed"] = len(stale)
        stale = deploy.stale_caches(host, bot_dir)
    evidence["Remaining"] = stale[:10]
    assert not stale, (f"{len(stale)} __pycache__ folder(s) or .pyc file(s) remain in {bot_dir}, e.g. {stale[:3]}; "
                       "pass --execute to remove them, or run the checklist's find commands")
