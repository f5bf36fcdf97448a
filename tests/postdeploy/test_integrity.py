"""8.4 and 12.1-12.3: no rows lost since preflight, no duplicate contents, stock in sync and kept,
no orphans. Each query returns the violating rows; the first are the evidence."""
import pytest

from deploycheck.checks import integrity, verify
from deploycheck.checks.expected import load_expected
from deploycheck.pytest_plugin.findings import findings, into

EXPECTED = load_expected()


@pytest.mark.item("8.4")
async def test_row_counts_match_preflight(db, evidence, recorded, run):
    with findings(evidence):
        before = verify.preflight(recorded, "5.1", "tables", run.deployment_id)
    recorded_at = recorded("5.1").get("Recorded At")
    await into(evidence, verify.check_row_counts(db, EXPECTED, before, recorded_at))


@pytest.mark.item("12.1")
async def test_no_duplicate_contents(db, evidence):
    await into(evidence, integrity.check_duplicates(db))


@pytest.mark.item("12.2")
async def test_stock_matches_unused_contents(db, evidence):
    await into(evidence, integrity.check_stock_sync(db))


# Beyond the checklist: the recount that makes 12.2 pass is what can send stock to zero.
@pytest.mark.item("12.2+stock")
async def test_no_product_lost_its_stock(db, evidence, recorded, run):
    with findings(evidence):
        before = verify.preflight(recorded, "5.3", "stock", run.deployment_id)
    given = run.attestations.get("12.2")
    if given:
        evidence.update(given.evidence())
    await into(evidence, integrity.check_stock_kept(db, before, given))


@pytest.mark.item("12.3")
async def test_no_orphans(db, evidence):
    await into(evidence, integrity.check_orphans(db))
