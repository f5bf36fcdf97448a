"""The window (6.x, 7.x, 9.x, 10.x): who is still connected, which database the migration will touch,
the runner's output, the bot's requirements and caches; and what is done before it to keep it short
(3.3+indexes: the migration's plain indexes built CONCURRENTLY while the old bot runs)."""
from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import time

from datetime import datetime, timezone

import asyncpg

from deploycheck.failure import CheckFailed
from deploycheck.infra.db import readonly
from deploycheck.infra.dsn import Dsn
from deploycheck.infra.host import BotHost, HostTimeout
from deploycheck.infra.service import Service, ServiceError
from deploycheck.infra.targets import live_dsn
from deploycheck.telegram.broadcast import broadcast

POSTGRES_VARS = ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD")
RUNNER_TIMEOUT = 3600
REQUIREMENTS_PROBE = r"""
import json, sys
from importlib.metadata import version, PackageNotFoundError
try:
    from packaging.requirements import Requirement
except ImportError:  # pip vendors packaging; a bot's virtualenv nearly always has pip
    from pip._vendor.packaging.requirements import Requirement
problems = []
for line in sys.stdin.read().splitlines():
    line = line.split("#")[0].strip()
    if not line or line.startswith("-"):
        continue
    req = Requirement(line)
    if req.marker and not req.marker.evaluate():
        continue
    try:
        found = version(req.name)
    except PackageNotFoundError:
        problems.append(f"{req.name} is not installed (wanted {req.specifier or 'any version'})")
        continue
    if req.specifier and not req.specifier.contains(found, prereleases=True):
        problems.append(f"{req.name} {found} does not satisfy {req.specifier}")
print(json.dumps(problems))
"""


def migration_env(rehearsal: bool, target_dsn: str, shop: dict | None = None) -> dict[str, str]:
    """The variables of step 7.1: the operator's own against live, else those of the shop's own DATABASE_URL
    (a Docker shop's bot.env: its runner reads POSTGRES_* only); derived from the target in a rehearsal."""
    if not rehearsal:
        own = {k: os.environ[k] for k in (*POSTGRES_VARS, "DATABASE_URL") if k in os.environ}
        if own or not (shop or {}).get("DATABASE_URL"):
            return own
        return {**Dsn.parse(shop["DATABASE_URL"]).postgres_env(), "DATABASE_URL": shop["DATABASE_URL"]}
    # The URL holds them percent-encoded; the variables hold them as they are (the runner does not decode).
    return Dsn.parse(target_dsn).postgres_env()


def migration_dsn(env: dict) -> str | None:
    """The database the runner will migrate: like scripts/run_migration.py, POSTGRES_* before DATABASE_URL
    (the bot itself prefers DATABASE_URL: 7.2 must check what the runner will touch)."""
    return live_dsn({k: v for k, v in env.items() if k != "DATABASE_URL"}) or live_dsn(env)


async def identity(conn: asyncpg.Connection) -> dict:
    """What makes a database this database: the cluster's system identifier (when we may read it), the
    database's oid and name, and the server's address."""
    async with readonly(conn):
        row = await conn.fetchrow("SELECT d.oid::bigint AS oid, current_database() AS name, "
                                  "host(inet_server_addr()) AS address, inet_server_port() AS port "
                                  "FROM pg_database d WHERE d.datname = current_database()")
    found = dict(row)
    try:
        async with readonly(conn):
            found["system_identifier"] = str(await conn.fetchval(
                "SELECT system_identifier FROM pg_control_system()"))
    except asyncpg.InsufficientPrivilegeError:
        found["system_identifier"] = None  # needs pg_monitor or superuser; the oid and address still tell
    return found


def same_database(before: dict, now: dict) -> list[str]:
    keys = ["name", "oid"] + (["system_identifier"] if before.get("system_identifier") and
                              now.get("system_identifier") else ["address", "port"])
    return [f"{k}: preflight backed up {before.get(k)!r}, the migration's variables point at {now.get(k)!r}"
            for k in keys if str(before.get(k)) != str(now.get(k))]


async def other_sessions(conn: asyncpg.Connection, bot_user: str | None = None) -> list[dict]:
    """Client sessions on this database that are not ours: after 6.1, the bot's should all be gone."""
    sql = ("SELECT pid, usename, application_name, client_addr::text AS client, state, "
           "now() - backend_start AS connected FROM pg_stat_activity "
           "WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
           "AND application_name NOT LIKE 'deploycheck%'")
    args = []
    if bot_user:
        sql += " AND usename = $1"
        args.append(bot_user)
    async with readonly(conn):
        rows = await conn.fetch(sql, *args)
    return [{k: str(v) if v is not None else None for k, v in r.items()} for r in rows]


async def recipients(conn: asyncpg.Connection) -> list[int]:
    """Users who can still be messaged: not blocked by the shop and not having blocked the bot
    (columns the bot adds at run time; a database where it never ran has none of them)."""
    async with readonly(conn):
        columns = {r["column_name"] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")}
        conditions = [f"NOT coalesce({c}, false)" for c in ("is_blocked", "bot_blocked") if c in columns]
        where = " WHERE " + " AND ".join(conditions) if conditions else ""
        return [r["telegram_id"] for r in await conn.fetch(f"SELECT telegram_id FROM users{where} ORDER BY id")]


ANSWER = "yes"   # what a runner that asks "Continue? (yes/no)" is told, in a rehearsal or under --execute
PROMPT = re.compile(r"[^\n]*(?:\(yes/no\)|\[y/N\]|\[Y/n\]|\(y/n\))[^\n]*", re.I)


def runner_prompt(output: str) -> str | None:
    """The question the runner asked on standard input, if it asked one (bot-auto-order's runner does)."""
    found = PROMPT.search(output)
    return found.group(0).strip() if found else None


SETTINGS_END = "--deploycheck-settings-end--"


def runner_input(env: dict, answer: str | None) -> str:
    """The runner's settings, one NAME=value a line up to SETTINGS_END, then its answers: through standard
    input, never on a command line (the host's `ps` shows command lines to every user there)."""
    bad = [k for k, v in env.items() if "\n" in str(v) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
    if bad:
        raise CheckFailed(f"{', '.join(bad)}: a variable name or value the runner cannot be given (a line break?)")
    settings = "".join(f"{k}={v}\n" for k, v in env.items() if v is not None)
    return settings + SETTINGS_END + "\n" + (f"{answer}\n" * 3 if answer else "")  # asked again: same answer


def runner_command(python: str, bot_dir: str, migration: str, runner: str, extra: tuple[str, ...]) -> str:
    """Step 7.3 as the checklist types it, in the bot directory: none of the host's own POSTGRES_* or
    DATABASE_URL, then the settings read from standard input; the rest of the input is the runner's."""
    argv = " ".join(shlex.quote(a) for a in (python, runner, migration, *extra))
    return (f"unset {' '.join((*POSTGRES_VARS, 'DATABASE_URL'))}; "
            f"while IFS= read -r line && [ \"$line\" != {SETTINGS_END} ]; do export \"$line\"; done; "
            f"cd {shlex.quote(bot_dir)} && exec {argv} 2>&1")


async def run_migration(host: BotHost, code, migration: str, runner: str, env: dict, redact,
                        extra: tuple[str, ...] = (), answer: str | None = ANSWER) -> tuple[int, str, float]:
    """Step 7.3 where the release's code is (infra.release: the checkout on the bot's host with the bot's
    Python, or a container of the release image), in its folder, as the checklist does it; returns exit code,
    output, seconds (an ssh login or a container's start included: about a second).
    A runner that asks for confirmation gets `answer` on its standard input (only ever called where the
    migration may run: a rehearsal, a scratch copy, or --execute); None gives it no answer."""
    began = time.monotonic()
    command = code.shell(runner_command(code.python, code.folder, migration, runner, extra))
    try:
        result = await asyncio.to_thread(host.run, command, RUNNER_TIMEOUT, runner_input(env, answer))
    except HostTimeout as exc:
        return -1, f"the runner was ended: {exc}", time.monotonic() - began
    return result.rc, redact(result.stdout + result.stderr), time.monotonic() - began


async def applied_migration(conn: asyncpg.Connection, migration: str) -> dict | None:
    """schema_migrations' row for a migration file (by name or stem): how a window done by hand is measured."""
    from pathlib import PurePath
    name = PurePath(migration).name
    async with readonly(conn):
        if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
            return None
        row = await conn.fetchrow("SELECT migration_name, status, executed_at, execution_time_ms, error_message "
                                  "FROM schema_migrations WHERE migration_name IN ($1, $2) "
                                  "ORDER BY executed_at DESC LIMIT 1", name, PurePath(name).stem)
    return dict(row) if row else None


def error_lines(output: str, limit: int = 5) -> list[str]:
    """The server's own error lines in a runner's output, first: they are the cause (psql's `ERROR:`, a
    traceback's `...Error:`, this release's runner's `[error]` lines)."""
    return [line.strip() for line in output.splitlines()
            if re.search(r"\bERROR\b|\berror:|Error:|^\[error\]", line)][:limit]


def summary_of(output: str) -> dict:
    """The runner's --json summary: its last line that is a JSON object (empty if there is none)."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def output_errors(output: str, exit_code: int) -> str | None:
    """7.4's "No errors reported", from the runner's exit code and its error lines, whatever its format (the
    rest of 7.4 is measured in the database: checks.review)."""
    errors = [line for line in output.splitlines() if re.search(r"\bERROR\b|Traceback", line)]
    return None if exit_code == 0 and not errors else f"exit code {exit_code}; " + " | ".join(errors[:3])


async def stop_and_confirm(service: Service) -> dict:
    """Stop the bot (6.1, 16.1) and see it stopped; what an operator types, then checks."""
    try:
        await service.stop()
    except ServiceError as exc:
        raise CheckFailed(str(exc)) from None
    if service.is_active():
        raise CheckFailed(f"{service.name} is still {service.status()!r} after the stop")
    return {"Stopped At": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}  # 10.5 measures from it


def requirement_problems(host: BotHost, code) -> list[str]:
    """9.1: what in the release's requirements.txt its environment (the venv, or the image) does not satisfy."""
    command = code.shell(f"cd {shlex.quote(code.folder)} && {shlex.quote(code.python)} -c "
                         f"{shlex.quote(REQUIREMENTS_PROBE)} < requirements.txt")
    result = host.run(command, timeout=120)
    if result.rc != 0:
        raise CheckFailed(f"could not check requirements.txt with {code.where}: {result.stderr.strip()[-300:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def installed_packages(host: BotHost, code) -> list[str]:
    """What the release's environment holds (`pip freeze`): 9.1's evidence for an image, where it is fixed."""
    result = host.run(code.shell(f"{shlex.quote(code.python)} -m pip freeze --all 2>/dev/null"), timeout=120)
    return result.stdout.split() if result.rc == 0 else []


def install_requirements(host: BotHost, code) -> int:
    """9.1 with --execute: pip install -r requirements.txt in the bot's environment; its exit code."""
    return host.run(f"cd {shlex.quote(code.folder)} && {shlex.quote(code.python)} -m pip install -r requirements.txt",
                    timeout=900).rc


def migration_files(host: BotHost, code) -> list[str]:
    """9.2: the release's migration files, as its checkout (or image) has them."""
    folder = f"{code.folder.rstrip('/')}/scripts/migrations"
    result = host.run(code.shell(f"cd {shlex.quote(folder)} || exit 1; "
                                 "for f in *.sql; do [ -f \"$f\" ] && echo \"$f\"; done; true"), timeout=120)
    if result.rc != 0:
        raise CheckFailed(f"could not list {folder} in {code.where} on {host.name}: {result.stderr.strip()[-300:]}")
    return sorted(line for line in result.stdout.splitlines() if line)


def stale_caches(host: BotHost, code) -> list[str]:
    """9.3: __pycache__ folders and .pyc files under the bot directory (outside virtualenvs)."""
    command = (f"find {shlex.quote(code.folder)} \\( -name venv -o -name .venv -o -name .git \\) -prune -o "
               "\\( -type d -name __pycache__ -print \\) -o \\( -type f -name '*.pyc' -print \\)")
    result = host.run(command, timeout=60)
    if result.rc != 0:
        raise CheckFailed(f"could not search {code.folder}: {result.stderr.strip()[-300:]}")
    return [line for line in result.stdout.splitlines() if line]


def update_dependencies(host: BotHost, code, execute: bool) -> dict:
    """9.1: the release's requirements satisfied where it runs. A checkout's venv gets `pip install -r` with
    --execute; an image's dependencies are built in: its own package list is the evidence, nothing is installed."""
    problems, evidence = requirement_problems(host, code), {}
    if code.kind == "image":
        evidence.update({"Installed In": code.where, "Packages": installed_packages(host, code)})
    elif problems and execute:
        evidence["pip install"] = "exit %d" % install_requirements(host, code)
        problems = requirement_problems(host, code)
    evidence["Unsatisfied"] = problems
    if problems:
        raise CheckFailed(f"{code.where} does not satisfy the release's requirements.txt:\n  " + "\n  ".join(problems)
                          + ("\nRebuild the release image from its requirements.txt" if code.kind == "image" else
                             f"\nRun `{code.python} -m pip install -r requirements.txt`, or pass --execute"), evidence)
    return evidence


def clear_python_cache(host: BotHost, code, execute: bool) -> dict:
    """9.3: no stale __pycache__ in a checkout (removed with --execute); not applicable to an image, said so."""
    if code.kind == "image":
        return {"Not Applicable": f"the code is in {code.where}, made by its build (PYTHONDONTWRITEBYTECODE); no "
                                  "cache of it on the host to clear"}
    stale, evidence = stale_caches(host, code), {}
    if stale and execute:
        clear_caches(host, stale)
        evidence["Removed"] = len(stale)
        stale = stale_caches(host, code)
    evidence["Remaining"] = stale[:10]
    if stale:
        raise CheckFailed(f"{len(stale)} __pycache__ folder(s) or .pyc file(s) remain in {code.folder}, e.g. "
                          f"{stale[:3]}; pass --execute to remove them, or run the checklist's find commands", evidence)
    return evidence


def clear_caches(host: BotHost, paths: list[str]) -> None:
    for path in paths:
        host.run(f"rm -rf -- {shlex.quote(path)}")


# The window besides the migration, as the rehearsal measures it (benchmarks/bench_phases.py, 2 cores): the stop
# and its check (0.2 s), the notice's first deliveries (0.2 s), the checks between the steps (1 to 1.5 s) and the
# bot's start to ready (1 s). 5.3 adds it to the migration timed on the restored copy.
WINDOW_BESIDES_MIGRATION = 2.5
# The copy migrates on a fresh restore with the server to itself; in the window the database shares it with its
# own background work (checkpoints after preflight's restore, autovacuum): rehearsals at a million contents
# measured the window's migration 0 to 30% slower than the copy's, 15% on average.
BUSIER_IN_THE_WINDOW = 1.15


def predicted_window(migration_seconds: float) -> dict:
    """5.3's prediction of the downtime (stop to ready) from the migration's time on the restored copy."""
    migration = migration_seconds * BUSIER_IN_THE_WINDOW
    total = migration + WINDOW_BESIDES_MIGRATION
    return {"Predicted Downtime": f"{total:.1f} s (the migration {migration:.1f} s: {migration_seconds:.1f} s on the "
                                  f"restored copy and {BUSIER_IN_THE_WINDOW - 1:.0%} for a busier server; "
                                  f"{WINDOW_BESIDES_MIGRATION:g} s for the stop, the notice's first deliveries, the "
                                  "checks between the steps and the bot's start)",
            "Predicted Downtime Seconds": round(total, 1)}


def prediction_error(predicted: float | None, measured: float) -> str:
    """10.5: how far the window was from 5.3's prediction, e.g. "+12% (9.0 s measured, 8.0 s predicted)"."""
    if not predicted:
        return "no prediction recorded (5.3)"
    return f"{(measured - predicted) / predicted:+.0%} ({measured:.1f} s measured, {predicted:.1f} s predicted)"


CONFIRMED = 5   # deliveries that show the notice gets through (6.3 waits for them, not for the whole list)
RATE_SAMPLE = 20  # sends before a failure rate says anything (one failure among the first few is one chat)


class MaintenanceBroadcast:
    """6.3's message to every user, sent in the background at Telegram's pace while the migration runs (50,000
    users take half an hour at 25 a second: longer than the window). 10.1 stops it before the bot is back,
    when a maintenance notice would be wrong."""

    def __init__(self, base_url: str, token: str, chats: list, text: str, rate: float = 25):
        self.recipients = len(chats)
        self.counts: dict = {}
        self.task = asyncio.create_task(broadcast(base_url, token, chats, text, rate=rate, timeout=3 * 3600,
                                                  counts=self.counts))

    async def settle(self, seconds: float, confirmed: int = CONFIRMED) -> None:
        """Wait until `confirmed` messages are delivered, Telegram answers a send with an error, or the broadcast
        ends: that shows whether the notice gets through, and the window need not wait longer (the rest goes
        out during the migration). `seconds` bounds the wait when Telegram answers nothing."""
        deadline = time.monotonic() + seconds
        while not self.task.done() and (left := deadline - time.monotonic()) > 0:
            if self.counts.get("delivered", 0) >= confirmed or self.counts.get("failed", 0):
                return
            await asyncio.wait({self.task}, timeout=min(0.02, left))

    def tally(self) -> dict:
        sent = sum(self.counts.values())
        return {"Recipients": self.recipients, "Delivered": self.counts.get("delivered", 0),
                "Failed": self.counts.get("failed", 0), "Blocked": self.counts.get("blocked", 0),
                "Not Sent Yet": self.recipients - sent}

    def problem(self) -> str | None:
        """Why the notice is not getting through: the broadcast stopped with an error, the first sends failed
        before any was delivered, too many sends fail, or Telegram answered none of them."""
        if self.task.done() and not self.task.cancelled() and self.task.exception():
            return str(self.task.exception())
        failed, delivered = self.counts.get("failed", 0), self.counts.get("delivered", 0)
        attempted = sum(self.counts.values())
        if failed and not delivered:
            return f"Telegram refused the first message{'s' if failed > 1 else ''} ({failed} failed, none delivered)"
        if attempted >= RATE_SAMPLE and failed > 0.05 * attempted:
            return f"{failed} of {attempted} messages failed (users who blocked the bot not counted)"
        if not attempted and self.recipients:
            return "Telegram answered no message in time"
        return None

    async def stop(self) -> dict:
        if not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        return self.tally()


# ---------------------------------------------------------------------------- before the window (3.3+indexes)
# The migration's plain `CREATE INDEX IF NOT EXISTS name ON table ...;` statements, at the start of a line (not
# in a DO body). Not UNIQUE ones: a unique index built early could refuse the old bot's writes, and dirty data
# is only cleaned in the window.
PLAIN_INDEX = re.compile(r"^CREATE\s+INDEX\s+IF\s+NOT\s+EXISTS\s+(\w+)\s+ON\s+(?:ONLY\s+)?(\w+)\b[^;]*;", re.I | re.M)
PREWINDOW_SETTINGS = {"lock_timeout": "5s", "statement_timeout": "30min", "maintenance_work_mem": "256MB"}


def plain_indexes(migration_sql: str) -> list[tuple[str, str, str]]:
    """(index, table, statement) for each plain index the migration creates."""
    return [(m[1], m[2], m[0]) for m in PLAIN_INDEX.finditer(migration_sql)]


async def index_valid(conn: asyncpg.Connection, name: str) -> bool | None:
    """None when there is no such index in the current schema; else whether it is valid and ready."""
    return await conn.fetchval(
        "SELECT i.indisvalid AND i.indisready FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace", name)


async def build_before_window(conn: asyncpg.Connection, migration_sql: str, build: bool) -> tuple[list, list]:
    """3.3+indexes: each plain index of the migration, built with CREATE INDEX CONCURRENTLY (writes go on while
    it builds) unless it is there and valid; an invalid one (an interrupted concurrent build, which the
    migration's IF NOT EXISTS would keep) is dropped and built again. With build False it only looks.
    Returns (rows for the evidence, problems); an index on a table or column the migration itself adds is
    left to the window."""
    rows, problems = [], []
    for name, value in PREWINDOW_SETTINGS.items():  # this connection only (the fixture's, closed afterwards)
        await conn.execute(f"SELECT set_config('{name}', $1, false)", value)
    for name, table, statement in plain_indexes(migration_sql):
        state = await index_valid(conn, name)
        if state:
            rows.append({"Index": name, "State": "valid"})
            continue
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            rows.append({"Index": name, "State": f"left to the window: no table {table} before the migration"})
            continue
        if not build:
            problems.append(f"{name} is {'INVALID' if state is False else 'not built'}")
            rows.append({"Index": name, "State": "invalid" if state is False else "missing"})
            continue
        began = time.monotonic()
        try:
            if state is False:
                await conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
            await conn.execute(re.sub(r"^CREATE\s+INDEX", "CREATE INDEX CONCURRENTLY", statement, count=1, flags=re.I))
        except asyncpg.UndefinedColumnError as exc:
            rows.append({"Index": name, "State": f"left to the window: {exc}"})
            continue
        except (asyncpg.PostgresError, OSError) as exc:
            cause = "lock_timeout: another session holds a lock on the table" if isinstance(
                exc, asyncpg.LockNotAvailableError) else str(exc)
            problems.append(f"{name} was not built: {cause}")
            rows.append({"Index": name, "State": f"not built: {cause}"})
            if await index_valid(conn, name) is False:  # half-built: unusable, and it slows every write
                await conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
            continue
        state = await index_valid(conn, name)
        rows.append({"Index": name, "State": "built, valid" if state else "built, INVALID",
                     "Seconds": round(time.monotonic() - began, 2)})
        if not state:
            problems.append(f"{name} was built but is {'missing' if state is None else 'INVALID'}")
    return rows, problems
