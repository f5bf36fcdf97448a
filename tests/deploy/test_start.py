"""Step 5, start the bot and verify (10.1-10.5): started, active, clean logs, ready, downtime measured."""
from datetime import datetime, timezone

import pytest

from deploycheck.checks import window as deploy
from deploycheck.infra.service import READY_PATTERN, wait_until

READY_WITHIN = 120  # the checklist's "wait 2 minutes for full startup", polled rather than slept


def started_at(recorded) -> datetime:
    started = recorded("10.1")  # a start done by hand is attested: its time is the attestation's
    return datetime.fromisoformat(started.get("Started At") or started["Attested At"])


@pytest.mark.item("10.1")
async def test_start_bot_service(service, release, recorded, evidence):
    sending = recorded("6.3").get("Broadcast")
    if sending:  # no maintenance notice once the bot is back
        evidence["Maintenance Broadcast"] = await sending.stop()
    evidence.update(service.use(release, why="10.1: the release"))  # a Docker shop's compose file names it now
    evidence["Started At"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    await service.start()


@pytest.mark.item("10.2")
async def test_service_active(service, release, evidence):
    active = await wait_until(service.is_active, timeout=15)
    evidence["Service State"] = service.status()
    assert active, f"{service.name} is {service.status()!r} after the start, expected active: read its logs (10.3)"
    running = service.running_image()
    evidence.update(running)
    if running:  # a Docker shop: the container must run the release, not an image a moved tag names
        assert running["Image Id"] == release.image, (
            f"the container runs {running['Image Id']}, not the release image {release.where}: its compose file "
            f"names {running['Image']!r}; set it to the release and recreate the container")


@pytest.mark.item("10.3")
async def test_startup_logs_clean(service, recorded, evidence):
    since = started_at(recorded)
    await wait_until(lambda: any(READY_PATTERN.search(l.text) for l in service.logs(since)), timeout=30)
    lines = service.logs(since)
    errors = [l.text for l in lines if l.level == "ERROR"]
    evidence.update({"Log Lines": len(lines), "Errors": len(errors), "First Errors": errors[:5]})
    assert lines, f"{service.name} has logged nothing since its start: is it running and logging?"
    assert not errors, f"{len(errors)} ERROR line(s) since the start, first: {errors[:3]}"


@pytest.mark.item("10.4")
async def test_ready_within_two_minutes(service, recorded, evidence):
    since = started_at(recorded)
    try:
        await service.wait_ready(since, READY_WITHIN)
    except Exception as exc:  # the service says why: its exit and last log lines, or the wait that ran out
        pytest.fail(f"the bot did not come back: {exc}", pytrace=False)
    evidence["Ready At"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@pytest.mark.item("10.5")
async def test_downtime_end_recorded(recorded, db, evidence):
    evidence["Database Bytes"] = await db.fetchval("SELECT pg_database_size(current_database())")  # for 15.5
    began, ready = recorded("6.4"), recorded("10.4")
    seconds = (datetime.fromisoformat(ready["Ready At"]) - datetime.fromisoformat(began["Downtime Started"])).total_seconds()
    preflight = recorded("5.3")
    evidence.update({"Downtime Ended": ready["Ready At"], "Total Downtime": f"{seconds / 60:.2f} minutes",
                     "Total Downtime Seconds": round(seconds, 1),
                     "Predicted (preflight, 5.3)": preflight.get("Predicted Downtime Seconds"),
                     "Measured vs Predicted": deploy.prediction_error(preflight.get("Predicted Downtime Seconds"), seconds),
                     "Predicted (migration, preflight)": preflight.get("Predicted Downtime (migration)")})
