"""7.4 "Review migration output": what the migration did, measured in the database against what the
release's migration did on the rehearsal's copy (its contract, or an expected file), whatever its runner
prints. The runner's output is evidence; its format is the release's own."""
from __future__ import annotations

import asyncpg

from deploycheck.checks import integrity, verify
from deploycheck.checks.contract import source_of
from deploycheck.checks.logs import check_migration_log
from deploycheck.failure import CheckFailed


async def _problem(check) -> str | None:
    try:
        await check
    except CheckFailed as exc:
        return "; ".join(line.split(". ")[0] for line in str(exc).splitlines())  # the findings; 8.x give advice
    return None


async def backup_tables(conn: asyncpg.Connection, expected: dict) -> str | None:
    """The backup tables the migration made on the copy (any added table with "backup" in its name or schema),
    here too; a release whose migration makes none on the copy either is said so."""
    made = [t for t in expected.get("added", {}).get("tables", {}) if "backup" in t]
    if not made and "on_copy" in expected:
        return "the release's migration makes no backup tables (on the rehearsal's copy either)"
    if not made:
        return None  # an expected file lists none: nothing to look for
    return await _problem(verify.check_tables(conn, {**expected, "added": {"tables": {t: "table" for t in made}}}))


async def problem(check: str, conn: asyncpg.Connection, expected: dict, exit_code: int | None,
                  output_problem: str | None) -> str | None:
    """One of the checklist's 7.4 sub-checks: None when the database shows it done, else what is not. The
    runner's validation is its own: it passed when the runner exited 0 and recorded success (exit_code None:
    run by hand, the recorded row alone)."""
    if check == "No errors reported":
        return output_problem
    if check == "Validation checks passed" and exit_code not in (0, None):
        return f"the runner exited {exit_code}"
    if check in ("Migration tracking table created", "Validation checks passed"):
        return await _problem(check_migration_log(conn, expected))
    if check == "Backup tables created (automatic)":
        return await backup_tables(conn, expected)
    if check == "Data cleanup completed (duplicates handled)":
        return await _problem(integrity.check_duplicates(conn))
    if check == "Constraints applied successfully":
        return await _problem(verify.check_constraints(conn, expected))
    if check == "Indexes created successfully":
        return await _problem(verify.check_indexes(conn, expected))
    raise ValueError(f"7.4 has no sub-check {check!r}")


def measured(check: str, expected: dict) -> str:
    return "yes" if check == "No errors reported" else f"yes (measured in the database against {source_of(expected)})"
