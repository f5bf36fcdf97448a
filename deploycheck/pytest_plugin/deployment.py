"""What one deployment is: its id, reports folder and ledger, which target, the database, the bot's host,
service and checkout, the tenant. Built once from the options before collection (a fleet's wave: once per
tenant, by the fleet plugin), never changed during the run, and handed to fixtures and tests by the
`deployment` fixture, which a fleet parametrizes per tenant the way pytest-testinfra parametrizes `host`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from deploycheck.record.ledger import Ledger


@dataclass(frozen=True)
class Deployment:
    id: str
    reports_dir: Path
    target: str                          # live | container | embedded: `auto` resolved once, up front
    service: str                         # systemd | compose | rehearsal (the backend table: backends.py)
    bot: str                             # live | image | reference | standin | checkout
    host: str = "local"                  # a pytest-testinfra spec
    service_name: str = "systemd:bot-auto-order"   # --service as given (systemd:UNIT, compose:SERVICE)
    compose_file: Path | None = None
    bot_dir: Path | None = None          # the operator's checkout (--bot-dir); a rehearsal copies it
    bot_env: Path | None = None
    release_image: str | None = None     # a Docker shop's release as pushed (--release-image)
    target_reason: str = ""              # why that target (said in the run's header)
    database: str | None = None          # live: the connection string; a rehearsal opens its own
    tenant: str | None = None
    fleet_id: str | None = None          # in a fleet's wave: the fleet's deployment id, the rollout's run, the wave
    fleet_run: str | None = None
    fleet_wave: int | None = None
    fleet_server: str | None = None      # a fleet rehearsal's shared server (admin DSN)
    fleet_fault: bool = False            # a fleet rehearsal's planted fault is in this tenant

    @property
    def fleet(self) -> dict:
        """{"id", "run", "wave", "tenant"} in a fleet's wave (the ledger entry's `fleet`); empty outside one."""
        return {"id": self.fleet_id, "run": self.fleet_run, "wave": self.fleet_wave,
                "tenant": self.tenant} if self.fleet_id else {}

    @property
    def rehearsal(self) -> bool:
        return self.target != "live"

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.reports_dir / "ledger.jsonl")

    def scratch_name(self, base: str, stamp: str) -> str:
        """A scratch database's name, unique on a server that several tenants of a fleet share."""
        name = f"{base}_{stamp.lower()}"
        return f"{name}_{self.tenant}"[:63] if self.tenant else name

    def for_tenant(self, name: str, run: str, wave: int, **settings) -> Deployment:
        """The same run's deployment of one tenant of a fleet: its own id, folder and ledger, its settings.
        A tenant's own service (`service_name`, e.g. compose:bot of a deployments/ folder) picks its service and
        bot kinds as --service does for one deployment: a Docker tenant's bot is its image, whatever --service
        the fleet's command line left at its default."""
        tenant_id = f"{self.id}--{name}"
        given = {key: value for key, value in settings.items() if value is not None}
        if "service_name" in given:
            from deploycheck.pytest_plugin import backends  # here: backends reaches into infra, this module does not
            spec = given["service_name"]
            given.setdefault("service", backends.service_kind(self.target, spec))
            given.setdefault("bot", backends.bot_kind(self.target, given.get("bot_dir", self.bot_dir), spec))
        return dataclasses.replace(self, id=tenant_id, reports_dir=self.reports_dir.parent / tenant_id, tenant=name,
                                   fleet_id=self.id, fleet_run=run, fleet_wave=wave, **given)
