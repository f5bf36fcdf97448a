"""record.html: the deployment record for people, rendered from record.json and the signatures.

The page comes from Jinja2 templates and a CSS file kept beside this module (templates/), the way
pytest-html keeps its own: the HTML is derived, never signed. What is signed is record.json and the files
it names. How verify checks the page (the rule, so a cosmetic change never fails a signed record):

- The page names the canonical SHA-256 of the record.json it was rendered from and the version of the
  renderer (TEMPLATE_VERSION: a hash of the templates, the CSS and this module, so every change of any of
  them is a new version by itself; nobody has to remember to bump it).
- Rendered by this version: verify renders it again and compares byte for byte.
- Rendered by another version: verify checks that it names this record.json's digest, deployment and verdict,
  and says how to re-render it (`python -m deploycheck render ID`).
- Rendered before templates (format deploycheck-record/2 without the version): the same, through the
  "Record SHA-256 (canonical)" line those pages carry.
"""
from __future__ import annotations

import functools
import hashlib
import html
import re
from pathlib import Path

import jinja2
from markupsafe import Markup

from deploycheck.record.folder import NOT_FILLED, RECORD_HTML, read_signatures, record_digest

# Package data (pyproject's [tool.setuptools.package-data]); a wheel installs it as files next to this module.
TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "record.html.j2"
# Evidence keys the plugin copies from an attestation; shown once, as the attestation.
ATTESTATION_KEYS = ("Attestation", "Attested By", "Attested At")
# A value with more rows than this is summarised in its checklist cell and shown in full under "Evidence in
# full", so one long list (a schema snapshot, 150 product codes) does not stretch the checklist table.
INLINE_ROWS = 10
INLINE_ITEMS = 40  # plain lists are shown inline, comma-separated; more than this go to "Evidence in full"
MAX_COLUMNS = 8  # rows with more keys than this are shown one under another, so a table stays in its cell
MAX_DEPTH = 3  # deeper values are written as "key: value" text inside their cell
META_VERSION = re.compile(rb'<meta name="deploycheck-template" content="([^"]+)">')
META_DIGEST = re.compile(rb'<meta name="deploycheck-record-sha256" content="([0-9a-f]{64})">')
LEGACY_DIGEST = re.compile(rb"Record SHA-256 \(canonical\): <code>([0-9a-f]{64})</code>")


@functools.cache
def renderer(templates: Path) -> tuple[jinja2.Environment, str]:
    """The Jinja2 environment for a templates folder, and the renderer version it gives."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path in sorted(p for p in Path(templates).iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.globals["shape"] = shape
    return env, f"record-html/{digest.hexdigest()[:16]}"


def template_version() -> str:
    return renderer(TEMPLATES)[1]


# ------------------------------------------------------------------ values as small tables

def scalar(value) -> bool:
    """Anything that is not a dict or a list shows as text (a date from the database, a decimal, ...)."""
    return not isinstance(value, (dict, list, tuple))


def text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def flat(value) -> str:
    """A value too deep for another table, as readable text (never JSON)."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(flat(v) for v in value)
    return NOT_FILLED if value is None or value == "" else text(value)


def columns_of(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(map(str, row)))
    return list(seen)


def shape(value, depth: int = 0) -> dict:
    """How a value is shown: empty, text, an inline list, or a table whose cells are shapes again.

    dict of scalars → two columns (name, value); list of dicts → one row each, a column per key; dict of
    dicts (query → timings) → a row per key; anything else nested → a table of name and nested value."""
    if value is None or value == "" or value == [] or value == {}:
        return {"kind": "empty", "size": 0}
    if scalar(value):
        return {"kind": "text", "text": text(value), "num": isinstance(value, (int, float))
                and not isinstance(value, bool), "size": 1}
    if depth >= MAX_DEPTH:
        return {"kind": "text", "text": flat(value), "num": False, "size": 1}
    if isinstance(value, list) and all(scalar(v) for v in value):
        return {"kind": "list", "items": [flat(v) for v in value], "size": len(value)}
    if isinstance(value, list) and all(isinstance(v, dict) for v in value) and len(columns_of(value)) <= MAX_COLUMNS:
        columns = columns_of(value)
        rows = [[shape(row.get(c), depth + 1) for c in columns] for row in value]
        return {"kind": "table", "columns": columns, "rows": rows, "size": len(rows)}
    if isinstance(value, list):
        return {"kind": "table", "columns": ["#", ""], "size": len(value),
                "rows": [[shape(n), shape(v, depth + 1)] for n, v in enumerate(value, start=1)]}
    values = list(value.values())
    if (values and all(isinstance(v, dict) and all(scalar(x) for x in v.values()) for v in values)
            and len(columns_of(values)) <= MAX_COLUMNS):
        columns = columns_of(values)
        rows = [[shape(k), *(shape(v.get(c), depth + 1) for c in columns)] for k, v in value.items()]
        return {"kind": "table", "columns": ["", *columns], "rows": rows, "size": len(rows)}
    rows = [[shape(k), shape(v, depth + 1)] for k, v in value.items()]
    return {"kind": "table", "columns": [], "rows": rows, "size": len(rows)}


def lines(view: dict) -> int:
    """About how many lines a shape takes: nested tables count their own rows."""
    if view["kind"] != "table":
        return 1 if view["kind"] != "list" or view["size"] <= INLINE_ITEMS else view["size"]
    return sum(max([lines(cell) for cell in row] or [1]) for row in view["rows"])


def too_long(view: dict) -> bool:
    return lines(view) > (INLINE_ITEMS if view["kind"] == "list" else INLINE_ROWS)


def evidence_views(item: dict, appendix: list[dict]) -> list[dict]:
    """An item's blanks, then its other evidence, each as {name, view, attested, full (an anchor or None)}."""
    named = [(b["name"], b["value"], b["source"] == "attestation") for b in item["blanks"]]
    named += [(k, v, False) for k, v in sorted(item["evidence"].items()) if k not in ATTESTATION_KEYS]
    views = []
    for name, value, attested in named:
        view = shape(value)
        full = None
        if too_long(view):
            full = f"ev-{item['id']}-{len(appendix) + 1}"
            appendix.append({"anchor": full, "item": item["id"], "title": item["title"], "name": name,
                             "view": view})
        views.append({"name": name, "view": view, "attested": attested, "full": full})
    return views


# ------------------------------------------------------------------ the page

def signoff_rows(record: dict, signatures: dict[str, dict | str], digest: str) -> list[dict]:
    rows = []
    for role in record["signoff"]:
        sig = signatures.get(role["slug"])
        row = {"role": role["role"], "signer": None, "date": None, "algorithm": None, "fingerprint": None,
               "check": False}
        if sig is None:
            row["status"] = "unsigned"
        elif isinstance(sig, str):
            row["status"] = sig
        else:
            row.update(signer=sig.get("signer"), date=sig.get("signed_at"), algorithm=sig.get("algorithm"),
                       fingerprint=sig.get("key_fingerprint"))
            row["status"] = "signs this record" if sig.get("record_sha256") == digest else "signs a DIFFERENT record"
            row["check"] = True
        rows.append(row)
    return rows


def render_html(record: dict, signatures: dict[str, dict | str], templates: Path | None = None) -> bytes:
    """The page for `record`; `signatures` (from read_signatures) fill the sign-off block."""
    env, version = renderer(Path(templates or TEMPLATES))
    digest = record_digest(record)
    appendix: list[dict] = []
    items = [{**item, "views": evidence_views(item, appendix)} for item in record["items"]]
    page = env.get_template(TEMPLATE).render(
        record=record, items=items, appendix=appendix, digest=digest, template_version=version,
        css=Markup((Path(templates or TEMPLATES) / "record.css").read_text(encoding="utf-8")),
        signoff=signoff_rows(record, signatures, digest), not_filled=NOT_FILLED)
    return page.encode()


def write_html(folder: Path, record: dict) -> Path:
    """(Re)render record.html, e.g. after a signature was added; record.json is not touched."""
    path = folder / RECORD_HTML
    path.write_bytes(render_html(record, read_signatures(folder, record)))
    return path


def rendered_from(page: bytes) -> tuple[str | None, str | None]:
    """(renderer version, record digest) a page names; version None for pages made before templates."""
    version, digest = META_VERSION.search(page), META_DIGEST.search(page)
    if version:
        return version.group(1).decode(), digest.group(1).decode() if digest else None
    legacy = LEGACY_DIGEST.search(page)
    return None, legacy.group(1).decode() if legacy else None


def page_problem(page: bytes, record: dict, signatures: dict[str, dict | str]) -> tuple[str | None, str | None]:
    """(what is wrong with record.html, or None; a note for a page checked only in part). The rule is in the
    module's docstring."""
    version, named = rendered_from(page)
    digest = record_digest(record)
    if version == template_version():
        if page != render_html(record, signatures):
            return "differs from record.json and the signatures as this renderer shows them", None
        return None, None
    if named != digest:
        found = f"names record {named}" if named else "names no record digest"
        return f"{found}, but record.json is {digest}: it was not rendered from this record", None
    text = html.unescape(page.decode("utf-8", errors="replace"))
    missing = [what for what, value in (("deployment id", record["deployment_id"]),
                                        ("verdict", record["verdict"].get("line", ""))) if value not in text]
    if missing:
        return f"names this record but does not show its {' and '.join(missing)}: it was edited", None
    made_by = f"renderer {version}" if version else "the renderer before templates"
    return None, (f"{RECORD_HTML} was made by {made_by}: checked that it names this record.json's digest, "
                  f"deployment and verdict; re-render it with `python -m deploycheck render "
                  f"{record['deployment_id']}` to have it compared in full")
