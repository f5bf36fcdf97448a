"""The fleet summary: where every tenant stands after a rollout, for the terminal and as JSON.

One line per tenant (name, wave, verdict, deployment id, reports path), in wave order, under a headline that
answers the operator's questions first: the fleet's verdict, how many shops are on the release, which are
NO-GO, rolled back, or were never started. Nothing here holds a secret: tenants appear by name only.
"""
from __future__ import annotations

import json

from deploycheck.fleet.waves import GO, NO_GO, NOT_STARTED, ROLLED_BACK, RUNNING, Rollout

COUNTED = ((GO, "on the release (GO)"), (NO_GO, "NO-GO"), (ROLLED_BACK, "rolled back"),
           (NOT_STARTED, "not started"), (RUNNING, "running"))


def summary(rollout: Rollout) -> dict:
    """The summary as data: the verdict, the counts, and a row per tenant."""
    rows = rollout.rows()
    return {
        "verdict": rollout.verdict,
        "halted_at_wave": rollout.halted_at,
        "waves": len(rollout.waves),
        "counts": {verdict: sum(row.verdict == verdict for row in rows) for verdict, _ in COUNTED},
        "tenants": [{"name": row.name, "wave": row.wave, "verdict": row.verdict,
                     "deployment_id": row.deployment_id, "reports": row.reports} for row in rows],
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
    return "\n".join(lines) + "\n"


def render_json(rollout: Rollout) -> str:
    """The same as JSON, one tenant per line, so a fleet of hundreds still diffs and greps line by line."""
    data = summary(rollout)
    tenants = data.pop("tenants")
    head = json.dumps(data, sort_keys=True)[:-1]  # the object without its closing brace
    body = ",\n".join("  " + json.dumps(tenant) for tenant in tenants)
    return f'{head}, "tenants": [\n{body}\n]}}\n'
