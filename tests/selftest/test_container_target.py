"""--target container against a real Docker daemon (started by these tests: docker_daemon.py): PostgreSQL from
deploycheck's image, built here from Debian's packages, started through testcontainers on the host network;
a version with no image is a clear error; `auto` picks the container only when it can have one; the preflight
rehearsal on it is GO and leaves no container behind, nor does one NO-GO on a release that does not build, nor
one ended by Ctrl-C."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import pytest

from deploycheck.infra import images, targets
from deploycheck.pytest_plugin import backends
from deploycheck.rehearsal.checkout import build_checkout, git
from live_phase import Phase

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
@pytest.mark.parametrize("version", [15, 17])  # Debian bookworm's and trixie's
def test_the_image_is_built_from_debian_and_started_by_testcontainers(docker, version):
    said = []
    tag = images.postgres_image(version, said.append)
    assert tag.startswith(f"deploycheck/postgres:{version}-") and images.has_image(tag)
    assert images.postgres_image(version, said.append) == tag  # built once: the second call reuses it
    target = targets.open_container(version, say=said.append)
    try:
        assert target.kind == "container" and "127.0.0.1" in target.admin_dsn
        server_version, uuid = asyncio.run(answers(target.admin_dsn))
        assert server_version.startswith(f"{version}.") and len(uuid) == 36
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


def preflight(tmp_path: Path, *extra: str) -> list[str]:
    """`pytest -m preflight --target container` as an operator runs it, reports in tmp_path/reports/ct/."""
    return [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "deploycheck.pytest_plugin",
            "-p", "no:cacheprovider", "-m", "preflight", "--target", "container",
            f"--reports-dir={tmp_path / 'reports'}", "--deployment-id", "ct", "--bot-run-seconds", "0", *extra]


def last_entry(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "reports" / "ct" / "ledger.jsonl").read_text().splitlines()[-1])


@pytest.mark.slow
def test_the_preflight_rehearsal_in_a_container_is_go_and_leaves_no_container(docker, tmp_path):
    done = subprocess.run(preflight(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "deploycheck: target container (--target container)" in done.stdout
    entry = last_entry(tmp_path)
    assert entry["verdict"] == "GO" and entry["target"]["kind"] == "container"
    assert entry["target"]["server_version"].startswith("15.")
    assert docker.containers() == []


@pytest.mark.slow
def test_a_release_whose_dockerfile_does_not_build_is_no_go_with_dockers_error(docker, tmp_path):
    """The operator's checkout has a release whose Dockerfile fails at a step: preflight is NO-GO with docker's own
    lines, first at 1.5 (the first item that needs the image), 3.2+image and the rehearsal among what it caused;
    the run (the previous release's shop was up) leaves no container."""
    checkout = build_checkout(tmp_path / "code", "standin")
    dockerfile = checkout / "Dockerfile"
    step = "RUN chmod +x scripts/run_stack.sh"
    assert step in dockerfile.read_text(), "the stand-in's Dockerfile changed: break another step"
    dockerfile.write_text(dockerfile.read_text().replace(step, "RUN echo the-release-build-broke && false"))
    git(checkout, "commit", "-q", "-a", "-m", "v0.7.1: a step that fails")
    git(checkout, "tag", "v0.7.1")
    done = subprocess.run(preflight(tmp_path, f"--bot-dir={checkout}", "--release-ref", "v0.7.1",
                                    "--previous-ref", "v0.6.0"), cwd=ROOT, capture_output=True, text=True, timeout=900)
    run = Phase("preflight", done.stdout + done.stderr, last_entry(tmp_path), 0)
    assert done.returncode == 1 and run.verdict == "NO-GO" and run.causes == ["1.5"], run.tail()
    [cause] = run.entry["causes"]
    assert {"3.2+image", "5.3"} <= set(cause["consequences"]), cause
    message = run.message("1.5")
    assert "The command '/bin/sh -c echo the-release-build-broke && false' returned a non-zero code: 1" in message
    assert "the-release-build-broke" in message.replace("echo the-release-build-broke", ""), message
    assert docker.containers() == []


@pytest.mark.slow
def test_ctrl_c_in_a_container_rehearsal_leaves_no_container(docker, tmp_path):
    """Ctrl-C once the shop's container runs beside the database's: the run ends, and both containers go."""
    out = (tmp_path / "out.txt").open("w")
    process = subprocess.Popen(preflight(tmp_path), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while "bot-rehearsal-pakasir" not in docker.docker("ps", "--format", "{{.Names}}").stdout:
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "out.txt").read_text()[-3000:]
            time.sleep(1)
        assert len(docker.containers()) == 2  # the database and the shop
        process.send_signal(signal.SIGINT)
        process.wait(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    assert "KeyboardInterrupt" in (tmp_path / "out.txt").read_text()
    assert docker.containers() == []
