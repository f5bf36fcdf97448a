"""The deployment folder and the record's files: names, formats, loading record.json, reading signatures.

Shared by compose, render, sign and verify, so none of them imports another just for a name.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

from deploycheck.record.ledger import canonical

# The format of record.json. Bump it when the bytes compose writes for the same inputs change: verify
# rebuilds record.json and compares byte for byte only for the current format, so an older record is
# never failed by a newer composer (it is still checked against its files and signatures).
FORMAT = "deploycheck-record/2"
# Formats this code can read and verify; older ones are listed here for as long as signed records of
# them may exist.
READABLE_FORMATS = ("deploycheck-record/2",)
RECORD_JSON, RECORD_HTML, RECORD_INTOTO = "record.json", "record.html", "record.intoto.json"
LEDGER, CHECKLIST_COPY, BACKUP_META = "ledger.jsonl", "checklist.toml", "backup/backup.json"
SIGNATURES = "signatures"
NOT_FILLED = "—"


class RecordError(ValueError):
    pass


class RecordRefused(RecordError):
    """Rebuilding would silently invalidate signatures."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_digest(record: dict) -> str:
    """SHA-256 of the canonical record (sorted keys, compact): what a signature covers."""
    return sha256_bytes(canonical(record))


def render_json(record: dict) -> bytes:
    return (json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def role_slug(role: str) -> str:
    return role.lower().replace(" ", "-")


def safe_relpath(name: str, what: str) -> str:
    """A path inside the deployment folder; refuse absolute paths and `..` so a record cannot point outside."""
    path = PurePosixPath(str(name).replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise RecordError(f"{what} names {name!r}; expected a file name inside the deployment folder")
    return str(path)


def deployment_folder(reports_dir: Path, deployment_id: str) -> Path:
    folder = Path(reports_dir) / deployment_id
    if not folder.is_dir():
        known = sorted(p.name for p in Path(reports_dir).iterdir() if p.is_dir()) if Path(reports_dir).is_dir() else []
        hint = f"deployments there: {', '.join(known)}" if known else f"{reports_dir} has no deployment folders"
        raise RecordError(f"no deployment folder {folder} ({hint}); check the id and --reports-dir")
    return folder


SHAPE = {"deployment_id": str, "items": list, "report": dict, "signoff": list, "files": list,
         "final_checklist": list, "runs": list, "checklist": dict, "warnings": list, "final_status": str,
         "verdict": dict}


def load_record(folder: Path) -> dict:
    path = folder / RECORD_JSON
    if not path.is_file():
        raise RecordError(f"no {path}: build it first with `python -m deploycheck record {folder.name}`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path} is not valid JSON ({exc}); rebuild it with `python -m deploycheck record`") from None
    if not isinstance(record, dict) or record.get("format") not in READABLE_FORMATS:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise RecordError(f"{path}: expected a record of format {' or '.join(READABLE_FORMATS)}, found {found!r}; "
                          "verify it with the deploycheck version that built it, or rebuild it with this one")
    wrong = [key for key, kind in SHAPE.items() if not isinstance(record.get(key), kind)]
    wrong += [f"signoff[{n}]" for n, r in enumerate(record.get("signoff") or [])
              if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("role", "slug", "signature"))]
    if wrong:
        raise RecordError(f"{path} is not a well-formed record (wrong or missing: {', '.join(wrong)}); "
                          "it was edited, or built by another deploycheck: rebuild it")
    return record


def read_signatures(folder: Path, record: dict) -> dict[str, dict | str]:
    """role slug → parsed signature file, or a string saying why it could not be read (for display only)."""
    found: dict[str, dict | str] = {}
    for role in record["signoff"]:
        path = folder / role["signature"]
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                found[role["slug"]] = data if isinstance(data, dict) else "not a JSON object"
            except (ValueError, UnicodeDecodeError) as exc:
                found[role["slug"]] = f"unreadable ({exc})"
    return found
