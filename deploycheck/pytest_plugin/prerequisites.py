"""Stop means stop: what an item needs before it runs, and where production stands after a failure.

An item's `needs` (checklists/<release>.toml) are items that must have passed (this run's result when the
item ran in this run, else the newest result in this deployment's ledger) or phases whose newest verdict
must be GO. `needs_if_run` items stop it only when they ran in this run and did not pass. `outcome_of` names
the actions a check observes: when one did not run or failed (this run's result, else the ledger's newest) the
check is not run, a consequence of it; when the deployment has no record of the action the check observes.
"""
from __future__ import annotations

from deploycheck.checklist import PHASES, Checklist, Item, item_key

NOT_PASSED = ("failed", "error", "not run")


def _item_problem(need: str, results: dict, in_run: set[str], ledger_latest) -> str | None:
    if need in in_run:
        outcome = results.get(need, {}).get("outcome")
        if outcome == "passed":
            return None
        return f"{need} {'did not run' if outcome is None else outcome}"
    earlier = ledger_latest(need)
    if earlier is None:
        return f"{need} has not run in this deployment"
    if earlier.get("outcome") != "passed":
        return f"{need} {earlier.get('outcome')} in its last run ({earlier.get('ended') or 'time unknown'})"
    return None


def phase_problem(phase: str, results: dict, entries: list[dict]) -> str | None:
    """Why `phase` is not GO: this run's items of that phase when it ran here, else its newest run in the
    ledger. None when it is GO."""
    ran_here = {i: r for i, r in results.items() if r["phase"] == phase}
    if ran_here:
        failed = sorted((i for i, r in ran_here.items() if r["outcome"] in NOT_PASSED), key=item_key)
        return f"{phase} is NO-GO in this run (failed: {', '.join(failed)})" if failed else None
    for entry in reversed(entries):
        if phase in entry.get("phases", []):
            failed = sorted((i for i, r in entry.get("items", {}).items()
                             if r.get("phase") == phase and r.get("outcome") in NOT_PASSED), key=item_key)
            when = entry.get("ended") or "time unknown"
            if failed:
                return f"the latest {phase} ({when}) is NO-GO (failed: {', '.join(failed)})"
            if entry.get("incomplete"):
                return f"the latest {phase} ({when}) did not complete: {entry['incomplete']}"
            return None
    return f"no {phase} has been recorded for this deployment"


def unmet(item: Item, results: dict, in_run: set[str], ledger, overridden: bool = False) -> list[str]:
    """Why `item` must not run: each need that has not passed. Phase needs are lifted by an override."""
    problems = []
    entries = None
    for need in item.needs:
        if need in PHASES:
            if overridden:
                continue
            if entries is None:
                entries = ledger.read()
            problem = phase_problem(need, results, entries)
        else:
            problem = _item_problem(need, results, in_run,
                                    lambda i: ledger.latest(i, outcome=None))
        if problem:
            problems.append(problem)
    for need in item.needs_if_run:
        outcome = results.get(need, {}).get("outcome")
        if need in in_run and outcome in NOT_PASSED:
            problems.append(f"{need} {outcome}")
    for action in item.outcome_of:
        if action in item.needs:
            continue  # already a need: said once
        problem = _outcome_problem(action, results, in_run, lambda i: ledger.latest(i, outcome=None))
        if problem:
            problems.append(problem)
    return problems


def _outcome_problem(action: str, results: dict, in_run: set[str], ledger_latest) -> str | None:
    """Why a check of `action`'s outcome has nothing to observe: the action did not run or failed."""
    if action in in_run:
        outcome = results.get(action, {}).get("outcome")
        if outcome in (None, "not run"):
            return f"{action} did not run"
        return f"{action} failed" if outcome in ("failed", "error") else None
    earlier = ledger_latest(action)
    if earlier is None or earlier.get("outcome") in ("passed", "skipped"):
        return None  # no record of the action in this deployment (done elsewhere): the check observes
    return (f"{action} {'did not run' if earlier.get('outcome') == 'not run' else earlier.get('outcome')} in its "
            f"last run ({earlier.get('ended') or 'time unknown'})")


def not_run_message(problems: list[str]) -> str:
    return "not run: " + "; ".join(problems)


def production_stands(checklist: Checklist, results: dict, facts: dict) -> list[str]:
    """The newest statement per aspect (bot, database, code) from the items that ran, in checklist order."""
    aspects: dict[str, str] = {}
    for item_id in sorted(results, key=item_key):
        outcome = {"error": "failed"}.get(results[item_id]["outcome"], results[item_id]["outcome"])
        statement = checklist.items[item_id].stands.get(outcome) if item_id in checklist.items else None
        if statement:
            aspect, _, _ = statement.partition(":")
            aspects[aspect] = statement.format(**facts)
    return list(aspects.values())


def next_step(checklist: Checklist, results: dict) -> str | None:
    """What to do after a NO-GO: the advice of the last phase (in checklist order) that has a failure."""
    failed_phases = [r["phase"] for r in results.values() if r["outcome"] in NOT_PASSED]
    for phase in reversed(PHASES):
        if phase in failed_phases and phase in checklist.next_steps:
            return checklist.next_steps[phase]
    return None
