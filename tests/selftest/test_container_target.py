"""--target container against a real Docker daemon (started by these tests: docker_daemon.py): PostgreSQL from
deploycheck's image, built here from Debian's packages, started through testcontainers on the host network;
a version with no image is a clear error; `auto` picks the container only when it can have one; the preflight
rehearsal on it is GO and leaves no container behind."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import pytest

from deploycheck.infra import images, targets
from deploycheck.pytest_plugin import backends

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def docker(docker_daemon, monkeypatch):
    for name, value in docker_daemon.env.items():
        monkeypatch.setenv(name, value)
    return docker_daemon


async def answers(dsn: str) -> tuple[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")  # bot-auto-order's schema needs it
        return await conn.fetchval("SHOW server_version"), str(await conn.fetchval("SELECT gen_random_uuid()"))
    finally:
        await conn.close()


@pytest.mark.slow
def test_the_image_is_built_from_debian_and_started_by_testcontainers(docker):
    said = []
    tag = images.postgres_image(15, said.append)
    assert tag.startswith("deploycheck/postgres:15-") and images.has_image(tag)
    assert images.postgres_image(15, said.append) == tag  # built once: the second call reuses it
    target = targets.open_container(15, say=said.append)
    try:
        assert target.kind == "container" and "127.0.0.1" in target.admin_dsn
        version, uuid = asyncio.run(answers(target.admin_dsn))
        assert version.startswith("15.") and len(uuid) == 36
    finally:
        target.stop()
    assert docker.containers() == []  # stopped means removed


def test_a_version_debian_does_not_ship_needs_the_operators_image(docker):
    with pytest.raises(images.ImageError, match=r"no PostgreSQL 16 image here.*--pg-image IMAGE"):
        images.postgres_image(16)


def option(**given) -> SimpleNamespace:
    return SimpleNamespace(**{"target": "auto", "pg_version": None, "pg_image": None, **given})


def test_auto_takes_a_container_only_when_docker_answers(docker, monkeypatch):
    kind, why = backends.target_kind(option(), env={})
    assert kind == "container" and "Docker answers" in why
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert backends.target_kind(option(), env={}) == ("embedded", "no Docker daemon answers (a container rehearsal "
                                                                  "needs one)")
    assert backends.target_kind(option(), env={"DATABASE_URL": "postgresql://h/db"})[0] == "live"


@pytest.mark.slow
def test_the_preflight_rehearsal_in_a_container_is_go_and_leaves_no_container(docker, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p",
                           "deploycheck.pytest_plugin", "-p", "no:cacheprovider", "-m", "preflight", "--target",
                           "container", f"--reports-dir={tmp_path / 'reports'}", "--deployment-id", "ct",
                           "--bot-run-seconds", "0"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "deploycheck: target container (--target container)" in done.stdout
    entry = json.loads((tmp_path / "reports" / "ct" / "ledger.jsonl").read_text().splitlines()[-1])
    assert entry["verdict"] == "GO" and entry["target"]["kind"] == "container"
    assert entry["target"]["server_version"].startswith("15.")
    assert docker.containers() == []
