"""The run: its settings (checklist, operator, attestations, --execute), its deployments (frozen values: one,
or in a fleet's wave one per tenant) and the decisions the plugin takes about it (an override, a tenant's
refused window). What the run finds is each deployment's Results, which only the recorder writes."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType

import pytest

from deploycheck import checklist as checklist_data
from deploycheck.pytest_plugin.deployment import Deployment
from deploycheck.pytest_plugin.results import Results
from deploycheck.redact import Redactor

STATE = pytest.StashKey["RunState"]()
EVIDENCE = pytest.StashKey[dict]()
HANDED = pytest.StashKey[dict]()        # what an item hands later items of this run (the checklist's `hands`)
RESULTS = pytest.StashKey[dict]()       # each deployment's Results, by tenant (None: the one deployment)


@dataclass
class RunState:
    checklist: checklist_data.Checklist
    execute: bool
    operator: str
    attestations: dict
    redactor: Redactor
    label: str
    stamp: str
    deployments: MappingProxyType        # tenant (None outside a fleet's wave) -> Deployment, in fleet order
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    full_rehearsal: bool = False   # plain `pytest`, no target: deploy, verify, roll back, deploy again
    in_run: set = field(default_factory=set)         # the items selected for this run
    override: dict | None = None                     # --override: why earlier phases' verdicts were overridden
    refused: dict = field(default_factory=dict)      # tenant -> why its window is refused (safety.refuse_window)
    redeployed: set = field(default_factory=set)     # tenants whose second deployment (full rehearsal) began
    html_path: Path | None = None
    record_messages: list = field(default_factory=list)

    @property
    def base(self) -> Deployment:
        """The deployment the options describe (a fleet's first tenant stands for them in a wave)."""
        return next(iter(self.deployments.values()))

    @property
    def rehearsal(self) -> bool:
        return self.base.rehearsal

    @property
    def fleet(self) -> bool:
        return any(tenant is not None for tenant in self.deployments)

    def deployment_of(self, node) -> Deployment:
        """The deployment a test belongs to: its tenant's in a fleet's wave (the parametrized `deployment`)."""
        found = getattr(node, "deployment", None)
        callspec = getattr(node, "callspec", None)
        if found is None and callspec is not None:
            found = callspec.params.get("deployment")
        return found if isinstance(found, Deployment) else self.base

    def json_path(self, deployment: Deployment) -> Path:
        """A deployment's JSON report of this run, beside its ledger."""
        return deployment.reports_dir / f"{self.label}-{self.stamp}.json"


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def state_of(config: pytest.Config) -> RunState | None:
    return config.stash.get(STATE, None)


def results_of(config: pytest.Config, deployment: Deployment) -> Results:
    """A deployment's results: empty until the recorder records (a fleet wave's controller records none)."""
    registry = config.stash.setdefault(RESULTS, {})
    return registry.setdefault(deployment.tenant, Results(deployment))


def checklist_item(node: pytest.Item):
    return getattr(node, "checklist_item", None)


@dataclass(frozen=True)
class Run:
    """What a test sees of its run (the `run` fixture): the run's settings, its deployment, its results."""
    state: RunState
    deployment: Deployment
    results: Results

    @property
    def deployment_id(self) -> str:
        return self.deployment.id

    @property
    def reports_dir(self) -> Path:
        return self.deployment.reports_dir

    @property
    def tenant(self) -> str | None:
        return self.deployment.tenant

    @property
    def rehearsal(self) -> bool:
        return self.deployment.rehearsal

    @property
    def checklist(self) -> checklist_data.Checklist:
        return self.state.checklist

    @property
    def attestations(self) -> dict:
        return self.state.attestations

    @property
    def redactor(self) -> Redactor:
        return self.state.redactor

    @property
    def stamp(self) -> str:
        return self.state.stamp

    @property
    def execute(self) -> bool:
        return self.state.execute

    def scratch_name(self, base: str) -> str:
        return self.deployment.scratch_name(base, self.state.stamp)
