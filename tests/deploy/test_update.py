"""Step 4, update code and dependencies (9.1-9.3). Each looks first and changes only what needs it. In a Docker
shop the code and its dependencies are in the release image: 9.1 checks the image, 9.3 has nothing to clear."""
from pathlib import Path

import pytest

from deploycheck.checks import window as deploy
from deploycheck.infra.db import readonly
from deploycheck.pytest_plugin.findings import findings


@pytest.mark.item("9.1", observes=True)
def test_dependencies_installed(host, release, execute, evidence):
    with findings(evidence):
        evidence.update(deploy.update_dependencies(host, release, execute))


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
    with findings(evidence):
        evidence.update(deploy.clear_python_cache(host, release, execute))
