"""Rollback (16.1-16.7): only if critical issues are found. Every action needs --execute against live;
the verification (16.5) also runs alone, after a rollback done by hand."""
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deploycheck.checks import code

from deploycheck.checks import rollback

from deploycheck.checks import smoke
from deploycheck.checks.backup import Backup, BackupError
from deploycheck.checks.window import identity
from deploycheck.infra.catalog import diff, row_counts, snapshot
from deploycheck.infra.service import stop_and_confirm
from deploycheck.infra.pgtools import ToolsError
from deploycheck.infra.targets import client_tool
from deploycheck.telegram.broadcast import BroadcastError, broadcast
from deploycheck.rehearsal.refbot import REHEARSAL_ADMIN_ID

TELEGRAM = "https://api.telegram.org"


def the_backup(backup_dir: Path) -> Backup:
    try:
        return Backup.load(backup_dir / "backup.json")
    except BackupError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.mark.item("16.1")
async def test_stop_bot_immediately(service, evidence):
    evidence.update(await stop_and_confirm(service))


@pytest.mark.item("16.2")
async def test_restore_database_from_backup(target, run, backup_dir, recorded, request, evidence):
    backup = the_backup(backup_dir)
    try:
        rollback.check_unchanged(backup, (recorded("4.2") or {}).get("SHA-256"))
        done = await rollback.restore_in_place(backup, target.admin_dsn, target.dsn.rsplit("/", 1)[1].split("?")[0],
                                               await client_tool(target, "pg_restore"), run.stamp.lower(),
                                               request.config.option.drop_and_recreate)
    except (BackupError, ToolsError) as exc:
        pytest.fail(f"rollback restore refused or failed: {run.redactor.text(str(exc))}", pytrace=False)
    evidence.update(done)


@pytest.mark.item("16.3")
def test_revert_code_changes(host, bot_dir, recorded, evidence):
    previous = (recorded("3.2") or {}).get("Previous Commit")
    assert previous, "preflight recorded no previous commit (3.2): check out the previous release by hand"
    result = code.git(host, bot_dir, "checkout", "--quiet", previous)
    assert result.rc == 0, (f"the checkout cannot go back to {previous[:12]}: {result.stderr.strip()[-400:]}; "
                            "resolve it (local changes?) and check out the previous release by hand")
    head = code.output(host, bot_dir, "rev-parse", "HEAD")
    evidence.update({"Checked Out": head, "Ref": (recorded("3.2") or {}).get("Previous Ref")})
    assert head == previous, f"HEAD is {head[:12]} after the checkout, expected {previous[:12]}"


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
    before = (recorded("5.1") or {}).get("schema")
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
async def test_team_notified(run, fake_bot_api, recorded, evidence):
    admins = [REHEARSAL_ADMIN_ID] if run.rehearsal else json.loads(os.environ.get("TELEGRAM_ADMIN_IDS") or "[]")
    admins = admins if isinstance(admins, list) else [admins]
    assert admins, "TELEGRAM_ADMIN_IDS is not set: notify the team by hand and attest it (--attest 16.6=...)"
    ref = (recorded("16.3") or {}).get("Ref") or "the previous release"
    text = f"⚠️ v{run.checklist.release} rolled back ({run.deployment_id}): database restored, bot back on {ref}."
    base, token = ((fake_bot_api.url, fake_bot_api.token) if run.rehearsal
                   else (TELEGRAM, os.environ.get("TELEGRAM_BOT_TOKEN", "")))
    try:
        counts = await broadcast(base, token, admins, text, timeout=60)
    except BroadcastError as exc:
        pytest.fail(f"team not notified: {exc}", pytrace=False)
    evidence.update({"Notified": counts["delivered"], "Message": text})
    assert counts["delivered"] == len(admins), f"only {counts['delivered']} of {len(admins)} admins got the message"
