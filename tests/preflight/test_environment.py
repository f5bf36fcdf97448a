"""Environment preparation (1.1, 1.2, 1.4, 1.5) and the maintenance message (2.3)."""
from datetime import datetime, timedelta, timezone

import pytest

from deploycheck.checks import environment, monitor


@pytest.mark.item("1.1")
def test_production_environment_access(host, bot_dir, evidence):
    evidence.update(environment.check_host(host, bot_dir))


@pytest.mark.item("1.2")
async def test_bot_is_running(service, evidence):
    state = service.status()
    evidence["Service State"] = state
    evidence.update(service.running_image())  # a Docker shop's: the previous release a rollback goes back to
    since = datetime.now(timezone.utc) - timedelta(hours=24)
    # The error rate before the release: monitoring (15.2, 15.6) compares with it.
    evidence["Errors Per Hour"] = round(monitor.errors_per_hour(service.logs(since), since), 2)
    assert service.is_active(), (f"{service.name} is {state!r}, expected active (running): find out why "
                                 "before the window (logs), and start it")


@pytest.mark.item("1.4")
async def test_disk_space_for_the_backup(db, backup_dir, host, bot_dir, request, evidence):
    size = await db.fetchval("SELECT pg_database_size(current_database())")
    evidence["Database Bytes"] = size  # monitoring (15.5) measures growth from here
    evidence.update(environment.check_disk(backup_dir, size, request.config.option.min_free_gb, host, bot_dir))


@pytest.mark.item("1.5")
def test_python_and_dependencies(host, release, evidence):
    evidence.update(environment.check_python(host, release))


@pytest.mark.item("2.3")
def test_maintenance_message_prepared(maintenance_message, evidence):
    evidence.update(environment.check_message(maintenance_message))
