"""Environment checks (1.1-1.5, 2.3): host, disk, the bot's Python, the maintenance message."""
from __future__ import annotations

import json
import shlex
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from deploycheck.checks.backup import prepare_folder
from deploycheck.failure import CheckFailed
from deploycheck.infra.host import BotHost

GB = 1024 ** 3
TELEGRAM_MESSAGE_LIMIT = 4096
MAINTENANCE_MESSAGE = ("🔧 Bot sedang dalam maintenance untuk upgrade sistem.\n"
                       "Estimasi selesai: [TIME]. Terima kasih atas pengertiannya!")
PYTHON_PROBE = ("import json, sys\n"
                "from importlib.metadata import version, PackageNotFoundError\n"
                "try:\n    asyncpg = version('asyncpg')\nexcept PackageNotFoundError:\n    asyncpg = None\n"
                "print(json.dumps({'python': '.'.join(map(str, sys.version_info[:3])), 'asyncpg': asyncpg}))")


def check_host(host: BotHost, bot_dir: str) -> dict:
    """1.1: the host answers a command and the bot directory exists there."""
    result = host.run("uname -n")
    if result.rc != 0:
        raise CheckFailed(f"cannot run commands on the host ({result.stderr.strip() or 'no answer'}); check "
                          "--host (e.g. ssh://user@server) and that you can log in")
    if not host.file(bot_dir).is_directory:
        raise CheckFailed(f"bot directory {bot_dir} not found on {result.stdout.strip()}; "
                          "pass the checkout with --bot-dir")
    return {"Host": result.stdout.strip(), "Bot Directory": bot_dir}


def free_bytes(host: BotHost, path: str) -> int:
    """Free space on the filesystem of `path` on the host (POSIX df, in 1024-byte blocks)."""
    result = host.run(f"df -Pk {shlex.quote(path)} | tail -n 1", timeout=30)
    fields = result.stdout.split()
    if result.rc != 0 or len(fields) < 4 or not fields[3].isdigit():
        raise CheckFailed(f"could not read the free space of {path} on {host.name}: `df -Pk` said "
                          f"{(result.stderr or result.stdout).strip()[-200:]!r}")
    return int(fields[3]) * 1024


def check_disk(folder: Path, database_bytes: int, min_free_gb: float, host: BotHost | None = None,
               bot_dir: str | None = None) -> dict:
    """1.4: room for the backup where pg_dump writes it (--backup-dir, on this machine): at least min_free_gb
    free and twice the database size; and, when the bot's host is another machine, min_free_gb free there too
    (the bot's logs and a local database grow on it)."""
    prepare_folder(folder)  # a folder that cannot take the backup is named here, with what is wrong
    free = shutil.disk_usage(folder).free
    need = max(min_free_gb * GB, 2 * database_bytes)
    evidence = {"Free Space": f"{free / GB:.1f} GB", "Database Size": f"{database_bytes / GB:.2f} GB",
                "Backup Folder": f"{folder} (this machine: pg_dump writes here)"}
    if free < need:
        raise CheckFailed(f"only {free / GB:.1f} GB free on the filesystem of {folder}; need {need / GB:.1f} GB "
                          f"(at least {min_free_gb:g} GB and twice the database's {database_bytes / GB:.2f} GB). "
                          "Free space or choose another --backup-dir", evidence)
    if host is not None and host.remote and bot_dir:
        there = free_bytes(host, bot_dir)
        evidence[f"Free Space On {host.name}"] = f"{there / GB:.1f} GB ({bot_dir})"
        if there < min_free_gb * GB:
            raise CheckFailed(f"only {there / GB:.1f} GB free on {host.name} at {bot_dir}; need {min_free_gb:g} GB "
                              "for the bot's logs and the release: free space there first", evidence)
    return evidence


def check_python(host: BotHost, code) -> dict:
    """1.5: Python 3.10+ and asyncpg in the bot's environment (its venv, or inside the release image)."""
    python = code.python
    result = host.run(code.shell(f"{shlex.quote(python)} -c {shlex.quote(PYTHON_PROBE)}"), timeout=120)
    if result.rc != 0:
        raise CheckFailed(f"cannot run the bot's Python in {code.where}: {result.stderr.strip()[-300:]}; "
                          + ("point --bot-python at the interpreter the service uses" if code.kind == "checkout"
                             else "is it the bot's image?"))
    found = json.loads(result.stdout.strip().splitlines()[-1])
    evidence = {"Python Version": found["python"], "asyncpg Version": found["asyncpg"] or "missing",
                "Checked In": code.where}
    version = tuple(int(part) for part in found["python"].split("."))
    if version < (3, 10):
        raise CheckFailed(f"the bot's Python is {found['python']}; v0.7.0 needs 3.10 or newer", evidence)
    if not found["asyncpg"]:
        raise CheckFailed(f"asyncpg is not installed in {code.where}; "
                          + ("run pip install -r requirements.txt there" if code.kind == "checkout"
                             else "rebuild the image from the release's requirements.txt"), evidence)
    return evidence


def maintenance_message(configured: str | None, rehearsal: bool, minutes: int = 20) -> str:
    """The configured message; a rehearsal fills the checklist's own text with an end time."""
    if configured:
        return configured
    if rehearsal:
        end = datetime.now(timezone.utc) + timedelta(minutes=minutes)
        return MAINTENANCE_MESSAGE.replace("[TIME]", f"{end:%H:%M} UTC")
    return ""


def check_message(text: str) -> dict:
    """2.3: the message is set, its placeholder filled, and it fits one Telegram message."""
    if not text.strip():
        raise CheckFailed("no maintenance message configured; pass --maintenance-message with the text users "
                          "will get (the checklist's 2.3 has a template)")
    if "[TIME]" in text:
        raise CheckFailed("the maintenance message still says [TIME]: fill in the expected end time")
    if len(text) > TELEGRAM_MESSAGE_LIMIT:
        raise CheckFailed(f"the maintenance message has {len(text)} characters; one Telegram message holds "
                          f"{TELEGRAM_MESSAGE_LIMIT}")
    return {"Maintenance Message": text}
