"""14.3: the latest schema_migrations row is v0.7.0's migration, with status success."""
import pytest

from deploycheck.checks import logs
from deploycheck.checks.expected import load_expected
from deploycheck.pytest_plugin.findings import into

EXPECTED = load_expected()


@pytest.mark.item("14.3")
async def test_latest_migration_succeeded(db, evidence):
    await into(evidence, logs.check_migration_log(db, EXPECTED))
