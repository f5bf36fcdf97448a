"""The Docker window against real Docker, as production (issue 24): a Docker shop built on this machine
(docker_shop.py) taken through the live phases with --execute, each its own `pytest -m PHASE` process, as its
operator runs them: preflight, deploy, postdeploy, smoke, monitor, rollback, and deploy again. Which code
answers is proven by the stand-in's /version: the release's after 10.1, the previous one after 16.3 + 16.4."""
from __future__ import annotations

import pytest

from docker_shop import PREVIOUS, RELEASE, opened

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shops(docker_daemon, tmp_path_factory):
    with opened(docker_daemon, tmp_path_factory.mktemp("docker-shops")) as made:
        yield made


def verdict(done) -> str:
    tail = done.stdout[-4000:]
    assert done.returncode == 0, f"exit {done.returncode}:\n{tail}\n{done.stderr[-2000:]}"
    return tail


async def test_a_docker_shop_through_every_live_phase(shops):
    shop = await shops.add_shop("shop1", f"bot-auto-order:{PREVIOUS}")
    previous_id = shops.running_image(shop)
    assert "0.6.0" in await shops.version_answered(), shops.logs(shop)[-3000:]
    deployment = "docker-shop1"

    verdict(shops.phase(shop, "preflight", deployment))
    assert shops.recorded(deployment, "1.2")["Image Id"] == previous_id  # what a rollback goes back to

    verdict(shops.phase(shop, "deploy", deployment))
    assert f"bot-auto-order:{RELEASE}" in shop.compose_file.read_text()
    assert list(shop.folder.glob("compose.yml.before-*")), "the compose file before 10.1 is kept beside it"
    assert "0.7.0" in await shops.version_answered()  # the release's code answers, not the old container's

    for phase in ("postdeploy", "smoke", "monitor"):
        verdict(shops.phase(shop, phase, deployment))

    # Someone moves the previous release's tag meanwhile: the rollback goes to what the shop ran, by its id.
    shops.docker("tag", f"bot-auto-order:{RELEASE}", f"bot-auto-order:{PREVIOUS}")
    verdict(shops.phase(shop, "rollback", deployment))
    assert shops.running_image(shop) == previous_id
    assert f"image: {previous_id}" in shop.compose_file.read_text()
    assert "0.6.0" in await shops.version_answered()

    verdict(shops.phase(shop, "preflight", deployment))
    verdict(shops.phase(shop, "deploy", deployment))
    assert "0.7.0" in await shops.version_answered()
    password = shop.dsn.split(":")[2].split("@")[0]
    leaked = [str(path) for path in (shops.folder / "reports").rglob("*") if path.is_file()
              and path.suffix != ".dump" and password in path.read_text(errors="replace")]
    assert not leaked, f"the database password is in {leaked}"
