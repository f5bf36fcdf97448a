"""A --backup-dir (or --backup-copy-to) that cannot take the backup is named with what is wrong with it and
what to do, before pg_dump starts: never a raw OSError, FileExistsError or NotADirectoryError."""
from __future__ import annotations

import errno
import tempfile

import pytest

from deploycheck.checks.backup import BackupError, dump, prepare_folder
from deploycheck.infra.embedded import find_bindir

RAW = ("Errno", "OSError", "FileExistsError", "NotADirectoryError", "Traceback")


def refused(folder, option="--backup-dir") -> str:
    with pytest.raises(BackupError) as raised:
        prepare_folder(folder, option)
    message = str(raised.value)
    assert not any(raw in message for raw in RAW), message
    return message


def test_a_missing_folder_is_created(tmp_path):
    assert prepare_folder(tmp_path / "a" / "b").is_dir()


def test_a_file_given_as_the_folder(tmp_path):
    (tmp_path / "backups").write_text("not a folder")
    message = refused(tmp_path / "backups")
    assert f"--backup-dir {tmp_path / 'backups'}: {tmp_path / 'backups'} is a file, not a folder" in message
    assert "Give a folder" in message


def test_a_folder_under_a_file(tmp_path):
    (tmp_path / "backups").write_text("not a folder")
    message = refused(tmp_path / "backups" / "v070", "--backup-copy-to")
    assert message.startswith(f"--backup-copy-to {tmp_path / 'backups' / 'v070'}: {tmp_path / 'backups'} is a file")


@pytest.mark.parametrize("code, says", [(errno.EROFS, "is on a read-only file system"),
                                        (errno.ENOSPC, "is on a full disk"),
                                        (errno.EACCES, "is not writable by this user")])
def test_a_folder_that_cannot_be_written(tmp_path, monkeypatch, code, says):
    # This machine has no read-only mount and runs as root: the kernel's answer is simulated at the write.
    def refuse(*args, **kwargs):
        raise OSError(code, "simulated")
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    message = refused(tmp_path)
    assert f"--backup-dir {tmp_path} {says}" in message and "Choose a writable folder" in message


def test_inner_run_fails_1_4_with_the_cause(project, copy_tests, tmp_path):
    """The rehearsal with --backup-dir pointing at a file: 1.4 says so (and 4.1, which needs 1.4, does not run)."""
    copy_tests("preflight/test_environment.py", "preflight/test_backup.py")
    folder = tmp_path / "backups"
    folder.write_text("not a folder")
    result = project.runpytest("-m", "preflight", "--target", "embedded", f"--backup-dir={folder}",
                               "-k", "test_disk_space_for_the_backup or test_full_backup_created", "-p", "no:randomly")
    result.stdout.fnmatch_lines([f"*--backup-dir {folder}: {folder} is a file, not a folder*"])
    assert result.parseoutcomes().get("failed") == 1
    assert not any(raw in result.stdout.str() for raw in RAW)


async def test_dump_names_the_folder_before_pg_dump_runs(fresh_db, tmp_path):
    """4.1 on its own: the dump refuses the folder with the cause (pg_dump never starts)."""
    (tmp_path / "backups").write_text("not a folder")
    with pytest.raises(BackupError, match="is a file, not a folder") as raised:
        await dump(fresh_db, find_bindir() / "pg_dump", tmp_path / "backups" / "backup.dump")
    assert not any(raw in str(raised.value) for raw in RAW)
