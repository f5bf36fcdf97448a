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

import hashlib
import html
import json
import shutil
from datetime import datetime
from pathlib import Path, PurePosixPath

from deploycheck import checklist as checklist_data
from deploycheck.record.ledger import Ledger, LedgerError, canonical, sha256_file
from deploycheck.redact import Redactor

# Bump when the bytes written for the same inputs change, so verify knows a rebuild is comparable.
FORMAT = "deploycheck-record/2"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
TEST_RESULT = "https://in-toto.io/attestation/test-result/v0.1"
RECORD_JSON, RECORD_HTML, RECORD_INTOTO = "record.json", "record.html", "record.intoto.json"
LEDGER, CHECKLIST_COPY, BACKUP_META = "ledger.jsonl", "checklist.toml", "backup/backup.json"
SIGNATURES = "signatures"
NOT_FILLED = "—"
FAILED = ("failed", "error")
NOT_RUN = "not run"  # an item a run held back ("not run: 7.2 failed") or never reached; never a pass
# Phases that make up the deployment window itself (monitor runs for 24 hours after it).
WINDOW_PHASES = ("deploy", "postdeploy", "smoke", "rollback")
# The paper report writes these in minutes; a number gets the unit, a text is shown as recorded.
UNITS = {"Total Duration": "minutes", "Downtime": "minutes"}
# Evidence keys the plugin copies from an attestation; shown once, as the attestation.
ATTESTATION_KEYS = ("Attestation", "Attested By", "Attested At")


class RecordError(ValueError):
    pass


class RecordRefused(RecordError):
    """Rebuilding would silently invalidate signatures."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_digest(record: dict) -> str:
    """SHA-256 of the canonical record (sorted keys, compact): what a signature covers."""
    return sha256_bytes(canonical(record))


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


def parse_time(value) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None


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
            "message": result.get("message"), "cases": result.get("cases") or {}, "attempts": found["attempts"]}


def runs_touching(entries: list[dict], phases: tuple[str, ...], checklist) -> list[int]:
    """Indexes of runs in which an item of one of `phases` actually ran (not skipped)."""
    found = []
    for index, entry in enumerate(entries):
        for item_id, result in (entry.get("items") or {}).items():
            phase = checklist.items[item_id].phase if item_id in checklist.items else result.get("phase")
            if phase in phases and result.get("outcome") != "skipped":
                found.append(index)
                break
    return found


def group_state(items: dict[str, dict], ids: list[str], good: str, bad: str) -> tuple[str | None, str | None]:
    """`good` only when every item ran and passed, `bad` when any failed; else not filled, with why."""
    outcomes = {i: items[i]["outcome"] for i in ids}
    failed = [i for i, o in outcomes.items() if o in FAILED]
    if failed:
        return bad, "failed: " + ", ".join(failed)
    missing = [i for i, o in outcomes.items() if o != "passed"]
    if missing:
        return None, "not passed yet: " + ", ".join(f"{i} ({outcomes[i]})" for i in missing)
    return good, "passed: " + ", ".join(ids)


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


def record_verdict(items: dict[str, dict], incomplete: list[dict], overridden: list[dict]) -> dict:
    """NO-GO when an item's latest result failed, an item was held back ("not run" in a run), or a run is
    incomplete. An override is shown beside the verdict; it does not turn failures into passes."""
    failed = [i for i, row in items.items() if row["outcome"] in FAILED]
    held = [i for i, row in items.items() if row["outcome"] == NOT_RUN and row["run_id"]]
    reasons = [f"incomplete: {run['reason']} (run {run['run_id']})" for run in incomplete]
    reasons += [f"failed: {', '.join(failed)}"] if failed else []
    reasons += [f"not run: {', '.join(held)}"] if held else []
    verdict = "NO-GO" if reasons else "GO"
    line = verdict + (f" ({'; '.join(reasons)})" if reasons else "")
    line += "".join(f"; override by {o['by']} at {o['at']}: {o['reason']}" for o in overridden)
    return {"verdict": verdict, "line": line, "failed": failed, "not_run": held, "incomplete": incomplete,
            "overrides": overridden}


def derive(entries: list[dict], items: dict[str, dict], checklist, incomplete: list[dict] | None = None) -> dict[str, tuple]:
    """The report's derived values, each as (value or None, note)."""
    def ids(prefix: str) -> list[str]:
        return [i.id for i in checklist.ordered() if i.id.startswith(prefix)]

    deploy_runs = runs_touching(entries, ("deploy",), checklist)
    derived: dict[str, tuple] = {}
    if not deploy_runs:
        for name in ("date", "start", "end", "duration_minutes", "status"):
            derived[name] = (None, "no deploy run in the ledger yet")
    else:
        first, last = deploy_runs[0], deploy_runs[-1]
        window = [i for i in runs_touching(entries, WINDOW_PHASES, checklist) if i >= first]
        start, end = entries[first].get("started"), max((entries[i].get("ended") or "" for i in window), default="")
        t0, t1 = parse_time(start), parse_time(end)
        derived["date"] = (t0.date().isoformat() if t0 else None, f"start of run {entries[first].get('run_id')}")
        derived["start"] = (start, f"start of the first deploy run {entries[first].get('run_id')}")
        derived["end"] = (end or None, "end of the last deploy/postdeploy/smoke/rollback run")
        derived["duration_minutes"] = ((round((t1 - t0).total_seconds() / 60, 1), "end − start") if t0 and t1
                                       else (None, "start or end time missing"))
        rolled = [i for i in range(last, len(entries))
                  if (entries[i].get("items") or {}).get("16.2", {}).get("outcome") == "passed"
                  and not (i == last and entries[i].get("redeployed_after_rollback"))]
        window_ids = [i.id for i in checklist.ordered() if i.phase in ("deploy", "postdeploy", "smoke")]
        failed = [i for i in window_ids if items[i]["outcome"] in FAILED]
        pending = [i for i in window_ids if items[i]["outcome"] not in ("passed", "skipped")]
        if rolled:
            derived["status"] = ("Rolled Back", f"16.2 restored the backup in run {entries[rolled[0]].get('run_id')}, "
                                                f"after the last deploy run {entries[last].get('run_id')}")
        elif failed:
            derived["status"] = ("Failed", "failed: " + ", ".join(failed))
        elif incomplete:
            # never "Success" while a run stopped early: its unrun items may be the ones that would fail
            derived["status"] = ("Incomplete", "; ".join(f"run {r['run_id']} incomplete: {r['reason']}"
                                                         for r in incomplete))
        elif pending:
            derived["status"] = (None, "in progress; not run yet: " + ", ".join(pending))
        else:
            derived["status"] = ("Success", "every deploy, postdeploy and smoke item passed or was skipped")
    derived["integrity"] = group_state(items, ids("12."), "Pass", "Fail")
    derived["performance"] = group_state(items, ids("13."), "Normal", "Degraded")
    return derived


def from_attestation(text: str, blank: str, blanks: tuple[str, ...]) -> str | None:
    """A blank written inside an attestation as 'Blank: ...'; a plain text fills the item's first blank."""
    if not text.strip():
        return None
    lower = text.lower()
    starts = sorted((lower.find(b.lower() + ":"), b) for b in blanks if lower.find(b.lower() + ":") >= 0)
    if not starts:
        return text if blanks and blank == blanks[0] else None
    for n, (pos, name) in enumerate(starts):
        if name == blank:
            stop = starts[n + 1][0] if n + 1 < len(starts) else len(text)
            return text[pos + len(name) + 1:stop].strip().rstrip(";,").strip() or None
    return None


def report_field(name: str, source: str, items: dict[str, dict], derived: dict, checklist) -> dict:
    """One field of the Post-Deployment Report from its source in the checklist's [report] table."""
    if source.startswith("derived:"):
        value, note = derived.get(source.split(":", 1)[1], (None, f"unknown derived value {source}"))
        return {"field": name, "value": value, "source": source, "note": note, "unit": UNITS.get(name)}
    item_id, _, blank = source.partition(":")
    row = items.get(item_id)
    if row is None:
        return {"field": name, "value": None, "source": source, "note": f"item {item_id} is not in the checklist"}
    if not blank:  # the item's outcome (smoke results)
        value = row["outcome"] if row["outcome"] != "not run" else None
        return {"field": name, "value": value, "source": source, "note": f"{item_id} {row['title']}"}
    filled = {b["name"]: b for b in row["blanks"]}
    value, note = filled[blank]["value"] if blank in filled else row["evidence"].get(blank), f"{item_id} {row['title']}"
    if blank in filled and filled[blank]["source"] == "attestation":
        note = f"{item_id}, attested by {row['attestation'].get('by')} at {row['attestation'].get('at')}"
    if value is None:
        note = f"{item_id} has not recorded {blank!r} ({row['outcome']})"
    return {"field": name, "value": value, "source": source, "note": note, "unit": UNITS.get(name)}


def final_attestations(entries: list[dict]) -> dict[str, dict]:
    """Attestations for Final Checklist lines: a run entry's optional `attestations` keyed 'final:N' or the line."""
    found: dict[str, dict] = {}
    for entry in entries:
        for key, value in (entry.get("attestations") or {}).items():
            if isinstance(value, str):
                value = {"text": value, "by": entry.get("operator"), "at": entry.get("ended")}
            if isinstance(value, dict):
                found[str(key)] = value
    return found


def final_checklist(lines: list[str], entries, items, derived, report, checklist) -> list[dict]:
    """Each line derived from items where possible, else from an attestation, else not filled."""
    smoke = [i.id for i in checklist.ordered() if i.id.startswith("11.")]
    deploy_runs = runs_touching(entries, ("deploy",), checklist)
    monitor = [i for i in runs_touching(entries, ("monitor",), checklist) if not deploy_runs or i >= deploy_runs[-1]]
    missing = [f["field"] for section in ("summary", "migration", "smoke") for f in report[section] if f["value"] is None]
    perf, perf_note = derived["performance"]

    def logs():
        return group_state(items, [i for i in ("10.3", "14.1") if i in items], "yes", "no")

    rules = {
        "All critical smoke tests passed": lambda: group_state(items, smoke, "yes", "no"),
        "No errors in logs (or acceptable only)": logs,
        "Performance normal or improved": lambda: ({"Normal": "yes", "Improved": "yes", "Degraded": "no"}.get(perf),
                                                   perf_note),
        "Monitoring active": lambda: (("yes", f"monitor run {entries[monitor[-1]].get('run_id')} ended "
                                              f"{entries[monitor[-1]].get('ended')}") if monitor
                                      else (None, "no monitor run after the deployment yet")),
        "Post-deployment report completed": lambda: (("no", "not filled: " + ", ".join(missing)) if missing
                                                     else ("yes", "every report field is filled")),
    }
    attested = final_attestations(entries)
    result = []
    for number, line in enumerate(lines, start=1):
        value, note = rules[line]() if line in rules else (None, None)
        basis = "derived"
        if value is None:
            attestation = attested.get(f"final:{number}") or attested.get(line)
            if attestation:
                value, basis = "yes", "attested"
                note = f"attested by {attestation.get('by')} at {attestation.get('at')}: {attestation.get('text')}"
            else:
                note = note or f'needs an attestation ("final:{number}" in a run\'s attestations)'
        result.append({"line": line, "done": value, "basis": basis if value else None, "note": note})
    return result


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

    made, made_warnings = made_files(entries)
    warnings += made_warnings
    files = [ledger_file, *made]
    checklist_copy = folder / CHECKLIST_COPY
    if checklist_copy.is_file():
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

    runs = [{key: e.get(key) for key in ("run_id", "phases", "operator", "host", "target", "bot_commit", "started",
                                         "ended", "verdict", "failed_gates", "failed_items", "reports",
                                         "incomplete", "override")}
            for e in entries]
    rehearsal = all((r.get("target") or {}).get("rehearsal") for r in runs)
    return {
        "format": FORMAT,
        "deployment_id": deployment_id,
        "release": checklist.release,
        "checklist": {"title": checklist.title, "file": CHECKLIST_COPY if checklist_copy.is_file() else None},
        "rehearsal": rehearsal,
        "target": runs[-1].get("target"),
        "bot_commit": next((r["bot_commit"] for r in reversed(runs) if r.get("bot_commit")), None),
        "runs": runs,
        "items": list(items.values()),
        # part of what is signed: the verdict, why, and any override with its reason
        "verdict": record_verdict(items, incomplete, overrides(entries)),
        "report": report,
        "backup": backup,
        "final_checklist": final,
        "final_status": final_status,
        "signoff": [{"role": role, "slug": role_slug(role), "signature": f"{SIGNATURES}/{role_slug(role)}.json"}
                    for role in spec.get("signoff") or ["Deployed By", "Verified By", "Approved By"]],
        "signoff_rule": "Approved By must be a different person (identity and key) from Deployed By",
        "files": files,
        "warnings": warnings,
    }


# ------------------------------------------------------------------ rendering

def render_json(record: dict) -> bytes:
    return (json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def test_results(record: dict) -> tuple[str, list[str], list[str], list[str]]:
    """in-toto test-result lists: failed/error and held back ("not run" in a run) → failed, skipped → warned;
    items no run reached are not listed. A NO-GO record (e.g. an incomplete run) is never PASSED."""
    passed, warned, failed = [], [], []
    for item in record["items"]:
        name = f"{item['id']} {item['title']}"
        outcome = "failed" if item["outcome"] == NOT_RUN and item["run_id"] else item["outcome"]
        {"passed": passed, "skipped": warned, "failed": failed, "error": failed}.get(outcome, []).append(name)
    no_go = record["verdict"]["verdict"] != "GO"
    result = "FAILED" if failed or no_go else "WARNED" if warned else "PASSED"
    return result, passed, warned, failed


def render_statement(record: dict, record_bytes: bytes) -> bytes:
    """The record as an in-toto Statement v1 with the test-result predicate."""
    subject = [{"name": RECORD_JSON, "digest": {"sha256": sha256_bytes(record_bytes)}}]
    subject += [{"name": f["path"], "digest": {"sha256": f["sha256"]}} for f in record["files"] if f.get("sha256")]
    if record.get("bot_commit"):
        subject.append({"name": "bot-auto-order", "digest": {"gitCommit": record["bot_commit"]}})
    result, passed, warned, failed = test_results(record)
    configuration = [{"name": f["path"], "digest": {"sha256": f["sha256"]}}
                     for f in record["files"] if f["path"] == CHECKLIST_COPY and f.get("sha256")]
    if not configuration:
        configuration = [{"name": record["checklist"]["title"], "content": ""}]
    statement = {"_type": STATEMENT_TYPE, "subject": subject, "predicateType": TEST_RESULT,
                 "predicate": {"result": result, "configuration": configuration, "passedTests": passed,
                               "warnedTests": warned, "failedTests": failed}}
    return (json.dumps(statement, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


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


def _v(value) -> str:
    if value is None or value == "":
        return f'<span class="nf">{NOT_FILLED}</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return "<ol>" + "".join(f"<li>{_v(v)}</li>" for v in value) + "</ol>" if value else _v(None)
    if isinstance(value, dict):
        return "<br>".join(f"{html.escape(str(k))}: {_v(v)}" for k, v in value.items()) or _v(None)
    return html.escape(str(value))


def _outcome(outcome: str | None) -> str:
    outcome = outcome or "not run"
    return f'<span class="o {html.escape(outcome.replace(" ", "-"))}">{html.escape(outcome)}</span>'


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.3em .5em;
text-align:left;vertical-align:top;font-size:.9em}th{background:#f3f3f3}.nf{color:#999}.o{font-weight:600}
.passed{color:#176f2c}.failed,.error{color:#b00020}.skipped,.not-run{color:#8a6d00}code{font-size:.85em}
.banner{padding:.5em 1em;background:#fff4ce;border:1px solid #e0c060}h2{border-bottom:2px solid #ddd}
.verdict{padding:.5em 1em;font-size:1.1em;border:2px solid #176f2c}.verdict.no-go{border-color:#b00020}"""


def render_html(record: dict, signatures: dict[str, dict | str]) -> bytes:
    """A self-contained page; `signatures` (from read_signatures) fill the sign-off block."""
    digest = record_digest(record)
    rid = html.escape(record["deployment_id"])
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Deployment record {rid}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>{html.escape(record['checklist']['title'])} — deployment record {rid}</h1>"]
    if record["rehearsal"]:
        parts.append('<p class="banner">Rehearsal on a throwaway database: not a production deployment.</p>')
    target = record.get("target") or {}
    parts.append(f"<p>Target: {_v(target.get('kind'))}, {_v(target.get('dsn'))}, PostgreSQL "
                 f"{_v(target.get('server_version'))}. Bot commit: {_v(record.get('bot_commit'))}. "
                 f"Record SHA-256 (canonical): <code>{digest}</code></p>")
    verdict = record["verdict"]
    parts.append(f'<p class="verdict{" no-go" if verdict["verdict"] != "GO" else ""}"><b>Verdict:</b> '
                 f'{html.escape(verdict["line"])}</p>')
    if verdict["overrides"]:
        parts += ["<h2>Overrides</h2><p>Runs that went on although earlier items had failed, with the reason "
                  "recorded (signed with this record):</p>",
                  _table(["Run", "By", "At", "Reason", "What was overridden"],
                         [[_v(o["run_id"]), _v(o["by"]), _v(o["at"]), _v(o["reason"]), _v(o["overridden"])]
                          for o in verdict["overrides"]])]
    report = record["report"]

    def fields(section: str) -> str:
        def value(f: dict) -> str:
            unit = f.get("unit") if isinstance(f["value"], (int, float)) and not isinstance(f["value"], bool) else None
            return _v(f["value"]) + (f" {html.escape(unit)}" if unit else "")
        return _table(["Field", "Value", "Source"], [[html.escape(f["field"]), value(f),
                                                     html.escape(f["note"] or "")] for f in report[section]])

    parts += ["<h2>Post-Deployment Report</h2>", "<h3>Deployment Summary</h3>", fields("summary"),
              "<h3>Migration Results</h3>", fields("migration"), "<h3>Issues Encountered / Resolutions Applied</h3>",
              fields("issues")]
    if report["failures"]:
        parts.append("<p>Failures recorded by the suite:</p>" + _table(
            ["Item", "Run", "Message"], [[html.escape(f["item"]), _v(f["run_id"]), _v(f["message"])]
                                         for f in report["failures"]]))
    parts += ["<h3>Smoke Test Results</h3>", fields("smoke")]
    parts += ["<h2>Final Checklist</h2>", _table(["", "Line", "Basis"], [
        [_v(f["done"]), html.escape(f["line"]), html.escape(f["note"] or "")] for f in record["final_checklist"]]),
        f"<p><b>Status:</b> {html.escape(record['final_status'])}</p>"]

    rows = []
    for role in record["signoff"]:
        sig = signatures.get(role["slug"])
        if sig is None:
            rows.append([html.escape(role["role"]), _v(None), _v(None), _v(None), "unsigned"])
        elif isinstance(sig, str):
            rows.append([html.escape(role["role"]), _v(None), _v(None), _v(None), html.escape(sig)])
        else:
            match = "signs this record" if sig.get("record_sha256") == digest else "signs a DIFFERENT record"
            rows.append([html.escape(role["role"]), _v(sig.get("signer")), _v(sig.get("signed_at")),
                         f"{_v(sig.get('algorithm'))}<br><code>{_v(sig.get('key_fingerprint'))}</code>",
                         html.escape(match) + " (check with <code>python -m deploycheck verify</code>)"])
    parts += ["<h2>Team Sign-Off</h2>", _table(["Role", "Signed by", "Date", "Key", "Signature"], rows),
              f"<p>{html.escape(record['signoff_rule'])}.</p>"]

    rows = []
    for item in record["items"]:
        blanks = "".join(f"<div>{html.escape(b['name'])}: {_v(b['value'])}"
                         f"{' <small>(attested)</small>' if b['source'] == 'attestation' else ''}</div>"
                         for b in item["blanks"])
        extra = "".join(f"<div>{html.escape(k)}: {_v(v)}</div>" for k, v in sorted(item["evidence"].items())
                        if k not in ATTESTATION_KEYS)
        who = (f"{_v(item['operator'])}<br>{_v(item['ended'])}<br>run {_v(item['run_id'])}"
               if item["run_id"] else _v(None))
        if item["attestation"]:
            a = item["attestation"]
            who += f"<br>attested by {_v(a.get('by'))} at {_v(a.get('at'))}: {_v(a.get('text'))}"
        cases = "".join(f"<div>{_outcome(o)} <code>{html.escape(c)}</code></div>" for c, o in item["cases"].items())
        history = " → ".join(html.escape(str(a["outcome"])) for a in item["attempts"])
        gate = f"<br>gate: {html.escape(item['gate'])}" if item["gate"] else ""
        rows.append([html.escape(item["id"]), html.escape(item["title"]) + gate,
                     f"{html.escape(item['phase'])}<br>{html.escape(item['kind'])}",
                     _outcome(item["outcome"]) + (f"<br><small>{history}</small>" if len(item["attempts"]) > 1 else ""),
                     (blanks + extra) or "", who, _v(item["message"]) if item["message"] else "", cases])
    parts += ["<h2>Checklist</h2>", _table(["Item", "Title", "Phase", "Outcome", "Evidence", "Who / when",
                                            "Message", "Cases"], rows)]
    if record.get("backup"):
        parts += ["<h2>Backup</h2>", _v(record["backup"])]
    parts += ["<h2>Runs</h2>", _table(["Run", "Phases", "Operator", "Host", "Started", "Ended", "Verdict", "Reports"], [
        [_v(r["run_id"]), _v(", ".join(r.get("phases") or [])), _v(r["operator"]), _v(r["host"]), _v(r["started"]),
         _v(r["ended"]), _v(r["verdict"]) + (f"<br>gates: {_v(r['failed_gates'])}" if r.get("failed_gates") else "")
         + (f"<br>incomplete: {_v(r['incomplete'])}" if r.get("incomplete") else "")
         + (f"<br>override by {_v(r['override'].get('by'))}: {_v(r['override'].get('reason'))}"
            if isinstance(r.get("override"), dict) else ""),
         _v(r.get("reports"))] for r in record["runs"]])]
    parts += ["<h2>Files this record rests on</h2>", _table(["File", "SHA-256", "Bytes"], [
        [html.escape(f["path"]) + (f" (first {f['lines']} lines)" if "lines" in f else "")
         + (f"<br><small>made by {html.escape(f['made_by'])}, hashed when made</small>" if f.get("made_by") else "")
         + (f"<br><small>copies: {html.escape(', '.join(f['copies']))}</small>" if f.get("copies") else ""),
         f"<code>{f['sha256']}</code>" if f.get("sha256") else "missing", _v(f.get("size"))] for f in record["files"]])]
    if record["warnings"]:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in record["warnings"]) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts).encode()


# ------------------------------------------------------------------ writing

def write_html(folder: Path, record: dict) -> Path:
    """(Re)render record.html, e.g. after a signature was added; record.json is not touched."""
    path = folder / RECORD_HTML
    path.write_bytes(render_html(record, read_signatures(folder, record)))
    return path


def load_record(folder: Path) -> dict:
    path = folder / RECORD_JSON
    if not path.is_file():
        raise RecordError(f"no {path}: build it first with `python -m deploycheck record {folder.name}`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path} is not valid JSON ({exc}); rebuild it with `python -m deploycheck record`") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise RecordError(f"{path}: expected a {FORMAT} record, found {found!r}; rebuild it with this deploycheck")
    shape = {"deployment_id": str, "items": list, "report": dict, "signoff": list, "files": list,
             "final_checklist": list, "runs": list, "checklist": dict, "warnings": list, "final_status": str,
             "verdict": dict}
    wrong = [key for key, kind in shape.items() if not isinstance(record.get(key), kind)]
    wrong += [f"signoff[{n}]" for n, r in enumerate(record.get("signoff") or [])
              if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("role", "slug", "signature"))]
    if wrong:
        raise RecordError(f"{path} is not a well-formed record (wrong or missing: {', '.join(wrong)}); "
                          "it was edited, or built by another deploycheck: rebuild it")
    return record


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
            raise RecordRefused(f"{path} is signed ({names}) and the rebuilt record differs (new runs in the ledger, or built by another deploycheck version). "
                              "Rebuilding invalidates those signatures: pass --force to rebuild, then sign again")
        for old in stale:
            target = folder / SIGNATURES / "superseded" / f"{old.stem}-{sha256_bytes(old.read_bytes())[:12]}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            old.replace(target)
    path.write_bytes(data)
    record = json.loads(data)  # render from what was written, exactly as verify will
    (folder / RECORD_INTOTO).write_bytes(render_statement(record, data))
    write_html(folder, record)
    return path


def rebuild(folder: Path, record: dict) -> tuple[bytes, bytes] | None:
    """record.json and record.intoto.json bytes rebuilt from the folder as recorded, or None if not comparable."""
    if record.get("format") != FORMAT or not (folder / CHECKLIST_COPY).is_file():
        return None
    ledger = next((f for f in record.get("files", []) if f.get("path") == LEDGER), None)
    checklist = checklist_data.load(folder / CHECKLIST_COPY)
    fresh = compose(folder, record["deployment_id"], checklist, ledger_lines=ledger.get("lines") if ledger else None)
    data = render_json(fresh)
    return data, render_statement(json.loads(data), data)
