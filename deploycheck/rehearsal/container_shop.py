"""The container rehearsal's shop (issue 26): the bot in its own image under docker compose, as a shop runs it.
The previous release's image is built from the checkout's own Dockerfile at --previous-ref (the release's is
built by preflight, 3.2+image), a tenant folder is laid out as provision_tenant.py lays one out, with the
rehearsal's settings (its database, token, admin, the fakes' addresses) in its bot.env, and its container
started as the shop's run.sh starts it. Every phase then goes through the Docker window (infra.compose), as
against a Docker shop.

The fakes' addresses reach every Python process in the container through deploycheck's outbound guard, mounted
into it (container_guard): the bot has no settings for them (bot-auto-order's are hard-coded), and the
stand-in's own (TELEGRAM_API_BASE_URL, PAKASIR_BASE_URL) are left unset, so both reach the fakes the same way.
A checkout without a Dockerfile, or --target embedded, runs the bot as a process behind the launcher instead."""
from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from deploycheck.failure import CheckFailed
from deploycheck.infra import bot_image, targets
from deploycheck.infra.compose import ComposeShop
from deploycheck.infra.host import BotHost
from deploycheck.rehearsal import botprocess, bots, tenant
from deploycheck.rehearsal.checkout import git

SLUG, GATEWAY = "rehearsal", "pakasir"


def previous_ref(checkout: Path, given: str | None, release_ref: str) -> str:
    """--previous-ref, else the tag before the release (bot-auto-order's own repository has no tags: give it)."""
    if given:
        return given
    try:
        return git(checkout, "describe", "--tags", "--abbrev=0", f"{release_ref}^")
    except RuntimeError:
        raise CheckFailed(f"no tag before {release_ref} in {checkout} to build the previous release's image from: "
                          "give --previous-ref") from None


async def open_shop(checkout: Path, previous: str, dsn: str, api, gateway, base_env: dict, admin_id: int,
                    folder: Path, say) -> ComposeShop:
    """The previous release's container running against the rehearsal's database, ready (it polls the fake)."""
    image = bot_image.build_release(checkout, previous, f"bot-auto-order:rehearsal-{previous}", None, say)
    port = botprocess.free_port()
    gateway.webhook_url = f"http://127.0.0.1:{port}/webhooks/pakasir"
    guard, settings = bots.container_settings(image.tag, Path(folder) / "guard", dsn, api, gateway, base_env, admin_id)
    settings.update({"PAKASIR_PORT": str(port), "BOT_WEBHOOK_PORT": str(botprocess.free_port())})
    made = tenant.provision(Path(folder) / "deployments", SLUG, GATEWAY, image.tag, settings, host_network=True,
                            checkout=checkout, volumes=tuple(guard.volumes()), labels=targets.run_label())
    shop = ComposeShop(BotHost.get("local"), "bot", str(made / "compose.yml"))
    shop.guard = guard
    try:
        await shop.start()
    except CheckFailed:
        await close_shop(shop)
        raise
    return shop


async def close_shop(shop: ComposeShop) -> None:
    """The shop's container and its compose project go, whatever failed."""
    await asyncio.to_thread(subprocess.run, ["docker", "compose", "-f", shop.compose_file, "down", "-v",
                                             "--remove-orphans"], capture_output=True, timeout=120)
