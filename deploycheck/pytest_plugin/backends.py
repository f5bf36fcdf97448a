"""Which backends a run gets, picked in one place from the options (like testinfra's backend table): the target
(live, container, embedded), the service (systemd, compose, the rehearsal's own process) and the bot
(the live one, the old reference bot, the stand-in, the operator's checkout). A new backend is one entry in a
table here and one class behind the interface its fixture already uses; no fixture asks which one it got."""
from __future__ import annotations

import os
from pathlib import Path

from deploycheck.failure import CheckFailed
from deploycheck.infra import images, targets
from deploycheck.infra.compose import ComposeShop
from deploycheck.infra.host import BotHost
from deploycheck.infra.service import Systemd

# The target's opener per kind: (deployment, options, say) -> infra.targets.Target.
TARGETS = {
    "live": lambda deployment, option, say: targets.open_live(option.pg_bindir, deployment.database),
    "container": lambda deployment, option, say: targets.open_container(option.pg_version, option.pg_image, say),
    "embedded": lambda deployment, option, say: (
        targets.on_server(deployment.fleet_server, f"db_{deployment.tenant}") if deployment.fleet_server
        else targets.open_embedded(option.pg_bindir, option.pg_version)),
}


def target_kind(option, env=os.environ) -> tuple[str, str]:
    """--target, with `auto` resolved once, and why: live when a database is configured, else a container when
    Docker answers and its PostgreSQL image is there or can be built here, else the embedded server."""
    if option.target != "auto":
        return option.target, f"--target {option.target}"
    if targets.live_dsn(env):
        return "live", "a database is configured (DATABASE_URL or POSTGRES_*)"
    if not targets.docker_answers():
        return "embedded", "no Docker daemon answers (a container rehearsal needs one)"
    version = option.pg_version or targets.OLDEST
    if option.pg_image or images.has_image(images.tag_of(version)) or images.can_build(version):
        return "container", "Docker answers and its PostgreSQL image is there or can be built"
    return "embedded", (f"Docker answers, but there is no PostgreSQL {version} image and none can be built here "
                        "(give --pg-image)")


# The live service per kind of --service KIND:NAME: (host, name, deployment) -> infra.service.Service.
SERVICES = {
    "systemd": lambda host, name, deployment: Systemd(host, name or "bot-auto-order"),
    "compose": lambda host, name, deployment: ComposeShop(host, name or "bot", deployment.compose_file),
}


def live_service(deployment, host):
    kind, _, name = deployment.service_name.partition(":")
    if kind not in SERVICES:
        raise CheckFailed(f"--service {deployment.service_name!r}: use systemd:UNIT or compose:SERVICE")
    return SERVICES[kind](host, name, deployment)


def measured_now(deployment) -> list[str]:
    """After a NO-GO, what a Docker shop runs, read now (the checklist data's statements say what should be):
    the container's state, the image id it runs and what its compose file names."""
    if deployment.bot != "image" or deployment.rehearsal:
        return []
    try:
        shop = live_service(deployment, BotHost.get(deployment.host))
        running = shop.running_image()
        return [f"shop, read now: container {running['Container'] or '(none)'} is {shop.status()}, running "
                f"{running['Image Id'] or 'no image'}; {deployment.compose_file} names {running['Image']}"]
    except CheckFailed as exc:
        return [f"shop, read now: could not be read ({exc})"]


def service_kind(target: str, spec: str, bot: str = "") -> str:
    """Live: --service systemd:UNIT or compose:SERVICE. A rehearsal runs the bot as its own process, or, the bot
    in its image (a container rehearsal), under compose."""
    if target != "live":
        return "compose" if bot == "image" else "rehearsal"
    return spec.partition(":")[0]


def bot_kind(target: str, bot_dir: Path | None, service: str = "systemd:", host: str = "local") -> str:
    """Live: the bot the service runs, from a checkout on the host, or in a Docker shop (compose:SERVICE) the
    release image. A rehearsal: the operator's checkout (--bot-dir), the old reference bot's layout
    (bot/main.py), or the stand-in the rehearsal builds."""
    if target == "live":
        return "image" if service.partition(":")[0] == "compose" else "live"
    local = host.partition("://")[0] in ("local", "")  # the rehearsal's Docker is this machine's
    if target == "container" and local and (bot_dir is None or (Path(bot_dir) / "Dockerfile").is_file()):
        return "image"  # the bot in its own image too, under compose, as a shop runs it
    if bot_dir is None:
        return "standin"
    return "reference" if (Path(bot_dir) / "bot" / "main.py").is_file() else "checkout"


def open_target(deployment, option, say=print) -> targets.Target:
    return TARGETS[deployment.target](deployment, option, say)
