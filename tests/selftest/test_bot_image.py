"""Release images of the stand-in built for real (docker_daemon.py starts the daemon): v0.6.0 and v0.7.0 of a
build_checkout() checkout, each on deploycheck's stand-in for python:3.12-slim, each saying its own version; a
base that is not here and cannot be named, and a failing build, are errors that say what to do; a provisioned
tenant runs the release under docker compose on the host network and answers /version. The stand-in's
scripts/run_stack.sh is also run on the host with a fake python: both processes, TERM passed on, the first exit
ends it. Every Python process of a container rehearsal's bot is behind the outbound guard mounted into it.
No container is left after any test."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from deploycheck.infra import bot_image, images
from deploycheck.infra.images import ImageError
from deploycheck.rehearsal import container_guard, tenant
from deploycheck.rehearsal.checkout import build_checkout, git
from deploycheck.telegram.driver import FakeDriver
from deploycheck.telegram import outbound_guard
from deploycheck.telegram.fake_api import FakeBotAPI
from standin import free_port

ROOT = Path(__file__).resolve().parents[2]
RUN_STACK = ROOT / "fixtures" / "standin-bot" / "scripts" / "run_stack.sh"
RELEASES = ("v0.6.0", "v0.7.0")
STAND_IN = "stand-in from Debian bookworm's python3 3.11, not python:3.12-slim"
ADMIN = 7300000001


@pytest.fixture(scope="module")
def docker(docker_daemon):
    with pytest.MonkeyPatch.context() as patch:
        for name, value in docker_daemon.env.items():
            patch.setenv(name, value)
        yield docker_daemon


@pytest.fixture
def daemon(docker):
    """The module's daemon, checked after the test: no container may be left."""
    yield docker
    left = docker.containers()
    if left:
        docker.docker("rm", "-f", "-v", *left)
    assert left == [], f"containers left behind: {left}"


@pytest.fixture(scope="module")
def releases(docker, tmp_path_factory):
    """The stand-in's checkout and its two releases, built once for the module."""
    checkout = build_checkout(tmp_path_factory.mktemp("standin"), "standin")
    built = {ref: bot_image.build_release(checkout, ref, f"deploycheck-selftest/bot-auto-order:{ref[1:]}",
                                          None, say=print) for ref in RELEASES}
    return checkout, built


def run(docker, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return docker.docker("run", "--rm", "--network", "host", *args, timeout=timeout)


def repo_with(folder: Path, dockerfile: str) -> Path:
    folder.mkdir()
    (folder / "Dockerfile").write_text(dockerfile)
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "one")
    return folder


def test_each_release_image_says_its_own_version(releases, daemon):
    checkout, built = releases
    for ref, image in built.items():
        assert image.ref == ref and image.commit == git(checkout, "rev-parse", f"{ref}^{{commit}}")
        assert image.id.startswith("sha256:") and image.id == bot_image.image_id(image.tag)
        assert image.bases == {"python:3.12-slim": f"{images.python_base_tag()} ({STAND_IN})"}
        done = run(daemon, "--entrypoint", "python", image.tag, "-c", "from src.version import VERSION; print(VERSION)")
        assert (done.returncode, done.stdout.strip()) == (0, ref[1:]), done.stderr
    assert built["v0.6.0"].id != built["v0.7.0"].id
    # the stand-in was tagged python:3.12-slim for the build only
    assert not images.has_image("python:3.12-slim")
    assert bot_image.inspect(built["v0.7.0"].tag)["Config"]["Entrypoint"] == ["./scripts/run_stack.sh"]


def test_the_image_has_what_the_bot_needs_and_ends_when_its_processes_do(releases, daemon):
    _, built = releases
    tag = built["v0.7.0"].tag
    done = run(daemon, "--entrypoint", "sh", tag, "-c",
               "python -c 'import telegram, asyncpg, aiohttp, httpx; print(telegram.__version__)' && curl --version "
               "&& test -x scripts/run_stack.sh && test -f scripts/run_migration.py && test -f src/tools/healthcheck.py")
    assert done.returncode == 0 and done.stdout.startswith("22."), done.stdout + done.stderr
    # no settings: both processes refuse to start, run_stack.sh ends, and so does the container
    done = run(daemon, tag, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[run_stack] a process exited (1)" in done.stdout and "validation errors for Settings" in done.stderr


def test_a_base_not_here_and_not_nameable_says_what_to_do(daemon, tmp_path):
    repo = repo_with(tmp_path / "repo", "FROM some/absent:1 AS first\nFROM first\nRUN true\n")
    with pytest.raises(ImageError, match=r"FROM some/absent:1, which this Docker daemon does not have.*"
                                         r"--base-image some/absent:1=LOCAL_IMAGE.*docker load -i FILE"):
        bot_image.build_release(repo, "HEAD", "deploycheck-selftest/absent:1", None, say=print)
    with pytest.raises(ImageError, match=r"--base-image some/absent:1=not/here:2: this Docker daemon has no image"):
        bot_image.build_release(repo, "HEAD", "deploycheck-selftest/absent:1", {"some/absent:1": "not/here:2"})
    with pytest.raises(ImageError, match=r"no-such-ref is not a tag or commit of"):
        bot_image.build_release(repo, "no-such-ref", "deploycheck-selftest/absent:1")
    # the operator's replacement is used, recorded, and untagged after the build
    base = images.python_base(print)
    built = bot_image.build_release(repo, "HEAD", "deploycheck-selftest/absent:1", {"some/absent:1": base})
    assert built.bases == {"some/absent:1": f"{base} (given with --base-image, for some/absent:1)"}
    assert not images.has_image("some/absent:1") and images.has_image(built.tag)


def test_a_failing_build_gives_dockers_own_error(daemon, tmp_path):
    repo = repo_with(tmp_path / "repo", "FROM python:3.12-slim\nRUN echo step-was-here && false\n")
    with pytest.raises(ImageError) as failed:
        bot_image.build_release(repo, "HEAD", "deploycheck-selftest/failing:1", say=print)
    first, *rest = str(failed.value).splitlines()
    assert first == ("building deploycheck-selftest/failing:1: The command '/bin/sh -c echo step-was-here && false'"
                     " returned a non-zero code: 1"), str(failed.value)
    assert any(line.strip() == "step-was-here" for line in rest) and "DEPRECATED" not in str(failed.value)
    assert not images.has_image("python:3.12-slim")


def test_a_tenant_has_the_image_literally_and_compose_accepts_it(releases, daemon):
    checkout, built = releases
    image = built["v0.7.0"].tag
    settings = {"DATABASE_URL": "postgresql://shop:secret@127.0.0.1:5432/db_toko_a", "TELEGRAM_BOT_TOKEN": "1:x",
                "PAKASIR_PORT": "19000", "BOT_WEBHOOK_PORT": "18080", "PAKASIR_PROJECT_SLUG": "toko-a",
                "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9"}
    # in the checkout's deployments/, from its templates, as provision_tenant.py does by default
    folder = tenant.provision(checkout / "deployments", "toko-a", "qris", image, settings, checkout=checkout)
    assert folder == checkout / "deployments" / "bot-toko-a-qris"
    assert all((folder / sub).is_dir() for sub in ("logs", "backups/local", "backups/offsite", "logs/maintenance"))
    assert f"image: {image}\n" in (folder / "compose.yml").read_text()
    env = (folder / "bot.env").read_text()
    for line in (f"IMAGE_NAME={image}", "STORE_SLUG=toko-a", "BOT_STORE_NAME=Toko A", "PAKASIR_PORT=19000",
                 "TELEGRAM_API_BASE_URL=http://127.0.0.1:9", f"DATABASE_URL={settings['DATABASE_URL']}"):
        assert line in env.splitlines(), env
    assert os.access(folder / "run.sh", os.X_OK) and (folder / "bot.env").stat().st_mode & 0o077 == 0
    assert git(checkout, "status", "--porcelain") == ""   # deployments/ is ignored, as in bot-auto-order
    done = daemon.docker("compose", "-f", str(folder / "compose.yml"), "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    bot = json.loads(done.stdout)["services"]["bot"]
    assert (bot["image"], bot["container_name"], bot["network_mode"]) == (image, "bot-toko-a-qris", "host")
    assert "ports" not in bot and bot["environment"]["PAKASIR_HOST"] == "127.0.0.1"
    assert bot["environment"]["PAKASIR_PORT"] == "19000" and bot["restart"] == "always"
    assert bot["healthcheck"]["test"] == ["CMD", "python", "-m", "src.tools.healthcheck"]

    bridged = tenant.provision(checkout / "deployments", "toko-b", "qris", image, settings, host_network=False)
    done = daemon.docker("compose", "--env-file", str(bridged / "bot.env"), "-f", str(bridged / "compose.yml"),
                         "config", "--format", "json")
    bot = json.loads(done.stdout)["services"]["bot"]
    assert "network_mode" not in bot and sorted(p["published"] for p in bot["ports"]) == ["18080", "19000"]
    with pytest.raises(tenant.TenantError, match="already exists"):
        tenant.provision(checkout / "deployments", "toko-a", "qris", image, settings)
    with pytest.raises(tenant.TenantError, match=r"has no docker-compose.template.yml and no bot.env.template"):
        tenant.provision(checkout / "deployments", "toko-c", "qris", image, settings, checkout=checkout / "src")


async def start_and_ask_version(daemon, api, driver, folder: Path) -> None:
    """The tenant started as its run.sh starts it: its bot polls the fake Telegram and answers /version."""
    done = await asyncio.to_thread(subprocess.run, [str(folder / "run.sh")], env={**os.environ, **daemon.env},
                                   capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    await api.wait_for_call("getUpdates", timeout=60)
    await driver.send("/version")
    assert (await driver.next_message(timeout=15)).text == "bot-auto-order stand-in 0.7.0"


async def test_a_tenant_runs_the_release_under_compose_and_answers_version(releases, daemon, fresh_db, tmp_path):
    _, built = releases
    api = await FakeBotAPI().start()
    settings = {"DATABASE_URL": fresh_db, "TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_API_BASE_URL": api.url,
                "TELEGRAM_ADMIN_IDS": f"[{ADMIN}]", "TELEGRAM_OWNER_IDS": str(ADMIN), "TELEGRAM_MODE": "polling",
                "PAKASIR_PROJECT_SLUG": "toko-uji", "PAKASIR_API_KEY": "fake", "PAKASIR_BASE_URL": "http://127.0.0.1:9",
                "PAKASIR_PUBLIC_DOMAIN": "http://127.0.0.1:9", "PAKASIR_PORT": str(free_port()),
                "BOT_WEBHOOK_PORT": str(free_port())}
    folder = tenant.provision(tmp_path, "toko-uji", "qris", built["v0.7.0"].tag, settings)  # the stand-in's templates
    compose = ["compose", "--env-file", str(folder / "bot.env"), "-f", str(folder / "compose.yml")]
    driver = await FakeDriver(api, ADMIN, "Budi").start()
    try:
        await start_and_ask_version(daemon, api, driver, folder)
        health = await asyncio.to_thread(daemon.docker, "exec", "bot-toko-uji-qris", "python", "-m",
                                         "src.tools.healthcheck", timeout=60)
        assert health.returncode == 0, health.stdout + health.stderr
    finally:
        stopped = await asyncio.to_thread(daemon.docker, *compose, "down", "--timeout", "20", timeout=90)
        await driver.stop()
        await api.stop()
    assert stopped.returncode == 0, stopped.stderr
    log = "".join(p.read_text() for p in sorted((folder / "logs" / "telegram-bot").glob("*.log")))
    assert "▶️ Starting bot in polling mode. (stand-in 0.7.0)" in log
    assert "👋 Shutdown complete." in log, log[-2000:]   # docker's TERM reached the bot through run_stack.sh
    assert "Health-check selesai, status: semua OK ✅" in (next((folder / "logs" / "health-check").glob("*.log"))
                                                           .read_text())


async def test_every_python_process_in_the_container_is_guarded_and_what_leaves_is_refused(releases, daemon,
                                                                                          fresh_db, tmp_path):
    """The container rehearsal's outbound guard (rehearsal.container_guard), the image unmodified and its entry
    point kept: the bot reaches the fake Telegram with no setting of its own for it; Telegram's raw address is
    not routed here, so the compose health check's getMe to api.telegram.org (raw httpx, in the process Docker
    execs) is refused and listed, as is a `docker exec`'d urllib call; every Python process there had the guard
    (and one started without it is counted unguarded);
    and a process whose guard cannot be installed stops instead of running unguarded."""
    _, built = releases
    image, container = built["v0.7.0"].tag, "bot-toko-jaga-qris"
    api = await FakeBotAPI().start()
    guard = container_guard.ContainerGuard(container_guard.lay_out(tmp_path / "guard"),
                                           {"app.pakasir.com": "http://127.0.0.1:9"}, api.url)
    settings = {"DATABASE_URL": fresh_db, "TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_ADMIN_IDS": f"[{ADMIN}]",
                "TELEGRAM_OWNER_IDS": str(ADMIN), "TELEGRAM_MODE": "polling", "PAKASIR_PROJECT_SLUG": "toko-jaga",
                "PAKASIR_API_KEY": "fake", "PAKASIR_PORT": str(free_port()), "BOT_WEBHOOK_PORT": str(free_port()),
                **guard.settings(container_guard.image_pythonpath(image))}
    folder = tenant.provision(tmp_path / "deployments", "toko-jaga", "qris", image, settings,
                              volumes=tuple(guard.volumes()))
    driver = await FakeDriver(api, ADMIN, "Budi").start()
    try:
        await start_and_ask_version(daemon, api, driver, folder)
        inspected = json.loads(daemon.docker("inspect", container).stdout)[0]
        started, guarded, refused = await asyncio.to_thread(guard.check, inspected)
        assert started == 3 and len(guarded) == 3, (started, guarded)  # src.main, src.server, the health check
        assert {r["command"] for r in guarded} == {"python -m src.main --mode polling", "python -m src.tools.healthcheck",
                                                    f"python -m src.server --host 127.0.0.1 --port {settings['PAKASIR_PORT']}"}
        # the bot's own health job refuses the same getMe; the health check's is the one of its process
        checks = {r["pid"] for r in guarded if r["command"] == "python -m src.tools.healthcheck"}
        health = [r for r in refused if r["host"] == "api.telegram.org" and r["pid"] in checks]
        # its getMe, then its alert to the owners about the failure (raw httpx too)
        assert "https://api.telegram.org/bot***/getMe" in {r["url"] for r in health}, refused
        for found in health:
            assert (found["via"], found["port"]) == ("httpx", 443) and found["origin"].startswith("/app/src/"), found
        out = await asyncio.to_thread(daemon.docker, "exec", container, "python", "-c",
                                      "import urllib.request; urllib.request.urlopen('http://example.com/', timeout=5)")
        assert out.returncode == 1 and "outbound connection to example.com:80 refused" in out.stderr, out.stderr
        assert any(r["host"] == "example.com" for r in outbound_guard.read_log(guard.refused_log)[1])
        assert api.token not in guard.refused_log.read_text()
        # a Python started without the guard's folder on its path is found and counted unguarded (14.2+outbound fails)
        daemon.docker("exec", "-d", "-e", "PYTHONPATH=", container, "python", "-c", "import time; time.sleep(120)")
        started, guarded, _ = await asyncio.to_thread(guard.check, inspected)
        assert (started, len(guarded)) == (4, 3), (started, guarded)
        # fail closed: a route that would leave the machine is refused, and the process does not run
        leaves = {**guard.settings(), "DEPLOYCHECK_ROUTES": json.dumps({"api.telegram.org": "https://198.51.100.7:443"})}
        bad = await asyncio.to_thread(run, daemon, "--entrypoint", "python", *(f"--volume={v}" for v in guard.volumes()),
                                      *(f"--env={k}={v}" for k, v in leaves.items()), image, "-c", "print('ran unguarded')")
        assert bad.returncode == container_guard.FAILED_CLOSED and "ran unguarded" not in bad.stdout, bad
        assert "outbound guard not installed, so this process is stopped" in bad.stderr, bad.stderr
    finally:
        await asyncio.to_thread(daemon.docker, "compose", "-f", str(folder / "compose.yml"), "down", "--timeout", "20",
                                timeout=90)
        await driver.stop()
        await api.stop()


# -- scripts/run_stack.sh on the host, with a fake python ------------------------------------------------------
FAKE_PYTHON = """#!/usr/bin/env bash
name="$2"
trap 'echo "TERM $name" >> "$RECORD"; exit 0' TERM
echo "start $*" >> "$RECORD"
if [[ "$name" == "${EXIT_AT_ONCE:-}" ]]; then
  # once the other has started (its trap set: a TERM before that would end it unrecorded)
  until grep -q "^start -m src.main" "$RECORD"; do sleep 0.02; done
  exit 3
fi
while :; do sleep 0.05; done
"""


def run_stack(tmp_path: Path, **env: str) -> tuple[subprocess.Popen, Path]:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text(FAKE_PYTHON)
    (tmp_path / "bin" / "python").chmod(0o755)
    record = tmp_path / "record"
    record.touch()
    process = subprocess.Popen(["bash", str(RUN_STACK)], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={
                                   **os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
                                   "RECORD": str(record), **env})
    return process, record


def wait_for(record: Path, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(record.read_text().splitlines()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return record.read_text().splitlines()


def test_run_stack_starts_both_and_passes_term_on(tmp_path):
    process, record = run_stack(tmp_path, TELEGRAM_MODE="Polling", PAKASIR_PORT="9123")
    assert sorted(wait_for(record, 2)) == ["start -m src.main --mode polling",
                                           "start -m src.server --host 0.0.0.0 --port 9123"]
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    assert process.returncode == 143 and "signal received" in output, output
    assert sorted(record.read_text().splitlines()[2:]) == ["TERM src.main", "TERM src.server"]


def test_run_stack_ends_when_either_process_ends(tmp_path):
    process, record = run_stack(tmp_path, EXIT_AT_ONCE="src.server", TELEGRAM_WEBHOOK_URL="https://shop.example")
    output, _ = process.communicate(timeout=10)
    assert process.returncode == 3, output
    lines = record.read_text().splitlines()
    assert "start -m src.main --mode auto --webhook-url https://shop.example" in lines and "TERM src.main" in lines
