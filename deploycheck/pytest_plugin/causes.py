"""Causes and consequences: what an operator acts on after a NO-GO.

A failed or not-run item is a consequence when
- an item it needs (the checklist's `needs`, `needs_if_run`, a phase's items) or an action whose outcome it
  checks (`outcome_of`) failed or did not run in this run; or
- it failed of the same error as an earlier item (messages.fault_of: the same fixture's setup error, the same
  exception with the same text raised at the same place), or, not run, for the same reason as an earlier one.
Everything else is a cause. Each consequence is folded under the causes it traces back to. Pure: the recorder
calls it on a run's results and writes what it returns into the verdict (Results stays the recorder's)."""
from __future__ import annotations

import re
from collections.abc import Mapping

from deploycheck.checklist import PHASES, Checklist, item_key
from deploycheck.pytest_plugin import messages

NOT_PASSED = ("failed", "error", "not run")


def _blockers(checklist: Checklist, item_id: str, items: Mapping[str, dict]) -> list[str]:
    """The items of this run that this one depends on and that did not pass."""
    entry = checklist.items.get(item_id)
    if entry is None:
        return []
    outcome = items[item_id].get("outcome")
    found = []
    # what it needs, what it checks the outcome of, and what it reads when its message says it is missing it
    # (13.3 without 5.3's contract: "... 5.3 measures ..."); a reader failing of its own stays a cause
    message = items[item_id].get("message") or ""
    read_from = [read.item for read in entry.reads
                 if re.search(rf"(?<![\d.+]){re.escape(read.item)}(?![\d+])", message)]
    for need in (*entry.needs, *entry.needs_if_run, *entry.outcome_of, *read_from):
        if need in PHASES:
            if outcome == "not run":  # a phase need holds back only; a check that ran failed on its own
                found += [i for i, r in items.items() if r.get("phase") == need and r.get("outcome") in NOT_PASSED
                          and item_key(i) < entry.key]
        elif need in items and items[need].get("outcome") in NOT_PASSED:
            found.append(need)
    return sorted(set(found), key=item_key)


def classify(checklist: Checklist, items: Mapping[str, dict]) -> list[dict]:
    """The causes of a run's failures in checklist order: {"item", "title", "message" (one line),
    "consequences": [ids]}; every item that did not pass is either a cause or among some cause's consequences."""
    roots: dict[str, list[str]] = {}
    same_fault: dict[str, str] = {}
    same_reason: dict[str, str] = {}
    causes: dict[str, dict] = {}
    for item_id in sorted(items, key=item_key):
        result = items[item_id]
        outcome = result.get("outcome")
        if outcome not in NOT_PASSED:
            continue
        blockers = _blockers(checklist, item_id, items)
        fault = result.get("fault")
        reason = result.get("message") if outcome == "not run" else None
        explained = _explained_by(checklist, reason, same_reason) if reason else None
        if blockers:
            traced = {root for b in blockers for root in roots.get(b, [b])}
        elif explained:
            traced = set(roots[explained])
        elif fault and fault in same_fault:
            traced = set(roots[same_fault[fault]])
        elif reason and reason in same_reason:
            traced = set(roots[same_reason[reason]])
        else:
            traced = set()
        if fault:
            same_fault.setdefault(fault, item_id)
        if reason and not blockers:
            same_reason.setdefault(reason, item_id)
        if traced:
            roots[item_id] = sorted(traced, key=item_key)
            for root in roots[item_id]:
                causes[root]["consequences"].append(item_id)
            continue
        roots[item_id] = [item_id]
        causes[item_id] = {"item": item_id, "title": result.get("title") or "",
                           "message": messages.one_line(result.get("message")), "consequences": []}
    return list(causes.values())


NOT_RAN = re.compile(r"^not run: (\S+) did not run")


def _explained_by(checklist: Checklist, reason: str, earlier: dict[str, str]) -> str | None:
    """An earlier item not run because an action did not run, when that action is among the needs of the one
    this item waits on: "10.1 did not run" follows from "7.3 did not run" (10.1 needs 7.3)."""
    action = NOT_RAN.match(reason)
    if not action or action.group(1) not in checklist.items:
        return None
    needed, todo = set(), [action.group(1)]
    while todo:
        for need in checklist.items[todo.pop()].needs:
            if need in checklist.items and need not in needed:
                needed.add(need)
                todo.append(need)
    for text, item_id in earlier.items():
        before = NOT_RAN.match(text)
        if before and before.group(1) in needed:
            return item_id
    return None


def same_error_as(items: Mapping[str, dict], item_id: str, fault: str | None) -> str | None:
    """The earliest other item that failed of this fault, for a message that points to it ("see 1.2")."""
    if not fault:
        return None
    earlier = [i for i, r in items.items() if i != item_id and r.get("fault") == fault]
    return min(earlier, key=item_key) if earlier else None


def ids_text(ids: list[str], limit: int) -> str:
    """`1.3, 4.1, 4.2 (+12 more)`, within `limit` characters."""
    shown: list[str] = []
    for index, item_id in enumerate(ids):
        rest = len(ids) - index - 1
        candidate = ", ".join([*shown, item_id]) + (f" (+{rest} more)" if rest else "")
        if len(candidate) > limit and shown:
            return ", ".join(shown) + f" (+{len(ids) - len(shown)} more)"
        shown.append(item_id)
    return ", ".join(shown)


def lines(causes: list[dict], width: int = 80, most: int = 8) -> list[str]:
    """The causes for a terminal of `width` columns: each on a line, what it caused under it; at most `most`
    causes shown in full (the verdict line names them all)."""
    out = [f"NO-GO: {len(causes)} cause{'s' if len(causes) != 1 else ''}, each with what it caused:"]
    for cause in causes[:most]:
        message = cause["message"] or cause["title"]
        head = f"  {cause['item']} {message}"
        error = messages.ERROR_LINE.search(message)
        if len(head) > width and error and error.start() > 0:  # keep the error, not the command before it
            head = f"  {cause['item']} …{message[error.start():]}"
        out.append(head if len(head) <= width else head[: width - 1] + "…")
        if cause["consequences"]:
            label = f"      caused {len(cause['consequences'])}: "
            out.append(label + ids_text(cause["consequences"], width - len(label)))
    if len(causes) > most:
        out.append(f"  and {len(causes) - most} more: " + ids_text([c["item"] for c in causes[most:]], width - 20))
    return out


def where(rehearsal: bool) -> str:
    """What the target is called in the verdict's words: production, or the rehearsal's copy of it."""
    return "the rehearsal's copy" if rehearsal else "production"
