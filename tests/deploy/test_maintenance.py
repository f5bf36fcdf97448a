"""Step 1, enable maintenance mode (6.1-6.4): stop the bot, prove it is gone, tell the users, note the time."""
import asyncio

import pytest

from deploycheck.checks import environment
from deploycheck.infra.catalog import row_counts
from deploycheck.checks import window as deploy
from deploycheck.infra.service import wait_until


@pytest.mark.item("6.1")
async def test_stop_bot_service(service, evidence):
    evidence.update(await deploy.stop_and_confirm(service))


@pytest.mark.item("6.2")
async def test_bot_stopped(service, db, run, request, evidence):
    if {"6.1", "10.1"} <= set(run.attestations):  # the whole window done by hand, checked afterwards
        evidence["Service State"] = (f"not observable after the fact: the stop (6.1) and the start (10.1) were done "
                                     f"by hand and attested; {service.name} is {service.status()!r} now")
        return
    stopped = await wait_until(lambda: not service.is_active(), timeout=30)
    evidence["Service State"] = service.status()
    assert stopped, f"{service.name} is still {service.status()!r} 30 s after the stop: stop it before migrating"
    sessions: list = []
    for _ in range(20):  # a stopped bot's connections close within moments
        sessions = await deploy.other_sessions(db, request.config.option.bot_db_user)
        if not sessions:
            break
        await asyncio.sleep(0.5)
    evidence["Remaining Sessions"] = sessions
    assert not sessions, (f"{len(sessions)} session(s) still connected to the database after the bot stopped: "
                          f"{sessions[:5]}. Stop whatever holds them (or name the bot's database user with "
                          "--bot-db-user to ignore other tools) before migrating")
    # Nothing writes now: these are the counts the migration starts from (8.4), not preflight's days ago.
    evidence["Counted At"] = (await db.fetchval("SELECT now()")).isoformat()
    evidence["tables"] = await row_counts(db)


@pytest.mark.item("6.3")
async def test_maintenance_message_posted(db, recorded, maintenance_message, telegram_api, broadcasts, hand,
                                          evidence):
    text = recorded("2.3").get("Maintenance Message") or maintenance_message
    environment.check_message(text)
    chats = await deploy.recipients(db)
    telegram_api.register(chats)
    for earlier in broadcasts:  # a second deployment in the same run (the rehearsal's redeploy)
        await earlier.stop()
    sending = deploy.MaintenanceBroadcast(telegram_api.base_url, telegram_api.token, chats, text)
    broadcasts.append(sending)
    hand["Broadcast"] = sending  # 10.1 stops it when the bot is back
    # A handful delivered (or Telegram's first error) shows whether it gets through; the rest go out during the
    # migration. 10 s bounds the wait when Telegram answers nothing.
    await sending.settle(10)
    evidence.update(sending.tally())
    problem = sending.problem()
    assert not problem, (f"maintenance message not getting through: {problem}. Check TELEGRAM_BOT_TOKEN and "
                         "Telegram's answers in the log, or inform users by other channels")


@pytest.mark.item("6.4")
def test_downtime_start_recorded(recorded, evidence):
    stopped = recorded("6.1")  # a stop done by hand is attested: its time is the attestation's
    evidence["Downtime Started"] = stopped.get("Stopped At") or stopped["Attested At"]
