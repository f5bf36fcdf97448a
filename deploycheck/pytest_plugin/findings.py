"""From a check to a test: a finding (CheckFailed) or a failed query fails the test with the operator's
message only, and the evidence the finding carries still goes in the report."""
from __future__ import annotations

from contextlib import contextmanager

import asyncpg
import pytest

from deploycheck.checks.logs import mask
from deploycheck.failure import CheckFailed


@contextmanager
def findings(evidence: dict):
    """Within it, a finding (CheckFailed) or a failed query fails the test with the operator's message only,
    the finding's evidence kept for the report."""
    message = None
    try:
        yield evidence
    except CheckFailed as exc:
        evidence.update(exc.evidence)
        message = str(exc)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        message = (f"the check's query failed: {type(exc).__name__}: {mask(str(exc))}. The schema is not what "
                   "v0.7.0 leaves behind (a table or column missing?), or the check has no read access.")
    if message:  # `from None`: the report shows the operator's message, not a chain of tracebacks
        raise pytest.fail.Exception(message, pytrace=False) from None


async def into(evidence: dict, check) -> dict:
    """Await a check and put its evidence in the item's evidence (a finding fails the test, see findings)."""
    with findings(evidence):
        found = await check
        evidence.update(found)
        return found
