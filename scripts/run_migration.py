#!/usr/bin/env python3
"""Apply one SQL migration to the bot-auto-order database, all or nothing.

    python3 scripts/run_migration.py scripts/migrations/001_fix_schema_constraints.sql
    python3 scripts/run_migration.py --dry-run --json scripts/migrations/001_fix_schema_constraints.sql
    python3 scripts/run_migration.py --status

Needs only Python 3.10+ and asyncpg (what the bot itself needs). See --help for the behaviour and the
exit codes; the output lines start with a tag ([connect], [tracking], [backup], [cleanup], ...) so a
person can scan them and the deployment suite can check them.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote, urlsplit

try:
    import asyncpg
except ImportError:  # pragma: no cover - depends on the environment
    print("error: asyncpg is not installed; run `pip install asyncpg` (the bot's requirements have it)",
          file=sys.stderr)
    sys.exit(2)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# One key for every runner of this project: a second runner is refused, never queued.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"bot-auto-order:run_migration").digest()[:8], "big", signed=True)
BACKUP_SCHEMA = "migration_backup"
DEADLOCK_TIMEOUT = "100ms"  # how long a lock wait lasts before the autovacuum holding it is cancelled
HERE = Path(__file__).resolve().parent

EPILOG = """\
connection (first match wins):
  --dsn URL                     an explicit database URL
  POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD
                                the checklist's variables (step 7.1), used when POSTGRES_HOST or
                                POSTGRES_DB is set
  DATABASE_URL                  the bot's own setting
  The password is never printed.

what it does:
  Takes an advisory lock (a second runner is refused), then runs the whole file in ONE transaction with
  lock_timeout and statement_timeout set, showing the server's notices as they arrive. Its statements are
  sent one at a time in that transaction and timed: the slowest are listed ([timing] lines), every one is
  in --json's "timings" (by line), and a failure names the statement it stopped at. Before the
  migration it copies the tables named on the file's `-- deploycheck:backup-tables` line into schema
  migration_backup (in the same transaction, so only when the migration really runs). A success row in
  schema_migrations (with the file's SHA-256) is written inside that transaction; a failure row, with
  the server's error, after the rollback. An applied migration is not run again; if its file has
  changed since, both hashes are shown. With --dry-run everything is applied, what changed is
  reported (objects added, rows cleaned, rows quarantined, stock changes, products going from in
  stock to zero, duration), then rolled back. It asks for confirmation only on a terminal (not with
  --yes, --dry-run, or when stdin is not a terminal).

exit codes:
  0  applied and committed, already applied (nothing to do), or --dry-run succeeded (and rolled back)
  1  the migration failed and was rolled back: the database is as it was (a failure row is recorded)
  2  nothing was attempted: usage error, migration file missing, cannot connect, another runner holds
     the lock, the applied migration's file has changed, or the confirmation was declined
"""


# ---------------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------------
class Out:
    """Every line goes through here: flushed at once (notices as they arrive), secrets redacted."""

    def __init__(self) -> None:
        self.secrets: list[str] = []

    def redact(self, text: str) -> str:
        text = re.sub(r"(postgres(?:ql)?(?:\+\w+)?://[^:/@\s]*:)[^@\s]*@", r"\1***@", str(text))
        text = re.sub(r"(password=)[^&\s]+", r"\1***", text, flags=re.I)
        for secret in self.secrets:
            # as given, and percent-encoded as a URL may hold it (upper or lower case hex)
            forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret, safe="")}
            forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), f) for f in forms}
            for form in sorted(forms, key=len, reverse=True):
                if len(form) >= 4:  # a shorter one would garble every line; standing alone it is masked
                    text = text.replace(form, "***")
                elif form.strip():
                    text = re.sub(rf"(?<!\w){re.escape(form)}(?!\w)", "***", text)
        return text

    def __call__(self, line: str) -> None:
        print(self.redact(line), flush=True)


say = Out()


# ---------------------------------------------------------------------------------------------------
# connection
# ---------------------------------------------------------------------------------------------------
class Target:
    """Where to connect, from --dsn, POSTGRES_* or DATABASE_URL; `where` is safe to print."""

    def __init__(self, args: argparse.Namespace, env: os._Environ | dict):
        self.dsn: str | None = None
        self.kwargs: dict = {}
        if args.dsn:
            self._from_url(args.dsn, "--dsn")
        elif env.get("POSTGRES_HOST") or env.get("POSTGRES_DB"):
            self.source = "POSTGRES_* variables"
            self.host = env.get("POSTGRES_HOST", "localhost")
            self.port = int(env.get("POSTGRES_PORT") or 5432)
            self.db = env.get("POSTGRES_DB", "bot_auto_order")
            self.user = env.get("POSTGRES_USER", "postgres")
            password = env.get("POSTGRES_PASSWORD") or None
            self.kwargs = dict(host=self.host, port=self.port, database=self.db, user=self.user, password=password)
            say.secrets.append(password or "")
        elif env.get("DATABASE_URL"):
            self._from_url(env["DATABASE_URL"], "DATABASE_URL")
        else:
            raise UsageError("no database configured: export POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB, "
                             "POSTGRES_USER, POSTGRES_PASSWORD (checklist step 7.1), or DATABASE_URL, or pass --dsn")

    def _from_url(self, url: str, source: str) -> None:
        self.source = source
        url = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)  # SQLAlchemy-style URLs
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise UsageError(f"{source} is not a postgresql:// URL (found scheme {parts.scheme or 'none'!r})")
        try:
            self.port = parts.port or 5432
        except ValueError:
            self.port = None
        if self.port is None or "#" in url or any(c.isspace() for c in url):
            raise UsageError(f"{source} does not parse as a URL (the password is not shown): percent-encode the "
                             "password's special characters (@ %40, # %23, / %2F, ? %3F, % %25, space %20), "
                             "or use the POSTGRES_* variables")
        self.host = parts.hostname or "localhost"
        self.db = unquote(parts.path.lstrip("/")) or (parts.username or "postgres")
        self.user = unquote(parts.username or "") or os.environ.get("USER", "postgres")
        say.secrets += [unquote(parts.password or ""), parts.password or ""]  # decoded, and as written
        self.dsn = url

    @property
    def where(self) -> str:
        return f"host={self.host} port={self.port} db={self.db} user={self.user}"

    async def connect(self, timeout: float) -> asyncpg.Connection:
        settings = {"application_name": "run_migration"}
        try:
            if self.dsn:
                return await asyncpg.connect(self.dsn, timeout=timeout, server_settings=settings)
            return await asyncpg.connect(**self.kwargs, timeout=timeout, server_settings=settings)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise ConnectError(f"cannot connect to PostgreSQL at {self.host}:{self.port}, database {self.db}, "
                               f"user {self.user} (from {self.source}): {reason}. Check that the server runs and "
                               "that the variables are right (checklist steps 1.3 and 7.2).") from None


class UsageError(Exception):
    pass


class ConnectError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------
# the migration file
# ---------------------------------------------------------------------------------------------------
class Migration:
    def __init__(self, path: Path):
        if not path.is_file():
            raise UsageError(f"migration file not found: {path} (expected e.g. "
                             "scripts/migrations/001_fix_schema_constraints.sql; checklist step 3.3)")
        self.path = path
        self.raw = path.read_bytes()
        self.sha256 = hashlib.sha256(self.raw).hexdigest()
        self.name = path.stem
        self.sql = self.raw.decode("utf-8")
        # The runner owns the transaction: a COMMIT in the file would make it half-applied on failure.
        control = re.findall(r"^\s*(BEGIN|START\s+TRANSACTION|COMMIT|ROLLBACK|END)\s*;", self._no_bodies(), re.I | re.M)
        if control:
            raise UsageError(f"{path} contains transaction control ({', '.join(sorted(set(c.upper() for c in control)))}); "
                             "the runner wraps the whole file in one transaction, remove them")
        m = re.search(r"^--\s*deploycheck:backup-tables\s+(.+)$", self.sql, re.M)
        self.backup_tables = m.group(1).split() if m else []

    def statements(self) -> list[tuple[int, str]]:
        """The file's statements, each with the line its code starts on: the runner sends them one at a time
        (in the one transaction) to time each. Splits on `;` outside quotes, comments and dollar-quoted bodies."""
        sql, pieces, start, i = self.sql, [], 0, 0
        while i < len(sql):
            if sql.startswith(("--", "/*"), i):
                end = sql.find("\n" if sql[i] == "-" else "*/", i + 2)
                i = len(sql) if end == -1 else end + (1 if sql[i] == "-" else 2)
            elif sql[i] in "'\"":
                end = sql.find(sql[i], i + 1)
                while end != -1 and sql.startswith(sql[i], end + 1):  # '' inside a string
                    end = sql.find(sql[i], end + 2)
                i = len(sql) if end == -1 else end + 1
            elif sql[i] == "$" and (tag := re.match(r"\$(?:[A-Za-z_]\w*)?\$", sql[i:])):
                end = sql.find(tag.group(), i + len(tag.group()))
                i = len(sql) if end == -1 else end + len(tag.group())
            elif sql[i] == ";":
                pieces.append((start, i + 1))
                start = i = i + 1
            else:
                i += 1
        pieces.append((start, len(sql)))
        found = []
        for begin, end in pieces:
            lead = re.match(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", sql[begin:end], re.S).end()
            if sql[begin + lead:end].strip(" \t\n;"):
                found.append((sql.count("\n", 0, begin + lead) + 1, sql[begin + lead:end].strip()))
        return found

    def _no_bodies(self) -> str:
        """The SQL without comments and dollar-quoted bodies (where BEGIN/END are PL/pgSQL, not SQL)."""
        text = re.sub(r"--[^\n]*", "", self.sql)
        return re.sub(r"(\$[A-Za-z_0-9]*\$).*?\1", "", text, flags=re.S)

    @property
    def number(self) -> str:
        m = re.match(r"(\d+)", self.name)
        return m.group(1) if m else self.name


# ---------------------------------------------------------------------------------------------------
# catalog and data snapshots (what the migration changed)
# ---------------------------------------------------------------------------------------------------
OBJECTS_SQL = r"""
SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence'
                      WHEN 'v' THEN 'view' WHEN 'm' THEN 'view' ELSE 'relation' END || ' ' || n.nspname || '.' || c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', $1) AND n.nspname NOT LIKE 'pg\_%'
   AND c.relkind IN ('r', 'p', 'i', 'S', 'v', 'm')
UNION ALL
SELECT 'constraint ' || n.nspname || '.' || r.relname || '.' || con.conname || ' ' || pg_get_constraintdef(con.oid)
  FROM pg_constraint con JOIN pg_class r ON r.oid = con.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', $1) AND n.nspname NOT LIKE 'pg\_%'
UNION ALL
SELECT 'column ' || n.nspname || '.' || r.relname || '.' || a.attname
  FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid JOIN pg_namespace n ON n.oid = r.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', $1) AND n.nspname NOT LIKE 'pg\_%'
   AND r.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
"""


async def snapshot(conn: asyncpg.Connection) -> dict:
    snap = {"objects": {r[0] for r in await conn.fetch(OBJECTS_SQL, BACKUP_SCHEMA)}, "stock": {},
            "audit_max": 0, "quarantine_max": 0}
    if await conn.fetchval("SELECT to_regclass('products') IS NOT NULL"):
        snap["stock"] = {r["id"]: (r["code"], r["name"], r["stock"])
                         for r in await conn.fetch("SELECT id, code, name, stock FROM products")}
    for key, table in (("audit_max", "audit_log"), ("quarantine_max", "migration_quarantine")):
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            snap[key] = await conn.fetchval(f"SELECT COALESCE(max(id), 0) FROM {table}")
    return snap


async def changes(conn: asyncpg.Connection, before: dict) -> dict:
    after = await snapshot(conn)
    added = sorted(after["objects"] - before["objects"])
    new_tables = {o.split(" ", 1)[1] for o in added if o.startswith("table ")}
    # Columns and constraints of a new table are part of it; list only the table.
    objects = [o for o in added if not (o.startswith(("column ", "constraint "))
                                        and o.split(" ")[1].rsplit(".", 1)[0] in new_tables)]
    objects = [o.split(" CHECK")[0].split(" UNIQUE")[0].split(" FOREIGN")[0].split(" PRIMARY")[0]
               if o.startswith("constraint ") else o for o in objects]
    quarantined, cleaned = {}, {}
    if await conn.fetchval("SELECT to_regclass('migration_quarantine') IS NOT NULL"):
        quarantined = {r[0]: r[1] for r in await conn.fetch(
            "SELECT reason, count(*) FROM migration_quarantine WHERE id > $1 GROUP BY reason ORDER BY reason",
            before["quarantine_max"])}
    if await conn.fetchval("SELECT to_regclass('audit_log') IS NOT NULL"):
        cleaned = {r[0]: r[1] for r in await conn.fetch(
            "SELECT action, count(*) FROM audit_log WHERE id > $1 GROUP BY action ORDER BY action",
            before["audit_max"])}
    stock_changed = [(pid, *old, after["stock"][pid][2]) for pid, old in before["stock"].items()
                     if pid in after["stock"] and after["stock"][pid][2] != old[2]]
    to_zero = [{"id": pid, "code": code, "name": name, "old_stock": old}
               for pid, code, name, old, new in stock_changed if old > 0 and new == 0]
    return {
        "objects_added": objects,
        "rows_quarantined": sum(quarantined.values()),
        "quarantined_by_reason": quarantined,
        # audit entries of updated values; stock changes and quarantine moves are counted on their own
        "rows_cleaned": sum(v for k, v in cleaned.items()
                            if k != "product_stock_recomputed" and not k.endswith("_quarantined")),
        "cleaned_by_action": cleaned,
        "stock_changes": len(stock_changed),
        "products_to_zero": to_zero,
    }


# ---------------------------------------------------------------------------------------------------
# lock waits: a second connection watches what the migration waits for, to name the table on timeout
# ---------------------------------------------------------------------------------------------------
class LockWatch:
    SQL = """
        SELECT COALESCE(l.relation::regclass::text, l.locktype) AS what, l.mode,
               (SELECT string_agg(format('pid %s (%s, %s, %s)', b.pid, COALESCE(NULLIF(b.application_name, ''), '?'),
                                         b.state, left(regexp_replace(b.query, '\\s+', ' ', 'g'), 80)), '; ')
                  FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids($1))) AS blockers
          FROM pg_locks l WHERE l.pid = $1 AND NOT l.granted LIMIT 1"""

    def __init__(self, target: Target, pid: int):
        self.target, self.pid = target, pid
        self.last: tuple[str, str, str | None] | None = None
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        try:
            conn = await self.target.connect(timeout=5)
        except ConnectError:
            return  # naming the table is a nicety; the migration does not depend on it
        try:
            while True:
                row = await conn.fetchrow(self.SQL, self.pid, timeout=5)
                if row:
                    self.last = (row["what"], row["mode"], row["blockers"])
                await asyncio.sleep(0.2)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError):
            return
        finally:
            await conn.close(timeout=2)

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass


_TABLE_RE = re.compile(r"\b(?:ALTER\s+TABLE|UPDATE|INSERT\s+INTO|DELETE\s+FROM|ON|FROM|LOCK\s+TABLE)\s+"
                       r"(?:ONLY\s+)?(?:IF\s+EXISTS\s+)?([A-Za-z_][\w.\"]*)", re.I)


def describe_error(exc: BaseException, watch: LockWatch | None, last_step: str | None,
                   lock_timeout: str, statement_timeout: str) -> str:
    """The server's error in words an operator can act on; timeouts name the table involved."""
    msg = getattr(exc, "message", None) or str(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    extra = [f"{k}: {getattr(exc, k)}" for k in ("detail", "hint") if getattr(exc, k, None)]
    where = getattr(exc, "context", None) or getattr(exc, "where", None)
    step = f"; the migration was at: {last_step}" if last_step else ""
    if sqlstate == "55P03" or "lock timeout" in msg:
        what = f"table {watch.last[0]} ({watch.last[1]})" if watch and watch.last else "a table"
        held = f", held by {watch.last[2]}" if watch and watch.last and watch.last[2] else ""
        table = f" (statement on {m.group(1)})" if where and (m := _TABLE_RE.search(where)) else ""
        return (f"lock_timeout ({lock_timeout}) reached while waiting for a lock on {what}{held}{table}{step}. "
                "Another session is using it: stop the bot (checklist 6.1) and other clients, then run again.")
    if sqlstate == "57014" and "statement timeout" in msg:
        table = f" on table {m.group(1)}" if where and (m := _TABLE_RE.search(where)) else ""
        return (f"statement_timeout ({statement_timeout}) reached{table}{step}. The statement took too long: "
                "raise --statement-timeout after checking the dry run's duration, or look for a slow step.")
    text = f"{type(exc).__name__}" + (f" [{sqlstate}]" if sqlstate else "") + f": {msg}"
    if extra:
        text += " (" + "; ".join(extra) + ")"
    if where:
        text += f" | where: {' '.join(str(where).split())[:300]}"
    return text + step


# ---------------------------------------------------------------------------------------------------
# schema_migrations
# ---------------------------------------------------------------------------------------------------
TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    id SERIAL PRIMARY KEY,
    migration_name TEXT NOT NULL UNIQUE,
    executed_at TIMESTAMPTZ DEFAULT now(),
    execution_time_ms INTEGER,
    status TEXT NOT NULL CHECK (status IN ('success', 'failed', 'rollback')),
    error_message TEXT,
    sha256 TEXT,
    created_at TIMESTAMPTZ DEFAULT now()
);
ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS sha256 TEXT;
"""
RECORD_SQL = """
INSERT INTO schema_migrations (migration_name, executed_at, execution_time_ms, status, error_message, sha256)
VALUES ($1, now(), $2, $3, $4, $5)
ON CONFLICT (migration_name) DO UPDATE
   SET executed_at = now(), execution_time_ms = EXCLUDED.execution_time_ms, status = EXCLUDED.status,
       error_message = EXCLUDED.error_message, sha256 = EXCLUDED.sha256
"""


async def has_tracking(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")


async def ensure_tracking(conn: asyncpg.Connection) -> bool:
    """Create schema_migrations if missing; True when it was created now."""
    existed = await has_tracking(conn)
    async with conn.transaction():
        await conn.execute("SET LOCAL client_min_messages = warning")  # no "already exists, skipping" noise
        await conn.execute(TRACKING_DDL)
    return not existed


async def recorded(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    if not await has_tracking(conn):
        return None
    has_sha = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM information_schema.columns "
                                  "WHERE table_name = 'schema_migrations' AND column_name = 'sha256')")
    return await conn.fetchrow(
        f"SELECT migration_name, status, executed_at, execution_time_ms, error_message, "
        f"{'sha256' if has_sha else 'NULL::text AS sha256'} FROM schema_migrations WHERE migration_name = $1", name)


# ---------------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------------
class Rollback(Exception):
    """Raised to end a --dry-run transaction."""


class Timings:
    """How long each statement of the migration (and each step of the runner in its transaction) took:
    where the window's time goes, read from the runner's own clock."""

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.current: dict | None = None

    async def of(self, what: str, awaitable, line: int | None = None):
        self.current = {"line": line, "statement": " ".join(what.split())[:100], "seconds": None}
        began = time.monotonic()
        result = await awaitable
        self.current["seconds"] = round(time.monotonic() - began, 3)
        self.steps.append(self.current)
        self.current = None
        return result

    def running(self) -> str:
        """Where the migration stood when it failed: the statement and its line."""
        if not self.current:
            return ""
        if not self.current["line"]:
            return f" (at {self.current['statement']})"
        return f" (statement at line {self.current['line']}: {self.current['statement']})"

    @staticmethod
    def slowest(steps: list[dict], count: int = 8) -> list[dict]:
        return sorted(steps, key=lambda s: s["seconds"], reverse=True)[:count]


async def take_lock(conn: asyncpg.Connection) -> str | None:
    """None when the lock is ours; else who holds it."""
    if await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
        return None
    holder = await conn.fetchrow(
        """SELECT a.pid, a.application_name, a.client_addr::text AS addr, a.backend_start, a.state
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted
              AND ((l.classid::bigint << 32) | l.objid::bigint) = ($1::bigint & x'FFFFFFFFFFFFFFFF'::bigint)
            LIMIT 1""", LOCK_KEY)
    if holder:
        return (f"pid {holder['pid']} ({holder['application_name'] or '?'} from {holder['addr'] or 'local socket'}, "
                f"connected since {holder['backend_start']:%Y-%m-%d %H:%M:%S}, {holder['state']})")
    return "another session"


async def backup(conn: asyncpg.Connection, migration: Migration) -> list[str]:
    """Copies of the tables the migration changes, in the migration's transaction."""
    made = []
    if not migration.backup_tables:
        say("[backup] the migration names no tables to back up (no `-- deploycheck:backup-tables` line)")
        return made
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {BACKUP_SCHEMA}")
    for table in migration.backup_tables:
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            say(f"[backup] {table}: not in this database, nothing to back up")
            continue
        copy = f"{BACKUP_SCHEMA}.{table}_{migration.number}"
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", copy):
            raise UsageError(f"backup table {copy} already exists from an earlier run of {migration.name}; "
                             f"rename or drop it (DROP TABLE {copy}) after checking you do not need it")
        await conn.execute(f'CREATE TABLE {copy} AS TABLE "{table}"')
        rows = await conn.fetchval(f"SELECT count(*) FROM {copy}")
        say(f"[backup] {copy}: {rows} rows copied from {table}")
        made.append(copy)
    say(f"[backup] backup tables created: {len(made)} in schema {BACKUP_SCHEMA}")
    return made


async def apply(args: argparse.Namespace, target: Target, summary: dict) -> int:
    migration = Migration(Path(args.migration))
    summary.update(migration=migration.name, file=str(migration.path), sha256=migration.sha256)
    say(f"[migration] {migration.path} ({migration.name}, sha256 {migration.sha256})")
    say(f"[connect] {target.where} (from {target.source})")
    conn = await target.connect(args.connect_timeout)
    try:
        version = await conn.fetchval("SHOW server_version")
        say(f"[connect] connected: PostgreSQL {version}")
        try:  # the server notices a killed runner within a second and rolls back (PostgreSQL 14+)
            await conn.execute("SET client_connection_check_interval = '1s'")
        except asyncpg.PostgresError:
            pass
        # An autovacuum on a table the migration must lock gives way only when the wait reaches deadlock_timeout
        # (1 s by default): seconds of the window on a freshly restored or busy database. Superuser (or GRANT SET)
        # only: without it each such wait stays up to 1 s.
        try:
            await conn.execute(f"SET deadlock_timeout = '{DEADLOCK_TIMEOUT}'")
        except asyncpg.PostgresError as exc:
            say(f"[connect] deadlock_timeout stays at the server's setting ({getattr(exc, 'message', exc)}): an "
                "autovacuum on a table the migration locks may hold each lock up to that long")
        holder = await take_lock(conn)
        if holder:
            summary.update(status="refused", error=f"another migration runner holds the lock: {holder}")
            say(f"[lock] REFUSED: another migration runner holds the migration lock: {holder}. "
                "Wait for it to finish (or stop it), then run again. Nothing was changed.")
            return EXIT_USAGE
        say("[lock] advisory lock acquired: no other runner can start until this one ends")

        row = await recorded(conn, migration.name)
        if row and row["status"] == "success":
            when = f"{row['executed_at']:%Y-%m-%d %H:%M:%S %Z}" if row["executed_at"] else "?"
            if row["sha256"] and row["sha256"] != migration.sha256:
                summary.update(status="changed", applied_sha256=row["sha256"],
                               error=f"applied on {when} with sha256 {row['sha256']}; the file now has "
                                     f"sha256 {migration.sha256}")
                say(f"[tracking] CHANGED: {migration.name} was applied on {when} from a file with sha256 "
                    f"{row['sha256']}; {migration.path} now has sha256 {migration.sha256}. It is not run again. "
                    "Find out what changed; new changes belong in a new migration file.")
                return EXIT_USAGE
            summary.update(status="already_applied", applied_sha256=row["sha256"])
            say(f"[tracking] {migration.name} already applied on {when} "
                f"(sha256 {'matches' if row['sha256'] else 'not recorded'}): nothing to do, no backup made")
            return EXIT_OK
        if row:
            say(f"[tracking] previous attempt: {row['status']} on {row['executed_at']:%Y-%m-%d %H:%M:%S}: "
                f"{(row['error_message'] or '')[:200]}")

        if not args.dry_run and not args.yes and sys.stdin.isatty():
            answer = input(f"Apply {migration.name} to {target.where}? Type 'yes' to continue: ")
            if answer.strip().lower() not in ("y", "yes"):
                summary.update(status="cancelled", error="confirmation declined")
                say("[result] cancelled at the prompt: nothing was changed")
                return EXIT_USAGE

        if not args.dry_run:  # committed on its own, so a failure can be recorded after a rollback
            created = await ensure_tracking(conn)
            say(f"[tracking] migration tracking table {'created' if created else 'already present'}: schema_migrations")

        last_step: list[str] = []

        def on_notice(_conn, msg) -> None:
            text = msg.message
            if text.startswith("["):  # the migration's own progress lines
                say(text if msg.severity in ("NOTICE", "INFO", "LOG") else f"{text} ({msg.severity})")
                last_step[:] = [text]
            else:
                say(f"[notice] {msg.severity}: {text}")

        conn.add_log_listener(on_notice)
        watch = LockWatch(target, conn.get_server_pid())
        watch.start()
        timings = Timings()
        summary["timings"] = timings.steps
        started = time.monotonic()
        try:
            async with conn.transaction():
                await conn.execute("SELECT set_config('lock_timeout', $1, true), "
                                   "set_config('statement_timeout', $2, true)", args.lock_timeout, args.statement_timeout)
                say(f"[migration] transaction started (lock_timeout {args.lock_timeout}, "
                    f"statement_timeout {args.statement_timeout})")
                if args.dry_run:
                    await conn.execute("SET LOCAL client_min_messages = warning")
                    await conn.execute(TRACKING_DDL)
                    await conn.execute("SET LOCAL client_min_messages = notice")
                before = await timings.of("[runner] snapshot before", snapshot(conn))
                summary["backup_tables"] = await timings.of("[runner] backup tables", backup(conn, migration))
                say(f"[migration] applying {migration.name} ...")
                for line, statement in migration.statements():  # one at a time, to time each
                    await timings.of(statement, conn.execute(statement), line)
                summary.update(await timings.of("[runner] what changed (summary)", changes(conn, before)))
                duration_ms = round((time.monotonic() - started) * 1000)
                if args.dry_run:
                    summary["duration_ms"] = duration_ms
                    raise Rollback()
                await conn.execute(RECORD_SQL, migration.name, duration_ms, "success", None, migration.sha256)
            summary["duration_ms"] = round((time.monotonic() - started) * 1000)
        except Rollback:
            report(summary)
            summary["status"] = "dry_run"
            say(f"[result] dry run succeeded in {summary['duration_ms'] / 1000:.1f} s, then ROLLED BACK: "
                "nothing was changed; no errors")
            return EXIT_OK
        except UsageError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError) as exc:
            error = describe_error(exc, watch, last_step[0] if last_step else None,
                                   args.lock_timeout, args.statement_timeout) + timings.running()
            summary.update(status="failed", error=say.redact(error),
                           duration_ms=round((time.monotonic() - started) * 1000))
            return await failed(conn, target, args, migration, summary)
        finally:
            await watch.stop()
            conn.remove_log_listener(on_notice)

        report(summary)
        summary["status"] = "success"
        say(f"[result] success: {migration.name} applied and committed in {summary['duration_ms'] / 1000:.1f} s; "
            "no errors")
        return EXIT_OK
    finally:
        await conn.close(timeout=5)


async def failed(conn: asyncpg.Connection, target: Target, args, migration: Migration, summary: dict) -> int:
    """Say truthfully what happened: rolled back, or (connection lost at COMMIT) committed after all."""
    say(f"[error] {summary['error']}")
    check = conn
    if conn.is_closed():
        try:
            check = await target.connect(args.connect_timeout)
        except ConnectError as exc:
            summary["status"] = "unknown"
            say(f"[result] the connection was lost and cannot be re-opened ({exc}); the migration's transaction "
                "was not confirmed committed. Check with --status before doing anything else.")
            return EXIT_FAILED
    try:
        row = None if args.dry_run else await recorded(check, migration.name)
        if row and row["status"] == "success" and row["sha256"] == migration.sha256:
            summary["status"] = "success"
            say("[result] the error came after COMMIT: schema_migrations shows the migration committed")
            return EXIT_OK
        if not args.dry_run:
            await check.execute(RECORD_SQL, migration.name, summary["duration_ms"], "failed",
                                summary["error"][:4000], migration.sha256)
            say("[tracking] failure recorded in schema_migrations (status failed, with the error)")
        say(f"[result] FAILED and ROLLED BACK{' (dry run)' if args.dry_run else ''}: the transaction did not "
            "commit, the database is as it was before this run")
    finally:
        if check is not conn:
            await check.close(timeout=5)
    return EXIT_FAILED


def report(summary: dict) -> None:
    objects = summary.get("objects_added", [])
    kinds: dict[str, int] = {}
    for o in objects:
        kinds[o.split(" ")[0]] = kinds.get(o.split(" ")[0], 0) + 1
    plural = {"index": "indexes"}
    counted = ", ".join(f"{v} {plural.get(k, k + 's')}" for k, v in sorted(kinds.items())) or "none"
    say(f"[summary] objects added: {len(objects)} ({counted})")
    for o in objects:
        say(f"[summary]   + {o}")
    q = summary.get("quarantined_by_reason", {})
    say(f"[summary] rows quarantined: {summary.get('rows_quarantined', 0)}"
        + (f" ({', '.join(f'{k} {v}' for k, v in q.items())})" if q else ""))
    c = summary.get("cleaned_by_action", {})
    say(f"[summary] rows cleaned: {summary.get('rows_cleaned', 0)} (audit_log entries: "
        f"{', '.join(f'{k} {v}' for k, v in c.items()) or 'none'})")
    zero = summary.get("products_to_zero", [])
    say(f"[summary] stock changes: {summary.get('stock_changes', 0)} products; "
        f"{len(zero)} go from in stock to zero" + (":" if zero else ""))
    for p in zero:
        say(f"[summary]   ! {p['code']} \"{p['name']}\" (id {p['id']}): stock {p['old_stock']} -> 0")
    steps = summary.get("timings", [])
    if steps:
        say(f"[timing] {len(steps)} statements and runner steps in the transaction, "
            f"{sum(s['seconds'] for s in steps):.2f} s; the slowest:")
        for s in Timings.slowest(steps):
            say(f"[timing] {s['seconds']:7.3f} s  {'line ' + str(s['line']) + ': ' if s['line'] else ''}{s['statement']}")
    say(f"[summary] duration: {summary.get('duration_ms', 0) / 1000:.2f} s")


async def status(args: argparse.Namespace, target: Target, summary: dict) -> int:
    say(f"[connect] {target.where} (from {target.source})")
    conn = await target.connect(args.connect_timeout)
    try:
        folder = Path(args.migration).parent if args.migration else HERE / "migrations"
        files = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.sql"))}
        rows = []
        if await has_tracking(conn):
            has_sha = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM information_schema.columns "
                                          "WHERE table_name = 'schema_migrations' AND column_name = 'sha256')")
            rows = await conn.fetch(
                "SELECT migration_name, status, executed_at, execution_time_ms, error_message, "
                f"{'sha256' if has_sha else 'NULL::text AS sha256'} FROM schema_migrations ORDER BY executed_at, id")
        else:
            say("[status] no migrations recorded: schema_migrations does not exist")
        listed = []
        for r in rows:
            f = files.get(r["migration_name"])
            state = ("file missing" if f is None else "file matches" if f == r["sha256"]
                     else "no hash recorded" if not r["sha256"] else f"FILE CHANGED (now {f})")
            say(f"[status] {r['migration_name']}: {r['status']} at {r['executed_at']:%Y-%m-%d %H:%M:%S %Z}, "
                f"{r['execution_time_ms']} ms, sha256 {r['sha256'] or '-'} ({state})"
                + (f", error: {r['error_message'][:200]}" if r["error_message"] else ""))
            listed.append({"migration": r["migration_name"], "status": r["status"],
                           "executed_at": r["executed_at"].isoformat() if r["executed_at"] else None,
                           "execution_time_ms": r["execution_time_ms"], "sha256": r["sha256"], "file": state,
                           "error": r["error_message"]})
        done = {r["migration_name"] for r in rows if r["status"] == "success"}
        tried = {r["migration_name"]: r["status"] for r in rows}
        for name in files:
            if name not in done:
                last = f", last attempt {tried[name]}" if name in tried else ""
                say(f"[status] {name}: pending ({folder / (name + '.sql')}{last})")
                listed.append({"migration": name, "status": "pending", "sha256": files[name]})
        summary.update(status="ok", migrations=listed)
        return EXIT_OK
    finally:
        await conn.close(timeout=5)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_migration.py", description="Apply one SQL migration to the bot-auto-order database, "
        "all or nothing, and record it in schema_migrations.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("migration", nargs="?", help="the .sql file, e.g. scripts/migrations/001_fix_schema_constraints.sql")
    p.add_argument("--dry-run", action="store_true", help="apply, report what changed, then roll back")
    p.add_argument("--status", action="store_true", help="list recorded migrations and pending files, change nothing")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation on a terminal")
    p.add_argument("--json", action="store_true", help="end with one JSON line summarising the run")
    p.add_argument("--dsn", help="database URL (default: POSTGRES_* variables, else DATABASE_URL)")
    p.add_argument("--lock-timeout", default="10s", help="wait at most this long for a table lock (default 10s)")
    p.add_argument("--statement-timeout", default="10min", help="longest one statement may run (default 10min)")
    p.add_argument("--connect-timeout", type=float, default=10, help="seconds to wait for the connection (default 10)")
    return p


async def main_async(args: argparse.Namespace) -> tuple[int, dict]:
    summary: dict = {"status": "error", "migration": None, "sha256": None, "dry_run": bool(args.dry_run),
                     "database": None, "duration_ms": 0, "objects_added": [], "backup_tables": [],
                     "rows_quarantined": 0, "quarantined_by_reason": {}, "rows_cleaned": 0,
                     "cleaned_by_action": {}, "stock_changes": 0, "products_to_zero": [], "error": None}
    try:
        if not args.status and not args.migration:
            raise UsageError("name the migration file, e.g. scripts/migrations/001_fix_schema_constraints.sql "
                             "(or use --status)")
        target = Target(args, os.environ)
        summary["database"] = target.where
        code = await (status(args, target, summary) if args.status else apply(args, target, summary))
    except (UsageError, ConnectError) as exc:
        summary.update(status="error", error=say.redact(str(exc)))
        say(f"[error] {exc}")
        code = EXIT_USAGE
    summary["exit_code"] = code
    return code, summary


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code, summary = asyncio.run(main_async(args))
    except KeyboardInterrupt:
        say("[result] INTERRUPTED: the transaction was not committed; PostgreSQL rolls it back when the "
            "connection closes. Check with --status.")
        code, summary = EXIT_FAILED, {"status": "failed", "error": "interrupted", "exit_code": EXIT_FAILED}
    if args.json:
        print(say.redact(json.dumps(summary, default=str)), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
