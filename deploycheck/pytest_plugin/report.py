"""The run report: pytest-html through its own hooks (title, item and evidence columns, verdict summary,
deployment metadata), and the same content as JSON beside each deployment's ledger (on deploycheck's
pytest_deploycheck_run_recorded hook)."""
from __future__ import annotations

import functools
import json
from html import escape

import pytest

from deploycheck.record import render
from deploycheck.pytest_plugin.state import results_of, state_of


def _metadata(config) -> dict | None:
    try:
        from pytest_metadata.plugin import metadata_key
    except ImportError:
        return None
    return config.stash.get(metadata_key, None)


def _describe_target(state, results) -> dict:
    deployment, target = results.deployment, results.target
    commit = (results.get("3.2") or {}).get("evidence", {}).get("Commit")
    return {
        "Release": state.checklist.release, "Deployment ID": deployment.id,
        "Target": ("live" if not deployment.rehearsal else f"{target.kind} (rehearsal)" if target
                   else "rehearsal (no database opened)"),
        "Database": state.redactor.text(target.dsn) if target else "not opened in this run",
        "Database Reached": target.reached if target else "not opened in this run",  # or through an SSH tunnel
        "Server Version": (target.server_version if target else None) or "unknown",
        "Operator": state.operator, "Host": deployment.host, "Bot Commit": commit or "unknown",
    }


def _report_metadata(session) -> None:
    """The report's deployment metadata: the one deployment's (a fleet's wave lists its tenants instead)."""
    state, metadata = state_of(session.config), _metadata(session.config)
    if state and metadata is not None and not state.fleet:
        metadata.update(_describe_target(state, results_of(session.config, state.base)))


def pytest_report_header(config):
    """Which target the run got, and why (`--target auto` is resolved once, before collection)."""
    state = state_of(config)
    if state:
        return f"deploycheck: target {state.base.target} ({state.base.target_reason})"


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    _report_metadata(session)


def pytest_sessionfinish(session):
    # pytest-html shows the same dict object it read at start; fill in what became known during the run.
    _report_metadata(session)


def pytest_html_report_title(report):
    state = state_of(report.config) if hasattr(report, "config") else None
    if state:
        deployment_id = state.base.fleet_id or state.base.id  # a fleet's wave: the fleet's
        report.title = f"bot-auto-order v{state.checklist.release} deployment {deployment_id}: {state.label}"


def pytest_html_results_table_header(cells):
    cells.insert(1, '<th class="sortable" data-column-type="item">Item</th>')
    cells.insert(3, "<th>Evidence</th>")


def pytest_html_results_table_row(report, cells):
    item_id = getattr(report, "item_id", "")
    cells.insert(1, f'<td class="col-item">{escape(item_id)}</td>')
    cells.insert(3, f"<td>{evidence_html(getattr(report, 'evidence', {}))}</td>")


# Nested evidence as the record shows it: the record's own shapes and macro, so the two never disagree.
CSS = """
table.nested{border-collapse:collapse;margin:.15em 0 .3em;font-size:.92em}
table.nested th,table.nested td{border:1px solid #ddd;padding:.1em .35em;text-align:left;vertical-align:top;
  overflow-wrap:anywhere}
table.nested th{background:#f7f7f7;font-weight:600}
.inline-list{margin:0;padding:0;list-style:none;display:inline}.inline-list li{display:inline}
.inline-list li+li::before{content:", "}.nf{color:#999}
"""


@functools.cache
def _show():
    return render.renderer(render.TEMPLATES)[0].get_template("values.html.j2").module.show


def evidence_html(evidence: dict) -> str:
    show = _show()
    return "<br>".join(f"<b>{escape(str(k))}</b>: {show(render.shape(v))}" for k, v in evidence.items())


def pytest_html_results_summary(prefix, summary, postfix, session):
    state = state_of(session.config)
    if not state or state.fleet:  # a fleet's wave: its plugin lists the tenants' verdicts
        return
    results = results_of(session.config, state.base)
    if not results.verdict:
        return
    verdict, items, production = results.verdict, results.items, results.production
    colour = "#1a7f37" if verdict["verdict"] == "GO" else "#cf222e"
    lines = [f"<style>{CSS}</style>", f'<h2 style="color:{colour}">Verdict: {verdict["verdict"]}</h2>']
    lines += causes_html(verdict.get("causes") or [], items)
    gates = state.checklist.gates
    gate_rows = []
    for gate, meaning in gates.items():
        gated = [i for i, r in items.items() if r["gate"] == gate]
        outcomes = {items[i]["outcome"] for i in gated}
        status = ("FAILED" if outcomes & {"failed", "error"} else "not run" if "not run" in outcomes or not gated
                  else "passed" if "passed" in outcomes else "skipped")
        gate_rows.append(f"<tr><td>{escape(meaning)}</td><td>{', '.join(gated) or '—'}</td><td>{status}</td></tr>")
    lines.append("<h3>Stop-the-deployment gates</h3><table><tr><th>Stop if</th><th>Items</th><th>State</th></tr>"
                 + "".join(gate_rows) + "</table>")
    if verdict.get("incomplete"):
        lines.append(f"<p><b>Incomplete run</b>: {escape(verdict['incomplete'])}</p>")
    if state.override:
        lines.append(f"<p><b>Override</b> by {escape(state.override['by'])}: {escape(state.override['reason'])} "
                     f"({escape('; '.join(state.override['overridden']))})</p>")
    if production and (production["stands"] or production["next"]):
        stands = "".join(f"<li>{escape(line)}</li>" for line in production["stands"])
        where = production.get("of") or ("the rehearsal's copy" if state.rehearsal else "production")
        lines.append(f"<h3>Where {escape(where)} stands now</h3><ul>{stands}</ul>"
                     + (f"<p><b>Next</b>: {escape(production['next'])}</p>" if production["next"] else ""))
    if verdict["failed_items"]:
        rows = "".join(f"<li><b>{i}</b> {escape(items[i]['title'])}: "
                       f"{escape(items[i]['message'] or '')}</li>" for i in verdict["failed_items"])
        lines.append(f"<details><summary>All {len(verdict['failed_items'])} items that failed or did not run"
                     f"</summary><ul>{rows}</ul></details>")
    prefix.extend(lines)


def causes_html(causes: list[dict], items) -> list[str]:
    """The causes first, each once: its item and one-line message, what it caused folded under it, and the full
    message and traceback folded too."""
    if not causes:
        return []
    rows = []
    for cause in causes:
        item_id = cause["item"]
        detail = (items.get(item_id) or {}).get("detail") or (items.get(item_id) or {}).get("message") or ""
        caused = cause["consequences"]
        rows.append(
            f"<li><b>{escape(item_id)}</b> {escape(cause.get('title') or '')}: {escape(cause['message'])}"
            + (f"<details><summary>caused {len(caused)}: {escape(', '.join(caused[:12]))}"
               f"{' …' if len(caused) > 12 else ''}</summary><ul>"
               + "".join(f"<li><b>{escape(i)}</b> {escape((items.get(i) or {}).get('message') or '')}</li>"
                         for i in caused) + "</ul></details>" if caused else "")
            + (f"<details><summary>full message</summary><pre>{escape(detail)}</pre></details>"
               if detail and detail != cause["message"] else "")
            + "</li>")
    return [f"<h3>Causes ({len(causes)}): fix these; the rest follows from them</h3><ol>{''.join(rows)}</ol>"]


def pytest_deploycheck_run_recorded(config, deployment, results, entry) -> None:
    """A deployment's run as JSON beside its ledger: the ledger entry plus the metadata the HTML report shows."""
    state = state_of(config)
    path = state.json_path(deployment)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"title": f"bot-auto-order v{state.checklist.release} deployment {deployment.id}",
                "metadata": state.redactor.value(_describe_target(state, results)), **entry}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
