"""Lock impact of a migration: squawk (a maintained PostgreSQL migration linter) finds the statements
that take heavy locks, and the database says how large each locked table is."""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from deploycheck.failure import CheckFailed

# Statement forms that name the table they lock.
TABLE = re.compile(r'(?is)\b(?:ALTER\s+TABLE(?:\s+IF\s+EXISTS)?(?:\s+ONLY)?|CREATE\s+(?:UNIQUE\s+)?INDEX'
                   r'(?:\s+CONCURRENTLY)?(?:\s+IF\s+NOT\s+EXISTS)?\s+[\w"]+\s+ON(?:\s+ONLY)?|UPDATE|DELETE\s+FROM|'
                   r'INSERT\s+INTO|TRUNCATE(?:\s+TABLE)?)\s+([\w."]+)')


class LintError(CheckFailed):  # a finding like any check's: its message is the cause
    pass


@dataclass(frozen=True)
class Finding:
    line: int           # 1-based
    rule: str
    message: str
    table: str | None


def squawk_binary() -> str:
    found = shutil.which("squawk") or str(Path(sys.executable).parent / "squawk")
    if not Path(found).exists():
        raise LintError("squawk is not installed (pip install squawk-cli)")
    return found


async def lint(path: Path, timeout: float = 60) -> list[Finding]:
    """squawk's findings; a migration that does not parse is an error naming the line."""
    process = await asyncio.create_subprocess_exec(squawk_binary(), "--reporter", "json", str(path),
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    try:
        raw = json.loads(out.decode() or "[]")
    except json.JSONDecodeError:
        raise LintError(f"squawk gave no readable answer for {path}: {err.decode().strip()[-300:]}") from None
    lines = path.read_text(encoding="utf-8").splitlines()
    findings = []
    for entry in raw:
        line = int(entry.get("line", 0)) + 1  # squawk counts lines from 0
        if entry.get("rule_name") == "syntax-error":
            raise LintError(f"{path.name} does not parse at line {line}: {entry.get('message')}; nothing of it "
                            "would be applied. Fix the file before the window")
        statement = " ".join(lines[line - 1:line + 2]) if 0 < line <= len(lines) else ""
        match = TABLE.search(statement)
        findings.append(Finding(line, entry.get("rule_name", "?"), entry.get("message", ""),
                                match.group(1).replace('"', "") if match else None))
    return findings


def lock_rows(findings: list[Finding], sizes: dict[str, int]) -> list[dict]:
    """One row per locking statement: line, table, its size, why it locks."""
    rows = {}
    for finding in findings:
        if "lock" not in finding.message.lower() and finding.rule not in ("constraint-missing-not-valid",
                                                                           "require-concurrent-index-creation"):
            continue
        key = (finding.line, finding.table)
        row = rows.setdefault(key, {"line": finding.line, "table": finding.table,
                                    "size_bytes": sizes.get((finding.table or "").split(".")[-1]), "rules": []})
        row["rules"].append(finding.rule)
    return sorted(rows.values(), key=lambda r: r["line"])
