"""Collection: phase markers and checklist order from the data, the rehearsal's second round, and every
item that no test implements collected from the checklist file as an attestation test."""
from __future__ import annotations

from pathlib import Path

import pytest

from deploycheck.attest import Attestation
from deploycheck.pytest_plugin.state import EVIDENCE, STATE, checklist_item, state_of

REHEARSAL_SKIP = "manual item: attest it against a live target"


def require(item, attestation: Attestation | None, rehearsal: bool) -> Attestation:
    """The rule for a manual item: attested passes; unattested fails on live, is skipped in a rehearsal."""
    if attestation:
        return attestation
    if rehearsal:
        pytest.skip(REHEARSAL_SKIP)
    pytest.fail(f"{item.id} {item.title}: no attestation. This is a manual step: do it, then record who did it "
                f'with --attest {item.id}="what was done" or in the --attestations file.', pytrace=False)


class AttestationItem(pytest.Item):
    """Stands for a checklist item that has no automated test (or is manual by nature)."""

    def __init__(self, *, checklist_item, **kwargs):
        super().__init__(**kwargs)
        self.checklist_item = checklist_item

    def runtest(self) -> None:
        state = self.config.stash[STATE]
        attestation = require(self.checklist_item, state.attestations.get(self.checklist_item.id), state.rehearsal)
        self.stash[EVIDENCE].update(attestation.evidence())

    def reportinfo(self):
        return self.path, None, f"{self.checklist_item.id} {self.checklist_item.title} (attestation)"


class ChecklistFile(pytest.File):
    """The checklist file, collected after the test folders (it is the last testpath): every item that no
    test implements, or that is manual by nature, stands here as an attestation test."""

    def collect(self):
        covered = {marker.args[0] for node in self.session.items if (marker := node.get_closest_marker("item"))}
        state = state_of(self.config)
        for entry in state.checklist.ordered():
            for tenant, deployment in state.deployments.items() if entry.id not in covered else ():
                node = AttestationItem.from_parent(self, name=f"{entry.id}[{tenant}]" if tenant else entry.id,
                                                   checklist_item=entry)
                node.deployment = deployment  # in a fleet's wave, once per tenant
                yield node


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    state = state_of(parent.config)
    if state and file_path == state.checklist.path:
        return ChecklistFile.from_parent(parent, path=file_path)


REDEPLOYED = ("deploy", "postdeploy")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The full rehearsal deploys twice: once, then again after the rollback (Sqitch's deploy, verify,
    revert, verify). Deploy and postdeploy tests get a second round, ordered after the rollback."""
    state, marker = state_of(metafunc.config), metafunc.definition.get_closest_marker("item")
    entry = state.checklist.items.get(str(marker.args[0])) if state and marker and marker.args else None
    if entry and state.full_rehearsal and entry.phase in REDEPLOYED:
        metafunc.fixturenames.append("rehearsal_round")  # a parameter only: no test function takes it
        metafunc.parametrize("rehearsal_round", [1, 2], ids=["deploy", "redeploy"])


def _round(node: pytest.Item) -> int:
    callspec = getattr(node, "callspec", None)
    return callspec.params.get("rehearsal_round", 1) if callspec else 1



@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = state_of(config)
    if state is None:
        return
    data = state.checklist
    for node in items:
        marker = node.get_closest_marker("item")
        if marker is None:
            continue
        item_id = str(marker.args[0]) if marker.args else ""
        if item_id not in data.items:
            raise pytest.UsageError(f"{node.nodeid}: @pytest.mark.item({item_id!r}) is not an item of {data.title}")
        node.checklist_item = data[item_id]
    for node in items:
        entry = checklist_item(node)
        node.stash[EVIDENCE] = {}
        if entry:
            node.add_marker(getattr(pytest.mark, entry.phase))
    position = {id(n): i for i, n in enumerate(items)}
    tenants = {name: i for i, name in enumerate(state.deployments)}
    items.sort(key=lambda n: (tenants[state.deployment_of(n).tenant], _round(n),
                              checklist_item(n).key if checklist_item(n) else (10**6,), position[id(n)]))

