"""What one deployment's run found: a typed result per checklist item, the verdict (its causes first, each with
the failures it caused: pytest_plugin/causes.py), where the target (production, or the rehearsal's copy) stands,
what its target yielded when it opened, and what items handed later items in this run. Only the recorder
writes it (the underscore methods, called from recorder.py alone: a self-test holds that); tests and
fixtures read it."""
from __future__ import annotations

from types import MappingProxyType
from typing import TypedDict


class ItemResult(TypedDict):
    title: str
    phase: str
    kind: str
    gate: str | None
    outcome: str | None        # passed, failed, error, skipped, not run: the worst of its cases
    duration: float
    evidence: dict
    attestation: dict | None
    message: str | None        # the cause of the first case that did not pass ("not run: 7.3 failed"), short:
                               # a traceback reduced to its error line; "same error as 1.2 (see 1.2)"
    detail: str | None         # that case's full message and traceback (the message is its short form)
    fault: str | None          # what makes two failures the same error (messages.fault_of), else None
    cases: dict                # test id -> outcome


class Results:
    def __init__(self, deployment):
        self.deployment = deployment
        self._items: dict[str, ItemResult] = {}
        self._handed: dict[str, dict] = {}
        self._verdict: dict = {}
        self._production: dict | None = None
        self._incomplete: str | None = None
        self._target = None

    @property
    def items(self) -> MappingProxyType:
        return MappingProxyType(self._items)

    def get(self, item_id: str) -> ItemResult | None:
        return self._items.get(item_id)

    def outcome(self, item_id: str) -> str | None:
        return (self._items.get(item_id) or {}).get("outcome")

    def handed(self, item_id: str) -> dict:
        """What the item handed later items of this run (live values: never in the ledger)."""
        return MappingProxyType(self._handed.get(item_id, {}))

    @property
    def verdict(self) -> dict:
        return MappingProxyType(self._verdict)

    @property
    def production(self) -> dict | None:
        return self._production

    @property
    def incomplete(self) -> str | None:
        return self._incomplete

    @property
    def target(self):
        """What the deployment's target yielded when it opened (infra.targets.Target), or None."""
        return self._target

    # ------------------------------------------------------------------ the recorder's (recorder.py) alone
    def _result(self, entry) -> ItemResult:
        return self._items.setdefault(entry.id, ItemResult(
            title=entry.title, phase=entry.phase, kind=entry.kind, gate=entry.gate, outcome=None, duration=0.0,
            evidence={}, attestation=None, message=None, detail=None, fault=None,
            cases={}))

    def _hand(self, item_id: str, values: dict) -> None:
        self._handed.setdefault(item_id, {}).update(values)

    def _finish(self, verdict: dict, production: dict | None, incomplete: str | None) -> None:
        self._verdict, self._production, self._incomplete = dict(verdict), production, incomplete

    def _opened(self, target) -> None:
        self._target = target
