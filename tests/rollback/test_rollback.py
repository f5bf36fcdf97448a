"""Rollback (16.1-16.7): only if critical issues are found. Every action needs --execute against live;
the verification (16.5) also runs alone, after a rollback done by hand."""
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deploycheck.checks import rollback, smoke
from deploycheck.checks.backup import Backup
from deploycheck.checks.window import identity, stop_and_confirm
from deploycheck.infra.catalog import diff, row_counts, snapshot
from deploycheck.infra.db import connect
from deploycheck.infra.targets import client_tool
from deploycheck.pytest_plugin.findings import findings
from deploycheck.telegram.broadcast import broadcast


def the_backup(backup_dir: Path) -> Backup:
    return Backup.load(backup_dir / "backup.json")


@pytest.mark.item("16.1")
async def test_stop_bot_immediately(service, evidence):
    evidence.update(await stop_and_confirm(service))


@pytest.mark.item("16.2")
async def test_restore_database_from_backup(target, run, backup_dir, recorded, request, evidence):
    backup = the_backup(backup_dir)
    rollback.check_unchanged(backup, recorded("4.2").get("SHA-256"))
    evidence.update(await rollback.restore_in_place(backup, target.admin_dsn, target.database_name,
                                                    await client_tool(target, "pg_restore"), run.stamp.lower(),
                                                    request.config.option.drop_and_recreate))
    # Restored beside and swapped in: another database from here on. A redeploy's 7.2 checks against this one,
    # whatever 16.5 then finds.
    conn = await connect(target.dsn)
    try:
        evidence["Database Identity"] = await identity(conn)
    finally:
        await conn.close()


@pytest.mark.item("16.3")
def test_revert_code_changes(host, service, release, recorded, evidence):
    with findings(evidence):
        evidence.update(rollback.revert_code(host, service, release, recorded("3.2"), recorded("1.2")))


@pytest.mark.item("16.4")
async def test_start_bot(service, evidence):
    began = datetime.now(timezone.utc)
    try:
        await service.start()
        await service.wait_ready(began, 120)
    except Exception as exc:  # ServiceError or the bot's own start failure: the message says why
        pytest.fail(f"the bot did not come back after the rollback: {exc}", pytrace=False)
    evidence["Ready At"] = datetime.now(timezone.utc).isoformat(timespec="seconds")


@pytest.mark.item("16.5")
async def test_rollback_schema_is_preflights(db, recorded, evidence):
    before = recorded("5.1").get("schema")
    assert before, "preflight recorded no schema snapshot (5.1) for this deployment: compare by hand"
    changes = diff(before, await snapshot(db))
    evidence.update({"Schema Changes": changes, "Database Identity": await identity(db)})
    assert not any(changes.values()), f"the schema is not the one preflight recorded: {json.dumps(changes)[:1500]}"


@pytest.mark.item("16.5")
async def test_rollback_rows_are_the_backups(db, backup_dir, evidence):
    missing = rollback.missing_rows(the_backup(backup_dir), await row_counts(db))
    evidence["Missing Rows"] = missing
    assert not missing, "the restored database lacks rows the backup holds:\n  " + "\n  ".join(missing[:20])


@pytest.mark.item("16.5")
async def test_rollback_bot_answers(bot_user, smoke_options, evidence):
    evidence.update(await smoke.bot_responds(bot_user, smoke_options))


@pytest.mark.item("16.6")
async def test_team_notified(run, admins, telegram_api, recorded, evidence):
    assert admins, "TELEGRAM_ADMIN_IDS is not set: notify the team by hand and attest it (--attest 16.6=...)"
    ref = recorded("16.3").get("Ref") or "the previous release"
    text = f"⚠️ v{run.checklist.release} rolled back ({run.deployment_id}): database restored, bot back on {ref}."
    counts = await broadcast(telegram_api.base_url, telegram_api.token, admins, text, timeout=60)
    evidence.update({"Notified": counts["delivered"], "Message": text})
    assert counts["delivered"] == len(admins), f"only {counts['delivered']} of {len(admins)} admins got the message"
