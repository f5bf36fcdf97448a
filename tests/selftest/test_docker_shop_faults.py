"""Faults of a Docker shop on real Docker (issue 24 item 4), each against a shop of its own on the machine's
"production" (docker_shop.py: PostgreSQL 15 in a container, the stand-in's images, a tenant folder, the fakes),
each phase its own `pytest -m PHASE --execute` process as its operator runs it. Each fault must end in a clear
message and leave production as the report says:

1. the release image exits at start: 10.4 NO-GO at once with the container's last log lines, and the
   rollback brings back the image the shop ran at preflight;
2. the release image is missing: preflight NO-GO on it (3.2+image and what needs the image) saying what to
   do, nothing stopped;
3. Docker does not answer: 1.2 says so, and what needs the release image is the same fault: one cause, no
   traceback for a message;
4. the compose file has no service of that name: the file named, its services, and what to give;
5. the database container is stopped: 1.3 NO-GO naming the database, no action run (last: it stops the
   PostgreSQL every shop here shares, and starts it again)."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import socket
import time
from pathlib import Path

import asyncpg
import pytest

from deploycheck.rehearsal.checkout import VERSION_FILE, build_checkout, git
from docker_shop import PREVIOUS, DockerShops, Shop, opened
from live_phase import Phase

pytestmark = pytest.mark.slow

EXITS = "v0.7.1"  # the release whose code exits at start in production (exits_at_start)
ACTIONS = ("4.1", "4.4", "3.3+indexes")  # what preflight changes (a backup, its copy, the plain indexes)
# A release that needs a setting production lacks: its automatic backup (on unless ENABLE_AUTO_BACKUP=false)
# wants a key. The release trial (5.3+release) switches that job off, as it does every job that would reach
# outside, so preflight is GO; production's bot.env has no key, so the container exits at once after 10.1.
CRASH = '''\
    if os.environ.get("ENABLE_AUTO_BACKUP", "true").lower() != "false" and not os.environ.get("BACKUP_ENCRYPTION_KEY"):
        raise RuntimeError("BACKUP_ENCRYPTION_KEY is not set: the automatic backup encrypts with it "
                           "(or set ENABLE_AUTO_BACKUP=false)")
'''


@pytest.fixture(scope="module")
def shops(docker_daemon, tmp_path_factory):
    with opened(docker_daemon, tmp_path_factory.mktemp("docker-faults")) as made:
        yield made


def run(shops: DockerShops, shop: Shop, phase: str, deployment: str, *extra: str, env: dict | None = None,
        checkout: Path | None = None) -> Phase:
    """DockerShops.phase with this fault's changes: `extra` options after the usual ones (the last of an option
    given twice wins: --service, --release-ref), `env` over the daemon's client settings (DOCKER_HOST), another
    --bot-dir checkout. The output is kept beside the reports (<deployment>-<phase>.out)."""
    view = dataclasses.replace(shops, docker_env={**shops.docker_env, **(env or {})},
                               checkout=checkout or shops.checkout)
    began = time.monotonic()
    done = view.phase(shop, phase, deployment, "-q", *extra)
    output = done.stdout + done.stderr
    (shops.folder / f"{deployment}-{phase}.out").write_text(output)
    ledger = shops.folder / "reports" / deployment / "ledger.jsonl"
    entries = ledger.read_text().splitlines() if ledger.exists() else []
    assert entries, f"`pytest -m {phase}` wrote no ledger entry (exit {done.returncode}):\n{output[-4000:]}"
    assert "INTERNALERROR" not in output and done.returncode in (0, 1), f"exit {done.returncode}:\n{output[-4000:]}"
    return Phase(phase, output, json.loads(entries[-1]), time.monotonic() - began)


def container(shops: DockerShops, shop: Shop) -> dict:
    """The shop's container as `docker inspect` has it."""
    return json.loads(shops.docker("inspect", shop.container).stdout)[0]


def listed(shops: DockerShops, shop: Shop) -> str:
    """The shop's line in `docker ps` (running containers only): its image and status; empty when not running."""
    return shops.docker("ps", "--filter", f"name=^{shop.container}$", "--format", "{{.Image}} {{.Status}}").stdout.strip()


def untraced(message: str) -> bool:
    """A message an operator reads, not a crash: no traceback, no exception's repr."""
    return not re.search(r"Traceback|File \"|^E\s|Error\(", message, re.M)


def exits_at_start(folder: Path) -> Path:
    """The stand-in's checkout with a release on top of v0.7.0 (EXITS, pushed to its origin as an operator's
    colleague would) whose src/main.py raises at start without BACKUP_ENCRYPTION_KEY (CRASH)."""
    checkout = build_checkout(folder, "standin")
    main = checkout / "src" / "main.py"
    anchor = '    setup_logging(settings.log_level, "telegram-bot")\n'
    assert anchor in main.read_text(), "the stand-in's main() changed: put CRASH where its settings are read"
    main.write_text(main.read_text().replace(anchor, anchor + CRASH))
    version = checkout / VERSION_FILE
    version.write_text(re.sub(r'^VERSION = ".*"$', 'VERSION = "0.7.1"', version.read_text(), flags=re.M))
    git(checkout, "commit", "-q", "-a", "-m", "v0.7.1: encrypted automatic backups")
    git(checkout, "tag", EXITS)
    git(checkout, "push", "-q", "origin", "main", EXITS)
    return checkout


async def test_a_release_image_that_exits_at_start_and_the_rollback(shops):
    """Preflight is GO (the trial runs the release without its backup job); after 10.1 the container exits at
    once and restarts: 10.4 fails within seconds naming the exit and the bot's own last lines, production's
    lines say the bot and the compose file's state; the rollback puts the image of preflight's 1.2 back."""
    shop = await shops.add_shop("f1", f"bot-auto-order:{PREVIOUS}")
    previous_id = shops.running_image(shop)
    checkout, deployment = exits_at_start(shops.folder / "code-f1"), "fault-exits"

    preflight = run(shops, shop, "preflight", deployment, "--release-ref", EXITS, checkout=checkout)
    assert preflight.verdict == "GO", preflight.tail()
    assert shops.recorded(deployment, "1.2")["Image Id"] == previous_id
    release_id = shops.recorded(deployment, "3.2+image")["Image Id"]

    deploy = run(shops, shop, "deploy", deployment, "--release-ref", EXITS, checkout=checkout)
    assert deploy.verdict == "NO-GO" and "10.4" in deploy.causes, deploy.tail()
    message = deploy.message("10.4")
    # caught waiting to restart ("exit code 1, N restart(s)") or running again ("N restart(s)", docker keeps no
    # exit code then): either way the lines of the run that ended
    assert re.match(rf"the bot did not come back: the container {shop.container} of bot on "
                    rf"bot-auto-order:{EXITS} restarts \((exit code 1, )?\d+ restart\(s\)\); its last log lines"
                    r"( before it started again)?:\n", message), message
    lines = message.splitlines()
    # the bot's own error among the last lines (the webhook server beside it may write after it), run_stack's last
    assert any(line.strip().startswith("RuntimeError: BACKUP_ENCRYPTION_KEY is not set") for line in lines[1:]), message
    assert lines[-1].strip() == "[run_stack] a process exited (1); stopping the other", message
    assert deploy.cause("10.4").startswith("RuntimeError: BACKUP_ENCRYPTION_KEY is not set"), deploy.cause("10.4")
    assert deploy.entry["items"]["10.4"]["duration"] < 60, "a container that exits fails 10.4 at once"
    now = deploy.production_now()
    assert "bot: started but not ready: read its log (10.3)" in now and "database: migrated to v0.7.0 (7.3)" in now
    # read in the loop: restarting, or running or exited between two runs, with its restarts said
    assert any(re.match(rf"shop, read now: container {shop.container} is (restarting|running|exited) \(.*restart",
                        line) and line.endswith(f"{shop.compose_file} names bot-auto-order:{EXITS}") for line in now), now
    assert "or go back: `pytest -m rollback --execute`" in deploy.output
    assert f"image: bot-auto-order:{EXITS}" in shop.compose_file.read_text()
    assert container(shops, shop)["Image"] == release_id  # the window's image, crashing

    rollback = run(shops, shop, "rollback", deployment, "--release-ref", EXITS, checkout=checkout)
    assert rollback.verdict == "GO", rollback.tail()
    assert shops.running_image(shop) == previous_id and container(shops, shop)["State"]["Running"]
    # the tag still names the image of preflight's 1.2, so the compose file names it by its tag again
    assert f"image: bot-auto-order:{PREVIOUS}" in shop.compose_file.read_text()
    assert shops.recorded(deployment, "16.3")["Image After"] == f"bot-auto-order:{PREVIOUS}"
    assert "0.6.0" in await shops.version_answered()


async def test_a_missing_release_image_is_no_go_in_preflight(shops):
    """--release-image names an image the daemon lacks: preflight is NO-GO on it, saying how to get it there;
    nothing of production is touched: the container runs the previous image, not restarted, its compose file as
    it was. (The verdict names the first item in checklist order that needs the image, 1.5, with 3.2+image among
    what it caused: causes are classified in checklist order.)"""
    shop = await shops.add_shop("f2", f"bot-auto-order:{PREVIOUS}")
    before, compose = container(shops, shop), shop.compose_file.read_text()
    preflight = run(shops, shop, "preflight", "fault-missing", "--release-image", "bot-auto-order:does-not-exist")
    assert preflight.verdict == "NO-GO" and len(preflight.causes) == 1, preflight.tail()
    cause = preflight.entry["causes"][0]
    assert cause["item"] == "3.2+image" or "3.2+image" in cause["consequences"], cause
    assert preflight.outcome("3.2+image") == "error"
    said = preflight.message(cause["item"])
    assert said == ("the release image: no image bot-auto-order:does-not-exist on this machine: pull or load it "
                    "there (docker pull, docker load -i FILE), or build it from the checkout (--bot-dir without "
                    "--release-image)"), said
    assert f"{cause['item']} the release image: no image bot-auto-order:does-not-exist" in preflight.output
    after = container(shops, shop)  # not stopped, not recreated
    assert after["Image"] == before["Image"] and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert listed(shops, shop).startswith(f"bot-auto-order:{PREVIOUS} Up"), listed(shops, shop)
    assert shop.compose_file.read_text() == compose and not list(shop.folder.glob("compose.yml.before-*"))
    assert f"compose.yml names bot-auto-order:{PREVIOUS}" in " ".join(preflight.production_now()), preflight.tail()


async def test_docker_not_answering_is_said(shops, tmp_path):
    """DOCKER_HOST names a socket nobody listens on: 1.2 says Docker does not answer and what to do; what needs
    the release image meets the same fault (one cause), in a line, not a traceback."""
    shop = await shops.add_shop("f3", f"bot-auto-order:{PREVIOUS}")
    dead = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as sock:  # bound, never listening: connections are refused
        sock.bind(str(dead))
    preflight = run(shops, shop, "preflight", "fault-nodocker", env={"DOCKER_HOST": f"unix://{dead}"})
    assert preflight.verdict == "NO-GO" and preflight.causes == ["1.2"], preflight.tail()
    said = preflight.message("1.2")
    assert said == (f"Docker does not answer on this machine: Cannot connect to the Docker daemon at unix://{dead}. "
                    "Is the docker daemon running?; start the daemon (systemctl start docker) and check that this "
                    "user may use it (group docker)"), said
    assert preflight.cause("1.2").startswith("Docker does not answer on this machine: ")
    for item in ("1.5", "3.2+image", "5.3+release"):
        assert item in preflight.entry["causes"][0]["consequences"], preflight.entry["causes"]
    for item, result in preflight.entry["items"].items():
        if result["outcome"] in ("failed", "error"):
            assert untraced(result["message"] or ""), (item, result["message"])
    assert "production now: shop, read now: could not be read (Docker does not answer" in preflight.output
    assert listed(shops, shop).startswith(f"bot-auto-order:{PREVIOUS} Up")


async def test_a_compose_file_without_the_service(shops):
    """--service compose:nosuch: the compose file is named, with the services it has and what to give."""
    shop = await shops.add_shop("f4", f"bot-auto-order:{PREVIOUS}")
    preflight = run(shops, shop, "preflight", "fault-noservice", "--service", "compose:nosuch")
    assert preflight.verdict == "NO-GO" and preflight.causes == ["1.2"], preflight.tail()
    said = preflight.message("1.2")
    assert said == (f"{shop.compose_file} has no service 'nosuch' (its services: bot): give --service "
                    "compose:NAME with the service the shop's bot runs as"), said
    assert listed(shops, shop).startswith(f"bot-auto-order:{PREVIOUS} Up")


def database_container(shops: DockerShops) -> str:
    """The shops' PostgreSQL: the one container testcontainers started in this session."""
    from testcontainers.core.labels import LABEL_SESSION_ID, SESSION_ID
    found = shops.docker("ps", "-aq", "--filter", f"label={LABEL_SESSION_ID}={SESSION_ID}").stdout.split()
    assert len(found) == 1, f"expected the one PostgreSQL container, found {found}"
    return found[0]


async def answers(dsn: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
            continue
        await conn.close()
        return


async def test_the_database_container_stopped_during_preflight(shops):
    """The PostgreSQL container stops right before preflight: 1.3 NO-GO naming the database, nothing that
    changes production runs; the bot's container is left alone. Then it is started again for what follows."""
    shop = await shops.add_shop("f5", f"bot-auto-order:{PREVIOUS}")
    database, compose, image = database_container(shops), shop.compose_file.read_text(), shops.running_image(shop)
    shops.docker("stop", database)
    try:
        preflight = run(shops, shop, "preflight", "fault-nodatabase")
    finally:
        shops.docker("start", database)
        await answers(shops.database.admin_dsn)
    assert preflight.verdict == "NO-GO" and preflight.causes[0] == "1.3", preflight.tail()
    name, where = shop.dsn.rsplit("/", 1)[1], shop.dsn.split("@")[1].split("/")[0]
    said, password = preflight.message("1.3"), shop.dsn.split(":")[2].split("@")[0]
    assert said.startswith(f"cannot connect to database {name} on {where} as postgres: "), said
    assert "Check that the server runs and accepts connections" in said and password not in said, said
    assert preflight.cause("1.3").startswith(f"cannot connect to database {name} on {where}"), preflight.tail()
    assert untraced(said), said
    for action in ACTIONS:  # the backup, its copy, the indexes: none ran
        assert preflight.outcome(action) in (None, "not run"), (action, preflight.entry["items"].get(action))
    assert preflight.message("4.1") == "not run: 1.3 failed"
    assert shop.compose_file.read_text() == compose and not list(shop.folder.glob("compose.yml.before-*"))
    assert container(shops, shop)["Image"] == image
