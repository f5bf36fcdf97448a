"""Attestations: a person's word that a manual item was done (who, when, what).

Given on the command line (`--attest 2.2="Owner and CS notified"`) or in a TOML file
(`--attestations FILE`), where each item is either a string or a table with text, by, at:

    "2.2" = "Owner and CS notified on the ops group"
    ["2.4"]
    text = "Primary: Rina, Backup: Agus"
    by = "rina"
"""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

REHEARSAL_SKIP = "manual item: attest it against a live target"


@dataclass(frozen=True)
class Attestation:
    item: str
    text: str
    by: str
    at: str

    def as_dict(self) -> dict:
        return asdict(self)

    def evidence(self) -> dict:
        """How an attestation shows in its item's evidence (and so in the report and the ledger)."""
        return {"Attestation": self.text, "Attested By": self.by, "Attested At": self.at}


def from_evidence(evidence: dict) -> dict | None:
    """The ledger's attestation of an item, read back from its evidence."""
    if "Attestation" not in evidence:
        return None
    return {"text": evidence["Attestation"], "by": evidence.get("Attested By"), "at": evidence.get("Attested At")}


class AttestationError(ValueError):
    pass


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def parse(cli: list[str], file: Path | None, operator: str, known: set[str]) -> dict[str, Attestation]:
    """Attestations by item id; command-line ones override the file's."""
    found: dict[str, Attestation] = {}
    if file:
        try:
            data = tomllib.loads(Path(file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AttestationError(f"--attestations {file}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise AttestationError(f"--attestations {file} is not valid TOML: {exc}. "
                                   'Write one line per item, e.g. "2.2" = "Owner notified".') from None
        for item_id, value in data.items():
            if isinstance(value, str):
                value = {"text": value}
            if not isinstance(value, dict) or not str(value.get("text", "")).strip():
                raise AttestationError(f"--attestations {file}: item {item_id} needs a non-empty text "
                                       f'("{item_id}" = "what was done", or a table with text = ...)')
            found[item_id] = Attestation(item_id, str(value["text"]).strip(), str(value.get("by", operator)),
                                         str(value.get("at", now())))
    for raw in cli:
        item_id, sep, text = raw.partition("=")
        item_id, text = item_id.strip(), text.strip().strip('"').strip()
        if not sep or not text:
            raise AttestationError(f'--attest {raw!r}: expected ITEM="what was done", e.g. --attest 2.2="Owner notified"')
        found[item_id] = Attestation(item_id, text, operator, now())
    unknown = sorted(set(found) - known)
    if unknown:
        raise AttestationError(f"attestations for items not in the checklist: {', '.join(unknown)}")
    return found


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


# Set by the plugin; here to avoid an import cycle.
STATE = pytest.StashKey()
EVIDENCE = pytest.StashKey[dict]()
