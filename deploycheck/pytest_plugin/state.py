"""The run's state: what this run is (deployment, target, operator, attestations) and what it found so far.
Only the plugin writes it; fixtures and tests read it through `run`."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deploycheck import checklist as checklist_data
from deploycheck.infra import targets
from deploycheck.record.ledger import Ledger
from deploycheck.redact import Redactor

STATE = pytest.StashKey["RunState"]()
EVIDENCE = pytest.StashKey[dict]()


@dataclass
class RunState:
    checklist: checklist_data.Checklist
    deployment_id: str
    target_kind: str
    execute: bool
    operator: str
    host: str
    attestations: dict
    redactor: Redactor
    reports_dir: Path
    label: str
    stamp: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: str = ""
    results: dict = field(default_factory=dict)
    target: targets.Target | None = None
    bot_commit: str | None = None
    full_rehearsal: bool = False   # plain `pytest`, no target: deploy, verify, roll back, deploy again
    redeploying: bool = False
    bot_dir: str | None = None     # set by the bot_dir fixture
    record_message: str | None = None
    html_path: Path | None = None
    verdict: dict = field(default_factory=dict)
    in_run: set = field(default_factory=set)         # the items selected for this run
    override: dict | None = None                     # --override: why earlier phases' verdicts were overridden
    incomplete: str | None = None                    # why the run did not run every selected test
    production: dict | None = None                   # after a NO-GO: where production stands, what to do next
    fleet: dict | None = None                        # in a fleet's wave: {"id", "run", "wave", "tenant"} (fleet.py)
    fleet_server: str | None = None                  # a fleet rehearsal's shared server (admin DSN)
    refused: str | None = None                       # a fleet tenant's window refused (safety.refuse_window)
    fleet_fault: bool = False                        # a fleet rehearsal's planted fault is in this tenant

    @property
    def tenant(self) -> str | None:
        return self.fleet["tenant"] if self.fleet else None

    def scratch_name(self, base: str) -> str:
        """A scratch database's name, unique on a server that several tenants of a fleet share."""
        name = f"{base}_{self.stamp.lower()}"
        return f"{name}_{self.tenant}"[:63] if self.tenant else name

    @property
    def rehearsal(self) -> bool:
        return self.target_kind != "live"

    @property
    def json_path(self) -> Path:
        """The run's JSON report, beside its ledger (a fleet's worker moves reports_dir to its tenant's)."""
        return self.reports_dir / f"{self.label}-{self.stamp}.json"

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.reports_dir / "ledger.jsonl")


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")



def state_of(config: pytest.Config) -> RunState | None:
    return config.stash.get(STATE, None)


def checklist_item(node: pytest.Item):
    return getattr(node, "checklist_item", None)

