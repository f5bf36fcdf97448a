"""A fleet of Docker shops on real Docker (issue 24 item 5): three tenants as provision_tenant.py lays them out in
one deployments/ folder (docker_shop.py's DockerShops.add_shop: one PostgreSQL 15 container with a database each,
the fakes shared), taken through `pytest --fleet deployments/ --waves 1,all -m PHASE --execute`, each phase its
own process as the operator runs it. No --service, --compose-file or DATABASE_URL on the command line: each
tenant's own compose.yml (service compose:bot) and bot.env say it all.

shop2 has the kind of fault one shop among many has: a payment edited by hand to a negative amount, which the
v0.7.0 migration's CHECK refuses (deploycheck.fleet.rehearsal.plant_fault). The three share one fake Telegram and
so one bot token: the fleet runs them one at a time within a wave ("one per token").

- preflight: the release image is built once, by the fleet's driver, and every tenant checks that one image
  (its id in each one's 3.2+image); shop2 is NO-GO at 5.3;
- deploy: the canary (shop1) moves onto the release and stays there; shop2's window is refused (its own
  preflight is NO-GO): its container untouched on its previous image; shop3, its wave-mate, moves; the fleet
  says it halted at wave 2;
- rollback: only the shops that moved (shop1, shop3) go back, each to its own previous image id (shop3's
  differs from shop1's); shop2 is left alone, its database not restored."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from deploycheck.fleet.rehearsal import plant_fault
from deploycheck.rehearsal.refbot import REHEARSAL_ADMIN_ID, REHEARSAL_STORE_NAME
from deploycheck.record.ledger import Ledger
from docker_shop import ATTESTATIONS, PHASE_TIMEOUT, PREVIOUS, RELEASE, ROOT, DockerShops, Shop, opened

pytestmark = pytest.mark.slow

FLEET = "docker-fleet"
# shop3 runs a previous image of its own (the same code, another id), so "back on its own previous image" shows
SHOP3_PREVIOUS = f"bot-auto-order:{PREVIOUS}-shop3"


@pytest.fixture(scope="module")
def shops(docker_daemon, tmp_path_factory):
    with opened(docker_daemon, tmp_path_factory.mktemp("docker-fleet")) as made:
        yield made


def fleet(shops: DockerShops, phase: str, *extra: str) -> subprocess.CompletedProcess:
    """`pytest --fleet deployments/ -m PHASE --execute` as the fleet's operator runs it, in a process of its own."""
    attestations = shops.folder / "attestations.toml"
    attestations.write_text((ROOT / "fixtures" / "rehearsal-attestations.toml").read_text() + ATTESTATIONS)
    argv = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "deploycheck.pytest_plugin",
            "-p", "no:cacheprovider", "--fleet", str(shops.folder / "deployments"), "--waves", "1,all", "-m", phase,
            "--execute", "--bot-dir", str(shops.checkout), "--release-ref", RELEASE, "--previous-ref", PREVIOUS,
            "--deployment-id", FLEET, "--reports-dir", str(shops.folder / "reports"), "--attestations",
            str(attestations), "--backup-copy-to", str(shops.folder / "safe"),
            "--maintenance-message", "🔧 Maintenance until 03:00 UTC (self-test)", *extra]
    env = {**os.environ, **shops.docker_env, "DEPLOYCHECK_TEST_FAKES": str(shops.fakes.state_file),
           "TELEGRAM_ADMIN_IDS": str(REHEARSAL_ADMIN_ID), "BOT_STORE_NAME": REHEARSAL_STORE_NAME, "CI": ""}
    for name in ("PYTEST_XDIST_WORKER", "DATABASE_URL"):
        env.pop(name, None)
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3 * PHASE_TIMEOUT)
    (shops.folder / f"fleet-{phase}.out").write_text(done.stdout + done.stderr)  # the operator's terminal, kept
    return done


def tenant(shop: Shop) -> str:
    return shop.folder.name.removeprefix("bot-")  # the deployments/ loader's name: shop1-pakasir


def verdicts(shops: DockerShops) -> dict[str, tuple[int, str]]:
    data = json.loads((shops.folder / "reports" / FLEET / "fleet.json").read_text())
    return {row["name"]: (row["wave"], row["verdict"]) for row in data["tenants"]}


def latest(shops: DockerShops, shop: Shop) -> dict:
    return Ledger(shops.folder / "reports" / f"{FLEET}--{tenant(shop)}" / "ledger.jsonl").read()[-1]


def container_id(shops: DockerShops, shop: Shop) -> str:
    return shops.docker("inspect", "-f", "{{.Id}}", shop.container).stdout.strip()


def tag_own_previous(shops: DockerShops) -> None:
    """SHOP3_PREVIOUS: the previous release with one label more, so an image of another id."""
    context = shops.folder / "shop3-image"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM bot-auto-order:{PREVIOUS}\nLABEL deploycheck.selftest=shop3\n")
    done = subprocess.run(["docker", "build", "--network", "host", "-t", SHOP3_PREVIOUS, str(context)],
                          env={**os.environ, **shops.docker_env, "DOCKER_BUILDKIT": "0"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def shown(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"


async def test_a_fleet_of_docker_shops_canary_halt_and_rollback_of_the_moved_only(shops):
    began = time.monotonic()
    tag_own_previous(shops)
    shop1 = await shops.add_shop("shop1", f"bot-auto-order:{PREVIOUS}")
    shop2 = await shops.add_shop("shop2", f"bot-auto-order:{PREVIOUS}")
    shop3 = await shops.add_shop("shop3", SHOP3_PREVIOUS)
    everyone = (shop1, shop2, shop3)
    previous = {shop.slug: shops.running_image(shop) for shop in everyone}
    assert previous["shop1"] == previous["shop2"] != previous["shop3"]
    planted = await plant_fault(shop2.dsn)

    # ------------------------------------------------------------------------------------------- preflight
    done = fleet(shops, "preflight")
    assert done.returncode == 1, shown(done)  # the fleet is NO-GO: shop2
    assert verdicts(shops) == {"shop1-pakasir": (1, "GO"), "shop2-pakasir": (2, "NO-GO"),
                               "shop3-pakasir": (2, "GO")}, shown(done)
    assert "=== fleet docker-fleet: wave 1: shop1-pakasir ===" in done.stdout
    assert "wave 2 (batch 1 of 2): shop2-pakasir ===" in done.stdout  # one bot token: one at a time
    assert "5.3" in latest(shops, shop2)["failed_items"], planted
    # Built once, by the driver, before the first wave; each tenant checked that very image.
    built = json.loads((shops.folder / "reports" / FLEET / "release-image.json").read_text())
    assert built["tag"] == f"bot-auto-order:{RELEASE}" and built["id"].startswith("sha256:") and built["bases"]
    assert done.stdout.count(f"building bot-auto-order:{RELEASE} from {RELEASE}") == 1, shown(done)
    for shop in everyone:
        image = latest(shops, shop)["items"]["3.2+image"]
        assert image["outcome"] == "passed" and image["evidence"]["Image Id"] == built["id"], image
        assert image["evidence"]["Built From"] == "as given (--release-image)", image  # not built again there
        status = latest(shops, shop)["items"]["1.2"]["evidence"]  # the tenant's checklist, the Docker way
        assert status["Image Id"] == previous[shop.slug] and "Docker Shop" in status, status
    untouched = (container_id(shops, shop2), shop2.compose_file.read_text())

    # ---------------------------------------------------------------------------------------------- deploy
    done = fleet(shops, "deploy")
    assert done.returncode == 1, shown(done)
    assert verdicts(shops) == {"shop1-pakasir": (1, "GO"), "shop2-pakasir": (2, "NO-GO"),
                               "shop3-pakasir": (2, "GO")}, shown(done)
    assert ("fleet NO-GO: 2 on the release (GO), 1 NO-GO, 0 not started of 3 tenants; halted at wave 2 "
            "(NO-GO: shop2-pakasir); the earlier waves stay on the release") in done.stdout, shown(done)
    assert "building bot-auto-order" not in done.stdout  # the window deploys what preflight checked, by its id
    # The canary is on the release, and stays there after wave 2's NO-GO; so is shop3, its wave-mate.
    assert shops.running_image(shop1) == shops.running_image(shop3) == built["id"]
    assert f"image: {built['id']}" in shop1.compose_file.read_text()
    assert list(shop1.folder.glob("compose.yml.before-*"))
    # shop2's window was refused: its container not even recreated, its compose file as it was.
    stop = latest(shops, shop2)["items"]["6.1"]
    assert stop["outcome"] == "not run" and "preflight" in stop["message"], stop
    assert (container_id(shops, shop2), shop2.compose_file.read_text()) == untouched
    assert shops.running_image(shop2) == previous["shop2"] and not list(shop2.folder.glob("compose.yml.before-*"))

    # -------------------------------------------------------------------------------------------- rollback
    done = fleet(shops, "rollback")
    assert done.returncode == 0, shown(done)
    assert verdicts(shops) == {"shop1-pakasir": (1, "rolled back"), "shop2-pakasir": (2, "NO-GO"),
                               "shop3-pakasir": (2, "rolled back")}, shown(done)
    assert "shop2-pakasir: left alone" in done.stdout
    for shop in (shop1, shop3):  # each back on its own previous image, by its id
        assert shops.running_image(shop) == previous[shop.slug], shop.slug
        assert latest(shops, shop)["phases"] == ["rollback"] and latest(shops, shop)["verdict"] == "GO"
    assert latest(shops, shop2)["phases"] == ["deploy"]  # no rollback ran for it: its database is not restored
    assert (container_id(shops, shop2), shop2.compose_file.read_text()) == untouched

    password = shop1.dsn.split(":")[2].split("@")[0]
    leaked = [str(path) for path in (shops.folder / "reports").rglob("*") if path.is_file()
              and path.suffix != ".dump" and password in path.read_text(errors="replace")]
    assert not leaked, f"the database password is in {leaked}"
    print(f"the fleet's phases took {time.monotonic() - began:.0f} s")
