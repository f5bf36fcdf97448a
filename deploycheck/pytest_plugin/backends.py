"""Which backends a run gets, picked in one place from the options (like testinfra's backend table): the target
(live, container, embedded), the service (systemd, compose, the rehearsal's own process) and the bot
(the live one, the old reference bot, the stand-in, the operator's checkout). A new backend is one entry in a
table here and one class behind the interface its fixture already uses; no fixture asks which one it got."""
from __future__ import annotations

import os
from pathlib import Path

from deploycheck.infra import targets

# The target's opener per kind: (deployment, pg_bindir, pg_version) -> infra.targets.Target.
TARGETS = {
    "live": lambda deployment, bindir, version: targets.open_live(bindir, deployment.database),
    "container": lambda deployment, bindir, version: targets.open_container(version),
    "embedded": lambda deployment, bindir, version: (
        targets.on_server(deployment.fleet_server, f"db_{deployment.tenant}") if deployment.fleet_server
        else targets.open_embedded(bindir, version)),
}
SERVICES = ("systemd", "compose", "rehearsal")
BOTS = ("live", "reference", "standin", "checkout")


def target_kind(requested: str, env=os.environ) -> str:
    """--target, with `auto` resolved once: live when a database is configured, else a container when Docker
    answers, else the embedded server."""
    if requested != "auto":
        return requested
    if targets.live_dsn(env):
        return "live"
    return "container" if targets.docker_answers() else "embedded"


def service_kind(target: str, spec: str) -> str:
    """The rehearsal runs the bot as its own process; live: --service systemd:UNIT or compose:SERVICE."""
    return "rehearsal" if target != "live" else spec.partition(":")[0]


def bot_kind(target: str, bot_dir: Path | None) -> str:
    """Live: the bot the service runs. A rehearsal: the operator's checkout (--bot-dir), the old reference
    bot's layout (bot/main.py), or the stand-in the rehearsal builds."""
    if target == "live":
        return "live"
    if bot_dir is None:
        return "standin"
    return "reference" if is_reference(bot_dir) else "checkout"


def is_reference(bot_dir: str | Path) -> bool:
    """deploycheck's old reference bot (bot/main.py), not bot-auto-order's layout (src/main.py)."""
    return (Path(bot_dir) / "bot" / "main.py").is_file()


def open_target(deployment, bindir: Path | None, version: int | None) -> targets.Target:
    return TARGETS[deployment.target](deployment, bindir, version)
