"""Database backup (4.1-4.5): made, verified, restore-tested, copied, documented. Gate: "Backup fails or
cannot be verified"."""
import asyncio
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deploycheck.checks.backup import (Backup, compare_with, dump, prepare_folder, restore, sha256_of,
                                       verify_file)
from deploycheck.infra.targets import client_tool, client_tools
from deploycheck.record.ledger import evidence_path

LARGE = 100 * 1024 ** 2  # above this, pg_dump's progress goes to the terminal


def metadata(backup_dir: Path) -> Path:
    return backup_dir / "backup.json"


def load(backup_dir: Path) -> Backup:
    return Backup.load(metadata(backup_dir))


@pytest.mark.item("4.1")
async def test_full_backup_created(db, target, run, backup_dir, progress, evidence):
    size = await db.fetchval("SELECT pg_database_size(current_database())")
    path = backup_dir / f"backup_v{run.checklist.release}_{datetime.now(timezone.utc):%Y%m%d_%H%M%S}.dump"
    prepare_folder(backup_dir)  # before pg_dump starts: what is wrong with the folder, not a raw OSError
    tools = await client_tools(target)  # of the server's major version: its dump restores into it
    evidence.update(tools.evidence())
    backup = await dump(target.dsn, tools.path("pg_dump"), path, progress if size > LARGE else None)
    backup.timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    backup.save(metadata(backup_dir))
    # the dump's path (inside the deployment folder: relative) and its hash when made: the record rests on it
    evidence.update({"Backup File": evidence_path(path, run.reports_dir), "Backup SHA-256": backup.sha256,
                     "Tables": len(backup.snapshot_counts),
                     "Rows": sum(backup.snapshot_counts.values())})


@pytest.mark.item("4.2")
async def test_backup_file_verified(target, backup_dir, evidence):
    backup = load(backup_dir)
    entries = await verify_file(backup, await client_tool(target, "pg_restore"))
    evidence.update({"SHA-256": backup.sha256, "File Size": backup.size, "Archive Entries": entries})


@pytest.mark.item("4.3")
async def test_backup_restores_equal_to_source(target, run, backup_dir, scratch_databases, hand, evidence):
    backup = load(backup_dir)
    name = run.scratch_name("test_restore_v070")
    evidence["Scratch Database"] = name
    try:
        tools = await client_tools(target)
        evidence.update(tools.evidence())
        hand["Restored Copy"] = copy = await restore(backup, target.admin_dsn, name, tools.path("pg_restore"))
    finally:
        scratch_databases.append(name)  # dropped at the end of the run, after the migration rehearsal used it
    problems = await compare_with(backup, copy)
    evidence.update({"Tables Compared": len(backup.snapshot_counts),
                     "Differences": problems[:10]})
    assert not problems, ("the restored backup is not equal to the database it was taken from:\n  "
                          + "\n  ".join(problems[:20]) + "\nDo not deploy: make and verify a new backup")


@pytest.mark.item("4.4")
async def test_backup_copied_to_safe_location(backup_dir, backup_copy_to, evidence):
    backup = load(backup_dir)
    assert backup_copy_to, "no safe location given: pass --backup-copy-to DIR (another disk, or a mounted store)"
    destination = prepare_folder(backup_copy_to, "--backup-copy-to")
    copy = destination / Path(backup.file).name
    await asyncio.to_thread(shutil.copy2, backup.file, copy)
    copied = await asyncio.to_thread(sha256_of, copy)
    assert copied == backup.sha256, (f"the copy at {copy} has SHA-256 {copied}, the backup {backup.sha256}: "
                                     "the copy is damaged; copy again and check the target's disk")
    backup.copies = sorted(set(backup.copies) | {str(copy)})
    backup.save(metadata(backup_dir))
    evidence.update({"Copy": str(copy), "Copy SHA-256": copied})


@pytest.mark.item("4.5")
def test_backup_details_documented(backup_dir, evidence):
    backup = load(backup_dir)
    evidence.update({"Backup File": Path(backup.file).name, "File Size": f"{backup.size / 1024 ** 2:.2f} MB",
                     "Timestamp": backup.timestamp, "Location": ", ".join([str(Path(backup.file).parent),
                                                                           *backup.copies])})
    assert backup.copies, "the backup has no copy in a safe location yet (4.4)"
