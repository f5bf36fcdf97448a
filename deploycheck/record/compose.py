"""The deployment record: reports/<id>/record.json, record.html and record.intoto.json.

Built only from what is in the deployment folder (the ledger, the runs' reports, the backup metadata,
a copy of the checklist), so it can be rebuilt and compared byte for byte on another machine. The only
times in it come from the ledger: building twice from the same inputs gives identical bytes.

record.json lists the SHA-256 of every file it rests on. The ledger keeps growing (monitor runs are
hourly), so for ledger.jsonl the digest covers the first `lines` lines: later runs do not break the
record, and any change to a covered line does. Files a run made and hashed when it made them (evidence
"<Name> File" with "<Name> SHA-256": 7.3's runner output, 4.1's backup dump) are listed with that hash,
not one taken when the record is built, so a change in between is caught too; a dump outside the folder
(--backup-dir) is listed by its absolute path, with the 4.4 copies of the same hash.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath

from deploycheck import checklist as checklist_data
from deploycheck.record import intoto, render
from deploycheck.record.folder import (  # noqa: F401 (load_record, RecordError: the record's API, used by callers)
    BACKUP_META, CHECKLIST_COPY, FORMAT, LEDGER, NOT_FILLED, RECORD_HTML, RECORD_INTOTO, RECORD_JSON, SIGNATURES,
    RecordError, RecordRefused, deployment_folder, load_record, read_signatures, record_digest, render_json,
    role_slug, safe_relpath, sha256_bytes)
from deploycheck.record.ledger import Ledger, LedgerError, sha256_file
from deploycheck.record.summary import FAILED, NOT_RUN, derive, final_checklist, from_attestation, report_field
from deploycheck.redact import Redactor

# ------------------------------------------------------------------ reading the inputs

def read_ledger(folder: Path, lines: int | None = None) -> tuple[list[dict], dict]:
    """Entries (the first `lines` if given) and the file entry describing exactly those bytes."""
    path = folder / LEDGER
    if not path.exists():
        raise RecordError(f"no ledger at {path}: run the checklist for this deployment first")
    try:
        entries = Ledger(path).read()
    except LedgerError as exc:
        raise RecordError(str(exc)) from None
    raw = path.read_bytes().splitlines(keepends=True)
    if not entries:
        raise RecordError(f"{path} is empty: run the checklist for this deployment first")
    count = len(entries) if lines is None else lines
    if count > len(entries):
        raise RecordError(f"{path} has {len(entries)} runs but the record covers {count}: lines were removed")
    covered = b"".join(raw[:count])
    return entries[:count], {"path": LEDGER, "sha256": sha256_bytes(covered), "size": len(covered), "lines": count}


def file_entry(folder: Path, rel: str) -> dict:
    path = folder / rel
    if not path.is_file():
        return {"path": rel, "sha256": None, "size": None, "missing": True}
    return {"path": rel, "sha256": sha256_file(path), "size": path.stat().st_size}


def made_files(entries: list[dict]) -> tuple[list[dict], list[str]]:
    """Files the runs made, with the hash taken when they were made: evidence "<Name> File" beside
    "<Name> SHA-256". A relative name is inside the deployment folder; an absolute one is outside it (a dump
    under --backup-dir). A "Copy" with "Copy SHA-256" (4.4) is kept with the file of the same hash, so verify
    can check the copy when the file itself was moved off-site."""
    found: dict[str, dict] = {}
    copies: dict[str, set[str]] = {}
    warnings = []
    for entry in entries:
        for item_id, result in sorted((entry.get("items") or {}).items(), key=lambda kv: checklist_data.item_key(kv[0])):
            evidence = result.get("evidence") or {}
            for key, digest in evidence.items():
                name = key[:-len(" SHA-256")] if key.endswith(" SHA-256") else None
                if not name or not isinstance(digest, str):
                    continue
                if name == "Copy" and isinstance(evidence.get("Copy"), str):
                    copies.setdefault(digest, set()).add(evidence["Copy"])
                    continue
                path = evidence.get(f"{name} File")
                if not isinstance(path, str) or not path:
                    continue
                if not PurePosixPath(path).is_absolute():
                    try:
                        path = safe_relpath(path, f"{item_id} evidence {name} File")
                    except RecordError as exc:
                        warnings.append(str(exc))
                        continue
                # a later run that wrote the same name again wins: the file holds its bytes now
                found[path] = {"path": path, "sha256": digest, "made_by": f"{item_id} in run {entry.get('run_id')}"}
    for made in found.values():
        if made["sha256"] in copies:
            made["copies"] = sorted(copies[made["sha256"]])
    return list(found.values()), warnings



# ------------------------------------------------------------------ composing the record

def weight(outcome: str | None) -> int:
    """A result counts over an earlier one of no more weight: a skip or a "not run" does not hide a run."""
    return {"skipped": 0, NOT_RUN: 1}.get(outcome or NOT_RUN, 2)


def item_results(entries: list[dict]) -> dict[str, dict]:
    """Per item: the latest run that ran it (a "not run" counts only if nothing ran it, a skip only if
    nothing else happened to it), plus every attempt."""
    latest: dict[str, tuple[int, dict]] = {}
    attempts: dict[str, list[dict]] = {}
    for index, entry in enumerate(entries):
        for item_id, result in (entry.get("items") or {}).items():
            attempts.setdefault(item_id, []).append({"run_id": entry.get("run_id"), "outcome": result.get("outcome")})
            previous = latest.get(item_id)
            if previous is None or weight(result.get("outcome")) >= weight(previous[1][1].get("outcome")):
                latest[item_id] = (index, (entry, result))
    return {item_id: {"index": index, "entry": pair[0], "result": pair[1], "attempts": attempts[item_id]}
            for item_id, (index, pair) in latest.items()}


def compose_item(item, found: dict | None) -> dict:
    row = {"id": item.id, "title": item.title, "phase": item.phase, "kind": item.kind, "gate": item.gate,
           "window": item.window, "subchecks": list(item.subchecks)}
    if found is None:
        return {**row, "outcome": "not run", "blanks": [{"name": b, "value": None, "source": None} for b in item.blanks],
                "evidence": {},
                "run_id": None, "operator": None, "started": None, "ended": None, "duration": None,
                "attestation": None, "message": None, "cases": {}, "attempts": []}
    entry, result = found["entry"], found["result"]
    evidence = dict(result.get("evidence") or {})
    # A list, not a dict: record.json sorts keys, and the blanks read best in the checklist's order.
    blanks = [{"name": blank, "value": evidence.pop(blank, None), "source": "evidence"} for blank in item.blanks]
    attestation = result.get("attestation") or {}
    for blank in blanks:
        if blank["value"] is None:
            blank["value"] = from_attestation(str(attestation.get("text") or ""), blank["name"], item.blanks)
        if blank["value"] is None:
            blank["source"] = None
        elif blank["source"] == "evidence" and blank["name"] not in (result.get("evidence") or {}):
            blank["source"] = "attestation"
    return {**row, "outcome": result.get("outcome") or "not run", "blanks": blanks, "evidence": evidence,
            "run_id": entry.get("run_id"), "operator": entry.get("operator"), "started": entry.get("started"),
            "ended": entry.get("ended"), "duration": result.get("duration"), "attestation": result.get("attestation"),
            "message": result.get("message"), "cases": result.get("cases") or {}, "attempts": found["attempts"],
            # the full message and traceback (a ledger before causes had none: its record stays byte for byte)
            **({"detail": result["detail"]} if result.get("detail") else {})}


def record_causes(entries: list[dict], items: dict[str, dict]) -> list[dict] | None:
    """The causes of what is not passed in the record (each run's ledger entry lists its own), each once, with
    the consequences that are still the items' latest results. None when no run recorded causes."""
    if not any("causes" in entry for entry in entries):
        return None
    def latest_here(item_id: str, run_id) -> bool:
        row = items.get(item_id) or {}
        return row.get("run_id") == run_id and row.get("outcome") in (*FAILED, NOT_RUN)

    found: dict[str, dict] = {}
    for entry in entries:
        run_id = entry.get("run_id")
        for cause in entry.get("causes") or []:
            if not isinstance(cause, dict) or not latest_here(str(cause.get("item")), run_id):
                continue
            found[cause["item"]] = {"item": cause["item"], "title": cause.get("title") or "", "run_id": run_id,
                                    "message": cause.get("message") or "",
                                    "consequences": [i for i in cause.get("consequences") or []
                                                     if latest_here(i, run_id)]}
    return sorted(found.values(), key=lambda c: checklist_data.item_key(c["item"]))


def open_incomplete(entries: list[dict]) -> list[dict]:
    """Runs that stopped early (Ctrl-C, a crash, a timeout) and were not run again in full afterwards, i.e.
    no later complete run covered all their phases: while one is open the record is NO-GO."""
    found = []
    for index, entry in enumerate(entries):
        if not entry.get("incomplete"):
            continue
        phases = set(entry.get("phases") or [])
        if any(not later.get("incomplete") and phases <= set(later.get("phases") or []) for later in entries[index + 1:]):
            continue
        found.append({"run_id": entry.get("run_id"), "phases": entry.get("phases") or [],
                      "reason": str(entry["incomplete"]), "ended": entry.get("ended")})
    return found


def overrides(entries: list[dict]) -> list[dict]:
    """Every recorded override (--override "reason"): who went on despite which failures, and why."""
    found = []
    for entry in entries:
        override = entry.get("override")
        if isinstance(override, dict):
            # the plugin lists what it overrode as "overridden" (the failed phases' items); "failed_items" too
            what = override.get("overridden") or override.get("failed_items") or []
            found.append({"run_id": entry.get("run_id"), "reason": override.get("reason"), "by": override.get("by"),
                          "at": override.get("at"), "overridden": [str(w) for w in what]})
    return found


def record_verdict(items: dict[str, dict], incomplete: list[dict], overridden: list[dict],
                   causes: list[dict] | None = None) -> dict:
    """NO-GO when an item's latest result failed, an item was held back ("not run" in a run), or a run is
    incomplete; the causes first. An override is shown beside the verdict; it does not turn failures into
    passes."""
    failed = [i for i, row in items.items() if row["outcome"] in FAILED]
    held = [i for i, row in items.items() if row["outcome"] == NOT_RUN and row["run_id"]]
    reasons = [f"causes: {', '.join(c['item'] for c in causes)}"] if causes else []
    reasons += [f"incomplete: {run['reason']} (run {run['run_id']})" for run in incomplete]
    reasons += [f"failed: {', '.join(failed)}"] if failed else []
    reasons += [f"not run: {', '.join(held)}"] if held else []
    verdict = "NO-GO" if reasons else "GO"
    line = verdict + (f" ({'; '.join(reasons)})" if reasons else "")
    line += "".join(f"; override by {o['by']} at {o['at']}: {o['reason']}" for o in overridden)
    return {"verdict": verdict, "line": line, "failed": failed, "not_run": held, "incomplete": incomplete,
            "overrides": overridden, **({"causes": causes} if causes is not None else {})}


def compose_report(entries: list[dict], items: dict[str, dict], checklist, incomplete: list[dict]) -> dict:
    """The Post-Deployment Report's sections, the Final Checklist and its status."""
    derived = derive(entries, items, checklist, incomplete)
    spec = checklist.report or {}
    report = {section: [report_field(name, source, items, derived, checklist)
                        for name, source in (spec.get(section) or {}).items()]
              for section in ("summary", "migration", "issues", "smoke")}
    report["failures"] = [{"item": i, "run_id": e.get("run_id"), "message": r.get("message")}
                          for e in entries for i, r in sorted((e.get("items") or {}).items(),
                                                              key=lambda kv: checklist_data.item_key(kv[0]))
                          if r.get("outcome") in FAILED]
    final = final_checklist(list(spec.get("final_checklist") or []), entries, items, derived, report, checklist)
    rolled = derived["status"][0] == "Rolled Back"
    final_status = ("Rolled Back" if rolled else "Incomplete" if incomplete
                    else "Complete" if all(f["done"] == "yes" for f in final) else "In Progress")
    return {"report": report, "final_checklist": final, "final_status": final_status}


def compose_files(folder: Path, entries: list[dict], ledger_file: dict, redactor: Redactor) -> dict:
    """The files the record rests on, the backup metadata it shows, and warnings about both."""
    made, warnings = made_files(entries)
    files = [ledger_file, *made]
    if (folder / CHECKLIST_COPY).is_file():
        files.append(file_entry(folder, CHECKLIST_COPY))
    if (folder / BACKUP_META).is_file():
        files.append(file_entry(folder, BACKUP_META))
    for entry in entries:
        for kind, name in sorted((entry.get("reports") or {}).items()):
            if name:
                files.append(file_entry(folder, safe_relpath(name, f"run {entry.get('run_id')} reports.{kind}")))
    files = sorted({f["path"]: f for f in files}.values(), key=lambda f: f["path"])
    warnings += [f"{f['path']} is named in the ledger but was not in the folder when the record was built"
                 for f in files if f.get("missing")]
    backup = None
    if (folder / BACKUP_META).is_file():
        try:
            backup = redactor.value(json.loads((folder / BACKUP_META).read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:
            warnings.append(f"{BACKUP_META} is not valid JSON ({exc}); its hash is listed, its content is not shown")
    return {"files": files, "backup": backup, "warnings": warnings}


def compose(folder: Path, deployment_id: str, checklist, ledger_lines: int | None = None,
            redactor: Redactor | None = None) -> dict:
    """The record as data, from the deployment folder alone (plus the checklist)."""
    redactor = redactor or Redactor()
    entries, ledger_file = read_ledger(folder, ledger_lines)
    entries = [redactor.value(e) for e in entries]  # the plugin redacts too; this is the second lock
    found = item_results(entries)
    items = {i.id: compose_item(i, found.get(i.id)) for i in checklist.ordered()}
    warnings = [f"the ledger has results for {i}, which is not in the checklist" for i in sorted(found)
                if i not in checklist.items]
    incomplete = open_incomplete(entries)
    reported = compose_report(entries, items, checklist, incomplete)
    files = compose_files(folder, entries, ledger_file, redactor)
    runs = [{key: e.get(key) for key in ("run_id", "phases", "operator", "host", "target", "bot_commit", "started",
                                         "ended", "verdict", "failed_gates", "failed_items", "reports",
                                         "incomplete", "override")} | ({"causes": e["causes"]} if "causes" in e else {})
            for e in entries]
    roles = (checklist.report or {}).get("signoff") or ["Deployed By", "Verified By", "Approved By"]
    return {
        "format": FORMAT,
        "deployment_id": deployment_id,
        "release": checklist.release,
        "checklist": {"title": checklist.title,
                      "file": CHECKLIST_COPY if (folder / CHECKLIST_COPY).is_file() else None},
        "rehearsal": all((r.get("target") or {}).get("rehearsal") for r in runs),
        "target": runs[-1].get("target"),
        "bot_commit": next((r["bot_commit"] for r in reversed(runs) if r.get("bot_commit")), None),
        "runs": runs,
        "items": list(items.values()),
        # part of what is signed: the verdict, why, and any override with its reason
        "verdict": record_verdict(items, incomplete, overrides(entries), record_causes(entries, items)),
        **reported,
        "backup": files["backup"],
        "signoff": [{"role": role, "slug": role_slug(role), "signature": f"{SIGNATURES}/{role_slug(role)}.json"}
                    for role in roles],
        "signoff_rule": "Approved By must be a different person (identity and key) from Deployed By",
        "files": files["files"],
        "warnings": warnings + files["warnings"],
    }


# ------------------------------------------------------------------ writing

def stale_signatures(folder: Path, record: dict, new_digest: str) -> list[Path]:
    stale = []
    for slug, sig in read_signatures(folder, record).items():
        if not isinstance(sig, dict) or sig.get("record_sha256") != new_digest:
            stale.append(folder / SIGNATURES / f"{slug}.json")
    return stale


def copy_backup_meta(folder: Path) -> None:
    """When the newest dump is outside the folder (--backup-dir), keep a copy of the backup.json beside it in
    the folder, as for the checklist: the record shows it, and verify then needs only the folder (the dump
    itself is listed by its path and hash)."""
    entries, _ = read_ledger(folder)
    # the dump 4.1 made ("Backup File" with "Backup SHA-256"; 4.5's "Backup File" is only its name)
    named = [evidence.get("Backup File") for entry in entries for result in (entry.get("items") or {}).values()
             if "Backup SHA-256" in (evidence := result.get("evidence") or {})]
    named = [n for n in named if isinstance(n, str) and n]
    if not named or not PurePosixPath(named[-1]).is_absolute():
        return
    source, copy = Path(named[-1]).parent / "backup.json", folder / BACKUP_META
    if source.is_file() and (not copy.is_file() or copy.read_bytes() != source.read_bytes()):
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)


def build_record(reports_dir: Path, deployment_id: str, checklist, *, force: bool = False) -> Path:
    """Write record.json, record.html and record.intoto.json; return the path of record.json.

    If the folder holds signatures of an earlier record and the new one differs, refuse (they would
    no longer match) unless `force`; then they move to signatures/superseded/ so the trail is kept.
    """
    folder = deployment_folder(Path(reports_dir), deployment_id)
    if checklist.path is not None:
        # A copy of the checklist makes the folder self-contained: verify rebuilds the record from it.
        source, copy = Path(checklist.path), folder / CHECKLIST_COPY
        if not copy.exists() or copy.read_bytes() != source.read_bytes():
            shutil.copyfile(source, copy)
    copy_backup_meta(folder)
    record = compose(folder, deployment_id, checklist)
    data = render_json(record)
    path = folder / RECORD_JSON
    if path.exists() and path.read_bytes() != data:
        try:
            stale = stale_signatures(folder, load_record(folder), record_digest(record))
        except RecordError:
            stale = sorted((folder / SIGNATURES).glob("*.json"))
        if stale and not force:
            names = ", ".join(p.name for p in stale)
            raise RecordRefused(f"{path} is signed ({names}) and the rebuilt record differs (new runs in the "
                                "ledger, or built by another deploycheck version). Rebuilding invalidates those signatures: pass --force to "
                                "rebuild, then sign again")
        for old in stale:
            target = folder / SIGNATURES / "superseded" / f"{old.stem}-{sha256_bytes(old.read_bytes())[:12]}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            old.replace(target)
    path.write_bytes(data)
    record = json.loads(data)  # render from what was written, exactly as verify will
    (folder / RECORD_INTOTO).write_bytes(intoto.render_statement(record, data))
    render.write_html(folder, record)
    return path


def rebuild(folder: Path, record: dict) -> tuple[bytes, bytes] | None:
    """record.json and record.intoto.json bytes rebuilt from the folder as recorded, or None if not comparable."""
    if record.get("format") != FORMAT or not (folder / CHECKLIST_COPY).is_file():
        return None
    ledger = next((f for f in record.get("files", []) if f.get("path") == LEDGER), None)
    checklist = checklist_data.load(folder / CHECKLIST_COPY)
    fresh = compose(folder, record["deployment_id"], checklist, ledger_lines=ledger.get("lines") if ledger else None)
    data = render_json(fresh)
    return data, intoto.render_statement(json.loads(data), data)
