"""The checklist as data: items, phases, gates and blanks, read from checklists/<release>.toml."""
from __future__ import annotations

import tomllib
import dataclasses
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from deploycheck.resources import ROOT

DEFAULT_PATH = ROOT / "checklists" / "v0.7.0.toml"
PHASES = ("preflight", "deploy", "postdeploy", "smoke", "monitor", "rollback")
KINDS = ("check", "action", "record", "manual")


def item_key(item_id: str) -> tuple:
    """Checklist order: 1.2 < 1.10 < 2.1 (numeric per part, not text order); a check beyond the checklist
    (`12.2+stock`) right after the item it extends."""
    base, _, extra = item_id.partition("+")
    return tuple(int(part) for part in base.split(".")) + ((1, extra) if extra else ())


OUTCOMES = ("passed", "failed", "not run")
# What an attestation puts in any item's evidence (attest.Attestation.evidence): readable from every item.
ATTESTED = ("Attestation", "Attested By", "Attested At")


@dataclass(frozen=True)
class Read:
    """One thing an item reads from another's evidence: a key, or (key None) only that it passed."""
    item: str
    key: str | None = None

    def __str__(self) -> str:
        return f"{self.item}:{self.key}" if self.key else self.item


def parse_read(text: str) -> Read:
    item, _, key = str(text).partition(":")
    return Read(item.strip(), key.strip() or None)


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    phase: str
    kind: str
    gate: str | None = None
    safe: bool = False
    writes: bool = False
    blanks: tuple[str, ...] = ()
    subchecks: tuple[str, ...] = ()
    window: str | None = None
    needs: tuple[str, ...] = ()          # items or phases that must have passed before this one runs
    needs_if_run: tuple[str, ...] = ()   # items that stop this one only when they ran in this run and failed
    outcome_of: tuple[str, ...] = ()     # actions whose outcome this check observes: not run when they did not
                                         # run (or failed) in this deployment; run when none of them is recorded
    touches: str | None = None           # what an action changes in production, said before it runs
    stands: dict = field(default_factory=dict, hash=False, compare=False)  # outcome -> "aspect: where production stands"
    extra: bool = False                  # a check beyond the checklist: its own id (`12.2+stock`) and title
    records: tuple[str, ...] = ()        # evidence keys other items read
    hands: tuple[str, ...] = ()          # live values it hands later items of the same run (never in the ledger)
    reads: tuple[Read, ...] = ()         # what it reads from other items' evidence (or hands)
    docker: dict = field(default_factory=dict, hash=False, compare=False)  # how/touches/stands in a Docker shop
    how: str | None = None               # how this run does it, where that differs from the checklist's line

    def readable(self, key: str) -> bool:
        """May another item read this key of this item's evidence (or of what it hands)?"""
        return key in self.records or key in self.hands or key in ATTESTED

    @property
    def key(self) -> tuple[int, ...]:
        return item_key(self.id)


@dataclass
class Checklist:
    release: str
    title: str
    items: dict[str, Item]
    gates: dict[str, str]
    phases: dict[str, str]
    report: dict = field(default_factory=dict)
    next_steps: dict = field(default_factory=dict)   # phase -> what to do after a NO-GO
    path: Path | None = None

    def for_docker(self) -> "Checklist":
        """The checklist of a Docker shop: each item's `docker` how, touches and stands in place of its own."""
        items = {key: dataclasses.replace(item, how=item.docker.get("how"),
                                          touches=item.docker.get("touches", item.touches),
                                          stands={**item.stands, **item.docker.get("stands", {})})
                 if item.docker else item for key, item in self.items.items()}
        return dataclasses.replace(self, items=items)

    def ordered(self) -> list[Item]:
        """The checklist's own items in order (checks beyond it are not among them)."""
        return sorted((i for i in self.items.values() if not i.extra), key=lambda i: i.key)

    def __getitem__(self, item_id: str) -> Item:
        try:
            return self.items[item_id]
        except KeyError:
            raise KeyError(f"item {item_id!r} is not in {self.title}") from None


class ChecklistError(ValueError):
    pass


def load(path: Path) -> Checklist:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChecklistError(f"checklist file {path} not found; set deploycheck_checklist in pyproject.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise ChecklistError(f"checklist file {path} is not valid TOML: {exc}") from None
    gates = data.get("gates", {})
    items: dict[str, Item] = {}
    for raw in data.get("item", []) + [{**raw, "extra": True} for raw in data.get("extra", [])]:
        item = Item(id=raw["id"], title=raw["title"], phase=raw["phase"], kind=raw["kind"],
                    gate=raw.get("gate"), safe=raw.get("safe", False), writes=raw.get("writes", False), blanks=tuple(raw.get("blanks", ())),
                    subchecks=tuple(raw.get("subchecks", ())), window=raw.get("window"),
                    needs=tuple(raw.get("needs", ())), needs_if_run=tuple(raw.get("needs_if_run", ())),
                    outcome_of=tuple(raw.get("outcome_of", ())),
                    touches=raw.get("touches"), stands=dict(raw.get("stands", {})), extra=raw.get("extra", False),
                    records=tuple(raw.get("records", ())), hands=tuple(raw.get("hands", ())), reads=tuple(parse_read(r) for r in raw.get("reads", ())),
                    docker=dict(raw.get("docker", {})))
        problems = []
        for need in item.outcome_of:
            if need not in items or item_key(need) >= item.key:
                problems.append(f"outcome_of {need!r}, which is not an earlier item")
        for need in item.needs + item.needs_if_run:
            if need not in PHASES and (need not in items or item_key(need) >= item.key):
                problems.append(f"needs {need!r}, which is neither a phase nor an earlier item")
        if set(item.stands) - set(OUTCOMES):
            problems.append(f"stands has {sorted(set(item.stands) - set(OUTCOMES))}: use {OUTCOMES}")
        if set(item.docker) - {"how", "touches", "stands"}:
            problems.append(f"docker has {sorted(set(item.docker) - {'how', 'touches', 'stands'})}: use how, touches, stands")
        if item.phase not in PHASES:
            problems.append(f"phase {item.phase!r} is not one of {PHASES}")
        if item.kind not in KINDS:
            problems.append(f"kind {item.kind!r} is not one of {KINDS}")
        if item.gate and item.gate not in gates:
            problems.append(f"gate {item.gate!r} is not in [gates]")
        if item.id in items:
            problems.append("it appears twice")
        if item.extra != ("+" in item.id):
            problems.append("checks beyond the checklist are [[extra]] with an id like 12.2+name; items are N.N")
        if problems:
            raise ChecklistError(f"{path}: item {item.id}: " + "; ".join(problems))
        items[item.id] = item
    check_reads(items, path)
    return Checklist(release=data["release"], title=data["title"], items=items, gates=gates,
                     phases=data.get("phases", {}), report=data.get("report", {}),
                     next_steps=data.get("next", {}), path=Path(path))


def check_reads(items: dict[str, Item], path) -> None:
    """Every read names an item of the checklist and a key that item records (in any order: 7.2 reads
    16.5, the rollback's record of the database it restored)."""
    for item in items.values():
        for read in item.reads:
            source = items.get(read.item)
            if source is None:
                raise ChecklistError(f"{path}: item {item.id} reads {read}, but there is no item {read.item}")
            if read.key and not source.readable(read.key):
                raise ChecklistError(
                    f"{path}: item {item.id} reads {read.key!r} of item {read.item}, which does not record it "
                    f"(it records {list(source.records) or 'nothing'}): add it to {read.item}'s records, or fix "
                    f"the key in {item.id}'s reads")


@cache
def default() -> Checklist:
    """The checklist this checkout ships, for tests that parametrize over an item's sub-checks."""
    return load(DEFAULT_PATH)


def guarded(item: Item) -> bool:
    """Changes a live system, so it runs only with --execute (or is attested as done by hand)."""
    return (item.kind == "action" and not item.safe) or item.writes
