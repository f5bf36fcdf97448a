"""Bot profiles: what a bot version's screens are, as data (checklists/profiles/*.toml).

A profile says, per smoke item (11.1–11.6, 13.4), the steps a person takes (send a text, press a button by
label pattern, wait for a message, read the product list, seed test data, pay through the gateway, wait for
a database effect) and which steps the version does not offer. Operators adapt one to their fork without
Python; a typo (an unknown key, a step with no action, a pattern that does not compile) is refused here,
at load, naming the file, the item, the step and the key, instead of failing at 2 a.m. mid-deployment.
"""
from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from deploycheck.resources import ROOT

PROFILES_DIR = ROOT / "checklists" / "profiles"
ITEMS = ("11.1", "11.2", "11.3", "11.4", "11.5", "11.6", "13.4")
ACTIONS = ("send", "press", "wait", "list", "seed", "pay", "db")
STEP_KEYS = ACTIONS + ("not_offered", "as", "expect", "buttons", "keyboard", "fail_on", "fail", "read",
                       "timeout", "timed", "optional", "lacks", "contents", "active", "price", "fill_page",
                       "find", "absent", "shows", "finding_if", "finding")
PATTERN_KEYS = ("press", "wait", "expect", "fail_on", "read", "lacks", "finding_if")
TOP_KEYS = ("profile", "describes", "notes", "pacing", "spam", "list", "items")
PACING_KEYS = ("gap", "reply_timeout", "settle", "db_timeout")
LIST_KEYS = ("open", "page", "next", "split", "entry", "page_size", "limit", "query", "max_pages")
ITEM_KEYS = ("steps", "cleanup", "vars", "tries", "limit", "notes")
ROLES = ("user", "admin")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")   # {code}; regex counts like -{32} are left alone


class ProfileError(ValueError):
    """A profile that cannot be used as written: the message names the file, the place and the fix."""


@dataclass(frozen=True)
class Step:
    fields: dict
    where: str             # "items.11.3.steps[4]": for messages

    @property
    def action(self) -> str:
        return next((a for a in ACTIONS if a in self.fields), "not_offered")

    @property
    def role(self) -> str:
        return self.fields.get("as", "user")

    def get(self, key: str, default=None):
        return self.fields.get(key, default)

    def label(self) -> str:
        """How the step reads in a transcript and a failure: "admin sends 'DCSMOKE-…'"."""
        f, who = self.fields, self.role
        if "send" in f:
            return f"{who} sends {f['send']!r}"
        if "press" in f:
            return f"{who} presses a button matching {f['press']!r}"
        if "wait" in f:
            return f"{who} waits for {f['wait']!r}"
        if "list" in f:
            return f"{who} reads every page of the product list ({f['list']})"
        if "seed" in f:
            return f"test product {f['seed']} written to the database"
        if "pay" in f:
            return f"the gateway pays order {f['pay']}"
        if "db" in f:
            return "the database must show: " + " ".join(f["db"].split())[:140]
        return f"not offered: {f['not_offered']}"


@dataclass(frozen=True)
class Item:
    id: str
    steps: tuple[Step, ...]
    cleanup: tuple[Step, ...] = ()
    vars: dict = field(default_factory=dict)
    tries: int = 5
    limit: float = 2.0


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    describes: str
    gap: float
    reply_timeout: float
    settle: float
    db_timeout: float
    spam: tuple[str, ...]
    listing: dict
    items: dict

    def item(self, item_id: str) -> Item:
        if item_id not in self.items:
            raise ProfileError(f"bot profile {self.name} ({self.path}) has no steps for item {item_id}: add "
                               f"[items.\"{item_id}\"] to it")
        return self.items[item_id]


def resolve(name_or_file: str) -> Path:
    """A profile name (checklists/profiles/NAME.toml) or a file path."""
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        return path
    return PROFILES_DIR / f"{name_or_file}.toml"


def available() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load(name_or_file: str | Path) -> Profile:
    path = resolve(str(name_or_file))
    if not path.is_file():
        raise ProfileError(f"bot profile {name_or_file!r} not found ({path}); shipped profiles: "
                           f"{', '.join(available())}; or give a file: --bot-profile path/to/fork.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"bot profile {path}: not valid TOML: {exc}") from None
    _known(data, TOP_KEYS, path, "the top level")
    pacing, listing = data.get("pacing", {}), data.get("list", {})
    _known(pacing, PACING_KEYS, path, "[pacing]")
    _known(listing, LIST_KEYS, path, "[list]")
    _known(data.get("spam", {}), ("warnings",), path, "[spam]")
    for key in ("page", "next", "split", "entry"):
        if key in listing:
            _compiles(listing[key], path, f"[list] {key}")
    listing = {**listing, "open": tuple(_step(s, path, f"[list] open[{i}]")
                                        for i, s in enumerate(listing.get("open", []), 1))}
    spam = tuple(data.get("spam", {}).get("warnings", []))
    for i, pattern in enumerate(spam, 1):
        _compiles(pattern, path, f"[spam] warnings[{i}]")
    items = {item_id: _item(item_id, raw, path) for item_id, raw in data.get("items", {}).items()}
    uses_list = any(s.action == "list" for item in items.values() for s in item.steps)
    if uses_list and not all(k in listing for k in ("page", "entry", "query")):
        raise ProfileError(f"bot profile {path}: a step reads the product list, so [list] needs page, entry and "
                           "query (and open, next, split as the bot shows it)")
    return Profile(name=data.get("profile", path.stem), path=path, describes=data.get("describes", ""),
                   gap=float(pacing.get("gap", 1.15)), reply_timeout=float(pacing.get("reply_timeout", 10.0)),
                   settle=float(pacing.get("settle", 0.5)), db_timeout=float(pacing.get("db_timeout", 10.0)),
                   spam=spam, listing=listing, items=items)


def _item(item_id: str, raw: dict, path: Path) -> Item:
    if item_id not in ITEMS:
        raise ProfileError(f"bot profile {path}: [items.\"{item_id}\"] is not a smoke item; the items are "
                           f"{', '.join(ITEMS)}")
    where = f"[items.\"{item_id}\"]"
    _known(raw, ITEM_KEYS, path, where)
    if not raw.get("steps"):
        raise ProfileError(f"bot profile {path}: {where} has no steps")
    steps = tuple(_step(s, path, f"{where} steps[{i}]") for i, s in enumerate(raw["steps"], 1))
    cleanup = tuple(_step(s, path, f"{where} cleanup[{i}]") for i, s in enumerate(raw.get("cleanup", []), 1))
    return Item(item_id, steps, cleanup, dict(raw.get("vars", {})), int(raw.get("tries", 5)),
                float(raw.get("limit", 2.0)))


def _step(raw: dict, path: Path, where: str) -> Step:
    if not isinstance(raw, dict):
        raise ProfileError(f"bot profile {path}: {where} is not a table ({{ send = \"...\", expect = \"...\" }})")
    _known(raw, STEP_KEYS, path, where)
    actions = [a for a in ACTIONS if a in raw]
    if len(actions) > 1 or (not actions and "not_offered" not in raw):
        raise ProfileError(f"bot profile {path}: {where} needs exactly one action of {', '.join(ACTIONS)} "
                           f"(or not_offered); it has {actions or 'none'}")
    if "not_offered" in raw and actions and actions[0] not in ("send", "press"):
        raise ProfileError(f"bot profile {path}: {where}: not_offered goes alone or with send/press")
    if raw.get("as", "user") not in ROLES:
        raise ProfileError(f"bot profile {path}: {where}: as = {raw['as']!r}; who acts is one of {ROLES}")
    for key in PATTERN_KEYS:
        if key in raw:
            _compiles(raw[key], path, f"{where} {key}")
    for pattern in raw.get("buttons", []) + raw.get("keyboard", []):
        _compiles(pattern, path, f"{where} buttons")
    return Step(dict(raw), where)


def _known(table: dict, keys: tuple, path: Path, where: str) -> None:
    if not isinstance(table, dict):
        raise ProfileError(f"bot profile {path}: {where} must be a table")
    for key in table:
        if key not in keys:
            close = difflib.get_close_matches(key, keys, 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ProfileError(f"bot profile {path}: unknown key {key!r} in {where}{hint}; known keys: "
                               f"{', '.join(keys)}")


def _compiles(pattern, path: Path, where: str) -> None:
    if not isinstance(pattern, str):
        raise ProfileError(f"bot profile {path}: {where} must be a text (a regular expression)")
    try:
        re.compile(PLACEHOLDER.sub("x", pattern))
    except re.error as exc:
        raise ProfileError(f"bot profile {path}: {where} = {pattern!r} is not a valid regular expression: "
                           f"{exc}") from None
