"""14.3: the latest schema_migrations row is the release's migration (as it recorded itself on the
rehearsal's copy, or the expected file's), with status success."""
import pytest

from deploycheck.checks import logs
from deploycheck.pytest_plugin.findings import into


@pytest.mark.item("14.3")
async def test_latest_migration_succeeded(db, expected, evidence):
    await into(evidence, logs.check_migration_log(db, expected))
