"""The fleet summary: where every tenant stands after a rollout, for the terminal and as JSON.

One line per tenant (name, wave, verdict, deployment id, reports path), in wave order, under a headline that
answers the operator's questions first: the fleet's verdict, how many shops are on the release, which are
NO-GO, rolled back, or were never started; under the table, the NO-GO tenants grouped by cause (three shops
NO-GO of the same 5.3 cause are one line), from each tenant's ledger entry. Nothing here holds a secret:
tenants appear by name only.
"""
from __future__ import annotations

import json
from pathlib import Path

from deploycheck.fleet.waves import GO, NO_GO, NOT_STARTED, ROLLED_BACK, RUNNING, Rollout, TenantState
from deploycheck.record.ledger import Ledger, LedgerError

COUNTED = ((GO, "on the release (GO)"), (NO_GO, "NO-GO"), (ROLLED_BACK, "rolled back"),
           (NOT_STARTED, "not started"), (RUNNING, "running"))


def tenant_causes(row: TenantState) -> list[dict]:
    """The causes of a NO-GO tenant's latest run, as its ledger entry lists them (none: no entry, or older)."""
    if row.verdict != NO_GO or not row.reports:
        return []
    try:
        entries = Ledger(Path(row.reports) / "ledger.jsonl").read()
    except (LedgerError, OSError):
        return []
    return [c for c in (entries[-1].get("causes") or []) if isinstance(c, dict)] if entries else []


def by_cause(rows: list[TenantState]) -> list[dict]:
    """NO-GO tenants grouped by cause (its item and one-line message), in the order first seen; a NO-GO tenant
    with no recorded cause (a crashed worker) is grouped under "no cause recorded"."""
    groups: dict[tuple, dict] = {}
    for row in rows:
        if row.verdict != NO_GO:
            continue
        found = tenant_causes(row) or [{"item": None, "message": "no cause recorded: see its reports"}]
        for cause in found:
            key = (cause.get("item"), cause.get("message") or "")
            group = groups.setdefault(key, {"item": key[0], "message": key[1], "tenants": []})
            if row.name not in group["tenants"]:
                group["tenants"].append(row.name)
    return list(groups.values())


def summary(rollout: Rollout) -> dict:
    """The summary as data: the verdict, the counts, a row per tenant, and the NO-GO tenants by cause."""
    rows = rollout.rows()
    return {
        "verdict": rollout.verdict,
        "halted_at_wave": rollout.halted_at,
        "waves": len(rollout.waves),
        "counts": {verdict: sum(row.verdict == verdict for row in rows) for verdict, _ in COUNTED},
        "tenants": [{"name": row.name, "wave": row.wave, "verdict": row.verdict,
                     "deployment_id": row.deployment_id, "reports": row.reports} for row in rows],
        "causes": by_cause(rows),
    }


def headline(data: dict) -> str:
    counts = ", ".join(f"{data['counts'][verdict]} {label}" for verdict, label in COUNTED
                       if data["counts"][verdict] or verdict in (GO, NOT_STARTED))
    at, halted = data["halted_at_wave"], ""
    if at:
        no_go = [t["name"] for t in data["tenants"] if t["verdict"] == NO_GO]
        kept = any(t["wave"] < at and t["verdict"] == GO for t in data["tenants"])
        halted = f"; halted at wave {at} (NO-GO: {', '.join(no_go)})" + (
            "; the earlier waves stay on the release" if kept else "")
    return f"fleet {data['verdict']}: {counts} of {len(data['tenants'])} tenants{halted}"


def render_text(rollout: Rollout) -> str:
    """Aligned columns for the terminal; a missing deployment id or report is shown as '-'."""
    data = summary(rollout)
    table = [("tenant", "wave", "verdict", "deployment id", "reports")]
    table += [(t["name"], str(t["wave"]), t["verdict"], t["deployment_id"] or "-", t["reports"] or "-")
              for t in data["tenants"]]
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    lines = [headline(data)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table]
    if data["causes"]:
        lines.append(f"NO-GO by cause ({len(data['causes'])}):")
        lines += [f"  {c['item'] or '-'} {c['message']}: {len(c['tenants'])} tenant{'s' if len(c['tenants']) != 1 else ''}"
                  f" ({', '.join(c['tenants'])})" for c in data["causes"]]
    return "\n".join(lines) + "\n"


def render_json(rollout: Rollout) -> str:
    """The same as JSON, one tenant per line, so a fleet of hundreds still diffs and greps line by line."""
    data = summary(rollout)
    tenants = data.pop("tenants")
    head = json.dumps(data, sort_keys=True)[:-1]  # the object without its closing brace
    body = ",\n".join("  " + json.dumps(tenant) for tenant in tenants)
    return f'{head}, "tenants": [\n{body}\n]}}\n'
