"""Rollback (16.2, 16.5): put the verified backup back in place, keeping the failed database."""
from __future__ import annotations

from pathlib import Path

from deploycheck.checks import code
from deploycheck.checks.backup import Backup, BackupError, restore, sha256_of
from deploycheck.failure import CheckFailed
from deploycheck.infra.release import Image
from deploycheck.infra.db import connect


def check_unchanged(backup: Backup, recorded_sha256: str | None) -> None:
    """Restore only the file preflight verified (4.2): a backup whose hash changed is refused."""
    path = Path(backup.file)
    if not path.is_file():
        raise BackupError(f"backup file {path} is gone; restore from the copy ({', '.join(backup.copies) or 'none'})")
    if not recorded_sha256:
        raise BackupError("preflight recorded no SHA-256 for the backup (4.2): its integrity cannot be proven")
    found = sha256_of(path)
    if found != recorded_sha256:
        raise BackupError(f"backup {path.name} has SHA-256 {found}, but preflight verified {recorded_sha256}: "
                          "it changed since; do not restore it. Use the copy from 4.4 if its hash matches")


async def restore_in_place(backup: Backup, admin_dsn: str, database: str, pg_restore: Path, stamp: str,
                           drop_and_recreate: bool = False) -> dict:
    """Restore into a new database, then swap names: the failed one stays as <database>_failed_<stamp> for
    investigation. With drop_and_recreate, the checklist's own way: drop first, restore into the name."""
    failed = f"{database}_failed_{stamp}"
    fresh = f"{database}_restore_{stamp}"
    admin = await connect(admin_dsn)
    try:
        if drop_and_recreate:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            fresh, failed = database, None
    finally:
        await admin.close()
    await restore(backup, admin_dsn, fresh, pg_restore)
    if failed:
        admin = await connect(admin_dsn)
        try:
            # The bot is stopped (16.1); whatever else still holds the database would block the rename.
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = $1 AND pid <> pg_backend_pid()", database)
            await admin.execute(f'ALTER DATABASE "{database}" RENAME TO "{failed}"')
            await admin.execute(f'ALTER DATABASE "{fresh}" RENAME TO "{database}"')
        finally:
            await admin.close()
    return {"Restored From": Path(backup.file).name, "Failed Database Kept As": failed or "dropped"}


def missing_rows(backup: Backup, counts: dict[str, int]) -> list[str]:
    """Tables with fewer rows than the backup holds (more is allowed: the bot may have written since);
    `counts` as schema.row_counts() gives them."""
    problems = []
    for table, dumped in sorted(backup.snapshot_counts.items()):
        now = counts.get(table.removeprefix("public."))
        if now is None:
            problems.append(f"{table} is missing")
        elif now < dumped:
            problems.append(f"{table}: {now} rows, the backup has {dumped}")
    return problems


def revert_code(host, service, release, before: dict, running_before: dict) -> dict:
    """16.3: the previous release back where the next start (16.4) takes it from. A checkout goes back to
    preflight's previous commit (3.2); a Docker shop's compose file to the image its container ran at
    preflight (1.2), by id: a tag may have moved since."""
    if release.kind == "image":
        image = running_before.get("Image Id")
        if not image:
            raise CheckFailed("preflight recorded no image the shop ran (1.2): set its compose file's image: back to "
                              "the previous release by hand, then run 16.4")
        previous = Image(image, running_before.get("Image") or image)
        return {"Ref": f"{previous.name} ({image[:19]})", **service.use(previous, why="16.3: the previous release")}
    if not before.get("Previous Commit"):
        raise CheckFailed("preflight recorded no previous commit (3.2): check out the previous release by hand")
    return {"Ref": before.get("Previous Ref"), "Checked Out": code.check_out(host, release.folder,
                                                                          before["Previous Commit"])}
