"""Attestations: a person's word that a manual item was done (who, when, what).

Given on the command line (`--attest 2.2="Owner and CS notified"`) or in a TOML file
(`--attestations FILE`), where each item is either a string or a table with text, by, at:

    "2.2" = "Owner and CS notified on the ops group"
    ["2.4"]
    text = "Primary: Rina, Backup: Agus"
    by = "rina"
    ["5.3"]
    text = "Owner accepts: no contents behind their stock"
    products = ["VIDIO1B", "STEAM60"]

A decision about products going to zero (5.3, 12.2) accepts only the product codes it lists. Plain
`"item" = "text"` lines go above the first [table]: TOML reads every key after a header into that table.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

# The decisions that accept products going from in stock to zero: they name the products they accept.
PRODUCT_ITEMS = ("5.3", "12.2")
TABLE_KEYS = ("text", "by", "at", "products")


@dataclass(frozen=True)
class Attestation:
    item: str
    text: str
    by: str
    at: str
    products: tuple[str, ...] | None = None  # 5.3, 12.2: the product codes accepted (None: none named)

    def as_dict(self) -> dict:
        found = asdict(self)
        if self.products is None:
            del found["products"]
        else:
            found["products"] = list(self.products)
        return found

    def evidence(self) -> dict:
        """How an attestation shows in its item's evidence (and so in the report and the ledger)."""
        found = {"Attestation": self.text, "Attested By": self.by, "Attested At": self.at}
        if self.products is not None:
            found["Accepted Products"] = list(self.products)
        return found


def from_evidence(evidence: dict) -> dict | None:
    """The ledger's attestation of an item, read back from its evidence."""
    if "Attestation" not in evidence:
        return None
    found = {"text": evidence["Attestation"], "by": evidence.get("Attested By"), "at": evidence.get("Attested At")}
    if "Accepted Products" in evidence:
        found["products"] = evidence["Accepted Products"]
    return found


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
        lines = _key_lines(Path(file).read_text(encoding="utf-8"))
        for item_id, value in data.items():
            if isinstance(value, str):
                value = {"text": value}
            if isinstance(value, dict):
                _check_table(file, item_id, value, known, lines)
            if not isinstance(value, dict) or not str(value.get("text", "")).strip():
                raise AttestationError(f"--attestations {file}: item {item_id} needs a non-empty text "
                                       f'("{item_id}" = "what was done", or a table with text = ...)')
            products = value.get("products")
            found[item_id] = Attestation(item_id, str(value["text"]).strip(), str(value.get("by", operator)),
                                         str(value.get("at", now())),
                                         None if products is None else tuple(p.strip() for p in products))
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


def _key_lines(text: str) -> dict[tuple[str | None, str], int]:
    """{(table, key): line number}: tomllib tells no positions, and a misplaced key is best named by its line."""
    table, found = None, {}
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"""\s*\[\s*(["']?)(.+?)\1\s*\]""", line)
        key = re.match(r"""\s*(["']?)([^"'=]+?)\1\s*=""", line)
        if header:
            table = header.group(2)
        elif key:
            found.setdefault((table, key.group(2).strip()), number)
    return found


def _check_table(file, item_id: str, value: dict, known: set[str], lines: dict) -> None:
    """A table holds text, by, at (and products for 5.3, 12.2); any other key is a mistake to name."""
    for key in value:
        if key in TABLE_KEYS and (key != "products" or item_id in PRODUCT_ITEMS):
            continue
        where = f"line {lines[(item_id, key)]}" if (item_id, key) in lines else f'key "{key}"'
        if item_id.isdigit() and key.isdigit():
            raise AttestationError(f'--attestations {file}: write item ids in quotes, "{item_id}.{key}" = ...; '
                                   f"TOML reads a bare {item_id}.{key} as a table {item_id} with a key {key}")
        if key in known or re.fullmatch(r"\d+(\.\d+)+|final:\d+", key):
            raise AttestationError(
                f'--attestations {file} {where}: "{key}" is read as part of the table ["{item_id}"] (TOML puts '
                f'every plain key written after a [table] header into that table), so it attests nothing. Move '
                f'the line "{key}" = ... above the first [table] header')
        if key == "products":
            raise AttestationError(f'--attestations {file} {where}: products means something only for the '
                                   f'decisions about products going to zero ({", ".join(PRODUCT_ITEMS)}), not '
                                   f'for {item_id}: remove it')
        raise AttestationError(f'--attestations {file} {where}: ["{item_id}"] has a key "{key}" that means '
                               f'nothing; a table takes {", ".join(TABLE_KEYS[:3])} (and products for '
                               f'{" and ".join(PRODUCT_ITEMS)})')
    products = value.get("products")
    if products is not None and (not isinstance(products, list) or
                                 not all(isinstance(p, str) and p.strip() for p in products)):
        where = lines.get((item_id, "products"), "?")
        raise AttestationError(f'--attestations {file} line {where}: products of {item_id} must be a list of '
                               'product codes, e.g. products = ["VIDIO1B", "STEAM60"]')


def unaccepted(attestation: Attestation | None, products: list[dict]) -> list[dict]:
    """The products going to zero that the attestation does not name (by code, or by id when it has none)."""
    named = set(attestation.products or ()) if attestation else set()
    return [p for p in products if str(p.get("code")) not in named and str(p.get("id")) not in named]


def file_entry(item_id: str, codes: list[str]) -> str:
    """The attestation to write in the --attestations file, ready to fill in: it names the products."""
    return (f'["{item_id}"] text = "<who accepted, why>" products = [' + ", ".join(f'"{c}"' for c in codes[:20])
            + (", ..." if len(codes) > 20 else "") + "]")


def acceptance_problem(item_id: str, attestation: Attestation | None, products: list[dict]) -> str | None:
    """None when every product going to zero is accepted by name; else what is missing and how to give it."""
    missing = unaccepted(attestation, products)
    if not missing:
        return None
    codes = [str(p.get("code") or p.get("id")) for p in missing]
    listed = ", ".join(codes[:20]) + (f" and {len(codes) - 20} more" if len(codes) > 20 else "")
    entry = file_entry(item_id, codes)
    if attestation is None:
        return (f"{len(missing)} product(s) go from in stock to zero: {listed}. Customers no longer see them for "
                "sale. Upload their contents, or if the owner accepts it, attest it by name in the "
                f"--attestations file: {entry}")
    if attestation.products is None:
        return (f"{len(missing)} product(s) go from in stock to zero: {listed}. The {item_id} attestation names "
                "no products, and accepts only the ones it names: write it in the --attestations file as "
                f"{entry}")
    return (f"{len(missing)} product(s) go from in stock to zero that the {item_id} attestation does not name: "
            f"{listed}. The owner accepted only {', '.join(attestation.products) or 'none'}: ask about these, "
            f"then add their codes to products, or upload their contents")
