"""Evidence as an auditor reads it: nested values (row counts per table, violating rows, query timings) as
small HTML tables, never raw JSON. Shared by the run report and the signed record."""
from __future__ import annotations

import json
from html import escape

ROWS = 20     # rows shown of a long list; the rest are counted
TEXT = 300    # characters shown of a long value


def _text(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return escape(text if len(text) <= TEXT else text[:TEXT] + "…")


def _more(total: int) -> str:
    return f'<tr><td colspan="99">… {total - ROWS} more</td></tr>' if total > ROWS else ""


def value_html(value, depth: int = 0) -> str:
    """A scalar as text; a dict as a two-column table; a list of dicts as a table with a column per key."""
    if depth > 2 or not isinstance(value, (dict, list, tuple)) or not value:
        return _text(value) if value not in ({}, [], ()) else "none"
    if isinstance(value, dict):
        rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{value_html(v, depth + 1)}</td></tr>"
                       for k, v in list(value.items())[:ROWS])
        return f'<table class="evidence">{rows}{_more(len(value))}</table>'
    if all(isinstance(v, dict) for v in value):
        columns = list(dict.fromkeys(k for row in value[:ROWS] for k in row))
        head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{value_html(row.get(c), depth + 1)}</td>" for c in columns) + "</tr>"
                       for row in value[:ROWS])
        return f'<table class="evidence"><tr>{head}</tr>{body}{_more(len(value))}</table>'
    shown = ", ".join(_text(v) if not isinstance(v, (dict, list)) else value_html(v, depth + 1) for v in value[:ROWS])
    return shown + (f" … {len(value) - ROWS} more" if len(value) > ROWS else "")


def evidence_html(evidence: dict) -> str:
    """An item's evidence: one line per blank, its value as text or a small table."""
    return "<br>".join(f"<b>{escape(str(k))}</b>: {value_html(v)}" for k, v in evidence.items())


CSS = """
table.evidence { border-collapse: collapse; margin: 2px 0; font-size: 0.9em; table-layout: auto; }
table.evidence th, table.evidence td { border: 1px solid #d0d7de; padding: 1px 4px; text-align: left;
  vertical-align: top; overflow-wrap: anywhere; }
table.evidence th { background: #f6f8fa; font-weight: 600; }
"""
