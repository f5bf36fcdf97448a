"""Step 4, update code and dependencies (9.1-9.3). Each looks first and changes only what needs it. In a Docker
shop the code and its dependencies are in the release image: 9.1 checks the image, 9.3 has nothing to clear."""
from pathlib import Path

import pytest

from deploycheck.checks import window as deploy
from deploycheck.infra.db import readonly


@pytest.mark.item("9.1", observes=True)
def test_dependencies_installed(host, release, execute, evidence):
    problems = deploy.requirement_problems(host, release)
    if release.kind == "image":  # built in: nothing to install here, the image's own list is the evidence
        evidence.update({"Installed In": release.where, "Packages": deploy.installed_packages(host, release)})
    elif problems and execute:
        evidence["pip install"] = "exit %d" % deploy.install_requirements(host, release)
        problems = deploy.requirement_problems(host, release)
    evidence["Unsatisfied"] = problems
    assert not problems, (f"{release.where} does not satisfy the release's requirements.txt:\n  " + "\n  ".join(problems)
                          + ("\nRebuild the release image from its requirements.txt" if release.kind == "image" else
                             f"\nRun `{release.python} -m pip install -r requirements.txt`, or pass --execute"))


@pytest.mark.item("9.2")
async def test_every_migration_file_applied(db, host, release, evidence):
    files = deploy.migration_files(host, release)  # the release's own files (its checkout, or its image)
    async with readonly(db):
        tracked = await db.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        applied = {r["migration_name"] for r in await db.fetch(
            "SELECT migration_name FROM schema_migrations WHERE status = 'success'")} if tracked else set()
    missing = [f for f in files if f not in applied and Path(f).stem not in applied]
    evidence.update({"Migration Files": files, "Not Applied": missing})
    assert not missing, (f"migration file(s) without a success row in schema_migrations: {missing}; "
                         "run each with scripts/run_migration.py")


@pytest.mark.item("9.3", observes=True)
def test_python_cache_cleared(host, release, execute, evidence):
    if release.kind == "image":
        evidence["Not Applicable"] = (f"the code is in {release.where}, made by its build (PYTHONDONTWRITEBYTECODE); "
                                      "no cache of it on the host to clear")
        return
    stale = deploy.stale_caches(host, release)
    if stale and execute:
        deploy.clear_caches(host, stale)
        evidence["Removed"] = len(stale)
        stale = deploy.stale_caches(host, release)
    evidence["Remaining"] = stale[:10]
    assert not stale, (f"{len(stale)} __pycache__ folder(s) or .pyc file(s) remain in {release.folder}, e.g. "
                       f"{stale[:3]}; pass --execute to remove them, or run the checklist's find commands")
