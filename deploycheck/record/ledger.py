"""The deployment ledger: reports/<deployment-id>/ledger.jsonl, one JSON line per run, hash-chained.

Each line holds `prev`, the SHA-256 of the previous line's bytes (64 zeros for the first), so an
edited, removed or reordered line breaks the chain at a line we can name.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
from pathlib import Path

from deploycheck.checklist import item_key

GENESIS = "0" * 64


class LedgerError(ValueError):
    pass


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file read in blocks: backup dumps can be larger than memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_hashed(path: Path, data: str | bytes) -> str:
    """Write a file the record will rest on and return the SHA-256 of the bytes written, for its evidence
    ("Output SHA-256"): hashed when made, so a change before the record is built is caught too."""
    raw = data.encode() if isinstance(data, str) else data
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return hashlib.sha256(raw).hexdigest()


def evidence_path(path: Path, folder: Path) -> str:
    """How evidence names a file: relative to the deployment folder when inside it (so the record holds in a
    copy of the folder elsewhere), else its absolute path (e.g. a dump under --backup-dir)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def canonical(entry: dict) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class Ledger:
    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> list[dict]:
        """All entries, after checking the chain; a break is an error naming the line."""
        if not self.path.exists():
            return []
        entries, prev = [], GENESIS
        for number, raw in enumerate(self.path.read_bytes().splitlines(), start=1):
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise LedgerError(f"{self.path} line {number} is not valid JSON ({exc.msg}); "
                                  "the ledger was edited or truncated: restore it from a copy") from None
            if entry.get("prev") != prev:
                raise LedgerError(f"{self.path} line {number}: hash chain broken (expects previous line's "
                                  f"SHA-256 {entry.get('prev')}, found {prev}); line {number - 1 or 1} or "
                                  f"{number} was changed: restore the ledger from a copy")
            entries.append(entry)
            prev = line_hash(raw)
        return entries

    def append(self, entry: dict) -> dict:
        """Append under an exclusive lock, so two runs of the same deployment cannot fork the chain."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self.read()  # refuse to extend a broken chain
                handle.seek(0)
                lines = handle.read().splitlines()
                entry = {**entry, "prev": line_hash(lines[-1]) if lines else GENESIS}
                handle.write(canonical(entry) + b"\n")
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return entry

    def latest(self, *item_ids: str, outcome: str | None = "passed") -> dict | None:
        """The newest result (default: the newest pass) of these items across runs of this deployment; within
        one run the item later in the checklist is the newer (a run goes in checklist order)."""
        for entry in reversed(self.read()):
            found = [(item_key(i), entry["items"][i]) for i in item_ids if i in entry.get("items", {})
                     and (outcome is None or entry["items"][i].get("outcome") == outcome)]
            if found:
                return {**max(found, key=lambda pair: pair[0])[1], "run_id": entry.get("run_id"),
                        "ended": entry.get("ended")}
        return None
