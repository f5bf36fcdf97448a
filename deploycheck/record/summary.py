"""The Post-Deployment Report and the Final Checklist: values derived from the items and runs of the ledger.

Each derived value comes with a note saying where it came from (or why it is not filled), so the record never
shows a value without its basis.
"""
from __future__ import annotations

from datetime import datetime

FAILED = ("failed", "error")
NOT_RUN = "not run"  # an item a run held back ("not run: 7.2 failed") or never reached; never a pass
# Phases that make up the deployment window itself (monitor runs for 24 hours after it).
WINDOW_PHASES = ("deploy", "postdeploy", "smoke", "rollback")
# The paper report writes these in minutes; a number gets the unit, a text is shown as recorded.
UNITS = {"Total Duration": "minutes", "Downtime": "minutes"}


def parse_time(value) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None



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
