"""One shop as bot-auto-order's scripts/provision_tenant.py lays it out: `<deployments>/bot-<slug>-<gateway>/`
(provision_tenant.py's --output, by default the checkout's deployments/), with compose.yml (the checkout's
docker-compose.template.yml with the image written literally and the container named), bot.env
(bot.env.template filled in from the settings), run.sh, logs/ and backups/. The templates are the release
checkout's; without one, the stand-in's (fixtures/standin-bot, the same files its checkout has).

The template is edited with PyYAML rather than by replacing text as provision_tenant.py does: the host-network
change below removes a block (ports:), which text replacement cannot do safely. Its comments are lost; the
keys, their order and the ${VAR:-default} references compose fills in at `up` stay as they are.

host_network (the default here): Docker's bridge is off on these machines (dockerd --bridge=none), so the
service runs with `network_mode: host` and without `ports:` (Docker discards published ports on the host
network), and the webhook server's port is written into compose.yml, since on the host network it is the
host's port. The webhook server binds 127.0.0.1 instead of 0.0.0.0: traffic between the shop, the fakes and
the tests stays on this machine.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from deploycheck.failure import CheckFailed
from deploycheck.resources import ROOT

STANDIN = ROOT / "fixtures" / "standin-bot"

COMPOSE_TEMPLATE = "docker-compose.template.yml"
ENV_TEMPLATE = "bot.env.template"
FOLDERS = ("logs", "backups/local", "backups/offsite", "logs/maintenance")
# bot-auto-order's run_tenant.sh sources bot.env into the shell (so compose can fill in ${PAKASIR_PORT} and
# the like), which breaks on a value with a space (BOT_STORE_NAME=Toko A runs `A`); --env-file gives compose
# the same variables without the shell reading them.
RUN_SH = """\
#!/usr/bin/env bash
# Starts (or recreates on a changed image) this shop's container; its settings are in bot.env.
set -euo pipefail
cd "$(dirname "$0")"
exec docker compose --env-file ./bot.env -f compose.yml up -d
"""


class TenantError(CheckFailed):
    pass


def provision(folder: Path, slug: str, gateway: str, image: str, settings: dict[str, str],
              host_network: bool = True, checkout: Path | None = None, volumes: tuple[str, ...] = (),
              labels: dict[str, str] | None = None) -> Path:
    """folder/bot-<slug>-<gateway>/ (folder: the deployments folder) running `image`, from the templates of
    `checkout` (default: the stand-in's). `settings` fill bot.env (DATABASE_URL, TELEGRAM_BOT_TOKEN, ports,
    Pakasir, ...): a name in the template gets the value, others are added at its end. `volumes` are mounts
    added to the template's (a rehearsal's outbound guard), `labels` the container's (a rehearsal's run label).
    Returns the tenant's folder."""
    name = f"bot-{slug}-{gateway}"
    tenant = Path(folder) / name
    source = Path(checkout) if checkout is not None else STANDIN
    templates = [source / COMPOSE_TEMPLATE, source / ENV_TEMPLATE]
    missing = [path.name for path in templates if not path.is_file()]
    if missing:
        raise TenantError(f"{source} has no {' and no '.join(missing)}: a tenant is provisioned from the release's "
                          "own templates (bot-auto-order has them at its top since 89a7fea)")
    if tenant.exists():
        raise TenantError(f"{tenant} already exists: remove it first, or give another slug or gateway")
    if any("\n" in str(value) for value in settings.values()):
        raise TenantError("a setting holds a line break, which bot.env cannot carry: give it on one line")

    compose = yaml.safe_load(templates[0].read_text())
    service = compose["services"]["bot"]
    service["image"] = image
    service["container_name"] = name
    if volumes:
        service["volumes"] = [*service.get("volumes", []), *volumes]
    if labels:
        service["labels"] = {**service.get("labels", {}), **labels}
    values = {"BOT_STORE_NAME": slug.replace("-", " ").title(), **{k: str(v) for k, v in settings.items()},
              "IMAGE_NAME": image, "STORE_SLUG": slug}
    if host_network:
        service.pop("ports", None)
        service["network_mode"] = "host"
        environment = service.setdefault("environment", {})
        environment["PAKASIR_HOST"] = "127.0.0.1"
        if "PAKASIR_PORT" in values:   # the host's port: fixed here, whatever environment compose later runs in
            environment["PAKASIR_PORT"] = values["PAKASIR_PORT"]

    for sub in FOLDERS:
        (tenant / sub).mkdir(parents=True, exist_ok=True)
    (tenant / "compose.yml").write_text(f"# {name}: provisioned by deploycheck from {COMPOSE_TEMPLATE}\n"
                                        + yaml.safe_dump(compose, sort_keys=False, allow_unicode=True))
    env = tenant / "bot.env"
    env.touch(mode=0o600)   # it holds the database password and the bot's token
    env.write_text(_fill(templates[1].read_text(), values))
    run = tenant / "run.sh"
    run.write_text(RUN_SH)
    run.chmod(0o755)
    return tenant


def _fill(template: str, values: dict[str, str]) -> str:
    lines, left = [], dict(values)
    for line in template.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in left:
            line = f"{key}={left.pop(key)}"
        lines.append(line)
    if left:
        lines += ["", "# given by deploycheck, not in the template"] + [f"{key}={value}" for key, value in left.items()]
    return "\n".join(lines) + "\n"
