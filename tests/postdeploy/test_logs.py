"""Log review 14.1 and 14.2: errors and warnings of the last 30 minutes."""
from datetime import datetime, timedelta, timezone

import pytest

from deploycheck.checks import monitor

WARNING_LIMIT = 10  # "should be minimal": more than this in 30 minutes needs a look


@pytest.fixture
def recent(service, recorded, evidence):
    """The last 30 minutes of the log, from the release's start (10.1) when that is later: the previous
    release's lines before the window are not the release's."""
    since = datetime.now(timezone.utc) - timedelta(minutes=30)
    started = recorded("10.1").get("Started At")
    if started and datetime.fromisoformat(started) > since:
        since = datetime.fromisoformat(started)
        evidence["Read Since"] = f"{started} (the release's start, 10.1)"
    return service.logs(since)


@pytest.mark.item("14.1")
def test_no_errors_in_last_30_minutes(recent, evidence):
    errors = [line.text for line in monitor.own_errors(recent)]
    smoke = [line.text for line in recent if line.level == "ERROR" and monitor.provoked(line)]
    evidence.update({"Errors": len(errors), "First Errors": errors[:5], "Provoked By Smoke Tests": smoke[:5]})
    assert not errors, f"{len(errors)} ERROR line(s) in the last 30 minutes, first: {errors[:3]}"


@pytest.mark.item("14.2")
def test_warnings_minimal(recent, evidence):
    warnings = [line.text for line in recent if line.level == "WARNING"]
    evidence.update({"Warnings": len(warnings), "First Warnings": warnings[:5]})
    assert len(warnings) <= WARNING_LIMIT, (f"{len(warnings)} WARNING lines in the last 30 minutes (limit "
                                            f"{WARNING_LIMIT}), first: {warnings[:3]}")
