"""Verify a deployment record: the ledger chain, every file record.json names, record.json and its in-toto
statement against a rebuild, record.html by the rule in render.py, and every signature through trust.py.

What verify reports is one list of (file, what is wrong), in the order a reader should look: the ledger, the
files, record.json, its statement, the signatures, then the page that shows them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from deploycheck import checklist as checklist_data
from deploycheck.record import compose, render
from deploycheck.record import folder as rec
from deploycheck.record.ledger import Ledger, LedgerError, sha256_file
from deploycheck.record.sigfile import DISTINCT, SigningError, read_signature_file, same_person
from deploycheck.record.trust import check_signature

@dataclass
class Verification:
    folder: Path
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file relative to the folder, what is wrong)
    notes: list[str] = field(default_factory=list)
    signed: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # role title → (signer, signed_at, how)
    unsigned: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)  # role titles in the record's order
    missing: set[str] = field(default_factory=set)  # problem files that are absent rather than changed

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_file(self) -> str | None:
        return self.problems[0][0] if self.problems else None

    def fail(self, name: str, message: str, *, missing: bool = False) -> None:
        self.problems.append((name, message))
        if missing:
            self.missing.add(name)


def first_difference(a, b, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for n, (x, y) in enumerate(zip(a, b, strict=True)):  # lengths checked above
            if x != y:
                return first_difference(x, y, f"{path}[{n}]")
    return path or "(whole file)"


def check_files(folder: Path, record: dict, result: Verification) -> None:
    files = record.get("files")
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        result.fail(rec.RECORD_JSON, "its files list is not a list of {path, sha256} objects")
        return
    for entry in sorted(files, key=lambda f: str(f.get("path"))):
        if entry.get("made_by") and isinstance(entry.get("path"), str) and Path(entry["path"]).is_absolute():
            check_made_outside(entry, result)  # a dump under --backup-dir
            continue
        try:
            name = rec.safe_relpath(entry.get("path", ""), "record.json files")
        except rec.RecordError as exc:
            result.fail(rec.RECORD_JSON, str(exc))
            continue
        path = folder / name
        if entry.get("missing"):
            if path.exists():
                result.notes.append(f"{name} was missing when the record was built; it is not covered")
            continue
        if not path.is_file():
            if entry.get("made_by"):
                check_made_outside({**entry, "path": str(path)}, result, name)
            else:
                result.fail(name, "listed in record.json but not in the folder", missing=True)
            continue
        if name == rec.LEDGER and isinstance(entry.get("lines"), int):
            lines = path.read_bytes().splitlines(keepends=True)
            later = len(lines) - entry["lines"]
            digest = rec.sha256_bytes(b"".join(lines[:entry["lines"]]))
            if later > 0:
                result.notes.append(f"{name}: {later} run(s) appended after the record was built (not covered)")
        else:
            digest = sha256_file(path)  # in blocks: a dump can be larger than memory
        if digest != entry.get("sha256"):
            made = f" (made by {entry['made_by']}: changed since it was made)" if entry.get("made_by") else ""
            result.fail(name, f"SHA-256 {digest} does not match the record's {entry.get('sha256')}{made}")


def check_made_outside(entry: dict, result: Verification, name: str | None = None) -> None:
    """A file a run made, at its absolute path; if it is gone (a dump moved off-site), one of its 4.4 copies
    of the same hash stands in for it. Gone with no copy reachable: named as missing, with what to do."""
    name = name or entry["path"]
    path, expected = Path(entry["path"]), entry.get("sha256")
    if path.is_file():
        digest = sha256_file(path)
        if digest != expected:
            result.fail(name, f"SHA-256 {digest} does not match the {expected} recorded when {entry['made_by']} "
                              "made it: the file changed since")
        return
    copies = [Path(c) for c in entry.get("copies") or []]
    for copy in copies:
        if copy.is_file():
            digest = sha256_file(copy)
            if digest != expected:
                result.fail(name, f"not at {path}, and its copy {copy} has SHA-256 {digest}, not the {expected} "
                                  f"recorded when {entry['made_by']} made it: the copy is damaged")
            else:
                where = "there" if name == str(path) else f"at {path}"
                result.notes.append(f"{name} is not {where} (moved?); checked its copy {copy} instead: it matches")
            return
    where = (f"nor are its copies ({', '.join(map(str, copies))}) reachable from here" if copies
             else "and no copy of it is recorded")
    result.fail(name, f"not found at {path} ({entry['made_by']} made it), {where}. Bring the file or a copy "
                      f"back to that path and verify again, or check it by hand: `sha256sum FILE` must print {expected}",
                missing=True)


def verify(reports_dir: Path, deployment_id: str, allowed_signers: Path | None = None, *,
           check_signatures: bool = True) -> Verification:
    """Ledger chain, every listed file, record.json/intoto against a rebuild, every signature, record.html."""
    folder = rec.deployment_folder(Path(reports_dir), deployment_id)
    result = Verification(folder)
    if not (folder / rec.LEDGER).exists():
        result.fail(rec.LEDGER, "missing")
    try:
        Ledger(folder / rec.LEDGER).read()
    except LedgerError as exc:
        result.fail(rec.LEDGER, str(exc).replace(str(folder) + "/", ""))
    if not (folder / rec.RECORD_JSON).exists():
        raise rec.RecordError(f"no {rec.RECORD_JSON} in {folder}: nothing to verify; build it with "
                              f"`python -m deploycheck record {deployment_id}`")
    try:
        record = rec.load_record(folder)
    except rec.RecordError as exc:
        result.fail(rec.RECORD_JSON, str(exc))
        return result
    signed_digests = {sig.get("record_sha256") for sig in rec.read_signatures(folder, record).values()
                      if isinstance(sig, dict)}
    if signed_digests and rec.record_digest(record) not in signed_digests:
        # Signed, and no signature covers the record as it is now: record.json is what changed, not the files.
        result.fail(rec.RECORD_JSON, f"changed after it was signed: its SHA-256 is {rec.record_digest(record)}, the "
                                     f"signatures cover {', '.join(sorted(map(str, signed_digests)))}")
    check_files(folder, record, result)
    if result.ok:
        check_rebuild(folder, record, result)
    try:
        if check_signatures:
            verify_signatures(folder, record, allowed_signers, result)
        # Last: record.html shows the signatures, so a changed signature is named before the page.
        check_html(folder, record, result)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # An edited record.json that still parses; a rebuild mismatch usually names it first.
        result.fail(rec.RECORD_JSON, f"is not a well-formed record ({type(exc).__name__}: {exc}); rebuild it")
    return result


def check_rebuild(folder: Path, record: dict, result: Verification) -> None:
    """record.json and record.intoto.json against a rebuild from the ledger and the checklist copy: only for
    the current record format (compose of another format writes other bytes); else the statement must name
    record.json's bytes."""
    try:
        rebuilt = compose.rebuild(folder, record)
    except (rec.RecordError, checklist_data.ChecklistError, ValueError, KeyError, TypeError) as exc:
        result.fail(rec.RECORD_JSON, f"cannot be rebuilt from the folder: {exc}")
        return
    data = (folder / rec.RECORD_JSON).read_bytes()
    statement = (folder / rec.RECORD_INTOTO).read_bytes() if (folder / rec.RECORD_INTOTO).is_file() else None
    if rebuilt is None:
        result.notes.append(f"record.json not compared with a rebuild (format {record.get('format')}, this "
                            f"deploycheck writes {rec.FORMAT}; or no checklist.toml)")
        if statement is not None and rec.sha256_bytes(data) not in statement.decode(errors="replace"):
            result.fail(rec.RECORD_INTOTO, "does not name record.json's SHA-256 as its subject")
        return
    fresh, fresh_statement = rebuilt
    if fresh != data:
        try:
            where = first_difference(json.loads(fresh), json.loads(data))
        except ValueError:
            where = "(whole file)"
        result.fail(rec.RECORD_JSON, f"differs from a rebuild from the ledger and checklist (first at {where})")
    elif statement != fresh_statement:
        result.fail(rec.RECORD_INTOTO, "differs from the in-toto statement of record.json (or is missing)")


def check_html(folder: Path, record: dict, result: Verification) -> None:
    """record.html is derived: checked by the rule in render.py, never signed."""
    path = folder / rec.RECORD_HTML
    if not path.is_file():
        result.fail(rec.RECORD_HTML, "missing: render it with "
                                     f"`python -m deploycheck render {record['deployment_id']}`", missing=True)
        return
    problem, note = render.page_problem(path.read_bytes(), record, rec.read_signatures(folder, record))
    if problem:
        result.fail(rec.RECORD_HTML, f"{problem}; re-render it with "
                                     f"`python -m deploycheck render {record['deployment_id']}`")
    if note:
        result.notes.append(note)


def verify_signatures(folder: Path, record: dict, allowed_signers: Path | None, result: Verification) -> None:
    digest = rec.record_digest(record)
    good: dict[str, dict] = {}
    result.roles = [role["role"] for role in record["signoff"]]
    for role in record["signoff"]:
        name = role["signature"]
        path = folder / name
        if not path.exists():
            result.unsigned.append(role["role"])
            continue
        try:
            sig = read_signature_file(path)
            if (sig["role"], sig["role_title"], sig["deployment_id"], sig["record"]) != (
                    role["slug"], role["role"], record["deployment_id"], rec.RECORD_JSON):
                raise SigningError(f"it is for {sig['role']} ({sig['role_title']}) of {sig['deployment_id']}'s "
                                   f"{sig['record']}, expected {role['slug']} ({role['role']}) of "
                                   f"{record['deployment_id']}'s {rec.RECORD_JSON}")
            if sig["record_sha256"] != digest:
                raise SigningError(f"it signs record {sig['record_sha256'][:16]}…, but record.json is now "
                                   f"{digest[:16]}… (record changed after signing: sign again)")
            how = check_signature(sig, allowed_signers)
        except SigningError as exc:
            result.fail(name, str(exc))
            continue
        good[role["slug"]] = sig
        result.signed[role["role"]] = (sig["signer"], sig["signed_at"], how)
    for first, second in DISTINCT:
        if first in good and second in good and same_person(good[first], good[second]):
            result.fail(f"{rec.SIGNATURES}/{first}.json", f"{first} and {second} are the same person "
                                                           f"({same_person(good[first], good[second])})")
    known = {r["signature"] for r in record["signoff"]}
    for path in sorted((folder / rec.SIGNATURES).glob("*.json")):
        if f"{rec.SIGNATURES}/{path.name}" not in known:
            result.notes.append(f"{rec.SIGNATURES}/{path.name} is not a sign-off role of this record; ignored")


